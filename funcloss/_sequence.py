"""Sequence losses: ctc_loss (connectionist temporal classification)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    check_floating,
    check_index,
    check_integer,
    check_reduction,
    check_where,
    checks_config,
    eager_mode,
    fail,
    in_place_safe,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._reduction import masked, reduce

# log(0) stand-in. Finite, so that logaddexp/logsumexp and their derivatives stay NaN-free where
# no path reaches a state (their gradient over terms that are all -inf is exp(-inf + inf) = NaN),
# while exp(_LOG_ZERO - x) is exactly 0 next to any real log-probability x, so such states get
# zero weight and zero gradient. Sums of a few sentinels stay finite in float32.
_LOG_ZERO = -1e30
# A log-likelihood below this is a sentinel, i.e. no alignment exists (real ones are >= T times
# the smallest log-probability).
_IMPOSSIBLE = _LOG_ZERO / 2
_HALF_DTYPES = (torch.float16, torch.bfloat16)
# The eager step rescales its alphas every this many frames.
_RESCALE = 4
# It flips the reversed alphas in this many parts of the frames: a quarter of the (T, N, L)
# copy at a time, for a few more ops.
_FLIP_PARTS = 4


# -- the lattice -------------------------------------------------------------------------------
#
# The extended label sequence of a target l_1..l_S is l' = (blank, l_1, blank, l_2, ..., l_S,
# blank), L = 2S + 1 states. A path moves from state s at frame t to s, s + 1, or s + 2 at
# frame t + 1; the jump s -> s + 2 skips a blank and is allowed only between different labels
# (a repeated label needs the blank in between). Everything below works on the whole batch and
# all L states at once; only the frames are a Python loop, a handful of ops per frame.


def _lattice(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    in_place: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The extended labels and what the recursions read from them (``in_place``: for the eager
    step, which builds no graph: the emissions formed in one buffer, the same values).

    Returns ``labels`` ``(N, L)`` (positions past a target's end hold the blank), ``skip``
    ``(N, L)`` (0 where state s may be entered from s - 2, log 0 elsewhere), ``emissions``
    ``(T, N, L)`` and their ``offset`` ``(N,)``: emissions[t, n, s] is the log-probability of
    state s's label at frame t less a per-frame shift m[t, n] (their largest value on a
    complete path), and log 0 where no complete path is at state s at frame t; ``offset`` is
    sum_t m[t, n], so log p = (log p of the emissions) + offset. A NaN emission on a path makes
    its frame's shift NaN, and so the sample's offset and loss.

    Why: every path picks one state per frame, so a per-frame shift changes log p by the
    shift and the state posteriors not at all, and with it the recursions stay in range for
    log-probabilities up to float32's largest (no inf - inf); and a state on no complete path
    gets no weight even where its log-probability is +inf or huge (which would otherwise lift
    the log-0 sentinel back to life). The shift is a constant to the derivatives (detached):
    the results are exact for any shift. A -inf log-probability counts as log 0.
    """
    n, s = targets.shape
    inside = torch.arange(s, device=targets.device) < target_lengths.unsqueeze(1)
    labels = torch.where(inside, targets, blank)
    blanks = torch.full_like(labels, blank)
    labels = torch.stack([blanks, labels], dim=2).reshape(n, 2 * s)
    labels = torch.cat([labels, labels.new_full((n, 1), blank)], dim=1)
    two_back = torch.nn.functional.pad(labels, (2, 0), value=blank)[:, :-2]
    allowed = (labels != blank) & (labels != two_back)
    skip = torch.where(allowed, 0.0, _LOG_ZERO).to(log_probs.dtype)
    on_path = _on_path(allowed, input_lengths, target_lengths, log_probs.shape[0])
    emissions = log_probs.gather(2, labels.unsqueeze(0).expand(log_probs.shape[0], -1, -1))
    reached = torch.where(on_path, emissions.detach(), -math.inf)
    shift = reached.amax(2, keepdim=True)
    # no complete path at that frame (past the input, an impossible alignment, all log 0): no
    # shift; a +inf on a path: the largest finite one (the loss is -inf, as it should be)
    shift = shift.masked_fill(shift == -math.inf, 0.0)
    finite = shift.clamp_max(torch.finfo(shift.dtype).max)
    if in_place:  # off the paths -inf - m clamps to log 0: the same bits as the where
        emissions = reached.sub_(finite).clamp_(_LOG_ZERO, 0.0)
    else:
        emissions = torch.where(on_path, (emissions - finite).clamp(_LOG_ZERO, 0.0), _LOG_ZERO)
    return labels, skip, emissions, shift.sum((0, 2))


