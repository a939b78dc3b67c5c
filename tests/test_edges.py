"""Numerics at the edges (issue 14): infinities, NaN, half precision, None, out-of-range targets.

The true value at an infinite input is the float64 limit: torch's own loss in float64 with each
``±inf`` replaced by ``±1e300`` and by ``±1e150``; where both agree and are finite (value and
gradient), that is the answer. Losses of ``_logistic.py``, ``_regression.py``, ``_margin.py``
and ``_embedding.py``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacfwd, vmap
from torch.utils._python_dispatch import TorchDispatchMode

import funcloss

INF, NAN = math.inf, math.nan


def _finite_copy(values: list[float], big: float) -> torch.Tensor:
    def finite(v):
        return (
            [finite(u) for u in v]
            if isinstance(v, list)
            else big
            if v == INF
            else -big
            if v == -INF
            else v
        )

    return torch.tensor(finite(values), dtype=torch.float64)


def limit(name: str, values: list[list[float]], wrt: tuple[int, ...], **kwargs):
    """torch's ``F.<name>`` in float64 at ±1e300 and ±1e150 in place of ±inf: (value, grads)
    where both agree and are finite, else ``None``."""
    results = []
    for big in (1e300, 1e150):
        args = [_finite_copy(v, big).requires_grad_() for v in values]
        out = getattr(F, name)(*args, **kwargs)
        grads = torch.autograd.grad(out.sum(), [args[i] for i in wrt])
        results.append((out.detach(), grads))
    (v1, g1), (v2, g2) = results
    same = (torch.allclose(a, b) for a, b in zip(g1, g2, strict=True))
    agree = torch.allclose(v1, v2) and all(same)
    finite = bool(v1.isfinite().all()) and all(bool(g.isfinite().all()) for g in g1)
    return (v1, g1) if agree and finite else None


def ours(name: str, values: list[list[float]], wrt: tuple[int, ...], **kwargs):
    args = [torch.tensor(v).requires_grad_() for v in values]
    out = getattr(funcloss, name)(*args, **kwargs)
    return out.detach(), torch.autograd.grad(out.sum(), [args[i] for i in wrt])


LIMIT_CASES = [
    # issue 14 item 8: a class of probability 0 at a log-probability of -inf adds nothing
    ("kl_div", [[0.0, -INF], [1.0, 0.0]], (0,), {"reduction": "sum"}),
    ("kl_div", [[0.0, -INF], [0.0, -INF]], (0, 1), {"reduction": "sum", "log_target": True}),
    ("kl_div", [[-1.0, INF], [0.0, -INF]], (0, 1), {"reduction": "sum", "log_target": True}),
    # a count of 0 at a log-rate of -inf
    ("poisson_nll_loss", [[-INF, 0.5], [0.0, 2.0]], (0,), {"reduction": "sum"}),
    # infinite logits with the matching target
    ("binary_cross_entropy_with_logits", [[INF, -INF, 1.0], [1.0, 0.0, 0.5]], (0,), {}),
    (
        "binary_cross_entropy_with_logits",
        [[INF, -INF], [1.0, 0.0]],
        (0,),
        {"reduction": "none", "pos_weight": torch.tensor(0.5, dtype=torch.float64)},
    ),
    ("multilabel_soft_margin_loss", [[[INF, -INF, 0.0]], [[1.0, 0.0, 1.0]]], (0,), {}),
    # issue 14 item 4 (torch gives 0 too)
    ("multilabel_margin_loss", [[[INF, 0.0, 1.0]]], (0,), {}),
]


@pytest.mark.parametrize(
    ("name", "values", "wrt", "kwargs"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES]
)
def test_infinite_inputs_give_the_float64_limit(name, values, wrt, kwargs) -> None:
    if name == "multilabel_margin_loss":  # an integer target: not part of the limit
        target = torch.tensor([[0, -1, 0]])
        x = torch.tensor(values[0], requires_grad=True)
        value = funcloss.multilabel_margin_loss(x, target)
        (grad,) = torch.autograd.grad(value, x)
        expected = []
        for big in (1e300, 1e150):
            x64 = _finite_copy(values[0], big).requires_grad_()
            v = F.multilabel_margin_loss(x64, target)
            expected.append((v, torch.autograd.grad(v, x64)[0]))
        assert torch.equal(expected[0][0], expected[1][0])
        torch.testing.assert_close(value.double(), expected[0][0])
        torch.testing.assert_close(grad.double(), expected[0][1])
        torch.testing.assert_close(
            jacfwd(funcloss.multilabel_margin_loss)(x.detach(), target), grad
        )
        return
    kwargs32 = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    truth = limit(name, values, wrt, **kwargs)
    assert truth is not None, "the float64 limit is finite here"
    value, grads = ours(name, values, wrt, **kwargs32)
    torch.testing.assert_close(value.double(), truth[0])
    for got, want in zip(grads, truth[1], strict=True):
        torch.testing.assert_close(got.double(), want)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize(
    "scores", [[[INF, 0.0, 1.0]], [[INF, 0.0, 1.0], [-2.0, INF, 0.5]]], ids=["one", "two"]
)
def test_multi_margin_at_an_infinite_target_score_gives_the_limit(scores, p) -> None:
    """An infinite target score: every hinge is 0 and so is the gradient (was nan for p=2)."""
    target = torch.tensor([0, 1][: len(scores)])
    x = torch.tensor(scores, requires_grad=True)
    value = funcloss.multi_margin_loss(x, target, p=p, reduction="sum")
    (grad,) = torch.autograd.grad(value, x)
    expected = []
    for big in (1e300, 1e150):
        x64 = _finite_copy(scores, big).requires_grad_()
        v = F.multi_margin_loss(x64, target, p=p, reduction="sum")
        expected.append((v, torch.autograd.grad(v, x64)[0]))
    torch.testing.assert_close(expected[0], expected[1])
    torch.testing.assert_close(value.double(), expected[0][0])
    torch.testing.assert_close(grad.double(), expected[0][1])
    forward = jacfwd(lambda v: funcloss.multi_margin_loss(v, target, p=p, reduction="sum"))
    torch.testing.assert_close(forward(x.detach()), grad)


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weight"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_multi_margin_p2_in_a_row_with_an_infinite_score(dtype, weighted) -> None:
    """p=2 on the composition (jacfwd, vmap(grad), jacrev, a class weight): an infinite
    non-target score; the scores of the row that it does not move get the float64 limit of
    their derivatives, forward mode too (was nan: 2 inf * 0 in the square's tangent). (Row 0's
    weight is 0: its stand-ins disagree, 0 * inf at 1e300, so its limit is not compared.)"""
    scores = [[0.5, INF, 0.3, -0.2], [0.2, 0.9, -INF, 0.1], [0.1, 0.4, 0.3, 0.2]]
    target = torch.tensor([0, 1, 3])
    weight = torch.tensor([0.0, 1.5, 0.5, 2.0], dtype=dtype) if weighted else None
    expected = []
    for big in (1e300, 1e150):
        x64 = _finite_copy(scores, big).requires_grad_()
        w64 = None if weight is None else weight.double()
        v = F.multi_margin_loss(x64, target, p=2, weight=w64, reduction="sum")
        expected.append(torch.autograd.grad(v, x64)[0])
    known = torch.isclose(*expected) & expected[0].isfinite()
    assert int(known.sum()) >= 8  # every score but those of the infinite hinge's row 0 pair
    x = torch.tensor(scores, dtype=dtype)

    def f(t):
        return funcloss.multi_margin_loss(t, target, p=2, weight=weight, reduction="sum")

    def per_row(t, y):
        w = weight
        return funcloss.multi_margin_loss(t[None], y[None], p=2, weight=w, reduction="sum")

    leaf = x.clone().requires_grad_()
    (eager,) = torch.autograd.grad(f(leaf), leaf)
    for what, got in (
        ("grad", eager),
        ("jacrev", torch.func.jacrev(f)(x)),
        ("jacfwd", jacfwd(f)(x)),
        ("vmap(grad)", vmap(torch.func.grad(per_row))(x, target)),
    ):
        torch.testing.assert_close(got[known].double(), expected[0][known], msg=what)
    if not weighted:  # the infinite hinge's own pair: unbounded, of the right sign
        assert eager[0, 1] == INF and eager[0, 0] == -INF


def test_kl_div_limit_under_vmap_and_jacfwd() -> None:
    x = torch.tensor([[0.0, -INF], [-1.0, -INF]])
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    per_row = vmap(lambda a, b: funcloss.kl_div(a, b, reduction="sum"))(x, p)
    torch.testing.assert_close(per_row, torch.tensor([0.0, 1.0]))  # by hand: -1 * x[y=1]
    jac = jacfwd(lambda a: funcloss.kl_div(a, p[0], reduction="sum"))(x[0])
    torch.testing.assert_close(jac, torch.tensor([-1.0, 0.0]))  # d/dx = -p


@pytest.mark.parametrize("pos_weight", [0.25, 0.5, 2.0])
@pytest.mark.parametrize("target", [0.3, 1.0])
def test_bce_with_logits_target_gradient_at_minus_inf(pos_weight, target) -> None:
    """issue 14 item 5: torch's ±inf limit (pos_weight < 1 gave nan)."""
    grads = []
    for lib in (funcloss, F):
        x = torch.tensor([-INF, 1.0])
        y = torch.tensor([target, target], requires_grad=True)
        out = lib.binary_cross_entropy_with_logits(
            x, y, pos_weight=torch.tensor(pos_weight), reduction="sum"
        )
        grads.append(torch.autograd.grad(out, y)[0])
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0][0] == INF


