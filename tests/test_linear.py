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
from torch.func import grad, jacfwd, jacrev, vmap
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


def test_second_backward_of_a_retained_graph_gives_the_first_ones_bits() -> None:
    # a drawn K-dim softcap case where the recomputation's fresh products rounded otherwise
    # than the fused pass's products into slices (gradcheck: "Backward is not reentrant")
    dtype = torch.float64
    x = torch.zeros(9, dtype=dtype).index_fill_(0, torch.tensor([3]), 1.0).view(3, 3)
    w = torch.zeros(24, dtype=dtype)
    w[6], w[15], w[18] = 1.0, 1.0, 0.25
    w = w.view(2, 2, 2, 3)
    b = torch.zeros(2, 2, 2, dtype=dtype)
    y = torch.full((3, 2, 2, 2), 0.5, dtype=dtype)
    inputs = tuple(t.requires_grad_() for t in (x, w, b))

    def loss(x, w, b):
        return funcloss.linear_cross_entropy(
            x, w, y, linear_bias=b, softcap=1.0, chunk_size=1, reduction="sum"
        )

    value = loss(*inputs)
    first = torch.autograd.grad(value, inputs, retain_graph=True)
    second = torch.autograd.grad(value, inputs)
    assert all(torch.equal(a, c) for a, c in zip(first, second, strict=True))
    assert torch.autograd.gradcheck(loss, inputs)


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


