"""funcloss.testing.check_loss: what it checks, what it reports, and the mistakes it catches."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn
from funcloss.testing import (
    check_loss,
    class_targets,
    logits,
    probabilities,
    regression_pairs,
    shapes,
)
from funcloss.testing.check import PROPERTIES

# The compile properties take a second or two each; tests about something else skip them.
NO_COMPILE = ("compile", "compile_grad", "compile_vmap_grad")


def _tensor(*shape: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


X, Y = _tensor(3, 2, seed=0), _tensor(3, 2, seed=1)


def mse_reference(input: Tensor, target: Tensor) -> Tensor:
    return ((input - target) ** 2).mean()


def make_mse(factor: float = 2.0, detach: bool = False, jvp: bool = True):
    """A mean squared error with a hand-written backward, right or wrong as asked."""

    @funcloss.custom_backward
    def my_mse(input: Tensor, target: Tensor) -> Tensor:
        return ((input - target) ** 2).mean()

    @my_mse.backward
    def _(grad: Tensor, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        diff = (input - target).detach() if detach else input - target
        d = factor * diff * grad / input.numel()
        return d, -d

    if jvp:

        @my_mse.jvp
        def _(input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor) -> Tensor:
            return (2 * (input - target) * (input_t - target_t)).mean()

    return my_mse


def _failure(fn: Any, reference: Any, *inputs: Any, **options: Any) -> str:
    with pytest.raises(AssertionError) as info:
        check_loss(fn, reference, *inputs, **options)
    return str(info.value)


# -- a correct loss passes, and the report says what was checked -----------------------------


def test_correct_custom_backward_passes_every_property() -> None:
    MyMSELoss = funcloss.loss_module(make_mse(), name="MyMSELoss")
    report = check_loss(make_mse(), mse_reference, X, Y, module=MyMSELoss)
    assert list(report.checked) == list(PROPERTIES)
    assert report.skipped == {}
    text = str(report)
    assert text.startswith("check_loss(my_mse): 11 properties hold")
    assert "jacrev(fn) matches the reference's autograd Jacobian" in text
    assert "w.r.t. input 0 (`input`), input 1 (`target`)" in text
    assert "vmap(fn) matches a loop over 2 problems (no fallback)" in text


@given(data=st.data())
def test_check_loss_inside_a_hypothesis_test(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)), label="shape")
    x, y = data.draw(regression_pairs(shape), label="pair")
    report = check_loss(make_mse(), mse_reference, x, y, skip=NO_COMPILE)
    assert set(report.checked) == set(PROPERTIES) - {*NO_COMPILE, "module"}


@settings(max_examples=5)  # the registry test (test_check_loss.py) covers the losses fully
@given(data=st.data())
def test_funcloss_cross_entropy_against_torch(data: st.DataObject) -> None:
    n, c = data.draw(st.integers(1, 3), label="n"), data.draw(st.integers(2, 4), label="c")
    x = data.draw(logits((n, c)), label="logits")
    y = data.draw(class_targets((n,), c, ignore_index=-100), label="target")
    report = check_loss(
        funcloss.cross_entropy,
        F.cross_entropy,
        x,
        y,
        kwargs={"reduction": "sum"},
        module=funcloss.nn.CrossEntropyLoss,
        skip=NO_COMPILE,
    )
    assert "module" in report.checked
    assert "input 0 (`input`)" in report.checked["jacrev"]


def test_float32_inputs_use_float32_tolerances_and_gradcheck_in_float64() -> None:
    report = check_loss(make_mse(), mse_reference, X.float(), Y.float(), skip=NO_COMPILE)
    assert "float64" in report.checked["gradcheck"]


# -- the mistakes it catches -------------------------------------------------------------------


def test_catches_a_backward_off_by_a_factor() -> None:
    message = _failure(make_mse(factor=3.0), mse_reference, X, Y, skip=NO_COMPILE)
    assert message.startswith(
        "check_loss(my_mse): 3 of 7 properties failed: jacrev, gradcheck, hessian"
    )
    assert "[jacrev] jacrev(fn) w.r.t. input 0 (`input`) vs the reference's autograd Jacobian" in (
        message
    )
    assert "largest error" in message
    assert "fn's result is 1.5 times the expected one: off by a constant factor" in message
    assert "fn's values match the reference but its derivative does not: its backward is wrong" in (
        message
    )
    # The forward-mode rule is right, and the check says so by passing jacfwd.
    assert "jacfwd" not in message.splitlines()[0]


def test_catches_a_backward_that_detaches() -> None:
    message = _failure(make_mse(detach=True), mse_reference, X, Y, skip=NO_COMPILE)
    assert message.splitlines()[0].endswith("failed: hessian, gradgradcheck")
    assert "[hessian] jacrev(jacrev(fn)) w.r.t. input 0 (`input`)" in message
    assert "fn's result is all zeros where the expected one is not" in message
    assert "First derivatives match but second derivatives do not" in message
    assert "Build the backward from differentiable torch ops" in message
    assert "[gradgradcheck] autograd Hessian vs finite differences" in message


def clipped_mse(input: Tensor, target: Tensor) -> Tensor:
    diff = input - target
    if diff.abs().max() > 1:  # Python control flow on a tensor value
        diff = diff.clamp(-1, 1)
    return (diff**2).mean()


def clipped_mse_reference(input: Tensor, target: Tensor) -> Tensor:
    return ((input - target).clamp(-1, 1) ** 2).mean()


def test_catches_python_control_flow_on_tensor_values() -> None:
    message = _failure(clipped_mse, clipped_mse_reference, X * 3, Y)
    assert message.splitlines()[0].endswith(
        "failed: vmap, compile, compile_grad, compile_vmap_grad"
    )
    assert "[vmap] torch.func.vmap(fn) raised RuntimeError" in message
    assert "[compile] torch.compile(fn, fullgraph=True, backend='aot_eager') raised" in message
    assert message.count("-> fn has Python control flow on tensor values") == 4
    assert "pick with torch.where" in message


class _OldStyleMSE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor, target: Tensor) -> Tensor:
        ctx.save_for_backward(input, target)
        return ((input - target) ** 2).mean()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        input, target = ctx.saved_tensors
        d = 2 * (input - target) * grad / input.numel()
        return d, -d


def old_style_mse(input: Tensor, target: Tensor) -> Tensor:
    return _OldStyleMSE.apply(input, target)


def test_catches_an_old_style_autograd_function() -> None:
    message = _failure(old_style_mse, mse_reference, X, Y, skip=NO_COMPILE)
    assert message.splitlines()[0].endswith("failed: jacrev, jacfwd, hessian, vmap")
    assert "must override the setup_context staticmethod" in message
    assert "-> fn uses an old-style torch.autograd.Function (`forward(ctx, ...)`)" in message
    assert "register the backward with @funcloss.custom_backward" in message


def test_catches_a_forward_that_does_not_differentiate() -> None:
    """compile(grad) autodiffs the forward, so a forward that detaches gives wrong gradients."""

    @funcloss.custom_backward
    def detached_forward(input: Tensor, target: Tensor) -> Tensor:
        return ((input - target.detach()) ** 2).mean().detach() + 0 * input.sum()

    detached_forward.backward(make_mse()._backward)
    message = _failure(detached_forward, mse_reference, X, Y, skip=("jacfwd", "hessian"))
    assert message.splitlines()[0].endswith("failed: compile_grad, compile_vmap_grad")
    assert "[compile_grad] compile(grad(fn)) w.r.t. input 0 (`input`) vs the reference's" in message
    assert "[compile_vmap_grad] compile(vmap(grad(fn))) w.r.t. input 0 (`input`)" in message
    assert message.count("the forward itself must differentiate correctly") == 2


def test_catches_a_missing_batching_rule_and_restores_the_fallback_setting() -> None:
    def kl(input: Tensor, target: Tensor) -> Tensor:
        return F.kl_div(input, target, reduction="sum")

    def kl_reference(input: Tensor, target: Tensor) -> Tensor:
        return (target * (target.log() - input)).sum()

    probabilities = torch.softmax(Y, -1)
    was = torch._C._functorch._is_vmap_fallback_enabled()
    torch._C._functorch._set_vmap_fallback_enabled(True)
    try:
        message = _failure(kl, kl_reference, X, probabilities, wrt=[0], skip=NO_COMPILE)
        assert torch._C._functorch._is_vmap_fallback_enabled()
    finally:
        torch._C._functorch._set_vmap_fallback_enabled(was)
    assert message.splitlines()[0].endswith("failed: vmap")
    assert "hit the vmap fallback" in message
    assert "-> an op in fn has no batching rule" in message


def test_catches_wrong_values_naming_the_input() -> None:
    def off(input: Tensor, target: Tensor) -> Tensor:
        return ((input - target) ** 2).sum()

    message = _failure(off, mse_reference, X, Y, skip=NO_COMPILE)
    assert "[value] fn(*inputs) vs reference(*inputs): largest error" in message
    assert "fn's result is 6 times the expected one" in message
    assert "inputs: input=float64 (3, 2) [" in message and "target=float64 (3, 2) [" in message


def test_catches_a_wrong_dtype() -> None:
    message = _failure(
        lambda input, target: mse_reference(input, target).float(),
        mse_reference,
        X,
        Y,
        skip=PROPERTIES[1:],
    )
    assert "[value] fn returns torch.float32, the reference torch.float64" in message


def test_catches_a_module_that_disagrees_with_its_function() -> None:
    class Doubled(torch.nn.Module):
        def forward(self, input: Tensor, target: Tensor) -> Tensor:
            return 2 * mse_reference(input, target)

    message = _failure(make_mse(), mse_reference, X, Y, module=Doubled, skip=PROPERTIES[:-1])
    assert "[module] Doubled(**kwargs)(*inputs) vs fn(*inputs, **kwargs): largest error" in message


# -- options -----------------------------------------------------------------------------------


def test_skip_switches_properties_off_by_name() -> None:
    report = check_loss(make_mse(), mse_reference, X, Y, skip=[*NO_COMPILE, "vmap"])
    assert report.skipped["vmap"] == "switched off"
    assert "vmap" not in report.checked
    with pytest.raises(
        ValueError, match=r"check_loss: `skip` must name properties among .*got vmapp"
    ):
        check_loss(make_mse(), mse_reference, X, Y, skip=["vmapp"])


def test_without_forward_mode_jacfwd_is_skipped_and_said_so() -> None:
    report = check_loss(make_mse(jvp=False), mse_reference, X, Y, skip=NO_COMPILE)
    assert report.skipped["jacfwd"].startswith("fn has no forward mode (my_mse: forward-mode AD")
    assert report.checked["hessian"].startswith(
        "jacrev(jacrev(fn)) matches the reference's autograd Hessian"
    )
    assert "hessian(fn)" not in report.checked["hessian"]


def naive_multi_margin(input: Tensor, target: Tensor) -> Tensor:
    """torch's multi_margin_loss (margin 1): mean of sum_{i != y} max(0, 1 - x_y + x_i) / C."""
    classes = input.shape[1]
    margins = (1 - input.gather(1, target[:, None]) + input).clamp_min(0)
    others = torch.arange(classes) != target[:, None]
    return (margins * others).sum(1).mean() / classes


