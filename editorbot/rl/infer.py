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
from ..features import FeatureParams
from .actions import ActionType
from .agent import Agent
from .beat_features import FEATURE_VERSION, BeatFeatures, beat_features
from .config import RLConfig
from .env import EditEnv
from .replay import track_to_edit
from .state import STATE_DIM, FeatureNormalizer


def load_agent(checkpoint: dict) -> tuple[Agent, RLConfig, FeatureNormalizer, FeatureParams]:
    """The agent of an 'rl' checkpoint, its config, its beat-feature normalizer and the
    analysis grid it was trained on."""
    if checkpoint.get("kind") != "rl":
        raise UserError(f"not an RL checkpoint (kind {checkpoint.get('kind')!r})")
    if checkpoint.get("beat_feature_version") != FEATURE_VERSION:
        raise UserError("the checkpoint was trained on another version of the beat features; "
                        "train it again with `editorbot train rl`")
    if checkpoint.get("state_dim") != STATE_DIM:
        raise UserError(f"the checkpoint's policy reads other states than this version's {STATE_DIM} "
                        "numbers; train it again with `editorbot train rl`")
    config = from_dict(RLConfig, checkpoint["config"], where="checkpoint config", saved=True)
    params = FeatureParams(**checkpoint["feature_params"])
    agent = Agent(config.agent, n_mels=params.n_mels)
    load_state(agent, checkpoint["model_state"], where="the rl checkpoint")
    agent.eval()
    normalizer = FeatureNormalizer.from_dict(checkpoint["normalizer"], where="checkpoint normalizer")
    return agent, config, normalizer, params


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


def run_episode(agent: Agent, env: EditEnv, *, deterministic: bool = True, play_limit_s: float | None = None,
                device=torch.device("cpu")):
    """Run the policy through one episode of `env` with its masks.

    Args:
        play_limit_s: once the edit is this long, only actions that play nothing and move
            on (CUT, SKIP) stay allowed, so that the episode ends without playing more.

    Returns:
        (reward, components) of the finished episode; env.track holds what it did.
    """
    obs, info = env.reset()
    agent.eval()
    while True:
        mask = info["action_mask"]
        if play_limit_s is not None and env.output_s >= play_limit_s:
            only = np.zeros_like(mask)
            only[[ActionType.CUT, ActionType.SKIP]] = mask[[ActionType.CUT, ActionType.SKIP]]
            mask = only if only.any() else mask
        with torch.no_grad():
            actions, _, _ = agent.act(torch.as_tensor(obs[None], device=device),
                                      torch.as_tensor(mask[None], device=device), deterministic=deterministic)
        obs, reward, term, trunc, info = env.step(actions[0].cpu().numpy())
        if term or trunc:
            return float(info["episode_reward"]), info.get("reward_components", {})


def policy_edit(agent: Agent, config: RLConfig, normalizer: FeatureNormalizer, features: BeatFeatures,
                raw_path: str | os.PathLike, *, wanted: float, pointers: np.ndarray | None = None,
                params: FeatureParams | None = None,
                device: torch.device = torch.device("cpu")) -> tuple[Edit, EditEnv]:
    """The edit the policy makes of one recording, as `editorbot edit` makes it (before the
    editor's levels): deterministic episodes with their masks, asked again with a corrected
    target while the edit falls short; the episode closest to the wanted length, its edit
    trimmed where it runs over by more than config.infer.keep_tolerance.

    Args:
        features: the recording's beat features on the grid the edit is made on
            (`beat_features` with the checkpoint's analysis grid).
        wanted: wanted edit length / raw length, in (0, config.env.max_played_ratio].
        pointers, params: the human edit and its analysis grid, when known (validation):
            the episodes' reward then has its human_match term.

    Returns:
        (edit, env): the edit, and the environment holding the episode it came from.
    """
    raw_s = features.duration_s
    tol = config.infer.keep_tolerance
    asked, best = wanted, None
    for _ in range(config.infer.retries + 1):
        env = EditEnv(raw_path, features=features, normalizer=normalizer, config=config.env,
                      target_keep_ratio=asked, pointers=pointers, params=params)
        run_episode(agent, env, play_limit_s=wanted * raw_s, device=device)
        got = env.output_s / raw_s
        if best is None or abs(got - wanted) < abs(best[0] - wanted):
            best = (got, env)
        if got >= wanted * (1 - tol) or asked >= config.env.max_played_ratio:
            break
        asked = min(config.env.max_played_ratio, asked * wanted / max(got, 1e-3))  # ask for more to get what is wanted
    env = best[1]
    edit = track_to_edit(env.track, features.bounds_s, raw_path=str(raw_path),
                         crossfade_s=config.infer.crossfade_s)
    return trim_to(edit, wanted * raw_s * (1 + tol)), env


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
    agent, config, normalizer, params = load_agent(checkpoint)
    features = beat_features(raw_path, cache_dir=cache_dir, params=params)
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
    edit, env = policy_edit(agent, config, normalizer, features, raw_path, wanted=wanted)
    log.info("RL policy: %d actions (%s); edit %.0f s of %.0f s wanted", len(env.track.actions),
             action_distribution(env.track.type_counts), env.output_s, wanted * raw_s)
    if not edit.segments:
        raise UserError(f"{raw_path}: the RL policy kept nothing; train it longer or ask for more (--keep)")
    return at_editor_level(edit, checkpoint.get("levels"))
