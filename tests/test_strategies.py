"""funcloss.testing's strategies: every one draws with no arguments, as Hypothesis' own do,
and today's arguments keep working."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from funcloss.testing import strategies
from funcloss.testing.strategies import (
    class_targets,
    floats,
    logits,
    probabilities,
    regression_pairs,
    shapes,
)

NAMES = sorted(strategies.__all__)


def _tensors(value: object) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    return []


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data())
def test_every_strategy_draws_with_no_arguments(name: str, data: st.DataObject) -> None:
    value = data.draw(getattr(strategies, name)(), label=name)
    if name == "shapes":
        assert isinstance(value, tuple) and 1 <= len(value) <= 3
        assert all(1 <= side <= 5 for side in value)
        return
    tensors = _tensors(value)
    assert tensors, f"{name}() drew {value!r}, not tensors"
    for t in tensors:
        assert t.dim() >= 1 and 1 <= t.shape[0] <= 5, f"{name}(): not a small batch, {t.shape}"
        assert t.numel() <= 125


def test_every_public_strategy_is_tested() -> None:
    public = {n for n in dir(strategies) if not n.startswith("_") and n.islower()}
    callables = {n for n in public if callable(getattr(strategies, n))}
    defined = {n for n in callables if getattr(strategies, n).__module__ == strategies.__name__}
    assert defined == set(strategies.__all__)


@given(x=logits(), y=class_targets(), p=probabilities(), q=probabilities(dim=1))
def test_defaults_are_batched_scores_and_targets(x, y, p, q) -> None:
    assert x.dim() == 2 and 2 <= x.shape[1] <= 5 and x.dtype == torch.float64
    assert y.dim() == 1 and y.dtype == torch.int64 and bool((y >= 0).all() and (y < 5).all())
    assert p.dim() == 2 and bool(((p >= 0) & (p <= 1)).all())
    torch.testing.assert_close(q.sum(1), torch.ones(q.shape[0], dtype=q.dtype))


@given(data=st.data())
def test_class_targets_without_num_classes_respects_ignore_index(data: st.DataObject) -> None:
    y = data.draw(class_targets((6,), ignore_index=-100))
    kept = y[y != -100]
    assert kept.numel() > 0 and bool(((kept >= 0) & (kept < 5)).all())


@given(
    pair=regression_pairs((2, 3), dtype=torch.float32),
    x=floats((4,), min_value=0.0, max_value=1.0),
    y=class_targets((3, 2), 4, dtype=torch.int32),
    z=logits(shapes(min_dims=2, max_dims=2), scale=1.0),
)
def test_todays_arguments_still_work(pair, x, y, z) -> None:
    assert pair[0].shape == pair[1].shape == (2, 3) and pair[0].dtype == torch.float32
    assert x.shape == (4,) and bool(((x >= 0) & (x <= 1)).all())
    assert y.shape == (3, 2) and y.dtype == torch.int32 and int(y.max()) < 4
    assert z.dim() == 2 and float(z.abs().max()) <= 1.0
