"""The Lovász losses against smp's ``losses/lovasz.py`` (Berman's reference code, loaded by path),
and smp's defects the README names, measured.

Adapter: smp's ``LovaszLoss("binary")`` is ``lovasz_hinge_loss`` (its ``per_image`` default is
False, funcloss's Berman's True: passed explicitly), ``LovaszLoss("multiclass")`` is
``lovasz_softmax_loss`` with ``classes="present"``; smp's module takes no ``classes`` (its
``_lovasz_softmax`` does).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.func import grad, vmap

import funcloss

from .anchors import load_file

IGNORE = 255


def _smp():
    return load_file("segmentation_models_pytorch", "losses/lovasz.py")


def _quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _binary(n=3, h=5, w=6, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, w, generator=g, dtype=dtype)
    y = torch.randint(0, 2, (n, h, w), generator=g)
    y[0, :2] = IGNORE
    return x, y


def _multiclass(n=3, c=4, h=5, w=6, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    y = torch.randint(0, c - 1, (n, h, w), generator=g)  # class c - 1 absent: "present" counts
    y[1, 1:3] = IGNORE
    return x, y


def _value_and_grad(f, x, *args, **kwargs):
    x = x.detach().requires_grad_()
    value = f(x, *args, **kwargs)
    return value.detach(), torch.autograd.grad(value, x)[0]


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_hinge_matches_smp(per_image, ignore) -> None:
    smp = _smp()
    x, y = _binary()
    if ignore is None:
        y = y.clamp_max(1)
    module = smp.LovaszLoss("binary", per_image=per_image, ignore_index=ignore)
    ours = _value_and_grad(
        funcloss.lovasz_hinge_loss, x, y, per_image=per_image, ignore_index=ignore
    )
    theirs = _value_and_grad(module, x, y)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("classes", ["present", "all", [0, 3]], ids=str)
def test_softmax_matches_smp(per_image, classes) -> None:
    smp = _smp()
    x, y = _multiclass()

    def theirs(x, y):
        return smp._lovasz_softmax(
            x.softmax(1), y, classes=classes, per_image=per_image, ignore=IGNORE
        )

    ours = _value_and_grad(
        funcloss.lovasz_softmax_loss,
        x,
        y,
        classes=classes,
        per_image=per_image,
        ignore_index=IGNORE,
    )
    torch.testing.assert_close(ours, _value_and_grad(theirs, x, y))
    if classes == "present":
        module = smp.LovaszLoss("multiclass", per_image=per_image, ignore_index=IGNORE)
        torch.testing.assert_close(ours, _value_and_grad(module, x, y))


def test_smp_crashes_on_float64() -> None:
    """smp computes the Lovász weights with ``.float()`` (float32) and dots them with the
    float64 errors: a RuntimeError. funcloss gives smp's float32 value, in float64."""
    smp = _smp()
    x, y = _binary(dtype=torch.float64)
    y = y.clamp_max(1)
    with pytest.raises(RuntimeError, match="same dtype, but found Double and Float"):
        smp.LovaszLoss("binary")(x, y)
    xs, ys = _multiclass(dtype=torch.float64)
    with pytest.raises(RuntimeError, match="same dtype, but found Double and Float"):
        smp.LovaszLoss("multiclass", ignore_index=IGNORE)(xs, ys)
    ours = funcloss.lovasz_hinge_loss(x, y, per_image=False)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(
        ours.float(), smp.LovaszLoss("binary")(x.float(), y), rtol=1e-6, atol=1e-6
    )


def test_smp_fails_vmap_per_sample_and_over_an_ensemble() -> None:
    """smp's ``perm.data`` fails under ``vmap``: per sample, and over an ensemble of stacked
    predictions with a shared target; funcloss's equal the loops over samples and members."""
    smp = _smp()
    x, y = _binary()
    y = y.clamp_max(1)
    hinge = smp.LovaszLoss("binary", per_image=True)
    ensemble = torch.stack([x, 2 * x, x - 1])
    with pytest.raises(RuntimeError, match="accessing `data` under vmap"):
        vmap(lambda a, b: hinge(a[None], b[None]))(x, y)
    with pytest.raises(RuntimeError, match="accessing `data` under vmap"):
        vmap(hinge, in_dims=(0, None))(ensemble, y)
    ours = vmap(funcloss.lovasz_hinge_loss, in_dims=(0, None))(ensemble, y)
    torch.testing.assert_close(ours, torch.stack([hinge(e, y) for e in ensemble]))

    xs, ys = _multiclass()
    softmax = smp.LovaszLoss("multiclass", ignore_index=IGNORE)
    stacked = torch.stack([xs, xs.flip(1)])
    with pytest.raises(RuntimeError, match="accessing `data` under vmap"):
        vmap(softmax, in_dims=(0, None))(stacked, ys)
    ours = vmap(lambda e: funcloss.lovasz_softmax_loss(e, ys, ignore_index=IGNORE), in_dims=0)(
        stacked
    )
    torch.testing.assert_close(ours, torch.stack([softmax(e, ys) for e in stacked]))
    per_sample = vmap(
        grad(lambda a, b: funcloss.lovasz_softmax_loss(a[None], b[None], ignore_index=IGNORE))
    )(xs, ys)
    loop = torch.stack(
        [
            _value_and_grad(lambda t, b=b: softmax(t[None], b[None]), a)[1]
            for a, b in zip(xs, ys, strict=True)
        ]
    )
    torch.testing.assert_close(per_sample, loop)


def test_smp_fails_compile_fullgraph() -> None:
    """smp's ``if len(labels) == 0`` and boolean indexing break a fullgraph graph with an
    ignore index; funcloss compiles."""
    smp = _smp()
    x, y = _binary()
    module = smp.LovaszLoss("binary", per_image=True, ignore_index=IGNORE)
    torch._dynamo.reset()
    with pytest.raises(torch._dynamo.exc.UserError, match="data-dependent"):
        torch.compile(module, fullgraph=True, backend="aot_eager")(x, y)
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda a, b: funcloss.lovasz_hinge_loss(a, b, ignore_index=IGNORE),
        fullgraph=True,
        backend="aot_eager",
    )
    torch.testing.assert_close(compiled(x, y), module(x, y))
