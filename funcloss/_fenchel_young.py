"""Fenchel–Young losses and their relatives (optax's catalogue): sparsemax and its losses, the
Crammer–Singer hinge and the perceptron, the Fenchel–Young factory, label smoothing.

Plain torch compositions: autograd through them gives the right derivatives (also forward mode
and second order) and every transform rule; sparsemax and its loss also have a hand-written
backward for large inputs. Classes are the last dimension, as in optax.

sparsemax (Martins & Astudillo 2016) is the Euclidean projection of the scores onto the simplex,
:math:`p = \\max(z - \\tau, 0)`; the threshold :math:`\\tau` comes from one descending sort and a
cumulative sum of the detached scores, with no data-dependent control flow, so ``vmap``,
``jacfwd`` and ``torch.compile`` trace it. The scores are first shifted by their (detached) row
maximum: the projection does not change under a shift, and the shifted sums lose no precision
to large scores. ``relu(z - tau~)``, with :math:`\\tilde\\tau = (\\sum_{j \\in S} z_j - 1) / |S|`
over the support :math:`S` (a mask), has the true Jacobian
:math:`\\operatorname{diag}(s) - s s^\\top / |S|` (``s`` the support's indicator): ``relu`` passes
no gradient where :math:`z_j \\le \\tau`, and autograd never goes through the sort.

Masks (``where=``) replace the masked inputs before any arithmetic: scores 0, class indices 0,
``±1`` targets 1, binary targets 0. A *class mask* (the scores' number of dimensions) removes
classes as ``-inf`` scores would: they get probability 0 and take no part in the max.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_broadcastable_to,
    check_class_indices,
    check_floating,
    check_in_range,
    check_index,
    check_integer,
    check_label_dtype,
    check_number,
    check_reduction,
    check_tensor,
    check_values_in,
    check_where,
    checks_config,
    fail,
    in_place_safe,
    promoted_dtype,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._ops import times
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype, softmax_mask

_NEG_INF = float("-inf")


# -- sparsemax -------------------------------------------------------------------------------
#
# The threshold tau comes from a descending sort of the *detached* scores: autograd never goes
# through the sort or the cumulative sum (their backward costs time and memory). The
# derivatives are the true ones all the same:
#   - sparsemax's own: relu(z - tau~(z)) with tau~ = (sum_{j in S} z_j - 1) / |S|, S the support
#     (a mask of the detached scores): tau~ equals tau and has tau's derivative 1_S / |S|;
#   - the loss's: at the optimal tau, d/dtau (1/2 sum relu(z - tau)^2 + tau) = 1 - sum p = 0, so
#     its gradient is sparsemax(z) - e_y with tau held fixed (the tracked tau~ is used where
#     second derivatives are taken).
# From _FUSED_FROM_NUMEL elements on, a hand-written backward (custom_backward) saves only the
# scores and the rows' shift and threshold (no N x C intermediate) and recomputes the support.

_POS_INF = float("inf")
_FUSED_FROM_NUMEL = 2**16


def _shift(z: Tensor, top: Tensor) -> Tensor:
    """``z - top`` (``top`` the row maximum, ``(..., 1)``) with the rows' limits: in a row with
    ``+inf`` scores those become 0, every other score ``-inf`` (sparsemax puts all the mass on
    them); a row of ``-inf`` only becomes zeros; a NaN row becomes zeros (its threshold is NaN,
    so its probabilities are). The shift is detached: sparsemax, its loss and the hinges do
    not change under a shift of a row, so its derivative contributes exactly nothing."""
    return torch.nan_to_num(z - top, nan=0.0, posinf=_POS_INF, neginf=_NEG_INF)


def _threshold(shifted: Tensor, top: Tensor) -> Tensor:
    """The threshold ``tau`` ``(..., 1)`` of detached shifted scores: ``sum relu(z - tau) = 1``;
    ``+inf`` in a row of ``-inf`` only (so that its probabilities are 0), NaN in a NaN row."""
    ordered = shifted.sort(-1, descending=True).values
    cumulative = ordered.cumsum(-1)
    rank = torch.arange(1, shifted.shape[-1] + 1, dtype=shifted.dtype, device=shifted.device)
    # the support is the top k sorted scores with 1 + k z_(k) > sum_{j <= k} z_(j); tied scores
    # are both in or both out, and a -inf score is never in (-inf > -inf is false)
    size = (torch.addcmul(rank.new_ones(()), rank, ordered) > cumulative).sum(-1, keepdim=True)
    size = size.clamp_min(1)
    tau = (cumulative.gather(-1, size - 1) - 1) / size.to(shifted.dtype)
    tau = torch.where(top == _NEG_INF, _POS_INF, tau)
    return torch.where(torch.isnan(top), top, tau)


def _row_threshold(z: Tensor) -> tuple[Tensor, Tensor]:
    """(row maximum, threshold), both ``(..., 1)`` and detached, of scores ``(..., C)``."""
    z = z.detach()
    top = z.amax(-1, keepdim=True)
    return top, _threshold(_shift(z, top), top)


def _tracked_threshold(shifted: Tensor, tau: Tensor) -> Tensor:
    """``tau`` with its derivative: ``(sum_S z - 1) / |S|`` over the support ``S = {z > tau}``
    (kept where ``tau`` is not finite: rows of ``-inf``, NaN rows)."""
    support = shifted.detach() > tau
    size = support.sum(-1, keepdim=True).clamp_min(1).to(shifted.dtype)
    tracked = (torch.where(support, shifted, 0.0).sum(-1, keepdim=True) - 1) / size
    return torch.where(torch.isfinite(tau), tracked, tau)


def _sparsemax_forward(input: Tensor, top: Tensor, tau: Tensor) -> Tensor:
    """``relu(z - tau)`` of the shifted scores (``top``, ``tau`` from :func:`_row_threshold`)."""
    shifted = _shift(input, top)
    if in_place_safe(input, top, tau):  # the Function's forward: fresh buffers, no graph
        return shifted.sub_(tau).relu_()
    # relu, not clamp_min: no gradient at z_j = tau, which lies outside the support
    return torch.relu(shifted - _tracked_threshold(shifted, tau))


def _support(input: Tensor, top: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """(the support's indicator in ``input``'s dtype, its size ``(..., 1)``), without the
    shift's limits: a row with an infinite maximum has an empty support (its probabilities do
    not depend on the scores)."""
    infinite = torch.isinf(top)
    top = torch.where(infinite, 0.0, top)
    tau = torch.where(infinite, _POS_INF, tau)
    support = ((input - top) - tau > 0).to(input.dtype)
    return support, support.sum(-1, keepdim=True).clamp_min(1)


def _sparsemax_vjp(vector: Tensor, input: Tensor, top: Tensor, tau: Tensor) -> Tensor:
    """``J v`` (the Jacobian is symmetric): ``s * (v - mean_S v)``."""
    support, size = _support(input, top, tau)
    product = vector * support
    mean = product.sum(-1, keepdim=True) / size
    if in_place_safe(vector, input, top, tau):
        return product.sub_(support.mul_(mean))
    return product - support * mean


_sparsemax_function = custom_backward(_sparsemax_forward)


@_sparsemax_function.backward
def _sparsemax_backward(
    grad: Tensor, input: Tensor, top: Tensor, tau: Tensor
) -> tuple[Tensor, None, None]:
    return _sparsemax_vjp(grad, input, top, tau), None, None


@_sparsemax_function.jvp
def _sparsemax_jvp(input_t: Tensor, top_t: Tensor, tau_t: Tensor, input: Tensor, top, tau):
    return _sparsemax_vjp(input_t, input, top, tau)


def _check_scores(fn: str, input: Tensor) -> None:
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    if input.dim() == 0 or input.shape[-1] == 0:
        fail(ValueError, fn, "input", "have shape (*, C) with C > 0", shape_str(input.shape))


def sparsemax(input: Tensor, dim: int = -1) -> Tensor:
    r"""Sparsemax: the Euclidean projection of scores onto the probability simplex.

    A drop-in for ``softmax`` whose output has exact zeros (sparse attention, sparse
    classification). Not a loss: :func:`sparsemax_loss` is its loss.

    .. math::
        \operatorname{sparsemax}(z) = \operatorname*{argmin}_{p \in \Delta} \|p - z\|^2
        = \max(z - \tau(z), 0), \qquad \sum_j \max(z_j - \tau, 0) = 1

    Jacobian: :math:`\operatorname{diag}(s) - s s^\top / |S|`, :math:`s` the indicator of the
    support :math:`S = \{j : p_j > 0\}`. Tied scores get equal probabilities. A ``-inf`` score
    gets probability 0 (and passes zero gradient; the others' gradients stay finite); ``+inf``
    scores share all the mass equally (the limit). A row of ``-inf`` only (no class possible)
    gives zeros, with zero gradient.

    Args:
        input: scores, floating dtype, any shape with ``input.size(dim) > 0``; bf16 and fp16
            are computed in fp32.
        dim: the dimension of the classes.

    Returns:
        ``input``'s shape and dtype, nonnegative, summing to 1 along ``dim`` (0 for a row of
        ``-inf``).

    Raises:
        TypeError: a non-floating input.
        ValueError: a 0-dim input or an empty ``dim``.

    Examples:
        >>> funcloss.sparsemax(torch.tensor([[1.0, 0.8, -1.0], [0.0, 0.0, float("-inf")]]))
        tensor([[0.6000, 0.4000, 0.0000],
                [0.5000, 0.5000, 0.0000]])

    References:
        Martins & Astudillo, *From Softmax to Sparsemax: A Sparse Model of Attention and
        Multi-Label Classification*, ICML 2016. optax: ``jax.nn.sparsemax`` (projection_simplex).
    """
    fn = "sparsemax"
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    check_index(fn, dim=dim)
    if input.dim() == 0:
        fail(ValueError, fn, "input", "have at least one dimension", "()")
    if not -input.dim() <= dim < input.dim():
        fail(ValueError, fn, "dim", f"be in [{-input.dim()}, {input.dim()})", dim)
    if input.shape[dim] == 0:
        fail(ValueError, fn, "input", f"have classes along dim={dim}", shape_str(input.shape))
    z = input.movedim(dim, -1).to(compute_dtype(input.dtype))
    top, tau = _row_threshold(z)
    if z.numel() >= _FUSED_FROM_NUMEL:
        p = _sparsemax_function(z, top, tau)
    else:
        p = _sparsemax_forward(z, top, tau)
    return p.to(input.dtype).movedim(-1, dim)


# -- class-index targets (sparsemax_loss, the multi-class hinges) ----------------------------


def _class_rows(
    fn: str, input: Tensor, target: Tensor, where: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Checked ``(scores, class indices, row mask)``: masked rows read as scores 0 and class 0,
    removed classes (a class mask) as ``-inf``; a row with no class left is a masked row."""
    _check_scores(fn, input)
    if target.is_floating_point():
        fail(
            TypeError,
            fn,
            "target",
            "have an integer dtype (class indices)",
            target.dtype,
            "For probabilities use make_fenchel_young_loss or cross_entropy.",
        )
    check_integer(fn, target=target)
    loss_shape = input.shape[:-1]
    if target.shape != loss_shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(loss_shape)} for input of shape {shape_str(input.shape)}",
            shape_str(target.shape),
        )
    target = as_index(target)
    keep = None
    if where is not None:
        if softmax_mask(fn, where, tuple(loss_shape), tuple(input.shape)):
            keep = where.any(-1).expand(loss_shape)
            input = torch.where(keep.unsqueeze(-1), torch.where(where, input, _NEG_INF), 0.0)
        else:
            keep = where.expand(loss_shape)
            input = masked(keep.unsqueeze(-1), input)
        target = masked(keep, target, 0)
    check_class_indices(fn, target, input.shape[-1])
    return input, target, keep