def test_a_reference_without_double_backward_is_handled() -> None:
    x = torch.tensor([[0.1, 0.5, -0.4], [0.3, -0.1, 0.8]], dtype=torch.float64)  # off the kinks
    y = torch.tensor([1, 2])
    report = check_loss(naive_multi_margin, F.multi_margin_loss, x, y, skip=NO_COMPILE)
    assert report.checked["hessian"].startswith(
        "hessian(fn) matches jacrev(jacrev(fn)) (the reference's double backward raised)"
    )
    report = check_loss(
        naive_multi_margin, F.multi_margin_loss, x, y, skip=NO_COMPILE, reference_second_order=False
    )
    assert "(the reference has no second derivatives)" in report.checked["hessian"]
    assert "gradgradcheck" in report.checked


def test_without_a_reference_derivatives_are_checked_by_finite_differences() -> None:
    report = check_loss(make_mse(), None, X, Y, skip=NO_COMPILE)
    assert report.skipped["value"] == "no reference given"
    assert report.skipped["jacrev"] == "no reference given"
    assert report.checked["jacfwd"].startswith("jacfwd(fn) matches jacrev(fn)")
    assert {"gradcheck", "gradgradcheck", "vmap"} <= set(report.checked)
    message = _failure(make_mse(factor=3.0), None, X, Y, skip=NO_COMPILE)
    # jacfwd (the jvp) and gradcheck disagree with the backward; the Hessians agree with each other.
    assert message.splitlines()[0].endswith("failed: gradcheck, jacfwd")


