"""Time funcloss's catalogue losses (beyond torch), forward + backward, against their anchors.

    PYTHONPATH=$PWD python benchmarks/catalogue.py [--quick] [--threads 2] [--rounds R]
        [--only NAME ...]

Each family's benchmark cases live in ``benchmarks/catalogue_<family>.py`` (a list ``BENCHES``
of :class:`Bench`): the loss, a realistic size, the inputs, and the contenders — funcloss and
each anchor library that runs here (kornia, MONAI, timm, smp, pytorch-metric-learning, ...),
adapted to funcloss's conventions, or a naive torch composition where no anchor runs. For every
case the script first checks that each contender's value agrees with funcloss's (an anchor that
disagrees is marked ``differs`` and is not a "correct anchor"), then times all contenders side by
side, interleaved (benchmarks/_paired.py), and prints funcloss's time and peak extra memory over
each contender's, and over the fastest correct one. ``--quick`` uses tiny sizes and few rounds (a
smoke test run by tests/test_benchmark_catalogue.py); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _paired import PeakMemory, interleaved, median_seconds, paired_ratio

Inputs = tuple[tuple, dict]


@dataclass(frozen=True)
class Bench:
    """One benchmark case.

    Attributes:
        loss: the funcloss function's name.
        size: a label for the size (``"N=4096, C=1000"``).
        make: ``(quick, generator) -> (args, kwargs)``, float32; ``quick`` asks for tiny inputs.
        contenders: name -> loss with funcloss's call signature; ``"funcloss"`` is one of them.
        wrt: positions in ``args`` that require grad (the scores, as in training).
    """

    loss: str
    size: str
    make: Callable[[bool, torch.Generator], Inputs]
    contenders: dict[str, Callable[..., torch.Tensor]]
    wrt: tuple[int, ...] = (0,)
    label: str = field(default="")


def load_benches() -> list[Bench]:
    folder = Path(__file__).resolve().parent
    benches: list[Bench] = []
    for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        if info.name.startswith("catalogue_"):
            benches.extend(importlib.import_module(info.name).BENCHES)
    return benches


def _step(loss: Callable[..., torch.Tensor], bench: Bench, inputs: Inputs, calls: int):
    args, kwargs = inputs
    args = tuple(
        a.detach().clone().requires_grad_() if i in bench.wrt else a for i, a in enumerate(args)
    )
    leaves = [args[i] for i in bench.wrt]

    def run() -> None:
        for _ in range(calls):
            loss(*args, **kwargs).sum().backward()
            for leaf in leaves:
                leaf.grad = None

    return run


def agrees(bench: Bench, inputs: Inputs) -> dict[str, bool]:
    args, kwargs = inputs
    with torch.no_grad():
        ours = bench.contenders["funcloss"](*args, **kwargs).double()
        result = {}
        for name, loss in bench.contenders.items():
            try:
                value = loss(*args, **kwargs).double()
                result[name] = bool(torch.allclose(value, ours, rtol=1e-3, atol=1e-5))
            except Exception:  # an anchor that fails on the case is not a correct one
                result[name] = False
    return result


def compare(bench: Bench, quick: bool, calls: int, rounds: int, meter: PeakMemory) -> list[str]:
    inputs = bench.make(quick, torch.Generator().manual_seed(0))
    correct = agrees(bench, inputs)
    runnable = {n: f for n, f in bench.contenders.items() if correct[n] or n == "funcloss"}
    contenders = {n: _step(f, bench, inputs, calls) for n, f in runnable.items()}
    samples = interleaved(contenders, rounds, meter, memory=calls == 1)
    ours_s = median_seconds(samples, "funcloss") / calls
    rows = []
    name = bench.loss + bench.label
    anchors = [n for n in bench.contenders if n != "funcloss"]
    for anchor in anchors:
        if not correct[anchor]:
            rows.append(f"{name:32s} {bench.size:22s} {anchor:28s} {'differs':>8s}")
            continue
        t = paired_ratio(samples, "funcloss", anchor, 0)
        m = paired_ratio(samples, "funcloss", anchor, 1) if calls == 1 else float("nan")
        rows.append(f"{name:32s} {bench.size:22s} {anchor:28s} {t:7.2f}x {m:7.2f}x")
    good = [a for a in anchors if correct[a]]
    if good:
        fastest = min(good, key=lambda a: median_seconds(samples, a))
        t = paired_ratio(samples, "funcloss", fastest, 0)
        rows.append(
            f"{name:32s} {bench.size:22s} {'fastest correct: ' + fastest:28s} {t:7.2f}x "
            f"{'':8s} {ours_s * 1e3:9.3f} ms"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=1, help="calls per timed round")
    parser.add_argument("--only", nargs="*", default=None, help="loss names to run")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by this thread's CPU time (1 thread: robust to other load on the machine)",
    )
    options = parser.parse_args()
    if options.cpu_time:
        options.threads = 1
        PeakMemory.timer = staticmethod(time.thread_time)
    torch.set_num_threads(options.threads)
    rounds = options.rounds or (3 if options.quick else 20)
    meter = PeakMemory()
    clock = "CPU time" if options.cpu_time else "wall time"
    print(
        f"torch {torch.__version__}, {options.threads} threads ({clock}), fp32, forward + backward"
    )
    print(f"{'loss':32s} {'size':22s} {'funcloss over':28s} {'time':>8s} {'memory':>8s}")
    for bench in load_benches():
        if options.only and bench.loss not in options.only:
            continue
        for row in compare(bench, options.quick, options.calls, rounds, meter):
            print(row, flush=True)


if __name__ == "__main__":
    main()
