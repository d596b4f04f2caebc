"""Alignment of edits to their raw recordings, on generated music with exact truth.

Each edit is cut from a generated jam with known segments (cuts longer than 30 s, loops,
reorders, crossfades, fades, gain), optionally mastered, resampled, MP3-coded or delayed;
the test checks the pointers, the joins and the report against that truth.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from editorbot.align import align_files
from editorbot.align.refine import locate_seam
from editorbot.audio import write
from editorbot.edits import Edit, Op, Segment, segments_to_pointers
from editorbot.features import DEFAULT_PARAMS as P

from .conftest import run_cli

FPS = P.frames_per_s


def jam(seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    """Music-like audio (n, channels): kicks, noise hits and notes with harmonics on a
    jittered half-beat grid; no two bars are the same."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros((n + 2 * sr, channels), np.float32)
    scale = 55 * 2 ** (np.array([0, 2, 3, 5, 7, 8, 10]) / 12)
    step = 60 / rng.uniform(95, 125) / 2
    t0, root = 0.0, 0
    while t0 < seconds:
        i = int(t0 * sr)
        pan = rng.uniform(0.6, 1.0, channels).astype(np.float32)
        if rng.random() < 0.5:
            t = np.arange(int(0.15 * sr)) / sr
            kick = 0.5 * np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-30 * t)) / sr) * np.exp(-20 * t)
            y[i:i + len(t)] += kick[:, None].astype(np.float32)
        if rng.random() < 0.7:
            m = int(rng.uniform(0.03, 0.1) * sr)
            hit = 0.1 * np.diff(rng.normal(0, 1, m + 1)) * np.exp(-np.arange(m) / (0.02 * sr))
            y[i:i + m] += hit[:, None].astype(np.float32) * pan
        for _ in range(int(rng.integers(0, 3))):
            f0 = scale[(root + rng.integers(0, 7)) % 7] * 2 ** rng.integers(0, 4)
            t = np.arange(int(rng.uniform(0.1, 0.8) * sr)) / sr
            h = np.arange(1, 7)[:, None]
            tone = (rng.uniform(0.3, 1, (6, 1)) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6, (6, 1)))).sum(0)
            note = 0.12 * tone * np.minimum(1, t / 0.005) * np.exp(-t * rng.uniform(2, 8))
            y[i:i + len(t)] += note[:, None].astype(np.float32) * pan
        if rng.random() < 0.05:
            root = int(rng.integers(0, 7))
        t0 += step + rng.normal(0, 0.006)
    y = y[:n] + rng.normal(0, 1e-3, (n, channels)).astype(np.float32)
    return y / (np.abs(y).max() * 1.25)


def splice(raw: np.ndarray, sr: int, edit: Edit) -> np.ndarray:
    """The edit's audio, with edits.py's conventions: equal-power crossfades centred on the
    seams, linear fades inside segments, gains."""
    starts = edit.edit_starts_s()
    out = np.zeros((int(round(edit.duration_s * sr)), raw.shape[1]), np.float32)
    segs = edit.segments
    for k, seg in enumerate(segs):
        h_in = int(round(seg.crossfade_s * sr / 2))
        h_out = int(round(segs[k + 1].crossfade_s * sr / 2)) if k + 1 < len(segs) else 0
        a, n = int(round(seg.raw_start_s * sr)), int(round(seg.duration_s * sr))
        env = np.full(h_in + n + h_out, 10 ** (seg.gain_db / 20), np.float32)
        if seg.fade_in_s:
            m = int(round(seg.fade_in_s * sr))
            env[h_in:h_in + m] *= np.linspace(0, 1, m)
        if seg.fade_out_s:
            m = int(round(seg.fade_out_s * sr))
            env[h_in + n - m:h_in + n] *= np.linspace(1, 0, m)
        if h_in:
            env[:2 * h_in] *= np.sin(np.pi / 2 * (np.arange(2 * h_in) + 0.5) / (2 * h_in))
        if h_out:
            env[-2 * h_out:] *= np.cos(np.pi / 2 * (np.arange(2 * h_out) + 0.5) / (2 * h_out))
        e0 = int(round(starts[k] * sr)) - h_in
        out[e0:e0 + len(env)] += raw[a - h_in:a + n + h_out] * env[:, None]
    return out


