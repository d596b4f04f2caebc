"""Mastering of a synthetic edit: EQ, compression, lowpass, loudness, limiter, rate, MP3.

The presets (none, mild, heavy) live in SynthConfig.mastering. Nothing here moves audio
in time: an MP3 round trip has its decoder delay removed unless the config keeps it.
"""
from __future__ import annotations

import io
from functools import lru_cache

import numpy as np

from ..errors import UserError
from .config import MasteringConfig, MasteringPreset

PRESETS = ("none", "mild", "heavy")
LOWPASS_ORDER = 8  # Butterworth, 48 dB per octave (order 4 run both ways)


def preset(config: MasteringConfig, name: str) -> MasteringPreset:
    """The preset called `name` ('none', 'mild' or 'heavy'); a UserError for any other."""
    if name not in PRESETS:
        raise UserError(f"unknown mastering '{name}'; choose one of {', '.join(PRESETS)}")
    return getattr(config, name)


def master(y: np.ndarray, sr: int, p: MasteringPreset, rng: np.random.Generator, *,
           keep_codec_delay: bool = False) -> tuple[np.ndarray, int, list[dict], float]:
    """Master an edit.

    Args:
        y : np.ndarray [shape=(n, channels)], float32, the unmastered edit at `sr`.
        p: the preset.
        rng: draws the EQ frequency.
        keep_codec_delay: keep the MP3 decoder's delay at the start (the edit then starts
            late by the returned offset).

    Returns:
        (mastered (m, channels) float32 in [-1, 1], its sample rate, the chain as a list of
        {"stage": ..., params} dicts, offset_s: seconds the audio starts late by).
    """
    from pedalboard import Compressor, Gain, HighpassFilter, Limiter, PeakFilter, Pedalboard

    chain: list[dict] = []
    stages = []
    if p.highpass_hz > 0:
        stages.append(HighpassFilter(cutoff_frequency_hz=p.highpass_hz))
        chain.append({"stage": "highpass", "cutoff_hz": p.highpass_hz})
    if p.eq_gain_db:
        hz = float(np.exp(rng.uniform(np.log(p.eq_hz[0]), np.log(p.eq_hz[1]))))
        stages.append(PeakFilter(cutoff_frequency_hz=hz, gain_db=p.eq_gain_db, q=p.eq_q))
        chain.append({"stage": "peak_eq", "freq_hz": round(hz, 1), "gain_db": p.eq_gain_db, "q": p.eq_q})
    if p.comp_ratio > 1:
        stages.append(Compressor(threshold_db=p.comp_threshold_db, ratio=p.comp_ratio,
                                 attack_ms=10.0, release_ms=120.0))
        chain.append({"stage": "compressor", "threshold_db": p.comp_threshold_db, "ratio": p.comp_ratio,
                      "attack_ms": 10.0, "release_ms": 120.0})
    out = Pedalboard(stages)(y.T.copy(), sr) if stages else y.T.copy()
    edit_sr = p.edit_sr or sr
    if edit_sr != sr:
        import soxr

        out = soxr.resample(out.T, sr, edit_sr, quality="VHQ").T
        chain.append({"stage": "resample", "from_sr": sr, "to_sr": edit_sr})
    if p.loudness_lufs is not None:
        gain_db = p.loudness_lufs - _loudness_lufs(out, edit_sr)
        out *= np.float32(10 ** (gain_db / 20))
        chain.append({"stage": "loudness", "target_lufs": p.loudness_lufs, "gain_db": round(gain_db, 2)})
    if p.limiter_db is not None:
        # pedalboard's Limiter adds make-up gain up to 0 dBFS; the Gain after it undoes that,
        # so the ceiling is limiter_db and audio below it keeps its level.
        out = Pedalboard([Limiter(threshold_db=p.limiter_db, release_ms=100.0),
                          Gain(gain_db=p.limiter_db)])(out, edit_sr)
        chain.append({"stage": "limiter", "threshold_db": p.limiter_db, "release_ms": 100.0})
    if p.lowpass_hz > 0:
        # After the limiter's clipping, steep (pedalboard's is 6 dB/octave) and zero-phase
        # (run forwards and backwards), so it moves nothing in time.
        from scipy.signal import butter, sosfiltfilt

        sos = butter(LOWPASS_ORDER // 2, p.lowpass_hz, btype="low", fs=edit_sr, output="sos")
        out = sosfiltfilt(sos, out, axis=1).astype(np.float32)
        chain.append({"stage": "lowpass", "cutoff_hz": p.lowpass_hz, "order": LOWPASS_ORDER,
                      "zero_phase": True})
    offset_s = 0.0
    if p.mp3_quality:
        n = out.shape[1]
        decoded = _mp3_round_trip(out, edit_sr, p.mp3_quality)
        delay = mp3_delay(edit_sr, out.shape[0], p.mp3_quality)
        if not keep_codec_delay:
            decoded = decoded[:, delay:]
        else:
            offset_s = delay / edit_sr
            n += delay
        out = np.zeros((decoded.shape[0], n), np.float32)
        out[:, :min(n, decoded.shape[1])] = decoded[:, :n]
        chain.append({"stage": "mp3", "quality": p.mp3_quality, "decoder_delay_samples": delay,
                      "delay_removed": not keep_codec_delay})
    return np.clip(out.T, -1.0, 1.0).astype(np.float32), edit_sr, chain, offset_s


def _loudness_lufs(y: np.ndarray, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770) of channels-first audio; -70 for silence."""
    import pyloudnorm

    value = pyloudnorm.Meter(sr).integrated_loudness(y.T.astype(np.float64))
    return float(value) if np.isfinite(value) else -70.0


def _mp3_round_trip(y: np.ndarray, sr: int, quality: str) -> np.ndarray:
    """Encode channels-first audio to MP3 in memory and decode it again (channels-first)."""
    from pedalboard.io import AudioFile

    buf = io.BytesIO()
    with AudioFile(buf, "w", sr, y.shape[0], format="mp3", quality=quality) as fh:
        fh.write(y.astype(np.float32))
    buf.seek(0)
    with AudioFile(buf) as fh:
        return fh.read(fh.frames)


@lru_cache(maxsize=16)
def mp3_delay(sr: int, channels: int, quality: str) -> int:
    """Samples the MP3 round trip delays audio by, measured on a click train."""
    clicks = np.zeros((channels, sr), np.float32)
    clicks[:, sr // 4::sr // 8] = 0.5
    decoded = _mp3_round_trip(clicks, sr, quality)[0]
    spectrum = np.fft.rfft(decoded[: 2 * sr], 4 * sr) * np.conj(np.fft.rfft(clicks[0], 4 * sr))
    corr = np.fft.irfft(spectrum, 4 * sr)
    return int(np.argmax(corr[: sr // 8]))
