"""benchmarks/per_sample.py --quick runs every case, checks the contenders' per-sample
gradients against each other and prints a row per loss (no timing checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import per_sample  # noqa: E402


def test_per_sample_benchmark_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "per_sample.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert sorted(row[0] for row in rows) == sorted(per_sample.CASES), result.stdout
    for row in rows:
        assert row[-1].endswith("x") and float(row[-1][:-1]) > 0, row  # a speed-up
        assert row[-2].endswith("x") and float(row[-2][:-1]) > 0, row
