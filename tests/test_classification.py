"""Golden values, edge cases and the memory contract of the classification core."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacfwd, jacrev, vmap

import funcloss
import funcloss._cross_entropy as classification
import funcloss._logistic as logistic
from funcloss._softmax_ce import softmax_mask


def test_cross_entropy_golden_values() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([0, 2])
    # torch 2.13 F.cross_entropy
    torch.testing.assert_close(
        funcloss.cross_entropy(logits, target, reduction="none"),
        torch.tensor([0.2395, 0.0949]),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        funcloss.cross_entropy(logits, target, label_smoothing=0.1),
        torch.tensor(0.3339),
        atol=1e-4,
        rtol=0,
    )
    # by hand: log(1 + 2 e^-2) = 0.2395
    torch.testing.assert_close(
        funcloss.cross_entropy(logits[0], target[0]), torch.log1p(2 * torch.exp(torch.tensor(-2.0)))
    )


def test_cross_entropy_all_ignored_mean_is_nan_like_torch() -> None:
    logits, target = torch.randn(3, 4), torch.full((3,), -100)
    assert torch.isnan(funcloss.cross_entropy(logits, target))
    assert torch.isnan(F.cross_entropy(logits, target))
    assert funcloss.cross_entropy(logits, target, reduction="sum") == 0


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize(
    "kwargs", [{}, {"weight": torch.tensor([2.0, 1.0, 0.5, 1.0]), "label_smoothing": 0.2}]
)
def test_cross_entropy_all_ignored_gradient_is_zero_like_torch(fused: bool, kwargs: dict) -> None:
    # The mean is 0 / 0 = nan, but ignored rows get exactly zero gradient in torch.
    logits, target = torch.randn(3, 4, requires_grad=True), torch.full((3,), -100)
    weight, smoothing = kwargs.get("weight"), kwargs.get("label_smoothing", 0.0)
    loss = classification._cross_entropy(logits, target, weight, -100, "mean", smoothing, fused)
    assert torch.isnan(loss)
    assert torch.equal(torch.autograd.grad(loss, logits)[0], torch.zeros(3, 4))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_empty_batch_like_torch(reduction: str) -> None:
    logits, target = torch.randn(0, 4, requires_grad=True), torch.zeros(0, dtype=torch.long)
    ours, theirs = (
        loss(logits, target, reduction=reduction)
        for loss in (funcloss.cross_entropy, F.cross_entropy)
    )
    torch.testing.assert_close(ours, theirs.detach(), equal_nan=True)
    assert torch.autograd.grad(ours.sum(), logits)[0].shape == (0, 4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cross_entropy_half_precision_accumulates_in_fp32(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    logits = (torch.randn(64, 1000) * 4).to(dtype)
    target = torch.randint(0, 1000, (64,))
    exact = F.cross_entropy(logits.double(), target, reduction="none")
    ours = funcloss.cross_entropy(logits, target, reduction="none")
    assert ours.dtype == dtype
    # Only the final rounding to the half dtype remains: within one half-precision ulp.
    torch.testing.assert_close(ours.double(), exact, rtol=2**-7, atol=0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_input_paths_match_torch(
    monkeypatch: pytest.MonkeyPatch, label_smoothing: float, weighted: bool, reduction: str, dtype
) -> None:
    """The eager paths for large inputs (row chunks in forward, in-place backward) against torch,
    with small thresholds so that several chunks are used."""
    monkeypatch.setattr(classification, "_FUSED_MIN_ELEMENTS", 1000)
    monkeypatch.setattr(classification, "_CHUNK_ELEMENTS", 700)
    torch.manual_seed(1)
    logits = (3 * torch.randn(50, 37, dtype=dtype)).requires_grad_()
    target = torch.randint(0, 37, (50,))
    target[::6] = -100
    weight = torch.rand(37, dtype=dtype) if weighted else None
    kwargs = {"weight": weight, "reduction": reduction, "label_smoothing": label_smoothing}
    ours, theirs = (
        funcloss.cross_entropy(logits, target, **kwargs),
        F.cross_entropy(logits, target, **kwargs),
    )
    upstream = torch.randn_like(theirs)
    (ours_grad,) = torch.autograd.grad(ours, logits, upstream)
    (theirs_grad,) = torch.autograd.grad(theirs, logits, upstream)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours_grad, theirs_grad)


def test_custom_backward_saves_no_class_sized_intermediate() -> None:
    """The custom-backward path keeps only its inputs alive between forward and backward."""
    logits = torch.randn(300, 400, requires_grad=True)  # above _FUSED_MIN_ELEMENTS
    target = torch.randint(0, 400, (300,))
    assert logits.numel() >= classification._FUSED_MIN_ELEMENTS
    saved: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = funcloss.cross_entropy(logits, target, label_smoothing=0.1)
    big = [t for t in saved if t.numel() >= logits.numel()]
    assert big and all(t.data_ptr() == logits.data_ptr() for t in big)
    loss.backward()


def test_cross_entropy_probability_targets_k_dim() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, dtype=torch.float64)
    probs = torch.softmax(torch.randn(2, 3, 4, dtype=torch.float64), 1)
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            funcloss.cross_entropy(logits, probs, reduction=reduction, label_smoothing=0.2),
            F.cross_entropy(logits, probs, reduction=reduction, label_smoothing=0.2),
        )


def test_bce_gradient_at_zero_and_one_matches_torch() -> None:
    """torch divides by max(x (1 - x), 1e-12): finite where the clamped logs are flat."""
    x = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    ours = torch.autograd.grad(funcloss.binary_cross_entropy(x, y, reduction="sum"), x)[0]
    theirs = torch.autograd.grad(F.binary_cross_entropy(x, y, reduction="sum"), x)[0]
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(
        funcloss.binary_cross_entropy(x, y, reduction="none"),
        F.binary_cross_entropy(x, y, reduction="none"),
    )
    # The forward alone (what compile(grad(...)) differentiates) stays finite there too.
    forward_only = grad(lambda v: logistic._binary_cross_entropy_forward(v, y).sum())(x.detach())
    assert torch.isfinite(forward_only).all()


def test_bce_with_logits_gradient_at_zero() -> None:
    """d/dx at x = 0 is sigmoid(0) - y = 0.5 - y (a stabilised forward can get this wrong)."""
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0], dtype=torch.float64)
    (gradient,) = torch.autograd.grad(
        funcloss.binary_cross_entropy_with_logits(x, y, reduction="sum"), x
    )
    torch.testing.assert_close(gradient, torch.tensor([0.5, -0.5], dtype=torch.float64))


def test_nll_loss_golden_and_k_dim() -> None:
    log_probs = torch.tensor([[-0.1, -2.5], [-1.2, -0.4]])
    # by hand: mean of 0.1 and 0.4 weighted by (2, 1): (0.2 + 0.4) / 3
    out = funcloss.nll_loss(log_probs, torch.tensor([0, 1]), torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor(0.2))
    torch.manual_seed(0)
    lp = torch.log_softmax(torch.randn(2, 3, 4, 5), 1)
    t = torch.randint(0, 3, (2, 4, 5))
    t[0, 0, 0] = -100
    torch.testing.assert_close(funcloss.nll_loss(lp, t), F.nll_loss(lp, t))


def test_bce_with_logits_per_sample_hessian_is_clean() -> None:
    """F.logsigmoid resizes an out= tensor under vmap(hessian) (a warning, an error here)."""
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.rand(4, 3, dtype=torch.float64)
    per_sample = torch.func.vmap(torch.func.hessian(funcloss.binary_cross_entropy_with_logits))(
        x, y
    )
    sigmoid = torch.sigmoid(x)
    # d2/dx2 of the mean over 3 elements: diag(sigmoid (1 - sigmoid)) / 3
    expected = torch.diag_embed(sigmoid * (1 - sigmoid) / 3)
    torch.testing.assert_close(per_sample, expected)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_fused_path_under_vectorized_autograd_functional(label_smoothing: float) -> None:
    """torch.autograd.functional's vectorize=True batches the backward's grad: the in-place
    eager backward must not run on it."""
    logits = torch.randn(4, 5, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, -100])
    weight = torch.rand(5, dtype=torch.float64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return classification._cross_entropy(x, target, weight, -100, "none", label_smoothing, True)

    vectorized = torch.autograd.functional.jacobian(f, logits, vectorize=True)
    torch.testing.assert_close(vectorized, torch.autograd.functional.jacobian(f, logits))


_HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


@pytest.fixture
def host_reads(monkeypatch) -> list[str]:
    """Each call that reads a tensor's value back to the host, by method name."""
    reads: list[str] = []
    for name in _HOST_READS:
        method = getattr(torch.Tensor, name)

        def counting(self, *args, _method=method, _name=name, **kwargs):
            reads.append(_name)
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return reads


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss"])
def test_value_checks_read_one_value_per_call(host_reads: list[str], fn: str, fused: bool) -> None:
    # In eager CPU mode the class-index check costs one host read (a device sync on a GPU).
    x, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 2, 0])
    padded = torch.tensor([0, -100, 1, -100, 2])
    w = torch.tensor([0.5, 1.0, 2.0, 1.5])
    cases = [
        (y, {}),
        (padded, {}),
        (padded, {"weight": w}),
        (y, {"ignore_index": 0}),  # an ignore_index that is also a class
        (y, {"ignore_index": 4}),  # one just past the classes
        (torch.tensor([0, 4, 1, 4, 2]), {"ignore_index": 4}),
    ]
    for target, kwargs in cases:
        for reduction in ("none", "mean", "sum"):
            weight, ignore = kwargs.get("weight"), kwargs.get("ignore_index", -100)
            host_reads.clear()
            if fn == "nll_loss":
                ours = funcloss.nll_loss(x, target, reduction=reduction, **kwargs)
            else:
                ours = classification._cross_entropy(
                    x, target, weight, ignore, reduction, 0.1, fused
                )
            # (the fused path reads once more, on the CPU only: whether a row holds a +inf logit;
            # test_meta.py::test_at_most_one_host_read_per_call)
            assert len(host_reads) <= 1 + fused, (target, kwargs, host_reads)
            if fn == "nll_loss":
                expected = F.nll_loss(x, target, reduction=reduction, **kwargs)
            else:
                expected = F.cross_entropy(
                    x, target, reduction=reduction, label_smoothing=0.1, **kwargs
                )
            torch.testing.assert_close(ours, expected)
    loss = getattr(funcloss, fn)
    for bad, got in [([0, 4, 1, 2, 0], "4"), ([0, -1, 1, 2, 0], "-1"), ([0, -100, 7, 2, 0], "7")]:
        with pytest.raises(IndexError, match=rf"{fn}: `target` values .* got {got}\."):
            loss(x, torch.tensor(bad))
    with pytest.raises(IndexError, match=r"or equal ignore_index=4, got 5\."):
        loss(x, torch.tensor([0, 4, 5, 2, 0]), ignore_index=4)


