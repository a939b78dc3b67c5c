"""vocab_parallel_cross_entropy: the cross-entropy of logits sharded over the class dimension.

Each rank holds ``z_r``, its ``(M, V_r)`` slice of the logits (classes ``[s_r, s_r + V_r)``).
Per row and rank it computes a few statistics, every rank gathers all of them, and every rank
combines them in the same order into the same loss (bitwise equal on every rank):

    lse_r = log sum_c exp(z_r,c)             lse = log sum_r exp(lse_r)
    t_r   = z_r,y if y in rank r's classes    a . z = (1 - eps) w_y sum_r t_r + (eps / C) sum_r d_r
    d_r   = sum_c w_c z_r,c (label smoothing)
    loss  = A lse - a . z + zeta r lse^2      (_softmax_ce's algebra, A = sum_c a_c, r = w_y)

The gradient with respect to the local shard needs no communication: the all-gather's
derivative is local (funcloss.distributed._collectives), and the statistics' backward is
``d loss / d z_r = g_lse softmax(z_r) + g_t onehot(y - s_r) + g_d w``, which with ``g_lse =
(A + 2 zeta r lse) exp(lse_r - lse)`` is the global ``(A + 2 zeta r lse) softmax(z) - a`` on
this rank's classes. The statistics function (:func:`custom_backward`) saves only its inputs
and recomputes the softmax in backward, in one ``(M, V_r)`` buffer (in place in plain eager).

Collectives: one all-gather of the statistics; without ``vocab_start`` one of the shard sizes
comes first (their prefix sum is ``s_r``, a device tensor: no host read), so that the target
logit is picked in the same statistics call as ``lse_r`` (one gradient buffer in backward).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._checks import (
    Reduction,
    as_index,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_non_negative,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    fail,
    in_place_safe,
    shape_str,
    value_checks_enabled,
)
from .._function import custom_backward
from .._modes import follows_autocast
from .._reduction import reduce
from .._softmax_ce import as_rows, compute_dtype
from ._collectives import Group, all_gather, group_info

_FN = "vocab_parallel_cross_entropy"

# The statistics' forward runs over row chunks of about this many logits (4 MiB of fp32), so
# that a half-precision shard is never copied to fp32 whole (as cross_entropy's fused path).
_CHUNK_ELEMENTS = 1 << 20


# -- the per-rank statistics -------------------------------------------------------------------


def _shard_stats_forward(
    input: Tensor,
    index: Tensor | None,
    selected: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    with_lse: bool,
    with_dot: bool,
) -> Tensor:
    """``(M, k)`` in the compute dtype: the columns ``lse_r`` (``with_lse``), ``d_r``
    (``with_dot``), ``t_r`` (``index`` given: the local class index, valid where ``selected``).

    ``dropped`` rows (ignored or masked) may hold anything; their statistics are not used, and
    their gradient is exactly 0. While compiling they are zeroed first: under a transform, torch
    autodiffs this forward (docs/design.md §3), and a ``nan`` row would give ``0 * nan``.
    """
    dtype = compute_dtype(input.dtype)
    columns = []
    if with_lse or with_dot:
        mask = dropped if dropped is not None and torch.compiler.is_compiling() else None
        w = None if weight is None else weight.to(dtype)
        size = max(1, _CHUNK_ELEMENTS // max(1, input.shape[1]))
        parts = []
        for start in range(0, max(1, input.shape[0]), size):
            x = input[start : start + size].to(dtype)
            if mask is not None:
                x = x.masked_fill(mask[start : start + size].unsqueeze(1), 0)
            stats = [torch.logsumexp(x, 1)] if with_lse else []
            if with_dot:
                stats.append(x.sum(1) if w is None else x @ w)
            parts.append(torch.stack(stats, 1))
        columns.append(parts[0] if len(parts) == 1 else torch.cat(parts))
    if index is not None:
        assert selected is not None
        picked = input.gather(1, index.unsqueeze(1)).to(dtype)
        columns.append(torch.where(selected.unsqueeze(1), picked, 0))
    return columns[0] if len(columns) == 1 else torch.cat(columns, 1)


_shard_stats = custom_backward(_shard_stats_forward)


@_shard_stats.backward
def _shard_stats_backward(
    grad: Tensor,
    input: Tensor,
    index: Tensor | None,
    selected: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    with_lse: bool,
    with_dot: bool,
) -> tuple[Tensor, None, None, None, None]:
    # d/dz = g_lse softmax(z) + g_d w + g_t onehot(index); dropped rows exactly 0.
    dtype = compute_dtype(input.dtype)
    grad = grad.to(dtype)
    in_place = in_place_safe(grad)
    x = input.to(dtype)
    if dropped is not None and not in_place:
        # A graph is built (double backward, transforms): a nan in a dropped row must not reach
        # the softmax, whose derivative would give 0 * nan there.
        x = x.masked_fill(dropped.unsqueeze(1), 0)
    column = 0
    gradient: Tensor | None = None
    if with_lse:
        scale = grad[:, :1]
        gradient = torch.softmax(x, 1)
        gradient = gradient.mul_(scale) if in_place else gradient * scale
        column = 1
    if with_dot:
        term = grad[:, column : column + 1]
        term = term if weight is None else term * weight.to(dtype)
        if gradient is None:
            gradient = term.expand(x.shape).clone()
        else:
            gradient = gradient.add_(term) if in_place else gradient + term
        column += 1
    if index is not None:
        assert selected is not None
        picked = torch.where(selected, grad[:, column], 0).unsqueeze(1)
        slot = index.unsqueeze(1)
        if gradient is None:
            gradient = torch.zeros_like(x).scatter(1, slot, picked)
        else:
            add = gradient.scatter_add_ if in_place else gradient.scatter_add
            gradient = add(1, slot, picked)
    assert gradient is not None
    if dropped is not None:
        rows = dropped.unsqueeze(1)
        gradient = gradient.masked_fill_(rows, 0) if in_place else gradient.masked_fill(rows, 0)
    return gradient.to(input.dtype), None, None, None, None


@_shard_stats.jvp
def _shard_stats_jvp(
    input_t: Tensor,
    index_t: Tensor | None,
    selected_t: Tensor | None,
    dropped_t: Tensor | None,
    weight_t: Tensor | None,
    input: Tensor,
    index: Tensor | None,
    selected: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    with_lse: bool,
    with_dot: bool,
) -> Tensor:
    dtype = compute_dtype(input.dtype)
    x, x_t = input.to(dtype), input_t.to(dtype)
    if dropped is not None:
        x = x.masked_fill(dropped.unsqueeze(1), 0)  # a nan there must not reach any tangent
    columns = []
    if with_lse:
        columns.append((torch.softmax(x, 1) * x_t).sum(1))
    if with_dot:
        columns.append(x_t.sum(1) if weight is None else x_t @ weight.to(dtype))
    if index is not None:
        assert selected is not None
        columns.append(torch.where(selected, x_t.gather(1, index.unsqueeze(1)).squeeze(1), 0))
    tangent = torch.stack(columns, 1)
    return tangent if dropped is None else tangent.masked_fill(dropped.unsqueeze(1), 0)


# -- checks ------------------------------------------------------------------------------------


def _check_config(
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    vocab_start: int | None = None,
    num_classes: int | None = None,
    fn: str = _FN,
) -> None:
    check_reduction(fn, reduction)
    check_index(fn, ignore_index=ignore_index)
    check_in_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)
    check_non_negative(fn, z_loss=z_loss)
    if vocab_start is not None:
        check_index(fn, vocab_start=vocab_start)
        if vocab_start < 0:
            fail(ValueError, fn, "vocab_start", "be non-negative or None", vocab_start)
    if num_classes is not None:
        check_index(fn, num_classes=num_classes)
        if num_classes < 1:
            fail(ValueError, fn, "num_classes", "be positive or None", num_classes)


def _check_shapes(
    input: Tensor, target: Tensor, weight: Tensor | None, fn: str = _FN, name: str = "input_shard"
) -> tuple[int, ...]:
    """The unreduced loss's shape: ``target``'s, which is ``input``'s without the class dim."""
    shape = tuple(input.shape)
    if not shape:
        rule = "have shape (V_r,), (N, V_r) or (N, V_r, d1, ..., dK)"
        fail(ValueError, fn, name, rule, "()")
    if shape[1 if len(shape) > 1 else 0] == 0:
        fail(ValueError, fn, name, "hold at least one class", shape_str(shape))
    out_shape = shape[1:] if len(shape) == 1 else shape[:1] + shape[2:]
    check_tensor(fn, target=target)
    if target.is_floating_point():
        fail(
            TypeError,
            fn,
            "target",
            "hold class indices (an integer dtype; probability targets are not supported)",
            target.dtype,
        )
    check_integer(fn, target=target)
    if tuple(target.shape) != out_shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(out_shape)} (global class indices) for {name} of "
            f"shape {shape_str(shape)}",
            shape_str(target.shape),
        )
    if weight is not None:
        check_floating(fn, weight=weight)
        local = shape[min(1, len(shape) - 1)]  # the class dimension
        if tuple(weight.shape) != (local,):
            rule = f"be this rank's slice of the class weight, shape ({local},)"
            fail(ValueError, fn, "weight", rule, shape_str(weight.shape))
        if weight.dtype != input.dtype:
            fail(TypeError, fn, "weight", f"have the input's dtype {input.dtype}", weight.dtype)
        if weight.requires_grad:
            fail(
                ValueError,
                fn,
                "weight",
                "not require grad (class weights are constants, as in torch's cross_entropy)",
                "a tensor that requires grad",
            )
    return out_shape


