"""Regression losses: l1, mse, huber, smooth_l1, poisson and gaussian NLL, kl_div.

All of them are plain torch compositions: autograd of each forward already gives torch's
gradients, including torch's choices at the kinks (``abs`` has derivative 0 at 0; Huber's clamp
is ``hardtanh``, whose derivative is 0 at the switch points, as torch's second derivative), so
every transform differentiates them. Masks are ``torch.where`` only where a cheaper product
would turn an infinity into ``nan``.

The plain eager training call (no mask or weight, a scalar reduction, same-shape same-dtype
float32/float64 CPU tensors, a target without gradient; ``_fast``) takes a shorter road for
speed and memory (issue 15): ``_EagerStep`` (mse, l1, huber, smooth l1, poisson NLL on
log-rates, kl_div on probabilities: a fused reduction, one saved slope scaled in place into
the gradient; poisson and kl_div take bf16 too, computed in float32 by chunks).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    REDUCTIONS,
    Reduction,
    broadcast_shape,
    check_floating,
    check_non_negative,
    check_positive,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    eager_pair,
    fail,
    shape_str,
    value_checks_enabled,
    value_reads_allowed,
    warn_target_size,
)
from ._function import SlopeRule, SlopeStep
from ._modes import follows_autocast
from ._ops import chunk_total, float32_gradient, float_chunks, times
from ._reduction import KL_REDUCTIONS, KLReduction, masked, reduce, reduce_batchmean

_KL_REDUCTIONS = KL_REDUCTIONS
# torch 2.13's warning for kl_div(reduction="mean"), word for word.
_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)
# The constant of the full Gaussian NLL: log(2 pi) / 2.
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


# -- checks ------------------------------------------------------------------------------------


def _check_pair(
    fn: str, input: Tensor, target: Tensor, where: Tensor | None, warn: bool = False
) -> None:
    """Floating ``input`` and ``target`` that broadcast together, as torch broadcasts them, and a
    mask that broadcasts to their shape; ``warn``: torch's warning when their shapes differ
    (l1, mse, huber, smooth_l1)."""
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    check_where(fn, where, broadcast_shape(fn, input=input, target=target))
    if warn:
        warn_target_size(input, target, stacklevel=5)


def _config(fn: str, reductions: tuple[str, ...] = REDUCTIONS, **rules: str) -> Callable[..., None]:
    """The config check of ``fn``: its ``reduction`` among ``reductions``, and each argument in
    ``rules`` ``"positive"`` or ``"non_negative"``."""
    checks = {"positive": check_positive, "non_negative": check_non_negative}

    def check(reduction: str = "mean", **values: float) -> None:
        check_reduction(fn, reduction, reductions)
        for name, value in values.items():
            checks[rules[name]](fn, **{name: value})

    check.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in ("reduction", *rules)]
    )
    return check


_L1_CONFIG = _config("l1_loss")
_MSE_CONFIG = _config("mse_loss")
_HUBER_CONFIG = _config("huber_loss", delta="positive")
_SMOOTH_L1_CONFIG = _config("smooth_l1_loss", beta="non_negative")
_POISSON_CONFIG = _config("poisson_nll_loss", eps="non_negative")
_GAUSSIAN_CONFIG = _config("gaussian_nll_loss", eps="non_negative")
_KL_CONFIG = _config("kl_div", _KL_REDUCTIONS)


def _check_real_or_complex(fn: str, **tensors: Tensor) -> None:
    """l1_loss takes complex tensors too (its loss ``|x - y|`` is real), as torch's does."""
    for name, value in tensors.items():
        check_tensor(fn, **{name: value})
        if not (value.is_floating_point() or value.is_complex()):
            fail(TypeError, fn, name, "have a floating-point or complex dtype", value.dtype)


def _check_not_complex(fn: str, **tensors: Tensor) -> None:
    for name, value in tensors.items():
        if isinstance(value, Tensor) and value.is_complex():
            fail(
                TypeError,
                fn,
                name,
                "have a real floating-point dtype (the loss is not defined on complex numbers)",
                value.dtype,
                hint="For complex inputs use l1_loss, or mse_loss on torch.view_as_real(x).",
            )


def _check_weight(fn: str, weight: Tensor | None, input: Tensor) -> None:
    """An elementwise weight has exactly ``input``'s shape, as torch requires (even where
    ``target`` broadcasts ``input`` to a larger shape)."""
    if weight is None:
        return
    check_floating(fn, weight=weight)
    if weight.shape != input.shape:
        fail(
            ValueError,
            fn,
            "weight",
            f"have the same shape as `input` {shape_str(input.shape)}",
            shape_str(weight.shape),
        )


def _masked_pair(
    where: Tensor | None, input: Tensor, target: Tensor, fill: float = 0.0
) -> tuple[Tensor, Tensor]:
    """``input`` and ``target`` with masked entries set to ``fill`` (where every loss here is
    finite and smooth), before any arithmetic."""
    return masked(where, input, fill), masked(where, target, fill)


# -- the eager training step -------------------------------------------------------------------
#
# The compositions below are what every transform differentiates. A plain eager call with a
# scalar reduction (the training step) takes a shorter road: autograd of a composition writes
# and reads every intermediate (``x - y``, its square, the mask of ``times``...) and saves some
# of them, where the floor is to read the inputs once and write the gradient once.


