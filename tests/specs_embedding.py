"""Specs for the embedding and margin losses (funcloss/_embedding.py, funcloss/_margin.py).

Every hinge here has a kink; draws keep each hinge argument (and, for the triplet distances,
each norm's non-smooth points and each swap tie) at least ``OFF_KINK`` away from it. The
subgradients at the kinks are pinned in test_embedding.py.
"""

from __future__ import annotations

import decimal
import math

import torch
import torch.nn.functional as F
from hypothesis import assume
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import class_targets, floats, logits, probabilities

from .registry import Case, LossSpec

OFF_KINK = 1e-3
NORM_ORDERS = (1.0, 1.5, 2.0, 3.0, float("inf"))


def _off(values: Tensor, where: Tensor | None = None) -> None:
    """Reject the draw if any of ``values`` (where ``where``) is within OFF_KINK of 0."""
    close = values.abs() < OFF_KINK
    if where is not None:
        close = close & where
    assume(not bool(close.any()))


@st.composite
def _sign_targets(draw: st.DrawFn, shape: tuple[int, ...], integer: bool = True) -> Tensor:
    """``±1`` labels, float64 or (sometimes, when ``integer``) int64."""
    n = 1
    for side in shape:
        n *= side
    values = draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n))
    dtype = torch.int64 if integer and draw(st.booleans()) else torch.float64
    return torch.tensor(values, dtype=dtype).reshape(shape)


def _batch_shape(draw: st.DrawFn) -> tuple[int, ...]:
    """``(N,)`` or ``(N, D)``."""
    n = draw(st.integers(1, 4))
    return (n,) if draw(st.booleans()) else (n, draw(st.integers(1, 3)))


def _arg_mask_rows(features: int = 0):
    """A ``where_arg_mask`` for arguments broadcast against the loss (with ``features`` trailing
    dimensions the loss reduces over): an entry is marked when only masked elements read it,
    so a shared ``(1, D)`` row or an ``(N, 1)`` score is marked only if every pair using it is
    masked."""

    def arg_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
        arg = case.args[position]
        if not (isinstance(arg, Tensor) and arg.is_floating_point()):
            return None
        read = where.reshape(where.shape + (1,) * features)
        shape = torch.broadcast_shapes(read.shape, arg.shape)
        read = read.expand(shape)
        padded = (1,) * (len(shape) - arg.dim()) + tuple(arg.shape)
        dims = [i for i, (a, b) in enumerate(zip(padded, shape, strict=True)) if a == 1 != b]
        if dims:
            read = read.any(dim=dims, keepdim=True)
        return read.reshape(arg.shape)

    return arg_mask


# -- pairs -----------------------------------------------------------------------------------


@st.composite
def _margin_ranking_cases(draw: st.DrawFn) -> Case:
    shape = _batch_shape(draw)
    x1, x2 = draw(floats(shape)), draw(floats(shape))
    y = draw(_sign_targets(shape, integer=False))
    margin = draw(st.floats(-1.0, 2.0))
    _off(margin - y * (x1 - x2))
    return Case((x1, x2, y), {"margin": margin})


@st.composite
def _margin_ranking_pairwise_cases(draw: st.DrawFn) -> Case:
    """Every pair of ``(N, 1)`` against ``(1, M)`` scores, a target ``(N, M)`` or ``(1, M)``:
    broadcast as torch does."""
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x1, x2 = draw(floats((n, 1))), draw(floats((1, m)))
    y = draw(_sign_targets((draw(st.sampled_from([1, n])), m), integer=False))
    margin = draw(st.floats(-1.0, 2.0))
    _off(margin - y * (x1 - x2))
    return Case((x1, x2, y), {"margin": margin})


@st.composite
def _hinge_embedding_cases(draw: st.DrawFn) -> Case:
    shape = _batch_shape(draw)
    x, y = draw(floats(shape)), draw(_sign_targets(shape))
    margin = draw(st.floats(0.0, 3.0))
    _off(margin - x, where=y == -1)
    return Case((x, y), {"margin": margin})


