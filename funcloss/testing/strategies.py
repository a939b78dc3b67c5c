"""Hypothesis strategies for loss inputs.

Each strategy takes a ``shape``: a concrete shape, so that related inputs line up (draw it first
with :func:`shapes`), or a strategy of shapes such as ``shapes(max_dims=2)``. Like Hypothesis' own
strategies, each also works with no arguments at all, drawing small batched shapes (a batch of 1
to 5; 2 to 5 classes where there are classes). Floating strategies take a ``dtype`` (float64 by
default: gradient checks need it). Values are drawn as Python numbers
and turned into tensors, so every example is reproducible from Hypothesis' seed.

Examples:
    >>> from hypothesis import given
    >>> @given(pair=regression_pairs(shapes(max_dims=2), dtype=torch.float32))
    ... def test_pairs_line_up(pair):
    ...     input, target = pair
    ...     assert input.shape == target.shape and input.dtype == torch.float32
    >>> test_pairs_line_up()
    >>> @given(x=logits(), y=class_targets())  # no arguments: small batches, (N, C) and (N,)
    ... def test_defaults(x, y):
    ...     assert x.dim() == 2 and y.dim() == 1
    >>> test_defaults()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

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


T = TypeVar("T")
# A concrete shape, or a strategy of shapes (such as ``shapes()``).
Shape = Sequence[int] | st.SearchStrategy[tuple[int, ...]]


# Defaults when no shape is given: a batch of 1 to 5, and 2 to 5 classes.
_BATCH = (1, 5)
_CLASSES = (2, 5)


def _batch_by_classes() -> st.SearchStrategy[tuple[int, ...]]:
    """``(N, C)``: a small batch of scores over a few classes."""
    return st.tuples(st.integers(*_BATCH), st.integers(*_CLASSES))


def _for_shape(
    shape: Shape, build: Callable[[tuple[int, ...]], st.SearchStrategy[T]]
) -> st.SearchStrategy[T]:
    """``build(shape)``; for a strategy of shapes, ``build`` of each drawn shape."""
    if isinstance(shape, st.SearchStrategy):
        return shape.flatmap(build)
    return build(tuple(shape))


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
    shape: Shape | None = None,
    *,
    min_value: float = -5.0,
    max_value: float = 5.0,
    dtype: torch.dtype = torch.float64,
    exclude_min: bool = False,
    exclude_max: bool = False,
) -> st.SearchStrategy[Tensor]:
    """A tensor of ``shape`` (default: ``shapes()``) and ``dtype`` with finite values in
    ``[min_value, max_value]``."""
    elements = st.floats(
        min_value,
        max_value,
        allow_nan=False,
        allow_infinity=False,
        exclude_min=exclude_min,
        exclude_max=exclude_max,
    )

    def build(shape: tuple[int, ...]) -> st.SearchStrategy[Tensor]:
        n = _numel(shape)
        return st.lists(elements, min_size=n, max_size=n).map(
            lambda values: torch.tensor(values, dtype=dtype).reshape(shape)
        )

    return _for_shape(shapes() if shape is None else shape, build)


def logits(
    shape: Shape | None = None, *, scale: float = 5.0, dtype: torch.dtype = torch.float64
) -> st.SearchStrategy[Tensor]:
    """Unnormalised scores of ``shape`` (default: ``(N, C)``, N in 1..5, C in 2..5) in
    ``[-scale, scale]``."""
    shape = _batch_by_classes() if shape is None else shape
    return floats(shape, min_value=-scale, max_value=scale, dtype=dtype)


def class_targets(
    shape: Shape | None = None,
    num_classes: int | None = None,
    *,
    ignore_index: int | None = None,
    dtype: torch.dtype = torch.int64,
) -> st.SearchStrategy[Tensor]:
    """Class indices of ``shape`` (default: ``(N,)``, N in 1..5) in ``[0, num_classes)``
    (default: a number of classes drawn from 2..5), integer ``dtype``; with ``ignore_index``
    given, some entries may equal it (but not all, so that a mean stays defined)."""
    if shape is None:
        shape = st.integers(*_BATCH).map(lambda n: (n,))
    if num_classes is None:
        return st.integers(*_CLASSES).flatmap(
            lambda c: class_targets(shape, c, ignore_index=ignore_index, dtype=dtype)
        )
    index = st.integers(0, num_classes - 1)
    element = index if ignore_index is None else st.one_of(index, index, st.just(ignore_index))

    def build(shape: tuple[int, ...]) -> st.SearchStrategy[Tensor]:
        n = _numel(shape)

        def valid(values: list[int]) -> bool:
            return ignore_index is None or n == 0 or any(v != ignore_index for v in values)

        return (
            st.lists(element, min_size=n, max_size=n)
            .filter(valid)
            .map(lambda values: torch.tensor(values, dtype=dtype).reshape(shape))
        )

    return _for_shape(shape, build)


def probabilities(
    shape: Shape | None = None,
    *,
    dim: int | None = None,
    dtype: torch.dtype = torch.float64,
    min_value: float = 0.0,
    max_value: float = 1.0,
) -> st.SearchStrategy[Tensor]:
    """Values in ``[min_value, max_value]`` of ``shape`` (default: ``(N, C)``, N in 1..5, C in
    2..5); with ``dim`` given, positive values normalised to sum to 1 along it (class-probability
    targets)."""
    shape = _batch_by_classes() if shape is None else shape
    if dim is None:
        return floats(shape, min_value=min_value, max_value=max_value, dtype=dtype)
    raw = floats(shape, min_value=0.05, max_value=1.0, dtype=dtype)
    return raw.map(lambda t: t / t.sum(dim, keepdim=True))


def regression_pairs(
    shape: Shape | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    min_value: float = -5.0,
    max_value: float = 5.0,
) -> st.SearchStrategy[tuple[Tensor, Tensor]]:
    """``(input, target)`` of the same ``shape`` (default: ``shapes()``) and ``dtype``."""

    def build(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[Tensor, Tensor]]:
        values = floats(shape, min_value=min_value, max_value=max_value, dtype=dtype)
        return st.tuples(values, values)

    return _for_shape(shapes() if shape is None else shape, build)
