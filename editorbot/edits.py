"""The edit model: an edit is a list of segments of the raw recording played in order.

Segments butt-join in edit time: segment k plays edit time [edit_start_k, edit_start_k +
duration_s) from raw time raw_start_s onward. A crossfade of crossfade_s is centred on the
seam before segment k, borrowing crossfade_s / 2 of raw audio from each side, so the edit
is exactly sum(duration_s) long and every edit instant maps to one raw instant. This is
what makes segments and frame pointers convert into each other without loss.

Pointers (the data contract): int64 (edit_frames,), the raw analysis frame copied at each
edit frame, -1 where the edit's audio is not in the raw. Ops: int8 (edit_frames,), see Op.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from enum import IntEnum
from pathlib import Path

import numpy as np

from . import __version__
from .cache import atomic_write_text
from .errors import UserError
from .features import DEFAULT_PARAMS, FeatureParams


class Op(IntEnum):
    """What happens at one edit frame. When several apply, the first in this list wins:
    NOT_IN_RAW, STOP, LOOP_START, SKIP, LOOP_END, FADE_IN, FADE_OUT, COPY.

    COPY        the frame continues the previous one (pointer = previous + 1), or opens the edit
    LOOP_START  first frame after a jump to raw audio the edit has already played (loop, repeat)
    LOOP_END    last frame before a LOOP_START jump
    SKIP        first frame after any other jump: a cut forward, or a reorder to unplayed audio
    FADE_IN     inside the edit's fade-in
    FADE_OUT    inside the edit's fade-out
    STOP        the edit's last frame
    NOT_IN_RAW  the edit's audio here is not in the raw (pointer -1)
    """

    COPY = 0
    LOOP_START = 1
    LOOP_END = 2
    SKIP = 3
    FADE_IN = 4
    FADE_OUT = 5
    STOP = 6
    NOT_IN_RAW = 7


@dataclass
class Segment:
    """One piece of the raw recording, in seconds of raw or edit time.

    raw_start_s: where the piece starts in the raw; None for audio that is not in the raw
        (rendered as silence; it comes from alignment of edits with foreign material).
    duration_s: its length, the same in raw and edit time.
    gain_db: gain applied to the piece.
    fade_in_s, fade_out_s: fades inside the piece (at its start and end).
    crossfade_s: equal-power crossfade centred on the seam before this piece (0 = hard cut,
        which the renderer still smooths over a few ms).
    effect: optional {"name": ..., "params": {...}} applied to the piece.
    confidence: how sure alignment or a model is of this piece, 0..1 (None: not given).
    """

    raw_start_s: float | None
    duration_s: float
    gain_db: float = 0.0
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    crossfade_s: float = 0.0
    effect: dict | None = None
    confidence: float | None = None

    @property
    def raw_end_s(self) -> float | None:
        return None if self.raw_start_s is None else self.raw_start_s + self.duration_s * raw_rate(self)


@dataclass
class Edit:
    """An ordered list of segments, plus what they were cut from.

    loudness_lufs: the integrated loudness the editor sets the whole edit to (the render
        brings it there with one gain, never past full scale); None: the level the
        segments' gains give.
    """

    segments: list[Segment] = field(default_factory=list)
    raw_path: str | None = None
    raw_duration_s: float | None = None
    loudness_lufs: float | None = None

    @property
    def duration_s(self) -> float:
        return float(sum(s.duration_s for s in self.segments))

    def edit_starts_s(self) -> np.ndarray:
        """Edit time at which each segment starts, float64 (n_segments,)."""
        d = np.array([s.duration_s for s in self.segments], np.float64)
        return np.concatenate([[0.0], np.cumsum(d)[:-1]]) if len(d) else d

    def to_json(self) -> dict:
        starts = self.edit_starts_s()
        segs = []
        for seg, start in zip(self.segments, starts):
            d = asdict(seg)
            d["edit_start_s"] = float(start)
            d["edit_end_s"] = float(start + seg.duration_s)
            segs.append(d)
        return {"editorbot_version": __version__, "raw_path": self.raw_path,
                "raw_duration_s": self.raw_duration_s, "duration_s": self.duration_s,
                "loudness_lufs": self.loudness_lufs, "segments": segs}

    @classmethod
    def from_json(cls, data: dict, *, where: str = "segments") -> "Edit":
        if not isinstance(data, dict) or not isinstance(data.get("segments"), list):
            raise UserError(f"{where}: expected an object with a 'segments' list")
        known = set(Segment.__dataclass_fields__)
        segs = []
        for i, d in enumerate(data["segments"]):
            try:
                segs.append(Segment(**{k: v for k, v in d.items() if k in known}))
            except TypeError as err:
                raise UserError(f"{where}: segment {i}: {err}") from None
            check_segment(segs[-1], i, where)
        loudness = data.get("loudness_lufs")
        if loudness is not None and not _finite_number(loudness):
            raise UserError(f"{where}: loudness_lufs must be a number or null, got {loudness!r}; "
                            "fix the segment list")
        return cls(segs, data.get("raw_path"), data.get("raw_duration_s"), loudness)

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Edit":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such segment file")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        return cls.from_json(data, where=str(path))


def check_segment(seg: Segment, index: int, where: str = "segments") -> None:
    """Raise UserError (naming `where` and the segment) unless `seg` is well formed.

    Checks types and ranges only: finite numbers, duration_s > 0, raw_start_s >= 0 or None,
    fades and crossfade >= 0, effect None or {"name": str, "params": {str: number}}.
    Whether an effect name exists is the effects registry's business (editorbot.effects).
    """
    def bad(what: str) -> UserError:
        return UserError(f"{where}: segment {index}: {what}; fix the segment list")

    numbers = {"duration_s": seg.duration_s, "gain_db": seg.gain_db, "fade_in_s": seg.fade_in_s,
               "fade_out_s": seg.fade_out_s, "crossfade_s": seg.crossfade_s}
    if seg.raw_start_s is not None:
        numbers["raw_start_s"] = seg.raw_start_s
    for name, value in numbers.items():
        if not _finite_number(value):
            raise bad(f"{name} must be a finite number, got {value!r}")
    if seg.duration_s <= 0:
        raise bad(f"duration_s {seg.duration_s} <= 0")
    if seg.raw_start_s is not None and seg.raw_start_s < 0:
        raise bad(f"raw_start_s {seg.raw_start_s} < 0")
    for name in ("fade_in_s", "fade_out_s", "crossfade_s"):
        if numbers[name] < 0:
            raise bad(f"{name} {numbers[name]} < 0")
    if seg.effect is not None:
        eff = seg.effect
        if (not isinstance(eff, dict) or not isinstance(eff.get("name"), str)
                or not isinstance(eff.get("params", {}), dict) or set(eff) - {"name", "params"}):
            raise bad(f'effect must be {{"name": str, "params": {{...}}}}, got {eff!r}')
        for key, value in eff.get("params", {}).items():
            if not _finite_number(value):
                raise bad(f"effect parameter {key!r} must be a finite number, got {value!r}")


def _finite_number(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and bool(np.isfinite(value)))


def segment_samples(edit: Edit, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample positions of every segment at rate `sr`, as the renderer and exporters use them.

    Edit boundaries are rounded cumulatively (so lengths add up to the rounded total) and
    raw starts are rounded on their own.

    Returns:
        edit_starts : np.ndarray [shape=(n_segments,)], int64, first edit sample of each
        lengths : np.ndarray [shape=(n_segments,)], int64, samples of each (may be 0 for
            segments shorter than one sample)
        raw_starts : np.ndarray [shape=(n_segments,)], int64, raw sample at each segment's
            start; -1 for segments not in the raw
    """
    starts = edit.edit_starts_s()
    bounds = np.rint(np.append(starts, edit.duration_s) * sr).astype(np.int64)
    raw = np.array([-1 if s.raw_start_s is None else int(round(s.raw_start_s * sr))
                    for s in edit.segments], np.int64)
    return bounds[:-1], np.diff(bounds), raw


