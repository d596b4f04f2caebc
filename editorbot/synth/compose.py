"""The plan of a synthetic jam session (sections on a beat grid) and the MIDI the band plays.

`plan_session` lays out tuning, noodling, count-ins, false starts, songs and silences on a
drifting tempo grid; `perform` turns a plan into notes, each take of a part played anew.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import PlayingConfig, SessionConfig, SynthConfig

# Labels of sections that a musician would keep (MUSIC) or cut (JUNK) from a session.
MUSIC_LABELS = ("intro", "riff", "verse", "chorus", "solo", "breakdown", "ending")
JUNK_LABELS = ("silence", "tuning", "noodling", "count_in", "false_start")
ENERGY = {"silence": 0.0, "tuning": 0.15, "noodling": 0.25, "count_in": 0.3, "false_start": 0.55,
          "intro": 0.5, "riff": 0.62, "verse": 0.55, "chorus": 0.9, "solo": 0.8,
          "breakdown": 0.35, "ending": 0.75}
BEATS_PER_BAR = 4
STEPS = 16  # sixteenth notes per bar

SCALES = {"aeolian": [0, 2, 3, 5, 7, 8, 10], "dorian": [0, 2, 3, 5, 7, 9, 10],
          "mixolydian": [0, 2, 4, 5, 7, 9, 10]}
PENTATONIC = {"aeolian": [0, 3, 5, 7, 10], "dorian": [0, 3, 5, 7, 10], "mixolydian": [0, 2, 4, 7, 9]}
# Four-bar progressions as scale degrees (0 = tonic, 6 = the flat seventh in these modes).
PROGRESSIONS = {
    "aeolian": [[0, 6, 5, 6], [0, 5, 2, 6], [0, 3, 4, 0], [0, 0, 5, 6], [0, 2, 5, 4], [5, 6, 0, 0]],
    "dorian": [[0, 3, 0, 3], [0, 6, 3, 0], [0, 4, 6, 3], [0, 0, 3, 3], [3, 4, 0, 0]],
    "mixolydian": [[0, 6, 3, 0], [0, 3, 6, 0], [0, 0, 6, 3], [3, 6, 0, 0], [0, 4, 3, 0]],
}
ROLES = ("drums", "bass", "chords", "lead")
MISTAKE_KINDS = ("wrong_chord", "drum_stumble", "clam")


@dataclass
class Section:
    """One stretch of the session.

    bars_s: bar boundaries (n_bars + 1,) for sections on the grid, empty in free time.
    beats_s: beat times (4 * n_bars + 1,), the same grid one beat at a time.
    take: how many times the song played this part before in this take of it (0 = first time).
    song_take: which take of its song the section belongs to, in session order (0 = the first
        time the band starts the song; a false start is a take of its own).
    natural_end: the section ends by itself (an ending's last chord has rung out, a
        false start has stopped), so a cut there falls in near-silence, not on the grid.
    """

    label: str
    start_s: float
    end_s: float
    song: int = -1
    part: str = ""
    take: int = 0
    energy: float = 0.0
    bars_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    beats_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    natural_end: bool = False
    song_take: int = 0

    @property
    def n_bars(self) -> int:
        return max(len(self.bars_s) - 1, 0)

    def to_json(self) -> dict:
        return {"label": self.label, "start_s": float(self.start_s), "end_s": float(self.end_s),
                "song": self.song, "part": self.part, "take": self.take, "song_take": self.song_take,
                "energy": round(float(self.energy), 3), "n_bars": self.n_bars,
                "natural_end": self.natural_end}


@dataclass
class Mistake:
    """One bar that went wrong: a wrong chord, a drummer's stumble, or a clam in the lead."""

    kind: str
    start_s: float
    end_s: float
    section: int  # index into Plan.sections

    def to_json(self) -> dict:
        return {"kind": self.kind, "start_s": float(self.start_s), "end_s": float(self.end_s),
                "section": self.section}


@dataclass
class Song:
    """What a song is made of: tempo, key, progressions and the lines the band repeats."""

    index: int
    tempo_bpm: float
    root: int                       # MIDI note of the tonic in the guitar register
    mode: str
    jam: bool
    progressions: dict[str, list[int]]   # part -> scale degree per bar (cycled)
    riff: list[tuple[int, int, int]]     # (step, semitones above root, length in steps)
    motifs: dict[str, list[tuple[int, int, int]]]  # part -> (eighth, pentatonic index, eighths)
    styles: dict[str, dict[str, str]]    # part -> {"drums", "bass", "chords"} pattern names

    def to_json(self) -> dict:
        return {"index": self.index, "tempo_bpm": round(self.tempo_bpm, 3), "root_midi": self.root,
                "mode": self.mode, "jam": self.jam, "progressions": self.progressions}


