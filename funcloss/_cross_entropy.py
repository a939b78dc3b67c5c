"""Softmax classification losses: cross_entropy and nll_loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple, TypeGuard, TypeVar, cast

import torch
from torch import Tensor

from ._checks import (
    REDUCTIONS,
    Reduction,
    _functorch,
    as_index,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    class_index_mask,
    eager_mode,
    fail,
    gathered_index_mask,
    in_place_safe,
    plain_eager,
    value_reads_allowed,
)
from ._function import SlopeRule, SlopeStep, custom_backward
from ._modes import follows_autocast
from ._reduction import masked, reduce
from ._softmax_ce import (
    Rows,
    as_rows,
    class_rows,
    class_shapes,
    compute_dtype,
    log_softmax_coefficients,
    masked_probability_rows,
    probability_rows,
    row_jvp,
    row_loss,
    scaled_log_softmax,
    softmax_gradient,
    softmax_mask,
    target_gradient,
)

_HALF = (torch.float16, torch.bfloat16)  # their log-softmax accumulates in fp32
# The largest finite value per floating dtype (a +inf logit is clamped to it)
_LARGEST = {
    dtype: torch.finfo(dtype).max
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


# -- config ------------------------------------------------------------------------------------


def _cross_entropy_config(
    *, reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0
) -> None:
    fn = "cross_entropy"
    check_reduction(fn, reduction)
    check_index(fn, ignore_index=ignore_index)
    check_in_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)


def _nll_loss_config(*, reduction: str = "mean", ignore_index: int = -100) -> None:
    check_reduction("nll_loss", reduction)
    check_index("nll_loss", ignore_index=ignore_index)


# -- shapes ------------------------------------------------------------------------------------


def _row_weights(
    index: Tensor, weight: Tensor | None, ignored: Tensor | None, dtype: torch.dtype
) -> Tensor | None:
    """Each row's class weight, zero where the row is ignored: the weighted mean's terms, in
    ``dtype`` (``None`` stands for all ones: no weight and nothing ignored)."""
    if weight is None:
        return None if ignored is None else (~ignored).to(dtype)
    row_weights = weight.to(dtype).gather(0, index)
    return row_weights if ignored is None else row_weights.masked_fill(ignored, 0)


def _masks(
    where: Tensor, classes: bool | None, loss_shape: tuple[int, ...], input: Tensor
) -> tuple[Tensor, Tensor | None]:
    """(rows kept ``(M,)``, classes allowed ``(M, C)``) from ``where``; a row with no class
    allowed is not kept."""
    if not classes:
        return where.expand(loss_shape).reshape(-1), None
    allowed = as_rows(where.expand(input.shape))
    return allowed.any(1), allowed


# -- cross_entropy ---------------------------------------------------------------------------
#
# The algebra is _softmax_ce's (loss = A lse - a . x, d loss / dx = A softmax(x) - a), on the
# logits as one chunk of rows. Two paths:
# - large inputs (class indices): a custom backward, which buys memory and speed: it saves only
#   its inputs (no (N, C) log-softmax kept alive between forward and backward) and, in plain
#   eager mode, builds the gradient in place in the one (N, C) buffer of the recomputed softmax.
#   Built from differentiable ops, so double backward is exact.
# - small inputs and probability targets: -sum(a * log_softmax(x)), a plain composition that
#   autograd differentiates with a few graph nodes (log_softmax, gather or mul, sum), which is what
#   a small call's time is made of (an autograd.Function costs more per call than it saves
#   there). Without label smoothing the target's log-probability is gathered rather than
#   multiplied by a one-hot: a -inf logit elsewhere (a masked class) must not give 0 * -inf.
#   A plain eager call (_fast) building a graph or with label smoothing, whose log-probabilities
#   are all finite (its one read tells), takes the product form
#   sum(log_softmax(x) * coefficients) instead: no clamp, no gather, and three graph nodes, the
#   cheapest backward of the small call.
# - a plain eager call building a graph, from 16384 logits to 2**22 (_step_call), takes neither:
#   the training step (_CrossEntropyStep below), which keeps the log-softmax and writes the
#   gradient into it. Half-precision logits from 65536 take a step that keeps nothing of (N, C)
#   and computes by float32 chunks (_HALF_STEP_RULE), at any size; so do class probabilities
#   (_soft_step_call: half precision from 65536, float32 (N, C) from 2**21).

# Below this many logits, autograd through the composition beats the custom Function's overhead.
_FUSED_MIN_ELEMENTS = 1 << 16

# The large path's forward runs over row chunks of about this many logits (4 MiB of fp32), so
# that its log-sum-exp never allocates an (N, C) temporary. At N=4096, C=32000, 4 MiB chunks ran
# as fast as 16 MiB ones (1 MiB: about 10% slower).
_CHUNK_ELEMENTS = 1 << 20


def _cross_entropy_rows_forward(
    input: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    label_smoothing: float,
) -> Tensor:
    """Loss per row, ``(M,)``, for ``(M, C)`` logits and class indices (0 where ignored);
    ``allowed`` the class mask (removed logits already ``-inf``), or ``None``."""
    # half precision: each chunk of rows in float32 (no float32 copy of the whole logits)
    chunked = input.dtype in _HALF
    x, rows, class_weight = _class_rows(
        input, index, ignored, weight, allowed, label_smoothing, convert=not chunked
    )
    reads = _reads(input)

    def row_losses(x: Tensor, rows: Rows, beyond_range: bool) -> Tensor:
        losses = []
        for part in _row_chunks(x):
            z = x[part]
            if chunked:
                z = _in_compute_dtype(z, input.dtype, reads)
            chunk = rows.chunk(part.start, part.stop)
            losses.append(row_loss(z, chunk, class_weight, 0.0, beyond_range))
        return losses[0] if len(losses) == 1 else torch.cat(losses)

    loss = row_losses(x, rows, not reads)
    if reads:
        # the read finds the rows with a +inf logit (nan) and those whose log-probabilities
        # are below the dtype's range (inf, where the true loss may fit: see row_loss)
        loss = _patch_rows(
            loss,
            ~loss.isfinite(),
            x,
            rows,
            lambda x, rows: row_losses(_clamp(x, input.dtype), rows, True),
        )
    # in the compute dtype: half precision is reduced in float32 (a sum of rows near the
    # dtype's largest loss overflows it where the mean fits), then rounded once
    return loss


# A +inf logit acts as the largest finite one of the input's dtype, as on the small path: the
# float64 limit where it is finite (loss 0 and zero gradient with the target there; log 2 for
# two of them), no inf - inf = nan. A clamp would cost a pass over (N, C) per forward and
# backward, so plain eager mode on the CPU finds the rows instead: a +inf logit makes its row's
# log-softmax and softmax NaN throughout, so one host read of an (M,) statistic (the loss, or
# one column of the softmax) finds them, and only those rows are recomputed, clamped (a NaN
# logit stays NaN there). Elsewhere (transforms, compiling, other devices, value reads off) the
# logits are clamped, which a compiler fuses (in eager, the clamp costs about a quarter of the
# forward's log-softmax).


def _reads(input: Tensor) -> bool:
    """Plain eager on the CPU, value reads switched on (:class:`set_value_checks`): the rows
    with a +inf logit are found by a host read."""
    return (
        value_reads_allowed()
        and input.is_cpu
        and plain_eager(input)
        and not _functorch.is_legacy_batchedtensor(input)
    )


def _clamp(x: Tensor, dtype: torch.dtype) -> Tensor:
    return x.clamp(max=_LARGEST[dtype])


def _patch_rows(
    value: Tensor,
    bad: Tensor,
    x: Tensor,
    rows: Rows,
    recompute: Callable[[Tensor, Rows], Tensor],
    in_place: bool = False,
) -> Tensor:
    """``value`` (``recompute(x, rows)``, row by row) with its ``bad`` rows recomputed by
    ``recompute``, which clamps; nothing is done beyond one read of ``bad`` where no row is bad.
    Under a graph every row is recomputed: the discarded NaN rows would poison the gradient."""
    if not bool(bad.any()):
        return value
    if torch.is_grad_enabled():
        return recompute(x, rows)
    picks = bad.nonzero().squeeze(1)
    fixed = recompute(x.index_select(0, picks), rows.take(picks))
    return value.index_copy_(0, picks, fixed) if in_place else value.index_copy(0, picks, fixed)


def _class_rows(
    input: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    label_smoothing: float,
    convert: bool = True,
) -> tuple[Tensor, Rows, Tensor | None]:
    """The logits (``convert``: :func:`_in_compute_dtype`, else as given) and class weight in the
    compute dtype, and the rows' targets."""
    dtype = compute_dtype(input.dtype)
    class_weight = None if weight is None else weight.to(dtype)
    num_classes = input.shape[1]
    rows = class_rows(index, ignored, class_weight, label_smoothing, num_classes, dtype, allowed)
    return (
        (_in_compute_dtype(input, input.dtype, _reads(input)) if convert else input),
        rows,
        class_weight,
    )


def _in_compute_dtype(x: Tensor, dtype: torch.dtype, reads: bool) -> Tensor:
    """Logits of ``dtype`` in the compute dtype, clamped at ``+inf`` unless ``reads``
    (:func:`_reads`: the caller then patches the rows with one)."""
    x = x.to(compute_dtype(dtype))
    return x if reads else _clamp(x, dtype)


_cross_entropy_rows = custom_backward(_cross_entropy_rows_forward)


