"""The rule-based structure editor: edits a raw recording with no training at all.

Beat and bar grid, sections from self-similarity novelty, per-unit scores (energy, density,
repetition, groove, noodling, silence, seam cost), then a dynamic programme over
bar-aligned segments that keeps the best music under a target duration, with an intro
and an ending. It is the default editor for a new user and the baseline every model must beat.

What it never does unless asked (`allow_loops`): play any stretch of the raw more than
twice. When the recording holds less music than the target, it plays whole passages a
second time (a band repeating a chorus), and when even that falls short it returns a
shorter edit and says why in one line. Every cut falls on a unit boundary (a bar line),
and the edit ends where the playing ends or fades out.

Units are bars when the recording has a steady beat, and phrases (about `phrase_s` long,
cut at the quietest moment nearby) when it does not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np
import scipy.ndimage
import scipy.signal

from . import audio, grid
from .edits import Edit, Segment, clock
from .errors import UserError, log
from .features import DEFAULT_PARAMS, FeatureParams
from .grid import GridConfig, frame_means

DEFAULT_KEEP = 0.3  # fraction of the raw kept when the user has no training pairs
MAX_LOOP_FACTOR = 4.0  # longest target, in lengths of the recording (looping makes up the rest)
MAX_PLAYS = 2  # most plays of any stretch of the raw without allow_loops


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the rule-based editor (all times in seconds unless named otherwise).

    grid: the beat and bar tracker (editorbot.grid); its silence_db also says which units
        are silence, its min_pulse_clarity which have a beat. The analysis is on the
        tracker's frames (every grid.frame_step-th frame of the analysis grid).
    phrase_s: phrase length used when there is no beat grid.
    novelty_beats: half-width of the checkerboard kernel, in beats.
    quiet_db: sounding units this far below the loud level, in a stretch at least twice
        min_segment_s long, are quiet (noodling between takes): their quality drops as a
        noodle's does.
    false_start_s: a stretch of playing between silences shorter than this is a false
        start or a try (when the recording has a longer one): its quality drops too.
    min_quality: units of lower quality (below about the recording's 10th percentile on
        every measure) are not music worth keeping for their own sake: with the silent,
        noodling, quiet and false-start ones, they decide how much music the raw holds,
        hence when passages are played twice.
    noodle_repetition: a unit without a clear pulse whose repetition score is below this
        counts as noodling (aimless playing, tuning).
    min_segment_s: shortest kept segment, and shortest passage played a second time.
    max_repeat_s: longest passage played a second time (about a verse or a chorus).
    cut_penalty: cost of one more cut, in units of one bar of good music.
    seam_weight: weight of the seam cost (0: cut anywhere, 1: only at section changes).
    intro_penalty: cost of starting the edit away from a section start, in bars of good music.
    ending_penalty: cost of ending the edit where the playing goes on (it fades out
        there), in bars of good music; half of it at a section boundary.
    duration_tolerance: relative duration error accepted to keep a natural ending;
        otherwise the edit is trimmed or extended by whole units to the unit boundary
        nearest the target, and fades out there unless the playing ends there.
    crossfade_s: crossfade at each seam.
    fade_out_s: fade at the end when the edit does not stop at a natural ending.
    max_ticks: cap on the duration grid of the search (memory is about 3 bytes x units x ticks).
    """

    grid: GridConfig = field(default_factory=GridConfig)
    phrase_s: float = 4.0
    novelty_beats: int = 16
    quiet_db: float = 15.0
    false_start_s: float = 12.0
    min_quality: float = -2.0
    noodle_repetition: float = 0.6
    min_segment_s: float = 4.0
    max_repeat_s: float = 30.0
    cut_penalty: float = 1.0
    seam_weight: float = 1.0
    intro_penalty: float = 3.0
    ending_penalty: float = 2.0
    duration_tolerance: float = 0.02
    crossfade_s: float = 0.03
    fade_out_s: float = 3.0
    max_ticks: int = 20000


DEFAULT_CONFIG = BaselineConfig()


@dataclass
class Analysis:
    """What the editor knows about a recording. Times in seconds of the raw.

    beats_s: beat times (empty without a beat grid); downbeats_s: bar starts.
    bounds_s: unit boundaries, (n_units + 1,), from 0 to the end of the recording.
    unit_kind: 'bar' or 'phrase'.
    section_starts: unit indices where a section starts (novelty peaks, silence edges).
    end_db: level of the recording's last half second re the loud level (where it ends
        in silence or a rung-out chord, ending there is natural).
    scores: per-unit arrays (n_units,): 'energy_db' (re the loud level), 'density'
        (onsets per s), 'repetition' (0..1), 'pulse' (clarity 0..1), 'silent', 'noodle',
        'quiet', 'false_start' (bools) and 'quality' (the goodness the search maximises,
        per bar of music).
    seam_cost: per boundary (n_units + 1,), 0 (a natural place to cut) .. 1 (mid-phrase).
    novelty: per boundary (n_units + 1,), 0..1.
    """

    duration_s: float
    tempo_bpm: float | None
    pulse_clarity: float
    beats_s: np.ndarray
    downbeats_s: np.ndarray
    bounds_s: np.ndarray
    unit_kind: str
    section_starts: np.ndarray
    end_db: float = 0.0
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    seam_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    novelty: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def n_units(self) -> int:
        return len(self.bounds_s) - 1


