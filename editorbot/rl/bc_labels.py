"""Behavioral-cloning labels from the alignment: the factored actions that reproduce a human
edit on the beat grid, and the states the environment shows before each of them.

The human edit (aligned pointers, or a synthetic pair's truth) becomes pieces of raw beats
in playing order (`edit_to_pieces`); `plan_actions` walks them with the environment's
cursor and names each step (keep, cut, skip, loop, repeat, reorder, swap, jump back, fades,
gain, with size and amount); `label_recording` replays the plan in an EditEnv and keeps
(cursor, state, mask, action) per step. A `BCDataset` holds many recordings, is saved as
one npz, and rebuilds its observations under any FeatureNormalizer.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..cache import load_npz, save_npz
from ..config import from_dict, to_dict
from ..edits import Edit, pointers_to_segments, segments_to_pointers
from ..errors import UserError, log
from ..features import FeatureParams
from ..dataset import read_pointer_files
from ..layout import Layout, Pair, discover
from .actions import (ACTION_DIMS, AMOUNTS, N_AMOUNTS, N_SIZES, N_TYPES, SIZE_BEATS, ActionType,
                      Amount, EditTrack, Size, describe)
from .aux_tasks import AuxTables, aux_tables, beat_mels
from .beat_features import BeatFeatures, beat_features
from .env import EditEnv, EnvConfig
from .replay import track_to_edit
from .state import CONTEXT_BEATS, STATE_DIM, FeatureNormalizer, state_slice, structure_table

T, S, A = ActionType, Size, Amount
LABEL_VERSION = 3  # 3: beat features on editorbot.grid's grid; the feature params in the file
MIN_GAIN_DB = 1.5           # smaller gains of the human edit are not labelled
CONTEXT = state_slice("context")
STRUCTURE = state_slice("structure")
TAIL = slice(STRUCTURE.stop, STATE_DIM)   # the 15 numbers after the structure ones
N_TAIL = TAIL.stop - TAIL.start


# ---------------------------------------------------------------------------- pieces

@dataclass
class HumanPiece:
    """A stretch of the human edit on the beat grid: raw beats [start, start + n_beats)
    played once, with fades (in beats, at its start and end) and a gain, or played through
    an effect action `effect` = (type, amount) (the repairs of editorbot.rl.bc_augment)."""

    start: int
    n_beats: int
    fade_in_beats: float = 0.0
    fade_out_beats: float = 0.0
    gain_db: float = 0.0
    effect: tuple[int, int] | None = None

    @property
    def end(self) -> int:
        return self.start + self.n_beats

    @property
    def plain(self) -> bool:
        return (self.fade_in_beats == 0 and self.fade_out_beats == 0 and self.gain_db == 0
                and self.effect is None)

    def same_block(self, other: "HumanPiece") -> bool:
        return self.plain and other.plain and (self.start, self.n_beats) == (other.start, other.n_beats)


def edit_to_pieces(edit: Edit, bounds_s: np.ndarray) -> list[HumanPiece]:
    """The human edit's segments as pieces of whole beats, in playing order.

    Each segment's raw start and end snap to the nearest beat boundary (segments shorter
    than half their beat vanish); fades become beats through the grid; gains under
    MIN_GAIN_DB are dropped; a piece that continues the previous one in the raw, with no
    fade between them and the same gain, joins it. Segments not in the raw are skipped.

    Args:
        bounds_s : np.ndarray [shape=(n_beats + 1,)], the beat grid.
    """
    bounds = np.asarray(bounds_s, np.float64)
    index = np.arange(len(bounds), dtype=np.float64)
    pieces: list[HumanPiece] = []
    for seg in edit.segments:
        if seg.raw_start_s is None:
            continue
        t0, t1 = seg.raw_start_s, seg.raw_end_s
        a, b = int(np.abs(bounds - t0).argmin()), int(np.abs(bounds - t1).argmin())
        if b <= a:
            continue
        fade_in = float(np.interp(t0 + seg.fade_in_s, bounds, index) - a) if seg.fade_in_s > 0 else 0.0
        fade_out = float(b - np.interp(t1 - seg.fade_out_s, bounds, index)) if seg.fade_out_s > 0 else 0.0
        gain = seg.gain_db if abs(seg.gain_db) >= MIN_GAIN_DB else 0.0
        piece = HumanPiece(a, b - a, max(fade_in, 0.0), max(fade_out, 0.0), gain)
        last = pieces[-1] if pieces else None
        if (last is not None and last.start + last.n_beats == a and last.fade_out_beats == 0
                and piece.fade_in_beats == 0 and last.gain_db == piece.gain_db):
            last.n_beats += piece.n_beats
            last.fade_out_beats = piece.fade_out_beats
            continue
        pieces.append(piece)
    return pieces


# ---------------------------------------------------------------------------- planner

_SIZE_OF = {int(n): Size(s) for s, n in enumerate(SIZE_BEATS)}
_BY_SIZE_DOWN = sorted(Size, key=lambda s: -SIZE_BEATS[s])


def _values(t: ActionType) -> dict[Amount, float]:
    return {Amount(a): v for a, v in enumerate(AMOUNTS[t][1]) if v is not None}


def _largest_amount(t: ActionType, at_most: int) -> Amount | None:
    """The amount of t with the largest whole value <= at_most."""
    fits = [(v, a) for a, v in _values(t).items() if v <= at_most]
    return max(fits)[1] if fits else None


class _Planner:
    """Builds the action list on an EditTrack, checking every action against its mask.

    With an `rng`, a run of KEEP / GAIN / CUT steps may start with a random smaller step (a
    detour, flagged not canonical in `canonical`) before the largest sizes that fit: the
    same edit reached through other cursors (see `label_pieces`, detours)."""

    def __init__(self, track: EditTrack, rng: np.random.Generator | None = None):
        self.track = track
        self.rng = rng
        self.actions: list[tuple[int, int, int]] = []
        self.canonical: list[bool] = []

    def can(self, t, s, a) -> bool:
        return bool(self.track.mask()[int(t), int(s), int(a)])

    def do(self, t, s, a, canonical: bool = True) -> None:
        action = (int(t), int(s), int(a))
        self.track.apply(action)  # raises if not valid: a planner bug
        self.actions.append(action)
        self.canonical.append(canonical)

    def _detour(self, n: int, t: ActionType, amount: Amount) -> int:
        """With an rng, half the time: one step of t with a random size smaller than both
        n and the largest that fits (not canonical); returns the beats it covered."""
        if self.rng is None or self.rng.random() < 0.5:
            return 0
        largest = next(SIZE_BEATS[s] for s in _BY_SIZE_DOWN if SIZE_BEATS[s] <= n)
        smaller = [s for s in Size if SIZE_BEATS[s] < largest and self.can(t, s, amount)]
        if not smaller:
            return 0
        s = smaller[int(self.rng.integers(len(smaller)))]
        self.do(t, s, amount, canonical=False)
        return int(SIZE_BEATS[s])

    def _fits(self, n: int) -> bool:
        return n <= self.track.n_beats - self.track.cursor

    def keep(self, n: int, t: ActionType = T.KEEP, amount: Amount = A.NEUTRAL) -> None:
        """Play n beats from the cursor with KEEP (or GAIN at `amount`), largest sizes first."""
        n -= self._detour(n, t, amount) if n > 0 else 0
        while n > 0:
            s = next(s for s in _BY_SIZE_DOWN if SIZE_BEATS[s] <= n)
            self.do(t, s, amount)
            n -= int(SIZE_BEATS[s])

    def cut(self, n: int) -> None:
        """Move the cursor n beats forward without playing: a SKIP when one reaches exactly
        there from off the bar grid, else CUT, largest sizes first."""
        while n > 0:
            skip = self.track.skip_ahead()
            partial = [s for s in _BY_SIZE_DOWN if skip[s] == n and skip[s] < SIZE_BEATS[s]]
            if partial and self.can(T.SKIP, partial[0], A.NEUTRAL):
                self.do(T.SKIP, partial[0], A.NEUTRAL)
                return
            s = next(s for s in _BY_SIZE_DOWN if SIZE_BEATS[s] <= n)
            self.do(T.CUT, s, A.NEUTRAL)
            n -= int(SIZE_BEATS[s])

    def jump_back(self, n: int) -> None:
        """Move the cursor n beats back: JUMP_BACK size x amount with the longest jump
        that fits (ties: the larger size)."""
        steps = _values(T.JUMP_BACK)
        while n > 0:
            s, a = max(((s, a) for s in Size for a, v in steps.items() if SIZE_BEATS[s] * v <= n),
                       key=lambda sa: (SIZE_BEATS[sa[0]] * steps[sa[1]], SIZE_BEATS[sa[0]]))
            self.do(T.JUMP_BACK, s, a)
            n -= int(SIZE_BEATS[s] * steps[a])

    def fade(self, t: ActionType, fade_beats: float, room: int) -> int:
        """One FADE_IN / FADE_OUT whose fade (size x fraction) is nearest fade_beats, over a
        block of at most `room` beats; returns the block's beats."""
        best = min(((s, a) for s in Size for a in _values(t) if SIZE_BEATS[s] <= room),
                   key=lambda sa: (abs(SIZE_BEATS[sa[0]] * _values(t)[sa[1]] - fade_beats),
                                   -SIZE_BEATS[sa[0]]))
        self.do(t, *best)
        return int(SIZE_BEATS[best[0]])

    def play(self, p: HumanPiece) -> None:
        """Play a piece that starts at the cursor: fade-in block, kept (or gained) beats,
        fade-out block; or the piece through its effect action."""
        n = min(p.n_beats, self.track.n_beats - self.track.cursor)
        if p.effect is not None:
            self.keep(n, ActionType(p.effect[0]), Amount(p.effect[1]))
            return
        if p.gain_db:
            gains = _values(T.GAIN)
            amount = min(gains, key=lambda a: abs(gains[a] - p.gain_db))
            self.keep(n, T.GAIN, amount)
            return
        if p.fade_in_beats > 0 and n > 0:
            n -= self.fade(T.FADE_IN, p.fade_in_beats, n)
        tail = 0
        if p.fade_out_beats > 0 and n > 0:
            # the fade-out block ends the piece: choose it first, keep what comes before
            fades = _values(T.FADE_OUT)
            s, _ = min(((s, a) for s in Size for a in fades if SIZE_BEATS[s] <= n),
                       key=lambda sa: (abs(SIZE_BEATS[sa[0]] * fades[sa[1]] - p.fade_out_beats),
                                       -SIZE_BEATS[sa[0]]))
            tail = int(SIZE_BEATS[s])
        self.keep(n - tail)
        if tail:
            self.fade(T.FADE_OUT, p.fade_out_beats, tail)


