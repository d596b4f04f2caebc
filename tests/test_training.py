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
    # Before any validation ran, a fifth of the run is kept free for the first one.
    assert d.margin(0.0) == pytest.approx(120.0) and d.margin(30.0) == 30.0 and free.margin(0.0) == 0.0


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


def test_every_checkpoint_carries_the_editors_levels_when_the_pairs_tell_them(tmp_path):
    """Two aligned pairs: the levels are the segment levels over the raw (mastering + gain)
    and the mean mastering; a corpus kept as truth pointers (no alignment info) gives None,
    and checkpoint_payload writes levels only when measured."""
    import numpy as np
    import soundfile as sf
    import torch

    from editorbot.features import DEFAULT_PARAMS
    from editorbot.training import checkpoint_payload, measured_levels

    data = tmp_path / "training_data"
    for d in ("input", "desired_output", "pointer_sequences"):
        (data / d).mkdir(parents=True)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(44100 * 3) / 44100).astype(np.float32)
    for name, master, gains in (("a", 3.0, [0.5, -1.0]), ("b", 5.0, [2.0, 0.0])):
        sf.write(data / "input" / f"{name}_raw.wav", tone, 44100)
        sf.write(data / "desired_output" / f"{name}_edit.wav", tone, 44100)
        segments = [{"raw_start_s": 0.0, "duration_s": 1.5, "gain_db": g} for g in gains]
        (data / "pointer_sequences" / f"{name}_info.json").write_text(
            json.dumps({"mastering_gain_db": master, "segments": segments}))
    run = Run(tmp_path / "m", data)
    levels = measured_levels(run, ["a", "b"])
    assert levels["gain_db"] == [2.0, 7.0] and levels["mastering_gain_db"] == 4.0 and levels["pairs"] == 2
    assert levels["loudness_lufs"] is not None  # the two edits are equally loud
    (data / "pointer_sequences" / "b_info.json").write_text(json.dumps({"source": "truth", "segments": []}))
    assert measured_levels(run, ["a", "b"]) is None
    common = dict(config={}, params=DEFAULT_PARAMS, split=(["a"], ["b"]), step=3, metrics={},
                  model_state={"w": torch.zeros(2)})
    assert "levels" not in checkpoint_payload("pointer", **common)
    assert checkpoint_payload("pointer", **common, levels=levels)["levels"] == levels
