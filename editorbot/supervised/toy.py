"""Small (raw, edit) pairs with known edits and mastering, for tests and quick benchmarks.

A raw alternates songs (drums, bass, chords on a beat) with tuning, noodling and silence;
its edit keeps the songs (with a loop, per-song gain, fades, crossfades) and is mastered
(peak EQ, compression, peak normalisation). Truth pointers are written as `prepare` would.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.signal

from .. import audio
from ..dataset import write_truth_pointers
from ..edits import Edit, Segment
from ..features import DEFAULT_PARAMS, FeatureParams
from ..layout import Layout


def _tone(f_hz: float, n: int, sr: int, decay: float, harmonics: int = 4) -> np.ndarray:
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * f_hz * h * t) / h for h in range(1, harmonics + 1))
    return x * np.exp(-t * decay)


def _add(out: np.ndarray, start: int, x: np.ndarray) -> None:
    m = min(len(x), len(out) - start)
    if m > 0 and start >= 0:
        out[start:start + m] += x[:m]


def _song(n: int, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Drums, bass and chords on a beat; returns audio and the bar length in seconds."""
    bpm = rng.uniform(96, 140)
    beat = 60.0 / bpm
    out = np.zeros(n)
    root = 55.0 * 2 ** (rng.integers(0, 7) / 12)
    degrees = rng.choice([0, 3, 5, 7, 10], size=4)
    hat_n = int(0.04 * sr)
    for k, onset in enumerate(np.arange(0.0, n / sr, beat)):
        i = int(onset * sr)
        if k % 2 == 0:
            _add(out, i, 0.6 * _tone(55.0, int(0.25 * sr), sr, 18.0, 1))
        else:
            _add(out, i, 0.35 * rng.standard_normal(int(0.15 * sr)) * np.exp(-np.arange(int(0.15 * sr)) / (0.03 * sr)))
        for half in (0, 1):
            _add(out, i + int(half * beat / 2 * sr),
                  0.08 * rng.standard_normal(hat_n) * np.exp(-np.arange(hat_n) / (0.008 * sr)))
        bar = k // 4
        f = root * 2 ** (degrees[bar % 4] / 12)
        _add(out, i, 0.3 * _tone(f, int(beat * sr), sr, 3.0, 5))
        if k % 4 == 0:
            for step in (0, 4, 7):
                _add(out, i, 0.08 * _tone(2 * f * 2 ** (step / 12), int(4 * beat * sr), sr, 0.6, 3))
    return out, 4 * beat


