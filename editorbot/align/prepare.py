"""Prepare one training pair: cache its mels, align the edit to the raw, and write the
pointer_sequences files ({name}_pointers.npy, _ops.npy, _info.json, _alignment.png).

The mels are computed from the same decoded audio that alignment refines joins on, so a
pair is decoded once; a pair whose outputs match its sources and settings is skipped.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..audio import load_analysis
from ..cache import atomic_write_bytes, atomic_write_text, file_fingerprint
from ..features import DEFAULT_PARAMS, FeatureParams
from ..edits import clock
from ..layout import Layout, Pair
from ..precache import mel_for
from .core import Alignment, align_audio, check_alignable, gather_evidence
from .params import DEFAULT_ALIGN, AlignParams
from .plot import plot_alignment

OUTPUTS = ("pointers.npy", "ops.npy", "info.json", "alignment.png")


@dataclass(frozen=True)
class PrepareTask:
    """One pair to prepare (picklable, for editorbot.jobs.run_jobs)."""

    pair: Pair
    layout: Layout
    params: FeatureParams = DEFAULT_PARAMS
    cfg: AlignParams = DEFAULT_ALIGN
    force: bool = False


def run_task(task: PrepareTask) -> dict:
    return prepare_pair(task.pair, task.layout, params=task.params, cfg=task.cfg, force=task.force)


def prepare_pair(pair: Pair, layout: Layout, *, params: FeatureParams = DEFAULT_PARAMS,
                 cfg: AlignParams = DEFAULT_ALIGN, force: bool = False) -> dict:
    """Cache the pair's mels, align it and write its pointer_sequences files.

    Args:
        pair: the (raw, edit) files.
        layout: where the cache and pointer_sequences live.
        force: redo a pair whose outputs are up to date.

    Returns:
        a summary: name, skipped, aligned_fraction, cuts, loops, reorders, confidence
        (mean), warnings, outputs (paths).

    Raises AudioError for unreadable, empty or broken audio files.
    """
    sources = {"raw": file_fingerprint(pair.raw), "edit": file_fingerprint(pair.edit)}
    settings = {"feature_params": params.as_dict(), "align_params": asdict(cfg),
                "editorbot_version": __version__}
    outputs = {what: layout.pointer_file(pair.name, what) for what in OUTPUTS}
    if not force:
        previous = _up_to_date(outputs, sources, settings)
        if previous is not None:
            return _summary(pair.name, previous, outputs, skipped=True)
    y_raw, raw_mel = _audio_and_mel(pair.raw, layout.features(pair.name, "raw"), params)
    check_alignable(y_raw, pair.raw, "raw", params)
    y_edit, edit_mel = _audio_and_mel(pair.edit, layout.features(pair.name, "edit"), params)
    check_alignable(y_edit, pair.edit, "edit", params)
    evidence = gather_evidence(raw_mel, edit_mel, params=params, cfg=cfg)
    del raw_mel, edit_mel  # cached on disk; alignment needs only the evidence from here on
    result = align_audio(y_raw, y_edit, evidence, params=params, cfg=cfg,
                         raw_path=pair.raw, edit_path=pair.edit)
    raw_duration_s = len(evidence.raw_features) / params.frames_per_s
    del y_raw, y_edit, evidence
    result.info["sources"] = sources
    write_outputs(result, outputs, title=pair.name, raw_duration_s=raw_duration_s, params=params)
    return _summary(pair.name, result.info, outputs, skipped=False)


def write_outputs(result: Alignment, outputs: dict[str, Path], *, title: str,
                  raw_duration_s: float, params: FeatureParams) -> None:
    """Write pointers, ops, info and the picture, each atomically."""
    _save_npy(outputs["pointers.npy"], result.pointers.astype(np.int64))
    _save_npy(outputs["ops.npy"], result.ops.astype(np.int8))
    info = result.info
    c = info["confidence"]
    heading = (f"{title}: {100 * info['aligned_fraction']:.1f}% aligned, {info['cuts']} cuts, "
               f"{info['loops']} loops, {info['reorders']} reorders, "
               f"confidence {c['mean']:.2f}")
    plot_alignment(outputs["alignment.png"], edit=result.edit, ops=result.ops,
                   confidence=result.confidence, params=params, raw_duration_s=raw_duration_s,
                   title=heading, alternatives=[[a["raw_start_s"] for a in seg.get("alternatives", [])]
                                                for seg in info["segments"]])
    # info last: its presence with matching sources marks the pair as done.
    atomic_write_text(outputs["info.json"], json.dumps(info, indent=1))


def _audio_and_mel(path: Path, cache_path: Path, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """Analysis audio and cached mel of a file, decoding it once when the mel is not cached."""
    sink: dict = {}
    m = mel_for(path, cache_path, params, audio_sink=sink)
    y = sink["y"] if "y" in sink else load_analysis(path, sr=params.sr)
    return y, m


def _save_npy(path: Path, array: np.ndarray) -> Path:
    def writer(tmp: Path) -> None:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        tmp.write_bytes(buf.getvalue())
    return atomic_write_bytes(path, writer)


def _up_to_date(outputs: dict[str, Path], sources: dict, settings: dict) -> dict | None:
    """The previous info when every output exists and was made from these sources with
    these settings; None otherwise."""
    if not all(p.exists() for p in outputs.values()):
        return None
    try:
        info = json.loads(outputs["info.json"].read_text())
    except (json.JSONDecodeError, OSError):
        return None
    if info.get("sources") != sources:
        return None
    if any(info.get(k) != v for k, v in settings.items()):
        return None
    return info


def _summary(name: str, info: dict, outputs: dict[str, Path], *, skipped: bool) -> dict:
    return {"name": name, "skipped": skipped, "aligned_fraction": info["aligned_fraction"],
            "cuts": info["cuts"], "loops": info["loops"], "reorders": info["reorders"],
            "confidence": info["confidence"]["mean"], "warnings": info["warnings"],
            "alternatives": alternatives(info),
            "outputs": {k: str(v) for k, v in outputs.items()}}


def alternatives(info: dict) -> list[tuple[float, list[float]]]:
    """(edit start, [raw starts of its identical copies]) of each segment that other places
    in the raw play as well, from an alignment's info."""
    return [(seg["edit_start_s"], [a["raw_start_s"] for a in seg["alternatives"]])
            for seg in info.get("segments", []) if seg.get("alternatives")]


def describe(summary: dict) -> str:
    """One line about a prepared pair (two when segments have identical copies)."""
    state = " (up to date)" if summary["skipped"] else ""
    line = (f"{summary['name']}: {100 * summary['aligned_fraction']:.1f}% aligned, "
            f"{summary['cuts']} cuts, {summary['loops']} loops, {summary['reorders']} reorders, "
            f"confidence {summary['confidence']:.2f}{state}")
    copies = summary.get("alternatives") or []
    if copies:
        edit_s, raw_s = copies[0]
        more = f" ({len(copies) - 1} more segments too, see the info file)" if len(copies) > 1 else ""
        line += (f"\n  identical audio elsewhere in the raw: the piece at {clock(edit_s)} of the "
                 f"edit could also come from {', '.join(clock(t) for t in raw_s[:3])}"
                 f"{' and others' if len(raw_s) > 3 else ''}{more}; the fewest jumps were kept")
    return line


def output_paths(out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """{name}_{what} in out_dir for each output (editorbot align)."""
    return {what: Path(out_dir) / f"{name}_{what}" for what in OUTPUTS}
