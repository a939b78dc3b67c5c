"""The softmax cross-entropy algebra, on a chunk of rows: the one core of ``cross_entropy`` (one
chunk, the logits given) and ``linear_cross_entropy`` (chunks of ``h W^T + b``).

Per row of logits ``z`` (``C`` classes), the target is a vector of target weights ``a``:

- class indices: ``a = (1 - eps) r onehot(y) + (eps / C) k w`` with ``w`` the class weight (ones
  without one), ``r = w_y`` and ``k = 1`` (both 0 where the row is ignored);
- class probabilities ``q``: ``a = w * ((1 - eps) q + eps / C)``, ``r = 1``.

With ``A = sum_c a_c``, ``lse = log sum_c exp(z_c)`` and ``zeta`` the z-loss:

    loss = A lse - a . z + zeta r lse^2,
    d loss / dz = (A + 2 zeta r lse) softmax(z) - a,
    d loss = (A + 2 zeta r lse) (softmax(z) . dz) - a . dz.

A class mask (``allowed``, ``(M, C)`` bool, ``True`` for the classes in the softmax) removes
classes: the caller sets their logits to ``-inf`` (so ``softmax`` is exactly 0 there), and the
target weights leave them out: label smoothing spreads ``eps / C'`` over the ``C'`` allowed classes
of the row, probability mass on a removed class is dropped, a class index on a removed class
keeps its ``-inf`` log-probability (the loss is ``+inf``, the true value). A row with no allowed
class is an ignored row (the caller marks it so, and gives it finite logits).

``Rows`` holds a chunk's targets as ``a``'s coefficients; everything below is a plain function of
tensors (differentiable, so double backward through a backward built from them is exact), except
where ``in_place=True`` asks for the gradient to be built in the softmax's own buffer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import broadcast_pair, check_integer, check_where, fail, shape_str
from ._reduction import masked

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def class_shapes(fn: str, input: Tensor, target: Tensor) -> tuple[bool, tuple[int, ...]]:
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


def as_rows(input: Tensor) -> Tensor:
    """``(C,)``/``(N, C)``/``(N, C, d...)`` -> ``(M, C)`` with the class dimension last."""
    if input.dim() == 1:
        return input.unsqueeze(0)
    if input.dim() == 2:
        return input
    return input.movedim(1, -1).reshape(-1, input.shape[1])


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """bf16/fp16 logits are computed (log-sum-exp, softmax, gradient sums) in fp32."""
    return torch.float32 if dtype in _HALF_DTYPES else dtype


def softmax_mask(
    fn: str, where: Tensor | None, loss_shape: tuple[int, ...], logits_shape: tuple[int, ...]
) -> bool | None:
    """What a softmax loss's ``where`` masks: ``False`` for rows (broadcastable to the unreduced
    loss shape), ``True`` for classes (the logits' number of dimensions, broadcastable to their
    shape), ``None`` without a mask; any other ``where`` raises, naming both. The two cannot
    both fit, whatever the sizes (C = 1, N = C): a row mask has fewer dimensions than the
    logits."""
    if where is None:
        return None
    if not isinstance(where, Tensor) or where.dtype != torch.bool:
        check_where(fn, where, loss_shape)  # the type error
    if broadcast_pair(where.shape, torch.Size(loss_shape)) == loss_shape:
        return False
    full = torch.Size(logits_shape)
    if where.dim() == len(full) and broadcast_pair(where.shape, full) == full:
        return True
    fail(
        ValueError,
        fn,
        "where",
        f"be broadcastable to the unreduced loss shape {shape_str(loss_shape)} (a row mask) "
        f"or have the logits' {len(logits_shape)} dimensions and broadcast to their shape "
        f"{shape_str(logits_shape)} (a class mask)",
        shape_str(where.shape),
        hint="A vocabulary mask shared by every row has shape (1, C): `mask[None]`."
        if len(logits_shape) == 2
        else "",
    )


class Rows(NamedTuple):
    """A chunk's targets, ``(M,)`` per row unless said otherwise.

    Class indices: ``a = picked onehot(index) + spread w`` (``spread`` is ``None`` without label
    smoothing; ``(M, C)`` with a class mask). Probabilities: ``a = dense``, ``(M, C)``.
    ``total`` is ``A``, ``row_weight`` is ``r`` (the weighted mean's term and the z-loss weight),
    ``ignored`` the rows that give exactly nothing (``None``: none), ``allowed`` the class mask
    (``None``: every class).
    """

    index: Tensor | None  # type: ignore[assignment]  # (a field shadows tuple.index)
    picked: Tensor | None
    spread: Tensor | None
    dense: Tensor | None
    total: Tensor
    row_weight: Tensor
    ignored: Tensor | None
    allowed: Tensor | None = None

    def chunk(self, start: int, stop: int) -> Rows:
        return Rows._make(None if t is None else t[start:stop] for t in self)

    def take(self, picks: Tensor) -> Rows:
        """The rows at the indices ``picks``."""
        return Rows._make(None if t is None else t.index_select(0, picks) for t in self)


def class_rows(
    index: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    label_smoothing: float,
    num_classes: int,
    dtype: torch.dtype,
    allowed: Tensor | None = None,
) -> Rows:
    """Rows for class indices ``index`` (0 where ``ignored``); ``weight`` in ``dtype``;
    ``allowed`` the ``(M, C)`` class mask (every row has an allowed class, or is ignored)."""
    if ignored is None:
        keep = torch.ones(index.shape, dtype=dtype, device=index.device)
    else:
        keep = (~ignored).to(dtype)
    row_weight = keep if weight is None else weight.gather(0, index) * keep
    picked = (1 - label_smoothing) * row_weight
    if label_smoothing == 0:
        return Rows(index, picked, None, None, picked, row_weight, ignored, allowed)
    if allowed is None:
        spread = (label_smoothing / num_classes) * keep
        weight_sum: Tensor | int = num_classes if weight is None else weight.sum()
    else:
        # eps / C' over the C' allowed classes of each row (clamped: an ignored row may have none)
        count = allowed.sum(1).clamp_min(1).to(dtype)
        spread = (label_smoothing / count) * keep
        weight_sum = count if weight is None else torch.where(allowed, weight, 0).sum(1)
    total = picked + spread * weight_sum
    return Rows(index, picked, spread, None, total, row_weight, ignored, allowed)


def probability_rows(
    target: Tensor,
    weight: Tensor | None,
    label_smoothing: float,
    ignored: Tensor | None = None,
    allowed: Tensor | None = None,
) -> Rows:
    """Rows for ``(M, C)`` class probabilities (``target`` and ``weight`` in the compute dtype);
    ``ignored`` rows give nothing; with a class mask ``allowed``, the mass on removed classes is
    dropped and smoothing spreads over the allowed classes only."""
    if allowed is not None:
        target = torch.where(allowed, target, 0)
    if label_smoothing > 0:
        if allowed is None:
            target = target * (1 - label_smoothing) + label_smoothing / target.shape[1]
        else:
            count = allowed.sum(1, keepdim=True).clamp_min(1).to(target.dtype)
            spread = torch.where(allowed, label_smoothing / count, 0)
            target = target * (1 - label_smoothing) + spread
    if weight is not None:
        target = target * weight
    ones = torch.ones(target.shape[:1], dtype=target.dtype, device=target.device)
    if ignored is not None:
        target = target.masked_fill(ignored.unsqueeze(1), 0)
        ones = ones.masked_fill(ignored, 0)
    return Rows(None, None, None, target, target.sum(1), ones, ignored, allowed)


def masked_probability_rows(
    x: Tensor,
    q: Tensor,
    weight: Tensor | None,
    label_smoothing: float,
    keep: Tensor | None,
    allowed: Tensor | None,
) -> tuple[Tensor, Rows]:
    """``(M, C)`` logits and class probabilities (and ``weight``) in the compute dtype under
    the masks: removed classes (``~allowed``) at ``-inf``, masked rows (``~keep``) at 0 and
    ignored; the logits and the :func:`probability_rows`."""
    ignored = None
    if allowed is not None:
        x = masked(allowed, x, -math.inf)
    if keep is not None:
        ignored = ~keep
        x, q = masked(keep.unsqueeze(1), x, 0.0), masked(keep.unsqueeze(1), q, 0.0)
    return x, probability_rows(q, weight, label_smoothing, ignored, allowed)


def target_dot(z: Tensor, rows: Rows, weight: Tensor | None) -> Tensor:
    """``a . z`` per row; a class of target weight 0 adds exactly 0, also where its ``z`` is
    ``-inf`` (a masked class; its gradient in ``a`` is then ``z``'s clamp to the largest finite
    float, ``-inf`` being out of reach of a differentiable 0 term)."""
    if rows.dense is not None:
        # one graph node: z clamped to the largest finite float where the weight is 0, only
        floor = torch.full_like(z, -math.inf).masked_fill(rows.dense == 0, torch.finfo(z.dtype).min)
        return (rows.dense * torch.clamp(z, min=floor)).sum(1)
    assert rows.index is not None and rows.picked is not None
    dot = rows.picked * z.gather(1, rows.index.unsqueeze(1)).squeeze(1)
    # a target weight of 0 (label_smoothing = 1, a class weight of 0) adds exactly 0, also at a
    # log-probability that underflowed to -inf (logits of 3e38): no 0 * -inf
    dot = torch.where(rows.picked == 0, 0, dot)
    if rows.spread is not None:
        if rows.allowed is not None:
            z = torch.where(rows.allowed, z, 0)  # removed classes (-inf) get no smoothing
        if weight is None:
            spread_dot = z.sum(1)
        else:
            # a class of weight 0 adds exactly 0, also at a -inf (masked) logit: no 0 * -inf
            spread_dot = torch.where(weight == 0, 0, z) @ weight
        # a smoothing weight that underflowed to 0 (label_smoothing 1e-60) adds exactly 0 too
        dot = dot + torch.where(rows.spread == 0, 0, rows.spread * spread_dot)
    return dot


def scaled_log_softmax(z: Tensor, log_probs: Tensor, scale: float) -> Tensor:
    """``scale log_softmax(z)`` from ``log_probs = log_softmax(z)``, for a power of two
    ``scale <= 1/2``: finite wherever ``z`` is.

    A row whose logits span more than the dtype's range (3e38 and -3e38 in float32) has
    log-probabilities below it (``-6e38``), which ``log_softmax`` gives as ``-inf``; there
    ``scale z - scale lse`` is finite, and a target weight below 1 times it, over ``scale``, is
    the true term wherever that fits (label smoothing's ``eps / C``, a probability, a class
    weight): the true loss, not ``inf``. Elsewhere the scaling is exact (but for subnormal
    log-probabilities), so ``(a (scale log_probs)) / scale`` has the bits of ``a log_probs``."""
    lse = torch.logsumexp(z, 1, keepdim=True)
    beyond = torch.add(z * scale, lse, alpha=-scale)  # scale z - scale lse: finite
    return torch.where(log_probs == -math.inf, beyond, log_probs * scale)


def _spreads(rows: Rows) -> bool:
    """Whether target weights other than the target class's (label smoothing, probabilities)
    are in the row, where ``a_c log p_c`` can fit the dtype with ``log p_c`` below it. Without
    them the row's loss is ``-w_y log p_y``, ``+inf`` with ``log p_y`` (as torch; a class weight
    below 1 could make it fit: not done, it would cost every weighted call a log-sum-exp)."""
    return rows.spread is not None or rows.dense is not None


def row_loss(
    z: Tensor,
    rows: Rows,
    weight: Tensor | None,
    z_loss: float = 0.0,
    beyond_range: bool = True,
) -> Tensor:
    """``A lse - a . z + zeta r lse^2`` per row, as ``-a . log_softmax(z)`` (one fused kernel,
    several times faster than ``logsumexp`` on the CPU, and no cancellation between two large
    sums); exactly 0 on ignored rows. ``beyond_range``: a row whose log-probabilities are below
    the dtype's range still gets its true loss where that fits (:func:`scaled_log_softmax`; a
    caller that finds such rows by a host read passes ``False`` and recomputes them)."""
    log_probs = torch.log_softmax(z, 1)
    if beyond_range and _spreads(rows):
        # scaled so that a sum over the row's C classes fits too (each |log p| < 2 finfo.max)
        scale = 2.0 ** -(math.ceil(math.log2(max(1, z.shape[1]))) + 1)
        loss = target_dot(scaled_log_softmax(z, log_probs, scale), rows, weight) * (-1 / scale)
    else:
        loss = -target_dot(log_probs, rows, weight)
    if z_loss > 0:
        # lse = max(z) - max(log_softmax(z)), both at the same class (autograd gives softmax(z))
        lse = z.amax(1) - log_probs.amax(1)
        loss = loss + z_loss * rows.row_weight * lse * lse
    return loss if rows.ignored is None else loss.masked_fill(rows.ignored, 0)


def loss_from_parts(lse: Tensor, dot: Tensor, rows: Rows, z_loss: float = 0.0) -> Tensor:
    """The loss per row from ``lse`` and ``a . z`` (:func:`target_dot`)."""
    loss = rows.total * lse - dot
    if z_loss > 0:
        loss = loss + z_loss * rows.row_weight * lse * lse
    return loss if rows.ignored is None else loss.masked_fill(rows.ignored, 0)


def softmax_in_place(z: Tensor) -> tuple[Tensor, Tensor]:
    """``(softmax(z), lse)`` with the softmax written over ``z`` (no graph; a scratch buffer)."""
    top = z.amax(1)
    softmax = torch.softmax(z, 1, out=z)
    # The largest probability is exp(0) / sum_c exp(z_c - top), so lse = top - log(max p).
    return softmax, top - softmax.amax(1).log()


def row_gradient(
    z: Tensor,
    rows: Rows,
    weight: Tensor | None,
    scale: Tensor,
    z_loss: float = 0.0,
    in_place: bool = False,
) -> Tensor:
    """``scale * d loss / dz``, ``(M, C)``; ``scale`` is ``(M,)``.

    ``in_place``: no graph is built (plain eager, grad off), so the gradient is built in the
    buffer of ``softmax(z)``, the only ``(M, C)`` one.
    """
    lse = torch.logsumexp(z, 1) if z_loss > 0 else None
    softmax = torch.softmax(z, 1)  # exp(z - max) / sum: more exact than exp(z - lse)
    return softmax_gradient(softmax, lse, rows, weight, scale, z_loss, in_place)


def softmax_gradient(
    softmax: Tensor,
    lse: Tensor | None,
    rows: Rows,
    weight: Tensor | None,
    scale: Tensor,
    z_loss: float = 0.0,
    in_place: bool = False,
) -> Tensor:
    """``scale * ((A + 2 zeta r lse) softmax - a)``, exactly 0 on ignored rows (whatever their
    logits hold, nan or inf padding, and even where ``scale`` is not finite, as for a mean over no
    rows); ``lse`` is needed for a z-loss only. ``in_place`` builds it in ``softmax``'s buffer."""
    gradient = _softmax_gradient(softmax, lse, rows, weight, scale, z_loss, in_place)
    if rows.allowed is not None:  # a class index on a removed class: no gradient there either
        removed = ~rows.allowed
        gradient = (
            gradient.masked_fill_(removed, 0) if in_place else gradient.masked_fill(removed, 0)
        )
    if rows.ignored is None:
        return gradient
    ignored = rows.ignored.unsqueeze(1)
    return gradient.masked_fill_(ignored, 0) if in_place else gradient.masked_fill(ignored, 0)


