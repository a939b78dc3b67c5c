"""Meta tensors, FakeTensorMode and host reads: every registry loss.

- On ``device="meta"`` and under ``FakeTensorMode`` (what ``torch.export`` and shape
  propagation run) every loss gives torch's output shape and dtype (those of torch's loss on the
  same problem on the CPU) and reads no value back.
- In eager CPU mode the value checks cost at most one host read per call on valid input. A
  host read is a dispatched op whose result depends on tensor values (torch's
  ``data_dependent_output`` / ``dynamic_output_shape`` tags: ``item()``, ``bool()``, ``int()``,
  boolean-mask indexing, ``nonzero``), or a ``Tensor.tolist()`` / ``Tensor.numpy()``, which
  read without dispatching; on a GPU each is a device synchronisation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import funcloss

from .registry import SPECS, Case, LossSpec, call_oracle

_READS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)


class _HostReads(TorchDispatchMode):
    """Counts dispatched ops whose output depends on tensor values."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if any(tag in func.tags for tag in _READS) and not _integer_indexing(func, args):
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def _integer_indexing(func: Any, args: tuple[Any, ...]) -> bool:
    """``x[index]`` with integer index tensors: tagged dynamic (a boolean mask would be), but
    its output shape is the index's, read from no value."""
    if func is not torch.ops.aten.index.Tensor:
        return False
    indices = [i for i in args[1] if i is not None]
    return all(not (i.dtype == torch.bool or i.dtype == torch.uint8) for i in indices)


@contextmanager
def _count_host_reads() -> Iterator[list[str]]:
    originals = {method: getattr(Tensor, method) for method in ("tolist", "numpy")}
    with _HostReads() as mode:

        def counting(name: str) -> Any:
            def counted(self: Tensor, *args: Any, **kwargs: Any) -> Any:
                mode.reads.append(f"Tensor.{name}")
                return originals[name](self, *args, **kwargs)

            return counted

        try:
            for name in originals:
                setattr(Tensor, name, counting(name))
            yield mode.reads
        finally:
            for name, original in originals.items():
                setattr(Tensor, name, original)


def _map(value: Any, fn: Any) -> Any:
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(_map(v, fn) for v in value)
    return value


def _moved(case: Case, fn: Any) -> Case:
    return Case(_map(case.args, fn), {k: _map(v, fn) for k, v in case.kwargs.items()})


def _draw(data: st.DataObject, spec: LossSpec) -> tuple[Case, str]:
    case = data.draw(spec.cases(), label="case")
    return case, data.draw(st.sampled_from(spec.reductions), label="reduction")


def _call(spec: LossSpec, case: Case, reduction: str) -> Tensor:
    return spec.fn(*case.args, **case.kwargs, reduction=reduction)


IDS = [spec.id for spec in SPECS]

META_SPECS = [pytest.param(spec, id=spec.id) for spec in SPECS]


@pytest.mark.parametrize("spec", META_SPECS)
@settings(max_examples=3)
@given(data=st.data())
def test_meta_tensors_give_torchs_shape_and_dtype(spec: LossSpec, data: st.DataObject) -> None:
    case, reduction = _draw(data, spec)
    expected = call_oracle(spec, case, reduction)
    result = _call(spec, _moved(case, lambda t: t.to("meta")), reduction)
    assert result.is_meta
    assert (result.shape, result.dtype) == (expected.shape, expected.dtype)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=3)
@given(data=st.data())
def test_fake_tensor_mode_gives_torchs_shape_and_dtype(spec: LossSpec, data: st.DataObject) -> None:
    case, reduction = _draw(data, spec)
    expected = call_oracle(spec, case, reduction)
    with FakeTensorMode() as mode:
        result = _call(spec, _moved(case, mode.from_tensor), reduction)
    assert (result.shape, result.dtype) == (expected.shape, expected.dtype)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=3)
@given(data=st.data())
def test_at_most_one_host_read_per_call(spec: LossSpec, data: st.DataObject) -> None:
    case, reduction = _draw(data, spec)
    with _count_host_reads() as reads:
        _call(spec, case, reduction)
    # cross_entropy's fused path reads once more, on the CPU only (never a device sync): whether
    # a row holds a +inf logit, the rows it then recomputes clamped; linear_cross_entropy too:
    # whether every loss (and gradient) is finite, else it recomputes at the float64 limit
    extra = spec.id.startswith(("cross_entropy-fused", "linear_cross_entropy"))
    assert len(reads) <= 1 + extra, reads


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_triplet_margin_loss_reads_once_where_distances_dwarf_the_margin(scale: float) -> None:
    # distances above 64 margins (embeddings of norm 1000) take the test for a gap the
    # difference rounds away: in the same read as the largest distance (it took a second one)
    generator = torch.Generator().manual_seed(0)
    anchor, positive, negative = (torch.randn(8, 5, generator=generator) * scale for _ in range(3))
    with _count_host_reads() as reads:
        loss = funcloss.triplet_margin_loss(anchor, positive, negative)
    assert len(reads) == 1, reads
    expected = torch.nn.functional.triplet_margin_loss(anchor, positive, negative)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@settings(max_examples=2)
@given(data=st.data())
def test_no_host_read_with_the_value_checks_off(spec: LossSpec, data: st.DataObject) -> None:
    case, reduction = _draw(data, spec)
    expected = _call(spec, case, reduction)
    with funcloss.set_value_checks(False), _count_host_reads() as reads:
        result = _call(spec, case, reduction)
    assert reads == []
    torch.testing.assert_close(result, expected, equal_nan=True)


def test_the_counter_counts_reads() -> None:
    t = torch.tensor([1, 2, 3])
    with _count_host_reads() as reads:
        bool((t > 1).any())
        t[t > 1]
        t[torch.tensor([0, 2])]  # integer indexing reads nothing
        t.tolist()
    assert len(reads) == 3, reads


def test_set_value_checks_switch_and_context_manager() -> None:
    log_probs, bad = torch.zeros(2, 3), torch.tensor([0, 7])
    with pytest.raises(IndexError, match=r"nll_loss: `target` values must be in \[0, 3\)"):
        funcloss.nll_loss(log_probs, bad)
    with funcloss.set_value_checks(False):
        funcloss.ctc_loss(torch.zeros(3, 1, 2), torch.tensor([[1]]), [9], [1])  # not checked
        with funcloss.set_value_checks(True), pytest.raises(ValueError, match="input_lengths"):
            funcloss.ctc_loss(torch.zeros(3, 1, 2), torch.tensor([[1]]), [9], [1])
    with pytest.raises(IndexError):
        funcloss.nll_loss(log_probs, bad)
    funcloss.set_value_checks(False)
    try:
        funcloss.binary_cross_entropy(torch.tensor([2.0]), torch.tensor([1.0]))
    finally:
        funcloss.set_value_checks(True)
    with pytest.raises(TypeError, match=r"set_value_checks: `enabled` must be a bool, got int\."):
        funcloss.set_value_checks(0)  # type: ignore[arg-type]
