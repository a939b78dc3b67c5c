"""examples/benchmark.py --quick runs, prints its table and writes its plot (no timing checks)."""

from __future__ import annotations

from pathlib import Path

from .helpers import run_script


def test_benchmark_quick(tmp_path: Path) -> None:
    plot = tmp_path / "benchmark.png"
    out = run_script("examples/benchmark.py", "--quick", "--plot", str(plot), cwd=tmp_path)
    assert "(a) cross_entropy" in out and "(b) linear_cross_entropy" in out
    for label in ("N=256, C=2000", "N=64, C=10 (per call)", "V=500", "V=2000"):
        assert label in out, out
    assert "x time" in out and "vs naive" in out and "vs torch chunked" in out
    assert out.count("funcloss: ") == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
