"""Specs for the Fenchel–Young family: sparsemax_loss, binary_sparsemax_loss, the multi-class
hinges (Crammer–Singer, perceptron) and the binary hinge and perceptron.

Oracles are naive float64 formulas from the papers: sparsemax by Martins & Astudillo's
algorithm, row by row in Python, and their loss formula :math:`-z_y + \\tfrac12 \\sum_{j \\in S}
(z_j^2 - \\tau^2) + \\tfrac12`; Crammer–Singer and the perceptron as optax writes them (a one-hot
product). Draws keep off the kinks (a score at the sparsemax threshold, tied maxima of the
hinges, ``y z`` at the binary hinges' corners, ``|z| = 1`` for the sparse plus); those points
are pinned in tests/test_fenchel_young.py.
"""

from __future__ import annotations

import torch
from hypothesis import assume
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import class_targets, floats, logits

from .registry import Case, LossSpec

# Half-width of the band around a kink that draws never enter.
KINK_MARGIN = 1e-3


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def naive_sparsemax_row(z: Tensor) -> tuple[Tensor, Tensor]:
    """(p, tau) of one row by Martins & Astudillo's Algorithm 1, with a Python loop over k,
    for the row shifted by its maximum (sparsemax does not change; in float64 the unshifted
    test ``1 + k z_(k) > sum`` rounds away the 1 for scores of 1e300)."""
    z = z - z.detach().max()
    ordered = sorted(z.tolist(), reverse=True)
    k_z, running = 1, 0.0
    for k, value in enumerate(ordered, 1):
        running += value
        if 1 + k * value > running:
            k_z = k
    top = torch.sort(z, descending=True).values[:k_z]
    tau = (top.sum() - 1) / k_z
    return torch.relu(z - tau), tau


def naive_sparsemax(z: Tensor) -> Tensor:
    rows = z.reshape(-1, z.shape[-1])
    return torch.stack([naive_sparsemax_row(row)[0] for row in rows]).reshape(z.shape)


def naive_sparsemax_loss(input, target, reduction="mean"):
    z = input.double()
    rows, labels = z.reshape(-1, z.shape[-1]), target.reshape(-1)
    losses = []
    for row, label in zip(rows, labels.tolist(), strict=True):
        row = row - row.detach().max()  # the loss does not change under a shift
        _, tau = naive_sparsemax_row(row)
        support = row > tau
        term = torch.where(support, row.square() - tau.square(), 0.0).sum()
        losses.append(-row[label] + term / 2 + 0.5)
    loss = torch.stack(losses).reshape(target.shape) if losses else z.new_zeros(target.shape)
    return _reduce(loss, reduction).to(input.dtype)


def naive_multiclass_hinge(input, target, margin=1.0, reduction="mean"):
    """optax's formula: max(z + margin (1 - onehot)) - <z, onehot>."""
    z = input.double()
    onehot = torch.nn.functional.one_hot(target, z.shape[-1]).double()
    loss = (z + margin * (1 - onehot)).amax(-1) - z.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return _reduce(loss, reduction).to(input.dtype)


def naive_multiclass_perceptron(input, target, reduction="mean"):
    return naive_multiclass_hinge(input, target, 0.0, reduction)


def _output_dtype(input: Tensor, target: Tensor) -> torch.dtype:
    if target.is_floating_point():
        return torch.promote_types(input.dtype, target.dtype)
    return input.dtype


def naive_sparse_plus(x: Tensor) -> Tensor:
    return torch.where(x <= -1, 0.0, torch.where(x >= 1, x, (x + 1) ** 2 / 4))


def naive_binary_sparsemax(input, target, reduction="mean"):
    """Blondel et al.'s Fenchel–Young form sp(z) - z y + y^2 - y (optax's for 0/1 labels)."""
    z, y = input.double(), target.double()
    loss = naive_sparse_plus(z) - z * y + y * y - y
    return _reduce(loss, reduction).to(_output_dtype(input, target))


def naive_hinge(input, target, reduction="mean"):
    # relu, not clamp: the documented gradient 0 at the kink (clamp's is 1 there), where a
    # half-precision input can round onto it
    loss = torch.relu(1 - input.double() * target.double())
    return _reduce(loss, reduction).to(_output_dtype(input, target))


def naive_perceptron(input, target, reduction="mean"):
    loss = torch.relu(-input.double() * target.double())  # gradient 0 at the kink, as naive_hinge
    return _reduce(loss, reduction).to(_output_dtype(input, target))


