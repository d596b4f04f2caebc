"""Re-render after a correction in `editorbot review`: a 60-minute raw's 18-minute edit.

    .venv/bin/python benchmarks/bench_rerender.py [--minutes 60] [--edit-minutes 18] [--saves 3]
        [--think-s 5] [--loudness-lufs L]

Target (issue 27): re-rendering after a change <= 2 s on this CPU. Measured from the change
(the session starts rendering the new state in a thread at once) to Save's return (the new
version's audio, segment list, timelines and training pair written), with Save asked at once
(the worst case) and after --think-s of listening; wall and CPU seconds (all threads of the
process: on a busy machine wall time includes waiting for a core). Also timed: what the
session does once per raw (waveform peaks, beat grid; both cached), an audition clip, and
the static review page Save writes in a thread.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

import numpy as np

from common import OUT, long_wav


def forward_edit(raw_minutes: float, edit_minutes: float, seed: int = 0):
    """Segments of 20 to 40 s in raw order with gaps between them, as a trimming editor cuts."""
    from editorbot.edits import Edit, Segment
    rng = np.random.default_rng(seed)
    n = int(edit_minutes * 60 / 30)
    lengths = rng.uniform(20, 40, n)
    lengths *= edit_minutes * 60 / lengths.sum()
    gaps = rng.uniform(0, 1, n)
    gaps *= (raw_minutes * 60 - 5 - lengths.sum()) / gaps.sum()
    segments, t = [], 0.0
    for i, (d, g) in enumerate(zip(lengths, gaps)):
        t += g
        segments.append(Segment(round(t * 44100) / 44100, round(d * 44100) / 44100,
                                crossfade_s=0.03 if i else 0.0))
        t += d
    return Edit(segments)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--edit-minutes", type=float, default=18)
    ap.add_argument("--saves", type=int, default=3)
    ap.add_argument("--think-s", type=float, default=5.0)
    ap.add_argument("--loudness-lufs", type=float,
                    help="the edit's loudness target, as a trained model's edit carries (the "
                         "render then limits peaks, see editorbot.limiter); default: none")
    args = ap.parse_args()

    from editorbot.export import export_all
    from editorbot.render import render
    from editorbot.review_server import ReviewSession

    raw = long_wav(OUT / f"long_{args.minutes:g}min.wav", args.minutes)
    folder = OUT / "rerender"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "edit").mkdir(parents=True)
    edit = forward_edit(args.minutes, args.edit_minutes)
    edit.loudness_lufs = args.loudness_lufs
    edit.raw_path = str(raw)
    out = folder / "edit" / "long.wav"
    started = time.perf_counter()
    report = render(raw, edit, out)
    export_all(report.edit, out.with_suffix(""), sr=report.sr, channels=report.channels,
               render=report.level_json())  # as `editorbot edit` writes it
    first_render_s = time.perf_counter() - started

    started = time.perf_counter()
    session = ReviewSession(out, data_dir=folder / "training_data", cache_dir=folder / "cache",
                            find_beats=False)
    open_s = time.perf_counter() - started  # includes the raw's waveform peaks (first time)
    started = time.perf_counter()
    session.load_grid()
    grid_s = time.perf_counter() - started
    rows = []
    try:
        changes = [{"op": "veto", "cut": 3}, {"op": "move_cut", "cut": 5, "n": 1, "unit": "bar"},
                   {"op": "delete", "segment": 8}, {"op": "move_cut", "cut": 10, "n": -1, "unit": "bar"}]
        for k in range(2 * args.saves):
            think = args.think_s if k % 2 else 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            session.apply(changes[k % len(changes)])
            time.sleep(think)
            started = time.perf_counter()
            done = session.save()
            save_s = time.perf_counter() - started
            row = {"think_s": think, "change_to_saved_s": time.perf_counter() - wall - think,
                   "cpu_s": time.process_time() - cpu, "save_s": save_s,
                   "render_s": done["render_s"], "edit_s": done["duration_s"],
                   "version": done["version"]}
            if session.mel_thread is not None:
                # The first Save also caches the raw's mel for training, once a session, in a
                # thread: not part of a re-render; let it finish before timing on (the first
                # row's static page time then reads short; the medians are of three).
                session.mel_thread.join()
            started = time.perf_counter()
            for thread in session.page_threads:
                thread.join()
            row["static_page_s"] = time.perf_counter() - started + save_s
            started = time.perf_counter()
            session.clip(2)
            row["clip_s"] = time.perf_counter() - started
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        session.close()
    def median(key, rows=rows):
        return round(statistics.median(r[key] for r in rows), 3)
    at_once = [r for r in rows if r["think_s"] == 0]
    later = [r for r in rows if r["think_s"] > 0]
    result = {"raw_minutes": args.minutes, "edit_minutes": round(rows[-1]["edit_s"] / 60, 2),
              "segments": len(edit.segments), "first_render_s": round(first_render_s, 2),
              "open_with_peaks_s": round(open_s, 2), "beat_grid_s": round(grid_s, 2),
              "load_average": os.getloadavg()[0],
              "saved_at_once": {k: median(k, at_once) for k in
                                ("change_to_saved_s", "cpu_s", "render_s", "static_page_s", "clip_s")},
              "saved_after_think": {k: median(k, later) for k in ("save_s", "cpu_s")}}
    print(json.dumps(result, indent=1))
    a, b = result["saved_at_once"], result["saved_after_think"]
    print(f"\n| raw | edit | change to saved (Save at once): wall / CPU | render alone | Save after "
          f"{args.think_s:g} s | audition clip | static page | open (peaks, once) | beat grid (once) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.minutes:g} min | {result['edit_minutes']:.1f} min, {len(edit.segments)} seg | "
          f"{a['change_to_saved_s']:.2f} s / {a['cpu_s']:.2f} s | {a['render_s']:.2f} s | "
          f"{b['save_s']:.2f} s | {a['clip_s']:.2f} s | {a['static_page_s']:.1f} s | {open_s:.1f} s | "
          f"{grid_s:.1f} s |")
    print(f"load average during the run: {result['load_average']:.1f} (2 cores)")


if __name__ == "__main__":
    main()