@_cross_entropy_rows.backward
def _cross_entropy_rows_backward(
    grad: Tensor,
    input: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    label_smoothing: float,
) -> tuple[Tensor, None, None, None, None]:
    # d/dx = grad * (A softmax(x) - a); ignored rows and removed classes give exactly zero.
    in_place = in_place_safe(grad, input)
    # half precision without a graph: by chunks of rows in float32, each written once in the
    # input's dtype (no float32 copy of the logits, their softmax or the gradient)
    chunked = in_place and input.dtype in _HALF and input.shape[1] > 0
    x, rows, class_weight = _class_rows(
        input, index, ignored, weight, allowed, label_smoothing, convert=not chunked
    )
    reads = _reads(input)
    scale = grad.to(compute_dtype(input.dtype))

    def rows_gradient(z: Tensor, rows: Rows, scale: Tensor) -> Tensor:
        softmax = torch.softmax(z, 1)  # exp(x - max) / sum: more exact than exp(x - lse)
        if z.shape[1] > 0 and reads:
            bad = softmax[:, 0].isnan()
            softmax = _patch_rows(
                softmax,
                bad,
                z,
                rows,
                lambda z, _: torch.softmax(_clamp(z, input.dtype), 1),
                in_place,
            )
        return softmax_gradient(softmax, None, rows, class_weight, scale, 0, in_place)

    if not chunked:
        return rows_gradient(x, rows, scale).to(input.dtype), None, None, None, None
    gradient = torch.empty_like(input)
    for part in _row_chunks(input):
        z = _in_compute_dtype(input[part], input.dtype, reads)
        gradient[part] = rows_gradient(z, rows.chunk(part.start, part.stop), scale[part])
    return gradient, None, None, None, None


@_cross_entropy_rows.jvp
def _cross_entropy_rows_jvp(
    input_t: Tensor,
    index_t: Tensor | None,
    ignored_t: Tensor | None,
    weight_t: Tensor | None,
    allowed_t: Tensor | None,
    input: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    label_smoothing: float,
) -> Tensor:
    x, rows, class_weight = _class_rows(input, index, ignored, weight, allowed, label_smoothing)
    tangent = input_t.to(x.dtype)
    result = row_jvp(x, tangent, rows, class_weight)
    if _reads(input) and bool(result.isnan().any()):
        result = row_jvp(_clamp(x, input.dtype), tangent, rows, class_weight)  # rare: all rows
    return result  # the forward's compute dtype


@follows_autocast("float32")
@checks_config(_cross_entropy_config)
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    where: Tensor | None = None,
) -> Tensor:
    r"""Cross-entropy between logits and class indices or class probabilities.

    The loss for classification: softmax over the class dimension, then the negative
    log-likelihood of the target. Takes what :func:`torch.nn.functional.cross_entropy` takes and
    gives the same values and gradients. With class indices, a plain eager call that builds a
    graph, from 16384 logits to 2**22, runs a hand-written step: the log-softmax that its
    forward keeps (as torch does) becomes the gradient, in place. From 65536 logits otherwise
    (transforms, compiling, larger inputs), a hand-written backward keeps no ``(N, C)`` buffer
    alive between forward and backward and builds the gradient in its one ``(N, C)`` buffer;
    so does the plain eager step of half-precision logits from 65536 (class indices or
    probabilities), which computes by float32 chunks. Below both, autograd through a plain
    composition is the faster (an ``autograd.Function`` costs more per call than it saves
    there).

    .. math::
        \ell_n = -\sum_c w_c\, q_{n,c} \log \frac{e^{x_{n,c}}}{\sum_k e^{x_{n,k}}},
        \qquad q_n = (1 - \varepsilon)\, t_n + \varepsilon / C

    where :math:`t_n` is the one-hot class (class-index target) or the given probabilities, and
    :math:`\varepsilon` is ``label_smoothing``. With class indices, ``"mean"`` divides by
    :math:`\sum_n w_{y_n}` over the rows not ignored; with probabilities, by the number of rows.
    Gradient: :math:`\partial \ell_n / \partial x_n = (\sum_c a_c)\,\mathrm{softmax}(x_n) - a`
    with :math:`a_c = w_c q_{n,c}`.

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``, floating dtype.
            Below 65536 logits and with probability targets, a ``+inf`` logit acts as the
            largest finite one: the float64 limit where that is finite (loss 0 and zero
            gradient with the target at that class; torch gives nan), about ``finfo.max``
            where the limit is ``+inf``; the large-input path still gives nan there.
        target: class indices (integer dtype) of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``,
            values in ``[0, C)`` or ``ignore_index`` (range checked in eager mode only, at the
            cost of one value read back to the host); or class probabilities (floating dtype) of
            ``input``'s shape, whose dtype, if wider, promotes the computation and the result
            (float32 logits with float64 probabilities give float64, as in torch).
        weight: optional per-class weight, shape ``(C,)``, ``input``'s dtype.
        ignore_index: class index whose rows contribute nothing (class-index targets only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: :math:`\varepsilon` in ``[0, 1]``.
        where: optional bool mask, one of two kinds, told apart by its number of dimensions.
            A *row mask*, broadcastable to the unreduced loss shape (``(N,)``,
            ``(N, d1, ..., dK)``, ``()`` unbatched): only the ``True`` rows count, a masked row
            adds nothing and gets exactly zero gradient (also where its logits hold inf or
            NaN; its target is not read, not even range-checked); ``"mean"`` divides by the
            included rows' :math:`\sum w_{y_n}` (class indices; rows with ``ignore_index``
            still count nothing) or their number (probabilities), and is 0 with every row
            masked. A *class mask*, with the logits' number of dimensions and broadcastable to
            their shape (``(N, C)``, ``(1, C)`` for one vocabulary shared by every row,
            ``(N, C, d1, ..., dK)``, ``(C,)`` unbatched): the ``False`` classes are removed from
            the softmax, as if their logits were ``-inf`` (exactly zero probability and zero
            gradient, whatever they hold); label smoothing spreads :math:`\varepsilon / C'`
            over the :math:`C'` classes left in the row; probability mass on a removed class is
            dropped (it adds nothing, and its target gets zero gradient); a class index on a
            removed class gives ``+inf``, the true value (its log-probability is ``-inf``; the
            gradient stays finite). A row with no class left counts as a masked row. A ``(C,)``
            mask for batched logits is refused: it would read as a row mask when ``N == C``.

    Returns:
        Shape of the target without the class dimension (``(N, d1, ..., dK)``, ``(N,)`` or
        ``()``) for ``"none"`` (0 at masked rows), else a 0-dim tensor.

    Raises:
        TypeError: integer logits; a target of neither integer nor floating dtype; a ``where``
            that is not a bool tensor.
        ValueError: a target, weight or ``where`` of the wrong shape, bad
            ``reduction``/``label_smoothing``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2395, 0.0949])
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), label_smoothing=0.1)
        tensor(0.3339)
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), where=torch.tensor([True, False]))
        tensor(0.2395)
        >>> allowed = torch.tensor([[True, True, False], [True, True, True]])  # a class mask
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), where=allowed, reduction="none")
        tensor([0.1269, 0.0949])
    """
    if _step_call(input, target, weight, where, reduction, ignore_index, label_smoothing):
        # every check holds already (see _step_call): the training step, with the one read
        try:
            half = input.dtype in _HALF and input.numel() >= _HALF_STEP_FROM
            return _CrossEntropyStep.run(
                _HALF_STEP_RULE if half else _CLASS_STEP_RULE,
                input,
                target,
                (input.shape[1], ignore_index, weight, reduction, label_smoothing),
            )
        except _Fallback:  # log-probabilities not all finite: the paths below give the limits
            pass
        except (RuntimeError, IndexError):  # gather's own range check: the clear error
            check_class_indices("cross_entropy", target, input.shape[1], ignore_index)
            raise
    if _soft_step_call(input, target, weight, where, reduction, ignore_index, label_smoothing):
        try:  # every check holds already (see _soft_step_call)
            return _CrossEntropyStep.run(
                _SOFT_STEP_RULE, input, target, (weight, reduction, label_smoothing)
            )
        except _Fallback:  # not finite: the paths below give the limits
            pass
    if _fast(input, target, weight, where, reduction, ignore_index, label_smoothing):
        # every check holds already (see _fast): the small composition, with the one read
        num_classes = input.shape[1]
        try:
            # Building a graph, or with label smoothing, the read also tells whether every
            # log-probability is finite: then the product form, which saves the clamp, the
            # gather and the guards against 0 * -inf (and in backward the clamp's and the
            # gather's kernels). The plain forward without them costs less clamped and gathered
            # (no test to pay for).
            if label_smoothing > 0 or (input.requires_grad and torch.is_grad_enabled()):
                work_weight = weight
                if input.dtype in _HALF:  # the log-softmax (and all after it) in fp32
                    log_probs = torch.log_softmax(input, 1, torch.float32)
                    work_weight = None if weight is None else weight.float()
                else:
                    log_probs = torch.log_softmax(input, 1)
                index, ignored, finite = _fast_read(log_probs, target, num_classes, ignore_index)
                if finite:
                    moderate = _cross_entropy_moderate(
                        log_probs, index, ignored, work_weight, label_smoothing, reduction
                    )
                    return moderate if moderate.dtype == input.dtype else moderate.to(input.dtype)
            else:
                index, ignored = gathered_index_mask(target, num_classes, ignore_index)
            return _cross_entropy_small(
                input, index, ignored, weight, label_smoothing, reduction, input.shape[:1]
            )
        except (RuntimeError, IndexError):  # gather's own range check: the clear error
            check_class_indices("cross_entropy", target, num_classes, ignore_index)
            raise
    if _soft_fast(input, target, weight, where, reduction, ignore_index, label_smoothing):
        loss = _soft_cross_entropy_eager(input, target, weight, label_smoothing, reduction)
        if loss is not None:
            return loss
    return _cross_entropy(
        input, target, weight, ignore_index, reduction, label_smoothing, None, where
    )


