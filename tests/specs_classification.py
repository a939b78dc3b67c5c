"""Specs for cross_entropy, nll_loss, binary_cross_entropy(_with_logits)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import funcloss
import funcloss.nn as fnn
from funcloss._cross_entropy import _cross_entropy
from funcloss.testing import class_targets, floats, logits, probabilities

from .registry import Case, LossSpec, count_mean, weighted_count_mean

IGNORE = -100


def fused_cross_entropy(
    input,
    target,
    weight=None,
    *,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    where=None,
):
    """cross_entropy forced onto its custom-backward path (small inputs take plain autograd)."""
    return _cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing, True, where
    )


def class_weighted_mean(case: Case, loss: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """torch's class-weighted mean under a mask: the included rows' loss over their w_y
    (rows with ignore_index count 0); probability targets: the included rows' count."""
    target = case.args[1]
    if target.is_floating_point():
        return count_mean(loss, where)
    kept = target != case.kwargs.get("ignore_index", IGNORE)
    weight = case.kwargs.get("weight")
    if weight is None:
        return weighted_count_mean(loss, where, kept.to(loss.dtype))
    return weighted_count_mean(
        loss, where, torch.where(kept, weight[target.masked_fill(~kept, 0)], 0)
    )


@st.composite
def _class_options(draw: st.DrawFn, num_classes: int, indices: bool = True) -> dict:
    kwargs: dict = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats((num_classes,), min_value=0.1, max_value=2.0))
    if indices and draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([IGNORE, 0]))
    return kwargs


@st.composite
def _index_cases(draw: st.DrawFn, k_dims: int = 0, smoothing: bool = True) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    extra = tuple(draw(st.integers(1, 3)) for _ in range(k_dims))
    kwargs = draw(_class_options(c))
    ignore = kwargs.get("ignore_index")
    x = draw(logits((n, c, *extra)))
    y = draw(class_targets((n, *extra), c, ignore_index=ignore))
    if smoothing and draw(st.booleans()):
        kwargs["label_smoothing"] = draw(st.floats(0.0, 1.0))
    return Case((x, y), kwargs)


@st.composite
def _unbatched_cases(draw: st.DrawFn) -> Case:
    c = draw(st.integers(2, 5))
    kwargs = draw(_class_options(c, indices=False))
    return Case((draw(logits((c,))), draw(class_targets((), c))), kwargs)


@st.composite
def _probability_cases(draw: st.DrawFn) -> Case:
    n, c = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    kwargs = draw(_class_options(c, indices=False))
    if draw(st.booleans()):
        kwargs["label_smoothing"] = draw(st.floats(0.0, 1.0))
    return Case((draw(logits((n, c))), draw(probabilities((n, c), dim=1))), kwargs)


@st.composite
def _nll_cases(draw: st.DrawFn, k_dims: int = 0) -> Case:
    case = draw(_index_cases(k_dims, smoothing=False))
    return Case((torch.log_softmax(case.args[0], 1), case.args[1]), case.kwargs)


@st.composite
def _bce_cases(draw: st.DrawFn) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    # Keep probabilities off 0 and 1, where torch's gradient is clamped (pinned in
    # test_classification.py).
    x = draw(probabilities(shape, min_value=0.02, max_value=0.98))
    # targets off 0 and 1 too: gradcheck steps the target by 1e-6, and a target outside [0, 1]
    # raises (as in torch)
    y = draw(probabilities(shape, min_value=0.01, max_value=0.99))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats(shape[1:], min_value=0.1, max_value=2.0))
    return Case((x, y), kwargs)


@st.composite
def _bce_logits_cases(draw: st.DrawFn) -> Case:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    x, y = draw(logits(shape)), draw(probabilities(shape))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats(shape, min_value=0.1, max_value=2.0))
    if draw(st.booleans()):
        kwargs["pos_weight"] = draw(floats(shape[1:], min_value=0.1, max_value=3.0))
    return Case((x, y), kwargs)


SPECS = [
    LossSpec(
        "cross_entropy",
        funcloss.cross_entropy,
        fnn.CrossEntropyLoss,
        _index_cases,
        F.cross_entropy,
        torch_module=torch.nn.CrossEntropyLoss,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-kdim",
        funcloss.cross_entropy,
        fnn.CrossEntropyLoss,
        lambda: _index_cases(k_dims=2),
        F.cross_entropy,
        per_sample_dims=None,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-unbatched",
        funcloss.cross_entropy,
        fnn.CrossEntropyLoss,
        _unbatched_cases,
        F.cross_entropy,
        per_sample_dims=None,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-fused",
        fused_cross_entropy,
        fnn.CrossEntropyLoss,
        _index_cases,
        F.cross_entropy,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-fused-kdim",
        fused_cross_entropy,
        fnn.CrossEntropyLoss,
        lambda: _index_cases(k_dims=2),
        F.cross_entropy,
        per_sample_dims=None,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-fused-unbatched",
        fused_cross_entropy,
        fnn.CrossEntropyLoss,
        _unbatched_cases,
        F.cross_entropy,
        per_sample_dims=None,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "cross_entropy-probabilities",
        funcloss.cross_entropy,
        fnn.CrossEntropyLoss,
        _probability_cases,
        F.cross_entropy,
        wrt=(0, 1),
    ),
    LossSpec(
        "nll_loss",
        funcloss.nll_loss,
        fnn.NLLLoss,
        _nll_cases,
        F.nll_loss,
        torch_module=torch.nn.NLLLoss,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "nll_loss-kdim",
        funcloss.nll_loss,
        fnn.NLLLoss,
        lambda: _nll_cases(k_dims=1),
        F.nll_loss,
        per_sample_dims=None,
        masked_mean=class_weighted_mean,
    ),
    LossSpec(
        "binary_cross_entropy",
        funcloss.binary_cross_entropy,
        fnn.BCELoss,
        _bce_cases,
        F.binary_cross_entropy,
        wrt=(0, 1),
        torch_module=torch.nn.BCELoss,
    ),
    LossSpec(
        "binary_cross_entropy_with_logits",
        funcloss.binary_cross_entropy_with_logits,
        fnn.BCEWithLogitsLoss,
        _bce_logits_cases,
        F.binary_cross_entropy_with_logits,
        wrt=(0, 1),
        per_sample_dims=None,
        torch_module=torch.nn.BCEWithLogitsLoss,
    ),
]
