"""Time funcloss's regression losses against torch's, forward + backward, fp32 CPU (issue 15).

    PYTHONPATH=$PWD python benchmarks/regression_speed.py [--quick] [--repeats R] [--threads T]
        [--losses mse_loss,huber_loss] [--shapes 64x10,8192x1000,4096x32000] [--timer thread]

Every contender of one round runs back to back (paired, interleaved rounds), so a slow phase of
a shared machine hits both alike; a ratio is the median over rounds of funcloss's time (or peak
memory) over torch's in the same round. The small shape (64x10) is timed over many calls per
round (per-call overhead). Peak extra memory is the resident-set high-water mark of the call
(``VmHWM`` reset through ``/proc/self/clear_refs`` after ``malloc_trim``), as in
examples/benchmark.py; ``n/a`` below 1 MiB, where the page counter says nothing. ``--quick``
runs tiny sizes in seconds (tests/test_regression_speed.py runs it; no timing checks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import funcloss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import PeakMemory, Samples, interleaved, paired_ratio

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pair(n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, c), torch.randn(n, c)


def _counts(n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, c).mul_(0.5), torch.poisson(torch.full((n, c), 2.0))


def _distributions(n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, c).log_softmax(-1), torch.randn(n, c).softmax(-1)


def _gaussian(fn: Callable[..., torch.Tensor]) -> Loss:
    def loss(input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fn(input, target, _VAR[input.shape])

    return loss


_VAR: dict[torch.Size, torch.Tensor] = {}

# name -> (inputs, funcloss's loss, torch's loss)
CASES: dict[str, tuple[Callable[[int, int], tuple[torch.Tensor, torch.Tensor]], Loss, Loss]] = {
    "mse_loss": (_pair, funcloss.mse_loss, F.mse_loss),
    "l1_loss": (_pair, funcloss.l1_loss, F.l1_loss),
    "huber_loss": (_pair, funcloss.huber_loss, F.huber_loss),
    "smooth_l1_loss": (_pair, funcloss.smooth_l1_loss, F.smooth_l1_loss),
    "poisson_nll_loss": (_counts, funcloss.poisson_nll_loss, F.poisson_nll_loss),
    "kl_div": (
        _distributions,
        lambda x, y: funcloss.kl_div(x, y, reduction="batchmean"),
        lambda x, y: F.kl_div(x, y, reduction="batchmean"),
    ),
    "gaussian_nll_loss": (
        _pair,
        _gaussian(funcloss.gaussian_nll_loss),
        _gaussian(F.gaussian_nll_loss),
    ),
}


def step(loss: Loss, input: torch.Tensor, target: torch.Tensor, calls: int) -> Callable[[], None]:
    """``calls`` training steps: forward, backward into ``input``, drop the gradient."""

    def run() -> None:
        for _ in range(calls):
            loss(input, target).backward()
            input.grad = None

    return run


def paired(samples: Samples, field: int) -> float:
    return paired_ratio(samples, "funcloss", "torch", field)


def measure(name: str, n: int, c: int, rounds: int, calls: int, memory: PeakMemory) -> str:
    make, ours, theirs = CASES[name]
    input, target = make(n, c)
    input.requires_grad_()
    _VAR[input.shape] = torch.rand(n, c) + 0.5
    samples = interleaved(
        {"funcloss": step(ours, input, target, calls), "torch": step(theirs, input, target, calls)},
        rounds,
        memory,
        memory=True,
    )
    ms = {k: statistics.median(s for s, _ in v) * 1e3 / calls for k, v in samples.items()}
    mib = {k: statistics.median(m for _, m in v) for k, v in samples.items()}
    small = min(m for _, m in samples["torch"]) < 1 or min(m for _, m in samples["funcloss"]) < 1
    memory_ratio = "n/a" if small else f"{paired(samples, 1):.2f}x"
    return (
        f"| {name:<18} | {n}x{c:<6} | {paired(samples, 0):6.2f}x | {memory_ratio:>6} "
        f"| {ms['funcloss']:9.3f} | {ms['torch']:9.3f} "
        f"| {mib['funcloss']:8.1f} | {mib['torch']:8.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per cell")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--losses", default=",".join(CASES))
    parser.add_argument("--shapes", default="64x10,8192x1000")
    parser.add_argument(
        "--timer",
        choices=["wall", "thread"],
        default="wall",
        help="thread: this thread's CPU time (with --threads 1, steadier on a loaded machine)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    # a smoke run on one thread: no waiting for a second core that a busy machine lacks
    torch.set_num_threads(1 if args.quick else args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.quick:
        shapes, repeats, small_calls = [(64, 10), (256, 100)], args.repeats or 2, 5
    else:
        # 200 calls of a 64x10 loss take ~10 ms: long enough for the clock, short for noise
        repeats, small_calls = args.repeats or 15, 200
    memory = PeakMemory()
    if args.timer == "thread":
        memory.timer = staticmethod(time.thread_time)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} rounds, fp32, "
        f"{args.timer} time"
    )
    print(
        "| loss | shape | time ratio | mem ratio | funcloss ms | torch ms "
        "| funcloss MiB | torch MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.losses.split(","):
        for n, c in shapes:
            # 64x10 is per-call overhead: many calls per round, more rounds
            calls = small_calls if n * c <= 4096 else 1
            print(measure(name, n, c, repeats * (2 if calls > 1 else 1), calls, memory), flush=True)


if __name__ == "__main__":
    main()
