"""Mixed precision: every registry loss under ``torch.autocast("cpu", torch.bfloat16)`` against
torch's own loss under the same autocast.

torch's losses are on autocast's fp32 list: bf16 (and fp32) arguments are cast to fp32 and the
loss runs in fp32, so the result is fp32. The three torch writes as Python compositions
(gaussian_nll_loss, multilabel_soft_margin_loss, triplet_margin_with_distance_loss) keep the
inputs' dtype. funcloss must give torch's output dtype, and be as accurate: its distance from
the exact value (the float64 oracle on the same, already rounded, inputs) is at most twice
torch's, plus the output dtype's rounding (``torch.testing.assert_close``'s tolerance for it).
Two mixes of dtypes: every floating argument in bf16, and only the first one (the model's
output) in bf16 with the rest (targets, class weights, variances) in float32.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.func import grad, vmap

import funcloss

from .registry import SPECS, Case, LossSpec

# (rtol, atol) of the output's rounding: torch.testing.assert_close's defaults.
_ROUNDING = {torch.float32: (1.3e-6, 1e-5), torch.bfloat16: (1.6e-2, 1e-5)}
# funcloss's own options, which torch's linear_cross_entropy does not take.
_FUNCLOSS_ONLY = ("z_loss", "softcap", "chunk_size")
# A deliberate difference (README): torch's l1_loss and mse_loss with `weight=` are Python
# compositions whose result has the inputs' dtype (bf16), unlike their unweighted forms and
# huber_loss(weight=), which are float32. funcloss returns float32 with or without a weight.
_FLOAT32_WHERE_TORCH_PROMOTES = ("l1_loss-weighted", "mse_loss-weighted")
# The -fused specs call a private path of cross_entropy; the public function is covered by the
# other cross_entropy specs (autocast acts before the path is chosen).
AUTOCAST_SPECS = [spec for spec in SPECS if "-fused" not in spec.id]


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def _mixed(case: Case, rest: torch.dtype) -> Case:
    """The first floating argument in bf16, every other floating tensor in ``rest``."""
    args = [_cast(case.args[0], torch.bfloat16), *(_cast(a, rest) for a in case.args[1:])]
    kwargs = {k: _cast(v, rest) for k, v in case.kwargs.items()}
    return Case(tuple(args), kwargs)


def _torch_loss(spec: LossSpec) -> Any:
    if spec.id.startswith("linear_cross_entropy"):

        def torch_linear_cross_entropy(input, linear_weight, target, *bias, **kwargs):
            if bias:
                kwargs["linear_bias"] = bias[0]
            return F.linear_cross_entropy(input, linear_weight, target, **kwargs)

        return torch_linear_cross_entropy
    return spec.oracle


def _without_funcloss_options(spec: LossSpec, case: Case) -> Case:
    if not spec.id.startswith("linear_cross_entropy"):
        return case
    return Case(case.args, {k: v for k, v in case.kwargs.items() if k not in _FUNCLOSS_ONLY[:2]})


def _torch_kwargs(spec: LossSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    if not spec.id.startswith("linear_cross_entropy"):
        return kwargs
    return {k: v for k, v in kwargs.items() if k not in _FUNCLOSS_ONLY}


@pytest.mark.parametrize("rest", [torch.bfloat16, torch.float32], ids=["all-bf16", "fp32-rest"])
@pytest.mark.parametrize("spec", AUTOCAST_SPECS, ids=[spec.id for spec in AUTOCAST_SPECS])
@settings(max_examples=3)
@given(data=st.data())
def test_cpu_autocast_follows_torch(spec: LossSpec, rest: torch.dtype, data: st.DataObject) -> None:
    case = _without_funcloss_options(spec, data.draw(spec.cases(), label="case"))
    reduction = data.draw(st.sampled_from(spec.reductions), label="reduction")
    low = _mixed(case, rest)
    kwargs = {**low.kwargs, "reduction": reduction}
    with torch.autocast("cpu", torch.bfloat16):
        ours = spec.fn(*low.args, **kwargs)
        theirs = _torch_loss(spec)(*low.args, **_torch_kwargs(spec, kwargs))
    expected_dtype = theirs.dtype
    if spec.id in _FLOAT32_WHERE_TORCH_PROMOTES:
        expected_dtype = torch.float32
    assert ours.dtype == expected_dtype, f"funcloss {ours.dtype}, torch {theirs.dtype}"
    exact_case = Case(
        tuple(_cast(a, torch.float64) for a in low.args),
        {k: _cast(v, torch.float64) for k, v in kwargs.items()},
    )
    exact = spec.oracle(*exact_case.args, **exact_case.kwargs)
    ours_error = (ours.double() - exact).abs()
    torch_error = (theirs.double() - exact).abs()
    rtol, atol = _ROUNDING[theirs.dtype]
    allowed = 2 * torch_error + atol + rtol * exact.abs()
    finite = torch.isfinite(exact)
    assert torch.equal(torch.isfinite(ours), finite)
    worst = (ours_error - allowed)[finite]
    assert worst.numel() == 0 or worst.max() <= 0, (
        f"funcloss is {ours_error.max():.3g} from the exact value, torch {torch_error.max():.3g}"
    )


def test_cross_entropy_with_a_float32_weight_under_autocast() -> None:
    """The issue's case: bf16 logits, fp32 class weight, as Lightning's bf16-mixed runs it."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=generator).bfloat16()
    target = torch.tensor([0, 3, 1, 4])
    weight = torch.rand(5, generator=generator) + 0.5
    with torch.autocast("cpu", torch.bfloat16):
        ours = funcloss.cross_entropy(logits, target, weight=weight)
        theirs = F.cross_entropy(logits, target, weight=weight)
        module = funcloss.nn.CrossEntropyLoss(weight=weight)(logits, target)
    assert ours.dtype == theirs.dtype == module.dtype == torch.float32
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(module, theirs)


