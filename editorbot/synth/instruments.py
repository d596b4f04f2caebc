"""Render a Score through the General MIDI soundfont that pretty_midi ships (TimGM6mb.sf2).

Each role (drums, bass, chords, lead) has its own tinysoundfont synth; blocks of a few
seconds are rendered, panned, mixed, put through a little room reverb, set to a peak level,
and laid over the room's noise floor.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from .compose import ROLES, Score
from .config import SoundConfig

DRUM_CHANNEL = 9      # MIDI channel 10
MAX_VOICES = 48       # per instrument; the oldest voice is cut when more would sound
BLOCK_SAMPLES = 1 << 18  # about 6 s at 44.1 kHz: memory stays small for long sessions
NOISE_TAP = 0.7       # room noise: white plus this times the previous sample (darker)


@lru_cache(maxsize=1)
def soundfont_path() -> Path:
    """The TimGM6mb.sf2 file inside the installed pretty_midi package."""
    import pretty_midi

    return Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"


class Player:
    """One instrument: a tinysoundfont synth and its note, note-off and bend events in order."""

    def __init__(self, score: Score, role: str, program: int, sr: int):
        import tinysoundfont

        self.synth = tinysoundfont.Synth(samplerate=sr)
        sfid = self.synth.sfload(str(soundfont_path()), max_voices=MAX_VOICES)
        drums = role == "drums"
        self.channel = DRUM_CHANNEL if drums else 0
        self.synth.program_select(self.channel, sfid, 128 if drums else 0, program, is_drums=drums)
        # (sample, order, key or bend value, velocity): note-offs before bends before
        # note-ons at the same sample, so a re-struck note starts cleanly.
        events = []
        for on_s, off_s, key, vel in score.notes[role]:
            events.append((int(round(on_s * sr)), 2, key, vel))
            events.append((int(round(off_s * sr)), 0, key, 0))
        for t_s, value in score.bends[role]:
            events.append((int(round(t_s * sr)), 1, value, 0))
        events.sort()
        self.events = events
        self.next = 0
        self.pos = 0

    def render(self, out: np.ndarray) -> None:
        """Render the next len(out) samples into out, float32 (n, 2) C-contiguous."""
        buf = memoryview(out).cast("B")
        end = self.pos + len(out)
        done = self.pos
        while self.next < len(self.events) and self.events[self.next][0] < end:
            sample, order, value, vel = self.events[self.next]
            if sample > done:
                self.synth.generate_simple(sample - done, buffer=buf[(done - self.pos) * 8:(sample - self.pos) * 8])
                done = sample
            if order == 2:
                self.synth.noteon(self.channel, value, vel)
            elif order == 1:
                self.synth.pitchbend(self.channel, value)
            else:
                self.synth.noteoff(self.channel, value)
            self.next += 1
        if done < end:
            self.synth.generate_simple(end - done, buffer=buf[(done - self.pos) * 8:])
        self.pos = end


def render_mix(score: Score, programs: dict[str, int], sound: SoundConfig, sr: int,
               duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """The whole band as a raw recording: roles mixed, room reverb, peak level, noise floor.

    Args:
        score: what the band played, from compose.perform.
        programs: role -> GM program, as in Plan.programs (drums: kit in bank 128).
        sound: levels, pans, room and noise settings.
        sr: sample rate in Hz.
        duration_s: length of the recording.
        rng: draws the noise floor.

    Returns:
        y : np.ndarray [shape=(n, 2)], float32, n = round(duration_s * sr)
    """
    from pedalboard import Pedalboard, Reverb

    n = int(round(duration_s * sr))
    levels_db = {"drums": sound.drums_db, "bass": sound.bass_db, "chords": sound.chords_db,
                 "lead": sound.lead_db}
    pans = {"drums": 0.0, "bass": 0.0, "chords": sound.chords_pan, "lead": sound.lead_pan}
    players = []
    for role in ROLES:
        angle = (pans[role] + 1) * np.pi / 4  # constant-power pan
        gains = 10 ** (levels_db[role] / 20) * np.sqrt(2) * np.array([np.cos(angle), np.sin(angle)])
        players.append((Player(score, role, programs[role], sr), gains.astype(np.float32)))
    room = Pedalboard([Reverb(room_size=sound.room_size, wet_level=sound.room_wet,
                              dry_level=1.0 - sound.room_wet, width=0.8)]) if sound.room_wet > 0 else None
    mix = np.empty((n, 2), np.float32)
    block = np.empty((BLOCK_SAMPLES, 2), np.float32)
    peak = 0.0
    for start in range(0, n, BLOCK_SAMPLES):
        m = min(BLOCK_SAMPLES, n - start)
        acc = mix[start:start + m]
        acc[:] = 0.0
        for player, gains in players:
            player.render(block[:m])
            acc += block[:m] * gains
        if room is not None:
            acc[:] = room(acc.T, sr, reset=start == 0).T
        peak = max(peak, float(np.abs(acc).max(initial=0.0)))
    scale = np.float32(10 ** (sound.raw_peak_db / 20) / peak) if peak > 0 else np.float32(1.0)
    noise_gain = np.float32(10 ** (sound.noise_floor_db / 20) / np.sqrt(1 + NOISE_TAP ** 2))
    carry = np.zeros((1, 2), np.float32)
    for start in range(0, n, BLOCK_SAMPLES):
        m = min(BLOCK_SAMPLES, n - start)
        white = rng.standard_normal((m, 2), dtype=np.float32)
        noise = white.copy()
        noise[1:] += np.float32(NOISE_TAP) * white[:-1]
        noise[:1] += np.float32(NOISE_TAP) * carry
        carry = white[-1:]
        mix[start:start + m] *= scale
        mix[start:start + m] += noise * noise_gain
    return mix
