"""Tests of the one training contract: the split every paradigm uses, the checked loader of
a prepared pair, the split stored in every checkpoint (old supervised ones included), and
three tiny trainings on the same pairs that hold out the same recordings, which `evaluate`
then scores and no other.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from editorbot.checkpoint import load_checkpoint, save_checkpoint
from editorbot.config import load
from editorbot.dataset import load_recording, read_pointer_files, split_by_recording
from editorbot.edits import ops_from_pointers
from editorbot.errors import UserError
from editorbot.features import DEFAULT_PARAMS
from editorbot.layout import Layout
from editorbot.training import Run

from .conftest import REPO, run_cli


# ------------------------------------------------------------------ the split

def test_split_is_by_recording_and_rounds_up():
    names = [f"r{i}" for i in range(10)]
    train, val = split_by_recording(names, 0.2, 1)
    assert len(val) == 2 and not set(train) & set(val) and sorted(train + val) == names
    assert split_by_recording(list(reversed(names)), 0.2, 1) == (train, val)  # order-free
    assert split_by_recording(names, 0.2, 2) != (train, val)
    assert split_by_recording(names, 0.5, 1, val_names=["r3"]) == ([n for n in names if n != "r3"], ["r3"])
    # The case: 22 recordings at 0.2 hold out ceil(4.4) = 5 in every paradigm.
    assert len(split_by_recording([f"s{i}" for i in range(22)], 0.2, 0)[1]) == 5
    # 0.1 * 30 is 3.0000000000000004 in floating point: still 3, not 4.
    assert len(split_by_recording([f"s{i}" for i in range(30)], 0.1, 0)[1]) == 3
    assert split_by_recording(["a", "b"], 0.1, 0)[1] and split_by_recording(["a"], 0.5, 0) == (["a"], [])
    assert split_by_recording(names, 0.0, 0) == (names, [])
    with pytest.raises(UserError, match="train.val_names: no recording named nosuch"):
        split_by_recording(names, 0.2, 0, val_names=["nosuch"])
    with pytest.raises(UserError, match="every recording is held out"):
        split_by_recording(["a", "b"], 0.2, 0, val_names=["a", "b"])


# ------------------------------------------------------------------ the loader

def _prepared_pair(root: Path, *, info: dict | None = None, with_ops: bool = True) -> Layout:
    """A pair's cached raw mel (200 frames of a known ramp) and its pointer files."""
    from editorbot.cache import save_npz

    layout = Layout(root / "training_data", root / "cache")
    mel = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (DEFAULT_PARAMS.n_mels, 1))
    save_npz(layout.features("a", "raw"), {"params": DEFAULT_PARAMS.as_dict()}, mel=mel)
    layout.pointer_dir.mkdir(parents=True)
    pointers = np.r_[np.arange(10, 60), np.arange(120, 150)].astype(np.int64)
    np.save(layout.pointer_file("a", "pointers.npy"), pointers)
    if with_ops:
        np.save(layout.pointer_file("a", "ops.npy"), ops_from_pointers(pointers))
    if info is not None:
        layout.pointer_file("a", "info.json").write_text(json.dumps(info))
    return layout


def test_load_recording_reads_mel_pointers_ops_info_and_alternatives(tmp_path):
    seg = {"raw_start_s": 0.116, "duration_s": 0.58, "edit_start_s": 0.0,
           "alternatives": [{"raw_start_s": 1.5, "score": 0.99}]}
    info = {"sample_rate": 22050, "hop_length": 256, "edit_frames": 80, "raw_frames": 200,
            "segments": [seg, {"raw_start_s": 1.39, "duration_s": 0.35, "edit_start_s": 0.58}]}
    rec = load_recording(_prepared_pair(tmp_path, info=info, with_ops=False), "a")
    assert rec.name == "a" and rec.n_raw == 200 and rec.mel.shape == (128, 200)
    assert rec.pointers[0] == 10 and rec.pointers[-1] == 149 and len(rec.pointers) == 80
    np.testing.assert_array_equal(rec.ops, ops_from_pointers(rec.pointers))  # cut from the pointers
    assert rec.info["edit_frames"] == 80 and rec.params == DEFAULT_PARAMS
    assert rec.alternatives == [(0.0, [1.5])]


