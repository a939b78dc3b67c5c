"""The Fenchel–Young family: sparsemax (oracle, Jacobian, ties, -inf, transforms), the losses'
identities (gradient of sparsemax_loss = sparsemax - onehot, Fenchel–Young(logsumexp) =
cross_entropy, perceptron = hinge at margin 0), kinks pinned, edge inputs, smooth_labels."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
from funcloss.testing import class_targets, logits, probabilities

from . import registry  # noqa: F401  (loads every spec module first: no circular import)
from .specs_fenchel_young import naive_sparsemax

INF = float("inf")
LSE = partial(torch.logsumexp, dim=-1)


def _analytic_jacobian(p: torch.Tensor) -> torch.Tensor:
    s = (p > 0).to(p.dtype)
    return torch.diag(s) - torch.outer(s, s) / s.sum()


# -- sparsemax -------------------------------------------------------------------------------


@settings(max_examples=30)
@given(z=logits(st.tuples(st.integers(1, 4), st.integers(1, 6))))
def test_sparsemax_matches_the_naive_algorithm(z: torch.Tensor) -> None:
    p = funcloss.sparsemax(z)
    torch.testing.assert_close(p, naive_sparsemax(z))
    torch.testing.assert_close(p.sum(-1), torch.ones(z.shape[0], dtype=z.dtype))


@settings(max_examples=20)
@given(z=logits((5,)))
def test_sparsemax_jacobian_is_analytic_and_jacfwd_equals_jacrev(z: torch.Tensor) -> None:
    p = funcloss.sparsemax(z)
    reverse, forward = jacrev(funcloss.sparsemax)(z), jacfwd(funcloss.sparsemax)(z)
    torch.testing.assert_close(forward, reverse)
    # off the support boundary (z_j = tau), where the Jacobian jumps
    tau = (z - p)[p > 0][0]
    if ((z - tau).abs() > 1e-9).all():
        torch.testing.assert_close(reverse, _analytic_jacobian(p))


def test_sparsemax_ties_and_minus_inf() -> None:
    z = torch.tensor([[1.0, 1.0, 1.0, -2.0], [0.3, 0.3, -INF, -INF]], dtype=torch.float64)
    p = funcloss.sparsemax(z)
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0], [0.5, 0.5, 0.0, 0.0]], dtype=z.dtype)
    torch.testing.assert_close(p, expected)
    for row, want in zip(z, expected, strict=True):
        for jacobian in (jacrev(funcloss.sparsemax)(row), jacfwd(funcloss.sparsemax)(row)):
            assert torch.isfinite(jacobian).all()
            torch.testing.assert_close(jacobian, _analytic_jacobian(want))


def test_sparsemax_all_minus_inf_row_is_zeros_with_zero_derivatives() -> None:
    z = torch.tensor([[-INF, -INF, -INF], [0.0, 1.0, -INF]], dtype=torch.float64)
    p = funcloss.sparsemax(z)
    assert torch.equal(p[0], torch.zeros(3, dtype=z.dtype))
    torch.testing.assert_close(p[1], torch.tensor([0.0, 1.0, 0.0], dtype=z.dtype))
    for jacobian in (jacrev(funcloss.sparsemax)(z[0]), jacfwd(funcloss.sparsemax)(z[0])):
        assert torch.equal(jacobian, torch.zeros(3, 3, dtype=z.dtype))


def test_sparsemax_plus_inf_shares_the_mass() -> None:
    z = torch.tensor([INF, 0.0, INF, -INF], dtype=torch.float64)
    torch.testing.assert_close(
        funcloss.sparsemax(z), torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=z.dtype)
    )
    assert torch.isfinite(jacrev(funcloss.sparsemax)(z)).all()


def test_sparsemax_is_shift_invariant_and_exact_for_large_scores() -> None:
    z = torch.tensor([1e12 + 0.5, 1e12, 1e12 - 3.0], dtype=torch.float64)
    expected = torch.tensor([0.75, 0.25, 0.0], dtype=z.dtype)
    torch.testing.assert_close(funcloss.sparsemax(z), expected, rtol=0, atol=1e-15)


def test_sparsemax_dim_and_dtypes() -> None:
    z = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        funcloss.sparsemax(z, dim=1), funcloss.sparsemax(z.movedim(1, -1)).movedim(-1, 1)
    )
    half = funcloss.sparsemax(z.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    # forward-mode tangents keep float32
    assert jacfwd(funcloss.sparsemax)(z[0, 0]).dtype == torch.float32
    assert vmap(jacfwd(funcloss.sparsemax))(z[0]).dtype == torch.float32


def test_sparsemax_under_transforms_and_compile() -> None:
    z = torch.randn(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(vmap(funcloss.sparsemax)(z), funcloss.sparsemax(z))
    jacobians = vmap(jacrev(funcloss.sparsemax))(z)
    torch.testing.assert_close(vmap(jacfwd(funcloss.sparsemax))(z), jacobians)
    for row, jacobian in zip(z, jacobians, strict=True):
        torch.testing.assert_close(jacobian, _analytic_jacobian(funcloss.sparsemax(row)))
    compiled = torch.compile(funcloss.sparsemax, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z), funcloss.sparsemax(z))
    # the second derivative is 0 almost everywhere (piecewise linear)
    second = hessian(lambda x: funcloss.sparsemax(x)[0])(z[0])
    assert torch.equal(second, torch.zeros_like(second))


# -- sparsemax_loss --------------------------------------------------------------------------


@settings(max_examples=30)
@given(data=st.data())
def test_sparsemax_loss_gradient_is_sparsemax_minus_onehot(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 6))
    z = data.draw(logits((n, c)))
    y = data.draw(class_targets((n,), c))
    expected = funcloss.sparsemax(z) - torch.nn.functional.one_hot(y, c).to(z.dtype)
    ours = grad(lambda s: funcloss.sparsemax_loss(s, y, reduction="sum"))(z)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-15)
    forward = jacfwd(lambda s: funcloss.sparsemax_loss(s, y, reduction="sum"))(z)
    torch.testing.assert_close(forward, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "scores",
    [[0.9, 0.1, 0.5, -2.0], [0.5, 0.5, 0.5, -2.0], [0.5, 0.5, -INF, 0.1]],
    ids=["distinct", "ties", "minus-inf"],
)
def test_sparsemax_loss_hessian_is_the_sparsemax_jacobian(scores: list[float]) -> None:
    z = torch.tensor(scores, dtype=torch.float64)
    y = torch.tensor(1)
    h = hessian(lambda s: funcloss.sparsemax_loss(s, y))(z)
    torch.testing.assert_close(h, _analytic_jacobian(funcloss.sparsemax(z)))
    g = jacfwd(lambda s: funcloss.sparsemax_loss(s, y))(z)
    assert torch.isfinite(g).all()


def test_sparsemax_loss_zero_at_a_margin_of_one_and_minus_inf() -> None:
    z = torch.tensor([[3.0, 2.0, -INF], [0.0, -INF, -INF]], dtype=torch.float64)
    loss = funcloss.sparsemax_loss(z, torch.tensor([0, 0]), reduction="none")
    torch.testing.assert_close(loss, torch.zeros(2, dtype=z.dtype))
    g = grad(lambda s: funcloss.sparsemax_loss(s, torch.tensor([0, 0]), reduction="sum"))(z)
    assert torch.equal(g, torch.zeros_like(z))
    # the target at a -inf score: +inf, the true value; the gradient stays finite
    x = z.clone().requires_grad_()
    out = funcloss.sparsemax_loss(x, torch.tensor([2, 0]), reduction="sum")
    out.backward()
    assert out == INF and torch.isfinite(x.grad).all()


def test_sparsemax_loss_plus_inf_at_the_target_is_zero() -> None:
    z = torch.tensor([[INF, 0.0, 1.0]], dtype=torch.float64)
    x = z.clone().requires_grad_()
    out = funcloss.sparsemax_loss(x, torch.tensor([0]))
    out.backward()
    assert out == 0 and torch.equal(x.grad, torch.zeros_like(z))


def test_sparsemax_loss_class_mask_removes_classes() -> None:
    z = torch.tensor([[1.0, 5.0, 0.5], [2.0, 0.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    allowed = torch.tensor([[True, False, True], [False, False, False]])
    x = z.clone().requires_grad_()
    loss = funcloss.sparsemax_loss(x, y, where=allowed, reduction="none")
    removed = torch.tensor([[1.0, -INF, 0.5]], dtype=torch.float64)
    expected = funcloss.sparsemax_loss(removed, y[:1], reduction="none")
    torch.testing.assert_close(loss, torch.cat([expected, torch.zeros(1, dtype=z.dtype)]))
    loss.sum().backward()
    assert x.grad[0, 1] == 0 and torch.equal(x.grad[1], torch.zeros(3, dtype=z.dtype))


def test_sparsemax_loss_float32_tangent_and_unbatched() -> None:
    z, y = torch.tensor([0.3, -0.2, 1.0]), torch.tensor(1)
    assert jacfwd(lambda s: funcloss.sparsemax_loss(s, y))(z).dtype == torch.float32
    assert hessian(lambda s: funcloss.sparsemax_loss(s, y))(z).dtype == torch.float32


# -- the hand-written backward of sparsemax and sparsemax_loss (from 65536 elements on) -------


@pytest.fixture
def fused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call takes the custom_backward path (threshold lowered to reach it)."""
    import funcloss._fenchel_young as fenchel_young

    monkeypatch.setattr(fenchel_young, "_FUSED_FROM_NUMEL", 1)