def test_bce_with_logits_target_gradient_at_the_matching_target() -> None:
    """Value 0 (torch: nan); the target gradient keeps the limit's sign, clamped to the dtype's
    range (the loss is 0 at t = 0 and inf beyond it)."""
    x = torch.tensor([-INF, INF])
    y = torch.tensor([0.0, 1.0], requires_grad=True)
    out = funcloss.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert torch.equal(out.detach(), torch.zeros(2))
    (grad,) = torch.autograd.grad(out.sum(), y)
    big = torch.finfo(torch.float32).max
    assert torch.equal(grad, torch.tensor([big, -big]))


def test_multilabel_margin_threshold_not_rounded_in_half_precision() -> None:
    """issue 14 item 7: x_j - 1 = 299 is not a bf16 number (it rounded to 300 and the hinge
    against a score of 300 was dropped)."""
    x = torch.tensor([[300.0, 300.0, 0.0], [64.0, 63.5, 1.0]])
    y = torch.tensor([[0, -1, 0], [0, -1, 0]])
    truth = F.multilabel_margin_loss(x.double(), y, reduction="none")  # exact in float64
    for dtype in (torch.bfloat16, torch.float16):
        got = funcloss.multilabel_margin_loss(x.to(dtype), y, reduction="none")
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), truth, rtol=4e-3, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_multilabel_soft_margin_half_gradient_at_least_as_accurate_as_torch(dtype) -> None:
    """issue 14 item 7: 64x64 ``randn * 3``, ``weight = rand(64)``, ``"sum"``; errors against
    the float64 truth at the rounded inputs."""
    generator = torch.Generator().manual_seed(0)
    x64 = torch.randn(64, 64, generator=generator, dtype=torch.float64) * 3
    y = (torch.rand(64, 64, generator=generator) > 0.5).double()
    w64 = torch.rand(64, generator=generator, dtype=torch.float64)
    xq = x64.to(dtype).double().requires_grad_()
    wq = w64.to(dtype).double()
    truth = torch.autograd.grad(
        F.multilabel_soft_margin_loss(xq, y, weight=wq, reduction="sum"), xq
    )[0]
    errors = {}
    for lib in (funcloss, F):
        x = x64.to(dtype).requires_grad_()
        out = lib.multilabel_soft_margin_loss(x, y.to(dtype), weight=w64.to(dtype), reduction="sum")
        assert out.dtype == dtype
        errors[lib] = (torch.autograd.grad(out, x)[0].double() - truth).abs().max().item()
    assert errors[funcloss] <= errors[F]


