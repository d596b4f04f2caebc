"""Per-RAW-frame edit labels and targets, read off the alignment's pointer sequence.

The target of raw frame i is the edit frame that plays it, so targets live in raw time (the
original system paired raw frame i with edit frame i, which is wrong once a cut happens).

Labels (one per raw frame; when several apply the first in this list wins):

    CUT           no edit frame plays this raw frame
    SEAM          the edit frame that plays it is within a crossfade plus half an STFT window
                  of a jump (cut, loop, reorder, start or end of foreign audio): its edit
                  audio mixes two raw sources, so it is no treatment of this frame
    FADE_IN       it is played inside the edit's fade-in (ops FADE_IN)
    FADE_OUT      it is played inside the edit's fade-out (ops FADE_OUT)
    LOOP          the edit plays it more than once (a loop or a repeat)
    GAIN_CHANGED  the edit's level relative to the raw, over the run of frames it belongs
                  to, differs from the recording's median by more than GAIN_CHANGE_DB (an
                  editor's gain move; strong compression acting on one section also shows)
    KEEP          played once, plainly: only the recording-wide treatment (mastering) applies

Frames played several times take their FIRST playing (in edit order) as their target.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np

from .. import __version__
from ..cache import cached, file_fingerprint
from ..edits import Op, ops_from_pointers
from ..errors import UserError
from ..features import DEFAULT_PARAMS, FeatureParams
from ..dataset import read_pointer_files
from ..layout import Layout, Pair

GAIN_CHANGE_DB = 3.0   # a run's level offset beyond this (vs the recording's median) is a gain move
FLOOR = 0.05           # mel values below this (about -76 dB re max) are too quiet to measure a level
LABELS_VERSION = 1     # bump when the labelling rules change; cached labels are then recomputed


class Label(IntEnum):
    """What the edit made of one raw frame (see the module docstring)."""

    CUT = 0
    KEEP = 1
    LOOP = 2
    FADE_IN = 3
    FADE_OUT = 4
    SEAM = 5
    GAIN_CHANGED = 6


N_LABELS = len(Label)
UNKNOWN = N_LABELS  # model input index for "label not given" (inference, the label pass)


@dataclass
class RawTargets:
    """Labels and targets of every raw frame.

    labels : np.ndarray [shape=(n_raw,)], int8, a Label per raw frame
    target_frames : np.ndarray [shape=(n_raw,)], int64, the edit frame whose audio is the
        target of each raw frame (its first playing), -1 where cut
    play_count : np.ndarray [shape=(n_raw,)], int32, how often the edit plays each raw frame
    """

    labels: np.ndarray
    target_frames: np.ndarray
    play_count: np.ndarray

    @property
    def kept(self) -> np.ndarray:
        return self.labels != Label.CUT

    def target_mel(self, edit_mel: np.ndarray) -> np.ndarray:
        """The edit mel in raw time: column i is edit_mel[:, target_frames[i]], 0 where cut.

        Args:
            edit_mel : np.ndarray [shape=(n_mels, n_edit)]

        Returns:
            np.ndarray [shape=(n_mels, n_raw)], float32
        """
        out = np.zeros((edit_mel.shape[0], len(self.labels)), np.float32)
        kept = self.target_frames >= 0
        out[:, kept] = edit_mel[:, self.target_frames[kept]]
        return out


def seam_frames_for(params: FeatureParams = DEFAULT_PARAMS, max_crossfade_s: float = 0.0) -> int:
    """How many edit frames on each side of a jump count as SEAM: half a crossfade plus half
    an STFT window, in frames (rounded up)."""
    samples = max_crossfade_s / 2 * params.sr + params.n_fft / 2
    return int(np.ceil(samples / params.hop_length))


def raw_targets(pointers: np.ndarray, n_raw: int, *, ops: np.ndarray | None = None,
                seam_frames: int = 4, raw_mel: np.ndarray | None = None,
                edit_mel: np.ndarray | None = None, top_db: float = 80.0,
                gain_change_db: float = GAIN_CHANGE_DB) -> RawTargets:
    """Labels and targets of each raw frame from the edit's pointer sequence.

    Args:
        pointers : np.ndarray [shape=(n_edit,)], int64, raw frame per edit frame, -1 = not in raw
        n_raw: frames of the raw mel.
        ops : np.ndarray [shape=(n_edit,)], int8 Op per edit frame (fades come from here);
            None: computed from the pointers, without fades.
        seam_frames: edit frames on each side of a jump labelled SEAM (seam_frames_for).
        raw_mel, edit_mel : np.ndarray [shape=(n_mels, n_raw) and (n_mels, n_edit)], the
            contract's mels; needed for GAIN_CHANGED (None: no frame gets it).
        top_db: the mels' dB range (a mel unit is top_db dB).

    Returns:
        RawTargets
    """
    p = np.asarray(pointers, np.int64)
    n_edit = len(p)
    if ops is None:
        ops = ops_from_pointers(p)
    if len(ops) != n_edit:
        raise ValueError(f"ops has {len(ops)} frames, pointers {n_edit}")
    if p.size and p.max() >= n_raw:
        raise ValueError(f"pointer {int(p.max())} is past the raw's {n_raw} frames")
    valid = p >= 0
    play_count = np.bincount(p[valid], minlength=n_raw).astype(np.int32)
    # The first playing of each raw frame is its target (np.unique gives first indices).
    target_frames = np.full(n_raw, -1, np.int64)
    edit_idx = np.flatnonzero(valid)
    raws, first = np.unique(p[valid], return_index=True)
    target_frames[raws] = edit_idx[first]

    seam = _seam_mask(p, seam_frames)
    labels = np.full(n_raw, Label.KEEP, np.int8)
    kept = target_frames >= 0
    j = target_frames[kept]
    lab = np.full(len(j), Label.KEEP, np.int8)
    if raw_mel is not None and edit_mel is not None:
        changed = _gain_changed(p, raw_mel, edit_mel, top_db, gain_change_db)
        lab[changed[j]] = Label.GAIN_CHANGED
    lab[play_count[kept] > 1] = Label.LOOP
    lab[ops[j] == Op.FADE_OUT] = Label.FADE_OUT
    lab[ops[j] == Op.FADE_IN] = Label.FADE_IN
    lab[seam[j]] = Label.SEAM
    labels[kept] = lab
    labels[~kept] = Label.CUT
    return RawTargets(labels, target_frames, play_count)


def _jumps(p: np.ndarray) -> np.ndarray:
    """Edit frames j where playing does not continue from j - 1 (bool (n_edit,)); frame 0
    and frame n_edit (the end) count when they play raw audio."""
    n = len(p)
    jump = np.zeros(n + 1, bool)
    if n == 0:
        return jump
    valid = p >= 0
    cont = valid[1:] & valid[:-1] & (p[1:] == p[:-1] + 1)
    jump[1:n] = ~cont & (valid[1:] | valid[:-1])
    jump[0] = valid[0]
    jump[n] = valid[-1]
    return jump


def _seam_mask(p: np.ndarray, seam_frames: int) -> np.ndarray:
    """Edit frames within seam_frames of a jump (bool (n_edit,)). Frame j sits between
    boundaries j and j + 1; it is a seam frame when a boundary lies within seam_frames."""
    n = len(p)
    jump = _jumps(p).astype(np.int32)
    # boundary b affects frames b - seam_frames .. b + seam_frames - 1
    kernel = np.ones(2 * seam_frames, np.int32)
    near = np.convolve(jump, kernel)  # near[k] counts boundaries in k - 2s + 1 .. k
    # frame j is near boundary b when b - s <= j <= b + s - 1, i.e. b in j - s + 1 .. j + s
    return near[np.arange(n) + seam_frames] > 0 if seam_frames else np.zeros(n, bool)


def _gain_changed(p: np.ndarray, raw_mel: np.ndarray, edit_mel: np.ndarray, top_db: float,
                  gain_change_db: float) -> np.ndarray:
    """Edit frames in a run whose level offset (edit minus raw, dB, median over the run)
    differs from the recording's median offset by more than gain_change_db (bool (n_edit,))."""
    n = len(p)
    out = np.zeros(n, bool)
    valid = np.flatnonzero(p >= 0)
    if len(valid) == 0:
        return out
    e = edit_mel[:, valid]
    r = raw_mel[:, p[valid]]
    loud = (e > FLOOR) & (r > FLOOR)
    diff = np.where(loud, e - r, np.nan) * top_db
    counts = loud.sum(axis=0)
    offset = np.full(len(valid), np.nan)
    has = counts > 0
    offset[has] = np.nansum(diff[:, has], axis=0) / counts[has]
    if not has.any():
        return out
    ref = float(np.nanmedian(offset))
    # Runs of consecutive pointers (a jump starts a new run).
    jump = _jumps(p)[:n]
    run_id = np.cumsum(jump)[valid]
    for rid in np.unique(run_id):
        sel = run_id == rid
        level = offset[sel]
        level = level[np.isfinite(level)]
        if len(level) and abs(float(np.median(level)) - ref) > gain_change_db:
            out[valid[sel]] = True
    return out


