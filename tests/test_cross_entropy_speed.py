"""cross_entropy's fast eager steps for class indices (issue 15): the gathered form with many
classes, half-precision logits on the small path; each against the general path, and taken
exactly where expected."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import funcloss
import funcloss._cross_entropy as ce_module
from funcloss._cross_entropy import _cross_entropy


def _general(x, y, **kwargs):
    return _cross_entropy(
        x,
        y,
        kwargs.get("weight"),
        kwargs.get("ignore_index", -100),
        kwargs.get("reduction", "mean"),
        kwargs.get("label_smoothing", 0.0),
        False,
    )


def _nodes(output: torch.Tensor) -> set[str]:
    """The names of every autograd node behind ``output``."""
    names, todo = set(), [output.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return names


def _results(loss_fn, x, y, kwargs):
    leaf = x.clone().requires_grad_()
    loss = loss_fn(leaf, y, **kwargs)
    (grad,) = torch.autograd.grad(loss.sum(), leaf, create_graph=True)
    # in float64, then rounded: torch's float16 linspace is nan 65520 steps from either end
    probe = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).to(x.dtype).view(x.shape)
    (second,) = torch.autograd.grad((grad * probe).sum(), leaf)
    return loss.detach(), grad.detach(), second, _nodes(loss)


_TARGETS = {
    "plain": lambda n: torch.arange(n) % 7,
    "ignored": lambda n: torch.where(torch.arange(n) % 3 == 0, -100, torch.arange(n) % 7),
    "all_ignored": lambda n: torch.full((n,), -100),
}


@pytest.mark.parametrize(
    "classes", [ce_module._GATHER_MIN_CLASSES - 1, ce_module._GATHER_MIN_CLASSES]
)
@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fast_path_gathers_from_many_classes_and_matches_the_general_path(
    classes, target, reduction, weighted
) -> None:
    torch.manual_seed(0)
    x = torch.randn(6, classes, dtype=torch.float64) * 3
    y = _TARGETS[target](6)
    kwargs = {"reduction": reduction}
    if weighted:
        kwargs["weight"] = torch.rand(classes, dtype=torch.float64) + 0.5
    fast = _results(funcloss.cross_entropy, x, y, kwargs)
    general = _results(_general, x, y, kwargs)
    for ours, theirs in zip(fast[:3], general[:3], strict=True):
        torch.testing.assert_close(ours, theirs, equal_nan=True)
    torch.testing.assert_close(fast[0], F.cross_entropy(x, y, **kwargs), equal_nan=True)
    if target == "all_ignored":
        assert torch.equal(fast[1], torch.zeros_like(x))  # no 0 * inf, also for a mean of nan
    # the gather from _GATHER_MIN_CLASSES classes on, the product form below
    gathered = classes >= ce_module._GATHER_MIN_CLASSES
    assert ("GatherBackward0" in fast[3]) == gathered, fast[3]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(8, 10), (64, 1000)])
@pytest.mark.parametrize("option", ["", "weight", "ignore_index", "label_smoothing"])
def test_half_precision_small_call_takes_the_fast_path_in_fp32(
    monkeypatch: pytest.MonkeyPatch, dtype, shape, option
) -> None:
    # half-precision logits on the plain eager small call: the fast path, its log-softmax and
    # everything after it in fp32 (one rounding to the half dtype at the end), the general
    # path's values and gradients
    torch.manual_seed(0)
    n, c = shape
    x = (torch.randn(n, c) * 4).to(dtype)
    y = torch.randint(0, c, (n,))
    kwargs: dict = {}
    if option == "weight":
        kwargs["weight"] = (torch.rand(c) + 0.5).to(dtype)
    elif option == "ignore_index":
        y[::3] = -100
    elif option == "label_smoothing":
        kwargs["label_smoothing"] = 0.1
    calls = []
    read = ce_module._fast_read  # the product form's and the step's one read
    monkeypatch.setattr(ce_module, "_fast_read", lambda *a: calls.append(a[0].dtype) or read(*a))
    for reduction in ("none", "mean", "sum"):
        kwargs["reduction"] = reduction
        leaf = x.clone().requires_grad_()
        ours = funcloss.cross_entropy(leaf, y, **kwargs)
        (grad,) = torch.autograd.grad(ours.sum(), leaf)
        assert ours.dtype == grad.dtype == dtype
        leaf = x.clone().requires_grad_()
        general = _general(leaf, y, **kwargs)
        (general_grad,) = torch.autograd.grad(general.sum(), leaf)
        torch.testing.assert_close(ours, general.detach())
        torch.testing.assert_close(grad, general_grad)
        # against the float64 truth: at least as accurate as torch's half-precision result
        leaf = x.double().requires_grad_()
        exact_kwargs = {k: v.double() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        exact = F.cross_entropy(leaf, y, **exact_kwargs)
        (exact_grad,) = torch.autograd.grad(exact.sum(), leaf)
        leaf = x.clone().requires_grad_()
        theirs = F.cross_entropy(leaf, y, **kwargs)
        (theirs_grad,) = torch.autograd.grad(theirs.sum(), leaf)
        for mine, torch_value, truth in ((ours, theirs, exact), (grad, theirs_grad, exact_grad)):
            error = (mine.detach().double() - truth.detach()).abs().max()
            torch_error = (torch_value.detach().double() - truth.detach()).abs().max()
            assert error <= torch_error, (reduction, float(error), float(torch_error))
    assert calls == [torch.float32] * 3  # the fast path, in fp32, once per call


def test_half_precision_fast_path_only_where_the_gate_admits() -> None:
    x = torch.randn(4, 3, dtype=torch.bfloat16)
    y = torch.tensor([0, 1, 2, 0])
    assert ce_module._fast(x, y, None, None, "mean", -100, 0.0)
    # a weight of another dtype, a large input, a mask: the general path
    assert not ce_module._fast(x, y, torch.ones(3), None, "mean", -100, 0.0)
    big = torch.randn(ce_module._FUSED_MIN_ELEMENTS, 1, dtype=torch.bfloat16)
    assert not ce_module._fast(
        big, torch.zeros(big.shape[0], dtype=torch.long), None, None, "mean", -100, 0.0
    )
    assert not ce_module._fast(x, y, None, torch.ones(4, dtype=torch.bool), "mean", -100, 0.0)
    # probability targets in half precision: the fast composition in fp32 below
    # _FUSED_MIN_ELEMENTS logits, the chunked path (or the general one) from there on
    assert ce_module._soft_fast(x, x.softmax(1), None, None, "mean", -100, 0.0)
    assert not ce_module._soft_fast(big, big.softmax(1), None, None, "mean", -100, 0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(64, 10), (4, 5, 6, 7)])
@pytest.mark.parametrize("option", ["", "weight", "label_smoothing"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_half_precision_probabilities_small_call_in_fp32(
    monkeypatch: pytest.MonkeyPatch, dtype, shape, option, reduction
) -> None:
    # half-precision logits and probabilities on a small plain eager call: the composition in
    # fp32 (_soft_cross_entropy_eager), rounded once: the general path's value and both
    # gradients, and at least as close to the float64 truth as torch's half precision
    torch.manual_seed(0)
    x = (torch.randn(shape) * 4).to(dtype)
    q = torch.randn(shape).softmax(1).to(dtype)
    kwargs: dict = {"reduction": reduction}
    if option == "weight":
        kwargs["weight"] = (torch.rand(shape[1]) + 0.5).to(dtype)
    elif option == "label_smoothing":
        kwargs["label_smoothing"] = 0.1

    def results(loss_fn, x, q, kwargs):
        leaves = x.clone().requires_grad_(), q.clone().requires_grad_()
        value = loss_fn(*leaves, **kwargs)
        return (value.detach(), *torch.autograd.grad(value.sum(), leaves))

    taken = []
    eager = ce_module._soft_cross_entropy_eager
    monkeypatch.setattr(
        ce_module,
        "_soft_cross_entropy_eager",
        lambda *a: taken.append(a[0].dtype) or eager(*a),
    )
    ours = results(funcloss.cross_entropy, x, q, kwargs)
    assert taken == [dtype]  # the fast composition, once
    assert all(t.dtype == dtype for t in ours)
    general = results(_general, x, q, kwargs)
    exact_kwargs = {k: v.double() if torch.is_tensor(v) else v for k, v in kwargs.items()}
    exact = results(F.cross_entropy, x.double(), q.double(), exact_kwargs)
    theirs = results(F.cross_entropy, x, q, kwargs)
    for mine, other, truth, torch_value in zip(ours, general, exact, theirs, strict=True):
        torch.testing.assert_close(mine, other)
        error = (mine.double() - truth).abs().max()
        assert error <= (torch_value.double() - truth).abs().max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"label_smoothing": 0.1, "ignore_index": 3}, {"weight": "rand", "reduction": "sum"}],
)
def test_half_precision_large_path_by_float32_row_chunks(dtype, kwargs) -> None:
    """Half-precision logits on the large path (300 x 5000: two row chunks of 2**20 logits),
    a +inf logit in one row (the rows the host read patches): the value and gradient are the
    float64 truth of the same half-precision inputs within two roundings (the upstream gradient,
    ``1 / N`` in the loss's dtype, then the result: an ulp, 2**-7 of it for bf16, 2**-10 for
    fp16; and one subnormal spacing) and float32's error on the way, and at least as close to it
    as torch's own."""
    generator = torch.Generator().manual_seed(11)
    x = (torch.randn(300, 5000, generator=generator) * 3).to(dtype)
    y = torch.randint(0, 5000, (300,), generator=generator)
    y[:7] = 3  # ignored where ignore_index is 3
    x[250, 9] = float("inf")
    kwargs = dict(kwargs)
    if kwargs.get("weight") == "rand":
        kwargs["weight"] = torch.rand(5000, generator=generator).to(dtype)

    def value_and_gradient(loss_fn, x, kwargs):
        leaf = x.clone().requires_grad_()
        value = loss_fn(leaf, y, **kwargs)
        return (value.detach(), *torch.autograd.grad(value, leaf))

    value, gradient = value_and_gradient(funcloss.cross_entropy, x, kwargs)
    assert value.dtype == dtype and gradient.dtype == dtype
    # the truth: +inf as the largest finite logit of the dtype (funcloss's documented limit)
    k64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    truth, truth_gradient = value_and_gradient(
        F.cross_entropy, x.double().clamp(max=torch.finfo(dtype).max), k64
    )
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    # float32's error, and the spacing of the dtype's subnormals (fp16 gradients reach them)
    tiny = 2.0**-20 * truth_gradient.abs().amax() + torch.finfo(dtype).smallest_normal * ulp
    error = (gradient.double() - truth_gradient).abs()
    assert bool((error <= truth_gradient.abs() * ulp + tiny).all()), error.max()
    assert abs(float(value) - float(truth)) <= abs(float(truth)) * ulp
    # torch's own half-precision gradient, away from the +inf row (where it is nan)
    _, theirs = value_and_gradient(F.cross_entropy, x.clamp(max=0), kwargs)
    _, ours = value_and_gradient(funcloss.cross_entropy, x.clamp(max=0), kwargs)
    _, truth_gradient = value_and_gradient(F.cross_entropy, x.clamp(max=0).double(), k64)
    ours_error = (ours.double() - truth_gradient).abs().amax()
    assert ours_error <= (theirs.double() - truth_gradient).abs().amax(), ours_error


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "kwargs", [{}, {"label_smoothing": 0.1, "reduction": "none"}, {"weight": "rand"}]
)
def test_half_precision_probabilities_by_float32_row_chunks(dtype, kwargs) -> None:
    """Half-precision logits and class probabilities on a large call (300 x 5000: two row
    chunks), a +inf logit and a -inf one where the target is 0: the value and both gradients
    (logits and target) within two roundings of the float64 truth of the same inputs (as
    test_half_precision_large_path_by_float32_row_chunks), and at least as close to it as
    torch's own half-precision result."""
    generator = torch.Generator().manual_seed(5)
    x = (torch.randn(300, 5000, generator=generator) * 3).to(dtype)
    q = torch.softmax(torch.randn(300, 5000, generator=generator) * 2, 1).to(dtype)
    x[250, 9] = float("inf")
    x[40, 17], q[40, 17] = -float("inf"), 0
    kwargs = dict(kwargs)
    if kwargs.get("weight") == "rand":
        kwargs["weight"] = torch.rand(5000, generator=generator).to(dtype)
    assert ce_module._soft_chunked(x, q, kwargs.get("weight"))

    def results(loss_fn, x, q, kwargs):
        leaves = x.clone().requires_grad_(), q.clone().requires_grad_()
        value = loss_fn(*leaves, **kwargs)
        return (value.detach(), *torch.autograd.grad(value.sum(), leaves))

    ours = results(funcloss.cross_entropy, x, q, kwargs)
    assert all(t.dtype == dtype for t in ours)
    k64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    # the truth: +inf as the largest finite logit of the dtype, -inf as -1e300 (the limit: with
    # smoothing the loss is +inf there); the target gradient there (-log p at p = 0) is left out
    big = torch.finfo(dtype).max
    x64 = x.double().clamp(max=big).nan_to_num(neginf=-1e300)
    truth = results(F.cross_entropy, x64, q.double(), k64)
    ulp = 2.0**-7 if dtype == torch.bfloat16 else 2.0**-10
    finite = torch.ones_like(x, dtype=torch.bool)
    finite[40, 17] = False
    for mine, exact, keep in zip(ours, truth, (None, None, finite), strict=True):
        mine, exact = mine.double(), exact if keep is None else exact[keep]
        mine = mine if keep is None else mine[keep]
        # a row's true loss beyond the dtype's range (the +inf row, "none") rounds to inf
        over = exact.to(dtype).isinf()
        assert bool((mine[over] == exact[over].sign() * math.inf).all())
        mine, exact = mine[~over], exact[~over]
        tiny = 2.0**-20 * exact.abs().amax() + torch.finfo(dtype).smallest_normal * ulp
        error = (mine - exact).abs()
        assert bool((error <= exact.abs() * ulp + tiny).all()), error.max()
    # torch's own half-precision gradients, on finite inputs (at +inf torch gives nan)
    x, q = x.clamp(-30, 30), q
    theirs = results(F.cross_entropy, x, q, kwargs)
    ours = results(funcloss.cross_entropy, x, q, kwargs)
    truth = results(F.cross_entropy, x.double(), q.double(), k64)
    for mine, torch_result, exact in zip(ours[1:], theirs[1:], truth[1:], strict=True):
        ours_error = (mine.double() - exact).abs().amax()
        assert ours_error <= (torch_result.double() - exact).abs().amax(), ours_error


