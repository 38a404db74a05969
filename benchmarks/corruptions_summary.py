"""Print the corruption section of the report as markdown (and JSON with --json): CE / relative CE /
mCE per SER model x enhancer, and per-condition UARs with 95 % CIs and the share of the
clean-corrupted gap recovered.

    python benchmarks/corruptions_summary.py --db registry.db
    python benchmarks/corruptions_summary.py --db registry.db --compact   # README's table: Δ per SER model
"""
from __future__ import annotations

import argparse

from ser_bench.db import Store
from ser_bench.report.corruptions import as_json, compact, markdown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="registry.db", help="registry (path or SQLAlchemy URL)")
    ap.add_argument("--json", action="store_true", help="JSON instead of markdown")
    ap.add_argument("--compact", action="store_true",
                    help="one table per dataset x protocol: UAR change vs corrupted, a value per SER model, and mCE")
    args = ap.parse_args()
    store = Store(args.db)
    print(as_json(store) if args.json else compact(store) if args.compact else markdown(store))


if __name__ == "__main__":
    main()
