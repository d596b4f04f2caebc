"""Edit a raw recording with a trained pointer network: mel -> encoder -> pointers -> segments.

`propose_edit` is what editorbot.editors.propose calls for checkpoints of kind 'pointer'.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from tqdm import tqdm

from ..audio import probe
from ..config import from_dict
from ..edits import Edit, Op, pointers_to_segments, with_crossfades
from ..errors import UserError
from ..features import FeatureParams
from ..grid import snap_cuts, sound_edges
from ..levels import at_editor_level
from ..precache import mel_for
from ..stems import stem_mels_for
from .config import PointerConfig
from .decode import Decoded, decode_pointers, keep_ahead, keep_plan, merge_fragments, model_step_fns
from .model import KEEP_SOURCES, PointerNet


def load_model(checkpoint: dict, device: str | torch.device = "cpu") -> tuple[PointerNet, PointerConfig, FeatureParams]:
    """Rebuild the network of a pointer checkpoint, in eval mode."""
    if checkpoint.get("kind") != "pointer":
        raise UserError(f"checkpoint of kind {checkpoint.get('kind')!r} is not a pointer network")
    cfg = from_dict(PointerConfig, checkpoint["config"], where="checkpoint config", saved=True)
    params = FeatureParams(**checkpoint["feature_params"])
    model = PointerNet(cfg.model)
    model.load_weights(checkpoint["model_state"], where="the pointer checkpoint")
    model.keep_source = checkpoint.get("keep_source", KEEP_SOURCES[0])
    if model.keep_source not in KEEP_SOURCES:
        raise UserError(f"the pointer checkpoint's keep_source {model.keep_source!r} is none of "
                        f"{', '.join(KEEP_SOURCES)}; train or copy it again")
    model.to(device).eval()
    return model, cfg, params


def raw_features(raw_path: str | os.PathLike, params: FeatureParams, stems_backend: str | None = None,
                 *, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The network's input for a raw file: its mel, then its four stem mels when the model
    reads stems, on one frame grid (as PointerData stacks them in training).

    Args:
        stems_backend: the checkpoint's 'stems_backend' (None: a model without stems).
        cache_dir: where `editorbot stems` may have cached this raw's stem mels
            (stems_mel/{name}_stems.npz); other backends' are refused. Without them the
            stems are computed now with stems_backend (see editorbot.stems.stem_mels_for).

    Returns:
        mel : np.ndarray [shape=(C, T)], float32; C = n_mels, or 5 n_mels with stems
    """
    mel = mel_for(raw_path, params=params)
    if stems_backend is None:
        return mel
    stems = stem_mels_for(raw_path, stems_backend, params=params, cache_dir=cache_dir,
                          frames=mel.shape[1])
    return np.concatenate([mel, stems.reshape(-1, mel.shape[1])], axis=0)


def target_frames_for(n_raw: int, checkpoint: dict, params: FeatureParams, *,
                      target_duration_s: float | None, keep: float | None) -> tuple[int, bool]:
    """The edit length to aim at, in frames, and whether it is fixed by the user.

    Without a target or keep ratio, the median keep ratio of the training pairs is used
    and the stop head decides where the edit ends.
    """
    if target_duration_s is not None:
        if target_duration_s <= 0:
            raise UserError(f"--target-duration {target_duration_s}: must be positive")
        return max(int(round(target_duration_s * params.frames_per_s)), 1), True
    if keep is not None:
        return max(int(round(keep * n_raw)), 1), True
    return max(int(round(checkpoint.get("keep_ratio", 0.3) * n_raw)), 1), False


class DecodeStopped(Exception):
    """decode_mel passed its `until` before the edit was decoded."""


