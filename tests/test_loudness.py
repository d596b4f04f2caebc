"""The editor's loudness without clipping (issue 29): an edit whose loudness_lufs needs more
gain than its peaks allow is limited (a look-ahead true-peak limiter), not turned down; the
limiter's bound; true peaks. Generated audio with known answers.
"""
from __future__ import annotations

import json

import numpy as np
import pyloudnorm

from editorbot import audio
from editorbot.edits import Edit, Segment
from editorbot.limiter import Limiter, TruePeakMeter
from editorbot.render import MAX_LIMIT_DB, TRUE_PEAK_CEILING_DBTP, render, render_array
from editorbot.review import level_line

from .conftest import run_cli

SR = 44100
HIT_DBFS = -0.5     # the drum hits' peak: the raw's peak
CHORD_DBFS = -9.0   # the chord under them


def write_drums_and_chord(path, seconds: float = 12.0) -> None:
    """A stereo PCM_24 raw: a chord at most CHORD_DBFS and a 30 ms kick (a decaying 120 Hz
    tone, so its true peak is its sample peak) every 0.5 s, each peaking at exactly HIT_DBFS."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    chord = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((220, 0), (277.2, 1), (329.6, 2)))
    chord *= 10 ** (CHORD_DBFS / 20) / np.abs(chord).max()
    x = np.stack([chord, 0.9 * chord], 1)
    tk = np.arange(int(0.03 * SR)) / SR
    kick = np.sin(2 * np.pi * 120 * tk) * np.exp(-tk / 0.01)
    hit = np.stack([kick, kick], 1)
    for onset in np.arange(0.25, seconds - 0.1, 0.5):
        i = int(onset * SR)
        x[i:i + len(hit)] += hit * 10 ** (HIT_DBFS / 20) / np.abs(hit).max()
        x[i:i + len(hit)] *= min(1.0, 10 ** (HIT_DBFS / 20) / np.abs(x[i:i + len(hit)]).max())
    audio.write(path, x.astype(np.float32), SR, subtype="PCM_24")


def edit_asking(path, more_db: float) -> Edit:
    """Two segments with a cut, and the loudness of the plain edit plus more_db (what an
    editor's level over the raw asks for)."""
    edit = Edit([Segment(0.0, 5.0), Segment(6.5, 5.0)])
    plain, _ = render_array(path, edit, seam_search_ms=0)
    edit.loudness_lufs = pyloudnorm.Meter(SR).integrated_loudness(plain.astype(np.float64)) + more_db
    return edit


def loudness(x: np.ndarray) -> float:
    return pyloudnorm.Meter(SR).integrated_loudness(x.astype(np.float64))


def test_six_db_more_is_reached_by_limiting_the_peaks_and_nothing_passes_the_ceiling(tmp_path):
    write_drums_and_chord(tmp_path / "raw.wav")
    edit = edit_asking(tmp_path / "raw.wav", 6.0)
    report = render(tmp_path / "raw.wav", edit, tmp_path / "out.wav", subtype="PCM_16",
                    seam_search_ms=0)
    out, _ = audio.read(tmp_path / "out.wav")
    # Without a limiter one gain could give +0.4 dB (the hits at -0.5 dBFS to -0.1 dBFS).
    assert report.level_method == "limiter" and report.gain_reduction_db == 0.0
    assert report.clipped_samples == 0
    assert np.abs(out).max() <= 10 ** (TRUE_PEAK_CEILING_DBTP / 20) + 1 / 32768
    assert abs(loudness(out) - edit.loudness_lufs) < 0.5
    assert abs(report.loudness_lufs - loudness(out)) < 0.01
    # The hits go up by the gain and come down to the ceiling: about 6.5 dB limited.
    assert abs(report.limit_db - (HIT_DBFS + report.gain_db - TRUE_PEAK_CEILING_DBTP)) < 0.3
    # Limiting cost loudness (the chord ducks after each hit): the gain made it up.
    assert 6.0 < report.gain_db and 6.0 < report.limit_db < MAX_LIMIT_DB
    assert f"limited by {report.limit_db:.1f} dB" in report.level_line()
    # The chord between hits, once the limiter has let go, is the raw's times the gain.
    raw, _ = audio.read(tmp_path / "raw.wav")
    gain = 10 ** (report.gain_db / 20)
    between = slice(int(0.20 * SR), int(0.24 * SR))  # before the first hit's look-ahead
    assert np.abs(out[between] - raw[between] * gain).max() < 2 / 32768


def test_past_the_limiters_bound_the_whole_edit_gives_the_rest_and_says_so(tmp_path):
    write_drums_and_chord(tmp_path / "raw.wav")
    edit = edit_asking(tmp_path / "raw.wav", 12.0)
    edit.save(tmp_path / "edit.json")
    done = run_cli("render", tmp_path / "raw.wav", "--segments", tmp_path / "edit.json",
                   "-o", tmp_path / "out.wav", "--subtype", "PCM_16", "--seam-search-ms", "0")
    assert done.returncode == 0, done.stderr
    out, _ = audio.read(tmp_path / "out.wav")
    assert np.abs(out).max() <= 10 ** (TRUE_PEAK_CEILING_DBTP / 20) + 1 / 32768
    written = json.loads((tmp_path / "out_segments.json").read_text())["render"]
    # +12 dB puts the hits at +11.5 dBFS: 12.5 dB over the ceiling, more than the limiter takes.
    most = TRUE_PEAK_CEILING_DBTP + MAX_LIMIT_DB - HIT_DBFS
    assert written["method"] == "limiter" and written["clipped_samples"] == 0
    assert abs(written["limit_db"] - MAX_LIMIT_DB) < 0.1
    assert abs(written["gain_db"] - most) < 0.1
    assert abs(written["gain_reduction_db"] - (12.0 - most)) < 0.1
    level = [ln for ln in done.stdout.splitlines() if ln.startswith("level:")]
    assert len(level) == 1 and f"lowered by {12.0 - most:.1f} dB" in level[0]
    assert f"limited by {MAX_LIMIT_DB:.1f} dB" in level[0] and "0 samples clipped" in level[0]
    page = level_line(written)
    assert f"limited by {MAX_LIMIT_DB:.1f} dB" in page and f"lowered by {12.0 - most:.1f}" in page


def test_without_a_loudness_to_reach_nothing_is_limited(tmp_path):
    write_drums_and_chord(tmp_path / "raw.wav")
    edit = Edit([Segment(0.0, 5.0, gain_db=6.0), Segment(6.5, 5.0, gain_db=6.0)])
    report = render(tmp_path / "raw.wav", edit, tmp_path / "out.wav", subtype="PCM_16",
                    seam_search_ms=0)
    assert report.level_method == "gain" and report.limit_db == 0.0
    assert abs(report.gain_reduction_db - (6.0 + HIT_DBFS + 0.1)) < 0.01


def test_limiter_holds_the_true_peak_and_leaves_the_rest_alone():
    n = 3 * SR
    t = np.arange(n) / SR
    x = np.repeat((10 ** (-12 / 20) * np.sin(2 * np.pi * 1000 * t))[:, None], 2, axis=1)
    burst = slice(SR, SR + int(0.01 * SR))
    x[burst] *= 10 ** (18 / 20)  # +6 dBFS for 10 ms
    limiter = Limiter(SR, 2, ceiling_dbtp=-1.0)
    parts = [limiter.process(x[i:i + 10007]) for i in range(0, n, 10007)] + [limiter.finish()]
    y = np.concatenate(parts)
    assert y.shape == x.shape
    meter = TruePeakMeter(2)
    meter.add(y)
    assert 20 * np.log10(meter.finish()) <= -1.0 + 1e-3
    assert abs(limiter.limit_db - 7.0) < 0.1  # +6 dBFS (true peak of a 1 kHz sine) to -1
    # Untouched before the look-ahead and once released (0.1 dB after 8 release times).
    assert np.array_equal(y[:SR - 300], x[:SR - 300].astype(np.float32))
    after = slice(burst.stop + int(1.3 * SR), n)
    assert np.abs(y[after] / x[after] - 1).max() < 0.012


def test_true_peak_between_samples():
    # A quarter-rate sine 45 degrees off the grid: samples at -3.01 dBFS, true peak 0 dB.
    t = np.arange(SR) / SR
    x = np.sin(2 * np.pi * SR / 4 * t + np.pi / 4) * np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    x = x[:, None].astype(np.float32)  # faded in and out over 10 ms (no step at either end)
    meter = TruePeakMeter(1)
    for i in range(0, SR, 4410):
        meter.add(x[i:i + 4410])
    assert abs(20 * np.log10(np.abs(x).max()) + 3.01) < 0.01
    assert abs(20 * np.log10(meter.finish())) < 0.1


def test_a_level_used_again_renders_in_one_pass_and_lands_where_it_did(tmp_path, monkeypatch):
    import editorbot.render as render_module
    write_drums_and_chord(tmp_path / "raw.wav")
    edit = edit_asking(tmp_path / "raw.wav", 6.0)
    first = render(tmp_path / "raw.wav", edit, tmp_path / "v1.wav", subtype="PCM_16",
                   seam_search_ms=0)
    assert first.level_method == "limiter" and not first.level_reused
    # The next version moves the second segment by a beat: the same music, the same level.
    edit.segments[1].raw_start_s = 6.0

    def no_measuring(*args, **kwargs):
        raise AssertionError("a level used again needs no measuring pass")
    monkeypatch.setattr(render_module._Stream, "_level", no_measuring)
    again = render(tmp_path / "raw.wav", edit, tmp_path / "v2.wav", subtype="PCM_16",
                   seam_search_ms=0, level=first.level_json())
    out, _ = audio.read(tmp_path / "v2.wav")
    assert again.level_reused and again.level_json()["level_reused"] is True
    assert again.level_method == "limiter" and abs(again.gain_db - first.gain_db) <= 0.005
    assert np.abs(out).max() <= 10 ** (TRUE_PEAK_CEILING_DBTP / 20) + 1 / 32768
    assert abs(again.loudness_lufs - loudness(out)) < 0.01
    assert abs(again.loudness_lufs - first.loudness_lufs) <= 0.5
    # The peak into the limiter: the hits at HIT_DBFS, raised by the gain.
    assert abs(again.unreduced_peak_dbfs - (HIT_DBFS + again.gain_db)) < 0.05


def test_a_level_that_no_longer_holds_is_decided_again(tmp_path):
    write_drums_and_chord(tmp_path / "raw.wav")
    edit = edit_asking(tmp_path / "raw.wav", 6.0)
    fresh = render(tmp_path / "raw.wav", edit, tmp_path / "fresh.wav", subtype="PCM_16",
                   seam_search_ms=0)
    stale = {**fresh.level_json(), "gain_db": fresh.gain_db - 4.0}  # an earlier, quieter take
    again = render(tmp_path / "raw.wav", edit, tmp_path / "again.wav", subtype="PCM_16",
                   seam_search_ms=0, level=stale)
    assert not again.level_reused
    assert again.gain_db == fresh.gain_db and again.loudness_lufs == fresh.loudness_lufs
    # Another loudness asked, a float output, or a level that did not limit: measured.
    for level, subtype in (({**fresh.level_json(), "target_loudness_lufs": -30.0}, "PCM_16"),
                           (fresh.level_json(), "FLOAT"),
                           ({**fresh.level_json(), "method": "gain"}, "PCM_16"),
                           ({**fresh.level_json(), "gain_db": "loud"}, "PCM_16")):
        report = render(tmp_path / "raw.wav", edit, tmp_path / "other.wav", subtype=subtype,
                        seam_search_ms=0, level=level)
        assert not report.level_reused


def test_limiter_in_blocks_is_the_per_sample_definition():
    """The streamed limiter against its definition, sample by sample (module docstring)."""
    from editorbot.limiter import CONTEXT, _interpolator, true_peaks
    sr, n = 8000, 3000
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((n, 2)) * np.where(np.arange(n) % 700 < 40, 1.5, 0.2)[:, None])
    x = x.astype(np.float32)
    limiter = Limiter(sr, 2, ceiling_dbtp=-1.0)
    y = np.concatenate([limiter.process(x[i:i + 333]) for i in range(0, n, 333)]
                       + [limiter.finish()])
    span, decay = limiter.span, np.exp(limiter.log_decay)
    padded = np.concatenate([np.zeros((CONTEXT, 2)), x, np.zeros((CONTEXT + span, 2))])
    peaks = true_peaks(padded.astype(np.float32), _interpolator())
    with np.errstate(divide="ignore"):
        wanted = np.minimum(1.0, limiter.ceiling / peaks.astype(np.float64))
    held, d = [], 0.0
    for k in range(n):
        d = max(1.0 - wanted[k:k + span + 1].min(), decay * d)
        held.append(1.0 - d)
    held = np.concatenate([np.ones(span), held])
    gain = np.array([held[k:k + span + 1].mean() for k in range(n)])
    assert np.abs(y - x * gain[:, None].astype(np.float32)).max() < 1e-6
    assert gain.min() < 0.5  # the bursts were limited
