"""Editor personas: how six kinds of editor cut a planned session into a track.

Each persona picks pieces of the raw on bar lines and returns edits.py Segments quantised
to the raw's samples, with crossfades.

Stated ranges with the default config on 5-minute raws (tests/test_synth.py checks them
over 20 seeds):
    radio    edit 180 to 240 s, no reorders, at most max_repeats chorus repeats, fade-out
    trimmer  keeps 40 to 70% of the raw, no loops, no reorders, long segments, no junk
    looper   at least 3 loops and 1 reorder, keeps at most 35%, short segments

ADAPTATION_PERSONAS are held out of pretraining, to measure how a base editor adapts to an
editor it never saw; each decides by one rule of its own, without randomness (only the
crossfade and fade lengths are drawn), and tests/test_personas.py checks each rule:
    highlights   each take's most intense whole parts (Section.energy) and its ending
    solo_cutter  every song whole but for its solos, and a jam's whole jam
    last_take    each song's last full take, in one piece
A corpus for pretraining takes its personas from pretraining_personas().
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..edits import Edit, Segment
from ..errors import UserError
from .compose import MUSIC_LABELS, Plan, Section
from .config import (HighlightsConfig, LastTakeConfig, LooperConfig, PersonaConfig, RadioConfig,
                     SoloCutterConfig, TrimmerConfig)

PERSONAS = ("radio", "trimmer", "looper", "highlights", "solo_cutter", "last_take")
ADAPTATION_PERSONAS = frozenset({"highlights", "solo_cutter", "last_take"})  # never pretrained on
PHRASE_BARS = 4  # editors drop a whole phrase around a mistake, not one bar


def pretraining_personas() -> tuple[str, ...]:
    """Every persona a base editor may be pretrained on: PERSONAS less ADAPTATION_PERSONAS."""
    return tuple(p for p in PERSONAS if p not in ADAPTATION_PERSONAS)


@dataclass
class Piece:
    """A stretch of raw time the editor keeps, before quantisation: [start_s, end_s)."""

    start_s: float
    end_s: float
    label: str
    song: int
    gain_db: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def choose_edit(plan: Plan, persona: str, config: PersonaConfig, rng: np.random.Generator,
                sr: int) -> Edit:
    """The segments a persona cuts from a planned session.

    Args:
        plan: the session, from compose.plan_session.
        persona: one of PERSONAS.
        config: every persona's settings; the persona reads the field named after it.
        rng: the persona's own random stream.
        sr: the raw's sample rate; every time in the result is a whole number of samples.

    Returns:
        Edit whose segments follow edits.py (crossfade centred on the seam before a segment).
    """
    if persona not in PERSONAS:
        raise UserError(f"unknown persona '{persona}'; choose one of {', '.join(PERSONAS)}")
    if not any(s.label in MUSIC_LABELS and s.n_bars >= 2 for s in plan.sections):
        raise UserError(f"the {plan.duration_s:.0f} s session holds no complete part to edit; "
                        "ask for more minutes (--minutes)")
    choose = {"radio": _radio, "trimmer": _trimmer, "looper": _looper, "highlights": _highlights,
              "solo_cutter": _solo_cutter, "last_take": _last_full_take}[persona]
    pieces, fade_in, fade_out, xfade = choose(plan, getattr(config, persona), rng)
    segments = _quantise(_merge(pieces), plan.duration_s, sr, xfade, fade_in, fade_out, rng)
    return Edit(segments, None, plan.duration_s)


# ---------------------------------------------------------------------------- shared helpers

def _clean_runs(plan: Plan, index: int) -> list[tuple[int, int]]:
    """Bar ranges [b0, b1) of a section that hold no mistake: a phrase with one is dropped."""
    sec = plan.sections[index]
    bad = set()
    for m in plan.mistakes:
        if m.section == index:
            bar = int(np.argmin(np.abs(sec.bars_s - m.start_s)))
            bad.add(bar // PHRASE_BARS)
    runs, start = [], None
    for phrase in range(0, (sec.n_bars + PHRASE_BARS - 1) // PHRASE_BARS):
        b0, b1 = phrase * PHRASE_BARS, min((phrase + 1) * PHRASE_BARS, sec.n_bars)
        if phrase in bad:
            if start is not None:
                runs.append((start, b0))
            start = None
        elif start is None:
            start = b0
        if phrase not in bad and b1 == sec.n_bars:
            runs.append((start, b1))
    return runs


def _section_pieces(plan: Plan, index: int, *, ring: bool) -> list[Piece]:
    """The clean bar runs of a section as pieces; with ring, an ending keeps its ring-out."""
    sec = plan.sections[index]
    pieces = [Piece(float(sec.bars_s[b0]), float(sec.bars_s[b1]), sec.label, sec.song)
              for b0, b1 in _clean_runs(plan, index)]
    if ring and sec.natural_end and pieces and pieces[-1].end_s == float(sec.bars_s[-1]):
        pieces[-1].end_s = float(sec.end_s)
    return pieces


def _bars_piece(sec: Section, b0: int, n: int) -> Piece:
    return Piece(float(sec.bars_s[b0]), float(sec.bars_s[b0 + n]), sec.label, sec.song)


def _trim_bars(piece: Piece, sec: Section, n_bars: int) -> Piece:
    """The first n_bars bars of a piece that starts on one of sec's bar lines."""
    b0 = int(np.argmin(np.abs(sec.bars_s - piece.start_s)))
    end = float(sec.bars_s[min(b0 + n_bars, sec.n_bars)])
    return Piece(piece.start_s, min(end, piece.end_s), piece.label, piece.song, piece.gain_db)