def _fast(
    input: object,
    target: object,
    where: object,
    reduction: str,
    scalar: tuple[str, ...] = ("mean", "sum"),
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64),
) -> bool:
    """A plain eager CPU call, no mask, a scalar ``reduction`` among ``scalar``, on plain tensors
    of one shape (at least one element) and one dtype among ``dtypes``, contiguous, whose target
    takes no gradient: the eager step may run, and every argument check of the composition holds
    already (the callers check the config first, or take only a valid one here).

    The house checks cost more than the loss at 64x10: :func:`eager_pair` tests the tensors and
    the mode."""
    return (
        where is None
        and reduction in scalar
        and eager_pair(input, target, dtypes)
        and input.is_contiguous()  # type: ignore[attr-defined]
        and target.is_contiguous()  # type: ignore[attr-defined]
    )


# The steps of mse, l1, huber and smooth l1 reduce by dot and norm, which accumulate in the
# input's dtype: bf16 and fp16 take the compositions (their float32 accumulation). Poisson's and
# kl_div's steps take bf16 too, computed in float32 (fp16 keeps the composition, whose fp16 e^x
# overflows from x = 11.1 as torch's does, where float32's would not).
_SUM_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


_KL_SCALAR = ("batchmean", "mean", "sum")


def _mse_fast(input: Tensor, target: Tensor, reduction: str) -> Tensor:
    return _EagerStep.run(_MSE_RULE, input, target, (_divisor(reduction, input), 0.0))


def _divisor(reduction: str, input: Tensor) -> int:
    if reduction == "mean":
        return input.numel()
    if reduction == "batchmean" and input.dim() > 0:
        return input.shape[0]
    return 1


class _EagerStep(SlopeStep):
    """The eager training step of mse, l1, huber and smooth l1 (``config``: the reduction's
    divisor and delta or beta), poisson NLL (log-rates) and kl_div (probabilities).

    The forward reduces with a fused reduction (blocked ``vector_norm``, ``sum``) and keeps at
    most one fresh tensor, the slope ``d loss / d input``, which the backward scales in place
    into the gradient (:class:`SlopeStep`): no new allocation, one pass. Torch's own step
    allocates a temporary in its forward and the gradient in its backward, so the peak is the
    same.
    """


def _norm_sum(flat: Tensor, ord: int) -> Tensor:
    """``sum |x|^ord`` (ord 1 or 2) of a flat tensor, accurate as torch's ``sum``: one fused
    ``vector_norm`` per block of ``_BLOCK`` entries, then a sum of the partials. (A single
    ``dot`` or ``vector_norm`` accumulates serially: 1.6e-4 and 4.7e-3 relative error at 8M
    float32 entries, where ``sum`` has 4e-8.)"""
    whole = flat.numel() // _BLOCK * _BLOCK
    head = torch.linalg.vector_norm(flat[:whole].view(-1, _BLOCK), ord, dim=1)
    tail = torch.linalg.vector_norm(flat[whole:], ord)
    if ord == 2:
        head, tail = head.square(), tail.square()
    return head.sum() + tail


# The block a fused norm accumulates serially: 4096 float32 entries keep the error at sum's 4e-8
# (8M entries), at the speed of one vector_norm.
_BLOCK = 4096

# An eager step's forward: the value, the slope (or None), nothing kept.
_Step = tuple[Tensor, Tensor | None, None]


def _divided(value: Tensor, divisor: int) -> Tensor:
    return value if divisor == 1 else value / divisor


def _mse_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    divisor = config[0]
    if input.dtype in _HALF_DTYPES:
        return _half_step(input, target, divisor, lambda diff: _norm_sum(diff, 2))
    diff = torch.sub(input, target)
    flat = diff.view(-1)
    # up to one block, one dot (the blocked sum's accumulation, in 1 op instead of 6: at 64x10
    # each op costs about a tenth of torch's whole step)
    total = torch.dot(flat, flat) if flat.numel() <= _BLOCK else _norm_sum(flat, 2)
    return _divided(total, divisor), diff, None


def _l1_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    divisor = config[0]
    diff = input - target
    return _divided(_norm_sum(diff.view(-1), 1), divisor), diff.sign_(), None


def _poisson_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    divisor, dtype = config[0], input.dtype
    if dtype in _HALF_DTYPES:
        return _half_poisson_step(input, target, divisor)
    rate = torch.exp(input)
    value = torch.addcmul(rate, target, input, value=-1).sum()
    if not math.isfinite(value.item()):  # a count of 0 at a log-rate of -inf adds 0, not nan
        value = (rate - times(target, input)).sum()
    return _divided(value, divisor), rate.sub_(target), None


def _half_poisson_step(input: Tensor, target: Tensor, divisor: int) -> _Step:
    """:func:`_poisson_step` of bf16 tensors, by chunks of ``FLOAT_CHUNK`` entries in
    float32 (as :func:`_half_kl_sum`). No slope: a bf16 one would round the gradient twice, so
    the backward computes it from the inputs (:func:`_poisson_gradient`), rounded once."""
    inputs, targets = input.view(-1), target.view(-1)
    parts = [
        torch.addcmul(torch.exp(x), y, x, value=-1).sum()
        for x, y, _ in float_chunks(inputs, targets)
    ]
    value = chunk_total(parts)
    if not math.isfinite(value.item()):  # a count of 0 at a log-rate of -inf adds 0, not nan
        value = chunk_total(
            [(torch.exp(x) - times(y, x)).sum() for x, y, _ in float_chunks(inputs, targets)]
        )
    return _divided(value, divisor).to(input.dtype), None, None


