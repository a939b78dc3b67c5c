"""Paired, interleaved timing shared by the benchmark scripts.

Contenders run side by side in one process: each round runs every contender once, in turn, in
alternating order, and a ratio is the median over rounds of the per-round ratio, so a slow phase
of a shared machine cancels out of it. Peak memory is the resident-set high-water mark of this
process, reset before each run through ``/proc/self/clear_refs`` after returning freed memory to
the OS (``malloc_trim``): ``VmHWM after - VmRSS before`` (``nan`` off Linux).
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import time
from collections.abc import Callable

MiB = 2**20
Samples = dict[str, list[tuple[float, float]]]


class PeakMemory:
    """Seconds and peak extra resident memory (MiB) of one call."""

    def __init__(self) -> None:
        try:
            self.libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
            self._reset()
        except OSError:
            self.libc = None

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise OSError(key)

    @staticmethod
    def _reset() -> None:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")

    timer = staticmethod(time.perf_counter)

    def trim(self) -> None:
        """Collect garbage and return freed memory to the OS."""
        gc.collect()
        # What survives a collection is live (torch's, the anchors' modules): frozen, later
        # collections skip it (each otherwise scans it all: ~0.3 s, 70 of the 107 CPU
        # seconds of `catalogue.py --quick`). Garbage of later runs is still collected.
        gc.freeze()
        if self.libc is not None:
            self.libc.malloc_trim(0)

    def run(self, fn: Callable[[], object], memory: bool = True) -> tuple[float, float]:
        """``(seconds, peak MiB)`` of one call of ``fn`` (MiB ``nan`` unless ``memory``)."""
        measure = memory and self.libc is not None
        if measure:
            self.trim()
            self._reset()
            before = self._status("VmRSS")
        start = self.timer()
        fn()
        seconds = self.timer() - start
        if not measure:
            return seconds, float("nan")
        return seconds, (self._status("VmHWM") - before) / MiB


def interleaved(
    contenders: dict[str, Callable[[], object]],
    rounds: int,
    meter: PeakMemory,
    memory: bool = True,
    warmup: bool = True,
) -> Samples:
    """Run every contender once per round (after one warm-up call each unless not ``warmup``:
    the caller ran them already), alternating the order."""
    if warmup:
        for fn in contenders.values():
            fn()
    samples: Samples = {key: [] for key in contenders}
    order = list(contenders)
    for round_ in range(rounds):
        for key in order if round_ % 2 == 0 else order[::-1]:
            samples[key].append(meter.run(contenders[key], memory=memory))
    return samples


def paired_ratio(samples: Samples, ours: str, theirs: str, field: int = 0) -> float:
    """Median over rounds of ``ours / theirs`` (field 0: seconds, 1: peak MiB)."""
    pairs = zip(samples[ours], samples[theirs], strict=True)
    return statistics.median((a[field] + 1e-9) / (b[field] + 1e-9) for a, b in pairs)


def median_seconds(samples: Samples, key: str) -> float:
    return statistics.median(seconds for seconds, _ in samples[key])