def _on_path(
    allowed: Tensor, input_lengths: Tensor, target_lengths: Tensor, num_frames: int
) -> Tensor:
    """``(T, N, L)``: whether some complete path of the lattice is at state s at frame t.

    From the start, state s is first reachable at frame first(s) - 1, where first(s) counts
    the states a shortest path to s visits: first(0) = first(1) = 1, and each later state adds
    one, except a label entered from two back (``allowed``). To the end, state s needs
    last(s) frames (its own included): 1 at the two end states 2S and 2S - 1, and each earlier
    state adds one, except a label that may jump to the label after it. Both with staying
    allowed, so s is on a path at frame t iff first(s) <= t + 1 and last(s) <= T_n - t.
    """
    num_states = allowed.shape[1]
    states = torch.arange(num_states, device=allowed.device)
    step = torch.where(states == 0, 0, (~allowed).long())
    first = 1 + step.cumsum(1)
    ahead = torch.nn.functional.pad(allowed, (0, 2))[:, 2:]  # s -> s + 2 allowed
    rest = (~ahead).long().cumsum(1)  # rest[s] - rest[s - 1] = 1 - ahead[s]
    stop = (2 * target_lengths - 2).unsqueeze(1)  # the last state before the end states
    before = torch.nn.functional.pad(rest, (1, 0))[:, :-1]
    last = 1 + rest.gather(1, stop.clamp_min(0)) - before
    last = torch.where(states > stop, 1, last)
    # as an interval of frames per state, [first(s) - 1, T_n - last(s)] (empty past the
    # target's end): two comparisons of (T, N, L)
    inside = states < 2 * target_lengths.unsqueeze(1) + 1
    earliest = torch.where(inside, first - 1, num_frames)
    latest = input_lengths.unsqueeze(1) - last
    frames = torch.arange(num_frames, device=allowed.device).view(-1, 1, 1)
    return (frames >= earliest) & (frames <= latest)


def _logaddexp3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """log(e^a + e^b + e^c): two fused elementwise kernels (faster than stack + logsumexp)."""
    return torch.logaddexp(torch.logaddexp(a, b), c)


def _alphas(
    emissions: Tensor, skip: Tensor, input_lengths: Tensor
) -> Iterator[tuple[Tensor, Tensor]]:
    """Forward variables alpha_t ``(N, L)`` for t = 0..T-1: log P(frames 0..t end in state s),
    each less its largest value ``(N, 1)``, yielded with it.

    alpha_t(s) = lse(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2) if allowed) + y_t(l'_s),
    starting from a virtual alpha_{-1} that is 0 at s = 0. A sample's alpha stays fixed after its
    last frame, so the last one yielded is alpha_{T_n - 1} for every sample (its largest value 0
    from then on). Kept at most 0, the values stay small, and so do their rounding errors (at
    T = 200 in float32 the unscaled ones reach a few hundred, and their ulps show in the
    gradient); the scale is a constant to the derivatives (detached): exact for any.
    """
    num_frames, n, num_states = emissions.shape
    # alpha is kept with two log-0 states in front, so that s-1 and s-2 are views.
    edge = emissions.new_full((n, 2), _LOG_ZERO)
    states = torch.arange(num_states + 2, device=emissions.device)
    alpha = torch.where(states == 2, 0.0, _LOG_ZERO).to(emissions.dtype).expand(n, -1)
    used = torch.arange(num_frames, device=emissions.device).unsqueeze(1) < input_lengths
    used = used.unsqueeze(2)
    for t in range(num_frames):
        step = _logaddexp3(alpha[:, 2:], alpha[:, 1:-1], alpha[:, :-2] + skip) + emissions[t]
        kept = torch.where(used[t], step, alpha[:, 2:])
        top = kept.detach().amax(1, keepdim=True)
        kept = kept - top
        alpha = torch.cat([edge, kept], 1)
        yield kept, top


def _end_states(target_lengths: Tensor, num_states: int) -> Tensor:
    """``(N, L)`` mask of the two states a path may end in: the last label and the final blank."""
    end = 2 * target_lengths.unsqueeze(1)
    states = torch.arange(num_states, device=target_lengths.device)
    return (states == end) | (states == end - 1)


def _log_likelihood(alpha: Tensor, target_lengths: Tensor) -> Tensor:
    """log p(target | log_probs) ``(N,)`` from the last forward variables (sentinel if 0)."""
    ends = torch.where(_end_states(target_lengths, alpha.shape[1]), alpha, _LOG_ZERO)
    return torch.logsumexp(ends, 1)


def _betas(
    emissions: Tensor, skip: Tensor, input_lengths: Tensor, target_lengths: Tensor
) -> list[Tensor]:
    """Backward variables beta_t ``(N, L)``: log P(frames t+1..T_n-1 | state s at frame t),
    each less its largest value (as the alphas).

    beta_t(s) = lse over s' in {s, s+1, s+2 if allowed} of y_{t+1}(l'_{s'}) + beta_{t+1}(s'),
    and 0 at the two end states for t >= T_n - 1 (so alpha_t + beta_t sums the paths through
    state s at frame t, up to a constant per frame).
    """
    num_frames, n, num_states = emissions.shape
    final = torch.where(_end_states(target_lengths, num_states), 0.0, _LOG_ZERO)
    final = final.to(emissions.dtype)
    # beta is kept with two log-0 states behind, so that s+1 and s+2 are views.
    edge = emissions.new_full((n, 2), _LOG_ZERO)
    ahead = torch.nn.functional.pad(emissions, (0, 2), value=_LOG_ZERO)
    skip_ahead = torch.nn.functional.pad(skip, (0, 2), value=_LOG_ZERO)[:, 2:]  # s -> s+2
    last = torch.arange(num_frames, device=emissions.device).unsqueeze(1) >= input_lengths - 1
    last = last.unsqueeze(2)
    beta = final
    betas = [beta]
    for t in range(num_frames - 2, -1, -1):
        x = torch.cat([beta, edge], 1) + ahead[t + 1]
        step = _logaddexp3(x[:, :-2], x[:, 1:-1], x[:, 2:] + skip_ahead)
        beta = torch.where(last[t], final, step - step.detach().amax(1, keepdim=True))
        betas.append(beta)
    return betas[::-1]


