"""`editorbot bc-augment`: more behavioral-cloning examples of the action types that the
aligned edits rarely show, made by changing real recordings so that the rare action is
what repairs them.

A passage the human kept is made quieter (GAIN up repairs it), slowed (SPEED_UP), sped up
(SPEED_DOWN), detuned (PITCH_UP / PITCH_DOWN), reversed (REVERSE), shelved (EQ_LOW /
EQ_HIGH); two kept blocks are swapped (SWAP_NEXT), rotated (REORDER) or exchanged with
unequal lengths (JUMP_BACK); the repeats of a kept, repeating passage are removed (LOOP,
REPEAT_PREV). The changed recording is written as audio, its beat features are computed
from that audio on the moved beat grid, and the source's human edit, moved onto it with the
repair in place, is labelled by the planner and environment of `editorbot bc-labels`. So
the state shows the change and the label repairs it. Only the steps of the rare type at the
changes join the dataset. FADE_IN, FADE_OUT, DISTORTION and REVERB have no such inverse
and are left alone; KEEP, CUT and SKIP are in every edit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import audio
from ..config import from_dict
from ..effects import apply_effect
from ..errors import UserError, log
from ..features import FeatureParams
from ..layout import Layout
from .actions import (AMOUNTS, BEATS_PER_BAR, EQ_HIGH_HZ, EQ_LOW_HZ, SIZE_BEATS, ActionType, Amount,
                      EditTrack, Size, amount_value)
from .bc_labels import (BCDataset, BeatRecording, HumanPiece, RecordingLabels, label_counts, label_pieces,
                        mels_per_beat)
from .beat_features import beat_features
from .env import EditEnv, EnvConfig

T, S, A = ActionType, Size, Amount
EFFECT_REPAIRS = (T.GAIN, T.SPEED_UP, T.SPEED_DOWN, T.REVERSE, T.PITCH_UP, T.PITCH_DOWN,
                  T.EQ_LOW, T.EQ_HIGH)
ORDER_REPAIRS = (T.SWAP_NEXT, T.REORDER, T.JUMP_BACK)
REPEAT_REPAIRS = (T.LOOP, T.REPEAT_PREV)
AUGMENTABLE = EFFECT_REPAIRS + ORDER_REPAIRS + REPEAT_REPAIRS
NO_INVERSE = (T.FADE_IN, T.FADE_OUT, T.DISTORTION, T.REVERB)
IN_EVERY_EDIT = (T.KEEP, T.CUT, T.SKIP)
MAX_REGION_BEATS = 64            # changes span at most this many beats
JUMP_BLOCKS = ((8, 4), (16, 4), (16, 8), (12, 4), (12, 8), (32, 8), (32, 16), (6, 4))
"""(A, B) beat lengths of the JUMP_BACK change: raw A B becomes B A; the human still plays
A then B, which no SWAP_NEXT or REORDER can (A is not a size, or B not a multiple of A)."""


@dataclass(frozen=True)
class Change:
    """One change of a recording, repaired by one action of `type`.

    start: first beat of the changed region (beats of the recording being changed);
    length: its beats before the change; before: beats of the same kept piece it needs
    ahead of it; size, amount: of the repair; first: beats of block A (JUMP_BACK).
    """

    type: ActionType
    start: int
    length: int
    before: int
    size: Size
    amount: Amount
    first: int = 0


@dataclass
class AugmentResult:
    """The input dataset with the new examples, what happened per type, and how many
    changed recordings were written."""

    dataset: BCDataset
    notes: list[str]
    n_recordings: int


# ---------------------------------------------------------------------------- pieces

def track_pieces(track: EditTrack) -> list[HumanPiece] | None:
    """An episode's pieces as HumanPieces (continuing plain pieces joined, as
    bc_labels.edit_to_pieces joins segments); None when a piece has an effect."""
    out: list[HumanPiece] = []
    for p in track.pieces:
        if p.effect is not None:
            return None
        n = p.n_beats
        piece = HumanPiece(p.start, n, p.fade_in * n, p.fade_out * n, p.gain_db)
        last = out[-1] if out else None
        if last is not None and last.plain and piece.plain and last.end == piece.start:
            last.n_beats += n
            continue
        out.append(piece)
    return out


def _options(t: ActionType) -> list[tuple[Size, Amount, int, int, int]]:
    """(size, amount, region length, beats needed before, block A) of each change of type t."""
    out = []
    taken = [Amount(a) for a, v in enumerate(AMOUNTS[t][1]) if v is not None]
    for s in Size:
        n = int(SIZE_BEATS[s])
        for a in taken:
            v = amount_value(t, a)
            if t in EFFECT_REPAIRS:
                out.append((s, a, n, 0, 0))
            elif t == T.SWAP_NEXT:
                out.append((s, a, 2 * n, 1, n))
            elif t == T.REORDER:
                out.append((s, a, (int(v) + 1) * n, 1, n))
            elif t == T.LOOP and n >= BEATS_PER_BAR:
                out.append((s, a, int(v) * n, 1, n))
            elif t == T.REPEAT_PREV and n >= BEATS_PER_BAR:
                out.append((s, a, int(v) * n, n + 1, n))
    if t == T.JUMP_BACK:
        out = [(S.BEAT, A.NEUTRAL, m + k, 1, m) for m, k in JUMP_BLOCKS]
    return [o for o in out if o[2] <= MAX_REGION_BEATS]


def _candidates(pieces: list[HumanPiece], n_beats: int, section: np.ndarray, phase: int,
                length: int, before: int, repeat: bool, taken: np.ndarray) -> list[int]:
    """Region starts c where [c - before, c + length) lies in one plain piece whose beats the
    edit plays once, away from the first and last beat and from regions already `taken`;
    on the bar grid for regions of a bar or more; in one section when `repeat`."""
    uses = np.zeros(n_beats, np.int64)
    for p in pieces:
        uses[p.start:p.end] += 1
    out = []
    step = BEATS_PER_BAR if length >= BEATS_PER_BAR else 1
    for p in pieces:
        if not p.plain or np.any(uses[p.start:p.end] != 1):
            continue
        for c in range(max(p.start + before, 1), min(p.end, n_beats - 1) - length + 1):
            lo, hi = c - before, c + length
            if (c - phase) % step or taken[max(lo - 1, 0):hi + 1].any():
                continue
            if repeat and len(np.unique(section[lo:hi])) > 1:
                continue
            out.append(c)
    return out


def choose_changes(t: ActionType, pieces: list[HumanPiece], n_beats: int, section: np.ndarray,
                   phase: int, k: int, rng: np.random.Generator) -> list[Change]:
    """Up to k non-overlapping changes of type t (random sizes, amounts and places)."""
    options = _options(t)
    taken = np.zeros(n_beats, bool)
    chosen: list[Change] = []
    for _ in range(4 * k):
        if len(chosen) == k or not options:
            break
        s, a, length, before, first = options[int(rng.integers(len(options)))]
        starts = _candidates(pieces, n_beats, section, phase, length, before, t in REPEAT_REPAIRS, taken)
        if not starts:
            options.remove((s, a, length, before, first))
            continue
        c = int(starts[int(rng.integers(len(starts)))])
        taken[c - before:c + length] = True
        chosen.append(Change(t, c, length, before, s, a, first))
    return sorted(chosen, key=lambda ch: -ch.start)


# ---------------------------------------------------------------------------- one change

def _effect_audio(t: ActionType, v: float, x: np.ndarray, sr: int) -> np.ndarray:
    """The inverse of effect action t (value v) on x (n, ch): what t then repairs."""
    if t == T.GAIN:
        return x * np.float32(10 ** (-v / 20))
    if t in (T.SPEED_UP, T.SPEED_DOWN):
        return apply_effect("speed", {"ratio": 1.0 / v}, x, sr)
    if t in (T.PITCH_UP, T.PITCH_DOWN):
        return apply_effect("pitch", {"semitones": -v}, x, sr)
    if t == T.REVERSE:
        return np.ascontiguousarray(x[::-1])
    if t == T.EQ_LOW:
        return apply_effect("low_shelf", {"cutoff_frequency_hz": EQ_LOW_HZ, "gain_db": -v}, x, sr)
    if t == T.EQ_HIGH:
        return apply_effect("high_shelf", {"cutoff_frequency_hz": EQ_HIGH_HZ, "gain_db": -v}, x, sr)
    raise ValueError(f"{t.name} is not an effect repair")


def apply_change(ch: Change, y: np.ndarray, sr: int, bounds: np.ndarray,
                 pieces: list[HumanPiece]) -> tuple[np.ndarray, np.ndarray, list[HumanPiece], tuple[int, int]]:
    """Change the audio at one region and move the human edit onto the changed recording.

    Args:
        y : np.ndarray [shape=(n, channels)], the recording at its own rate sr
        bounds : np.ndarray [shape=(n_beats + 1,)], int64 beat bounds in samples of y
        pieces: the human edit on that grid.

    Returns:
        (y, bounds, pieces, (first, last)): the changed recording, its beat bounds in
        samples, the human edit with the repair, and the beats between which the repair's
        actions start (cursor range).
    """
    t, c, length = ch.type, ch.start, ch.length
    n = int(SIZE_BEATS[ch.size])
    v = amount_value(t, ch.amount)
    region = y[bounds[c]:bounds[c + length]]
    offsets = bounds[c:c + length + 1] - bounds[c]
    if t in EFFECT_REPAIRS:
        z = _effect_audio(t, 0.0 if v is None else float(v), region, sr)
        if t == T.REVERSE:
            offsets = offsets[-1] - offsets[::-1]
        elif len(z) != len(region):
            offsets = np.rint(offsets * (len(z) / len(region))).astype(np.int64)
        gain = float(v) if t == T.GAIN else 0.0
        effect = None if t == T.GAIN else (int(t), int(ch.amount))
        new = [HumanPiece(c, length, gain_db=gain, effect=effect)]
    elif t in ORDER_REPAIRS:
        a = ch.first                                     # raw A B -> B A; the edit plays A, B
        cut = offsets[a]
        z = np.concatenate([region[cut:], region[:cut]])
        beat_len = np.diff(offsets)
        offsets = np.concatenate([[0], np.cumsum(np.concatenate([beat_len[a:], beat_len[:a]]))])
        new = [HumanPiece(c + length - a, a), HumanPiece(c, length - a)]
    elif t == T.LOOP:                                    # keep the first block, drop its repeats
        z = region[:offsets[n]]
        offsets = offsets[:n + 1]
        new = [HumanPiece(c, n) for _ in range(int(v))]
    elif t == T.REPEAT_PREV:                             # drop the repeats of the block before c
        z = region[:0]
        offsets = offsets[:1]
        new = [HumanPiece(c - n, n) for _ in range(int(v))]
    else:
        raise ValueError(f"{t.name} has no change that it repairs")
    new_length = len(offsets) - 1
    shift_beats = new_length - length
    shift_samples = len(z) - (bounds[c + length] - bounds[c])
    y = np.concatenate([y[:bounds[c]], z.astype(y.dtype), y[bounds[c + length]:]])
    bounds = np.concatenate([bounds[:c], bounds[c] + offsets, bounds[c + length + 1:] + shift_samples])

    out: list[HumanPiece] = []
    for p in pieces:
        if p.start <= c - ch.before and c + length <= p.end:
            assert p.plain, "changes lie in plain pieces"
            if c > p.start:
                out.append(HumanPiece(p.start, c - p.start))
            out += new
            if p.end > c + length:
                out.append(HumanPiece(c + new_length, p.end - c - length))
        elif p.start >= c + length:
            out.append(replace(p, start=p.start + shift_beats))
        else:
            assert p.end <= c, "no other piece plays the changed beats"
            out.append(p)
    first = c - n if t == T.REPEAT_PREV else c
    return y, bounds, out, (first, c + new_length)


# ---------------------------------------------------------------------------- one recording

@dataclass
class _Source:
    """A real recording of the dataset with its human edit as pieces."""

    index: int
    rec: BeatRecording
    pieces: list[HumanPiece]


def _sources(data: BCDataset) -> tuple[list[_Source], list[str]]:
    out, notes = [], []
    for i, rec in enumerate(data.recordings):
        if rec.origin:
            continue
        if not Path(rec.raw_path).is_file():
            notes.append(f"{rec.name}: {rec.raw_path} is missing; not used")
            continue
        rows = np.flatnonzero(data.rec == i)
        f = rec.features
        track = EditTrack(f.n_beats, downbeat_phase=f.downbeat_phase)
        for action in data.actions[rows]:
            track.apply(action)
        pieces = track_pieces(track)
        if pieces is None:
            notes.append(f"{rec.name}: its labels hold effects; not used")
            continue
        out.append(_Source(i, rec, pieces))
    return out, notes


def changed_recording(src: _Source, t: ActionType, k: int, *, name: str, audio_dir: Path,
                      cache_dir: Path, env_config: EnvConfig, params: FeatureParams,
                      rng: np.random.Generator) -> tuple[BeatRecording, RecordingLabels, np.ndarray] | None:
    """Write one changed copy of src's recording with up to k changes of type t, and label it.

    Returns:
        (recording, labels, rows): rows are the label steps of type t at the changes;
        None when the recording has no room for a change of type t.
    """
    rec = src.rec
    f = rec.features
    changes = choose_changes(t, src.pieces, f.n_beats, rec.section, f.downbeat_phase, k, rng)
    if not changes:
        return None
    y, sr = audio.read(rec.raw_path)
    bounds = np.rint(f.bounds_s * sr).astype(np.int64)
    bounds[-1] = len(y)
    pieces = [replace(p) for p in src.pieces]
    spans = []
    for ch in changes:                       # from the end: earlier places keep their beats
        n_before = len(bounds)
        y, bounds, pieces, span = apply_change(ch, y, sr, bounds, pieces)
        moved = len(bounds) - n_before
        spans = [(a + moved, b + moved) for a, b in spans] + [span]
    path = audio.write(audio_dir / "input" / f"{name}_raw.wav", y, sr, subtype="FLOAT")
    bounds_s = bounds / sr
    downbeats = bounds_s[:-1][f.downbeat_phase::BEATS_PER_BAR]
    bf = beat_features(path, cache_dir=cache_dir, beats_s=bounds_s[1:-1], downbeats_s=downbeats,
                       params=params)
    if bf.n_beats != len(bounds) - 1 or not np.allclose(bf.bounds_s[:-1], bounds_s[:-1], atol=1e-3):
        raise UserError(f"{path}: the beat grid moved when its features were computed "
                        f"({bf.n_beats} beats, {len(bounds) - 1} expected)")
    labels = label_pieces(path, bf, pieces, config=env_config, params=params)
    cursors, types = labels.cursors, labels.actions[:, 0]
    at_change = np.zeros(len(cursors), bool)
    for a, b in spans:
        at_change |= (cursors >= a) & (cursors <= b)
    rows = np.flatnonzero(at_change & (types == int(t)))
    keep = labels.edit.duration_s / bf.duration_s
    section = EditEnv(path, features=bf, config=env_config, target_keep_ratio=keep).section
    layout = Layout(audio_dir, cache_dir)
    recording = BeatRecording(name, str(path), bf, mels_per_beat(path, bf, layout, name, params), section, keep,
                          f"augment:{t.name}", rec.grid, rec.name)
    return recording, labels, rows


# ---------------------------------------------------------------------------- the dataset

def augment(data: BCDataset, *, min_samples: int, audio_dir: str | os.PathLike,
            cache_dir: str | os.PathLike = "cache", max_recordings: int = 200, seed: int = 0,
            types: list[ActionType] | None = None, changes_per_recording: int = 8,
            progress: bool = True) -> AugmentResult:
    """Add examples of every augmentable action type with fewer than min_samples labels.

    Types take turns; each turn writes one changed copy of the next real recording (a
    seeded shuffle of them) with up to changes_per_recording changes of that type.

    Args:
        data: labels from `editorbot bc-labels` (its recordings' audio must exist).
        min_samples: labels wanted per type.
        audio_dir: where the changed recordings go (audio_dir/input/{name}_raw.wav).
        cache_dir: where their beat features and mels are cached.
        max_recordings: stop after writing this many changed recordings.
        types: only these types (default: every augmentable one).

    Returns:
        AugmentResult (the dataset is `data` merged with the new steps).
    """
    from tqdm import tqdm

    audio_dir, cache_dir = Path(audio_dir), Path(cache_dir)
    if min_samples < 1:
        raise UserError(f"--min-samples {min_samples}: must be at least 1")
    env_config = from_dict(EnvConfig, data.env_config, where="BC labels' env config")
    counts = label_counts(data.actions)["type"].copy()
    wanted = [T(t) for t in (types or list(T))]
    notes: list[str] = []
    rare = [t for t in wanted if counts[t] < min_samples]
    for group, why in ((IN_EVERY_EDIT, "in every edit; not augmented"),
                       (NO_INVERSE, "nothing in a raw recording calls for them; left alone")):
        left = [t.name for t in rare if t in group]
        if left:
            notes.append(f"{', '.join(left)}: {why}")
    rare = [t for t in rare if t in AUGMENTABLE]
    sources, source_notes = _sources(data)
    notes += source_notes
    if rare and not sources:
        raise UserError("no real recording of the BC labels has its audio where the labels say; "
                        "run `editorbot bc-augment` where `editorbot bc-labels` ran")
    rng = np.random.default_rng(seed)
    order = {t: [int(i) for i in rng.permutation(len(sources))] for t in rare}
    tried = {t: 0 for t in rare}
    made = {t: 0 for t in rare}
    n_recordings = 0
    found: list[tuple[BeatRecording, RecordingLabels, np.ndarray]] = []
    used_names = {r.name for r in data.recordings}
    bar = tqdm(total=max_recordings, desc="bc-augment", unit="recording", disable=not progress)
    active = list(rare)
    while active and n_recordings < max_recordings:
        for t in list(active):
            if n_recordings >= max_recordings:
                break
            need = min_samples - counts[t]
            if need <= 0 or tried[t] >= 2 * len(sources):
                active.remove(t)
                continue
            src = sources[order[t][tried[t] % len(sources)]]
            tried[t] += 1
            name = f"{src.rec.name}-aug-{t.name.lower()}-{tried[t]:03d}"
            while name in used_names:
                name += "x"
            try:
                result = changed_recording(src, t, min(changes_per_recording, int(need)), name=name,
                                           audio_dir=audio_dir, cache_dir=cache_dir,
                                           env_config=env_config, params=data.params, rng=rng)
            except (UserError, ValueError) as err:
                log.warning("bc-augment: %s: %s", name, err)
                continue
            if result is None:
                continue
            used_names.add(name)
            n_recordings += 1
            bar.update(1)
            recording, labels, rows = result
            if len(rows):
                found.append(result)
                counts[t] += len(rows)
                made[t] += len(rows)
    bar.close()
    for t in rare:
        status = "reached" if counts[t] >= min_samples else "short of"
        notes.append(f"{t.name}: +{made[t]} examples, {counts[t]} in all ({status} {min_samples})")
    if active and n_recordings >= max_recordings:
        notes.append(f"stopped after {max_recordings} changed recordings (--max-recordings)")
    dataset = data
    if found:
        recs = [r for r, _, _ in found]
        rec_idx = np.concatenate([np.full(len(rows), i, np.int64) for i, (_, _, rows) in enumerate(found)])
        new = BCDataset(recs, rec_idx,
                        np.concatenate([lab.cursors[rows] for _, lab, rows in found]),
                        np.concatenate([lab.tails[rows] for _, lab, rows in found]),
                        np.concatenate([lab.actions[rows] for _, lab, rows in found]),
                        np.concatenate([lab.masks[rows] for _, lab, rows in found]),
                        data.env_config, dict(data.meta))
        dataset = data.merge(new)
    return AugmentResult(dataset, notes, n_recordings)
