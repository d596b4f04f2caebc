"""Mel features on the analysis grid: mono 22050 Hz, n_fft 2048, hop 256, 128 mels.

The mel is computed in blocks of frames so that a 60-minute file never holds its whole
complex STFT; the values equal librosa's (centred frames, zero padding, Slaney mel).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

BLOCK_FRAMES = 2048  # STFT frames per block (about 24 s at hop 256)


@dataclass(frozen=True)
class FeatureParams:
    """The analysis grid. Every cached array records these; a mismatch means recompute.

    The mel is power (|STFT|^2) through a Slaney-normalised filterbank, converted to dB
    relative to the file's own maximum, floored at -top_db, then mapped to [0, 1] as
    (dB + top_db) / top_db.
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 256
    n_mels: int = 128
    top_db: float = 80.0
    fmin: float = 0.0
    fmax: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def frames_per_s(self) -> float:
        return self.sr / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Frames of a centred STFT of `n_samples` samples."""
        return 1 + n_samples // self.hop_length

    def frame_to_s(self, frame):
        return np.asarray(frame) * self.hop_length / self.sr

    def s_to_frame(self, seconds):
        return np.rint(np.asarray(seconds) * self.sr / self.hop_length).astype(np.int64)


DEFAULT_PARAMS = FeatureParams()


@lru_cache(maxsize=8)
def _mel_basis(params: FeatureParams) -> np.ndarray:
    import librosa  # imported here: it costs about a second, and most callers never need it

    return librosa.filters.mel(sr=params.sr, n_fft=params.n_fft, n_mels=params.n_mels,
                               fmin=params.fmin, fmax=params.fmax).astype(np.float32)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> np.ndarray:
    # The periodic Hann window, as scipy.signal.get_window("hann", n_fft) and librosa use.
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft_blocks(y: np.ndarray, n_fft: int, hop_length: int, *, block_frames: int = BLOCK_FRAMES):
    """The centred STFT of `y` (zero padding, periodic Hann window), block by block, so that
    a 60-minute file never holds its whole complex STFT. Every spectral front end of the
    project (the mel, the rule-based editor's analysis, the RL beat features) frames its
    audio here.

    Args:
        y : np.ndarray [shape=(n,)], float32 mono audio

    Yields:
        (f0, frames, spec): the first frame's index; frames : np.ndarray [shape=(m, n_fft)],
        the unwindowed samples of frames f0..f0+m-1; spec : np.ndarray
        [shape=(m, n_fft // 2 + 1)], complex, their spectra. 1 + n // hop_length frames in all.
    """
    import scipy.fft  # imported here to keep `import editorbot...` light

    half = n_fft // 2
    n_frames = 1 + len(y) // hop_length
    window = _window(n_fft)
    for f0 in range(0, n_frames, block_frames):
        f1 = min(f0 + block_frames, n_frames)
        # Samples under frames f0..f1-1 of the zero-padded signal.
        a, b = f0 * hop_length - half, (f1 - 1) * hop_length + half
        seg = y[max(a, 0):min(b, len(y))]
        if a < 0 or b > len(y):
            seg = np.pad(seg, (max(0, -a), max(0, b - len(y))))
        frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop_length]
        yield f0, frames, scipy.fft.rfft(frames * window, axis=1, workers=-1)


def mel_power(y: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """Mel power spectrogram, equal to librosa.feature.melspectrogram(y=y, ...) with the
    contract's parameters, computed block by block.

    Args:
        y : np.ndarray [shape=(n,)], mono audio at params.sr

    Returns:
        S : np.ndarray [shape=(n_mels, t)], float32, t = 1 + n // hop_length
    """
    y = np.asarray(y, dtype=np.float32)
    basis = _mel_basis(params)
    out = np.empty((params.n_mels, params.n_frames(len(y))), np.float32)
    for f0, _, spec in stft_blocks(y, params.n_fft, params.hop_length):
        power = spec.real ** 2 + spec.imag ** 2
        out[:, f0:f0 + len(power)] = basis @ power.T.astype(np.float32, copy=False)
    return out


def normalize_db(S: np.ndarray, params: FeatureParams = DEFAULT_PARAMS, *,
                 ref: float | None = None) -> np.ndarray:
    """Map a mel power spectrogram to [0, 1]: (dB re max, floored at -top_db + top_db) / top_db.

    Works in place on S (float32) and returns it.

    Args:
        ref: the power that maps to 1.0 (default: S.max()). Stems pass their mix's maximum
            so that every stem sits on the mix's dB scale.
    """
    ref = float(S.max(initial=0.0)) if ref is None else float(ref)
    if ref <= 0.0:  # digital silence: everything sits at the floor
        S[...] = 0.0
        return S
    np.maximum(S, 1e-10 * ref, out=S)
    np.log10(S, out=S)
    S *= 10.0
    S -= 10.0 * np.log10(ref)
    S += params.top_db
    S /= params.top_db
    np.clip(S, 0.0, 1.0, out=S)
    return S


def mel(y: np.ndarray, params: FeatureParams = DEFAULT_PARAMS) -> np.ndarray:
    """The contract's mel: (n_mels, t) float32 in [0, 1]."""
    return normalize_db(mel_power(y, params), params)
