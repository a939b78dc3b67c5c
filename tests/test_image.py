"""total_variation: golden values, kornia's shapes, the kink at equal neighbours, edge images
(constant, one pixel, one row, empty) with finite derivatives, both forms of vmap.

ssim_loss: a one-pixel window by hand, the paper's oracle over windows, sigmas and constants,
``"valid"`` as ``"same"`` cropped, identical, constant and zero images with finite derivatives
of every order, float32 images with an offset, masks, vmap and tangent dtypes. psnr_loss: golden
values, the floor at identical images (value, zero gradient, the Hessian by hand), masks."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, vmap

import funcloss
import funcloss.nn as fnn

from .helpers import assert_close
from .specs_image import psnr_oracle, ssim_oracle, tv_oracle

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


# -- ssim_loss -------------------------------------------------------------------------------


def _pair(shape, seed: int, dtype=f64):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=dtype), torch.rand(
        shape, generator=generator, dtype=dtype
    )


def test_ssim_one_pixel_window_by_hand() -> None:
    # window_size=1: mu = the pixel, variances 0, so SSIM = (2xy + c1) / (x^2 + y^2 + c1)
    x = torch.tensor([[0.2, 0.9], [0.0, 0.5]], dtype=f64)
    y = torch.tensor([[0.4, 0.9], [0.0, 0.1]], dtype=f64)
    c1 = 0.01**2
    expected = 1 - (2 * x * y + c1) / (x**2 + y**2 + c1)
    got = funcloss.ssim_loss(x, y, window_size=1, reduction="none")
    assert_close(got, expected)
    assert_close(funcloss.ssim_loss(x, y, window_size=1), expected.mean())


def test_ssim_one_pixel_window_float32_gradient_bound() -> None:
    # variances identically 0: float32's E[x^2] - E[x]^2 rounds to eps_32 * x^2 and the contrast
    # term's gradient divides that by c2, so float32 gradients (kornia's and MONAI's alike) are
    # within about 2 eps_32 L^2 / c2 of the exact ones, not within the registry's 1e-5
    x, y = _pair((2, 3, 6, 6), 16)
    exact = grad(lambda b: ssim_oracle(x, b, window_size=1, reduction="sum"))(y)
    x32, y32 = x.float(), y.float()
    ours = grad(lambda b: funcloss.ssim_loss(x32, b, window_size=1, reduction="sum"))(y32)
    bound = 2 * torch.finfo(torch.float32).eps / 0.03**2
    assert (ours.double() - exact).abs().max() < bound


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"window_size": 7, "sigma": 0.8},
        {"window_size": 5, "sigma": 3.0, "k1": 0.05, "k2": 0.1},
        {"window_size": 9, "data_range": 255.0, "padding": "valid"},
    ],
)
def test_ssim_matches_the_paper_oracle(config) -> None:
    x, y = _pair((2, 3, 12, 13), 4)
    scale = config.get("data_range", 1.0)
    for reduction in ("none", "mean", "sum"):
        got = funcloss.ssim_loss(scale * x, scale * y, **config, reduction=reduction)
        assert_close(got, ssim_oracle(scale * x, scale * y, **config, reduction=reduction))


def test_ssim_valid_is_same_cropped_and_shapes() -> None:
    x, y = _pair((2, 3, 14, 15), 5)
    same = funcloss.ssim_loss(x, y, window_size=5, reduction="none")
    valid = funcloss.ssim_loss(x, y, window_size=5, padding="valid", reduction="none")
    assert same.shape == x.shape and valid.shape == (2, 3, 10, 11)
    assert_close(valid, same[..., 2:-2, 2:-2])
    # any leading dimensions: each plane on its own
    one_plane = funcloss.ssim_loss(x[0, 0], y[0, 0], reduction="none")
    assert_close(one_plane, funcloss.ssim_loss(x, y, reduction="none")[0, 0])
    planes = funcloss.ssim_loss(x.reshape(6, 14, 15), y.reshape(6, 14, 15), reduction="none")
    assert_close(planes.reshape(x.shape), funcloss.ssim_loss(x, y, reduction="none"))
    ensemble = funcloss.ssim_loss(
        x[None].expand(2, -1, -1, -1, -1), y[None].expand(2, -1, -1, -1, -1)
    )
    assert_close(ensemble, funcloss.ssim_loss(x, y))
    assert_close(fnn.SSIMLoss(window_size=5, reduction="none")(x, y), same)


@pytest.mark.parametrize("kind", ["identical", "constant vs random", "zero", "two constants"])
def test_ssim_edge_images_have_finite_derivatives(kind) -> None:
    random, _ = _pair((1, 2, 6, 6), 6)
    x, y = {
        "identical": (random, random),
        "constant vs random": (torch.full_like(random, 0.3), random),
        "zero": (torch.zeros_like(random), torch.zeros_like(random)),
        "two constants": (torch.full_like(random, 0.3), torch.full_like(random, 0.7)),
    }[kind]

    def f(a, b):
        return funcloss.ssim_loss(a, b, window_size=5)

    def oracle(a, b):
        return ssim_oracle(a, b, window_size=5)

    value = f(x, y)
    assert_close(value, oracle(x, y))
    grads = grad(f, argnums=(0, 1))(x, y)
    for g, expected in zip(grads, grad(oracle, argnums=(0, 1))(x, y), strict=True):
        assert bool(torch.isfinite(g).all())
        assert_close(g, expected)
    assert_close(jacfwd(f)(x, y), jacrev(f)(x, y))
    assert bool(torch.isfinite(hessian(f)(x, y)).all())
    if kind in ("identical", "zero"):  # the minimum: 0 with a zero gradient
        assert value == 0
        torch.testing.assert_close(grads[0], torch.zeros_like(x), atol=1e-12, rtol=0)


def test_ssim_float32_with_an_offset_keeps_its_digits() -> None:
    # images around 1000 at data_range 1: E[x^2] - E[x]^2 cancels 1e6 against 1e6 in float32;
    # the moments of the offset-free images do not
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(1, 1, 24, 24, generator=generator) * 0.5 + 1000.0
    y = x + 0.05 * torch.randn(1, 1, 24, 24, generator=generator)
    expected = ssim_oracle(x.double(), y.double(), window_size=11)
    got = funcloss.ssim_loss(x, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_ssim_mask_per_pixel_and_per_plane() -> None:
    x, y = _pair((2, 3, 8, 8), 8)
    where = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9)) > 0.5
    full = funcloss.ssim_loss(x, y, reduction="none")
    assert_close(funcloss.ssim_loss(x, y, where=where), full[where].mean())
    assert_close(funcloss.ssim_loss(x, y, reduction="none", where=where), full * where)
    # a fully masked plane holding nan is not read: finite value, zero gradient there
    planes = torch.ones(2, 3, 1, 1, dtype=torch.bool)
    planes[1, 0] = False
    bad = x.clone()
    bad[1, 0] = float("nan")
    g = grad(lambda a: funcloss.ssim_loss(a, y, where=planes))(bad)
    assert bool(torch.isfinite(g).all()) and bool((g[1, 0] == 0).all())
    assert_close(funcloss.ssim_loss(bad, y, where=planes), full[planes.expand_as(full)].mean())


def test_ssim_vmap_per_sample_and_ensemble_float32_tangents() -> None:
    x, y = _pair((4, 3, 8, 8), 10, torch.float32)

    def f(a, b):
        return funcloss.ssim_loss(a, b, window_size=5)

    per_sample = vmap(grad(f))(x, y)
    looped = torch.stack([grad(f)(a, b) for a, b in zip(x, y, strict=True)])
    torch.testing.assert_close(per_sample, looped)
    ensemble = x[None] + 0.1 * torch.rand(
        3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(11)
    )
    got = vmap(grad(f), in_dims=(0, None))(ensemble, y)
    torch.testing.assert_close(got, torch.stack([grad(f)(e, y) for e in ensemble]))
    forward = jacfwd(f)(x[:1], y[:1])
    assert forward.dtype == torch.float32
    torch.testing.assert_close(forward, jacrev(f)(x[:1], y[:1]))


def test_ssim_bfloat16_is_filtered_in_float32() -> None:
    x, y = _pair((1, 1, 8, 8), 12)
    got = funcloss.ssim_loss(x.bfloat16(), y.bfloat16(), window_size=3)
    assert got.dtype == torch.bfloat16
    expected = ssim_oracle(x.bfloat16().double(), y.bfloat16().double(), window_size=3)
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)


# -- psnr_loss -------------------------------------------------------------------------------


def test_psnr_golden_values_and_per_image() -> None:
    # by hand: MSE 0.01 -> 20 dB; MSE 0.25 at data_range 2 -> 10 log10(4 / 0.25) = 12.04 dB
    x = torch.zeros(2, 1, 2, 2, dtype=f64)
    y = torch.stack([torch.full((1, 2, 2), 0.1), torch.full((1, 2, 2), 0.5)]).to(f64)
    per_image = funcloss.psnr_loss(x, y, eps=0.0, reduction="none")
    assert_close(per_image, torch.tensor([-20.0, -10 * math.log10(1 / 0.25)], dtype=f64))
    assert_close(funcloss.psnr_loss(x, y, eps=0.0), per_image.mean())
    assert_close(funcloss.psnr_loss(x, 2 * y, data_range=2.0, eps=0.0, reduction="none"), per_image)
    assert_close(psnr_oracle(x, y, reduction="none"), funcloss.psnr_loss(x, y, reduction="none"))
    # any leading dimensions; one (C, H, W) image gives a 0-dim loss
    assert funcloss.psnr_loss(x[0], y[0], reduction="none").shape == ()
    assert funcloss.psnr_loss(x[None], y[None], reduction="none").shape == (1, 2)
    assert_close(fnn.PSNRLoss(eps=0.0, reduction="sum")(x, y), per_image.sum())


def test_psnr_identical_images_are_finite_with_the_floor() -> None:
    x, _ = _pair((2, 3, 4, 4), 13)

    def f(a, b):
        return funcloss.psnr_loss(a, b)

    assert_close(f(x, x), torch.tensor(-100.0, dtype=f64))  # 10 log10(1e-10)
    for g in grad(f, argnums=(0, 1))(x, x):
        assert_close(g, torch.zeros_like(x))
    assert_close(jacfwd(f)(x, x), jacrev(f)(x, x))
    h = hessian(f)(x, x)
    assert bool(torch.isfinite(h).all())
    # d^2/dx^2 of (10 / ln 10) log(MSE + eps) at MSE 0, per image of M pixels, averaged over 2
    m = 3 * 4 * 4
    diagonal = torch.diagonal(h.reshape(x.numel(), x.numel()))
    assert_close(diagonal, torch.full_like(diagonal, 10 / math.log(10) * 2 / (m * 1e-10) / 2))
    # eps=0: the plain formula, kornia's -inf
    assert funcloss.psnr_loss(x, x, eps=0.0) == -math.inf
    # float32: the floor is representable and the gradient 0
    x32 = x.float()
    assert_close(f(x32, x32), torch.tensor(-100.0))
    assert bool((grad(f)(x32, x32) == 0).all())


def test_psnr_mask_is_per_image_and_reads_nothing_masked() -> None:
    x, y = _pair((4, 3, 4, 4), 14)
    where = torch.tensor([True, False, True, False])
    bad = x.clone()
    bad[1] = float("nan")
    bad[3] = x[3]
    yy = y.clone()
    yy[3] = x[3]  # identical: -inf with eps=0, masked
    for eps in (0.0, 1e-10):
        value = funcloss.psnr_loss(bad, yy, eps=eps, where=where)
        assert_close(value, funcloss.psnr_loss(x[where], y[where], eps=eps))
        gx, gy = grad(
            lambda a, b, eps=eps: funcloss.psnr_loss(a, b, eps=eps, where=where), argnums=(0, 1)
        )(bad, yy)
        assert bool(torch.isfinite(gx).all() and torch.isfinite(gy).all())
        assert bool((gx[~where] == 0).all() and (gy[~where] == 0).all())


def test_psnr_vmap_per_image_equals_none() -> None:
    x, y = _pair((5, 3, 6, 6), 15, torch.float32)
    torch.testing.assert_close(
        vmap(funcloss.psnr_loss)(x, y), funcloss.psnr_loss(x, y, reduction="none")
    )
    forward = jacfwd(funcloss.psnr_loss)(x, y)
    assert forward.dtype == torch.float32
    torch.testing.assert_close(forward, jacrev(funcloss.psnr_loss)(x, y))


_close32 = torch.testing.assert_close


def _psnr_backward_names(out: torch.Tensor) -> set[str]:
    names, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None:
            names.add(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 3, 16, 16), (2, 2, 3, 50, 50), (2, 3, 64, 64)])
def test_psnr_eager_step_matches_the_composition(monkeypatch, dtype, shape) -> None:
    # the plain eager call (_EagerPsnr: unscaled, blocked norms, slope scaled in place) against
    # the scaled composition every transform uses: values, gradients, a second backward of a
    # retained graph (bit for bit), double backward; the fallback at inf, nan and 3e38 pixels
    x, y = _pair(shape, 16, dtype)
    y = y * 0.9  # no pixel pair identical
    configs = [{}, {"data_range": 255.0}, {"eps": 1e-3}, {"data_range": 2.0, "eps": 0.0}]
    cases = [(x, y, config) for config in configs]
    identical = (x, x, {})
    huge = (x * 3e38 if dtype == torch.float32 else x * 1e308, -y, {})
    with_nan = (x.clone().view(-1).index_fill_(0, torch.tensor([5]), math.nan).view(shape), y, {})
    infinite = (x.clone().view(-1).index_fill_(0, torch.tensor([7]), math.inf).view(shape), y, {})
    for a, b, config in [*cases, identical, huge, with_nan, infinite]:
        for reduction in ("mean", "sum", "none"):
            a = a.detach().requires_grad_()
            out = funcloss.psnr_loss(a, b, reduction=reduction, **config)
            (first,) = torch.autograd.grad(out.sum(), a, retain_graph=True)
            (second,) = torch.autograd.grad(out.sum(), a, retain_graph=True)
            (double,) = torch.autograd.grad(out.sum(), a, create_graph=True)
            (hvp,) = torch.autograd.grad((double * a.detach()).sum(), a)
            fast = config.get("eps", 1.0) > 0 and bool(torch.isfinite((a - b) ** 2).all())
            assert ("_EagerPsnrBackward" in _psnr_backward_names(out)) == fast
            assert torch.equal(first.view(torch.int8), second.view(torch.int8))  # NaNs too
            with monkeypatch.context() as patch:
                patch.setattr(funcloss._image, "_psnr_fast", lambda *args: False)
                ref = funcloss.psnr_loss(a, b, reduction=reduction, **config)
                (ref_grad,) = torch.autograd.grad(ref.sum(), a, create_graph=True)
                (ref_hvp,) = torch.autograd.grad((ref_grad * a.detach()).sum(), a)
            # float32: two roundings of one formula, a few ulps apart (torch's float32 defaults)
            close = assert_close if dtype == f64 else partial(_close32, equal_nan=True)
            close(out, ref)
            close(first, ref_grad)
            close(double, ref_grad)
            close(hvp, ref_hvp)


@pytest.mark.parametrize("reads", [True, False])
def test_ssim_an_infinite_pixel_gives_its_windows_the_limit(reads: bool) -> None:
    """An infinite pixel: each window holding it has SSIM 0 (loss 1), the limit as the pixel
    grows (float64 at 1e150: below 1e-100), with zero derivatives there; every other window is
    the map of the same images with 0 at that pixel (bit for bit where no read is made; the
    eager read recomputes the map in float64). torch's arithmetic (and
    kornia's, MONAI's) gives NaN: inf - inf in E[x^2] - E[x]^2. A NaN pixel stays NaN."""
    generator = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 1, 1, 16, 16, generator=generator)
    grown = x.clone()
    grown[0, 0, 5, 7] = float("inf")
    with funcloss.set_value_checks(reads):
        leaf = grown.clone().requires_grad_()
        loss = funcloss.ssim_loss(leaf, y, window_size=5, reduction="none")
        (gradient,) = torch.autograd.grad(loss.sum(), leaf)
    touched = torch.zeros(16, 16, dtype=torch.bool)
    touched[3:8, 5:10] = True  # the 5 x 5 windows around (5, 7)
    assert bool((loss[0, 0][touched] == 1).all())
    stand_in = x.double().clone()
    stand_in[0, 0, 5, 7] = 1e150
    limit = funcloss.ssim_loss(stand_in, y.double(), window_size=5, reduction="none")
    assert bool(((1 - limit[0, 0][touched]).abs() < 1e-100).all())
    finite = x.clone()
    finite[0, 0, 5, 7] = 0
    expected = funcloss.ssim_loss(finite, y, window_size=5, reduction="none")
    if reads:  # the eager path recomputes a map that is not finite in float64: float32's
        # own rounding apart (torch's float32 tolerance)
        torch.testing.assert_close(loss[0, 0][~touched], expected[0, 0][~touched])
    else:
        assert torch.equal(loss[0, 0][~touched], expected[0, 0][~touched])
    assert bool(gradient.isfinite().all()) and float(gradient[0, 0, 5, 7]) == 0
    nan = x.clone()
    nan[0, 0, 5, 7] = float("nan")
    assert bool(funcloss.ssim_loss(nan, y, window_size=5).isnan())


def test_ssim_huge_pixels_recomputed_in_float64() -> None:
    """float32 images with pixels near 3e38: the squares in E[x^2] overflow float32 (kornia and
    MONAI: NaN); the eager path's read finds the map not finite and recomputes it in float64:
    float64's map rounded to float32, value and gradient (without reads it stays float32's)."""
    generator = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 2, 1, 16, 16, generator=generator) * 3e38
    leaf = x.clone().requires_grad_()
    loss = funcloss.ssim_loss(leaf, y, window_size=7)
    (gradient,) = torch.autograd.grad(loss, leaf)
    truth = x.double().requires_grad_()
    expected = funcloss.ssim_loss(truth, y.double(), window_size=7)
    (expected_gradient,) = torch.autograd.grad(expected, truth)
    assert bool(loss.isfinite()) and bool(gradient.isfinite().all())
    torch.testing.assert_close(loss, expected.float())
    # the gradient, about 1e-41, is subnormal in float32: within half its spacing (2^-150)
    error = (gradient.double() - expected_gradient).abs()
    assert float(expected_gradient.abs().max()) > 1e-42
    assert bool((error <= 2.0**-150 + 1e-6 * expected_gradient.abs()).all()), error.max()
    with funcloss.set_value_checks(False):  # no read: float32's arithmetic, as kornia's
        assert bool(funcloss.ssim_loss(x, y, window_size=7).isnan())
