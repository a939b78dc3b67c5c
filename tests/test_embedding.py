"""Golden values, parity with torch and subgradients at the kinks: embedding and margin losses."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torch.func import grad, hessian, vmap

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .registry import Case, LossSpec
from .specs_embedding import (
    SPECS,
    cosine_distance,
    exact_triplet_row,
    squared_euclidean,
    triplet_limit,
)

f64 = torch.float64


def _t(values: Any, dtype: torch.dtype = f64) -> Tensor:
    return torch.tensor(values, dtype=dtype)


X1 = _t([0.5, -1.0, 2.0, 0.0])
X2 = _t([1.0, 1.5, -0.5, 0.25])
SIGNS = _t([1.0, -1.0, 1.0, -1.0])
SCORES = _t([[2.0, -0.5, 0.0], [-3.0, 1.0, 4.0]])
MULTI = _t([[0.1, 0.2, 0.4, 0.8], [0.5, -0.3, 0.9, 0.0]])
ANCHOR = _t([[1.0, 2.0, 0.0], [0.5, -1.0, 1.0]])
POSITIVE = _t([[2.0, 1.0, -1.0], [0.0, 1.0, 1.0]])
NEGATIVE = _t([[0.0, 0.5, 1.0], [1.0, 1.0, 0.0]])

# (id, function, args, kwargs, expected "none" values); every value from torch 2.13's own loss
# of the same name (torch.nn.functional) on the same arguments, float64.
GOLDEN = [
    # torch 2.13 F.margin_ranking_loss
    ("margin_ranking", funcloss.margin_ranking_loss, (X1, X2, SIGNS), {"margin": 0.5},
     [1.0, 0.0, 0.0, 0.25]),
    # torch 2.13 F.hinge_embedding_loss (target 0 gets both terms)
    ("hinge_embedding", funcloss.hinge_embedding_loss,
     (_t([0.3, 1.5, -0.2, 0.8]), torch.tensor([1, -1, -1, 0])), {}, [0.3, 0.0, 1.2, 1.0]),
    # torch 2.13 F.soft_margin_loss
    ("soft_margin", funcloss.soft_margin_loss, (SCORES, torch.tensor([[1, -1, 1], [1, 1, -1]])),
     {}, [[0.1269280110429725, 0.4740769841801067, 0.6931471805599453],
          [3.048587351573742, 0.31326168751822286, 4.0181499279178094]]),
    # torch 2.13 F.multilabel_soft_margin_loss
    ("multilabel_soft_margin", funcloss.multilabel_soft_margin_loss,
     (SCORES, _t([[1, 0, 1], [0, 0, 1]])), {"weight": _t([1.0, 2.0, 0.5])},
     [0.47388518989438616, 0.8947285635230308]),
    # torch 2.13 F.multilabel_margin_loss (labels after the first -1 are ignored)
    ("multilabel_margin", funcloss.multilabel_margin_loss,
     (MULTI, torch.tensor([[3, 0, -1, 1], [2, -1, 0, 0]])), {}, [0.85, 0.175]),
    # torch 2.13 F.multi_margin_loss
    ("multi_margin-p1", funcloss.multi_margin_loss, (MULTI, torch.tensor([3, 1])),
     {"margin": 0.9, "weight": _t([1.0, 2.0, 0.5, 1.5])}, [0.375, 2.5]),
    ("multi_margin-p2", funcloss.multi_margin_loss, (MULTI, torch.tensor([3, 1])),
     {"p": 2, "margin": 0.9, "weight": _t([1.0, 2.0, 0.5, 1.5])}, [0.1425, 4.37]),
    # torch 2.13 F.cosine_embedding_loss
    ("cosine_embedding", funcloss.cosine_embedding_loss,
     (ANCHOR, POSITIVE, torch.tensor([1, -1])), {"margin": -0.2}, [0.26970325665991246, 0.2]),
    # torch 2.13 F.triplet_margin_loss
    ("triplet_margin", funcloss.triplet_margin_loss, (ANCHOR, POSITIVE, NEGATIVE),
     {"margin": 1.5}, [1.1704978445036116, 1.2702648923777442]),
    ("triplet_margin-p1-swap", funcloss.triplet_margin_loss, (ANCHOR, POSITIVE, NEGATIVE),
     {"margin": 1.5, "p": 1, "swap": True}, [1.0000000000000004, 2.0]),
    # torch 2.13 F.triplet_margin_with_distance_loss
    ("triplet_margin_with_distance", funcloss.triplet_margin_with_distance_loss,
     (ANCHOR, POSITIVE, NEGATIVE), {}, [0.6704978445036116, 0.7702648923777442]),
    ("triplet_margin_with_distance-l1-swap", funcloss.triplet_margin_with_distance_loss,
     (ANCHOR, POSITIVE, NEGATIVE),
     {"distance_function": lambda u, v: (u - v).abs().sum(-1), "margin": 2.0, "swap": True},
     [1.5, 2.5]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in GOLDEN],
)
def test_golden_values(fn, args, kwargs, expected) -> None:
    expected = _t(expected)
    assert_close(fn(*args, **kwargs, reduction="none"), expected, "none", rtol=1e-12)
    assert_close(fn(*args, **kwargs, reduction="sum"), expected.sum(), "sum", rtol=1e-12)
    assert_close(fn(*args, **kwargs), expected.mean(), "mean (the default)", rtol=1e-12)


# -- float32 parity with torch (the transform matrix runs in float64) --------------------------

SPEC_PARAMS = [pytest.param(spec, id=spec.id) for spec in SPECS]


def _float32(case: Case) -> Case:
    def cast(value: Any) -> Any:
        if isinstance(value, Tensor) and value.is_floating_point():
            return value.float()
        return value

    return Case(tuple(map(cast, case.args)), {k: cast(v) for k, v in case.kwargs.items()})


def _value_and_gradients(spec: LossSpec, fn: Any, case: Case, reduction: str):
    args = [a.detach().requires_grad_() if i in spec.wrt else a for i, a in enumerate(case.args)]
    value = fn(*args, **case.kwargs, reduction=reduction)
    gradients = torch.autograd.grad(value.sum(), [args[i] for i in spec.wrt])
    return value, gradients


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@given(data=st.data())
def test_float32_matches_torch(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _float32(data.draw(spec.cases(), label="case"))
    value, gradients = _value_and_gradients(spec, spec.fn, case, reduction)
    expected_value, expected_gradients = _value_and_gradients(spec, spec.oracle, case, reduction)
    assert value.dtype == expected_value.dtype == torch.float32
    torch.testing.assert_close(value, expected_value, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gradients, expected_gradients, rtol=1e-5, atol=1e-5)


# -- subgradients at the kinks (pinned: the Hypothesis draws stay off them) --------------------


def _gradients(
    fn: Any, inputs: tuple[Tensor, ...], targets: tuple[Tensor, ...] = (), **kwargs: Any
) -> tuple[Tensor, ...]:
    """Gradients of ``fn(*inputs, *targets, reduction="sum")`` with respect to ``inputs``."""
    leaves = [x.detach().requires_grad_() for x in inputs]
    return torch.autograd.grad(fn(*leaves, *targets, **kwargs, reduction="sum"), leaves)


def _torchs_subgradient(
    ours: Any, theirs: Any, inputs: tuple[Tensor, ...], targets: tuple[Tensor, ...] = (), **kw: Any
) -> tuple[Tensor, ...]:
    result = _gradients(ours, inputs, targets, **kw)
    assert_close(result, _gradients(theirs, inputs, targets, **kw), "torch's subgradient")
    return result


def test_margin_ranking_kink_counts_as_active() -> None:
    # -y (x1 - x2) + margin = 0 in the first entry: torch's clamp_min passes the gradient.
    inputs, signs = (_t([1.0, 2.0]), _t([1.0, 1.5])), _t([1.0, 1.0])
    g1, g2 = _torchs_subgradient(
        funcloss.margin_ranking_loss, F.margin_ranking_loss, inputs, (signs,), margin=0.0
    )
    assert_close(g1, _t([-1.0, 0.0]), "d/dx1")
    assert_close(g2, _t([1.0, 0.0]), "d/dx2")
    g1, _ = _torchs_subgradient(
        funcloss.margin_ranking_loss, F.margin_ranking_loss, (_t([1.0]), _t([1.5])), (_t([1.0]),),
        margin=0.5,
    )  # fmt: skip
    assert_close(g1, _t([-1.0]), "d/dx1 at margin 0.5")


def test_hinge_embedding_kink_counts_as_active() -> None:
    (g,) = _torchs_subgradient(
        funcloss.hinge_embedding_loss, F.hinge_embedding_loss, (_t([1.0, 1.0]),), (_t([-1, 1]),)
    )
    assert_close(g, _t([-1.0, 1.0]), "d/dx at x = margin")


def test_cosine_embedding_kink_counts_as_active() -> None:
    # cos = 0 = margin for a dissimilar pair: the hinge's gradient d cos / d x1 = (0, 1) flows.
    g1, _ = _torchs_subgradient(
        funcloss.cosine_embedding_loss, F.cosine_embedding_loss,
        (_t([[1.0, 0.0]]), _t([[0.0, 1.0]])), (_t([-1.0]),),
    )  # fmt: skip
    assert_close(g1, _t([[0.0, 1.0]]), "d/dx1 at cos = margin")


def test_cosine_embedding_at_zero_vector_is_torchs() -> None:
    # torch's epsilon (float32 1e-12) keeps the loss finite at a zero embedding.
    inputs = (torch.zeros(2, 3, dtype=f64), _t([[1.0, 2.0, 3.0], [0.5, 0.0, 1.0]]))
    signs = torch.tensor([-1, 1])
    assert_close(
        funcloss.cosine_embedding_loss(*inputs, signs, reduction="none"),
        F.cosine_embedding_loss(*inputs, signs, reduction="none"),
        "value",
        rtol=1e-12,
    )
    g1, _ = _torchs_subgradient(
        funcloss.cosine_embedding_loss, F.cosine_embedding_loss, inputs, (signs,)
    )
    assert bool(g1.isfinite().all())


def test_triplet_kink_counts_as_active() -> None:
    # margin + d(a, p) - d(a, n) = 1 + 1 - 2 = 0: the gradient flows,
    # d/da = (a - p)/|a - p| - (a - n)/|a - n| = (-1, 1).
    triplet = (_t([[0.0, 0.0]]), _t([[1.0, 0.0]]), _t([[0.0, 2.0]]))
    ga, gp, gn = _torchs_subgradient(
        funcloss.triplet_margin_loss, F.triplet_margin_loss, triplet, margin=1.0, eps=0.0
    )
    assert_close(ga, _t([[-1.0, 1.0]]), "d/da")
    assert_close(gp, _t([[1.0, 0.0]]), "d/dp")
    assert_close(gn, _t([[0.0, -1.0]]), "d/dn")
    shifted = (triplet[0] - 1e-6, *triplet[1:])  # the default distance adds eps = 1e-6
    ga, _, _ = _torchs_subgradient(
        funcloss.triplet_margin_with_distance_loss, F.triplet_margin_with_distance_loss, shifted
    )
    assert_close(ga, _t([[-1.0, 1.0]]), "d/da, default distance")


def test_triplet_swap_tie_splits_the_gradient() -> None:
    # d(a, n) = d(p, n) = sqrt(1.25): torch.minimum gives each half the gradient.
    triplet = (_t([[0.0, 0.0]]), _t([[1.0, 0.0]]), _t([[0.5, 1.0]]))
    ga, _, gn = _torchs_subgradient(
        funcloss.triplet_margin_loss, F.triplet_margin_loss, triplet, eps=0.0, swap=True
    )
    unit = _t([[-0.5, -1.0]]) / 1.25**0.5  # (a - n) / |a - n|
    assert_close(ga, _t([[-1.0, 0.0]]) - unit / 2, "d/da")
    # d/dn = -(1/2 (n - a)/|n - a| + 1/2 (n - p)/|n - p|) = -(0, 1)/sqrt(1.25)
    assert_close(gn, _t([[0.0, -1.0]]) / 1.25**0.5, "d/dn: half from each distance")


def test_triplet_zero_difference_has_zero_subgradient() -> None:
    # With eps = 0 and a == p the norm is at 0, where torch's norm gradient is 0.
    triplet = (_t([[1.0, 2.0]]), _t([[1.0, 2.0]]), _t([[3.0, 2.0]]))
    for p in (1.0, 2.0, 3.0):
        _, gp, _ = _torchs_subgradient(
            funcloss.triplet_margin_loss, F.triplet_margin_loss, triplet, p=p, eps=0.0, margin=3.0
        )
        assert_close(gp, torch.zeros(1, 2, dtype=f64), f"d/dp, p={p}")


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_kink_is_inactive(p: int) -> None:
    # margin - x_y + x_1 = 1 - 1 + 0 = 0: torch counts a hinge only when it is > 0.
    (g,) = _torchs_subgradient(
        funcloss.multi_margin_loss, F.multi_margin_loss,
        (_t([[1.0, 0.0, 0.5]]),), (torch.tensor([0]),), p=p,
    )  # fmt: skip
    slope = 1.0 if p == 1 else 2 * 0.5
    assert_close(g, _t([[-slope, 0.0, slope]]) / 3, "d/dx")


def test_multilabel_margin_kink_is_inactive() -> None:
    # 1 - (x_0 - x_1) = 0 for label 0 and class 1: no gradient, as in torch.
    (g,) = _torchs_subgradient(
        funcloss.multilabel_margin_loss, F.multilabel_margin_loss,
        (_t([[1.0, 0.0, 0.5]]),), (torch.tensor([[0, -1, 0]]),),
    )  # fmt: skip
    assert_close(g, _t([[-1.0, 0.0, 1.0]]) / 3, "d/dx")


# -- where=: the fills of masked rows (the Hypothesis draws keep eps in {0, 1e-6, 0.1}) --------


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, float("inf")])
@pytest.mark.parametrize("eps", [0.0, 1.0, -2.0, 0.5])
def test_triplet_masked_rows_are_smooth_for_any_eps(p: float, eps: float) -> None:
    """Masked rows holding NaN: value and hessian as for the included rows alone (eps = 1 would
    put fills 0, 1, 2 at the norm's 0, where torch's hessian of a 1 < p < 2 norm is NaN)."""
    generator = torch.Generator().manual_seed(0)
    anchor, positive, negative = torch.randn(3, 3, 2, generator=generator, dtype=f64)
    where = torch.tensor([True, False, True])
    bad = [torch.where(where[:, None], x, float("nan")) for x in (anchor, positive, negative)]
    kwargs = {"p": p, "eps": eps, "swap": True, "reduction": "sum"}
    for position in range(3):

        def masked(x, position=position):
            args = list(bad)
            args[position] = x
            return funcloss.triplet_margin_loss(*args, **kwargs, where=where)

        def kept(x, position=position):
            args = [value[where] for value in (anchor, positive, negative)]
            args[position] = x
            return funcloss.triplet_margin_loss(*args, **kwargs)

        hessian_masked = hessian(masked)(bad[position])
        assert torch.isfinite(hessian_masked).all()
        assert (hessian_masked[~where] == 0).all() and (hessian_masked[:, :, ~where] == 0).all()
        expected = hessian(kept)((anchor, positive, negative)[position][where])
        assert_close(hessian_masked[where][:, :, where], expected)
        assert_close(masked(bad[position]), kept((anchor, positive, negative)[position][where]))


def test_cosine_masked_rows_are_smooth() -> None:
    """Masked rows holding inf: finite hessian, as for the included rows alone."""
    generator = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(2, 3, 4, generator=generator, dtype=f64)
    target, where = torch.tensor([1, -1, -1]), torch.tensor([False, True, True])
    bad1 = torch.where(where[:, None], x1, float("inf"))

    def masked(x):
        return funcloss.cosine_embedding_loss(x, x2, target, 0.1, reduction="sum", where=where)

    def kept(x):
        return funcloss.cosine_embedding_loss(x, x2[where], target[where], 0.1, reduction="sum")

    hessian_masked = hessian(masked)(bad1)
    assert torch.isfinite(hessian_masked).all()
    assert_close(hessian_masked[where][:, :, where], hessian(kept)(x1[where]))


# -- multilabel_margin_loss: the -1 padding, against a naive loop -----------------------------


def _naive_multilabel_margin(input: Tensor, target: Tensor) -> Tensor:
    """The textbook double loop, row by row, in float64 (an oracle independent of torch's)."""
    losses = []
    for scores, row in zip(
        input.reshape(-1, input.shape[-1]).tolist(),
        target.reshape(-1, input.shape[-1]).tolist(),
        strict=True,
    ):
        labels = row[: row.index(-1)] if -1 in row else row
        total = 0.0
        for j in labels:
            for i in range(len(scores)):
                if i not in labels:
                    total += max(0.0, 1.0 - (scores[j] - scores[i]))
        losses.append(total / len(scores))
    return _t(losses).reshape(input.shape[:-1])


@given(data=st.data())
def test_multilabel_margin_matches_the_naive_loop(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 9))
    x = torch.tensor(data.draw(st.lists(st.integers(-6, 6), min_size=n * c, max_size=n * c)))
    x = x.reshape(n, c).to(f64) / 4  # quarter steps: ties and exact kinks are common
    y = torch.tensor(
        data.draw(st.lists(st.integers(-1, c - 1), min_size=n * c, max_size=n * c))
    ).reshape(n, c)
    assert_close(
        funcloss.multilabel_margin_loss(x, y, reduction="none"),
        _naive_multilabel_margin(x, y),
        "vs loop",
    )
    assert_close(
        funcloss.multilabel_margin_loss(x, y, reduction="none"),
        F.multilabel_margin_loss(x, y, reduction="none"),
        "vs torch",
    )
    _torchs_subgradient(funcloss.multilabel_margin_loss, F.multilabel_margin_loss, (x,), (y,))


