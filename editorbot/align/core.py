"""Align a human edit to the raw recording it was cut from: pointers, ops, segments, info.

`align_files(raw_path, edit_path)` decodes both to the analysis grid (or takes their cached
mels), votes for offsets with landmark fingerprints, finds the jump-aware path, refines
every join to the sample and reports what the editor did.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import __version__
from ..audio import SILENCE_PEAK, load_analysis, probe
from ..edits import Edit, Op, Segment, ops_from_pointers, segments_to_pointers
from ..errors import AudioError, log
from ..features import DEFAULT_PARAMS, FeatureParams, mel as compute_mel
from . import copies, refine
from .fingerprint import Candidates, landmarks, vote
from .params import DEFAULT_ALIGN, AlignParams
from .path import best_path, match_features

CONFIDENT_RHO, UNSURE_RHO = 0.8, 0.3  # waveform correlation mapped to confidence 1 and 0
SMOOTH_FRAMES = 9
MIN_ALIGN_S = 1.0      # shortest raw or edit that can be aligned
MAX_ALTERNATIVES = 16  # other places listed per segment in the info


@dataclass
class Alignment:
    """What alignment found.

    pointers : np.ndarray [shape=(edit_frames,)], int64, raw frame per edit frame, -1 = not in raw
    ops : np.ndarray [shape=(edit_frames,)], int8, editorbot.edits.Op per edit frame
    edit: the segments (sample-exact raw starts, crossfades, gains, fades, confidence)
    confidence : np.ndarray [shape=(edit_frames,)], float32 in [0, 1]: how sure each
        frame's pointer is (0 where not in raw)
    info: the summary written to {name}_info.json
    """

    pointers: np.ndarray
    ops: np.ndarray
    edit: Edit
    confidence: np.ndarray
    info: dict = field(default_factory=dict)


@dataclass
class Evidence:
    """What alignment reads from the two mels; the mels can be let go once it is made.

    candidates: the fingerprint's candidate offsets per block of edit frames
    raw_features, edit_features : np.ndarray [shape=(t, n_mels - 1)], the match features
        of path.match_features (the raw's in float16, to halve an hour's memory)
    timing_s: seconds spent on the fingerprint and the features
    """

    candidates: Candidates
    raw_features: np.ndarray
    edit_features: np.ndarray
    timing_s: dict


def align_files(raw_path: str | os.PathLike, edit_path: str | os.PathLike, *,
                params: FeatureParams = DEFAULT_PARAMS, raw_mel: np.ndarray | None = None,
                edit_mel: np.ndarray | None = None, cfg: AlignParams = DEFAULT_ALIGN) -> Alignment:
    """Align the edit at `edit_path` to the raw recording at `raw_path`.

    Args:
        params: the analysis grid.
        raw_mel, edit_mel: the files' mels on that grid when already computed (cached);
            otherwise they are computed here from the same decoded audio.
        cfg: alignment settings.

    Raises AudioError for unreadable, empty, too short or silent files.
    """
    clock = time.perf_counter()
    y_raw = check_alignable(load_analysis(raw_path, sr=params.sr), raw_path, "raw", params)
    if raw_mel is None:
        raw_mel = compute_mel(y_raw, params)
    y_edit = check_alignable(load_analysis(edit_path, sr=params.sr), edit_path, "edit", params)
    if edit_mel is None:
        edit_mel = compute_mel(y_edit, params)
    decode_s = time.perf_counter() - clock
    evidence = gather_evidence(raw_mel, edit_mel, params=params, cfg=cfg)
    del raw_mel, edit_mel  # the mels computed here are not needed any more
    result = align_audio(y_raw, y_edit, evidence, params=params, cfg=cfg,
                         raw_path=raw_path, edit_path=edit_path)
    result.info["timing_s"]["decode_and_mel"] = round(decode_s, 3)
    return result


def check_alignable(y: np.ndarray, path: str | os.PathLike | None, what: str,
                params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """y itself, after checking that it can be aligned: at least MIN_ALIGN_S long and not
    silent. Raises AudioError naming the file otherwise."""
    name = path or what
    if len(y) == 0:
        raise AudioError(f"{name}: holds no audio; re-export it")
    if len(y) < MIN_ALIGN_S * params.sr:
        raise AudioError(f"{name}: {len(y) / params.sr:.2f} s of audio is too short to align "
                         f"(at least {MIN_ALIGN_S:g} s); use a longer recording")
    if not max(float(y.max()), -float(y.min())) >= SILENCE_PEAK:  # no |y| copy of an hour
        raise AudioError(f"{name}: the audio is silent (peak below -90 dBFS), so there is "
                         "nothing to align; check that the right file was exported")
    return y


def gather_evidence(raw_mel: np.ndarray, edit_mel: np.ndarray, *,
                    params: FeatureParams = DEFAULT_PARAMS,
                    cfg: AlignParams = DEFAULT_ALIGN) -> Evidence:
    """Landmark votes and match features of a raw's and an edit's mels.

    Args:
        raw_mel, edit_mel : np.ndarray [shape=(n_mels, t)], the contract's mels
    """
    clock = time.perf_counter()
    raw_lm, edit_lm = landmarks(raw_mel, cfg, params), landmarks(edit_mel, cfg, params)
    cands = vote(raw_lm, edit_lm, edit_mel.shape[1], cfg)
    del raw_lm, edit_lm
    fingerprint_s = time.perf_counter() - clock
    clock = time.perf_counter()
    raw_f = match_features(raw_mel, cfg.feature_lag, np.float16)
    edit_f = match_features(edit_mel, cfg.feature_lag)
    return Evidence(cands, raw_f, edit_f, {"fingerprint": fingerprint_s,
                                           "features": time.perf_counter() - clock})


def align_audio(y_raw: np.ndarray, y_edit: np.ndarray, evidence: Evidence, *,
                params: FeatureParams = DEFAULT_PARAMS, cfg: AlignParams = DEFAULT_ALIGN,
                raw_path: str | os.PathLike | None = None,
                edit_path: str | os.PathLike | None = None) -> Alignment:
    """Align analysis audio in memory, given the evidence of its mels (see align_files).

    Args:
        y_raw, y_edit : np.ndarray [shape=(n,)], mono float32 at params.sr, that
            check_alignable accepted (align_files and prepare check them once, on loading)
        evidence: gather_evidence of their mels
    """
    sr = params.sr
    for y, n, what, path in ((y_raw, len(evidence.raw_features), "raw", raw_path),
                             (y_edit, len(evidence.edit_features), "edit", edit_path)):
        if n != params.n_frames(len(y)):
            raise AudioError(f"{path or what}: its cached mel has {n} frames but the "
                             f"audio gives {params.n_frames(len(y))}; delete the cache entry")
    timing = dict(evidence.timing_s)
    cands = evidence.candidates
    clock = time.perf_counter()
    path = best_path(evidence.edit_features, evidence.raw_features, cands, cfg)
    timing["path"] = time.perf_counter() - clock
    clock = time.perf_counter()
    n_edit_frames, n_raw_frames = len(evidence.edit_features), len(evidence.raw_features)
    runs = _refine_runs(y_raw, y_edit, path, cands, params, cfg)
    edit = _edit_from_runs(runs, sr, raw_path, len(y_raw) / sr)
    pointers = segments_to_pointers(edit, params, n_edit_frames)
    # A raw start rounded past the raw's last frame is the last frame, not "not in raw".
    pointers[pointers >= n_raw_frames] = n_raw_frames - 1
    fade_in, fade_out, mastering_db = _gains_and_fades(edit, pointers, y_raw, y_edit, params, cfg)
    ops = ops_from_pointers(pointers, fade_in_frames=fade_in, fade_out_frames=fade_out)
    confidence, ambiguous = _confidence(runs, path, y_raw, y_edit, pointers, params, cfg)
    for seg, a, b in zip(edit.segments, *_segment_frames(edit, params, n_edit_frames)):
        seg.confidence = round(float(confidence[a:b].mean()), 3) if b > a else 0.0
    timing["refine"] = time.perf_counter() - clock
    info = _info(edit, runs, pointers, ops, confidence, ambiguous, params, cfg,
                 n_raw_frames, n_edit_frames, raw_path, edit_path)
    info["mastering_gain_db"] = mastering_db
    info["timing_s"] = {k: round(v, 3) for k, v in timing.items()}
    for line in info["warnings"]:
        log.warning(line)
    return Alignment(pointers, ops, edit, confidence.astype(np.float32), info)


def _refine_runs(y_raw, y_edit, path, cands, params, cfg) -> list[refine.Run]:
    hop, sr = params.hop_length, params.sr
    runs = refine.runs_from_path(path.offsets, path.in_raw, hop, len(y_edit))
    runs = refine.absorb_short_gaps(runs, int(cfg.min_not_in_raw_s * sr))
    search, window = cfg.lag_search_frames * hop, int(cfg.lag_window_s * sr)
    for run in runs:
        if run.lag is None:
            continue
        margin = min(int(0.1 * sr), (run.end - run.start) // 4)
        run.lag, run.rho = refine.measure_lag(y_edit, y_raw, run.start + margin, run.end - margin,
                                              run.lag, search, window)
    runs = refine.merge_same_lag(runs, cfg.same_lag_ms * 1e-3 * sr)
    runs = copies.merge_equivalent(runs, y_edit, y_raw, cfg.same_audio_margin)
    found = cands.copies[np.argsort(cands.copies[:, 0], kind="stable")]
    for run in runs:
        run.alternatives = copies.find_copies(run, y_edit, y_raw, found, hop=hop,
                                              block_frames=cfg.block_frames, search=search,
                                              window=window, margin=cfg.same_audio_margin)
    runs = copies.choose_copies(runs, back_extra=cfg.back_cost / cfg.jump_cost)
    runs = refine.fill_not_in_raw(runs, y_edit, y_raw, hop, cfg.fill_min_rho)
    refine.place_seams(runs, y_edit, y_raw, int(cfg.join_search_s * sr), sr)
    return [r for r in runs if r.end > r.start]


def _edit_from_runs(runs, sr, raw_path, raw_duration_s) -> Edit:
    segs = []
    for run in runs:
        raw_start = None if run.lag is None else max(0.0, (run.start + run.lag) / sr)
        segs.append(Segment(raw_start, (run.end - run.start) / sr, crossfade_s=run.crossfade / sr))
    return Edit(segs, None if raw_path is None else str(raw_path), raw_duration_s)


def _segment_frames(edit: Edit, params: FeatureParams, n_frames: int):
    fps = params.frames_per_s
    starts = edit.edit_starts_s()
    a = np.minimum(np.ceil(starts * fps - 1e-6).astype(np.int64), n_frames)
    ends = starts + np.array([s.duration_s for s in edit.segments])
    b = np.minimum(np.ceil(ends * fps - 1e-6).astype(np.int64), n_frames)
    return a, b


def _gains_and_fades(edit, pointers, y_raw, y_edit, params, cfg) -> tuple[int, int, float]:
    """Set each segment's gain_db (relative to the edit's typical level, which mastering
    sets) and the fades at the edit's ends and next to "not in raw" stretches. Returns the
    edit's fade-in and fade-out lengths in frames and that typical level in dB."""
    hop = params.hop_length
    n = len(pointers)
    if not edit.segments:
        return 0, 0, 0.0
    e_energy = refine.frame_energy(y_edit, hop, n)
    r_energy = refine.frame_energy(y_raw, hop, params.n_frames(len(y_raw)))
    floor = 1e-6 * max(float(r_energy.max(initial=0.0)), 1e-20)
    gain_db = np.full(n, np.nan)
    inr = pointers >= 0
    ok = inr.copy()
    ok[inr] = r_energy[pointers[inr]] > floor
    gain_db[ok] = 10 * np.log10((e_energy[ok] + 1e-20) / r_energy[pointers[ok]])
    starts, ends = _segment_frames(edit, params, n)
    levels = []
    for seg, a, b in zip(edit.segments, starts, ends):
        g = gain_db[a:b]
        levels.append(float(np.nanmedian(g)) if np.isfinite(g).any() else np.nan)
    mastering = float(np.nanmedian(levels)) if np.isfinite(levels).any() else 0.0
    fps = params.frames_per_s
    fade_in = fade_out = 0
    segs = edit.segments
    for i, (seg, a, b, level) in enumerate(zip(segs, starts, ends, levels)):
        if seg.raw_start_s is None or not np.isfinite(level):
            continue
        seg.gain_db = round(level - mastering, 2)
        half = (b - a) // 2
        if i == 0 or segs[i - 1].raw_start_s is None:
            k = refine.fade_frames(gain_db[a:a + half], level, cfg.fade_db)
            seg.fade_in_s = round(k / fps, 3) if k > 1 else 0.0
            if i == 0:
                fade_in = k if k > 1 else 0
        if i == len(segs) - 1 or segs[i + 1].raw_start_s is None:
            k = refine.fade_frames(gain_db[b - half:b][::-1], level, cfg.fade_db)
            seg.fade_out_s = round(k / fps, 3) if k > 1 else 0.0
            if i == len(segs) - 1:
                fade_out = k if k > 1 else 0
    return fade_in, fade_out, round(mastering, 2)