def _music(plan: Plan, song: int | None = None) -> list[int]:
    return [i for i, s in enumerate(plan.sections)
            if s.label in MUSIC_LABELS and s.n_bars >= 2 and (song is None or s.song == song)]


def _total(blocks) -> float:
    return float(sum(p.duration_s for _, ps in blocks for p in ps))


# ---------------------------------------------------------------------------- radio

def _radio(plan: Plan, cfg: RadioConfig, rng: np.random.Generator):
    """One song, its strongest chorus-like parts kept, cut to 3 to 4 minutes, faded out."""
    def strength(song: int) -> float:
        secs = [plan.sections[i] for i in _music(plan, song)]
        return sum(s.energy * (s.end_s - s.start_s) * (2.0 if s.label == "chorus" else 0.5) for s in secs)

    song = max(sorted({plan.sections[i].song for i in _music(plan)}), key=strength)
    blocks = [(i, ps) for i in _music(plan, song)
              if (ps := _section_pieces(plan, i, ring=False)) and plan.sections[i].label != "ending"]
    if not blocks:  # a song cut short after its intro: the editor takes what there is
        blocks = [(i, ps) for i in _music(plan, song) if (ps := _section_pieces(plan, i, ring=False))]
    target = float(rng.uniform(*cfg.duration_s))
    lo, hi = cfg.duration_s
    label = lambda i: plan.sections[i].label  # noqa: E731
    take = lambda i: plan.sections[i].take  # noqa: E731
    # What the radio editor gives up first when the song is too long.
    cuts = [lambda i: label(i) == "breakdown" and "drop",
            lambda i: label(i) == "solo" and "8",
            lambda i: label(i) in ("intro", "riff") and "4",
            lambda i: label(i) == "verse" and take(i) > 0 and "drop",
            lambda i: label(i) == "verse" and "8",
            lambda i: label(i) == "solo" and "drop",
            lambda i: label(i) == "chorus" and take(i) not in (0, _last_take(plan, blocks, "chorus")) and "drop"]
    for rule in cuts:
        for i, ps in list(blocks):
            if _total(blocks) <= target:
                break
            what = rule(i)
            if what == "drop" and len(blocks) > 1:
                blocks = [(j, q) for j, q in blocks if j != i]
            elif what in ("4", "8"):
                blocks = [(j, [_trim_bars(q[0], plan.sections[j], int(what))] if j == i else q)
                          for j, q in blocks]
    # Too short: the editor repeats the strongest chorus (a loop of raw already played).
    choruses = [(i, ps) for i, ps in blocks if label(i) == "chorus"] or blocks
    best = max(choruses, key=lambda b: (plan.sections[b[0]].energy, sum(p.duration_s for p in b[1])))
    for _ in range(cfg.max_repeats):
        if _total(blocks) >= lo:
            break
        blocks.append((best[0], [Piece(p.start_s, p.end_s, p.label, p.song) for p in best[1]]))
    pieces = [p for _, ps in blocks for p in ps]
    _cut_tail(pieces, plan, min(target, hi))
    return pieces, 0.0, float(rng.uniform(*cfg.fade_out_s)), cfg.crossfade_ms