def _poisson_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: tuple[int, float], kept: None
) -> Tensor:
    """``(e^x - y) grad / divisor``; for bf16 in float32, rounded once (by chunks, in cache,
    unless ``create_graph`` differentiates it)."""
    factor = _factor(grad, config)
    if input.dtype not in _HALF_DTYPES:
        return (torch.exp(input) - target) * factor
    return float32_gradient(input, target, factor, lambda x, y: torch.exp(x) - y)


def _kl_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    divisor, dtype = config[0], input.dtype
    if dtype in _HALF_DTYPES:
        value = _half_kl_sum(input.view(-1), target.view(-1))
    else:
        value = torch.xlogy(target, target).addcmul_(target, input, value=-1).sum()
    if not math.isfinite(value.item()):  # a class of probability 0 adds 0, also at -inf
        work = torch.float32 if dtype in _HALF_DTYPES else dtype
        input, target = input.to(work), target.to(work)
        value = (torch.xlogy(target, target) - times(target, input)).sum()
    # the slope, -target: the same pass in backward
    return _divided(value, divisor).to(dtype), None, None


_HALF_DTYPES = (torch.bfloat16,)  # the steps' dtype computed in float32
# bf16 takes the steps from this many elements: below it the float32 conversions and the
# backward's recomputation cost more than the composition (poisson: 2.37x torch at 64x10,
# against 1.76x).
_HALF_STEP_FROM = 2**16


def _half_fast(input: object, target: object, where: object, reduction: str) -> bool:
    """:func:`_fast` of float32, float64, and bf16 from ``_HALF_STEP_FROM`` elements."""
    return _fast(input, target, where, reduction, dtypes=_SUM_DTYPES) and (
        input.dtype not in _HALF_DTYPES  # type: ignore[attr-defined]
        or input.numel() >= _HALF_STEP_FROM  # type: ignore[attr-defined]
    )


def _half_kl_sum(input: Tensor, target: Tensor) -> Tensor:
    """kl_div's sum of flat bf16 tensors, its terms in float32 (one rounding, of the
    result: in the input's dtype two roundings a term give twice torch's error), by chunks of
    ``FLOAT_CHUNK`` entries, so the float32 copies stay in cache and take no memory."""
    return chunk_total(
        [
            torch.xlogy(y, y).addcmul_(y, x, value=-1).sum()
            for x, y, _ in float_chunks(input, target)
        ]
    )


# The Huber step works through its inputs in chunks of this many elements (1 MiB of float32):
# each chunk's difference, clamp and terms stay in cache, so the only passes over memory are the
# reads of the inputs and the write of the slope (a whole-tensor difference beside the slope
# would add four passes and a tensor), and the Python loop is ~30 turns at 8192x1000.
_HUBER_CHUNK = 2**18


def _huber_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    """The Huber sum ``sum c (d - c / 2)`` (over ``divisor``: the mean, or 1) and its slope
    ``c = clamp(d, +-delta)``, ``d = x - y`` (:func:`_huber`'s terms, summed by chunk)."""
    divisor, delta = config
    if input.dtype in _HALF_DTYPES:
        return _half_step(input, target, divisor, lambda diff: _huber_sum(diff, delta))
    size = input.numel()
    if size <= _HUBER_CHUNK:  # few ops: at 64x10 each op costs about what the loss does
        diff = input - target
        slope = diff.clamp(-delta, delta)
        terms = diff.sub_(slope, alpha=0.5).mul_(slope)
        return (terms.sum() if divisor == 1 else terms.mean()), slope, None
    inputs, targets = input.view(-1), target.view(-1)
    slope = torch.empty_like(inputs)
    scratch = torch.empty(_HUBER_CHUNK, dtype=input.dtype)
    parts = []
    for start in range(0, size, _HUBER_CHUNK):
        stop = min(start + _HUBER_CHUNK, size)
        diff, clamped = scratch[: stop - start], slope[start:stop]
        torch.sub(inputs[start:stop], targets[start:stop], out=diff)
        torch.clamp(diff, -delta, delta, out=clamped)
        # the terms in the scratch, summed: no temporary (a dot's product of the chunk is one,
        # whose fresh pages, each chunk, add half the slope's size to the peak)
        parts.append(diff.sub_(clamped, alpha=0.5).mul_(clamped).sum())
    return _divided(torch.stack(parts).sum(), divisor), slope.view(input.shape), None


def _huber_sum(diff: Tensor, delta: float) -> Tensor:
    """``sum c (d - c / 2)``, ``c = clamp(d, +-delta)``, of a flat chunk of differences."""
    clamped = diff.clamp(-delta, delta)
    return diff.sub_(clamped, alpha=0.5).mul_(clamped).sum()


