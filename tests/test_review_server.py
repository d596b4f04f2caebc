"""`editorbot review`: the operations and their beat grid, undo/redo and the journal, the
server's safety (token, paths, lock), Save's versions and training pair, and the page driven
in headless Chromium (veto a cut, move another by a bar, save)."""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import soundfile as sf

from editorbot import render, review
from editorbot.edits import Edit, Segment, segments_to_pointers
from editorbot.errors import UserError
from editorbot.export import export_all
from editorbot.review_server import (BeatGrid, EditState, ReviewServer, ReviewSession, apply_op,
                                    find_edit, merge_proposal, repropose, touched_segments)

from .test_baseline import make_jam

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BAR_S = 2.0  # make_jam plays 120 bpm in 4/4
# Four pieces of the jam cut on its bar lines (groove a's bars start at even seconds, groove
# b's, after 3 s of silence, at odd ones): cut 1 skips 2 s of groove a, cut 2 goes from
# groove a to groove b, cut 3 skips 2 s of groove b.
PIECES = [(8.0, 6.0), (16.0, 4.0), (33.0, 8.0), (43.0, 4.0)]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A jam and an edit of it written as `editorbot edit` writes one (audio, segment list,
    timelines, review page), in out/ beside the raw."""
    root = tmp_path_factory.mktemp("review27")
    y, sr, *_ = make_jam()
    raw = root / "jam_raw.wav"
    sf.write(raw, np.stack([y, 0.7 * y], axis=1), sr, subtype="PCM_24")
    edit = Edit([Segment(s, d, crossfade_s=0.03 if i else 0.0, fade_out_s=1.0 if i == 3 else 0.0)
                 for i, (s, d) in enumerate(PIECES)], raw_path=str(raw), raw_duration_s=len(y) / sr)
    out = root / "out" / "jam.wav"
    out.parent.mkdir()
    report = render.render(raw, edit, out)
    export_all(report.edit, out.with_suffix(""), sr=report.sr, channels=report.channels)
    review.write_review_page(out.with_name("jam_review.html"), raw_path=raw, edit_audio_path=out,
                             edit=report.edit, render_report=report)
    return {"root": root, "raw": raw, "out": out, "sr": sr}


@pytest.fixture
def folder(made, tmp_path):
    """A fresh copy of the edit's folder (each session writes versions and a journal)."""
    dest = tmp_path / "out"
    shutil.copytree(made["out"].parent, dest)
    return dest


@pytest.fixture
def session(folder, tmp_path):
    s = ReviewSession(folder / "jam.wav", data_dir=tmp_path / "training_data", find_beats=False)
    s.load_grid()
    yield s
    s.close()


@pytest.fixture
def server(session):
    srv = ReviewServer(session)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, path: str, *, method: str = "GET", headers: dict | None = None, body=None,
            token: bool = True):
    """A raw HTTP request (http.client sends the path as given: no '..' folding)."""
    port = srv.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if token:
        path += ("&" if "?" in path else "?") + f"token={srv.token}"
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if body is not None else {}
    hdrs.update(headers or {})
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    return resp.status, dict(resp.getheaders()), resp.read()


# ----------------------------------------------------------------------------- grid and operations

GRID = BeatGrid(np.arange(0.0, 60.0, 0.5), np.arange(0.0, 60.0, 2.0), 120.0)


def plain_edit() -> Edit:
    return Edit([Segment(s, d, crossfade_s=0.03 if i else 0.0) for i, (s, d) in enumerate(PIECES)],
                raw_path="raw.wav", raw_duration_s=51.0)


def spans(edit: Edit) -> list[tuple[float, float]]:
    return [(round(s.raw_start_s, 6), round(s.duration_s, 6)) for s in edit.segments]


@pytest.mark.parametrize("t,n,unit,want", [
    (20.0, 1, "bar", 22.0), (20.0, -1, "bar", 18.0), (20.3, 1, "bar", 22.0),  # 0.3 s: on the line
    (21.0, 1, "bar", 22.0), (21.0, -1, "bar", 20.0), (21.1, 0, "bar", 22.0),  # between lines
    (20.0, 1, "beat", 20.5), (20.2, -2, "beat", 19.5), (20.0, 3, "s", 23.0)])
def test_grid_steps_count_lines_from_a_line_and_the_first_line_from_between(t, n, unit, want):
    assert GRID.step(t, n, unit) == pytest.approx(want)


