"""Bad input to the overlap losses: each fails with the house message."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

NAMES = ["dice_loss", "tversky_loss", "jaccard_loss", "focal_tversky_loss", "mcc_loss"]
MODULES = {
    "dice_loss": fnn.DiceLoss,
    "tversky_loss": fnn.TverskyLoss,
    "jaccard_loss": fnn.JaccardLoss,
    "focal_tversky_loss": fnn.FocalTverskyLoss,
    "mcc_loss": fnn.MCCLoss,
}
X = torch.zeros(2, 3, 4, 4)
Y = torch.zeros(2, 4, 4, dtype=torch.long)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_activation(name: str) -> None:
    rule = r"`activation` must be 'softmax', 'sigmoid' or None, got 'softmx'\."
    with pytest.raises(ValueError, match=rf"{name}: {rule}"):
        getattr(funcloss, name)(X, Y, activation="softmx")
    with pytest.raises(ValueError, match=rf"{MODULES[name].__name__}.*{rule}"):
        MODULES[name](activation="softmx")


@pytest.mark.parametrize("name", ["tversky_loss", "focal_tversky_loss"])
@pytest.mark.parametrize("arg", ["alpha", "beta"])
def test_negative_alpha_beta(name: str, arg: str) -> None:
    with pytest.raises(ValueError, match=rf"{name}: `{arg}` must be non-negative, got -0.5\."):
        getattr(funcloss, name)(X, Y, **{arg: -0.5})
    with pytest.raises(ValueError, match=rf"`{arg}` must be non-negative"):
        MODULES[name](**{arg: -0.5})


def test_gamma_and_smooth() -> None:
    with pytest.raises(ValueError, match=r"focal_tversky_loss: `gamma` must be positive, got 0"):
        funcloss.focal_tversky_loss(X, Y, gamma=0.0)
    with pytest.raises(ValueError, match=r"dice_loss: `smooth` must be non-negative, got -1"):
        funcloss.dice_loss(X, Y, smooth=-1.0)
    with pytest.raises(ValueError, match=r"dice_loss: `reduction` must be one of"):
        funcloss.dice_loss(X, Y, reduction="batchmean")


@pytest.mark.parametrize("name", NAMES)
def test_target_classes_that_do_not_fit(name: str) -> None:
    bad = Y.clone()
    bad[0, 0, 0] = 3
    with pytest.raises(IndexError, match=rf"{name}: `target` values must be in \[0, 3\), got 3\."):
        getattr(funcloss, name)(X, bad)
    with pytest.raises(IndexError, match=r"or equal ignore_index=-100, got -1\."):
        getattr(funcloss, name)(X, bad.fill_(-1), ignore_index=-100)


@pytest.mark.parametrize("name", NAMES)
def test_target_of_the_wrong_shape(name: str) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(
        ValueError,
        match=rf"{name}: `target` must have shape \(2, 4, 4\) \(class indices\) or the "
        r"input's shape \(2, 3, 4, 4\) \(probabilities\), got \(2, 2, 4, 4\)\.",
    ):
        fn(X, torch.zeros(2, 2, 4, 4))
    with pytest.raises(
        ValueError, match=rf"{name}: `target` must have shape \(2, 4, 4\) for input of shape"
    ):
        fn(X, torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{name}: `target` must hold class indices"):
        fn(X, Y.bool())


def test_other_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"dice_loss: `input` must have shape \(N, C, \*spatial\)"):
        funcloss.dice_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"dice_loss: `input` must"):
        funcloss.dice_loss(X.long(), Y)
    with pytest.raises(ValueError, match=r"dice_loss: `ignore_index` must be None for probability"):
        funcloss.dice_loss(X, torch.zeros_like(X), ignore_index=0)
    with pytest.raises(TypeError, match=r"dice_loss: `mask` must be a bool tensor"):
        funcloss.dice_loss(X, Y, mask=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match=r"dice_loss: `mask` must have shape \(2, 4, 4\)"):
        funcloss.dice_loss(X, Y, mask=torch.ones(2, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"dice_loss: `weight` must have shape \(3,\)"):
        funcloss.dice_loss(X, Y, torch.ones(2))
    with pytest.raises(
        ValueError,
        match=r"dice_loss: `where` must be broadcastable to the "
        r"unreduced loss shape \(3,\)",
    ):
        funcloss.dice_loss(X, Y, batch=True, where=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"dice_loss: `ignore_index` must be an int"):
        funcloss.dice_loss(X, Y, ignore_index=0.5)


def test_generalized_dice_weight_type() -> None:
    with pytest.raises(
        ValueError,
        match=r"generalized_dice_loss: `weight_type` must be 'square', 'simple' or 'uniform', "
        r"got 'sqare'\.",
    ):
        funcloss.generalized_dice_loss(X, Y, weight_type="sqare")
    with pytest.raises(ValueError, match=r"GeneralizedDiceLoss.*`weight_type` must be"):
        fnn.GeneralizedDiceLoss(weight_type="sqare")
    with pytest.raises(ValueError, match=r"generalized_dice_loss: `activation` must be"):
        funcloss.generalized_dice_loss(X, Y, activation="relu")
    with pytest.raises(IndexError, match=r"generalized_dice_loss: `target` values must be in"):
        funcloss.generalized_dice_loss(X, Y + 3)
    with pytest.raises(ValueError, match=r"generalized_dice_loss: `where` must be broadcastable"):
        funcloss.generalized_dice_loss(X, Y, where=torch.ones(2, 3, dtype=torch.bool))


def test_mcc_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"mcc_loss: `reduction` must be one of"):
        funcloss.mcc_loss(X, Y, reduction="batchmean")
    with pytest.raises(ValueError, match=r"MCCLoss.*`reduction` must be one of"):
        fnn.MCCLoss(reduction="batchmean")
    with pytest.raises(TypeError, match=r"MCCLoss.*`ignore_index` must be an int"):
        fnn.MCCLoss(ignore_index=0.5)
    with pytest.raises(ValueError, match=r"mcc_loss: `weight` must have shape \(3,\)"):
        funcloss.mcc_loss(X, Y, torch.ones(2))
    with pytest.raises(ValueError, match=r"mcc_loss: `mask` must have shape \(2, 4, 4\)"):
        funcloss.mcc_loss(X, Y, mask=torch.ones(2, 1, 4, 4, dtype=torch.bool))
    with pytest.raises(
        ValueError, match=r"mcc_loss: `where` must be broadcastable to the unreduced loss shape"
    ):
        funcloss.mcc_loss(X, Y, include_background=False, where=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mcc_loss: `ignore_index` must be None for probability"):
        funcloss.mcc_loss(X, torch.zeros_like(X), ignore_index=0)
