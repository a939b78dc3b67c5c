"""Time the BCE and margin losses, forward + backward, against torch.nn.functional (CPU).

    PYTHONPATH=$PWD python benchmarks/logistic_margin_speed.py [--quick] [--threads 2]
        [--rounds R] [--only NAME ...]

For each of binary_cross_entropy, binary_cross_entropy_with_logits, soft_margin_loss,
multilabel_soft_margin_loss, multi_margin_loss and multilabel_margin_loss, at a small shape
(N=64, C=10: per-call overhead, each round many calls) and a large one (N=8192, C=1000:
memory bandwidth, each round one call), it prints funcloss's time and peak extra memory over
torch's. The contenders run side by side in one process, interleaved (each round runs both,
in turn, in alternating order), and a ratio is the median over rounds of the per-round ratio,
so a slow phase of a shared machine cancels out of it. Only the scores (probabilities,
logits) require grad, as in training. ``--quick`` uses tiny shapes and few rounds (a smoke
test: tests/test_benchmark_logistic_margin.py runs it); its numbers mean nothing.

Peak memory: the resident-set high-water mark of this process, reset before each run through
``/proc/self/clear_refs`` after returning freed memory to the OS (``malloc_trim``):
``VmHWM after - VmRSS before``, as examples/benchmark.py measures it (``nan`` off Linux).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import funcloss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paired import PeakMemory, interleaved, median_seconds, paired_ratio

Problem = Callable[[int, int, torch.Generator], tuple[tuple[torch.Tensor, ...], dict]]


def _bce(n: int, c: int, g: torch.Generator):
    return (torch.rand(n, c, generator=g), torch.rand(n, c, generator=g)), {}


def _logits_and_probabilities(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.rand(n, c, generator=g)), {}


def _signs(n: int, c: int, g: torch.Generator):
    signs = torch.randint(0, 2, (n, c), generator=g).float() * 2 - 1
    return (torch.randn(n, c, generator=g), signs), {}


def _multi_hot(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randint(0, 2, (n, c), generator=g).float()), {}


def _class_index(n: int, c: int, g: torch.Generator):
    return (torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)), {}


def _label_lists(n: int, c: int, g: torch.Generator):
    # each row lists up to 4 distinct labels, then -1 (the rest is ignored by both)
    labels = torch.rand(n, c, generator=g).argsort(-1)
    count = torch.randint(1, min(4, c) + 1, (n, 1), generator=g)
    labels = torch.where(torch.arange(c) < count, labels, -1)
    return (torch.randn(n, c, generator=g), labels), {}


# name -> (problem, {variant label: extra kwargs})
CASES: dict[str, tuple[Problem, dict[str, dict]]] = {
    "binary_cross_entropy": (_bce, {"": {}}),
    "binary_cross_entropy_with_logits": (_logits_and_probabilities, {"": {}}),
    "soft_margin_loss": (_signs, {"": {}}),
    "multilabel_soft_margin_loss": (_multi_hot, {"": {}}),
    "multi_margin_loss": (_class_index, {"": {}, " p=2": {"p": 2}}),
    "multilabel_margin_loss": (_label_lists, {"": {}}),
}


def _step(loss_fn: Callable[..., torch.Tensor], args: tuple, kwargs: dict, calls: int):
    scores, *rest = args
    scores = scores.clone().requires_grad_()

    def run() -> None:
        for _ in range(calls):
            loss_fn(scores, *rest, **kwargs).backward()
            scores.grad = None

    return run


def compare(
    name: str, kwargs: dict, n: int, c: int, calls: int, rounds: int, memory: PeakMemory
) -> tuple[float, float, float]:
    """(time ratio, memory ratio, torch's median seconds per call) of funcloss over torch."""
    problem, _ = CASES[name]
    args, extra = problem(n, c, torch.Generator().manual_seed(0))
    kwargs = {**extra, **kwargs}
    contenders = {
        "torch": _step(getattr(F, name), args, kwargs, calls),
        "funcloss": _step(getattr(funcloss, name), args, kwargs, calls),
    }
    samples = interleaved(contenders, rounds, memory, memory=calls == 1)
    time_ratio = paired_ratio(samples, "funcloss", "torch", 0)
    memory_ratio = paired_ratio(samples, "funcloss", "torch", 1)
    torch_seconds = median_seconds(samples, "torch") / calls
    return time_ratio, memory_ratio, torch_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, a smoke test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="loss names to run")
    parser.add_argument(
        "--timer",
        choices=["wall", "thread"],
        default="wall",
        help="thread: this thread's CPU time (with --threads 1, steadier on a loaded machine)",
    )
    parser.add_argument("--sizes", nargs="*", default=["small", "large"], help="small, large")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    if options.quick:
        shapes = [("N=8, C=5", 8, 5, 2, 3), ("N=64, C=20", 64, 20, 1, 3)]
    else:
        rounds = options.rounds
        sizes = {
            "small": ("N=64, C=10 (per call)", 64, 10, 50, rounds or 200),
            "large": ("N=8192, C=1000", 8192, 1000, 1, rounds or 30),
        }
        shapes = [sizes[size] for size in options.sizes]
    memory = PeakMemory()
    if options.timer == "thread":
        memory.timer = staticmethod(time.thread_time)
    print(
        f"torch {torch.__version__}, {options.threads} threads, fp32, forward + backward, "
        f"{options.timer} time"
    )
    print(f"{'loss':40s} {'shape':22s} {'time':>7s} {'memory':>7s} {'torch/call':>11s}")
    for name, (_, variants) in CASES.items():
        if options.only and name not in options.only:
            continue
        for label, kwargs in variants.items():
            for shape, n, c, calls, rounds in shapes:
                time_ratio, memory_ratio, seconds = compare(
                    name, kwargs, n, c, calls, rounds, memory
                )
                mem = f"{memory_ratio:6.2f}x" if calls == 1 else "      -"
                print(
                    f"{name + label:40s} {shape:22s} {time_ratio:6.2f}x {mem:>7s} "
                    f"{seconds * 1e6:8.1f} us"
                )


if __name__ == "__main__":
    main()