# -- dtypes: the promoted dtype, and no float32 intermediate for float64 input ----------------


def test_probability_target_of_a_wider_dtype_promotes_like_torch() -> None:
    logits = torch.randn(4, 3)
    target = torch.randn(4, 3, dtype=torch.float64).softmax(1)
    for kwargs in ({}, {"weight": torch.rand(3), "label_smoothing": 0.2}):
        ours = funcloss.cross_entropy(logits, target, **kwargs)
        theirs = F.cross_entropy(logits, target, **kwargs)
        kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        assert ours.dtype == theirs.dtype == torch.float64
        # torch takes the log-softmax in float32 first; funcloss computes in float64 throughout
        exact = F.cross_entropy(logits.double(), target, **kwargs)
        torch.testing.assert_close(ours, exact, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)


_FLOAT64_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"weight": "w", "label_smoothing": 0.3},
    {"weight": "w", "ignore_index": 1, "label_smoothing": 0.2},
    {"ignore_index": 1},
]


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kwargs", _FLOAT64_OPTIONS)
@pytest.mark.parametrize("probabilities", [False, True])
def test_float64_under_transforms_matches_float64_torch(
    fused: bool, kwargs: dict, probabilities: bool
) -> None:
    # Eager float64 is exact; under vmap/jacrev/jacfwd a Python-float torch.where branch or a
    # default-dtype mask would make a float32 intermediate (5e-9 off before issue 9).
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64) * 3
    kwargs = dict(kwargs)
    if kwargs.get("weight") == "w":
        kwargs["weight"] = torch.rand(4, generator=generator, dtype=torch.float64) + 0.5
    if probabilities:
        if "ignore_index" in kwargs:
            pytest.skip("ignore_index applies to class indices")
        y = torch.randn(5, 4, generator=generator, dtype=torch.float64).softmax(1)
    else:
        y = torch.tensor([0, 1, 3, 2, 1])
    weight, ignore = kwargs.get("weight"), kwargs.get("ignore_index", -100)
    smoothing = kwargs.get("label_smoothing", 0.0)

    def ours(x, y, reduction="mean"):
        return classification._cross_entropy(x, y, weight, ignore, reduction, smoothing, fused)

    def theirs(x, y, reduction="mean"):
        return F.cross_entropy(x, y, reduction=reduction, **kwargs)

    tight = {"rtol": 1e-13, "atol": 1e-14}
    torch.testing.assert_close(jacrev(ours)(x, y), jacrev(theirs)(x, y), **tight)
    torch.testing.assert_close(jacfwd(ours)(x, y), jacrev(theirs)(x, y), **tight)
    torch.testing.assert_close(
        vmap(lambda x, y: ours(x, y, "none"))(x, y), theirs(x, y, "none"), **tight
    )
    per_sample = vmap(grad(lambda x, y: ours(x[None], y[None], "sum")))(x, y)
    torch.testing.assert_close(per_sample, jacrev(lambda x: theirs(x, y, "none").sum())(x), **tight)


