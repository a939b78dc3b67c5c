"""Benchmark cases of the ranking losses: 1024 lists of 100 items, graded relevance 0..4, a
fifth of the items masked.

rax runs in JAX only (not timed here: its timings are not comparable in-process), so each
contender is a naive torch composition of the loss as people write it by hand: ``-inf`` masking
and ``log_softmax``, the full pair matrix with a boolean pair mask, ``logcumsumexp`` over the
relevance order, sigmoid ranks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from catalogue import Bench, Inputs

import funcloss


def _lists(quick: bool, generator: torch.Generator) -> Inputs:
    n, length = (8, 10) if quick else (1024, 100)
    x = torch.randn(n, length, generator=generator)
    y = torch.randint(0, 5, (n, length), generator=generator).float()
    where = torch.rand(n, length, generator=generator) < 0.8
    return (x, y), {"where": where}


def _naive_softmax(x, y, where):
    log_p = torch.log_softmax(x.masked_fill(~where, -math.inf), -1)
    per_list = -(torch.where(where, y * log_p, 0.0)).sum(-1)
    valid = where.any(-1)
    return per_list.sum() / valid.sum()


def _naive_pairs(x, y, where):
    valid = (y[:, :, None] > y[:, None, :]) & where[:, :, None] & where[:, None, :]
    return x[:, :, None] - x[:, None, :], valid


def _naive_logistic(x, y, where):
    difference, valid = _naive_pairs(x, y, where)
    return (F.softplus(-difference) * valid).sum() / valid.sum()


def _naive_hinge(x, y, where):
    difference, valid = _naive_pairs(x, y, where)
    return (torch.relu(1.0 - difference) * valid).sum() / valid.sum()


def _naive_listmle(x, y, where):
    order = torch.sort(y.masked_fill(~where, -1.0), dim=-1, descending=True, stable=True).indices
    s = x.masked_fill(~where, -math.inf).gather(-1, order)
    keep = where.gather(-1, order)
    tail = torch.logcumsumexp(s.flip(-1), -1).flip(-1)
    per_list = torch.where(keep, tail - s, 0.0).sum(-1)
    return per_list.sum() / where.any(-1).sum()


def _naive_approx_ndcg(x, y, where):
    gains = torch.where(where, 2**y - 1, 0.0)
    pairs = where[:, :, None] & where[:, None, :]
    pairs = pairs & ~torch.eye(x.shape[-1], dtype=torch.bool)
    steps = torch.sigmoid(x[:, None, :] - x[:, :, None])
    ranks = 1 + (steps * pairs).sum(-1)
    dcg = (gains / torch.log2(1 + ranks)).sum(-1)
    positions = torch.arange(2, x.shape[-1] + 2, dtype=x.dtype)
    ideal = (gains.sort(-1, descending=True).values / torch.log2(positions)).sum(-1)
    ndcg = dcg / torch.where(ideal == 0, 1.0, ideal)
    return -ndcg.sum() / where.any(-1).sum()


def _bench(name: str, naive) -> Bench:
    return Bench(
        name,
        "1024 lists x 100",
        _lists,
        {"funcloss": getattr(funcloss, name), "naive torch": naive},
    )


BENCHES = [
    _bench("ranking_softmax_loss", _naive_softmax),
    _bench("pairwise_logistic_loss", _naive_logistic),
    _bench("pairwise_hinge_loss", _naive_hinge),
    _bench("listmle_loss", _naive_listmle),
    _bench("approx_ndcg_loss", _naive_approx_ndcg),
]
