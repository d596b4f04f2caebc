"""Episode-end reward of the RL environment, as a weighted sum of named components that
are each returned on their own: the match to the human edit (human_match, the reward by
default) and rules of thumb (keep ratio, section coherence, phrase alignment, edit
structure, audio flow, action diversity, loop budget, jump penalty) logged beside it.

Every component is a plain function of the episode's pieces, actions and the beat
features, with the range stated in its docstring; `episode_reward` adds them up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..features import DEFAULT_PARAMS, FeatureParams
from .actions import (BEATS_PER_BAR, BEATS_PER_PHRASE, CUT_TYPES, JUMP_TYPES, LOOP_TYPES,
                      N_TYPES, EditTrack, Piece)

COMPONENTS = ("keep_ratio", "section_coherence", "phrase_alignment", "edit_structure",
              "audio_flow", "action_diversity", "loop_budget", "jump_penalty", "human_match")


@dataclass
class RewardWeights:
    """Weight of each component in the total. human_match, the match to the human edit,
    is the reward wherever the recording has one (every training recording); the other
    terms are rules of thumb, still computed and logged apart (reward/<component>), that
    weigh nothing by default: with them PPO drifted away from the editor's edits on held-out
    recordings (docs/results.md, bench_rl_folds.py)."""

    keep_ratio: float = 0.0
    section_coherence: float = 0.0
    phrase_alignment: float = 0.0
    edit_structure: float = 0.0
    audio_flow: float = 0.0
    action_diversity: float = 0.0
    loop_budget: float = 0.0
    jump_penalty: float = 0.0
    human_match: float = 1.0


@dataclass
class RewardConfig:
    """Settings of the episode-end reward.

    keep_tolerance: keep_ratio falls from 1 to 0 as the edit's length / raw length moves
        this far from the target (and on to -1 at twice this).
    loop_budget_base, cuts_per_extra_loop: loops allowed = base + cuts // this.
    loop_penalty: reward lost per loop over the budget (down to -1).
    max_jump_fraction: jumps above this fraction of the actions are penalised.
    section_half_beats, min_section_beats: novelty window half-width and the shortest
        section, in beats (see `sections_from_features`).
    """

    keep_tolerance: float = 0.25
    loop_budget_base: int = 2
    cuts_per_extra_loop: int = 3
    loop_penalty: float = 0.25
    max_jump_fraction: float = 0.25
    section_half_beats: int = 8
    min_section_beats: int = 16
    weights: RewardWeights = field(default_factory=RewardWeights)


# ---------------------------------------------------------------------------- helpers

def piece_seconds(piece: Piece, bounds_s: np.ndarray) -> float:
    """Seconds a piece lasts in the edit (its raw length over a speed effect's ratio)."""
    raw = float(bounds_s[piece.start + piece.n_beats] - bounds_s[piece.start])
    if piece.effect is not None and piece.effect["name"] == "speed":
        return raw / piece.effect["params"]["ratio"]
    return raw


def seams(pieces: list[Piece]) -> list[tuple[int, int]]:
    """Indices k where the playhead jumps between pieces k-1 and k (pieces[k-1].exit !=
    pieces[k].entry), as (k - 1, k) pairs."""
    return [(k - 1, k) for k in range(1, len(pieces)) if pieces[k - 1].exit != pieces[k].entry]


def boundary_score(boundary: int, downbeat_phase: int, n_beats: int) -> float:
    """1 for a phrase start (or the recording's start or end), 0.5 for a bar start, else 0."""
    if boundary <= 0 or boundary >= n_beats:
        return 1.0
    offset = (boundary - downbeat_phase) % BEATS_PER_PHRASE
    if offset == 0:
        return 1.0
    return 0.5 if offset % BEATS_PER_BAR == 0 else 0.0


def novelty_curve(features: np.ndarray, *, half_beats: int = 8) -> np.ndarray:
    """Novelty per beat: 1 - cos(mean of beats [i-h, i), mean of beats [i, i+h)), 0 where
    a window would leave the recording.

    Args:
        features : np.ndarray [shape=(n_beats, d)]

    Returns:
        novelty : np.ndarray [shape=(n_beats,)], float64 in [0, 2]
    """
    x = np.asarray(features, np.float64)
    n, h = len(x), half_beats
    novelty = np.zeros(n)
    if n < 2 * h + 1:
        return novelty
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x, axis=0)])
    i = np.arange(h, n - h + 1)
    left, right = (c[i] - c[i - h]) / h, (c[i + h] - c[i]) / h
    cos = (left * right).sum(1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1) + 1e-12)
    novelty[i] = 1 - cos
    return novelty


