"""Exports: .otio with exact sample times, EDL and FCP XML read back by OTIO's own readers,
Audacity labels, the JSON segment list. Budget: a few seconds.
"""
from __future__ import annotations

import numpy as np
import opentimelineio as otio
import pytest

from editorbot import audio
from editorbot.edits import Edit, Segment, segment_samples
from editorbot.errors import UserError
from editorbot.export import (edl_text, export_all, frame_timeline, read_audacity_labels,
                              read_otio, to_otio)


def make_edit(raw_path, sr: int) -> Edit:
    """Segments on odd sample positions, a gap, crossfades, gains and an effect."""
    return Edit([
        Segment(12345 / sr, 50001 / sr, fade_in_s=0.25),
        Segment(300007 / sr, 40000 / sr, crossfade_s=0.05),
        Segment(None, 11025 / sr),
        Segment(100003 / sr, 70000 / sr, gain_db=-3.5,
                effect={"name": "eq", "params": {"gain_db": 2.0, "q": 1.0}}),
        Segment(170003 / sr, 20000 / sr, crossfade_s=0.1, confidence=0.75),
    ], raw_path=str(raw_path), raw_duration_s=400000 / sr)


@pytest.fixture
def raw(tmp_path):
    def make(sr=44100, channels=2):
        path = tmp_path / f"jam_{sr}_{channels}_raw.wav"
        audio.write(path, np.zeros((400000, channels), np.float32), sr, subtype="PCM_16")
        return path
    return make


@pytest.mark.parametrize("sr", [44100, 48000, 96000, 22050])
def test_otio_round_trip_is_sample_exact(tmp_path, raw, sr):
    edit = make_edit(raw(sr), sr)
    paths = export_all(edit, tmp_path / "out" / "take", sr=sr)
    back = read_otio(paths["otio"])
    for got, want in zip(segment_samples(back, sr), segment_samples(edit, sr)):
        assert np.array_equal(got, want)
    assert [s.raw_start_s for s in back.segments] == [s.raw_start_s for s in edit.segments]
    assert [s.duration_s for s in back.segments] == [s.duration_s for s in edit.segments]
    for a, b in zip(back.segments, edit.segments):
        assert (a.gain_db, a.fade_in_s, a.effect, a.confidence) == \
               (b.gain_db, b.fade_in_s, b.effect, b.confidence)
        assert a.crossfade_s == pytest.approx(2 * round(b.crossfade_s * sr / 2) / sr, abs=1e-12)
    assert back.raw_path == edit.raw_path
    # Times in the file are integers of samples at the raw's rate.
    track = otio.adapters.read_from_file(str(paths["otio"])).tracks[0]
    clips = list(track.find_clips())
    assert clips[0].source_range.start_time == otio.opentime.RationalTime(12345, sr)
    assert clips[1].source_range.duration == otio.opentime.RationalTime(40000, sr)
    assert track.range_of_child(clips[0]).duration.value == 50001
    assert clips[0].media_reference.available_range.duration.value == 400000


def _event_frames(edit: Edit, fps: int):
    """(record start, record end, source start) in frames, as the module docstring rounds."""
    bounds = np.rint(np.append(edit.edit_starts_s(), edit.duration_s) * fps).astype(int)
    return [(bounds[i], bounds[i + 1], round(s.raw_start_s * fps))
            for i, s in enumerate(edit.segments) if s.raw_start_s is not None]


@pytest.mark.parametrize("channels,tracks", [(2, ["A1", "A2"]), (1, ["A1"])])
@pytest.mark.parametrize("fps", [25, 30])
def test_edl_reads_back_with_the_right_cuts(tmp_path, raw, channels, tracks, fps):
    sr = 48000
    edit = make_edit(raw(sr, channels), sr)
    paths = export_all(edit, tmp_path / "take", sr=sr, fps=fps)
    text = paths["edl"].read_text()
    assert (" AA    C " in text) == (channels == 2) and " V " not in text
    timeline = otio.adapters.read_from_file(str(paths["edl"]), adapter_name="cmx_3600", rate=fps)
    assert [t.name for t in timeline.tracks] == tracks
    for track in timeline.tracks:
        assert track.kind == otio.schema.TrackKind.Audio
        clips = list(track.find_clips())
        got = []
        for clip in clips:
            rec = track.range_of_child(clip)
            got.append((round(rec.start_time.value), round(rec.end_time_exclusive().value),
                        round(clip.source_range.start_time.value)))
        want = _event_frames(edit, fps)
        # CMX starts a dissolve's incoming event at the dissolve's start: half the dissolve
        # (the smaller half) before the cut, in the record and in the source.
        dissolves = {1: round(0.05 * fps), 4: round(0.1 * fps)}
        shifted = []
        for (r0, r1, s0), index in zip(want, [0, 1, 3, 4]):
            d = dissolves.get(index, 0) // 2
            shifted.append((r0 - d, r1, s0 - d))
        # ... and the outgoing event ends there.
        shifted[0] = (shifted[0][0], shifted[1][0], shifted[0][2])
        shifted[2] = (shifted[2][0], shifted[3][0], shifted[2][2])
        assert got == shifted
        transitions = [t for t in track if isinstance(t, otio.schema.Transition)]
        assert [round(t.duration().value) for t in transitions] == \
            [max(1, d) for d in dissolves.values()]