@pytest.mark.parametrize("name", ["sparsemax", "sparsemax_loss"])
def test_fused_sparsemax_passes_the_transform_matrix(fused: None, name: str) -> None:
    from funcloss.testing import check_loss

    from .specs_fenchel_young import naive_sparsemax_loss

    # distinct scores, off the support's boundary (the Jacobian jumps there)
    z = torch.tensor(
        [[0.9, 0.1, 0.5, -2.0], [0.3, -0.4, 1.7, 0.0], [2.0, -1.0, 1.6, 1.5]], dtype=torch.float64
    )
    if name == "sparsemax":
        report = check_loss(funcloss.sparsemax, naive_sparsemax, z, skip=("module",))
    else:
        y = torch.tensor([1, 2, 3])
        report = check_loss(
            funcloss.sparsemax_loss,
            naive_sparsemax_loss,
            z,
            y,
            kwargs={"reduction": "none"},
            skip=("module", "compile_grad", "compile_vmap_grad"),
        )
    assert {"jacfwd", "hessian", "gradgradcheck", "vmap", "compile"} <= set(report.checked), report


_EDGE_ROWS = [
    [0.5, 0.5, 0.5, -2.0],  # ties
    [0.5, 0.5, -INF, 0.1],  # a -inf score
    [-INF, 1.0, -INF, -INF],  # one finite score
    [INF, 0.0, INF, -INF],  # +inf scores share the mass
    [-INF, -INF, -INF, -INF],  # no class possible
]


