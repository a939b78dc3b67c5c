"""Broadcasting: funcloss broadcasts exactly where and as torch does, warns where torch warns and
raises (its own house error) where torch raises.

Each row of ``ROWS`` is a loss, the shapes of its tensor arguments and torch 2.13's behaviour as
measured on CPU: ``"broadcasts"`` (silently), ``"warns"`` (broadcasts with the UserWarning "Using
a target size ... that is different to the input size") or ``"raises"``. The test measures
torch's behaviour live and checks that the row still says what torch does, then that funcloss
does the same: the same values (every reduction) and gradients with respect to every floating
input, torch's warning text exactly, or a ``ValueError`` in the house template. Where the row's
leading dimension is a batch dimension, ``vmap`` over it (no fallback) and ``vmap(grad)`` are
compared with a loop of torch's loss over the slices.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import grad, vmap

import funcloss

from .helpers import assert_close

Shape = tuple[int, ...]
TARGET_SIZE_WARNING = r"Using a target size \(torch\.Size\(\[.*\]\)\) that is different to the"

# How each loss's tensor arguments are drawn, in order: "real" any value, "prob" in (0, 1),
# "logprob" a log-probability, "pos" positive, "count" a non-negative count, "sign" +-1,
# "binary" 0/1 (all float64).
KINDS: dict[str, tuple[str, ...]] = {
    "l1_loss": ("real", "real"),
    "mse_loss": ("real", "real"),
    "huber_loss": ("real", "real"),
    "smooth_l1_loss": ("real", "real"),
    "poisson_nll_loss": ("real", "count"),
    "kl_div": ("logprob", "prob"),
    "gaussian_nll_loss": ("real", "real", "pos"),
    "binary_cross_entropy": ("prob", "prob"),
    "binary_cross_entropy_with_logits": ("real", "prob"),
    "soft_margin_loss": ("real", "sign"),
    "multilabel_soft_margin_loss": ("real", "binary"),
    "margin_ranking_loss": ("real", "real", "sign"),
    "hinge_embedding_loss": ("real", "sign"),
    "cosine_embedding_loss": ("real", "real", "sign"),
    "triplet_margin_loss": ("real", "real", "real"),
    "triplet_margin_with_distance_loss": ("real", "real", "real"),
}


@dataclass(frozen=True)
class Row:
    loss: str
    shapes: tuple[Shape | float, ...]  # positional tensors (a float: passed as a float)
    torch_does: str  # "broadcasts" | "warns" | "raises", measured on torch 2.13
    weights: dict[str, Shape] = field(default_factory=dict)  # keyword tensors (positive)
    config: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in {**self.weights, **self.config}.items())
        return f"{self.loss} {' '.join(map(str, self.shapes))}{extra}"


def _rows(loss: str, torch_does: str, *shape_lists: tuple, **extra: Any) -> list[Row]:
    return [Row(loss, shapes, torch_does, **extra) for shapes in shape_lists]


WARN_LOSSES = ("l1_loss", "mse_loss", "huber_loss", "smooth_l1_loss")
ROWS: list[Row] = [
    # -- regression: torch warns and broadcasts l1/mse/huber/smooth_l1, poisson/kl silently
    *[
        row
        for loss in WARN_LOSSES
        for row in [
            *_rows(loss, "warns", ((5, 1), (1, 5)), ((5, 5), (5,)), ((5, 5), ()), ((), (5,))),
            *_rows(loss, "warns", ((5, 1), (5, 5)), ((4,), (3, 4))),
            *_rows(loss, "raises", ((5, 5), (3, 5))),
        ]
    ],
    *_rows("smooth_l1_loss", "warns", ((5, 1), (1, 5)), config={"beta": 0.0}),
    *[
        row
        for loss in ("l1_loss", "mse_loss", "huber_loss")
        for row in [
            # torch: a weight must have exactly input's shape, even when target broadcasts it
            Row(loss, ((5, 1), (1, 5)), "warns", weights={"weight": (5, 1)}),
            Row(loss, ((5, 1), (1, 5)), "raises", weights={"weight": (5, 5)}),
            Row(loss, ((5, 5), (5, 5)), "raises", weights={"weight": (5,)}),
            Row(loss, ((5, 5), (5, 5)), "raises", weights={"weight": (5, 1)}),
        ]
    ],
    *[
        row
        for loss in ("poisson_nll_loss", "kl_div")
        for row in [
            *_rows(loss, "broadcasts", ((5, 1), (1, 5)), ((5, 5), (5,)), ((5,), (5, 5))),
            *_rows(loss, "broadcasts", ((5, 5), ()), ((), (5,)), ((4, 1, 3), (2, 1))),
            *_rows(loss, "raises", ((5, 5), (3, 5))),
        ]
    ],
    *_rows("poisson_nll_loss", "broadcasts", ((5, 1), (1, 5)), config={"full": True}),
    *_rows("poisson_nll_loss", "broadcasts", ((5, 1), (1, 5)), config={"log_input": False}),
    *_rows("kl_div", "broadcasts", ((5, 1), (1, 5)), config={"log_target": True}),
    # -- gaussian_nll_loss: any target that broadcasts; var by torch's own rules
    *_rows(
        "gaussian_nll_loss",
        "broadcasts",
        ((5, 3), (), (5, 3)),
        ((5, 3), (1, 3), (5, 3)),
        ((5, 3), (5, 1), (5, 3)),
        ((5, 3), (3,), (5, 3)),
        ((5, 3), (5, 3), (5,)),
        ((5, 3), (5, 3), (5, 1)),
        ((5, 3), (5, 3), (1, 3)),
        ((5, 1), (5, 3), (5, 1)),
        ((2, 5, 3), (2, 5, 3), (2, 5)),
        ((5, 3), (5, 3), 0.7),
        ((5, 3), (), 0.7),
        ((5, 1), (1, 3), 0.7),
    ),
    *_rows(
        "gaussian_nll_loss",
        "raises",
        ((5, 3), (5, 3), ()),
        ((5, 3), (5, 3), (3,)),
        ((5, 3), (5, 3), (1, 1)),
        ((5, 3), (5, 3), (1,)),
        ((5, 1), (5, 3), (5, 3)),
        ((2, 5, 3), (2, 5, 3), (2, 1, 1)),
        ((2, 5, 3), (2, 5, 3), (5, 3)),
        ((5, 3), (4, 3), (5, 3)),
    ),
    # -- binary cross-entropy: the target never broadcasts; weights broadcast to input's shape
    *[
        row
        for loss in ("binary_cross_entropy", "binary_cross_entropy_with_logits")
        for row in [
            *_rows(loss, "raises", ((5, 5), (5, 1)), ((5, 5), ()), ((5, 1), (1, 5))),
            *_rows(loss, "raises", ((5,), (5, 5))),
            Row(loss, ((5, 5), (5, 5)), "broadcasts", weights={"weight": (5,)}),
            Row(loss, ((5, 5), (5, 5)), "broadcasts", weights={"weight": (5, 1)}),
            Row(loss, ((5, 5), (5, 5)), "broadcasts", weights={"weight": ()}),
            Row(loss, ((5, 5), (5, 5)), "raises", weights={"weight": (2, 5, 5)}),
            Row(loss, ((5, 1), (5, 1)), "raises", weights={"weight": (5, 5)}),
        ]
    ],
    Row("binary_cross_entropy_with_logits", ((5, 5), (5, 5)), "broadcasts", {"pos_weight": (5,)}),
    Row("binary_cross_entropy_with_logits", ((5, 5), (5, 5)), "broadcasts", {"pos_weight": (1,)}),
    Row("binary_cross_entropy_with_logits", ((5, 1), (5, 1)), "raises", {"pos_weight": (5,)}),
    Row(
        "binary_cross_entropy_with_logits",
        ((5, 5), (5, 5)),
        "broadcasts",
        {"weight": (5, 1), "pos_weight": (5,)},
    ),
    # -- soft_margin_loss: the target broadcasts to input's shape, never beyond it
    *_rows("soft_margin_loss", "broadcasts", ((5, 5), (5, 1)), ((5, 5), (5,)), ((5, 5), ())),
    *_rows("soft_margin_loss", "raises", ((5, 1), (1, 5)), ((5,), (5, 5)), ((), (5,))),
    *_rows("soft_margin_loss", "raises", ((5, 5), (3, 5))),
    # -- multilabel_soft_margin_loss: everything broadcasts; torch sums dim input.dim() - 1
    *_rows(
        "multilabel_soft_margin_loss",
        "broadcasts",
        ((5, 3), (1, 3)),
        ((5, 3), (5, 1)),
        ((5, 3), (3,)),
        ((5, 3), ()),
        ((3,), (5, 3)),
        ((5, 1), (5, 3)),
    ),
    *[
        Row("multilabel_soft_margin_loss", ((5, 3), (5, 3)), "broadcasts", {"weight": shape})
        for shape in [(3,), (5, 1), (1,), (), (2, 5, 3)]
    ],
    Row("multilabel_soft_margin_loss", ((5, 1), (5, 1)), "broadcasts", {"weight": (5, 3)}),
    *_rows("multilabel_soft_margin_loss", "raises", ((5, 3), (2,)), ((5, 3), (4, 3))),
    # -- pairwise and embedding losses
    *_rows(
        "margin_ranking_loss",
        "broadcasts",
        ((5, 2), (5, 1), (1, 2)),
        ((5, 1), (1, 5), (5, 5)),
        ((5, 1), (1, 5), (1, 1)),
        ((5,), (1,), (5,)),
        ((5,), (5,), (1,)),
    ),
    *_rows(
        "margin_ranking_loss",
        "raises",
        ((5,), (5,), ()),
        ((5, 5), (5,), (5, 5)),
        ((), (5,), (5,)),
        ((5,), (5,), (2, 5)),
        ((3,), (5,), (5,)),
    ),
    *_rows(
        "hinge_embedding_loss",
        "broadcasts",
        ((5, 5), (1, 5)),
        ((5, 5), (5, 1)),
        ((5, 1), (5, 5)),
        ((5,), (5, 5)),
        ((5, 5), ()),
        ((), (5,)),
    ),
    *_rows("hinge_embedding_loss", "raises", ((5,), (3,))),
    *_rows(
        "cosine_embedding_loss",
        "broadcasts",
        ((1, 4), (5, 4), (5,)),
        ((5, 4), (1, 4), (5,)),
        ((5, 4), (5, 4), (1,)),
        ((1, 4), (1, 4), (5,)),
        ((5, 4), (5, 1), (5,)),
        ((5, 1), (5, 4), (5,)),
        ((4,), (4,), ()),
    ),
    *_rows(
        "cosine_embedding_loss",
        "raises",
        ((5, 4), (5, 4), ()),
        ((4,), (5, 4), (5,)),
        ((5, 4), (4,), (5,)),
        ((4,), (4,), (1,)),
        ((5, 4), (5, 4), (5, 1)),
        ((2, 5, 4), (2, 5, 4), (2, 5)),
        ((5, 4), (3, 4), (5,)),
        ((5, 4), (5, 4), (3,)),
    ),
    *[
        row
        for loss in ("triplet_margin_loss", "triplet_margin_with_distance_loss")
        for swap in (False, True)
        for row in [
            *_rows(
                loss,
                "broadcasts",
                ((1, 4), (5, 4), (5, 4)),
                ((5, 4), (1, 4), (5, 4)),
                ((5, 4), (5, 4), (1, 4)),
                ((5, 4), (5, 1), (5, 4)),
                ((2, 5, 4), (2, 1, 4), (1, 5, 4)),
                config={"swap": swap},
            ),
            *_rows(
                loss,
                "raises",
                ((4,), (5, 4), (5, 4)),
                ((5, 4), (5, 4), (4,)),
                ((2, 5, 4), (5, 4), (5, 4)),
                ((5, 4), (3, 4), (5, 4)),
                config={"swap": swap},
            ),
        ]
    ],
]


def _draw(kind: str, shape: Shape, generator: torch.Generator) -> Tensor:
    def uniform() -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    if kind == "real":
        return torch.randn(shape, generator=generator, dtype=torch.float64)
    if kind == "prob":
        return 0.05 + 0.9 * uniform()
    if kind == "logprob":
        return torch.log(0.05 + 0.9 * uniform())
    if kind == "pos":
        return 0.2 + uniform()
    if kind == "count":
        return torch.floor(4 * uniform()) + 0.5 * (uniform() > 0.5)
    if kind == "sign":
        return torch.where(uniform() > 0.5, 1.0, -1.0).to(torch.float64)
    if kind == "binary":
        return (uniform() > 0.5).to(torch.float64)
    raise AssertionError(kind)


def _inputs(row: Row) -> tuple[list[Any], dict[str, Any]]:
    generator = torch.Generator().manual_seed(sum(map(ord, repr(row))))
    args = [
        shape if isinstance(shape, float) else _draw(kind, shape, generator)
        for kind, shape in zip(KINDS[row.loss], row.shapes, strict=True)
    ]
    kwargs = {name: _draw("pos", shape, generator) for name, shape in row.weights.items()}
    return args, {**kwargs, **row.config}


def _reductions(row: Row) -> tuple[str, ...]:
    # kl_div's "mean" makes torch warn about the reduction itself (funcloss does not)
    return ("none", "sum", "batchmean") if row.loss == "kl_div" else ("none", "mean", "sum")


def _torch_call(row: Row, args: list[Any], kwargs: dict[str, Any], reduction: str) -> Tensor:
    return getattr(F, row.loss)(*args, **kwargs, reduction=reduction)


def _ours_call(row: Row, args: list[Any], kwargs: dict[str, Any], reduction: str) -> Tensor:
    return getattr(funcloss, row.loss)(*args, **kwargs, reduction=reduction)


def _measure_torch(row: Row, args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str | None]:
    """What torch does with this call: its behaviour and its broadcast warning's text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _torch_call(row, args, kwargs, "sum")
        except (RuntimeError, ValueError, IndexError):
            return "raises", None
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    sized = [m for m in messages if m.startswith("Using a target size")]
    assert len(sized) == len(messages), messages  # no other warning in these calls
    return ("warns", sized[0]) if sized else ("broadcasts", None)


