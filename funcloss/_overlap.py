"""Overlap losses for segmentation: dice, tversky, jaccard, focal_tversky, generalized_dice, mcc.

Every loss here reads the same three soft counts per image ``n`` and class ``c`` (or per class,
pooled over the batch, with ``batch=True``), sums over the pixels that count:

    TP = sum p t,   P = sum p,   T = sum t,   FP = P - TP,   FN = T - TP

with ``p`` the class probabilities (``activation`` of the logits) and ``t`` the one-hot (or
given probability) target. Plain torch compositions (a softmax, a comparison one-hot, sums):
autograd through them is exact, with every transform rule, and no Python branch reads data.

Conventions shared by the family, stated once:

- Smoothing ``s`` enters the Dice form :math:`1 - (2 TP + s) / (2 TP + 2\\alpha FP + 2\\beta FN
  + s)`, so Tversky(1/2, 1/2) *is* Dice with the same ``s`` and Jaccard is Tversky(1, 1).
  MONAI's DiceLoss is this Dice with ``smooth_nr = smooth_dr = s``; MONAI's TverskyLoss and
  smp's Dice, Jaccard and Tversky losses put ``smooth`` beside TP (not 2 TP), so theirs is
  this with ``smooth_nr = smooth_dr = s / 2`` (MONAI) or ``smooth = s / 2`` (smp).
- An empty class (no target and no prediction in that ``(n, c)``: ``P = T = 0``) has loss 0.
  With ``s > 0`` the formula gives it; with ``s = 0`` its ``0 / 0`` is defined as 0 with zero
  gradient (double ``where``). A class with no target but some prediction is not empty: its
  Dice loss is :math:`1 - s / (P + s)`, which pushes the prediction down (MONAI's convention;
  smp drops such classes from the loss, kornia from its mean: pass ``where`` for that).
- ``where`` is loss-shaped, as everywhere in funcloss: ``(N, C)`` (``(C,)`` with
  ``batch=True``; ``C - 1`` classes without the background), masking ``(n, c)`` terms out of
  the reduction. Pixels are excluded from every sum by ``ignore_index`` (class-index targets)
  or by ``mask`` (bool, ``(N, *spatial)``), which work the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_class_indices,
    check_class_weight,
    check_floating,
    check_index,
    check_non_negative,
    check_number,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    eager_mode,
    fail,
    promoted_dtype,
    shape_str,
    value_reads_allowed,
)
from ._modes import follows_autocast
from ._reduction import reduce
from ._softmax_ce import compute_dtype

ACTIVATIONS = ("softmax", "sigmoid", None)

# -- config ----------------------------------------------------------------------------------


def _check_common(
    fn: str, reduction: str, smooth: float, activation: object, ignore_index: object
) -> None:
    check_reduction(fn, reduction)
    check_non_negative(fn, smooth=smooth)
    if not (activation is None or (isinstance(activation, str) and activation in ACTIVATIONS)):
        fail(ValueError, fn, "activation", "be 'softmax', 'sigmoid' or None", repr(activation))
    if ignore_index is not None:
        check_index(fn, ignore_index=ignore_index)  # type: ignore[arg-type]


def _check_dice_config(
    *,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    _check_common("dice_loss", reduction, smooth, activation, ignore_index)


def _check_tversky(fn: str, alpha: float, beta: float) -> None:
    check_non_negative(fn, alpha=alpha, beta=beta)


def _check_tversky_config(
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    _check_common("tversky_loss", reduction, smooth, activation, ignore_index)
    _check_tversky("tversky_loss", alpha, beta)


def _check_jaccard_config(
    *,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    _check_common("jaccard_loss", reduction, smooth, activation, ignore_index)


def _check_focal_tversky_config(
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 0.75,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    fn = "focal_tversky_loss"
    _check_common(fn, reduction, smooth, activation, ignore_index)
    _check_tversky(fn, alpha, beta)
    check_number(fn, gamma=gamma)
    if not gamma > 0:
        fail(ValueError, fn, "gamma", "be positive", gamma)


# -- the soft counts -------------------------------------------------------------------------


def _check_inputs(
    fn: str,
    input: Tensor,
    target: Tensor,
    ignore_index: int | None,
    mask: Tensor | None,
) -> None:
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input)
    if input.dim() < 2 or input.shape[1] == 0:
        fail(
            ValueError,
            fn,
            "input",
            "have shape (N, C, *spatial) with C > 0",
            shape_str(input.shape),
        )
    pixels = input.shape[:1] + input.shape[2:]
    if target.dtype == torch.bool or target.is_complex():
        fail(
            TypeError,
            fn,
            "target",
            "hold class indices (an integer dtype) or class probabilities (floating)",
            target.dtype,
        )
    if target.is_floating_point():
        if target.shape != input.shape:
            fail(
                ValueError,
                fn,
                "target",
                f"have shape {shape_str(pixels)} (class indices) or the input's shape "
                f"{shape_str(input.shape)} (probabilities)",
                shape_str(target.shape),
            )
        if ignore_index is not None:
            fail(
                ValueError,
                fn,
                "ignore_index",
                "be None for probability targets",
                ignore_index,
                "Exclude pixels with `mask=` instead.",
            )
    elif target.shape != pixels:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(pixels)} for input of shape {shape_str(input.shape)} "
            "(class indices; or the input's shape for probabilities)",
            shape_str(target.shape),
        )
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            fail(TypeError, fn, "mask", "be a bool tensor of the pixels that count", got)
        if mask.shape != pixels:
            fail(ValueError, fn, "mask", f"have shape {shape_str(pixels)}", shape_str(mask.shape))


def _loss_shape(input: Tensor, include_background: bool, batch: bool) -> tuple[int, ...]:
    classes = input.shape[1] - (0 if include_background else 1)
    return (classes,) if batch else (input.shape[0], classes)


def _read_mask(
    where: Tensor,
    input: Tensor,
    activation: str | None,
    include_background: bool,
    batch: bool,
    across_classes: bool,
) -> Tensor:
    """``where`` (loss-shaped) mapped onto the classes of ``input``: ``(N or 1, C, 1, ...)``,
    True for the channels some included term reads. A softmax couples the classes of a pixel:
    there a sample's channels are all read unless every one of its terms is masked."""
    shape = _loss_shape(input, include_background, batch)
    full = where.expand(shape)
    if batch:
        full = full.unsqueeze(0)
    if not include_background:
        full = torch.cat([torch.zeros_like(full[:, :1]), full], dim=1)
    if across_classes:
        full = full.any(dim=1, keepdim=True).expand(full.shape)
    return full.reshape(full.shape + (1,) * (input.dim() - 2))


