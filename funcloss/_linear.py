"""linear_cross_entropy: the cross-entropy of a linear layer's logits, chunked over rows so that the
full ``(N, V)`` logits never exist.

Two paths, one set of formulas:

- ``_linear_cross_entropy_rows``, a :func:`custom_backward` loss that saves only its inputs and
  recomputes each chunk's logits in backward, from differentiable ops: exact under every
  torch.func transform, double backward included, and under ``torch.compile``;
- ``_FusedLinearCrossEntropy``, plain eager mode with a scalar reduction (a training step): it
  computes the gradients chunk by chunk during the forward pass, while each chunk's logits are at
  hand, which saves the backward's recomputing matmul. Its backward uses those gradients only
  when no graph is being built; under ``create_graph=True`` it differentiates from the saved
  inputs instead, so a second derivative is never taken through a stored intermediate.

The per-chunk formulas and the in-place pass live in ``_linear_chunks.py``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_class_indices,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_non_negative,
    check_number,
    check_reduction,
    check_tensor,
    fail,
    in_place_safe,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._linear_chunks import (
    Cast,
    Config,
    cast_like,
    chunk_gradient,
    chunk_logits,
    chunks,
    compute_dtype,
    fused_pass,
    row_loss,
    target_parts,
    target_rows,
)
from ._modes import follows_autocast

# The automatic chunk holds about this many bytes of logits (compute dtype), whatever N and V.
# Each chunk reads the (V, H) weight twice and updates its (V, H) gradient once, so rows per chunk
# must be many for the matmuls to run at full-problem speed. Measured (examples/benchmark.py's
# method; N=4096, H=512, V=32000, fp32, 2 shared cores), time and peak memory against the naive
# path: 16 MiB chunks 1.53x / 0.06x, 32 MiB 1.08x / 0.07x, 64 MiB 0.92x / 0.09x,
# 128 MiB 0.90x / 0.14x.
_CHUNK_BYTES = 64 * 2**20
_DEFAULT_IGNORE_INDEX = -100  # torch's, for class-index targets


def _auto_chunk_size(num_rows: int, num_classes: int, dtype: torch.dtype) -> int:
    """Rows per chunk so that one chunk of logits takes about ``_CHUNK_BYTES``."""
    itemsize = compute_dtype(dtype).itemsize
    return max(1, min(num_rows, _CHUNK_BYTES // (itemsize * num_classes)))


# -- the transform-safe path: saves only inputs, recomputes chunk logits in backward ------------


@custom_backward
def _linear_cross_entropy_rows(
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    config: Config,
) -> Tensor:
    """Per-row loss for ``(M, H)`` inputs and ``(M,)`` class indices, one chunk at a time."""
    if value_checks_enabled():  # plain eager: nothing differentiates these ops, work in place
        no_gradients = (False, False, False)
        ones = input.new_ones(())
        loss, *_ = fused_pass(
            input, linear_weight, target, linear_bias, weight, ones, config, no_gradients
        )
        return loss.to(input.dtype)
    x = Cast.of(input, linear_weight, linear_bias, weight)
    rows = target_rows(target, weight, config.ignore_index, x.input.dtype)
    eps, num_classes = config.label_smoothing, linear_weight.shape[0]
    losses = []
    for start, stop in chunks(input.shape[0], config.chunk_size):
        logits, _ = chunk_logits(x.input[start:stop], x.linear_weight, x.bias, config.softcap)
        chunk_rows = rows.chunk(start, stop)
        parts = target_parts(logits, chunk_rows, x.weight, eps)
        lse = torch.logsumexp(logits, 1)
        losses.append(row_loss(lse, parts, chunk_rows, x.weight, num_classes, eps, config.z_loss))
    return torch.cat(losses).to(input.dtype)


@_linear_cross_entropy_rows.backward
def _linear_cross_entropy_rows_backward(
    grad: Tensor,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    config: Config,
) -> tuple[Tensor | None, Tensor | None, None, Tensor | None, None]:
    # d/dh = G W,  d/dW = G^T h,  d/db = 1^T G  with  G = grad * d loss / du, chunk by chunk.
    if in_place_safe(grad):  # one chunk buffer updated in place
        _, *grads = fused_pass(input, linear_weight, target, linear_bias, weight, grad, config)
        like = (input, linear_weight, linear_bias)
        cast = [cast_like(g, t) for g, t in zip(grads, like, strict=True)]
        return cast[0], cast[1], None, cast[2], None
    x = Cast.of(input, linear_weight, linear_bias, weight)
    rows = target_rows(target, weight, config.ignore_index, x.input.dtype)
    # Ignored rows get exactly zero, even where grad is not finite (a mean over no rows).
    scale = grad.to(x.input.dtype).masked_fill(rows.ignored, 0)
    input_parts: list[Tensor] = []
    grad_weight: Tensor | None = None
    grad_bias: Tensor | None = None
    for start, stop in chunks(input.shape[0], config.chunk_size):
        h = x.input[start:stop]
        logits, squashed = chunk_logits(h, x.linear_weight, x.bias, config.softcap)
        chunk_rows, chunk_scale = rows.chunk(start, stop), scale[start:stop]
        g = chunk_gradient(logits, squashed, chunk_rows, chunk_scale, x.weight, config)
        input_parts.append(g @ x.linear_weight)
        part = g.T @ h
        grad_weight = part if grad_weight is None else grad_weight + part
        if linear_bias is not None:
            grad_bias = g.sum(0) if grad_bias is None else grad_bias + g.sum(0)
    return (
        torch.cat(input_parts).to(input.dtype),
        cast_like(grad_weight, linear_weight),
        None,
        cast_like(grad_bias, linear_bias),
        None,
    )


@_linear_cross_entropy_rows.jvp
def _linear_cross_entropy_rows_jvp(
    input_t: Tensor,
    linear_weight_t: Tensor,
    target_t: Tensor,
    linear_bias_t: Tensor | None,
    weight_t: Tensor | None,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None,
    weight: Tensor | None,
    config: Config,
) -> Tensor:
    # d loss = (d loss / du) . du  with  du = dh W^T + h dW^T + db.
    x = Cast.of(input, linear_weight, linear_bias, weight)
    dx = Cast.of(input_t, linear_weight_t, linear_bias_t, None)
    rows = target_rows(target, weight, config.ignore_index, x.input.dtype)
    ones = rows.keep.new_ones(())
    result = []
    for start, stop in chunks(input.shape[0], config.chunk_size):
        h = x.input[start:stop]
        logits, squashed = chunk_logits(h, x.linear_weight, x.bias, config.softcap)
        g = chunk_gradient(logits, squashed, rows.chunk(start, stop), ones, x.weight, config)
        du = dx.input[start:stop] @ x.linear_weight.T + h @ dx.linear_weight.T
        if dx.bias is not None:
            du = du + dx.bias
        result.append((g * du).sum(1))
    return torch.cat(result).to(input.dtype)


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
        bias: Tensor | None,
        weight: Tensor | None,
        mean: bool,
        config: Config,
        need: tuple[bool, bool, bool],
    ) -> Tensor:
        rows = target_rows(target, weight, config.ignore_index, compute_dtype(input.dtype))
        denominator = rows.weight.sum() if mean else rows.weight.new_ones(())
        scale = 1 / denominator
        loss, *grads = fused_pass(input, linear_weight, target, bias, weight, scale, config, need)
        ctx.save_for_backward(input, linear_weight, target, bias, weight)
        ctx.scale, ctx.grads, ctx.config = scale, grads, config
        return (loss.sum() / denominator).to(input.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, linear_weight, target, bias, weight = ctx.saved_tensors
        if torch.is_grad_enabled() or ctx.grads is None:
            rows_grad = (grad * ctx.scale).expand(input.shape[0])
            grads = _linear_cross_entropy_rows_backward(
                rows_grad, input, linear_weight, target, bias, weight, ctx.config
            )
            grad_input, grad_weight, _, grad_bias, _ = grads
            return grad_input, grad_weight, None, grad_bias, None, None, None, None
        if in_place_safe(grad):  # the usual case: scale in place, no copy
            grads, ctx.grads = ctx.grads, None
            scaled = [None if g is None else g.mul_(grad.to(g.dtype)) for g in grads]
        else:  # a batched grad (torch.autograd.functional's vectorize=True)
            scaled = [None if g is None else g * grad.to(g.dtype) for g in ctx.grads]
        grad_input, grad_weight, grad_bias = map(cast_like, scaled, (input, linear_weight, bias))
        return grad_input, grad_weight, None, grad_bias, None, None, None, None


def _use_fused(reduction: str, *tensors: Tensor | None) -> bool:
    """A training step in plain eager mode: a scalar loss whose gradients will be needed."""
    return (
        reduction != "none"
        and torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in tensors)
        and value_checks_enabled()
        # Forward-mode AD (a dual level is open) needs the transform-safe path's jvp.
        and torch.autograd.forward_ad._current_level < 0
    )


# -- the public function --------------------------------------------------------------------------


def _check_shapes(
    fn: str,
    input: Tensor,
    linear_weight: Tensor,
    target: Tensor,
    linear_bias: Tensor | None,
    weight: Tensor | None,
) -> None:
    if input.dim() not in (1, 2):
        fail(ValueError, fn, "input", "have shape (H,) or (N, H)", shape_str(input.shape))
    features = input.shape[-1]
    if linear_weight.dim() != 2 or linear_weight.shape[1] != features:
        fail(
            ValueError,
            fn,
            "linear_weight",
            f"have shape (V, {features}) for input of shape {shape_str(input.shape)}",
            shape_str(linear_weight.shape),
            hint="For K-dimensional logits use cross_entropy(linear(input, linear_weight), target)."
            if linear_weight.dim() > 2
            else "",
        )
    num_classes = linear_weight.shape[0]
    for name, value in (("linear_bias", linear_bias), ("weight", weight)):
        if value is None:
            continue
        if value.shape != (num_classes,):
            fail(
                ValueError,
                fn,
                name,
                f"have shape ({num_classes},), one per class",
                shape_str(value.shape),
            )
    for name, value in (("linear_weight", linear_weight), ("linear_bias", linear_bias)):
        if value is not None and value.dtype != input.dtype:
            fail(TypeError, fn, name, f"have the input's dtype {input.dtype}", value.dtype)
    if weight is not None and weight.dtype != input.dtype:
        fail(TypeError, fn, "weight", f"have the input's dtype {input.dtype}", weight.dtype)
    check_tensor(fn, target=target)
    if target.is_floating_point():
        fail(
            TypeError,
            fn,
            "target",
            "hold class indices (integer dtype)",
            target.dtype,
            hint="For class probabilities use cross_entropy(linear(input, linear_weight), target).",
        )
    check_integer(fn, target=target)
    expected = input.shape[:-1]
    if target.shape != expected:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(expected)} (class indices) for input of shape "
            f"{shape_str(input.shape)}",
            shape_str(target.shape),
        )


def _check_config(
    fn: str, label_smoothing: float, z_loss: float, softcap: float | None, chunk_size: int | None
) -> None:
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


@follows_autocast("float32")
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
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Cross-entropy of a linear layer's logits, without materialising the ``(N, V)`` logits.

    The loss at the end of a language model or a large classifier: the same values and gradients
    as ``cross_entropy(linear(input, linear_weight, linear_bias), target)``, computed a chunk of
    rows at a time, so that peak memory holds one chunk of logits instead of several ``(N, V)``
    buffers. Adds PaLM's z-loss and Gemma's logit soft-capping.

    .. math::
        z_n = s \tanh\!\big(u_n / s\big), \quad u_n = W h_n + b, \qquad
        \ell_n = (1 - \varepsilon)\, w_{y_n} (\mathrm{lse}_n - z_{n, y_n})
            + \frac{\varepsilon}{V} \sum_c w_c (\mathrm{lse}_n - z_{n, c})
            + \zeta\, w_{y_n} \mathrm{lse}_n^2

    with :math:`\mathrm{lse}_n = \log \sum_c e^{z_{n, c}}`, :math:`s` the ``softcap``
    (:math:`z = u` without one), :math:`\varepsilon` the ``label_smoothing``, :math:`\zeta` the
    ``z_loss`` and :math:`w` the class ``weight`` (ones without one). Rows whose target is
    ``ignore_index`` contribute 0. ``"mean"`` divides by :math:`\sum_n w_{y_n}` over the rows
    not ignored, as ``cross_entropy`` does, so the z-loss term is weighted and averaged like the
    rest: without class weights it is :math:`\zeta` times the mean of :math:`\mathrm{lse}^2`
    over the rows not ignored. Gradient: :math:`\partial \ell_n / \partial u_n = \big[(A_n +
    2 \zeta w_{y_n} \mathrm{lse}_n)\, \mathrm{softmax}(z_n) - a_n\big] \odot (1 - (z_n / s)^2)`,
    where :math:`a_n = (1 - \varepsilon) w_{y_n} e_{y_n} + \frac{\varepsilon}{V} w` and
    :math:`A_n = \sum_c a_{n, c}`.

    In plain eager mode with ``"mean"``/``"sum"`` and gradients needed, the gradients are
    computed during the forward pass (three matmuls per chunk in all); otherwise (under
    torch.func transforms, ``torch.compile``, ``"none"``) the backward recomputes each chunk's
    logits from the saved inputs. bf16/fp16 inputs are computed in fp32 chunk by chunk (from an
    fp32 copy of ``linear_weight``); the weight and bias gradients accumulate in fp32 (fp64 for
    fp64 inputs). Second derivatives
    (``hessian``, ``jacrev(jacrev)``, ``create_graph=True``) are exact.

    Args:
        input: features, shape ``(N, H)`` or ``(H,)``, floating dtype.
        linear_weight: the output layer's weight, shape ``(V, H)``, ``input``'s dtype.
        target: class indices, integer dtype, shape ``(N,)`` (``()`` for an unbatched input),
            values in ``[0, V)`` or ``ignore_index`` (range checked in eager mode only). Class
            probabilities and K-dimensional weights, which torch's function also takes, are not
            supported: use ``cross_entropy(linear(...))`` for those.
        linear_bias: optional bias of the output layer, shape ``(V,)``.
        weight: optional per-class weight, shape ``(V,)``, ``input``'s dtype.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        ignore_index: class index whose rows contribute nothing. ``None`` (torch's default)
            means -100, as in ``cross_entropy``.
        label_smoothing: :math:`\varepsilon` in ``[0, 1]``.
        z_loss: :math:`\zeta \ge 0`, the coefficient of :math:`\mathrm{lse}^2` (PaLM uses
            ``1e-4``); it pulls the log-partition function towards 0.
        softcap: :math:`s > 0` to soft-cap the logits to :math:`(-s, s)` (Gemma 2 uses 30), or
            ``None``.
        chunk_size: rows per chunk; ``None`` picks it so that a chunk of logits takes about
            64 MiB. Only speed and memory depend on it.

    Returns:
        Shape ``(N,)`` (``()`` for an unbatched input) for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or weights, mismatched dtypes, a float (probability) or
            non-integer target.
        ValueError: mismatched feature sizes, a bias, class weight or target of the wrong shape,
            bad ``reduction``/``label_smoothing``/``z_loss``, ``softcap <= 0``, a non-positive
            ``chunk_size``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> funcloss.linear_cross_entropy(h, W, torch.tensor([0, 2]), reduction="none")
        tensor([0.8620, 0.7586])
        >>> funcloss.linear_cross_entropy(h, W, torch.tensor([0, 2]), z_loss=1e-2, softcap=2.0)
        tensor(0.8785)

    References:
        Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways" (2022), z-loss;
        Gemma Team, "Gemma 2" (2024), logit soft-capping.
    """
    fn = "linear_cross_entropy"
    check_floating(fn, input=input, linear_weight=linear_weight, linear_bias=linear_bias)
    check_floating(fn, weight=weight)
    check_reduction(fn, reduction)
    _check_shapes(fn, input, linear_weight, target, linear_bias, weight)
    _check_config(fn, label_smoothing, z_loss, softcap, chunk_size)
    if ignore_index is not None:
        check_index(fn, ignore_index=ignore_index)
    ignore = _DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
    num_classes = linear_weight.shape[0]
    target = as_index(target)
    check_class_indices(fn, target, num_classes, ignore)
    rows = input if input.dim() == 2 else input.unsqueeze(0)
    flat_target = target.reshape(-1).long()
    size = chunk_size or _auto_chunk_size(rows.shape[0], num_classes, input.dtype)
    config = Config(ignore, float(label_smoothing), float(z_loss), softcap, size)
    if _use_fused(reduction, input, linear_weight, linear_bias):
        need = tuple(t is not None and t.requires_grad for t in (input, linear_weight, linear_bias))
        return _FusedLinearCrossEntropy.apply(
            rows, linear_weight, flat_target, linear_bias, weight, reduction == "mean", config, need
        )
    loss = _linear_cross_entropy_rows(rows, linear_weight, flat_target, linear_bias, weight, config)
    if reduction == "none":
        return loss.reshape(target.shape)
    if reduction == "sum":
        return loss.sum()
    row_weights = target_rows(flat_target, weight, ignore, loss.dtype).weight
    return loss.sum() / row_weights.sum()
