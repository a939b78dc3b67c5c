"""Lovász losses for segmentation: lovasz_hinge, lovasz_softmax (Berman et al. 2018).

Both are the Lovász extension of the Jaccard loss (a submodular set function of the set of
mispredicted pixels) applied to a vector of pixel errors ``m``: with the errors sorted in
decreasing order, ``m_(1) >= m_(2) >= ...``, and ``F`` the foreground pixels,

    loss = sum_i m_(i) g_i,   g_i = J({1..i}) - J({1..i-1}),   J(M) = |M| / |F u M|,

which Berman's Algorithm 1 computes from cumulative sums of the foreground sorted alike. Plain
torch compositions: one ``torch.sort`` along the pixels (its derivative is a gather, with every
transform rule), gathers and cumsums of the target, no Python branch that reads data:

- pixels equal to ``ignore_index`` get the error -1, below every real error (errors are >= 0),
  so they sort last, and add nothing to the counts, so their weight ``g_i`` is exactly 0
  wherever they sort;
- Berman's "present" classes are a weight (1 for a class present in the target, else 0) in the
  mean over the classes, not a Python ``if``; a mean over no class is 0.

Ties: the extension is continuous where errors tie, but its gradient there is a subgradient
that depends on the order of the tied pixels. The sort is stable: tied errors keep their pixel
order, which picks one subgradient (that of Algorithm 1 run on the pixels in index order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    check_class_indices,
    check_floating,
    check_index,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    fail,
    promoted_dtype,
    shape_str,
    value_checks_enabled,
)
from ._modes import follows_autocast
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

# Below every error (hinge errors after the relu and softmax errors are >= 0): an ignored
# pixel's error sorts last. Its weight is 0 wherever it sorts (it is in no count).
_IGNORED_ERROR = -1.0

# -- config ----------------------------------------------------------------------------------


def _check_ignore_index(fn: str, ignore_index: object) -> None:
    if ignore_index is not None:
        check_index(fn, ignore_index=ignore_index)  # type: ignore[arg-type]


def _check_lovasz_hinge_config(
    *, per_image: bool = True, ignore_index: int | None = None, reduction: str = "mean"
) -> None:
    check_reduction("lovasz_hinge_loss", reduction)
    _check_ignore_index("lovasz_hinge_loss", ignore_index)


def _check_classes(fn: str, classes: object) -> None:
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            fail(
                ValueError,
                fn,
                "classes",
                "be 'present', 'all' or a sequence of class indices",
                repr(classes),
            )
        return
    if not isinstance(classes, list | tuple) or not classes:
        fail(
            TypeError if not isinstance(classes, list | tuple) else ValueError,
            fn,
            "classes",
            "be 'present', 'all' or a non-empty list of class indices",
            repr(classes),
        )
    for c in classes:
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            fail(ValueError, fn, "classes", "hold non-negative ints", repr(classes))
    if len(set(classes)) != len(classes):
        fail(ValueError, fn, "classes", "hold distinct class indices", repr(classes))


def _check_lovasz_softmax_config(
    *,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> None:
    fn = "lovasz_softmax_loss"
    check_reduction(fn, reduction)
    _check_classes(fn, classes)
    _check_ignore_index(fn, ignore_index)


# -- the Lovász extension --------------------------------------------------------------------


def _lovasz_weights(foreground: Tensor, valid: Tensor | None, dtype: torch.dtype) -> Tensor:
    """Algorithm 1 of Berman et al.: ``g_i = J_i - J_(i-1)`` along the last dimension, with
    ``J_i = |M| / |F u M|`` the Jaccard loss of the set ``M`` of the first ``i`` sorted (counted)
    pixels: ``|F u M| = |F| + |M| - |F n M|`` from cumulative sums (exact integers in floating
    point up to 2^24 pixels in float32). Ignored pixels (``valid`` False) enter no count."""
    hits = foreground.to(dtype).cumsum(-1)  # |F n M|
    if valid is None:
        size = torch.arange(1, foreground.shape[-1] + 1, dtype=dtype, device=foreground.device)
        jaccard = size / (hits[..., -1:] + size - hits)  # the union is >= |M| >= 1
    else:
        size = valid.to(dtype).cumsum(-1)
        union = hits[..., -1:] + size - hits
        # the union is 0 only before the first counted pixel of a class with no foreground
        empty = union == 0
        jaccard = torch.where(empty, 0.0, size / torch.where(empty, 1.0, union))
    previous = torch.cat([torch.zeros_like(jaccard[..., :1]), jaccard[..., :-1]], dim=-1)
    return jaccard - previous


def _lovasz(errors: Tensor, foreground: Tensor, valid: Tensor | None) -> Tensor:
    """The Lovász extension of the Jaccard loss at ``errors`` (``>= 0``), over the last
    dimension; ``foreground`` and ``valid`` (None: every pixel counts) are bool, of
    ``errors``' shape."""
    if valid is not None:
        errors = torch.where(valid, errors, _IGNORED_ERROR)
    ordered, order = torch.sort(errors, dim=-1, descending=True, stable=True)
    weights = _lovasz_weights(
        foreground.gather(-1, order),
        None if valid is None else valid.gather(-1, order),
        errors.dtype,
    )
    # the dot product of each row as a matmul: one pass, each way
    return (ordered.unsqueeze(-2) @ weights.unsqueeze(-1)).reshape(ordered.shape[:-1])


