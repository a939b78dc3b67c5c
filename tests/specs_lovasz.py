"""Specs for the Lovász losses: lovasz_hinge_loss, lovasz_softmax_loss.

The oracle is the Lovász extension written from Berman et al. (CVPR 2018), Eq. 8–9, in
float64 with Python loops: per image (or over the batch) and class, the counted pixels' errors
sorted decreasingly (a stable Python sort: ties in pixel order, funcloss's documented
subgradient), each weighted by the increase of the Jaccard loss
``Delta(M) = |M| / |F u M|`` of the prefix set ``M`` — the set function itself, not Algorithm 1's
cumulative sums that funcloss uses. Ignored pixels are dropped from the list (boolean
indexing is fine here). It follows autocast's float32 policy.

The cases keep off the kinks: the Lovász extension is not differentiable where two counted
errors tie (the sorted order changes) nor, for the hinge, where an error is 0 (the relu), so
the strategies reject logits with a tie or a zero hinge error closer than ``GAP``.
"""

from __future__ import annotations

import torch
from hypothesis import assume
from hypothesis import strategies as st

import funcloss
import funcloss.nn as fnn
from funcloss._modes import follows_autocast

from .anchors import load_file
from .registry import Case, LossSpec

IGNORE = 255
GAP = 1e-3  # >> gradcheck's step (1e-6) times the errors' slope (<= 1)


def _jaccard_loss(prefix: list[int], foreground: set[int]) -> float:
    """Delta_J(M) = |M| / |F u M| (0 for an empty union)."""
    union = len(foreground | set(prefix))
    return len(prefix) / union if union else 0.0


def naive_lovasz(errors: torch.Tensor, foreground: list[bool]) -> torch.Tensor:
    """The Lovász extension of the Jaccard loss at ``errors`` (1-D, the counted pixels)."""
    values = errors.detach().tolist()
    order = sorted(range(len(foreground)), key=lambda i: -values[i])
    fg = {i for i, f in enumerate(foreground) if f}
    total = errors.sum() * 0  # connected to the input when nothing counts
    for k in range(len(order)):
        weight = _jaccard_loss(order[: k + 1], fg) - _jaccard_loss(order[:k], fg)
        total = total + errors[order[k]] * weight
    return total


def _reduce(losses: list[torch.Tensor], reduction: str) -> torch.Tensor:
    loss = torch.stack(losses)
    return loss if reduction == "none" else loss.sum() if reduction == "sum" else loss.mean()


def _groups(n: int, per_image: bool) -> list[list[int]]:
    return [[i] for i in range(n)] if per_image else [list(range(n))]


@follows_autocast("float32")
def naive_lovasz_hinge(input, target, *, per_image=True, ignore_index=None, reduction="mean"):
    """Berman's binary Lovász hinge: errors relu(1 - x s), s = 2 y - 1."""
    out_dtype = input.dtype
    if target.is_floating_point():
        out_dtype = torch.promote_types(out_dtype, target.dtype)
    losses = []
    for group in _groups(input.shape[0], per_image):
        x = torch.cat([input[i].double().reshape(-1) for i in group])
        y = torch.cat([target[i].reshape(-1) for i in group])
        keep = [ignore_index is None or float(v) != ignore_index for v in y]
        x = x[torch.tensor(keep, dtype=torch.bool)]
        labels = [float(v) == 1 for v, k in zip(y, keep, strict=True) if k]
        signs = torch.tensor([1.0 if f else -1.0 for f in labels], dtype=torch.float64)
        losses.append(naive_lovasz(torch.relu(1 - x * signs), labels))
    out = _reduce(losses, reduction)
    return (out if per_image else out.reshape(())).to(out_dtype)


@follows_autocast("float32")
def naive_lovasz_softmax(
    input, target, *, classes="present", per_image=False, ignore_index=None, reduction="mean"
):
    """Berman's Lovász-Softmax: per class c, errors |[y = c] - p_c| of the counted pixels; the
    mean over the present classes (``"present"``), all, or the listed ones."""
    num_classes = input.shape[1]
    p_all = torch.softmax(input.double(), 1)
    losses = []
    for group in _groups(input.shape[0], per_image):
        p = torch.cat([p_all[i].reshape(num_classes, -1) for i in group], dim=1)
        y = torch.cat([target[i].reshape(-1) for i in group]).tolist()
        keep = [ignore_index is None or v != ignore_index for v in y]
        p = p[:, torch.tensor(keep, dtype=torch.bool)]
        y = [v for v, k in zip(y, keep, strict=True) if k]
        terms = []
        ids = range(num_classes) if isinstance(classes, str) else classes
        for c in ids:
            fg = [v == c for v in y]
            if classes == "present" and not any(fg):
                continue
            if not fg:  # no counted pixel
                terms.append(p.sum() * 0)
                continue
            errors = torch.stack([1 - p[c, i] if f else p[c, i] for i, f in enumerate(fg)])
            terms.append(naive_lovasz(errors, fg))
        losses.append(torch.stack(terms).mean() if terms else p.sum() * 0)
    out = _reduce(losses, reduction)
    return (out if per_image else out.reshape(())).to(input.dtype)


# -- smp's LovaszLoss, loaded by path --------------------------------------------------------


def _smp():
    return load_file("segmentation_models_pytorch", "losses/lovasz.py")