def test_loader_refuses_an_alignment_made_on_another_grid(tmp_path):
    layout = _prepared_pair(tmp_path, info={"sample_rate": 44100, "hop_length": 256})
    with pytest.raises(UserError) as err:
        load_recording(layout, "a")
    text = str(err.value)
    assert text.startswith(str(layout.pointer_file("a", "info.json"))) and "\n" not in text
    assert "sample_rate 44100" in text and "22050" in text and "prepare --force a" in text
    # Without a mel to compare with, the pointer files alone still load.
    assert len(read_pointer_files(layout.pointer_dir, "a")[0]) == 80


# ------------------------------------------------------------------ the split in checkpoints

def _bare_checkpoint(**extra) -> dict:
    return {"kind": "supervised", "config": {}, "feature_params": DEFAULT_PARAMS.as_dict(),
            "model_state": {"w": torch.zeros(1)}} | extra


def test_old_supervised_checkpoint_split_is_read_as_split(tmp_path):
    """Supervised checkpoints written before the common schema kept train_names/val_names."""
    path = save_checkpoint(tmp_path / "old.pt", _bare_checkpoint(train_names=["a", "b"], val_names=["c"]))
    assert load_checkpoint(path)["split"] == {"train": ["a", "b"], "val": ["c"]}
    path = save_checkpoint(tmp_path / "new.pt", _bare_checkpoint(split={"train": ["a"], "val": ["b"]}))
    assert load_checkpoint(path)["split"] == {"train": ["a"], "val": ["b"]}
    assert "split" not in load_checkpoint(save_checkpoint(tmp_path / "none.pt", _bare_checkpoint()))
    bad = save_checkpoint(tmp_path / "bad.pt", _bare_checkpoint(split={"train": "a", "val": []}))
    with pytest.raises(UserError, match="bad.pt: its split is not two lists"):
        load_checkpoint(bad)


# ------------------------------------------------------------------ three paradigms, one split

POINTER_TINY = ["model.d_model=16", "model.n_heads=2", "model.n_layers=1", "model.n_global=4",
                "model.decoder_layers=1", "model.max_delta=8", "model.n_jump_buckets=6",
                "model.ff_mult=1", "train.batch_size=2", "train.random_steps=32",
                "train.context_steps=2", "train.warmup_steps=1", "train.val_decode_every=0",
                "train.select_by=val_loss", "train.epochs=1"]
SUPERVISED_TINY = ["model.d_model=16", "model.n_heads=2", "model.encoder_layers=1",
                   "model.decoder_layers=1", "model.crop_tokens=32", "model.n_gain_bands=8",
                   "train.batch_size=4", "train.epochs=1"]
RL_TINY = ["agent.policy_hidden_dim=16", "agent.value_hidden_dim=8", "agent.n_layers=1",
           "agent.natten_n_heads=2", "agent.natten_kernel_size=3", "agent.type_embed_dim=8",
           "train.n_updates=0", "train.bc_pretrain_epochs=1", "train.bc_detours=0"]
# 5 pairs at 0.25: ceil(1.25) = 2 held out (rounding would hold out 1).
SPLIT = ["train.val_fraction=0.25", "train.split_seed=7"]


