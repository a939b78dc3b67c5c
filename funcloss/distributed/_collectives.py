"""funcloss's collectives: thin wrappers over torch.distributed that are exact under torch.func.

A loss computed the vocab-parallel way is *replicated*: every rank computes the same value from
the same gathered statistics. Its gradient with respect to this rank's shard is then the
derivative of that one value with the other ranks' shards held fixed, which each rank computes
alone. So the all-gather here is, as a function of the local tensor ``x``, ``G(x) = (x_0, ...,
x_{R-1})`` with ``x_rank = x`` and the other rows constant:

- backward: ``grad[rank]`` (no collective; torch's functional collectives reduce-scatter here,
  which gives ``R`` times the gradient of a replicated loss);
- forward-mode: the tangent in row ``rank``, zeros elsewhere (no collective);
- vmap: one collective on the batched tensor (all ranks run the same program, so the same
  batch size), the batch dimension moved behind the rank dimension.

Written as an ``autograd.Function`` in ``setup_context`` style with a ``vmap`` staticmethod
(docs/design.md §3), in two classes: the ``jvp``-carrying one only outside ``torch.compile``.
The communication is torch's own (``torch.ops._c10d_functional``: traceable by Dynamo, on any
backend the process group has: gloo, NCCL).
"""

# torch declares autograd.Function's backward/jvp/vmap with *args; a concrete Function names them.
# pyright: reportIncompatibleMethodOverride=false

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._checks import _functorch

# Collectives issued in eager mode (not while compiling: a Python side effect would break the
# graph). Tests read it to count the collectives of a call.
calls = [0]


class Group(NamedTuple):
    """What the collectives need to know about a process group (plain constants)."""

    rank: int
    size: int
    name: str


def group_info(fn: str, group: Any) -> Group:
    """``(rank, size, name)`` of ``group`` (``None``: the default group), with the house error
    when torch.distributed is missing or not initialised."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(f"{fn}: torch.distributed is not available in this build of torch.")
    if not dist.is_initialized():
        raise RuntimeError(
            f"{fn}: torch.distributed must be initialised first, got no process group. "
            "Call torch.distributed.init_process_group (gloo on CPU, NCCL on GPU)."
        )
    if group is None:
        group = dist.group.WORLD
    return _group_info(group)


@torch.compiler.assume_constant_result
def _group_info(group: Any) -> Group:
    import torch.distributed as dist

    return Group(dist.get_rank(group), dist.get_world_size(group), group.group_name)


def _gather(x: Tensor, size: int, name: str) -> Tensor:
    """The one collective: ``(size, *x.shape)``, row ``r`` from rank ``r``."""
    if not torch.compiler.is_compiling():
        calls[0] += 1
    out = torch.ops._c10d_functional.all_gather_into_tensor(x.contiguous(), size, name)
    out = torch.ops._c10d_functional.wait_tensor(out)
    return out.view(size, *x.shape)


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(x: Tensor, rank: int, size: int, name: str) -> Tensor:
        return _gather(x, size, name)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.rank = inputs[1]
        ctx.size = inputs[2]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        # d G / d x picks row ``rank``: the other rows are the other ranks' (fixed) tensors.
        return grad.select(0, ctx.rank), None, None, None

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], x: Tensor, rank: int, size: int, name: str
    ) -> tuple[Tensor, int | None]:
        if in_dims[0] is None:
            return all_gather(x, Group(rank, size, name)), None
        # One collective for the whole batch, through the Function again: an outer transform
        # (an outer vmap or grad level) sees it as this Function, not as a raw collective.
        return all_gather(x.movedim(in_dims[0], 0), Group(rank, size, name)), 1


class _AllGatherForwardMode(_AllGather):
    @staticmethod
    def jvp(ctx: Any, x_t: Tensor, *_: None) -> Tensor:
        # The tangent of row ``rank`` is ``x_t``; the other ranks' rows are constants.
        rank, size = ctx.rank, ctx.size
        shape = x_t.shape
        before = x_t.new_zeros((rank, *shape))
        after = x_t.new_zeros((size - rank - 1, *shape))
        return torch.cat([before, x_t.unsqueeze(0), after])


@torch.compiler.assume_constant_result
def _under_vmap() -> bool:
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    vmap = _functorch.TransformType.Vmap
    return any(i.key() == vmap for i in retrieve_all_functorch_interpreters())


def all_gather(x: Tensor, group: Group) -> Tensor:
    """``(R, *x.shape)``: every rank's ``x``, stacked in rank order; see the module docstring
    for its derivatives (local: the other ranks' rows are constants)."""
    compiling = torch.compiler.is_compiling()
    if compiling and _under_vmap():
        # Dynamo traces the Function's forward per sample there, without its vmap rule: the
        # collective would meet vmap's per-sample fallback (one collective per sample) or fail.
        raise NotImplementedError(
            "funcloss.distributed: torch.compile of a torch.func.vmap over a vocab-parallel loss "
            "is not supported (the collective's vmap rule is lost while compiling). Call vmap "
            "outside torch.compile, or compile the per-sample function without vmap."
        )
    function = _AllGather if compiling else _AllGatherForwardMode
    return function.apply(x, group.rank, group.size, group.name)


def _reduce(x: Tensor, name: str) -> Tensor:
    if not torch.compiler.is_compiling():
        calls[0] += 1
    out = torch.ops._c10d_functional.all_reduce(x.contiguous(), "sum", name)
    return torch.ops._c10d_functional.wait_tensor(out)


class _AllReduce(torch.autograd.Function):
    """The sum over ranks, for a gradient in a backward (no derivative of its own)."""

    @staticmethod
    def forward(x: Tensor, name: str) -> Tensor:
        return _reduce(x, name)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        raise RuntimeError(SECOND_ORDER_INPUT)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, name: str) -> tuple[Tensor, Any]:
        return _AllReduce.apply(x, name), in_dims[0]  # one collective for the whole batch


