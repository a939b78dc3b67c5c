"""Measure the transform-support table from the registry and cache it for the docs.

Run from the repository root: ``python docs/_ext/transform_support_cache.py``. It calls
``tests.transform_support.measure`` on every spec of ``tests.registry.SPECS`` (torch's loss and
funcloss's, each under every transform in ``TRANSFORMS``) and writes
``docs/transform_support.json``. Measuring everything takes minutes (``torch.compile`` twice per
spec), too slow for each docs build, so the build renders the cache and
``tests/test_docs.py`` fails when the cache is stale: a spec added or removed, another torch, or
a re-measured sample of cells that disagrees.

``--missing`` measures only the specs the cache lacks (a loss just added) and keeps the cached
rows of the others, in the registry's order; with another torch it measures everything.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "docs" / "transform_support.json"


def measure_all(only: str | None = None, skip: frozenset[str] = frozenset()) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from tests.registry import SPECS
    from tests.transform_support import TRANSFORMS, measure

    torch._C._functorch._set_vmap_fallback_enabled(True)
    rows = {}
    for spec in SPECS:
        if (only and only not in spec.id) or spec.id in skip:
            continue
        start = time.perf_counter()
        cells = measure(spec)
        rows[spec.id] = {t: {"torch": c[0], "funcloss": c[1]} for t, c in cells.items()}
        if spec.anchor_name != "torch":  # a loss beyond torch: its anchor, or none ("n/a")
            rows[spec.id]["reference"] = spec.anchor_name or "n/a"
        print(f"{spec.id}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return {
        "torch": torch.__version__,
        "transforms": list(TRANSFORMS),
        "specs": [spec.id for spec in SPECS],
        "rows": rows,
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missing", action="store_true", help="measure only uncached specs")
    options = parser.parse_args()
    cached = json.loads(CACHE.read_text()) if options.missing and CACHE.exists() else None
    import torch

    if cached is None or cached["torch"] != torch.__version__:
        table = measure_all()
    else:
        table = measure_all(skip=frozenset(cached["rows"]))
        rows = {**cached["rows"], **table["rows"]}
        table["rows"] = {spec: rows[spec] for spec in table["specs"]}
    CACHE.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    print(f"wrote {CACHE}")


if __name__ == "__main__":
    main()
