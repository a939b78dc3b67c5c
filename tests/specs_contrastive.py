"""Specs for the metric and contrastive losses (funcloss/_contrastive.py).

The oracles are the papers' formulas written naively in float64: Python loops over anchors and
pairs, each similarity an explicit dot product of normalised vectors (optax's normalisation:
``x / sqrt(max(|x|^2, eps))``). A mask removes samples from the batch, so the masked oracle
(``where_oracle``) is the oracle on the batch with the masked samples sliced out.

Draws keep every embedding's norm above 0.1 (away from the normalisation's clamp, a kink) and the
temperatures at 0.2 or more (so that a half-precision oracle does not overflow ``exp``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from hypothesis import assume
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats

from .anchors import anchor
from .registry import Case, LossSpec

# -- naive oracles ---------------------------------------------------------------------------


def unit(x: Tensor) -> Tensor:
    """optax's cosine normalisation, row by row."""
    eps = torch.finfo(x.dtype).eps
    return torch.stack([row / torch.sqrt(torch.clamp((row * row).sum(), min=eps)) for row in x])


def _reduce(losses: list[Tensor], count: int, reduction: str, like: Tensor) -> Tensor:
    """``"none"``: the stacked losses; ``"sum"``; ``"mean"``: the sum over ``count`` (0 when
    nothing counts)."""
    stacked = torch.stack(losses) if losses else like.new_zeros((0,))
    if reduction == "none":
        return stacked
    total = stacked.sum()
    if reduction == "sum":
        return total
    return total / count if count else total * 0


def _groups(labels: Tensor) -> list[int]:
    return [int(v) for v in labels]


def supcon_oracle(
    embeddings: Tensor, labels: Tensor, temperature: float = 0.1, reduction: str = "mean"
) -> Tensor:
    """Khosla et al. 2020, eq. 2 (L_out), over the anchors with a positive and a negative."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    losses, count = [], 0
    for i in range(n):
        positives = [p for p in range(n) if p != i and y[p] == y[i]]
        has_negative = any(y[a] != y[i] for a in range(n))
        if not positives or not has_negative:
            losses.append(embeddings.new_zeros(()))
            continue
        logits = torch.stack([u[i].dot(u[a]) / temperature for a in range(n) if a != i])
        log_denominator = torch.logsumexp(logits, 0)
        terms = [u[i].dot(u[p]) / temperature - log_denominator for p in positives]
        losses.append(-sum(terms) / len(positives))
        count += 1
    return _reduce(losses, count, reduction, embeddings)


def ntxent_oracle(
    embeddings: Tensor, labels: Tensor, temperature: float = 0.07, reduction: str = "mean"
) -> Tensor:
    """SimCLR's NT-Xent as optax: -log(e^{s_ij} / (e^{s_ij} + sum_neg e^{s_ik})) per positive
    pair, summed per anchor, averaged over the pairs."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    losses, pairs = [], 0
    for i in range(n):
        total = embeddings.new_zeros(())
        for j in range(n):
            if j == i or y[j] != y[i]:
                continue
            pairs += 1
            logits = [u[i].dot(u[j]) / temperature]
            logits += [u[i].dot(u[k]) / temperature for k in range(n) if y[k] != y[i]]
            total = total - (logits[0] - torch.logsumexp(torch.stack(logits), 0))
        losses.append(total)
    return _reduce(losses, pairs, reduction, embeddings)


def sliced_where_oracle(oracle: Callable[..., Tensor], batched: int = 2):
    """The masked loss as the oracle on the kept samples: the first ``batched`` arguments are
    sliced along dim 0, ``"none"`` is scattered back (0 where masked)."""

    def where_oracle(case: Case, where: Tensor, reduction: str) -> Tensor:
        index = where.nonzero().squeeze(1)
        args = [a.index_select(0, index) for a in case.args[:batched]] + list(
            case.args[batched:]
        )
        value = oracle(*args, **case.kwargs, reduction=reduction)
        if reduction != "none":
            return value
        full = case.args[0].new_zeros(where.shape)
        return full.index_copy(0, index, value)

    return where_oracle


# -- anchors (pytorch-metric-learning) -------------------------------------------------------


def _pml(name: str, **config: object) -> Callable[..., Tensor]:
    """PML's ``losses.<name>(**config)`` adapted to funcloss's ``(embeddings, labels, ...)`` call:
    PML only reduces (its "mean" is its own reducer's)."""

    def run(embeddings: Tensor, labels: Tensor, **kwargs: object) -> Tensor:
        losses = anchor("pytorch_metric_learning.losses")
        settings = dict(config, **{k: v for k, v in kwargs.items() if k != "reduction"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(losses, name)(**settings)(embeddings, labels)

    return run


# -- cases -----------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn, max_n: int = 5, groups: int = 3) -> tuple[Tensor, Tensor]:
    """Embeddings ``(N, D)`` with norms >= 0.1 and labels from ``groups`` groups (shuffled
    values, so labels are not sorted)."""
    n, d = draw(st.integers(1, max_n)), draw(st.integers(2, 3))
    x = draw(floats((n, d), min_value=-2.0, max_value=2.0))
    assume(bool((x.norm(dim=-1) > 0.1).all()))
    values = draw(st.lists(st.integers(0, groups - 1), min_size=n, max_size=n))
    return x, torch.tensor(values, dtype=torch.int64)


@st.composite
def _temperature_cases(draw: st.DrawFn) -> Case:
    x, y = draw(batches())
    return Case((x, y), {"temperature": draw(st.floats(0.2, 1.0))})


def _spec(
    id: str, fn, module, cases, oracle, anchor_fn=None, anchor_name=None, **extra
) -> LossSpec:
    return LossSpec(
        id,
        fn,
        module,
        cases,
        oracle,
        per_sample_dims=None,
        anchor=anchor_fn,
        anchor_name=anchor_name,
        where_oracle=sliced_where_oracle(oracle),
        **extra,
    )


SPECS = [
    _spec(
        "supcon_loss",
        funcloss.supcon_loss,
        fnn.SupConLoss,
        _temperature_cases,
        supcon_oracle,
        _pml("SupConLoss", temperature=0.1),
        "pytorch-metric-learning",
    ),
    _spec(
        "ntxent_loss",
        funcloss.ntxent_loss,
        fnn.NTXentLoss,
        _temperature_cases,
        ntxent_oracle,
        _pml("NTXentLoss", temperature=0.07),
        "pytorch-metric-learning",
    ),
]
