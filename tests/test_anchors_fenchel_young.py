"""Cross-checks of the Fenchel–Young family against its anchors: optax (JAX on CPU, float64) and
entmax (torch), with the convention adapters each needs, and the anchors' defects the README
names, reproduced.

Adapters: optax puts classes last and returns the unreduced loss (funcloss ``reduction="none"``);
optax's ``sparsemax_loss`` is the *binary* loss (funcloss's ``binary_sparsemax_loss``), its
``multiclass_sparsemax_loss`` funcloss's ``sparsemax_loss``; optax's ``multiclass_hinge_loss``
has margin 1, and for a margin ``m > 0`` the Crammer–Singer loss is ``m`` times the margin-1
loss of ``z / m``. entmax's ``SparsemaxLoss`` returns the unreduced loss with
``reduction="none"``.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch.func import grad, jacfwd, jacrev, vmap

import funcloss

from .anchors import anchor, jax64

N, C = 16, 7


def _scores(seed: int = 0, n: int = N, c: int = C, scale: float = 2.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=generator, dtype=torch.float64) * scale


def _labels(seed: int = 0, n: int = N, c: int = C) -> torch.Tensor:
    return torch.randint(c, (n,), generator=torch.Generator().manual_seed(seed + 100))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _optax():
    jax64()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return anchor("optax")


def _close(ours: torch.Tensor, theirs, **tolerance) -> None:
    torch.testing.assert_close(ours, torch.tensor(np.array(theirs)), **tolerance)


# -- sparsemax -------------------------------------------------------------------------------


def test_sparsemax_matches_optax_and_entmax_with_ties_and_minus_inf() -> None:
    optax, jax = _optax(), jax64()
    entmax = anchor("entmax")
    z = _scores()
    z[0, :3] = 0.5  # ties inside the support
    z[1, 2] = float("-inf")
    z[2, :] = 1.0  # all tied: uniform
    ours = funcloss.sparsemax(z)
    theirs = jax.vmap(optax.projections.projection_simplex)(_np(z))
    _close(ours, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(ours, entmax.sparsemax(z, dim=-1))


def test_sparsemax_jacobian_matches_optax() -> None:
    optax, jax = _optax(), jax64()
    z = _scores(1)[0]
    ours = jacrev(funcloss.sparsemax)(z)
    theirs = jax.jacobian(optax.projections.projection_simplex)(_np(z))
    _close(ours, theirs)
    torch.testing.assert_close(jacfwd(funcloss.sparsemax)(z), ours)


def test_sparsemax_along_another_dim_matches_entmax() -> None:
    entmax = anchor("entmax")
    z = _scores(2).reshape(4, 4, C).transpose(1, 2)  # classes at dim 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(funcloss.sparsemax(z, dim=1), entmax.sparsemax(z, dim=1))


@pytest.mark.parametrize("transform", ["vmap", "grad", "jacrev", "jacfwd"])
def test_entmax_sparsemax_fails_torch_func_transforms(transform: str) -> None:
    """entmax 1.3's sparsemax is an old-style autograd.Function (forward(ctx, ...)): every
    torch.func transform raises; funcloss's runs and agrees with the eager Jacobian."""
    entmax = anchor("entmax")
    z = _scores(3)[0]
    calls = {
        "vmap": lambda f: vmap(f)(z[None]),
        "grad": lambda f: grad(lambda x: f(x)[0])(z),
        "jacrev": lambda f: jacrev(f)(z),
        "jacfwd": lambda f: jacfwd(f)(z),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="setup_context"):
            calls[transform](lambda x: entmax.sparsemax(x, dim=-1))
    ours = calls[transform](funcloss.sparsemax)
    assert torch.isfinite(ours).all()


def test_all_minus_inf_row_anchors_fail_funcloss_gives_zeros() -> None:
    """A row with no possible class: optax returns nan, entmax raises (index -1 out of bounds);
    funcloss returns zeros with zero gradient."""
    optax, jax = _optax(), jax64()
    entmax = anchor("entmax")
    z = torch.full((1, 3), float("-inf"), dtype=torch.float64)
    theirs = np.asarray(jax.vmap(optax.projections.projection_simplex)(_np(z)))
    assert np.isnan(theirs).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="out of bounds"):
            entmax.sparsemax(z, dim=-1)
    x = z.clone().requires_grad_()
    out = funcloss.sparsemax(x)
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(z))
    assert torch.equal(x.grad, torch.zeros_like(z))


# -- sparsemax_loss, binary_sparsemax_loss -----------------------------------------------------


