"""The metric and contrastive losses (funcloss/_contrastive.py): identities, edge inputs, masks
and both forms of vmap, beyond the registry's matrix.

Edge inputs (issue 12): no positive pair, no negative pair, zero embeddings, coincident
embeddings (pair distance 0), masked samples holding inf/NaN; each with a finite value and finite
reverse, forward and second derivatives.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss

from .helpers import assert_close
from .specs_contrastive import (
    batch_triplet_oracle,
    circle_oracle,
    contrastive_oracle,
    multi_similarity_oracle,
    ntxent_oracle,
    supcon_oracle,
)

f64 = torch.float64

# The losses of one batch of embeddings and labels, at their defaults (name -> loss).
BATCH_LOSSES = {
    "supcon_loss": funcloss.supcon_loss,
    "ntxent_loss": funcloss.ntxent_loss,
    "contrastive_loss": funcloss.contrastive_loss,
    "batch_triplet_loss": funcloss.batch_triplet_loss,
    "batch_triplet_loss-hard": functools.partial(funcloss.batch_triplet_loss, mining="hard"),
    "multi_similarity_loss": funcloss.multi_similarity_loss,
    "circle_loss": funcloss.circle_loss,
}
BATCH = [pytest.param(fn, id=name) for name, fn in BATCH_LOSSES.items()]


def _batch(n: int = 6, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=f64)


def _all_derivatives(loss, x: torch.Tensor, labels: torch.Tensor, **kwargs):
    """(value, grad, jacfwd, hessian) of the summed loss in x."""

    def total(e):
        return loss(e, labels, **kwargs).sum()

    return total(x), grad(total)(x), jacfwd(total)(x), hessian(total)(x)


def _assert_finite(*values: torch.Tensor) -> None:
    for value in values:
        assert torch.isfinite(value).all(), value


# -- identities ------------------------------------------------------------------------------


def test_ntxent_with_one_positive_each_is_supcon() -> None:
    x = _batch(8)
    labels = torch.tensor([3, 1, 0, 2, 1, 3, 0, 2])
    for temperature in (0.07, 0.5):
        for reduction in ("none", "mean", "sum"):
            assert_close(
                funcloss.ntxent_loss(x, labels, temperature, reduction),
                funcloss.supcon_loss(x, labels, temperature, reduction),
                f"{temperature}, {reduction}",
            )


def test_supcon_and_ntxent_against_the_naive_oracles_on_a_larger_batch() -> None:
    x = _batch(24, 5, seed=1)
    labels = torch.randint(0, 4, (24,), generator=torch.Generator().manual_seed(2))
    for reduction in ("none", "mean"):
        assert_close(
            funcloss.supcon_loss(x, labels, 0.1, reduction),
            supcon_oracle(x, labels, 0.1, reduction),
        )
        assert_close(
            funcloss.ntxent_loss(x, labels, 0.07, reduction),
            ntxent_oracle(x, labels, 0.07, reduction),
        )


def test_scaling_an_embedding_changes_nothing() -> None:
    x, labels = _batch(), torch.tensor([0, 0, 1, 1, 2, 2])
    scaled = x * torch.tensor([[1.0], [3.0], [0.5], [1e3], [1.0], [2.0]], dtype=f64)
    for loss in BATCH_LOSSES.values():
        assert_close(loss(scaled, labels, reduction="none"), loss(x, labels, reduction="none"))


PAIR_ORACLES = [
    (funcloss.contrastive_loss, contrastive_oracle, {"pos_margin": 0.2, "neg_margin": 1.1}),
    (funcloss.batch_triplet_loss, batch_triplet_oracle, {"margin": 0.3}),
    (funcloss.batch_triplet_loss, batch_triplet_oracle, {"margin": 0.3, "mining": "hard"}),
    (funcloss.multi_similarity_loss, multi_similarity_oracle, {}),
    (funcloss.circle_loss, circle_oracle, {}),
]


@pytest.mark.parametrize(("loss", "oracle", "config"), PAIR_ORACLES)
def test_pair_losses_against_the_naive_oracles_on_a_larger_batch(loss, oracle, config) -> None:
    """24 samples of 4 groups (some anchors without a positive): the registry's draws are 5."""
    x = _batch(24, 5, seed=1)
    labels = torch.randint(0, 6, (24,), generator=torch.Generator().manual_seed(2))
    for reduction in ("none", "mean", "sum"):
        assert_close(
            loss(x, labels, **config, reduction=reduction),
            oracle(x, labels, **config, reduction=reduction),
            reduction,
        )