@dataclass
class Plan:
    """A whole session: sections in time order, the songs, the mistakes, the instruments."""

    duration_s: float
    sections: list[Section]
    songs: list[Song]
    mistakes: list[Mistake]
    programs: dict[str, int]        # role -> GM program (drums: kit number in bank 128)

    @property
    def beats_s(self) -> np.ndarray:
        """Every beat the band played on, float64 (n_beats,), sorted, without duplicates."""
        return _unique_times([s.beats_s for s in self.sections])

    @property
    def downbeats_s(self) -> np.ndarray:
        """The first beat of every bar, float64 (n_bars,)."""
        return _unique_times([s.bars_s for s in self.sections])

    @property
    def tempo_bpm(self) -> float:
        """The session's typical tempo: 60 / the median beat period of all songs."""
        periods = [np.diff(s.beats_s) for s in self.sections if len(s.beats_s) > 1]
        return float(60.0 / np.median(np.concatenate(periods))) if periods else 0.0


def _unique_times(arrays: list[np.ndarray]) -> np.ndarray:
    t = np.sort(np.concatenate([np.asarray(a, np.float64) for a in arrays] + [np.zeros(0)]))
    if len(t) == 0:
        return t
    return t[np.concatenate([[True], np.diff(t) > 1e-6])]


# ---------------------------------------------------------------------------- the plan

def plan_session(config: SynthConfig, rng: np.random.Generator, duration_s: float) -> Plan:
    """Lay out a session of `duration_s` seconds: junk between songs, songs on a tempo grid.

    The recording stops at duration_s even in the middle of a song, as real ones do.

    Args:
        config: the generator's settings.
        rng: the plan's own random stream (the performance uses another).
        duration_s: length of the raw recording in seconds.
    """
    cs, cp, snd = config.session, config.playing, config.sound
    programs = {"drums": int(rng.choice(snd.drum_kits)), "bass": int(rng.choice(snd.bass_programs)),
                "chords": int(rng.choice(snd.chord_programs)), "lead": int(rng.choice(snd.lead_programs))}
    session_bpm = float(rng.uniform(*cp.tempo_bpm))
    sections: list[Section] = []
    songs: list[Song] = []

    def free(label: str, seconds: float) -> None:
        t = sections[-1].end_s if sections else 0.0
        sections.append(Section(label, t, t + seconds, energy=ENERGY[label]))

    # What comes before the first song takes at most a quarter of the session, so that a
    # short session still holds music (long sessions are rarely affected).
    budget = 0.25 * duration_s
    opening = [("silence", rng.uniform(*cs.preroll_s))]
    if rng.random() < cs.tuning_prob:
        opening.append(("tuning", rng.uniform(*cs.tuning_s)))
    if rng.random() < cs.noodling_prob:
        opening.append(("noodling", rng.uniform(*cs.noodling_s)))
    scale = min(1.0, budget / sum(seconds for _, seconds in opening))
    for label, seconds in opening:
        free(label, seconds * scale)
    while sections[-1].end_s < duration_s:
        lo, hi = cp.tempo_bpm
        bpm = float(np.clip(session_bpm * (1 + rng.uniform(-1, 1) * cp.song_tempo_spread), lo, hi))
        song = _make_song(len(songs), bpm, cs, cp, rng)
        songs.append(song)
        form = _song_form(song, cs, rng)
        song_take = 0
        if rng.random() < cs.false_start_prob:
            _add_false_start(sections, song, form, cs, cp, rng, song_take)
            free("silence", rng.uniform(1.5, 4.0))
            song_take += 1
        _add_take(sections, song, form, cs, cp, rng, song_take)
        # No draw at retake_prob 0, so sessions without retakes stay what they were.
        if cs.retake_prob and rng.random() < cs.retake_prob:
            free("silence", rng.uniform(*cs.gap_silence_s))
            _add_take(sections, song, form, cs, cp, rng, song_take + 1)
        free("silence", rng.uniform(*cs.gap_silence_s))
        if rng.random() < cs.gap_tuning_prob:
            free("tuning", rng.uniform(*cs.tuning_s) / 2)
        if rng.random() < cs.gap_noodling_prob:
            free("noodling", rng.uniform(*cs.noodling_s) / 2)
    sections = _clip(sections, duration_s)
    mistakes = _place_mistakes(sections, cs, rng)
    return Plan(float(duration_s), sections, songs, mistakes, programs)


