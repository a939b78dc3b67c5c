"""Bad input to the Fenchel–Young family: each fails with the house message."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 3)
Y = torch.tensor([0, 2])
CLASS_LOSSES = ["sparsemax_loss", "multiclass_hinge_loss", "multiclass_perceptron_loss"]
SIGNED = ["hinge_loss", "perceptron_loss"]


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_class_losses_refuse_float_targets(name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name}: `target` must have an integer dtype"):
        getattr(funcloss, name)(X, torch.zeros(2))


@pytest.mark.parametrize("name", CLASS_LOSSES)
def test_class_losses_refuse_bad_shapes_and_indices(name: str) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `target` must have shape \(2,\) for input"):
        fn(X, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{name}: `input` must have shape \(\*, C\) with C > 0"):
        fn(torch.zeros(2, 0), Y)
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point"):
        fn(torch.zeros(2, 3, dtype=torch.long), Y)
    with pytest.raises(IndexError, match=rf"{name}: `target` values must be in \[0, 3\), got 3"):
        fn(X, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=rf"{name}: `where` must be broadcastable"):
        fn(X, Y, where=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        fn(X, Y, where=torch.ones(2))
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of"):
        fn(X, Y, reduction="avg")


def test_masked_rows_are_not_range_checked() -> None:
    keep = torch.tensor([True, False])
    loss = funcloss.sparsemax_loss(X, torch.tensor([0, 7]), where=keep)
    assert torch.isfinite(loss)


def test_multiclass_hinge_margin_and_module_config() -> None:
    with pytest.raises(TypeError, match=r"multiclass_hinge_loss: `margin` must be a real number"):
        funcloss.multiclass_hinge_loss(X, Y, margin="1")
    with pytest.raises(ValueError, match=r"MulticlassHingeLoss: `reduction` must be one of"):
        fnn.MulticlassHingeLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"MulticlassHingeLoss: `margin` must be a real number"):
        fnn.MulticlassHingeLoss(margin=float("nan"))
    with pytest.raises(ValueError, match=r"SparsemaxLoss: `reduction` must be one of"):
        fnn.SparsemaxLoss(reduction="avg")


@pytest.mark.parametrize("name", SIGNED)
def test_signed_losses_refuse_labels_other_than_plus_minus_one(name: str) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `target` must hold only -1 and 1, got 0.0"):
        fn(X, torch.tensor([[1, 0, -1], [1, 1, 1]]))
    with pytest.raises(TypeError, match=rf"{name}: `target` must have a floating-point or integer"):
        fn(X, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=rf"{name}: `target` must be broadcastable to \(2, 3\)"):
        fn(X, torch.ones(3, 3))
    # with the value checks off (or under a transform) nothing is read
    with funcloss.set_value_checks(False):
        fn(X, torch.zeros(2, 3))
    # a masked label is not read
    fn(X, torch.tensor([[1, 0, 1], [1, 1, 1]]), where=torch.tensor([[True, False, True]]))


def test_binary_sparsemax_loss_refuses_labels_outside_the_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"binary_sparsemax_loss: `target` values must be in"):
        funcloss.binary_sparsemax_loss(X, torch.full((2, 3), 2.0))
    with pytest.raises(TypeError, match=r"binary_sparsemax_loss: `input` must have a floating"):
        funcloss.binary_sparsemax_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2))


def test_sparsemax_bad_input() -> None:
    with pytest.raises(TypeError, match=r"sparsemax: `input` must have a floating-point"):
        funcloss.sparsemax(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"sparsemax: `input` must have at least one dimension"):
        funcloss.sparsemax(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"sparsemax: `dim` must be in \[-2, 2\), got 2"):
        funcloss.sparsemax(X, dim=2)
    with pytest.raises(TypeError, match=r"sparsemax: `dim` must be an int"):
        funcloss.sparsemax(X, dim=1.0)
    with pytest.raises(ValueError, match=r"sparsemax: `input` must have classes along dim=-1"):
        funcloss.sparsemax(torch.zeros(2, 0))


def test_fenchel_young_bad_input() -> None:
    with pytest.raises(TypeError, match=r"make_fenchel_young_loss: `max_fn` must be callable"):
        funcloss.make_fenchel_young_loss(3)
    fy = funcloss.make_fenchel_young_loss(torch.logsumexp)
    with pytest.raises(TypeError, match="dim"):  # torch.logsumexp needs its dim: partial(...)
        fy(X, X)
    whole = funcloss.make_fenchel_young_loss(lambda z: z.logsumexp((0, 1)))
    with pytest.raises(
        ValueError,
        match=r"fenchel_young_loss: `max_fn` must reduce the scores' last dimension, returning "
        r"shape \(2,\) for scores of shape \(2, 3\), got \(\)\. Reduce over dim=-1",
    ):
        whole(X, X)
    fy = funcloss.make_fenchel_young_loss(partial(torch.logsumexp, dim=-1))
    with pytest.raises(TypeError, match=r"fenchel_young_loss: `target` must have a floating"):
        fy(X, Y)
    with pytest.raises(ValueError, match=r"fenchel_young_loss: `target` must be broadcastable"):
        fy(X, torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"fenchel_young_loss: `reduction` must be one of"):
        fy(X, X, "avg")


def test_smooth_labels_bad_input() -> None:
    fn = "smooth_labels"
    with pytest.raises(ValueError, match=rf"{fn}: `alpha` must be in \[0.0, 1.0\], got 1.5"):
        funcloss.smooth_labels(Y, 1.5, num_classes=3)
    with pytest.raises(ValueError, match=rf"{fn}: `alpha` must be in \[0.0, 1.0\], got -0.1"):
        funcloss.smooth_labels(X, -0.1)
    with pytest.raises(TypeError, match=rf"{fn}: `alpha` must be a real number"):
        funcloss.smooth_labels(X, torch.tensor(0.1))
    with pytest.raises(
        ValueError, match=rf"{fn}: `num_classes` must be given for class indices, got None"
    ):
        funcloss.smooth_labels(Y, 0.1)
    with pytest.raises(IndexError, match=rf"{fn}: `target` values must be in \[0, 2\), got 2"):
        funcloss.smooth_labels(Y, 0.1, num_classes=2)  # too small
    with pytest.raises(ValueError, match=rf"{fn}: `num_classes` must be positive, got 0"):
        funcloss.smooth_labels(Y, 0.1, num_classes=0)
    with pytest.raises(ValueError, match=rf"{fn}: `num_classes` must equal target.size\(1\)"):
        funcloss.smooth_labels(X, 0.1, num_classes=4)
    with pytest.raises(ValueError, match=rf"{fn}: `dim` must be in \[-2, 2\)"):
        funcloss.smooth_labels(X, 0.1, dim=3)
    with pytest.raises(ValueError, match=rf"{fn}: `where` must be broadcastable"):
        funcloss.smooth_labels(X, 0.1, where=torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match=rf"{fn}: `target` must be a torch.Tensor"):
        funcloss.smooth_labels([0, 1], 0.1, num_classes=2)
