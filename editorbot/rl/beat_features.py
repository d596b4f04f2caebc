"""Beat features for the RL environment: the beat grid of a recording and 121 numbers
per beat (spectral, MFCC, deltas, chroma, rhythm, stems), cached in cache/beat_features/.

The beats and bar lines are editorbot.grid's (the project's one tracker, cached in
cache/grid/). Frame features on the analysis grid (22050 Hz, n_fft 2048, hop 256) are
pooled over each beat. BEAT_FEATURE_LAYOUT lists the groups and BEAT_FEATURE_NAMES every dimension; values
are scaled at extraction to roughly unit range (see the names), and a saved
editorbot.rl.state.FeatureNormalizer z-scores them for the agent.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from .. import __version__, grid
from ..audio import load_analysis, probe
from ..cache import cached, file_fingerprint
from ..errors import UserError, log
from ..features import DEFAULT_PARAMS, FeatureParams, mel_power, normalize_db, stft_blocks
from ..layout import RAW_SUFFIX, Layout
from .actions import BEATS_PER_BAR

FEATURE_VERSION = 2  # 2: beats and bar lines from editorbot.grid
N_MFCC = 20
STEM_NAMES = ("drums", "bass", "vocals", "other")
MIN_BEAT_S = 0.06        # beat-grid intervals shorter than this merge with their neighbour
FALLBACK_BPM = 120.0     # grid used when the tracker finds no steady beat
_CONTRAST_DB = 50.0      # scale of spectral contrast
_MFCC_SCALE = 100.0
_DELTA_SCALE = 10.0
_ONSET_SCALE = 10.0

BEAT_FEATURE_LAYOUT: tuple[tuple[str, int], ...] = (
    ("spectral", 13),  # rms, centroid, bandwidth, rolloff, flatness, zcr, 7 contrast bands
    ("mfcc", 40),      # 20 MFCC means, 20 MFCC standard deviations within the beat
    ("deltas", 20),    # 20 MFCC delta means
    ("chroma", 12),    # 12 pitch classes, C first
    ("rhythm", 12),    # onset mean/max/std, beat length, onset at 4 sub-beats, bar position (4)
    ("stems", 24),     # drums, bass, vocals, other x (level, level std, share, centroid,
                       # flux mean, flux max)
)
N_BEAT_FEATURES = 121
assert sum(n for _, n in BEAT_FEATURE_LAYOUT) == N_BEAT_FEATURES

_STEM_STATS = ("level", "level_std", "share", "centroid", "flux_mean", "flux_max")
BEAT_FEATURE_NAMES: tuple[str, ...] = tuple(
    ["rms_db/80+1", "centroid/nyquist", "bandwidth/nyquist", "rolloff85/nyquist", "flatness",
     "zcr"] + [f"contrast{i}/{_CONTRAST_DB:g}dB" for i in range(7)]
    + [f"mfcc{i}_mean/{_MFCC_SCALE:g}" for i in range(N_MFCC)]
    + [f"mfcc{i}_std/{_MFCC_SCALE:g}" for i in range(N_MFCC)]
    + [f"mfcc{i}_delta/{_DELTA_SCALE:g}" for i in range(N_MFCC)]
    + [f"chroma_{p}" for p in ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")]
    + [f"onset_mean/{_ONSET_SCALE:g}", f"onset_max/{_ONSET_SCALE:g}", f"onset_std/{_ONSET_SCALE:g}",
       "beat_s"] + [f"onset_sub{j}/{_ONSET_SCALE:g}" for j in range(4)]
    + [f"bar_position_{j}" for j in range(BEATS_PER_BAR)]
    + [f"{stem}_{stat}" for stem in STEM_NAMES for stat in _STEM_STATS])
assert len(BEAT_FEATURE_NAMES) == N_BEAT_FEATURES


def feature_slice(group: str) -> slice:
    """Columns of one group of BEAT_FEATURE_LAYOUT, e.g. feature_slice('chroma')."""
    start = 0
    for name, n in BEAT_FEATURE_LAYOUT:
        if name == group:
            return slice(start, start + n)
        start += n
    raise KeyError(f"no beat-feature group {group!r}; groups: "
                   f"{', '.join(n for n, _ in BEAT_FEATURE_LAYOUT)}")


def flow_columns() -> np.ndarray:
    """Columns that describe the sound of a beat (all but the bar position), for comparing
    beats with each other: the audio-flow reward and the state's structure numbers."""
    rhythm = feature_slice("rhythm")
    keep = np.ones(N_BEAT_FEATURES, bool)
    keep[rhythm.stop - BEATS_PER_BAR:rhythm.stop] = False
    return np.flatnonzero(keep)


