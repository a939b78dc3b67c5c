"""linear_cross_entropy: the cross-entropy of a linear layer's logits, chunked over rows so that the
full ``(N, V)`` logits never exist.

The algebra is _softmax_ce's, on each chunk's logits ``z = softcap tanh(u / softcap)`` (or
``z = u``), ``u = h W^T + b``; the chain rule adds ``d z / d u = 1 - (z / softcap)^2`` and
``d u = dh W^T + h dW^T + db``. K-dimensional outputs (``linear_weight`` ``(C, d1..dK, H)``) are
rows too: the weight is permuted once to ``(d1..dK, C, H)``, so a chunk's ``u`` of shape
``(rows, D C)`` is ``(rows D, C)`` softmax rows in place, in the order of the flattened target.

Two paths, one set of formulas:

- ``_linear_cross_entropy_rows``, a :func:`custom_backward` loss that saves only its inputs and
  recomputes each chunk's logits in backward, from differentiable ops: exact under every
  torch.func transform, double backward included, and under ``torch.compile`` (where it is
  autodiffed through its forward);
- ``_FusedLinearCrossEntropy``, plain eager mode with a scalar reduction (a training step): it
  computes the gradients chunk by chunk during the forward pass, in place in one reused chunk
  buffer, which saves the backward's recomputing matmul. Its backward uses those gradients only
  when no graph is being built; under ``create_graph=True`` (or a second backward) it runs the
  first path's backward from the saved inputs, so a second derivative is never taken through a
  stored intermediate.
"""

# torch declares autograd.Function's backward/jvp/vmap with *args; a concrete Function names them.
# pyright: reportIncompatibleMethodOverride=false

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    _functorch,
    as_index,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_non_negative,
    check_number,
    check_reduction,
    check_tensor,
    checks_config,
    class_index_mask,
    eager_mode,
    fail,
    fused_training_step,
    in_place_safe,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._reduction import masked, reduce
from ._softmax_ce import (
    Rows,
    class_rows,
    compute_dtype,
    loss_from_parts,
    probability_rows,
    row_gradient,
    row_jvp,
    row_loss,
    softmax_gradient,
    softmax_in_place,
    softmax_mask,
    target_dot,
    target_gradient,
)

# The automatic chunk holds about this many bytes of logits (compute dtype), whatever N and V.
# Each chunk reads the (V, H) weight twice and updates its (V, H) gradient once, so rows per chunk
# must be many for the matmuls to run at full-problem speed. Measured (examples/benchmark.py's
# method; N=4096, H=512, V=32000, fp32, 2 shared cores), time and peak memory against the naive
# path: 16 MiB chunks 1.53x / 0.06x, 32 MiB 1.08x / 0.07x, 64 MiB 0.92x / 0.09x,
# 128 MiB 0.90x / 0.14x.
_CHUNK_BYTES = 64 * 2**20
_DEFAULT_IGNORE_INDEX = -100  # torch's, for class-index targets


class Config(NamedTuple):
    """The non-tensor arguments, passed as one (a ``None`` softcap is config, not a tensor)."""

    num_classes: int  # C, the classes of one softmax row (linear_weight has D C rows)
    label_smoothing: float
    z_loss: float
    softcap: float | None
    chunk_size: int  # rows of the input per chunk
    dtype: torch.dtype  # the compute dtype


class _Inputs(NamedTuple):
    """The tensors, in the compute dtype (no copies unless a cast is needed)."""

    input: Tensor
    linear_weight: Tensor
    bias: Tensor | None
    weight: Tensor | None

    @staticmethod
    def of(
        input: Tensor,
        linear_weight: Tensor,
        bias: Tensor | None,
        weight: Tensor | None,
        dtype: torch.dtype,
    ) -> _Inputs:
        return _Inputs(
            input.to(dtype),
            linear_weight.to(dtype),
            None if bias is None else bias.to(dtype),
            None if weight is None else weight.to(dtype),
        )


def _chunks(num_rows: int, size: int) -> list[tuple[int, int]]:
    # No rows still make one (empty) chunk, so that the per-chunk results concatenate.
    if num_rows == 0:
        return [(0, 0)]
    return [(start, min(start + size, num_rows)) for start in range(0, num_rows, size)]


def _chunk_rows(
    target: Tensor,
    ignored: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    config: Config,
    start: int,
    stop: int,
    per_row: int,
) -> Rows:
    """The targets of input rows ``[start, stop)``: ``per_row`` softmax rows each."""
    first, last = start * per_row, stop * per_row
    target = target[first:last]
    chunk_ignored = None if ignored is None else ignored[first:last]
    chunk_allowed = None if allowed is None else allowed[first:last]
    eps = config.label_smoothing
    if target.is_floating_point():
        target = target.to(config.dtype)
        return probability_rows(target, weight, eps, chunk_ignored, chunk_allowed)
    num_classes = config.num_classes
    return class_rows(target, chunk_ignored, weight, eps, num_classes, config.dtype, chunk_allowed)


def _remove_classes(z: Tensor, rows: Rows) -> Tensor:
    """A chunk's logits with the classes its class mask removes at ``-inf``."""
    return z if rows.allowed is None else torch.where(rows.allowed, z, -math.inf)


def _stand_in(x: _Inputs, clamp: bool) -> _Inputs:
    """``x`` with ``clamp``: each ``+-inf`` of the input and of the linear weight a finite
    stand-in ``+-2^64`` (float32; ``2^512`` in float64, the compute dtypes), so that the logits
    order the classes as the limit does where a stand-in leads, and an infinite factor times 0
    adds 0 (the limit, not ``inf * 0``)."""
    if not clamp:
        return x
    big = 2.0 ** (64 if x.input.dtype == torch.float32 else 512)
    return x._replace(
        input=torch.nan_to_num(x.input, nan=math.nan, posinf=big, neginf=-big),
        linear_weight=torch.nan_to_num(x.linear_weight, nan=math.nan, posinf=big, neginf=-big),
    )


def _chunk_logits(
    h: Tensor, linear_weight: Tensor, bias: Tensor | None, config: Config, clamp: bool
) -> tuple[Tensor, Tensor | None]:
    """A chunk's logits as ``(rows D, C)`` and, with a softcap, ``tanh(u / softcap)``;
    ``clamp``: a ``+inf`` logit (without a softcap) acts as the largest finite one."""
    u = h @ linear_weight.T if bias is None else torch.addmm(bias, h, linear_weight.T)
    squashed = None
    if config.softcap is not None:
        squashed = torch.tanh(u / config.softcap)
        u = config.softcap * squashed
    elif clamp:
        u = u.clamp(max=torch.finfo(u.dtype).max)
    return u.reshape(-1, config.num_classes), squashed


