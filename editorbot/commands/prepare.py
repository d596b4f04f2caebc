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
                    "and _alignment.png. Pairs already up to date are skipped. Every file is "
                    "checked first (a readable file that decodes, at least 1 s long, not "
                    "silent): a bad pair is named and left out, the others are prepared, "
                    "and the run exits with status 2.")
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
    checked = run_jobs(check_pair, [(p.name, p, 0.0) for p in found.pairs], jobs=args.jobs,
                       desc="check", progress=False)
    items = [(p.name, PrepareTask(p, layout, force=args.force or _needs_redo(layout, p.name)),
              pair_seconds(p)) for p in found.pairs if p.name in checked.results]
    report = run_jobs(run_task, items, jobs=args.jobs, desc="prepare")
    report.failures.update(checked.failures)
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


def check_pair(pair) -> bool:
    """Both files of a pair are readable audio that decodes, long enough to align and not
    silent (a top-level function, for worker processes). Raises AudioError otherwise."""
    from ..align.core import MIN_ALIGN_S
    from ..audio import check_audio
    for path in (pair.raw, pair.edit):
        check_audio(path, min_duration_s=MIN_ALIGN_S, need="to align")
    return True


def _needs_redo(layout, name: str) -> bool:
    """Whether a pair's pointer files exist but fail their checks (cut short, damaged, at
    odds with their info record): then the pair is aligned again, not called up to date."""
    from ..errors import UserError, log
    from ..dataset import read_pointer_files
    if not layout.pointer_file(name, "pointers.npy").exists():
        return False
    try:
        read_pointer_files(layout.pointer_dir, name)
    except UserError as err:
        log.warning("%s; aligning it again", str(err).rsplit("; run", 1)[0])
        return True
    return False
