"""The overlap losses (dice, tversky, jaccard, focal_tversky): golden values, identities, the
empty-class convention, pixel masks, edge inputs, and vmap in both forms (per sample and over
an ensemble of predictions with shared targets)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss

from . import registry as _registry  # noqa: F401  (loads every spec module first)
from .specs_overlap import naive_dice, naive_jaccard, naive_mcc, naive_tversky

LOSSES = {
    "dice_loss": funcloss.dice_loss,
    "tversky_loss": funcloss.tversky_loss,
    "jaccard_loss": funcloss.jaccard_loss,
    "focal_tversky_loss": funcloss.focal_tversky_loss,
}


def _problem(n=2, c=3, h=4, w=5, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator, dtype=dtype)
    y = torch.randint(0, c, (n, h, w), generator=generator)
    return x, y


def test_dice_by_hand() -> None:
    # one image, two classes, two pixels; p = softmax = (0.9997, 0.0003) per pixel
    x = torch.tensor([[[4.0, -4.0], [-4.0, 4.0]]], dtype=torch.float64)
    y = torch.tensor([[0, 1]])
    p = 1 / (1 + math.exp(-8.0))
    # class 0: TP = p, P = p + (1 - p) = 1, T = 1: 1 - (2p + 1) / (1 + 1 + 1)
    expected = 1 - (2 * p + 1) / 3
    out = funcloss.dice_loss(x, y, reduction="none")
    torch.testing.assert_close(out, torch.full((1, 2), expected, dtype=torch.float64))
    # smooth = 0: 1 - 2p / 2
    out = funcloss.dice_loss(x, y, smooth=0.0, reduction="none")
    torch.testing.assert_close(out, torch.full((1, 2), 1 - p, dtype=torch.float64))


def test_tversky_half_half_is_dice_and_one_one_is_jaccard() -> None:
    x, y = _problem()
    for smooth in (0.0, 1e-5, 1.0):
        for kwargs in ({}, {"batch": True}, {"activation": "sigmoid", "include_background": False}):
            dice = funcloss.dice_loss(x, y, smooth=smooth, reduction="none", **kwargs)
            half = funcloss.tversky_loss(
                x, y, alpha=0.5, beta=0.5, smooth=smooth, reduction="none", **kwargs
            )
            torch.testing.assert_close(half, dice, rtol=1e-12, atol=1e-12)
            jaccard = funcloss.jaccard_loss(x, y, smooth=smooth, reduction="none", **kwargs)
            one = funcloss.tversky_loss(
                x, y, alpha=1.0, beta=1.0, smooth=smooth, reduction="none", **kwargs
            )
            torch.testing.assert_close(one, jaccard, rtol=1e-12, atol=1e-12)


def test_jaccard_is_one_minus_iou() -> None:
    # hard predictions (activation None, 0/1 probabilities): the loss is 1 - |A & B| / |A | B|
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 6, 6, generator=generator) > 0.5
    b = torch.rand(2, 3, 6, 6, generator=generator) > 0.5
    iou = (a & b).sum((2, 3)) / (a | b).sum((2, 3))
    out = funcloss.jaccard_loss(
        a.double(), b.double(), smooth=0.0, activation=None, reduction="none"
    )
    torch.testing.assert_close(out, 1 - iou.double())


def test_focal_tversky_raises_each_class_then_averages() -> None:
    x, y = _problem()
    tversky = funcloss.tversky_loss(x, y, alpha=0.3, beta=0.7, reduction="none")
    focal = funcloss.focal_tversky_loss(x, y, alpha=0.3, beta=0.7, gamma=0.75)
    torch.testing.assert_close(focal, (tversky**0.75).mean())
    assert not torch.allclose(focal, tversky.mean() ** 0.75)  # smp's order (issue #734)


def test_class_weighted_mean_and_none() -> None:
    x, y = _problem()
    weight = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    plain = funcloss.dice_loss(x, y, reduction="none")
    torch.testing.assert_close(funcloss.dice_loss(x, y, weight, reduction="none"), plain * weight)
    expected = (plain * weight).sum() / (weight.sum() * 2)
    torch.testing.assert_close(funcloss.dice_loss(x, y, weight), expected)
    # without the background, its weight is dropped
    out = funcloss.dice_loss(x, y, weight, include_background=False)
    rest = funcloss.dice_loss(x, y, include_background=False, reduction="none")
    torch.testing.assert_close(out, (rest * weight[1:]).sum() / (weight[1:].sum() * 2))


@pytest.mark.parametrize("name", LOSSES)
def test_empty_class_is_zero_with_zero_gradient(name: str) -> None:
    """No target and no prediction (probabilities 0 in that class): loss 0, gradient 0, for
    every smoothing; a class with no target but a prediction is not empty."""
    p = torch.zeros(1, 2, 3, dtype=torch.float64)
    p[:, 0] = 1.0
    y = torch.zeros(1, 3, dtype=torch.long)
    f = LOSSES[name]
    for smooth in (0.0, 1.0):
        out = f(p, y, smooth=smooth, activation=None, reduction="none")
        assert out[0, 1] == 0 and out[0, 0] == 0
        if smooth == 0:
            g = grad(lambda q: f(q, y, smooth=0.0, activation=None, reduction="sum"))(p)
            assert torch.isfinite(g).all() and (g[:, 1] == 0).all()
    # logits that saturate at the empty class: zero gradient there, in every mode
    x = torch.tensor([[[30.0, 30.0, 30.0], [-30.0, -30.0, -30.0]]], dtype=torch.float64)
    for smooth in (0.0, 1.0):

        def total(t, smooth=smooth):
            return funcloss.dice_loss(t, y, smooth=smooth, activation="sigmoid", reduction="sum")

        for derivative in (grad(total), jacfwd(total), jacrev(total)):
            d = derivative(x)
            assert torch.isfinite(d).all()
            assert d[:, 1].abs().max() < 1e-12
    # no target, some prediction: Dice pushes it down
    q = torch.full((1, 2, 3), 0.5, dtype=torch.float64)
    out = funcloss.dice_loss(q, y, activation=None, reduction="none")
    torch.testing.assert_close(out[0, 1], torch.tensor(1 - 1 / (1.5 + 1), dtype=torch.float64))


@pytest.mark.parametrize("name", LOSSES)
def test_edge_masks_give_finite_values_and_derivatives(name: str) -> None:
    """Empty, all-background and all-ignored targets; smoothing 0 and 1: finite value and
    finite reverse, forward and second derivatives."""
    f = LOSSES[name]
    x, _ = _problem(n=1, c=3, h=2, w=2)
    targets = {
        "all-background": torch.zeros(1, 2, 2, dtype=torch.long),
        "all-ignored": torch.full((1, 2, 2), -100),
    }
    for label, y in targets.items():
        for smooth in (0.0, 1.0):
            for batch in (False, True):

                def total(t, y=y, smooth=smooth, batch=batch):
                    return f(t, y, smooth=smooth, batch=batch, ignore_index=-100)

                for what, value in (
                    ("value", total(x)),
                    ("grad", grad(total)(x)),
                    ("jacfwd", jacfwd(total)(x)),
                    ("hessian", hessian(total)(x)),
                ):
                    assert torch.isfinite(value).all(), (label, smooth, batch, what)
    # all pixels ignored: every class empty, loss 0 and zero gradient
    y = targets["all-ignored"]
    assert f(x, y, ignore_index=-100) == 0
    assert (grad(lambda t: f(t, y, ignore_index=-100, smooth=0.0))(x) == 0).all()
    # a probability target with no positive pixel (empty masks)
    empty = torch.zeros_like(x)
    value, gradient = (
        f(x, empty, activation="sigmoid"),
        grad(lambda t: f(t, empty, activation="sigmoid", smooth=0.0))(x),
    )
    assert torch.isfinite(value) and torch.isfinite(gradient).all()


def test_mask_is_ignore_index() -> None:
    x, y = _problem()
    ignored = torch.zeros_like(y, dtype=torch.bool)
    ignored[:, 0] = True
    with_ignore = funcloss.dice_loss(x, y.masked_fill(ignored, 7), ignore_index=7, reduction="none")
    with_mask = funcloss.dice_loss(x, y, mask=~ignored, reduction="none")
    torch.testing.assert_close(with_mask, with_ignore)
    # masked pixels are not read: inf/nan there reach neither value nor gradient
    bad = x.masked_fill(ignored.unsqueeze(1), math.nan).requires_grad_()
    out = funcloss.dice_loss(bad, y, mask=~ignored)
    (g,) = torch.autograd.grad(out, bad)
    torch.testing.assert_close(out, with_mask.mean())
    assert torch.isfinite(g).all() and (g[ignored.unsqueeze(1).expand_as(g)] == 0).all()
    # with probability targets too (ignore_index cannot be used there)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    torch.testing.assert_close(
        funcloss.dice_loss(x, onehot, mask=~ignored, reduction="none"), with_mask
    )


def test_infinite_logits_give_the_limit() -> None:
    x, y = _problem()
    x = x.clone()
    x[0, 1, 0, 0] = math.inf
    limit = x.clone()
    limit[0, 1, 0, 0] = 1e300
    expected = naive_tversky(limit, y)
    torch.testing.assert_close(funcloss.dice_loss(x, y), expected)
    assert torch.isfinite(grad(lambda t: funcloss.dice_loss(t, y))(x)).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize(
    "name, oracle",
    [("dice_loss", naive_dice), ("jaccard_loss", naive_jaccard), ("mcc_loss", naive_mcc)],
)
def test_an_infinite_probability_gives_the_float64_limit(name: str, oracle, sign: float) -> None:
    """activation=None: an infinite "probability" gives the float64 limit (the oracle at
    1e300 and 1e150, which agree), value and gradient (was inf / inf in dice's ratio; a NaN
    gradient, 0 * inf, in mcc's variance products, whose limit gradient is 0)."""
    fn = getattr(funcloss, name)
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, dtype=torch.float64) * 0.9 + 0.05
    y = torch.rand(2, 3, 4, dtype=torch.float64)
    limits = []
    for value in (1e300, 1e150, math.inf):
        z = x.clone()
        z[0, 1, 2] = sign * value
        z.requires_grad_()
        f = oracle if value < math.inf else fn
        loss = f(z, y, activation=None, reduction="sum")
        limits.append((loss.detach(), torch.autograd.grad(loss, z)[0]))
    (v1, g1), (v2, g2), (ours, gradient) = limits
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(ours, v1)
    torch.testing.assert_close(gradient, g1)
    at_inf = x.clone()
    at_inf[0, 1, 2] = sign * math.inf
    forward = jacfwd(lambda t: fn(t, y, activation=None, reduction="sum"))(at_inf)
    torch.testing.assert_close(forward, gradient)
    at_inf[1, 0, 0] = math.nan
    assert fn(at_inf, y, activation=None, reduction="none")[1, 0].isnan()


