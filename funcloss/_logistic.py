"""Binary cross-entropy losses: binary_cross_entropy and binary_cross_entropy_with_logits."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    check_broadcastable_to,
    check_floating,
    check_reduction,
    check_same_shape,
    check_tensor,
    check_values_in,
    check_where,
    checks_config,
    eager_pair,
    in_place_safe,
    plain_eager,
    promoted_dtype,
    value_reads_allowed,
)
from ._function import SlopeRule, SlopeStep, custom_backward
from ._modes import follows_autocast
from ._ops import (
    FLOAT_CHUNK,
    chunk_total,
    float32_gradient,
    float_chunks,
    logistic_step_terms,
    logistic_terms,
    sigmoid_slope,
    softplus,
    times,
)
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

# torch clamps BCE's logs at -100 so that a probability of exactly 0 or 1 gives a finite loss.
_BCE_LOG_FLOOR = -100.0
# torch's BCE gradient divides by max(x (1 - x), 1e-12), finite at x = 0 and x = 1.
_BCE_GRAD_EPS = 1e-12
# What masked entries become before any arithmetic: a probability of 1/2 (the loss and all its
# derivatives are finite there, away from the clamps at 0 and 1) and a logit of 0. The mask is
# checked and applied in one `if where is not None` block: nothing of it runs without one.
_PROBABILITY_FILL = 0.5
_LOGIT_FILL = 0.0


# Config checks, run by the losses and by their modules at construction: `reduction` only (a
# partial: no Python frame of its own on the small-call path).
_BCE_CONFIG = partial(check_reduction, "binary_cross_entropy")
_BCE_LOGITS_CONFIG = partial(check_reduction, "binary_cross_entropy_with_logits")


# -- the eager training step -------------------------------------------------------------------
#
# The compositions below are what every transform differentiates. A plain eager call with a
# scalar reduction (the training step: no mask or weight) takes a shorter road: one Function of
# a handful of ops, whose backward scales a slope kept from the forward in place (at N=64, C=10
# each op costs about what torch's whole fused loss does).


def _fast(input: object, target: object, where: object, weight: object, reduction: str) -> bool:
    """A plain eager CPU call, no mask or weight, ``reduction`` "mean" or "sum", on plain tensors
    of one shape and one float32/float64/bf16 dtype whose target takes no gradient: the eager step
    may run, and every argument check but the value checks holds already (the caller checks the
    config first). The house checks cost more than the loss at 64x10: :func:`eager_pair` tests
    the tensors and the mode."""
    return (
        where is None
        and weight is None
        and reduction in _SCALAR
        and eager_pair(input, target, _FAST_DTYPES)
    )


_SCALAR = ("mean", "sum")
# bf16 is computed in float32: binary_cross_entropy's step at the per-call sizes only, the
# logits step by chunks above them
_HALF_DTYPES = (torch.bfloat16,)
_FAST_DTYPES = (torch.float32, torch.float64, *_HALF_DTYPES)
# Up to this many elements (the per-call regime) the steps compute on whole tensors (fewest ops);
# above it by chunks of ``FLOAT_CHUNK`` entries, whose temporaries stay in cache: the only
# tensor written is the slope (bf16: none), as torch's peak.
_STEP_MAX_NUMEL = 2**16


def _chunked(
    input: Tensor,
    target: Tensor,
    terms: Callable[[Tensor, Tensor], Tensor],
    slope: Callable[[Tensor, Tensor, Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor | None]:
    """The sum of ``terms(x, y)`` over chunks (bf16 in float32), and with ``slope`` (not for
    bf16), the slope written chunk by chunk into one fresh tensor by ``slope(x, y, out)``."""
    dtype = torch.float32 if input.dtype in _HALF_DTYPES else input.dtype
    flat = input.reshape(-1)
    out = None if slope is None else torch.empty_like(flat)
    parts = []
    for x, y, start in float_chunks(flat, target.reshape(-1), dtype):
        parts.append(terms(x, y).sum())
        if out is not None and slope is not None:
            slope(x, y, out[start : start + FLOAT_CHUNK])
    return chunk_total(parts), None if out is None else out.view(input.shape)


def _probability_terms(input: Tensor, target: Tensor) -> Tensor:
    """``b + y (a - b)``, ``a``, ``b`` the floored logs of ``x`` and ``1 - x`` (lerp: exactly
    ``a`` at ``y = 1``, ``b`` at ``y = 0``): minus the BCE terms, in fresh buffers."""
    log_one_minus = torch.log(torch.rsub(input, 1)).clamp_min_(_BCE_LOG_FLOOR)
    return torch.lerp(log_one_minus, torch.log(input).clamp_min_(_BCE_LOG_FLOOR), target)


def _probability_slope(input: Tensor, target: Tensor) -> Tensor:
    """``(x - y) / max(x (1 - x), eps)``, torch's BCE slope, in fresh buffers."""
    return _probability_slope_into(input, target, torch.empty_like(input))


