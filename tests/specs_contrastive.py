"""Specs for the metric and contrastive losses (funcloss/_contrastive.py).

The oracles are the papers' formulas written naively in float64: Python loops over anchors and
pairs, each similarity an explicit dot product of normalised vectors (optax's normalisation:
``x / sqrt(max(|x|^2, eps))``). A mask removes samples from the batch, so the masked oracle
(``where_oracle``) is the oracle on the batch with the masked samples sliced out.

Draws keep every embedding's norm above 0.1 (away from the normalisation's clamp, a kink) and the
temperatures at 0.2 or more (so that a half-precision oracle does not overflow ``exp``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from hypothesis import assume
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import class_targets, floats

from .anchors import anchor
from .registry import Case, LossSpec

# -- naive oracles ---------------------------------------------------------------------------


def unit(x: Tensor) -> Tensor:
    """optax's cosine normalisation, row by row."""
    eps = torch.finfo(x.dtype).eps
    if len(x) == 0:
        return x
    return torch.stack([row / torch.sqrt(torch.clamp((row * row).sum(), min=eps)) for row in x])


def _zero(like: Tensor) -> Tensor:
    """0, connected to ``like``'s graph (a zero gradient rather than none), also where
    ``like`` holds a NaN (a loss no sample enters)."""
    return torch.where(torch.tensor(False), like.sum(), 0.0)


def _reduce(losses: list[Tensor], count: int, reduction: str, like: Tensor) -> Tensor:
    """``"none"``: the stacked losses; ``"sum"``; ``"mean"``: the sum over ``count`` (0 when
    nothing counts)."""
    stacked = torch.stack(losses) if losses else (like * 0).sum(-1)
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
            losses.append(_zero(embeddings))
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
        total = _zero(embeddings)
        for j in range(n):
            if j == i or y[j] != y[i]:
                continue
            pairs += 1
            logits = [u[i].dot(u[j]) / temperature]
            logits += [u[i].dot(u[k]) / temperature for k in range(n) if y[k] != y[i]]
            total = total - (logits[0] - torch.logsumexp(torch.stack(logits), 0))
        losses.append(total)
    return _reduce(losses, pairs, reduction, embeddings)