@torch.no_grad()
def decode_mel(model: PointerNet, cfg: PointerConfig, mel: np.ndarray, *, target_frames: int,
               fixed_length: bool, frames_per_s: float, jumps_back: bool = True,
               keep_threshold: float = 0.5, passages: np.ndarray | None = None,
               progress: bool = False, until: float = math.inf) -> Decoded:
    """Encode a raw mel and decode its pointers.

    Args:
        mel : np.ndarray [shape=(C, T)], float32
        target_frames: wanted edit length in frames.
        fixed_length: decode exactly target_frames, with the model conditioned on it (else
            target_frames is a guess: the model is not told it, the stop head ends the edit,
            at most cfg.decode.max_length_ratio * target_frames or the raw's length,
            whichever is longer; cfg.decode.keep_veto_s applies).
        frames_per_s: frame rate of the mel (for the progress bar, in seconds of edit).
        jumps_back: whether the editor the model learned ever moves back in the raw (the
            checkpoint's 'jumps_back'); if not, the keep veto refuses jumps back too, and
            with cfg.decode.keep_skip the edit follows the keep head instead.
        keep_threshold: with cfg.decode.keep_skip, the keep probability above which the
            decoder keeps a frame (see `keep_threshold_for`).
        passages: with cfg.decode.keep_skip, the raw's passage bounds (`passage_bounds`)
            when the keep head decides whole passages (the checkpoint's 'keep_passages'),
            else None (frame by frame).
        until: raise DecodeStopped once time.time() passes it (a training run's deadline:
            decoding a long raw's edit can take minutes).
    """
    device = next(model.parameters()).device
    n_raw = mel.shape[1]
    x = torch.from_numpy(np.ascontiguousarray(mel))[None].to(device)
    enc = model.encode(x, torch.tensor([n_raw], device=device))
    step, jump = model_step_fns(model, enc)
    ahead = follow = None
    window = int(round(cfg.decode.keep_veto_s * frames_per_s))
    if not fixed_length and cfg.decode.keep_skip and not jumps_back and window >= 1:
        follow = keep_plan(enc, 0, smooth=window, threshold=keep_threshold,
                           snap=int(round(cfg.decode.keep_snap_s * frames_per_s)), passages=passages)
    if not fixed_length and follow is None:
        ahead = keep_ahead(enc, 0, window)
    max_frames = target_frames if fixed_length else max(
        int(cfg.decode.max_length_ratio * target_frames), n_raw, 1)
    bar = tqdm(total=round(max_frames / frames_per_s, 1), unit="s", desc="decode",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, leave=False,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of edit [{elapsed}<{remaining}]")
    # The decoding loop runs many small operations: on the CPU, intra-op threads cost more
    # than they give (on a loaded machine, 20x more), so the loop runs on one thread.
    threads = torch.get_num_threads()

    def advance(k: int) -> None:
        bar.update(k / frames_per_s)
        if time.time() > until:
            raise DecodeStopped

    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return decode_pointers(
            step, jump, n_raw=n_raw, target_frames=target_frames if fixed_length else None,
            max_frames=max_frames,
            use_stop=not fixed_length, block_steps=cfg.decode.block_steps, keep_ahead=ahead,
            follow=follow,
            jumps_back=jumps_back,
            progress=advance)
    finally:
        torch.set_num_threads(threads)
        bar.close()


def passage_bounds(mel: np.ndarray, params: FeatureParams,
                   edges: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The frames where the raw's playing starts or stops (grid.sound_edges, or `edges` when
    already found): the bounds of the passages a keep head may decide whole
    (decode.by_passages). A take, the noodling after it and the silence between are
    passages of their own."""
    starts_s, stops_s = sound_edges(mel, params) if edges is None else edges
    return np.unique(np.round(np.r_[starts_s, stops_s] * params.frames_per_s).astype(np.int64))


def keep_threshold_for(checkpoint: dict, cfg: PointerConfig) -> float:
    """The keep probability above which decode.keep_skip keeps a frame: the config's
    decode.keep_threshold when set, else the checkpoint's 'keep_threshold' (what training
    used; models saved before 4db2359 hold the one their validation chose), else one half."""
    if cfg.decode.keep_threshold is not None:
        return float(cfg.decode.keep_threshold)
    return float(checkpoint.get("keep_threshold", 0.5))


def pointers_to_edit(decoded: Decoded, cfg: PointerConfig, params: FeatureParams,
                     n_raw: int) -> Edit:
    """Segments of decoded pointers: tiny fragments merged, crossfades on every seam, and
    the fades the op head asked for at the start and the end."""
    min_frames = int(round(cfg.decode.min_segment_s * params.frames_per_s))
    pointers = merge_fragments(decoded.pointers, min_frames, n_raw)
    edit = pointers_to_segments(pointers, params, decoded.confidence)
    edit = with_crossfades(edit, cfg.decode.crossfade_s)
    if len(decoded.ops) and edit.segments and (decoded.ops >= 0).all():
        fps = params.frames_per_s
        ops = decoded.ops
        n_in = int(np.argmin(ops == Op.FADE_IN)) if not (ops == Op.FADE_IN).all() else len(ops)
        tail = ops[::-1]
        fading = (tail == Op.FADE_OUT) | (tail == Op.STOP)
        n_out = int(np.argmin(fading)) if not fading.all() else len(ops)
        first, last = edit.segments[0], edit.segments[-1]
        if n_in > 1:
            edit.segments[0] = replace(first, fade_in_s=min(n_in / fps, first.duration_s))
            last = edit.segments[-1]
        if n_out > 1:
            edit.segments[-1] = replace(last, fade_out_s=min(n_out / fps, last.duration_s))
    return edit


def propose_edit(raw_path: str | os.PathLike, checkpoint: dict, *,
                 target_duration_s: float | None = None, keep: float | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Edit:
    """The edit a pointer network proposes for a raw recording.

    Args:
        raw_path: the raw recording (any format editorbot reads).
        checkpoint: a loaded checkpoint dict of kind 'pointer'.
        target_duration_s: wanted edit length in seconds, or
        keep: wanted fraction of the raw to keep; neither: the training pairs' median.
        cache_dir: a cache holding this raw's stems (models trained with stems; see
            `raw_features`).
        progress: show a progress bar.

    Returns:
        Edit whose segments point into raw_path, its cuts on the edges of the sound where
        they are near (editorbot.grid.snap_cuts).
    """
    model, cfg, params = load_model(checkpoint)
    stems_backend = checkpoint.get("stems_backend") if cfg.model.use_stems else None
    if cfg.model.use_stems and stems_backend is None:
        raise UserError("this checkpoint reads stems but records no stems_backend (made "
                        "before stems were recorded); retrain it")
    mel = raw_features(raw_path, params, stems_backend, cache_dir=cache_dir)
    n_raw = mel.shape[1]
    target, fixed = target_frames_for(n_raw, checkpoint, params,
                                      target_duration_s=target_duration_s, keep=keep)
    edges = sound_edges(mel, params)
    passages = passage_bounds(mel, params, edges) if checkpoint.get("keep_passages") else None
    decoded = decode_mel(model, cfg, mel, target_frames=target, fixed_length=fixed,
                         frames_per_s=params.frames_per_s,
                         jumps_back=checkpoint.get("jumps_back", True),
                         keep_threshold=keep_threshold_for(checkpoint, cfg), passages=passages,
                         progress=progress)
    edit = pointers_to_edit(decoded, cfg, params, n_raw)
    edit.raw_path = str(raw_path)
    edit.raw_duration_s = probe(raw_path).duration_s
    # Cuts go to where the playing starts or stops when that is near, else stay where the
    # model put them: the tracker's bar lines placed them further from the editors' cuts
    # (docs/results.md, "Cuts on the bar").
    return at_editor_level(snap_cuts(edit, None, keep_length=fixed, edges=edges), checkpoint.get("levels"))