# -- class masks: `where` of the logits' shape removes classes from the softmax ------------------
#
# Oracles: torch's F.cross_entropy on the logits with the removed classes at -inf (what a class
# mask means), and, for a mask shared by every row, F.cross_entropy on the kept columns only
# (label smoothing then spreads over the kept classes, as funcloss's must).

_ALLOWED = torch.tensor(
    [[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.bool
)
_TARGET = torch.tensor([0, 3, 2, 1])  # every one on an allowed class


def _masked_ce(fused: bool, x, target, allowed, weight=None, smoothing=0.0, reduction="mean"):
    ignore = -100
    return classification._cross_entropy(
        x, target, weight, ignore, reduction, smoothing, fused, allowed
    )


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
def test_class_mask_equals_minus_inf_logits(fused: bool, reduction: str, weighted: bool) -> None:
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5, 0.7], dtype=torch.float64) if weighted else None
    target = _TARGET.clone()
    target[1] = -100  # an ignored row among them
    ours = _masked_ce(fused, x, target, _ALLOWED, weight, reduction=reduction)
    theirs = F.cross_entropy(
        x.masked_fill(~_ALLOWED, -torch.inf), target, weight, reduction=reduction
    )
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)
    assert (g_ours[~_ALLOWED] == 0).all()


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_class_mask_label_smoothing_spreads_over_kept_classes(
    fused: bool, weighted: bool, reduction: str
) -> None:
    # A (1, C) vocabulary mask shared by every row: the oracle drops the removed columns.
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    kept = torch.tensor([True, False, True, True, False])
    columns = kept.nonzero().squeeze(1)
    target = torch.tensor([0, 2, 3, 3, 0, 2])
    remapped = torch.cumsum(kept.long(), 0)[target] - 1
    weight = torch.tensor([0.5, 2.0, 1.0, 1.5, 0.7], dtype=torch.float64) if weighted else None
    ours = _masked_ce(fused, x, target, kept[None], weight, 0.3, reduction)
    theirs = F.cross_entropy(
        x[:, columns],
        remapped,
        None if weight is None else weight[columns],
        label_smoothing=0.3,
        reduction=reduction,
    )
    torch.testing.assert_close(ours, theirs)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.4])
