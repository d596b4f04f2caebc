"""Quality preserved means never clipped (issue 29): a render lowers the whole edit by one
gain when its gains would pass full scale, reports it, clips only when asked, keeps values
above 1.0 in float outputs, and brings an edit to its loudness_lufs (limiting its peaks
when they are in the way: tests/test_loudness.py).

The raw peaks at -0.5 dBFS at a known sample, so every figure below is known beforehand.
"""
from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import soundfile as sf

from editorbot import audio
from editorbot.edits import Edit, Segment
from editorbot.loudness import LoudnessMeter
from editorbot.render import PEAK_CEILING_DBFS, TRUE_PEAK_CEILING_DBTP, render, render_array

from .conftest import run_cli
from .test_render import music, reference

SR = 44100
RAW_PEAK_DBFS = -0.5
FULL_SCALE_16 = 32767 / 32768  # the largest PCM_16 sample, read back as float


PEAK_AT_S = 3.5


def write_loud_raw(path, seconds: float = 8.0) -> np.ndarray:
    """A stereo PCM_24 raw of music at most -2.4 dBFS with one sample pair at -0.5 dBFS (at
    PEAK_AT_S); returns what the file holds."""
    x = music(SR, seconds, 2).astype(np.float64)
    peak = 10 ** (RAW_PEAK_DBFS / 20)
    x *= 0.8 * peak / np.abs(x).max()
    x[int(PEAK_AT_S * SR)] = peak
    audio.write(path, x.astype(np.float32), SR, subtype="PCM_24")
    data, _ = audio.read(path)
    return data


def boosted_edit(raw: np.ndarray, gain_db: float = 6.0) -> Edit:
    """Three hard-cut segments at +gain_db; the middle one holds the raw's peak sample."""
    assert int(np.abs(raw).max(axis=1).argmax()) == int(PEAK_AT_S * SR)
    return Edit([Segment(0.2, 1.0, gain_db=gain_db),
                 Segment(PEAK_AT_S - 1.0, 2.0, gain_db=gain_db),
                 Segment(6.0, 1.5, gain_db=gain_db)])


def outside_seams(n: int, report, sr: int = SR) -> np.ndarray:
    mask = np.ones(n, bool)
    for s in report.seams:
        at, half = int(round(s.edit_s * sr)), int(round(s.crossfade_ms * sr / 2000)) + 2
        mask[max(0, at - half):at + half] = False
    return mask


def test_plus_6_db_on_a_raw_at_minus_half_dbfs_is_lowered_as_a_whole_and_never_clips(tmp_path):
    raw = write_loud_raw(tmp_path / "raw.wav")
    edit = boosted_edit(raw)
    report = render(tmp_path / "raw.wav", edit, tmp_path / "out.wav", subtype="PCM_16",
                    seam_search_ms=0)
    out, _ = audio.read(tmp_path / "out.wav")
    # Asked: +6 dB on a -0.5 dBFS peak = +5.5 dBFS; written at the -0.1 dBFS ceiling.
    assert abs(report.unreduced_peak_dbfs - (6.0 + RAW_PEAK_DBFS)) < 0.01
    assert abs(report.gain_reduction_db - (6.0 + RAW_PEAK_DBFS - PEAK_CEILING_DBFS)) < 0.01
    assert report.level_method == "gain" and report.clipped_samples == 0
    assert np.abs(out).max() <= 10 ** (PEAK_CEILING_DBFS / 20) + 1 / 32768
    assert int((np.abs(out) >= FULL_SCALE_16).sum()) == 0
    # One gain for the whole edit: the segments' levels relative to each other stay.
    want = reference(raw, edit, SR) * 10 ** (-report.gain_reduction_db / 20)
    mask = outside_seams(len(out), report)
    assert np.abs(out[mask] - want[mask]).max() < 2 / 32768
    assert "lowered by 5.6 dB" in report.level_line()


def test_cli_reports_the_reduction_and_allow_clipping_writes_the_clipped_file(tmp_path):
    raw = write_loud_raw(tmp_path / "raw.wav")
    edit = boosted_edit(raw)
    edit.save(tmp_path / "edit.json")
    done = run_cli("render", tmp_path / "raw.wav", "--segments", tmp_path / "edit.json",
                   "-o", tmp_path / "safe.wav", "--subtype", "PCM_16", "--seam-search-ms", "0")
    assert done.returncode == 0, done.stderr
    level = [ln for ln in done.stdout.splitlines() if ln.startswith("level:")]
    assert len(level) == 1 and "lowered by 5.6 dB" in level[0] and "0 samples clipped" in level[0]
    written = json.loads((tmp_path / "safe_segments.json").read_text())["render"]
    assert written["method"] == "gain" and written["clipped_samples"] == 0
    assert abs(written["gain_reduction_db"] - 5.6) < 0.011
    assert abs(written["peak_dbfs"] - PEAK_CEILING_DBFS) < 0.011
    safe, _ = audio.read(tmp_path / "safe.wav")
    assert int((np.abs(safe) >= FULL_SCALE_16).sum()) == 0

    done = run_cli("render", tmp_path / "raw.wav", "--segments", tmp_path / "edit.json",
                   "-o", tmp_path / "loud.wav", "--subtype", "PCM_16", "--seam-search-ms", "0",
                   "--allow-clipping")
    assert done.returncode == 0, done.stderr
    loud, _ = audio.read(tmp_path / "loud.wav")
    at_full_scale = int((np.abs(loud) >= FULL_SCALE_16).sum())
    unclipped, _ = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0)
    assert at_full_scale > 1000  # +5.5 dBFS music: many samples pass full scale
    written = json.loads((tmp_path / "loud_segments.json").read_text())["render"]
    assert written["method"] == "clipping allowed" and written["gain_reduction_db"] == 0.0
    # Every sample the gains put past full scale is reported (and written at full scale).
    assert written["clipped_samples"] == int((np.abs(unclipped) > 1.0).sum())
    assert abs(written["clipped_samples"] - at_full_scale) <= 0.01 * at_full_scale
    level = [ln for ln in done.stdout.splitlines() if ln.startswith("level:")]
    assert level == [f"level: clipping allowed: {written['clipped_samples']} samples clipped at "
                     "full scale (peak +5.5 dBFS before clipping)"]


