"""Golden values and parity with torch for ctc_loss.

Values: torch's ``F.ctc_loss`` or by hand. Gradients: torch's through a ``log_softmax`` of
logits (its kernel's gradient with respect to ``log_probs`` is right only there), and finite
differences (gradcheck, float64) directly on ``log_probs``.
"""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, jacfwd, jvp, vmap

import funcloss
import funcloss.nn as fnn
from funcloss._sequence import _alpha_beta, _ctc_nll, _EagerCTC

from .helpers import assert_close
from .specs_sequence import ctc_problems, frames_needed, naive_ctc, torch_ctc

INF = float("inf")


def _problem(seed: int = 0, frames: int = 6, batch: int = 3, classes: int = 4, width: int = 3):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(frames, batch, classes, generator=generator, dtype=torch.float64)
    targets = torch.randint(1, classes, (batch, width), generator=generator)
    return logits, targets


LOGITS, TARGETS = _problem()
TARGETS[0] = torch.tensor([1, 1, 2])  # a repeated label: needs a blank in between
INPUT_LENGTHS = torch.tensor([6, 4, 5])
TARGET_LENGTHS = torch.tensor([3, 1, 0])  # an empty target
ARGS = (TARGETS, INPUT_LENGTHS, TARGET_LENGTHS)


def _grads(fn, logits: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().requires_grad_()
    value = fn(x.log_softmax(-1), *args, **kwargs)
    (gradient,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), gradient


# -- golden values ---------------------------------------------------------------------------


def test_golden_value() -> None:
    log_probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]).log()
    loss = funcloss.ctc_loss(log_probs, torch.tensor([1, 2]), [3], [2], reduction="sum")
    assert_close(loss, torch.tensor(1.1940), rtol=1e-4)  # torch 2.13 F.ctc_loss: 1.1940


def test_repeated_label_needs_a_blank() -> None:
    log_probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]).log()
    target = torch.tensor([1, 1])
    # by hand: with 3 frames the only alignment of (1, 1) is 1, blank, 1
    expected = -(log_probs[0, 1] + log_probs[1, 0] + log_probs[2, 1])
    assert_close(funcloss.ctc_loss(log_probs, target, [3], [2], reduction="sum"), expected)
    # with 2 frames there is none
    assert funcloss.ctc_loss(log_probs[:2], target, [2], [2], reduction="sum") == INF
    assert frames_needed([1, 1]) == 3


def test_empty_target_is_all_blanks() -> None:
    log_probs = LOGITS.log_softmax(-1)
    loss = funcloss.ctc_loss(log_probs, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, reduction="none")
    assert_close(loss[2], -log_probs[:5, 2, 0].sum())  # by hand: blank at each of 5 frames
    no_frames = funcloss.ctc_loss(log_probs, TARGETS, [0, 0, 0], [0, 1, 0], reduction="none")
    assert no_frames.tolist() == [0.0, INF, 0.0]  # torch 2.13 F.ctc_loss: [-0., inf, -0.]


@pytest.mark.parametrize("width", [0, 1])
def test_no_labels_at_all(width: int) -> None:
    """Padded targets of width 0 or 1 (one or three lattice states)."""
    targets = torch.ones(3, width, dtype=torch.int64)
    args = (targets, INPUT_LENGTHS, torch.full((3,), width))
    ours = _grads(funcloss.ctc_loss, LOGITS, *args, reduction="sum")
    expected = _grads(F.ctc_loss, LOGITS, *args, reduction="sum")
    assert_close(ours[0], expected[0], "value")
    assert_close(ours[1], expected[1], "gradient")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("blank", [0, 3])
def test_matches_torch_through_log_softmax(reduction: str, blank: int) -> None:
    targets = TARGETS.masked_fill(TARGETS == blank, 0 if blank else 1)
    ours = _grads(funcloss.ctc_loss, LOGITS, targets, *ARGS[1:], blank=blank, reduction=reduction)
    expected = _grads(F.ctc_loss, LOGITS, targets, *ARGS[1:], blank=blank, reduction=reduction)
    assert_close(ours[0], expected[0], "value")
    assert_close(ours[1], expected[1], "gradient")


