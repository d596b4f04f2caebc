"""The agent's observation: 882 numbers per step (STATE_LAYOUT), and the normalizer of the
beat features, whose statistics are fitted on training recordings, saved and reused.

Layout, in order: the normalized features of the 7 beats cursor-3 .. cursor+3 (zeros
outside the recording), 20 numbers of the recording's structure around the cursor (where
the sound changes, how loud it is, bar by bar over the 32 beats ahead; whether the phrase
ahead was heard before; the detected section around the cursor), 3 global numbers of the
recording, 6 of the edit's history so far, 4 of what is left to do, 2 of where the cursor
is. Every scalar is named below.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache import load_npz, save_npz
from ..errors import UserError
from .actions import BEATS_PER_BAR, BEATS_PER_PHRASE
from .beat_features import BEAT_FEATURE_NAMES, N_BEAT_FEATURES, BeatFeatures, feature_slice, flow_columns
from .reward import novelty_curve, sections_from_features

CONTEXT_BEATS = 3  # beats each side of the cursor
AHEAD_BARS = 8     # bars ahead the structure numbers describe (the longest action, 2 phrases)
STRUCTURE_NAMES = (("novelty_bar-1",) + tuple(f"novelty_bar+{k}" for k in range(AHEAD_BARS))
                   + tuple(f"rms_bar+{k}" for k in range(AHEAD_BARS))
                   + ("phrase_ahead_heard_before", "beats_since_section/64", "beats_to_section/64"))
GLOBAL_NAMES = ("log1p_duration_min/log1p_60", "tempo_bpm/200", "mean_rms")
HISTORY_NAMES = ("output_s/raw_s", "raw_beats_used/n_beats", "cut_actions/actions",
                 "loop_actions/loop_budget", "jump_actions/actions", "steps/max_steps")
TARGET_NAMES = ("raw_beats_left/n_beats", "target_keep_ratio", "output_s_left/raw_s",
                "output_s_left/raw_s_left")
POSITION_NAMES = ("cursor/n_beats", "beat_in_phrase/16")

STATE_LAYOUT: tuple[tuple[str, int], ...] = (
    ("context", (2 * CONTEXT_BEATS + 1) * N_BEAT_FEATURES),   # 7 x 121 = 847
    ("structure", len(STRUCTURE_NAMES)),                     # 20
    ("global", len(GLOBAL_NAMES)),                           # 3
    ("history", len(HISTORY_NAMES)),                         # 6
    ("target", len(TARGET_NAMES)),                           # 4
    ("position", len(POSITION_NAMES)),                       # 2
)
STATE_DIM = 882
assert sum(n for _, n in STATE_LAYOUT) == STATE_DIM
OBS_CLIP = 10.0  # observations are clipped to +- this (normalized features: 10 sigma)


def state_slice(part: str) -> slice:
    """Columns of one part of STATE_LAYOUT, e.g. state_slice('history')."""
    start = 0
    for name, n in STATE_LAYOUT:
        if name == part:
            return slice(start, start + n)
        start += n
    raise KeyError(f"no state part {part!r}; parts: {', '.join(n for n, _ in STATE_LAYOUT)}")


def state_names() -> list[str]:
    """A name for each of the 882 dimensions (context ones as 'beat-3:chroma_A')."""
    names = [f"beat{o:+d}:{n}" for o in range(-CONTEXT_BEATS, CONTEXT_BEATS + 1)
             for n in BEAT_FEATURE_NAMES]
    names += list(STRUCTURE_NAMES + GLOBAL_NAMES + HISTORY_NAMES + TARGET_NAMES + POSITION_NAMES)
    assert len(names) == STATE_DIM
    return names


@dataclass
class FeatureNormalizer:
    """Z-scoring of beat features with saved statistics.

    mean, std : np.ndarray [shape=(121,)], float64; `count` beats were seen. Dimensions
    with (near) zero spread get std 1, so that constant features stay at 0.
    """

    mean: np.ndarray
    std: np.ndarray
    count: int = 0

    @classmethod
    def identity(cls) -> "FeatureNormalizer":
        return cls(np.zeros(N_BEAT_FEATURES), np.ones(N_BEAT_FEATURES), 0)

    @classmethod
    def fit(cls, feature_arrays: list[np.ndarray]) -> "FeatureNormalizer":
        """Statistics of all beats of the given recordings (each (n_beats, 121))."""
        if not feature_arrays:
            raise ValueError("no recordings to fit the normalizer on")
        x = np.concatenate([np.asarray(f, np.float64) for f in feature_arrays])
        if x.shape[1] != N_BEAT_FEATURES:
            raise ValueError(f"expected (n, {N_BEAT_FEATURES}) features, got {x.shape}")
        std = x.std(axis=0)
        return cls(x.mean(axis=0), np.where(std < 1e-6, 1.0, std), len(x))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(features - mean) / std, clipped to +-OBS_CLIP, float32, same shape."""
        z = (np.asarray(features, np.float64) - self.mean) / self.std
        return np.clip(z, -OBS_CLIP, OBS_CLIP).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain lists, for a checkpoint."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": int(self.count),
                "names": list(BEAT_FEATURE_NAMES)}

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "normalizer") -> "FeatureNormalizer":
        if data.get("names") != list(BEAT_FEATURE_NAMES):
            raise UserError(f"{where}: made for other beat features; refit the normalizer "
                            "(train again)")
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64),
                   int(data["count"]))

    def save(self, path: str | os.PathLike) -> Path:
        return save_npz(path, {"kind": "beat_feature_normalizer", "count": int(self.count),
                               "names": list(BEAT_FEATURE_NAMES)}, mean=self.mean, std=self.std)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureNormalizer":
        entry = load_npz(path)
        if entry is None:
            raise UserError(f"{path}: no such normalizer file; fit one on the training "
                            "recordings (FeatureNormalizer.fit(...).save(path))")
        arrays, meta = entry
        return cls.from_dict({"mean": arrays["mean"], "std": arrays["std"],
                              "count": meta.get("count", 0), "names": meta.get("names")},
                             where=str(path))