def test_grid_refuses_to_step_past_its_ends_and_without_a_beat():
    with pytest.raises(UserError, match="past the raw's bar grid"):
        GRID.step(58.0, 1, "bar")
    with pytest.raises(UserError, match="move by seconds"):
        BeatGrid(np.zeros(0), np.zeros(0), None).step(10.0, 1, "bar")


def test_veto_joins_the_pieces_and_the_edit_grows_by_the_raw_the_cut_skipped():
    edit = plain_edit()
    new = apply_op(edit, {"op": "veto", "cut": 1}, GRID, 51.0)
    assert spans(new) == [(8.0, 12.0), (33.0, 8.0), (43.0, 4.0)]
    assert new.duration_s == pytest.approx(edit.duration_s + 2.0)
    assert new.segments[0].crossfade_s == 0.0 and new.segments[1].crossfade_s == 0.03
    with pytest.raises(UserError, match="jumps back"):
        apply_op(Edit([Segment(30.0, 4.0), Segment(10.0, 4.0)]), {"op": "veto", "cut": 1}, GRID, 51.0)


def test_moving_a_cut_by_a_bar_rolls_both_raw_points_and_keeps_the_length():
    edit = plain_edit()
    new = apply_op(edit, {"op": "move_cut", "cut": 2, "n": 1, "unit": "bar"}, GRID, 51.0)
    assert spans(new) == [(8.0, 6.0), (16.0, 6.0), (35.0, 6.0), (43.0, 4.0)]
    assert new.duration_s == pytest.approx(edit.duration_s)
    back = apply_op(new, {"op": "move_cut", "cut": 2, "n": -2, "unit": "beat"}, GRID, 51.0)
    assert spans(back) == [(8.0, 6.0), (16.0, 5.0), (34.0, 7.0), (43.0, 4.0)]


def test_trim_delete_reorder_and_insert_give_the_segments_they_promise():
    edit = plain_edit()
    trimmed = apply_op(edit, {"op": "move_edge", "segment": 2, "edge": "start", "n": 1, "unit": "bar"},
                       GRID, 51.0)
    assert spans(trimmed)[2] == (34.0, 7.0)  # from between bar lines: the next one
    longer = apply_op(edit, {"op": "move_edge", "segment": 3, "edge": "end", "n": 1, "unit": "bar"},
                      GRID, 51.0)
    assert spans(longer)[3] == (43.0, 5.0)
    deleted = apply_op(edit, {"op": "delete", "segment": 0}, GRID, 51.0)
    assert spans(deleted) == spans(edit)[1:] and deleted.segments[0].crossfade_s == 0.0
    moved = apply_op(edit, {"op": "move_segment", "segment": 0, "to": 2}, GRID, 51.0)
    assert spans(moved) == [(16.0, 4.0), (33.0, 8.0), (8.0, 6.0), (43.0, 4.0)]
    assert [s.crossfade_s for s in moved.segments] == [0.0, 0.03, 0.03, 0.03]
    added = apply_op(edit, {"op": "insert", "raw_start_s": 0.1, "raw_end_s": 3.9, "at": 1}, GRID, 51.0)
    assert spans(added)[1] == (0.0, 4.0)  # both ends snapped to the nearest beat
    assert len(added.segments) == 5


@pytest.mark.parametrize("req,message", [
    ({"op": "move_cut", "cut": 1, "n": -3, "unit": "bar"}, "at least 0.1 s"),
    ({"op": "move_edge", "segment": 3, "edge": "end", "n": 3, "unit": "bar"}, "past the raw's end"),
    ({"op": "veto", "cut": 4}, "cuts are 1 to 3"),
    ({"op": "veto", "cut": 1, "extra": 2}, "unknown extra"),
    ({"op": "move_cut", "cut": 1, "n": 1.5, "unit": "bar"}, "whole number"),
    ({"op": "explode"}, "must be one of")])
def test_impossible_operations_are_one_line_errors(req, message):
    with pytest.raises(UserError, match=message):
        apply_op(plain_edit(), req, GRID, 51.0)