def _torch_and_ours(*args, **kwargs):
    """torch's LinearCrossEntropyLoss and ours with the same arguments and parameters."""
    torch.manual_seed(0)
    theirs = torch.nn.LinearCrossEntropyLoss(*args, **kwargs)
    ours = fnn.LinearCrossEntropyLoss(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize(
    ("out_features", "bias", "probabilities"),
    [((), False, False), ((), True, True), ((4, 3), False, False), ((2,), True, True)],
)
def test_module_is_torchs_class(out_features, bias, probabilities) -> None:
    weight = torch.rand(6, dtype=torch.float64) + 0.5
    kwargs = {"out_features": out_features, "bias": bias, "dtype": torch.float64}
    kwargs |= {"weight": weight, "label_smoothing": 0.1}
    if not probabilities:
        kwargs["ignore_index"] = 2
    theirs, ours = _torch_and_ours(5, 6, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.linear.weight.shape == theirs.linear.weight.shape
    input = torch.randn(4, 5, dtype=torch.float64)
    if probabilities:
        target = torch.randn(4, 6, *out_features, dtype=torch.float64).softmax(1)
    else:
        target = torch.randint(0, 6, (4, *out_features))
    results = []
    for module in (theirs, ours):
        x = input.clone().requires_grad_()
        loss = module(x, target)
        params = [p for p in module.parameters()]
        results.append((loss, *torch.autograd.grad(loss, [x, *params])))
    for got, expected in zip(results[1], results[0], strict=True):
        assert_close(got, expected)
    # torch's repr, then funcloss's extras
    torch_text = repr(theirs)
    head, child = torch_text.split("\n", 2)[1], torch_text.split("\n", 2)[2]
    assert repr(ours).startswith(f"LinearCrossEntropyLoss(\n{head}, z_loss=0.0, softcap=None")
    assert repr(ours).endswith(child)


def test_module_extras_pickle_and_errors() -> None:
    module = fnn.LinearCrossEntropyLoss(3, 5, bias=True, z_loss=0.1, softcap=5.0, chunk_size=2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 4, 2])
    expected = funcloss.linear_cross_entropy(
        x, module.linear.weight, y, linear_bias=module.linear.bias, z_loss=0.1, softcap=5.0
    )
    assert_close(module(x, y), expected)
    clone = pickle.loads(pickle.dumps(module))
    assert_close(clone(x, y), module(x, y))
    assert fnn.LinearCrossEntropyLoss.__module__ == "funcloss.nn"
    with pytest.raises(
        ValueError, match=r"LinearCrossEntropyLoss: `weight` must have shape \(5,\)"
    ):
        fnn.LinearCrossEntropyLoss(3, 5, weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"LinearCrossEntropyLoss: `label_smoothing` must be in"):
        fnn.LinearCrossEntropyLoss(3, 5, label_smoothing=2.0)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'linear_bias'"):
        fnn.LinearCrossEntropyLoss(3, 5, linear_bias=torch.zeros(5))


def test_module_under_functional_call_vmap_grad_and_compile() -> None:
    module = fnn.LinearCrossEntropyLoss(3, 4, out_features=(2,), bias=True)
    x, y = torch.randn(6, 3), torch.randint(0, 4, (6, 2))
    params = {k: v.detach() for k, v in module.named_parameters()}

    def per_sample(params, x, y):
        return torch.func.functional_call(module, params, (x[None], y[None]))

    grads = vmap(grad(per_sample), in_dims=(None, 0, 0))(params, x, y)
    for i in (0, 5):
        expected = torch.autograd.grad(module(x[i : i + 1], y[i : i + 1]), module.parameters())
        assert_close(grads["linear.weight"][i], expected[0])
        assert_close(grads["linear.bias"][i], expected[1])
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    assert_close(compiled(x, y), module(x, y))


# -- K-dimensional outputs, probabilities and options, against torch ---------------------------


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("probabilities", [False, True])
def test_k_dimensional_and_probabilities_match_torch(reduction: str, probabilities: bool) -> None:
    # torch 2.13 F.linear_cross_entropy (reference path); eager, so the fused path for mean/sum
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    w = torch.randn(3, 2, 2, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(3, 2, 2, generator=generator, dtype=torch.float64)
    weight = torch.rand(3, generator=generator, dtype=torch.float64) + 0.5
    kwargs = {"weight": weight, "label_smoothing": 0.2, "reduction": reduction}
    if probabilities:
        y = torch.randn(5, 3, 2, 2, generator=generator, dtype=torch.float64).softmax(1)
    else:
        y = torch.randint(0, 3, (5, 2, 2), generator=generator)
        y[0, 1] = 1
        kwargs["ignore_index"] = 1
    ours = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, chunk_size=2, **kwargs)
    expected = _value_and_grads(F.linear_cross_entropy, x, w, y, b, **kwargs)
    assert ours[0].shape == expected[0].shape
    for got, want in zip((ours[0], *ours[1]), (expected[0], *expected[1]), strict=True):
        assert_close(got, want)


def test_probability_target_gradient_and_promotion() -> None:
    x, w, _, _ = _problem(n=4, v=5, dtype=torch.float32)
    q = torch.randn(4, 5, dtype=torch.float64).softmax(1).requires_grad_()
    ours = funcloss.linear_cross_entropy(x, w, q)
    theirs = F.linear_cross_entropy(x, w, q)
    assert ours.dtype == theirs.dtype == torch.float64  # as torch: the promoted dtype
    # torch's logits are float32 (then promoted), ours float64 from the start: float32 rounding
    close = {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(ours, theirs, **close)
    grads = [torch.autograd.grad(loss, q)[0] for loss in (ours, theirs)]
    torch.testing.assert_close(*grads, **close)


def test_options_steer_the_chunk(monkeypatch) -> None:
    options = torch.nn.LinearCrossEntropyOptions
    x, w, b, y = _problem(n=37, v=7)
    expected = _value_and_grads(F.linear_cross_entropy, x, w, y, b)
    seen = []
    chunks = funcloss._linear._chunks

    def recording(num_rows, size):
        seen.append(size)
        return chunks(num_rows, size)

    monkeypatch.setattr(funcloss._linear, "_chunks", recording)
    for option, size in [
        (options(batch_chunk_size=4), 4),
        (options(chunking_method="aspect_ratio"), None),
        (options(acc_dtype=torch.float64, allow_retain_graph=True, acc_policy="compact"), 37),
        (None, 37),
    ]:
        seen.clear()
        ours = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, options=option)
        for got, want in zip((ours[0], *ours[1]), (expected[0], *expected[1]), strict=True):
            assert_close(got, want)
        if size is None:  # torch's rule for "aspect_ratio"
            size = option._adjust(37, 3, 7, torch.float64).batch_chunk_size
        assert set(seen) == {size}


def test_acc_dtype_float64_computes_in_float64() -> None:
    x, w, b, y = _problem(n=8, v=6, dtype=torch.float32)
    float64 = funcloss.linear_cross_entropy(x.double(), w.double(), y, linear_bias=b.double())
    ours = funcloss.linear_cross_entropy(
        x, w, y, linear_bias=b, options=torch.nn.LinearCrossEntropyOptions(acc_dtype=torch.float64)
    )
    assert ours.dtype == torch.float32
    # computed in float64, then rounded to float32 once
    torch.testing.assert_close(ours, float64.float(), rtol=0, atol=0)


# -- precision: float32 against the float64 Jacobian ------------------------------------------


def _jacobian_distances(seed: int) -> dict[str, float]:
    """Relative distance of torch's and funcloss's float32 Jacobians w.r.t. input from the
    float64 one, with weight + ignore_index + label_smoothing and logits of size ~100."""
    generator = torch.Generator().manual_seed(seed)
    h = torch.rand(8, 8, generator=generator, dtype=torch.float64) * 18 - 9
    w = torch.rand(6, 8, generator=generator, dtype=torch.float64) * 18 - 9
    y = torch.randint(0, 6, (8,), generator=generator)
    y[1] = 1
    weight = torch.rand(6, generator=generator, dtype=torch.float64) * 8.9 + 0.1
    kw = {"ignore_index": 1, "label_smoothing": 0.1}
    ref = jacrev(lambda h: F.cross_entropy(h @ w.T, y, weight=weight, **kw))(h)
    distances = {}
    for name, fn in (
        ("torch", F.linear_cross_entropy),
        ("funcloss", funcloss.linear_cross_entropy),
    ):
        jac = jacrev(lambda h, fn=fn: fn(h, w.float(), y, weight=weight.float(), **kw))(h.float())
        distances[name] = ((jac.double() - ref).norm() / ref.norm()).item()
    return distances


def test_float32_jacobian_is_as_close_to_float64_as_torchs() -> None:
    # The mean over 20 draws (one draw's rounding is luck). Before the softmax was computed as
    # exp(z - max) / sum (it was exp(z - lse)), funcloss's was 2.8x torch's.
    runs = [_jacobian_distances(seed) for seed in range(20)]
    mean = {name: sum(run[name] for run in runs) / len(runs) for name in runs[0]}
    assert mean["funcloss"] <= 2 * mean["torch"], mean


# -- float64 under transforms: no float32 intermediate ----------------------------------------


@pytest.mark.parametrize("probabilities", [False, True])
def test_float64_under_transforms_matches_float64_torch(probabilities: bool) -> None:
    x, w, b, y = _problem(n=5, v=4)
    kwargs = {"weight": torch.rand(4, dtype=torch.float64) + 0.5, "label_smoothing": 0.1}
    if probabilities:
        y = torch.randn(5, 4, dtype=torch.float64).softmax(1)
    else:
        y[1] = 2
        kwargs["ignore_index"] = 2

    def ours(x):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, chunk_size=2, **kwargs)

    def theirs(x):
        return F.linear_cross_entropy(x, w, y, linear_bias=b, **kwargs)

    tight = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(jacrev(ours)(x), jacrev(theirs)(x), **tight)
    torch.testing.assert_close(jacfwd(ours)(x), jacrev(theirs)(x), **tight)
    per_row = {"reduction": "none", **kwargs}
    torch.testing.assert_close(
        vmap(lambda x, y: funcloss.linear_cross_entropy(x, w, y, **per_row))(x, y),
        F.linear_cross_entropy(x, w, y, **per_row),
        **tight,
    )