def test_edl_cut_points_within_half_a_frame(tmp_path, raw):
    edit = Edit([Segment(1.0137, 2.0071), Segment(7.3333, 1.25), Segment(3.01, 0.6)],
                raw_path=str(raw()))
    text = edl_text(edit, fps=30, channels=2)
    timeline = otio.adapters.read_from_string(text, adapter_name="cmx_3600", rate=30)
    track = timeline.tracks[0]
    for clip, seg, start in zip(track.find_clips(), edit.segments, edit.edit_starts_s()):
        assert abs(track.range_of_child(clip).start_time.to_seconds() - start) <= 0.5 / 30
        assert abs(clip.source_range.start_time.to_seconds() - seg.raw_start_s) <= 0.5 / 30


def test_fcp_xml_reads_back_with_the_right_cuts(tmp_path, raw):
    sr = 44100
    edit = make_edit(raw(sr, 1), sr)
    paths = export_all(edit, tmp_path / "take", sr=sr)
    timeline = otio.adapters.read_from_file(str(paths["fcp_xml"]), adapter_name="fcp_xml")
    (track,) = timeline.tracks
    assert track.kind == otio.schema.TrackKind.Audio
    got = [(round(track.range_of_child(c).start_time.value),
            round(track.range_of_child(c).end_time_exclusive().value),
            round(c.source_range.start_time.value)) for c in track.find_clips()]
    assert got == _event_frames(edit, 30)
    assert all(c.media_reference.target_url.endswith("jam_44100_1_raw.wav")
               for c in track.find_clips())
    same = frame_timeline(edit, fps=30)
    assert track.duration() == same.tracks[0].duration()


def test_audacity_labels_and_json(tmp_path, raw):
    sr = 44100
    edit = make_edit(raw(sr), sr)
    paths = export_all(edit, tmp_path / "take", sr=sr)
    labels = read_audacity_labels(paths["labels"])
    starts = edit.edit_starts_s()
    assert [t for a, b, _ in labels for t in (a, b)] == pytest.approx(
        [t for s, seg in zip(starts, edit.segments) for t in (s, s + seg.duration_s)], abs=1e-6)
    assert labels[2][2] == "2: not in raw" and labels[0][2] == "0: raw 0.280-1.414 s"
    assert all(line.count("\t") == 2 for line in paths["labels"].read_text().splitlines())
    assert Edit.load(paths["segments"]).segments == edit.segments
    assert sorted(p.name for p in paths.values()) == [
        "take.edl", "take.fcp.xml", "take.otio", "take_labels.txt", "take_segments.json"]


def test_export_errors(tmp_path, raw):
    edit = make_edit(raw(), 44100)
    with pytest.raises(UserError, match="frame rate 29 is not supported"):
        export_all(edit, tmp_path / "x", sr=44100, fps=29)
    with pytest.raises(UserError, match="raw_path"):
        to_otio(Edit([Segment(0.0, 1.0)]), sr=44100)
    (tmp_path / "bad.otio").write_text("{not json")
    with pytest.raises(UserError, match="bad.otio: not a readable OpenTimelineIO file"):
        read_otio(tmp_path / "bad.otio")
    clip = otio.adapters.write_to_string(otio.schema.Clip(), "otio_json")
    (tmp_path / "clip.otio").write_text(clip)
    with pytest.raises(UserError, match="clip.otio: holds a Clip, not an OTIO timeline"):
        read_otio(tmp_path / "clip.otio")
