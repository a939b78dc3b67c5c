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
