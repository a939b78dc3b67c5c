"""The examples run, on CPU, and print what they did."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="error::DeprecationWarning:funcloss"
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart() -> None:
    out = run_example("quickstart.py")
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9, out
    assert "per-sample losses: (256,)" in out
    assert "per-sample gradient norms" in out
    assert "module: CrossEntropyLoss(" in out
