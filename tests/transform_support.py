"""Measure which transforms torch's own losses and funcloss's support, and print a table.

Run: ``python -m tests.transform_support [--markdown]``. For every spec in the registry (mean
reduction, one drawn float64 case), each transform is run on the oracle (torch's loss) and on
funcloss's function, and the cell says ``ok``, ``fails`` (an error), ``fallback`` (vmap's slow
per-sample loop) or ``WRONG`` (a result that differs from funcloss's eager derivative, itself
checked against torch by the test suite).
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

from .helpers import as_function_of, stacked
from .registry import SPECS, Case, LossSpec

TRANSFORMS = (
    "vmap",
    "vmap(grad)",
    "jacfwd",
    "hessian",
    "jacrev(jacrev)",
    "compile",
    "compile(vmap(grad))",
)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)


def _runs(spec: LossSpec, case: Case, fn: Callable, name: str) -> dict[str, Callable]:
    position = spec.wrt[0]
    x = case.args[position]
    total = as_function_of(fn, case, position, "mean", total=True)
    args, dims = stacked(case)

    def batched(*a):
        return fn(*a, **case.kwargs, reduction="mean")

    def batched_total(*a):
        return batched(*a).sum()

    def compiled() -> torch.Tensor:
        torch._dynamo.reset()
        leaf = x.detach().requires_grad_()
        value = torch.compile(total, fullgraph=True, backend="aot_eager")(leaf)
        return torch.autograd.grad(value, leaf)[0]

    def compiled_per_sample() -> torch.Tensor:
        torch._dynamo.reset()
        per_sample = vmap(grad(batched_total, argnums=position), in_dims=dims)
        return torch.compile(per_sample, fullgraph=True, backend="aot_eager")(*args)

    return {
        "vmap": lambda: vmap(batched, in_dims=dims)(*args),
        "vmap(grad)": lambda: vmap(grad(batched_total, argnums=position), in_dims=dims)(*args),
        "jacfwd": lambda: jacfwd(total)(x),
        "hessian": lambda: hessian(total)(x),
        "jacrev(jacrev)": lambda: jacrev(jacrev(total))(x),
        "compile": compiled,
        "compile(vmap(grad))": compiled_per_sample,
    }


def _cell(run: Callable[[], torch.Tensor], expected: torch.Tensor) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.filterwarnings("error", "There is a performance drop")
            result = run()
    except Exception as error:
        return "fallback" if "performance drop" in str(error) else "fails"
    return "ok" if _close(result, expected) else "WRONG"


def measure(spec: LossSpec) -> dict[str, tuple[str, str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = spec.cases().example()
    ours_runs = _runs(spec, case, spec.fn, "funcloss")
    other = spec.anchor if spec.anchor is not None else spec.oracle
    if spec.anchor is not None:  # import the library eagerly, outside any transform
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec.anchor(*case.args, **case.kwargs, reduction="mean")
            except Exception:  # an anchor that fails even eagerly (smp's Lovasz on float64)
                pass  # shows as "fails" in every column below
    torch_runs = _runs(spec, case, other, spec.anchor_name or "none")
    cells = {}
    for transform in TRANSFORMS:
        try:
            expected = ours_runs[transform]()
        except Exception:
            theirs = _cell(torch_runs[transform], torch.zeros(())) if spec.anchor_name else "n/a"
            cells[transform] = (theirs, "fails")
            continue
        theirs = _cell(torch_runs[transform], expected) if spec.anchor_name else "n/a"
        cells[transform] = (theirs, _cell(ours_runs[transform], expected))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="substring of the spec ids to measure")
    options = parser.parse_args()
    torch._C._functorch._set_vmap_fallback_enabled(True)
    print("| spec | " + " | ".join(TRANSFORMS) + " |")
    print("|---" * (len(TRANSFORMS) + 1) + "|")
    for spec in SPECS:
        if options.only and options.only not in spec.id:
            continue
        cells = measure(spec)
        name = spec.anchor_name or "n/a"
        row = [
            f"{name} {t} / ours {o}" if t not in ("ok", "n/a") or o != "ok" else "ok"
            for t, o in cells.values()
        ]
        print(f"| `{spec.id}` | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