def _make_song(index: int, bpm: float, cs: SessionConfig, cp: PlayingConfig,
               rng: np.random.Generator) -> Song:
    mode = str(rng.choice(cp.modes))
    root = int(rng.choice(cp.roots_midi))
    options = PROGRESSIONS[mode]
    picks = rng.choice(len(options), size=3, replace=len(options) < 3)
    progressions = {"A": options[picks[0]], "B": options[picks[1]],
                    "R": [0, 0, 0, int(rng.choice([0, 5, 6]))], "D": options[picks[2]][:2]}
    penta = PENTATONIC[mode]
    # A one-bar riff: the root on the one, then a few pentatonic notes.
    steps = np.sort(rng.choice(np.arange(2, STEPS), size=int(rng.integers(4, 7)), replace=False))
    starts = [0] + [int(s) for s in steps]
    riff = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else STEPS
        interval = 0 if i == 0 else int(rng.choice(penta + [12]))
        riff.append((s, interval, max(1, end - s)))
    motifs = {part: _motif(rng, density) for part, density in (("A", 0.45), ("B", 0.6))}
    drum_choice = {"A": ["rock", "half", "ride"], "B": ["drive", "four", "rock"],
                   "R": ["rock", "drive", "four"], "S": ["ride", "drive"], "D": ["sparse", "half"]}
    bass_choice = {"A": ["eighths", "root5", "follow"], "B": ["eighths", "drive"],
                   "R": ["riff"], "S": ["root5", "eighths"], "D": ["whole"]}
    chord_choice = {"A": ["push", "chug", "stabs"], "B": ["whole", "half", "push"],
                    "R": ["riff"], "S": ["half", "chug"], "D": ["whole"]}
    styles = {p: {"drums": str(rng.choice(drum_choice[p])), "bass": str(rng.choice(bass_choice[p])),
                  "chords": str(rng.choice(chord_choice[p]))} for p in drum_choice}
    return Song(index, bpm, root, mode, bool(rng.random() < cs.jam_prob),
                progressions, riff, motifs, styles)


def _motif(rng: np.random.Generator, density: float) -> list[tuple[int, int, int]]:
    """A two-bar melody on the eighth-note grid: (eighth, pentatonic index, length)."""
    onsets = [e for e in range(16) if rng.random() < density] or [0]
    notes, idx = [], int(rng.integers(3, 8))
    for i, e in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else 16
        idx = int(np.clip(idx + rng.choice([-2, -1, -1, 0, 1, 1, 2]), 0, 9))
        notes.append((e, idx, max(1, min(nxt - e, int(rng.integers(1, 4))))))
    return notes


def _song_form(song: Song, cs: SessionConfig, rng: np.random.Generator) -> list[tuple[str, str, int]]:
    """The song's sections as (label, part, bars); parts: R riff, A verse, B chorus, S solo, D."""
    def bars(rng_range: tuple[int, int], multiple: int = 4) -> int:
        lo, hi = rng_range
        return int(max(multiple, multiple * round(rng.integers(lo, hi + 1) / multiple)))

    if song.jam:
        form = [("riff", "R", bars(cs.intro_bars)), ("verse", "A", bars(cs.verse_bars)),
                ("solo", "S", bars(cs.jam_solo_bars))]
        if rng.random() < 0.6:
            form.append(("breakdown", "D", bars(cs.breakdown_bars)))
        form += [("solo", "S", bars(cs.jam_solo_bars)), ("riff", "R", bars(cs.intro_bars)),
                 ("chorus", "B", bars(cs.chorus_bars))]
    else:
        form = [("intro", "R", bars(cs.intro_bars)), ("verse", "A", bars(cs.verse_bars)),
                ("chorus", "B", bars(cs.chorus_bars)), ("verse", "A", bars(cs.verse_bars)),
                ("chorus", "B", bars(cs.chorus_bars))]
        if rng.random() < 0.5:
            form.append(("breakdown", "D", bars(cs.breakdown_bars)))
        form += [("solo", "S", bars(cs.solo_bars)), ("chorus", "B", bars(cs.chorus_bars))]
        if rng.random() < 0.3:
            form.append(("chorus", "B", bars(cs.chorus_bars)))
    form.append(("ending", "B", int(rng.integers(cs.ending_bars[0], cs.ending_bars[1] + 1))))
    return form


def _grid(t0: float, n_bars: int, bpm: float, cp: PlayingConfig, rng: np.random.Generator,
          rit_bars: int = 0) -> np.ndarray:
    """Beat times (4 * n_bars + 1,) from t0: slow log-tempo drift per bar, ritardando at the end."""
    rho = float(np.exp(-1.0 / max(cp.tempo_drift_bars, 1e-3)))
    dev, bar_bpm = float(rng.normal(0, cp.tempo_drift)), np.empty(n_bars)
    for k in range(n_bars):
        dev = rho * dev + np.sqrt(1 - rho ** 2) * cp.tempo_drift * rng.normal()
        dev = float(np.clip(dev, -2 * cp.tempo_drift, 2 * cp.tempo_drift))
        bar_bpm[k] = bpm * np.exp(dev)
    if rit_bars:
        bar_bpm[-rit_bars:] *= np.linspace(1.0, 1.0 - cp.ritardando, rit_bars + 1)[1:]
    beat_s = np.repeat(60.0 / bar_bpm, BEATS_PER_BAR)
    return t0 + np.concatenate([[0.0], np.cumsum(beat_s)])


