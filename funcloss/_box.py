"""Bounding-box regression losses: generalized_box_iou_loss, distance_box_iou_loss,
complete_box_iou_loss.

torchvision's functions (``torchvision/ops/giou_loss.py``, ``diou_loss.py``, ``ciou_loss.py``):
the same names, signatures, default ``reduction="none"`` and values, written so that every
torch.func transform works and every derivative is finite:

- the intersection is ``relu(w) * relu(h)`` of the overlap, where torchvision writes it with a
  boolean-mask assignment (``intsctk[mask] = ...``): that has no batching rule, so torchvision's
  box losses fail under ``vmap``;
- CIoU's trade-off weight :math:`\\alpha` is ``detach``-ed; torchvision computes it under
  ``torch.no_grad()``, which stops reverse mode only: its forward-mode derivatives (``jacfwd``,
  ``jvp``) differentiate :math:`\\alpha` and disagree with its reverse-mode ones;
- CIoU's aspect angle :math:`\\arctan(w/h)` is computed as ``atan2``, finite at :math:`h = 0`
  (torchvision's ``w / 0`` gives a NaN gradient for a zero-height box, and ``0 / 0`` a NaN
  value for a degenerate one) and equal to it for every other box, inverted ones included;
- with ``eps = 0`` a ratio whose denominator is 0 (two empty boxes: its numerator is 0 too) is 0
  rather than ``0 / 0``.

Boxes are ``(x1, y1, x2, y2)`` with ``x1 <= x2``, ``y1 <= y2`` (not checked: as in torchvision,
other boxes give the formula's values). Masks (``where=``, of the loss's shape ``boxes.shape[:-1]``)
replace both boxes of a masked pair by ``[0, 0, 0, 0]``, where every loss and derivative here is
finite, before any arithmetic.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    Reduction,
    check_floating,
    check_non_negative,
    check_reduction,
    check_where,
    checks_config,
    fail,
    shape_str,
)
from ._modes import follows_autocast
from ._reduction import masked, reduce

# 4 / pi^2: CIoU's aspect-ratio term maps the squared angle difference, at most (pi/2)^2, to [0, 1].
_ASPECT_SCALE = 4 / math.pi**2


# -- config ----------------------------------------------------------------------------------


def _check_box_config(fn: str, *, reduction: str = "none", eps: float = 1e-7) -> None:
    check_reduction(fn, reduction)
    check_non_negative(fn, eps=eps)


_GIOU_CONFIG = partial(_check_box_config, "generalized_box_iou_loss")
_DIOU_CONFIG = partial(_check_box_config, "distance_box_iou_loss")
_CIOU_CONFIG = partial(_check_box_config, "complete_box_iou_loss")


def _check_boxes(fn: str, boxes1: Tensor, boxes2: Tensor) -> None:
    check_floating(fn, boxes1=boxes1, boxes2=boxes2)
    for name, boxes in (("boxes1", boxes1), ("boxes2", boxes2)):
        if boxes.dim() == 0 or boxes.shape[-1] != 4:
            fail(
                ValueError,
                fn,
                name,
                "have shape (..., 4), boxes as (x1, y1, x2, y2)",
                shape_str(boxes.shape),
            )
    if boxes1.shape != boxes2.shape:
        fail(
            ValueError,
            fn,
            "boxes2",
            f"have the same shape as `boxes1` {shape_str(boxes1.shape)}",
            shape_str(boxes2.shape),
        )


def _prepare(
    fn: str, boxes1: Tensor, boxes2: Tensor, eps: float, where: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """The checked, masked boxes of each pair divided by the pair's largest ``|coordinate|``,
    and ``eps`` in those units (``eps / scale**2``, of the loss's shape).

    The losses are invariant under that scaling (with ``eps`` scaled alike), so the scale is a
    constant for differentiation (``detach``: its exact derivative contribution is 0); it keeps
    areas and squared distances in range, where float32 boxes of ``1e20`` or half-precision
    boxes in pixels would overflow to ``inf / inf``. The scale is the pair's largest *finite*
    ``|coordinate|``; an infinite one becomes ``±far`` units (:func:`_far`), so the losses
    give their limits there (torchvision: ``inf / inf``, NaN)."""
    _check_boxes(fn, boxes1, boxes2)
    if where is not None:
        check_where(fn, where, boxes1.shape[:-1])
        pairs = where.unsqueeze(-1)
        boxes1, boxes2 = masked(pairs, boxes1), masked(pairs, boxes2)
    scale = torch.maximum(_finite_magnitude(boxes1), _finite_magnitude(boxes2)).detach()
    scale = torch.where(scale == 0, 1.0, scale)
    unit = scale.unsqueeze(-1)
    far = _far(boxes1.dtype)
    # hardtanh, not clamp: one pass each way (clamp's backward costs twice)
    return (
        F.hardtanh(boxes1 / unit, -far, far),
        F.hardtanh(boxes2 / unit, -far, far),
        eps / scale**2,
    )


def _finite_magnitude(boxes: Tensor) -> Tensor:
    """The largest finite ``|coordinate|`` of each box (NaN where one is NaN)."""
    return torch.nan_to_num(boxes.abs(), nan=math.nan, posinf=0.0).amax(-1)


def _far(dtype: torch.dtype) -> float:
    """Where an infinite coordinate goes, in the pair's units (its finite coordinates are in
    [-1, 1]): ``1 / eps`` units out, each ratio of the losses is its limit up to the dtype's
    rounding (the terms that an infinite coordinate leaves are ``O(1 / far)``); the limit's
    derivative in that coordinate is 0, and ``hardtanh``'s is. Areas and squared distances of two
    such coordinates, ``4 far**2``, stay in range (float16: ``sqrt(max) / 4``)."""
    info = torch.finfo(dtype)
    return min(1 / info.eps, math.sqrt(info.max) / 4)


# -- the geometry ----------------------------------------------------------------------------


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 0 where both are 0 (``eps = 0``, or an ``eps`` that
    underflows in the pair's units: the callers' denominators are 0 only where their numerators
    are), with finite derivatives there."""
    return numerator / torch.where(denominator == 0, 1.0, denominator)


