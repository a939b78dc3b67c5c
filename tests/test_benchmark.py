"""examples/benchmark.py --quick runs, prints its table and writes its plot (no timing checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_quick(tmp_path: Path) -> None:
    plot = tmp_path / "benchmark.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "benchmark.py"), "--quick", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(a) cross_entropy" in out and "(b) linear_cross_entropy" in out
    for label in ("N=256, C=2000", "N=64, C=10 (per call)", "V=500", "V=2000"):
        assert label in out, out
    assert "x time" in out and "vs naive" in out and "vs torch chunked" in out
    assert out.count("funcloss: ") == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
