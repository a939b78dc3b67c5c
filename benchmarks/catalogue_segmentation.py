"""Segmentation losses at N=8, C=4, 128x128 against MONAI, kornia and smp (by path).

Each anchor is adapted to funcloss's convention (tests/test_anchors_segmentation.py): MONAI's
Dice with ``smooth_nr = smooth_dr = s`` and its Tversky with ``s / 2``; kornia's macro Dice and
Tversky with ``eps`` for ``s`` (every class is present in these random targets, so its
present-class mean is the plain mean); smp pooled over the batch with ``smooth = s / 2``.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch
from catalogue import Bench

import funcloss

SMOOTH = 1e-5


def _make(quick: bool, generator: torch.Generator):
    n, c, side = (2, 4, 8) if quick else (8, 4, 128)
    x = torch.randn(n, c, side, side, generator=generator)
    y = torch.randint(0, c, (n, side, side), generator=generator)
    return (x, y), {"smooth": SMOOTH}


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _smp_module(name: str):
    """smp's loss file loaded by path (its package needs torchvision's compiled ops)."""
    try:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.anchors import load_file

        return load_file("segmentation_models_pytorch", f"losses/{name}.py")
    except Exception:  # not installed: left out
        return None


def _contenders_dice() -> dict:
    out = {"funcloss": funcloss.dice_loss}
    try:
        import monai.losses as monai

        monai_dice = _quiet(
            monai.DiceLoss, to_onehot_y=True, softmax=True, smooth_nr=SMOOTH, smooth_dr=SMOOTH
        )
        out["monai"] = lambda x, y, **_: monai_dice(x, y.unsqueeze(1))
    except ImportError:
        pass
    try:
        import kornia.losses as kornia

        out["kornia (macro)"] = lambda x, y, **_: kornia.dice_loss(
            x, y, average="macro", eps=SMOOTH
        )
    except ImportError:
        pass
    return out


def _contenders_dice_batch() -> dict:
    out = {"funcloss": lambda x, y, **kw: funcloss.dice_loss(x, y, batch=True, **kw)}
    smp = _smp_module("dice") if importlib.util.find_spec("segmentation_models_pytorch") else None
    if smp is not None:
        smp_dice = smp.DiceLoss("multiclass", smooth=SMOOTH / 2)
        out["smp"] = lambda x, y, **_: smp_dice(x, y)
    return out


def _contenders_tversky() -> dict:
    kwargs = {"alpha": 0.3, "beta": 0.7}
    out = {"funcloss": lambda x, y, **kw: funcloss.tversky_loss(x, y, **kwargs, **kw)}
    try:
        import monai.losses as monai

        monai_tversky = _quiet(
            monai.TverskyLoss,
            to_onehot_y=True,
            softmax=True,
            smooth_nr=SMOOTH / 2,
            smooth_dr=SMOOTH / 2,
            **kwargs,
        )
        out["monai"] = lambda x, y, **_: monai_tversky(x, y.unsqueeze(1))
    except ImportError:
        pass
    try:
        import kornia.losses as kornia

        out["kornia"] = lambda x, y, **_: kornia.tversky_loss(x, y, 0.3, 0.7, eps=SMOOTH / 2)
    except ImportError:
        pass
    return out


def _contenders_jaccard_batch() -> dict:
    out = {"funcloss": lambda x, y, **kw: funcloss.jaccard_loss(x, y, batch=True, **kw)}
    smp = (
        _smp_module("jaccard") if importlib.util.find_spec("segmentation_models_pytorch") else None
    )
    if smp is not None:
        smp_jaccard = smp.JaccardLoss("multiclass", smooth=SMOOTH / 2)
        out["smp"] = lambda x, y, **_: smp_jaccard(x, y)
    return out


def _contenders_generalized_dice() -> dict:
    out = {"funcloss": funcloss.generalized_dice_loss}
    try:
        import monai.losses as monai

        monai_gdl = _quiet(
            monai.GeneralizedDiceLoss,
            to_onehot_y=True,
            softmax=True,
            smooth_nr=SMOOTH,
            smooth_dr=SMOOTH,
        )
        out["monai"] = lambda x, y, **_: monai_gdl(x, y.unsqueeze(1))
    except ImportError:
        pass
    return out


def _make_binary(quick: bool, generator: torch.Generator):
    n, side = (2, 8) if quick else (8, 128)
    x = torch.randn(n, side, side, generator=generator)
    y = torch.randint(0, 2, (n, side, side), generator=generator)
    return (x, y), {}


def _make_lovasz_softmax(quick: bool, generator: torch.Generator):
    (x, y), _ = _make(quick, generator)
    return (x, y), {}


def _make_mcc_binary(quick: bool, generator: torch.Generator):
    n, side = (2, 8) if quick else (8, 128)
    p = torch.rand(n, 1, side, side, generator=generator)
    y = (torch.rand(n, 1, side, side, generator=generator) < 0.3).float()
    return (p, y), {}


def _smp_lovasz():
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        return None
    return _smp_module("lovasz")


def _contenders_lovasz_hinge() -> dict:
    out = {"funcloss": funcloss.lovasz_hinge_loss}
    smp = _smp_lovasz()
    if smp is not None:
        out["smp"] = smp.LovaszLoss("binary", per_image=True)
    return out


def _contenders_lovasz_softmax() -> dict:
    out = {"funcloss": funcloss.lovasz_softmax_loss}
    smp = _smp_lovasz()
    if smp is not None:
        out["smp"] = smp.LovaszLoss("multiclass", per_image=False)
    return out


def _contenders_mcc() -> dict:
    """One binary channel of probabilities pooled over the batch: smp's MCCLoss (eps=0, the
    same loss; its default eps moves the value by about 1e-5)."""
    out = {"funcloss": lambda p, y, **_: funcloss.mcc_loss(p, y, activation=None, batch=True)}
    if importlib.util.find_spec("segmentation_models_pytorch") is not None:
        smp = _smp_module("mcc")
        if smp is not None:
            out["smp"] = smp.MCCLoss(eps=0.0)
    return out


SIZE = "N=8, C=4, 128x128"
BENCHES = [
    Bench("dice_loss", SIZE, _make, _contenders_dice()),
    Bench("dice_loss", SIZE, _make, _contenders_dice_batch(), label="(batch)"),
    Bench("tversky_loss", SIZE, _make, _contenders_tversky()),
    Bench("jaccard_loss", SIZE, _make, _contenders_jaccard_batch(), label="(batch)"),
    Bench("generalized_dice_loss", SIZE, _make, _contenders_generalized_dice()),
    Bench("lovasz_hinge_loss", "N=8, 128x128", _make_binary, _contenders_lovasz_hinge()),
    Bench("lovasz_softmax_loss", SIZE, _make_lovasz_softmax, _contenders_lovasz_softmax()),
    Bench("mcc_loss", "N=8, C=1, 128x128", _make_mcc_binary, _contenders_mcc(), label="(binary)"),
]