def _count_in_bars(bpm: float, cs: SessionConfig) -> int:
    return cs.count_in_bars * (2 if bpm > cs.fast_count_in_bpm else 1)


def _add_take(sections: list[Section], song: Song, form: list[tuple[str, str, int]],
              cs: SessionConfig, cp: PlayingConfig, rng: np.random.Generator, song_take: int) -> None:
    """Count-in, then the song's form on one continuous grid, ending in a ringing chord."""
    t0 = sections[-1].end_s
    n_count = _count_in_bars(song.tempo_bpm, cs)
    n_bars = n_count + sum(b for _, _, b in form)
    beats = _grid(t0, n_bars, song.tempo_bpm, cp, rng, rit_bars=min(2, form[-1][2]))
    bars = beats[::BEATS_PER_BAR]
    takes: dict[str, int] = {}
    bar = 0
    for label, part, n in [("count_in", "", n_count)] + form:
        sec = Section(label, float(bars[bar]), float(bars[bar + n]), song.index, part,
                      takes.get(label, 0), ENERGY[label], bars[bar:bar + n + 1].copy(),
                      beats[bar * 4:(bar + n) * 4 + 1].copy(), song_take=song_take)
        takes[label] = takes.get(label, 0) + 1
        if label in ("chorus", "ending"):
            sec.energy = min(1.0, sec.energy + 0.03 * sec.take)
        if label == "ending":
            sec.end_s = float(bars[bar + n] + rng.uniform(*cs.ending_ring_s))
            sec.natural_end = True
        sections.append(sec)
        bar += n


def _add_false_start(sections: list[Section], song: Song, form: list[tuple[str, str, int]],
                     cs: SessionConfig, cp: PlayingConfig, rng: np.random.Generator,
                     song_take: int) -> None:
    """A count-in and a bar or three of the first part, then the band breaks down."""
    t0 = sections[-1].end_s
    n_count = _count_in_bars(song.tempo_bpm, cs)
    n_play = int(rng.integers(cs.false_start_bars[0], cs.false_start_bars[1] + 1))
    beats = _grid(t0, n_count + n_play, song.tempo_bpm, cp, rng)
    bars = beats[::BEATS_PER_BAR]
    stop_beat = (n_count + n_play - 1) * 4 + int(rng.integers(1, 4))
    sections.append(Section("count_in", float(bars[0]), float(bars[n_count]), song.index, "", 0,
                            ENERGY["count_in"], bars[:n_count + 1].copy(),
                            beats[:n_count * 4 + 1].copy(), song_take=song_take))
    played = beats[n_count * 4:stop_beat + 1]
    sections.append(Section("false_start", float(bars[n_count]), float(played[-1] + rng.uniform(0.3, 0.8)),
                            song.index, form[0][1], 0, ENERGY["false_start"],
                            played[::BEATS_PER_BAR].copy(), played.copy(), natural_end=True,
                            song_take=song_take))


def _clip(sections: list[Section], duration_s: float) -> list[Section]:
    """Stop the recording at duration_s: later sections go, the one across it is cut short."""
    out = []
    for sec in sections:
        if sec.start_s >= duration_s - 0.05:
            break
        if sec.end_s > duration_s:
            sec.end_s = float(duration_s)
            sec.beats_s = sec.beats_s[sec.beats_s <= duration_s]
            sec.bars_s = sec.bars_s[sec.bars_s <= duration_s]
            sec.natural_end = False
        out.append(sec)
    return out


def _place_mistakes(sections: list[Section], cs: SessionConfig,
                    rng: np.random.Generator) -> list[Mistake]:
    mistakes = []
    for i, sec in enumerate(sections):
        if sec.label in ("riff", "verse", "chorus", "solo") and sec.n_bars >= 4 \
                and rng.random() < cs.mistake_prob:
            bar = int(rng.integers(1, sec.n_bars - 1))
            mistakes.append(Mistake(str(rng.choice(MISTAKE_KINDS)), float(sec.bars_s[bar]),
                                    float(sec.bars_s[bar + 1]), i))
    return mistakes


# ---------------------------------------------------------------------------- the performance

@dataclass
class Score:
    """What the band played: per role, notes (onset_s, offset_s, key, velocity) and pitch
    bends (time_s, value 0..16383, 8192 = none)."""

    notes: dict[str, list[tuple[float, float, int, int]]] = field(
        default_factory=lambda: {r: [] for r in ROLES})
    bends: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: {r: [] for r in ROLES})