def propose_edit(raw_path: str | os.PathLike, *, target_duration_s: float | None = None,
                 keep: float | None = None, allow_loops: bool = False,
                 data_dir: str | os.PathLike = "training_data",
                 params: FeatureParams = DEFAULT_PARAMS,
                 config: BaselineConfig = DEFAULT_CONFIG) -> Edit:
    """The rule-based editor's edit of `raw_path`: bar-aligned runs in raw order; when
    the target is longer than the music in the recording, passages played a second time
    (or, with allow_loops, one passage looped up to the target).

    Args:
        target_duration_s: wanted edit length in seconds (up to MAX_LOOP_FACTOR times the
            recording), or
        keep: wanted fraction of the raw (0..1]. With neither, the median keep ratio of
            the training pairs under `data_dir` is used, or DEFAULT_KEEP without any.
        allow_loops: let a passage play more than MAX_PLAYS times to reach the target.
        data_dir: the user's training_data folder (only read for the default keep ratio).
        params: the analysis grid the recording is heard on.

    Returns:
        Edit, see edit_from_analysis.
    """
    info = audio.probe(raw_path)
    target = resolve_target(info.duration_s, target_duration_s=target_duration_s, keep=keep,
                            data_dir=data_dir, where=str(raw_path))
    y = audio.load_analysis(raw_path, sr=params.sr)
    found = analyze(y, params, config, where=str(raw_path))
    return edit_from_analysis(found, target, allow_loops=allow_loops, config=config,
                              raw_path=str(raw_path), raw_duration_s=info.duration_s)


def edit_from_analysis(found: Analysis, target_s: float, *, allow_loops: bool = False,
                       config: BaselineConfig = DEFAULT_CONFIG, raw_path: str | None = None,
                       raw_duration_s: float | None = None) -> Edit:
    """The edit of an analysed recording, target_s long where the music allows.

    The search keeps the best runs of units up to the music the recording holds
    (music_units). When the target is longer than that, what is missing is made up by
    repeat_runs (each unit plays at most MAX_PLAYS times) or, with allow_loops, by
    loop_runs. When the edit still falls
    short of the target by more than config.duration_tolerance and a unit, one warning
    line says how much music there is and why the edit is shorter.

    Returns:
        Edit whose cuts sit on unit boundaries; its duration is the target to within half
        a unit (config.duration_tolerance where that keeps a natural ending), or shorter
        as the warning says.
    """
    where = raw_path or "raw"
    dur = np.diff(found.bounds_s)
    music_s = float(dur[music_units(found, config)].sum())
    runs = plan(found, min(target_s, 0.95 * music_s), config)
    missing_s = target_s - float(sum(found.bounds_s[b] - found.bounds_s[a] for a, b in runs))
    # Repeats only make up for music the raw lacks; the search's own slack is to_edit's.
    if target_s > 0.95 * music_s and missing_s > config.duration_tolerance * target_s:
        if allow_loops:
            runs = loop_runs(found, runs, missing_s, config, where=where)
        else:
            runs = repeat_runs(found, runs, missing_s, config, where=where)
    edit = to_edit(found, runs, target_s, config, raw_path=raw_path, raw_duration_s=raw_duration_s)
    if target_s - edit.duration_s > max(config.duration_tolerance * target_s, float(np.median(dur))):
        log.warning("%s: %.0f s of music for a %.0f s edit; with no passage played more than %d "
                    "times the edit is %.0f s (--allow-loops loops a passage to the full length)",
                    where, music_s, target_s, MAX_PLAYS, edit.duration_s)
    return edit


def resolve_target(raw_duration_s: float, *, target_duration_s: float | None = None,
                   keep: float | None = None, data_dir: str | os.PathLike = "training_data",
                   where: str = "raw") -> float:
    """The edit length to aim for, in seconds, from the user's request or their pairs."""
    if target_duration_s is not None and keep is not None:
        raise UserError("give either a target duration or a keep ratio, not both")
    if target_duration_s is None:
        if keep is None:
            keep = default_keep(data_dir)
        if not 0.0 < keep <= 1.0:
            raise UserError(f"keep {keep}: must be a fraction in (0, 1], for example 0.3")
        return keep * raw_duration_s
    if target_duration_s <= 0:
        raise UserError(f"target duration {target_duration_s} s: must be positive")
    if target_duration_s > MAX_LOOP_FACTOR * raw_duration_s:
        raise UserError(f"{where}: target duration {target_duration_s:.1f} s is more than "
                        f"{MAX_LOOP_FACTOR:g} times the recording ({raw_duration_s:.1f} s); ask for less")
    return float(target_duration_s)


