"""Bad input to ctc_loss: clear errors naming the function and the argument."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

import funcloss
import funcloss.nn as fnn

LOG_PROBS = torch.randn(5, 2, 4).log_softmax(-1)
TARGETS = torch.tensor([[1, 2, 3], [2, 0, 0]])
INPUT_LENGTHS = torch.tensor([5, 4])
TARGET_LENGTHS = torch.tensor([3, 1])


def _call(**override):
    args = {
        "log_probs": LOG_PROBS,
        "targets": TARGETS,
        "input_lengths": INPUT_LENGTHS,
        "target_lengths": TARGET_LENGTHS,
    }
    args.update(override)
    return funcloss.ctc_loss(**args)


T1, T2 = torch.tensor([[1, 7, 3], [2, 0, 0]]), torch.tensor([[1, -2, 3], [2, 0, 0]])
BAD_INPUT = [
    # dtypes
    ({"log_probs": LOG_PROBS.long()}, TypeError, r"`log_probs` must have a floating"),
    ({"targets": TARGETS.float()}, TypeError, r"`targets` must have an integer dtype"),
    ({"input_lengths": INPUT_LENGTHS.float()}, TypeError, r"`input_lengths` must have an int"),
    ({"target_lengths": [3.0, 1.0]}, TypeError, r"`target_lengths` must be an integer tensor"),
    ({"input_lengths": 5}, TypeError, r"`input_lengths` must be an integer tensor or .*, got int"),
    # shapes
    ({"log_probs": LOG_PROBS[0, 0]}, ValueError, r"`log_probs` must have shape \(T, N, C\)"),
    ({"log_probs": LOG_PROBS[None]}, ValueError, r"`log_probs` .*got \(1, 5, 2, 4\)"),
    ({"log_probs": LOG_PROBS[:0]}, ValueError, r"`log_probs` must be non-empty"),
    ({"targets": TARGETS[:1]}, ValueError, r"`targets` must have shape \(2, S\) \(padded\)"),
    ({"targets": TARGETS[None]}, ValueError, r"`targets` must have shape"),
    ({"input_lengths": INPUT_LENGTHS[:1]}, ValueError, r"`input_lengths` must have shape \(2,\)"),
    ({"target_lengths": [3, 1, 1]}, ValueError, r"`target_lengths` must have shape \(2,\)"),
    ({"input_lengths": INPUT_LENGTHS[:, None]}, ValueError, r"`input_lengths` .*got \(2, 1\)"),
    ({"input_lengths": torch.tensor(5)}, ValueError, r"`input_lengths` must have shape \(2,\)"),
    # config
    ({"blank": 4}, ValueError, r"`blank` must be a class index in \[0, 4\), got 4"),
    ({"blank": -1}, ValueError, r"`blank` must be a class index in \[0, 4\), got -1"),
    # A tensor blank used to be refused with "must be a class index in [0, 4), got 0".
    ({"blank": torch.tensor(0)}, TypeError, r"`blank` must be an int, got Tensor\."),
    ({"blank": 0.0}, TypeError, r"`blank` must be an int, got float\."),
    ({"reduction": "max"}, ValueError, r"`reduction` must be one of"),
    # values (eager)
    (
        {"input_lengths": torch.tensor([6, 4])},
        ValueError,
        r"`input_lengths` must have values in \[0, 5\] \(at most T\), got 6",
    ),
    ({"input_lengths": torch.tensor([5, -1])}, ValueError, r"`input_lengths` .*got -1"),
    (
        {"target_lengths": torch.tensor([4, 1])},
        ValueError,
        r"`target_lengths` must have values in \[0, 3\] \(at most the targets' S\), got 4",
    ),
    ({"targets": T1}, IndexError, r"`targets` values must be in \[0, 4\), got 7"),
    ({"targets": T2}, IndexError, r"`targets` values must be in \[0, 4\), got -2"),
    (
        {"targets": torch.tensor([[1, 0, 3], [2, 0, 0]])},
        ValueError,
        r"`targets` must not contain the blank index 0 within a target's length, got 0\. "
        r"Padding past target_lengths may hold any value\.",
    ),
    (
        {"targets": torch.tensor([[1, 2, 3], [2, 3, 3]]), "blank": 3},
        ValueError,
        r"`targets` must not contain the blank index 3",
    ),
    (
        {"targets": torch.tensor([1, 2, 3])},
        ValueError,
        r"`target_lengths` must sum to the number of concatenated targets 3, got 4",
    ),
    (
        {"targets": torch.tensor([1, 2, 3, 2]), "target_lengths": torch.tensor([-1, 5])},
        ValueError,
        r"`target_lengths` must have non-negative values, got -1",
    ),
    ({"targets": torch.tensor([1, 2, 0, 2])}, ValueError, r"`targets` must not contain the blank"),
]


@pytest.mark.parametrize(("override", "error", "match"), BAD_INPUT)
def test_bad_input(override: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"^ctc_loss: {match}"):
        _call(**override)


BAD_UNBATCHED = [
    (
        (TARGETS, torch.tensor(5), torch.tensor(3)),
        ValueError,
        r"`targets` must have shape \(S,\) for unbatched",
    ),
    (
        (TARGETS[0], INPUT_LENGTHS, torch.tensor(3)),
        ValueError,
        r"`input_lengths` must have shape \(\) for unbatched",
    ),
    (
        (TARGETS[0], torch.tensor(5), torch.tensor(4)),
        ValueError,
        r"`target_lengths` must have values in \[0, 3\]",
    ),
]


@pytest.mark.parametrize(("args", "error", "match"), BAD_UNBATCHED)
def test_bad_unbatched_input(args: tuple, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"^ctc_loss: {match}"):
        funcloss.ctc_loss(LOG_PROBS[:, 0], *args)


def test_padding_may_hold_anything() -> None:
    """Values past target_lengths are not checked: torch's padding convention."""
    targets = torch.tensor([[1, 2, 3], [2, -1, 9]])
    assert torch.isfinite(_call(targets=targets))


