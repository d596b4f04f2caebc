"""Peak memory of fine-tuning the base editor on 20 pairs of 20-minute raws (issue 26: under 4 GB).

    .venv/bin/python benchmarks/bench_finetune_memory.py [--pairs 20] [--minutes 20]
        [--max-minutes 5] [--jobs 1]

1. editorbot.base.write_base_corpus writes --pairs synthetic sessions of --minutes each
   (raw mels and exact truth, as the trainers read them; no audio) under OUT/memory (kept:
   a second run reuses them).
2. `editorbot train pointer --init base` on them, in its own process, for --max-minutes of
   wall time: the fine-tuning a musician runs on their own pairs.
3. The training process's peak resident memory (ru_maxrss of its own rusage, os.wait4) and
   CPU seconds; the mels' size in memory as float32 beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    from editorbot.base import write_base_corpus
    from editorbot.cache import load_npz

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--max-minutes", type=float, default=5.0, help="wall time of the fine-tuning")
    p.add_argument("--jobs", type=int, default=1, help="processes that write the corpus")
    args = p.parse_args()
    root = OUT / "memory"
    started = time.perf_counter()
    layout = write_base_corpus(root / "corpus", pairs=args.pairs, seed=4242,
                               minutes=(args.minutes, args.minutes), jobs=args.jobs)
    corpus_s = time.perf_counter() - started
    mel_bytes = 0
    for f in layout.cache_dir.glob("features/*_raw.npz"):
        mel = load_npz(f)[0]["mel"]
        mel_bytes += mel.size * 4  # as the trainers hold them: float32
    cmd = [sys.executable, "-m", "editorbot", "train", "pointer", "--init", "base",
           "--data-dir", str(layout.data_dir), "--cache-dir", str(layout.cache_dir),
           "--save-dir", str(root / "model"), "--overwrite", "--no-progress",
           "--max-minutes", str(args.max_minutes), "--seed", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    log = root / "train.log"
    with open(log, "w") as fh:
        launched = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        train_wall_s = time.perf_counter() - launched
    rc = os.waitstatus_to_exitcode(status)
    if rc:
        raise SystemExit(f"fine-tuning failed (exit {rc}); see {log}")
    result = {"pairs": args.pairs, "raw_minutes": args.minutes, "max_minutes": args.max_minutes,
              "peak_rss_gib": round(usage.ru_maxrss / 2 ** 20, 3),  # ru_maxrss is in KiB
              "train_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
              "train_wall_s": round(train_wall_s, 1),  # against --max-minutes
              "mels_float32_gib": round(mel_bytes / 2 ** 30, 3),
              "corpus_wall_s": round(corpus_s, 1), "load_average": os.getloadavg()[0]}
    (root / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(f"\n| pairs | raw | fine-tuning | peak RSS | mels as float32 | CPU s |\n|---|---|---|---|---|---|\n"
          f"| {args.pairs} | {args.minutes:g} min | --init base, {args.max_minutes:g} wall min | "
          f"**{result['peak_rss_gib']:.2f} GiB** | {result['mels_float32_gib']:.2f} GiB | "
          f"{result['train_cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
