"""Specs for ctc_loss: padded, concatenated and unbatched targets, lengths as ints.

The oracle is torch's own ``F.ctc_loss``. Its kernel's gradient with respect to ``log_probs`` is
right only through a ``log_softmax``, so the oracle feeds it ``log_softmax(log_probs)`` and adds
back the normaliser, an exact identity for any ``log_probs`` (every path picks one class per
frame):

    -log p(y | lp) = -log p(y | log_softmax(lp)) - sum_{t < T_n} logsumexp_c lp[t, n, c]

so the oracle's derivatives (by torch's autograd) are the true derivatives funcloss returns.

The identity cancels where a log-probability is huge (1e300 - 1e300: the edge suite's
stand-ins for an infinite input, issue 14): there, past ``_HUGE`` in magnitude, the oracle is
:func:`naive_ctc`, the textbook forward recursion in float64, one scalar at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor

import funcloss
import funcloss.nn as fnn
from funcloss.testing import logits

from .registry import Case, LossSpec, count_mean

MAX_FRAMES, MAX_BATCH, MAX_CLASSES, MAX_TARGET = 8, 3, 5, 4


def _as_tensor(lengths: Tensor | Sequence[int]) -> Tensor:
    return lengths if isinstance(lengths, Tensor) else torch.tensor(lengths)


# Past this magnitude torch_ctc's log_softmax identity loses the answer to cancellation.
_HUGE = 1e30


def _extended(target: Sequence[int], blank: int) -> list[int]:
    out = [blank]
    for label in target:
        out += [label, blank]
    return out


def _log_add(terms: list[Tensor]) -> Tensor | None:
    """log(sum(exp(terms))) of the reachable terms (``None``: none, i.e. log 0)."""
    if not terms:
        return None
    high = max(terms, key=lambda term: float(term.detach()))
    if math.isinf(float(high.detach())):
        return high
    return high + sum(torch.exp(term - high) for term in terms).log()


def naive_ctc(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """-log p(target | log_probs) by the forward recursion of Graves et al. (2006), written
    out per sample, frame and state with a state that no path reaches left out (no log 0 in
    the arithmetic), differentiable by autograd. For any floating ``log_probs``; slow."""
    input_lengths = _as_tensor(input_lengths).reshape(-1).tolist()
    target_lengths = _as_tensor(target_lengths).reshape(-1).tolist()
    unbatched = log_probs.dim() == 2
    if unbatched:
        rows = [targets.reshape(-1)[: target_lengths[0]].tolist()]
        log_probs = log_probs.unsqueeze(1)
    elif targets.dim() == 1:
        ends = list(itertools.accumulate(target_lengths, initial=0))
        rows = [targets[a:b].tolist() for a, b in itertools.pairwise(ends)]
    else:
        rows = [row[:length].tolist() for row, length in zip(targets, target_lengths, strict=True)]
    losses = []
    for n, (row, frames) in enumerate(zip(rows, input_lengths, strict=True)):
        labels = _extended(row, blank)
        alpha: list[Tensor | None] = [None] * len(labels)
        alpha[0] = log_probs.flatten()[:0].sum()  # 0 at a virtual frame -1, in the graph
        for t in range(frames):
            new: list[Tensor | None] = []
            for s, label in enumerate(labels):
                sources = [s, s - 1]
                if s >= 2 and label != blank and label != labels[s - 2]:
                    sources.append(s - 2)
                total = _log_add([a for j in sources if j >= 0 and (a := alpha[j]) is not None])
                new.append(None if total is None else total + log_probs[t, n, label])
            alpha = new
        ends = [a for a in alpha[-2:] if a is not None] if row else [alpha[0]]
        log_p = _log_add([a for a in ends if a is not None])
        if log_p is None:  # (an empty sum keeps the graph, NaN-free beside an inf)
            losses.append(log_probs.flatten()[:0].sum() + (0.0 if zero_infinity else math.inf))
        else:
            losses.append(-log_p)
    loss = torch.stack(losses)
    if unbatched:
        loss = loss.squeeze(0)
    if reduction == "mean":
        return (loss / torch.tensor(target_lengths).clamp_min(1)).mean()
    return loss.sum() if reduction == "sum" else loss


def ctc_oracle(log_probs: Tensor, *args, **kwargs) -> Tensor:
    """:func:`torch_ctc`, or :func:`naive_ctc` where a log-probability is huge."""
    finite = log_probs.detach()[log_probs.detach().isfinite()]
    huge = finite.numel() > 0 and float(finite.abs().max()) > _HUGE
    return (naive_ctc if huge else torch_ctc)(log_probs, *args, **kwargs)


def torch_ctc(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """``F.ctc_loss`` with the true derivative in ``log_probs`` (see the module docstring)."""
    input_lengths = _as_tensor(input_lengths).reshape(-1)
    target_lengths = _as_tensor(target_lengths).reshape(-1)
    unbatched = log_probs.dim() == 2
    if unbatched:  # torch reads an unbatched 1-D target as exactly target_length long
        log_probs, targets = log_probs.unsqueeze(1), targets.reshape(1, -1)
    normalised = log_probs.log_softmax(-1)
    args = (targets, input_lengths, target_lengths)
    raw = F.ctc_loss(normalised.detach(), *args, blank=blank, reduction="none")
    # zero_infinity=True keeps torch's gradient of an impossible sample zero instead of NaN.
    loss = F.ctc_loss(normalised, *args, blank=blank, reduction="none", zero_infinity=True)
    frames = torch.arange(log_probs.shape[0]).unsqueeze(1) < input_lengths
    # (where, not a product: a NaN or inf in a frame past the input length is padding)
    loss = loss - torch.where(frames, log_probs.logsumexp(-1), 0.0).sum(0)
    loss = torch.where(torch.isinf(raw), 0.0 if zero_infinity else float("inf"), loss)
    if unbatched:
        loss = loss.squeeze(0)
    if reduction == "mean":
        return (loss / target_lengths.clamp_min(1)).mean()
    return loss.sum() if reduction == "sum" else loss


def frames_needed(target: Sequence[int]) -> int:
    """The fewest frames that can emit ``target``: one per label, plus a blank per repeat."""
    repeats = sum(a == b for a, b in itertools.pairwise(target))
    return len(target) + repeats


@st.composite
def ctc_problems(draw: st.DrawFn, layout: str = "padded") -> Case:
    """A CTC problem in float64; ``layout``: padded | concatenated | unbatched | int_lengths.

    Includes repeated labels (a single label class when C = 2), empty targets, input lengths
    below T and impossible alignments (always with ``zero_infinity=True``: torch's gradient of
    an infinite loss is NaN, pinned separately in test_sequence.py).
    """
    num_frames = draw(st.integers(1, MAX_FRAMES))
    batch = 1 if layout == "unbatched" else draw(st.integers(1, MAX_BATCH))
    num_classes = draw(st.integers(2, MAX_CLASSES))
    width = draw(st.integers(0, MAX_TARGET))
    blank = draw(st.sampled_from(sorted({0, num_classes - 1})))
    labels = st.sampled_from([c for c in range(num_classes) if c != blank])
    rows = [draw(st.lists(labels, min_size=width, max_size=width)) for _ in range(batch)]
    target_lengths = [draw(st.integers(0, width)) for _ in range(batch)]
    frames = st.one_of(st.just(num_frames), st.integers(0, num_frames))
    input_lengths = [draw(frames) for _ in range(batch)]
    log_probs = draw(logits((num_frames, batch, num_classes)))
    if draw(st.booleans()):
        log_probs = log_probs.log_softmax(-1)
    possible = all(
        frames_needed(row[:length]) <= frame_count
        for row, length, frame_count in zip(rows, target_lengths, input_lengths, strict=True)
    )
    kwargs = {"blank": blank, "zero_infinity": not possible or draw(st.booleans())}
    targets = torch.tensor(rows, dtype=torch.int64).reshape(batch, width)
    lengths: tuple = (torch.tensor(input_lengths), torch.tensor(target_lengths))
    if layout == "concatenated":
        used = zip(targets, target_lengths, strict=True)
        targets = torch.cat([row[:length] for row, length in used])
    elif layout == "unbatched":
        log_probs, targets = log_probs[:, 0], targets[0]
        lengths = (torch.tensor(input_lengths[0]), torch.tensor(target_lengths[0]))
    elif layout == "int_lengths":
        lengths = (tuple(input_lengths), tuple(target_lengths))
    return Case((log_probs, targets, *lengths), kwargs)


def _masked_mean(case: Case, loss: Tensor, where: Tensor) -> Tensor:
    """torch's mean (of each loss over its target length, at least 1) over the included
    samples."""
    lengths = _as_tensor(case.args[3]).reshape(loss.shape).clamp_min(1)
    return count_mean(loss / lengths, where)


def _log_probs_mask(where: Tensor, position: int, case: Case) -> Tensor | None:
    """A sample's mask on its ``(T, C)`` slice of ``log_probs`` (``(T, N, C)`` or ``(T, C)``)."""
    if position != 0:
        return None
    log_probs = case.args[0]
    row = where.reshape(-1, 1) if log_probs.dim() == 3 else where
    return row.expand(log_probs.shape)


def _spec(layout: str, per_sample_dims: tuple[int, ...] | None) -> LossSpec:
    return LossSpec(
        "ctc_loss" if layout == "padded" else f"ctc_loss-{layout.replace('_', '-')}",
        funcloss.ctc_loss,
        fnn.CTCLoss,
        lambda: ctc_problems(layout),
        ctc_oracle,
        # (T, N, C) log_probs: the batch is dim 1.
        per_sample_dims=per_sample_dims,
        oracle_second_order=False,
        torch_module=torch.nn.CTCLoss if layout == "padded" else None,
        masked_mean=_masked_mean,
        where_arg_mask=_log_probs_mask,
    )


SPECS = [
    _spec("padded", (1, 0, 0, 0)),
    _spec("concatenated", None),
    _spec("unbatched", None),
    _spec("int_lengths", None),
]
