"""examples/custom_loss.py runs, passes its checks, and shows check_loss catching the bug."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_loss.py"


def test_custom_loss_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "Hypothesis: check_loss held on 10 drawn examples" in out
    assert "check_loss(gaussian_kernel_loss): 11 properties hold" in out
    failed = "check_loss(wrong_kernel_loss): 3 of 7 properties failed: jacrev, gradcheck, hessian"
    assert failed in out
    assert "fn's result is 4 times the expected one: off by a constant factor" in out
