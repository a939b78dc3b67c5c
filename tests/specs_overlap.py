"""Specs for the overlap (Dice family) segmentation losses: dice, tversky, jaccard,
focal_tversky, generalized_dice, mcc.

The oracle is the textbook formula in float64 (Milletari et al. 2016, Salehi et al. 2017,
Abraham and Khan 2019): soft counts TP = sum p t, FP = sum p (1 - t), FN = sum (1 - p) t over
the pixels that count, written from the papers with ``F.one_hot`` targets; it follows
autocast's float32 policy (as a torch loss on autocast's fp32 list would).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import strategies as st

import funcloss
import funcloss.nn as fnn
from funcloss._modes import follows_autocast
from funcloss.testing import class_targets, floats, logits, probabilities

from .anchors import anchor
from .registry import Case, LossSpec, count_mean, weighted_count_mean

IGNORE = -100


def _one_hot(target: torch.Tensor, num_classes: int, ignore_index: int | None):
    keep = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        keep = target != ignore_index
    t = F.one_hot(torch.where(keep, target, 0), num_classes).movedim(-1, 1).double()
    return t, keep


@follows_autocast("float32")
def naive_tversky(
    input,
    target,
    weight=None,
    *,
    alpha=0.5,
    beta=0.5,
    gamma=None,
    smooth=1.0,
    activation="softmax",
    include_background=True,
    batch=False,
    ignore_index=None,
    reduction="mean",
):
    """The Tversky index 1 - (2 TP + s) / (2 TP + 2 alpha FP + 2 beta FN + s) per (n, c),
    from its definition in float64; ``gamma``: raised per class (focal Tversky)."""
    out_dtype = input.dtype
    for other in (target, weight):
        if other is not None and other.is_floating_point():
            out_dtype = torch.promote_types(out_dtype, other.dtype)
    x = input.double()
    num_classes = x.shape[1]
    if activation == "softmax":
        p = torch.softmax(x, 1)
    elif activation == "sigmoid":
        p = torch.sigmoid(x)
    else:
        p = x
    if target.is_floating_point():
        t = target.double()
        keep = torch.ones(x.shape[:1] + x.shape[2:], dtype=torch.bool)
    else:
        t, keep = _one_hot(target, num_classes, ignore_index)
    k = keep.unsqueeze(1).double()
    p, t = torch.where(k > 0, p, 0.0), torch.where(k > 0, t, 0.0)
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    dims = tuple(range(2, x.dim()))
    if batch:
        dims = (0, *dims)
    tp = (p * t).sum(dims)
    fp = (p * (1 - t)).sum(dims)
    fn = ((1 - p) * t).sum(dims)
    numerator = 2 * tp + smooth
    denominator = 2 * tp + 2 * alpha * fp + 2 * beta * fn + smooth
    empty = denominator == 0
    loss = torch.where(empty, 0.0, 1 - numerator / torch.where(empty, 1.0, denominator))
    if gamma is not None:
        # the documented convention at a zero loss (a perfect or empty class): 0, zero gradient
        positive = loss > 0
        loss = torch.where(positive, torch.where(positive, loss, 1.0) ** gamma, 0.0)
    w = None
    if weight is not None:
        w = weight.double() if include_background else weight.double()[1:]
        loss = loss * w
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    elif w is None:
        out = loss.mean()
    else:
        out = loss.sum() / w.expand(loss.shape).sum()
    return out.to(out_dtype)


def naive_dice(input, target, weight=None, **kwargs):
    return naive_tversky(input, target, weight, **kwargs)


def naive_jaccard(input, target, weight=None, **kwargs):
    return naive_tversky(input, target, weight, alpha=1.0, beta=1.0, **kwargs)


@follows_autocast("float32")
def naive_mcc(
    input,
    target,
    weight=None,
    *,
    activation="softmax",
    include_background=True,
    batch=False,
    ignore_index=None,
    reduction="mean",
):
    """1 - MCC per (n, c) from the four soft counts TP, FP, FN, TN (Matthews 1975), in float64,
    with the documented convention where the denominator is 0: a constant target gives 0, a
    constant prediction (against a non-constant target) 1."""
    out_dtype = input.dtype
    for other in (target, weight):
        if other is not None and other.is_floating_point():
            out_dtype = torch.promote_types(out_dtype, other.dtype)
    x = input.double()
    if activation == "softmax":
        p = torch.softmax(x, 1)
    elif activation == "sigmoid":
        p = torch.sigmoid(x)
    else:
        p = x
    if target.is_floating_point():
        t = target.double()
        keep = torch.ones(x.shape[:1] + x.shape[2:], dtype=torch.bool)
    else:
        t, keep = _one_hot(target, x.shape[1], ignore_index)
    k = keep.unsqueeze(1).double()
    # an ignored pixel adds nothing, whatever its scores hold (nan included), as in naive_dice
    p = torch.where(k > 0, p, 0.0)
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    dims = tuple(range(2, x.dim()))
    if batch:
        dims = (0, *dims)
    tp = (k * p * t).sum(dims)
    fp = (k * p * (1 - t)).sum(dims)
    fn = (k * (1 - p) * t).sum(dims)
    tn = (k * (1 - p) * (1 - t)).sum(dims)
    # constant target: T or M - T is 0 (summed directly: tp + fn cancels for huge p);
    # constant prediction: no positive mass P or M - P (below 0: "probabilities" beyond 1)
    flat_target = ((k * t).sum(dims) == 0) | ((k * (1 - t)).sum(dims) == 0)
    flat = flat_target | (tp + fp <= 0) | (tn + fn <= 0)
    product = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = (tp * tn - fp * fn) / torch.sqrt(torch.where(flat, 1.0, product))
    loss = torch.where(flat_target, 0.0, 1 - torch.where(flat, 0.0, mcc))
    w = None
    if weight is not None:
        w = weight.double() if include_background else weight.double()[1:]
        loss = loss * w
    if reduction == "none":
        out = loss
    elif reduction == "sum":
        out = loss.sum()
    elif w is None:
        out = loss.mean()
    else:
        out = loss.sum() / w.expand(loss.shape).sum()
    return out.to(out_dtype)


def _monai(
    kind,
    input,
    target,
    weight=None,
    *,
    alpha=0.5,
    beta=0.5,
    weight_type="square",
    smooth=1.0,
    activation="softmax",
    include_background=True,
    batch=False,
    ignore_index=None,
    reduction="mean",
):
    """MONAI's DiceLoss / TverskyLoss / DiceLoss(jaccard=True) adapted to funcloss's signature
    and conventions: smoothing ``s`` (Dice, Jaccard) or ``s / 2`` (Tversky, beside TP); the
    class-weighted mean over the weights; ignored pixels (which MONAI has no argument for)
    zeroed in the probabilities and the one-hot target MONAI is given."""
    losses = anchor("monai.losses")
    options = {"include_background": include_background, "batch": batch, "reduction": "none"}
    if kind == "tversky":
        options.update(alpha=alpha, beta=beta, smooth_nr=smooth / 2, smooth_dr=smooth / 2)
    elif kind == "generalized":
        options.update(w_type=weight_type, smooth_nr=smooth, smooth_dr=smooth)
    else:
        options.update(smooth_nr=smooth, smooth_dr=smooth, jaccard=kind == "jaccard")
    if ignore_index is None and not target.is_floating_point():
        options.update(
            to_onehot_y=True,
            softmax=activation == "softmax",
            sigmoid=activation == "sigmoid",
        )
        given = (input, target.unsqueeze(1))
    else:
        if activation == "softmax":
            p = torch.softmax(input, 1)
        else:
            p = torch.sigmoid(input) if activation == "sigmoid" else input
        if target.is_floating_point():
            t = target
        else:
            keep = (target != ignore_index).unsqueeze(1)
            classes = torch.arange(input.shape[1]).reshape(-1, *([1] * (input.dim() - 2)))
            t = torch.where(keep, target.unsqueeze(1) == classes, False).to(p.dtype)
            p = torch.where(keep, p, 0.0)
        given = (p, t)
    # no warnings.catch_warnings() here: torch.compile cannot trace it (the transform table
    # would show the adapter's failure, not MONAI's); callers silence MONAI's warnings
    module = {
        "tversky": losses.TverskyLoss,
        "generalized": losses.GeneralizedDiceLoss,
    }.get(kind, losses.DiceLoss)(**options)
    out = module(*given)
    if kind == "generalized":
        out = out.reshape(()) if batch else out.reshape(-1)
        return out if reduction == "none" else out.sum() if reduction == "sum" else out.mean()
    out = out.reshape((-1,) if batch else (input.shape[0], -1))
    if weight is not None:
        weight = weight if include_background else weight[1:]
        out = out * weight
    if reduction == "none":
        return out
    if reduction == "sum":
        return out.sum()
    return out.mean() if weight is None else out.sum() / weight.expand(out.shape).sum()


def monai_dice(input, target, weight=None, **kwargs):
    return _monai("dice", input, target, weight, **kwargs)


def monai_tversky(input, target, weight=None, **kwargs):
    return _monai("tversky", input, target, weight, **kwargs)


def monai_jaccard(input, target, weight=None, **kwargs):
    return _monai("jaccard", input, target, weight, **kwargs)


def monai_generalized_dice(input, target, **kwargs):
    return _monai("generalized", input, target, **kwargs)


@follows_autocast("float32")
def naive_generalized_dice(
    input,
    target,
    *,
    weight_type="square",
    smooth=1.0,
    activation="softmax",
    include_background=True,
    batch=False,
    ignore_index=None,
    reduction="mean",
):
    """Sudre et al.'s generalized Dice from its definition in float64, with MONAI's rule for a
    class absent from the target (the largest weight of the present classes)."""
    out_dtype = input.dtype
    if target.is_floating_point():
        out_dtype = torch.promote_types(out_dtype, target.dtype)
    x = input.double()
    if activation == "softmax":
        p = torch.softmax(x, 1)
    elif activation == "sigmoid":
        p = torch.sigmoid(x)
    else:
        p = x
    if target.is_floating_point():
        t = target.double()
    else:
        t, keep = _one_hot(target, x.shape[1], ignore_index)
        k = keep.unsqueeze(1)
        p, t = torch.where(k, p, 0.0), torch.where(k, t, 0.0)
    if not include_background:
        p, t = p[:, 1:], t[:, 1:]
    dims = tuple(range(2, x.dim()))
    if batch:
        dims = (0, *dims)
    tp, total_p, total_t = (p * t).sum(dims), p.sum(dims), t.sum(dims)
    if weight_type == "uniform":
        w = torch.ones_like(total_t)
    else:
        w = 1 / total_t**2 if weight_type == "square" else 1 / total_t
        finite = torch.isfinite(w)
        largest = torch.where(finite, w, 0.0).amax(-1, keepdim=True)
        w = torch.where(finite, w, largest)
    numerator = 2 * (w * tp).sum(-1) + smooth
    denominator = (w * (total_p + total_t)).sum(-1) + smooth
    empty = denominator == 0
    loss = torch.where(empty, 0.0, 1 - numerator / torch.where(empty, 1.0, denominator))
    out = loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()
    return out.to(out_dtype)


def generalized_arg_mask(where: torch.Tensor, position: int, case: Case) -> torch.Tensor | None:
    """Per-image ``where`` ((N,), or () pooled): every channel of a masked image is unread (of
    the classes the loss reads at all)."""
    x = case.args[0]
    classes = x.shape[1] - (0 if case.kwargs.get("include_background", True) else 1)
    if case.kwargs.get("batch", False):
        per_class = where.expand(classes)
    else:
        per_class = where.unsqueeze(-1).expand(x.shape[0], classes)
    return overlap_arg_mask(per_class, position, case)


def class_weighted_mean(case: Case, loss: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The included terms' weighted loss over their class weights' sum."""
    weight = case.kwargs.get("weight")
    if weight is None:
        return count_mean(loss, where)
    if not case.kwargs.get("include_background", True):
        weight = weight[1:]
    return weighted_count_mean(loss, where, weight.expand(loss.shape))


