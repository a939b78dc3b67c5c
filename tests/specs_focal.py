"""Specs for the focal family: sigmoid_focal_loss, focal_loss, poly1_cross_entropy,
asymmetric_loss.

Oracles are naive float64 formulas written from the papers (Lin et al. 2017; Leng et al. 2022;
Ridnik et al. 2021), with probabilities from ``sigmoid``/``softmax`` and powers taken directly;
the anchors (torchvision, kornia, MONAI, timm, optax) are compared in test_anchors_focal.py.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import funcloss
import funcloss.nn as fnn
from funcloss.testing import logits, probabilities

from .anchors import load_file
from .registry import Case, LossSpec


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# -- sigmoid_focal_loss ----------------------------------------------------------------------


def naive_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="none"):
    """Lin et al. 2017, eq. (5) with alpha_t, for soft labels as torchvision: float64."""
    p = torch.sigmoid(x.double())
    t = t.double()
    ce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction).to(torch.promote_types(x.dtype, t.dtype))


def torchvision_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="none", *, where=None):
    """torchvision.ops.sigmoid_focal_loss (loaded by path); its alpha must be in [0, 1] or -1."""
    module = load_file("torchvision", "ops/focal_loss.py")
    assert where is None
    return module.sigmoid_focal_loss(x, t, alpha=-1 if alpha < 0 else alpha, gamma=gamma,
                                     reduction=reduction)


@st.composite
def _sigmoid_focal_cases(draw: st.DrawFn) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    x = draw(logits(shape))
    if draw(st.booleans()):
        t = (draw(probabilities(shape)) > 0.5).double()  # hard labels
    else:
        t = draw(probabilities(shape))
    kwargs = {
        "alpha": draw(st.sampled_from([0.25, -1.0, 0.0, 0.8])),
        "gamma": draw(st.sampled_from([2.0, 0.0, 0.5, 1.5])),
    }
    return Case((x, t), kwargs)


SPECS = [
    LossSpec(
        "sigmoid_focal_loss",
        funcloss.sigmoid_focal_loss,
        fnn.SigmoidFocalLoss,
        _sigmoid_focal_cases,
        naive_sigmoid_focal,
        per_sample_dims=(0, 0),
        anchor=torchvision_sigmoid_focal,
        anchor_name="torchvision",
    ),
]
