"""funcloss's own losses, verified through the public kit: check_loss on every registry spec.

Every spec in tests/registry.py (so every spec merged later too) runs through
:func:`funcloss.testing.check_loss` against its oracle, with its module, on a couple of drawn
cases; the compile properties run on the first case of each spec only (they dominate the time).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funcloss.testing import check_loss

from .registry import SPECS, LossSpec

COMPILE = ("compile", "compile_grad", "compile_vmap_grad")
_compiled: set[str] = set()


@pytest.mark.parametrize("spec", SPECS, ids=[spec.id for spec in SPECS])
@settings(max_examples=2)
@given(data=st.data())
def test_check_loss(spec: LossSpec, data: st.DataObject) -> None:
    case = data.draw(spec.cases(), label="case")
    reduction = data.draw(st.sampled_from(spec.reductions), label="reduction")
    skip = COMPILE if spec.id in _compiled else ()
    if not spec.gradient_of_value:  # finite differences of the value do not apply
        skip = (*skip, "gradcheck", "gradgradcheck")
    report = check_loss(
        spec.fn,
        spec.oracle,
        *case.args,
        kwargs={**case.kwargs, "reduction": reduction},
        wrt=spec.wrt,
        module=spec.module,
        reference_second_order=spec.oracle_second_order,
        skip=skip,
    )
    _compiled.add(spec.id)
    # Every funcloss loss has forward mode, a module, and every transform.
    assert set(report.checked) | set(skip) == {
        "value",
        "jacrev",
        "gradcheck",
        "jacfwd",
        "hessian",
        "gradgradcheck",
        "vmap",
        "compile",
        "compile_grad",
        "compile_vmap_grad",
        "module",
    }, str(report)