def test_loss_module_forward_args_must_name_parameters() -> None:
    with pytest.raises(TypeError, match=r"loss_module: `forward_args` must name parameters of"):
        funcloss.loss_module(funcloss.linear_cross_entropy, forward_args=("bias",))


# -- where: class masks (the logits' shape) remove classes from every softmax -------------------
#
# Oracles: torch's autograd through F.cross_entropy on the explicit logits with the removed
# classes at -inf, and, for a (1, C) mask shared by every row, the naive formula on the kept
# rows of linear_weight (label smoothing, z-loss and softcap then see only the kept classes).


def _gradients(loss: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk_size", [None, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_mask_equals_minus_inf_logits(reduction: str, chunk_size, weighted: bool) -> None:
    # "mean"/"sum" with gradients take the eager fused path, "none" the recomputing one.
    x, w, b, _ = _problem(n=5, v=4)
    allowed = torch.rand(5, 4, generator=torch.Generator().manual_seed(1)) < 0.6
    allowed[:, 2] = True
    target = torch.tensor([2, 2, -100, 2, 2])
    target[0] = int(allowed[0].nonzero()[0])
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64) if weighted else None
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    ours = funcloss.linear_cross_entropy(
        x,
        w,
        target,
        linear_bias=b,
        weight=weight,
        reduction=reduction,
        chunk_size=chunk_size,
        where=allowed,
    )
    logits = (x @ w.T + b).masked_fill(~allowed, -torch.inf)
    theirs = F.cross_entropy(logits, target, weight, reduction=reduction)
    assert_close(ours, theirs, "value")
    for g_ours, g_theirs in zip(
        _gradients(ours.sum(), x, w, b), _gradients(theirs.sum(), x, w, b), strict=True
    ):
        assert_close(g_ours, g_theirs, "gradient")


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(
    "options",
    [
        {"label_smoothing": 0.3},
        {"label_smoothing": 0.2, "z_loss": 0.1, "softcap": 2.0, "weight": True},
        {"z_loss": 0.3, "ignore_index": 1},
    ],
)
def test_vocabulary_mask_equals_kept_rows_of_the_weight(reduction: str, options: dict) -> None:
    x, w, _, _ = _problem(n=6, v=5)
    kept = torch.tensor([True, False, True, True, False])
    columns = kept.nonzero().squeeze(1)
    target = torch.tensor([0, 2, 3, 3, 0, 2])
    remapped = torch.cumsum(kept.long(), 0)[target] - 1
    options = dict(options)
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5, 0.7], dtype=torch.float64)
    if options.pop("weight", False):
        options["weight"] = weight
    kept_options = dict(options)
    if "weight" in options:
        kept_options["weight"] = weight[columns]
    if "ignore_index" in options:  # class 2 -> kept index 1: ignore the same rows in both
        options["ignore_index"] = 2
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    ours = funcloss.linear_cross_entropy(
        x, w, target, reduction=reduction, where=kept[None], **options
    )
    theirs = naive_linear_cross_entropy(
        x, w[columns], remapped, reduction=reduction, **kept_options
    )
    assert_close(ours, theirs, "value")
    g_ours, g_theirs = _gradients(ours.sum(), x, w), _gradients(theirs.sum(), x, w)
    assert_close(g_ours, g_theirs, "gradients")
    assert (g_ours[1][~kept] == 0).all()


