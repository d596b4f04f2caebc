"""True peaks and a look-ahead true-peak limiter for audio that arrives in blocks.

The renderer uses them to bring an edit to the editor's loudness when its peaks would
pass full scale: a few dB of peaks are limited instead of turning the whole edit down.

True peak: per sample, the largest magnitude over the channels of the signal oversampled
OVERSAMPLE times (a windowed-sinc interpolator, as BS.1770's true-peak meter does), at the
sample and at the three points that follow it.

The limiter's gain is the same on every channel (the image stays). At each sample it is at
most ceiling / true peak of every sample up to LOOKAHEAD_MS ahead (so it is down before a
peak arrives, and no limited true peak passes the ceiling), falls to that over LOOKAHEAD_MS
in a straight line, and recovers exponentially over RELEASE_MS. The output lags the input
by `latency` samples; `finish` returns what is held back.
"""
from __future__ import annotations

import numpy as np

from .kernels import TRUE_PEAK_TAPS, limiter_gains, true_peaks_into

OVERSAMPLE = 4
CONTEXT = TRUE_PEAK_TAPS // 2  # samples either side that the interpolator reads
LOOKAHEAD_MS = 5.0           # the gain falls over this before a peak
RELEASE_MS = 50.0            # and recovers over this after it (time constant)


def _interpolator() -> np.ndarray:
    """OVERSAMPLE-times upsampling filter: OVERSAMPLE * 2 * CONTEXT + 1 taps, cut-off at
    the input's Nyquist frequency; phase p (taps[p::OVERSAMPLE]) interpolates the points
    p / OVERSAMPLE of a sample after each sample."""
    import scipy.signal
    return OVERSAMPLE * scipy.signal.firwin(OVERSAMPLE * 2 * CONTEXT + 1, 1.0 / OVERSAMPLE)


def true_peaks(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Per-sample true peak of x's middle (CONTEXT samples at each end are context only).

    Args:
        x : np.ndarray [shape=(n + 2 * CONTEXT, channels)]
        taps : the filter of _interpolator()
    Returns:
        peaks : np.ndarray [shape=(n,)], linear: the max over the channels and over the
            sample and the OVERSAMPLE - 1 points between it and the next
    """
    n = len(x) - 2 * CONTEXT
    if n <= 0:
        return np.zeros(0, np.float32)
    peaks = np.empty(n, np.float32)
    true_peaks_into(np.ascontiguousarray(np.asarray(x, np.float32).T), _phases(taps), peaks)
    return peaks


def _phases(taps: np.ndarray) -> np.ndarray:
    """Per point p / OVERSAMPLE after a sample (p = 1 .. OVERSAMPLE - 1), its 2 * CONTEXT
    taps in the order of the samples they weigh (the first is CONTEXT - 1 before it)."""
    return np.ascontiguousarray(
        np.stack([taps[p::OVERSAMPLE][::-1] for p in range(1, OVERSAMPLE)]), np.float32)


class TruePeakMeter:
    """Feed blocks (n, channels) in order with `add`; `peak` is the largest true peak fed
    (linear), `finish` measures the last CONTEXT samples too."""

    def __init__(self, channels: int):
        self.taps = _interpolator()
        self.tail = np.zeros((2 * CONTEXT, channels), np.float32)
        self.peak = 0.0

    def add(self, block: np.ndarray) -> None:
        x = np.concatenate([self.tail, block])
        self.peak = max(self.peak, float(true_peaks(x, self.taps).max(initial=0.0)))
        self.tail = x[-2 * CONTEXT:]

    def finish(self) -> float:
        self.add(np.zeros((CONTEXT, self.tail.shape[1]), np.float32))
        return self.peak


class Limiter:
    """Look-ahead true-peak limiter (see the module docstring).

    `process(block)` returns the limited audio of as many samples as are known (the output
    runs `latency` samples behind the input); `finish()` returns the rest, so that the
    output has as many samples as were fed. `limit_db` is the largest gain reduction
    applied so far (dB, >= 0).

    Args:
        sr: sample rate (Hz). channels: of every block.
        ceiling_dbtp: no true peak of the output passes it (so no sample either).
    """

    def __init__(self, sr: int, channels: int, *, ceiling_dbtp: float):
        self.taps = _interpolator()
        self.ceiling = 10.0 ** (ceiling_dbtp / 20.0)
        self.span = 2 * max(1, int(round(LOOKAHEAD_MS * sr / 2000)))  # even
        self.log_decay = -1.0 / max(RELEASE_MS * sr / 1000, 1.0)       # per sample
        self.latency = self.span + CONTEXT
        self.x = np.zeros((CONTEXT, channels), np.float32)  # input from x_at on
        self.x_at = -CONTEXT
        self.fed = 0        # input samples fed
        self.peaks_to = 0   # wanted gains (ceiling / true peak) known before this sample
        self.wanted = np.zeros(0, np.float32)   # from held_to on
        self.held = np.ones(self.span)          # gains after release, from out - span on
        self.held_to = 0    # gains after release known before this sample
        self.depth = 0.0    # reduction (1 - gain) of the last gain after release
        self.out = 0        # samples returned
        self.lowest = 1.0   # lowest gain applied

    @property
    def limit_db(self) -> float:
        return -20.0 * float(np.log10(self.lowest))

    def process(self, block: np.ndarray) -> np.ndarray:
        self.x = np.concatenate([self.x, np.asarray(block, np.float32)])
        self.fed += len(block)
        # 1. The gain each sample wants: ceiling over its true peak (never above 1).
        ready = self.fed - CONTEXT
        peaks = true_peaks(self.x[self.peaks_to - CONTEXT - self.x_at:], self.taps)
        with np.errstate(divide="ignore"):  # in place, float32: a pass less over the block
            wanted = np.minimum(np.divide(np.float32(self.ceiling), peaks, out=peaks), 1.0,
                                out=peaks)
        self.wanted = np.concatenate([self.wanted, wanted])
        self.peaks_to = ready
        # 2. Each sample's gain: at most what every sample up to `span` ahead wants, after
        #    release, falling over `span` samples (kernels.limiter_gains).
        n = len(self.wanted) - self.span
        if n <= 0:
            return np.zeros((0, self.x.shape[1]), np.float32)
        gain = np.empty(n, np.float32)
        self.depth = limiter_gains(self.wanted, self.span, self.depth,
                                   float(np.exp(self.log_decay)), self.held, gain)
        self.wanted = self.wanted[n:]
        self.held_to += n
        out = self.x[self.out - self.x_at:self.held_to - self.x_at] * gain[:, None]
        self.lowest = min(self.lowest, float(gain.min(initial=1.0)))
        self.out = self.held_to
        keep = min(self.out, self.peaks_to - CONTEXT)
        self.x = self.x[keep - self.x_at:]
        self.x_at = keep
        return out

    def finish(self) -> np.ndarray:
        """The last `latency` samples (the input is taken to be silent after its end)."""
        fed = self.fed
        out = self.process(np.zeros((self.latency, self.x.shape[1]), np.float32))
        return out[:fed - (self.out - len(out))]