def _loss_shape(input: Tensor, per_image: bool) -> tuple[int, ...]:
    return input.shape[:1] if per_image else ()


def _masked_input(input: Tensor, where: Tensor | None, loss_shape: tuple[int, ...]) -> Tensor:
    """``input`` with every entry of a masked image (or of the masked batch) set to 0."""
    if where is None:
        return input
    full = where.expand(loss_shape)
    return masked(full.reshape(full.shape + (1,) * (input.dim() - full.dim())), input, 0.0)


def _rows(x: Tensor, per_image: bool) -> Tensor:
    """``(N, *spatial)`` as ``(N, P)`` rows (per image) or one row ``(1, N P)``."""
    return x.reshape(x.shape[0], -1) if per_image else x.reshape(1, -1)


# -- lovasz_hinge_loss -----------------------------------------------------------------------


def _check_binary_target(fn: str, target: Tensor, ignore_index: int | None) -> None:
    """Eager-only: every label is 0, 1 or ``ignore_index`` (one host read on valid input):
    integer labels by their range (IndexError, as class indices), floating ones exactly."""
    if target.is_complex():
        fail(
            TypeError, fn, "target", "hold binary labels (integer, bool or floating)", target.dtype
        )
    if target.dtype == torch.bool:
        return
    if not target.is_floating_point():
        check_class_indices(fn, as_index(target), 2, ignore_index)
        return
    if not value_checks_enabled(target) or target.numel() == 0:
        return
    labels = target
    good = (labels == 0) | (labels == 1)
    if ignore_index is not None:
        good |= labels == ignore_index
    if not bool(good.all()):
        first = labels[~good].flatten()[0].item()
        extra = f" or equal ignore_index={ignore_index}" if ignore_index is not None else ""
        fail(ValueError, fn, "target", f"hold 0 or 1{extra}", first)