def test_layouts_match_torch() -> None:
    """Concatenated targets, unbatched input, lengths as int sequences, int32."""
    lengths = TARGET_LENGTHS.tolist()
    concatenated = torch.cat([row[:n] for row, n in zip(TARGETS, lengths, strict=True)])
    calls = [
        ((LOGITS, concatenated, INPUT_LENGTHS, TARGET_LENGTHS), {}),
        ((LOGITS, TARGETS, INPUT_LENGTHS.tolist(), tuple(lengths)), {}),
        ((LOGITS, TARGETS.int(), INPUT_LENGTHS.int(), TARGET_LENGTHS.int()), {}),
        ((LOGITS[:, 0], TARGETS[0], torch.tensor(6), torch.tensor(3)), {}),
        ((LOGITS[:, 1], TARGETS[1, :1], [4], [1]), {}),
    ]
    for (logits, *args), kwargs in calls:
        for reduction in ("none", "mean", "sum"):
            ours = _grads(funcloss.ctc_loss, logits, *args, **kwargs, reduction=reduction)
            expected = _grads(F.ctc_loss, logits, *args, **kwargs, reduction=reduction)
            assert_close(ours[0], expected[0], "value")
            assert_close(ours[1], expected[1], "gradient")


def test_unbatched_padded_target() -> None:
    """Unbatched (S,) targets may be longer than target_length (torch requires equality), so
    that vmap over a padded batch and the per-sample loop agree."""
    log_probs = LOGITS.log_softmax(-1)
    batched = funcloss.ctc_loss(log_probs, *ARGS, reduction="none")
    for n in range(3):
        single = funcloss.ctc_loss(
            log_probs[:, n], TARGETS[n], INPUT_LENGTHS[n], TARGET_LENGTHS[n], reduction="none"
        )
        assert_close(single, batched[n])


def test_padding_values_are_ignored() -> None:
    log_probs = LOGITS.log_softmax(-1)
    padded = TARGETS.clone()
    padded[1, 1:] = -1  # torch allows any padding value past target_lengths
    padded[2, :] = 0  # including the blank
    assert_close(
        funcloss.ctc_loss(log_probs, padded, *ARGS[1:], reduction="none"),
        F.ctc_loss(log_probs, TARGETS, *ARGS[1:], reduction="none"),
    )


def test_log_zero_probabilities() -> None:
    """A class with probability 0 (log_probs -inf): torch's value; a finite gradient (torch's
    is NaN there), equal to torch's for a vanishing but finite logit."""
    logits = LOGITS.clone()
    logits[:, :, 3] = -INF  # class 3 never occurs; the targets avoid it
    vanishing = LOGITS.clone()
    vanishing[:, :, 3] = -1e4  # exp(-1e4) == 0 in float64
    targets = TARGETS.masked_fill(TARGETS == 3, 2)
    for reduction in ("none", "sum"):
        ours = _grads(funcloss.ctc_loss, logits, targets, *ARGS[1:], reduction=reduction)
        expected = _grads(F.ctc_loss, vanishing, targets, *ARGS[1:], reduction=reduction)
        assert_close(
            ours[0],
            F.ctc_loss(logits.log_softmax(-1), targets, *ARGS[1:], reduction=reduction),
            "value",
        )
        assert_close(ours[1], expected[1], "gradient")
    # a target that needs class 3 is impossible
    threes = torch.full_like(TARGETS, 3)
    value = funcloss.ctc_loss(logits.log_softmax(-1), threes, *ARGS[1:], reduction="none")
    assert value.tolist()[:2] == [INF, INF]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision(dtype: torch.dtype) -> None:
    log_probs = LOGITS.log_softmax(-1).to(dtype)
    loss = funcloss.ctc_loss(log_probs, *ARGS)
    assert loss.dtype == dtype
    # torch 2.13 has no half CTC on CPU; compare with float32 rounded to the dtype
    expected = F.ctc_loss(log_probs.float(), *ARGS).to(dtype)
    assert_close(loss, expected, rtol=1e-5 if dtype == torch.float32 else 1e-2)


