"""The Gymnasium environment: an agent walks a raw recording's beats with a cursor and
edits it with factored actions, rewarded once at the episode's end.

    env = EditEnv("training_data/input/jam_raw.wav", pointers=..., target_keep_ratio=0.3)
    action_space = MultiDiscrete([20, 5, 5]); observation: 882 float32 (state.STATE_LAYOUT)

info carries the action mask (bool (20, 5, 5), `actions.EditTrack.mask`) after every
step, and at the end the reward components; `action_masks()` gives sb3-contrib's per-head
masks. `make_vec_env` runs several environments in subprocesses (stable-baselines3).
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from ..edits import Edit, segments_to_pointers
from ..errors import UserError
from ..features import FeatureParams
from ..dataset import read_pointer_files
from ..layout import Layout
from .actions import (ACTION_DIMS, CUT_TYPES, JUMP_TYPES, LOOP_TYPES, EditTrack, head_masks,
                      resolve)
from .beat_features import BeatFeatures, beat_features, flow_columns, sample_name
from .reward import (HumanEdit, RewardConfig, episode_reward, human_edit_from_pointers,
                     piece_seconds, sections_from_features)
from .state import OBS_CLIP, STATE_DIM, FeatureNormalizer, StateBuilder


@dataclass
class EnvConfig:
    """Settings of the editing environment.

    target_keep_ratio: wanted edit length / raw length (0.55: about 45% cut), unless the
        constructor is given one.
    max_steps_per_beat: the episode is truncated after ceil(this * n_beats) steps.
    max_played_ratio: raw beats played (repeats counted again) may not pass this times
        the recording's beats; actions that would are masked.
    reward: the episode-end reward.
    """

    target_keep_ratio: float = 0.55
    max_steps_per_beat: float = 2.0
    max_played_ratio: float = 2.0
    reward: RewardConfig = field(default_factory=RewardConfig)


class EditEnv(gym.Env):
    """Edit one raw recording, beat by beat.

    Args:
        raw_path: the recording.
        pointers: the aligned human edit (raw frame per edit frame, int64, -1 = not in
            raw; see `load_pointers`), or None. Adds the human_match reward.
        target_keep_ratio: wanted edit length / raw length (default config's).
        config: EnvConfig.
        cache_dir: where beat features are cached.
        normalizer: beat-feature statistics fitted on the training recordings (saved with
            the agent); None uses no normalization (the features' own scaling).
        beats_s, downbeats_s: known beat and bar times instead of the beat tracker's.
        features: precomputed BeatFeatures (then raw_path is only recorded).
        params: the analysis grid of `pointers` and of the features computed here; needed
            with pointers or without features.

    The reward is paid at the episode's end; the last step's info carries
    'episode_reward' and 'reward_components'.
    """

    metadata = {"render_modes": []}

    def __init__(self, raw_path: str | os.PathLike, *, pointers: np.ndarray | None = None,
                 target_keep_ratio: float | None = None, config: EnvConfig | None = None,
                 cache_dir: str | os.PathLike = "cache",
                 normalizer: FeatureNormalizer | None = None,
                 beats_s: np.ndarray | None = None, downbeats_s: np.ndarray | None = None,
                 features: BeatFeatures | None = None, params: FeatureParams | None = None):
        super().__init__()
        if params is None and (pointers is not None or features is None):
            raise ValueError("EditEnv: pass params (the analysis grid) with pointers or without features")
        self.raw_path = Path(raw_path)
        self.config = config or EnvConfig()
        self.target_keep_ratio = (self.config.target_keep_ratio if target_keep_ratio is None
                                  else float(target_keep_ratio))
        if not 0.0 < self.target_keep_ratio <= self.config.max_played_ratio:
            raise UserError(f"target keep ratio {self.target_keep_ratio}: must be in (0, "
                            f"{self.config.max_played_ratio}], for example 0.3")
        self.features = features or beat_features(raw_path, cache_dir=cache_dir, params=params,
                                                  beats_s=beats_s, downbeats_s=downbeats_s)
        self.normalizer = normalizer or FeatureNormalizer.identity()
        self.n_beats = self.features.n_beats
        self.max_steps = math.ceil(self.config.max_steps_per_beat * self.n_beats)
        self.max_played = math.floor(self.config.max_played_ratio * self.n_beats)
        rc = self.config.reward
        self.state = StateBuilder(self.features, self.normalizer,
                                  target_keep_ratio=self.target_keep_ratio,
                                  max_steps=self.max_steps,
                                  loop_budget_base=rc.loop_budget_base,
                                  cuts_per_extra_loop=rc.cuts_per_extra_loop)
        # The reward compares beats within this recording: z-scored on its own statistics,
        # whatever normalizer the observation uses.
        own = FeatureNormalizer.fit([self.features.features])
        self._flow_features = own(self.features.features)[:, flow_columns()]
        self.section = sections_from_features(self._flow_features, half_beats=rc.section_half_beats,
                                              min_beats=rc.min_section_beats)
        self.human: HumanEdit | None = (None if pointers is None else
                                        human_edit_from_pointers(pointers, self.features.bounds_s, params))
        self.action_space = gym.spaces.MultiDiscrete(list(ACTION_DIMS))
        self.observation_space = gym.spaces.Box(-OBS_CLIP, OBS_CLIP, (STATE_DIM,), np.float32)
        self.track = self._new_track()
        self._reset_counters()

    # -- episode bookkeeping

    def _new_track(self) -> EditTrack:
        return EditTrack(self.n_beats, downbeat_phase=self.features.downbeat_phase,
                         max_played_beats=self.max_played)

    def _reset_counters(self) -> None:
        self.steps = 0
        self.output_s = 0.0
        self.used = np.zeros(self.n_beats, bool)

    def _observe(self) -> np.ndarray:
        c = self.track.type_counts
        return self.state(cursor=min(self.track.cursor, self.n_beats), output_s=self.output_s,
                          raw_beats_used=int(self.used.sum()), n_actions=len(self.track.actions),
                          n_cuts=int(c[list(CUT_TYPES)].sum()),
                          n_loops=int(c[list(LOOP_TYPES)].sum()),
                          n_jumps=int(c[list(JUMP_TYPES)].sum()))

    def _info(self, mask: np.ndarray) -> dict:
        return {"action_mask": mask, "cursor": int(self.track.cursor)}

    # -- gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.track = self._new_track()
        self._reset_counters()
        return self._observe(), self._info(self.track.mask())

    def step(self, action):
        if self.track.done:
            raise RuntimeError("step() after the episode ended; call reset()")
        asked = tuple(int(x) for x in np.asarray(action).ravel())
        action = resolve(self.track.mask(), asked)
        first_new = len(self.track.pieces)
        self.track.apply(action)
        for p in self.track.pieces[first_new:]:
            self.output_s += piece_seconds(p, self.features.bounds_s)
            self.used[p.start:p.start + p.n_beats] = True
        self.steps += 1
        terminated = self.track.done
        truncated = not terminated and self.steps >= self.max_steps
        mask = self.track.mask()
        info = self._info(mask)
        info["action"] = action
        info["resolved"] = action != asked
        reward = 0.0
        if terminated or truncated:
            reward, components = self.episode_reward()
            info["episode_reward"] = reward
            info["reward_components"] = components
            info["output_s"] = self.output_s
        return self._observe(), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Per-head masks (20 + 5 + 5 bools) for sb3-contrib's MaskablePPO."""
        return head_masks(self.track.mask())

    def episode_reward(self) -> tuple[float, dict[str, float]]:
        """The reward of the episode so far as if it ended now, and its components."""
        return episode_reward(self.track, bounds_s=self.features.bounds_s,
                              features=self._flow_features, section=self.section,
                              target_keep_ratio=self.target_keep_ratio,
                              config=self.config.reward, human=self.human)


# ---------------------------------------------------------------------------- helpers

def load_pointers(raw_path: str | os.PathLike, *, params: FeatureParams,
                  data_dir: str | os.PathLike | None = None,
                  truth_path: str | os.PathLike | None = None) -> np.ndarray | None:
    """The aligned human edit of a raw recording as pointers (frames of params' grid), or
    None when there is none.

    Looks at truth_path (a synthetic pair's truth JSON, whose segments give the pointers)
    when given, else at data_dir/pointer_sequences/{name}_pointers.npy (data_dir defaults
    to the folder above the raw's input/ folder).
    """
    if truth_path is not None:
        path = Path(truth_path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{path}: cannot read the truth file ({err}); regenerate it") from None
        return segments_to_pointers(Edit.from_json(data, where=str(path)), params)
    layout = Layout(Path(data_dir) if data_dir is not None else Path(raw_path).parent.parent)
    name = sample_name(raw_path)
    if not layout.pointer_file(name, "pointers.npy").exists():
        return None
    return read_pointer_files(layout.pointer_dir, name, params=params)[0]


def env_fn(raw_path: str | os.PathLike, **kwargs) -> Callable[[], EditEnv]:
    """A picklable function that builds EditEnv(raw_path, **kwargs) (for vector envs)."""
    return functools.partial(EditEnv, raw_path, **kwargs)


def make_vec_env(env_fns: list[Callable[[], EditEnv]], *, subprocess: bool = True,
                 start_method: str | None = None):
    """Several environments as one stable-baselines3 VecEnv.

    Args:
        env_fns: functions that build the environments (see `env_fn`).
        subprocess: one worker process per environment (SubprocVecEnv); False runs them
            in this process (DummyVecEnv).
        start_method: multiprocessing start method of the workers (default: SB3's,
            'forkserver' on Linux; 'fork' starts faster as workers inherit the imports).

    MaskablePPO reads the masks through `env_method("action_masks")`.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if not subprocess:
        return DummyVecEnv(env_fns)
    return SubprocVecEnv(env_fns, start_method=start_method)