def _occupancy(
    log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor, blank: int
) -> tuple[Tensor, Tensor]:
    """``labels`` ``(N, L)`` and the state posteriors ``(T, N, L)``:
    gamma_t(s) = exp(alpha_t(s) + beta_t(s) - log p), 0 past a sample's last frame and where
    p = 0 (an impossible alignment). Every path is in one state per frame, so gamma_t sums to 1
    over the states: it is the softmax of alpha_t + beta_t over them (scaled as they are)."""
    labels, skip, emissions, _ = _lattice(log_probs, targets, input_lengths, target_lengths, blank)
    alphas, tops = (
        torch.stack(items) for items in zip(*_alphas(emissions, skip, input_lengths), strict=True)
    )
    log_p = _log_likelihood(alphas[-1], target_lengths) + tops.sum((0, 2))
    betas = torch.stack(_betas(emissions, skip, input_lengths, target_lengths))
    possible = log_p > _IMPOSSIBLE
    frames = torch.arange(log_probs.shape[0], device=log_probs.device)
    keep = ((frames.unsqueeze(1) < input_lengths) & possible).unsqueeze(2)
    log_gamma = alphas + betas
    log_gamma = log_gamma - log_gamma.logsumexp(2, keepdim=True)
    # torch's exp is ~10x slower on inputs whose result is subnormal or 0 (most states here:
    # sentinels) than at -inf: such terms (each below the smallest normal number) and the
    # states not kept become -inf, in place on the temporary, and exp makes them exact zeros.
    keep = keep & (log_gamma >= math.log(torch.finfo(log_gamma.dtype).tiny))
    return labels, torch.exp(log_gamma.masked_fill_(~keep, -math.inf))


# -- the per-sample negative log-likelihood --------------------------------------------------
#
# A custom backward buys memory and speed: autograd through the forward recursion keeps a
# T-long graph of (N, L) intermediates (several per frame) and replays it op by op; the
# hand-written backward saves only the inputs, recomputes alpha and runs the beta recursion,
# and forms the whole gradient in one vectorised step. It is built from differentiable ops, so
# double backward (jacrev(jacrev), hessian) differentiates it exactly. The forward is itself
# autodiff-correct and NaN-free (log 0 is a finite sentinel), for compile-under-transform,
# where the custom rules are dropped.


@custom_backward
def _ctc_nll(
    log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor, blank: int
) -> Tensor:
    """-log p(target_n | log_probs) ``(N,)`` for ``(T, N, C)`` log_probs and padded targets."""
    if _below_transforms(log_probs, targets, input_lengths, target_lengths, blank):
        return _alpha_beta(log_probs, targets, input_lengths, target_lengths, blank, False)[0]
    _, skip, emissions, offset = _lattice(log_probs, targets, input_lengths, target_lengths, blank)
    steps = _alphas(emissions, skip, input_lengths)
    alpha, top = next(steps)  # frame 0 (log_probs is checked non-empty)
    scale = top.squeeze(1)
    for step in steps:
        alpha, top = step  # the last alpha stays: each sample's at its last frame
        scale = scale + top.squeeze(1)
    log_p = _log_likelihood(alpha, target_lengths) + scale  # (of the shifted emissions)
    return torch.where(log_p <= _IMPOSSIBLE, float("inf"), -(log_p + offset))  # NaN stays NaN


@_ctc_nll.backward
def _ctc_nll_backward(
    grad: Tensor,
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
) -> tuple[Tensor, None, None, None]:
    # d nll_n / d log_probs[t, n, c] = -sum_{s: l'_s = c} gamma_t(s)   (the true derivative;
    # torch's kernel returns exp(log_probs) - that, right only through a log_softmax)
    if _below_transforms(log_probs, targets, input_lengths, target_lengths, blank):
        _, posteriors, broken = _alpha_beta(
            log_probs, targets, input_lengths, target_lengths, blank, True
        )
        assert posteriors is not None
        return _scaled_posteriors(grad, log_probs, posteriors, broken), None, None, None
    labels, occupancy = _occupancy(log_probs, targets, input_lengths, target_lengths, blank)
    index = labels.unsqueeze(0).expand_as(occupancy)
    result = torch.zeros_like(log_probs).scatter_add(2, index, -occupancy * grad[:, None])
    return result, None, None, None


@_ctc_nll.jvp
def _ctc_nll_jvp(
    log_probs_t: Tensor,
    targets_t: Tensor,
    input_lengths_t: Tensor,
    target_lengths_t: Tensor,
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
) -> Tensor:
    # d nll_n = -sum_{t, s} gamma_t(s) d log_probs[t, n, l'_s]
    labels, occupancy = _occupancy(log_probs, targets, input_lengths, target_lengths, blank)
    index = labels.unsqueeze(0).expand_as(occupancy)
    return -(occupancy * log_probs_t.gather(2, index)).sum((0, 2))


# Each sample's loss depends only on its own column: under vmap the vmapped samples join the
# batch (one frame loop for all of them, forward and backward), not each op batched in turn.
_ctc_nll.sample_dims(log_probs=1, targets=0, input_lengths=0, target_lengths=0)