def master(y: np.ndarray, sr: int) -> np.ndarray:
    """Heavy mastering: +8 dB peak EQ, 8:1 compression, 11 kHz lowpass, make-up gain, limiter."""
    import pedalboard as pb

    board = pb.Pedalboard([pb.PeakFilter(1500, 8.0, 1.0), pb.Compressor(-24, 8, 5, 100),
                           pb.LowpassFilter(11000), pb.Gain(10), pb.Limiter(-1.0)])
    return board(y.T.copy(), sr).T


def check(result, truth: Edit, *, min_accuracy: float, join_ms: float = 50.0) -> None:
    """Pointers outside crossfades within +-1 frame of the truth; every true join found
    within join_ms and no others."""
    n = len(result.pointers)
    want = segments_to_pointers(truth, P, n)
    outside = np.ones(n, bool)
    for seg, start in zip(truth.segments, truth.edit_starts_s()):
        if seg.crossfade_s:
            outside[int((start - seg.crossfade_s / 2) * FPS):int((start + seg.crossfade_s / 2) * FPS) + 2] = False
    right = np.where(want >= 0, np.abs(result.pointers - want) <= 1, result.pointers < 0)
    assert right[outside].mean() >= min_accuracy
    true_joins = truth.edit_starts_s()[1:]
    found = result.edit.edit_starts_s()[1:]
    assert len(found) == len(true_joins), (found, true_joins)
    assert np.abs(found - true_joins).max() <= join_ms / 1000


@pytest.fixture(scope="module")
def raw22(tmp_path_factory):
    """An 80 s mono jam at 22050 Hz, and its path."""
    y = jam(80, 22050, seed=5)
    path = tmp_path_factory.mktemp("align") / "jam_raw.wav"
    write(path, y, 22050, subtype="FLOAT")
    return y, path


# A forward cut of more than 30 s, a loop (the same raw twice), a reorder back in time.
TRUTH = Edit([Segment(4.0, 9.0), Segment(50.0, 6.0, crossfade_s=0.02), Segment(50.0, 6.0),
              Segment(20.0, 7.5, crossfade_s=0.01), Segment(70.0, 6.0, crossfade_s=0.04)])