def _check_targets(target: Tensor, ignore_index: int, num_classes: int | None) -> bool | None:
    """Eager only: class indices in ``[0, C)`` or ``ignore_index``; whether any is ignored
    (``None``: not read). One host read; ``C`` unknown here is checked after the gather."""
    if not value_checks_enabled(target) or target.numel() == 0:
        return None if target.numel() else False
    ignored = target == ignore_index
    low, high = torch.aminmax(target.masked_fill(ignored, 0))
    low, high, any_ignored = torch.stack([low, high, ignored.any().to(low.dtype)]).tolist()
    high_limit = num_classes if num_classes is not None else high + 1
    if low < 0 or high >= high_limit:
        bad = low if low < 0 else high
        _index_error(bad, num_classes, ignore_index)
    return bool(any_ignored)


def _index_error(bad: int, num_classes: int | str | None, ignore_index: int) -> None:
    limit = "C" if num_classes is None else num_classes
    raise IndexError(
        f"{_FN}: `target` values must be in [0, {limit}) or equal ignore_index={ignore_index} "
        f"(global class indices), got {bad}."
    )


# -- the loss ----------------------------------------------------------------------------------


def _local_targets(target: Tensor, start: Tensor | int, local_size: int) -> tuple[Tensor, Tensor]:
    """The local class index (clamped into the shard) and whether the target is local."""
    local = target - start
    selected = (local >= 0) & (local < local_size)
    return local.clamp(0, local_size - 1), selected


