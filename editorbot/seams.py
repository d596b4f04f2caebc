"""Seam quality: clicks and loudness steps where a rendered edit joins two pieces of the raw.

A seam's click measures are compared with the same measures taken on the raw recording
itself (their 99th percentile), so a seam counts as clean when it is no rougher than the
music it was cut from.

Click measures, on tiles of TILE_MS:
- step: the largest sample-to-sample step |x[n] - x[n-1]| in the tile, over all channels
  (full scale = 1). A hard cut between two loud, unrelated waveforms makes a large step.
- burst: the tile's high-frequency energy (mean square of the second difference, a
  +12 dB/octave high-pass) over the mean of the same energy across the tile and
  CONTEXT_TILES tiles on each side. A click is a burst of high frequencies that its
  neighbourhood does not have; a drum hit in the raw is one too, which is why seams are
  judged against the raw's own distribution. It lies in [0, 2 * CONTEXT_TILES + 1].
Loudness step: short-term RMS (LOUDNESS_WINDOW_MS) just after the crossfade over just
before it, in dB.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from .audio import AudioInfo, iter_blocks, probe

TILE_MS = 5.0
CONTEXT_TILES = 5
LOUDNESS_WINDOW_MS = 400.0
PERCENTILE = 99.0
RAW_WINDOWS = 120  # windows spread evenly over the raw for its own distribution
RAW_WINDOW_S = 0.5
_SILENCE_DB = -120.0


def tile_length(sr: int, tile_ms: float = TILE_MS) -> int:
    """Samples per measurement tile."""
    return max(2, int(round(tile_ms * sr / 1000)))


def tile_measures(x: np.ndarray, sr: int, *, tile_ms: float = TILE_MS,
                  context_tiles: int = CONTEXT_TILES) -> tuple[np.ndarray, np.ndarray]:
    """Click measures of consecutive tiles of `x`, tile t covering x[1 + t*L : 1 + (t+1)*L].

    Args:
        x : np.ndarray [shape=(n,) or (n, channels)], float, full scale 1
        context_tiles: tiles on each side that make a burst's context (fewer at the edges).

    Returns:
        steps : np.ndarray [shape=(n_tiles,)], largest sample-to-sample step per tile
        bursts : np.ndarray [shape=(n_tiles,)], high-frequency energy over its context's
    """
    x = np.asarray(x, np.float32)
    x = x[:, None] if x.ndim == 1 else x
    L = tile_length(sr, tile_ms)
    n_tiles = max(0, (len(x) - 2) // L)
    if n_tiles == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    used = x[:n_tiles * L + 2]
    step = np.abs(np.diff(used[:-1], axis=0))  # step[i] = |x[i+1] - x[i]|
    hf = np.diff(used, n=2, axis=0)            # hf[i] is centred on x[i+1]
    steps = step.reshape(n_tiles, -1).max(axis=1)
    energy = np.square(hf, dtype=np.float64).reshape(n_tiles, -1).mean(axis=1)
    csum = np.concatenate([[0.0], np.cumsum(energy)])
    idx = np.arange(n_tiles)
    lo = np.maximum(idx - context_tiles, 0)
    hi = np.minimum(idx + context_tiles + 1, n_tiles)
    context = (csum[hi] - csum[lo]) / (hi - lo)
    bursts = energy / np.maximum(context, 1e-20)
    return steps.astype(np.float32), bursts.astype(np.float32)


def seam_window(center: int, sr: int, *, tile_ms: float = TILE_MS,
                context_tiles: int = CONTEXT_TILES) -> tuple[int, int]:
    """[start, end) of the samples `seam_click` needs around a seam at sample `center`."""
    L = tile_length(sr, tile_ms)
    start = center - L // 2 - context_tiles * L - 1
    return start, start + (2 * context_tiles + 1) * L + 2


def seam_click(window: np.ndarray, sr: int, *, tile_ms: float = TILE_MS,
               context_tiles: int = CONTEXT_TILES) -> tuple[float, float]:
    """(step, burst) of the tile centred on a seam, from the samples `seam_window` names."""
    steps, bursts = tile_measures(window, sr, tile_ms=tile_ms, context_tiles=context_tiles)
    if len(steps) <= context_tiles:
        return float("nan"), float("nan")
    return float(steps[context_tiles]), float(bursts[context_tiles])


@dataclass(frozen=True)
class RawClickStats:
    """The raw recording's own click measures: their PERCENTILE-th percentiles."""

    step_p99: float
    burst_p99: float
    tiles: int


