"""Specs for the ranking losses (rax's semantics): ranking_softmax_loss, pairwise_logistic_loss,
pairwise_hinge_loss, listmle_loss, approx_ndcg_loss.

Masks. The registry's mask tests draw a ``where`` of the unreduced loss's shape (one flag per
list): for these losses that is a *list mask*, one of the two kinds their ``where`` takes, so
the registry tests check list masking (``where_arg_mask`` maps a list flag onto the list's
items). The other kind, rax's *item mask* of the scores' shape, is tested in
tests/test_ranking.py (against these oracles with the masked items removed, with inf/NaN in
masked items, under vmap and compile) and against rax in tests/test_anchors_ranking.py.

Oracles: naive float64 formulas written from the papers (per-list Python loops over the
Plackett–Luce order and the approximate ranks); they take the same arguments as the losses and
an optional item mask ``items`` (bool, the scores' shape) that removes items by slicing.

Relevance is graded (0..3, ties common); only the softmax loss is differentiated with respect
to it (the others depend on its order only, or, ApproxNDCG's ideal DCG, sort it). Hinge draws
keep every pair's score difference off the margin (the kink).
"""

from __future__ import annotations

import math

import torch
from hypothesis import assume
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats, shapes

from .registry import Case, LossSpec

KINK_MARGIN = 0.02


@st.composite
def _lists(draw: st.DrawFn, weighted: bool = False, offset: float = 0.0) -> Case:
    """Scores ``(N, L)`` or ``(A, B, L)``; relevance 0..3; maybe a weight broadcastable per
    list (the shape without the batch dimension, sizes of 1 allowed), so slicing the batch
    keeps calls valid. ``offset`` lifts the relevance off 0 (where finite differences in the
    relevance would step below 0, which the loss refuses)."""
    shape = draw(shapes(2, 3, max_side=5))
    x = draw(floats(shape, min_value=-4.0, max_value=4.0))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    top = draw(st.sampled_from([1, 3]))
    y = torch.randint(0, top + 1, shape, generator=generator).to(torch.float64) + offset
    kwargs = {}
    if weighted and draw(st.booleans()):
        weight_shape = tuple(s if draw(st.booleans()) else 1 for s in shape[1:])
        kwargs["weight"] = draw(floats(weight_shape, min_value=0.2, max_value=2.0))
    return Case((x, y), kwargs)


@st.composite
def _hinge_cases(draw: st.DrawFn) -> Case:
    case = draw(_lists(weighted=True))
    margin = draw(st.sampled_from([1.0, 0.5, 2.0]))
    x = case.args[0]
    difference = x.unsqueeze(-1) - x.unsqueeze(-2)
    assume(bool(((difference - margin).abs() > KINK_MARGIN).all()))
    return Case(case.args, dict(case.kwargs, margin=margin))


@st.composite
def _approx_ndcg_cases(draw: st.DrawFn) -> Case:
    case = draw(_lists(weighted=True))
    temperature = draw(st.sampled_from([1.0, 0.5, 2.0]))
    return Case(case.args, dict(case.kwargs, temperature=temperature))


# -- oracles ---------------------------------------------------------------------------------


def _per_list(
    input: Tensor, target: Tensor, weight: Tensor | None, items: Tensor | None, one
) -> Tensor:
    """``one(s, y, w)`` on each list's valid items (1-D tensors), stacked to
    ``input.shape[:-1]``; 0 for a list with no valid item."""
    # the house dtype: the promoted dtype of the floating arguments
    input = input.to(torch.promote_types(input.dtype, target.dtype))
    weight = torch.ones_like(input) if weight is None else weight.expand(input.shape)
    items = torch.ones_like(input, dtype=torch.bool) if items is None else items
    items = items.expand(input.shape)
    flat = [t.reshape(-1, input.shape[-1]) for t in (input, target, weight, items)]
    values = []
    for s, y, w, keep in zip(*flat, strict=True):
        index = keep.nonzero().squeeze(-1)
        if index.numel() == 0:
            values.append(s[:0].sum())
        else:
            values.append(one(s[index], y[index], w[index]))
    return torch.stack(values).reshape(input.shape[:-1]) if values else input.sum(-1)


def _lists_mean(loss: Tensor, reduction: str, input: Tensor, items: Tensor | None) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if items is None:
        return loss.mean()
    included = items.expand(input.shape).any(-1)
    count = included.sum()
    return loss.sum() / count if count > 0 else loss.sum() * 0


def softmax_oracle(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: str = "mean",
    items: Tensor | None = None,
) -> Tensor:
    """-sum_i w_i y_i log(exp(s_i) / sum_j exp(s_j)) (rax softmax_loss, written out)."""

    def one(s: Tensor, y: Tensor, w: Tensor) -> Tensor:
        log_p = s - torch.log(torch.exp(s).sum())
        return -(w * y * log_p).sum()

    loss = _per_list(input, target, weight, items, one)
    return _lists_mean(loss, reduction, input, items)


def _pair_oracle(pair_loss):
    def oracle(
        input: Tensor,
        target: Tensor,
        *args: float,
        weight: Tensor | None = None,
        reduction: str = "mean",
        items: Tensor | None = None,
        **config: float,
    ) -> Tensor:
        """sum over pairs y_i > y_j of w_i * pair_loss(s_i - s_j); mean over all pairs."""

        def one(s: Tensor, y: Tensor, w: Tensor) -> Tensor:
            total = s[:0].sum()
            for i in range(s.numel()):
                for j in range(s.numel()):
                    if y[i] > y[j]:
                        total = total + w[i] * pair_loss(s[i] - s[j], *args, **config)
            return total

        loss = _per_list(input, target, weight, items, one)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        if loss.numel() == 0:
            return loss.sum() / 0  # no list: torch's mean over nothing
        count = pair_count(target, items).sum()
        return loss.sum() / count if count > 0 else loss.sum() * 0

    return oracle


