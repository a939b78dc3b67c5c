"""examples/vocab_parallel.py runs 2 gloo processes and matches the single-process step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed_pool import available

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_vocab_parallel_example() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "vocab_parallel.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "vocab-parallel step matches the single-process step" in result.stdout
    losses = result.stdout.split("loss on each rank: ")[1].split(";")[0].split(", ")
    assert losses[0] == losses[1]
