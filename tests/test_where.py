"""``where=`` masks on every loss, driven by the registry (issue 10's property tests).

The oracle is the spec's independent reference run *without* a mask: a masked loss must equal
the oracle's unreduced loss with the masked elements zeroed ("none"), their sum ("sum"), the
spec's ``masked_mean`` of them ("mean"), and, where slicing the batch gives a valid call, the
oracle on the included samples only. Masked inputs holding inf or NaN must leave the value and
every derivative unchanged and finite.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, hessian, jacfwd, vmap

from .helpers import assert_close, batch_size, unbatch
from .registry import SPECS, Case, LossSpec, call, call_oracle

REDUCTIONS = ("none", "mean", "sum")
PER_SAMPLE = [spec for spec in SPECS if spec.per_sample_dims is not None]


def _draw(data: st.DataObject, spec: LossSpec) -> Case:
    return data.draw(spec.cases(), label="case")


def _unreduced_shape(spec: LossSpec, case: Case) -> torch.Size:
    return call_oracle(spec, case, "none").shape


def _draw_mask(
    data: st.DataObject, shape: torch.Size, broadcast: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random mask for ``shape``: (the mask as passed, possibly of a broadcastable shape with
    sizes of 1 and fewer dims; the mask expanded to ``shape``)."""
    passed = list(shape)
    if broadcast and passed:
        for i in range(len(passed)):
            if data.draw(st.booleans(), label=f"broadcast dim {i}"):
                passed[i] = 1
        while passed and passed[0] == 1 and data.draw(st.booleans(), label="drop dim"):
            passed.pop(0)
    seed = data.draw(st.integers(0, 2**16), label="mask seed")
    share = data.draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]), label="included share")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(passed, generator=generator) < share
    return mask, mask.expand(shape)