def test_multilabel_margin_padding() -> None:
    x = _t([[0.1, 0.2, 0.4, 0.8]])
    loss = funcloss.multilabel_margin_loss
    # Only the labels before the first -1 count; what follows it is ignored.
    assert_close(loss(x, torch.tensor([[3, 0, -1, 1]])), loss(x, torch.tensor([[3, 0, -1, 2]])))
    assert_close(loss(x, torch.tensor([[-1, 0, 1, 2]])), _t(0.0), "no labels")
    # A label listed twice counts twice (torch 2.13 F.multilabel_margin_loss: 0.3333, 0.1667).
    assert_close(loss(_t([[1.0, 0.0, 0.5]]), torch.tensor([[0, 0, -1]])), _t(1 / 3))
    assert_close(loss(_t([[1.0, 0.0, 0.5]]), torch.tensor([[0, -1, 0]])), _t(1 / 6))


def test_multilabel_margin_compiled_is_right_where_torchs_is_not() -> None:
    # torch 2.13 compiles its own multilabel_margin_loss to a decomposition that also counts the
    # label slots after the first -1 (as if they held class 0).
    x = _t([[0.1, 0.2, 0.4, 0.8], [0.5, -0.3, 0.9, 0.0]])
    y = torch.tensor([[3, 0, -1, 1], [2, -1, 0, 0]])
    torch._dynamo.reset()
    ours = torch.compile(funcloss.multilabel_margin_loss, fullgraph=True, backend="aot_eager")
    assert_close(ours(x, y, reduction="none"), _t([0.85, 0.175]), "ours, compiled")


