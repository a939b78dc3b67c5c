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


def cosface_limit(
    input: Tensor,
    target: Tensor,
    margin: float = 0.35,
    scale: float = 64.0,
    reduction: str = "mean",
) -> Tensor:
    """cosface_oracle's function from the differences of the cosines: per row, logsumexp of 0
    (the target) and ``(c_j - c_y + m) s`` (the others). Far outside [-1, 1] the oracle's
    ``c_y - m`` rounds the margin away (at -4e31 float64 does), and its logsumexp of two equal
    huge logits rounds their log 2 away; the differences keep both. Finite inputs only."""
    if not bool(input.isfinite().all()):
        raise NotImplementedError("finite cosines only: the stand-ins decide at an infinite one")
    losses = []
    for n in range(input.shape[0]):
        y = int(target[n])
        logits = [
            input.new_zeros(()) if c == y else (input[n, c] - input[n, y] + margin) * scale
            for c in range(input.shape[1])
        ]
        losses.append(torch.logsumexp(torch.stack(logits), 0))
    return _reduce(losses, len(input), reduction, input)


def _distance(u: Tensor, i: int, j: int) -> Tensor:
    """The Euclidean distance of two unit vectors, from their difference."""
    return torch.sqrt(((u[i] - u[j]) ** 2).sum())


def _pairs_of(y: list[int], i: int) -> tuple[list[int], list[int]]:
    """(positives, negatives) of anchor ``i``."""
    n = len(y)
    return [j for j in range(n) if j != i and y[j] == y[i]], [j for j in range(n) if y[j] != y[i]]


def _value(t: Tensor) -> float:
    return float(t.detach())


def _nonzero_mean(terms: list[Tensor], like: Tensor) -> Tensor:
    """PML's AvgNonZeroReducer: the sum over the number of non-zero terms (0 when none)."""
    nonzero = sum(1 for t in terms if t > 0)
    total = sum(terms, _zero(like))
    return total / nonzero if nonzero else total * 0


def contrastive_oracle(
    embeddings: Tensor,
    labels: Tensor,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Hadsell et al. 2006 with PML's reduction: [d - m_p]_+ per positive pair, [m_n - d]_+ per
    negative pair (ordered pairs, normalised embeddings); "mean": each part's sum over its
    non-zero pairs, added; 0 for a batch without positive or negative pairs."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    has_both = any(_pairs_of(y, i)[0] for i in range(n)) and any(
        _pairs_of(y, i)[1] for i in range(n)
    )
    losses, pulled, pushed = [], [], []
    for i in range(n):
        positives, negatives = _pairs_of(y, i) if has_both else ([], [])
        pull = [torch.relu(_distance(u, i, j) - pos_margin) for j in positives]
        push = [torch.relu(neg_margin - _distance(u, i, j)) for j in negatives]
        pulled += pull
        pushed += push
        losses.append(sum(pull + push, _zero(embeddings)))
    if reduction == "mean":
        return _nonzero_mean(pulled, embeddings) + _nonzero_mean(pushed, embeddings)
    return _reduce(losses, n, reduction, embeddings)


def batch_triplet_oracle(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.05,
    mining: str = "all",
    reduction: str = "mean",
) -> Tensor:
    """Schroff et al. 2015: [d_ap - d_an + m]_+ over every triplet ("all"), or over each
    anchor's farthest positive and nearest negative ("hard", Hermans et al. 2017), with PML's
    mean over the non-zero triplets."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    losses, triplets = [], []
    for a in range(n):
        positives, negatives = _pairs_of(y, a)
        if not positives or not negatives:
            losses.append(_zero(embeddings))
            continue
        if mining == "hard":
            hardest = max((_distance(u, a, p) for p in positives), key=_value)
            nearest = min((_distance(u, a, k) for k in negatives), key=_value)
            terms = [torch.relu(hardest - nearest + margin)]
        else:
            terms = [
                torch.relu(_distance(u, a, p) - _distance(u, a, k) + margin)
                for p in positives
                for k in negatives
            ]
        triplets += terms
        losses.append(sum(terms, _zero(embeddings)))
    if reduction == "mean":
        return _nonzero_mean(triplets, embeddings)
    return _reduce(losses, n, reduction, embeddings)


def multi_similarity_oracle(
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    reduction: str = "mean",
) -> Tensor:
    """Wang et al. 2019, eq. 9 (without mining, as PML): 1/a log(1 + sum_P e^{-a(s - l)}) +
    1/b log(1 + sum_N e^{b(s - l)}) per sample, averaged over the samples; 0 for a batch
    without positive or negative pairs."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    has_both = any(_pairs_of(y, i)[0] for i in range(n)) and any(
        _pairs_of(y, i)[1] for i in range(n)
    )
    losses = []
    for i in range(n):
        positives, negatives = _pairs_of(y, i)
        loss = _zero(embeddings)
        if has_both and positives:
            logits = [-alpha * (u[i].dot(u[p]) - base) for p in positives]
            loss = loss + torch.logsumexp(torch.stack([*logits, _zero(embeddings)]), 0) / alpha
        if has_both and negatives:
            logits = [beta * (u[i].dot(u[k]) - base) for k in negatives]
            loss = loss + torch.logsumexp(torch.stack([*logits, _zero(embeddings)]), 0) / beta
        losses.append(loss)
    return _reduce(losses, n, reduction, embeddings)


