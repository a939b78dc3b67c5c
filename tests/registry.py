"""The loss registry: one spec per loss drives the transform matrix, gradient and module tests.

Adding a loss means adding a ``LossSpec`` to a ``specs_<family>.py`` module in this folder (each
exports ``SPECS``); ``test_api.py`` fails for a public loss without one.

A spec's ``cases`` strategy yields a :class:`Case` in float64: ``args`` are the loss's forward
tensors (the parameters without a default, in order), ``kwargs`` its config (constructor
arguments of the module) without ``reduction``, which the tests set themselves.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from torch import Tensor, nn


@dataclass(frozen=True)
class Case:
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Case(args={self.args!r}, kwargs={self.kwargs!r})"


@dataclass(frozen=True)
class LossSpec:
    """How to test one loss (or one input mode of a loss).

    Attributes:
        id: test id, ``<function>`` or ``<function>-<mode>``.
        fn: the funcloss function.
        module: its generated module class.
        cases: a strategy of :class:`Case` (float64).
        oracle: an independent reference with ``fn``'s call signature (torch's own loss, or a
            naive float64 formula).
        wrt: positions in ``Case.args`` to differentiate.
        per_sample_dims: ``in_dims`` for ``vmap`` over the natural batch dimension (per-sample
            losses), or ``None`` when slicing it does not give a valid unbatched call.
        oracle_second_order: the oracle supports double backward (torch's CTC and margin
            kernels do not; there second derivatives are checked with gradgradcheck instead).
        reductions: the reductions the loss takes.
        torch_module: torch's class of the same name (``state_dict`` keys must match), if any.
    """

    id: str
    fn: Callable[..., Tensor]
    module: type[nn.Module]
    cases: Callable[[], st.SearchStrategy[Case]]
    oracle: Callable[..., Tensor]
    wrt: tuple[int, ...] = (0,)
    per_sample_dims: tuple[int | None, ...] | None = (0, 0)
    oracle_second_order: bool = True
    reductions: tuple[str, ...] = ("none", "mean", "sum")
    torch_module: type[nn.Module] | None = None

    def __repr__(self) -> str:
        return self.id


def _load() -> tuple[LossSpec, ...]:
    specs: list[LossSpec] = []
    folder = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(folder)]), key=lambda m: m.name):
        if info.name.startswith("specs_"):
            specs.extend(importlib.import_module(f"tests.{info.name}").SPECS)
    return tuple(specs)


SPECS: tuple[LossSpec, ...] = _load()
SPEC_IDS = [spec.id for spec in SPECS]


def call(spec: LossSpec, case: Case, reduction: str | None = None, **override: Any) -> Tensor:
    kwargs = dict(case.kwargs, **override)
    if reduction is not None:
        kwargs["reduction"] = reduction
    return spec.fn(*case.args, **kwargs)


def call_oracle(spec: LossSpec, case: Case, reduction: str | None = None) -> Tensor:
    kwargs = dict(case.kwargs)
    if reduction is not None:
        kwargs["reduction"] = reduction
    return spec.oracle(*case.args, **kwargs)
