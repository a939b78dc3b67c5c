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

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    check_floating,
    check_reduction,
    check_same_shape,
    check_tensor,
    check_where,
    checks_config,
    fail,
    in_place_safe,
    plain_eager,
    promoted_dtype,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

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


def _in_place_modulating(w: Tensor, e: Tensor, log1p_e: Tensor, gamma: float) -> Tensor:
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