def test_the_journal_replays_every_change_undo_and_redo_and_survives_a_cut_short_line(tmp_path):
    journal = tmp_path / "journal.jsonl"
    state = EditState(journal, plain_edit(), version=1)
    for req in ({"op": "veto", "cut": 1}, {"op": "delete", "segment": 2},
                {"op": "move_cut", "cut": 1, "n": 1, "unit": "bar"}):
        state.change(apply_op(state.edit, req, GRID, 51.0), req["op"], req)
    state.undo()
    state.undo()
    state.redo()
    want = spans(state.edit)
    assert want == [(8.0, 12.0), (33.0, 8.0)] and state.can_redo and state.dirty
    again = EditState(journal, Edit([Segment(0.0, 1.0)]), version=1)  # the base is ignored
    assert spans(again.edit) == want and again.cursor == state.cursor and again.can_redo
    with open(journal, "a") as fh:
        fh.write('{"kind": "change", "op": {"op": "del')  # the server killed mid-write
    assert spans(EditState(journal, plain_edit(), version=1).edit) == want
    # A change after an undo drops the undone future.
    again.change(apply_op(again.edit, {"op": "delete", "segment": 1}, GRID, 51.0), "delete", {})
    assert not again.can_redo and spans(again.edit) == [(8.0, 12.0)]


def test_a_proposal_fills_around_the_touched_segments_in_raw_order():
    edit = plain_edit()
    touched = [False, True, False, False]  # (16, 4): the person changed it
    proposal = Edit([Segment(0.0, 10.0, fade_in_s=1.0), Segment(14.0, 10.0, crossfade_s=0.05),
                     Segment(30.0, 5.0, crossfade_s=0.05, fade_out_s=2.0)])
    merged, pieces = merge_proposal(edit, touched, proposal)
    # (14, 24) loses the 16-20 s the touched segment plays, which goes where the raw has it.
    assert spans(merged) == [(0.0, 10.0), (14.0, 2.0), (16.0, 4.0), (20.0, 4.0), (30.0, 5.0)]
    assert pieces == [(0.0, 10.0), (14.0, 2.0), (20.0, 4.0), (30.0, 5.0)]
    assert merged.segments[0].fade_in_s == 1.0 and merged.segments[-1].fade_out_s == 2.0
    assert [s.crossfade_s for s in merged.segments] == [0.0, 0.05, 0.03, 0.05, 0.05]
    assert touched_segments(merged, set(pieces)) == [False, False, True, False, False]


def test_repropose_asks_again_until_the_edit_has_the_target_length():
    asked = []

    def first_seconds(target_s):  # an editor that keeps the raw's first target_s seconds
        asked.append(target_s)
        return Edit([Segment(0.0, target_s)])

    edit = plain_edit()
    new, pieces = repropose(edit, [False, True, False, False], first_seconds, 30.0)
    # 26 s asked (30 less the touched 4 s) gives 22 s around them: 4 s short; then 30 s fits.
    assert asked == [26.0, 30.0]
    assert spans(new) == [(0.0, 16.0), (16.0, 4.0), (20.0, 10.0)] and new.duration_s == 30.0
    assert pieces == [(0.0, 16.0), (20.0, 10.0)]
    with pytest.raises(UserError, match="already last 4.0 s"):
        repropose(edit, [False, True, False, False], first_seconds, 4.0)


# ----------------------------------------------------------------------------- session and server

