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


# -- focal_loss ------------------------------------------------------------------------------


def _classes(shape=(16, 5, 3)):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return x, y


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_kornia(gamma) -> None:
    # kornia's "mean" divides by N * C * pixels (every class slice), funcloss's by N * pixels
    kornia = anchor("kornia")
    x, y = _classes()
    theirs = _quiet(kornia.losses.focal_loss, x, y, alpha=None, gamma=gamma, reduction="mean")
    ours = funcloss.focal_loss(x, y, gamma=gamma, reduction="mean")
    assert_close(ours / x.shape[1], theirs)
    per_pixel = _quiet(kornia.losses.focal_loss, x, y, alpha=None, gamma=gamma, reduction="none")
    assert_close(funcloss.focal_loss(x, y, gamma=gamma, reduction="none"), per_pixel.sum(1))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_monai(gamma) -> None:
    # MONAI: one-hot targets (to_onehot_y), "none" keeps the class dimension; it computes in
    # float32 whatever the input
    monai = anchor("monai")
    x, y = _classes()
    loss = monai.losses.FocalLoss(use_softmax=True, gamma=gamma, to_onehot_y=True, reduction="none")
    theirs = _quiet(loss, x, y[:, None]).sum(1)
    ours = funcloss.focal_loss(x, y, gamma=gamma, reduction="none")
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=1e-5, atol=1e-6)


