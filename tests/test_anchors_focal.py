"""The focal family against its anchors, with their conventions adapted, and the anchors'
defects that funcloss does not have (measured here, so the README's claims are facts).

torchvision and segmentation_models_pytorch are loaded by path (tests/anchors.py: their packages
need torchvision's compiled operators); optax runs in JAX on the CPU in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import funcloss

from .anchors import anchor, jax64, load_file
from .helpers import assert_close


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _inputs(shape=(64, 5), scale=4.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    soft = torch.rand(shape, generator=g, dtype=torch.float64)
    hard = (torch.rand(shape, generator=g, dtype=torch.float64) < 0.3).double()
    return x, soft, hard


# -- sigmoid_focal_loss ----------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_matches_torchvision(gamma, alpha, reduction) -> None:
    module = load_file("torchvision", "ops/focal_loss.py")
    x, soft, hard = _inputs()
    for t in (soft, hard):
        theirs = _quiet(module.sigmoid_focal_loss, x, t, alpha, gamma, reduction)
        assert_close(funcloss.sigmoid_focal_loss(x, t, alpha, gamma, reduction), theirs)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_matches_smp(gamma) -> None:
    # smp's alpha=None is no weighting; its "mean" is the plain mean
    module = load_file("segmentation_models_pytorch", "losses/_functional.py")
    x, _, hard = _inputs()
    for alpha, ours in ((0.25, 0.25), (None, -1.0)):
        theirs = _quiet(
            module.focal_loss_with_logits, x, hard, gamma=gamma, alpha=alpha, reduction="mean"
        )
        assert_close(funcloss.sigmoid_focal_loss(x, hard, ours, gamma, "mean"), theirs)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_matches_optax(gamma) -> None:
    # optax: alpha=None is no weighting; elementwise, like reduction="none"; soft labels
    jax64()
    optax = anchor("optax")
    x, soft, hard = _inputs()
    for t in (soft, hard):
        for alpha, ours in ((0.25, 0.25), (None, -1.0)):
            theirs = _quiet(
                optax.losses.sigmoid_focal_loss, x.numpy(), t.numpy(), alpha=alpha, gamma=gamma
            )
            expected = torch.from_numpy(np.array(theirs))
            assert_close(funcloss.sigmoid_focal_loss(x, t, ours, gamma), expected)


def test_sigmoid_focal_matches_kornia_binary_focal() -> None:
    # kornia's binary focal on logits: alpha weights the positives, (1 - alpha) the negatives
    # (as here); its "mean" is the plain mean
    kornia = anchor("kornia")
    x, _, hard = _inputs()
    for gamma in (0.0, 2.0):
        theirs = _quiet(
            kornia.losses.binary_focal_loss_with_logits,
            x,
            hard,
            alpha=0.25,
            gamma=gamma,
            reduction="mean",
        )
        assert_close(funcloss.sigmoid_focal_loss(x, hard, 0.25, gamma, "mean"), theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("library", ["torchvision", "smp"])
def test_anchors_sigmoid_focal_nan_gradient_for_gamma_below_one(dtype, library) -> None:
    # gamma = 0.5, target 1, logit 40 (float32 from 17 on, float64 from 37 on: 1 - p_t rounds
    # to 0 and the gradient of (1 - p_t) ** gamma is 0 * inf); funcloss's is finite
    x = torch.tensor([40.0, 100.0, -100.0], dtype=dtype, requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0], dtype=dtype)
    if library == "torchvision":
        module = load_file("torchvision", "ops/focal_loss.py")
        _quiet(module.sigmoid_focal_loss, x, t, 0.25, 0.5).sum().backward()
    else:
        module = load_file("segmentation_models_pytorch", "losses/_functional.py")
        _quiet(module.focal_loss_with_logits, x, t, gamma=0.5, reduction="sum").backward()
    assert torch.isnan(x.grad).all()
    ours = x.detach().clone().requires_grad_()
    funcloss.sigmoid_focal_loss(ours, t, 0.25, 0.5).sum().backward()
    assert torch.isfinite(ours.grad).all()