def test_find_edit_takes_any_version_or_the_folder(folder, tmp_path):
    assert find_edit(folder).stem == "jam"
    assert find_edit(folder / "jam.wav").versions() == [1]
    shutil.copy(folder / "jam.wav", folder / "jam_v2.wav")
    shutil.copy(folder / "jam_segments.json", folder / "jam_v2_segments.json")
    assert find_edit(folder / "jam_v2.wav").stem == "jam" and find_edit(folder).versions() == [1, 2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no edit here"):
        find_edit(tmp_path / "empty")


def test_the_command_prints_its_address_serves_it_and_refuses_a_second_writer(folder, tmp_path):
    import signal
    import subprocess
    import sys
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # SIG_DFL first: a shell's background job ignores SIGINT, its children inherit that, and
    # Python then never turns Ctrl-C into KeyboardInterrupt (the server would not stop).
    proc = subprocess.Popen([sys.executable, "-m", "editorbot", "review", str(folder / "jam.wav"),
                             "--no-learn"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        while not any(line.startswith("open:") for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        url = lines[-1].split()[1]
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", f"/api/state?{parts.query}")
        state = json.loads(conn.getresponse().read())
        assert state["version"] == 1 and len(state["segments"]) == 4 and state["learn"] is None
        second = subprocess.run([sys.executable, "-m", "editorbot", "review", str(folder)],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"editorbot: error: {folder / 'jam_corrections'}: this edit is already being reviewed "
            f"(pid {proc.pid}); close that review first (one writer at a time)"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()


def test_a_second_writer_is_refused(session, folder, tmp_path):
    with pytest.raises(UserError, match="already being reviewed"):
        ReviewSession(folder, data_dir=tmp_path / "td", find_beats=False)


def test_requests_need_the_token_and_stay_inside_the_folder(server, folder, tmp_path):
    assert request(server, "/")[0] == 200
    assert request(server, "/", token=False)[0] == 403
    assert request(server, "/api/state?token=wrong", token=False)[0] == 403
    assert request(server, "/", headers={"Host": "evil.example:80"})[0] == 403
    assert request(server, "/files/jam_segments.json")[0] == 200
    for path in ("/files/../jam_raw.wav", "/files/%2e%2e/jam_raw.wav", "/files/..%2fjam_raw.wav",
                 "/static/../review_server.py", "/files/jam_corrections/journal.jsonl"):
        assert request(server, path)[0] == 403, path
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the page")
    os.symlink(secret, folder / "link.txt")
    assert request(server, "/files/link.txt")[0] == 403  # a symlink out of the folder
    assert request(server, "/files/nothing.wav")[0] == 404
    assert request(server, "/api/op", method="POST", body={"op": "veto", "cut": 1}, token=False)[0] == 403


def test_audio_answers_range_requests_byte_for_byte(server, made):
    whole = made["raw"].read_bytes()
    status, headers, body = request(server, "/raw", headers={"Range": "bytes=1000-1999"})
    assert status == 206 and body == whole[1000:2000]
    assert headers["Content-Range"] == f"bytes 1000-1999/{len(whole)}"
    status, _, body = request(server, "/raw", headers={"Range": "bytes=-500"})
    assert status == 206 and body == whole[-500:]
    assert request(server, "/raw", headers={"Range": f"bytes={len(whole)}-"})[0] == 416
    status, headers, body = request(server, "/raw")
    assert status == 200 and body == whole and headers["Accept-Ranges"] == "bytes"


def test_auditions_play_the_seconds_across_a_cut_and_the_raw_without_it(server, session, made):
    _, _, with_cut = request(server, "/api/clip.wav?cut=2")
    _, _, without = request(server, "/api/clip.wav?cut=2&without=1")
    import io
    x, sr = sf.read(io.BytesIO(with_cut), always_2d=True)
    r, _ = sf.read(io.BytesIO(without), always_2d=True)
    assert sr == made["sr"] and len(x) == pytest.approx(4.0 * sr, abs=2) and len(r) == len(x)
    raw, _ = sf.read(made["raw"], always_2d=True)
    a = session.state.edit.segments[1]
    start = int(round((a.raw_end_s - 2.0) * sr))
    # Without the cut: the raw itself (16-bit), across the out point.
    assert np.max(np.abs(r - raw[start:start + len(r)])) < 1e-3
    # With it: the same first second, then the incoming side (groove b), not the raw.
    assert np.max(np.abs(x[:sr] - raw[start:start + sr])) < 1e-3
    assert np.max(np.abs(x[-sr:] - raw[start + len(r) - sr:start + len(r)])) > 0.05


def test_save_writes_a_new_version_keeps_the_old_and_writes_the_correction_pair(session, folder, tmp_path):
    from editorbot.dataset import read_pointer_files
    from editorbot.layout import discover

    old = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}
    before = Edit.load(folder / "jam_segments.json")
    session.apply({"op": "veto", "cut": 1})
    done = session.save(wait=True)
    assert done["version"] == 2
    for kind in ("audio", "segments", "otio", "edl", "fcp_xml", "labels", "review"):
        assert Path(done["paths"][kind]).is_file() and "jam_v2" in Path(done["paths"][kind]).name
    # Version 1 is untouched.
    assert {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in old} == old
    gap = before.segments[1].raw_start_s - (before.segments[0].raw_start_s + before.segments[0].duration_s)
    new = Edit.load(folder / "jam_v2_segments.json")
    info = sf.info(folder / "jam_v2.wav")
    assert info.frames == round((before.duration_s + gap) * info.samplerate)
    assert len(new.segments) == 3
    # The pair: the raw linked, the version's audio, pointers straight from its segments.
    td = tmp_path / "training_data"
    (pair,) = discover(td).pairs
    assert pair.name == "jam" and pair.raw.resolve() == session.raw.resolve()
    assert pair.edit.read_bytes() == (folder / "jam_v2.wav").read_bytes()
    pointers, ops, meta = read_pointer_files(td / "pointer_sequences", "jam")
    np.testing.assert_array_equal(pointers, segments_to_pointers(new, raw_frames=meta["raw_frames"]))
    assert meta["correction"] is True and meta["edit"]["version"] == 2 and ops is not None
    # A second save is version 3; the pair now holds it.
    session.apply({"op": "delete", "segment": 2})
    assert session.save(wait=True)["version"] == 3
    assert discover(td).pairs[0].edit.read_bytes() == (folder / "jam_v3.wav").read_bytes()
    assert (folder / "jam_v2.wav").is_file()


def test_a_saved_correction_is_trainable_at_once_without_editorbot_features(folder, tmp_path):
    """Save caches the raw's mel in the layout's cache (the one `editorbot features` would
    write), so the pointer trainer reads the pair as it is and trains on it."""
    from editorbot.config import load
    from editorbot.features import DEFAULT_PARAMS
    from editorbot.layout import Layout
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.data import PointerData
    from editorbot.pointer.train import train
    from editorbot.precache import mel_for
    from editorbot.training import Run

    from .test_pointer import TINY

    layout = Layout(tmp_path / "td", tmp_path / "cache")
    s = ReviewSession(folder, data_dir=layout.data_dir, cache_dir=layout.cache_dir,
                      find_beats=False, background_render=False)
    try:
        assert s.snapshot()["learn"]["mel"] is None
        s.apply({"op": "veto", "cut": 1})
        s.save(wait=True)
        assert s.snapshot()["learn"]["mel"] == "cached"
    finally:
        s.close()
    assert layout.features("jam", "raw").is_file()
    data = PointerData(layout.cache_dir, layout.pointer_dir)
    assert data.names == ["jam"]
    # The trainer's mel is the raw's own (computed here without any cache), and the frames
    # it is told to play are the saved version's segments: 6 s of groove a from 8 s (the
    # vetoed cut joins [8, 14) and [16, 20) into [8, 20)), then [33, 41) and [43, 47).
    np.testing.assert_array_equal(data.mel("jam"), mel_for(s.raw))
    played = data.recordings["jam"].pointers
    fps = DEFAULT_PARAMS.frames_per_s
    for start_s, end_s in ((8.0, 20.0), (33.0, 41.0), (43.0, 47.0)):
        inside = (played >= round(start_s * fps) + 2) & (played < round(end_s * fps) - 2)
        assert inside.sum() >= (end_s - start_s - 0.2) * fps
    assert not ((played > round(21 * fps)) & (played < round(32 * fps))).any()
    train(load(PointerConfig, None, TINY + ["train.epochs=1"]),
          Run(tmp_path / "run", layout.data_dir, layout.cache_dir, progress=False))
    assert (tmp_path / "run" / "latest.pt").is_file()


def test_repropose_keeps_what_was_touched_and_lets_the_rule_based_editor_fill_the_target(folder,
                                                                                       tmp_path):
    s = ReviewSession(folder, data_dir=None, find_beats=False, background_render=False)
    try:
        s.load_grid()
        with pytest.raises(UserError, match="--checkpoint"):
            s.apply({"op": "repropose", "target_s": 30.0, "editor": "model"})
        s.apply({"op": "move_cut", "cut": 3, "n": 1, "unit": "bar"})  # touches segments 2 and 3
        before = s.snapshot()["segments"]
        assert [seg["touched"] for seg in before] == [False, False, True, True]
        mine = [(seg["raw_start_s"], seg["duration_s"]) for seg in before if seg["touched"]]
        state = s.apply({"op": "repropose", "target_s": 30.0})
        new = s.state.edit
        # The touched segments are there as they were, in their order; the rest is the
        # rule-based editor's, around them; the edit is 30 s within the tolerance.
        kept = [(seg.raw_start_s, seg.duration_s) for seg in new.segments
                if (seg.raw_start_s, seg.duration_s) in mine]
        assert kept == mine
        assert abs(new.duration_s - 30.0) <= 0.5
        assert [seg["touched"] for seg in state["segments"]] == [
            (seg["raw_start_s"], seg["duration_s"]) in mine for seg in state["segments"]]
        assert state["history"][-1] == "re-propose the untouched parts to 30.0 s by the rule-based editor"
        # No raw second is played twice: the proposal leaves out what the touched ones play.
        plays = sorted((seg.raw_start_s, seg.raw_end_s) for seg in new.segments)
        assert all(a[1] <= b[0] + 1e-6 for a, b in zip(plays, plays[1:]))
        reproposed = spans(new)
    finally:
        s.close()
    # A new session replays the journal: the re-proposed pieces still count as untouched.
    again = ReviewSession(folder, data_dir=None, find_beats=False, background_render=False)
    try:
        assert spans(again.state.edit) == reproposed
        assert [seg["touched"] for seg in again.snapshot()["segments"]] == [
            seg["touched"] for seg in state["segments"]]
        again.undo()
        assert [seg["touched"] for seg in again.snapshot()["segments"]] == [False, False, True, True]
    finally:
        again.close()


def test_each_change_is_rendered_in_the_background_and_save_publishes_that_render(server, session,
                                                                                  tmp_path):
    session.apply({"op": "move_cut", "cut": 3, "n": 1, "unit": "bar"})
    deadline = time.time() + 60
    while not session.snapshot()["rendered"] and time.time() < deadline:
        time.sleep(0.1)
    assert session.snapshot()["edit_audio"].startswith("/api/preview")
    status, _, preview = request(server, "/api/preview")
    assert status == 200
    # What the edit lane plays is the renderer's output for the current segments.
    fresh = render.render(session.raw, session.state.edit, tmp_path / "fresh.wav")
    assert preview == (tmp_path / "fresh.wav").read_bytes()
    done = session.save()
    assert Path(done["paths"]["audio"]).read_bytes() == preview
    assert done["duration_s"] == fresh.duration_s
    assert session.snapshot()["edit_audio"] == "/files/jam_v2.wav"
    assert not list(session.files.state_dir.glob("render_*"))  # published, not left behind


def test_a_killed_server_loses_nothing(folder, tmp_path):
    first = ReviewSession(folder, data_dir=None, find_beats=False)
    first.grid = GRID
    first.apply({"op": "veto", "cut": 3})
    first.apply({"op": "delete", "segment": 0})
    first.undo()
    want = spans(first.state.edit)
    first._lock_fh.close()  # what the kernel does when the process dies
    second = ReviewSession(folder, data_dir=None, find_beats=False)
    try:
        assert spans(second.state.edit) == want and second.state.can_redo and second.state.dirty
    finally:
        second.close()


def test_a_journal_of_an_edit_made_again_is_refused(folder, made):
    first = ReviewSession(folder, data_dir=None, find_beats=False, background_render=False)
    first.apply({"op": "veto", "cut": 1})
    first.close()
    edit = Edit.load(folder / "jam_segments.json")
    edit.segments = edit.segments[:2]
    edit.save(folder / "jam_segments.json")  # `editorbot edit --overwrite`, say
    with pytest.raises(UserError, match="made for another version of this edit"):
        ReviewSession(folder, data_dir=None, find_beats=False)


# ----------------------------------------------------------------------------- the page in Chromium

@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="needs Debian's chromium and chromium-driver "
                           "(apt-get install -y chromium chromium-driver)")
def test_veto_a_cut_move_another_by_a_bar_and_save_in_headless_chromium(server, session, folder,
                                                                         tmp_path):
    """Screenshots go to $EDITORBOT_SCREENSHOTS when it is set."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = os.environ.get("EDITORBOT_SCREENSHOTS")
    before = Edit.load(folder / "jam_segments.json")
    old_audio = (folder / "jam.wav").read_bytes()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1250"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(server.url)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#segments tbody tr")) == 4
        history = lambda: driver.execute_script(
            "return Array.from(document.querySelectorAll('#history li')).map(li => li.textContent)")

        # Play the raw from its middle; audition cut 2 (the clip is CLIP_S long).
        from selenium.webdriver.common.action_chains import ActionChains
        wave = driver.find_element(By.ID, "raw-wave")
        ActionChains(driver).move_to_element_with_offset(wave, 0, 0).click().perform()
        wait.until(lambda d: abs(d.execute_script(
            "return document.getElementById('raw-audio').currentTime") - session.raw_info.duration_s / 2) < 1.0)
        driver.find_element(By.CSS_SELECTOR, 'a[data-cut="2"]').click()
        driver.find_element(By.CSS_SELECTOR, '[data-audition="with"]').click()
        wait.until(lambda d: abs((d.execute_script(
            "return document.getElementById('clip-audio').duration") or 0) - 4.0) < 0.05)
        # Move cut 3 (inside groove b) one bar later.
        driver.find_element(By.CSS_SELECTOR, 'a[data-cut="3"]').click()
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(Path(shots) / "before.png"))
        driver.find_element(By.CSS_SELECTOR, '[data-cut-move="1"][data-unit="bar"]').click()
        wait.until(lambda d: len(history()) == 2)
        # Veto cut 1 (the pieces of groove a join).
        driver.find_element(By.CSS_SELECTOR, 'a[data-cut="1"]').click()
        driver.find_element(By.ID, "veto").click()
        wait.until(lambda d: len(history()) == 3)
        assert history()[1:] == ["move cut 3 by +1 bar", "veto cut 1"]
        if shots:
            driver.save_screenshot(str(Path(shots) / "corrected.png"))
        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: "saved version 2" in d.find_element(By.ID, "status").text)
        wait.until(lambda d: "static page written" in d.find_element(By.ID, "save-facts").text)
        # The saved version plays in the edit lane.
        wait.until(lambda d: d.execute_script(
            "return document.getElementById('edit-audio').src").split("?")[0].endswith("/files/jam_v2.wav"))
        if shots:
            driver.save_screenshot(str(Path(shots) / "after.png"))
        # Drag a stretch of the raw (its intro) into the edit, at the end; then undo it.
        ActionChains(driver).move_to_element_with_offset(wave, -wave.size["width"] // 2 + 5, 0) \
            .click_and_hold().move_by_offset(60, 0).move_by_offset(60, 0).release().perform()
        wait.until(lambda d: not d.find_element(By.ID, "insert").get_property("disabled"))
        driver.find_element(By.ID, "insert").click()
        wait.until(lambda d: len(history()) == 4)
        assert len(session.state.edit.segments) == 4
        added = session.state.edit.segments[-1]
        assert added.raw_start_s < 1.0 and added.duration_s > 2.0
        assert added.raw_start_s in session.grid.beats_s  # snapped to the beat grid
        driver.find_element(By.ID, "undo").click()
        wait.until(lambda d: len(history()) == 3)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()

    # The segment list and the audio changed exactly as asked (cuts within the renderer's
    # seam search of where the grid put them).
    a, b, c, d = before.segments
    shift = session.grid.step(c.raw_start_s + c.duration_s, 1, "bar") - (c.raw_start_s + c.duration_s)
    assert shift == pytest.approx(BAR_S, abs=0.05)  # the grid found the jam's bars
    new = Edit.load(folder / "jam_v2_segments.json")
    want = [(a.raw_start_s, b.raw_start_s + b.duration_s - a.raw_start_s),
            (c.raw_start_s, c.duration_s + shift), (d.raw_start_s + shift, d.duration_s - shift)]
    got = [(s.raw_start_s, s.duration_s) for s in new.segments]
    assert len(got) == 3
    radius = render.SEAM_SEARCH_MS / 1000 + 1e-4
    for (gs, gd), (ws, wd) in zip(got, want):
        assert gs == pytest.approx(ws, abs=radius) and gd == pytest.approx(wd, abs=2 * radius)
    gap = b.raw_start_s - (a.raw_start_s + a.duration_s)
    info = sf.info(folder / "jam_v2.wav")
    assert info.frames == round((before.duration_s + gap) * info.samplerate)
    assert sf.info(folder / "jam.wav").frames == round(before.duration_s * info.samplerate)
    assert (folder / "jam.wav").read_bytes() == old_audio  # the old version is still there
    # Without the token, or with '..', the same server refuses.
    assert request(server, "/api/state", token=False)[0] == 403
    assert request(server, "/files/../jam_raw.wav")[0] == 403


def test_repropose_says_so_when_the_editor_cannot_reach_the_target(folder):
    s = ReviewSession(folder, data_dir=None, find_beats=False, background_render=False)
    try:
        reached = s.apply({"op": "repropose", "target_s": 30.0})
        assert "note" not in reached
        raw_s = s.raw_info.duration_s
        short = s.apply({"op": "repropose", "target_s": 2 * raw_s})  # more than it has music for
        lasts = s.state.edit.duration_s
        assert abs(lasts - 2 * raw_s) > 0.01 * 2 * raw_s
        assert short["note"].startswith(f"the edit lasts {lasts:.1f} s, not the {2 * raw_s:.1f} s")
    finally:
        s.close()