def test_wrt_and_in_dims() -> None:
    report = check_loss(make_mse(), mse_reference, X, Y, wrt=[1], in_dims=(0, 0), skip=NO_COMPILE)
    assert report.checked["jacrev"].endswith("w.r.t. input 1 (`target`)")
    with pytest.raises(ValueError, match=r"`wrt` must hold positions of floating-point tensor"):
        check_loss(funcloss.cross_entropy, F.cross_entropy, X, torch.tensor([0, 1, 0]), wrt=[1])
    with pytest.raises(ValueError, match=r"`in_dims` must have one entry per input \(2\), got 1"):
        check_loss(make_mse(), mse_reference, X, Y, in_dims=(0,))


def test_integer_inputs_are_not_differentiated_by_default() -> None:
    report = check_loss(
        funcloss.nll_loss,
        F.nll_loss,
        torch.log_softmax(X, 1),
        torch.tensor([0, 1, 1]),
        skip=NO_COMPILE,
    )
    assert report.checked["jacrev"].endswith("w.r.t. input 0 (`input`)")


def test_a_reference_that_raises_is_a_broken_check_not_a_failing_loss() -> None:
    def broken(input: Tensor, target: Tensor) -> Tensor:
        raise KeyError("oops")

    with pytest.raises(
        RuntimeError, match=r"check_loss: the reference raised while computing its value"
    ):
        check_loss(make_mse(), broken, X, Y)


def test_does_not_change_the_callers_random_state() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_loss(make_mse(), mse_reference, X, Y, skip=NO_COMPILE)
    assert torch.equal(torch.rand(3), expected)


# -- strategies --------------------------------------------------------------------------------


@given(
    pair=regression_pairs(shapes(max_dims=2), dtype=torch.float32),
    targets=class_targets(shapes(max_dims=2), 3, ignore_index=-1, dtype=torch.int32),
    soft=probabilities((2, 4), dim=1),
)
def test_strategies_take_a_shape_strategy_and_a_dtype(
    pair: tuple[Tensor, Tensor], targets: Tensor, soft: Tensor
) -> None:
    input, target = pair
    assert input.shape == target.shape and input.dtype == target.dtype == torch.float32
    assert targets.dtype == torch.int32
    assert bool(((targets >= 0) & (targets < 3) | (targets == -1)).all())
    assert bool((targets != -1).any())  # never all ignored: a mean stays defined
    torch.testing.assert_close(soft.sum(1), torch.ones(2, dtype=torch.float64))
