"""The base editor: its corpus (mels and truth, no audio, no held-out persona) and the shipped model."""
from __future__ import annotations

import fnmatch
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from editorbot.base import BASE_CHECKPOINT, MADE_UP_EDITORS, base_checkpoint, pretraining_synth_config, write_base_corpus
from editorbot.cache import load_npz
from editorbot.checkpoint import load_checkpoint
from editorbot.errors import UserError
from editorbot.features import DEFAULT_PARAMS
from editorbot.synth.personas import ADAPTATION_PERSONAS, pretraining_personas

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("base_corpus")
    layout = write_base_corpus(out, pairs=3, seed=7, minutes=(1.0, 1.0), progress=False)
    return out, layout


def test_corpus_holds_no_adaptation_persona(corpus):
    _, layout = corpus
    truths = [json.loads(p.read_text()) for p in sorted((layout.data_dir / "truth").glob("*.json"))]
    assert [t["persona"] for t in truths] == list(pretraining_personas())
    assert not {t["persona"] for t in truths} & ADAPTATION_PERSONAS
    assert not set(pretraining_synth_config().personas.cycle) & ADAPTATION_PERSONAS


def test_corpus_refuses_an_adaptation_persona_before_writing(tmp_path):
    config = pretraining_synth_config()
    for persona in sorted(ADAPTATION_PERSONAS):
        config.personas.cycle = ["trimmer", persona]
        with pytest.raises(UserError, match="held out of pretraining"):
            write_base_corpus(tmp_path, pairs=2, seed=0, minutes=(1.0, 1.0), config=config, progress=False)
    assert not any(tmp_path.iterdir())


def test_corpus_keeps_float16_mels_and_truth_but_no_audio(corpus):
    out, layout = corpus
    from editorbot.pointer.data import PointerData

    assert not [p for p in out.rglob("*") if p.suffix in (".wav", ".flac", ".mp3", ".ogg")]
    data = PointerData(layout.cache_dir, layout.pointer_dir)
    assert len(data.names) == 3
    for name in data.names:
        arrays, meta = load_npz(layout.features(name, "raw"))
        assert arrays["mel"].dtype == np.float16 and meta["params"] == DEFAULT_PARAMS.as_dict()
        rec = data.recordings[name]
        assert abs(rec.n_raw - DEFAULT_PARAMS.n_frames(60 * DEFAULT_PARAMS.sr)) <= 1
        assert 0 <= rec.pointers.max() < rec.n_raw
        assert data.mel(name).dtype == np.float32


def test_corpus_mel_equals_the_mel_of_the_same_session_written_as_audio(corpus, tmp_path):
    """The same (seed, index) written as a WAV by synth.write_corpus and read by the
    contract's front end gives the mel the corpus kept, to float16 precision."""
    from editorbot.precache import mel_for
    from editorbot.synth import write_corpus

    _, layout = corpus
    names = write_corpus(tmp_path, pairs=1, seed=7, minutes=1.0, config=pretraining_synth_config(),
                         write_unmastered=False, progress=False, pretraining=True)
    kept = load_npz(layout.features(names[0], "raw"))[0]["mel"].astype(np.float32)
    from_audio = mel_for(tmp_path / "input" / f"{names[0]}_raw.wav")
    assert kept.shape == from_audio.shape
    assert np.abs(kept - from_audio).max() < 5e-3


def test_shipped_base_is_a_pointer_checkpoint_of_the_contract():
    path = base_checkpoint()
    assert path == BASE_CHECKPOINT and path is not None, "the package ships no base model"
    assert path.stat().st_size <= 20 * 2**20
    ckpt = load_checkpoint(path)  # weights_only loading, checked
    assert ckpt["kind"] == "pointer" and ckpt[MADE_UP_EDITORS] is True
    assert ckpt["feature_params"] == DEFAULT_PARAMS.as_dict()
    cpu = json.loads((REPO / "configs" / "pointer" / "cpu.json").read_text())["model"]
    assert {k: ckpt["config"]["model"][k] for k in cpu} == cpu  # fine-tunes with cpu.json's model
    seen = ckpt["split"]["train"] + ckpt["split"]["val"]
    assert seen and not [n for n in seen if any(n.endswith("_" + p) for p in ADAPTATION_PERSONAS)]


def test_package_data_carries_the_base():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["editorbot"]
    relative = BASE_CHECKPOINT.relative_to(REPO / "editorbot").as_posix()
    assert any(fnmatch.fnmatch(relative, g) for g in globs)


def test_the_base_build_refuses_the_real_jams_the_benchmark_holds_out(tmp_path):
    """bench_finetune_real.py scores fine-tunings on the jams of pair seeds 0 and 1: the
    base may learn from real jams of any other seed, never those."""
    import subprocess
    import sys

    for seed in ("0", "1"):
        done = subprocess.run([sys.executable, "build_base.py", "--out", str(tmp_path / "base"), "--pairs", "1",
                               "--real-jams", "1", "--real-seed", seed], cwd=REPO / "benchmarks",
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and f"--real-seed {seed}: bench_finetune_real.py holds out" in done.stderr
    assert not (tmp_path / "base").exists()  # refused before anything was written