def plan_actions(pieces: list[HumanPiece], track: EditTrack, *,
                 rng: np.random.Generator | None = None) -> list[tuple[int, int, int]]:
    """The actions that play `pieces` on `track` (from its current cursor to the end).

    At each piece, the first that applies: a block played again right away -> LOOP (then
    REPEAT_PREV for copies beyond the amount); a copy of the beats just behind the cursor
    -> REPEAT_PREV; a block from ahead played before the beats that lead to it -> SWAP_NEXT
    or REORDER; else the cursor moves to the piece (CUT / SKIP forward, JUMP_BACK back) and
    plays it (KEEP, FADE_IN, FADE_OUT, GAIN). Beats after the last piece are cut.

    Args:
        rng: take detours (see _Planner); None: the canonical plan.

    Returns:
        (type, size, amount) triples, each valid where it is applied; `track` is left at
        the episode's end.
    """
    return _plan(pieces, track, rng).actions


def _plan(pieces: list[HumanPiece], track: EditTrack, rng: np.random.Generator | None) -> _Planner:
    plan = _Planner(track, rng)
    i = 0
    while i < len(pieces) and not track.done:
        p = pieces[i]
        c = track.cursor
        copies = 1
        while i + copies < len(pieces) and pieces[i + copies].same_block(p):
            copies += 1
        size = _SIZE_OF.get(p.n_beats)
        if p.start == c and p.plain and copies >= 2 and size is not None:
            amount = _largest_amount(T.LOOP, copies)
            if amount is not None and plan.can(T.LOOP, size, amount):
                plan.do(T.LOOP, size, amount)
                i += int(AMOUNTS[T.LOOP][1][amount])
                continue
        if p.start == c - p.n_beats and p.plain and size is not None:
            amount = _largest_amount(T.REPEAT_PREV, copies)
            if amount is not None and plan.can(T.REPEAT_PREV, size, amount):
                plan.do(T.REPEAT_PREV, size, amount)
                i += int(AMOUNTS[T.REPEAT_PREV][1][amount])
                continue
        if p.start > c and i + 1 < len(pieces) and size is not None and p.plain:
            q = pieces[i + 1]
            gap = p.start - c
            if q.plain and q.start == c and q.n_beats == gap and gap % p.n_beats == 0:
                blocks = gap // p.n_beats
                if blocks == 1 and plan.can(T.SWAP_NEXT, size, A.NEUTRAL):
                    plan.do(T.SWAP_NEXT, size, A.NEUTRAL)
                    i += 2
                    continue
                amount = next((a for a, v in _values(T.REORDER).items() if v == blocks), None)
                if amount is not None and plan.can(T.REORDER, size, amount):
                    plan.do(T.REORDER, size, amount)
                    i += 2
                    continue
        if p.start > c:
            plan.cut(p.start - c)
        elif p.start < c:
            plan.jump_back(c - p.start)
        plan.play(p)
        i += 1
    plan.cut(track.n_beats - track.cursor)
    return plan


