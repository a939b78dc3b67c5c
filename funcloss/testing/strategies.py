"""Hypothesis strategies for loss inputs.

Each strategy takes concrete shapes (draw them first with :func:`shapes`) so that related inputs
line up, and a ``dtype`` (float64 by default: gradient checks need it). Values are drawn as
Python floats and turned into tensors, so every example is reproducible from Hypothesis' seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st
from torch import Tensor

__all__ = [
    "class_targets",
    "floats",
    "logits",
    "probabilities",
    "regression_pairs",
    "shapes",
]


def shapes(
    min_dims: int = 1, max_dims: int = 3, min_side: int = 1, max_side: int = 5
) -> st.SearchStrategy[tuple[int, ...]]:
    """Tensor shapes with ``min_dims..max_dims`` dimensions of ``min_side..max_side`` each."""
    side = st.integers(min_side, max_side)
    return st.integers(min_dims, max_dims).flatmap(
        lambda n: st.tuples(*([side] * n)) if n else st.just(())
    )


def _numel(shape: Sequence[int]) -> int:
    total = 1
    for side in shape:
        total *= side
    return total


def floats(
    shape: Sequence[int],
    *,
    min_value: float = -5.0,
    max_value: float = 5.0,
    dtype: torch.dtype = torch.float64,
    exclude_min: bool = False,
    exclude_max: bool = False,
) -> st.SearchStrategy[Tensor]:
    """A tensor of ``shape`` with finite values in ``[min_value, max_value]``."""
    elements = st.floats(
        min_value,
        max_value,
        allow_nan=False,
        allow_infinity=False,
        exclude_min=exclude_min,
        exclude_max=exclude_max,
    )
    n = _numel(shape)
    return st.lists(elements, min_size=n, max_size=n).map(
        lambda values: torch.tensor(values, dtype=dtype).reshape(tuple(shape))
    )


def logits(
    shape: Sequence[int], *, scale: float = 5.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Unnormalised scores of ``shape`` (e.g. ``(N, C)``) in ``[-scale, scale]``."""
    return floats(shape, min_value=-scale, max_value=scale, dtype=dtype)


def class_targets(
    shape: Sequence[int], num_classes: int, *, ignore_index: int | None = None
) -> st.SearchStrategy[Tensor]:
    """int64 class indices of ``shape`` in ``[0, num_classes)``; with ``ignore_index`` given,
    some entries may equal it (but not all, so that a mean stays defined)."""
    n = _numel(shape)
    index = st.integers(0, num_classes - 1)
    element = index if ignore_index is None else st.one_of(index, index, st.just(ignore_index))

    def valid(values: list[int]) -> bool:
        return ignore_index is None or n == 0 or any(v != ignore_index for v in values)

    return (
        st.lists(element, min_size=n, max_size=n)
        .filter(valid)
        .map(lambda values: torch.tensor(values, dtype=torch.int64).reshape(tuple(shape)))
    )


def probabilities(
    shape: Sequence[int],
    *,
    dim: int | None = None,
    dtype: torch.dtype = torch.float64,
    min_value: float = 0.0,
    max_value: float = 1.0,
) -> st.SearchStrategy[Tensor]:
    """Values in ``[min_value, max_value]``; with ``dim`` given, normalised to sum to 1 along it
    (class-probability targets)."""
    if dim is None:
        return floats(shape, min_value=min_value, max_value=max_value, dtype=dtype)
    raw = floats(shape, min_value=0.05, max_value=1.0, dtype=dtype)
    return raw.map(lambda t: t / t.sum(dim, keepdim=True))


def regression_pairs(
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float64,
    min_value: float = -5.0,
    max_value: float = 5.0,
) -> st.SearchStrategy[tuple[Tensor, Tensor]]:
    """``(input, target)`` of the same ``shape``."""
    values = floats(shape, min_value=min_value, max_value=max_value, dtype=dtype)
    return st.tuples(values, values)
