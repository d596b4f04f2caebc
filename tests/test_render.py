"""Rendering: exact copies of raw samples, clean seams, seam search, fades, effects, blocks, CLI.

Every raw here is generated, so each test knows which raw sample belongs at each output
sample. Budget: about 20 s on a loaded 2-core machine.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from editorbot import audio, render as render_mod
from editorbot.cli import main
from editorbot.edits import (Edit, Segment, check_segment, pointers_to_segments,
                             segment_samples, segments_to_pointers)
from editorbot.errors import UserError
from editorbot.features import FeatureParams
from editorbot.render import crossfade_gains, fade_curve, render, render_array
from editorbot.seams import raw_click_stats, seam_click, seam_window

from .conftest import run_cli


def music(sr: int, seconds: float, channels: int, seed: int = 0,
          noise: float = 0.003) -> np.ndarray:
    """Decaying tones on a 0.5 s beat plus a little noise, (n, channels) float32, peak < 0.9.

    Pitches change every beat, so two places in it rarely share a waveform."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = np.zeros(n)
    for onset in np.arange(0, seconds, 0.5):
        i = int(onset * sr)
        f = 110 * 2 ** (rng.integers(0, 24) / 12)
        tail = t[: n - i]
        x[i:] += 0.25 * np.sin(2 * np.pi * f * tail + rng.uniform(0, 6.28)) * np.exp(-tail * 3)
    x += noise * rng.standard_normal(n)
    chans = [x * (1 - 0.3 * c) + 0.02 * c * np.sin(2 * np.pi * 330 * t) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)


def write_raw(path, sr=44100, seconds=8.0, channels=2, subtype="PCM_16", seed=0):
    x = music(sr, seconds, channels, seed)
    audio.write(path, x, sr, subtype=subtype)
    data, _ = audio.read(path)  # what the file holds after quantisation
    return data


def reference(raw: np.ndarray, edit: Edit, sr: int) -> np.ndarray:
    """The edit model's contract, written plainly: each segment's samples times its gain."""
    starts, lengths, raw_starts = segment_samples(edit, sr)
    out = np.zeros((int(starts[-1] + lengths[-1]), raw.shape[1]), np.float64)
    for seg, e, n, r in zip(edit.segments, starts, lengths, raw_starts):
        if r >= 0:
            out[e:e + n] = raw[r:r + n] * 10 ** (seg.gain_db / 20)
    return out


def outside_seams(n: int, edit: Edit, sr: int, margin_s: float) -> np.ndarray:
    """Mask of output samples farther than margin_s + half a crossfade from every seam."""
    mask = np.ones(n, bool)
    for seg, start in zip(edit.segments[1:], edit.edit_starts_s()[1:]):
        half = margin_s + seg.crossfade_s / 2
        mask[max(0, int((start - half) * sr)):int((start + half) * sr) + 1] = False
    return mask


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    err = np.sum((out - ref) ** 2)
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(ref ** 2) / err))


EDIT = Edit([Segment(0.5, 1.5), Segment(4.0, 1.0, crossfade_s=0.04), Segment(2.0, 1.2),
             Segment(3.2, 0.8, gain_db=-6.0), Segment(6.0, 1.25, crossfade_s=0.1)])


@pytest.mark.parametrize("sr,channels", [(44100, 2), (48000, 1), (96000, 2), (22050, 1)])
def test_copies_raw_samples_outside_crossfades(tmp_path, sr, channels):
    raw = write_raw(tmp_path / "raw.wav", sr=sr, channels=channels)
    out, out_sr = render_array(tmp_path / "raw.wav", EDIT, seam_search_ms=0)
    assert out_sr == sr and out.shape == (int(round(EDIT.duration_s * sr)), channels)
    ref = reference(raw, EDIT, sr)
    mask = outside_seams(len(out), EDIT, sr, margin_s=0.003)
    assert snr_db(ref[mask], out[mask]) >= 100  # the same samples, up to float32 gain rounding
    assert np.array_equal(out[:int(1.47 * sr)], raw[int(0.5 * sr):int(1.97 * sr)])


