"""The ranking losses: golden values, item masks (rax's ``where``), ties, edge inputs, identities.

The registry (tests/specs_ranking.py) covers list masks and the transform matrix; here the item
masks are checked against the oracles with the masked items removed, and the edge inputs the
issue lists (all-masked lists, ties, single-item lists, zero relevance) for a finite value and
finite reverse, forward and second derivatives.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss

from .helpers import assert_close
from .specs_ranking import (
    approx_ndcg_oracle,
    hinge_oracle,
    listmle_oracle,
    logistic_oracle,
    softmax_oracle,
)

LOSSES = {
    "ranking_softmax_loss": (funcloss.ranking_softmax_loss, softmax_oracle, True),
    "pairwise_logistic_loss": (funcloss.pairwise_logistic_loss, logistic_oracle, True),
    "pairwise_hinge_loss": (funcloss.pairwise_hinge_loss, hinge_oracle, True),
    "listmle_loss": (funcloss.listmle_loss, listmle_oracle, False),
    "approx_ndcg_loss": (funcloss.approx_ndcg_loss, approx_ndcg_oracle, True),
}
NAMES = list(LOSSES)
REDUCTIONS = ("none", "mean", "sum")


def _inputs(seed: int, shape=(3, 5), share: float = 0.6):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
    y = torch.randint(0, 3, shape, generator=generator).to(torch.float64)
    items = torch.rand(shape, generator=generator) < share
    w = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5
    return x, y, items, w


# -- golden values ---------------------------------------------------------------------------


def test_golden_values() -> None:
    # rax 0.4.0 docstrings: softmax_loss([2, 1, 3], [1, 0, 0]) = 1.4076059;
    # approx_t12n(ndcg_metric)([0, 1, 3, 2], [0, 0, 1, 2]) = -0.71789175;
    # pairwise_hinge_loss with where, reduce_fn=jnp.mean = 0.16666667
    s = torch.tensor([2.0, 1.0, 3.0])
    assert_close(
        funcloss.ranking_softmax_loss(s, torch.tensor([1.0, 0, 0])), torch.tensor(1.4076059)
    )
    scores, labels = torch.tensor([0.0, 1, 3, 2]), torch.tensor([0.0, 0, 1, 2])
    assert_close(funcloss.approx_ndcg_loss(scores, labels), torch.tensor(-0.71789175))
    scores = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.5, 1.5]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    where = torch.tensor([[True, True, False], [True, True, True]])
    assert_close(funcloss.pairwise_hinge_loss(scores, labels, where=where), torch.tensor(1 / 6))
    # by hand: ListMLE of [s0, s1] with y = [1, 0]: log(e^s0 + e^s1) - s0
    value = funcloss.listmle_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert_close(value, torch.tensor(math.log(1 + math.e)))


# -- item masks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), share=st.sampled_from([0.0, 0.4, 0.8, 1.0]))
def test_item_mask_equals_oracle_without_the_masked_items(name, seed, share) -> None:
    fn, oracle, weighted = LOSSES[name]
    x, y, items, w = _inputs(seed, share=share)
    kwargs = {"weight": w} if weighted else {}
    for reduction in REDUCTIONS:
        actual = fn(x, y, **kwargs, reduction=reduction, where=items)
        expected = oracle(x, y, **kwargs, reduction=reduction, items=items)
        assert_close(actual, expected, f"{name} item mask, {reduction}")


@pytest.mark.parametrize("name", NAMES)
def test_list_mask_is_an_item_mask_of_whole_lists(name) -> None:
    fn = LOSSES[name][0]
    x, y, _, _ = _inputs(1)
    lists = torch.tensor([True, False, True])
    for reduction in REDUCTIONS:
        assert_close(
            fn(x, y, reduction=reduction, where=lists),
            fn(x, y, reduction=reduction, where=lists[:, None].expand(x.shape)),
        )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("poison", [math.inf, -math.inf, math.nan])
def test_masked_items_reach_nothing(name, poison) -> None:
    fn, _, weighted = LOSSES[name]
    x, y, items, w = _inputs(2)
    items[0] = False  # an all-masked list too
    kwargs = {"weight": w} if weighted else {}
    bad_x = torch.where(items, x, poison)
    bad_y = torch.where(items, y, poison)
    for reduction in ("mean", "sum"):

        def f(s, target=y, reduction=reduction):
            return fn(s, target, **kwargs, reduction=reduction, where=items)

        value = f(bad_x, bad_y)
        assert torch.isfinite(value)
        assert_close(value, f(x))
        reverse = grad(f)(bad_x, bad_y)
        assert torch.isfinite(reverse).all()
        assert (reverse[~items] == 0).all()
        assert_close(reverse, grad(f)(x))
        forward = jacfwd(f)(bad_x, bad_y)
        assert_close(forward, reverse, "jacfwd vs grad")
        second = hessian(f)(bad_x, bad_y)
        assert torch.isfinite(second).all()
        assert_close(second, hessian(f)(x))


@pytest.mark.parametrize("name", NAMES)
def test_item_mask_under_vmap_grad_and_compile(name) -> None:
    fn = LOSSES[name][0]
    x, y, items, _ = _inputs(3)

    def f(s, target, mask):
        return fn(s, target, where=mask)

    batched = vmap(grad(f))(x, y, items)
    looped = torch.stack([grad(f)(x[i], y[i], items[i]) for i in range(x.shape[0])])
    assert_close(batched, looped, "vmap(grad) with item masks vs a loop")
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for mask in (items, ~items):
        assert_close(compiled(x, y, mask), f(x, y, mask), "compiled with an item mask")


@pytest.mark.parametrize("name", NAMES)
def test_shared_item_mask(name) -> None:
    fn = LOSSES[name][0]
    x, y, _, _ = _inputs(4)
    shared = torch.tensor([[True, False, True, True, False]])
    assert_close(
        fn(x, y, reduction="none", where=shared),
        fn(x, y, reduction="none", where=shared.expand(x.shape)),
    )


def test_mean_divides_by_the_lists_with_something_to_rank() -> None:
    x, y, _, _ = _inputs(5)
    items = torch.ones_like(x, dtype=torch.bool)
    items[1] = False
    for fn in (funcloss.ranking_softmax_loss, funcloss.listmle_loss, funcloss.approx_ndcg_loss):
        per_list = fn(x, y, reduction="none", where=items)
        assert per_list[1] == 0
        assert_close(fn(x, y, where=items), per_list.sum() / 2)
    # pairwise: the mean over the valid pairs of the batch (rax's mean over the pair matrix)
    y = torch.tensor([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    x = torch.randn(3, 3, dtype=torch.float64)
    per_list = funcloss.pairwise_logistic_loss(x, y, reduction="none")
    assert per_list[1] == 0  # every relevance equal: no pair
    assert_close(funcloss.pairwise_logistic_loss(x, y), per_list.sum() / (3 + 0 + 2))
    # no valid pair anywhere: 0 (rax), not 0 / 0
    assert funcloss.pairwise_hinge_loss(x, torch.ones_like(x)) == 0


# -- edge inputs -----------------------------------------------------------------------------


def _edge_cases():
    L = 4
    x = torch.tensor([[0.3, -1.2, 2.0, 0.5]] * 5, dtype=torch.float64)
    y = torch.tensor(
        [
            [1.0, 0.0, 2.0, 1.0],  # all masked below
            [1.0, 1.0, 1.0, 1.0],  # ties everywhere
            [2.0, 2.0, 0.0, 0.0],  # ties in pairs
            [0.0, 0.0, 0.0, 0.0],  # zero relevance (zero ideal DCG)
            [3.0, 0.0, 1.0, 2.0],  # a single valid item below
        ],
        dtype=torch.float64,
    )
    items = torch.ones(5, L, dtype=torch.bool)
    items[0] = False
    items[4, 1:] = False
    return x, y, items


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_edge_inputs_are_finite_in_every_derivative(name, reduction) -> None:
    fn = LOSSES[name][0]
    x, y, items = _edge_cases()

    def f(s):
        return fn(s, y, reduction=reduction, where=items)

    value = f(x)
    assert torch.isfinite(value).all()
    reverse = jacrev(f)(x)
    forward = jacfwd(f)(x)
    assert torch.isfinite(reverse).all()
    assert_close(forward, reverse, "jacfwd vs jacrev")
    if reduction != "none":
        second = hessian(f)(x)
        assert torch.isfinite(second).all()
        assert_close(second, jacrev(jacrev(f))(x), "hessian vs jacrev(jacrev)")
    # all-masked, tied, zero-relevance and single-item lists: the oracle agrees
    oracle = LOSSES[name][1]
    assert_close(value, oracle(x, y, reduction=reduction, items=items))


@pytest.mark.parametrize("name", NAMES)
def test_single_item_lists(name) -> None:
    fn = LOSSES[name][0]
    x = torch.tensor([[1.5], [-2.0]], dtype=torch.float64)
    y = torch.tensor([[2.0], [0.0]], dtype=torch.float64)
    value = fn(x, y, reduction="none")
    # one item: softmax gives it probability 1 (loss 0), no pairs, ListMLE's only factor is 1,
    # ApproxNDCG is -1 with a relevant item and 0 without
    expected = torch.tensor([-1.0, 0.0] if name == "approx_ndcg_loss" else [0.0, 0.0])
    assert_close(value, expected.to(torch.float64))
    assert torch.isfinite(hessian(lambda s: fn(s, y, reduction="sum"))(x)).all()


def test_listmle_ties_keep_list_order() -> None:
    # rax's stable sort (no key): among equal relevance the earlier item is ranked first
    x = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    order = [0, 1, 2]
    expected = sum(torch.logsumexp(x[order[k:]], 0) - x[order[k]] for k in range(len(order)))
    assert_close(funcloss.listmle_loss(x, y), expected)
    # swapping the tied items swaps their roles: a different, equally deterministic value
    swapped = funcloss.listmle_loss(x[[1, 0, 2]], y)
    assert not torch.allclose(swapped, expected)
    assert_close(funcloss.listmle_loss(x[[1, 0, 2]], y), swapped)


def test_listmle_forward_mode_at_spread_scores() -> None:
    # torch 2.13's logcumsumexp jvp zeroes partial sums below 1e-13 of the list's maximum
    x = torch.tensor([10.0, -45.0, -40.0], dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)

    def f(s):
        return funcloss.listmle_loss(s, y)

    assert_close(jacfwd(f)(x), jacrev(f)(x))
    assert_close(jacrev(f)(x), grad(lambda s: listmle_oracle(s, y))(x))


@pytest.mark.parametrize("name", NAMES)
def test_float32_forward_mode_keeps_the_dtype(name) -> None:
    fn = LOSSES[name][0]
    x, y, items, _ = _inputs(6)
    for xs, ys in ((x.float(), y.float()), (x[0].float(), y[0].float())):
        for where in (None, items if xs.dim() == 2 else items[0]):
            tangent = jacfwd(lambda s, ys=ys, where=where: fn(s, ys, where=where))(xs)
            assert tangent.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_unbatched_list_equals_a_batch_of_one(name) -> None:
    fn = LOSSES[name][0]
    x, y, items, _ = _inputs(7)
    assert_close(fn(x[0], y[0], where=items[0]), fn(x[:1], y[:1], where=items[:1]))


# -- identities ------------------------------------------------------------------------------


def test_softmax_with_one_relevant_item_is_cross_entropy() -> None:
    x, _, _, _ = _inputs(8)
    classes = torch.tensor([4, 0, 2])
    onehot = torch.nn.functional.one_hot(classes, 5).to(torch.float64)
    assert_close(funcloss.ranking_softmax_loss(x, onehot), funcloss.cross_entropy(x, classes))


def test_two_item_pairwise_losses_are_the_binary_ones() -> None:
    x = torch.tensor([[0.7, -0.4], [-1.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    # the more relevant item leads by 1.1 and by 3.0
    logistic = funcloss.pairwise_logistic_loss(x, y, reduction="none")
    leads = torch.tensor([1.1, 3.0], dtype=torch.float64)
    assert_close(logistic, torch.log1p(torch.exp(-leads)))
    hinge = funcloss.pairwise_hinge_loss(x, y, 2.0, reduction="none")
    assert_close(hinge, torch.tensor([0.9, 0.0], dtype=torch.float64))


def test_approx_ndcg_tends_to_ndcg_as_the_temperature_falls() -> None:
    x = torch.tensor([[0.0, 1.0, 3.0, 2.0], [2.0, -1.0, 0.5, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.0, 2.0], [1.0, 0.0, 3.0, 2.0]], dtype=torch.float64)
    ranks = x.argsort(-1, descending=True).argsort(-1).to(torch.float64) + 1
    gains = 2**y - 1
    dcg = (gains / torch.log2(1 + ranks)).sum(-1)
    ideal = (gains.sort(-1, descending=True).values / torch.log2(torch.arange(2.0, 6.0))).sum(-1)
    value = funcloss.approx_ndcg_loss(x, y, temperature=1e-3, reduction="none")
    assert_close(value, -dcg / ideal)
