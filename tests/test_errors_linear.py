"""linear_cross_entropy: bad input fails with a clear error naming the argument."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad

import funcloss

F = funcloss.linear_cross_entropy
X, W, Y = torch.randn(4, 3), torch.randn(5, 3), torch.tensor([0, 1, 4, 2])


def test_mismatched_feature_sizes() -> None:
    with pytest.raises(
        ValueError,
        match=r"linear_cross_entropy: `linear_weight` must have shape \(C, 3\) or "
        r"\(C, d1, \.\.\., dK, 3\) for input of shape \(4, 3\), got \(5, 2\)\.",
    ):
        F(X, torch.randn(5, 2), Y)


def test_k_dimensional_weight_needs_a_batched_input_and_matching_target() -> None:
    # torch: "K-dimensional loss ... requires batched input"
    with pytest.raises(ValueError, match=r"`input` must be batched, \(N, 3\), for K-dim"):
        F(X[0], torch.randn(5, 2, 3), Y[0])
    with pytest.raises(
        ValueError,
        match=r"`target` must have shape \(4, 2\) \(class indices\) .*got \(4,\)\. For class "
        r"probabilities pass a float target of shape \(4, 5, 2\)\.",
    ):
        F(X, torch.randn(5, 2, 3), Y)
    with pytest.raises(ValueError, match=r"`linear_bias` must have shape \(5, 2\), one per logit"):
        F(X, torch.randn(5, 2, 3), Y[:, None].expand(4, 2), linear_bias=torch.zeros(5))


def test_input_shape() -> None:
    with pytest.raises(ValueError, match=r"`input` must have shape \(H,\) or \(N, H\), got \(\)"):
        F(torch.tensor(1.0), W, Y)
    with pytest.raises(ValueError, match=r"`input` must have shape .*got \(2, 4, 3\)"):
        F(torch.randn(2, 4, 3), W, Y)


def test_bias_of_the_wrong_shape() -> None:
    with pytest.raises(
        ValueError, match=r"`linear_bias` must have shape \(5,\), one per logit, got \(4,\)\."
    ):
        F(X, W, Y, linear_bias=torch.zeros(4))
    with pytest.raises(ValueError, match=r"`linear_bias` must have shape \(5,\).*got \(1, 5\)"):
        F(X, W, Y, linear_bias=torch.zeros(1, 5))


def test_class_weight_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"`weight` must have shape \(5,\), one per class"):
        F(X, W, Y, weight=torch.ones(3))


def test_dtypes() -> None:
    with pytest.raises(TypeError, match=r"`linear_weight` must have the input's dtype"):
        F(X, W.double(), Y)
    with pytest.raises(TypeError, match=r"`linear_bias` must have the input's dtype"):
        F(X, W, Y, linear_bias=torch.zeros(5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"`weight` must have the input's dtype"):
        F(X, W, Y, weight=torch.ones(5, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"`input` must have a floating-point dtype"):
        F(X.long(), W, Y)


def test_target_of_the_wrong_shape() -> None:
    with pytest.raises(
        ValueError,
        match=r"`target` must have shape \(4,\) \(class indices\) for input of shape \(4, 3\) "
        r"and linear_weight of shape \(5, 3\), got \(4, 1\)\.",
    ):
        F(X, W, Y[:, None])
    with pytest.raises(ValueError, match=r"`target` must have shape \(\) .*got \(1,\)"):
        F(X[0], W, Y[:1])


def test_probability_target_shape_and_ignore_index() -> None:
    with pytest.raises(
        ValueError,
        match=r"`target` must have shape \(4, 5\) \(class probabilities\) or \(4,\) \(class "
        r"indices, integer dtype\), got \(4, 4\) \(torch\.float32\)\.",
    ):
        F(X, W, torch.rand(4, 4))
    # torch: "ignore_index cannot be specified when target contains probabilities"
    with pytest.raises(ValueError, match=r"`ignore_index` must be None for class-probability"):
        F(X, W, torch.rand(4, 5), ignore_index=-100)


def test_target_out_of_range_in_eager_mode() -> None:
    with pytest.raises(
        IndexError,
        match=r"`target` values must be in \[0, 5\) or equal ignore_index=-100, got 5\.",
    ):
        F(X, W, torch.tensor([0, 1, 5, 2]))
    with pytest.raises(IndexError, match=r"or equal ignore_index=-1, got -100"):
        F(X, W, torch.tensor([0, -1, -100, 2]), ignore_index=-1)
    # Under a transform values are not checked (no data-dependent control flow there).
    grad(lambda x: F(x, W, torch.tensor([0, 1, -100, 2])))(X)


@pytest.mark.parametrize("softcap", [0.0, -1.0, float("nan"), float("inf")])
def test_softcap_must_be_positive_and_finite(softcap: float) -> None:
    # An infinite cap used to give a nan loss (inf * tanh(0)).
    rule = r"(positive and finite, or None|a real number, not NaN)"
    with pytest.raises(ValueError, match=rf"`softcap` must be {rule}, got"):
        F(X, W, Y, softcap=softcap)


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_chunk_size_must_be_a_positive_int(chunk_size: object) -> None:
    with pytest.raises(ValueError, match=r"`chunk_size` must be a positive int or None, got"):
        F(X, W, Y, chunk_size=chunk_size)


def test_config_ranges() -> None:
    with pytest.raises(ValueError, match=r"`z_loss` must be non-negative, got -0\.1\."):
        F(X, W, Y, z_loss=-0.1)
    with pytest.raises(ValueError, match=r"`label_smoothing` must be in \[0\.0, 1\.0\], got 1\.5"):
        F(X, W, Y, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"`reduction` must be one of 'none' \| 'mean' \| 'sum'"):
        F(X, W, Y, reduction="avg")


def test_options_that_cannot_be_honoured() -> None:
    options = torch.nn.LinearCrossEntropyOptions
    with pytest.raises(TypeError, match=r"`options` must be a torch\.nn\.LinearCrossEntropyOpt"):
        F(X, W, Y, options={"batch_chunk_size": 2})
    with pytest.raises(ValueError, match=r"`options\.acc_dtype` must be None or at least as "):
        F(X, W, Y, options=options(acc_dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"`chunk_size` must agree with the options' chunk size 2"):
        F(X, W, Y, options=options(batch_chunk_size=2), chunk_size=3)
    # torch's own rule: batch_chunk_size and chunking_method must agree
    with pytest.raises(ValueError, match=r"give different chunk sizes"):
        F(X, W, Y, options=options(batch_chunk_size=3, chunking_method="aspect_ratio"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"label_smoothing": "0.1"}, r"`label_smoothing` must be a real number, got str\."),
        ({"z_loss": None}, r"`z_loss` must be a real number, got NoneType\."),
        ({"softcap": "30"}, r"`softcap` must be a real number, got str\."),
        ({"ignore_index": "2"}, r"`ignore_index` must be an int, got str\."),
        # A tensor ignore_index used to pass and then break the backward.
        ({"ignore_index": torch.tensor(2)}, r"`ignore_index` must be an int, got Tensor\."),
    ],
)
def test_config_of_the_wrong_kind(config: dict, message: str) -> None:
    with pytest.raises(TypeError, match=rf"linear_cross_entropy: {message}"):
        F(X, W, Y, reduction="none", **config)


def test_target_not_a_tensor() -> None:
    with pytest.raises(
        TypeError, match=r"linear_cross_entropy: `target` must be a torch\.Tensor, got list\."
    ):
        F(X, W, [0, 1, 4, 2])


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_no_rows(reduction: str) -> None:
    # N = 0 used to fail inside the chunking (range() with a zero step); torch gives an empty
    # loss, 0 and nan.
    x = torch.empty(0, 3, requires_grad=True)
    loss = F(x, W, torch.empty(0, dtype=torch.long), reduction=reduction)
    expected = {"none": torch.empty(0), "sum": torch.tensor(0.0), "mean": torch.tensor(torch.nan)}
    torch.testing.assert_close(loss.detach(), expected[reduction], equal_nan=True)
    (gradient,) = torch.autograd.grad(loss.sum(), x)
    assert gradient.shape == (0, 3)


def test_where_must_be_a_bool_tensor_of_either_shape() -> None:
    with pytest.raises(TypeError, match=r"linear_cross_entropy: `where` must be a bool tensor"):
        F(X, W, Y, where=torch.ones(4))
    with pytest.raises(TypeError, match=r"`where` must be a bool tensor or None, got tuple"):
        F(X, W, Y, where=(True,))
    both = (
        r"linear_cross_entropy: `where` must be broadcastable to the unreduced loss shape \(4,\) "
        r"\(a row mask\) or have the logits' 2 dimensions and broadcast to their shape \(4, 5\) "
        r"\(a class mask\), got "
    )
    with pytest.raises(ValueError, match=both + r"\(3,\)"):
        F(X, W, Y, where=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=both + r"\(5,\)\. .*`mask\[None\]`"):
        F(X, W, Y, where=torch.ones(5, dtype=torch.bool))  # a (C,) vocabulary: ambiguous
    with pytest.raises(ValueError, match=both + r"\(4, 5, 1\)"):
        F(X, W, Y, where=torch.ones(4, 5, 1, dtype=torch.bool))


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"reduction": "avg"}, ValueError, "`reduction` must be one of"),
        ({"label_smoothing": -0.1}, ValueError, "`label_smoothing` must be in"),
        ({"z_loss": -1.0}, ValueError, "`z_loss` must be non-negative"),
        ({"softcap": 0.0}, ValueError, "`softcap` must be positive and finite"),
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be a positive int"),
        ({"ignore_index": 1.5}, TypeError, "`ignore_index` must be an int"),
    ],
)
def test_module_config_fails_at_construction(config: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=rf"^LinearCrossEntropyLoss: {message}"):
        funcloss.nn.LinearCrossEntropyLoss(3, 5, **config)
