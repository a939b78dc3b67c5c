"""The transform matrix (DESIGN.md §5), for every spec in the registry and every reduction.

vmap runs with the slow per-sample fallback disabled (conftest), so a missing batching rule
fails. Derivatives are compared with the oracle's, computed by plain autograd; where the oracle
has no double backward, second derivatives are compared between our transforms and checked by
finite differences (gradgradcheck). ``torch.compile(vmap(grad(f)))`` (aot_eager, one case per
spec) is compared with the oracle's gradient of each stacked problem.
"""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacfwd, jacrev, vmap

from .helpers import (
    assert_close,
    batch_size,
    oracle,
    oracle_hessian,
    oracle_jacobian,
    ours,
    stacked,
    unbatch,
)
from .registry import SPECS, Case, LossSpec, call, call_oracle

MATRIX = [
    pytest.param(spec, reduction, id=f"{spec.id}-{reduction}")
    for spec in SPECS
    for reduction in spec.reductions
]


def _draw(data: st.DataObject, spec: LossSpec) -> Case:
    return data.draw(spec.cases(), label="case")


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@given(data=st.data())
def test_eager_matches_oracle(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _draw(data, spec)
    assert_close(call(spec, case, reduction), call_oracle(spec, case, reduction), "value")


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@given(data=st.data())
def test_vmap_stacked_problems(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _draw(data, spec)
    args, dims = stacked(case)

    def f(*a):
        return spec.fn(*a, **case.kwargs, reduction=reduction)

    batched = vmap(f, in_dims=dims)(*args)
    looped = torch.stack([f(*unbatch(args, dims, i)) for i in range(batch_size(args, dims))])
    assert_close(batched, looped, "vmap vs loop")


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@given(data=st.data())
def test_vmap_per_sample(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    if spec.per_sample_dims is None:
        pytest.skip("slicing the batch dimension does not give an unbatched call")
    case = _draw(data, spec)
    dims = spec.per_sample_dims

    def f(*a):
        return spec.fn(*a, **case.kwargs, reduction=reduction)

    batched = vmap(f, in_dims=dims)(*case.args)
    looped = torch.stack(
        [f(*unbatch(case.args, dims, i)) for i in range(batch_size(case.args, dims))]
    )
    assert_close(batched, looped, "per-sample vmap vs loop")
    # Per-sample gradients, as DP-SGD takes them.
    position = spec.wrt[0]

    def total(*a):
        return f(*a).sum()

    per_sample = vmap(grad(total, argnums=position), in_dims=dims)(*case.args)
    expected = torch.stack(
        [grad(total, argnums=position)(*unbatch(case.args, dims, i)) for i in range(len(looped))]
    )
    assert_close(per_sample, expected, "vmap(grad) vs loop")


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@given(data=st.data())
def test_first_derivatives(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _draw(data, spec)
    for position in spec.wrt:
        x = case.args[position]
        expected = oracle_jacobian(spec, case, position, reduction)
        assert_close(jacrev(ours(spec, case, position, reduction))(x), expected, "jacrev")
        assert_close(jacfwd(ours(spec, case, position, reduction))(x), expected, "jacfwd")
        total = ours(spec, case, position, reduction, total=True)
        x_leaf = x.detach().requires_grad_()
        (expected_grad,) = torch.autograd.grad(
            oracle(spec, case, position, reduction, True)(x_leaf), x_leaf
        )
        assert_close(grad(total)(x), expected_grad, "grad")


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@given(data=st.data())
def test_second_derivatives(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _draw(data, spec)
    for position in spec.wrt:
        x = case.args[position]
        total = ours(spec, case, position, reduction, total=True)
        h_fwd = hessian(total)(x)
        h_rev = jacrev(jacrev(total))(x)
        if spec.oracle_second_order:
            expected = oracle_hessian(spec, case, position, reduction)
            assert_close(h_fwd, expected, "hessian")
            assert_close(h_rev, expected, "jacrev(jacrev)")
        else:
            assert_close(h_fwd, h_rev, "hessian vs jacrev(jacrev)")
            assert torch.autograd.gradgradcheck(total, (x.detach().requires_grad_(),))


@pytest.mark.parametrize(("spec", "reduction"), MATRIX)
@settings(max_examples=2)
@given(data=st.data())
def test_compile_fullgraph(spec: LossSpec, reduction: str, data: st.DataObject) -> None:
    case = _draw(data, spec)
    position = spec.wrt[0]
    torch._dynamo.reset()
    f = ours(spec, case, position, reduction, total=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = case.args[position].detach().requires_grad_()
    value = compiled(x)
    (grad_compiled,) = torch.autograd.grad(value, x)
    x_eager = x.detach().requires_grad_()
    expected = f(x_eager)
    (grad_eager,) = torch.autograd.grad(expected, x_eager)
    assert_close(value, expected, "compiled forward")
    assert_close(grad_compiled, grad_eager, "compiled backward")


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
@settings(max_examples=1)
@given(data=st.data())
def test_compile_vmap_grad(spec: LossSpec, data: st.DataObject) -> None:
    """A compiled per-sample-gradient step, as DP-SGD writes it: compile(vmap(grad(f))) over two
    stacked problems, against the oracle's gradient of each (plain autograd)."""
    case = _draw(data, spec)
    position = spec.wrt[0]
    args, dims = stacked(case)

    def total(*a):
        return spec.fn(*a, **case.kwargs, reduction="mean").sum()

    torch._dynamo.reset()
    per_sample = vmap(grad(total, argnums=position), in_dims=dims)
    actual = torch.compile(per_sample, fullgraph=True, backend="aot_eager")(*args)
    expected = []
    for i in range(batch_size(args, dims)):
        problem = Case(unbatch(args, dims, i), case.kwargs)
        x = problem.args[position].detach().requires_grad_()
        value = oracle(spec, problem, position, "mean", total=True)(x)
        expected.append(torch.autograd.grad(value, x)[0])
    assert_close(actual, torch.stack(expected), "compile(vmap(grad))")


def _inductor_specs() -> list[LossSpec]:
    """Every spec of torch's losses; beyond torch, one spec per function in the families with
    hand-written rules (a ``custom_backward``, which inductor traces away) and one per family of
    pure compositions (aot_eager's compile tests cover every spec): each inductor compile costs
    seconds, and the suite runs on 2 cores."""
    chosen, seen = [], set()
    for spec in SPECS:
        module = sys.modules.get(getattr(spec.fn, "__module__", ""))
        source = inspect.getsource(module) if module is not None else ""
        key = spec.fn if "custom_backward" in source else spec.fn.__module__
        if spec.anchor_name == "torch" or key not in seen:
            seen.add(key)
            chosen.append(spec)
    return chosen


INDUCTOR_SPECS = _inductor_specs()


@pytest.mark.slow
@pytest.mark.parametrize("spec", INDUCTOR_SPECS, ids=[s.id for s in INDUCTOR_SPECS])
@settings(max_examples=1)
@given(data=st.data())
def test_compile_inductor_under_transforms(spec: LossSpec, data: st.DataObject) -> None:
    """compile(grad(f)) and compile(vmap(f)) with inductor: the custom rules are traced away
    there, so the forward itself must differentiate correctly. Both are outputs of one compiled
    function: one Dynamo trace and one inductor compile (each costs seconds) check the two."""
    case = _draw(data, spec)
    position = spec.wrt[0]
    torch._dynamo.reset()
    total = ours(spec, case, position, "mean", total=True)
    x = case.args[position]
    args, dims = stacked(case)

    def f(*a):
        return spec.fn(*a, **case.kwargs, reduction="mean")

    def both(x, args):
        return grad(total)(x), vmap(f, in_dims=dims)(*args)

    compiled_grad, compiled_vmap = torch.compile(both, fullgraph=True)(x, args)
    eager_grad, eager_vmap = both(x, args)
    assert_close(compiled_grad, eager_grad, "compile(grad)")
    assert_close(compiled_vmap, eager_vmap, "compile(vmap)")