def _confidence(runs, path, y_raw, y_edit, pointers, params, cfg):
    """Per-frame confidence from the waveform match along the final path, halved where
    another raw offset matches as well (identical material)."""
    hop = params.hop_length
    n = len(pointers)
    fps = params.frames_per_s
    rho = refine.frame_correlation(y_edit, y_raw, hop, n, runs)
    rho[pointers < 0] = np.nan
    valid = np.isfinite(rho)
    num = ndimage.uniform_filter1d(np.where(valid, rho, 0.0), SMOOTH_FRAMES)
    den = ndimage.uniform_filter1d(valid.astype(np.float64), SMOOTH_FRAMES)
    wave = np.where(den > 0, num / np.maximum(den, 1e-9), np.nan)
    # Silent stretches take the confidence of the audible frames around them.
    idx = np.where(np.isfinite(wave), np.arange(n), 0)
    np.maximum.accumulate(idx, out=idx)
    wave = np.where(np.isfinite(wave), wave, wave[idx])
    wave = np.nan_to_num(wave, nan=0.0)
    conf = np.clip((wave - UNSURE_RHO) / (CONFIDENT_RHO - UNSURE_RHO), 0.0, 1.0)
    amb = (np.isfinite(path.runner_up) & np.isfinite(path.match)
           & (path.runner_up >= path.match - cfg.ambiguity_margin) & path.in_raw)
    amb_frac = ndimage.uniform_filter1d(amb.astype(np.float64), int(round(fps)))
    ambiguous = (amb_frac > 0.5) & (pointers >= 0)
    conf = np.where(ambiguous, 0.5 * conf, conf)
    conf[pointers < 0] = 0.0
    return conf, ambiguous