def test_float_output_keeps_values_above_one_and_counts_them(tmp_path):
    raw = write_loud_raw(tmp_path / "raw.wav")
    edit = boosted_edit(raw)
    report = render(tmp_path / "raw.wav", edit, tmp_path / "out.wav", subtype="FLOAT",
                    seam_search_ms=0)
    out, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    assert report.level_method == "none" and report.gain_db == 0.0
    assert abs(20 * np.log10(np.abs(out).max()) - (6.0 + RAW_PEAK_DBFS)) < 0.01
    assert report.over_full_scale_samples == int((np.abs(out) > 1.0).sum()) > 1000
    assert "exceed 1.0" in report.level_line()


def test_an_edit_that_fits_is_copied_untouched(tmp_path):
    raw = write_loud_raw(tmp_path / "raw.wav")
    edit = boosted_edit(raw, gain_db=0.0)
    report = render(tmp_path / "raw.wav", edit, tmp_path / "out.wav", seam_search_ms=0)
    out, _ = audio.read(tmp_path / "out.wav")
    mask = outside_seams(len(out), report)
    assert report.level_method == "none" and report.gain_db == 0.0
    assert np.array_equal(out[mask], raw_samples(raw, edit)[mask])


def raw_samples(raw: np.ndarray, edit: Edit) -> np.ndarray:
    return reference(raw, edit, SR).astype(np.float32)


def test_loudness_target_is_reached_by_one_gain_or_by_limiting_the_peaks(tmp_path):
    raw = write_loud_raw(tmp_path / "raw.wav")
    edit = boosted_edit(raw, gain_db=0.0)
    plain, _ = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0)
    measured = pyloudnorm.Meter(SR).integrated_loudness(plain.astype(np.float64))
    meter = pyloudnorm.Meter(SR)
    # Quieter by 4 LU: reached within the tolerance, by one gain.
    edit.loudness_lufs = measured - 4.0
    report = render(tmp_path / "raw.wav", edit, tmp_path / "quiet.wav", seam_search_ms=0)
    quiet, _ = audio.read(tmp_path / "quiet.wav")
    assert abs(meter.integrated_loudness(quiet.astype(np.float64)) - edit.loudness_lufs) < 0.05
    assert abs(report.gain_db + 4.0) < 0.05 and report.gain_reduction_db == 0.0
    assert report.level_method == "gain"
    # Louder by 3 LU: the peak (-0.5 dBFS) allows 0.4 dB of gain; the limiter does the rest
    # (tests/test_loudness.py has its figures).
    edit.loudness_lufs = measured + 3.0
    report = render(tmp_path / "raw.wav", edit, tmp_path / "loud.wav", seam_search_ms=0)
    loud, _ = audio.read(tmp_path / "loud.wav")
    assert report.level_method == "limiter" and report.gain_reduction_db == 0.0
    assert np.abs(loud).max() <= 10 ** (TRUE_PEAK_CEILING_DBTP / 20) + 1 / 2 ** 23
    assert abs(meter.integrated_loudness(loud.astype(np.float64)) - edit.loudness_lufs) < 0.3
    assert abs(meter.integrated_loudness(loud.astype(np.float64)) - report.loudness_lufs) < 0.01


