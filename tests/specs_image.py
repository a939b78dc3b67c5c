"""Specs for the image losses: total_variation.

Images ``(N, *, H, W)`` (at least three dimensions, so that a sample of the batch is a valid
call) whose neighbouring pixels differ by at least ``TIE_MARGIN``: ``abs`` has a kink where two
neighbours are equal (pinned in test_image.py). The oracle writes the definition with
``torch.diff``; the anchor is kornia's ``total_variation``.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats

from .anchors import anchor
from .registry import Case, LossSpec

TIE_MARGIN = 0.02


def _untied(image: Tensor) -> Tensor:
    """``image`` (..., H, W) with each pixel moved, in raster order, until it is at least
    ``TIE_MARGIN`` from its upper and left neighbours (already placed)."""
    x = image.clone()
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            for _ in range(3):  # two neighbours: at most two moves of 3 margins each
                close = torch.zeros(x.shape[:-2], dtype=torch.bool)
                if i > 0:
                    close |= (x[..., i, j] - x[..., i - 1, j]).abs() < TIE_MARGIN
                if j > 0:
                    close |= (x[..., i, j] - x[..., i, j - 1]).abs() < TIE_MARGIN
                x[..., i, j] = torch.where(close, x[..., i, j] + 3 * TIE_MARGIN, x[..., i, j])
    return x


@st.composite
def images(draw: st.DrawFn) -> Case:
    lead = draw(st.one_of(st.tuples(st.integers(1, 3)), st.tuples(*[st.integers(1, 3)] * 2)))
    size = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return Case((_untied(draw(floats((*lead, *size)))),))


def tv_oracle(input: Tensor, reduction: str = "sum") -> Tensor:
    # the definition: sum over both axes of |x_{i+1,j} - x_{i,j}| and |x_{i,j+1} - x_{i,j}|
    per_plane = torch.diff(input, dim=-2).abs().sum((-2, -1)) + torch.diff(input, dim=-1).abs().sum(
        (-2, -1)
    )
    if reduction == "none":
        return per_plane
    return per_plane.sum() if reduction == "sum" else per_plane.mean()


def kornia_total_variation(input: Tensor, reduction: str = "sum") -> Tensor:
    """kornia's ``total_variation`` (its per-plane ``(*,)`` values) reduced as funcloss does."""
    per_plane = anchor("kornia.losses").total_variation(input)  # plain calls: compile traces them
    if reduction == "none":
        return per_plane
    return per_plane.sum() if reduction == "sum" else per_plane.mean()


def _plane_mask(where: Tensor, position: int, case: Case) -> Tensor:
    """``where`` on the planes ``(*,)`` -> the pixels ``(*, H, W)`` it masks."""
    return where.unsqueeze(-1).unsqueeze(-1).expand(case.args[position].shape)


SPECS = [
    LossSpec(
        "total_variation",
        funcloss.total_variation,
        fnn.TotalVariation,
        images,
        tv_oracle,
        wrt=(0,),
        per_sample_dims=(0,),
        where_arg_mask=_plane_mask,
        anchor=kornia_total_variation,
        anchor_name="kornia",
    ),
]
