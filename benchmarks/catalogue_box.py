"""Benchmark cases for the box losses (benchmarks/catalogue.py runs them).

The box losses against torchvision's (its loss files, loaded by path: the package itself does
not import against the CPU torch), 100000 box pairs, float32, forward + backward with respect
to the predictions.
"""

from __future__ import annotations

import importlib.util

import torch
from catalogue import Bench, Inputs

import funcloss

PAIRS = 100_000


def _boxes(quick: bool, generator: torch.Generator) -> Inputs:
    n = 16 if quick else PAIRS
    low = torch.rand(2, n, 2, generator=generator) * 500
    size = torch.rand(2, n, 2, generator=generator) * 200 + 1
    predictions, targets = torch.cat([low, low + size], -1)
    return (predictions, targets), {}


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