@pytest.mark.parametrize("target", [0, 1, 2])
def test_fused_sparsemax_edges_equal_the_composition(
    monkeypatch: pytest.MonkeyPatch, target: int
) -> None:
    """Ties and infinite scores: values, gradients, forward-mode and second derivatives of the
    custom backward equal those of the composition (which the tests above pin)."""
    import funcloss._fenchel_young as fenchel_young

    z = torch.tensor(_EDGE_ROWS, dtype=torch.float64)
    y = torch.full((len(z),), target)

    def loss(s: torch.Tensor) -> torch.Tensor:
        return funcloss.sparsemax_loss(s, y, reduction="sum")

    def weighted(s: torch.Tensor) -> torch.Tensor:
        return (funcloss.sparsemax(s) * torch.arange(4.0, dtype=s.dtype)).sum()

    results = {}
    for threshold in (2**16, 1):
        monkeypatch.setattr(fenchel_young, "_FUSED_FROM_NUMEL", threshold)
        x = z.clone().requires_grad_()
        value = funcloss.sparsemax_loss(x, y, reduction="none")
        value.sum().backward()
        results[threshold] = [
            value.detach(),
            x.grad,
            funcloss.sparsemax(z),
            jacfwd(loss)(z),
            hessian(loss)(z),
            jacrev(weighted)(z),
            jacfwd(weighted)(z),
        ]
    for ours, composed in zip(results[1], results[2**16], strict=True):
        torch.testing.assert_close(ours, composed, rtol=0, atol=1e-15, equal_nan=False)
    gradient = results[1][1]
    assert torch.isfinite(gradient).all()
    # off the infinite rows, the gradient is sparsemax - onehot
    onehot = torch.nn.functional.one_hot(y, 4).to(z.dtype)
    expected = funcloss.sparsemax(z) - onehot
    torch.testing.assert_close(gradient[:3], expected[:3], rtol=0, atol=1e-15)


