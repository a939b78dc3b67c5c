"""ssim_loss and psnr_loss against kornia's (``kornia.losses``) and MONAI's ``SSIMLoss``, with
the convention adapters each needs, and the anchors' defects, measured: each test asserts the
anchor's failure and funcloss's success on the same input (total_variation's cross-check is in
test_anchors_box.py).

Conventions: kornia's ``ssim_loss`` is ``clamp((1 - SSIM) / 2, 0, 1)`` with ``eps`` in its
denominator (compared at ``eps=0``, times 2), sigma 1.5 fixed, ``(B, C, H, W)`` only; MONAI's
``SSIMLoss(spatial_dims=2)`` filters unpadded (``padding="valid"``) and averages each image's
map before the batch mean, in float32; kornia's ``psnr_loss`` pools one MSE over the whole batch
(funcloss's on the batch as one image) and has no floor (funcloss's ``eps=0``).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.func import grad, jacfwd, jacrev, vmap

import funcloss

from .anchors import anchor
from .helpers import assert_close
from .specs_image import ssim_oracle

f64 = torch.float64


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _pair(shape, seed: int, dtype=f64):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=dtype), torch.rand(
        shape, generator=generator, dtype=dtype
    )


# -- ssim_loss against kornia ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_size", "padding", "data_range"),
    [(11, "same", 1.0), (5, "same", 255.0), (7, "valid", 1.0), (3, "valid", 2.0)],
)
def test_ssim_matches_kornia(window_size, padding, data_range) -> None:
    kornia = anchor("kornia.losses")
    x, y = (data_range * t for t in _pair((2, 3, 16, 17), 0))
    config = {"window_size": window_size, "padding": padding, "data_range": data_range}
    for reduction in ("none", "mean", "sum"):
        theirs = _quiet(kornia.ssim_loss, x, y, window_size, data_range, 0.0, reduction, padding)
        assert_close(funcloss.ssim_loss(x, y, **config, reduction=reduction), 2 * theirs)
    module = _quiet(kornia.SSIMLoss(window_size, data_range, 0.0, "mean", padding), x, y)
    assert_close(funcloss.ssim_loss(x, y, **config), 2 * module)
    # gradients with respect to both images
    a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
    (2 * _quiet(kornia.ssim_loss, a, b, window_size, data_range, 0.0, "mean", padding)).backward()
    ours = grad(lambda p, q: funcloss.ssim_loss(p, q, **config), argnums=(0, 1))(x, y)
    assert_close(ours[0], a.grad)
    assert_close(ours[1], b.grad)
    # float32
    x32, y32 = x.float(), y.float()
    theirs32 = _quiet(kornia.ssim_loss, x32, y32, window_size, data_range, 0.0, "mean", padding)
    torch.testing.assert_close(funcloss.ssim_loss(x32, y32, **config), 2 * theirs32)


def test_kornia_ssim_eps_biases_dark_images() -> None:
    # kornia's default eps=1e-12 in the denominator: two identical black images lose
    # (1 - SSIM) / 2 = 5.6e-6 at max_val 1 (its docs: SSIM 0.99998889); funcloss's is 0
    kornia = anchor("kornia.losses")
    black = torch.zeros(1, 1, 16, 16, dtype=f64)
    theirs = _quiet(kornia.ssim_loss, black, black, 11)
    assert theirs > 5e-6
    assert funcloss.ssim_loss(black, black) == 0
    assert bool((grad(lambda a: funcloss.ssim_loss(a, black))(black) == 0).all())


def test_kornia_ssim_takes_only_four_dimensions() -> None:
    kornia = anchor("kornia.losses")
    x, y = _pair((3, 16, 16), 1)
    with pytest.raises(ValueError, match="BxCxHxW"):
        _quiet(kornia.ssim_loss, x, y, 11)
    expected = 2 * _quiet(kornia.ssim_loss, x[None], y[None], 11, eps=0.0)
    assert_close(funcloss.ssim_loss(x, y), expected)


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_anchors_lose_float32_ssim_to_an_offset(offset) -> None:
    # float32 images around `offset` at data_range 1 (depth in metres, raw sensor counts):
    # E[x^2] - E[x]^2 cancels offset^2 in kornia and MONAI; funcloss filters the moments of the
    # images less their mean and keeps float32's digits
    kornia = anchor("kornia.losses")
    monai = anchor("monai.losses")
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 32, 32, generator=generator) * 0.5 + offset
    y = x + 0.05 * torch.randn(1, 1, 32, 32, generator=generator)
    for padding, theirs in [
        ("same", 2 * _quiet(kornia.ssim_loss, x, y, 11, eps=0.0)),
        ("valid", _quiet(monai.SSIMLoss(spatial_dims=2), x, y)),
    ]:
        exact = ssim_oracle(x.double(), y.double(), window_size=11, padding=padding)
        ours = funcloss.ssim_loss(x, y, padding=padding)
        torch.testing.assert_close(ours.double(), exact, rtol=1e-5, atol=1e-6)
        assert abs(theirs.double() - exact) > 3e-4, padding


# -- ssim_loss against MONAI -----------------------------------------------------------------


@pytest.mark.parametrize("window_size", [11, 7])
def test_ssim_matches_monai(window_size) -> None:
    monai = anchor("monai.losses")
    x, y = _pair((3, 2, 20, 18), 3, torch.float32)
    for reduction in ("mean", "sum", "none"):
        loss = monai.SSIMLoss(spatial_dims=2, win_size=window_size, reduction=reduction)
        theirs = _quiet(loss, x, y)
        per_pixel = funcloss.ssim_loss(
            x, y, window_size=window_size, padding="valid", reduction="none"
        )
        per_image = per_pixel.flatten(1).mean(1, keepdim=True)  # MONAI's (N, 1)
        ours = {"none": per_image, "mean": per_image.mean(), "sum": per_image.sum()}[reduction]
        torch.testing.assert_close(ours, theirs)
    # MONAI's sigma and constants
    loss = monai.SSIMLoss(spatial_dims=2, kernel_sigma=0.8, k1=0.05, k2=0.1, data_range=2.0)
    ours = funcloss.ssim_loss(
        2 * x, 2 * y, sigma=0.8, k1=0.05, k2=0.1, data_range=2.0, padding="valid"
    )
    torch.testing.assert_close(ours, _quiet(loss, 2 * x, 2 * y))


def test_monai_ssim_computes_float64_in_float32() -> None:
    monai = anchor("monai.losses")
    x, y = _pair((2, 3, 16, 16), 4)
    theirs = _quiet(monai.SSIMLoss(spatial_dims=2), x, y)
    exact = ssim_oracle(x, y, window_size=11, padding="valid")
    assert theirs.dtype == torch.float32
    assert abs(theirs.double() - exact) > 1e-9
    ours = funcloss.ssim_loss(x, y, padding="valid")
    assert ours.dtype == f64
    assert_close(ours, exact)


# -- psnr_loss against kornia ----------------------------------------------------------------


def test_psnr_matches_kornia_per_image_and_pooled() -> None:
    kornia = anchor("kornia.losses")
    x, y = _pair((4, 3, 8, 9), 5)
    per_image = torch.stack(
        [_quiet(kornia.psnr_loss, a, b, 1.0) for a, b in zip(x, y, strict=True)]
    )
    assert_close(funcloss.psnr_loss(x, y, eps=0.0, reduction="none"), per_image)
    # kornia's batch value pools one MSE: funcloss's on the batch as one image
    pooled = _quiet(kornia.psnr_loss, x, y, 1.0)
    assert_close(funcloss.psnr_loss(x.reshape(-1, 8, 9), y.reshape(-1, 8, 9), eps=0.0), pooled)
    assert not torch.isclose(pooled, per_image.mean())  # the two means differ
    # data_range, the default floor (1e-10 of L^2: far below these MSEs), gradients
    x8, y8 = 255 * x[0], 255 * y[0]
    theirs = _quiet(kornia.psnr_loss, x8, y8, 255.0)
    assert_close(funcloss.psnr_loss(x8, y8, data_range=255.0), theirs)
    a = x[0].clone().requires_grad_()
    _quiet(kornia.psnr_loss, a, y[0], 1.0).backward()
    assert_close(grad(funcloss.psnr_loss)(x[0], y[0]), a.grad)


def test_kornia_psnr_is_inf_with_nan_gradient_at_identical_images() -> None:
    kornia = anchor("kornia.losses")
    x, _ = _pair((2, 3, 8, 8), 6)
    a = x.clone().requires_grad_()
    theirs = _quiet(kornia.psnr_loss, a, x, 1.0)
    theirs.backward()
    assert theirs == -math.inf
    assert bool(torch.isnan(a.grad).all())
    # funcloss: the floor, 10 log10(1e-10) = -100 dB, and a zero gradient in every mode
    assert_close(funcloss.psnr_loss(x, x), torch.tensor(-100.0, dtype=f64))

    def f(p):
        return funcloss.psnr_loss(p, x)

    assert bool((grad(f)(x) == 0).all())
    assert_close(jacfwd(f)(x), jacrev(f)(x))
    assert bool((vmap(grad(f))(x[None].expand(3, -1, -1, -1, -1)) == 0).all())
