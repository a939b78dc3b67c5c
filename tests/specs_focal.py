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
from .specs_classification import (
    _index_cases,
    _probability_cases,
    _unbatched_cases,
    class_weighted_mean,
)


def _result_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The promoted floating dtype; under CPU autocast float32 for anything narrower than
    float64, as torch's own losses (autocast's fp32 list) and funcloss's."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        if t.is_floating_point():
            dtype = torch.promote_types(dtype, t.dtype)
    if torch.is_autocast_enabled("cpu") and dtype != torch.float64:
        return torch.float32
    return dtype


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# -- sigmoid_focal_loss ----------------------------------------------------------------------


def naive_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="none"):
    """Lin et al. 2017, eq. (5) with alpha_t, for soft labels as torchvision: float64."""
    dtype = _result_dtype(x, t)
    p = torch.sigmoid(x.double())
    t = t.double()
    ce = -(t * torch.log(p) + (1 - t) * torch.log(1 - p))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction).to(dtype)


def torchvision_sigmoid_focal(x, t, alpha=0.25, gamma=2.0, reduction="none", *, where=None):
    """torchvision.ops.sigmoid_focal_loss (loaded by path); its alpha must be in [0, 1] or -1."""
    module = load_file("torchvision", "ops/focal_loss.py")
    assert where is None
    return module.sigmoid_focal_loss(
        x, t, alpha=-1 if alpha < 0 else alpha, gamma=gamma, reduction=reduction
    )


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


# -- focal_loss, poly1_cross_entropy ---------------------------------------------------------


def _naive_softmax_loss(
    term, x, y, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0
):
    """sum_c a_c term(p_c) per row in float64, a the cross-entropy's target weights: the
    (smoothed) one-hot class or the (smoothed) probabilities, times the class weight."""
    dtype = _result_dtype(x, y)
    unbatched = x.dim() == 1
    x = x.double().unsqueeze(0) if unbatched else x.double()
    classes = x.shape[1]
    p = torch.softmax(x, 1)
    w = torch.ones(classes, dtype=torch.float64) if weight is None else weight.double()
    shape = (1, classes) + (1,) * (x.dim() - 2)
    if y.is_floating_point():
        q = y.double().unsqueeze(0) if unbatched else y.double()
        kept = torch.ones(q.shape[:1] + q.shape[2:], dtype=torch.bool)
    else:
        y = y.unsqueeze(0) if unbatched else y
        kept = y != ignore_index
        q = torch.nn.functional.one_hot(torch.where(kept, y, 0), classes).movedim(-1, 1).double()
    q = (1 - label_smoothing) * q + label_smoothing / classes
    loss = (w.reshape(shape) * q * term(p)).sum(1)
    loss = torch.where(kept, loss, 0.0)
    if reduction == "mean":
        if y.is_floating_point():
            value = loss.mean()
        else:
            value = loss.sum() / torch.where(kept, w[torch.where(kept, y, 0)], 0.0).sum()
    elif reduction == "sum":
        value = loss.sum()
    else:
        value = loss.squeeze(0) if unbatched else loss
    return value.to(dtype)


def naive_focal(x, y, weight=None, *, gamma=2.0, **kwargs):
    """Lin et al. 2017, the softmax form: -sum_c a_c (1 - p_c)^gamma log p_c."""
    return _naive_softmax_loss(lambda p: -((1 - p) ** gamma) * torch.log(p), x, y, weight, **kwargs)


def naive_poly1(x, y, weight=None, *, epsilon=1.0, **kwargs):
    """Leng et al. 2022, eq. (3) with the cross-entropy's target weights:
    sum_c a_c (-log p_c + epsilon (1 - p_c))."""
    return _naive_softmax_loss(lambda p: -torch.log(p) + epsilon * (1 - p), x, y, weight, **kwargs)