def test_long_sequence_is_stable() -> None:
    """Log space: no underflow at T = 400 in float32; as accurate as torch's float32 kernel."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(400, 2, 20, generator=generator)
    targets = torch.randint(1, 20, (2, 60), generator=generator)
    args = (targets, torch.tensor([400, 350]), torch.tensor([60, 45]))
    ours = _grads(funcloss.ctc_loss, logits, *args, reduction="none")
    exact = _grads(F.ctc_loss, logits.double(), *args, reduction="none")
    # torch 2.13 F.ctc_loss in float32 is off from float64 by ~3e-4 (value), ~4e-4 (gradient)
    torch.testing.assert_close(ours[0], exact[0].float(), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(ours[1], exact[1].float(), rtol=0, atol=1e-3)


# -- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("normalised", [True, False])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_gradcheck_on_log_probs(normalised: bool, zero_infinity: bool) -> None:
    """Finite differences directly on log_probs: the true derivative, first and second order,
    also for log_probs that are not normalised."""
    x = LOGITS.log_softmax(-1) if normalised else LOGITS
    lengths = INPUT_LENGTHS if zero_infinity else torch.tensor([6, 4, 1])  # sample 0 impossible

    def f(log_probs: torch.Tensor) -> torch.Tensor:
        return funcloss.ctc_loss(
            log_probs, TARGETS, lengths, TARGET_LENGTHS, zero_infinity=zero_infinity
        )

    x = x.detach().requires_grad_()
    assert torch.autograd.gradcheck(f, (x,))
    assert torch.autograd.gradgradcheck(f, (x,))


def test_torch_gradient_differs_by_exp_log_probs() -> None:
    """Pins DESIGN.md §4: torch's kernel gradient = true derivative + exp(log_probs), on the
    frames each sample uses; funcloss returns the true derivative."""
    log_probs = LOGITS.log_softmax(-1).requires_grad_()
    (ours,) = torch.autograd.grad(funcloss.ctc_loss(log_probs, *ARGS, reduction="sum"), log_probs)
    (theirs,) = torch.autograd.grad(F.ctc_loss(log_probs, *ARGS, reduction="sum"), log_probs)
    frames = (torch.arange(6).unsqueeze(1) < INPUT_LENGTHS).unsqueeze(2)
    assert_close(theirs, ours + log_probs.detach().exp() * frames)


def test_oracle_identity() -> None:
    """The transform matrix's oracle: torch through log_softmax plus the exact normaliser."""
    x = LOGITS.detach().requires_grad_()
    assert_close(torch_ctc(x, *ARGS), funcloss.ctc_loss(x, *ARGS))
    assert torch.autograd.gradcheck(lambda y: torch_ctc(y, *ARGS), (x,))