def test_sparsemax_large_input_takes_the_custom_backward_and_agrees() -> None:
    import funcloss._fenchel_young as fenchel_young

    g = torch.Generator().manual_seed(3)
    z = torch.randn(70, 1000, generator=g) * 3
    y = torch.randint(1000, (70,), generator=g)
    assert z.numel() >= fenchel_young._FUSED_FROM_NUMEL
    x = z.clone().requires_grad_()
    funcloss.sparsemax_loss(x, y, reduction="sum").backward()
    expected = funcloss.sparsemax(z) - torch.nn.functional.one_hot(y, 1000).to(z.dtype)
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        funcloss.sparsemax_loss(z, y, reduction="none"), naive_sparsemax_loss_f32(z, y)
    )
    w = torch.randn(z.shape, generator=g)
    x = z.clone().requires_grad_()
    (funcloss.sparsemax(x) * w).sum().backward()
    p = naive_sparsemax(z.double())
    support = (p > 0).double()
    size = support.sum(-1, keepdim=True)
    want = support * (w.double() - (support * w.double()).sum(-1, keepdim=True) / size)
    torch.testing.assert_close(x.grad, want.float(), rtol=1e-5, atol=1e-6)


def naive_sparsemax_loss_f32(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from .specs_fenchel_young import naive_sparsemax_loss

    return naive_sparsemax_loss(z.double(), y, reduction="none").float()


# -- binary_sparsemax_loss -------------------------------------------------------------------


def test_binary_sparsemax_loss_pins_the_pieces_and_its_gradient() -> None:
    z = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 4.0, INF, -INF], dtype=torch.float64)
    ones, zeros = torch.ones_like(z), torch.zeros_like(z)
    # by hand: sp(-z) for label 1, sp(z) for label 0; sp(x) = (x + 1)^2 / 4 on (-1, 1)
    label_one = torch.tensor([3.0, 1.0, 0.25, 0.0625, 0.0, 0.0, 0.0, INF], dtype=z.dtype)
    label_zero = torch.tensor([0.0, 0.0, 0.25, 0.5625, 1.0, 4.0, INF, 0.0], dtype=z.dtype)
    torch.testing.assert_close(funcloss.binary_sparsemax_loss(z, ones, "none"), label_one)
    torch.testing.assert_close(funcloss.binary_sparsemax_loss(z, zeros, "none"), label_zero)
    # gradient: sparse sigmoid clip((z + 1) / 2, 0, 1) minus the label (finite at ±inf)
    finite = z[:6]
    slope = grad(lambda s: funcloss.binary_sparsemax_loss(s, ones[:6], "sum"))(finite)
    torch.testing.assert_close(slope, ((finite + 1) / 2).clamp(0, 1) - 1)
    edge = grad(lambda s: funcloss.binary_sparsemax_loss(s, ones[6:], "sum"))(z[6:])
    torch.testing.assert_close(edge, torch.tensor([0.0, -1.0], dtype=z.dtype))


def test_binary_sparsemax_soft_label_is_zero_at_the_sparse_sigmoid() -> None:
    z = torch.tensor([-0.6, 0.0, 0.4], dtype=torch.float64)
    y = (z + 1) / 2
    torch.testing.assert_close(
        funcloss.binary_sparsemax_loss(z, y, "none"), torch.zeros_like(z), atol=1e-15, rtol=0
    )


# -- the hinges ------------------------------------------------------------------------------


@settings(max_examples=20)
@given(data=st.data())
def test_multiclass_perceptron_is_the_hinge_at_margin_zero(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 6))
    z, y = data.draw(logits((n, c))), data.draw(class_targets((n,), c))
    torch.testing.assert_close(
        funcloss.multiclass_perceptron_loss(z, y, "none"),
        funcloss.multiclass_hinge_loss(z, y, 0.0, "none"),
    )


def test_multiclass_hinge_is_crammer_singer_not_weston_watkins() -> None:
    z = torch.tensor([[1.0, 0.8, 0.9]], dtype=torch.float64)
    y = torch.tensor([0])
    # by hand: Crammer-Singer max(0, 0.8 - 1 + 1, 0.9 - 1 + 1) = 0.9; Weston-Watkins (0.8 +
    # 0.9) / 3
    torch.testing.assert_close(funcloss.multiclass_hinge_loss(z, y), torch.tensor(0.9).double())
    torch.testing.assert_close(
        funcloss.multi_margin_loss(z, y), torch.tensor(1.7 / 3, dtype=z.dtype)
    )


