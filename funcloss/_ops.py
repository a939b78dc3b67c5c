"""Small numeric building blocks shared by the loss families."""

from __future__ import annotations

import torch
from torch import Tensor


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` without overflow and without softplus' linear cut-off at x > 20.

    ``logaddexp`` has exact first and second derivatives everywhere (``F.logsigmoid`` warns
    under ``vmap(hessian)`` on torch 2.13).
    """
    return torch.logaddexp(x, torch.zeros_like(x))


def times(coefficient: Tensor, value: Tensor) -> Tensor:
    """``coefficient * value``, and 0 where ``coefficient`` is 0 even for an infinite ``value``:
    the limit of a term that is absent (``0 * inf`` would be nan).

    Its derivatives are the product's: ``value`` (clamped to the dtype's range where the
    coefficient is 0) with respect to ``coefficient``, and ``coefficient`` with respect to
    ``value``. A NaN ``value`` stays NaN.
    """
    big = torch.finfo(value.dtype).max
    return coefficient * torch.where(coefficient == 0, value.clamp(-big, big), value)
