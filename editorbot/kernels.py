"""Per-sample loops of the render's level path, compiled by numba (cached on disk after the
first call): the true-peak interpolator, the limiter's release and the loudness meter's
K-weighting. Each is a plain loop over samples that numpy would otherwise run as many
passes over the whole signal; the callers (limiter.py, loudness.py) import this module
when they first need it, so that importing the renderer does not load numba.
"""
from __future__ import annotations

import numba
import numpy as np

TRUE_PEAK_TAPS = 12  # taps per interpolated point: 6 samples either side (fixed, so the
                     # loop over them unrolls)


@numba.njit(cache=True, fastmath=True)
def true_peaks_into(x: np.ndarray, phases: np.ndarray, out: np.ndarray) -> None:
    """out[i] = the largest magnitude, over the channels, of sample i + TRUE_PEAK_TAPS // 2
    of x and of the points between it and the next that phases interpolate.

    Args:
        x : np.ndarray [shape=(channels, len(out) + TRUE_PEAK_TAPS)], float32, C-contiguous
        phases : np.ndarray [shape=(points, TRUE_PEAK_TAPS)], float32: per point between two
            samples, the taps that interpolate it from samples i + 1 .. i + TRUE_PEAK_TAPS of x
        out : np.ndarray [shape=(n,)], float32, written
    """
    n = out.shape[0]
    for i in range(n):
        out[i] = 0.0
    for c in range(x.shape[0]):
        xc = x[c]
        for i in range(n):
            v = abs(xc[i + TRUE_PEAK_TAPS // 2])
            if v > out[i]:
                out[i] = v
        for p in range(phases.shape[0]):
            h = phases[p]
            for i in range(n):
                s = np.float32(0.0)
                for k in range(TRUE_PEAK_TAPS):
                    s += h[k] * xc[i + 1 + k]
                s = abs(s)
                if s > out[i]:
                    out[i] = s


@numba.njit(cache=True)
def limiter_gains(wanted: np.ndarray, span: int, depth: float, decay: float,
                  held_tail: np.ndarray, gain: np.ndarray) -> float:
    """The limiter's gain for n = len(gain) samples, from what each sample wants.

    Per sample k: ahead = the least that samples k .. k + span want; the reduction d
    (1 - gain after release) is 1 - ahead unless the last sample's, times decay, is more;
    the gain is the mean of 1 - d over samples k - span .. k (it falls over span samples).

    Args:
        wanted : np.ndarray [shape=(n + span,)]: the gain each sample wants (<= 1), from
            the first of the n on
        depth: d before the first sample. decay: d's factor per sample.
        held_tail : np.ndarray [shape=(span,)]: 1 - d of the span samples before the first,
            oldest first; updated in place to the last span of these n
        gain : np.ndarray [shape=(n,)], written
    Returns:
        d after the last sample
    """
    n = gain.shape[0]
    held = np.empty(n + span)  # 1 - d from the first of held_tail on
    held[:span] = held_tail
    window = 0.0
    for j in range(span):
        window += held_tail[j]
    lows = np.empty(n + span, np.int64)  # indices of wanted, their values ascending
    first, last = 0, 0
    for t in range(n + span):
        while last > first and wanted[lows[last - 1]] >= wanted[t]:
            last -= 1
        lows[last] = t
        last += 1
        k = t - span
        if k < 0:
            continue
        while lows[first] < k:
            first += 1
        depth = depth * decay
        if 1.0 - wanted[lows[first]] > depth:
            depth = 1.0 - wanted[lows[first]]
        held[k + span] = 1.0 - depth
        window += held[k + span]
        gain[k] = window / (span + 1)
        window -= held[k]
    held_tail[:] = held[n:]
    return depth


@numba.njit(cache=True, inline="always")
def _two_biquads(y, k, u0, u1, v0, v1):
    """One sample through two biquads in transposed direct form II: k = (b0, b1, b2, a1, a2)
    of the first and then of the second; u and v their states. Returns (out, u0, u1, v0, v1)."""
    first = k[0] * y + u0
    u0 = k[1] * y - k[3] * first + u1
    u1 = k[2] * y - k[4] * first
    out = k[5] * first + v0
    v0 = k[6] * first - k[8] * out + v1
    v1 = k[7] * first - k[9] * out
    return out, u0, u1, v0, v1


@numba.njit(cache=True)
def weighted_energy(x: np.ndarray, sos: np.ndarray, state: np.ndarray, weights: np.ndarray,
                    marks: np.ndarray, at_marks: np.ndarray) -> float:
    """Filters x through two biquads (transposed direct form II, state carried) and sums
    the channel-weighted squares of what comes out (the K-weighted energy of BS.1770).

    Args:
        x : np.ndarray [shape=(n, channels)], float
        sos : np.ndarray [shape=(2, 6)], float64: b0 b1 b2 1 a1 a2 per biquad (a0 = 1)
        state : np.ndarray [shape=(2, 2, channels)], float64, updated in place
        weights : np.ndarray [shape=(channels,)]: each channel's weight in the sum
        marks : np.ndarray [shape=(m,)], int64, ascending in [0, n]: at_marks[j] is written
            with the sum over samples before marks[j]
    Returns:
        the sum over all n samples
    """
    n = x.shape[0]
    channels = x.shape[1]
    energy = np.zeros(n)
    k = (sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5],
         sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5])
    for c in range(0, channels, 2):
        # Two channels at a time, their state in locals: two independent chains of
        # dependent multiply-adds run side by side. An odd last channel runs alone (its
        # twin, weighted 0, is a copy whose state is dropped).
        e = c + 1 if c + 1 < channels else c
        w, we = weights[c], (weights[e] if e != c else 0.0)
        u0, u1, v0, v1 = state[0, 0, c], state[0, 1, c], state[1, 0, c], state[1, 1, c]
        p0, p1, q0, q1 = state[0, 0, e], state[0, 1, e], state[1, 0, e], state[1, 1, e]
        for i in range(n):
            f, u0, u1, v0, v1 = _two_biquads(np.float64(x[i, c]), k, u0, u1, v0, v1)
            g, p0, p1, q0, q1 = _two_biquads(np.float64(x[i, e]), k, p0, p1, q0, q1)
            energy[i] += w * f * f + we * g * g
        state[0, 0, c], state[0, 1, c], state[1, 0, c], state[1, 1, c] = u0, u1, v0, v1
        if e != c:
            state[0, 0, e], state[0, 1, e], state[1, 0, e], state[1, 1, e] = p0, p1, q0, q1
    total = 0.0
    j = 0
    for i in range(n):
        while j < marks.shape[0] and marks[j] == i:
            at_marks[j] = total
            j += 1
        total += energy[i]
    while j < marks.shape[0]:
        at_marks[j] = total
        j += 1
    return total
