"""`editorbot stems`: separate the raw recordings of all or named pairs into four stems.

Writes CACHE_DIR/stems/{name}_stems.npz (audio) and CACHE_DIR/stems_mel/{name}_stems.npz (mels).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..features import DEFAULT_PARAMS, FeatureParams
from .features import add_layout_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stems", help="precache drums/bass/vocals/other stems of raw recordings",
        description="Separate the raw recording of every (or each named) pair under DATA_DIR "
                    "into drums, bass, vocals and other; cache the stem audio in "
                    "CACHE_DIR/stems/ and their mels in CACHE_DIR/stems_mel/. Backend 'demucs' "
                    "runs htdemucs with weights already on this machine (it never downloads); "
                    "'hpss' is an offline harmonic/percussive + band split whose stems stand in "
                    "for Demucs's slots; 'auto' takes demucs when its weights are found.")
    p.add_argument("names", nargs="*", metavar="NAME", help="sample names (default: all pairs)")
    add_layout_args(p)
    p.add_argument("--backend", choices=("auto", "demucs", "hpss"), default="auto",
                   help="default: auto (demucs when installed with weights, else hpss)")
    p.add_argument("--weights", metavar="PATH",
                   help="htdemucs weights: a .th or .safetensors file, or a folder holding one "
                        "(default: the torch hub and HuggingFace caches)")
    p.add_argument("--trust-weights", action="store_true",
                   help="load a .th weights file that holds more than a model's class and weights "
                        "(a pickle: loading it can run code; only for files whose source you trust)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class StemTask:
    name: str
    raw: Path
    stems_path: Path
    mels_path: Path
    backend: str
    weights: str | None
    threads: int | None  # torch threads in a worker process; None leaves torch's default
    trust_weights: bool = False
    params: FeatureParams = DEFAULT_PARAMS  # the analysis grid, as `editorbot features` makes the mels


def stem_task(task: StemTask, progress=None) -> dict:
    """Cache one raw recording's stems (a top-level function, for worker processes)."""
    from ..errors import UserError
    from ..stems import DemucsUnavailable, cache_stems
    if task.threads is not None:
        import torch
        torch.set_num_threads(task.threads)
    try:
        return cache_stems(task.raw, task.stems_path, task.mels_path, task.backend, params=task.params,
                           weights=task.weights, progress=progress, trust_pickle=task.trust_weights)
    except DemucsUnavailable as err:
        # The library says what is wrong with demucs; the ways round it are this command's.
        raise UserError(f"{err}; or pass --weights FILE, or use --backend hpss") from None


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..errors import UserError, log
    from ..jobs import run_jobs
    from ..layout import Layout, discover
    from ..audio import probe
    from ..stems import resolve_backend

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: use 1 or more worker processes")
    found = discover(args.data_dir, args.names or None)
    for line in found.describe_orphans():
        log.warning(line)
    if not found.pairs:
        log.error("%s: no (raw, edit) pairs found", args.data_dir)
        return 2
    layout = Layout(args.data_dir, args.cache_dir)
    backend = resolve_backend(args.backend, args.weights)
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    tasks = [StemTask(p.name, p.raw, layout.stems(p.name), layout.stems_mel(p.name), backend,
                      args.weights, threads, args.trust_weights) for p in found.pairs]
    seconds = {}
    for t in tasks:
        try:
            seconds[t.name] = probe(t.raw).duration_s
        except UserError:  # the task itself reports it
            seconds[t.name] = 0.0
    if args.jobs == 1:
        # In this process: the bar moves with every block of audio, not every file.
        results, failures = {}, {}
        with tqdm(total=sum(seconds.values()), unit="s", desc=f"stems ({backend})",
                  file=sys.stderr, dynamic_ncols=True,
                  bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]"
                  ) as bar:
            for t in tasks:
                left = seconds[t.name]

                def advance(step: float) -> None:  # never past this file's length
                    nonlocal left
                    step = min(step, left)
                    left -= step
                    bar.update(step)
                try:
                    results[t.name] = stem_task(t, progress=advance)
                except UserError as err:
                    failures[t.name] = str(err)
                    bar.write(f"error: {err}", file=sys.stderr)
                bar.update(left)
    else:
        report = run_jobs(stem_task, [(t.name, t, seconds[t.name]) for t in tasks],
                          jobs=args.jobs, desc=f"stems ({backend})")
        results, failures = report.results, report.failures
    for name, info in sorted(results.items()):
        state = "computed" if info["computed"] else "up to date"
        print(f"{name}: {info['backend']} stems, {info['seconds']:.1f} s, "
              f"{info['frames']} frames ({state})")
    print(f"stems of {len(results)} of {len(tasks)} raw recordings in "
          f"{layout.cache_dir / 'stems'} and {layout.cache_dir / 'stems_mel'} "
          f"(backend {backend})", file=sys.stderr)
    if failures:
        print(f"{len(failures)} failed", file=sys.stderr)
        return 2
    return 0