@follows_autocast("float32")
@checks_config(_check_config)
def vocab_parallel_cross_entropy(
    input_shard: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    group: Any = None,
    vocab_start: int | None = None,
    num_classes: int | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    where: Tensor | None = None,
) -> Tensor:
    r"""Cross-entropy of logits sharded over the class dimension across a process group.

    For the output layer of a large-vocabulary model under tensor (vocab) parallelism: rank
    :math:`r` holds the logits of classes :math:`[s_r, s_r + V_r)` only, and every rank gets
    the value that :func:`funcloss.cross_entropy` gives on the gathered logits, bitwise equal on
    every rank, and the gradient with respect to its own shard. The full logits are never
    gathered: per row, each rank shares its log-sum-exp :math:`\mathrm{lse}_r`, its target
    logit :math:`t_r` (0 unless the target class is its own) and, with label smoothing, its
    weighted logit sum :math:`d_r = \sum_{c} w_c z_{r,c}`:

    .. math::
        \mathrm{lse} = \log \sum_r e^{\mathrm{lse}_r}, \qquad
        \ell_n = A_n\, \mathrm{lse}_n - (1 - \varepsilon) w_{y_n} \textstyle\sum_r t_{r,n}
        - \frac{\varepsilon}{C} \sum_r d_{r,n} + \zeta\, w_{y_n} \mathrm{lse}_n^2

    with :math:`A_n = (1 - \varepsilon) w_{y_n} + \frac{\varepsilon}{C} \sum_c w_c` (torch's
    label smoothing, over the *global* vocabulary of :math:`C` classes), :math:`\zeta` the
    ``z_loss``, and :math:`w = 1` without a class weight. Gradient (on this rank's classes, no
    communication): :math:`(A_n + 2 \zeta w_{y_n} \mathrm{lse}_n)\,\mathrm{softmax}(z_n) - a_n`.

    Communication: one all-gather of ``(M, k)`` statistics (``k <= 6`` numbers per row, in
    fp32 for bf16/fp16 logits) when ``vocab_start`` is given, two without it (one number per
    rank first, the shard sizes; their prefix sum is the start, kept on the device); none in
    backward; no host reads. Memory: nothing of size ``(M, V_r)`` is kept for backward but the
    input, and the backward builds one ``(M, V_r)`` buffer. The logits are never modified.

    Args:
        input_shard: this rank's logits, shape ``(V_r,)``, ``(N, V_r)`` or
            ``(N, V_r, d1, ..., dK)``, floating dtype; shards may differ in size. A DTensor
            sharded on the class dimension (``Shard(1)``, a 1-D mesh) is accepted in eager mode;
            ``group``, ``vocab_start`` and ``num_classes`` then come from it.
        target: global class indices, integer dtype, the same on every rank, shape ``(N,)``
            (``()``, ``(N, d1, ..., dK)``); values in ``[0, C)`` or ``ignore_index`` (checked
            in eager mode on the CPU only).
        weight: this rank's slice of the class weight, shape ``(V_r,)``, ``input``'s dtype; a
            constant (as in torch, it takes no gradient).
        group: the process group the vocabulary is sharded over (``None``: the default group).
        vocab_start: this rank's first class :math:`s_r`; ``None``: the prefix sum of the shard
            sizes in rank order (one more collective per call).
        num_classes: :math:`C`; ``None``: the sum of the shard sizes.
        ignore_index: class index whose rows contribute nothing.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``; ``"mean"`` divides by the summed
            :math:`w_{y_n}` of the rows counted (the number of rows without a weight).
        label_smoothing: :math:`\varepsilon` in ``[0, 1]``.
        z_loss: :math:`\zeta \ge 0` (PaLM's z-loss, as in :func:`funcloss.linear_cross_entropy`).
        where: optional bool row mask, broadcastable to the unreduced loss shape (``target``'s):
            masked rows give 0 and exactly zero gradient (whatever their logits hold), and
            ``"mean"`` divides by the included rows' weight; a mean over nothing is 0.

    Returns:
        ``target``'s shape for ``"none"``, else a 0-dim tensor; the same on every rank.

    Raises:
        RuntimeError: torch.distributed not initialised.
        TypeError, ValueError: bad dtypes, shapes or config (as :func:`funcloss.cross_entropy`).
        IndexError: a class index out of range (eager mode, on the CPU).

    Examples:
        >>> import tempfile, torch.distributed as dist
        >>> store = dist.FileStore(tempfile.mktemp(), 1)
        >>> dist.init_process_group("gloo", store=store, rank=0, world_size=1)
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> from funcloss.distributed import vocab_parallel_cross_entropy
        >>> vocab_parallel_cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.2395, 0.0949])
        >>> dist.destroy_process_group()
    """
    from ._dtensor import from_dtensor, is_dtensor

    if is_dtensor(input_shard):
        input_shard, target, weight, group, vocab_start, num_classes = from_dtensor(
            _FN, input_shard, target, weight, group, vocab_start, num_classes
        )
    check_tensor(_FN, input_shard=input_shard)
    check_floating(_FN, input_shard=input_shard)
    _check_config(ignore_index, reduction, label_smoothing, z_loss, vocab_start, num_classes)
    out_shape = _check_shapes(input_shard, target, weight)
    check_where(_FN, where, out_shape)
    info = group_info(_FN, group)
    rows = as_rows(input_shard)
    targets = row_targets(target, where, out_shape, ignore_index, num_classes)
    dropped = targets.dropped

    def stats(
        index: Tensor | None, selected: Tensor | None, weight: Tensor | None, lse: bool, dot: bool
    ) -> Tensor:
        return _shard_stats(rows, index, selected, dropped, weight, lse, dot)

    return reduced_loss(
        stats,
        rows.shape[1],
        rows.dtype,
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
        input_shard.dtype,
    )


