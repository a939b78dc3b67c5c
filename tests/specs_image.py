"""Specs for the image losses: total_variation, ssim_loss, psnr_loss.

total_variation: images ``(N, *, H, W)`` (at least three dimensions, so that a sample of the
batch is a valid call) whose neighbouring pixels differ by at least ``TIE_MARGIN``: ``abs`` has
a kink where two neighbours are equal (pinned in test_image.py). The oracle writes the
definition with ``torch.diff``; the anchor is kornia's ``total_variation``.

ssim_loss: image pairs ``(N, H, W)`` or ``(N, C, H, W)`` in ``[0, 1]``, windows of 3 and 5
taps, both paddings; smooth everywhere (its denominators are at least ``c1 * c2``), so draws may
be equal or constant. A window of 1 tap (variances identically 0) is pinned in test_image.py:
there float32's ``E[x^2] - E[x]^2`` gives gradients within ``eps_32 L^2 / c2`` (1e-4) of the
exact ones, as kornia's and MONAI's, outside the registry's float32 tolerance. The oracle is
Wang et al.'s definition written out: each pixel's window
gathered from the reflect-padded plane (explicit indices, ``unfold``), the weighted mean, the
centred weighted variances and covariance. The anchor is kornia's ``ssim_loss`` (its sigma 1.5,
which the draws keep; sigma, ``k1`` and ``k2`` are varied in test_image.py).

psnr_loss: image pairs ``(N, C, H, W)`` in ``[0, L]`` whose pixels differ by at least ``0.1 L``
(``L`` the data range; the MSE's log has a curvature of ``1 / eps`` at identical images, pinned
in test_image.py). The oracle is the textbook ``10 log10(L^2 / MSE)`` with the floor; the anchor
is kornia's ``psnr_loss``, one image at a time (kornia pools a batch into one MSE).
"""

from __future__ import annotations

import math

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


# -- ssim_loss -------------------------------------------------------------------------------


@st.composite
def ssim_pairs(draw: st.DrawFn) -> Case:
    window_size = draw(st.sampled_from([3, 5]))
    padding = draw(st.sampled_from(["same", "valid"]))
    smallest = window_size // 2 + 1 if padding == "same" else window_size
    lead = draw(st.one_of(st.tuples(st.integers(1, 2)), st.tuples(*[st.integers(1, 2)] * 2)))
    shape = (*lead, draw(st.integers(smallest, smallest + 2)), draw(st.integers(smallest, 5)))
    input = draw(floats(shape, min_value=0.0, max_value=1.0))
    target = draw(floats(shape, min_value=0.0, max_value=1.0))
    kwargs = {"window_size": window_size, "padding": padding}
    if draw(st.booleans()):
        kwargs["data_range"] = draw(st.sampled_from([0.5, 2.0]))
    return Case((input, target), kwargs)


def _reflected(n: int, radius: int) -> list[int]:
    """The indices of a length-``n`` axis reflect-padded by ``radius`` (the edge not repeated)."""
    indices = []
    for t in range(-radius, n + radius):
        indices.append(-t if t < 0 else 2 * (n - 1) - t if t > n - 1 else t)
    return indices


