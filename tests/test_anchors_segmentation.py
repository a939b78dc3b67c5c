"""The overlap losses against their anchors (MONAI, kornia, smp loaded by path), with the
convention adapters each needs, and the anchors' defects the README names, measured.

Adapters: MONAI's Dice is funcloss's with ``smooth_nr = smooth_dr = s``, its Tversky with
``s / 2`` (smoothing beside TP); smp pools over the batch (``batch=True``), puts ``smooth = s / 2``
beside TP and drops the classes absent from the target (``where`` = present, then the mean over
all C); kornia's macro Dice and its Tversky have no smoothing (``eps`` in the denominator) and
average over the classes present in each image.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import grad, vmap

import funcloss

from .anchors import anchor, load_file
from .registry import SPECS, call
from .specs_overlap import monai_dice

ANCHORED = [spec for spec in SPECS if spec.anchor is not None and spec.anchor_name == "monai"]

SMOOTH = 1.0


def _problem(n=2, c=3, h=6, w=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=generator, dtype=torch.float64)
    y = torch.randint(0, c, (n, h, w), generator=generator)
    y[:, 0, 0] = torch.arange(n) % c  # nothing special: keep every class likely present
    return x, y


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _monai():
    return anchor("monai.losses")


def _smp(name: str):
    return load_file("segmentation_models_pytorch", f"losses/{name}.py")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"batch": True},
        {"include_background": False},
        {"activation": "sigmoid", "smooth": 1e-5},
        {"weight": torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)},
    ],
    ids=["default", "batch", "no-background", "sigmoid", "weight"],
)
def test_dice_matches_monai(kwargs) -> None:
    x, y = _problem()
    for reduction in ("none", "mean"):
        torch.testing.assert_close(
            funcloss.dice_loss(x, y, reduction=reduction, **kwargs),
            monai_dice(x, y, reduction=reduction, **kwargs),
        )


@pytest.mark.parametrize("spec", ANCHORED, ids=repr)
@pytest.mark.filterwarnings("ignore")  # MONAI's own warnings (the adapter cannot silence them)
@settings(max_examples=4)
@given(data=st.data())
def test_spec_anchor_agrees(spec, data) -> None:
    """The registry's MONAI adapters (which the transform-support table runs) give funcloss's
    values on the drawn cases."""
    case = data.draw(spec.cases(), label="case")
    for reduction in spec.reductions:
        torch.testing.assert_close(
            spec.anchor(*case.args, **case.kwargs, reduction=reduction),
            call(spec, case, reduction),
        )


def test_tversky_and_jaccard_match_monai() -> None:
    x, y = _problem()
    monai = _monai()
    for alpha, beta in ((0.3, 0.7), (1.0, 0.5)):
        theirs = _quiet(
            monai.TverskyLoss(
                to_onehot_y=True,
                softmax=True,
                alpha=alpha,
                beta=beta,
                smooth_nr=SMOOTH / 2,
                smooth_dr=SMOOTH / 2,
                reduction="none",
            ),
            x,
            y.unsqueeze(1),
        ).reshape(2, 3)
        ours = funcloss.tversky_loss(x, y, alpha=alpha, beta=beta, reduction="none")
        torch.testing.assert_close(ours, theirs)
    jaccard = _quiet(
        monai.DiceLoss(
            to_onehot_y=True,
            softmax=True,
            jaccard=True,
            smooth_nr=SMOOTH,
            smooth_dr=SMOOTH,
            reduction="none",
        ),
        x,
        y.unsqueeze(1),
    ).reshape(2, 3)
    torch.testing.assert_close(funcloss.jaccard_loss(x, y, reduction="none"), jaccard)


def _present(y, c):
    return torch.nn.functional.one_hot(y, c).flatten(0, -2).sum(0) > 0


def test_dice_jaccard_tversky_match_smp() -> None:
    x, y = _problem()
    y = y.clamp(max=1)  # class 2 absent: smp drops it from the loss (and keeps it in the mean)
    present = _present(y, 3)
    cases = [
        (_smp("dice").DiceLoss("multiclass", smooth=SMOOTH / 2), funcloss.dice_loss, {}),
        (_smp("jaccard").JaccardLoss("multiclass", smooth=SMOOTH / 2), funcloss.jaccard_loss, {}),
        (
            _smp("tversky").TverskyLoss("multiclass", smooth=SMOOTH / 2, alpha=0.3, beta=0.7),
            funcloss.tversky_loss,
            {"alpha": 0.3, "beta": 0.7},
        ),
    ]
    for smp_loss, ours, kwargs in cases:
        theirs = _quiet(smp_loss, x, y)
        mine = ours(x, y, batch=True, where=present, reduction="none", **kwargs).mean()
        torch.testing.assert_close(mine, theirs)


def _kornia():
    return anchor("kornia.losses")


def test_dice_and_tversky_match_kornia() -> None:
    x, y = _problem()
    y[1] = y[1].clamp(max=1)  # class 2 absent from image 1: kornia averages over the present
    kornia = _kornia()
    present = torch.nn.functional.one_hot(y, 3).sum((1, 2)) > 0  # (N, C)

    def per_image_present_mean(loss):
        return ((loss * present).sum(1) / present.sum(1)).mean()

    ours = funcloss.dice_loss(x, y, smooth=0.0, reduction="none")
    torch.testing.assert_close(
        per_image_present_mean(ours), _quiet(kornia.dice_loss, x, y, average="macro", eps=0.0)
    )
    ours = funcloss.tversky_loss(x, y, alpha=0.3, beta=0.7, smooth=0.0, reduction="none")
    theirs = _quiet(kornia.tversky_loss, x, y, 0.3, 0.7, eps=0.0)
    torch.testing.assert_close(per_image_present_mean(ours), theirs)
    # kornia's micro Dice pools the classes: funcloss's on one merged "class" of p and t
    p = torch.softmax(x, 1).reshape(2, 1, -1)
    t = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double().reshape(2, 1, -1)
    torch.testing.assert_close(
        funcloss.dice_loss(p, t, smooth=0.0, activation=None),
        _quiet(kornia.dice_loss, x, y, average="micro", eps=0.0),
    )


def test_four_anchors_four_dice_values() -> None:
    """The issue's first claim: on one input, kornia micro, kornia macro, MONAI (per image) and
    smp (batch-pooled) give four different Dice losses; each is funcloss's under its
    convention (the tests above)."""
    x, y = _problem()
    y[1] = y[1].clamp(max=1)
    kornia = _kornia()
    values = [
        _quiet(kornia.dice_loss, x, y, average="micro"),
        _quiet(kornia.dice_loss, x, y, average="macro"),
        monai_dice(x, y, smooth=1e-5),
        _quiet(_smp("dice").DiceLoss("multiclass"), x, y),
    ]
    for i in range(4):
        for j in range(i):
            assert abs(float(values[i]) - float(values[j])) > 1e-3, values


def test_empty_class_conventions() -> None:
    """A class absent from the target: MONAI gives it ~1 (its Dice), smp 0 (it drops it),
    kornia drops it from its mean. funcloss states one convention: an absent class that is
    predicted has Dice loss 1 - s / (P + s) (~1, MONAI's), a truly empty one (no target, no
    prediction) has loss 0 with zero gradient."""
    x, y = _problem()
    y = y.clamp(max=1)
    monai = monai_dice(x, y, smooth=1e-5, reduction="none")
    assert (monai[:, 2] > 0.99).all()
    smp_none = _quiet(_smp("dice").DiceLoss("multiclass", smooth=0.0), x, y)
    smp_without_2 = _quiet(_smp("dice").DiceLoss("multiclass", smooth=0.0, classes=[0, 1]), x, y)
    torch.testing.assert_close(smp_none, smp_without_2 * 2 / 3)  # class 2 counted as 0
    ours = funcloss.dice_loss(x, y, smooth=1e-5, reduction="none")
    torch.testing.assert_close(ours[:, 2], monai[:, 2])
    # truly empty: probabilities 0 for class 2 (activation None): 0 for funcloss and MONAI
    p = torch.softmax(x, 1)
    p[:, 2] = 0
    p = p / p.sum(1, keepdim=True)
    ours = funcloss.dice_loss(p, y, smooth=0.0, activation=None, reduction="none")
    assert (ours[:, 2] == 0).all()
    g = grad(lambda q: funcloss.dice_loss(q, y, smooth=0.0, activation=None))(p)
    assert torch.isfinite(g).all() and (g[:, 2] == 0).all()


def test_focal_tversky_exponent_per_class_not_on_the_mean() -> None:
    """smp issue #734: smp's TverskyLoss(gamma=) raises the mean loss to gamma; the paper (and
    funcloss) raise each class's loss, then average."""
    x, y = _problem()
    x = x + 4 * (y == 1).unsqueeze(1) * torch.tensor([0.0, 1.0, 0.0]).reshape(1, 3, 1, 1)
    smp_loss = _smp("tversky").TverskyLoss("multiclass", smooth=SMOOTH / 2, gamma=0.75)
    theirs = _quiet(smp_loss, x, y)
    plain = funcloss.tversky_loss(x, y, batch=True, reduction="none")
    torch.testing.assert_close(theirs, plain.mean() ** 0.75)  # smp: the mean, then ** gamma
    ours = funcloss.focal_tversky_loss(x, y, batch=True, gamma=0.75)
    torch.testing.assert_close(ours, (plain**0.75).mean())
    assert abs(float(ours) - float(theirs)) > 1e-3