@st.composite
def _cosine_cases(draw: st.DrawFn, unbatched: bool = False) -> Case:
    n, d = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    shape = (d,) if unbatched else (n, d)
    x1, x2 = draw(floats(shape)), draw(floats(shape))
    y = draw(_sign_targets(shape[:-1]))
    # Keep the norms off 0, where torch's epsilon (1e-12) makes the cosine ill-conditioned.
    assume(bool((x1.norm(dim=-1) > 0.1).all() and (x2.norm(dim=-1) > 0.1).all()))
    margin = draw(st.floats(-0.5, 0.5))
    _off(F.cosine_similarity(x1, x2, dim=-1) - margin, where=y == -1)
    return Case((x1, x2, y), {"margin": margin})


@st.composite
def _cosine_shared_cases(draw: st.DrawFn) -> Case:
    """One ``(1, D)`` embedding against ``(N, D)`` (either side), broadcast as torch does."""
    case = draw(_cosine_cases())
    x1, x2, y = case.args
    if draw(st.booleans()):
        x1 = x1[:1]
    else:
        x2 = x2[:1]
    _off(F.cosine_similarity(x1, x2, dim=-1) - case.kwargs["margin"], where=y == -1)
    return Case((x1, x2, y), case.kwargs)


# -- triplets --------------------------------------------------------------------------------


def _off_norm_kinks(difference: Tensor, p: float) -> None:
    """Keep a p-norm of ``difference`` (along the last dim) off its non-smooth points."""
    if p != 2.0 and p != float("inf"):
        # |.|^p at 0: a kink (p = 1), an infinite second derivative (1 < p < 2), or a kinked
        # second derivative (p = 3: 6|x|, where gradgradcheck's central differences are off by
        # about step / norm^2), so every component stays off 0
        _off(difference)
    elif p == float("inf"):
        top = difference.abs().topk(min(2, difference.shape[-1]), dim=-1).values
        if top.shape[-1] == 2:
            _off(top[..., 0] - top[..., 1])  # a tie for the largest component
    _off(torch.linalg.vector_norm(difference, ord=p, dim=-1))  # the norm at 0


def _off_triplet_kinks(distances: list[Tensor], margin: float, swap: bool) -> None:
    """``distances``: d(a, p), d(a, n), d(p, n). Off the hinge's kink and the swap's ties."""
    positive, negative, swapped = distances
    nearest = torch.minimum(negative, swapped) if swap else negative
    _off(margin + positive - nearest)
    if swap:
        _off(negative - swapped)


@st.composite
def _triplet_tensors(draw: st.DrawFn, unbatched: bool) -> tuple[Tensor, Tensor, Tensor]:
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape = (d,) if unbatched else (n, d)
    return draw(floats(shape)), draw(floats(shape)), draw(floats(shape))


@st.composite
def _triplet_cases(draw: st.DrawFn, unbatched: bool = False) -> Case:
    anchor, positive, negative = draw(_triplet_tensors(unbatched))
    p = draw(st.sampled_from(NORM_ORDERS))
    eps = draw(st.sampled_from([1e-6, 0.0, 0.1]))
    margin, swap = draw(st.floats(0.1, 2.0)), draw(st.booleans())
    pairs = [(anchor, positive), (anchor, negative), (positive, negative)]
    for x1, x2 in pairs:
        _off_norm_kinks(x1 - x2 + eps, p)
    distances = [torch.pairwise_distance(x1, x2, p, eps) for x1, x2 in pairs]
    _off_triplet_kinks(distances, margin, swap)
    kwargs = {"margin": margin, "p": p, "eps": eps, "swap": swap}
    return Case((anchor, positive, negative), kwargs)


