"""Audio effects that the RL actions put on segments: reverse, speed, pitch, distortion,
reverb (and, through editorbot.render's own registry, gain and the EQ shelves).

Each effect here works on a whole segment at once (reversing or time-stretching needs
all of it). `register(register_effect)` adds them to editorbot.render's registry, so a
Segment.effect {"name": ..., "params": {...}} naming one of them renders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

MIN_STRETCH_FRAMES = 4096  # shorter pieces are too short for the time stretcher to work on


@dataclass(frozen=True)
class WholeEffect:
    """An effect applied to a whole segment.

    fn(audio (n_in, ch), sr, params) -> audio (n_out, ch); raw_ratio(params) = n_in / n_out,
    the raw samples read per sample played (1 unless the effect changes the length).
    """

    fn: Callable[[np.ndarray, int, dict], np.ndarray]
    defaults: dict
    help: str
    raw_ratio: Callable[[dict], float] = lambda params: 1.0


def _reverse(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    return np.ascontiguousarray(audio[::-1])


def _stretch(audio: np.ndarray, sr: int, ratio: float, semitones: float) -> np.ndarray:
    """Time-stretch by `ratio` (2: twice as fast, half as long) and shift the pitch by
    `semitones`, with Rubber Band through pedalboard (exact in pitch and length)."""
    import pedalboard  # heavy; only segments with these effects need it

    n_out = int(round(len(audio) / ratio))
    if len(audio) < MIN_STRETCH_FRAMES:
        # Too short to analyse: resample the few samples linearly (pitch moves with speed).
        x = np.linspace(0, len(audio) - 1, max(n_out, 1))
        return np.stack([np.interp(x, np.arange(len(audio)), c) for c in audio.T],
                        axis=1).astype(np.float32)
    out = pedalboard.time_stretch(np.ascontiguousarray(audio.T, np.float32), float(sr),
                                  stretch_factor=float(ratio),
                                  pitch_shift_in_semitones=float(semitones),
                                  preserve_formants=False)
    return np.ascontiguousarray(out.T, np.float32)


def _speed(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    return _stretch(audio, sr, params["ratio"], 0.0)


def _pitch(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    return _stretch(audio, sr, 1.0, params["semitones"])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _distortion(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    """tanh drive (pedalboard.Distortion), then scaled back to the input's RMS so that the
    effect changes the timbre, not the loudness."""
    import pedalboard

    out = pedalboard.Distortion(drive_db=params["drive_db"])(
        np.ascontiguousarray(audio.T, np.float32), sr).T
    level_in, level_out = _rms(audio), _rms(out)
    if level_out > 0:
        out = out * (level_in / level_out)
    return np.ascontiguousarray(out, np.float32)


def _reverb(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    """Freeverb (pedalboard.Reverb); the tail past the segment's end is cut with it."""
    import pedalboard

    out = pedalboard.Reverb(room_size=params["room_size"], damping=params["damping"],
                            wet_level=params["wet_level"], dry_level=params["dry_level"])(
        np.ascontiguousarray(audio.T, np.float32), sr)
    return np.ascontiguousarray(out.T, np.float32)


EFFECTS: dict[str, WholeEffect] = {
    "reverse": WholeEffect(_reverse, {}, "plays the segment backwards"),
    "speed": WholeEffect(_speed, {"ratio": 1.0},
                         "time stretch to `ratio` times the tempo, pitch kept; reads "
                         "duration x ratio of raw",
                         raw_ratio=lambda params: params["ratio"]),
    "pitch": WholeEffect(_pitch, {"semitones": 0.0}, "pitch shift in semitones, tempo kept"),
    "distortion": WholeEffect(_distortion, {"drive_db": 12.0}, "tanh drive, level matched"),
    "reverb": WholeEffect(_reverb, {"room_size": 0.5, "damping": 0.5, "wet_level": 0.33,
                                    "dry_level": 0.4}, "Freeverb room"),
}


def _full_params(name: str, params: dict | None) -> dict:
    spec = EFFECTS[name]
    params = params or {}
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(f"effect {name!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(sorted(spec.defaults)) or 'none'}")
    return {**spec.defaults, **{k: float(v) for k, v in params.items()}}


def apply_effect(name: str, params: dict | None, audio: np.ndarray, sr: int) -> np.ndarray:
    """Apply effect `name` to a whole segment.

    Effects of this module work on the whole array; other names go to editorbot.render's
    registry (gain, low_shelf, high_shelf, ...), fed the array as one block.

    Args:
        name: effect name, e.g. 'pitch'.
        params: its parameters (missing ones take the defaults).
        audio : np.ndarray [shape=(n, channels)], float32
        sr: sample rate of `audio`.

    Returns:
        np.ndarray [shape=(m, channels)], float32; m = n except for 'speed' (n / ratio).
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (n, channels), got shape {audio.shape}")
    if name in EFFECTS:
        return EFFECTS[name].fn(audio, sr, _full_params(name, params))
    from .. import render  # imported here: render imports this module to register effects

    if name not in render.EFFECTS:
        known = sorted(set(EFFECTS) | set(render.EFFECTS))
        raise ValueError(f"unknown effect {name!r}; known effects: {', '.join(known)}")
    spec = render.EFFECTS[name]
    full = {**spec.defaults, **{k: float(v) for k, v in (params or {}).items()}}
    return np.asarray(spec.make(sr, full)(audio), np.float32)


def register(register_effect: Callable) -> None:
    """Add this module's effects to editorbot.render's registry.

    Called by editorbot.render with its `register_effect(name, defaults, help, whole=...)`;
    `whole` (raw samples read per sample played) tells the renderer that the effect takes
    the segment in one block (it fits the result to the segment's length).
    """
    for name, spec in EFFECTS.items():
        def make(sr: int, params: dict, spec=spec):
            return lambda block: spec.fn(np.asarray(block, np.float32), sr, params)
        register_effect(name, spec.defaults, spec.help, whole=spec.raw_ratio)(make)