def _iou_and_enclosure(
    boxes1: Tensor, boxes2: Tensor, eps: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """IoU, the union, and the enclosing box's width, height and area."""
    x1, y1, x2, y2 = boxes1.unbind(-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(-1)
    overlap_w = torch.relu(torch.minimum(x2, x2g) - torch.maximum(x1, x1g))
    overlap_h = torch.relu(torch.minimum(y2, y2g) - torch.maximum(y1, y1g))
    intersection = overlap_w * overlap_h
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - intersection
    iou = _ratio(intersection, union + eps)
    enclosing_w = torch.maximum(x2, x2g) - torch.minimum(x1, x1g)
    enclosing_h = torch.maximum(y2, y2g) - torch.minimum(y1, y1g)
    return iou, union, enclosing_w, enclosing_h, enclosing_w * enclosing_h


def _diou(boxes1: Tensor, boxes2: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """The DIoU loss and the IoU."""
    iou, _, enclosing_w, enclosing_h, _ = _iou_and_enclosure(boxes1, boxes2, eps)
    diagonal_squared = enclosing_w**2 + enclosing_h**2
    # twice the centre offsets: (x1 + x2) / 2 - (x1g + x2g) / 2, times 2
    x1, y1, x2, y2 = boxes1.unbind(-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(-1)
    dx = (x1 + x2) - (x1g + x2g)
    dy = (y1 + y2) - (y1g + y2g)
    centres_squared = (dx**2 + dy**2) * 0.25
    return 1 - iou + _ratio(centres_squared, diagonal_squared + eps), iou


def _aspect_angle(boxes: Tensor) -> Tensor:
    """``atan(w / h)`` of each box, as ``atan2``: the same value wherever ``w / h`` is defined
    (``h < 0`` too), ``±pi/2`` at ``h = 0`` with the one-sided (``h > 0``) derivatives, and 0
    with finite derivatives at ``w = h = 0``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = x2 - x1, y2 - y1
    flip = h < 0
    w, h = torch.where(flip, -w, w), torch.where(flip, -h, h)
    # atan2's derivatives divide by w^2 + h^2: at (0, 0) evaluate at (0, 1) instead
    return torch.atan2(w, torch.where((w == 0) & (h == 0), 1.0, h))


# -- the losses ------------------------------------------------------------------------------


@follows_autocast("promoted")
@checks_config(_GIOU_CONFIG)
def generalized_box_iou_loss(
    boxes1: Tensor,
    boxes2: Tensor,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Generalized IoU loss (GIoU): 1 − IoU plus a penalty for the empty part of the enclosing
    box, so that boxes that do not overlap still get a gradient.

    torchvision's ``generalized_box_iou_loss`` (same signature, default ``reduction="none"``,
    values), under every torch.func transform (torchvision's fails ``vmap``). Symmetric in
    the two boxes.

    .. math::
        \mathrm{IoU} = \frac{|B_1 \cap B_2|}{|B_1 \cup B_2| + \epsilon}, \qquad
        \ell = 1 - \mathrm{IoU} + \frac{|C| - |B_1 \cup B_2|}{|C| + \epsilon}

    with :math:`C` the smallest box enclosing both.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
            (not checked), floating dtype.
        boxes2: boxes of ``boxes1``'s shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (``"mean"`` of no boxes is
            nan, as torch's means; torchvision's is 0).
        eps: added to each denominator, non-negative; with 0, two empty boxes give IoU 0.
        where: optional bool mask of the box pairs that count, broadcastable to
            ``boxes1.shape[:-1]``; a masked pair's coordinates are not read.

    Returns:
        ``boxes1.shape[:-1]`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating boxes, a non-bool ``where``.
        ValueError: a last dimension other than 4, shapes that differ, negative ``eps``, bad
            ``reduction``.

    Examples:
        >>> funcloss.generalized_box_iou_loss(
        ...     torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
        tensor([1.0794])

    References:
        Rezatofighi et al., "Generalized Intersection over Union", CVPR 2019; torchvision.
    """
    fn = "generalized_box_iou_loss"
    _GIOU_CONFIG(reduction=reduction, eps=eps)
    boxes1, boxes2, eps_area = _prepare(fn, boxes1, boxes2, eps, where)
    iou, union, _, _, enclosing_area = _iou_and_enclosure(boxes1, boxes2, eps_area)
    loss = 1 - iou + _ratio(enclosing_area - union, enclosing_area + eps_area)
    return reduce(loss, reduction, where=where)


@follows_autocast("promoted")
@checks_config(_DIOU_CONFIG)
def distance_box_iou_loss(
    boxes1: Tensor,
    boxes2: Tensor,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Distance IoU loss (DIoU): 1 − IoU plus the squared distance of the box centres over the
    squared diagonal of the enclosing box.

    torchvision's ``distance_box_iou_loss`` (same signature, default ``reduction="none"``,
    values), under every torch.func transform (torchvision's fails ``vmap``). Symmetric in the
    two boxes.

    .. math::
        \ell = 1 - \mathrm{IoU} + \frac{\rho^2(c_1, c_2)}{d^2 + \epsilon}

    with :math:`\mathrm{IoU}` as in :func:`generalized_box_iou_loss`, :math:`c_1, c_2` the
    centres and :math:`d` the diagonal of the smallest box enclosing both.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
            (not checked), floating dtype.
        boxes2: boxes of ``boxes1``'s shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (``"mean"`` of no boxes is
            nan, as torch's means; torchvision's is 0).
        eps: added to each denominator, non-negative; with 0, two empty boxes give IoU 0.
        where: optional bool mask of the box pairs that count, broadcastable to
            ``boxes1.shape[:-1]``; a masked pair's coordinates are not read.

    Returns:
        ``boxes1.shape[:-1]`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating boxes, a non-bool ``where``.
        ValueError: a last dimension other than 4, shapes that differ, negative ``eps``, bad
            ``reduction``.

    Examples:
        >>> funcloss.distance_box_iou_loss(
        ...     torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
        tensor([0.9683])

    References:
        Zheng et al., "Distance-IoU Loss", AAAI 2020; torchvision.
    """
    fn = "distance_box_iou_loss"
    _DIOU_CONFIG(reduction=reduction, eps=eps)
    boxes1, boxes2, eps_area = _prepare(fn, boxes1, boxes2, eps, where)
    loss, _ = _diou(boxes1, boxes2, eps_area)
    return reduce(loss, reduction, where=where)


@follows_autocast("promoted")
@checks_config(_CIOU_CONFIG)
def complete_box_iou_loss(
    boxes1: Tensor,
    boxes2: Tensor,
    reduction: Reduction = "none",
    eps: float = 1e-7,
    *,
    where: Tensor | None = None,
) -> Tensor:
    r"""Complete IoU loss (CIoU): the DIoU loss plus an aspect-ratio term.

    torchvision's ``complete_box_iou_loss`` (same signature, default ``reduction="none"``,
    values at the default ``eps``), under every torch.func transform, with finite derivatives
    for zero-height and degenerate boxes. Symmetric in the two boxes.

    .. math::
        v = \frac{4}{\pi^2} \left(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\right)^2,
        \qquad \alpha = \frac{v}{1 - \mathrm{IoU} + v + \epsilon}, \qquad
        \ell = \ell_\mathrm{DIoU} + \alpha\, v

    The trade-off weight :math:`\alpha` is a constant for differentiation (``detach``-ed, as
    the paper prescribes), in every mode: torchvision computes it under ``no_grad``, which
    only reverse mode respects, so its ``jacfwd`` differs from its ``jacrev``. The angle
    :math:`\arctan(w/h)` is ``atan2``-based: :math:`\pm\pi/2` at :math:`h = 0` with finite
    derivatives, 0 for an empty box :math:`w = h = 0` (torchvision: NaN gradient, NaN value).
    ``eps`` is used throughout; torchvision's DIoU part always uses ``1e-7``, whatever
    ``eps`` is passed.

    Args:
        boxes1: boxes ``(..., 4)`` as ``(x1, y1, x2, y2)`` with ``x1 <= x2`` and ``y1 <= y2``
            (not checked), floating dtype.
        boxes2: boxes of ``boxes1``'s shape.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (``"mean"`` of no boxes is
            nan, as torch's means; torchvision's is 0).
        eps: added to each denominator, non-negative; with 0, two empty boxes give IoU 0.
        where: optional bool mask of the box pairs that count, broadcastable to
            ``boxes1.shape[:-1]``; a masked pair's coordinates are not read.

    Returns:
        ``boxes1.shape[:-1]`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating boxes, a non-bool ``where``.
        ValueError: a last dimension other than 4, shapes that differ, negative ``eps``, bad
            ``reduction``.

    Examples:
        >>> funcloss.complete_box_iou_loss(
        ...     torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 4.0]]))
        tensor([1.0192])

    References:
        Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
        Regression", AAAI 2020; torchvision.
    """
    fn = "complete_box_iou_loss"
    _CIOU_CONFIG(reduction=reduction, eps=eps)
    boxes1, boxes2, eps_area = _prepare(fn, boxes1, boxes2, eps, where)
    diou, iou = _diou(boxes1, boxes2, eps_area)
    v = _ASPECT_SCALE * (_aspect_angle(boxes2) - _aspect_angle(boxes1)) ** 2
    alpha = _ratio(v, 1 - iou + v + eps).detach()  # this eps is dimensionless: not rescaled
    return reduce(diou + alpha * v, reduction, where=where)
