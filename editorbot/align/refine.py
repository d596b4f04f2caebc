"""From a frame-level path to sample-exact segments: each segment's lag, each join's seam,
crossfade length, gains and fades, measured on the analysis audio.

Lags come from normalised cross-correlation of the edit with the raw around the path's
offset; a join's seam is where the edit stops following one segment's raw audio and starts
following the next, found from two-source least-squares gains in short windows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.signal


PRE_EMPHASIS = 0.95    # matching runs on y[n] - 0.95 y[n - 1]
SINC_TAPS = 16         # interpolation taps for fractional lags
GAIN_WINDOW = 64       # samples per window when following the two sources across a join
GAIN_RANGE = 4.0       # a side's fitted gain stays within this factor of its typical gain
SILENT_DB = 35.0       # an edit this far below what a source predicts does not play it
CROSSFADE_MS = (5, 10, 15, 20, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 320, 400)
CROSSFADE_RESIDUAL = 0.8  # a crossfade must leave at most 80% of a hard cut's error in its ramp
RATIO_STEPS = 2.0 ** np.arange(-2, 2.5, 0.5)  # levels of side b tried around the typical one
SEAM_RETRIES = 3       # searches around a seam found at the edge of the window
FILL_SMOOTH = 5        # frames over which the waveform match is averaged when filling gaps
_EPS = 1e-12
CHUNK_FRAMES = 4096    # frames of audio correlated at once
EDGE_S_SAMPLES = 2205  # a tenth of a second at 22050 Hz: the edges a stretch leaves out


@dataclass
class Run:
    """A stretch of edit samples [start, end) that plays the raw at sample lag `lag`
    (raw sample = edit sample + lag), or nothing from the raw (lag None).

    rho: normalised correlation of the edit with the raw at that lag (nan: not measured).
    crossfade: samples of crossfade centred on the seam before this run (0: hard cut).
    ambiguous_join: the raw audio on both sides of the seam before this run is the same
        (identical material), so the seam could be anywhere near there.
    alternatives: other lags that play this run's stretch as well (identical copies
        elsewhere in the raw), with their waveform correlation over the stretch.
    """

    start: int
    end: int
    lag: float | None
    rho: float = float("nan")
    crossfade: int = 0
    ambiguous_join: bool = False
    alternatives: list[tuple[float, float]] = field(default_factory=list)


def runs_from_path(offsets: np.ndarray, in_raw: np.ndarray, hop: int, n_samples: int) -> list[Run]:
    """Runs of one offset (or of "not in raw") in a frame path, in edit samples.

    Offsets one frame apart belong to the same run (the true lag can lie between two
    frames); a run's lag is its median offset, to be measured to the sample. Frame j is
    centred on sample j * hop, so a run of frames [a, b) covers samples
    [a * hop - hop / 2, b * hop - hop / 2).
    """
    n = len(offsets)
    if n == 0:
        return []
    step = np.abs(np.diff(offsets)) > 1
    new = np.concatenate([[True], (in_raw[1:] != in_raw[:-1]) | (in_raw[1:] & step)])
    starts = np.flatnonzero(new)
    ends = np.concatenate([starts[1:], [n]])
    runs = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        s0 = 0 if a == 0 else a * hop - hop // 2
        s1 = n_samples if b == n else b * hop - hop // 2
        lag = float(np.median(offsets[a:b]) * hop) if in_raw[a] else None
        runs.append(Run(s0, s1, lag))
    return runs


def absorb_short_gaps(runs: list[Run], min_samples: int) -> list[Run]:
    """Give "not in raw" runs shorter than min_samples that sit between two segments to
    those segments (split at the middle; the seam search moves it where it belongs)."""
    out: list[Run] = []
    for i, run in enumerate(runs):
        inner = 0 < i < len(runs) - 1
        if run.lag is None and inner and run.end - run.start < min_samples \
                and runs[i - 1].lag is not None and runs[i + 1].lag is not None:
            mid = (run.start + run.end) // 2
            out[-1].end = mid
            runs[i + 1].start = mid
            continue
        out.append(run)
    return out


def fill_not_in_raw(runs: list[Run], y_edit: np.ndarray, y_raw: np.ndarray, hop: int,
                    min_rho: float) -> list[Run]:
    """Give "not in raw" frames to a neighbouring segment when the edit's waveform there
    matches the raw at that segment's lag (the path loses quiet passages and fade tails,
    which have few landmarks). A segment grows frame by frame while the correlation,
    smoothed over FILL_SMOOTH frames, stays above min_rho; digitally silent edit frames
    neither stop nor start the growth. What is left stays "not in raw"."""
    for i, run in enumerate(runs):
        if run.lag is not None:
            continue
        j0, j1 = -(-run.start // hop), -(-run.end // hop)
        if j1 <= j0:
            continue
        left = runs[i - 1] if i > 0 and runs[i - 1].lag is not None else None
        right = runs[i + 1] if i + 1 < len(runs) and runs[i + 1].lag is not None else None
        silent = _frame_energy_range(y_edit, hop, j0, j1) <= 0.0
        grow_left = grow_right = 0
        if left is not None:
            ok = _matching(y_edit, y_raw, hop, j0, j1, left.lag, min_rho) | silent
            grow_left = int(np.argmin(ok)) if not ok.all() else j1 - j0
        if right is not None:
            ok = _matching(y_edit, y_raw, hop, j0, j1, right.lag, min_rho)[::-1] | silent[::-1]
            grow_right = int(np.argmin(ok)) if not ok.all() else j1 - j0
        if grow_left + grow_right >= j1 - j0:
            # The gap is covered: neighbours meet (the seam search places the join).
            split = j0 + (grow_left if right is not None else j1 - j0)
            if left is not None and right is not None and abs(left.lag - right.lag) < 1.0:
                split = j1
            split = min(max(split, j0), j1)
            cut = run.start if split == j0 else (run.end if split == j1 else split * hop - hop // 2)
            if left is not None:
                left.end = cut
            if right is not None:
                right.start = cut
            run.start = run.end = cut
            continue
        if grow_left:
            cut = j0 + grow_left
            left.end = run.start = cut * hop - hop // 2
        if grow_right:
            cut = j1 - grow_right
            right.start = run.end = cut * hop - hop // 2
    return merge_same_lag([r for r in runs if r.end > r.start], 0.5)


def stretch_rho(y_edit: np.ndarray, y_raw: np.ndarray, start: int, end: int, lag: float) -> float:
    """Normalised correlation of the (pre-emphasised) edit samples [start, end) with the
    raw at `lag` (raw sample = edit sample + lag), leaving out the first and last tenth
    of a second (a join's crossfade); nan when the stretch is silent or too short."""
    trim = min(EDGE_S_SAMPLES, (end - start) // 4)
    lo, hi = start + trim, end - trim
    if hi - lo < 64:
        return float("nan")
    er = ee = rr = 0.0
    step = CHUNK_FRAMES * 256
    for c0 in range(lo, hi, step):
        e = _emphasised(y_edit, c0, min(c0 + step, hi))
        r = _shifted(y_raw, c0, min(c0 + step, hi), lag)
        er += float(np.einsum("i,i->", e, r))
        ee += float(np.einsum("i,i->", e, e))
        rr += float(np.einsum("i,i->", r, r))
    den = np.sqrt(ee * rr)
    return er / den if den > _EPS else float("nan")


def _frame_energy_range(y: np.ndarray, hop: int, j0: int, j1: int) -> np.ndarray:
    """Energy of the hop samples centred on frames j0..j1-1."""
    x = _padded(y, j0 * hop - hop // 2, j1 * hop - hop // 2).reshape(-1, hop)
    return np.einsum("ij,ij->i", x, x)


def _matching(y_edit: np.ndarray, y_raw: np.ndarray, hop: int, j0: int, j1: int, lag: float,
              min_rho: float) -> np.ndarray:
    """Frames j0..j1-1 whose smoothed waveform correlation at `lag` reaches min_rho."""
    rho = frame_correlation(y_edit, y_raw, hop, j1, [Run(j0 * hop, j1 * hop, lag)])[j0:j1]
    valid = np.isfinite(rho)
    num = np.convolve(np.where(valid, rho, 0.0), np.ones(FILL_SMOOTH), mode="same")
    den = np.convolve(valid.astype(np.float64), np.ones(FILL_SMOOTH), mode="same")
    return np.where(den > 0, num / np.maximum(den, 1e-9), 0.0) >= min_rho


def measure_lag(y_edit: np.ndarray, y_raw: np.ndarray, start: int, end: int, guess: float,
                search: int, window: int) -> tuple[float, float]:
    """The lag (raw sample - edit sample) within guess +- search that best matches the
    edit's samples [start, end), to a fraction of a sample, and the correlation there.

    Uses at most `window` samples from the middle of the stretch.

    Returns:
        lag (samples, float), rho (normalised correlation, nan when not measurable)
    """
    length = end - start
    if length < 64:
        return guess, float("nan")
    if length > window:
        start += (length - window) // 2
        end = start + window
    g = int(round(guess))
    r0, r1 = start + g - search, end + g + search
    # Keep the raw stretch inside the raw: shrink the edit stretch if needed.
    if r0 < 0:
        start += -r0
        r0 = 0
    if r1 > len(y_raw):
        end -= r1 - len(y_raw)
        r1 = len(y_raw)
    if end - start < 64:
        return guess, float("nan")
    seg = _emphasised(y_edit, start, end)
    ref = _emphasised(y_raw, r0, r1)
    corr = scipy.signal.correlate(ref, seg, mode="valid", method="fft")
    c2 = np.concatenate([[0.0], np.cumsum(ref * ref)])
    w = end - start
    ref_energy = c2[w:] - c2[:-w]
    denom = np.sqrt(np.maximum(ref_energy, 0.0) * float(np.einsum("i,i->", seg, seg))) + _EPS
    rho = corr / denom
    p = int(np.argmax(rho))
    frac = 0.0
    if 0 < p < len(rho) - 1:
        y0, y1, y2 = rho[p - 1], rho[p], rho[p + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            frac = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return float(r0 - start + p + frac), float(rho[p])


def _shifted(y_raw: np.ndarray, lo: int, hi: int, lag: float) -> np.ndarray:
    """Pre-emphasised raw audio at edit samples [lo, hi) for a fractional `lag` (raw
    sample = edit sample + lag), interpolated with a Hann-windowed sinc; zeros outside
    the raw. A lag half a sample off already loses much of the detail pre-emphasis keeps."""
    whole = int(np.floor(lag))
    frac = lag - whole
    if frac < 1e-3:
        return _emphasised(y_raw, lo + whole, hi + whole)
    half = SINC_TAPS // 2
    x = _emphasised(y_raw, lo + whole - half + 1, hi + whole + half)
    k = np.arange(-half + 1, half + 1) - frac          # taps at x[n + k] for sample n + frac
    taps = np.sinc(k) * (0.5 + 0.5 * np.cos(np.pi * k / half))
    return np.convolve(x, taps[::-1] / taps.sum(), mode="valid")


def _emphasised(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """y[lo:hi] through the pre-emphasis y[n] - PRE_EMPHASIS * y[n - 1], as float64 (zeros
    outside y). Matching on it weighs the bass down, whose phase EQ and high-pass filters
    shift, and the detail up."""
    x = _padded(y, lo - 1, hi).astype(np.float64)
    return x[1:] - PRE_EMPHASIS * x[:-1]


def locate_seam(y_edit: np.ndarray, y_raw: np.ndarray, lo: int, hi: int, lag_a: float,
                lag_b: float, guess: int, sr: int) -> tuple[int, int, bool]:
    """Where, within edit samples [lo, hi), the edit stops playing the raw at lag_a and
    starts playing it at lag_b.

    In short windows, each side's raw audio is fitted to the edit with its own gain
    (kept within GAIN_RANGE of the side's typical gain, so that a compressor's moving
    gain is followed but silence against loud audio still counts as a mismatch). The seam
    splits the windows, then the samples, where side a's error before plus side b's error
    after is least. Then an equal-power crossfade model (_fit_crossfade) decides between
    a hard cut there and a crossfade, and places the crossfade's centre.

    Returns:
        seam (edit sample: the centre of a crossfade, or the first sample of the new side
        at a hard cut), crossfade length in samples (0 for a hard cut), and whether the
        two sides are the same audio there (the seam is then the guess).
    """
    w = GAIN_WINDOW
    m = (hi - lo) // w
    if m < 6:
        return guess, 0, False
    hi = lo + m * w
    e = _emphasised(y_edit, lo, hi)
    a = _shifted(y_raw, lo, hi, lag_a)
    b = _shifted(y_raw, lo, hi, lag_b)
    aa_all, bb_all = float(np.einsum("i,i->", a, a)), float(np.einsum("i,i->", b, b))
    if aa_all > 0 and float(np.einsum("i,i->", a, b)) > 0.95 * np.sqrt(aa_all * bb_all):
        return guess, 0, True
    ew, aw, bw = e.reshape(m, w), a.reshape(m, w), b.reshape(m, w)
    aa, bb = (aw * aw).sum(1), (bw * bw).sum(1)
    ae, be, ee = (aw * ew).sum(1), (bw * ew).sum(1), (ew * ew).sum(1)
    third = max(2, m // 3)
    ga, typical_a = _fitted_gain(ae, aa, third, from_start=True)
    gb, typical_b = _fitted_gain(be, bb, third, from_start=False)
    cost_a = _mismatch(ae, aa, ee, typical_a)
    cost_b = _mismatch(be, bb, ee, typical_b)
    cost = np.concatenate([[0.0], np.cumsum(cost_a)]) + np.concatenate([np.cumsum(cost_b[::-1])[::-1], [0.0]])
    k = int(np.argmin(cost))                      # first window of side b
    # The same split, sample by sample, within a window either side.
    c0, c1 = max(0, k - 1) * w, min(m, k + 1) * w
    gl, gr = ga[max(0, k - 1)], gb[min(m - 1, k)]
    ra = np.concatenate([[0.0], np.cumsum((e[c0:c1] - gl * a[c0:c1]) ** 2)])
    rb = np.concatenate([np.cumsum(((e[c0:c1] - gr * b[c0:c1]) ** 2)[::-1])[::-1], [0.0]])
    seam = c0 + int(np.argmin(ra + rb))
    length, centre = _fit_crossfade(e, a, b, seam, sr, typical_b / typical_a)
    return lo + centre, length, False


def _fit_crossfade(e: np.ndarray, a: np.ndarray, b: np.ndarray, seam: int, sr: int,
                   ratio_ba: float) -> tuple[int, int]:
    """The equal-power crossfade that best explains the edit around `seam`: its length in
    samples (0: a hard cut at `seam`) and its centre.

    The model of the edit is G(t) * (cos-ramp * a + r * sin-ramp * b), where the gain G(t)
    is free in every window of GAIN_WINDOW samples (a compressor's gain acts on the mix of
    both sides, so it cannot fake a crossfade: what decides is whether a window holds one
    side or both) and r, the level of b against a, is the best of RATIO_STEPS around
    ratio_ba. Before the ramp only a plays, after it only b. Every candidate is scored on
    the whole stretch; a crossfade must beat the hard cut there and leave at most
    CROSSFADE_RESIDUAL of the hard cut's error within its own ramp.

    Args:
        e, a, b : np.ndarray [shape=(n,)], the (pre-emphasised) edit and both raw sides,
            n a multiple of GAIN_WINDOW
        seam: the hard-cut seam, an index into them
        sr: their sample rate (crossfades of CROSSFADE_MS are tried)
        ratio_ba: typical gain of side b over that of side a
    """
    w = GAIN_WINDOW
    m = len(e) // w
    ew, aw, bw = e.reshape(m, w), a.reshape(m, w), b.reshape(m, w)
    ee = np.einsum("ij,ij->i", ew, ew)
    only_a = ee - _explained(np.einsum("ij,ij->i", ew, aw), np.einsum("ij,ij->i", aw, aw))
    only_b = ee - _explained(np.einsum("ij,ij->i", ew, bw), np.einsum("ij,ij->i", bw, bw))
    before = np.concatenate([[0.0], np.cumsum(only_a)])             # windows [0, i) on side a
    after = np.concatenate([np.cumsum(only_b[::-1])[::-1], [0.0]])  # windows [i, m) on side b
    k = min(seam // w, m - 1)  # the window the hard cut falls in
    pos = np.arange(k * w, (k + 1) * w) + 0.5 < seam
    straddle = _ramp_residual(ew[k:k + 1], np.where(pos, a[k * w:(k + 1) * w], 0.0)[None, None],
                              np.where(pos, 0.0, b[k * w:(k + 1) * w])[None, None], ratio_ba)[0]
    hard_w = np.concatenate([only_a[:k], [straddle], only_b[k + 1:]])
    hard_cum = np.concatenate([[0.0], np.cumsum(hard_w)])

    def scores(lengths: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Total residual of each candidate, and whether its ramp is good enough."""
        starts = centres - lengths / 2
        i0 = np.floor(starts / w).astype(int)
        i1 = np.ceil((starts + lengths) / w).astype(int)
        ok = (i0 >= 0) & (i1 <= m) & (lengths > 0)
        total = np.full(len(centres), np.inf)
        good = np.zeros(len(centres), bool)
        if not ok.any():
            return total, good
        # Each candidate's own ramp windows, padded to the longest.
        j0, j1 = i0[ok], i1[ok]
        nw = int((j1 - j0).max())
        win = j0[:, None] + np.arange(nw)[None, :]                    # (k, nw)
        inside = win < j1[:, None]
        win = np.minimum(win, m - 1)
        sample = (win[:, :, None] * w + np.arange(w)[None, None, :])  # (k, nw, w)
        t = np.clip((sample + 0.5 - starts[ok, None, None]) / lengths[ok, None, None], 0.0, 1.0)
        xa = np.cos(np.pi / 2 * t) * a[sample]
        xb = np.sin(np.pi / 2 * t) * b[sample]
        ramp = _ramp_residual(ew[win], xa, xb, ratio_ba, inside)
        total[ok] = before[i0[ok]] + ramp + after[i1[ok]]
        good[ok] = ramp <= CROSSFADE_RESIDUAL * (hard_cum[i1[ok]] - hard_cum[i0[ok]])
        return total, good

    hard_total = float(hard_cum[-1])
    lengths = np.array([2 * int(round(ms * 1e-3 * sr / 2)) for ms in CROSSFADE_MS])
    grid_len = np.repeat(lengths, 5)
    grid_centre = seam + np.round(np.tile([-0.5, -0.25, 0.0, 0.25, 0.5], len(lengths)) * grid_len)
    total, good = scores(grid_len, grid_centre)
    total = np.where(good, total, np.inf)
    best = int(np.argmin(total))
    if not total[best] < hard_total:
        return 0, seam
    length, c0 = int(grid_len[best]), int(grid_centre[best])
    centres = np.arange(c0 - length // 4, c0 + length // 4 + 1, max(1, length // 32))
    c0 = int(centres[int(np.argmin(scores(np.full(len(centres), length), centres)[0]))])
    near = np.array(sorted({2 * int(round(length * f / 2)) for f in (0.75, 0.85, 0.93, 1.0, 1.08, 1.18, 1.3)}))
    return int(near[int(np.argmin(scores(near, np.full(len(near), c0))[0]))]), c0


def _explained(xe: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Energy a free gain on x explains of e, per window."""
    return np.where(xx > _EPS, xe * xe / np.maximum(xx, _EPS), 0.0)


def _ramp_residual(ew: np.ndarray, xa: np.ndarray, xb: np.ndarray, ratio_ba: float,
                   inside: np.ndarray | None = None) -> np.ndarray:
    """What a free per-window gain G leaves of the edit windows when fitting
    G * (xa + r * xb), summed over each candidate's windows `inside`, for its best r of
    ratio_ba * RATIO_STEPS.

    Args:
        ew : np.ndarray [shape=(m, w) or (k, m, w)], the edit in windows
        xa, xb : np.ndarray [shape=(k, m, w)], k candidates' two sources
        inside : np.ndarray [shape=(k, m)], bool (default: all windows)

    Returns:
        residual : np.ndarray [shape=(k,)]
    """
    ew = np.broadcast_to(ew, xa.shape)
    pa, pb = np.einsum("kij,kij->ki", ew, xa), np.einsum("kij,kij->ki", ew, xb)
    saa, sbb = np.einsum("kij,kij->ki", xa, xa), np.einsum("kij,kij->ki", xb, xb)
    sab = np.einsum("kij,kij->ki", xa, xb)
    ee = np.einsum("kij,kij->ki", ew, ew)
    if inside is None:
        inside = np.ones(pa.shape, bool)
    r = ratio_ba * RATIO_STEPS[:, None, None]
    left = ee - _explained(pa + r * pb, saa + 2 * r * sab + r * r * sbb)   # (steps, k, m)
    return (left * inside).sum(axis=2).min(axis=0)


def place_seams(runs: list[Run], y_edit: np.ndarray, y_raw: np.ndarray, half: int, sr: int) -> None:
    """Move every join between two segments to its seam (locate_seam), searching `half`
    samples either side of the path's join, and again around the seam found when it lands
    near the edge of the search (the path can be late or early in quiet passages). Sets
    each run's crossfade and ambiguous_join."""
    for prev, run in zip(runs[:-1], runs[1:]):
        if prev.lag is None or run.lag is None:
            continue
        guess = run.start
        for _ in range(SEAM_RETRIES):
            lo = max(guess - half, prev.start + (guess - prev.start) // 2)
            hi = min(guess + half, guess + (run.end - guess) // 2)
            seam, crossfade, same = locate_seam(y_edit, y_raw, lo, hi, prev.lag, run.lag, guess, sr)
            edge = 4 * GAIN_WINDOW
            if same or seam == guess or lo + edge < seam < hi - edge:
                break
            guess = seam
        prev.end = run.start = seam
        run.crossfade, run.ambiguous_join = crossfade, same


def _fitted_gain(xe: np.ndarray, xx: np.ndarray, n_ref: int, from_start: bool) -> tuple[np.ndarray, float]:
    """Per-window least-squares gain of one source, kept within GAIN_RANGE of the typical
    gain of the n_ref windows at the source's own end of the search window; and that
    typical gain."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(xx > _EPS, xe / xx, np.nan)
    ref_g, ref_x = (g[:n_ref], xx[:n_ref]) if from_start else (g[-n_ref:], xx[-n_ref:])
    use = np.isfinite(ref_g) & (ref_x > 0.05 * (ref_x.max(initial=0.0) + _EPS))
    typical = float(np.median(ref_g[use])) if use.sum() >= 2 else 1.0
    if not typical > 0:
        typical = 1.0
    return np.clip(np.nan_to_num(g, nan=typical), typical / GAIN_RANGE, typical * GAIN_RANGE), typical


def _mismatch(xe: np.ndarray, xx: np.ndarray, ee: np.ndarray, typical: float) -> np.ndarray:
    """Per-window cost of explaining the edit by one source, whatever the gain (a
    compressor moves it): 1 - squared correlation; 1 where the edit is SILENT_DB quieter
    than the source at its typical gain predicts (silence against sound); 0.5 (no
    evidence) where both are silent."""
    floor = 1e-8 * (float(ee.max(initial=0.0)) + _EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho2 = np.where((ee > floor) & (xx > _EPS), xe * xe / (xx * ee), 0.0)
    cost = 1.0 - np.clip(rho2, 0.0, 1.0)
    predicted = typical * typical * xx
    cost = np.where(ee * 10 ** (SILENT_DB / 10) < predicted, 1.0, cost)
    return np.where((ee <= floor) & (predicted <= floor), 0.5, cost)


def frame_energy(y: np.ndarray, hop: int, n_frames: int) -> np.ndarray:
    """Energy of the hop samples centred on each frame.

    Returns:
        energy : np.ndarray [shape=(n_frames,)], float64
    """
    out = np.zeros(n_frames, np.float64)
    half = hop // 2
    step = 16384  # frames per chunk
    for f0 in range(0, n_frames, step):
        f1 = min(n_frames, f0 + step)
        a, b = f0 * hop - half, f1 * hop - half
        x = np.zeros(b - a, np.float32)
        ca, cb = max(a, 0), min(b, len(y))
        if cb > ca:
            x[ca - a:cb - a] = y[ca:cb]
        out[f0:f1] = np.einsum("ij,ij->i", x.reshape(-1, hop), x.reshape(-1, hop))
    return out


def frame_correlation(y_edit: np.ndarray, y_raw: np.ndarray, hop: int, n_frames: int,
                      runs: list[Run]) -> np.ndarray:
    """Normalised correlation of the hop samples centred on each edit frame with the raw
    samples its run's lag points at (nan where not in raw, or where either is silent).

    Returns:
        rho : np.ndarray [shape=(n_frames,)], float32
    """
    out = np.full(n_frames, np.nan, np.float32)
    half = hop // 2
    for run in runs:
        if run.lag is None:
            continue
        j0 = max(0, -(-run.start // hop))
        j1 = min(n_frames, -(-run.end // hop))
        if j1 <= j0:
            continue
        for c0 in range(j0, j1, CHUNK_FRAMES):  # a chunk at a time: runs can last minutes
            c1 = min(c0 + CHUNK_FRAMES, j1)
            lo, hi = c0 * hop - half, c1 * hop - half
            e = _emphasised(y_edit, lo, hi).reshape(-1, hop)
            r = _shifted(y_raw, lo, hi, run.lag).reshape(-1, hop)
            e -= e.mean(axis=1, keepdims=True)
            r -= r.mean(axis=1, keepdims=True)
            er = np.einsum("ij,ij->i", e, r)
            den = np.sqrt(np.einsum("ij,ij->i", e, e) * np.einsum("ij,ij->i", r, r))
            out[c0:c1] = np.where(den > 1e-12, er / np.maximum(den, 1e-30), np.nan)
    return out


def _padded(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """y[lo:hi] as float32, zeros where the range leaves y."""
    if lo >= 0 and hi <= len(y):
        return np.asarray(y[lo:hi], np.float32)
    out = np.zeros(hi - lo, np.float32)
    a, b = max(lo, 0), min(hi, len(y))
    if b > a:
        out[a - lo:b - lo] = y[a:b]
    return out


def merge_same_lag(runs: list[Run], tolerance: float) -> list[Run]:
    """Join neighbouring runs whose lags differ by at most `tolerance` samples (the path
    can hop between two offsets one frame apart when the true lag lies between them)."""
    out: list[Run] = []
    for run in runs:
        prev = out[-1] if out else None
        if prev is not None and prev.lag is not None and run.lag is not None \
                and abs(prev.lag - run.lag) <= tolerance:
            # Keep the lag measured on the longer stretch.
            if run.end - run.start > prev.end - prev.start and np.isfinite(run.rho):
                prev.lag, prev.rho = run.lag, run.rho
            prev.end = run.end
            continue
        if prev is not None and prev.lag is None and run.lag is None:
            prev.end = run.end
            continue
        out.append(run)
    return out


def fade_frames(gain_db: np.ndarray, ref_db: float, fade_db: float) -> int:
    """Frames from the start of `gain_db` until the gain first comes within fade_db of
    ref_db (0 when it starts there). NaN frames (silent raw) are skipped.

    Args:
        gain_db : np.ndarray [shape=(n,)], edit level minus raw level per frame, in the
            order away from the edge (reverse it for a fade-out)
    """
    g = gain_db[np.isfinite(gain_db)]
    if len(g) < 5:
        return 0
    smooth = scipy.signal.medfilt(gain_db, 5) if len(gain_db) >= 5 else gain_db
    reached = np.flatnonzero(np.nan_to_num(smooth, nan=ref_db) >= ref_db - fade_db)
    return int(reached[0]) if len(reached) else len(gain_db)
