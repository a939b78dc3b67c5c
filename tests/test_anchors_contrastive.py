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


# -- pair and triplet losses (contrastive, triplet, multi-similarity, circle) ----------------


def _pml_pair_loss(name: str, **config):
    """PML's loss for funcloss's ``name``, configured as funcloss's ``config``; a callable of
    ``(embeddings, labels)``."""
    losses = _pml()
    if name == "contrastive_loss":
        return losses.ContrastiveLoss(**config)
    if name == "batch_triplet_loss":
        mining = config.pop("mining", "all")
        loss = losses.TripletMarginLoss(**config)
        if mining == "all":
            return loss
        miner = anchor("pytorch_metric_learning.miners").BatchHardMiner()
        return lambda e, y: loss(e, y, miner(e, y))
    if name == "multi_similarity_loss":
        return losses.MultiSimilarityLoss(**config)
    return losses.CircleLoss(**config)


PAIR_CONFIGS = [
    ("contrastive_loss", {}),
    ("contrastive_loss", {"pos_margin": 0.3, "neg_margin": 1.2}),
    ("batch_triplet_loss", {}),
    ("batch_triplet_loss", {"margin": 0.5}),
    ("batch_triplet_loss", {"margin": 0.2, "mining": "hard"}),
    ("multi_similarity_loss", {}),
    ("multi_similarity_loss", {"alpha": 1.0, "beta": 20.0, "base": 0.2}),
    ("circle_loss", {}),
    ("circle_loss", {"m": 0.25, "gamma": 32.0}),
]
PAIR_PARAMS = [
    pytest.param(name, config, id=f"{name}-{i}") for i, (name, config) in enumerate(PAIR_CONFIGS)
]


@pytest.mark.parametrize(("name", "config"), PAIR_PARAMS)
@pytest.mark.parametrize("seed", range(2))
def test_pair_losses_match_pml_values_and_gradients(name: str, config: dict, seed: int) -> None:
    # 16 samples of 4 groups: every anchor has a positive and a negative (the conventions
    # where funcloss departs from PML, a batch without pairs, do not arise)
    x, labels = _batch(16, 5, 4, seed=seed)
    labels[:4] = torch.arange(4)
    theirs_x = x.clone().requires_grad_()
    theirs = _quiet(_pml_pair_loss(name, **config), theirs_x, labels)
    ours_x = x.clone().requires_grad_()
    ours = getattr(funcloss, name)(ours_x, labels, **config)
    assert_close(ours, theirs)
    (theirs_grad,) = torch.autograd.grad(theirs, theirs_x)
    (ours_grad,) = torch.autograd.grad(ours, ours_x)
    assert_close(ours_grad, theirs_grad)


def test_pair_losses_match_pml_in_float32_at_the_benchmark_size() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 128, generator=generator)
    labels = torch.randint(0, 128, (512,), generator=generator)
    for name, config in PAIR_CONFIGS[::2]:
        theirs = _quiet(_pml_pair_loss(name, **config), x, labels)
        ours = getattr(funcloss, name)(x, labels, **config)
        assert_close(ours, theirs, name, rtol=1e-4)


PML_PAIR_DEFECTS = [
    "contrastive_loss",
    "batch_triplet_loss",
    "multi_similarity_loss",
    "circle_loss",
]


def _ensemble():
    x, labels = _batch()
    return torch.stack([x, x.flip(-1), -x]), labels


@pytest.mark.parametrize("name", [*PML_PAIR_DEFECTS, "batch_triplet_loss-hard"])
def test_pml_pair_losses_fail_vmap_and_compile_funcloss_does_not(name: str) -> None:
    base, _, mining = name.partition("-")
    config = {"mining": mining} if mining else {}
    ensemble, labels = _ensemble()
    loss = _pml_pair_loss(base, **config)
    with pytest.raises(RuntimeError, match="vmap"):  # boolean indexing, data-dependent flow
        _quiet(vmap(lambda e: loss(e, labels)), ensemble)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"data-dependent|data dependent"):
        _quiet(
            torch.compile(lambda e: loss(e, labels), fullgraph=True, backend="eager"), ensemble[0]
        )
    torch._dynamo.reset()

    def ours(e):
        return getattr(funcloss, base)(e, labels, **config)

    looped = torch.stack([ours(e) for e in ensemble])
    assert_close(vmap(ours)(ensemble), looped)
    compiled = torch.compile(ours, fullgraph=True, backend="eager")(ensemble[0])
    torch._dynamo.reset()
    assert_close(compiled, looped[0])


@pytest.mark.parametrize("name", ["contrastive_loss", "batch_triplet_loss"])
def test_pml_distance_losses_have_no_forward_mode_funcloss_does(name: str) -> None:
    x, labels = _batch()
    loss = _pml_pair_loss(name)
    with pytest.raises(NotImplementedError, match="forward AD with _cdist_forward"):
        _quiet(jacfwd(lambda e: loss(e, labels)), x)

    def ours(e):
        return getattr(funcloss, name)(e, labels)

    assert_close(jacfwd(ours)(x), torch.func.jacrev(ours)(x))