# -- infinite and huge inputs ------------------------------------------------------------------
#
# An infinite entry of input, linear_weight or linear_bias makes the logits u = h W^T + b
# infinite or NaN (inf * 0, inf - inf), and huge finite ones (1e20) overflow them in float32;
# the true value is the float64 limit (each inf a stand-in T -> infinity, as the oracle's 1e300
# and 1e150). Split every tensor into its finite part and the signs of its infinite entries,
# h = h_f + T h_s and so on: then u = r + T d + T^2 e with r = h_f W_f^T + b_f,
# d = h_s W_f^T + h_f W_s^T + b_s and e = h_s W_s^T, all finite, computed in float64 (which
# holds the products of huge float32 values exactly). As T grows, a row's softmax concentrates on
# the classes S of the largest (e, d) (lexicographic), where the logits differ by r only: the
# loss is the cross-entropy of the logits r on S (-inf elsewhere; +inf, the limit, for a target
# outside S), its gradient in u is finite, and a gradient term m T (the weight's or the input's
# through an infinite factor) is +-inf, or 0 where m is exactly 0 (the softmax's tail is
# exponentially small in T). With a softcap, the logits are s tanh(u / s): +-s where (e, d) is
# positive / negative, with a zero derivative there.
#
# Plain eager mode on the CPU (value reads on) computes as usual, reads back once whether every
# loss and gradient is finite, and only where one is not recomputes the call this way (a NaN
# input stays NaN). Elsewhere (transforms, compiling, other devices, value reads off) nothing is
# read: a +inf logit is clamped to the largest finite one (as cross_entropy does), finite where
# one infinite logit leads its row, an inf * 0 stays NaN.

_HUGE = 1e300  # the stand-in for T in lse = T^2 E + T D + ...: the z-loss's lse^2 overflows


def _reads(*tensors: Tensor | None) -> bool:
    """Plain eager on the CPU, value reads on: non-finite results are found by one host read."""
    present = [t for t in tensors if t is not None]
    return value_checks_enabled(*present) and eager_mode(*present)


def _all_finite(*tensors: Tensor | None) -> bool:
    """Whether every entry of ``tensors`` is finite: the one host read, of a sum (``alpha=0``
    adds a sum's NaN or inf as NaN and a finite one as 0; a sum that overflows only sends a
    finite call to the recomputation, which gives the same)."""
    total: Tensor | None = None
    for t in tensors:
        if t is not None:  # detached: under create_graph the gradients carry a graph
            part = t.detach().sum()
            total = part if total is None else torch.add(total, part, alpha=0)
    return total is None or math.isfinite(float(total))


def _split(t: Tensor | None, dtype: torch.dtype) -> tuple[Tensor | None, Tensor | None]:
    """``t`` in ``dtype`` as its finite part (inf at 0; a NaN stays) and the signs of its
    infinite entries."""
    if t is None:
        return None, None
    t = t.to(dtype)
    infinite = t.isinf()
    return t.masked_fill(infinite, 0), torch.where(infinite, t.sign(), 0)


def _times_infinity(m: Tensor, size: Tensor) -> Tensor:
    """``m T`` as ``T -> inf``: ``+-inf``, and 0 where ``m`` is 0 up to the float64 rounding of
    a sum of terms of total size ``size`` (the gradient's sum over classes is exactly 0, so
    ``G`` times a column of equal infinities is 0, not a rounding error times inf)."""
    tolerance = size * (64 * torch.finfo(m.dtype).eps)
    return torch.where(m.abs() <= tolerance, 0, m * math.inf)


def _add(first: Tensor, second: Tensor | None) -> Tensor:
    return first if second is None else first + second