# -- shapes, dtypes, modules -----------------------------------------------------------------


def test_unbatched_equals_a_batch_of_one() -> None:
    cases = [
        (funcloss.multi_margin_loss, (MULTI[0], torch.tensor(3)), {"p": 2}),
        (funcloss.multilabel_margin_loss, (MULTI[0], torch.tensor([3, 0, -1, 1])), {}),
        (funcloss.cosine_embedding_loss, (ANCHOR[0], POSITIVE[0], torch.tensor(-1)), {}),
        (funcloss.triplet_margin_loss, (ANCHOR[0], POSITIVE[0], NEGATIVE[0]), {}),
        (funcloss.triplet_margin_with_distance_loss, (ANCHOR[0], POSITIVE[0], NEGATIVE[0]), {}),
        (funcloss.multilabel_soft_margin_loss, (SCORES[0], _t([1, 0, 1])), {}),
        (funcloss.margin_ranking_loss, (X1[0], X2[0], SIGNS[0]), {}),
    ]
    for fn, args, kwargs in cases:
        single = fn(*args, **kwargs, reduction="none")
        batch = fn(*(a.unsqueeze(0) for a in args), **kwargs, reduction="none")
        assert single.shape == batch.shape[1:], fn.__name__
        assert_close(single, batch[0], fn.__name__)