def test_class_mask_under_transforms_matches_oracle() -> None:
    x, w, _, target = _problem(n=4, v=5)
    allowed = torch.rand(4, 5, generator=torch.Generator().manual_seed(2)) < 0.6
    allowed[torch.arange(4), target] = True

    def ours(h):
        return funcloss.linear_cross_entropy(
            h, w, target, label_smoothing=0.2, z_loss=0.1, chunk_size=3, where=allowed
        )

    def theirs(h):
        logits = (h @ w.T).masked_fill(~allowed, -torch.inf)
        log_probs = torch.log_softmax(logits, 1)
        smooth = -torch.where(allowed, log_probs, 0).sum(1) / allowed.sum(1)
        nll = -log_probs.gather(1, target[:, None]).squeeze(1)
        lse = torch.logsumexp(logits, 1)
        return (0.8 * nll + 0.2 * smooth + 0.1 * lse**2).mean()

    assert_close(ours(x), theirs(x), "value")
    assert_close(grad(ours)(x), grad(theirs)(x), "grad")
    assert_close(jacfwd(ours)(x), grad(theirs)(x), "jacfwd")
    assert_close(torch.func.hessian(ours)(x), torch.func.hessian(theirs)(x), "hessian")
    per_sample = vmap(grad(lambda h, t, m: funcloss.linear_cross_entropy(h, w, t, where=m)))

    def one(h, i):
        return funcloss.linear_cross_entropy(h, w, target[i], where=allowed[i])

    looped = torch.stack([grad(one)(x[i], i) for i in range(4)])
    assert_close(per_sample(x, target, allowed), looped, "vmap(grad), per-sample masks")

    def masked(h, mask):
        return funcloss.linear_cross_entropy(h, w, target, label_smoothing=0.2, where=mask)

    torch._dynamo.reset()
    compiled = torch.compile(masked, fullgraph=True, backend="aot_eager")
    h = x.clone().requires_grad_()
    value = compiled(h, allowed)
    assert_close(value, masked(x, allowed), "compiled")
    assert_close(torch.autograd.grad(value, h)[0], grad(masked)(x, allowed), "compiled grad")