def _half_step(
    input: Tensor, target: Tensor, divisor: int, total: Callable[[Tensor], Tensor]
) -> _Step:
    """A bf16 step of a loss of ``d = x - y``: ``total(d)`` (a float32 sum, ``d`` its own to
    overwrite) by chunks of ``FLOAT_CHUNK`` entries in float32, over ``divisor``, rounded once.
    No slope: a bf16 one would round the gradient twice, so the backward computes it from the
    inputs (the rule's gradient, by :func:`float32_gradient`), rounded once."""
    parts = [total(x.sub_(y)) for x, y, _ in float_chunks(input.view(-1), target.view(-1))]
    return _divided(chunk_total(parts), divisor).to(input.dtype), None, None


def _smooth_l1_step(input: Tensor, target: Tensor, config: tuple[int, float]) -> _Step:
    divisor, beta = config
    if input.dtype in _HALF_DTYPES:
        return _half_step(input, target, divisor, lambda diff: _huber_sum(diff, beta) / beta)
    value, slope, _ = _huber_step(input, target, config)
    if beta == 1:
        return value, slope, None
    return value / beta, slope.div_(beta), None  # type: ignore[union-attr]


def _factor(grad: Tensor, config: tuple[int, float]) -> Tensor:
    """``grad / divisor``; in float32 for a bf16 grad (a bf16 tensor times a 0-dim float32 one
    computes in float32: the gradient is rounded once)."""
    if grad.dtype in _HALF_DTYPES:
        grad = grad.float()
    return grad if config[0] == 1 else grad / config[0]


def _scale(slope: Tensor, grad: Tensor, config: tuple[int, float], kept: None) -> Tensor:
    return slope.mul_(_factor(grad, config))


def _mse_factor(grad: Tensor, config: tuple[int, float]) -> Tensor:
    """``2 grad / divisor`` in one op: ``grad / (divisor / 2)`` (doubling is exact, so these are
    the bits of ``(grad / divisor) * 2`` while ``divisor / 2`` is a float32 integer or half)."""
    if grad.dtype in _HALF_DTYPES:
        grad = grad.float()
    return grad * 2 if config[0] == 1 else grad / (config[0] / 2)


def _mse_scale(slope: Tensor, grad: Tensor, config: tuple[int, float], kept: None) -> Tensor:
    return slope.mul_(_mse_factor(grad, config))  # the slope is 2 (x - y): the 2 joins the factor


def _recomputed(
    slope: Callable[[Tensor, Tensor, float], Tensor],
    factor: Callable[[Tensor, tuple[int, float]], Tensor] | None = None,
) -> Callable[[Tensor, Tensor, Tensor, tuple[int, float], None], Tensor]:
    """A rule's ``gradient``: ``slope(input, target, param) * factor(grad, config)`` (default
    ``grad / divisor``); for bf16 in float32, rounded once (:func:`float32_gradient`)."""
    scale = _factor if factor is None else factor

    def gradient(
        input: Tensor, target: Tensor, grad: Tensor, config: tuple[int, float], kept: None
    ) -> Tensor:
        param = config[1]
        if input.dtype in _HALF_DTYPES:
            return float32_gradient(
                input, target, scale(grad, config), lambda x, y: slope(x, y, param)
            )
        return slope(input, target, param) * scale(grad, config)

    return gradient


# The gradients from the inputs, ``grad / divisor`` and the step's parameter, in differentiable
# ops (double backward differentiates these; hardtanh's derivative is 0 at the switch points, as
# the composition's), rounded as the in-place slope is (a second backward gives the same bits).
_MSE_RULE = SlopeRule(
    _mse_step,
    _mse_scale,
    _recomputed(lambda input, target, _: input - target, _mse_factor),
)
_L1_RULE = SlopeRule(
    _l1_step,
    _scale,
    _recomputed(lambda input, target, _: torch.sign(input - target)),
)
_HUBER_RULE = SlopeRule(
    _huber_step,
    _scale,
    _recomputed(lambda input, target, delta: F.hardtanh(input - target, -delta, delta)),
)


def _smooth_l1_slope(input: Tensor, target: Tensor, beta: float) -> Tensor:
    """``hardtanh(x - y, +-beta) / beta``; no division at the default beta = 1 (the same bits,
    one pass fewer)."""
    slope = F.hardtanh(input - target, -beta, beta)
    return slope if beta == 1 else slope / beta


_SMOOTH_L1_RULE = SlopeRule(_smooth_l1_step, _scale, _recomputed(_smooth_l1_slope))
_POISSON_RULE = SlopeRule(
    _poisson_step,
    _scale,
    _poisson_gradient,
)
_KL_RULE = SlopeRule(
    _kl_step,
    _scale,
    # -grad / divisor in one op (negating is exact: the bits of -(grad / divisor))
    lambda input, target, grad, config, _: target * _factor(grad, (-config[0], 0.0)),
)