def sections_from_features(features: np.ndarray, *, half_beats: int = 8,
                           min_beats: int = 16) -> np.ndarray:
    """Sections of a recording from its (normalized) beat features.

    Novelty at beat i is 1 - cos(mean of beats [i-h, i), mean of beats [i, i+h)); a
    section starts at each novelty peak that is the largest within min_beats/2 and above
    the novelty's mean + std, at least min_beats after the previous start.

    Args:
        features : np.ndarray [shape=(n_beats, d)]

    Returns:
        section : np.ndarray [shape=(n_beats,)], int64, 0, 0, ..., 1, 1, ...
    """
    n = len(features)
    section = np.zeros(n, np.int64)
    h = half_beats
    if n < 2 * h + 1:
        return section
    novelty = novelty_curve(features, half_beats=h)
    threshold = novelty[h:n - h + 1].mean() + novelty[h:n - h + 1].std()
    last = 0
    for b in range(h, n):
        lo, hi = max(0, b - min_beats // 2), min(n, b + min_beats // 2 + 1)
        if novelty[b] > threshold and novelty[b] == novelty[lo:hi].max() and b - last >= min_beats:
            section[b:] += 1
            last = b
    return section


# ---------------------------------------------------------------------------- components

def keep_ratio(output_s: float, raw_s: float, target: float, tolerance: float) -> float:
    """1 - |output_s / raw_s - target| / tolerance, clipped to [-1, 1]."""
    return float(np.clip(1.0 - abs(output_s / raw_s - target) / tolerance, -1.0, 1.0))


def section_coherence(kept: np.ndarray, section: np.ndarray) -> float:
    """How whole the edit keeps or drops each section, in [0, 1]: per section the larger
    of its kept and dropped fractions (1: all or nothing, 0.5: half), mapped to
    2 x - 1 and averaged over sections weighted by their length."""
    kept = np.asarray(kept, bool)
    ids = np.asarray(section)
    total = 0.0
    for s in np.unique(ids):
        f = kept[ids == s].mean()
        total += (2 * max(f, 1 - f) - 1) * np.sum(ids == s)
    return float(total / len(ids)) if len(ids) else 0.0


def phrase_alignment(pieces: list[Piece], downbeat_phase: int, n_beats: int) -> float:
    """Mean `boundary_score` of the edit's cut points, in [0, 1]: where it enters the raw
    first, both sides of every seam, where it leaves last. 0 for an empty edit."""
    if not pieces:
        return 0.0
    points = [pieces[0].entry, pieces[-1].exit]
    for a, b in seams(pieces):
        points += [pieces[a].exit, pieces[b].entry]
    return float(np.mean([boundary_score(p, downbeat_phase, n_beats) for p in points]))


def runs(pieces: list[Piece]) -> list[int]:
    """Beats of each stretch the edit plays without a seam."""
    out: list[int] = []
    for k, p in enumerate(pieces):
        if k and pieces[k - 1].exit == p.entry:
            out[-1] += p.n_beats
        else:
            out.append(p.n_beats)
    return out


def edit_structure(pieces: list[Piece], n_beats: int) -> float:
    """Shape of the edit, in [0, 1]: the mean of (a) the fraction of its seamless
    stretches that last at least a bar, (b) 1 if it opens with a fade-in or at the
    recording's start, (c) 1 if it closes with a fade-out or at the recording's end.
    0 for an empty edit."""
    if not pieces:
        return 0.0
    long_runs = float(np.mean([r >= BEATS_PER_BAR for r in runs(pieces)]))
    opens = pieces[0].fade_in > 0 or pieces[0].entry == 0
    closes = pieces[-1].fade_out > 0 or pieces[-1].exit == n_beats
    return (long_runs + float(opens) + float(closes)) / 3.0


def audio_flow(pieces: list[Piece], features: np.ndarray) -> float:
    """How alike the two sides of each seam sound, in [-1, 1]: the mean cosine similarity
    of the normalized features of the last beat before and the first beat after each
    seam (1 when there is no seam).

    Args:
        features : np.ndarray [shape=(n_beats, d)], beat features z-scored over the
            recording (without the bar-position columns, which differ at every beat).
    """
    pairs = seams(pieces)
    if not pairs:
        return 1.0
    sims = []
    for a, b in pairs:
        u, v = features[pieces[a].beats()[-1]], features[pieces[b].beats()[0]]
        sims.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)))
    return float(np.mean(sims))


def action_diversity(type_counts: np.ndarray) -> float:
    """Entropy of the action types used over ln(20), in [0, 1] (0: one type only)."""
    counts = np.asarray(type_counts, np.float64)
    if counts.sum() == 0:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(N_TYPES))


