"""The focal family: naive float64 oracles, the identities (gamma = 0 is BCE / cross-entropy,
epsilon = 0 is cross-entropy), and the edge inputs (saturated logits) under every derivative.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, hessian, jacfwd, jacrev

import funcloss
from funcloss._focal import _sigmoid_focal_forward, _sigmoid_focal_function

from .helpers import assert_close
from .specs_focal import naive_focal, naive_sigmoid_focal

EDGE_LOGITS = (-100.0, -40.0, -17.0, 0.0, 17.0, 40.0, 100.0)
GAMMAS = (0.0, 0.5, 2.0)

# the two paths of sigmoid_focal_loss: the composition (small inputs) and the hand-written
# backward (from 65536 elements on), called directly so that small inputs reach both
SIGMOID_PATHS = {"composition": _sigmoid_focal_forward, "custom": _sigmoid_focal_function}


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# -- sigmoid_focal_loss ----------------------------------------------------------------------


def _soft_and_hard(shape, dtype=torch.float64):
    g = _generator()
    x = torch.randn(shape, generator=g, dtype=dtype) * 4
    t = torch.rand(shape, generator=g, dtype=dtype)
    t[: shape[0] // 3] = 1.0
    t[shape[0] // 3 : 2 * shape[0] // 3] = 0.0
    return x, t


@pytest.mark.parametrize("path", SIGMOID_PATHS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 0.0), (-1.0, 0.5), (1.0, 2.0), (0.25, 3.5)])
def test_sigmoid_focal_matches_naive_formula(path, gamma, alpha) -> None:
    x, t = _soft_and_hard((12, 5))
    fn = SIGMOID_PATHS[path]
    value = fn(x, t, alpha, gamma)
    assert_close(value, naive_sigmoid_focal(x, t, alpha, gamma), "value")
    for position in (0, 1):
        ours = grad(lambda a, position=position: _call(fn, x, t, a, position, alpha, gamma))(
            (x, t)[position]
        )
        naive = grad(
            lambda a, position=position: _call(naive_sigmoid_focal, x, t, a, position, alpha, gamma)
        )((x, t)[position])
        assert_close(ours, naive, f"gradient w.r.t. argument {position}")
        forward = jacfwd(lambda a, position=position: _call(fn, x, t, a, position, alpha, gamma))(
            (x, t)[position]
        )
        assert_close(forward, naive, f"jacfwd w.r.t. argument {position}")
    ours_h = hessian(lambda a: _call(fn, x, t, a, 0, alpha, gamma))(x)
    naive_h = hessian(lambda a: _call(naive_sigmoid_focal, x, t, a, 0, alpha, gamma))(x)
    assert_close(ours_h, naive_h, "hessian")


def _call(fn, x, t, arg, position, alpha, gamma):
    args = [x, t]
    args[position] = arg
    return fn(*args, alpha, gamma).sum()


@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_sigmoid_focal_gamma_zero_is_bce_with_logits(alpha) -> None:
    x, t = _soft_and_hard((40, 5))
    for reduction in ("none", "mean", "sum"):
        bce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        if alpha >= 0:
            bce = bce * (alpha * t + (1 - alpha) * (1 - t))
        expected = {"none": bce, "mean": bce.mean(), "sum": bce.sum()}[reduction]
        actual = funcloss.sigmoid_focal_loss(x, t, alpha, 0.0, reduction)
        assert_close(actual, expected, reduction)
    plain = funcloss.sigmoid_focal_loss(x, t, -1.0, 0.0, "mean")
    assert_close(plain, funcloss.binary_cross_entropy_with_logits(x, t), "alpha < 0, gamma 0")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sigmoid_focal_large_input_equals_small(dtype) -> None:
    # 65536 elements and more take the hand-written backward and its in-place eager passes
    x, t = _soft_and_hard((256, 256), dtype)
    x[0, : len(EDGE_LOGITS)] = torch.tensor(EDGE_LOGITS, dtype=dtype)
    for gamma in GAMMAS:
        big = x.clone().requires_grad_()
        loss = funcloss.sigmoid_focal_loss(big, t, 0.25, gamma, "sum")
        loss.backward()
        small = x.clone().requires_grad_()
        composed = _sigmoid_focal_forward(small, t, 0.25, gamma).sum()
        composed.backward()
        # float32: within float32's resolution (the slope sigma(x) - t cancels)
        torch.testing.assert_close(loss, composed, msg=f"value, gamma {gamma}")
        torch.testing.assert_close(big.grad, small.grad, msg=f"gradient, gamma {gamma}")
        assert torch.isfinite(big.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("target", [0.0, 1.0, 0.3])
@pytest.mark.parametrize("path", SIGMOID_PATHS)
def test_sigmoid_focal_saturated_logits_are_finite(dtype, gamma, target, path) -> None:
    # logits +-100 in both directions, the target confident-right and confident-wrong:
    # torchvision's gradient is nan here for gamma < 1 (test_anchors_focal.py)
    fn = SIGMOID_PATHS[path]
    x = torch.tensor(EDGE_LOGITS, dtype=dtype)
    t = torch.full_like(x, target)

    def total(a):
        return fn(a, t, 0.25, gamma).sum()

    results = {
        "value": total(x),
        "grad": grad(total)(x),
        "jacfwd": jacfwd(total)(x),
        "hessian": hessian(total)(x),
        "jacrev(jacrev)": jacrev(jacrev(total))(x),
        "target grad": grad(lambda b: fn(x, b, 0.25, gamma).sum())(t),
    }
    for name, value in results.items():
        assert torch.isfinite(value).all(), f"{name}: {value}"
        assert value.dtype == dtype, name
    assert_close(results["jacfwd"], results["grad"], "jacfwd vs grad")
    # the exact limits: the value and slope of a saturated, correct element are ~0; a wrong
    # one's are the BCE's (|x| (1 - alpha_t-weighted), gradient -+1 times its weights)
    reference = naive_sigmoid_focal(x.double(), t.double(), 0.25, gamma)
    finite = torch.isfinite(reference)
    assert_close(fn(x, t, 0.25, gamma)[finite], reference[finite].to(dtype), "value")


def test_sigmoid_focal_gamma_below_one_gradient_at_saturation() -> None:
    # gamma = 0.5, t = 1 at x = 100 (float64): the loss is e^{-100} e^{-50} and its slope
    # -(1 + gamma) times that (both are exact below 1e-60; torchvision gives nan)
    x = torch.tensor([100.0], dtype=torch.float64)
    slope = grad(
        lambda a: funcloss.sigmoid_focal_loss(a, torch.ones(1, dtype=a.dtype), -1.0, 0.5).sum()
    )(x)
    expected = -1.5 * torch.exp(torch.tensor(-150.0, dtype=torch.float64))
    assert_close(slope, expected.reshape(1), "slope at 100")
    small = torch.tensor([30.0], dtype=torch.float64)
    slope = grad(
        lambda a: funcloss.sigmoid_focal_loss(a, torch.ones(1, dtype=a.dtype), -1.0, 0.5).sum()
    )(small)
    naive = grad(lambda a: naive_sigmoid_focal(a, torch.ones(1, dtype=a.dtype), -1.0, 0.5).sum())(
        small
    )
    assert_close(slope, naive, "slope at 30")


def test_sigmoid_focal_float32_tangents_keep_dtype() -> None:
    # pytorch#90065: under jacfwd a 0-dim tensor times a Python float has a float64 tangent
    for shape in ((), (3,), (2, 1)):
        x = torch.full(shape, 0.7)
        t = torch.full(shape, 1.0)
        for reduction in ("none", "mean"):
            forward = jacfwd(
                lambda a, t=t, r=reduction: funcloss.sigmoid_focal_loss(a, t, 0.25, 0.5, r)
            )(x)
            assert forward.dtype == torch.float32
            target_forward = jacfwd(
                lambda b, x=x, r=reduction: funcloss.sigmoid_focal_loss(x, b, 0.25, 0.5, r)
            )(t)
            assert target_forward.dtype == torch.float32


def test_sigmoid_focal_where_ignores_masked_inf() -> None:
    x = torch.tensor([[1.0, float("inf")], [-2.0, float("nan")]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    where = torch.tensor([[True, False], [True, False]])
    loss = funcloss.sigmoid_focal_loss(x, t, reduction="mean", where=where)
    expected = naive_sigmoid_focal(x.detach()[:, :1], t[:, :1], reduction="mean").float()
    assert_close(loss, expected, "masked mean")
    loss.backward()
    assert torch.isfinite(x.grad).all() and (x.grad[:, 1] == 0).all()


# -- focal_loss, poly1_cross_entropy ---------------------------------------------------------

SOFTMAX_LOSSES = {
    "focal_loss": (funcloss.focal_loss, "gamma"),
    "poly1_cross_entropy": (funcloss.poly1_cross_entropy, "epsilon"),
}


def _softmax_inputs():
    g = _generator()
    x = torch.randn(6, 4, 3, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 4, (6, 3), generator=g)
    y[0, 0] = -100
    w = torch.rand(4, generator=g, dtype=torch.float64) + 0.1
    q = torch.softmax(torch.randn(6, 4, 3, generator=g, dtype=torch.float64), 1)
    return x, y, w, q


@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_softmax_losses_at_zero_are_cross_entropy(name, reduction, weighted, label_smoothing):
    # gamma = 0 / epsilon = 0: torch's cross_entropy, for every target kind and option
    fn, option = SOFTMAX_LOSSES[name]
    x, y, w, q = _softmax_inputs()
    kwargs = {"reduction": reduction, "label_smoothing": label_smoothing}
    if weighted:
        kwargs["weight"] = w
    cases = [
        (x, y),  # K-dim, with an ignored element
        (x[:, :, 0], y[:, 1]),  # (N, C)
        (x[0, :, 0], y[1, 1]),  # unbatched
        (x, q),  # probabilities
        (x[:, :, 0], q[:, :, 0]),
    ]
    for input, target in cases:
        expected = F.cross_entropy(input, target, **kwargs)
        assert_close(fn(input, target, **kwargs, **{option: 0.0}), expected, f"{input.shape}")
    assert_close(
        fn(x, y.clamp_min(0), ignore_index=2, **kwargs, **{option: 0.0}),
        F.cross_entropy(x, y.clamp_min(0), ignore_index=2, **kwargs),
        "ignore_index=2",
    )


@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
def test_softmax_losses_at_zero_equal_funcloss_cross_entropy_under_masks(name) -> None:
    fn, option = SOFTMAX_LOSSES[name]
    x, y, w, q = _softmax_inputs()
    rows = torch.tensor([True, False, True, True, False, True])[:, None].expand(6, 3)
    classes = torch.tensor([True, True, False, True])[None, :, None].expand(6, 4, 3)
    for target in (y, q):
        for where in (rows, classes):
            for reduction in ("none", "mean", "sum"):
                kwargs = {"weight": w, "label_smoothing": 0.1, "reduction": reduction}
                expected = funcloss.cross_entropy(x, target, where=where, **kwargs)
                actual = fn(x, target, where=where, **kwargs, **{option: 0.0})
                assert_close(actual, expected, f"{reduction}, where {where.shape}")


def test_poly1_is_cross_entropy_plus_epsilon_times_one_minus_p_target() -> None:
    x, y, _, q = _softmax_inputs()
    x, y, q = x[:, :, 0], y[:, 1], q[:, :, 0]
    p = torch.softmax(x, 1)
    expected = F.cross_entropy(x, y, reduction="none") + 2.5 * (1 - p.gather(1, y[:, None])[:, 0])
    assert_close(funcloss.poly1_cross_entropy(x, y, epsilon=2.5, reduction="none"), expected)
    expected = F.cross_entropy(x, q, reduction="none") + 2.5 * (1 - (q * p).sum(1))
    assert_close(funcloss.poly1_cross_entropy(x, q, epsilon=2.5, reduction="none"), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# 1 and 3 besides: an integer gamma takes the polynomial (-expm1(log p))^gamma
@pytest.mark.parametrize("gamma", [*GAMMAS, 1.0, 3.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_focal_saturated_correct_class_is_finite(dtype, gamma, label_smoothing) -> None:
    # p = 1 to rounding at the target class (MONAI: nan gradients for gamma < 1)
    x = torch.tensor([[100.0, 0.0, 0.0], [0.0, -100.0, 50.0], [3.0, 1.0, -2.0]], dtype=dtype)
    y = torch.tensor([0, 2, 1])
    q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.5, 0.3]], dtype=dtype)

    def loss(a, target=y):
        return funcloss.focal_loss(a, target, gamma=gamma, label_smoothing=label_smoothing)

    for target in (y, q):
        results = {
            "value": loss(x, target),
            "grad": grad(loss)(x, target),
            "jacfwd": jacfwd(loss)(x, target),
            "hessian": hessian(loss)(x, target),
        }
        for what, value in results.items():
            assert torch.isfinite(value).all(), f"{what}: {value}"
            assert value.dtype == dtype
        assert_close(results["jacfwd"], results["grad"], "jacfwd vs grad")
    if dtype == torch.float64:  # the naive formula is exact here in float64 (p = 1, 1 - p = 0)
        for target in (y, q):
            expected = naive_focal(x, target, gamma=gamma, label_smoothing=label_smoothing)
            assert_close(loss(x, target), expected, "value")


def test_focal_float32_tangents_keep_dtype() -> None:
    x = torch.tensor([2.0, 0.0, -1.0])
    for target in (torch.tensor(0), torch.tensor([0.2, 0.5, 0.3])):
        for fn, option in SOFTMAX_LOSSES.values():
            forward = jacfwd(lambda a, t=target, f=fn, o=option: f(a, t, **{o: 0.5}))(x)
            assert forward.dtype == torch.float32


# -- asymmetric_loss -------------------------------------------------------------------------


def test_asymmetric_at_zero_is_bce_with_logits() -> None:
    x, t = _soft_and_hard((20, 6))
    for reduction in ("none", "mean", "sum"):
        expected = F.binary_cross_entropy_with_logits(x, t, reduction=reduction)
        actual = funcloss.asymmetric_loss(
            x, t, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction=reduction
        )
        assert_close(actual, expected, reduction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("gamma_pos", "gamma_neg", "clip"), [(0.0, 4.0, 0.05), (1.0, 0.5, 0.0)])
def test_asymmetric_saturated_logits_are_finite(dtype, gamma_pos, gamma_neg, clip) -> None:
    x = torch.tensor(EDGE_LOGITS, dtype=dtype)
    kwargs = {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "clip": clip, "reduction": "sum"}
    for target in (0.0, 1.0, 0.3):
        t = torch.full_like(x, target)

        def total(a, t=t):
            return funcloss.asymmetric_loss(a, t, **kwargs)

        for what, value in {
            "value": total(x),
            "grad": grad(total)(x),
            "jacfwd": jacfwd(total)(x),
            "hessian": hessian(total)(x),
        }.items():
            assert torch.isfinite(value).all(), f"{what}: {value}"
    # a positive label at logit -30: the true slope, -(1 - p)^gamma+ (...) ~ -1 (timm: 0)
    slope = grad(lambda a: funcloss.asymmetric_loss(a, torch.ones(1, dtype=dtype), **kwargs))(
        torch.tensor([-30.0], dtype=dtype)
    )
    assert slope.item() < -0.99
