"""Specs for linear_cross_entropy (batched, with a bias, unbatched, class probabilities,
K-dimensional outputs).

Small chunk sizes are drawn on purpose, so that the matrix runs the chunked code with several
chunks (and a ragged last one) under every transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor, nn

import funcloss
import funcloss.nn as fnn
from funcloss.testing import class_targets, floats

from .registry import Case, LossSpec, count_mean, default_arg_mask, weighted_count_mean

IGNORE = -100


def naive_linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """The oracle: torch's F.linear_cross_entropy (reference path) where it has the options,
    else the textbook composition: softcap, F.cross_entropy, plus z_loss * r * lse**2 (r = w_y
    for class indices, 1 for probabilities)."""
    options = {"linear_bias": linear_bias, "weight": weight, "label_smoothing": label_smoothing}
    if not target.is_floating_point():
        # An ignored row must not reach the result (issue 14 item 2): an input row whose every
        # output is ignored is dropped (zeroed) first, so a NaN or inf there is not propagated
        # (torch's own linear_cross_entropy propagates it, as its cross_entropy does).
        kept = target != (IGNORE if ignore_index is None else ignore_index)
        output_dims = tuple(range(input.dim() - 1, kept.dim()))  # K-dim outputs of a row
        used = kept.any(dim=output_dims) if output_dims else kept
        input = torch.where(used.unsqueeze(-1), input, 0)
    if z_loss == 0 and softcap is None:
        return F.linear_cross_entropy(
            input, linear_weight, target, reduction=reduction, ignore_index=ignore_index, **options
        )
    num_classes, *out_features, features = linear_weight.shape
    logits = F.linear(
        input,
        linear_weight.reshape(-1, features),
        None if linear_bias is None else linear_bias.reshape(-1),
    )
    logits = logits.reshape(*input.shape[:-1], num_classes, *out_features)
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    lse = torch.logsumexp(logits, 1 if input.dim() == 2 else 0)
    if target.is_floating_point():
        loss = F.cross_entropy(
            logits, target, weight=weight, label_smoothing=label_smoothing, reduction="none"
        )
        loss = loss + z_loss * lse**2
        return {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
    ignore = IGNORE if ignore_index is None else ignore_index
    loss = F.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore,
        label_smoothing=label_smoothing,
        reduction="none",
    )
    kept = target != ignore
    row_weight = kept.to(input.dtype)
    if weight is not None:
        row_weight = weight[target.masked_fill(~kept, 0)] * row_weight
    loss = loss + z_loss * row_weight * lse**2
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / row_weight.sum()


def _masked_mean(case: Case, loss: Tensor, where: Tensor) -> Tensor:
    """The oracle's "mean" under a mask: the included rows' loss over their class weight w_y
    (0 for ignore_index; -100 when it is None), or their count (probabilities)."""
    target = case.args[2]
    if target.is_floating_point():
        return count_mean(loss, where)
    ignore = case.kwargs.get("ignore_index")
    kept = target != (IGNORE if ignore is None else ignore)
    weight = case.kwargs.get("weight")
    weights = kept.to(loss.dtype)
    if weight is not None:
        weights = torch.where(kept, weight[target.masked_fill(~kept, 0)], 0)
    return weighted_count_mean(loss, where, weights)


def _arg_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
    """An input row is read only by masked rows when all its outputs are masked (K-dimensional
    outputs: all of its positions), so it is kept where any is included; the weights and the
    bias are read by every row."""
    arg = case.args[position]
    if position == 0:
        if where.dim() == 0:
            return where.expand(arg.shape)
        return where.reshape(where.shape[0], -1).any(1).unsqueeze(1).expand(arg.shape)
    if position == 2:
        return default_arg_mask(where, arg)
    return None


@st.composite
def _options(draw: st.DrawFn, num_classes: int, indices: bool = True) -> dict:
    kwargs: dict = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats((num_classes,), min_value=0.1, max_value=2.0))
    if indices and draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([IGNORE, 0]))
    if draw(st.booleans()):
        kwargs["label_smoothing"] = draw(st.floats(0.0, 1.0))
    if draw(st.booleans()):
        kwargs["z_loss"] = draw(st.floats(0.0, 0.5))
    if draw(st.booleans()):
        kwargs["softcap"] = draw(st.floats(0.5, 10.0))
    kwargs["chunk_size"] = draw(st.sampled_from([None, 1, 2, 3]))
    return kwargs


@st.composite
def _cases(draw: st.DrawFn, bias: bool = False) -> Case:
    n, h, v = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 5))
    kwargs = draw(_options(v))
    x = draw(floats((n, h), min_value=-2.0, max_value=2.0))
    w = draw(floats((v, h), min_value=-2.0, max_value=2.0))
    y = draw(class_targets((n,), v, ignore_index=kwargs.get("ignore_index")))
    if bias:
        return Case((x, w, y, draw(floats((v,), min_value=-2.0, max_value=2.0))), kwargs)
    return Case((x, w, y), kwargs)


@st.composite
def _k_dimensional_cases(draw: st.DrawFn) -> Case:
    """``linear_weight (C, d1, .., dK, H)``, a bias ``(C, d1, .., dK)``, class indices or
    probabilities."""
    n, h, c = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 4))
    out = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    probabilities = draw(st.booleans())
    kwargs = draw(_options(c, indices=not probabilities))
    x = draw(floats((n, h), min_value=-2.0, max_value=2.0))
    w = draw(floats((c, *out, h), min_value=-2.0, max_value=2.0))
    b = draw(floats((c, *out), min_value=-2.0, max_value=2.0))
    if probabilities:
        y = torch.softmax(draw(floats((n, c, *out), min_value=-3.0, max_value=3.0)), 1)
    else:
        y = draw(class_targets((n, *out), c, ignore_index=kwargs.get("ignore_index")))
    return Case((x, w, y, b), kwargs)


@st.composite
def _probability_cases(draw: st.DrawFn) -> Case:
    n, h, c = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(2, 5))
    kwargs = draw(_options(c, indices=False))
    x = draw(floats((n, h), min_value=-2.0, max_value=2.0))
    w = draw(floats((c, h), min_value=-2.0, max_value=2.0))
    y = torch.softmax(draw(floats((n, c), min_value=-3.0, max_value=3.0)), 1)
    return Case((x, w, y), kwargs)


@st.composite
def _unbatched_cases(draw: st.DrawFn) -> Case:
    h, v = draw(st.integers(1, 3)), draw(st.integers(2, 5))
    kwargs = draw(_options(v, indices=False))
    x = draw(floats((h,), min_value=-2.0, max_value=2.0))
    w = draw(floats((v, h), min_value=-2.0, max_value=2.0))
    return Case((x, w, draw(class_targets((), v))), kwargs)


def _with_bias(input: Tensor, linear_weight: Tensor, target: Tensor, bias: Tensor, **kwargs):
    return funcloss.linear_cross_entropy(input, linear_weight, target, linear_bias=bias, **kwargs)


def _oracle_with_bias(input: Tensor, linear_weight: Tensor, target: Tensor, bias: Tensor, **kw):
    return naive_linear_cross_entropy(input, linear_weight, target, linear_bias=bias, **kw)


class FunctionalLinearCrossEntropyLoss(nn.Module):
    """The registry's calling convention (config in the constructor, the function's tensors in
    forward) around torch's class form, ``funcloss.nn.LinearCrossEntropyLoss``: forward builds
    the module for the given weight's shape and calls it with the weight (and bias) as its
    ``linear`` parameters, through ``functional_call``."""

    def __init__(self, **config: object) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, input: Tensor, linear_weight: Tensor, target: Tensor, bias=None, *, where=None
    ) -> Tensor:
        num_classes, *out_features, features = linear_weight.shape
        module = fnn.LinearCrossEntropyLoss(
            features,
            num_classes,
            out_features=tuple(out_features),
            bias=bias is not None,
            dtype=linear_weight.dtype,
            **self.config,
        )
        parameters = {"linear.weight": linear_weight.reshape(-1, features)}
        if bias is not None:
            parameters["linear.bias"] = bias.reshape(-1)
        return torch.func.functional_call(module, parameters, (input, target), {"where": where})


SPECS = [
    LossSpec(
        "linear_cross_entropy",
        funcloss.linear_cross_entropy,
        FunctionalLinearCrossEntropyLoss,
        _cases,
        naive_linear_cross_entropy,
        wrt=(0, 1),
        per_sample_dims=(0, None, 0),
        masked_mean=_masked_mean,
        where_arg_mask=_arg_mask,
    ),
    LossSpec(
        "linear_cross_entropy-bias",
        _with_bias,
        FunctionalLinearCrossEntropyLoss,
        lambda: _cases(bias=True),
        _oracle_with_bias,
        wrt=(0, 1, 3),
        per_sample_dims=(0, None, 0, None),
        masked_mean=_masked_mean,
        where_arg_mask=_arg_mask,
    ),
    LossSpec(
        "linear_cross_entropy-unbatched",
        funcloss.linear_cross_entropy,
        FunctionalLinearCrossEntropyLoss,
        _unbatched_cases,
        naive_linear_cross_entropy,
        wrt=(0, 1),
        per_sample_dims=None,
        masked_mean=_masked_mean,
        where_arg_mask=_arg_mask,
    ),
    LossSpec(
        "linear_cross_entropy-probabilities",
        funcloss.linear_cross_entropy,
        FunctionalLinearCrossEntropyLoss,
        _probability_cases,
        naive_linear_cross_entropy,
        wrt=(0, 1, 2),
        per_sample_dims=(0, None, 0),
        masked_mean=_masked_mean,
        where_arg_mask=_arg_mask,
    ),
    LossSpec(
        "linear_cross_entropy-kdim",
        _with_bias,
        FunctionalLinearCrossEntropyLoss,
        _k_dimensional_cases,
        _oracle_with_bias,
        wrt=(0, 1, 3),
        per_sample_dims=None,
        masked_mean=_masked_mean,
        where_arg_mask=_arg_mask,
    ),
]