# -- None for a required tensor (issue 14 item 9) ---------------------------------------------

X, Y = torch.rand(2, 3), torch.rand(2, 3)
SIGN = torch.tensor([1.0, -1.0])
REQUIRED = [
    ("binary_cross_entropy", ("input", "target"), (X, Y)),
    ("binary_cross_entropy_with_logits", ("input", "target"), (X, Y)),
    ("l1_loss", ("input", "target"), (X, Y)),
    ("mse_loss", ("input", "target"), (X, Y)),
    ("huber_loss", ("input", "target"), (X, Y)),
    ("smooth_l1_loss", ("input", "target"), (X, Y)),
    ("poisson_nll_loss", ("input", "target"), (X, Y)),
    ("gaussian_nll_loss", ("input", "target", "var"), (X, Y, torch.ones(2, 3))),
    ("kl_div", ("input", "target"), (X, Y)),
    ("soft_margin_loss", ("input", "target"), (X, torch.ones(2, 3))),
    ("multilabel_soft_margin_loss", ("input", "target"), (X, torch.ones(2, 3))),
    ("multilabel_margin_loss", ("input", "target"), (X, torch.zeros(2, 3, dtype=torch.long))),
    ("multi_margin_loss", ("input", "target"), (X, torch.tensor([0, 1]))),
    ("margin_ranking_loss", ("input1", "input2", "target"), (SIGN, SIGN, SIGN)),
    ("hinge_embedding_loss", ("input", "target"), (X, torch.ones(2, 3))),
    ("cosine_embedding_loss", ("input1", "input2", "target"), (X, Y, SIGN)),
    ("triplet_margin_loss", ("anchor", "positive", "negative"), (X, Y, X)),
    ("triplet_margin_with_distance_loss", ("anchor", "positive", "negative"), (X, Y, X)),
]