@pytest.mark.parametrize("name", LOSSES)
def test_vmap_per_sample_and_over_an_ensemble(name: str) -> None:
    f = LOSSES[name]
    x, y = _problem(n=3)
    # per sample: each image a batch of one (per-sample gradients, as DP-SGD takes them)
    per_sample = vmap(lambda a, b: f(a.unsqueeze(0), b.unsqueeze(0)))(x, y)
    looped = torch.stack([f(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(per_sample, looped)
    grads = vmap(grad(lambda a, b: f(a.unsqueeze(0), b.unsqueeze(0))))(x, y)
    torch.testing.assert_close(
        grads,
        torch.stack([grad(lambda a, i=i: f(a, y[i : i + 1]))(x[i : i + 1])[0] for i in range(3)]),
    )
    # an ensemble of 4 stacked predictions against one shared target
    ensemble = torch.randn(4, *x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(2))
    for kwargs in ({}, {"batch": True, "ignore_index": 0}, {"activation": "sigmoid"}):
        batched = vmap(lambda a, b, kw=kwargs: f(a, b, **kw), in_dims=(0, None))(ensemble, y)
        torch.testing.assert_close(batched, torch.stack([f(e, y, **kwargs) for e in ensemble]))
        g = vmap(grad(lambda a, b, kw=kwargs: f(a, b, **kw)), in_dims=(0, None))(ensemble, y)
        torch.testing.assert_close(
            g, torch.stack([grad(lambda a, kw=kwargs: f(a, y, **kw))(e) for e in ensemble])
        )


def test_float32_tangents_keep_their_dtype() -> None:
    x, y = _problem(dtype=torch.float32)
    for f in LOSSES.values():
        tangent = jacfwd(lambda t, f=f: f(t, y, smooth=1.0))(x)
        assert tangent.dtype == torch.float32


def test_generalized_dice_by_definition_and_empty_classes() -> None:
    x, y = _problem()
    y[1] = y[1].clamp(max=1)  # class 2 absent from image 1: it takes the largest weight there
    p = torch.softmax(x, 1)
    t = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    tp, total = (p * t).sum((2, 3)), (p + t).sum((2, 3))
    volume = t.sum((2, 3))
    w = 1 / volume**2
    w[1, 2] = w[1, :2].max()
    expected = 1 - (2 * (w * tp).sum(1) + 1) / ((w * total).sum(1) + 1)
    out = funcloss.generalized_dice_loss(x, y, reduction="none")
    torch.testing.assert_close(out, expected)
    uniform = funcloss.generalized_dice_loss(x, y, weight_type="uniform", reduction="none")
    torch.testing.assert_close(uniform, 1 - (2 * tp.sum(1) + 1) / (total.sum(1) + 1))
    # every pixel ignored: no class present, all weights 0, loss 0 with zero gradient
    ignored = torch.full_like(y, -100)
    for smooth in (0.0, 1.0):

        def total_loss(a, smooth=smooth):
            return funcloss.generalized_dice_loss(a, ignored, ignore_index=-100, smooth=smooth)

        assert total_loss(x) == 0
        for derivative in (grad(total_loss), jacfwd(total_loss), hessian(total_loss)):
            assert (derivative(x) == 0).all()
    # finite everywhere for empty and all-background targets, every weight type
    background = torch.zeros_like(y)
    for weight_type in ("square", "simple", "uniform"):

        def f(a, weight_type=weight_type):
            target = background[: a.shape[0], : a.shape[2], : a.shape[3]]
            return funcloss.generalized_dice_loss(a, target, weight_type=weight_type, smooth=0.0)

        for value in (f(x), grad(f)(x), jacfwd(f)(x), hessian(f)(x[:1, :, :2, :2])):
            assert torch.isfinite(value).all(), weight_type


def test_generalized_dice_vmap_over_an_ensemble() -> None:
    x, y = _problem()
    ensemble = torch.randn(3, *x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(3))
    f = funcloss.generalized_dice_loss
    batched = vmap(grad(f), in_dims=(0, None))(ensemble, y)
    torch.testing.assert_close(batched, torch.stack([grad(f)(e, y) for e in ensemble]))
    per_sample = vmap(lambda a, b: f(a.unsqueeze(0), b.unsqueeze(0)))(x, y)
    torch.testing.assert_close(per_sample, f(x, y, reduction="none"))


# -- mcc_loss --------------------------------------------------------------------------------


def test_mcc_on_hard_predictions_is_sklearns() -> None:
    """One-hot predictions (activation=None): 1 - MCC per class equals 1 - scikit-learn's
    ``matthews_corrcoef`` of the class-vs-rest labels."""
    metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(3)
    y = torch.randint(0, 3, (2, 5, 6), generator=generator)
    guess = torch.where(torch.rand(y.shape, generator=generator) < 0.7, y, (y + 1) % 3)
    p = torch.nn.functional.one_hot(guess, 3).movedim(-1, 1).double()
    ours = funcloss.mcc_loss(p, y, activation=None, reduction="none")
    for n in range(2):
        for c in range(3):
            expected = 1 - metrics.matthews_corrcoef(
                (y[n] == c).flatten().numpy(), (guess[n] == c).flatten().numpy()
            )
            torch.testing.assert_close(ours[n, c].item(), float(expected))


def test_mcc_is_symmetric_in_the_two_classes() -> None:
    generator = torch.Generator().manual_seed(4)
    p = torch.rand(2, 1, 4, 4, generator=generator, dtype=torch.float64)
    t = (torch.rand(2, 1, 4, 4, generator=generator) < 0.4).double()
    torch.testing.assert_close(
        funcloss.mcc_loss(p, t, activation=None, reduction="none"),
        funcloss.mcc_loss(1 - p, 1 - t, activation=None, reduction="none"),
    )


def test_mcc_constant_target_or_prediction_conventions() -> None:
    """A class absent from the target or filling it (all-background image, all ignored):
    loss 0 with zero gradient; a saturated constant prediction against a mixed target: loss 1
    (MCC's limit) with zero gradient; finite reverse, forward and second derivatives."""
    x, _ = _problem(n=1, c=3, h=2, w=2)
    targets = {
        "all-background": torch.zeros(1, 2, 2, dtype=torch.long),
        "all-ignored": torch.full((1, 2, 2), -100),
        "one-class-absent": torch.tensor([[[0, 1], [1, 0]]]),
    }
    for label, y in targets.items():
        for batch in (False, True):

            def per_term(t, y=y, batch=batch):
                return funcloss.mcc_loss(t, y, batch=batch, ignore_index=-100, reduction="none")

            flat = per_term(x).reshape(-1, 3)
            present = torch.stack(
                [((y == c).any()) & ((y != c) & (y != -100)).any() for c in range(3)]
            )
            assert (flat[:, ~present] == 0).all(), label
            assert bool((flat[:, present] > 0).all()), label
            for what, value in (
                ("grad", jacrev(per_term)(x)),
                ("jacfwd", jacfwd(per_term)(x)),
                ("hessian", hessian(lambda t: per_term(t).sum())(x)),
            ):
                assert torch.isfinite(value).all(), (label, batch, what)
                flat_value = value.reshape(-1, 3, *value.shape[-4:]) if what != "hessian" else None
                if flat_value is not None:
                    assert (flat_value[:, ~present] == 0).all(), (label, what)
    # a constant prediction: class 1 saturated to 0 everywhere, against a mixed target
    y = targets["one-class-absent"]
    saturated = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[-1e4, -1e4], [-1e4, -1e4]]])
    saturated = torch.stack([saturated[0], saturated[1], saturated[0]]).unsqueeze(0).double()

    def sigmoid_terms(t):
        return funcloss.mcc_loss(t, y, activation="sigmoid", reduction="none")

    assert sigmoid_terms(saturated)[0, 1] == 1
    d = jacrev(sigmoid_terms)(saturated)
    assert torch.isfinite(d).all() and (d[0, 1] == 0).all()
    assert torch.isfinite(jacfwd(sigmoid_terms)(saturated)).all()