def test_multiclass_hinge_ties_share_the_gradient_and_jacfwd_agrees() -> None:
    z = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    y = torch.tensor(0)

    def f(s):
        return funcloss.multiclass_hinge_loss(s, y)

    reverse = grad(f)(z)
    torch.testing.assert_close(reverse, torch.tensor([-1.0, 0.5, 0.5], dtype=z.dtype))
    torch.testing.assert_close(jacfwd(f)(z), reverse)


def test_multiclass_hinges_at_infinite_scores() -> None:
    z = torch.tensor([[INF, 0.0, 3.0], [0.0, -INF, 1.5]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    x = z.clone().requires_grad_()
    loss = funcloss.multiclass_hinge_loss(x, y, reduction="none")
    torch.testing.assert_close(loss, torch.tensor([0.0, 0.0], dtype=z.dtype))
    loss.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(z))


@pytest.mark.parametrize(
    ("name", "corner"), [("hinge_loss", 1.0), ("perceptron_loss", 0.0)], ids=["hinge", "perc"]
)
def test_binary_hinges_kink_and_infinities(name: str, corner: float) -> None:
    fn = getattr(funcloss, name)
    z = torch.tensor([corner, 0.5, INF, -INF], dtype=torch.float64)
    y = torch.tensor([1, -1, 1, -1])
    x = z.clone().requires_grad_()
    loss = fn(x, y, reduction="none")
    # by hand: max(0, corner - y z)
    by_hand = torch.tensor([0.0, corner + 0.5, 0.0, 0.0], dtype=z.dtype)
    torch.testing.assert_close(loss, by_hand)
    loss.sum().backward()
    # the kink's gradient is 0 (relu's); at y z = -corner the slope is -y
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=z.dtype))


def test_hinges_float32_tangents() -> None:
    z, y = torch.tensor([0.3, -0.2, 1.5]), torch.tensor(1)
    for fn in (funcloss.multiclass_hinge_loss, funcloss.multiclass_perceptron_loss):
        assert jacfwd(lambda s, fn=fn: fn(s, y))(z).dtype == torch.float32
    for fn in (funcloss.hinge_loss, funcloss.perceptron_loss, funcloss.binary_sparsemax_loss):
        assert jacfwd(lambda s, fn=fn: fn(s, torch.tensor(1.0)))(z[0]).dtype == torch.float32


# -- make_fenchel_young_loss ------------------------------------------------------------------


@settings(max_examples=20)
@given(data=st.data())
def test_fenchel_young_logsumexp_is_cross_entropy(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 6))
    z, q = data.draw(logits((n, c))), data.draw(probabilities((n, c), dim=1))
    fy = funcloss.make_fenchel_young_loss(LSE)
    torch.testing.assert_close(fy(z, q, "none"), funcloss.cross_entropy(z, q, reduction="none"))
    # the full Fenchel-Young loss (with the regulariser) is KL: fy minus the target's entropy
    entropy = -(q * q.log()).sum(-1)
    kl = (q * (q.log() - torch.log_softmax(z, -1))).sum(-1)
    torch.testing.assert_close(fy(z, q, "none") - entropy, kl)
    # gradient: softmax - q, in both modes
    expected = torch.softmax(z, -1) - q
    torch.testing.assert_close(grad(lambda s: fy(s, q, "sum"))(z), expected)
    torch.testing.assert_close(jacfwd(lambda s: fy(s, q, "sum"))(z), expected)


def test_fenchel_young_of_max_is_the_perceptron_and_of_sparsemax_is_its_loss() -> None:
    z = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 3, 1, 1, 2])
    onehot = torch.nn.functional.one_hot(y, 4).to(z.dtype)
    perceptron = funcloss.make_fenchel_young_loss(lambda s: s.amax(-1))
    torch.testing.assert_close(
        perceptron(z, onehot, "none"), funcloss.multiclass_perceptron_loss(z, y, "none")
    )

    def sparsemax_max(s):  # Omega*(z) = <p, z> - ||p||^2 / 2, plus Omega(e_y) = 1/2
        p = funcloss.sparsemax(s)
        return (p * s).sum(-1) - p.square().sum(-1) / 2 + 0.5

    fy = funcloss.make_fenchel_young_loss(sparsemax_max)
    torch.testing.assert_close(fy(z, onehot, "none"), funcloss.sparsemax_loss(z, y, "none"))


