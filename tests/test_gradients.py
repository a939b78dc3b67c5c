"""Gradients against independent oracles, for every spec in the registry.

- finite differences: ``gradcheck`` / ``gradgradcheck`` in float64 on our function (our backward
  and double backward against numerical derivatives of our forward);
- float32: values and gradients against the oracle run in float32, within 1e-5; where the two
  round differently, funcloss must be at least as close to the float64 truth (the oracle in
  float64 on the same inputs) as the oracle's float32 result is (a unit vector's radial gradient
  rounds to 1.5e-5 or to 0 where the truth is 0, when the upstream gradient is near 200). The
  transform matrix is float64.
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


def _cast(case: Case, dtype: torch.dtype) -> Case:
    return Case(
        tuple(_to(a, dtype) for a in case.args),
        {k: _to(v, dtype) for k, v in case.kwargs.items()},
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


def _value_and_gradient(fn: Any, case: Case, position: int, reduction: str) -> tuple:
    x = case.args[position].detach().requires_grad_()
    value = as_function_of(fn, case, position, reduction)(x)
    (gradient,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), gradient


def _assert_float32_close(actual: torch.Tensor, naive: torch.Tensor, truth: torch.Tensor) -> None:
    """Within 1e-5 (absolute and relative) of the naive float32 formula (the oracle run in
    float32), or, where the two round differently, at least as close to the float64 truth as
    the naive formula is, with the same NaNs."""
    try:
        torch.testing.assert_close(actual, naive, rtol=1e-5, atol=1e-5, equal_nan=True)
    except AssertionError:
        if not torch.equal(actual.isnan(), truth.isnan()):
            raise
        both_nan = actual.isnan() & truth.isnan()
        error = (actual.double() - truth).abs().masked_fill(both_nan, 0.0).max()
        naive_error = (naive.double() - truth).abs().masked_fill(both_nan, 0.0).max()
        if not error <= naive_error:  # a NaN in the naive result's error fails too
            raise


@pytest.mark.parametrize("spec", SPEC_PARAMS)
@given(data=st.data())
def test_float32_matches_oracle(spec: LossSpec, data: st.DataObject) -> None:
    case = _cast(data.draw(spec.cases(), label="case"), torch.float32)
    reduction = data.draw(st.sampled_from(spec.reductions), label="reduction")
    for position in spec.wrt:
        actual = _value_and_gradient(spec.fn, case, position, reduction)
        naive = _value_and_gradient(spec.oracle, case, position, reduction)
        truth = _value_and_gradient(spec.oracle, _cast(case, torch.float64), position, reduction)
        for a, n, t in zip(actual, naive, truth, strict=True):
            _assert_float32_close(a, n, t)
