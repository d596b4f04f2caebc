"""Where things live: the training_data/ and cache/ folders and how pairs are found.

    training_data/input/{name}_raw.{wav,flac,ogg,mp3}
    training_data/desired_output/{name}_edit.{...}
    training_data/reference/                 optional finished tracks
    training_data/pointer_sequences/{name}_pointers.npy, _ops.npy, _info.json, _alignment.png
    cache/features/{name}_raw.npz, {name}_edit.npz
    cache/stems/, cache/stems_mel/, cache/labels/
"""
from __future__ import annotations

import json
import os
import tokenize
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AUDIO_EXTENSIONS
from .errors import UserError

RAW_SUFFIX = "_raw"
EDIT_SUFFIX = "_edit"


@dataclass(frozen=True)
class Pair:
    """One training example: a raw recording and the human edit made from it."""

    name: str
    raw: Path
    edit: Path


@dataclass(frozen=True)
class Layout:
    """Paths of the data contract, rooted at a data folder and a cache folder."""

    data_dir: Path = Path("training_data")
    cache_dir: Path = Path("cache")

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    @property
    def input_dir(self) -> Path:
        return self.data_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.data_dir / "desired_output"

    @property
    def reference_dir(self) -> Path:
        return self.data_dir / "reference"

    @property
    def pointer_dir(self) -> Path:
        return self.data_dir / "pointer_sequences"

    def features(self, name: str, kind: str) -> Path:
        """cache/features/{name}_{kind}.npz, kind 'raw' or 'edit'."""
        return self.cache_dir / "features" / f"{name}_{kind}.npz"

    def stems(self, name: str) -> Path:
        return self.cache_dir / "stems" / f"{name}_stems.npz"

    def stems_mel(self, name: str) -> Path:
        return self.cache_dir / "stems_mel" / f"{name}_stems.npz"

    def labels(self, name: str) -> Path:
        return self.cache_dir / "labels" / f"{name}_labels.npz"

    def pointer_file(self, name: str, what: str) -> Path:
        """pointer_sequences/{name}_{what}: what in pointers.npy, ops.npy, info.json, alignment.png."""
        return self.pointer_dir / f"{name}_{what}"


@dataclass
class Discovery:
    pairs: list[Pair]
    orphan_raws: list[Path]
    orphan_edits: list[Path]

    def describe_orphans(self) -> list[str]:
        lines = [f"{p}: raw recording without an edit (expected desired_output/"
                 f"{_stem(p, RAW_SUFFIX)}{EDIT_SUFFIX}.wav or another audio extension)"
                 for p in self.orphan_raws]
        lines += [f"{p}: edit without a raw recording (expected input/"
                  f"{_stem(p, EDIT_SUFFIX)}{RAW_SUFFIX}.wav or another audio extension)"
                  for p in self.orphan_edits]
        return lines


def _stem(path: Path, suffix: str) -> str:
    return path.stem[: -len(suffix)]


def _index(folder: Path, suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for entry in sorted(folder.iterdir()):
        if entry.suffix.lower() not in AUDIO_EXTENSIONS or not entry.stem.endswith(suffix):
            continue
        name = _stem(entry, suffix)
        if not name:
            continue
        if name in found:
            raise UserError(f"{entry}: '{name}' has two files ({found[name].name} and "
                            f"{entry.name}); keep one")
        found[name] = entry
    return found


def discover(data_dir: str | os.PathLike = "training_data",
             names: list[str] | None = None) -> Discovery:
    """Find (raw, edit) pairs under data_dir; report files that have no partner.

    Args:
        names: restrict to these sample names; a name with no pair is an error.
    """
    layout = Layout(Path(data_dir))
    if not layout.input_dir.is_dir():
        raise UserError(f"{layout.input_dir}: no such folder; put raw recordings in "
                        f"{layout.input_dir}/{{name}}{RAW_SUFFIX}.wav")
    raws = _index(layout.input_dir, RAW_SUFFIX)
    edits = _index(layout.output_dir, EDIT_SUFFIX)
    pairs = [Pair(n, raws[n], edits[n]) for n in sorted(raws.keys() & edits.keys())]
    orphan_raws = [raws[n] for n in sorted(raws.keys() - edits.keys())]
    orphan_edits = [edits[n] for n in sorted(edits.keys() - raws.keys())]
    if names:
        unknown = [n for n in names if n not in raws and n not in edits]
        if unknown:
            raise UserError(f"{layout.data_dir}: no sample named {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(raws.keys() | edits.keys())) or 'none'}")
        wanted = set(names)
        pairs = [p for p in pairs if p.name in wanted]
        orphan_raws = [p for p in orphan_raws if _stem(p, RAW_SUFFIX) in wanted]
        orphan_edits = [p for p in orphan_edits if _stem(p, EDIT_SUFFIX) in wanted]
    return Discovery(pairs, orphan_raws, orphan_edits)


# What np.load raises for a cut-short or damaged .npy (a flipped byte in the header can
# make its shape absurd).
NPY_ERRORS = (ValueError, OSError, EOFError, SyntaxError, MemoryError, OverflowError,
              tokenize.TokenError)


def read_npy(path: Path, redo: str) -> np.ndarray:
    """np.load(path) without pickles; UserError '{path}: cut short or damaged (...); {redo}'."""
    try:
        return np.load(path, allow_pickle=False)
    except NPY_ERRORS as err:
        text = str(err).splitlines()[0][:100] if str(err) else type(err).__name__
        raise UserError(f"{path}: cut short or damaged ({text}); {redo}") from None


def read_json_object(path: Path, *, fix: str) -> dict:
    """A JSON file holding an object (an info or settings file), with a one-line error
    naming the file and `fix` when it is unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable or not valid JSON ({err}); {fix}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object; {fix}")
    return data