def test_file_keeps_rate_channels_and_bit_depth(tmp_path):
    raw = write_raw(tmp_path / "raw.wav", sr=48000, channels=2, subtype="PCM_24")
    report = render(tmp_path / "raw.wav", EDIT, tmp_path / "out.wav", seam_search_ms=0)
    info = audio.probe(tmp_path / "out.wav")
    assert (info.sr, info.channels, info.subtype) == (48000, 2, "PCM_24")
    assert report.subtype == "PCM_24" and report.frames == info.frames
    got = sf.read(tmp_path / "out.wav", dtype="int32")[0] >> 8
    want = (raw[int(0.5 * 48000):int(1.47 * 48000)] * 2 ** 23).astype(np.int64)
    assert np.array_equal(got[:len(want)], want)  # 24-bit samples copied bit for bit
    flac = render(tmp_path / "raw.wav", EDIT, tmp_path / "out.flac", seam_search_ms=0,
                  subtype="PCM_16")
    assert audio.probe(tmp_path / "out.flac").subtype == "PCM_16" and flac.sr == 48000


def test_float_raw_to_flac_falls_back_to_24_bit(tmp_path):
    write_raw(tmp_path / "raw.wav", subtype="FLOAT", seconds=8.0)
    render(tmp_path / "raw.wav", EDIT, tmp_path / "out.flac")
    assert audio.probe(tmp_path / "out.flac").subtype == "PCM_24"


def test_segments_past_the_raw_end_are_a_clear_error(tmp_path):
    write_raw(tmp_path / "raw.wav", seconds=8.0)
    bad = Edit([Segment(1.0, 2.0), Segment(7.0, 1.5)])
    with pytest.raises(UserError, match=r"segment 1 plays raw 7.000-8.500 s, past the raw's "
                                        r"end at 8.000 s"):
        render(tmp_path / "raw.wav", bad, tmp_path / "out.wav")
    assert not (tmp_path / "out.wav").exists()
    assert not list(tmp_path.glob(".out.wav*"))  # no temp file left behind
    # Pointer rounding may run up to one analysis hop past the end; that renders.
    render_array(tmp_path / "raw.wav", Edit([Segment(7.0, 1.0 + 256 / 22050)]))


def test_refuses_to_overwrite_the_raw_and_odd_outputs(tmp_path):
    write_raw(tmp_path / "raw.wav", seconds=8.0)
    before = (tmp_path / "raw.wav").read_bytes()
    with pytest.raises(UserError, match="is the raw recording"):
        render(tmp_path / "raw.wav", EDIT, tmp_path / "raw.wav")
    with pytest.raises(UserError, match=r"\.wav, \.flac or \.ogg"):
        render(tmp_path / "raw.wav", EDIT, tmp_path / "out.mp3")
    assert (tmp_path / "raw.wav").read_bytes() == before


def _peak_and_trough(raw: np.ndarray, sr: int, near_s: float, sign: float) -> int:
    """The sample near `near_s` where channel 0 is at its most positive (sign=1) or negative."""
    i0 = int(near_s * sr)
    return i0 + int(np.argmax(sign * raw[i0:i0 + int(0.02 * sr), 0]))


def test_seams_clean_where_a_naive_cut_clicks(tmp_path):
    sr = 44100
    raw = write_raw(tmp_path / "raw.wav", sr=sr, seconds=8.0)
    cut_out = _peak_and_trough(raw, sr, 2.1, +1)  # leave at a crest ...
    cut_in = _peak_and_trough(raw, sr, 5.3, -1)   # ... enter at a trough: a naive cut clicks
    edit = Edit([Segment(1.0, (cut_out - sr) / sr), Segment(cut_in / sr, 1.0)])
    stats = raw_click_stats(tmp_path / "raw.wav")
    naive = np.concatenate([raw[sr:cut_out], raw[cut_in:cut_in + sr]])
    w0, w1 = seam_window(cut_out - sr, sr)
    step, burst = seam_click(naive[w0:w1], sr)
    assert step > 3 * stats.step_p99 and burst > 2 * stats.burst_p99

    out, _, report = render_array(tmp_path / "raw.wav", edit, with_report=True)
    (seam,) = report.seams
    assert seam.clean, seam.line()
    assert seam.step_ratio <= 1 and seam.burst_ratio <= 1
    # Measured independently on the output: the same numbers the report gives.
    at = int(round(seam.edit_s * sr))
    w0, w1 = seam_window(at, sr)
    assert seam_click(out[w0:w1], sr) == pytest.approx((seam.step, seam.burst), rel=1e-5)
    # Seam search off: the short default crossfade alone already removes the step.
    _, _, plain = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0, with_report=True)
    assert plain.seams[0].step_ratio <= 1.0