def test_impossible_alignment() -> None:
    """inf (torch's value) with gradient 0 (torch's is NaN); zero_infinity: 0 and gradient 0,
    as torch."""
    lengths = torch.tensor([3, 4, 5])  # (1, 1, 2) needs 4 frames
    value, gradient = _grads(funcloss.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS)
    torch_value, torch_gradient = _grads(F.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS)
    assert value == torch_value == INF
    assert torch_gradient[:, 0].isnan().any()
    assert not gradient.isnan().any()
    assert (gradient[:, 0] == 0).all()
    assert_close(gradient[:, 1:], torch_gradient[:, 1:])  # the other samples are unaffected
    for reduction in ("none", "mean", "sum"):
        ours = _grads(
            funcloss.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS,
            reduction=reduction, zero_infinity=True,
        )  # fmt: skip
        expected = _grads(
            F.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS,
            reduction=reduction, zero_infinity=True,
        )  # fmt: skip
        assert_close(ours[0], expected[0], "value")
        assert_close(ours[1], expected[1], "gradient")
        assert (ours[1][:, 0] == 0).all()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_where_with_impossible_alignments(reduction: str) -> None:
    """A masked impossible sample leaves a finite loss without zero_infinity; with it, an
    included impossible sample is 0 and still counts in the mean (torch's zero_infinity on the
    included samples)."""
    lengths = torch.tensor([3, 4, 5])  # sample 0 is impossible
    masked_out = torch.tensor([False, True, True])
    ours = _grads(
        funcloss.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS,
        reduction=reduction, where=masked_out,
    )  # fmt: skip
    kept = _grads(
        F.ctc_loss, LOGITS[:, 1:], TARGETS[1:], lengths[1:], TARGET_LENGTHS[1:],
        reduction=reduction,
    )  # fmt: skip
    assert torch.isfinite(ours[0]).all() and torch.isfinite(ours[1]).all()
    assert (ours[1][:, 0] == 0).all()
    assert_close(ours[0][1:] if reduction == "none" else ours[0], kept[0], "value")
    assert_close(ours[1][:, 1:], kept[1], "gradient")
    masked_middle = torch.tensor([True, False, True])
    ours = _grads(
        funcloss.ctc_loss, LOGITS, TARGETS, lengths, TARGET_LENGTHS,
        reduction=reduction, where=masked_middle, zero_infinity=True,
    )  # fmt: skip
    kept = _grads(
        F.ctc_loss, LOGITS[:, ::2], TARGETS[::2], lengths[::2], TARGET_LENGTHS[::2],
        reduction=reduction, zero_infinity=True,
    )  # fmt: skip
    assert_close(ours[0][::2] if reduction == "none" else ours[0], kept[0], "value")
    assert_close(ours[1][:, ::2], kept[1], "gradient")
    assert (ours[1][:, 1] == 0).all()


def test_custom_backward_matches_autograd_through_forward() -> None:
    """The forward alone (what compile-under-transform differentiates) gives the same gradient,
    NaN-free on impossible samples too."""
    log_probs = LOGITS.log_softmax(-1)
    lengths = torch.tensor([3, 4, 5])
    weights = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    args = (TARGETS, lengths, TARGET_LENGTHS, 0)
    x = log_probs.detach().requires_grad_()
    (custom,) = torch.autograd.grad((_ctc_nll(x, *args) * weights).sum(), x)
    (autograd,) = torch.autograd.grad((_ctc_nll._forward(x, *args) * weights).sum(), x)
    assert not autograd.isnan().any()
    assert_close(custom, autograd)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eager_step_matches_the_composition(dtype: torch.dtype) -> None:
    """The eager one-loop alpha-beta step (forward and reversed lattices as one batch) gives the
    transform path's value and gradient, impossible and empty samples included, and the same
    bits on every call; a retained second backward and double backward agree too."""
    log_probs = LOGITS.log_softmax(-1).to(dtype)
    lengths = torch.tensor([3, 4, 5])  # sample 0 cannot fit its target
    weights = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)
    args = (TARGETS, lengths, TARGET_LENGTHS, 0)
    x = log_probs.detach().requires_grad_()
    eager = _EagerCTC.apply(x, *args)
    (eager_grad,) = torch.autograd.grad((eager * weights).sum(), x, retain_graph=True)
    (again,) = torch.autograd.grad((eager * weights).sum(), x)
    composed = _ctc_nll(x, *args)
    (composed_grad,) = torch.autograd.grad((composed * weights).sum(), x)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    assert_close(eager, composed, "value", rtol=rtol)
    assert_close(eager_grad, composed_grad, "gradient", rtol=rtol)
    assert torch.equal(again, eager_grad)
    repeat = _EagerCTC.apply(x, *args)
    assert torch.equal(repeat, eager)
    (first,) = torch.autograd.grad(
        (_EagerCTC.apply(x, *args) * weights).sum(), x, create_graph=True
    )
    (second,) = torch.autograd.grad(first.pow(2).sum(), x)
    (first_c,) = torch.autograd.grad((_ctc_nll(x, *args) * weights).sum(), x, create_graph=True)
    (second_c,) = torch.autograd.grad(first_c.pow(2).sum(), x)
    assert_close(second, second_c, "double backward", rtol=rtol)