def test_half_precision_probabilities_double_backward() -> None:
    """The chunked probability path's backward, differentiated again (``create_graph``): the
    Hessian-vector product of the float64 truth within bf16's rounding."""
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(40, 2000, generator=generator).to(torch.bfloat16)
    q = torch.softmax(torch.randn(40, 2000, generator=generator), 1).to(torch.bfloat16)
    v = torch.randn(40, 2000, generator=generator)
    assert ce_module._soft_chunked(x, q, None)

    def hvp(loss_fn, x, q, v):
        leaf = x.clone().requires_grad_()
        (gradient,) = torch.autograd.grad(loss_fn(leaf, q), leaf, create_graph=True)
        (result,) = torch.autograd.grad((gradient * v).sum(), leaf)
        return result

    ours = hvp(funcloss.cross_entropy, x, q, v.to(torch.bfloat16)).double()
    exact = hvp(F.cross_entropy, x.double(), q.double(), v.to(torch.bfloat16).double())
    scale = exact.abs().amax()
    assert bool(((ours - exact).abs() <= exact.abs() * 2.0**-6 + scale * 2.0**-8).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": "rand", "ignore_index": 3}],
)
def test_nll_loss_half_precision_large_gradient_by_index_copy(dtype, kwargs) -> None:
    """Large half-precision log-probabilities (300 x 500) on the eager path: the gather's
    gradient is one index_copy_ into zeros (autograd's scatter_add would take a float32 buffer
    of the input's size), bitwise torch's value and gradient (with a class weight, whose mean
    funcloss reduces otherwise: at least as close to float64 as torch's); a double backward
    gives zeros."""
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(300, 500, generator=generator).log_softmax(1).to(dtype)
    y = torch.randint(0, 500, (300,), generator=generator)
    y[:5] = 3
    kwargs = dict(kwargs)
    if kwargs.get("weight") == "rand":
        kwargs["weight"] = torch.rand(500, generator=generator).to(dtype)
    ours, theirs = (x.clone().requires_grad_() for _ in range(2))
    loss = funcloss.nll_loss(ours, y, **kwargs)
    assert "ForwardModeBackward" in _nodes(loss)  # the custom Function, not GatherBackward
    assert "GatherBackward0" not in _nodes(loss)
    expected = F.nll_loss(theirs, y, **kwargs)
    (gradient,) = torch.autograd.grad(loss.sum(), ours, create_graph=True)
    (expected_gradient,) = torch.autograd.grad(expected.sum(), theirs)
    if "weight" not in kwargs:
        assert torch.equal(loss, expected) and torch.equal(gradient, expected_gradient)
    else:
        k64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        truth = x.double().requires_grad_()
        value64 = F.nll_loss(truth, y, **k64)
        (gradient64,) = torch.autograd.grad(value64, truth)
        for mine, theirs_, exact in (
            (loss, expected, value64),
            (gradient, expected_gradient, gradient64),
        ):
            mine_error = (mine.detach().double() - exact).abs().max()
            assert mine_error <= (theirs_.detach().double() - exact).abs().max()
    (second,) = torch.autograd.grad(gradient.sum(), ours, allow_unused=True)
    assert second is not None and not bool(second.any())