@pytest.mark.parametrize("name", ["DiceLoss", "TverskyLoss", "GeneralizedDiceLoss"])
def test_monai_fails_compile_fullgraph(name: str) -> None:
    """MONAI's Dice family does not compile with fullgraph=True (a data-dependent shape in its
    reduction, a Python branch on values in the generalized Dice); funcloss's does."""
    x, y = _problem()
    loss = _quiet(getattr(_monai(), name), to_onehot_y=True, softmax=True)
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception):  # noqa: B017  (Dynamo's UserError / Unsupported)
        _quiet(compiled, x, y.unsqueeze(1))
    fn = {
        "DiceLoss": funcloss.dice_loss,
        "TverskyLoss": funcloss.tversky_loss,
        "GeneralizedDiceLoss": funcloss.generalized_dice_loss,
    }[name]
    torch._dynamo.reset()
    ours = torch.compile(fn, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(ours(x, y), fn(x, y))


def test_ensemble_vmap_matches_the_anchors() -> None:
    """vmap over stacked predictions with one shared target (in_dims=(0, None)): funcloss's
    matches MONAI's per member."""
    x, y = _problem()
    ensemble = torch.randn(3, *x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(5))
    ours = vmap(funcloss.dice_loss, in_dims=(0, None))(ensemble, y)
    theirs = torch.stack([monai_dice(e, y) for e in ensemble])
    torch.testing.assert_close(ours, theirs)


def test_mcc_matches_smp_and_its_empty_target_conventions() -> None:
    """smp's ``MCCLoss`` (binary, probabilities, counts pooled over the batch, ``eps`` added
    to each count) with ``eps=0`` is ``mcc_loss(activation=None, batch=True)`` on one channel,
    in value and gradient; its default ``eps=1e-5`` is within 1e-5. An all-background target
    (MCC is 0/0): smp with ``eps=0`` gives NaN, with ``eps=1e-5`` about 1 and a gradient of
    1e-5; funcloss gives 0 with zero gradient (the documented convention)."""
    smp = load_file("segmentation_models_pytorch", "losses/mcc.py")
    generator = torch.Generator().manual_seed(0)
    p = torch.rand(3, 1, 5, 6, generator=generator, dtype=torch.float64)
    t = (torch.rand(3, 1, 5, 6, generator=generator) < 0.4).double()

    def ours(q, target):
        return funcloss.mcc_loss(q, target, activation=None, batch=True)

    exact: dict = {}
    for theirs, tolerance in (
        (smp.MCCLoss(eps=0.0), exact),
        (smp.MCCLoss(), {"atol": 1e-5, "rtol": 0.0}),
    ):
        torch.testing.assert_close(ours(p, t), theirs(p, t), **tolerance)
        torch.testing.assert_close(
            grad(ours)(p, t), grad(lambda q, theirs=theirs: theirs(q, t))(p), **tolerance
        )
    background = torch.zeros_like(t)
    assert torch.isnan(smp.MCCLoss(eps=0.0)(p, background))
    assert torch.isnan(grad(lambda q: smp.MCCLoss(eps=0.0)(q, background))(p)).all()
    smoothed = smp.MCCLoss()(p, background)
    assert abs(float(smoothed) - 1) < 1e-2
    assert 0 < float(grad(lambda q: smp.MCCLoss()(q, background))(p).abs().max()) < 1e-4
    assert ours(p, background) == 0
    assert (grad(ours)(p, background) == 0).all()