def test_triplet_takes_extra_dimensions_as_torch_does() -> None:
    a, p, n = torch.randn(3, 2, 4, 5, dtype=f64).unbind(0)
    for swap in (False, True):
        expected = F.triplet_margin_loss(a, p, n, swap=swap, reduction="none")
        assert_close(funcloss.triplet_margin_loss(a, p, n, swap=swap, reduction="none"), expected)


def test_integer_and_float_sign_targets_agree() -> None:
    signs = torch.tensor([1, -1, 1, -1])
    for fn, args in [
        (funcloss.margin_ranking_loss, (X1, X2)),
        (funcloss.hinge_embedding_loss, (X1,)),
        (funcloss.soft_margin_loss, (X1,)),
    ]:
        assert_close(fn(*args, signs), fn(*args, signs.to(f64)), fn.__name__)
    x32 = X1.float()
    assert funcloss.soft_margin_loss(x32, signs).dtype == torch.float32


def test_soft_margin_does_not_overflow() -> None:
    x = torch.tensor([-100.0, 100.0], dtype=torch.float32)
    y = torch.tensor([1.0, 1.0])
    # torch 2.13 F.soft_margin_loss gives [inf, 0] (log1p(exp(100)) overflows in float32).
    assert_close(funcloss.soft_margin_loss(x, y, reduction="none"), torch.tensor([100.0, 0.0]))


def test_per_sample_gradients_of_multilabel_margin() -> None:
    # The vmap(grad) that DP-SGD needs; torch's own kernel has no batching rule.
    x = _t([[0.1, 0.2, 0.4, 0.8], [0.5, -0.3, 0.9, 0.0]])
    y = torch.tensor([[3, 0, -1, 1], [2, -1, 0, 0]])
    per_sample = vmap(grad(funcloss.multilabel_margin_loss))(x, y)
    for i in range(2):
        (expected,) = _gradients(F.multilabel_margin_loss, (x[i],), (y[i],))
        assert_close(per_sample[i], expected, f"sample {i}")


def test_hessian_of_a_piecewise_linear_hinge_is_zero() -> None:
    # torch's own multi_margin_loss has no forward-mode or double-backward rule at all.
    hessian_matrix = hessian(funcloss.multi_margin_loss)(MULTI, torch.tensor([3, 2]))
    assert_close(hessian_matrix, torch.zeros(2, 4, 2, 4, dtype=f64))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (fnn.MarginRankingLoss(margin=0.5), "MarginRankingLoss(margin=0.5, reduction='mean')"),
        (fnn.MultiMarginLoss(p=2), "MultiMarginLoss(p=2, margin=1.0, weight=None, "
         "reduction='mean')"),
        (fnn.TripletMarginWithDistanceLoss(distance_function=cosine_distance, swap=True),
         "TripletMarginWithDistanceLoss(distance_function=cosine_distance, margin=1.0, "
         "swap=True, reduction='mean')"),
    ],
)  # fmt: skip
def test_module_repr(module: torch.nn.Module, expected: str) -> None:
    assert repr(module) == expected


