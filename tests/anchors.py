"""Loading the anchor libraries that the cross-check tests compare funcloss with.

The anchors (optax/JAX, rax, kornia, MONAI, pytorch-metric-learning, entmax, timm, smp,
torchvision) are the ``anchors`` extra plus the packages ``.ci/run`` installs without their
dependencies; none is a dependency of funcloss. :func:`anchor` imports one (quietly: their import
warnings are not funcloss's) and skips the test when it is missing — except in CI, where a
missing anchor is a failure, so the cross-checks cannot silently stop running.

timm, segmentation_models_pytorch and torchvision do not import against the CPU torch (their
package ``__init__`` needs torchvision's compiled operators); their loss files are plain torch,
so :func:`load_file` loads a file of an installed package by path, as a module of a synthetic
package (relative imports inside that package's folder work), without running the package's
``__init__``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path
from types import ModuleType

import pytest

# (package, relative path) -> the module load_file made of it
_FILES: dict[tuple[str, str], ModuleType] = {}


def _missing(name: str, error: Exception) -> None:
    if os.environ.get("CI"):
        raise RuntimeError(f"anchor {name!r} is not installed in CI: {error}") from error
    pytest.skip(f"anchor {name!r} is not installed: {error}")


def anchor(name: str) -> ModuleType:
    """``import name`` (warnings ignored); skip when missing locally, fail in CI."""
    module = sys.modules.get(name)  # imported already: a plain lookup, which torch.compile traces
    if module is not None:
        return module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except ImportError as error:
        _missing(name, error)
        raise  # unreachable: _missing skips or raises


def _distribution_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"no installed package {package!r}")
    return Path(next(iter(spec.submodule_search_locations)))


def load_file(package: str, relative: str) -> ModuleType:
    """The module ``package/relative`` (e.g. ``("timm", "loss/asymmetric_loss.py")``), loaded by
    path without importing ``package``; skip when missing locally, fail in CI."""
    loaded = _FILES.get((package, relative))  # a plain lookup, which torch.compile traces
    if loaded is not None:
        return loaded
    try:
        root = _distribution_folder(package)
    except ImportError as error:
        _missing(package, error)
        raise
    path = root / relative
    parent = "_anchor_" + package + "." + ".".join(Path(relative).parent.parts)
    parent = parent.rstrip(".")
    name = f"{parent}.{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    # synthetic packages for each folder level, so `from .x import y` resolves beside the file
    prefix = ""
    folder = root
    for part in ("_anchor_" + package, *Path(relative).parent.parts):
        prefix = f"{prefix}.{part}" if prefix else part
        if part != "_anchor_" + package:
            folder = folder / part
        if prefix not in sys.modules:
            module = types.ModuleType(prefix)
            module.__path__ = [str(folder)]
            sys.modules[prefix] = module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    _FILES[(package, relative)] = module
    return module


def jax64() -> ModuleType:
    """``jax`` on CPU with float64 enabled (optax's and rax's cross-checks run in float64).

    A test module that imports this function runs in the xdist group "jax" (conftest.py), so
    one worker of the parallel suite imports JAX, not each."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    jax = anchor("jax")
    jax.config.update("jax_enable_x64", True)
    return jax
