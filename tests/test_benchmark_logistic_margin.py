"""benchmarks/logistic_margin_speed.py --quick runs and prints a row per loss and shape (no
timing checks)."""

from __future__ import annotations

import sys

from .helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

import logistic_margin_speed


def test_logistic_margin_benchmark_quick() -> None:
    out = run_script("benchmarks/logistic_margin_speed.py", "--quick")
    rows = [line.split() for line in out.splitlines()[2:]]
    names = [
        name + label
        for name, (_, variants) in logistic_margin_speed.CASES.items()
        for label in variants
    ]
    assert len(rows) == 2 * len(names), out
    for name in names:
        assert out.count(f"{name} ") >= 2, name
    for row in rows:
        assert row[-4].endswith("x") and float(row[-4][:-1]) > 0, row  # a time ratio