@pytest.mark.parametrize(("name", "names", "args"), REQUIRED, ids=[r[0] for r in REQUIRED])
def test_none_for_a_required_tensor_is_named(name, names, args) -> None:
    fn = getattr(funcloss, name)
    for position, arg in enumerate(names):
        call = list(args)
        call[position] = None
        what = "be a torch.Tensor or a float" if arg == "var" else "be a torch.Tensor"
        with pytest.raises(TypeError, match=rf"^{name}: `{arg}` must {what}, got NoneType\.$"):
            fn(*call, reduction="sum")


# -- binary_cross_entropy targets outside [0, 1] (issue 14 item 10) -----------------------------


@pytest.mark.parametrize("bad", [1.5, -0.5, NAN, INF])
def test_bce_target_outside_the_unit_interval_raises(bad) -> None:
    x, y = torch.tensor([0.5, 0.5]), torch.tensor([1.0, bad])
    with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
        F.binary_cross_entropy(x, y)  # torch 2.13 raises too
    with pytest.raises(
        ValueError, match=r"binary_cross_entropy: `target` values must be in \[0.0, 1.0\], got "
    ):
        funcloss.binary_cross_entropy(x, y)
    # not under a transform (the values cannot be read there)
    vmap(funcloss.binary_cross_entropy)(x.unsqueeze(1), y.unsqueeze(1))


def test_bce_input_is_reported_before_target() -> None:
    with pytest.raises(ValueError, match=r"`input` values must be in \[0.0, 1.0\], got 2.0"):
        funcloss.binary_cross_entropy(torch.tensor([2.0]), torch.tensor([3.0]))


