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


# -- focal_loss, poly1_cross_entropy ---------------------------------------------------------

SOFTMAX = {"focal_loss": fnn.FocalLoss, "poly1_cross_entropy": fnn.Poly1CrossEntropyLoss}


@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_target_kinds(name) -> None:
    fn = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `target` must have shape \(2,\) \(class"):
        fn(X, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=rf"{name}: `target` must have shape \(2, 3\) \(class"):
        fn(X, torch.zeros(2))  # float indices: "For class probabilities ..."
    with pytest.raises(TypeError, match=rf"{name}: `target` must have an integer dtype"):
        fn(X, torch.zeros(2, dtype=torch.bool))
    with pytest.raises(TypeError, match=rf"{name}: `input` must have a floating-point"):
        fn(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(IndexError, match=rf"{name}: `target` values must be in \[0, 3\)"):
        fn(X, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=rf"{name}: `ignore_index` must be negative"):
        fn(X, torch.zeros(2, 3), ignore_index=0)
    with pytest.raises(ValueError, match=rf"{name}: `weight` must have shape \(3,\)"):
        fn(X, torch.zeros(2, dtype=torch.int64), torch.ones(2))


@pytest.mark.parametrize(
    ("name", "kwargs", "pattern"),
    [
        ("focal_loss", {"gamma": -1.0}, r"`gamma` must be finite and non-negative, got -1.0"),
        ("focal_loss", {"gamma": float("nan")}, r"`gamma` must be finite and non-negative"),
        ("poly1_cross_entropy", {"epsilon": float("inf")}, r"`epsilon` must be finite, got inf"),
        ("poly1_cross_entropy", {"epsilon": float("nan")}, r"`epsilon` must be finite, got nan"),
        ("poly1_cross_entropy", {"epsilon": "1"}, r"`epsilon` must be a real number, got str"),
        ("focal_loss", {"label_smoothing": 1.5}, r"`label_smoothing` must be in \[0.0, 1.0\]"),
        ("poly1_cross_entropy", {"reduction": "batchmean"}, r"`reduction` must be one of"),
        ("focal_loss", {"ignore_index": 1.0}, r"`ignore_index` must be an int, got float"),
    ],
)
def test_softmax_config(name, kwargs, pattern) -> None:
    target = torch.zeros(2, dtype=torch.int64)
    with pytest.raises((TypeError, ValueError), match=rf"{name}: {pattern}"):
        getattr(funcloss, name)(X, target, **kwargs)
    module = SOFTMAX[name]
    with pytest.raises((TypeError, ValueError), match=rf"{module.__name__}: {pattern}"):
        module(**kwargs)


# -- asymmetric_loss -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"gamma_pos": -1.0}, r"`gamma_pos` must be finite and non-negative, got -1.0"),
        ({"gamma_neg": float("inf")}, r"`gamma_neg` must be finite and non-negative, got inf"),
        ({"clip": 1.0}, r"`clip` must be in \[0, 1\), got 1.0"),
        ({"clip": -0.1}, r"`clip` must be in \[0, 1\), got -0.1"),
        ({"clip": None}, r"`clip` must be a real number, got NoneType"),
        ({"reduction": "batchmean"}, r"`reduction` must be one of"),
    ],
)
def test_asymmetric_config(kwargs, pattern) -> None:
    with pytest.raises((TypeError, ValueError), match=rf"asymmetric_loss: {pattern}"):
        funcloss.asymmetric_loss(X, X, **kwargs)
    with pytest.raises((TypeError, ValueError), match=rf"AsymmetricLoss: {pattern}"):
        fnn.AsymmetricLoss(**kwargs)


def test_asymmetric_targets() -> None:
    with pytest.raises(TypeError, match=r"asymmetric_loss: `target` must have a floating-point"):
        funcloss.asymmetric_loss(X, torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"asymmetric_loss: `target` must have the same shape"):
        funcloss.asymmetric_loss(X, torch.zeros(2, 1))
