"""Focal-type classification losses: sigmoid_focal_loss, focal_loss, poly1_cross_entropy,
asymmetric_loss.

Each down-weights (or up-weights) the cross-entropy of an example by a power of how wrong it is.
The powers are taken in log space, ``(1 - p)^gamma = exp(gamma * log(1 - p))`` with
``log(1 - p)`` computed from the logits without cancellation, so that value and every derivative
(reverse, forward, second order) stay finite where ``1 - p`` rounds to 0 (a saturated, correct
prediction), also for ``0 < gamma < 1``, where ``(1 - p)^gamma`` has an infinite slope at
``1 - p = 0``: the anchors' ``(1 - p) ** gamma`` gives ``0 * inf = nan`` gradients there.

Masks (``where=``) replace the masked inputs before any arithmetic by values at which the loss
and its derivatives are finite: logits 0, targets 0 (class indices: ignored rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_in_range,
    check_index,
    check_reduction,
    check_same_shape,
    check_tensor,
    check_where,
    checks_config,
    class_index_mask,
    fail,
    in_place_safe,
    plain_eager,
    promoted_dtype,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._ops import softplus, times
from ._reduction import masked, reduce
from ._softmax_ce import (
    Rows,
    as_rows,
    class_rows,
    class_shapes,
    compute_dtype,
    masked_probability_rows,
    softmax_mask,
)

# -- config ----------------------------------------------------------------------------------


def _check_gamma(fn: str, name: str, gamma: float) -> None:
    if isinstance(gamma, bool) or not isinstance(gamma, int | float):
        fail(TypeError, fn, name, "be a real number", type(gamma).__name__)
    if not (gamma >= 0 and math.isfinite(gamma)):
        fail(ValueError, fn, name, "be finite and non-negative", gamma)


def _sigmoid_focal_config(
    *, alpha: float = 0.25, gamma: float = 2.0, reduction: str = "none"
) -> None:
    fn = "sigmoid_focal_loss"
    if isinstance(alpha, bool) or not isinstance(alpha, int | float):
        fail(TypeError, fn, "alpha", "be a real number", type(alpha).__name__)
    if not alpha <= 1:  # NaN fails too; a negative alpha means no weighting
        fail(ValueError, fn, "alpha", "be in [0, 1], or negative for no weighting", alpha)
    _check_gamma(fn, "gamma", gamma)
    check_reduction(fn, reduction)


# -- sigmoid_focal_loss ----------------------------------------------------------------------
#
# With z = |x| and w the target weight of the larger of the two probabilities (w = 1 - t for
# x >= 0, where sigma(x) >= 1/2, else t), e = exp(-z) <= 1 and L = softplus(-z) = log1p(e):
#
#     ce         = t softplus(-x) + (1 - t) softplus(x) = w z + L,
#     1 - p_t    = t sigma(-x) + (1 - t) sigma(x)       = v / (1 + e),  v = w + (1 - w) e,
#     log(1 - p_t) = log v - L.
#
# Every term is a sum of non-negative numbers (no cancellation) and nothing overflows. v >= e
# underflows only with a hard target on the confident side (w = 0, so v = e) beyond |x| ~ 87
# (float32) / 708 (float64): it is clamped to the smallest normal number there, where the loss
# and its input derivative are below |x| times that number anyway. Each branch of
# `where(x >= 0)` is the same analytic function, so derivatives of every order are exact at
# x = 0 too.
#
# Derivatives, with s = sign(x) (+1 at 0), sigma(-z) = e / (1 + e), m = (1 - p_t)^gamma:
#     d(ce m)/dx = s m [(w - sigma(-z)) + gamma ce (2w - 1) sigma(-z) / v],
#     d(ce m)/dt = m [-x - s gamma ce (1 - e) / v].


def _sigmoid_focal_parts(input: Tensor, target: Tensor, gamma: float):
    positive = input >= 0
    z = torch.where(positive, input, -input)
    w = torch.where(positive, 1 - target, target)
    e = torch.exp(-z)
    log1p_e = torch.log1p(e)
    ce = w * z + log1p_e
    # v >= e > 0; clamped where it underflows (then ce <= tiny |x| too: the loss and its input
    # derivative change by less than that)
    v = (w + (1 - w) * e).clamp_min(torch.finfo(e.dtype).tiny)
    modulating = torch.exp(gamma * (torch.log(v) - log1p_e)) if gamma != 0 else None
    return positive, z, w, e, ce, v, modulating


def _alpha_weight(target: Tensor, alpha: float) -> Tensor:
    # alpha t + (1 - alpha)(1 - t)
    return (2 * alpha - 1) * target + (1 - alpha)


def _sigmoid_focal_forward(input: Tensor, target: Tensor, alpha: float, gamma: float) -> Tensor:
    if in_place_safe(input, target):  # the Function's forward: fresh buffers, no graph
        return _sigmoid_focal_in_place(input, target, alpha, gamma)
    _, _, _, _, ce, _, modulating = _sigmoid_focal_parts(input, target, gamma)
    loss = ce if modulating is None else ce * modulating
    return loss if alpha < 0 else loss * _alpha_weight(target, alpha)


# The eager paths (no graph, fresh buffers): the same forms in few passes, without torch.where
# (several times slower than arithmetic on the CPU): for targets in [0, 1],
# w = |[x >= 0] - t|.


def _sigmoid_focal_in_place_parts(input: Tensor, target: Tensor):
    positive = (input >= 0).to(input.dtype)
    z = input.abs()
    w = (positive - target).abs_()
    e = torch.neg(z).exp_()
    log1p_e = torch.log1p(e)
    return positive, z, w, e, log1p_e, torch.addcmul(log1p_e, w, z)


def _in_place_modulating(
    w: Tensor, e: Tensor, log1p_e: Tensor, gamma: float
) -> tuple[Tensor, Tensor]:
    v = torch.addcmul(e, w, 1 - e).clamp_min_(torch.finfo(e.dtype).tiny)
    return v, torch.log(v).sub_(log1p_e).mul_(gamma).exp_()


def _sigmoid_focal_in_place(input: Tensor, target: Tensor, alpha: float, gamma: float) -> Tensor:
    """The forward in few passes, in fresh buffers (no graph)."""
    _, _, w, e, log1p_e, loss = _sigmoid_focal_in_place_parts(input, target)
    if gamma != 0:
        loss.mul_(_in_place_modulating(w, e, log1p_e, gamma)[1])
    if alpha >= 0:
        loss.mul_(_alpha_weight(target, alpha))
    return loss


def _sigmoid_focal_input_slope_in_place(
    grad: Tensor, input: Tensor, target: Tensor, alpha: float, gamma: float
) -> Tensor:
    """``grad * d loss / d input`` in few passes, in fresh buffers (no graph)."""
    positive, _, w, e, log1p_e, ce = _sigmoid_focal_in_place_parts(input, target)
    sigmoid_neg = e / (1 + e)
    slope = w - sigmoid_neg
    if gamma != 0:
        v, modulating = _in_place_modulating(w, e, log1p_e, gamma)
        focal = ce.mul_(w.mul_(2).sub_(1)).mul_(sigmoid_neg.div_(v))
        slope.add_(focal, alpha=gamma).mul_(modulating)
    if alpha >= 0:
        slope.mul_(_alpha_weight(target, alpha))
    return slope.mul_(torch.addcmul(-grad, grad, positive, value=2))  # the sign of x


def _sigmoid_focal_slopes(
    input: Tensor, target: Tensor, alpha: float, gamma: float, wants_target: bool
) -> tuple[Tensor, Tensor | None]:
    """``(d loss / d input, d loss / d target)`` elementwise (the second ``None`` when not
    wanted)."""
    positive, _, w, e, ce, v, modulating = _sigmoid_focal_parts(input, target, gamma)
    sigmoid_neg = e / (1 + e)
    slope = w - sigmoid_neg
    if modulating is not None:
        # sigma(-z) - (1 - w) e / v = (2w - 1) sigma(-z) / v
        slope = (slope + (gamma * ce) * (2 * w - 1) * (sigmoid_neg / v)) * modulating
    weight = None if alpha < 0 else _alpha_weight(target, alpha)
    if weight is not None:
        slope = slope * weight
    d_input = torch.where(positive, slope, -slope)
    if not wants_target:
        return d_input, None
    d_target = -input
    if modulating is not None:
        through_v = (1 - e) / v * (gamma * ce)
        d_target = (d_target - torch.where(positive, through_v, -through_v)) * modulating
    if weight is not None:
        ce_m = ce if modulating is None else ce * modulating
        d_target = d_target * weight + (2 * alpha - 1) * ce_m
    return d_input, d_target


_sigmoid_focal_function = custom_backward(_sigmoid_focal_forward)


@_sigmoid_focal_function.backward
def _sigmoid_focal_backward(
    grad: Tensor, input: Tensor, target: Tensor, alpha: float, gamma: float
) -> tuple[Tensor, Tensor | None]:
    # in plain eager mode a target that does not require grad takes none (under a transform
    # requires_grad does not tell)
    wants_target = target.requires_grad or not plain_eager(target)
    if not wants_target and in_place_safe(grad, input, target):
        return _sigmoid_focal_input_slope_in_place(grad, input, target, alpha, gamma), None
    d_input, d_target = _sigmoid_focal_slopes(input, target, alpha, gamma, wants_target)
    return grad * d_input, None if d_target is None else grad * d_target


@_sigmoid_focal_function.jvp
def _sigmoid_focal_jvp(
    input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor, alpha: float, gamma: float
) -> Tensor:
    d_input, d_target = _sigmoid_focal_slopes(input, target, alpha, gamma, True)
    assert d_target is not None
    return d_input * input_t + d_target * target_t


# Below this many elements the Function's fixed Python cost per call outweighs the passes and
# the saved intermediates it saves (as _ops.logistic_terms).
_FUSED_FROM_NUMEL = 2**16


@follows_autocast("float32")
@checks_config(_sigmoid_focal_config)
def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "none",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Sigmoid focal loss (RetinaNet): binary cross-entropy on logits, down-weighted for
    well-classified elements.

    For dense detection and other heavily imbalanced binary or multi-label problems:
    torchvision's ``sigmoid_focal_loss``, with its signature and its default
    ``reduction="none"``.

    .. math::
        \ell = \alpha_t\, (1 - p_t)^\gamma\, \mathrm{BCE}(x, t), \qquad
        1 - p_t = t\,\sigma(-x) + (1 - t)\,\sigma(x), \qquad
        \alpha_t = \alpha t + (1 - \alpha)(1 - t)

    with :math:`\mathrm{BCE}(x, t) = t \operatorname{softplus}(-x) + (1 - t)
    \operatorname{softplus}(x)`; :math:`\gamma = 0` and ``alpha < 0`` give
    :func:`binary_cross_entropy_with_logits` exactly. The focal weight is computed in log space,
    :math:`\exp(\gamma \log(1 - p_t))`, with :math:`\log(1 - p_t)` from the logits without
    cancellation: value and gradient, forward-mode and second derivatives are finite at every
    finite logit for every :math:`\gamma \ge 0`. torchvision (and segmentation_models_pytorch)
    compute ``(1 - p_t) ** gamma``, whose gradient is ``0 * inf = nan`` once ``1 - p_t`` rounds
    to 0, for :math:`\gamma < 1` (at :math:`|x| \gtrsim 17` in float32, 37 in float64).
    From 65536 elements on, a hand-written backward saves only the inputs.

    Args:
        input: logits, any shape, floating dtype.
        target: ``input``'s shape, floating dtype: 0/1 labels or soft labels in ``[0, 1]``
            (not checked). The derivative with respect to ``target`` is exact except for a hard
            target on the confident side beyond :math:`|x| \approx 87` (float32) or 708
            (float64), where :math:`1 - p_t` underflows and the focal weight's share of it (a
            fraction :math:`\gamma / (|x| + \gamma)`) is dropped.
        alpha: :math:`\alpha` in ``[0, 1]``, the weight of the positive class; a negative value
            (torchvision's ``-1``) means no weighting.
        gamma: :math:`\gamma \ge 0`, the focusing exponent.
        reduction: ``"none"`` (the default, as torchvision) | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number; a masked element's logit and
            target are not read).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the promoted
        dtype of ``input`` and ``target``.

    Raises:
        TypeError: non-floating ``input`` or ``target`` (class indices: use
            :func:`focal_loss`), non-number ``alpha``/``gamma``, a non-bool ``where``.
        ValueError: shapes that differ, ``alpha > 1``, ``gamma < 0`` or not finite, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([3.0, -1.0, 100.0])
        >>> funcloss.sigmoid_focal_loss(x, torch.tensor([1.0, 1.0, 1.0]))
        tensor([2.7321e-05, 1.7547e-01, 0.0000e+00])
        >>> x = x.requires_grad_()
        >>> funcloss.sigmoid_focal_loss(x, torch.ones(3), gamma=0.5).sum().backward()
        >>> x.grad  # torchvision: nan at 100
        tensor([-0.0038, -0.1940,  0.0000])

    References:
        Lin, Goyal, Girshick, He and Dollár, "Focal Loss for Dense Object Detection", ICCV 2017;
        ``torchvision.ops.sigmoid_focal_loss``.
    """
    fn = "sigmoid_focal_loss"
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input)
    if not target.is_floating_point():
        fail(
            TypeError,
            fn,
            "target",
            "have a floating-point dtype (0/1 or soft labels)",
            target.dtype,
            "For class indices use focal_loss, or pass `target.float()`.",
        )
    check_same_shape(fn, input=input, target=target)
    _sigmoid_focal_config(alpha=alpha, gamma=gamma, reduction=reduction)
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input), masked(where, target)
    shape = input.shape
    # 1-d: under jacfwd a 0-dim tensor times a Python float has a float64 tangent (pytorch#90065)
    input, target = input.to(work).reshape(-1), target.to(work).reshape(-1)
    if input.numel() >= _FUSED_FROM_NUMEL:
        loss = _sigmoid_focal_function(input, target, float(alpha), float(gamma))
    else:
        loss = _sigmoid_focal_forward(input, target, float(alpha), float(gamma))
    return reduce(loss.view(shape), reduction, where=where).to(dtype)


