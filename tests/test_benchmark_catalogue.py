"""benchmarks/catalogue.py --quick runs every case of every family and prints its rows (no timing
checks: the numbers of a smoke run mean nothing)."""

from __future__ import annotations

import sys

import pytest

from .helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

import catalogue


@pytest.mark.slow
def test_catalogue_benchmark_quick() -> None:
    benches = catalogue.load_benches()
    assert benches, "no benchmarks/catalogue_<family>.py defines BENCHES"
    out = run_script("benchmarks/catalogue.py", "--quick", timeout=600)
    for bench in benches:
        name = bench.loss + bench.label
        rows = [line for line in out.splitlines() if line.startswith(f"{name} ")]
        anchors = [n for n in bench.contenders if n != "funcloss"]
        assert len(rows) >= len(anchors), (name, out)
