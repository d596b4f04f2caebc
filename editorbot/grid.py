"""The beat and bar grid of a recording, one for the whole project: the rule-based editor's
bars, the RL beat features' beats and bar positions and the review page's snapping.

Beats follow a time-varying tempo (each window's own, near the recording's); bar lines are
where harmony changes, with the bar phase held for whole sections and starting where playing
starts after silence. Computed from the mono analysis audio with the FeatureParams passed in,
on the analysis grid, and cached per raw in cache/grid/{name}.npz (`cached_beat_grid`).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.ndimage

from . import __version__
from .cache import cached, file_fingerprint
from .edits import Edit, raw_rate
from .errors import log
from .features import FeatureParams, stft_blocks
from .layout import RAW_SUFFIX

GRID_VERSION = 1
ANCHOR_BONUS = 1.0  # bar-phase score (mean clipped z of harmonic change) for playing after silence
PHASE_CHANGE_COST = 4.0  # bar-phase score a change of bar phase costs


@dataclass(frozen=True)
class GridConfig:
    """Settings of the beat and bar tracker.

    frame_step: the tracker hears every frame_step-th frame of the analysis grid (2: hop 512
        samples, 23 ms, at the contract's grid; every frame put fewer bar lines on a downbeat,
        docs/results.md). Its beats are on the analysis grid all the same.
    n_mels: mel bands of the tracker's onset envelope.
    min_bpm, max_bpm: tempo range searched for a beat.
    pulse_window_s, pulse_hop_s: windows in which the onset autocorrelation measures how
        steady the pulse is (pulse clarity, 0..1).
    min_pulse_clarity: a window with a pulse at least this clear has a beat.
    min_pulse_fraction: the recording has a beat grid when at least this fraction of its
        sounding windows has a beat; otherwise it has none (free time).
    beats_per_bar: beats in a bar (the meter is not estimated).
    silence_db: frames this far below the recording's loud level (95th percentile of the
        frame level) are silence: they carry no onsets.
    """

    frame_step: int = 2
    n_mels: int = 64
    min_bpm: float = 60.0
    max_bpm: float = 200.0
    pulse_window_s: float = 8.0
    pulse_hop_s: float = 2.0
    min_pulse_clarity: float = 0.35
    min_pulse_fraction: float = 0.3
    beats_per_bar: int = 4
    silence_db: float = 35.0

    def tracker_params(self, params: FeatureParams) -> FeatureParams:
        """The grid the tracker's frames are on: params with hop_length * frame_step and
        n_mels bands (every frame_step-th frame of the analysis grid)."""
        if self.frame_step < 1:
            raise ValueError(f"frame_step {self.frame_step}: must be at least 1")
        return FeatureParams(**(params.as_dict() | {"hop_length": params.hop_length * self.frame_step,
                                                     "n_mels": self.n_mels}))


DEFAULT_GRID_CONFIG = GridConfig()


@dataclass
class Frames:
    """What the tracker hears, one column per frame of its grid (GridConfig.tracker_params).

    mel_db : np.ndarray [shape=(n_mels, t)], dB re 1.0 (floored at -100)
    chroma : np.ndarray [shape=(12, t)], power per pitch class
    rms_db : np.ndarray [shape=(t,)], dB re full scale
    onset : np.ndarray [shape=(t,)], mel flux (rise from frame t - 1 to t), 0 in silence
    sounding : np.ndarray [shape=(t,)], bool: within silence_db of loud_db
    loud_db: the recording's loud level (95th percentile of rms_db).
    """

    mel_db: np.ndarray
    chroma: np.ndarray
    rms_db: np.ndarray
    onset: np.ndarray
    sounding: np.ndarray
    loud_db: float


@dataclass
class Grid:
    """A recording's beats and bar lines, in seconds of the raw.

    beats_s : np.ndarray [shape=(n_beats,)], float64, increasing; empty without a steady beat.
        They fall on frames of the analysis grid (`beat_frames`).
    downbeats_s : np.ndarray [shape=(n_bars,)], float64: the beats that start a bar.
    valid : np.ndarray [shape=(n_beats,)], bool: beats in playing with a clear pulse (the
        bar phase is judged on these; elsewhere the grid is carried through).
    tempo_bpm: the recording's main tempo, None without a steady beat.
    pulse_clarity: median clarity of the sounding windows (0..1).
    pulse_fraction: share of the sounding windows with a pulse (0..1).
    window_s, window_clarity : np.ndarray [shape=(w,)]: centre (seconds) and pulse clarity
        (0..1) of each window of the onset envelope.
    """

    beats_s: np.ndarray
    downbeats_s: np.ndarray
    valid: np.ndarray
    tempo_bpm: float | None
    pulse_clarity: float
    pulse_fraction: float
    window_s: np.ndarray
    window_clarity: np.ndarray

    @property
    def steady(self) -> bool:
        return self.tempo_bpm is not None

    def beat_frames(self, params: FeatureParams) -> np.ndarray:
        """The beats as frames of the analysis grid, int64 (n_beats,)."""
        return params.s_to_frame(self.beats_s)


# ---------------------------------------------------------------------------- frames

def spectral_frames(y: np.ndarray, params: FeatureParams,
                    config: GridConfig = DEFAULT_GRID_CONFIG) -> Frames:
    """Mel dB, chroma, level and onset envelope of `y`, block by block (features.stft_blocks),
    on the tracker's grid: every config.frame_step-th frame of the analysis grid.

    Args:
        y : np.ndarray [shape=(n,)], float32 mono at params.sr

    Returns:
        Frames with t = 1 + n // (params.hop_length * config.frame_step) columns.
    """
    import librosa

    tp = config.tracker_params(params)
    n_frames = tp.n_frames(len(y))
    mel_basis = librosa.filters.mel(sr=tp.sr, n_fft=tp.n_fft, n_mels=tp.n_mels,
                                    fmin=tp.fmin, fmax=tp.fmax).astype(np.float32)
    chroma_basis = librosa.filters.chroma(sr=tp.sr, n_fft=tp.n_fft).astype(np.float32)
    mel_db = np.empty((tp.n_mels, n_frames), np.float32)
    chroma = np.empty((12, n_frames), np.float32)
    rms_db = np.empty(n_frames, np.float32)
    for f0, frames, spec in stft_blocks(np.asarray(y, np.float32), tp.n_fft, tp.hop_length):
        f1 = f0 + len(frames)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32).T
        mel_db[:, f0:f1] = 10 * np.log10(np.maximum(mel_basis @ power, 1e-10))
        chroma[:, f0:f1] = chroma_basis @ power
        rms_db[f0:f1] = 10 * np.log10(np.maximum(np.mean(frames ** 2, axis=1), 1e-10))
    np.maximum(mel_db, -100.0, out=mel_db)
    loud_db = float(np.percentile(rms_db, 95))
    sounding = rms_db > loud_db - config.silence_db
    # Uncentred flux: onset[t] = rise from frame t - 1 to t (frames are centred already).
    onset = librosa.onset.onset_strength(S=mel_db, sr=tp.sr, hop_length=tp.hop_length, center=False)
    onset[~sounding] = 0.0
    return Frames(mel_db, chroma, rms_db, onset, sounding, loud_db)


def frame_means(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Mean of x's columns from each start to the next (the last: to the end).

    Args:
        x : np.ndarray [shape=(d, t)]; starts: sorted frame indices (m,) in [0, t)

    Returns:
        np.ndarray [shape=(d, m)]
    """
    starts = np.asarray(starts, np.int64)
    sums = np.add.reduceat(x, starts, axis=1)
    counts = np.diff(np.r_[starts, x.shape[1]])
    return sums / np.maximum(counts, 1)[None, :]