# -- softmax losses: focal_loss, poly1_cross_entropy -------------------------------------------
#
# Both are sum_c a_c g(log p_c) per row, with a the cross-entropy's target weights (_softmax_ce:
# class indices, smoothed and weighted, or probabilities) and g(l) = -l for cross-entropy:
#     focal:  g(l) = -(1 - e^l)^gamma l,   (1 - e^l)^gamma = exp(gamma log(1 - e^l)),
#     poly-1: g(l) = -l - epsilon expm1(l)  (= -log p + epsilon (1 - p)).
# A class of target weight 0 adds exactly 0 (also at a removed class, whose l is -inf).

_LOG_HALF = -math.log(2.0)


def _log1m_exp(log_p: Tensor) -> Tensor:
    """``log(1 - e^l)`` for ``l <= 0`` (Mächler 2012): ``log1p(-e^l)`` below ``-log 2``,
    ``log(-expm1(l))`` above, with ``l`` held at ``-eps`` where it is closer to 0 (``1 - p``
    below the dtype's resolution, where ``l`` itself is ``0`` or at least ``eps / 2`` away):
    finite, with finite derivatives of every order, at ``p = 1``."""
    far = log_p < _LOG_HALF
    eps = torch.finfo(log_p.dtype).eps
    near = torch.where(far, -1.0, log_p).clamp(max=-eps)
    return torch.where(
        far, torch.log1p(-torch.exp(torch.where(far, log_p, -1.0))), torch.log(-torch.expm1(near))
    )


