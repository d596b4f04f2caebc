"""Training data of the supervised editor: each pair moved into raw time, and crops of it.

A RawTimeRecording (the supervised view of a pair; dataset.Recording is the shared one)
holds the raw mel and audio, and the edit's mel and audio placed in raw time through the
pointers (raw frame i gets the edit frame that plays it; see labels.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio import load_analysis
from ..features import DEFAULT_PARAMS, FeatureParams, mel_power, normalize_db
from ..dataset import read_pointer_files
from ..layout import Layout, Pair
from .labels import Label, RawTargets, labels_for
from .model import context_features


@dataclass
class RawTimeRecording:
    """One training pair in raw time.

    raw_mel, target_mel : np.ndarray [shape=(n_mels, n_raw)], float32 in [0, 1]; target_mel
        is the edit's mel at the frame that plays each raw frame (0 where cut)
    labels : np.ndarray [shape=(n_raw,)], int8 Label per raw frame
    raw_audio, target_audio : np.ndarray [shape=(n_raw * hop_length,)], float16, mono
        analysis audio of the raw and of the edit placed in raw time (0 where cut)
    ref_raw_db, ref_edit_db: level of each file's loudest mel bin (dB); a mel unit of
        gain g on the raw is top_db * g + ref_edit_db - ref_raw_db dB on its audio
    """

    name: str
    raw_mel: np.ndarray
    target_mel: np.ndarray
    labels: np.ndarray
    raw_audio: np.ndarray
    target_audio: np.ndarray
    ref_raw_db: float
    ref_edit_db: float

    @property
    def n_frames(self) -> int:
        return self.raw_mel.shape[1]

    @property
    def offset_db(self) -> float:
        return self.ref_edit_db - self.ref_raw_db

    @property
    def recon_mask(self) -> np.ndarray:
        """Frames whose target is a treatment of the raw frame: kept, not at a seam."""
        return (self.labels != Label.CUT) & (self.labels != Label.SEAM)


def analysis_mel(y: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> tuple[np.ndarray, float]:
    """The contract's mel of mono analysis audio, and its reference level.

    Returns:
        mel : np.ndarray [shape=(n_mels, t)], float32 in [0, 1]
        ref_db : float, 10 log10 of the largest mel power (what the normalisation removes)
    """
    power = mel_power(y, params)
    peak = float(power.max(initial=0.0))
    ref_db = 10.0 * np.log10(peak) if peak > 0 else -200.0
    return normalize_db(power, params), ref_db


def aligned_edit_audio(edit_audio: np.ndarray, target_frames: np.ndarray, n_samples: int,
                       hop_length: int, shifts: np.ndarray | None = None) -> np.ndarray:
    """The edit's audio placed in raw time: around the centre of each raw frame i, the hop of
    samples around the centre of its target edit frame; zeros where cut.

    Within a run of consecutive pointers the hops join seamlessly, so the result is the
    edit's audio shifted by the run's offset.

    Args:
        edit_audio : np.ndarray [shape=(n_edit_samples,)]
        target_frames : np.ndarray [shape=(n_raw,)], int64, edit frame per raw frame, -1 = cut
        n_samples: length of the output (the raw's analysis audio)
        shifts : np.ndarray [shape=(n_raw,)], int64, optional: raw sample minus edit sample
            of each kept frame at sample precision (`segment_shifts`); default: the frame
            offset (i - target) * hop_length, which is up to half a hop off.

    Returns:
        np.ndarray [shape=(n_samples,)], float32
    """
    out = np.zeros(n_samples, np.float32)
    kept = np.flatnonzero(target_frames >= 0)
    if len(kept) == 0:
        return out
    half = hop_length // 2
    k = np.arange(hop_length) - half
    shift = (kept - target_frames[kept]) * hop_length if shifts is None else shifts[kept]
    raw_idx = (kept[:, None] * hop_length + k).ravel()
    edit_idx = raw_idx - np.repeat(shift, hop_length)
    ok = (raw_idx >= 0) & (raw_idx < n_samples) & (edit_idx >= 0) & (edit_idx < len(edit_audio))
    out[raw_idx[ok]] = edit_audio[edit_idx[ok]]
    return out


def segment_shifts(info: dict, target_frames: np.ndarray, sr: int, hop_length: int) -> np.ndarray | None:
    """Sample-precise shifts (raw sample - edit sample) of each kept raw frame, from the
    segments in an alignment's info record (each with edit_start_s and raw_start_s).

    Returns None when the info has no usable segments; frames outside every segment keep
    the frame offset.

    Returns:
        np.ndarray [shape=(n_raw,)], int64
    """
    segs = [s for s in info.get("segments", [])
            if s.get("raw_start_s") is not None and s.get("edit_start_s") is not None]
    if not segs:
        return None
    n_raw = len(target_frames)
    shifts = (np.arange(n_raw) - target_frames) * hop_length
    edit_starts = np.array([float(s["edit_start_s"]) for s in segs])
    edit_ends = np.array([float(s["edit_start_s"]) + float(s["duration_s"]) for s in segs])
    order = np.argsort(edit_starts)
    kept = np.flatnonzero(target_frames >= 0)
    t = target_frames[kept] * hop_length / sr
    k = np.searchsorted(edit_starts[order], t, side="right") - 1
    inside = (k >= 0) & (t < edit_ends[order][np.maximum(k, 0)])
    seg_shift = np.array([int(round(float(segs[i]["raw_start_s"]) * sr))
                          - int(round(float(segs[i]["edit_start_s"]) * sr)) for i in order])
    shifts[kept[inside]] = seg_shift[k[inside]]
    return shifts


def load_recording(pair: Pair, layout: Layout, params: FeatureParams = DEFAULT_PARAMS) -> RawTimeRecording:
    """Read one pair, label it (cached in cache/labels/) and move its edit into raw time."""
    y_raw = load_analysis(pair.raw, sr=params.sr)
    y_edit = load_analysis(pair.edit, sr=params.sr)
    raw_mel, ref_raw = analysis_mel(y_raw, params)
    edit_mel, ref_edit = analysis_mel(y_edit, params)
    targets: RawTargets = labels_for(pair, layout, raw_mel, edit_mel, params)
    n_samples = raw_mel.shape[1] * params.hop_length
    raw_audio = np.zeros(n_samples, np.float16)
    raw_audio[:min(n_samples, len(y_raw))] = y_raw[:n_samples]
    _, _, info = read_pointer_files(layout.pointer_dir, pair.name)
    shifts = segment_shifts(info, targets.target_frames, params.sr, params.hop_length)
    target_audio = aligned_edit_audio(y_edit, targets.target_frames, n_samples, params.hop_length,
                                      shifts)
    return RawTimeRecording(pair.name, raw_mel, targets.target_mel(edit_mel), targets.labels.copy(),
                     raw_audio, target_audio.astype(np.float16), ref_raw, ref_edit)


def crop(rec: RawTimeRecording, frame0: int, n_frames: int, params: FeatureParams) -> dict[str, np.ndarray]:
    """Frames frame0 .. frame0 + n_frames - 1 of a recording, zero-padded past its end.

    Returns a dict of arrays (see `collate` for the keys and shapes).
    """
    hop = params.hop_length
    f1 = min(frame0 + n_frames, rec.n_frames)
    m = f1 - frame0
    n_mels = rec.raw_mel.shape[0]
    mel = np.zeros((n_mels, n_frames), np.float32)
    target = np.zeros((n_mels, n_frames), np.float32)
    labels = np.full(n_frames, Label.CUT, np.int64)
    valid = np.zeros(n_frames, np.float32)
    recon = np.zeros(n_frames, np.float32)
    mel[:, :m] = rec.raw_mel[:, frame0:f1]
    target[:, :m] = rec.target_mel[:, frame0:f1]
    labels[:m] = rec.labels[frame0:f1]
    valid[:m] = 1.0
    recon[:m] = rec.recon_mask[frame0:f1]
    n_samples = n_frames * hop
    raw_audio = np.zeros(n_samples, np.float32)
    target_audio = np.zeros(n_samples, np.float32)
    raw_audio[:m * hop] = rec.raw_audio[frame0 * hop:f1 * hop]
    target_audio[:m * hop] = rec.target_audio[frame0 * hop:f1 * hop]
    # Audio loss on recon frames only; the crop's edges are left out (their STFT frames
    # see zero padding instead of the neighbouring audio).
    sample_mask = np.repeat(recon, hop)
    edge = params.n_fft // 2
    sample_mask[:edge] = 0.0
    sample_mask[-edge:] = 0.0
    return {"mel": mel, "target": target, "labels": labels, "valid": valid, "recon_mask": recon,
            "context": context_features(frame0, n_frames, rec.n_frames, params.frames_per_s),
            "raw_audio": raw_audio, "target_audio": target_audio, "sample_mask": sample_mask,
            "offset_db": np.float32(rec.offset_db)}


def collate(items: list[dict[str, np.ndarray]], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Stack crops into a batch on `device`:

    mel, target (B, n_mels, T); labels (B, T) long; valid, recon_mask (B, T);
    context (B, T, N_CONTEXT); raw_audio, target_audio, sample_mask (B, T * hop_length);
    offset_db (B,).
    """
    return {k: torch.from_numpy(np.stack([it[k] for it in items])).to(device) for k in items[0]}


def random_crops(recordings: list[RawTimeRecording], n_crops: int, n_frames: int,
                 rng: np.random.Generator) -> list[tuple[int, int]]:
    """(recording index, first frame) of n_crops crops, recordings drawn by their length."""
    lengths = np.array([r.n_frames for r in recordings], np.float64)
    which = rng.choice(len(recordings), size=n_crops, p=lengths / lengths.sum())
    starts = [int(rng.integers(0, max(recordings[i].n_frames - n_frames, 0) + 1)) for i in which]
    return list(zip(which.tolist(), starts))


def tiled_crops(recordings: list[RawTimeRecording], n_frames: int) -> list[tuple[int, int]]:
    """(recording index, first frame) of crops tiling every recording end to end."""
    return [(i, f0) for i, r in enumerate(recordings) for f0 in range(0, r.n_frames, n_frames)]
