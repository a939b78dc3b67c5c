"""Reductions and masks: the one place where a loss is reduced and where ``where=`` applies.

Every loss reduces through :func:`reduce`. A mask (``where``, a bool tensor broadcastable to the
unreduced loss, ``True`` for the elements that count) acts twice: the loss first replaces its
masked *inputs* by a harmless value with :func:`masked` (so an ``inf`` or ``NaN`` there reaches
neither the value nor any gradient: ``torch.where`` sends exactly zero gradient to the branch it
does not select, where a product would send ``0 * inf = nan``), and :func:`reduce` then zeroes
the masked elements of the loss and divides ``"mean"`` by what is included.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ._checks import Reduction

# The reductions of a divergence (kl_div, js_div, generalized_kl_div): torch's kl_div's.
KLReduction = Literal["none", "batchmean", "mean", "sum"]
KL_REDUCTIONS = ("none", "batchmean", "mean", "sum")


def masked(where: Tensor | None, tensor: Tensor, fill: float = 0.0) -> Tensor:
    """``tensor`` with the entries that ``where`` masks (``False``) replaced by ``fill``.

    Call it on a loss's inputs before any arithmetic, with a ``fill`` at which the loss and its
    derivatives are finite. The result has the broadcast shape of ``where`` and ``tensor``.
    """
    if where is None:
        return tensor
    return torch.where(where, tensor, fill)


def reduce(
    loss: Tensor,
    reduction: Reduction,
    weight: Tensor | None = None,
    *,
    where: Tensor | None = None,
    mean_weight: Tensor | None = None,
) -> Tensor:
    """Apply an optional elementwise ``weight`` and mask, then reduce.

    Args:
        loss: the unreduced loss.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: an elementwise factor of the loss (broadcastable to it), or ``None``.
        where: the mask, broadcastable to ``loss`` (checked by the loss with
            :func:`~funcloss._checks.check_where`), or ``None``. Masked elements are 0 in
            ``"none"`` and add nothing to ``"sum"`` and ``"mean"``.
        mean_weight: what ``"mean"`` divides by the (included) sum of, elementwise; ``None`` for
            the number of (included) elements. torch's class-weighted mean (``nll_loss``) passes
            each element's class weight, zero where ignored; its elementwise-weighted mean
            (``l1_loss(weight=)``) the weight.

    Without ``where`` this is torch's reduction exactly, including its ``0 / 0 = nan`` for a
    weighted mean with every element ignored. With ``where``, a mean over nothing (everything
    masked, or every included weight 0) is 0, with zero gradient.
    """
    if weight is not None:
        loss = loss * weight
    if where is not None:
        loss = torch.where(where, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if where is None:
        if mean_weight is None:
            return loss.mean()
        return loss.sum() / mean_weight.sum().to(loss.dtype)
    total = loss.sum()
    if mean_weight is None:
        denominator = where.expand(loss.shape).sum()
    else:
        denominator = torch.where(where, mean_weight, 0.0).sum()
    denominator = denominator.to(loss.dtype)
    return total / torch.where(denominator == 0, 1.0, denominator)


def reduce_batchmean(
    loss: Tensor, reduction: str, input: Tensor, *, where: Tensor | None = None
) -> Tensor:
    """:func:`reduce`, and torch's kl_div's ``"batchmean"``: the sum divided by
    ``input.size(0)`` (the sum for a 0-dim ``input``), the divergence per sample.

    Under a mask, ``"batchmean"`` is the mean over the included elements times the elements per
    row (``loss.numel() / input.size(0)``). The factors are Python ints, so a forward-mode
    tangent keeps the loss's dtype (a 0-dim tensor times a Python float has a float64 tangent
    under ``jacfwd`` on torch 2.13).
    """
    if reduction != "batchmean":
        return reduce(loss, reduction, where=where)  # type: ignore[arg-type]
    if input.dim() == 0:
        return reduce(loss, "sum", where=where)
    if where is not None:
        return reduce(loss, "mean", where=where) * loss.numel() / input.shape[0]
    return loss.sum() / input.shape[0]