# -- l1 / mse ----------------------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_L1_CONFIG)
def l1_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
    where: Tensor | None = None,
) -> Tensor:
    r"""Mean absolute error.

    A regression loss that is robust to outliers (its gradient has constant size); its optimum
    is the conditional median. Complex ``input`` and ``target`` are taken, as in torch: the loss
    :math:`|x - y|` is real and its gradient is torch's, :math:`w (x - y) / |x - y|`.

    .. math::
        \ell = w\, |x - y|, \qquad
        \text{mean} = \frac{\sum w\, |x - y|}{\sum w} \ \ (\text{or the plain mean without } w)

    Gradient: :math:`w \operatorname{sign}(x - y)`, which is 0 at :math:`x = y` (torch's
    subgradient).

    Args:
        input: predictions, shape ``(*)``, floating or complex dtype.
        target: broadcastable with ``input``, floating or complex dtype. As in torch, which
            warns (and so does funcloss, with torch's text) when the shapes differ: that is
            usually a bug.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional real elementwise weight of ``input``'s shape (as torch requires);
            ``"mean"`` then divides by its sum, as torch does.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (with ``weight``, ``"mean"`` divides by their weights' sum).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor;
        real, of the promoted dtype of the inputs (``float64`` for ``complex128``).

    Raises:
        TypeError: input or target neither floating nor complex; a non-floating weight.
        ValueError: shapes that do not broadcast, a weight not of ``input``'s shape, bad
            ``reduction``.

    Examples:
        >>> funcloss.l1_loss(torch.tensor([1.0, -2.0]), torch.zeros(2))
        tensor(1.5000)
        >>> funcloss.l1_loss(torch.tensor([1.0, -2.0]), torch.zeros(2),
        ...                  weight=torch.tensor([3.0, 1.0]))
        tensor(1.2500)
        >>> funcloss.l1_loss(torch.tensor([3 + 4j]), torch.zeros(1, dtype=torch.complex64))
        tensor(5.)
    """
    fn = "l1_loss"
    if weight is None and _fast(input, target, where, reduction):
        return _EagerStep.run(_L1_RULE, input, target, (_divisor(reduction, input), 0.0))
    _check_real_or_complex(fn, input=input, target=target)
    _L1_CONFIG(reduction=reduction)
    check_where(fn, where, broadcast_shape(fn, input=input, target=target))
    warn_target_size(input, target)
    _check_weight(fn, weight, input)
    input, target = _masked_pair(where, input, target)
    return reduce(torch.abs(input - target), reduction, weight, where=where, mean_weight=weight)


@follows_autocast("float32")
@checks_config(_MSE_CONFIG)
def mse_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
    where: Tensor | None = None,
) -> Tensor:
    r"""Mean squared error.

    The default regression loss (Gaussian likelihood with fixed variance); its optimum is the
    conditional mean.

    .. math::
        \ell = w\, (x - y)^2, \qquad
        \text{mean} = \frac{\sum w\, (x - y)^2}{\sum w} \ \ (\text{or the plain mean without } w)

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype. As in torch, which warns (and so
            does funcloss, with torch's text) when the shapes differ: that is usually a bug.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        weight: optional elementwise weight of ``input``'s shape; ``"mean"`` then divides by
            its sum, as torch does.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (with ``weight``, ``"mean"`` divides by their weights' sum).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor,
        of the promoted dtype of the inputs.

    Raises:
        TypeError: non-floating (or complex) input, target or weight.
        ValueError: shapes that do not broadcast, a weight not of ``input``'s shape, bad
            ``reduction``.

    Examples:
        >>> funcloss.mse_loss(torch.tensor([1.0, -2.0]), torch.zeros(2), reduction="none")
        tensor([1., 4.])
    """
    fn = "mse_loss"
    if weight is None and _half_fast(input, target, where, reduction):
        return _mse_fast(input, target, reduction)
    _check_not_complex(fn, input=input, target=target)
    _MSE_CONFIG(reduction=reduction)
    _check_pair(fn, input, target, where, warn=True)
    _check_weight(fn, weight, input)
    input, target = _masked_pair(where, input, target)
    diff = input - target
    return reduce(diff * diff, reduction, weight, where=where, mean_weight=weight)


# -- huber / smooth l1 -------------------------------------------------------------------------


def _huber(diff: Tensor, delta: float) -> Tensor:
    """Elementwise Huber loss of ``diff``: ``c (diff - c / 2)`` with ``c = clamp(diff, ±delta)``.

    Inside ``c = diff`` gives ``diff^2 / 2``, outside ``c = ±delta`` gives
    ``delta (|diff| - delta / 2)``; ``c`` is bounded, so nothing overflows. ``hardtanh`` is the
    clamp because its derivative is 0 *at* ``±delta`` (``clamp``'s is 1): autograd then gives
    torch's derivatives, ``clamp(diff, ±delta)`` and, at the switch points, a second
    derivative of 0 (the linear branch).
    """
    if delta > torch.finfo(diff.dtype).max:  # as torch: no clamp (hardtanh would refuse it)
        delta = math.inf
    clamped = F.hardtanh(diff, -delta, delta)
    return clamped * (diff - 0.5 * clamped)


