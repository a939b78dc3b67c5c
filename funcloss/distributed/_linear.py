"""vocab_parallel_linear_cross_entropy: the vocab-parallel loss of a sharded linear layer, chunked
over rows so that this rank's ``(N, V_r)`` logits never exist.

Rank ``r`` holds ``W_r`` ``(V_r, H)`` (and ``b_r``); per chunk of rows the logits are ``z = s
tanh(u / s)`` (or ``u``), ``u = h W_r^T + b_r``, and the statistics are those of
funcloss.distributed._cross_entropy (``lse_r``, ``t_r``, ``d_r``), combined the same way. The
gradient of a chunk is ``d u = (g_lse softmax(z) + g_d w + g_t onehot) (1 - (z / s)^2)``, then
``dW_r += du^T h``, ``db_r += sum du``, ``dh = du W_r`` (this rank's part). Two paths:

- the transform-safe one (``_LinearStats``): one all-gather for all rows; the backward
  recomputes each chunk's logits (four matmuls per chunk in all);
- plain eager mode with a scalar reduction (``_FusedLinear``, a training step): per chunk, the
  logits, an all-gather of the chunk's statistics (the gradient needs each row's global
  ``lse``), the loss, and ``d u`` in place in the logits' buffer (three matmuls per chunk, as
  torch's ``h W_r^T`` then ``loss_parallel``); the backward scales the gradients by the
  incoming one, or recomputes the first path when it builds a graph.

The replicated ``input`` ``h``: its gradient is the sum of every rank's part, one all-reduce in
backward (``input_grad="all_reduce"``) or this rank's part (``"partial"``, for a caller that
reduces it). Forward-mode and second derivatives with respect to ``h`` would need the other
ranks' terms: they raise. With respect to ``W_r`` and ``b_r`` every derivative is local and exact.
"""

# torch declares autograd.Function's backward/jvp/vmap with *args; a concrete Function names them.
# pyright: reportIncompatibleMethodOverride=false

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from .._checks import (
    Reduction,
    _functorch,
    check_floating,
    check_index,
    check_positive,
    check_tensor,
    check_where,
    checks_config,
    fail,
    fused_training_step,
    shape_str,
)
from .._modes import follows_autocast
from .._reduction import reduce
from .._softmax_ce import compute_dtype, softmax_in_place
from ._collectives import Group, first_order_only, group_info, sum_gradients
from ._cross_entropy import (
    RowTargets,
    _check_config,
    _check_high,
    _check_shapes,
    _local_targets,
    loss_rows,
    reduced_loss,
    row_targets,
    shard_constants,
)

_FN = "vocab_parallel_linear_cross_entropy"
_CHUNK_BYTES = 64 * 2**20  # logits per chunk (compute dtype), as funcloss.linear_cross_entropy


class _Config(NamedTuple):
    with_lse: bool
    with_dot: bool
    softcap: float | None
    chunk_size: int


def _logits(h: Tensor, w: Tensor, b: Tensor | None, softcap: float | None) -> Tensor:
    u = h @ w.T if b is None else torch.addmm(b, h, w.T)
    return u if softcap is None else softcap * torch.tanh(u / softcap)


def _chunks(rows: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, rows)) for start in range(0, max(rows, 1), size)]


def _compute(*tensors: Tensor | None, dtype: torch.dtype) -> list[Any]:
    return [None if t is None else t.to(dtype) for t in tensors]


def _stats_forward(
    input: Tensor,
    linear_weight: Tensor,
    bias: Tensor | None,
    index: Tensor | None,
    selected: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    config: _Config,
) -> Tensor:
    dtype = compute_dtype(input.dtype)
    h, w, b, cw = _compute(input, linear_weight, bias, weight, dtype=dtype)
    parts = []
    for start, stop in _chunks(h.shape[0], config.chunk_size):
        z = _logits(h[start:stop], w, b, config.softcap)
        if dropped is not None and torch.compiler.is_compiling():
            z = z.masked_fill(dropped[start:stop].unsqueeze(1), 0)  # autodiffed there
        columns = [torch.logsumexp(z, 1)] if config.with_lse else []
        if config.with_dot:
            columns.append(z.sum(1) if cw is None else z @ cw)
        if index is not None:
            assert selected is not None
            picked = z.gather(1, index[start:stop].unsqueeze(1)).squeeze(1)
            columns.append(torch.where(selected[start:stop], picked, 0))
        parts.append(torch.stack(columns, 1))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _chunk_gradient(
    z: Tensor,
    grad: Tensor,
    index: Tensor | None,
    selected: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    config: _Config,
) -> Tensor:
    """``d stats / d u`` contracted with ``grad``, for one chunk (``z`` its logits)."""
    column = 0
    gradient = torch.zeros_like(z)
    if config.with_lse:
        gradient = gradient + torch.softmax(z, 1) * grad[:, :1]
        column = 1
    if config.with_dot:
        term = grad[:, column : column + 1]
        gradient = gradient + (term if weight is None else term * weight)
        column += 1
    if index is not None:
        assert selected is not None
        picked = torch.where(selected, grad[:, column], 0).unsqueeze(1)
        gradient = gradient.scatter_add(1, index.unsqueeze(1), picked)
    if dropped is not None:
        gradient = gradient.masked_fill(dropped.unsqueeze(1), 0)
    if config.softcap is not None:
        gradient = gradient * (1 - (z / config.softcap) ** 2)
    return gradient


