"""Synthetic jam corpus: exact truth, persona styles, beat grid, determinism, CLI.

Budget: about 50 s on a loaded 2-core machine (30 s raws, one pair per persona; persona
statistics over 20 seeds use plan_pair, the same code that writes truth, without rendering
audio). The rules of the personas held out of pretraining: tests/test_personas.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from editorbot import audio
from editorbot.config import from_dict, load, to_dict
from editorbot.edits import Edit
from editorbot.errors import UserError
from editorbot.synth import PERSONAS, SynthConfig, edit_stats, plan_pair, write_corpus
from editorbot.synth.compose import MUSIC_LABELS, perform, plan_session
from editorbot.synth.instruments import render_mix
from editorbot.synth.splice import crossfade_mask

from .conftest import REPO, run_cli

MINUTES = 0.5


def short_config() -> SynthConfig:
    """Sessions that fit 30 s: brief junk, short parts, a false start every time."""
    cfg = SynthConfig()
    s = cfg.session
    s.preroll_s, s.tuning_s, s.noodling_s = (0.5, 1.0), (2.0, 3.0), (2.0, 3.0)
    s.tuning_prob = s.noodling_prob = s.false_start_prob = 1.0
    s.intro_bars, s.verse_bars, s.chorus_bars = (4, 4), (4, 8), (4, 4)
    s.solo_bars, s.breakdown_bars, s.ending_bars = (8, 8), (4, 4), (2, 3)
    cfg.playing.tempo_bpm = (110.0, 160.0)
    return cfg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("synth")
    names = []
    for i, persona in enumerate(PERSONAS):  # one pair per persona, each from its own seed
        names += write_corpus(out, pairs=1, seed=10 + i, minutes=MINUTES, persona=persona,
                              mastering="mild", config=short_config(), progress=False)
    return out, names


def reference_render(raw: np.ndarray, sr: int, edit: Edit) -> tuple[np.ndarray, np.ndarray]:
    """The edit outside crossfades, sample by sample from the truth (independent of splice):
    returns (values (n, ch), valid mask (n,))."""
    total = sum(int(round(s.duration_s * sr)) for s in edit.segments)
    out = np.zeros((total, raw.shape[1]), np.float64)
    edit_pos = 0
    for seg in edit.segments:
        n = int(round(seg.duration_s * sr))
        a = int(round(seg.raw_start_s * sr))
        gain = np.full(n, 10 ** (seg.gain_db / 20))
        n_in, n_out = int(round(seg.fade_in_s * sr)), int(round(seg.fade_out_s * sr))
        i = np.arange(n)
        if n_in:
            gain[:n_in] *= np.sin(np.pi / 2 * (i[:n_in] + 0.5) / n_in)
        if n_out:
            gain[n - n_out:] *= np.sin(np.pi / 2 * (n - i[n - n_out:] - 0.5) / n_out)
        out[edit_pos:edit_pos + n] = raw[a:a + n] * gain[:, None]
        edit_pos += n
    return out, ~crossfade_mask(edit, sr)


def load_truth(out: Path, name: str) -> tuple[dict, Edit]:
    truth = json.loads((out / "truth" / f"{name}.json").read_text())
    return truth, Edit.from_json(truth)


def test_truth_is_exact_outside_crossfades(corpus):
    out, names = corpus
    for name in names:
        truth, edit = load_truth(out, name)
        raw, sr = audio.read(out / "input" / f"{name}_raw.wav")
        unmastered, usr = audio.read(out / "unmastered" / f"{name}_edit.wav")
        assert usr == sr == truth["raw_sr"]
        want, valid = reference_render(raw, sr, edit)
        assert len(unmastered) == len(want) == int(round(edit.duration_s * sr))
        assert valid.mean() > 0.98
        err = np.abs(unmastered[valid] - want[valid]).max()
        assert err < 1e-6, f"{name}: max error {err} outside crossfades"
        # Crossfades are equal-power blends of the two sides, never louder than both.
        inside = ~valid
        if inside.any():
            assert np.abs(unmastered[inside]).max() <= 1.5 * np.abs(raw).max()


def test_issue5_renderer_reproduces_unmastered_edit(corpus):
    render = pytest.importorskip("editorbot.render")
    out, names = corpus
    for name in names:
        _, edit = load_truth(out, name)
        unmastered, sr = audio.read(out / "unmastered" / f"{name}_edit.wav")
        got, rsr = render.render_array(out / "input" / f"{name}_raw.wav", edit, seam_search_ms=0.0)
        valid = ~crossfade_mask(edit, sr)
        assert rsr == sr and got.shape == unmastered.shape
        noise = np.sum((got[valid] - unmastered[valid]) ** 2)
        snr_db = 10 * np.log10(np.sum(unmastered[valid] ** 2) / max(noise, 1e-30))
        assert snr_db >= 60, f"{name}: SNR {snr_db:.1f} dB outside crossfades"


def test_mastered_edit_keeps_truth_timing(corpus):
    """mild: 48 kHz, EQ, compression, loudness, limiter; the edit stays where truth says."""
    import soxr

    out, names = corpus
    for name in names:
        truth, edit = load_truth(out, name)
        mastered, esr = audio.read(out / "desired_output" / f"{name}_edit.wav")
        unmastered, sr = audio.read(out / "unmastered" / f"{name}_edit.wav")
        assert esr == truth["edit_sr"] == 48000 and truth["mastering"] == "mild"
        assert abs(len(mastered) - len(unmastered) * esr / sr) <= 1
        assert [s["stage"] for s in truth["mastering_chain"]] == [
            "highpass", "peak_eq", "compressor", "resample", "loudness", "limiter"]
        assert np.abs(mastered).max() <= 10 ** (-0.8 / 20)  # the limiter's -1 dB ceiling
        assert np.abs(mastered).max() >= 10 ** (-2 / 20)    # loud: -14 LUFS needs limiting
        back = soxr.resample(mastered, esr, sr)[:len(unmastered)].mean(axis=1)
        ref = unmastered[:len(back)].mean(axis=1)
        lags = np.arange(-20, 21)
        corr = [np.dot(back[50 + k:len(back) - 50 + k], ref[50:len(ref) - 50]) for k in lags]
        assert lags[int(np.argmax(corr))] == 0


def test_heavy_mastering_mp3_round_trip_is_aligned(tmp_path):
    """heavy: +8 dB peak EQ, 8:1, 11 kHz lowpass, MP3; the decoder delay is taken out."""
    cfg = short_config()
    (name,) = write_corpus(tmp_path, pairs=1, seed=3, minutes=0.35, persona="trimmer",
                           mastering="heavy", config=cfg, progress=False)
    truth, _ = load_truth(tmp_path, name)
    mastered, esr = audio.read(tmp_path / "desired_output" / f"{name}_edit.wav")
    unmastered, sr = audio.read(tmp_path / "unmastered" / f"{name}_edit.wav")
    assert esr == sr and len(mastered) == len(unmastered)
    stages = {s["stage"]: s for s in truth["mastering_chain"]}
    assert stages["peak_eq"]["gain_db"] == 8.0 and stages["compressor"]["ratio"] == 8.0
    assert stages["lowpass"]["cutoff_hz"] == 11000.0 and stages["mp3"]["delay_removed"]
    # Lowpassed: little energy above 13 kHz, where the unmastered edit has some.
    spec_m = np.abs(np.fft.rfft(mastered[:, 0]))
    spec_u = np.abs(np.fft.rfft(unmastered[:, 0]))
    f = np.fft.rfftfreq(len(mastered), 1 / sr)
    ratio_m = np.sum(spec_m[f > 13000] ** 2) / np.sum(spec_m ** 2)
    ratio_u = np.sum(spec_u[f > 13000] ** 2) / np.sum(spec_u ** 2)
    assert ratio_m < 0.1 * ratio_u
    lags = np.arange(-30, 31)
    a, b = mastered.mean(axis=1), unmastered.mean(axis=1)
    corr = [np.dot(a[100 + k:len(a) - 100 + k], b[100:len(b) - 100]) for k in lags]
    assert abs(lags[int(np.argmax(corr))]) <= 1


def test_kept_codec_delay_is_reported_as_the_edit_offset():
    from editorbot.synth.config import MasteringPreset
    from editorbot.synth.master import master

    sr = 44100
    x = np.zeros((3 * sr, 2), np.float32)
    x[sr::sr // 4] = 0.5  # clicks
    p = MasteringPreset(mp3_quality="V2")
    kept, _, chain, offset_s = master(x, sr, p, np.random.default_rng(0), keep_codec_delay=True)
    trimmed, _, _, zero = master(x, sr, p, np.random.default_rng(0))
    delay = chain[-1]["decoder_delay_samples"]
    assert zero == 0.0 and offset_s == delay / sr and 500 < delay < 3000
    assert len(trimmed) == len(x) and len(kept) == len(x) + delay
    assert abs(int(np.argmax(np.abs(trimmed[:sr + 200, 0]))) - sr) <= 2
    assert abs(int(np.argmax(np.abs(kept[:sr + delay + 200, 0]))) - (sr + delay)) <= 2


def test_cuts_fall_on_the_grid_with_short_crossfades(corpus):
    out, names = corpus
    for name in names:
        truth, edit = load_truth(out, name)
        sr = truth["raw_sr"]
        bars = np.array(truth["downbeats_s"])
        ends = np.concatenate([bars, [s["end_s"] for s in truth["sections"] if s["label"] == "ending"]])
        for k, seg in enumerate(edit.segments):
            assert np.min(np.abs(bars - seg.raw_start_s)) <= 1 / sr
            end = seg.raw_start_s + seg.duration_s
            assert np.min(np.abs(ends - end)) <= 1 / sr
            if k:
                assert 0.005 - 1 / sr <= seg.crossfade_s <= 0.050 + 1 / sr
            assert round(seg.raw_start_s * sr) == pytest.approx(seg.raw_start_s * sr, abs=1e-6)


def test_personas_differ_within_their_ranges_over_20_seeds():
    cfg = SynthConfig()
    stats = {p: [plan_pair(cfg, seed=s, index=0, minutes=5.0, persona=p).stats for s in range(20)]
             for p in PERSONAS}

    def col(p, k):
        return np.array([st[k] for st in stats[p]])

    assert np.all((col("radio", "duration_s") >= 180) & (col("radio", "duration_s") <= 240))
    assert np.all(col("radio", "reorders") == 0)
    assert np.all(col("radio", "loops") <= cfg.personas.radio.max_repeats)
    assert np.all((col("trimmer", "keep_ratio") >= 0.40) & (col("trimmer", "keep_ratio") <= 0.70))
    assert np.all(col("trimmer", "loops") == 0) and np.all(col("trimmer", "reorders") == 0)
    assert np.all(col("looper", "loops") >= 3) and np.all(col("looper", "reorders") >= 1)
    assert np.all(col("looper", "keep_ratio") <= 0.35)
    # Segment lengths: the trimmer keeps long stretches, the looper short ones.
    assert np.median(col("trimmer", "median_segment_s")) > 2 * np.median(col("looper", "median_segment_s"))
    assert np.all(col("looper", "median_segment_s") < 20)
    # Keep ratios separate the trimmer from the looper on every seed.
    assert np.all(col("trimmer", "keep_ratio") > col("looper", "keep_ratio"))


def test_trimmer_drops_junk_and_mistakes_and_keeps_solos():
    cfg = SynthConfig()
    for seed in range(8):
        pp = plan_pair(cfg, seed=seed, index=0, minutes=5.0, persona="trimmer")
        kept = [(s.raw_start_s, s.raw_start_s + s.duration_s) for s in pp.edit.segments]

        def overlap(a, b):
            return sum(max(0.0, min(b, y) - max(a, x)) for x, y in kept)
        for sec in pp.plan.sections:
            if sec.label not in MUSIC_LABELS:
                assert overlap(sec.start_s, sec.end_s) < 1e-4, (seed, sec.label)
            if sec.label == "solo" and sec.n_bars >= 2:
                bad = [m for m in pp.plan.mistakes if sec.start_s <= m.start_s < sec.end_s]
                if not bad:
                    assert overlap(sec.bars_s[0], sec.bars_s[-1]) == pytest.approx(
                        sec.bars_s[-1] - sec.bars_s[0], abs=1e-3), (seed, "solo cut")
        for m in pp.plan.mistakes:
            assert overlap(m.start_s, m.end_s) < 1e-4, (seed, m.kind)


def test_beat_grid_matches_rendered_onsets(corpus):
    import librosa

    out, names = corpus
    for name in names:
        truth, _ = load_truth(out, name)
        beats = np.array(truth["beats_s"])
        bars = np.array(truth["downbeats_s"])
        assert set(np.round(bars, 9)) <= set(np.round(beats, 9))
        assert truth["tempo_bpm"] == pytest.approx(60 / np.median(np.diff(beats)), rel=0.03)
        y = audio.load_analysis(out / "input" / f"{name}_raw.wav")
        hop = 128
        env = librosa.onset.onset_strength(y=y, sr=22050, hop_length=hop)
        t_env = librosa.frames_to_time(np.arange(len(env)), sr=22050, hop_length=hop)
        shifts_ms = np.arange(-100, 101, 5)
        score = [np.mean(np.interp(beats + d / 1e3, t_env, env)) for d in shifts_ms]
        best = shifts_ms[int(np.argmax(score))]
        assert abs(best) <= 20, f"{name}: onsets peak {best} ms from the truth's beats"
        assert max(score) > 1.5 * np.median(score)


def test_sections_come_back_played_not_copied():
    """Two takes of a chorus are close in sound but never the same samples."""
    cfg = short_config()
    cfg.session.false_start_prob = cfg.session.tuning_prob = cfg.session.noodling_prob = 0.0
    cfg.session.jam_prob = 0.0
    sr = 22050
    plan = plan_session(cfg, np.random.default_rng(5), 60.0)
    choruses = [s for s in plan.sections if s.label == "chorus" and s.n_bars >= 4]
    assert len(choruses) >= 2
    y = render_mix(perform(plan, cfg, np.random.default_rng(6)), plan.programs, cfg.sound, sr,
                   plan.duration_s, np.random.default_rng(7)).mean(axis=1)
    a, b = choruses[0], choruses[1]
    n = int(min(a.bars_s[4] - a.bars_s[0], b.bars_s[4] - b.bars_s[0]) * sr)
    x0, x1 = y[int(a.bars_s[0] * sr):][:n], y[int(b.bars_s[0] * sr):][:n]
    corr = np.dot(x0, x1) / np.sqrt(np.dot(x0, x0) * np.dot(x1, x1))
    assert corr < 0.9
    assert np.abs(x0 - x1).max() > 0.05 * np.abs(y).max()


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    cfg = short_config()
    runs = []
    for sub, seed in (("a", 7), ("b", 7), ("c", 8)):
        names = write_corpus(tmp_path / sub, pairs=2, seed=seed, minutes=0.4, mastering="heavy",
                             config=cfg, progress=False)
        runs.append((tmp_path / sub, names))
    (a, na), (b, nb), (c, nc) = runs
    assert na == nb
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 8
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    raw_a, _ = audio.read(a / "input" / f"{na[0]}_raw.wav")
    raw_c, _ = audio.read(c / "input" / f"{nc[0]}_raw.wav")
    assert raw_a.shape != raw_c.shape or np.abs(raw_a - raw_c).max() > 0.01


def test_rerun_keeps_whole_pairs_and_rewrites_changed_or_broken_ones(tmp_path):
    cfg = short_config()
    first = write_corpus(tmp_path, pairs=1, seed=5, minutes=0.4, mastering="none",
                         write_unmastered=False, config=cfg, progress=False)
    raw = tmp_path / "input" / f"{first[0]}_raw.wav"
    truth = tmp_path / "truth" / f"{first[0]}.json"
    stamp = (raw.stat().st_mtime_ns, truth.stat().st_mtime_ns)
    names = write_corpus(tmp_path, pairs=2, seed=5, minutes=0.4, mastering="none",
                         write_unmastered=False, config=cfg, progress=False)
    assert names[0] == first[0] and len(names) == 2
    assert (raw.stat().st_mtime_ns, truth.stat().st_mtime_ns) == stamp  # kept, not rewritten
    assert (tmp_path / "truth" / f"{names[1]}.json").is_file()
    # another mastering is another corpus: written again
    write_corpus(tmp_path, pairs=1, seed=5, minutes=0.4, mastering="mild",
                 write_unmastered=False, config=cfg, progress=False)
    assert json.loads(truth.read_text())["mastering"] == "mild"
    # a pair whose audio is missing (an interrupted run) is written again
    stamp = truth.stat().st_mtime_ns
    raw.unlink()
    write_corpus(tmp_path, pairs=1, seed=5, minutes=0.4, mastering="mild",
                 write_unmastered=False, config=cfg, progress=False)
    assert raw.is_file() and truth.stat().st_mtime_ns != stamp


def test_plan_only_path_gives_the_written_truth(corpus):
    out, names = corpus
    for i, name in enumerate(names):
        truth, edit = load_truth(out, name)
        pp = plan_pair(short_config(), seed=10 + i, index=0, minutes=MINUTES, persona=truth["persona"])
        assert pp.name == name and pp.edit.to_json()["segments"] == truth["segments"]
        assert edit_stats(edit, truth["raw_duration_s"]) == pp.stats


def test_default_config_file_matches_the_dataclass():
    path = REPO / "configs" / "synth" / "default.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(to_dict(SynthConfig())))
    cfg = load(SynthConfig, path, ["personas.trimmer.keep_ratio=[0.5, 0.6]"])
    assert cfg.personas.trimmer.keep_ratio == (0.5, 0.6)
    with pytest.raises(UserError, match="unknown key 'tempo'"):
        from_dict(SynthConfig, {"playing": {"tempo": 120}})


def test_short_session_without_music_is_a_clear_error():
    cfg = short_config()
    cfg.session.preroll_s = (20.0, 20.0)
    with pytest.raises(UserError, match="--minutes"):
        plan_pair(cfg, seed=0, index=0, minutes=0.2, persona="radio")


def test_cli_writes_layout_and_rejects_bad_input(tmp_path):
    cfg_path = tmp_path / "synth.json"
    cfg_path.write_text(json.dumps(to_dict(short_config())))
    out = tmp_path / "corpus"
    proc = run_cli("synth", "--out", out, "--pairs", "1", "--seed", "4", "--minutes", "0.4",
                   "--persona", "looper", "--mastering", "none", "--config", cfg_path)
    assert proc.returncode == 0, proc.stderr
    name = "jam4_000_looper"
    for rel in (f"input/{name}_raw.wav", f"desired_output/{name}_edit.wav",
                f"unmastered/{name}_edit.wav", f"truth/{name}.json"):
        assert (out / rel).is_file(), rel
    assert name in proc.stdout
    bad = run_cli("synth", "--out", out, "--pairs", "1", "--seed", "4", "--persona", "dj")
    assert bad.returncode == 2 and "unknown persona 'dj'" in bad.stderr
    cfg_path.write_text(json.dumps({"sound": {"reverb": 1}}))
    bad = run_cli("synth", "--out", out, "--pairs", "1", "--seed", "4", "--config", cfg_path)
    assert bad.returncode == 2 and "unknown key 'reverb'" in bad.stderr
