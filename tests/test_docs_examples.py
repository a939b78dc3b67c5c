"""Every ``python`` code block of the README and of docs/*.md runs as written, copied out to a
fresh directory (no repository conftest, so no test-wide Hypothesis settings): the blocks of
one page run in order, as one pytest file, so a page's ``test_*`` functions run too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# docs/_generated holds the docs build's copies of README sections (the README runs here
# itself); docs/_build is build output. A block fenced ```` ```python distributed ```` needs a
# process group and is not run (tests/test_example_vocab_parallel.py runs its example).
PAGES = [
    ROOT / "README.md",
    *sorted(
        p
        for p in (ROOT / "docs").glob("**/*.md")
        if not {"_generated", "_build"} & set(p.relative_to(ROOT / "docs").parts)
    ),
]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize(
    "page", [p for p in PAGES if blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run_in_a_fresh_directory(page: Path, tmp_path: Path) -> None:
    stem = re.sub(r"\W", "_", page.stem).lower()
    script = tmp_path / f"test_{stem}_examples.py"
    script.write_text("\n\n".join(blocks(page)))
    # Only funcloss on the path (the checkout's root, as an installed package would be); the run
    # sees none of the repository's conftest, pytest options or Hypothesis profiles.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HYPOTHESIS_PROFILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "passed" in result.stdout