class _CountReads(TorchDispatchMode):
    """Counts host reads of tensor data (``item``, ``bool``, ``int``, ``float``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        return func(*args, **(kwargs or {}))


def test_bce_checks_input_and_target_in_one_host_read(monkeypatch) -> None:
    tolist_calls = []
    original = torch.Tensor.tolist

    def counting_tolist(self):
        tolist_calls.append(1)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    x, y = torch.rand(8, 3).clamp(0.01, 0.99), torch.rand(8, 3).double()
    with _CountReads() as mode:
        funcloss.binary_cross_entropy(x, y)
    assert mode.reads + len(tolist_calls) == 1


def _exact_margin_truth(name, scores, target, p=1, weight=None):
    """The hinge losses (``"none"``) and the gradient of their sum in exact rational arithmetic
    from the float32 scores, each rounded once to float64 (``inf`` beyond float64's range does
    not occur: |hinge| <= 7e38)."""
    rows, classes = scores.shape
    values, grads = [], [[Fraction(0)] * classes for _ in range(rows)]
    for n in range(rows):
        x = [Fraction(v) for v in scores[n].double().tolist()]
        if name == "multilabel_margin_loss":
            labels = []
            for j in target[n].tolist():
                if j == -1:
                    break
                labels.append(j)
            pairs = [(j, i) for j in labels for i in range(classes) if i not in labels]
            factor, margin, power = Fraction(1, classes), 1, 1
        else:
            y = int(target[n])
            pairs = [(y, i) for i in range(classes) if i != y]
            w = 1 if weight is None else Fraction(float(weight[y]))
            factor, margin, power = w / classes, 1, p
        total = Fraction(0)
        for j, i in pairs:
            z = margin - x[j] + x[i]
            if z > 0:
                total += z**power
                slope = factor * power * z ** (power - 1)
                grads[n][i] += slope
                grads[n][j] -= slope
        values.append(float(total * factor))
    return torch.tensor(values, dtype=torch.float64), torch.tensor(
        [[float(g) for g in row] for row in grads], dtype=torch.float64
    )


HUGE = 3e38


def _huge_scores(rows: int, classes: int) -> torch.Tensor:
    """Rows of ±3e38, one ulp off it, small scores and 0: hinges of 1 between two equal huge
    scores (torch's 1 - x_j + x_i rounds the 1 away), of 6e38 (overflows float32 before the
    1 / C) and of a huge score against a small one."""
    generator = torch.Generator().manual_seed(14)
    pool = torch.tensor([HUGE, -HUGE, 0.0, 0.5, -1.0, 1e30], dtype=torch.float32)
    pool = torch.cat([pool, pool[:2].nextafter(torch.tensor(0.0))])
    return pool[torch.randint(len(pool), (rows, classes), generator=generator)]


@pytest.mark.parametrize("path", ["step", "composition"])
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("multilabel_margin_loss", {}),
        ("multi_margin_loss", {"p": 1}),
        ("multi_margin_loss", {"p": 2}),
        ("multi_margin_loss", {"p": 1, "weight": torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0])}),
        ("multi_margin_loss", {"p": 2, "weight": torch.tensor([0.5, 2.0, 1.0, 0.25, 3.0])}),
    ],
    ids=["multilabel", "multi-p1", "multi-p2", "multi-p1-weight", "multi-p2-weight"],
)
def test_margin_losses_at_scores_near_the_float32_max(name, kwargs, path) -> None:
    """Value and gradient are the exact ones rounded to float32 (to float32's tolerance), inf
    only where the exact value is above float32's max: no nan (was nan from inf - inf in the
    sort's k (1 - x_j) + sum x_i), no hinge of 1 rounded away, no overflow before the 1 / C."""
    rows, classes = 400, 5
    scores = _huge_scores(rows, classes)
    generator = torch.Generator().manual_seed(15)
    if name == "multilabel_margin_loss":
        target = torch.randint(-1, classes, (rows, classes), generator=generator)
    else:
        target = torch.randint(0, classes, (rows,), generator=generator)
    value64, grad64 = _exact_margin_truth(name, scores, target, **kwargs)
    fits = value64.abs() <= torch.finfo(torch.float32).max
    assert bool(fits.any()) and not bool(fits.all())
    mask = {"where": torch.ones(rows, dtype=torch.bool)} if path == "composition" else {}
    x = scores.clone().requires_grad_()
    value = getattr(funcloss, name)(x, target, reduction="none", **kwargs, **mask)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert not bool(value.isnan().any()) and not bool(grad.isnan().any())
    torch.testing.assert_close(value[fits], value64[fits].float())
    assert bool((value[~fits] == INF).all())
    gfits = grad64.abs() <= torch.finfo(torch.float32).max
    if kwargs.get("p") == 2:  # the gradient 2 h / C of a row whose value (h^2 / C) overflows
        gfits = gfits & fits.unsqueeze(-1)  # may overflow on the way: not compared
    torch.testing.assert_close(grad[gfits], grad64[gfits].float())
    assert bool(grad[grad64.abs() > torch.finfo(torch.float32).max].isinf().all())


# -- what funcloss gets right where torch does not: keep it ----------------------------------


def test_multi_margin_does_not_hide_a_nan_input() -> None:
    x, y = torch.tensor([[0.1, NAN, 0.3]]), torch.tensor([0])
    assert F.multi_margin_loss(x, y).item() == pytest.approx(0.4)  # torch 2.13 hides the NaN
    assert funcloss.multi_margin_loss(x, y).isnan()


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("multi_margin_loss", torch.zeros(0, dtype=torch.long)),
        ("multilabel_margin_loss", torch.zeros(0, 3, dtype=torch.long)),
    ],
)
def test_empty_batch_mean_is_nan(name, target) -> None:
    """torch 2.13 returns uninitialised memory here; an empty mean is nan, as elsewhere."""
    assert getattr(funcloss, name)(torch.zeros(0, 3), target).isnan()


def test_fp16_soft_margin_does_not_overflow() -> None:
    x, y = torch.tensor([-12.0], dtype=torch.float16), torch.tensor([1.0], dtype=torch.float16)
    assert F.soft_margin_loss(x, y).isinf()  # torch 2.13: exp(12) overflows fp16
    out = funcloss.soft_margin_loss(x, y)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, torch.tensor(12.0, dtype=torch.float16))  # log1p(e^12)


def test_bce_with_logits_limit_under_vmap_and_jacfwd() -> None:
    x = torch.tensor([[INF, -INF], [-INF, INF]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    per_row = vmap(lambda a, b: funcloss.binary_cross_entropy_with_logits(a, b, reduction="sum"))
    assert torch.equal(per_row(x, y), torch.zeros(2))  # the float64 limit (test above)
    jac = jacfwd(lambda a: funcloss.binary_cross_entropy_with_logits(a, y[0], reduction="sum"))
    assert torch.equal(jac(x[0]), torch.zeros(2))  # d/dx = sigma(x) - y = 0 in the limit