class _LinearStats(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(*args: Any) -> Tensor:
        return _stats_forward(*args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.config = inputs[-1]
        ctx.save_for_backward(*inputs[:-1])

    @staticmethod
    def backward(ctx: Any, grad: Tensor | None) -> tuple[Tensor | None, ...]:
        if grad is None:
            return (None,) * 8
        input, linear_weight, bias, index, selected, dropped, weight = ctx.saved_tensors
        config = ctx.config
        dtype = compute_dtype(input.dtype)
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            input = first_order_only(input)  # a second derivative in h raises
        h, w, b, cw = _compute(input, linear_weight, bias, weight, dtype=dtype)
        grad = grad.to(dtype)
        if dropped is not None:
            h = h.masked_fill(dropped.unsqueeze(1), 0)  # padding must not reach dW via 0 * nan
        input_grads, weight_grad, bias_grad = [], torch.zeros_like(w), None
        for start, stop in _chunks(h.shape[0], config.chunk_size):
            rows = slice(start, stop)
            z = _logits(h[rows], w, b, config.softcap)
            du = _chunk_gradient(
                z,
                grad[rows],
                None if index is None else index[rows],
                None if selected is None else selected[rows],
                None if dropped is None else dropped[rows],
                cw,
                config,
            )
            input_grads.append(du @ w)
            weight_grad = weight_grad + du.T @ h[rows]
            if b is not None:
                bias_grad = du.sum(0) if bias_grad is None else bias_grad + du.sum(0)
        input_grad = input_grads[0] if len(input_grads) == 1 else torch.cat(input_grads)
        return (
            input_grad.to(input.dtype),
            weight_grad.to(linear_weight.dtype),
            None if bias_grad is None else bias_grad.to(bias.dtype),
            None,
            None,
            None,
            None,
            None,
        )


class _LinearStatsForwardMode(_LinearStats):
    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        _LinearStats.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:-1])
        ctx.set_materialize_grads(False)  # so that jvp sees None for an input without tangent

    @staticmethod
    def jvp(ctx: Any, input_t: Tensor | None, w_t: Tensor | None, b_t: Tensor | None, *_: Any):
        if input_t is not None:
            raise RuntimeError(
                "vocab_parallel_linear_cross_entropy: forward-mode derivatives with respect to "
                "the replicated `input` are not supported (they need the other ranks' terms); "
                "with respect to linear_weight_shard and linear_bias_shard they are exact."
            )
        input, linear_weight, bias, index, selected, dropped, weight = ctx.saved_tensors
        config = ctx.config
        dtype = compute_dtype(input.dtype)
        h, w, b, cw, wt, bt = _compute(input, linear_weight, bias, weight, w_t, b_t, dtype=dtype)
        if dropped is not None:
            h = h.masked_fill(dropped.unsqueeze(1), 0)
        u = h @ w.T if b is None else torch.addmm(b, h, w.T)
        du = torch.zeros_like(u) if wt is None else h @ wt.T
        du = du if bt is None else du + bt
        z = u if config.softcap is None else config.softcap * torch.tanh(u / config.softcap)
        dz = du if config.softcap is None else du * (1 - (z / config.softcap) ** 2)
        columns = [(torch.softmax(z, 1) * dz).sum(1)] if config.with_lse else []
        if config.with_dot:
            columns.append(dz.sum(1) if cw is None else dz @ cw)
        if index is not None:
            columns.append(torch.where(selected, dz.gather(1, index.unsqueeze(1)).squeeze(1), 0))
        tangent = torch.stack(columns, 1)
        return tangent if dropped is None else tangent.masked_fill(dropped.unsqueeze(1), 0)


