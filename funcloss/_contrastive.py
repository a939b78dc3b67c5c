"""Metric and contrastive learning losses: supcon, ntxent, info_nce, arcface, cosface,
contrastive, batch_triplet, multi_similarity, circle.

Each takes embeddings ``(N, D)`` and integer group labels ``(N,)``: two samples with the same
label are a positive pair, two with different labels a negative pair, a sample is never paired
with itself. All are plain torch compositions over the ``(N, N)`` similarity matrix, computed
as a matrix product of unit vectors (never ``cdist``, which has no forward-mode rule), with no
data-dependent Python control flow, so every torch.func transform and ``torch.compile`` works.

Conventions shared by the family:

- Unit vectors are ``x / sqrt(max(|x|^2, eps))`` with ``eps`` the dtype's machine epsilon
  (optax's ``cosine_similarity``); a zero embedding becomes the zero vector, with finite
  derivatives of every order. Vectors longer than 1 are first divided by their (detached)
  largest coordinate, which changes nothing mathematically (the unit vector is invariant to
  scale, to every order of derivative) and keeps the squared norm from overflowing.
- ``"none"`` gives one loss per sample (as an anchor), shape ``(N,)``.
- ``where`` (bool, broadcastable to ``(N,)``) removes samples from the batch: a masked sample is
  neither an anchor nor anyone's positive or negative, its embedding is replaced by zeros
  before any arithmetic (an inf or NaN there reaches nothing), and its gradient is exactly 0.
  A masked batch equals the batch with the masked samples sliced out.
- A batch with no positive pair (or, for the losses that contrast with negatives, no negative
  pair) gives 0 with zero gradient, never NaN.
- bf16/fp16 embeddings are computed in float32 and the result is returned in their dtype.
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
    check_floating,
    check_integer,
    check_number,
    check_positive,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    fail,
    shape_str,
)
from ._modes import follows_autocast
from ._ops import softplus
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

# -- shared machinery ------------------------------------------------------------------------


def _check_batch(fn: str, embeddings: Tensor, labels: Tensor, name: str = "embeddings") -> int:
    """Embeddings ``(N, D)``, floating; labels ``(N,)``, integer. Returns N."""
    check_tensor(fn, **{name: embeddings})
    check_floating(fn, **{name: embeddings})
    if embeddings.dim() != 2:
        fail(ValueError, fn, name, "have shape (N, D)", shape_str(embeddings.shape))
    check_integer(fn, labels=labels)
    n = embeddings.shape[0]
    if labels.shape != (n,):
        fail(
            ValueError,
            fn,
            "labels",
            f"have shape ({n},), one group label per embedding",
            shape_str(labels.shape),
        )
    return n


def _unit(x: Tensor) -> Tensor:
    """``x / sqrt(max(|x|^2, eps))`` along the last dim (optax's cosine normalisation).

    Rows longer than 1 (in their largest coordinate) are first divided by that coordinate,
    detached: the unit vector is 0-homogeneous, so every derivative is unchanged, and the
    squared norm of a float32 vector near 3e38 does not overflow. Infinite coordinates are
    clamped to the dtype's largest value first, so a row holding them gets its limit, the
    direction of their signs (its finite coordinates shrink to about 1e-38 of it; gradient 0 at
    the infinite ones). Two ops on the ``(N, D)`` rows carry the gradient before the norm.
    """
    largest = torch.finfo(x.dtype).max
    scale = x.detach().abs().amax(-1, keepdim=True).clamp(1.0, largest)
    y = x.clamp(-largest, largest) / scale
    squared = (y * y).sum(-1, keepdim=True)
    return y / squared.clamp_min(torch.finfo(x.dtype).eps).sqrt()


def _included(where: Tensor | None, n: int, device: torch.device) -> Tensor:
    """The ``(N,)`` bool of the samples that count."""
    if where is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return where.expand(n)


def _pairs(labels: Tensor, included: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) ``(N, N)`` bool: same / different label, both samples included,
    never a sample with itself."""
    n = labels.shape[0]
    both = included[:, None] & included[None, :]
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(n, dtype=torch.bool, device=labels.device)
    return same & not_self & both, ~same & both


def _prepare(
    fn: str, embeddings: Tensor, labels: Tensor, where: Tensor | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checks ``where``; returns (unit vectors in the compute dtype, positive, negative,
    included)."""
    n = embeddings.shape[0]
    if where is not None:
        check_where(fn, where, (n,))
        embeddings = masked(where[..., None], embeddings)
    included = _included(where, n, embeddings.device)
    positive, negative = _pairs(labels, included)
    return _unit(embeddings.to(compute_dtype(embeddings.dtype))), positive, negative, included


def _masked_logsumexp(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise log-sum-exp of ``values`` over ``mask``, and whether the row has any entry.

    A row with no entry gives 0 (not -inf) with zero gradient: its values are replaced by 0
    before the reduction (the second ``where``), so no ``exp(-inf - -inf)`` reaches a gradient.
    """
    any_entry = mask.any(-1)
    filled = torch.where(mask, values, float("-inf"))
    filled = torch.where(any_entry[:, None], filled, 0.0)
    return torch.where(any_entry, torch.logsumexp(filled, -1), 0.0), any_entry


def _temperature_config(fn: str, default: float):
    def check(*, temperature: float = default, reduction: str = "mean") -> None:
        check_positive(fn, temperature=temperature)
        check_reduction(fn, reduction)

    return check


# -- supcon_loss -----------------------------------------------------------------------------

_SUPCON_CONFIG = _temperature_config("supcon_loss", 0.1)


@follows_autocast("promoted")
@checks_config(_SUPCON_CONFIG)
def supcon_loss(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.1,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Supervised contrastive loss (SupCon, Khosla et al. 2020, :math:`\mathcal{L}^{sup}_{out}`).

    Pulls every sample towards all the samples of its group and away from the others, on the
    unit sphere: the supervised generalisation of SimCLR's NT-Xent.

    .. math::
        \ell_i = -\frac{1}{|P(i)|} \sum_{p \in P(i)}
                 \log \frac{\exp(s_{ip} / \tau)}{\sum_{a \ne i} \exp(s_{ia} / \tau)},
        \qquad s_{ij} = \frac{x_i \cdot x_j}{\|x_i\| \|x_j\|}

    with :math:`P(i)` the other samples of :math:`i`'s group and the sum over every other
    included sample :math:`a`.

    ``"mean"`` averages over the anchors that have a positive and a negative (an anchor
    without a positive is excluded: its loss is undefined, 0 in ``"none"``, never NaN; a batch
    of one group has no negative pair and gives 0). pytorch-metric-learning's ``SupConLoss``
    averages only the non-zero losses instead; funcloss does not, so that the value does not
    jump when one anchor's loss reaches 0. Otherwise the values are PML's.

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        temperature: :math:`\tau`, positive.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is neither an anchor nor anyone's positive or negative.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 for an excluded or masked anchor), else a 0-dim
        tensor, of ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, ``temperature <= 0``, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> funcloss.supcon_loss(x, torch.tensor([0, 0, 1, 1]), 0.5, reduction="none")
        tensor([0.2064, 0.5371, 1.6715, 0.2906])

    References:
        P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (eq. 2);
        pytorch-metric-learning's ``SupConLoss``.
    """
    fn = "supcon_loss"
    _check_batch(fn, embeddings, labels)
    _SUPCON_CONFIG(temperature=temperature, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, _ = _prepare(fn, embeddings, labels, where)
    similarity = unit @ unit.T / temperature
    log_denominator, _ = _masked_logsumexp(similarity, positive | negative)
    count = positive.sum(-1)
    anchors = (count > 0) & negative.any(-1)
    positive_mean = torch.where(positive, similarity, 0.0).sum(-1) / count.clamp_min(1)
    loss = torch.where(anchors, log_denominator - positive_mean, 0.0)
    return reduce(loss, reduction, where=anchors).to(dtype)


# -- ntxent_loss -----------------------------------------------------------------------------

_NTXENT_CONFIG = _temperature_config("ntxent_loss", 0.07)


@follows_autocast("promoted")
@checks_config(_NTXENT_CONFIG)
def ntxent_loss(
    embeddings: Tensor,
    labels: Tensor,
    temperature: float = 0.07,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Normalised temperature-scaled cross-entropy (NT-Xent, SimCLR), optax's semantics.

    For self-supervised contrastive learning: each positive pair (two views of one image share a
    label) is classified against the anchor's negatives.

    .. math::
        \ell_{ij} = -\log \frac{\exp(s_{ij} / \tau)}
                    {\exp(s_{ij} / \tau) + \sum_{k \in N(i)} \exp(s_{ik} / \tau)}
                  = \operatorname{softplus}\Big(\log \sum_{k \in N(i)} e^{s_{ik}/\tau}
                    - s_{ij}/\tau\Big)

    for every ordered positive pair :math:`(i, j)`, :math:`s` the cosine similarity and
    :math:`N(i)` the samples of other groups (the other positives are not in the denominator,
    as in optax and pytorch-metric-learning). A pair without negatives has loss 0.

    ``"none"`` gives :math:`\ell_i = \sum_{j} \ell_{ij}`, the sum over anchor :math:`i`'s
    positive pairs; ``"sum"`` the sum over all pairs; ``"mean"`` the mean over the positive
    pairs, as ``optax.losses.ntxent`` and PML's ``NTXentLoss`` (every pair counts, also one with
    loss 0). A batch with no positive pair gives 0 (optax: NaN, from 0 / 0; PML: 0). With
    exactly one positive per anchor this is :func:`supcon_loss` at the same temperature.

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        temperature: :math:`\tau`, positive.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is neither an anchor nor anyone's positive or negative, and the
            mean counts only the pairs of included samples.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 for a masked anchor or one without a positive), else
        a 0-dim tensor, of ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, ``temperature <= 0``, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> funcloss.ntxent_loss(x, torch.tensor([0, 0, 1, 1]), temperature=0.5)
        tensor(0.6764)

    References:
        T. Chen et al., "A Simple Framework for Contrastive Learning of Visual
        Representations", ICML 2020; ``optax.losses.ntxent``.
    """
    fn = "ntxent_loss"
    _check_batch(fn, embeddings, labels)
    _NTXENT_CONFIG(temperature=temperature, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, _ = _prepare(fn, embeddings, labels, where)
    similarity = unit @ unit.T / temperature
    log_negatives, has_negative = _masked_logsumexp(similarity, negative)
    # an anchor without negatives: log 0 = -inf, and its pairs' softplus(-inf - s) = 0 with
    # zero derivatives of every order (a NaN similarity still shows)
    log_negatives = torch.where(has_negative, log_negatives, float("-inf"))
    pair = softplus(log_negatives[:, None] - similarity)
    loss = torch.where(positive, pair, 0.0).sum(-1)
    count = positive.sum(-1)
    return reduce(loss, reduction, where=count > 0, mean_weight=count).to(dtype)


# -- info_nce_loss ---------------------------------------------------------------------------


def _check_info_nce_config(
    *, temperature: float = 0.1, symmetric: bool = False, reduction: str = "mean"
) -> None:
    fn = "info_nce_loss"
    check_positive(fn, temperature=temperature)
    if not isinstance(symmetric, bool):
        fail(TypeError, fn, "symmetric", "be a bool", type(symmetric).__name__)
    check_reduction(fn, reduction)


def _check_info_nce(
    fn: str, query: Tensor, positive_key: Tensor, negative_keys: Tensor | None, symmetric: bool
) -> None:
    check_tensor(fn, query=query, positive_key=positive_key)
    check_floating(fn, query=query, positive_key=positive_key, negative_keys=negative_keys)
    if query.dim() != 2:
        fail(ValueError, fn, "query", "have shape (N, D)", shape_str(query.shape))
    if positive_key.shape != query.shape:
        fail(
            ValueError,
            fn,
            "positive_key",
            f"have the query's shape {shape_str(query.shape)}",
            shape_str(positive_key.shape),
        )
    if negative_keys is None:
        return
    n, d = query.shape
    if not (
        (negative_keys.dim() == 2 and negative_keys.shape[1] == d)
        or (
            negative_keys.dim() == 3 and negative_keys.shape[0] == n and negative_keys.shape[2] == d
        )
    ):
        fail(
            ValueError,
            fn,
            "negative_keys",
            f"have shape (M, {d}) (shared) or ({n}, M, {d}) (per query)",
            shape_str(negative_keys.shape),
        )
    if symmetric:
        fail(
            ValueError,
            fn,
            "symmetric",
            "be False when `negative_keys` are given (the symmetric loss is in-batch)",
            symmetric,
        )


@follows_autocast("promoted")
@checks_config(_check_info_nce_config)
def info_nce_loss(
    query: Tensor,
    positive_key: Tensor,
    negative_keys: Tensor | None = None,
    temperature: float = 0.1,
    symmetric: bool = False,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""InfoNCE: classify each query's own key among negatives, on the unit sphere.

    For contrastive learning with paired views (CPC, MoCo, CLIP): query :math:`i`'s positive is
    ``positive_key[i]``; its negatives are the other queries' keys (in-batch, when
    ``negative_keys`` is ``None``) or the given negative keys.

    .. math::
        \ell_i = -\log \frac{\exp(q_i \cdot k_i / \tau)}
                 {\exp(q_i \cdot k_i / \tau) + \sum_{n} \exp(q_i \cdot n / \tau)}

    with every vector normalised to unit length (a zero vector stays zero). ``symmetric=True``
    (in-batch only; CLIP's loss) averages this with the same loss of each key against the
    queries: :math:`\tfrac12 (\ell_i^{q \to k} + \ell_i^{k \to q})`. ``"mean"`` averages over
    the included queries (every query has a positive: no exclusion). A batch of one query with
    in-batch negatives has no negative: loss 0.

    Args:
        query: shape ``(N, D)``, floating dtype.
        positive_key: shape ``(N, D)``, the key paired with each query.
        negative_keys: ``None`` (in-batch negatives), ``(M, D)`` shared by every query, or
            ``(N, M, D)``, one set per query.
        temperature: :math:`\tau`, positive.
        symmetric: also classify each key among the queries (in-batch negatives only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the pairs in the batch, broadcastable to ``(N,)``: a
            masked pair is not a query, and (in-batch) its key is no one's negative; its query,
            key and per-query negatives are not read. Shared negative keys are not masked.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 where masked), else a 0-dim tensor, of the promoted
        dtype of the inputs.

    Raises:
        TypeError: non-floating inputs, a non-bool ``symmetric`` or ``where``.
        ValueError: shapes as above, ``temperature <= 0``, ``symmetric`` with
            ``negative_keys``, bad ``reduction``.

    Examples:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> funcloss.info_nce_loss(q, q, temperature=0.5, reduction="none")
        tensor([0.1269, 0.1269])

    References:
        A. van den Oord et al., "Representation Learning with Contrastive Predictive Coding",
        2018; the ``info-nce-pytorch`` package's ``InfoNCE`` (the same signature).
    """
    fn = "info_nce_loss"
    _check_info_nce(fn, query, positive_key, negative_keys, symmetric)
    _check_info_nce_config(temperature=temperature, symmetric=symmetric, reduction=reduction)
    n = query.shape[0]
    dtype = torch.promote_types(query.dtype, positive_key.dtype)
    if negative_keys is not None:
        dtype = torch.promote_types(dtype, negative_keys.dtype)
    if where is not None:
        check_where(fn, where, (n,))
        query, positive_key = (masked(where[..., None], x) for x in (query, positive_key))
        if negative_keys is not None and negative_keys.dim() == 3:
            negative_keys = masked(where[..., None, None], negative_keys)
    included = _included(where, n, query.device)
    compute = compute_dtype(dtype)
    # the temperature divides the (N, D) queries, not the (N, N) logits: one op fewer per
    # logit, forward and backward
    q, k = _unit(query.to(compute)) / temperature, _unit(positive_key.to(compute))
    positive = (q * k).sum(-1)
    if negative_keys is None:
        logits = q @ k.T
        if where is None:  # every pair counts: the plain log-sum-exp, no (N, N) masking
            loss = torch.logsumexp(logits, -1) - positive
            if symmetric:
                loss = (loss + torch.logsumexp(logits, 0) - positive) / 2
        else:
            pairs = included[:, None] & included[None, :]
            loss = _masked_logsumexp(logits, pairs)[0] - positive
            if symmetric:
                loss = (loss + _masked_logsumexp(logits.T, pairs)[0] - positive) / 2
    else:
        negatives = _unit(negative_keys.to(compute))
        if negatives.dim() == 2:
            negative = q @ negatives.T
        else:
            negative = (q[:, None, :] * negatives).sum(-1)
        loss = softplus(torch.logsumexp(negative, -1) - positive)
    return reduce(loss, reduction, where=where).to(dtype)


# -- arcface_loss, cosface_loss --------------------------------------------------------------


def _check_cosine_logits(fn: str, input: Tensor, target: Tensor) -> None:
    """Cosine logits ``(N, C)``, class indices ``(N,)`` in range (eager)."""
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    if input.dim() != 2 or input.shape[1] == 0:
        fail(ValueError, fn, "input", "have shape (N, C) with C > 0", shape_str(input.shape))
    check_integer(fn, target=target)
    if target.shape != input.shape[:1]:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape ({input.shape[0]},), one class index per row",
            shape_str(target.shape),
        )


def _margin_softmax(
    fn: str,
    input: Tensor,
    target: Tensor,
    scale: float,
    reduction: Reduction,
    where: Tensor | None,
    relative_logits: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """Cross-entropy of ``scale *`` the cosines with the target's cosine replaced by its margin
    logit, from ``relative_logits(cosine, target_cosine)``: ``(N, C)``, each class's cosine less
    the target's margin logit (read at the other classes only)."""
    _check_cosine_logits(fn, input, target)
    n, num_classes = input.shape
    dtype = input.dtype
    if where is not None:
        check_where(fn, where, (n,))
        input, target = masked(where[..., None], input), masked(where, target, 0)
    check_class_indices(fn, target, num_classes)  # a masked row's index is 0 by now
    target = as_index(target)
    cosine = input.to(compute_dtype(dtype))
    is_target = torch.arange(num_classes, device=cosine.device) == target[:, None]
    target_cosine = cosine.gather(1, target[:, None])
    # logits relative to the target's: the target's own is 0, also at an infinite target
    # cosine (where logsumexp(logits) - target logit would be inf - inf)
    relative = torch.where(is_target, 0.0, relative_logits(cosine, target_cosine) * scale)
    # cosines far outside [-1, 1] (float32 near 3e38) overflow the difference: clamped to the
    # dtype's range, the loss stays finite (at +-inf the clamp's zero gradient is the limit's)
    big = torch.finfo(relative.dtype).max
    loss = _small_logsumexp(relative.clamp(-big, big))
    return reduce(loss, reduction, where=where).to(dtype)


def _small_logsumexp(z: Tensor) -> Tensor:
    """``logsumexp(z, 1)`` as ``m + log1p(sum_j e_j)`` with ``m`` the row's largest value
    (detached), ``e_j = exp(z_j - m)`` and ``expm1`` at the largest one (0 there): the same
    function of ``z`` (derivatives of every order: the softmax, ...), but a small result, a
    well-separated row's ``log(1 + e)`` with ``e << 1``, keeps its precision, which the log of a
    rounded ``1 + e`` loses (in float32 2e-4 of the loss at ``e = 1.4e-4``)."""
    top = z.detach().amax(1, keepdim=True)
    first = z.detach().argmax(1, keepdim=True)
    at_top = torch.arange(z.shape[1], device=z.device) == first
    # the other terms (autograd keeps one (N, C) buffer, exp's), and the largest one's apart
    others = torch.exp(z - top).masked_fill(at_top, 0.0).sum(1)
    own = torch.expm1(z.gather(1, first) - top).squeeze(1)
    return top.squeeze(1) + torch.log1p(others + own)


def _check_arcface_config(
    *, margin: float = 0.5, scale: float = 64.0, easy_margin: bool = False, reduction: str = "mean"
) -> None:
    fn = "arcface_loss"
    check_number(fn, margin=margin)
    if not 0 <= margin < math.pi:
        fail(ValueError, fn, "margin", "be an angle in [0, pi) (radians)", margin)
    check_positive(fn, scale=scale)
    if not isinstance(easy_margin, bool):
        fail(TypeError, fn, "easy_margin", "be a bool", type(easy_margin).__name__)
    check_reduction(fn, reduction)


def _sine(cosine: Tensor) -> Tensor:
    """``sqrt(1 - cos^2)``, 0 at ``|cos| >= 1`` with a zero derivative there (double where:
    the square root's derivative is infinite at 0, and would give NaN through the unselected
    branch of a single where)."""
    squared = 1 - cosine * cosine
    inside = squared > 0
    return torch.where(inside, torch.where(inside, squared, 1.0).sqrt(), 0.0)


@follows_autocast("promoted")
@checks_config(_check_arcface_config)
def arcface_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 0.5,
    scale: float = 64.0,
    *,
    easy_margin: bool = False,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""ArcFace (additive angular margin) loss on cosine logits (Deng et al. 2019).

    For face recognition and other open-set classification: the angle to the true class's
    weight must beat the others by ``margin``. The input is the cosine of each sample's
    embedding with each class weight (normalise both and multiply: the weight matrix is yours,
    where pytorch-metric-learning's ``ArcFaceLoss`` owns it).

    .. math::
        \ell_n = -\log \frac{e^{s \phi(\cos\theta_{y_n})}}{e^{s \phi(\cos\theta_{y_n})}
                 + \sum_{c \ne y_n} e^{s \cos\theta_c}},
        \qquad \phi = \begin{cases} \cos(\theta + m) & \theta + m \le \pi \\
                 \cos\theta - m \sin m & \text{otherwise} \end{cases}

    :math:`\cos(\theta + m)` is computed as :math:`\cos\theta \cos m - \sin\theta \sin m` with
    :math:`\sin\theta = \sqrt{1 - \cos^2\theta}` (insightface's form), and the square root's
    derivative taken as 0 at :math:`|\cos\theta| = 1`: finite gradients there, where an
    ``acos`` (pytorch-metric-learning's) gives NaN. The fallback for :math:`\theta + m > \pi`
    keeps the logit decreasing in :math:`\theta` (insightface's ``th``/``mm``);
    ``easy_margin=True`` applies the margin only where :math:`\cos\theta > 0` (else
    :math:`\phi = \cos\theta`). Inputs are not clamped to :math:`[-1, 1]`. ``"mean"``
    averages over the (included) samples.

    Args:
        input: cosines, shape ``(N, C)``, floating dtype, values in ``[-1, 1]``.
        target: class indices, shape ``(N,)``, integer dtype, in ``[0, C)``.
        margin: :math:`m`, the angular margin in radians (PML's ``margin`` is in degrees:
            its default 28.6 is 0.5 here), in ``[0, pi)``.
        scale: :math:`s`, positive.
        easy_margin: the margin only for positive cosines.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples that count, broadcastable to ``(N,)``; a
            masked sample's cosines and class index are not read.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 where masked), else a 0-dim tensor, of ``input``'s
        dtype.

    Raises:
        TypeError: non-floating input, non-integer target, a non-bool ``easy_margin`` or
            ``where``.
        ValueError: input not ``(N, C)``, target not ``(N,)``, a margin outside ``[0, pi)``,
            ``scale <= 0``, bad ``reduction``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> cosines = torch.tensor([[0.9, 0.1, -0.2], [1.0, 0.0, 0.0]])
        >>> funcloss.arcface_loss(cosines, torch.tensor([0, 0]), scale=8.0, reduction="none")
        tensor([0.0230, 0.0018])

    References:
        J. Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
        CVPR 2019; insightface's ``ArcMarginProduct``; pytorch-metric-learning's
        ``ArcFaceLoss``.
    """
    fn = "arcface_loss"
    _check_arcface_config(margin=margin, scale=scale, easy_margin=easy_margin, reduction=reduction)
    cos_m, sin_m = math.cos(margin), math.sin(margin)
    threshold, fallback = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin

    def relative_logits(cosine: Tensor, target_cosine: Tensor) -> Tensor:
        shifted = target_cosine * cos_m - _sine(target_cosine) * sin_m
        if easy_margin:
            modified = torch.where(target_cosine > 0, shifted, target_cosine)
        else:
            modified = torch.where(target_cosine > threshold, shifted, target_cosine - fallback)
        return cosine - modified

    return _margin_softmax(fn, input, target, scale, reduction, where, relative_logits)


def _check_cosface_config(
    *, margin: float = 0.35, scale: float = 64.0, reduction: str = "mean"
) -> None:
    fn = "cosface_loss"
    check_number(fn, margin=margin)
    check_positive(fn, scale=scale)
    check_reduction(fn, reduction)


@follows_autocast("promoted")
@checks_config(_check_cosface_config)
def cosface_loss(
    input: Tensor,
    target: Tensor,
    margin: float = 0.35,
    scale: float = 64.0,
    reduction: Reduction = "mean",
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""CosFace (large margin cosine) loss on cosine logits (Wang et al. 2018).

    As :func:`arcface_loss`, with the margin subtracted from the target's cosine.

    .. math::
        \ell_n = -\log \frac{e^{s (\cos\theta_{y_n} - m)}}{e^{s (\cos\theta_{y_n} - m)}
                 + \sum_{c \ne y_n} e^{s \cos\theta_c}}

    ``"mean"`` averages over the (included) samples, as pytorch-metric-learning's
    ``CosFaceLoss`` (which owns its weight matrix; here the cosines are the input).

    Args:
        input: cosines, shape ``(N, C)``, floating dtype.
        target: class indices, shape ``(N,)``, integer dtype, in ``[0, C)``.
        margin: :math:`m`, a real number.
        scale: :math:`s`, positive.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples that count, broadcastable to ``(N,)``; a
            masked sample's cosines and class index are not read.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 where masked), else a 0-dim tensor, of ``input``'s
        dtype.

    Raises:
        TypeError: non-floating input, non-integer target, a non-bool ``where``.
        ValueError: input not ``(N, C)``, target not ``(N,)``, ``scale <= 0``, bad
            ``reduction``.
        IndexError: a class index out of range (eager mode).

    Examples:
        >>> cosines = torch.tensor([[0.9, 0.1, -0.2], [1.0, 0.0, 0.0]])
        >>> funcloss.cosface_loss(cosines, torch.tensor([0, 0]), scale=8.0, reduction="none")
        tensor([0.0294, 0.0110])

    References:
        H. Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR
        2018; pytorch-metric-learning's ``CosFaceLoss``.
    """
    fn = "cosface_loss"
    _check_cosface_config(margin=margin, scale=scale, reduction=reduction)

    def relative_logits(cosine: Tensor, target_cosine: Tensor) -> Tensor:
        # the difference first: far outside [-1, 1] (float32 near -4e31) the margin would be
        # rounded away in the target's cos - m, and a tie would give log 2 for s m + log 2
        return (cosine - target_cosine) + margin

    return _margin_softmax(fn, input, target, scale, reduction, where, relative_logits)


# -- pair distances and the metric-learning losses -------------------------------------------


def _distances(unit: Tensor) -> Tensor:
    """Euclidean distances ``(N, N)`` between the rows of ``unit`` (PML's ``LpDistance`` on
    normalised embeddings), from their Gram matrix: ``|u_i|^2 + |u_j|^2 - 2 u_i . u_j``.

    No ``cdist`` (it has no forward-mode rule). The square root's derivative is infinite at 0:
    a distance of 0 (a sample with itself, coincident or zero embeddings) is taken through the
    double ``where``, with derivatives 0 there (the subgradient of the cone's tip), never NaN.
    A squared distance that rounding makes negative is 0; a NaN stays NaN.

    The Gram form loses the relative precision ``2 eps / d^2`` of a near pair's squared distance
    (in float32 a gradient off by 2e-5 of itself at ``d = 0.24``, where the differences are
    exact): below float64 the squared distances come from one dtype wider (float64 for
    float32), rounded once. Those wide ``(N, N)`` buffers live in the forward only: autograd
    saves none of them.
    """
    dtype = unit.dtype
    wide = unit.to(_WIDER.get(dtype, dtype))
    # the norms from the Gram matrix's own diagonal: coincident rows give the same products as
    # their cross term, so exactly 0 (a separate sum rounds otherwise on some CPUs' kernels)
    gram = wide @ wide.T
    squared_norm = gram.diagonal()
    squared = (squared_norm[:, None] + squared_norm[None, :] - 2 * gram).to(dtype)
    n = unit.shape[0]
    not_self = ~torch.eye(n, dtype=torch.bool, device=unit.device)
    # NaN stays NaN (``~(squared <= 0)``, not ``squared > 0``): a NaN input is never hidden
    positive = ~(squared <= 0) & not_self
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


# The Gram matrix's dtype for embeddings of a narrower one (see _distances).
_WIDER = {torch.float32: torch.float64, torch.bfloat16: torch.float32, torch.float16: torch.float32}


def _distances_to(unit: Tensor, index: Tensor) -> Tensor:
    """Euclidean distances ``(N,)`` from each row of ``unit`` to row ``index[i]``, from their
    difference: exact where the Gram form loses the relative precision ``eps / d^2`` of a
    near-coincident pair. The square root is taken through the double ``where`` (derivative 0
    at distance 0)."""
    difference = unit - unit.index_select(0, index)
    squared = (difference * difference).sum(-1)
    positive = ~(squared <= 0)  # NaN stays NaN
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


# -- contrastive_loss ------------------------------------------------------------------------


def _check_contrastive_config(
    *, pos_margin: float = 0.0, neg_margin: float = 1.0, reduction: str = "mean"
) -> None:
    fn = "contrastive_loss"
    check_number(fn, pos_margin=pos_margin, neg_margin=neg_margin)
    check_reduction(fn, reduction)


@follows_autocast("promoted")
@checks_config(_check_contrastive_config)
def contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    pos_margin: float = 0.0,
    neg_margin: float = 1.0,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Contrastive (pair margin) loss (Hadsell et al. 2006), pytorch-metric-learning's
    ``ContrastiveLoss`` with its default ``LpDistance`` (Euclidean, normalised embeddings).

    Pulls positive pairs within ``pos_margin`` of each other and pushes negative pairs at least
    ``neg_margin`` apart, on the unit sphere (distances in ``[0, 2]``).

    .. math::
        \ell_i = \sum_{j \in P(i)} [d_{ij} - m_p]_+ + \sum_{j \in N(i)} [m_n - d_{ij}]_+,
        \qquad d_{ij} = \Big\| \frac{x_i}{\|x_i\|} - \frac{x_j}{\|x_j\|} \Big\|_2

    over the ordered pairs: :math:`P(i)` the other samples of :math:`i`'s group, :math:`N(i)`
    the samples of other groups. The distance has derivative 0 at 0 (coincident or zero
    embeddings), never NaN.

    ``"mean"`` is PML's (``AvgNonZeroReducer`` on each part): the positive pairs' sum over the
    number of positive pairs with a non-zero loss, plus the same for the negative pairs (a part
    with no non-zero pair adds 0). This is the drop-in choice, and keeps the satisfied pairs
    from diluting the gradient as training goes on; the price is a value that jumps when a
    pair's loss reaches 0 (the count changes). ``"sum"`` sums :math:`\ell_i`. A batch with no
    positive pair or no negative pair gives 0 with zero gradient (PML: the other part's
    average).

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        pos_margin: :math:`m_p`, the distance below which a positive pair costs nothing.
        neg_margin: :math:`m_n`, the distance above which a negative pair costs nothing.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is in no pair.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 where masked), else a 0-dim tensor, of
        ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``, a margin
            that is not a real number.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, bad ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> funcloss.contrastive_loss(x, torch.tensor([0, 0, 1, 1]), reduction="none")
        tensor([0.6325, 0.7380, 1.5198, 1.4142])

    References:
        R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality Reduction by Learning an Invariant
        Mapping", CVPR 2006; pytorch-metric-learning's ``ContrastiveLoss``.
    """
    fn = "contrastive_loss"
    _check_batch(fn, embeddings, labels)
    _check_contrastive_config(pos_margin=pos_margin, neg_margin=neg_margin, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, included = _prepare(fn, embeddings, labels, where)
    distance = _distances(unit)
    # a batch without a positive or without a negative pair: every pair out
    both = positive.any() & negative.any()
    positive, negative = positive & both, negative & both
    pulled = torch.where(positive, torch.relu(distance - pos_margin), 0.0)
    pushed = torch.where(negative, torch.relu(neg_margin - distance), 0.0)
    pulled_loss, pushed_loss = pulled.sum(-1), pushed.sum(-1)
    if reduction != "mean":
        return reduce(pulled_loss + pushed_loss, reduction, where=included).to(dtype)
    # PML's AvgNonZeroReducer on each part: divided by its number of non-zero pairs
    loss = reduce(pulled_loss, "mean", where=included, mean_weight=(pulled > 0).sum(-1)) + reduce(
        pushed_loss, "mean", where=included, mean_weight=(pushed > 0).sum(-1)
    )
    return loss.to(dtype)


# -- batch_triplet_loss ----------------------------------------------------------------------

_MINING = ("all", "hard")


def _check_batch_triplet_config(
    *, margin: float = 0.05, mining: str = "all", reduction: str = "mean"
) -> None:
    fn = "batch_triplet_loss"
    check_number(fn, margin=margin)
    if mining not in _MINING:
        fail(ValueError, fn, "mining", "be 'all' or 'hard'", repr(mining))
    check_reduction(fn, reduction)


def _all_triplets(distance: Tensor, positive: Tensor, negative: Tensor, margin: float):
    """Per (anchor, positive) pair: the sum over the anchor's negatives of
    ``[d_ap - d_an + margin]_+``, and the number of its non-zero terms, each ``(N, N)``.

    Not the ``(N, N, N)`` tensor of triplets: the anchor's negative distances are sorted (the
    others sort last, as inf), and for the threshold ``t = d_ap + margin`` the terms are the
    ``k`` negatives below ``t`` (``searchsorted``): ``k t - (their cumulative sum)``, in
    ``O(N^2 log N)``. Every step is a sort, a gather or a cumulative sum, with the rules of every
    transform; the count ``k`` is piecewise constant (no derivative).
    """
    keys = torch.where(negative, distance, float("inf"))
    sorted_keys = keys.sort(-1).values
    threshold = distance + margin
    count = torch.searchsorted(sorted_keys.detach(), threshold.detach().contiguous())
    finite = torch.where(sorted_keys.isinf(), 0.0, sorted_keys)
    cumulative = torch.cat([torch.zeros_like(finite[:, :1]), finite.cumsum(-1)], -1)
    below = cumulative.gather(-1, count)
    terms = count.to(distance.dtype) * threshold - below
    # a NaN distance sorts last and is below no threshold: shown, not hidden
    last = sorted_keys[:, -1:]
    terms = torch.where(last.isnan(), last, terms)
    return torch.where(positive, terms, 0.0), torch.where(positive, count, 0)


@follows_autocast("promoted")
@checks_config(_check_batch_triplet_config)
def batch_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    margin: float = 0.05,
    mining: str = "all",
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Triplet margin loss over a batch's triplets (Schroff et al. 2015), pytorch-metric-
    learning's ``TripletMarginLoss`` with its default ``LpDistance`` (Euclidean, normalised
    embeddings).

    Every anchor should be nearer to its positives than to its negatives by ``margin``.
    ``mining="all"`` takes every valid triplet :math:`(a, p, n)` (:math:`p \ne a` of
    :math:`a`'s group, :math:`n` of another: PML's ``triplets_per_anchor="all"``);
    ``mining="hard"`` the batch-hard triplet of each anchor (Hermans et al. 2017: its farthest
    positive and nearest negative; PML's ``BatchHardMiner``).

    .. math::
        \text{all:}\ \ \ell_a = \sum_{p \in P(a)} \sum_{n \in N(a)}
            [d_{ap} - d_{an} + m]_+ \qquad
        \text{hard:}\ \ \ell_a = \big[\max_{p \in P(a)} d_{ap} - \min_{n \in N(a)} d_{an}
            + m\big]_+

    with :math:`d` the Euclidean distance of the normalised embeddings (derivative 0 at 0,
    never NaN). An anchor without a positive or a negative has no triplet (loss 0). ``"all"``
    is computed without the ``(N, N, N)`` tensor (sorted negative distances, ``O(N^2 log N)``).
    The hard pair is chosen by a masked argmax or argmin (the first of ties), never boolean
    indexing, and its distances are computed from the embeddings' differences (exact in
    float32 for near-coincident pairs, where the Gram form loses precision).

    ``"mean"`` is PML's (``AvgNonZeroReducer``): the sum over the number of triplets with a
    non-zero loss (0 when none). The drop-in choice, and the satisfied triplets (most of them,
    late in training) do not dilute the gradient; the price is a value that jumps when a
    triplet's loss reaches 0. ``"sum"`` sums every triplet.

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        margin: :math:`m`, a real number.
        mining: ``"all"`` | ``"hard"``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is in no triplet.

    Returns:
        Shape ``(N,)`` for ``"none"`` (per anchor; 0 where masked), else a 0-dim tensor, of
        ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``, a margin
            that is not a real number.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, an unknown ``mining``, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> funcloss.batch_triplet_loss(x, y, margin=0.5, reduction="none")
        tensor([0.0000, 0.2380, 1.5198, 0.0168])
        >>> funcloss.batch_triplet_loss(x, y, margin=0.5, mining="hard", reduction="none")
        tensor([0.0000, 0.2380, 1.0198, 0.0168])

    References:
        F. Schroff, D. Kalenichenko, J. Philbin, "FaceNet: A Unified Embedding for Face
        Recognition and Clustering", CVPR 2015; A. Hermans, L. Beyer, B. Leibe, "In Defense of
        the Triplet Loss for Person Re-Identification", 2017; pytorch-metric-learning's
        ``TripletMarginLoss`` and ``BatchHardMiner``.
    """
    fn = "batch_triplet_loss"
    _check_batch(fn, embeddings, labels)
    _check_batch_triplet_config(margin=margin, mining=mining, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, included = _prepare(fn, embeddings, labels, where)
    distance = _distances(unit)
    if mining == "all":
        terms, counts = _all_triplets(distance, positive, negative, margin)
        loss, nonzero = terms.sum(-1), counts.sum(-1)
    else:
        # the Gram distances choose each anchor's pair (the first of ties, as the
        # paper's argmax); the chosen distances are taken again from the differences
        anchors = positive.any(-1) & negative.any(-1)
        chosen = distance.detach()
        farthest = torch.where(positive, chosen, float("-inf")).argmax(-1)
        closest = torch.where(negative, chosen, float("inf")).argmin(-1)
        hardest, nearest = _distances_to(unit, farthest), _distances_to(unit, closest)
        loss = torch.where(anchors, torch.relu(hardest - nearest + margin), 0.0)
        nonzero = loss > 0
    return reduce(loss, reduction, where=included, mean_weight=nonzero).to(dtype)


# -- multi_similarity_loss -------------------------------------------------------------------


def _check_multi_similarity_config(
    *, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5, reduction: str = "mean"
) -> None:
    fn = "multi_similarity_loss"
    check_positive(fn, alpha=alpha, beta=beta)
    check_number(fn, base=base)
    check_reduction(fn, reduction)


def _log_one_plus_sum_exp(values: Tensor, mask: Tensor) -> Tensor:
    """Row-wise ``log(1 + sum_mask exp(values))``: 0 (zero gradient) for an empty row."""
    log_sum, any_entry = _masked_logsumexp(values, mask)
    return torch.where(any_entry, softplus(log_sum), 0.0)


@follows_autocast("promoted")
@checks_config(_check_multi_similarity_config)
def multi_similarity_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Multi-similarity loss (Wang et al. 2019), pytorch-metric-learning's
    ``MultiSimilarityLoss`` (cosine similarity; without the paper's pair mining, as PML).

    Weighs each pair by its own similarity and by its relation to the anchor's other pairs:
    soft maxima of the positive pairs' dissimilarity and of the negative pairs' similarity,
    both relative to ``base``.

    .. math::
        \ell_i = \frac{1}{\alpha} \log\Big(1 + \sum_{p \in P(i)} e^{-\alpha (s_{ip} - \lambda)}
                 \Big) + \frac{1}{\beta} \log\Big(1 + \sum_{n \in N(i)}
                 e^{\beta (s_{in} - \lambda)}\Big)

    with :math:`s` the cosine similarity and :math:`\lambda` = ``base``; an empty sum's term is
    0. ``"mean"`` averages over the (included) samples, as PML (its ``MeanReducer``: every
    sample counts, an anchor without a positive by its negative term). A batch with no positive
    pair or no negative pair gives 0 with zero gradient (PML: the other term's mean).

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        alpha: :math:`\alpha`, the positive pairs' scale, positive.
        beta: :math:`\beta`, the negative pairs' scale, positive.
        base: :math:`\lambda`, the similarity margin, a real number.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is neither an anchor nor in anyone's pairs.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 where masked), else a 0-dim tensor, of
        ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, ``alpha`` or ``beta`` not
            positive, bad ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> funcloss.multi_similarity_loss(x, torch.tensor([0, 0, 1, 1]), reduction="none")
        tensor([0.2187, 0.3189, 0.7568, 0.6566])

    References:
        X. Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
        Learning", CVPR 2019 (eq. 9); pytorch-metric-learning's ``MultiSimilarityLoss``.
    """
    fn = "multi_similarity_loss"
    _check_batch(fn, embeddings, labels)
    _check_multi_similarity_config(alpha=alpha, beta=beta, base=base, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, included = _prepare(fn, embeddings, labels, where)
    similarity = unit @ unit.T
    both = positive.any() & negative.any()
    pulled = _log_one_plus_sum_exp(-alpha * (similarity - base), positive) / alpha
    pushed = _log_one_plus_sum_exp(beta * (similarity - base), negative) / beta
    loss = torch.where(both, pulled + pushed, 0.0)
    return reduce(loss, reduction, where=included).to(dtype)


# -- circle_loss -----------------------------------------------------------------------------


def _check_circle_config(*, m: float = 0.4, gamma: float = 80.0, reduction: str = "mean") -> None:
    fn = "circle_loss"
    check_number(fn, m=m)
    check_positive(fn, gamma=gamma)
    check_reduction(fn, reduction)


@follows_autocast("promoted")
@checks_config(_check_circle_config)
def circle_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    m: float = 0.4,
    gamma: float = 80.0,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Circle loss, pair-wise labels (Sun et al. 2020), pytorch-metric-learning's
    ``CircleLoss`` (cosine similarity).

    Each similarity is re-weighted by how far it is from its optimum, so that a pair far from
    it gets a larger gradient; the decision boundary is a circle in the
    :math:`(s_n, s_p)` plane.

    .. math::
        \ell_i = \operatorname{softplus}\Big(\log \sum_{n \in N(i)}
                 e^{\gamma \alpha_n (s_{in} - \Delta_n)} + \log \sum_{p \in P(i)}
                 e^{-\gamma \alpha_p (s_{ip} - \Delta_p)}\Big),
        \quad \alpha_p = [1 + m - s_{ip}]_+,\ \alpha_n = [s_{in} + m]_+

    with :math:`\Delta_p = 1 - m`, :math:`\Delta_n = m`, :math:`s` the cosine similarity. The
    weights :math:`\alpha` are constants for the gradient (detached), as in the paper (§3.2)
    and PML: the gradient is not the derivative of the value. An anchor without a positive or
    a negative has loss 0. ``"mean"`` averages over the anchors with a positive and a negative
    (PML's ``AvgNonZeroReducer`` gives the same: those anchors' losses are softplus values,
    positive unless they underflow to 0).

    Args:
        embeddings: shape ``(N, D)``, floating dtype (not necessarily normalised).
        labels: group labels, shape ``(N,)``, integer dtype.
        m: the relaxation margin, a real number (the paper's 0.25 for faces, 0.4 for
            fine-grained retrieval).
        gamma: :math:`\gamma`, the scale, positive.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples in the batch, broadcastable to ``(N,)``:
            a masked sample is neither an anchor nor in anyone's pairs.

    Returns:
        Shape ``(N,)`` for ``"none"`` (0 for a masked anchor or one without pairs), else a
        0-dim tensor, of ``embeddings``' dtype.

    Raises:
        TypeError: non-floating embeddings, non-integer labels, a non-bool ``where``.
        ValueError: embeddings not ``(N, D)``, labels not ``(N,)``, ``gamma <= 0``, bad
            ``reduction``.

    Examples:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
        >>> funcloss.circle_loss(x, torch.tensor([0, 0, 1, 1]), gamma=8.0, reduction="none")
        tensor([0.3983, 1.1877, 8.3748, 7.4138])

    References:
        Y. Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization",
        CVPR 2020 (eq. 6); pytorch-metric-learning's ``CircleLoss``.
    """
    fn = "circle_loss"
    _check_batch(fn, embeddings, labels)
    _check_circle_config(m=m, gamma=gamma, reduction=reduction)
    dtype = embeddings.dtype
    unit, positive, negative, _ = _prepare(fn, embeddings, labels, where)
    similarity = unit @ unit.T
    weight = similarity.detach()
    positive_logits = -gamma * torch.relu(1 + m - weight) * (similarity - (1 - m))
    negative_logits = gamma * torch.relu(weight + m) * (similarity - m)
    anchors = positive.any(-1) & negative.any(-1)
    log_positive, _ = _masked_logsumexp(positive_logits, positive)
    log_negative, _ = _masked_logsumexp(negative_logits, negative)
    loss = torch.where(anchors, softplus(log_positive + log_negative), 0.0)
    return reduce(loss, reduction, where=anchors).to(dtype)