def structure_table(features: np.ndarray, *, half_beats: int = 8, phrase_beats: int = BEATS_PER_PHRASE
                    ) -> np.ndarray:
    """The structure numbers (STRUCTURE_NAMES) of a recording at every cursor 0 .. n_beats,
    from its own beat features (z-scored on the recording itself, bar position left out),
    so that they mean the same in every recording whatever the training normalizer.

    novelty_bar+k: the largest novelty (`reward.novelty_curve`, in standard deviations of
        the recording's novelty) over beats [c + 4k, c + 4k + 4); bar-1 the bar behind.
    rms_bar+k: the mean loudness (rms_db, in standard deviations of the recording's) of
        that bar; bars past the end read -3.
    phrase_ahead_heard_before: the largest cosine similarity of the mean sound of beats
        [c, c + 16) with that of any phrase [j, j + 16) that ended by c (0: none).
    beats_since_section, beats_to_section: distance to the start of the detected section
        (`reward.sections_from_features`) the cursor is in and to the next one's start
        (the end of the recording when none), over 64, at most 1.

    Args:
        features : np.ndarray [shape=(n_beats, 121)]

    Returns:
        np.ndarray [shape=(n_beats + 1, 20)], float32
    """
    x = np.asarray(features, np.float64)
    n = len(x)
    std = x.std(axis=0)
    z = ((x - x.mean(axis=0)) / np.where(std < 1e-6, 1.0, std))[:, flow_columns()]
    nov = novelty_curve(z, half_beats=half_beats)
    nov = (nov - nov.mean()) / (nov.std() + 1e-9) if n else nov
    rms = x[:, feature_slice("spectral")][:, 0]
    rms = (rms - rms.mean()) / (rms.std() + 1e-9) if n else rms
    bar = BEATS_PER_BAR
    cursors = np.arange(n + 1)
    out = np.zeros((n + 1, len(STRUCTURE_NAMES)), np.float64)

    def per_bar(values: np.ndarray, reduce, outside: float) -> np.ndarray:
        padded = np.concatenate([np.full(bar, outside), values, np.full((AHEAD_BARS + 1) * bar, outside)])
        idx = cursors[:, None] + bar + np.arange(-bar, AHEAD_BARS * bar)[None, :]
        return reduce(padded[idx].reshape(n + 1, AHEAD_BARS + 1, bar), axis=2)

    out[:, :AHEAD_BARS + 1] = per_bar(nov, np.max, 0.0)
    out[:, AHEAD_BARS + 1:2 * AHEAD_BARS + 1] = per_bar(rms, np.mean, -3.0)[:, 1:]
    if n >= phrase_beats:
        c = np.concatenate([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])
        means = (c[phrase_beats:] - c[:-phrase_beats]) / phrase_beats          # phrase starting at j
        unit = means / (np.linalg.norm(means, axis=1, keepdims=True) + 1e-9)
        # Cursor c compares with phrases j <= c - phrase_beats; blocks of cursors keep the
        # similarities in O(n) memory (a 60-minute recording has ~7000 beats).
        first, stop = phrase_beats, n - phrase_beats + 1
        for a in range(first, stop, 512):
            b = min(a + 512, stop)
            sim = unit[a:b] @ unit[:b - phrase_beats].T
            sim[np.arange(b - phrase_beats)[None, :] > np.arange(a - phrase_beats, b - phrase_beats)[:, None]] = -np.inf
            out[a:b, 2 * AHEAD_BARS + 1] = sim.max(axis=1)
    section = sections_from_features(z, half_beats=half_beats, min_beats=phrase_beats)
    starts = np.flatnonzero(np.diff(np.concatenate([[-1], section]))) if n else np.zeros(0, np.int64)
    bounds = np.concatenate([starts, [n]])
    at = np.searchsorted(bounds, cursors, side="right") - 1
    out[:, -2] = np.minimum((cursors - bounds[np.clip(at, 0, len(bounds) - 1)]) / 64, 1.0)
    out[:, -1] = np.minimum((bounds[np.clip(at + 1, 0, len(bounds) - 1)] - cursors) / 64, 1.0)
    return np.clip(out, -OBS_CLIP, OBS_CLIP).astype(np.float32)


