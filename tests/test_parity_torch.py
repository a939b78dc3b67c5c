"""Parity with torch's own loss test samples: every case of :mod:`tests.parity_torch` passes.

One test per case (OpInfo reference and error inputs in float32 and float64, common_nn criterion
tests, common_modules' loss module inputs), id ``<loss>[.<variant>]-<f32|f64|error>-<k>``,
``<criterion|new_module>-<test>-<dtype>`` or ``module_db-<Class>-<dtype>-<k>[-<desc>]``.
``python -m tests.parity_report`` prints the same results as counts.

No case is skipped or expected to fail. The README's deliberate differences
("Where funcloss deliberately differs from torch") that touch these samples change how a case is
checked, never whether; they are listed in ``parity_torch.DELIBERATE`` with the README's wording,
and ``test_deliberate_differences_are_documented`` keeps that list and the README in step.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from . import parity_torch as parity
from .test_api import LOSSES

ROOT = Path(__file__).resolve().parents[1]
CASES = parity.all_cases()
# Slow (CI runs them): ctc_loss's samples (T=50, N=16, C=20; module_db's CTCLoss inputs are
# alike) take 1-2 s each through the
# pure-torch recursion; linear_cross_entropy's 'chunked' and 'chunked_none' OpInfos repeat the
# plain variant's ~110 samples per dtype with torch's `options=` added (two thirds of that loss's
# cases, about 0.3 s each).
SLOW = ("ctc_loss-", "linear_cross_entropy.chunked", "module_db-CTCLoss-")


def _param(case: parity.Case) -> object:
    marks = [pytest.mark.slow] if case.id.startswith(SLOW) else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_parity(case: parity.Case) -> None:
    result = parity.check(case)
    failures = "\n".join(f"  {kind}: {message}" for kind, message in result.failures.items())
    if not result.ok:
        pytest.fail(f"{case.id} [{case.description}]\n{failures}", pytrace=False)


# ------------------------------------------------------------------------------ the harness


def test_every_loss_opinfo_and_every_loss_is_covered() -> None:
    from torch.testing._internal.common_methods_invocations import op_db

    opinfos = {op.name for op in op_db if op.name.startswith("nn.functional.")}
    loss_like = {n for n in opinfos if re.search(r"loss|entropy|kl_div", n)}
    covered = {f"nn.functional.{c.loss}" for c in CASES if c.source.startswith("opinfo")}
    assert loss_like <= covered, f"loss OpInfos without cases: {sorted(loss_like - covered)}"
    # torch's losses (the ones torch.nn.functional has); those beyond torch have anchors instead
    torch_losses = {name for name in LOSSES if hasattr(torch.nn.functional, name)}
    assert len(torch_losses) >= 22
    assert {c.loss for c in CASES} >= torch_losses, "a torch loss has no parity case"
    for source in ("opinfo", "opinfo-error", "criterion", "new_module", "module_db"):
        assert any(c.source == source for c in CASES), f"no {source} cases"
    for dtype in parity.DTYPES:
        assert any(c.dtype == dtype for c in CASES)


def test_cases_cover_gradients_modules_and_transforms() -> None:
    """Most value cases differentiate something and most functional ones have a module form,
    so the gradient, module, vmap and jacrev checks are not vacuous."""
    values = [c for c in CASES if not c.is_error]
    assert sum(bool(c.wrt) for c in values) > 0.9 * len(values)
    opinfo = [c for c in values if c.source == "opinfo"]
    assert sum(c.fl_module_call is not None for c in opinfo) > 0.9 * len(opinfo)


def _mse_case() -> parity.Case:
    return next(c for c in CASES if c.loss == "mse_loss" and c.source == "opinfo")


def test_harness_catches_a_wrong_value_and_gradient() -> None:
    case = _mse_case()
    torch_call = case.torch_call
    wrong = parity.Case(**{**case.__dict__, "fl_call": lambda *a: 1.001 * torch_call(*a)})
    result = parity.check(wrong)
    assert {"value", "grad", "jacrev"} <= set(result.failures), result.failures


def test_harness_catches_a_missing_error() -> None:
    case = next(c for c in CASES if c.is_error and c.loss == "l1_loss")
    silent = parity.Case(**{**case.__dict__, "fl_call": lambda *a: torch.zeros(())})
    assert "error" in parity.check(silent).failures


def test_harness_catches_a_vmap_that_differs_from_the_loop() -> None:
    case = _mse_case()
    fl_call = case.fl_call

    def batch_confused(*leaves: torch.Tensor) -> torch.Tensor:
        out = fl_call(*leaves)
        return out + out.sum() * 0 + leaves[0].sum() * 1e-3  # depends on the whole batch

    wrong = parity.Case(**{**case.__dict__, "fl_call": batch_confused})
    failures = parity.check(wrong).failures
    assert "value" in failures or "vmap" in failures


def test_harness_central_differences_reject_torchs_ctc_gradient() -> None:
    """The ctc_loss oracle is independent of torch's backward: torch's own op, checked the same
    way, fails (its log_probs gradient is off by exp(log_probs))."""
    case = next(c for c in CASES if c.loss == "ctc_loss" and c.dtype == torch.float64)
    assert case.fd_wrt
    as_torch = parity.Case(**{**case.__dict__, "fl_call": case.torch_call})
    assert "grad" in parity.check(as_torch).failures


def test_deliberate_differences_are_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Where funcloss deliberately differs from torch", 1)[1]
    section = " ".join(section.split("\n## ", 1)[0].split()).lower()
    for name, (wording, _how) in parity.DELIBERATE.items():
        assert wording.lower() in section, f"deliberate difference {name!r} not in the README"


def test_torch_test_imports_leave_the_suite_alone() -> None:
    """torch.testing._internal's import loads its own Hypothesis profile and freezes the
    torch.backends flags; after building the cases (at collection), neither has stuck."""
    from hypothesis import settings

    want = os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "quick")
    assert settings._current_profile == want  # conftest's profile, not "pytorch_ci"/"dev"
    assert settings.default.max_examples == settings.get_profile(want).max_examples
    assert not torch.backends.flags_frozen()
