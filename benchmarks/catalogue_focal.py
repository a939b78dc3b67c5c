"""Benchmark cases for the focal family (benchmarks/catalogue.py runs them): N=4096, C=1000,
forward + backward, against the anchors that run here (torchvision and timm loaded by path,
kornia, MONAI), adapted to funcloss's call signature."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch
from catalogue import Bench

import funcloss

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load(package: str, relative: str):
    try:
        from tests.anchors import load_file

        return load_file(package, relative)
    except Exception:  # the anchor is not installed (or pytest is missing): leave it out
        return None


def _multi_label(quick: bool, generator: torch.Generator):
    n, c = (8, 10) if quick else (4096, 1000)
    x = torch.randn(n, c, generator=generator) * 3
    t = (torch.rand(n, c, generator=generator) < 0.1).float()
    return (x, t), {}


def _classes(quick: bool, generator: torch.Generator):
    n, c = (8, 10) if quick else (4096, 1000)
    x = torch.randn(n, c, generator=generator) * 3
    return (x, torch.randint(0, c, (n,), generator=generator)), {}


BENCHES: list[Bench] = []

# -- sigmoid_focal_loss (reduction="mean") -----------------------------------------------------

_contenders = {"funcloss": lambda x, t: funcloss.sigmoid_focal_loss(x, t, reduction="mean")}
_torchvision = _load("torchvision", "ops/focal_loss.py")
if _torchvision is not None:
    _contenders["torchvision"] = lambda x, t: _torchvision.sigmoid_focal_loss(
        x, t, reduction="mean"
    )
try:
    import kornia

    def _kornia_binary(x, t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return kornia.losses.binary_focal_loss_with_logits(
                x, t, alpha=0.25, gamma=2.0, reduction="mean"
            )

    _contenders["kornia"] = _kornia_binary
except ImportError:
    kornia = None
BENCHES.append(Bench("sigmoid_focal_loss", "N=4096, C=1000", _multi_label, _contenders))

# -- focal_loss ----------------------------------------------------------------------------------

_contenders = {"funcloss": lambda x, y: funcloss.focal_loss(x, y)}
if kornia is not None:

    def _kornia_focal(x, y):  # kornia's "mean" divides by N * C
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return kornia.losses.focal_loss(x, y, alpha=None, gamma=2.0, reduction="sum") / len(y)

    _contenders["kornia"] = _kornia_focal
try:
    import monai

    # reduction="none" (the class dimension kept), summed here: MONAI's "sum" first averages
    # over the spatial dimensions, and with none (N, C inputs) its `mean(dim=[])` averages over
    # everything, so "sum" / N is the mean over N * C elements (tests/test_anchors_focal.py)
    _monai_loss = monai.losses.FocalLoss(
        use_softmax=True, gamma=2.0, to_onehot_y=True, reduction="none"
    )
    _contenders["monai"] = lambda x, y: _monai_loss(x, y[:, None]).sum() / len(y)
except ImportError:
    pass


def _naive_focal(x, y):
    log_p = torch.log_softmax(x, 1).gather(1, y[:, None])
    return (-((1 - log_p.exp()) ** 2) * log_p).mean()


_contenders["naive torch"] = _naive_focal
BENCHES.append(Bench("focal_loss", "N=4096, C=1000", _classes, _contenders))

# -- poly1_cross_entropy ---------------------------------------------------------------------


def _naive_poly1(x, y):
    ce = torch.nn.functional.cross_entropy(x, y, reduction="none")
    return (ce + (1 - torch.softmax(x, 1).gather(1, y[:, None])[:, 0])).mean()


_contenders = {"funcloss": lambda x, y: funcloss.poly1_cross_entropy(x, y)}
_timm_poly = _load("timm", "loss/poly_loss.py")
if _timm_poly is not None:
    _contenders["timm"] = _timm_poly.PolyCrossEntropy(epsilon=1.0)
_contenders["naive torch"] = _naive_poly1
BENCHES.append(Bench("poly1_cross_entropy", "N=4096, C=1000", _classes, _contenders))

# -- asymmetric_loss (reduction="mean") --------------------------------------------------------


def _naive_asymmetric(x, t, gamma_pos=0.0, gamma_neg=4.0, clip=0.05):
    # the paper's formula on probabilities (Ridnik et al. 2021, eq. 4), as people write it
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp_min(0)
    positive = t * (1 - p) ** gamma_pos * torch.log(p)
    negative = (1 - t) * p_m**gamma_neg * torch.log(1 - p_m)
    return -(positive + negative).mean()


_contenders = {"funcloss": lambda x, t: funcloss.asymmetric_loss(x, t)}
_timm_asl = _load("timm", "loss/asymmetric_loss.py")
if _timm_asl is not None:
    _contenders["timm"] = _timm_asl.AsymmetricLossMultiLabel(
        gamma_neg=4.0, gamma_pos=0.0, clip=0.05, reduction="mean"
    )
_contenders["naive torch"] = _naive_asymmetric
BENCHES.append(Bench("asymmetric_loss", "N=4096, C=1000", _multi_label, _contenders))
