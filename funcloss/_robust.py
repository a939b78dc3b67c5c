"""Robust regression losses: log-cosh, Barron's general robust loss and its named members
(Charbonnier, Cauchy, Geman-McClure, Welsch), the quantile (pinball) loss and the cosine
distance.

Plain torch compositions, written so that nothing overflows and every derivative is finite and
exact, including at a residual of 0 (no ``abs``: its derivative is 0 and its second
derivative is lost there) and at the limits of Barron's family. For speed, log-cosh, the
Barron losses (a number scale and alpha, equal shapes, no mask) and the cosine distance (equal
shapes, no mask) go through ``custom_backward`` Functions that also reduce: in eager mode a few
in-place passes forward and a closed-form backward; traced or under a transform the exact
composition, and an exact, differentiable backward (the compositions that keep every value and
derivative exact cost a dozen passes or more to differentiate).

Masks (``where=``) replace the masked inputs by 0 (residual 0: every loss and derivative is
finite there) before any arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    broadcast_shape,
    check_floating,
    check_number,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    fail,
    in_place_safe,
    plain_eager,
    promoted_dtype,
    shape_str,
    value_checks_enabled,
)
from ._function import custom_backward
from ._modes import follows_autocast, under_transform
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

# A config value that may be a Python number or a tensor (a learnt scale, several quantiles).
# Not spelt with "Tensor": loss_module keeps a number as an attribute and a tensor as a buffer.
Scalar = float | Tensor

_LOG_2 = math.log(2.0)


def _number(value: float, like: Tensor) -> float | Tensor:
    """``value`` as a 0-dim tensor of ``like``'s dtype under a torch.func transform: there a
    0-dim tensor times a Python float has a float64 tangent under ``jacfwd`` (pytorch#90065)."""
    if under_transform():
        return torch.full((), value, dtype=like.dtype, device=like.device)
    return value


# -- checks ------------------------------------------------------------------------------------


def _check_pair(fn: str, input: Tensor, target: Tensor, where: Tensor | None) -> torch.Size:
    """Floating ``input`` and ``target`` that broadcast together, and a mask that broadcasts
    to their shape; returns the shape."""
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    shape = broadcast_shape(fn, input=input, target=target)
    check_where(fn, where, shape)
    return shape


def _check_scalar(fn: str, name: str, value: object, rule: str, low: float, high: float) -> None:
    """A number or a floating tensor with values in the open interval ``(low, high)`` (``rule``
    says so in words). A tensor's values are read in plain eager mode only (one read)."""
    if isinstance(value, Tensor):
        check_floating(fn, **{name: value})
        if value_checks_enabled(value) and value.numel():
            inside = (value > low) & (value < high)
            if not bool(inside.all()):
                first = float(value[~inside].flatten()[0])
                raise ValueError(f"{fn}: `{name}` values must {rule}, got {first}.")
        return
    check_number(fn, **{name: value})  # type: ignore[arg-type]
    if not low < value < high:  # type: ignore[operator]
        fail(ValueError, fn, name, rule, value)


def _check_scale(fn: str, scale: object) -> None:
    _check_scalar(fn, "scale", scale, "be positive", 0.0, math.inf)


def _residual(input: Tensor, target: Tensor, where: Tensor | None) -> Tensor:
    """``input - target`` in the compute dtype (float32 for half precision), 0 where masked."""
    dtype = compute_dtype(promoted_dtype(input, target))
    input, target = masked(where, input), masked(where, target)
    return input.to(dtype) - target.to(dtype)


def _finish(loss: Tensor, reduction: str, where: Tensor | None, dtype: torch.dtype) -> Tensor:
    return reduce(loss, reduction, where=where).to(dtype)  # type: ignore[arg-type]


def _mean_factor(reduction: str, input: Tensor) -> float:
    """What the gradient of a reduced loss is multiplied by: 1 / N for a mean."""
    return 1 / max(input.numel(), 1) if reduction == "mean" else 1.0


# -- log_cosh_loss -----------------------------------------------------------------------------

# log cosh r = log1p(2 sinh(r/2)^2): exact to rounding, smooth through 0. Past |r| = 40 it is
# |r| - log 2 to float64's resolution (the rest is 2e-35), so the residual is clamped there (no
# overflow of sinh^2, even in float16's float32 compute) and the excess added back linearly.
_LOG_COSH_LINEAR_ABOVE = 40.0


def _log_cosh_values(input: Tensor, target: Tensor) -> Tensor:
    r = input - target
    if in_place_safe(input, target):  # the Function's forward: fresh buffers, no graph
        half = r.mul(0.5).clamp_(-_LOG_COSH_LINEAR_ABOVE / 2, _LOG_COSH_LINEAR_ABOVE / 2)
        sinh = half.sinh_()
        value = torch.addcmul(sinh.new_zeros(()), sinh, sinh, value=2, out=sinh).log1p_()
        return value.add_(torch.nn.functional.softshrink(r, _LOG_COSH_LINEAR_ABOVE).abs_())
    sinh = torch.sinh(r.clamp(-_LOG_COSH_LINEAR_ABOVE, _LOG_COSH_LINEAR_ABOVE) / 2)
    near = torch.log1p(sinh * sinh * 2)
    return near + torch.nn.functional.softshrink(r, _LOG_COSH_LINEAR_ABOVE).abs()


def _log_cosh_forward(input: Tensor, target: Tensor, reduction: str) -> Tensor:
    return reduce(_log_cosh_values(input, target), reduction)  # type: ignore[arg-type]


_log_cosh_function = custom_backward(_log_cosh_forward)


@_log_cosh_function.backward
def _log_cosh_backward(
    grad: Tensor, input: Tensor, target: Tensor, reduction: str
) -> tuple[Tensor, Tensor | None]:
    # d/dx log cosh(x - y) = tanh(x - y) = -d/dy; a mean's 1 / N, a reduction's scalar grad
    factor = _mean_factor(reduction, input)
    if in_place_safe(grad, input, target):
        slope = torch.sub(input, target).tanh_()
        grad_input = slope.mul_(grad if factor == 1 else grad * factor)
    else:
        grad_input = torch.tanh(input - target) * grad
        if factor != 1:
            grad_input = grad_input * _number(factor, grad_input)
    if not target.requires_grad and plain_eager(target):
        return grad_input, None
    return grad_input, -grad_input


@_log_cosh_function.jvp
def _log_cosh_jvp(
    input_t: Tensor, target_t: Tensor, input: Tensor, target: Tensor, reduction: str
) -> Tensor:
    return reduce(torch.tanh(input - target) * (input_t - target_t), reduction)  # type: ignore[arg-type]


def _check_log_cosh_config(*, reduction: str = "mean") -> None:
    check_reduction("log_cosh_loss", reduction)


@follows_autocast("promoted")
@checks_config(_check_log_cosh_config)
def log_cosh_loss(
    input: Tensor,
    target: Tensor,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Log-cosh loss: quadratic for small residuals, linear (slope 1) for large ones.

    A smooth Huber: :math:`\tfrac12 r^2` near 0, :math:`|r| - \log 2` far out, twice
    differentiable everywhere (Huber's second derivative jumps).

    .. math::
        \ell(x, y) = \log\cosh(x - y), \qquad \ell' = \tanh(x - y), \qquad
        \ell'' = 1 - \tanh^2(x - y)

    computed as :math:`\operatorname{log1p}(2 \sinh^2(r/2))`, exact to rounding for tiny
    residuals, and linearly past :math:`|r| = 40`: no overflow at any residual in any dtype
    (``log(cosh(r))`` is ``inf`` from :math:`|r| \approx 89` in float32 and 12 in float16,
    torchmetrics #3488). The gradient, :math:`\tanh r`, is hand-written; every derivative at
    :math:`r = 0` is the true one (0, then 1). Half precision is computed in float32.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"`` (0 where masked), else
        a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input or target, a non-bool ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``.

    Examples:
        >>> funcloss.log_cosh_loss(torch.tensor([0.0, 1.0, 5.0]), torch.zeros(3), reduction="none")
        tensor([0.0000, 0.4338, 4.3069])
        >>> funcloss.log_cosh_loss(torch.tensor([700.0]), torch.zeros(1))  # log(cosh(700.)) = inf
        tensor(699.3069)

    References:
        optax ``log_cosh``; Chen et al., "Log Hyperbolic Cosine Loss Improves Variational
        Auto-Encoder" (2019).
    """
    fn = "log_cosh_loss"
    _check_pair(fn, input, target, where)
    _check_log_cosh_config(reduction=reduction)
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    input, target = masked(where, input).to(work), masked(where, target).to(work)
    if input.shape == target.shape and where is None:
        return _log_cosh_function(input, target, reduction).to(dtype)
    return _finish(_log_cosh_values(input, target), reduction, where, dtype)


# -- Barron's general robust loss and its named members ----------------------------------------
#
# With r = x - y and u = r / c (signed: no abs near 0, so the derivatives there are exact),
# every member is written without overflow (u^2 overflows float32 from |u| = 2e19), without
# cancellation, and with the limits of its derivatives at an infinite residual:
#   sqrt(u^2 + 1) - 1 = u^2 / (hypot(u, 1) + 1) for |u| < 1, else |u| - 1 + 1 / (|u| (...))
#   ell = 1/2 log1p((r / k)^2), k = c sqrt(b): log1p of the above for |r| < k, else
#         log|r| - log k + 1/2 log1p((k / r)^2)
#   rho = b / alpha * expm1(alpha ell),  b = |alpha - 2|   (Barron's eq. 1)
# and at alpha = 0 the limit b ell exprel(alpha ell) (exprel(t) = expm1(t) / t) is the same
# function, analytic in alpha: near t = alpha ell = 0 it is evaluated by its series, so that
# its derivatives in alpha are exact too (autograd of expm1(t) / t cancels there). Each branch
# is selected by a double ``where`` (the other branch sees a harmless value).


def _sqrt1p_minus_one(u: Tensor) -> Tensor:
    """``sqrt(u^2 + 1) - 1`` for ``|u| < 1`` (where the caller selects it): no cancellation."""
    return u * u / (torch.hypot(u, u.new_ones(())) + 1)


def _charbonnier_of(u: Tensor) -> Tensor:
    """``sqrt(u^2 + 1) - 1`` everywhere, ``inf`` (slope 1) at ``u = inf``."""
    small = u.abs() < 1
    near = _sqrt1p_minus_one(torch.where(small, u, 0))
    far_u = torch.where(small, 1, u).abs()
    inverse = 1 / far_u
    far = far_u - 1 + inverse / (torch.hypot(inverse, inverse.new_ones(())) + 1)
    return torch.where(small, near, far)


def _half_log1p_square(r: Tensor, k: float | Tensor) -> Tensor:
    """``log1p((r / k)^2) / 2`` for ``k > 0``, without overflow, finite derivatives at
    ``r = inf`` (their limit, 0)."""
    small = r.abs() < k
    near = torch.log1p(_sqrt1p_minus_one(torch.where(small, r, 0) / k))
    far_r = torch.where(small, k, r).abs()
    ratio = k / far_r
    log_k = torch.log(k) if isinstance(k, Tensor) else _number(math.log(k), r)
    far = torch.log(far_r) - log_k + torch.log1p(ratio * ratio) / 2
    return torch.where(small, near, far)


def _charbonnier(r: Tensor, c: Scalar) -> Tensor:
    return _charbonnier_of(r / c)


def _cauchy(r: Tensor, c: Scalar) -> Tensor:
    return 2 * _half_log1p_square(r, c * _number(math.sqrt(2), r))


def _geman_mcclure(r: Tensor, c: Scalar) -> Tensor:
    # 2 u^2 / (u^2 + 4) = 2 w^2 / (w^2 + 1), w = u / 2; as 2 / (1 + 1 / w^2) for |w| >= 1
    w = r / (c * 2)
    small = w.abs() < 1
    near_w, far_w = torch.where(small, w, 0), torch.where(small, 1, w)
    inverse = 1 / far_w
    return torch.where(
        small, 2 * near_w * near_w / (near_w * near_w + 1), 2 / (inverse * inverse + 1)
    )


# exp(-u^2 / 2) is 0 in float64 from |u| = 39: the clamp changes nothing but the derivatives at
# an infinite residual (0 * inf would be nan).
_WELSCH_FLAT_ABOVE = 40.0


def _welsch(r: Tensor, c: Scalar) -> Tensor:
    u = (r / c).clamp(-_WELSCH_FLAT_ABOVE, _WELSCH_FLAT_ABOVE)
    return -torch.expm1(u * u / -2)


def _barron_number(r: Tensor, c: Scalar, alpha: float) -> Tensor:
    """Barron's rho for a Python number ``alpha`` (the limits by name)."""
    if alpha == 2:
        u = r / c
        return u * u / 2
    if alpha == 0:
        return _cauchy(r, c)
    if alpha == -math.inf:
        return _welsch(r, c)
    b = abs(alpha - 2)
    ell = _half_log1p_square(r, c * _number(math.sqrt(b), r))
    return torch.expm1(ell * _number(alpha, r)) * _number(b / alpha, r)


# Below |t| = |alpha ell| = this, exprel(t) is its series up to t^8 (truncation below 1e-9 in
# float32, 1e-18 in float64); above it, expm1(t) / t, whose derivatives lose at most
# eps / |t|^k to cancellation (2.4e-7 in float32; 4e-14 in float64 at the second derivative).
_EXPREL_SERIES_BELOW = {torch.float64: 0.05}
_EXPREL_SERIES_BELOW_DEFAULT = 0.5
_EXPREL_COEFFICIENTS = [1 / math.factorial(k + 1) for k in range(9)]


def _exprel_series(t: Tensor) -> Tensor:
    coefficients: list[float] | tuple[Tensor, ...] = _EXPREL_COEFFICIENTS
    if under_transform():  # tensors: a Python float would give float64 tangents (see _number)
        coefficients = torch.tensor(coefficients, dtype=t.dtype, device=t.device).unbind()
    value = t * coefficients[-1]
    for c in coefficients[-2:0:-1]:
        value = (value + c) * t
    return value + 1


def _barron_far_forward(r: Tensor, c: Tensor, alpha: Tensor) -> Tensor:
    """``b / alpha expm1(alpha ell)`` of one shape each (``alpha`` finite, not 0 or 2): Barron's
    rho away from its series, with a backward in the log domain."""
    b = (alpha - 2).abs()
    return b / alpha * torch.expm1(alpha * _half_log1p_square(r, c * torch.sqrt(b)))


_barron_far = custom_backward(_barron_far_forward)


def _barron_far_partials(r: Tensor, c: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``d rho / d r``, ``d / d c``, ``d / d alpha`` of :func:`_barron_far_forward`, each one
    expression whose factors fit where it does: with ``u = r / c``, ``b = |alpha - 2|``,
    ``ell = log1p(u^2 / b) / 2``, ``d rho / d u = u exp((alpha - 2) ell)`` (autograd's
    ``exp(alpha ell) * d ell / d u`` overflows first where the derivative fits: residuals near
    1e38 at alpha > 1), and
    ``d / d alpha = f expm1(alpha ell) + exp(alpha ell) (b ell / alpha - s w / 2)`` with
    ``f = (s alpha - b) / alpha^2``, ``s = sign(alpha - 2)``, ``w = u^2 / (b + u^2)``."""
    b = (alpha - 2).abs()
    # an infinite residual reads as the largest finite one; its limits replace the result below
    largest = torch.finfo(r.dtype).max
    infinite = r.isinf()
    finite_r = r.clamp(-largest, largest)
    ell = _half_log1p_square(finite_r, c * torch.sqrt(b))
    u = finite_r / c
    # d rho / d u = u exp((alpha - 2) ell) by logs: u itself may overflow (r near 1e38, c < 1)
    log_u = torch.log(finite_r.abs()) - torch.log(c)
    slope = torch.sign(r) * torch.exp(log_u + (alpha - 2) * ell)
    d_c = -torch.exp(2 * log_u + (alpha - 2) * ell) / c
    sign = torch.sign(alpha - 2)
    w = 1 / (1 + b / (u * u))
    # exp(alpha ell) factored out (away from the series, |alpha ell| >= 1/2, so expm1 = exp - 1
    # loses nothing): where it overflows, the derivative is the bracket's signed inf, not nan
    first = (sign * alpha - b) / (alpha * alpha)
    growth = torch.exp(alpha * ell)
    d_alpha = growth * (first + b * ell / alpha - sign * w / 2) - first
    # the limits at |r| = inf: d/du ~ |u|^(alpha - 1) (sign(r) at alpha = 1), d/dc ~ -|u|^alpha,
    # d/dalpha ~ rho log|u| (-f where rho tends to b / |alpha|, alpha < 0)
    inf = math.inf
    slope = torch.where(
        infinite, torch.sign(r) * torch.where(alpha > 1, inf, (alpha == 1).to(r.dtype)), slope
    )
    d_c = torch.where(infinite, torch.where(alpha > 0, -inf, 0.0), d_c)
    d_alpha = torch.where(infinite, torch.where(alpha > 0, inf, -first), d_alpha)
    return slope / c, d_c, d_alpha


@_barron_far.backward
def _barron_far_backward(
    grad: Tensor, r: Tensor, c: Tensor, alpha: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    d_r, d_c, d_alpha = _barron_far_partials(r, c, alpha)
    return grad * d_r, grad * d_c, grad * d_alpha


@_barron_far.jvp
def _barron_far_jvp(
    r_t: Tensor, c_t: Tensor, alpha_t: Tensor, r: Tensor, c: Tensor, alpha: Tensor
) -> Tensor:
    d_r, d_c, d_alpha = _barron_far_partials(r, c, alpha)
    return d_r * r_t + d_c * c_t + d_alpha * alpha_t


def _barron_tensor(r: Tensor, c: Scalar, alpha: Tensor) -> Tensor:
    """Barron's rho for a tensor ``alpha`` (broadcastable with ``r``), every branch selected
    with a double ``where``: alpha = 2 and -inf by their limits, alpha near 0 by the series."""
    is_two, is_welsch = alpha == 2, alpha == -math.inf
    a = torch.where(is_two | is_welsch, 1, alpha)
    b = (a - 2).abs()
    ell = _half_log1p_square(r, c * torch.sqrt(b))
    t = a * ell
    small = t.abs() < _EXPREL_SERIES_BELOW.get(t.dtype, _EXPREL_SERIES_BELOW_DEFAULT)
    near = b * ell * _exprel_series(torch.where(small, t, 0))
    # Away from the series the log-domain backward (_barron_far, of one shape; at u = 1,
    # alpha = 1 where the series is taken)
    c_tensor = c if isinstance(c, Tensor) else torch.full((), c, dtype=r.dtype, device=r.device)
    r_far, c_far, a_far, small = torch.broadcast_tensors(r, c_tensor, a, small)
    far = _barron_far(
        torch.where(small, c_far, r_far), c_far.contiguous(), torch.where(small, 1, a_far)
    )
    general = torch.where(small, near, far)
    u = torch.where(is_two, r, 0) / c
    welsch = _welsch(torch.where(is_welsch, r, 0), c)  # at r = 1e38 its d / d c is nan
    return torch.where(is_two, u * u / 2, torch.where(is_welsch, welsch, general))


# -- the fast path: a Function with a hand-written backward --------------------------------------
#
# For a Python-number scale (and alpha), equal shapes and no mask, the Barron losses go through
# one custom_backward Function that also reduces: in plain eager mode its forward and backward
# are a few in-place passes over fresh buffers, written directly for each member (no double
# ``where``, no branch computed twice), and the backward of a mean or a sum multiplies by the
# scalar gradient instead of expanding it. Traced or under a torch.func transform the forward is
# the exact composition above and the backward the exact derivative below (double ``where``):
# those are what compile(grad) and the second derivatives differentiate.
#
# Every member in terms of the residual r = x - y and the scale c (rho' is d rho / d r):
#   charbonnier  rho = r q / c,  q = r / (hypot(r, c) + c)      rho' = r / (c hypot(r, c))
#   cauchy       rho = 2 log1p(r q / k),  q = r / (hypot(r, k) + k), k = c sqrt 2
#                                                               rho' = 1 / (c^2 / r + r / 2)
#   geman        rho = 2 / (1 + 4 c^2 / r^2)    rho' = 16 c^2 / ((r + 4 c^2 / r) (r^2 + 4 c^2))
#   welsch       rho = -expm1(-r^2 / 2c^2)      rho' = r / c^2 exp(-r^2 / 2c^2)
#   barron       rho = b / alpha expm1(alpha log1p(r q / k)),  q as cauchy's, k = c sqrt b
#                                               rho' = r / c^2 (hypot(r, k) / k)^(alpha - 2)
# In q the residual is clamped to the finite range (inf / inf is nan; the clamp changes nothing
# else: hypot(max, k) + k rounds to max), and the unclamped r multiplies it (rho(inf) = inf).
# Each form is exact to rounding for tiny residuals (no cancellation) and free of overflow.


def _fast_q(r: Tensor, k: float, value: float = 1.0) -> Tensor:
    """``value * r / (hypot(r, k) + k)`` (``|r / (...)| <= 1``) for ``|r| <= inf``, a fresh
    buffer."""
    rc = r.clamp(-torch.finfo(r.dtype).max, torch.finfo(r.dtype).max)
    h = torch.hypot(rc, r.new_full((), k)).add_(k)
    if value == 1:
        return rc.div_(h)
    return torch.addcdiv(r.new_zeros(()), rc, h, value=value, out=rc)


def _fast_rho(r: Tensor, kind: str, c: float, alpha: float) -> tuple[Tensor, float] | None:
    """``(t, f)`` with ``rho = f * t``, computed in place on the fresh residual ``r``; ``None``
    where the log overflowed for a bounded Barron loss (see :func:`_may_overflow`)."""
    if kind == "charbonnier":
        return _fast_q(r, c).mul_(r), 1 / c
    if kind == "cauchy":
        k = c * math.sqrt(2)
        return _fast_q(r, k, 1 / k).mul_(r).log1p_(), 2.0
    if kind == "geman":  # 1 / r^2 = inf at r = 0: 1 / inf = 0
        s = r.reciprocal_()
        return torch.addcmul(s.new_ones(()), s, s, value=4 * c * c, out=s).reciprocal_(), 2.0
    if kind == "welsch":  # -0 + (-0.5 r^2): -0 at r = 0, so that -expm1 is +0
        minus_zero = r.new_full((), -0.0)
        return torch.addcmul(minus_zero, r, r, value=-0.5 / (c * c), out=r).expm1_(), -1.0
    if kind == "l2":
        return r.square_(), 0.5 / (c * c)
    b = abs(alpha - 2)
    k = c * math.sqrt(b)
    ell = _fast_q(r, k, 1 / k).mul_(r).log1p_()
    if alpha < 0 and k < 1 and bool(torch.isinf(ell).any()):  # see _may_overflow
        return None
    return ell.mul_(alpha).expm1_(), b / alpha


def _fast_slope(r: Tensor, kind: str, c: float, alpha: float) -> tuple[Tensor, float]:
    """``(t, f)`` with ``rho' = f * t``, computed in place on the fresh residual ``r``."""
    if kind == "charbonnier":
        r.clamp_(-torch.finfo(r.dtype).max, torch.finfo(r.dtype).max)
        return r.div_(torch.hypot(r, r.new_full((), c))), 1 / c
    if kind == "cauchy":  # 1 / (c^2 (1 / r + r / 2c^2)); r = 0 gives 1 / inf = 0
        t = torch.reciprocal(r).add_(r, alpha=0.5 / (c * c))
        return t.reciprocal_(), 1 / (c * c)
    if kind == "geman":  # r = 0 and r = inf give 1 / inf = 0
        four_c2 = 4 * c * c
        s = torch.reciprocal(r)
        s = torch.add(r, s, alpha=four_c2, out=s)
        return s.mul_(torch.addcmul(r.new_full((), four_c2), r, r, out=r)).reciprocal_(), (
            4 * four_c2
        )
    if kind == "l2":
        return r, 1 / (c * c)
    if kind == "welsch":  # |r| <= 40 c: exp(-800) is 0, so that inf * 0 is not nan
        r.clamp_(-_WELSCH_FLAT_ABOVE * c, _WELSCH_FLAT_ABOVE * c)
        t = torch.addcmul(r.new_zeros(()), r, r, value=-0.5 / (c * c))
        return t.exp_().mul_(r), 1 / (c * c)
    # r h^(alpha - 2), h = hypot(r, k), at r = inf: its limit, not inf * 0 = nan. For alpha < 1
    # (limit 0) r is clamped after h; for 1 < alpha < 2 (limit inf) h is clamped
    b = abs(alpha - 2)
    k = c * math.sqrt(b)
    biggest = torch.finfo(r.dtype).max
    t = torch.hypot(r, r.new_full((), k))
    if alpha < 1:
        r.clamp_(-biggest, biggest)
    elif alpha < 2:
        t.clamp_max_(biggest)
    factor = k ** (2 - alpha) / (c * c)
    if not 1e-30 < factor < 1e30:  # keep the constant well inside float32's range
        t.div_(k)
        factor = 1 / (c * c)
    return t.pow_(alpha - 2).mul_(r), factor


def _exact_slope(r: Tensor, kind: str, c: float, alpha: float) -> Tensor:
    """``rho'(r)``, differentiable with exact derivatives everywhere (also at 0 and +-inf):
    each branch selected with a double ``where``."""
    if kind == "welsch":
        flat = _WELSCH_FLAT_ABOVE * c
        rc = r.clamp(-flat, flat)
        u = rc / _number(c, r)
        return u * torch.exp(u * u * _number(-0.5, r)) / _number(c, r)
    if kind == "l2":
        return r / _number(c * c, r)
    biggest = torch.finfo(r.dtype).max
    if kind not in ("cauchy", "geman", "charbonnier"):
        # r exp((alpha - 2) ell(r)) with its limit at r = inf (as _fast_slope's)
        k = _number(c * math.sqrt(abs(alpha - 2)), r)
        rc = r.clamp(-biggest, biggest)
        if alpha < 1:
            power = torch.exp(_half_log1p_square(r, k) * _number(alpha - 2, r))
            return rc * power / _number(c * c, r)
        power = torch.exp(_half_log1p_square(rc, k) * _number(alpha - 2, r))
        return r * power / _number(c * c, r)
    scale = {"charbonnier": c, "cauchy": c, "geman": 2 * c}[kind]
    w = r / _number(scale, r)
    small = w.abs() < 1
    near_w, far_w = torch.where(small, w, 0), torch.where(small, 1, w)
    inverse = 1 / far_w
    one = w.new_ones(())
    if kind == "charbonnier":  # w / hypot(w, 1)
        near = near_w / torch.hypot(near_w, one)
        far = torch.sign(far_w) / torch.hypot(inverse, one)
    elif kind == "cauchy":  # 2 w / (w^2 + 2)
        near = near_w * 2 / (near_w * near_w + 2)
        far = 2 / (far_w + inverse * 2)
    else:  # d/dw of 2 w^2 / (w^2 + 1) = 4 w / (w^2 + 1)^2, times dw/dr = 1 / 2c
        denominator = near_w * near_w + 1
        near = near_w * 2 / (denominator * denominator)
        square = inverse * inverse + 1
        far = inverse * inverse * inverse * 2 / (square * square)
    return torch.where(small, near, far) / _number(c, r)


def _exact_rho(r: Tensor, kind: str, c: float, alpha: float) -> Tensor:
    scale: Scalar = 1 if c == 1 else _number(c, r)
    if kind == "barron":
        return _barron_number(r, scale, alpha)
    if kind == "l2":
        return _barron_number(r, scale, 2.0)
    return _EXACT_RHO[kind](r, scale)


_EXACT_RHO: dict[str, Callable[[Tensor, Scalar], Tensor]] = {
    "charbonnier": _charbonnier,
    "cauchy": _cauchy,
    "geman": _geman_mcclure,
    "welsch": _welsch,
}


def _may_overflow(kind: str, c: float, alpha: float) -> bool:
    """Whether the fast forward's ``r q / k`` (up to ``|r| / k``) may overflow where the loss
    (its log) does not: for ``k < 1`` (below it ``|r| q / k <= |r|``), only the log forms.
    Then an infinite result (one read of the reduced value; for ``alpha < 0``, whose loss is
    bounded, of the log) sends the call to the exact composition: in eager mode on the CPU
    with the value checks on (``set_value_checks``) only, else the composition directly."""
    if kind == "cauchy":
        return c * math.sqrt(2) < 1
    return kind == "barron" and c * math.sqrt(abs(alpha - 2)) < 1


def _robust_forward(
    input: Tensor, target: Tensor, kind: str, c: float, alpha: float, reduction: str
) -> Tensor:
    overflow = _may_overflow(kind, c, alpha)
    if in_place_safe(input, target) and (not overflow or value_checks_enabled(input, target)):
        fast = _fast_rho(torch.sub(input, target), kind, c, alpha)
        if fast is not None:
            t, factor = fast
            out = t if reduction == "none" else t.sum() if reduction == "sum" else t.mean()
            if factor != 1:
                out.mul_(factor)
            bounded = kind == "barron" and alpha < 0  # read in _fast_rho
            if not overflow or bounded or not bool(torch.isinf(out).any()):
                return out
        # rare: (r / k)^2 overflowed on the way to a log that fits; the exact composition
    return reduce(_exact_rho(input - target, kind, c, alpha), reduction)  # type: ignore[arg-type]


_robust_function = custom_backward(_robust_forward)


@_robust_function.backward
def _robust_backward(
    grad: Tensor,
    input: Tensor,
    target: Tensor,
    kind: str,
    c: float,
    alpha: float,
    reduction: str,
) -> tuple[Tensor, Tensor | None]:
    factor = _mean_factor(reduction, input)
    if in_place_safe(grad, input, target):
        t, f = _fast_slope(torch.sub(input, target), kind, c, alpha)
        factor *= f
        if reduction == "none":
            grad_input = t.mul_(grad) if factor == 1 else t.mul_(grad).mul_(factor)
        else:
            grad_input = t.mul_(grad * factor)
    else:
        grad_input = _exact_slope(input - target, kind, c, alpha) * grad
        if factor != 1:
            grad_input = grad_input * _number(factor, grad_input)
    if not target.requires_grad and plain_eager(target):
        return grad_input, None
    return grad_input, -grad_input


@_robust_function.jvp
def _robust_jvp(
    input_t: Tensor,
    target_t: Tensor,
    input: Tensor,
    target: Tensor,
    kind: str,
    c: float,
    alpha: float,
    reduction: str,
) -> Tensor:
    tangent = _exact_slope(input - target, kind, c, alpha) * (input_t - target_t)
    return reduce(tangent, reduction)  # type: ignore[arg-type]


def _fast_robust(
    kind: str,
    input: Tensor,
    target: Tensor,
    scale: Scalar,
    alpha: float,
    reduction: str,
    dtype: torch.dtype,
) -> Tensor:
    """The loss through the Function (a number scale, equal shapes, no mask: checked)."""
    work = compute_dtype(dtype)
    c = float(scale)
    return _robust_function(input.to(work), target.to(work), kind, c, alpha, reduction).to(dtype)


def _fast_applies(input: Tensor, target: Tensor, where: Tensor | None, *config: object) -> bool:
    """A mask, a tensor config or broadcasting inputs (whose gradients would need summing)
    take the composition."""
    return (
        where is None
        and input.shape == target.shape
        and not any(isinstance(v, Tensor) for v in config)
    )


def _check_alpha(fn: str, alpha: object) -> None:
    if isinstance(alpha, Tensor):
        check_floating(fn, alpha=alpha)
        return
    check_number(fn, alpha=alpha)  # type: ignore[arg-type]
    if alpha == math.inf:
        fail(ValueError, fn, "alpha", "be a real number or -inf (not +inf)", alpha)


def _check_robust(
    fn: str,
    input: Tensor,
    target: Tensor,
    where: Tensor | None,
    **config: object,
) -> torch.dtype:
    """Floating ``input`` and ``target`` that broadcast with the tensor ``config`` values, a
    mask that broadcasts to the loss; returns the output dtype."""
    tensors = {k: v for k, v in config.items() if isinstance(v, Tensor)}
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    shape = broadcast_shape(fn, input=input, target=target, **tensors)  # type: ignore[arg-type]
    check_where(fn, where, shape)
    return promoted_dtype(input, target, *tensors.values())  # type: ignore[arg-type]


def _residual_and_scale(
    input: Tensor, target: Tensor, scale: Scalar, where: Tensor | None, dtype: torch.dtype
) -> tuple[Tensor, Scalar]:
    """``input - target`` in the compute dtype of ``dtype`` (0 where masked) and ``scale`` (a
    tensor in that dtype, or the number)."""
    work = compute_dtype(dtype)
    r = masked(where, input).to(work) - masked(where, target).to(work)
    if isinstance(scale, Tensor):
        return r, scale.to(work)
    return r, (1 if scale == 1 else _number(float(scale), r))


def _robust_config(fn: str) -> Callable[..., None]:
    """The config check of a Barron loss: a positive ``scale``, a valid ``reduction``."""

    def check(*, scale: Scalar = 1.0, reduction: str = "mean") -> None:
        _check_scale(fn, scale)
        check_reduction(fn, reduction)

    return check


_GENERAL_CONFIG = _robust_config("general_robust_loss")


@follows_autocast("promoted")
@checks_config(_GENERAL_CONFIG)
def general_robust_loss(
    input: Tensor,
    target: Tensor,
    alpha: Scalar,
    scale: Scalar = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Barron's general robust loss: one shape parameter :math:`\alpha` spans L2, Charbonnier
    (pseudo-Huber), Cauchy, Geman-McClure and Welsch.

    For regression with outliers, and for learning the robustness itself: ``alpha`` and
    ``scale`` may be tensors that require grad (Barron's adaptive loss learns them; keep
    :math:`\alpha` in a range such as :math:`(0.001, 1.999)` then, as Barron's code does).

    .. math::
        \rho(x, \alpha, c) = \frac{|\alpha - 2|}{\alpha}
            \left(\left(\frac{(x/c)^2}{|\alpha - 2|} + 1\right)^{\alpha/2} - 1\right),
        \qquad x = \text{input} - \text{target}

    with its limits :math:`\tfrac12 (x/c)^2` at :math:`\alpha = 2`,
    :math:`\log(\tfrac12 (x/c)^2 + 1)` at :math:`\alpha = 0` and
    :math:`1 - \exp(-\tfrac12 (x/c)^2)` at :math:`\alpha = -\infty`, exact. Computed as
    :math:`\frac{b}{\alpha} \operatorname{expm1}(\alpha \ell)` with :math:`b = |\alpha - 2|`,
    :math:`\ell = \tfrac12 \operatorname{log1p}((x/c)^2 / b)` (itself without overflow), and
    near :math:`\alpha = 0` by :math:`b\,\ell\,\operatorname{exprel}(\alpha\ell)` (a series):
    accurate to rounding at :math:`\alpha = 10^{-7}` and :math:`2 \pm 10^{-7}`, with finite
    value and derivatives (in ``input``, ``target``, ``alpha`` and ``scale``) at and near
    every limit; away from the series the derivatives are taken in the log domain, finite
    wherever they fit (at residuals near :math:`10^{38}` with :math:`\alpha > 1` the value
    overflows, its slope does not). The derivative in :math:`\alpha` at :math:`\alpha = 2` is
    genuinely unbounded (it grows like :math:`\log(1/|\alpha - 2|)`); at :math:`\alpha = 2`
    exactly the limit's (0) is returned.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        alpha: the shape, a number in :math:`[-\infty, \infty)` or a floating tensor
            broadcastable with the loss (one per channel, say); a tensor's values are not
            checked (``+inf`` or NaN give NaN).
        scale: :math:`c > 0`, a number or a floating tensor broadcastable with the loss (its
            values checked in eager mode).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target``, ``alpha`` and ``scale`` for ``"none"``
        (0 where masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or tensor config, a non-bool ``where``.
        ValueError: shapes that do not broadcast, a non-positive ``scale``, ``alpha`` NaN or
            ``+inf``, bad ``reduction``.

    Examples:
        >>> x = torch.tensor([0.0, 1.0, 10.0])
        >>> funcloss.general_robust_loss(x, torch.zeros(3), 1.0, reduction="none")
        tensor([0.0000, 0.4142, 9.0499])
        >>> funcloss.general_robust_loss(x, torch.zeros(3), 2.0, reduction="none")
        tensor([ 0.0000,  0.5000, 50.0000])

    References:
        J. T. Barron, "A General and Adaptive Robust Loss Function", CVPR 2019, eq. (1)-(3).
    """
    fn = "general_robust_loss"
    _check_alpha(fn, alpha)
    _GENERAL_CONFIG(scale=scale, reduction=reduction)
    dtype = _check_robust(fn, input, target, where, scale=scale, alpha=alpha)
    if _fast_applies(input, target, where, scale, alpha):
        a = float(alpha)  # type: ignore[arg-type]
        kind = _NAMED_ALPHAS.get(a, "barron")
        return _fast_robust(kind, input, target, scale, a, reduction, dtype)
    r, c = _residual_and_scale(input, target, scale, where, dtype)
    if isinstance(alpha, Tensor):
        loss = _barron_tensor(r, c, alpha.to(r.dtype))
    else:
        loss = _barron_number(r, c, float(alpha))
    return _finish(loss, reduction, where, dtype)


# Barron's alpha of each member with a direct form (general_robust_loss with a number alpha)
_NAMED_ALPHAS = {2.0: "l2", 1.0: "charbonnier", 0.0: "cauchy", -2.0: "geman", -math.inf: "welsch"}
_KINDS = {
    "charbonnier_loss": "charbonnier",
    "cauchy_loss": "cauchy",
    "geman_mcclure_loss": "geman",
    "welsch_loss": "welsch",
}


def _named_robust(
    fn: str,
    rho: Callable[[Tensor, Scalar], Tensor],
    input: Tensor,
    target: Tensor,
    scale: Scalar,
    reduction: str,
    where: Tensor | None,
) -> Tensor:
    _NAMED_CONFIGS[fn](scale=scale, reduction=reduction)
    dtype = _check_robust(fn, input, target, where, scale=scale)
    if _fast_applies(input, target, where, scale):
        return _fast_robust(_KINDS[fn], input, target, scale, 0.0, reduction, dtype)
    r, c = _residual_and_scale(input, target, scale, where, dtype)
    return _finish(rho(r, c), reduction, where, dtype)


_NAMED_CONFIGS = {
    fn: _robust_config(fn)
    for fn in ("charbonnier_loss", "cauchy_loss", "geman_mcclure_loss", "welsch_loss")
}


@follows_autocast("promoted")
@checks_config(_NAMED_CONFIGS["charbonnier_loss"])
def charbonnier_loss(
    input: Tensor,
    target: Tensor,
    scale: Scalar = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Charbonnier (pseudo-Huber, L1-L2) loss: Barron's loss at :math:`\alpha = 1`.

    Quadratic near 0, linear (slope :math:`1/c`) in the tails, smooth everywhere.

    .. math::
        \ell(x, y) = \sqrt{(r/c)^2 + 1} - 1, \qquad r = x - y

    computed as :math:`u \cdot u / (\operatorname{hypot}(u, 1) + 1)`, :math:`u = r/c`: no
    cancellation for small residuals, no overflow for large ones. kornia's
    ``charbonnier_loss`` is this at :math:`c = 1`. Super-resolution papers (LapSRN, EDSR's
    successors) call :math:`\sqrt{r^2 + \varepsilon^2}` "Charbonnier": that is
    :math:`\varepsilon\,(\ell + 1)` at :math:`c = \varepsilon`, the same gradient up to
    the factor :math:`\varepsilon`.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        scale: :math:`c > 0`, a number or a floating tensor broadcastable with the loss (its
            values checked in eager mode); kornia's losses have no scale (:math:`c = 1`).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (kornia's default is ``"none"``).
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``scale`` for ``"none"`` (0 where
        masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or scale, a non-bool ``where``.
        ValueError: shapes that do not broadcast, a non-positive ``scale``, bad ``reduction``.

    Examples:
        >>> funcloss.charbonnier_loss(torch.tensor([0.0, 1.0, 10.0]), torch.zeros(3),
        ...                           reduction="none")
        tensor([0.0000, 0.4142, 9.0499])

    References:
        P. Charbonnier et al., ICIP 1994; J. T. Barron, CVPR 2019; kornia
        ``charbonnier_loss``.
    """
    return _named_robust("charbonnier_loss", _charbonnier, input, target, scale, reduction, where)


@follows_autocast("promoted")
@checks_config(_NAMED_CONFIGS["cauchy_loss"])
def cauchy_loss(
    input: Tensor,
    target: Tensor,
    scale: Scalar = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Cauchy (Lorentzian) loss: Barron's loss at :math:`\alpha = 0`.

    Logarithmic in the tails: large residuals count little, but never nothing.

    .. math::
        \ell(x, y) = \log\left(\tfrac12 (r/c)^2 + 1\right), \qquad r = x - y

    computed without overflow (as :math:`2 \log \operatorname{hypot}(u/\sqrt2, 1)` through
    ``log1p``, :math:`u = r/c`); kornia's ``cauchy_loss`` is this at :math:`c = 1`.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        scale: :math:`c > 0`, a number or a floating tensor broadcastable with the loss (its
            values checked in eager mode); kornia's losses have no scale (:math:`c = 1`).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (kornia's default is ``"none"``).
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``scale`` for ``"none"`` (0 where
        masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or scale, a non-bool ``where``.
        ValueError: shapes that do not broadcast, a non-positive ``scale``, bad ``reduction``.

    Examples:
        >>> funcloss.cauchy_loss(torch.tensor([0.0, 1.0, 10.0]), torch.zeros(3),
        ...                      reduction="none")
        tensor([0.0000, 0.4055, 3.9318])

    References:
        M. J. Black and P. Anandan, CVIU 1996; J. T. Barron, CVPR 2019; kornia
        ``cauchy_loss``.
    """
    return _named_robust("cauchy_loss", _cauchy, input, target, scale, reduction, where)


@follows_autocast("promoted")
@checks_config(_NAMED_CONFIGS["geman_mcclure_loss"])
def geman_mcclure_loss(
    input: Tensor,
    target: Tensor,
    scale: Scalar = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Geman-McClure loss: Barron's loss at :math:`\alpha = -2`.

    Bounded (by 2): an outlier's influence vanishes as it grows.

    .. math::
        \ell(x, y) = \frac{2 (r/c)^2}{(r/c)^2 + 4}, \qquad r = x - y

    computed as :math:`2 (w / \operatorname{hypot}(w, 1))^2`, :math:`w = r / 2c`: no
    overflow. kornia's ``geman_mcclure_loss`` is this at :math:`c = 1` (the original Geman
    and McClure form :math:`r^2 / (r^2 + \sigma^2)` is :math:`\ell / 2` at
    :math:`c = \sigma / 2`).

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        scale: :math:`c > 0`, a number or a floating tensor broadcastable with the loss (its
            values checked in eager mode); kornia's losses have no scale (:math:`c = 1`).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (kornia's default is ``"none"``).
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``scale`` for ``"none"`` (0 where
        masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or scale, a non-bool ``where``.
        ValueError: shapes that do not broadcast, a non-positive ``scale``, bad ``reduction``.

    Examples:
        >>> funcloss.geman_mcclure_loss(torch.tensor([0.0, 1.0, 10.0]), torch.zeros(3),
        ...                             reduction="none")
        tensor([0.0000, 0.4000, 1.9231])

    References:
        S. Geman and D. E. McClure, 1985; J. T. Barron, CVPR 2019; kornia
        ``geman_mcclure_loss``.
    """
    return _named_robust(
        "geman_mcclure_loss", _geman_mcclure, input, target, scale, reduction, where
    )


@follows_autocast("promoted")
@checks_config(_NAMED_CONFIGS["welsch_loss"])
def welsch_loss(
    input: Tensor,
    target: Tensor,
    scale: Scalar = 1.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Welsch (Leclerc) loss: Barron's loss at :math:`\alpha = -\infty`.

    Bounded (by 1), with a Gaussian-shaped influence: outliers stop counting altogether.

    .. math::
        \ell(x, y) = 1 - \exp\left(-\tfrac12 (r/c)^2\right), \qquad r = x - y

    computed as :math:`-\operatorname{expm1}(-\tfrac12 u^2)` (exact for small residuals);
    kornia's ``welsch_loss`` is this at :math:`c = 1`.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        scale: :math:`c > 0`, a number or a floating tensor broadcastable with the loss (its
            values checked in eager mode); kornia's losses have no scale (:math:`c = 1`).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (kornia's default is ``"none"``).
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``scale`` for ``"none"`` (0 where
        masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or scale, a non-bool ``where``.
        ValueError: shapes that do not broadcast, a non-positive ``scale``, bad ``reduction``.

    Examples:
        >>> funcloss.welsch_loss(torch.tensor([0.0, 1.0, 10.0]), torch.zeros(3),
        ...                      reduction="none")
        tensor([0.0000, 0.3935, 1.0000])

    References:
        J. E. Dennis and R. E. Welsch, 1978; J. T. Barron, CVPR 2019; kornia
        ``welsch_loss``.
    """
    return _named_robust("welsch_loss", _welsch, input, target, scale, reduction, where)


# -- quantile_loss -----------------------------------------------------------------------------


def _check_quantile_config(*, quantile: Scalar = 0.5, reduction: str = "mean") -> None:
    fn = "quantile_loss"
    _check_scalar(fn, "quantile", quantile, "be in (0, 1)", 0.0, 1.0)
    check_reduction(fn, reduction)


@follows_autocast("promoted")
@checks_config(_check_quantile_config)
def quantile_loss(
    input: Tensor,
    target: Tensor,
    quantile: Scalar = 0.5,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Quantile (pinball) loss: its minimiser is the ``quantile``-th conditional quantile.

    For quantile regression and prediction intervals; ``quantile=0.5`` is half the L1 loss.
    Several quantiles at once: a ``quantile`` tensor broadcasts against the residual (for
    ``input`` of shape ``(N, K)``, one column per quantile, pass ``quantile`` of shape
    ``(K,)``; the unreduced loss has the broadcast shape).

    .. math::
        \ell(x, y) = \max\bigl(q\, (y - x),\ (q - 1)(y - x)\bigr)
                   = q\, (y - x) + \max(x - y, 0)

    The gradient in ``input`` is :math:`-q` where :math:`y \ge x` (at the kink too: the
    subgradient of sklearn's convention, ``y_true >= y_pred``), :math:`1 - q` elsewhere.

    Args:
        input: predictions, shape ``(*)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        quantile: :math:`q \in (0, 1)`, a number or a floating tensor broadcastable with the
            residual (its values checked in eager mode).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (``"mean"`` averages over every
            quantile too: sklearn's ``mean_pinball_loss`` for one quantile).
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        The broadcast shape of ``input``, ``target`` and ``quantile`` for ``"none"`` (0 where
        masked), else a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input, target or quantile, a non-bool ``where``.
        ValueError: shapes that do not broadcast, ``quantile`` outside (0, 1), bad
            ``reduction``.

    Examples:
        >>> y = torch.tensor([1.0, 1.0])
        >>> funcloss.quantile_loss(torch.tensor([0.0, 3.0]), y, 0.9, reduction="none")
        tensor([0.9000, 0.2000])
        >>> funcloss.quantile_loss(torch.zeros(2, 1), y[:, None], torch.tensor([0.1, 0.9]),
        ...                        reduction="none")
        tensor([[0.1000, 0.9000],
                [0.1000, 0.9000]])

    References:
        R. Koenker and G. Bassett, "Regression Quantiles", Econometrica 1978; scikit-learn
        ``mean_pinball_loss``.
    """
    fn = "quantile_loss"
    _check_quantile_config(quantile=quantile, reduction=reduction)
    dtype = _check_robust(fn, input, target, where, quantile=quantile)
    r, q = _residual_and_scale(input, target, quantile, where, dtype)
    error = -r  # target - input
    return _finish(error * q + torch.relu(r), reduction, where, dtype)


# -- cosine_distance_loss ----------------------------------------------------------------------


def _check_cosine_config(*, dim: int = -1, eps: float = 1e-8, reduction: str = "mean") -> None:
    fn = "cosine_distance_loss"
    if not isinstance(dim, int) or isinstance(dim, bool):
        fail(TypeError, fn, "dim", "be an int", type(dim).__name__)
    _check_scalar(fn, "eps", eps, "be positive", 0.0, math.inf)
    if isinstance(eps, Tensor):
        fail(TypeError, fn, "eps", "be a real number", "Tensor")
    check_reduction(fn, reduction)


def _unit(x: Tensor, dim: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(u, a, m)``: the unit vector ``u = x / a`` with ``a = max(||x||, eps)``, and
    ``m = ||x|| > eps`` (both kept along ``dim``). The clamp is on the squared norm, so the
    sqrt never sees 0 and a zero vector has a finite gradient; the vector is first divided by
    its largest magnitude (a zero vector by 1), so that the squared norm cannot overflow. A
    vector with infinite coordinates has their signs, normalised, as its direction (the limit;
    ``a`` is inf), instead of ``inf / inf``."""
    largest = x.detach().abs().amax(dim, keepdim=True)
    largest = torch.where(largest > 0, largest, 1)
    infinite = torch.isinf(largest)
    finite_part = torch.where(infinite, 0, x) / largest
    scaled = torch.where(infinite, torch.where(torch.isinf(x), torch.sign(x), 0), finite_part)
    floor = eps / largest
    square = (scaled * scaled).sum(dim, keepdim=True)
    # sqrt(max(square, floor^2)), without squaring floor (it underflows float32 below 1e-19: a
    # zero vector's root would be 0 and its direction 0 / 0); double where for sqrt at 0
    above = square > floor * floor
    root = torch.where(above, torch.sqrt(torch.where(above, square, 1)), floor)
    return scaled / root, largest * root, above


def _exact_cosine_slopes(x: Tensor, y: Tensor, d: int, eps: float) -> tuple[Tensor, Tensor]:
    """d(1 - cos)/dx and d/dy, differentiable (the clamp's branch picked by ``where``)."""
    ux, ax, mx = _unit(x, d, eps)
    uy, ay, my = _unit(y, d, eps)
    cosine = (ux * uy).sum(d, keepdim=True)
    slope_x = (torch.where(mx, cosine * ux, 0) - uy) / ax
    slope_y = (torch.where(my, cosine * uy, 0) - ux) / ay
    return slope_x, slope_y


# float32's squares underflow below 1e-19 (float64's below 1e-154): with eps above these bounds
# every norm the unclamped eager path gets wrong is clamped to eps anyway
_FAST_COSINE_EPS = {torch.float64: 1e-140}
_FAST_COSINE_EPS_DEFAULT = 1e-15


def _fast_cosine_parts(x: Tensor, y: Tensor, d: int, eps: float) -> tuple[Tensor, ...] | None:
    """``(norm x, norm y, <x, y>, cos)`` along ``d`` in three reads, or ``None`` where a norm or
    the product of the clamped norms is not finite, or ``eps`` is below the underflow bound
    (eager mode only: the test reads the values)."""
    if eps < _FAST_COSINE_EPS.get(x.dtype, _FAST_COSINE_EPS_DEFAULT):
        return None
    if not value_checks_enabled(x, y):  # the one read below (on the CPU, value checks on)
        return None
    nx = torch.linalg.vector_norm(x, dim=d)
    ny = torch.linalg.vector_norm(y, dim=d)
    dot = torch.einsum("...i,...i->...", x.movedim(d, -1), y.movedim(d, -1))
    product = nx.clamp_min(eps) * ny.clamp_min(eps)
    if not bool((torch.isfinite(product) & torch.isfinite(dot)).all()):
        return None
    return nx, ny, dot, dot.div_(product)


def _cosine_forward(input: Tensor, target: Tensor, d: int, eps: float, reduction: str) -> Tensor:
    if in_place_safe(input, target):
        parts = _fast_cosine_parts(input, target, d, eps)
        if parts is not None:
            return reduce(parts[3].neg_().add_(1), reduction)  # type: ignore[arg-type]
    ux, _, _ = _unit(input, d, eps)
    uy, _, _ = _unit(target, d, eps)
    return reduce(1 - (ux * uy).sum(d), reduction)  # type: ignore[arg-type]


_cosine_function = custom_backward(_cosine_forward)


@_cosine_function.backward
def _cosine_backward(
    grad: Tensor, input: Tensor, target: Tensor, d: int, eps: float, reduction: str
) -> tuple[Tensor, Tensor | None]:
    rows = input.numel() // max(input.shape[d], 1)
    factor = 1 / max(rows, 1) if reduction == "mean" else 1.0
    want_target = target.requires_grad or not plain_eager(target)
    if in_place_safe(grad, input, target):
        parts = _fast_cosine_parts(input, target, d, eps)
        if parts is not None:
            nx, ny, _, cosine = parts
            g = grad * factor if factor != 1 else grad
            g = g.expand(cosine.shape)
            a = (-g / (nx.clamp_min(eps) * ny.clamp_min(eps))).unsqueeze(d)
            gc = g * cosine
            bx = torch.where(nx > eps, gc / (nx * nx), 0).unsqueeze(d)
            grad_input = torch.mul(input, bx).addcmul_(target, a)
            if not want_target:
                return grad_input, None
            by = torch.where(ny > eps, gc / (ny * ny), 0).unsqueeze(d)
            return grad_input, torch.mul(target, by).addcmul_(input, a)
    slope_x, slope_y = _exact_cosine_slopes(input, target, d, eps)
    g = grad if reduction == "none" else grad * _number(factor, grad)
    g = g.unsqueeze(d) if reduction == "none" else g
    return slope_x * g, (slope_y * g if want_target else None)


@_cosine_function.jvp
def _cosine_jvp(
    input_t: Tensor,
    target_t: Tensor,
    input: Tensor,
    target: Tensor,
    d: int,
    eps: float,
    reduction: str,
) -> Tensor:
    slope_x, slope_y = _exact_cosine_slopes(input, target, d, eps)
    tangent = (slope_x * input_t + slope_y * target_t).sum(d)
    return reduce(tangent, reduction)  # type: ignore[arg-type]


@follows_autocast("promoted")
@checks_config(_check_cosine_config)
def cosine_distance_loss(
    input: Tensor,
    target: Tensor,
    dim: int = -1,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Cosine distance: one minus the cosine similarity of ``input`` and ``target`` vectors.

    For embeddings and directions, where the length does not matter.

    .. math::
        \ell(x, y) = 1 - \frac{\langle x, y \rangle}{\max(\|x\|, \varepsilon)\,
                     \max(\|y\|, \varepsilon)}

    along ``dim``. A zero vector gives 1 with a finite (zero) gradient (optax's default
    ``epsilon=0`` gives nan there). optax clamps the squared norms: its ``epsilon`` is
    :math:`\varepsilon^2`.

    Args:
        input: vectors along ``dim``, shape ``(*, D, *)``, floating dtype.
        target: broadcastable with ``input``, floating dtype.
        dim: the vector dimension.
        eps: :math:`\varepsilon > 0`, the smallest norm divided by.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss (the broadcast shape
            without ``dim``): only the ``True`` vectors count (``"mean"`` divides by their
            number); a masked vector's entries are not read.

    Returns:
        The broadcast shape without ``dim`` for ``"none"`` (0 where masked), else a 0-dim
        tensor, of the promoted dtype.

    Raises:
        TypeError: non-floating input or target, a non-int ``dim``, a non-bool ``where``.
        ValueError: shapes that do not broadcast, ``dim`` out of range, ``eps <= 0``, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
        >>> funcloss.cosine_distance_loss(x, torch.tensor([[1.0, 1.0]]), reduction="none")
        tensor([0.2929, 1.0000])

    References:
        optax ``cosine_distance``.
    """
    fn = "cosine_distance_loss"
    _check_cosine_config(dim=dim, eps=eps, reduction=reduction)
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    shape = broadcast_shape(fn, input=input, target=target)
    if not -len(shape) <= dim < max(len(shape), 1) or not shape:
        fail(ValueError, fn, "dim", f"be a dimension of the inputs' shape {shape_str(shape)}", dim)
    d = dim % len(shape)
    loss_shape = shape[:d] + shape[d + 1 :]
    check_where(fn, where, loss_shape)
    if where is not None:
        vectors = where.reshape((1,) * (len(loss_shape) - where.dim()) + where.shape)
        vectors = vectors.unsqueeze(d)
        input, target = masked(vectors, input), masked(vectors, target)
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    x, y = input.to(work), target.to(work)
    if where is None and x.shape == y.shape:
        return _cosine_function(x, y, d, float(eps), reduction).to(dtype)
    ux, _, _ = _unit(x, d, eps)
    uy, _, _ = _unit(y, d, eps)
    return _finish(1 - (ux * uy).sum(d), reduction, where, dtype)
