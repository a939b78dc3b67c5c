"""Test-wide settings: Hypothesis profiles, the vmap fallback as an error, torch's seed per test,
doctest names."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis.internal.conjecture import providers as _providers

# "quick" for local runs, "ci" (thorough, derandomized) when CI is set; override with
# HYPOTHESIS_PROFILE.
_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("quick", max_examples=6, **_COMMON)
settings.register_profile("ci", max_examples=12, derandomize=True, **_COMMON)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "quick")
)

# Hypothesis also draws literals found in the project's own imported modules ("local
# constants"). Which modules a worker has imported depends on the tests it ran before, and any
# edit to funcloss changes the literals, so even derandomized draws moved between two CI runs
# of one commit. Without them a test's draws depend only on the test.
if not hasattr(_providers, "_get_local_constants"):  # pragma: no cover - a Hypothesis upgrade
    raise RuntimeError("conftest.py: Hypothesis' local-constants hook moved; update the override")
_providers._get_local_constants = lambda: _providers._local_constants

# A batching rule missing anywhere in funcloss must fail, not fall back to the slow loop.
torch._C._functorch._set_vmap_fallback_enabled(False)
# Under pytest-xdist (the README's command runs one worker per core) each worker gets one thread.
_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(max(1, min(_THREADS, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _torch_seed() -> None:
    # Tests that draw with torch's global generator (torch.randn without a generator) get the
    # same draws whatever ran before them in the worker: every test starts from one seed.
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    import funcloss

    doctest_namespace["torch"] = torch
    doctest_namespace["funcloss"] = funcloss


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's hook reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Importing JAX costs 18-30 s of a loaded CI worker. Every test of a module that imports
    # `jax64` from tests/anchors.py (the JAX cross-checks: optax, rax) joins the xdist group
    # "jax", so under `--dist loadgroup` one worker imports JAX, not each. A new JAX anchor module
    # joins by importing jax64, as it must to get JAX on CPU in float64.
    for item in items:
        module = getattr(item, "module", None)
        if (
            module is not None
            and "jax64" in vars(module)
            and not item.get_closest_marker("xdist_group")
        ):
            item.add_marker(pytest.mark.xdist_group("jax"))