StatsFunction = Callable[[Tensor | None, Tensor | None, Tensor | None, bool, bool], Tensor]


class RowTargets(NamedTuple):
    """The flattened class indices, the rows they ignore and the rows dropped (ignored or
    masked by ``where``); ``None``: no such row."""

    target: Tensor
    ignored: Tensor | None
    dropped: Tensor | None


def row_targets(
    target: Tensor,
    where: Tensor | None,
    out_shape: tuple[int, ...],
    ignore_index: int,
    num_classes: int | None,
) -> RowTargets:
    flat_target = as_index(target.reshape(-1))
    any_ignored = _check_targets(flat_target, ignore_index, num_classes)
    ignored = None if any_ignored is False else flat_target == ignore_index
    row_mask = None if where is None else where.expand(out_shape).reshape(-1)
    dropped = ignored
    if row_mask is not None:
        dropped = ~row_mask if dropped is None else dropped | ~row_mask
    return RowTargets(flat_target, ignored, dropped)


def reduced_loss(
    stats_of: StatsFunction,
    local_size: int,
    input_dtype: torch.dtype,
    targets: RowTargets,
    weight: Tensor | None,
    group: Group,
    vocab_start: int | None,
    num_classes: int | None,
    label_smoothing: float,
    z_loss: float,
    ignore_index: int,
    out_shape: tuple[int, ...],
    reduction: Reduction,
    where: Tensor | None,
    out_dtype: torch.dtype,
) -> Tensor:
    """:func:`loss_rows`, reshaped to ``out_shape`` and reduced (the weighted mean of
    ``cross_entropy``)."""
    loss, row_weight = loss_rows(
        stats_of,
        local_size,
        input_dtype,
        targets.target,
        targets.ignored,
        targets.dropped,
        weight,
        group,
        vocab_start,
        num_classes,
        float(label_smoothing),
        float(z_loss),
        ignore_index,
    )
    loss = loss.to(out_dtype).view(out_shape)
    if reduction == "none":
        return reduce(loss, reduction, where=where)
    if row_weight is not None:
        row_weight = row_weight.to(loss.dtype).view(out_shape)
    return reduce(loss, reduction, where=where, mean_weight=row_weight)