def _probability_slope_into(input: Tensor, target: Tensor, out: Tensor) -> Tensor:
    """:func:`_probability_slope` written into ``out``."""
    scale = torch.rsub(input, 1).mul_(input).clamp_min_(_BCE_GRAD_EPS)
    return torch.sub(input, target, out=out).div_(scale)


def _sigmoid_slope_into(input: Tensor, target: Tensor, out: Tensor) -> Tensor:
    return torch.sigmoid(input, out=out).sub_(target)


class _Fallback(Exception):
    """Raised by an eager step's forward on values the composition must handle (out of range,
    NaN, an infinite logit): the caller reruns the general path, which raises or computes."""


class _BCEStep(SlopeStep):
    """The eager training step of binary_cross_entropy and binary_cross_entropy_with_logits
    (``_fast``; ``config``: the reduction's divisor and whether to keep a slope): the reduced
    loss in a few ops, and the slope ``d loss / d input``, which the backward scales in place
    (one op, :class:`SlopeStep`). The value checks cost one host read, which the forward shares
    with its own finiteness test."""


def _factor(grad: Tensor, config: tuple[int, bool]) -> Tensor:
    return grad if config[0] == 1 else grad / config[0]


def _scale(slope: Tensor, grad: Tensor, config: tuple[int, bool], kept: None) -> Tensor:
    return slope.mul_(_factor(grad, config))


def _probability_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: tuple[int, bool], kept: Any
) -> Tensor:
    if input.dtype in _HALF_DTYPES and torch.is_grad_enabled():  # in float32, rounded once
        grad = _probability_gradient(input.float(), target.float(), grad.float(), config, None)
        return grad.to(input.dtype)
    if input.dtype in _HALF_DTYPES:  # by float32 chunks, rounded once (the large bf16 step)
        return float32_gradient(input, target, _factor(grad.float(), config), _probability_slope)
    factor = _factor(grad, config)
    if torch.is_grad_enabled():  # the general backward's expression, differentiated
        return factor * (input - target) / (input * (1 - input)).clamp_min(_BCE_GRAD_EPS)
    # a second backward: the slope's rounding (gradcheck's reentrancy test)
    scale = ((1 - input) * input).clamp_min(_BCE_GRAD_EPS)
    return (input - target) / scale * factor


def _logits_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: tuple[int, bool], kept: Any
) -> Tensor:
    if input.dtype not in _HALF_DTYPES:
        return (torch.sigmoid(input) - target) * _factor(grad, config)
    # bf16: in float32, rounded once (by chunks, in cache, unless create_graph differentiates it)
    return float32_gradient(input, target, _factor(grad.float(), config), sigmoid_slope)


