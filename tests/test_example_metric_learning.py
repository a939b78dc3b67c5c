"""examples/metric_learning_digits.py runs and its nearest-neighbour accuracy improves."""

from __future__ import annotations

from .test_examples import run_example


def test_metric_learning_digits() -> None:
    out = run_example("metric_learning_digits.py")
    before = float(out.split("accuracy before training ")[1].split()[0])
    after = float(out.split("accuracy after training ")[1].split()[0])
    assert after > before + 0.1, out
    assert after > 0.9, out
    assert "supcon loss" in out