SECOND_ORDER_INPUT = (
    "funcloss.distributed: derivatives of second order (and forward-mode derivatives) with "
    "respect to the replicated `input` of vocab_parallel_linear_cross_entropy are not "
    "supported: they need the other ranks' terms. Derivatives with respect to the weight and "
    "bias shards are exact."
)


class _SumGradients(torch.autograd.Function):
    """The identity, whose backward sums the gradient over the ranks (Megatron's ``f``): for a
    tensor replicated on every rank that feeds a sharded layer."""

    @staticmethod
    def forward(x: Tensor, name: str) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.name = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _AllReduce.apply(grad, ctx.name), None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, name: str) -> tuple[Tensor, Any]:
        return sum_gradients(x, Group(0, 0, name)), in_dims[0]


class _SumGradientsForwardMode(_SumGradients):
    @staticmethod
    def jvp(ctx: Any, x_t: Tensor, _: None) -> Tensor:
        raise RuntimeError(SECOND_ORDER_INPUT)


def sum_gradients(x: Tensor, group: Group) -> Tensor:
    """``x``, with its gradient summed over the ranks of ``group`` in backward."""
    function = _SumGradients if torch.compiler.is_compiling() else _SumGradientsForwardMode
    return function.apply(x, group.name)


class _FirstOrderOnly(torch.autograd.Function):
    """The identity, for the replicated input inside a backward: differentiating through it
    (a second derivative with respect to that input) raises instead of missing the other
    ranks' terms."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        raise RuntimeError(SECOND_ORDER_INPUT)

    @staticmethod
    def jvp(ctx: Any, x_t: Tensor) -> Tensor:
        raise RuntimeError(SECOND_ORDER_INPUT)


def first_order_only(x: Tensor) -> Tensor:
    return _FirstOrderOnly.apply(x)