def _fast_read(
    log_probs: Tensor, target: Tensor, num_classes: int, ignore_index: int
) -> tuple[Tensor, Tensor | None, bool]:
    """The fast path's one host read: class indices with ignored entries at 0 and the mask of
    ignored entries (``None`` when none may be ignored: see :func:`gathered_index_mask`), and
    whether every log-probability is finite (no inf or nan logit, no overflow in ``x - max``)."""
    # The log-probabilities are <= 0 or nan: their sum (nan if any is nan, -inf if any is) is
    # finite only if each is (an overflow of the sum only sends a finite call to the general
    # path), and a sum costs a quarter of a min (64x1000: 3 us against 12 us). 0 * it
    # (alpha=0) is nan unless it is finite, else 0: one number tells both the class index bound
    # and the finiteness. .data: no graph node for the test.
    size = log_probs.data.sum()
    if ignore_index < 0:
        value = float(torch.add(target.min(), size, alpha=0))  # the one host read
        maybe_ignored = not value >= 0
    elif ignore_index >= num_classes:
        value = float(torch.add(target.max(), size, alpha=0))
        maybe_ignored = not value < num_classes
    else:
        value = float(size)
        maybe_ignored = True
    finite = math.isfinite(value)
    if not maybe_ignored:
        return target, None, finite
    ignored = target == ignore_index
    return target.masked_fill(ignored, 0), ignored, finite


def _soft_fast(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
    label_smoothing: object,
) -> bool:
    """A plain eager CPU call with class probabilities: float32/float64 logits ``(N, C)`` or
    ``(N, C, d1, ..., dK)`` (none empty; half precision below :data:`_FUSED_MIN_ELEMENTS`,
    computed in float32), a target of their shape and dtype, ``ignore_index`` negative, a valid
    ``label_smoothing`` and :func:`_eager_call`'s conditions: every check of
    :func:`_cross_entropy` holds already."""
    return (
        type(input) is Tensor
        and type(target) is Tensor
        and target.dtype == input.dtype
        and input.dim() >= 2
        and target.shape == input.shape
        and input.numel() > 0
        and (input.dtype not in _HALF or input.numel() < _FUSED_MIN_ELEMENTS)
        and type(ignore_index) is int
        and ignore_index < 0
        and _smoothing(label_smoothing)
        and _eager_call(input, target, weight, where, reduction, ignore_index, _FAST_CLASS_DTYPES)
    )


