"""Gradients against independent oracles, for every spec in the registry.

- finite differences: ``gradcheck`` / ``gradgradcheck`` in float64 on our function (our backward
  and double backward against numerical derivatives of our forward);
- float32: values and gradients against the oracle (the transform matrix is float64).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from .helpers import as_function_of
from .registry import SPECS, Case, LossSpec

SPEC_PARAMS = [pytest.param(spec, id=spec.id) for spec in SPECS]


def _to(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def _float32(case: Case) -> Case:
    return Case(
        tuple(_to(a, torch.float32) for a in case.args),
        {k: _to(v, torch.float32) for k, v in case.kwargs.items()},
    )


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@given(data=st.data())
def test_gradcheck_and_gradgradcheck(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    if reduction not in spec.reductions:
        pytest.skip(f"{spec.id} has no {reduction!r} reduction")
    if not spec.gradient_of_value:
        pytest.skip(f"{spec.id}'s gradient is by definition not its value's derivative")
    case = data.draw(spec.cases(), label="case")
    for position in spec.wrt:
        f = as_function_of(spec.fn, case, position, reduction)
        x = case.args[position].detach().requires_grad_()
        assert torch.autograd.gradcheck(f, (x,))
        assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@given(data=st.data())
def test_float32_matches_oracle(spec: LossSpec, data: st.DataObject) -> None:
    case = _float32(data.draw(spec.cases(), label="case"))
    reduction = data.draw(st.sampled_from(spec.reductions), label="reduction")
    for position in spec.wrt:
        results = []
        for fn in (spec.fn, spec.oracle):
            x = case.args[position].detach().requires_grad_()
            value = as_function_of(fn, case, position, reduction)(x)
            (gradient,) = torch.autograd.grad(value.sum(), x)
            results.append((value, gradient))
        (value, gradient), (expected_value, expected_gradient) = results
        torch.testing.assert_close(value, expected_value, rtol=1e-5, atol=1e-5, equal_nan=True)
        torch.testing.assert_close(
            gradient, expected_gradient, rtol=1e-5, atol=1e-5, equal_nan=True
        )
