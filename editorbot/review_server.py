"""Correct an edit in the browser: the edit-state model (operations, undo/redo, a journal on
disk), Save (a new numbered version, re-rendered from the raw, and a training pair), and the
local HTTP server behind `editorbot review`.

Files of an edit OUT.wav (stem S) in its folder: version 1 is what `editorbot edit` wrote
(S.wav, S_segments.json, S.otio, S.edl, S.fcp.xml, S_labels.txt, S_review.html); Save
writes version n as the same files named S_vN.*, never replacing one. S_corrections/
holds the session: journal.jsonl (one JSON line per change, appended and fsynced as it
happens), the lock that keeps a second writer out, the raw's waveform peaks and beat grid,
and the render of the current unsaved edit (made in a thread as soon as a change is made;
the page plays it and Save publishes it as the new version's audio). Save also writes the
correction into the training layout as a pair, and caches the raw's mel in the layout's
cache, so `editorbot train` can use it without `editorbot features` first.

Cuts are numbered by the segment they lead into: cut k (1 <= k < n_segments) joins segment
k - 1 to segment k (0-based segment indices), as RenderReport's seams are.
"""
from __future__ import annotations

import copy
import fcntl
import hashlib
import hmac
import io
import json
import mimetypes
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import soundfile as sf

from . import __version__, audio
from .cache import atomic_write_bytes, atomic_write_text, cached, file_fingerprint
from .edits import Edit, Segment, check_segment, ops_from_pointers, segments_to_pointers
from .errors import UserError, log
from .features import DEFAULT_PARAMS, FeatureParams
from .layout import Layout, read_json_object

PEAKS_PER_S = 100         # waveform min/max pairs per second of raw sent to the page
MIN_SEGMENT_S = 0.1       # no operation leaves a segment shorter than this
SNAP_FRACTION = 0.25      # a time this close to a grid line (in grid spacings) is on it
CLIP_S = 4.0              # an audition plays this much across a cut
END_TOLERANCE_S = 0.025   # segments may reach this far past the raw's end (as render allows)
UNITS = ("beat", "bar", "s")
WEB = Path(__file__).resolve().parent / "web"
STATIC_FILES = ("review.js", "review.css", "wavesurfer.min.js", "regions.min.js")
_VERSIONED = re.compile(r"^(?P<stem>.+)_v(?P<n>\d+)$")


# ----------------------------------------------------------------------------- the edit's files

@dataclass(frozen=True)
class EditFiles:
    """Where the versions of one edit live: folder/S.ext is version 1, folder/S_vN.ext version N."""

    folder: Path
    stem: str
    suffix: str

    def paths(self, version: int) -> dict[str, Path]:
        """{kind: path} of every file of a version (audio, segments, timelines, page)."""
        name = self.stem if version == 1 else f"{self.stem}_v{version}"
        base = self.folder / name
        return {"audio": base.with_name(name + self.suffix),
                "segments": base.with_name(f"{name}_segments.json"),
                "otio": base.with_name(f"{name}.otio"), "edl": base.with_name(f"{name}.edl"),
                "fcp_xml": base.with_name(f"{name}.fcp.xml"),
                "labels": base.with_name(f"{name}_labels.txt"),
                "review": base.with_name(f"{name}_review.html")}

    def versions(self) -> list[int]:
        """Versions on disk (audio and segment list both present), ascending."""
        found = []
        for seg in self.folder.glob(f"{glob_escape(self.stem)}*_segments.json"):
            name = seg.name[: -len("_segments.json")]
            m = _VERSIONED.match(name)
            n = 1 if name == self.stem else (int(m["n"]) if m and m["stem"] == self.stem else None)
            if n is not None and self.paths(n)["audio"].is_file():
                found.append(n)
        return sorted(found)

    def next_version(self) -> int:
        """The first number after every version whose files exist in part or whole."""
        n = max(self.versions(), default=1) + 1
        while any(p.exists() for p in self.paths(n).values()):
            n += 1
        return n

    @property
    def state_dir(self) -> Path:
        return self.folder / f"{self.stem}_corrections"


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def find_edit(path: str | os.PathLike) -> EditFiles:
    """The edit named by OUT.wav (any of its versions) or by the folder `edit` wrote it to."""
    from .render import OUTPUT_FORMATS

    path = Path(path)
    if path.is_dir():
        stems = {}
        for seg in sorted(path.glob("*_segments.json")):
            name = seg.name[: -len("_segments.json")]
            m = _VERSIONED.match(name)
            stem = m["stem"] if m and any((path / (m["stem"] + s)).is_file() for s in OUTPUT_FORMATS) else name
            for suffix in OUTPUT_FORMATS:
                if (path / (stem + suffix)).is_file():
                    stems[stem] = suffix
        if not stems:
            raise UserError(f"{path}: no edit here (no OUT.wav with its OUT_segments.json); "
                            "pass the folder `editorbot edit` wrote, or OUT.wav itself")
        if len(stems) > 1:
            raise UserError(f"{path}: holds {len(stems)} edits ({', '.join(sorted(stems))}); "
                            "pass one of them as OUT.wav")
        (stem, suffix), = stems.items()
        return EditFiles(path, stem, suffix)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise UserError(f"{path}: not an edit's audio (.wav, .flac or .ogg) or a folder; pass "
                        "the OUT.wav that `editorbot edit` wrote")
    m = _VERSIONED.match(path.stem)
    stem = m["stem"] if m and (path.with_name(m["stem"] + path.suffix)).is_file() else path.stem
    files = EditFiles(path.parent, stem, path.suffix)
    if not files.versions():
        raise UserError(f"{path}: no {stem}_segments.json next to it; review edits that "
                        "`editorbot edit` (or `render`) wrote, with their segment list")
    return files


# ----------------------------------------------------------------------------- beat grid

@dataclass(frozen=True)
class BeatGrid:
    """The raw's beat and bar lines (seconds of raw), as the rule-based editor finds them.

    beats_s : np.ndarray [shape=(n_beats,)]; downbeats_s : np.ndarray [shape=(n_bars,)].
    Both empty when the raw has no steady beat (then moves are in seconds only).
    """

    beats_s: np.ndarray
    downbeats_s: np.ndarray
    tempo_bpm: float | None

    def lines(self, unit: str) -> np.ndarray:
        return self.beats_s if unit == "beat" else self.downbeats_s

    def step(self, t: float, n: int, unit: str) -> float:
        """The raw time n beats or bars (or seconds, unit 's') from t, on the grid.

        From a time on a grid line (within SNAP_FRACTION of a spacing) the move counts
        lines from it; from a time between lines the first line reached counts as the first
        step, and n = 0 snaps to the nearest line.
        """
        if unit == "s":
            return float(t + n)
        grid = self.lines(unit)
        if len(grid) < 2:
            raise UserError(f"no steady beat was found in the raw, so there is no {unit} grid "
                            "to move by; move by seconds (unit 's') instead")
        i = int(np.argmin(np.abs(grid - t)))
        spacing = float(np.diff(grid[max(0, i - 1):i + 2]).mean())
        if n == 0 or abs(grid[i] - t) <= SNAP_FRACTION * spacing:
            j = i + n
        elif n > 0:
            j = int(np.searchsorted(grid, t, side="right")) + n - 1
        else:
            j = int(np.searchsorted(grid, t, side="left")) + n
        if not 0 <= j < len(grid):
            raise UserError(f"moving {n:+d} {unit}(s) from raw {t:.2f} s goes past the raw's "
                            f"{unit} grid ({grid[0]:.2f} to {grid[-1]:.2f} s)")
        return float(grid[j])