def test_every_paradigm_holds_out_the_same_recordings(tmp_path):
    from editorbot.pointer.config import PointerConfig
    from editorbot.pointer.train import train as train_pointer
    from editorbot.precache import mel_for
    from editorbot.rl.train import RLConfig
    from editorbot.rl.train import train as train_rl
    from editorbot.supervised.config import SupervisedConfig
    from editorbot.supervised.toy import write_toy_corpus
    from editorbot.supervised.train import train as train_supervised

    torch.set_num_threads(1)
    data, cache = tmp_path / "training_data", tmp_path / "cache"
    names = write_toy_corpus(data, pairs=5, seed=2, seconds=16.0)
    layout = Layout(data, cache)
    for name in names:
        mel_for(layout.input_dir / f"{name}_raw.wav", layout.features(name, "raw"))
    expected_train, expected_val = split_by_recording(names, 0.25, 7)
    assert len(expected_val) == 2

    paths = {"pointer": tmp_path / "pointer" / "best.pt", "supervised": tmp_path / "supervised" / "best.pt",
             "rl": tmp_path / "rl" / "best.pt"}
    # One signature: train(config, run), the run saying where the pairs are and the model goes.
    def run(kind):
        return Run(paths[kind].parent, data, cache, progress=False)

    train_pointer(load(PointerConfig, None, POINTER_TINY + SPLIT), run("pointer"))
    train_supervised(load(SupervisedConfig, REPO / "configs/supervised/small.json", SUPERVISED_TINY + SPLIT),
                     run("supervised"))
    train_rl(load(RLConfig, REPO / "configs/rl/small.json", RL_TINY + SPLIT), run("rl"))
    for kind, path in paths.items():
        ckpt = load_checkpoint(path)
        assert ckpt["kind"] == kind
        assert ckpt["split"] == {"train": expected_train, "val": expected_val}, kind

    # evaluate scores exactly the held-out pairs, for each kind alone and for all three.
    for kinds in (["pointer"], ["supervised"], ["rl"], ["pointer", "supervised", "rl"]):
        out = tmp_path / f"{'-'.join(kinds)}.json"
        args = [x for k in kinds for x in ("--checkpoint", paths[k])]
        done = run_cli("evaluate", *args, "--data-dir", data, "--cache-dir", cache, "--no-baseline",
                       "--match-duration", "--json", out)
        assert done.returncode == 0, done.stderr
        assert "left out 3 pairs that the checkpoints trained on" in done.stderr
        figures = json.loads(out.read_text())
        assert len(figures) == len(kinds)
        for row in figures.values():
            assert sorted(row["per_pair"]) == expected_val and not row["failures"]

    # Naming a pair a checkpoint trained on is refused, for every kind, and for a supervised
    # checkpoint written with the old train_names / val_names as well.
    ckpt = torch.load(paths["supervised"], map_location="cpu", weights_only=True)
    split = ckpt.pop("split")
    old = save_checkpoint(tmp_path / "old" / "best.pt",
                          ckpt | {"train_names": split["train"], "val_names": split["val"]})
    for path in [*paths.values(), old]:
        done = run_cli("evaluate", "--checkpoint", path, "--data-dir", data, "--cache-dir", cache,
                       "--no-baseline", expected_train[0], expected_val[0])
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == (
            f"editorbot: error: {path}: trained on {expected_train[0]}, so its figures there would not be "
            "held out; name only held-out pairs")


def test_every_trainer_takes_the_same_options(monkeypatch, tmp_path):
    """--data-dir, --cache-dir, --save-dir, --resume, --max-minutes, --seed, --set mean the
    same in each `train` subcommand and reach the trainer as one Run; RL's earlier
    --checkpoint still resumes."""
    import argparse
    import types

    from editorbot.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.add_parser(parser.add_subparsers())
    common = ["--data-dir", "d", "--cache-dir", "c", "--save-dir", "s", "--resume", "r.pt",
              "--max-minutes", "2.5", "--seed", "3", "--set", "train.lr=0.1", "--no-progress"]
    for paradigm in ("pointer", "supervised", "rl"):
        args = parser.parse_args(["train", paradigm] + common)
        assert (args.seed, args.set) == (3, ["train.lr=0.1"]), paradigm
        assert Run.from_args(args) == Run(Path("s"), Path("d"), Path("c"), resume=Path("r.pt"),
                                          max_minutes=2.5, progress=False), paradigm
    assert parser.parse_args(["train", "rl", "--checkpoint", "old.pt"]).resume == "old.pt"

    seen = {}

    def fake_train(config, run, **kwargs):
        seen["config"], seen["run"] = config, run
        return types.SimpleNamespace(interrupted=True, summary=lambda paradigm: "")

    monkeypatch.setattr("editorbot.pointer.train.train", fake_train)
    args = parser.parse_args(["train", "pointer", "--data-dir", str(tmp_path), "--seed", "3",
                              "--resume", "r.pt"])
    assert args.func(args) == 130
    assert seen["run"].layout.pointer_dir == tmp_path / "pointer_sequences"
    assert seen["config"].train.seed == 3 and seen["run"].resume == Path("r.pt")
