"""The editor's levels: what the training edits did to the raw's level, measured on the
training pairs when a model is trained, kept in its checkpoint as 'levels', applied to
every edit the model proposes.

Alignment measures each edit's level against its raw ({name}_info.json): mastering_gain_db
is the edit's typical level over the raw's (the median over its segments), and each
segment's gain_db is its level relative to that. A model's edit gets the editor's level
(the mean mastering_gain_db) and its segment gains stay within the range the editor's
segments had (mastering_gain_db + gain_db, segments of MIN_SEGMENT_S or more). When the
editor's edits all sit at about one loudness (their integrated loudness spreads by at most
LOUDNESS_SPREAD_LU), the edit is set to the mean of it (Edit.loudness_lufs, which the
renderer reaches with one gain, never past full scale).
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .edits import Edit
from .errors import UserError

MIN_SEGMENT_S = 1.0        # shorter segments' levels are too unsure to bound a model by
LOUDNESS_SPREAD_LU = 1.0   # edits within this (standard deviation) of one loudness aim at it
KEYS = ("pairs", "gain_db", "mastering_gain_db", "loudness_lufs", "loudness_spread_lu")


def editor_levels(data_dir: str | os.PathLike, names: list[str]) -> dict:
    """The levels of the editor of the pairs `names` under data_dir (their training pairs).

    Reads each pair's {name}_info.json (from `editorbot prepare`) and its edit's audio
    (integrated loudness, at the file's own rate and channels).

    Returns:
        {"pairs": int, "gain_db": [lowest, highest] segment level over the raw (dB),
         "mastering_gain_db": mean edit level over the raw (dB),
         "loudness_lufs": mean loudness of the edits, or None when they spread more than
             LOUDNESS_SPREAD_LU, "loudness_spread_lu": their standard deviation}
    """
    from .layout import Layout, discover, read_json_object
    from .loudness import file_loudness

    layout = Layout(Path(data_dir))
    pairs = {p.name: p for p in discover(data_dir, names).pairs}
    segment_db, mastering_db, loudness = [], [], []
    for name in names:
        path = layout.pointer_file(name, "info.json")
        if not path.is_file():
            raise UserError(f"{path}: no alignment of '{name}'; run `editorbot prepare {name}`")
        info = read_json_object(path, fix=f"run `editorbot prepare --force {name}` again")
        master = info.get("mastering_gain_db")
        if not isinstance(master, (int, float)):
            raise UserError(f"{path}: records no mastering_gain_db (aligned by an older "
                            f"editorbot); run `editorbot prepare --force {name}` again")
        mastering_db.append(float(master))
        segment_db += [float(master) + float(s.get("gain_db", 0.0)) for s in info.get("segments", [])
                       if s.get("raw_start_s") is not None
                       and float(s.get("duration_s", 0.0)) >= MIN_SEGMENT_S]
        if name not in pairs:
            raise UserError(f"{layout.data_dir}: '{name}' has no raw and edit pair to measure")
        lufs = file_loudness(pairs[name].edit)
        if np.isfinite(lufs):
            loudness.append(lufs)
    if not segment_db:
        segment_db = mastering_db
    spread = float(np.std(loudness)) if loudness else None
    aims = len(loudness) >= 2 and spread <= LOUDNESS_SPREAD_LU
    return {"pairs": len(names),
            "gain_db": [round(min(segment_db), 2), round(max(segment_db), 2)],
            "mastering_gain_db": round(float(np.mean(mastering_db)), 2),
            "loudness_lufs": round(float(np.mean(loudness)), 2) if aims else None,
            "loudness_spread_lu": None if spread is None else round(spread, 2)}


def check_levels(levels, *, where: str) -> dict:
    """`levels` as editor_levels writes it, or UserError naming `where`."""
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))

    ok = (isinstance(levels, dict) and set(levels) == set(KEYS)
          and isinstance(levels["pairs"], int) and levels["pairs"] > 0
          and isinstance(levels["gain_db"], (list, tuple)) and len(levels["gain_db"]) == 2
          and all(number(x) for x in levels["gain_db"])
          and levels["gain_db"][0] <= levels["gain_db"][1]
          and number(levels["mastering_gain_db"])
          and (levels["loudness_lufs"] is None or number(levels["loudness_lufs"]))
          and (levels["loudness_spread_lu"] is None or number(levels["loudness_spread_lu"])))
    if not ok:
        raise UserError(f"{where}: its levels are not the editor's levels as training writes them "
                        f"({', '.join(KEYS)}); train or copy it again")
    return levels


def with_levels(edit: Edit, levels: dict | None) -> Edit:
    """`edit` with every segment's gain_db within the editor's range and the editor's
    loudness (when the editor aims at one); unchanged for levels None (a checkpoint
    trained before levels were measured)."""
    if levels is None:
        return edit
    lo, hi = levels["gain_db"]
    segs = [replace(s, gain_db=round(float(np.clip(s.gain_db, lo, hi)), 2)) for s in edit.segments]
    return replace(edit, segments=segs, loudness_lufs=levels["loudness_lufs"])


def at_editor_level(edit: Edit, levels: dict | None) -> Edit:
    """For editors whose gains are moves from the editor's level (RL's policy; the pointer
    network, which copies the raw as it is): each segment gets the editor's level over the
    raw (levels' mastering_gain_db) added, then stays within the editor's range
    (with_levels); unchanged without levels."""
    if levels is None:
        return edit
    shifted = [replace(s, gain_db=s.gain_db + levels["mastering_gain_db"]) for s in edit.segments]
    return with_levels(replace(edit, segments=shifted), levels)