def _picked(input: Tensor, target: Tensor, top: Tensor) -> Tensor:
    """The target's shifted score ``(..., 1)``, with its limit in a row with ``+inf`` scores
    (0 at one of them, else ``-inf``); its derivative is 1 (also at a ``-inf`` score)."""
    raw = input.gather(-1, target.unsqueeze(-1))
    infinite = top == _POS_INF
    limit = torch.where(raw == _POS_INF, 0.0, _NEG_INF)
    return torch.where(infinite, limit, raw - torch.where(infinite, 0.0, top))


def _sparsemax_loss_forward(input: Tensor, target: Tensor, top: Tensor, tau: Tensor) -> Tensor:
    """Per row ``1/2 |p|^2 + tau - z_y + 1/2`` (0 in a row of ``-inf``), ``target``'s shape."""
    picked = _picked(input, target, top)
    shifted = _shift(input, top)
    if in_place_safe(input, top, tau):  # the Function's forward: fresh buffers, no graph
        p = shifted.sub_(tau).relu_()
        half_square = torch.linalg.vecdot(p, p).unsqueeze(-1) / 2
    else:
        tau = _tracked_threshold(shifted, tau)
        half_square = torch.relu(shifted - tau).square().sum(-1, keepdim=True) / 2
    # keepdim until the end: a 0-dim tensor times a Python float has a float64 tangent
    loss = half_square + tau - picked + 0.5
    return torch.where(top == _NEG_INF, 0.0, loss).squeeze(-1)