def _softmax_gradient(
    softmax: Tensor,
    lse: Tensor | None,
    rows: Rows,
    weight: Tensor | None,
    scale: Tensor,
    z_loss: float,
    in_place: bool,
) -> Tensor:
    coefficient = rows.total
    if z_loss > 0:
        assert lse is not None
        coefficient = coefficient + 2 * z_loss * rows.row_weight * lse
    coefficient = (coefficient * scale).unsqueeze(1)
    if rows.dense is not None:
        target = rows.dense * scale.unsqueeze(1)
        if in_place:
            return softmax.mul_(coefficient).sub_(target)
        return softmax * coefficient - target
    assert rows.index is not None and rows.picked is not None
    picked = -(rows.picked * scale).unsqueeze(1)
    index = rows.index.unsqueeze(1)
    spread = None
    if rows.spread is not None:
        spread = (rows.spread * scale).unsqueeze(1)
        spread = spread if weight is None else spread * weight
        if rows.allowed is not None:
            spread = torch.where(rows.allowed, spread, 0)
    if in_place:
        gradient = softmax.mul_(coefficient)
        if spread is not None:
            gradient.sub_(spread)
        return gradient.scatter_add_(1, index, picked)
    gradient = softmax * coefficient
    if spread is not None:
        gradient = gradient - spread
    return gradient.scatter_add(1, index, picked)