def default_keep(data_dir: str | os.PathLike = "training_data") -> float:
    """Median edit/raw duration ratio of the training pairs under data_dir, else DEFAULT_KEEP."""
    from .layout import discover

    if not (Path(data_dir) / "input").is_dir():
        return DEFAULT_KEEP
    ratios = []
    for pair in discover(data_dir).pairs:
        try:
            ratios.append(audio.probe(pair.edit).duration_s / audio.probe(pair.raw).duration_s)
        except UserError as err:
            log.warning("%s; not used for the default keep ratio", err)
    ratios = [r for r in ratios if 0.0 < r <= 1.0]
    if not ratios:
        return DEFAULT_KEEP
    keep = float(np.median(ratios))
    log.info("keeping %.0f%% of the raw, the median of %d training pairs in %s",
             100 * keep, len(ratios), data_dir)
    return keep


# ---------------------------------------------------------------------------------------
# Analysis


def analyze(y: np.ndarray, params: FeatureParams, config: BaselineConfig = DEFAULT_CONFIG, *,
            where: str = "raw") -> Analysis:
    """Beat grid (editorbot.grid), units, sections and per-unit scores of mono audio.

    Args:
        y : np.ndarray [shape=(n,)], float32 mono at params.sr
        params: the analysis grid; the analysis runs on the tracker's frames
            (config.grid.tracker_params(params)).
        where: the file name used in log messages.
    """
    fps = config.grid.tracker_params(params).frames_per_s
    duration_s = len(y) / params.sr
    if duration_s < 2 * config.min_segment_s:
        raise UserError(f"{where}: only {duration_s:.1f} s long; the editor needs at least "
                        f"{2 * config.min_segment_s:.0f} s of audio")
    frames = grid.spectral_frames(y, params, config.grid)
    found_grid = grid.track(frames, params, config.grid)

    if found_grid.steady:
        beats_s, downbeats_s = found_grid.beats_s, found_grid.downbeats_s
        bounds_s = np.unique(np.concatenate([[0.0], downbeats_s[downbeats_s > 0.05], [duration_s]]))
        bounds_s = _merge_short(bounds_s, 0.5 * float(np.median(np.diff(downbeats_s))))
        unit_kind = "bar"
        grid_s = beats_s
    else:
        log.warning("%s: no steady beat found (pulse in %.0f%% of the playing, clarity %.2f); "
                    "editing on phrases of about %.0f s instead of bars",
                    where, 100 * found_grid.pulse_fraction, found_grid.pulse_clarity, config.phrase_s)
        beats_s = downbeats_s = np.zeros(0)
        bounds_s = _phrase_bounds(frames.rms_db, duration_s, fps, config)
        unit_kind = "phrase"
        # Half-second steps stand in for beats in the self-similarity analysis.
        grid_s = np.arange(0.0, duration_s, 0.5)

    found = Analysis(duration_s=duration_s, tempo_bpm=found_grid.tempo_bpm,
                     pulse_clarity=found_grid.pulse_clarity,
                     beats_s=beats_s, downbeats_s=downbeats_s, bounds_s=bounds_s,
                     unit_kind=unit_kind, section_starts=np.zeros(0, np.int64),
                     end_db=float(np.mean(frames.rms_db[-max(1, int(0.5 * fps)):])) - frames.loud_db)
    _score_units(found, grid_s, frames, found_grid, fps, config)
    return found


def _phrase_bounds(rms_db: np.ndarray, duration_s: float, fps: float,
                   config: BaselineConfig) -> np.ndarray:
    """Boundaries in the pauses between phrases, about phrase_s apart.

    From each boundary, the next is the quietest moment between 0.5 and 1.75 phrases
    later (a pause), with 3 dB per phrase length of preference for phrase_s.

    Args:
        rms_db : np.ndarray [shape=(t,)], frame levels at fps frames per second
    """
    smooth = scipy.ndimage.uniform_filter1d(rms_db, max(1, int(0.2 * fps)))
    phrase = config.phrase_s * fps
    bounds = [0]
    end = len(smooth) - 1
    while bounds[-1] + 1.75 * phrase < end:
        lo = bounds[-1] + int(0.5 * phrase)
        hi = min(end, bounds[-1] + int(1.75 * phrase))
        offsets = np.arange(lo, hi + 1)
        cost = smooth[lo:hi + 1] + 3.0 * np.abs(offsets - bounds[-1] - phrase) / phrase
        bounds.append(int(offsets[np.argmin(cost)]))
    times = np.array(bounds, float) / fps
    return np.r_[times, duration_s] if duration_s - times[-1] > 0.5 * config.phrase_s else np.r_[times[:-1], duration_s]


