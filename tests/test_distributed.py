"""funcloss.distributed on a 2-rank gloo group: values and gradients against torch and a
float64 oracle on the gathered logits, the transform matrix, collectives per call, and the
anchors' bugs (weight + ignore_index, label smoothing over the local vocabulary, logits
overwritten). One pool of processes per pytest process (tests/distributed_pool.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

import funcloss
from funcloss.distributed import VocabParallelCrossEntropyLoss, vocab_parallel_cross_entropy
from tests import distributed_cases as cases
from tests.distributed_pool import Pool, RankError, available

_UNAVAILABLE = available()
needs_pool = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))
# One pool per pytest process: keep the file's tests on one xdist worker (`--dist loadgroup`).
pytestmark = pytest.mark.xdist_group("distributed")


@pytest.fixture(scope="session")
def pool():
    pool = Pool(world_size=2)
    yield pool
    pool.close()


def _check_parity(results: list[dict], spec: dict, tol: float) -> None:
    data = cases.problem(spec)
    full = data["clean"].clone().requires_grad_()
    expected = cases.oracle(full, spec, data)
    cotangent = data["cotangent"] if expected.dim() else torch.ones(())
    (expected_grad,) = torch.autograd.grad(expected, full, cotangent)
    first = results[0]["loss"]
    for result in results:
        # the same bits on every rank (nan included: an all-ignored mean, as torch's)
        assert torch.equal(result["loss"].isnan(), first.isnan())
        assert torch.equal(result["loss"].nan_to_num(), first.nan_to_num())
        assert result["untouched"]  # the logits are not written to
        assert result["calls"] == (1 if spec["start"] else 2)
        assert result["backward_calls"] == 0
    grad = torch.cat([r["grad"] for r in results], 1).double()
    assert grad.isfinite().all()
    torch.testing.assert_close(
        first.double(), expected.detach(), atol=tol, rtol=tol, equal_nan=True
    )
    torch.testing.assert_close(grad, expected_grad, atol=tol, rtol=tol)
    if spec["z_loss"] == 0 and spec["where"] is False and not spec["poison"]:
        # the oracle is torch's: F.cross_entropy and funcloss.cross_entropy, gathered logits
        reference = cases.torch_loss(data["logits"], spec, data)
        torch.testing.assert_close(
            expected.detach(), reference, atol=1e-12, rtol=1e-12, equal_nan=True
        )
        kwargs = {"reduction": spec["reduction"], "label_smoothing": spec["smoothing"]}
        ours = funcloss.cross_entropy(data["logits"], data["target"], data["weight"], **kwargs)
        torch.testing.assert_close(ours, reference, atol=1e-12, rtol=1e-12, equal_nan=True)


OPTIONS = {
    "plain": {},
    "uneven_default_start": {"sizes": (2, 6), "start": False},
    "weight": {"weight": True},
    "ignore_index": {"ignore": True},
    # megatron-core smooths over the local vocabulary; torch's DTensor loss_parallel fails
    "label_smoothing_uneven": {"smoothing": 0.3, "sizes": (1, 6), "start": False},
    # torch's loss_parallel gathers the class weight with the unmasked target and crashes
    "weight_ignore_index": {"weight": True, "ignore": True, "start": False},
    "everything": {"weight": True, "ignore": True, "smoothing": 0.1, "z_loss": 0.02},
    "z_loss": {"z_loss": 0.1, "sizes": (4, 3)},
    "where": {"where": True},
    "where_poisoned": {"where": True, "ignore": True, "weight": True, "poison": True},
    "k_dim": {"kdims": (3,), "ignore": True, "weight": True, "smoothing": 0.2, "start": False},
    "num_classes": {"num_classes": True, "smoothing": 0.1},
    "all_ignored": {"all_ignored": True, "ignore": True, "weight": True},
    "all_ignored_where": {"all_ignored": True, "ignore": True, "where": True, "start": False},
    "all_masked": {"where": True, "n": 1},
}


@needs_pool
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_parity(pool: Pool, options: dict, reduction: str) -> None:
    spec = cases.spec_of(**options, reduction=reduction)
    _check_parity(pool.run("parity", spec=spec), spec, 1e-12)


@needs_pool
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_low_precision(pool: Pool, dtype: str) -> None:
    # bf16 logits: statistics in fp32, so the loss is the fp64 one rounded to bf16 (about
    # 3 significant digits); the gradient is rounded to bf16 per element
    spec = cases.spec_of(dtype=dtype, weight=True, ignore=True, smoothing=0.1, start=False)
    results = pool.run("parity", spec=spec)
    assert results[0]["loss"].dtype == getattr(torch, dtype)
    _check_parity(results, spec, 1e-5 if dtype == "float32" else 1e-2)


@needs_pool
def test_module(pool: Pool) -> None:
    spec = cases.spec_of(weight=True, ignore=True, smoothing=0.1, where=True)
    _check_parity(pool.run("parity", spec=spec, module=True), spec, 1e-12)


TRANSFORM_SPECS = {
    "plain": {},
    "everything_default_start": {
        "weight": True,
        "ignore": True,
        "smoothing": 0.1,
        "z_loss": 0.02,
        "start": False,
        "sizes": (2, 5),
        "where": True,
        "poison": True,
    },
}


@needs_pool
@pytest.mark.parametrize("spec", TRANSFORM_SPECS.values(), ids=TRANSFORM_SPECS.keys())
def test_transforms(pool: Pool, spec: dict) -> None:
    """grad, vmap, vmap(grad), jacrev, jacfwd, hessian, jacrev(jacrev): exact, with the same
    collectives as one call (vmap runs one collective on the batch)."""
    specs = {
        name: cases.spec_of(
            **spec,
            reduction="none" if name in ("jacrev", "jacfwd") else "mean",
            batch=3 if name.startswith("vmap") else 0,
        )
        for name in cases.TRANSFORMS
    }
    for name, one in specs.items():
        results = pool.run("transforms", spec=one, names=(name,))
        data = cases.problem(one)
        for rank, result in enumerate(results):
            expected = cases.oracle_transform(name, one, data, rank)
            torch.testing.assert_close(result[name], expected, atol=1e-12, rtol=1e-12)
            assert result[name + "_calls"] == (1 if one["start"] else 2), name


@needs_pool
def test_compile_aot_eager(pool: Pool) -> None:
    """torch.compile(fullgraph=True): value and gradient, every option, default start."""
    spec = cases.spec_of(**TRANSFORM_SPECS["everything_default_start"])
    results = pool.run("transforms", spec=spec, names=("compile",))
    data = cases.problem(spec)
    for rank, result in enumerate(results):
        expected = cases.oracle_transform("compile", spec, data, rank)
        torch.testing.assert_close(result["compile"], expected, atol=1e-12, rtol=1e-12)


@needs_pool
def test_target_out_of_range(pool: Pool) -> None:
    for start in (True, False):  # C given by the sizes: checked after the first gather
        spec = cases.spec_of(start=start)
        with pytest.raises(RankError) as error:
            pool.run("out_of_range", spec=spec)
        assert all("`target` values must be in [0, 7)" in t for t in error.value.tracebacks)


# -- errors (no process group needed: the checks come first) -----------------------------------

X = torch.randn(4, 3)
Y = torch.tensor([0, 5, 1, 2])


@pytest.mark.parametrize(
    ("kwargs", "kind", "match"),
    [
        ({"reduction": "avg"}, ValueError, r"`reduction` must be one of"),
        ({"label_smoothing": 1.5}, ValueError, r"`label_smoothing` must be in \[0.0, 1.0\]"),
        ({"z_loss": -1.0}, ValueError, r"`z_loss` must be non-negative"),
        ({"vocab_start": -1}, ValueError, r"`vocab_start` must be non-negative"),
        ({"num_classes": 0}, ValueError, r"`num_classes` must be positive"),
        ({"where": torch.ones(4)}, TypeError, r"`where` must be a bool tensor"),
        ({"where": torch.ones(4, 3, dtype=torch.bool)}, ValueError, r"`where` must be broad"),
        ({"weight": torch.ones(7)}, ValueError, r"`weight` must be this rank's slice.*\(3,\)"),
        ({"weight": torch.ones(3, requires_grad=True)}, ValueError, r"`weight` must not requi"),
    ],
)
def test_errors(kwargs: dict, kind: type, match: str) -> None:
    with pytest.raises(kind, match="vocab_parallel_cross_entropy: " + match):
        vocab_parallel_cross_entropy(X, Y, **kwargs)


def test_shape_errors() -> None:
    fn = vocab_parallel_cross_entropy
    with pytest.raises(ValueError, match=r"`target` must have shape \(4,\).*got \(3,\)"):
        fn(X, Y[:3])
    with pytest.raises(TypeError, match=r"`target` must hold class indices .*probability"):
        fn(X, torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"`input_shard` must hold at least one class"):
        fn(torch.zeros(4, 0), Y)


def test_needs_a_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(RuntimeError, match=r"torch.distributed must be initialised first"):
        vocab_parallel_cross_entropy(X, Y)


def test_module_checks_config_at_construction() -> None:
    with pytest.raises(ValueError, match=r"VocabParallelCrossEntropyLoss: `label_smoothing`"):
        VocabParallelCrossEntropyLoss(label_smoothing=2.0)
    loss = VocabParallelCrossEntropyLoss(torch.ones(3), vocab_start=3, reduction="sum")
    assert set(loss.state_dict()) == {"weight"}
    assert "vocab_start=3" in repr(loss)


@needs_pool
def test_compile_vmap_is_a_clear_error(pool: Pool) -> None:
    spec = cases.spec_of(batch=2)
    with pytest.raises(RankError) as error:
        pool.run("transforms", spec=spec, names=("compile_vmap",))
    assert all("vmap rule is lost while compiling" in t for t in error.value.tracebacks)


@needs_pool
@pytest.mark.slow
@pytest.mark.parametrize("name", ["compile_grad", "inductor"])
def test_compile_slow(pool: Pool, name: str) -> None:
    """torch.compile(grad(f)) (aot_eager) and inductor: value and gradient."""
    spec = cases.spec_of(**TRANSFORM_SPECS["everything_default_start"])
    results = pool.run("transforms", spec=spec, names=(name,))
    data = cases.problem(spec)
    for rank, result in enumerate(results):
        expected = cases.oracle_transform(name, spec, data, rank)
        torch.testing.assert_close(result[name], expected, atol=1e-12, rtol=1e-12)


DTENSOR_SPECS = {
    "plain": {"sizes": (4, 3)},
    "weight_ignore_index_smoothing": {
        "sizes": (4, 3),
        "weight": True,
        "ignore": True,
        "smoothing": 0.2,
        "reduction": "none",
    },
}


@needs_pool
@pytest.mark.parametrize("options", DTENSOR_SPECS.values(), ids=DTENSOR_SPECS.keys())
def test_dtensor(pool: Pool, options: dict) -> None:
    """A DTensor sharded on the class dim (torch's layout: 7 classes as 4 + 3), where torch's
    loss_parallel crashes (weight + ignore_index) or fails (label smoothing)."""
    spec = cases.spec_of(**options)
    results = pool.run("dtensor", spec=spec)
    assert all(r["type"] == "Tensor" for r in results)
    _check_parity(results, spec, 1e-12)


@pytest.mark.multigpu
@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="needs 2 GPUs (the NCCL rerun of this suite under torchrun)",
)
def test_multigpu_torchrun() -> None:
    """The parity cases on NCCL, 2 GPUs, launched by torchrun (tests/distributed_cases.py)."""
    torchrun = shutil.which("torchrun")
    assert torchrun is not None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [torchrun, "--nproc-per-node", "2", "-m", "tests.distributed_cases", "nccl"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "parity ok" in result.stdout


def test_api() -> None:
    import inspect
    import pickle

    import funcloss.distributed as distributed

    assert distributed.__all__ == sorted(distributed.__all__)
    doc = inspect.getdoc(vocab_parallel_cross_entropy)
    for section in ("Args:", "Returns:", "Raises:", "Examples:", ".. math::", "where:"):
        assert section in doc
    forward = inspect.signature(VocabParallelCrossEntropyLoss.forward).parameters
    assert list(forward) == ["self", "input_shard", "target", "where"]
    loss = VocabParallelCrossEntropyLoss(torch.ones(3), label_smoothing=0.1)
    assert repr(pickle.loads(pickle.dumps(loss))) == repr(loss)


# -- vocab_parallel_linear_cross_entropy ------------------------------------------------------

LINEAR_OPTIONS = {
    "plain": {},
    "everything_uneven": {
        "sizes": (2, 5),
        "weight": True,
        "ignore": True,
        "smoothing": 0.1,
        "z_loss": 0.02,
        "where": True,
        "start": False,
    },
}


@needs_pool
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("options", LINEAR_OPTIONS.values(), ids=LINEAR_OPTIONS.keys())
@pytest.mark.parametrize("input_grad", ["all_reduce", "partial"])
def test_linear_parity(pool: Pool, options: dict, reduction: str, input_grad: str) -> None:
    spec = cases.spec_of(**options, reduction=reduction)
    softcap = 3.0 if options else None
    results = pool.run("linear", spec=spec, softcap=softcap, input_grad=input_grad, chunk_size=2)
    expected = cases.linear_oracle(spec, softcap)
    close = {"atol": 1e-12, "rtol": 1e-12}
    for rank, result in enumerate(results):
        assert torch.equal(result["loss"], results[0]["loss"])
        torch.testing.assert_close(result["loss"], expected["loss"], **close)
        for name in ("linear_weight", "bias"):
            local = cases.shard(spec, expected[name], rank, 0)
            torch.testing.assert_close(result[name], local, **close)
        # the fused training step ("mean" in eager mode) gathers per chunk of 2 rows (its
        # gradient needs each row's global lse); the recomputing path once; both after one
        # gather of the shard sizes without vocab_start
        gathers = -(-spec["n"] // 2) if reduction == "mean" else 1
        assert result["calls"] == gathers + (0 if spec["start"] else 1)
        assert result["backward_calls"] == (1 if input_grad == "all_reduce" else 0)
    if input_grad == "all_reduce":
        for result in results:
            torch.testing.assert_close(result["input"], expected["input"], **close)
    else:  # each rank's part; their sum is the gradient
        total = results[0]["input"] + results[1]["input"]
        torch.testing.assert_close(total, expected["input"], **close)


@needs_pool
def test_linear_transforms(pool: Pool) -> None:
    """Derivatives in the weight and bias shards are exact under grad and jacfwd; forward-mode
    and second derivatives in the replicated input raise (they need the other ranks' terms)."""
    spec = cases.spec_of(**LINEAR_OPTIONS["everything_uneven"], reduction="mean")
    expected = cases.linear_oracle(spec, 3.0)
    results = pool.run("linear", spec=spec, softcap=3.0, transform="grad_weight")
    for rank, result in enumerate(results):
        for got, name in zip(result["grad"], ("linear_weight", "bias"), strict=True):
            local = cases.shard(spec, expected[name], rank, 0)
            torch.testing.assert_close(got, local, atol=1e-12, rtol=1e-12)
    results = pool.run("linear", spec=spec, softcap=3.0, transform="jacfwd_weight")
    for rank, result in enumerate(results):
        local = cases.shard(spec, expected["linear_weight"], rank, 0)
        torch.testing.assert_close(result["jacobian"], local, atol=1e-12, rtol=1e-12)
    # create_graph=True after the fused step: the weight's second derivative, exact
    results = pool.run("linear", spec=spec, softcap=3.0, transform="double_backward_weight")
    for rank, result in enumerate(results):
        expected_second = cases.linear_second_oracle(spec, 3.0, rank)
        torch.testing.assert_close(result["second"], expected_second, atol=1e-12, rtol=1e-12)
    # a second backward (retain_graph) recomputes: the same gradients again
    results = pool.run("linear", spec=spec, softcap=3.0, transform="twice")
    for rank, result in enumerate(results):
        for name in ("linear_weight", "bias"):
            local = cases.shard(spec, expected[name], rank, 0)
            torch.testing.assert_close(result[name], 2 * local, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(result["input"], 2 * expected["input"], atol=1e-12, rtol=1e-12)
    for transform in ("jacfwd_input", "hessian_input", "double_backward_input"):
        with pytest.raises(RankError) as error:
            pool.run("linear", spec=spec, softcap=3.0, transform=transform)
        assert all("replicated `input`" in t for t in error.value.tracebacks), transform


@needs_pool
def test_linear_dtensor(pool: Pool) -> None:
    """The layer's weight as a DTensor sharded on its rows (torch's layout, 4 + 3 classes),
    the full bias and class weight sliced to the shard."""
    spec = cases.spec_of(sizes=(4, 3), weight=True, ignore=True, smoothing=0.1)
    results = pool.run("linear", spec=spec, transform="dtensor")
    expected = cases.linear_oracle({**spec}, None)
    for rank, result in enumerate(results):
        torch.testing.assert_close(result["loss"], expected["loss"], atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(result["input"], expected["input"], atol=1e-12, rtol=1e-12)
        local = cases.shard(spec, expected["linear_weight"], rank, 0)
        torch.testing.assert_close(result["linear_weight"], local, atol=1e-12, rtol=1e-12)


def test_linear_errors() -> None:
    from funcloss.distributed import (
        VocabParallelLinearCrossEntropyLoss,
        vocab_parallel_linear_cross_entropy,
    )

    fn = vocab_parallel_linear_cross_entropy
    h, w, y = torch.randn(4, 5), torch.randn(3, 5), torch.tensor([0, 1, 2, 0])
    name = "vocab_parallel_linear_cross_entropy: "
    with pytest.raises(ValueError, match=name + r"`input_grad` must be 'all_reduce' or 'partial'"):
        fn(h, w, y, input_grad="sum")
    with pytest.raises(
        ValueError, match=name + r"`linear_weight_shard` must have shape \(V_r, 5\)"
    ):
        fn(h, torch.randn(3, 4), y)
    with pytest.raises(ValueError, match=name + r"`linear_bias_shard` must have shape \(3,\)"):
        fn(h, w, y, linear_bias_shard=torch.zeros(4))
    with pytest.raises(ValueError, match=name + r"`softcap` must be positive"):
        fn(h, w, y, softcap=0.0)
    with pytest.raises(ValueError, match=r"VocabParallelLinearCrossEntropyLoss: `input_grad`"):
        VocabParallelLinearCrossEntropyLoss(input_grad="x")