# ---------------------------------------------------------------------------- pulse and beats

def pulse_clarity(onset: np.ndarray, fps: float, config: GridConfig = DEFAULT_GRID_CONFIG):
    """How clear the pulse is, in overlapping windows of the onset envelope.

    Clarity is the highest normalised autocorrelation of the onset envelope at a lag in
    the tempo range: near 1 for a metronome, near 0.2 for free-tempo playing.

    Args:
        onset : np.ndarray [shape=(t,)], on a grid of fps frames per second

    Returns:
        centres_s : np.ndarray [shape=(w,)], window centres in seconds
        clarity : np.ndarray [shape=(w,)], 0..1
        ac : np.ndarray [shape=(w, l)], normalised autocorrelation at each lag of
        lags : np.ndarray [shape=(l,)], in frames (the tempo range, fast to slow)
    """
    win = max(8, int(round(config.pulse_window_s * fps)))
    step = max(1, int(round(config.pulse_hop_s * fps)))
    x = onset.astype(np.float64)
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    windows = np.lib.stride_tricks.sliding_window_view(x, win)[::step]
    windows = windows - windows.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(windows, n=2 * win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :win]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo = max(1, int(np.floor(60 * fps / config.max_bpm)))
    hi = min(win // 2, int(np.ceil(60 * fps / config.min_bpm)))
    band = ac[:, lo:hi + 1]
    centres_s = (np.arange(len(windows)) * step + win / 2) / fps
    return centres_s, np.clip(band.max(axis=1), 0.0, 1.0), band, np.arange(lo, hi + 1)


def _peak_bpm(curves: np.ndarray, lags: np.ndarray, weight: np.ndarray, fps: float) -> np.ndarray:
    """Tempo of the highest weighted autocorrelation peak of each row, refined between
    lags by a parabola (integer lags alone are 2% off at 120 bpm)."""
    curves = np.atleast_2d(curves)
    weight = np.broadcast_to(weight, curves.shape)
    best = np.argmax(np.clip(curves, 0, None) * weight, axis=1)
    rows = np.arange(len(curves))
    left = curves[rows, np.maximum(best - 1, 0)]
    mid = curves[rows, best]
    right = curves[rows, np.minimum(best + 1, curves.shape[1] - 1)]
    bend = left - 2 * mid + right
    shift = np.where(bend < 0, 0.5 * (left - right) / np.where(bend < 0, bend, -1.0), 0.0)
    return 60 * fps / (lags[best] + np.clip(shift, -0.5, 0.5))


def track(frames: Frames, params: FeatureParams, config: GridConfig = DEFAULT_GRID_CONFIG) -> Grid:
    """The beat and bar grid from the tracker's frames (no caching).

    Args:
        frames: spectral_frames(y, params, config).
        params: the analysis grid the frames were made on.
    """
    tp = config.tracker_params(params)
    fps = tp.frames_per_s
    centres_s, clarity, ac, lags = pulse_clarity(frames.onset, fps, config)
    frame_s = np.arange(len(frames.onset)) / fps
    sounding_win = np.interp(centres_s, frame_s, frames.sounding.astype(float)) > 0.5
    has_pulse = clarity >= config.min_pulse_clarity
    fraction = float(has_pulse[sounding_win].mean()) if sounding_win.any() else 0.0
    overall = float(np.median(clarity[sounding_win])) if sounding_win.any() else 0.0
    none = np.zeros(0)
    if fraction < config.min_pulse_fraction:
        return Grid(none, none, np.zeros(0, bool), None, overall, fraction, centres_s, clarity)
    beats_s, downbeats_s, valid, tempo = _beats_and_bars(
        frames, centres_s, ac, lags, has_pulse & sounding_win, tp, config)
    return Grid(beats_s, downbeats_s, valid, tempo, overall, fraction, centres_s, clarity)


def _beats_and_bars(frames: Frames, centres_s, ac, lags, reliable, tp: FeatureParams,
                    config: GridConfig):
    """Beats (time-varying tempo) and downbeats (bar phase chosen by harmonic change, and
    by where playing starts after a silence: a count-in or a take starts on a bar line)."""
    import librosa

    sr, hop = tp.sr, tp.hop_length
    fps = tp.frames_per_s
    onset, chroma, sounding = frames.onset, frames.chroma, frames.sounding
    n = len(onset)
    frame_s = np.arange(n) / fps
    # One tempo from the mean autocorrelation of the windows with a pulse, with a
    # log-normal prior around 120 bpm (0.8 octave: a backbeat's strong half-tempo peak
    # must be 1.5 times higher to win); then each window's own tempo near it (a fifth of
    # an octave: drift and tempo changes, no octave jumps).
    if not reliable.any():
        reliable = np.ones(len(ac), bool)
    bpms = 60 * fps / lags
    tempo = float(_peak_bpm(ac[reliable].mean(axis=0), lags,
                            np.exp(-0.5 * (np.log2(bpms / 120.0) / 0.8) ** 2), fps)[0])
    local = _peak_bpm(ac[reliable], lags, np.exp(-0.5 * (np.log2(bpms / tempo) / 0.2) ** 2), fps)
    if len(local) >= 5:
        local = scipy.ndimage.median_filter(local, size=5, mode="nearest")
    bpm_frames = np.interp(frame_s, centres_s[reliable], local)
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=sr, hop_length=hop,
                                       bpm=bpm_frames, trim=False, units="frames")
    beats = np.asarray(beats, np.int64)
    if len(beats) < 2 * config.beats_per_bar:
        beats = np.rint(np.arange(0, n, fps * 60 / tempo)).astype(np.int64)
    # The flux peaks when a transient fills about half the window, a quarter window
    # before the frame's centre (measured on generated drums: mean error < 1 ms).
    delay_s = tp.n_fft / (4 * sr)

    valid = np.interp(beats / fps, centres_s, reliable.astype(float)) > 0.5
    if not valid.any():
        valid[:] = True
    if 2 * tempo <= config.max_bpm and len(beats) > 2:
        # The tempo may be half the true one (a backbeat's 2-beat period often wins), and
        # then the beats may sit on 2 and 4. Chords change on bar lines: when the phase of
        # the half-beat grid where harmony changes most lies between the beats, move the
        # beats there.
        mids = (beats[:-1] + beats[1:]) // 2
        half = np.empty(2 * len(beats) - 1, np.int64)
        half[0::2], half[1::2] = beats, mids
        change = _harmonic_change(half, chroma, [1, 2, 2 * config.beats_per_bar])
        half_valid = np.zeros(len(half), bool)
        half_valid[0::2], half_valid[1::2] = valid, valid[:-1] & valid[1:]
        per_bar = 2 * config.beats_per_bar
        phase_of = np.arange(len(half)) % per_bar
        means = [change[(phase_of == p) & half_valid].mean() if ((phase_of == p) & half_valid).any()
                 else -np.inf for p in range(per_bar)]
        if int(np.argmax(means)) % 2 == 1:
            log.debug("beats moved by half a beat (harmony changes between them)")
            beats, valid = mids, valid[:-1] & valid[1:]
    beats_s = beats / fps + delay_s
    # The first beat of playing that follows at least a second of silence.
    gap = int(round(fps))
    quiet_before = np.r_[0, np.cumsum(sounding)]
    starts = np.flatnonzero(sounding[1:] & ~sounding[:-1]) + 1
    starts = starts[[quiet_before[t] - quiet_before[max(0, t - gap)] == 0 for t in starts]]
    near = np.searchsorted(beats, starts - 3)
    anchors = near[(near < len(beats)) & (np.abs(beats[np.minimum(near, len(beats) - 1)] - starts) <= 0.15 * fps)]
    is_down = _bar_lines(beats, chroma, valid, config.beats_per_bar, [1, 2, config.beats_per_bar],
                         anchors=anchors)
    return beats_s, beats_s[is_down], valid, tempo