def max_crossfade_s(info: dict) -> float:
    """The longest crossfade among the aligned segments in an info record (0 if none)."""
    return max((float(s.get("crossfade_s") or 0.0) for s in info.get("segments", [])), default=0.0)


def labels_for(pair: Pair, layout: Layout, raw_mel: np.ndarray, edit_mel: np.ndarray,
               params: FeatureParams = DEFAULT_PARAMS) -> RawTargets:
    """RawTargets of one pair, cached in cache/labels/{name}_labels.npz.

    The cache entry is keyed by the pointer files, the audio files and the parameters.

    Args:
        raw_mel, edit_mel : np.ndarray [shape=(n_mels, n_raw) and (n_mels, n_edit)], the
            contract's mels of the pair's raw and edit.
    """
    pointers, ops, info = read_pointer_files(layout.pointer_dir, pair.name)
    n_raw = raw_mel.shape[1]
    pointer_path = layout.pointer_file(pair.name, "pointers.npy")
    if pointers.size and pointers.max() >= n_raw:
        raise UserError(f"{pointer_path}: points at raw frame {int(pointers.max())} but "
                        f"{pair.raw} has {n_raw} frames; run `editorbot prepare` again")
    if len(pointers) > edit_mel.shape[1] + 1:
        raise UserError(f"{pointer_path}: {len(pointers)} pointers but {pair.edit} has "
                        f"{edit_mel.shape[1]} frames; run `editorbot prepare` again")
    # Pointers may be a frame longer or shorter than the edit's mel; the common part counts.
    n = min(len(pointers), edit_mel.shape[1])
    pointers = pointers[:n]
    ops = None if ops is None else ops[:n]
    seam = seam_frames_for(params, max_crossfade_s(info))
    sources = [pointer_path, layout.pointer_file(pair.name, "ops.npy"),
               layout.pointer_file(pair.name, "info.json"), Path(pair.raw), Path(pair.edit)]
    meta = {"kind": "supervised_labels", "labels_version": LABELS_VERSION,
            "editorbot_version": __version__, "params": params.as_dict(),
            "seam_frames": seam, "gain_change_db": GAIN_CHANGE_DB,
            "sources": {p.name: file_fingerprint(p) for p in sources if p.is_file()}}

    def compute() -> dict[str, np.ndarray]:
        t = raw_targets(pointers, n_raw, ops=ops, seam_frames=seam, raw_mel=raw_mel,
                        edit_mel=edit_mel, top_db=params.top_db)
        return {"labels": t.labels, "target_frames": t.target_frames, "play_count": t.play_count}

    arrays = cached(layout.labels(pair.name), meta, compute)
    return RawTargets(arrays["labels"], arrays["target_frames"], arrays["play_count"])