# -- the eager training step ------------------------------------------------------------------
#
# In plain eager mode a call spends its time in the frame loops: per frame a handful of ops on
# small (N, L) tensors, three loops per training step (alpha in the forward, alpha again and
# beta in the backward). The eager step runs one loop: beta is the alpha of the time- and
# label-reversed lattice (frame T_n - 1 - t, state L_n - 1 - s), so the forward and the
# reversed problems go through the same recursion as one batch of 2N, four in-place ops per
# frame into a preallocated buffer, and no freezing past a sample's last frame (its alpha is read
# there). The gradient is formed in the forward (when log_probs requires grad) and scaled in
# the backward. The transform path above keeps the exact composition.


def _flip_parts(num_frames: int) -> Iterator[tuple[int, int]]:
    """The frame ranges ``[begin, end)`` of the eager step's flips, ``_FLIP_PARTS`` of them."""
    part = -(-num_frames // _FLIP_PARTS)
    for begin in range(0, num_frames, part):
        yield begin, min(begin + part, num_frames)


def _reversed_lattice(
    emissions: Tensor, skip: Tensor, input_lengths: Tensor, target_lengths: Tensor, out: Tensor
) -> tuple[Tensor, Tensor]:
    """The time- and label-reversed lattice as one flip of the whole ``(T, N, L)`` tensor
    (frame T - 1 - t, state L - 1 - s), written into ``out``; its jumps and each row's start
    state ``(N,)``.

    A sample with T_n < T frames or L_n < L states sits right-aligned in it: its reversed
    problem starts at state L - 1 - 2 S_n (its final blank) after T - T_n padding frames, which
    hold the start (a log-1 emission there, log 0 elsewhere), so its alpha there is that of the
    virtual start. Entering reversed state r from r - 2 is the original jump L - 1 - r ->
    L + 1 - r: ``skip`` flipped, two states on.
    """
    num_frames, n, num_states = emissions.shape
    for begin, end in _flip_parts(num_frames):  # (a quarter of the flip's copy at a time)
        out[begin:end].copy_(emissions[num_frames - end : num_frames - begin].flip((0, 2)))
    start = num_states - 1 - 2 * target_lengths
    # the padding frames' log 1 at the start state: one column per sample, (T, N, 1)
    frames = torch.arange(num_frames).view(-1, 1, 1)
    waiting = frames < (num_frames - input_lengths).view(1, -1, 1)
    column = start.view(1, -1, 1).expand(num_frames, n, 1)
    out.scatter_(2, column, out.gather(2, column).masked_fill_(waiting, 0.0))
    jump = torch.nn.functional.pad(skip.flip(1), (2, 0), value=_LOG_ZERO)[:, :num_states]
    return jump, start


def _alpha_beta(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    gradient: bool,
) -> tuple[Tensor, tuple[Tensor, Tensor] | None, Tensor]:
    """-log p ``(N,)``; with ``gradient``, the extended labels ``(N, L)`` and the state
    posteriors ``(T, N, L)``, whose sums per class are d(log p_n)/d log_probs (formed in
    :class:`_EagerCTC`'s backward, scaled first: a pass over ``(T, N, L)``, not ``(T, N, C)``);
    and which samples' lattice holds a NaN ``(N,)`` (their value is NaN; their posteriors are
    not, and are read as NaN: the backward scales them by a NaN, one fill of ``(N,)``)."""
    num_frames, n, _ = log_probs.shape
    labels, skip, emissions, offset = _lattice(
        log_probs, targets, input_lengths, target_lengths, blank, in_place=True
    )
    num_states = labels.shape[1]
    rows, width = (2 * n if gradient else n), num_states + 2
    # Each frame's alpha is one flat buffer: the rows one after another, each with two log-0
    # states in front, so that s - 1 and s - 2 are the flat neighbours and every operand is
    # contiguous (logaddexp is several times slower on strided views). Frame t's holds its
    # emissions until the loop adds them to the recursion's terms there, in place (no second
    # buffer of the lattice); the padding states get a log-0 emission and stay about log 0.
    # The frames' views are made once (indexing in the loop costs more than the arithmetic).
    alpha = log_probs.new_empty((num_frames + 1, rows * width + 2))
    alpha[:, :2] = _LOG_ZERO
    by_frame = alpha[:, 2:].view(num_frames + 1, rows, width)
    by_frame[:, :, :2] = _LOG_ZERO
    # A NaN would spread through the padding into the next row: the loop reads log 0 there,
    # and the sample's results become NaN after it. A sample's offset is NaN exactly where one
    # of its emissions is (_lattice): its result is made NaN below.
    broken = offset.isnan()
    forward = torch.nan_to_num(emissions, nan=_LOG_ZERO, out=by_frame[1:, :n, 2:])
    first = torch.zeros(n, dtype=torch.long)  # the start state of each row
    if gradient:
        jump, start = _reversed_lattice(
            forward, skip, input_lengths, target_lengths, by_frame[1:, n:, 2:]
        )
        skip = torch.cat([skip, jump])
        first = torch.cat([first, start])
    # a virtual frame -1 in each row's start state
    by_frame[0, :, 2:] = _LOG_ZERO
    by_frame[0, :, 2:].scatter_(1, first.unsqueeze(1), 0.0)
    skip = torch.nn.functional.pad(skip, (2, 0), value=_LOG_ZERO).reshape(-1)
    stay, one_back, two_back = (
        alpha[:, 2:].unbind(0),
        alpha[:, 1:-1].unbind(0),
        alpha[:, :-2].unbind(0),
    )
    terms, jumped = torch.empty_like(skip), torch.empty_like(skip)
    # every _RESCALE frames each row less its largest value (for small rounding errors, as in
    # _alphas), kept in tops
    tops = alpha.new_zeros((num_frames + 1, rows, 1))
    for t in range(num_frames):
        torch.logaddexp(stay[t], one_back[t], out=terms)
        torch.logaddexp(terms, torch.add(two_back[t], skip, out=jumped), out=terms)
        now = stay[t + 1].add_(terms)  # frame t's emissions plus the terms
        if t % _RESCALE == _RESCALE - 1:
            by_row = now.view(rows, width)
            by_row.sub_(torch.amax(by_row, 1, keepdim=True, out=tops[t + 1]))
    alphas = alpha[:, 2:].view(num_frames + 1, rows, width)[:, :, 2:]
    # each sample's alpha at its last frame (frame -1: the start, for an empty input)
    index = input_lengths.view(1, -1, 1)
    scale = tops[:, :n].cumsum(0).gather(0, index).view(n)
    log_p = _log_likelihood(
        alphas[:, :n].gather(0, index.expand(1, n, num_states))[0], target_lengths
    )
    log_p += scale
    possible = log_p > _IMPOSSIBLE
    nll = torch.where(possible, -(log_p + offset), math.inf).masked_fill_(broken, math.nan)
    if not gradient:
        return nll, None, broken
    # the reversed alpha at frame T - 1 - t, state L - 1 - s is beta_t(s) plus frame t's
    # emission (once too often): alpha_t(s) + beta_t(s) = alphas + (betas - emissions). Formed
    # in the emissions' buffer, the reversed alphas flipped (a copy) a quarter of the frames
    # at a time: no (T, N, L) temporary.
    log_gamma = emissions.neg_().add_(alphas[1:, :n])
    backwards = alphas[1:, n:]
    for begin, end in _flip_parts(num_frames):
        log_gamma[begin:end].add_(backwards[num_frames - end : num_frames - begin].flip((0, 2)))
    # the posteriors: per frame a softmax over the states (as in _occupancy). States past a
    # target's end are log 0 in both (sentinels cancel to log 0); frames past a sample's last
    # are zeroed below.
    log_gamma.sub_(log_gamma.amax(2, keepdim=True))
    # torch's exp is ~10-40x slower where its result is subnormal or 0 (and at sentinels and
    # -inf) than at normal results: exp of the terms clamped to the floor, the terms below
    # twice e^floor zeroed (in place, no mask), then each frame divided by its sum (at least 1,
    # the largest term's), and by inf (to 0) in the frames past the last and of impossible
    # samples
    floor = _exp_floor(log_gamma.dtype)
    frames = torch.arange(num_frames).view(-1, 1, 1)
    past = (frames >= input_lengths.view(1, -1, 1)) | ~possible.view(1, -1, 1)
    occupancy = log_gamma.clamp_min_(floor).exp_()
    torch.nn.functional.threshold(occupancy, 2 * math.exp(floor), 0.0, inplace=True)
    occupancy.div_(occupancy.sum(2, keepdim=True).clamp_min_(1.0).masked_fill_(past, math.inf))
    return nll, (labels, occupancy), broken


def _exp_floor(dtype: torch.dtype) -> float:
    """The log of the floor of the eager step's posteriors: e^floor a normal number with a
    margin (exp at the smallest normal's log rounds to a subnormal, the slow path); below
    twice e^floor a posterior is 0 (under float's smallest normal times 2e, invisible next to
    the largest, 1, in the frame's sum)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


class _EagerCTC(torch.autograd.Function):
    """The eager training step of :func:`_ctc_nll` (``_eager_step``). The posteriors it keeps
    in ``ctx`` are an intermediate, which double backward cannot use: with ``create_graph`` the
    backward is the differentiable one of :func:`_ctc_nll`. The first backward drops them (the
    backward of the log-softmax before the loss runs after it, with its own (T, N, C) buffer); a
    second backward of a retained graph recomputes them."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        log_probs: Tensor,
        targets: Tensor,
        input_lengths: Tensor,
        target_lengths: Tensor,
        blank: int,
    ) -> Tensor:
        nll, posteriors, broken = _alpha_beta(
            log_probs, targets, input_lengths, target_lengths, blank, ctx.needs_input_grad[0]
        )
        ctx.save_for_backward(log_probs, targets, input_lengths, target_lengths)
        ctx.blank, ctx.posteriors, ctx.broken = blank, posteriors, broken
        return nll

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor
    ) -> tuple[Tensor, None, None, None, None]:
        posteriors = ctx.posteriors
        if posteriors is None or torch.is_grad_enabled():
            result = _ctc_nll_backward(grad, *ctx.saved_tensors, ctx.blank)[0]
        else:
            ctx.posteriors = None
            result = _scaled_posteriors(grad, ctx.saved_tensors[0], posteriors, ctx.broken)
            del posteriors
        return result, None, None, None, None


