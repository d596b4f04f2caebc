"""Render a Score through the General MIDI soundfont that pretty_midi ships (TimGM6mb.sf2).

Each role (drums, bass, chords, lead) is rendered by tinysoundfont on its own, then mixed
with its level and pan, a little room reverb, a peak level and the room's noise floor.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .compose import ROLES, Score
from .config import SoundConfig

DRUM_CHANNEL = 9  # MIDI channel 10
MAX_VOICES = 48   # per instrument; the oldest voice is cut when more would sound


@lru_cache(maxsize=1)
def soundfont_path() -> Path:
    """The TimGM6mb.sf2 file inside the installed pretty_midi package."""
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


def render_role(score: Score, role: str, program: int, sr: int, n_samples: int) -> np.ndarray:
    """One instrument's notes and pitch bends as stereo audio.

    Args:
        score: what the band played (seconds of the raw).
        role: 'drums', 'bass', 'chords' or 'lead'.
        program: GM program, 0-based (for drums: the kit's preset in bank 128).
        sr: sample rate in Hz.
        n_samples: length of the output.

    Returns:
        y : np.ndarray [shape=(n_samples, 2)], float32
    """
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sr)
    sfid = synth.sfload(str(soundfont_path()), max_voices=MAX_VOICES)
    drums = role == "drums"
    channel = DRUM_CHANNEL if drums else 0
    synth.program_select(channel, sfid, 128 if drums else 0, program, is_drums=drums)
    # Events as (sample, order, key or bend value, velocity): note-offs before bends before
    # note-ons at the same sample, so a re-struck note starts cleanly.
    events = []
    for on_s, off_s, key, vel in score.notes[role]:
        events.append((int(round(on_s * sr)), 2, key, vel))
        events.append((int(round(off_s * sr)), 0, key, 0))
    for t_s, value in score.bends[role]:
        events.append((int(round(t_s * sr)), 1, value, 0))
    events.sort()
    out = memoryview(bytearray(n_samples * 2 * 4))
    pos = 0
    for sample, order, value, vel in events:
        if sample >= n_samples:
            break
        if sample > pos:
            synth.generate_simple(sample - pos, buffer=out[pos * 8:sample * 8])
            pos = sample
        if order == 2:
            synth.noteon(channel, value, vel)
        elif order == 1:
            synth.pitchbend(channel, value)
        else:
            synth.noteoff(channel, value)
    if pos < n_samples:
        synth.generate_simple(n_samples - pos, buffer=out[pos * 8:])
    return np.frombuffer(out, np.float32).reshape(n_samples, 2)


def render_mix(score: Score, programs: dict[str, int], sound: SoundConfig, sr: int,
               duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """The whole band as a raw recording: roles mixed, room reverb, peak level, noise floor.

    Args:
        programs: role -> GM program, as in Plan.programs.
        rng: draws the noise floor.

    Returns:
        y : np.ndarray [shape=(n, 2)], float32, n = round(duration_s * sr)
    """
    from pedalboard import Pedalboard, Reverb

    n = int(round(duration_s * sr))
    levels_db = {"drums": sound.drums_db, "bass": sound.bass_db, "chords": sound.chords_db,
                 "lead": sound.lead_db}
    pans = {"drums": 0.0, "bass": 0.0, "chords": sound.chords_pan, "lead": sound.lead_pan}
    mix = np.zeros((n, 2), np.float32)
    for role in ROLES:
        y = render_role(score, role, programs[role], sr, n)
        angle = (pans[role] + 1) * np.pi / 4  # constant-power pan
        gains = 10 ** (levels_db[role] / 20) * np.sqrt(2) * np.array([np.cos(angle), np.sin(angle)])
        mix += y * gains.astype(np.float32)
    if sound.room_wet > 0:
        room = Pedalboard([Reverb(room_size=sound.room_size, wet_level=sound.room_wet,
                                  dry_level=1.0 - sound.room_wet, width=0.8)])
        mix = room(mix.T.copy(), sr).T
    peak = float(np.abs(mix).max(initial=0.0))
    if peak > 0:
        mix *= np.float32(10 ** (sound.raw_peak_db / 20) / peak)
    return (mix + _room_noise(n, sound.noise_floor_db, rng)).astype(np.float32)


def _room_noise(n: int, rms_db: float, rng: np.random.Generator) -> np.ndarray:
    """Stereo room noise at rms_db dBFS RMS: white noise tilted darker by a one-tap filter."""
    noise = rng.standard_normal((n, 2), dtype=np.float32)
    noise[1:] += np.float32(0.7) * noise[:-1]
    rms = float(np.sqrt(np.mean(noise[: min(n, 1 << 20)] ** 2))) or 1.0
    return noise * np.float32(10 ** (rms_db / 20) / rms)