def _probability_step(
    input: Tensor, target: Tensor, config: tuple[int, bool]
) -> tuple[Tensor, Tensor | None, Any]:
    """``-sum(b + y (a - b))`` over ``divisor``, ``a``, ``b`` the floored logs of ``x`` and
    ``1 - x`` (``_binary_cross_entropy_forward``'s terms), and the slope
    ``(x - y) / max(x (1 - x), eps)``. Without the clamp at 0 the logs of an input outside
    ``[0, 1]`` or NaN are NaN: the one host read tests the value and the target's range."""
    divisor, slope = config
    if input.numel() > _STEP_MAX_NUMEL:  # by chunks; bf16 keeps no slope (rounded once later)
        keep = slope and input.dtype not in _HALF_DTYPES
        total, slope_ = _chunked(
            input, target, _probability_terms, _probability_slope_into if keep else None
        )
        low, high = torch.aminmax(target)
        value = (total if divisor == 1 else total / divisor).neg_()
        checks = torch.stack((value, low.to(value.dtype), high.to(value.dtype))).tolist()
        if not (math.isfinite(checks[0]) and checks[1] >= 0 and checks[2] <= 1):
            raise _Fallback
        return value.to(input.dtype), slope_, None
    if input.dtype in _HALF_DTYPES:  # bf16 per call: the float32 step, rounded once
        value, slope_, _ = _probability_step(input.float(), target.float(), config)
        return value.to(input.dtype), slope_, input.dtype
    one_minus = torch.rsub(input, 1)
    log_one_minus = torch.log(one_minus).clamp_min_(_BCE_LOG_FLOOR)
    # b + y (a - b) in one op (lerp: exactly a at y = 1, b at y = 0)
    terms = torch.lerp(log_one_minus, torch.log(input).clamp_min_(_BCE_LOG_FLOOR), target)
    value = (terms.sum() if divisor == 1 else terms.mean()).neg_()
    low, high = torch.aminmax(target)
    checks = torch.stack((value, low, high)).tolist()  # one host read (tests/test_meta.py)
    if not (math.isfinite(checks[0]) and checks[1] >= 0 and checks[2] <= 1):
        raise _Fallback
    if not slope:
        return value, None, None
    scale = one_minus.mul_(input).clamp_min_(_BCE_GRAD_EPS)
    return value, torch.sub(input, target).div_(scale), None


def _logits_step(
    input: Tensor, target: Tensor, config: tuple[int, bool]
) -> tuple[Tensor, Tensor | None, Any]:
    """``sum((1 - y) softplus(x) + y softplus(-x))`` over ``divisor`` (``logistic_terms``'
    two non-negative terms; ``softplus(x, beta=-1)`` is ``-softplus(-x)`` in one op), and the
    slope ``sigmoid(x) - y``. An infinite logit makes a term ``0 * inf``: the one host read
    finds the value not finite and the composition, which counts such a term 0, reruns."""
    divisor, slope = config
    if input.dtype in _HALF_DTYPES and input.numel() <= _STEP_MAX_NUMEL:
        # bf16 in the per-call regime: the float32 step, its slope kept in float32 and the
        # gradient rounded once by the scale (kept: the dtype to round to)
        value, slope_, _ = _logits_step(input.float(), target.float(), config)
        return value.to(input.dtype), slope_, input.dtype
    if input.numel() > _STEP_MAX_NUMEL:
        # by chunks (in cache); bf16 in float32, rounded once, and no slope (a bf16 one would
        # round the gradient twice, a float32 one take more memory than torch): the backward
        # computes the gradient from the inputs (_logits_gradient)
        keep = slope and input.dtype not in _HALF_DTYPES
        total, slope_ = _chunked(
            input, target, logistic_step_terms, _sigmoid_slope_into if keep else None
        )
        if not math.isfinite(total.item()):
            raise _Fallback
        return (total if divisor == 1 else total / divisor).to(input.dtype), slope_, None
    terms = logistic_step_terms(input, target)
    value = terms.sum() if divisor == 1 else terms.mean()
    del terms  # the slope's buffer may take its place
    if not math.isfinite(value.item()):
        raise _Fallback
    return value, (torch.sigmoid(input).sub_(target) if slope else None), None


def _rounded_scale(slope: Tensor, grad: Tensor, config: tuple[int, bool], kept: Any) -> Tensor:
    """:func:`_scale`; a float32 slope of a bf16 step (``kept``: bf16) takes the float32
    factor and is rounded once, as :func:`_logits_gradient` rounds."""
    if kept is None:
        return slope.mul_(_factor(grad, config))
    return slope.mul_(_factor(grad.float(), config)).to(kept)


_PROBABILITY_RULE = SlopeRule(_probability_step, _rounded_scale, _probability_gradient)
_LOGITS_RULE = SlopeRule(_logits_step, _rounded_scale, _logits_gradient)


def _step(logits: bool, input: Tensor, target: Tensor, reduction: str) -> Tensor | None:
    """The eager step's loss, or ``None`` where the composition must run."""
    try:
        return _BCEStep.run(
            _LOGITS_RULE if logits else _PROBABILITY_RULE,
            input,
            target,
            (
                input.numel() if reduction == "mean" else 1,
                input.requires_grad and torch.is_grad_enabled(),
            ),
        )
    except _Fallback:
        return None


# -- binary cross-entropy --------------------------------------------------------------------


