"""Render an edit (a list of raw segments) to audio from the raw file's own samples.

Reads only the spans the segments play, block by block, at the raw's rate, channels and
(by default) bit depth; crossfades every cut, moves each cut to where its two sides join
best, applies gains, fades and effects, and writes WAV or FLAC atomically.

How a cut is rendered. A seam sits between two segments that are not continuous in the
raw (or whose gain or effect differ). Its crossfade (the segment's crossfade_s, or
DEFAULT_CROSSFADE_MS for a hard cut) is centred on the seam and borrows half its length of
raw audio from each side, as editorbot.edits describes. Its gain curves keep the power
constant for the correlation r (clipped to [0, 1]) of the two sides over the crossfade:
with u = t, v = 1 - t, fade_in = u / d and fade_out = v / d, d = sqrt(u^2 + v^2 + 2ruv).
Unrelated audio (r = 0) gets an equal-power crossfade; audio that matches (r = 1, e.g.
where seam search found the same waveform, or a gain change on continuous raw audio) gets
a linear one, so the join neither dips nor bumps.
Seam search rolls the cut: the seam moves by the same offset in the edit and in both raw
positions (the outgoing segment grows by what the incoming one loses), so the edit keeps
its length and every other sample its place.

Level. A render never writes a clipped sample unless asked (allow_clipping): a first pass
measures the peak the segments' gains give (and the integrated loudness when the edit names
a loudness_lufs), then the edit is written with one gain for the whole of it, so the
segments keep their levels relative to each other: the gain that brings the edit to its
loudness. When that gain would put a peak past full scale:
- an edit with a loudness_lufs (the editor's, from a checkpoint's levels) keeps the gain and
  a look-ahead true-peak limiter (editorbot.limiter) holds the true peak at
  TRUE_PEAK_CEILING_DBTP, as an editor's limiter does; up to MAKE_UP_PASSES more passes
  measure what the limiting cost in loudness and the gain makes it up. The limiter takes at most
  MAX_LIMIT_DB off a peak: where more would be needed, the whole edit is lowered by the rest.
- an edit without one is lowered as a whole, to put its peak at PEAK_CEILING_DBFS.
Float outputs keep values above 1.0 and count them. RenderReport says what was done; its
`level_json` goes into the segment list as "render".

A level decided once can be used again (render's `level`): `editorbot review` renders each
version of an edit with the gain and limiter of the version before, in one pass, and
measures what it wrote; when that lands more than REUSED_LEVEL_TOLERANCE_LU from the
earlier loudness, or the limiter would take more than MAX_LIMIT_DB, it renders again and
decides anew.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from .audio import AudioInfo, iter_blocks, probe, write_blocks
from .edits import Edit, check_segment, segment_samples
from .effects import EFFECTS, effect_params
from .errors import UserError, log
from .limiter import Limiter, TruePeakMeter
from .loudness import LoudnessMeter
from .seams import (LOUDNESS_WINDOW_MS, RawClickStats, SeamReport, raw_click_stats, rms_db,
                    seam_click, seam_window)

DEFAULT_CROSSFADE_MS = 5.0   # crossfade at a hard cut (crossfade_s == 0)
SEAM_SEARCH_MS = 20.0        # cuts move within +- this to where the two sides join best
MATCH_WINDOW_MS = (2.0, 20.0)  # seam-search comparison window: the crossfade, within these
MOVE_PENALTY = 0.1           # cost added per full search radius moved (prefers small moves)
QUIET_DB = 20.0              # a join this far below the loudest candidate counts as fully quiet
END_TOLERANCE_S = 0.025      # segments may run this far past the raw's end (pointer rounding)
READ_BLOCK_S = 10.0          # seconds of raw read per block
PEAK_CEILING_DBFS = -0.1     # a render that would clip is lowered to this sample peak
TRUE_PEAK_CEILING_DBTP = -1.0  # or, when it has a loudness to reach, limited to this true peak
MAX_LIMIT_DB = 10.0          # the most the limiter takes off a peak; the whole edit gives the rest
MAKE_UP_PASSES = 2           # passes that measure what limiting cost in loudness, to make it up
LOUDNESS_TOLERANCE_LU = 0.2  # a render this close to its loudness_lufs gets no gain for it
REUSED_LEVEL_TOLERANCE_LU = 0.5  # a level used again must land this close to where it did
OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
# Sample formats an output keeps from its raw when it can hold them; a raw in any other
# (MP3, Vorbis, Opus, ADPCM, u-law...) is written as PCM_24, or Vorbis in an .ogg.
LINEAR_SUBTYPES = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


# ------------------------------------------------------------------------------ plan

@dataclass
class _Piece:
    """One segment in samples of the raw's rate, with its crossfades and envelope."""

    index: int          # segment index in the edit
    raw_start: int      # raw sample played at edit_start; -1: not in the raw (silence)
    edit_start: int
    length: int
    gain: float         # linear
    fade_in: int
    fade_out: int
    effect: dict | None
    xf_in: int = 0      # crossfade (samples, even) centred on edit_start
    xf_out: int = 0     # crossfade centred on edit_start + length
    corr_in: float = 0.0  # correlation of the two sides over each crossfade, in [0, 1]
    corr_out: float = 0.0

    @property
    def in_raw(self) -> bool:
        return self.raw_start >= 0

    @property
    def span_start(self) -> int:
        """First edit sample this piece sounds in (its crossfade-in starts there)."""
        return self.edit_start - self.xf_in // 2

    @property
    def span_length(self) -> int:
        return self.xf_in // 2 + self.length + self.xf_out // 2


