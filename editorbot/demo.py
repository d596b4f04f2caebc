"""The one-command demo: generate pairs, run every stage that exists, say where things went."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import audio
from .edits import Edit, Segment, segments_to_pointers
from .jobs import run_jobs
from .layout import Layout, discover
from .precache import PairTask, cache_pair, pair_seconds


def _toy_pair(rng: np.random.Generator, sr: int = 44100, seconds: float = 40.0):
    """A raw of decaying tones on a beat grid and an edit cut from it, with its segments."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    raw = np.zeros((n, 2), np.float32)
    beat = 60 / 120
    for k, onset in enumerate(np.arange(0, seconds, beat)):
        i = int(onset * sr)
        f = 110 * 2 ** (rng.integers(0, 24) / 12)
        tail = t[: min(n - i, int(beat * sr))]
        tone = 0.3 * np.sin(2 * np.pi * f * tail) * np.exp(-tail * 6)
        raw[i:i + len(tone), 0] += tone
        raw[i:i + len(tone), 1] += 0.8 * tone
    edit = Edit([Segment(2.0, 8.0), Segment(20.0, 6.0), Segment(12.0, 4.0)])
    pieces = [raw[int(s.raw_start_s * sr):int((s.raw_start_s + s.duration_s) * sr)]
              for s in edit.segments]
    return raw, np.concatenate(pieces), edit, sr


def run_demo(out: str = "demo_output", seed: int = 0) -> int:
    out_dir = Path(out)
    layout = Layout(out_dir / "training_data", out_dir / "cache")
    rng = np.random.default_rng(seed)
    started = time.time()
    for i in range(3):
        raw, edit_audio, edit, sr = _toy_pair(rng)
        audio.write(layout.input_dir / f"toy{i}_raw.wav", raw, sr, subtype="PCM_24")
        audio.write(layout.output_dir / f"toy{i}_edit.wav", edit_audio, sr, subtype="PCM_24")
        edit.save(out_dir / "truth" / f"toy{i}_segments.json")
    found = discover(layout.data_dir)
    items = [(p.name, PairTask(p, layout), pair_seconds(p)) for p in found.pairs]
    report = run_jobs(cache_pair, items, jobs=1, desc="features")
    print(f"generated {len(found.pairs)} pairs in {layout.data_dir}")
    for name, frames in sorted(report.results.items()):
        truth = Edit.load(out_dir / "truth" / f"{name}_segments.json")
        pointers = segments_to_pointers(truth, n_frames=frames["edit_frames"])
        print(f"  {name}: raw {frames['raw_frames']} mel frames, edit {frames['edit_frames']} "
              f"frames, {len(truth.segments)} segments, {int((pointers >= 0).sum())} frames point into the raw")
    print(f"mel features cached in {layout.cache_dir / 'features'}")
    print(f"done in {time.time() - started:.1f} s; later stages (synth, prepare, train, edit) "
          "join this demo as they land")
    return 0 if report.ok else 2