def loss_rows(
    stats_of: StatsFunction,
    local_size: int,
    input_dtype: torch.dtype,
    target: Tensor,
    ignored: Tensor | None,
    dropped: Tensor | None,
    weight: Tensor | None,
    group: Group,
    vocab_start: int | Tensor | None,
    num_classes: int | Tensor | None,
    label_smoothing: float,
    z_loss: float,
    ignore_index: int,
) -> tuple[Tensor, Tensor | None]:
    """The loss per row (``(M,)``, compute dtype, 0 on dropped rows) and each row's weight in
    the mean (``None``: all ones). ``stats_of(index, selected, weight, lse, dot)`` gives this
    rank's statistics (:func:`_shard_stats` on the logits, or on a linear layer's).
    Collectives: one all-gather of the statistics, after one of the shard sizes when
    ``vocab_start`` is ``None`` (the start is needed to pick the target logit, and picking it
    in the same statistics call keeps one ``(M, V_r)`` gradient buffer in backward)."""
    dtype = compute_dtype(input_dtype)
    num_rows, device = target.shape[0], target.device
    smoothing = label_smoothing > 0
    constant_weight = None if weight is None else weight.detach()
    weight_sum: Tensor | None = None
    total_classes: Tensor | int = 0 if num_classes is None else num_classes
    start: Tensor | int
    if vocab_start is None:
        start, total_classes, weight_sum = shard_constants(
            local_size, constant_weight, smoothing, dtype, device, group
        )
        if num_classes is not None:
            total_classes = num_classes
        else:
            _check_high(target, ignore_index, total_classes)
    else:
        start = vocab_start
    # One all-gather of the statistics: lse_r and d_r (differentiable), t_r, then constants (the
    # target's weight; with vocab_start given, the shard size and weight sum where needed).
    extra = []
    if vocab_start is not None and num_classes is None:
        extra.append(torch.full((num_rows,), local_size, dtype=dtype, device=device))
    if vocab_start is not None and smoothing and constant_weight is not None:
        extra.append(constant_weight.to(dtype).sum().expand(num_rows))
    index, selected = _local_targets(target, start, local_size)
    stats = stats_of(index, selected, weight, True, smoothing)
    target_columns = _target_weight_columns(constant_weight, index, selected, dtype)
    gathered = all_gather(_cat([stats, *target_columns, *extra]), group)
    used = stats.shape[1] + len(target_columns)
    lse_dot = gathered[:, :, : 1 + smoothing]
    target_stats = gathered[:, :, 1 + smoothing : used]
    gathered_constants = gathered[:, :, used:]
    if vocab_start is not None:
        if num_classes is None:
            total_classes = gathered_constants[:, :1, 0].sum()
            _check_high(target, ignore_index, total_classes)
        else:
            total_classes = num_classes
        if smoothing and weight is not None:
            weight_sum = gathered_constants[:, :1, -1].sum()
    # Every rank combines the same gathered numbers in the same order: the same bits.
    lse = torch.logsumexp(lse_dot[:, :, 0], 0)
    target_logit = target_stats[:, :, 0].sum(0)
    keep = None if ignored is None else (~ignored).to(dtype)
    if weight is None:
        row_weight = keep
    else:
        target_weight = target_stats[:, :, 1].sum(0)
        row_weight = target_weight if keep is None else target_weight * keep
    one = 1.0 if row_weight is None else row_weight
    picked_weight = (1 - label_smoothing) * one
    total = picked_weight
    dot = picked_weight * target_logit
    if smoothing:
        spread = label_smoothing / total_classes
        spread = spread if keep is None else spread * keep
        weight_total = total_classes if weight is None else weight_sum
        assert weight_total is not None
        total = total + spread * weight_total
        dot = dot + spread * lse_dot[:, :, 1].sum(0)
    loss = total * lse - dot
    if z_loss > 0:
        loss = loss + z_loss * one * lse * lse
    if dropped is not None:
        loss = torch.where(dropped, 0.0, loss)
    return loss, row_weight