@dataclass
class _Seam:
    left: int           # index into pieces of the outgoing piece
    crossfade: int      # samples, even
    search: bool        # whether the cut may move (both sides in the raw, not continuous)
    corr: float = 0.0   # correlation of the two sides over the crossfade, in [0, 1]
    moved: int = 0      # samples moved by snapping and search


def output_subtype(info: AudioInfo, out_path: Path, subtype: str | None = None) -> str:
    """The sample format of a render: the output file's format decides, not the raw's.

    `subtype` when given (and the format holds it); else the raw's own when it is linear
    PCM or float and the output format holds it; else VORBIS for .ogg and PCM_24 for .wav
    and .flac (24-bit keeps the quality of compressed and float raws).
    """
    fmt = OUTPUT_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise UserError(f"{out_path}: render writes .wav, .flac or .ogg; change the output name")
    if subtype is not None:
        if not sf.check_format(fmt, subtype):
            raise UserError(f"{out_path}: {fmt} cannot hold subtype {subtype!r}; try PCM_16 or "
                            "PCM_24")
        return subtype
    if fmt == "OGG":
        return "VORBIS"
    if info.subtype in LINEAR_SUBTYPES and sf.check_format(fmt, info.subtype):
        return info.subtype
    return "PCM_24"


def _read_padded(info: AudioInfo, start: int, frames: int,
                 block_frames: int) -> Iterator[np.ndarray]:
    """Raw samples [start, start + frames) in blocks, zeros outside the file."""
    if start < 0:
        n = min(-start, frames)
        yield np.zeros((n, info.channels), np.float32)
        start, frames = start + n, frames - n
    inside = max(0, min(frames, info.frames - start))
    got = 0
    if inside:
        for block in iter_blocks(info.path, start=start, frames=inside, info=info,
                                 block_frames=block_frames):
            got += len(block)
            yield block
    if frames > got:  # past the end, or a compressed file a little shorter than its header
        yield np.zeros((frames - got, info.channels), np.float32)


def _read_mono(info: AudioInfo, start: int, frames: int) -> np.ndarray:
    x = np.concatenate(list(_read_padded(info, start, frames, max(frames, 1))))
    return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]


def join_cost(x_out: np.ndarray, x_in: np.ndarray, window: int) -> np.ndarray:
    """How badly two sides join at each candidate offset of a rolled cut (lower is better).

    Candidate i compares x_out[i : i + window] (what the outgoing side would play on past
    the cut) with x_in[i : i + window] (what the incoming side plays around it): the cost
    is half (1 - their normalised cross-correlation) plus half (1 - quietness), where
    quietness is how far their joint RMS lies below the loudest candidate's, 0 at 0 dB to
    1 at QUIET_DB or more below (a few dB of random level variation barely count, a real
    gap between notes does). Silence on both sides joins perfectly.

    Args:
        x_out, x_in : np.ndarray [shape=(n_candidates + window - 1,)], mono
    Returns:
        cost : np.ndarray [shape=(n_candidates,)]
    """
    def sums(v: np.ndarray) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(v, dtype=np.float64)])
        return c[window:] - c[:-window]

    xy = sums(x_out * x_in)
    xx = sums(x_out * x_out)
    yy = sums(x_in * x_in)
    energy = np.maximum(xx * yy, 0.0)
    quiet = energy <= 1e-24
    ncc = np.where(quiet, 1.0, xy / np.sqrt(np.where(quiet, 1.0, energy)))
    ms = np.maximum(xx + yy, 0.0)
    below_db = 10 * np.log10(max(ms.max(), 1e-30) / np.maximum(ms, 1e-30))
    quietness = np.clip(below_db / QUIET_DB, 0.0, 1.0)
    return 0.5 * (1 - ncc) + 0.5 * (1 - quietness)


