"""Training pairs as every paradigm reads them: one Recording, one checked loader, one split.

A Recording is a pair on disk after `editorbot prepare`: the cached raw mel and the
alignment's pointers, ops and info. The pointer, supervised and RL trainers and `evaluate`
all split pairs with `split_by_recording`, so the same seed and fraction hold out the same
recordings in every paradigm.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import atomic_write_bytes, atomic_write_text, load_npz
from .edits import Edit, ops_from_pointers, segments_to_pointers
from .errors import UserError
from .features import DEFAULT_PARAMS, FeatureParams
from .layout import Layout, read_json_object, read_npy


@dataclass
class Recording:
    """One aligned pair.

    mel : np.ndarray [shape=(n_mels, n_raw)], float32 in [0, 1], the raw's cached mel
    pointers : np.ndarray [shape=(edit_frames,)], int64 raw frame per edit frame, -1 = not in raw
    ops : np.ndarray [shape=(edit_frames,)], int8 (editorbot.edits.Op); cut from the
        pointers when the pair has no {name}_ops.npy
    info : the alignment's {name}_info.json record ({} when absent)
    params : the analysis grid of the mel and the pointers
    meta : the raw mel's cache record (its params, source_fingerprint)
    """

    name: str
    mel: np.ndarray
    pointers: np.ndarray
    ops: np.ndarray
    info: dict
    params: FeatureParams
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def n_raw(self) -> int:
        return self.mel.shape[1]

    @property
    def alternatives(self) -> list[tuple[float, list[float]]]:
        """(edit start, [raw starts of its identical copies]) in seconds, of each segment
        that other places in the raw play as well ([] when the info records none)."""
        from .align.prepare import alternatives
        return alternatives(self.info)


def read_pointer_files(pointer_dir: str | os.PathLike, name: str, *,
                       params: FeatureParams | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """A pair's pointer_sequences files, checked against each other.

    Args:
        params: the feature parameters of the raw mel the pointers index, when known: the
            info's sample_rate and hop_length must match them.

    Returns:
        pointers : np.ndarray [shape=(edit_frames,)], int64 raw frame per edit frame, -1 = not in raw
        ops : np.ndarray [shape=(edit_frames,)], int8 (editorbot.edits.Op), or None when
            {name}_ops.npy is absent
        info : the {name}_info.json record ({} when absent)

    Raises UserError naming the file and `editorbot prepare` for a missing, cut-short or
    damaged file, a wrong dtype or shape, or pointers that disagree with the info record
    (its edit_frames, its raw_frames, its sample_rate and hop_length).
    """
    pointer_dir = Path(pointer_dir)
    redo = f"run `editorbot prepare --force {name}` again"
    path = pointer_dir / f"{name}_pointers.npy"
    if not path.is_file():
        raise UserError(f"{path}: no pointer sequence for '{name}'; run `editorbot prepare {name}`")
    pointers = read_npy(path, redo)
    if pointers.ndim != 1 or len(pointers) == 0 or not np.issubdtype(pointers.dtype, np.integer):
        raise UserError(f"{path}: expected a non-empty 1-D integer array of raw frames, got "
                        f"{pointers.dtype} {pointers.shape}; {redo}")
    pointers = pointers.astype(np.int64)
    if pointers.min() < -1:
        raise UserError(f"{path}: holds raw frame {int(pointers.min())} (-1 is the least); {redo}")
    info_path = pointer_dir / f"{name}_info.json"
    info = {}
    if info_path.is_file():
        info = read_json_object(info_path, fix=redo)
        edit_frames, raw_frames = info.get("edit_frames"), info.get("raw_frames")
        if isinstance(edit_frames, int) and edit_frames != len(pointers):
            raise UserError(f"{path}: {len(pointers)} pointers, but {info_path.name} records "
                            f"{edit_frames} edit frames (cut short?); {redo}")
        if isinstance(raw_frames, int) and pointers.max() >= raw_frames:
            raise UserError(f"{path}: points at raw frame {int(pointers.max())}, but the raw has "
                            f"{raw_frames} frames; {redo}")
        if params is not None:
            grid = {"sample_rate": params.sr, "hop_length": params.hop_length}
            for key, want in grid.items():
                if key in info and info[key] != want:
                    raise UserError(f"{info_path}: aligned at {key} {info[key]}, but the cached "
                                    f"raw mel has {want}; run `editorbot prepare --force {name}` "
                                    "with the same feature parameters")
    ops_path = pointer_dir / f"{name}_ops.npy"
    ops = None
    if ops_path.is_file():
        ops = read_npy(ops_path, redo)
        if ops.shape != pointers.shape or not np.issubdtype(ops.dtype, np.integer):
            raise UserError(f"{ops_path}: expected {len(pointers)} integer ops (one per pointer), "
                            f"got {ops.dtype} {ops.shape}; {redo}")
        ops = ops.astype(np.int8)
    return pointers, ops, info


def read_raw_mel(layout: Layout, name: str) -> tuple[np.ndarray, FeatureParams, dict]:
    """The cached raw mel of `name` (cache/features/{name}_raw.npz).

    Returns:
        mel : np.ndarray [shape=(n_mels, n_raw)], float32
        params : the feature parameters it was made with
        meta : its cache record
    """
    path = layout.features(name, "raw")
    entry = load_npz(path)
    if entry is None or "mel" not in entry[0]:
        raise UserError(f"{path}: missing or unreadable; run `editorbot features {name}` "
                        "(or `editorbot prepare`) with this --cache-dir")
    arrays, meta = entry
    if "params" not in meta:
        raise UserError(f"{path}: records no feature parameters; delete it and run "
                        f"`editorbot features {name}` again")
    return arrays["mel"].astype(np.float32, copy=False), FeatureParams(**meta["params"]), meta


def load_recording(layout: Layout, name: str, *,
                   pointer_dir: str | os.PathLike | None = None) -> Recording:
    """Read one prepared pair: its cached raw mel and its checked pointer files.

    Args:
        pointer_dir: where its pointer files are (default: the layout's pointer_sequences/).
    """
    pointer_dir = Path(pointer_dir) if pointer_dir is not None else layout.pointer_dir
    mel, params, meta = read_raw_mel(layout, name)
    pointers, ops, info = read_pointer_files(pointer_dir, name, params=params)
    if pointers.max() >= mel.shape[1]:
        raise UserError(f"{pointer_dir / f'{name}_pointers.npy'}: points at raw frame "
                        f"{int(pointers.max())} but the raw mel has {mel.shape[1]} frames; run "
                        f"`editorbot prepare {name}` again")
    if ops is None:
        ops = ops_from_pointers(pointers).astype(np.int8)
    return Recording(name, mel, pointers, ops, info, params, meta)


def prepared_names(pointer_dir: str | os.PathLike) -> list[str]:
    """The recordings `editorbot prepare` wrote pointers for ({name}_pointers.npy), sorted:
    the names every trainer starts from."""
    pointer_dir = Path(pointer_dir)
    if not pointer_dir.is_dir():
        raise UserError(f"{pointer_dir}: no such folder; run `editorbot prepare` on your pairs "
                        "first, or pass the --data-dir that holds pointer_sequences/")
    return sorted(p.name[: -len("_pointers.npy")] for p in pointer_dir.glob("*_pointers.npy"))


def split_by_recording(names: list[str], fraction: float, seed: int, *,
                       val_names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Split recordings (never frames) into training and held-out sets.

    ceil(fraction * len(names)) recordings are held out, drawn by a permutation seeded with
    `seed` over the sorted names, at least one when there are two or more and fraction > 0,
    never all of them. Every trainer and `evaluate` split with this function.

    Args:
        val_names: hold out exactly these instead (each must be among `names`).

    Returns:
        (train, val): disjoint sorted lists.
    """
    names = sorted(set(names))
    if val_names:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            raise UserError(f"train.val_names: no recording named {', '.join(unknown)}")
        val = sorted(set(val_names))
    else:
        n_val = 0
        if len(names) > 1 and fraction > 0:
            # rounded first: 0.1 * 30 is 3.0000000000000004 in floating point, not 4 recordings
            n_val = min(max(int(np.ceil(round(fraction * len(names), 9))), 1), len(names) - 1)
        order = np.random.default_rng(seed).permutation(len(names))
        val = sorted(names[i] for i in order[:n_val])
    held = set(val)
    train = [n for n in names if n not in held]
    if not train:
        raise UserError("train.val_names: every recording is held out; leave some for training")
    return train, val


# ---------------------------------------------------------------------------- writing truth

def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append .npy to a name
        np.save(fh, array)


def write_truth_pointers(layout: Layout, name: str, edit: Edit, n_edit_frames: int,
                         params: FeatureParams = DEFAULT_PARAMS, raw_frames: int | None = None) -> None:
    """Write pointer_sequences/{name}_pointers.npy, _ops.npy and _info.json from a known
    edit, as `editorbot prepare` writes them from an alignment."""
    pointers = segments_to_pointers(edit, params, n_edit_frames, raw_frames)
    fps = params.frames_per_s
    ops = ops_from_pointers(pointers, fade_in_frames=int(round(edit.segments[0].fade_in_s * fps)),
                            fade_out_frames=int(round(edit.segments[-1].fade_out_s * fps)))
    for what, arr in (("pointers.npy", pointers), ("ops.npy", ops)):
        atomic_write_bytes(layout.pointer_file(name, what), lambda tmp, a=arr: _save_npy(tmp, a))
    info = {"sample_rate": params.sr, "hop_length": params.hop_length, "source": "truth",
            "edit_frames": int(n_edit_frames)} | {"segments": edit.to_json()["segments"]}
    atomic_write_text(layout.pointer_file(name, "info.json"), json.dumps(info, indent=1))