# ---------------------------------------------------------------------------- one recording

@dataclass
class RecordingLabels:
    """The labelled episode of one recording.

    actions : np.ndarray [shape=(n_steps, 3)], int64 (type, size, amount)
    cursors : np.ndarray [shape=(n_steps,)], int64: the beat under the cursor before each
    tails : np.ndarray [shape=(n_steps, 15)], float32: the state after the beat context
        and structure (global, history, target, position), which no feature normalizer
        changes
    masks : np.ndarray [shape=(n_steps, 20, 5, 5)], bool: valid actions before each
    edit: the Edit the actions make (track_to_edit); reward: its episode reward and
    components; human_pointers: the human edit it reproduces.
    """

    actions: np.ndarray
    cursors: np.ndarray
    tails: np.ndarray
    masks: np.ndarray
    edit: Edit
    reward: float
    components: dict[str, float]
    human_pointers: np.ndarray

    def kept_iou(self, raw_duration_s: float, params: FeatureParams) -> float:
        """IoU of the raw frames the labels' edit plays with those the human edit plays."""
        from ..evaluate import kept_iou

        raw_frames = params.n_frames(int(round(raw_duration_s * params.sr)))
        return kept_iou(segments_to_pointers(self.edit, params), self.human_pointers, raw_frames)


