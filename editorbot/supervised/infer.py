"""Edit a raw recording with a supervised checkpoint: keep what the label head keeps, and
carry the predicted treatment over to the segments as gains and fades (no vocoder).

The model sees mels normalised to each file's loudest bin, so its gain says how the editor
treats one passage against another, not how loud the edit is. The level comes from the
checkpoint's levels (editorbot.levels): the segments' gains are shifted so that their
median is the editor's level over the raw as alignment measured it (mastering_gain_db,
what alignment calls an edit's typical level), then kept within the editor's range.

The model runs over windows of the training crop's length (half overlapping), first for
the labels, then, fed the labels it predicted, for the gain; train and inference match.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..audio import load_analysis, probe
from ..checkpoint import load_state
from ..config import from_dict
from ..edits import Edit, Segment
from ..errors import UserError, log
from ..features import FeatureParams, mel_power, normalize_db
from ..grid import snap_cuts, sound_edges
from ..levels import with_levels
from .config import InferConfig, SupervisedConfig
from .labels import N_LABELS, Label
from .model import SupervisedEditor, context_features


@dataclass
class Prediction:
    """What the model says about every raw frame.

    label_probs : np.ndarray [shape=(n_raw, N_LABELS)], float32
    gain : np.ndarray [shape=(n_gain_bands, n_raw)], float32, mel units, frame rate
    pred_mel : np.ndarray [shape=(n_mels, n_raw)], float32, raw mel + gain, in [0, 1]
    """

    label_probs: np.ndarray
    gain: np.ndarray
    pred_mel: np.ndarray

    @property
    def keep_prob(self) -> np.ndarray:
        return 1.0 - self.label_probs[:, Label.CUT]

    @property
    def labels(self) -> np.ndarray:
        return self.label_probs.argmax(1)


def load_model(checkpoint: dict) -> tuple[SupervisedEditor, SupervisedConfig, FeatureParams]:
    """The model of a 'supervised' checkpoint dict, in eval mode on the CPU."""
    if checkpoint.get("kind") != "supervised":
        raise UserError(f"checkpoint kind is {checkpoint.get('kind')!r}, not 'supervised'")
    cfg = from_dict(SupervisedConfig, checkpoint["config"], where="checkpoint config", saved=True)
    params = FeatureParams(**checkpoint["feature_params"])
    model = SupervisedEditor(cfg.model, params)
    load_state(model, checkpoint["model_state"], where="the supervised checkpoint")
    model.eval()
    return model, cfg, params


def _windows(n_frames: int, window: int) -> list[int]:
    """Starts of half-overlapping windows covering n_frames (the last one ends at the end)."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, window // 2))
    if starts[-1] != n_frames - window:
        starts.append(n_frames - window)
    return starts