def _call_quietly(call: Callable[[], Tensor]) -> Tensor:
    """A call that may give torch's target-size warning (already checked once per row)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TARGET_SIZE_WARNING, UserWarning)
        return call()


def _floating(args: list[Any], kwargs: dict[str, Any]) -> list[tuple[str, Tensor]]:
    named = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
    return [(n, t) for n, t in named if isinstance(t, Tensor) and t.is_floating_point()]


def _with_leaf(
    args: list[Any], kwargs: dict[str, Any], name: str
) -> tuple[list[Any], dict[str, Any], Tensor]:
    """The arguments with the tensor ``name`` (``arg<i>`` or a keyword) made a fresh leaf."""
    args, kwargs = list(args), dict(kwargs)
    if name.startswith("arg"):
        leaf = args[int(name[3:])] = args[int(name[3:])].detach().requires_grad_()
    else:
        leaf = kwargs[name] = kwargs[name].detach().requires_grad_()
    return args, kwargs, leaf


def _gradient(
    call: Callable[[list[Any], dict[str, Any]], Tensor],
    args: list[Any],
    kwargs: dict[str, Any],
    name: str,
) -> Tensor:
    """Gradient of a fixed weighted sum of the unreduced loss w.r.t. one floating tensor."""
    args, kwargs, leaf = _with_leaf(args, kwargs, name)
    out = _call_quietly(lambda: call(args, kwargs))
    if not out.requires_grad:  # a label that only selects (hinge, cosine targets)
        return torch.zeros_like(leaf)
    cotangent = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
    (result,) = torch.autograd.grad(
        (out * cotangent).sum(), leaf, allow_unused=True, materialize_grads=True
    )
    return result


def _check_gradients(row: Row, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Ours against torch's gradient; where torch's kernel has none (BCE weights, soft margin's
    target), against finite differences."""
    for name, _ in _floating(args, kwargs):
        ours = _gradient(lambda a, k: _ours_call(row, a, k, "none"), args, kwargs, name)
        try:
            expected = _gradient(lambda a, k: _torch_call(row, a, k, "none"), args, kwargs, name)
        except RuntimeError as error:
            assert "is not differentiable with respect to" in str(error)
            a, k, leaf = _with_leaf(args, kwargs, name)

            def of_leaf(x: Tensor, a=a, k=k, leaf=leaf) -> Tensor:
                a = [x if t is leaf else t for t in a]
                k = {n: x if t is leaf else t for n, t in k.items()}
                return _call_quietly(lambda: _ours_call(row, a, k, "none"))

            assert torch.autograd.gradcheck(of_leaf, (leaf,))
            continue
        assert_close(ours, expected, f"{row!r} d/d{name}")


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_broadcasting_as_torch(row: Row) -> None:
    args, kwargs = _inputs(row)
    behaviour, message = _measure_torch(row, args, kwargs)
    assert behaviour == row.torch_does, f"torch now {behaviour}s: update the row"
    if behaviour == "raises":
        with pytest.raises(ValueError, match=rf"^{row.loss}: `\w+` must "):
            # torch warns before it raises on a weight of the wrong shape, and so does funcloss
            _call_quietly(lambda: _ours_call(row, args, kwargs, "sum"))
        return
    if behaviour == "warns":
        with pytest.warns(UserWarning, match=TARGET_SIZE_WARNING) as record:
            _ours_call(row, args, kwargs, "sum")
        assert [str(w.message) for w in record] == [message]
    else:
        _ours_call(row, args, kwargs, "sum")  # no warning (warnings are errors here)
    for reduction in _reductions(row):
        expected = _call_quietly(lambda r=reduction: _torch_call(row, args, kwargs, r))
        actual = _call_quietly(lambda r=reduction: _ours_call(row, args, kwargs, r))
        assert actual.shape == expected.shape, reduction
        assert_close(actual, expected, f"{row!r} {reduction}")
    _check_gradients(row, args, kwargs)