def overlap_arg_mask(where: torch.Tensor, position: int, case: Case) -> torch.Tensor | None:
    """The input entries some included (n, c) term reads: class c's channel (sigmoid, None),
    every channel of a sample with one included term (softmax couples the classes)."""
    if position != 0:
        return None
    x = case.args[0]
    n, c = x.shape[:2]
    kwargs = case.kwargs
    read = where
    if kwargs.get("batch", False):
        read = read.unsqueeze(0).expand(n, read.shape[-1])
    if not kwargs.get("include_background", True):
        read = torch.cat([torch.zeros(n, 1, dtype=torch.bool), read], dim=1)
    if kwargs.get("activation", "softmax") == "softmax":
        read = read.any(1, keepdim=True).expand(n, c)
    return read.reshape(n, c, *([1] * (x.dim() - 2))).expand(x.shape)


@st.composite
def _options(draw: st.DrawFn, num_classes: int, batch: bool | None) -> dict:
    kwargs: dict = {}
    if draw(st.booleans()):
        kwargs["weight"] = draw(floats((num_classes,), min_value=0.1, max_value=2.0))
    if draw(st.booleans()):
        # smooth = 0 (empty class 0 / 0 := 0) jumps from 1 to 0 as P underflows to 0: pinned
        # in test_overlap.py, not drawn here (the huge-input suite underflows P)
        kwargs["smooth"] = draw(st.sampled_from([1e-5, 0.5]))
    if draw(st.booleans()):
        kwargs["include_background"] = False
    kwargs["batch"] = draw(st.booleans()) if batch is None else batch
    return kwargs


