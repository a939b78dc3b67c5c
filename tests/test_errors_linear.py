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
        match=r"linear_cross_entropy: `linear_weight` must have shape \(V, 3\) for input of "
        r"shape \(4, 3\), got \(5, 2\)\.",
    ):
        F(X, torch.randn(5, 2), Y)


def test_k_dimensional_weight_points_to_cross_entropy() -> None:
    with pytest.raises(ValueError, match=r"got \(5, 2, 3\)\. For K-dimensional logits use"):
        F(X, torch.randn(5, 2, 3), Y)


def test_input_shape() -> None:
    with pytest.raises(ValueError, match=r"`input` must have shape \(H,\) or \(N, H\), got \(\)"):
        F(torch.tensor(1.0), W, Y)
    with pytest.raises(ValueError, match=r"`input` must have shape .*got \(2, 4, 3\)"):
        F(torch.randn(2, 4, 3), W, Y)


def test_bias_of_the_wrong_shape() -> None:
    with pytest.raises(
        ValueError, match=r"`linear_bias` must have shape \(5,\), one per class, got \(4,\)\."
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
        match=r"`target` must have shape \(4,\) \(class indices\) for input of shape \(4, 3\), "
        r"got \(4, 1\)\.",
    ):
        F(X, W, Y[:, None])
    with pytest.raises(ValueError, match=r"`target` must have shape \(\) .*got \(1,\)"):
        F(X[0], W, Y[:1])


def test_probability_target_points_to_cross_entropy() -> None:
    with pytest.raises(
        TypeError,
        match=r"`target` must hold class indices \(integer dtype\), got torch\.float32\. "
        r"For class probabilities use cross_entropy",
    ):
        F(X, W, torch.rand(4, 5))


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


def test_torch_options_argument_is_not_accepted() -> None:
    with pytest.raises(TypeError, match="options"):
        F(X, W, Y, options=None)


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
