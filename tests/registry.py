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

import torch
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
        masked_mean: ``(case, loss, where) -> mean``: the oracle's ``"mean"`` under a mask, from
            the oracle's unreduced ``loss`` and ``where`` (bool, ``loss``'s shape). The default,
            :func:`count_mean`, divides by the number of included elements; weighted means
            (class ``weight``, ``l1_loss(weight=)``) and ``ctc_loss`` give their own.
        where_arg_mask: ``(where, position, case) -> mask | None``: ``where`` (the unreduced
            loss's shape) mapped onto ``case.args[position]``, marking the entries that only
            masked elements read (the mask tests put inf/NaN there); ``None``: none of them.
            The default, :func:`default_arg_mask`, handles arguments of the loss's shape and
            of that shape with a class dimension at 1.
        anchor: for a loss beyond torch, the library people take it from today, adapted to
            ``fn``'s call signature (importing it lazily, through ``tests/anchors.py``), or
            ``None``. The transform-support table measures it beside funcloss.
        where_oracle: ``(case, where, reduction) -> value``: the oracle's answer under a mask
            (``where`` of the unreduced loss's shape), for losses whose mask changes the loss of
            the elements it keeps (batch losses, where a masked sample leaves the batch: no
            longer anyone's positive or negative); ``None``: the oracle's unreduced loss with
            the masked elements zeroed, summed, or ``masked_mean``-ed.
        anchor_name: the name of the table's other column: ``"torch"`` (the oracle is torch's
            own loss) or the anchor's library (``"monai"``); ``None`` for a loss beyond torch
            with no anchor in torch (the table shows funcloss's cells only).
        limit: the float64 limit at an infinite input, with the oracle's call signature, for a
            loss whose limit the oracle's ``±1e300``/``±1e150`` stand-ins cannot resolve (a
            difference of two terms that both grow with the stand-in, rounded away at 1e150 and
            inf - inf at 1e300); ``None``: the stand-ins decide (test_edges_registry.py).
        gradient_of_value: the loss's gradient is the derivative of its value. ``False`` for a
            loss whose gradient by definition treats a factor as a constant
            (``complete_box_iou_loss``'s detached trade-off weight): finite differences of the
            value (gradcheck, gradgradcheck) do not apply; its oracle detaches the same factor.
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
    masked_mean: Callable[[Case, Tensor, Tensor], Tensor] = field(
        default=lambda case, loss, where: count_mean(loss, where)
    )
    where_arg_mask: Callable[[Tensor, int, Case], Tensor | None] = field(
        default=lambda where, position, case: default_arg_mask(where, case.args[position])
    )
    anchor: Callable[..., Tensor] | None = None
    anchor_name: str | None = "torch"
    gradient_of_value: bool = True
    where_oracle: Callable[[Case, Tensor, str], Tensor] | None = None
    limit: Callable[..., Tensor] | None = None

    def __repr__(self) -> str:
        return self.id


def count_mean(loss: Tensor, where: Tensor) -> Tensor:
    """The mean of ``loss`` over the entries ``where`` includes; 0 when it includes none."""
    count = where.sum()
    total = torch.where(where, loss, 0.0).sum()
    return total / count if count > 0 else total * 0


def weighted_count_mean(loss: Tensor, where: Tensor, weights: Tensor) -> Tensor:
    """``sum(loss) / sum(weights)`` over the included entries (``loss`` already weighted, as
    torch's class-weighted ``"none"``); 0 when the included weights sum to 0."""
    denominator = torch.where(where, weights, 0.0).sum()
    total = torch.where(where, loss, 0.0).sum()
    return total / denominator if denominator != 0 else total * 0


def default_arg_mask(where: Tensor, arg: object) -> Tensor | None:
    """``where`` on an argument of the loss's shape, or of that shape with a class dimension at
    1 (``(N, C, d1, ...)`` against ``(N, d1, ...)``; ``(C,)`` against ``()``)."""
    if not isinstance(arg, Tensor) or not arg.is_floating_point():
        return None
    if arg.shape == where.shape:
        return where
    if arg.dim() == where.dim() + 1:
        if where.dim() == 0:
            return where.expand(arg.shape)
        if arg.shape[:1] + arg.shape[2:] == where.shape:
            return where.unsqueeze(1).expand(arg.shape)
    return None


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
