"""Bad input to ssim_loss and psnr_loss: each fails with the house message (total_variation's
are in test_errors_box.py)."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

IMAGES = torch.rand(2, 3, 16, 16)


@pytest.mark.parametrize("window_size", [0, -3, 4, 10])
def test_ssim_window_size_odd_and_positive(window_size) -> None:
    rule = rf"`window_size` must be an odd positive int, got {window_size}\."
    with pytest.raises(ValueError, match=rf"ssim_loss: {rule}"):
        funcloss.ssim_loss(IMAGES, IMAGES, window_size=window_size)
    with pytest.raises(ValueError, match=rf"SSIMLoss: {rule}"):
        fnn.SSIMLoss(window_size=window_size)


@pytest.mark.parametrize("window_size", [5.0, True, "11"])
def test_ssim_window_size_is_an_int(window_size) -> None:
    with pytest.raises(TypeError, match=r"ssim_loss: `window_size` must be an int, got"):
        funcloss.ssim_loss(IMAGES, IMAGES, window_size=window_size)


@pytest.mark.parametrize("name", ["sigma", "data_range", "k1", "k2"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_ssim_positive_constants(name, value) -> None:
    with pytest.raises(ValueError, match=rf"ssim_loss: `{name}` must be positive, got {value}\."):
        funcloss.ssim_loss(IMAGES, IMAGES, **{name: value})
    with pytest.raises(ValueError, match=rf"SSIMLoss: `{name}` must be positive"):
        fnn.SSIMLoss(**{name: value})
    with pytest.raises(TypeError, match=rf"ssim_loss: `{name}` must be a real number, got Tensor"):
        funcloss.ssim_loss(IMAGES, IMAGES, **{name: torch.tensor(1.0)})


def test_ssim_padding_and_reduction() -> None:
    with pytest.raises(ValueError, match=r"ssim_loss: `padding` must be one of 'same' \| 'valid'"):
        funcloss.ssim_loss(IMAGES, IMAGES, padding="reflect")
    with pytest.raises(ValueError, match=r"SSIMLoss: `padding` must be one of"):
        fnn.SSIMLoss(padding="full")
    with pytest.raises(ValueError, match=r"ssim_loss: `reduction` must be one of"):
        funcloss.ssim_loss(IMAGES, IMAGES, reduction="batchmean")


@pytest.mark.parametrize("shape", [(), (16,)])
def test_ssim_needs_two_dimensions(shape) -> None:
    with pytest.raises(
        ValueError, match=r"ssim_loss: `input` must have shape \(\*, H, W\), at least 2 dim"
    ):
        funcloss.ssim_loss(torch.zeros(shape), torch.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 3, 16, 15), (3, 16, 16), (1, 3, 16, 16), (2, 1, 16, 16)])
def test_ssim_shapes_that_differ(shape) -> None:
    # no broadcasting: kornia refuses these too
    with pytest.raises(
        ValueError, match=r"ssim_loss: `target` must have the same shape as `input` \(2, 3, 16"
    ):
        funcloss.ssim_loss(IMAGES, torch.rand(shape))


def test_ssim_images_smaller_than_the_window() -> None:
    small = torch.rand(1, 1, 5, 12)
    # reflect padding by 5 needs at least 6 pixels
    with pytest.raises(
        ValueError,
        match=r"ssim_loss: `input` must have H and W of at least 6 for window_size=11 and "
        r"padding='same', got \(1, 1, 5, 12\)\.",
    ):
        funcloss.ssim_loss(small, small)
    with pytest.raises(ValueError, match=r"at least 11 for window_size=11 and padding='valid'"):
        funcloss.ssim_loss(IMAGES[..., :10], IMAGES[..., :10], padding="valid")
    funcloss.ssim_loss(small, small, window_size=9)  # radius 4 < 5: fine


def test_ssim_dtypes_and_where() -> None:
    with pytest.raises(TypeError, match=r"ssim_loss: `input` must have a floating-point dtype"):
        funcloss.ssim_loss(IMAGES.to(torch.uint8), IMAGES)
    with pytest.raises(TypeError, match=r"ssim_loss: `target` must have a floating-point dtype"):
        funcloss.ssim_loss(IMAGES, IMAGES.to(torch.int64))
    with pytest.raises(TypeError, match=r"ssim_loss: `where` must be a bool tensor"):
        funcloss.ssim_loss(IMAGES, IMAGES, where=torch.ones(2, 3, 16, 16))
    # the mask is of the map: (2, 3, 6, 6) under "valid" with window 11
    with pytest.raises(
        ValueError,
        match=r"ssim_loss: `where` must be broadcastable to the unreduced loss shape "
        r"\(2, 3, 6, 6\)",
    ):
        funcloss.ssim_loss(
            IMAGES, IMAGES, padding="valid", where=torch.ones(16, 16, dtype=torch.bool)
        )


# -- psnr_loss -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (16,), (16, 16)])
def test_psnr_needs_three_dimensions(shape) -> None:
    with pytest.raises(
        ValueError,
        match=r"psnr_loss: `input` must have shape \(\*, C, H, W\), at least 3 dimensions",
    ):
        funcloss.psnr_loss(torch.zeros(shape), torch.zeros(shape))


@pytest.mark.parametrize("shape", [(2, 3, 16, 1), (3, 16, 16), (1, 3, 16, 16)])
def test_psnr_shapes_that_differ(shape) -> None:
    with pytest.raises(
        ValueError, match=r"psnr_loss: `target` must have the same shape as `input` \(2, 3, 16"
    ):
        funcloss.psnr_loss(IMAGES, torch.rand(shape))


@pytest.mark.parametrize("value", [0.0, -255.0, float("nan")])
def test_psnr_data_range_positive(value) -> None:
    with pytest.raises(ValueError, match=rf"psnr_loss: `data_range` must be positive, got {value}"):
        funcloss.psnr_loss(IMAGES, IMAGES, data_range=value)
    with pytest.raises(ValueError, match=r"PSNRLoss: `data_range` must be positive"):
        fnn.PSNRLoss(data_range=value)


def test_psnr_eps_reduction_dtype_where() -> None:
    with pytest.raises(ValueError, match=r"psnr_loss: `eps` must be non-negative, got -1e-10\."):
        funcloss.psnr_loss(IMAGES, IMAGES, eps=-1e-10)
    with pytest.raises(ValueError, match=r"PSNRLoss: `eps` must be non-negative"):
        fnn.PSNRLoss(eps=-1.0)
    with pytest.raises(ValueError, match=r"psnr_loss: `reduction` must be one of"):
        funcloss.psnr_loss(IMAGES, IMAGES, reduction="elementwise_mean")
    with pytest.raises(TypeError, match=r"psnr_loss: `input` must have a floating-point dtype"):
        funcloss.psnr_loss(IMAGES.to(torch.uint8), IMAGES)
    with pytest.raises(TypeError, match=r"psnr_loss: `target` must be a torch.Tensor"):
        funcloss.psnr_loss(IMAGES, IMAGES.tolist())
    # the mask is per image (2,), not per pixel
    with pytest.raises(
        ValueError,
        match=r"psnr_loss: `where` must be broadcastable to the unreduced loss shape \(2,\)",
    ):
        funcloss.psnr_loss(IMAGES, IMAGES, where=torch.ones(2, 3, 16, 16, dtype=torch.bool))