def _last_take(plan: Plan, blocks, label: str) -> int:
    takes = [plan.sections[i].take for i, _ in blocks if plan.sections[i].label == label]
    return max(takes) if takes else -1


def _cut_tail(pieces: list[Piece], plan: Plan, target_s: float) -> None:
    """Shorten the end, one bar at a time, until the pieces last at most target_s."""
    total = sum(p.duration_s for p in pieces)
    while total > target_s and pieces:
        last = pieces[-1]
        sec = _section_at(plan, last.start_s)
        bars = sec.bars_s[(sec.bars_s > last.start_s + 1e-6) & (sec.bars_s < last.end_s - 1e-6)]
        if len(bars) == 0:
            if len(pieces) == 1:
                return
            pieces.pop()
        else:
            keep = bars[bars <= last.end_s - (total - target_s) + 1e-6]
            last.end_s = float(keep[-1] if len(keep) else bars[0])
        total = sum(p.duration_s for p in pieces)


def _section_at(plan: Plan, t: float) -> Section:
    for sec in plan.sections:
        if len(sec.bars_s) and sec.bars_s[0] - 1e-6 <= t < sec.bars_s[-1] - 1e-6:
            return sec
    raise ValueError(f"no bar at {t:.3f} s")


# ---------------------------------------------------------------------------- trimmer

def _trimmer(plan: Plan, cfg: TrimmerConfig, rng: np.random.Generator):
    """Every song without the junk, mistakes and count-ins; solos stay whole; 40 to 70%."""
    blocks = [(i, _section_pieces(plan, i, ring=True)) for i in _music(plan)]
    blocks = [(i, ps) for i, ps in blocks if ps]
    lo, hi = cfg.keep_ratio
    target = float(rng.uniform(lo + 0.25 * (hi - lo), hi - 0.1 * (hi - lo))) * plan.duration_s
    label = lambda i: plan.sections[i].label  # noqa: E731
    take = lambda i: plan.sections[i].take  # noqa: E731
    # What the trimmer gives up first when too much is left; solos are never touched.
    cuts = [lambda i: label(i) == "breakdown" and "drop",
            lambda i: label(i) == "verse" and take(i) > 0 and "8",
            lambda i: label(i) in ("intro", "riff") and take(i) == 0 and "4",
            lambda i: label(i) == "chorus" and take(i) >= 2 and "drop",
            lambda i: label(i) == "verse" and take(i) > 0 and "drop",
            lambda i: label(i) == "riff" and take(i) > 0 and "drop",
            lambda i: label(i) in ("verse", "chorus") and "8",
            lambda i: label(i) == "ending" and "tail"]
    for rule in cuts:
        for i, ps in list(blocks):
            if _total(blocks) <= target:
                break
            what = rule(i)
            if what == "drop":
                blocks = [(j, q) for j, q in blocks if j != i]
            elif what in ("4", "8"):
                blocks = [(j, [_trim_bars(q[0], plan.sections[j], int(what))] if j == i else q)
                          for j, q in blocks]
            elif what == "tail":  # only the last two bars and the ring-out of an ending
                sec = plan.sections[i]
                blocks = [(j, [Piece(max(q[-1].start_s, float(sec.bars_s[max(sec.n_bars - 2, 0)])),
                                     q[-1].end_s, q[-1].label, q[-1].song)] if j == i else q)
                          for j, q in blocks]
    # Still too much: whole parts go from the end of the session, solos last of all.
    for i, _ in sorted(blocks, key=lambda b: (label(b[0]) == "solo", -b[0])):
        if _total(blocks) <= hi * plan.duration_s or len(blocks) == 1:
            break
        blocks = [(j, q) for j, q in blocks if j != i]
    gains = {}
    for i, ps in blocks:
        song = plan.sections[i].song
        if song not in gains:
            gains[song] = float(np.round(rng.uniform(-cfg.song_gain_db, cfg.song_gain_db) * 2) / 2)
        for p in ps:
            p.gain_db = gains[song]
    pieces = [p for _, ps in blocks for p in ps]
    last_natural = pieces and any(pieces[-1].end_s == s.end_s and s.natural_end for s in plan.sections)
    fade_out = 0.0 if last_natural else float(rng.uniform(*cfg.fade_out_s))
    return pieces, 0.0, fade_out, cfg.crossfade_ms


