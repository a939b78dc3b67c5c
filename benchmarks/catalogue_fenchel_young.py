"""Benchmark cases for the Fenchel–Young family (benchmarks/catalogue.py runs them).

sparsemax and sparsemax_loss against entmax (its old-style autograd.Function runs in plain
eager mode); the hinges and binary losses against a naive torch composition of optax's formulas
(optax itself runs in JAX). N=4096 rows of C=1000 classes, float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from catalogue import Bench, Inputs

import funcloss

N, C = 4096, 1000
SIZE = f"N={N}, C={C}"


def _classes(quick: bool, generator: torch.Generator) -> Inputs:
    n, c = (8, 10) if quick else (N, C)
    z = torch.randn(n, c, generator=generator) * 3
    return (z, torch.randint(c, (n,), generator=generator)), {}


def _weighted(quick: bool, generator: torch.Generator) -> Inputs:
    (z, _), _ = _classes(quick, generator)
    return (z, torch.randn(z.shape, generator=generator)), {}


def _signed(quick: bool, generator: torch.Generator) -> Inputs:
    (z, _), _ = _classes(quick, generator)
    return (z, torch.where(torch.rand(z.shape, generator=generator) < 0.5, -1.0, 1.0)), {}


def _binary(quick: bool, generator: torch.Generator) -> Inputs:
    (z, _), _ = _classes(quick, generator)
    return (z, (torch.rand(z.shape, generator=generator) < 0.5).float()), {}


def naive_multiclass_hinge(input, target, margin=1.0):
    onehot = F.one_hot(target, input.shape[-1]).to(input.dtype)
    return ((input + margin * (1 - onehot)).amax(-1) - (input * onehot).sum(-1)).mean()


def naive_multiclass_perceptron(input, target):
    return (input.amax(-1) - input.gather(-1, target[:, None]).squeeze(-1)).mean()


def naive_sparse_plus(x):
    return torch.where(x <= -1, 0.0, torch.where(x >= 1, x, (x + 1) ** 2 / 4))


def naive_binary_sparsemax(input, target):
    return naive_sparse_plus(torch.where(target > 0, -input, input)).mean()


BENCHES: list[Bench] = []
_sparsemax = {"funcloss": lambda z, w: (funcloss.sparsemax(z) * w).sum()}
_sparsemax_loss = {"funcloss": funcloss.sparsemax_loss}
try:
    import entmax

    _sparsemax["entmax"] = lambda z, w: (entmax.sparsemax(z, dim=-1) * w).sum()
    _sparsemax_loss["entmax"] = entmax.SparsemaxLoss(reduction="elementwise_mean")
except ImportError:
    pass

BENCHES += [
    Bench("sparsemax", SIZE, _weighted, _sparsemax),
    Bench("sparsemax_loss", SIZE, _classes, _sparsemax_loss),
    Bench(
        "binary_sparsemax_loss",
        SIZE,
        _binary,
        {"funcloss": funcloss.binary_sparsemax_loss, "naive torch": naive_binary_sparsemax},
    ),
    Bench(
        "multiclass_hinge_loss",
        SIZE,
        _classes,
        {"funcloss": funcloss.multiclass_hinge_loss, "naive torch": naive_multiclass_hinge},
    ),
    Bench(
        "multiclass_perceptron_loss",
        SIZE,
        _classes,
        {
            "funcloss": funcloss.multiclass_perceptron_loss,
            "naive torch": naive_multiclass_perceptron,
        },
    ),
    Bench(
        "hinge_loss",
        SIZE,
        _signed,
        {"funcloss": funcloss.hinge_loss, "naive torch": lambda z, y: F.relu(1 - y * z).mean()},
    ),
    Bench(
        "perceptron_loss",
        SIZE,
        _signed,
        {"funcloss": funcloss.perceptron_loss, "naive torch": lambda z, y: F.relu(-y * z).mean()},
    ),
]