def label_recording(raw_path: str | os.PathLike, features: BeatFeatures, pointers: np.ndarray,
                    human: Edit, *, config: EnvConfig, target_keep_ratio: float,
                    params: FeatureParams) -> RecordingLabels:
    """Plan the actions that reproduce `human` and replay them in an EditEnv.

    Args:
        raw_path: the recording.
        features: its beat grid and features.
        pointers: the aligned human edit (for the human_match reward).
        human: the same edit as segments (fades and gains come from here).
        config: the environment settings.
        target_keep_ratio: the human edit's length / the raw's length.
        params: the analysis grid of the pointers.
    """
    return label_pieces(raw_path, features, edit_to_pieces(human, features.bounds_s),
                        pointers=pointers, config=config, target_keep_ratio=target_keep_ratio,
                        params=params)


def label_pieces(raw_path: str | os.PathLike, features: BeatFeatures, pieces: list[HumanPiece], *,
                 config: EnvConfig, params: FeatureParams, pointers: np.ndarray | None = None,
                 target_keep_ratio: float | None = None,
                 rng: np.random.Generator | None = None) -> RecordingLabels:
    """Plan the actions that play `pieces` and replay them in an EditEnv.

    Args:
        params: the analysis grid of the pointers.
        pointers: the human edit's pointers (for the human_match reward); None: those of
            the planned edit itself.
        target_keep_ratio: wanted edit length / raw length; None: the planned edit's.
        rng: plan with detours (random smaller first steps of KEEP / GAIN / CUT runs) and
            label only the canonical steps: the same edit, labelled from other cursors.
    """
    track = EditTrack(features.n_beats, downbeat_phase=features.downbeat_phase,
                      max_played_beats=math.floor(config.max_played_ratio * features.n_beats))
    played = sum(min(p.end, features.n_beats) - p.start for p in pieces if p.start < features.n_beats)
    if played > track.max_played_beats:
        raise UserError(f"{raw_path}: the human edit plays {played} beats, more than the episode's "
                        f"{track.max_played_beats} ({config.max_played_ratio:g} x {features.n_beats} "
                        "beats); raise env.max_played_ratio")
    plan = _plan(pieces, track, rng)
    actions = plan.actions
    if pointers is None or target_keep_ratio is None:
        planned = track_to_edit(track, features.bounds_s)
        if pointers is None:
            pointers = segments_to_pointers(planned, params)
        if target_keep_ratio is None:
            target_keep_ratio = planned.duration_s / features.duration_s
    env = EditEnv(raw_path, pointers=pointers, features=features, config=config,
                  target_keep_ratio=target_keep_ratio, params=params)
    if len(actions) > env.max_steps:
        raise UserError(f"{raw_path}: the human edit needs {len(actions)} actions, more than the "
                        f"episode's {env.max_steps}; raise env.max_steps_per_beat")
    obs, info = env.reset()
    cursors, tails, masks = [], [], []
    reward, components = 0.0, {}
    for action, canonical in zip(actions, plan.canonical):
        if canonical:
            cursors.append(info["cursor"])
            tails.append(obs[TAIL])
            masks.append(info["action_mask"])
        obs, reward, term, trunc, info = env.step(action)
        assert not info["resolved"], describe(action)
        components = info.get("reward_components", components)
    labelled = [a for a, canonical in zip(actions, plan.canonical) if canonical]
    return RecordingLabels(np.array(labelled, np.int64).reshape(-1, 3), np.array(cursors, np.int64),
                           np.array(tails, np.float32).reshape(-1, N_TAIL),
                           np.array(masks, bool).reshape((-1,) + ACTION_DIMS),
                           track_to_edit(env.track, features.bounds_s, raw_path=str(raw_path)),
                           float(reward), components, np.asarray(pointers, np.int64))


