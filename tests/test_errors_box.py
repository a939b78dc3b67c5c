"""Bad input to the box losses: each fails with the house message."""

from __future__ import annotations

import re

import pytest
import torch

import funcloss
import funcloss.nn as fnn

NAMES = ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]
MODULES = [fnn.GeneralizedBoxIoULoss, fnn.DistanceBoxIoULoss, fnn.CompleteBoxIoULoss]
BOXES = torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 3.0]])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 3), (2, 5), (4, 2), (), (0,)])
def test_wrong_last_dimension(name, shape) -> None:
    fn = getattr(funcloss, name)
    bad = torch.zeros(shape)
    got = re.escape("(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")")
    with pytest.raises(ValueError, match=rf"{name}: `boxes1` must have shape \(\.\.\., 4\), boxes"):
        fn(bad, BOXES)
    with pytest.raises(ValueError, match=rf"{name}: `boxes2` must have shape .* got {got}\."):
        fn(BOXES, bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 4), (3, 4), (4,), (2, 1, 4)])
def test_shapes_that_differ(name, shape) -> None:
    # torchvision broadcasts some of these silently, refuses others in its mask assignment
    with pytest.raises(
        ValueError, match=rf"{name}: `boxes2` must have the same shape as `boxes1` \(2, 4\)"
    ):
        getattr(funcloss, name)(BOXES, torch.zeros(shape))


@pytest.mark.parametrize("name", NAMES)
def test_non_floating_boxes(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(TypeError, match=rf"{name}: `boxes1` must have a floating-point dtype"):
        fn(BOXES.long(), BOXES)
    with pytest.raises(TypeError, match=rf"{name}: `boxes2` must be a torch.Tensor, got list"):
        fn(BOXES, [[0.0, 0.0, 1.0, 1.0]] * 2)


@pytest.mark.parametrize(("name", "module"), list(zip(NAMES, MODULES, strict=True)))
def test_bad_eps_and_reduction(name, module) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `eps` must be non-negative, got -1e-07\."):
        fn(BOXES, BOXES, eps=-1e-7)
    with pytest.raises(TypeError, match=rf"{name}: `eps` must be a real number, got Tensor\."):
        fn(BOXES, BOXES, eps=torch.tensor(1e-7))
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of 'none' \| "):
        fn(BOXES, BOXES, "avg")
    # at construction, naming the class
    with pytest.raises(ValueError, match=rf"{module.__name__}: `eps` must be non-negative"):
        module(eps=-1.0)
    with pytest.raises(ValueError, match=rf"{module.__name__}: `reduction` must be one of"):
        module(reduction="elementwise_mean")


@pytest.mark.parametrize("name", NAMES)
def test_bad_where(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        fn(BOXES, BOXES, where=torch.ones(2))
    # the mask is of the loss's shape (2,), not the coordinates' (2, 4)
    with pytest.raises(
        ValueError, match=rf"{name}: `where` must be broadcastable to the unreduced loss shape"
    ):
        fn(BOXES, BOXES, where=torch.ones(2, 4, dtype=torch.bool))


# -- total_variation -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(), (5,)])
def test_total_variation_needs_two_dimensions(shape) -> None:
    with pytest.raises(
        ValueError, match=r"total_variation: `input` must have shape \(\*, H, W\), at least 2"
    ):
        funcloss.total_variation(torch.zeros(shape))


def test_total_variation_bad_dtype_reduction_and_where() -> None:
    with pytest.raises(TypeError, match=r"total_variation: `input` must have a floating-point"):
        funcloss.total_variation(torch.zeros(2, 3, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match=r"total_variation: `input` must be a torch.Tensor"):
        funcloss.total_variation([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"total_variation: `reduction` must be one of"):
        funcloss.total_variation(torch.zeros(2, 3, 3), "batchmean")
    with pytest.raises(ValueError, match=r"TotalVariation: `reduction` must be one of"):
        fnn.TotalVariation(reduction="avg")
    # the mask is per plane (2,), not per pixel
    with pytest.raises(ValueError, match=r"total_variation: `where` must be broadcastable to the"):
        funcloss.total_variation(torch.zeros(2, 3, 3), where=torch.ones(2, 3, 3, dtype=torch.bool))