def ssim_oracle(
    input: Tensor,
    target: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: str = "same",
    reduction: str = "mean",
) -> Tensor:
    # Wang et al. 2004, eqs. (13)-(15): weighted moments over each pixel's window
    radius = window_size // 2
    taps = [math.exp(-((a - radius) ** 2) / (2 * sigma**2)) for a in range(window_size)]
    g = torch.tensor(taps, dtype=torch.float64) / sum(taps)
    w = g[:, None] * g[None, :]  # the circular-symmetric window, sums to 1
    w = w.to(torch.promote_types(input.dtype, target.dtype))  # the images' dtype
    h, width = input.shape[-2:]
    if padding == "same":
        rows = torch.tensor(_reflected(h, radius))
        cols = torch.tensor(_reflected(width, radius))
        input = input.index_select(-2, rows).index_select(-1, cols)
        target = target.index_select(-2, rows).index_select(-1, cols)
    # (*, H', W', k, k): each pixel's window
    x = input.unfold(-2, window_size, 1).unfold(-2, window_size, 1)
    y = target.unfold(-2, window_size, 1).unfold(-2, window_size, 1)
    mu_x = (w * x).sum((-2, -1))
    mu_y = (w * y).sum((-2, -1))
    dx = x - mu_x[..., None, None]
    dy = y - mu_y[..., None, None]
    var_x = (w * dx**2).sum((-2, -1))
    var_y = (w * dy**2).sum((-2, -1))
    cov = (w * dx * dy).sum((-2, -1))
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    ssim = luminance * (2 * cov + c2) / (var_x + var_y + c2)
    loss = 1 - ssim
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def kornia_ssim_loss(
    input: Tensor,
    target: Tensor,
    *,
    window_size: int = 11,
    data_range: float = 1.0,
    padding: str = "same",
    reduction: str = "mean",
) -> Tensor:
    """kornia's ``ssim_loss`` (its sigma 1.5, ``k1`` 0.01, ``k2`` 0.03; ``eps=0``), its planes
    ``(*, H, W)`` as ``(B, 1, H, W)``, times 2 (kornia's is ``(1 - SSIM) / 2``)."""
    h, w = input.shape[-2:]
    per_pixel = anchor("kornia.losses").ssim_loss(
        input.reshape(-1, 1, h, w),
        target.reshape(-1, 1, h, w),
        window_size,
        max_val=float(data_range),
        eps=0.0,
        reduction="none",
        padding=padding,
    )
    loss = 2 * per_pixel.reshape(*input.shape[:-2], *per_pixel.shape[-2:])
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _ssim_plane_mask(where: Tensor, position: int, case: Case) -> Tensor:
    """``where`` on the map -> the pixels only masked ones read: a plane whose every pixel of
    the map is masked."""
    read = where.flatten(-2).any(-1)[..., None, None]
    return read.expand(case.args[position].shape)


# -- psnr_loss -------------------------------------------------------------------------------


@st.composite
def psnr_pairs(draw: st.DrawFn) -> Case:
    lead = draw(st.one_of(st.tuples(st.integers(1, 3)), st.tuples(*[st.integers(1, 2)] * 2)))
    shape = (*lead, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    data_range = draw(st.sampled_from([1.0, 0.5, 255.0]))
    input = draw(floats(shape, min_value=0.0, max_value=1.0)) * data_range
    step = draw(floats(shape, min_value=0.1, max_value=0.5)) * data_range
    sign = draw(floats(shape, min_value=-1.0, max_value=1.0)).sign()
    target = input + torch.where(sign == 0, 1.0, sign) * step
    kwargs = {} if data_range == 1.0 else {"data_range": data_range}
    if draw(st.booleans()):
        kwargs["eps"] = draw(st.sampled_from([0.0, 1e-3]))
    return Case((input, target), kwargs)


def psnr_oracle(
    input: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    eps: float = 1e-10,
    reduction: str = "mean",
) -> Tensor:
    # PSNR = 10 log10(MAX^2 / MSE), per image (C, H, W), the MSE floored by eps * MAX^2
    mse = ((input - target) ** 2).flatten(-3).mean(-1)
    loss = -10 * torch.log10(data_range**2 / (mse + eps * data_range**2))
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def kornia_psnr_loss(
    input: Tensor,
    target: Tensor,
    *,
    data_range: float = 1.0,
    eps: float = 1e-10,
    reduction: str = "mean",
) -> Tensor:
    """kornia's ``psnr_loss`` one image ``(C, H, W)`` at a time (kornia pools every image it is
    given into one MSE). kornia has no ``eps`` (it is funcloss's ``eps=0``): its
    ``10 log10(MSE / L^2)`` is mapped to ``10 log10(MSE / L^2 + eps)``."""
    psnr_loss = anchor("kornia.losses").psnr_loss
    images = zip(input.flatten(0, -4), target.flatten(0, -4), strict=True)
    per_image = torch.stack([psnr_loss(x, y, float(data_range)) for x, y in images])
    if eps != 0:
        per_image = 10 * torch.log10(10 ** (per_image / 10) + eps)
    loss = per_image.reshape(input.shape[:-3])
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _image_mask(where: Tensor, position: int, case: Case) -> Tensor:
    return where[..., None, None, None].expand(case.args[position].shape)


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
    LossSpec(
        "ssim_loss",
        funcloss.ssim_loss,
        fnn.SSIMLoss,
        ssim_pairs,
        ssim_oracle,
        wrt=(0, 1),
        where_arg_mask=_ssim_plane_mask,
        anchor=kornia_ssim_loss,
        anchor_name="kornia",
    ),
    LossSpec(
        "psnr_loss",
        funcloss.psnr_loss,
        fnn.PSNRLoss,
        psnr_pairs,
        psnr_oracle,
        wrt=(0, 1),
        where_arg_mask=_image_mask,
        anchor=kornia_psnr_loss,
        anchor_name="kornia",
    ),
]
