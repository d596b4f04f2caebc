"""`editorbot prepare`: cache mels and align every training pair into pointer sequences."""
from __future__ import annotations

import argparse
import sys

from .features import add_layout_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare", help="align each edit to its raw: pointers, ops, info, plot",
        description="For every (or each named) pair under DATA_DIR: cache the mels in "
                    "CACHE_DIR/features/, align the edit to its raw recording (cuts, loops, "
                    "reorders of any length; audio not in the raw) and write "
                    "DATA_DIR/pointer_sequences/{name}_pointers.npy, _ops.npy, _info.json "
                    "and _alignment.png. Pairs already up to date are skipped.")
    p.add_argument("names", nargs="*", metavar="NAME", help="sample names (default: all pairs)")
    add_layout_args(p)
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1; about "
                   "1 GB of memory each for an hour of raw)")
    p.add_argument("--force", action="store_true", help="redo pairs that are up to date")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..align.prepare import PrepareTask, describe, run_task
    from ..errors import UserError, log
    from ..jobs import run_jobs
    from ..layout import Layout, discover
    from ..precache import pair_seconds

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    found = discover(args.data_dir, args.names or None)
    orphans = found.describe_orphans()
    for line in orphans:
        log.warning(line)
    layout = Layout(args.data_dir, args.cache_dir)
    items = [(p.name, PrepareTask(p, layout, force=args.force), pair_seconds(p)) for p in found.pairs]
    report = run_jobs(run_task, items, jobs=args.jobs, desc="prepare")
    for name in sorted(report.results):
        print(describe(report.results[name]))
    done = len(report.results)
    fresh = sum(not r["skipped"] for r in report.results.values())
    print(f"prepared {done} of {len(items)} pairs ({fresh} aligned, {done - fresh} up to date) "
          f"in {layout.pointer_dir}", file=sys.stderr)
    warned = sorted(n for n, r in report.results.items() if r["warnings"])
    if warned:
        print(f"warnings for {len(warned)}: {', '.join(warned)} (see their _info.json)", file=sys.stderr)
    problems = [f"  {name}: {msg}" for name, msg in sorted(report.failures.items())]
    problems += [f"  {line}" for line in orphans]
    if not found.pairs and not problems:
        problems.append(f"  {args.data_dir}: no (raw, edit) pairs found")
    if problems:
        print(f"{len(report.failures)} failed, {len(orphans)} orphan files:", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return 2
    return 0