def _soft_cross_entropy_eager(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    label_smoothing: float,
    reduction: Reduction,
) -> Tensor | None:
    """Class probabilities on a call :func:`_soft_fast` admits: ``-sum(a * log_softmax(x), 1)``
    over the class dimension in place (no rows reshape, no clamps), torch's own graph
    (log_softmax, mul, sum, neg, mean). Its one read, of the reduced loss, tells whether the
    result is finite; if not (a ``+inf`` logit, a ``-inf`` log-probability under a zero target
    weight: ``0 * -inf``), ``None``: the general path, whose clamps give the limit. Where it is
    finite, torch's arithmetic: ``"mean"`` is the sum over every element divided by the number
    of rows (the general path sums each row first: the same up to rounding), ``"none"`` the
    general path's, bitwise for ``(N, C)`` logits (whose rows are the logits themselves).
    Half precision computes in float32 (the log-softmax's ``dtype``, the target and weight
    converted), and its loss and gradients are rounded once."""
    num_classes = input.shape[1]
    coefficients = target
    half = input.dtype in _HALF
    if half:
        coefficients = target.float()
        weight = None if weight is None else weight.float()
    if label_smoothing > 0:
        coefficients = coefficients * (1 - label_smoothing) + label_smoothing / num_classes
    if weight is not None:
        coefficients = coefficients * weight.view((num_classes,) + (1,) * (input.dim() - 2))
    log_probs = torch.log_softmax(input, 1, torch.float32) if half else torch.log_softmax(input, 1)
    products = coefficients * log_probs
    if reduction == "none":
        loss = -products.sum(1)
        total = loss.detach().sum()
    else:
        # one sum over everything, as torch (a sum over the class dimension of K-dim logits
        # strides through memory)
        loss = -products.sum()
        loss = loss / (input.numel() // num_classes) if reduction == "mean" else loss
        total = loss.detach()
    if not math.isfinite(float(total)):  # the one read
        return None
    return loss.to(input.dtype) if half else loss


def _fast(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
    label_smoothing: object,
) -> bool:
    """A plain eager CPU call on small ``(N, C)`` floating logits (``N > 0``; half precision
    computes in fp32), int64 class indices of shape ``(N,)``, a valid ``label_smoothing`` and
    :func:`_eager_call`'s conditions: every check of :func:`_cross_entropy` holds already, and
    the small path's value read may run."""
    return (
        _index_call(input, target)
        and input.numel() < _FUSED_MIN_ELEMENTS
        and _smoothing(label_smoothing)
        and _eager_call(input, target, weight, where, reduction, ignore_index, _FAST_CLASS_DTYPES)
    )


# -- the eager training step of the class-index call ------------------------------------------
#
# A plain eager call that builds a graph and whose class weight (if any) takes no gradient
# (_step_call): the log-softmax and the target's gathered log-probability in the forward, as
# the composition, but the log-softmax kept as the slope's buffer. The backward writes the
# gradient into it in place, ``exp(lp) f`` with ``f`` subtracted at the target (``f`` the row's
# share of the output gradient), where autograd of the composition keeps the log-softmax too
# but allocates the gradient besides. (N, C) logits from _KERNEL_MIN_CLASSES classes take
# torch's own operations for it (nll_loss's backward into zeros, then log_softmax's kernel
# ``g - exp(lp) sum(g)``, into the kept buffer): torch's bits, and its fast exp; fewer classes
# and K-dim logits, where that kernel is slow, ``exp_``, the scatter and the scaling in place.
# Label smoothing adds a spread ``b w`` over the classes (:class:`_Smoothed`).


# The step from this many logits: below it its Python forward and backward cost more than the
# passes they save (at 64x10 1.16x the composition's time, at 64x300 the same, at 256x100 0.9x).
_CLASS_STEP_FROM = 1 << 14
# ... and below this many (16 MiB of fp32). The step keeps the log-softmax alive from the forward
# to the backward, as torch does; a training step's peak is at the end of its forward, where that
# buffer adds to every activation, so from here on the large path, which keeps nothing, runs.
# Half precision has no limit: from _FUSED_MIN_ELEMENTS its step keeps nothing (_HALF_STEP_RULE).
_CLASS_STEP_UNTIL = {
    torch.float32: 1 << 22,
    torch.float64: 1 << 22,
    torch.bfloat16: math.inf,
    torch.float16: math.inf,
}


class _Fallback(Exception):
    """The step's forward met log-probabilities that are not all finite: the caller runs the
    composition, whose clamp and gather give the limits."""


class _CrossEntropyStep(SlopeStep):
    """The eager training step of cross_entropy with class indices (``config``: the number of
    classes, ``ignore_index``, the class weight, the reduction and the label smoothing)."""


_StepConfig = tuple[int, int, "Tensor | None", str, float]
# What the forward keeps: the targets as an (N, 1, d1, ..., dK) index, and the rows'
# coefficients c (of that shape) with loss = -sum_n c_n lp[n, y_n] (None: 1 / N for "mean",
# else 1); with label smoothing (:class:`_Smoothed`) three coefficients.
_StepKept = tuple[Tensor, "Tensor | _Smoothed | None"]


class _Smoothed(NamedTuple):
    """The rows' coefficients with label smoothing ``eps``, numbers or of the index column's
    shape: the loss is ``-sum_n (a_n lp[n, y_n] + b_n sum_c w_c lp[n, c])``, and its gradient
    by the logits ``A_n softmax - a_n onehot - b_n w`` with ``A_n = a_n + b_n sum_c w_c``
    (``w`` the class weight, ``None``: all ones)."""

    a: Tensor | float
    b: Tensor | float
    total: Tensor | float  # A
    weight: Tensor | None  # w, shaped to broadcast along the class dimension


def _class_step(
    input: Tensor, target: Tensor, config: _StepConfig
) -> tuple[Tensor, Tensor, _StepKept]:
    """The loss from the target's gathered log-probability (:func:`_gathered_step`, or
    :func:`_smoothed_step`), and the log-softmax as the slope's buffer. ``(N, C)`` logits or
    K-dim ones, ``(N, C, d1, ..., dK)``, in place: the class dimension is dimension 1
    throughout."""
    num_classes, ignore_index, weight, _, label_smoothing = config
    if input.dtype in _HALF:  # the log-softmax (and all after it) in fp32, rounded once
        log_probs = torch.log_softmax(input, 1, torch.float32)
        weight = None if weight is None else weight.float()
    else:
        log_probs = torch.log_softmax(input, 1)
    index, ignored, finite = _fast_read(log_probs, target, num_classes, ignore_index)
    if not finite:
        raise _Fallback
    column = index.unsqueeze(1)  # (N, 1, d1, ..., dK)
    picked = log_probs.gather(1, column)
    smooth = None
    if label_smoothing > 0:
        smooth = _smooth_sum(log_probs, _class_weight_column(weight, log_probs), False)
    value, coefficients = _step_value(picked, smooth, index, ignored, weight, target, config)
    value = value if value.dtype == input.dtype else value.to(input.dtype)
    return value, log_probs, (column, coefficients)


def _step_value(
    picked: Tensor,
    smooth: Tensor | None,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    target: Tensor,
    config: _StepConfig,
) -> tuple[Tensor, Tensor | _Smoothed | None]:
    """The steps' loss, in the compute dtype, and the rows' coefficients for the backward, from
    the gathered log-probabilities and (label smoothing) their weighted sums ``smooth``;
    ``weight`` the class weight in the compute dtype."""
    num_classes, _, _, reduction, label_smoothing = config
    coefficients: Tensor | _Smoothed | None
    if smooth is not None:
        value, coefficients = _smoothed_step(
            picked,
            smooth,
            index,
            ignored,
            _class_weight_column(weight, picked),
            reduction,
            label_smoothing,
            num_classes,
        )
    else:
        value, coefficients = _gathered_step(picked, index, ignored, weight, reduction)
    return (value.view(target.shape) if reduction == "none" else value), coefficients


def _gathered_step(
    picked: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    reduction: str,
) -> tuple[Tensor, Tensor | None]:
    """The steps' loss from the gathered log-probabilities ``picked``, ``(N, 1, d1, ..., dK)``
    (flat for ``"none"``), and the rows' coefficients for the backward (:data:`_StepKept`)."""
    if weight is None and ignored is None:
        if reduction == "none":
            value = picked.view(-1).neg()
        else:
            # -(sum / N), mean's bits negated, in two ops (mean is a sum and a division)
            value = picked.sum().div_(-picked.numel()) if reduction == "mean" else -picked.sum()
        return value, None
    flat_ignored = None if ignored is None else ignored.reshape(-1)
    row_weights = _row_weights(index.reshape(-1), weight, flat_ignored, picked.dtype)
    assert row_weights is not None
    if reduction == "none":
        value = picked.view(-1) * row_weights.neg()
    elif reduction == "sum":
        value = picked.view(-1).dot(row_weights.neg())
    else:  # torch's weighted mean: the weighted sum over the sum of the weights
        total = row_weights.sum()
        value = picked.view(-1).dot(row_weights).div_(total).neg_()
        if weight is None:
            # the kept rows' 1 / total (the same bits as 1 / total), 0 on ignored rows, also
            # where every row is ignored (the loss is 0 / 0 = nan, as in torch, and the
            # gradient 0): no mask pass
            row_weights = row_weights * torch.where(total > 0, total.reciprocal(), 0.0)
        else:
            row_weights = row_weights.div(total)
            if flat_ignored is not None:  # zero on ignored rows, also where 1 / total is not
                row_weights = row_weights.masked_fill_(flat_ignored, 0)
    return value, row_weights.view(picked.shape)


def _class_weight_column(weight: Tensor | None, like: Tensor) -> Tensor | None:
    """The class weight shaped to broadcast along dimension 1 of a tensor with ``like``'s number
    of dimensions (logits, or a column of them)."""
    if weight is None:
        return None
    return weight.view((1, -1) + (1,) * (like.dim() - 2))


def _smooth_sum(log_probs: Tensor, class_weight: Tensor | None, in_place: bool) -> Tensor:
    """``sum_c w_c lp[n, c]`` over the class dimension, ``(N, d1, ..., dK)``; ``in_place``
    multiplies ``log_probs`` (a buffer the caller drops) by the weight."""
    if class_weight is None:
        return log_probs.sum(1)
    weighted = log_probs.mul_(class_weight) if in_place else log_probs.mul(class_weight)
    return weighted.sum(1)


def _smoothed_step(
    picked: Tensor,
    smooth: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    class_weight: Tensor | None,
    reduction: str,
    label_smoothing: float,
    num_classes: int,
) -> tuple[Tensor, _Smoothed]:
    """:func:`_gathered_step` with label smoothing, torch's loss: ``(1 - eps)`` times the
    target's term plus ``eps / C`` times ``-sum_c w_c lp[n, c]`` (``smooth``,
    :func:`_smooth_sum`), the mean (of both) over the sum of the rows' target weights ``w[y_n]``
    (their number without a class weight); ``class_weight`` as :func:`_class_weight_column`."""
    rows = index.numel()
    keep_eps, smooth_eps = 1 - label_smoothing, label_smoothing / num_classes
    weight = None if class_weight is None else class_weight.view(-1)
    weight_sum: Tensor | float = float(num_classes) if weight is None else weight.sum()
    flat_index = index.reshape(-1)
    flat_ignored = None if ignored is None else ignored.reshape(-1)
    row_weights = _row_weights(flat_index, weight, flat_ignored, picked.dtype)
    # the rows that count: without a class weight, the row weights themselves
    kept = row_weights
    if weight is not None:
        kept = _row_weights(flat_index, None, flat_ignored, picked.dtype)
    picked, smooth = picked.view(-1), smooth.view(-1)
    a: Tensor | float = keep_eps if row_weights is None else row_weights * keep_eps
    b: Tensor | float = smooth_eps if kept is None else kept * smooth_eps
    if reduction == "none":
        target_term = picked if row_weights is None else picked * row_weights
        smooth_term = smooth if kept is None else smooth * kept
        value = torch.add(target_term * keep_eps, smooth_term, alpha=smooth_eps).neg_()
    else:
        target_sum = picked.sum() if row_weights is None else picked.dot(row_weights)
        smooth_sum = smooth.sum() if kept is None else smooth.dot(kept)
        value = torch.add(target_sum * keep_eps, smooth_sum, alpha=smooth_eps).neg_()
        if reduction == "mean":
            total = rows if row_weights is None else row_weights.sum()
            value = value / total  # every row ignored: 0 / 0 = nan, as in torch
            a, b = a / total, b / total
            if flat_ignored is not None:  # and the gradient 0 there, also where 1 / total is not
                assert isinstance(a, Tensor) and isinstance(b, Tensor)
                a, b = a.masked_fill_(flat_ignored, 0), b.masked_fill_(flat_ignored, 0)
    column_shape = (index.shape[0], 1, *index.shape[1:])
    # per-row coefficients as a column; a number (or a 0-dim one, over a total) as it is
    a = a.view(column_shape) if isinstance(a, Tensor) and a.dim() == 1 else a
    b = b.view(column_shape) if isinstance(b, Tensor) and b.dim() == 1 else b
    return value, _Smoothed(a, b, a + b * weight_sum, class_weight)


def _step_factor(grad: Tensor, config: _StepConfig, kept: _StepKept) -> Tensor:
    """The row factors of the gradient ``(softmax - onehot) f`` without label smoothing:
    ``f = c grad``, of the column's shape ``(N, 1, d1, ..., dK)``, or a number broadcast to
    every row."""
    reduction = config[3]
    column, coefficients = kept
    assert not isinstance(coefficients, _Smoothed)
    if reduction == "none":
        grad = grad.unsqueeze(1)
        return grad if coefficients is None else coefficients * grad
    if coefficients is not None:
        return coefficients * grad
    return grad / column.numel() if reduction == "mean" else grad


def _class_step_scale(slope: Tensor, grad: Tensor, config: _StepConfig, kept: _StepKept) -> Tensor:
    if _kernel_gradient(slope):
        gradient = _log_softmax_gradient(slope, grad, config, kept, True)
    elif isinstance(kept[1], _Smoothed):
        gradient = _smoothed_gradient(slope.exp_(), grad, config, kept, True)
    else:
        factor = _step_factor(grad.to(slope.dtype), config, kept)
        gradient = slope.exp_().scatter_(1, kept[0], -1.0, reduce="add").mul_(factor)
    return gradient if gradient.dtype == grad.dtype else gradient.to(grad.dtype)


# log_softmax's derivative kernel, the op autograd runs for it (aten, not exported by name)
_log_softmax_backward = torch._log_softmax_backward_data  # pyright: ignore[reportPrivateImportUsage]
# torch's log-softmax backward kernel from this many classes, (N, C) only: below it, and over
# dimension 1 of K-dim logits, it ran slower than exp (float32, 1 thread: 9.3x exp's time at
# C = 10, 1.0x at 21, 0.64x at 32, 0.51x from 200; 1.33x at 8x21x128x128).
_KERNEL_MIN_CLASSES = 32


def _kernel_gradient(log_probs: Tensor) -> bool:
    return log_probs.dim() == 2 and log_probs.shape[1] >= _KERNEL_MIN_CLASSES


def _log_softmax_gradient(
    log_probs: Tensor, grad: Tensor, config: _StepConfig, kept: _StepKept, in_place: bool
) -> Tensor:
    """The gradient by the logits from the log-probabilities, as autograd of the composition
    forms it: ``g`` the loss's gradient by ``log_probs`` (``-f`` at the target,
    :func:`_step_factor`; with label smoothing ``-a onehot - b w``, :class:`_Smoothed`), then
    torch's log-softmax backward kernel, ``g - exp(lp) sum_c g``, written into ``log_probs`` if
    ``in_place`` (each element read before it is written: the same bits,
    tests/test_cross_entropy_speed.py). Torch's gradient bit for bit, and from
    :data:`_KERNEL_MIN_CLASSES` classes faster than ``exp`` alone (the kernel's exp is the
    softmax kernels' one)."""
    column, coefficients = kept
    dtype = log_probs.dtype
    if isinstance(coefficients, _Smoothed):
        scale = grad.to(dtype)
        scale = scale.unsqueeze(1) if config[3] == "none" else scale
        spread = coefficients.b * scale
        if coefficients.weight is not None:
            spread = spread * coefficients.weight
        target = (coefficients.a * scale).neg().expand(column.shape)
        given = torch.zeros_like(log_probs)
        if in_place:
            given = given.sub_(spread).scatter_add_(1, column, target)
        else:
            given = (given - spread).scatter_add(1, column, target)
    else:
        picked = _step_factor(grad.to(dtype), config, kept).neg().expand(column.shape)
        given = torch.zeros_like(log_probs)
        given = given.scatter_(1, column, picked) if in_place else given.scatter(1, column, picked)
    out = log_probs if in_place else None
    return _log_softmax_backward(given, log_probs, 1, dtype, out=out)


def _smoothed_gradient(
    softmax: Tensor, grad: Tensor, config: _StepConfig, kept: _StepKept, in_place: bool
) -> Tensor:
    """``(A softmax - a onehot - b w) grad`` (:class:`_Smoothed`), in ``softmax``'s buffer if
    ``in_place``, else in the same ops out of place (the same bits)."""
    column, smoothed = kept
    assert isinstance(smoothed, _Smoothed)
    scale = grad.to(softmax.dtype)
    scale = scale.unsqueeze(1) if config[3] == "none" else scale
    spread = smoothed.b * scale
    target = (smoothed.a * scale).neg().expand(column.shape)
    if in_place:
        gradient = softmax.mul_(smoothed.total * scale)
        if smoothed.weight is None:
            gradient = gradient.sub_(spread)
        else:
            gradient = gradient.addcmul_(spread, smoothed.weight, value=-1)
        gradient = gradient.scatter_add_(1, column, target)
    else:
        gradient = softmax * (smoothed.total * scale)
        if smoothed.weight is None:
            gradient = gradient - spread
        else:
            gradient = torch.addcmul(gradient, spread, smoothed.weight, value=-1)
        gradient = gradient.scatter_add(1, column, target)
    return gradient  # softmax's dtype


def _class_step_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: _StepConfig, kept: _StepKept
) -> Tensor:
    """:func:`_class_step_scale` from the input, in differentiable ops, rounded as it is."""
    if input.dtype in _HALF:
        log_probs = torch.log_softmax(input, 1, torch.float32)
    else:
        log_probs = torch.log_softmax(input, 1)
    if _kernel_gradient(log_probs):
        return _log_softmax_gradient(log_probs, grad, config, kept, False).to(input.dtype)
    if isinstance(kept[1], _Smoothed):
        return _smoothed_gradient(log_probs.exp(), grad, config, kept, False).to(input.dtype)
    factor = _step_factor(grad.to(log_probs.dtype), config, kept)
    one_hot = torch.zeros_like(log_probs).scatter_(1, kept[0], 1.0)
    return ((log_probs.exp() - one_hot) * factor).to(input.dtype)