def shard_constants(
    local_size: int,
    weight: Tensor | None,
    smoothing: bool,
    dtype: torch.dtype,
    device: torch.device,
    group: Group,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """This rank's start ``s_r``, the number of classes ``C`` and (with a class weight and label
    smoothing) the global weight sum, from one all-gather of each rank's shard size (and weight
    sum): device tensors, no host read."""
    constants = [torch.full((), local_size, dtype=dtype, device=device)]
    if smoothing and weight is not None:
        constants.append(weight.to(dtype).sum())
    gathered = all_gather(torch.stack(constants), group)  # (R, 1 or 2)
    sizes = gathered[:, 0]
    start = (sizes.cumsum(0) - sizes)[group.rank].to(torch.long)
    weight_sum = gathered[:, 1].sum() if len(constants) > 1 else None
    return start, sizes.sum(), weight_sum


def _target_weight_columns(
    weight: Tensor | None, index: Tensor, selected: Tensor, dtype: torch.dtype
) -> list[Tensor]:
    """``[w_y if the target is local else 0]`` as an ``(M, 1)`` column, or nothing."""
    if weight is None:
        return []
    return [torch.where(selected, weight.to(dtype).gather(0, index), 0).unsqueeze(1)]


def _cat(columns: list[Tensor]) -> Tensor:
    columns = [c if c.dim() == 2 else c.unsqueeze(1) for c in columns]
    return columns[0] if len(columns) == 1 else torch.cat(columns, 1)


def _check_high(target: Tensor, ignore_index: int, total_classes: Tensor) -> None:
    """Eager only: the largest class index against the gathered ``C`` (a second host read,
    made only where value checks run: on the CPU)."""
    if not value_checks_enabled(target, total_classes) or target.numel() == 0:
        return
    high = int(target.masked_fill(target == ignore_index, 0).max())
    classes = int(total_classes)
    if high >= classes:
        _index_error(high, classes, ignore_index)