@dataclass
class BeatFeatures:
    """A recording's beat grid and features.

    features : np.ndarray [shape=(n_beats, 121)], float32 (BEAT_FEATURE_NAMES)
    bounds_s : np.ndarray [shape=(n_beats + 1,)], float64: beat k is raw time
        [bounds_s[k], bounds_s[k + 1]); bounds_s[0] = 0 and bounds_s[-1] = duration_s
        (the stretch before the first detected beat is beat 0).
    tempo_bpm: the grid's tempo (the tracker's, or the given beats' median).
    downbeat_phase: index of the first bar start (0..3), the most common phase of the bar lines.
    stems_source: where the stem features came from: 'cache:hpss', 'cache:demucs',
        'hpss' (computed now with editorbot.stems's offline backend) or 'zeros'.
    """

    features: np.ndarray
    bounds_s: np.ndarray
    tempo_bpm: float
    downbeat_phase: int
    duration_s: float
    stems_source: str

    @property
    def n_beats(self) -> int:
        return len(self.bounds_s) - 1


# ---------------------------------------------------------------------------- grid

def beat_bounds(beats_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Beat-interval bounds from beat times: 0, the beats, the end; intervals shorter than
    MIN_BEAT_S merge into the one before (the first into the one after).

    Returns:
        bounds_s : np.ndarray [shape=(n_beats + 1,)], float64, strictly increasing
    """
    inner = np.asarray(beats_s, np.float64)
    inner = np.sort(inner[(inner > 0) & (inner < duration_s)])
    keep = [0.0]
    for t in inner:
        if t - keep[-1] >= MIN_BEAT_S:
            keep.append(float(t))
    if duration_s - keep[-1] < MIN_BEAT_S and len(keep) > 1:
        keep.pop()
    keep.append(float(duration_s))
    return np.array(keep)


def _phase_from_downbeats(bounds_s: np.ndarray, downbeats_s: np.ndarray) -> int:
    starts = bounds_s[:-1]
    idx = np.abs(starts[None, :] - np.asarray(downbeats_s, float)[:, None]).argmin(axis=1)
    return int(np.bincount(idx % BEATS_PER_BAR, minlength=BEATS_PER_BAR).argmax())


# ---------------------------------------------------------------------------- frames

def _frame_features(y: np.ndarray, params: FeatureParams) -> np.ndarray:
    """Per-frame spectral (13) and chroma (12) features, computed in blocks.

    Returns:
        np.ndarray [shape=(25, t)], float32, t = params.n_frames(len(y))
    """
    n_fft, sr = params.n_fft, params.sr
    nyquist = sr / 2
    out = np.empty((25, params.n_frames(len(y))), np.float32)
    for f0, frames, spec in stft_blocks(np.asarray(y, np.float32), n_fft, params.hop_length):
        f1 = f0 + len(frames)
        mag = np.abs(spec).T.astype(np.float32)
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
        rms_db = 20 * np.log10(np.maximum(rms, 1e-4))  # floor at -80 dBFS
        signs = np.signbit(frames)
        zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
        kw = dict(S=mag, sr=sr, n_fft=n_fft)
        out[0, f0:f1] = rms_db / 80.0 + 1.0
        out[1, f0:f1] = librosa.feature.spectral_centroid(**kw)[0] / nyquist
        out[2, f0:f1] = librosa.feature.spectral_bandwidth(**kw)[0] / nyquist
        out[3, f0:f1] = librosa.feature.spectral_rolloff(**kw, roll_percent=0.85)[0] / nyquist
        out[4, f0:f1] = librosa.feature.spectral_flatness(S=mag)[0]
        out[5, f0:f1] = zcr
        out[6:13, f0:f1] = librosa.feature.spectral_contrast(**kw) / _CONTRAST_DB
        out[13:25, f0:f1] = librosa.feature.chroma_stft(S=mag ** 2, sr=sr, n_fft=n_fft, tuning=0.0)
    return out


def _beat_starts(bounds_s: np.ndarray, n_frames: int, params: FeatureParams) -> np.ndarray:
    """First frame of each beat (frames whose centre lies in it), plus n_frames at the end;
    every beat gets at least one frame."""
    times = np.arange(n_frames) * params.hop_length / params.sr
    starts = np.searchsorted(times, bounds_s[:-1], side="left")
    starts = np.minimum(starts, n_frames - 1)
    for k in range(1, len(starts)):  # very short beats at the frame scale: one frame each
        starts[k] = max(starts[k], starts[k - 1] + 1)
    if starts[-1] >= n_frames:
        raise ValueError("more beats than frames")
    return np.append(starts, n_frames)


def _pool(x: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of frame features over each beat.

    Args:
        x : np.ndarray [shape=(d, t)]
        starts : np.ndarray [shape=(n_beats + 1,)], from _beat_starts

    Returns:
        mean, std : np.ndarray [shape=(n_beats, d)], float64
    """
    x = np.asarray(x, np.float64)
    counts = np.diff(starts)[:, None]
    s1 = np.add.reduceat(x, starts[:-1], axis=1).T
    s2 = np.add.reduceat(x * x, starts[:-1], axis=1).T
    mean = s1 / counts
    return mean, np.sqrt(np.maximum(s2 / counts - mean * mean, 0.0))


def _stem_features(stem_mels: np.ndarray | None, starts: np.ndarray,
                   params: FeatureParams) -> np.ndarray:
    """(n_beats, 24): per stem level, level std, power share, mel centroid, flux mean/max."""
    n_beats = len(starts) - 1
    if stem_mels is None:
        return np.zeros((n_beats, 24))
    n_mels = stem_mels.shape[1]
    power = [10.0 ** ((m.astype(np.float64) - 1.0) * params.top_db / 10.0) for m in stem_mels]
    total = np.sum([p.sum(axis=0) for p in power], axis=0) + 1e-12
    cols = []
    bins = np.arange(n_mels)[:, None]
    for m, p in zip(stem_mels, power):
        level = m.mean(axis=0)
        flux = np.concatenate([[0.0], np.maximum(np.diff(m.astype(np.float64), axis=1), 0).sum(axis=0)])
        flux /= n_mels
        psum = p.sum(axis=0)
        level_mean, level_std = _pool(level[None], starts)
        share, _ = _pool((psum / total)[None], starts)
        centroid, _ = _pool(((bins * p).sum(axis=0) / (psum + 1e-12) / n_mels)[None], starts)
        flux_mean, _ = _pool(flux[None], starts)
        flux_max = np.maximum.reduceat(flux, starts[:-1])[:, None]
        cols += [level_mean, level_std, share, centroid, flux_mean, flux_max]
    return np.concatenate(cols, axis=1)


def compute_beat_features(y: np.ndarray, params: FeatureParams = DEFAULT_PARAMS, *,
                          beat_grid: grid.Grid | None = None,
                          beats_s: np.ndarray | None = None,
                          downbeats_s: np.ndarray | None = None,
                          stem_mels: np.ndarray | None = None,
                          stems_source: str = "zeros", where: str = "audio") -> BeatFeatures:
    """Beat grid and 121 features per beat of mono analysis audio (no caching).

    Args:
        y : np.ndarray [shape=(n,)], mono float32 at params.sr
        beat_grid: the recording's editorbot.grid.Grid (cached_beat_grid's); None: tracked now.
        beats_s: beat times to use instead of the grid's (e.g. a synthetic recording's truth).
        downbeats_s: bar starts; without them (and with beats_s given) bar lines are the
            beats nearest the grid's.
        stem_mels : np.ndarray [shape=(4, n_mels, t)] in [0, 1] on the mix's dB scale
            (editorbot.stems), or None for zeros.
        stems_source: recorded in the result (see BeatFeatures).
        where: names the audio in errors (the file it came from).

    Returns:
        BeatFeatures
    """
    y = np.asarray(y, np.float32)
    sr, hop = params.sr, params.hop_length
    duration_s = len(y) / sr
    if duration_s < 4 * MIN_BEAT_S:
        raise UserError(f"{where}: {duration_s:.2f} s of audio is too short for a beat grid; "
                        "use a longer recording")
    mel_db = normalize_db(mel_power(y, params), params) * params.top_db - params.top_db
    n_frames = mel_db.shape[1]
    onset = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=hop)
    tempo_bpm = None
    if beats_s is None or downbeats_s is None:
        beat_grid = beat_grid if beat_grid is not None else grid.beat_grid(y, params)
        if beats_s is None:
            beats_s, downbeats_s = beat_grid.beats_s, beat_grid.downbeats_s
            tempo_bpm = beat_grid.tempo_bpm
            if not beat_grid.steady:
                log.warning("%s: no steady beat found; using a %g bpm grid", where, FALLBACK_BPM)
                beats_s = np.arange(0.0, duration_s, 60.0 / FALLBACK_BPM)
        elif downbeats_s is None:
            downbeats_s = beat_grid.downbeats_s
    bounds_s = beat_bounds(beats_s, duration_s)
    starts = _beat_starts(bounds_s, n_frames, params)
    n_beats = len(bounds_s) - 1
    beat_len = np.diff(bounds_s)
    # The tracker's tempo (its beats are whole tracker frames apart: a median of their
    # lengths is off by up to half a frame), else the given beats' median.
    tempo_bpm = float(tempo_bpm if tempo_bpm is not None else 60.0 / np.median(beat_len))

    frame_feats = _frame_features(y, params)
    spectral, _ = _pool(frame_feats[:13], starts)
    chroma, _ = _pool(frame_feats[13:], starts)
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
    mfcc_mean, mfcc_std = _pool(mfcc / _MFCC_SCALE, starts)
    deltas, _ = _pool(librosa.feature.delta(mfcc, mode="nearest") / _DELTA_SCALE, starts)

    on = onset / _ONSET_SCALE
    on_mean, on_std = _pool(on[None], starts)
    on_max = np.maximum.reduceat(on, starts[:-1])[:, None]
    sub_t = bounds_s[:-1, None] + beat_len[:, None] * np.arange(4)[None] / 4
    sub_f = np.clip(np.rint(sub_t * sr / hop).astype(np.int64), 0, n_frames - 1)
    padded = np.pad(on, 1)
    sub = np.maximum(np.maximum(padded[sub_f], padded[sub_f + 1]), padded[sub_f + 2])
    phase = _phase_from_downbeats(bounds_s, downbeats_s) if len(downbeats_s) else 0
    bar_pos = np.eye(BEATS_PER_BAR)[(np.arange(n_beats) - phase) % BEATS_PER_BAR]
    rhythm = np.concatenate([on_mean, on_max, on_std, beat_len[:, None], sub, bar_pos], axis=1)

    if stem_mels is not None and stem_mels.shape[2] != n_frames:
        raise ValueError(f"stem mels have {stem_mels.shape[2]} frames, the audio {n_frames}")
    stems = _stem_features(stem_mels, starts, params)
    features = np.concatenate([spectral, mfcc_mean, mfcc_std, deltas, chroma, rhythm, stems],
                              axis=1).astype(np.float32)
    assert features.shape == (n_beats, N_BEAT_FEATURES)
    return BeatFeatures(features, bounds_s, tempo_bpm, phase, duration_s, stems_source)


