"""Ranking losses on lists of scores: ranking_softmax_loss, pairwise_logistic_loss,
pairwise_hinge_loss, listmle_loss, approx_ndcg_loss (rax's semantics).

Conventions (rax's): scores ``input`` of shape ``(..., L)``, the list dimension last; graded
relevance ``target`` (float, ``>= 0``) of the same shape; optional per-item ``weight``
broadcastable to it; the unreduced loss has one value per list, shape ``input.shape[:-1]``.

Masks. ``where`` is one of two kinds, told apart by its number of dimensions (as
cross_entropy's row and class masks): an *item mask* with ``input``'s number of dimensions,
broadcastable to its shape (rax's ``where``: masked items are removed from the list), or a *list
mask* with fewer dimensions, broadcastable to the unreduced loss shape ``input.shape[:-1]``
(a masked list is an item mask that masks all of its items). Masked items are replaced before
any arithmetic (scores by ``finfo.min`` where they enter a softmax or a log-cumsum-exp, so their
probability is exactly 0 with no ``-inf`` and no NaN; by 0 elsewhere), so inf or NaN there reach
neither the value nor any derivative. A list with no valid item (and, for the pairwise losses,
with no valid pair) adds 0 and is left out of the ``"mean"``.

Plain torch compositions: autograd through them is exact and every transform has its rules
(``sort`` is only used for its indices; the gathers, ``logcumsumexp`` and ``sigmoid`` have
forward-mode, double-backward and batching rules).
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    broadcast_pair,
    check_broadcastable_to,
    check_floating,
    check_number,
    check_positive,
    check_reduction,
    check_same_shape,
    check_tensor,
    check_values_in,
    check_where,
    checks_config,
    fail,
    in_place_safe,
    promoted_dtype,
    shape_str,
)
from ._function import custom_backward
from ._modes import follows_autocast
from ._ops import softplus
from ._reduction import masked, reduce

# -- config ----------------------------------------------------------------------------------

_SOFTMAX_CONFIG = partial(check_reduction, "ranking_softmax_loss")
_LOGISTIC_CONFIG = partial(check_reduction, "pairwise_logistic_loss")
_LISTMLE_CONFIG = partial(check_reduction, "listmle_loss")


def _check_hinge_config(*, margin: float = 1.0, reduction: str = "mean") -> None:
    check_number("pairwise_hinge_loss", margin=margin)
    check_reduction("pairwise_hinge_loss", reduction)


def _check_approx_ndcg_config(*, temperature: float = 1.0, reduction: str = "mean") -> None:
    check_positive("approx_ndcg_loss", temperature=temperature)
    check_reduction("approx_ndcg_loss", reduction)


# -- shared: arguments and masks -------------------------------------------------------------


def _check_lists(fn: str, input: Tensor, target: Tensor, weight: Tensor | None = None) -> None:
    """Scores ``(..., L)`` with at least one dimension, a relevance of the same shape, an
    optional per-item weight broadcastable to it."""
    check_tensor(fn, input=input)
    check_floating(fn, input=input, target=target, weight=weight)
    if input.dim() == 0:
        fail(ValueError, fn, "input", "have a list dimension (shape (..., L))", "()")
    check_same_shape(fn, input=input, target=target)
    check_broadcastable_to(fn, "weight", weight, input.shape)


def _promoted(input: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """The scores in the promoted dtype of the floating arguments (the output's dtype, also
    where the relevance only orders the items)."""
    return input.to(promoted_dtype(input, target, weight))


def _item_mask(fn: str, where: Tensor | None, shape: torch.Size) -> Tensor | None:
    """``where`` as an item mask broadcastable to ``shape`` (the scores'), or ``None``.

    A list mask (fewer dimensions than the scores, broadcastable to ``shape[:-1]``) gets a list
    dimension of 1; an item mask (the scores' number of dimensions) is returned as it is.
    """
    if where is None:
        return None
    lists = shape[:-1]
    if not isinstance(where, Tensor) or where.dtype != torch.bool:
        check_where(fn, where, lists)  # the type error
    if where.dim() < len(shape) and broadcast_pair(where.shape, lists) == lists:
        return where.unsqueeze(-1)
    if where.dim() == len(shape) and broadcast_pair(where.shape, shape) == shape:
        return where
    fail(
        ValueError,
        fn,
        "where",
        f"be broadcastable to the unreduced loss shape {shape_str(lists)} (a list mask) or "
        f"have the scores' {len(shape)} dimensions and broadcast to their shape "
        f"{shape_str(shape)} (an item mask)",
        shape_str(where.shape),
        hint="An item mask shared by every list has shape (1, L): `mask[None]`."
        if len(shape) == 2
        else "",
    )


def _check_relevance(fn: str, target: Tensor) -> None:
    """Eager-only: graded relevance is non-negative (masked items already replaced by 0)."""
    check_values_in(fn, "target", target, 0.0, math.inf)


def _lists_with_items(items: Tensor | None, shape: torch.Size) -> Tensor | None:
    """The lists that have at least one valid item (``None``: every list)."""
    return None if items is None else items.expand(shape).any(-1)


def _lowest(tensor: Tensor) -> float:
    # the fill of a masked score inside a softmax or log-cumsum-exp: exp(lowest - x) is exactly
    # 0 for any finite x, and unlike -inf it gives no nan in any derivative
    return torch.finfo(tensor.dtype).min


def _masked_inputs(
    items: Tensor | None, input: Tensor, target: Tensor, weight: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Scores and relevance 0 and weight 0 at the masked items."""
    if items is None:
        return input, target, weight
    weight = None if weight is None else masked(items, weight)
    return masked(items, input), masked(items, target), weight


# -- ranking_softmax_loss --------------------------------------------------------------------


@follows_autocast("promoted")
@checks_config(_SOFTMAX_CONFIG)
def ranking_softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Listwise softmax cross-entropy of the scores against the relevance (rax's and optax's
    ``softmax_loss``; ListNet with the relevance as given).

    For learning to rank with one or several relevant items per list: the softmax of the scores
    is a distribution over the list, and each item's relevance weights its log-probability.

    .. math::
        \ell(s, y) = -\sum_i w_i\, y_i \log \frac{e^{s_i}}{\sum_{j\ \text{valid}} e^{s_j}}

    As in rax and optax the relevance is not normalised (a list with twice the relevance has
    twice the loss, a list of zero relevance has loss 0 and still counts in the mean); pass
    ``target / target.sum(-1, keepdim=True)`` for ListNet's distribution.

    Args:
        input: scores, shape ``(..., L)`` (lists last), floating dtype.
        target: graded relevance ``>= 0``, ``input``'s shape, floating (values checked in
            eager mode only).
        weight: optional per-item weight, broadcastable to ``input`` (rax's ``weights``: it
            multiplies the relevance).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask: an *item mask* with ``input``'s number of dimensions,
            broadcastable to its shape (rax's ``where``: masked items leave the softmax,
            exactly zero probability and zero gradient whatever they hold), or a *list mask*,
            broadcastable to ``input.shape[:-1]``. A list with no valid item adds 0 and is
            left out of ``"mean"``.

    Returns:
        Shape ``input.shape[:-1]`` for ``"none"`` (one value per list, 0 for a list with no
        valid item), else a 0-dim tensor; ``"mean"`` divides by the number of lists with a
        valid item (rax's ``jnp.mean`` over lists).

    Raises:
        TypeError: non-floating tensors, a non-bool ``where``.
        ValueError: a 0-dim input, a target of another shape, a weight or ``where`` that does
            not broadcast, negative relevance, bad ``reduction``.

    Examples:
        >>> scores = torch.tensor([[2.0, 1.0, 3.0]])
        >>> funcloss.ranking_softmax_loss(scores, torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(1.4076)

    References:
        rax ``softmax_loss`` (optax ``losses.ranking_softmax_loss``); Cao et al., "Learning to
        rank: from pairwise approach to listwise approach" (ListNet), ICML 2007.
    """
    fn = "ranking_softmax_loss"
    _check_lists(fn, input, target, weight)
    _SOFTMAX_CONFIG(reduction=reduction)
    items = _item_mask(fn, where, input.shape)
    input = _promoted(input, target, weight)
    logits = input if items is None else masked(items, input, _lowest(input))
    _, target, weight = _masked_inputs(items, input, target, weight)
    _check_relevance(fn, target)
    labels = target if weight is None else target * weight
    loss = -(labels * torch.log_softmax(logits, -1)).sum(-1)
    return reduce(loss, reduction, where=_lists_with_items(items, input.shape))


# -- pairwise losses -------------------------------------------------------------------------


def _pairwise(
    fn: str,
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    where: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(s_i - s_j, valid pairs, w_i)``, each ``(..., L, L)`` (``w_i`` broadcastable): the
    pairs with ``y_i > y_j`` and both items valid."""
    _check_lists(fn, input, target, weight)
    items = _item_mask(fn, where, input.shape)
    input = _promoted(input, target, weight)
    input, target, weight = _masked_inputs(items, input, target, weight)
    _check_relevance(fn, target)
    valid = target.unsqueeze(-1) > target.unsqueeze(-2)
    if items is not None:
        valid = valid & (items.unsqueeze(-1) & items.unsqueeze(-2))
    # 0 outside the valid pairs (the diagonal is inf - inf at an infinite score), so that no
    # nan reaches a derivative through the pairs that do not count
    difference = torch.where(valid, input.unsqueeze(-1) - input.unsqueeze(-2), 0.0)
    return difference, valid, None if weight is None else weight.unsqueeze(-1)


def _reduce_pairs(
    pair_loss: Tensor, valid: Tensor, weight: Tensor | None, reduction: Reduction
) -> Tensor:
    """Per list: the sum over its valid pairs; ``"mean"``: the total over the number of valid
    pairs (rax's mean over pairs), 0 without one."""
    if weight is not None:
        pair_loss = pair_loss * weight
    loss = torch.where(valid, pair_loss, 0.0).sum((-2, -1))
    if loss.numel() == 0:
        return reduce(loss, reduction)  # no list at all: torch's mean over nothing, nan
    count = valid.sum((-2, -1)).to(loss.dtype)
    return reduce(loss, reduction, where=count > 0, mean_weight=count)


@follows_autocast("promoted")
@checks_config(_LOGISTIC_CONFIG)
def pairwise_logistic_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Pairwise logistic loss (RankNet): every more relevant item should score higher.

    .. math::
        \ell(s, y) = \sum_{i, j\,:\, y_i > y_j} w_i \log\left(1 + e^{-(s_i - s_j)}\right)

    computed without overflow (softplus).
    A pair :math:`(i, j)` counts when :math:`y_i > y_j` and both items are valid; the
    unreduced loss of a list is the (weighted) sum over its pairs, and ``"mean"`` divides the
    total by the number of valid pairs in the batch (rax's ``jnp.mean`` over the pair matrix,
    TF-Ranking's mean over pairs): a list with no valid pair (every relevance equal, one item,
    everything masked) adds 0 and is left out of the mean, and a batch with none gives 0 (an
    empty batch, no list at all, gives torch's mean over nothing, nan).

    Args:
        input: scores, shape ``(..., L)`` (lists last), floating dtype.
        target: graded relevance ``>= 0``, ``input``'s shape, floating (values checked in
            eager mode only); only its order matters (no gradient).
        weight: optional per-item weight, broadcastable to ``input``: a pair is weighted by
            its more relevant item's weight (rax's ``weights``); the mean still divides by the
            number of pairs.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask: an *item mask* with ``input``'s number of dimensions,
            broadcastable to its shape (rax's ``where``: pairs with a masked item do not
            count), or a *list mask*, broadcastable to ``input.shape[:-1]``.

    Returns:
        Shape ``input.shape[:-1]`` for ``"none"`` (the sum over each list's pairs), else a
        0-dim tensor.

    Raises:
        TypeError: non-floating tensors, a non-bool ``where``.
        ValueError: a 0-dim input, a target of another shape, a weight or ``where`` that does
            not broadcast, negative relevance, bad ``reduction``.

    Examples:
        >>> scores = torch.tensor([[2.0, 1.0, 3.0]])
        >>> funcloss.pairwise_logistic_loss(scores, torch.tensor([[2.0, 0.0, 1.0]]))
        tensor(0.5845)

    References:
        rax ``pairwise_logistic_loss``; Burges et al., "Learning to rank using gradient
        descent" (RankNet), ICML 2005.
    """
    fn = "pairwise_logistic_loss"
    _LOGISTIC_CONFIG(reduction=reduction)
    difference, valid, weight = _pairwise(fn, input, target, weight, where)
    return _reduce_pairs(softplus(-difference), valid, weight, reduction)


@follows_autocast("promoted")
@checks_config(_check_hinge_config)
def pairwise_hinge_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 1.0,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Pairwise hinge loss (RankSVM): every more relevant item should score higher by at least
    ``margin``.

    .. math::
        \ell(s, y) = \sum_{i, j\,:\, y_i > y_j} w_i \max\left(0, m - (s_i - s_j)\right)

    with :math:`m` = ``margin`` (rax's is fixed at 1; at the kink the gradient is 0, as
    ``relu``'s).
    A pair :math:`(i, j)` counts when :math:`y_i > y_j` and both items are valid; the
    unreduced loss of a list is the (weighted) sum over its pairs, and ``"mean"`` divides the
    total by the number of valid pairs in the batch (rax's ``jnp.mean`` over the pair matrix,
    TF-Ranking's mean over pairs): a list with no valid pair (every relevance equal, one item,
    everything masked) adds 0 and is left out of the mean, and a batch with none gives 0 (an
    empty batch, no list at all, gives torch's mean over nothing, nan).

    Args:
        input: scores, shape ``(..., L)`` (lists last), floating dtype.
        target: graded relevance ``>= 0``, ``input``'s shape, floating (values checked in
            eager mode only); only its order matters (no gradient).
        margin: :math:`m`, a real number.
        weight: optional per-item weight, broadcastable to ``input``: a pair is weighted by
            its more relevant item's weight (rax's ``weights``); the mean still divides by the
            number of pairs.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask: an *item mask* with ``input``'s number of dimensions,
            broadcastable to its shape (rax's ``where``: pairs with a masked item do not
            count), or a *list mask*, broadcastable to ``input.shape[:-1]``.

    Returns:
        Shape ``input.shape[:-1]`` for ``"none"`` (the sum over each list's pairs), else a
        0-dim tensor.

    Raises:
        TypeError: non-floating tensors, a non-bool ``where``, a non-number ``margin``.
        ValueError: a 0-dim input, a target of another shape, a weight or ``where`` that does
            not broadcast, negative relevance, a NaN ``margin``, bad ``reduction``.

    Examples:
        >>> scores = torch.tensor([[2.0, 1.0, 3.0]])
        >>> funcloss.pairwise_hinge_loss(scores, torch.tensor([[2.0, 0.0, 1.0]]))
        tensor(0.6667)

    References:
        rax ``pairwise_hinge_loss``; Herbrich et al., "Large margin rank boundaries for ordinal
        regression", 2000; Joachims, "Optimizing search engines using clickthrough data", 2002.
    """
    fn = "pairwise_hinge_loss"
    _check_hinge_config(margin=margin, reduction=reduction)
    difference, valid, weight = _pairwise(fn, input, target, weight, where)
    return _reduce_pairs(torch.relu(margin - difference), valid, weight, reduction)


# -- listmle_loss ----------------------------------------------------------------------------
#
# The Plackett-Luce denominators are a cumulative log-sum-exp. torch's logcumsumexp has an exact
# value and an exact reverse-mode derivative, but its forward-mode rule (torch 2.13) normalises
# by the list's global maximum and zeroes partial sums below 1e-13 of it: at scores -40, -45, 10
# its jvp gives d/dx_0 of the first partial sum as 1.9e-9 where the truth is 1. So the
# cumulative log-sum-exp is a custom Function: torch's op forward; its O(L) reverse formula in
# plain eager mode (a backward that builds no graph); elsewhere (the jvp, and a backward that
# is differentiated again or runs under a transform) the exact O(L^2) form with the weights
# W[k, m] = exp(x_m - c_k), m <= k, every exponent <= 0.


def _cumulative_forward(scores: Tensor) -> Tensor:
    """``c_k = log sum_{m <= k} exp(x_m)`` along the last dimension."""
    return torch.logcumsumexp(scores, -1)


_cumulative = custom_backward(_cumulative_forward)


def _cumulative_weights(scores: Tensor) -> Tensor:
    """``W[..., k, m] = exp(x_m - c_k)`` for ``m <= k``, else 0 (rows: the partial sums); ``c``
    recomputed as a row-wise log-sum-exp, whose derivatives are exact in every mode."""
    length = scores.shape[-1]
    lower = torch.ones(length, length, dtype=torch.bool, device=scores.device).tril()
    rows = torch.where(lower, scores.unsqueeze(-2), _lowest(scores))
    exponent = torch.where(lower, rows - torch.logsumexp(rows, -1, keepdim=True), 0.0)
    return torch.where(lower, torch.exp(exponent), 0.0)


@_cumulative.backward
def _cumulative_backward(grad: Tensor, scores: Tensor) -> Tensor:
    # d c_k / d x_m = exp(x_m - c_k) for m <= k:  grad_m = sum_{k >= m} grad_k exp(x_m - c_k)
    if in_place_safe(grad, scores):
        # O(L), torch's (TensorFlow's) formula: exp(x_m + log sum_{k >= m} exp(log|g_k| - c_k))
        lowest = _lowest(scores)
        total = _cumulative_forward(scores)
        positive = torch.where(grad > 0, grad.abs().log(), lowest) - total
        negative = torch.where(grad < 0, grad.abs().log(), lowest) - total
        up = torch.logcumsumexp(positive.flip(-1), -1).flip(-1)
        down = torch.logcumsumexp(negative.flip(-1), -1).flip(-1)
        return torch.exp(scores + up) - torch.exp(scores + down)
    return (grad.unsqueeze(-1) * _cumulative_weights(scores)).sum(-2)


@_cumulative.jvp
def _cumulative_jvp(scores_t: Tensor, scores: Tensor) -> Tensor:
    return (_cumulative_weights(scores) * scores_t.unsqueeze(-2)).sum(-1)


def _relevance_order(target: Tensor, items: Tensor | None) -> Tensor:
    """Indices sorting each list by relevance, highest first; ties keep the list's order (a
    stable sort, rax's ``sort_by`` without a key); masked items last."""
    key = target if items is None else masked(items, target, -math.inf)
    return torch.sort(key.detach(), dim=-1, descending=True, stable=True).indices


@follows_autocast("promoted")
@checks_config(_LISTMLE_CONFIG)
def listmle_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""ListMLE: the negative Plackett–Luce log-likelihood of the order given by the relevance.

    With :math:`\pi` the items sorted by relevance, highest first:

    .. math::
        \ell(s, y) = -\sum_{k=1}^{n} \log \frac{e^{s_{\pi(k)}}}{\sum_{m \ge k} e^{s_{\pi(m)}}}

    over the :math:`n` valid items (masked items are placed last and left out). Ties in the
    relevance keep the items' order in the list (a stable sort: rax's ``listmle_loss``
    without a random ``key``), so the loss is deterministic. The cumulative log-sum-exp is
    torch's ``logcumsumexp`` with exact derivatives in every mode (torch's own forward-mode
    rule loses the small partial sums).

    Args:
        input: scores, shape ``(..., L)`` (lists last), floating dtype.
        target: graded relevance ``>= 0``, ``input``'s shape, floating (values checked in
            eager mode only); only its order matters (no gradient).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask: an *item mask* with ``input``'s number of dimensions,
            broadcastable to its shape (rax's ``where``), or a *list mask*, broadcastable to
            ``input.shape[:-1]``. A list with no valid item adds 0 and is left out of
            ``"mean"``.

    Returns:
        Shape ``input.shape[:-1]`` for ``"none"``, else a 0-dim tensor; ``"mean"`` divides by
        the number of lists with a valid item.

    Raises:
        TypeError: non-floating tensors, a non-bool ``where``.
        ValueError: a 0-dim input, a target of another shape, a ``where`` that does not
            broadcast, negative relevance, bad ``reduction``.

    Examples:
        >>> scores = torch.tensor([[2.0, 1.0, 3.0]])
        >>> funcloss.listmle_loss(scores, torch.tensor([[2.0, 0.0, 1.0]]))
        tensor(1.5345)

    References:
        rax ``listmle_loss``; Xia et al., "Listwise approach to learning to rank: theory and
        algorithm", ICML 2008.
    """
    fn = "listmle_loss"
    _check_lists(fn, input, target)
    _LISTMLE_CONFIG(reduction=reduction)
    items = _item_mask(fn, where, input.shape)
    input = _promoted(input, target)
    _, target, _ = _masked_inputs(items, input, target, None)
    _check_relevance(fn, target)
    order = _relevance_order(target, items)
    scores = input if items is None else masked(items, input, _lowest(input))
    scores = scores.gather(-1, order)
    # log sum_{m >= k} exp(s_pi(m)): a masked item (last, at finfo.min) adds exactly 0
    tail = _cumulative(scores.flip(-1)).flip(-1)
    terms = tail - scores
    if items is not None:
        terms = torch.where(items.expand(input.shape).gather(-1, order), terms, 0.0)
    return reduce(terms.sum(-1), reduction, where=_lists_with_items(items, input.shape))


# -- approx_ndcg_loss ------------------------------------------------------------------------


def _discount(rank: Tensor) -> Tensor:
    # rax's default_discount_fn: 1 / log2(1 + rank), rank 1-based
    return 1.0 / torch.log2(1.0 + rank)


@follows_autocast("promoted")
@checks_config(_check_approx_ndcg_config)
def approx_ndcg_loss(
    input: Tensor,
    target: Tensor,
    *,
    temperature: float = 1.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""ApproxNDCG: minus NDCG with each item's rank replaced by a smooth approximation (rax's
    ``approx_t12n(ndcg_metric, temperature)``).

    .. math::
        \hat r_i = 1 + \sum_{j \ne i} \sigma\!\left(\frac{s_j - s_i}{T}\right), \qquad
        \ell(s, y) = -\frac{1}{\mathrm{IDCG}(y)} \sum_i \frac{w_i\,(2^{y_i} - 1)}
        {\log_2(1 + \hat r_i)}

    over the valid items (:math:`j` too), with :math:`\mathrm{IDCG}` the DCG of the items
    sorted by :math:`w_i (2^{y_i} - 1)`, taken as 1 where it is 0 (a list without relevant
    items has loss 0: finite, with a zero gradient). The loss is in :math:`[-1, 0]` for
    non-negative weights (rax's sign: the approximate metric, negated); smaller
    :math:`T` makes the ranks sharper.

    Args:
        input: scores, shape ``(..., L)`` (lists last), floating dtype.
        target: graded relevance ``>= 0``, ``input``'s shape, floating (values checked in
            eager mode only).
        temperature: :math:`T`, positive.
        weight: optional per-item weight, broadcastable to ``input`` (rax's ``weights``: it
            multiplies each gain, in the DCG and in the ideal DCG).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask: an *item mask* with ``input``'s number of dimensions,
            broadcastable to its shape (rax's ``where``: masked items are not ranked and add
            no gain), or a *list mask*, broadcastable to ``input.shape[:-1]``. A list with no
            valid item adds 0 and is left out of ``"mean"``.

    Returns:
        Shape ``input.shape[:-1]`` for ``"none"``, else a 0-dim tensor; ``"mean"`` divides by
        the number of lists with a valid item.

    Raises:
        TypeError: non-floating tensors, a non-bool ``where``, a non-number ``temperature``.
        ValueError: a 0-dim input, a target of another shape, a weight or ``where`` that does
            not broadcast, negative relevance, a non-positive ``temperature``, bad
            ``reduction``.

    Examples:
        >>> scores = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
        >>> funcloss.approx_ndcg_loss(scores, torch.tensor([[0.0, 0.0, 1.0, 2.0]]))
        tensor(-0.7179)

    References:
        rax ``approx_t12n(ndcg_metric)``; Qin, Liu and Li, "A general approximation framework
        for direct optimization of information retrieval measures", 2010.
    """
    fn = "approx_ndcg_loss"
    _check_lists(fn, input, target, weight)
    _check_approx_ndcg_config(temperature=temperature, reduction=reduction)
    items = _item_mask(fn, where, input.shape)
    input = _promoted(input, target, weight)
    input, target, weight = _masked_inputs(items, input, target, weight)
    _check_relevance(fn, target)
    gains = torch.expm1(target * math.log(2.0))  # 2^y - 1
    if weight is not None:
        gains = gains * weight
    # [..., i, j] = sigmoid((s_j - s_i) / T) over the pairs j != i of valid items
    length = input.shape[-1]
    pairs = ~torch.eye(length, dtype=torch.bool, device=input.device)
    if items is not None:
        pairs = pairs & (items.unsqueeze(-1) & items.unsqueeze(-2))
    # 0 outside the pairs (the diagonal is inf - inf at an infinite score): no nan derivative
    difference = torch.where(pairs, input.unsqueeze(-2) - input.unsqueeze(-1), 0.0)
    steps = torch.sigmoid(difference / temperature)
    ranks = 1.0 + torch.where(pairs, steps, 0.0).sum(-1)
    dcg = (gains * _discount(ranks)).sum(-1)
    ideal_gains = gains.gather(-1, _relevance_order(gains, items))
    positions = torch.arange(1, length + 1, dtype=gains.dtype, device=gains.device)
    ideal = (ideal_gains * _discount(positions)).sum(-1)
    ideal = torch.where(ideal == 0, 1.0, ideal)
    return reduce(-dcg / ideal, reduction, where=_lists_with_items(items, input.shape))
