"""The speed sweep: every loss funcloss shares with torch.nn.functional, against torch (issue 15).

    PYTHONPATH=$PWD python benchmarks/sweep.py [--quick] [--only NAME ...] [--dtype fp32 bf16]
        [--shape TEXT] [--rounds R] [--threads T] [--out DIR]

For each of the 22 losses (cross_entropy with and without label smoothing, class weight and
ignore_index, for class-index and probability targets, in (N, C) and K-dim form; ctc_loss;
linear_cross_entropy against torch's chunked ``F.linear_cross_entropy``), at the shapes of the
issue's grid, in fp32 and bf16, one cell:

1. builds the inputs (the case builders of benchmarks/regression_speed.py,
   logistic_margin_speed.py and ctc_loss.py where one exists), unless its estimated peak would not
   fit in the memory available now (the cell is then skipped, with the reason printed);
2. runs one forward + backward of each and checks that funcloss's value and gradients agree with
   torch's (largest difference at most ``TOLERANCE[dtype]`` times the largest magnitude of
   torch's; else the cell is marked ``differs``, and both are measured against torch's op in
   float64 to say which is off); a dtype torch has no CPU kernel for is skipped;
3. times forward + backward of both, paired and interleaved (benchmarks/_paired.py: median over
   rounds of the per-round ratio funcloss / torch), with the peak extra memory of large cells.

Small cells (at most 2**16 elements) are per-call overhead: each round runs many calls. With one
thread (the default) the clock is this thread's CPU time, steadier on a loaded machine than wall
time; with more, wall time. A noise row times ``F.mse_loss`` against itself. The targets are the
issue's: 1.0x for cross_entropy, 1.5x for ctc_loss, 1.25x for the rest.

It writes to ``--out`` (default ``benchmarks/out/``, not committed): ``sweep.md`` (the summary:
machine, load, cells over target, one row per loss, and the cells over target), ``table.md`` (every
cell), ``sweep.json`` (the raw medians) and, when matplotlib imports, ``sweep.png`` (a heat map of
ratio over target). ``--quick`` runs tiny sizes and one or two rounds (tests/test_benchmark_sweep.py
runs it); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import funcloss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ctc_loss as ctc_bench
import logistic_margin_speed as logistic_bench
import regression_speed as regression_bench
from _paired import PeakMemory, interleaved, median_seconds, paired_ratio

Inputs = tuple[tuple, dict]
Dims = dict[str, int]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# a sanity check that both computed the same thing, not an accuracy test: a few units in the last
# place of a bf16 value (2**-8), and fp32 sums of up to 10**8 terms in another order
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2**-6}
SMALL = 2**16  # elements: at or below, a cell is per-call overhead (many calls per round)
CHUNK = 2**22  # elements compared at a time
RESERVE = 2 * 2**30  # bytes left to the machine's other processes when deciding a cell fits


@dataclass(frozen=True)
class Shape:
    label: str
    dims: Dims


@dataclass(frozen=True)
class Case:
    """One loss (and variant) over its shapes.

    Attributes:
        loss: the name shared by funcloss and torch.nn.functional.
        variant: a label for the options (``"label_smoothing=0.1"``), or ``""``.
        make: ``(dims, generator) -> (args, kwargs)``, fp32 (cast to the cell's dtype later).
        shapes, quick: the full grid and the tiny one of ``--quick``.
        wrt: positions in ``args`` that require grad (the scores and embeddings, as in training).
        target: the issue's ceiling on funcloss's time over torch's (None: no target).
        memory_factor: estimated peak of a call as a multiple of the largest input (fit check).
        ours, theirs: the contenders (default: the functions named ``loss``).
    """

    loss: str
    variant: str
    make: Callable[[Dims, torch.Generator], Inputs]
    shapes: tuple[Shape, ...]
    quick: tuple[Shape, ...]
    wrt: tuple[int, ...] = (0,)
    target: float | None = 1.25
    memory_factor: float = 6.0
    ours: Callable[..., torch.Tensor] | None = None
    theirs: Callable[..., torch.Tensor] | None = None

    @property
    def label(self) -> str:
        return f"{self.loss} ({self.variant})" if self.variant else self.loss

    def contenders(self) -> dict[str, Callable[..., torch.Tensor]]:
        return {
            "funcloss": self.ours or getattr(funcloss, self.loss),
            "torch": self.theirs or getattr(F, self.loss),
        }


def _nc(n: int, c: int) -> Shape:
    return Shape(f"N={n}, C={c}", {"n": n, "c": c})


ELEMENTWISE = (_nc(64, 10), _nc(8192, 1000))
ELEMENTWISE_QUICK = (_nc(8, 5), _nc(64, 20))


# -- builders: the existing benchmarks' where they have one ------------------------------------


def _logistic(name: str) -> Callable[[Dims, torch.Generator], Inputs]:
    problem = logistic_bench.CASES[name][0]
    return lambda d, g: problem(d["n"], d["c"], g)


def _regression(name: str, **kwargs: object) -> Callable[[Dims, torch.Generator], Inputs]:
    pair = regression_bench.CASES[name][0]

    def make(d: Dims, g: torch.Generator) -> Inputs:
        torch.manual_seed(g.initial_seed())  # regression_speed's builders draw from the global one
        return pair(d["n"], d["c"]), dict(kwargs)

    return make


def _gaussian(d: Dims, g: torch.Generator) -> Inputs:
    (input, target), _ = _regression("gaussian_nll_loss")(d, g)
    return (input, target, torch.rand(d["n"], d["c"], generator=g) + 0.5), {}


def _log_probabilities(d: Dims, g: torch.Generator) -> Inputs:
    (logits, target), kwargs = _logistic("multi_margin_loss")(d, g)  # class-index targets
    return (logits.log_softmax(-1), target), kwargs


def _two_scores(d: Dims, g: torch.Generator) -> Inputs:
    (x1, signs), _ = _logistic("soft_margin_loss")(d, g)
    return (x1, torch.randn(d["n"], d["c"], generator=g), signs), {}


def _two_embeddings(d: Dims, g: torch.Generator) -> Inputs:
    n, c = d["n"], d["c"]
    signs = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    return (torch.randn(n, c, generator=g), torch.randn(n, c, generator=g), signs), {}


def _triplets(d: Dims, g: torch.Generator) -> Inputs:
    return tuple(torch.randn(d["n"], d["c"], generator=g) for _ in range(3)), {}


def _cross_entropy(probabilities: bool, option: str) -> Callable[[Dims, torch.Generator], Inputs]:
    def make(d: Dims, g: torch.Generator) -> Inputs:
        n, c = d["n"], d["c"]
        spatial = (d["h"], d["w"]) if "h" in d else ()
        logits = torch.randn(n, c, *spatial, generator=g)
        kwargs: dict = {}
        if probabilities:
            target = torch.randn(n, c, *spatial, generator=g).softmax(1)
        else:
            target = torch.randint(0, c, (n, *spatial), generator=g)
        if option == "label_smoothing":
            kwargs["label_smoothing"] = 0.1
        elif option == "weight":
            kwargs["weight"] = torch.rand(c, generator=g) + 0.5
        elif option == "ignore_index":  # one target in eight ignored
            ignored = torch.rand(target.shape, generator=g) < 0.125
            target = target.masked_fill(ignored, -100)
            kwargs["ignore_index"] = -100
        return (logits, target), kwargs

    return make


def _ctc(d: Dims, g: torch.Generator) -> Inputs:
    return ctc_bench._problem(d["t"], d["n"], d["c"], d["s"]), {}


def _after_log_softmax(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``loss`` of ``log_softmax(logits)``, as benchmarks/ctc_loss.py times it: torch's ctc
    gradient is right only through the log-softmax (not for log-probabilities off the simplex,
    which ``gradcheck`` of ``F.ctc_loss`` shows)."""

    def on_logits(logits: torch.Tensor, *args: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return loss(logits.log_softmax(-1), *args, **kwargs)

    return on_logits


def _linear(d: Dims, g: torch.Generator) -> Inputs:
    n, h, v = d["n"], d["h"], d["v"]
    hidden = torch.randn(n, h, generator=g)
    weight = torch.randn(v, h, generator=g) / h**0.5
    return (hidden, weight, torch.randint(0, v, (n,), generator=g)), {}


def _torch_linear(*args: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """torch's chunked path (its default, ``options=None``, is the naive one)."""
    return F.linear_cross_entropy(*args, options=torch.nn.LinearCrossEntropyOptions(), **kwargs)


CE_SHAPES = tuple(_nc(n, c) for n in (64, 4096) for c in (10, 1000, 32000, 128000))
CE_QUICK = tuple(_nc(n, c) for n in (4, 16) for c in (3, 12))
K_DIM = Shape("N=8, C=21, 128x128", {"n": 8, "c": 21, "h": 128, "w": 128})
K_DIM_QUICK = Shape("N=2, C=3, 4x4", {"n": 2, "c": 3, "h": 4, "w": 4})
CE_OPTIONS = {
    False: ("", "label_smoothing", "weight", "ignore_index"),
    True: ("", "label_smoothing", "weight"),
}


def _cases() -> list[Case]:
    def elementwise(loss: str, make, variant: str = "", **fields) -> Case:
        return Case(loss, variant, make, ELEMENTWISE, ELEMENTWISE_QUICK, **fields)

    cases = [
        elementwise("mse_loss", _regression("mse_loss")),
        elementwise("l1_loss", _regression("l1_loss")),
        elementwise("huber_loss", _regression("huber_loss")),
        elementwise("smooth_l1_loss", _regression("smooth_l1_loss")),
        elementwise("poisson_nll_loss", _regression("poisson_nll_loss")),
        elementwise("kl_div", _regression("kl_div", reduction="batchmean"), "batchmean"),
        elementwise("gaussian_nll_loss", _gaussian),
        elementwise("binary_cross_entropy", _logistic("binary_cross_entropy")),
        elementwise(
            "binary_cross_entropy_with_logits", _logistic("binary_cross_entropy_with_logits")
        ),
        elementwise("soft_margin_loss", _logistic("soft_margin_loss")),
        elementwise("multilabel_soft_margin_loss", _logistic("multilabel_soft_margin_loss")),
        elementwise("multi_margin_loss", _logistic("multi_margin_loss")),
        elementwise(
            "multi_margin_loss",
            lambda d, g: (_logistic("multi_margin_loss")(d, g)[0], {"p": 2}),
            "p=2",
        ),
        elementwise(
            "multilabel_margin_loss", _logistic("multilabel_margin_loss"), "at most 4 labels"
        ),
        elementwise("nll_loss", _log_probabilities),
        elementwise("margin_ranking_loss", _two_scores, wrt=(0, 1)),
        elementwise("hinge_embedding_loss", _logistic("soft_margin_loss")),
        elementwise("cosine_embedding_loss", _two_embeddings, wrt=(0, 1)),
        elementwise("triplet_margin_loss", _triplets, wrt=(0, 1, 2)),
        elementwise("triplet_margin_with_distance_loss", _triplets, wrt=(0, 1, 2)),
    ]
    for probabilities, options in CE_OPTIONS.items():
        for option in options:
            variant = ", ".join(
                v for v in ("probabilities" if probabilities else "class index", option) if v
            )
            make = _cross_entropy(probabilities, option)
            cases.append(
                Case(
                    "cross_entropy",
                    variant,
                    make,
                    (*CE_SHAPES, K_DIM),
                    (*CE_QUICK, K_DIM_QUICK),
                    target=1.0,
                )
            )
    ctc = (
        Shape(f"T={t}, N={n}, C={c}", {"t": t, "n": n, "c": c, "s": 10})
        for t, n, c in ((50, 16, 10), (200, 64, 50))
    )
    cases.append(
        Case(
            "ctc_loss",
            "through log_softmax",
            _ctc,
            tuple(ctc),
            (Shape("T=12, N=2, C=5", {"t": 12, "n": 2, "c": 5, "s": 3}),),
            target=1.5,
            ours=_after_log_softmax(funcloss.ctc_loss),
            theirs=_after_log_softmax(F.ctc_loss),
        )
    )
    linear = (
        Shape(f"N={n}, H={h}, V={v}", {"n": n, "h": h, "v": v})
        for n, h, v in ((64, 64, 10), (4096, 512, 32000))
    )
    cases.append(
        Case(
            "linear_cross_entropy",
            "vs torch's chunked",
            _linear,
            tuple(linear),
            (Shape("N=16, H=8, V=10", {"n": 16, "h": 8, "v": 10}),),
            wrt=(0, 1),
            theirs=_torch_linear,
        )
    )
    cases.append(
        Case(
            "mse_loss",
            "noise: F.mse_loss vs itself",
            _regression("mse_loss"),
            ELEMENTWISE,
            ELEMENTWISE_QUICK,
            target=None,
            ours=F.mse_loss,
        )
    )
    return cases


CASES = _cases()


def cells(quick: bool, only: list[str] | None = None) -> list[tuple[Case, Shape]]:
    """Every (case, shape) of the grid, ``--only`` loss names kept."""
    return [
        (case, shape)
        for case in CASES
        if not only or case.loss in only
        for shape in (case.quick if quick else case.shapes)
    ]


# -- one cell ----------------------------------------------------------------------------------


def _tensors(inputs: Inputs) -> list[torch.Tensor]:
    args, kwargs = inputs
    return [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]


def _cast(inputs: Inputs, dtype: torch.dtype) -> Inputs:
    def cast(value: object) -> object:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(dtype)
        return value

    args, kwargs = inputs
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


def _available() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 2**62


def _estimate(case: Case, shape: Shape, dtype: torch.dtype) -> int:
    """Bytes a cell's inputs take, plus ``memory_factor`` times the largest (its fit check)."""
    with FakeTensorMode():  # shapes and dtypes only: nothing is allocated
        meta = _cast(case.make(shape.dims, torch.Generator().manual_seed(0)), dtype)
    sizes = [t.numel() * t.element_size() for t in _tensors(meta)]
    return int(sum(sizes) + case.memory_factor * max(sizes))


def _difference(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Largest difference over the largest magnitude of torch's (inf where only one is finite),
    in float64 a chunk at a time (a whole float64 copy of a 2 GiB gradient would not fit)."""
    ours, theirs = ours.reshape(-1), theirs.reshape(-1)
    worst, scale = 0.0, 0.0
    for start in range(0, theirs.numel(), CHUNK):
        a, b = ours[start : start + CHUNK].double(), theirs[start : start + CHUNK].double()
        finite = b.isfinite()
        if not torch.equal(a.isfinite(), finite):
            return math.inf
        if finite.any():
            worst = max(worst, float((a - b)[finite].abs().max()))
            scale = max(scale, float(b[finite].abs().max()))
    return worst / max(scale, 1e-30)


def _run_once(fn: Callable[..., torch.Tensor], args: tuple, kwargs: dict, leaves: list) -> list:
    loss = fn(*args, **kwargs)
    loss.backward()
    grads = [leaf.grad for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    return [loss.detach(), *grads]


def _step(fn: Callable[..., torch.Tensor], args: tuple, kwargs: dict, leaves: list, calls: int):
    def run() -> None:
        for _ in range(calls):
            fn(*args, **kwargs).backward()
            for leaf in leaves:
                leaf.grad = None

    return run


def _arbiter(args: tuple, kwargs: dict, case: Case, results: dict[str, list]) -> dict:
    """Where the two differ, each one's distance from torch's op run in float64 on the same
    inputs (``{"funcloss_error": ..., "torch_error": ...}``, as ``_difference`` measures), or
    ``{}`` where torch has no float64 kernel for it: which of the two is off."""
    args64, kwargs64 = _cast((args, kwargs), torch.float64)
    leaves = [args64[i].detach().requires_grad_() for i in case.wrt]
    args64 = tuple(leaves[case.wrt.index(i)] if i in case.wrt else a for i, a in enumerate(args64))
    try:
        truth = _run_once(case.contenders()["torch"], args64, kwargs64, leaves)
    except (RuntimeError, NotImplementedError):
        return {}
    return {
        f"{name}_error": max(_difference(a, b) for a, b in zip(results[name], truth, strict=True))
        for name in ("funcloss", "torch")
    }


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "n/a"


def _identity(case: Case, shape: Shape, dtype: torch.dtype) -> dict:
    return {
        "loss": case.loss,
        "variant": case.variant,
        "label": case.label,
        "shape": shape.label,
        "dtype": str(dtype).removeprefix("torch."),
        "target": case.target,
    }


def measure(
    case: Case, shape: Shape, dtype: torch.dtype, quick: bool, rounds: int, meter: PeakMemory
) -> dict:
    """One cell: its fit check, the agreement check and the paired timing (a JSON record)."""
    record = {**_identity(case, shape, dtype), "load": _loadavg()}
    need = _estimate(case, shape, dtype)
    if need > _available() - RESERVE:
        record["status"] = "skipped"
        record["reason"] = (
            f"needs ~{need / 2**30:.1f} GiB, {(_available() - RESERVE) / 2**30:.1f} GiB free"
        )
        return record
    args, kwargs = _cast(case.make(shape.dims, torch.Generator().manual_seed(0)), dtype)
    leaves = [args[i].requires_grad_() for i in case.wrt]
    large = max(leaf.numel() for leaf in leaves) > SMALL
    contenders = case.contenders()
    results: dict[str, list] = {}
    first = {}
    for name, fn in contenders.items():

        def check(fn: Callable[..., torch.Tensor] = fn, name: str = name) -> None:
            results[name] = _run_once(fn, args, kwargs, leaves)

        try:
            # a large cell's check run is its first timed round (and its warm-up: a call of
            # seconds has nothing worth warming)
            first[name] = meter.run(check, memory=large)
        except (RuntimeError, NotImplementedError) as error:
            record["status"] = "skipped" if name == "torch" else "error"
            record["reason"] = f"{name}: {str(error).splitlines()[0][:120]}"
            return record
    difference = max(
        _difference(a, b) for a, b in zip(results["funcloss"], results["torch"], strict=True)
    )
    record["difference"] = difference
    record["status"] = "ok" if difference <= TOLERANCE[dtype] else "differs"
    if record["status"] == "differs":
        record.update(_arbiter(args, kwargs, case, results))
    results.clear()
    calls = 1 if large else (2 if quick else 20)
    rounds = rounds if large else rounds * 2
    steps = {name: _step(fn, args, kwargs, leaves, calls) for name, fn in contenders.items()}
    samples = interleaved(steps, rounds - large, meter, memory=large, warmup=False)
    if large:
        samples = {name: [first[name], *runs] for name, runs in samples.items()}
    record.update(
        calls=calls,
        rounds=rounds,
        time_ratio=paired_ratio(samples, "funcloss", "torch", 0),
        funcloss_seconds=median_seconds(samples, "funcloss") / calls,
        torch_seconds=median_seconds(samples, "torch") / calls,
    )
    if large:
        peaks = {name: sorted(mib for _, mib in samples[name]) for name in samples}
        record["funcloss_mib"] = peaks["funcloss"][len(peaks["funcloss"]) // 2]
        record["torch_mib"] = peaks["torch"][len(peaks["torch"]) // 2]
        # below 1 MiB the resident-set counter (pages) says nothing
        if min(peaks["funcloss"][0], peaks["torch"][0]) >= 1:
            record["memory_ratio"] = paired_ratio(samples, "funcloss", "torch", 1)
    return record


def over(record: dict) -> bool:
    return record.get("target") is not None and record.get("time_ratio", 0) > record["target"]


# -- outputs -----------------------------------------------------------------------------------


def _ratio(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:.2f}x"
    return f"**{text}**" if bold else text


def _check(record: dict) -> str:
    if record["status"] == "differs" and "torch_error" in record:
        return (
            f"differs ({record['difference']:.0e}; from float64: funcloss "
            f"{record['funcloss_error']:.0e}, torch {record['torch_error']:.0e})"
        )
    if record["status"] in ("ok", "differs"):
        return f"{record['status']} ({record['difference']:.0e})"
    return f"{record['status']}: {record['reason']}"


def full_table(records: list[dict]) -> str:
    lines = [
        "| loss | shape | dtype | time | target | memory | funcloss ms | torch ms | check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        timed = "time_ratio" in r
        target = _ratio(r["target"]) if r["target"] is not None else "—"
        ms = (
            (f"{r['funcloss_seconds'] * 1e3:.3f}", f"{r['torch_seconds'] * 1e3:.3f}")
            if timed
            else ("—", "—")
        )
        time_ratio = _ratio(r.get("time_ratio"), over(r))
        lines.append(
            f"| {r['label']} | {r['shape']} | {r['dtype']} | {time_ratio} | {target} "
            f"| {_ratio(r.get('memory_ratio'))} | {ms[0]} | {ms[1]} | {_check(r)} |"
        )
    return "\n".join(lines)


def summary_table(records: list[dict]) -> str:
    """One row per loss (and variant): cells over target, and the worst ratio per dtype."""
    dtypes = sorted({r["dtype"] for r in records}, key=lambda d: d != "float32")
    head = " | ".join(f"worst {d} (shape)" for d in dtypes)
    lines = [
        f"| loss | target | over / timed | {head} | peak memory, worst |",
        "|---|---|---|" + "---|" * len(dtypes) + "---|",
    ]
    for label in dict.fromkeys(r["label"] for r in records):
        rows = [r for r in records if r["label"] == label]
        timed = [r for r in rows if "time_ratio" in r]
        target = rows[0]["target"]
        cells = []
        for dtype in dtypes:
            mine = [r for r in timed if r["dtype"] == dtype]
            if mine:
                worst = max(mine, key=lambda r: r["time_ratio"])
                cells.append(f"{_ratio(worst['time_ratio'], over(worst))} ({worst['shape']})")
            else:
                skipped = [r for r in rows if r["dtype"] == dtype]
                cells.append(skipped[0]["reason"] if skipped else "—")
        memories = [r["memory_ratio"] for r in timed if "memory_ratio" in r]
        memory = _ratio(max(memories), max(memories) > 1) if memories else "—"
        count = f"{sum(map(over, timed))} / {len(timed)}" if target is not None else "—"
        lines.append(
            f"| {label} | {_ratio(target) if target else '—'} | {count} | "
            + " | ".join(cells)
            + f" | {memory} |"
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()}"


def summary(records: list[dict], meta: dict) -> str:
    timed = [r for r in records if "time_ratio" in r and r["target"] is not None]
    overs = [r for r in timed if over(r)]
    differs = [r for r in records if r["status"] == "differs"]
    skipped = [r for r in records if r["status"] in ("skipped", "error")]
    noise = [r for r in records if r["target"] is None and "time_ratio" in r]
    text = [
        f"Machine: {meta['machine']}; torch {meta['torch']}, {meta['threads']} thread(s), "
        f"{meta['timer']} time, {meta['rounds']} rounds per large cell (twice that of "
        f"{meta['calls']} calls per small one); load average {meta['load_start']} at the start, "
        f"{meta['load_end']} at the end; {meta['minutes']:.0f} minutes, {meta['date']}.",
        "",
        f"{len(overs)} of {len(timed)} timed cells over target; {len(differs)} differ "
        f"({sum(r.get('funcloss_error', math.inf) < r.get('torch_error', 0) for r in differs)} "
        "where funcloss is the closer to float64); "
        f"{len(skipped)} skipped. Noise floor (torch against itself): "
        + ", ".join(f"{r['dtype']} {r['shape']} {r['time_ratio']:.2f}x" for r in noise)
        + ".",
        "",
        summary_table([r for r in records if r["target"] is not None]),
    ]
    if overs:
        text += ["", "Cells over target:", "", full_table(overs)]
    return "\n".join(text) + "\n"


def heat_map(records: list[dict], path: Path, title: str) -> bool:
    """A heat map of time ratio over target, by loss and shape, one panel per dtype."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm
    except ImportError:
        return False
    records = [r for r in records if r["target"] is not None]
    labels = list(dict.fromkeys(r["label"] for r in records))
    shapes = list(dict.fromkeys(r["shape"] for r in records))
    dtypes = list(dict.fromkeys(r["dtype"] for r in records))
    figure, axes = plt.subplots(
        1,
        len(dtypes),
        figsize=(1 + 0.75 * len(shapes) * len(dtypes), 1.5 + 0.32 * len(labels)),
        squeeze=False,
        sharey=True,
    )
    norm = LogNorm(vmin=0.25, vmax=4)
    for axis, dtype in zip(axes[0], dtypes, strict=True):
        grid = [[math.nan] * len(shapes) for _ in labels]
        for r in records:
            if r["dtype"] == dtype and "time_ratio" in r:
                row, column = labels.index(r["label"]), shapes.index(r["shape"])
                grid[row][column] = r["time_ratio"] / r["target"]
                text = f"{r['time_ratio']:.2f}" + ("≠" if r["status"] == "differs" else "")
                axis.text(column, row, text, ha="center", va="center", fontsize=6)
        image = axis.imshow(grid, cmap="RdYlGn_r", norm=norm, aspect="auto")
        axis.set_xticks(range(len(shapes)), shapes, rotation=60, ha="right", fontsize=7)
        axis.set_yticks(range(len(labels)), labels, fontsize=7)
        axis.set_title(dtype)
    figure.colorbar(image, ax=axes[0].tolist(), label="time ratio / target (above 1: over)")
    figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke test")
    parser.add_argument("--only", nargs="*", default=None, help="loss names to run")
    parser.add_argument("--shape", default=None, help="only the shapes whose label has this")
    parser.add_argument("--dtype", nargs="*", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--rounds", type=int, default=None, help="rounds per large cell")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "out", help="output folder"
    )
    parser.add_argument("--budget", type=float, default=None, help="minutes; later cells skipped")
    parser.add_argument("--render", type=Path, default=None, help="rewrite outputs from a JSON")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    rounds = options.rounds or (1 if options.quick else 5)
    meter = PeakMemory()
    timer = "thread CPU" if options.threads == 1 else "wall"
    if options.threads == 1:
        meter.timer = staticmethod(time.thread_time)
    if options.render:
        data = json.loads(options.render.read_text())
        write(data["cells"], data["meta"], options.out)
        return
    started, load_start = time.time(), _loadavg()
    print(
        f"torch {torch.__version__}, {options.threads} thread(s), {timer} time, load {load_start}"
    )
    grid = [
        (case, shape, DTYPES[d])
        for case, shape in cells(options.quick, options.only)
        for d in options.dtype
        if options.shape is None or options.shape in shape.label
    ]
    # smallest first: under a time budget the cells left out are the few largest
    order = sorted(range(len(grid)), key=lambda i: (_estimate(*grid[i]), i))
    records: list[dict] = [{}] * len(grid)
    meta = {
        "machine": machine(),
        "torch": torch.__version__,
        "threads": options.threads,
        "timer": timer,
        "rounds": rounds,
        "calls": 2 if options.quick else 20,
        "load_start": load_start,
        "quick": options.quick,
    }
    options.out.mkdir(parents=True, exist_ok=True)
    for done, i in enumerate(order):
        case, shape, dtype = grid[i]
        if options.budget and time.time() - started > options.budget * 60:
            record = {**_identity(case, shape, dtype), "status": "skipped"}
            record["reason"] = f"not run: the {options.budget:g}-minute budget was spent"
        else:
            record = measure(case, shape, dtype, options.quick, rounds, meter)
        records[i] = record
        meter.trim()
        ratio = _ratio(record.get("time_ratio"), over(record))
        row = f"{case.label:48s} {shape.label:22s} {record['dtype']:9s} {ratio:>9s}"
        print(f"[{done + 1}/{len(grid)}]", row, _check(record), flush=True)
        partial = [r for r in records if r]
        (options.out / "sweep.json").write_text(json.dumps({"meta": meta, "cells": partial}))
    meta.update(
        load_end=_loadavg(),
        minutes=(time.time() - started) / 60,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    write(records, meta, options.out)


def write(records: list[dict], meta: dict, out: Path) -> None:
    """The JSON, the full table, the summary and (with matplotlib) the heat map, into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"meta": meta, "cells": records}, indent=1))
    (out / "table.md").write_text(full_table(records) + "\n")
    (out / "sweep.md").write_text(summary(records, meta))
    title = f"funcloss / torch, forward + backward, torch {meta['torch']}, {meta['machine']}"
    plotted = heat_map(records, out / "sweep.png", title)
    print(f"wrote {out}/sweep.md, table.md, sweep.json" + (", sweep.png" if plotted else ""))


if __name__ == "__main__":
    main()
