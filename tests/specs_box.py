"""Specs for the box losses: generalized_box_iou_loss, distance_box_iou_loss,
complete_box_iou_loss.

Draws are valid boxes (widths and heights in [0.2, 3]) whose edges keep off each other's: the
losses take ``min``/``max`` of edge coordinates and ``relu`` of the overlap, kinks where two
edges coincide. Boxes whose edges coincide (identical boxes, touching boxes), zero-height and
empty boxes are pinned in test_box.py. The oracles are the papers' formulas written naively in
float64; the anchors are torchvision's files, loaded by path (tests/anchors.py).
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats

from .registry import Case, LossSpec

# Half-width of the band around an edge of the other box that draws never enter.
EDGE_MARGIN = 0.02


def _off(values: Tensor, points: Tensor) -> Tensor:
    """``values`` moved to ``2 * EDGE_MARGIN`` from each of ``points`` they are closer than
    ``EDGE_MARGIN`` to (points of one box are >= 0.2 apart, so one push per point suffices)."""
    for point in points:
        close = (values - point).abs() < EDGE_MARGIN
        pushed = point + torch.where(values >= point, 2 * EDGE_MARGIN, -2 * EDGE_MARGIN)
        values = torch.where(close, pushed, values)
    return values


def _boxes(low: Tensor, size: Tensor) -> Tensor:
    return torch.cat([low, low + size], dim=-1)


@st.composite
def box_pairs(draw: st.DrawFn) -> Case:
    """``(boxes1, boxes2)`` of shape ``(N, 4)`` or ``(N, M, 4)``, some overlapping, some not."""
    lead = draw(st.one_of(st.tuples(st.integers(1, 5)), st.tuples(*[st.integers(1, 3)] * 2)))
    low1 = draw(floats((*lead, 2), min_value=-2.0, max_value=2.0))
    size1 = draw(floats((*lead, 2), min_value=0.2, max_value=3.0))
    boxes1 = _boxes(low1, size1)
    low2 = draw(floats((*lead, 2), min_value=-2.0, max_value=2.0))
    size2 = draw(floats((*lead, 2), min_value=0.2, max_value=3.0))
    boxes2 = _boxes(low2, size2)
    # each edge of boxes2 off both parallel edges of boxes1 (x1, x2 for x; y1, y2 for y)
    edges1 = boxes1.reshape(*lead, 2, 2)  # [..., corner, axis]
    edges2 = boxes2.reshape(*lead, 2, 2)
    edges2 = _off(edges2, [edges1[..., :1, :], edges1[..., 1:, :]])
    boxes2 = edges2.reshape(*lead, 4)
    kwargs = {}
    if draw(st.booleans()):
        kwargs["eps"] = draw(st.sampled_from([0.0, 1e-7, 1e-3]))
    return Case((boxes1, boxes2), kwargs)


# -- oracles: the papers' formulas, naive float64 ---------------------------------------------


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _geometry(b1: Tensor, b2: Tensor) -> dict[str, Tensor]:
    """Areas, intersection, union, enclosing box and centres, one quantity at a time."""
    w1, h1 = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
    w2, h2 = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
    left = torch.max(b1[..., 0], b2[..., 0])
    right = torch.min(b1[..., 2], b2[..., 2])
    bottom = torch.max(b1[..., 1], b2[..., 1])
    top = torch.min(b1[..., 3], b2[..., 3])
    intersection = (right - left).clamp(min=0) * (top - bottom).clamp(min=0)
    union = w1 * h1 + w2 * h2 - intersection
    cw = torch.max(b1[..., 2], b2[..., 2]) - torch.min(b1[..., 0], b2[..., 0])
    ch = torch.max(b1[..., 3], b2[..., 3]) - torch.min(b1[..., 1], b2[..., 1])
    centre1 = (b1[..., :2] + b1[..., 2:]) / 2
    centre2 = (b2[..., :2] + b2[..., 2:]) / 2
    distance = ((centre1 - centre2) ** 2).sum(-1)
    return dict(
        w1=w1, h1=h1, w2=w2, h2=h2, intersection=intersection, union=union, cw=cw, ch=ch,
        distance=distance,
    )  # fmt: skip


def giou_oracle(b1: Tensor, b2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    # Rezatofighi et al. 2019, Algorithm 1 (with torchvision's eps in both denominators)
    g = _geometry(b1, b2)
    iou = g["intersection"] / (g["union"] + eps)
    area_c = g["cw"] * g["ch"]
    return _reduce(1 - (iou - (area_c - g["union"]) / (area_c + eps)), reduction)


def diou_oracle(b1: Tensor, b2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    # Zheng et al. 2020, eq. (6): 1 - IoU + rho^2(b, b_gt) / c^2
    g = _geometry(b1, b2)
    iou = g["intersection"] / (g["union"] + eps)
    return _reduce(1 - iou + g["distance"] / (g["cw"] ** 2 + g["ch"] ** 2 + eps), reduction)


def ciou_oracle(b1: Tensor, b2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    # Zheng et al. 2020, eqs. (8)-(11); alpha is a constant for differentiation (the paper)
    g = _geometry(b1, b2)
    iou = g["intersection"] / (g["union"] + eps)
    diou = 1 - iou + g["distance"] / (g["cw"] ** 2 + g["ch"] ** 2 + eps)
    v = 4 / math.pi**2 * (torch.atan(g["w2"] / g["h2"]) - torch.atan(g["w1"] / g["h1"])) ** 2
    alpha = (v / ((1 - iou) + v + eps)).detach()
    return _reduce(diou + alpha * v, reduction)


# -- anchors: torchvision's files, by path ---------------------------------------------------

_TORCHVISION_FILES = {
    "generalized_box_iou_loss": "ops/giou_loss.py",
    "distance_box_iou_loss": "ops/diou_loss.py",
    "complete_box_iou_loss": "ops/ciou_loss.py",
}


def torchvision_loss(name: str):
    """torchvision's ``name`` (loaded on first use), funcloss's call signature."""

    def loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7):
        from .anchors import load_file

        return getattr(load_file("torchvision", _TORCHVISION_FILES[name]), name)(
            boxes1, boxes2, reduction, eps
        )

    loss.__name__ = f"torchvision_{name}"
    return loss


def _pair_mask(where: Tensor, position: int, case: Case) -> Tensor:
    """``where`` on the loss's shape ``(...,)`` -> the coordinates ``(..., 4)`` it masks."""
    return where.unsqueeze(-1).expand(case.args[position].shape)


def _spec(name: str, module: type, oracle, gradient_of_value: bool = True) -> LossSpec:
    return LossSpec(
        name,
        getattr(funcloss, name),
        module,
        box_pairs,
        oracle,
        wrt=(0, 1),
        where_arg_mask=_pair_mask,
        anchor=torchvision_loss(name),
        anchor_name="torchvision",
        torch_module=None,
        gradient_of_value=gradient_of_value,
    )


SPECS = [
    _spec("generalized_box_iou_loss", fnn.GeneralizedBoxIoULoss, giou_oracle),
    _spec("distance_box_iou_loss", fnn.DistanceBoxIoULoss, diou_oracle),
    # CIoU's gradient treats its trade-off weight alpha as a constant (the paper, torchvision)
    _spec("complete_box_iou_loss", fnn.CompleteBoxIoULoss, ciou_oracle, gradient_of_value=False),
]
