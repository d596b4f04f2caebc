"""Pair discovery, configs, and the features command end to end."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf

from editorbot import config
from editorbot.cache import load_npz
from editorbot.errors import UserError
from editorbot.layout import Layout, discover

from .conftest import run_cli, sine


def make_layout(root, raws, edits, seconds=1.0):
    for folder, names in (("input", raws), ("desired_output", edits)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            sf.write(root / folder / name, sine(220.0 * (i + 1), 22050, seconds, 2), 22050)


def test_discovery_pairs_formats_and_reports_orphans_by_name(tmp_path):
    make_layout(tmp_path, ["a_raw.wav", "b_raw.flac", "c_raw.ogg", "lonely_raw.wav"],
                ["a_edit.flac", "b_edit.wav", "c_edit.mp3", "stray_edit.wav"])
    (tmp_path / "input" / "notes.txt").write_text("not audio, ignored")
    found = discover(tmp_path)
    assert [(p.name, p.raw.name, p.edit.name) for p in found.pairs] == [
        ("a", "a_raw.wav", "a_edit.flac"), ("b", "b_raw.flac", "b_edit.wav"),
        ("c", "c_raw.ogg", "c_edit.mp3")]
    assert [p.name for p in found.orphan_raws] == ["lonely_raw.wav"]
    assert [p.name for p in found.orphan_edits] == ["stray_edit.wav"]
    lines = found.describe_orphans()
    assert "lonely_raw.wav" in lines[0] and "without an edit" in lines[0]
    assert "stray_edit.wav" in lines[1] and "without a raw" in lines[1]
    assert [p.name for p in discover(tmp_path, ["b"]).pairs] == ["b"]
    with pytest.raises(UserError, match="no sample named zz"):
        discover(tmp_path, ["zz"])


def test_discovery_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        discover(tmp_path)
    make_layout(tmp_path, ["a_raw.wav", "a_raw.flac"], ["a_edit.wav"])
    with pytest.raises(UserError, match="two files"):
        discover(tmp_path)


def test_layout_paths_follow_the_contract(tmp_path):
    lay = Layout(tmp_path / "td", tmp_path / "c")
    assert lay.features("x", "raw") == tmp_path / "c" / "features" / "x_raw.npz"
    assert lay.pointer_file("x", "pointers.npy") == tmp_path / "td" / "pointer_sequences" / "x_pointers.npy"
    assert lay.stems_mel("x") == tmp_path / "c" / "stems_mel" / "x_stems.npz"


@dataclass
class Inner:
    lr: float = 1e-3
    layers: int = 2


@dataclass
class Outer:
    name: str = "run"
    epochs: int = 10
    use_stems: bool = False
    widths: list[int] = field(default_factory=lambda: [8, 16])
    model: Inner = field(default_factory=Inner)
    note: str | None = None


def test_config_loads_json_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 3, "model": {"lr": 0.01}}))
    cfg = config.load(Outer, path, ["model.layers=4", "use_stems=true", "note=hello"])
    assert cfg == Outer(epochs=3, use_stems=True, model=Inner(lr=0.01, layers=4), note="hello")
    assert config.to_dict(cfg)["model"]["layers"] == 4


@pytest.mark.parametrize("content,words", [
    ({"epoch": 3}, "unknown key 'epoch'"),
    ({"model": {"depth": 3}}, "unknown key 'depth'"),
    ({"epochs": "many"}, "epochs: expected int"),
    ({"use_stems": 1}, "expected true or false"),
])
def test_config_errors_name_the_key(tmp_path, content, words):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UserError, match=words) as err:
        config.load(Outer, path)
    assert str(path) in str(err.value)


def test_config_error_names_the_source_then_the_key_path(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 3}))
    with pytest.raises(UserError) as err:
        config.load(Outer, path, ["model.lr=fast"])
    assert str(err.value).startswith(f"{path} + --set: model.lr: expected float")


def test_config_override_with_unknown_key_is_an_error():
    with pytest.raises(UserError, match="unknown key 'layerz'"):
        config.load(Outer, None, ["model.layerz=3"])


def test_help_lists_commands_that_each_have_help(capsys):
    import argparse

    from editorbot.cli import COMMANDS, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = list(sub.choices)
    # Each command module adds at least one command (bc adds bc-labels and bc-augment).
    assert len(names) >= len(COMMANDS) and {"bc-labels", "bc-augment", "train", "edit"} <= set(names)
    result = run_cli("--help")
    assert result.returncode == 0
    for name in names:
        assert f"    {name} " in result.stdout
    for name in names:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([name, "--help"])
        assert done.value.code == 0
        assert f"usage: editorbot {name}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "rl", "--help"],
                                  ["train", "supervised", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom editorbot.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "usage: editorbot" in done.stdout


def test_train_help_lists_every_paradigm():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for paradigm in ("pointer", "supervised", "rl"):
        assert f"    {paradigm} " in result.stdout


def test_features_command_caches_all_pairs_with_jobs(tmp_path):
    data = tmp_path / "training_data"
    make_layout(data, ["a_raw.wav", "b_raw.wav", "c_raw.flac"], ["a_edit.wav", "b_edit.wav"], seconds=3.0)
    result = run_cli("features", "--data-dir", data, "--cache-dir", tmp_path / "cache", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    assert "c_raw.flac: raw recording without an edit" in result.stderr
    assert " s audio" in result.stderr  # the progress bar counts seconds of audio
    for name in "ab":
        for kind in ("raw", "edit"):
            arrays, meta = load_npz(tmp_path / "cache" / "features" / f"{name}_{kind}.npz")
            assert arrays["mel"].shape == (128, 1 + 3 * 22050 // 256)
            assert meta["params"]["hop_length"] == 256
    assert not (tmp_path / "cache" / "features" / "c_raw.npz").exists()
    named = run_cli("features", "b", "--data-dir", data, "--cache-dir", tmp_path / "cache2")
    assert named.returncode == 0
    assert [p.name for p in (tmp_path / "cache2" / "features").iterdir()] != []
    assert sorted(p.name for p in (tmp_path / "cache2" / "features").iterdir()) == ["b_edit.npz", "b_raw.npz"]
    assert np.isfinite(load_npz(tmp_path / "cache2" / "features" / "b_raw.npz")[0]["mel"]).all()


def test_reuse_freed_memory_takes_effect_with_glibc():
    """On Linux with glibc, mallopt accepts both settings (it returns 0 on a refused one);
    a second call does nothing more and says the same."""
    import platform

    from editorbot.malloc import reuse_freed_memory

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert reuse_freed_memory() is True
    assert reuse_freed_memory() is True


# What a pointer config for a machine may change: the model's size and the schedule that
# goes with it. Every other setting is a default in pointer/config.py, the best measured.
SIZE_KEYS = {"model": {"d_model", "n_layers", "conv_kernel", "n_global", "max_delta", "n_jump_buckets",
                       "decoder_layers", "dropout"},
             "train": {"epochs", "lr", "warmup_steps", "val_every", "val_decode_every", "batch_size",
                       "random_steps"}}


@pytest.mark.parametrize("name", ["cpu.json", "full.json"])
def test_machine_configs_change_only_sizes_and_schedule(name):
    from pathlib import Path

    from editorbot.pointer.config import PointerConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "pointer" / name
    content = json.loads(path.read_text())
    assert set(content) <= set(SIZE_KEYS)
    for section, keys in content.items():
        assert set(keys) <= SIZE_KEYS[section], f"{name} sets {set(keys) - SIZE_KEYS[section]}"
    config.load(PointerConfig, path)  # and it loads