def raw_click_stats(raw_path: str | os.PathLike, *, info: AudioInfo | None = None,
                    n_windows: int = RAW_WINDOWS, window_s: float = RAW_WINDOW_S,
                    percentile: float = PERCENTILE, tile_ms: float = TILE_MS,
                    context_tiles: int = CONTEXT_TILES) -> RawClickStats:
    """Click-measure percentiles of the raw, from `n_windows` windows spread evenly over it.

    Reads n_windows * window_s seconds (60 s by default) whatever the raw's length. Tiles
    whose context would be cut by a window's edge are left out, so raw tiles and seam tiles
    are measured the same way.
    """
    info = info or probe(raw_path)
    n = min(int(window_s * info.sr), info.frames)
    count = max(1, min(n_windows, info.frames // max(n, 1)))  # no overlap on short raws
    starts = np.unique(np.linspace(0, info.frames - n, count).astype(np.int64))
    all_steps, all_bursts = [], []
    for start in starts:
        x = np.concatenate(list(iter_blocks(raw_path, start=int(start), frames=n, info=info)))
        steps, bursts = tile_measures(x, info.sr, tile_ms=tile_ms, context_tiles=context_tiles)
        inner = slice(context_tiles, len(steps) - context_tiles)
        all_steps.append(steps[inner])
        all_bursts.append(bursts[inner])
    steps = np.concatenate(all_steps)
    bursts = np.concatenate(all_bursts)
    if len(steps) == 0:  # a raw shorter than one window's context
        return RawClickStats(float("nan"), float("nan"), 0)
    return RawClickStats(float(np.percentile(steps, percentile)),
                         float(np.percentile(bursts, percentile)), len(steps))


def rms_db(mean_square: float) -> float:
    """dBFS of a mean square (floored at -120 dB)."""
    return float(max(_SILENCE_DB, 10 * np.log10(max(mean_square, 1e-30))))


@dataclass
class SeamReport:
    """One seam of a rendered edit.

    index: the segment (of the rendered edit) that starts at this seam.
    edit_s: the seam's time in the edit; raw_out_s / raw_in_s: the raw times it leaves and
        enters (None where that side is not in the raw).
    moved_ms: how far seam search and beat snapping moved the cut (edit and raw alike).
    crossfade_ms: the crossfade used; corr: the two sides' correlation over it, which
        shapes its curves (0: equal-power, 1: linear; see editorbot.render).
    step, burst: click measures of the tile centred on the seam; step_ratio, burst_ratio:
        the same over the raw's 99th percentiles (<= 1: no rougher than the raw).
    raw_step_ratio, raw_burst_ratio: what the raw itself has at this very place, over the
        same percentiles: the sum of the two sides' steps and the larger of their bursts, each
        side measured on its own raw audio (gain applied) on the same tile. A cut on a drum
        hit keeps the hit's step; only roughness beyond this and beyond the percentile is the
        cut's own.
    loudness_step_db: short-term RMS after the seam over before it.
    """

    index: int
    edit_s: float
    raw_out_s: float | None
    raw_in_s: float | None
    moved_ms: float
    crossfade_ms: float
    corr: float
    step: float = float("nan")
    burst: float = float("nan")
    step_ratio: float = float("nan")
    burst_ratio: float = float("nan")
    raw_step_ratio: float = 0.0
    raw_burst_ratio: float = 0.0
    loudness_step_db: float = float("nan")

    @property
    def clean(self) -> bool:
        """No rougher than the raw's own 99th percentile, or than the raw at this place."""
        return bool(self.step_ratio <= max(1.0, self.raw_step_ratio)
                    and self.burst_ratio <= max(1.0, self.raw_burst_ratio))

    def as_dict(self) -> dict:
        return {**asdict(self), "clean": self.clean}

    def line(self) -> str:
        raw = (f"raw {self.raw_out_s:9.3f} -> {self.raw_in_s:9.3f} s"
               if self.raw_out_s is not None and self.raw_in_s is not None else
               f"raw {_fmt(self.raw_out_s):>9} -> {_fmt(self.raw_in_s):>9} s")
        return (f"{self.index:4d} {self.edit_s:9.3f} s  {raw}  moved {self.moved_ms:+6.1f} ms  "
                f"xfade {self.crossfade_ms:5.1f} ms r {self.corr:4.2f}  "
                f"step x{self.step_ratio:5.2f} "
                f"(raw x{self.raw_step_ratio:5.2f})  burst x{self.burst_ratio:5.2f} "
                f"(raw x{self.raw_burst_ratio:5.2f})  loudness {self.loudness_step_db:+5.1f} dB"
                f"{'' if self.clean else '  ROUGH'}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def summarize(seams: list[SeamReport], stats: RawClickStats) -> str:
    """One paragraph on a render's seams, for the command line."""
    if not seams:
        return "no seams (the edit plays the raw without a cut)"
    rough = [s for s in seams if not s.clean]
    within = [s for s in seams if s.step_ratio <= 1.0 and s.burst_ratio <= 1.0]
    steps = np.array([s.loudness_step_db for s in seams])
    worst = max(seams, key=lambda s: max(s.step_ratio, s.burst_ratio))
    return (f"{len(seams)} seams: {len(within)} within the raw's own 99th percentile "
            f"(step {stats.step_p99:.4f}, burst {stats.burst_p99:.2f}), "
            f"{len(seams) - len(rough) - len(within)} more no rougher than the raw at that "
            f"place, {len(rough)} rough; worst seam {worst.index} at {worst.edit_s:.3f} s "
            f"(step x{worst.step_ratio:.2f}, burst x{worst.burst_ratio:.2f}); loudness steps "
            f"median {np.median(np.abs(steps)):.1f} dB, max {np.max(np.abs(steps)):.1f} dB")