def _join_kinds(edit: Edit, fps: float) -> list[str]:
    """'cut' (forward jump), 'loop' (to raw audio already played) or 'reorder' (back to
    unplayed audio) for each join between two segments found in the raw."""
    played: list[tuple[float, float]] = []
    kinds = []
    prev = None
    tol = 1.5 / fps
    for seg in edit.segments:
        if seg.raw_start_s is None:
            continue
        if prev is not None:
            start = seg.raw_start_s
            if any(a - tol <= start < b - tol for a, b in played):
                kinds.append("loop")
            elif start < prev.raw_end_s - tol:
                kinds.append("reorder")
            else:
                kinds.append("cut")
        played.append((seg.raw_start_s, seg.raw_end_s))
        prev = seg
    return kinds


def _info(edit, runs, pointers, ops, confidence, ambiguous, params, cfg, n_raw_frames,
          n_edit_frames, raw_path, edit_path) -> dict:
    fps = params.frames_per_s
    aligned = float((pointers >= 0).mean()) if len(pointers) else 0.0
    kinds = _join_kinds(edit, fps)
    crossfades = [round(s.crossfade_s, 4) for i, s in enumerate(edit.segments)
                  if i > 0 and s.raw_start_s is not None and edit.segments[i - 1].raw_start_s is not None]
    inr = pointers >= 0
    summary = {
        "mean": round(float(confidence.mean()), 3) if len(confidence) else 0.0,
        "mean_aligned": round(float(confidence[inr].mean()), 3) if inr.any() else 0.0,
        "low_fraction": round(float((confidence[inr] < 0.5).mean()), 4) if inr.any() else 1.0,
        "ambiguous_fraction": round(float(ambiguous.mean()), 4) if len(ambiguous) else 0.0,
        "ambiguous_joins": int(sum(r.ambiguous_join for r in runs)),
        "min_segment": min((s.confidence for s in edit.segments if s.raw_start_s is not None),
                           default=0.0),
    }
    warnings = []
    name = str(edit_path) if edit_path is not None else "edit"
    if aligned < cfg.warn_aligned_fraction:
        warnings.append(f"{name}: only {100 * aligned:.1f}% of the edit was found in "
                        f"{raw_path or 'the raw'}; check that it was cut from this recording")
    # How well the audio matches, before ambiguity (identical copies) halved the confidence:
    # a loop-based edit is sure of its audio even where every bar has copies.
    match = np.where(ambiguous, 2 * confidence, confidence)[inr]
    if aligned >= cfg.warn_aligned_fraction and len(match) and float(match.mean()) < 0.5:
        warnings.append(f"{name}: the alignment is unsure (mean confidence "
                        f"{float(match.mean()):.2f}); check {name} against its raw")
    edit_json = edit.to_json()
    sr = params.sr
    for seg_json, run in zip(edit_json["segments"], runs):
        if run.lag is not None:
            seg_json["alternatives"] = [
                {"raw_start_s": round(max(0.0, (run.start + lag) / sr), 4), "score": round(rho, 3)}
                for lag, rho in run.alternatives[:MAX_ALTERNATIVES]]
    with_copies = sum(bool(s.get("alternatives")) for s in edit_json["segments"])
    return {
        "editorbot_version": __version__,
        "raw": _describe(raw_path),
        "edit": _describe(edit_path),
        "sample_rate": params.sr,
        "hop_length": params.hop_length,
        "feature_params": params.as_dict(),
        "align_params": asdict(cfg),
        "raw_frames": int(n_raw_frames),
        "edit_frames": int(n_edit_frames),
        "aligned_fraction": round(aligned, 4),
        "not_in_raw_frames": int((pointers < 0).sum()),
        "segments": edit_json["segments"],
        "n_segments": len(edit.segments),
        "segments_with_alternatives": with_copies,
        "cuts": kinds.count("cut"),
        "loops": kinds.count("loop"),
        "reorders": kinds.count("reorder"),
        "op_counts": {op.name: int((ops == op).sum()) for op in Op},
        "crossfades_s": crossfades,
        "median_crossfade_s": round(float(np.median(crossfades)), 4) if crossfades else 0.0,
        "confidence": summary,
        "warnings": warnings,
    }


def _describe(path) -> dict | None:
    if path is None:
        return None
    info = probe(path)
    return {"path": str(Path(path)), "sr": info.sr, "channels": info.channels,
            "duration_s": round(info.duration_s, 4), "format": info.format}