def target_gradient(
    z: Tensor, rows: Rows, weight: Tensor | None, label_smoothing: float, scale: Tensor
) -> Tensor:
    """``scale * d loss / d q`` for probability targets ``q``: ``-(1 - eps) w log_softmax(z)``;
    exactly 0 on ignored rows and removed classes (whose log-probability is ``-inf``)."""
    gradient = torch.log_softmax(z, 1) * (scale * (label_smoothing - 1)).unsqueeze(1)
    gradient = gradient if weight is None else gradient * weight
    if rows.allowed is not None:
        gradient = torch.where(rows.allowed, gradient, 0)
    if rows.ignored is not None:
        gradient = gradient.masked_fill(rows.ignored.unsqueeze(1), 0)
    return gradient


def row_jvp(
    z: Tensor, z_tangent: Tensor, rows: Rows, weight: Tensor | None, z_loss: float = 0.0
) -> Tensor:
    """``d loss`` per row for the tangent ``dz``: ``(A + 2 zeta r lse) (softmax . dz) - a . dz``."""
    coefficient = rows.total
    if z_loss > 0:
        coefficient = coefficient + 2 * z_loss * rows.row_weight * torch.logsumexp(z, 1)
    if rows.allowed is not None:  # a removed class's logit is the constant -inf
        z_tangent = torch.where(rows.allowed, z_tangent, 0)
    result = coefficient * (torch.softmax(z, 1) * z_tangent).sum(1)
    result = result - target_dot(z_tangent, rows, weight)
    return result if rows.ignored is None else result.masked_fill(rows.ignored, 0)