def _with(strategy, name: str, values: list[float]):
    @st.composite
    def cases(draw: st.DrawFn) -> Case:
        case = draw(strategy())
        return Case(case.args, dict(case.kwargs, **{name: draw(st.sampled_from(values))}))

    return cases


_GAMMAS = [2.0, 0.0, 0.5, 1.0]
_EPSILONS = [1.0, 0.0, 2.0, -1.0]


def _softmax_specs(name, fn, module, oracle, option, values) -> list[LossSpec]:
    return [
        LossSpec(
            name,
            fn,
            module,
            _with(_index_cases, option, values),
            oracle,
            masked_mean=class_weighted_mean,
            anchor_name=None,
        ),
        LossSpec(
            f"{name}-kdim",
            fn,
            module,
            _with(lambda: _index_cases(k_dims=2), option, values),
            oracle,
            per_sample_dims=None,
            masked_mean=class_weighted_mean,
            anchor_name=None,
        ),
        LossSpec(
            f"{name}-unbatched",
            fn,
            module,
            _with(_unbatched_cases, option, values),
            oracle,
            per_sample_dims=None,
            masked_mean=class_weighted_mean,
            anchor_name=None,
        ),
        LossSpec(
            f"{name}-probabilities",
            fn,
            module,
            _with(_probability_cases, option, values),
            oracle,
            wrt=(0, 1),
            anchor_name=None,
        ),
    ]


SPECS += _softmax_specs(
    "focal_loss", funcloss.focal_loss, fnn.FocalLoss, naive_focal, "gamma", _GAMMAS
)
SPECS += _softmax_specs(
    "poly1_cross_entropy",
    funcloss.poly1_cross_entropy,
    fnn.Poly1CrossEntropyLoss,
    naive_poly1,
    "epsilon",
    _EPSILONS,
)


# -- asymmetric_loss -------------------------------------------------------------------------


def naive_asymmetric(x, y, *, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, reduction="mean"):
    """Ridnik et al. 2021, eqs. (1)-(5): float64, probabilities from sigmoid."""
    dtype = _result_dtype(x, y)
    p = torch.sigmoid(x.double())
    y = y.double()
    shifted = (p - clip).clamp_min(0)
    positive = -((1 - p) ** gamma_pos) * torch.log(p)
    negative = -(shifted**gamma_neg) * torch.log(1 - shifted)
    return _reduce(y * positive + (1 - y) * negative, reduction).to(dtype)


def timm_asymmetric(x, y, *, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, reduction="mean", where=None):
    """timm's AsymmetricLossMultiLabel (by path): its "none" is elementwise, its "mean" over
    every element (it computes in float32, with log(clamp(p, 1e-8)))."""
    module = load_file("timm", "loss/asymmetric_loss.py")
    assert where is None
    loss = module.AsymmetricLossMultiLabel(
        gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, reduction=reduction
    )
    return loss(x, y).to(x.dtype)


@st.composite
def _asymmetric_cases(draw: st.DrawFn) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    x = draw(logits(shape))
    if draw(st.booleans()):
        t = (draw(probabilities(shape)) > 0.5).double()
    else:
        t = draw(probabilities(shape))
    gamma_pos, gamma_neg, clip = draw(
        st.sampled_from(
            [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.0, 0.0, 0.0), (2.0, 3.0, 0.0), (0.5, 2.0, 0.2)]
        )
    )
    if clip > 0:
        # keep p off the margin p = clip, where p_m = max(p - clip, 0) has its kink
        p = torch.sigmoid(x)
        x = torch.where(
            (p - clip).abs() < 0.02, torch.logit(torch.tensor(clip + 0.05, dtype=x.dtype)), x
        )
    return Case((x, t), {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "clip": clip})


SPECS.append(
    LossSpec(
        "asymmetric_loss",
        funcloss.asymmetric_loss,
        fnn.AsymmetricLoss,
        _asymmetric_cases,
        naive_asymmetric,
        anchor=timm_asymmetric,
        anchor_name="timm",
    )
)