def test_class_mask_probabilities_k_dimensional_and_empty_rows() -> None:
    x, w, _, _ = _problem(n=4, v=4)
    q = torch.softmax(torch.randn(4, 4, dtype=torch.float64), 1).requires_grad_()
    kept = torch.tensor([True, True, False, True])
    ours = funcloss.linear_cross_entropy(x, w, q, where=kept[None], label_smoothing=0.1)
    theirs = F.cross_entropy(x @ w[kept].T, q[:, kept], label_smoothing=0.1)  # not renormalised
    assert_close(ours, theirs, "probabilities")
    (g_ours,), (g_theirs,) = _gradients(ours, q), _gradients(theirs, q)
    assert_close(g_ours, g_theirs, "gradient of the target")
    # K-dimensional outputs: logits (N, C, d), a class mask of that shape
    wk = torch.randn(3, 2, 3, dtype=torch.float64)
    target = torch.tensor([[0, 1], [2, 2], [1, 0], [0, 0]])
    allowed = torch.rand(4, 3, 2, generator=torch.Generator().manual_seed(3)) < 0.5
    allowed.scatter_(1, target[:, None], True)
    ours = funcloss.linear_cross_entropy(x[:, :3], wk, target, where=allowed, reduction="none")
    logits = torch.einsum("nh,cdh->ncd", x[:, :3], wk).masked_fill(~allowed, -torch.inf)
    assert_close(ours, F.cross_entropy(logits, target, reduction="none"), "k-dimensional")
    # a row with no class left counts as masked; none left at all: 0 with zero gradient
    h = x.clone().requires_grad_()
    none_left = torch.zeros(4, 4, dtype=torch.bool)
    loss = funcloss.linear_cross_entropy(h, w, torch.zeros(4, dtype=torch.long), where=none_left)
    assert loss == 0
    assert torch.equal(_gradients(loss, h)[0], torch.zeros_like(h))


