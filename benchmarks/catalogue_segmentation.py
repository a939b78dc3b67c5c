"""Segmentation overlap losses at N=8, C=4, 128x128 against MONAI, kornia and smp (by path).

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


SIZE = "N=8, C=4, 128x128"
BENCHES = [
    Bench("dice_loss", SIZE, _make, _contenders_dice()),
    Bench("dice_loss", SIZE, _make, _contenders_dice_batch(), label="(batch)"),
    Bench("tversky_loss", SIZE, _make, _contenders_tversky()),
    Bench("jaccard_loss", SIZE, _make, _contenders_jaccard_batch(), label="(batch)"),
    Bench("generalized_dice_loss", SIZE, _make, _contenders_generalized_dice()),
]