class StateBuilder:
    """Builds the 882-number observation of one recording at any point of an episode.

    Args:
        features: the recording's BeatFeatures.
        normalizer: statistics from the training recordings.
        target_keep_ratio: wanted edit length / raw length.
        max_steps: the episode's step limit.
        loop_budget_base, cuts_per_extra_loop: the loop budget (see reward.loop_budget).
    """

    def __init__(self, features: BeatFeatures, normalizer: FeatureNormalizer, *,
                 target_keep_ratio: float, max_steps: int, loop_budget_base: int,
                 cuts_per_extra_loop: int):
        self.n_beats = features.n_beats
        self.raw_s = features.duration_s
        z = normalizer(features.features)
        # Zero rows before the first beat and after the last, one more at the end for
        # the cursor's resting place once the episode is over (cursor = n_beats).
        self._padded = np.concatenate([np.zeros((CONTEXT_BEATS, N_BEAT_FEATURES), np.float32), z,
                                       np.zeros((CONTEXT_BEATS + 1, N_BEAT_FEATURES), np.float32)])
        rms = features.features[:, feature_slice("spectral")][:, 0]
        self._structure = structure_table(features.features)
        self._bounds_s = np.asarray(features.bounds_s, np.float64)
        self._beat_s = float(np.diff(self._bounds_s).mean()) if self.n_beats else 1.0
        self._global = np.array([np.log1p(self.raw_s / 60) / np.log1p(60),
                                 features.tempo_bpm / 200, float(rms.mean())], np.float32)
        self.phase = features.downbeat_phase
        self.target_keep_ratio = target_keep_ratio
        self.max_steps = max_steps
        self.loop_budget_base = loop_budget_base
        self.cuts_per_extra_loop = cuts_per_extra_loop

    def __call__(self, *, cursor: int, output_s: float, raw_beats_used: int, n_actions: int,
                 n_cuts: int, n_loops: int, n_jumps: int) -> np.ndarray:
        """The observation, float32 (882,).

        Args:
            cursor: beat at the cursor (n_beats once the episode is over).
            output_s: seconds of edit so far; raw_beats_used: distinct raw beats played.
            n_actions, n_cuts, n_loops, n_jumps: actions so far, and of each kind
                (actions.CUT_TYPES, LOOP_TYPES, JUMP_TYPES).
        """
        context = self._padded[cursor:cursor + 2 * CONTEXT_BEATS + 1].ravel()
        budget = self.loop_budget_base + n_cuts // self.cuts_per_extra_loop
        acts = max(n_actions, 1)
        history = [output_s / self.raw_s, raw_beats_used / self.n_beats, n_cuts / acts,
                   n_loops / budget, n_jumps / acts, n_actions / self.max_steps]
        left_s = self.target_keep_ratio * self.raw_s - output_s
        target = [(self.n_beats - cursor) / self.n_beats, self.target_keep_ratio, left_s / self.raw_s,
                  float(np.clip(left_s / max(self.raw_s - self._bounds_s[cursor], self._beat_s), -1.0, 2.0))]
        position = [cursor / self.n_beats,
                    ((cursor - self.phase) % BEATS_PER_PHRASE) / BEATS_PER_PHRASE]
        state = np.concatenate([context, self._structure[cursor], self._global,
                                np.array(history + target + position, np.float32)])
        assert state.shape == (STATE_DIM,)
        return np.clip(state, -OBS_CLIP, OBS_CLIP)