def test_row_mask_poisoned_rows_both_paths_and_module() -> None:
    x, w, _, target = _problem(n=5, v=4)
    rows = torch.tensor([True, False, True, False, True])
    poisoned = x.masked_fill(~rows[:, None], torch.nan)
    bad_target = target.masked_fill(~rows, 99)  # never read
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=torch.float64)
    expected = F.cross_entropy(x[rows] @ w.T, target[rows], weight)
    for reduction in ("mean", "sum"):
        h, v = poisoned.clone().requires_grad_(), w.clone().requires_grad_()
        ours = funcloss.linear_cross_entropy(
            h, v, bad_target, weight=weight, reduction=reduction, where=rows
        )
        if reduction == "mean":
            assert_close(ours, expected, "value")
        grads = _gradients(ours, h, v)
        assert all(torch.isfinite(g).all() for g in grads)
        assert (grads[0][~rows] == 0).all()
    module = fnn.LinearCrossEntropyLoss(3, 4, weight=weight, dtype=torch.float64)
    with torch.no_grad():
        module.linear.weight.copy_(w)
    assert_close(module(poisoned, bad_target, where=rows), expected, "module forward")
    assert module(x, target, where=torch.zeros(5, dtype=torch.bool)) == 0


# -- infinite and huge inputs ------------------------------------------------------------------


def _limit_oracle(x, w, y, b, reduction, **kwargs):
    """The float64 limit with each ``+-inf`` a stand-in ``+-T``, at ``T = 1e6`` and ``1e7``:
    value and gradients (input, weight, bias), and where both stand-ins agree and are finite
    (there the limit is). Moderate stand-ins, unlike the registry's 1e300 and 1e150: two
    logits that grow alike (two infinite biases, a column of -inf weights) still differ by
    their finite parts in float64."""
    results = []
    for big in (1e6, 1e7):
        stand = [
            None if t is None else torch.where(t.isinf(), t.sign() * big, t).double()
            for t in (x, w, b)
        ]
        results.append(
            _value_and_grads(
                naive_linear_cross_entropy, stand[0], stand[1], y, stand[2], reduction, **kwargs
            )
        )
    (v1, g1, _), (v2, g2, _) = results
    outputs = [(v1.detach().sum(), v2.detach().sum()), *zip(g1, g2, strict=True)]
    return [(a, torch.isclose(a, c, rtol=1e-6, atol=1e-30) & a.isfinite()) for a, c in outputs]


def _infinite_case(seed: int, where: str):
    """A small problem with one or two infinite entries in ``where`` (input, weight or bias),
    and a zero beside them (``inf * 0``), equal infinities (ties) and options drawn."""
    generator = torch.Generator().manual_seed(seed)
    x, w, b, y = _problem(n=3, h=3, v=4, seed=seed)
    if seed % 2:
        x[0, 0] = w[0, 0] = 0.0
    draws = torch.rand(5, generator=generator)
    kwargs = {"chunk_size": 1 + seed % 3}
    if draws[0] < 0.3:
        kwargs["label_smoothing"] = 0.2
    if draws[1] < 0.3:
        kwargs["z_loss"] = 0.1
    if draws[2] < 0.3:
        kwargs["softcap"] = 3.0
    if draws[3] < 0.3:
        kwargs["weight"] = torch.rand(4, generator=generator, dtype=torch.float64) + 0.1
    if draws[4] < 0.3:
        y = torch.softmax(3 * torch.randn(3, 4, generator=generator, dtype=torch.float64), 1)
    tensor = {"input": x, "weight": w, "bias": b}[where]
    flat = tensor.view(-1)
    picks = torch.randint(0, flat.numel(), (1 + seed % 2,), generator=generator)
    signs = torch.randint(0, 2, picks.shape, generator=generator) * 2 - 1
    flat[picks] = signs.double() * torch.inf
    if where == "weight" and seed % 4 == 3:
        w[:, 1] = -torch.inf  # a column of equal infinities: the limit gradient there is 0
    if where == "bias" and seed % 4 == 2:
        b[:2] = torch.inf  # two logits growing alike: their finite parts decide
    return x, w, b, y, kwargs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("where", ["input", "weight", "bias"])