def _noodle(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    t = 0.0
    while t < n / sr:
        f = 110.0 * 2 ** (rng.integers(0, 30) / 12)
        _add(out, int(t * sr), 0.12 * _tone(f, int(0.8 * sr), sr, 4.0, 3))
        t += rng.uniform(0.3, 1.2)
    return out


def _tuning(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    f = rng.choice([82.4, 110.0, 146.8, 196.0])
    t = 0.0
    while t < n / sr:
        m = int(2.5 * sr)
        detune = rng.uniform(0.5, 3.0)
        _add(out, int(t * sr), 0.15 * (_tone(f, m, sr, 1.0, 3) + _tone(f + detune, m, sr, 1.0, 3)))
        t += rng.uniform(1.5, 3.0)
    return out


def _peak_eq(x: np.ndarray, sr: int, f_hz: float, gain_db: float, q: float) -> np.ndarray:
    """RBJ peaking biquad."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f_hz / sr
    alpha = np.sin(w) / (2 * q)
    b = [1 + alpha * a, -2 * np.cos(w), 1 - alpha * a]
    den = [1 + alpha / a, -2 * np.cos(w), 1 - alpha / a]
    return scipy.signal.lfilter(b, den, x)


def _compress(x: np.ndarray, sr: int, threshold_db: float, ratio: float) -> np.ndarray:
    """Feed-forward compressor on a 30 ms RMS envelope."""
    c = np.exp(-1.0 / (0.03 * sr))
    env = scipy.signal.lfilter([1 - c], [1, -c], x ** 2)
    level_db = 10 * np.log10(env + 1e-12)
    over = np.maximum(level_db - threshold_db, 0.0)
    return x * 10 ** (-over * (1 - 1 / ratio) / 20)


def master(x: np.ndarray, sr: int) -> np.ndarray:
    """Mild mastering: +4 dB peak EQ at 2.5 kHz, 3:1 compression above -24 dB, -1 dBFS peak."""
    y = _compress(_peak_eq(x, sr, 2500.0, 4.0, 1.0), sr, -24.0, 3.0)
    return y * (10 ** (-1 / 20) / max(np.abs(y).max(), 1e-9))


def render_edit(raw: np.ndarray, edit: Edit, sr: int) -> np.ndarray:
    """Play the segments of `edit` from mono `raw`: gain, fades, and equal-power crossfades
    centred on the seams (each borrows half its length from each side)."""
    starts = np.rint(edit.edit_starts_s() * sr).astype(int)
    n_out = int(round(edit.duration_s * sr))
    out = np.zeros(n_out)
    segs = edit.segments
    for k, seg in enumerate(segs):
        before = int(round(seg.crossfade_s * sr / 2))
        after = int(round(segs[k + 1].crossfade_s * sr / 2)) if k + 1 < len(segs) else 0
        length = (starts[k + 1] if k + 1 < len(segs) else n_out) - starts[k]
        r0 = int(round(seg.raw_start_s * sr)) - before
        piece = raw[max(r0, 0):r0 + before + length + after].astype(np.float64)
        piece = np.pad(piece, (max(-r0, 0), before + length + after - len(piece) - max(-r0, 0)))
        env = np.ones(len(piece)) * 10 ** (seg.gain_db / 20)
        if before:
            env[:2 * before] *= np.sin(np.linspace(0, np.pi / 2, 2 * before))
        if after:
            env[-2 * after:] *= np.cos(np.linspace(0, np.pi / 2, 2 * after))
        fi, fo = int(seg.fade_in_s * sr), int(seg.fade_out_s * sr)
        if fi:
            env[before:before + fi] *= np.linspace(0, 1, fi)
        if fo:
            env[before + length - fo:before + length] *= np.linspace(1, 0, fo)
        lead = max(before - starts[k], 0)  # the first segment has nothing before it
        _add(out, starts[k] - before + lead, (piece * env)[lead:])
    return out


def toy_pair(rng: np.random.Generator, *, sr: int = 22050, seconds: float = 60.0,
             loop: bool = True) -> tuple[np.ndarray, Edit]:
    """A raw recording and its edit.

    Returns:
        raw : np.ndarray [shape=(n,)], float32 mono at sr
        edit : Edit with the truth segments (raw times in seconds)
    """
    n = int(seconds * sr)
    raw = 10 ** (-62 / 20) * rng.standard_normal(n)
    t = 0.0
    segments: list[Segment] = []
    fillers = [_noodle, _tuning, None]
    while t < seconds - 4.0:
        filler = fillers[rng.integers(0, 3)]
        d = rng.uniform(4.0, 12.0)
        i = int(t * sr)
        m = min(int(d * sr), n - i)
        if filler is not None:
            raw[i:i + m] += filler(m, sr, rng)
        t += d
        d = min(rng.uniform(10.0, 20.0), seconds - t)
        if d < 4.0:
            break
        i = int(t * sr)
        m = min(int(d * sr), n - i)
        song, bar_s = _song(m, sr, rng)
        raw[i:i + m] += song
        a = t + rng.uniform(0.0, 0.5) * bar_s
        b = t + d - rng.uniform(0.0, 0.3)
        gain = float(np.round(rng.uniform(-2.0, 2.0) * 2) / 2)
        xf = float(rng.uniform(0.005, 0.02))
        if loop and rng.random() < 0.5 and b - a > 3 * bar_s:
            mid = a + 2 * bar_s
            segments += [Segment(a, mid - a, gain, crossfade_s=xf),
                         Segment(mid - bar_s, b - mid + bar_s, gain, crossfade_s=xf)]
        else:
            segments.append(Segment(a, b - a, gain, crossfade_s=xf))
        t += d
    segments[0].crossfade_s = 0.0
    segments[0].fade_in_s = float(rng.uniform(0.5, 1.5))
    segments[-1].fade_out_s = float(min(rng.uniform(2.0, 4.0), segments[-1].duration_s / 2))
    raw *= 10 ** (-6 / 20) / np.abs(raw).max()
    return raw.astype(np.float32), Edit(segments, raw_duration_s=n / sr)


def write_corpus_pointers(data_dir: str | Path, params: FeatureParams = DEFAULT_PARAMS) -> list[str]:
    """Truth pointer files for every data_dir/truth/{name}.json (a synthetic corpus from
    editorbot.synth.write_corpus, or write_toy_corpus). Returns the names."""
    layout = Layout(Path(data_dir))
    names = []
    for path in sorted((Path(data_dir) / "truth").glob("*.json")):
        name = path.stem
        edit = Edit.from_json(json.loads(path.read_text()), where=str(path))
        edit_path = next(layout.output_dir.glob(f"{name}_edit.*"))
        info = audio.probe(edit_path)
        n_edit_frames = params.n_frames(int(np.ceil(info.frames * params.sr / info.sr)))
        raw = audio.probe(next(layout.input_dir.glob(f"{name}_raw.*")))
        raw_frames = params.n_frames(int(round(raw.frames * params.sr / raw.sr)))
        write_truth_pointers(layout, name, edit, n_edit_frames, params, raw_frames)
        names.append(name)
    return names


def write_toy_corpus(data_dir: str | Path, *, pairs: int = 6, seed: int = 0, seconds: float = 60.0,
                     sr: int = 22050, params: FeatureParams = DEFAULT_PARAMS) -> list[str]:
    """Write `pairs` toy pairs in the data contract's layout, with truth pointers, and the
    truth segments under data_dir/truth/{name}.json. Returns the sample names."""
    layout = Layout(Path(data_dir))
    rng = np.random.default_rng(seed)
    names = []
    for k in range(pairs):
        name = f"toy{seed}_{k:02d}"
        raw, edit = toy_pair(rng, sr=sr, seconds=seconds)
        edit_audio = master(render_edit(raw, edit, sr), sr).astype(np.float32)
        raw_path = audio.write(layout.input_dir / f"{name}_raw.wav", raw, sr, subtype="FLOAT")
        audio.write(layout.output_dir / f"{name}_edit.wav", edit_audio, sr, subtype="FLOAT")
        edit.raw_path = str(raw_path)
        edit.save(Path(data_dir) / "truth" / f"{name}.json")
        n_edit_frames = params.n_frames(int(round(len(edit_audio) * params.sr / sr)))
        raw_frames = params.n_frames(int(round(len(raw) * params.sr / sr)))
        write_truth_pointers(layout, name, edit, n_edit_frames, params, raw_frames)
        names.append(name)
    return names
