"""The plumbing every trainer shares (editorbot.training): the run, its deadline, its
progress bar and the split of a resumed run."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from editorbot.config import load
from editorbot.errors import UserError
from editorbot.pointer.config import PointerConfig
from editorbot.rl.ppo import PPOConfig
from editorbot.config import from_dict, to_dict
from editorbot.training import Deadline, Progress, Run, held_out


def test_a_deadline_shares_out_the_run():
    d = Deadline(10.0, started=1000.0)
    assert d.at == 1600.0 and d.share(0.25) == 1150.0
    free = Deadline(0.0, started=1000.0)
    assert not free.set and free.share(0.25) == float("inf") and not free.passed(margin_s=1e9)
    assert Deadline(1.0, started=time.time() - 59.5).passed(margin_s=1.0)
    assert not Deadline(1.0, started=time.time() - 58.0).passed(margin_s=1.0)


def test_the_progress_total_does_not_move_and_the_loss_is_smoothed():
    bar = Progress("t", steps=40, deadline=Deadline(0.0), enabled=False)
    for loss in (1.0, 101.0):
        bar.step(loss)
    assert bar.total == 40 and bar.done == 2
    assert bar.loss == pytest.approx(1.0 + 0.05 * 100.0)
    assert bar.shown == "loss 6.000"  # no stray ", " before it
    timed = Progress("t", steps=40, deadline=Deadline(2.0, started=time.time() - 30.0), enabled=False)
    timed.step(float("nan"))
    assert timed.total == 2.0 and timed.done == pytest.approx(0.5, abs=0.02) and timed.loss is None
    bar.close()
    timed.close()


def test_a_resumed_run_keeps_its_split_and_leaves_out_new_recordings(caplog):
    caplog.set_level(logging.INFO, logger="editorbot")
    saved = {"train": ["a", "b", "c"], "val": ["d"]}
    assert held_out(["a", "b", "c", "d", "e"], 0.5, 0, saved=saved, where="x.pt") == (["a", "b", "c"], ["d"])
    assert "1 recording(s) added since that run are left out: e" in caplog.text
    assert held_out(["a", "b", "c", "d", "e"], 0.2, 0) == held_out(["e", "d", "c", "b", "a"], 0.2, 0)
    with pytest.raises(UserError, match="none of the recordings it trained on"):
        held_out(["x"], 0.2, 0, saved=saved, where="x.pt")


def test_a_run_takes_resume_or_init_not_both():
    with pytest.raises(UserError, match="give one of them"):
        Run(Path("s"), resume=Path("a.pt"), init=Path("b.pt"))
    with pytest.raises(UserError, match="--max-minutes -1"):
        Run(Path("s"), max_minutes=-1)
    assert Run("s", "d", "c").layout.pointer_dir == Path("d/pointer_sequences")
    assert Run("s").logs == Path("s/logs") and Run("s", log_dir="l").logs == Path("l")


def test_settings_that_became_flags_are_named_in_a_config_and_dropped_from_a_checkpoint(tmp_path):
    config = tmp_path / "old.json"
    config.write_text(json.dumps({"train": {"save_dir": "models/x", "epochs": 3}}))
    with pytest.raises(UserError, match="'save_dir' is no longer a setting; use --save-dir instead"):
        load(PointerConfig, config)
    old = to_dict(PointerConfig())
    old["train"] |= {"save_dir": "models/x", "pointer_dir": "p", "max_minutes": 5.0}
    assert from_dict(PointerConfig, old, saved=True) == PointerConfig()
    assert from_dict(PPOConfig, {"shaped_reward": True}, saved=True) == PPOConfig()
    with pytest.raises(UserError, match="shaped_reward"):
        from_dict(PPOConfig, {"shaped_reward": True})
