"""Specs for the divergences (funcloss/_divergence.py): js_div and generalized_kl_div.

Oracles are the formulas, written naively in float64 (Lin 1991's JS = KL(P||M)/2 + KL(Q||M)/2
with M = (P + Q)/2; the I-divergence t log(t / mu) - t + mu), reduced as torch's kl_div
reduces. Draws keep every probability and measure positive (at 0 the derivative in it is
-inf, one-sided, and finite differences do not apply); the zero edges are pinned in
test_divergence.py. No anchor runs in torch (optax's is JAX: test_anchors_divergence.py).
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import floats, logits, probabilities, shapes

from .registry import Case, LossSpec

DIVERGENCE_REDUCTIONS = ("none", "batchmean", "mean", "sum")


def reduce_like_kl_div(loss: Tensor, reduction: str, input: Tensor) -> Tensor:
    """torch's kl_div reductions: "batchmean" is the sum over ``input.size(0)``."""
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.dim() > 0 else loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def js_oracle(
    input: Tensor, target: Tensor, log_input: bool = False, reduction: str = "batchmean"
) -> Tensor:
    """Lin 1991: JS(P || Q) = KL(P || M) / 2 + KL(Q || M) / 2, M = (P + Q) / 2, elementwise."""
    q = torch.exp(input) if log_input else input
    p = target
    m = (p + q) / 2
    loss = 0.5 * p * torch.log(p / m) + 0.5 * q * torch.log(q / m)
    return reduce_like_kl_div(loss, reduction, input)


def generalized_kl_oracle(
    input: Tensor, target: Tensor, log_input: bool = True, reduction: str = "batchmean"
) -> Tensor:
    """The I-divergence t log(t / mu) - t + mu, mu = exp(input) for log-inputs."""
    mu = torch.exp(input) if log_input else input
    loss = target * torch.log(target / mu) - target + mu
    return reduce_like_kl_div(loss, reduction, input)


def _distribution(draw: st.DrawFn, shape: tuple[int, ...], log: bool) -> Tensor:
    if log:
        return torch.log_softmax(draw(logits(shape)), -1)
    return draw(probabilities(shape, dim=len(shape) - 1))


@st.composite
def js_cases(draw: st.DrawFn) -> Case:
    shape = draw(shapes(1, 3, max_side=4))
    log_input = draw(st.booleans())
    q = _distribution(draw, shape, log_input)
    p = draw(probabilities(shape, dim=len(shape) - 1))
    return Case((q, p), {"log_input": log_input})


@st.composite
def js_broadcast_cases(draw: st.DrawFn) -> Case:
    """One target distribution ``(1, C)`` for every row of ``(N, C)`` predictions."""
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    log_input = draw(st.booleans())
    q = _distribution(draw, (n, c), log_input)
    p = draw(probabilities((1, c), dim=1))
    return Case((q, p), {"log_input": log_input})


@st.composite
def generalized_kl_cases(draw: st.DrawFn) -> Case:
    """Unnormalised measures: log-rates in [-3, 2] (rates e^x without log_input), targets in
    [0.05, 5]."""
    shape = draw(shapes(1, 3, max_side=4))
    log_input = draw(st.booleans())
    x = draw(floats(shape, min_value=-3.0, max_value=2.0))
    t = draw(floats(shape, min_value=0.05, max_value=5.0))
    return Case((x if log_input else torch.exp(x), t), {"log_input": log_input})


SPECS = [
    LossSpec(
        "js_div",
        funcloss.js_div,
        fnn.JSDivLoss,
        js_cases,
        js_oracle,
        wrt=(0, 1),
        reductions=DIVERGENCE_REDUCTIONS,
        anchor_name=None,
    ),
    LossSpec(
        "js_div-broadcast",
        funcloss.js_div,
        fnn.JSDivLoss,
        js_broadcast_cases,
        js_oracle,
        wrt=(0, 1),
        per_sample_dims=(0, None),
        reductions=DIVERGENCE_REDUCTIONS,
        anchor_name=None,
    ),
    LossSpec(
        "generalized_kl_div",
        funcloss.generalized_kl_div,
        fnn.GeneralizedKLDivLoss,
        generalized_kl_cases,
        generalized_kl_oracle,
        wrt=(0, 1),
        reductions=DIVERGENCE_REDUCTIONS,
        anchor_name=None,
    ),
]