def test_mcc_mask_is_ignore_index_and_vmap() -> None:
    x, y = _problem(n=3)
    ignored = torch.zeros_like(y, dtype=torch.bool)
    ignored[:, 0] = True
    torch.testing.assert_close(
        funcloss.mcc_loss(x, y, mask=~ignored, reduction="none"),
        funcloss.mcc_loss(x, y.masked_fill(ignored, 7), ignore_index=7, reduction="none"),
    )
    f = funcloss.mcc_loss
    per_sample = vmap(grad(lambda a, b: f(a.unsqueeze(0), b.unsqueeze(0))))(x, y)
    looped = torch.stack(
        [grad(lambda a, i=i: f(a, y[i : i + 1]))(x[i : i + 1])[0] for i in range(3)]
    )
    torch.testing.assert_close(per_sample, looped)
    ensemble = torch.randn(4, *x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(5))
    for kwargs in ({}, {"batch": True, "ignore_index": 0}, {"activation": "sigmoid"}):
        batched = vmap(lambda a, kw=kwargs: f(a, y, **kw))(ensemble)
        torch.testing.assert_close(batched, torch.stack([f(e, y, **kwargs) for e in ensemble]))
    tangent = jacfwd(lambda t: f(t, y))(x.float())
    assert tangent.dtype == torch.float32