def pair_count(target: Tensor, items: Tensor | None = None) -> Tensor:
    """The number of valid pairs (y_i > y_j, both items valid) of each list."""
    valid = target.unsqueeze(-1) > target.unsqueeze(-2)
    if items is not None:
        items = items.expand(target.shape)
        valid = valid & items.unsqueeze(-1) & items.unsqueeze(-2)
    return valid.sum((-2, -1))


def _logistic(d: Tensor) -> Tensor:
    return torch.log(1 + torch.exp(-d))


def _hinge(d: Tensor, margin: float = 1.0) -> Tensor:
    return torch.relu(margin - d)  # the documented gradient 0 at the kink (clamp's is 1)


logistic_oracle = _pair_oracle(_logistic)
hinge_oracle = _pair_oracle(_hinge)


def relevance_order(y: Tensor) -> list[int]:
    """Highest relevance first; ties in list order (rax's stable sort)."""
    return sorted(range(y.numel()), key=lambda i: (-float(y[i]), i))


def listmle_oracle(
    input: Tensor, target: Tensor, *, reduction: str = "mean", items: Tensor | None = None
) -> Tensor:
    """-sum_k log(exp(s_pi(k)) / sum_{m >= k} exp(s_pi(m))), pi the relevance order."""

    def one(s: Tensor, y: Tensor, w: Tensor) -> Tensor:
        order = relevance_order(y)
        total = s[:0].sum()
        for k in range(len(order)):
            tail = torch.stack([s[order[m]] for m in range(k, len(order))])
            total = total + torch.log(torch.exp(tail).sum()) - s[order[k]]
        return total

    loss = _per_list(input, target, None, items, one)
    return _lists_mean(loss, reduction, input, items)


def approx_ndcg_oracle(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 1.0,
    weight: Tensor | None = None,
    reduction: str = "mean",
    items: Tensor | None = None,
) -> Tensor:
    """-DCG(approximate ranks) / IDCG, gains w (2^y - 1), IDCG := 1 where it is 0."""

    def one(s: Tensor, y: Tensor, w: Tensor) -> Tensor:
        n = s.numel()
        gains = w * (2**y - 1)
        dcg = s[:0].sum()
        for i in range(n):
            others = [torch.sigmoid((s[j] - s[i]) / temperature) for j in range(n) if j != i]
            rank = 1 + torch.stack([s[:0].sum(), *others]).sum()
            dcg = dcg + gains[i] / torch.log2(1 + rank)
        ideal = sum(
            float(g) / math.log2(2 + k) for k, g in enumerate(sorted(gains.tolist(), reverse=True))
        )
        return -dcg / (ideal if ideal != 0 else 1.0)

    loss = _per_list(input, target, weight, items, one)
    return _lists_mean(loss, reduction, input, items)


# -- masks -----------------------------------------------------------------------------------


def _list_arg_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
    """A list flag (the unreduced shape) marks every item of its list."""
    arg = case.args[position]
    return where.unsqueeze(-1).expand(arg.shape)


def _pairs_mean(case: Case, loss: Tensor, where: Tensor) -> Tensor:
    """The total over the included lists' pairs, divided by their number of pairs."""
    count = torch.where(where, pair_count(case.args[1]), 0).sum()
    total = torch.where(where, loss, 0.0).sum()
    return total / count if count > 0 else total * 0


def _lists_masked_mean(case: Case, loss: Tensor, where: Tensor) -> Tensor:
    count = where.sum()
    total = torch.where(where, loss, 0.0).sum()
    return total / count if count > 0 else total * 0


SPECS = [
    LossSpec(
        "ranking_softmax_loss",
        funcloss.ranking_softmax_loss,
        fnn.RankingSoftmaxLoss,
        lambda: _lists(weighted=True, offset=0.5),
        softmax_oracle,
        wrt=(0, 1),
        torch_module=None,
        masked_mean=_lists_masked_mean,
        where_arg_mask=_list_arg_mask,
        anchor_name=None,
    ),
    LossSpec(
        "pairwise_logistic_loss",
        funcloss.pairwise_logistic_loss,
        fnn.PairwiseLogisticLoss,
        lambda: _lists(weighted=True),
        logistic_oracle,
        torch_module=None,
        masked_mean=_pairs_mean,
        where_arg_mask=_list_arg_mask,
        anchor_name=None,
    ),
    LossSpec(
        "pairwise_hinge_loss",
        funcloss.pairwise_hinge_loss,
        fnn.PairwiseHingeLoss,
        _hinge_cases,
        hinge_oracle,
        torch_module=None,
        masked_mean=_pairs_mean,
        where_arg_mask=_list_arg_mask,
        anchor_name=None,
    ),
    LossSpec(
        "listmle_loss",
        funcloss.listmle_loss,
        fnn.ListMLELoss,
        _lists,
        listmle_oracle,
        torch_module=None,
        masked_mean=_lists_masked_mean,
        where_arg_mask=_list_arg_mask,
        anchor_name=None,
    ),
    LossSpec(
        "approx_ndcg_loss",
        funcloss.approx_ndcg_loss,
        fnn.ApproxNDCGLoss,
        _approx_ndcg_cases,
        approx_ndcg_oracle,
        torch_module=None,
        masked_mean=_lists_masked_mean,
        where_arg_mask=_list_arg_mask,
        anchor_name=None,
    ),
]
