"""Bad input to the embedding and margin losses: clear errors naming the function and argument."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

import funcloss
import funcloss.nn as fnn

X = torch.randn(4, 3)
SIGNS = torch.tensor([1.0, -1.0, 1.0, -1.0])
INDICES = torch.tensor([0, 2, 1, 0])
LABELS = torch.tensor([[0, 2, -1], [1, -1, 0], [-1, 0, 0], [2, 1, 0]])

# One valid call per loss: (function, positional arguments).
VALID = {
    "margin_ranking_loss": (funcloss.margin_ranking_loss, (X[:, 0], X[:, 1], SIGNS)),
    "hinge_embedding_loss": (funcloss.hinge_embedding_loss, (X, SIGNS.expand(3, 4).T)),
    "soft_margin_loss": (funcloss.soft_margin_loss, (X, SIGNS.expand(3, 4).T)),
    "multilabel_soft_margin_loss": (funcloss.multilabel_soft_margin_loss, (X, X > 0)),
    "multilabel_margin_loss": (funcloss.multilabel_margin_loss, (X, LABELS)),
    "multi_margin_loss": (funcloss.multi_margin_loss, (X, INDICES)),
    "cosine_embedding_loss": (funcloss.cosine_embedding_loss, (X, X.flip(0), SIGNS)),
    "triplet_margin_loss": (funcloss.triplet_margin_loss, (X, X.flip(0), -X)),
    "triplet_margin_with_distance_loss": (
        funcloss.triplet_margin_with_distance_loss,
        (X, X.flip(0), -X),
    ),
}
NAMES = sorted(VALID)


@pytest.mark.parametrize("name", NAMES)
def test_bad_reduction(name: str) -> None:
    fn, args = VALID[name]
    args = tuple(a.float() if a.dtype == torch.bool else a for a in args)
    with pytest.raises(
        ValueError, match=rf"{name}: `reduction` must be one of 'none' \| 'mean' \| 'sum'"
    ):
        fn(*args, reduction="batchmean")


@pytest.mark.parametrize("name", NAMES)
def test_integer_input(name: str) -> None:
    fn, args = VALID[name]
    args = (args[0].long(), *args[1:])
    with pytest.raises(TypeError, match=rf"{name}: `\w+` must have a floating-point dtype"):
        fn(*args)


# Shapes that torch 2.13 refuses (a C++ error, measured); shapes it broadcasts are the rows of
# tests/test_broadcasting.py.
@pytest.mark.parametrize(
    ("fn", "args", "message"),
    [
        (
            funcloss.margin_ranking_loss,
            (X[:, 0], X[:, 1], torch.tensor(1.0)),
            r"margin_ranking_loss: `target` must have as many dimensions as `input1` \(1; sizes "
            r"of 1 broadcast\), got 0 \(shape \(\)\)",
        ),
        (
            funcloss.margin_ranking_loss,
            (X[:, 0], X[:3, 1], SIGNS),
            r"margin_ranking_loss: `input2` must be broadcastable with `input1` \(shape \(4,\)\), "
            r"got \(3,\)",
        ),
        (
            funcloss.hinge_embedding_loss,
            (X, SIGNS[:2]),
            r"hinge_embedding_loss: `target` must be broadcastable with `input` \(shape \(4, 3\)",
        ),
        (
            funcloss.soft_margin_loss,
            (X[:, :1], torch.ones(4, 3)),
            r"soft_margin_loss: `target` must be broadcastable to \(4, 1\), got \(4, 3\)",
        ),
        (
            funcloss.multilabel_soft_margin_loss,
            (X, torch.ones(2)),
            r"multilabel_soft_margin_loss: `target` must be broadcastable with `input`",
        ),
        (
            funcloss.multilabel_soft_margin_loss,
            (torch.tensor(1.0), torch.tensor(1.0)),
            r"multilabel_soft_margin_loss: `input` must have shape \(N, C\) or \(C,\), got \(\)",
        ),
        (
            funcloss.multilabel_margin_loss,
            (X, LABELS[:, :2]),
            r"multilabel_margin_loss: `target` must have the input's shape \(4, 3\), got \(4, 2\)",
        ),
        (
            funcloss.multilabel_margin_loss,
            (X, LABELS[:1]),
            r"multilabel_margin_loss: `target` must have the input's shape \(4, 3\), got \(1, 3\)",
        ),
        (
            funcloss.multilabel_margin_loss,
            (X[0], LABELS[:1]),
            r"multilabel_margin_loss: `target` must have shape \(3,\) \(one slot per class\)",
        ),
        (
            funcloss.multilabel_margin_loss,
            (X.reshape(2, 2, 3), LABELS.reshape(2, 2, 3)),
            r"multilabel_margin_loss: `input` must have shape \(N, C\), \(C,\) or \(\) with C > 0",
        ),
        (
            funcloss.multi_margin_loss,
            (X, INDICES.unsqueeze(1)),
            r"multi_margin_loss: `target` must have shape \(4,\) \(one class index per sample\)",
        ),
        (
            funcloss.multi_margin_loss,
            (X, INDICES[:1]),
            r"multi_margin_loss: `target` must have shape \(4,\) .* got \(1,\)",
        ),
        (
            funcloss.multi_margin_loss,
            (X[0], INDICES[:2]),
            r"multi_margin_loss: `target` must have shape \(\) or \(1,\) .* got \(2,\)",
        ),
        (
            funcloss.multi_margin_loss,
            (torch.randn(4, 0), INDICES),
            r"multi_margin_loss: `input` must have shape \(N, C\), \(C,\) or \(\) with C > 0",
        ),
        (
            funcloss.cosine_embedding_loss,
            (X, X[:2], SIGNS),
            r"cosine_embedding_loss: `input2` must be broadcastable with `input1` \(shape \(4, 3\)",
        ),
        (
            funcloss.cosine_embedding_loss,
            (X, X, torch.ones(3)),
            r"cosine_embedding_loss: `target` must be broadcastable with the inputs' 4 rows, got",
        ),
        (
            funcloss.cosine_embedding_loss,
            (X, X, torch.tensor(1.0)),
            r"cosine_embedding_loss: `input1` must have shape \(D,\) for a 0-dim target, got",
        ),
        (
            funcloss.cosine_embedding_loss,
            (X, X[0], SIGNS),
            r"cosine_embedding_loss: `input2` must have shape \(N, D\) for a target of shape",
        ),
        (
            funcloss.cosine_embedding_loss,
            (X.reshape(2, 2, 3), X.reshape(2, 2, 3), torch.ones(2, 2)),
            r"cosine_embedding_loss: `target` must have shape \(N,\) or \(\), got \(2, 2\)",
        ),
        (
            funcloss.triplet_margin_loss,
            (X, X[:2], X),
            r"triplet_margin_loss: `positive` must be broadcastable with `anchor` \(shape \(4, 3\)"
            r"\), got \(2, 3\)",
        ),
        (
            funcloss.triplet_margin_loss,
            (X, X[0], X),
            r"triplet_margin_loss: `positive` must have as many dimensions as `anchor` \(2;",
        ),
        (
            funcloss.triplet_margin_with_distance_loss,
            (X, X, X[0]),
            r"triplet_margin_with_distance_loss: `negative` must have as many dimensions as",
        ),
    ],
)
def test_shapes_torch_refuses(fn, args, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fn(*args)


@pytest.mark.parametrize(
    "fn", [funcloss.margin_ranking_loss, funcloss.hinge_embedding_loss, funcloss.soft_margin_loss]
)
def test_bool_sign_target(fn) -> None:
    inputs = (X[:, 0], X[:, 1]) if fn is funcloss.margin_ranking_loss else (X[:, 0],)
    with pytest.raises(
        TypeError, match=r"`target` must have a floating-point or integer dtype, got torch.bool"
    ):
        fn(*inputs, SIGNS > 0)


@pytest.mark.parametrize(
    "fn", [funcloss.multi_margin_loss, funcloss.multilabel_margin_loss], ids=lambda f: f.__name__
)
def test_float_class_target(fn) -> None:
    target = INDICES if fn is funcloss.multi_margin_loss else LABELS
    with pytest.raises(
        TypeError, match=rf"{fn.__name__}: `target` must have an integer dtype, got torch.float32"
    ):
        fn(X, target.float())


@pytest.mark.parametrize("p", [0, 3, 1.5, -1])
def test_multi_margin_p(p) -> None:
    with pytest.raises(ValueError, match=rf"multi_margin_loss: `p` must be 1 or 2, got {p}\."):
        funcloss.multi_margin_loss(X, INDICES, p=p)


def test_multi_margin_weight() -> None:
    with pytest.raises(
        ValueError,
        match=r"multi_margin_loss: `weight` must have shape \(3,\), one per class, got \(4,\)",
    ):
        funcloss.multi_margin_loss(X, INDICES, weight=torch.ones(4))
    with pytest.raises(ValueError, match=r"`weight` must have shape \(3,\).*got \(4, 3\)"):
        funcloss.multi_margin_loss(X, INDICES, weight=torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"`weight` must have shape \(3,\).*got \(\)"):
        funcloss.multi_margin_loss(X, INDICES, weight=torch.tensor(1.0))
    with pytest.raises(TypeError, match=r"multi_margin_loss: `weight` must have a floating-point"):
        funcloss.multi_margin_loss(X, INDICES, weight=torch.ones(3, dtype=torch.int64))


def test_multilabel_soft_margin_weight_not_broadcastable() -> None:
    with pytest.raises(
        ValueError,
        match=r"multilabel_soft_margin_loss: `weight` must be broadcastable with `input` and "
        r"`target` \(shape \(4, 3\)\), got \(4,\)",
    ):
        funcloss.multilabel_soft_margin_loss(X, torch.ones(4, 3), torch.ones(4))


def test_multi_margin_class_index_out_of_range() -> None:
    with pytest.raises(
        IndexError, match=r"multi_margin_loss: `target` values must be in \[0, 3\), got 3\."
    ):
        funcloss.multi_margin_loss(X, torch.tensor([0, 3, 1, 0]))
    with pytest.raises(IndexError, match=r"got -1\."):
        funcloss.multi_margin_loss(X, torch.tensor([0, -1, 1, 0]))


@pytest.mark.parametrize(
    ("row", "bad"),
    [([0, 3, -1], 3), ([0, -2, 1], -2), ([0, -1, 7], 7)],
    ids=["too-large", "below-minus-one", "after-the-padding"],
)
def test_multilabel_margin_label_out_of_range(row: list[int], bad: int) -> None:
    # As torch, entries after the first -1 are range checked too.
    target = torch.cat([torch.tensor([row]), LABELS[1:]])
    with pytest.raises(
        IndexError,
        match=rf"multilabel_margin_loss: `target` values must be in \[0, 3\) or -1 "
        rf"\(end of the labels\), got {bad}\.",
    ):
        funcloss.multilabel_margin_loss(X, target)


def test_value_checks_are_skipped_under_vmap_but_not_in_eager() -> None:
    assert vmap(funcloss.multi_margin_loss)(X, INDICES).shape == (4,)
    assert vmap(funcloss.multilabel_margin_loss)(X, LABELS).shape == (4,)
    with pytest.raises(IndexError):
        funcloss.multi_margin_loss(X, torch.tensor([0, 9, 1, 0]))


# -- masks of the margin losses (funcloss/_margin.py) -------------------------------------------

# One valid call per margin loss (VALID's multi-hot target is bool: only its argument errors
# come first).
MARGIN_VALID = {
    **{name: VALID[name] for name in ("soft_margin_loss", "multilabel_margin_loss")},
    "multi_margin_loss": VALID["multi_margin_loss"],
    "multilabel_soft_margin_loss": (funcloss.multilabel_soft_margin_loss, (X, (X > 0).float())),
}
MARGIN_NAMES = sorted(MARGIN_VALID)


@pytest.mark.parametrize("name", MARGIN_NAMES)
@pytest.mark.parametrize(
    ("where", "rule"),
    [
        (
            torch.ones(4),
            r"be a bool tensor \(True marks the elements that count\), got "
            r"torch.float32\. Use `mask.bool\(\)`",
        ),
        (torch.ones(4, dtype=torch.int64), r"be a bool tensor .*, got torch.int64"),
        ([True] * 4, r"be a bool tensor or None, got list"),
    ],
    ids=["float", "integer", "list"],
)
def test_margin_where_must_be_a_bool_tensor(name: str, where, rule: str) -> None:
    fn, args = MARGIN_VALID[name]
    with pytest.raises(TypeError, match=rf"{name}: `where` must {rule}"):
        fn(*args, where=where)


@pytest.mark.parametrize(
    ("name", "where", "loss_shape"),
    [
        ("soft_margin_loss", torch.ones(4, dtype=torch.bool), r"\(4, 3\)"),
        ("soft_margin_loss", torch.ones(2, 4, 3, dtype=torch.bool), r"\(4, 3\)"),
        # a mask of the scores' shape is not a per-sample mask: these losses are (N,)
        ("multilabel_soft_margin_loss", torch.ones(4, 3, dtype=torch.bool), r"\(4,\)"),
        ("multilabel_margin_loss", torch.ones(4, 3, dtype=torch.bool), r"\(4,\)"),
        ("multilabel_margin_loss", torch.ones(3, dtype=torch.bool), r"\(4,\)"),
        ("multi_margin_loss", torch.ones(4, 3, dtype=torch.bool), r"\(4,\)"),
        ("multi_margin_loss", torch.ones(2, dtype=torch.bool), r"\(4,\)"),
    ],
)
def test_margin_where_must_broadcast_to_the_loss(name: str, where, loss_shape: str) -> None:
    fn, args = MARGIN_VALID[name]
    got = ", ".join(str(size) for size in where.shape)
    got = rf"\({got},?\)"
    with pytest.raises(
        ValueError,
        match=rf"{name}: `where` must be broadcastable to the unreduced loss shape {loss_shape}, "
        rf"got {got}\.",
    ):
        fn(*args, where=where)


def test_unbatched_margin_losses_take_a_0_dim_where() -> None:
    with pytest.raises(ValueError, match=r"unreduced loss shape \(\), got \(1,\)"):
        funcloss.multi_margin_loss(X[0], INDICES[0], where=torch.ones(1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"unreduced loss shape \(\), got \(1,\)"):
        funcloss.multilabel_margin_loss(X[0], LABELS[0], where=torch.ones(1, dtype=torch.bool))


def test_masked_class_indices_are_not_range_checked() -> None:
    # A masked sample is not read, so its class index may be anything; included ones are
    # checked as without a mask.
    where = torch.tensor([True, False, True, True])
    indices = torch.tensor([0, 9, 1, 0])
    got = funcloss.multi_margin_loss(X, indices, where=where)
    torch.testing.assert_close(got, F.multi_margin_loss(X[where], indices[where]))
    with pytest.raises(IndexError, match=r"multi_margin_loss: `target` values .* got 9\."):
        funcloss.multi_margin_loss(X, indices, where=~where)
    labels = torch.cat([LABELS[:1], torch.tensor([[7, -5, 3]]), LABELS[2:]])
    got = funcloss.multilabel_margin_loss(X, labels, where=where)
    torch.testing.assert_close(got, F.multilabel_margin_loss(X[where], labels[where]))
    with pytest.raises(IndexError, match=r"multilabel_margin_loss: `target` values .* got 7\."):
        funcloss.multilabel_margin_loss(X, labels, where=~where)


@pytest.mark.parametrize(
    ("module", "config", "message"),
    [
        (fnn.SoftMarginLoss, {"reduction": "avg"}, r"SoftMarginLoss: `reduction` must be one of"),
        (
            fnn.MultiLabelSoftMarginLoss,
            {"reduction": "avg"},
            r"MultiLabelSoftMarginLoss: `reduction` must be one of",
        ),
        (
            fnn.MultiLabelMarginLoss,
            {"reduction": "batchmean"},
            r"MultiLabelMarginLoss: `reduction` must be one of",
        ),
        (fnn.MultiMarginLoss, {"p": 3}, r"MultiMarginLoss: `p` must be 1 or 2, got 3\."),
        (
            fnn.MultiMarginLoss,
            {"margin": float("nan")},
            r"MultiMarginLoss: `margin` must be a real number, not NaN",
        ),
        (fnn.MultiMarginLoss, {"margin": "1"}, r"MultiMarginLoss: `margin` must be a real number"),
    ],
)
def test_margin_modules_check_config_at_construction(module, config, message: str) -> None:
    error = TypeError if config.get("margin") == "1" else ValueError
    with pytest.raises(error, match=message):
        module(**config)


@pytest.mark.parametrize(
    "fn",
    [funcloss.triplet_margin_loss, funcloss.triplet_margin_with_distance_loss],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("margin", [0.0, -1.0])
def test_triplet_margin_must_be_positive(fn, margin: float) -> None:
    with pytest.raises(
        ValueError, match=rf"{fn.__name__}: `margin` must be positive, got {margin}\."
    ):
        fn(X, X, X, margin=margin)


@pytest.mark.parametrize("p", [0.0, -1.0])
def test_triplet_norm_order_must_be_positive(p: float) -> None:
    with pytest.raises(ValueError, match=rf"triplet_margin_loss: `p` must be positive, got {p}\."):
        funcloss.triplet_margin_loss(X, X, X, p=p)


def test_distance_function_must_be_callable() -> None:
    with pytest.raises(
        TypeError,
        match=r"triplet_margin_with_distance_loss: `distance_function` must be callable "
        r"\(x1, x2\) -> distances, or None, got str\.",
    ):
        funcloss.triplet_margin_with_distance_loss(X, X, X, distance_function="cosine")
    module = fnn.TripletMarginWithDistanceLoss(distance_function=42)
    with pytest.raises(TypeError, match=r"`distance_function` must be callable"):
        module(X, X, X)


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (funcloss.margin_ranking_loss, (X[:, 0], X[:, 1], SIGNS, 0.0, None)),
        (funcloss.hinge_embedding_loss, (X, torch.ones(4, 3), 1.0, None)),
        (funcloss.soft_margin_loss, (X, torch.ones(4, 3), None)),
        (funcloss.multilabel_soft_margin_loss, (X, torch.ones(4, 3), None, None)),
        (funcloss.multilabel_margin_loss, (X, LABELS, None)),
        (funcloss.multi_margin_loss, (X, INDICES, 1, 1.0, None, None)),
        (funcloss.cosine_embedding_loss, (X, X, SIGNS, 0.0, None)),
        (funcloss.triplet_margin_loss, (X, X, X, 1.0, 2.0, 1e-6, False, None)),
        (funcloss.triplet_margin_with_distance_loss, (X, X, X, None)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_legacy_arguments_are_keyword_only(fn, args) -> None:
    # torch's next positional argument is size_average (or, for the distance loss, nothing).
    with pytest.raises(TypeError, match=r"positional argument"):
        fn(*args)


MARGINS = {
    "margin_ranking_loss": "margin",
    "hinge_embedding_loss": "margin",
    "cosine_embedding_loss": "margin",
    "multi_margin_loss": "margin",
    "triplet_margin_loss": "margin",
    "triplet_margin_with_distance_loss": "margin",
}


@pytest.mark.parametrize("name", sorted(MARGINS))
@pytest.mark.parametrize("margin", ["1", None])
def test_margin_must_be_a_number(name: str, margin: object) -> None:
    # These used to fail with a bare TypeError from `margin - tensor` or a comparison.
    fn, args = VALID[name]
    with pytest.raises(TypeError, match=rf"{name}: `margin` must be a real number, got"):
        fn(*args, margin=margin)


@pytest.mark.parametrize("name", sorted(MARGINS))
def test_margin_must_not_be_nan(name: str) -> None:
    # A NaN margin used to give a NaN loss (torch: 0 for multi_margin_loss, NaN elsewhere).
    fn, args = VALID[name]
    rule = "(a real number, not NaN|positive)"  # the triplet losses' margin must be positive
    with pytest.raises(ValueError, match=rf"{name}: `margin` must be {rule}, got nan\."):
        fn(*args, margin=float("nan"))


@pytest.mark.parametrize(("arg", "value"), [("p", "2"), ("eps", "x"), ("eps", None)])
def test_triplet_norm_config_must_be_a_number(arg: str, value: object) -> None:
    with pytest.raises(TypeError, match=rf"triplet_margin_loss: `{arg}` must be a real number"):
        funcloss.triplet_margin_loss(X, X.flip(0), -X, **{arg: value})