def _merge_short(bounds_s: np.ndarray, min_s: float) -> np.ndarray:
    """Drop boundaries that leave a unit shorter than min_s (keeps the first and last)."""
    keep = [bounds_s[0]]
    for b in bounds_s[1:-1]:
        if b - keep[-1] >= min_s:
            keep.append(b)
    if bounds_s[-1] - keep[-1] < min_s and len(keep) > 1:
        keep.pop()
    keep.append(bounds_s[-1])
    return np.array(keep)


def _checkerboard_novelty(features: np.ndarray, half: int) -> np.ndarray:
    """Foote novelty: a Gaussian-tapered checkerboard kernel slid along the diagonal of
    the cosine self-similarity matrix, computed band-wise (memory O(t * half^2)).

    Args:
        features : np.ndarray [shape=(t, d)], rows L2-normalised

    Returns:
        novelty : np.ndarray [shape=(t,)], >= 0; novelty[i] is high where the music
        before step i differs from the music from step i on.
    """
    t = len(features)
    half = max(1, min(half, t // 2))
    padded = np.concatenate([np.repeat(features[:1], half, 0), features,
                             np.repeat(features[-1:], half, 0)])
    idx = np.arange(-half, half) + 0.5
    taper = np.exp(-0.5 * (idx / (0.5 * half)) ** 2)
    sign = np.sign(idx)
    kernel = np.outer(sign, sign) * np.outer(taper, taper)
    kernel /= np.abs(kernel).sum()
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half, axis=0)[:t + 1]
    windows = np.moveaxis(windows, -1, 1)  # (t + 1, 2 half, d)
    novelty = np.empty(t + 1)
    for i0 in range(0, t + 1, 1024):
        w = windows[i0:i0 + 1024]
        sim = np.einsum("nad,nbd->nab", w, w)
        novelty[i0:i0 + 1024] = np.einsum("nab,ab->n", sim, kernel)
    return np.maximum(novelty[:t], 0.0)


def _score_units(found: Analysis, grid_s: np.ndarray, frames: grid.Frames, found_grid: grid.Grid,
                 fps: float, config: BaselineConfig) -> None:
    """Fill found.scores, found.novelty, found.seam_cost and found.section_starts.

    Args:
        grid_s: the steps of the self-similarity analysis (beats, or half seconds).
        frames: the tracker's frames (fps frames per second).
        found_grid: the beat grid (its per-window pulse clarity).
    """
    mel_db, chroma, rms_db, onset_env = frames.mel_db, frames.chroma, frames.rms_db, frames.onset
    loud_db = frames.loud_db
    centres_s, clarity = found_grid.window_s, found_grid.window_clarity
    n_frames = mel_db.shape[1]
    bounds_f = np.minimum(np.rint(found.bounds_s * fps).astype(np.int64), n_frames)
    n_units = found.n_units

    # Step-synchronous features (beats, or half-second steps): standardised mel + chroma.
    grid_f = np.unique(np.clip(np.rint(np.asarray(grid_s) * fps).astype(np.int64), 0, n_frames - 1))
    mel_z = (mel_db - mel_db.mean(axis=1, keepdims=True)) / (mel_db.std(axis=1, keepdims=True) + 1e-6)
    step_mel = frame_means(mel_z, grid_f)
    step_chroma = frame_means(chroma, grid_f)
    step_chroma = step_chroma / np.maximum(np.linalg.norm(step_chroma, axis=0, keepdims=True), 1e-9)
    step_mel = step_mel / np.sqrt(step_mel.shape[0])
    feats = np.concatenate([step_mel, step_chroma], axis=0).T  # (steps, d)
    feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-9)
    nov_steps = _checkerboard_novelty(feats, config.novelty_beats)
    # Section changes: novelty peaks standing out from their surroundings. Novelty is half
    # the drop in cosine similarity across the kernel's centre, so 0.04 is a real change.
    nov_ref = max(float(np.percentile(nov_steps, 98)), 0.1)
    peak_steps = scipy.signal.find_peaks(nov_steps, prominence=max(0.04, 0.2 * nov_ref))[0]
    # Novelty at each unit boundary: the strongest within one step of it.
    step_s = grid_f / fps
    step_len = float(np.median(np.diff(step_s))) if len(step_s) > 1 else 0.5
    novelty = np.zeros(n_units + 1)
    for b, t in enumerate(found.bounds_s):
        near = np.abs(step_s - t) <= 1.01 * step_len
        novelty[b] = min(1.0, nov_steps[near].max() / nov_ref) if near.any() else 0.0
    novelty[0] = novelty[-1] = 1.0
    is_peak = np.zeros(n_units + 1, bool)
    if len(peak_steps):
        nearest = np.argmin(np.abs(found.bounds_s[None, :] - step_s[peak_steps][:, None]), axis=1)
        close = np.abs(found.bounds_s[nearest] - step_s[peak_steps]) <= 0.5 * np.median(np.diff(found.bounds_s))
        is_peak[nearest[close]] = True
    is_peak[0] = is_peak[-1] = False

    # Per-unit measures.
    power = 10 ** (rms_db / 10)
    energy_db = np.empty(n_units)
    silent_frac = np.empty(n_units)
    density = np.empty(n_units)
    pulse = np.empty(n_units)
    peaks = librosa.util.peak_pick(onset_env, pre_max=3, post_max=3, pre_avg=10, post_avg=10,
                                   delta=0.1 * float(onset_env.max() or 1.0), wait=3)
    onset_count = np.zeros(n_frames + 1)
    onset_count[peaks] = 1
    onset_cum = np.cumsum(onset_count)
    unit_feat = []
    for u in range(n_units):
        a, b = bounds_f[u], max(bounds_f[u + 1], bounds_f[u] + 1)
        energy_db[u] = 10 * np.log10(max(power[a:b].mean(), 1e-10)) - loud_db
        silent_frac[u] = np.mean(rms_db[a:b] < loud_db - config.grid.silence_db)
        seconds = (b - a) / fps
        density[u] = (onset_cum[b - 1] - (onset_cum[a - 1] if a else 0)) / seconds
        t0, t1 = found.bounds_s[u], found.bounds_s[u + 1]
        inside = (centres_s >= t0) & (centres_s < t1)
        pulse[u] = clarity[inside].mean() if inside.any() else np.interp(0.5 * (t0 + t1), centres_s, clarity)
        # The unit as a sequence of 4 quarter-unit feature vectors (captures its pattern).
        quarters = np.linspace(a, b, 5).astype(np.int64)
        parts = [np.r_[mel_z[:, q0:max(q1, q0 + 1)].mean(axis=1) / np.sqrt(mel_z.shape[0]),
                       _unit_norm(chroma[:, q0:max(q1, q0 + 1)].mean(axis=1))]
                 for q0, q1 in zip(quarters[:-1], quarters[1:])]
        unit_feat.append(np.concatenate(parts))
    unit_feat = np.array(unit_feat)
    unit_feat /= np.maximum(np.linalg.norm(unit_feat, axis=1, keepdims=True), 1e-9)
    silent = silent_frac > 0.5

    # Repetition: how closely the unit recurs elsewhere (mean of its two best matches).
    sim = unit_feat @ unit_feat.T
    np.fill_diagonal(sim, -1.0)
    sim[:, silent] = -1.0
    k = min(2, max(1, n_units - 1))
    repetition = np.clip(np.sort(sim, axis=1)[:, -k:].mean(axis=1), 0.0, 1.0)
    if found.unit_kind == "bar":
        noodle = (pulse < config.grid.min_pulse_clarity) & (repetition < config.noodle_repetition) & ~silent
    else:
        noodle = np.zeros(n_units, bool)

    sounding = ~silent
    quality = (0.5 * np.clip(energy_db / 6.0, -3.0, 0.0)
               + 1.0 * _scaled(repetition, sounding)
               + 0.5 * _scaled(pulse, sounding)
               + 0.25 * _scaled(np.log1p(density), sounding))
    # Long stretches of playing far under the loud level (noodling between takes; a quiet
    # bar inside a song is a break, not that), and short stretches of playing between
    # silences (false starts, tries) when longer ones exist.
    quiet = np.zeros(n_units, bool)
    for a, b in _stretches(~silent & (energy_db < -config.quiet_db)):
        quiet[a:b] = found.bounds_s[b] - found.bounds_s[a] >= 2 * config.min_segment_s
    false_start = np.zeros(n_units, bool)
    islands = _stretches(sounding)
    lengths = [found.bounds_s[b] - found.bounds_s[a] for a, b in islands]
    if lengths and max(lengths) >= config.false_start_s:
        for (a, b), length in zip(islands, lengths):
            false_start[a:b] = length < config.false_start_s
    quality = quality - 3.0 * (noodle | quiet | false_start) - 6.0 * silent

    # Sections start at novelty peaks and where sound starts after silence.
    edges = np.zeros(n_units + 1, bool)
    edges[1:-1] = silent[:-1] != silent[1:]
    edges[1:-1] |= noodle[:-1] != noodle[1:]
    starts = np.flatnonzero((is_peak | edges)[:-1] | (np.arange(n_units + 1) == 0)[:-1])
    starts = starts[~silent[starts]]
    # Seam cost: cutting mid-section costs 1, at a clear change or beside silence 0.
    beside_silence = np.zeros(n_units + 1, bool)
    beside_silence[1:-1] = silent[:-1] | silent[1:]
    seam_cost = np.where(beside_silence | edges | is_peak, 0.0, 1.0 - novelty)
    seam_cost[0] = seam_cost[-1] = 0.0

    found.section_starts = starts.astype(np.int64)
    found.novelty = novelty
    found.seam_cost = seam_cost
    found.scores = {"energy_db": energy_db, "density": density, "repetition": repetition,
                    "pulse": pulse, "silent": silent, "noodle": noodle, "quiet": quiet,
                    "false_start": false_start, "quality": quality}