def test_distance_function_is_module_config() -> None:
    module = fnn.TripletMarginWithDistanceLoss(distance_function=squared_euclidean, margin=0.5)
    assert module.state_dict() == {}
    a, p, n = ANCHOR, POSITIVE, NEGATIVE
    expected = F.triplet_margin_with_distance_loss(
        a, p, n, distance_function=squared_euclidean, margin=0.5
    )
    assert_close(module(a, p, n), expected)


def test_weighted_modules_keep_weight_as_a_buffer() -> None:
    weight = _t([1.0, 2.0, 0.5, 1.5])
    cases = [
        (fnn.MultiMarginLoss, torch.nn.MultiMarginLoss, torch.tensor([3, 1])),
        (fnn.MultiLabelSoftMarginLoss, torch.nn.MultiLabelSoftMarginLoss, _t([[1, 0, 0, 1]] * 2)),
    ]
    for ours, theirs, target in cases:
        module, reference = ours(weight=weight), theirs(weight=weight)
        assert list(module.state_dict()) == list(reference.state_dict()) == ["weight"]
        assert_close(module(MULTI, target), reference(MULTI, target), ours.__name__)


# Every (input, target) shape pair probed against torch 2.13's multi_margin_loss and
# multilabel_margin_loss: torch's verdict is measured live, funcloss must agree (values, output
# shape and input gradient where torch accepts, a house ValueError where it refuses).
MULTI_MARGIN_SHAPES = [
    ((5, 3), (5,)),
    ((3,), ()),
    ((3,), (1,)),
    ((), ()),
    ((), (1,)),
    ((1,), ()),
    ((1,), (1,)),
    ((1, 3), ()),
    ((0, 3), (0,)),
    ((5, 3), (1,)),
    ((1, 3), (5,)),
    ((5, 3), (5, 1)),
    ((5, 3), ()),
    ((1, 3), (1, 1)),
    ((3,), (2,)),
    ((), (2,)),
    ((3,), (1, 1)),
    ((2, 5, 3), (2, 5)),
    ((5, 0), (5,)),
]
MULTILABEL_MARGIN_SHAPES = [
    ((5, 3), (5, 3)),
    ((3,), (3,)),
    ((), ()),
    ((), (1,)),
    ((1,), ()),
    ((1,), (1,)),
    ((0, 3), (0, 3)),
    ((5, 3), (1, 3)),
    ((5, 3), (3,)),
    ((3,), (1, 3)),
    ((1, 3), (3,)),
    ((), (1, 1)),
    ((2,), ()),
    ((5, 3), (5, 4)),
    ((2, 5, 3), (2, 5, 3)),
    ((5, 0), (5, 0)),
    ((0,), (0,)),
]


def _margin_shape_case(name: str, input_shape: tuple, target_shape: tuple) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(len(input_shape) * 7 + len(target_shape))
    x = torch.randn(input_shape, generator=generator, dtype=f64)
    num_classes = input_shape[-1] if input_shape else 1
    low = -1 if name == "multilabel_margin_loss" else 0
    y = torch.randint(low, max(num_classes, 1), target_shape, generator=generator)
    return x, y


@pytest.mark.parametrize(
    ("name", "input_shape", "target_shape"),
    [("multi_margin_loss", *shapes) for shapes in MULTI_MARGIN_SHAPES]
    + [("multilabel_margin_loss", *shapes) for shapes in MULTILABEL_MARGIN_SHAPES],
)
def test_multi_class_margin_shapes_as_torch(name: str, input_shape, target_shape) -> None:
    x, y = _margin_shape_case(name, input_shape, target_shape)
    ours, theirs = getattr(funcloss, name), getattr(F, name)
    try:
        theirs(x, y)
    except RuntimeError:
        with pytest.raises(ValueError, match=rf"^{name}: `(input|target)` must have "):
            ours(x, y)
        return
    for reduction in ("none", "mean", "sum"):
        expected = theirs(x, y, reduction=reduction)
        actual = ours(x, y, reduction=reduction)
        assert actual.shape == expected.shape, reduction
        if reduction == "mean" and x.numel() == 0:
            # torch 2.13 returns uninitialised memory here (e.g. 6.9e-310, -1.1e-15);
            # funcloss gives the empty mean nan, as torch's elementwise losses do
            assert actual.isnan()
            continue
        assert_close(actual, expected, reduction)
    leaf = x.clone().requires_grad_()
    (expected_grad,) = torch.autograd.grad(theirs(leaf, y, reduction="sum"), leaf)
    (actual_grad,) = torch.autograd.grad(ours(leaf, y, reduction="sum"), leaf)
    assert_close(actual_grad, expected_grad, "gradient")


def test_zero_dim_multi_margin_is_torchs() -> None:
    # torch 2.13: F.multi_margin_loss(torch.tensor(-3.7), torch.tensor(0)) is tensor(0.)
    x = torch.tensor(-3.7, requires_grad=True)
    loss = funcloss.multi_margin_loss(x, torch.tensor(0))
    assert loss.shape == () and loss.item() == 0.0
    (gradient,) = torch.autograd.grad(loss, x)
    assert gradient.item() == 0.0
    # torch 2.13 F.multilabel_margin_loss: 0. for the one class listed, or for none
    assert funcloss.multilabel_margin_loss(torch.tensor(-3.7), torch.tensor(0)).item() == 0.0
    assert funcloss.multilabel_margin_loss(torch.tensor(-3.7), torch.tensor(-1)).item() == 0.0