def _sparsemax_loss_slope(input: Tensor, target: Tensor, top: Tensor, tau: Tensor) -> Tensor:
    """``sparsemax(z) - e_y`` (0 in a row with an infinite maximum: its loss does not depend on
    the scores). Differentiable: ``tau`` tracked where a graph is built (hessian)."""
    index = target.unsqueeze(-1)
    infinite = torch.isinf(top)
    if in_place_safe(input, top, tau):
        # no shift limits needed: those rows are zeroed (probabilities clamped finite first)
        top, tau = torch.where(infinite, 0.0, top), torch.where(infinite, 0.0, tau)
        big = torch.finfo(input.dtype).max
        p = torch.sub(input, top).sub_(tau).clamp_(0.0, big)
        slope = p.scatter_add_(-1, index, p.new_full(index.shape, -1.0))
        return slope.mul_(torch.where(infinite, 0.0, 1.0).to(input.dtype))
    shifted = _shift(input, top)
    p = torch.relu(shifted - _tracked_threshold(shifted, tau))
    slope = p.scatter_add(-1, index, p.new_full(index.shape, -1.0))
    return torch.where(infinite, 0.0, slope)


_sparsemax_loss_function = custom_backward(_sparsemax_loss_forward)


@_sparsemax_loss_function.backward
def _sparsemax_loss_backward(
    grad: Tensor, input: Tensor, target: Tensor, top: Tensor, tau: Tensor
) -> tuple[Tensor, None, None, None]:
    slope = _sparsemax_loss_slope(input, target, top, tau)
    if in_place_safe(grad, slope):
        return slope.mul_(grad.unsqueeze(-1)), None, None, None
    return slope * grad.unsqueeze(-1), None, None, None


@_sparsemax_loss_function.jvp
def _sparsemax_loss_jvp(
    input_t: Tensor,
    target_t: Tensor | None,
    top_t: Tensor,
    tau_t: Tensor,
    input: Tensor,
    target: Tensor,
    top: Tensor,
    tau: Tensor,
) -> Tensor:
    slope = _sparsemax_loss_slope(input, target, top, tau)
    return (slope * input_t).sum(-1)