def _scaled_posteriors(
    grad: Tensor, log_probs: Tensor, posteriors: tuple[Tensor, Tensor], broken: Tensor
) -> Tensor:
    """The gradient from :func:`_alpha_beta`'s posteriors, as :func:`_ctc_nll_backward`'s:
    each class's posteriors summed, times minus the incoming gradient, NaN at a broken
    sample."""
    labels, occupancy = posteriors
    scale = grad.masked_fill(broken, math.nan).neg_().view(1, -1, 1)
    index = labels.unsqueeze(0).expand_as(occupancy)
    result = torch.zeros_like(log_probs).scatter_add_(2, index, occupancy)
    return result.mul_(scale)  # in place on the result: no scaled copy of the posteriors


def _below_transforms(
    log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor, blank: int
) -> bool:
    """Whether :func:`_ctc_nll`'s rules run where the eager step's one loop may compute them:
    in plain eager mode with grad off, as a transform runs them a level below itself
    (``grad``'s forward, the folded call of ``vmap``, ``_ctc_nll.sample_dims``), on values the
    value checks pass. The transform's call could not read the lengths and targets; they are
    checked here (one host read; a bad value raises the eager call's error)."""
    tensors = (log_probs, targets, input_lengths, target_lengths)
    if not (in_place_safe(log_probs) and _eager_step(*tensors)):
        return False
    num_frames, _, num_classes = log_probs.shape
    _read_lengths(
        "ctc_loss", targets, input_lengths, target_lengths, num_frames, num_classes, blank, None
    )
    return True