def _focal_terms(gamma: float) -> Callable[[Tensor], Tensor]:
    # An integer gamma >= 1 takes (1 - p)^gamma = (-expm1(l))^gamma, a polynomial in 1 - p
    # (exact without cancellation, every derivative finite at p = 1): one transcendental call
    # per term instead of three (exp and expm1 of a short vector are costly on the CPU).
    integer = gamma >= 1 and float(gamma).is_integer()

    def terms(log_p: Tensor) -> Tensor:
        if gamma == 0:
            return -log_p
        if integer:
            return -torch.expm1(log_p).neg().pow(int(gamma)) * log_p
        return -torch.exp(gamma * _log1m_exp(log_p)) * log_p

    return terms


def _poly1_terms(epsilon: float) -> Callable[[Tensor], Tensor]:
    def terms(log_p: Tensor) -> Tensor:
        if epsilon == 0:
            return -log_p
        return -log_p - epsilon * torch.expm1(log_p)

    return terms


def _class_rows_loss(
    log_p: Tensor, rows: Rows, weight: Tensor | None, terms: Callable[[Tensor], Tensor]
) -> Tensor:
    """``sum_c a_c g(l_c)`` per row, exactly 0 on ignored rows."""
    allowed = rows.allowed
    if rows.dense is not None:
        safe = log_p if allowed is None else torch.where(allowed, log_p, 0.0)
        loss = times(rows.dense, terms(safe)).sum(1)
    else:
        assert rows.index is not None and rows.picked is not None
        picked = log_p.gather(1, rows.index.unsqueeze(1)).squeeze(1)
        if allowed is None:
            loss = times(rows.picked, terms(picked))
        else:  # a target class that is removed: +inf, the true value, with a finite gradient
            removed = ~allowed.gather(1, rows.index.unsqueeze(1)).squeeze(1)
            value = torch.where(removed, math.inf, terms(torch.where(removed, 0.0, picked)))
            loss = times(rows.picked, value)
        if rows.spread is not None:
            safe = log_p if allowed is None else torch.where(allowed, log_p, 0.0)
            spread_terms = terms(safe)
            if allowed is not None:
                spread_terms = torch.where(allowed, spread_terms, 0.0)
            total = spread_terms.sum(1) if weight is None else spread_terms @ weight
            loss = loss + rows.spread * total
    return loss if rows.ignored is None else loss.masked_fill(rows.ignored, 0)