def _harmonic_change(grid: np.ndarray, chroma: np.ndarray, widths: list[int]) -> np.ndarray:
    """How much the harmony after each grid step differs from the harmony before it: the
    sum over `widths` (in steps) of 1 - cosine of the chroma of the two spans, z-scored.

    Returns:
        change : np.ndarray [shape=(len(grid),)]
    """
    # Noise (drums) adds to every pitch class alike: take each frame's floor away.
    tonal = chroma - chroma.min(axis=0, keepdims=True)
    cum = np.c_[np.zeros((12, 1)), np.cumsum(frame_means(tonal, grid), axis=1)]
    m = len(grid)
    idx = np.arange(m)

    def window(a, b):
        a, b = np.clip(a, 0, m), np.clip(b, 0, m)
        v = cum[:, b] - cum[:, a]
        return v / np.maximum(np.linalg.norm(v, axis=0, keepdims=True), 1e-9)

    return sum(_robust_z(1.0 - np.sum(window(idx - w, idx) * window(idx, idx + w), axis=0))
               for w in widths)


def _bar_lines(grid: np.ndarray, chroma: np.ndarray, valid: np.ndarray, per_bar: int,
               widths: list[int], anchors: np.ndarray = np.zeros(0, np.int64)) -> np.ndarray:
    """Which beats start a bar, from harmonic change (chords change on bar lines;
    onsets do not tell: a backbeat's snare on 2 and 4 is louder than the kick on 1).

    Args:
        grid : np.ndarray [shape=(m,)], frames of the beats
        chroma : np.ndarray [shape=(12, t)]
        valid : np.ndarray [shape=(m,)], bool: steps in playing with a pulse
        per_bar: grid steps in a bar.
        widths: spans (in steps) over which harmony before and after a step is compared.
        anchors: steps where playing starts after a silence: their phase gets ANCHOR_BONUS
            for the 8 bars that follow (harmony alone often cannot tell there).

    Returns:
        is_down : np.ndarray [shape=(m,)], bool
    """
    m = len(grid)
    idx = np.arange(m)
    change = _harmonic_change(grid, chroma, widths)
    # Relative to the bar around it (one step of each phase): playing whose harmony moves
    # on every beat (noodling) says nothing about the phase.
    score = np.clip(change - scipy.ndimage.uniform_filter1d(change, per_bar, mode="nearest"), -3, 3)
    # The phase whose steps score highest on average over 8 bars, valid steps only.
    if not valid.any():
        valid = np.ones(m, bool)
    width = 8 * per_bar
    phase_score = np.full((per_bar, m), -np.inf)
    for p in range(per_bar):
        mine = valid & (idx % per_bar == p)
        total = scipy.ndimage.uniform_filter1d(np.where(mine, score, 0.0), width, mode="constant")
        count = scipy.ndimage.uniform_filter1d(mine.astype(float), width, mode="constant")
        phase_score[p] = np.where(count > 0.5 / width, total / np.maximum(count, 1e-9), -np.inf)
    for a in anchors:
        phase_score[a % per_bar, a:a + width] += ANCHOR_BONUS
    # The phase path with the best total score, each change of phase costing
    # PHASE_CHANGE_COST (a bar phase holds for whole sections; the beat tracker rarely
    # drops a beat). Steps with no valid step near them score every phase alike.
    score = np.where(np.isfinite(phase_score), phase_score, 0.0)
    total = score[:, 0].copy()
    came_from = np.zeros((per_bar, m), np.int64)
    for i in range(1, m):
        stay, best = total, int(np.argmax(total))
        switch = total[best] - PHASE_CHANGE_COST
        came_from[:, i] = np.where(stay >= switch, np.arange(per_bar), best)
        total = np.maximum(stay, switch) + score[:, i]
    phase = np.empty(m, np.int64)
    phase[-1] = int(np.argmax(total))
    for i in range(m - 1, 0, -1):
        phase[i - 1] = came_from[phase[i], i]
    return (idx % per_bar) == phase