_SPARSEMAX_LOSS_CONFIG = partial(check_reduction, "sparsemax_loss")


@follows_autocast("promoted")
@checks_config(_SPARSEMAX_LOSS_CONFIG)
def sparsemax_loss(
    input: Tensor, target: Tensor, reduction: Reduction = "mean", *, where: Tensor | None = None
) -> Tensor:
    r"""Sparsemax loss: the Fenchel–Young loss of :func:`sparsemax`, for class indices.

    The loss whose gradient is :math:`\operatorname{sparsemax}(z) - e_y`: zero exactly when
    sparsemax puts all its mass on the target class (a margin of 1 over every other score),
    and a sparse alternative to cross-entropy.

    .. math::
        \ell(z, y) = \tfrac12 \|p\|^2 + \tau - z_y + \tfrac12
        = -z_y + \tfrac12 \sum_{j \in S} (z_j^2 - \tau^2) + \tfrac12,
        \qquad p = \operatorname{sparsemax}(z)

    (optax's ``multiclass_sparsemax_loss``; optax's ``sparsemax_loss`` is the binary loss,
    :func:`binary_sparsemax_loss` here.) A ``-inf`` score (or a class removed by a class mask)
    is out of the support; at the target class the loss is ``+inf``, its gradient finite.

    Args:
        input: scores, shape ``(*, C)`` (classes last, as in optax), floating dtype.
        target: class indices, shape ``(*)`` (``input``'s without the last dimension),
            integer dtype, values in ``[0, C)`` (checked in eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask. A *row mask*, broadcastable to ``target``'s shape: only
            the ``True`` rows count (``"mean"`` divides by their number); a masked row's scores
            and class are not read. A *class mask*, with ``input``'s number of dimensions and
            broadcastable to its shape: the ``False`` classes are removed (as ``-inf`` scores);
            a row with no class left counts as masked.

    Returns:
        ``target``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input, a floating (or other non-integer) target, a non-bool
            ``where``.
        ValueError: wrong shapes, bad ``reduction``.
        IndexError: a class index out of range in a row that counts (eager mode).

    Examples:
        >>> scores = torch.tensor([[2.0, 0.5, 0.0], [0.2, 0.0, 0.0]])
        >>> funcloss.sparsemax_loss(scores, torch.tensor([0, 1]), reduction="none")
        tensor([0.0000, 0.4133])

    References:
        Martins & Astudillo, ICML 2016 (eq. 15); Blondel, Martins & Niculae, *Learning with
        Fenchel-Young Losses*, JMLR 2020. optax: ``optax.losses.multiclass_sparsemax_loss``.
    """
    fn = "sparsemax_loss"
    input, target, keep = _class_rows(fn, input, target, where)
    _SPARSEMAX_LOSS_CONFIG(reduction=reduction)
    z = input.to(compute_dtype(input.dtype))
    top, tau = _row_threshold(z)
    if z.numel() >= _FUSED_FROM_NUMEL:
        loss = _sparsemax_loss_function(z, target, top, tau)
    else:
        loss = _sparsemax_loss_forward(z, target, top, tau)
    return reduce(loss, reduction, where=keep).to(input.dtype)


# -- binary_sparsemax_loss ---------------------------------------------------------------------


_BINARY_SPARSEMAX_CONFIG = partial(check_reduction, "binary_sparsemax_loss")