def _linear_stats(*args: Any) -> Tensor:
    function = _LinearStats if torch.compiler.is_compiling() else _LinearStatsForwardMode
    return function.apply(*args)


# -- the eager training step: the gradients computed in the forward pass -----------------------


class _Problem(NamedTuple):
    """The non-tensor arguments of the fused step, passed as one."""

    group: Group
    vocab_start: int | None
    num_classes: int | None
    label_smoothing: float
    z_loss: float
    ignore_index: int
    reduction: Reduction
    out_shape: tuple[int, ...]
    softcap: float | None
    chunk_size: int


def _chunk_stats(
    logits: Tensor,
    class_weight: Tensor | None,
    found: list[Tensor],
    index: Tensor | None,
    selected: Tensor | None,
    weight: Tensor | None,
    lse: bool,
    dot: bool,
) -> Tensor:
    """A chunk's statistics (as :func:`_stats_forward`'s), as a leaf (``found``) that the fused
    pass differentiates the combined loss to."""
    assert index is not None and selected is not None
    columns = [torch.logsumexp(logits, 1)]
    if dot:
        columns.append(logits.sum(1) if class_weight is None else logits @ class_weight)
    picked = logits.gather(1, index.unsqueeze(1)).squeeze(1)
    columns.append(torch.where(selected, picked, 0))
    found.append(torch.stack(columns, 1).requires_grad_())
    return found[0]


def _fused_pass(
    input: Tensor,
    linear_weight: Tensor,
    bias: Tensor | None,
    targets: RowTargets,
    weight: Tensor | None,
    where: Tensor | None,
    problem: _Problem,
    need: tuple[bool, bool, bool],
) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    """The reduced loss, its derivative in each (not dropped) row's loss (the same for all) and
    the gradients of the sum of the row losses (input, weight, bias), in the compute dtype.

    Per chunk: the logits in one reused buffer, their statistics, one all-gather of them (the
    gradient needs the global ``lse`` of the chunk's rows: this is what saves the backward's
    recomputing matmul), :func:`loss_rows`' combination and its derivative in the statistics
    (autograd on the ``(rows, k)`` statistics only), then ``d u`` in place in the buffer and
    the three gradient matmuls."""
    dtype = compute_dtype(input.dtype)
    h, w, b, cw = _compute(input, linear_weight, bias, weight, dtype=dtype)
    target, dropped, group = targets.target, targets.dropped, problem.group
    if dropped is not None:
        h = h.masked_fill(dropped.unsqueeze(1), 0)  # padding must not reach dW via 0 * nan
    num_rows, local_size = h.shape[0], w.shape[0]
    smoothing = problem.label_smoothing > 0
    start: Tensor | int | None = problem.vocab_start
    num_classes: Tensor | int | None = problem.num_classes
    if start is None:  # the sizes first, once: every chunk then picks its targets
        constant_weight = None if cw is None else cw.detach()
        start, total, _ = shard_constants(
            local_size, constant_weight, False, dtype, h.device, group
        )
        if num_classes is None:
            _check_high(target, problem.ignore_index, total)
            num_classes = total
    grad_input = torch.empty_like(h) if need[0] else None
    grad_weight = torch.zeros_like(w) if need[1] else None
    grad_bias = torch.zeros_like(b) if b is not None and need[2] else None
    size = max(1, min(problem.chunk_size, num_rows))
    buffer = torch.empty(size, local_size, dtype=dtype, device=h.device)
    squashed_rows = size if problem.softcap is not None else 0
    squash_buffer = torch.empty(squashed_rows, local_size, dtype=dtype, device=h.device)
    losses, row_weights = [], []
    for first, last in _chunks(num_rows, size):
        rows = slice(first, last)
        z = buffer[: last - first]
        if b is None:
            torch.mm(h[rows], w.T, out=z)
        else:
            torch.addmm(b, h[rows], w.T, out=z)
        squashed = None
        if problem.softcap is not None:
            squashed = torch.div(z, problem.softcap, out=squash_buffer[: last - first]).tanh_()
            torch.mul(squashed, problem.softcap, out=z)
        chunk_dropped = None if dropped is None else dropped[rows]
        leaves: list[Tensor] = []

        chunk_ignored = None if targets.ignored is None else targets.ignored[rows]
        with torch.enable_grad():
            loss, row_weight = loss_rows(
                functools.partial(_chunk_stats, z, cw, leaves),
                local_size,
                input.dtype,
                target[rows],
                chunk_ignored,
                chunk_dropped,
                cw,
                group,
                start,
                num_classes,
                problem.label_smoothing,
                problem.z_loss,
                problem.ignore_index,
            )
            (grad,) = torch.autograd.grad(loss.sum(), leaves)
        losses.append(loss.detach())
        if row_weight is not None:
            row_weights.append(row_weight.detach())
        # d loss / d u = g_lse softmax_r(z) + g_d w + g_t onehot(y - s_r), (1 - (z/s)^2) capped
        index, selected = _local_targets(target[rows], start, local_size)
        du, _ = softmax_in_place(z)
        du.mul_(grad[:, :1])
        if smoothing:
            du.add_(grad[:, 1:2] if cw is None else grad[:, 1:2] * cw)
        picked_grad = torch.where(selected, grad[:, -1], 0).unsqueeze(1)
        du.scatter_add_(1, index.unsqueeze(1), picked_grad)
        if chunk_dropped is not None:
            du.masked_fill_(chunk_dropped.unsqueeze(1), 0)
        if squashed is not None:
            du.mul_(squashed.square_().neg_().add_(1))
        if grad_input is not None:
            torch.mm(du, w, out=grad_input[rows])
        if grad_weight is not None:
            grad_weight.addmm_(du.T, h[rows])
        if grad_bias is not None:
            grad_bias.add_(du.sum(0))
    row_loss = torch.cat(losses).to(input.dtype).view(problem.out_shape)
    mean_weight = None
    if row_weights:
        mean_weight = torch.cat(row_weights).to(row_loss.dtype).view(problem.out_shape)
    with torch.enable_grad():
        leaf = row_loss.requires_grad_()
        value = reduce(leaf, problem.reduction, where=where, mean_weight=mean_weight)
        (coefficient,) = torch.autograd.grad(value, leaf)
    # The reduction's derivative is one number on every row that is not dropped (the dropped
    # rows' gradients are 0): read at the first such row, on the device; 0 if there is none.
    coefficient = coefficient.reshape(-1).to(dtype)
    if dropped is None:
        scale = coefficient[0]
    else:
        kept = ~dropped
        first_kept = kept.to(torch.uint8).argmax(0, keepdim=True)
        scale = torch.where(kept.any(), coefficient.gather(0, first_kept)[0], 0)
    return value.detach(), scale, [grad_input, grad_weight, grad_bias]


