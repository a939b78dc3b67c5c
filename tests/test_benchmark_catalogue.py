"""benchmarks/catalogue.py --quick runs every case of every family and prints its rows (no timing
checks: the numbers of a smoke run mean nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import catalogue  # noqa: E402


@pytest.mark.slow
def test_catalogue_benchmark_quick() -> None:
    benches = catalogue.load_benches()
    assert benches, "no benchmarks/catalogue_<family>.py defines BENCHES"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "catalogue.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    for bench in benches:
        name = bench.loss + bench.label
        rows = [line for line in result.stdout.splitlines() if line.startswith(f"{name} ")]
        anchors = [n for n in bench.contenders if n != "funcloss"]
        assert len(rows) >= len(anchors), (name, result.stdout)
