"""The public surface: every loss has its module, docstring, registry spec and README line."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

import funcloss
import funcloss.nn as fnn

from .registry import SPECS

ROOT = Path(__file__).resolve().parents[1]
NOT_LOSSES = {"__version__", "custom_backward", "loss_module", "set_value_checks"}
LOSSES = sorted(set(funcloss.__all__) - NOT_LOSSES)
LOSS_PARAMS = [pytest.param(name, id=name) for name in LOSSES]


def test_all_is_sorted_and_exported() -> None:
    assert funcloss.__all__ == sorted(funcloss.__all__)
    for name in funcloss.__all__:
        assert hasattr(funcloss, name)


@pytest.mark.parametrize("name", LOSS_PARAMS)
def test_loss_has_a_module(name: str) -> None:
    fn = getattr(funcloss, name)
    modules = [getattr(fnn, m) for m in fnn.__all__ if getattr(fnn, m)._fn is fn]
    assert len(modules) == 1, f"{name} needs exactly one module in funcloss.nn"


@pytest.mark.parametrize("name", LOSS_PARAMS)
def test_loss_has_a_spec(name: str) -> None:
    fn = getattr(funcloss, name)
    assert any(spec.fn is fn for spec in SPECS), f"{name} has no spec in tests/specs_*.py"


@pytest.mark.parametrize("name", LOSS_PARAMS)
def test_loss_docstring_sections(name: str) -> None:
    doc = inspect.getdoc(getattr(funcloss, name)) or ""
    for section in (".. math::", "Args:", "Returns:", "Examples:", ">>> "):
        assert section in doc, f"{name}'s docstring lacks {section!r}"


@pytest.mark.parametrize("name", LOSS_PARAMS)
def test_loss_in_readme_catalogue(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^\| `{name}` \|", readme, re.MULTILINE), f"README catalogue lacks {name}"


def test_losses_are_not_torch_calls() -> None:
    """No funcloss loss calls a torch loss (or its C++ kernel): each is built from torch ops."""
    names = {name for name in dir(torch.nn.functional) if "loss" in name}
    names |= {"cross_entropy", "kl_div", "binary_cross_entropy", "linear_cross_entropy"}
    names.add("binary_cross_entropy_with_logits")
    owners = r"(?:\bF|functional|torch\._C\._nn|torch\.ops\.aten|_VF)"
    pattern = re.compile(owners + r"\.(" + "|".join(sorted(names)) + r")\(")
    for path in sorted((ROOT / "funcloss").rglob("*.py")):
        if "testing" in path.parts:
            continue  # the testing kit compares against torch's losses on purpose
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.name}:{number}"
            assert not pattern.search(line), f"{where} calls a torch loss: {line.strip()}"
