"""Softmax classification losses: cross_entropy and nll_loss."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_reduction,
    fail,
    in_place_safe,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._reduction import reduce, weighted_mean

_HALF_DTYPES = (torch.float16, torch.bfloat16)


# -- shapes ------------------------------------------------------------------------------------


def _class_shapes(fn: str, input: Tensor, target: Tensor) -> tuple[bool, tuple[int, ...]]:
    """Validate ``input``/``target`` shapes; return (probability target?, shape of "none" loss).

    ``input`` is ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``; a class-index target has
    ``input``'s shape without the class dimension, a probability target ``input``'s shape.
    """
    shape = tuple(input.shape)  # tuples: slicing a torch.Size costs more per call
    if not shape:
        fail(ValueError, fn, "input", "have shape (C,), (N, C) or (N, C, d1, ..., dK)", "()")
    index_shape = shape[1:] if len(shape) == 1 else shape[:1] + shape[2:]
    if isinstance(target, Tensor) and target.is_floating_point():
        if target.shape != input.shape:
            fail(
                ValueError,
                fn,
                "target",
                f"have shape {shape_str(input.shape)} (class probabilities) or "
                f"{shape_str(index_shape)} (class indices, integer dtype) for input of shape "
                f"{shape_str(input.shape)}",
                f"{shape_str(target.shape)} ({target.dtype})",
            )
        return True, index_shape
    check_integer(fn, target=target)
    if target.shape != index_shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(index_shape)} (class indices) for input of shape "
            f"{shape_str(input.shape)}",
            shape_str(target.shape),
            hint=f"For class probabilities pass a float target of shape {shape_str(input.shape)}.",
        )
    return False, index_shape


def _rows(input: Tensor) -> Tensor:
    """``(C,)``/``(N, C)``/``(N, C, d...)`` -> ``(M, C)`` with the class dimension last."""
    if input.dim() == 1:
        return input.unsqueeze(0)
    if input.dim() == 2:
        return input
    return input.movedim(1, -1).reshape(-1, input.shape[1])


def _ignored(target: Tensor, ignore_index: int, masked: bool) -> Tensor | None:
    """Mask of ignored entries; ``None`` when the caller knows nothing is ignored."""
    return target == ignore_index if masked else None


def _row_weights(target: Tensor, weight: Tensor | None, ignored: Tensor | None) -> Tensor | None:
    """Each row's class weight, zero where the row is ignored: the weighted mean's terms.

    ``None`` stands for all ones (no weight and nothing ignored).
    """
    if weight is None:
        return None if ignored is None else (~ignored).to(torch.get_default_dtype())
    if ignored is None:
        return weight.gather(0, target)
    return weight.gather(0, target.masked_fill(ignored, 0)).masked_fill(ignored, 0)


# -- cross_entropy ---------------------------------------------------------------------------
#
# Class-index targets: the loss per row, with a = (1 - eps) w_y onehot(y) + (eps / C) w (the row's
# target weights) and A = sum_c a_c, is
#     loss = sum_c a_c (lse - x_c) = A lse - a . x,      d loss / dx = A softmax(x) - a.
# Large inputs go through a custom backward, which buys memory and speed: it saves only its
# inputs (no (N, C) log-softmax kept alive between forward and backward) and writes the gradient
# into the one (N, C) buffer of the recomputed softmax. It is built from differentiable ops, so
# double backward is exact. Small inputs skip it (_cross_entropy_small): there the per-call
# overhead of an autograd.Function outweighs what it saves, and autograd is exact too.
# ``masked=False`` below means "nothing is ignored" (known in eager mode), saving the masks.

# Below this many logits, autograd through the forward beats the custom Function's overhead.
_FUSED_MIN_ELEMENTS = 1 << 16


def _accumulate_dtype(x: Tensor) -> torch.dtype | None:
    # bf16/fp16 logits accumulate the log-sum-exp and softmax in fp32.
    return torch.float32 if x.dtype in _HALF_DTYPES else None


def _logsumexp(x: Tensor) -> Tensor:
    return torch.logsumexp(x.float() if x.dtype in _HALF_DTYPES else x, dim=1)


def _smoothing_parts(input: Tensor, weight: Tensor | None) -> tuple[float | Tensor, Tensor]:
    """The smoothing weights' sum and their dot product with each row: (sum w, x . w)."""
    if weight is None:
        return float(input.shape[1]), input.sum(1)
    return weight.sum(), input @ weight


