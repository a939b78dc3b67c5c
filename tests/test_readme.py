"""The README's Python blocks run, in order, in one namespace (a reader's session).

A block fenced ```` ```python distributed ```` needs a process group: it is not run here, and
``tests/test_example_vocab_parallel.py`` runs the example it comes from.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

import funcloss

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run() -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 5, "the README's examples went missing"
    others = re.findall(r"```python (\S+)", text)
    assert set(others) <= {"distributed"}, f"README python blocks not run: {others}"
    namespace = {"torch": torch, "funcloss": funcloss}
    torch.manual_seed(0)
    try:
        for number, block in enumerate(blocks):
            try:
                exec(compile(block, f"README.md python block {number}", "exec"), namespace)
            except Exception as error:  # name the block that failed
                raise AssertionError(f"README python block {number} failed:\n{block}") from error
    finally:
        funcloss.set_value_checks(True)
