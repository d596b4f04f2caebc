"""Edit a raw recording with a trained RL policy: beat features under the checkpoint's
normalizer, the policy run deterministically with its masks, the episode turned into an Edit.

Called through editorbot.editors.propose for checkpoints whose kind is 'rl'. The wanted
length (target_duration_s or keep, else the median of the training edits) goes into the
state; the policy stops playing once the edit is that long, is asked again with a
corrected target when it falls short, and what is too long is trimmed at the end.
"""
from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from ..checkpoint import load_state
from ..config import from_dict
from ..edits import Edit
from ..errors import UserError, log
from ..levels import at_editor_level
from .actions import ActionType
from .agent import Agent
from .beat_features import FEATURE_VERSION, beat_features
from .env import EditEnv
from .replay import track_to_edit
from .state import STATE_DIM, FeatureNormalizer
from .train import RLConfig, run_episode


def load_agent(checkpoint: dict) -> tuple[Agent, RLConfig, FeatureNormalizer]:
    """The agent of an 'rl' checkpoint, its config and its beat-feature normalizer."""
    if checkpoint.get("kind") != "rl":
        raise UserError(f"not an RL checkpoint (kind {checkpoint.get('kind')!r})")
    if checkpoint.get("beat_feature_version") != FEATURE_VERSION:
        raise UserError("the checkpoint was trained on another version of the beat features; "
                        "train it again with `editorbot train rl`")
    if checkpoint.get("state_dim") != STATE_DIM:
        raise UserError(f"the checkpoint's policy reads other states than this version's {STATE_DIM} "
                        "numbers; train it again with `editorbot train rl`")
    config = from_dict(RLConfig, checkpoint["config"], where="checkpoint config", saved=True)
    agent = Agent(config.agent)
    load_state(agent, checkpoint["model_state"], where="the rl checkpoint")
    agent.eval()
    normalizer = FeatureNormalizer.from_dict(checkpoint["normalizer"], where="checkpoint normalizer")
    return agent, config, normalizer


def action_distribution(type_counts: np.ndarray) -> str:
    """'KEEP 45%, CUT 40%, ...' for the types used, most used first."""
    total = max(int(type_counts.sum()), 1)
    order = np.argsort(-type_counts, kind="stable")
    return ", ".join(f"{ActionType(t).name} {100 * type_counts[t] / total:.0f}%"
                     for t in order if type_counts[t])


def trim_to(edit: Edit, duration_s: float, fade_s: float = 1.0) -> Edit:
    """The edit cut at duration_s (the segment that crosses it shortened and faded out
    over up to fade_s); unchanged when it is not longer."""
    if edit.duration_s <= duration_s:
        return edit
    segs, total = [], 0.0
    for seg in edit.segments:
        if total + seg.duration_s >= duration_s:
            keep = duration_s - total
            if keep > 1e-3:
                segs.append(replace(seg, duration_s=keep, fade_in_s=min(seg.fade_in_s, keep / 2),
                                    fade_out_s=min(max(seg.fade_out_s, fade_s), keep / 2)))
            break
        segs.append(seg)
        total += seg.duration_s
    return replace(edit, segments=segs)


def propose_edit(raw_path: str | os.PathLike, checkpoint: dict, *, target_duration_s: float | None = None,
                 keep: float | None = None, cache_dir: str | os.PathLike = "cache") -> Edit:
    """The edit the RL policy of `checkpoint` makes of `raw_path`.

    Args:
        checkpoint: a loaded 'rl' checkpoint (editorbot.editors.load_checkpoint).
        target_duration_s: wanted length in seconds, or
        keep: wanted edit length / raw length; neither: the training edits' median.
        cache_dir: where beat features are cached.

    Returns:
        Edit (logs the action distribution it used).
    """
    agent, config, normalizer = load_agent(checkpoint)
    features = beat_features(raw_path, cache_dir=cache_dir)
    raw_s = features.duration_s
    if target_duration_s is not None:
        wanted = float(target_duration_s) / raw_s
    elif keep is not None:
        wanted = float(keep)
    else:
        wanted = float(checkpoint.get("train_keep_ratio", config.env.target_keep_ratio))
    limit = config.env.max_played_ratio
    if not 0 < wanted <= limit:
        raise UserError(f"{raw_path}: asked for {wanted * raw_s:.0f} s of a {raw_s:.0f} s recording; "
                        f"the RL editor plays at most {limit:g} times the raw")
    tol = config.infer.keep_tolerance
    asked, best = wanted, None
    for _ in range(config.infer.retries + 1):
        env = EditEnv(raw_path, features=features, normalizer=normalizer, config=config.env,
                      target_keep_ratio=asked)
        run_episode(agent, env, play_limit_s=wanted * raw_s, device=torch.device("cpu"))
        got = env.output_s / raw_s
        if best is None or abs(got - wanted) < abs(best[0] - wanted):
            best = (got, env.track)
        if got >= wanted * (1 - tol) or asked >= limit:
            break
        asked = min(limit, asked * wanted / max(got, 1e-3))   # ask for more to get what is wanted
    got, track = best
    log.info("RL policy: %d actions (%s); edit %.0f s of %.0f s wanted", len(track.actions),
             action_distribution(track.type_counts), got * raw_s, wanted * raw_s)
    edit = track_to_edit(track, features.bounds_s, raw_path=str(raw_path),
                         crossfade_s=config.infer.crossfade_s)
    if not edit.segments:
        raise UserError(f"{raw_path}: the RL policy kept nothing; train it longer or ask for more (--keep)")
    return at_editor_level(trim_to(edit, wanted * raw_s * (1 + tol)), checkpoint.get("levels"))