@st.composite
def _index_cases(draw: st.DrawFn, batch: bool | None = False, extra: dict | None = None) -> Case:
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 2))))
    kwargs = draw(_options(c, batch))
    kwargs["activation"] = draw(st.sampled_from(["softmax", "sigmoid"]))
    if draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([IGNORE, 0]))
    x = draw(logits((n, c, *spatial)))
    y = draw(class_targets((n, *spatial), c, ignore_index=kwargs.get("ignore_index")))
    kwargs.update(extra or {})
    return Case((x, y), kwargs)


@st.composite
def _probability_cases(draw: st.DrawFn) -> Case:
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    spatial = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kwargs = draw(_options(c, None))
    kwargs["activation"] = draw(st.sampled_from(["sigmoid", None]))
    if kwargs["activation"] is None:
        # probabilities off 0, so that no class is empty (the defined 0 / 0 is not smooth)
        x = draw(probabilities((n, c, *spatial), min_value=0.05, max_value=0.95))
    else:
        x = draw(logits((n, c, *spatial)))
    y = draw(probabilities((n, c, *spatial)))
    return Case((x, y), kwargs)


@st.composite
def _tversky_cases(draw: st.DrawFn, focal: bool = False) -> Case:
    # focal: alpha > 0, so that no class has a loss of exactly 0 (a kink of the exponent)
    alpha = draw(st.sampled_from([0.3, 0.5, 1.0] if focal else [0.0, 0.3, 0.5, 1.0, 2.0]))
    # alpha = beta = 0 makes the loss 0 identically (1 - x / x): not a case to compare
    beta = draw(st.sampled_from([0.5, 0.7, 1.0] if alpha == 0 else [0.0, 0.5, 0.7, 1.0]))
    extra = {"alpha": alpha, "beta": beta}
    if focal:
        extra["gamma"] = draw(st.sampled_from([0.75, 1.0, 2.0]))
    return draw(_index_cases(batch=None, extra=extra))


