"""Export an edit for a DAW or NLE: OpenTimelineIO, CMX 3600 EDL, FCP XML, Audacity labels, JSON.

The .otio timeline is sample-accurate (every time a RationalTime at the raw's sample rate)
and reads back into the same Edit with `read_otio`. EDL and FCP XML count in video frames,
so their timeline is rounded to a frame grid first (`frame_timeline`), then written by the
OTIO adapters (otio-cmx3600-adapter, otio-fcp-adapter).

Frame rounding (EDL, FCP XML), at `fps` (default 30, non-drop): each segment's edit
boundaries are rounded to the nearest frame cumulatively, so the events butt-join and the
total length is the rounded total; each source-in is rounded on its own, and the
source-out is source-in plus the event's frame count. Every cut so moves by at most half a
frame (16.7 ms at 30 fps) in the record timeline and in the source; segments that round to
zero frames are left out. Crossfades become dissolves of round(crossfade_s * fps) frames,
at least one frame, split evenly around the cut (the larger half after it); CMX writes a
dissolve's incoming event from the dissolve's start.

The cmx_3600 adapter writes exactly one video track, so the EDL is written from a video
track and its events are relabelled as audio: 'A' for a mono raw, 'AA' (A1 + A2) for
stereo. FCP XML gets one audio track whose clip items reference the raw file.
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import numpy as np

from .audio import probe
from .cache import atomic_write_text
from .edits import Edit, Segment, segment_samples
from .errors import UserError

EDL_FPS = 30
_META = "editorbot"


def _media_reference(edit: Edit, rate: int, raw_frames: int | None):
    import opentimelineio as otio
    if not edit.raw_path:
        raise UserError("the edit names no raw file (raw_path); set Edit.raw_path before export")
    raw = Path(edit.raw_path).resolve()
    available = None
    if raw_frames is not None:
        available = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate),
                                            otio.opentime.RationalTime(raw_frames, rate))
    return otio.schema.ExternalReference(target_url=raw.as_uri(), available_range=available)


def _segment_meta(seg: Segment) -> dict:
    return {"gain_db": seg.gain_db, "fade_in_s": seg.fade_in_s, "fade_out_s": seg.fade_out_s,
            "crossfade_s": seg.crossfade_s, "effect": seg.effect, "confidence": seg.confidence}


def _raw_frames(edit: Edit, rate: int) -> int | None:
    if edit.raw_duration_s is not None:
        return int(round(edit.raw_duration_s * rate))
    if edit.raw_path and Path(edit.raw_path).is_file():
        info = probe(edit.raw_path)
        return int(round(info.frames * rate / info.sr))
    return None


def _timeline(edit: Edit, *, rate: int, edit_bounds: np.ndarray, raw_starts: np.ndarray,
              crossfades: np.ndarray, kind: str, name: str, channels: int):
    """A one-track timeline from integer positions at `rate` (samples or frames)."""
    import opentimelineio as otio
    RT, TR = otio.opentime.RationalTime, otio.opentime.TimeRange
    ref = _media_reference(edit, rate, _raw_frames(edit, rate))
    track = otio.schema.Track(name="A1" if kind == "Audio" else "V1",
                              kind=getattr(otio.schema.TrackKind, kind))
    previous_clip = False
    for i, seg in enumerate(edit.segments):
        length = int(edit_bounds[i + 1] - edit_bounds[i])
        if length <= 0:
            continue
        xf = int(crossfades[i])
        if xf > 0 and previous_clip and seg.raw_start_s is not None:
            track.append(otio.schema.Transition(
                name=f"crossfade {i}", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=RT(xf // 2, rate), out_offset=RT(xf - xf // 2, rate)))
        if seg.raw_start_s is None:
            track.append(otio.schema.Gap(source_range=TR(RT(0, rate), RT(length, rate))))
            previous_clip = False
            continue
        clip = otio.schema.Clip(
            name=f"seg{i:03d}", media_reference=copy.deepcopy(ref),
            source_range=TR(RT(int(raw_starts[i]), rate), RT(length, rate)),
            metadata={_META: {"segment": i, **_segment_meta(seg)}})
        track.append(clip)
        previous_clip = True
    timeline = otio.schema.Timeline(name=name)
    timeline.tracks.append(track)
    timeline.metadata[_META] = {"raw_path": edit.raw_path, "raw_duration_s": edit.raw_duration_s,
                                "channels": channels, "rate": rate}
    return timeline


def to_otio(edit: Edit, *, sr: int, name: str = "editorbot edit", channels: int = 2):
    """The edit as a sample-accurate OTIO timeline: one audio track, times at `sr`.

    Clips reference the raw file; each clip's source range is (raw start, length) in
    samples; crossfades are SMPTE dissolves centred on the cut; segments not in the raw are
    gaps. Gains, fades and effects travel in each clip's metadata['editorbot'].
    """
    edit_starts, lengths, raw_starts = segment_samples(edit, sr)
    bounds = np.append(edit_starts, edit_starts[-1] + lengths[-1]) if len(lengths) else np.zeros(1)
    # Even, as the renderer makes them: half on each side of the cut.
    crossfades = np.array([2 * int(round(s.crossfade_s * sr / 2)) for s in edit.segments])
    return _timeline(edit, rate=sr, edit_bounds=bounds, raw_starts=raw_starts,
                     crossfades=crossfades, kind="Audio", name=name, channels=channels)


def frame_timeline(edit: Edit, *, fps: int = EDL_FPS, kind: str = "Audio",
                   name: str = "editorbot edit", channels: int = 2):
    """The edit on a video-frame grid (see the module docstring for the rounding)."""
    starts = np.append(edit.edit_starts_s(), edit.duration_s)
    bounds = np.rint(starts * fps).astype(np.int64)
    raw_starts = np.array([-1 if s.raw_start_s is None else int(round(s.raw_start_s * fps))
                           for s in edit.segments], np.int64)
    crossfades = np.array([max(1, int(round(s.crossfade_s * fps))) if s.crossfade_s > 0 else 0
                           for s in edit.segments])
    return _timeline(edit, rate=fps, edit_bounds=bounds, raw_starts=raw_starts,
                     crossfades=crossfades, kind=kind, name=name, channels=channels)


def read_otio(path: str | os.PathLike) -> Edit:
    """An Edit from a .otio timeline written by `to_otio` (or edited in a DAW since).

    Reads the first audio track: clips become segments (times exact at the track's rate),
    gaps become segments not in the raw, dissolves become the next segment's crossfade_s.
    """
    import opentimelineio as otio
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such timeline file")
    try:
        timeline = otio.adapters.read_from_file(str(path), adapter_name="otio_json")
    except (ValueError, otio.exceptions.OTIOError) as err:
        raise UserError(f"{path}: not a readable OpenTimelineIO file ({err})") from None
    if not isinstance(timeline, otio.schema.Timeline):
        raise UserError(f"{path}: holds a {type(timeline).__name__}, not an OTIO timeline")
    tracks = [t for t in timeline.tracks if t.kind == otio.schema.TrackKind.Audio]
    if not tracks:
        raise UserError(f"{path}: the timeline has no audio track")
    meta = timeline.metadata.get(_META, {})
    segments: list[Segment] = []
    pending_xf = 0.0
    for item in tracks[0]:
        if isinstance(item, otio.schema.Transition):
            pending_xf = (item.in_offset + item.out_offset).to_seconds()
            continue
        rng = item.source_range or item.trimmed_range()
        if isinstance(item, otio.schema.Gap):
            segments.append(Segment(None, rng.duration.to_seconds()))
        else:
            extra = _plain(item.metadata.get(_META, {}))
            extra = {k: extra[k] for k in ("gain_db", "fade_in_s", "fade_out_s", "effect",
                                           "confidence") if k in extra}
            segments.append(Segment(rng.start_time.to_seconds(), rng.duration.to_seconds(),
                                    crossfade_s=pending_xf, **extra))
        pending_xf = 0.0
    meta = _plain(meta)
    return Edit(segments, meta.get("raw_path"), meta.get("raw_duration_s"))


def _plain(value):
    """OTIO metadata (AnyDictionary / AnyVector) as plain dicts and lists."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "AnyVector":
        return [_plain(v) for v in value]
    return value


def write_otio(edit: Edit, path: str | os.PathLike, *, sr: int, channels: int = 2) -> Path:
    import opentimelineio as otio
    path = Path(path)
    timeline = to_otio(edit, sr=sr, name=path.stem, channels=channels)
    return atomic_write_text(path, otio.adapters.write_to_string(timeline, "otio_json"))


def edl_text(edit: Edit, *, fps: int = EDL_FPS, channels: int = 2, title: str = "editorbot") -> str:
    """A CMX 3600 EDL of the edit's audio ('A' events for mono, 'AA' for stereo).

    The cmx_3600 adapter writes exactly one video track, so the frame timeline goes to it as
    a video track and its event channels are relabelled as audio afterwards.
    """
    import opentimelineio as otio
    timeline = frame_timeline(edit, fps=fps, kind="Video", name=title, channels=channels)
    text = otio.adapters.write_to_string(timeline, "cmx_3600", rate=fps, style="avid")
    channel = "AA" if channels >= 2 else "A"
    # Event lines: "001  REEL     V     C        <4 timecodes>"; the channel field is 5 wide.
    return re.sub(r"^(\d{3}  .{8} )V    ", lambda m: f"{m.group(1)}{channel:<5}", text,
                  flags=re.MULTILINE)


def fcp_xml_text(edit: Edit, *, fps: int = EDL_FPS, channels: int = 2,
                 title: str = "editorbot") -> str:
    """FCP 7 XML (xmeml) of the edit: one audio track on the frame grid."""
    import opentimelineio as otio
    timeline = frame_timeline(edit, fps=fps, kind="Audio", name=title, channels=channels)
    return otio.adapters.write_to_string(timeline, "fcp_xml")


def audacity_labels_text(edit: Edit) -> str:
    """An Audacity label track: one 'start<TAB>end<TAB>label' line per segment (edit seconds)."""
    lines = []
    for i, (seg, start) in enumerate(zip(edit.segments, edit.edit_starts_s())):
        where = ("not in raw" if seg.raw_start_s is None
                 else f"raw {seg.raw_start_s:.3f}-{seg.raw_end_s:.3f} s")
        lines.append(f"{start:.6f}\t{start + seg.duration_s:.6f}\t{i}: {where}")
    return "\n".join(lines) + "\n"


def read_audacity_labels(path: str | os.PathLike) -> list[tuple[float, float, str]]:
    """(start_s, end_s, label) of each line of an Audacity label file."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            start, end, label = line.split("\t", 2)
            out.append((float(start), float(end), label))
    return out


def export_paths(out_stem: str | os.PathLike) -> dict[str, Path]:
    """Where `export_all` writes each export of `out_stem`: {kind: path}."""
    stem = Path(out_stem)
    title = stem.name
    return {"otio": stem.with_name(f"{title}.otio"), "edl": stem.with_name(f"{title}.edl"),
            "fcp_xml": stem.with_name(f"{title}.fcp.xml"),
            "labels": stem.with_name(f"{title}_labels.txt"),
            "segments": stem.with_name(f"{title}_segments.json")}


def export_all(edit: Edit, out_stem: str | os.PathLike, *, sr: int, channels: int | None = None,
               fps: int = EDL_FPS, render: dict | None = None) -> dict[str, Path]:
    """Write every export next to `out_stem`; returns {kind: path}.

    Writes {stem}.otio, {stem}.edl, {stem}.fcp.xml, {stem}_labels.txt and
    {stem}_segments.json, each atomically.

    Args:
        edit: the edit to export (for a render, RenderReport.edit: the cuts as rendered).
        sr: the raw's sample rate (the .otio time base).
        channels: the raw's channels (default: read from edit.raw_path).
        fps: frame rate of the EDL and FCP XML grid (24, 25 or 30).
        render: what the render did to the level (RenderReport.level_json()), written into
            the segment list as "render".
    """
    if fps not in (24, 25, 30):
        raise UserError(f"EDL frame rate {fps} is not supported; use 24, 25 or 30")
    if channels is None:
        if not edit.raw_path or not Path(edit.raw_path).is_file():
            raise UserError("export needs the raw's channel count: pass channels= or set "
                            "Edit.raw_path to the raw file")
        channels = probe(edit.raw_path).channels
    title = Path(out_stem).name
    where = export_paths(out_stem)
    return {
        "otio": write_otio(edit, where["otio"], sr=sr, channels=channels),
        "edl": atomic_write_text(where["edl"], edl_text(edit, fps=fps, channels=channels, title=title)),
        "fcp_xml": atomic_write_text(where["fcp_xml"],
                                     fcp_xml_text(edit, fps=fps, channels=channels, title=title)),
        "labels": atomic_write_text(where["labels"], audacity_labels_text(edit)),
        "segments": (edit.save(where["segments"]) if render is None else atomic_write_text(
            where["segments"], json.dumps({**edit.to_json(), "render": render}, indent=1))),
    }