_STEP_SHAPES = {
    "small": (64, ce_module._CLASS_STEP_FROM // 64),
    "large": (64, 2 * ce_module._FUSED_MIN_ELEMENTS // 64),
    "kdim": (2, 5, 40, 41),
    # the half-precision step's chunks: two of rows, two of K-dim samples (and a short last one)
    "chunks": (40, 7001),
    "kchunks": (19, 5, 80, 80),
}
_FLOAT_SHAPES = ("small", "large", "kdim")
# against the general path, which computes in float32 and rounds once too, but not always the
# same way: an ulp, and float32's error on the way. fp16 gives the subnormals of it: its second
# derivatives of a sum over many rows (about 1e-5) come from a softmax backward that cancels
# terms of order one, each path off by about 2**-23 (measured: 1.0e-7 and 7.5e-8, either way).
_HALF_TOLERANCE = {
    torch.bfloat16: {"atol": 2**-8, "rtol": 2**-7},
    torch.float16: {"atol": 2**-21, "rtol": 2**-10},
}


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        *((shape, dtype) for shape in _FLOAT_SHAPES for dtype in (torch.float64, torch.float32)),
        ("small", torch.bfloat16),
        ("large", torch.bfloat16),
        ("chunks", torch.bfloat16),
        ("kchunks", torch.float16),
    ],
)
@pytest.mark.parametrize("target", sorted(_TARGETS))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_training_step_matches_the_general_path(
    shape, dtype, target, reduction, weighted, smoothing
) -> None:
    # a plain eager call building a graph, from _CLASS_STEP_FROM logits on, (N, C) or K-dim:
    # the step, whose backward writes exp(lp) f - f at the target into the log-softmax's
    # buffer (half precision from _HALF_STEP_FROM: by float32 chunks, keeping nothing); the
    # general path's values, gradients and second derivatives, and a retained graph's second
    # backward gives the first one's bits
    torch.manual_seed(0)
    n, classes, *spatial = _STEP_SHAPES[shape]
    x = (torch.randn(n, classes, *spatial, dtype=torch.float64) * 3).to(dtype)
    y = _TARGETS[target](n * math.prod(spatial)).view(n, *spatial) % classes
    y = torch.where(_TARGETS[target](y.numel()).view(y.shape) == -100, -100, y)
    kwargs: dict = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kwargs["weight"] = (torch.rand(classes, dtype=torch.float64) + 0.5).to(dtype)
    leaf = x.clone().requires_grad_()
    loss = funcloss.cross_entropy(leaf, y, **kwargs)
    assert type(loss.grad_fn).__name__ == "_CrossEntropyStepBackward"
    (grad,) = torch.autograd.grad(loss.sum(), leaf, retain_graph=True)
    (again,) = torch.autograd.grad(loss.sum(), leaf)
    assert torch.equal(grad, again)
    assert grad.dtype == dtype
    fast = _results(funcloss.cross_entropy, x, y, kwargs)
    general = _results(_general, x, y, kwargs)
    tolerance = _HALF_TOLERANCE.get(dtype, {})
    torch.testing.assert_close(loss.detach(), general[0], equal_nan=True, **tolerance)
    pairs = zip((fast[0], grad, fast[1], fast[2]), general[:2] + general[1:3], strict=True)
    for ours, theirs in pairs:
        torch.testing.assert_close(ours, theirs, equal_nan=True, **tolerance)
    if target == "all_ignored":
        assert torch.equal(grad, torch.zeros_like(x))
    # torch's own gradient; (N, C) from _KERNEL_MIN_CLASSES classes the step forms it with
    # torch's log-softmax backward kernel: its bits, but where a class weight's sum divides the
    # mean (torch adds the weights up in another order); in half precision, where torch's
    # softmax is exp of a rounded log-softmax, at least as close to float64
    leaf = x.clone().requires_grad_()
    (theirs,) = torch.autograd.grad(F.cross_entropy(leaf, y, **kwargs).sum(), leaf)
    if dtype not in _HALF_TOLERANCE:
        if x.dim() > 2 or (weighted and reduction == "mean"):
            torch.testing.assert_close(grad, theirs)
        else:
            assert torch.equal(grad, theirs)
        return
    k64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    leaf = x.double().requires_grad_()
    (exact,) = torch.autograd.grad(F.cross_entropy(leaf, y, **k64).sum(), leaf)
    ours_error = (grad.double() - exact).abs().max()
    assert ours_error <= (theirs.double() - exact).abs().max(), ours_error


