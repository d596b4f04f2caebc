"""Synthetic corpus speed, plus two listen-proxies: a labelled spectrogram and a beat tracker.

    .venv/bin/python benchmarks/bench_synth.py [--pairs 10] [--minutes 5] [--jobs 2]

Target (issue 3): 10 pairs from 5-minute raws in <= 60 s on the 2-core machine.
Listen-proxies: benchmarks/out/synth_raw_spectrogram.png (sections marked; look at it),
and librosa.beat.beat_track on every raw, whole and per song, against the written tempo
(a hit is within 2%; octave errors are misses and are counted as such).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from common import OUT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mastering", default="mild")
    args = parser.parse_args()

    from editorbot.synth import write_corpus

    out = OUT / "synth_corpus"
    shutil.rmtree(out, ignore_errors=True)
    started, cpu0 = time.perf_counter(), _cpu_s()
    names = write_corpus(out, pairs=args.pairs, seed=args.seed, minutes=args.minutes,
                         mastering=args.mastering, jobs=args.jobs)
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu0
    print(f"synth: {len(names)} pairs of {args.minutes:g} min raws, mastering {args.mastering}, "
          f"jobs {args.jobs}: {wall:.1f} s wall, {wall / len(names):.2f} s per pair; "
          f"CPU (user+sys, all processes) {cpu:.1f} s, {cpu / len(names):.2f} s per pair "
          f"(target <= 60 s wall for 10 pairs of 5 min on 2 cores)")
    spectrogram(out, names[0], OUT / "synth_raw_spectrogram.png")
    tempo_check(out, names)


def _cpu_s() -> float:
    """User + system seconds of this process and its finished children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def spectrogram(out: Path, name: str, png: Path) -> None:
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from editorbot.audio import load_analysis

    truth = json.loads((out / "truth" / f"{name}.json").read_text())
    y = load_analysis(out / "input" / f"{name}_raw.wav")
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, hop_length=512, n_mels=96),
                              ref=np.max)
    fig, ax = plt.subplots(figsize=(18, 6))
    ax.imshow(mel, origin="lower", aspect="auto", extent=[0, len(y) / 22050, 0, 96], cmap="magma", vmin=-80)
    for i, sec in enumerate(truth["sections"]):
        ax.axvline(sec["start_s"], color="c", lw=0.8)
        ax.text(sec["start_s"] + 0.5, 90 - 6 * (i % 3), sec["label"], color="w", fontsize=8)
    for seg in truth["segments"]:
        ax.plot([seg["raw_start_s"], seg["raw_start_s"] + seg["duration_s"]], [1, 1], color="lime", lw=4)
    ax.set_xlabel("raw time (s); green: what the edit keeps")
    ax.set_ylabel("mel band")
    ax.set_title(f"{name}: {truth['persona']}, {truth['tempo_bpm']:.1f} BPM")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    print(f"spectrogram: {png}")


def _verdict(found: float, written: float) -> str:
    ratio = found / written
    if abs(ratio - 1) <= 0.02:
        return "hit"
    for octave, label in ((2.0, "double"), (0.5, "half"), (1.5, "3/2"), (2 / 3, "2/3")):
        if abs(ratio / octave - 1) <= 0.02:
            return f"miss ({label})"
    return "miss"


def tempo_check(out: Path, names: list[str]) -> None:
    import librosa

    from editorbot.audio import load_analysis

    sr = 22050
    counts = {}
    for name in names:
        truth = json.loads((out / "truth" / f"{name}.json").read_text())
        y = load_analysis(out / "input" / f"{name}_raw.wav", sr=sr)
        for hop in (512, 256):
            tempo, _ = librosa.beat.beat_track(y=y, sr=sr, hop_length=hop)
            verdict = _verdict(float(np.atleast_1d(tempo)[0]), truth["tempo_bpm"])
            counts.setdefault(f"whole raw, hop {hop}", []).append(verdict)
            print(f"  {name} whole raw hop {hop}: found {float(np.atleast_1d(tempo)[0]):.2f}, "
                  f"written {truth['tempo_bpm']:.2f} BPM: {verdict}")
        beats = np.array(truth["beats_s"])
        for song in truth["songs"]:
            spans = [s for s in truth["sections"] if s["song"] == song["index"] and s["n_bars"] > 0
                     and s["label"] not in ("count_in", "false_start")]
            if not spans:
                continue
            t0, t1 = spans[0]["start_s"], spans[-1]["end_s"]
            inside = beats[(beats >= t0) & (beats <= t1)]
            if t1 - t0 < 20 or len(inside) < 16:
                continue
            written = 60 / float(np.median(np.diff(inside)))
            tempo, _ = librosa.beat.beat_track(y=y[int(t0 * sr):int(t1 * sr)], sr=sr, hop_length=256)
            verdict = _verdict(float(np.atleast_1d(tempo)[0]), written)
            counts.setdefault("per song, hop 256", []).append(verdict)
            print(f"  {name} song {song['index']} ({t1 - t0:.0f} s): found "
                  f"{float(np.atleast_1d(tempo)[0]):.2f}, written {written:.2f} BPM: {verdict}")
    for what, verdicts in counts.items():
        hits = sum(v == "hit" for v in verdicts)
        octave = sum(v.startswith("miss (") for v in verdicts)
        print(f"beat_track {what}: {hits}/{len(verdicts)} within 2%, {octave} octave-type errors, "
              f"{len(verdicts) - hits - octave} other misses")


if __name__ == "__main__":
    main()