def test_loudness_steps_are_reported(tmp_path):
    sr = 44100
    t = np.arange(6 * sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t))[:, None].astype(np.float32)
    audio.write(tmp_path / "raw.wav", x, sr, subtype="FLOAT")
    # The same continuous raw audio, 6 dB quieter after 2 s: a gain seam, linear crossfade.
    edit = Edit([Segment(1.0, 1.0), Segment(2.0, 1.0, gain_db=-6.0), Segment(4.5, 1.0)])
    out, _, report = render_array(tmp_path / "raw.wav", edit, with_report=True)
    steps = [s.loudness_step_db for s in report.seams]
    assert steps == pytest.approx([-6.0, 6.0], abs=0.05)
    assert report.seams[0].corr == 1.0 and report.seams[0].moved_ms == 0.0


def test_seam_search_finds_where_the_two_sides_match(tmp_path):
    sr = 44100
    t = np.arange(6 * sr) / sr
    # A wandering tone of constant level: only the waveform tells joins apart.
    freq = 1500 + 1000 * np.sin(2 * np.pi * 0.7 * t) + 400 * np.sin(2 * np.pi * 2.3 * t)
    x = (0.3 * np.sin(np.cumsum(2 * np.pi * freq / sr)))[:, None].astype(np.float32)
    # The 10 ms around raw 1.0 s + 7 ms equal those around raw 4.0 s + 7 ms: the best join.
    a, b, k = sr + int(0.007 * sr), 4 * sr + int(0.007 * sr), int(0.010 * sr)
    x[b - k // 2:b + k // 2] = x[a - k // 2:a + k // 2]
    audio.write(tmp_path / "raw.wav", x, sr, subtype="FLOAT")
    edit = Edit([Segment(0.2, 0.8), Segment(4.0, 1.0)])
    out, _, report = render_array(tmp_path / "raw.wav", edit, with_report=True)
    (seam,) = report.seams
    # Offsets whose 5 ms comparison window lies inside the copy match perfectly: 7 +- 2.5 ms
    # (the move penalty leans towards the near end).
    assert 4.5 - 1000 / sr <= seam.moved_ms < 7.0
    assert seam.corr == pytest.approx(1.0)
    # Matching sides and a linear crossfade: the output plays the raw straight through.
    at = int(round(seam.edit_s * sr))
    start, half = int(0.2 * sr), int(0.0025 * sr)
    assert np.allclose(out[at - half:at + half], x[start + at - half:start + at + half], atol=1e-6)
    moved = int(round(seam.moved_ms * sr / 1000))
    assert report.edit.segments[0].duration_s == pytest.approx(0.8 + moved / sr, abs=1e-9)
    assert report.edit.segments[1].raw_start_s == pytest.approx(4.0 + moved / sr, abs=1e-9)
    assert report.edit.duration_s == pytest.approx(edit.duration_s, abs=1e-9)
    # Without search the cut stays, and the unrelated sides get an equal-power crossfade.
    _, _, fixed = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0, with_report=True)
    assert fixed.seams[0].moved_ms == 0 and fixed.seams[0].corr < 0.5


def test_cuts_snap_to_beats(tmp_path):
    write_raw(tmp_path / "raw.wav", seconds=8.0)
    beats = np.arange(0, 8, 0.5)
    edit = Edit([Segment(0.5, 1.5), Segment(4.03, 1.0), Segment(2.46, 1.0)])
    _, _, report = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0, beats_s=beats,
                                with_report=True)
    assert [s.raw_in_s for s in report.seams] == pytest.approx([4.0, 2.5], abs=1 / 44100)
    assert [s.moved_ms for s in report.seams] == pytest.approx([-30.0, 40.0], abs=0.05)
    assert report.edit.duration_s == pytest.approx(edit.duration_s, abs=1e-9)