@settings(max_examples=40, deadline=None)
@given(case=ctc_problems("padded"))
def test_eager_step_matches_the_composition_on_random_problems(case) -> None:
    """The reversed lattice (one flip, each sample right-aligned: its reversed start waits
    through the padding frames at its final blank) gives the composition's value and gradient
    at every mix of input lengths (0 to T), target lengths (0 to S) and blanks; the forward
    without the reversed half gives the same value."""
    log_probs, targets, input_lengths, target_lengths = case.args
    args = (targets, input_lengths, target_lengths, case.kwargs["blank"])
    weights = torch.linspace(0.5, 2.0, log_probs.shape[1], dtype=log_probs.dtype)
    x = log_probs.detach().requires_grad_()
    eager = _EagerCTC.apply(x, *args)
    (eager_grad,) = torch.autograd.grad((eager * weights).sum(), x)
    composed = _ctc_nll(x, *args)
    (composed_grad,) = torch.autograd.grad((composed * weights).sum(), x)
    assert_close(eager, composed, "value", rtol=1e-12)
    assert_close(eager_grad, composed_grad, "gradient", rtol=1e-12)
    value, slope, _ = _alpha_beta(log_probs, *args, False)
    assert slope is None
    assert_close(value, composed, "value without the gradient", rtol=1e-12)