def segments_to_pointers(edit: Edit, params: FeatureParams = DEFAULT_PARAMS,
                         n_frames: int | None = None, raw_frames: int | None = None) -> np.ndarray:
    """Pointers of an edit: for each edit frame, the raw frame it plays (-1: not in raw).

    Edit frame j sits at edit time j * hop / sr. Frames past the last segment are -1.
    With `raw_frames` (the raw's mel length), a segment that ends at the raw's very end
    points at the last raw frame, not at the frame centre just past it that rounding gives.

    Returns:
        pointers : np.ndarray [shape=(n_frames,)], int64
    """
    fps = params.sr / params.hop_length
    if n_frames is None:
        n_frames = int(np.ceil(edit.duration_s * fps - 1e-9))
    pointers = np.full(n_frames, -1, np.int64)
    t = np.arange(n_frames) / fps
    starts = edit.edit_starts_s()
    for seg, start in zip(edit.segments, starts):
        j0 = int(np.ceil(start * fps - 1e-6))
        j1 = min(int(np.ceil((start + seg.duration_s) * fps - 1e-6)), n_frames)
        if seg.raw_start_s is None or j1 <= j0:
            continue
        rate = raw_rate(seg)
        pointers[j0:j1] = np.rint((seg.raw_start_s + (t[j0:j1] - start) * rate) * fps).astype(np.int64)
    if raw_frames is not None:
        np.minimum(pointers, raw_frames - 1, out=pointers)
    return pointers


