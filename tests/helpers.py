"""Shared test helpers: closures over a case, oracle Jacobians, batching."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .registry import Case, LossSpec

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: int = 300, cwd: Path | None = None) -> str:
    """The standard output of the repository's ``script`` (``benchmarks/sweep.py``, ...) run
    with ``args`` in a fresh interpreter, funcloss from this checkout; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# float64 everywhere in the matrix: tolerances are for rounding, not for approximation.
RTOL, ATOL = 1e-6, 1e-9


def assert_close(actual: Any, expected: Any, what: str = "", rtol: float = RTOL) -> None:
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=ATOL, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


def as_function_of(
    fn: Callable[..., Tensor], case: Case, position: int, reduction: str, total: bool = False
) -> Callable[[Tensor], Tensor]:
    """``x -> fn(*args with args[position] = x, **kwargs, reduction=...)`` (summed if ``total``)."""

    def f(x: Tensor) -> Tensor:
        args = list(case.args)
        args[position] = x
        out = fn(*args, **case.kwargs, reduction=reduction)
        return out.sum() if total else out

    return f


def ours(spec: LossSpec, case: Case, position: int, reduction: str, total: bool = False):
    return as_function_of(spec.fn, case, position, reduction, total)


def oracle(spec: LossSpec, case: Case, position: int, reduction: str, total: bool = False):
    return as_function_of(spec.oracle, case, position, reduction, total)


def oracle_jacobian(spec: LossSpec, case: Case, position: int, reduction: str) -> Tensor:
    """The oracle's Jacobian by plain reverse-mode autograd (no torch.func involved)."""
    f = oracle(spec, case, position, reduction)
    return torch.autograd.functional.jacobian(f, case.args[position], vectorize=False)


def oracle_hessian(spec: LossSpec, case: Case, position: int, reduction: str) -> Tensor:
    f = oracle(spec, case, position, reduction, total=True)
    return torch.autograd.functional.hessian(f, case.args[position])


def variant(value: Any) -> Any:
    """A second, different batch member of the same kind: tensors flipped along their last dim.

    Flipping keeps every domain a loss checks (ranges, row sums along other dims, class ids).
    """
    if isinstance(value, Tensor) and value.dim() > 0:
        return value.flip(-1)
    return value


def stacked(case: Case) -> tuple[tuple[Any, ...], tuple[int | None, ...]]:
    """Batch two problems along a new dim 0: ``case`` and its :func:`variant`."""
    args, dims = [], []
    for a in case.args:
        if isinstance(a, Tensor):
            args.append(torch.stack([a, variant(a)]))
            dims.append(0)
        else:
            args.append(a)
            dims.append(None)
    return tuple(args), tuple(dims)


def unbatch(args: tuple[Any, ...], dims: tuple[int | None, ...], i: int) -> tuple[Any, ...]:
    return tuple(a if d is None else a.select(d, i) for a, d in zip(args, dims, strict=True))


def batch_size(args: tuple[Any, ...], dims: tuple[int | None, ...]) -> int:
    return next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