def _eager_step(*tensors: Tensor) -> bool:
    """Plain tensors in plain eager mode (:func:`eager_mode`) whose lengths the value checks
    have read (the step indexes frames by them: unchecked lengths take the composition)."""
    return (
        all(type(t) is Tensor for t in tensors)
        and eager_mode(*tensors)
        and value_checks_enabled(*tensors[1:])
    )


# -- argument handling -----------------------------------------------------------------------


def _lengths(
    fn: str, name: str, lengths: Tensor | Sequence[int], batch: int | None, device: torch.device
) -> Tensor:
    """Lengths as int64 of shape ``(N,)`` (``batch`` given) or ``(1,)`` (unbatched)."""
    rule = "be an integer tensor or a sequence of ints"
    if isinstance(lengths, list | tuple):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in lengths):
            fail(TypeError, fn, name, rule, lengths)
        lengths = torch.tensor(lengths, dtype=torch.long, device=device)
    elif not isinstance(lengths, Tensor):
        fail(TypeError, fn, name, rule, type(lengths).__name__)
    check_integer(fn, **{name: lengths})
    if batch is None:
        if lengths.shape not in ((), (1,)):
            fail(
                ValueError,
                fn,
                name,
                "have shape () for unbatched log_probs",
                shape_str(lengths.shape),
            )
        return lengths.reshape(1).to(device=device, dtype=torch.long)
    if lengths.shape != (batch,):
        fail(
            ValueError,
            fn,
            name,
            f"have shape ({batch},), one length per sample",
            shape_str(lengths.shape),
        )
    return lengths.to(device=device, dtype=torch.long)


def _check_targets_shape(fn: str, targets: Tensor, log_probs: Tensor) -> None:
    if log_probs.dim() == 2:
        if targets.dim() == 1 or (targets.dim() == 2 and targets.shape[0] == 1):
            return
        rule = "have shape (S,) for unbatched log_probs"
    else:
        n = log_probs.shape[1]
        if targets.dim() == 1 or (targets.dim() == 2 and targets.shape[0] == n):
            return
        rule = (
            f"have shape ({n}, S) (padded) or (sum(target_lengths),) (concatenated) for "
            f"log_probs of shape {shape_str(log_probs.shape)}"
        )
    fail(ValueError, fn, "targets", rule, shape_str(targets.shape))


def _check_range(fn: str, name: str, lengths: Tensor, high: int | None, what: str) -> None:
    bad = lengths < 0 if high is None else (lengths < 0) | (lengths > high)
    if bool(bad.any()):
        rule = "non-negative values" if high is None else f"values in [0, {high}] (at most {what})"
        fail(ValueError, fn, name, f"have {rule}", int(lengths[bad][0]))


def _included_entries(target_lengths: Tensor, sample: Tensor, count: int) -> Tensor:
    """Concatenated targets: whether each of the ``count`` entries belongs to an included
    sample (``sample``, ``(N,)`` bool); read on the eager check path only."""
    ends = target_lengths.cumsum(0)
    positions = torch.arange(count, device=target_lengths.device)
    owner = torch.searchsorted(ends, positions, right=True)
    return sample[owner.clamp_max(sample.shape[0] - 1)]


def _read_lengths(
    fn: str,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    num_frames: int,
    num_classes: int,
    blank: int,
    sample: Tensor | None,
) -> int | None:
    """Eager-only value checks, in one host read on valid input: lengths in range, targets in
    ``[0, C)`` and not blank within their lengths. Returns the longest target length (the
    padded width of concatenated targets), or ``None`` where values are not read.

    ``sample`` (the ``(N,)`` mask, or ``None``) exempts the entries of masked samples of
    concatenated targets; padded targets and the lengths come here already masked (length 0).
    """
    if not value_checks_enabled(targets, input_lengths, target_lengths):
        return None
    bad_input = (input_lengths < 0) | (input_lengths > num_frames)
    wrong = (targets < 0) | (targets >= num_classes) | (targets == blank)
    if targets.dim() == 2:  # padding past a target's length may hold anything
        bad_target = (target_lengths < 0) | (target_lengths > targets.shape[1])
        inside = torch.arange(targets.shape[1], device=targets.device) < target_lengths[:, None]
        wrong &= inside
    else:  # concatenated: every entry belongs to a target once the lengths sum up
        bad_target = (target_lengths < 0).any() | (target_lengths.sum() != targets.numel())
        if sample is not None:
            wrong &= _included_entries(target_lengths, sample, targets.numel())
    flags = torch.stack([bad_input.any(), bad_target.any(), wrong.any()]).long()
    longest = target_lengths.max() if target_lengths.numel() > 0 else flags.new_zeros(())
    any_bad_input, any_bad_target, any_wrong, width = torch.cat(
        [flags, longest.reshape(1).long()]
    ).tolist()
    if any_bad_input or any_bad_target or any_wrong:
        _explain(fn, targets, input_lengths, target_lengths, num_frames, num_classes, blank, sample)
    return width


