"""`editorbot features`: precache the mel features of all or named training pairs."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features", help="precache mel features of training pairs",
        description="Compute the mel features of every (or each named) pair under "
                    "DATA_DIR into CACHE_DIR/features/, skipping entries that are up to date.")
    p.add_argument("names", nargs="*", metavar="NAME", help="sample names (default: all pairs)")
    add_layout_args(p)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=run)


def add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default="training_data", help="default: training_data")
    p.add_argument("--cache-dir", default="cache", help="default: cache")


def run(args: argparse.Namespace) -> int:
    from ..errors import log
    from ..jobs import run_jobs
    from ..layout import Layout, discover
    from ..precache import PairTask, cache_pair, pair_seconds

    found = discover(args.data_dir, args.names or None)
    for line in found.describe_orphans():
        log.warning(line)
    if not found.pairs:
        log.error("%s: no (raw, edit) pairs found", args.data_dir)
        return 2
    layout = Layout(args.data_dir, args.cache_dir)
    items = [(p.name, PairTask(p, layout), pair_seconds(p)) for p in found.pairs]
    report = run_jobs(cache_pair, items, jobs=args.jobs, desc="features")
    for name, frames in sorted(report.results.items()):
        print(f"{name}: raw {frames['raw_frames']} frames, edit {frames['edit_frames']} frames")
    print(f"cached {len(report.results)} of {len(items)} pairs in {layout.cache_dir / 'features'}",
          file=sys.stderr)
    if report.failures or found.orphan_raws or found.orphan_edits:
        print(f"{len(report.failures)} failed, "
              f"{len(found.orphan_raws) + len(found.orphan_edits)} orphan files", file=sys.stderr)
        return 2 if report.failures else 0
    return 0
