"""Benchmark cases for the image losses (benchmarks/catalogue.py runs them): ssim_loss and
psnr_loss against kornia's, an 8x3x256x256 batch, float32, forward + backward with respect to
the predictions. total_variation against kornia's, one 8x3x256x256 batch."""

from __future__ import annotations

import torch
from catalogue import Bench, Inputs

import funcloss

IMAGES = (8, 3, 256, 256)


def _images(quick: bool, generator: torch.Generator) -> Inputs:
    shape = (2, 3, 8, 8) if quick else IMAGES
    return (torch.rand(shape, generator=generator),), {}


def _pairs(quick: bool, generator: torch.Generator) -> Inputs:
    shape = (2, 3, 16, 16) if quick else IMAGES
    return (torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)), {}


BENCHES: list[Bench] = []
try:
    from kornia.losses import psnr_loss as _kornia_psnr
    from kornia.losses import ssim_loss as _kornia_ssim
    from kornia.losses import total_variation as _kornia_tv

    def kornia_ssim_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2 * _kornia_ssim(input, target, 11, eps=0.0)  # kornia's is (1 - SSIM) / 2

    def kornia_psnr_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # one image at a time (kornia pools a batch into one MSE); no floor (funcloss's eps=0)
        pairs = zip(input, target, strict=True)
        return torch.stack([_kornia_psnr(x, y, 1.0) for x, y in pairs]).mean()

    def kornia_total_variation(input: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        per_image = _kornia_tv(input)  # kornia's (*, H, W) -> (*,) sums; funcloss reduces them
        return per_image.sum() if reduction == "sum" else per_image.mean()

    _ssim_anchors = {"kornia": kornia_ssim_loss}
    _psnr_anchors = {"kornia": kornia_psnr_loss}
    _tv_anchors = {"kornia": kornia_total_variation}
except ImportError:
    _ssim_anchors, _psnr_anchors, _tv_anchors = {}, {}, {}

_SIZE = "x".join(map(str, IMAGES))
BENCHES.append(Bench("ssim_loss", _SIZE, _pairs, {"funcloss": funcloss.ssim_loss, **_ssim_anchors}))
BENCHES.append(Bench("psnr_loss", _SIZE, _pairs, {"funcloss": funcloss.psnr_loss, **_psnr_anchors}))
BENCHES.append(
    Bench("total_variation", _SIZE, _images, {"funcloss": funcloss.total_variation, **_tv_anchors})
)