def _stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True in a bool array, as (start, end) with end exclusive."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _unit_norm(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _scaled(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """x mapped so that the masked units' 10th..90th percentiles span -1..1."""
    ref = x[mask] if mask.any() else x
    lo, hi = np.percentile(ref, [10, 90])
    return np.clip(2 * (x - lo) / max(hi - lo, 1e-6) - 1, -2.0, 2.0)


# ---------------------------------------------------------------------------------------
# Search


def music_units(found: Analysis, config: BaselineConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Units worth keeping for their own sake, bool (n_units,): neither silence, nor
    noodling, nor quiet, nor a false start, nor of quality below config.min_quality.
    Their total length is how much music the recording holds."""
    s = found.scores
    return (~s["silent"] & ~s["noodle"] & ~s["quiet"] & ~s["false_start"]
            & (s["quality"] >= config.min_quality))


def natural_ends(found: Analysis, config: BaselineConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Boundaries where an edit can stop without a fade, bool (n_units + 1,): where the
    playing stops (silence follows), and the end of the recording when it ends in
    silence. A section boundary is not one: the music goes on there."""
    silent = found.scores["silent"]
    ends = np.zeros(found.n_units + 1, bool)
    ends[1:-1] = silent[1:] & ~silent[:-1]
    ends[-1] = bool(silent[-1]) or found.end_db < -config.grid.silence_db
    return ends


def plan(found: Analysis, target_s: float, config: BaselineConfig = DEFAULT_CONFIG) -> list[tuple[int, int]]:
    """The best runs of whole units whose total length is closest to target_s.

    A dynamic programme over units (bars or phrases) and kept duration (in ticks of an
    eighth of a typical unit): it maximises the kept units' quality minus the cost of
    each cut (cut_penalty plus the seam costs where a run ends and where the next starts),
    with the first run starting at a section start (else intro_penalty) and the last one
    ending where the playing stops (else ending_penalty, half of it at a section
    boundary: the edit fades out there). Runs keep the raw's order and are at
    least min_segment_s long (a shorter raw or target relaxes that).

    Returns:
        runs: [(first_unit, end_unit)], end exclusive, in raw order.
    """
    bounds = found.bounds_s
    n = found.n_units
    dur = np.diff(bounds)
    tick_s = max(float(np.median(dur)) / 8, found.duration_s / config.max_ticks)
    cum_ticks = np.rint(bounds / tick_s).astype(np.int64)
    ticks = np.maximum(np.diff(cum_ticks), 1)
    target = int(round(target_s / tick_s))
    slack = max(4, int(round(0.02 * target)))
    cap = target + slack
    bar_s = float(np.median(dur))
    # Per-unit gain in "bars of good music"; units are weighed by length.
    gain = found.scores["quality"] * dur / bar_s
    cut = config.cut_penalty
    c_exit = config.seam_weight * found.seam_cost
    c_entry = config.seam_weight * found.seam_cost
    intro = np.full(n + 1, config.intro_penalty)
    intro[found.section_starts] = 0.0
    ending = np.full(n + 1, config.ending_penalty)
    ending[found.section_starts] = 0.5 * config.ending_penalty
    ending[natural_ends(found, config)] = 0.0
    # Runs of at least min_segment_s, relaxed so that a short target fits in about 3 runs.
    min_units = int(np.ceil(config.min_segment_s / bar_s - 1e-6))
    min_units = max(1, min(min_units, int(target_s / bar_s / 3)))

    rows = max(2, min_units)  # row r: in a run that has played r + 1 units (last: or more)
    can_end = np.arange(rows) >= min_units - 1
    neg = -np.inf
    run = np.full((rows, cap + 1), neg)
    idle = np.full(cap + 1, neg)  # at least one run finished, not in a run now
    # Backpointers. idle_src[u, k]: row of the run that ended at boundary u, -1: idle
    # already. start_src[u, k]: 1 a run starts at u after an earlier one, 2 the edit starts.
    # long_src[u, k]: the last row came from itself (not from the row before).
    idle_src = np.full((n + 1, cap + 1), -1, np.int8)
    start_src = np.zeros((n, cap + 1), np.int8)
    long_src = np.zeros((n, cap + 1), bool)
    best = (neg, -1, -1, -1)  # score, boundary, row, k
    lo = max(0, target - slack)
    off_target = 0.05 * np.abs(np.arange(lo, cap + 1) - target)
    for u in range(n + 1):
        for r in np.flatnonzero(can_end):
            ended = run[r] - cut - c_exit[u]
            take = ended > idle
            idle = np.where(take, ended, idle)
            idle_src[u, take] = r
            final = run[r, lo:] - ending[u] - off_target
            if final.max() > best[0]:
                best = (float(final.max()), u, int(r), lo + int(np.argmax(final)))
        if u == n:
            break
        t = int(ticks[u])
        if t > cap:
            run = np.full_like(run, neg)
            continue
        start = idle - c_entry[u]
        src = np.where(np.isfinite(start), 1, 0).astype(np.int8)
        if -intro[u] > start[0]:
            start[0], src[0] = -intro[u], 2
        start_src[u] = src
        new = np.full_like(run, neg)
        new[0, t:] = start[:cap + 1 - t]
        new[1:rows - 1, t:] = run[0:rows - 2, :cap + 1 - t]
        stay = run[rows - 1, :cap + 1 - t] >= run[rows - 2, :cap + 1 - t]
        new[rows - 1, t:] = np.where(stay, run[rows - 1, :cap + 1 - t], run[rows - 2, :cap + 1 - t])
        long_src[u, t:] = stay
        new[:, t:] += gain[u]
        run = new

    if best[1] < 0:
        raise UserError("the target duration is shorter than one bar of the recording; ask for more")
    return _backtrack(best[1], best[2], best[3], rows, ticks, idle_src, start_src, long_src)


def _backtrack(u, row, k, rows, ticks, idle_src, start_src, long_src) -> list[tuple[int, int]]:
    """Follow plan()'s backpointers from its best final state to the runs it kept."""
    runs = []
    run_end = u
    in_run = True
    while True:
        if in_run:
            v = u - 1  # the unit this row consumed
            k_prev = k - int(ticks[v])
            if row == 0:
                runs.append((v, run_end))
                if start_src[v, k_prev] == 2:
                    return runs[::-1]
                in_run = False
            elif row < rows - 1 or not long_src[v, k]:
                row -= 1
            u, k = v, k_prev
        else:
            r = int(idle_src[u, k])
            if r >= 0:
                run_end, row, in_run = u, r, True
            else:
                u -= 1
                if u < 0:
                    raise RuntimeError("baseline search: backpointers lead nowhere")


def loop_runs(found: Analysis, runs: list[tuple[int, int]], extra_s: float,
              config: BaselineConfig = DEFAULT_CONFIG, *, where: str = "raw") -> list[tuple[int, int]]:
    """Make an edit longer by repeating one passage of it, as players loop a groove (when
    the user asks for loops: the passage plays as often as the target needs).

    The passage is the kept window of `loop_units` units (4 bars, or 2 phrases) with the
    best mean quality and the cheapest seams at both ends (a section start is best); it
    plays again right after itself, as many times as `extra_s` needs (to_edit trims the end).

    Returns:
        runs with the repeats inserted, in play order.
    """
    length = 4 if found.unit_kind == "bar" else 2
    gain = found.scores["quality"]
    starts = set(found.section_starts.tolist())
    best = None
    for i, (a, b) in enumerate(runs):
        span = min(length, b - a)
        for w in range(a, b - span + 1):
            score = (gain[w:w + span].mean() - found.seam_cost[w] - found.seam_cost[w + span]
                     + 0.5 * (w in starts))
            if best is None or score > best[0]:
                best = (score, i, w, w + span)
    _, i, w0, w1 = best
    loop_s = found.bounds_s[w1] - found.bounds_s[w0]
    repeats = int(np.ceil(extra_s / loop_s - 1e-9))
    log.info("%s: %.0f s of music for a %.0f s edit; playing %.1f-%.1f s %d more times",
             where, sum(found.bounds_s[b] - found.bounds_s[a] for a, b in runs),
             extra_s + sum(found.bounds_s[b] - found.bounds_s[a] for a, b in runs),
             found.bounds_s[w0], found.bounds_s[w1], repeats)
    a, b = runs[i]
    middle = [(a, w1)] + [(w0, w1)] * repeats + ([(w1, b)] if w1 < b else [])
    return runs[:i] + middle + runs[i + 1:]


def repeat_runs(found: Analysis, runs: list[tuple[int, int]], extra_s: float,
                config: BaselineConfig = DEFAULT_CONFIG, *, where: str = "raw") -> list[tuple[int, int]]:
    """Make an edit longer by playing kept passages a second time, each right after itself
    (as a band plays a chorus twice); no unit plays more than MAX_PLAYS times.

    A passage is a window of whole units inside one kept run, neither the edit's first
    unit (its opening) nor its last (its ending), from config.min_segment_s to
    config.max_repeat_s long and at most what is still missing plus half a unit. Each pick
    is the window with
    the best mean quality, minus the seam costs at both its ends, plus 0.5 for each end on
    a section boundary, plus the share of what is missing that it covers. Picks do not
    overlap; they stop when less than min_segment_s is missing or no window is left.

    Returns:
        runs with the repeats inserted, in play order: a run (a, b) with a repeat of
        (w0, w1) inside it becomes (a, w1), (w0, b).
    """
    bounds = found.bounds_s
    dur = np.diff(bounds)
    half_unit_s = 0.5 * float(np.median(dur))
    quality_sum = np.r_[0.0, np.cumsum(found.scores["quality"] * dur)]
    at_section = np.zeros(found.n_units + 1)
    at_section[found.section_starts] = 0.5
    picked = np.zeros(found.n_units, bool)
    missing = extra_s
    picks: list[tuple[int, int]] = []
    while missing >= config.min_segment_s:
        best = None
        used = np.r_[0, np.cumsum(picked)]  # picked units before each boundary
        for a, b in runs:
            w0, w1 = np.meshgrid(np.arange(a, b + 1), np.arange(a, b + 1), indexing="ij")
            length = bounds[w1] - bounds[w0]
            ok = ((w1 > w0) & (length >= config.min_segment_s - 1e-6)
                  & (length <= min(missing + half_unit_s, config.max_repeat_s + 1e-6))
                  & (used[w1] == used[w0]) & (w0 != runs[0][0]) & (w1 != runs[-1][1]))
            if not ok.any():
                continue
            score = ((quality_sum[w1] - quality_sum[w0]) / np.maximum(length, 1e-9)
                     - found.seam_cost[w0] - found.seam_cost[w1] + at_section[w0] + at_section[w1]
                     + np.minimum(length, missing) / missing)
            score = np.where(ok, score, -np.inf)
            i, j = np.unravel_index(np.argmax(score), score.shape)
            if best is None or score[i, j] > best[0]:
                best = (float(score[i, j]), int(w0[i, j]), int(w1[i, j]))
        if best is None:
            break
        _, w0, w1 = best
        picks.append((w0, w1))
        picked[w0:w1] = True
        missing -= bounds[w1] - bounds[w0]
    if picks:
        kept_s = sum(bounds[b] - bounds[a] for a, b in runs)
        log.info("%s: %.0f s kept for a %.0f s edit; playing %s twice",
                 where, kept_s, kept_s + extra_s,
                 ", ".join(f"{clock(bounds[a])}-{clock(bounds[b])}" for a, b in sorted(picks)))
    out = []
    for a, b in runs:
        start = a
        for w0, w1 in sorted(p for p in picks if a <= p[0] and p[1] <= b):
            out.append((start, w1))
            start = w0
        out.append((start, b))
    return out


def to_edit(found: Analysis, runs: list[tuple[int, int]], target_s: float,
            config: BaselineConfig = DEFAULT_CONFIG, *, raw_path: str | None = None,
            raw_duration_s: float | None = None) -> Edit:
    """Segments of the kept runs, brought to the unit boundary nearest target_s.

    Runs that carry straight on in the raw become one segment. Unless the edit already
    stops at a natural ending within config.duration_tolerance of the target, whole units
    are added (music units after the last segment, then before the first) or taken off the
    end while that brings the length nearer the target. The edit fades out over
    config.fade_out_s unless it stops at a natural ending; seams get config.crossfade_s.
    Every segment starts and ends on a unit boundary (a bar line).
    """
    bounds = found.bounds_s
    n = found.n_units
    music = music_units(found, config)
    ends = natural_ends(found, config)
    pieces: list[list[int]] = []
    for a, b in runs:
        if pieces and pieces[-1][1] == a:
            pieces[-1][1] = b
        else:
            pieces.append([a, b])
    short = target_s - sum(bounds[b] - bounds[a] for a, b in pieces)
    if not (ends[pieces[-1][1]] and abs(short) <= config.duration_tolerance * target_s):
        # A unit of length d brings the edit nearer the target when d < 2 |short|.
        while short > 0:
            last, first = pieces[-1][1], pieces[0][0]
            if last < n and music[last] and bounds[last + 1] - bounds[last] < 2 * short:
                pieces[-1][1] += 1
                short -= bounds[last + 1] - bounds[last]
            elif first > 0 and music[first - 1] and bounds[first] - bounds[first - 1] < 2 * short:
                pieces[0][0] -= 1
                short -= bounds[first] - bounds[first - 1]
            else:
                break
        while short < 0:
            a, b = pieces[-1]
            if bounds[b] - bounds[b - 1] >= -2 * short:
                break
            short += bounds[b] - bounds[b - 1]
            if b - 1 > a:
                pieces[-1][1] -= 1
            elif len(pieces) > 1:
                pieces.pop()
            else:
                short -= bounds[b] - bounds[b - 1]
                break
    segments = [Segment(raw_start_s=float(bounds[a]), duration_s=float(bounds[b] - bounds[a]),
                        crossfade_s=config.crossfade_s if i else 0.0)
                for i, (a, b) in enumerate(pieces)]
    if not ends[pieces[-1][1]]:
        segments[-1].fade_out_s = min(config.fade_out_s, segments[-1].duration_s / 2)
    return Edit(segments, raw_path=raw_path, raw_duration_s=raw_duration_s)