NO_GRID = BeatGrid(np.zeros(0), np.zeros(0), None)


def beat_grid(raw: Path, params: FeatureParams, cache_dir: Path) -> BeatGrid:
    """The raw's beat grid (editorbot.grid, the one every editor uses), cached in
    cache_dir/grid/ like the trainers' and the editors'."""
    from .grid import cached_beat_grid

    found = cached_beat_grid(raw, params, cache_dir=cache_dir)
    return BeatGrid(found.beats_s, found.downbeats_s, found.tempo_bpm)


def raw_peaks(raw: Path, cache_path: Path, peaks_per_s: int = PEAKS_PER_S) -> np.ndarray:
    """Min and max of the raw's mono mix, peaks_per_s pairs a second, cached.

    Returns:
        peaks : np.ndarray [shape=(2 * columns,)], int8: max, min, max, min... scaled by 127
    """
    from .review import waveform_peaks

    def compute() -> dict[str, np.ndarray]:
        info = audio.probe(raw)
        columns = max(1, int(np.ceil(info.duration_s * peaks_per_s)))
        lo, hi, _ = waveform_peaks(raw, columns=columns)
        both = np.stack([hi, lo], axis=1).reshape(-1)
        return {"peaks": np.clip(np.rint(both * 127), -127, 127).astype(np.int8)}

    return cached(cache_path, {"raw": file_fingerprint(raw), "peaks_per_s": peaks_per_s},
                  compute)["peaks"]


# ----------------------------------------------------------------------------- operations

def _segments(edit: Edit) -> list[Segment]:
    return [copy.deepcopy(s) for s in edit.segments]


def _typical_crossfade(segs: list[Segment]) -> float:
    xf = [s.crossfade_s for s in segs[1:]]
    return float(np.median(xf)) if xf else 0.0


def _check_cut(segs: list[Segment], cut) -> int:
    if not isinstance(cut, int) or isinstance(cut, bool) or not 1 <= cut < len(segs):
        raise UserError(f"cut {cut!r}: the edit's cuts are 1 to {len(segs) - 1}")
    return cut


def _check_index(segs: list[Segment], index, what: str = "segment", extra: int = 0) -> int:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(segs) + extra:
        raise UserError(f"{what} {index!r}: must be 0 to {len(segs) - 1 + extra}")
    return index


def _plain(seg: Segment, what: str) -> None:
    if seg.raw_start_s is None:
        raise UserError(f"{what} is not in the raw (silence); delete it instead")
    if seg.effect is not None and seg.effect.get("name") == "speed":
        raise UserError(f"{what} plays the raw at another speed; move it in the segment list")


def veto_cut(edit: Edit, cut: int) -> Edit:
    """Undo cut `cut`: the two pieces join into one, playing the raw between them again.

    Only a cut forward in the raw can be vetoed (a jump back is a loop or a reorder: delete
    or move a segment instead). The joined segment keeps the first piece's gain, fade-in and
    crossfade and the second's fade-out; the edit grows by the raw the cut skipped.
    """
    segs = _segments(edit)
    k = _check_cut(segs, cut)
    a, b = segs[k - 1], segs[k]
    _plain(a, f"segment {k - 1}")
    _plain(b, f"segment {k}")
    if b.raw_start_s < a.raw_end_s - 1e-6:
        raise UserError(f"cut {k} jumps back {a.raw_end_s - b.raw_start_s:.2f} s in the raw (a loop "
                        "or a reorder); delete or move a segment instead")
    if a.gain_db != b.gain_db or a.effect != b.effect:
        raise UserError(f"cut {k} joins pieces with different gain or effects; set them equal "
                        "in the segment list first")
    segs[k - 1:k + 1] = [replace(a, duration_s=b.raw_end_s - a.raw_start_s,
                                 fade_out_s=b.fade_out_s, confidence=None)]
    return replace(edit, segments=segs)


def move_cut(edit: Edit, cut: int, n: int, unit: str, grid: BeatGrid) -> Edit:
    """Roll cut `cut` by n beats, bars or seconds: the outgoing piece's raw end moves to the
    grid line n units away and the incoming piece's raw start moves by the same amount, so
    the edit keeps its length and the audio on both sides of the cut stays in step."""
    segs = _segments(edit)
    k = _check_cut(segs, cut)
    a, b = segs[k - 1], segs[k]
    _plain(a, f"segment {k - 1}")
    _plain(b, f"segment {k}")
    delta = grid.step(a.raw_end_s, n, unit) - a.raw_end_s
    segs[k - 1] = replace(a, duration_s=a.duration_s + delta, confidence=None)
    segs[k] = replace(b, raw_start_s=b.raw_start_s + delta, duration_s=b.duration_s - delta,
                      confidence=None)
    return replace(edit, segments=segs)


def move_edge(edit: Edit, segment: int, edge: str, n: int, unit: str, grid: BeatGrid) -> Edit:
    """Move a segment's start or end in the raw by n beats, bars or seconds (onto the grid):
    the segment plays more or less of the raw and the edit grows or shrinks by as much."""
    segs = _segments(edit)
    i = _check_index(segs, segment)
    seg = segs[i]
    _plain(seg, f"segment {i}")
    if edge == "start":
        start = grid.step(seg.raw_start_s, n, unit)
        segs[i] = replace(seg, raw_start_s=start, duration_s=seg.raw_end_s - start, confidence=None)
    elif edge == "end":
        end = grid.step(seg.raw_end_s, n, unit)
        segs[i] = replace(seg, duration_s=end - seg.raw_start_s, confidence=None)
    else:
        raise UserError(f"edge {edge!r}: must be 'start' or 'end'")
    return replace(edit, segments=segs)


def delete_segment(edit: Edit, segment: int) -> Edit:
    """Leave segment `segment` out; the pieces either side of it meet at a new cut."""
    segs = _segments(edit)
    i = _check_index(segs, segment)
    if len(segs) == 1:
        raise UserError("the edit's only segment cannot be deleted")
    del segs[i]
    segs[0] = replace(segs[0], crossfade_s=0.0)
    return replace(edit, segments=segs)


def move_segment(edit: Edit, segment: int, to: int) -> Edit:
    """Reorder: segment `segment` moves to position `to` (0-based, in the new order)."""
    segs = _segments(edit)
    i = _check_index(segs, segment)
    j = _check_index(segs, to, "position")
    crossfade, first = _typical_crossfade(segs), segs[0]
    segs.insert(j, segs.pop(i))
    # The seam before the first segment has no crossfade; the old first gets the usual one.
    segs = [replace(s, crossfade_s=0.0 if k == 0 else (crossfade if s is first else s.crossfade_s))
            for k, s in enumerate(segs)]
    return replace(edit, segments=segs)