def test_infinite_entries_give_the_float64_limit(where: str, reduction: str, dtype) -> None:
    """An infinite hidden state, weight or bias: the value and all three gradients are the
    float64 limit wherever it is finite (the eager fused path for "sum"/"mean", the
    recomputing one for "none"); before, inf logits gave NaN throughout."""
    compared = 0
    for seed in range(24):
        x, w, b, y, kwargs = _infinite_case(seed, where)
        expected = _limit_oracle(x, w, y, b, reduction, **kwargs)
        cast = [t.to(dtype) for t in (x, w, b)]
        kwargs = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        target = y.to(dtype) if y.is_floating_point() else y
        value, grads, _ = _value_and_grads(
            funcloss.linear_cross_entropy, cast[0], cast[1], target, cast[2], reduction, **kwargs
        )
        ours = [value.detach().sum(), *grads]
        rtol = 1e-5 if dtype == torch.float32 else 1e-7
        for name, result, (limit, exists) in zip(
            ("value", "input", "weight", "bias"), ours, expected, strict=True
        ):
            scale = limit[exists].abs().max().clamp_min(1.0) if bool(exists.any()) else 1.0
            close = torch.isclose(result.double(), limit, rtol=rtol, atol=rtol * float(scale))
            assert bool(close[exists].all()), (seed, name, kwargs, result, limit)
            compared += int(exists.sum())
    assert compared > 300  # the limit is finite in most places


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_huge_inputs_are_the_float32_rounding_of_the_exact_value(reduction: str) -> None:
    """Hidden states and weights of 1e20: the float32 logits overflow (before: inf - inf, NaN);
    the answer is the float64 value of the same inputs, rounded. Two equal rows of the weight
    tie two huge logits (loss log 2 where the target is one of them)."""
    x, w, b, y = _problem(n=4, h=3, v=5, dtype=torch.float32, seed=3)
    x, w = x * 1e20, w * 1e20
    w[0] = w[1] = torch.tensor([5e20, 0.0, 0.0])
    x[0] = torch.tensor([1e20, 0.0, 0.0])
    y = (x.double() @ w.double().T).argmax(1)  # the leading class: a finite loss
    assert int(y[0]) in (0, 1)
    finite_values = 0
    for kwargs in ({}, {"label_smoothing": 0.1}, {"softcap": 5.0}, {"chunk_size": 1}):
        truth, truth_grads, _ = _value_and_grads(
            naive_linear_cross_entropy, x.double(), w.double(), y, b.double(), reduction, **kwargs
        )
        value, grads, _ = _value_and_grads(
            funcloss.linear_cross_entropy, x, w, y, b, reduction, **kwargs
        )
        fits = truth.abs() < 1e30  # label smoothing: about 1e40, inf in float32
        assert bool((value.isfinite() == fits).all()), (value, truth)
        assert_close(value[fits].double(), truth[fits], rtol=1e-6)
        finite_values += int(fits.sum())
        for ours, exact in zip(grads, truth_grads, strict=True):
            assert_close(ours.double(), exact, rtol=1e-5)
    assert finite_values >= 3


def test_nan_inputs_stay_nan_on_the_limit_path() -> None:
    """The limit recomputation hides no NaN: a NaN in the input, the weight or the bias (with an
    infinite entry elsewhere) still makes the value NaN."""
    x, w, b, y = _problem(dtype=torch.float32)
    for tensor in ("x", "w", "b"):
        parts = {"x": x.clone(), "w": w.clone(), "b": b.clone()}
        parts[tensor].view(-1)[1] = torch.nan
        parts["x"][2, 0] = torch.inf
        for reduction in ("sum", "none"):
            value, _, _ = _value_and_grads(
                funcloss.linear_cross_entropy, parts["x"], parts["w"], y, parts["b"], reduction
            )
            assert bool(value.isnan().any()), (tensor, reduction, value)