def test_fades_gain_and_silence(tmp_path):
    sr = 22050
    x = np.full((4 * sr, 1), 0.5, np.float32)
    audio.write(tmp_path / "raw.wav", x, sr, subtype="FLOAT")
    edit = Edit([Segment(0.0, 1.0, fade_in_s=0.5), Segment(None, 0.5),
                 Segment(2.0, 1.0, gain_db=-6.0206, fade_out_s=0.25)])
    out, _ = render_array(tmp_path / "raw.wav", edit, seam_search_ms=0)
    i = np.arange(int(0.5 * sr))
    assert np.allclose(out[i, 0], 0.5 * fade_curve((i + 0.5) / (0.5 * sr)), atol=1e-6)
    assert out[0, 0] < 0.01 and np.allclose(out[int(0.5 * sr):int(0.99 * sr), 0], 0.5)
    assert np.all(out[int(1.01 * sr):int(1.49 * sr)] == 0)  # not in the raw: silence
    assert np.allclose(out[int(1.51 * sr):int(2.2 * sr), 0], 0.25, atol=1e-5)
    tail = out[-int(0.25 * sr):, 0]
    assert tail[-1] < 0.01 and np.all(np.diff(tail) <= 1e-7)


def test_crossfade_gains_keep_power():
    t = np.linspace(0, 1, 101)
    for corr in (0.0, 0.4, 1.0):
        up, down = crossfade_gains(t, corr)
        assert np.allclose(up ** 2 + down ** 2 + 2 * corr * up * down, 1.0)
        assert up[0] == 0 and down[-1] == 0
    up, down = crossfade_gains(t, 1.0)
    assert np.allclose(up + down, 1.0)  # identical sides: linear, no bump


