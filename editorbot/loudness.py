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
        import pyloudnorm  # imports slowly (about 0.5 s): only a render that measures pays
        meter = pyloudnorm.Meter(sr)  # its K-weighting stages, so both measures agree
        self.sos = np.array([np.concatenate([f.b * f.passband_gain, f.a]) / f.a[0]
                             for f in meter._filters.values()], np.float64)
        if self.sos.shape != (2, 6):
            raise ValueError(f"K-weighting of {len(self.sos)} filters: expected 2")
        self.state = np.zeros((2, 2, channels))
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
        from .kernels import weighted_energy
        x = np.asarray(block)
        end = self.n + len(x)
        marks = []
        while self._boundary(self.next_step) <= end:
            marks.append(self._boundary(self.next_step) - self.n)
            self.next_step += 1
        at_marks = np.empty(len(marks))
        energy = weighted_energy(x, self.sos, self.state, self.weights,
                                 np.array(marks, np.int64), at_marks)
        self.at_steps.extend((self.energy + at_marks).tolist())
        self.energy += energy
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