@pytest.mark.parametrize("poison", [torch.inf, -torch.inf, torch.nan])
def test_class_mask_removed_logits_reach_nothing(fused: bool, smoothing: float, poison) -> None:
    x = torch.randn(4, 5, dtype=torch.float64)
    bad = x.masked_fill(~_ALLOWED, poison)

    def f(z):
        return _masked_ce(fused, z, _TARGET, _ALLOWED, smoothing=smoothing)

    torch.testing.assert_close(f(bad), f(x))
    gradient = grad(f)(bad)
    torch.testing.assert_close(gradient, grad(f)(x))
    assert (gradient[~_ALLOWED] == 0).all()
    torch.testing.assert_close(jacfwd(f)(bad), gradient)
    hessian = torch.func.hessian(f)(bad)
    assert torch.isfinite(hessian).all()
    torch.testing.assert_close(hessian, torch.func.hessian(f)(x))


@pytest.mark.parametrize("fused", [False, True])
def test_class_index_on_a_removed_class_is_inf(fused: bool) -> None:
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([2, 0, 1, 4])  # rows 0 and 3 point at removed classes
    loss = _masked_ce(fused, x, target, _ALLOWED, reduction="none")
    assert torch.isposinf(loss[[0, 3]]).all() and torch.isfinite(loss[[1, 2]]).all()
    theirs = F.cross_entropy(x.masked_fill(~_ALLOWED, -torch.inf), target, reduction="none")
    torch.testing.assert_close(loss, theirs)
    (gradient,) = torch.autograd.grad(_masked_ce(fused, x, target, _ALLOWED), x)
    assert torch.isfinite(gradient).all() and (gradient[~_ALLOWED] == 0).all()
    # the finite part: softmax over the allowed classes (minus the one-hot where allowed) / N
    probabilities = torch.softmax(x.detach().masked_fill(~_ALLOWED, -torch.inf), 1)
    onehot = F.one_hot(target, 5).to(x.dtype) * _ALLOWED
    torch.testing.assert_close(gradient, (probabilities - onehot) / 4)