def test_multi_margin_unbatched_with_a_target_of_one() -> None:
    # input (C,) with target (1,): torch gives shape (1,) for "none"
    x = _t([0.1, 0.9, -0.4])
    for weight in (None, _t([0.5, 2.0, 1.0])):
        expected = F.multi_margin_loss(x, torch.tensor([1]), weight=weight, reduction="none")
        actual = funcloss.multi_margin_loss(x, torch.tensor([1]), weight=weight, reduction="none")
        assert actual.shape == (1,)
        assert_close(actual, expected)


def test_multi_class_margin_zero_dim_under_vmap() -> None:
    # vmap over (N,) scores: every per-sample call has a 0-dim input, one class
    x = _t([-3.7, 0.5, 2.0])
    looped = torch.stack([F.multi_margin_loss(v, torch.tensor(0)) for v in x])
    assert_close(vmap(lambda v: funcloss.multi_margin_loss(v, torch.tensor(0)))(x), looped)
    looped = torch.stack([F.multilabel_margin_loss(v, torch.tensor(0)) for v in x])
    assert_close(vmap(lambda v: funcloss.multilabel_margin_loss(v, torch.tensor(0)))(x), looped)


# -- masks on the margin losses, at every shape torch takes ----------------------------------


def _masked_expectations(expected: Tensor, where: Tensor) -> dict[str, Tensor]:
    """torch's unreduced loss with the masked elements zeroed, summed, averaged over the rest."""
    zeroed = torch.where(where, expected, 0.0)
    count = where.sum()
    return {
        "none": zeroed,
        "sum": zeroed.sum(),
        "mean": zeroed.sum() / count if count else zeroed.sum() * 0,
    }


def _masked_rows_poisoned(x: Tensor, where: Tensor) -> Tensor:
    """``x`` with NaN in every score of a masked sample (the losses are per sample)."""
    rows = where.reshape(where.shape + (1,) * (x.dim() - where.dim()))
    return torch.where(rows, x, float("nan"))


@pytest.mark.parametrize(
    ("name", "input_shape", "target_shape"),
    [("multi_margin_loss", *shapes) for shapes in MULTI_MARGIN_SHAPES]
    + [("multilabel_margin_loss", *shapes) for shapes in MULTILABEL_MARGIN_SHAPES],
)
def test_multi_class_margin_masks_at_torchs_shapes(name: str, input_shape, target_shape) -> None:
    x, y = _margin_shape_case(name, input_shape, target_shape)
    ours, theirs = getattr(funcloss, name), getattr(F, name)
    try:
        expected = theirs(x, y, reduction="none")
    except RuntimeError:
        return  # a shape torch refuses: test_multi_class_margin_shapes_as_torch
    generator = torch.Generator().manual_seed(x.numel() + 3 * y.numel())
    where = torch.rand(expected.shape, generator=generator) < 0.5
    # a masked sample may hold anything: NaN scores, a class index out of range
    if x.dim() == 2:
        bad_x = _masked_rows_poisoned(x, where)
    else:  # one sample: a loss of shape () or (1,)
        bad_x = torch.where(where.reshape(()), x, torch.nan)
    bad_y = torch.where(where.reshape(where.shape + (1,) * (y.dim() - where.dim())), y, 99)
    for reduction, wanted in _masked_expectations(expected, where).items():
        actual = ours(bad_x, bad_y, reduction=reduction, where=where)
        assert actual.shape == wanted.shape, reduction
        assert_close(actual, wanted, reduction)
    clean, poisoned = x.clone().requires_grad_(), bad_x.clone().requires_grad_()
    (expected_grad,) = torch.autograd.grad(
        torch.where(where, theirs(clean, y, reduction="none"), 0.0).sum(), clean
    )
    (actual_grad,) = torch.autograd.grad(
        ours(poisoned, bad_y, reduction="sum", where=where), poisoned
    )
    assert_close(actual_grad, expected_grad, "gradient")


@pytest.mark.parametrize(
    ("input_shape", "target_shape", "weight_shape"),
    [
        ((4, 3), (4, 3), None),
        ((3,), (3,), (3,)),
        ((3,), (4, 3), None),  # torch sums over dim 0 of the broadcast loss: loss (3,)
        ((4, 3), (3,), (3,)),
        ((4, 3), (2, 4, 3), None),  # loss (2, 3)
        ((4, 3), (4, 3), (2, 1, 3)),  # loss (2, 3)
    ],
)
@pytest.mark.parametrize("integer_target", [False, True])
def test_multilabel_soft_margin_masks_broadcast_as_torch(
    input_shape, target_shape, weight_shape, integer_target: bool
) -> None:
    generator = torch.Generator().manual_seed(len(input_shape) + 5 * len(target_shape))
    x = torch.randn(input_shape, generator=generator, dtype=f64)
    y = torch.rand(target_shape, generator=generator, dtype=f64) > 0.5
    y = y.long() if integer_target else y.double()
    weight = None if weight_shape is None else torch.rand(weight_shape, dtype=f64) + 0.5
    expected = F.multilabel_soft_margin_loss(x, y.double(), weight, reduction="none")
    where = torch.rand(expected.shape, generator=generator) < 0.6
    for reduction, wanted in _masked_expectations(expected, where).items():
        actual = funcloss.multilabel_soft_margin_loss(
            x, y, weight, reduction=reduction, where=where
        )
        assert actual.shape == wanted.shape, reduction
        assert_close(actual, wanted, reduction)
    # broadcast masks: one per row of the loss, or one for everything
    for mask in (where[..., :1] if where.dim() else where, torch.tensor(False)):
        wanted = torch.where(mask, expected, 0.0)
        actual = funcloss.multilabel_soft_margin_loss(x, y, weight, reduction="none", where=mask)
        assert_close(actual, wanted, "broadcast mask")


