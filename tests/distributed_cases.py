"""What each rank of the gloo pool runs (tests/distributed_pool.py), and the problems and
float64 oracles that tests/test_distributed.py checks the results against.

A problem is drawn from a spec (a dict of plain values), identically in the test process and
on every rank: the full logits ``(N, C, d...)``, global targets, the class weight, a row mask.
Rank ``r`` holds the classes ``[starts[r], starts[r] + sizes[r])``.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from funcloss.distributed import (
    VocabParallelCrossEntropyLoss,
    _collectives,
    vocab_parallel_cross_entropy,
)

DEFAULTS: dict[str, Any] = {
    "n": 5,
    "sizes": (3, 4),
    "kdims": (),
    "seed": 0,
    "weight": False,
    "ignore": False,
    "all_ignored": False,
    "smoothing": 0.0,
    "z_loss": 0.0,
    "reduction": "mean",
    "where": False,
    "poison": False,  # nan/inf in the logits of ignored and masked rows
    "start": True,  # pass vocab_start (else its default, the prefix sum)
    "num_classes": False,  # pass num_classes
    "dtype": "float64",
    "batch": 0,  # a leading vmap dimension of the logits
    "device": "cpu",
}


def spec_of(**overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(DEFAULTS)
    assert not unknown, unknown
    return {**DEFAULTS, **overrides}


def starts(sizes: tuple[int, ...]) -> list[int]:
    return [0, *itertools.accumulate(sizes)][:-1]


def problem(spec: dict[str, Any]) -> dict[str, Any]:
    """The full problem in float64 (the oracle's) and its rows' masks."""
    generator = torch.Generator().manual_seed(spec["seed"])
    classes = sum(spec["sizes"])
    n, kdims = spec["n"], tuple(spec["kdims"])
    lead = (spec["batch"],) if spec["batch"] else ()
    logits = 3 * torch.randn(*lead, n, classes, *kdims, generator=generator, dtype=torch.float64)
    target = torch.randint(0, classes, (n, *kdims), generator=generator)
    ignored = torch.zeros(target.shape, dtype=torch.bool)
    if spec["ignore"]:
        ignored = torch.rand(target.shape, generator=generator) < 0.4
        ignored.view(-1)[0] = True
    if spec["all_ignored"]:
        ignored[...] = True
    target = target.masked_fill(ignored, -100)
    weight = None
    if spec["weight"]:
        weight = torch.rand(classes, generator=generator, dtype=torch.float64) + 0.2
    where = None
    if spec["where"]:
        where = torch.rand(target.shape, generator=generator) < 0.7
        where.view(-1)[-1] = False
    cotangent = torch.randn(target.shape, generator=generator, dtype=torch.float64)
    clean = logits
    dropped = ignored if where is None else ignored | ~where
    if spec["poison"]:
        rows = dropped.unsqueeze(1).expand(n, classes, *kdims)
        poison = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
        values = poison[torch.arange(rows.numel()) % 3].view(rows.shape)
        logits = torch.where(rows, values, logits)
        clean = torch.where(rows, 0.0, clean)
    return {
        "logits": logits,
        "clean": clean,
        "target": target,
        "weight": weight,
        "where": where,
        "cotangent": cotangent,
    }


def shard(spec: dict[str, Any], tensor: Tensor, rank: int, dim: int) -> Tensor:
    start, size = starts(spec["sizes"])[rank], spec["sizes"][rank]
    return tensor.narrow(dim, start, size)


# -- the float64 oracle (plain torch, no funcloss) ----------------------------------------------


def oracle_rows(
    logits: Tensor, target: Tensor, weight: Tensor | None, smoothing: float, z_loss: float
) -> tuple[Tensor, Tensor]:
    """Per row: torch's cross-entropy formula with label smoothing, plus the z-loss; and each
    row's weight in the mean. ``logits`` ``(M, C)``, ``target`` ``(M,)``."""
    classes = logits.shape[1]
    ignored = target == -100
    safe = target.masked_fill(ignored, 0)
    w = torch.ones(classes, dtype=logits.dtype) if weight is None else weight
    row_weight = torch.where(ignored, 0.0, w[safe])
    log_probs = torch.log_softmax(logits, 1)
    nll = -log_probs.gather(1, safe.unsqueeze(1)).squeeze(1) * row_weight
    smooth = torch.where(ignored, 0.0, -(log_probs * w).sum(1))
    lse = torch.logsumexp(logits, 1)
    loss = (1 - smoothing) * nll + smoothing / classes * smooth + z_loss * row_weight * lse**2
    return torch.where(ignored, 0.0, loss), row_weight


def oracle(logits: Tensor, spec: dict[str, Any], data: dict[str, Any]) -> Tensor:
    """The loss on the full ``(N, C, d...)`` logits, house semantics for ``where``."""
    target, where = data["target"], data["where"]
    classes = logits.shape[1]
    rows = logits.movedim(1, -1).reshape(-1, classes)
    loss, row_weight = oracle_rows(
        rows, target.reshape(-1), data["weight"], spec["smoothing"], spec["z_loss"]
    )
    loss, row_weight = loss.view(target.shape), row_weight.view(target.shape)
    if where is not None:
        loss = torch.where(where, loss, 0.0)
        row_weight = torch.where(where, row_weight, 0.0)
    if spec["reduction"] == "none":
        return loss
    if spec["reduction"] == "sum":
        return loss.sum()
    denominator = row_weight.sum()
    if where is not None:
        denominator = torch.where(denominator == 0, 1.0, denominator)
    return loss.sum() / denominator


def torch_loss(logits: Tensor, spec: dict[str, Any], data: dict[str, Any]) -> Tensor:
    return F.cross_entropy(
        logits,
        data["target"],
        data["weight"],
        reduction=spec["reduction"],
        label_smoothing=spec["smoothing"],
    )


# -- on each rank ---------------------------------------------------------------------------------


def _ours(spec: dict[str, Any], data: dict[str, Any], rank: int, module: bool = False) -> Any:
    dtype = getattr(torch, spec["dtype"])
    weight = data["weight"]
    weight = None if weight is None else shard(spec, weight, rank, 0).to(dtype)
    config = {
        "vocab_start": starts(spec["sizes"])[rank] if spec["start"] else None,
        "num_classes": sum(spec["sizes"]) if spec["num_classes"] else None,
        "reduction": spec["reduction"],
        "label_smoothing": spec["smoothing"],
        "z_loss": spec["z_loss"],
    }
    if module:
        loss = VocabParallelCrossEntropyLoss(weight, **config)
        return lambda x: loss(x, data["target"], where=data["where"])
    return lambda x: vocab_parallel_cross_entropy(
        x, data["target"], weight, where=data["where"], **config
    )


def parity(rank: int, world_size: int, spec: dict[str, Any], module: bool = False) -> dict:
    """Value, gradient (for the spec's cotangent), collectives per call, logits untouched."""
    data = {k: v if v is None else v.to(spec["device"]) for k, v in problem(spec).items()}
    dtype = getattr(torch, spec["dtype"])
    local = shard(spec, data["logits"], rank, 1).to(dtype).requires_grad_()
    before = local.detach().clone()
    fn = _ours(spec, data, rank, module)
    start = _collectives.calls[0]
    loss = fn(local)
    middle = _collectives.calls[0]
    cotangent = data["cotangent"].to(dtype) if loss.dim() else torch.ones((), dtype=dtype)
    (grad,) = torch.autograd.grad(loss, local, cotangent)
    after = local.detach()
    untouched = torch.equal(after.isnan(), before.isnan()) and torch.equal(
        after.nan_to_num(), before.nan_to_num()
    )
    return {
        "loss": loss.detach().cpu(),
        "grad": grad.cpu(),
        "calls": middle - start,
        "backward_calls": _collectives.calls[0] - middle,
        "untouched": untouched,
    }


TRANSFORMS = ("grad", "vmap", "vmap_grad", "jacrev", "jacfwd", "hessian", "jacrev_jacrev")


def transforms(rank: int, world_size: int, spec: dict[str, Any], names: tuple[str, ...]) -> dict:
    """Each named transform of this rank's loss (``"none"`` for the Jacobians, the spec's
    reduction otherwise), and the collectives it ran. ``vmap`` needs a spec with ``batch``."""
    data = problem(spec)
    dtype = getattr(torch, spec["dtype"])
    local = shard(spec, data["logits"], rank, 2 if spec["batch"] else 1).to(dtype)
    fn = _ours(spec, data, rank)
    out = {}
    for name in names:
        calls = _collectives.calls[0]
        out[name] = _transform(name, fn, local)
        out[name + "_calls"] = _collectives.calls[0] - calls
    return out


def _transform(name: str, fn: Any, x: Tensor) -> Tensor:
    func = torch.func
    if name == "grad":
        return func.grad(fn)(x)
    if name == "vmap":
        return func.vmap(fn)(x)
    if name == "vmap_grad":
        return func.vmap(func.grad(fn))(x)
    if name == "jacrev":
        return func.jacrev(fn)(x)
    if name == "jacfwd":
        return func.jacfwd(fn)(x)
    if name == "hessian":
        return func.hessian(fn)(x)
    if name == "jacrev_jacrev":
        return func.jacrev(func.jacrev(fn))(x)
    if name == "compile_grad":
        return torch.compile(func.grad(fn), fullgraph=True, backend="aot_eager")(x)
    if name == "compile_vmap":
        return torch.compile(func.vmap(fn), fullgraph=True, backend="aot_eager")(x)
    if name in ("compile", "inductor"):
        backend = "aot_eager" if name == "compile" else "inductor"
        compiled = torch.compile(fn, fullgraph=True, backend=backend)
        leaf = x.detach().requires_grad_()
        loss = compiled(leaf)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
        return torch.stack([loss.detach().sum(), *grad.reshape(-1)])
    raise ValueError(name)


def oracle_transform(name: str, spec: dict[str, Any], data: dict[str, Any], rank: int) -> Tensor:
    """The same transform of the float64 oracle on the full logits, restricted to this rank's
    classes (the derivative of the one loss with respect to this rank's logits)."""
    func = torch.func
    full = data["clean"]
    batched = bool(spec["batch"])
    dim = 2 if batched else 1

    def fn(x: Tensor) -> Tensor:
        return oracle(x, spec, data)

    def local(t: Tensor, dims: list[int]) -> Tensor:
        for d in dims:
            t = shard(spec, t, rank, d)
        return t

    lead = full.dim()  # the Jacobian's input dims come after the output's
    out = oracle(full[0] if batched else full, spec, data).dim()
    if name in ("grad", "compile_grad"):
        return local(func.grad(fn)(full), [1])
    if name in ("vmap", "compile_vmap"):
        return func.vmap(fn)(full)
    if name == "vmap_grad":
        return local(func.vmap(func.grad(fn))(full), [2])
    if name in ("jacrev", "jacfwd"):
        return local(func.jacrev(fn)(full), [out + dim])
    if name in ("hessian", "jacrev_jacrev"):
        return local(func.hessian(fn)(full), [out + 1, out + 1 + lead])
    if name in ("compile", "inductor"):
        leaf = full.detach().requires_grad_()
        loss = fn(leaf)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
        return torch.stack([loss.detach().sum(), *local(grad, [1]).reshape(-1)])
    raise ValueError(name)


def out_of_range(rank: int, world_size: int, spec: dict[str, Any]) -> None:
    data = problem(spec)
    target = data["target"].clone()
    target[0] = sum(spec["sizes"])
    data["target"] = target
    _ours(spec, data, rank)(shard(spec, data["logits"], rank, 1))


def dtensor(rank: int, world_size: int, spec: dict[str, Any]) -> dict:
    """The loss of a DTensor sharded on the class dimension (torch's even layout), and the
    gradient of its local shard."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    data = problem(spec)
    mesh = init_device_mesh("cpu", (world_size,))
    logits = data["logits"]
    local = shard(spec, logits, rank, 1).clone().requires_grad_()
    input = DTensor.from_local(
        local, mesh, [Shard(1)], run_check=False, shape=logits.shape, stride=logits.stride()
    )
    calls = _collectives.calls[0]
    loss = vocab_parallel_cross_entropy(
        input,
        data["target"],
        data["weight"],  # the full class weight: sliced to the shard
        reduction=spec["reduction"],
        label_smoothing=spec["smoothing"],
        where=data["where"],
    )
    calls = _collectives.calls[0] - calls
    cotangent = data["cotangent"] if loss.dim() else torch.ones((), dtype=loss.dtype)
    (grad,) = torch.autograd.grad(loss, local, cotangent)
    return {
        "loss": loss.detach(),
        "grad": grad,
        "calls": calls,
        "backward_calls": 0,
        "untouched": True,
        "type": type(loss).__name__,
    }


def main(backend: str) -> None:
    """Under torchrun (``torchrun --nproc-per-node 2 -m tests.distributed_cases nccl``): the
    parity cases on this group (one GPU per rank with NCCL), each rank against the oracle."""
    import torch.distributed as dist

    dist.init_process_group(backend)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{rank}" if backend == "nccl" else "cpu"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    sizes = tuple(range(2, 2 + world_size))
    for options in (
        {},
        {"start": False},
        {"weight": True, "ignore": True, "smoothing": 0.1, "z_loss": 0.01, "start": False},
        {"where": True, "poison": True, "ignore": True, "kdims": (2,)},
    ):
        for reduction in ("mean", "sum", "none"):
            spec = spec_of(**options, sizes=sizes, reduction=reduction, device=device)
            result = parity(rank, world_size, spec)
            data = problem(spec)
            full = data["clean"].clone().requires_grad_()
            expected = oracle(full, spec, data)
            cotangent = data["cotangent"] if expected.dim() else torch.ones(())
            (grad,) = torch.autograd.grad(expected, full, cotangent)
            losses = [None] * world_size
            dist.all_gather_object(losses, result["loss"])
            assert all(torch.equal(loss, losses[0]) for loss in losses), spec
            torch.testing.assert_close(result["loss"], expected.detach())
            torch.testing.assert_close(result["grad"], shard(spec, grad, rank, 1))
            assert result["calls"] == (1 if spec["start"] else 2) and not result["backward_calls"]
    if rank == 0:
        print("parity ok")
    dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    main(sys.argv[1] if len(sys.argv) > 1 else "gloo")


# -- the linear variant ---------------------------------------------------------------------------


def linear_problem(spec: dict[str, Any], hidden: int = 4) -> dict[str, Any]:
    """``input`` ``(N, H)``, the full ``W`` ``(C, H)`` and ``b``, and the row problem."""
    data = problem({**spec, "poison": False})
    generator = torch.Generator().manual_seed(spec["seed"] + 1)
    classes = sum(spec["sizes"])
    data["input"] = torch.randn(spec["n"], hidden, generator=generator, dtype=torch.float64)
    data["linear_weight"] = torch.randn(classes, hidden, generator=generator, dtype=torch.float64)
    data["bias"] = torch.randn(classes, generator=generator, dtype=torch.float64)
    return data


def linear_logits(data: dict[str, Any], w: Tensor, b: Tensor, softcap: float | None) -> Tensor:
    u = data["input_leaf"] @ w.T + b
    return u if softcap is None else softcap * torch.tanh(u / softcap)


def linear_oracle(spec: dict[str, Any], softcap: float | None) -> dict[str, Tensor]:
    """Value and gradients (input, W, b) of the oracle on the full layer."""
    data = linear_problem(spec)
    leaves = [data[k].clone().requires_grad_() for k in ("input", "linear_weight", "bias")]
    data["input_leaf"] = leaves[0]
    loss = oracle(linear_logits(data, leaves[1], leaves[2], softcap), spec, data)
    cotangent = data["cotangent"] if loss.dim() else torch.ones(())
    grads = torch.autograd.grad(loss, leaves, cotangent)
    return {"loss": loss.detach(), "input": grads[0], "linear_weight": grads[1], "bias": grads[2]}


def linear_second_oracle(spec: dict[str, Any], softcap: float | None, rank: int) -> Tensor:
    """``d/dW_r sum(d loss / dW_r)`` on the full layer, the other ranks' rows held fixed."""
    data = linear_problem(spec)
    w = data["linear_weight"].clone().requires_grad_()
    data["input_leaf"] = data["input"]
    loss = oracle(linear_logits(data, w, data["bias"], softcap), spec, data)
    (gw,) = torch.autograd.grad(loss, w, create_graph=True)
    (second,) = torch.autograd.grad(shard(spec, gw, rank, 0).sum(), w)
    return shard(spec, second, rank, 0)


def linear(
    rank: int,
    world_size: int,
    spec: dict[str, Any],
    softcap: float | None = None,
    input_grad: str = "all_reduce",
    chunk_size: int | None = None,
    transform: str = "eager",
) -> dict:
    from funcloss.distributed import vocab_parallel_linear_cross_entropy

    data = linear_problem(spec)
    x = data["input"].clone().requires_grad_()
    w = shard(spec, data["linear_weight"], rank, 0).clone().requires_grad_()
    b = shard(spec, data["bias"], rank, 0).clone().requires_grad_()
    weight = data["weight"]
    weight = None if weight is None else shard(spec, weight, rank, 0)

    def fn(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return vocab_parallel_linear_cross_entropy(
            x,
            w,
            data["target"],
            linear_bias_shard=b,
            weight=weight,
            vocab_start=starts(spec["sizes"])[rank] if spec["start"] else None,
            reduction=spec["reduction"],
            label_smoothing=spec["smoothing"],
            z_loss=spec["z_loss"],
            softcap=softcap,
            chunk_size=chunk_size,
            input_grad=input_grad,
            where=data["where"],
        )

    if transform == "dtensor":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import DTensor, Shard

        mesh = init_device_mesh("cpu", (world_size,))
        full = data["linear_weight"]
        dw = DTensor.from_local(
            w, mesh, [Shard(0)], run_check=False, shape=full.shape, stride=full.stride()
        )
        loss = vocab_parallel_linear_cross_entropy(
            x,
            dw,
            data["target"],
            linear_bias_shard=data["bias"],
            weight=data["weight"],
            reduction=spec["reduction"],
            label_smoothing=spec["smoothing"],
        )
        grads = torch.autograd.grad(loss, (x, w))
        return {"loss": loss.detach(), "input": grads[0], "linear_weight": grads[1]}
    if transform == "jacfwd_weight":
        return {"jacobian": torch.func.jacfwd(fn, argnums=1)(x.detach(), w.detach(), b.detach())}
    if transform == "grad_weight":
        return {"grad": torch.func.grad(fn, argnums=(1, 2))(x.detach(), w.detach(), b.detach())}
    if transform == "jacfwd_input":
        return {"jacobian": torch.func.jacfwd(fn, argnums=0)(x.detach(), w.detach(), b.detach())}
    if transform == "hessian_input":
        return {"hessian": torch.func.hessian(fn, argnums=0)(x.detach(), w.detach(), b.detach())}
    if transform == "double_backward_input":
        loss = fn(x, w, b)
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        return {"second": torch.autograd.grad(gx.sum(), x)}
    if transform == "double_backward_weight":
        loss = fn(x, w, b)
        (gw,) = torch.autograd.grad(loss, w, create_graph=True)
        return {"second": torch.autograd.grad(gw.sum(), w)[0]}
    if transform == "twice":
        loss = fn(x, w, b)
        loss.backward(retain_graph=True)
        loss.backward()
        return {"input": x.grad, "linear_weight": w.grad, "bias": b.grad}
    calls = _collectives.calls[0]
    loss = fn(x, w, b)
    forward_calls = _collectives.calls[0] - calls
    cotangent = data["cotangent"] if loss.dim() else torch.ones((), dtype=loss.dtype)
    grads = torch.autograd.grad(loss, (x, w, b), cotangent)
    return {
        "loss": loss.detach(),
        "input": grads[0],
        "linear_weight": grads[1],
        "bias": grads[2],
        "calls": forward_calls,
        "backward_calls": _collectives.calls[0] - calls - forward_calls,
    }
