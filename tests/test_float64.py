"""float64 stays float64: every registry loss, under vmap, jacrev and jacfwd, against its oracle
(float64 torch, or a float64 naive formula) with tight tolerances.

The tolerance, rtol 1e-10 (atol 1e-12): a float64 computation over these small problems
(a few dozen terms) is off by a few ulps, about 1e-15 relative; a single float32 intermediate
(a Python-float ``torch.where`` branch, a ``get_default_dtype()`` mask) puts the result about
1e-8 off (float32's eps is 1.2e-7). 1e-10 sits two orders of magnitude from both.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import jacfwd, jacrev, vmap

import funcloss

from .helpers import batch_size, oracle_jacobian, ours, stacked, unbatch
from .registry import SPECS, Case, LossSpec, call, call_oracle

RTOL, ATOL = 1e-10, 1e-12

MATRIX = [
    pytest.param(spec, reduction, id=f"{spec.id}-{reduction}")
    for spec in SPECS
    for reduction in spec.reductions
]


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.dtype == torch.float64, f"{what}: dtype {actual.dtype}"
    torch.testing.assert_close(
        actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@settings(max_examples=2)
@given(data=st.data())
def test_float64_under_transforms(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case: Case = data.draw(spec.cases(), label="case")
    _close(call(spec, case, reduction), call_oracle(spec, case, reduction), "eager")
    args, dims = stacked(case)

    def f(*a):
        return spec.fn(*a, **case.kwargs, reduction=reduction)

    expected = torch.stack(
        [
            call_oracle(spec, Case(unbatch(args, dims, i), case.kwargs), reduction)
            for i in range(batch_size(args, dims))
        ]
    )
    _close(vmap(f, in_dims=dims)(*args), expected, "vmap")
    for position in spec.wrt:
        x = case.args[position]
        jacobian = oracle_jacobian(spec, case, position, reduction)
        _close(jacrev(ours(spec, case, position, reduction))(x), jacobian, "jacrev")
        _close(jacfwd(ours(spec, case, position, reduction))(x), jacobian, "jacfwd")


def test_cross_entropy_label_smoothing_float64() -> None:
    """The issue's example: float64 logits with label_smoothing, under vmap and jacrev."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, generator=generator, dtype=torch.float64)
    y = torch.tensor([[0, 3, 1], [4, -100, 2]])
    options = {"label_smoothing": 0.1, "reduction": "mean"}
    expected = torch.stack([F.cross_entropy(x[i], y[i], **options) for i in range(2)])
    _close(vmap(lambda a, b: funcloss.cross_entropy(a, b, **options))(x, y), expected, "vmap")
    jacobian = torch.autograd.functional.jacobian(
        lambda a: F.cross_entropy(a, y[1], **options), x[1]
    )
    _close(jacrev(lambda a: funcloss.cross_entropy(a, y[1], **options))(x[1]), jacobian, "jacrev")