def _explain(
    fn: str,
    targets: Tensor,
    input_lengths: Tensor,
    target_lengths: Tensor,
    num_frames: int,
    num_classes: int,
    blank: int,
    sample: Tensor | None,
) -> None:
    """The error path of :func:`_read_lengths`: find the first bad value and raise."""
    _check_range(fn, "input_lengths", input_lengths, num_frames, "T")
    if targets.dim() == 2:
        _check_range(fn, "target_lengths", target_lengths, targets.shape[1], "the targets' S")
        inside = torch.arange(targets.shape[1], device=targets.device) < target_lengths[:, None]
        used = targets[inside]
    else:
        _check_range(fn, "target_lengths", target_lengths, None, "")
        total = int(target_lengths.sum())
        if total != targets.numel():
            fail(
                ValueError,
                fn,
                "target_lengths",
                f"sum to the number of concatenated targets {targets.numel()}",
                total,
            )
        used = targets
        if sample is not None:
            used = targets[_included_entries(target_lengths, sample, targets.numel())]
    out_of_range = (used < 0) | (used >= num_classes)
    if bool(out_of_range.any()):
        raise IndexError(
            f"{fn}: `targets` values must be in [0, {num_classes}), "
            f"got {int(used[out_of_range][0])}."
        )
    fail(
        ValueError,
        fn,
        "targets",
        f"not contain the blank index {blank} within a target's length",
        blank,
        hint="Padding past target_lengths may hold any value.",
    )


def _pad_concatenated(targets: Tensor, target_lengths: Tensor, width: int | None) -> Tensor:
    """Concatenated ``(sum(target_lengths),)`` targets -> padded ``(N, S)``.

    In plain eager mode S is the longest target (``width``, read by the value checks), as in
    torch. Where values are not read (under a transform, while compiling, on meta tensors and
    FakeTensors, with the value checks off) S is the static bound ``targets.numel()``: more
    padded states, the same loss (padding never feeds the states a target uses).
    """
    if width is None:
        width = targets.numel()
    n = target_lengths.shape[0]
    if targets.numel() == 0:
        return targets.new_zeros((n, width))
    starts = target_lengths.cumsum(0) - target_lengths
    index = starts.unsqueeze(1) + torch.arange(width, device=targets.device)
    index = index.clamp_max(targets.numel() - 1).reshape(-1)
    return targets.gather(0, index).reshape(n, width)


def _has_nan(log_probs: Tensor, input_lengths: Tensor) -> Tensor:
    """``(N,)``: whether a sample's frames (``t < input_lengths``) hold a NaN in any class.

    The recursion reads only the target's classes; a NaN elsewhere in a used frame is a bug
    the user needs to see, so it shows in that sample's loss (torch shows only a NaN it reads).
    One pass over ``log_probs``; frames past the input length are padding and are not read.
    """
    frames = torch.arange(log_probs.shape[0], device=log_probs.device).unsqueeze(1)
    # the largest value of a frame is NaN exactly where one of its values is (amax keeps NaN,
    # and +-inf do not make one): one reduction, 3x faster than isnan().any(2) at (200, 64, 50)
    return (log_probs.detach().amax(2).isnan() & (frames < input_lengths)).any(0)


def _ctc_config(*, reduction: str = "mean", blank: int = 0) -> None:
    """ctc_loss's config check (``blank``'s range needs ``log_probs`` and is checked there)."""
    check_reduction("ctc_loss", reduction)
    check_index("ctc_loss", blank=blank)