def test_triplet_mean_counts_only_the_non_zero_triplets() -> None:
    """PML's AvgNonZeroReducer: with a margin so large that every triplet is active the mean is
    the plain mean; a margin of -2 (every triplet satisfied) gives 0, not NaN."""
    x, labels = _batch(8, 3, seed=3), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    triplets = sum(
        int(labels[p] == labels[a]) * int(labels[n] != labels[a])
        for a in range(8)
        for p in range(8)
        for n in range(8)
        if p != a
    )
    total = funcloss.batch_triplet_loss(x, labels, margin=5.0, reduction="sum")
    assert_close(funcloss.batch_triplet_loss(x, labels, margin=5.0), total / triplets)
    value, g, forward, h = _all_derivatives(funcloss.batch_triplet_loss, x, labels, margin=-2.0)
    assert value == 0 and (g == 0).all() and (forward == 0).all() and (h == 0).all()


def test_batch_hard_is_the_hardest_of_the_all_triplets() -> None:
    """Each anchor's batch-hard term is the largest of its triplet terms."""
    x, labels = _batch(10, 4, seed=4), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    hard = funcloss.batch_triplet_loss(x, labels, margin=0.4, mining="hard", reduction="none")
    u = x / x.norm(dim=-1, keepdim=True)
    distance = (u[:, None] - u[None]).norm(dim=-1)
    for a in range(10):
        terms = [
            torch.relu(distance[a, p] - distance[a, n] + 0.4)
            for p in range(10)
            if p != a and labels[p] == labels[a]
            for n in range(10)
            if labels[n] != labels[a]
        ]
        assert_close(hard[a], max(terms))


def test_contrastive_pulls_coincident_positives_with_zero_gradient() -> None:
    """Distance 0 between positives: a loss of 0 and a gradient of 0 (the cone's subgradient),
    in both modes, also in float32."""
    x = _batch(4, 3)
    x[1] = x[0]
    labels = torch.tensor([0, 0, 1, 1])
    for dtype in (f64, torch.float32):
        e = x.to(dtype)

        def positives_only(z):
            return funcloss.contrastive_loss(z, labels, neg_margin=0.0, reduction="none")[:2]

        assert (positives_only(e) == 0).all()
        assert (jacrev(positives_only)(e) == 0).all() and (jacfwd(positives_only)(e) == 0).all()


# -- edge inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("loss", BATCH)
@pytest.mark.parametrize(
    "labels",
    [torch.arange(6), torch.zeros(6, dtype=torch.int64), torch.tensor([4])],
    ids=["no-positive", "no-negative", "one-sample"],
)
def test_no_positive_or_no_negative_pair_gives_zero_with_zero_gradient(loss, labels) -> None:
    x = _batch(len(labels))
    for reduction in ("mean", "sum", "none"):
        value, g, forward, h = _all_derivatives(loss, x, labels, reduction=reduction)
        assert value == 0, (reduction, value)
        assert (g == 0).all() and (forward == 0).all() and (h == 0).all()


@pytest.mark.parametrize("loss", BATCH)
def test_zero_and_coincident_embeddings_are_finite(loss) -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    zeros = torch.zeros(6, 3, dtype=f64)
    coincident = _batch(6, 3)
    coincident[1] = coincident[0]  # a positive pair at distance 0
    coincident[2] = coincident[0]  # a negative pair at distance 0
    partly_zero = _batch(6, 3)
    partly_zero[3] = 0.0
    for x in (zeros, coincident, partly_zero):
        for reduction in ("mean", "sum"):
            _assert_finite(*_all_derivatives(loss, x, labels, reduction=reduction))
            x32 = x.float()
            _assert_finite(grad(lambda e, r=reduction: loss(e, labels, reduction=r))(x32))


