"""Benchmark cases for the metric and contrastive losses (funcloss/_contrastive.py), against
pytorch-metric-learning where it runs, at issue 12's size: N=512 embeddings of D=128 (and
cosine logits over C=1000 classes for ArcFace/CosFace)."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from catalogue import Bench

import funcloss

try:
    from pytorch_metric_learning import losses as pml
    from pytorch_metric_learning import miners as pml_miners
except ImportError:  # the anchor is optional here
    pml = pml_miners = None


def _embeddings(quick: bool, generator: torch.Generator):
    n, d = (16, 8) if quick else (512, 128)
    x = torch.randn(n, d, generator=generator)
    labels = torch.randint(0, n // 4, (n,), generator=generator)  # ~4 samples per group
    return x, labels


def _batch(temperature: float):
    def make(quick: bool, generator: torch.Generator):
        x, labels = _embeddings(quick, generator)
        return (x, labels), {"temperature": temperature}

    return make


def _pairs(quick: bool, generator: torch.Generator):
    x, _ = _embeddings(quick, generator)
    return (x, x + 0.3 * torch.randn(x.shape, generator=generator)), {"temperature": 0.1}


def _cosines(quick: bool, generator: torch.Generator):
    n, c = (16, 10) if quick else (512, 1000)
    cosine = torch.rand(n, c, generator=generator) * 2 - 1
    return (cosine, torch.randint(0, c, (n,), generator=generator)), {}


def _pml_batch(name: str):
    def run(embeddings, labels, temperature):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return getattr(pml, name)(temperature=temperature)(embeddings, labels)

    return run


def _pml_margin(name: str):
    """PML's ArcFace/CosFace on given cosines (its weight matrix bypassed)."""

    def run(input, target):
        c = input.shape[1]
        if name == "ArcFaceLoss":
            loss = pml.ArcFaceLoss(c, c, margin=math.degrees(0.5), scale=64.0)
        else:
            loss = pml.CosFaceLoss(c, c, margin=0.35, scale=64.0)
        loss.get_cosine = lambda embeddings: embeddings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return loss(input, target)

    return run


def _embedding_batch(**config):
    def make(quick: bool, generator: torch.Generator):
        x, labels = _embeddings(quick, generator)
        return (x, labels), dict(config)

    return make


def _pml_pair(name: str):
    """PML's pair or triplet loss configured by funcloss's keywords (``mining="hard"``: its
    ``BatchHardMiner``)."""

    def run(embeddings, labels, **config):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mining = config.pop("mining", "all")
            loss = getattr(pml, name)(**config)
            if mining == "all":
                return loss(embeddings, labels)
            return loss(embeddings, labels, pml_miners.BatchHardMiner()(embeddings, labels))

    return run


def _naive_info_nce(query, positive_key, temperature):
    """In-batch InfoNCE as usually written: cross-entropy of normalised logits."""
    q, k = F.normalize(query, dim=-1), F.normalize(positive_key, dim=-1)
    logits = q @ k.T / temperature
    return F.cross_entropy(logits, torch.arange(len(q)))


def _with_pml(contenders: dict, name: str, anchor) -> dict:
    if pml is not None:
        contenders["pytorch-metric-learning"] = anchor(name)
    return contenders


SIZE = "N=512, D=128"
BENCHES = [
    Bench(
        "supcon_loss",
        SIZE,
        _batch(0.1),
        _with_pml({"funcloss": funcloss.supcon_loss}, "SupConLoss", _pml_batch),
    ),
    Bench(
        "ntxent_loss",
        SIZE,
        _batch(0.07),
        _with_pml({"funcloss": funcloss.ntxent_loss}, "NTXentLoss", _pml_batch),
    ),
    Bench(
        "info_nce_loss",
        SIZE,
        _pairs,
        {"funcloss": funcloss.info_nce_loss, "naive torch": _naive_info_nce},
    ),
    Bench(
        "arcface_loss",
        "N=512, C=1000",
        _cosines,
        _with_pml({"funcloss": funcloss.arcface_loss}, "ArcFaceLoss", _pml_margin),
    ),
    Bench(
        "cosface_loss",
        "N=512, C=1000",
        _cosines,
        _with_pml({"funcloss": funcloss.cosface_loss}, "CosFaceLoss", _pml_margin),
    ),
    Bench(
        "contrastive_loss",
        SIZE,
        _embedding_batch(),
        _with_pml({"funcloss": funcloss.contrastive_loss}, "ContrastiveLoss", _pml_pair),
    ),
    Bench(
        "batch_triplet_loss",
        SIZE,
        _embedding_batch(),
        _with_pml({"funcloss": funcloss.batch_triplet_loss}, "TripletMarginLoss", _pml_pair),
    ),
    Bench(
        "batch_triplet_loss",
        SIZE + ", mining=hard",
        _embedding_batch(mining="hard"),
        _with_pml({"funcloss": funcloss.batch_triplet_loss}, "TripletMarginLoss", _pml_pair),
    ),
    Bench(
        "multi_similarity_loss",
        SIZE,
        _embedding_batch(),
        _with_pml({"funcloss": funcloss.multi_similarity_loss}, "MultiSimilarityLoss", _pml_pair),
    ),
    Bench(
        "circle_loss",
        SIZE,
        _embedding_batch(),
        _with_pml({"funcloss": funcloss.circle_loss}, "CircleLoss", _pml_pair),
    ),
]