@follows_autocast("float32")
@checks_config(_ctc_config)
def ctc_loss(
    log_probs: Tensor,
    targets: Tensor,
    input_lengths: Tensor | Sequence[int],
    target_lengths: Tensor | Sequence[int],
    blank: int = 0,
    reduction: Reduction = "mean",
    zero_infinity: bool = False,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Connectionist temporal classification loss: -log-likelihood of a label sequence.

    For sequence models whose output frames are not aligned with their targets (speech,
    handwriting): it sums over every alignment of the target to the ``T`` frames, with a blank
    class between labels. Takes what :func:`torch.nn.functional.ctc_loss` takes and gives the same
    values; its gradient with respect to ``log_probs`` is the true derivative (torch's differs by
    ``exp(log_probs)`` and is right only through a ``log_softmax``). Forward: the log-space alpha
    recursion over the extended labels, vectorised over batch and states, looping over frames.
    Backward: hand-written alpha-beta, saving only the inputs.

    .. math::
        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(y_n)} \prod_{t < T_n}
                 \exp\big(\text{log\_probs}[t, n, \pi_t]\big),
        \qquad
        \frac{\partial \ell_n}{\partial\, \text{log\_probs}[t, n, c]}
            = -\sum_{s:\, l'_s = c} \frac{\alpha_t(s)\, \beta_t(s)}{p(y_n)}

    where :math:`\mathcal{B}` removes repeats then blanks, :math:`l'` is the target with blanks
    interleaved, and :math:`\alpha, \beta` are the forward and backward variables. ``"mean"``
    divides each :math:`\ell_n` by its target length (at least 1), then averages over the batch
    (over the included samples, with ``where``).

    Args:
        log_probs: log-probabilities (usually a ``log_softmax`` over classes), shape
            ``(T, N, C)`` or ``(T, C)`` unbatched, floating dtype.
        targets: class indices, integer dtype: padded ``(N, S)``, or the targets concatenated
            ``(sum(target_lengths),)``; ``(S,)`` unbatched (padded: ``S >= target_length``).
            Within each target's length the values must be in ``[0, C)`` and not ``blank``;
            padding may hold anything (checked in eager mode only).
        input_lengths: frames used per sample, ``(N,)`` (``()`` unbatched), integer tensor or
            sequence of ints, values in ``[0, T]`` (checked in eager mode only).
        target_lengths: target length per sample, like ``input_lengths``, values in ``[0, S]``
            for padded targets, summing to ``targets.numel()`` for concatenated ones (checked in
            eager mode only).
        blank: the blank class, in ``[0, C)``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        zero_infinity: replace the infinite loss of an impossible alignment (too few frames
            for the target) by 0, with a zero gradient. Without it the loss is ``inf`` and the
            gradient 0 (torch's is NaN).
        where: optional bool mask of the samples, broadcastable to ``(N,)`` (``()``
            unbatched): only the ``True`` samples count; ``"mean"`` averages their
            length-normalised losses (a fully masked mean is 0). A masked sample is read as an
            empty target over zero frames before any arithmetic: its ``log_probs`` may hold
            ``inf`` or ``NaN``, and its lengths and (padded) targets anything, unchecked.
            Concatenated targets still need every ``target_lengths`` value (they say where
            each target starts), checked as without a mask; only a masked sample's entries go
            unchecked.

    Returns:
        ``(N,)`` (``()`` unbatched) for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating ``log_probs``; non-integer targets or lengths.
        ValueError: wrong shapes; ``blank`` out of range; bad ``reduction``; lengths out of
            range or blank inside a target (eager mode); a ``where`` that does not broadcast
            to the loss.
        IndexError: a target class out of range (eager mode).

    Examples:
        >>> log_probs = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]]).log()
        >>> funcloss.ctc_loss(log_probs, torch.tensor([1, 2]), [3], [2], reduction="sum")
        tensor(1.1940)

    References:
        Graves et al., "Connectionist Temporal Classification: Labelling Unsegmented Sequence
        Data with Recurrent Neural Networks", ICML 2006.
    """
    fn = "ctc_loss"
    check_floating(fn, log_probs=log_probs)
    _ctc_config(reduction=reduction, blank=blank)
    if log_probs.dim() not in (2, 3):
        fail(
            ValueError,
            fn,
            "log_probs",
            "have shape (T, N, C) or (T, C)",
            shape_str(log_probs.shape),
        )
    if log_probs.numel() == 0:
        fail(ValueError, fn, "log_probs", "be non-empty", shape_str(log_probs.shape))
    num_frames, num_classes = log_probs.shape[0], log_probs.shape[-1]
    if not 0 <= blank < num_classes:
        fail(ValueError, fn, "blank", f"be a class index in [0, {num_classes})", blank)
    check_integer(fn, targets=targets)
    _check_targets_shape(fn, targets, log_probs)
    batched = log_probs.dim() == 3
    batch = log_probs.shape[1] if batched else None
    input_lengths = _lengths(fn, "input_lengths", input_lengths, batch, log_probs.device)
    target_lengths = _lengths(fn, "target_lengths", target_lengths, batch, log_probs.device)
    if not batched:
        log_probs, targets = log_probs.unsqueeze(1), targets.reshape(1, -1)
    # A masked sample becomes an empty target over zero frames (loss 0, no gradient), before
    # the checks read the lengths and before any arithmetic on its log_probs.
    sample = None
    if where is not None:
        check_where(fn, where, input_lengths.shape if batched else ())
        sample = where.expand(input_lengths.shape)
        input_lengths = masked(sample, input_lengths, 0)
        log_probs = masked(sample.unsqueeze(1), log_probs, 0.0)
        if targets.dim() == 2:
            target_lengths = masked(sample, target_lengths, 0)
    width = _read_lengths(
        fn, targets, input_lengths, target_lengths, num_frames, num_classes, blank, sample
    )
    targets = targets.long()
    if targets.dim() == 1:
        targets = _pad_concatenated(targets, target_lengths, width)
        if sample is not None:  # the real lengths placed the targets; now mask them
            target_lengths = masked(sample, target_lengths, 0)
    dtype = log_probs.dtype
    compute = torch.float32 if dtype in _HALF_DTYPES else dtype
    nll_args = (log_probs.to(compute), targets, input_lengths, target_lengths, blank)
    if _eager_step(*nll_args[:4]):
        loss = _EagerCTC.apply(*nll_args)
    else:
        loss = _ctc_nll(*nll_args)
    loss = torch.where(_has_nan(log_probs, input_lengths), float("nan"), loss)
    if zero_infinity:
        loss = torch.where(loss == float("inf"), 0.0, loss)
    if not batched:
        loss = loss.squeeze(0)
        target_lengths = target_lengths.squeeze(0)
    if reduction == "mean":  # torch's mean: of each loss divided by its target length
        loss = loss / target_lengths.clamp_min(1).to(loss.dtype)
    return reduce(loss, reduction, where=where).to(dtype)