_CLASS_STEP_RULE = SlopeRule(_class_step, _class_step_scale, _class_step_gradient)


# -- the half-precision training step ---------------------------------------------------------
#
# bf16/fp16 from _HALF_STEP_FROM logits: the float32 step's arithmetic, by chunks of about
# _HALF_CHUNK_ELEMENTS logits along dimension 0 (rows, or whole samples of K-dim logits), keeping
# no (N, C) buffer from the forward to the backward. A float32 log-softmax kept (the step above)
# takes twice torch's memory; a half-precision one rounds the gradient's softmax (exp(lp) of a
# rounded lp is off by |lp| units of its last place). Each pass converts a chunk into one float32
# buffer it owns and runs torch's log-softmax (forward) or softmax (backward) in place there
# (``out=`` its input: the kernels read each element before they write it, the same bits as out
# of place, tests/test_cross_entropy_speed.py); the gradient is written once, rounded once, into
# its one (N, C) buffer. On the CPU torch has no half-to-float softmax kernel, and a fresh
# float32 buffer per chunk and operation cost more in page faults than the arithmetic. Its bits
# do not depend on the chunks (softmax works row by row, sample by sample), so the double
# backward's differentiable ops over every row give the same ones.

# The half-precision step's chunks: about this many logits (1 MiB of float32, within a core's
# L2 cache, so that the conversion, the softmax and the scaling each read it from there). At
# 64x32000 bf16, 2**18 ran in 0.81x torch's time, 2**20 in 1.30x, 2**16 in 0.87x, 2**14 in 1.42x.
_HALF_CHUNK_ELEMENTS = 1 << 18
# ... from this many logits: below it the float32 log-softmax kept (_CLASS_STEP_RULE) ran faster
# (bf16 64x1000: 1.47x torch's time against 2.20x).
_HALF_STEP_FROM = _FUSED_MIN_ELEMENTS

_V = TypeVar("_V")


def _part(value: _V, part: slice) -> _V:
    """``value``'s rows ``part`` if it is a tensor of rows (a column), else ``value``."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return cast(_V, value[part])
    return value


def _float_chunks(input: Tensor, *others: Tensor) -> Iterator[tuple[slice, list[Tensor]]]:
    """Each chunk of ``input``'s rows (whole samples of K-dim logits; about
    :data:`_HALF_CHUNK_ELEMENTS` logits) and the same rows of each of ``others`` (its shape),
    in float32, each in one buffer that every chunk reuses (the caller is done with one before
    it asks for the next). Whole samples: torch's softmax kernels over dimension 1 round a range
    of K-dim positions otherwise than the whole (measured), and ranges ran slower."""
    parts = _row_chunks(input, _HALF_CHUNK_ELEMENTS)
    size = input[parts[0]].numel()
    buffers = [torch.empty(size, dtype=torch.float32) for _ in (input, *others)]
    for part in parts:
        chunks = [t[part] for t in (input, *others)]
        numel = chunks[0].numel()
        yield part, [b[:numel].view(c.shape).copy_(c) for b, c in zip(buffers, chunks, strict=True)]


def _half_class_step(
    input: Tensor, target: Tensor, config: _StepConfig
) -> tuple[Tensor, None, _StepKept]:
    """:func:`_class_step` for half-precision logits, in float32 by chunks; nothing kept of
    ``(N, C)``. A read tells whether the log-probabilities it sums are finite (else
    :class:`_Fallback`)."""
    num_classes, ignore_index, weight, _, label_smoothing = config
    index, ignored = gathered_index_mask(target, num_classes, ignore_index)
    column = index.unsqueeze(1)  # (N, 1, d1, ..., dK)
    weight = None if weight is None else weight.float()
    class_weight = _class_weight_column(weight, input)
    picked = torch.empty(column.shape)
    smooth = torch.empty(target.shape) if label_smoothing > 0 else None
    for part, (rows,) in _float_chunks(input):
        log_probs = torch.log_softmax(rows, 1, out=rows)
        picked[part] = log_probs.gather(1, column[part])
        if smooth is not None:
            smooth[part] = _smooth_sum(log_probs, class_weight, True)
    # a +inf or nan logit (nan throughout its row), a log-probability below float32's range
    # (-inf) where the loss reads it: the composition's limits. The sum is finite only if each
    # term is (an overflow only sends a finite call there).
    size = picked.sum() if smooth is None else picked.sum() + smooth.sum()
    if not math.isfinite(float(size)):  # the one read of the values
        raise _Fallback
    value, coefficients = _step_value(picked, smooth, index, ignored, weight, target, config)
    return value.to(input.dtype), None, (column, coefficients)


def _half_rows_gradient(
    softmax: Tensor, share: Tensor, config: _StepConfig, kept: _StepKept, in_place: bool
) -> Tensor:
    """The float32 gradient of rows from their float32 softmax, ``share`` the rows' share of
    the output gradient (:func:`_step_factor` without label smoothing): in the softmax's buffer
    if ``in_place``, else out of place in the same ops (the same bits)."""
    column = kept[0]
    if isinstance(kept[1], _Smoothed):
        return _smoothed_gradient(softmax, share, config, kept, in_place)
    if in_place:
        return softmax.scatter_(1, column, -1.0, reduce="add").mul_(share)
    shift = torch.full(column.shape, -1.0, dtype=softmax.dtype)
    return softmax.scatter_add(1, column, shift) * share


def _half_class_step_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: _StepConfig, kept: _StepKept
) -> Tensor:
    """The gradient ``(softmax - onehot) f`` (label smoothing: :class:`_Smoothed`): with
    ``create_graph``, differentiable ops over every row; else by chunks, each written once."""
    column, coefficients = kept
    share = grad.float()
    if not isinstance(coefficients, _Smoothed):
        share = _step_factor(share, config, kept)
    if torch.is_grad_enabled():
        softmax = torch.softmax(input, 1, torch.float32)
        return _half_rows_gradient(softmax, share, config, kept, False).to(input.dtype)
    gradient = torch.empty(input.shape, dtype=input.dtype)
    for part, (rows,) in _float_chunks(input):
        if isinstance(coefficients, _Smoothed):
            a, b, total, weight = coefficients
            chunk: Tensor | _Smoothed | None = _Smoothed(
                _part(a, part), _part(b, part), _part(total, part), weight
            )
        else:
            chunk = _part(coefficients, part)
        softmax = torch.softmax(rows, 1, out=rows)
        rows_kept = (column[part], chunk)
        gradient[part] = _half_rows_gradient(softmax, _part(share, part), config, rows_kept, True)
    return gradient


# (no slope kept: the backward always calls _half_class_step_gradient)
_HALF_STEP_RULE = SlopeRule(_half_class_step, _class_step_scale, _half_class_step_gradient)


# -- the training step of class probabilities -------------------------------------------------
#
# The same chunks for a probability target: the forward's log-softmax and the backward's softmax
# in the owned buffer, the coefficients ``a = w ((1 - eps) q + eps / C)`` in a second one; the
# gradient ``(softmax sum_c a_c - a) f`` written once. Nothing of (N, C) is kept, where autograd
# of the composition keeps the log-softmax and builds three (N, C) buffers in its backward.

_SoftConfig = tuple["Tensor | None", str, float]


def _soft_coefficients(q: Tensor, config: _SoftConfig, in_place: bool) -> Tensor:
    """``a = w ((1 - eps) q + eps / C)`` in float32: in ``q``'s buffer (float32) if
    ``in_place``, else out of place in the same ops."""
    weight, _, label_smoothing = config
    class_weight = _class_weight_column(None if weight is None else weight.float(), q)
    if not in_place:
        a = q.float()
        if label_smoothing > 0:
            a = a * (1 - label_smoothing) + label_smoothing / q.shape[1]
        return a if class_weight is None else a * class_weight
    if label_smoothing > 0:
        q = q.mul_(1 - label_smoothing).add_(label_smoothing / q.shape[1])
    return q if class_weight is None else q.mul_(class_weight)


def _soft_step(input: Tensor, target: Tensor, config: _SoftConfig) -> tuple[Tensor, None, None]:
    """``-sum_c a_c log_softmax(x)_c`` per row, reduced (``"mean"``: over the number of rows),
    in float32 by chunks; a read tells whether it is finite (else :class:`_Fallback`)."""
    reduction = config[1]
    loss = torch.empty(input.shape[:1] + input.shape[2:])
    for part, (rows, a) in _float_chunks(input, target):
        a = _soft_coefficients(a, config, True)
        loss[part] = torch.log_softmax(rows, 1, out=rows).mul_(a).sum(1)
    total = loss.sum()
    # a +inf or nan logit, 0 * -inf (a -inf log-probability under a zero coefficient): the
    # composition's limits
    if not math.isfinite(float(total)):  # the one read
        raise _Fallback
    if reduction == "none":
        value = loss.neg_()
    else:
        value = total.neg_() if reduction == "sum" else total.neg_().div_(loss.numel())
    return value.to(input.dtype), None, None


def _soft_share(grad: Tensor, input: Tensor, reduction: str) -> Tensor:
    """Each row's share of the output gradient, in float32: a column, or one number."""
    share = grad.float()
    if reduction == "none":
        return share.unsqueeze(1)
    return share / (input.numel() // input.shape[1]) if reduction == "mean" else share


def _soft_step_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: _SoftConfig, kept: None
) -> Tensor:
    """``(softmax sum_c a_c - a) f``: with ``create_graph``, differentiable ops over every
    row; else by chunks, each written once."""
    share = _soft_share(grad, input, config[1])
    if torch.is_grad_enabled():
        # sum_c a_c by the chunks' sums (a sum over the classes of K-dim positions in ranges
        # rounds otherwise than one over whole samples); it takes no gradient
        total = torch.empty(input[:, :1].shape)
        for part, (a,) in _float_chunks(target):
            total[part] = _soft_coefficients(a, config, True).sum(1, keepdim=True)
        a = _soft_coefficients(target, config, False)
        softmax = torch.softmax(input, 1, torch.float32)
        return ((softmax * total - a) * share).to(input.dtype)
    gradient = torch.empty(input.shape, dtype=input.dtype)
    for part, (rows, a) in _float_chunks(input, target):
        a = _soft_coefficients(a, config, True)
        softmax = torch.softmax(rows, 1, out=rows)
        gradient[part] = softmax.mul_(a.sum(1, keepdim=True)).sub_(a).mul_(_part(share, part))
    return gradient


