"""Factored editing actions (20 types x 5 sizes x 5 amounts), their masks, and the track
of raw pieces that a sequence of actions builds.

The agent walks the raw recording's beats with a cursor. Each action decides about the
beats at the cursor (keep them, cut them, loop them, put an effect on them...) and moves
the cursor; the episode ends when the cursor reaches the last beat. What each type does
is in ActionType's docstring, what its amount means in AMOUNTS, how many beats each
size spans in SIZE_BEATS. Invalid combinations are masked (`EditTrack.mask`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

BEATS_PER_BAR = 4      # the meter is not estimated: a bar is 4 beats
BARS_PER_PHRASE = 4    # and a phrase 4 bars
BEATS_PER_PHRASE = BEATS_PER_BAR * BARS_PER_PHRASE


class ActionType(IntEnum):
    """What an action does with the n beats at the cursor b (n = SIZE_BEATS[size], v =
    the amount's value in AMOUNTS). "Plays" appends raw beats to the edit; the cursor
    moves as stated.

    KEEP         plays [b, b+n); cursor b+n
    CUT          plays nothing; cursor b+n (the n beats are dropped)
    LOOP         plays [b, b+n) v times; cursor b+n
    REORDER      plays [b+v*n, b+(v+1)*n) first, then [b, b+v*n): the block v blocks
                 ahead moves to the front; cursor b+(v+1)*n
    JUMP_BACK    plays nothing; cursor b - n*v (later actions play that audio again)
    SKIP         plays nothing; cursor to the next multiple of n on the bar grid (a whole
                 n when b is on it): drops the rest of the beat, bar or phrase
    FADE_IN      plays [b, b+n) fading in over the first v of it
    FADE_OUT     plays [b, b+n) fading out over the last v of it
    GAIN         plays [b, b+n) at v dB
    SPEED_UP     plays [b, b+n) time-stretched to v times the tempo (pitch kept)
    SPEED_DOWN   the same with v < 1
    REVERSE      plays [b, b+n) backwards
    PITCH_UP     plays [b, b+n) shifted by v semitones (tempo kept)
    PITCH_DOWN   the same with v < 0
    EQ_LOW       plays [b, b+n) through a low shelf of v dB at 200 Hz
    EQ_HIGH      plays [b, b+n) through a high shelf of v dB at 5 kHz
    DISTORTION   plays [b, b+n) through a drive of v dB (level matched)
    REVERB       plays [b, b+n) through a reverb of room size v
    REPEAT_PREV  plays [b-n, b), the n beats behind the cursor, v more times; cursor stays
    SWAP_NEXT    plays [b+n, b+2n) then [b, b+n); cursor b+2n
    All effect types move the cursor to b+n.
    """

    KEEP = 0
    CUT = 1
    LOOP = 2
    REORDER = 3
    JUMP_BACK = 4
    SKIP = 5
    FADE_IN = 6
    FADE_OUT = 7
    GAIN = 8
    SPEED_UP = 9
    SPEED_DOWN = 10
    REVERSE = 11
    PITCH_UP = 12
    PITCH_DOWN = 13
    EQ_LOW = 14
    EQ_HIGH = 15
    DISTORTION = 16
    REVERB = 17
    REPEAT_PREV = 18
    SWAP_NEXT = 19


class Size(IntEnum):
    """How many beats an action spans: see SIZE_BEATS."""

    BEAT = 0
    BAR = 1
    PHRASE = 2
    TWO_BARS = 3
    TWO_PHRASES = 4


class Amount(IntEnum):
    """How much: for signed types (GAIN, EQ) the sign and size of the change; for the
    others a ladder from least (NEG_LARGE) to most (POS_LARGE). See AMOUNTS."""

    NEG_LARGE = 0
    NEG_SMALL = 1
    NEUTRAL = 2
    POS_SMALL = 3
    POS_LARGE = 4


T, S = ActionType, Size
N_TYPES, N_SIZES, N_AMOUNTS = len(ActionType), len(Size), len(Amount)
ACTION_DIMS = (N_TYPES, N_SIZES, N_AMOUNTS)

SIZE_BEATS = np.array([1, BEATS_PER_BAR, BEATS_PER_PHRASE, 2 * BEATS_PER_BAR,
                       2 * BEATS_PER_PHRASE], np.int64)
"""Beats per size, indexed by Size: BEAT 1, BAR 4, PHRASE 16, TWO_BARS 8, TWO_PHRASES 32."""

_ = None
AMOUNTS: dict[ActionType, tuple[str, tuple]] = {
    # type            what the amount sets                 NEG_LARGE NEG_SMALL NEUTRAL POS_SMALL POS_LARGE
    T.KEEP:         ("nothing",                             (_, _, 0, _, _)),
    T.CUT:          ("nothing",                             (_, _, 0, _, _)),
    T.LOOP:         ("plays of the block",                  (2, 3, 4, 6, 8)),
    T.REORDER:      ("blocks ahead of the one moved first", (2, 3, 4, 6, 8)),
    T.JUMP_BACK:    ("jump length in sizes",                (1, 2, 4, 8, 16)),
    T.SKIP:         ("nothing",                             (_, _, 0, _, _)),
    T.FADE_IN:      ("fade length / block length",          (0.125, 0.25, 0.5, 0.75, 1.0)),
    T.FADE_OUT:     ("fade length / block length",          (0.125, 0.25, 0.5, 0.75, 1.0)),
    T.GAIN:         ("gain_db",                             (-6.0, -3.0, _, 3.0, 6.0)),
    T.SPEED_UP:     ("tempo ratio",                         (1.05, 1.1, 1.25, 1.5, 2.0)),
    T.SPEED_DOWN:   ("tempo ratio",                         (0.95, 0.9, 0.8, 2 / 3, 0.5)),
    T.REVERSE:      ("nothing",                             (_, _, 0, _, _)),
    T.PITCH_UP:     ("semitones",                           (1.0, 2.0, 3.0, 5.0, 7.0)),
    T.PITCH_DOWN:   ("semitones",                           (-1.0, -2.0, -3.0, -5.0, -7.0)),
    T.EQ_LOW:       ("low-shelf gain_db at 200 Hz",         (-12.0, -6.0, _, 6.0, 12.0)),
    T.EQ_HIGH:      ("high-shelf gain_db at 5 kHz",         (-12.0, -6.0, _, 6.0, 12.0)),
    T.DISTORTION:   ("drive_db",                            (6.0, 12.0, 18.0, 24.0, 36.0)),
    T.REVERB:       ("room_size",                           (0.2, 0.4, 0.6, 0.8, 0.95)),
    T.REPEAT_PREV:  ("extra plays of the beats behind",     (1, 2, 3, 4, 6)),
    T.SWAP_NEXT:    ("nothing",                             (_, _, 0, _, _)),
}
"""The one table of what each type's amount means; None marks an amount the type does
not take (masked, and resolved to the nearest one it takes)."""

EQ_LOW_HZ = 200.0
EQ_HIGH_HZ = 5000.0

CUT_TYPES = (T.CUT, T.SKIP)                     # drop raw beats (they feed the loop budget)
LOOP_TYPES = (T.LOOP, T.REPEAT_PREV)            # play beats again (spend the loop budget)
JUMP_TYPES = (T.JUMP_BACK, T.REORDER, T.SWAP_NEXT)  # move the playhead out of raw order
EFFECT_TYPES = (T.FADE_IN, T.FADE_OUT, T.GAIN, T.SPEED_UP, T.SPEED_DOWN, T.REVERSE,
                T.PITCH_UP, T.PITCH_DOWN, T.EQ_LOW, T.EQ_HIGH, T.DISTORTION, T.REVERB)


def amount_value(action_type: int, amount: int) -> float | None:
    """The value AMOUNTS gives `amount` for `action_type` (None: not taken)."""
    return AMOUNTS[ActionType(action_type)][1][amount]


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (type, size, amount): beats needed ahead of the cursor, beats needed behind it,
    raw beats played, and whether the amount is taken."""
    ahead = np.zeros(ACTION_DIMS, np.int64)
    behind = np.zeros(ACTION_DIMS, np.int64)
    played = np.zeros(ACTION_DIMS, np.int64)
    takes = np.zeros(ACTION_DIMS, bool)
    for t in ActionType:
        values = AMOUNTS[t][1]
        for s in Size:
            n = int(SIZE_BEATS[s])
            for a in Amount:
                v = values[a]
                takes[t, s, a] = v is not None
                v = 0 if v is None else v
                if t in (T.KEEP, T.CUT) or t in EFFECT_TYPES:
                    ahead[t, s, a] = n
                    played[t, s, a] = 0 if t == T.CUT else n
                elif t == T.LOOP:
                    ahead[t, s, a], played[t, s, a] = n, n * int(v)
                elif t == T.REORDER:
                    ahead[t, s, a] = played[t, s, a] = n * (int(v) + 1)
                elif t == T.SWAP_NEXT:
                    ahead[t, s, a] = played[t, s, a] = 2 * n
                elif t == T.JUMP_BACK:
                    behind[t, s, a] = n * int(v)
                elif t == T.REPEAT_PREV:
                    behind[t, s, a], played[t, s, a] = n, n * int(v)
                # SKIP: its extent depends on the cursor's place in the bar grid (mask()).
    return ahead, behind, played, takes


AHEAD, BEHIND, PLAYED, TAKES_AMOUNT = _tables()


@dataclass
class Piece:
    """Raw beats [start, start + n_beats) played once, as one stretch of the edit.

    gain_db: gain; fade_in, fade_out: fade lengths as fractions of the piece;
    effect: {"name": ..., "params": {...}} for editorbot.render, or None.
    """

    start: int
    n_beats: int
    gain_db: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0
    effect: dict | None = None

    @property
    def reversed(self) -> bool:
        return self.effect is not None and self.effect["name"] == "reverse"

    @property
    def entry(self) -> int:
        """The beat boundary where the playhead enters the raw (the end when reversed)."""
        return self.start + self.n_beats if self.reversed else self.start

    @property
    def exit(self) -> int:
        """The beat boundary where the playhead leaves the raw."""
        return self.start if self.reversed else self.start + self.n_beats

    def beats(self) -> np.ndarray:
        """Raw beats in the order they play, int64 (n_beats,)."""
        b = np.arange(self.start, self.start + self.n_beats, dtype=np.int64)
        return b[::-1] if self.reversed else b


def _effect(t: ActionType, v: float) -> dict | None:
    if t in (T.SPEED_UP, T.SPEED_DOWN):
        return {"name": "speed", "params": {"ratio": float(v)}}
    if t == T.REVERSE:
        return {"name": "reverse", "params": {}}
    if t in (T.PITCH_UP, T.PITCH_DOWN):
        return {"name": "pitch", "params": {"semitones": float(v)}}
    if t == T.EQ_LOW:
        return {"name": "low_shelf", "params": {"cutoff_frequency_hz": EQ_LOW_HZ, "gain_db": float(v)}}
    if t == T.EQ_HIGH:
        return {"name": "high_shelf", "params": {"cutoff_frequency_hz": EQ_HIGH_HZ, "gain_db": float(v)}}
    if t == T.DISTORTION:
        return {"name": "distortion", "params": {"drive_db": float(v)}}
    if t == T.REVERB:
        return {"name": "reverb", "params": {"room_size": float(v)}}
    return None


@dataclass
class EditTrack:
    """The edit an episode builds: a beat cursor, the pieces played so far, the actions.

    Args:
        n_beats: beats of the raw recording.
        downbeat_phase: index of the first downbeat (0..3); SKIP and the rewards use the
            bar grid beats downbeat_phase + 4k.
        max_played_beats: cap on raw beats played (repeats count again); actions that
            would pass it are masked.
    """

    n_beats: int
    downbeat_phase: int = 0
    max_played_beats: int | None = None
    cursor: int = 0
    pieces: list[Piece] = field(default_factory=list)
    actions: list[tuple[int, int, int]] = field(default_factory=list)
    type_counts: np.ndarray = field(default_factory=lambda: np.zeros(N_TYPES, np.int64))
    played_beats: int = 0

    @property
    def done(self) -> bool:
        return self.cursor >= self.n_beats

    def skip_ahead(self) -> np.ndarray:
        """Beats SKIP advances per size from the cursor, int64 (5,)."""
        offset = (self.cursor - self.downbeat_phase) % SIZE_BEATS
        return SIZE_BEATS - offset

    def mask(self) -> np.ndarray:
        """Which actions are valid now, bool (20, 5, 5) indexed [type, size, amount].

        Invalid: an amount the type does not take; anything that needs beats past the
        end (sizes past the end, a reorder or swap without room, a skip past the end);
        a jump back or a repeat before the start; anything that would play more than
        max_played_beats. All False once the episode is done. CUT BEAT is always valid
        before that.
        """
        if self.done:
            return np.zeros(ACTION_DIMS, bool)
        room = self.n_beats - self.cursor
        ahead = AHEAD.copy()
        ahead[T.SKIP] = self.skip_ahead()[:, None]
        ok = TAKES_AMOUNT & (ahead <= room) & (BEHIND <= self.cursor)
        if self.max_played_beats is not None:
            ok &= self.played_beats + PLAYED <= self.max_played_beats
        return ok

    def apply(self, action) -> None:
        """Apply one valid action (type, size, amount); ValueError if it is not valid."""
        t, s, a = (int(x) for x in action)
        if not self.mask()[t, s, a]:
            raise ValueError(f"action {describe((t, s, a))} is not valid at beat {self.cursor}")
        t = ActionType(t)
        n = int(SIZE_BEATS[s])
        v = AMOUNTS[t][1][a]
        b = self.cursor
        add = self.pieces.append
        if t == T.KEEP:
            add(Piece(b, n))
        elif t == T.LOOP:
            for _ in range(int(v)):
                add(Piece(b, n))
        elif t == T.REORDER:
            add(Piece(b + int(v) * n, n))
            add(Piece(b, int(v) * n))
        elif t == T.SWAP_NEXT:
            add(Piece(b + n, n))
            add(Piece(b, n))
        elif t == T.REPEAT_PREV:
            for _ in range(int(v)):
                add(Piece(b - n, n))
        elif t == T.FADE_IN:
            add(Piece(b, n, fade_in=float(v)))
        elif t == T.FADE_OUT:
            add(Piece(b, n, fade_out=float(v)))
        elif t == T.GAIN:
            add(Piece(b, n, gain_db=float(v)))
        elif t in EFFECT_TYPES:
            add(Piece(b, n, effect=_effect(t, v)))
        if t == T.SKIP:
            self.cursor += int(self.skip_ahead()[s])
        elif t == T.JUMP_BACK:
            self.cursor -= n * int(v)
        elif t != T.REPEAT_PREV:
            self.cursor += int(AHEAD[t, s, a])
        self.played_beats += int(PLAYED[t, s, a])
        self.type_counts[t] += 1
        self.actions.append((int(t), int(s), int(a)))

    def output_beats(self) -> np.ndarray:
        """Raw beats in the order the edit plays them, int64."""
        if not self.pieces:
            return np.zeros(0, np.int64)
        return np.concatenate([p.beats() for p in self.pieces])


def resolve(mask: np.ndarray, action) -> tuple[int, int, int]:
    """The valid action closest to `action` (itself when valid).

    Policies that sample the three heads independently (sb3-contrib's MaskablePPO takes
    one mask per head) can draw a combination that `mask` forbids; it is replaced, in
    this order, by: the same type and size with the nearest amount it takes (ties go to
    the smaller amount); the same type at the largest smaller size that fits; KEEP at
    the largest size up to the asked one that fits; CUT BEAT.
    """
    t, s, a = (int(x) for x in action)
    if mask[t, s, a]:
        return t, s, a
    by_distance = sorted(range(N_AMOUNTS), key=lambda x: (abs(x - a), x))
    sizes_down = sorted((x for x in range(N_SIZES) if SIZE_BEATS[x] <= SIZE_BEATS[s]),
                        key=lambda x: -SIZE_BEATS[x])
    for size in sizes_down:
        for amount in by_distance:
            if mask[t, size, amount]:
                return t, size, amount
    for size in sizes_down:
        if mask[T.KEEP, size, Amount.NEUTRAL]:
            return int(T.KEEP), size, int(Amount.NEUTRAL)
    return int(T.CUT), int(S.BEAT), int(Amount.NEUTRAL)


def head_masks(mask: np.ndarray) -> np.ndarray:
    """Per-head masks for sb3-contrib's MaskablePPO, bool (20 + 5 + 5,): a type (size,
    amount) is allowed when some valid action has it. Combinations of allowed heads can
    still be invalid; `resolve` replaces those."""
    return np.concatenate([mask.any(axis=(1, 2)), mask.any(axis=(0, 2)), mask.any(axis=(0, 1))])


def sample_valid(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    """A uniformly random valid action."""
    flat = np.flatnonzero(mask.ravel())
    if len(flat) == 0:
        raise ValueError("no valid action: the episode is over")
    return tuple(int(x) for x in np.unravel_index(int(rng.choice(flat)), ACTION_DIMS))


def describe(action) -> str:
    """'LOOP BAR POS_SMALL' for an action (type, size, amount)."""
    t, s, a = (int(x) for x in action)
    return f"{ActionType(t).name} {Size(s).name} {Amount(a).name}"


def parse(text: str) -> tuple[int, int, int]:
    """The action of 'LOOP BAR POS_SMALL' (names as in describe; case-insensitive)."""
    parts = text.upper().split()
    if len(parts) != 3:
        raise ValueError(f"expected 'TYPE SIZE AMOUNT', got {text!r}")
    try:
        return int(ActionType[parts[0]]), int(Size[parts[1]]), int(Amount[parts[2]])
    except KeyError as err:
        raise ValueError(f"unknown name {err.args[0]!r} in {text!r}") from None