# ---------------------------------------------------------------------------- files

def sample_name(raw_path: str | os.PathLike) -> str:
    """The sample name of a raw file: 'jam' for input/jam_raw.wav (else the file's stem)."""
    stem = Path(raw_path).stem
    return stem[: -len(RAW_SUFFIX)] if stem.endswith(RAW_SUFFIX) and len(stem) > len(RAW_SUFFIX) else stem


def cache_path(raw_path: str | os.PathLike, cache_dir: str | os.PathLike = "cache") -> Path:
    """cache/beat_features/{name}.npz for a raw file."""
    return Path(cache_dir) / "beat_features" / f"{sample_name(raw_path)}.npz"


def _stem_mels_for(raw_path: Path, y: np.ndarray, cache_dir: Path, n_frames: int,
                   params: FeatureParams) -> tuple[np.ndarray | None, str]:
    """Stem mels of a recording on the analysis grid `params` (y is its analysis audio):
    cached ones (cache/stems_mel/), else editorbot.stems's offline 'hpss' backend computed
    now, else none. Returns (mels, stems_source)."""
    try:
        from .. import stems
    except ImportError as err:
        log.warning("%s: editorbot.stems is not available (%s); stem features are zeros",
                    raw_path, err)
        return None, "zeros"
    layout = Layout(raw_path.parent.parent, cache_dir)
    name = sample_name(raw_path)
    mel_file = layout.stems_mel(name)
    if mel_file.exists():
        try:
            mels, backend = stems.load_stem_mels(layout, name, params=params, frames=n_frames)
            return mels, f"cache:{backend}"
        except UserError as err:
            log.warning("%s; computing offline 'hpss' stems for the beat features instead", err)
    mels = stems.stem_mels(stems.hpss_stems(y, sr=params.sr), y, params)
    return mels, "hpss"