# Arguments one dimension short whose dims align with the input's leading ones (not its
# trailing ones, as in plain broadcasting): a per-row target, a per-row variance.
ROW_ALIGNED: dict[str, tuple[int, ...]] = {"cosine_embedding_loss": (2,), "gaussian_nll_loss": (2,)}


def _batch_dims(row: Row, args: list[Any]) -> tuple[list[Any], list[int | None]] | None:
    """vmap over dim 0 of every tensor whose leading dim is the (larger than 1) batch dim of the
    broadcast; a tensor whose leading dim of 1 broadcasts along it is shared (its one slice,
    unbatched), and so is one with fewer dims. ``None`` where no such batch dim exists."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    ndim = max(t.dim() for t in tensors)
    if ndim < 2:
        return None  # slicing a 1-D row gives 0-dim calls, which change the loss's meaning
    size = max(t.shape[0] for t in tensors if t.dim() == ndim)
    if size < 2:
        return None
    batched, dims = [], []
    for position, a in enumerate(args):
        aligned = ndim - 1 if position in ROW_ALIGNED.get(row.loss, ()) else ndim
        full = isinstance(a, Tensor) and a.dim() in (ndim, aligned)
        batched.append(a[0] if full and a.shape[0] == 1 else a)
        dims.append(0 if full and a.shape[0] == size else None)
    return (batched, dims) if dims[0] == 0 else None


VMAP_ROWS = [
    row
    for row in ROWS
    if row.torch_does != "raises" and not row.weights and _batch_dims(row, _inputs(row)[0])
]


def _reduction_per_sample(row: Row) -> str:
    return "sum" if row.loss == "kl_div" else "mean"


@pytest.mark.parametrize("row", VMAP_ROWS, ids=repr)
def test_broadcasting_under_vmap(row: Row) -> None:
    args, kwargs = _inputs(row)
    batching = _batch_dims(row, args)
    assert batching is not None
    args, dims = batching
    size = args[0].shape[0]
    reduction = _reduction_per_sample(row)

    def sliced(i: int) -> list[Any]:
        return [a if d is None else a[i] for a, d in zip(args, dims, strict=True)]

    try:
        loop = [
            _call_quietly(lambda i=i: _torch_call(row, sliced(i), kwargs, reduction))
            for i in range(size)
        ]
    except (RuntimeError, ValueError):
        pytest.skip("torch refuses the per-sample call (the slices change the rule)")

    def ours(*a: Any) -> Tensor:
        return _ours_call(row, list(a), kwargs, reduction)

    assert_close(_call_quietly(lambda: vmap(ours, in_dims=tuple(dims))(*args)), torch.stack(loop))

    def ours_first(x: Tensor, *rest: Any) -> Tensor:
        return ours(x, *rest)

    expected = torch.stack(
        [
            torch.autograd.grad(
                _call_quietly(
                    lambda i=i, x=x: _torch_call(row, [x, *sliced(i)[1:]], kwargs, reduction)
                ),
                x,
            )[0]
            for i, x in enumerate(args[0].detach().clone().requires_grad_().unbind(0))
        ]
    )
    per_sample = _call_quietly(lambda: vmap(grad(ours_first), in_dims=tuple(dims))(*args))
    assert_close(per_sample, expected, "vmap(grad)")


def test_the_warning_points_at_the_caller() -> None:
    with pytest.warns(UserWarning, match=TARGET_SIZE_WARNING) as record:
        funcloss.mse_loss(torch.zeros(2, 1), torch.zeros(2))
    assert record[0].filename == __file__


@pytest.mark.parametrize("name", WARN_LOSSES)
def test_no_warning_under_compile(name: str) -> None:
    # a warnings.warn would break the fullgraph compile; torch's own compiled losses warn at
    # trace time only, so the eager warning is the one that counts
    fn = torch.compile(getattr(funcloss, name), fullgraph=True, backend="aot_eager")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TARGET_SIZE_WARNING, UserWarning)
        expected = getattr(F, name)(torch.ones(3, 1), torch.zeros(3))
    torch._dynamo.reset()
    assert_close(fn(torch.ones(3, 1), torch.zeros(3)), expected)


TRANSFORM_ROWS = [
    Row("mse_loss", ((5, 1), (1, 5)), "warns"),
    Row("huber_loss", ((5, 5), (5,)), "warns"),
    Row("kl_div", ((5, 1), (1, 5)), "broadcasts"),
    Row("poisson_nll_loss", ((5, 5), (5,)), "broadcasts", config={"full": True}),
    Row("gaussian_nll_loss", ((5, 3), (), (5, 3)), "broadcasts"),
    Row("gaussian_nll_loss", ((5, 3), (5, 3), (5,)), "broadcasts"),
    Row("binary_cross_entropy", ((5, 5), (5, 5)), "broadcasts", {"weight": (5,)}),
    Row("soft_margin_loss", ((5, 5), (5, 1)), "broadcasts"),
    Row("multilabel_soft_margin_loss", ((5, 3), (1, 3)), "broadcasts"),
    Row("margin_ranking_loss", ((5, 1), (1, 5), (5, 5)), "broadcasts"),
    Row("hinge_embedding_loss", ((5, 5), (1, 5)), "broadcasts"),
    Row("cosine_embedding_loss", ((1, 4), (5, 4), (5,)), "broadcasts"),
    Row("triplet_margin_loss", ((1, 4), (5, 4), (5, 4)), "broadcasts", config={"swap": True}),
]


@pytest.mark.parametrize("row", TRANSFORM_ROWS, ids=repr)
def test_broadcasting_under_every_transform(row: Row) -> None:
    """jacrev, jacfwd, hessian and a fullgraph compile of a broadcasting call, w.r.t. the first
    input, against plain autograd through torch's loss."""
    args, kwargs = _inputs(row)
    reduction = _reduction_per_sample(row)

    def of_first(call: Callable, x: Tensor) -> Tensor:
        return _call_quietly(lambda: call(row, [x, *args[1:]], kwargs, reduction))

    def ours(x: Tensor) -> Tensor:
        return of_first(_ours_call, x)

    def theirs(x: Tensor) -> Tensor:
        return of_first(_torch_call, x)

    x = args[0]
    jacobian = torch.autograd.functional.jacobian(theirs, x)
    assert_close(torch.func.jacrev(ours)(x), jacobian, "jacrev")
    assert_close(torch.func.jacfwd(ours)(x), jacobian, "jacfwd")
    assert_close(
        torch.func.hessian(ours)(x), torch.autograd.functional.hessian(theirs, x), "hessian"
    )
    torch._dynamo.reset()
    leaf = x.detach().requires_grad_()

    def ours_compiled(x: Tensor) -> Tensor:  # no warning while compiling
        return _ours_call(row, [x, *args[1:]], kwargs, reduction)

    value = torch.compile(ours_compiled, fullgraph=True, backend="aot_eager")(leaf)
    assert_close(value, theirs(x), "compile")
    assert_close(torch.autograd.grad(value, leaf)[0], jacobian, "compile backward")


def test_broadcast_pair_is_torchs_rule() -> None:
    from funcloss._checks import broadcast_pair

    shapes = [(), (1,), (3,), (2, 1), (1, 3), (2, 3), (4, 1, 3), (0,), (2, 0), (1, 1, 1)]
    for first in shapes:
        for second in shapes:
            try:
                expected = torch.broadcast_shapes(first, second)
            except RuntimeError:
                expected = None
            assert broadcast_pair(torch.Size(first), torch.Size(second)) == expected