def _softmax_loss(
    fn: str,
    terms: Callable[[Tensor], Tensor],
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    label_smoothing: float,
    where: Tensor | None,
) -> Tensor:
    """The softmax losses' common body: cross_entropy's targets, masks and weighted mean."""
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input)
    probabilities, out_shape = class_shapes(fn, input, target)
    check_class_weight(fn, weight, input)
    keep = allowed = None
    if where is not None:
        classes = softmax_mask(fn, where, out_shape, tuple(input.shape))
        if classes:
            allowed = as_rows(where.expand(input.shape))
            keep = allowed.any(1)
        else:
            keep = where.expand(out_shape).reshape(-1)
    if probabilities:
        if ignore_index >= 0:
            fail(
                ValueError,
                fn,
                "ignore_index",
                "be negative for a floating-point target (ignore_index is not supported for "
                "class probabilities)",
                ignore_index,
            )
        dtype = torch.promote_types(input.dtype, target.dtype)
        work = compute_dtype(dtype)
        x, q = as_rows(input).to(work), as_rows(target).to(work)
        class_weight = None if weight is None else weight.to(work)
        x, rows = masked_probability_rows(x, q, class_weight, label_smoothing, keep, allowed)
        loss = _class_rows_loss(torch.log_softmax(x, 1), rows, None, terms).to(dtype)
        row_mask = None if keep is None else keep.view(out_shape)
        return reduce(loss.reshape(out_shape), reduction, where=row_mask)
    x = as_rows(input)
    flat_target = as_index(target.reshape(-1))
    if keep is not None:
        flat_target = torch.where(keep, flat_target, ignore_index)  # not read, counted nowhere
    num_classes = x.shape[1]
    index, ignored = class_index_mask(fn, flat_target, num_classes, ignore_index, gathered=True)
    if allowed is not None:
        x = masked(allowed, x, -math.inf)
    if ignored is not None:  # ignored (and masked) rows: finite, whatever they hold
        x = x.masked_fill(ignored.unsqueeze(1), 0)
    work = compute_dtype(input.dtype)
    class_weight = None if weight is None else weight.to(work)
    rows = class_rows(index, ignored, class_weight, label_smoothing, num_classes, work, allowed)
    try:
        loss = _class_rows_loss(torch.log_softmax(x.to(work), 1), rows, class_weight, terms)
    except RuntimeError:  # gather's own range check (gathered=True): the clear IndexError
        check_class_indices(fn, flat_target, num_classes, ignore_index)
        raise
    loss = loss.to(input.dtype)
    if reduction == "none":
        return loss.view(out_shape)
    return reduce(loss, reduction, where=keep, mean_weight=rows.row_weight.to(loss.dtype))


