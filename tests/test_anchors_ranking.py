"""The ranking losses against rax 0.4.0 (JAX on CPU, float64): values and gradients on generated
lists with item masks and per-item weights, and the rax defects the README names.

Adapters: rax's ``where`` is funcloss's item mask; ``weights`` is ``weight``; ``reduce_fn`` is
``jnp.mean`` / ``jnp.sum`` for ``"mean"`` / ``"sum"`` (rax's pairwise mean is over the valid
pairs of the batch, as funcloss's). rax's ``pairwise_hinge_loss`` has margin 1.
``rax.approx_t12n`` does not run on the installed JAX (below), so ApproxNDCG is compared with
what it builds: ``-ndcg_metric`` with ``approx_ranks`` and ``approx_cutoff`` at
``sigmoid(x / temperature)``.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcloss

from .anchors import anchor, jax64
from .helpers import assert_close


def _rax():
    jax = jax64()
    return jax, anchor("jax.numpy"), anchor("rax")


def _approx_ndcg(jax, rax, temperature: float):
    def step(x):
        return jax.nn.sigmoid(x / temperature)

    ranks = functools.partial(rax.utils.approx_ranks, step_fn=step)
    cutoff = functools.partial(rax.utils.approx_cutoff, step_fn=step)

    def loss(scores, labels, **kwargs):
        return -rax.ndcg_metric(scores, labels, rank_fn=ranks, cutoff_fn=cutoff, **kwargs)

    return loss


def _pairs(jax, jnp, rax, name: str, temperature: float):
    if name == "approx_ndcg_loss":
        return _approx_ndcg(jax, rax, temperature), {"temperature": temperature}
    rax_names = {
        "ranking_softmax_loss": "softmax_loss",
        "pairwise_logistic_loss": "pairwise_logistic_loss",
        "pairwise_hinge_loss": "pairwise_hinge_loss",
        "listmle_loss": "listmle_loss",
    }
    return getattr(rax, rax_names[name]), {}


NAMES = [
    "ranking_softmax_loss",
    "pairwise_logistic_loss",
    "pairwise_hinge_loss",
    "listmle_loss",
    "approx_ndcg_loss",
]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    share=st.sampled_from([0.5, 0.8, 1.0]),
    weighted=st.booleans(),
    temperature=st.sampled_from([1.0, 0.3]),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_values_and_gradients_equal_rax(name, seed, share, weighted, temperature, reduction):
    jax, jnp, rax = _rax()
    theirs, config = _pairs(jax, jnp, rax, name, temperature)
    generator = np.random.default_rng(seed)
    shape = (4, 6)
    s = generator.normal(size=shape) * 2
    y = generator.integers(0, 4, size=shape).astype(np.float64)
    where = generator.random(shape) < share
    where[0] = False  # an all-masked list
    w = generator.uniform(0.5, 2.0, size=shape)
    weighted = weighted and name != "listmle_loss"
    rax_kwargs = {"where": jnp.asarray(where)}
    ours_kwargs = {"where": torch.tensor(where), **config}
    if weighted:
        rax_kwargs["weights"] = jnp.asarray(w)
        ours_kwargs["weight"] = torch.tensor(w)
    reduce_fn = jnp.mean if reduction == "mean" else jnp.sum

    def rax_loss(scores):
        return theirs(scores, jnp.asarray(y), reduce_fn=reduce_fn, **rax_kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(rax_loss(jnp.asarray(s)))
        gradient = np.asarray(jax.grad(rax_loss)(jnp.asarray(s)))
    x = torch.tensor(s, requires_grad=True)
    ours = getattr(funcloss, name)(x, torch.tensor(y), reduction=reduction, **ours_kwargs)
    (ours_grad,) = torch.autograd.grad(ours, x)
    assert_close(ours, torch.tensor(value, dtype=torch.float64), f"{name} value vs rax")
    assert_close(ours_grad, torch.tensor(gradient), f"{name} gradient vs rax")


def test_rax_listmle_tie_order_is_funclosss() -> None:
    jax, jnp, rax = _rax()
    s = np.array([[0.0, 2.0, -1.0, 0.5], [1.0, -1.0, 3.0, 0.0]])
    y = np.array([[1.0, 1.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(jax.vmap(rax.listmle_loss)(jnp.asarray(s), jnp.asarray(y)))
    ours = funcloss.listmle_loss(torch.tensor(s), torch.tensor(y), reduction="none")
    assert_close(ours, torch.tensor(theirs))


def test_rax_approx_t12n_fails_on_the_installed_jax() -> None:
    # rax 0.4.0's approx_t12n decorates with `jax.util.wraps`, which current JAX removed
    _, _, rax = _rax()
    with pytest.raises(AttributeError, match="util"):
        rax.approx_t12n(rax.ndcg_metric)
    value = funcloss.approx_ndcg_loss(torch.tensor([0.0, 1, 3, 2]), torch.tensor([0.0, 0, 1, 2]))
    assert torch.isfinite(value)


def test_rax_pairwise_logistic_gradient_is_nan_with_nan_in_a_masked_item() -> None:
    # rax computes every pair's loss before masking: a NaN score in a masked item poisons the
    # gradient of its whole list; funcloss masks the scores first
    jax, jnp, rax = _rax()
    s = np.array([[0.3, -1.0, math.nan]])
    y = np.array([[0.0, 1.0, 0.0]])
    where = np.array([[True, True, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.asarray(
            jax.grad(
                lambda a: rax.pairwise_logistic_loss(a, jnp.asarray(y), where=jnp.asarray(where))
            )(jnp.asarray(s))
        )
    assert np.isnan(theirs).any()
    x = torch.tensor(s, requires_grad=True)
    loss = funcloss.pairwise_logistic_loss(x, torch.tensor(y), where=torch.tensor(where))
    (ours,) = torch.autograd.grad(loss, x)
    assert torch.isfinite(ours).all()
    assert ours[0, 2] == 0


def test_torch_logcumsumexp_forward_mode_is_wrong_where_listmle_is_right() -> None:
    # the reason listmle_loss has its own cumulative log-sum-exp (funcloss/_ranking.py)
    from torch.func import jacfwd, jacrev

    x = torch.tensor([-40.0, -45.0, 10.0], dtype=torch.float64)
    torch_jvp = jacfwd(lambda a: torch.logcumsumexp(a, -1))(x)
    assert torch_jvp[0, 0] < 1e-8  # the truth is 1
    y = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    assert_close(
        jacfwd(lambda a: funcloss.listmle_loss(a, y))(x),
        jacrev(lambda a: funcloss.listmle_loss(a, y))(x),
    )