def beat_features(raw_path: str | os.PathLike, *, cache_dir: str | os.PathLike = "cache",
                  beats_s: np.ndarray | None = None, downbeats_s: np.ndarray | None = None,
                  params: FeatureParams = DEFAULT_PARAMS) -> BeatFeatures:
    """The beat grid and features of a raw recording, cached in cache_dir/beat_features/.

    The cache entry is keyed by the parameters, the feature and grid versions, the source
    file's fingerprint, the given beats/downbeats (if any) and the stems file used; a change
    in any of them recomputes. The beat grid is editorbot.grid's, cached in cache_dir/grid/.
    Stems: cache/stems_mel/{name}_stems.npz when it exists (made by `editorbot stems`), else
    editorbot.stems's offline 'hpss' backend now.

    Args:
        raw_path: the recording.
        cache_dir: the cache folder.
        beats_s, downbeats_s: known beat and bar times (seconds), see compute_beat_features.

    Returns:
        BeatFeatures
    """
    raw_path = Path(raw_path)

    def grid_key(x) -> str | None:
        return None if x is None else hashlib.blake2b(
            np.asarray(x, np.float64).tobytes(), digest_size=8).hexdigest()

    probe(raw_path)  # a clear error for a missing or broken file before anything else
    stems_file = Layout(raw_path.parent.parent, Path(cache_dir)).stems_mel(sample_name(raw_path))
    meta = {"kind": "beat_features", "version": FEATURE_VERSION, "grid_version": grid.GRID_VERSION,
            "params": params.as_dict(),
            "source": raw_path.name, "source_fingerprint": file_fingerprint(raw_path),
            "beats": grid_key(beats_s), "downbeats": grid_key(downbeats_s),
            "stems_file": file_fingerprint(stems_file) if stems_file.exists() else None,
            "editorbot_version": __version__}

    def compute() -> dict[str, np.ndarray]:
        y = load_analysis(raw_path, sr=params.sr)
        mels, source = _stem_mels_for(raw_path, y, Path(cache_dir), params.n_frames(len(y)), params)
        found = (None if beats_s is not None and downbeats_s is not None else
                 grid.cached_beat_grid(raw_path, params, cache_dir=cache_dir, y=y))
        bf = compute_beat_features(y, params, beat_grid=found, beats_s=beats_s, downbeats_s=downbeats_s,
                                   stem_mels=mels, stems_source=source, where=str(raw_path))
        return {"features": bf.features, "bounds_s": bf.bounds_s,
                "tempo_bpm": np.float64(bf.tempo_bpm), "downbeat_phase": np.int64(bf.downbeat_phase),
                "duration_s": np.float64(bf.duration_s), "stems_source": np.array(source)}

    arrays = cached(cache_path(raw_path, cache_dir), meta, compute)
    return BeatFeatures(arrays["features"].astype(np.float32), arrays["bounds_s"],
                        float(arrays["tempo_bpm"]), int(arrays["downbeat_phase"]),
                        float(arrays["duration_s"]), str(arrays["stems_source"]))
