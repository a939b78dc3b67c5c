"""Benchmark cases for the image losses (benchmarks/catalogue.py runs them): ssim_loss and
psnr_loss against kornia's, an 8x3x256x256 batch, float32, forward + backward with respect to
the predictions. (total_variation's case is in catalogue_box.py.)"""

from __future__ import annotations

import torch
from catalogue import Bench, Inputs

import funcloss

IMAGES = (8, 3, 256, 256)


def _pairs(quick: bool, generator: torch.Generator) -> Inputs:
    shape = (2, 3, 16, 16) if quick else IMAGES
    return (torch.rand(shape, generator=generator), torch.rand(shape, generator=generator)), {}


BENCHES: list[Bench] = []
try:
    from kornia.losses import psnr_loss as _kornia_psnr
    from kornia.losses import ssim_loss as _kornia_ssim

    def kornia_ssim_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 2 * _kornia_ssim(input, target, 11, eps=0.0)  # kornia's is (1 - SSIM) / 2

    def kornia_psnr_loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # one image at a time (kornia pools a batch into one MSE); no floor (funcloss's eps=0)
        pairs = zip(input, target, strict=True)
        return torch.stack([_kornia_psnr(x, y, 1.0) for x, y in pairs]).mean()

    _ssim_anchors = {"kornia": kornia_ssim_loss}
    _psnr_anchors = {"kornia": kornia_psnr_loss}
except ImportError:
    _ssim_anchors, _psnr_anchors = {}, {}

_SIZE = "x".join(map(str, IMAGES))
BENCHES.append(Bench("ssim_loss", _SIZE, _pairs, {"funcloss": funcloss.ssim_loss, **_ssim_anchors}))
BENCHES.append(Bench("psnr_loss", _SIZE, _pairs, {"funcloss": funcloss.psnr_loss, **_psnr_anchors}))
