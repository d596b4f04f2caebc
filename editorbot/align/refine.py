"""From a frame-level path to sample-exact segments: each segment's lag, each join's seam,
crossfade length, gains and fades, measured on the analysis audio.

Lags come from normalised cross-correlation of the edit with the raw around the path's
offset; a join's seam is where the edit stops following one segment's raw audio and starts
following the next, found from two-source least-squares gains in short windows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal


PRE_EMPHASIS = 0.95    # matching runs on y[n] - 0.95 y[n - 1]
GAIN_WINDOW = 64       # samples per window when following the two sources across a join
GAIN_RANGE = 4.0       # a side's fitted gain stays within this factor of its typical gain
CROSSFADE_SHARE = 0.1  # both sides above this share of the summed gain: inside a crossfade
CROSSFADE_SPAN = 0.86  # share of an equal-power crossfade where both shares exceed 0.1
SHARE_SMOOTH = 5       # windows pooled for the two-source fit that finds crossfades
SEAM_RETRIES = 3       # searches around a seam found at the edge of the window
_EPS = 1e-12


@dataclass
class Run:
    """A stretch of edit samples [start, end) that plays the raw at sample lag `lag`
    (raw sample = edit sample + lag), or nothing from the raw (lag None).

    rho: normalised correlation of the edit with the raw at that lag (nan: not measured).
    crossfade: samples of crossfade centred on the seam before this run (0: hard cut).
    ambiguous_join: the raw audio on both sides of the seam before this run is the same
        (identical material), so the seam could be anywhere near there.
    """

    start: int
    end: int
    lag: float | None
    rho: float = float("nan")
    crossfade: int = 0
    ambiguous_join: bool = False


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
    """Pre-emphasised raw samples [lo + lag, hi + lag) (lag rounded), zeros outside the raw."""
    return _emphasised(y_raw, lo + int(round(lag)), hi + int(round(lag)))


def _emphasised(y: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """y[lo:hi] through the pre-emphasis y[n] - PRE_EMPHASIS * y[n - 1], as float64 (zeros
    outside y). Matching on it weighs the bass down, whose phase EQ and high-pass filters
    shift, and the detail up."""
    x = _padded(y, lo - 1, hi).astype(np.float64)
    return x[1:] - PRE_EMPHASIS * x[:-1]


def locate_seam(y_edit: np.ndarray, y_raw: np.ndarray, lo: int, hi: int, lag_a: float,
                lag_b: float, guess: int) -> tuple[int, int, bool]:
    """Where, within edit samples [lo, hi), the edit stops playing the raw at lag_a and
    starts playing it at lag_b.

    In short windows, each side's raw audio is fitted to the edit with its own gain
    (kept within GAIN_RANGE of the side's typical gain, so that a compressor's moving
    gain is followed but silence against loud audio still counts as a mismatch). The seam
    splits the windows, then the samples, where side a's error before plus side b's error
    after is least. The crossfade is the stretch around the seam where a two-source fit
    gives both sides a share of the gain.

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
    aa, bb, ab = (aw * aw).sum(1), (bw * bw).sum(1), (aw * bw).sum(1)
    ae, be, ee = (aw * ew).sum(1), (bw * ew).sum(1), (ew * ew).sum(1)
    third = max(2, m // 3)
    ga = _fitted_gain(ae, aa, third, from_start=True)
    gb = _fitted_gain(be, bb, third, from_start=False)
    err_a = ee - 2 * ga * ae + ga * ga * aa
    err_b = ee - 2 * gb * be + gb * gb * bb
    cost = np.concatenate([[0.0], np.cumsum(err_a)]) + np.concatenate([np.cumsum(err_b[::-1])[::-1], [0.0]])
    k = int(np.argmin(cost))                      # first window of side b
    # The same split, sample by sample, within a window either side.
    c0, c1 = max(0, k - 1) * w, min(m, k + 1) * w
    gl, gr = ga[max(0, k - 1)], gb[min(m - 1, k)]
    ra = np.concatenate([[0.0], np.cumsum((e[c0:c1] - gl * a[c0:c1]) ** 2)])
    rb = np.concatenate([np.cumsum(((e[c0:c1] - gr * b[c0:c1]) ** 2)[::-1])[::-1], [0.0]])
    seam = c0 + int(np.argmin(ra + rb))
    # Crossfade: contiguous windows around the seam where both sides hold a gain share.
    aa, bb, ab, ae, be = (_box(x, SHARE_SMOOTH) for x in (aa, bb, ab, ae, be))
    det = aa * bb - ab * ab
    ok = det > 1e-3 * (aa * bb + _EPS)
    safe = np.where(ok, det, 1.0)
    ga2 = (ae * bb - be * ab) / safe
    gb2 = (be * aa - ae * ab) / safe
    share = np.where(ok & (ga2 > 0) & (gb2 > 0), gb2 / np.maximum(ga2 + gb2, _EPS), np.nan)
    both = (share > CROSSFADE_SHARE) & (share < 1 - CROSSFADE_SHARE)
    i = min(seam // w, m - 1)
    if not both[max(0, i - 1):i + 2].any():
        return lo + seam, 0, False
    i0 = i1 = i if both[i] else (i - 1 if i > 0 and both[i - 1] else i + 1)
    while i0 > 0 and both[i0 - 1]:
        i0 -= 1
    while i1 < m - 1 and both[i1 + 1]:
        i1 += 1
    span = (i1 - i0 + 1) * w
    if span <= 2 * w:
        return lo + seam, 0, False
    # A crossfade's seam is its centre (the error split leans to the quieter side).
    return lo + (i0 + i1 + 1) * w // 2, int(round(span / CROSSFADE_SPAN)), False


def place_seams(runs: list[Run], y_edit: np.ndarray, y_raw: np.ndarray, half: int) -> None:
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
            seam, crossfade, same = locate_seam(y_edit, y_raw, lo, hi, prev.lag, run.lag, guess)
            edge = 4 * GAIN_WINDOW
            if same or seam == guess or lo + edge < seam < hi - edge:
                break
            guess = seam
        prev.end = run.start = seam
        run.crossfade, run.ambiguous_join = crossfade, same


def _box(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving sum over `width` windows (edges use what is there)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    return c[np.minimum(i + width // 2 + 1, len(x))] - c[np.maximum(i - width // 2, 0)]


def _fitted_gain(xe: np.ndarray, xx: np.ndarray, n_ref: int, from_start: bool) -> np.ndarray:
    """Per-window least-squares gain of one source, kept within GAIN_RANGE of the typical
    gain of the n_ref windows at the source's own end of the search window."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(xx > _EPS, xe / xx, np.nan)
    ref_g, ref_x = (g[:n_ref], xx[:n_ref]) if from_start else (g[-n_ref:], xx[-n_ref:])
    use = np.isfinite(ref_g) & (ref_x > 0.05 * (ref_x.max(initial=0.0) + _EPS))
    typical = float(np.median(ref_g[use])) if use.sum() >= 2 else 1.0
    if not typical > 0:
        typical = 1.0
    return np.clip(np.nan_to_num(g, nan=typical), typical / GAIN_RANGE, typical * GAIN_RANGE)


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
        lo, hi = j0 * hop - half, j1 * hop - half
        e = _emphasised(y_edit, lo, hi).reshape(-1, hop)
        r = _shifted(y_raw, lo, hi, run.lag).reshape(-1, hop)
        e = e - e.mean(axis=1, keepdims=True)
        r = r - r.mean(axis=1, keepdims=True)
        er = np.einsum("ij,ij->i", e, r)
        den = np.sqrt(np.einsum("ij,ij->i", e, e) * np.einsum("ij,ij->i", r, r))
        out[j0:j1] = np.where(den > 1e-12, er / np.maximum(den, 1e-30), np.nan)
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
