"""Generated modules: they mirror torch's classes and behave exactly like their functions."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .registry import SPECS, LossSpec

# One spec per generated module class: the first registered (the plain batched mode).
# LinearCrossEntropyLoss is torch's hand-written class (it owns its nn.Linear): tests/test_linear.py
# compares it with torch's.
MODULE_SPECS = list(
    {
        spec.module: spec for spec in reversed(SPECS) if spec.module.__module__ == "funcloss.nn"
    }.values()
)
MODULE_PARAMS = [pytest.param(spec, id=spec.module.__name__) for spec in MODULE_SPECS]
# The modules that mirror a torch.nn class (the catalogue's losses beyond torch have none).
TORCH_PARAMS = [
    pytest.param(spec, id=spec.module.__name__)
    for spec in MODULE_SPECS
    if hasattr(torch.nn, spec.module.__name__)
]
LEGACY = {"size_average", "reduce"}


def _draw(data: st.DataObject, spec: LossSpec):
    return data.draw(spec.cases(), label="case")


@pytest.mark.parametrize("spec", MODULE_PARAMS)
@given(data=st.data())
def test_module_matches_function(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    reduction = data.draw(st.sampled_from(spec.reductions), label="reduction")
    module = spec.module(**case.kwargs, reduction=reduction)
    assert_close(module(*case.args), spec.fn(*case.args, **case.kwargs, reduction=reduction))


@pytest.mark.parametrize("spec", TORCH_PARAMS)
def test_constructor_mirrors_torch(spec: LossSpec) -> None:
    torch_class = getattr(torch.nn, spec.module.__name__, None)
    assert torch_class is not None, f"torch.nn has no {spec.module.__name__}"
    ours = list(inspect.signature(spec.module).parameters)
    parameters = inspect.signature(torch_class).parameters.values()
    theirs = [p for p in parameters if p.name not in LEGACY]
    positional = [p.name for p in theirs if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    # torch's positional arguments in torch's order, its keyword-only ones anywhere; funcloss
    # may add config its function takes after them (e.g. the elementwise `weight=` that torch
    # 2.13's l1_loss has but L1Loss lacks).
    assert ours[: len(positional)] == positional
    assert {p.name for p in theirs} <= set(ours)
    forward = [p for p in inspect.signature(spec.module.forward).parameters if p != "self"]
    function = [
        name
        for name, p in inspect.signature(spec.fn).parameters.items()
        if p.default is inspect.Parameter.empty
    ]
    # The function's tensors, then any defaulted argument the module takes in forward
    # (`linear_bias`: the model's output layer owns it).
    assert forward[: len(function)] == function
    assert forward == list(spec.module._inputs)


@pytest.mark.parametrize("spec", TORCH_PARAMS)
@settings(max_examples=3)
@given(data=st.data())
def test_state_dict_matches_torch(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    torch_class = getattr(torch.nn, spec.module.__name__)
    torch_kwargs = {
        k: v for k, v in case.kwargs.items() if k in inspect.signature(torch_class).parameters
    }
    ours = spec.module(**case.kwargs).state_dict()
    theirs = torch_class(**torch_kwargs).state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key])


@pytest.mark.parametrize("spec", MODULE_PARAMS)
@settings(max_examples=2)
@given(data=st.data())
def test_pickle_deepcopy_to_and_repr(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    module = spec.module(**case.kwargs)
    expected = module(*case.args)
    for clone in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert type(clone) is type(module)
        assert_close(clone(*case.args), expected)
    text = repr(module)
    default = inspect.signature(spec.fn).parameters["reduction"].default  # torch's: "mean"
    assert text.startswith(f"{spec.module.__name__}(") and f"reduction={default!r}" in text
    moved = module.to(torch.float32)
    for buffer in moved.buffers():
        assert buffer.dtype == torch.float32


@pytest.mark.parametrize("spec", MODULE_PARAMS)
@settings(max_examples=2)
@given(data=st.data())
def test_functional_call_and_compile(spec: LossSpec, data: st.DataObject) -> None:
    case = _draw(data, spec)
    module = spec.module(**case.kwargs)
    buffers = dict(module.named_buffers())
    if buffers:
        doubled = {name: 2 * value for name, value in buffers.items()}
        swapped = torch.func.functional_call(module, doubled, case.args)
        kwargs = dict(case.kwargs, **doubled)
        assert_close(swapped, spec.fn(*case.args, **kwargs))
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close(compiled(*case.args), module(*case.args))


def test_misspelt_constructor_argument_raises() -> None:
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: .*label_smothing"):
        fnn.CrossEntropyLoss(label_smothing=0.1)


def test_tensor_config_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"CrossEntropyLoss: `weight` must be a torch\.Tensor"):
        fnn.CrossEntropyLoss(weight=[1.0, 2.0])


def test_weight_is_a_buffer_that_moves() -> None:
    module = fnn.CrossEntropyLoss(weight=torch.ones(3))
    assert dict(module.named_buffers()).keys() == {"weight"}
    assert module.double().weight.dtype == torch.float64
    assert fnn.CrossEntropyLoss().state_dict() == {}


def test_exports_are_sorted_and_complete() -> None:
    assert fnn.__all__ == sorted(fnn.__all__)
    for name in fnn.__all__:
        cls = getattr(fnn, name)
        assert cls.__module__ == "funcloss.nn" and cls.__qualname__ == name


# A user's own loss, wrapped with the decorator at module level (so it pickles).
@funcloss.loss_module
def ScaledL2Loss(input: Tensor, target: Tensor, scale: float = 1.0, offset: Tensor | None = None):
    shift = 0 if offset is None else offset
    return scale * ((input - target - shift) ** 2).mean()


def test_user_loss_module() -> None:
    module = ScaledL2Loss(scale=2.0, offset=torch.ones(2))
    x, y = torch.tensor([1.0, 3.0]), torch.zeros(2)
    assert_close(module(x, y), torch.tensor(4.0))
    assert list(module.state_dict()) == ["offset"]
    assert repr(module) == "ScaledL2Loss(scale=2.0, offset=tensor(shape=(2,)))"
    clone = pickle.loads(pickle.dumps(module))
    assert_close(clone(x, y), module(x, y))
    per_sample = torch.func.vmap(module)(torch.stack([x, 2 * x]), torch.zeros(2, 2))
    assert_close(per_sample, torch.stack([module(x, y), module(2 * x, y)]))


def test_loss_module_rejects_non_functions() -> None:
    with pytest.raises(TypeError, match="loss_module: `fn` must be a function"):
        funcloss.loss_module(42)