# Plain eager, large inputs: the forward runs over row chunks of about this many logits (4 MiB
# of fp32), writing each chunk's log-softmax into one reused buffer, so that no (N, C) array is
# allocated (a fresh large buffer costs page faults on every call). At N=4096, C=32000, 4 MiB
# chunks ran as fast as 16 MiB ones (1 MiB: about 10% slower), and the freed buffer, which the
# C allocator keeps resident, adds 4 MiB rather than 16 MiB to the process's peak.
_CHUNK_ELEMENTS = 1 << 20


def _cross_entropy_rows_forward(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    masked: bool,
    label_smoothing: float,
) -> Tensor:
    """Loss per row, shape ``(M, 1)``, for ``(M, C)`` logits and ``(M,)`` class indices (0 where
    ignored). The trailing 1 saves a view in the autograd graph (it matters at small sizes)."""
    ignored = _ignored(target, ignore_index, masked)
    index = (target if ignored is None else target.masked_fill(ignored, 0)).unsqueeze(1)
    dtype = _accumulate_dtype(input)
    if input.numel() > _CHUNK_ELEMENTS and in_place_safe(input):
        rows = max(1, _CHUNK_ELEMENTS // input.shape[1])
        buffer = torch.empty(rows, input.shape[1], dtype=dtype or input.dtype, device=input.device)
        losses = []
        for chunk, chunk_index in zip(input.split(rows), index.split(rows), strict=True):
            log_probs = torch.log_softmax(chunk, 1, dtype, out=buffer[: chunk.shape[0]])
            losses.append(_rows_loss(log_probs, chunk_index, weight, label_smoothing))
        loss = torch.cat(losses)
    else:
        log_probs = torch.log_softmax(input, 1, dtype)
        loss = _rows_loss(log_probs, index, weight, label_smoothing)
    if ignored is not None:
        loss = loss.masked_fill(ignored.unsqueeze(1), 0)
    return loss if loss.dtype == input.dtype else loss.to(input.dtype)


def _rows_loss(
    log_probs: Tensor, index: Tensor, weight: Tensor | None, label_smoothing: float
) -> Tensor:
    """``-log p_y`` (times ``w_y``), plus the smoothing term: exactly as torch computes it."""
    loss = -log_probs.gather(1, index)
    if weight is not None:
        loss = loss * weight[index]
    if label_smoothing > 0:
        _, dot = _smoothing_parts(log_probs, None if weight is None else weight.to(log_probs.dtype))
        loss = (1 - label_smoothing) * loss - (
            label_smoothing / log_probs.shape[1]
        ) * dot.unsqueeze(1)
    return loss


_cross_entropy_rows = custom_backward(_cross_entropy_rows_forward)


def _target_weights(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    masked: bool,
    label_smoothing: float,
    grad: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(safe target, grad masked on ignored rows, grad * A, grad * (1 - eps) w_y), per row."""
    ignored = _ignored(target, ignore_index, masked)
    if ignored is not None:
        grad = grad.masked_fill(ignored, 0)
    safe = target if ignored is None else target.masked_fill(ignored, 0)
    picked = grad * (1 - label_smoothing)
    if weight is not None:
        picked = picked * weight.gather(0, safe)
    total = picked
    if label_smoothing > 0:
        weight_sum = input.shape[1] if weight is None else weight.sum()
        total = picked + grad * (label_smoothing * weight_sum / input.shape[1])
    return safe, grad, total, picked


def _smoothing_term(grad: Tensor, weight: Tensor | None, label_smoothing: float, c: int) -> Tensor:
    """The ``(eps / C) w`` part of ``a``, times each row's gradient: ``(M, 1)`` or ``(M, C)``."""
    scale = (grad * (label_smoothing / c)).unsqueeze(1)
    return scale if weight is None else scale * weight


@_cross_entropy_rows.backward
def _cross_entropy_rows_backward(
    grad: Tensor,
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    masked: bool,
    label_smoothing: float,
) -> tuple[Tensor, None, None]:
    # d/dx = grad * (A softmax(x) - a); ignored rows have A = a = 0.
    safe, grad, total, picked = _target_weights(
        input, target, weight, ignore_index, masked, label_smoothing, grad.squeeze(1)
    )
    index = safe.unsqueeze(1)
    softmax = torch.softmax(input, dim=1, dtype=_accumulate_dtype(input))
    scale = total.unsqueeze(1).to(softmax.dtype)
    target_term = -picked.unsqueeze(1).to(softmax.dtype)
    smoothing = label_smoothing > 0
    if smoothing:
        smoothing_term = _smoothing_term(grad, weight, label_smoothing, input.shape[1])
    if in_place_safe(grad):
        # No double backward: build the gradient in place in the softmax's buffer, the only
        # (M, C) one.
        result = softmax.mul_(scale)
        if smoothing:
            result.sub_(smoothing_term)
        return result.scatter_add_(1, index, target_term).to(input.dtype), None, None
    result = softmax * scale
    if smoothing:
        result = result - smoothing_term
    return result.scatter_add(1, index, target_term).to(input.dtype), None, None


@_cross_entropy_rows.jvp
def _cross_entropy_rows_jvp(
    input_t: Tensor,
    target_t: Tensor,
    weight_t: Tensor | None,
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    masked: bool,
    label_smoothing: float,
) -> Tensor:
    # d loss = A (softmax . dx) - a . dx, i.e. the backward's formula with grad = 1.
    ones = torch.ones(input.shape[0], dtype=input.dtype, device=input.device)
    safe, ones, total, picked = _target_weights(
        input, target, weight, ignore_index, masked, label_smoothing, ones
    )
    softmax = torch.softmax(input, dim=1)
    picked_t = input_t.gather(1, safe.unsqueeze(1)).squeeze(1)
    result = total * (softmax * input_t).sum(1) - picked * picked_t
    if label_smoothing > 0:
        _, dot = _smoothing_parts(input_t, weight)
        result = result - (label_smoothing / input.shape[1]) * dot * ones
    return result.unsqueeze(1).to(input.dtype)


def _soft_cross_entropy_rows(
    input: Tensor, target: Tensor, weight: Tensor | None, label_smoothing: float
) -> Tensor:
    """Per-row loss for class-probability targets: ``A lse - a . x`` with ``a = w p'``."""
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / input.shape[1]
    if weight is not None:
        target = target * weight
    lse = _logsumexp(input)
    return (target.sum(1) * lse - (target * input).sum(1)).to(input.dtype)


@follows_autocast("float32")
def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    r"""Cross-entropy between logits and class indices or class probabilities.

    The loss for classification: softmax over the class dimension, then the negative
    log-likelihood of the target. Takes what :func:`torch.nn.functional.cross_entropy` takes and
    gives the same values and gradients. With class indices and 65536 logits or more, a
    hand-written backward keeps no ``(N, C)`` buffer alive between forward and backward and
    builds the gradient in its one ``(N, C)`` buffer (below that, autograd through a plain
    composition is faster: an ``autograd.Function`` costs more per call than it saves there).

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
        target: class indices (integer dtype) of shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``,
            values in ``[0, C)`` or ``ignore_index`` (range checked in eager mode only); or class
            probabilities (floating dtype) of ``input``'s shape.
        weight: optional per-class weight, shape ``(C,)``, ``input``'s dtype.
        ignore_index: class index whose rows contribute nothing (class-index targets only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: :math:`\varepsilon` in ``[0, 1]``.

    Returns:
        Shape of the target without the class dimension (``(N, d1, ..., dK)``, ``(N,)`` or
        ``()``) for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: integer logits; a target of neither integer nor floating dtype.
        ValueError: a target or weight of the wrong shape, bad ``reduction``/``label_smoothing``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2395, 0.0949])
        >>> funcloss.cross_entropy(logits, torch.tensor([0, 2]), label_smoothing=0.1)
        tensor(0.3339)
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, None)


def _cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    label_smoothing: float,
    fused: bool | None,
) -> Tensor:
    """:func:`cross_entropy`; ``fused`` forces the custom-backward path on or off (tests)."""
    fn = "cross_entropy"
    check_floating(fn, input=input)
    check_reduction(fn, reduction)
    check_index(fn, ignore_index=ignore_index)
    check_in_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    probabilities, out_shape = _class_shapes(fn, input, target)
    check_class_weight(fn, weight, input)
    rows = _rows(input)
    if probabilities:
        loss = _soft_cross_entropy_rows(rows, _rows(target), weight, label_smoothing)
        return reduce(loss.reshape(out_shape), reduction)
    flat_target = as_index(target if target.dim() == 1 else target.reshape(-1))
    if fused is None:
        # An empty batch takes the general path too: its mean is 0 / 0 = nan, as in torch.
        fused = rows.numel() >= _FUSED_MIN_ELEMENTS or rows.shape[0] == 0
    num_classes = rows.shape[1]
    if not fused and _bounds_checked_by_kernel(rows, flat_target):
        # The small path's gather/scatter check every index they use against [0, C) themselves,
        # so the separate range check (a sizeable part of a small call's time) runs only to word
        # the error when they fail; one reduction tells whether any row may be ignored.
        masked = _may_be_ignored(flat_target, ignore_index, num_classes)
        try:
            return _cross_entropy_small(
                rows,
                flat_target,
                weight,
                ignore_index,
                masked,
                label_smoothing,
                reduction,
                out_shape,
                eager=True,
            )
        except RuntimeError:
            check_class_indices(fn, flat_target, num_classes, ignore_index)  # IndexError, clear
            raise
    masked = check_class_indices(fn, flat_target, num_classes, ignore_index) is not False
    if not fused:
        return _cross_entropy_small(
            rows, flat_target, weight, ignore_index, masked, label_smoothing, reduction, out_shape
        )
    loss = _cross_entropy_rows(rows, flat_target, weight, ignore_index, masked, label_smoothing)
    if reduction != "mean":
        return reduce(loss.view(out_shape) if reduction == "none" else loss, reduction)
    ignored = _ignored(flat_target, ignore_index, masked)
    return weighted_mean(loss, _row_weights(flat_target, weight, ignored), reduction)


def _bounds_checked_by_kernel(input: Tensor, target: Tensor) -> bool:
    """Eager mode on the CPU, where an index out of range makes ``gather``/``scatter`` raise a
    RuntimeError (on CUDA it is a device-side assert, fatal to the process), with a target to
    check."""
    return input.is_cpu and target.numel() > 0 and value_checks_enabled()


def _may_be_ignored(target: Tensor, ignore_index: int, num_classes: int) -> bool:
    """Whether an entry may equal ``ignore_index``, from one reduction: below 0 (torch's -100)
    it takes a negative entry, at ``C`` or above an entry that large; inside ``[0, C)`` it may
    always be there. Entries out of range are left for gather/scatter to find."""
    if ignore_index < 0:
        return int(target.min()) < 0
    if ignore_index >= num_classes:
        return int(target.max()) >= num_classes
    return True


def _cross_entropy_small(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    masked: bool,
    label_smoothing: float,
    reduction: Reduction,
    out_shape: tuple[int, ...],
    eager: bool = False,
) -> Tensor:
    """Small inputs: ``sum(log_softmax(x) * coefficients)``, with the target weights, the sign
    and the mean's denominator folded into one coefficient array. Autograd differentiates it
    with three graph nodes (log_softmax, mul, sum), which is what per-call time is made of at
    small sizes. ``eager``: plain eager mode, where the coefficients may be scattered in place
    (under vmap the in-place scatter has no batching rule)."""
    ignored = _ignored(target, ignore_index, masked)
    index = (target if ignored is None else target.masked_fill(ignored, 0)).unsqueeze(1)
    log_probs = torch.log_softmax(input, 1, _accumulate_dtype(input))
    row_weights = _row_weights(target, weight, ignored)
    # The mean's denominator (1: none for "sum"/"none"); an empty batch never comes here.
    total = 1
    if reduction == "mean":
        total = input.shape[0] if row_weights is None else row_weights.sum()
    # The target class's coefficient, -(1 - eps) w_y / total.
    if row_weights is None:
        picked = (label_smoothing - 1.0) / total
    else:
        picked = row_weights.to(log_probs.dtype).unsqueeze(1) * (label_smoothing - 1.0) / total
    if ignored is not None:
        # Ignored rows get exactly zero coefficients, as torch gives them zero gradient, even
        # when every row is ignored and the mean's denominator is 0.
        ignored = ignored.unsqueeze(1)
        picked = torch.where(ignored, 0.0, picked)
    coefficients = torch.zeros_like(log_probs)
    coefficients = (
        coefficients.scatter_(1, index, picked) if eager else coefficients.scatter(1, index, picked)
    )
    if label_smoothing > 0:
        smooth = -(label_smoothing / input.shape[1]) / total
        spread = smooth if weight is None else smooth * weight.to(log_probs.dtype)
        if ignored is not None:
            spread = torch.where(ignored, 0.0, spread)
        coefficients = coefficients + spread
    products = log_probs * coefficients
    if reduction == "mean" and ignored is not None:
        loss = products.sum() + 0.0 / total  # every row ignored: 0 / 0 = nan, as in torch
    elif reduction != "none":
        loss = products.sum()
    elif len(out_shape) == 1:  # (N,): no view, which would be one more node in the graph
        loss = products.sum(1)
    else:
        loss = products.sum(1).view(out_shape)
    return loss if loss.dtype == input.dtype else loss.to(input.dtype)


# -- nll_loss --------------------------------------------------------------------------------


@follows_autocast("float32")
def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
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

    Returns:
        ``target``'s shape for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError, ValueError, IndexError: as :func:`cross_entropy`.

    Examples:
        >>> log_probs = torch.tensor([[-0.1, -2.5], [-1.2, -0.4]])
        >>> funcloss.nll_loss(log_probs, torch.tensor([0, 1]), reduction="none")
        tensor([0.1000, 0.4000])
    """
    fn = "nll_loss"
    check_floating(fn, input=input)
    check_reduction(fn, reduction)
    check_index(fn, ignore_index=ignore_index)
    check_integer(fn, target=target)
    _, out_shape = _class_shapes(fn, input, target)
    check_class_weight(fn, weight, input)
    rows = _rows(input)
    flat_target = as_index(target.reshape(-1))
    masked = check_class_indices(fn, flat_target, rows.shape[1], ignore_index) is not False
    ignored = _ignored(flat_target, ignore_index, masked)
    safe = flat_target if ignored is None else flat_target.masked_fill(ignored, 0)
    loss = -rows.gather(1, safe.unsqueeze(1)).squeeze(1)
    row_weights = _row_weights(flat_target, weight, ignored)
    if weight is not None:
        loss = loss * row_weights.to(loss.dtype)
    if ignored is not None:
        # masked_fill as well as a zero weight: with every element ignored the mean is
        # 0 / 0 = nan, as in torch, and the gradient is still zero (not 0 * inf), as in torch.
        loss = loss.masked_fill(ignored, 0)
    return weighted_mean(loss.reshape(out_shape), row_weights, reduction)