def _safe_log(x: Tensor) -> Tensor:
    """``max(log x, -100)``, with a finite autograd derivative at ``x = 0`` too."""
    positive = x > 0
    return torch.where(
        positive, torch.log(torch.where(positive, x, 1.0)), _BCE_LOG_FLOOR
    ).clamp_min(_BCE_LOG_FLOOR)


def _floored_log(x: Tensor, in_place: bool) -> Tensor:
    """``max(log x, -100)`` (``-100`` for ``x <= 0``); with ``in_place`` (no graph is built:
    the Function's forward, a first-order backward) in three passes over one fresh buffer
    instead of seven ops."""
    if in_place:
        return x.clamp_min(0).log_().clamp_min_(_BCE_LOG_FLOOR)
    return _safe_log(x)


# A custom backward buys exactness here: torch's BCE gradient is finite at x = 0 and x = 1
# (it divides by max(x (1 - x), 1e-12)), where autograd through the clamped logs is not. It
# also buys memory and speed: only the inputs are saved, and a first-order backward works in
# place on its own buffers and skips the target's gradient when the target takes none.
def _binary_cross_entropy_forward(input: Tensor, target: Tensor) -> Tensor:
    if in_place_safe(input, target):
        log_one_minus = _floored_log(1 - input, True)
        return _floored_log(input, True).mul_(target).add_(log_one_minus.mul_(1 - target)).neg_()
    return -(target * _safe_log(input) + (1 - target) * _safe_log(1 - input))


_binary_cross_entropy = custom_backward(_binary_cross_entropy_forward)


@_binary_cross_entropy.backward
def _binary_cross_entropy_backward(
    grad: Tensor, input: Tensor, target: Tensor
) -> tuple[Tensor, Tensor | None]:
    # d/dx = (x - y) / max(x (1 - x), eps);  d/dy = log(1 - x) - log(x)  (logs floored at -100)
    in_place = in_place_safe(grad, input, target)
    if in_place:
        scale = (1 - input).mul_(input).clamp_min_(_BCE_GRAD_EPS)
        grad_input = (input - target).div_(scale).mul_(grad)
    else:
        grad_input = grad * (input - target) / (input * (1 - input)).clamp_min(_BCE_GRAD_EPS)
    # in plain eager mode a target that does not require grad takes none (under a torch.func
    # transform requires_grad does not tell, and the gradient is always computed)
    if target.requires_grad or not plain_eager(target):
        log_ratio = _floored_log(1 - input, in_place) - _floored_log(input, in_place)
        return grad_input, grad * log_ratio
    return grad_input, None


@_binary_cross_entropy.jvp
def _binary_cross_entropy_jvp(
    input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor
) -> Tensor:
    slope = (input - target) / (input * (1 - input)).clamp_min(_BCE_GRAD_EPS)
    return slope * input_t + (_safe_log(1 - input) - _safe_log(input)) * target_t