def test_gradient_keeps_the_input_dtype_under_autocast() -> None:
    x = torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True)
    target = torch.tensor([0, 3, 1, 4])
    with torch.autocast("cpu", torch.bfloat16):
        loss = funcloss.cross_entropy(x, target)
    (gradient,) = torch.autograd.grad(loss, x)
    x_torch = x.detach().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        expected = F.cross_entropy(x_torch, target)
    (expected_gradient,) = torch.autograd.grad(expected, x_torch)
    assert gradient.dtype == torch.bfloat16
    torch.testing.assert_close(gradient, expected_gradient)


def test_autocast_under_vmap_and_compile() -> None:
    x = torch.randn(3, 4, 5, dtype=torch.bfloat16)
    target = torch.tensor([0, 3, 1, 4])
    weight = torch.rand(5) + 0.5

    def total(x: Tensor) -> Tensor:
        return funcloss.cross_entropy(x, target, weight=weight)

    with torch.autocast("cpu", torch.bfloat16):
        expected = torch.stack([F.cross_entropy(row, target, weight=weight) for row in x])
        batched = vmap(total)(x)
        torch.compiler.reset()
        compiled = torch.compile(vmap(grad(total)), fullgraph=True, backend="aot_eager")(x)
        per_sample = vmap(grad(total))(x)
    assert batched.dtype == torch.float32
    torch.testing.assert_close(batched, expected)
    torch.testing.assert_close(compiled, per_sample)


def test_float64_is_left_alone() -> None:
    """autocast's fp32 cast skips float64, in torch and here."""
    x = torch.randn(4, 5, dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 4])
    with torch.autocast("cpu", torch.bfloat16):
        ours = funcloss.cross_entropy(x, target)
        theirs = F.cross_entropy(x, target)
    assert ours.dtype == theirs.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_every_registry_loss_declares_its_autocast_policy() -> None:
    # test_api.py makes sure every public loss has a spec.
    names = sorted({spec.id.split("-")[0] for spec in SPECS})
    assert {"cross_entropy", "ctc_loss", "mse_loss"} <= set(names)  # torch's 22 and the rest
    for name in names:
        assert getattr(funcloss, name).__autocast__ in ("float32", "promoted"), name