@pytest.mark.parametrize("loss", BATCH)
def test_huge_float32_embeddings_match_float64(loss) -> None:
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = _batch(6, 3)
    big = (x / x.abs().amax() * 3e38).float()
    value = loss(big, labels)
    assert torch.isfinite(value)
    assert_close(value.double(), loss(big.double(), labels), rtol=1e-5)


@pytest.mark.parametrize("loss", BATCH)
@pytest.mark.parametrize("poison", [math.inf, -math.inf, math.nan])
def test_masked_sample_reaches_nothing(loss, poison: float) -> None:
    x, labels = _batch(), torch.tensor([0, 0, 1, 1, 2, 0])
    where = torch.tensor([True, True, False, True, True, False])
    bad = torch.where(where[:, None], x, poison)
    kept = where.nonzero().squeeze(1)
    for reduction in ("mean", "sum"):
        value, g, forward, h = _all_derivatives(loss, bad, labels, reduction=reduction, where=where)
        _assert_finite(value, g, forward, h)
        assert (g[~where] == 0).all() and (forward[~where] == 0).all()
        sliced = _all_derivatives(loss, x[kept], labels[kept], reduction=reduction)
        assert_close(value, sliced[0], "value = sliced batch")
        assert_close(g[kept], sliced[1], "grad = sliced batch")
        assert_close(h[kept][:, :, kept], sliced[3], "hessian = sliced batch")


@pytest.mark.parametrize("loss", BATCH)
def test_forward_mode_keeps_float32(loss) -> None:
    x, labels = _batch().float(), torch.tensor([0, 0, 1, 1, 2, 2])
    for reduction in ("mean", "none"):
        jacobian = jacfwd(lambda e, reduction=reduction: loss(e, labels, reduction=reduction))(x)
        assert jacobian.dtype == torch.float32
        reverse = jacrev(lambda e, reduction=reduction: loss(e, labels, reduction=reduction))(x)
        # float32 rounding, relative to the Jacobian's scale (an entry that is a cancellation of
        # larger terms is only known to that: batch-hard's differ by 1e-8 of 0.1)
        scale = 10 * torch.finfo(torch.float32).eps * float(reverse.abs().amax())
        torch.testing.assert_close(jacobian, reverse, rtol=1e-4, atol=scale)


# -- vmap, both forms ------------------------------------------------------------------------


@pytest.mark.parametrize("loss", BATCH)
def test_vmap_over_a_stack_of_batches(loss) -> None:
    """One problem per batch member: embeddings (B, N, D), labels (B, N)."""
    x = torch.stack([_batch(seed=s) for s in range(3)])
    labels = torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5], [1, 1, 1, 0, 0, 2]])
    for reduction in ("none", "mean"):

        def f(e, y, reduction=reduction):
            return loss(e, y, reduction=reduction)

        looped = torch.stack([f(x[b], labels[b]) for b in range(3)])
        assert_close(vmap(f)(x, labels), looped, "vmap")
        per_batch = vmap(grad(lambda e, y: f(e, y).sum()))(x, labels)
        assert_close(
            per_batch,
            torch.stack([grad(lambda e, b=b: f(e, labels[b]).sum())(x[b]) for b in range(3)]),
        )


@pytest.mark.parametrize("loss", BATCH)
def test_vmap_over_an_ensemble_with_shared_labels(loss) -> None:
    """An ensemble of E models' embeddings (E, N, D) against one label vector: the form that
    exposes data-dependent control flow (PML's losses fail it, test_anchors_contrastive.py)."""
    x = torch.stack([_batch(seed=s) for s in range(4)])
    labels = torch.tensor([0, 0, 1, 1, 2, 0])
    where = torch.tensor([True, True, True, False, True, True])

    def f(e):
        return loss(e, labels, where=where)

    looped = torch.stack([f(x[m]) for m in range(4)])
    assert_close(vmap(f)(x), looped, "vmap")
    assert_close(vmap(grad(f))(x), torch.stack([grad(f)(x[m]) for m in range(4)]), "vmap(grad)")


