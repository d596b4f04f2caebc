"""Render a 20-minute edit of a 60-minute 44.1 kHz stereo raw; reproduce synthetic edits.

    .venv/bin/python benchmarks/bench_render.py [--minutes 60] [--edit-minutes 20]
        [--corpus-pairs 3] [--corpus-minutes 5]

Targets (issue 5): render() takes <= 5 s with <= 500 MB peak RSS, measured in a fresh
process (peak RSS includes the imports; the time with imports is printed too); rendering
a synthetic corpus's truth segments reproduces its unmastered edit with SNR >= 60 dB
outside crossfades; seams no rougher than the raw.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from common import OUT, long_wav, measure

RENDER = """
import sys, time
t = time.perf_counter()
from editorbot.edits import Edit
from editorbot.render import render
edit = Edit.load(sys.argv[2])
cpu = time.process_time()
report = render(sys.argv[1], edit, sys.argv[3])
cpu = time.process_time() - cpu
seconds = time.perf_counter() - t
result = {"seconds": seconds, "render_seconds": report.seconds, "render_cpu_seconds": cpu,
          "frames": report.frames,
          "seams": len(report.seams), "clean": sum(s.clean for s in report.seams),
          "within_p99": sum(s.step_ratio <= 1 and s.burst_ratio <= 1 for s in report.seams),
          "moved_ms_median": float(sorted(abs(s.moved_ms) for s in report.seams)
                                   [len(report.seams) // 2])}
"""

CLI = """
import sys, time
from editorbot.cli import main
t = time.perf_counter()
code = main(["render", sys.argv[1], "--segments", sys.argv[2], "-o", sys.argv[3]])
result = {"seconds": time.perf_counter() - t, "exit": code}
"""


def long_edit(raw_minutes: float, edit_minutes: float, seed: int = 0):
    """About 20 s segments from anywhere in the raw, in any order, some crossfaded or louder."""
    from editorbot.edits import Edit, Segment
    rng = np.random.default_rng(seed)
    segments, total = [], 0.0
    while total < edit_minutes * 60 - 1e-9:
        d = min(float(rng.uniform(10, 30)), edit_minutes * 60 - total)
        start = float(rng.uniform(0, raw_minutes * 60 - d - 1))
        segments.append(Segment(round(start * 44100) / 44100, round(d * 44100) / 44100,
                                gain_db=float(rng.choice([0.0, 0.0, -3.0, 2.0])),
                                crossfade_s=float(rng.choice([0.0, 0.02, 0.05, 0.5]))))
        total += segments[-1].duration_s
    return Edit(segments)


def corpus_figures(pairs: int, minutes: float) -> None:
    from editorbot import audio
    from editorbot.edits import Edit
    from editorbot.render import render_array
    from editorbot.synth import write_corpus

    with tempfile.TemporaryDirectory() as tmp:
        names = write_corpus(tmp, pairs=pairs, seed=0, minutes=minutes, mastering="none",
                             progress=False)
        for name in names:
            truth = json.loads((Path(tmp) / "truth" / f"{name}.json").read_text())
            edit = Edit.from_json(truth)
            raw = Path(tmp) / "input" / f"{name}_raw.wav"
            want, sr = audio.read(Path(tmp) / "unmastered" / f"{name}_edit.wav")
            out, _, report = render_array(raw, edit, seam_search_ms=0, with_report=True)
            mask = np.ones(len(out), bool)
            for s in report.seams:
                at, half = int(round(s.edit_s * sr)), int(round(s.crossfade_ms * sr / 2000))
                mask[at - half:at + half] = False
            err = np.sum((out[mask].astype(np.float64) - want[mask]) ** 2)
            snr = 10 * np.log10(np.sum(want[mask].astype(np.float64) ** 2) / max(err, 1e-300))
            _, _, searched = render_array(raw, edit, with_report=True)
            clean = sum(s.clean for s in searched.seams)
            within = sum(s.step_ratio <= 1 and s.burst_ratio <= 1 for s in searched.seams)
            worst = max((max(s.step_ratio, s.burst_ratio) for s in searched.seams), default=0)
            verdict = "PASS" if snr >= 60 else "FAIL"
            print(f"synthetic {name}: {len(edit.segments)} segments, {edit.duration_s:.1f} s; SNR "
                  f"outside crossfades {snr:.1f} dB (target >= 60: {verdict}); "
                  f"with seam search: {within}/{len(searched.seams)} seams within the raw's p99, "
                  f"{clean}/{len(searched.seams)} clean, worst ratio {worst:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--edit-minutes", type=float, default=20.0)
    parser.add_argument("--corpus-pairs", type=int, default=3)
    parser.add_argument("--corpus-minutes", type=float, default=5.0)
    args = parser.parse_args()
    wav = long_wav(OUT / f"long_{args.minutes:g}min.wav", args.minutes)
    print(f"raw: {wav} ({args.minutes:g} min, 44.1 kHz stereo PCM_16)")
    edit = long_edit(args.minutes, args.edit_minutes)
    with tempfile.TemporaryDirectory() as tmp:
        seg_path = Path(tmp) / "edit.json"
        edit.save(seg_path)
        ours = measure(RENDER, str(wav), str(seg_path), str(Path(tmp) / "edit.wav"))
        cli = measure(CLI, str(wav), str(seg_path), str(Path(tmp) / "cli.wav"))
    ok_t, ok_m = ours["render_seconds"] <= 5.0, ours["peak_rss_mb"] <= 500
    print(f"render of a {edit.duration_s / 60:.1f} min edit ({len(edit.segments)} segments, "
          f"{ours['seams']} seams): {ours['seconds']:.2f} s with imports (render() itself "
          f"{ours['render_seconds']:.2f} s wall, {ours['render_cpu_seconds']:.2f} s CPU; whole "
          f"process {ours['process_wall_s']:.2f} s), "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB")
    print(f"  target <= 5 s (render()): {'PASS' if ok_t else 'FAIL'}; target <= 500 MB: "
          f"{'PASS' if ok_m else 'FAIL'}; seams within p99 {ours['within_p99']}/{ours['seams']}, "
          f"clean {ours['clean']}/{ours['seams']}; median cut move {ours['moved_ms_median']:.1f} ms")
    print(f"editorbot render CLI with all exports: {cli['seconds']:.2f} s, peak RSS "
          f"{cli['peak_rss_mb']:.0f} MB, exit {cli['exit']}")
    if args.corpus_pairs:
        corpus_figures(args.corpus_pairs, args.corpus_minutes)


if __name__ == "__main__":
    main()
