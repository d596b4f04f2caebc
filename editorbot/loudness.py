"""Integrated loudness (ITU-R BS.1770-4, in LUFS) of audio that arrives in blocks.

The same measure as pyloudnorm's Meter.integrated_loudness (its K-weighting filters, 400 ms
blocks every 100 ms, the -70 LUFS absolute and -10 LU relative gates), kept as a running
state so that an hour of audio is measured without holding it: per 100 ms step only one
number (the channel-weighted energy) is kept.
"""
from __future__ import annotations

import os

import numpy as np

BLOCK_S = 0.4          # gating block
STEP_S = 0.1           # blocks start every STEP_S (75% overlap)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs; channels past these weigh 1


class LoudnessMeter:
    """Feed blocks of audio (n, channels) in order with `add`; `integrated_lufs` says the
    integrated loudness of everything fed so far."""

    def __init__(self, sr: int, channels: int):
        import pyloudnorm  # both import slowly (about 0.5 s): only a render that measures pays
        import scipy.signal
        self.lfilter = scipy.signal.lfilter
        meter = pyloudnorm.Meter(sr)  # its K-weighting stages, so both measures agree
        self.stages = [(f.b * f.passband_gain, f.a) for f in meter._filters.values()]
        self.state = [np.zeros((max(len(a), len(b)) - 1, channels)) for b, a in self.stages]
        self.weights = np.array([CHANNEL_WEIGHTS[c] if c < len(CHANNEL_WEIGHTS) else 1.0
                                 for c in range(channels)])
        self.sr = sr
        self.n = 0              # samples fed
        self.energy = 0.0       # weighted energy of all samples fed
        self.at_steps = [0.0]   # weighted energy fed before each step boundary
        self.next_step = 1

    def _boundary(self, k: int) -> int:
        return int(np.floor(k * STEP_S * self.sr + 1e-9))

    def add(self, block: np.ndarray) -> None:
        """block : np.ndarray [shape=(n, channels)], float"""
        y = np.asarray(block, np.float64)
        for i, (b, a) in enumerate(self.stages):
            y, self.state[i] = self.lfilter(b, a, y, axis=0, zi=self.state[i])
        cum = np.cumsum(np.square(y) @ self.weights)
        end = self.n + len(y)
        while self._boundary(self.next_step) <= end:
            at = self._boundary(self.next_step) - self.n
            self.at_steps.append(self.energy + (float(cum[at - 1]) if at > 0 else 0.0))
            self.next_step += 1
        self.energy += float(cum[-1]) if len(cum) else 0.0
        self.n = end

    def integrated_lufs(self) -> float:
        """Gated integrated loudness in LUFS; -inf for silence or under BLOCK_S of audio."""
        per_block = int(round(BLOCK_S / STEP_S))
        n_blocks = int(round((self.n / self.sr - BLOCK_S) / STEP_S)) + 1
        if n_blocks < 1:
            return float("-inf")
        # Blocks that reach past the end hold what there is (as pyloudnorm measures them).
        steps = np.array(self.at_steps + [self.energy] * (n_blocks + per_block), np.float64)
        z = (steps[per_block:n_blocks + per_block] - steps[:n_blocks]) / (BLOCK_S * self.sr)
        with np.errstate(divide="ignore"):
            level = -0.691 + 10.0 * np.log10(z)
        gated = z[level >= ABSOLUTE_GATE_LUFS]
        if len(gated) == 0:
            return float("-inf")
        relative = -0.691 + 10.0 * np.log10(gated.mean()) + RELATIVE_GATE_LU
        kept = z[(level > relative) & (level > ABSOLUTE_GATE_LUFS)]
        return float(-0.691 + 10.0 * np.log10(kept.mean())) if len(kept) else float("-inf")


def file_loudness(path: str | os.PathLike) -> float:
    """Integrated loudness (LUFS) of an audio file at its own rate and channels, read in blocks."""
    from .audio import iter_blocks, probe
    info = probe(path)
    meter = LoudnessMeter(info.sr, info.channels)
    for block in iter_blocks(info.path, info=info):
        meter.add(block)
    return meter.integrated_lufs()
