"""Bad input to the Lovász losses: each fails with the house message."""

from __future__ import annotations

import pytest
import torch

import funcloss
import funcloss.nn as fnn

X = torch.zeros(2, 4, 4)
Y = torch.zeros(2, 4, 4, dtype=torch.long)
XS = torch.zeros(2, 3, 4, 4)


def test_hinge_target() -> None:
    fn = "lovasz_hinge_loss"
    with pytest.raises(
        ValueError, match=rf"{fn}: `target` must have the input's shape \(2, 4, 4\)"
    ):
        funcloss.lovasz_hinge_loss(X, Y[:, 0])
    bad = Y.clone()
    bad[0, 0, 0] = 2
    with pytest.raises(IndexError, match=rf"{fn}: `target` values must be in \[0, 2\), got 2\."):
        funcloss.lovasz_hinge_loss(X, bad)
    with pytest.raises(ValueError, match=rf"{fn}: `target` must hold 0 or 1, got 2.0\."):
        funcloss.lovasz_hinge_loss(X, bad.double())
    with pytest.raises(ValueError, match=r"must hold 0 or 1 or equal ignore_index=255, got 0.5\."):
        funcloss.lovasz_hinge_loss(X, bad.double().fill_(0.5), ignore_index=255)
    with pytest.raises(TypeError, match=rf"{fn}: `target` must hold binary labels"):
        funcloss.lovasz_hinge_loss(X, Y.to(torch.complex64))
    with pytest.raises(TypeError, match=rf"{fn}: `input` must have a floating-point dtype"):
        funcloss.lovasz_hinge_loss(Y, Y)
    with pytest.raises(ValueError, match=rf"{fn}: `input` must have shape \(N, \*spatial\)"):
        funcloss.lovasz_hinge_loss(torch.zeros(()), torch.zeros((), dtype=torch.long))


def test_softmax_target() -> None:
    fn = "lovasz_softmax_loss"
    with pytest.raises(ValueError, match=rf"{fn}: `target` must have shape \(2, 4, 4\)"):
        funcloss.lovasz_softmax_loss(XS, Y[:, 0])
    with pytest.raises(TypeError, match=rf"{fn}: `target` must hold class indices"):
        funcloss.lovasz_softmax_loss(XS, Y.double())
    bad = Y.clone()
    bad[0, 0, 0] = 3
    with pytest.raises(IndexError, match=rf"{fn}: `target` values must be in \[0, 3\), got 3\."):
        funcloss.lovasz_softmax_loss(XS, bad)
    with pytest.raises(ValueError, match=rf"{fn}: `input` must have shape \(N, C, \*spatial\)"):
        funcloss.lovasz_softmax_loss(X[:, :0], Y[:, 0])


@pytest.mark.parametrize(
    ("classes", "error", "rule"),
    [
        ("some", ValueError, r"`classes` must be 'present', 'all' or a sequence"),
        ([], ValueError, r"`classes` must be 'present', 'all' or a non-empty list"),
        (3, TypeError, r"`classes` must be 'present', 'all' or a non-empty list"),
        ([0, -1], ValueError, r"`classes` must hold non-negative ints"),
        ([1, 1], ValueError, r"`classes` must hold distinct class indices"),
    ],
    ids=["name", "empty", "int", "negative", "duplicate"],
)
def test_classes(classes, error, rule) -> None:
    with pytest.raises(error, match=rf"lovasz_softmax_loss: {rule}"):
        funcloss.lovasz_softmax_loss(XS, Y, classes=classes)
    with pytest.raises(error, match=rf"LovaszSoftmaxLoss.*{rule}"):
        fnn.LovaszSoftmaxLoss(classes=classes)


def test_classes_that_do_not_fit_the_input() -> None:
    with pytest.raises(ValueError, match=r"`classes` must hold class indices in \[0, 3\)"):
        funcloss.lovasz_softmax_loss(XS, Y, classes=[0, 3])


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("lovasz_hinge_loss", fnn.LovaszHingeLoss),
        ("lovasz_softmax_loss", fnn.LovaszSoftmaxLoss),
    ],
)
def test_config_and_where(name, module) -> None:
    x = X if name == "lovasz_hinge_loss" else XS
    f = getattr(funcloss, name)
    with pytest.raises(ValueError, match=rf"{name}: `reduction` must be one of"):
        f(x, Y, reduction="batchmean")
    with pytest.raises(ValueError, match=rf"{module.__name__}.*`reduction` must be one of"):
        module(reduction="batchmean")
    with pytest.raises(TypeError, match=rf"{name}: `ignore_index` must be an int, got float"):
        f(x, Y, ignore_index=1.5)
    with pytest.raises(TypeError, match=rf"{module.__name__}.*`ignore_index` must be an int"):
        module(ignore_index=1.5)
    with pytest.raises(TypeError, match=rf"{name}: `where` must be a bool tensor"):
        f(x, Y, where=torch.ones(2))
    with pytest.raises(ValueError, match=rf"{name}: `where` must be broadcastable to .* \(2,\)"):
        f(x, Y, where=torch.ones(3, dtype=torch.bool), per_image=True)
    with pytest.raises(ValueError, match=r"`where` must be broadcastable to .* \(\)"):
        f(x, Y, where=torch.ones(2, dtype=torch.bool), per_image=False)