def test_value_checks_skipped_under_vmap() -> None:
    """Under a transform the values cannot be read: shapes are still checked."""
    with pytest.raises(ValueError, match=r"`targets` must have shape"):
        vmap(lambda lp: funcloss.ctc_loss(lp, TARGETS[:1], INPUT_LENGTHS, TARGET_LENGTHS))(
            LOG_PROBS[None]
        )
    batched = vmap(lambda lp: funcloss.ctc_loss(lp, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS))
    assert batched(LOG_PROBS[None]).shape == (1,)


# -- where= ------------------------------------------------------------------------------------

BAD_WHERE = [
    (torch.ones(2), TypeError, r"`where` must be a bool tensor \(True marks the elements that "),
    (torch.tensor([1, 0]), TypeError, r"`where` must be a bool tensor .*got torch\.int64\."),
    ([True, False], TypeError, r"`where` must be a bool tensor or None, got list\."),
    (
        torch.ones(3, dtype=torch.bool),
        ValueError,
        r"`where` must be broadcastable to the unreduced loss shape \(2,\), got \(3,\)\.",
    ),
    # log_probs' shape, not the loss's (one flag per sample)
    (torch.ones(5, 2, 4, dtype=torch.bool), ValueError, r"`where` must be broadcastable to"),
    (torch.ones(2, 1, dtype=torch.bool), ValueError, r"`where` .* shape \(2,\), got \(2, 1\)\."),
]


@pytest.mark.parametrize(("where", "error", "match"), BAD_WHERE)
def test_bad_where(where: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=f"^ctc_loss: {match}"):
        _call(where=where)


def test_bad_unbatched_where() -> None:
    args = (LOG_PROBS[:, 0], TARGETS[0], torch.tensor(5), torch.tensor(3))
    with pytest.raises(ValueError, match=r"^ctc_loss: `where` .* loss shape \(\), got \(1,\)\."):
        funcloss.ctc_loss(*args, where=torch.ones(1, dtype=torch.bool))


MASK = torch.tensor([True, False])


@pytest.mark.parametrize(
    "override",
    [
        {"input_lengths": torch.tensor([5, 9])},
        {"input_lengths": torch.tensor([5, -3])},
        {"target_lengths": torch.tensor([3, 7])},
        {"target_lengths": torch.tensor([3, -1])},
        {"targets": torch.tensor([[1, 2, 3], [0, 9, -4]])},
    ],
    ids=["frames-above-T", "frames-negative", "length-above-S", "length-negative", "targets"],
)
def test_masked_sample_values_are_not_checked(override: dict) -> None:
    """A masked sample's lengths and padded targets may hold anything (documented)."""
    expected = funcloss.ctc_loss(
        LOG_PROBS[:, :1], TARGETS[:1], INPUT_LENGTHS[:1], TARGET_LENGTHS[:1]
    )
    assert torch.equal(_call(**override, where=MASK), expected)
    with pytest.raises((ValueError, IndexError), match=r"^ctc_loss: "):
        _call(**override)  # the same values with the sample included


def test_masked_concatenated_targets() -> None:
    """Concatenated: a masked sample's entries are not checked, but every length still is (the
    lengths say where each target starts)."""
    targets = torch.tensor([1, 2, 3, 7])  # sample 1's entry is out of range
    expected = funcloss.ctc_loss(
        LOG_PROBS[:, :1], TARGETS[:1], INPUT_LENGTHS[:1], TARGET_LENGTHS[:1]
    )
    assert torch.equal(_call(targets=targets, where=MASK), expected)
    with pytest.raises(IndexError, match=r"^ctc_loss: `targets` values must be in \[0, 4\), got 7"):
        _call(targets=targets, where=~MASK)  # the bad entry is the included sample's
    with pytest.raises(IndexError, match=r"got 7"):
        _call(targets=targets)
    with pytest.raises(ValueError, match=r"`target_lengths` must sum to the number of concat"):
        _call(targets=targets, target_lengths=torch.tensor([3, 2]), where=MASK)


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"reduction": "avg"}, ValueError, r"`reduction` must be one of 'none' \| 'mean' \| 'sum'"),
        ({"blank": 1.0}, TypeError, r"`blank` must be an int, got float\."),
        ({"blank": torch.tensor(0)}, TypeError, r"`blank` must be an int, got Tensor\."),
    ],
)
def test_module_checks_config_at_construction(config: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=f"^CTCLoss: {match}"):
        fnn.CTCLoss(**config)
