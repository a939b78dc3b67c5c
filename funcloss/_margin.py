"""Margin losses on class scores: soft_margin, multilabel_soft_margin, multilabel_margin,
multi_margin.

Plain torch compositions (multilabel_soft_margin's logistic terms take _ops.logistic_terms'
custom backward on large inputs): autograd through them is exact and they have every transform
rule (torch's own multi_margin and multilabel_margin kernels have no
forward-mode or double-backward rule and no batching rule). The multi-class hinges use
``relu``, whose gradient at the kink is 0, as in torch's kernels (they count a hinge only when
``z > 0``).

Masks (``where=``) replace the masked inputs before any arithmetic by values at which the loss
and its derivatives are finite and no index is out of range: scores 0, ``±1`` targets 1,
multi-hot targets 0, class indices 0, and label lists ``-1`` (no label: a row that adds 0).
Masked class indices are not range-checked, so a masked row may hold anything. The mask is
checked and applied in one ``if where is not None`` block: nothing of it runs without one.

The plain eager call of multi_margin and multilabel_margin (``_fast``: no mask or weight, 2-d
float32/float64 CPU scores, int64 targets) takes a shorter road for speed and memory (issue
15): a Function whose forward computes the value and the gradient's slope in one go, and whose
backward scales that slope in place. So does the scalar call of multilabel_soft_margin and
the large one of soft_margin (``_pair_fast``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    Reduction,
    as_index,
    broadcast_shape,
    check_broadcastable_to,
    check_class_indices,
    check_class_weight_shape,
    check_floating,
    check_integer,
    check_label_dtype,
    check_number,
    check_reduction,
    check_tensor,
    check_where,
    checks_config,
    eager_mode,
    eager_pair,
    fail,
    promoted_dtype,
    shape_str,
    value_checks_enabled,
    value_reads_allowed,
)
from ._function import SlopeRule, SlopeStep
from ._modes import follows_autocast
from ._ops import (
    chunk_total,
    float32_gradient,
    float_chunks,
    logistic_step_terms,
    logistic_terms,
    sigmoid_slope,
    softplus,
    times,
)
from ._reduction import masked, reduce
from ._softmax_ce import compute_dtype

# -- config ----------------------------------------------------------------------------------


# Run by the losses and by their modules at construction. `reduction` only: a partial (no
# Python frame of its own on the small-call path).
_SOFT_MARGIN_CONFIG = partial(check_reduction, "soft_margin_loss")
_MULTILABEL_SOFT_MARGIN_CONFIG = partial(check_reduction, "multilabel_soft_margin_loss")
_MULTILABEL_MARGIN_CONFIG = partial(check_reduction, "multilabel_margin_loss")


def _check_multi_margin_config(*, reduction: str = "mean", p: int = 1, margin: float = 1.0) -> None:
    fn = "multi_margin_loss"
    check_reduction(fn, reduction)
    if p not in (1, 2):
        fail(ValueError, fn, "p", "be 1 or 2", p)
    check_number(fn, margin=margin)


# -- soft_margin_loss ------------------------------------------------------------------------
#
# The plain eager call with a scalar reduction takes `_SoftMarginStep` (soft_margin and
# multilabel_soft_margin): a handful of in-place ops in the forward, which keeps the slope, and
# one in the backward (:class:`SlopeStep`), where autograd through the composition writes and
# reads several intermediates. multilabel_soft_margin computes bf16 and fp16 in fp32 chunks,
# the gradient rounded once.


def _pair_fast(input: object, target: object, where: object, reduction: str) -> bool:
    """A plain eager CPU call, no mask, ``reduction`` "mean" or "sum", on plain tensors of one
    shape and one floating dtype (at least one element) whose target takes no gradient: the
    soft margin steps may run (the callers check the config first; :func:`eager_pair` the
    tensors and the mode)."""
    return where is None and reduction in _SCALAR and eager_pair(input, target, _PAIR_DTYPES)


_SCALAR = ("mean", "sum")
# soft_margin's step from this many elements: below it the Function's fixed Python cost (a
# forward and a backward in Python) outweighs the passes it saves over the composition's three
# ops (1.35x the composition's time at 64x10).
_SOFT_MARGIN_STEP_FROM = 2**16
# In bf16/fp16 soft_margin keeps its composition: a float32 step holds three float32 copies
# (1.17x torch's peak at 8192x1000), where the composition's are bf16 and as accurate as torch.
_HALF_DTYPES = (torch.bfloat16, torch.float16)
_PAIR_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class _SoftMarginStep(SlopeStep):
    """The eager training step of soft_margin and multilabel_soft_margin (``config``: the
    reduction's divisor): the loss, and the slope ``d loss / d input`` (soft_margin: its
    negative), which the backward scales in place."""


def _divided(value: Tensor, divisor: int) -> Tensor:
    return value if divisor == 1 else value / divisor


def _soft_margin_step(input: Tensor, target: Tensor, divisor: int) -> tuple[Tensor, Tensor, None]:
    """``sum softplus(-y x)`` over the divisor, and ``y sigmoid(-y x)``: minus the slope (the
    scale negates the factor, a sign no rounding sees). float32/float64 only."""
    z = torch.mul(target, input).neg_()  # -y x, as the composition's
    terms = softplus(z)
    value = _divided(terms.sum(), divisor)
    del terms
    return value, z.sigmoid_().mul_(target), None


def _soft_margin_scale(slope: Tensor, grad: Tensor, divisor: int, kept: None) -> Tensor:
    return slope.mul_(_divided(grad, divisor).neg_())


def _soft_margin_gradient(
    input: Tensor, target: Tensor, grad: Tensor, divisor: int, kept: None
) -> Tensor:
    return torch.sigmoid(-(target * input)) * target * -_divided(grad, divisor)


def _multilabel_soft_margin_step(
    input: Tensor, target: Tensor, divisor: int
) -> tuple[Tensor, Tensor | None, None]:
    """``logistic_terms``' sum over the divisor (the number of elements for "mean", of classes
    for "sum"), and the slope ``sigmoid(x) - y``. The caller reads whether the value is finite
    (an infinite logit makes a term ``0 * inf``) and else reruns the composition.

    bf16/fp16 by float32 chunks and without a slope (a half-precision one would round the
    gradient twice, a float32 one take more memory than torch): the backward computes the
    gradient from the inputs, rounded once."""
    if input.dtype in _HALF_DTYPES:
        chunks = float_chunks(input.reshape(-1), target.reshape(-1))
        parts = [logistic_step_terms(x, y).sum() for x, y, _ in chunks]
        return _divided(chunk_total(parts), divisor).to(input.dtype), None, None
    terms = logistic_step_terms(input, target)
    value = _divided(terms.sum(), divisor)
    del terms  # the slope's buffer may take its place
    return value, torch.sigmoid(input).sub_(target), None


def _multilabel_soft_margin_scale(slope: Tensor, grad: Tensor, divisor: int, kept: None) -> Tensor:
    return slope.mul_(_divided(grad, divisor))


def _multilabel_soft_margin_gradient(
    input: Tensor, target: Tensor, grad: Tensor, divisor: int, kept: None
) -> Tensor:
    if input.dtype not in _HALF_DTYPES:
        return (torch.sigmoid(input) - target) * _divided(grad, divisor)
    factor = _divided(grad.float(), divisor)
    return float32_gradient(input, target, factor, sigmoid_slope)


_SOFT_MARGIN_RULE = SlopeRule(_soft_margin_step, _soft_margin_scale, _soft_margin_gradient)
_MULTILABEL_SOFT_MARGIN_RULE = SlopeRule(
    _multilabel_soft_margin_step, _multilabel_soft_margin_scale, _multilabel_soft_margin_gradient
)


@follows_autocast("float32")
@checks_config(_SOFT_MARGIN_CONFIG)
def soft_margin_loss(
    input: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Logistic loss on ``±1`` labels: a smooth hinge for binary classification.

    The same as binary cross-entropy on logits with labels ``{-1, 1}`` instead of ``{0, 1}``.

    .. math::
        \ell = \log(1 + e^{-y x})

    computed without overflow (torch's own overflows to ``inf`` for :math:`-y x` above ~88 in
    float32). Gradient: :math:`-y\, \sigma(-y x)`.

    Args:
        input: scores, shape ``(*)``, floating dtype.
        target: ``1`` or ``-1``, broadcastable to ``input``'s shape (torch computes in place
            in a tensor of ``input``'s shape: a target that would enlarge it is refused),
            floating or integer dtype.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask, broadcastable to ``input``'s shape: only the ``True``
            elements count (``"mean"`` divides by their number).

    Returns:
        ``input``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor, of the
        promoted dtype of ``input`` and a floating ``target`` (torch's: ``input``'s).

    Raises:
        TypeError: non-floating input, a bool or complex target, a non-bool ``where``.
        ValueError: a target or ``where`` that does not broadcast to ``input``'s shape, bad
            ``reduction``.

    Examples:
        >>> funcloss.soft_margin_loss(
        ...     torch.tensor([2.0, 0.0, -1.0]), torch.tensor([1, 1, 1]), reduction="none")
        tensor([0.1269, 0.6931, 1.3133])
    """
    fn = "soft_margin_loss"
    if _pair_fast(input, target, where, reduction):
        # every check holds: the composition, for small calls and in half precision
        if input.numel() < _SOFT_MARGIN_STEP_FROM or input.dtype in _HALF_DTYPES:
            terms = softplus(-target * input)
            return terms.sum() if reduction == "sum" else terms.mean()
        divisor = input.numel() if reduction == "mean" else 1
        return _SoftMarginStep.run(_SOFT_MARGIN_RULE, input, target, divisor)
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    check_label_dtype(fn, target=target)
    check_broadcastable_to(fn, "target", target, input.shape)
    _SOFT_MARGIN_CONFIG(reduction=reduction)
    if where is not None:
        check_where(fn, where, input.shape)
        input, target = masked(where, input), masked(where, target, 1)
    return reduce(softplus(-target * input), reduction, where=where)