DRUMS = {  # 16 steps: X accent, x normal, o ghost; keys are GM drum notes
    "rock": {36: "x.......x.x.....", 38: "....X.......X...", 42: "x.x.x.x.x.x.x.x."},
    "drive": {36: "x..x....x..x....", 38: "....X.......X...", 42: "xoxoxoxoxoxoxoxo"},
    "four": {36: "x...x...x...x...", 38: "....X.......X...", 46: "..x...x...x...x.", 42: "x...x...x...x..."},
    "half": {36: "x.........x.....", 38: "........X.......", 42: "x.x.x.x.x.x.x.x."},
    "ride": {36: "x.......x..x....", 38: "....X.......X..o", 51: "x.x.x.x.x.x.x.x."},
    "sparse": {36: "x.......x.......", 44: "x...x...x...x...", 37: "............x..."},
}
COUNT_IN = {37: "x...x...x...x..."}
FILL = [38, 38, 48, 48, 47, 47, 45, 43]  # two beats of sixteenths down the toms
ACCENT = {"X": 1.15, "x": 1.0, "o": 0.45}
DRUM_RING_S = {42: 0.25, 44: 0.25, 46: 0.8, 49: 2.5, 57: 2.5, 51: 1.5, 37: 0.3}  # others 0.6 s


def _velocity(energy: float, scale: float, cp: PlayingConfig, rng: np.random.Generator) -> int:
    return int(np.clip(round((35 + 85 * energy) * scale + rng.normal(0, cp.velocity_spread)), 1, 127))