# ---------------------------------------------------------------------------- the human edit

@dataclass
class HumanSource:
    """Where a pair's human edit and beat grid come from."""

    pointers: np.ndarray
    edit: Edit
    pointers_from: str            # 'alignment' or 'truth'
    beats_s: np.ndarray | None    # the truth's beat grid (None: the beat tracker's)
    downbeats_s: np.ndarray | None


def human_source(pair: Pair, layout: Layout, *, params: FeatureParams,
                 grid: str = "auto") -> HumanSource:
    """The aligned human edit of a pair and the beat grid to label it on.

    Pointers: pointer_sequences/{name}_pointers.npy (from `editorbot prepare`), else a
    synthetic pair's truth/{name}.json converted with segments_to_pointers. Segments (for
    fades and gains): the info.json's or the truth's, else cut from the pointers.
    grid: 'truth' (the truth file's beats; an error without one), 'tracker' (the beat
    tracker's) or 'auto' (truth when there is a truth file).
    """
    truth_path = layout.data_dir / "truth" / f"{pair.name}.json"
    truth = None
    if truth_path.is_file():
        try:
            truth = json.loads(truth_path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{truth_path}: not valid JSON ({err.msg}); regenerate the corpus") from None
    pointer_path = layout.pointer_file(pair.name, "pointers.npy")
    if pointer_path.is_file():
        pointers, _, info = read_pointer_files(layout.pointer_dir, pair.name, params=params)
        info_path = layout.pointer_file(pair.name, "info.json")
        if isinstance(info.get("segments"), list):
            edit = Edit.from_json(info, where=str(info_path))
        else:
            edit = pointers_to_segments(pointers, params)
        source = "alignment"
    elif truth is not None:
        edit = Edit.from_json(truth, where=str(truth_path))
        pointers = segments_to_pointers(edit, params)
        source = "truth"
    else:
        raise UserError(f"{pointer_path}: no aligned pointers for pair {pair.name}; run "
                        f"`editorbot prepare --data-dir {layout.data_dir}` first")
    if grid not in ("auto", "truth", "tracker"):
        raise UserError(f"--grid {grid}: choose auto, truth or tracker")
    if grid == "truth" and truth is None:
        raise UserError(f"{truth_path}: no truth file for the truth beat grid; use --grid tracker")
    use_truth = truth is not None and grid != "tracker" and truth.get("beats_s")
    beats = np.asarray(truth["beats_s"], np.float64) if use_truth else None
    downbeats = np.asarray(truth["downbeats_s"], np.float64) if use_truth and truth.get("downbeats_s") else None
    return HumanSource(pointers, edit, source, beats, downbeats)


# ---------------------------------------------------------------------------- dataset

@dataclass
class BeatRecording:
    """One recording of a BCDataset (the RL view of a pair; dataset.Recording is the shared
    one): its beat grid and features, the mel of each beat (for the mel auxiliary task), its
    sections, what was asked of the edit, and where it came from."""

    name: str
    raw_path: str
    features: BeatFeatures
    mels: np.ndarray
    section: np.ndarray
    target_keep_ratio: float
    source: str                   # 'alignment', 'truth', or 'augment:<what>'
    grid: str                     # 'truth' or 'tracker'
    origin: str = ""              # the real recording an augmented one was made from
    _aux: AuxTables | None = field(default=None, repr=False, compare=False)

    @property
    def real_name(self) -> str:
        """The name of the real recording behind this one (itself when not augmented)."""
        return self.origin or self.name

    def aux(self) -> AuxTables:
        """The recording's auxiliary targets (computed once)."""
        if self._aux is None:
            self._aux = aux_tables(self.features, self.section, self.mels)
        return self._aux


@dataclass
class BCDataset:
    """Labelled steps of many recordings.

    recordings: list[BeatRecording]
    rec : np.ndarray [shape=(n,)], int64: recording index of each step
    cursors : np.ndarray [shape=(n,)], int64; tails : (n, 15) float32; actions : (n, 3) int64;
    masks : np.ndarray [shape=(n, 20, 5, 5)], bool
    env_config: the EnvConfig dict the states were made under.
    """

    recordings: list[BeatRecording]
    rec: np.ndarray
    cursors: np.ndarray
    tails: np.ndarray
    actions: np.ndarray
    masks: np.ndarray
    env_config: dict
    meta: dict = field(default_factory=dict)  # 'params' (FeatureParams as a dict), 'data_dir', 'grid'

    def __len__(self) -> int:
        return len(self.rec)

    @property
    def params(self) -> FeatureParams:
        """The analysis grid the features, mels and pointers were made on (meta['params'])."""
        return FeatureParams(**self.meta["params"])

    @classmethod
    def from_labels(cls, items: list[tuple[BeatRecording, RecordingLabels]], env_config: dict,
                    meta: dict | None = None) -> "BCDataset":
        recs = [r for r, _ in items]
        labels = [lab for _, lab in items]
        return cls(recs, np.concatenate([np.full(len(lab.actions), i, np.int64) for i, lab in enumerate(labels)]),
                   np.concatenate([lab.cursors for lab in labels]),
                   np.concatenate([lab.tails for lab in labels]),
                   np.concatenate([lab.actions for lab in labels]),
                   np.concatenate([lab.masks for lab in labels]), env_config, dict(meta or {}))

    def subset(self, keep_recording) -> "BCDataset":
        """The steps of the recordings for which keep_recording(BeatRecording) is true."""
        keep = [i for i, r in enumerate(self.recordings) if keep_recording(r)]
        remap = np.full(len(self.recordings), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        rows = remap[self.rec] >= 0
        return BCDataset([self.recordings[i] for i in keep], remap[self.rec[rows]], self.cursors[rows],
                         self.tails[rows], self.actions[rows], self.masks[rows], self.env_config,
                         dict(self.meta))

    def merge(self, other: "BCDataset") -> "BCDataset":
        if other.env_config != self.env_config:
            raise UserError("cannot merge BC data made under different environment settings")
        if other.meta.get("params") != self.meta.get("params"):
            raise UserError("cannot merge BC data made on different analysis grids (feature params)")
        return BCDataset(self.recordings + other.recordings,
                         np.concatenate([self.rec, other.rec + len(self.recordings)]),
                         np.concatenate([self.cursors, other.cursors]),
                         np.concatenate([self.tails, other.tails]),
                         np.concatenate([self.actions, other.actions]),
                         np.concatenate([self.masks, other.masks]), self.env_config, dict(self.meta))

    def observations(self, normalizer: FeatureNormalizer, rows: np.ndarray | None = None) -> np.ndarray:
        """The 882-number states of the steps under `normalizer`, float32 (n, 882): the
        beat context and structure rebuilt from each recording's features exactly as
        EditEnv builds them."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        out = np.empty((len(rows), STATE_DIM), np.float32)
        width = 2 * CONTEXT_BEATS + 1
        for i, r in enumerate(self.recordings):
            sel = np.flatnonzero(self.rec[rows] == i)
            if not len(sel):
                continue
            z = normalizer(r.features.features)
            d = z.shape[1]
            padded = np.concatenate([np.zeros((CONTEXT_BEATS, d), np.float32), z,
                                     np.zeros((CONTEXT_BEATS + 1, d), np.float32)])
            c = self.cursors[rows[sel]]
            out[sel, :CONTEXT.stop] = padded[c[:, None] + np.arange(width)].reshape(len(sel), -1)
            out[sel, STRUCTURE] = structure_table(r.features.features)[c]
            out[sel, TAIL] = self.tails[rows[sel]]
        return out

    def aux_targets(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Auxiliary targets of the steps (AuxTables.at), {task: (n,) or (n, 128)}."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        out: dict[str, np.ndarray] = {}
        for i, r in enumerate(self.recordings):
            sel = np.flatnonzero(self.rec[rows] == i)
            if not len(sel):
                continue
            for k, v in r.aux().at(self.cursors[rows[sel]]).items():
                if k not in out:
                    out[k] = np.zeros((len(rows),) + v.shape[1:], np.float32)
                out[k][sel] = v
        return out

    # -- files

    def save(self, path: str | os.PathLike) -> Path:
        recs = self.recordings
        meta = dict(self.meta) | {
            "kind": "bc_labels", "label_version": LABEL_VERSION, "editorbot_version": __version__,
            "env_config": self.env_config,
            "recordings": [{"name": r.name, "raw_path": r.raw_path, "target_keep_ratio": r.target_keep_ratio,
                            "source": r.source, "grid": r.grid, "origin": r.origin,
                            "tempo_bpm": r.features.tempo_bpm, "downbeat_phase": r.features.downbeat_phase,
                            "duration_s": r.features.duration_s, "stems_source": r.features.stems_source}
                           for r in recs]}
        return save_npz(path, meta, rec=self.rec, cursors=self.cursors, tails=self.tails,
                        actions=self.actions.astype(np.int8),
                        masks=np.packbits(self.masks.reshape(len(self), -1), axis=1),
                        beat_offsets=np.cumsum([0] + [r.features.n_beats for r in recs]),
                        features=_cat([r.features.features for r in recs], (0, 121)),
                        bounds_s=_cat([r.features.bounds_s for r in recs], (0,)),
                        mels=_cat([r.mels for r in recs], (0, 128)).astype(np.float16),
                        section=_cat([r.section for r in recs], (0,)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BCDataset":
        entry = load_npz(path)
        if entry is None:
            raise UserError(f"{path}: no such BC label file; make one with `editorbot bc-labels "
                            "--data-dir training_data --out bc_rich.npz`")
        arrays, meta = entry
        if meta.get("kind") != "bc_labels":
            raise UserError(f"{path}: not a BC label file (made by `editorbot bc-labels`)")
        if meta.get("label_version") != LABEL_VERSION or not isinstance(meta.get("params"), dict):
            raise UserError(f"{path}: made by another label version; run `editorbot bc-labels` again")
        off = arrays["beat_offsets"]
        recs = []
        for i, m in enumerate(meta["recordings"]):
            a, b = int(off[i]), int(off[i + 1])
            bf = BeatFeatures(arrays["features"][a:b].astype(np.float32), arrays["bounds_s"][a + i:b + i + 1],
                              float(m["tempo_bpm"]), int(m["downbeat_phase"]), float(m["duration_s"]),
                              str(m["stems_source"]))
            recs.append(BeatRecording(m["name"], m["raw_path"], bf, arrays["mels"][a:b].astype(np.float32),
                                  arrays["section"][a:b], float(m["target_keep_ratio"]), m["source"],
                                  m["grid"], m.get("origin", "")))
        n = len(arrays["rec"])
        masks = np.unpackbits(arrays["masks"], axis=1, count=math.prod(ACTION_DIMS)).astype(bool)
        extra = {k: v for k, v in meta.items() if k not in ("recordings",)}
        return cls(recs, arrays["rec"].astype(np.int64), arrays["cursors"].astype(np.int64),
                   arrays["tails"].astype(np.float32), arrays["actions"].astype(np.int64),
                   masks.reshape((n,) + ACTION_DIMS), meta["env_config"], extra)


def _cat(arrays: list[np.ndarray], empty_shape: tuple) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(empty_shape)


def label_counts(actions: np.ndarray) -> dict[str, np.ndarray]:
    """Counts per type (20,), size (5,) and amount (5,) of (n, 3) actions."""
    a = np.asarray(actions, np.int64).reshape(-1, 3)
    return {"type": np.bincount(a[:, 0], minlength=N_TYPES),
            "size": np.bincount(a[:, 1], minlength=N_SIZES),
            "amount": np.bincount(a[:, 2], minlength=N_AMOUNTS)}


def format_distribution(actions: np.ndarray) -> str:
    """A table of how often each type, size and amount occurs."""
    counts = label_counts(actions)
    total = max(int(counts["type"].sum()), 1)
    lines = [f"{total} labelled steps"]
    for head, names in (("type", ActionType), ("size", Size), ("amount", Amount)):
        lines.append(f"{head}:")
        for member in names:
            c = int(counts[head][member])
            lines.append(f"  {member.name:<12} {c:>7}  {100 * c / total:5.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- building

@dataclass
class _LabelTask:
    pair: Pair
    data_dir: str
    cache_dir: str
    grid: str
    env_config: dict
    params: dict


def mels_per_beat(raw_path: str | os.PathLike, features: BeatFeatures, layout: Layout, name: str,
                  params: FeatureParams) -> np.ndarray:
    """The cached raw mel (cache/features/{name}_raw.npz) pooled per beat, (n_beats, 128)."""
    from ..precache import mel_for

    return beat_mels(mel_for(raw_path, layout.features(name, "raw"), params), features.bounds_s, params)


def _label_pair(task: _LabelTask) -> tuple[BeatRecording, RecordingLabels]:
    layout = Layout(Path(task.data_dir), Path(task.cache_dir))
    params = FeatureParams(**task.params)
    src = human_source(task.pair, layout, params=params, grid=task.grid)
    bf = beat_features(task.pair.raw, cache_dir=task.cache_dir, beats_s=src.beats_s,
                       downbeats_s=src.downbeats_s, params=params)
    config = from_dict(EnvConfig, task.env_config, where="env config")
    keep = len(src.pointers) / params.frames_per_s / bf.duration_s
    labels = label_recording(task.pair.raw, bf, src.pointers, src.edit, config=config,
                             target_keep_ratio=keep, params=params)
    env = EditEnv(task.pair.raw, features=bf, config=config, target_keep_ratio=keep)
    rec = BeatRecording(task.pair.name, str(task.pair.raw), bf,
                    mels_per_beat(task.pair.raw, bf, layout, task.pair.name, params), env.section,
                    keep, src.pointers_from, "truth" if src.beats_s is not None else "tracker")
    return rec, labels


def build_bc_dataset(data_dir: str | os.PathLike, *, params: FeatureParams,
                     cache_dir: str | os.PathLike = "cache",
                     names: list[str] | None = None, grid: str = "auto",
                     env_config: EnvConfig | None = None, jobs: int = 1,
                     progress: bool = True) -> tuple[BCDataset, dict[str, RecordingLabels]]:
    """Label every pair under data_dir.

    Args:
        data_dir: the training-data layout (input/, desired_output/, pointer_sequences/ or truth/).
        params: the analysis grid (recorded in the dataset's meta).
        names: only these pairs.
        grid: beat grid, see `human_source`.
        env_config: the environment the states are made under (default EnvConfig()).
        jobs: worker processes.

    Returns:
        (dataset, {name: RecordingLabels}); pairs that fail are logged and left out.
    """
    from ..jobs import run_jobs
    from ..audio import probe

    found = discover(data_dir, names)
    for line in found.describe_orphans():
        log.warning(line)
    if not found.pairs:
        raise UserError(f"{data_dir}: no (raw, edit) pairs found; put them in input/ and desired_output/")
    cfg = to_dict(env_config or EnvConfig())
    items = [(p.name, _LabelTask(p, str(data_dir), str(cache_dir), grid, cfg, params.as_dict()), probe(p.raw).duration_s)
             for p in found.pairs]
    report = run_jobs(_label_pair, items, jobs=jobs, desc="bc-labels", progress=progress)
    done = [report.results[p.name] for p in found.pairs if p.name in report.results]
    if not done:
        raise UserError(f"{data_dir}: no pair could be labelled: "
                        + "; ".join(sorted(set(report.failures.values()))))
    dataset = BCDataset.from_labels(done, cfg, {"data_dir": str(data_dir), "grid": grid,
                                                "params": params.as_dict()})
    return dataset, {r.name: lab for r, lab in done}


def detour_dataset(data: BCDataset, data_dir: str | os.PathLike, *, cache_dir: str | os.PathLike = "cache",
                   n_detours: int = 1, seed: int = 0) -> BCDataset:
    """More labelled steps of the real recordings of `data`: each human edit planned again
    n_detours times with random detours (`label_pieces` with an rng), so that the labels
    also cover cursors the canonical plan steps over. The new recordings are named
    '<name>~detour<k>' with origin <name>; every one reproduces the same human edit.
    """
    layout = Layout(Path(data_dir), Path(cache_dir))
    pairs = {p.name: p for p in discover(data_dir).pairs}
    config = from_dict(EnvConfig, data.env_config, where="env config")
    rng = np.random.default_rng(seed)
    items = []
    for rec in (r for r in data.recordings if not r.origin):
        if rec.name not in pairs:
            raise UserError(f"{data_dir}: no pair named {rec.name} (it is in the BC data); use the "
                            "--data-dir the labels were made from")
        src = human_source(pairs[rec.name], layout, params=data.params, grid=rec.grid)
        pieces = edit_to_pieces(src.edit, rec.features.bounds_s)
        for k in range(n_detours):
            labels = label_pieces(rec.raw_path, rec.features, pieces, config=config, params=data.params,
                                  pointers=src.pointers,
                                  target_keep_ratio=rec.target_keep_ratio, rng=rng)
            items.append((BeatRecording(f"{rec.name}~detour{k}", rec.raw_path, rec.features, rec.mels,
                                    rec.section, rec.target_keep_ratio, rec.source, rec.grid,
                                    origin=rec.name), labels))
    if not items:
        return data.subset(lambda r: False)
    return BCDataset.from_labels(items, data.env_config, data.meta)