def test_monai_focal_sum_without_spatial_dims_is_a_mean() -> None:
    # MONAI's reduction="sum" first averages over the spatial dimensions, `mean(dim=[2:])`; an
    # (N, C) input has none, and torch's `mean(dim=[])` averages over every dimension, so its
    # "sum" is the mean over the N * C elements (why benchmarks/catalogue_focal.py sums MONAI's
    # "none" itself)
    monai = anchor("monai")
    x, y = _classes((16, 5))
    summed = monai.losses.FocalLoss(use_softmax=True, to_onehot_y=True, reduction="sum")
    ours = funcloss.focal_loss(x, y, reduction="sum")
    theirs = _quiet(summed, x, y[:, None]).to(ours.dtype)
    torch.testing.assert_close(theirs, ours / x.numel(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_monai_focal_nan_gradient_at_saturated_class(dtype) -> None:
    # gamma = 0.5, the target class at logit 100: (1 - p) ** gamma has an infinite slope at
    # p = 1, times 0; funcloss's gradient is finite
    monai = anchor("monai")
    x = torch.tensor([[100.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    loss = monai.losses.FocalLoss(use_softmax=True, gamma=0.5, to_onehot_y=True)
    _quiet(loss, x, torch.tensor([[0]])).backward()
    assert torch.isnan(x.grad).all()
    ours = x.detach().clone().requires_grad_()
    funcloss.focal_loss(ours, torch.tensor([0]), gamma=0.5).backward()
    assert torch.isfinite(ours.grad).all()


# -- poly1_cross_entropy ---------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [1.0, 2.0, -0.5])
def test_poly1_matches_optax(epsilon) -> None:
    # optax: probability labels only, classes on the last axis, no reduction; default eps 2
    jax64()
    optax = anchor("optax")
    x, y = _classes((16, 5))
    g = torch.Generator().manual_seed(2)
    q = torch.softmax(torch.randn(16, 5, generator=g, dtype=torch.float64), 1)
    for target, labels in ((y, torch.nn.functional.one_hot(y, 5).double()), (q, q)):
        theirs = _quiet(
            optax.losses.poly_loss_cross_entropy, x.numpy(), labels.numpy(), epsilon=epsilon
        )
        ours = funcloss.poly1_cross_entropy(x, target, epsilon=epsilon, reduction="none")
        assert_close(ours, torch.from_numpy(np.array(theirs)))
    default = _quiet(optax.losses.poly_loss_cross_entropy, x.numpy(), q.numpy())
    ours = funcloss.poly1_cross_entropy(x, q, epsilon=2.0, reduction="none")
    assert_close(ours, torch.from_numpy(np.array(default)))  # optax's default epsilon is 2


# -- asymmetric_loss -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gamma_pos", "gamma_neg", "clip"), [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (2.0, 1.0, 0.0)]
)
def test_asymmetric_matches_timm(gamma_pos, gamma_neg, clip) -> None:
    # timm computes in float32 and clamps p at eps = 1e-8 before the log: compare at logits
    # where the clamp is inactive, with float32 tolerances; its "sum" is the paper's reduction.
    # Hard labels only: for soft labels timm mixes the two focal weights (exponent
    # gamma+ y + gamma- (1 - y) on 1 - p_t), funcloss weights the paper's two terms by y, 1 - y
    module = load_file("timm", "loss/asymmetric_loss.py")
    x, _, hard = _inputs()
    for t in (hard,):
        for reduction in ("sum", "mean", "none"):
            loss = module.AsymmetricLossMultiLabel(
                gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, reduction=reduction
            )
            theirs = _quiet(loss, x, t).double()
            ours = funcloss.asymmetric_loss(
                x, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction=reduction
            )
            # timm computes 1 - sigmoid(x) in float32 (it cancels): good to ~3e-4 relative
            torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-5)
        batchmean = module.AsymmetricLossMultiLabel(
            gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, reduction="batchmean"
        )
        ours = funcloss.asymmetric_loss(
            x, t, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction="sum"
        )
        torch.testing.assert_close(
            ours / len(x), _quiet(batchmean, x, t).double(), rtol=1e-5, atol=1e-5
        )


def test_timm_asymmetric_kills_the_gradient_of_a_wrong_positive() -> None:
    # a positive label at logit -30: p = 9e-14 < eps = 1e-8, timm's log(clamp(p, eps)) has a
    # zero gradient there; the true slope (funcloss's) is about -1
    module = load_file("timm", "loss/asymmetric_loss.py")
    x = torch.tensor([[-30.0, 2.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0]])
    loss = module.AsymmetricLossMultiLabel(gamma_neg=4.0, gamma_pos=0.0, clip=0.05, reduction="sum")
    _quiet(loss, x, t).backward()
    assert x.grad[0, 0] == 0
    ours = x.detach().clone().requires_grad_()
    funcloss.asymmetric_loss(ours, t, reduction="sum").backward()
    assert ours.grad[0, 0] < -0.99


def test_timm_asymmetric_detached_focal_weight_is_not_the_derivative() -> None:
    # disable_torch_grad_focal_loss=True: timm's backward drops the focal weight's derivative
    # that its forward value contains (gradient != finite differences of its own value)
    module = load_file("timm", "loss/asymmetric_loss.py")
    x = torch.tensor([[0.5, -0.3]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    loss = module.AsymmetricLossMultiLabel(
        gamma_neg=4.0, gamma_pos=1.0, clip=0.05, reduction="sum", disable_torch_grad_focal_loss=True
    )
    _quiet(loss, x, t).backward()
    step = 1e-6
    bumped = x.detach().clone()
    bumped[0, 0] += step
    lowered = x.detach().clone()
    lowered[0, 0] -= step
    numeric = (_quiet(loss, bumped, t) - _quiet(loss, lowered, t)) / (2 * step)
    assert abs(x.grad[0, 0].item() - numeric.item()) > 1e-3
    ours = x.detach().clone().requires_grad_()
    value = funcloss.asymmetric_loss(ours, t, gamma_pos=1.0, reduction="sum")
    value.backward()
    numeric = (
        funcloss.asymmetric_loss(bumped, t, gamma_pos=1.0, reduction="sum")
        - funcloss.asymmetric_loss(lowered, t, gamma_pos=1.0, reduction="sum")
    ) / (2 * step)
    assert abs(ours.grad[0, 0].item() - numeric.item()) < 1e-6
