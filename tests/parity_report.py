"""Print funcloss's parity counts against torch's own loss test samples.

``python -m tests.parity_report`` runs :mod:`tests.parity_torch` on every case and prints the
totals, the counts per loss and per failure category (with one example each); ``--markdown``
prints the same as Markdown, ``-k TEXT`` keeps the cases whose id contains TEXT, ``--list``
prints every failing case.
"""

from __future__ import annotations

import argparse
import collections
import time

from .parity_torch import CATEGORIES, all_cases, check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the cases whose id contains this")
    parser.add_argument("--list", action="store_true", help="list every failing case")
    args = parser.parse_args()
    start = time.perf_counter()
    cases = [c for c in all_cases() if args.k in c.id]
    built = time.perf_counter() - start
    results = [check(c) for c in cases]
    elapsed = time.perf_counter() - start
    failing = [r for r in results if not r.ok]
    share = len(failing) / max(1, len(results))
    print(f"cases: {len(results)}, failing: {len(failing)} ({share:.1%})")
    print(f"time: {elapsed:.0f} s ({built:.0f} s to build the cases)")
    per_source = collections.Counter(r.case.source for r in results)
    per_source_fail = collections.Counter(r.case.source for r in failing)
    print("\nper source: total / failing")
    for source, n in sorted(per_source.items()):
        print(f"  {source:14s} {n:5d} {per_source_fail[source]:5d}")
    per_loss = collections.Counter(r.case.loss for r in results)
    per_loss_fail = collections.Counter(r.case.loss for r in failing)
    print("\nper loss: total / failing")
    for loss, n in sorted(per_loss.items()):
        print(f"  {loss:34s} {n:5d} {per_loss_fail[loss]:5d}")
    print("\nper category: failing cases, one example")
    for category in CATEGORIES:
        hit = [r for r in failing if category in r.failures]
        if not hit:
            continue
        losses = collections.Counter(r.case.loss for r in hit)
        example = hit[0]
        per = ", ".join(f"{k} {v}" for k, v in sorted(losses.items()))
        print(f"  {category}: {len(hit)}  ({per})")
        print(f"    e.g. {example.case.id} [{example.case.description[:160]}]")
        print(f"         {example.failures[category][:300]}")
    legacy = [r for r in results if r.case.legacy]
    if legacy:
        print(f"\nlegacy size_average/reduce: {len(legacy)} cases")
        for note, n in collections.Counter(r.case.legacy for r in legacy).items():
            print(f"  {n:4d} {note}")
    if args.list:
        print("\nfailing cases:")
        for r in failing:
            print(f"  {r.case.id} [{r.case.description[:120]}]")
            for category, message in r.failures.items():
                print(f"      {category}: {message[:240]}")


if __name__ == "__main__":
    main()