@follows_autocast("float32")
@checks_config(_HUBER_CONFIG)
def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: Reduction = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Huber loss: quadratic near zero, linear in the tails.

    A regression loss between MSE and L1: smooth at the optimum, robust to outliers beyond
    ``delta``.

    .. math::
        \ell = w \begin{cases} \tfrac12 (x - y)^2 & |x - y| < \delta \\
               \delta\, (|x - y| - \tfrac12 \delta) & \text{otherwise} \end{cases}

    Gradient: :math:`w\, \operatorname{clamp}(x - y, -\delta, \delta)`. At
    :math:`|x - y| = \delta` the second derivative is 0 (the linear branch), as torch's
    reverse-mode double backward gives.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype. As in torch, which warns (and so
            does funcloss, with torch's text) when the shapes differ: that is usually a bug.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        delta: the switch point, must be positive.
        weight: optional elementwise weight of ``input``'s shape (as torch requires);
            ``"mean"`` divides by the number of elements (not by the weights' sum), as torch
            does.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor,
        of the promoted dtype of the inputs (torch's is ``input``'s dtype).

    Raises:
        TypeError: non-floating input, target or weight.
        ValueError: shapes that do not broadcast, a weight not of ``input``'s shape, bad
            ``reduction``, ``delta <= 0``.

    Examples:
        >>> funcloss.huber_loss(torch.tensor([0.5, 3.0]), torch.zeros(2), reduction="none")
        tensor([0.1250, 2.5000])
    """
    fn = "huber_loss"
    _HUBER_CONFIG(reduction=reduction, delta=delta)
    if (
        weight is None
        and _half_fast(input, target, where, reduction)
        and delta <= torch.finfo(input.dtype).max
    ):
        return _EagerStep.run(_HUBER_RULE, input, target, (_divisor(reduction, input), delta))
    _check_pair(fn, input, target, where, warn=True)
    _check_weight(fn, weight, input)
    input, target = _masked_pair(where, input, target)
    return reduce(_huber(input - target, delta), reduction, weight, where=where)


@follows_autocast("float32")
@checks_config(_SMOOTH_L1_CONFIG)
def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    beta: float = 1.0,
    where: Tensor | None = None,
) -> Tensor:
    r"""Smooth L1 loss: Huber loss divided by ``beta``, L1 in the tails.

    Used for box regression in object detection. ``beta = 0`` is exactly :func:`l1_loss`.

    .. math::
        \ell = \begin{cases} \tfrac12 (x - y)^2 / \beta & |x - y| < \beta \\
               |x - y| - \tfrac12 \beta & \text{otherwise} \end{cases}

    Gradient: :math:`\operatorname{clamp}((x - y) / \beta, -1, 1)` (:math:`\operatorname{sign}`
    with 0 at 0 for ``beta = 0``); the second derivative at :math:`|x - y| = \beta` is 0.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype. As in torch, which warns (and so
            does funcloss, with torch's text) when the shapes differ: that is usually a bug.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        beta: the switch point, must be non-negative.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or target.
        ValueError: shapes that do not broadcast, bad ``reduction``, ``beta < 0``.

    Examples:
        >>> funcloss.smooth_l1_loss(torch.tensor([0.5, 3.0]), torch.zeros(2), reduction="none")
        tensor([0.1250, 2.5000])
        >>> funcloss.smooth_l1_loss(torch.tensor([0.5, 3.0]), torch.zeros(2), beta=2.0,
        ...                         reduction="none")
        tensor([0.0625, 2.0000])
    """
    fn = "smooth_l1_loss"
    _SMOOTH_L1_CONFIG(reduction=reduction, beta=beta)
    if (
        beta > 0
        and _half_fast(input, target, where, reduction)
        and beta <= torch.finfo(input.dtype).max
    ):
        return _EagerStep.run(_SMOOTH_L1_RULE, input, target, (_divisor(reduction, input), beta))
    _check_pair(fn, input, target, where, warn=True)
    input, target = _masked_pair(where, input, target)
    diff = input - target
    if beta > torch.finfo(diff.dtype).max:
        # beta beyond the dtype: every finite difference is inside, diff^2 / (2 beta) taken as
        # diff (diff (0.5 / beta)), where diff^2 cannot overflow (torch: inf / inf = nan)
        loss = diff * (diff * (0.5 / beta))
    else:
        loss = diff.abs() if beta == 0 else _huber(diff, beta) / beta
    return reduce(loss, reduction, where=where)


# -- poisson NLL -------------------------------------------------------------------------------


def _stirling(target: Tensor) -> Tensor:
    """``t log t - t + log(2 pi t) / 2`` where ``t > 1``, else 0 (torch's ``full`` term).

    The masked entries read ``t`` clamped to 1, where the term is finite, so their gradient is
    0, not ``0 * log(0) = nan``.
    """
    above = (target > 1).to(target.dtype)
    safe = target.clamp_min(1.0)
    return above * (safe * torch.log(safe) - safe + 0.5 * torch.log(2 * math.pi * safe))


@follows_autocast("float32")
@checks_config(_POISSON_CONFIG)
def poisson_nll_loss(
    input: Tensor,
    target: Tensor,
    log_input: bool = True,
    full: bool = False,
    *,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Negative log-likelihood of count targets under a Poisson distribution.

    For count data (events, photons, clicks) predicted as a rate; ``log_input=True`` (the
    default) takes the log-rate, which keeps the rate positive without a clamp.

    .. math::
        \ell = \begin{cases} e^{x} - y\, x & \texttt{log\_input} \\
               x - y \log(x + \varepsilon) & \text{otherwise} \end{cases}
               \;+\; [\texttt{full}]\, [y > 1] \left(y \log y - y + \tfrac12 \log(2 \pi y)\right)

    A count of 0 at a log-rate of ``-inf`` (a rate of 0) adds 0, the limit (torch: nan).
    The Stirling term of ``full`` approximates :math:`\log y!` and, as in torch, is added only
    where :math:`y > 1`. Where it is left out its gradient with respect to ``target`` is 0
    (torch's is ``nan`` at :math:`y = 0`).

    Args:
        input: log-rates (``log_input=True``) or rates (positive, not checked), shape ``(*)``,
            floating dtype.
        target: counts (non-negative), broadcastable with ``input`` (as in torch, silently),
            floating dtype.
        log_input: whether ``input`` is the log of the rate.
        full: add the Stirling approximation of :math:`\log y!`.
        eps: added to the rate inside the log when ``log_input=False``; non-negative.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or target (convert counts with ``.float()``).
        ValueError: shapes that do not broadcast, bad ``reduction``, ``eps < 0``.

    Examples:
        >>> log_rate = torch.tensor([0.0, 1.0])
        >>> funcloss.poisson_nll_loss(log_rate, torch.tensor([1.0, 3.0]), reduction="none")
        tensor([ 1.0000, -0.2817])
        >>> funcloss.poisson_nll_loss(log_rate, torch.tensor([1.0, 3.0]), full=True,
        ...                           reduction="none")
        tensor([1.0000, 1.4824])
    """
    fn = "poisson_nll_loss"
    _POISSON_CONFIG(reduction=reduction, eps=eps)
    # the eager step reads one scalar (its finiteness fallback): only while reads are allowed
    if (
        log_input
        and not full
        and value_reads_allowed()
        and _half_fast(input, target, where, reduction)
    ):
        return _EagerStep.run(_POISSON_RULE, input, target, (_divisor(reduction, input), 0.0))
    _check_pair(fn, input, target, where)
    # masked rates read 1 (log-rates 0) and counts 0: every term is finite there
    input, target = masked(where, input, 0.0 if log_input else 1.0), masked(where, target)
    # a count of 0 at a log-rate of -inf (a rate of 0) adds nothing: times, not *
    if log_input:
        loss = torch.exp(input) - times(target, input)
    else:
        loss = input - times(target, torch.log(input + eps))
    if full:
        loss = loss + _stirling(target)
    return reduce(loss, reduction, where=where)


# -- gaussian NLL ------------------------------------------------------------------------------


def _gaussian_var(fn: str, var: Tensor, input: Tensor) -> Tensor:
    """``var`` by torch's rules: ``input``'s shape; that shape without its last dimension
    (unsqueezed); or as many dimensions, differing from ``input``'s in one of size 1."""
    if var.shape == input.shape:
        return var
    if input.dim() > 0 and var.shape == input.shape[:-1]:
        return var.unsqueeze(-1)
    if var.dim() == input.dim():
        differing = [v for i, v in zip(input.shape, var.shape, strict=True) if i != v]
        if sum(differing) == 1:  # torch's test: the differing sizes of var add up to 1
            return var
    fail(
        ValueError,
        fn,
        "var",
        f"have the input's shape {shape_str(input.shape)}, that shape with one dimension equal "
        f"to 1, or that shape without its last dimension {shape_str(input.shape[:-1])}",
        shape_str(var.shape),
        hint="For one variance shared by every element pass a float.",
    )


def _check_var_values(fn: str, var: Tensor) -> None:
    """Eager-only: no negative variance (NaN passes, as in torch)."""
    if not value_checks_enabled(var) or var.numel() == 0:
        return
    negative = var < 0
    if bool(negative.any()):
        first = float(var[negative].flatten()[0])
        raise ValueError(f"{fn}: `var` values must be non-negative, got {first}.")


def _clamp_straight_through(var: Tensor, eps: float) -> Tensor:
    """``max(var, eps)`` whose derivative is 1 everywhere, as torch clamps under ``no_grad``.

    Below ``eps`` the value is ``(var - var) + eps``: exactly ``eps``, with ``var``'s gradient.
    """
    return torch.where(var >= eps, var, var - var.detach() + eps)


@follows_autocast("promoted")
@checks_config(_GAUSSIAN_CONFIG)
def gaussian_nll_loss(
    input: Tensor,
    target: Tensor,
    var: Tensor | float,
    full: bool = False,
    eps: float = 1e-6,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Negative log-likelihood of targets under Gaussians with predicted means and variances.

    For regression that also predicts its uncertainty: the network outputs a mean (``input``)
    and a variance (``var``) per target (heteroscedastic), or one variance shared along a
    dimension (homoscedastic).

    .. math::
        \ell = \tfrac12 \left( \log \max(\sigma^2, \varepsilon)
               + \frac{(x - y)^2}{\max(\sigma^2, \varepsilon)} \right)
               + [\texttt{full}]\, \tfrac12 \log 2\pi

    As in torch, the clamp at ``eps`` is invisible to autograd: the gradient with respect to
    ``var`` is the unclamped formula evaluated at :math:`\max(\sigma^2, \varepsilon)`.

    Args:
        input: means, shape ``(*)``, floating dtype.
        target: broadcastable with ``input`` (torch documents ``input``'s shape or that shape
            with one dimension equal to 1, and broadcasts any shape, so does funcloss; a 0-dim
            target is one value for every mean), floating dtype.
        var: variances: a tensor of ``input``'s shape, of that shape with one dimension equal
            to 1, or of that shape without its last dimension (torch's rules, checked against
            ``input``'s shape); or a float, one variance for every element (a 0-dim tensor is
            refused, as in torch). Non-negative (checked in eager mode only for a tensor).
        full: add the constant :math:`\tfrac12 \log 2\pi`.
        eps: lower clamp of ``var``, non-negative.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``var`` for ``"none"``, else a 0-dim
        tensor.

    Raises:
        TypeError: non-floating input, target or var; a var that is neither tensor nor float.
        ValueError: shapes that do not broadcast, a var of a shape torch refuses, bad
            ``reduction``, ``eps < 0``, negative ``var`` (a tensor's values: eager mode only).

    Examples:
        >>> mean, target = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])
        >>> funcloss.gaussian_nll_loss(mean, target, torch.tensor([1.0, 0.5]), reduction="none")
        tensor([ 0.5000, -0.3466])
        >>> funcloss.gaussian_nll_loss(mean, target, 1.0, full=True)
        tensor(1.1689)
        >>> funcloss.gaussian_nll_loss(mean, torch.tensor(1.0), torch.tensor([1.0, 0.5]),
        ...                            reduction="none")  # one target for every mean
        tensor([ 0.5000, -0.3466])
    """
    fn = "gaussian_nll_loss"
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    _GAUSSIAN_CONFIG(reduction=reduction, eps=eps)
    shape = broadcast_shape(fn, input=input, target=target)
    if isinstance(var, Tensor):
        check_floating(fn, var=var)
        var = _gaussian_var(fn, var, input)
        shape = broadcast_shape(fn, input=input, target=target, var=var)
    check_where(fn, where, shape)
    input, target = _masked_pair(where, input, target)
    squared = (input - target) ** 2
    if isinstance(var, Tensor):
        var = masked(where, var, 1.0)  # a masked variance is not checked, nor read
        _check_var_values(fn, var)
        clamped = _clamp_straight_through(var, eps)
        loss = 0.5 * (torch.log(clamped) + squared / clamped)
    elif isinstance(var, int | float) and not isinstance(var, bool):
        check_non_negative(fn, var=var)
        clamped_value = max(float(var), eps)
        loss = 0.5 * (math.log(clamped_value) + squared / clamped_value)
    else:
        fail(TypeError, fn, "var", "be a torch.Tensor or a float", type(var).__name__)
    if full:
        loss = loss + _HALF_LOG_2PI
    return reduce(loss, reduction, where=where)


# -- kl_div ------------------------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_KL_CONFIG)
def kl_div(
    input: Tensor,
    target: Tensor,
    *,
    reduction: KLReduction = "mean",
    log_target: bool = False,
    where: Tensor | None = None,
) -> Tensor:
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(\text{target} \,\|\, \text{input})`.

    For distillation and variational objectives: ``input`` holds log-probabilities (e.g. a
    ``log_softmax``), ``target`` probabilities, or log-probabilities with ``log_target=True``
    (more stable when the target comes from a ``log_softmax`` too).

    .. math::
        \ell = \begin{cases} y \log y - y\, x & \text{(} y \log y = 0 \text{ at } y = 0
               \text{)} \\ e^{y} (y - x) & \texttt{log\_target} \end{cases}

    A class of probability 0 adds 0, also at ``input = -inf`` (with ``log_target``: a target
    of ``-inf``, whatever the input), the limit (torch: nan).

    ``reduction="batchmean"`` is the divergence per sample, ``sum / input.size(0)`` (the sum
    for a 0-dim input); ``"mean"`` divides by the number of elements, as in torch, and warns as
    torch does (same text, ``UserWarning``; not while compiling) that it is not the true
    divergence.

    Args:
        input: log-probabilities, shape ``(*)``, floating dtype.
        target: probabilities (or log-probabilities with ``log_target``), broadcastable with
            ``input`` (as in torch, silently); ``"batchmean"`` divides by ``input.size(0)``.
        reduction: ``"none"`` | ``"batchmean"`` | ``"mean"`` | ``"sum"``.
        log_target: whether ``target`` holds log-probabilities.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count. ``"mean"`` divides by their number, ``"batchmean"`` by their number
            in rows (their number times ``input.size(0) / input.numel()``).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or target.
        ValueError: shapes that do not broadcast, bad ``reduction``.

    Examples:
        >>> log_q = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
        >>> p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        >>> funcloss.kl_div(log_q, p, reduction="batchmean")
        tensor(0.6020)
    """
    fn = "kl_div"
    _KL_CONFIG(reduction=reduction)
    if reduction == "mean" and not torch.compiler.is_compiling():
        warnings.warn(_KL_MEAN_WARNING, stacklevel=3)
    # the eager step reads one scalar (its finiteness fallback): only while reads are allowed
    if (
        not log_target
        and value_reads_allowed()
        and _fast(input, target, where, reduction, _KL_SCALAR, _SUM_DTYPES)
    ):
        return _EagerStep.run(_KL_RULE, input, target, (_divisor(reduction, input), 0.0))
    _check_pair(fn, input, target, where)
    input, target = _masked_pair(where, input, target)
    # a class of probability 0 adds nothing, also where input is -inf (0 * inf would be nan)
    if log_target:
        big = torch.finfo(input.dtype).max
        gap = torch.where(target == -math.inf, -input.clamp(-big, big), target - input)
        loss = torch.exp(target) * gap
    else:
        loss = torch.xlogy(target, target) - times(target, input)
    return reduce_batchmean(loss, reduction, input, where=where)