# -- modules ---------------------------------------------------------------------------------


def test_modules_hold_the_temperature() -> None:
    x, labels = _batch(), torch.tensor([0, 0, 1, 1, 2, 2])
    assert_close(funcloss.nn.SupConLoss(0.3)(x, labels), funcloss.supcon_loss(x, labels, 0.3))
    assert_close(
        funcloss.nn.NTXentLoss(temperature=0.2, reduction="sum")(x, labels),
        funcloss.ntxent_loss(x, labels, 0.2, "sum"),
    )
    assert "temperature=0.3" in repr(funcloss.nn.SupConLoss(0.3))


# -- info_nce_loss ---------------------------------------------------------------------------


def test_info_nce_in_batch_is_cross_entropy_over_the_keys() -> None:
    q, k = _batch(5, 3, seed=4), _batch(5, 3, seed=5)
    unit_q = q / q.norm(dim=-1, keepdim=True)
    unit_k = k / k.norm(dim=-1, keepdim=True)
    logits = unit_q @ unit_k.T / 0.3
    target = torch.arange(5)
    expected = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    assert_close(funcloss.info_nce_loss(q, k, temperature=0.3, reduction="none"), expected)
    backward = torch.nn.functional.cross_entropy(logits.T, target, reduction="none")
    assert_close(
        funcloss.info_nce_loss(q, k, temperature=0.3, symmetric=True, reduction="none"),
        (expected + backward) / 2,
    )
    # shared negatives = the same negatives given per query
    negatives = _batch(4, 3, seed=6)
    assert_close(
        funcloss.info_nce_loss(q, k, negatives, reduction="none"),
        funcloss.info_nce_loss(q, k, negatives.expand(5, 4, 3), reduction="none"),
    )


@pytest.mark.parametrize("negatives", [None, "shared", "per-query"])
def test_info_nce_edges(negatives) -> None:
    q, k = _batch(5, 3, seed=4), _batch(5, 3, seed=5)
    extra = {None: (), "shared": (_batch(4, 3),), "per-query": (_batch(20, 3).reshape(5, 4, 3),)}
    args = extra[negatives]
    keys = torch.zeros(5, 3, dtype=f64)  # zero keys: cosines 0, finite derivatives
    for query in (torch.zeros(5, 3, dtype=f64), q):
        value, g, forward, h = _all_derivatives(
            lambda e, _labels, **kw: funcloss.info_nce_loss(e, keys, *args, **kw), query, None
        )
        _assert_finite(value, g, forward, h)
    where = torch.tensor([True, False, True, True, False])
    bad_q = torch.where(where[:, None], q, math.nan)
    bad_k = torch.where(where[:, None], k, math.inf)
    if negatives == "per-query":
        args = (torch.where(where[:, None, None], args[0], math.nan),)

    def total(x):
        return funcloss.info_nce_loss(x, bad_k, *args, where=where)

    value, g, h = total(bad_q), grad(total)(bad_q), hessian(total)(bad_q)
    _assert_finite(value, g, h)
    assert (g[~where] == 0).all()
    kept = where.nonzero().squeeze(1)
    sliced = [a[kept] if a.dim() == 3 else a for a in args]
    assert_close(value, funcloss.info_nce_loss(q[kept], k[kept], *sliced))


# -- arcface_loss, cosface_loss --------------------------------------------------------------


