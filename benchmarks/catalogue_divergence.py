"""Catalogue benchmarks of the divergences (funcloss/_divergence.py): N=4096 distributions over
C=1000 classes, float32, forward + backward in the input, reduction "batchmean". No anchor runs
in torch (optax's are JAX): the contender is the naive torch composition (``torch.xlogy`` terms,
whose gradient is nan at a zero probability in the differentiated argument)."""

from __future__ import annotations

import torch
from catalogue import Bench

import funcloss

SIZE = "N=4096, C=1000"


def _distributions(quick: bool, generator: torch.Generator, log_input: bool):
    n, c = (8, 5) if quick else (4096, 1000)
    z = torch.randn(n, c, generator=generator) * 2
    p = torch.softmax(torch.randn(n, c, generator=generator) * 2, -1)
    x = torch.log_softmax(z, -1) if log_input else torch.softmax(z, -1)
    return (x, p), {"log_input": log_input}


def _naive_js(input, target, log_input=False):
    q = input.exp() if log_input else input
    m = (target + q) / 2
    loss = 0.5 * (torch.xlogy(target, target / m) + torch.xlogy(q, q / m))
    return loss.sum() / input.shape[0]


def _naive_generalized_kl(input, target, log_input=True):
    loss = torch.xlogy(target, target) - target * input - target + input.exp()
    return loss.sum() / input.shape[0]


BENCHES = [
    Bench(
        "js_div",
        SIZE,
        lambda quick, generator: _distributions(quick, generator, False),
        {"funcloss": funcloss.js_div, "naive torch": _naive_js},
        label="-probabilities",
    ),
    Bench(
        "js_div",
        SIZE,
        lambda quick, generator: _distributions(quick, generator, True),
        {"funcloss": funcloss.js_div, "naive torch": _naive_js},
        label="-log-input",
    ),
    Bench(
        "generalized_kl_div",
        SIZE,
        lambda quick, generator: _distributions(quick, generator, True),
        {"funcloss": funcloss.generalized_kl_div, "naive torch": _naive_generalized_kl},
    ),
]