@pytest.mark.parametrize("fused", [False, True])
def test_row_with_no_class_left_counts_as_masked(fused: bool) -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 2, 0])
    allowed = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]], dtype=torch.bool)
    loss = _masked_ce(fused, x, target, allowed, torch.tensor([1.0, 2.0, 3.0, 4.0]).double())
    rows = torch.tensor([True, False, True])
    theirs = F.cross_entropy(
        x[rows].masked_fill(~allowed[rows], -torch.inf),
        target[rows],
        torch.tensor([1.0, 2.0, 3.0, 4.0]).double(),
    )
    torch.testing.assert_close(loss, theirs)
    none = _masked_ce(fused, x, target, allowed, reduction="none")
    assert none[1] == 0
    # every row without a class: a mean over nothing, 0 with zero gradient
    nothing = _masked_ce(fused, x, target, torch.zeros(3, 4, dtype=torch.bool))
    assert nothing == 0
    assert torch.equal(torch.autograd.grad(nothing, x)[0], torch.zeros(3, 4, dtype=x.dtype))


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_class_mask_drops_probability_mass_on_removed_classes(smoothing: float) -> None:
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(5, 4, dtype=torch.float64), 1).requires_grad_()
    kept = torch.tensor([True, True, False, True])
    ours = funcloss.cross_entropy(x, q, where=kept[None], label_smoothing=smoothing)
    # not renormalised: the kept columns' mass as it is
    theirs = F.cross_entropy(x[:, kept], q[:, kept], label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours, (x, q))
    g_theirs = torch.autograd.grad(theirs, (x, q))
    torch.testing.assert_close(g_ours, g_theirs)  # torch's: 0 at the columns it never saw
    assert (g_ours[0][:, ~kept] == 0).all() and (g_ours[1][:, ~kept] == 0).all()
    # nan mass on a removed class reaches nothing
    poisoned = q.detach().masked_fill(~kept[None], torch.nan)
    value = funcloss.cross_entropy(x, poisoned, where=kept[None], label_smoothing=smoothing)
    torch.testing.assert_close(value, ours)


