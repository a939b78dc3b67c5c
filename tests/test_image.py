"""total_variation: golden values, kornia's shapes, the kink at equal neighbours, edge images
(constant, one pixel, one row, empty) with finite derivatives, both forms of vmap."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .specs_image import tv_oracle

f64 = torch.float64


def test_golden_values() -> None:
    # by hand: vertical |3 - 0| + |1 - 1|, horizontal |1 - 0| + |1 - 3|
    image = torch.tensor([[0.0, 1.0], [3.0, 1.0]], dtype=f64)
    assert_close(funcloss.total_variation(image), torch.tensor(6.0, dtype=f64))
    assert funcloss.total_variation(image, "none").shape == ()
    # a ramp x[i, j] = i + 2 j over 3 x 4: vertical 2 * 4 * 1, horizontal 3 * 3 * 2
    ramp = torch.arange(3.0)[:, None] + 2 * torch.arange(4.0)
    assert funcloss.total_variation(ramp) == 8 + 18


def test_shapes_and_reductions() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=generator, dtype=f64)
    per_plane = funcloss.total_variation(x, "none")
    assert per_plane.shape == (2, 3)
    assert_close(per_plane, tv_oracle(x, "none"))
    assert_close(funcloss.total_variation(x), per_plane.sum())
    assert_close(funcloss.total_variation(x, "mean"), per_plane.mean())
    assert_close(fnn.TotalVariation(reduction="none")(x), per_plane)


def test_constant_and_small_images() -> None:
    for shape in [(4, 4), (2, 1, 1), (3, 1, 5), (3, 5, 1), (0, 4, 4), (2, 0, 3)]:
        x = torch.ones(shape, dtype=f64)
        expected = torch.zeros(shape[:-2], dtype=f64)
        assert_close(funcloss.total_variation(x, "none"), expected, str(shape))
    # one row: only horizontal differences count
    row = torch.tensor([[[1.0, 4.0, 2.0]]], dtype=f64)
    assert_close(funcloss.total_variation(row), torch.tensor(5.0, dtype=f64))


def test_kink_at_equal_neighbours_has_zero_subgradient_and_finite_derivatives() -> None:
    # a constant image is every kink at once: the subgradient 0 (kornia's), forward = reverse,
    # and a zero Hessian
    x = torch.full((2, 3, 3), 0.5, dtype=f64)

    def f(image):
        return funcloss.total_variation(image)

    assert_close(grad(f)(x), torch.zeros_like(x))
    assert_close(jacfwd(f)(x), jacrev(f)(x))
    assert_close(hessian(f)(x), torch.zeros(x.shape + x.shape, dtype=f64))
    # away from ties, by hand: each |a - b| adds sign(a - b) to a and its negative to b;
    # x10 - x00 = 3, x11 - x01 = 1, x01 - x00 = 1, x11 - x10 = -1
    image = torch.tensor([[0.0, 1.0], [3.0, 2.0]], dtype=f64)
    expected = torch.tensor([[-1.0 - 1.0, -1.0 + 1.0], [1.0 + 1.0, 1.0 - 1.0]], dtype=f64)
    assert_close(grad(f)(image), expected)


def test_vmap_per_image_and_over_an_ensemble() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 8, 8, generator=generator, dtype=f64)
    assert_close(vmap(funcloss.total_variation)(x), funcloss.total_variation(x, "none").sum(-1))
    ensemble = torch.randn(4, 2, 3, 8, 8, generator=generator, dtype=f64)

    def mean_tv(y):
        return funcloss.total_variation(y, "mean")

    got = vmap(grad(mean_tv))(ensemble)
    expected = torch.stack([grad(mean_tv)(e) for e in ensemble])
    assert_close(got, expected)


def test_float32_tangents_and_mask() -> None:
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    jf = jacfwd(lambda y: funcloss.total_variation(y))(x)
    assert jf.dtype == torch.float32
    torch.testing.assert_close(jf, jacrev(lambda y: funcloss.total_variation(y))(x))
    # a masked plane holding nan adds nothing and gets zero gradient
    bad = x.clone()
    bad[1, 2] = float("nan")
    where = torch.ones(2, 3, dtype=torch.bool)
    where[1, 2] = False
    y = bad.clone().requires_grad_()
    out = funcloss.total_variation(y, "mean", where=where)
    out.backward()
    assert_close(out, funcloss.total_variation(x, "none")[where].mean())
    assert bool(torch.isfinite(y.grad).all()) and bool((y.grad[1, 2] == 0).all())


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_kornia(reduction) -> None:
    from .anchors import anchor

    kornia_losses = anchor("kornia.losses")
    x = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(3), dtype=f64)
    theirs = kornia_losses.total_variation(x)
    theirs = {"none": theirs, "sum": theirs.sum(), "mean": theirs.mean()}[reduction]
    assert_close(funcloss.total_variation(x, reduction), theirs)
    # and on a single (H, W) image, and with equal neighbours (the same subgradient, 0)
    flat = torch.ones(5, 5, dtype=f64, requires_grad=True)
    kornia_losses.total_variation(flat).backward()
    assert_close(grad(funcloss.total_variation)(flat.detach()), flat.grad)
