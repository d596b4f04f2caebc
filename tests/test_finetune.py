"""Fine-tuning a pointer model on new pairs (`editorbot train pointer --init`, issue 27):
keep pretraining on the new pairs, then the lower rate and short schedule of train.finetune,
the new pairs' split and keep ratio, the model's keep threshold where no validation chooses one; and the
one-line refusals.

Budget: about 30 s on a quiet 2-core machine (tiny models, 12-second toy recordings).
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from editorbot.base import MADE_UP_EDITORS, mark_made_up
from editorbot.checkpoint import load_checkpoint, save_checkpoint
from editorbot.cli import main
from editorbot.config import to_dict
from editorbot.errors import UserError
from editorbot.pointer import train as pointer_train
from editorbot.training import resolve_init

from .test_pointer import tiny_config, tiny_run, write_toy_corpus

BASE_THRESHOLD = 0.35  # written into the base model: no validation would choose it by chance
BASE_KEEP_RATIO = 0.123  # the same: the toy trimmer keeps about half


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model trained briefly (with keep pretraining) on 4 toy pairs, its keep
    threshold and keep ratio then set to values of our choosing; and 5 other toy pairs."""
    root = tmp_path_factory.mktemp("finetune")
    old = write_toy_corpus(root / "old", 4, seed=0)
    new = write_toy_corpus(root / "new", 5, seed=1)
    pretrained = []
    real = pointer_train.pretrain_section_keep

    def counted(*args, **kw):
        pretrained.append(kw.get("deadline"))
        return real(*args, **kw)

    pointer_train.pretrain_section_keep = counted
    try:
        pointer_train.train(tiny_config("train.epochs=2", "train.keep_pretrain_steps=3"),
                            tiny_run(old, root / "base"))
    finally:
        pointer_train.pretrain_section_keep = real
    assert len(pretrained) == 1
    ckpt = load_checkpoint(root / "base" / "best.pt")
    ckpt |= {"keep_threshold": BASE_THRESHOLD, "keep_ratio": BASE_KEEP_RATIO}
    save_checkpoint(root / "base" / "best.pt", ckpt)
    return root, old, new


def test_init_pretrains_the_keep_head_on_the_new_pairs_then_fine_tunes_at_the_lower_rate(base, monkeypatch, caplog):
    from editorbot.pointer.data import PointerData

    root, _, new = base
    pretrained = []
    real_pretrain = pointer_train.pretrain_section_keep

    def pretrain(net, data, names, tc, *a, **kw):  # on the new pairs, from the base's weights
        assert sorted(names) == [f"toy{i:02d}" for i in range(5)]
        assert torch.equal(net.state_dict()["section_keep.weight"],
                           load_checkpoint(root / "base" / "best.pt")["model_state"]["section_keep.weight"])
        pretrained.append(real_pretrain(net, data, names, tc, *a, **kw))
        return pretrained[-1]
    monkeypatch.setattr(pointer_train, "pretrain_section_keep", pretrain)
    caplog.set_level(logging.INFO, logger="editorbot")
    cfg = tiny_config("train.keep_pretrain_steps=3", "train.lr=0.01", "train.finetune.lr=0.002",
                      "train.finetune.epochs=2", "train.finetune.warmup_steps=1", "train.val_fraction=0")
    lrs = []
    result = pointer_train.train(cfg, tiny_run(new, root / "tuned", init=root / "base" / "best.pt"),
                                 on_step=lambda step, _: lrs.append(step))
    # the 5 new pairs (no validation), 2 a step: 3 steps an epoch, 2 epochs
    assert result.steps == 6 and len(lrs) == 6 and result.history == []
    tuned = load_checkpoint(root / "tuned" / "best.pt")
    latest = load_checkpoint(root / "tuned" / "latest.pt")
    group = latest["optimizer_state"]["param_groups"][0]
    assert group["initial_lr"] == 0.002  # train.finetune.lr, not train.lr
    # after warm-up, a cosine from 1 to 0.1 over the 5 steps that follow it: at the end, 0.1 x lr
    assert group["lr"] == pytest.approx(0.0002)
    assert tuned["init"] == str(root / "base" / "best.pt")
    assert tuned["keep_threshold"] == BASE_THRESHOLD  # no validation to choose another on
    data = PointerData(new.cache_dir, new.pointer_dir)
    assert tuned["keep_ratio"] == pytest.approx(float(np.median([r.keep_ratio for r in data.recordings.values()])))
    assert tuned["split"] == {"train": [f"toy{i:02d}" for i in range(5)], "val": []}
    assert pretrained == [3]  # train.keep_pretrain_steps
    assert (f"fine-tuning {root / 'base' / 'best.pt'} at lr 0.002 for 6 steps (train.finetune.epochs 2 "
            f"on 5 pairs), keeping its keep threshold 0.35" in caplog.text)
    # The weights moved from the base model's, but started there.
    start = load_checkpoint(root / "base" / "best.pt")["model_state"]
    assert any(not torch.equal(start[k], tuned["model_state"][k]) for k in start)

    # Resumed, a fine-tuning stays one: same rate, schedule and kept settings.
    def stop_at_2(step, _):
        if step == 2:
            raise KeyboardInterrupt

    assert pointer_train.train(cfg, tiny_run(new, root / "cut", init=root / "base" / "best.pt"),
                               on_step=stop_at_2).interrupted
    resumed = pointer_train.train(cfg, tiny_run(new, root / "cut", resume=root / "cut" / "latest.pt"))
    assert resumed.steps == 6
    again = load_checkpoint(root / "cut" / "latest.pt")
    assert again["optimizer_state"]["param_groups"][0]["initial_lr"] == 0.002
    assert again["init"] == tuned["init"] and again["keep_threshold"] == BASE_THRESHOLD
    for key in latest["model_state"]:
        torch.testing.assert_close(latest["model_state"][key], again["model_state"][key], rtol=0, atol=0)