def test_zero_margins_are_scaled_cross_entropy() -> None:
    cosine = torch.rand(6, 4, generator=torch.Generator().manual_seed(0), dtype=f64) * 2 - 1
    target = torch.tensor([0, 1, 2, 3, 0, 1])
    expected = torch.nn.functional.cross_entropy(8.0 * cosine, target, reduction="none")
    for fn in (funcloss.arcface_loss, funcloss.cosface_loss):
        assert_close(fn(cosine, target, 0.0, 8.0, reduction="none"), expected)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_at_cos_plus_minus_one_is_finite(easy_margin: bool) -> None:
    cosine = torch.rand(4, 3, generator=torch.Generator().manual_seed(1), dtype=f64) * 2 - 1
    target = torch.tensor([0, 1, 2, 0])
    cosine[0, 0], cosine[1, 1], cosine[2, 0], cosine[3, 1] = 1.0, -1.0, 1.0, -1.0
    for reduction in ("mean", "sum"):

        def total(x, reduction=reduction):
            return funcloss.arcface_loss(x, target, easy_margin=easy_margin, reduction=reduction)

        value, g, forward = total(cosine), grad(total)(cosine), jacfwd(total)(cosine)
        h = hessian(total)(cosine)
        _assert_finite(value, g, forward, h)
        assert_close(g, forward)
    # at cos = 1 the margin gives cos(m): the value is the limit from inside
    inside = cosine.clone()
    inside[0, 0] = 1 - 1e-12
    assert_close(funcloss.arcface_loss(inside, target), funcloss.arcface_loss(cosine, target))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosface_keeps_the_margin_of_huge_cosines(dtype) -> None:
    # test_huge_inputs_in_float32[cosface_loss] drew cosines near -4e31 with the target's and
    # another class's equal: c - m rounds to c there (in float64 too), and the loss was log 2;
    # the margin is in the difference of the cosines, (c_j - c_y + m) s = s m
    cosines = torch.tensor([[-4e31, -4e31], [3e38, 3e38], [1e20, -1e20]], dtype=dtype)
    x = cosines.clone().requires_grad_()
    loss = funcloss.cosface_loss(x, torch.tensor([0, 1, 1]), reduction="none")
    s_m = torch.tensor(64 * 0.35, dtype=torch.float64)
    tie = s_m + torch.log1p(torch.exp(-s_m))
    truth = torch.stack([tie, tie, (2e20 + 0.35) * 64 * torch.ones((), dtype=torch.float64)])
    torch.testing.assert_close(loss.double(), truth, rtol=1e-6, atol=0.0)
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    share = 64 * torch.sigmoid(s_m)  # the other class's softmax weight, times s
    truth = torch.tensor([[-share, share], [share, -share], [64.0, -64.0]], dtype=torch.float64)
    torch.testing.assert_close(gradient.double(), truth, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("loss", [funcloss.cosface_loss, funcloss.arcface_loss])
def test_margin_softmax_keeps_a_small_loss_precise(loss) -> None:
    # a well-separated row's loss is log(1 + e), e << 1: float32 within 1e-5 of float64 (the
    # margin's own float32 rounding, times the scale, bounds it near 1e-6; the log of a rounded
    # 1 + e was off by 2e-4 at e = 1.4e-4, a random draw of
    # test_float32_matches_oracle[cosface_loss] found the row [0.5, 0, 0], and float32 and
    # float64 alike gave 0 at e = 1e-31), and the gradient is float64's
    cosines = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.96875, -0.5, -0.5]])
    target = torch.tensor([0, 1, 0])
    x32 = cosines.clone().requires_grad_()
    x64 = cosines.double().requires_grad_()
    value32, value64 = loss(x32, target, reduction="none"), loss(x64, target, reduction="none")
    # the truth, log1p of the other classes' terms in float64 (default margins, scale 64)
    c = cosines.double()
    picked = c.gather(1, target[:, None])
    if loss is funcloss.cosface_loss:
        modified = picked - 0.35
    else:
        modified = torch.cos(torch.acos(picked) + 0.5)
    others = torch.ones_like(c, dtype=torch.bool).scatter_(1, target[:, None], False)
    terms = torch.where(others, torch.exp(64 * (c - modified)), 0.0)
    truth = torch.log1p(terms.sum(1))
    small = truth < 1e-3
    assert bool(small.any())
    for value in (value32, value64):
        torch.testing.assert_close(value.double()[small], truth[small], rtol=1e-5, atol=0.0)
    (g32,) = torch.autograd.grad(value32.sum(), x32)
    (g64,) = torch.autograd.grad(value64.sum(), x64)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-5, atol=1e-9)