@torch.no_grad()
def predict(model: SupervisedEditor, raw_mel: np.ndarray, params: FeatureParams, *,
            batch_size: int = 8) -> Prediction:
    """Labels and treatment of every frame of a raw mel.

    Args:
        raw_mel : np.ndarray [shape=(n_mels, n_raw)], the contract's mel
    """
    cfg = model.cfg
    n_raw = raw_mel.shape[1]
    window = cfg.crop_tokens * cfg.frames_per_token
    # Short recordings run as one window cut to a whole number of tokens.
    span = min(window, -(-n_raw // cfg.frames_per_token) * cfg.frames_per_token)
    starts = _windows(n_raw, span)
    weight = np.hanning(span + 2)[1:-1].astype(np.float32)

    def inputs(f0: int) -> tuple[np.ndarray, np.ndarray]:
        mel = np.zeros((raw_mel.shape[0], span), np.float32)
        m = min(span, n_raw - f0)
        mel[:, :m] = raw_mel[:, f0:f0 + m]
        return mel, context_features(f0, span, n_raw, params.frames_per_s)

    device = next(model.parameters()).device

    def run(fn, n_out: int) -> np.ndarray:
        acc = np.zeros((n_out, n_raw), np.float64)
        norm = np.zeros(n_raw, np.float64)
        for b in range(0, len(starts), batch_size):
            chunk = starts[b:b + batch_size]
            mels, ctx = zip(*(inputs(f0) for f0 in chunk))
            out = fn(torch.from_numpy(np.stack(mels)).to(device),
                     torch.from_numpy(np.stack(ctx)).to(device), chunk).cpu()
            for f0, o in zip(chunk, out.numpy()):
                m = min(span, n_raw - f0)
                acc[:, f0:f0 + m] += o[:, :m] * weight[:m]
                norm[f0:f0 + m] += weight[:m]
        return (acc / norm).astype(np.float32)

    probs = run(lambda mel, ctx, _: torch.softmax(model.label_logits(mel, ctx), -1).transpose(1, 2),
                N_LABELS)
    labels = probs.argmax(0)

    def gain_fn(mel, ctx, chunk):
        lab = np.full((len(chunk), span), Label.CUT, np.int64)
        for i, f0 in enumerate(chunk):
            m = min(span, n_raw - f0)
            lab[i, :m] = labels[f0:f0 + m]
        return model.gain_frames(model.gain_tokens(mel, torch.from_numpy(lab).to(device), ctx), span)

    gain = run(gain_fn, cfg.n_gain_bands)
    basis = model.mel_basis.cpu().numpy()
    pred_mel = np.clip(raw_mel + basis @ gain, 0.0, 1.0).astype(np.float32)
    return Prediction(probs.T.copy(), gain, pred_mel)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of every run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def clean_mask(mask: np.ndarray, min_segment: int, min_gap: int) -> np.ndarray:
    """Fill interior gaps shorter than min_gap frames, then drop runs shorter than
    min_segment frames."""
    out = mask.copy()
    runs = _runs(out)
    for (_, b), (a, _) in zip(runs[:-1], runs[1:]):
        if a - b < min_gap:
            out[b:a] = True
    for a, b in _runs(out):
        if b - a < min_segment:
            out[a:b] = False
    return out


def decide_kept(keep_prob: np.ndarray, cfg: InferConfig, frames_per_s: float, *,
                keep_fraction: float | None = None) -> np.ndarray:
    """Which raw frames to keep: the smoothed keep probability above a threshold, cleaned.

    The threshold is 0.5, or, given keep_fraction, the one whose cleaned mask keeps the
    fraction of frames closest to it (bisection).

    Args:
        keep_prob : np.ndarray [shape=(n_raw,)]

    Returns:
        np.ndarray [shape=(n_raw,)], bool
    """
    k = max(int(round(cfg.smooth_s * frames_per_s)), 1)
    p = np.convolve(keep_prob, np.ones(k) / k, mode="same") if k > 1 else keep_prob
    min_seg = int(round(cfg.min_segment_s * frames_per_s))
    min_gap = int(round(cfg.min_gap_s * frames_per_s))
    if keep_fraction is None:
        return clean_mask(p >= 0.5, min_seg, min_gap)
    lo, hi = 0.0, 1.0
    best = clean_mask(p >= 0.5, min_seg, min_gap)
    for _ in range(30):
        thr = (lo + hi) / 2
        mask = clean_mask(p >= thr, min_seg, min_gap)
        if abs(mask.mean() - keep_fraction) < abs(best.mean() - keep_fraction):
            best = mask
        if mask.mean() > keep_fraction:
            lo = thr
        else:
            hi = thr
    return best


def treatment_db(pred: Prediction, model: SupervisedEditor, raw_power: np.ndarray, kept: np.ndarray,
                 edit_ref_db: float, top_db: float) -> tuple[np.ndarray, float]:
    """The predicted gain on each mel band and frame in dB of audio.

    The mel-unit gain is relative to each file's loudest bin; the absolute offset is set
    so that the loudest kept bin of the treated raw sits at edit_ref_db, the level of the
    editor's edits in training.

    Args:
        raw_power : np.ndarray [shape=(n_mels, n_raw)], mel power of the raw
        kept : np.ndarray [shape=(n_raw,)], bool, the frames the edit keeps

    Returns:
        gain_db : np.ndarray [shape=(n_mels, n_raw)], dB
        offset_db : float, the absolute offset included in gain_db
    """
    gain_db = top_db * (model.mel_basis.cpu().numpy() @ pred.gain)
    offset_db = 0.0
    if kept.any():
        treated = 10 * np.log10(raw_power[:, kept] + 1e-20) + gain_db[:, kept]
        offset_db = edit_ref_db - float(treated.max())
    return gain_db + offset_db, offset_db


def mask_to_edit(kept: np.ndarray, pred: Prediction, gain_db: np.ndarray, raw_power: np.ndarray,
                 cfg: InferConfig, params: FeatureParams) -> Edit:
    """Segments of the kept runs, in raw order, with gain_db from the predicted treatment
    (the power ratio it gives the segment's raw) and fades where the label head says so."""
    fps = params.frames_per_s
    labels = pred.labels
    runs = _runs(kept)
    segs = []
    for k, (a, b) in enumerate(runs):
        fade_in = fade_out = 0
        if k == 0:
            hits = np.flatnonzero(labels[a:a + (b - a) // 2] == Label.FADE_IN)
            fade_in = int(hits[-1]) + 1 if len(hits) else 0
        if k == len(runs) - 1:
            mid = a + (b - a) // 2
            hits = np.flatnonzero(labels[mid:b] == Label.FADE_OUT)
            fade_out = b - (mid + int(hits[0])) if len(hits) else 0
        fade_in = fade_in if fade_in / fps >= cfg.min_fade_s else 0
        fade_out = fade_out if fade_out / fps >= cfg.min_fade_s else 0
        body = slice(a + fade_in, b - fade_out) if b - fade_out > a + fade_in else slice(a, b)
        p = raw_power[:, body]
        ratio = float((p * 10 ** (gain_db[:, body] / 10)).sum()) / max(float(p.sum()), 1e-20)
        segs.append(Segment(raw_start_s=a / fps, duration_s=(b - a) / fps,
                            gain_db=round(10 * np.log10(max(ratio, 1e-10)), 2),
                            fade_in_s=fade_in / fps, fade_out_s=fade_out / fps,
                            crossfade_s=cfg.crossfade_s if k else 0.0,
                            confidence=float(pred.keep_prob[a:b].mean())))
    return Edit(segs)


def propose_edit(raw_path: str | os.PathLike, checkpoint: dict, *,
                 target_duration_s: float | None = None, keep: float | None = None) -> Edit:
    """The edit a supervised checkpoint proposes for `raw_path`.

    Args:
        checkpoint: a loaded checkpoint dict with kind 'supervised'.
        target_duration_s: wanted edit length in seconds, or
        keep: wanted fraction of the raw (0..1); neither: the label head decides.

    Returns:
        Edit whose segments point into raw_path, its cuts on the edges of the sound where
        they are near (editorbot.grid.snap_cuts).
    """
    model, cfg, params = load_model(checkpoint)
    info = probe(raw_path)
    raw_mel, raw_power = _raw_features(raw_path, params)
    pred = predict(model, raw_mel, params)
    fraction = keep
    if target_duration_s is not None:
        fraction = min(max(target_duration_s / info.duration_s, 0.0), 1.0)
    kept = decide_kept(pred.keep_prob, cfg.infer, params.frames_per_s, keep_fraction=fraction)
    if not kept.any():
        log.warning("%s: the model keeps nothing; keeping the most likely %.0f s",
                    raw_path, cfg.infer.min_segment_s)
        kept = decide_kept(pred.keep_prob, cfg.infer, params.frames_per_s,
                           keep_fraction=min(1.0, cfg.infer.min_segment_s / info.duration_s))
    gain_db, _ = treatment_db(pred, model, raw_power, kept, checkpoint["edit_ref_db"], params.top_db)
    edit = mask_to_edit(kept, pred, gain_db, raw_power, cfg.infer, params)
    edit.raw_path = str(raw_path)
    edit.raw_duration_s = info.duration_s  # before snapping: a kept length ends within the raw
    # Its cuts go to where the playing starts or stops when that is near; not onto the bar
    # grid, which placed the models' cuts less well (docs/results.md, "Cuts on the bar").
    edit = snap_cuts(edit, None, keep_length=fraction is not None, edges=sound_edges(raw_mel, params))
    if "levels" in checkpoint:
        edit = with_levels(at_level(edit, checkpoint["levels"]["mastering_gain_db"]),
                           checkpoint["levels"])
    return edit


def at_level(edit: Edit, level_db: float) -> Edit:
    """`edit` with every segment's gain_db shifted by one amount so that their median (the
    edit's typical level over the raw, as alignment measures it) is level_db."""
    if not edit.segments:
        return edit
    shift = level_db - float(np.median([s.gain_db for s in edit.segments]))
    return replace(edit, segments=[replace(s, gain_db=round(s.gain_db + shift, 2))
                                   for s in edit.segments])


def _raw_features(raw_path: str | os.PathLike, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """The contract's mel of a raw file and its mel power, both (n_mels, n_raw)."""
    power = mel_power(load_analysis(raw_path, sr=params.sr), params)
    return normalize_db(power.copy(), params), power


def treated_audio(raw_path: str | os.PathLike, checkpoint: dict, *,
                  method: str = "gain") -> tuple[np.ndarray, int]:
    """The whole raw with the predicted treatment, at the analysis rate, for listening.

    Args:
        method: 'gain' applies the smooth time-frequency gain to the raw's STFT (the raw's
            own phase, no vocoder); 'griffin_lim' inverts the predicted mel with
            Griffin-Lim (an explicit, lower-quality option).

    Returns:
        y : np.ndarray [shape=(n,)], float32; sr : int
    """
    import librosa

    from .losses import apply_gain, stft_gain_basis

    if method not in ("gain", "griffin_lim"):
        raise UserError(f"treatment method {method!r}: use 'gain' or 'griffin_lim'")
    model, cfg, params = load_model(checkpoint)
    y = load_analysis(raw_path, sr=params.sr)
    raw_power = mel_power(y, params)
    raw_mel = normalize_db(raw_power.copy(), params)
    pred = predict(model, raw_mel, params)
    if method == "griffin_lim":
        power_db = params.top_db * (pred.pred_mel - 1.0) + checkpoint["edit_ref_db"]
        out = librosa.feature.inverse.mel_to_audio(
            librosa.db_to_power(power_db), sr=params.sr, n_fft=params.n_fft,
            hop_length=params.hop_length, fmin=params.fmin, fmax=params.fmax, n_iter=32)
        return out.astype(np.float32), params.sr
    kept = np.ones(raw_mel.shape[1], bool)
    _, offset = treatment_db(pred, model, raw_power, kept, checkpoint["edit_ref_db"], params.top_db)
    basis = stft_gain_basis(params, cfg.model.n_gain_bands)
    gain_db = params.top_db * (basis @ torch.from_numpy(pred.gain)) + offset
    out = apply_gain(torch.from_numpy(y)[None], gain_db[None], n_fft=params.n_fft,
                     hop_length=params.hop_length)[0].numpy()
    return out.astype(np.float32), params.sr