def loop_budget(n_loops: int, n_cuts: int, *, base: int, cuts_per_extra_loop: int,
                penalty: float) -> float:
    """-penalty per loop over base + n_cuts // cuts_per_extra_loop, down to -1; else 0."""
    excess = max(0, n_loops - (base + n_cuts // cuts_per_extra_loop))
    return -min(1.0, penalty * excess) if excess else 0.0


def jump_penalty(n_jumps: int, n_actions: int, max_fraction: float) -> float:
    """0 while jumps are at most max_fraction of the actions, then falling linearly to -1
    when every action is a jump."""
    if n_actions == 0:
        return 0.0
    f = n_jumps / n_actions
    return 0.0 if f <= max_fraction else -min(1.0, (f - max_fraction) / (1 - max_fraction))


# ---------------------------------------------------------------------------- human edit

@dataclass
class HumanEdit:
    """What the human edit did, on the beat grid: which raw beats it plays."""

    kept: np.ndarray


def human_edit_from_pointers(pointers: np.ndarray, bounds_s: np.ndarray,
                             params: FeatureParams = DEFAULT_PARAMS) -> HumanEdit:
    """The human edit on the beat grid, from its pointers (raw frame per edit frame).

    A raw beat counts as kept when at least half of its frames are played.
    """
    p = np.asarray(pointers, np.int64)
    n_beats = len(bounds_s) - 1
    frame_bounds = np.rint(np.asarray(bounds_s) * params.frames_per_s).astype(np.int64)
    played = np.zeros(max(int(frame_bounds[-1]), int(p.max(initial=0)) + 1), bool)
    played[p[p >= 0]] = True
    kept = np.array([played[a:max(b, a + 1)].mean() >= 0.5
                     for a, b in zip(frame_bounds[:-1], frame_bounds[1:])], bool)
    assert len(kept) == n_beats
    return HumanEdit(kept)


def human_match(kept: np.ndarray, human: HumanEdit, bounds_s: np.ndarray) -> float:
    """Agreement with the human edit, in [0, 1]: kept-raw IoU on the beat grid, the seconds
    of raw both play over the seconds either plays (1 when neither plays anything); what
    `editorbot evaluate` scores as kept IoU, at beat resolution.

    Args:
        kept : np.ndarray [shape=(n_beats,)], bool, the beats the edit plays
        bounds_s : np.ndarray [shape=(n_beats + 1,)], the beat grid
    """
    beat_s = np.diff(np.asarray(bounds_s, np.float64))
    union = float(beat_s[kept | human.kept].sum())
    return float(beat_s[kept & human.kept].sum()) / union if union > 0 else 1.0


# ---------------------------------------------------------------------------- total

def episode_reward(track: EditTrack, *, bounds_s: np.ndarray, features: np.ndarray,
                   section: np.ndarray, target_keep_ratio: float, config: RewardConfig,
                   human: HumanEdit | None = None) -> tuple[float, dict[str, float]]:
    """The reward of a finished episode and each component's value (before weighting).

    Args:
        track: the episode.
        bounds_s : np.ndarray [shape=(n_beats + 1,)], the beat grid.
        features : np.ndarray [shape=(n_beats, d)], beat features z-scored over the
            recording, for audio_flow (bar-position columns removed).
        section : np.ndarray [shape=(n_beats,)], section id per beat.
        human: the aligned human edit, when there is one (adds human_match).

    Returns:
        (total, components): total = sum of weight * value over the components present.
    """
    pieces = track.pieces
    n_beats = track.n_beats
    raw_s = float(bounds_s[-1])
    output_s = sum(piece_seconds(p, bounds_s) for p in pieces)
    kept = np.zeros(n_beats, bool)
    for p in pieces:
        kept[p.start:p.start + p.n_beats] = True
    counts = track.type_counts
    n_cuts = int(sum(counts[t] for t in CUT_TYPES))
    values = {
        "keep_ratio": keep_ratio(output_s, raw_s, target_keep_ratio, config.keep_tolerance),
        "section_coherence": section_coherence(kept, section),
        "phrase_alignment": phrase_alignment(pieces, track.downbeat_phase, n_beats),
        "edit_structure": edit_structure(pieces, n_beats),
        "audio_flow": audio_flow(pieces, features),
        "action_diversity": action_diversity(counts),
        "loop_budget": loop_budget(int(sum(counts[t] for t in LOOP_TYPES)), n_cuts,
                                   base=config.loop_budget_base,
                                   cuts_per_extra_loop=config.cuts_per_extra_loop,
                                   penalty=config.loop_penalty),
        "jump_penalty": jump_penalty(int(sum(counts[t] for t in JUMP_TYPES)),
                                     int(counts.sum()), config.max_jump_fraction),
    }
    if human is not None:
        values["human_match"] = human_match(kept, human, bounds_s)
    total = sum(getattr(config.weights, name) * v for name, v in values.items())
    return float(total), values
