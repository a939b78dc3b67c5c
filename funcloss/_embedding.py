"""Embedding and ranking losses: margin_ranking, hinge_embedding, cosine_embedding, triplet.

Each is a plain torch composition, but for the cosine, which has a hand-written backward (see
``_cosine``) and an eager step. The hinges use ``clamp_min``, whose gradient at the kink is the
one torch's own losses give there (the hinge counts as active).
A mask (``where``) replaces the masked entries of the inputs before any arithmetic by fills at
which each loss and all its derivatives are finite (nonzero embeddings for the cosine, distinct
points for the triplet distances, whose norm is not differentiable at 0). The mask is checked
and applied in ``if where is not None`` blocks: nothing of it runs without one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    broadcast_pair,
    broadcast_shape,
    check_floating,
    check_label_dtype,
    check_number,
    check_positive,
    check_reduction,
    check_same_ndim,
    check_tensor,
    check_where,
    checks_config,
    eager_mode,
    eager_pair,
    fail,
    promoted_dtype,
    shape_str,
    value_reads_allowed,
)
from ._function import SlopeRule, SlopeStep, custom_backward
from ._modes import follows_autocast
from ._reduction import masked, reduce

# torch adds EPSILON = 1e-12 to both squared norms in cosine_embedding_loss; the constant is a C++
# float, so the value added is float32(1e-12), which this is exactly.
_COSINE_EPS = 9.999999960041972e-13

Distance = Callable[[Tensor, Tensor], Tensor]


# -- config ----------------------------------------------------------------------------------


def _margin_config(fn: str) -> Callable[..., None]:
    """The config check of a pair loss: its ``reduction`` and a real ``margin``."""

    def check(*, reduction: str = "mean", margin: float = 0.0) -> None:
        check_reduction(fn, reduction)
        check_number(fn, margin=margin)

    return check


_MARGIN_RANKING_CONFIG = _margin_config("margin_ranking_loss")
_HINGE_EMBEDDING_CONFIG = _margin_config("hinge_embedding_loss")
_COSINE_EMBEDDING_CONFIG = _margin_config("cosine_embedding_loss")


def _triplet_config(
    *, reduction: str = "mean", margin: float = 1.0, p: float = 2.0, eps: float = 1e-6
) -> None:
    """triplet_margin_loss's config check: positive ``margin`` and ``p``, a real ``eps``."""
    fn = "triplet_margin_loss"
    check_positive(fn, margin=margin, p=p)
    check_number(fn, eps=eps)
    check_reduction(fn, reduction)


def _triplet_distance_config(
    *,
    reduction: str = "mean",
    margin: float = 1.0,
    distance_function: Distance | None = None,
) -> None:
    """triplet_margin_with_distance_loss's config check: a callable (or no) distance, a
    positive ``margin``."""
    fn = "triplet_margin_with_distance_loss"
    if distance_function is not None and not callable(distance_function):
        fail(
            TypeError,
            fn,
            "distance_function",
            "be callable (x1, x2) -> distances, or None",
            type(distance_function).__name__,
        )
    check_positive(fn, margin=margin)
    check_reduction(fn, reduction)