def _unsmoothed(cases: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    """The cases without ``smooth`` (mcc_loss has none)."""
    return cases.map(
        lambda case: Case(case.args, {k: v for k, v in case.kwargs.items() if k != "smooth"})
    )


def _mixed_target(case: Case) -> Case:
    """Target probabilities in [0.05, 0.95]: no target is constant over the pixels, even after
    a float32 rounding (mcc_loss's constant-target 0 is a jump from MCC's limit 1 at a
    saturated prediction; pinned in test_overlap.py, not drawn here)."""
    x, t = case.args
    return Case((x, t.clamp(0.05, 0.95)), case.kwargs)


def _spec(id, fn, module, cases, oracle, monai=None) -> LossSpec:
    return LossSpec(
        id,
        fn,
        module,
        cases,
        oracle,
        per_sample_dims=None,  # (N, C, *spatial) sliced is not a valid call: see test_overlap
        masked_mean=class_weighted_mean,
        where_arg_mask=overlap_arg_mask,
        anchor=monai,
        anchor_name=None if monai is None else "monai",
    )


@st.composite
def _generalized_cases(draw: st.DrawFn) -> Case:
    case = draw(_index_cases(batch=None))
    kwargs = {k: v for k, v in case.kwargs.items() if k != "weight"}
    kwargs["weight_type"] = draw(st.sampled_from(["square", "simple", "uniform"]))
    return Case(case.args, kwargs)


SPECS = [
    _spec("dice_loss", funcloss.dice_loss, fnn.DiceLoss, _index_cases, naive_dice, monai_dice),
    _spec(
        "dice_loss-batch",
        funcloss.dice_loss,
        fnn.DiceLoss,
        lambda: _index_cases(batch=True),
        naive_dice,
        monai_dice,
    ),
    _spec(
        "dice_loss-probabilities",
        funcloss.dice_loss,
        fnn.DiceLoss,
        _probability_cases,
        naive_dice,
        monai_dice,
    ),
    _spec(
        "tversky_loss",
        funcloss.tversky_loss,
        fnn.TverskyLoss,
        _tversky_cases,
        naive_tversky,
        monai_tversky,
    ),
    _spec(
        "jaccard_loss",
        funcloss.jaccard_loss,
        fnn.JaccardLoss,
        lambda: _index_cases(batch=None),
        naive_jaccard,
        monai_jaccard,
    ),
    _spec(
        "focal_tversky_loss",
        funcloss.focal_tversky_loss,
        fnn.FocalTverskyLoss,
        lambda: _tversky_cases(focal=True),
        naive_tversky,
    ),
    _spec(
        "mcc_loss",
        funcloss.mcc_loss,
        fnn.MCCLoss,
        lambda: _unsmoothed(_index_cases(batch=None)),
        naive_mcc,
    ),
    _spec(
        "mcc_loss-probabilities",
        funcloss.mcc_loss,
        fnn.MCCLoss,
        lambda: _unsmoothed(_probability_cases()).map(_mixed_target),
        naive_mcc,
    ),
    LossSpec(
        "generalized_dice_loss",
        funcloss.generalized_dice_loss,
        fnn.GeneralizedDiceLoss,
        _generalized_cases,
        naive_generalized_dice,
        per_sample_dims=None,
        where_arg_mask=generalized_arg_mask,
        anchor=monai_generalized_dice,
        anchor_name="monai",
    ),
]