def _poisoned(
    spec: LossSpec, case: Case, full: torch.Tensor, value: float
) -> tuple[Case, list[int]]:
    """``case`` with ``value`` in every differentiable input entry that only masked elements
    read; also the positions poisoned."""
    args, positions = list(case.args), []
    for position in spec.wrt:
        arg_mask = spec.where_arg_mask(full, position, case)
        if arg_mask is not None and not bool(arg_mask.all()):
            args[position] = torch.where(arg_mask, args[position], value)
            positions.append(position)
    return Case(tuple(args), case.kwargs), positions


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@given(data=st.data())
def test_masked_equals_zeroed_oracle(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    mask, full = _draw_mask(data, _unreduced_shape(spec, case))
    reference = call_oracle(spec, case, "none")
    expected = {
        "none": torch.where(full, reference, 0.0),
        "sum": torch.where(full, reference, 0.0).sum(),
        "mean": spec.masked_mean(case, reference, full),
    }
    if spec.where_oracle is not None:  # a batch loss: the mask changes the kept elements too
        expected = {r: spec.where_oracle(case, full, r) for r in REDUCTIONS}
    for reduction in REDUCTIONS:
        if reduction in spec.reductions:
            actual = call(spec, case, reduction, where=mask)
            assert_close(actual, expected[reduction], f"where, {reduction}")
    if "none" in spec.reductions and "sum" in spec.reductions:
        assert_close(
            call(spec, case, "none", where=mask).sum(),
            call(spec, case, "sum", where=mask),
            '"none".sum() vs "sum"',
        )


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@given(data=st.data())
def test_all_true_is_no_mask(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    shape = _unreduced_shape(spec, case)
    for reduction in spec.reductions:
        plain = call(spec, case, reduction)
        for mask in (torch.ones(shape, dtype=torch.bool), torch.tensor(True)):
            assert_close(call(spec, case, reduction, where=mask), plain, f"all-true, {reduction}")


@pytest.mark.parametrize("spec", PER_SAMPLE, ids=repr)
@given(data=st.data())
def test_batch_mask_equals_slicing(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    dims = spec.per_sample_dims
    assert dims is not None
    shape = _unreduced_shape(spec, case)
    n = batch_size(case.args, dims)
    rows, _ = _draw_mask(data, torch.Size([n]), broadcast=False)
    mask = rows.reshape((n,) + (1,) * (len(shape) - 1))
    index = rows.nonzero().squeeze(1)
    sliced = Case(
        tuple(
            a if d is None else a.index_select(d, index)
            for a, d in zip(case.args, dims, strict=True)
        ),
        case.kwargs,
    )
    for reduction in ("mean", "sum"):
        if reduction not in spec.reductions:
            continue
        actual = call(spec, case, reduction, where=mask)
        if index.numel() == 0:
            # nothing included: 0, where torch's mean over an empty batch is nan
            assert_close(actual, torch.zeros((), dtype=actual.dtype), f"empty, {reduction}")
        else:
            expected = call_oracle(spec, sliced, reduction)
            if reduction == "mean" and torch.isnan(expected):
                # every included element ignored (ignore_index): torch's 0 / 0; with a mask,
                # a mean over nothing is 0
                expected = torch.zeros((), dtype=actual.dtype)
            assert_close(actual, expected, f"sliced, {reduction}")


def _grads(spec: LossSpec, case: Case, reduction: str, mask: torch.Tensor):
    inputs = [case.args[p].detach().requires_grad_() for p in spec.wrt]
    args = list(case.args)
    for p, x in zip(spec.wrt, inputs, strict=True):
        args[p] = x
    value = spec.fn(*args, **case.kwargs, reduction=reduction, where=mask)
    return value, torch.autograd.grad(value, inputs, allow_unused=True)


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@given(data=st.data(), poison=st.sampled_from([math.inf, -math.inf, math.nan]))
def test_masked_inf_nan_reach_nothing(spec: LossSpec, data: st.DataObject, poison: float) -> None:
    case = _draw(data, spec)
    mask, full = _draw_mask(data, _unreduced_shape(spec, case), broadcast=False)
    bad, positions = _poisoned(spec, case, full, poison)
    for reduction in ("mean", "sum"):
        if reduction not in spec.reductions:
            continue
        clean_value, clean_grads = _grads(spec, case, reduction, mask)
        bad_value, bad_grads = _grads(spec, bad, reduction, mask)
        assert torch.isfinite(bad_value).all(), f"{reduction}: value {bad_value}"
        assert_close(bad_value, clean_value, f"poisoned value, {reduction}")
        for p, g_bad, g_clean in zip(spec.wrt, bad_grads, clean_grads, strict=True):
            if g_clean is None:
                continue
            assert torch.isfinite(g_bad).all(), f"{reduction}: grad of arg {p} {g_bad}"
            assert_close(g_bad, g_clean, f"poisoned grad of arg {p}, {reduction}")
            arg_mask = spec.where_arg_mask(full, p, case)
            if arg_mask is not None:
                assert (g_bad[~arg_mask] == 0).all(), f"nonzero gradient at masked arg {p}"
        if positions:
            position = positions[0]

            def total(x, args=bad.args, reduction=reduction, position=position):
                args = list(args)
                args[position] = x
                return spec.fn(*args, **case.kwargs, reduction=reduction, where=mask)

            forward = jacfwd(total)(bad.args[position])
            assert torch.isfinite(forward).all(), f"{reduction}: jacfwd {forward}"
            reverse = bad_grads[spec.wrt.index(position)]
            assert_close(forward, reverse, f"jacfwd vs grad, poisoned, {reduction}")


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=3)
@given(data=st.data(), poison=st.sampled_from([math.inf, math.nan]))
def test_masked_inf_nan_hessian(spec: LossSpec, data: st.DataObject, poison: float) -> None:
    case = _draw(data, spec)
    mask, full = _draw_mask(data, _unreduced_shape(spec, case), broadcast=False)
    bad, positions = _poisoned(spec, case, full, poison)
    position = positions[0] if positions else spec.wrt[0]
    reduction = "sum" if "sum" in spec.reductions else spec.reductions[-1]

    def of(source: Case):
        def total(x):
            args = list(source.args)
            args[position] = x
            return spec.fn(*args, **case.kwargs, reduction=reduction, where=mask)

        return hessian(total)(source.args[position])

    poisoned, clean = of(bad), of(case)
    assert torch.isfinite(poisoned).all(), f"hessian {poisoned}"
    assert_close(poisoned, clean, "poisoned hessian")


@pytest.mark.parametrize("spec", PER_SAMPLE, ids=repr)
@given(data=st.data())
def test_per_sample_masks_under_vmap_grad(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    dims = spec.per_sample_dims
    assert dims is not None
    shape = _unreduced_shape(spec, case)
    _, full = _draw_mask(data, shape, broadcast=False)
    position = spec.wrt[0]
    reduction = "mean" if "mean" in spec.reductions else spec.reductions[-1]

    def f(x, *rest):
        args = list(rest)
        args.insert(position, x)
        *args, where = args
        return spec.fn(*args, **case.kwargs, reduction=reduction, where=where)

    args = list(case.args)
    x = args.pop(position)
    arg_dims = list(dims)
    x_dim = arg_dims.pop(position)
    in_dims = (x_dim, *arg_dims, 0)
    batched = vmap(grad(f), in_dims=in_dims, out_dims=x_dim)(x, *args, full)
    looped = torch.stack(
        [
            grad(f)(*unbatch((x, *args, full), in_dims, i))
            for i in range(batch_size(case.args, dims))
        ],
        dim=x_dim,
    )
    assert_close(batched, looped, "per-sample masked gradients: vmap vs loop")


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=1)
@given(data=st.data())
def test_module_takes_where_in_forward(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    mask, _ = _draw_mask(data, _unreduced_shape(spec, case))
    module = spec.module(**case.kwargs, reduction=spec.reductions[-1])
    assert_close(
        module(*case.args, where=mask),
        call(spec, case, spec.reductions[-1], where=mask),
        "module vs function",
    )


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=1)
@given(data=st.data())
def test_bad_where(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    shape = _unreduced_shape(spec, case)
    with pytest.raises(TypeError, match=r": `where` must be a bool tensor"):
        call(spec, case, "sum", where=torch.ones(shape))
    with pytest.raises(TypeError, match=r": `where` must be a bool tensor"):
        call(spec, case, "sum", where=[True])
    too_big = torch.ones((3, *shape, 2), dtype=torch.bool)
    with pytest.raises(ValueError, match=r": `where` must be broadcastable to"):
        call(spec, case, "sum", where=too_big)


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@settings(max_examples=1)
@given(data=st.data())
def test_compile_fullgraph_with_where(spec: LossSpec, data: st.DataObject) -> None:
    """The mask is a graph input (data, not a constant): compiled value and gradient equal
    eager's, and a second mask reuses the graph's answer correctly."""
    case = _draw(data, spec)
    shape = _unreduced_shape(spec, case)
    position = spec.wrt[0]
    reduction = "mean" if "mean" in spec.reductions else spec.reductions[-1]

    def f(x, where):
        args = list(case.args)
        args[position] = x
        return spec.fn(*args, **case.kwargs, reduction=reduction, where=where)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for share in (0.5, 0.0):
        generator = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
        where = torch.rand(shape, generator=generator) < share
        x = case.args[position].detach().requires_grad_()
        value = compiled(x, where)
        (grad_compiled,) = torch.autograd.grad(value, x)
        x_eager = x.detach().requires_grad_()
        expected = f(x_eager, where)
        (grad_eager,) = torch.autograd.grad(expected, x_eager)
        assert_close(value, expected, "compiled forward with where")
        assert_close(grad_compiled, grad_eager, "compiled backward with where")
