"""The metric and contrastive losses against their anchors: pytorch-metric-learning 2.9 (torch)
and optax 0.2.8 (JAX, float64), with the convention adapters each needs; and the anchors'
defects that issue 12 names, reproduced (each test asserts the anchor's failure and
funcloss's success, so the README's claims are measured).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.func import jacfwd, vmap

import funcloss

from .anchors import anchor, jax64
from .helpers import assert_close

f64 = torch.float64


def _pml():
    return anchor("pytorch_metric_learning.losses")


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def _batch(n: int = 12, d: int = 5, groups: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=f64)
    return x, torch.randint(0, groups, (n,), generator=generator)


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_supcon_matches_pml(seed: int, temperature: float) -> None:
    x, labels = _batch(seed=seed)
    theirs = _quiet(_pml().SupConLoss(temperature=temperature), x, labels)
    # PML averages the non-zero anchor losses; every anchor here has a positive and a negative
    # (no anchor's loss is 0), so its mean is funcloss's
    ours = funcloss.supcon_loss(x, labels, temperature)
    assert_close(ours, theirs.to(f64))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent_matches_pml_and_optax(seed: int, temperature: float) -> None:
    x, labels = _batch(seed=seed)
    theirs = _quiet(_pml().NTXentLoss(temperature=temperature), x, labels)
    ours = funcloss.ntxent_loss(x, labels, temperature)
    assert_close(ours, theirs.to(f64))
    jax64()
    optax = anchor("optax")
    expected = float(optax.losses.ntxent(x.numpy(), labels.numpy(), temperature))
    assert_close(ours, torch.tensor(expected, dtype=f64))


def test_ntxent_gradient_matches_optax() -> None:
    jax = jax64()
    optax = anchor("optax")
    x, labels = _batch(seed=3)
    expected = jax.grad(lambda e: optax.losses.ntxent(e, labels.numpy(), 0.2))(x.numpy())
    ours = torch.func.grad(lambda e: funcloss.ntxent_loss(e, labels, 0.2))(x)
    assert_close(ours, torch.from_numpy(np.array(expected)))


# -- the anchors' defects --------------------------------------------------------------------


def test_optax_ntxent_is_nan_without_a_positive_pair() -> None:
    jax64()
    optax = anchor("optax")
    x, _ = _batch(6)
    labels = torch.arange(6)
    assert np.isnan(float(optax.losses.ntxent(x.numpy(), labels.numpy())))  # 0 / 0
    assert _quiet(_pml().NTXentLoss(), x, labels) == 0  # PML: 0
    assert funcloss.ntxent_loss(x, labels) == 0


PML_PAIR_LOSSES = {
    "supcon_loss": ("SupConLoss", {}),
    "ntxent_loss": ("NTXentLoss", {}),
}


def _pml_loss(name: str):
    cls, config = PML_PAIR_LOSSES[name]
    return getattr(_pml(), cls)(**config)


@pytest.mark.parametrize("name", ["supcon_loss"])
def test_pml_fails_vmap_over_an_ensemble_funcloss_does_not(name: str) -> None:
    x, labels = _batch()
    ensemble = torch.stack([x, x.flip(-1), -x])
    loss = _pml_loss(name)
    with pytest.raises(RuntimeError, match="vmap"):
        _quiet(vmap(lambda e: loss(e, labels)), ensemble)
    ours = vmap(lambda e: getattr(funcloss, name)(e, labels))(ensemble)
    assert_close(ours, torch.stack([getattr(funcloss, name)(e, labels) for e in ensemble]))


@pytest.mark.parametrize("name", ["supcon_loss", "ntxent_loss"])
def test_pml_fails_fullgraph_compile_funcloss_does_not(name: str) -> None:
    x, labels = _batch()
    loss = _pml_loss(name)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"data-dependent|data dependent"):
        _quiet(torch.compile(lambda e: loss(e, labels), fullgraph=True, backend="eager"), x)
    torch._dynamo.reset()
    ours = torch.compile(
        lambda e: getattr(funcloss, name)(e, labels), fullgraph=True, backend="eager"
    )(x)
    assert_close(ours, getattr(funcloss, name)(x, labels))
    assert torch.isfinite(jacfwd(lambda e: getattr(funcloss, name)(e, labels))(x)).all()


# -- ArcFace / CosFace -----------------------------------------------------------------------


def _pml_on_cosines(name: str, num_classes: int, margin: float, scale: float):
    """PML's margin loss with its weight matrix bypassed: ``get_cosine`` returns the input, so
    its own margin, scaling and cross-entropy run on given cosines (ArcFace's margin in
    degrees)."""
    losses = _pml()
    if name == "arcface":
        loss = losses.ArcFaceLoss(num_classes, num_classes, margin=np.degrees(margin), scale=scale)
    else:
        loss = losses.CosFaceLoss(num_classes, num_classes, margin=margin, scale=scale)
    loss.get_cosine = lambda embeddings: embeddings
    return loss


def _cosines(n: int = 10, c: int = 5, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    cosine = torch.rand(n, c, generator=generator, dtype=f64) * 1.9 - 0.95
    return cosine, torch.randint(0, c, (n,), generator=generator)


@pytest.mark.parametrize("name", ["arcface", "cosface"])
@pytest.mark.parametrize(("margin", "scale"), [(0.5, 64.0), (0.2, 30.0), (1.2, 8.0)])
def test_margin_losses_match_pml_on_given_cosines(name: str, margin: float, scale: float) -> None:
    cosine, target = _cosines()
    cosine[0, target[0]] = -0.9  # theta + m > pi for the larger margins: the fallback branch
    theirs = _quiet(_pml_on_cosines(name, 5, margin, scale), cosine, target)
    ours = getattr(funcloss, f"{name}_loss")(cosine, target, margin, scale)
    assert_close(ours, theirs)
    grads = []
    for fn in (
        lambda x: _pml_on_cosines(name, 5, margin, scale)(x, target),
        lambda x: getattr(funcloss, f"{name}_loss")(x, target, margin, scale),
    ):
        x = cosine.clone().requires_grad_()
        grads.append(torch.autograd.grad(_quiet(fn, x), x)[0])
    assert_close(grads[1], grads[0])


def test_pml_arcface_gradient_is_not_finite_at_cos_one_funcloss_is() -> None:
    cosine, target = _cosines()
    cosine[0, target[0]] = 1.0  # a sample on its class centre
    cosine[1, target[1]] = -1.0  # and one opposite it
    x = cosine.clone().requires_grad_()
    (theirs,) = torch.autograd.grad(_quiet(_pml_on_cosines("arcface", 5, 0.5, 64.0), x, target), x)
    # acos' is -inf at 1 and at -1: NaN or inf, depending on the other factors
    assert not torch.isfinite(theirs[0, target[0]])
    assert not torch.isfinite(theirs[1, target[1]])
    ours = [
        transform(lambda z: funcloss.arcface_loss(z, target))(cosine)
        for transform in (torch.func.grad, jacfwd)
    ]
    hessian = torch.func.hessian(lambda z: funcloss.arcface_loss(z, target))(cosine)
    for value in (*ours, hessian):
        assert torch.isfinite(value).all()
    assert_close(ours[0], ours[1])
