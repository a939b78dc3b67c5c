"""funcloss.custom_backward: every torch.func transform, pytrees, config, loss_module, errors.

Each loss below has a hand-written backward and jvp; its oracle is the same forward as a plain
torch composition, differentiated by autograd, run under the same transform.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
from funcloss.testing import regression_pairs

from .helpers import assert_close

# -- the losses under test -------------------------------------------------------------------


# The example, verbatim.
@funcloss.custom_backward
def squared_error(input, target):
    return (input - target) ** 2


@squared_error.backward
def _(grad, input, target):  # grad of the output, then the forward's inputs
    d = 2 * (input - target) * grad
    return d, -d  # one gradient (or None) per tensor input


@squared_error.jvp  # optional: forward mode (jacfwd, hessian)
def _(input_t, target_t, input, target):
    return 2 * (input - target) * (input_t - target_t)


def squared_error_reference(input: Tensor, target: Tensor) -> Tensor:
    return (input - target) ** 2


# A pytree input (a dict holding a tensor and a tuple of tensors) and a float config argument.
@funcloss.custom_backward
def pair_loss(pred: dict[str, Any], target: Tensor, scale: float = 1.0) -> Tensor:
    low, high = pred["bounds"]
    return scale * ((pred["mean"] - target) ** 2 + low * high)


@pair_loss.backward
def _pair_loss_backward(grad, pred, target, scale=1.0):
    # d/dmean = 2 s (mean - target);  d/dlow = s high;  d/dhigh = s low
    low, high = pred["bounds"]
    d = 2 * scale * (pred["mean"] - target) * grad
    return {"mean": d, "bounds": (scale * high * grad, scale * low * grad)}, -d


@pair_loss.jvp
def _pair_loss_jvp(pred_t, target_t, pred, target, scale=1.0):
    low, high = pred["bounds"]
    low_t, high_t = pred_t["bounds"]
    d = 2 * (pred["mean"] - target) * (pred_t["mean"] - target_t)
    return scale * (d + low_t * high + low * high_t)


def pair_loss_reference(pred: dict[str, Any], target: Tensor, scale: float = 1.0) -> Tensor:
    low, high = pred["bounds"]
    return scale * ((pred["mean"] - target) ** 2 + low * high)


# An optional tensor (None counts as a tensor argument and takes a None gradient) and a
# string config argument.
@funcloss.custom_backward
def weighted_error(
    input: Tensor, target: Tensor, weight: Tensor | None = None, reduction: str = "none"
) -> Tensor:
    loss = (input - target) ** 2 if weight is None else weight * (input - target) ** 2
    return loss.sum() if reduction == "sum" else loss


@weighted_error.backward
def _weighted_error_backward(grad, input, target, weight=None, reduction="none"):
    d = 2 * (input - target) * grad
    if weight is None:
        return d, -d, None
    return weight * d, -weight * d, grad * (input - target) ** 2


@weighted_error.jvp
def _weighted_error_jvp(input_t, target_t, weight_t, input, target, weight=None, reduction="none"):
    d = 2 * (input - target) * (input_t - target_t)
    if weight is not None:
        d = weight * d + weight_t * (input - target) ** 2
    return d.sum() if reduction == "sum" else d


def weighted_error_reference(input, target, weight=None, reduction="none"):
    loss = (input - target) ** 2 if weight is None else weight * (input - target) ** 2
    return loss.sum() if reduction == "sum" else loss


# A samplewise loss (``sample_dims``): the samples along dimension 1 of ``input`` ``(K, N)``
# and 0 of ``target`` ``(N,)``, the output ``(N,)``. Under vmap it runs once over the vmapped
# samples folded into its own; a ``weight`` (not declared) takes the generated rule.
@funcloss.custom_backward
def column_error(
    input: Tensor, target: Tensor, weight: Tensor | None = None, scale: float = 1.0
) -> Tensor:
    return column_error_reference(input, target, weight, scale)


@column_error.backward
def _column_error_backward(grad, input, target, weight=None, scale=1.0):
    d = scale * torch.sin(2 * (input - target)) * grad
    if weight is not None:
        d = d * weight
    if weight is None:
        return d, -d.sum(0), None
    return d, -d.sum(0), (grad * scale * torch.sin(input - target) ** 2).sum(0)


@column_error.jvp
def _column_error_jvp(input_t, target_t, weight_t, input, target, weight=None, scale=1.0):
    d = (scale * torch.sin(2 * (input - target)) * (input_t - target_t)).sum(0)
    if weight is None:
        return d
    return weight * d + weight_t * column_error_reference(input, target, None, scale)


column_error.sample_dims(input=1, target=0)


def column_error_reference(
    input: Tensor, target: Tensor, weight: Tensor | None = None, scale: float = 1.0
) -> Tensor:
    loss = scale * (torch.sin(input - target) ** 2).sum(0)
    return loss if weight is None else weight * loss


def _tensor(shape: tuple[int, ...], seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _pair_args(n: int = 3) -> tuple[Any, ...]:
    pred = {"mean": _tensor((n,), 0), "bounds": (_tensor((n,), 1), _tensor((n,), 2))}
    return pred, _tensor((n,), 3), 2.5


# (id, ours, reference, args, kwargs): the differentiated argument is args[0].
CASES = [
    ("squared_error", squared_error, squared_error_reference, (_tensor((3,), 0), _tensor((3,), 1))),
    ("pair_loss-pytree-config", pair_loss, pair_loss_reference, _pair_args()),
    (
        "weighted_error-none",
        weighted_error,
        weighted_error_reference,
        (_tensor((3,), 0), _tensor((3,), 1)),
    ),
    (
        "column_error-samplewise",
        column_error,
        column_error_reference,
        (_tensor((2, 3), 0), _tensor((3,), 1), None, 1.5),
    ),
    (
        "column_error-samplewise-undeclared-weight",
        column_error,
        column_error_reference,
        (_tensor((2, 3), 0), _tensor((3,), 1), _tensor((3,), 2), 1.5),
    ),
    (
        "weighted_error-weight-sum",
        weighted_error,
        weighted_error_reference,
        (_tensor((3,), 0), _tensor((3,), 1), _tensor((3,), 2).abs(), "sum"),
    ),
]


def _stack(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Two problems along a new dim 0 (the second flipped), with vmap's in_dims."""

    def stack(x: Tensor) -> Tensor:
        return torch.stack([x, x.flip(-1)])

    out, dims = [], []
    for a in args:
        if a is None or isinstance(a, str | float | int):
            out.append(a)
            dims.append(None)
        else:
            out.append(torch.utils._pytree.tree_map(stack, a))
            dims.append(0)
    return tuple(out), tuple(dims)