def test_cuts_loops_reorders_sample_exact(raw22, tmp_path):
    y, raw_path = raw22
    edit_path = write(tmp_path / "jam_edit.wav", splice(y, 22050, TRUTH), 22050, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    check(result, TRUTH, min_accuracy=0.999, join_ms=1.0)
    got_starts, want_starts = result.edit.edit_starts_s(), TRUTH.edit_starts_s()
    for got, want, t_got, t_want in zip(result.edit.segments, TRUTH.segments, got_starts, want_starts):
        # Every sample outside the crossfades maps exactly: the lag is right to the sample.
        assert got.raw_start_s - t_got == pytest.approx(want.raw_start_s - t_want, abs=0.5 / 22050)
        if not want.crossfade_s:
            assert t_got == pytest.approx(t_want, abs=1.5 / 22050)  # hard cuts: the exact sample
        assert got.crossfade_s == pytest.approx(want.crossfade_s, abs=0.006)
    info = result.info
    assert (info["cuts"], info["loops"], info["reorders"]) == (2, 1, 1)
    assert info["aligned_fraction"] == 1.0 and not info["warnings"]
    assert info["confidence"]["mean"] > 0.9
    assert result.pointers.dtype == np.int64 and result.ops.dtype == np.int8
    j_loop = int(np.ceil(15.0 * FPS))
    assert result.ops[j_loop] == Op.LOOP_START and result.ops[j_loop - 1] == Op.LOOP_END
    assert result.ops[int(np.ceil(9.0 * FPS))] == Op.SKIP
    assert result.ops[-1] == Op.STOP


def test_fades_and_gain(raw22, tmp_path):
    y, raw_path = raw22
    truth = Edit([Segment(10.0, 12.0, fade_in_s=1.5), Segment(40.0, 10.0, gain_db=-6.0),
                  Segment(60.0, 10.0, fade_out_s=3.0)])
    edit_path = write(tmp_path / "fade_edit.wav", splice(y, 22050, truth), 22050, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    check(result, truth, min_accuracy=0.995)
    first, second, last = result.edit.segments
    assert second.gain_db - first.gain_db == pytest.approx(-6.0, abs=1.0)
    assert 0.5 < first.fade_in_s <= 1.6 and 1.0 < last.fade_out_s <= 3.1
    assert result.ops[0] == Op.FADE_IN and result.ops[-2] == Op.FADE_OUT
    assert (result.pointers >= 0).all()  # faded audio is still the raw's


def test_mastered_resampled_mp3_mono_edit_of_stereo_raw(tmp_path):
    raw = jam(70, 44100, seed=9, channels=2)
    raw_path = write(tmp_path / "st_raw.wav", raw, 44100)
    truth = Edit([Segment(3.0, 10.0), Segment(45.0, 8.0, crossfade_s=0.03), Segment(20.0, 9.0, gain_db=3.0),
                  Segment(20.0, 9.0, crossfade_s=0.01), Segment(58.0, 8.0)])
    import soxr

    edit = master(splice(raw, 44100, truth), 44100).mean(axis=1)
    edit = soxr.resample(edit, 44100, 48000, quality="VHQ")
    edit_path = write(tmp_path / "st_edit.mp3", edit, 48000)
    result = align_files(raw_path, edit_path)
    check(result, truth, min_accuracy=0.99)
    assert result.info["edit"]["sr"] == 48000 and result.info["raw"]["channels"] == 2
    assert result.info["loops"] == 1


def test_codec_delay_moves_every_pointer(raw22, tmp_path):
    y, raw_path = raw22
    delay = 1105  # samples an MP3 decoder can add in front
    audio = np.concatenate([np.zeros((delay, 1), np.float32), splice(y, 22050, TRUTH)])
    edit_path = write(tmp_path / "delayed_edit.wav", audio, 22050, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    shifted = Edit([Segment(None, delay / 22050)] + TRUTH.segments)
    n = len(result.pointers)
    want = segments_to_pointers(shifted, P, n)
    inside = want >= 0
    assert (np.abs(result.pointers[inside] - want[inside]) <= 1).mean() > 0.995
    starts = result.edit.edit_starts_s()
    lags = [s.raw_start_s - t for s, t in zip(result.edit.segments, starts) if s.raw_start_s is not None]
    true_lags = [s.raw_start_s - t - delay / 22050 for s, t in zip(TRUTH.segments, TRUTH.edit_starts_s())]
    assert np.allclose(lags, true_lags, atol=2e-4)


def test_edit_not_from_this_raw(raw22, tmp_path, caplog):
    _, raw_path = raw22
    other = jam(40, 22050, seed=77)
    edit_path = write(tmp_path / "other_edit.wav", other[5 * 22050:35 * 22050], 22050)
    with caplog.at_level(logging.WARNING, logger="editorbot"):
        result = align_files(raw_path, edit_path)
    assert (result.pointers == -1).mean() >= 0.95
    assert (result.ops == Op.NOT_IN_RAW).mean() >= 0.95
    assert result.info["confidence"]["mean"] < 0.2
    assert result.info["warnings"] and "check that it was cut from this recording" in caplog.text


def test_foreign_insert_is_not_in_raw(raw22, tmp_path):
    y, raw_path = raw22
    foreign = jam(3, 22050, seed=123)
    a = splice(y, 22050, Edit([Segment(10.0, 8.0)]))
    b = splice(y, 22050, Edit([Segment(40.0, 8.0)]))
    edit_path = write(tmp_path / "insert_edit.wav", np.concatenate([a, foreign, b]), 22050, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    truth = Edit([Segment(10.0, 8.0), Segment(None, 3.0), Segment(40.0, 8.0)])
    check(result, truth, min_accuracy=0.99, join_ms=60.0)
    middle = slice(int(8.2 * FPS), int(10.8 * FPS))
    assert (result.ops[middle] == Op.NOT_IN_RAW).all()


def test_identical_material_is_written_down_not_jumped_to(tmp_path):
    """A stretch the raw holds twice, sample for sample, and an edit that plays a piece of
    it and then cuts forward to 0:30: from the first copy that is a cut forward, from the
    second a jump back, so the first is taken; the second is written down as an
    alternative, and the summary says so."""
    sr = 22050
    y = jam(60, sr, seed=11)
    y[40 * sr:50 * sr] = y[10 * sr:20 * sr]  # a sample-for-sample repeat inside the raw
    raw_path = write(tmp_path / "rep_raw.wav", y, sr, subtype="FLOAT")
    truth = Edit([Segment(11.0, 8.0), Segment(30.0, 6.0)])
    edit_path = write(tmp_path / "rep_edit.wav", splice(y, sr, truth), sr, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    check(result, truth, min_accuracy=0.999)
    first = result.info["segments"][0]
    assert [round(a["raw_start_s"], 2) for a in first["alternatives"]] == [41.0]
    assert first["alternatives"][0]["score"] > 0.99
    assert result.info["segments_with_alternatives"] == 1
    assert result.confidence[int(1 * FPS):int(7 * FPS)].max() <= 0.5  # where it is ambiguous
    assert (result.info["cuts"], result.info["loops"], result.info["reorders"]) == (1, 0, 0)
    proc = run_cli("align", raw_path, edit_path, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "the piece at 0:00.0 of the edit could also come from 0:41.0" in proc.stdout


def repeated_bars(seed: int, n_clips: int, pattern: list[int], sr: int = 22050) -> tuple[np.ndarray, float]:
    """Audio whose bars repeat sample for sample (loop-based music): `pattern` lists the
    clip each bar plays, clips cut from a generated jam; the bar is 1.9-2.1 s long, not a
    whole number of analysis frames. Returns the audio and the bar length in seconds."""
    rng = np.random.default_rng(seed)
    n = int(round((1.9 + 0.2 * rng.random()) * sr))
    src = jam(n_clips * n / sr + 1, sr, seed)
    clips = [src[i * n:(i + 1) * n] for i in range(n_clips)]
    return np.concatenate([clips[c] for c in pattern]), n / sr


def same_bar(pointers, want, bars, bar_s):
    """Frames whose pointer plays the same clip at the same place in the bar as the truth
    (any identical copy), within a frame."""
    bar_frames = bar_s * FPS
    ok = np.zeros(len(pointers), bool)
    both = (pointers >= 0) & (want >= 0)
    p, w = pointers[both], want[both]
    bp, bw = (p // bar_frames).astype(int), (w // bar_frames).astype(int)
    inside = (bp < len(bars)) & (bw < len(bars))
    same_clip = np.zeros(len(p), bool)
    same_clip[inside] = np.asarray(bars)[bp[inside]] == np.asarray(bars)[bw[inside]]
    phase = np.abs((p - bp * bar_frames) - (w - bw * bar_frames))
    ok[both] = same_clip & ((phase <= 1.5) | (np.abs(phase - bar_frames) <= 1.5))
    return ok


def test_loop_based_music_is_explained_by_the_fewest_forward_cuts(tmp_path):
    """Sections of one bar repeated sample for sample, in a cycle of six clips (each clip
    comes back every sixth section), and an edit of 8 forward cuts whose joins are all
    necessary (the clip after each join never follows the one before it in the raw). The
    alignment used to hop between copies of the bars, reporting loops and reorders; now
    the segments are the truth's, every cut lands on its join and moves forward."""
    sr = 22050
    rng = np.random.default_rng(4)
    bars = []
    while len(bars) < 150:
        bars += [len(bars) and (bars[-1] + 1) % 6 or 0] * int(rng.integers(4, 10))
    y, bar_s = repeated_bars(4, 6, bars)
    pieces, b = [], 1
    while len(pieces) < 9:
        n = int(rng.integers(2, 4))
        pieces.append((b, n))
        last = bars[b + n - 1]
        b = next(k for k in range(b + n + 1, len(bars)) if bars[k] not in (last, (last + 1) % 6))
        b += int(rng.integers(0, 3)) if bars[b + 2] == bars[b] else 0
    truth = Edit([Segment(b * bar_s, n * bar_s) for b, n in pieces])
    raw_path = write(tmp_path / "loops_raw.wav", y, sr, subtype="FLOAT")
    edit_path = write(tmp_path / "loops_edit.wav", master(splice(y, sr, truth), sr), sr, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    assert len(result.edit.segments) == len(truth.segments)
    found, true_joins = result.edit.edit_starts_s()[1:], truth.edit_starts_s()[1:]
    assert np.abs(found - true_joins).max() <= 0.05
    assert (result.info["cuts"], result.info["loops"], result.info["reorders"]) == (8, 0, 0)
    p = result.pointers
    assert not (np.diff(p[p >= 0]) < -43).any()  # never back in the raw
    want = segments_to_pointers(truth, P, len(p))
    assert same_bar(p, want, bars, bar_s).mean() >= 0.99


def test_a_trimmer_who_skips_false_starts_is_not_taught_to_jump(tmp_path):
    """A jam trimmer keeps three takes whole and in order; each take is made of bars that
    repeat sample for sample, and is preceded by noodling and a false start that replays
    its opening. The old alignment explained the edit with 15 or more segments, loops and
    reorders into the false starts; now it is the three takes, from their real starts."""
    sr = 22050
    rng = np.random.default_rng(6)
    parts, truth_segs, t = [], [], 0.0
    for k in range(3):
        take, _ = repeated_bars(60 + k, 4, [0] * 4 + [1] * 4 + [0] * 4 + [2, 2, 3, 3] + [0] * 4)
        take = take[:, :1] if take.ndim == 2 else take[:, None]
        noodle = 0.15 * jam(float(rng.uniform(4, 8)), sr, seed=160 + k)
        false_start = take[:int(rng.uniform(3, 7) * sr)].copy()
        false_start[-int(0.4 * sr):] *= np.linspace(1, 0, int(0.4 * sr), dtype=np.float32)[:, None]
        gap = np.zeros((int(rng.uniform(0.5, 2) * sr), 1), np.float32)
        for piece in (noodle, false_start, gap):
            parts.append(piece)
            t += len(piece) / sr
        truth_segs.append(Segment(t, len(take) / sr, crossfade_s=0.02 if truth_segs else 0.0))
        parts.append(take)
        t += len(take) / sr
    parts.append(0.15 * jam(5, sr, seed=999))
    y = np.concatenate(parts)
    truth = Edit(truth_segs)
    raw_path = write(tmp_path / "takes_raw.wav", y, sr, subtype="FLOAT")
    edit_path = write(tmp_path / "takes_edit.wav", master(splice(y, sr, truth), sr), sr, subtype="FLOAT")
    result = align_files(raw_path, edit_path)
    check(result, truth, min_accuracy=0.999)
    assert (result.info["cuts"], result.info["loops"], result.info["reorders"]) == (2, 0, 0)
    # Each take from its own start, to the sample (not from its false start, not from a copy).
    for got, want, t_got, t_want in zip(result.edit.segments, truth.segments,
                                        result.edit.edit_starts_s(), truth.edit_starts_s()):
        assert got.raw_start_s - t_got == pytest.approx(want.raw_start_s - t_want, abs=1 / sr)


def test_too_short_or_silent_audio_is_named_not_a_traceback(raw22, tmp_path):
    """Half a second of edit, or an edit of digital silence: one line naming the file, exit 2."""
    y, raw_path = raw22
    short = write(tmp_path / "short_edit.wav", y[:11025], 22050)
    silent = write(tmp_path / "quiet_edit.wav", np.zeros((20 * 22050, 1), np.float32), 22050)
    for edit_path, says in ((short, "too short to align"), (silent, "the audio is silent")):
        proc = run_cli("align", raw_path, edit_path, "--out", tmp_path / "out")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"{edit_path}: " in proc.stderr and says in proc.stderr


def test_seam_is_sample_exact_at_a_hard_cut():
    sr = 22050
    y = jam(30, sr, seed=3)[:, 0]
    cut = 5 * sr + 123
    edit = np.concatenate([y[2 * sr:2 * sr + cut], y[20 * sr:25 * sr]])
    seam, crossfade, same = locate_seam(edit, y, cut - 4000, cut + 4000, 2 * sr, 20 * sr - cut, cut, sr)
    assert (seam, crossfade, same) == (cut, 0, False)


def _pair_folder(root, y, sr):
    (root / "input").mkdir(parents=True)
    (root / "desired_output").mkdir()
    write(root / "input" / "good_raw.wav", y, sr)
    write(root / "desired_output" / "good_edit.wav", splice(y, sr, TRUTH), sr)
    (root / "input" / "broken_raw.wav").write_bytes(b"RIFF not really a wave file")
    write(root / "desired_output" / "broken_edit.wav", y[:sr], sr)
    write(root / "input" / "empty_raw.wav", y, sr)
    write(root / "desired_output" / "empty_edit.wav", np.zeros((0, 1), np.float32), sr)
    write(root / "input" / "lonely_raw.wav", y[:sr], sr)


def test_prepare_writes_the_contract_and_reports_bad_input(raw22, tmp_path):
    y, _ = raw22
    data, cache = tmp_path / "training_data", tmp_path / "cache"
    _pair_folder(data, y, 22050)
    proc = run_cli("prepare", "--data-dir", data, "--cache-dir", cache)
    assert proc.returncode == 2, proc.stderr
    assert "good: 100.0% aligned, 2 cuts, 1 loops, 1 reorders" in proc.stdout
    err = proc.stderr
    assert "prepared 1 of" in err and "2 failed, 1 orphan files" in err
    assert "broken_raw.wav: not a readable audio file" in err
    assert "empty_edit.wav" in err and "lonely_raw.wav: raw recording without an edit" in err
    out = data / "pointer_sequences"
    pointers, ops = np.load(out / "good_pointers.npy"), np.load(out / "good_ops.npy")
    info = json.loads((out / "good_info.json").read_text())
    assert pointers.dtype == np.int64 and ops.dtype == np.int8 and len(pointers) == len(ops)
    assert len(pointers) == info["edit_frames"] == np.load(cache / "features" / "good_edit.npz")["mel"].shape[1]
    assert (out / "good_alignment.png").read_bytes()[:4] == b"\x89PNG"
    for key in ("sample_rate", "hop_length", "raw_frames", "aligned_fraction", "segments", "cuts",
                "loops", "reorders", "crossfades_s", "confidence", "editorbot_version"):
        assert key in info
    assert Edit.from_json(info).segments[1].raw_start_s == pytest.approx(50.0, abs=1e-3)
    check_again = run_cli("prepare", "good", "--data-dir", data, "--cache-dir", cache)
    assert check_again.returncode == 0 and "(up to date)" in check_again.stdout


def test_align_command(raw22, tmp_path):
    y, raw_path = raw22
    edit_path = write(tmp_path / "one_edit.wav", splice(y, 22050, TRUTH), 22050)
    proc = run_cli("align", raw_path, edit_path, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("one: 100.0% aligned")
    for what in ("pointers.npy", "ops.npy", "info.json", "alignment.png"):
        assert (tmp_path / "out" / f"one_{what}").is_file()
    missing = run_cli("align", tmp_path / "nope.wav", edit_path, "--out", tmp_path / "out")
    assert missing.returncode == 2 and "nope.wav: no such file" in missing.stderr


def test_segment_kinds_name_what_each_piece_does():
    """A piece that carries straight on is a copy, a forward skip a cut, a backward move a
    reorder, and a piece not from the raw says so."""
    from editorbot.align.plot import segment_kinds
    from editorbot.edits import Edit, Segment, ops_from_pointers, segments_to_pointers
    from editorbot.features import DEFAULT_PARAMS

    edit = Edit([Segment(10.0, 4.0), Segment(14.0, 2.0), Segment(30.0, 3.0), Segment(5.0, 2.0),
                 Segment(None, 1.0)])
    ops = ops_from_pointers(segments_to_pointers(edit, DEFAULT_PARAMS))
    assert segment_kinds(edit, ops, DEFAULT_PARAMS) == ["copy", "copy", "cut", "reorder", "not in raw"]