class _FusedLinear(torch.autograd.Function):
    # Plain eager mode only (no torch.func transform, not compiling), so the classic
    # ctx-in-forward style is fine, as funcloss._linear's fused step. The gradients computed in
    # forward are consumed by the first backward that builds no graph (scaled in place); a
    # double backward (create_graph=True) or a second backward recomputes the transform-safe
    # path from the saved inputs (its collectives again, then autograd through it), so no
    # derivative is taken through a stored intermediate.

    @staticmethod
    def forward(
        ctx: Any,
        input: Tensor,
        linear_weight: Tensor,
        bias: Tensor | None,
        targets: RowTargets,
        weight: Tensor | None,
        where: Tensor | None,
        problem: _Problem,
        need: tuple[bool, bool, bool],
        recompute: Any,
    ) -> Tensor:
        value, scale, grads = _fused_pass(
            input, linear_weight, bias, targets, weight, where, problem, need
        )
        ctx.save_for_backward(input, linear_weight, bias)
        ctx.scale, ctx.grads, ctx.recompute = scale, grads, recompute
        return value

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        input, linear_weight, bias = ctx.saved_tensors
        like = (input, linear_weight, bias)
        if torch.is_grad_enabled() or ctx.grads is None:
            wanted = [t for t, n in zip(like, ctx.needs_input_grad[:3], strict=True) if n]
            with torch.enable_grad():
                loss = ctx.recompute(input, linear_weight, bias)
            graph = torch.is_grad_enabled()
            found = iter(torch.autograd.grad(loss, wanted, grad, create_graph=graph))
            result = [next(found) if n else None for n in ctx.needs_input_grad[:3]]
        else:
            factor = ctx.scale * grad.to(ctx.scale.dtype)
            if _functorch.is_legacy_batchedtensor(grad):  # vectorize=True jacobians
                scaled = [None if g is None else g * factor for g in ctx.grads]
            else:  # the usual case: scale in place, no copy
                grads, ctx.grads = ctx.grads, None
                scaled = [None if g is None else g.mul_(factor) for g in grads]
            result = [
                None if g is None or t is None else g.to(t.dtype)
                for g, t in zip(scaled, like, strict=True)
            ]
        return (*result, None, None, None, None, None, None)