def _total(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    return lambda *args: loss(*args).sum()


TRANSFORMS: dict[str, Callable[[Callable[..., Tensor], tuple[Any, ...]], Any]] = {
    "eager": lambda loss, args: loss(*args),
    "grad": lambda loss, args: grad(_total(loss))(*args),
    "grad-all-inputs": lambda loss, args: grad(_total(loss), argnums=(0, 1))(*args),
    "vmap": lambda loss, args: vmap(loss, in_dims=_stack(args)[1])(*_stack(args)[0]),
    "vmap(grad)": lambda loss, args: vmap(grad(_total(loss)), in_dims=_stack(args)[1])(
        *_stack(args)[0]
    ),
    "jacrev": lambda loss, args: jacrev(loss, argnums=(0, 1))(*args),
    "jacfwd": lambda loss, args: jacfwd(loss, argnums=(0, 1))(*args),
    "hessian": lambda loss, args: hessian(_total(loss))(*args),
    "jacrev(jacrev)": lambda loss, args: jacrev(jacrev(_total(loss)))(*args),
    "jacrev(jacfwd)": lambda loss, args: jacrev(jacfwd(_total(loss)))(*args),
    "func.jvp": lambda loss, args: torch.func.jvp(
        lambda first: loss(first, *args[1:]),
        (args[0],),
        (torch.utils._pytree.tree_map(torch.ones_like, args[0]),),
    ),
}


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize(
    ("ours", "reference", "args"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_transform_matches_autograd_of_plain_forward(
    transform: str, ours: Callable[..., Tensor], reference: Callable[..., Tensor], args: tuple
) -> None:
    run = TRANSFORMS[transform]
    assert_close(run(ours, args), run(reference, args), transform)


@given(data=st.data())
def test_first_and_second_derivatives_on_drawn_values(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 3)), label="shape")
    x, y = data.draw(regression_pairs(shape), label="pair")
    for transform in ("grad-all-inputs", "vmap(grad)", "jacfwd", "hessian", "jacrev(jacrev)"):
        run = TRANSFORMS[transform]
        assert_close(run(squared_error, (x, y)), run(squared_error_reference, (x, y)), transform)


# -- torch.compile ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "reference", "args"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compile_fullgraph_forward_and_backward(
    ours: Callable[..., Tensor], reference: Callable[..., Tensor], args: tuple
) -> None:
    torch.compiler.reset()
    compiled = torch.compile(_total(ours), fullgraph=True, backend="aot_eager")
    leaves = torch.utils._pytree.tree_leaves(args[0])
    first = torch.utils._pytree.tree_map(lambda t: t.detach().requires_grad_(), args[0])
    value = compiled(first, *args[1:])
    grads = torch.autograd.grad(value, torch.utils._pytree.tree_leaves(first))
    reference_leaves = [t.detach().requires_grad_() for t in leaves]
    reference_first = torch.utils._pytree.tree_unflatten(
        reference_leaves, torch.utils._pytree.tree_structure(args[0])
    )
    expected = _total(reference)(reference_first, *args[1:])
    assert_close(value, expected, "compiled forward")
    assert_close(grads, torch.autograd.grad(expected, reference_leaves), "compiled backward")