@st.composite
def _triplet_shared_anchor_cases(draw: st.DrawFn) -> Case:
    """One ``(1, D)`` anchor against ``(N, D)`` positives and negatives (torch broadcasts)."""
    case = draw(_triplet_cases())
    anchor, positive, negative = case.args
    anchor = anchor[:1]
    kwargs = case.kwargs
    p, eps = kwargs["p"], kwargs["eps"]
    pairs = [(anchor, positive), (anchor, negative), (positive, negative)]
    for x1, x2 in pairs:
        _off_norm_kinks(x1 - x2 + eps, p)
    distances = [torch.pairwise_distance(x1, x2, p, eps) for x1, x2 in pairs]
    _off_triplet_kinks(distances, kwargs["margin"], kwargs["swap"])
    return Case((anchor, positive, negative), kwargs)


def triplet_limit(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """F.triplet_margin_loss's float64 limit as the anchor's infinite coordinates grow, each
    read as its sign times one M, M -> inf (positive and negative finite).

    The stand-ins cannot give it: d(a, p) - d(a, n) tends to a finite gap while both distances
    grow with M, so at 1e150 the gap is rounded away (the oracle answers about ``margin``) and
    at 1e300 the squares overflow (inf - inf). Expanding d = ||x||_p with x_k = s_k M + c_k on
    the m infinite coordinates K: d = m^(1/p) M + m^(1/p - 1) sum_K s_k c_k + (sum over the
    other coordinates of |x_j|^p) / (p m^(1 - 1/p) M^(p - 1)) + o(1); with c = eps - p for
    d(a, p) and eps - n for d(a, n), the gap tends to m^(1/p - 1) sum_K s_k (n_k - p_k) for
    p > 1, the same plus the other coordinates' |x_j| - |y_j| for p = 1 (there d is exactly
    linear in M), and max_K s_k (eps - p_k) - max_K s_k (eps - n_k) for p = inf. With ``swap``
    d(p, n) stays finite, so the loss grows without bound. A row without infinite coordinates
    is the oracle's. The gradient is this limit's (each term is the limit of the gradient)."""
    if p < 1 or bool(~positive.isfinite().all() | ~negative.isfinite().all()):
        raise NotImplementedError("the limit of an infinite anchor coordinate only, p >= 1")
    anchor, positive, negative = torch.broadcast_tensors(anchor, positive, negative)
    shape = anchor.shape[:-1]
    rows = [r.reshape(-1, anchor.shape[-1]) for r in (anchor, positive, negative)]
    losses = []
    for a, q, n in zip(*rows, strict=True):
        infinite = [k for k in range(a.shape[0]) if bool(a[k].detach().isinf())]
        if not infinite:
            losses.append(exact_triplet_row(a, q, n, margin, p, eps, swap))
            continue
        if swap:  # unbounded: no finite limit (the test compares none); 0 a keeps a graph
            losses.append(torch.where(a.isinf(), 0.0, a).sum() * 0 + float("inf"))
            continue
        signs = {k: float(a[k].detach().sign()) for k in infinite}
        if p == float("inf"):
            gap = max(signs[k] * (eps - q[k]) for k in infinite) - max(
                signs[k] * (eps - n[k]) for k in infinite
            )
        else:
            m = len(infinite)
            gap = sum(signs[k] * (n[k] - q[k]) for k in infinite) * m ** (1 / p - 1)
            if p == 1:
                for j in range(a.shape[0]):
                    if j not in signs:
                        gap = gap + (a[j] - q[j] + eps).abs() - (a[j] - n[j] + eps).abs()
        # 0 a: the limit's derivative in a is 0 for p > 1, and autograd wants a graph
        gap = gap + torch.where(a.isinf(), 0.0, a).sum() * 0
        losses.append((margin + gap).clamp_min(0))
    loss = torch.stack(losses).reshape(shape) if losses else anchor.new_zeros(shape)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# Beyond this size of a coordinate float64's rounding of the distances (2**-53 of them) may
# reach the gap d(a, p) - d(a, n) that the loss keeps: the value comes from decimal arithmetic.
_FLOAT64_RESOLVES = 1e6


def exact_triplet_row(
    a: Tensor, q: Tensor, n: Tensor, margin: float, p: float, eps: float, swap: bool
) -> Tensor:
    """One triplet's loss: F.triplet_margin_loss in float64 (its graph gives the gradient),
    whose value, where a coordinate is huge, is replaced by the same formula in 120-digit
    decimal arithmetic (float64 rounds the gap of distances near 1e38 to 1e22)."""
    loss = F.triplet_margin_loss(a, q, n, margin, p, eps, swap, reduction="none")
    rows = [t.detach().double() for t in (a, q, n)]
    if a.numel() == 0 or max(float(t.abs().max()) for t in rows) <= _FLOAT64_RESOLVES:
        return loss
    with decimal.localcontext() as context:
        context.prec = 120
        order = decimal.Decimal(p)

        def distance(u: Tensor, v: Tensor) -> decimal.Decimal:
            parts = [
                abs(decimal.Decimal(x) - decimal.Decimal(y) + decimal.Decimal(eps))
                for x, y in zip(u.tolist(), v.tolist(), strict=True)
            ]
            if p == math.inf:
                return max(parts)
            return sum(part**order for part in parts) ** (1 / order)

        negative = distance(rows[0], rows[2])
        if swap:
            negative = min(negative, distance(rows[1], rows[2]))
        exact = max(decimal.Decimal(0), decimal.Decimal(margin) + distance(*rows[:2]) - negative)
    return loss + (float(exact) - loss.detach())


def triplet_distance_limit(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    distance_function=None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """:func:`triplet_limit` of the default distance (p = 2, eps = 1e-6); another distance's
    limit is the stand-ins' to decide."""
    if distance_function is not None:
        raise NotImplementedError("the stand-ins decide a distance_function's limit")
    return triplet_limit(anchor, positive, negative, margin, 2.0, 1e-6, swap, reduction)


# Module-level distances, so that a module holding one pickles.
def cosine_distance(x1: Tensor, x2: Tensor) -> Tensor:
    return 1 - F.cosine_similarity(x1, x2, dim=-1)


def squared_euclidean(x1: Tensor, x2: Tensor) -> Tensor:
    return ((x1 - x2) ** 2).sum(-1)


@st.composite
def _triplet_distance_cases(draw: st.DrawFn) -> Case:
    anchor, positive, negative = draw(_triplet_tensors(unbatched=False))
    distance = draw(st.sampled_from([None, cosine_distance, squared_euclidean]))
    margin, swap = draw(st.floats(0.1, 2.0)), draw(st.booleans())
    pairs = [(anchor, positive), (anchor, negative), (positive, negative)]
    for x1, x2 in pairs:
        if distance is None:
            _off_norm_kinks(x1 - x2 + 1e-6, 2.0)
        elif distance is cosine_distance:
            assume(bool((x1.norm(dim=-1) > 0.1).all() and (x2.norm(dim=-1) > 0.1).all()))
    reference = torch.pairwise_distance if distance is None else distance
    _off_triplet_kinks([reference(x1, x2) for x1, x2 in pairs], margin, swap)
    kwargs = {"distance_function": distance, "margin": margin, "swap": swap}
    return Case((anchor, positive, negative), kwargs)


# -- class scores ----------------------------------------------------------------------------


@st.composite
def _soft_margin_cases(draw: st.DrawFn) -> Case:
    shape = _batch_shape(draw)
    return Case((draw(logits(shape)), draw(_sign_targets(shape))))


@st.composite
def _multilabel_soft_margin_cases(draw: st.DrawFn) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    x, y = draw(logits((n, c))), draw(probabilities((n, c)))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats((c,), min_value=0.1, max_value=2.0))
    return Case((x, y), kwargs)


@st.composite
def _label_lists(draw: st.DrawFn, num_classes: int) -> list[int]:
    """One row of a multilabel_margin target: labels, then -1, then anything in [-1, C)."""
    count = draw(st.integers(0, num_classes))
    labels = draw(st.permutations(range(num_classes)))[:count]
    if count and draw(st.booleans()):
        labels[-1] = labels[0]  # a label listed twice counts twice
    tail = draw(
        st.lists(
            st.integers(-1, num_classes - 1),
            min_size=num_classes - count,
            max_size=num_classes - count,
        )
    )
    if tail:
        tail[0] = -1
    return labels + tail


def _listed(row: list[int]) -> list[int]:
    return row[: row.index(-1)] if -1 in row else row


@st.composite
def _multilabel_margin_cases(draw: st.DrawFn, unbatched: bool = False) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    x = draw(logits((c,) if unbatched else (n, c)))
    rows = [draw(_label_lists(c)) for _ in range(1 if unbatched else n)]
    y = torch.tensor(rows[0] if unbatched else rows, dtype=torch.int64)
    for scores, row in zip(x.reshape(-1, c), rows, strict=True):
        labels = _listed(row)
        others = [i for i in range(c) if i not in labels]
        for j in labels:
            _off(1 - scores[j] + scores[others])
    return Case((x, y))


@st.composite
def _multi_margin_cases(draw: st.DrawFn, unbatched: bool = False) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    shape = (c,) if unbatched else (n, c)
    x, y = draw(logits(shape)), draw(class_targets(shape[:-1], c))
    kwargs: dict = {"p": draw(st.sampled_from([1, 2])), "margin": draw(st.floats(-0.5, 2.0))}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats((c,), min_value=0.1, max_value=2.0))
    index = y.unsqueeze(-1)
    others = torch.arange(c) != index
    _off(kwargs["margin"] - x.gather(-1, index) + x, where=others)
    return Case((x, y), kwargs)