def test_soft_margin_masks_integer_and_broadcast_targets() -> None:
    x = SCORES.clone()
    signs = torch.tensor([1, -1, 1])  # integer, broadcast along the rows
    where = torch.tensor([[True, False, True], [False, False, True]])
    expected = F.soft_margin_loss(x, signs.expand(2, 3).double(), reduction="none")
    poisoned = torch.where(where, x, torch.inf).requires_grad_()
    for reduction, wanted in _masked_expectations(expected, where).items():
        actual = funcloss.soft_margin_loss(poisoned, signs, reduction=reduction, where=where)
        assert_close(actual, wanted, reduction)
    (gradient,) = torch.autograd.grad(
        funcloss.soft_margin_loss(poisoned, signs, where=where), poisoned
    )
    assert torch.isfinite(gradient).all() and (gradient[~where] == 0).all()


def test_cosine_embedding_at_an_infinite_coordinate_is_the_limit() -> None:
    # float64 limit: torch's own formula at 1e150 (1e300 overflows its squared norms); torch
    # itself gives nan at inf (before: nan here too)
    for target, margin in ((-1, 0.0), (1, 0.0), (-1, -0.5)):
        y = torch.tensor([target])
        x2 = torch.tensor([[0.5, -2.0, 1.0]], dtype=torch.float64, requires_grad=True)
        x1 = torch.tensor([[math.inf, 0.3, 1.0]], dtype=torch.float64, requires_grad=True)
        big = torch.tensor([[1e150, 0.3, 1.0]], dtype=torch.float64, requires_grad=True)
        ours = funcloss.cosine_embedding_loss(x1, x2, y, margin, reduction="sum")
        g1, g2 = torch.autograd.grad(ours, (x1, x2))
        x2_ref = x2.detach().requires_grad_()
        expected = F.cosine_embedding_loss(big, x2_ref, y, margin, reduction="sum")
        e1, e2 = torch.autograd.grad(expected, (big, x2_ref))
        assert_close(ours, expected)
        assert_close(g1, e1)
        assert_close(g2, e2)
        other = x2.detach()

        def summed(t: torch.Tensor, other=other, y=y, margin=margin) -> torch.Tensor:
            return funcloss.cosine_embedding_loss(t, other, y, margin, reduction="sum")

        forward = torch.func.jacfwd(summed)(x1.detach())
        assert_close(forward, g1)


def test_cosine_embedding_at_float32_max_is_finite() -> None:
    # torch (and the plain formula in float32) overflow the squared norms: nan (before: nan)
    x1 = torch.tensor([[3e38, -1e38, 2e38], [1.0, 2.0, 3.0]], requires_grad=True)
    x2 = torch.tensor([[-2e38, 3e38, 1e38], [3e38, 3e38, 0.0]], requires_grad=True)
    y = torch.tensor([1, -1])
    ours = funcloss.cosine_embedding_loss(x1, x2, y, -1.0, reduction="none")
    g1, g2 = torch.autograd.grad(ours.sum(), (x1, x2))
    wide = [x.detach().double().requires_grad_() for x in (x1, x2)]
    expected = F.cosine_embedding_loss(*wide, y, -1.0, reduction="none")
    e1, e2 = torch.autograd.grad(expected.sum(), wide)
    assert_close(ours.double(), expected, rtol=1e-5)
    assert bool(g1.isfinite().all()) and bool(g2.isfinite().all())
    # the gradients are tiny (1 / |x|): compare in units of the largest
    assert_close(g1.double() * 3e38, e1 * 3e38, rtol=1e-4)
    assert_close(g2.double() * 3e38, e2 * 3e38, rtol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e30])
def test_cosine_embedding_eager_and_scaled_paths_agree_bitwise(scale: float) -> None:
    # the eager step (unscaled, small coordinates) and the scaled custom backward (transforms,
    # or coordinates past the safe bound) divide by powers of two: the same bits
    from torch.func import grad

    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(6, 5, generator=g) * scale, torch.randn(6, 5, generator=g)
    y = torch.tensor([1, -1, 1, -1, 1, 1])

    def loss(a: torch.Tensor) -> torch.Tensor:
        return funcloss.cosine_embedding_loss(a, x2, y, 0.1, reduction="sum")

    a = x1.clone().requires_grad_()
    eager = loss(a)
    (eager_grad,) = torch.autograd.grad(eager, a)
    assert torch.equal(torch.func.vmap(loss)(x1.unsqueeze(0))[0], eager)
    assert_close(grad(loss)(x1), eager_grad)
    # double backward through the eager step takes the differentiable scaled backward
    a = x1.double().requires_grad_()
    b = x2.double()
    assert torch.autograd.gradgradcheck(
        lambda t: funcloss.cosine_embedding_loss(t, b, y, 0.1, reduction="sum"), (a,)
    )