@pytest.mark.parametrize(
    ("ours", "reference", "args"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compile_under_transforms(
    ours: Callable[..., Tensor], reference: Callable[..., Tensor], args: tuple
) -> None:
    """compile(grad) and compile(vmap): the custom rules are traced away, the forward autodiffed."""
    torch.compiler.reset()
    compiled_grad = torch.compile(grad(_total(ours)), fullgraph=True, backend="aot_eager")
    assert_close(compiled_grad(*args), grad(_total(reference))(*args), "compile(grad)")
    stacked, dims = _stack(args)
    compiled_vmap = torch.compile(vmap(ours, in_dims=dims), fullgraph=True, backend="aot_eager")
    assert_close(compiled_vmap(*stacked), vmap(reference, in_dims=dims)(*stacked), "compile(vmap)")


@pytest.mark.parametrize(
    ("ours", "reference", "args"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_compile_vmap_grad_of_inputs_computed_inside(
    ours: Callable[..., Tensor], reference: Callable[..., Tensor], args: tuple
) -> None:
    """A compiled per-sample-gradient step whose loss input is computed inside the compiled
    region (``x * 1``): Dynamo then wraps a Function in its own ApplyTemplate Function, which
    has no vmap rule (torch 2.13), so custom_backward traces the forward instead."""

    def computed(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def total(first: Any, *rest: Any) -> Tensor:
            return loss(torch.utils._pytree.tree_map(lambda t: t * 1, first), *rest).sum()

        return total

    torch.compiler.reset()
    stacked, dims = _stack(args)
    per_sample = vmap(grad(computed(ours)), in_dims=dims)
    compiled = torch.compile(per_sample, fullgraph=True, backend="aot_eager")
    expected = vmap(grad(computed(reference)), in_dims=dims)(*stacked)
    assert_close(compiled(*stacked), expected, "compile(vmap(grad))")


# -- sample_dims: the folding vmap rule -----------------------------------------------------


def _one_column_loss(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    return lambda x, t: loss(x, t, None, 1.5).sum()


_COLUMNS, _TARGETS = _tensor((4, 2, 3), 5), _tensor((4, 3), 6)

# Transforms where a vmap meets the samplewise loss, and whether the fold serves it (a weight
# not declared in sample_dims takes the generated rule instead).
SAMPLEWISE: dict[str, Callable[[Callable[..., Tensor]], Any]] = {
    "vmap(grad)": lambda f: vmap(grad(f))(_COLUMNS, _TARGETS),
    "vmap(grad), shared target": lambda f: vmap(grad(f), in_dims=(0, None))(_COLUMNS, _TARGETS[0]),
    "vmap(grad), vmapped dim last": lambda f: vmap(grad(f), in_dims=(2, 1))(
        _COLUMNS.movedim(0, 2), _TARGETS.movedim(0, 1)
    ),
    "grad(vmap(grad))": lambda f: grad(lambda x: vmap(grad(f))(x, _TARGETS).pow(2).sum())(_COLUMNS),
    "vmap(hessian)": lambda f: vmap(hessian(f))(_COLUMNS, _TARGETS),
    "vmap(jacrev(jacrev))": lambda f: vmap(jacrev(jacrev(f)))(_COLUMNS, _TARGETS),
    "vmap(jacfwd(grad))": lambda f: vmap(jacfwd(grad(f)))(_COLUMNS, _TARGETS),
    "jacfwd(vmap(grad))": lambda f: jacfwd(lambda x: vmap(grad(f))(x, _TARGETS))(_COLUMNS),
    "jacrev(vmap)": lambda f: jacrev(lambda x: vmap(f)(x, _TARGETS))(_COLUMNS),
    "hessian(vmap)": lambda f: hessian(lambda x: vmap(f)(x, _TARGETS).sum())(_COLUMNS),
    "vmap(vmap(grad))": lambda f: vmap(vmap(grad(f)))(
        _COLUMNS.unflatten(0, (2, 2)), _TARGETS.unflatten(0, (2, 2))
    ),
}


@pytest.mark.parametrize("transform", list(SAMPLEWISE))
def test_sample_dims_fold_the_vmapped_samples(
    transform: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from funcloss import _function

    folds = []
    fold = _function._fold
    monkeypatch.setattr(_function, "_fold", lambda *a: folds.append(a[-1]) or fold(*a))
    run = SAMPLEWISE[transform]
    assert_close(run(_one_column_loss(column_error)), run(_one_column_loss(column_error_reference)))
    assert folds, "the fold did not run"


def test_sample_dims_leave_an_undeclared_tensor_to_the_generated_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from funcloss import _function

    folds = []
    fold = _function._fold
    monkeypatch.setattr(_function, "_fold", lambda *a: folds.append(a) or fold(*a))
    weight = _tensor((4, 3), 7).abs()

    def total(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
        return lambda x, t, w: loss(x, t, w, 1.5).sum()

    ours = vmap(grad(total(column_error), argnums=(0, 2)))(_COLUMNS, _TARGETS, weight)
    expected = vmap(grad(total(column_error_reference), argnums=(0, 2)))(_COLUMNS, _TARGETS, weight)
    assert_close(ours, expected)
    assert not folds


def test_sample_dims_of_a_loss_that_reduces_over_samples_say_so() -> None:
    @funcloss.custom_backward
    def total_error(input: Tensor, target: Tensor) -> Tensor:
        return ((input - target) ** 2).sum()

    @total_error.backward
    def _(grad, input, target):
        return 2 * (input - target) * grad, -2 * (input - target) * grad

    total_error.sample_dims(input=0, target=0)
    message = (
        "total_error: declared samplewise (sample_dims), its output must have one entry per "
        "sample along dimension 0 (8 here, the vmapped samples folded in), got shape ()."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        vmap(total_error)(_COLUMNS, _COLUMNS)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ({"inputs": 0}, "column_error: sample_dims got an unknown argument `inputs`."),
        ({"input": -1}, "column_error: sample_dims of `input` must be a dimension >= 0, got -1."),
        ({"input": True}, "must be a dimension >= 0, got True."),
    ],
)
def test_sample_dims_refuse_bad_declarations(dims: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        column_error.sample_dims(**dims)


# -- calling conventions ---------------------------------------------------------------------


def test_config_positional_keyword_and_default_agree() -> None:
    pred, target, scale = _pair_args()
    expected = pair_loss_reference(pred, target, scale)
    assert_close(pair_loss(pred, target, scale), expected)
    assert_close(pair_loss(pred, target=target, scale=scale), expected)
    assert_close(pair_loss(pred, target), pair_loss_reference(pred, target))


def test_backward_gets_none_for_an_optional_tensor_left_out() -> None:
    x = _tensor((3,), 0).requires_grad_()
    weighted_error(x, _tensor((3,), 1)).sum().backward()
    assert_close(x.grad, 2 * (x - _tensor((3,), 1)).detach())


def test_integer_tensor_argument_gets_no_gradient() -> None:
    @funcloss.custom_backward
    def pick(input: Tensor, index: Tensor) -> Tensor:
        return input.gather(0, index)

    @pick.backward
    def _(grad, input, index):
        return torch.zeros_like(input).scatter_add(0, index, grad), None

    x = _tensor((4,), 0)
    index = torch.tensor([3, 0])
    assert_close(jacrev(pick)(x, index), torch.eye(4, dtype=x.dtype)[[3, 0]])
    assert_close(
        jacrev(jacrev(lambda x: pick(x, index).sum()))(x), torch.zeros(4, 4, dtype=x.dtype)
    )


def test_metadata_follows_the_forward() -> None:
    assert squared_error.__name__ == "squared_error"
    assert list(__import__("inspect").signature(pair_loss).parameters) == [
        "pred",
        "target",
        "scale",
    ]
    assert repr(squared_error) == "<custom_backward loss squared_error>"


def test_composes_with_loss_module() -> None:
    WeightedErrorLoss = funcloss.loss_module(weighted_error)
    weight = _tensor((3,), 2).abs()
    module = WeightedErrorLoss(weight=weight, reduction="sum")
    assert repr(module) == "WeightedErrorLoss(weight=tensor(shape=(3,)), reduction='sum')"
    assert list(module.state_dict()) == ["weight"]
    x, y = _tensor((3,), 0), _tensor((3,), 1)
    expected = weighted_error_reference(x, y, weight, "sum")
    assert_close(module(x, y), expected)
    assert_close(grad(module)(x, y), grad(weighted_error_reference)(x, y, weight, "sum"))
    torch.compiler.reset()
    assert_close(torch.compile(module, fullgraph=True, backend="aot_eager")(x, y), expected)


# -- errors ----------------------------------------------------------------------------------


class _OldStyle(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor) -> Tensor:
        return input


@pytest.mark.parametrize(
    ("forward", "got"),
    [
        (3, "got int"),
        (int, "got the class int"),
        (_OldStyle, "got the autograd.Function _OldStyle"),
    ],
)
def test_decorating_something_not_a_function(forward: Any, got: str) -> None:
    with pytest.raises(TypeError, match=f"custom_backward: `forward` must be a function, {got}"):
        funcloss.custom_backward(forward)


def test_decorating_a_function_with_variadic_arguments() -> None:
    with pytest.raises(
        TypeError,
        match=r"custom_backward: `forward` must not take \*args or \*\*kwargs, got "
        r"`\*tensors` in summed\. Name each argument",
    ):

        @funcloss.custom_backward
        def summed(*tensors: Tensor) -> Tensor:
            return sum(tensors)


def _fresh() -> funcloss._function.CustomBackwardLoss:
    @funcloss.custom_backward
    def my_loss(input: Tensor, target: Tensor) -> Tensor:
        return (input - target) ** 2

    return my_loss


def test_registering_a_rule_that_is_not_a_function() -> None:
    with pytest.raises(TypeError, match="my_loss: `backward` must be a function, got str"):
        _fresh().backward("d")
    with pytest.raises(TypeError, match="my_loss: `jvp` must be a function, got NoneType"):
        _fresh().jvp(None)


def test_calling_without_a_backward() -> None:
    with pytest.raises(TypeError, match=r"my_loss: no backward registered; add one with @my_loss"):
        _fresh()(torch.ones(3), torch.ones(3))


def test_bad_call_arguments() -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (grad, -grad))
    with pytest.raises(TypeError, match="my_loss: got an unexpected keyword argument `targets`"):
        loss(torch.ones(3), targets=torch.ones(3))
    with pytest.raises(TypeError, match="my_loss: missing argument `target`"):
        loss(torch.ones(3))


@pytest.mark.parametrize("transform", ["eager", "grad", "vmap(grad)", "jacrev"])
def test_backward_returning_the_wrong_number_of_gradients(transform: str) -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: 2 * (input - target) * grad)
    with pytest.raises(
        TypeError,
        match=r"my_loss: backward must return 2 gradients, one per tensor argument "
        r"\(argument 0 `input`, argument 1 `target`; None where there is none\), got 1\.",
    ):
        _run_backward(loss, transform)


@pytest.mark.parametrize("transform", ["eager", "grad", "vmap(grad)", "jacrev"])
def test_backward_gradient_of_the_wrong_shape(transform: str) -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (grad, -grad.sum()))
    shape = r"\(1,\)" if transform == "vmap(grad)" else r"\(3,\)"  # vmap: per-sample shapes
    with pytest.raises(
        ValueError,
        match=rf"my_loss: backward gradient for argument 1 \(`target`\) must have shape {shape}, "
        r"got \(\)\.",
    ):
        _run_backward(loss, transform)


def test_backward_gradient_not_a_tensor() -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (grad, 1.0))
    with pytest.raises(
        TypeError,
        match=r"my_loss: backward gradient for argument 1 \(`target`\) must be a tensor or None, "
        r"got float\.",
    ):
        _run_backward(loss, "eager")


def test_backward_gradient_of_the_wrong_structure() -> None:
    loss = funcloss.custom_backward(pair_loss_reference)
    loss.backward(lambda grad, pred, target, scale: ({"mean": grad}, None))
    pred, target, scale = _pair_args()
    with pytest.raises(
        TypeError,
        match=r"pair_loss_reference: backward gradient for argument 0 \(`pred`\) must have the "
        r"structure of `pred` \(3 leaves\), got 1 leaves\.",
    ):
        grad(_total(loss))(pred, target, scale)


def _run_backward(loss: Callable[..., Tensor], transform: str) -> None:
    x, y = _tensor((3,), 0), _tensor((3,), 1)
    run = {
        "eager": lambda: loss(x.requires_grad_(), y.requires_grad_()).sum().backward(),
        "grad": lambda: grad(_total(loss), argnums=(0, 1))(x, y),
        "vmap(grad)": lambda: vmap(grad(_total(loss), argnums=(0, 1)))(x[:, None], y[:, None]),
        "jacrev": lambda: jacrev(loss, argnums=(0, 1))(x, y),
    }
    run[transform]()


@pytest.mark.parametrize("transform", ["jacfwd", "hessian", "vmap(jacfwd)"])
def test_jvp_returning_the_wrong_shape(transform: str) -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (2 * (input - target) * grad, None))
    loss.jvp(lambda input_t, target_t, input, target: (2 * (input - target) * input_t).sum())
    x, y = _tensor((2, 3), 0), _tensor((2, 3), 1)
    run = {
        "jacfwd": lambda: jacfwd(loss)(x, y),
        "hessian": lambda: hessian(_total(loss))(x, y),
        "vmap(jacfwd)": lambda: vmap(jacfwd(loss))(x, y),
    }
    shape = r"\(2, 3\)" if transform != "vmap(jacfwd)" else r"\(3,\)"
    with pytest.raises(
        ValueError,
        match=rf"my_loss: jvp must return the output's tangent, of the output's shape {shape}, "
        r"got \(\)\.",
    ):
        run[transform]()


def test_jvp_returning_a_tuple() -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (grad, None))
    loss.jvp(lambda input_t, target_t, input, target: (input_t, target_t))
    with pytest.raises(TypeError, match=r"my_loss: jvp must return one tensor.*got tuple\."):
        jacfwd(loss)(torch.ones(3), torch.ones(3))


@pytest.mark.parametrize("transform", ["jacfwd", "hessian", "func.jvp"])
def test_forward_mode_without_a_jvp_says_to_register_one(transform: str) -> None:
    loss = _fresh()
    loss.backward(lambda grad, input, target: (2 * (input - target) * grad, None))
    x, y = _tensor((3,), 0), _tensor((3,), 1)
    with pytest.raises(
        NotImplementedError,
        match=r"my_loss: forward-mode AD \(jacfwd, hessian, torch.func.jvp\) needs a jvp; "
        r"register one with @my_loss.jvp\.",
    ):
        TRANSFORMS[transform](loss, (x, y))
    # Reverse mode, including double backward, needs no jvp.
    assert_close(jacrev(jacrev(_total(loss)))(x, y), 2 * torch.eye(3, dtype=x.dtype))


def test_forward_returning_a_non_tensor() -> None:
    loss = funcloss.custom_backward(lambda input: float(input.sum()))
    loss.backward(lambda grad, input: grad)
    with pytest.raises(TypeError, match="<lambda>: the forward must return one tensor, got float"):
        loss(torch.ones(3))
