"""Test-wide settings: Hypothesis profiles, the vmap fallback as an error, doctest names."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

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

# A batching rule missing anywhere in funcloss must fail, not fall back to the slow loop.
torch._C._functorch._set_vmap_fallback_enabled(False)
# Under pytest-xdist (the README's command runs one worker per core) each worker gets one thread.
_THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(max(1, min(_THREADS, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    import funcloss

    doctest_namespace["torch"] = torch
    doctest_namespace["funcloss"] = funcloss