# ---------------------------------------------------------------------------- looper

def _looper(plan: Plan, cfg: LooperConfig, rng: np.random.Generator):
    """A groove looped a few times, other sections cut to a few bars in a new order."""
    music = _music(plan)
    runs = {i: [r for r in _clean_runs(plan, i) if r[1] - r[0] >= min(cfg.loop_bars)] for i in music}
    music = [i for i in music if runs[i]]
    if not music:
        raise UserError(f"the {plan.duration_s:.0f} s session holds no clean groove to loop; "
                        "ask for more minutes (--minutes)")
    groove_pool = [i for i in music if plan.sections[i].label in ("riff", "verse", "intro")] or music
    n_grooves = min(int(rng.integers(cfg.grooves[0], cfg.grooves[1] + 1)), len(groove_pool))
    grooves = [int(i) for i in rng.choice(groove_pool, size=n_grooves, replace=False)]
    loops = []
    for i in grooves:
        sec = plan.sections[i]
        b0, b1 = runs[i][int(rng.integers(len(runs[i])))]
        n = int(max([b for b in cfg.loop_bars if b <= b1 - b0] or [min(cfg.loop_bars)]))
        start = b0 + int(rng.integers(0, (b1 - b0 - n) // 2 + 1)) * 2
        piece = _bars_piece(sec, start, n)
        reps = int(rng.integers(cfg.loop_repeats[0], cfg.loop_repeats[1] + 1))
        loops.append([Piece(piece.start_s, piece.end_s, piece.label, piece.song) for _ in range(reps)])
    others_pool = [i for i in music if i not in grooves]
    n_other = min(int(rng.integers(cfg.sections[0], cfg.sections[1] + 1)), len(others_pool))
    others = [int(i) for i in rng.choice(others_pool, size=n_other, replace=False)]
    excerpts = []
    for i in others:
        sec = plan.sections[i]
        b0, b1 = runs[i][int(rng.integers(len(runs[i])))]
        n = min(int(rng.integers(cfg.section_bars[0], cfg.section_bars[1] + 1)), b1 - b0)
        start = b0 + int(rng.integers(0, (b1 - b0 - n) // 2 + 1)) * 2
        excerpts.append(_bars_piece(sec, start, n))
    if len(excerpts) >= 2 and all(a.start_s < b.start_s for a, b in zip(excerpts, excerpts[1:])):
        excerpts.reverse()  # a loop builder always moves something
    half = (len(excerpts) + 1) // 2
    pieces = loops[0] + excerpts[:half] + (loops[1] if len(loops) > 1 else []) + excerpts[half:]
    pieces += [Piece(p.start_s, p.end_s, p.label, p.song) for p in loops[0][:2]]  # the groove returns
    return (pieces, float(rng.uniform(*cfg.fade_in_s)), float(rng.uniform(*cfg.fade_out_s)),
            cfg.crossfade_ms)


# ---------------------------------------------------------------------------- held out of pretraining

def _takes(plan: Plan) -> dict[tuple[int, int], list[int]]:
    """Indices of the music sections with a bar or more, per (song, song_take), in time order."""
    takes: dict[tuple[int, int], list[int]] = {}
    for i, sec in enumerate(plan.sections):
        if sec.label in MUSIC_LABELS and sec.n_bars >= 1:
            takes.setdefault((sec.song, sec.song_take), []).append(i)
    return takes


def _whole(sec: Section) -> bool:
    """The section was played to its end: an ending rang out, a part reached its last bar line.

    A part the recording cut off ends at the recording's end, after its last bar line.
    """
    return sec.natural_end or float(sec.bars_s[-1]) == sec.end_s


def _full(plan: Plan, take: list[int]) -> bool:
    """A take is full when the band played it to its ending and the chord rang out."""
    return any(plan.sections[i].label == "ending" and plan.sections[i].natural_end for i in take)


def _whole_piece(plan: Plan, index: int) -> Piece:
    """A section from its first bar line to its last, an ending with its ring-out."""
    sec = plan.sections[index]
    end = sec.end_s if sec.natural_end else float(sec.bars_s[-1])
    return Piece(float(sec.bars_s[0]), float(end), sec.label, sec.song)


def _finish(plan: Plan, pieces: list[Piece], crossfade_ms: tuple[float, float],
            fade_out_s: tuple[float, float], rng: np.random.Generator):
    """A rule's pieces as a persona's result: a fade-out only when the edit ends inside a part."""
    if not pieces:
        raise UserError(f"the {plan.duration_s:.0f} s session holds no part this editor keeps; "
                        "ask for more minutes (--minutes)")
    ends_rung_out = any(pieces[-1].end_s == s.end_s and s.natural_end for s in plan.sections)
    return pieces, 0.0, 0.0 if ends_rung_out else float(rng.uniform(*fade_out_s)), crossfade_ms


def _highlights(plan: Plan, cfg: HighlightsConfig, rng: np.random.Generator):
    """Each take of a song: its cfg.sections most intense whole parts and its ending, in order.

    Intensity is Section.energy, the level the band plays a part at. Ties go to the later
    part, where a song has built up to. Parts are kept whole, mistakes and all; a take the
    recording cut off has no ending to keep.
    """
    pieces = []
    for take in _takes(plan).values():
        parts = [i for i in take if plan.sections[i].label != "ending" and _whole(plan.sections[i])]
        best = sorted(parts, key=lambda i: (-plan.sections[i].energy, -i))[:cfg.sections]
        ending = [i for i in take if plan.sections[i].label == "ending" and plan.sections[i].natural_end]
        pieces += [_whole_piece(plan, i) for i in sorted(best + ending)]
    return _finish(plan, pieces, cfg.crossfade_ms, cfg.fade_out_s, rng)


def _solo_cutter(plan: Plan, cfg: SoloCutterConfig, rng: np.random.Generator):
    """Every take of every song whole, without its solos; a jam loses its whole jam.

    The jam of a jam song runs from its first solo to its last, a breakdown between them
    included. Everything else a take played stays, mistakes and all; count-ins, false
    starts and the junk between songs go.
    """
    pieces = []
    for (song, _), take in _takes(plan).items():
        solos = [i for i in take if plan.sections[i].label == "solo"]
        cut = set(range(solos[0], solos[-1] + 1)) if plan.songs[song].jam and solos else set(solos)
        pieces += [_whole_piece(plan, i) for i in take if i not in cut]
    return _finish(plan, pieces, cfg.crossfade_ms, cfg.fade_out_s, rng)


def _last_full_take(plan: Plan, cfg: LastTakeConfig, rng: np.random.Generator):
    """Each song's last full take from its first bar to its ending's ring-out, in one piece.

    A take is full when it reached its ending (see _full); a song the recording cut off
    before any full take keeps its last take as far as it went. Mistakes stay.
    """
    chosen: dict[int, list[int]] = {}
    for (song, _), take in sorted(_takes(plan).items()):
        if song not in chosen or _full(plan, take) or not _full(plan, chosen[song]):
            chosen[song] = take
    pieces = [_whole_piece(plan, i) for song in sorted(chosen) for i in chosen[song]]
    return _finish(plan, pieces, cfg.crossfade_ms, cfg.fade_out_s, rng)


# ---------------------------------------------------------------------------- segments

def _merge(pieces: list[Piece]) -> list[Piece]:
    """Join pieces that continue each other in the raw: no seam between them."""
    out: list[Piece] = []
    for p in pieces:
        if out and abs(out[-1].end_s - p.start_s) < 1e-9 and out[-1].gain_db == p.gain_db:
            out[-1] = Piece(out[-1].start_s, p.end_s, out[-1].label, out[-1].song, p.gain_db)
        else:
            out.append(Piece(p.start_s, p.end_s, p.label, p.song, p.gain_db))
    return out


def _quantise(pieces: list[Piece], raw_duration_s: float, sr: int, crossfade_ms: tuple[float, float],
              fade_in_s: float, fade_out_s: float, rng: np.random.Generator) -> list[Segment]:
    """Pieces to Segments on the raw's sample grid; crossfades an even number of samples."""
    raw_n = int(round(raw_duration_s * sr))
    starts = [int(round(p.start_s * sr)) for p in pieces]
    lengths = [int(round(p.end_s * sr)) - a for p, a in zip(pieces, starts)]
    segments = []
    for k, (p, a, n) in enumerate(zip(pieces, starts, lengths)):
        half = 0
        if k:
            half = int(round(rng.uniform(*crossfade_ms) / 1e3 * sr / 2))
            prev_end = starts[k - 1] + lengths[k - 1]
            half = max(0, min(half, a, raw_n - prev_end, n // 4, lengths[k - 1] // 4))
        segments.append(Segment(a / sr, n / sr, gain_db=p.gain_db, crossfade_s=2 * half / sr))
    total_n = sum(lengths)
    if segments and fade_in_s:
        segments[0].fade_in_s = min(int(round(fade_in_s * sr)), lengths[0] // 2) / sr
    if segments and fade_out_s:
        segments[-1].fade_out_s = min(int(round(fade_out_s * sr)), lengths[-1] // 2, total_n) / sr
    return segments


def edit_stats(edit: Edit, raw_duration_s: float) -> dict:
    """How an edit uses its raw: keep ratio, segment lengths, loops and reorders.

    A segment is a loop when it plays raw audio the edit already played; a reorder when
    it jumps back to raw audio not played yet.

    Returns:
        dict with keep_ratio, duration_s, n_segments, median_segment_s, loops, reorders.
    """
    played: list[tuple[float, float]] = []
    loops = reorders = 0
    furthest = -np.inf
    for seg in edit.segments:
        a, b = seg.raw_start_s, seg.raw_start_s + seg.duration_s
        overlap = sum(max(0.0, min(b, y) - max(a, x)) for x, y in played)
        if overlap > 1e-3:
            loops += 1
        elif a < furthest - 1e-3:
            reorders += 1
        played.append((a, b))
        furthest = max(furthest, b)
    kept = 0.0
    cover_end = -np.inf
    for a, b in sorted(played):
        if b > cover_end:
            kept += b - max(a, cover_end)
            cover_end = b
    lengths = [s.duration_s for s in edit.segments]
    return {"keep_ratio": kept / raw_duration_s, "duration_s": edit.duration_s,
            "n_segments": len(lengths), "median_segment_s": float(np.median(lengths)) if lengths else 0.0,
            "loops": loops, "reorders": reorders}