def _step_time(beats: np.ndarray, step: float) -> float:
    """Time of sixteenth `step` (0..16) of a bar whose 5 beat times (with the next bar's) are given."""
    b = min(int(step // 4), 3)
    return float(beats[b] + (step / 4 - b) * (beats[b + 1] - beats[b]))


class _Band:
    """Writes notes into a Score with each player's timing jitter and dynamics."""

    def __init__(self, plan: Plan, cp: PlayingConfig, rng: np.random.Generator):
        self.plan, self.cp, self.rng, self.score = plan, cp, rng, Score()
        self.jitter_s = {"drums": cp.drums_jitter_ms / 1e3, "bass": cp.bass_jitter_ms / 1e3,
                         "chords": cp.chords_jitter_ms / 1e3, "lead": cp.lead_jitter_ms / 1e3}
        self.lag_s = {"drums": 0.0, "bass": cp.bass_lag_ms / 1e3, "chords": 0.0, "lead": 0.0}
        self.stop_s = np.inf  # notes are cut here (a false start breaking down)

    def note(self, role: str, on_s: float, off_s: float, key: int, vel: int, *,
             jitter: bool = True) -> float:
        if jitter:
            on_s += self.lag_s[role] + self.rng.normal(0, self.jitter_s[role])
        on_s = max(on_s, 0.0)
        off_s = min(max(off_s, on_s + 0.03), self.stop_s)
        if on_s < self.stop_s and 0 <= key <= 127:
            self.score.notes[role].append((on_s, off_s, int(key), int(vel)))
        return on_s

    def hit(self, t_s: float, key: int, vel: int, *, jitter: bool = True) -> None:
        """A drum hit; it rings for its instrument's natural length (cymbals long, hats short)."""
        self.note("drums", t_s, t_s + DRUM_RING_S.get(key, 0.6), key, vel, jitter=jitter)

    def bend(self, role: str, t_s: float, semitones: float) -> None:
        if t_s < self.stop_s:
            value = int(np.clip(round(8192 + 8191 * semitones / 2.0), 0, 16383))
            self.score.bends[role].append((max(t_s, 0.0), value))


def perform(plan: Plan, config: SynthConfig, rng: np.random.Generator) -> Score:
    """Play a plan: every section's notes, every take of a part varied anew.

    Args:
        plan: from plan_session.
        rng: the performance's own random stream.

    Returns:
        Score with notes per role in seconds of the raw recording.
    """
    band = _Band(plan, config.playing, rng)
    mistakes = {(m.section, round(m.start_s, 6)): m.kind for m in plan.mistakes}
    for i, sec in enumerate(plan.sections):
        if sec.label == "silence":
            continue
        if sec.label == "tuning":
            _tuning(band, sec)
        elif sec.label == "noodling":
            _noodling(band, sec, plan.songs[0] if plan.songs else None)
        elif sec.label == "count_in":
            for k in range(sec.n_bars):
                _drum_bar(band, sec.beats_s[4 * k:4 * k + 5], COUNT_IN, 0.45, fill=False, crash=False)
        else:
            song = plan.songs[sec.song]
            band.stop_s = sec.end_s if sec.label == "false_start" else np.inf
            _groove(band, sec, song, {bar: kind for (j, bar), kind in mistakes.items() if j == i})
            band.stop_s = np.inf
    for role in ROLES:
        band.score.notes[role].sort()
        band.score.bends[role].sort()
    return band.score


def _tuning(band: _Band, sec: Section) -> None:
    """Open strings plucked a little off pitch and bent into tune; bass strings; drum taps."""
    rng = band.rng
    t = sec.start_s + rng.uniform(0.2, 1.0)
    guitar = "chords" if 24 <= band.plan.programs["chords"] <= 31 else "lead"
    while t < sec.end_s - 1.0:
        if rng.random() < 0.6:
            key = int(rng.choice([40, 45, 50, 55, 59, 64]))
            ring = rng.uniform(1.2, 2.5)
            off = rng.uniform(0.1, 0.4) * rng.choice([-1, 1])
            band.bend(guitar, t - 0.01, off)
            band.note(guitar, t, t + ring, key, int(rng.integers(50, 85)), jitter=False)
            if rng.random() < 0.4:  # the fifth-fret pair tuners compare
                band.note(guitar, t + 0.05, t + ring, key + 5, int(rng.integers(45, 70)), jitter=False)
            for k in range(1, 7):
                band.bend(guitar, t + ring * k / 7, off * (1 - k / 6))
            t += ring + rng.uniform(0.2, 1.0)
        elif rng.random() < 0.6:
            key = int(rng.choice([28, 33, 38, 43]))
            band.note("bass", t, t + rng.uniform(0.8, 1.8), key + 12 * int(rng.random() < 0.3),
                      int(rng.integers(55, 90)), jitter=False)
            t += rng.uniform(0.8, 2.0)
        else:
            key = int(rng.choice([38, 38, 36, 48, 45, 42]))
            for _ in range(int(rng.integers(1, 5))):
                band.hit(t, key, int(rng.integers(30, 80)), jitter=False)
                t += rng.uniform(0.12, 0.4)
            t += rng.uniform(0.5, 1.5)
    band.bend(guitar, sec.end_s - 0.5, 0.0)


def _noodling(band: _Band, sec: Section, song: Song | None) -> None:
    """Free-time lines on the lead, stray bass notes and cymbal taps; no common beat."""
    rng = band.rng
    root = song.root if song else 40
    scale = PENTATONIC[song.mode if song else "aeolian"]
    keys = [root + 24 + 12 * (i // 5) + scale[i % 5] for i in range(10)]
    t, idx = sec.start_s + rng.uniform(0.2, 1.0), 4
    while t < sec.end_s - 0.5:
        for _ in range(int(rng.integers(3, 12))):  # a phrase at its own loose pace
            step = rng.uniform(0.12, 0.35)
            idx = int(np.clip(idx + rng.choice([-2, -1, 1, 2]), 0, len(keys) - 1))
            band.note("lead", t, t + step * rng.uniform(0.8, 2.0), keys[idx], int(rng.integers(40, 80)),
                      jitter=False)
            t += step
            if t > sec.end_s - 0.5:
                return
        if rng.random() < 0.5:
            band.note("bass", t, t + rng.uniform(0.5, 1.5), root - 12 + int(rng.choice(scale)),
                      int(rng.integers(45, 80)), jitter=False)
        if rng.random() < 0.4:
            band.hit(t, int(rng.choice([51, 42, 44])), int(rng.integers(25, 60)),
                      jitter=False)
        t += rng.uniform(0.4, 2.0)


def _chord_keys(song: Song, degree: int, program: int) -> tuple[int, list[int]]:
    """(chord root in the guitar register, voicing): power chords on guitars, triads on organs."""
    scale = SCALES[song.mode]
    root = song.root + scale[degree % 7]
    if root > song.root + 7:
        root -= 12
    if 16 <= program <= 23:  # organ: a close triad around middle C
        third = scale[(degree + 2) % 7] - scale[degree % 7]
        fifth = scale[(degree + 4) % 7] - scale[degree % 7]
        return root, [root + 12 + third % 12, root + 12 + fifth % 12, root + 24]
    return root, [root, root + 7, root + 12]


def _groove(band: _Band, sec: Section, song: Song, mistake_bars: dict[float, str]) -> None:
    """Play a grid section bar by bar: drums, bass, chords and lead in the part's style."""
    rng, cp = band.rng, band.cp
    part = "S" if sec.label == "solo" else ("D" if sec.label == "breakdown" else sec.part or "A")
    style = dict(song.styles[part])
    if sec.take > 0 and rng.random() < 0.35:  # the part comes back, played a little differently
        style["drums"] = str(rng.choice(list(DRUMS)[:5]))
    progression = song.progressions[sec.part if sec.part in song.progressions else "A"]
    chords_program = band.plan.programs["chords"]
    motif = song.motifs.get(sec.part)
    solo_state = [int(rng.integers(4, 8))]
    n_bars = sec.n_bars if sec.label != "false_start" else len(sec.bars_s)
    for k in range(n_bars):
        beats = sec.beats_s[4 * k:4 * k + 5]
        if len(beats) < 5:  # a false start's last, broken bar: extend the grid to finish it
            period = float(np.median(np.diff(sec.beats_s))) if len(sec.beats_s) > 1 else 0.5
            beats = np.concatenate([beats, beats[-1] + period * np.arange(1, 6 - len(beats))])
        mistake = mistake_bars.get(round(float(beats[0]), 6))
        degree = progression[k % len(progression)]
        energy = sec.energy * (0.9 + 0.2 * rng.random())
        last = k == n_bars - 1
        fill = (k % 4 == 3 or last) and sec.label not in ("breakdown",) and rng.random() < 0.7
        crash = k == 0 or (sec.label == "chorus" and k % 4 == 0)
        if sec.label == "ending" and last and sec.natural_end:
            _final_hit(band, sec, song, beats, chords_program)
            continue
        if mistake == "drum_stumble":
            _drum_bar(band, beats, DRUMS[style["drums"]], energy, fill=False, crash=False, skip=(4, 12))
        else:
            _drum_bar(band, beats, DRUMS[style["drums"]], energy, fill=fill, crash=crash)
        shift = 1 if mistake == "wrong_chord" else 0
        root, voicing = _chord_keys(song, degree, chords_program)
        _bass_bar(band, beats, style["bass"], root - 12 + shift, song, energy)
        _chords_bar(band, beats, style["chords"], [v + shift for v in voicing], song, root + shift,
                    energy, chords_program)
        if sec.label == "solo":
            _solo_bar(band, beats, song, energy, solo_state)
        elif motif is not None and sec.label in ("verse", "chorus") and (k // 2) % 2 == 0:
            _motif_bar(band, beats, song, motif, k % 2, energy, sec.take)
        if mistake == "clam":
            for s in (2, 6, 7):
                band.note("lead", _step_time(beats, s), _step_time(beats, s + 2), song.root + 25 + s % 2 * 5,
                          min(127, _velocity(energy, 1.2, cp, rng)))


def _drum_bar(band: _Band, beats: np.ndarray, pattern: dict[int, str], energy: float, *,
              fill: bool, crash: bool, skip: tuple[int, int] = (-1, -1)) -> None:
    rng, cp = band.rng, band.cp
    fill_from = 8 if fill and rng.random() < 0.5 else 12
    for key, line in pattern.items():
        for step, c in enumerate(line):
            if c == "." or (fill and step >= fill_from) or skip[0] <= step < skip[1]:
                continue
            t = _step_time(beats, step)
            band.hit(t, key, _velocity(energy, ACCENT[c], cp, rng))
    if fill:
        for step in range(fill_from, STEPS):
            t = _step_time(beats, step)
            band.hit(t, FILL[step - 8], _velocity(energy, 0.8 + 0.03 * (step - 8), cp, rng))
    if crash:
        band.hit(beats[0], 49, _velocity(energy, 1.1, cp, rng))


BASS = {"eighths": [0, 2, 4, 6, 8, 10, 12, 14], "drive": list(range(16)), "follow": [0, 3, 8, 10, 11],
        "root5": [0, 6, 8, 14], "whole": [0], "riff": []}


def _bass_bar(band: _Band, beats: np.ndarray, style: str, root: int, song: Song, energy: float) -> None:
    rng, cp = band.rng, band.cp
    if style == "riff":
        for step, interval, length in song.riff:
            band.note("bass", _step_time(beats, step), _step_time(beats, min(step + length, 16)) - 0.02,
                      root + interval, _velocity(energy, 1.0, cp, rng))
        return
    steps = BASS[style]
    for i, step in enumerate(steps):
        end = steps[i + 1] if i + 1 < len(steps) else 16
        key = root
        if style == "root5":
            key = root + [0, 0, 7, 12][i]
        elif i == len(steps) - 1 and rng.random() < 0.3:
            key = root + int(rng.choice([-2, 3, 5, 7]))  # a passing note into the next bar
        band.note("bass", _step_time(beats, step), _step_time(beats, end) - 0.03, key,
                  _velocity(energy, 0.95, cp, rng))


CHORDS = {"whole": [(0, 16)], "half": [(0, 8), (8, 8)], "push": [(0, 6), (6, 4), (10, 6)],
          "chug": [(s, 1) for s in range(0, 16, 2)], "stabs": [(4, 2), (12, 2)]}


def _chords_bar(band: _Band, beats: np.ndarray, style: str, voicing: list[int], song: Song,
                root: int, energy: float, program: int) -> None:
    rng, cp = band.rng, band.cp
    if style == "riff":  # the guitar doubles the riff as fifths
        for step, interval, length in song.riff:
            t0, t1 = _step_time(beats, step), _step_time(beats, min(step + length, 16)) - 0.02
            vel = _velocity(energy, 1.0, cp, rng)
            on = band.note("chords", t0, t1, root + interval, vel)
            band.note("chords", on + 0.004, t1, root + interval + 7, vel, jitter=False)
        return
    strum_s = rng.uniform(*cp.strum_ms) / 1e3
    for step, length in CHORDS[style]:
        t0, t1 = _step_time(beats, step), _step_time(beats, min(step + length, 16)) - 0.02
        vel = _velocity(energy, 0.8 if style == "chug" else 1.0, cp, rng)
        on = band.note("chords", t0, t1, voicing[0], vel)
        down = rng.random() < 0.7 or 16 <= program <= 23
        for j, key in enumerate(voicing[1:], 1):
            band.note("chords", on + (strum_s * j if down else -strum_s * j * 0.5), t1, key,
                      max(1, vel - 4 * j), jitter=False)


def _motif_bar(band: _Band, beats: np.ndarray, song: Song, motif: list[tuple[int, int, int]],
               half: int, energy: float, take: int) -> None:
    """One bar of the part's two-bar melody; later takes change a note here and there."""
    rng, cp = band.rng, band.cp
    penta = PENTATONIC[song.mode]
    for eighth, idx, length in motif:
        if eighth // 8 != half:
            continue
        if take > 0 and rng.random() < 0.2:
            idx = int(np.clip(idx + rng.choice([-1, 1]), 0, 9))
        key = song.root + 24 + 12 * (idx // 5) + penta[idx % 5]
        step = 2 * (eighth % 8)
        band.note("lead", _step_time(beats, step), _step_time(beats, min(step + 2 * length, 16)) - 0.03,
                  key, _velocity(energy, 0.9, cp, rng))


def _solo_bar(band: _Band, beats: np.ndarray, song: Song, energy: float, state: list[int]) -> None:
    """An improvised bar: runs of eighths or sixteenths, held notes bent up into pitch."""
    rng, cp = band.rng, band.cp
    if rng.random() < 0.15:
        return  # a breath
    penta = PENTATONIC[song.mode]
    step_len = int(rng.choice([1, 2, 2, 4]))
    step = int(rng.choice([0, 0, 2, 4]))
    while step < STEPS:
        length = step_len * int(rng.choice([1, 1, 1, 2, 3]))
        state[0] = int(np.clip(state[0] + rng.choice([-2, -1, -1, 1, 1, 2, 3]), 0, 14))
        idx = state[0]
        key = song.root + 24 + 12 * (idx // 5) + penta[idx % 5]
        t0, t1 = _step_time(beats, step), _step_time(beats, min(step + length, 16)) - 0.01
        if length >= 4 and rng.random() < 0.5:  # bend up a whole step into the note
            band.bend("lead", t0 - 0.005, -2.0)
            on = band.note("lead", t0, t1, key, _velocity(energy, 1.05, cp, rng))
            for j in range(1, 5):
                band.bend("lead", on + 0.025 * j, -2.0 + 0.5 * j)
        else:
            band.bend("lead", t0 - 0.005, 0.0)
            band.note("lead", t0, t1, key, _velocity(energy, 1.0, cp, rng))
        step += length + (step_len if rng.random() < 0.2 else 0)
    band.bend("lead", beats[4] - 0.005, 0.0)


def _final_hit(band: _Band, sec: Section, song: Song, beats: np.ndarray, program: int) -> None:
    """The last bar: a drum roll, then the big final chord on the next downbeat, ringing out."""
    rng, cp = band.rng, band.cp
    for step in range(STEPS):
        t = _step_time(beats, step)
        band.hit(t, 38 if step < 12 else FILL[step - 8], _velocity(0.5 + step / 32, 1.0, cp, rng))
    hit, end = beats[4], sec.end_s - 0.3
    band.hit(hit, 49, 120)
    band.hit(hit, 57, 110)
    band.hit(hit, 36, 120)
    for t in np.arange(hit + 0.5, end - 0.5, 0.11):  # a cymbal roll under the ringing chord
        band.hit(t, 51, _velocity(0.3, 1.0, cp, rng))
    root, voicing = _chord_keys(song, 0, program)
    band.note("bass", hit, end, root - 12, 115)
    for j, key in enumerate(voicing):
        band.note("chords", hit + 0.006 * j, end, key, 112, jitter=False)
    band.note("lead", hit, end, song.root + 36, 105)
    for j in range(int((end - hit) / 0.08)):  # vibrato on the held note
        band.bend("lead", hit + 0.3 + 0.08 * j, 0.25 * np.sin(j * 0.9))
    band.bend("lead", end, 0.0)
