"""The box losses against torchvision's (``torchvision/ops/{giou,diou,ciou}_loss.py``, loaded by
path: tests/anchors.py), and torchvision's defects the issue names, measured: each test asserts
torchvision's failure and funcloss's success on the same input."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.func import grad, jacfwd, jacrev, vmap

import funcloss

from .helpers import assert_close
from .specs_box import torchvision_loss

f64 = torch.float64
NAMES = ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]


def _anchor(name):
    loss = torchvision_loss(name)

    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return loss(*args, **kwargs)

    return quiet


def _random_pairs(n: int, seed: int, dtype=f64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(2, n, 2, generator=generator, dtype=dtype) * 4
    size = torch.rand(2, n, 2, generator=generator, dtype=dtype) * 3 + 0.05
    return tuple(torch.cat([low, low + size], -1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_values_and_gradients_match_torchvision(name, reduction) -> None:
    b1, b2 = _random_pairs(200, 0)
    b2[:5] = b1[:5]  # identical pairs too
    ours, theirs = getattr(funcloss, name), _anchor(name)
    assert_close(ours(b1, b2, reduction), theirs(b1, b2, reduction), name)
    # reverse mode agrees too (torchvision's alpha is constant in reverse mode, as ours)
    for fn in (ours, theirs):
        x = b1.clone().requires_grad_()
        fn(x, b2, "sum").backward()
        if fn is ours:
            expected = x.grad
        else:
            assert_close(expected, x.grad, f"{name} gradient")
    # the unbatched form (4,) and float32
    assert_close(ours(b1[0], b2[0], reduction), theirs(b1[0], b2[0], reduction))
    x32, y32 = b1.float(), b2.float()
    torch.testing.assert_close(ours(x32, y32, reduction), theirs(x32, y32, reduction))


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_fails_vmap_funcloss_runs(name) -> None:
    b1, b2 = _random_pairs(6, 1)
    ensemble = torch.stack([b1, b1 + 0.1, b1 - 0.2])
    # torchvision's boolean-mask assignment `intsctk[mask] = ...` has no batching rule
    with pytest.raises(RuntimeError, match="indexing with a boolean mask"):
        vmap(lambda p: _anchor(name)(p, b2, "mean"))(ensemble)
    ours = vmap(lambda p: getattr(funcloss, name)(p, b2, "mean"))(ensemble)
    assert_close(ours, torch.stack([_anchor(name)(p, b2, "mean") for p in ensemble]))


def test_torchvision_ciou_jacfwd_differs_from_jacrev_funcloss_agrees() -> None:
    # different aspect ratios: alpha varies with the boxes. torchvision computes alpha under
    # no_grad, which forward mode ignores: its jacfwd differentiates alpha, its jacrev does not
    b1 = torch.tensor([[0.0, 0.0, 2.0, 1.0], [1.0, 0.5, 2.0, 3.0]], dtype=f64)
    b2 = torch.tensor([[0.5, 0.2, 1.5, 2.5], [0.0, 0.0, 3.0, 2.0]], dtype=f64)
    name = "complete_box_iou_loss"

    def theirs(x):
        return _anchor(name)(x, b2, "sum")

    def ours(x):
        return funcloss.complete_box_iou_loss(x, b2, "sum")

    forward, reverse = jacfwd(theirs)(b1), jacrev(theirs)(b1)
    assert (forward - reverse).abs().max() > 1e-3
    assert_close(jacfwd(ours)(b1), jacrev(ours)(b1))
    assert_close(jacrev(ours)(b1), reverse)  # funcloss's is torchvision's reverse-mode gradient


def test_torchvision_ciou_nan_for_zero_height_and_degenerate_boxes() -> None:
    name = "complete_box_iou_loss"
    target = torch.tensor([0.0, 0.0, 2.0, 3.0], dtype=f64)
    flat = torch.tensor([0.5, 1.0, 1.5, 1.0], dtype=f64)  # zero height: atan(w / 0)
    empty = torch.zeros(4, dtype=f64)  # degenerate: atan(0 / 0)
    # zero height: a finite value with a NaN gradient (w / h -> inf, d/dh = -w / h^2 = -inf)
    assert torch.isfinite(_anchor(name)(flat, target))
    assert grad(lambda b: _anchor(name)(b, target))(flat).isnan().any()
    # degenerate box: a NaN value
    assert _anchor(name)(empty, empty).isnan()
    assert _anchor(name)(empty, target).isnan()
    for box, other in ((flat, target), (empty, empty), (empty, target)):
        assert torch.isfinite(funcloss.complete_box_iou_loss(box, other))
        g = grad(lambda b, other=other: funcloss.complete_box_iou_loss(b, other))(box)
        assert bool(torch.isfinite(g).all())
    # funcloss's value at zero height is torchvision's (atan(inf) = pi/2)
    assert_close(funcloss.complete_box_iou_loss(flat, target), _anchor(name)(flat, target))


def test_torchvision_ciou_ignores_eps_in_its_diou_part() -> None:
    # boxes of one aspect ratio: v = 0, so CIoU = DIoU. torchvision's CIoU calls its DIoU helper
    # without `eps` (it always uses 1e-7); funcloss uses the `eps` passed throughout.
    b1 = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=f64)
    b2 = torch.tensor([[0.5, 0.5, 1.5, 1.5]], dtype=f64)
    eps = 0.5
    ciou, diou = _anchor("complete_box_iou_loss"), _anchor("distance_box_iou_loss")
    assert_close(ciou(b1, b2, eps=eps), diou(b1, b2, eps=1e-7))
    assert (ciou(b1, b2, eps=eps) - diou(b1, b2, eps=eps)).abs() > 1e-2
    assert_close(
        funcloss.complete_box_iou_loss(b1, b2, eps=eps),
        funcloss.distance_box_iou_loss(b1, b2, eps=eps),
    )


def test_torchvision_mean_of_no_boxes() -> None:
    # the one convention that differs: torchvision's mean over no boxes is 0, funcloss's nan
    empty = torch.zeros(0, 4)
    for name in NAMES:
        assert _anchor(name)(empty, empty, "mean") == 0
        assert getattr(funcloss, name)(empty, empty, "mean").isnan()


# -- total_variation against kornia ------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 7), (2, 6, 7), (2, 3, 6, 7), (2, 1, 3, 1, 5)])
def test_total_variation_matches_kornia(shape) -> None:
    from .anchors import anchor

    kornia_losses = anchor("kornia.losses")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=f64)
    y = x.clone().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = kornia_losses.total_variation(y)
        module = kornia_losses.TotalVariation()(x)
    theirs.sum().backward()
    assert_close(funcloss.total_variation(x, "none"), theirs)
    assert_close(funcloss.total_variation(x, "none"), module)
    assert_close(grad(funcloss.total_variation)(x), y.grad)
    # an ensemble under vmap(grad), against kornia's gradient one member at a time
    ensemble = torch.stack([x, 2 * x, -x])
    expected = []
    for member in ensemble:
        z = member.clone().requires_grad_()
        kornia_losses.total_variation(z).sum().backward()
        expected.append(z.grad)
    assert_close(vmap(grad(funcloss.total_variation))(ensemble), torch.stack(expected))
