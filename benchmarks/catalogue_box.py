"""Benchmark cases for the box and image losses (benchmarks/catalogue.py runs them).

The box losses against torchvision's (its loss files, loaded by path: the package itself does
not import against the CPU torch), 100000 box pairs; total_variation against kornia's, an
8x3x256x256 batch. float32, forward + backward with respect to the predictions.
"""

from __future__ import annotations

import importlib.util

import torch
from catalogue import Bench, Inputs

import funcloss

PAIRS = 100_000
IMAGES = (8, 3, 256, 256)


def _boxes(quick: bool, generator: torch.Generator) -> Inputs:
    n = 16 if quick else PAIRS
    low = torch.rand(2, n, 2, generator=generator) * 500
    size = torch.rand(2, n, 2, generator=generator) * 200 + 1
    predictions, targets = torch.cat([low, low + size], -1)
    return (predictions, targets), {}


def _images(quick: bool, generator: torch.Generator) -> Inputs:
    shape = (2, 3, 8, 8) if quick else IMAGES
    return (torch.rand(shape, generator=generator),), {}


def _torchvision(name: str, file: str):
    """torchvision's ``name`` from ``torchvision/ops/<file>`` by path, or None if missing."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    from tests.anchors import load_file

    return getattr(load_file("torchvision", f"ops/{file}"), name)


BENCHES: list[Bench] = []
for _name, _file in [
    ("generalized_box_iou_loss", "giou_loss.py"),
    ("distance_box_iou_loss", "diou_loss.py"),
    ("complete_box_iou_loss", "ciou_loss.py"),
]:
    _contenders = {"funcloss": getattr(funcloss, _name)}
    _anchor = _torchvision(_name, _file)
    if _anchor is not None:
        _contenders["torchvision"] = _anchor
    BENCHES.append(Bench(_name, f"{PAIRS} pairs", _boxes, _contenders))

try:
    from kornia.losses import total_variation as _kornia_tv

    def kornia_total_variation(input: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        per_image = _kornia_tv(input)  # kornia's (*, H, W) -> (*,) sums; funcloss reduces them
        return per_image.sum() if reduction == "sum" else per_image.mean()

    _tv_anchors = {"kornia": kornia_total_variation}
except ImportError:
    _tv_anchors = {}

BENCHES.append(
    Bench(
        "total_variation",
        "x".join(map(str, IMAGES)),
        _images,
        {"funcloss": funcloss.total_variation, **_tv_anchors},
    )
)