def test_sparsemax_loss_matches_optax_and_entmax() -> None:
    optax = _optax()
    entmax = anchor("entmax")
    z, y = _scores(4), _labels(4)
    ours = funcloss.sparsemax_loss(z, y, reduction="none")
    _close(ours, optax.losses.multiclass_sparsemax_loss(_np(z), _np(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = entmax.SparsemaxLoss(reduction="none")(z, y)
    torch.testing.assert_close(ours, theirs)


def test_sparsemax_loss_gradient_matches_optax() -> None:
    optax, jax = _optax(), jax64()
    z, y = _scores(5), _labels(5)

    def theirs(s):
        return optax.losses.multiclass_sparsemax_loss(s, _np(y)).sum()

    ours = grad(lambda s: funcloss.sparsemax_loss(s, y, reduction="sum"))(z)
    _close(ours, jax.grad(theirs)(_np(z)))


@pytest.mark.parametrize("transform", ["vmap", "grad"])
def test_entmax_sparsemax_loss_fails_torch_func_transforms(transform: str) -> None:
    entmax = anchor("entmax")
    z, y = _scores(16), _labels(16)
    calls = {
        "vmap": lambda f: vmap(lambda s, t: f(s[None], t[None]))(z, y),
        "grad": lambda f: grad(lambda s: f(s, y))(z),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match="setup_context"):
            calls[transform](entmax.SparsemaxLoss(reduction="sum"))
    ours = calls[transform](partial(funcloss.sparsemax_loss, reduction="sum"))
    assert torch.isfinite(ours).all()


def test_binary_sparsemax_loss_matches_optax() -> None:
    optax = _optax()
    z = _scores(6)
    y = (_scores(7) > 0).long()
    ours = funcloss.binary_sparsemax_loss(z, y, reduction="none")
    _close(ours, optax.losses.sparsemax_loss(_np(z), _np(y)))


# -- hinges ------------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [1.0, 0.3, 2.5])
def test_multiclass_hinge_loss_matches_optax(margin: float) -> None:
    optax = _optax()
    z, y = _scores(8), _labels(8)
    ours = funcloss.multiclass_hinge_loss(z, y, margin, reduction="none")
    # optax's margin is 1: l_m(z) = m l_1(z / m)
    theirs = margin * np.asarray(optax.losses.multiclass_hinge_loss(_np(z) / margin, _np(y)))
    _close(ours, theirs)


def test_multiclass_perceptron_loss_matches_optax() -> None:
    optax = _optax()
    z, y = _scores(9), _labels(9)
    ours = funcloss.multiclass_perceptron_loss(z, y, reduction="none")
    _close(ours, optax.losses.multiclass_perceptron_loss(_np(z), _np(y)))


@pytest.mark.parametrize("name", ["hinge_loss", "perceptron_loss"])
def test_binary_hinges_match_optax(name: str) -> None:
    optax = _optax()
    z = _scores(10)
    y = torch.where(_scores(11) > 0, 1, -1)
    ours = getattr(funcloss, name)(z, y, reduction="none")
    _close(ours, getattr(optax.losses, name)(_np(z), _np(y)))


# -- make_fenchel_young_loss, smooth_labels ----------------------------------------------------


def test_fenchel_young_logsumexp_matches_optax() -> None:
    optax, jax = _optax(), jax64()
    from jax.scipy.special import logsumexp

    z = _scores(12)
    q = torch.softmax(_scores(13), -1)
    theirs = optax.losses.make_fenchel_young_loss(max_fun=logsumexp)
    fy = funcloss.make_fenchel_young_loss(partial(torch.logsumexp, dim=-1))
    _close(fy(z, q, "none"), theirs(_np(z), _np(q)))
    # optax's value is cross-entropy (no entropy term): the same numbers as cross_entropy
    _close(funcloss.cross_entropy(z, q, reduction="none"), theirs(_np(z), _np(q)))
    ours = grad(lambda s: fy(s, q, "sum"))(z)
    _close(ours, jax.grad(lambda s: theirs(s, _np(q)).sum())(_np(z)))


def test_smooth_labels_matches_optax() -> None:
    optax = _optax()
    y = _labels(14)
    ours = funcloss.smooth_labels(y, 0.2, num_classes=C)
    onehot = torch.nn.functional.one_hot(y, C).double()
    _close(ours.double(), optax.smooth_labels(_np(onehot), 0.2))
    q = torch.softmax(_scores(15), -1)
    _close(funcloss.smooth_labels(q, 0.3), optax.smooth_labels(_np(q), 0.3))


def test_optax_smooth_labels_mask_leaks_mass_to_removed_classes() -> None:
    """optax's ``where`` counts the valid classes but still adds alpha / K' to the removed ones
    (rows sum to more than 1: the bug of optax PR #1760); funcloss's rows sum to 1 and removed
    classes get 0."""
    optax = _optax()
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1]), 4).double()
    valid = torch.tensor([[True, True, False, False]]).expand(2, 4)
    theirs = np.asarray(optax.smooth_labels(_np(onehot), 0.4, where=_np(valid)))
    np.testing.assert_allclose(theirs.sum(-1), [1.4, 1.4])  # by hand: 1 + 2 * 0.4 / 2
    assert (theirs[:, 2:] > 0).all()
    ours = funcloss.smooth_labels(onehot, 0.4, dim=-1, where=valid)
    torch.testing.assert_close(ours.sum(-1), torch.ones(2, dtype=ours.dtype))
    assert torch.equal(ours[:, 2:], torch.zeros(2, 2, dtype=ours.dtype))
    torch.testing.assert_close(torch.tensor(theirs[:, :2]), ours[:, :2])
