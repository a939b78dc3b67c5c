"""Lovász losses: the identities (one pixel = hinge, ignore = dropping the pixels, "present" =
the list of present classes), ties, all-ignored images, and vmap in both forms (per sample, and
over an ensemble of stacked predictions with a shared target).

The registry (tests/specs_lovasz.py) runs the transform matrix against the naive oracle."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss

from .registry import SPECS  # first: the registry imports the specs modules
from .specs_lovasz import naive_lovasz_hinge, naive_lovasz_softmax

IGNORE = 255
LOVASZ = [spec for spec in SPECS if spec.id.startswith("lovasz")]


def _binary(n=3, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, h, w, generator=g, dtype=torch.float64),
        torch.randint(0, 2, (n, h, w), generator=g),
    )


def _multiclass(n=3, c=4, h=4, w=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, c, h, w, generator=g, dtype=torch.float64),
        torch.randint(0, c, (n, h, w), generator=g),
    )


def test_both_losses_are_registered() -> None:
    assert [spec.fn for spec in LOVASZ] == [
        funcloss.lovasz_hinge_loss,
        funcloss.lovasz_softmax_loss,
    ]


def test_hinge_on_one_pixel_is_the_hinge() -> None:
    x = torch.tensor([2.0, -0.5, 0.3, -3.0, 0.9], dtype=torch.float64)
    y = torch.tensor([1, 1, 0, 0, 1])
    expected = torch.relu(1 - x * (2 * y - 1))
    torch.testing.assert_close(funcloss.lovasz_hinge_loss(x, y, reduction="none"), expected)
    torch.testing.assert_close(
        grad(lambda t: funcloss.lovasz_hinge_loss(t, y, reduction="sum"))(x),
        grad(lambda t: torch.relu(1 - t * (2 * y - 1)).sum())(x),
    )


def test_ignored_pixels_are_dropped() -> None:
    x, y = _binary()
    y = torch.where(torch.rand(y.shape, generator=torch.Generator().manual_seed(2)) < 0.3, 255, y)
    keep = y != IGNORE
    ours = funcloss.lovasz_hinge_loss(x, y, per_image=False, ignore_index=IGNORE)
    torch.testing.assert_close(ours, funcloss.lovasz_hinge_loss(x[keep], y[keep], per_image=False))
    xs, ys = _multiclass()
    ys = torch.where(y < IGNORE, ys, IGNORE)
    keep = ys != IGNORE
    ours = funcloss.lovasz_softmax_loss(xs, ys, ignore_index=IGNORE)
    flat = xs.movedim(1, -1)[keep]  # (P, C): one "image" of the kept pixels
    kept = funcloss.lovasz_softmax_loss(flat.T[None, :, :], ys[keep][None])
    torch.testing.assert_close(ours, kept)


def test_present_is_the_list_of_present_classes() -> None:
    x, y = _multiclass()
    y = y.clamp_max(1)  # classes 2 and 3 absent
    torch.testing.assert_close(
        funcloss.lovasz_softmax_loss(x, y), funcloss.lovasz_softmax_loss(x, y, classes=[0, 1])
    )
    assert not torch.allclose(
        funcloss.lovasz_softmax_loss(x, y), funcloss.lovasz_softmax_loss(x, y, classes="all")
    )


@pytest.mark.parametrize("loss", ["hinge", "softmax"])
def test_all_ignored_image_is_zero_with_zero_derivatives(loss) -> None:
    if loss == "hinge":
        x, y = _binary()

        def f(t):
            return funcloss.lovasz_hinge_loss(t, y, ignore_index=IGNORE, reduction="none")
    else:
        x, y = _multiclass()

        def f(t):
            return funcloss.lovasz_softmax_loss(
                t, y, per_image=True, ignore_index=IGNORE, reduction="none"
            )

    y[1] = IGNORE
    value = f(x)
    assert value[1] == 0 and value[0] > 0
    for jac in (jacrev(f)(x), jacfwd(f)(x)):
        assert bool(jac[1].eq(0).all()) and bool(jac.isfinite().all())
    h = hessian(lambda t: f(t)[1])(x)
    assert bool(h.eq(0).all())


def _autograd(f, x):
    """The oracle's gradient (it reads values in Python: not under torch.func)."""
    x = x.detach().requires_grad_()
    return torch.autograd.grad(f(x), x)[0]