def circle_oracle(
    embeddings: Tensor,
    labels: Tensor,
    *,
    m: float = 0.4,
    gamma: float = 80.0,
    reduction: str = "mean",
) -> Tensor:
    """Sun et al. 2020, eq. 6 (pair-wise labels), the weights alpha detached (the paper's
    constants for the gradient): softplus(lse_N gamma a_n (s_n - m) + lse_P -gamma a_p (s_p -
    1 + m)), averaged over the anchors with a positive and a negative."""
    u, y, n = unit(embeddings), _groups(labels), len(labels)
    losses, count = [], 0
    for i in range(n):
        positives, negatives = _pairs_of(y, i)
        if not positives or not negatives:
            losses.append(_zero(embeddings))
            continue
        pulled, pushed = [], []
        for p in positives:
            s = u[i].dot(u[p])
            pulled.append(-gamma * torch.relu(1 + m - s.detach()) * (s - (1 - m)))
        for k in negatives:
            s = u[i].dot(u[k])
            pushed.append(gamma * torch.relu(s.detach() + m) * (s - m))
        inner = torch.logsumexp(torch.stack(pulled), 0) + torch.logsumexp(torch.stack(pushed), 0)
        losses.append(torch.logaddexp(inner, torch.zeros_like(inner)))  # log(1 + e^inner)
        count += 1
    return _reduce(losses, count, reduction, embeddings)


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


def _pml_triplet(
    embeddings: Tensor, labels: Tensor, margin: float = 0.05, mining: str = "all", **kwargs
) -> Tensor:
    """PML's ``TripletMarginLoss`` (all triplets), with its ``BatchHardMiner`` for
    ``mining="hard"``."""
    losses = anchor("pytorch_metric_learning.losses")
    loss = losses.TripletMarginLoss(margin=margin)
    if mining == "all":
        return loss(embeddings, labels)
    miners = anchor("pytorch_metric_learning.miners")
    return loss(embeddings, labels, miners.BatchHardMiner()(embeddings, labels))


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


KINK = 1e-3  # how far every hinge's argument (and every distance) stays from its kink


def _gaps(x: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(distances, positive, negative) ``(N, N)`` of a drawn batch, for the kink filters."""
    u = unit(x)
    distance = (u[:, None, :] - u[None, :, :]).norm(dim=-1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    return distance, same & ~eye, ~same


def _clear(values: Tensor) -> bool:
    return bool((values.abs() > KINK).all())


@st.composite
def _contrastive_cases(draw: st.DrawFn) -> Case:
    x, y = draw(batches())
    pos_margin, neg_margin = draw(st.floats(0.0, 0.5)), draw(st.floats(0.5, 1.8))
    distance, positive, negative = _gaps(x, y)
    assume(_clear(distance[positive | negative]))
    assume(_clear(distance[positive] - pos_margin) and _clear(distance[negative] - neg_margin))
    return Case((x, y), {"pos_margin": pos_margin, "neg_margin": neg_margin})


@st.composite
def _triplet_cases(draw: st.DrawFn, mining: str = "all") -> Case:
    x, y = draw(batches())
    margin = draw(st.floats(0.0, 0.5))
    distance, positive, negative = _gaps(x, y)
    assume(_clear(distance[positive | negative]))
    # every triplet's hinge off its kink (d_ap - d_an + m, for all (a, p, n))
    violation = distance[:, :, None] - distance[:, None, :] + margin
    valid = positive[:, :, None] & negative[:, None, :]
    assume(_clear(violation[valid]))
    if mining == "hard":  # and no tie for an anchor's farthest positive or nearest negative
        for mask in (positive, negative):
            for row, keep in zip(distance, mask, strict=True):
                values = row[keep].sort().values
                assume(_clear(values[1:] - values[:-1]))
    return Case((x, y), {"margin": margin, "mining": mining})


@st.composite
def _multi_similarity_cases(draw: st.DrawFn) -> Case:
    x, y = draw(batches())
    kwargs = {
        "alpha": draw(st.floats(0.5, 4.0)),
        "beta": draw(st.floats(1.0, 60.0)),
        "base": draw(st.floats(0.0, 1.0)),
    }
    return Case((x, y), kwargs)


@st.composite
def _circle_cases(draw: st.DrawFn) -> Case:
    x, y = draw(batches())
    m, gamma = draw(st.floats(0.1, 0.5)), draw(st.floats(1.0, 80.0))
    u = unit(x)
    similarity = u @ u.T
    negative = _gaps(x, y)[2]
    # the detached weights' hinges off their kinks (s_n = -m; s_p = 1 + m is out of reach)
    assume(_clear(similarity[negative] + m))
    return Case((x, y), {"m": m, "gamma": gamma})


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
        limit=cosface_limit,
    ),
    _spec(
        "contrastive_loss",
        funcloss.contrastive_loss,
        fnn.ContrastiveLoss,
        _contrastive_cases,
        contrastive_oracle,
        _pml("ContrastiveLoss"),
        "pytorch-metric-learning",
    ),
    _spec(
        "batch_triplet_loss",
        funcloss.batch_triplet_loss,
        fnn.BatchTripletLoss,
        _triplet_cases,
        batch_triplet_oracle,
        _pml_triplet,
        "pytorch-metric-learning",
    ),
    _spec(
        "batch_triplet_loss-hard",
        funcloss.batch_triplet_loss,
        fnn.BatchTripletLoss,
        lambda: _triplet_cases("hard"),
        batch_triplet_oracle,
        _pml_triplet,
        "pytorch-metric-learning",
    ),
    _spec(
        "multi_similarity_loss",
        funcloss.multi_similarity_loss,
        fnn.MultiSimilarityLoss,
        _multi_similarity_cases,
        multi_similarity_oracle,
        _pml("MultiSimilarityLoss"),
        "pytorch-metric-learning",
    ),
    _spec(
        "circle_loss",
        funcloss.circle_loss,
        fnn.CircleLoss,
        _circle_cases,
        circle_oracle,
        _pml("CircleLoss"),
        "pytorch-metric-learning",
        gradient_of_value=False,  # the weights alpha are detached (the paper's constants)
    ),
]
