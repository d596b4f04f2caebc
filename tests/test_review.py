"""The review page: its content checked against the edit, then driven in headless Chromium."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from editorbot import render, review
from editorbot.edits import Edit, Segment

from .test_baseline import make_jam

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A jam, an edit with three cuts (one jumps back), its render and its review page."""
    folder = tmp_path_factory.mktemp("review")
    y, sr, *_ = make_jam()
    raw = folder / "jam_raw.wav"
    sf.write(raw, np.stack([y, 0.7 * y], axis=1), sr, subtype="PCM_24")
    edit = Edit([Segment(8.0, 6.0), Segment(33.0, 6.0, crossfade_s=0.03),
                 Segment(0.0, 4.0, crossfade_s=0.03), Segment(40.0, 5.0, crossfade_s=0.03,
                                                          fade_out_s=1.0)],
                raw_path=str(raw), raw_duration_s=len(y) / sr)
    out = folder / "jam_edit.wav"
    report = render.render(raw, edit, out)
    html_path = review.write_review_page(folder / "jam_edit_review.html", raw_path=raw,
                                         edit_audio_path=out, edit=edit, render_report=report,
                                         notes=["made by hand for the test"])
    return {"html": html_path, "text": html_path.read_text(), "report": report, "out": out,
            "raw": raw, "sr": sr}


def data_uris(text: str, mime: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(rf'"data:{mime};base64,([A-Za-z0-9+/=]+)"', text)]


def test_page_lists_every_cut_with_its_scores_and_every_segment(page):
    text, report = page["text"], page["report"]
    assert len(report.seams) == 3
    assert text.count('<li class="cut"') == 3
    assert text.count("<tr><td>") == 4
    for seam in report.seams:
        assert f"&times;{seam.step_ratio:.2f}" in text
    assert "jumps back" in text  # the third segment starts earlier in the raw
    assert "made by hand for the test" in text
    # No resource from the network: every src/href is inline, a fragment or the edit's file.
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:", "#")) or r == "jam_edit.wav" for r in refs), refs


def test_clips_hold_the_edit_around_each_cut_and_the_download_is_the_segment_list(page):
    clips = data_uris(page["text"], "audio/wav")
    assert len(clips) == 3
    edit_audio, sr = sf.read(page["out"], always_2d=True)
    mono = edit_audio.mean(axis=1)
    for clip_bytes, seam in zip(clips, page["report"].seams):
        clip, clip_sr = sf.read(io.BytesIO(clip_bytes))
        assert clip_sr == review.CLIP_SR == sr
        start = max(0, int(round((seam.edit_s - review.CLIP_S / 2) * sr)))
        want = mono[start:start + len(clip)]
        assert len(clip) == min(len(mono) - start, int(round(review.CLIP_S * sr)))
        assert np.max(np.abs(clip - want)) < 1e-4  # 16-bit quantisation only
    (segments,) = data_uris(page["text"], "application/json")
    shown = Edit.from_json(json.loads(segments))
    assert [(s.raw_start_s, s.duration_s) for s in shown.segments] == [
        (s.raw_start_s, s.duration_s) for s in page["report"].edit.segments]


def test_waveform_peaks_equal_the_direct_min_and_max(tmp_path):
    sr = 8000
    t = np.arange(45 * sr) / sr  # longer than one read block (20 s)
    x = (np.sin(2 * np.pi * 3 * t) * np.minimum(1, t / 30)).astype(np.float32)
    path = tmp_path / "ramp.wav"
    sf.write(path, np.stack([x, -x * 0.5], axis=1), sr, subtype="FLOAT")
    lo, hi, seconds = review.waveform_peaks(path, columns=100)
    mono = (x - 0.5 * x) / 2
    edges = np.linspace(0, len(x), 101).astype(int)
    assert seconds == pytest.approx(45.0)
    np.testing.assert_allclose(hi, [max(0, mono[a:b].max()) for a, b in zip(edges[:-1], edges[1:])], atol=1e-6)
    np.testing.assert_allclose(lo, [min(0, mono[a:b].min()) for a, b in zip(edges[:-1], edges[1:])], atol=1e-6)


@pytest.mark.browser
@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                    reason="needs Debian's chromium and chromium-driver "
                           "(apt-get install -y chromium chromium-driver)")
