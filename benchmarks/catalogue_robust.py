"""Catalogue benchmarks of the robust regression losses (funcloss/_robust.py): elementwise
losses at N=4096, C=1000, float32, forward + backward; against kornia where it has the loss
and a naive torch composition otherwise (both bandwidth-bound: compare passes)."""

from __future__ import annotations

import warnings

import torch
from catalogue import Bench

import funcloss

SIZE = "N=4096, C=1000"


def _pair(quick: bool, generator: torch.Generator, alpha: float | None = None):
    n, c = (8, 5) if quick else (4096, 1000)
    x = torch.randn(n, c, generator=generator) * 2
    y = torch.randn(n, c, generator=generator)
    return ((x, y) if alpha is None else (x, y, alpha)), {}


def _naive_log_cosh(input, target, reduction="mean"):
    return torch.log(torch.cosh(input - target)).mean()


def _naive_barron(input, target, alpha, scale=1.0, reduction="mean"):
    b = abs(alpha - 2)
    z = ((input - target) / scale) ** 2
    return (b / alpha * ((z / b + 1) ** (alpha / 2) - 1)).mean()


def _naive_quantile(input, target, quantile=0.5, reduction="mean"):
    e = target - input
    return torch.maximum(quantile * e, (quantile - 1) * e).mean()


def _naive_cosine(input, target, dim=-1, eps=1e-8, reduction="mean"):
    return (1 - torch.nn.functional.cosine_similarity(input, target, dim=dim, eps=eps)).mean()


BENCHES = [
    Bench(
        "log_cosh_loss",
        SIZE,
        _pair,
        {"funcloss": funcloss.log_cosh_loss, "naive torch": _naive_log_cosh},
    ),
    Bench(
        "general_robust_loss",
        SIZE,
        lambda quick, generator: _pair(quick, generator, 1.5),
        {"funcloss": funcloss.general_robust_loss, "naive torch": _naive_barron},
        label="-alpha-1.5",
    ),
    Bench(
        "quantile_loss",
        SIZE,
        lambda quick, generator: (_pair(quick, generator)[0], {"quantile": 0.9}),
        {"funcloss": funcloss.quantile_loss, "naive torch": _naive_quantile},
    ),
    Bench(
        "cosine_distance_loss",
        SIZE,
        _pair,
        {"funcloss": funcloss.cosine_distance_loss, "naive torch": _naive_cosine},
    ),
]

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import kornia.losses as _kornia

    def _kornia_loss(name: str):
        def call(input, target):
            return getattr(_kornia, name)(input, target, reduction="mean")

        return call

    for _name in ("charbonnier_loss", "cauchy_loss", "geman_mcclure_loss", "welsch_loss"):
        BENCHES.append(
            Bench(
                _name,
                SIZE,
                _pair,
                {"funcloss": getattr(funcloss, _name), "kornia": _kornia_loss(_name)},
            )
        )
except ImportError:
    pass
