"""Bad input to the focal family: each fails with the house message."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 3)


# -- sigmoid_focal_loss ----------------------------------------------------------------------


def test_sigmoid_focal_refuses_class_indices() -> None:
    with pytest.raises(TypeError, match=r"sigmoid_focal_loss: `target` must have a floating-point"):
        funcloss.sigmoid_focal_loss(X, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"sigmoid_focal_loss: `input` must have a floating-point"):
        funcloss.sigmoid_focal_loss(torch.zeros(2, 3, dtype=torch.int64), X)
    with pytest.raises(TypeError, match=r"sigmoid_focal_loss: `target` must be a torch.Tensor"):
        funcloss.sigmoid_focal_loss(X, [0.0, 1.0])


def test_sigmoid_focal_shape() -> None:
    with pytest.raises(ValueError, match=r"sigmoid_focal_loss: `target` must have the same shape"):
        funcloss.sigmoid_focal_loss(X, torch.zeros(3))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"gamma": -0.5}, r"`gamma` must be finite and non-negative, got -0.5"),
        ({"gamma": float("inf")}, r"`gamma` must be finite and non-negative, got inf"),
        ({"gamma": float("nan")}, r"`gamma` must be finite and non-negative, got nan"),
        ({"gamma": "2"}, r"`gamma` must be a real number, got str"),
        ({"alpha": 1.5}, r"`alpha` must be in \[0, 1\], or negative for no weighting, got 1.5"),
        ({"alpha": float("nan")}, r"`alpha` must be in \[0, 1\], or negative"),
        ({"alpha": torch.tensor(0.5)}, r"`alpha` must be a real number, got Tensor"),
        ({"reduction": "batchmean"}, r"`reduction` must be one of"),
    ],
)
def test_sigmoid_focal_config(kwargs, pattern) -> None:
    with pytest.raises((TypeError, ValueError), match=rf"sigmoid_focal_loss: {pattern}"):
        funcloss.sigmoid_focal_loss(X, X, **kwargs)
    with pytest.raises((TypeError, ValueError), match=rf"SigmoidFocalLoss: {pattern}"):
        fnn.SigmoidFocalLoss(**kwargs)


def test_sigmoid_focal_where() -> None:
    with pytest.raises(TypeError, match=r"sigmoid_focal_loss: `where` must be a bool tensor"):
        funcloss.sigmoid_focal_loss(X, X, where=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"sigmoid_focal_loss: `where` must be broadcastable"):
        funcloss.sigmoid_focal_loss(X, X, where=torch.ones(3, 3, dtype=torch.bool))