def _at_infinity(p: Tensor) -> Tensor:
    """An infinite "probability" at ``±far``, beside which every other entry of its sums rounds
    away: each ratio of counts is then its limit as that entry grows, and the derivatives are
    the limit's (hardtanh's slope is 0 at the infinite entry; inf there gives inf / inf, and
    0 * inf in the backward). The sums of up to ``numel`` such entries, and ``M TP``, stay
    below the dtype's max. NaN passes through. hardtanh: clamp's backward costs twice."""
    far = torch.finfo(p.dtype).max / (4 * max(p.numel(), 1))
    return F.hardtanh(p, -far, far)


def _counts(
    fn: str,
    input: Tensor,
    target: Tensor,
    activation: str | None,
    include_background: bool,
    batch: bool,
    ignore_index: int | None,
    mask: Tensor | None,
    where: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(TP, P, T) per (n, c) (per c with ``batch``), in the compute dtype.

    Given probabilities (``activation=None``) may be infinite (:func:`_at_infinity`). In a
    plain eager CPU call with value reads allowed, the sums ``P`` tell (one host read, of the
    small ``(N, C)`` tensor's sum; a NaN fails it too): only then are the counts recomputed
    at infinity. Elsewhere (transforms, compiling) they always are: a pass each way."""
    args = (fn, input, target, activation, include_background, batch, ignore_index, mask, where)
    if activation is not None:
        return _soft_counts(*args, False)
    read = type(input) is Tensor and input.is_cpu and value_reads_allowed() and eager_mode(input)
    counts = _soft_counts(*args, not read)
    if read and not math.isfinite(counts[1].sum().item()):  # 3x cheaper than isfinite().all()
        return _soft_counts(*args, True)
    return counts


def _soft_counts(
    fn: str,
    input: Tensor,
    target: Tensor,
    activation: str | None,
    include_background: bool,
    batch: bool,
    ignore_index: int | None,
    mask: Tensor | None,
    where: Tensor | None,
    at_infinity: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_counts`, with given probabilities taken to ``±far`` where infinite if
    ``at_infinity``."""
    num_classes = input.shape[1]
    dtype = compute_dtype(promoted_dtype(input, target))
    keep = mask
    if not target.is_floating_point():
        target = as_index(target)
        check_class_indices(fn, target, num_classes, ignore_index)
        if ignore_index is not None:
            kept = target != ignore_index
            keep = kept if keep is None else keep & kept
            target = target.masked_fill(~kept, 0)
    if where is not None:
        softmax = activation == "softmax"
        read = _read_mask(where, input, activation, include_background, batch, softmax)
        input = torch.where(read, input, 0.0)
        if target.is_floating_point():
            read_t = (
                read
                if not softmax
                else _read_mask(where, input, activation, include_background, batch, False)
            )
            target = torch.where(read_t, target, 0.0)
    if keep is not None:
        input = torch.where(keep.unsqueeze(1), input, 0.0)
    x = input.to(dtype)
    if activation == "softmax":
        # a +inf logit: the limit (that class takes all; inf - inf would give nan). A where,
        # not a clamp: its backward is one pass, the clamp's four.
        x = torch.where(x == torch.inf, torch.finfo(dtype).max, x)
        p = torch.softmax(x, dim=1)
    elif activation == "sigmoid":
        p = torch.sigmoid(x)
    else:
        # given probabilities are not bounded by 1: float32 sums of huge ones would overflow
        p = x.double() if x.dtype == torch.float32 else x
        dtype = p.dtype
        if at_infinity:
            p = _at_infinity(p)
    if keep is not None:
        p = torch.where(keep.unsqueeze(1), p, 0.0)
    if target.is_floating_point():
        t = target.to(dtype)
        if keep is not None:
            t = torch.where(keep.unsqueeze(1), t, 0.0)
        if not include_background:
            p, t = p[:, 1:], t[:, 1:]
        dims = (0, *range(2, input.dim())) if batch else tuple(range(2, input.dim()))
        return (p * t).sum(dims), p.sum(dims), t.sum(dims)
    # Class indices: TP and T per class by a scatter of each pixel's target-class probability
    # (and its count), no one-hot tensor: a pass over (N, C, *spatial) less, each way.
    flat = p.flatten(2)  # (N, C, S)
    index = target.reshape(target.shape[0], -1)  # (N, S)
    picked = flat.gather(1, index.unsqueeze(1)).squeeze(1)  # p of the target class, (N, S)
    counts = torch.ones_like(picked) if keep is None else keep.reshape(index.shape).to(dtype)
    zeros = flat.new_zeros(flat.shape[:2])
    tp = zeros.scatter_add(1, index, picked)
    t = zeros.scatter_add(1, index, counts)
    total = flat.sum(2)
    if not include_background:
        tp, total, t = tp[:, 1:], total[:, 1:], t[:, 1:]
    if batch:
        tp, total, t = tp.sum(0), total.sum(0), t.sum(0)
    return tp, total, t


def _ratio_loss(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``1 - numerator / denominator``, and 0 with zero gradient where the denominator is 0 (an
    empty class without smoothing)."""
    empty = denominator == 0
    return torch.where(empty, 0.0, 1 - numerator / torch.where(empty, 1.0, denominator))


def _class_weight(weight: Tensor | None, include_background: bool) -> Tensor | None:
    if weight is None or include_background:
        return weight
    return weight[1:]


def _reduce(
    loss: Tensor, reduction: str, weight: Tensor | None, where: Tensor | None, dtype: torch.dtype
) -> Tensor:
    if weight is None:
        return reduce(loss, reduction, where=where).to(dtype)  # type: ignore[arg-type]
    weight = weight.to(loss.dtype)
    return reduce(
        loss,
        reduction,  # type: ignore[arg-type]
        weight,
        where=where,
        mean_weight=weight.expand(loss.shape),
    ).to(dtype)


def _tversky(
    fn: str,
    input: Tensor,
    target: Tensor,
    weight: Tensor | None,
    alpha: float,
    beta: float,
    gamma: float | None,
    smooth: float,
    activation: str | None,
    include_background: bool,
    batch: bool,
    ignore_index: int | None,
    reduction: str,
    where: Tensor | None,
    mask: Tensor | None,
) -> Tensor:
    _check_inputs(fn, input, target, ignore_index, mask)
    check_class_weight(fn, weight, input)
    if where is not None:
        check_where(fn, where, _loss_shape(input, include_background, batch))
    dtype = promoted_dtype(input, target, weight)
    tp, p, t = _counts(
        fn, input, target, activation, include_background, batch, ignore_index, mask, where
    )
    if alpha == 0.5 and beta == 0.5:
        denominator = p + t + smooth  # 2 TP + FP + FN, without the rounding of FP and FN
    else:
        denominator = 2 * tp + (2 * alpha) * (p - tp) + (2 * beta) * (t - tp) + smooth
    loss = _ratio_loss(2 * tp + smooth, denominator)
    if gamma is not None:
        # (1 - TI)^gamma, 0 with zero gradient at 0 (gamma < 1 has an infinite slope there);
        # 1 - TI can round to a tiny negative: clamped into the branch that gives 0
        positive = loss > 0
        loss = torch.where(positive, torch.where(positive, loss, 1.0) ** gamma, 0.0)
    return _reduce(loss, reduction, _class_weight(weight, include_background), where, dtype)


# -- the losses ------------------------------------------------------------------------------


_SHARED_ARGS = """
        input: scores, shape ``(N, C, *spatial)``, floating: logits for ``"softmax"`` (over
            the classes, dimension 1) and ``"sigmoid"`` (per class), probabilities for None.
        target: class indices of shape ``(N, *spatial)`` (an integer dtype; values in
            ``[0, C)`` or ``ignore_index``, checked in eager mode), or class probabilities
            of ``input``'s shape (floating).
        weight: optional class weight, shape ``(C,)`` (one per input class; the background's is
            dropped with ``include_background=False``), ``input``'s dtype. Multiplies each
            class's loss; ``"mean"`` divides by the included weights' sum.
        smooth: the smoothing ``s >= 0`` (see the formula).
        activation: ``"softmax"`` | ``"sigmoid"`` | None (``input`` is probabilities).
        include_background: False drops class 0 from the loss (after the softmax).
        batch: False: one loss per image and class; True: the counts are pooled over the
            batch, one loss per class.
        ignore_index: a class index whose pixels are excluded from every sum (class-index
            targets only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the terms that count, broadcastable to the unreduced loss
            ``(N, C)`` (``(C,)`` with ``batch=True``; ``C - 1`` classes without the
            background): masked terms add nothing and get zero gradient; ``"mean"`` divides by
            the included terms (their weights' sum). A softmax input's channels are not read
            where all of that sample's terms are masked; otherwise a masked class's channel is
            not read (nor a probability target's).
        mask: optional bool mask of the pixels that count, shape ``(N, *spatial)``: pixels
            where it is False are excluded from every sum, as ``ignore_index`` does (and
            neither their scores nor their targets are read).
"""

_SHARED_RETURNS = """
        ``(N, C)`` for ``"none"`` (``(C,)`` with ``batch=True``; ``C - 1`` classes without the
        background; multiplied by the class weight, 0 where masked), else a 0-dim tensor, of
        the promoted dtype of ``input``, a floating ``target`` and ``weight`` (bf16 and fp16
        are computed in fp32).
"""

_SHARED_RAISES = """
        TypeError: non-floating input, a bool target, a non-bool ``where`` or ``mask``, a weight
            of another dtype.
        ValueError: a target of the wrong shape, ``where`` not broadcastable to the loss,
            a bad ``activation``, ``reduction``, or negative ``smooth``.
        IndexError: a class index outside ``[0, C)`` (eager mode).
"""


def _doc(text: str) -> str:
    return (
        text.replace("{ARGS}", _SHARED_ARGS.strip("\n"))
        .replace("{RETURNS}", _SHARED_RETURNS.strip("\n"))
        .replace("{RAISES}", _SHARED_RAISES.strip("\n"))
    )


@follows_autocast("float32")
@checks_config(_check_dice_config)
def dice_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    _check_dice_config(
        smooth=smooth, activation=activation, ignore_index=ignore_index, reduction=reduction
    )
    return _tversky(
        "dice_loss",
        input,
        target,
        weight,
        0.5,
        0.5,
        None,
        smooth,
        activation,
        include_background,
        batch,
        ignore_index,
        reduction,
        where,
        mask,
    )


dice_loss.__doc__ = _doc(
    r"""Soft Dice loss: one minus the soft Dice overlap of prediction and target, per class.

    For segmentation with imbalanced classes: each class counts by its overlap, not its pixel
    count. Per image ``n`` and class ``c``, sums over the pixels that count:

    .. math::
        \ell_{n,c} = 1 - \frac{2 \sum p\,t + s}{\sum p + \sum t + s}

    An empty class (:math:`\sum p = \sum t = 0`) has loss 0 (with ``s = 0``: defined so,
    with zero gradient). MONAI's ``DiceLoss(smooth_nr=s, smooth_dr=s)`` is this loss (per
    image; MONAI's class-weighted mean divides by ``N C``, not by the weights); smp's
    ``DiceLoss(smooth=s/2)`` is it with ``batch=True`` and ``where`` the classes present in
    the target (smp drops the others, and averages over all ``C``); kornia's macro Dice is
    it with ``s = 0`` (its ``eps`` in the denominator) averaged over the present classes.

    Args:
{ARGS}

    Returns:
{RETURNS}

    Raises:
{RAISES}

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [-1.0, 2.0]]])  # (N=1, C=2, 2 pixels)
        >>> funcloss.dice_loss(logits, torch.tensor([[0, 1]]), reduction="none")
        tensor([[0.0316, 0.0316]])

    References:
        Milletari, Navab and Ahmadi, "V-Net", 3DV 2016; MONAI ``DiceLoss``.
    """
)


@follows_autocast("float32")
@checks_config(_check_tversky_config)
def tversky_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    _check_tversky_config(
        alpha=alpha,
        beta=beta,
        smooth=smooth,
        activation=activation,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return _tversky(
        "tversky_loss",
        input,
        target,
        weight,
        alpha,
        beta,
        None,
        smooth,
        activation,
        include_background,
        batch,
        ignore_index,
        reduction,
        where,
        mask,
    )


tversky_loss.__doc__ = _doc(
    r"""Tversky loss: a Dice loss that weighs false positives and false negatives apart.

    Raise ``beta`` above ``alpha`` to penalise missed pixels (false negatives) more, for small
    structures where recall matters. Per image ``n`` and class ``c``, with soft counts
    :math:`TP = \sum p t`, :math:`FP = \sum p (1 - t)`, :math:`FN = \sum (1 - p) t`:

    .. math::
        \ell_{n,c} = 1 - \frac{2\,TP + s}{2\,TP + 2\alpha\,FP + 2\beta\,FN + s}

    ``alpha`` weighs the **false positives**, ``beta`` the **false negatives** (as MONAI's
    and kornia's). The smoothing sits in Dice's scale, so ``tversky_loss(alpha=0.5,
    beta=0.5)`` equals :func:`dice_loss` with the same ``smooth`` and ``alpha = beta = 1``
    is :func:`jaccard_loss`; MONAI's ``TverskyLoss`` (and smp's) put the smoothing beside
    ``TP``: theirs with ``smooth_nr = smooth_dr = s/2`` (smp: ``smooth = s/2``) is this.
    An empty class has loss 0 (with ``s = 0``: defined so, with zero gradient).

    Args:
{ARGS}
        alpha: the weight of the false positives, ``>= 0``.
        beta: the weight of the false negatives, ``>= 0``.

    Returns:
{RETURNS}

    Raises:
{RAISES}

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [-1.0, 2.0]]])
        >>> funcloss.tversky_loss(logits, torch.tensor([[0, 1]]), alpha=0.3, beta=0.7)
        tensor(0.0316)

    References:
        Salehi, Erdogmus and Gholipour, "Tversky loss function for image segmentation using
        3D fully convolutional deep networks", MLMI 2017; MONAI ``TverskyLoss``.
    """
)


@follows_autocast("float32")
@checks_config(_check_jaccard_config)
def jaccard_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    _check_jaccard_config(
        smooth=smooth, activation=activation, ignore_index=ignore_index, reduction=reduction
    )
    return _tversky(
        "jaccard_loss",
        input,
        target,
        weight,
        1.0,
        1.0,
        None,
        smooth,
        activation,
        include_background,
        batch,
        ignore_index,
        reduction,
        where,
        mask,
    )


jaccard_loss.__doc__ = _doc(
    r"""Soft Jaccard (IoU) loss: one minus the soft intersection over union, per class.

    Per image ``n`` and class ``c``, with :math:`TP = \sum p t`, :math:`U = \sum p + \sum t
    - TP` (the soft union):

    .. math::
        \ell_{n,c} = 1 - \frac{2\,TP + s}{2\,U + s} = 1 - \frac{TP + s/2}{U + s/2}

    :func:`tversky_loss` with ``alpha = beta = 1`` (the same smoothing). smp's
    ``JaccardLoss(smooth=s/2)`` is this with ``batch=True`` and ``where`` the classes present
    in the target. An empty class has loss 0 (with ``s = 0``: defined so, with zero
    gradient).

    Args:
{ARGS}

    Returns:
{RETURNS}

    Raises:
{RAISES}

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [-1.0, 2.0]]])
        >>> funcloss.jaccard_loss(logits, torch.tensor([[0, 1]]))
        tensor(0.0613)

    References:
        Rahman and Wang, "Optimizing intersection-over-union in deep neural networks for image
        segmentation", ISVC 2016; smp ``JaccardLoss``.
    """
)


@follows_autocast("float32")
@checks_config(_check_focal_tversky_config)
def focal_tversky_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 0.75,
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    _check_focal_tversky_config(
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        smooth=smooth,
        activation=activation,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return _tversky(
        "focal_tversky_loss",
        input,
        target,
        weight,
        alpha,
        beta,
        gamma,
        smooth,
        activation,
        include_background,
        batch,
        ignore_index,
        reduction,
        where,
        mask,
    )


focal_tversky_loss.__doc__ = _doc(
    r"""Focal Tversky loss: each class's Tversky loss raised to ``gamma``, then the mean.

    With ``gamma < 1`` the classes the network already segments well (small Tversky loss)
    still get a large gradient. Per image ``n`` and class ``c``, with the
    :func:`tversky_loss` term :math:`\ell^{T}_{n,c}`:

    .. math::
        \ell_{n,c} = \left(\ell^{T}_{n,c}\right)^{\gamma}

    The exponent is applied per class, before the mean, as in the paper (smp's
    ``TverskyLoss(gamma=)`` raises the mean instead, smp issue #734). At
    :math:`\ell^{T} = 0` (a perfect or empty class) the loss is 0 with zero gradient (for
    :math:`\gamma < 1` the one-sided slope there is infinite).

    Args:
{ARGS}
        alpha: the weight of the false positives, ``>= 0``.
        beta: the weight of the false negatives, ``>= 0``.
        gamma: the exponent, positive (the paper's :math:`1/\gamma`, 3/4 in its experiments).

    Returns:
{RETURNS}

    Raises:
{RAISES}

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0], [-1.0, 2.0]]])
        >>> funcloss.focal_tversky_loss(logits, torch.tensor([[0, 1]]), reduction="none")
        tensor([[0.0750, 0.0750]])

    References:
        Abraham and Khan, "A novel focal Tversky loss function with improved attention U-Net
        for lesion segmentation", ISBI 2019.
    """
)


# -- generalized_dice_loss -------------------------------------------------------------------

WEIGHT_TYPES = ("square", "simple", "uniform")


def _check_generalized_dice_config(
    *,
    weight_type: str = "square",
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    fn = "generalized_dice_loss"
    _check_common(fn, reduction, smooth, activation, ignore_index)
    if weight_type not in WEIGHT_TYPES:
        fail(ValueError, fn, "weight_type", "be 'square', 'simple' or 'uniform'", repr(weight_type))


def _class_weights(t: Tensor, weight_type: str) -> Tensor:
    """Sudre et al.'s class weights from the target volumes ``t`` (..., C): ``1 / T^2``
    (square), ``1 / T`` (simple) or 1; a class absent from the target gets the largest weight
    of the present ones (MONAI's rule: finite, and 0 where no class is present)."""
    if weight_type == "uniform":
        return torch.ones_like(t)
    present = t > 0
    safe = torch.where(present, t, 1.0)
    raw = torch.where(present, 1 / (safe * safe if weight_type == "square" else safe), 0.0)
    return torch.where(present, raw, raw.amax(-1, keepdim=True))


@follows_autocast("float32")
@checks_config(_check_generalized_dice_config)
def generalized_dice_loss(
    input: Tensor,
    target: Tensor,
    *,
    weight_type: str = "square",
    smooth: float = 1.0,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    r"""Generalized Dice loss: one Dice over all classes, each weighted by its inverse volume.

    For heavily imbalanced segmentation (a small lesion beside a large background): the
    weights make each class count alike. Per image ``n`` (or pooled with ``batch=True``),
    with the soft counts of :func:`dice_loss` per class :math:`c`:

    .. math::
        \ell_n = 1 - \frac{2 \sum_c w_c\, TP_c + s}{\sum_c w_c (P_c + T_c) + s}, \qquad
        w_c = \frac{1}{T_c^2} \text{ (square)},\ \frac{1}{T_c} \text{ (simple)},\ 1
        \text{ (uniform)}

    A class absent from the target (:math:`T_c = 0`, an infinite weight) gets the largest
    weight of the classes present in that image (MONAI's rule), so the loss stays finite; with
    no class present every weight is 0 and the loss is 0 (``s > 0``: :math:`1 - s/s`; ``s = 0``:
    defined so, with zero gradient). The weights are functions of the target only. MONAI's
    ``GeneralizedDiceLoss(smooth_nr=s, smooth_dr=s)`` is this loss.

    Args:
        input: scores, shape ``(N, C, *spatial)``, floating: logits for ``"softmax"`` and
            ``"sigmoid"``, probabilities for None.
        target: class indices ``(N, *spatial)`` (integer; in ``[0, C)`` or ``ignore_index``,
            checked in eager mode) or class probabilities of ``input``'s shape.
        weight_type: ``"square"`` | ``"simple"`` | ``"uniform"``.
        smooth: the smoothing ``s >= 0``.
        activation: ``"softmax"`` | ``"sigmoid"`` | None.
        include_background: False drops class 0 (after the softmax).
        batch: False: one loss per image; True: counts pooled over the batch, one loss.
        ignore_index: a class index whose pixels are excluded from every sum.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the images that count, broadcastable to ``(N,)`` (``()``
            with ``batch=True``); a masked image's scores and targets are not read.
        mask: optional bool mask of the pixels that count, ``(N, *spatial)``.

    Returns:
        ``(N,)`` for ``"none"`` (``()`` with ``batch=True``; 0 where masked), else a 0-dim
        tensor, of the promoted dtype of ``input`` and a floating ``target``.

    Raises:
        TypeError: non-floating input, a bool target, a non-bool ``where`` or ``mask``.
        ValueError: a target of the wrong shape, a bad ``weight_type``, ``activation``,
            ``reduction`` or ``smooth``.
        IndexError: a class index outside ``[0, C)`` (eager mode).

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0, -1.0], [-1.0, 2.0, 2.0]]])
        >>> funcloss.generalized_dice_loss(logits, torch.tensor([[0, 1, 1]]), reduction="none")
        tensor([0.0441])

    References:
        Sudre, Li, Vercauteren, Ourselin and Cardoso, "Generalised Dice overlap as a deep
        learning loss function for highly unbalanced segmentations", DLMIA 2017; MONAI
        ``GeneralizedDiceLoss``.
    """
    fn = "generalized_dice_loss"
    _check_generalized_dice_config(
        weight_type=weight_type,
        smooth=smooth,
        activation=activation,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    _check_inputs(fn, input, target, ignore_index, mask)
    counts_where = None
    if where is not None:
        check_where(fn, where, () if batch else input.shape[:1])
        counts_where = where if batch else where.unsqueeze(-1)
    dtype = promoted_dtype(input, target)
    tp, p, t = _counts(
        fn, input, target, activation, include_background, batch, ignore_index, mask, counts_where
    )
    w = _class_weights(t, weight_type)
    loss = _ratio_loss(2 * (w * tp).sum(-1) + smooth, (w * (p + t)).sum(-1) + smooth)
    return reduce(loss, reduction, where=where).to(dtype)


# -- mcc_loss --------------------------------------------------------------------------------


def _check_mcc_config(
    *,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    _check_common("mcc_loss", reduction, 0.0, activation, ignore_index)


def _pixel_count(
    input: Tensor,
    target: Tensor,
    ignore_index: int | None,
    mask: Tensor | None,
    batch: bool,
    dtype: torch.dtype,
) -> Tensor | float:
    """The number of pixels that count, ``M``: per image ``(N, 1)``, or pooled (``()``); a
    Python number when every pixel counts."""
    keep = mask
    if ignore_index is not None and not target.is_floating_point():
        kept = as_index(target) != ignore_index
        keep = kept if keep is None else keep & kept
    if keep is None:
        return float(math.prod(input.shape[2:]) * (input.shape[0] if batch else 1))
    count = keep.reshape(keep.shape[0], -1).sum(1).to(dtype)
    return count.sum() if batch else count.unsqueeze(1)


@follows_autocast("float32")
@checks_config(_check_mcc_config)
def mcc_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    activation: str | None = "softmax",
    include_background: bool = True,
    batch: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    fn = "mcc_loss"
    _check_mcc_config(activation=activation, ignore_index=ignore_index, reduction=reduction)
    _check_inputs(fn, input, target, ignore_index, mask)
    check_class_weight(fn, weight, input)
    if where is not None:
        check_where(fn, where, _loss_shape(input, include_background, batch))
    dtype = promoted_dtype(input, target, weight)
    tp, p, t = _counts(
        fn, input, target, activation, include_background, batch, ignore_index, mask, where
    )
    m = _pixel_count(input, target, ignore_index, mask, batch, tp.dtype)
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (M TP - P T) /
    # sqrt(P (M - P) T (M - T)): the numerator without TN's cancellation, the root in two
    # factors (no overflow of the product of four counts)
    target_spread = t * (m - t)
    prediction_spread = p * (m - p)
    flat_target = target_spread <= 0
    degenerate = flat_target | (prediction_spread <= 0)
    root = torch.sqrt(torch.where(degenerate, 1.0, prediction_spread)) * torch.sqrt(
        torch.where(degenerate, 1.0, target_spread)
    )
    mcc = torch.where(degenerate, 0.0, (m * tp - p * t) / root)
    # a constant target: 0, but a NaN prediction shows (never hidden)
    loss = torch.where(flat_target, torch.where(p.isnan(), p, 0.0), 1 - mcc)
    return _reduce(loss, reduction, _class_weight(weight, include_background), where, dtype)


mcc_loss.__doc__ = (
    _doc(
        r"""Matthews correlation coefficient loss: one minus the soft MCC, per class.

    For imbalanced segmentation where true negatives should count too (Dice ignores them):
    MCC is the correlation between prediction and target, symmetric in the two classes of
    each binary (class vs rest) problem. Per image ``n`` and class ``c``, with the soft counts
    of :func:`dice_loss`, :math:`TN = \sum (1 - p)(1 - t)` and :math:`M` the pixels that
    count:

    .. math::
        \ell_{n,c} = 1 - \frac{TP \cdot TN - FP \cdot FN}
        {\sqrt{(TP + FP)(TP + FN)(TN + FP)(TN + FN)}}
        = 1 - \frac{M\,TP - P\,T}{\sqrt{P (M - P)\, T (M - T)}}

    in :math:`[0, 2]`. Where the denominator is 0, MCC is 0/0, and: a class whose target is
    constant over the counted pixels (absent, :math:`T = 0`, as in an all-background image;
    or filling them, :math:`T = M`) has loss 0 with zero gradient: there :math:`TP\,TN - FP\,FN
    = 0` for *every* prediction, so MCC gives no signal (the family's empty-class
    0; unlike :func:`dice_loss`, a predicted but absent class is not pushed down: pool with
    ``batch=True`` to make it present); a constant prediction (:math:`P = 0` or :math:`M`,
    reached only by saturation; or :math:`P` outside :math:`[0, M]`, probabilities beyond
    ``[0, 1]`` with ``activation=None``) against a non-constant target has loss 1, MCC's
    limit, with zero gradient (double ``where``). smp's ``MCCLoss(eps=0)`` is this loss for
    one binary channel of probabilities (``activation=None``) with ``batch=True``; its ``eps``
    (``1e-5``) is added to each of the four counts.

    Args:
{ARGS}

    Returns:
{RETURNS}

    Raises:
{RAISES}

    Examples:
        >>> logits = torch.tensor([[[2.0, -1.0, 0.5], [-1.0, 2.0, 0.0]]])  # (N=1, C=2, 3 px)
        >>> funcloss.mcc_loss(logits, torch.tensor([[0, 1, 1]]), reduction="none")
        tensor([[0.4157, 0.4157]])

    References:
        Matthews, "Comparison of the predicted and observed secondary structure of T4 phage
        lysozyme", BBA 1975; Abhishek and Hamarneh, "Matthews correlation coefficient loss for
        deep convolutional networks: application to skin lesion segmentation", ISBI 2021; smp
        ``MCCLoss``.
    """
    )
    .replace("        smooth: the smoothing ``s >= 0`` (see the formula).\n", "")
    .replace(", or negative ``smooth``", "")
)