def test_page_loads_in_headless_chromium_without_errors_and_its_players_load(page, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(page["html"].as_uri())
        assert len(driver.find_elements(By.CSS_SELECTOR, "li.cut")) == 3
        assert len(driver.find_elements(By.CSS_SELECTOR, "line.cutline")) == 3
        loaded = "return Array.from(document.querySelectorAll('audio')).map(a => [a.readyState, a.duration])"
        WebDriverWait(driver, 30).until(
            lambda d: all(state >= 1 and duration > 0 for state, duration in d.execute_script(loaded)))
        durations = [d for _, d in driver.execute_script(loaded)]
        assert len(durations) == 4  # three cuts and the whole edit
        assert durations[0] == pytest.approx(page["report"].duration_s, abs=0.05)
        assert all(d == pytest.approx(review.CLIP_S, abs=0.05) for d in durations[1:])
        # Clicking the middle of the overview seeks the whole-edit player there.
        svg = driver.find_element(By.ID, "overview")
        driver.execute_script(
            "var s = arguments[0], b = s.getBoundingClientRect();"
            "s.dispatchEvent(new MouseEvent('click', {clientX: b.left + b.width / 2,"
            " clientY: b.top + 5, bubbles: true}));", svg)
        position = driver.execute_script("return document.getElementById('full').currentTime")
        assert position == pytest.approx(page["report"].duration_s / 2, abs=0.5)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


@pytest.mark.parametrize("text,seconds", [("3:30", 210.0), ("210", 210.0), ("3m30s", 210.0),
                                          ("1:02:03", 3723.0), ("90s", 90.0), ("2m", 120.0),
                                          ("0:20.5", 20.5), ("1h5m", 3900.0)])
def test_durations_parse_like_people_write_them(text, seconds):
    from editorbot.commands.edit import parse_duration
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3x", "", "3:75", "m"])
def test_bad_durations_are_user_errors(text):
    from editorbot.commands.edit import parse_duration
    from editorbot.errors import UserError
    with pytest.raises(UserError, match="target-duration"):
        parse_duration(text)


def test_edit_command_writes_the_edit_its_exports_and_review_page(page, tmp_path):
    from .conftest import run_cli

    out = tmp_path / "track.wav"
    done = run_cli("edit", page["raw"], "-o", out, "--target-duration", "0:20")
    assert done.returncode == 0, done.stderr
    written = {"edit": out, "segments": tmp_path / "track_segments.json",
               "timelines": tmp_path / "track.otio", "labels": tmp_path / "track_labels.txt",
               "review": tmp_path / "track_review.html", "plot": tmp_path / "track_decision.png"}
    for label, path in written.items():
        assert path.is_file(), label
        assert any(line.startswith(f"{label}:") and str(path) in line
                   for line in done.stdout.splitlines()), (label, done.stdout)
    assert abs(sf.info(out).duration - 20.0) <= 0.05 * 20.0
    assert (tmp_path / "track.edl").is_file() and (tmp_path / "track.fcp.xml").is_file()
    again = run_cli("edit", page["raw"], "-o", page["raw"])
    assert again.returncode == 2 and "input recording" in again.stderr


def test_labels_that_would_overlap_go_to_another_row_or_are_left_out():
    # Three segments from the same raw place (a passage and its repeats), one further on.
    spans = [(100.0, 140.0, "1"), (100.0, 140.0, "2"), (100.0, 140.0, "3"), (100.0, 140.0, "4"),
             (300.0, 310.0, "5"), (312.0, 318.0, "6")]
    # "5" centred at 305 and "6" at 315: each about 10.5 wide, so they touch: 6 drops a row.
    assert review.place_labels(spans, rows=3) == [0, 1, 2, None, 0, 1]
    assert review.place_labels([(0, 50, "1"), (60, 100, "2")], rows=1) == [0, 0]
    # A cut label right after the lane's title (taken up to x = 90) is left out.
    assert review.place_labels([(60, 80, "x1"), (200, 220, "x2")], rows=1, taken_to=90.0) == [None, 0]


def test_counts_are_singular_for_one_and_coverage_counts_repeats_once():
    assert review.plural(1, "segment") == "1 segment"
    assert review.plural(0, "cut") == "0 cuts" and review.plural(2, "cut") == "2 cuts"
    edit = Edit([Segment(0.0, 10.0), Segment(5.0, 5.0), Segment(20.0, 4.0)])
    assert review.raw_coverage_s(edit) == pytest.approx((14.0, 5.0))


def test_level_line_reads_the_segment_lists_render_dict_and_tolerates_gaps():
    assert review.level_line(None) is None and review.level_line({}) is None
    lowered = {"method": "gain", "gain_db": -3.2, "gain_reduction_db": 3.2, "peak_dbfs": -0.1}
    assert review.level_line(lowered) == ("level: the whole edit lowered by 3.2 dB so that "
                                          "nothing clips, peak -0.1 dBFS")
    assert review.level_line({"method": "clipping allowed", "clipped_samples": 12}) == (
        "level: clipping allowed, 12 samples clipped")
    assert review.level_line({"peak_dbfs": None, "method": "none"}) == "level: as the segments' gains make it"


def _labels(text: str, y: float) -> list[float]:
    return [float(x) for x, yy in re.findall(r'<text x="([\d.]+)" y="([\d.]+)" class="seglabel">', text)
            if float(yy) == y]


def test_a_one_piece_edit_says_1_segment_and_no_cuts_without_numbering(page, tmp_path):
    edit = Edit([Segment(8.0, 12.0, fade_out_s=1.0)], raw_path=str(page["raw"]), raw_duration_s=51.0)
    out = tmp_path / "one.wav"
    report = render.render(page["raw"], edit, out)
    text = review.write_review_page(tmp_path / "one_review.html", raw_path=page["raw"],
                                    edit_audio_path=out, edit=edit, render_report=report).read_text()
    assert "1 segment, 0 cuts" in text
    assert '<ol class="cuts">' not in text and '<p class="muted">no cuts' in text
    # No segment carries a confidence (a rule-based edit): no confidence column.
    assert "<th>confidence</th>" not in text
    # The render's level, from the report, in one line; and in the downloadable segment list.
    assert text.count("<li>level: ") == 1
    (segments,) = data_uris(text, "application/json")
    assert json.loads(segments)["render"] == report.level_json()


def test_repeats_keep_their_labels_apart_and_the_page_says_what_plays_twice(page, tmp_path):
    # A passage played four times over (a loop): labels 1..3 stack, the rest are left out.
    edit = Edit([Segment(8.0, 4.0)] + [Segment(8.0, 4.0, crossfade_s=0.03) for _ in range(5)]
                + [Segment(12.0, 4.0, crossfade_s=0.03, confidence=0.5)],
                raw_path=str(page["raw"]), raw_duration_s=51.0)
    out = tmp_path / "loop.wav"
    report = render.render(page["raw"], edit, out)
    text = review.write_review_page(tmp_path / "loop_review.html", raw_path=page["raw"],
                                    edit_audio_path=out, edit=edit, render_report=report,
                                    render={"method": "gain", "gain_reduction_db": 2.0}).read_text()
    rows = [_labels(text, y) for y in (32.0, 44.0, 56.0)]  # raw lane rows (raw_y 20)
    assert [len(r) for r in rows] == [2, 1, 1]  # 1 and 7 side by side, then 2, then 3
    for xs in rows:
        assert all(abs(a - b) >= 2 * review.LABEL_CHAR_W for a, b in zip(xs, xs[1:]))
    assert "4 s of it played more than once" in text  # 8-12 s of the raw, six times
    assert "level: the whole edit lowered by 2.0 dB so that nothing clips" in text
    assert "<th>confidence</th>" in text and "<td>0.50</td>" in text


def test_decision_plot_draws_a_confidence_strip_with_a_scale_only_for_editors_that_have_one(tmp_path):
    import matplotlib.image

    from editorbot.align.plot import plot_alignment
    from editorbot.edits import Op
    from editorbot.features import DEFAULT_PARAMS

    edit = Edit([Segment(0.0, 10.0), Segment(20.0, 10.0)])
    frames = int(20.0 * DEFAULT_PARAMS.frames_per_s)
    ops = np.full(frames, Op.COPY, np.int8)
    confidence = np.ones(frames, np.float32)
    confidence[frames // 2:] = 0.0

    def colour_pixels(path, rgb):
        img = (matplotlib.image.imread(path)[..., :3] * 255).round().astype(int)
        return int(np.sum(np.all(np.abs(img - np.array(rgb)) <= 3, axis=-1)))

    green, red = (0, 104, 55), (165, 0, 38)  # RdYlGn at 1 and 0
    with_strip = plot_alignment(tmp_path / "with.png", edit=edit, ops=ops, confidence=confidence,
                                params=DEFAULT_PARAMS, raw_duration_s=40.0)
    without = plot_alignment(tmp_path / "without.png", edit=edit, ops=ops, confidence=None,
                             params=DEFAULT_PARAMS, raw_duration_s=40.0)
    # The strip: half green, half red, and the scale beside it has both ends too.
    assert colour_pixels(with_strip, green) > 5000 and colour_pixels(with_strip, red) > 5000
    assert colour_pixels(without, green) == 0 and colour_pixels(without, red) == 0