def raw_rate(seg: Segment) -> float:
    """Seconds of raw a segment plays per second of edit: the ratio of a 'speed' effect, else 1.

    Reversed playback still reads its span forward in this mapping (the pointers say which
    raw frames the piece is made of, in order of the raw)."""
    if seg.effect and seg.effect.get("name") == "speed":
        return float(seg.effect.get("params", {}).get("ratio", 1.0))
    return 1.0


def pointers_to_segments(pointers: np.ndarray, params: FeatureParams = DEFAULT_PARAMS,
                         confidence: np.ndarray | None = None) -> Edit:
    """Segments of a pointer sequence: one per run of consecutive raw frames or of -1.

    pointers -> segments -> pointers gives back the same pointers.

    Args:
        confidence: optional per-frame confidence; each segment gets its mean.
    """
    p = np.asarray(pointers, np.int64)
    if len(p) == 0:
        return Edit([])
    fps = params.sr / params.hop_length
    breaks = np.flatnonzero(~(((p[1:] == p[:-1] + 1) & (p[:-1] >= 0)) | ((p[1:] < 0) & (p[:-1] < 0)))) + 1
    bounds = np.concatenate([[0], breaks, [len(p)]])
    segs = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        conf = None if confidence is None else float(np.mean(confidence[a:b]))
        raw_start = None if p[a] < 0 else float(p[a] / fps)
        segs.append(Segment(raw_start, float((b - a) / fps), confidence=conf))
    return Edit(segs)


def ops_from_pointers(pointers: np.ndarray, *, fade_in_frames: int = 0,
                      fade_out_frames: int = 0) -> np.ndarray:
    """The Op of every edit frame, from its pointer sequence and the edit's fades.

    Returns:
        ops : np.ndarray [shape=(n,)], int8
    """
    p = np.asarray(pointers, np.int64)
    n = len(p)
    ops = np.full(n, Op.COPY, np.int8)
    if n == 0:
        return ops
    if fade_out_frames:
        ops[max(0, n - fade_out_frames):] = Op.FADE_OUT
    if fade_in_frames:
        ops[:fade_in_frames] = Op.FADE_IN
    jump = np.zeros(n, bool)
    jump[1:] = (p[1:] >= 0) & (p[1:] != p[:-1] + 1)
    # A jump's target counts as a loop when the edit already played that raw frame.
    played = np.zeros(int(p.max(initial=-1)) + 2, bool)
    loop = np.zeros(n, bool)
    for j in range(n):
        if jump[j] and p[j] >= 0 and played[p[j]]:
            loop[j] = True
        if p[j] >= 0:
            played[p[j]] = True
    ops[np.flatnonzero(loop) - 1] = Op.LOOP_END
    ops[jump & ~loop] = Op.SKIP
    ops[loop] = Op.LOOP_START
    ops[-1] = Op.STOP
    ops[p < 0] = Op.NOT_IN_RAW
    return ops


def with_crossfades(edit: Edit, crossfade_s: float) -> Edit:
    """A copy of `edit` with the same crossfade at every seam."""
    segs = [replace(s, crossfade_s=crossfade_s if i else 0.0) for i, s in enumerate(edit.segments)]
    return replace(edit, segments=segs)


def clock(seconds: float | None, digits: int = 1) -> str:
    """A time as a musician reads it, m:ss.s (digits after the point); "-" for none."""
    if seconds is None or not np.isfinite(seconds):
        return "-"
    m, s = divmod(max(0.0, float(seconds)), 60.0)
    return f"{int(m)}:{s:0{3 + digits}.{digits}f}"