@pytest.mark.parametrize("shape", _FLOAT_SHAPES)
def test_training_step_hands_an_infinite_logit_to_the_other_paths(shape) -> None:
    # a +inf logit makes its row's log-softmax nan: the step's read refuses it and the clamped
    # composition (or the large path's patched rows) gives the limit (the general path's)
    n, classes, *spatial = _STEP_SHAPES[shape]
    x = torch.randn(n, classes, *spatial)
    x[(3 % n, 4, *(1 for _ in spatial))] = math.inf
    y = (torch.arange(n * math.prod(spatial)) % classes).view(n, *spatial)
    fast = _results(funcloss.cross_entropy, x, y, {})
    # the path chosen by size (the large one above _FUSED_MIN_ELEMENTS), as before the step
    general = _results(lambda x, y: _cross_entropy(x, y, None, -100, "mean", 0.0, None), x, y, {})
    assert "_CrossEntropyStepBackward" not in fast[3]
    for ours, theirs in zip(fast[:3], general[:3], strict=True):
        assert ours.isfinite().all()
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_training_step_stops_where_the_large_path_keeps_less(dtype) -> None:
    # the step keeps the log-softmax from forward to backward: at _CLASS_STEP_UNTIL logits (by
    # dtype) and above, the large path runs, which keeps nothing; below it, the step
    limit = ce_module._CLASS_STEP_UNTIL[dtype]
    for numel, step in ((limit, False), (limit - 64, True)):
        x = torch.randn(64, numel // 64).to(dtype).requires_grad_()
        loss = funcloss.cross_entropy(x, torch.arange(64) % x.shape[1])
        assert (type(loss.grad_fn).__name__ == "_CrossEntropyStepBackward") == step, numel


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_half_precision_step_keeps_nothing_of_the_logits_size(dtype, smoothing) -> None:
    # below _HALF_STEP_FROM logits the step keeps a float32 log-softmax; from there on the
    # half-precision step, which keeps no (N, C) buffer (its backward recomputes the softmax
    # by chunks), and whose graph holds nothing of the logits' size but the saved logits
    start = ce_module._HALF_STEP_FROM
    for numel, kept in ((start - 64, True), (start, False), (64 * 5000, False)):
        x = torch.randn(64, numel // 64).to(dtype).requires_grad_()
        loss = funcloss.cross_entropy(x, torch.arange(64) % 7, label_smoothing=smoothing)
        assert type(loss.grad_fn).__name__ == "_CrossEntropyStepBackward"
        assert (loss.grad_fn.slope is not None) == kept, numel
        column, coefficients = loss.grad_fn.kept
        assert column.numel() == 64
        parts = coefficients if isinstance(coefficients, tuple) else (coefficients,)
        rows = [t for t in parts if isinstance(t, torch.Tensor)]
        assert all(t.numel() <= max(64, x.shape[1]) for t in rows)
        (gradient,) = torch.autograd.grad(loss, x)
        assert gradient.dtype == dtype and bool(gradient.isfinite().all())


@pytest.mark.parametrize("shape", [(64, 32000), (300, 7), (3, 21, 17, 5), (2, 4, 1000)])
@pytest.mark.parametrize("op", [torch.softmax, torch.log_softmax])
def test_softmax_kernels_run_in_place_with_their_bits(shape, op) -> None:
    # the half-precision step runs torch's softmax and log-softmax with ``out=`` their own
    # input (a float32 chunk it owns): the kernels read each element before they write it, so
    # in place gives the bits of out of place, over the last dimension and over dimension 1
    x = torch.randn(shape) * 5
    buffer = x.clone()
    result = op(buffer, 1, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, op(x, 1))


@pytest.mark.parametrize("shape", [(64, 1000), (300, 7), (3, 21, 17, 5), (2, 4, 1000)])
def test_log_softmax_backward_kernel_runs_in_place_with_its_bits(shape) -> None:
    # the step writes the gradient into the log-softmax it kept, torch's log-softmax backward
    # with ``out=`` its ``output`` argument: the kernel reads each element before it writes it
    # (its row sums are of the other argument), so in place gives the bits of out of place
    output = torch.log_softmax(torch.randn(shape) * 5, 1)
    given = torch.randn(shape)
    buffer = output.clone()
    result = torch._log_softmax_backward_data(given, buffer, 1, buffer.dtype, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, torch._log_softmax_backward_data(given, output, 1, output.dtype))


_SOFT_SHAPES = {
    "large": ((64, 2 * ce_module._SOFT_STEP_FROM[torch.bfloat16] // 64), torch.bfloat16),
    "chunks": ((40, 7001), torch.bfloat16),
    "kchunks": ((19, 5, 80, 80), torch.float16),
    "float32": ((40, ce_module._SOFT_STEP_FROM[torch.float32] // 40 + 1), torch.float32),
}


@pytest.mark.parametrize("shape", sorted(_SOFT_SHAPES))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_probability_step_matches_the_general_path(shape, reduction, weighted, smoothing) -> None:
    # half-precision logits and class probabilities on a plain eager call building a graph for
    # the logits: the step, by float32 chunks (rows, K-dim samples); the general path's value,
    # gradient and second derivative; a retained graph's second backward and the double
    # backward's gradient give the first one's bits; value and gradient at least as close to
    # float64 as torch's own half precision (float32 from 2**21 (N, C) logits: torch's values)
    shape, dtype = _SOFT_SHAPES[shape]
    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * 3).to(dtype)
    q = torch.softmax(torch.randn(shape, generator=generator, dtype=torch.float64) * 2, 1)
    q = q.to(dtype)
    kwargs: dict = {"reduction": reduction, "label_smoothing": smoothing}
    if weighted:
        kwargs["weight"] = (torch.rand(shape[1], generator=generator) + 0.5).to(dtype)
    leaf = x.clone().requires_grad_()
    loss = funcloss.cross_entropy(leaf, q, **kwargs)
    assert type(loss.grad_fn).__name__ == "_CrossEntropyStepBackward"
    assert loss.grad_fn.slope is None  # nothing of (N, C) kept
    (grad,) = torch.autograd.grad(loss.sum(), leaf, retain_graph=True)
    (again,) = torch.autograd.grad(loss.sum(), leaf)
    assert torch.equal(grad, again) and grad.dtype == dtype
    fast = _results(funcloss.cross_entropy, x, q, kwargs)
    assert torch.equal(fast[1], grad)  # the double backward's differentiable ops: same bits
    general = _results(_general, x, q, kwargs)
    tolerance = _HALF_TOLERANCE.get(dtype, {})
    for ours, theirs in zip(fast[:3], general[:3], strict=True):
        torch.testing.assert_close(ours, theirs, **tolerance)
    theirs = _results(F.cross_entropy, x, q, kwargs)
    if dtype not in _HALF_TOLERANCE:  # float32: torch's values, rounded otherwise
        for ours, torch_result in zip(fast[:2], theirs[:2], strict=True):
            torch.testing.assert_close(ours, torch_result)
        return
    k64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    exact = _results(F.cross_entropy, x.double(), q.double(), k64)
    for ours, torch_result, truth in zip(fast[:2], theirs[:2], exact[:2], strict=True):
        ours_error = (ours.double() - truth).abs().max()
        assert ours_error <= (torch_result.double() - truth).abs().max(), ours_error


@pytest.mark.parametrize("where", ["inf", "target_grad", "weight_grad"])
def test_probability_step_leaves_other_calls_to_the_other_paths(where) -> None:
    # a +inf logit (nan rows: the step's read refuses them), a target or class weight that
    # takes a gradient: the paths before the step, with their results
    x = torch.randn(64, 2048).to(torch.bfloat16)
    q = torch.softmax(torch.randn(64, 2048), 1).to(torch.bfloat16)
    weight = None
    if where == "inf":
        x[5, 7] = math.inf
    elif where == "target_grad":
        q.requires_grad_()
    else:
        weight = torch.rand(2048).to(torch.bfloat16).requires_grad_()
    leaf = x.clone().requires_grad_()
    loss = funcloss.cross_entropy(leaf, q, weight)
    assert "_CrossEntropyStepBackward" not in _nodes(loss)
    expected = _general(x.clone().requires_grad_(), q, weight=weight)
    torch.testing.assert_close(loss, expected)
    assert bool(loss.isfinite())
