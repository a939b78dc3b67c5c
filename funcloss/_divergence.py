"""Divergences beyond torch's kl_div: Jensen-Shannon and the generalized (I-) divergence.

Plain torch compositions, with torch's kl_div conventions: ``input`` is the model's
distribution (log-probabilities with ``log_input=True``), ``target`` the reference, the terms
are elementwise and summed by the reduction (``"batchmean"``: per sample).

Every ``x log y`` term is written "xlogy-style": 0 where its coefficient ``x`` is 0, whatever
``y`` (also 0 or ``-inf`` in log space), with a double ``where`` (the coefficient and the
argument of the log both replaced where ``x = 0``), so that the value, the gradient in reverse
and forward mode and the second derivatives are finite at zero probabilities. ``torch.xlogy``
gives ``nan`` there in its gradient (``0 / 0``), and so does optax's ``kl_divergence``
(optax #1786).

Masks (``where=``) replace the masked inputs by 0 and the masked targets by 0 before any
arithmetic: every term and derivative is finite there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import (
    broadcast_shape,
    check_floating,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    fail,
    promoted_dtype,
)
from ._modes import follows_autocast
from ._reduction import KL_REDUCTIONS, KLReduction, masked, reduce_batchmean
from ._softmax_ce import compute_dtype

# -- shared ------------------------------------------------------------------------------------


def _check_config(fn: str, reduction: str, log_input: object) -> None:
    check_reduction(fn, reduction, KL_REDUCTIONS)
    if not isinstance(log_input, bool):
        fail(TypeError, fn, "log_input", "be a bool", type(log_input).__name__)


def _prepare(
    fn: str, input: Tensor, target: Tensor, where: Tensor | None
) -> tuple[Tensor, Tensor, torch.dtype]:
    """Checked ``input`` and ``target``, masked entries set to 0, in the compute dtype (float32
    for half precision); and the output dtype (their promoted dtype)."""
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input, target=target)
    check_where(fn, where, broadcast_shape(fn, input=input, target=target))
    dtype = promoted_dtype(input, target)
    work = compute_dtype(dtype)
    return masked(where, input).to(work), masked(where, target).to(work), dtype


def _absent(coefficient: Tensor) -> Tensor:
    """Where an ``x log y`` term has coefficient 0: it is 0 there, and so are its derivatives."""
    return coefficient == 0


# -- js_div ------------------------------------------------------------------------------------


def _js_term(x: Tensor, total: Tensor, absent: Tensor) -> Tensor:
    """``x log(x / m)``, ``m = total / 2``: 0 where ``x = 0`` (``absent``), with both ``x`` and
    ``total`` replaced there by 1 inside the log (a double ``where``: the unselected branch is
    finite and so is its zero gradient)."""
    # x / m, not 2 x / total: 2 x overflows for x past half the dtype's range
    ratio = torch.where(absent, 1, x) / (torch.where(absent, 2, total) / 2)
    return torch.where(absent, 0, x * torch.log(ratio))


def _check_js_config(*, reduction: str = "batchmean", log_input: bool = False) -> None:
    _check_config("js_div", reduction, log_input)


@follows_autocast("promoted")
@checks_config(_check_js_config)
def js_div(
    input: Tensor,
    target: Tensor,
    *,
    log_input: bool = False,
    reduction: KLReduction = "batchmean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Jensen-Shannon divergence :math:`\mathrm{JS}(\text{target} \,\|\, \text{input})`.

    A symmetric, bounded (by :math:`\log 2`) smoothing of KL, finite where either distribution
    is 0: for consistency losses between two predicted distributions (AugMix's JS consistency,
    co-training), GAN objectives, or distillation where the KL's zero-avoidance hurts.

    .. math::
        \ell = \tfrac12\, p \log\frac{p}{m} + \tfrac12\, q \log\frac{q}{m},
        \qquad m = \tfrac12 (p + q),

    elementwise, with ``target`` :math:`p`, ``input`` :math:`q` (or :math:`q = e^{x}` for
    ``log_input=True``, where ``input`` :math:`x` holds log-probabilities, as kl_div's input
    does), and each term 0 where its coefficient is 0. The sum over a distribution's entries is
    :math:`\tfrac12 \mathrm{KL}(P \| M) + \tfrac12 \mathrm{KL}(Q \| M)`, symmetric in
    :math:`P, Q`, in :math:`[0, \log 2]`, and 0 for :math:`P = Q`.

    The gradient is :math:`\partial\ell/\partial p = \tfrac12 \log(p / m)` (and the same in
    :math:`q`): :math:`-\infty` at a probability of exactly 0 (one-sided). There the term
    :math:`p \log(p/m)` is absent (its derivatives taken as 0, as ``torch.xlogy``'s in
    :math:`x` at :math:`x = 0`), leaving the finite :math:`-\tfrac12` of the other term;
    through a softmax (or the ``exp`` of ``log_input``), whose Jacobian carries the factor
    :math:`p`, the logits' gradient is then the exact limit, 0. Values, gradients (reverse and
    forward mode) and second derivatives are finite at ``target = 0``, ``input = 0`` (or
    ``-inf`` with ``log_input``) and both.

    Args:
        input: probabilities (log-probabilities with ``log_input``), shape ``(*)``, floating
            dtype; the distribution usually along the last dimension (the loss is elementwise).
            Values are not checked.
        target: probabilities, broadcastable with ``input``, floating dtype.
        log_input: whether ``input`` holds log-probabilities (e.g. a ``log_softmax``).
        reduction: ``"none"`` | ``"batchmean"`` (the sum divided by ``input.size(0)``: the
            divergence per sample; the sum for a 0-dim input) | ``"mean"`` (over elements, as
            kl_div's, without its warning) | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count. ``"mean"`` divides by their number, ``"batchmean"`` by their number
            in rows (their number times ``input.size(0) / input.numel()``), as kl_div does.

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"`` (0 where masked), else
        a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input or target, a non-bool ``log_input`` or ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``.

    Examples:
        >>> p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        >>> q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
        >>> funcloss.js_div(q, p, reduction="none")  # disjoint supports: log 2 in total
        tensor([[0.3466, 0.3466],
                [0.0000, 0.0000]])
        >>> funcloss.js_div(torch.log(q), p, log_input=True)
        tensor(0.3466)

    References:
        J. Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory
        37(1), 1991. optax's ``kl_divergence`` / ``convex_kl_divergence`` (no JS there; their
        gradient is ``nan`` at a zero target, optax #1786).
    """
    fn = "js_div"
    _check_js_config(reduction=reduction, log_input=log_input)
    input, target, dtype = _prepare(fn, input, target, where)
    q = torch.exp(input) if log_input else input
    p = target
    total = p + q
    loss = (_js_term(p, total, _absent(p)) + _js_term(q, total, _absent(q))) / 2
    return reduce_batchmean(loss, reduction, input, where=where).to(dtype)