def insert_raw(edit: Edit, raw_start_s: float, raw_end_s: float, at: int, grid: BeatGrid,
               snap: bool = True) -> Edit:
    """Put the raw's [raw_start_s, raw_end_s) into the edit as a new segment at position
    `at` (0 = first, n_segments = last); with `snap`, both ends move to the nearest beat."""
    segs = _segments(edit)
    at = _check_index(segs, at, "position", extra=1)
    for name, value in (("raw_start_s", raw_start_s), ("raw_end_s", raw_end_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise UserError(f"{name} {value!r}: must be a number of seconds")
    if snap and len(grid.beats_s) >= 2:
        raw_start_s, raw_end_s = grid.step(raw_start_s, 0, "beat"), grid.step(raw_end_s, 0, "beat")
    crossfade = _typical_crossfade(segs)
    segs.insert(at, Segment(float(raw_start_s), float(raw_end_s - raw_start_s),
                            crossfade_s=crossfade if at else 0.0))
    if at == 0 and len(segs) > 1:
        segs[1] = replace(segs[1], crossfade_s=crossfade)
    return replace(edit, segments=segs)


def apply_op(edit: Edit, request: dict, grid: BeatGrid, raw_duration_s: float) -> Edit:
    """One operation from the page, {"op": name, ...its arguments}, checked and applied.

    ops: veto {cut}; move_cut {cut, n, unit}; move_edge {segment, edge, n, unit};
    delete {segment}; move_segment {segment, to}; insert {raw_start_s, raw_end_s, at, snap}
    (repropose {target_s, editor} needs an editor: ReviewSession.repropose). unit is 'beat', 'bar' or 's'. Raises UserError (one line) for anything impossible,
    including a result with a segment shorter than MIN_SEGMENT_S or outside the raw.
    """
    if not isinstance(request, dict) or request.get("op") not in _OPS:
        raise UserError(f"op {request.get('op') if isinstance(request, dict) else request!r}: "
                        f"must be one of {', '.join(_OPS)}")
    name = request["op"]
    func, keys = _OPS[name]
    args = {k: v for k, v in request.items() if k != "op"}
    unknown = set(args) - set(keys)
    missing = {k for k, default in keys.items() if default is _REQUIRED} - set(args)
    if unknown or missing:
        raise UserError(f"op {name}: takes {', '.join(keys)}"
                        + (f"; unknown {', '.join(sorted(unknown))}" if unknown else "")
                        + (f"; missing {', '.join(sorted(missing))}" if missing else ""))
    args = {k: args.get(k, d) for k, d in keys.items()}
    if "n" in args and (not isinstance(args["n"], int) or isinstance(args["n"], bool)):
        if not (args["unit"] == "s" and isinstance(args["n"], float) and np.isfinite(args["n"])):
            raise UserError(f"n {args['n']!r}: a whole number of beats or bars")
    if "unit" in args and args["unit"] not in UNITS:
        raise UserError(f"unit {args['unit']!r}: must be one of {', '.join(UNITS)}")
    if name in ("move_cut", "move_edge", "insert"):
        args["grid"] = grid
    return check_result(func(edit, **args), name, raw_duration_s)


def check_result(edit: Edit, name: str, raw_duration_s: float) -> Edit:
    """`edit`, when every segment is at least MIN_SEGMENT_S long and inside the raw; else
    UserError naming the operation."""
    for i, seg in enumerate(edit.segments):
        if seg.duration_s < MIN_SEGMENT_S - 1e-9:
            raise UserError(f"op {name} would leave segment {i} {seg.duration_s:.3f} s long "
                            f"(at least {MIN_SEGMENT_S} s); move it less")
        check_segment(seg, i, where=f"op {name}")
        if seg.raw_start_s is not None and seg.raw_end_s > raw_duration_s + END_TOLERANCE_S:
            raise UserError(f"op {name} would play segment {i} past the raw's end "
                            f"({raw_duration_s:.2f} s)")
    return edit


_REQUIRED = object()
_OPS = {
    "veto": (veto_cut, {"cut": _REQUIRED}),
    "move_cut": (move_cut, {"cut": _REQUIRED, "n": _REQUIRED, "unit": "bar"}),
    "move_edge": (move_edge, {"segment": _REQUIRED, "edge": _REQUIRED, "n": _REQUIRED,
                              "unit": "bar"}),
    "delete": (delete_segment, {"segment": _REQUIRED}),
    "move_segment": (move_segment, {"segment": _REQUIRED, "to": _REQUIRED}),
    "insert": (insert_raw, {"raw_start_s": _REQUIRED, "raw_end_s": _REQUIRED, "at": _REQUIRED,
                            "snap": True}),
}


# ----------------------------------------------------------------------------- re-propose

TARGET_TOLERANCE = 0.01   # re-propose stops when the edit is this share of the target off...
TARGET_TOLERANCE_S = 0.5  # ...or this many seconds, whichever is more
REPROPOSE_TRIES = 4       # proposals asked for at most, each at a corrected length


def span(seg: Segment) -> tuple[float | None, float]:
    """A segment's raw stretch as (raw_start_s, duration_s) to 0.1 ms: what makes it the same
    piece of the raw after a round trip through JSON."""
    return (None if seg.raw_start_s is None else round(seg.raw_start_s, 4), round(seg.duration_s, 4))


def touched_segments(edit: Edit, proposed: set) -> list[bool]:
    """For each segment of `edit`, whether the person changed it: its raw stretch is not one
    an editor proposed (`proposed`, a set of span()s)."""
    return [span(seg) not in proposed for seg in edit.segments]


def merge_proposal(edit: Edit, touched: list[bool], proposal: Edit) -> tuple[Edit, list[tuple]]:
    """The touched segments of `edit`, in their order, with the proposal's segments between
    them: each proposed segment less the raw that a touched segment plays (pieces shorter
    than MIN_SEGMENT_S dropped), placed before the first touched segment that starts later
    in the raw. The first segment has no crossfade; proposed fades stay only at the ends.

    Returns:
        (the merged edit, the span()s of the proposal's pieces in it)
    """
    kept = [s for s, t in zip(edit.segments, touched) if t]
    taken = sorted((s.raw_start_s, s.raw_end_s) for s in kept if s.raw_start_s is not None)
    crossfade = _typical_crossfade(proposal.segments)
    pieces: list[Segment] = []
    for seg in proposal.segments:
        if seg.raw_start_s is None:
            pieces.append(seg)
            continue
        parts = _uncovered(seg.raw_start_s, seg.raw_end_s, taken)
        if seg.effect is not None:  # a piece at another speed is kept whole or not at all
            parts = parts if parts == [(seg.raw_start_s, seg.raw_end_s)] else []
            pieces += [seg] * len(parts)
            continue
        for a, b in parts:
            if b - a >= MIN_SEGMENT_S:
                first, last = a == seg.raw_start_s, b == seg.raw_end_s
                pieces.append(replace(seg, raw_start_s=a, duration_s=b - a,
                                      fade_in_s=seg.fade_in_s if first else 0.0,
                                      fade_out_s=seg.fade_out_s if last else 0.0,
                                      crossfade_s=seg.crossfade_s if first else crossfade))
    merged: list[tuple[Segment, bool]] = []  # (segment, from the proposal)
    j = 0
    for piece in pieces:
        while j < len(kept) and (piece.raw_start_s is None or kept[j].raw_start_s is None
                                 or kept[j].raw_start_s <= piece.raw_start_s):
            merged.append((kept[j], False))
            j += 1
        merged.append((piece, True))
    merged += [(k, False) for k in kept[j:]]
    last = len(merged) - 1
    segs = []
    for i, (seg, proposed) in enumerate(merged):
        if proposed:
            seg = replace(seg, fade_in_s=seg.fade_in_s if i == 0 else 0.0,
                          fade_out_s=seg.fade_out_s if i == last else 0.0)
        segs.append(replace(seg, crossfade_s=0.0) if i == 0 else seg)
    return replace(edit, segments=segs), [span(seg) for seg, proposed in merged if proposed]


def _uncovered(start: float, end: float, taken: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The parts of [start, end) that no (a, b) of `taken` (sorted by a) covers, in order."""
    parts, left = [], start
    for a, b in taken:
        if b <= left:
            continue
        if a >= end:
            break
        if a > left:
            parts.append((left, a))
        left = max(left, b)
    if left < end:
        parts.append((left, end))
    return parts


def target_tolerance(target_s: float) -> float:
    """How far from target_s (s) a re-proposed edit may end and count as on target."""
    return max(TARGET_TOLERANCE_S, TARGET_TOLERANCE * target_s)


def repropose(edit: Edit, touched: list[bool], propose, target_s: float, *,
              tries: int = REPROPOSE_TRIES) -> tuple[Edit, list[tuple]]:
    """Let an editor propose again the segments the person has not touched, so that the
    whole edit lasts about target_s: the touched segments stay as they are, the editor's
    proposal fills the rest (see merge_proposal). The proposal is asked for at a length
    corrected after each try by how far the merged edit is off (the touched segments cover
    some of what it proposes), up to `tries` times; the closest is kept.

    Args:
        propose: callable(target_duration_s) -> Edit of the same raw.

    Returns:
        (the new edit, the span()s of the proposal's pieces in it)
    """
    if not (isinstance(target_s, (int, float)) and not isinstance(target_s, bool)
            and np.isfinite(target_s) and target_s > 0):
        raise UserError(f"target_s {target_s!r}: a length of the edit in seconds")
    fixed_s = sum(s.duration_s for s, t in zip(edit.segments, touched) if t)
    if fixed_s > target_s - MIN_SEGMENT_S:
        raise UserError(f"the segments you changed already last {fixed_s:.1f} s, which leaves "
                        f"nothing of a {target_s:.1f} s target to propose; set a longer target "
                        "or delete some of them")
    ask = target_s - fixed_s
    best = None
    tolerance = target_tolerance(target_s)
    for _ in range(tries):
        merged, pieces = merge_proposal(edit, touched, propose(ask))
        off = target_s - merged.duration_s
        if best is None or abs(off) < abs(best[2]):
            best = (merged, pieces, off)
        if abs(off) <= tolerance:
            break
        ask = max(MIN_SEGMENT_S, ask + off)
    return best[0], best[1]


# ----------------------------------------------------------------------------- state + journal

class EditState:
    """The segments being corrected, their history (undo/redo) and its journal on disk.

    History is a list of edits with a cursor; an operation drops what lies after the cursor
    (the undone future) and appends its result. Each change is one JSON line appended to the
    journal and fsynced before the call returns; opening a journal replays it, so the state
    survives a closed tab or a killed server. A last line cut short by a crash is ignored.

    Journal lines: {"kind": "start", "version", "edit"}, {"kind": "change", "op", "edit"},
    {"kind": "undo"}, {"kind": "redo"}, {"kind": "save", "version"}; each with "time".
    """

    def __init__(self, journal: Path, base: Edit, *, version: int, base_id: str = ""):
        self.journal = Path(journal)
        self.base_id = base_id     # what the base was loaded from (a journal of another is refused)
        self.history: list[Edit] = []
        self.labels: list[str] = []
        self.ops: list[dict | None] = []  # the operation that made each history entry
        self.cursor = -1
        self.saved_at = 0          # history index of the last saved (or loaded) state
        self.version = version     # the newest version on disk of this edit
        if self.journal.is_file() and self.journal.stat().st_size:
            self._replay()
        else:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self.history, self.labels, self.ops = [base], ["version %d" % version], [None]
            self.cursor = 0
            self._append({"kind": "start", "version": version, "base_id": base_id,
                          "edit": base.to_json()})

    @property
    def edit(self) -> Edit:
        return self.history[self.cursor]

    @property
    def dirty(self) -> bool:
        return self.cursor != self.saved_at

    @property
    def can_undo(self) -> bool:
        return self.cursor > 0

    @property
    def can_redo(self) -> bool:
        return self.cursor < len(self.history) - 1

    def change(self, edit: Edit, label: str, op: dict) -> None:
        self._append({"kind": "change", "op": op, "label": label, "edit": edit.to_json()})
        self._push(edit, label, op)

    def undo(self) -> None:
        if not self.can_undo:
            raise UserError("nothing to undo")
        self._append({"kind": "undo"})
        self.cursor -= 1

    def redo(self) -> None:
        if not self.can_redo:
            raise UserError("nothing to redo")
        self._append({"kind": "redo"})
        self.cursor += 1

    def saved(self, version: int) -> None:
        self._append({"kind": "save", "version": version})
        self.saved_at, self.version = self.cursor, version

    def proposed_spans(self) -> set:
        """The span()s of the segments an editor proposed: those of the version the journal
        started from, and the pieces of each re-proposal up to the cursor."""
        spans = {span(seg) for seg in self.history[0].segments}
        for op in self.ops[1:self.cursor + 1]:
            if op is not None and op.get("op") == "repropose":
                spans |= {(a, b) for a, b in op.get("proposed", [])}
        return spans

    def _push(self, edit: Edit, label: str, op: dict | None) -> None:
        del self.history[self.cursor + 1:], self.labels[self.cursor + 1:], self.ops[self.cursor + 1:]
        if self.saved_at > self.cursor:
            self.saved_at = -1  # the saved state was undone and then replaced
        self.history.append(edit)
        self.labels.append(label)
        self.ops.append(op)
        self.cursor += 1

    def _append(self, record: dict) -> None:
        record["time"] = round(time.time(), 3)
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.journal, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def _replay(self) -> None:
        lines = self.journal.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    log.warning("%s: its last line was cut short (a killed server); dropped it",
                                self.journal)
                    break
                raise UserError(f"{self.journal}: line {number} is not JSON; move the file away "
                                "to start over from the newest version") from None
            kind = record.get("kind")
            where = f"{self.journal}: line {number}"
            if kind == "start" and not self.history:
                if self.base_id and record.get("base_id", self.base_id) != self.base_id:
                    raise UserError(f"{self.journal}: was made for another version of this edit "
                                    "(its segment list has changed since); move the journal away "
                                    "to start over from the newest version")
                self.history = [Edit.from_json(record["edit"], where=where)]
                self.labels, self.ops, self.cursor = [f"version {record['version']}"], [None], 0
                self.saved_at, self.version = 0, int(record["version"])
            elif kind == "change" and self.history:
                self._push(Edit.from_json(record["edit"], where=where), record.get("label", ""),
                           record.get("op"))
            elif kind == "undo" and self.can_undo:
                self.cursor -= 1
            elif kind == "redo" and self.can_redo:
                self.cursor += 1
            elif kind == "save" and self.history:
                self.saved_at, self.version = self.cursor, int(record["version"])
            else:
                raise UserError(f"{where}: unexpected {kind!r} record; move the file away to "
                                "start over from the newest version")
        if not self.history:
            raise UserError(f"{self.journal}: no start record; move the file away to start over")


def describe(request: dict) -> str:
    """A short label of an operation, for the page's history."""
    op = request.get("op")
    if op == "veto":
        return f"veto cut {request['cut']}"
    if op == "move_cut":
        return f"move cut {request['cut']} by {request['n']:+g} {request.get('unit', 'bar')}"
    if op == "move_edge":
        return (f"move segment {request['segment'] + 1} {request['edge']} by {request['n']:+g} "
                f"{request.get('unit', 'bar')}")
    if op == "delete":
        return f"delete segment {request['segment'] + 1}"
    if op == "move_segment":
        return f"move segment {request['segment'] + 1} to {request['to'] + 1}"
    if op == "insert":
        return f"add raw {request['raw_start_s']:.1f}-{request['raw_end_s']:.1f} s at {request['at'] + 1}"
    if op == "repropose":
        editor = "the model" if request.get("editor") == "model" else "the rule-based editor"
        return f"re-propose the untouched parts to {request['target_s']:.1f} s by {editor}"
    return str(op)


# ----------------------------------------------------------------------------- corrections as data

def correction_name(layout: Layout, stem: str) -> str:
    """The training pair a correction of edit `stem` is saved as: the stem (less a trailing
    '_edit'), or that + '_correction' when a pair of that name is not a correction."""
    name = stem[: -len("_edit")] if stem.endswith("_edit") and len(stem) > 5 else stem
    info = layout.pointer_file(name, "info.json")
    taken = any(layout.input_dir.glob(f"{glob_escape(name)}_raw.*")) or info.exists()
    if taken and not (info.is_file() and read_json_object(info, fix="fix or remove it")
                      .get("correction") is True):
        name += "_correction"
    return name


def write_correction(layout: Layout, name: str, *, raw: Path, edit_audio: Path, edit: Edit,
                     version: int, journal: Path,
                     params: FeatureParams = DEFAULT_PARAMS) -> dict[str, Path]:
    """Write a corrected edit into the training layout as the pair `name`.

    input/{name}_raw.ext links to the raw (a symlink: the raw is not copied);
    desired_output/{name}_edit.ext is the rendered version (a hard link, or a copy across
    file systems); pointer_sequences/{name}_pointers.npy, _ops.npy and _info.json come
    straight from the segments (no alignment), the info marked "correction": true. A later
    correction of the same edit replaces the pair's edit and pointers (they are outputs of
    this tool, never the user's own files).

    Returns:
        {kind: path} of the files written.
    """
    raw = raw.resolve()
    link = layout.input_dir / f"{name}_raw{raw.suffix.lower()}"
    layout.input_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() != raw:
            raise UserError(f"{link}: already there and not a link to {raw}; rename one of them")
    else:
        os.symlink(raw, link)
    target = layout.output_dir / f"{name}_edit{edit_audio.suffix.lower()}"

    def place(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(edit_audio, tmp)
        except OSError:
            shutil.copyfile(edit_audio, tmp)
    atomic_write_bytes(target, place)

    info = audio.probe(raw)
    raw_frames = params.n_frames(int(round(info.duration_s * params.sr)))
    pointers = segments_to_pointers(edit, params, raw_frames=raw_frames)
    fps = params.frames_per_s
    ops = ops_from_pointers(pointers, fade_in_frames=int(round(edit.segments[0].fade_in_s * fps)),
                            fade_out_frames=int(round(edit.segments[-1].fade_out_s * fps)))
    paths = {"raw": link, "edit": target}
    for what, array in (("pointers.npy", pointers.astype(np.int64)), ("ops.npy", ops.astype(np.int8))):
        paths[what] = atomic_write_bytes(layout.pointer_file(name, what),
                                         lambda tmp, a=array: _save_npy(tmp, a))
    record = {"editorbot_version": __version__, "correction": True,
              "raw": {"path": str(raw), "sr": info.sr, "channels": info.channels,
                      "duration_s": round(info.duration_s, 4)},
              "edit": {"path": str(edit_audio.resolve()), "version": version,
                       "journal": str(journal.resolve())},
              "sample_rate": params.sr, "hop_length": params.hop_length,
              "feature_params": params.as_dict(), "raw_frames": int(raw_frames),
              "edit_frames": int(len(pointers)),
              "aligned_fraction": round(float((pointers >= 0).mean()), 4) if len(pointers) else 0.0,
              "not_in_raw_frames": int((pointers < 0).sum()),
              "segments": edit.to_json()["segments"], "n_segments": len(edit.segments),
              "confidence": {"mean": 1.0}, "warnings": []}
    paths["info.json"] = atomic_write_text(layout.pointer_file(name, "info.json"),
                                           json.dumps(record, indent=1))
    return paths


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a path not ending in .npy would get one appended
        np.save(fh, array)


# ----------------------------------------------------------------------------- the session

def _render_record(segments: Path) -> dict | None:
    """The "render" record of a segment list (what its render did to the level), if any."""
    try:
        record = json.loads(segments.read_text(encoding="utf-8")).get("render")
    except (OSError, ValueError, AttributeError):
        return None
    return record if isinstance(record, dict) else None


class ReviewSession:
    """One edit under correction: its files, raw, beat grid, state, and Save.

    Args:
        path: OUT.wav (any version) or the folder `editorbot edit` wrote.
        raw: the raw recording (default: the one the segment list names).
        data_dir: the training layout Save writes corrections into (None: none written).
        cache_dir: the layout's cache, where Save also caches the raw's mel
            (features/{pair}_raw.npz, as `editorbot features` would), so that the
            correction can be trained on at once; and the raw's beat grid (grid/).
        find_beats: start finding the raw's beat grid in a thread (False: no grid until
            `load_grid()` is called).
        background_render: render each new state of the edit in a thread as soon as it is
            made (the edit lane plays it; Save publishes it); False: render when asked.
        checkpoint: a trained model that may re-propose the untouched parts (op repropose
            with editor 'model'); the rule-based editor always may.
        params: the analysis grid of the beat grid and of the correction pairs Save writes.
    """

    def __init__(self, path: str | os.PathLike, *, raw: str | os.PathLike | None = None,
                 data_dir: str | os.PathLike | None = "training_data",
                 cache_dir: str | os.PathLike = "cache", find_beats: bool = True,
                 background_render: bool = True, checkpoint: str | os.PathLike | None = None,
                 params: FeatureParams = DEFAULT_PARAMS):
        self.files = find_edit(path)
        self.params = params
        self.cache_dir = Path(cache_dir)
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise UserError(f"--checkpoint {checkpoint}: no such file; pass a model's best.pt")
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.files.state_dir.mkdir(exist_ok=True)
        self._lock_fh = _take_lock(self.files.state_dir / "lock")
        for left in self.files.state_dir.glob("render_*"):
            left.unlink()  # renders of a session that ended before publishing them
        try:
            latest = newest = self.files.versions()[-1]
            base = Edit.load(self.files.paths(newest)["segments"])
            journal = self.files.state_dir / "journal.jsonl"
            if journal.is_file() and journal.stat().st_size:
                # The journal's base is the version it started from: that file must not have
                # been replaced since (an `edit --overwrite`, say).
                try:
                    start = json.loads(journal.read_text(encoding="utf-8").split("\n", 1)[0])
                except json.JSONDecodeError:
                    start = {}  # EditState says what is wrong with it
                if isinstance(start, dict) and isinstance(start.get("version"), int):
                    latest = start["version"]
            self.raw = _find_raw(base, self.files.folder, raw)
            self.raw_info = audio.check_audio(self.raw, need="to review")
            segments_file = self.files.paths(latest)["segments"]
            base_id = (hashlib.sha256(segments_file.read_bytes()).hexdigest()
                       if segments_file.is_file() else "missing")
            self.state = EditState(journal, base, version=latest, base_id=base_id)
            # What the latest version's render did to the level: the next render uses it
            # again, in one pass (editorbot.render's `level`).
            self.level = _render_record(self.files.paths(newest)["segments"])
            self.layout = Layout(data_dir, cache_dir) if data_dir is not None else None
            self.pair_name = (correction_name(self.layout, self.files.stem)
                              if self.layout is not None else None)
            self.peaks = raw_peaks(self.raw, self.files.state_dir / "peaks.npz")
        except BaseException:
            self.close()
            raise
        self.lock = threading.RLock()
        self._rendered_cond = threading.Condition(self.lock)
        self.grid: BeatGrid | None = None
        self.grid_error: str | None = None
        self.page_threads: list[threading.Thread] = []
        self.mel_thread: threading.Thread | None = None  # caches the raw's mel at the first Save
        self.mel_error: str | None = None
        self.last_save: dict | None = None
        self._state_id = 0
        # The newest render of the current edit: (key, path, RenderReport), or a failure.
        self._rendered: tuple[str, Path, object] | None = None
        self._render_failed: tuple[str, str] | None = None
        self._closing = False
        self._renderer = None
        if background_render:
            self._renderer = threading.Thread(target=self._render_loop, daemon=True,
                                              name="background render")
            self._renderer.start()
        if find_beats:
            threading.Thread(target=self.load_grid, daemon=True, name="beat grid").start()

    def load_grid(self) -> None:
        try:
            self.grid = beat_grid(self.raw, self.params, self.cache_dir)
        except UserError as err:
            self.grid_error = str(err)
            self.grid = NO_GRID
            log.warning("%s", err)

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            with self._rendered_cond:
                self._closing = True
                self._rendered_cond.notify_all()
            self._renderer.join()
            self._renderer = None
        for thread in getattr(self, "page_threads", []) + [getattr(self, "mel_thread", None)]:
            if thread is not None:
                thread.join()
        if getattr(self, "_lock_fh", None) is not None:
            self._lock_fh.close()
            self._lock_fh = None

    # The page's operations ------------------------------------------------------------

    def apply(self, request: dict) -> dict:
        if isinstance(request, dict) and request.get("op") == "repropose":
            return self.repropose(request)
        with self.lock:
            op = request.get("op") if isinstance(request, dict) else None
            needs_grid = ((op in ("move_cut", "move_edge") and request.get("unit", "bar") != "s")
                          or (op == "insert" and request.get("snap", True) is not False))
            if needs_grid and self.grid is None:
                raise UserError("the raw's beat grid is still being found; try again in a moment")
            edit = apply_op(self.state.edit, request, self.grid or NO_GRID,
                            self.raw_info.duration_s)
            self.state.change(edit, describe(request), request)
            return self._changed()

    def repropose(self, request: dict) -> dict:
        """Op repropose {target_s, editor}: the segments not yet touched are proposed again
        by the rule-based editor (editor 'rule', the default) or the session's model
        ('model') so that the edit lasts about target_s (see `repropose`). The editor runs
        outside the lock; a change made meanwhile wins (UserError: try again)."""
        keys = {"op", "target_s", "editor"}
        if set(request) - keys or "target_s" not in request:
            raise UserError("op repropose: takes target_s and editor ('rule' or 'model')")
        editor = request.get("editor", "rule")
        if editor not in ("rule", "model"):
            raise UserError(f"editor {editor!r}: must be 'rule' or 'model'")
        if editor == "model" and self.checkpoint is None:
            raise UserError("no model to re-propose with: start `editorbot review --checkpoint "
                            "MODEL.pt`, or re-propose with the rule-based editor")
        with self.lock:
            edit, sid = self.state.edit, self._state_id
            touched = touched_segments(edit, self.state.proposed_spans())
        new, spans = repropose(edit, touched, self._proposer(editor), request["target_s"])
        check_result(new, "repropose", self.raw_info.duration_s)
        with self.lock:
            if self._state_id != sid:
                raise UserError("the edit changed while the editor was proposing; try again")
            record = {"op": "repropose", "target_s": request["target_s"], "editor": editor,
                      "proposed": [list(x) for x in spans]}
            self.state.change(new, describe(record), record)
            snapshot = self._changed()
        target = float(request["target_s"])
        if abs(new.duration_s - target) > target_tolerance(target):
            snapshot["note"] = (f"the edit lasts {new.duration_s:.1f} s, not the {target:.1f} s "
                                "asked: the editor found no more (or no less) to keep")
        return snapshot

    def _proposer(self, editor: str):
        """callable(target_duration_s) -> Edit of the raw by the rule-based editor or the
        session's model (editorbot.editors.propose, as `editorbot edit` asks them)."""
        from .editors import propose

        checkpoint = self.checkpoint if editor == "model" else None
        return lambda target_s: propose(self.raw, checkpoint=checkpoint, target_duration_s=target_s)

    def undo(self) -> dict:
        with self.lock:
            self.state.undo()
            return self._changed()

    def redo(self) -> dict:
        with self.lock:
            self.state.redo()
            return self._changed()

    def _changed(self) -> dict:
        self._state_id += 1
        self._rendered_cond.notify_all()
        return self.snapshot()

    def snapshot(self) -> dict:
        """What the page shows: the current segments, cuts, versions, grid and history."""
        with self.lock:
            st = self.state
            edit = st.edit
            starts = edit.edit_starts_s()
            touched = touched_segments(edit, st.proposed_spans())
            segs = [{"index": i, "raw_start_s": s.raw_start_s, "raw_end_s": s.raw_end_s,
                     "edit_start_s": float(starts[i]), "duration_s": s.duration_s,
                     "gain_db": s.gain_db, "fade_in_s": s.fade_in_s, "fade_out_s": s.fade_out_s,
                     "crossfade_s": s.crossfade_s, "touched": touched[i]}
                    for i, s in enumerate(edit.segments)]
            grid = self.grid
            version_audio = self.files.paths(st.version)["audio"]
            return {
                "state_id": self._state_id, "dirty": st.dirty, "can_undo": st.can_undo,
                "can_redo": st.can_redo, "version": st.version, "versions": self.files.versions(),
                "edit_audio": (f"/files/{version_audio.name}" if not st.dirty
                               else f"/api/preview?state={self._state_id}"),
                "rendered": self._rendered is not None and self._rendered[0] == self._key(),
                "duration_s": edit.duration_s, "segments": segs,
                "history": st.labels[:st.cursor + 1][-8:],
                "raw": {"name": self.raw.name, "duration_s": self.raw_info.duration_s,
                        "sr": self.raw_info.sr, "channels": self.raw_info.channels},
                "peaks_per_s": PEAKS_PER_S,
                "grid": {"ready": grid is not None, "error": self.grid_error,
                         "tempo_bpm": None if grid is None else grid.tempo_bpm,
                         "beats": 0 if grid is None else len(grid.beats_s),
                         "bars": 0 if grid is None else len(grid.downbeats_s)},
                "edit_name": self.files.stem,
                "editors": ["rule"] + (["model"] if self.checkpoint is not None else []),
                "learn": None if self.layout is None else {
                    "data_dir": str(self.layout.data_dir), "name": self.pair_name,
                    "mel": self._mel_state()},
                "last_save": self.last_save,
                "page_writing": any(t.is_alive() for t in self.page_threads),
            }

    # Audio for the page ---------------------------------------------------------------

    def clip(self, cut: int, *, without: bool = False, clip_s: float = CLIP_S) -> bytes:
        """WAV bytes of clip_s across cut `cut` as the renderer joins it, or (without) the
        raw running on through the same moment, as if the cut were not there."""
        from .render import render_array

        with self.lock:
            segs = self.state.edit.segments
        k = _check_cut(list(segs), cut)
        a, b = segs[k - 1], segs[k]
        half = clip_s / 2
        da, db = min(half, a.duration_s), min(half, b.duration_s)
        if without:
            if a.raw_start_s is None:
                raise UserError(f"segment {k - 1} is not in the raw; nothing to play without cut {k}")
            end = min(a.raw_end_s + db, self.raw_info.duration_s)
            pieces = [replace(a, raw_start_s=a.raw_end_s - da, duration_s=end - a.raw_end_s + da,
                              fade_in_s=0.0, fade_out_s=0.0, crossfade_s=0.0)]
        else:
            pieces = [replace(a, raw_start_s=None if a.raw_start_s is None else a.raw_end_s - da,
                              duration_s=da, fade_in_s=0.0, fade_out_s=0.0, crossfade_s=0.0),
                      replace(b, duration_s=db, fade_in_s=0.0, fade_out_s=0.0)]
        x, sr = render_array(self.raw, Edit(pieces, str(self.raw), self.raw_info.duration_s))
        buf = io.BytesIO()
        sf.write(buf, np.clip(x, -1, 1), sr, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    def _key(self) -> str:
        """What a render depends on: the current segments."""
        return json.dumps(self.state.edit.to_json()["segments"], sort_keys=True)

    def _render_loop(self) -> None:
        """Render the newest unsaved state whenever it has no render yet; a state that
        changes during a render is rendered again after it (intermediate states are skipped;
        a saved state has its version's audio)."""
        while True:
            with self._rendered_cond:
                while not self._closing and (not self.state.dirty
                                             or self._key() in self._done_keys()):
                    self._rendered_cond.wait()
                if self._closing:
                    return
                key, edit, sid = self._key(), self.state.edit, self._state_id
            self._render_state(key, edit, sid)

    def _done_keys(self) -> tuple:
        return tuple(x[0] for x in (self._rendered, self._render_failed) if x is not None)

    def _render_state(self, key: str, edit: Edit, sid: int) -> None:
        """Render `edit` into S_corrections/render_{sid}.ext; keep it when it is still the
        current edit, else drop it."""
        from .render import render

        path = self.files.state_dir / f"render_{sid}{self.files.suffix}"
        edit = replace(edit, raw_path=str(self.raw), raw_duration_s=self.raw_info.duration_s)
        try:
            report = render(self.raw, edit, path, level=self.level)
        except UserError as err:
            with self._rendered_cond:
                self._render_failed = (key, str(err))
                self._rendered_cond.notify_all()
            return
        with self._rendered_cond:
            self.level = report.level_json()
            old = self._rendered
            if key == self._key():
                self._rendered = (key, path, report)
                if old is not None and old[1] != path:
                    old[1].unlink(missing_ok=True)
            else:
                path.unlink(missing_ok=True)
            self._rendered_cond.notify_all()

    def current_render(self) -> tuple[Path, object]:
        """(path, RenderReport) of the current edit, rendered: waits for the background
        render, or renders now without one. Raises UserError if the edit changes meanwhile
        or cannot be rendered."""
        with self._rendered_cond:
            key = self._key()
            while self._rendered is None or self._rendered[0] != key:
                if self._render_failed is not None and self._render_failed[0] == key:
                    raise UserError(self._render_failed[1])
                if self._renderer is None or not self.state.dirty:
                    self._render_state(key, self.state.edit, self._state_id)
                    continue
                self._rendered_cond.wait()
                if self._key() != key:
                    raise UserError("the edit changed while it was being rendered; try again")
            return self._rendered[1], self._rendered[2]

    def preview(self) -> Path:
        """The current (unsaved) edit, rendered whole from the raw."""
        return self.current_render()[0]

    # Save ------------------------------------------------------------------------------

    def save(self, *, wait: bool = False) -> dict:
        """Render the current edit from the raw as a new version, with its segment list,
        timelines and (in a thread) its static review page; write the training pair and
        (in a thread, once a session) cache the raw's mel for it.

        Args:
            wait: return only when the static page and the raw's mel are written too.

        Returns:
            {"version", "paths": {kind: str}, "duration_s", "render_s", "pair": {kind: str}}
        """
        from .export import export_all
        from .outputs import check_outputs
        from .review import write_review_page

        with self.lock:
            started = time.perf_counter()
            rendered, report = self.current_render()
            n = self.files.next_version()
            paths = self.files.paths(n)
            check_outputs(paths.values(), inputs={"the raw recording": self.raw}, overwrite=False)
            _publish(rendered, paths["audio"])
            report.out_path = paths["audio"]
            export_all(report.edit, paths["audio"].with_suffix(""), sr=report.sr,
                       channels=report.channels, render=report.level_json())
            render_s = time.perf_counter() - started
            pair = {}
            if self.layout is not None:
                pair = write_correction(self.layout, self.pair_name, raw=self.raw,
                                        edit_audio=paths["audio"], edit=report.edit, version=n,
                                        journal=self.state.journal, params=self.params)
                self._cache_raw_mel(pair["raw"])
            previous = self.state.version
            self.state.saved(n)
            self._state_id += 1
            self._rendered = None  # published: the next change renders anew
            rendered.unlink(missing_ok=True)
            notes = [f"version {n}: corrected in `editorbot review` from version {previous} "
                     f"({'; '.join(self.state.labels[1:self.state.cursor + 1][-12:]) or 'no changes'})"]
            thread = threading.Thread(
                target=write_review_page, name="review page", daemon=False,
                args=(paths["review"],), kwargs=dict(raw_path=self.raw,
                                                    edit_audio_path=paths["audio"],
                                                    edit=report.edit, render_report=report,
                                                    notes=notes))
            thread.start()
            self.page_threads = [t for t in self.page_threads if t.is_alive()] + [thread]
            self.last_save = {"version": n, "duration_s": report.duration_s,
                              "level": report.level_line(),
                              "render_s": round(report.seconds, 3),
                              "render_and_timelines_s": round(render_s, 3),
                              "saved_s": round(time.perf_counter() - started, 3),
                              "paths": {k: str(p) for k, p in paths.items()},
                              "pair": {k: str(p) for k, p in pair.items()}}
        if wait:
            thread.join()
            if self.mel_thread is not None:
                self.mel_thread.join()
        return self.last_save

    def _cache_raw_mel(self, raw_link: Path) -> None:
        """Cache the mel of the pair's raw where the trainers read it
        (cache/features/{pair}_raw.npz, made from input/{pair}_raw.ext as `editorbot
        features` makes it), in a thread; once a session, as the raw does not change."""
        from .precache import mel_for

        if self.mel_thread is not None:
            return

        def work() -> None:
            try:
                mel_for(raw_link, self.layout.features(self.pair_name, "raw"), self.params)
            except UserError as err:
                self.mel_error = str(err)
                log.warning("%s; the correction needs `editorbot features %s` before training",
                            err, self.pair_name)
        self.mel_thread = threading.Thread(target=work, name="raw mel", daemon=False)
        self.mel_thread.start()

    def _mel_state(self) -> str | None:
        """None before the first Save, then 'caching', 'cached' or the error."""
        if self.mel_thread is None:
            return None
        if self.mel_thread.is_alive():
            return "caching"
        return self.mel_error or "cached"


def _publish(rendered: Path, target: Path) -> None:
    """Give a finished render its version's name: a hard link (the render stays where it
    is until dropped), or a copy across file systems; atomically, never over a file."""
    def place(tmp: Path) -> None:
        tmp.unlink()
        try:
            os.link(rendered, tmp)
        except OSError:
            shutil.copyfile(rendered, tmp)
    if target.exists():
        raise UserError(f"{target}: already exists; versions are never overwritten")
    atomic_write_bytes(target, place)


def _find_raw(edit: Edit, folder: Path, raw: str | os.PathLike | None) -> Path:
    if raw is not None:
        path = Path(raw)
        if not path.is_file():
            raise UserError(f"{path}: no such raw recording; pass --raw with the recording "
                            "the edit was cut from")
        return path
    named = edit.raw_path
    if not named:
        raise UserError(f"{folder}: the segment list names no raw recording; pass --raw RAW")
    for candidate in (Path(named), folder / named, folder / Path(named).name):
        if candidate.is_file():
            return candidate
    raise UserError(f"{named}: the edit's raw recording is not there any more; pass --raw RAW")


def _take_lock(path: Path):
    """An exclusive lock on `path` for this process's lifetime (the kernel drops it when the
    process dies); UserError when another review of the same edit holds it."""
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        who = fh.read().strip() or "another process"
        fh.close()
        raise UserError(f"{path.parent}: this edit is already being reviewed ({who}); close that "
                        "review first (one writer at a time)") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}\n")
    fh.flush()
    return fh


# ----------------------------------------------------------------------------- HTTP server

class ReviewServer(ThreadingHTTPServer):
    """The page's server: 127.0.0.1 only, a free port, a token on every request.

    It serves the page and its scripts, files inside the edit's folder (no '..', no
    symlink out of it), the raw recording (nothing else outside the folder), and the JSON
    API; audio answers HTTP range requests. Writes happen only through ReviewSession.
    """

    daemon_threads = True

    def __init__(self, session: ReviewSession, *, port: int = 0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.session = session
        self.token = secrets.token_urlsafe(24)
        self.folder = session.files.folder.resolve()

    def handle_error(self, request, client_address) -> None:
        import sys
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return  # a player that stopped reading (seeking, a new source): normal
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/?token={self.token}"


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    protocol_version = "HTTP/1.1"
    server_version = f"editorbot/{__version__}"

    def log_message(self, fmt: str, *args) -> None:
        log.debug("review: " + fmt, *args)

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- checks and routing

    def _handle(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if not self._allowed(query):
                return self._text(HTTPStatus.FORBIDDEN, "forbidden: this address needs the token "
                                  "that `editorbot review` printed")
            path = unquote(url.path)
            if "\x00" in path or "\\" in path or any(p in ("..", ".") for p in path.split("/")):
                return self._text(HTTPStatus.FORBIDDEN, "forbidden: no '..' in paths")
            if method == "POST":
                return self._post(path)
            return self._get(path, query, head=method == "HEAD")
        except UserError as err:
            return self._json({"error": str(err)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as err:  # a bug: say so on the page, and in the server's log
            log.exception("review: %s %s failed", method, self.path.split("?")[0])
            return self._json({"error": f"internal error ({type(err).__name__}: {err}); see the "
                                        "server's output"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _allowed(self, query: dict) -> bool:
        port = self.server.server_address[1]
        if self.headers.get("Host") not in (f"127.0.0.1:{port}", f"localhost:{port}"):
            return False  # a page elsewhere resolving its own name to 127.0.0.1
        given = self.headers.get("X-Editorbot-Token") or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), self.server.token.encode())

    def _get(self, path: str, query: dict, *, head: bool) -> None:
        session = self.server.session
        if path == "/":
            page = (WEB / "review.html").read_text().replace("{{TOKEN}}", self.server.token)
            return self._bytes(page.encode(), "text/html; charset=utf-8", head=head, extra={
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                "media-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'"})
        if path.startswith("/static/") and path[len("/static/"):] in STATIC_FILES:
            return self._file(WEB / path[len("/static/"):], head=head)
        if path == "/raw":
            return self._file(session.raw, head=head)
        if path.startswith("/files/"):
            return self._folder_file(path[len("/files/"):], head=head)
        if path == "/api/state":
            return self._json(session.snapshot())
        if path == "/api/peaks":
            return self._bytes(session.peaks.tobytes(), "application/octet-stream", head=head)
        if path == "/api/grid":
            grid = session.grid or NO_GRID
            return self._json({"beats_s": grid.beats_s.round(4).tolist(),
                               "downbeats_s": grid.downbeats_s.round(4).tolist()})
        if path == "/api/clip.wav":
            cut = _int(query, "cut")
            data = session.clip(cut, without=(query.get("without") or ["0"])[0] == "1")
            return self._bytes(data, "audio/wav", head=head)
        if path == "/api/preview":
            return self._file(session.preview(), head=head)
        return self._text(HTTPStatus.NOT_FOUND, "not found")

    def _post(self, path: str) -> None:
        session = self.server.session
        if self.headers.get_content_type() != "application/json":
            return self._text(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            return self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            raise UserError("the request body is not JSON") from None
        if path == "/api/op":
            return self._json(session.apply(body))
        if path == "/api/undo":
            return self._json(session.undo())
        if path == "/api/redo":
            return self._json(session.redo())
        if path == "/api/save":
            session.save()
            return self._json(session.snapshot())
        return self._text(HTTPStatus.NOT_FOUND, "not found")

    def _folder_file(self, rel: str, *, head: bool) -> None:
        folder = self.server.folder
        parts = PurePosixPath(rel).parts
        if not parts or rel.startswith("/"):
            return self._text(HTTPStatus.FORBIDDEN, "forbidden")
        target = (folder / Path(*parts)).resolve()
        if not target.is_relative_to(folder):
            return self._text(HTTPStatus.FORBIDDEN, "forbidden: outside the edit's folder")
        if target.is_relative_to(self.server.session.files.state_dir.resolve()):
            return self._text(HTTPStatus.FORBIDDEN, "forbidden: the session's own files")
        if not target.is_file():
            return self._text(HTTPStatus.NOT_FOUND, "not found")
        return self._file(target, head=head)

    # -- responses

    def _file(self, path: Path, *, head: bool) -> None:
        """A file, whole or (with a Range header) the asked byte range."""
        size = path.stat().st_size
        ctype = _content_type(path)
        start, end = 0, size - 1
        status = HTTPStatus.OK
        wanted = self.headers.get("Range")
        if wanted:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if not m or (not m[1] and not m[2]):
                return self._range_error(size)
            if m[1]:
                start = int(m[1])
                end = min(int(m[2]), size - 1) if m[2] else size - 1
            else:
                start = max(0, size - int(m[2]))
            if start > end or start >= size:
                return self._range_error(size)
            status = HTTPStatus.PARTIAL_CONTENT
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self._common_headers()
        self.end_headers()
        if head:
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(left, 1 << 16))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _range_error(self, size: int) -> None:
        self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", "0")
        self._common_headers()
        self.end_headers()

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")

    def _bytes(self, data: bytes, ctype: str, *, status: HTTPStatus = HTTPStatus.OK,
               head: bool = False, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self._common_headers()
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _json(self, obj, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._bytes(json.dumps(obj).encode(), "application/json", status=status)

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._bytes((text + "\n").encode(), "text/plain; charset=utf-8", status=status)


def _int(query: dict, key: str) -> int:
    try:
        return int((query.get(key) or [""])[0])
    except ValueError:
        raise UserError(f"{key}: expected a whole number") from None


def _content_type(path: Path) -> str:
    known = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg",
             ".js": "text/javascript", ".css": "text/css", ".otio": "application/json",
             ".edl": "text/plain", ".html": "text/html"}
    return known.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or \
        "application/octet-stream"