def _softmax_config(fn: str, reduction: str, ignore_index: int, label_smoothing: float) -> None:
    check_reduction(fn, reduction)
    check_index(fn, ignore_index=ignore_index)
    check_in_range(fn, "label_smoothing", label_smoothing, 0.0, 1.0)


def _focal_config(
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> None:
    _check_gamma("focal_loss", "gamma", gamma)
    _softmax_config("focal_loss", reduction, ignore_index, label_smoothing)


@follows_autocast("float32")
@checks_config(_focal_config)
def focal_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    gamma: float = 2.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    where: Tensor | None = None,
) -> Tensor:
    r"""Softmax focal loss: cross-entropy with each class's term down-weighted by
    :math:`(1 - p_c)^\gamma`.

    Multi-class focal loss (Lin et al. 2017) for imbalanced classification and dense prediction;
    takes exactly what :func:`cross_entropy` takes (class indices or probabilities, K-dim,
    unbatched, class ``weight``, ``ignore_index``, ``label_smoothing``, row and class masks) and
    is :func:`cross_entropy` at :math:`\gamma = 0`.

    .. math::
        \ell_n = -\sum_c a_{n,c}\, (1 - p_{n,c})^\gamma \log p_{n,c}, \qquad
        p_n = \mathrm{softmax}(x_n), \qquad a_{n,c} = w_c\, q_{n,c}

    with :math:`q_n` the (smoothed) one-hot class or the given probabilities, as in
    :func:`cross_entropy`; ``"mean"`` is its weighted mean (class indices: divided by
    :math:`\sum_n w_{y_n}` over the rows not ignored; probabilities: by the number of rows).
    :math:`(1 - p)^\gamma = \exp(\gamma \log(1 - p))` with :math:`\log(1 - p)` from
    :math:`\log p` (``log_softmax``) without cancellation (for an integer :math:`\gamma \ge 1`,
    the polynomial :math:`(-\operatorname{expm1}(\log p))^\gamma`), so a saturated correct
    class (:math:`p = 1` to rounding) gives a finite value and finite derivatives of every order
    for every :math:`\gamma \ge 0`; MONAI's ``(1 - p) ** gamma`` gives NaN gradients there for
    :math:`\gamma < 1`.

    Kornia's ``focal_loss`` and MONAI's ``FocalLoss(use_softmax=True)`` compute the same terms
    for class indices (without ``alpha``); kornia's ``"mean"`` divides by :math:`N C` (every
    class of every pixel), MONAI's by :math:`N` times the pixels (its default ``"mean"`` also
    averages over classes).

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``, floating dtype.
        target: class indices (integer dtype, ``input``'s shape without the class dimension)
            or class probabilities (floating, ``input``'s shape), as :func:`cross_entropy`.
        weight: optional per-class weight, shape ``(C,)``, ``input``'s dtype.
        gamma: :math:`\gamma \ge 0`, the focusing exponent.
        ignore_index: class index whose rows contribute nothing (class indices only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``, as :func:`cross_entropy`.
        where: optional bool row mask or class mask, as :func:`cross_entropy`'s.

    Returns:
        Shape of the target without the class dimension for ``"none"`` (0 at masked rows),
        else a 0-dim tensor.

    Raises:
        TypeError: integer logits, a target of neither integer nor floating dtype, a non-bool
            ``where``.
        ValueError: shapes, ``gamma < 0`` or not finite, bad ``reduction``/``label_smoothing``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> funcloss.focal_loss(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.0109, 0.0008])
        >>> funcloss.focal_loss(logits, torch.tensor([0, 2]), gamma=0.0)  # cross_entropy
        tensor(0.1672)

    References:
        Lin, Goyal, Girshick, He and Dollár, "Focal Loss for Dense Object Detection", ICCV 2017;
        ``kornia.losses.focal_loss``, ``monai.losses.FocalLoss``.
    """
    _focal_config(
        gamma=gamma, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing
    )
    return _softmax_loss(
        "focal_loss",
        _focal_terms(float(gamma)),
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        where,
    )


