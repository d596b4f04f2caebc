"""Mel features of audio files, cached in cache/features/ and keyed by parameters and source.

`mel_for(path, cache_path)` is what every later stage calls: it returns the cached mel
when the cache entry matches the file and the parameters, and recomputes it otherwise.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .audio import LENGTH_TOLERANCE, load_analysis, probe
from .cache import cached, file_fingerprint
from .errors import UserError
from .features import DEFAULT_PARAMS, FeatureParams, mel
from .layout import Layout, Pair


def mel_meta(path: str | os.PathLike, params: FeatureParams) -> dict:
    return {"kind": "mel", "params": params.as_dict(), "source": str(Path(path).name),
            "source_fingerprint": file_fingerprint(path)}


def mel_for(path: str | os.PathLike, cache_path: str | os.PathLike | None = None,
            params: FeatureParams = DEFAULT_PARAMS, *, audio_sink: dict | None = None) -> np.ndarray:
    """The contract's mel of `path`: (n_mels, t) float32 in [0, 1], cached when cache_path is given.

    Args:
        audio_sink: when given and the mel is computed (not read from the cache), the
            decoded analysis audio is also stored in audio_sink["y"], for callers that
            need it as well (alignment).
    """
    info = probe(path)  # a clear error for a missing or broken file before anything else
    def compute() -> dict[str, np.ndarray]:
        y = load_analysis(path, sr=params.sr)
        if audio_sink is not None:
            audio_sink["y"] = y
        return {"mel": mel(y, params)}
    if cache_path is None:
        return compute()["mel"]
    meta = mel_meta(path, params) | {"editorbot_version": __version__}
    frames = params.n_frames(int(np.ceil(info.frames * params.sr / info.sr)))
    slack = 2 + int(frames * LENGTH_TOLERANCE.get(info.format, 0.0))
    return cached(cache_path, meta, compute,
                  check=lambda arrays: mel_problem(arrays, params, frames, slack))["mel"]


def mel_problem(arrays: dict[str, np.ndarray], params: FeatureParams, frames: int,
                slack: int = 2) -> str | None:
    """What is wrong with a cached mel entry, or None: it must be float32 (n_mels, t) in
    [0, 1], t within `slack` frames of `frames`, the count its source's header gives
    (resampling rounds either way; compressed files' headers are a little off)."""
    m = arrays.get("mel")
    if m is None:
        return "no 'mel' array"
    if m.dtype != np.float32 or m.ndim != 2 or m.shape[0] != params.n_mels:
        return f"mel is {m.dtype} {m.shape}, not float32 ({params.n_mels}, t)"
    if abs(m.shape[1] - frames) > slack:
        return f"mel has {m.shape[1]} frames where its source gives {frames}"
    if not (np.isfinite(m).all() and m.min(initial=0.0) >= 0.0 and m.max(initial=0.0) <= 1.0):
        return "mel values outside [0, 1]"
    return None


@dataclass(frozen=True)
class PairTask:
    pair: Pair
    layout: Layout
    params: FeatureParams = DEFAULT_PARAMS


def cache_pair(task: PairTask) -> dict:
    """Cache the raw and edit mels of one pair; return their frame counts."""
    raw = mel_for(task.pair.raw, task.layout.features(task.pair.name, "raw"), task.params)
    edit = mel_for(task.pair.edit, task.layout.features(task.pair.name, "edit"), task.params)
    return {"raw_frames": raw.shape[1], "edit_frames": edit.shape[1]}


def pair_seconds(pair: Pair) -> float:
    """Seconds of audio in a pair, for progress bars; 0 when a file cannot be probed
    (its task then reports the problem)."""
    total = 0.0
    for path in (pair.raw, pair.edit):
        try:
            total += probe(path).duration_s
        except UserError:  # the task itself reports it
            pass
    return total