def info_nce_oracle(
    query: Tensor,
    positive_key: Tensor,
    negative_keys: Tensor | None = None,
    temperature: float = 0.1,
    symmetric: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """van den Oord et al. 2018: -log(e^{q.k+} / (e^{q.k+} + sum_n e^{q.n})) of unit vectors;
    symmetric: the mean of the query->key and key->query losses (CLIP)."""
    tensors = [t for t in (query, positive_key, negative_keys) if t is not None]
    dtype = functools.reduce(torch.promote_types, [t.dtype for t in tensors])
    query, positive_key = query.to(dtype), positive_key.to(dtype)
    if negative_keys is not None:
        negative_keys = negative_keys.to(dtype)
    q, k, n = unit(query), unit(positive_key), len(query)
    losses = []
    for i in range(n):
        if negative_keys is None:
            negatives = [k[j] for j in range(n) if j != i]
        elif negative_keys.dim() == 2:
            negatives = list(unit(negative_keys))
        else:
            negatives = list(unit(negative_keys[i]))
        logits = torch.stack([q[i].dot(key) / temperature for key in [k[i], *negatives]])
        loss = torch.logsumexp(logits, 0) - logits[0]
        if symmetric:
            others = [k[i].dot(q[j]) / temperature for j in range(n) if j != i]
            logits = torch.stack([k[i].dot(q[i]) / temperature, *others])
            loss = (loss + torch.logsumexp(logits, 0) - logits[0]) / 2
        losses.append(loss)
    return _reduce(losses, n, reduction, query)


def _margin_cross_entropy(input: Tensor, target: Tensor, modified: Tensor, scale: float):
    """Per row: -log softmax of ``scale *`` the cosines, the target's replaced by ``modified``."""
    losses = []
    for n in range(input.shape[0]):
        y = int(target[n])
        logits = [modified[n] if c == y else input[n, c] for c in range(input.shape[1])]
        logits = torch.stack(logits) * scale
        losses.append(torch.logsumexp(logits, 0) - logits[y])
    return losses


def arcface_oracle(
    input: Tensor,
    target: Tensor,
    margin: float = 0.5,
    scale: float = 64.0,
    *,
    easy_margin: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Deng et al. 2019 through the angle (acos), PML's way: cos(theta + m) for
    theta <= pi - m, else cos(theta) - m sin(m); easy_margin: the margin only for cos > 0.
    Computed in float64 whatever the input's dtype (acos near 1 loses float32's digits: the
    float32 comparison would measure the oracle's error), returned in the input's dtype."""
    dtype, input = input.dtype, input.double()
    cosine = input.gather(1, target[:, None]).squeeze(1)
    theta = torch.acos(cosine)
    shifted = torch.cos(theta + margin)
    if easy_margin:
        modified = torch.where(cosine > 0, shifted, cosine)
    else:
        modified = torch.where(
            theta <= math.pi - margin, shifted, cosine - margin * math.sin(margin)
        )
    return _reduce(
        _margin_cross_entropy(input, target, modified, scale), len(input), reduction, input
    ).to(dtype)


def cosface_oracle(
    input: Tensor,
    target: Tensor,
    margin: float = 0.35,
    scale: float = 64.0,
    reduction: str = "mean",
) -> Tensor:
    """Wang et al. 2018: the target's cosine minus m, scaled, in a softmax cross-entropy."""
    modified = input.gather(1, target[:, None]).squeeze(1) - margin
    return _reduce(
        _margin_cross_entropy(input, target, modified, scale), len(input), reduction, input
    )


def sliced_where_oracle(oracle: Callable[..., Tensor], batched: int = 2):
    """The masked loss as the oracle on the kept samples: the first ``batched`` arguments are
    sliced along dim 0, ``"none"`` is scattered back (0 where masked)."""

    def where_oracle(case: Case, where: Tensor, reduction: str) -> Tensor:
        index = where.nonzero().squeeze(1)
        args = [a.index_select(0, index) for a in case.args[:batched]] + list(case.args[batched:])
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
        # no warnings.catch_warnings(): torch.compile cannot trace it (the transform table
        # would show the adapter's failure, not PML's)
        return getattr(losses, name)(**settings)(embeddings, labels)

    return run


def _pml_margin(name: str) -> Callable[..., Tensor]:
    """PML's ``ArcFaceLoss`` / ``CosFaceLoss`` on given cosines: its weight matrix is bypassed
    (``get_cosine`` returns the input), its margin and scaling are PML's own code. PML's
    ArcFace margin is in degrees."""

    def run(input: Tensor, target: Tensor, margin: float = 0.5, scale: float = 64.0, **kwargs):
        losses = anchor("pytorch_metric_learning.losses")
        num_classes = input.shape[1]
        if name == "ArcFaceLoss":
            loss = losses.ArcFaceLoss(num_classes, num_classes, math.degrees(margin), scale)
        else:
            loss = losses.CosFaceLoss(num_classes, num_classes, margin=margin, scale=scale)
        loss.get_cosine = lambda embeddings: embeddings
        return loss(input, target)

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


@st.composite
def _info_nce_cases(draw: st.DrawFn, negatives: str = "in-batch") -> Case:
    n, d = draw(st.integers(1, 4)), draw(st.integers(2, 3))
    shapes = {"in-batch": None, "shared": (draw(st.integers(1, 3)), d), "per-query": None}
    if negatives == "per-query":
        shapes["per-query"] = (n, draw(st.integers(1, 3)), d)
    tensors = [draw(floats((n, d), min_value=-2.0, max_value=2.0)) for _ in range(2)]
    if shapes[negatives] is not None:
        tensors.append(draw(floats(shapes[negatives], min_value=-2.0, max_value=2.0)))
    assume(all(bool((t.norm(dim=-1) > 0.1).all()) for t in tensors))
    kwargs = {"temperature": draw(st.floats(0.2, 1.0))}
    if negatives == "in-batch":
        kwargs["symmetric"] = draw(st.booleans())
    return Case(tuple(tensors), kwargs)


@st.composite
def _cosine_cases(draw: st.DrawFn, arcface: bool = True, easy_margin: bool = False) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    cosine = draw(floats((n, c), min_value=-0.95, max_value=0.95))
    target = draw(class_targets((n,), c))
    margin = draw(st.floats(0.05, 1.0))
    kwargs = {"margin": margin, "scale": draw(st.floats(1.0, 30.0))}
    if arcface:
        kwargs["easy_margin"] = easy_margin
        kink = 0.0 if easy_margin else math.cos(math.pi - margin)
        assume(bool(((cosine.gather(1, target[:, None]) - kink).abs() > 1e-3).all()))
    return Case((cosine, target), kwargs)


def _row_arg_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
    """``where`` on each pair's query, key and per-query negatives; shared negatives (2-D, read
    by every query) are never only masked."""
    arg = case.args[position]
    if position == 2 and arg.dim() == 2:
        return None
    return where.reshape(where.shape + (1,) * (arg.dim() - 1)).expand(arg.shape)


def _spec(
    id: str, fn, module, cases, oracle, anchor_fn=None, anchor_name=None, batched=2, **extra
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
        where_oracle=sliced_where_oracle(oracle, batched),
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
    _spec(
        "info_nce_loss",
        funcloss.info_nce_loss,
        fnn.InfoNCELoss,
        _info_nce_cases,
        info_nce_oracle,
        wrt=(0, 1),
        where_arg_mask=_row_arg_mask,
    ),
    _spec(
        "info_nce_loss-shared",
        funcloss.info_nce_loss,
        fnn.InfoNCELoss,
        lambda: _info_nce_cases("shared"),
        info_nce_oracle,
        wrt=(0, 1, 2),
        where_arg_mask=_row_arg_mask,
    ),
    _spec(
        "info_nce_loss-per-query",
        funcloss.info_nce_loss,
        fnn.InfoNCELoss,
        lambda: _info_nce_cases("per-query"),
        info_nce_oracle,
        batched=3,
        wrt=(0, 1, 2),
        where_arg_mask=_row_arg_mask,
    ),
    LossSpec(
        "arcface_loss",
        funcloss.arcface_loss,
        fnn.ArcFaceLoss,
        _cosine_cases,
        arcface_oracle,
        per_sample_dims=None,
        anchor=_pml_margin("ArcFaceLoss"),
        anchor_name="pytorch-metric-learning",
    ),
    LossSpec(
        "arcface_loss-easy-margin",  # PML has no easy margin
        funcloss.arcface_loss,
        fnn.ArcFaceLoss,
        lambda: _cosine_cases(easy_margin=True),
        arcface_oracle,
        per_sample_dims=None,
        anchor_name=None,
    ),
    LossSpec(
        "cosface_loss",
        funcloss.cosface_loss,
        fnn.CosFaceLoss,
        lambda: _cosine_cases(arcface=False),
        cosface_oracle,
        per_sample_dims=None,
        anchor=_pml_margin("CosFaceLoss"),
        anchor_name="pytorch-metric-learning",
    ),
]