def test_effects_registry(tmp_path):
    sr = 44100
    t = np.arange(2 * sr) / sr
    x = (0.2 * np.sin(2 * np.pi * 200 * t) + 0.2 * np.sin(2 * np.pi * 12000 * t))[:, None]
    audio.write(tmp_path / "raw.wav", x.astype(np.float32), sr, subtype="FLOAT")
    gain = Edit([Segment(0.0, 1.0, effect={"name": "gain", "params": {"gain_db": -20.0}})])
    out, _ = render_array(tmp_path / "raw.wav", gain)
    assert np.allclose(out[:, 0], 0.1 * x[:sr, 0], atol=1e-6)
    low = Edit([Segment(0.0, 2.0, effect={"name": "lowpass",
                                          "params": {"cutoff_frequency_hz": 1000}})])
    out, _ = render_array(tmp_path / "raw.wav", low)
    spec_in = np.abs(np.fft.rfft(x[sr // 2:3 * sr // 2, 0]))
    spec_out = np.abs(np.fft.rfft(out[sr // 2:3 * sr // 2, 0]))
    assert spec_out[12000] < 0.15 * spec_in[12000] and spec_out[200] > 0.9 * spec_in[200]
    with pytest.raises(UserError, match="unknown effect 'flanger'; known effects: compressor"):
        render_array(tmp_path / "raw.wav", Edit([Segment(0.0, 1.0, effect={"name": "flanger"})]))
    with pytest.raises(UserError, match="effect 'eq' has no parameter 'freq'"):
        render_array(tmp_path / "raw.wav",
                     Edit([Segment(0.0, 1.0, effect={"name": "eq", "params": {"freq": 1}})]))


def test_effects_registry_stands_below_the_renderer():
    """editorbot.effects holds every effect without importing the renderer or rl/ (issue 25:
    render and rl/effects once imported each other), and apply_effect checks parameters."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", (
        "import json, sys, editorbot.effects as e; print(json.dumps([sorted(e.EFFECTS), "
        "'editorbot.render' in sys.modules, 'editorbot.rl' in sys.modules]))")],
        capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [
        ["compressor", "distortion", "eq", "gain", "high_shelf", "highpass", "low_shelf",
         "lowpass", "pitch", "reverb", "reverse", "speed"], False, False]
    from editorbot.effects import apply_effect
    x = np.ones((100, 2), np.float32)
    assert np.allclose(apply_effect("gain", {"gain_db": -20.0}, x, 8000), 0.1)
    with pytest.raises(ValueError, match="effect 'low_shelf' has no parameter 'freq'"):
        apply_effect("low_shelf", {"freq": 1}, x, 8000)


def test_reads_only_the_segments_in_blocks(tmp_path, monkeypatch):
    sr = 8000
    raw = write_raw(tmp_path / "raw.wav", sr=sr, seconds=60.0, channels=1)
    edit = Edit([Segment(50.0, 3.0), Segment(10.0, 2.5, crossfade_s=0.5), Segment(30.0, 1.0)])
    whole, _ = render_array(tmp_path / "raw.wav", edit)
    read = []
    real = audio.iter_blocks

    def counting(path, **kw):
        for block in real(path, **kw):
            read.append(len(block))
            yield block
    monkeypatch.setattr(render_mod, "iter_blocks", counting)
    monkeypatch.setattr(render_mod, "READ_BLOCK_S", 0.7)  # many blocks per segment
    blocked, _ = render_array(tmp_path / "raw.wav", edit)
    assert np.array_equal(blocked, whole)
    assert max(read) <= int(0.7 * sr)
    # The segments, their crossfade margins and the small seam-search windows; not the raw.
    assert edit.duration_s * sr <= sum(read) <= 1.3 * edit.duration_s * sr
    assert np.array_equal(whole[:int(2.7 * sr)], raw[50 * sr:int(52.7 * sr)])


def test_render_cli(tmp_path):
    write_raw(tmp_path / "raw.wav", seconds=8.0)
    EDIT.save(tmp_path / "edit.json")
    out = tmp_path / "out" / "take.wav"
    code = main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "edit.json"),
                 "-o", str(out)])
    assert code == 0 and audio.probe(out).frames == int(round(EDIT.duration_s * 44100))
    for name in ("take.otio", "take.edl", "take.fcp.xml", "take_labels.txt", "take_segments.json"):
        assert (out.parent / name).is_file(), name
    # The exported segments re-render to the same audio (seams already moved, search off).
    again = main(["render", str(tmp_path / "raw.wav"), "--segments",
                  str(out.parent / "take.otio"), "-o", str(tmp_path / "again.wav"),
                  "--seam-search-ms", "0", "--no-exports"])
    assert again == 0
    assert np.array_equal(sf.read(out)[0], sf.read(tmp_path / "again.wav")[0])
    assert not (tmp_path / "again.otio").exists()

    pointers = np.r_[np.arange(40, 200), np.arange(220, 320), -np.ones(20, int)]
    np.save(tmp_path / "x_pointers.npy", pointers)
    json.dump({"sample_rate": 22050, "hop_length": 512}, open(tmp_path / "x_info.json", "w"))
    assert main(["render", str(tmp_path / "raw.wav"), "--pointers",
                 str(tmp_path / "x_pointers.npy"), "-o", str(tmp_path / "p.flac")]) == 0
    assert audio.probe(tmp_path / "p.flac").frames == int(round(280 * 512 / 22050 * 44100))

    # Beats (raw seconds, one per line): the cuts snap to them; the exports say where.
    (tmp_path / "beats.txt").write_text("\n".join(f"{0.013 + 0.5 * k:.3f}" for k in range(16)))
    assert main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "edit.json"),
                 "-o", str(tmp_path / "b.wav"), "--beats", str(tmp_path / "beats.txt"),
                 "--seam-search-ms", "0"]) == 0
    snapped = Edit.load(tmp_path / "b_segments.json").segments
    assert [snapped[i].raw_start_s for i in (1, 2, 4)] == pytest.approx([4.013, 2.013, 6.013],
                                                                      abs=1 / 44100)
    (tmp_path / "beats.txt").write_text("1.0\nsoon\n")
    assert main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "edit.json"),
                 "-o", str(tmp_path / "b.wav"), "--beats", str(tmp_path / "beats.txt")]) == 2

    Edit([Segment(6.0, 3.0)]).save(tmp_path / "long.json")
    assert main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "long.json"),
                 "-o", str(tmp_path / "x.wav")]) == 2
    assert main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "edit.json"),
                 "-o", str(tmp_path / "raw.wav")]) == 2
    assert main(["render", str(tmp_path / "nope.wav"), "--segments", str(tmp_path / "edit.json"),
                 "-o", str(tmp_path / "x.wav")]) == 2
    assert main(["render", str(tmp_path / "raw.wav"), "--segments", str(tmp_path / "none.json"),
                 "-o", str(tmp_path / "x.wav")]) == 2
    # The installed entry point: a usage error (no edit given) exits 2 too.
    proc = run_cli("render", tmp_path / "raw.wav", "-o", tmp_path / "x.wav")
    assert proc.returncode == 2 and "--pointers" in proc.stderr
    proc = run_cli("render", tmp_path / "raw.wav", "--segments", tmp_path / "long.json",
                   "-o", tmp_path / "x.wav")
    assert proc.returncode == 2 and "past the raw's end" in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_reproduces_the_synthetic_corpus_unmastered_edit(tmp_path):
    """The synth's truth segments, rendered from its raw, give back its unmastered edit."""
    from editorbot.synth import write_corpus
    (name,) = write_corpus(tmp_path, pairs=1, seed=0, minutes=2.0, persona="looper",
                           mastering="none", progress=False)
    truth = json.loads((tmp_path / "truth" / f"{name}.json").read_text())
    edit = Edit.from_json(truth)
    raw_path = tmp_path / "input" / f"{name}_raw.wav"
    want, sr = audio.read(tmp_path / "unmastered" / f"{name}_edit.wav")
    assert sr == truth["raw_sr"] and any(s.fade_in_s for s in edit.segments)
    out, out_sr, report = render_array(raw_path, edit, seam_search_ms=0, with_report=True)
    assert out_sr == sr and out.shape == want.shape
    mask = np.ones(len(out), bool)
    for seam in report.seams:  # the truth's crossfades and the renderer's hard-cut ones
        at, half = int(round(seam.edit_s * sr)), int(round(seam.crossfade_ms * sr / 2000))
        mask[at - half:at + half] = False
    assert [round(s.edit_s * sr) for s in report.seams] == \
        [round(t) for t in np.cumsum([s.duration_s * sr for s in edit.segments])[:-1]]
    assert mask.mean() > 0.99
    assert snr_db(want[mask].astype(np.float64), out[mask]) >= 60
    # With seam search on, every seam is at least as clean as the raw.
    _, _, searched = render_array(raw_path, edit, with_report=True)
    assert all(s.clean for s in searched.seams), "\n".join(searched.lines())


# ------------------------------------------------------------------ the edit model

def test_pointers_segments_pointers_is_lossless():
    rng = np.random.default_rng(0)
    for params in (FeatureParams(), FeatureParams(sr=44100, hop_length=441)):
        parts = [np.arange(s, s + n) for s, n in zip(rng.integers(0, 5000, 12),
                                                     rng.integers(1, 400, 12))]
        parts.insert(3, np.full(17, -1))
        parts.append(parts[1][:50])  # a loop back to audio already played
        pointers = np.concatenate(parts).astype(np.int64)
        edit = pointers_to_segments(pointers, params)
        assert np.array_equal(segments_to_pointers(edit, params, len(pointers)), pointers)
        again = Edit.from_json(json.loads(json.dumps(edit.to_json())))
        assert np.array_equal(segments_to_pointers(again, params, len(pointers)), pointers)


def test_segment_samples_add_up(tmp_path):
    edit = Edit([Segment(0.1, 1 / 3), Segment(2.0, 0.25), Segment(None, 1 / 7), Segment(1.0, 0.2)])
    starts, lengths, raw = segment_samples(edit, 44100)
    assert lengths.sum() == round(edit.duration_s * 44100)
    assert np.array_equal(starts[1:], np.cumsum(lengths)[:-1])
    assert raw.tolist() == [4410, 88200, -1, 44100]
    edit.save(tmp_path / "e.json")
    assert Edit.load(tmp_path / "e.json").segments == edit.segments


@pytest.mark.parametrize("bad,message", [
    (Segment(1.0, 1.0, fade_in_s=-1.0), "fade_in_s -1.0 < 0"),
    (Segment(-2.0, 1.0), "raw_start_s -2.0 < 0"),
    (Segment(1.0, float("nan")), "duration_s must be a finite number"),
    (Segment(1.0, 1.0, effect={"gain_db": 3}), "effect must be"),
    (Segment(1.0, 1.0, effect={"name": "eq", "params": {"gain_db": "loud"}}), "'gain_db' must be"),
])
def test_bad_segments_are_user_errors(tmp_path, bad, message):
    with pytest.raises(UserError, match=message):
        check_segment(bad, 0, "x.json")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"segments": [{**bad.__dict__}]}))
    with pytest.raises(UserError, match="s.json: segment 0"):
        Edit.load(path)
