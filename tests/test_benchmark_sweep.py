"""benchmarks/sweep.py --quick runs every loss at every (tiny) shape in fp32 and bf16, writes its
table and JSON, and funcloss agrees with torch in every cell it times (no timing checks: the
numbers of a smoke run mean nothing)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import funcloss

from .helpers import ROOT, run_script

sys.path.insert(0, str(ROOT / "benchmarks"))

import sweep


def test_sweep_covers_every_loss_shared_with_torch() -> None:
    shared = {name for name in funcloss.__all__ if callable(getattr(F, name, None))}
    assert {case.loss for case in sweep.CASES} == shared
    assert len(shared) == 22


def test_sweep_quick(tmp_path: Path) -> None:
    run_script("benchmarks/sweep.py", "--quick", "--out", str(tmp_path))
    records = json.loads((tmp_path / "sweep.json").read_text())["cells"]
    seen = {(r["label"], r["shape"], r["dtype"]): r for r in records}
    expected = [
        (case.label, shape.label, dtype)
        for case, shape in sweep.cells(quick=True)
        for dtype in ("float32", "bfloat16")
    ]
    assert sorted(seen) == sorted(expected)
    table = (tmp_path / "table.md").read_text()
    for (label, shape, dtype), r in seen.items():
        assert f"| {label} | {shape} | {dtype} |" in table
        if r["status"] == "skipped":  # only where torch has no CPU kernel for the dtype
            assert r["reason"].startswith("torch: ") and "not implemented" in r["reason"], r
            assert dtype == "bfloat16", r
            continue
        assert r["status"] == "ok", r  # funcloss's value and gradients agree with torch's
        assert math.isfinite(r["time_ratio"]) and r["time_ratio"] > 0, r
        assert r["funcloss_seconds"] > 0 and r["torch_seconds"] > 0, r
    assert "cells over target" in (tmp_path / "sweep.md").read_text()


def test_arbiter_says_which_contender_is_off() -> None:
    """Where funcloss and torch differ, the float64 run of torch's op decides: a result made
    wrong on purpose is the far one, torch's float32 result the near one."""
    case = next(c for c in sweep.CASES if c.loss == "mse_loss" and not c.variant)
    args, kwargs = sweep._cast(
        case.make({"n": 64, "c": 10}, torch.Generator().manual_seed(0)), torch.float32
    )
    leaves = [args[i].requires_grad_() for i in case.wrt]
    exact = sweep._run_once(F.mse_loss, args, kwargs, leaves)
    wrong = [exact[0] * (1 + 1e-3), exact[1]]
    errors = sweep._arbiter(args, kwargs, case, {"funcloss": wrong, "torch": exact})
    assert 0.9e-3 < errors["funcloss_error"] < 1.1e-3, errors
    assert errors["torch_error"] < 1e-6, errors
    record = {"status": "differs", "difference": 1e-3, **errors}
    assert "from float64: funcloss 1e-03" in sweep._check(record)