# (its forward keeps no slope: the backward always calls _soft_step_gradient, never the scale)
_SOFT_STEP_RULE = SlopeRule(_soft_step, _class_step_scale, _soft_step_gradient)
# The step from this many logits, by dtype: half precision where its small composition ends;
# float32 (N, C) logits from 2**21, where the composition's (N, C) buffers no longer fit in cache
# (fp32, 1 thread, paired medians against torch: 64x32000 with label smoothing 0.99x against the
# composition's 1.63x, 4096x1000 0.73x against 1.16x, 64x128000 0.75x against 0.95x; plain and
# weighted within the noise). K-dim float32 logits keep the composition: whole samples of
# 21x128x128 are chunks beyond a core's cache, and the step ran at 1.35x against 1.00x.
_SOFT_STEP_FROM = {
    torch.bfloat16: _FUSED_MIN_ELEMENTS,
    torch.float16: _FUSED_MIN_ELEMENTS,
    torch.float32: 1 << 21,
}


def _soft_step_call(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
    label_smoothing: object,
) -> TypeGuard[Tensor]:
    """A plain eager call that builds a graph for the logits only: class probabilities of the
    logits' shape and dtype (from :data:`_SOFT_STEP_FROM` logits by dtype; float32 as ``(N, C)``
    only), a target and class
    weight that take no gradient, ``ignore_index`` negative, and :func:`_eager_call`'s
    conditions."""
    return (
        type(input) is Tensor
        and type(target) is Tensor
        and target.dtype == input.dtype
        and input.dim() >= 2
        and target.shape == input.shape
        and input.numel() >= _SOFT_STEP_FROM.get(input.dtype, math.inf)
        and (input.dim() == 2 or input.dtype in _HALF)
        and input.requires_grad
        and not target.requires_grad
        and torch.is_grad_enabled()
        and (weight is None or (type(weight) is Tensor and not weight.requires_grad))
        and type(ignore_index) is int
        and ignore_index < 0
        and _smoothing(label_smoothing)
        and _eager_call(input, target, weight, where, reduction, ignore_index, _FAST_CLASS_DTYPES)
    )


def _step_call(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
    label_smoothing: object,
) -> TypeGuard[Tensor]:
    """A plain eager call that builds a graph (label smoothing or not): logits ``(N, C)`` or
    ``(N, C, d1, ..., dK)`` of at least :data:`_CLASS_STEP_FROM` elements and fewer than
    :data:`_CLASS_STEP_UNTIL` (by dtype), int64 class indices of the matching shape, a class
    weight (if any) that takes no gradient, and :func:`_eager_call`'s conditions."""
    return (
        type(input) is Tensor
        and type(target) is Tensor
        and target.dtype is torch.int64
        and input.dim() >= 2
        and input.numel() >= _CLASS_STEP_FROM
        and target.shape == input.shape[:1] + input.shape[2:]
        and input.numel() < _CLASS_STEP_UNTIL.get(input.dtype, 0)
        and _smoothing(label_smoothing)
        and input.requires_grad
        and torch.is_grad_enabled()
        and (weight is None or (type(weight) is Tensor and not weight.requires_grad))
        and _eager_call(input, target, weight, where, reduction, ignore_index, _FAST_CLASS_DTYPES)
    )


# -- the eager steps' gates --------------------------------------------------------------------
#
# Inlined tests of the tensors' own conditions (the house checks cost about as much as the loss
# at 64x10), the mode by one call of eager_mode; shared by _fast, _soft_fast and _nll_fast.


def _index_call(input: object, target: object) -> TypeGuard[Tensor]:
    """``(N, C)`` logits (``N > 0``) and int64 class indices of shape ``(N,)``."""
    return (
        type(input) is Tensor
        and type(target) is Tensor
        and target.dtype is torch.int64
        and input.dim() == 2
        and target.dim() == 1
        and 0 < target.shape[0] == input.shape[0]
    )


def _smoothing(label_smoothing: object) -> bool:
    return type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0


def _eager_call(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
    dtypes: tuple[torch.dtype, ...],
) -> bool:
    """What every eager step of this file asks of a call, after its own tests: no mask, plain
    tensors, logits of a dtype in ``dtypes``, both on the CPU, a
    class weight (if any) of shape ``(C,)`` and the logits' dtype, a valid ``reduction`` and
    ``ignore_index``, value reads on (:func:`value_reads_allowed`) and :func:`eager_mode`."""
    return (
        where is None
        and type(input) is Tensor
        and type(target) is Tensor
        and input.dtype in dtypes
        and input.is_cpu
        and target.is_cpu
        and (
            weight is None
            or (
                type(weight) is Tensor
                and weight.dtype == input.dtype
                and weight.shape == input.shape[1:2]
            )
        )
        and reduction in REDUCTIONS
        and type(ignore_index) is int
        and value_reads_allowed()
        and eager_mode(input, target)
    )


_FAST_DTYPES = (torch.float32, torch.float64)
# class indices: half precision too (the small composition computes in fp32)
_FAST_CLASS_DTYPES = (*_FAST_DTYPES, *_HALF)


def _cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    label_smoothing: float,
    fused: bool | None,
    where: Tensor | None = None,
) -> Tensor:
    """:func:`cross_entropy`; ``fused`` forces the custom-backward path on or off (tests)."""
    fn = "cross_entropy"
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    _cross_entropy_config(
        reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing
    )
    probabilities, out_shape = class_shapes(fn, input, target)
    check_class_weight(fn, weight, input)
    keep = allowed = None
    if where is not None:
        classes = softmax_mask(fn, where, out_shape, tuple(input.shape))
        keep, allowed = _masks(where, classes, out_shape, input)
    if probabilities:
        if ignore_index >= 0:  # as torch; a negative one cannot be a class, so it is harmless
            fail(
                ValueError,
                fn,
                "ignore_index",
                "be negative for a floating-point target (ignore_index is not supported for "
                "class probabilities)",
                ignore_index,
            )
        return _soft_cross_entropy(
            input, target, weight, label_smoothing, reduction, out_shape, keep, allowed
        )
    rows = as_rows(input)
    flat_target = as_index(target if target.dim() == 1 else target.reshape(-1))
    if keep is not None:
        # a masked row is an ignored one (its target is not read), counted nowhere
        flat_target = torch.where(keep, flat_target, ignore_index)
    num_classes = rows.shape[1]
    index, ignored = class_index_mask(fn, flat_target, num_classes, ignore_index, gathered=True)
    try:
        return _class_cross_entropy(
            rows,
            index,
            ignored,
            weight,
            reduction,
            label_smoothing,
            fused,
            out_shape,
            keep,
            allowed,
        )
    except (RuntimeError, IndexError):  # gather's, nll_loss's own range check: the clear error
        check_class_indices(fn, flat_target, num_classes, ignore_index)
        raise


def _class_cross_entropy(
    rows: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    reduction: Reduction,
    label_smoothing: float,
    fused: bool | None,
    out_shape: tuple[int, ...],
    keep: Tensor | None,
    allowed: Tensor | None,
) -> Tensor:
    """Class indices, ``(M, C)`` logits: the two paths."""
    if fused is None:
        # An empty batch takes the general path too: its mean is 0 / 0 = nan, as in torch.
        fused = rows.numel() >= _FUSED_MIN_ELEMENTS or rows.shape[0] == 0
    if allowed is not None:
        # removed classes at -inf; ignored rows (masked ones among them) finite, at 0
        rows = masked(allowed, rows, -math.inf)
        rows = rows if ignored is None else rows.masked_fill(ignored.unsqueeze(1), 0)
    elif keep is not None and fused:
        rows = masked(keep.unsqueeze(1), rows, 0.0)  # the small path masks ignored rows itself
    if not fused and allowed is None:
        return _cross_entropy_small(
            rows, index, ignored, weight, label_smoothing, reduction, out_shape, keep is not None
        )
    if fused:
        loss = _cross_entropy_rows(rows, index, ignored, weight, allowed, label_smoothing)
    else:  # a class mask on a small input: autograd through the same forward
        loss = _cross_entropy_rows_forward(rows, index, ignored, weight, allowed, label_smoothing)
    if reduction == "none":
        return loss.to(rows.dtype).view(out_shape)
    row_weights = _row_weights(index, weight, ignored, loss.dtype)
    return reduce(loss, reduction, where=keep, mean_weight=row_weights).to(rows.dtype)