SPECS = [
    LossSpec(
        "margin_ranking_loss",
        funcloss.margin_ranking_loss,
        fnn.MarginRankingLoss,
        _margin_ranking_cases,
        F.margin_ranking_loss,
        wrt=(0, 1, 2),
        per_sample_dims=(0, 0, 0),
        torch_module=torch.nn.MarginRankingLoss,
    ),
    LossSpec(
        "margin_ranking_loss-pairwise",
        funcloss.margin_ranking_loss,
        fnn.MarginRankingLoss,
        _margin_ranking_pairwise_cases,
        F.margin_ranking_loss,
        wrt=(0, 1, 2),
        per_sample_dims=None,  # a slice of (N, 1) has fewer dims than (1, M): torch refuses
        torch_module=torch.nn.MarginRankingLoss,
        where_arg_mask=_arg_mask_rows(),
    ),
    LossSpec(
        "hinge_embedding_loss",
        funcloss.hinge_embedding_loss,
        fnn.HingeEmbeddingLoss,
        _hinge_embedding_cases,
        F.hinge_embedding_loss,
        torch_module=torch.nn.HingeEmbeddingLoss,
    ),
    LossSpec(
        "soft_margin_loss",
        funcloss.soft_margin_loss,
        fnn.SoftMarginLoss,
        _soft_margin_cases,
        F.soft_margin_loss,
        torch_module=torch.nn.SoftMarginLoss,
    ),
    LossSpec(
        "multilabel_soft_margin_loss",
        funcloss.multilabel_soft_margin_loss,
        fnn.MultiLabelSoftMarginLoss,
        _multilabel_soft_margin_cases,
        F.multilabel_soft_margin_loss,
        wrt=(0, 1),
        torch_module=torch.nn.MultiLabelSoftMarginLoss,
    ),
    LossSpec(
        "multilabel_margin_loss",
        funcloss.multilabel_margin_loss,
        fnn.MultiLabelMarginLoss,
        _multilabel_margin_cases,
        F.multilabel_margin_loss,
        oracle_second_order=False,
        torch_module=torch.nn.MultiLabelMarginLoss,
    ),
    LossSpec(
        "multilabel_margin_loss-unbatched",
        funcloss.multilabel_margin_loss,
        fnn.MultiLabelMarginLoss,
        lambda: _multilabel_margin_cases(unbatched=True),
        F.multilabel_margin_loss,
        per_sample_dims=None,
        oracle_second_order=False,
    ),
    LossSpec(
        "multi_margin_loss",
        funcloss.multi_margin_loss,
        fnn.MultiMarginLoss,
        _multi_margin_cases,
        F.multi_margin_loss,
        oracle_second_order=False,
        torch_module=torch.nn.MultiMarginLoss,
    ),
    LossSpec(
        "multi_margin_loss-unbatched",
        funcloss.multi_margin_loss,
        fnn.MultiMarginLoss,
        lambda: _multi_margin_cases(unbatched=True),
        F.multi_margin_loss,
        per_sample_dims=None,
        oracle_second_order=False,
    ),
    LossSpec(
        "cosine_embedding_loss",
        funcloss.cosine_embedding_loss,
        fnn.CosineEmbeddingLoss,
        _cosine_cases,
        F.cosine_embedding_loss,
        wrt=(0, 1),
        per_sample_dims=(0, 0, 0),
        torch_module=torch.nn.CosineEmbeddingLoss,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "cosine_embedding_loss-shared",
        funcloss.cosine_embedding_loss,
        fnn.CosineEmbeddingLoss,
        _cosine_shared_cases,
        F.cosine_embedding_loss,
        wrt=(0, 1),
        per_sample_dims=None,  # which side is shared varies by draw
        torch_module=torch.nn.CosineEmbeddingLoss,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "cosine_embedding_loss-unbatched",
        funcloss.cosine_embedding_loss,
        fnn.CosineEmbeddingLoss,
        lambda: _cosine_cases(unbatched=True),
        F.cosine_embedding_loss,
        wrt=(0, 1),
        per_sample_dims=None,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "triplet_margin_loss",
        funcloss.triplet_margin_loss,
        fnn.TripletMarginLoss,
        _triplet_cases,
        F.triplet_margin_loss,
        limit=triplet_limit,
        wrt=(0, 1, 2),
        per_sample_dims=(0, 0, 0),
        torch_module=torch.nn.TripletMarginLoss,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "triplet_margin_loss-shared-anchor",
        funcloss.triplet_margin_loss,
        fnn.TripletMarginLoss,
        _triplet_shared_anchor_cases,
        F.triplet_margin_loss,
        limit=triplet_limit,
        wrt=(0, 1, 2),
        per_sample_dims=None,  # a (1, D) anchor against (D,) slices: torch refuses
        torch_module=torch.nn.TripletMarginLoss,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "triplet_margin_loss-unbatched",
        funcloss.triplet_margin_loss,
        fnn.TripletMarginLoss,
        lambda: _triplet_cases(unbatched=True),
        F.triplet_margin_loss,
        limit=triplet_limit,
        wrt=(0, 1, 2),
        per_sample_dims=None,
        where_arg_mask=_arg_mask_rows(1),
    ),
    LossSpec(
        "triplet_margin_with_distance_loss",
        funcloss.triplet_margin_with_distance_loss,
        fnn.TripletMarginWithDistanceLoss,
        _triplet_distance_cases,
        F.triplet_margin_with_distance_loss,
        limit=triplet_distance_limit,
        wrt=(0, 1, 2),
        per_sample_dims=(0, 0, 0),
        torch_module=torch.nn.TripletMarginWithDistanceLoss,
        where_arg_mask=_arg_mask_rows(1),
    ),
]
