"""Mixed float32/float64 calls: the output dtype is ``torch.promote_types`` of the floating inputs.

For every loss of the regression, BCE, margin and embedding families and every mix of float32
and float64 among its floating tensors, funcloss returns the promoted dtype, with the value of
torch's loss computed in float64 (to float32 rounding). Where torch 2.13 itself departs from
promotion (``DEPARTS``: a narrower dtype, or an error), the departure is measured live, so the
README's list of deliberate differences stays true.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import funcloss

f32, f64 = torch.float32, torch.float64
Build = Callable[[tuple[torch.dtype, ...]], tuple[tuple, dict]]


def _data(seed: int) -> Callable[..., Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def draw(kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        u = torch.rand(shape, generator=generator, dtype=f64)
        values = {
            "real": torch.randn(shape, generator=generator, dtype=f64),
            "prob": 0.05 + 0.9 * u,
            "pos": 0.2 + u,
            "sign": torch.where(u > 0.5, 1.0, -1.0).to(f64),
        }[kind]
        return values.to(dtype)

    return draw


def _case(kinds: tuple[str, ...], keywords: dict[str, str] | None = None, **config) -> Build:
    """Positional tensors of ``kinds`` (shape (4, 3), or (4,) for the "sign"/"row" targets of the
    pairwise losses) and keyword tensors; one dtype per floating tensor, in that order."""
    keywords = keywords or {}

    def build(dtypes: tuple[torch.dtype, ...]) -> tuple[tuple, dict]:
        draw = _data(7)
        shapes = [(4,) if k.endswith("row") else (4, 3) for k in kinds]
        args = tuple(
            draw(k.removesuffix("-row"), s, d)
            for k, s, d in zip(kinds, shapes, dtypes, strict=False)
        )
        rest = dtypes[len(kinds) :]
        kwargs = {
            name: draw(kind, (3,), d)
            for (name, kind), d in zip(keywords.items(), rest, strict=True)
        }
        return args, {**kwargs, **config}

    build.count = len(kinds) + len(keywords)  # type: ignore[attr-defined]
    return build


CASES: dict[str, tuple[str, Build]] = {
    "l1_loss": ("l1_loss", _case(("real", "real"))),
    "mse_loss": ("mse_loss", _case(("real", "real"))),
    "huber_loss": ("huber_loss", _case(("real", "real"))),
    "smooth_l1_loss": ("smooth_l1_loss", _case(("real", "real"))),
    "poisson_nll_loss": ("poisson_nll_loss", _case(("real", "pos"), full=True)),
    "poisson_nll_loss-rate": ("poisson_nll_loss", _case(("pos", "pos"), log_input=False)),
    "gaussian_nll_loss": ("gaussian_nll_loss", _case(("real", "real", "pos"))),
    "kl_div": ("kl_div", _case(("real", "prob"), reduction="batchmean")),
    "kl_div-log_target": ("kl_div", _case(("real", "real"), reduction="sum", log_target=True)),
    "binary_cross_entropy": ("binary_cross_entropy", _case(("prob", "prob"), {"weight": "pos"})),
    "binary_cross_entropy_with_logits": (
        "binary_cross_entropy_with_logits",
        _case(("real", "prob"), {"weight": "pos", "pos_weight": "pos"}),
    ),
    "soft_margin_loss": ("soft_margin_loss", _case(("real", "sign"))),
    "multilabel_soft_margin_loss": (
        "multilabel_soft_margin_loss",
        _case(("real", "prob"), {"weight": "pos"}),
    ),
    "margin_ranking_loss": (
        "margin_ranking_loss",
        _case(("real-row", "real-row", "sign-row"), margin=0.3),
    ),
    "hinge_embedding_loss": ("hinge_embedding_loss", _case(("real", "sign"))),
    "cosine_embedding_loss": ("cosine_embedding_loss", _case(("real", "real", "sign-row"))),
    "triplet_margin_loss": ("triplet_margin_loss", _case(("real", "real", "real"), swap=True)),
    "triplet_margin_with_distance_loss": (
        "triplet_margin_with_distance_loss",
        _case(("real", "real", "real")),
    ),
}


def _multi_margin(dtypes: tuple[torch.dtype, ...]) -> tuple[tuple, dict]:
    draw = _data(11)
    target = torch.tensor([0, 2, 1, 0])
    return (draw("real", (4, 3), dtypes[0]), target), {"weight": draw("pos", (3,), dtypes[1])}


_multi_margin.count = 2  # type: ignore[attr-defined]
CASES["multi_margin_loss"] = ("multi_margin_loss", _multi_margin)

# Where torch 2.13's own result is not the promoted dtype: (case, dtypes) -> what torch does,
# "raises" or the dtype it returns (measured; listed in the README's deliberate differences).
DEPARTS: dict[tuple[str, tuple[torch.dtype, ...]], str | torch.dtype] = {
    ("huber_loss", (f32, f64)): f32,
    ("soft_margin_loss", (f32, f64)): f32,
    ("hinge_embedding_loss", (f32, f64)): f32,
    ("cosine_embedding_loss", (f32, f32, f64)): f32,
    ("multi_margin_loss", (f32, f64)): "raises",
    ("multi_margin_loss", (f64, f32)): "raises",
    **{
        ("binary_cross_entropy", dtypes): "raises"
        for dtypes in itertools.product((f32, f64), repeat=3)
        if dtypes[0] != dtypes[1]
    },
    ("binary_cross_entropy", (f32, f32, f64)): f32,
    **{
        ("binary_cross_entropy_with_logits", dtypes): f32
        for dtypes in itertools.product((f32, f64), repeat=4)
        if dtypes[1] == f32 and f64 in dtypes
    },
}


def _mixed(count: int) -> list[tuple[torch.dtype, ...]]:
    return [d for d in itertools.product((f32, f64), repeat=count) if len(set(d)) == 2]


PARAMS = [
    pytest.param(case, dtypes, id=f"{case}-{'-'.join(str(d)[11:] for d in dtypes)}")
    for case, (_, build) in CASES.items()
    for dtypes in _mixed(build.count)  # type: ignore[attr-defined]
]


def _upcast(value: object) -> object:
    return value.to(f64) if isinstance(value, Tensor) and value.is_floating_point() else value


@pytest.mark.parametrize(("case", "dtypes"), PARAMS)
def test_output_dtype_is_the_promoted_one(case: str, dtypes: tuple[torch.dtype, ...]) -> None:
    name, build = CASES[case]
    args, kwargs = build(dtypes)
    promoted = f64  # every mix here holds a float64
    actual = getattr(funcloss, name)(*args, **kwargs)
    assert actual.dtype == promoted
    reference = getattr(F, name)(*map(_upcast, args), **{k: _upcast(v) for k, v in kwargs.items()})
    torch.testing.assert_close(actual, reference, rtol=1e-5, atol=1e-6)
    try:
        torch_dtype: str | torch.dtype = getattr(F, name)(*args, **kwargs).dtype
    except RuntimeError:
        torch_dtype = "raises"
    departs = DEPARTS.get((case, dtypes))
    assert torch_dtype == (departs or promoted), f"torch 2.13 gives {torch_dtype}: update DEPARTS"