@pytest.mark.parametrize("order", [1.0, 1.5, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_triplet_infinite_anchor_coordinate_gives_the_limit(order: float, sign: float) -> None:
    # An anchor coordinate at ±inf: d(a, p) - d(a, n) -> ±(n_k - p_k) (p > 1; p = 1 adds the
    # other coordinates' |x_j| - |y_j|); torch gives nan (inf - inf), its 1e150 stand-in margin.
    anchor, positive, negative = ANCHOR.clone(), POSITIVE, NEGATIVE
    anchor[0, 0] = sign * math.inf
    kwargs = {"margin": 1.5, "p": order, "eps": 1e-6}
    gap = sign * (NEGATIVE[0, 0] - POSITIVE[0, 0])  # 2 sign
    if order == 1.0:
        row = (anchor[0, 1:] - POSITIVE[0, 1:] + 1e-6).abs() - (
            anchor[0, 1:] - NEGATIVE[0, 1:] + 1e-6
        ).abs()
        gap = gap + row.sum()
    first = (1.5 + gap).clamp_min(0)
    args = [t.clone().requires_grad_() for t in (anchor, positive, negative)]
    loss = funcloss.triplet_margin_loss(*args, **kwargs, reduction="none")
    second = F.triplet_margin_loss(
        ANCHOR[1:], POSITIVE[1:], NEGATIVE[1:], **kwargs, reduction="none"
    )
    assert_close(loss.detach(), torch.cat([first.reshape(1), second]), "value at the limit")
    grads = torch.autograd.grad(loss.sum(), args)
    limit = [t.clone().requires_grad_() for t in (anchor, positive, negative)]
    expected = torch.autograd.grad(
        triplet_limit(*limit, **kwargs, reduction="sum"), limit, allow_unused=True
    )
    for got, want, name in zip(grads, expected, "apn", strict=True):
        assert bool(got.isfinite().all()), name
        assert_close(got, torch.zeros_like(got) if want is None else want, f"d/d{name}")
    forward = torch.func.jacfwd(
        lambda a: funcloss.triplet_margin_loss(a, positive, negative, **kwargs, reduction="sum")
    )(anchor)
    assert_close(forward, grads[0], "jacfwd at the limit")
    swapped = funcloss.triplet_margin_loss(anchor, positive, negative, **kwargs, swap=True)
    assert swapped == math.inf  # d(p, n) stays finite: no finite limit


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0, math.inf])
@pytest.mark.parametrize("scale", [1e4, 3e38])
def test_triplet_gap_of_a_huge_anchor_is_exact(scale: float, p: float, swap: bool) -> None:
    """An anchor of size 1e4 or 3e38 against order-1 points: d(a, p) - d(a, n) is order 1 while
    each distance is the anchor's size, so the distances' difference keeps only their rounding
    (torch: about 1e-3 off at 1e4 in float32, nan or garbage at 3e38). funcloss takes the gap
    from the coordinates: within 2e-5 of the 120-digit decimal value, eager and under vmap
    (the transform-safe path), with finite gradients, at 1e4 those of float64."""
    generator = torch.Generator().manual_seed(int(min(p, 9.0) * 10) + int(swap))
    anchor = torch.randn(8, 6, generator=generator)
    anchor = anchor / anchor.abs().amax() * scale
    positive, negative = torch.randn(2, 8, 6, generator=generator)
    config = {"p": p, "margin": 3.0, "swap": swap}
    exact = torch.stack(
        [
            exact_triplet_row(a, q, n, 3.0, p, 1e-6, swap).detach()
            for a, q, n in zip(anchor.double(), positive.double(), negative.double(), strict=True)
        ]
    )
    assert int((exact > 0).sum()) >= 4  # most hinges active: the gap is in the loss
    eager = funcloss.triplet_margin_loss(anchor, positive, negative, **config, reduction="none")
    batched = vmap(lambda a, q, n: funcloss.triplet_margin_loss(a, q, n, **config))(
        anchor, positive, negative
    )
    over = exact.float().isinf()  # with swap at 3e38: d(a, p) - d(p, n), beyond float32
    for loss in (eager, batched):
        assert bool((loss[over] == math.inf).all())
        error = (loss.double() - exact)[~over].abs()
        # rows below _CANCELLING keep torch's formula: a few float32 ulps of 2**6 (margin + gap)
        assert bool((error <= 2e-5 * exact[~over].abs().clamp_min(1)).all()), error.max()
    if scale == 1e4:  # the failure this fixes: torch's own float32 loss keeps the rounding
        theirs = F.triplet_margin_loss(anchor, positive, negative, **config, reduction="none")
        assert float((theirs.double() - exact).abs().max()) > 1e-4
    leaves = [t.clone().requires_grad_() for t in (anchor, positive, negative)]
    grads = torch.autograd.grad(funcloss.triplet_margin_loss(*leaves, **config), leaves)
    assert all(bool(g.isfinite().all()) for g in grads)
    if scale == 1e4:
        truth = [t.double().requires_grad_() for t in (anchor, positive, negative)]
        expected = torch.autograd.grad(F.triplet_margin_loss(*truth, **config), truth)
        for got, want in zip(grads, expected, strict=True):
            assert float((got.double() - want).abs().max()) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triplet_huge_triplets_do_not_overflow(dtype: torch.dtype) -> None:
    # Triplets near the dtype's largest value: the squares overflow (torch: nan, inf - inf),
    # the loss and its gradient fit; each triplet is rescaled by a power of two.
    top = torch.finfo(dtype).max / 4
    # the negatives as positives: every hinge active
    triplet = [(t * top / 2).to(dtype) for t in (ANCHOR, NEGATIVE, POSITIVE)]
    truth = [t.to(f64).requires_grad_() for t in triplet]
    expected = F.triplet_margin_loss(*truth, margin=1.0, reduction="sum")
    expected_grads = torch.autograd.grad(expected, truth)
    for p in (1.0, 2.0, 3.0):
        args = [t.clone().requires_grad_() for t in triplet]
        loss = funcloss.triplet_margin_loss(*args, p=p, margin=1.0, reduction="sum")
        reference = F.triplet_margin_loss(*truth, p=p, margin=1.0, reduction="sum")
        assert bool(loss.isfinite()), (p, loss)
        error = abs(float(loss.detach()) - float(reference.detach()))
        assert error <= 1e-2 * abs(float(reference.detach())), (p, loss)
        grads = torch.autograd.grad(loss, args)
        assert all(bool(g.isfinite().all()) for g in grads), p
    args = [t.clone().requires_grad_() for t in triplet]
    grads = torch.autograd.grad(funcloss.triplet_margin_loss(*args, reduction="sum"), args)
    for got, want in zip(grads, expected_grads, strict=True):
        assert bool((got.to(f64) - want).abs().max() <= 1e-2), (got, want)
    batched = vmap(lambda a, q, n: funcloss.triplet_margin_loss(a, q, n, reduction="sum"))(
        *(t.unsqueeze(0) for t in triplet)
    )
    assert bool(batched.isfinite().all()), batched