def smp_lovasz_hinge(input, target, *, per_image=True, ignore_index=None, reduction="mean"):
    """smp's ``_lovasz_hinge`` (what ``LovaszLoss("binary")`` calls), one image at a time for
    ``"none"`` and ``"sum"``. float64 input is passed as is (smp computes its weights in
    float32 and crashes there: the table shows it)."""
    smp = _smp()
    if not per_image:
        return smp._lovasz_hinge(input, target, per_image=False, ignore=ignore_index)
    if reduction == "mean":
        return smp._lovasz_hinge(input, target, per_image=True, ignore=ignore_index)
    per = torch.stack(
        [
            smp._lovasz_hinge(x[None], y[None], per_image=False, ignore=ignore_index)
            for x, y in zip(input, target, strict=True)
        ]
    )
    return per if reduction == "none" else per.sum()


def smp_lovasz_softmax(
    input, target, *, classes="present", per_image=False, ignore_index=None, reduction="mean"
):
    """smp's ``_lovasz_softmax`` on the softmax (what ``LovaszLoss("multiclass")`` does)."""
    smp = _smp()
    p = input.softmax(1)
    if not per_image:
        return smp._lovasz_softmax(p, target, classes=classes, per_image=False, ignore=ignore_index)
    per = [
        smp._lovasz_softmax(q[None], y[None], classes=classes, per_image=False, ignore=ignore_index)
        for q, y in zip(p, target, strict=True)
    ]
    per = torch.stack([torch.as_tensor(v, dtype=p.dtype) for v in per])
    return per if reduction == "none" else per.sum() if reduction == "sum" else per.mean()


# -- strategies ------------------------------------------------------------------------------


def _min_gap(values: torch.Tensor) -> float:
    if values.numel() < 2:
        return float("inf")
    ordered = values.sort().values
    return float((ordered[1:] - ordered[:-1]).min())


def _rows(x: torch.Tensor, per_image: bool) -> list[torch.Tensor]:
    return list(x.reshape(x.shape[0], -1)) if per_image else [x.reshape(-1)]


def _labels(draw: st.DrawFn, shape: tuple[int, ...], classes: int, ignore: int | None):
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, shape, generator=g)
    if ignore is not None:
        y = torch.where(torch.rand(shape, generator=g) < 0.25, ignore, y)
    return y, g


@st.composite
def hinge_cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2))))
    kwargs: dict = {"per_image": draw(st.booleans())}
    if draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([IGNORE, -1]))
    y, g = _labels(draw, (n, *spatial), 2, kwargs.get("ignore_index"))
    x = torch.randn((n, *spatial), generator=g, dtype=torch.float64) * 2
    counted = y != kwargs.get("ignore_index", IGNORE + 1)
    errors = 1 - x * (2 * y - 1)
    assume(bool((errors.abs() > GAP)[counted].all()))
    for e, k in zip(
        _rows(errors, kwargs["per_image"]), _rows(counted, kwargs["per_image"]), strict=True
    ):
        assume(_min_gap(e[k & (e > 0)]) > GAP)
    kind = draw(st.sampled_from(["long", "float", "uint8"]))
    if kind == "float":
        y = y.double()
    elif kind == "uint8" and "ignore_index" not in kwargs:
        y = y.to(torch.uint8)
    return Case((x, y), kwargs)


@st.composite
def softmax_cases(draw: st.DrawFn) -> Case:
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    spatial = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 2))))
    kwargs: dict = {"per_image": draw(st.booleans())}
    choice = draw(st.sampled_from(["present", "all", "list"]))
    if choice == "list":
        kwargs["classes"] = draw(
            st.lists(st.integers(0, c - 1), min_size=1, max_size=c, unique=True)
        )
    elif choice == "all" or draw(st.booleans()):
        kwargs["classes"] = choice
    if draw(st.booleans()):
        kwargs["ignore_index"] = draw(st.sampled_from([IGNORE, 0]))
    y, g = _labels(draw, (n, *spatial), c, kwargs.get("ignore_index"))
    x = torch.randn((n, c, *spatial), generator=g, dtype=torch.float64) * 2
    p = torch.softmax(x, 1)
    counted = y != kwargs.get("ignore_index", IGNORE + 1)
    for k in range(c):
        errors = torch.where(y == k, 1 - p[:, k], p[:, k])
        for e, keep in zip(
            _rows(errors, kwargs["per_image"]), _rows(counted, kwargs["per_image"]), strict=True
        ):
            assume(_min_gap(e[keep]) > GAP)
    return Case((x, y), kwargs)


def lovasz_arg_mask(where: torch.Tensor, position: int, case: Case) -> torch.Tensor | None:
    """A masked image's logits (all of them with ``per_image=False``) are not read."""
    if position != 0:
        return None
    x = case.args[0]
    return where.reshape(where.shape + (1,) * (x.dim() - where.dim())).expand(x.shape)


SPECS = [
    LossSpec(
        "lovasz_hinge_loss",
        funcloss.lovasz_hinge_loss,
        fnn.LovaszHingeLoss,
        hinge_cases,
        naive_lovasz_hinge,
        per_sample_dims=None,  # one image sliced off is not a valid call: see test_lovasz
        where_arg_mask=lovasz_arg_mask,
        anchor=smp_lovasz_hinge,
        anchor_name="smp",
    ),
    LossSpec(
        "lovasz_softmax_loss",
        funcloss.lovasz_softmax_loss,
        fnn.LovaszSoftmaxLoss,
        softmax_cases,
        naive_lovasz_softmax,
        per_sample_dims=None,
        where_arg_mask=lovasz_arg_mask,
        anchor=smp_lovasz_softmax,
        anchor_name="smp",
    ),
]