def test_eager_step_nan_stays_in_its_sample() -> None:
    """A NaN in one sample's lattice makes that sample's value and gradient NaN and leaves the
    others' bits as they are (the flat buffer joins the rows: the NaN is kept out of it)."""
    log_probs = LOGITS.log_softmax(-1)
    args = (TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, 0)

    def step(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_()
        value = _EagerCTC.apply(x, *args)
        return value, torch.autograd.grad(value.sum(), x)[0]

    clean_value, clean_slope = step(log_probs)
    bad = log_probs.clone()
    bad[1, 1, 0] = math.nan  # sample 1's blank at frame 1: read by its lattice
    value, slope = step(bad)
    assert bool(value[1].isnan()) and bool(slope[:, 1].isnan().all())
    keep = [0, 2]
    assert torch.equal(value[keep], clean_value[keep])
    assert torch.equal(slope[:, keep], clean_slope[:, keep])


def test_ctc_loss_takes_the_eager_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from funcloss import _sequence

    calls = []
    monkeypatch.setattr(_sequence, "_alpha_beta", lambda *a: calls.append(a) or _alpha_beta(*a))
    x = LOGITS.log_softmax(-1).requires_grad_()
    funcloss.ctc_loss(x, *ARGS).backward()
    assert len(calls) == 1 and calls[0][-1]  # one loop, the gradient formed in it
    calls.clear()
    # per-sample gradients: the samples folded into one batch (sample_dims), the eager loop
    # run once for all of them a level below the transforms, in the forward and the backward
    per_sample = vmap(grad(_one_sample))(*_samples())
    assert [(a[0].shape[1], a[-1]) for a in calls] == [(3, False), (3, True)]
    loop = [grad(_one_sample)(*sample) for sample in zip(*_samples(), strict=True)]
    assert_close(per_sample, torch.stack(loop))
    calls.clear()
    hessians = vmap(jacfwd(grad(_one_sample)))(*_samples())
    assert not calls  # forward over reverse: the composition
    assert hessians.isfinite().all()


def _one_sample(log_probs, target, input_length, target_length):
    return funcloss.ctc_loss(log_probs, target, input_length, target_length, reduction="sum")


def _samples():
    """``(T, N, C)`` log-probabilities and the rest as N unbatched samples along dimension 0."""
    return LOGITS.log_softmax(-1).transpose(0, 1), TARGETS, INPUT_LENGTHS, TARGET_LENGTHS


def test_per_sample_gradients_match_the_batched_call() -> None:
    expected = torch.autograd.functional.jacobian(
        lambda x: funcloss.ctc_loss(x, *ARGS, reduction="none"), LOGITS.log_softmax(-1)
    )
    rows = expected.diagonal(dim1=0, dim2=2).movedim(-1, 0)  # sample n's row of its own column
    assert_close(vmap(grad(_one_sample))(*_samples()), rows)


def test_per_sample_bad_lengths_get_the_eager_error() -> None:
    log_probs, targets, input_lengths, target_lengths = _samples()
    with pytest.raises(ValueError, match=r"ctc_loss: `input_lengths` must have values in \[0, 6\]"):
        vmap(grad(_one_sample))(log_probs, targets, input_lengths + 1, target_lengths)


def test_jvp_is_directional_derivative() -> None:
    log_probs = LOGITS.log_softmax(-1)
    tangent = torch.randn_like(log_probs)

    def f(x: torch.Tensor) -> torch.Tensor:
        return funcloss.ctc_loss(x, *ARGS, reduction="none")

    _, directional = jvp(f, (log_probs,), (tangent,))
    per_sample = vmap(lambda w: (grad(lambda x: (f(x) * w).sum())(log_probs) * tangent).sum())(
        torch.eye(3, dtype=torch.float64)
    )
    assert_close(directional, per_sample)


# -- module ----------------------------------------------------------------------------------


def test_module() -> None:
    module = fnn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    assert repr(module) == "CTCLoss(blank=0, reduction='sum', zero_infinity=True)"
    assert module.state_dict().keys() == torch.nn.CTCLoss().state_dict().keys()
    log_probs = LOGITS.log_softmax(-1)
    expected = torch.nn.CTCLoss(reduction="sum", zero_infinity=True)(log_probs, *ARGS)
    assert_close(module(log_probs, *ARGS), expected)
    assert_close(pickle.loads(pickle.dumps(module))(log_probs, *ARGS), expected)


def test_nan_log_probability_shows_in_the_loss() -> None:
    # torch gives nan where it reads the NaN (a blank at frame 0) and hides one it does not
    # read; funcloss shows a NaN anywhere in a sample's frames, never inside a masked frame
    log_probs = torch.randn(4, 2, 4, dtype=torch.float64).log_softmax(-1)
    targets = torch.tensor([[1, 2], [1, 1]])
    lengths = (torch.tensor([3, 4]), torch.tensor([2, 1]))
    for frame, klass in ((0, 0), (1, 3)):
        bad = log_probs.clone()
        bad[frame, 0, klass] = math.nan
        for zero_infinity in (False, True):
            loss = funcloss.ctc_loss(
                bad, targets, *lengths, reduction="none", zero_infinity=zero_infinity
            )
            assert bool(loss[0].isnan()), loss
            assert_close(loss[1], torch_ctc(log_probs, targets, *lengths, reduction="none")[1])
    padding = log_probs.clone()
    padding[3, 0, 0] = math.nan  # past sample 0's 3 frames
    loss = funcloss.ctc_loss(padding, targets, *lengths, reduction="none")
    assert_close(loss, torch_ctc(log_probs, targets, *lengths, reduction="none"))


# -- the edges: infinite and huge log-probabilities (issue 14) -------------------------------


@pytest.mark.parametrize("layout", ["padded", "concatenated", "unbatched", "int_lengths"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_naive_oracle_matches_torch(layout: str, data: st.DataObject) -> None:
    """The edge suite's float64 oracle at huge log-probabilities, checked where torch's kernel
    is exact: values and gradients agree."""
    case = data.draw(ctc_problems(layout))
    for reduction in ("none", "sum", "mean"):
        values, gradients = [], []
        for oracle in (naive_ctc, torch_ctc):
            x = case.args[0].detach().requires_grad_()
            value = oracle(x, *case.args[1:], **case.kwargs, reduction=reduction)
            (gradient,) = torch.autograd.grad(value.sum(), x)
            values.append(value)
            gradients.append(gradient)
        assert_close(values[0], values[1], f"value, {reduction}")
        assert_close(gradients[0], gradients[1], f"gradient, {reduction}")


def _edge_problem() -> tuple[torch.Tensor, tuple]:
    """T=5, N=3, C=4: a repeated label, a target that fills the frames exactly (every state
    is off some frame's paths), an input shorter than T."""
    log_probs = _problem(seed=3, frames=5, batch=3, classes=4)[0].log_softmax(-1)
    targets = torch.tensor([[1, 1, 2], [3, 2, 1], [2, 3, 0]])
    return log_probs, (targets, torch.tensor([5, 3, 4]), torch.tensor([2, 3, 1]))


def _value_and_grad(fn, x: torch.Tensor, args: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_()
    value = fn(x, *args, reduction="none")
    (gradient,) = torch.autograd.grad(value.sum(), x)
    return value.detach(), gradient


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_an_infinite_log_probability_gives_the_float64_limit(sign: float) -> None:
    """Every entry in turn set to ±inf: where the float64 truth (the naive recursion at the
    stand-ins ±1e300 and ±1e150) agrees and is finite, funcloss gives it, value and gradient,
    by grad and by jacfwd. A +inf on no complete path (a state not reachable yet at that frame,
    or from which the end cannot be reached in time) leaves the loss as it is."""
    log_probs, args = _edge_problem()
    checked = 0
    for index in range(log_probs.numel()):
        limits = []
        for big in (1e300, 1e150):
            x = log_probs.clone()
            x.view(-1)[index] = sign * big
            limits.append(_value_and_grad(naive_ctc, x, args))
        (v1, g1), (v2, g2) = limits
        if not (
            torch.allclose(v1, v2, rtol=1e-9)
            and torch.allclose(g1, g2, rtol=1e-9, atol=1e-30)
            and bool(v1.isfinite().all() and g1.isfinite().all())
        ):
            continue
        x = log_probs.clone()
        x.view(-1)[index] = sign * INF
        value, gradient = _value_and_grad(funcloss.ctc_loss, x, args)
        assert_close(value, v1, f"value, entry {index}")
        assert_close(gradient, g1, f"gradient, entry {index}")
        forward = jacfwd(lambda y: funcloss.ctc_loss(y, *args, reduction="sum"))(x)
        assert_close(forward, gradient, f"jacfwd, entry {index}")
        checked += 1
    assert checked > log_probs.numel() // 3  # most entries have a limit


@pytest.mark.parametrize("seed", range(4))
def test_huge_log_probabilities_in_float32(seed: int) -> None:
    """log-probabilities scaled to ±3e38 (float32's range): never NaN, finite gradients (the
    truth's, -occupancy, lies in [-1, 0]), the float64 truth where it fits."""
    log_probs, args = _edge_problem()
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(log_probs.shape, generator=generator, dtype=torch.float64)
    x = (x / x.abs().amax() * 3e38).float()
    value, gradient = _value_and_grad(funcloss.ctc_loss, x, args)
    truth, _ = _value_and_grad(naive_ctc, x.double(), args)
    assert not bool(value.isnan().any()), (value, truth)
    assert bool(gradient.isfinite().all()), gradient
    fits = truth.abs() < 1e30
    assert_close(value[fits].double(), truth[fits], "value where the truth fits", rtol=1e-5)
    # huge entries only where no path reads them: the ordinary loss, exactly
    off = log_probs.clone().float()
    off[4, 1] = 3e38  # past the input length
    off[0, 0, 2] = 3e38  # label 2 is the fifth state of (b 1 b 1 b 2 b): no path at frame 0
    off[0, 2, 1] = -3e38  # a class no target of sample 2 uses
    value, gradient = _value_and_grad(funcloss.ctc_loss, off, args)
    expected, expected_gradient = _value_and_grad(naive_ctc, off.double(), args)
    assert_close(value.double(), expected, "value, huge entries off every path", rtol=1e-5)
    assert_close(gradient.double(), expected_gradient, "gradient", rtol=1e-4)