def log_softmax_coefficients(
    index: Tensor,
    row_weight: Tensor | None,
    ignored: Tensor | None,
    weight: Tensor | None,
    label_smoothing: float,
    like: Tensor,
    total: Tensor | float = 1,
    in_place: bool = False,
) -> Tensor:
    """``-a / total`` as an ``(M, C)`` array of ``like``'s dtype and device (class indices): the
    small path's ``loss = sum(log_softmax(z) * coefficients)``, which is ``(A lse - a . z) /
    total``.

    ``row_weight`` is ``w_y``, 0 on ``ignored`` rows (``None``: all ones, nothing ignored);
    ``total`` a number or a 0-dim tensor. Ignored rows get exactly 0, even where ``1 / total``
    is not finite (a mean over no rows).
    """
    if row_weight is None:
        picked: Tensor | float = (label_smoothing - 1) / total
    else:
        picked = row_weight.unsqueeze(1) * (label_smoothing - 1) / total
        if ignored is not None:
            picked = picked.masked_fill(ignored.unsqueeze(1), 0)
    if in_place and label_smoothing != 0 and row_weight is None and isinstance(total, int):
        # eager, no weight, nothing ignored: one number spread over every class, filled in
        # (no addition pass)
        smooth = -(label_smoothing / like.shape[1]) / total
        result = torch.full_like(like, smooth)
        return result.scatter_(1, index.unsqueeze(1), picked + smooth)
    # out of place under transforms: the in-place scatter_ has no batching rule for a batched
    # ``picked``
    result = torch.zeros_like(like)
    if in_place:
        result = result.scatter_(1, index.unsqueeze(1), picked)
    else:
        result = result.scatter(1, index.unsqueeze(1), picked)
    if label_smoothing == 0:
        return result
    spread = -(label_smoothing / like.shape[1]) / total
    if weight is not None:
        spread = weight * spread
    if ignored is not None:
        if not isinstance(spread, Tensor):
            spread = torch.full((), spread, dtype=like.dtype, device=like.device)
        spread = torch.where(ignored.unsqueeze(1), 0, spread)
    return result + spread