@follows_autocast("float32")
@checks_config(_check_lovasz_hinge_config)
def lovasz_hinge_loss(
    input: Tensor,
    target: Tensor,
    *,
    per_image: bool = True,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Binary Lovász hinge loss: a convex surrogate of the foreground's Jaccard loss.

    For binary segmentation scored by IoU: it optimises the Jaccard index of the foreground
    directly rather than per-pixel accuracy. Per image (or over the batch with
    ``per_image=False``), with hinge errors :math:`m_i = \max(0, 1 - x_i s_i)`, signs
    :math:`s_i = 2 y_i - 1`, sorted decreasingly, :math:`m_{(1)} \ge m_{(2)} \ge \dots`:

    .. math::
        \ell = \sum_i m_{(i)}\, \bigl(\Delta_J(\{(1), \dots, (i)\})
               - \Delta_J(\{(1), \dots, (i-1)\})\bigr), \qquad
        \Delta_J(M) = \frac{|M|}{|F \cup M|}

    the Lovász extension of the Jaccard loss :math:`\Delta_J` (``F``: the foreground pixels).
    On one pixel it is the hinge :math:`\max(0, 1 - x s)`. Pixels equal to ``ignore_index``
    are left out (their error sorts last with weight 0: no boolean indexing, so ``vmap`` and
    ``torch.compile(fullgraph=True)`` work); an image with every pixel ignored has loss 0.
    Where errors tie, the value is continuous but the gradient is a subgradient: the stable
    sort keeps tied pixels in index order, which picks one. smp's ``LovaszLoss("binary")`` is
    this loss.

    Args:
        input: logits, shape ``(N, *spatial)``, floating.
        target: binary labels of ``input``'s shape: 0 (background) or 1 (foreground), or
            ``ignore_index``; integer, bool or floating (values checked in eager mode).
        per_image: True: one loss per image (Berman's default for the hinge); False: one loss
            over all the batch's pixels.
        ignore_index: a label whose pixels are left out.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (the mean over the images).
        where: optional bool mask of the losses that count, broadcastable to ``(N,)`` (``()``
            with ``per_image=False``); a masked image's logits are not read.

    Returns:
        ``(N,)`` for ``"none"`` (``()`` with ``per_image=False``; 0 where masked), else a 0-dim
        tensor, of the promoted dtype of ``input`` and a floating ``target``.

    Raises:
        TypeError: non-floating input, a complex target, a non-bool ``where``.
        ValueError: a target of another shape, a floating label other than 0, 1 or
            ``ignore_index`` (eager mode), a bad ``reduction``.
        IndexError: an integer label other than 0, 1 or ``ignore_index`` (eager mode).

    Examples:
        >>> x = torch.tensor([[2.0, -1.0, 0.5]])
        >>> funcloss.lovasz_hinge_loss(x, torch.tensor([[1, 0, 0]]))
        tensor(0.7500)

    References:
        Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable surrogate for
        the optimization of the intersection-over-union measure in neural networks", CVPR
        2018; smp ``LovaszLoss``.
    """
    fn = "lovasz_hinge_loss"
    _check_lovasz_hinge_config(per_image=per_image, ignore_index=ignore_index, reduction=reduction)
    check_tensor(fn, input=input, target=target)
    check_floating(fn, input=input)
    if input.dim() < 1:
        fail(ValueError, fn, "input", "have shape (N, *spatial)", shape_str(input.shape))
    if target.shape != input.shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have the input's shape {shape_str(input.shape)}",
            shape_str(target.shape),
        )
    _check_binary_target(fn, target, ignore_index)
    loss_shape = _loss_shape(input, per_image)
    check_where(fn, where, loss_shape)
    dtype = promoted_dtype(input, target)
    x = _rows(_masked_input(input, where, loss_shape), per_image).to(compute_dtype(dtype))
    labels = _rows(target, per_image)
    foreground = labels == 1
    valid = None
    if ignore_index is not None:
        valid = labels != ignore_index
        foreground = foreground & valid
    # the signs 2 y - 1 as a product (a where of x and -x costs two passes more, each way)
    signs = foreground.to(x.dtype) * 2 - 1
    errors = torch.relu(1 - x * signs)
    loss = _lovasz(errors, foreground, valid).reshape(loss_shape)
    return reduce(loss, reduction, where=where).to(dtype)


# -- lovasz_softmax_loss ---------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_check_lovasz_softmax_config)
def lovasz_softmax_loss(
    input: Tensor,
    target: Tensor,
    *,
    classes: str | Sequence[int] = "present",
    per_image: bool = False,
    ignore_index: int | None = None,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Multi-class Lovász-Softmax loss: a surrogate of the mean per-class Jaccard loss.

    For semantic segmentation scored by mean IoU. The softmax of the logits gives class
    probabilities :math:`p_{i,c}`; per class ``c`` the errors :math:`m_i = |y_{i,c} -
    p_{i,c}|` (``y`` one-hot) enter the Lovász extension of that class's Jaccard loss
    :math:`\Delta_{J_c}`, sorted decreasingly, and the loss is the mean over the classes
    :math:`\mathcal{C}`:

    .. math::
        \ell = \frac{1}{|\mathcal{C}|} \sum_{c \in \mathcal{C}} \sum_i m^{c}_{(i)}\,
               \bigl(\Delta_{J_c}(\{(1), \dots, (i)\}) - \Delta_{J_c}(\{(1), \dots,
               (i-1)\})\bigr), \qquad \Delta_{J_c}(M) = \frac{|M|}{|F_c \cup M|}

    ``classes="present"`` (Berman's default) averages over the classes present in the
    target (of the image with ``per_image=True``, else of the batch), as a 0/1 weight in the
    mean rather than a Python branch, so ``vmap`` and ``torch.compile(fullgraph=True)`` work;
    ``"all"`` over all ``C``; a list over those classes. A mean over no class (every pixel
    ignored) is 0. Pixels equal to ``ignore_index`` are left out (their errors sort last
    with weight 0). Where errors tie, the gradient is the subgradient of the stable sort
    (tied pixels in index order). smp's ``LovaszLoss("multiclass")`` is this loss.

    Args:
        input: logits, shape ``(N, C, *spatial)``, floating (the softmax is over dimension 1).
        target: class indices, shape ``(N, *spatial)``, an integer dtype (values in ``[0, C)``
            or ``ignore_index``, checked in eager mode).
        classes: ``"present"`` | ``"all"`` | a list of distinct class indices in ``[0, C)``.
        per_image: True: one loss per image; False (Berman's default here): one loss over all
            the batch's pixels.
        ignore_index: a class index whose pixels are left out.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"`` (the mean over the images).
        where: optional bool mask of the losses that count, broadcastable to ``(N,)`` (``()``
            with ``per_image=False``); a masked image's logits are not read.

    Returns:
        ``(N,)`` for ``"none"`` (``()`` with ``per_image=False``; 0 where masked), else a 0-dim
        tensor, of ``input``'s dtype.

    Raises:
        TypeError: non-floating input, a non-integer target, a non-bool ``where``, ``classes``
            of another kind.
        ValueError: shapes that do not fit, a class in ``classes`` outside ``[0, C)``, a bad
            ``reduction``.
        IndexError: a class index outside ``[0, C)`` (eager mode).

    Examples:
        >>> x = torch.tensor([[[2.0, -1.0], [-1.0, 2.0]]])  # (N=1, C=2, 2 pixels)
        >>> funcloss.lovasz_softmax_loss(x, torch.tensor([[0, 1]]))
        tensor(0.0474)

    References:
        Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable surrogate for
        the optimization of the intersection-over-union measure in neural networks", CVPR
        2018; smp ``LovaszLoss``.
    """
    fn = "lovasz_softmax_loss"
    _check_lovasz_softmax_config(
        classes=classes, per_image=per_image, ignore_index=ignore_index, reduction=reduction
    )
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
    num_classes = input.shape[1]
    pixels = input.shape[:1] + input.shape[2:]
    if target.dtype == torch.bool or target.is_floating_point() or target.is_complex():
        fail(TypeError, fn, "target", "hold class indices (an integer dtype)", target.dtype)
    if target.shape != pixels:
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {shape_str(pixels)} for input of shape {shape_str(input.shape)}",
            shape_str(target.shape),
        )
    if not isinstance(classes, str) and max(classes) >= num_classes:
        fail(
            ValueError,
            fn,
            "classes",
            f"hold class indices in [0, {num_classes}) for input of shape {shape_str(input.shape)}",
            list(classes),
        )
    target = as_index(target)
    check_class_indices(fn, target, num_classes, ignore_index)
    loss_shape = _loss_shape(input, per_image)
    check_where(fn, where, loss_shape)
    dtype = compute_dtype(input.dtype)
    x = _masked_input(input, where, loss_shape).to(dtype)
    # a +inf logit: the limit (that class takes all; inf - inf would give nan)
    x = torch.where(x == torch.inf, torch.finfo(dtype).max, x)
    p = torch.softmax(x, dim=1).flatten(2)  # (N, C, P)
    labels = target.reshape(target.shape[0], 1, -1)  # (N, 1, P)
    if not per_image:
        p = p.transpose(0, 1).reshape(1, num_classes, -1)
        labels = labels.transpose(0, 1).reshape(1, 1, -1)
    ids = torch.arange(num_classes, device=input.device)
    if not isinstance(classes, str):
        ids = torch.tensor(list(classes), device=input.device)
        p = p.index_select(1, ids)
    foreground = labels == ids.reshape(-1, 1)  # (B, classes, P)
    valid = None
    if ignore_index is not None:
        valid = labels != ignore_index
        foreground = foreground & valid
        valid = valid.expand(foreground.shape)
    per_class = _lovasz(torch.where(foreground, 1 - p, p), foreground, valid)
    if classes == "present":
        present = foreground.any(-1).to(dtype)
        count = present.sum(-1)
        loss = (per_class * present).sum(-1) / torch.where(count == 0, 1.0, count)
    else:
        loss = per_class.mean(-1)
    return reduce(loss.reshape(loss_shape), reduction, where=where).to(input.dtype)