@follows_autocast("promoted")
@checks_config(_BINARY_SPARSEMAX_CONFIG)
def binary_sparsemax_loss(
    input: Tensor, target: Tensor, reduction: Reduction = "mean", *, where: Tensor | None = None
) -> Tensor:
    r"""Binary sparsemax loss: the Fenchel–Young loss of the sparse sigmoid.

    The binary counterpart of :func:`sparsemax_loss` (optax's ``sparsemax_loss``): a logistic
    loss that is exactly 0 once the score is past the margin (:math:`z \ge 1` for label 1).

    .. math::
        \ell(z, y) = y\, \operatorname{sp}(-z) + (1 - y)\, \operatorname{sp}(z) - y (1 - y),
        \qquad \operatorname{sp}(x) = \begin{cases} 0 & x \le -1 \\ (x+1)^2/4 & |x| < 1 \\
        x & x \ge 1 \end{cases}

    For labels 0 and 1 this is optax's ``sparse_plus(where(y, -z, z))``; for a soft label
    :math:`y \in [0, 1]` it is the Fenchel–Young loss
    :math:`\operatorname{sp}(z) - y z + \Omega(y)` with :math:`\Omega(y) = y^2 - y` (zero
    exactly when the sparse sigmoid :math:`\operatorname{clip}((z+1)/2, 0, 1)` equals
    :math:`y`). Gradient: :math:`\operatorname{clip}((z+1)/2, 0, 1) - y`.

    Args:
        input: scores, shape ``(*)``, floating dtype.
        target: labels in ``[0, 1]`` (0/1, or soft), broadcastable to ``input``'s shape,
            floating or integer dtype (range checked in eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of ``input`` and a floating ``target``.

    Raises:
        TypeError: non-floating input, a bool or complex target, a non-bool ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``, a label outside
            ``[0, 1]`` (eager mode).

    Examples:
        >>> scores = torch.tensor([2.0, 0.0, -0.5])
        >>> funcloss.binary_sparsemax_loss(scores, torch.tensor([1, 1, 0]), reduction="none")
        tensor([0.0000, 0.2500, 0.0625])

    References:
        Blondel, Martins & Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020 (§4.4).
        optax: ``optax.losses.sparsemax_loss``.
    """
    fn = "binary_sparsemax_loss"
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    check_label_dtype(fn, target=target)
    check_broadcastable_to(fn, "target", target, input.shape)
    _BINARY_SPARSEMAX_CONFIG(reduction=reduction)
    dtype = promoted_dtype(input, target)
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input), masked(where, target, 0)
    check_values_in(fn, "target", target, 0.0, 1.0)
    z = input.to(compute_dtype(dtype))
    y = target.to(z.dtype)
    # sp(z) - z y + y^2 - y, written as (s - y)^2 with the sparse sigmoid s = clip((z+1)/2, 0, 1)
    # plus the linear parts outside [-1, 1]: exact for 0/1 labels (no cancellation), a label of
    # exactly 0 or 1 adds nothing for an infinite score of the other side (no 0 * inf)
    sigmoid = ((z + 1) / 2).clamp(0.0, 1.0)
    linear = torch.where(z > 0, 1 - y, y)  # the coefficient of |z| - 1 outside [-1, 1]
    loss = (sigmoid - y).square() + times(linear, torch.relu(z.abs() - 1))
    return reduce(loss, reduction, where=where).to(dtype)


# -- the multi-class hinges (Crammer-Singer, perceptron) -------------------------------------


def _crammer_singer(input: Tensor, target: Tensor, margin: float) -> Tensor:
    """``max_c (z_c - z_y + margin [c != y])`` per row: the target's own term is exactly 0, so a
    ``+inf`` target score gives 0 (no ``inf - inf``)."""
    index = target.unsqueeze(-1)
    picked = input.gather(-1, index)
    if margin == 0:
        # the perceptron: max z - z_y in two passes; a +inf target score gives 0 (the limit)
        top = input.amax(-1, keepdim=True)
        return torch.where(picked == float("inf"), 0.0, top - picked).squeeze(-1)
    gaps = input - picked + margin
    # the target's own term, exactly 0 (scatter sends it no gradient)
    return gaps.scatter(-1, index, 0.0).amax(-1)


def _check_multiclass_hinge_config(*, reduction: str = "mean", margin: float = 1.0) -> None:
    fn = "multiclass_hinge_loss"
    check_reduction(fn, reduction)
    check_number(fn, margin=margin)