# -- draws ---------------------------------------------------------------------------------


def _off_sparsemax_kinks(z: Tensor) -> bool:
    for row in z.reshape(-1, z.shape[-1]):
        row = row - row.max()
        _, tau = naive_sparsemax_row(row)
        if (row - tau).abs().min() < KINK_MARGIN:
            return False
    return True


def _off_hinge_kinks(z: Tensor, y: Tensor, margin: float) -> bool:
    rows, labels = z.reshape(-1, z.shape[-1]), y.reshape(-1)
    for row, label in zip(rows, labels.tolist(), strict=True):
        gaps = row - row[label] + margin
        gaps[label] = 0.0
        top = torch.sort(gaps, descending=True).values
        if top.numel() > 1 and top[0] - top[1] < KINK_MARGIN:
            return False
    return True


@st.composite
def _class_cases(draw: st.DrawFn, kind: str = "sparsemax", unbatched: bool = False) -> Case:
    c = draw(st.integers(2, 5))
    shape = (c,) if unbatched else (draw(st.integers(1, 4)), c)
    x = draw(logits(shape, scale=3.0))
    y = draw(class_targets(shape[:-1], c))
    kwargs: dict = {}
    if kind == "sparsemax":
        assume(_off_sparsemax_kinks(x))
    else:
        margin = 0.0
        if kind == "hinge" and draw(st.booleans()):
            margin = draw(st.floats(0.1, 2.0))
            kwargs["margin"] = margin
        elif kind == "hinge":
            margin = 1.0
        assume(_off_hinge_kinks(x, y, margin))
    return Case((x, y), kwargs)


@st.composite
def _binary_sparsemax_cases(draw: st.DrawFn) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    x = draw(floats(shape, min_value=-3.0, max_value=3.0))
    x = torch.where((x.abs() - 1).abs() <= KINK_MARGIN, x * 1.1, x)  # off the kinks at ±1
    if draw(st.booleans()):
        y = draw(st.lists(st.integers(0, 1), min_size=x.numel(), max_size=x.numel()))
        target = torch.tensor(y).reshape(shape)
    else:
        target = draw(floats(shape, min_value=0.0, max_value=1.0))
    return Case((x, target))


@st.composite
def _signed_cases(draw: st.DrawFn, corner: float) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    x = draw(floats(shape, min_value=-3.0, max_value=3.0))
    signs = draw(st.lists(st.sampled_from([-1, 1]), min_size=x.numel(), max_size=x.numel()))
    y = torch.tensor(signs).reshape(shape)
    # off the kink x y = corner by moving, not by rejecting (Hypothesis draws many exact zeros)
    x = torch.where((x * y - corner).abs() <= KINK_MARGIN, x + 0.1 * y, x)
    return Case((x, y))


SPECS = [
    LossSpec(
        "sparsemax_loss",
        funcloss.sparsemax_loss,
        fnn.SparsemaxLoss,
        _class_cases,
        naive_sparsemax_loss,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "sparsemax_loss-unbatched",
        funcloss.sparsemax_loss,
        fnn.SparsemaxLoss,
        lambda: _class_cases(unbatched=True),
        naive_sparsemax_loss,
        per_sample_dims=None,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "binary_sparsemax_loss",
        funcloss.binary_sparsemax_loss,
        fnn.BinarySparsemaxLoss,
        _binary_sparsemax_cases,
        naive_binary_sparsemax,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "multiclass_hinge_loss",
        funcloss.multiclass_hinge_loss,
        fnn.MulticlassHingeLoss,
        lambda: _class_cases("hinge"),
        naive_multiclass_hinge,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "multiclass_perceptron_loss",
        funcloss.multiclass_perceptron_loss,
        fnn.MulticlassPerceptronLoss,
        lambda: _class_cases("perceptron"),
        naive_multiclass_perceptron,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "hinge_loss",
        funcloss.hinge_loss,
        fnn.HingeLoss,
        lambda: _signed_cases(1.0),
        naive_hinge,
        anchor_name=None,
        torch_module=None,
    ),
    LossSpec(
        "perceptron_loss",
        funcloss.perceptron_loss,
        fnn.PerceptronLoss,
        lambda: _signed_cases(0.0),
        naive_perceptron,
        anchor_name=None,
        torch_module=None,
    ),
]