def _check_linear_config(
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    vocab_start: int | None = None,
    num_classes: int | None = None,
    softcap: float | None = None,
    chunk_size: int | None = None,
    input_grad: str = "all_reduce",
) -> None:
    _check_config(ignore_index, reduction, label_smoothing, z_loss, vocab_start, num_classes, _FN)
    if input_grad not in ("all_reduce", "partial"):
        fail(ValueError, _FN, "input_grad", "be 'all_reduce' or 'partial'", repr(input_grad))
    if softcap is not None:
        check_positive(_FN, softcap=softcap)
    if chunk_size is not None:
        check_index(_FN, chunk_size=chunk_size)
        if chunk_size < 1:
            fail(ValueError, _FN, "chunk_size", "be positive or None", chunk_size)


@follows_autocast("float32")
@checks_config(_check_linear_config)
def vocab_parallel_linear_cross_entropy(
    input: Tensor,
    linear_weight_shard: Tensor,
    target: Tensor,
    *,
    linear_bias_shard: Tensor | None = None,
    weight: Tensor | None = None,
    group: Any = None,
    vocab_start: int | None = None,
    num_classes: int | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    chunk_size: int | None = None,
    input_grad: Literal["all_reduce", "partial"] = "all_reduce",
    where: Tensor | None = None,
) -> Tensor:
    r"""Vocab-parallel cross-entropy of a sharded linear layer, without its logits.

    Equals :func:`vocab_parallel_cross_entropy` on ``input @ linear_weight_shard.T +
    linear_bias_shard`` (soft-capped with ``softcap``), computed a chunk of rows at a time as
    :func:`funcloss.linear_cross_entropy` does: the ``(N, V_r)`` logits never exist. In plain
    eager mode with ``"mean"``/``"sum"`` and gradients needed, the gradients are computed
    during the forward (three matmuls per chunk), with one all-gather of statistics per chunk
    (each chunk needs its rows' global log-sum-exp); otherwise the backward recomputes each
    chunk, after one all-gather for all rows. Without ``vocab_start``, one more all-gather (the
    shard sizes) comes first. Plus one ``(N, H)`` all-reduce of ``input``'s gradient in
    backward with ``input_grad="all_reduce"``.

    .. math::
        z_n = s \tanh\big((W_r h_n + b_r) / s\big), \qquad
        \ell_n = A_n \mathrm{lse}_n - a_n \cdot z_n + \zeta\, w_{y_n} \mathrm{lse}_n^2

    over the global vocabulary (see :func:`vocab_parallel_cross_entropy`).

    Args:
        input: the replicated features, shape ``(N, H)``, floating dtype, the same on every rank.
        linear_weight_shard: this rank's rows of the output layer, ``(V_r, H)``, ``input``'s
            dtype; or the layer's weight as a DTensor sharded on its rows (``Shard(0)``, a 1-D
            mesh; eager mode), which gives ``group``, ``vocab_start`` and ``num_classes``.
        target: global class indices, ``(N,)``, the same on every rank.
        linear_bias_shard: optional, ``(V_r,)``.
        weight: optional class weight slice, ``(V_r,)`` (a constant).
        group, vocab_start, num_classes, ignore_index, reduction, label_smoothing, z_loss:
            as :func:`vocab_parallel_cross_entropy`.
        softcap: :math:`s > 0` to soft-cap the logits, or ``None``.
        chunk_size: rows per chunk; ``None``: about 64 MiB of logits per chunk.
        input_grad: ``"all_reduce"``: ``input``'s gradient is the full one (summed over the
            ranks in backward); ``"partial"``: this rank's part, for the caller to reduce
            (Megatron's sequence parallelism reduce-scatters it).
        where: optional bool row mask of shape ``(N,)`` (broadcastable), as in
            :func:`vocab_parallel_cross_entropy`.

    Returns:
        ``(N,)`` for ``"none"``, else a 0-dim tensor; the same on every rank.

    Raises:
        RuntimeError: torch.distributed not initialised; forward-mode or second derivatives
            with respect to ``input`` (they would need the other ranks' terms).
        TypeError, ValueError: bad dtypes, shapes or config.

    Examples:
        >>> import tempfile, torch.distributed as dist
        >>> dist.init_process_group(
        ...     "gloo", store=dist.FileStore(tempfile.mktemp(), 1), rank=0, world_size=1
        ... )
        >>> from funcloss.distributed import vocab_parallel_linear_cross_entropy
        >>> h, w = torch.eye(2, 3), torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> vocab_parallel_linear_cross_entropy(h, w, torch.tensor([0, 1]), reduction="none")
        tensor([0.1269, 0.6931])
        >>> dist.destroy_process_group()
    """
    from ._dtensor import is_dtensor, linear_from_dtensor

    if is_dtensor(linear_weight_shard):
        (
            input,
            linear_weight_shard,
            linear_bias_shard,
            target,
            weight,
            group,
            vocab_start,
            num_classes,
        ) = linear_from_dtensor(
            _FN,
            input,
            linear_weight_shard,
            linear_bias_shard,
            target,
            weight,
            group,
            vocab_start,
            num_classes,
        )
    check_tensor(_FN, input=input, linear_weight_shard=linear_weight_shard)
    check_floating(_FN, input=input, linear_weight_shard=linear_weight_shard)
    _check_linear_config(
        ignore_index,
        reduction,
        label_smoothing,
        z_loss,
        vocab_start,
        num_classes,
        softcap,
        chunk_size,
        input_grad,
    )
    if input.dim() != 2 or linear_weight_shard.dim() != 2:
        fail(
            ValueError,
            _FN,
            "input",
            "be (N, H) with linear_weight_shard (V_r, H)",
            f"{shape_str(input.shape)} and {shape_str(linear_weight_shard.shape)}",
        )
    if linear_weight_shard.shape[1] != input.shape[1]:
        rule = f"have shape (V_r, {input.shape[1]}) for input of shape {shape_str(input.shape)}"
        fail(ValueError, _FN, "linear_weight_shard", rule, shape_str(linear_weight_shard.shape))
    local_size = linear_weight_shard.shape[0]
    if linear_bias_shard is not None and tuple(linear_bias_shard.shape) != (local_size,):
        rule = f"have shape ({local_size},), one per class of the shard"
        fail(ValueError, _FN, "linear_bias_shard", rule, shape_str(linear_bias_shard.shape))
    logits = input.new_empty((input.shape[0], local_size), device="meta")  # shape and dtype
    out_shape = _check_shapes(logits, target, weight, _FN, "the logits")
    check_where(_FN, where, out_shape)
    info = group_info(_FN, group)
    targets = row_targets(target, where, out_shape, ignore_index, num_classes)
    dropped = targets.dropped
    if input_grad == "all_reduce":
        input = sum_gradients(input, info)
    dtype = compute_dtype(input.dtype)
    size = chunk_size or max(1, _CHUNK_BYTES // (max(1, local_size) * dtype.itemsize))

    cap = None if softcap is None else float(softcap)

    def loss_of(input: Tensor, linear_weight: Tensor, bias: Tensor | None) -> Tensor:
        """The transform-safe path: statistics that recompute each chunk in backward."""

        def stats(
            index: Tensor | None,
            selected: Tensor | None,
            weight: Tensor | None,
            lse: bool,
            dot: bool,
        ) -> Tensor:
            config = _Config(lse, dot, cap, size)
            return _linear_stats(
                input, linear_weight, bias, index, selected, dropped, weight, config
            )

        return reduced_loss(
            stats,
            local_size,
            input.dtype,
            targets,
            weight,
            info,
            vocab_start,
            num_classes,
            label_smoothing,
            z_loss,
            ignore_index,
            out_shape,
            reduction,
            where,
            input.dtype,
        )

    tensors = (input, linear_weight_shard, linear_bias_shard)
    if fused_training_step(reduction, *tensors):
        need = tuple(t is not None and t.requires_grad for t in tensors)
        row_mask = None if where is None else where.expand(out_shape)
        problem = _Problem(
            info,
            vocab_start,
            num_classes,
            float(label_smoothing),
            float(z_loss),
            ignore_index,
            reduction,
            out_shape,
            cap,
            size,
        )
        return _FusedLinear.apply(*tensors, targets, weight, row_mask, problem, need, loss_of)
    return loss_of(*tensors)