def test_fenchel_young_under_vmap_compile_and_masks() -> None:
    fy = funcloss.make_fenchel_young_loss(LSE)
    z = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    q = torch.softmax(z.flip(0), -1)
    torch.testing.assert_close(vmap(lambda a, b: fy(a, b, "none"))(z, q), fy(z, q, "none"))
    compiled = torch.compile(fy, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(z, q), fy(z, q))
    keep = torch.tensor([True, False, True, True])
    poisoned = torch.where(keep[:, None], z, torch.nan).requires_grad_()
    loss = fy(poisoned, q, where=keep)
    torch.testing.assert_close(loss, fy(z[keep], q[keep]))
    loss.backward()
    assert torch.equal(poisoned.grad[1], torch.zeros(3, dtype=z.dtype))
    # a zero target at a -inf score adds 0
    minus = torch.tensor([[0.0, -INF]], dtype=torch.float64)
    assert fy(minus, torch.tensor([[1.0, 0.0]], dtype=torch.float64)) == 0


# -- smooth_labels ---------------------------------------------------------------------------


def test_smooth_labels_indices_and_probabilities() -> None:
    y = torch.tensor([[0, 2], [1, 1]])
    smoothed = funcloss.smooth_labels(y, 0.3, num_classes=3)  # classes at dim 1: (2, 3, 2)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).to(smoothed.dtype)
    torch.testing.assert_close(smoothed, 0.7 * onehot + 0.1)
    q = torch.softmax(torch.randn(4, 5, generator=torch.Generator().manual_seed(4)), -1)
    torch.testing.assert_close(funcloss.smooth_labels(q, 0.2), 0.8 * q + 0.2 / 5)
    torch.testing.assert_close(funcloss.smooth_labels(q, 0.2, dim=-1).sum(-1), torch.ones(4))
    # unbatched: () indices to (C,)
    unbatched = funcloss.smooth_labels(torch.tensor(1), 0.4, num_classes=4)
    torch.testing.assert_close(unbatched, torch.tensor([0.1, 0.7, 0.1, 0.1]))
    # smoothed one-hot targets reproduce cross_entropy's label_smoothing
    z = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 3, 1])
    torch.testing.assert_close(
        funcloss.cross_entropy(z, funcloss.smooth_labels(labels, 0.25, num_classes=4)),
        funcloss.cross_entropy(z, labels, label_smoothing=0.25),
    )


def test_smooth_labels_mask_spreads_only_over_valid_classes() -> None:
    valid = torch.tensor([[True, True, False, True], [False, False, False, False]])
    out = funcloss.smooth_labels(torch.tensor([1, 0]), 0.3, num_classes=4, where=valid)
    expected = torch.tensor([[0.1, 0.8, 0.0, 0.1], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(out, expected)
    assert math.isclose(float(out[0].sum()), 1.0, rel_tol=1e-6)
    # probabilities with mass on a removed class: that mass is dropped, not read
    q = torch.tensor([[0.5, 0.25, torch.nan, 0.25]])
    torch.testing.assert_close(
        funcloss.smooth_labels(q, 0.3, where=valid[:1]),
        torch.tensor([[0.35 + 0.1, 0.175 + 0.1, 0.0, 0.175 + 0.1]]),
    )


def test_smooth_labels_under_transforms() -> None:
    q = torch.softmax(torch.randn(3, 4, dtype=torch.float64), -1)
    torch.testing.assert_close(
        vmap(lambda r: funcloss.smooth_labels(r, 0.1))(q), funcloss.smooth_labels(q, 0.1, dim=-1)
    )
    jacobian = jacfwd(lambda r: funcloss.smooth_labels(r, 0.1))(q[0])
    torch.testing.assert_close(jacobian, 0.9 * torch.eye(4, dtype=q.dtype))
    y = torch.tensor([0, 2, 1])
    batched = vmap(lambda t: funcloss.smooth_labels(t, 0.2, num_classes=3))(y)
    torch.testing.assert_close(batched, funcloss.smooth_labels(y, 0.2, num_classes=3))
    compiled = torch.compile(
        partial(funcloss.smooth_labels, alpha=0.2, num_classes=3), fullgraph=True, backend="eager"
    )
    torch.testing.assert_close(compiled(y), funcloss.smooth_labels(y, 0.2, num_classes=3))
