"""`editorbot demo` (the README's main command): its jams, its musician, its promises, and the
whole run at a small size."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from editorbot import audio
from editorbot.config import load
from editorbot.demo import MODEL_CONFIG, SYNTH_CONFIG, estimate
from editorbot.supervised.config import SupervisedConfig
from editorbot.synth import SynthConfig, write_corpus
from editorbot.synth.compose import JUNK_LABELS, MUSIC_LABELS
from editorbot.synth.corpus import plan_pair
from tests.conftest import run_cli

DEFAULTS = {"pairs": 6, "heldout": 2, "minutes": 8.0}


def test_the_demo_musician_keeps_every_song_whole_and_cuts_everything_between():
    """The jam trimmer of configs/synth/demo.json, on 8-minute sessions of 20 seeds: every part
    of every song is kept from its first bar line to its last (an ending with its ring-out),
    and nothing of the tuning, noodling, silences, count-ins and false starts is, beyond a
    crossfade."""
    cfg = load(SynthConfig, SYNTH_CONFIG)
    assert cfg.personas.cycle == ["trimmer"] and cfg.session.mistake_prob == 0.0
    for seed in range(20):
        pp = plan_pair(cfg, seed=seed, index=0, minutes=8.0)
        kept = [(s.raw_start_s, s.raw_start_s + s.duration_s) for s in pp.edit.segments]

        def covered(a: float, b: float) -> float:
            return sum(max(0.0, min(b, y) - max(a, x)) for x, y in kept)

        assert pp.stats["loops"] == 0 and pp.stats["reorders"] == 0
        for sec in pp.plan.sections:
            if sec.label in MUSIC_LABELS and sec.n_bars >= 2:
                a, b = float(sec.bars_s[0]), float(sec.end_s if sec.natural_end else sec.bars_s[-1])
                assert covered(a, b) == pytest.approx(b - a, abs=1e-3), (seed, sec.label, a)
            elif sec.label in JUNK_LABELS:
                assert covered(sec.start_s, sec.end_s) <= 0.02, (seed, sec.label, sec.start_s)


def test_mono_training_pairs_are_the_stereo_mix_summed_and_flac(tmp_path):
    """channels=1 writes the same session as the stereo corpus, each sample the mean of the
    stereo pair (to 16-bit rounding), as 16-bit FLAC at 22.05 kHz, with the same truth edit."""
    stereo = load(SynthConfig, SYNTH_CONFIG)
    mono = load(SynthConfig, SYNTH_CONFIG, ["channels=1"])
    [name] = write_corpus(tmp_path / "s", pairs=1, seed=3, minutes=1.0, config=stereo,
                          write_unmastered=False, progress=False)
    write_corpus(tmp_path / "m", pairs=1, seed=3, minutes=1.0, config=mono, write_unmastered=False,
                 progress=False)
    for sub, suffix in (("input", "raw"), ("desired_output", "edit")):
        for corpus, channels in (("s", 2), ("m", 1)):
            info = sf.info(str(tmp_path / corpus / sub / f"{name}_{suffix}.flac"))
            assert (info.format, info.subtype, info.samplerate, info.channels) == (
                "FLAC", "PCM_16", 22050, channels)
    y2, _ = audio.read(tmp_path / "s" / "input" / f"{name}_raw.flac")
    y1, _ = audio.read(tmp_path / "m" / "input" / f"{name}_raw.flac")
    assert y1.shape == (len(y2), 1)
    assert np.abs(y1[:, 0] - y2.mean(axis=1)).max() <= 1.5 / 32768
    truth = [json.loads((tmp_path / c / "truth" / f"{name}.json").read_text()) for c in ("s", "m")]
    assert truth[0]["segments"] == truth[1]["segments"]


def test_help_states_the_time_and_disk_the_demo_estimates():
    """`editorbot demo --help` says what the defaults take, as the demo's own estimate does,
    and the defaults stay within the promise: <= 6 minutes on 2 cores, <= 400 MB."""
    seconds, mb = estimate(**DEFAULTS)
    assert seconds <= 6 * 60 and mb <= 400
    done = run_cli("demo", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    said = re.search(r"About (\d+) minutes on 2 CPU cores and (\d+) MB", text)
    assert said, text
    assert int(said.group(1)) == round(seconds / 60)
    assert abs(int(said.group(2)) - mb) <= 10
    cfg = load(SupervisedConfig, MODEL_CONFIG)
    assert cfg.loss.msstft_weight == 0.0  # the demo's model trains on mels only: minutes, not hours


@pytest.mark.slow
def test_demo_runs_every_stage_and_says_where_things_went(tmp_path):
    """The whole pipeline on a tiny corpus: the estimate comes first, every stage runs, both
    editors edit the held-out raw, the table has both rows, every path the demo names exists,
    the edits are FLAC and no mel cache is left behind."""
    out = tmp_path / "demo"
    done = run_cli("demo", "--out", out, "--pairs", 3, "--heldout", 1, "--minutes", 1.5,
                   "--epochs", 1, "--jobs", 1, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    first = text.splitlines()[0]
    assert re.search(r"about \d+ minutes on 2 CPU cores; writes about \d+ MB", first), first
    for step in range(1, 7):
        assert f"== {step}/6" in text
    rows = [line for line in text.splitlines() if re.match(r"^(rule-based|supervised)\b", line)]
    assert [r.split()[0] for r in rows] == ["rule-based", "supervised"]
    for row in rows:  # 1 pair, 0 failed
        assert re.search(r"\s1\s+0\s+\d", row), row
    named = re.findall(r"(/\S+\.(?:flac|html|pt))", text)
    assert any(p.endswith("_rule-based.flac") for p in named)
    assert any(p.endswith("_supervised_review.html") for p in named)
    for path in named:
        assert Path(path).exists(), path
    assert len(list((out / "training_data" / "pointer_sequences").glob("*_pointers.npy"))) == 3
    assert not list((out / "cache" / "features").glob("*.npz"))  # removed once aligned
    said_mb = float(re.search(r"; (\d+) MB in ", text).group(1))
    files_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    assert abs(said_mb - files_mb) <= 1


def test_demo_refuses_bad_sizes(tmp_path):
    done = run_cli("demo", "--out", tmp_path / "d", "--pairs", 0)
    assert done.returncode == 2
    assert "--pairs 0: must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
