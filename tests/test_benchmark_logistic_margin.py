"""benchmarks/logistic_margin_speed.py --quick runs and prints a row per loss and shape (no
timing checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import logistic_margin_speed  # noqa: E402


def test_logistic_margin_benchmark_quick() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "logistic_margin_speed.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    names = [
        name + label
        for name, (_, variants) in logistic_margin_speed.CASES.items()
        for label in variants
    ]
    assert len(rows) == 2 * len(names), result.stdout
    for name in names:
        assert result.stdout.count(f"{name} ") >= 2, name
    for row in rows:
        assert row[-4].endswith("x") and float(row[-4][:-1]) > 0, row  # a time ratio