def test_streaming_loudness_meter_matches_pyloudnorm(rng):
    for sr, channels, seconds in ((44100, 2, 7.33), (48000, 1, 3.0), (22050, 5, 4.2)):
        n = int(sr * seconds)
        t = np.arange(n) / sr
        x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) * (1 + np.sin(t))
                      + 0.05 * rng.standard_normal(n) for c in range(channels)], 1)
        x[:n // 3] *= 0.01  # a quiet start that the relative gate leaves out
        meter = LoudnessMeter(sr, channels)
        for i in range(0, n, 12345):
            meter.add(x[i:i + 12345])
        assert abs(meter.integrated_lufs() - pyloudnorm.Meter(sr).integrated_loudness(x)) < 1e-6
    assert LoudnessMeter(44100, 2).integrated_lufs() == float("-inf")


# ------------------------------------------------------------ the editor's levels


def write_pair(data_dir, name: str, *, mastering_db: float, gains_db: list[float],
               edit_rms: float, seed: int) -> float:
    """A pair whose alignment info records `mastering_db` and segments of `gains_db` (2 s
    each, plus one 0.5 s segment at +20 dB that is too short to count); its edit is noise
    at `edit_rms`. Returns the edit's loudness (pyloudnorm)."""
    from editorbot.layout import Layout
    layout = Layout(data_dir)
    for folder in (layout.input_dir, layout.output_dir, layout.pointer_dir):
        folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    raw = 0.1 * rng.standard_normal((SR * 4, 2)).astype(np.float32)
    edit = edit_rms * rng.standard_normal((SR * 3, 2)).astype(np.float32)
    audio.write(layout.input_dir / f"{name}_raw.wav", raw, SR, subtype="FLOAT")
    audio.write(layout.output_dir / f"{name}_edit.wav", edit, SR, subtype="FLOAT")
    segments = [{"raw_start_s": 0.0, "duration_s": 2.0, "gain_db": g} for g in gains_db]
    segments += [{"raw_start_s": 1.0, "duration_s": 0.5, "gain_db": 20.0},
                 {"raw_start_s": None, "duration_s": 3.0, "gain_db": -30.0}]
    info = {"mastering_gain_db": mastering_db, "segments": segments}
    (layout.pointer_dir / f"{name}_info.json").write_text(json.dumps(info))
    return pyloudnorm.Meter(SR).integrated_loudness(edit.astype(np.float64))


def test_editor_levels_are_the_range_alignment_measured_and_the_loudness_the_edits_share(tmp_path):
    from editorbot.levels import editor_levels
    lufs = [write_pair(tmp_path, "a", mastering_db=3.0, gains_db=[-1.0, 0.0, 2.5], edit_rms=0.1,
                       seed=0),
            write_pair(tmp_path, "b", mastering_db=4.0, gains_db=[0.0, -2.0], edit_rms=0.11,
                       seed=1)]
    levels = editor_levels(tmp_path, ["a", "b"])
    # Segment levels over the raw: 3 + (-1, 0, 2.5) and 4 + (0, -2); short and foreign ones out.
    assert levels["gain_db"] == [2.0, 5.5]
    assert levels["mastering_gain_db"] == 3.5 and levels["pairs"] == 2
    assert abs(levels["loudness_lufs"] - np.mean(lufs)) < 0.01  # 0.8 LU apart: it aims at one
    write_pair(tmp_path, "c", mastering_db=3.0, gains_db=[0.0], edit_rms=0.03, seed=2)
    spread = editor_levels(tmp_path, ["a", "b", "c"])
    assert spread["loudness_lufs"] is None and spread["loudness_spread_lu"] > 4


def test_model_gains_stay_within_the_editors_range_at_the_editors_level():
    from editorbot.levels import with_levels
    from editorbot.levels import at_editor_level
    from editorbot.supervised.infer import at_level
    levels = {"pairs": 4, "gain_db": [2.0, 5.5], "mastering_gain_db": 3.6,
              "loudness_lufs": -11.0, "loudness_spread_lu": 0.4}
    boosted = Edit([Segment(0.0, 2.0, gain_db=g) for g in (4.0, 6.0, 5.0, 9.0)])
    # Supervised: the model's gains are relative; their median goes to the editor's level.
    edit = with_levels(at_level(boosted, levels["mastering_gain_db"]), levels)
    # median 5.5 -> 3.6: a shift of -1.9, then 7.1 is held at the editor's highest, 5.5
    assert [s.gain_db for s in edit.segments] == [2.1, 4.1, 3.1, 5.5]
    assert edit.loudness_lufs == -11.0
    # RL: the policy's gains are moves from the editor's level.
    edit = at_editor_level(Edit([Segment(0.0, 2.0, gain_db=g) for g in (0.0, 6.0, -6.0)]), levels)
    assert [s.gain_db for s in edit.segments] == [3.6, 5.5, 2.0]
    assert at_editor_level(boosted, None) is boosted


def test_a_checkpoint_with_malformed_levels_is_refused(tmp_path):
    import pytest
    import torch

    from editorbot.checkpoint import load_checkpoint, save_checkpoint
    from editorbot.errors import UserError
    base = {"kind": "rl", "config": {}, "model_state": {"w": torch.zeros(1)}, "normalizer": {}}
    good = {"pairs": 2, "gain_db": [-1.0, 2.0], "mastering_gain_db": 0.5, "loudness_lufs": None,
            "loudness_spread_lu": 2.0}
    save_checkpoint(tmp_path / "good.pt", {**base, "levels": good})
    assert load_checkpoint(tmp_path / "good.pt")["levels"] == good
    save_checkpoint(tmp_path / "bad.pt", {**base, "levels": {**good, "gain_db": [3.0, 1.0]}})
    with pytest.raises(UserError, match="levels"):
        load_checkpoint(tmp_path / "bad.pt")
