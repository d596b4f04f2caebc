"""Auxiliary tasks of the RL agent: what it predicts besides its actions (tempo, energy,
phrase boundaries, the cursor beat's mel), their per-beat targets and their losses.

Targets look past the ±3 beats the observation shows (tempo and energy of the two bars
after it, a section boundary within the next phrase), so that they teach the encoder
something it cannot copy from its input; the mel target is the cursor beat's mean mel
(reconstruction). `AuxTables` holds them for every cursor position of one recording.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..features import DEFAULT_PARAMS, FeatureParams
from .actions import BEATS_PER_BAR, BEATS_PER_PHRASE
from .beat_features import BeatFeatures, feature_slice
from .state import CONTEXT_BEATS

AUX_TASKS = ("tempo", "energy", "phrase", "mel")
_RMS = feature_slice("spectral").start            # rms_db/80+1
_BEAT_S = feature_slice("rhythm").start + 3        # beat_s
AHEAD_START = CONTEXT_BEATS + 1                    # first beat the observation does not show
AHEAD_BEATS = 2 * BEATS_PER_BAR                    # tempo and energy: the two bars after it


@dataclass
class AuxTables:
    """Auxiliary targets of one recording for each cursor position 0..n_beats.

    tempo : np.ndarray [shape=(n_beats + 1,)], float32: 60 / mean beat length of beats
        cursor+4 .. cursor+11, over 200 (BPM / 200; 0 past the end)
    energy : np.ndarray [shape=(n_beats + 1,)], float32: mean rms (dB / 80 + 1) of those beats
    phrase : np.ndarray [shape=(n_beats + 1,)], float32: 1 when a section starts within
        beats cursor+1 .. cursor+16, else 0
    mel : np.ndarray [shape=(n_beats + 1, n_mels)], float32: the cursor beat's mean mel in
        [0, 1] (zeros once the cursor is past the last beat)
    """

    tempo: np.ndarray
    energy: np.ndarray
    phrase: np.ndarray
    mel: np.ndarray

    def at(self, cursors: np.ndarray) -> dict[str, np.ndarray]:
        """Targets at the given cursors (int array (n,)): {task: (n,) or (n, n_mels)}."""
        c = np.asarray(cursors, np.int64)
        return {"tempo": self.tempo[c], "energy": self.energy[c], "phrase": self.phrase[c],
                "mel": self.mel[c]}


def beat_mels(mel: np.ndarray, bounds_s: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Mean mel of each beat.

    Args:
        mel : np.ndarray [shape=(n_mels, t)], in [0, 1]
        bounds_s : np.ndarray [shape=(n_beats + 1,)], the beat grid

    Returns:
        np.ndarray [shape=(n_beats, n_mels)], float32
    """
    n_frames = mel.shape[1]
    frames = np.clip(np.rint(np.asarray(bounds_s) * params.frames_per_s).astype(np.int64), 0, n_frames)
    c = np.concatenate([np.zeros((mel.shape[0], 1)), np.cumsum(mel, axis=1, dtype=np.float64)], axis=1)
    lo, hi = frames[:-1], np.maximum(frames[1:], frames[:-1] + 1)
    lo = np.minimum(lo, n_frames - 1)
    hi = np.minimum(hi, n_frames)
    return ((c[:, hi] - c[:, lo]) / (hi - lo)).T.astype(np.float32)


def aux_tables(features: BeatFeatures, section: np.ndarray, mels: np.ndarray) -> AuxTables:
    """The auxiliary targets of a recording.

    Args:
        features: its beat grid and features.
        section : np.ndarray [shape=(n_beats,)], section id per beat (EditEnv.section).
        mels : np.ndarray [shape=(n_beats, n_mels)], from `beat_mels`.
    """
    n = features.n_beats
    x = features.features
    cursors = np.arange(n + 1)
    tempo = np.zeros(n + 1, np.float32)
    energy = np.zeros(n + 1, np.float32)
    for c in cursors:
        lo, hi = min(c + AHEAD_START, n), min(c + AHEAD_START + AHEAD_BEATS, n)
        if hi > lo:
            beat_s = float(np.mean(np.diff(features.bounds_s)[lo:hi]))
            tempo[c] = min(60.0 / max(beat_s, 1e-3) / 200.0, 2.0)
            energy[c] = float(np.mean(x[lo:hi, _RMS]))
    starts = np.flatnonzero(np.diff(np.asarray(section)) != 0) + 1    # beats where a section starts
    phrase = np.array([np.any((starts > c) & (starts <= c + BEATS_PER_PHRASE)) for c in cursors],
                      np.float32)
    mel = np.zeros((n + 1, mels.shape[1]), np.float32)
    mel[:n] = mels
    return AuxTables(tempo, energy, phrase, mel)


def aux_losses(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One loss per task: mean squared error for tempo, energy and mel, binary cross-entropy
    (on logits) for phrase.

    Args:
        pred: {task: (B,) or (B, n_mels)} from PolicyNetwork.aux
        target: the same shapes (AuxTables.at)
    """
    return {"tempo": F.mse_loss(pred["tempo"], target["tempo"]),
            "energy": F.mse_loss(pred["energy"], target["energy"]),
            "phrase": F.binary_cross_entropy_with_logits(pred["phrase"], target["phrase"]),
            "mel": F.mse_loss(pred["mel"], target["mel"])}