# -- margin_ranking_loss ---------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_MARGIN_RANKING_CONFIG)
def margin_ranking_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0.0,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Hinge loss on the difference of two scores: rank ``input1`` above ``input2`` or below.

    For learning to rank from pairs: ``target = 1`` says the first item should score higher by
    at least ``margin``, ``target = -1`` the second.

    .. math::
        \ell = \max(0,\; -y\,(x_1 - x_2) + \text{margin})

    At the kink (:math:`-y (x_1 - x_2) + \text{margin} = 0`) the gradient is torch's: the hinge
    counts as active, :math:`\partial \ell / \partial x_1 = -y`.

    Args:
        input1: scores, shape ``(*)``, floating dtype.
        input2: scores, as many dimensions as ``input1``, broadcastable with it (as in torch:
            ``(N, 1)`` against ``(1, M)`` ranks every pair).
        target: ``1`` or ``-1`` (other values scale the difference), as many dimensions,
            broadcastable with the inputs, floating or integer dtype.
        margin: the required gap.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the broadcast shape of the three (the
            unreduced loss): only the ``True`` pairs count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of the three for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating inputs, a bool or complex target.
        ValueError: different numbers of dimensions or shapes that do not broadcast (as
            torch), bad ``reduction``, a ``where`` that does not broadcast to the loss.

    Examples:
        >>> funcloss.margin_ranking_loss(
        ...     torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0]),
        ...     margin=0.5, reduction="none")
        tensor([0.0000, 1.5000])

        Every pair of two score lists (``(N, 1)`` against ``(1, M)``; torch 2.13 gives the
        same):

        >>> first, second = torch.tensor([[2.0], [0.0]]), torch.tensor([[1.0, 3.0]])
        >>> funcloss.margin_ranking_loss(first, second, torch.ones(1, 2), reduction="none")
        tensor([[0., 1.],
                [1., 3.]])
    """
    fn = "margin_ranking_loss"
    check_tensor(fn, input1=input1, input2=input2)
    check_floating(fn, input1=input1, input2=input2)
    check_label_dtype(fn, target=target)
    check_same_ndim(fn, input1=input1, input2=input2, target=target)
    shape = broadcast_shape(fn, input1=input1, input2=input2, target=target)
    _MARGIN_RANKING_CONFIG(reduction=reduction, margin=margin)
    if where is not None:  # an integer fill keeps an integer target's dtype
        check_where(fn, where, shape)
        input1, input2, target = (masked(where, x, 0) for x in (input1, input2, target))
    loss = (margin - target * (input1 - input2)).clamp_min(0)
    return reduce(loss, reduction, where=where)


# -- hinge_embedding_loss --------------------------------------------------------------------
#
# The plain eager call with a scalar reduction takes `_HingeEmbeddingStep`: the composition's
# terms in a few in-place ops and a slope of -1, 0 and 1, which the backward scales in place
# (:class:`SlopeStep`), where autograd of the composition keeps masks and writes the gradient in
# several passes. It computes in the input's dtype, as the composition does: the terms are the
# composition's, and so are the value and the gradient, bit for bit.


def _hinge_embedding_fast(input: object, target: object, where: object, reduction: str) -> bool:
    """A plain eager CPU call, no mask, ``reduction`` "mean" or "sum", on plain tensors of one
    shape and one floating dtype whose target takes no gradient (:func:`eager_pair` tests the
    tensors and the mode)."""
    return (
        where is None
        and (reduction == "mean" or reduction == "sum")
        and eager_pair(input, target, _FLOATS)
    )


_FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


# The step from this many elements: below it the Function's fixed Python cost (a forward and a
# backward in Python) outweighs the passes it saves (at 64x10 the composition is the faster).
_HINGE_EMBEDDING_STEP_FROM = 2**16


class _HingeEmbeddingStep(SlopeStep):
    """The eager training step of hinge_embedding_loss (``config``: the reduction's divisor and
    the margin)."""


def _hinge_embedding_step(
    input: Tensor, target: Tensor, config: tuple[int, float]
) -> tuple[Tensor, Tensor, None]:
    """The composition's terms ``[y != 1] max(0, margin - x) + [y != -1] x`` and their slope
    ``[y != -1] - [y != 1] [margin - x >= 0]`` (clamp_min's derivative is 1 at the kink)."""
    divisor, margin = config
    pushed = torch.rsub(input, margin)
    positive = target == 1
    pull = target != -1
    active = torch.ge(pushed, 0).logical_and_(positive.logical_not())
    slope = pull.to(input.dtype).sub_(active.to(input.dtype))
    terms = pushed.clamp_min_(0).masked_fill_(positive, 0.0)
    terms.add_(torch.where(pull, input, 0.0))
    return (terms.sum() if divisor == 1 else terms.mean()), slope, None


def _hinge_embedding_scale(
    slope: Tensor, grad: Tensor, config: tuple[int, float], kept: None
) -> Tensor:
    return slope.mul_(grad if config[0] == 1 else grad / config[0])


def _hinge_embedding_gradient(
    input: Tensor, target: Tensor, grad: Tensor, config: tuple[int, float], kept: None
) -> Tensor:
    divisor, margin = config
    active = (target != 1) & (margin - input >= 0)
    slope = (target != -1).to(input.dtype) - active.to(input.dtype)
    return slope * (grad if divisor == 1 else grad / divisor)


_HINGE_EMBEDDING_RULE = SlopeRule(
    _hinge_embedding_step, _hinge_embedding_scale, _hinge_embedding_gradient
)


@follows_autocast("float32")
@checks_config(_HINGE_EMBEDDING_CONFIG)
def hinge_embedding_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 1.0,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Hinge loss on distances: pull similar pairs together, push dissimilar ones past a margin.

    ``input`` is usually a distance between two embeddings (e.g. an L1 distance); ``target``
    says whether the pair is similar (``1``) or dissimilar (``-1``).

    .. math::
        \ell = \begin{cases} x & y = 1 \\ \max(0, \text{margin} - x) & y = -1 \end{cases}

    As in torch, a target that is neither ``1`` nor ``-1`` gets both terms. At the kink
    (:math:`x = \text{margin}`, :math:`y = -1`) the gradient is torch's: :math:`-1`.

    Args:
        input: distances, shape ``(*)``, floating dtype.
        target: ``1`` or ``-1``, broadcastable with ``input`` (as in torch), floating or
            integer dtype.
        margin: how far dissimilar pairs are pushed.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the broadcast shape of ``input`` and
            ``target`` (the unreduced loss): only the ``True`` elements count (``"mean"``
            divides by their number).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"``, else a 0-dim tensor,
        of the promoted dtype of ``input`` and a floating ``target`` (torch's: ``input``'s).

    Raises:
        TypeError: non-floating input, a bool or complex target.
        ValueError: shapes that do not broadcast, bad ``reduction``, a ``where`` that does not
            broadcast to the loss.

    Examples:
        >>> funcloss.hinge_embedding_loss(
        ...     torch.tensor([0.3, 0.3, 2.0]), torch.tensor([1, -1, -1]), reduction="none")
        tensor([0.3000, 0.7000, 0.0000])
    """
    fn = "hinge_embedding_loss"
    # a real margin (the config check runs after the argument checks, as torch reports them)
    if (
        type(margin) in (float, int)
        and margin == margin
        and _hinge_embedding_fast(input, target, where, reduction)
    ):
        if input.numel() < _HINGE_EMBEDDING_STEP_FROM:  # every check holds: the composition
            loss = _hinge_embedding(input, target, margin)
            return loss.sum() if reduction == "sum" else loss.mean()
        config = (input.numel() if reduction == "mean" else 1, margin)
        return _HingeEmbeddingStep.run(_HINGE_EMBEDDING_RULE, input, target, config)
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    check_label_dtype(fn, target=target)
    shape = broadcast_shape(fn, input=input, target=target)
    _HINGE_EMBEDDING_CONFIG(reduction=reduction, margin=margin)
    input = input.to(promoted_dtype(input, target))
    if where is not None:  # the target is only compared, so only the input needs a fill
        check_where(fn, where, shape)
        input = masked(where, input)
    return reduce(_hinge_embedding(input, target, margin), reduction, where=where)


def _hinge_embedding(input: Tensor, target: Tensor, margin: float) -> Tensor:
    pushed = torch.where(target != 1, (margin - input).clamp_min(0), 0.0)
    pulled = torch.where(target != -1, input, 0.0)
    return pushed + pulled


# -- rescaling -----------------------------------------------------------------------------
#
# The cosine and the triplet distances are homogeneous: cos(x1 / s1, x2 / s2) = cos(x1, x2) and
# d(a / s, p / s) = d(a, p) / s. Each row (triplet) is divided by a power of two s near its
# largest |coordinate| (at least 1), before squares and differences can overflow (at 3e38 in
# float32, at 256 in float16). A power of two divides exactly: wherever the plain formula does
# not overflow, the scaled one gives the same bits. An infinite coordinate reads as
# _UNIT_BOUND times the dtype's largest power of two, every finite one of its row as itself:
# the limit as that coordinate grows (torch: inf / inf = nan). The scale is a constant
# (detached), so every derivative is the exact one of the unscaled formula.

# Scaled coordinates are below 2 in size; an infinite one is clamped to this.
_UNIT_BOUND = 4.0


def _power_of_two(peak: Tensor) -> Tensor:
    """``2^floor(log2 peak)`` within ``[1, largest power of two]`` (NaN stays NaN)."""
    top = math.frexp(torch.finfo(peak.dtype).max)[1] - 1
    return torch.exp2(torch.log2(peak).floor().clamp(0, top))


def _peak(x: Tensor) -> Tensor:
    """The largest |coordinate| of each row (last dim kept), detached: a constant scale."""
    return x.detach().abs().amax(-1, keepdim=True)


def _scaled(x: Tensor, scale: Tensor) -> Tensor:
    return (x / scale).clamp(-_UNIT_BOUND, _UNIT_BOUND)


# -- cosine_embedding_loss -------------------------------------------------------------------


def _cosine_terms(input1: Tensor, input2: Tensor) -> tuple[Tensor, ...]:
    """The rows scaled, their scales ``(..., 1)``, the dot product and the two squared norms
    plus torch's epsilon, all in scaled units (``(...)``)."""
    scale1, scale2 = _power_of_two(_peak(input1)), _power_of_two(_peak(input2))
    unit1, unit2 = _scaled(input1, scale1), _scaled(input2, scale2)
    dot = (unit1 * unit2).sum(-1)
    # eps / s^2, divided twice: s * s overflows for the largest scales (eps / s^2 is then 0)
    squared1 = (unit1 * unit1).sum(-1) + _COSINE_EPS / scale1.squeeze(-1) / scale1.squeeze(-1)
    squared2 = (unit2 * unit2).sum(-1) + _COSINE_EPS / scale2.squeeze(-1) / scale2.squeeze(-1)
    return unit1, unit2, scale1, scale2, dot, squared1, squared2


def _scaled_cosine(input1: Tensor, input2: Tensor) -> Tensor:
    """torch's formula ``x1 . x2 / sqrt((|x1|^2 + eps) (|x2|^2 + eps))`` along the last dim, on
    rows of one shape scaled by powers of two (the epsilon scaled with them)."""
    _, _, _, _, dot, squared1, squared2 = _cosine_terms(input1, input2)
    return dot / (squared1 * squared2).sqrt()


# A custom backward: autograd of the composition replays its (N, D) products, whose backward
# multiplies by stride-0 expanded gradients (slow kernels on the CPU); the analytic gradient is
# two fused passes per input from the recomputed scaled rows. Only the inputs are saved, and
# the backward is differentiable, so double backward is exact.
_cosine = custom_backward(_scaled_cosine)


def _cosine_gradients(
    grad: Tensor | float, input1: Tensor, input2: Tensor
) -> tuple[Tensor, Tensor]:
    """``grad`` times d cos / d input1 and d cos / d input2: with u = x / s, q = |u|^2 + eps /
    s^2, r = (q1 q2)^(-1/2), d cos / d x1 = (r u2 - cos u1 / q1) / s1 (and symmetrically)."""
    unit1, unit2, scale1, scale2, dot, squared1, squared2 = _cosine_terms(input1, input2)
    inverse = (squared1 * squared2).rsqrt()
    along = grad * inverse
    across = along * dot  # grad * cos
    along = along.unsqueeze(-1)
    across1, across2 = (across / squared1).unsqueeze(-1), (across / squared2).unsqueeze(-1)
    grad1 = (along * unit2 - across1 * unit1) / scale1
    grad2 = (along * unit1 - across2 * unit2) / scale2
    return grad1, grad2


@_cosine.backward
def _cosine_backward(grad: Tensor, input1: Tensor, input2: Tensor) -> tuple[Tensor, Tensor]:
    return _cosine_gradients(grad, input1, input2)


@_cosine.jvp
def _cosine_jvp(input1_t: Tensor, input2_t: Tensor, input1: Tensor, input2: Tensor) -> Tensor:
    grad1, grad2 = _cosine_gradients(1.0, input1, input2)
    return (grad1 * input1_t).sum(-1) + (grad2 * input2_t).sum(-1)


# -- the eager step: plain eager calls on coordinates where no scale is needed (every |x| at most
# the largest float's fourth root over 2 sqrt(D), where (|x1|^2 |x2|^2) cannot overflow): the
# scaled formula's bits are the plain one's, so the scales are skipped, one read of four
# scalars decides; the (N,) statistics are kept for the backward (two passes per input).


class _EagerCosine(torch.autograd.Function):
    """The plain cosine of two same-shape inputs, eager only (``_eager_cosine``). Its ``ctx``
    statistics are intermediates, which double backward cannot use: with ``create_graph`` the
    backward is the differentiable scaled one."""

    @staticmethod
    def forward(ctx: Any, input1: Tensor, input2: Tensor) -> Tensor:  # type: ignore[override]
        product = input1 * input2
        dot = product.sum(-1)
        squared1 = torch.mul(input1, input1, out=product).sum(-1).add_(_COSINE_EPS)
        squared2 = torch.mul(input2, input2, out=product).sum(-1).add_(_COSINE_EPS)
        ctx.save_for_backward(input1, input2)
        ctx.stats = dot, squared1, squared2
        return dot / (squared1 * squared2).sqrt()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        input1, input2 = ctx.saved_tensors
        stats = ctx.stats  # (N,) each: kept, so a second backward gives the same bits
        if torch.is_grad_enabled():
            return _cosine_gradients(grad, input1, input2)
        dot, squared1, squared2 = stats
        along = grad * (squared1 * squared2).rsqrt()
        across = along * dot  # grad * cos
        along = along.unsqueeze(-1)
        across1, across2 = (across / squared1).unsqueeze(-1), (across / squared2).unsqueeze(-1)
        grad1 = torch.mul(input2, along).addcmul_(input1, across1, value=-1)
        grad2 = torch.mul(input1, along).addcmul_(input2, across2, value=-1)
        return grad1, grad2


def _eager_cosine(input1: Tensor, input2: Tensor) -> bool:
    """A plain eager CPU call on plain tensors (:func:`eager_mode`), value
    reads allowed, and every coordinate small enough that no row needs a scale."""
    if not (
        type(input1) is Tensor
        and type(input2) is Tensor
        and input1.is_cpu
        and input2.is_cpu
        and value_reads_allowed()
        and eager_mode(input1, input2)
    ):
        return False
    safe = torch.finfo(input1.dtype).max ** 0.25 / (2 * math.sqrt(input1.shape[-1]))
    with torch.no_grad():
        low1, high1 = torch.aminmax(input1)
        low2, high2 = torch.aminmax(input2)
        largest = torch.stack((high1, -low1, high2, -low2)).amax()
    # one host read; a NaN fails the comparison: the scaled path, where it shows
    return float(largest) <= safe


def _cosine_similarity(input1: Tensor, input2: Tensor) -> Tensor:
    """torch's cosine (see :func:`_scaled_cosine`) of two broadcastable ``(..., D)`` inputs."""
    if (
        input1.shape[-1] != input2.shape[-1]
        or input1.shape[-1] == 0
        or input1.numel() == 0
        or input2.numel() == 0
    ):
        # torch's rule for a (., 1) operand broadcast along the coordinates: each squared norm
        # over its own coordinates (not the broadcast ones); no coordinates (the dot is 0, the
        # norms epsilon) or no rows: the plain formula
        dot = (input1 * input2).sum(-1)
        squared1 = (input1 * input1).sum(-1) + _COSINE_EPS
        squared2 = (input2 * input2).sum(-1) + _COSINE_EPS
        return dot / (squared1 * squared2).sqrt()
    if input1.shape != input2.shape:
        shape = torch.broadcast_shapes(input1.shape, input2.shape)
        input1, input2 = input1.expand(shape), input2.expand(shape)
    if _eager_cosine(input1, input2):
        return _EagerCosine.apply(input1, input2)
    return _cosine(input1, input2)


@follows_autocast("float32")
@checks_config(_COSINE_EMBEDDING_CONFIG)
def cosine_embedding_loss(
    input1: Tensor,
    input2: Tensor,
    target: Tensor,
    margin: float = 0.0,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Cosine loss on pairs of embeddings: align similar pairs, separate dissimilar ones.

    For metric learning and semi-supervised embeddings where the direction matters, not the
    length.

    .. math::
        \ell = \begin{cases} 1 - \cos(x_1, x_2) & y = 1 \\
               \max(0, \cos(x_1, x_2) - \text{margin}) & y = -1 \end{cases}
        \qquad \cos(x_1, x_2) = \frac{x_1 \cdot x_2}
               {\sqrt{(\lVert x_1 \rVert^2 + \epsilon)(\lVert x_2 \rVert^2 + \epsilon)}}

    with torch's :math:`\epsilon = 10^{-12}` (as float32); other target values give 0. At the
    kink (:math:`\cos = \text{margin}`, :math:`y = -1`) the gradient is torch's (active hinge).

    Args:
        input1: embeddings, shape ``(N, D)`` with a target ``(N,)``, or ``(D,)`` with a 0-dim
            target; floating dtype.
        input2: as many dimensions as ``input1``, broadcastable with it (as in torch: a
            ``(1, D)`` operand is compared with every row of an ``(N, D)`` one).
        target: ``1`` or ``-1``, shape ``(N,)`` (or ``(1,)``, broadcast) or ``()``, floating
            or integer dtype.
        margin: cosine above which dissimilar pairs are penalised, usually in ``[-1, 1]``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the pairs, broadcastable to the unreduced loss ``(N,)``
            (``()`` unbatched): only the ``True`` pairs count (``"mean"`` divides by their
            number). Masked rows of both inputs are read as all-ones embeddings.

    Returns:
        The broadcast shape of ``target`` and the inputs' rows for ``"none"``, else a 0-dim
        tensor, of the promoted dtype of the inputs and a floating ``target`` (torch's: the
        inputs').

    Raises:
        TypeError: non-floating inputs, a bool or complex target.
        ValueError: a target that is not 0-dim or 1-dim, inputs of the wrong number of
            dimensions for it (as torch), shapes that do not broadcast, bad ``reduction``, a
            ``where`` that does not broadcast to the loss.

    Examples:
        >>> x1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> x2 = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
        >>> funcloss.cosine_embedding_loss(x1, x2, torch.tensor([1, -1]), reduction="none")
        tensor([0.2929, 0.7071])
    """
    fn = "cosine_embedding_loss"
    check_tensor(fn, input1=input1, input2=input2)
    check_floating(fn, input1=input1, input2=input2)
    check_label_dtype(fn, target=target)
    if target.dim() > 1:
        fail(ValueError, fn, "target", "have shape (N,) or ()", shape_str(target.shape))
    wanted = "(N, D) for a target of shape (N,)" if target.dim() == 1 else "(D,) for a 0-dim target"
    for name, value in (("input1", input1), ("input2", input2)):
        if value.dim() != target.dim() + 1:
            fail(ValueError, fn, name, f"have shape {wanted}", shape_str(value.shape))
    rows = broadcast_shape(fn, input1=input1, input2=input2)[:-1]
    shape = broadcast_pair(rows, target.shape)
    if shape is None:
        rule = f"be broadcastable with the inputs' {rows[0]} rows"
        fail(ValueError, fn, "target", rule, shape_str(target.shape))
    _COSINE_EMBEDDING_CONFIG(reduction=reduction, margin=margin)
    dtype = promoted_dtype(input1, input2, target)
    input1, input2 = input1.to(dtype), input2.to(dtype)
    if where is not None:
        check_where(fn, where, shape)
        # Ones: a nonzero embedding, where the cosine is smooth (at 0 torch's epsilon makes
        # its derivatives huge). The target is only compared, so it needs no fill.
        row = where.unsqueeze(-1)
        input1, input2 = masked(row, input1, 1.0), masked(row, input2, 1.0)
    cos = _cosine_similarity(input1, input2)
    similar = torch.where(target == 1, 1 - cos, 0.0)
    dissimilar = torch.where(target == -1, (cos - margin).clamp_min(0), 0.0)
    return reduce(similar + dissimilar, reduction, where=where)


# -- triplet losses --------------------------------------------------------------------------


def _pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6) -> Tensor:
    """torch's ``pairwise_distance``: the ``p``-norm of ``x1 - x2 + eps`` along the last dim.

    ``eps`` keeps the norm away from 0, where its derivative is undefined (torch's, and
    ``vector_norm``'s, subgradient there is 0).
    """
    return torch.linalg.vector_norm(x1 - x2 + eps, ord=p, dim=-1)


def _check_triplet(
    fn: str,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    where: Tensor | None,
    broadcast: bool = True,
) -> None:
    """Floating triplets with one number of dimensions (torch's rule); with ``broadcast``
    (the default distance), shapes that broadcast together; a mask that broadcasts to their
    batch shape (the shapes without the last dimension, broadcast together)."""
    check_tensor(fn, anchor=anchor, positive=positive, negative=negative)
    check_floating(fn, anchor=anchor, positive=positive, negative=negative)
    check_same_ndim(fn, anchor=anchor, positive=positive, negative=negative)
    if broadcast:
        shape = broadcast_shape(fn, anchor=anchor, positive=positive, negative=negative)
        if where is not None:
            check_where(fn, where, shape[:-1])
    elif where is not None:
        rows = broadcast_pair(anchor.shape[:-1], positive.shape[:-1])
        rows = None if rows is None else broadcast_pair(rows, negative.shape[:-1])
        if rows is None:
            shapes = ", ".join(shape_str(x.shape) for x in (anchor, positive, negative))
            rule = "come with inputs whose batch shapes (all but the last dimension) broadcast"
            fail(ValueError, fn, "where", rule, f"inputs of shapes {shapes}")
        check_where(fn, where, rows)


def _limit_gap(
    anchor: Tensor, positive: Tensor, negative: Tensor, p: float, eps: float, infinite: Tensor
) -> Tensor:
    """The limit of d(a, p) - d(a, n) as the ``infinite`` coordinates of the anchor grow (each
    reads as sign times one M, M -> inf; positive and negative finite there). With x = a - p +
    eps and y = a - n + eps, x - y = n - p, so d(x) - d(y) tends to the norm's directional
    derivative at the sign pattern s (m of its entries nonzero) in the direction n - p: for
    p > 1, s . (n - p) / m^(1 - 1/p); for p = 1 the finite coordinates add their |x| - |y|;
    for p = inf, max over the pattern of s (eps - p), minus the same of n (one coordinate: s (n
    - p) for every p). The infinite coordinates enter only through ``where``: their derivatives
    are 0, the limit's."""
    sign = torch.where(infinite, anchor.sign(), 0.0)
    finite = torch.where(infinite, 0.0, anchor)
    if p == math.inf:
        lowest = torch.finfo(sign.dtype).min
        positive_top = torch.where(infinite, sign * (eps - positive), lowest).amax(-1)
        negative_top = torch.where(infinite, sign * (eps - negative), lowest).amax(-1)
        return positive_top - negative_top
    along = (sign * torch.where(infinite, negative - positive, 0.0)).sum(-1)
    count = infinite.sum(-1).clamp_min(1).to(along.dtype)
    gap = along / count ** (1 - 1 / p)
    if p == 1:
        across = (finite - positive + eps).abs() - (finite - negative + eps).abs()
        gap = gap + torch.where(infinite, 0.0, across).sum(-1)
    return gap


# A row whose larger distance exceeds this many times margin + |gap| loses the gap to the
# distances' rounding (a few float32 ulps of them: about 2**-16 of margin + |gap| at the
# bound), and gets the gap from the coordinates instead (``_exact_gap``); below it, torch's
# formula and bits (unnormalised 1000-d embeddings of randn, distances near 45, stay there).
_CANCELLING = 2.0**6


def _cancelling(
    positive_distance: Tensor, negative_distance: Tensor, margin: Tensor | float
) -> Tensor:
    """The rows whose gap ``d(a, p) - d(a, n)`` the distances' difference would round away."""
    gap = (positive_distance - negative_distance).abs()
    return torch.maximum(positive_distance, negative_distance) > _CANCELLING * (margin + gap)


def _exact_gap(
    points: Sequence[Tensor],
    units: Sequence[Tensor],
    eps: float,
    scale: Tensor,
    norms: Sequence[Tensor],
    p: float,
) -> Tensor:
    """``||x||_p - ||y||_p`` for ``x = a - p + eps``, ``y = a - n + eps`` (``p >= 1``) without
    the cancellation of the two norms: from ``delta = x - y = n - p``, which the anchor does not
    round. ``points`` are the three row tensors, ``units`` the same over the rows' ``scale``
    (``(..., 1)``), ``norms`` the two norms of the units. A row of zeros gives 0.

    Where x_k and y_k share a sign and ``|y_k| > |delta_k|``, ``|x_k|^p - |y_k|^p`` is
    ``|y_k|^p expm1(p log1p(r_k))`` with ``r_k = sign(y_k) delta_k / |y_k|`` (in the points'
    own scale: no subnormal divisor), each term to the rounding of its own size; their sum S is
    ``||x||^p - ||y||^p``, and with ``b`` the larger norm the gap is
    ``sign(S) b (-expm1(log1p(-|S| / b^p) / p))``. The max norm (``p = inf``) compares the
    largest coordinates, ``|x_i| - |y_j| = (|x_i| - |y_i|) + (|y_i| - |y_j|)``, the second from
    the anchor's ``sign(y_i) a_i - sign(y_j) a_j`` (exact where the two are close)."""
    anchor, positive, negative = points
    x = anchor - positive + eps
    y = anchor - negative + eps
    delta = negative - positive
    sign = y.sign()
    same = (x * y) > 0
    if p == math.inf:
        i = x.abs().argmax(-1, keepdim=True)
        j = y.abs().argmax(-1, keepdim=True)

        def at(t: Tensor, k: Tensor) -> Tensor:
            return t.gather(-1, k).squeeze(-1)

        sign_i, sign_j = at(sign, i), at(sign, j)
        first = torch.where(at(same, i), sign_i * at(delta, i), at(x, i).abs() - at(y, i).abs())
        # |y_i| - |y_j| with y = a - n + eps
        second = (sign_i * at(anchor, i) - sign_j * at(anchor, j)) - (
            sign_i * at(negative, i) - sign_j * at(negative, j)
        )
        second = second + (sign_i - sign_j) * eps
        return first + torch.where(i.squeeze(-1) == j.squeeze(-1), 0.0, second)
    unit_x = (units[0] - units[1] + eps / scale).clamp(-_UNIT_BOUND, _UNIT_BOUND)
    unit_y = (units[0] - units[2] + eps / scale).clamp(-_UNIT_BOUND, _UNIT_BOUND)
    ratio_terms = same & (y.abs() > delta.abs())
    ratio = sign * delta / torch.where(ratio_terms, y.abs(), 1.0)
    size = unit_y.abs()
    terms = torch.where(
        ratio_terms,
        size.pow(p) * torch.expm1(p * torch.log1p(torch.where(ratio_terms, ratio, 0.0))),
        unit_x.abs().pow(p) - size.pow(p),
    )
    total = terms.sum(-1)
    larger = torch.maximum(*norms)
    base = torch.where(larger > 0, larger, 1.0)
    share = (total.abs() / base.pow(p)).clamp(max=1.0)
    return total.sign() * base * -torch.expm1(torch.log1p(-share) / p) * scale.squeeze(-1)


def _scaled_triplet(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float,
    p: float,
    eps: float,
    swap: bool,
) -> Tensor:
    """The unreduced triplet hinge of torch's ``pairwise_distance``, on triplets scaled by one
    power of two each (see "rescaling"): the plain formula where the distances fit (the same
    bits, the scale being exact), the difference of the scaled norms where a distance
    overflows, the limit (``_limit_gap``) where the anchor has infinite coordinates."""
    peak = torch.maximum(torch.maximum(_peak(anchor), _peak(positive)), _peak(negative))
    scale = _power_of_two(peak)
    units = [x / scale for x in (anchor, positive, negative)]
    shift = eps / scale

    def norm(x1: Tensor, x2: Tensor) -> Tensor:
        difference = (x1 - x2 + shift).clamp(-_UNIT_BOUND, _UNIT_BOUND)
        return torch.linalg.vector_norm(difference, ord=p, dim=-1)

    rows = scale.squeeze(-1)
    unit_positive, unit_negative = norm(units[0], units[1]), norm(units[0], units[2])
    positive_distance, negative_distance = unit_positive * rows, unit_negative * rows
    gap = (unit_positive - unit_negative) * rows
    if p >= 1:  # the gap from the coordinates where the norms' difference rounds it away
        finite = unit_positive.isfinite() & unit_negative.isfinite()
        for x in (anchor, positive, negative):
            finite = finite & x.isfinite().all(-1)
        severe = finite & _cancelling(unit_positive, unit_negative, margin / rows)
        # in float64: the gradient's factors (the scale, up to 2^127, times ratios of the
        # points' sizes) are out of float32's range where their product is not
        keep = severe.unsqueeze(-1)

        def wide(x: Tensor, where: Tensor = keep) -> Tensor:
            return torch.where(where, x, 0.0).double()

        points = [wide(x) for x in (anchor, positive, negative)]
        norms = [wide(d, severe) for d in (unit_positive, unit_negative)]
        wide_scale = scale.double()
        wide_units = [x / wide_scale for x in points]
        exact = _exact_gap(points, wide_units, eps, wide_scale, norms, p)
        gap = torch.where(severe, exact.to(gap.dtype), gap)
    else:
        severe = torch.zeros_like(gap, dtype=torch.bool)
    infinite = anchor.isinf() & positive.isfinite() & negative.isfinite()
    limit = _limit_gap(anchor, positive, negative, p, eps, infinite)
    if swap:
        unit_swapped = norm(units[1], units[2])
        negative_distance = torch.minimum(negative_distance, unit_swapped * rows)
        swapped_gap = (unit_positive - unit_swapped) * rows
        gap = torch.maximum(gap, swapped_gap)
        # at an infinite anchor coordinate d(p, n) stays finite: the gap grows without bound
        limit = torch.maximum(limit, swapped_gap)
    plain = margin + positive_distance - negative_distance
    robust = margin + torch.where(infinite.any(-1), limit, gap)
    fits = positive_distance.isfinite() & negative_distance.isfinite() & ~severe
    return torch.where(fits, plain, robust).clamp_min(0)


def _plain_eager(*tensors: Tensor) -> bool:
    """A plain eager call on plain tensors with values (:func:`eager_mode`, no meta tensors):
    the plain formula may run and be checked afterwards with one host read."""
    return (
        not torch.compiler.is_compiling()  # first: dynamo cannot trace the rest
        and all(type(x) is Tensor and not x.is_meta for x in tensors)
        and value_reads_allowed()
        and eager_mode(*tensors)
    )


def _mask_triplet(
    where: Tensor | None,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    fill: float,
    step: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Masked rows read the points ``fill``, ``fill + step`` and ``fill + 2 step``."""
    if where is None:
        return anchor, positive, negative
    row = where.unsqueeze(-1)
    return (
        masked(row, anchor, fill),
        masked(row, positive, fill + step),
        masked(row, negative, fill + 2 * step),
    )


def _hinge(
    distance: Distance,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float,
    swap: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The unreduced triplet hinge and the two distances it subtracts."""
    positive_distance = distance(anchor, positive)
    negative_distance = distance(anchor, negative)
    if swap:
        # torch.minimum splits the gradient evenly at a tie, as torch's triplet losses do.
        negative_distance = torch.minimum(negative_distance, distance(positive, negative))
    loss = (margin + positive_distance - negative_distance).clamp_min(0)
    return loss, positive_distance, negative_distance


def _triplet(
    distance: Distance,
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float,
    swap: bool,
    reduction: Reduction,
    where: Tensor | None,
    fill: float,
    step: float,
) -> Tensor:
    """The triplet hinge of any distance; masked rows as ``_mask_triplet``."""
    anchor, positive, negative = _mask_triplet(where, anchor, positive, negative, fill, step)
    loss, _, _ = _hinge(distance, anchor, positive, negative, margin, swap)
    return reduce(loss, reduction, where=where)


def _pairwise_triplet(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float,
    p: float,
    eps: float,
    swap: bool,
    reduction: Reduction,
    where: Tensor | None,
    fill: float,
    step: float,
) -> Tensor:
    """The triplet hinge of torch's ``pairwise_distance``, right where distances overflow and at
    infinite anchor coordinates (``_scaled_triplet``). A plain eager call runs the plain
    formula and keeps it when every distance it subtracts fits (one host read)."""
    anchor, positive, negative = _mask_triplet(where, anchor, positive, negative, fill, step)
    empty = anchor.shape[-1] == 0 or positive.shape[-1] == 0 or negative.shape[-1] == 0
    if empty or _plain_eager(anchor, positive, negative):

        def distance(x1: Tensor, x2: Tensor) -> Tensor:
            return _pairwise_distance(x1, x2, p, eps)

        loss, positive_distance, negative_distance = _hinge(
            distance, anchor, positive, negative, margin, swap
        )
        if empty or loss.numel() == 0:  # no coordinates or no triplets: nothing to scale
            return reduce(loss, reduction, where=where)
        with torch.no_grad():
            larger = torch.maximum(positive_distance, negative_distance)
            if p < 1:
                largest = float(larger.amax())  # the one host read
            else:
                # a row whose gap the distances round away (_cancelling: the larger distance
                # above 64 (margin + |gap|)) takes the scaled path, as one that overflows: the
                # largest distance and the largest excess over 64 |gap| in the one host read
                gap = (positive_distance - negative_distance).abs_()
                excess = torch.sub(larger, gap, alpha=_CANCELLING).amax()
                largest, worst = torch.stack([larger.amax(), excess]).tolist()
                if worst > _CANCELLING * margin:
                    largest = math.inf
        # the norm's backward divides by d^(p - 1) (computed in the dtype, where a half-
        # precision forward accumulates in float32): it must fit too; a NaN fails the test
        power = 1.0 if p == math.inf else max(p - 1, 1.0)
        if largest <= torch.finfo(loss.dtype).max ** (1 / power):
            return reduce(loss, reduction, where=where)
    loss = _scaled_triplet(anchor, positive, negative, margin, p, eps, swap)
    return reduce(loss, reduction, where=where)


@follows_autocast("float32")
@checks_config(_triplet_config)
def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 1.0,
    p: float = 2.0,
    eps: float = 1e-6,
    swap: bool = False,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Triplet loss: the anchor must be closer to the positive than to the negative, by a margin.

    For metric learning (face recognition, retrieval) on triplets of embeddings.

    .. math::
        \ell = \max(0,\; d(a, p) - d(a, n) + \text{margin}), \qquad
        d(x, y) = \lVert x - y + \epsilon \rVert_p

    (``eps`` is added to the difference before the norm, as torch's ``pairwise_distance`` does).
    With ``swap``, :math:`d(a, n)` is replaced by :math:`\min(d(a, n), d(p, n))` (Balntas et al.,
    2016). At the kink the gradient is torch's (active hinge); at a swap tie it is split evenly.
    Where the distances dwarf ``margin + |d(a, p) - d(a, n)|`` (64 times), the gap comes from
    the coordinates rather than the difference of two rounded distances.

    Args:
        anchor: embeddings, shape ``(N, D)`` or ``(D,)`` (any ``(*, D)``), floating dtype.
        positive: as many dimensions as ``anchor``, broadcastable with it (as in torch: a
            ``(1, D)`` operand is compared with every row).
        negative: likewise.
        margin: the required gap, must be positive.
        p: the norm's order, must be positive (``float("inf")`` for the max norm).
        eps: added to each difference before the norm.
        swap: use the distance swap.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the triplets, broadcastable to the unreduced loss (the
            broadcast shape without the last dimension: ``(N,)``, ``()`` unbatched): only the
            ``True`` triplets count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of the three without the last dimension for ``"none"``, else a
        0-dim tensor.

    Raises:
        TypeError: non-floating inputs.
        ValueError: different numbers of dimensions or shapes that do not broadcast (as
            torch), a non-positive ``margin`` or ``p``, bad ``reduction``, a ``where`` that
            does not broadcast to the loss.

    Examples:
        >>> anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
        >>> positive = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> negative = torch.tensor([[3.0, 0.0], [0.0, 1.5]])
        >>> funcloss.triplet_margin_loss(anchor, positive, negative, eps=0.0, reduction="none")
        tensor([0.0000, 0.5000])

    References:
        Balntas et al., "Learning local feature descriptors with triplets and shallow
        convolutional neural networks", BMVC 2016.
    """
    fn = "triplet_margin_loss"
    _check_triplet(fn, anchor, positive, negative, where)
    _triplet_config(reduction=reduction, margin=margin, p=p, eps=eps)

    # Masked rows: the points 0, s, 2 s with s = 2 |eps| + 1, whose differences plus eps are
    # nowhere 0 (at least |eps| + 1 in size), where the p-norm and its derivatives are finite.
    step = 2 * abs(eps) + 1
    return _pairwise_triplet(
        anchor, positive, negative, margin, p, eps, swap, reduction, where, 0.0, step
    )


@follows_autocast("promoted")
@checks_config(_triplet_distance_config)
def triplet_margin_with_distance_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    *,
    distance_function: Callable[[Tensor, Tensor], Tensor] | None = None,
    margin: float = 1.0,
    swap: bool = False,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Triplet loss with any distance function (cosine distance, a learned metric, ...).

    .. math::
        \ell = \max(0,\; d(a, p) - d(a, n) + \text{margin})

    With ``swap``, :math:`d(a, n)` is replaced by :math:`\min(d(a, n), d(p, n))`. The loss
    composes with torch.func as far as ``distance_function`` does: it must be made of torch ops
    and take the tensors it is given (no tensor captured from outside for differentiation).

    Args:
        anchor: embeddings, shape ``(N, D)`` or ``(D,)`` (any shape ``distance_function``
            takes), floating dtype.
        positive: as many dimensions as ``anchor`` (torch's rule); with the default distance,
            broadcastable with it; a ``distance_function`` decides for itself.
        negative: likewise.
        distance_function: ``d(x1, x2) -> distances``, non-negative, one per embedding pair;
            default :func:`torch.pairwise_distance` semantics (``p=2``, ``eps=1e-6``), rescaled
            as :func:`triplet_margin_loss` where a distance would overflow. A given function's
            arithmetic is its own: where it is NaN (``F.cosine_similarity`` at an infinite
            coordinate) or overflows (a squared distance at ``3e38`` in float32), so is the
            loss, as torch's; funcloss cannot rescale a function it does not know.
        margin: the required gap, must be positive.
        swap: use the distance swap.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the triplets, broadcastable to their batch shape (the
            inputs' shapes without the last dimension, broadcast together: ``(N,)``, ``()``
            unbatched): only the ``True`` triplets count (``"mean"`` divides by their number).
            Masked rows are replaced before ``distance_function`` sees them: it receives
            constant rows of ``1.0`` (anchor), ``2.0`` (positive) and ``3.0`` (negative) there,
            so it must be finite, with finite derivatives, at such distinct nonzero points.

    Returns:
        The distance's shape for ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: non-floating inputs, a ``distance_function`` that is not callable.
        ValueError: different numbers of dimensions, shapes that do not broadcast (default
            distance, or any distance with ``where``), a non-positive ``margin``, bad
            ``reduction``, a ``where`` that does not broadcast to the loss.

    Examples:
        >>> def cosine_distance(x1, x2):
        ...     return 1 - torch.cosine_similarity(x1, x2, dim=-1)
        >>> funcloss.triplet_margin_with_distance_loss(
        ...     torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]]),
        ...     distance_function=cosine_distance)
        tensor(0.2929)
    """
    fn = "triplet_margin_with_distance_loss"
    _check_triplet(fn, anchor, positive, negative, where, broadcast=distance_function is None)
    _triplet_distance_config(
        reduction=reduction, margin=margin, distance_function=distance_function
    )
    # Masked rows: distinct nonzero points (documented above), where the default distance, a
    # cosine distance or a squared distance are smooth.
    if distance_function is None:
        return _pairwise_triplet(
            anchor, positive, negative, margin, 2.0, 1e-6, swap, reduction, where, 1.0, 1.0
        )
    return _triplet(
        distance_function, anchor, positive, negative, margin, swap, reduction, where, 1.0, 1.0
    )
