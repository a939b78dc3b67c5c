"""benchmarks/per_sample.py --quick runs every case, checks the contenders' per-sample
gradients against each other and prints a row per loss (no timing checks)."""

from __future__ import annotations

import sys

from .helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

import per_sample


def test_per_sample_benchmark_quick() -> None:
    out = run_script("benchmarks/per_sample.py", "--quick")
    rows = [line.split() for line in out.splitlines()[2:]]
    assert sorted(row[0] for row in rows) == sorted(per_sample.CASES), out
    for row in rows:
        assert row[-1].endswith("x") and float(row[-1][:-1]) > 0, row  # a speed-up
        assert row[-2].endswith("x") and float(row[-2][:-1]) > 0, row
