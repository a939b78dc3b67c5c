"""Time and memory per rank: funcloss's vocab_parallel_cross_entropy against torch's DTensor
``loss_parallel``, forward + backward, 2 CPU ranks (gloo), and funcloss.cross_entropy on the full
logits in one process for scale.

Every rank runs the contenders side by side (benchmarks/_paired.py: interleaved rounds, the
order alternating, the same on both ranks so that their collectives meet); a ratio is the median
over rounds of the per-round ratio to ``loss_parallel`` on that rank, and ``loss_parallel``
against itself is the noise floor. Time is the rank's CPU time (its one compute thread,
``time.thread_time``: on a shared machine wall time counts the other jobs; ``--wall`` for it).
Peak memory is the rank's resident-set high-water mark during forward + backward above its
resident set before (``VmHWM``; the inputs exist already, the gradients count). The CPU
profiler's ``profile_memory`` events are incomplete on torch 2.13, so they cannot give a peak.

    PYTHONPATH=$PWD python benchmarks/vocab_parallel.py [--rows 4096 --classes 32000 --repeats 5]
    PYTHONPATH=$PWD python benchmarks/vocab_parallel.py --hidden 512   # the linear variant
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import funcloss
from funcloss.distributed import (
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import PeakMemory, Samples, interleaved, median_seconds, paired_ratio


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

    def funcloss_linear_all_reduce() -> None:
        h, w = features.detach().requires_grad_(), head.detach().requires_grad_()
        loss = vocab_parallel_linear_cross_entropy(h, w, target, vocab_start=rank * size)
        loss.backward()  # h.grad: one (N, H) all-reduce

    if hidden:
        return {
            "h @ W_r.T, then loss_parallel": torch_linear_loss_parallel,
            "the same (noise floor)": torch_linear_loss_parallel,
            'funcloss linear, input_grad="partial"': funcloss_linear,
            'funcloss linear, input_grad="all_reduce"': funcloss_linear_all_reduce,
        }
    return {
        "loss_parallel": torch_loss_parallel,
        "loss_parallel (noise floor)": torch_loss_parallel,
        "funcloss": funcloss_vocab_parallel,
        "funcloss (default vocab_start)": funcloss_default_start,
        "funcloss.cross_entropy, full logits, 1 process": funcloss_one_process,
    }


def _rank(rank: int, world_size: int, store_path: str, args: argparse.Namespace, out: dict) -> None:
    torch.set_num_threads(1)
    store = dist.FileStore(store_path, world_size)
    timeout = datetime.timedelta(seconds=1800)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
    methods = _methods(rank, world_size, args.rows, args.classes, args.hidden)
    meter = PeakMemory()
    if not args.wall:
        meter.timer = time.thread_time  # this rank's CPU seconds: a loaded machine's wait drops out
    # Both ranks run the same contenders in the same (alternating) order: their collectives meet.
    out[rank] = interleaved(methods, args.repeats, meter)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--classes", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--hidden", type=int, default=0, help="H > 0: the linear variant against h @ W_r.T"
    )
    parser.add_argument(
        "--wall", action="store_true", help="wall time instead of each rank's CPU time"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, mp.Manager() as manager:
        out = manager.dict()
        store = os.path.join(directory, "store")
        mp.start_processes(_rank, args=(2, store, args, out), nprocs=2, start_method="spawn")
        results: dict[int, Samples] = dict(out)
    with open("/proc/loadavg") as load:
        loadavg = " ".join(load.read().split()[:3])
    print(
        f"N={args.rows}, V={args.classes}, H={args.hidden or '-'}, 2 CPU ranks (gloo, 1 thread "
        f"each), fp32, {args.repeats} paired rounds, {'wall' if args.wall else 'CPU'} time; "
        f"loadavg after: {loadavg}"
    )
    print("| per rank (rank 0 / rank 1) | median time | time ratio | peak memory | memory ratio |")
    print("|---|---|---|---|---|")
    base = next(iter(results[0]))
    for name in results[0]:
        cells = []
        for field in range(2):
            per_rank = [paired_ratio(results[r], name, base, field) for r in (0, 1)]
            cells.append(" / ".join(f"{v:.2f}" for v in per_rank))
        seconds = " / ".join(f"{median_seconds(results[r], name):.2f} s" for r in (0, 1))
        mib = " / ".join(
            f"{sorted(m for _, m in results[r][name])[len(results[r][name]) // 2]:.0f} MiB"
            for r in (0, 1)
        )
        print(f"| {name} | {seconds} | {cells[0]} | {mib} | {cells[1]} |")


if __name__ == "__main__":
    main()
