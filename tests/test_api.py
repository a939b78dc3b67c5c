"""The public surface: every loss has its module, docstring, registry spec and README line."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import funcloss
import funcloss.nn as fnn

from .registry import SPECS

ROOT = Path(__file__).resolve().parents[1]
NOT_LOSSES = {
    "__version__",
    "custom_backward",
    "loss_module",
    "make_fenchel_young_loss",
    "set_value_checks",
    "smooth_labels",
    "sparsemax",
    "tree_loss",
}
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


def test_nn_is_reachable_after_import_funcloss() -> None:
    """``import funcloss`` then ``funcloss.nn.CrossEntropyLoss``, in a fresh interpreter; the
    import pulls in neither funcloss.testing nor its test-only dependency (hypothesis)."""
    code = (
        "import sys, torch, funcloss\n"
        "loss = funcloss.nn.CrossEntropyLoss(label_smoothing=0.1)\n"
        "x, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])\n"
        "want = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(x, y)\n"
        "torch.testing.assert_close(loss(x, y), want)\n"
        "assert funcloss.nn.__name__ == 'funcloss.nn'\n"
        "leaked = {'funcloss.testing', 'hypothesis'} & set(sys.modules)\n"
        "assert not leaked, leaked\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


# A path the README names: a Markdown link or image target, or, inside code (spans and shell
# blocks; Python blocks hold code, not paths), a token that looks like a repository path (has a
# slash or a file extension) or the module of a ``python -m`` command.
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"```.*?```|`[^`]+`", re.DOTALL)
_PATHLIKE = re.compile(r"^[\w.*-]+(/[\w.*-]+)+/?$|^[\w*-][\w.*-]*\.(py|md|png|toml|cfg|txt|yml)$")


def _readme_paths(text: str) -> list[str]:
    paths = [t.split("#")[0] for t in _LINK.findall(text)]
    for code in _CODE.findall(text):
        if code.startswith("```") and code.split("\n", 1)[0].strip("`") not in {"", "bash", "sh"}:
            continue
        tokens = code.strip("`").split()
        for before, token in zip(["", *tokens], tokens, strict=False):
            token = token.strip("\"'(),;:")
            if before == "-m" and re.fullmatch(r"[\w.]+", token):
                if token.split(".")[0] in {"tests", "examples", "benchmarks", "funcloss"}:
                    paths.append(token.replace(".", "/") + ".py")
            elif _PATHLIKE.match(token) and not re.match(r"^\w+\.\w+\(", token):
                paths.append(token)
    return sorted({t for t in paths if t and "://" not in t and not t.startswith("mailto:")})


def _missing(paths: list[str]) -> list[str]:
    missing = []
    for path in paths:
        where = (ROOT / path).resolve()
        inside = where == ROOT or ROOT in where.parents
        exists = any(ROOT.glob(path)) if "*" in path else where.exists()
        if not (inside and exists):
            missing.append(path)
    return missing


def test_readme_names_only_files_in_the_repository() -> None:
    paths = _readme_paths((ROOT / "README.md").read_text())
    assert "docs/design.md" in paths, "the README must link the design document"
    missing = _missing(paths)
    assert not missing, f"README names paths outside the repository or missing: {missing}"


def test_readme_path_check_catches_outside_and_missing_paths() -> None:
    text = (
        "See [design](../shared/DESIGN.md) and ![x](docs/nothing.png); run `python -m tests.nope`"
        " or `python examples/gone.py --quick`; `torch.nn.functional` and `a/b` prose."
    )
    paths = _readme_paths(text)
    assert set(_missing(paths)) == {
        "../shared/DESIGN.md",
        "docs/nothing.png",
        "tests/nope.py",
        "examples/gone.py",
        "a/b",
    }