def test_ties_finite_derivatives_and_the_stable_subgradient() -> None:
    """Tied errors: the value does not depend on their order; the gradient is the subgradient
    of the stable order (tied pixels in index order: the oracle's), in both modes; second
    derivatives are finite."""
    x = torch.tensor([[0.5, 0.5, 0.5, -0.5, 2.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1, 0, 1, 0, 1, 1]])

    def f(t):
        return funcloss.lovasz_hinge_loss(t, y)

    def oracle(t):
        return naive_lovasz_hinge(t, y)

    perm = torch.tensor([2, 0, 1, 3, 5, 4])  # the tied pixels in another order
    torch.testing.assert_close(f(x), funcloss.lovasz_hinge_loss(x[:, perm], y[:, perm]))
    torch.testing.assert_close(f(x), oracle(x))
    g = grad(f)(x)
    torch.testing.assert_close(g, _autograd(oracle, x))
    torch.testing.assert_close(jacfwd(f)(x), g)
    assert bool(hessian(f)(x).isfinite().all())
    xs = torch.zeros(2, 3, 2, 2, dtype=torch.float64)  # every probability 1/3: all tie
    ys = torch.tensor([[[0, 1], [2, 0]], [[1, 1], [0, 2]]])

    def fs(t):
        return funcloss.lovasz_softmax_loss(t, ys)

    torch.testing.assert_close(fs(xs), naive_lovasz_softmax(xs, ys))
    gs = grad(fs)(xs)
    torch.testing.assert_close(gs, _autograd(lambda t: naive_lovasz_softmax(t, ys), xs))
    torch.testing.assert_close(jacfwd(fs)(xs), gs)
    assert bool(hessian(fs)(xs).isfinite().all())


def test_vmap_per_sample_and_over_an_ensemble() -> None:
    x, y = _binary()
    y = torch.where(x > 1.2, IGNORE, y)
    per_sample = vmap(lambda a, b: funcloss.lovasz_hinge_loss(a[None], b[None], ignore_index=255))
    torch.testing.assert_close(
        per_sample(x, y), funcloss.lovasz_hinge_loss(x, y, ignore_index=255, reduction="none")
    )
    ensemble = torch.stack([x, -x, 3 * x])
    torch.testing.assert_close(
        vmap(lambda e: funcloss.lovasz_hinge_loss(e, y, ignore_index=255))(ensemble),
        torch.stack([funcloss.lovasz_hinge_loss(e, y, ignore_index=255) for e in ensemble]),
    )
    xs, ys = _multiclass()
    ys = ys.clamp_max(2)
    per_sample_grad = vmap(grad(lambda a, b: funcloss.lovasz_softmax_loss(a[None], b[None])))
    loop = torch.stack(
        [
            grad(lambda t, b=b: funcloss.lovasz_softmax_loss(t[None], b[None]))(a)
            for a, b in zip(xs, ys, strict=True)
        ]
    )
    torch.testing.assert_close(per_sample_grad(xs, ys), loop)
    stacked = torch.stack([xs, xs.flip(1), xs * 0.5])
    torch.testing.assert_close(
        vmap(lambda e: funcloss.lovasz_softmax_loss(e, ys, classes="all"))(stacked),
        torch.stack([funcloss.lovasz_softmax_loss(e, ys, classes="all") for e in stacked]),
    )


def test_float32_tangents_stay_float32() -> None:
    x, y = _binary()
    xs, ys = _multiclass()
    assert jacfwd(lambda t: funcloss.lovasz_hinge_loss(t, y))(x.float()).dtype == torch.float32
    assert jacfwd(lambda t: funcloss.lovasz_softmax_loss(t, ys))(xs.float()).dtype == (
        torch.float32
    )


def test_where_masks_an_image_it_does_not_read() -> None:
    x, y = _binary()
    x[1, 0, 0] = torch.nan
    keep = torch.tensor([True, False, True])
    value = funcloss.lovasz_hinge_loss(x, y, where=keep)
    rest = funcloss.lovasz_hinge_loss(x[keep], y[keep])
    torch.testing.assert_close(value, rest)
    assert bool(grad(lambda t: funcloss.lovasz_hinge_loss(t, y, where=keep))(x).isfinite().all())
