"""Benchmark: funcloss's cross_entropy and linear_cross_entropy against torch, on CPU.

Run ``python examples/benchmark.py [--quick] [--plot PATH] [--repeats R]`` from the repository
root. In one process, interleaving the contenders (each repeat runs every contender once, in
turn, so that a slow phase of a shared machine hits them all alike), it measures forward +
backward time and peak extra memory of

(a) ``funcloss.cross_entropy`` vs ``F.cross_entropy`` on ``(N, C)`` logits at N=4096, C=32000,
    and at N=64, C=10 (tiny: per-call overhead, timed over many calls);
(b) ``funcloss.linear_cross_entropy`` vs the naive ``F.cross_entropy(h @ W.T, y)`` and torch's
    chunked ``F.linear_cross_entropy(..., options=LinearCrossEntropyOptions())``, over a sweep
    of vocabulary sizes V at N=4096, H=512;

then prints a table of medians and of funcloss's ratios (below 1: funcloss is faster or leaner),
and writes a plot of (b)'s time, time relative to naive and memory against V
(``--plot``, default ``benchmark.png``; docs/benchmark.png is one full run). ``--quick`` uses
small sizes and finishes in seconds (tests/test_benchmark.py runs it); the full run takes a few
minutes. Absolute times on a shared machine drift with its load: compare the ratios. A ratio
is the median over rounds of funcloss's time (memory) over the contender's in the same round:
the contenders of one round run back to back, so a slow phase of the machine cancels out of it,
where it would not out of a ratio of two separately taken medians. The tiny case runs many short
rounds (50 calls each) for the same reason.

Peak memory: the resident-set high-water mark of this process, reset before every run through
``/proc/self/clear_refs`` (Linux) after returning freed memory to the OS (``malloc_trim``), so
each run's peak is its own: ``peak = VmHWM after - VmRSS before``. It sees every allocation
(torch's CPU allocator is malloc) and needs no subprocess; elsewhere memory shows as ``nan``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import funcloss

# The paired, interleaved timing and the peak-memory meter shared with benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _paired import PeakMemory, Samples, interleaved
from _paired import paired_ratio as _paired_ratio


def medians(samples: Samples) -> dict[str, tuple[float, float]]:
    """Median (seconds, MiB) per contender."""
    return {
        name: (statistics.median(s for s, _ in runs), statistics.median(m for _, m in runs))
        for name, runs in samples.items()
    }


def paired_ratio(samples: Samples, name: str, field: int, over: str = "funcloss") -> float:
    """Median over rounds of ``over``'s seconds (``field=0``) or MiB (1) over ``name``'s."""
    return _paired_ratio(samples, over, name, field)


def step(loss_fn: Callable[[], torch.Tensor], *leaves: torch.Tensor) -> Callable[[], None]:
    """A training step: forward, backward, and drop the gradients again."""

    def run() -> None:
        loss_fn().backward()
        for leaf in leaves:
            leaf.grad = None

    return run


def repeated(fn: Callable[[], None], calls: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(calls):
            fn()

    return run


def cross_entropy_case(n: int, c: int, calls: int = 1) -> dict[str, Callable[[], None]]:
    logits = torch.randn(n, c, requires_grad=True)
    target = torch.randint(0, c, (n,))
    return {
        "funcloss": repeated(step(lambda: funcloss.cross_entropy(logits, target), logits), calls),
        "F.cross_entropy": repeated(step(lambda: F.cross_entropy(logits, target), logits), calls),
    }


def linear_case(n: int, h: int, v: int) -> dict[str, Callable[[], None]]:
    hidden = torch.randn(n, h, requires_grad=True)
    weight = (torch.randn(v, h) / h**0.5).requires_grad_()
    target = torch.randint(0, v, (n,))
    options = torch.nn.LinearCrossEntropyOptions()
    return {
        "funcloss": step(
            lambda: funcloss.linear_cross_entropy(hidden, weight, target), hidden, weight
        ),
        "naive": step(lambda: F.cross_entropy(hidden @ weight.T, target), hidden, weight),
        "torch chunked": step(
            lambda: F.linear_cross_entropy(hidden, weight, target, options=options), hidden, weight
        ),
    }


def memory_ratio(samples: Samples, name: str) -> str:
    # Below 1 MiB the resident-set counter (pages) says nothing.
    if min(mib for _, mib in samples[name]) < 1:
        return "n/a"
    return f"{paired_ratio(samples, name, 1):.2f}x"


def row(label: str, samples: Samples, scale: float = 1.0) -> str:
    cells = [f"{label:<28}"]
    for name, (seconds, mib) in medians(samples).items():
        cells.append(f"{name} {seconds * scale * 1e3:9.3f} ms {mib:8.1f} MiB")
    ratios = [
        f"{paired_ratio(samples, name, 0):.2f}x time, {memory_ratio(samples, name)} mem vs {name}"
        for name in samples
        if name != "funcloss"
    ]
    return " | ".join(cells) + "\n" + " " * 30 + "funcloss: " + "; ".join(ratios)


def plot(path: Path, title: str, sizes: list[int], samples: list[Samples]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [medians(s) for s in samples]
    figure, (time_axis, ratio_axis, memory_axis) = plt.subplots(1, 3, figsize=(15, 4))
    for name in results[0]:
        time_axis.plot(sizes, [r[name][0] for r in results], marker="o", label=name)
        ratio = [paired_ratio(r, "naive", 0, over=name) for r in samples]
        ratio_axis.plot(sizes, ratio, marker="o", label=name)
        memory_axis.plot(sizes, [r[name][1] for r in results], marker="o", label=name)
    time_axis.set(xlabel="vocabulary size V", ylabel="forward + backward (s)", title="Time")
    ratio_axis.set(
        xlabel="vocabulary size V", ylabel="time / naive's time", title="Time relative to naive"
    )
    memory_axis.set(xlabel="vocabulary size V", ylabel="peak extra memory (MiB)", title="Memory")
    for axis in (time_axis, ratio_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for tests")
    parser.add_argument("--plot", type=Path, default=Path("benchmark.png"))
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.quick:
        big, tiny, (n, h), sizes, repeats = (256, 2000), (64, 10, 5), (256, 64), [500, 2000], 2
    else:
        big, tiny, (n, h), sizes, repeats = (
            (4096, 32000),
            (64, 10, 50),
            (4096, 512),
            [4000, 8000, 16000, 32000],
            5,
        )
    repeats = args.repeats or repeats
    memory = PeakMemory()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} repeats")
    print("(a) cross_entropy, forward + backward on (N, C) logits")
    print(row(f"N={big[0]}, C={big[1]}", interleaved(cross_entropy_case(*big), repeats, memory)))
    n_tiny, c_tiny, calls = tiny
    result = interleaved(cross_entropy_case(n_tiny, c_tiny, calls), 8 * repeats, memory)
    print(row(f"N={n_tiny}, C={c_tiny} (per call)", result, scale=1 / calls))
    print(f"(b) linear_cross_entropy, forward + backward, N={n}, H={h}")
    results = []
    for v in sizes:
        results.append(interleaved(linear_case(n, h, v), repeats, memory))
        print(row(f"V={v}", results[-1]))
    title = (
        f"linear cross-entropy forward + backward, N={n}, H={h}, fp32, torch {torch.__version__},"
        f" {torch.get_num_threads()} CPU threads (medians of {repeats})"
    )
    plot(args.plot, title, sizes, results)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