@pytest.mark.parametrize("fused", [False, True])
def test_class_mask_k_dimensional_and_unbatched(fused: bool) -> None:
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    allowed = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(0)) < 0.6
    allowed[:, 1] = True
    target = torch.ones(2, 3, dtype=torch.long)
    for smoothing in (0.0, 0.2):
        ours = _masked_ce(fused, x, target, allowed, smoothing=smoothing, reduction="none")
        # each position (n, d) is a row of the (N D, C) problem
        rows = x.movedim(1, -1).reshape(-1, 4)
        row_mask = allowed.movedim(1, -1).reshape(-1, 4)
        flat = _masked_ce(
            fused, rows, target.reshape(-1), row_mask, smoothing=smoothing, reduction="none"
        )
        torch.testing.assert_close(ours, flat.view(2, 3))
    theirs = F.cross_entropy(x.masked_fill(~allowed, -torch.inf), target, reduction="none")
    torch.testing.assert_close(_masked_ce(fused, x, target, allowed, reduction="none"), theirs)
    # unbatched: a (C,) class mask, a () row mask
    z, y = torch.randn(5, dtype=torch.float64), torch.tensor(3)
    torch.testing.assert_close(
        _masked_ce(fused, z, y, _ALLOWED[0]),
        F.cross_entropy(z.masked_fill(~_ALLOWED[0], -torch.inf), y),
    )
    assert _masked_ce(fused, z, y, torch.tensor(False)) == 0


def test_one_class_corner_row_and_class_masks_by_dimensions() -> None:
    # Told apart by the number of dimensions, never by sizes: with C = 1 (or N = C) a mask of
    # the loss's dimensions masks rows, one of the logits' dimensions classes.
    kind = softmax_mask
    mask = torch.ones
    assert kind("cross_entropy", mask(3, dtype=torch.bool), (3,), (3, 1)) is False
    assert kind("cross_entropy", mask(3, 1, dtype=torch.bool), (3,), (3, 1)) is True
    assert kind("cross_entropy", mask((), dtype=torch.bool), (), (1,)) is False
    assert kind("cross_entropy", mask(1, dtype=torch.bool), (), (1,)) is True
    assert kind("cross_entropy", mask(1, 3, dtype=torch.bool), (3,), (3, 3)) is True
    assert kind("cross_entropy", mask(3, dtype=torch.bool), (3,), (3, 3)) is False
    # N = C: a (C,) mask is a row mask, as the slicing oracle says
    x, target = torch.randn(3, 3), torch.tensor([0, 1, 1])
    rows = torch.tensor([True, False, True])
    torch.testing.assert_close(
        funcloss.cross_entropy(x, target, where=rows), F.cross_entropy(x[rows], target[rows])
    )