# -- multilabel_soft_margin_loss -------------------------------------------------------------


def _class_mask(where: Tensor, loss_dim: int, class_dim: int) -> Tensor:
    """``where`` (broadcastable to a loss of ``loss_dim`` dimensions) with the class dimension
    inserted at ``class_dim``, so that it broadcasts against the scores."""
    return where.reshape((1,) * (loss_dim - where.dim()) + where.shape).unsqueeze(class_dim)


@follows_autocast("promoted")
@checks_config(_MULTILABEL_SOFT_MARGIN_CONFIG)
def multilabel_soft_margin_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Multi-label logistic loss: one binary cross-entropy per class, averaged over classes.

    For multi-label classification (each sample may belong to several classes) with a
    multi-hot target.

    .. math::
        \ell_n = \frac{1}{C} \sum_c w_c \left[(1 - y_{n,c})\, x_{n,c}
                 - \log \sigma(x_{n,c})\right]
               = -\frac{1}{C} \sum_c w_c \left[y_{n,c} \log \sigma(x_{n,c})
                 + (1 - y_{n,c}) \log \sigma(-x_{n,c})\right]

    computed as the two non-negative terms :math:`y \operatorname{softplus}(-x)` and
    :math:`(1 - y) \operatorname{softplus}(x)` (no cancellation; bf16 and fp16 in fp32), a term
    with a coefficient of 0 counting 0 even at an infinite logit.

    Args:
        input: logits, shape ``(N, C)`` or ``(C,)`` (any ``(*, C)``: classes last), floating.
        target: multi-hot labels (usually 0 or 1), broadcastable with ``input`` (as in
            torch), floating or integer.
        weight: optional per-class weight, broadcastable with ``input`` (typically ``(C,)``).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples that count, broadcastable to the unreduced
            loss (``(N,)``, or ``()`` for an unbatched input; in general the shape ``"none"``
            returns); ``"mean"`` divides by their number. A masked sample's scores and targets
            are not read.

    Where ``target`` or ``weight`` broadcast the loss to more dimensions than ``input``'s,
    torch sums over dimension ``input.dim() - 1`` of the broadcast loss and divides by
    ``input.size(-1)``; funcloss does exactly the same.

    Returns:
        The broadcast shape without dimension ``input.dim() - 1`` for ``"none"`` (0 where
        masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or weight, a bool or complex target, a non-bool
            ``where``.
        ValueError: a 0-dim input, shapes that do not broadcast, bad ``reduction``.

    Examples:
        >>> logits = torch.tensor([[2.0, -1.0, 0.0]])
        >>> funcloss.multilabel_soft_margin_loss(logits, torch.tensor([[1, 0, 1]]))
        tensor(0.3778)
    """
    fn = "multilabel_soft_margin_loss"
    # the step reads one scalar (its finiteness test): only while reads are allowed
    if (
        weight is None
        and _pair_fast(input, target, where, reduction)
        and input.dim() > 0
        and value_reads_allowed()
    ):
        divisor = input.numel() if reduction == "mean" else input.shape[-1]
        loss = _SoftMarginStep.run(_MULTILABEL_SOFT_MARGIN_RULE, input, target, divisor)
        if math.isfinite(loss.item()):
            return loss
    check_tensor(fn, input=input)
    check_floating(fn, input=input, weight=weight)
    check_label_dtype(fn, target=target)
    if input.dim() == 0:
        fail(ValueError, fn, "input", "have shape (N, C) or (C,)", "()")
    shape = broadcast_shape(fn, input=input, target=target, weight=weight)
    _MULTILABEL_SOFT_MARGIN_CONFIG(reduction=reduction)
    class_dim = input.dim() - 1
    dtype = promoted_dtype(input, target, weight)
    if where is not None:
        check_where(fn, where, shape[:class_dim] + shape[class_dim + 1 :])
        scores_mask = _class_mask(where, len(shape) - 1, class_dim)
        input, target = masked(scores_mask, input), masked(scores_mask, target, 0)
    logits = input.to(compute_dtype(dtype))  # bf16/fp16: terms, gradients and sums in fp32
    # two terms >= 0 (no cancellation); an absent term counts 0 even at an infinite logit
    if target.shape == logits.shape and target.dtype == logits.dtype:
        loss = logistic_terms(logits, target)
    else:
        loss = times(target, softplus(-logits)) + times(1 - target, softplus(logits))
    if weight is not None:
        loss = loss * weight
    # the class sum is the per-sample loss, not a reduction
    loss = loss.sum(class_dim) / input.shape[-1]
    return reduce(loss, reduction, where=where).to(dtype)


# -- shapes of the multi-class margin losses -------------------------------------------------


def _check_scores(fn: str, input: Tensor) -> int:
    """Scores ``(N, C)``, ``(C,)`` or ``()`` (one class) with ``C > 0``, as torch; returns C."""
    check_tensor(fn, input=input)
    check_floating(fn, input=input)
    if input.dim() > 2 or (input.dim() > 0 and input.shape[-1] == 0):
        fail(
            ValueError,
            fn,
            "input",
            "have shape (N, C), (C,) or () with C > 0",
            shape_str(input.shape),
        )
    return input.shape[-1] if input.dim() > 0 else 1


def _hinge_scale(num_classes: int, p: int = 1) -> float:
    """A power of two ``s`` to scale the scores by before the hinges (exactly: the hinges and
    their sums are ``s`` times the unscaled ones, rounded alike) so that nothing overflows on
    the way to a loss that fits: a hinge ``x_i - x_j + 1`` of two scores near float32's max is
    up to twice its max, and a sum of hinges (of squares for ``p = 2``) ending below ``C`` times
    the max, divided by ``C``, fits. ``s^p C <= 1`` and ``s^p <= 1/2``."""
    return 2.0 ** -math.ceil(max(1.0, math.log2(num_classes)) / p)


# -- multilabel_margin_loss ------------------------------------------------------------------
#
# For each listed label j (x_j = the score of class y_j) and each class i that is not a label,
# the hinge max(0, 1 - x_j + x_i) is active exactly when x_i > x_j - 1. Instead of building the
# (C, C) table of pairs (torch's loop is O(C^2) time; a table would also be O(C^2) memory), sort
# the non-label scores together with the thresholds t_j = x_j - 1, in descending order. The
# scores before t_j in sorted order are the active ones; prefix sums give their count k_j and
# sum s_j, and
#     sum_i max(0, 1 - x_j + x_i) = k_j + (s_j - k_j x_j).
# A stable sort with the thresholds first puts a score equal to t_j after it: counted inactive,
# as torch counts a hinge only when it is > 0. Label classes get the key -inf, so they come last
# and are never counted. Everything is a differentiable gather/cumsum/scatter of the scores.


def _listed_labels(input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(listed, labels, is_label): the label slots before the first -1, their classes (0 where
    not listed), and a mask of the classes that are labels."""
    listed = (target == -1).cumsum(-1) == 0
    labels = torch.where(listed, target, 0)
    counts = torch.zeros_like(input).scatter_add(-1, labels, listed.to(input.dtype))
    return listed, labels, counts > 0


def _above_threshold(values: Tensor, order: Tensor, num_classes: int) -> Tensor:
    """For each threshold slot (the first ``num_classes``), the sum of ``values`` over the
    entries sorted before it in descending ``order`` (a threshold's own value is 0)."""
    prefix = values.gather(-1, order).cumsum(-1)
    return torch.zeros_like(prefix).scatter(-1, order, prefix)[..., :num_classes]


def _multilabel_margin(input: Tensor, target: Tensor) -> Tensor:
    """Per-row loss for ``(..., C)`` scores and int64 labels padded with -1."""
    return _multilabel_hinge_sums(input, target) / input.shape[-1]


def _multilabel_hinge_sums(input: Tensor, target: Tensor) -> Tensor:
    """Per-row sum of the hinges (the loss times C), in float64: the suffix sums of scores near
    float32's max neither overflow nor round away what ``k x_j`` cancels (the sum is then
    within an ulp or two of the exact one). The order is sorted in the scores' own dtype (half
    precision in float32), exactly, as the thresholds are (:func:`_thresholds`)."""
    num_classes = input.shape[-1]
    listed, labels, is_label = _listed_labels(input, target)
    scores = input.detach().to(compute_dtype(input.dtype))
    thresholds = _thresholds(scores.gather(-1, labels))
    keys = torch.cat([thresholds, scores.masked_fill(is_label, float("-inf"))], -1)
    order = keys.argsort(dim=-1, descending=True, stable=True)
    input = input.to(torch.float64)
    label_scores = input.gather(-1, labels)
    zeros = torch.zeros_like(input)
    count = _above_threshold(torch.cat([zeros, torch.ones_like(input)], -1), order, num_classes)
    total = _above_threshold(torch.cat([zeros, input], -1), order, num_classes)
    # sum_i (1 + x_i - x_j) = k + (s - k x_j): the 1s are added last, after the scores cancel
    # (at scores of 3e38, 1 - x_j rounds to -x_j even in float64); no active hinge adds
    # nothing, also for a label score of +inf (0 * inf would be nan)
    hinges = torch.where(count > 0, count + (total - count * label_scores), 0.0)
    return torch.where(listed, hinges, 0.0).sum(-1)


def _thresholds(label_scores: Tensor) -> Tensor:
    """The thresholds ``x_j - 1`` rounded down (no gradient: they only decide which hinges are
    active). A score ``x_i`` of the same dtype is then above the threshold exactly when
    ``1 - x_j + x_i > 0``: where ``x_j - 1`` is not a float, the next float above the rounded
    down one is above the exact threshold, and a score equal to a rounded down one is below
    it. (Rounded to nearest, the 1 rounds away at ``|x_j| >= 2^24`` in float32 and a score
    equal to ``x_j``, whose hinge is 1, would count 0.) The rounding error by TwoSum; an
    infinite ``x_j`` keeps ``x_j - 1``."""
    scores = label_scores.detach()
    thresholds = scores - 1
    back = thresholds - scores
    error = (scores - (thresholds - back)) + (-1 - back)  # exact: x_j - 1 - thresholds
    rounded_up = error < 0
    return torch.where(
        rounded_up, torch.nextafter(thresholds, scores.new_tensor(-math.inf)), thresholds
    )


def _check_multilabel_targets(fn: str, target: Tensor, num_classes: int) -> None:
    """Eager-only: every entry (after the first -1 too, as torch checks) lies in [-1, C)."""
    if not value_checks_enabled(target) or target.numel() == 0:
        return
    bad = (target < -1) | (target >= num_classes)
    if bool(bad.any()):
        first = int(target[bad].flatten()[0])
        raise IndexError(
            f"{fn}: `target` values must be in [0, {num_classes}) or -1 (end of the labels), "
            f"got {first}."
        )


# -- the eager step of the multi-class hinges ------------------------------------------------
#
# The compositions below are what every transform differentiates. Autograd through them writes,
# saves and reads again several (N, C) intermediates (multilabel_margin's sort keys, orders and
# suffix sums; multi_margin's hinges and masks), where the floor is to read the scores and write
# the gradient. A plain eager call takes `_HingeStep` instead.


def _fast(input: object, target: object, where: object, reduction: str) -> bool:
    """A plain eager CPU call, no mask, a valid ``reduction``, 2-d float32/float64 contiguous
    scores with at least one row, and a contiguous int64 target: the eager step may run.

    Inlined as ``_regression._fast`` is (the house checks cost more than the loss at 64x10);
    :func:`eager_mode` holds the mode conditions. The callers check the rest of their
    arguments."""
    return (
        where is None
        and reduction in _REDUCTIONS
        and type(input) is Tensor
        and type(target) is Tensor
        and input.dtype in _FAST_DTYPES  # type: ignore[attr-defined]
        and target.dtype == torch.int64  # type: ignore[attr-defined]
        and input.dim() == 2  # type: ignore[attr-defined]
        and input.shape[0] > 0  # type: ignore[attr-defined]
        and input.shape[1] > 0  # type: ignore[attr-defined]
        and input.is_cpu  # type: ignore[attr-defined]
        and target.is_cpu  # type: ignore[attr-defined]
        and input.is_contiguous()  # type: ignore[attr-defined]
        and target.is_contiguous()  # type: ignore[attr-defined]
        and eager_mode(input)
    )


_FAST_DTYPES = (torch.float32, torch.float64)  # half precision computes in float32: composition
_REDUCTIONS = ("mean", "sum", "none")


class _HingeStep(SlopeStep):
    """The eager training step of multi_margin (``param``: ``(p, margin)``) and
    multilabel_margin (``param``: the most labels in a row, each row's count).

    The forward computes the per-sample losses (for multi_margin exactly as the composition
    does) and the slope of their sum (``d / d input``, before the ``1 / C`` and the reduction's
    factor) in one tensor, and reduces; the backward scales that slope in place into the
    gradient (:class:`SlopeStep`). Torch's own kernels allocate the gradient in their backward
    (and multilabel_margin saves an (N, C) mask besides), so the peak is not above theirs.
    """


def _step(kind: str, input: Tensor, target: Tensor, reduction: str, param: Any) -> Tensor:
    """The eager step's value (``kind``: a key of ``_STEP_RULES``)."""
    return _HingeStep.run(_STEP_RULES[kind], input, target, (reduction, param))


def _factor(grad: Tensor, reduction: str, shape: torch.Size) -> Tensor:
    """The composition's factor of the slope: mean's backward g / N, then the per-sample 1 / C."""
    rows, num_classes = shape
    if reduction == "none":
        return (grad / num_classes).unsqueeze(-1)
    return (grad / rows if reduction == "mean" else grad) / num_classes


def _hinge_rule(
    forward: Callable[[Tensor, Tensor, Any, bool], tuple[Tensor, Tensor | None]],
    scale: Callable[[Tensor, Tensor, Any, Tensor], Tensor],
    differentiable: Callable[[Tensor, Tensor, Any, Tensor], Tensor],
) -> SlopeRule:
    """The :class:`SlopeRule` of a hinge from its per-sample ``forward``, its in-place
    ``scale`` of the slope and its ``differentiable`` gradient (double backward), each
    ``(tensor, target, param, ...)``; ``config`` is ``(reduction, param)``, and the step keeps
    the target for ``scale``."""

    def step(
        input: Tensor, target: Tensor, config: tuple[str, Any]
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        reduction, param = config
        rows, slope = forward(input, target, param, input.requires_grad)
        if reduction != "none":
            rows = rows.sum() if reduction == "sum" else rows.mean()
        return rows, slope, target

    def scale_slope(slope: Tensor, grad: Tensor, config: tuple[str, Any], target: Tensor) -> Tensor:
        reduction, param = config
        return scale(slope, target, param, _factor(grad, reduction, slope.shape))

    def gradient(
        input: Tensor, target: Tensor, grad: Tensor, config: tuple[str, Any], kept: Tensor
    ) -> Tensor:
        reduction, param = config
        factor = _factor(grad, reduction, input.shape)
        if torch.is_grad_enabled():
            return differentiable(input, target, param, factor)
        _, slope = forward(input, target, param, True)  # a second backward: the same rounding
        return scale(slope, target, param, factor)  # type: ignore[arg-type]

    return SlopeRule(step, scale_slope, gradient)


def _multi_margin_forward(
    input: Tensor, index: Tensor, param: tuple[int, float], need_slope: bool
) -> tuple[Tensor, Tensor | None]:
    """multi_margin's per-sample losses (the composition's ops, in place) and its hinges, the
    slope before the backward's scaling."""
    p, margin = param
    scale = _hinge_scale(input.shape[1], p)
    hinges = torch.mul(input, scale)
    try:
        target_scores = hinges.gather(1, index)
    except RuntimeError:  # an index out of range: the house error (torch's, checks off)
        check_class_indices("multi_margin_loss", index, input.shape[1])
        raise
    hinges.sub_(target_scores).add_(margin * scale)
    hinges.relu_().scatter_(1, index, 0.0)
    rows = hinges.sum(-1) if p == 1 else _square_sums(hinges)
    return rows / (input.shape[1] * scale**p), hinges if need_slope else None


def _square_sums(hinges: Tensor) -> Tensor:
    """``(hinges * hinges).sum(-1)``, the squares written by blocks of rows into one scratch
    buffer (no second (N, C) tensor beside the hinges; the same sums, row by row)."""
    rows, num_classes = hinges.shape
    step = max(1, _SCRATCH // num_classes)
    if rows <= step:
        return (hinges * hinges).sum(-1)
    sums = torch.empty(rows, dtype=hinges.dtype)
    scratch = torch.empty(step, num_classes, dtype=hinges.dtype)
    for start in range(0, rows, step):
        part = hinges[start : start + step]
        squares = torch.mul(part, part, out=scratch[: part.shape[0]])
        torch.sum(squares, -1, out=sums[start : start + step])
    return sums


def _multi_margin_scale(
    hinges: Tensor, index: Tensor, param: tuple[int, float], factor: Tensor
) -> Tensor:
    """The gradient, in the hinges' buffer (scaled by :func:`_hinge_scale`): autograd's of the
    composition, op for op (relu's derivative 0 where a hinge is <= 0; the square's 2 h g; the
    target's slot minus the row's sum)."""
    if param[0] == 2:
        hinges.mul_(factor * (2 / _hinge_scale(hinges.shape[1], 2)))
    else:  # by blocks of rows: the mask stays small
        rows, num_classes = hinges.shape
        step, zero = max(1, _SCRATCH // num_classes), _ZEROS[hinges.dtype]
        if rows <= step:
            torch.where(hinges <= 0, zero, factor, out=hinges)
        for start in range(0, rows if rows > step else 0, step):
            part = hinges[start : start + step]
            part_factor = factor if factor.dim() == 0 else factor[start : start + step]
            torch.where(part <= 0, zero, part_factor, out=part)
    return hinges.scatter_(1, index, hinges.sum(-1, keepdim=True).neg_())


def _multi_margin_hinges(
    scores: Tensor, index: Tensor, margin: float, scale: float, p: int = 1
) -> Tensor:
    """The hinges ``relu(x_i - x_y + margin)`` of ``(N, C)`` scores, scaled by ``scale``
    (:func:`_hinge_scale`). The difference first: ``margin - x_y`` would round the margin away
    at scores of 3e38. The target's own slot (``x_y - x_y``: nan at an infinite ``x_y``) is set
    to 0 before any square, so no nan reaches a derivative: an infinite target score gives the
    limit 0.

    For ``p = 2`` the hinges are ``hardtanh``-ed into ``[0, finfo.max]`` instead (one pass
    each way, as fast as relu's; clamp's backward costs twice): the square of an infinite
    hinge (a row with an infinite score) is inf all the same, and its derivative in the
    directions that do not move it is 0, where ``2 inf * 0`` is nan (forward mode: ``jacfwd``,
    ``jvp``); where it moves, hardtanh's slope is 0 (the derivative is unbounded; the eager
    step's is ``±inf``). At the kink both slopes are 0, as torch's."""
    scaled = scores * scale
    hinges = scaled - scaled.gather(-1, index) + margin * scale
    if p == 2:
        hinges = F.hardtanh(hinges, 0.0, torch.finfo(hinges.dtype).max)
    else:
        hinges = torch.relu(hinges)
    return hinges.scatter(-1, index, 0.0)


def _multi_margin_grad(
    input: Tensor, index: Tensor, param: tuple[int, float], factor: Tensor
) -> Tensor:
    """:func:`_multi_margin_scale` in differentiable ops (double backward)."""
    p, margin = param
    hinges = _multi_margin_hinges(input, index, margin, _hinge_scale(input.shape[1], p), p)
    if p == 1:
        grad = torch.where(hinges <= 0, 0.0, factor)
    else:
        grad = hinges * (factor * (2 / _hinge_scale(input.shape[1], 2)))
    return grad.scatter(1, index, -grad.sum(-1, keepdim=True))


# The scratch block of the chunked passes, in elements: small enough to stay in cache.
_SCRATCH = 2**16


def _most_labels(fn: str, target: Tensor, num_classes: int) -> tuple[int, Tensor] | None:
    """The most labels listed in a row and each row's count, the targets range-checked: the
    call's one host read (``None``, and no read, with the value checks off)."""
    if not value_checks_enabled(target):
        return None
    has_end, first_end = (target == -1).max(-1)
    count = torch.where(has_end, first_end, num_classes)
    most, low, high = torch.stack([count.max(), *torch.aminmax(target)]).tolist()
    if low < -1 or high >= num_classes:
        _check_multilabel_targets(fn, target, num_classes)
    return most, count


def _multilabel_forward(
    input: Tensor, target: Tensor, param: tuple[int, Tensor], need_slope: bool
) -> tuple[Tensor, Tensor | None]:
    """multilabel_margin's per-sample losses and the slope of their sum (times C: integer
    counts), by blocks of rows (:func:`_multilabel_block`); ``param``: the most labels listed
    in a row, and each row's count."""
    most, count = param
    rows, num_classes = input.shape
    sums = torch.empty(rows, dtype=input.dtype)
    slope = torch.empty_like(input) if need_slope else None
    step = max(1, _HINGE_BLOCK // (most * num_classes))
    scale = _hinge_scale(num_classes)
    for start in range(0, rows, step):
        block = slice(start, start + step)
        _multilabel_block(
            input[block],
            target[block, :most],
            count[block],
            sums[block],
            None if slope is None else slope[block],
            scale,
        )
    return sums / (num_classes * scale), slope


def _multilabel_block(
    scores: Tensor,
    slots: Tensor,
    count: Tensor,
    sums: Tensor,
    slope: Tensor | None,
    scale: float,
) -> None:
    """Hinge sums (into ``sums``) and their slope (into ``slope``) of a block of rows whose
    lists have at most ``k`` labels (``slots``: the first ``k`` of each row, ``count`` listed),
    the hinges and sums scaled by ``scale`` (:func:`_hinge_scale`).

    Every hinge is computed directly, ``z = (x_i - x_j) + 1`` for each slot ``j`` and each
    class ``i`` (the difference first: torch's ``(1 - x_j) + x_i`` rounds the 1 away at scores
    of 3e38), in ``(R, k, C)`` elements (in cache): ``k C`` operations a row, as torch's loop,
    where the composition's sort costs ``C log C`` and several passes. Label classes are set
    to ``-inf``, unlisted slots' ``x_j`` to ``+inf``, and a hinge counts where
    ``x_i`` is above the rounded down threshold ``x_j - 1`` (:func:`_thresholds`: exactly
    where ``z > 0``, torch's test, as the composition's sort decides): an infinite score
    against an equal one counts 0, the composition's limits. A ``nan`` among a row's other
    scores makes its sum ``nan``, as in the composition (torch's loop skips it)."""
    most = slots.shape[-1]
    listed = _SLOTS[:most] < count.unsqueeze(-1)
    # unlisted slots name the row's first label (class 0 in a row without one): the scatter of
    # -inf below writes only label classes
    labels = torch.where(listed, slots, slots[:, :1]).clamp_min_(0)
    others = scores.scatter(-1, labels, float("-inf"))
    label_scores = torch.where(listed, scores.gather(-1, labels), float("inf"))
    # active exactly where 1 - x_j + x_i > 0, as the composition decides; the value with the
    # difference first, then the 1, scaled (1 - x_j rounds the 1 away at scores of 3e38)
    active = others.unsqueeze(1) > _thresholds(label_scores).unsqueeze(-1)
    others, label_scores = others * scale, label_scores * scale
    hinges = (others.unsqueeze(1) - label_scores.unsqueeze(-1)).add_(scale)
    per_slot = torch.where(active, hinges, _ZEROS[hinges.dtype], out=hinges).sum(-1)
    torch.sum(per_slot, -1, out=sums)
    sums.masked_fill_(others.isnan().any(-1) & listed[:, 0], float("nan"))
    if slope is not None:
        torch.sum(active, 1, dtype=slope.dtype, out=slope)
        slope.scatter_add_(-1, labels, active.sum(-1, dtype=slope.dtype).neg_())


# The direct hinges cost k passes over a block, the composition's sort about log2(C) of its
# heavier ones: measured at C = 1000, the direct way is the faster up to about this many labels.
_DIRECT_LABELS = 16
_SLOTS = torch.arange(_DIRECT_LABELS)
# The (R, k, C) hinges of a block, in elements (4 MiB of float32): larger than the cache, but
# each block costs about 25 small ops, and at 2**16 their overhead is half the time.
_HINGE_BLOCK = 2**20
_ZEROS = {dtype: torch.zeros((), dtype=dtype) for dtype in _FAST_DTYPES}


def _multilabel_scale(
    slope: Tensor, target: Tensor, param: tuple[int, Tensor], factor: Tensor
) -> Tensor:
    return slope.mul_(factor)


def _multilabel_grad(
    input: Tensor, target: Tensor, param: tuple[int, Tensor], factor: Tensor
) -> Tensor:
    """The gradient for double backward: the slope does not depend on the scores (the loss
    is piecewise linear), so it is recomputed as a constant, times the differentiable factor."""
    with torch.no_grad():
        _, slope = _multilabel_forward(input.detach(), target, param, True)
    return slope * factor  # type: ignore[operator]


_STEP_RULES = {
    "multi_margin": _hinge_rule(_multi_margin_forward, _multi_margin_scale, _multi_margin_grad),
    "multilabel": _hinge_rule(_multilabel_forward, _multilabel_scale, _multilabel_grad),
}


@follows_autocast("float32")
@checks_config(_MULTILABEL_MARGIN_CONFIG)
def multilabel_margin_loss(
    input: Tensor, target: Tensor, *, reduction: Reduction = "mean", where: Tensor | None = None
) -> Tensor:
    r"""Multi-label hinge loss: every label's score must beat every non-label's by 1.

    For multi-label classification with a ranking flavour. ``target`` lists each sample's label
    classes, padded with ``-1``: only the classes before the first ``-1`` count.

    .. math::
        \ell_n = \frac{1}{C} \sum_{j \in Y_n} \sum_{i \notin Y_n}
                 \max(0,\; 1 - (x_{n, j} - x_{n, i}))

    A label listed twice counts twice, as in torch. At the kink the gradient is torch's: 0
    (a hinge counts only when it is positive). Computed by sorting, in :math:`O(C \log C)`
    time and :math:`O(C)` memory per sample.

    Args:
        input: scores, shape ``(N, C)``, ``(C,)`` or ``()`` (one class, as torch takes it),
            floating dtype.
        target: label classes, integer dtype, ``input``'s shape (``(C,)``, ``()`` or ``(1,)``
            for an unbatched input; nothing is broadcast, as in torch); values in ``[0, C)`` or
            ``-1`` (range checked in eager mode only).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples that count, broadcastable to ``(N,)`` (``()``
            for an unbatched input); ``"mean"`` divides by their number. A masked sample's
            scores and label list are not read (its labels are not range-checked).

    Returns:
        Shape ``(N,)`` or ``()`` for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input, non-integer target, a non-bool ``where``.
        ValueError: wrong shapes (as torch refuses them), bad ``reduction``, a ``where`` that
            does not broadcast to the loss's shape.
        IndexError: a target value outside ``[-1, C)`` in a sample that counts (eager mode).

    Examples:
        >>> scores = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> funcloss.multilabel_margin_loss(scores, torch.tensor([[3, 0, -1, 1]]))
        tensor(0.8500)
    """
    fn = "multilabel_margin_loss"
    checked = False
    if _fast(input, target, where, reduction) and target.shape == input.shape:
        lists = _most_labels(fn, target, input.shape[1])
        if lists is not None and 0 < lists[0] <= _DIRECT_LABELS:
            return _step("multilabel", input, target, reduction, lists)
        checked = lists is not None
    num_classes = _check_scores(fn, input)
    _MULTILABEL_MARGIN_CONFIG(reduction=reduction)  # config first, as torch reports it
    check_integer(fn, target=target)
    if input.dim() == 2 and target.shape != input.shape:
        fail(
            ValueError,
            fn,
            "target",
            f"have the input's shape {shape_str(input.shape)}",
            shape_str(target.shape),
        )
    if input.dim() < 2 and (target.dim() > 1 or target.numel() != num_classes):
        fail(
            ValueError,
            fn,
            "target",
            f"have shape ({num_classes},) (one slot per class) for input of shape "
            f"{shape_str(input.shape)}",
            shape_str(target.shape),
        )
    target = target.long()  # -1 must compare as -1, whatever the integer dtype
    batched = input.dim() == 2
    if where is not None:
        check_where(fn, where, input.shape[:1] if batched else ())
        rows = where.unsqueeze(-1) if batched else where
        # a masked sample lists no label: it adds 0, and reads no score
        input, target = masked(rows, input), masked(rows, target, -1)
    if not checked:
        _check_multilabel_targets(fn, target, num_classes)
    if input.dim() < 2:  # torch takes a 0-dim input (one class) with a target of one slot
        input, target = input.reshape(num_classes), target.reshape(num_classes)
    # sums in float64, half precision's thresholds x_j - 1 in float32 (a bf16 threshold rounds,
    # and drops or adds hinges); the result in the input's dtype, as torch's
    loss = _multilabel_margin(input, target)
    return reduce(loss, reduction, where=where).to(input.dtype)


# -- multi_margin_loss -----------------------------------------------------------------------


@follows_autocast("float32")
@checks_config(_check_multi_margin_config)
def multi_margin_loss(
    input: Tensor,
    target: Tensor,
    p: int = 1,
    margin: float = 1.0,
    weight: Tensor | None = None,
    *,
    reduction: Reduction = "mean",
    where: Tensor | None = None,
) -> Tensor:
    r"""Multi-class hinge loss: the target's score must beat every other class's by a margin.

    The multi-class SVM loss (Weston & Watkins); ``p=2`` squares each hinge.

    .. math::
        \ell_n = \frac{w_{y_n}}{C} \sum_{i \ne y_n}
                 \max(0,\; \text{margin} - x_{n, y_n} + x_{n, i})^p

    At the kink the gradient is torch's: 0 (a hinge counts only when it is positive).

    Args:
        input: scores, shape ``(N, C)``, ``(C,)`` or ``()`` (one class, as torch takes it),
            floating dtype.
        target: class indices, integer dtype, shape ``(N,)`` (or ``()`` when ``N = 1``), or
            ``()`` or ``(1,)`` for an unbatched input, as in torch (nothing is broadcast);
            values in ``[0, C)`` (checked in eager mode only).
        p: 1 or 2.
        margin: the required gap.
        weight: optional per-class weight (of the target class), shape ``(C,)``, floating
            (the output has the promoted dtype; torch refuses a weight of another dtype).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        where: optional bool mask of the samples that count, broadcastable to ``target``'s
            shape (the loss's); ``"mean"`` divides by their number (with a ``weight`` too, as
            torch's mean divides by the number of samples). A masked sample's scores and class
            index are not read (its index is not range-checked).

    Returns:
        ``target``'s shape for ``"none"`` (0 where masked), else a 0-dim tensor.

    Raises:
        TypeError: non-floating input or weight, non-integer target, a non-bool ``where``.
        ValueError: wrong shapes (as torch refuses them), ``p`` not 1 or 2, bad ``reduction``,
            a ``where`` that does not broadcast to ``target``'s shape.
        IndexError: a class index out of range in a sample that counts (eager mode).

    Examples:
        >>> scores = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
        >>> funcloss.multi_margin_loss(scores, torch.tensor([3]))
        tensor(0.3250)
        >>> funcloss.multi_margin_loss(scores, torch.tensor([3]), p=2)
        tensor(0.1525)
    """
    fn = "multi_margin_loss"
    if (
        weight is None
        and (p == 1 or p == 2)
        and type(margin) in (float, int)
        and margin == margin
        and _fast(input, target, where, reduction)
        and target.shape == input.shape[:1]
    ):
        index = target.unsqueeze(-1)  # range-checked by the gather
        return _step("multi_margin", input, index, reduction, (p, margin))
    num_classes = _check_scores(fn, input)
    # config before the target, as torch reports them
    _check_multi_margin_config(reduction=reduction, p=p, margin=margin)
    check_class_weight_shape(fn, weight, num_classes)  # any floating dtype: promoted
    check_integer(fn, target=target)
    rows = input.shape[0] if input.dim() == 2 else 1
    if target.dim() > 1 or target.numel() != rows:
        wanted = f"({rows},) (one class index per sample)" if input.dim() == 2 else "() or (1,)"
        fail(
            ValueError,
            fn,
            "target",
            f"have shape {wanted} for input of shape {shape_str(input.shape)}",
            shape_str(target.shape),
        )
    # torch's layout: one row of scores per class index ((C,) and () are one row)
    scores = input if input.dim() == 2 else input.reshape(rows, num_classes)
    if where is not None:
        check_where(fn, where, target.shape)
        # a masked sample: class 0, scores 0 (finite hinges), its own index never checked
        target = masked(where, target, 0)
        scores = masked(where.expand(target.shape).reshape(rows, 1), scores)
    target = as_index(target)
    check_class_indices(fn, target, num_classes)
    if weight is not None and weight.dtype != input.dtype:
        scores = scores.to(promoted_dtype(input, weight))
    index = (target if target.dim() == 1 else target.reshape(rows)).long().unsqueeze(-1)
    scale = _hinge_scale(num_classes, p)
    hinges = _multi_margin_hinges(scores, index, margin, scale, p)
    if p == 2:
        hinges = hinges * hinges
    loss = hinges.sum(-1)
    if weight is not None:  # before the unscaling: a weight below 1 may bring the loss in range
        class_weight = weight.to(scores.dtype).expand(rows, num_classes).gather(-1, index)
        loss = loss * class_weight.squeeze(-1)
    loss = loss / (num_classes * scale**p)
    if target.dim() != 1:
        loss = loss.reshape(target.shape)
    return reduce(loss, reduction, where=where)