def _limit_logits(
    h: tuple[Tensor, Tensor],
    w: tuple[Tensor, Tensor],
    b: tuple[Tensor | None, Tensor | None],
    rows: Rows,
    config: Config,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """A chunk's limit logits ``(rows D, C)`` (see above), ``tanh(u / softcap)`` with a softcap,
    and the row's shift, the ``T^2 E + T D`` that the logits lost (``+-_HUGE`` or 0)."""
    (h_f, h_s), (w_f, w_s) = h, w
    shape = (-1, config.num_classes)
    r = _add(h_f @ w_f.T, b[0]).reshape(shape)
    d = _add(h_s @ w_f.T + h_f @ w_s.T, b[1]).reshape(shape)
    e = (h_s @ w_s.T).reshape(shape)
    nan = (r + d + e).isnan()  # a NaN input stays NaN in its logits
    if rows.allowed is not None:  # a removed class is -inf whatever T
        e = torch.where(rows.allowed, e, -math.inf)
    if config.softcap is not None:
        lead = torch.where(e == 0, d, e)  # its sign is u's as T -> inf
        u = torch.where(lead > 0, math.inf, torch.where(lead < 0, -math.inf, r))
        squashed = torch.tanh(torch.where(nan, math.nan, u) / config.softcap)
        return config.softcap * squashed, squashed, torch.zeros_like(r[:, 0])
    top_e = e.amax(1, keepdim=True)
    top_d = torch.where(e == top_e, d, -math.inf).amax(1, keepdim=True)
    z = torch.where((e == top_e) & (d == top_d), r, -math.inf)  # r on S, -inf elsewhere
    lead = torch.where(top_e == 0, top_d, top_e).squeeze(1)
    return torch.where(nan, math.nan, z), None, lead.sign() * _HUGE


def _limit_pass(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    ignored: Tensor | None,
    bias: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    scale: Tensor,
    config: Config,
    need: tuple[bool, bool, bool, bool],
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """Per-row loss and ``scale``-weighted gradients (input, weight, bias, target; ``need``
    says which) at the float64 limit (see above), in the compute dtype."""
    dtype = torch.promote_types(config.dtype, torch.float64)
    exact = config._replace(dtype=dtype)
    h, w, b = _split(input, dtype), _split(linear_weight, dtype), _split(bias, dtype)
    assert h[0] is not None and h[1] is not None and w[0] is not None and w[1] is not None
    class_weight = None if weight is None else weight.to(dtype)
    per_row = linear_weight.shape[0] // config.num_classes
    scale = scale.to(dtype)
    losses, input_parts, target_parts = [], [], []
    grad_weight = [torch.zeros_like(w[0]), torch.zeros_like(w[0])]  # the finite part, T's
    weight_size = torch.zeros(linear_weight.shape[1], dtype=dtype, device=input.device)
    grad_bias = torch.zeros(linear_weight.shape[0], dtype=dtype, device=input.device)
    for start, stop in _chunks(input.shape[0], config.chunk_size):
        h_f, h_s = h[0][start:stop], h[1][start:stop]
        rows = _chunk_rows(target, ignored, class_weight, allowed, exact, start, stop, per_row)
        z, squashed, shift = _limit_logits((h_f, h_s), (w[0], w[1]), b, rows, config)
        z = _remove_classes(z, rows)
        loss = row_loss(z, rows, class_weight)
        lse = None
        if config.z_loss > 0:
            lse = torch.logsumexp(z, 1) + shift
            penalty = config.z_loss * rows.row_weight * lse * lse
            loss = loss + torch.where(rows.row_weight == 0, 0, penalty)
        losses.append(loss)
        chunk_scale = scale[start * per_row : stop * per_row]
        softmax = torch.softmax(z, 1)
        g = softmax_gradient(softmax, lse, rows, class_weight, chunk_scale, config.z_loss)
        if need[3]:
            eps = config.label_smoothing
            target_parts.append(target_gradient(z, rows, class_weight, eps, chunk_scale))
        # each row's size: its gradient's entries are A p - a, rounded in float64
        size = g.abs().amax(1, keepdim=True) + (rows.total * chunk_scale).abs().unsqueeze(1)
        size = size.reshape(stop - start, per_row).amax(1)
        g = g.reshape(stop - start, linear_weight.shape[0])
        if squashed is not None:
            g = g * (1 - squashed * squashed).reshape(g.shape)
        if need[0]:
            in_size = size.unsqueeze(1) * w[1].abs().sum(0)
            input_parts.append(g @ w[0] + _times_infinity(g @ w[1], in_size))
        if need[1]:
            grad_weight[0] = grad_weight[0] + g.T @ h_f
            grad_weight[1] = grad_weight[1] + g.T @ h_s
            weight_size = weight_size + size @ h_s.abs()
        grad_bias = grad_bias + g.sum(0)
    work = config.dtype
    return (
        torch.cat(losses).to(work),
        torch.cat(input_parts).to(work) if need[0] else None,
        (grad_weight[0] + _times_infinity(grad_weight[1], weight_size)).to(work)
        if need[1]
        else None,
        grad_bias.to(work) if need[2] and bias is not None else None,
        torch.cat(target_parts).to(work) if need[3] else None,
    )


# -- the transform-safe path: saves only inputs, recomputes chunk logits in backward ------------


@custom_backward
def _linear_cross_entropy_rows(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    ignored: Tensor | None,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    config: Config,
) -> Tensor:
    """Per-row loss, ``(N D,)``, for ``(N, H)`` inputs, one chunk of rows at a time;
    ``allowed`` the ``(N D, C)`` class mask, or ``None``."""
    x = _Inputs.of(input, linear_weight, linear_bias, weight, config.dtype)
    per_row = linear_weight.shape[0] // config.num_classes
    reads = _reads(input, linear_weight, linear_bias)
    x = _stand_in(x, not reads)
    losses = []
    for start, stop in _chunks(input.shape[0], config.chunk_size):
        z, _ = _chunk_logits(x.input[start:stop], x.linear_weight, x.bias, config, not reads)
        rows = _chunk_rows(target, ignored, x.weight, allowed, config, start, stop, per_row)
        losses.append(row_loss(_remove_classes(z, rows), rows, x.weight, config.z_loss))
    loss = torch.cat(losses)
    if reads and not _all_finite(loss):
        ones = torch.ones_like(loss)
        need = (False, False, False, False)
        loss, *_ = _limit_pass(
            input, linear_weight, target, ignored, linear_bias, weight, allowed, ones, config, need
        )
    return loss.to(input.dtype)


@_linear_cross_entropy_rows.backward
def _linear_cross_entropy_rows_backward(
    grad: Tensor,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    ignored: Tensor | None,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    config: Config,
) -> tuple[Tensor, Tensor, Tensor | None, None, Tensor | None, None, None]:
    # d/dh = G W,  d/dW = G^T h,  d/db = 1^T G  with  G = grad * d loss / du, chunk by chunk;
    # probabilities: d/dq = -grad (1 - eps) w log_softmax(z).
    x = _Inputs.of(input, linear_weight, linear_bias, weight, config.dtype)
    per_row = linear_weight.shape[0] // config.num_classes
    scale = grad.to(config.dtype)
    reads = _reads(grad, input, linear_weight, linear_bias)
    x = _stand_in(x, not reads)
    input_parts: list[Tensor] = []
    target_parts: list[Tensor] = []
    grad_weight: Tensor | None = None
    grad_bias: Tensor | None = None
    # Building no graph (a second backward of a retained graph), the products go into buffers
    # as the fused pass writes them (mm with out= a slice, addmm_ into zeros): the BLAS kernel
    # for out= a slice may round otherwise than a fresh product (float64: 44 of 2000 drawn
    # shapes), and the second backward must give the first one's bits (reentrant)
    grad_input_buffer = None
    if in_place_safe(grad, input, linear_weight):
        device = x.input.device
        grad_input_buffer = torch.empty(x.input.shape, dtype=config.dtype, device=device)
        grad_weight = torch.zeros(x.linear_weight.shape, dtype=config.dtype, device=device)
    for start, stop in _chunks(input.shape[0], config.chunk_size):
        h = x.input[start:stop]
        rows = _chunk_rows(target, ignored, x.weight, allowed, config, start, stop, per_row)
        chunk_scale = scale[start * per_row : stop * per_row]
        z, squashed = _chunk_logits(h, x.linear_weight, x.bias, config, not reads)
        z = _remove_classes(z, rows)
        g = row_gradient(z, rows, x.weight, chunk_scale, config.z_loss)  # 0 at removed classes
        if target.is_floating_point():
            eps = config.label_smoothing
            target_parts.append(target_gradient(z, rows, x.weight, eps, chunk_scale))
        g = g.reshape(h.shape[0], x.linear_weight.shape[0])
        if squashed is not None:
            g = g * (1 - squashed * squashed)
        if grad_input_buffer is None:
            input_parts.append(g @ x.linear_weight)
            # addmm as the fused pass accumulates
            grad_weight = g.T @ h if grad_weight is None else torch.addmm(grad_weight, g.T, h)
        else:
            torch.mm(g, x.linear_weight, out=grad_input_buffer[start:stop])
            assert grad_weight is not None
            grad_weight.addmm_(g.T, h)
        if linear_bias is not None:
            grad_bias = g.sum(0) if grad_bias is None else grad_bias + g.sum(0)
    assert grad_weight is not None
    grad_input = torch.cat(input_parts) if grad_input_buffer is None else grad_input_buffer
    grad_target = torch.cat(target_parts) if target_parts else None
    # grad_weight = G^T h is finite unless G (then grad_input too) or h is not (or it
    # overflows): not read
    if reads and not _all_finite(grad_input, grad_bias, grad_target, x.input):
        need = (True, True, linear_bias is not None, grad_target is not None)
        _, limit_input, limit_weight, grad_bias, grad_target = _limit_pass(
            input, linear_weight, target, ignored, linear_bias, weight, allowed, scale, config, need
        )
        assert limit_input is not None and limit_weight is not None
        grad_input, grad_weight = limit_input, limit_weight
    return (
        grad_input.to(input.dtype),
        grad_weight.to(linear_weight.dtype),
        None if grad_target is None else grad_target.to(target.dtype),
        None,
        None if grad_bias is None or linear_bias is None else grad_bias.to(linear_bias.dtype),
        None,
        None,
    )


@_linear_cross_entropy_rows.jvp
def _linear_cross_entropy_rows_jvp(
    input_t: Tensor,
    linear_weight_t: Tensor,
    target_t: Tensor | None,
    ignored_t: Tensor | None,
    linear_bias_t: Tensor | None,
    weight_t: Tensor | None,
    allowed_t: Tensor | None,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    ignored: Tensor | None,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    allowed: Tensor | None,
    config: Config,
) -> Tensor:
    # d loss = (d loss / dz) . dz  with  dz = (dh W^T + h dW^T + db) (1 - (z / softcap)^2).
    x = _stand_in(_Inputs.of(input, linear_weight, linear_bias, weight, config.dtype), True)
    dx = _Inputs.of(input_t, linear_weight_t, linear_bias_t, None, config.dtype)
    per_row = linear_weight.shape[0] // config.num_classes
    result = []
    for start, stop in _chunks(input.shape[0], config.chunk_size):
        h = x.input[start:stop]
        z, squashed = _chunk_logits(h, x.linear_weight, x.bias, config, True)
        du = dx.input[start:stop] @ x.linear_weight.T + h @ dx.linear_weight.T
        if dx.bias is not None:
            du = du + dx.bias
        dz = du if squashed is None else du * (1 - squashed * squashed)
        rows = _chunk_rows(target, ignored, x.weight, allowed, config, start, stop, per_row)
        z = _remove_classes(z, rows)
        dz = dz.reshape(-1, config.num_classes)
        result.append(row_jvp(z, dz, rows, x.weight, config.z_loss))  # dz 0 at removed classes
        if target_t is not None and target.is_floating_point():
            ones = torch.ones(z.shape[0], dtype=z.dtype, device=z.device)
            gradient = target_gradient(z, rows, x.weight, config.label_smoothing, ones)
            tangent = target_t[start * per_row : stop * per_row].to(z.dtype)
            result[-1] = result[-1] + (gradient * tangent).sum(1)
    return torch.cat(result).to(input.dtype)


# -- the eager training step: gradients computed in the forward pass, in place ------------------


def _fused_pass(
    x: _Inputs,
    target: Tensor,
    ignored: Tensor | None,
    allowed: Tensor | None,
    scale: Tensor,
    config: Config,
    need: tuple[bool, bool, bool],
    clamp: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """Per-row loss and ``scale``-weighted gradients (input, weight, bias) in the compute dtype,
    in place in one reused ``(chunk, D C)`` buffer (two with a softcap): no page faults after the
    first chunk, whatever the chunk size. ``clamp``: a ``+inf`` logit acts as the largest finite
    one, and an infinite input or weight entry a finite stand-in (:func:`_stand_in`)."""
    x = _stand_in(x, clamp)
    num_rows, outputs = x.input.shape[0], x.linear_weight.shape[0]
    per_row = outputs // config.num_classes
    dtype, device = config.dtype, x.input.device
    grad_input = torch.empty(x.input.shape, dtype=dtype, device=device) if need[0] else None
    grad_weight = (
        torch.zeros(x.linear_weight.shape, dtype=dtype, device=device) if need[1] else None
    )
    has_bias = x.bias is not None and need[2]
    grad_bias = torch.zeros(outputs, dtype=dtype, device=device) if has_bias else None
    size = min(config.chunk_size, num_rows)
    buffer = torch.empty(size, outputs, dtype=dtype, device=device)
    squash_size = 0 if config.softcap is None else size
    squash_buffer = torch.empty(squash_size, outputs, dtype=dtype, device=device)
    losses = []
    for start, stop in _chunks(num_rows, size):
        h, u = x.input[start:stop], buffer[: stop - start]
        if x.bias is None:
            torch.mm(h, x.linear_weight.T, out=u)
        else:
            torch.addmm(x.bias, h, x.linear_weight.T, out=u)
        squashed = None
        if config.softcap is not None:
            squashed = torch.div(u, config.softcap, out=squash_buffer[: stop - start]).tanh_()
            torch.mul(squashed, config.softcap, out=u)
        elif clamp:
            u.clamp_(max=torch.finfo(dtype).max)
        z = u.view(-1, config.num_classes)
        rows = _chunk_rows(target, ignored, x.weight, allowed, config, start, stop, per_row)
        if rows.allowed is not None:
            z.masked_fill_(~rows.allowed, -math.inf)
        dot = target_dot(z, rows, x.weight)
        # The z-loss's gradient needs lse exactly as the recomputing backward gets it.
        exact_lse = torch.logsumexp(z, 1) if config.z_loss > 0 else None
        softmax, lse = softmax_in_place(z)
        lse = lse if exact_lse is None else exact_lse
        losses.append(loss_from_parts(lse, dot, rows, config.z_loss))
        chunk_scale = scale[start * per_row : stop * per_row]
        g = softmax_gradient(softmax, lse, rows, x.weight, chunk_scale, config.z_loss, True)
        g = g.view(stop - start, outputs)
        if squashed is not None:
            g.mul_(squashed.square_().neg_().add_(1))
        if grad_input is not None:
            torch.mm(g, x.linear_weight, out=grad_input[start:stop])
        if grad_weight is not None:
            grad_weight.addmm_(g.T, h)
        if grad_bias is not None:
            grad_bias.add_(g.sum(0))
    return torch.cat(losses), grad_input, grad_weight, grad_bias


class _FusedLinearCrossEntropy(torch.autograd.Function):
    # Used only in plain eager mode (no torch.func transform, not compiling), so the classic
    # ctx-in-forward style is fine. The gradients computed in forward are intermediates: the
    # first backward that builds no graph consumes them (scaled in place, no copy); a double
    # backward (create_graph=True) or a second backward (retain_graph=True) recomputes from the
    # saved inputs instead, so no derivative is ever taken through them.

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        linear_weight: Tensor,
        target: Tensor,
        ignored: Tensor | None,
        bias: Tensor | None,
        weight: Tensor | None,
        allowed: Tensor | None,
        denominator: Tensor,
        config: Config,
        need: tuple[bool, bool, bool],
    ) -> Tensor:
        x = _Inputs.of(input, linear_weight, bias, weight, config.dtype)
        num_rows = target.shape[0]
        scale = (1 / denominator).to(config.dtype).expand(num_rows)
        reads = _reads(input, linear_weight, bias)
        loss, *grads = _fused_pass(x, target, ignored, allowed, scale, config, need, not reads)
        # grad_weight = G^T h and grad_bias are finite unless a loss or h is not (or they
        # overflow): not read
        if reads and not _all_finite(loss, grads[0], x.input if need[1] else None):
            loss, *grads, _ = _limit_pass(
                input,
                linear_weight,
                target,
                ignored,
                bias,
                weight,
                allowed,
                scale,
                config,
                (*need, False),
            )
        ctx.save_for_backward(input, linear_weight, target, ignored, bias, weight, allowed)
        ctx.scale, ctx.grads, ctx.config = scale, grads, config
        return (loss.sum() / denominator).to(input.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, linear_weight, target, ignored, bias, weight, allowed = ctx.saved_tensors
        if torch.is_grad_enabled() or ctx.grads is None:
            grads = _linear_cross_entropy_rows_backward(
                grad * ctx.scale,
                input,
                linear_weight,
                target,
                ignored,
                bias,
                weight,
                allowed,
                ctx.config,
            )
            grad_input, grad_weight, _, _, grad_bias, _, _ = grads
        else:
            if _functorch.is_legacy_batchedtensor(grad):  # vectorize=True jacobians
                scaled = [None if g is None else g * grad.to(g.dtype) for g in ctx.grads]
            else:  # the usual case: scale in place, no copy
                grads, ctx.grads = ctx.grads, None
                scaled = [None if g is None else g.mul_(grad.to(g.dtype)) for g in grads]
            like = (input, linear_weight, bias)
            grad_input, grad_weight, grad_bias = (
                None if g is None or t is None else g.to(t.dtype)
                for g, t in zip(scaled, like, strict=True)
            )
        return grad_input, grad_weight, None, None, grad_bias, None, None, None, None, None


# -- the public function --------------------------------------------------------------------------


class _Shapes(NamedTuple):
    num_classes: int  # C
    out_features: tuple[int, ...]  # (d1, ..., dK)
    probabilities: bool
    loss_shape: tuple[int, ...]  # the "none" loss: (N, d1, ..., dK), (N,) or ()


def _check_shapes(
    fn: str,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    ignore_index: int | None,
) -> _Shapes:
    if input.dim() not in (1, 2):
        fail(ValueError, fn, "input", "have shape (H,) or (N, H)", shape_str(input.shape))
    features = input.shape[-1]
    if linear_weight.dim() < 2 or linear_weight.shape[-1] != features:
        fail(
            ValueError,
            fn,
            "linear_weight",
            f"have shape (C, {features}) or (C, d1, ..., dK, {features}) for input of shape "
            f"{shape_str(input.shape)}",
            shape_str(linear_weight.shape),
        )
    num_classes, out_features = linear_weight.shape[0], tuple(linear_weight.shape[1:-1])
    if out_features and input.dim() == 1:
        fail(
            ValueError,
            fn,
            "input",
            f"be batched, (N, {features}), for K-dimensional linear_weight of shape "
            f"{shape_str(linear_weight.shape)}",
            shape_str(input.shape),
        )
    logits_shape = (*input.shape[:-1], num_classes, *out_features)
    if linear_bias is not None and linear_bias.shape != (num_classes, *out_features):
        fail(
            ValueError,
            fn,
            "linear_bias",
            f"have shape {shape_str((num_classes, *out_features))}, one per logit",
            shape_str(linear_bias.shape),
        )
    if weight is not None and weight.shape != (num_classes,):
        fail(
            ValueError,
            fn,
            "weight",
            f"have shape ({num_classes},), one per class",
            shape_str(weight.shape),
        )
    for name, value in (("linear_weight", linear_weight), ("linear_bias", linear_bias)):
        if value is not None and value.dtype != input.dtype:
            fail(TypeError, fn, name, f"have the input's dtype {input.dtype}", value.dtype)
    if weight is not None and weight.dtype != input.dtype:
        fail(TypeError, fn, "weight", f"have the input's dtype {input.dtype}", weight.dtype)
    check_tensor(fn, target=target)
    index_shape = (*input.shape[:-1], *out_features)
    if target.is_floating_point():
        if target.shape != logits_shape:
            fail(
                ValueError,
                fn,
                "target",
                f"have shape {shape_str(logits_shape)} (class probabilities) or "
                f"{shape_str(index_shape)} (class indices, integer dtype)",
                f"{shape_str(target.shape)} ({target.dtype})",
            )
        if ignore_index is not None:
            fail(
                ValueError,
                fn,
                "ignore_index",
                "be None for class-probability targets",
                ignore_index,
            )
        return _Shapes(num_classes, out_features, True, index_shape)
    check_integer(fn, target=target)
    if target.shape != index_shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(index_shape)} (class indices) for input of shape "
            f"{shape_str(input.shape)} and linear_weight of shape "
            f"{shape_str(linear_weight.shape)}",
            shape_str(target.shape),
            hint=f"For class probabilities pass a float target of shape {shape_str(logits_shape)}.",
        )
    return _Shapes(num_classes, out_features, False, index_shape)


def _linear_cross_entropy_config(
    *,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> None:
    """linear_cross_entropy's config (also checked by LinearCrossEntropyLoss at construction)."""
    fn = "linear_cross_entropy"
    check_reduction(fn, reduction)
    if ignore_index is not None:
        check_index(fn, ignore_index=ignore_index)
    check_in_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    check_non_negative(fn, z_loss=z_loss)
    if softcap is not None:
        check_number(fn, softcap=softcap)
        if not 0 < softcap < math.inf:  # an infinite cap gives inf * tanh(0) = nan
            fail(ValueError, fn, "softcap", "be positive and finite, or None", softcap)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0
    ):
        fail(ValueError, fn, "chunk_size", "be a positive int or None", repr(chunk_size))


def _auto_chunk_size(num_rows: int, outputs: int, dtype: torch.dtype) -> int:
    """Rows per chunk so that one chunk of logits takes about ``_CHUNK_BYTES``."""
    return max(1, min(num_rows, _CHUNK_BYTES // (dtype.itemsize * max(1, outputs))))


def _resolve_options(
    fn: str,
    options: object,
    chunk_size: int | None,
    input: Tensor,
    outputs: int,
) -> tuple[int, torch.dtype]:
    """(rows per chunk, compute dtype) from ``chunk_size`` and torch's ``options``."""
    dtype = compute_dtype(input.dtype)
    num_rows = input.shape[0] if input.dim() == 2 else 1
    if options is None:
        return chunk_size or _auto_chunk_size(num_rows, outputs, dtype), dtype
    if not isinstance(options, torch.nn.LinearCrossEntropyOptions):
        fail(
            TypeError,
            fn,
            "options",
            "be a torch.nn.LinearCrossEntropyOptions or None",
            type(options).__name__,
        )
    if options.acc_dtype is not None:
        if options.acc_dtype.itemsize < dtype.itemsize or not options.acc_dtype.is_floating_point:
            fail(
                ValueError,
                fn,
                "options.acc_dtype",
                f"be None or at least as precise as {dtype} (funcloss never computes in a "
                f"narrower dtype than {dtype} for {input.dtype} input)",
                options.acc_dtype,
            )
        dtype = options.acc_dtype
    size = options.batch_chunk_size
    if options.chunking_method not in (None, "auto"):
        # torch's own sizing rule for "aspect_ratio[:N]" (it raises ValueError if it disagrees
        # with an explicit batch_chunk_size, as torch does).
        size = options._adjust(num_rows, input.shape[-1], outputs, input.dtype).batch_chunk_size
    if size is not None and chunk_size is not None and size != chunk_size:
        fail(
            ValueError,
            fn,
            "chunk_size",
            f"agree with the options' chunk size {size} (pass one of them)",
            chunk_size,
        )
    size = size or chunk_size
    return size or _auto_chunk_size(num_rows, outputs, dtype), dtype


@follows_autocast("float32")
@checks_config(_linear_cross_entropy_config)
def linear_cross_entropy(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    *,
    linear_bias: Tensor | None = None,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: torch.nn.LinearCrossEntropyOptions | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    where: Tensor | None = None,
) -> Tensor:
    r"""Cross-entropy of a linear layer's logits, without materialising the ``(N, V)`` logits.

    The loss at the end of a language model or a large classifier: the same values and gradients
    as ``cross_entropy(linear(input, linear_weight, linear_bias), target)`` (torch's
    :func:`torch.nn.functional.linear_cross_entropy`, whose arguments it takes), computed a
    chunk of rows at a time, so that peak memory holds one chunk of logits instead of several
    ``(N, V)`` buffers. Class indices or class probabilities, K-dimensional outputs, every
    option, every torch.func transform and ``torch.compile``: all on the chunked path. Adds
    PaLM's z-loss and Gemma's logit soft-capping.

    .. math::
        z_n = s \tanh\!\big(u_n / s\big), \quad u_n = W h_n + b, \qquad
        \ell_n = A_n \mathrm{lse}_n - a_n \cdot z_n + \zeta\, r_n \mathrm{lse}_n^2

    with :math:`\mathrm{lse}_n = \log \sum_c e^{z_{n, c}}`, :math:`s` the ``softcap``
    (:math:`z = u` without one), :math:`\zeta` the ``z_loss``, and the target weights
    :math:`a_n = (1 - \varepsilon) w_{y_n} e_{y_n} + \frac{\varepsilon}{C} w` (class index
    :math:`y_n`, :math:`r_n = w_{y_n}`) or :math:`a_n = w \odot ((1 - \varepsilon) q_n +
    \varepsilon / C)` (probabilities :math:`q_n`, :math:`r_n = 1`), :math:`A_n = \sum_c a_{n,
    c}`, :math:`\varepsilon` the ``label_smoothing`` and :math:`w` the class ``weight``. Rows
    whose target is ``ignore_index`` contribute 0. ``"mean"`` divides by :math:`\sum_n r_n` over
    the rows not ignored (class indices, as ``cross_entropy``), or by the number of rows
    (probabilities), so the z-loss is weighted and averaged like the rest. Gradient:
    :math:`\partial \ell_n / \partial u_n = \big[(A_n + 2 \zeta r_n \mathrm{lse}_n)\,
    \mathrm{softmax}(z_n) - a_n\big] \odot (1 - (z_n / s)^2)`. With K-dimensional outputs
    (``linear_weight`` of shape ``(C, d1, ..., dK, H)``) the logits are ``(N, C, d1, ..., dK)``
    and each position :math:`(n, d)` is a row.

    In plain eager mode with ``"mean"``/``"sum"`` and gradients needed, the gradients are
    computed during the forward pass (three matmuls per chunk in all); otherwise (under
    torch.func transforms, ``torch.compile``, ``"none"``) the backward recomputes each chunk's
    logits from the saved inputs. bf16/fp16 inputs are computed in fp32 chunk by chunk (from an
    fp32 copy of ``linear_weight``); the weight and bias gradients accumulate in the compute
    dtype. Second derivatives (``hessian``, ``jacrev(jacrev)``, ``create_graph=True``) are
    exact. Never materialised: the ``(N, D C)`` logits; K-dimensional outputs copy
    ``linear_weight`` once (permuted), and probability targets with K dimensions are permuted
    once (a copy of the target, which is ``(N, D C)`` itself).

    At the edges: an infinite entry of ``input``, ``linear_weight`` or ``linear_bias`` (logits
    ``inf``, ``inf * 0``, ``inf - inf``), or finite ones so large that the logits overflow
    (``1e20`` in float32), gives the float64 limit, value and gradients, wherever it is finite
    (read each ``inf`` as a stand-in ``T -> inf``; the softmax concentrates on the classes whose
    logits grow fastest, and their finite parts decide between them). The value is ``+inf``
    where the target lies outside them (the limit), with finite gradients in ``input`` and
    ``linear_bias``; a gradient term ``m T`` is ``+-inf``, or 0 where ``m`` is 0. A NaN input
    stays NaN. This holds in plain eager mode on the CPU (value checks on): one extra host read
    tells whether every loss (and gradient) is finite, and only then is the call recomputed in
    float64. Elsewhere (torch.func transforms, ``torch.compile``, other devices, value checks
    off) nothing is read: an infinite ``input`` or ``linear_weight`` entry acts as a large
    finite stand-in (``2^64`` in float32, ``2^512`` in float64) and a ``+inf`` logit as the
    largest finite one, so the result is finite and the limit where one class leads each row
    (two classes growing alike are resolved only in eager mode). An infinite entry times a 0
    adds 0, the limit (an infinite weight at a 0 hidden entry: the value and the weight's and
    bias's gradients are eager mode's); the gradient of the 0 entry through it is the stand-in
    times its factor, where the limit (eager mode's) is ``+-inf``.

    Args:
        input: features, shape ``(N, H)`` or ``(H,)``, floating dtype.
        linear_weight: the output layer's weight, shape ``(C, H)`` or ``(C, d1, ..., dK, H)``
            (then ``input`` must be ``(N, H)``), ``input``'s dtype.
        target: class indices, integer dtype, shape ``(N, d1, ..., dK)`` (``(N,)``, or ``()``
            for an unbatched input), values in ``[0, C)`` or ``ignore_index`` (range checked
            in eager mode only); or class probabilities, floating dtype, the logits' shape
            ``(N, C, d1, ..., dK)`` (``(C,)`` unbatched). A probability target of a wider dtype
            than ``input`` promotes the computation and the result, as in ``cross_entropy``.
        linear_bias: optional bias of the output layer, shape ``(C, d1, ..., dK)``.
        weight: optional per-class weight, shape ``(C,)``, ``input``'s dtype.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        ignore_index: class index whose rows contribute nothing. ``None`` (torch's default)
            means -100 for class indices; it must be ``None`` for probabilities (as in torch).
        label_smoothing: :math:`\varepsilon` in ``[0, 1]``.
        options: torch's :class:`torch.nn.LinearCrossEntropyOptions`, or ``None``. funcloss is
            always chunked, so ``None`` (torch's reference path) means funcloss's automatic
            chunk; given options steer the chunk: ``batch_chunk_size`` (as ``chunk_size``) and
            ``chunking_method`` (``"aspect_ratio[:N]"`` sizes it by torch's rule; ``"auto"``,
            without a ``batch_chunk_size``, means funcloss's automatic chunk). ``acc_dtype``
            sets the compute dtype (``None``: fp32 for bf16/fp16, else the input's; a narrower
            one than that raises). ``acc_policy``: every policy gets the most precise one,
            ``"accurate"`` (fp32 weight-gradient accumulation for bf16/fp16). ``allow_retain_graph``
            needs nothing: a second backward always works (it recomputes from the inputs).
        z_loss: :math:`\zeta \ge 0`, the coefficient of :math:`\mathrm{lse}^2` (PaLM uses
            ``1e-4``); it pulls the log-partition function towards 0.
        softcap: :math:`s > 0` to soft-cap the logits to :math:`(-s, s)` (Gemma 2 uses 30), or
            ``None``.
        chunk_size: rows of ``input`` per chunk; ``None`` picks it so that a chunk of logits
            takes about 64 MiB. Only speed and memory depend on it.
        where: optional bool mask, one of two kinds, told apart by its number of dimensions,
            as in :func:`cross_entropy`. A *row mask*, broadcastable to the unreduced loss shape
            (``(N,)``, ``(N, d1, ..., dK)``, ``()`` unbatched): a masked row adds nothing and
            gets exactly zero gradient, its ``input`` row included when all its outputs are
            masked (also where it holds inf or NaN); its target is not read. ``"mean"``
            divides by the included rows' :math:`\sum r_n` (class indices) or their number
            (probabilities), and is 0 with every row masked. A *class mask* of the logits'
            dimensions, broadcastable to their shape (``(N, C)``, ``(1, C)`` for one vocabulary
            shared by every row, ``(N, C, d1, ..., dK)``, ``(C,)`` unbatched) removes the
            ``False`` classes from each softmax, as if their logits were ``-inf``: zero
            probability, zero gradient through them (an inf/NaN *logit* there is harmless; a
            NaN row of ``linear_weight`` still reaches ``input``'s gradient through the
            matmul, an infinite one only outside eager mode), label smoothing spread over the
            classes left, probability mass on a removed class dropped, ``+inf`` for a class
            index on a removed class (the true value); a row with no class left counts as
            masked. A ``(C,)`` mask for batched input is refused (it would read as a row mask
            when ``N == C``): pass ``(1, C)``.

    Returns:
        Shape ``(N, d1, ..., dK)`` (``(N,)``; ``()`` for an unbatched input) for ``"none"``
        (0 at masked rows), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or weights, mismatched dtypes, a non-integer class-index
            target, ``options`` not a ``LinearCrossEntropyOptions``, a non-bool ``where``.
        ValueError: mismatched feature sizes, a bias, class weight or target of the wrong shape,
            an ``ignore_index`` with probabilities, bad ``reduction``/``label_smoothing``/
            ``z_loss``, ``softcap <= 0``, a non-positive ``chunk_size`` or one that disagrees
            with ``options``, an ``acc_dtype`` narrower than the compute dtype, a ``where`` of
            neither mask's shape.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> funcloss.linear_cross_entropy(h, W, torch.tensor([0, 2]), reduction="none")
        tensor([0.8620, 0.7586])
        >>> funcloss.linear_cross_entropy(h, W, torch.tensor([0, 2]), z_loss=1e-2, softcap=2.0)
        tensor(0.8785)
        >>> q = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
        >>> funcloss.linear_cross_entropy(h, W, q, reduction="none")
        tensor([0.8620, 0.7586])

    References:
        Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways" (2022), z-loss;
        Gemma Team, "Gemma 2" (2024), logit soft-capping.
    """
    fn = "linear_cross_entropy"
    check_tensor(fn, input=input, linear_weight=linear_weight)
    check_floating(fn, input=input, linear_weight=linear_weight, linear_bias=linear_bias)
    check_floating(fn, weight=weight)
    _linear_cross_entropy_config(
        reduction=reduction,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        chunk_size=chunk_size,
    )
    shapes = _check_shapes(fn, input, linear_weight, target, linear_bias, weight, ignore_index)
    num_classes, features = shapes.num_classes, input.shape[-1]
    per_row = math.prod(shapes.out_features)
    keep = allowed = None
    if where is not None:
        logits_shape = (*input.shape[:-1], num_classes, *shapes.out_features)
        keep, allowed = _masks(fn, where, shapes.loss_shape, logits_shape, per_row)
    if shapes.probabilities:
        dtype = torch.promote_types(input.dtype, target.dtype)
        input, linear_weight = input.to(dtype), linear_weight.to(dtype)
        linear_bias = None if linear_bias is None else linear_bias.to(dtype)
        weight = None if weight is None else weight.to(dtype)
    size, dtype = _resolve_options(fn, options, chunk_size, input, num_classes * per_row)
    rows = input if input.dim() == 2 else input.unsqueeze(0)
    if shapes.out_features:
        # (C, d..., H) -> (D C, H) with the class fastest, so u (rows, D C) is (rows D, C).
        linear_weight = linear_weight.reshape(num_classes, per_row, features).transpose(0, 1)
        linear_weight = linear_weight.reshape(per_row * num_classes, features)
        if linear_bias is not None:
            linear_bias = linear_bias.reshape(num_classes, per_row).T.reshape(-1)
    ignored: Tensor | None = None
    row_weights: Tensor | None = None  # the mean's terms; None: all ones
    if shapes.probabilities:
        flat = target.reshape(-1, num_classes, per_row).transpose(1, 2)
        flat_target = flat.reshape(-1, num_classes)
        if keep is not None:
            ignored = ~keep
            flat_target = masked(keep.unsqueeze(1), flat_target, 0.0)  # not read
    else:
        ignore = _DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
        flat_target = as_index(target).reshape(-1)
        if keep is not None:
            flat_target = torch.where(keep, flat_target, ignore)  # not read, counted nowhere
        flat_target, ignored = class_index_mask(fn, flat_target, num_classes, ignore)
        flat_target = flat_target.long()
        row_weights = _row_weights(flat_target, ignored, weight, dtype)
    if ignored is not None:
        # An input row whose outputs are all ignored gives exactly nothing: nan or inf
        # padding must not reach d/dW = G^T h through 0 * nan.
        row_ignored = ignored if per_row == 1 else ignored.view(-1, per_row).all(1)
        rows = rows.masked_fill(row_ignored.unsqueeze(1), 0)
        if allowed is not None:  # an ignored row keeps every class: finite logits
            allowed = allowed | ignored.unsqueeze(1)
    config = Config(num_classes, float(label_smoothing), float(z_loss), softcap, size, dtype)
    if (
        fused_training_step(reduction, rows, linear_weight, linear_bias)
        and not target.requires_grad
    ):
        need = tuple(t is not None and t.requires_grad for t in (rows, linear_weight, linear_bias))
        denominator = _denominator(
            reduction, row_weights, keep, flat_target.shape[0], dtype, input.device
        )
        return _FusedLinearCrossEntropy.apply(
            rows,
            linear_weight,
            flat_target,
            ignored,
            linear_bias,
            weight,
            allowed,
            denominator,
            config,
            need,
        )
    loss = _linear_cross_entropy_rows(
        rows, linear_weight, flat_target, ignored, linear_bias, weight, allowed, config
    )
    if reduction == "none":
        return loss.reshape(shapes.loss_shape)
    return reduce(loss, reduction, where=keep, mean_weight=row_weights)


def _masks(
    fn: str,
    where: Tensor,
    loss_shape: tuple[int, ...],
    logits_shape: tuple[int, ...],
    per_row: int,
) -> tuple[Tensor, Tensor | None]:
    """(softmax rows kept ``(N D,)``, classes allowed ``(N D, C)``) from ``where``, a row mask
    (the loss's shape) or a class mask (the logits' dimensions); a row with no class allowed is
    not kept. Any other ``where`` raises."""
    if not softmax_mask(fn, where, loss_shape, logits_shape):
        return where.expand(loss_shape).reshape(-1), None
    expanded = where.expand(logits_shape)
    num_classes = logits_shape[0] if len(logits_shape) == 1 else logits_shape[1]
    # (N, C, d...) -> (N D, C), the order of the softmax rows
    allowed = expanded.reshape(-1, num_classes, per_row).transpose(1, 2).reshape(-1, num_classes)
    return allowed.any(1), allowed


def _row_weights(
    index: Tensor, ignored: Tensor | None, weight: Tensor | None, dtype: torch.dtype
) -> Tensor | None:
    """Each row's class weight, 0 where ignored: the class-weighted mean's terms (``None``: all
    ones, no weight and nothing ignored)."""
    if weight is None:
        return None if ignored is None else (~ignored).to(dtype)
    row_weights = weight.to(dtype).gather(0, index)
    return row_weights if ignored is None else row_weights.masked_fill(ignored, 0)


def _denominator(
    reduction: str,
    row_weights: Tensor | None,
    keep: Tensor | None,
    num_rows: int,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    """The fused pass's "mean" denominator (1 for "sum") in the compute ``dtype``:
    :func:`reduce`'s, which the fused pass cannot call (it scales the gradients it computes
    during the forward by it)."""
    if reduction == "sum":
        return torch.ones((), dtype=dtype, device=device)
    counted = row_weights if row_weights is not None else keep
    if counted is None:
        return torch.tensor(float(num_rows), dtype=dtype, device=device)
    total = counted.sum().to(dtype)
    return total if keep is None else torch.where(total == 0, 1, total)