def _robust_z(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826
    return (x - med) / (mad if mad > 1e-9 else (np.std(x) + 1e-9))


# ---------------------------------------------------------------------------- entry points

def beat_grid(y: np.ndarray, params: FeatureParams, config: GridConfig = DEFAULT_GRID_CONFIG) -> Grid:
    """The beat and bar grid of mono analysis audio (no caching).

    Args:
        y : np.ndarray [shape=(n,)], float32 mono at params.sr
        params: the analysis grid (the beats fall on its frames).
    """
    return track(spectral_frames(y, params, config), params, config)


def cache_path(raw_path: str | os.PathLike, cache_dir: str | os.PathLike = "cache") -> Path:
    """cache/grid/{name}.npz for a raw file ('jam' for input/jam_raw.wav)."""
    stem = Path(raw_path).stem
    name = stem[: -len(RAW_SUFFIX)] if stem.endswith(RAW_SUFFIX) and len(stem) > len(RAW_SUFFIX) else stem
    return Path(cache_dir) / "grid" / f"{name}.npz"


def _check(arrays: dict[str, np.ndarray]) -> str | None:
    beats, down, valid = arrays["beats_s"], arrays["downbeats_s"], arrays["valid"]
    if beats.ndim != 1 or valid.shape != beats.shape or not np.isin(down, beats).all():
        return "beats, bar lines and validity do not match"
    if len(beats) > 1 and not np.all(np.diff(beats) > 0):
        return "beat times are not increasing"
    return None


def cached_beat_grid(raw_path: str | os.PathLike, params: FeatureParams, *,
                     cache_dir: str | os.PathLike = "cache",
                     config: GridConfig = DEFAULT_GRID_CONFIG,
                     y: np.ndarray | None = None) -> Grid:
    """The beat and bar grid of a raw recording, cached in cache_dir/grid/{name}.npz.

    The entry records the feature params, the tracker's config, GRID_VERSION and the
    source file's fingerprint; a change in any of them recomputes.

    Args:
        raw_path: the recording.
        params: the analysis grid.
        y: the recording's analysis audio (mono at params.sr) when the caller has it
            loaded already; else it is loaded when the grid must be computed.
    """
    from .audio import load_analysis

    raw_path = Path(raw_path)
    meta = {"kind": "beat_grid", "version": GRID_VERSION, "params": params.as_dict(),
            "config": asdict(config), "source": raw_path.name,
            "source_fingerprint": file_fingerprint(raw_path), "editorbot_version": __version__}

    def compute() -> dict[str, np.ndarray]:
        audio = load_analysis(raw_path, sr=params.sr) if y is None else y
        g = beat_grid(audio, params, config)
        return {"beats_s": g.beats_s.astype(np.float64), "downbeats_s": g.downbeats_s.astype(np.float64),
                "valid": g.valid.astype(bool),
                "tempo_bpm": np.float64(np.nan if g.tempo_bpm is None else g.tempo_bpm),
                "pulse_clarity": np.float64(g.pulse_clarity), "pulse_fraction": np.float64(g.pulse_fraction),
                "window_s": g.window_s.astype(np.float64), "window_clarity": g.window_clarity.astype(np.float64)}

    a = cached(cache_path(raw_path, cache_dir), meta, compute, check=_check)
    tempo = float(a["tempo_bpm"])
    return Grid(a["beats_s"], a["downbeats_s"], a["valid"].astype(bool), None if np.isnan(tempo) else tempo,
                float(a["pulse_clarity"]), float(a["pulse_fraction"]), a["window_s"], a["window_clarity"])


def grid_for(raw_path: str | os.PathLike, params: FeatureParams, *,
             cache_dir: str | os.PathLike | None = None, y: np.ndarray | None = None) -> Grid:
    """The grid of a raw recording: cached in cache_dir/grid/ when cache_dir is given,
    else computed (from y, its analysis audio, when the caller has it loaded)."""
    if cache_dir is not None:
        return cached_beat_grid(raw_path, params, cache_dir=cache_dir, y=y)
    from .audio import load_analysis

    return beat_grid(load_analysis(raw_path, sr=params.sr) if y is None else y, params)


# ---------------------------------------------------------------------------- cuts on the grid

MIN_SILENCE_S = 0.25  # silence at least this long before playing (or after it) makes an edge
LEVEL_STEP_DB = 12.0  # the playing falls (or rises) this much at once: an edge too
LEVEL_STEP_S = 2.0  # ... comparing the mean level of this long before and after
EDGE_WINDOW_S = 3.0  # a cut within this of an edge of the sound goes there


def sound_edges(mel: np.ndarray, params: FeatureParams, config: GridConfig = DEFAULT_GRID_CONFIG,
                *, min_silence_s: float = MIN_SILENCE_S, step_db: float = LEVEL_STEP_DB,
                step_s: float = LEVEL_STEP_S) -> tuple[np.ndarray, np.ndarray]:
    """Where playing starts and where it stops: after and before a silence, or where it
    rises or falls by step_db at once (a take that ends in quiet noodling). A take's first
    note and the end of its last, where an editor cuts whatever the bar.

    A frame's level is its loudest mel band. A frame is silent when its level is
    config.silence_db or more below the recording's loud level (95th percentile): the
    tracker's margin for silence, read from the mel the model decoded instead of a second
    pass over the audio. A step is where the mean level of the step_s after a frame is
    step_db or more below (a stop) or above (a start) the mean of the step_s before it
    (see `_level_steps`).

    Args:
        mel : np.ndarray [shape=(n_mels, t)], in [0, 1] (features.mel); extra rows (stems)
            after the first params.n_mels are not read.

    Returns:
        (starts_s, stops_s): float64, increasing; a start is the first sounding frame after
        at least min_silence_s of silence or the first frame after a rise, a stop the first
        silent frame of such a silence or the first frame after a fall.
    """
    level = np.asarray(mel[:params.n_mels]).max(axis=0).astype(np.float64) * params.top_db
    if level.size == 0:
        return np.zeros(0), np.zeros(0)
    silent = level <= np.percentile(level, 95) - config.silence_db
    change = np.diff(np.r_[0, silent.astype(np.int8), 0])
    first, after = np.flatnonzero(change == 1), np.flatnonzero(change == -1)  # silent [first, after)
    long = after - first >= max(1, int(round(min_silence_s * params.frames_per_s)))
    rises, falls = _level_steps(level, max(1, int(round(step_s * params.frames_per_s))), step_db)
    starts = np.union1d(after[long & (after < len(level))], rises)
    stops = np.union1d(first[long & (first > 0)], falls)
    return params.frame_to_s(starts).astype(np.float64), params.frame_to_s(stops).astype(np.float64)


def _level_steps(level: np.ndarray, w: int, step_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Frames where the playing rises and where it falls by step_db.

    A step is a run of frames where the mean level of the w frames from there on is step_db
    or more above (a rise) or below (a fall) the mean of the w frames before (the first and
    last frames' levels held beyond the ends); within each run, the edge is the frame where
    the level changes most between the quarter-windows before and after it (a step shorter
    than a window makes a run of equal long steps).
    """
    n = len(level)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    total = np.r_[0.0, np.cumsum(np.pad(level, w, mode="edge"))]
    at = np.arange(n) + w  # frame t of level is frame t + w of the padded one

    def change(k: int) -> np.ndarray:  # mean of the k frames from t on minus that of the k before
        return ((total[at + k] - total[at]) - (total[at] - total[at - k])) / k

    long, short = change(w), change(max(1, w // 4))
    out = []
    for sign in (1, -1):
        inside = np.diff(np.r_[0, (sign * long >= step_db).astype(np.int8), 0])
        out.append(np.array([a + int(np.argmax(sign * short[a:b]))
                             for a, b in zip(np.flatnonzero(inside == 1), np.flatnonzero(inside == -1))],
                            np.int64))
    return out[0], out[1]


def snap_time(t: float, grid: Grid) -> float:
    """Where a cut at raw time t goes on the grid: the nearest bar line within one beat,
    else the nearest beat within half a beat, else t itself (no steady beat there).

    One beat is the local beat period (the beats' spacing around t).
    """
    beats = grid.beats_s
    if len(beats) < 2:
        return t
    i = int(np.clip(np.searchsorted(beats, t), 1, len(beats) - 1))
    period = float(beats[i] - beats[i - 1])
    if len(grid.downbeats_s):
        j = int(np.argmin(np.abs(grid.downbeats_s - t)))
        if abs(grid.downbeats_s[j] - t) <= period:
            return float(grid.downbeats_s[j])
    k = i if abs(beats[i] - t) < abs(beats[i - 1] - t) else i - 1
    return float(beats[k]) if abs(beats[k] - t) <= period / 2 else t


def snap_cuts(edit: Edit, grid: Grid | None, *, keep_length: bool = False,
              edges: tuple[np.ndarray, np.ndarray] | None = None) -> Edit:
    """The edit with every cut moved onto an edge of the sound or the raw's beat and bar
    grid: a segment's start to the nearest place where playing starts within EDGE_WINDOW_S
    of it, its end to the nearest place where playing stops (`sound_edges`), else onto the
    grid (see `snap_time`).

    A cut is where the edit starts or stops playing a stretch of the raw: the start of a
    segment that does not continue the one before it, and the end of one that the next
    does not continue. Crossfades stay centred on the seams, so they sit on the grid too. A
    move is refused where it would leave a segment shorter than half of what it was, or
    make a cut forward play a stretch twice. Segments not from the raw, or played at
    another speed, keep their cuts.

    Args:
        edit: the edit, its segments in raw seconds.
        grid: the raw's beat grid, or None for the edges alone (a cut far from an edge stays).
        keep_length: the edit keeps its length (a length the user asked for): the last
            segment's end takes up the difference, within the raw (`edit.raw_duration_s`;
            where that is unset, no further than the edit already played: a little short
            rather than past the raw's end).
        edges: (starts_s, stops_s) from `sound_edges`, or None for the grid alone.

    Returns:
        a new Edit (the input is not changed)
    """
    segs = list(edit.segments)
    if not ((grid is not None and grid.steady) or edges is not None) or not segs:
        return edit

    starts_at, stops_at = (None, None) if edges is None else edges

    def place(t: float, edge_times: np.ndarray | None) -> float:
        if edge_times is not None and len(edge_times):
            j = int(np.argmin(np.abs(edge_times - t)))
            if abs(edge_times[j] - t) <= EDGE_WINDOW_S:
                return float(edge_times[j])
        return t if grid is None else snap_time(t, grid)

    plain = [s.raw_start_s is not None and raw_rate(s) == 1.0 for s in segs]
    starts = [s.raw_start_s for s in segs]
    ends = [s.raw_end_s for s in segs]
    new_starts, new_ends = list(starts), list(ends)
    for k, s in enumerate(segs):
        if not plain[k]:
            continue
        joined_before = k > 0 and plain[k - 1] and abs(ends[k - 1] - starts[k]) < 1e-6
        joined_after = k + 1 < len(segs) and plain[k + 1] and abs(ends[k] - starts[k + 1]) < 1e-6
        a = starts[k] if joined_before else place(starts[k], starts_at)
        b = ends[k] if joined_after else place(ends[k], stops_at)
        if b - a >= s.duration_s / 2:
            new_starts[k], new_ends[k] = a, b
    for k in range(1, len(segs)):  # a cut forward must not come to play a stretch twice
        if plain[k - 1] and plain[k] and starts[k] >= ends[k - 1] and new_starts[k] < new_ends[k - 1]:
            new_starts[k], new_ends[k - 1] = starts[k], ends[k - 1]
    out = [replace(s, raw_start_s=new_starts[k], duration_s=new_ends[k] - new_starts[k])
           if plain[k] else s for k, s in enumerate(segs)]
    if keep_length and plain[-1]:
        last = out[-1]
        change = sum(s.duration_s for s in out) - sum(s.duration_s for s in segs)
        limit = edit.raw_duration_s if edit.raw_duration_s is not None else max(
            e for e, p in zip(ends, plain) if p)
        duration = min(last.duration_s - change, limit - last.raw_start_s)
        if duration > 0:
            out[-1] = replace(last, duration_s=duration)
    out = [replace(s, fade_in_s=min(s.fade_in_s, s.duration_s), fade_out_s=min(s.fade_out_s, s.duration_s))
           for s in out]
    return replace(edit, segments=out)
