"""DTensor inputs: a logits DTensor sharded on the class dimension over a 1-D device mesh."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import fail


def is_dtensor(value: object) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # torch built without distributed
        return False
    return isinstance(value, DTensor)


def from_dtensor(
    fn: str,
    input: Any,
    target: Any,
    weight: Any,
    group: Any,
    vocab_start: int | None,
    num_classes: int | None,
) -> tuple[Tensor, Tensor, Tensor | None, Any, int, int]:
    """The local shard, the replicated target, the local weight slice, and the layout
    (``group``, ``vocab_start``, ``num_classes``) that the DTensor carries. Eager mode only."""
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if torch.compiler.is_compiling():
        fail(
            TypeError,
            fn,
            "input_shard",
            "be a plain tensor while compiling (DTensor inputs are supported in eager mode)",
            "a DTensor",
            "Pass input_shard.to_local() with vocab_start and num_classes.",
        )
    class_dim = 0 if input.dim() == 1 else 1
    mesh, placements = input.device_mesh, tuple(input.placements)
    if mesh.ndim != 1 or placements != (Shard(class_dim),):
        fail(
            ValueError,
            fn,
            "input_shard",
            f"be sharded on its class dimension {class_dim} over "
            f"a 1-D mesh (placements (Shard({class_dim}),))",
            f"placements {placements} on a {mesh.ndim}-D mesh",
        )
    if group is not None or vocab_start is not None or num_classes is not None:
        fail(
            ValueError,
            fn,
            "group",
            "be None with a DTensor input (as vocab_start and "
            "num_classes: the DTensor's layout gives them)",
            "a value",
        )
    _, offset = compute_local_shape_and_global_offset(input.shape, mesh, placements)
    start, classes = int(offset[class_dim]), int(input.shape[class_dim])
    local = input.to_local()
    if isinstance(target, DTensor):
        if tuple(target.placements) != (Replicate(),):
            fail(
                ValueError,
                fn,
                "target",
                "be replicated (a plain tensor or Replicate())",
                f"placements {tuple(target.placements)}",
            )
        target = target.to_local()
    if isinstance(weight, DTensor):
        weight = weight.full_tensor() if weight.placements != (Shard(0),) else weight.to_local()
    if weight is not None and weight.shape == (classes,) and local.shape[class_dim] != classes:
        weight = weight[start : start + local.shape[class_dim]]  # the global class weight
    return local, target, weight, mesh.get_group(), start, classes


def linear_from_dtensor(
    fn: str,
    input: Any,
    linear_weight: Any,
    bias: Any,
    target: Any,
    weight: Any,
    group: Any,
    vocab_start: int | None,
    num_classes: int | None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor | None, Any, int, int]:
    """The linear variant: ``linear_weight`` a DTensor sharded on its rows (``Shard(0)``, the
    classes), ``input`` and ``target`` plain or replicated, ``bias`` sharded like the weight."""
    from torch.distributed.tensor import DTensor, Shard

    mesh = linear_weight.device_mesh
    if mesh.ndim != 1 or tuple(linear_weight.placements) != (Shard(0),):
        fail(
            ValueError,
            fn,
            "linear_weight_shard",
            "be sharded on its rows over a 1-D mesh (placements (Shard(0),))",
            f"placements {tuple(linear_weight.placements)}",
        )
    local, target, weight, group, start, classes = from_dtensor(
        fn, _as_logits(linear_weight), target, weight, group, vocab_start, num_classes
    )
    if isinstance(input, DTensor):
        input = input.full_tensor()
    if isinstance(bias, DTensor):
        bias = bias.to_local() if tuple(bias.placements) == (Shard(0),) else bias.full_tensor()
    local = local.t()  # back to (V_r, H)
    if bias is not None and bias.shape[0] == classes and local.shape[0] != classes:
        bias = bias[start : start + local.shape[0]]
    return input, local, bias, target, weight, group, start, classes


def _as_logits(linear_weight: Any) -> Any:
    """``(V, H)`` sharded on dim 0 read as logits ``(H, V)`` sharded on dim 1 (a transposed
    view: the same local shard, offsets and group)."""
    return linear_weight.t()
