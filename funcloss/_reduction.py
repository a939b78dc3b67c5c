"""Reductions: ``"none" | "mean" | "sum"``, plain or as a weighted mean."""

from __future__ import annotations

from torch import Tensor

from ._checks import Reduction


def reduce(loss: Tensor, reduction: Reduction, weight: Tensor | None = None) -> Tensor:
    """Apply an optional elementwise ``weight``, then reduce.

    ``"mean"`` divides by the number of elements (as torch does for elementwise losses, whether or
    not a weight is given).
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def weighted_mean(loss: Tensor, weights: Tensor | None, reduction: Reduction) -> Tensor:
    """Reduce an already weighted ``loss``; ``"mean"`` divides by ``weights.sum()``.

    This is torch's mean for class-weighted losses (``nll_loss``, ``cross_entropy``): ``weights``
    holds each element's class weight, zero where the element is ignored (``None``: all ones).
    With every element ignored the mean is ``0 / 0 = nan``, as in torch.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weights is None:
        return loss.mean()
    return loss.sum() / weights.sum().to(loss.dtype)
