"""linear_cross_entropy: golden values, parity with torch (reference and chunked paths) and the
naive float64 formula, the eager fused path, dtypes, memory and the module.

The transform matrix (test_transforms.py) runs the transform-safe path; the tests here add the
plain-eager training path (gradients computed during the forward pass), which only runs outside
torch.func transforms and torch.compile.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch.func import grad, vmap
from torch.utils._python_dispatch import TorchDispatchMode

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .specs_linear import _cases, naive_linear_cross_entropy


def _problem(n: int = 6, h: int = 3, v: int = 5, dtype: torch.dtype = torch.float64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=generator, dtype=dtype)
    w = torch.randn(v, h, generator=generator, dtype=dtype)
    b = torch.randn(v, generator=generator, dtype=dtype)
    y = torch.randint(0, v, (n,), generator=generator)
    return x, w, b, y


def _value_and_grads(fn, x, w, y, b=None, reduction="mean", create_graph=False, **kwargs):
    leaves = [t.detach().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    if b is not None:
        kwargs["linear_bias"] = leaves[2]
    value = fn(leaves[0], leaves[1], y, reduction=reduction, **kwargs)
    grads = torch.autograd.grad(value.sum(), leaves, create_graph=create_graph)
    return value, grads, leaves


# -- golden values ---------------------------------------------------------------------------


def test_golden_values() -> None:
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 2])
    # torch 2.13 F.linear_cross_entropy
    assert_close(
        funcloss.linear_cross_entropy(h, w, y, reduction="none"),
        torch.tensor([0.8619948, 0.7586237]),
        rtol=1e-6,
    )
    # by hand: logits [1, 0, 1] and [0, 2, 2], lse = log(2e + 1) and log(1 + 2e^2), so
    # (lse_1 - 1 + lse_2 - 2 + 0.1 (lse_1^2 + lse_2^2)) / 2
    assert_close(
        funcloss.linear_cross_entropy(h, w, y, z_loss=0.1),
        torch.tensor(1.3641607),
        rtol=1e-6,
    )


# -- parity: values and gradients in plain eager mode (the fused path for "mean"/"sum") --------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@given(data=st.data())
def test_eager_values_and_gradients_match_oracle(reduction: str, data: st.DataObject) -> None:
    case = data.draw(_cases(bias=True), label="case")
    x, w, y, b = case.args
    ours = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, reduction, **case.kwargs)
    expected = _value_and_grads(naive_linear_cross_entropy, x, w, y, b, reduction, **case.kwargs)
    assert_close(ours[0], expected[0], "value")
    for name, g, e in zip(("input", "weight", "bias"), ours[1], expected[1], strict=True):
        assert_close(g, e, f"grad {name}")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@given(data=st.data())
def test_eager_double_backward_matches_oracle(reduction: str, data: st.DataObject) -> None:
    """create_graph=True through the fused path recomputes from the inputs: exact Hessian-vector
    products, never a derivative through the gradients stored in forward."""
    case = data.draw(_cases(bias=True), label="case")
    x, w, y, b = case.args
    results = []
    for fn in (funcloss.linear_cross_entropy, naive_linear_cross_entropy):
        _, grads, leaves = _value_and_grads(fn, x, w, y, b, reduction, True, **case.kwargs)
        probe = sum((g * torch.cos(torch.arange(g.numel()).reshape(g.shape))).sum() for g in grads)
        results.append(torch.autograd.grad(probe, leaves))
    for g, e in zip(*results, strict=True):
        assert_close(g, e, "Hessian-vector product")


def test_matches_torch_chunked_path() -> None:
    # torch 2.13 F.linear_cross_entropy(..., options=LinearCrossEntropyOptions()): the options
    # its chunked path has (weight, ignore_index, bias, reductions).
    x, w, b, y = _problem(n=9, v=7)
    y[::4] = 3
    weight = torch.rand(7, dtype=torch.float64) + 0.5
    options = torch.nn.LinearCrossEntropyOptions()
    for reduction in ("none", "mean", "sum"):
        kwargs = {"weight": weight, "ignore_index": 3, "reduction": reduction}

        def theirs(x, w, y, linear_bias=None, **kw):
            return F.linear_cross_entropy(x, w, y, linear_bias=linear_bias, options=options, **kw)

        ours = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, chunk_size=2, **kwargs)
        expected = _value_and_grads(theirs, x, w, y, b, **kwargs)
        assert_close(ours[0], expected[0], "value")
        for g, e in zip(ours[1], expected[1], strict=True):
            assert_close(g, e, "gradient")


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 6, 100])
def test_chunk_size_changes_nothing(chunk_size: int) -> None:
    x, w, b, y = _problem()
    kwargs = {"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 3.0}
    ours = _value_and_grads(
        funcloss.linear_cross_entropy, x, w, y, b, chunk_size=chunk_size, **kwargs
    )
    expected = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, **kwargs)
    assert_close(ours[0], expected[0])
    for g, e in zip(ours[1], expected[1], strict=True):
        assert_close(g, e)


def test_all_rows_ignored_gives_nan_mean_and_zero_gradients() -> None:
    # As torch 2.13 F.cross_entropy: the mean over no rows is nan, the gradient is zero.
    x, w, b, y = _problem()
    y = torch.full_like(y, -100)
    value, grads, _ = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b)
    assert value.isnan()
    for g in grads:
        assert torch.equal(g, torch.zeros_like(g))
    per_row = grad(lambda x: funcloss.linear_cross_entropy(x, w, y))(x)
    assert torch.equal(per_row, torch.zeros_like(x))


def test_retain_graph_second_backward_recomputes() -> None:
    x, w, b, y = _problem()
    x.requires_grad_()
    loss = funcloss.linear_cross_entropy(x, w, y, linear_bias=b, z_loss=0.1)
    (first,) = torch.autograd.grad(loss, x, retain_graph=True)
    (second,) = torch.autograd.grad(loss, x)
    assert_close(first, second)


def test_frozen_weight_gets_no_gradient() -> None:
    x, w, _, y = _problem()
    x.requires_grad_()
    funcloss.linear_cross_entropy(x, w, y).backward()
    expected = _value_and_grads(naive_linear_cross_entropy, x, w, y)[1][0]
    assert w.grad is None
    assert_close(x.grad, expected)


def test_unbatched_input() -> None:
    x, w, b, y = _problem(n=1)
    for reduction in ("none", "mean", "sum"):
        ours = funcloss.linear_cross_entropy(x[0], w, y[0], linear_bias=b, reduction=reduction)
        expected = F.linear_cross_entropy(x[0], w, y[0], linear_bias=b, reduction=reduction)
        assert ours.shape == expected.shape == ()
        assert_close(ours, expected)


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("vectorize", [False, True])
def test_autograd_functional_jacobian_and_hessian(reduction: str, vectorize: bool) -> None:
    """torch.autograd.functional batches the backward's grad with its own (legacy) vmap when
    vectorize=True: the eager in-place paths must step aside."""
    x, w, b, y = _problem()
    kwargs = {"linear_bias": b, "label_smoothing": 0.1, "z_loss": 0.1, "reduction": reduction}

    def ours(x):
        return funcloss.linear_cross_entropy(x, w, y, **kwargs)

    def expected(x):
        return naive_linear_cross_entropy(x, w, y, **kwargs)

    jacobian = torch.autograd.functional.jacobian
    assert_close(jacobian(ours, x, vectorize=vectorize), jacobian(expected, x))
    if reduction == "mean":
        hessian = torch.autograd.functional.hessian
        assert_close(hessian(ours, x, vectorize=vectorize), hessian(expected, x))


def test_forward_mode_in_eager() -> None:
    x, w, b, y = _problem()
    tangent = torch.randn_like(x)
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(x, tangent)
        out = funcloss.linear_cross_entropy(dual, w, y, linear_bias=b, softcap=2.0)
        ours = torch.autograd.forward_ad.unpack_dual(out).tangent
    _, expected = torch.func.jvp(
        lambda x: naive_linear_cross_entropy(x, w, y, linear_bias=b, softcap=2.0), (x,), (tangent,)
    )
    assert_close(ours, expected)


# -- torch.func ------------------------------------------------------------------------------


def test_grad_with_respect_to_input_weight_and_bias() -> None:
    x, w, b, y = _problem()
    kwargs = {"label_smoothing": 0.1, "z_loss": 0.05, "softcap": 4.0, "chunk_size": 4}

    def ours(x, w, b):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, **kwargs)

    def expected(x, w, b):
        return naive_linear_cross_entropy(x, w, y, linear_bias=b, **kwargs)

    for g, e in zip(
        grad(ours, (0, 1, 2))(x, w, b), grad(expected, (0, 1, 2))(x, w, b), strict=True
    ):
        assert_close(g, e)


def test_per_sample_weight_gradients() -> None:
    """vmap(grad) w.r.t. the output layer, as DP-SGD needs, against a loop."""
    x, w, b, y = _problem(n=5)

    def loss(w, b, x, y):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, z_loss=0.1)

    per_sample = vmap(grad(loss, (0, 1)), in_dims=(None, None, 0, 0))(w, b, x, y)

    def expected_loss(w, b, x, y):
        return naive_linear_cross_entropy(x, w, y, linear_bias=b, z_loss=0.1)

    for i in range(5):
        expected = grad(expected_loss, (0, 1))(w, b, x[i], y[i])
        assert_close(per_sample[0][i], expected[0])
        assert_close(per_sample[1][i], expected[1])


@pytest.mark.slow
def test_compile_inductor_forward_and_backward() -> None:
    x, w, b, y = _problem(n=33, h=8, v=50, dtype=torch.float32)

    def loss(x, w, b):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, z_loss=1e-3, chunk_size=8)

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    results = []
    for fn in (compiled, loss):
        leaves = [t.detach().requires_grad_() for t in (x, w, b)]
        value = fn(*leaves)
        results.append((value, *torch.autograd.grad(value, leaves)))
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# -- dtypes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_bf16_weight_gradient_accumulates_in_fp32(reduction: str) -> None:
    """Many chunks, bf16 inputs: the weight gradient is the fp32 one rounded once to bf16 (a bf16
    running sum would drift by many ulps over 64 chunks)."""
    x, w, _, y = _problem(n=512, h=8, v=16, dtype=torch.float32)
    x16, w16 = x.bfloat16(), w.bfloat16()
    ours = _value_and_grads(
        funcloss.linear_cross_entropy, x16, w16, y, reduction=reduction, chunk_size=8
    )
    expected = _value_and_grads(
        funcloss.linear_cross_entropy, x16.float(), w16.float(), y, reduction=reduction
    )
    assert ours[1][1].dtype == torch.bfloat16
    torch.testing.assert_close(
        ours[1][1].float(), expected[1][1].bfloat16().float(), rtol=0, atol=0
    )
    torch.testing.assert_close(ours[0].float(), expected[0].bfloat16().float(), rtol=0, atol=0)
    funcloss_grad = grad(
        lambda w: funcloss.linear_cross_entropy(x16, w, y, reduction="sum", chunk_size=8)
    )(w16)
    torch.testing.assert_close(
        funcloss_grad.float(), expected[1][1].bfloat16().float(), rtol=0, atol=0
    )


# -- memory: the (N, V) logits never exist -----------------------------------------------------


class _LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_no_tensor_as_large_as_the_logits(reduction: str) -> None:
    n, v, chunk = 64, 40, 8
    x, w, b, y = _problem(n=n, h=4, v=v, dtype=torch.float32)
    leaves = [t.requires_grad_() for t in (x, w, b)]
    with _LargestTensor() as mode:
        loss = funcloss.linear_cross_entropy(
            *leaves[:2], y, linear_bias=leaves[2], chunk_size=chunk, reduction=reduction
        )
        loss.sum().backward()
    assert mode.largest == chunk * v


# -- module ----------------------------------------------------------------------------------


def test_module() -> None:
    x, w, b, y = _problem()
    module = fnn.LinearCrossEntropyLoss(
        weight=torch.ones(5, dtype=torch.float64), z_loss=0.1, softcap=5.0
    )
    assert_close(
        module(x, w, y, linear_bias=b),
        funcloss.linear_cross_entropy(
            x,
            w,
            y,
            linear_bias=b,
            weight=torch.ones(5, dtype=torch.float64),
            z_loss=0.1,
            softcap=5.0,
        ),
    )
    assert list(module.state_dict()) == ["weight"]
    assert repr(module).startswith(
        "LinearCrossEntropyLoss(weight=tensor(shape=(5,)), reduction='mean'"
    )
    clone = pickle.loads(pickle.dumps(module))
    assert_close(clone(x, w, y), module(x, w, y))
    with pytest.raises(TypeError, match=r"LinearCrossEntropyLoss: .*linear_bias"):
        fnn.LinearCrossEntropyLoss(linear_bias=b)


def test_loss_module_forward_args_must_name_parameters() -> None:
    with pytest.raises(TypeError, match=r"loss_module: `forward_args` must name parameters of"):
        funcloss.loss_module(funcloss.linear_cross_entropy, forward_args=("bias",))