def _plan(edit: Edit, info: AudioInfo, *, seam_search_ms: float, beats_s,
          crossfade_ms: float) -> tuple[list[_Piece], list[_Seam]]:
    """Segments -> pieces in samples, seams with crossfades, cuts moved by snap and search."""
    sr = info.sr
    where = str(info.path)
    for i, seg in enumerate(edit.segments):
        check_segment(seg, i, where)
        raw_end_s = seg.raw_end_s
        if seg.effect is not None:
            params = effect_params(seg.effect, where=f"{where}: segment {i}")
            whole = EFFECTS[seg.effect["name"]].whole
            if whole is not None and seg.raw_start_s is not None:  # a time stretch
                raw_end_s = seg.raw_start_s + seg.duration_s * whole(params)
        if seg.raw_start_s is not None and raw_end_s > info.duration_s + END_TOLERANCE_S:
            raise UserError(
                f"{where}: segment {i} plays raw {seg.raw_start_s:.3f}-{raw_end_s:.3f} s, "
                f"past the raw's end at {info.duration_s:.3f} s; fix the segment list or "
                "check that it was made for this recording")
    if edit.raw_duration_s and abs(edit.raw_duration_s - info.duration_s) > 0.1:
        log.warning("%s: the segments were made for a %.2f s raw, this one is %.2f s; check that "
                    "they belong to this recording", where, edit.raw_duration_s, info.duration_s)
    edit_starts, lengths, raw_starts = segment_samples(edit, sr)
    pieces = []
    for i, seg in enumerate(edit.segments):
        n = int(lengths[i])
        if n <= 0:
            continue  # shorter than one sample at this rate
        pieces.append(_Piece(i, int(raw_starts[i]), int(edit_starts[i]), n,
                             float(10 ** (seg.gain_db / 20)),
                             min(int(round(seg.fade_in_s * sr)), n),
                             min(int(round(seg.fade_out_s * sr)), n), seg.effect))
    if not pieces:
        raise UserError(f"{where}: the edit has no segments to render; check the segment list")

    default_xf = 2 * int(round(crossfade_ms * sr / 2000))
    seams = []
    for k in range(1, len(pieces)):
        a, b = pieces[k - 1], pieces[k]
        if not a.in_raw and not b.in_raw:
            continue
        contiguous = a.in_raw and b.in_raw and b.raw_start == a.raw_start + a.length
        if contiguous and a.effect == b.effect and a.gain == b.gain:
            continue  # the raw simply plays on
        asked = edit.segments[b.index].crossfade_s * sr
        xf = 2 * int(round(asked / 2)) if asked > 0 else default_xf
        xf = min(xf, 2 * (min(a.length, b.length) // 2))
        seams.append(_Seam(k - 1, xf, search=a.in_raw and b.in_raw and not contiguous,
                           corr=1.0 if contiguous else 0.0))
        a.xf_out = b.xf_in = xf

    radius = int(round(seam_search_ms * sr / 1000))
    beats = None if beats_s is None or len(beats_s) < 2 else np.sort(np.asarray(beats_s, float))
    for seam in seams:
        a, b = pieces[seam.left], pieces[seam.left + 1]
        if seam.search and (radius > 0 or beats is not None):
            _move_cut(seam, pieces, info, radius, beats)
        if seam.search and seam.crossfade:
            half, n = seam.crossfade // 2, seam.crossfade
            seam.corr = _correlation(_read_mono(info, a.raw_start + a.length - half, n),
                                     _read_mono(info, b.raw_start - half, n))
        a.corr_out = b.corr_in = seam.corr
    return pieces, seams


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Normalised correlation of two equal-length signals, clipped to [0, 1] (1: silence)."""
    energy = float(np.dot(x, x)) * float(np.dot(y, y))
    if energy <= 1e-24:
        return 1.0
    return float(np.clip(np.dot(x, y) / np.sqrt(energy), 0.0, 1.0))


def _move_cut(seam: _Seam, pieces: list[_Piece], info: AudioInfo, radius: int,
              beats: np.ndarray | None) -> None:
    """Roll one cut: snap its incoming raw point to a beat, then search +-radius."""
    a, b = pieces[seam.left], pieces[seam.left + 1]
    half = seam.crossfade // 2
    a_end = a.raw_start + a.length
    lo = max(-(a.length - a.xf_in // 2 - half), half - b.raw_start)
    hi = min(b.length - half - b.xf_out // 2, info.frames - half - a_end)
    if lo > hi:
        return
    center = 0
    if beats is not None:
        t = b.raw_start / info.sr
        j = int(np.clip(np.searchsorted(beats, t), 1, len(beats) - 1))
        nearest = beats[j] if abs(beats[j] - t) < abs(beats[j - 1] - t) else beats[j - 1]
        if abs(nearest - t) <= 0.5 * float(np.median(np.diff(beats))):
            center = int(np.clip(round(nearest * info.sr) - b.raw_start, lo, hi))
    lo, hi = max(lo, center - radius), min(hi, center + radius)
    delta = center
    if hi > lo:
        window = int(np.clip(seam.crossfade, *(np.array(MATCH_WINDOW_MS) * info.sr / 1000)))
        w0 = window // 2
        x_out = _read_mono(info, a_end + lo - w0, hi - lo + window)
        x_in = _read_mono(info, b.raw_start + lo - w0, hi - lo + window)
        offsets = np.arange(lo, hi + 1)
        cost = join_cost(x_out, x_in, window)
        cost += MOVE_PENALTY * np.abs(offsets - center) / max(radius, 1)  # prefer small moves
        delta = int(offsets[int(np.argmin(cost))])
    a.length += delta
    b.raw_start += delta
    b.edit_start += delta
    b.length -= delta
    seam.moved = delta


# ---------------------------------------------------------------------------- render

def crossfade_gains(t: np.ndarray, corr: float) -> tuple[np.ndarray, np.ndarray]:
    """(fade_in, fade_out) gains at fraction t in [0, 1] of a crossfade between two sides
    whose correlation is `corr` in [0, 1]: fade_in^2 + fade_out^2 + 2 corr fade_in fade_out = 1.
    """
    u = np.clip(t, 0.0, 1.0)
    v = 1.0 - u
    d = np.sqrt(u * u + v * v + 2.0 * corr * u * v)
    return u / d, v / d


def fade_curve(t: np.ndarray) -> np.ndarray:
    """Segment fade-in gain at fraction t in [0, 1] of the fade (a fade-out is its mirror)."""
    return np.sin(0.5 * np.pi * np.clip(t, 0.0, 1.0))


def _apply_envelope(block: np.ndarray, piece: _Piece, offset: int) -> None:
    """Multiply `block`, samples offset.. of the piece's span, by its gain curve, in place.

    The curve: crossfade in and out (crossfade_gains), fade in over the piece's first
    fade_in samples and out over its last fade_out (fade_curve; silent beyond them), gain.
    Only the samples inside a curve are computed.
    """
    n = len(block)
    span, lead = piece.span_length, piece.xf_in // 2
    end = lead + piece.length  # where the piece proper ends in its span

    def region(lo: int, hi: int, gains: Callable[[np.ndarray], np.ndarray]) -> None:
        a, b = max(lo, offset), min(hi, offset + n)
        if b > a:
            pos = np.arange(a, b, dtype=np.float64)
            block[a - offset:b - offset] *= gains(pos).astype(np.float32)[:, None]

    if piece.xf_in:
        region(0, piece.xf_in,
               lambda p: crossfade_gains((p + 0.5) / piece.xf_in, piece.corr_in)[0])
    if piece.xf_out:
        region(span - piece.xf_out, span, lambda p: crossfade_gains(
            (p - (span - piece.xf_out) + 0.5) / piece.xf_out, piece.corr_out)[1])
    if piece.fade_in:
        region(0, lead, np.zeros_like)
        region(lead, lead + piece.fade_in, lambda p: fade_curve((p - lead + 0.5) / piece.fade_in))
    if piece.fade_out:
        region(end - piece.fade_out, end, lambda p: fade_curve((end - p - 0.5) / piece.fade_out))
        region(end, span, np.zeros_like)
    if piece.gain != 1.0:
        block *= np.float32(piece.gain)


def _piece_blocks(info: AudioInfo, piece: _Piece,
                  block_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(edit sample, block) of one piece's span: raw samples, effect, envelope."""
    span = piece.span_length
    if piece.in_raw:
        blocks = _read_padded(info, piece.raw_start - piece.xf_in // 2, span, block_frames)
    else:
        blocks = (np.zeros((min(block_frames, span - i), info.channels), np.float32)
                  for i in range(0, span, block_frames))
    process = whole = None
    if piece.effect is not None:
        params = effect_params(piece.effect, where=f"{info.path}: segment {piece.index}")
        process = EFFECTS[piece.effect["name"]].make(info.sr, params)
        whole = EFFECTS[piece.effect["name"]].whole
        if whole is not None:  # the effect takes the span in one block (see EffectSpec)
            n_in = max(1, int(round(span * whole(params))))
            blocks = [np.concatenate(list(_read_padded(info, piece.raw_start - piece.xf_in // 2,
                                                       n_in, n_in)))
                      if piece.in_raw else np.zeros((n_in, info.channels), np.float32)]
    done = 0
    for block in blocks:
        if process is not None:
            block = np.asarray(process(block), np.float32)
        if whole is not None:
            block = np.concatenate([block[:span], np.zeros((max(0, span - len(block)),
                                                            info.channels), np.float32)])
        _apply_envelope(block, piece, done)
        yield piece.span_start + done, block
        done += len(block)


def _mix(info: AudioInfo, pieces: list[_Piece], total: int,
         block_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """Overlap-add the pieces; yield (edit sample, block) in order, each sample once."""
    buf = np.zeros((0, info.channels), np.float32)
    buf_start = 0
    for k, piece in enumerate(pieces):
        next_start = pieces[k + 1].span_start if k + 1 < len(pieces) else total
        for pos, block in _piece_blocks(info, piece, block_frames):
            end = pos + len(block)
            if len(buf) == 0 and pos == buf_start:
                buf = block
            else:
                if end - buf_start > len(buf):
                    grown = np.zeros((end - buf_start, info.channels), np.float32)
                    grown[:len(buf)] = buf
                    buf = grown
                buf[pos - buf_start:end - buf_start] += block
            ready = min(end, next_start) - buf_start
            if ready > 0:
                yield buf_start, buf[:ready]
                buf, buf_start = buf[ready:], buf_start + ready
    if len(buf):
        yield buf_start, buf


class _SeamTaps:
    """Collects, from the rendered stream, what each seam's measures need."""

    def __init__(self, seams: list[_Seam], pieces: list[_Piece], sr: int, total: int):
        loud = int(round(LOUDNESS_WINDOW_MS * sr / 1000))
        self.taps: list[tuple[int, int, int, str]] = []  # (start, end, seam, kind), edit samples
        for j, seam in enumerate(seams):
            at = pieces[seam.left + 1].edit_start
            half = seam.crossfade // 2
            w0, w1 = seam_window(at, sr)
            self.taps += [(w0, w1, j, "click"),
                          (max(0, at - half - loud), max(0, at - half), j, "before"),
                          (min(total, at + half), min(total, at + half + loud), j, "after")]
        self.taps.sort()
        self.click: dict[int, np.ndarray] = {}  # seam -> the samples seam_click needs
        self.sq: dict[tuple[int, str], list] = {}  # (seam, kind) -> [sum of squares, count]
        self.first = 0

    def see(self, pos: int, block: np.ndarray) -> None:
        end = pos + len(block)
        while self.first < len(self.taps) and self.taps[self.first][1] <= pos:
            self.first += 1
        for t0, t1, j, kind in self.taps[self.first:]:
            if t0 >= end:
                break
            a, b = max(t0, pos), min(t1, end)
            if b <= a:
                continue
            part = block[a - pos:b - pos]
            if kind == "click":
                if j not in self.click:
                    self.click[j] = np.zeros((t1 - t0, block.shape[1]), np.float32)
                self.click[j][a - t0:b - t0] = part
            else:
                acc = self.sq.setdefault((j, kind), [0.0, 0])
                acc[0] += float(np.square(part, dtype=np.float64).sum())
                acc[1] += part.size

    def loudness_step_db(self, j: int) -> float:
        def ms(kind):
            s, n = self.sq.get((j, kind), (0.0, 0))
            return s / n if n else 0.0
        return rms_db(ms("after")) - rms_db(ms("before"))


@dataclass
class RenderReport:
    """What a render did.

    edit: the edit as rendered (cuts where seam search and snapping put them), in seconds
        at the raw's sample grid; export this one so that timelines match the audio.
    seams: one SeamReport per seam, in edit order. raw_stats: the raw's own click
        percentiles the seams are judged against.
    level_method: "none" (written at the level the segments' gains give), "gain" (one gain
        on the whole edit, gain_db, for its loudness_lufs and/or to keep it from clipping),
        "limiter" (gain_db for its loudness_lufs, the peaks limited to
        TRUE_PEAK_CEILING_DBTP) or "clipping allowed" (written at the level asked,
        clipped_samples cut at full scale).
    gain_db: the gain applied to the whole edit. gain_reduction_db: how much of the gain
        the edit asked for (0 dB, or what brings it to its loudness_lufs) was taken off so
        that no sample passes full scale (with the limiter: what MAX_LIMIT_DB left over).
    limit_db: the most the limiter took off a peak (dB; 0 without it).
    unreduced_peak_dbfs: the peak at the gain asked for; peak_dbfs: the peak written.
    clipped_samples: samples cut at full scale (integer outputs with allow_clipping only).
    over_full_scale_samples: float outputs, which keep them: samples beyond +-1.0.
    loudness_lufs, target_loudness_lufs: the edit's integrated loudness as written, and
        the edit's loudness_lufs; None when the edit names no loudness (not measured).
    level_reused: the gain and limiting were an earlier render's (render's `level`), not
        measured again; unreduced_peak_dbfs is then the peak into the limiter.
    """

    out_path: Path | None
    sr: int
    channels: int
    subtype: str | None
    frames: int
    edit: Edit
    seams: list[SeamReport] = field(default_factory=list)
    raw_stats: RawClickStats | None = None
    peak_dbfs: float = float("-inf")
    clipped_samples: int = 0
    seconds: float = 0.0
    level_method: str = "none"
    gain_db: float = 0.0
    gain_reduction_db: float = 0.0
    limit_db: float = 0.0
    unreduced_peak_dbfs: float = float("-inf")
    over_full_scale_samples: int = 0
    loudness_lufs: float | None = None
    target_loudness_lufs: float | None = None
    level_reused: bool = False

    @property
    def duration_s(self) -> float:
        return self.frames / self.sr

    def level_json(self) -> dict:
        """What the render did to the edit's level, as the segment list records it ("render")."""
        def db(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 2)
        return {"method": self.level_method, "gain_db": db(self.gain_db),
                "gain_reduction_db": db(self.gain_reduction_db), "limit_db": db(self.limit_db),
                "unreduced_peak_dbfs": db(self.unreduced_peak_dbfs),
                "peak_dbfs": db(self.peak_dbfs), "clipped_samples": self.clipped_samples,
                "over_full_scale_samples": self.over_full_scale_samples,
                "loudness_lufs": db(self.loudness_lufs),
                "target_loudness_lufs": db(self.target_loudness_lufs),
                "level_reused": self.level_reused}

    def level_line(self) -> str:
        """One line: what the render did to the edit's level."""
        loud = ""
        if self.target_loudness_lufs is not None:
            loud = (f"; loudness {self.loudness_lufs:.1f} LUFS (the edit asks "
                    f"{self.target_loudness_lufs:.1f})")
        if self.level_method == "clipping allowed":
            return (f"level: clipping allowed: {self.clipped_samples} samples clipped at full "
                    f"scale (peak {self.unreduced_peak_dbfs:+.1f} dBFS before clipping){loud}")
        if self.over_full_scale_samples:
            return (f"level: {self.over_full_scale_samples} samples exceed 1.0 (peak "
                    f"{self.peak_dbfs:+.1f} dBFS), kept in the float output{loud}")
        if self.level_method == "limiter":
            rest = ""
            if self.gain_reduction_db > 0:
                rest = (f"; the limiter stops at {MAX_LIMIT_DB:.0f} dB, so the whole edit was "
                        f"lowered by {self.gain_reduction_db:.1f} dB")
            return (f"level: {self.gain_db:+.1f} dB on the whole edit for its loudness, its "
                    f"peaks limited by {self.limit_db:.1f} dB (true peak at most "
                    f"{TRUE_PEAK_CEILING_DBTP:.1f} dBTP){rest}, peak {self.peak_dbfs:.1f} dBFS, "
                    f"0 samples clipped{loud}")
        if self.gain_reduction_db > 0:
            return (f"level: the gains would clip (peak {self.unreduced_peak_dbfs:+.1f} dBFS): "
                    f"the whole edit lowered by {self.gain_reduction_db:.1f} dB (one gain, "
                    f"segments keep their relative levels), peak {self.peak_dbfs:.1f} dBFS, "
                    f"0 samples clipped{loud}")
        if self.level_method == "gain":
            return (f"level: one gain of {self.gain_db:+.1f} dB on the whole edit, peak "
                    f"{self.peak_dbfs:.1f} dBFS{loud}")
        return f"level: as the segments' gains make it, peak {self.peak_dbfs:.1f} dBFS{loud}"

    def lines(self) -> list[str]:
        """The seam table, a summary, the level line and the output, for the command line."""
        from .seams import summarize
        out = [s.line() for s in self.seams]
        out.append(summarize(self.seams, self.raw_stats))
        out.append(self.level_line())
        out.append(f"{self.duration_s:.2f} s, {self.sr} Hz, {self.channels} ch, "
                   f"{self.subtype or 'float32'}; peak {self.peak_dbfs:.1f} dBFS"
                   f"; rendered in {self.seconds:.2f} s")
        return out


def _rendered_edit(edit: Edit, pieces: list[_Piece], info: AudioInfo) -> Edit:
    sr = info.sr
    segs = []
    for p in pieces:
        seg = edit.segments[p.index]
        segs.append(replace(seg, raw_start_s=p.raw_start / sr if p.in_raw else None,
                            duration_s=p.length / sr))
    return Edit(segs, edit.raw_path or str(info.path), info.duration_s, edit.loudness_lufs)


def _dbfs(peak: float) -> float:
    return 20.0 * float(np.log10(peak)) if peak > 0 else float("-inf")


def _reusable(level: dict | None, edit: Edit,
              unlimited: bool) -> tuple[float, float] | None:
    """(gain_db, gain_reduction_db) of an earlier render's level_json, when it can
    serve this render: it limited the peaks for the same loudness_lufs and says where it
    landed, and this output is one that gets limited (not float, not allowed to clip)."""
    if level is None or unlimited or edit.loudness_lufs is None \
            or level.get("method") != "limiter":
        return None
    try:
        gain, target = float(level["gain_db"]), float(level["target_loudness_lufs"])
        reduction = float(level.get("gain_reduction_db") or 0.0)
        landed = float(level["loudness_lufs"])
    except (KeyError, TypeError, ValueError):  # a record written by hand: measure
        return None
    if not all(np.isfinite([gain, target, reduction, landed])) \
            or abs(target - edit.loudness_lufs) > 0.005:
        return None
    return gain, reduction


def _level_held(report: RenderReport, level: dict) -> bool:
    """Whether a render that used `level` again landed where that level did."""
    return (report.limit_db <= MAX_LIMIT_DB + 0.05 and report.loudness_lufs is not None
            and abs(report.loudness_lufs - float(level["loudness_lufs"]))
            <= REUSED_LEVEL_TOLERANCE_LU)


class _Stream:
    """A planned render: iterate it for the output blocks; then `report` says what it did.

    Planning (checks, crossfades, seam moves) happens on construction, so a bad edit fails
    before any output file is opened. Iterating first measures the edit where its level
    needs it (see the module docstring), then yields it at the gain that was decided.

    Args:
        floating: the output holds values beyond +-1.0 (float subtypes, render_array).
        allow_clipping: integer outputs: write at the level asked and clip at full scale.
    """

    def __init__(self, raw_path, edit: Edit, *, seam_search_ms: float, beats_s,
                 crossfade_ms: float, floating: bool, allow_clipping: bool, progress: bool,
                 out_path: Path | None, subtype: str | None, level: dict | None = None):
        self.started = time.perf_counter()
        self.info = probe(raw_path)
        self.edit = edit
        self.pieces, self.seams = _plan(edit, self.info, seam_search_ms=seam_search_ms,
                                        beats_s=beats_s, crossfade_ms=crossfade_ms)
        self.total = self.pieces[-1].edit_start + self.pieces[-1].length
        self.floating, self.allow_clipping = floating, allow_clipping
        self.progress = progress
        self.out_path, self.subtype = out_path, subtype
        self.reuse = _reusable(level, edit, floating or allow_clipping)
        self.limiter_input_peak = 0.0
        self.report: RenderReport | None = None

    def _blocks(self, gain: float, limiter: Limiter | None, meters: list,
                bar) -> Iterator[tuple[int, np.ndarray]]:
        """(edit sample, block) of the whole edit times `gain`, through `limiter` when one is
        given, each block fed to every one of `meters` (objects with add(block)) and `bar`."""
        info = self.info
        end = 0

        def fed(block: np.ndarray) -> np.ndarray:
            for meter in meters:
                meter.add(block)
            return block

        for pos, block in _mix(info, self.pieces, self.total, int(READ_BLOCK_S * info.sr)):
            if bar is not None:
                bar.update(min(len(block) / info.sr, bar.total - bar.n))
            if gain != 1.0:
                block *= np.float32(gain)
            if limiter is not None:
                if self.reuse is not None:  # its peak was not measured before: see __iter__
                    self.limiter_input_peak = max(self.limiter_input_peak,
                                                  float(np.abs(block).max(initial=0.0)))
                block, pos = limiter.process(block), end  # it runs behind its input
            if len(block):
                yield pos, fed(block)
            end = pos + len(block)
        if limiter is not None:
            block = limiter.finish()
            if len(block):
                yield end, fed(block)

    def _measure(self, gain_db: float, limiter: Limiter | None, bar, *,
                 true_peak: bool = False) -> tuple[float, float | None, float | None]:
        """A measuring pass at `gain_db` (through `limiter` when given): the sample peak, the
        true peak when asked for, and the loudness (LUFS) when the edit names one."""
        if bar is not None and bar.n > 0:  # a pass more than the bar was set up for
            bar.total += self.total / self.info.sr
            bar.refresh()
        meter = (LoudnessMeter(self.info.sr, self.info.channels)
                 if self.edit.loudness_lufs is not None else None)
        tp = TruePeakMeter(self.info.channels) if true_peak else None
        peak = 0.0
        for _, block in self._blocks(float(10.0 ** (gain_db / 20.0)), limiter,
                                     [m for m in (meter, tp) if m is not None], bar):
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
        return (peak, None if tp is None else tp.finish(),
                None if meter is None else meter.integrated_lufs())

    def _limiter(self) -> Limiter:
        return Limiter(self.info.sr, self.info.channels, ceiling_dbtp=TRUE_PEAK_CEILING_DBTP)

    def _level(self, bar) -> tuple[float, float, bool, float, float | None]:
        """The measuring passes and what they decide: (gain_db for the whole edit, how much
        of the gain asked for was taken off it, whether to limit, the peak (dBFS) at the
        gain asked for, the loudness (LUFS) at unit gain when the edit names one)."""
        target = self.edit.loudness_lufs
        protect = not (self.floating or self.allow_clipping)
        peak, true_peak, loudness = self._measure(0.0, None, bar,
                                                  true_peak=protect and target is not None)
        asked = 0.0
        if target is not None and loudness is not None and np.isfinite(loudness):
            asked = target - loudness
            if abs(asked) < LOUDNESS_TOLERANCE_LU:
                asked = 0.0
        unreduced = _dbfs(peak) + asked
        if not protect or unreduced <= 0.0:  # allowed to pass full scale, or nothing does
            return asked, 0.0, False, unreduced, loudness
        if target is None:  # no loudness to reach: one gain puts the peak at the ceiling
            gain = PEAK_CEILING_DBFS - _dbfs(peak)
            return gain, asked - gain, False, unreduced, loudness
        # The editor's loudness: limit the peaks, by MAX_LIMIT_DB at most.
        most = TRUE_PEAK_CEILING_DBTP + MAX_LIMIT_DB - _dbfs(true_peak)
        gain = min(asked, most)
        for _ in range(MAKE_UP_PASSES):  # limiting lowers the loudness: measure, make it up
            if gain >= most:
                break
            _, _, limited = self._measure(gain, self._limiter(), bar)
            if not np.isfinite(limited) or target - limited <= LOUDNESS_TOLERANCE_LU:
                break
            asked = gain + target - limited
            gain = min(asked, most)
        return gain, asked - gain, True, unreduced, loudness

    def __iter__(self) -> Iterator[np.ndarray]:
        info = self.info
        target = self.edit.loudness_lufs
        # Without a loudness to reach, a float output or a render allowed to clip keeps
        # the level asked whatever its peak: no first pass is needed.
        measure = (target is not None or not (self.floating or self.allow_clipping)) \
            and self.reuse is None
        bar = None
        if self.progress:
            import sys
            from tqdm import tqdm
            bar = tqdm(total=(1 + measure) * self.total / info.sr, unit="s", desc="render",
                       file=sys.stderr, dynamic_ncols=True,
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio "
                                  "[{elapsed}<{remaining}]")
        gain_db = reduction_db = 0.0
        limit, unreduced, measured = False, None, None
        if measure:
            gain_db, reduction_db, limit, unreduced, measured = self._level(bar)
        elif self.reuse is not None:  # an earlier render's: it limited
            (gain_db, reduction_db), limit = self.reuse, True
        gain = float(10.0 ** (gain_db / 20.0))
        limiter = self._limiter() if limit else None
        meter = LoudnessMeter(info.sr, info.channels) if limit else None  # what it wrote
        taps = _SeamTaps(self.seams, self.pieces, info.sr, self.total)
        stats = raw_click_stats(info.path, info=info)
        peak, clipped, over = 0.0, 0, 0
        for pos, block in self._blocks(gain, limiter, [meter] if meter else [], bar):
            taps.see(pos, block)
            block_peak = float(np.abs(block).max(initial=0.0))
            peak = max(peak, block_peak)
            if block_peak > 1.0:
                if self.floating:
                    over += int((np.abs(block) > 1.0).sum())
                else:  # only allow_clipping gets here: the gain keeps every other render below
                    clipped += int((np.abs(block) > 1.0).sum())
                    block = np.clip(block, -1.0, 1.0)
            yield block
        if bar is not None:
            bar.close()
        method = "none"
        if self.allow_clipping and clipped:
            method = "clipping allowed"
        elif limiter is not None:
            method = "limiter"
        elif gain_db != 0.0:
            method = "gain"
        written_peak = min(peak, 1.0) if clipped else peak
        if self.reuse is not None:  # not measured before: the peak the limiter was fed
            unreduced = _dbfs(self.limiter_input_peak) + reduction_db
        if meter is not None:
            loudness = meter.integrated_lufs()
        elif measured is not None:  # the gain is linear: the loudness measured plus the gain
            loudness = measured + gain_db
        else:
            loudness = None
        self.report = RenderReport(
            self.out_path, info.sr, info.channels, self.subtype, self.total,
            _rendered_edit(self.edit, self.pieces, info), self._seam_reports(taps, stats, gain),
            stats, _dbfs(written_peak), clipped, time.perf_counter() - self.started,
            level_method=method, gain_db=gain_db, gain_reduction_db=reduction_db,
            limit_db=0.0 if limiter is None else limiter.limit_db,
            unreduced_peak_dbfs=_dbfs(peak) if unreduced is None else unreduced,
            over_full_scale_samples=over, loudness_lufs=loudness, target_loudness_lufs=target,
            level_reused=self.reuse is not None)

    def _seam_reports(self, taps: _SeamTaps, stats: RawClickStats,
                      gain: float) -> list[SeamReport]:
        sr = self.info.sr
        reports = []
        for j, seam in enumerate(self.seams):
            a, b = self.pieces[seam.left], self.pieces[seam.left + 1]
            step, burst = (seam_click(taps.click[j], sr) if j in taps.click
                           else (float("nan"), float("nan")))
            raw_step, raw_burst = self._raw_here(a, b, gain)
            reports.append(SeamReport(
                index=seam.left + 1, edit_s=b.edit_start / sr,
                raw_out_s=(a.raw_start + a.length) / sr if a.in_raw else None,
                raw_in_s=b.raw_start / sr if b.in_raw else None,
                moved_ms=1000 * seam.moved / sr, crossfade_ms=1000 * seam.crossfade / sr,
                corr=seam.corr, step=step, burst=burst,
                step_ratio=_ratio(step, stats.step_p99), burst_ratio=_ratio(burst, stats.burst_p99),
                raw_step_ratio=_ratio(raw_step, stats.step_p99),
                raw_burst_ratio=_ratio(raw_burst, stats.burst_p99),
                loudness_step_db=taps.loudness_step_db(j)))
        return reports

    def _raw_here(self, a: _Piece, b: _Piece, gain: float) -> tuple[float, float]:
        """The click measures the raw itself has where seam a|b sits: each side measured on
        its own raw audio (its gain and the whole edit's applied) on the seam's tile; steps
        add, bursts take the max."""
        w0, w1 = seam_window(b.edit_start, self.info.sr)
        steps, bursts = [], []
        for side in (a, b):
            if side.in_raw:
                x = np.concatenate(list(_read_padded(
                    self.info, side.raw_start + w0 - side.edit_start, w1 - w0, w1 - w0)))
                step, burst = seam_click(x * np.float32(side.gain * gain), self.info.sr)
                steps.append(step)
                bursts.append(burst)
        return float(sum(steps)), float(max(bursts, default=0.0))


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf")


def render(raw_path: str | os.PathLike, edit: Edit, out_path: str | os.PathLike, *,
           seam_search_ms: float = SEAM_SEARCH_MS, beats_s=None, subtype: str | None = None,
           crossfade_ms: float = DEFAULT_CROSSFADE_MS, allow_clipping: bool = False,
           progress: bool = False, level: dict | None = None) -> RenderReport:
    """Render `edit` from the raw file's samples to `out_path` (.wav, .flac or .ogg), atomically.

    Memory stays at a few blocks of READ_BLOCK_S seconds whatever the raw's or the edit's
    length: only the segments' spans are read, and the output is written as it is made.
    A first pass over the same blocks measures the peak (and the loudness when the edit
    names its loudness_lufs) unless nothing could change (float output or allow_clipping,
    and no loudness).

    Args:
        raw_path: the recording the segments were cut from; never overwritten.
        edit: the segments (seconds of raw and edit time; see editorbot.edits), and the
            loudness the whole edit is brought to (edit.loudness_lufs; None: as the gains
            make it).
        out_path: .wav, .flac or .ogg (see output_subtype for its sample format).
        seam_search_ms: each cut may move within +- this to where its sides join best
            (0: cuts stay where the segments put them).
        beats_s: optional raw-time beat positions (seconds); each cut's incoming raw point
            first snaps to the nearest beat within half a beat, then seam search refines it.
        subtype: soundfile subtype of the output (default: see output_subtype).
        crossfade_ms: crossfade at hard cuts (segments with crossfade_s == 0).
        allow_clipping: write an integer output at the level the gains ask for and clip
            what passes full scale (default: lower the whole edit so nothing clips).
        progress: show a progress bar in seconds of audio.
        level: an earlier render's RenderReport.level_json() for the same raw and
            loudness_lufs: when it limited the peaks, its gain is used again without the
            measuring passes, and the render is done again, measured, if what it wrote does
            not land where that level did (see the module docstring).

    Returns:
        RenderReport, with the edit as rendered, a SeamReport per seam and what was done
        to the level.
    """
    out_path = Path(out_path)
    info = probe(raw_path)
    subtype = output_subtype(info, out_path, subtype)
    if out_path.exists() and out_path.resolve() == info.path.resolve():
        raise UserError(f"{out_path}: is the raw recording; choose another output name")
    stream = _Stream(raw_path, edit, seam_search_ms=seam_search_ms, beats_s=beats_s,
                     crossfade_ms=crossfade_ms, floating=subtype.startswith(("FLOAT", "DOUBLE")),
                     allow_clipping=allow_clipping, progress=progress, out_path=out_path,
                     subtype=subtype, level=level)
    write_blocks(out_path, stream, info.sr, channels=info.channels, subtype=subtype,
                 protect=(raw_path,))
    if stream.reuse is not None and not _level_held(stream.report, level):
        log.info("the earlier level (%+.1f dB, %.1f LUFS) gives %.1f LUFS here: measuring again",
                 level["gain_db"], level["loudness_lufs"], stream.report.loudness_lufs)
        return render(raw_path, edit, out_path, seam_search_ms=seam_search_ms, beats_s=beats_s,
                      subtype=subtype, crossfade_ms=crossfade_ms, allow_clipping=allow_clipping,
                      progress=progress)
    return stream.report


def render_array(raw_path: str | os.PathLike, edit: Edit, *,
                 seam_search_ms: float = SEAM_SEARCH_MS, beats_s=None,
                 crossfade_ms: float = DEFAULT_CROSSFADE_MS,
                 with_report: bool = False):
    """Render `edit` into memory: (audio (n, channels) float32, sr) at the raw's rate.

    Same arguments as `render`; with_report=True returns (audio, sr, RenderReport).
    The output is float: nothing is clipped or lowered for its peak (the report counts
    the samples beyond +-1.0); an edit's loudness_lufs is applied.
    """
    stream = _Stream(raw_path, edit, seam_search_ms=seam_search_ms, beats_s=beats_s,
                     crossfade_ms=crossfade_ms, floating=True, allow_clipping=False,
                     progress=False, out_path=None, subtype=None)
    audio = np.empty((stream.total, stream.info.channels), np.float32)
    pos = 0
    for block in stream:
        audio[pos:pos + len(block)] = block
        pos += len(block)
    return (audio, stream.info.sr, stream.report) if with_report else (audio, stream.info.sr)