def test_infinite_input_under_transforms_is_finite() -> None:
    """Under torch.func transforms nothing is read: an infinite hidden state is a finite
    stand-in and a +inf logit the largest finite one, so the value and gradients are finite
    (before: inf * 0 = NaN at a zero weight) and, where one class leads, the limit."""
    x, w, b, y = _problem(n=3, h=3, v=4, seed=1)
    w[:, 0] = torch.tensor([0.0, 1.5, -1.0, 0.5])  # class 1 leads as x[0, 0] -> +inf
    x[0, 0], y[0] = torch.inf, 1
    (limit, _), (limit_input, _) = _limit_oracle(x, w, y, b, "sum")[:2]

    def loss(x, w):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, reduction="sum")

    assert_close(vmap(loss, in_dims=(0, None))(x[None], w)[0], limit)
    assert_close(grad(loss)(x, w), limit_input)
    assert_close(jacfwd(loss)(x, w), limit_input)
    assert bool(jacrev(loss, argnums=1)(x, w).isfinite().all())  # finite, not the limit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_infinite_weight_times_zero_input_without_reads_is_the_limit(dtype, reduction) -> None:
    """issue 14: an infinite weight entry times a 0 hidden entry adds 0 in the limit (the
    float64 oracle at 1e300 and 1e150 agrees: finite). Without host reads (value checks off,
    transforms) it gave NaN (inf * 0); the weight's infinity is a finite stand-in there now:
    value and the weight's and bias's gradients are the limit, as in eager mode; the input's
    gradient through that entry is the stand-in 2^64 (2^512) times its factor, not +-inf."""
    x, w, b, y = _problem(n=3, h=4, v=5, dtype=dtype, seed=3)
    x[1, 2], w[3, 2] = 0.0, torch.inf  # rows 0 and 2 see +-inf at class 3
    x[0, 2], x[2, 2] = -0.5, -1.5  # ... -inf: class 3 leaves their softmax
    limits = []
    for big in (1e300, 1e150):
        stand = w.double().clone()
        stand[3, 2] = big
        limits.append(
            _value_and_grads(F.linear_cross_entropy, x.double(), stand, y, b.double(), reduction)
        )
    (v1, g1, _), (v2, g2, _) = limits
    assert_close(v1, v2)
    assert bool(v1.isfinite().all())
    assert_close(g1[1], g2[1])  # the weight's and bias's gradients: limits too
    assert_close(g1[2], g2[2])
    eager = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, reduction)
    with funcloss.set_value_checks(False):
        unread = _value_and_grads(funcloss.linear_cross_entropy, x, w, y, b, reduction)

    def loss(x, w, b):
        return funcloss.linear_cross_entropy(x, w, y, linear_bias=b, reduction=reduction).sum()

    transformed = grad(loss, argnums=(0, 1, 2))(x, w, b)
    big = 2.0 ** (64 if dtype == torch.float32 else 512)
    for value, grads in ((eager[0], eager[1]), (unread[0], unread[1]), (None, transformed)):
        if value is not None:
            assert_close(value.detach().double(), v1)
        grad_x, grad_w, grad_b = grads
        assert_close(grad_w.double(), g1[1])
        assert_close(grad_b.double(), g1[2])
        finite = g1[0].abs() < 1e100
        assert_close(grad_x.double()[finite], g1[0][finite])
        if grads is eager[1]:  # eager: the limit, +-inf
            assert bool((grad_x[~finite] == g1[0][~finite].sign() * torch.inf).all())
        else:  # no read: the stand-in times the factor
            assert_close(grad_x.double()[~finite], g1[0][~finite] / 1e300 * big)
    assert_close(vmap(loss, in_dims=(0, None, None))(x[None], w, b)[0], v1.sum().to(dtype))
