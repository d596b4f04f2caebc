"""The effects a segment can name: {"name": ..., "params": {...}} -> a process on its audio.

One registry for the renderer and the RL actions. Block-wise effects (gain, filters, EQ,
compressor) process a segment block by block; whole-segment effects (reverse, speed, pitch,
distortion, reverb) take it at once, because reversing or time-stretching needs all of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import UserError

MIN_STRETCH_FRAMES = 4096  # shorter pieces are too short for the time stretcher to work on


@dataclass(frozen=True)
class EffectSpec:
    """An effect a segment can name: make(sr, params) -> process(block (n, ch)) -> block.

    process is called on consecutive blocks of one segment and may keep state between them.
    whole: None for such block-wise effects. Effects that need a segment at once (reverse,
    time stretch) give whole(params) = raw samples read per sample played; process then
    gets the segment's span in one block and its result is cut or padded to the span.
    """

    make: Callable[[int, dict], Callable[[np.ndarray], np.ndarray]]
    defaults: dict
    help: str
    whole: Callable[[dict], float] | None = None


EFFECTS: dict[str, EffectSpec] = {}


def register_effect(name: str, defaults: dict, help: str,
                    whole: Callable[[dict], float] | None = None):
    """Decorator: register `make(sr, params)` as effect `name` with its parameter defaults
    (`whole`: see EffectSpec)."""
    def deco(make):
        EFFECTS[name] = EffectSpec(make, dict(defaults), help, whole)
        return make
    return deco


def full_params(name: str, params: dict | None) -> dict:
    """The parameters of effect `name` with the defaults filled in, as floats.

    Raises ValueError for an unknown effect or parameter, naming the known ones.
    """
    if name not in EFFECTS:
        raise ValueError(f"unknown effect {name!r}; known effects: {', '.join(sorted(EFFECTS))}")
    spec = EFFECTS[name]
    params = params or {}
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(f"effect {name!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(sorted(spec.defaults)) or 'none'}")
    return {**spec.defaults, **{k: float(v) for k, v in params.items()}}


def effect_params(effect: dict, *, where: str) -> dict:
    """The full parameters of a segment's effect (defaults filled in); UserError if unknown."""
    try:
        return full_params(effect.get("name"), effect.get("params"))
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None


def apply_effect(name: str, params: dict | None, audio: np.ndarray, sr: int) -> np.ndarray:
    """Apply effect `name` to a whole segment (block-wise effects get it as one block).

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
    params = full_params(name, params)
    return np.asarray(EFFECTS[name].make(sr, params)(audio), np.float32)


# ------------------------------------------------------------------ block-wise effects

@register_effect("gain", {"gain_db": 0.0}, "gain in dB")
def _gain(sr: int, params: dict):
    g = np.float32(10 ** (params["gain_db"] / 20))
    return lambda block: block * g


def _pedalboard_effect(plugin: str):
    def make(sr: int, params: dict):
        import pedalboard  # imported on first use: it is heavy and most renders use no effect
        board = pedalboard.Pedalboard([getattr(pedalboard, plugin)(**params)])
        return lambda block: board.process(np.ascontiguousarray(block.T), sr, reset=False).T
    return make


for _name, _plugin, _defaults, _help in [
    ("lowpass", "LowpassFilter", {"cutoff_frequency_hz": 8000.0}, "first-order low-pass"),
    ("highpass", "HighpassFilter", {"cutoff_frequency_hz": 40.0}, "first-order high-pass"),
    ("eq", "PeakFilter", {"cutoff_frequency_hz": 1000.0, "gain_db": 0.0, "q": 0.7071},
     "peaking EQ band"),
    ("low_shelf", "LowShelfFilter", {"cutoff_frequency_hz": 200.0, "gain_db": 0.0, "q": 0.7071},
     "low shelf"),
    ("high_shelf", "HighShelfFilter", {"cutoff_frequency_hz": 5000.0, "gain_db": 0.0,
                                       "q": 0.7071}, "high shelf"),
    ("compressor", "Compressor", {"threshold_db": -20.0, "ratio": 4.0, "attack_ms": 5.0,
                                  "release_ms": 100.0}, "dynamic range compressor"),
]:
    register_effect(_name, _defaults, _help)(_pedalboard_effect(_plugin))


# --------------------------------------------------------------- whole-segment effects
# Each fn(audio (n, ch), sr, params) -> audio (m, ch) works on a whole segment.

def _whole_effect(name: str, defaults: dict, help: str,
                  raw_ratio: Callable[[dict], float] = lambda params: 1.0):
    """Decorator: register fn(audio, sr, params) as a whole-segment effect; raw_ratio(params)
    = raw samples read per sample played (1 unless the effect changes the length)."""
    def deco(fn):
        def make(sr: int, params: dict):
            return lambda segment: fn(np.asarray(segment, np.float32), sr, params)
        register_effect(name, defaults, help, whole=raw_ratio)(make)
        return fn
    return deco


@_whole_effect("reverse", {}, "plays the segment backwards")
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


@_whole_effect("speed", {"ratio": 1.0},
               "time stretch to `ratio` times the tempo, pitch kept; reads duration x ratio "
               "of raw", raw_ratio=lambda params: params["ratio"])
def _speed(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    return _stretch(audio, sr, params["ratio"], 0.0)


@_whole_effect("pitch", {"semitones": 0.0}, "pitch shift in semitones, tempo kept")
def _pitch(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    return _stretch(audio, sr, 1.0, params["semitones"])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


@_whole_effect("distortion", {"drive_db": 12.0}, "tanh drive, level matched")
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


@_whole_effect("reverb", {"room_size": 0.5, "damping": 0.5, "wet_level": 0.33,
                          "dry_level": 0.4}, "Freeverb room")
def _reverb(audio: np.ndarray, sr: int, params: dict) -> np.ndarray:
    """Freeverb (pedalboard.Reverb); the tail past the segment's end is cut with it."""
    import pedalboard

    out = pedalboard.Reverb(room_size=params["room_size"], damping=params["damping"],
                            wet_level=params["wet_level"], dry_level=params["dry_level"])(
        np.ascontiguousarray(audio.T, np.float32), sr)
    return np.ascontiguousarray(out.T, np.float32)