@pytest.mark.parametrize("source", ["model", "model+structure"])
def test_a_fine_tuning_validates_with_its_models_keep_source_as_the_incumbent(base, tmp_path, monkeypatch, source):
    """A tie between the keep logits' plans keeps the fine-tuned model's own keep_source;
    a run from scratch has none (the model's logit alone)."""
    root, _, new = base
    init = tmp_path / "init.pt"
    save_checkpoint(init, load_checkpoint(root / "base" / "best.pt") | {"keep_source": source})
    incumbents = []
    real = pointer_train.validate

    def validate(*args, **kw):
        incumbents.append(kw["keep_source"])
        return real(*args, **kw)

    monkeypatch.setattr(pointer_train, "validate", validate)
    cfg = tiny_config("train.finetune.epochs=1", "train.val_fraction=0.2")
    pointer_train.train(cfg, tiny_run(new, tmp_path / "tuned", init=init))
    pointer_train.train(tiny_config("train.epochs=1", "train.val_fraction=0.2"), tiny_run(new, tmp_path / "new"))
    assert incumbents == [source, "model"]


def test_the_cli_says_what_it_fine_tunes_and_refuses_what_it_cannot(base, tmp_path, capsys, monkeypatch):
    root, _, new = base
    common = ["train", "pointer", "--no-progress", "--data-dir", str(new.data_dir), "--cache-dir",
              str(new.cache_dir)]
    best = root / "base" / "best.pt"
    # No --config: the settings the model was trained with (the built-in ones are larger).
    assert main([*common, "--save-dir", str(tmp_path / "ok"), "--init", str(best), "--epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert f"fine-tuning {best} at lr 0.001 for 2 steps (train.finetune.epochs 1 on 4 pairs" in err
    assert "keeping its keep threshold" not in err  # its validation recording chooses one
    latest = load_checkpoint(tmp_path / "ok" / "latest.pt")
    assert latest["epoch"] == 1 and latest["config"]["model"]["d_model"] == 16
    assert latest["config"]["train"]["val_names"] == [] and len(latest["split"]["val"]) == 1
    assert latest["keep_threshold"] == latest["metrics"]["val/keep_threshold"]

    def refused(*args: str) -> str:
        assert main([*common, "--save-dir", str(tmp_path / "no"), *args]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("editorbot: error: ")
        return lines[0]

    assert f"{best}: trained with other model settings than the config (d_model)" in refused(
        "--init", str(best), "--set", "model.d_model=32")
    config = tmp_path / "wide.json"
    config.write_text(json.dumps(to_dict(tiny_config("model.n_layers=2"))))
    assert f"{best}: trained with other model settings than the config (n_layers)" in refused(
        "--init", str(best), "--config", str(config))
    other = load_checkpoint(best) | {"kind": "supervised"}
    save_checkpoint(tmp_path / "supervised.pt", other)
    assert "a supervised checkpoint; --init takes a pointer model" in refused("--init", str(tmp_path / "supervised.pt"))
    assert "--init nothing.pt: no such checkpoint" in refused("--init", "nothing.pt")
    monkeypatch.setattr("editorbot.base.BASE_CHECKPOINT", tmp_path / "none.pt")  # an install without one
    assert "--init base: this editorbot ships no base model" in refused("--init", "base")
    assert not (tmp_path / "no").exists()


def test_resolve_init_names_scratch_base_and_paths(tmp_path, monkeypatch):
    assert resolve_init(None) is None and resolve_init("scratch") is None
    pt = tmp_path / "best.pt"
    pt.write_bytes(b"")
    assert resolve_init(str(pt)) == pt
    monkeypatch.setattr("editorbot.base.BASE_CHECKPOINT", pt)
    assert resolve_init("base") == pt
    monkeypatch.setattr("editorbot.base.BASE_CHECKPOINT", tmp_path / "none.pt")
    with pytest.raises(UserError, match="ships no base model"):
        resolve_init("base")


def test_train_pointer_fine_tunes_the_base_unless_told_otherwise(tmp_path, monkeypatch):
    from editorbot.cli import build_parser
    from editorbot.commands.train import default_init

    def init(*argv: str) -> str:
        return default_init(build_parser().parse_args(["train", "pointer", *argv]))

    pt = tmp_path / "base.pt"
    pt.write_bytes(b"")
    monkeypatch.setattr("editorbot.base.BASE_CHECKPOINT", pt)
    assert init() == "base"
    assert init("--config", "configs/pointer/full.json") == "scratch"  # a new model of that file
    assert init("--resume", "latest.pt") == "scratch"  # its own weights
    assert init("--init", "scratch") == "scratch" and init("--init", "m.pt") == "m.pt"
    assert init("--config", "c.json", "--init", "base") == "base"
    monkeypatch.setattr("editorbot.base.BASE_CHECKPOINT", tmp_path / "none.pt")  # an install without one
    assert init() == "scratch"


def test_from_a_base_the_new_pairs_alone_say_whether_edits_jump_back(base, tmp_path):
    """The toy trimmer's pairs never jump back. A model whose own pairs did (jumps_back
    True) passes that on to its fine-tuning; a base, pretrained on made-up editors (a
    looper among them) and marked so, does not: fine-tuned from it on pairs that never jump
    back, the model's edits do not either (from the base, real trimmer jams came out twice
    their length, replayed). The mark is in the checkpoint, wherever it lies."""
    root, _, new = base
    jumping = tmp_path / "jumping.pt"
    save_checkpoint(jumping, load_checkpoint(root / "base" / "best.pt") | {"jumps_back": True})
    cfg = tiny_config("train.finetune.epochs=1", "train.val_fraction=0")
    pointer_train.train(cfg, tiny_run(new, tmp_path / "from_model", init=jumping))
    assert load_checkpoint(tmp_path / "from_model" / "best.pt")["jumps_back"] is True
    mark_made_up(jumping)
    pointer_train.train(cfg, tiny_run(new, tmp_path / "from_base", init=jumping))
    tuned = load_checkpoint(tmp_path / "from_base" / "best.pt")
    assert tuned["jumps_back"] is False
    assert MADE_UP_EDITORS not in tuned  # the fine-tuned model learnt from this musician


def test_a_fine_tuning_splits_the_new_pairs_as_any_run_does(base, tmp_path):
    """The base held out 5% of its corpus; the musician's 20 pairs are split at the default
    fraction and seed (one held out of 20 chose the model on a single recording)."""
    from editorbot.pointer.config import TrainConfig

    root, _, _ = base
    ckpt = load_checkpoint(root / "base" / "best.pt")
    ckpt["config"]["train"] |= {"val_fraction": 0.05, "split_seed": 7, "val_names": ["toy00"]}
    save_checkpoint(tmp_path / "corpus.pt", ckpt)
    cfg = pointer_train.init_config(tmp_path / "corpus.pt", [])
    assert (cfg.train.val_fraction, cfg.train.split_seed, cfg.train.val_names) == \
        (TrainConfig().val_fraction, TrainConfig().split_seed, [])
    assert pointer_train.init_config(tmp_path / "corpus.pt", ["train.val_fraction=0.3"]).train.val_fraction == 0.3
