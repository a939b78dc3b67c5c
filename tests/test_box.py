"""Box losses: golden values, identities and the edge boxes (identical, touching, zero-area,
zero-height, degenerate ``[0, 0, 0, 0]``) with finite values and finite reverse, forward and
second derivatives; both forms of vmap; float32 tangents."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .specs_box import ciou_oracle, diou_oracle, giou_oracle

f64 = torch.float64
NAMES = ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]
ORACLES = dict(zip(NAMES, [giou_oracle, diou_oracle, ciou_oracle], strict=True))


def _t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=f64)


# Pairs where an edge of one box meets the other's, or a box is degenerate.
EDGE_PAIRS = {
    "identical": ([1.0, 2.0, 3.0, 5.0], [1.0, 2.0, 3.0, 5.0]),
    "touching": ([0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 2.0, 1.0]),
    "shared edge": ([0.0, 0.0, 2.0, 1.0], [0.0, 0.5, 2.0, 3.0]),
    "zero height": ([0.0, 1.0, 2.0, 1.0], [0.5, 0.0, 1.5, 2.0]),
    "zero height, both": ([0.0, 1.0, 2.0, 1.0], [0.0, 1.0, 2.0, 1.0]),
    "zero width": ([1.0, 0.0, 1.0, 2.0], [0.0, 0.5, 2.0, 1.5]),
    "point in box": ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]),
    "degenerate": ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]),
    "degenerate and box": ([0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 2.0, 3.0]),
}


@pytest.mark.parametrize("name", NAMES)
def test_matches_the_papers_oracle(name) -> None:
    generator = torch.Generator().manual_seed(0)
    low = torch.rand(2, 50, 2, generator=generator, dtype=f64) * 4
    size = torch.rand(2, 50, 2, generator=generator, dtype=f64) * 3 + 0.1
    b1, b2 = torch.cat([low, low + size], -1)
    fn = getattr(funcloss, name)
    for reduction in ("none", "mean", "sum"):
        for eps in (1e-7, 0.0, 0.1):
            assert_close(fn(b1, b2, reduction, eps), ORACLES[name](b1, b2, reduction, eps))


def test_golden_values() -> None:
    # by hand: boxes [0,0,2,2] and [1,1,3,3]: intersection 1, union 7, enclosing 3x3 = 9,
    # centres 2 apart (squared), diagonal^2 18; same aspect ratio, so CIoU = DIoU
    b1, b2 = _t([0.0, 0.0, 2.0, 2.0]), _t([1.0, 1.0, 3.0, 3.0])
    iou = 1 / 7
    expected = {
        "generalized_box_iou_loss": 1 - iou + 2 / 9,
        "distance_box_iou_loss": 1 - iou + 2 / 18,
        "complete_box_iou_loss": 1 - iou + 2 / 18,
    }
    for name, value in expected.items():
        got = getattr(funcloss, name)(b1, b2, eps=0.0)
        assert_close(got, torch.tensor(value, dtype=f64), name)
    # CIoU of [0,0,1,1] against [0,0,1,2] (by hand): IoU 1/2, centres 0.25 apart squared,
    # diagonal^2 5, v = 4/pi^2 (atan(1/2) - pi/4)^2, alpha = v / (1/2 + v)
    v = 4 / math.pi**2 * (math.atan(0.5) - math.pi / 4) ** 2
    expected = 0.5 + 0.25 / 5 + v * v / (0.5 + v)
    got = funcloss.complete_box_iou_loss(_t([0.0, 0.0, 1.0, 1.0]), _t([0.0, 0.0, 1.0, 2.0]), eps=0)
    assert_close(got, torch.tensor(expected, dtype=f64))


@pytest.mark.parametrize("name", NAMES)
def test_identical_boxes_lose_zero(name) -> None:
    # the identity IoU loss(b, b) = 0, exactly with eps = 0, up to eps / area with eps > 0
    generator = torch.Generator().manual_seed(1)
    low = torch.rand(20, 2, generator=generator, dtype=f64) * 4
    boxes = torch.cat([low, low + torch.rand(20, 2, generator=generator, dtype=f64) + 1], -1)
    fn = getattr(funcloss, name)
    assert_close(fn(boxes, boxes, eps=0.0), torch.zeros(20, dtype=f64))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert bool((fn(boxes, boxes) <= 2e-7 / area).all())
    # and a minimum: zero gradient with respect to either box
    g = grad(lambda b: fn(b, boxes.clone(), "sum", 0.0))(boxes)
    assert_close(g, torch.zeros_like(boxes))


@pytest.mark.parametrize("name", NAMES)
def test_symmetric(name) -> None:
    generator = torch.Generator().manual_seed(2)
    low = torch.rand(2, 30, 2, generator=generator, dtype=f64) * 4
    b1, b2 = torch.cat([low, low + torch.rand(2, 30, 2, generator=generator, dtype=f64)], -1)
    fn = getattr(funcloss, name)
    assert_close(fn(b1, b2), fn(b2, b1))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pair", list(EDGE_PAIRS), ids=str)
@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_edge_boxes_have_finite_values_and_derivatives(name, pair, eps) -> None:
    b1, b2 = (_t(b) for b in EDGE_PAIRS[pair])
    fn = getattr(funcloss, name)
    both = torch.stack([b1, b2])

    def f(boxes):
        return fn(boxes[0], boxes[1], "sum", eps)

    value = f(both)
    assert torch.isfinite(value), (pair, value)
    for what, derivative in {
        "jacrev": jacrev(f)(both),
        "jacfwd": jacfwd(f)(both),
        "hessian": hessian(f)(both),
        "jacrev(jacrev)": jacrev(jacrev(f))(both),
    }.items():
        assert bool(torch.isfinite(derivative).all()), (pair, what, derivative)
    assert_close(jacfwd(f)(both), jacrev(f)(both), f"{pair}: jacfwd vs jacrev")


def test_zero_height_angle_is_the_one_sided_limit() -> None:
    # atan(w / h) -> pi/2 as h -> 0+: CIoU at h = 0 is the limit from valid boxes, and so is its
    # gradient with respect to the other box (the flat box lies above the target: no overlap,
    # so the intersection's own kink at zero height is not in play)
    target = _t([0.0, 0.0, 2.0, 1.0])
    flat = _t([0.0, 2.0, 2.0, 2.0])

    def f(pred, other):
        return funcloss.complete_box_iou_loss(pred, other, eps=0.0)

    near = _t([0.0, 2.0, 2.0, 2.0 + 1e-9])
    assert_close(f(flat, target), f(near, target), rtol=1e-6)
    assert_close(grad(f, argnums=1)(flat, target), grad(f, argnums=1)(near, target), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_per_sample_and_over_an_ensemble(name) -> None:
    generator = torch.Generator().manual_seed(3)
    low = torch.rand(6, 2, generator=generator, dtype=f64) * 4
    target = torch.cat([low, low + torch.rand(6, 2, generator=generator, dtype=f64) + 0.2], -1)
    ensemble = target + 0.3 * torch.randn(5, 6, 4, generator=generator, dtype=f64)
    fn = getattr(funcloss, name)
    # per sample: one pair at a time
    assert_close(vmap(fn)(ensemble[0], target), fn(ensemble[0], target))
    # an ensemble of stacked predictions against shared targets, with its gradients
    members = vmap(lambda p: fn(p, target, "mean"))(ensemble)
    assert_close(members, torch.stack([fn(p, target, "mean") for p in ensemble]))
    grads = vmap(grad(lambda p: fn(p, target, "mean")))(ensemble)
    expected = torch.stack([grad(lambda p: fn(p, target, "mean"))(p) for p in ensemble])
    assert_close(grads, expected)


@pytest.mark.parametrize("name", NAMES)
def test_float32_keeps_float32_tangents(name) -> None:
    b1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 1.0, 2.0, 1.0]])
    b2 = torch.tensor([[1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    fn = getattr(funcloss, name)
    jf = jacfwd(lambda b: fn(b, b2, "sum"))(b1)
    jr = jacrev(lambda b: fn(b, b2, "sum"))(b1)
    assert jf.dtype == torch.float32 and fn(b1, b2).dtype == torch.float32
    torch.testing.assert_close(jf, jr)


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_unbatched(name) -> None:
    fn = getattr(funcloss, name)
    empty = torch.zeros(0, 4)
    assert fn(empty, empty).shape == (0,)
    assert fn(empty, empty, "mean").isnan()  # torch's mean of nothing (torchvision's: 0)
    assert fn(empty, empty, "sum") == 0
    box = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert fn(box, box + 0.5).shape == ()


@pytest.mark.parametrize("name", NAMES)
def test_mask_removes_a_pair_holding_nan(name) -> None:
    fn = getattr(funcloss, name)
    b1 = torch.tensor([[0.0, 0.0, 2.0, 2.0], [math.nan, 0.0, math.inf, 1.0]], dtype=f64)
    b2 = torch.tensor([[1.0, 1.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]], dtype=f64)
    where = torch.tensor([True, False])
    x = b1.clone().requires_grad_()
    out = fn(x, b2, "mean", where=where)
    out.backward()
    assert_close(out, fn(b1[:1], b2[:1], "mean"))
    assert bool(torch.isfinite(x.grad).all()) and bool((x.grad[1] == 0).all())


# Boxes with infinite coordinates (each still has x1 <= x2, y1 <= y2) against finite ones.
INFINITE_BOXES = [
    [0.0, 0.0, math.inf, 2.0],
    [-math.inf, -1.0, 3.0, 0.5],
    [0.5, 0.0, 2.0, math.inf],
    [-math.inf, 0.0, math.inf, 1.0],
]


@pytest.mark.parametrize("dtype", [f64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_an_infinite_coordinate_gives_the_limit(name, dtype) -> None:
    """The float64 limit (the oracle with inf replaced by 1e150; 1e300 overflows DIoU's squared
    diagonal), value and gradient, also in forward mode (was NaN: inf / inf after scaling)."""
    fn = getattr(funcloss, name)
    b1 = torch.tensor(INFINITE_BOXES, dtype=dtype)
    b2 = torch.tensor(
        [[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 4.0], [2.0, -1.0, 5.0, 0.5]],
        dtype=dtype,
    )
    stand_in = b1.double().nan_to_num(posinf=1e150, neginf=-1e150).requires_grad_()
    truth = ORACLES[name](stand_in, b2.double(), reduction="sum")
    (truth_grad,) = torch.autograd.grad(truth, stand_in)
    x = b1.clone().requires_grad_()
    value = fn(x, b2, "sum")
    (gradient,) = torch.autograd.grad(value, x)
    # float32: torch's float32 tolerances (its rounding of the finite coordinates' terms)
    close = assert_close if dtype == f64 else torch.testing.assert_close
    close(value, truth.detach().to(dtype))
    close(gradient, truth_grad.to(dtype))
    close(jacfwd(lambda t: fn(t, b2, "sum"))(b1), gradient)
    nan = b1.clone()
    nan[0, 1] = math.nan
    assert fn(nan, b2)[0].isnan()  # a NaN beside an infinite coordinate still shows


def test_modules() -> None:
    b1, b2 = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 4.0]])
    modules = [fnn.GeneralizedBoxIoULoss, fnn.DistanceBoxIoULoss, fnn.CompleteBoxIoULoss]
    for cls, name in zip(modules, NAMES, strict=True):
        module = cls(reduction="sum", eps=0.0)
        assert "reduction='sum'" in repr(module)
        assert_close(module(b1, b2), getattr(funcloss, name)(b1, b2, "sum", 0.0))