def _soft_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    label_smoothing: float,
    reduction: Reduction,
    out_shape: tuple[int, ...],
    keep: Tensor | None,
    allowed: Tensor | None,
) -> Tensor:
    """Class probabilities, in the promoted dtype of ``input`` and ``target`` (as torch)."""
    dtype = torch.promote_types(input.dtype, target.dtype)
    if keep is None and allowed is None and _soft_chunked(input, target, weight):
        loss = _soft_rows(as_rows(input), as_rows(target), weight, label_smoothing)
    else:
        x, q = _soft_in_compute_dtype(as_rows(input), as_rows(target), dtype)
        class_weight = None if weight is None else weight.to(x.dtype)
        x, rows = masked_probability_rows(x, q, class_weight, label_smoothing, keep, allowed)
        loss = row_loss(x, rows, None)
    # reduced in the compute dtype (half precision: float32), then rounded once
    if keep is None:
        return reduce(loss.reshape(out_shape), reduction).to(dtype)
    return reduce(loss.reshape(out_shape), reduction, where=keep.view(out_shape)).to(dtype)


def _soft_in_compute_dtype(x: Tensor, q: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Logits and probabilities of ``dtype`` in its compute dtype; a ``+inf`` logit at the
    largest finite value of ``dtype`` (softmax's limit, as for class indices)."""
    work = compute_dtype(dtype)
    return x.to(work).clamp(max=_LARGEST[dtype]), q.to(work)


# From this many half-precision logits the chunked Function beats autograd through the float32
# composition (bf16, 1 thread, time against it: 1.33x at 64 x 10, 1.05x at 64 x 100, 0.78x at
# 64 x 250, 0.53x at 64 x 1000).
_SOFT_HALF_FROM = 1 << 13


def _soft_chunked(input: Tensor, target: Tensor, weight: Tensor | None) -> bool:
    """Half-precision logits and probabilities of one dtype on a large plain eager call, with
    no gradient wanted of the class weight: :func:`_soft_rows` by row chunks (never in forward
    mode, which :func:`eager_mode` excludes: it needs no jvp)."""
    return (
        input.dtype in _HALF
        and target.dtype == input.dtype
        and input.numel() >= _SOFT_HALF_FROM
        and (weight is None or not weight.requires_grad)
        and plain_eager(input, target)
        and eager_mode(input, target)
    )


def _soft_chunk(
    input: Tensor, target: Tensor, weight: Tensor | None, label_smoothing: float, rows: slice
) -> tuple[Tensor, Rows]:
    """Rows ``rows`` of half-precision ``(M, C)`` logits and probabilities in float32 (fresh
    buffers: the clamp of ``+inf`` is in place)."""
    z, q = input[rows].float().clamp_(max=_LARGEST[input.dtype]), target[rows].float()
    class_weight = None if weight is None else weight.float()
    return z, probability_rows(q, class_weight, label_smoothing)


def _row_chunks(input: Tensor, elements: int = _CHUNK_ELEMENTS) -> list[slice]:
    """Slices of about ``elements`` logits along dimension 0 (rows of ``(M, C)`` logits,
    samples of K-dim ones; one, empty, for M = 0)."""
    size = max(1, elements // max(1, math.prod(input.shape[1:])))
    return [slice(i, i + size) for i in range(0, max(1, input.shape[0]), size)]


def _soft_rows_forward(
    input: Tensor, target: Tensor, weight: Tensor | None, label_smoothing: float
) -> Tensor:
    """Loss per row, ``(M,)`` in float32, of half-precision ``(M, C)`` logits and class
    probabilities: each chunk of rows in float32 (no float32 copy of either). With value reads
    on, ``-a . log_softmax(z)`` as one product (a chunk's read finds the rows where it is not
    finite, which :func:`row_loss` recomputes: ``0 * -inf``, log-probabilities beyond range)."""
    reads = _reads(input)
    losses = []
    for rows in _row_chunks(input):
        z, chunk = _soft_chunk(input, target, weight, label_smoothing, rows)
        if not reads:
            losses.append(row_loss(z, chunk, None))
            continue
        assert chunk.dense is not None
        loss = torch.linalg.vecdot(chunk.dense, torch.log_softmax(z, 1)).neg_()
        bad = ~loss.isfinite()
        losses.append(_patch_rows(loss, bad, z, chunk, lambda z, rows: row_loss(z, rows, None)))
    return losses[0] if len(losses) == 1 else torch.cat(losses)


_soft_rows = custom_backward(_soft_rows_forward)


@_soft_rows.backward
def _soft_rows_backward(
    grad: Tensor, input: Tensor, target: Tensor, weight: Tensor | None, label_smoothing: float
) -> tuple[Tensor, Tensor | None, None]:
    # d/dx = grad (A softmax(x) - a), d/dq = -grad (1 - eps) w log_softmax(x)
    in_place = in_place_safe(grad, input, target)
    if not in_place:  # a graph of the backward (double backward): one differentiable expression
        z, every = _soft_chunk(input, target, weight, label_smoothing, slice(None))
        class_weight = None if weight is None else weight.float()
        gradient = softmax_gradient(torch.softmax(z, 1), None, every, None, grad, 0, False)
        target_term = target_gradient(z, every, class_weight, label_smoothing, grad)
        return gradient.to(input.dtype), target_term.to(target.dtype), None
    # each chunk's gradient written once in the input's dtype
    gradient = torch.empty_like(input)
    target_grad = torch.empty_like(target) if target.requires_grad else None
    class_weight = None if weight is None else weight.float()
    for rows in _row_chunks(input):
        z, chunk = _soft_chunk(input, target, weight, label_smoothing, rows)
        scale = grad[rows]
        if target_grad is not None:
            target_grad[rows] = target_gradient(z, chunk, class_weight, label_smoothing, scale)
        softmax = torch.softmax(z, 1)  # exp(x - max) / sum: more exact than exp(x - lse)
        gradient[rows] = softmax_gradient(softmax, None, chunk, None, scale, 0, True)
    return gradient, target_grad, None


def _cross_entropy_small(
    input: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    label_smoothing: float,
    reduction: Reduction,
    out_shape: tuple[int, ...],
    masked_mean: bool = False,
) -> Tensor:
    """Small inputs: ``-sum(log_softmax(x) * a)``, with the mean's denominator folded into the
    target weights ``a``; without label smoothing, the target's log-probability alone (gathered:
    a ``-inf`` logit elsewhere, a masked class, gives no ``0 * -inf``). ``masked_mean``: a
    ``where`` was given, so a mean over nothing is 0 (not torch's 0 / 0)."""
    if ignored is not None:
        # An ignored row gives exactly nothing, value and gradient, whatever it holds (padding
        # rows may be nan or inf): masked before the log-softmax, so its row is finite.
        input = input.masked_fill(ignored.unsqueeze(1), 0)
    # A +inf logit acts as the largest finite one: the float64 limit where it is finite (loss 0
    # and zero gradient with the target there; log 2 for two of them), no inf - inf = nan.
    dtype = input.dtype
    input = input.clamp(max=_LARGEST[dtype])
    if dtype in _HALF:
        log_probs = torch.log_softmax(input, 1, torch.float32)
    else:
        log_probs = torch.log_softmax(input, 1)
    if weight is None and ignored is None:
        row_weights = None
    else:
        row_weights = _row_weights(index, weight, ignored, log_probs.dtype)
    total: Tensor | int = 1  # the mean's denominator; an empty batch never comes here
    if reduction == "mean":
        if row_weights is None:
            total = input.shape[0]
        else:
            weight_sum = row_weights.sum()
            # with a mask, a mean over no rows is 0
            total = torch.where(weight_sum == 0, 1, weight_sum) if masked_mean else weight_sum
    if label_smoothing == 0:
        picked = log_probs.gather(1, index.unsqueeze(1))  # (M, 1)
        if row_weights is None:  # no weight, nothing ignored: total is a number
            if reduction == "none":
                loss = picked.view(out_shape).neg()
            else:
                loss = picked.sum() * (-1 / total)
            return loss if loss.dtype == dtype else loss.to(dtype)
        scale = row_weights.unsqueeze(1) * (-1 / total)
        if reduction == "mean" and ignored is not None:
            scale = scale.masked_fill(ignored.unsqueeze(1), 0)  # zero, even where 1 / total is not
        products = picked * scale
    else:
        class_weight = None if weight is None else weight.to(log_probs.dtype)
        # twice the coefficients (the halving of a divisor is exact) times half the
        # log-probabilities, finite also where a row's logits span more than the dtype's range
        # (3e38 and -3e38): eps / C times a log-probability of -6e38 is the true loss, not inf
        coefficients = log_softmax_coefficients(
            index, row_weights, ignored, class_weight, label_smoothing, log_probs, total / 2
        )
        z = input if input.dtype == log_probs.dtype else input.to(log_probs.dtype)
        halves = scaled_log_softmax(z, log_probs, 0.5)
        # a coefficient of 0 (a class weight of 0, a smoothing weight that underflowed) adds
        # exactly 0, also at a log-probability of -inf (a masked logit): no 0 * -inf
        products = torch.where(coefficients == 0, 0, halves * coefficients)
    if reduction == "mean" and ignored is not None:
        loss = products.sum() + 0.0 / total  # every row ignored: 0 / 0 = nan, as in torch
    elif reduction != "none":
        loss = products.sum()
    elif label_smoothing == 0:
        loss = products.view(out_shape)
    elif len(out_shape) == 1:  # (N,): no view, which would be one more node in the graph
        loss = products.sum(1)
    else:
        loss = products.sum(1).view(out_shape)
    return loss if loss.dtype == dtype else loss.to(dtype)


def _cross_entropy_moderate(
    log_probs: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    label_smoothing: float,
    reduction: Reduction,
) -> Tensor:
    """The fast path's (:func:`_fast`) product form on ``log_probs``, all finite
    (:func:`_fast_read`; without label smoothing and with many classes, the gather of
    :func:`_gathered_moderate`): ``sum(log_probs * coefficients)``, the target weights, the
    sign and the mean's denominator folded into one ``(N, C)`` array (no graph). Autograd
    differentiates it with three graph nodes (log_softmax, mul, sum), and ignored rows need no
    masking of their (finite) logits: a coefficient of 0 gives them exactly nothing. The same
    values as :func:`_cross_entropy_small` up to float rounding (its clamp, gather and guards
    against ``0 * -inf`` are for infinite log-probabilities, which cannot occur here)."""
    if label_smoothing == 0 and log_probs.shape[1] >= _GATHER_MIN_CLASSES:
        return _gathered_moderate(log_probs, index, ignored, weight, reduction)
    total: Tensor | int = 1  # the mean's denominator
    if weight is None and ignored is None and label_smoothing == 0:
        # the plain call: -1 / total at the target, scattered into zeros
        picked = -1 / log_probs.shape[0] if reduction == "mean" else -1.0
        coefficients = torch.zeros_like(log_probs).scatter_(1, index.unsqueeze(1), picked)
        return _product_sum(log_probs * coefficients, reduction, ignored, total)
    row_weights = None
    if weight is not None or ignored is not None:
        row_weights = _row_weights(index, weight, ignored, log_probs.dtype)
    if reduction == "mean":
        total = log_probs.shape[0] if row_weights is None else row_weights.sum()
    coefficients = log_softmax_coefficients(
        index, row_weights, ignored, weight, label_smoothing, log_probs, total, in_place=True
    )
    return _product_sum(log_probs * coefficients, reduction, ignored, total)


def _product_sum(
    products: Tensor, reduction: Reduction, ignored: Tensor | None, total: Tensor | int
) -> Tensor:
    if reduction == "none":
        return products.sum(1)
    if reduction == "mean" and ignored is not None:
        return products.sum() + 0.0 / total  # every row ignored: 0 / 0 = nan, as in torch
    return products.sum()


# Without label smoothing, from this many classes on the fast path gathers the target's
# log-probability rather than multiply by an (N, C) array of coefficients: at 64x1000 (fp32 and
# bf16) the gather took 0.90x the product's time, at 64x300, 256x100 and 64x10 1.06-1.14x.
_GATHER_MIN_CLASSES = 512


def _gathered_moderate(
    log_probs: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    reduction: Reduction,
) -> Tensor:
    """:func:`_cross_entropy_moderate` without label smoothing: the target's log-probability
    gathered, ``(N, 1)``, then weighted and summed (log_softmax, gather, mean, neg: four graph
    nodes, one more than the product form's, but no ``(N, C)`` multiply in forward and
    backward: faster from :data:`_GATHER_MIN_CLASSES` classes on). Ignored rows have a row
    weight of exactly 0 and a finite log-probability."""
    picked = log_probs.gather(1, index.unsqueeze(1))
    if weight is None and ignored is None:
        if reduction == "none":
            return picked.view(-1).neg()
        return picked.mean().neg() if reduction == "mean" else picked.sum().neg()
    row_weights = _row_weights(index, weight, ignored, log_probs.dtype)
    assert row_weights is not None
    if reduction == "none":
        return picked.view(-1) * row_weights.neg()
    if reduction == "sum":
        return picked.view(-1).dot(row_weights.neg())
    total = row_weights.sum()
    scale = row_weights * (-1 / total)
    if ignored is None:
        return picked.view(-1).dot(scale)
    # zero on ignored rows, even where 1 / total is not finite; every row ignored: 0 / 0 = nan
    return picked.view(-1).dot(scale.masked_fill(ignored, 0)) + 0.0 / total


# -- nll_loss --------------------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_nll_loss_config)
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Negative log-likelihood of class indices under given log-probabilities.

    Use after a ``log_softmax`` (or any log-probabilities); ``cross_entropy`` fuses the two.

    .. math::
        \ell_n = -w_{y_n} x_{n, y_n}, \qquad
        \text{mean} = \sum_n \ell_n \Big/ \sum_{n:\, y_n \ne \text{ignore}} w_{y_n}

    Args:
        input: log-probabilities, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``.
        target: class indices, integer dtype, ``input``'s shape without the class dimension;
            values in ``[0, C)`` or ``ignore_index`` (range checked in eager mode only).
        weight: optional per-class weight, shape ``(C,)``.
        ignore_index: class index whose elements contribute nothing.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool row mask, broadcastable to ``target``'s shape: only the ``True``
            elements count (a masked one adds nothing and gets zero gradient, whatever its
            log-probabilities hold; its target is not read). ``"mean"`` divides by the
            included elements' :math:`\sum w_{y_n}` (0 with every element masked). There is
            no class mask here (the log-probabilities are already normalised): use
            :func:`cross_entropy`'s.

    Returns:
        ``target``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError, ValueError, IndexError: as :func:`cross_entropy`.

    Examples:
        >>> log_probs = torch.tensor([[-0.1, -2.5], [-1.2, -0.4]])
        >>> funcloss.nll_loss(log_probs, torch.tensor([0, 1]), reduction="none")
        tensor([0.1000, 0.4000])
    """
    if _nll_fast(input, target, weight, where, reduction, ignore_index):
        return _nll_loss_eager(input, target, weight, ignore_index, reduction)
    fn = "nll_loss"
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    _nll_loss_config(reduction=reduction, ignore_index=ignore_index)
    check_integer(fn, target=target)
    _, out_shape = class_shapes(fn, input, target)
    check_class_weight(fn, weight, input)
    rows = as_rows(input)
    flat_target = as_index(target.reshape(-1))
    keep = None
    if where is not None:
        check_where(fn, where, out_shape)
        keep = where.expand(out_shape).reshape(-1)
        flat_target = torch.where(keep, flat_target, ignore_index)  # not read, counted nowhere
    index, ignored = class_index_mask(fn, flat_target, rows.shape[1], ignore_index, gathered=True)
    try:
        picked = rows.gather(1, index.unsqueeze(1))
    except RuntimeError:  # gather's own range check (gathered=True): the clear IndexError
        check_class_indices(fn, flat_target, rows.shape[1], ignore_index)
        raise
    loss = _nll_reduce(picked, index, ignored, weight, reduction, keep)
    return loss.reshape(out_shape) if reduction == "none" else loss


def _nll_reduce(
    picked: Tensor,
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    reduction: Reduction,
    keep: Tensor | None = None,
) -> Tensor:
    """nll_loss from the gathered ``(M, 1)`` log-probabilities (``(M,)`` for ``"none"``)."""
    # pow(1) is the identity, but its backward, 1 * x^0, depends on the input: the gradient is
    # connected to it, so a double backward gives zeros (as torch), not "does not require grad".
    loss = -picked.squeeze(1).pow(1)
    row_weights = _row_weights(index, weight, ignored, loss.dtype)
    if ignored is not None:
        # masked_fill as well as a zero weight: with every element ignored the mean is
        # 0 / 0 = nan, as in torch, and the gradient is still zero (not 0 * inf), as in torch;
        # before the weight, so a nan log-probability there never meets it.
        loss = loss.masked_fill(ignored, 0)
    if weight is not None and row_weights is not None:  # a class weight gives row weights
        loss = loss * row_weights
    if reduction == "none":
        return loss
    return reduce(loss, reduction, where=keep, mean_weight=row_weights)


def _nll_fast(
    input: object,
    target: object,
    weight: object,
    where: object,
    reduction: object,
    ignore_index: object,
) -> bool:
    """A plain eager CPU call on ``(N, C)`` floating log-probabilities (``N > 0``), int64 class
    indices of shape ``(N,)`` and :func:`_eager_call`'s conditions: every check of
    :func:`nll_loss` holds already, and its one value read may run."""
    return _index_call(input, target) and _eager_call(
        input, target, weight, where, reduction, ignore_index, _NLL_FAST_DTYPES
    )


_NLL_FAST_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _picked_forward(input: Tensor, index: Tensor) -> Tensor:
    """``input.gather(1, index)`` of ``(N, C)`` log-probabilities and ``(N, 1)`` indices."""
    return input.gather(1, index)


# Large half-precision eager calls: autograd's gather backward is a scatter_add, which in
# bf16/fp16 goes through a float32 buffer of the input's size (8192 x 1000 bf16: 3x torch's
# memory, 16 ms); one index_copy_ of the N picked entries into zeros is the same gradient
# (1.3 ms). In float32 scatter_add is direct, and this Function's call cost more (1.22x torch
# against 1.08x).
_picked = custom_backward(_picked_forward)


@_picked.backward
def _picked_backward(grad: Tensor, input: Tensor, index: Tensor) -> tuple[Tensor, None]:
    rows, num_classes = input.shape
    flat = torch.arange(rows, device=index.device) * num_classes + index.squeeze(1)
    zeros = torch.zeros(input.numel(), dtype=grad.dtype, device=grad.device)
    if in_place_safe(grad, input):  # no graph of the backward: into the fresh zeros
        return zeros.index_copy_(0, flat, grad.reshape(-1)).view(input.shape), None
    return zeros.index_copy(0, flat, grad.reshape(-1)).view(input.shape), None


@_picked.jvp
def _picked_jvp(input_t: Tensor, index_t: Tensor | None, input: Tensor, index: Tensor) -> Tensor:
    return input_t.gather(1, index)


def _nll_loss_eager(
    input: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int, reduction: Reduction
) -> Tensor:
    """:func:`nll_loss`'s composition, op for op (the same values and gradients, bitwise), on a
    call :func:`_nll_fast` admits: no checks left to run but the class-index read, and without a
    class weight or an ignored row, no squeeze: ``mean(-x[n, y_n])`` from the ``(N, 1)``
    gathered column, four graph nodes (gather, pow, neg, mean)."""
    num_classes = input.shape[1]
    index, ignored = gathered_index_mask(target, num_classes, ignore_index)  # the one read
    try:
        if input.dtype in _HALF and input.numel() >= _FUSED_MIN_ELEMENTS:
            picked = _picked(input, index.unsqueeze(1))
        else:
            picked = input.gather(1, index.unsqueeze(1))
    except RuntimeError:  # gather's own range check: the clear IndexError
        check_class_indices("nll_loss", target, num_classes, ignore_index)
        raise
    if weight is None and ignored is None and reduction != "none":
        loss = -picked.pow(1)  # pow(1): see _nll_reduce (a double backward gives zeros)
        return loss.mean() if reduction == "mean" else loss.sum()
    return _nll_reduce(picked, index, ignored, weight, reduction)