@follows_autocast("promoted")
@checks_config(_check_multiclass_hinge_config)
def multiclass_hinge_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Multi-class hinge loss of Crammer & Singer: the target must beat the *best* other class
    by ``margin``.

    One hinge per sample (torch's :func:`multi_margin_loss` is Weston & Watkins': a sum of
    hinges over every other class, divided by C).

    .. math::
        \ell(z, y) = \max_c \left(z_c + \text{margin}\,[c \ne y]\right) - z_y
        = \max\!\left(0,\; \max_{c \ne y} (z_c - z_y + \text{margin})\right)

    optax's ``multiclass_hinge_loss`` (margin 1). At a tie of the maximum the gradient is
    shared equally among the tied classes (``amax``'s subgradient).

    Args:
        input: scores, shape ``(*, C)`` (classes last), floating dtype.
        target: class indices, shape ``(*)``, integer dtype, values in ``[0, C)`` (checked in
            eager mode only).
        margin: the required gap (a real number).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool row mask (broadcastable to ``target``'s shape) or class mask
            (``input``'s number of dimensions; removed classes take no part in the max), as in
            :func:`sparsemax_loss`.

    Returns:
        ``target``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input, a non-integer target, a non-real ``margin``, a non-bool
            ``where``.
        ValueError: wrong shapes, bad ``reduction``.
        IndexError: a class index out of range in a row that counts (eager mode).

    Examples:
        >>> scores = torch.tensor([[2.0, 0.5, 0.0], [0.2, 0.0, 0.9]])
        >>> funcloss.multiclass_hinge_loss(scores, torch.tensor([0, 1]), reduction="none")
        tensor([0.0000, 1.9000])

    References:
        Crammer & Singer, *On the Algorithmic Implementation of Multiclass Kernel-based Vector
        Machines*, JMLR 2001. optax: ``optax.losses.multiclass_hinge_loss``.
    """
    fn = "multiclass_hinge_loss"
    input, target, keep = _class_rows(fn, input, target, where)
    _check_multiclass_hinge_config(reduction=reduction, margin=margin)
    loss = _crammer_singer(input.to(compute_dtype(input.dtype)), target, margin)
    return reduce(loss, reduction, where=keep).to(input.dtype)


_MULTICLASS_PERCEPTRON_CONFIG = partial(check_reduction, "multiclass_perceptron_loss")


@follows_autocast("promoted")
@checks_config(_MULTICLASS_PERCEPTRON_CONFIG)
def multiclass_perceptron_loss(
    input: Tensor, target: Tensor, reduction: Reduction = "mean", *, where: Tensor | None = None
) -> Tensor:
    r"""Multi-class perceptron loss: how far the best score is above the target's.

    .. math::
        \ell(z, y) = \max_c z_c - z_y

    :func:`multiclass_hinge_loss` with margin 0; optax's ``multiclass_perceptron_loss``. At a
    tie of the maximum the gradient is shared equally among the tied classes.

    Args:
        input: scores, shape ``(*, C)`` (classes last), floating dtype.
        target: class indices, shape ``(*)``, integer dtype, values in ``[0, C)`` (checked in
            eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool row or class mask, as in :func:`sparsemax_loss`.

    Returns:
        ``target``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input, a non-integer target, a non-bool ``where``.
        ValueError: wrong shapes, bad ``reduction``.
        IndexError: a class index out of range in a row that counts (eager mode).

    Examples:
        >>> scores = torch.tensor([[2.0, 0.5, 0.0], [0.2, 0.0, 0.9]])
        >>> funcloss.multiclass_perceptron_loss(scores, torch.tensor([0, 1]), reduction="none")
        tensor([0.0000, 0.9000])

    References:
        Collins, *Discriminative Training Methods for Hidden Markov Models*, EMNLP 2002.
        optax: ``optax.losses.multiclass_perceptron_loss``.
    """
    fn = "multiclass_perceptron_loss"
    input, target, keep = _class_rows(fn, input, target, where)
    _MULTICLASS_PERCEPTRON_CONFIG(reduction=reduction)
    loss = _crammer_singer(input.to(compute_dtype(input.dtype)), target, 0.0)
    return reduce(loss, reduction, where=keep).to(input.dtype)


# -- binary hinge and perceptron (±1 targets) ------------------------------------------------


def _signed_pair(
    fn: str, input: Tensor, target: Tensor, where: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Checked ``(scores, ±1 labels)``, masked entries read as score 0 and label 1."""
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    check_label_dtype(fn, target=target)
    check_broadcastable_to(fn, "target", target, input.shape)
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input), masked(where, target, 1)
    if value_checks_enabled(target) and target.numel():
        bad = target.abs() != 1
        if bool(bad.any()):  # the one read on valid input
            first = float(target[bad].flatten()[0])
            hint = "For 0/1 labels pass 2 * y - 1."
            fail(ValueError, fn, "target", "hold only -1 and 1", first, hint)
    return input, target


_HINGE_CONFIG = partial(check_reduction, "hinge_loss")
_PERCEPTRON_CONFIG = partial(check_reduction, "perceptron_loss")


@follows_autocast("promoted")
@checks_config(_HINGE_CONFIG)
def hinge_loss(
    input: Tensor, target: Tensor, reduction: Reduction = "mean", *, where: Tensor | None = None
) -> Tensor:
    r"""Binary hinge loss (the SVM loss) on ``±1`` labels.

    .. math::
        \ell(z, y) = \max(0,\; 1 - y z)

    optax's ``hinge_loss``. At the kink :math:`y z = 1` the gradient is 0.

    Args:
        input: scores, shape ``(*)``, floating dtype.
        target: ``-1`` or ``1``, broadcastable to ``input``'s shape, floating or integer dtype
            (values checked in eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of ``input`` and a floating ``target``.

    Raises:
        TypeError: non-floating input, a bool or complex target, a non-bool ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``, a target other than ±1
            (eager mode).

    Examples:
        >>> funcloss.hinge_loss(torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1, 1, 1]),
        ...                     reduction="none")
        tensor([0.0000, 0.5000, 2.0000])

    References:
        Cortes & Vapnik, *Support-Vector Networks*, 1995. optax: ``optax.losses.hinge_loss``.
    """
    fn = "hinge_loss"
    dtype = promoted_dtype(input, target)
    input, target = _signed_pair(fn, input, target, where)
    _HINGE_CONFIG(reduction=reduction)
    return reduce(torch.relu(1 - target * input), reduction, where=where).to(dtype)


@follows_autocast("promoted")
@checks_config(_PERCEPTRON_CONFIG)
def perceptron_loss(
    input: Tensor, target: Tensor, reduction: Reduction = "mean", *, where: Tensor | None = None
) -> Tensor:
    r"""Binary perceptron loss on ``±1`` labels: the hinge without a margin.

    .. math::
        \ell(z, y) = \max(0,\; -y z)

    optax's ``perceptron_loss``. At the kink :math:`y z = 0` the gradient is 0.

    Args:
        input: scores, shape ``(*)``, floating dtype.
        target: ``-1`` or ``1``, broadcastable to ``input``'s shape, floating or integer dtype
            (values checked in eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of ``input`` and a floating ``target``.

    Raises:
        TypeError: non-floating input, a bool or complex target, a non-bool ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``, a target other than ±1
            (eager mode).

    Examples:
        >>> funcloss.perceptron_loss(torch.tensor([2.0, -0.5]), torch.tensor([1, 1]),
        ...                          reduction="none")
        tensor([0.0000, 0.5000])

    References:
        Rosenblatt, *The Perceptron*, 1958. optax: ``optax.losses.perceptron_loss``.
    """
    fn = "perceptron_loss"
    dtype = promoted_dtype(input, target)
    input, target = _signed_pair(fn, input, target, where)
    _PERCEPTRON_CONFIG(reduction=reduction)
    return reduce(torch.relu(-target * input), reduction, where=where).to(dtype)


# -- make_fenchel_young_loss -------------------------------------------------------------------


def make_fenchel_young_loss(
    max_fn: Callable[[Tensor], Tensor],
) -> Callable[..., Tensor]:
    r"""Build the Fenchel–Young loss of a "max function" (a regularised maximum of the scores).

    Not a loss itself: it returns one, ``fy(input, target, reduction="mean", *, where=None)``,
    optax's ``make_fenchel_young_loss`` for torch.

    .. math::
        \ell(z, q) = \operatorname{max\_fn}(z) - \langle q, z \rangle,
        \qquad \nabla_z \ell = \nabla \operatorname{max\_fn}(z) - q

    As in optax, the regulariser's term :math:`\Omega(q)` of the full Fenchel–Young loss
    :math:`\Omega^*(z) + \Omega(q) - \langle q, z\rangle` is left out (it does not depend on
    the scores). With ``max_fn = lambda z: torch.logsumexp(z, -1)`` the loss is
    ``cross_entropy`` with probability targets exactly, for rows of ``q`` that sum to 1 (in
    general :math:`\operatorname{lse}(z) \sum_c q_c - \langle q, z\rangle` is cross-entropy
    plus :math:`(1 - \sum_c q_c)\operatorname{lse}(z)`), and the full Fenchel–Young loss
    :math:`\operatorname{KL}(q \,\|\, \operatorname{softmax}(z))` is it minus the target's
    entropy :math:`H(q)`.

    Args:
        max_fn: a function of the scores ``(*, C)`` that reduces the last dimension (returns
            shape ``(*)``), made of torch ops (it runs under the caller's transforms):
            ``partial(torch.logsumexp, dim=-1)``, ``lambda z: z.amax(-1)`` (the perceptron),
            ... Called on the whole batch, once per call.

    Returns:
        ``fy(input, target, reduction="mean", *, where=None)``: ``input`` scores ``(*, C)``,
        floating; ``target`` ``(*, C)`` (broadcastable to ``input``), floating; ``where`` an
        optional bool row mask broadcastable to ``(*)`` (masked rows read as zeros and add
        nothing; ``"mean"`` divides by the rows included). ``fy`` returns shape ``(*)`` for
        ``"none"``, else a 0-dim tensor.

    Raises:
        TypeError: ``max_fn`` not callable; from ``fy``: non-floating tensors, a non-bool
            ``where``.
        ValueError: from ``fy``: shapes that do not broadcast, bad ``reduction``, a
            ``max_fn`` that does not return shape ``(*)``.

    Examples:
        >>> from functools import partial
        >>> fy = funcloss.make_fenchel_young_loss(partial(torch.logsumexp, dim=-1))
        >>> scores, q = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.2, 0.8, 0.0]])
        >>> fy(scores, q)
        tensor(0.6076)
        >>> funcloss.cross_entropy(scores, q)
        tensor(0.6076)

    References:
        Blondel, Martins & Niculae, *Learning with Fenchel-Young Losses*, JMLR 2020.
        optax: ``optax.losses.make_fenchel_young_loss``.
    """
    if not callable(max_fn):
        fail(TypeError, "make_fenchel_young_loss", "max_fn", "be callable", type(max_fn).__name__)

    def fenchel_young_loss(
        input: Tensor,
        target: Tensor,
        reduction: Reduction = "mean",
        *,
        where: Tensor | None = None,
    ) -> Tensor:
        fn = "fenchel_young_loss"
        _check_scores(fn, input)
        check_floating(fn, target=target)
        check_broadcastable_to(fn, "target", target, input.shape)
        check_reduction(fn, reduction)
        loss_shape = input.shape[:-1]
        if where is not None:
            check_where(fn, where, loss_shape)
            rows = where.unsqueeze(-1)
            input, target = masked(rows, input), masked(rows, target)
        maximum = max_fn(input)
        if not isinstance(maximum, Tensor) or maximum.shape != loss_shape:
            got = shape_str(maximum.shape) if isinstance(maximum, Tensor) else type(maximum)
            fail(
                ValueError,
                fn,
                "max_fn",
                f"reduce the scores' last dimension, returning shape {shape_str(loss_shape)} "
                f"for scores of shape {shape_str(input.shape)}",
                got,
                "Reduce over dim=-1, e.g. partial(torch.logsumexp, dim=-1).",
            )
        # a zero target at a -inf score adds 0 (not 0 * -inf)
        loss = maximum - times(target, input).sum(-1)
        return reduce(loss, reduction, where=where)

    fenchel_young_loss.max_fn = max_fn  # type: ignore[attr-defined]
    return fenchel_young_loss


# -- smooth_labels ---------------------------------------------------------------------------


def smooth_labels(
    target: Tensor,
    alpha: float,
    *,
    num_classes: int | None = None,
    dim: int = 1,
    where: Tensor | None = None,
) -> Tensor:
    r"""Label smoothing: class indices or probabilities to smoothed class probabilities.

    For cross-entropy-style losses that take probability targets (``cross_entropy``,
    :func:`make_fenchel_young_loss`'s losses). Not a loss.

    .. math::
        \tilde q_c = (1 - \alpha)\, q_c + \frac{\alpha}{K}

    with :math:`q` the one-hot of a class index or the given probabilities and :math:`K` the
    number of classes (optax's ``smooth_labels``). With ``where`` (the valid classes), the
    :math:`\alpha` mass goes to the valid classes only, :math:`K` counts them, and a removed
    class gets 0 (a target's mass there is dropped, as ``cross_entropy``'s class mask drops
    it); a row with no valid class is all zeros. (optax's ``where`` divides by the valid count
    but still adds :math:`\alpha/K` to the removed classes, so its rows sum to more than 1.)

    Args:
        target: class indices (integer dtype, shape ``(N, d1, ...)`` or ``()``) or
            probabilities (floating dtype, classes along ``dim``).
        alpha: the smoothing :math:`\alpha`, in ``[0, 1]``.
        num_classes: the number of classes :math:`K`; required for class indices (which must
            lie in ``[0, K)``, checked in eager mode only), optional for probabilities (it
            must then equal ``target.size(dim)``).
        dim: the class dimension of the result (1, as torch's ``(N, C)``; a result of one
            dimension, an unbatched ``(C,)``, has its classes at 0).
        where: optional bool mask of the valid classes, broadcastable to the result's shape.

    Returns:
        Probabilities: ``target``'s shape and dtype for probabilities; for class indices the
        target's shape with a class dimension of size ``num_classes`` inserted at ``dim``, in
        the default floating dtype.

    Raises:
        TypeError: ``target`` neither integer nor floating, a non-int ``num_classes`` or
            ``dim``, a non-real ``alpha``, a non-bool ``where``.
        ValueError: ``alpha`` outside ``[0, 1]``; ``num_classes`` missing (class indices),
            not positive or not ``target.size(dim)`` (probabilities); a bad ``dim``; a
            ``where`` that does not broadcast.
        IndexError: a class index not below ``num_classes`` (eager mode).

    Examples:
        >>> funcloss.smooth_labels(torch.tensor([0, 2]), 0.3, num_classes=3)
        tensor([[0.8000, 0.1000, 0.1000],
                [0.1000, 0.1000, 0.8000]])
        >>> valid = torch.tensor([[True, True, False]])
        >>> funcloss.smooth_labels(torch.tensor([0]), 0.3, num_classes=3, where=valid)
        tensor([[0.8500, 0.1500, 0.0000]])

    References:
        Szegedy et al., *Rethinking the Inception Architecture*, CVPR 2016; Müller et al.,
        *When Does Label Smoothing Help?*, NeurIPS 2019. optax: ``optax.smooth_labels``.
    """
    fn = "smooth_labels"
    check_tensor(fn, target=target)
    check_in_range(fn, "alpha", alpha, 0.0, 1.0)
    check_index(fn, dim=dim)
    indices = not target.is_floating_point()
    if indices:
        check_integer(fn, target=target)
        if num_classes is None:
            fail(
                ValueError,
                fn,
                "num_classes",
                "be given for class indices",
                None,
                "Pass num_classes=C, or a float target of class probabilities.",
            )
    ndim = target.dim() + 1 if indices else target.dim()
    if ndim == 1 and dim == 1:
        dim = 0  # unbatched (C,), as cross_entropy
    if ndim == 0 or not -ndim <= dim < ndim:
        fail(ValueError, fn, "dim", f"be in [{-ndim}, {ndim}) for a result of {ndim} dims", dim)
    if num_classes is not None:
        check_index(fn, num_classes=num_classes)
        if num_classes <= 0:
            fail(ValueError, fn, "num_classes", "be positive", num_classes)
    if num_classes is not None and indices:
        check_class_indices(fn, target, num_classes)
        classes = torch.arange(num_classes, device=target.device)
        onehot = target.unsqueeze(-1) == classes
        probabilities = onehot.to(torch.get_default_dtype()).movedim(-1, dim)
    else:
        if num_classes is not None and num_classes != target.shape[dim]:
            fail(
                ValueError,
                fn,
                "num_classes",
                f"equal target.size({dim}) = {target.shape[dim]} for probabilities",
                num_classes,
            )
        probabilities = target
    if where is None:
        return (1 - alpha) * probabilities + alpha / probabilities.shape[dim]
    check_where(fn, where, probabilities.shape)
    valid = where.expand(probabilities.shape)
    probabilities = masked(valid, probabilities)
    count = valid.sum(dim, keepdim=True).to(probabilities.dtype)
    spread = alpha / torch.where(count == 0, 1.0, count)
    return torch.where(valid, (1 - alpha) * probabilities + spread, 0.0)