def _poly1_config(
    *,
    epsilon: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> None:
    fn = "poly1_cross_entropy"
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float):
        fail(TypeError, fn, "epsilon", "be a real number", type(epsilon).__name__)
    if not math.isfinite(epsilon):
        fail(ValueError, fn, "epsilon", "be finite", epsilon)
    _softmax_config(fn, reduction, ignore_index, label_smoothing)


@follows_autocast("float32")
@checks_config(_poly1_config)
def poly1_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    epsilon: float = 1.0,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    where: Tensor | None = None,
) -> Tensor:
    r"""Poly-1 cross-entropy (PolyLoss): cross-entropy plus :math:`\varepsilon (1 - p_t)`.

    The first-order PolyLoss of Leng et al. 2022, a one-parameter tweak of cross-entropy that
    raises (:math:`\varepsilon > 0`) or lowers the weight of the leading polynomial term; takes
    exactly what :func:`cross_entropy` takes and is :func:`cross_entropy` at
    :math:`\varepsilon = 0`.

    .. math::
        \ell_n = \sum_c a_{n,c} \left(-\log p_{n,c} + \varepsilon (1 - p_{n,c})\right)
               = \mathrm{CE}_n + \varepsilon \Big(A_n - \sum_c a_{n,c}\, p_{n,c}\Big)

    with :math:`a_{n,c} = w_c q_{n,c}` the cross-entropy's target weights (:math:`q` the
    smoothed one-hot class or the given probabilities) and :math:`A_n = \sum_c a_{n,c}`;
    without class weights :math:`A_n = 1` and the extra term is the paper's
    :math:`\varepsilon (1 - \sum_c q_c p_c)`. ``"mean"`` is the cross-entropy's weighted mean.
    :math:`1 - p` is ``-expm1(log p)`` (no cancellation).

    The paper's default is :math:`\varepsilon = 1` (used here); optax's
    ``poly_loss_cross_entropy`` and timm default to :math:`\varepsilon = 2`. optax takes
    probabilities only (no class weight, no ignore_index) and reduces nothing.

    Args:
        input: logits, shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``, floating dtype.
        target: class indices or class probabilities, as :func:`cross_entropy`.
        weight: optional per-class weight, shape ``(C,)``, ``input``'s dtype.
        epsilon: :math:`\varepsilon`, any finite number (the paper tunes it in
            :math:`[-1, \infty)`; below -1 the loss is no longer convex).
        ignore_index: class index whose rows contribute nothing (class indices only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``, as :func:`cross_entropy`.
        where: optional bool row mask or class mask, as :func:`cross_entropy`'s.

    Returns:
        Shape of the target without the class dimension for ``"none"`` (0 at masked rows),
        else a 0-dim tensor.

    Raises:
        TypeError: integer logits, a target of neither integer nor floating dtype, a
            non-number ``epsilon``, a non-bool ``where``.
        ValueError: shapes, a non-finite ``epsilon``, bad ``reduction``/``label_smoothing``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
        >>> funcloss.poly1_cross_entropy(logits, torch.tensor([0, 2]), reduction="none")
        tensor([0.4526, 0.1855])

    References:
        Leng, Xu, Tan, Yu, Shen, Zhu, Wang, Alipanahi and Diamant, "PolyLoss: A Polynomial
        Expansion Perspective of Classification Loss Functions", ICLR 2022;
        ``optax.losses.poly_loss_cross_entropy``.
    """
    _poly1_config(
        epsilon=epsilon,
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    return _softmax_loss(
        "poly1_cross_entropy",
        _poly1_terms(float(epsilon)),
        input,
        target,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        where,
    )


# -- asymmetric_loss -------------------------------------------------------------------------


def _asymmetric_config(
    *, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, reduction: str = "mean"
) -> None:
    fn = "asymmetric_loss"
    _check_gamma(fn, "gamma_pos", gamma_pos)
    _check_gamma(fn, "gamma_neg", gamma_neg)
    if isinstance(clip, bool) or not isinstance(clip, int | float):
        fail(TypeError, fn, "clip", "be a real number", type(clip).__name__)
    if not 0 <= clip < 1:
        fail(ValueError, fn, "clip", "be in [0, 1)", clip)
    check_reduction(fn, reduction)


def _asymmetric_terms(
    input: Tensor, target: Tensor, gamma_pos: float, gamma_neg: float, clip: float
) -> Tensor:
    # positive: (1 - p)^gamma+ (-log p) = exp(-gamma+ softplus(x)) softplus(-x)
    positive = softplus(-input)
    if gamma_pos != 0:
        positive = positive * torch.exp(-gamma_pos * softplus(input))
    # negative: p_m^gamma- (-log(1 - p_m)), p_m = max(p - clip, 0)
    if clip == 0:
        negative = softplus(input)  # -log(1 - p)
        if gamma_neg != 0:
            negative = negative * torch.exp(-gamma_neg * softplus(-input))
    elif gamma_neg >= 1 and float(gamma_neg).is_integer():
        # p_m^gamma- a polynomial in p_m = relu(p - m): exactly 0 below the margin (where
        # -log(sigma(-x) + m) may be negative: no clamp needed), every derivative finite, and
        # the term is finite (<= -log m), so a plain product with 1 - y: no where at all
        p_m = torch.relu(torch.sigmoid(input) - clip)
        negative = -torch.log(torch.sigmoid(-input) + clip) * p_m.pow(int(gamma_neg))
        return times(target, positive) + (1 - target) * negative
    else:
        shifted = torch.sigmoid(input) - clip
        active = shifted > 0  # p_m = 0 below the margin: the term is exactly 0 there
        # -log(1 - p_m) = -log(sigma(-x) + clip) >= 0, finite: sigma(-x) + clip >= clip
        negative = -torch.log(torch.sigmoid(-input) + clip).clamp(max=0.0)
        if gamma_neg != 0:
            safe = torch.where(active, shifted, 1.0)  # no log(0) in any derivative
            negative = negative * torch.exp(gamma_neg * torch.log(safe))
        negative = torch.where(active, negative, 0.0)
    return times(target, positive) + times(1 - target, negative)


@follows_autocast("float32")
@checks_config(_asymmetric_config)
def asymmetric_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Asymmetric loss (ASL) for multi-label classification: focal weights that differ for
    positives and negatives, and a probability margin that discards easy negatives.

    For multi-label problems with many more negative than positive labels per sample (Ridnik
    et al. 2021). Elementwise on logits and multi-hot (or soft) targets:

    .. math::
        \ell = -y\,(1 - p)^{\gamma_+} \log p - (1 - y)\, p_m^{\gamma_-} \log(1 - p_m),
        \qquad p = \sigma(x), \quad p_m = \max(p - m, 0)

    with :math:`m` the ``clip`` margin. Computed from the logits: :math:`-\log p =
    \operatorname{softplus}(-x)`, :math:`(1 - p)^{\gamma_+} = e^{-\gamma_+
    \operatorname{softplus}(x)}`, :math:`1 - p_m = \sigma(-x) + m` (:math:`\ge m`, so its log
    is finite), :math:`p_m^{\gamma_-}` in log space (a polynomial in :math:`p_m` for an
    integer :math:`\gamma_- \ge 1`): the value and its derivatives are finite
    at every finite logit, and the gradient of a positive label is the true one however
    negative its logit. timm's ``AsymmetricLossMultiLabel`` takes ``log(clamp(p, eps))``, so a
    positive label below :math:`p = 10^{-8}` (logit :math:`\approx -18.4`) gets a zero
    gradient however wrong it is, and with ``disable_torch_grad_focal_loss`` its backward
    skips the focal weight's derivative that its forward contains (the gradient is not the
    derivative of the value). For soft labels this is the paper's :math:`y L_+ + (1 - y) L_-`;
    timm instead raises :math:`1 - p_t` to the mixed exponent :math:`\gamma_+ y + \gamma_- (1 -
    y)` (the two agree on 0/1 labels). :math:`\gamma_+ = \gamma_- = m = 0` gives
    :func:`binary_cross_entropy_with_logits`.

    Args:
        input: logits, any shape (typically ``(N, C)``), floating dtype.
        target: ``input``'s shape, floating dtype: multi-hot labels or soft labels in
            ``[0, 1]`` (not checked).
        gamma_pos: :math:`\gamma_+ \ge 0`, the focusing exponent of the positives (the
            paper's and timm's defaults differ: 0 here and in the paper, 1 in timm).
        gamma_neg: :math:`\gamma_- \ge 0`, the focusing exponent of the negatives.
        clip: the margin :math:`m` in ``[0, 1)``; 0 switches the shifting off.
        reduction: ``"none"`` | ``"mean"`` (over every element) | ``"sum"`` (the paper's and
            timm's original reduction; timm's ``"batchmean"`` is ``"sum"`` divided by ``N``).
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the promoted
        dtype of ``input`` and ``target``.

    Raises:
        TypeError: non-floating ``input`` or ``target``, non-number config, a non-bool
            ``where``.
        ValueError: shapes that differ, a negative or non-finite ``gamma_pos``/``gamma_neg``,
            ``clip`` outside ``[0, 1)``, bad ``reduction``.

    Examples:
        >>> x = torch.tensor([[2.0, -1.0, -3.0]])
        >>> funcloss.asymmetric_loss(x, torch.tensor([[1.0, 0.0, 0.0]]), reduction="none")
        tensor([[0.1269, 0.0006, 0.0000]])

    References:
        Ridnik, Ben-Baruch, Zamir, Noy, Friedman, Protter and Zelnik-Manor, "Asymmetric Loss
        For Multi-Label Classification", ICCV 2021; ``timm.loss.AsymmetricLossMultiLabel``.
    """
    fn = "asymmetric_loss"
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input)
    if not target.is_floating_point():
        fail(
            TypeError,
            fn,
            "target",
            "have a floating-point dtype (multi-hot or soft labels)",
            target.dtype,
            "Pass `target.float()`; for class indices use focal_loss.",
        )
    check_same_shape(fn, input=input, target=target)
    _asymmetric_config(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, reduction=reduction)
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input), masked(where, target)
    shape = input.shape
    # 1-d: under jacfwd a 0-dim tensor times a Python float has a float64 tangent (pytorch#90065)
    input, target = input.to(work).reshape(-1), target.to(work).reshape(-1)
    loss = _asymmetric_terms(input, target, float(gamma_pos), float(gamma_neg), float(clip))
    return reduce(loss.view(shape), reduction, where=where).to(dtype)