def test_per_sample_class_masks_under_vmap_and_compile() -> None:
    x = torch.randn(4, 5, dtype=torch.float64)

    def f(z, y, allowed):
        return funcloss.cross_entropy(z, y, where=allowed, label_smoothing=0.2)

    looped = torch.stack([f(x[i], _TARGET[i], _ALLOWED[i]) for i in range(4)])
    torch.testing.assert_close(vmap(f)(x, _TARGET, _ALLOWED), looped)
    torch.testing.assert_close(
        vmap(grad(f))(x, _TARGET, _ALLOWED),
        torch.stack([grad(f)(x[i], _TARGET[i], _ALLOWED[i]) for i in range(4)]),
    )
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for allowed in (_ALLOWED, _ALLOWED.flip(0) | torch.eye(4, 5, dtype=torch.bool)):
        torch.testing.assert_close(compiled(x, _TARGET, allowed), f(x, _TARGET, allowed))


def test_nll_loss_row_mask_and_weighted_mean() -> None:
    log_probs = torch.log_softmax(torch.randn(5, 3, dtype=torch.float64), 1)
    target = torch.tensor([0, 2, -100, 1, 2])
    weight = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)
    rows = torch.tensor([True, False, True, True, False])
    poisoned = log_probs.masked_fill(~rows[:, None], torch.nan).requires_grad_()
    bad_target = target.masked_fill(~rows, 7)  # out of range, but masked: never read
    ours = funcloss.nll_loss(poisoned, bad_target, weight, where=rows)
    torch.testing.assert_close(ours, F.nll_loss(log_probs[rows], target[rows], weight))
    (gradient,) = torch.autograd.grad(ours, poisoned)
    assert torch.isfinite(gradient).all() and (gradient[~rows] == 0).all()
    nothing = funcloss.nll_loss(
        poisoned, bad_target, weight, where=torch.zeros(5, dtype=torch.bool)
    )
    assert nothing == 0


@pytest.mark.parametrize(
    "name", ["binary_cross_entropy_with_logits", "multilabel_soft_margin_loss"]
)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_logistic_terms_pass_the_transform_matrix(monkeypatch, name, reduction) -> None:
    """The custom backward that large inputs take (threshold lowered to reach it here)."""
    import funcloss._ops as ops
    from funcloss.testing import check_loss

    monkeypatch.setattr(ops, "_FUSED_FROM_NUMEL", 1)
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64) * 3
    y = torch.rand(3, 4, dtype=torch.float64)
    y[0, 0], y[1, 1] = 0.0, 1.0
    report = check_loss(
        getattr(funcloss, name),
        getattr(F, name),
        x,
        y,
        kwargs={"reduction": reduction},
        skip=("compile_grad", "compile_vmap_grad", "module"),
    )
    assert "jacfwd" in report.checked and "vmap" in report.checked, report


def test_fused_logistic_terms_limits_and_target_gradient(monkeypatch) -> None:
    """The fused path: infinite logits with the matching target give 0, and the target's
    gradient is torch's (also when only the target requires grad)."""
    import funcloss._ops as ops

    monkeypatch.setattr(ops, "_FUSED_FROM_NUMEL", 1)
    inf = float("inf")
    x = torch.tensor([inf, -inf, 2.0, -1.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.3, 1.0], requires_grad=True)
    loss = funcloss.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(loss[:2].detach(), torch.zeros(2))
    gx, gy = torch.autograd.grad(loss[2:].sum(), (x, y))
    xs, ys = x.detach()[2:].requires_grad_(), y.detach()[2:].requires_grad_()
    want = torch.autograd.grad(
        F.binary_cross_entropy_with_logits(xs, ys, reduction="sum"), (xs, ys)
    )
    torch.testing.assert_close(gx[2:], want[0])
    torch.testing.assert_close(gy[2:], want[1])
    (only_y,) = torch.autograd.grad(
        funcloss.binary_cross_entropy_with_logits(x.detach()[2:], ys, reduction="sum"), ys
    )
    torch.testing.assert_close(only_y, want[1])