@follows_autocast("float32")
@checks_config(_BCE_CONFIG)
def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Binary cross-entropy between probabilities and targets.

    For outputs that already went through a sigmoid; on logits prefer
    :func:`binary_cross_entropy_with_logits`, which is stable.

    .. math::
        \ell = -w \left[ y \log x + (1 - y) \log (1 - x) \right]

    with both logs floored at -100 as in torch. Gradient (as torch's):
    :math:`w (x - y) / \max(x (1 - x), 10^{-12})`.

    Args:
        input: probabilities in ``[0, 1]`` (checked in eager mode only), shape ``(*)``.
        target: same shape as ``input`` (torch refuses any other, and so does funcloss),
            floating dtype, in ``[0, 1]`` (checked in eager mode only, as torch does).
        weight: optional elementwise weight, broadcastable to ``input``'s shape (not beyond
            it, as in torch).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count; ``"mean"`` divides by their number (with a ``weight`` too, as
            torch's mean divides by the number of elements). Masked entries of ``input`` and
            ``target`` are not read (not range-checked either): they may hold anything.

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of the floating arguments (torch refuses mixed input and target
        dtypes).

    Raises:
        TypeError: non-floating input or target, a ``where`` that is not a bool tensor.
        ValueError: shape mismatch, bad ``reduction``, input or target outside ``[0, 1]`` or
            NaN (eager mode; masked entries are not checked), a ``where`` that does not
            broadcast to ``input``'s shape.

    Examples:
        >>> funcloss.binary_cross_entropy(torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0]))
        tensor(0.1643)
    """
    fn = "binary_cross_entropy"
    _BCE_CONFIG(reduction=reduction)
    if _fast(input, target, where, weight, reduction) and value_reads_allowed():
        loss = _step(False, input, target, reduction)
        if loss is not None:
            return loss
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target, weight=weight)
    _BCE_CONFIG(reduction=reduction)
    check_same_shape(fn, input=input, target=target)
    check_broadcastable_to(fn, "weight", weight, input.shape)
    if where is not None:
        check_where(fn, where, input.shape)
        input = masked(where, input, _PROBABILITY_FILL)
        target = masked(where, target, _PROBABILITY_FILL)
    check_values_in(fn, "input", input, 0.0, 1.0, target=target)
    dtype = promoted_dtype(input, target)  # torch refuses mixed dtypes; funcloss promotes
    loss = _binary_cross_entropy(input.to(dtype), target.to(dtype))
    return reduce(loss, reduction, weight, where=where)


@follows_autocast("float32")
@checks_config(_BCE_LOGITS_CONFIG)
def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
    pos_weight: Tensor | None = None,
    where: Tensor | None = None,
) -> Tensor:
    r"""Binary cross-entropy on logits: a sigmoid and BCE in one stable expression.

    .. math::
        \ell = -w \left[ p\, y \log \sigma(x) + (1 - y) \log \sigma(-x) \right]
             = w \left[ p\, y \operatorname{softplus}(-x) + (1 - y) \operatorname{softplus}(x)
               \right]

    computed as the two non-negative terms (no cancellation; bf16 and fp16 in fp32), a term
    with a coefficient of 0 counting 0 even at an infinite logit: ``x = inf`` with ``y = 1``
    gives 0 (torch: nan).

    where :math:`p` is ``pos_weight`` (weight of the positive class, e.g. ``#neg / #pos``).

    Args:
        input: logits, shape ``(*)``, floating dtype.
        target: same shape as ``input`` (torch refuses any other, and so does funcloss),
            floating dtype (usually in ``[0, 1]``).
        weight: optional elementwise weight, broadcastable to ``input``'s shape (not beyond
            it, as in torch).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        pos_weight: optional positive-class weight, broadcastable to ``input``'s shape
            (typically shape ``(C,)`` for the last dimension).
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count; ``"mean"`` divides by their number (with a ``weight`` or
            ``pos_weight`` too, as torch's mean divides by the number of elements). Masked
            entries of ``input`` and ``target`` are not read: they may hold anything.

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of the floating arguments (torch's is ``target``'s dtype).

    Raises:
        TypeError: non-floating input, target or weights, a ``where`` that is not a bool
            tensor.
        ValueError: shape mismatch, bad ``reduction``, a ``where`` that does not broadcast to
            ``input``'s shape.

    Examples:
        >>> funcloss.binary_cross_entropy_with_logits(
        ...     torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0]), reduction="none")
        tensor([0.1269, 0.3133])
    """
    fn = "binary_cross_entropy_with_logits"
    _BCE_LOGITS_CONFIG(reduction=reduction)
    if (
        pos_weight is None
        and _fast(input, target, where, weight, reduction)
        and value_reads_allowed()
    ):
        loss = _step(True, input, target, reduction)
        if loss is not None:
            return loss
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target, weight=weight, pos_weight=pos_weight)
    _BCE_LOGITS_CONFIG(reduction=reduction)
    check_same_shape(fn, input=input, target=target)
    check_broadcastable_to(fn, "weight", weight, input.shape)
    check_broadcastable_to(fn, "pos_weight", pos_weight, input.shape)
    dtype = promoted_dtype(input, target, weight, pos_weight)
    compute = compute_dtype(dtype)  # bf16/fp16 in fp32: softplus of either sign, no cancellation
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input, _LOGIT_FILL), masked(where, target, _PROBABILITY_FILL)
    input, target = input.to(compute), target.to(compute)
    # Two terms >= 0 (no cancellation); a term whose coefficient is 0 is absent (times), so an
    # infinite logit with the matching target gives 0, and the target gradient its +-inf limit.
    if pos_weight is None:
        loss = logistic_terms(input, target)
    else:
        loss = times(target * pos_weight, softplus(-input)) + times(1 - target, softplus(input))
    return reduce(loss, reduction, weight, where=where).to(dtype)
