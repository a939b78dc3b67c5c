"""Time and memory per rank: funcloss's vocab_parallel_cross_entropy against torch's DTensor
``loss_parallel``, forward + backward, 2 CPU ranks (gloo), and funcloss.cross_entropy on the full
logits in one process for scale.

Memory is the peak of the bytes allocated during forward + backward above those live before it
(the logits exist already; the logits' gradient counts), from the profiler's allocation events;
time is the median over repeats, and the time ratio is the median of the per-repeat (paired)
ratios.

    PYTHONPATH=$PWD python benchmarks/vocab_parallel.py [--rows 4096 --classes 32000 --repeats 5]
    PYTHONPATH=$PWD python benchmarks/vocab_parallel.py --hidden 512   # the linear variant
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import funcloss
from funcloss.distributed import (
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)


def _methods(
    rank: int, world_size: int, rows: int, classes: int, hidden: int
) -> dict[str, Callable]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard
    from torch.distributed.tensor.parallel import loss_parallel

    mesh = init_device_mesh("cpu", (world_size,))
    size = classes // world_size
    generator = torch.Generator().manual_seed(0)
    full = torch.randn(rows, classes, generator=generator)
    target = torch.randint(0, classes, (rows,), generator=generator)
    local = full[:, rank * size : (rank + 1) * size].contiguous()
    features = torch.randn(rows, hidden, generator=generator)
    head = torch.randn(size, hidden, generator=generator) / hidden**0.5  # this rank's W_r

    def torch_loss_parallel() -> None:
        x = local.detach().requires_grad_()
        logits = DTensor.from_local(x, mesh, [Shard(1)], run_check=False)
        with loss_parallel():
            F.cross_entropy(logits, target).backward()

    def funcloss_vocab_parallel() -> None:
        x = local.detach().requires_grad_()
        vocab_parallel_cross_entropy(x, target, vocab_start=rank * size).backward()

    def funcloss_default_start() -> None:
        x = local.detach().requires_grad_()
        vocab_parallel_cross_entropy(x, target).backward()

    def funcloss_one_process() -> None:
        x = full.detach().requires_grad_()
        funcloss.cross_entropy(x, target).backward()

    def torch_linear_loss_parallel() -> None:
        h, w = features.detach().requires_grad_(), head.detach().requires_grad_()
        logits = DTensor.from_local(h @ w.T, mesh, [Shard(1)], run_check=False)
        with loss_parallel():
            F.cross_entropy(logits, target).backward()

    def funcloss_linear() -> None:
        h, w = features.detach().requires_grad_(), head.detach().requires_grad_()
        loss = vocab_parallel_linear_cross_entropy(
            h,
            w,
            target,
            vocab_start=rank * size,
            input_grad="partial",  # as loss_parallel here
        )
        loss.backward()

    if hidden:
        return {
            "linear: h @ W_r.T, then loss_parallel": torch_linear_loss_parallel,
            "linear: funcloss vocab_parallel_linear_cross_entropy": funcloss_linear,
        }
    return {
        "loss_parallel": torch_loss_parallel,
        "funcloss": funcloss_vocab_parallel,
        "funcloss (default vocab_start)": funcloss_default_start,
        "funcloss.cross_entropy, full logits, 1 process": funcloss_one_process,
    }


def peak_bytes(step: Callable[[], None]) -> int:
    """The peak of the bytes allocated during ``step`` above those live before it, from the
    profiler's allocation events (signed sizes, in time order)."""
    from torch._C._profiler import _EventType

    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as profiler:
        step()
    allocations = []
    stack = list(profiler.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    current = peak = 0
    for _, size in sorted(allocations):
        current += size
        peak = max(peak, current)
    return peak


def _rank(rank: int, world_size: int, store_path: str, args: argparse.Namespace, out: dict) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world_size)
    timeout = datetime.timedelta(seconds=600)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    methods = _methods(rank, world_size, args.rows, args.classes, args.hidden)
    for step in methods.values():  # warm up
        step()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, step in methods.items():
            dist.barrier()
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    memory = {}
    for name, step in methods.items():
        dist.barrier()
        memory[name] = peak_bytes(step)
    out[rank] = (times, memory)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--hidden", type=int, default=0, help="H > 0: the linear variant against h @ W_r.T"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, mp.Manager() as manager:
        out = manager.dict()
        store = os.path.join(directory, "store")
        mp.start_processes(_rank, args=(2, store, args, out), nprocs=2, start_method="spawn")
        out = dict(out)
    print(
        f"N={args.rows}, V={args.classes}, 2 CPU ranks (gloo, 1 thread each), fp32, "
        f"{args.repeats} repeats; per rank: median time, peak memory; ratios to loss_parallel"
    )
    base = next(iter(out[0][0]))
    for name in out[0][0]:
        for rank in (0, 1):
            times, memory = out[rank]
            ratios = [t / b for t, b in zip(times[name], times[base], strict=True)]
            print(
                f"  rank {rank} {name:<48} {statistics.median(times[name]) * 1e3:8.1f} ms "
                f"{memory[name] / 2**20:8.1f} MiB   time x{statistics.median(ratios):.2f} "
                f"memory x{memory[name] / memory[base]:.2f}"
            )


if __name__ == "__main__":
    main()