# -- generalized_kl_div ------------------------------------------------------------------------


def _check_generalized_kl_config(*, reduction: str = "batchmean", log_input: bool = True) -> None:
    _check_config("generalized_kl_div", reduction, log_input)


@follows_autocast("promoted")
@checks_config(_check_generalized_kl_config)
def generalized_kl_div(
    input: Tensor,
    target: Tensor,
    *,
    log_input: bool = True,
    reduction: KLReduction = "batchmean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Generalized KL divergence (I-divergence) between unnormalised non-negative measures.

    For non-negative targets that are not distributions: intensities, counts, spectrograms,
    NMF (where it is the Lee-Seung objective), Poisson-like regression on rates. It is the
    Bregman divergence of :math:`t \log t - t`; on normalised measures it is kl_div.

    .. math::
        \ell = t \log\frac{t}{\mu} - t + \mu, \qquad
        \mu = \begin{cases} e^{x} & \texttt{log\_input} \\ x & \text{otherwise} \end{cases}

    elementwise, with ``target`` :math:`t`, ``input`` :math:`x` (log-rates by default, as
    kl_div's input and optax's ``generalized_kl_divergence(log_predictions, targets)``), the
    term :math:`t \log(t/\mu)` 0 where :math:`t = 0`. Its gradient in a log-input is
    :math:`e^{x} - t`, finite everywhere (also at :math:`x = -\infty`); in :math:`\mu` it is
    :math:`1 - t/\mu`, in :math:`t` it is :math:`\log(t / \mu)`: :math:`-\infty` at
    :math:`t = 0`, where the absent term's derivatives are taken as 0 (``torch.xlogy``'s
    convention), leaving :math:`-1`. At ``target = 0`` (any input, also :math:`\mu = 0`) value,
    gradients (reverse and forward mode) and second derivatives are finite. Where
    :math:`t > 0` and :math:`\mu = 0` the divergence is :math:`+\infty`, and so is the value.

    Args:
        input: log-rates :math:`\log \mu` (rates :math:`\mu \ge 0` with ``log_input=False``),
            shape ``(*)``, floating dtype. Values are not checked.
        target: non-negative values, broadcastable with ``input``, floating dtype.
        log_input: whether ``input`` holds :math:`\log \mu` (default ``True``, as optax).
        reduction: ``"none"`` | ``"batchmean"`` (the sum divided by ``input.size(0)``; the sum
            for a 0-dim input) | ``"mean"`` (over elements) | ``"sum"``.
        where: optional bool mask, broadcastable to the unreduced loss: only the ``True``
            elements count. ``"mean"`` divides by their number, ``"batchmean"`` by their number
            in rows, as kl_div does.

    Returns:
        The broadcast shape of ``input`` and ``target`` for ``"none"`` (0 where masked), else
        a 0-dim tensor, of their promoted dtype.

    Raises:
        TypeError: non-floating input or target, a non-bool ``log_input`` or ``where``.
        ValueError: shapes that do not broadcast, bad ``reduction``.

    Examples:
        >>> rate = torch.tensor([[2.0, 0.5], [1.0, 3.0]])
        >>> t = torch.tensor([[1.0, 0.0], [1.0, 3.0]])
        >>> funcloss.generalized_kl_div(torch.log(rate), t, reduction="none")
        tensor([[0.3069, 0.5000],
                [0.0000, 0.0000]])
        >>> funcloss.generalized_kl_div(rate, t, log_input=False, reduction="sum")
        tensor(0.8069)

    References:
        I. Csiszar, "Why least squares and maximum entropy?", Ann. Statist. 19(4), 1991 (the
        I-divergence); D. Lee and H. S. Seung, "Algorithms for non-negative matrix
        factorization", NIPS 2000; optax's ``generalized_kl_divergence`` (its gradient in the
        target is ``nan`` at a zero target, optax #1786).
    """
    fn = "generalized_kl_div"
    _check_generalized_kl_config(reduction=reduction, log_input=log_input)
    input, target, dtype = _prepare(fn, input, target, where)
    absent = _absent(target)
    # t (log t - log mu - 1) + mu, with log t and log mu replaced by 0 where t = 0: the term is
    # then 0 * (-1) = 0 with derivatives -1 in t (the -t) and 0 in the input, finite also at a
    # log-rate of -inf or a rate of 0 (no 0 * inf); no outer ``where`` is needed
    log_target = torch.log(torch.where(absent, 1, target))
    if log_input:
        log_rate, rate = torch.where(absent, 0, input), torch.exp(input)
    else:
        log_rate, rate = torch.log(torch.where(absent, 1, input)), input
    loss = target * (log_target - log_rate - 1) + rate
    return reduce_batchmean(loss, reduction, input, where=where).to(dtype)
