"""``funcloss/nn.pyi`` is current: generated from the classes ``loss_module`` builds, so a loss
that gains an argument cannot leave the stub behind (rerun ``python -m tests.nn_stub``)."""

from __future__ import annotations

import inspect

import funcloss.nn as fnn

from .nn_stub import STUB, generate


def test_stub_matches_the_classes() -> None:
    assert STUB.read_text() == generate(), "funcloss/nn.pyi is stale: run python -m tests.nn_stub"


def test_stub_names_every_constructor_keyword() -> None:
    # The generated text, not just equality with itself: each class's keywords appear in it.
    text = STUB.read_text()
    for name in fnn.__all__:
        cls = getattr(fnn, name)
        block = text.split(f"class {name}(nn.Module):", 1)[1].split("\nclass ", 1)[0]
        init = inspect.signature(cls) if hasattr(cls, "_fn") else inspect.signature(cls.__init__)
        for parameter in init.parameters:
            if parameter != "self":
                assert f"{parameter}:" in block, (name, parameter)
