"""Bad input to the classification core: clear errors naming the function and the argument."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

import funcloss
import funcloss.nn as fnn

X = torch.randn(4, 3)
Y = torch.tensor([0, 2, 1, 0])


@pytest.mark.parametrize(
    "fn", [funcloss.cross_entropy, funcloss.nll_loss], ids=["cross_entropy", "nll_loss"]
)
class TestClassIndexLosses:
    def test_bad_reduction(self, fn) -> None:
        with pytest.raises(ValueError, match=r"`reduction` must be one of 'none' \| 'mean'"):
            fn(X, Y, reduction="batchmean")

    def test_integer_input(self, fn) -> None:
        with pytest.raises(
            TypeError, match=r"`input` must have a floating-point dtype, got torch.int64"
        ):
            fn(torch.ones(4, 3, dtype=torch.int64), Y)

    def test_target_of_the_wrong_shape(self, fn) -> None:
        with pytest.raises(ValueError, match=r"`target` must have shape \(4,\) .*got \(4, 3, 2\)"):
            fn(X, torch.zeros(4, 3, 2, dtype=torch.int64))
        with pytest.raises(ValueError, match=r"`target` must have shape \(4,\) .*got \(5,\)"):
            fn(X, torch.zeros(5, dtype=torch.int64))

    def test_class_index_out_of_range(self, fn) -> None:
        name = fn.__name__
        with pytest.raises(
            IndexError, match=rf"{name}: `target` values must be in \[0, 3\) .*got 3"
        ):
            fn(X, torch.tensor([0, 3, 1, 0]))
        with pytest.raises(IndexError, match=r"got -1"):
            fn(X, torch.tensor([0, -1, 1, 0]))

    def test_weight_of_the_wrong_shape(self, fn) -> None:
        with pytest.raises(
            ValueError, match=r"`weight` must have shape \(3,\), one per class, got \(4,\)"
        ):
            fn(X, Y, torch.ones(4))

    def test_weight_of_another_dtype(self, fn) -> None:
        with pytest.raises(TypeError, match=r"`weight` must have the input's dtype"):
            fn(X, Y, torch.ones(3, dtype=torch.float64))

    def test_scalar_input(self, fn) -> None:
        with pytest.raises(ValueError, match=r"`input` must have shape \(C,\), \(N, C\)"):
            fn(torch.tensor(1.0), torch.tensor(0))

    def test_legacy_arguments_are_keyword_only(self, fn) -> None:
        with pytest.raises(TypeError):
            fn(X, Y, None, None)  # torch's 4th positional argument is size_average


def test_range_check_is_skipped_under_vmap_but_not_in_eager() -> None:
    # Under a transform the value check cannot run; in eager mode it always does.
    good = vmap(funcloss.cross_entropy)(X, Y)
    assert good.shape == (4,)
    with pytest.raises(IndexError):
        funcloss.cross_entropy(X, torch.tensor([0, 9, 1, 0]))


def test_cross_entropy_float_target_of_index_shape() -> None:
    with pytest.raises(
        ValueError,
        match=r"cross_entropy: `target` must have shape \(4, 3\) \(class probabilities\)",
    ):
        funcloss.cross_entropy(X, torch.zeros(4))


def test_cross_entropy_bool_target() -> None:
    with pytest.raises(
        TypeError, match=r"cross_entropy: `target` must have an integer dtype, got torch.bool"
    ):
        funcloss.cross_entropy(X, torch.zeros(4, dtype=torch.bool))


def test_cross_entropy_label_smoothing_range() -> None:
    with pytest.raises(
        ValueError, match=r"cross_entropy: `label_smoothing` must be in \[0.0, 1.0\], got 1.5"
    ):
        funcloss.cross_entropy(X, Y, label_smoothing=1.5)


def test_nll_loss_float_target() -> None:
    with pytest.raises(TypeError, match=r"nll_loss: `target` must have an integer dtype"):
        funcloss.nll_loss(X, torch.zeros(4, 3))


@pytest.mark.parametrize(
    "fn",
    [funcloss.binary_cross_entropy, funcloss.binary_cross_entropy_with_logits],
    ids=["binary_cross_entropy", "binary_cross_entropy_with_logits"],
)
class TestBinaryLosses:
    def test_shape_mismatch_is_not_broadcast(self, fn) -> None:
        name = fn.__name__
        with pytest.raises(
            ValueError,
            match=rf"{name}: `target` must have the same shape as `input` \(4, 3\), got \(3,\)",
        ):
            fn(torch.rand(4, 3), torch.rand(3))

    def test_integer_target(self, fn) -> None:
        with pytest.raises(TypeError, match=r"`target` must have a floating-point dtype"):
            fn(torch.rand(4), torch.ones(4, dtype=torch.int64))

    def test_weight_not_broadcastable(self, fn) -> None:
        with pytest.raises(
            ValueError, match=r"`weight` must be broadcastable to \(4, 3\), got \(4,\)"
        ):
            fn(torch.rand(4, 3), torch.rand(4, 3), torch.ones(4))

    def test_bad_reduction(self, fn) -> None:
        with pytest.raises(ValueError, match=r"`reduction` must be one of"):
            fn(torch.rand(4), torch.rand(4), reduction="avg")


def test_bce_input_outside_unit_interval() -> None:
    with pytest.raises(
        ValueError, match=r"binary_cross_entropy: `input` values must be in \[0.0, 1.0\], got 1.5"
    ):
        funcloss.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.ones(2))
    with pytest.raises(ValueError, match=r"got nan"):
        funcloss.binary_cross_entropy(torch.tensor([0.5, float("nan")]), torch.ones(2))


def test_bce_with_logits_pos_weight_not_broadcastable() -> None:
    with pytest.raises(
        ValueError, match=r"binary_cross_entropy_with_logits: `pos_weight` must be broadcastable"
    ):
        funcloss.binary_cross_entropy_with_logits(
            torch.randn(4, 3), torch.rand(4, 3), pos_weight=torch.ones(4)
        )


BINARY_LOSSES = [funcloss.binary_cross_entropy, funcloss.binary_cross_entropy_with_logits]
BINARY_IDS = ["binary_cross_entropy", "binary_cross_entropy_with_logits"]


@pytest.mark.parametrize("fn", BINARY_LOSSES, ids=BINARY_IDS)
@pytest.mark.parametrize(
    ("where", "error", "rule"),
    [
        (
            torch.ones(4, 3),
            TypeError,
            r"be a bool tensor \(True marks the elements that count\), "
            r"got torch.float32\. Use `mask.bool\(\)`",
        ),
        (torch.ones(4, 3, dtype=torch.uint8), TypeError, r"be a bool tensor .*, got torch.uint8"),
        (1, TypeError, r"be a bool tensor or None, got int"),
        (
            torch.ones(4, dtype=torch.bool),
            ValueError,
            r"be broadcastable to the unreduced loss shape \(4, 3\), got \(4,\)",
        ),
        (
            torch.ones(2, 4, 3, dtype=torch.bool),
            ValueError,
            r"be broadcastable to the unreduced loss shape \(4, 3\), got \(2, 4, 3\)",
        ),
    ],
    ids=["float", "uint8", "int", "not-broadcastable", "enlarging"],
)
def test_binary_losses_bad_where(fn, where, error, rule) -> None:
    with pytest.raises(error, match=rf"{fn.__name__}: `where` must {rule}"):
        fn(torch.rand(4, 3), torch.rand(4, 3), where=where)


def test_bce_masked_entries_are_not_range_checked() -> None:
    # Masked entries are not read: a NaN or 1.5 there is no error, and the value is the
    # included entries'; an included one is checked as without a mask.
    input, target = torch.tensor([0.5, 1.5, 0.2]), torch.tensor([1.0, float("nan"), 0.0])
    where = torch.tensor([True, False, True])
    got = funcloss.binary_cross_entropy(input, target, where=where)
    torch.testing.assert_close(
        got, torch.nn.functional.binary_cross_entropy(input[where], target[where])
    )
    with pytest.raises(ValueError, match=r"`input` values must be in \[0.0, 1.0\], got 1.5"):
        funcloss.binary_cross_entropy(input, target.nan_to_num(), where=~where)


@pytest.mark.parametrize(
    "module", [fnn.BCELoss, fnn.BCEWithLogitsLoss], ids=["BCELoss", "BCEWithLogitsLoss"]
)
def test_binary_modules_check_reduction_at_construction(module) -> None:
    with pytest.raises(ValueError, match=rf"{module.__name__}: `reduction` must be one of"):
        module(reduction="avg")


@pytest.mark.parametrize(
    "fn", [funcloss.cross_entropy, funcloss.nll_loss], ids=["cross_entropy", "nll_loss"]
)
@pytest.mark.parametrize("target", [[0, 2, 1, 0], 1], ids=["list", "int"])
def test_target_not_a_tensor(fn, target) -> None:
    with pytest.raises(TypeError, match=rf"{fn.__name__}: `target` must be a torch\.Tensor, got"):
        fn(X, target)


@pytest.mark.parametrize(
    "fn", [funcloss.cross_entropy, funcloss.nll_loss], ids=["cross_entropy", "nll_loss"]
)
@pytest.mark.parametrize("ignore_index", [None, 1.0, "1", True, torch.tensor(1)])
def test_ignore_index_must_be_an_int(fn, ignore_index) -> None:
    # cross_entropy raised a bare TypeError for None; nll_loss silently took None as "no ignore".
    with pytest.raises(TypeError, match=rf"{fn.__name__}: `ignore_index` must be an int, got"):
        fn(X, Y, ignore_index=ignore_index)


@pytest.mark.parametrize("label_smoothing", ["0.1", None, torch.tensor(0.1)])
def test_cross_entropy_label_smoothing_must_be_a_number(label_smoothing) -> None:
    # A tensor used to fail inside gather with an ATen RuntimeError.
    with pytest.raises(
        TypeError, match=r"cross_entropy: `label_smoothing` must be a real number, got"
    ):
        funcloss.cross_entropy(X, Y, label_smoothing=label_smoothing)


def test_nll_loss_every_element_ignored_has_zero_gradient() -> None:
    # The mean is 0 / 0 = nan as in torch; torch's gradient is zero, funcloss's used to be nan.
    log_probs = X.log_softmax(1).requires_grad_()
    target = torch.full((4,), -100)
    for weight in (None, torch.rand(3)):
        loss = funcloss.nll_loss(log_probs, target, weight)
        assert loss.isnan()
        (gradient,) = torch.autograd.grad(loss, log_probs)
        torch.testing.assert_close(gradient, torch.zeros(4, 3))


def test_module_forward_refuses_extra_positional_inputs() -> None:
    # The third argument (a weight, say) used to be dropped silently; torch raises a TypeError.
    with pytest.raises(
        TypeError,
        match=r"CrossEntropyLoss: forward takes at most 2 positional inputs \(input, target\), "
        r"got 3\.",
    ):
        fnn.CrossEntropyLoss()(X, Y, torch.rand(3))
