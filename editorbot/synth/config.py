"""Every knob of the synthetic jam generator, its editor personas and mastering presets.

Load with editorbot.config.load(SynthConfig, path, overrides); configs/synth/default.json
holds the defaults written out, so a user can match their own material by editing a copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SessionConfig:
    """How a session is laid out: the parts between songs, and the songs' forms.

    Ranges are (low, high) drawn uniformly; *_bars are bars of 4 beats.
    """

    preroll_s: tuple[float, float] = (2.0, 10.0)          # room noise before anyone plays
    tuning_s: tuple[float, float] = (8.0, 30.0)
    tuning_prob: float = 0.8                               # the session opens with tuning
    noodling_s: tuple[float, float] = (10.0, 40.0)
    noodling_prob: float = 0.6                             # ... then noodling
    gap_silence_s: tuple[float, float] = (3.0, 12.0)      # silence between songs
    gap_tuning_prob: float = 0.4                           # retuning between songs
    gap_noodling_prob: float = 0.3                         # noodling between songs
    false_start_prob: float = 0.35                         # a song starts, breaks down, restarts
    false_start_bars: tuple[int, int] = (1, 3)
    retake_prob: float = 0.0                               # a finished song is played again in full
    mistake_prob: float = 0.15                             # per section: one bar goes wrong
    count_in_bars: int = 1                                 # two at tempos above fast_count_in_bpm
    fast_count_in_bpm: float = 140.0
    jam_prob: float = 0.4                                  # a song is a long psych jam, not a song form
    intro_bars: tuple[int, int] = (4, 8)
    verse_bars: tuple[int, int] = (8, 16)
    chorus_bars: tuple[int, int] = (8, 12)
    solo_bars: tuple[int, int] = (16, 32)
    jam_solo_bars: tuple[int, int] = (24, 48)
    breakdown_bars: tuple[int, int] = (4, 8)
    ending_bars: tuple[int, int] = (4, 8)
    ending_ring_s: tuple[float, float] = (3.0, 8.0)       # the last chord rings out


@dataclass
class PlayingConfig:
    """How the band plays: tempo, drift, timing and dynamics."""

    tempo_bpm: tuple[float, float] = (70.0, 180.0)         # the session's tempo
    song_tempo_spread: float = 0.08                        # songs differ from it by up to this fraction
    tempo_drift: float = 0.015                             # slow drift, as a fraction of the tempo
    tempo_drift_bars: float = 16.0                         # time scale of the drift
    ritardando: float = 0.15                               # endings slow down by this fraction
    drums_jitter_ms: float = 4.0                           # std of each onset around the grid
    bass_jitter_ms: float = 7.0
    chords_jitter_ms: float = 9.0
    lead_jitter_ms: float = 11.0
    bass_lag_ms: float = 4.0                               # the bass sits a little behind the beat
    strum_ms: tuple[float, float] = (4.0, 12.0)            # delay between strings of a strum
    velocity_spread: float = 10.0                          # std of MIDI velocity around the part's level
    roots_midi: list[int] = field(default_factory=lambda: [40, 41, 42, 43, 45, 47])  # E2 .. B2
    modes: list[str] = field(default_factory=lambda: ["aeolian", "dorian", "mixolydian"])


@dataclass
class SoundConfig:
    """Instrument programs (General MIDI, 0-based) and the mix of the raw recording."""

    drum_kits: list[int] = field(default_factory=lambda: [0, 8, 16])      # Standard, Room, Power
    bass_programs: list[int] = field(default_factory=lambda: [33, 34])   # fingered, picked
    chord_programs: list[int] = field(default_factory=lambda: [29, 30, 27, 16, 17])  # guitars, organs
    lead_programs: list[int] = field(default_factory=lambda: [29, 30, 81, 84])       # guitars, saw, charang
    drums_db: float = 0.0
    bass_db: float = -2.0
    chords_db: float = -6.0
    lead_db: float = -5.0
    chords_pan: float = -0.35                              # -1 left .. 1 right
    lead_pan: float = 0.3
    room_wet: float = 0.08                                 # room reverb on the mix
    room_size: float = 0.35
    raw_peak_db: float = -4.0                              # the raw is scaled to this peak
    noise_floor_db: float = -68.0                          # RMS of the room noise under everything


@dataclass
class RadioConfig:
    """Keeps the strongest chorus-like parts of one song, 3 to 4 minutes, fades out."""

    duration_s: tuple[float, float] = (180.0, 240.0)
    fade_out_s: tuple[float, float] = (4.0, 10.0)
    crossfade_ms: tuple[float, float] = (10.0, 30.0)
    max_repeats: int = 8                                   # chorus repeats when the song is short


@dataclass
class TrimmerConfig:
    """Drops tuning, noodling, silence, count-ins, false starts and mistakes; keeps solos."""

    keep_ratio: tuple[float, float] = (0.40, 0.70)
    crossfade_ms: tuple[float, float] = (5.0, 20.0)
    song_gain_db: float = 2.0                              # per-song gain within +-this, 0.5 dB steps
    fade_out_s: tuple[float, float] = (2.0, 5.0)           # when the edit ends inside a part


@dataclass
class LooperConfig:
    """Builds a track from a looped groove and reordered sections."""

    loop_bars: list[int] = field(default_factory=lambda: [2, 4])
    loop_repeats: tuple[int, int] = (3, 6)                 # plays of the looped bars
    grooves: tuple[int, int] = (1, 2)                      # how many grooves get looped
    sections: tuple[int, int] = (3, 6)                     # other sections, in a shuffled order
    section_bars: tuple[int, int] = (4, 8)                 # each cut to this many bars
    crossfade_ms: tuple[float, float] = (20.0, 50.0)
    fade_in_s: tuple[float, float] = (0.5, 2.0)
    fade_out_s: tuple[float, float] = (3.0, 8.0)


@dataclass
class HighlightsConfig:
    """Keeps the most intense whole parts of each take of a song, and its ending."""

    sections: int = 2                                      # parts kept per take, besides the ending
    crossfade_ms: tuple[float, float] = (10.0, 30.0)
    fade_out_s: tuple[float, float] = (2.0, 5.0)           # when the edit ends inside a part


@dataclass
class SoloCutterConfig:
    """Keeps every song whole but for its solos, and a jam's whole jam."""

    crossfade_ms: tuple[float, float] = (5.0, 20.0)
    fade_out_s: tuple[float, float] = (2.0, 5.0)           # when the edit ends inside a part


@dataclass
class LastTakeConfig:
    """Keeps only the last full take of each song."""

    crossfade_ms: tuple[float, float] = (5.0, 20.0)
    fade_out_s: tuple[float, float] = (2.0, 5.0)           # when the edit ends inside a part


@dataclass
class PersonaConfig:
    radio: RadioConfig = field(default_factory=RadioConfig)
    trimmer: TrimmerConfig = field(default_factory=TrimmerConfig)
    looper: LooperConfig = field(default_factory=LooperConfig)
    highlights: HighlightsConfig = field(default_factory=HighlightsConfig)
    solo_cutter: SoloCutterConfig = field(default_factory=SoloCutterConfig)
    last_take: LastTakeConfig = field(default_factory=LastTakeConfig)
    cycle: list[str] = field(default_factory=lambda: ["radio", "trimmer", "looper"])  # when none is named


@dataclass
class MasteringPreset:
    """One mastering chain: EQ, compression, optional lowpass, loudness, limiter, MP3, rate."""

    highpass_hz: float = 0.0                               # 0 = off
    eq_gain_db: float = 0.0                                # a peak EQ at a frequency drawn from eq_hz
    eq_hz: tuple[float, float] = (800.0, 4000.0)
    eq_q: float = 1.0
    comp_threshold_db: float = 0.0                         # 0 with ratio 1 = off
    comp_ratio: float = 1.0
    lowpass_hz: float = 0.0                                # 0 = off
    loudness_lufs: float | None = None                     # None = no loudness normalisation
    limiter_db: float | None = None                        # None = no limiter
    mp3_quality: str = ""                                  # e.g. "V2"; "" = no MP3 round trip
    edit_sr: int = 0                                       # 0 = the raw's rate


@dataclass
class MasteringConfig:
    none: MasteringPreset = field(default_factory=MasteringPreset)
    mild: MasteringPreset = field(default_factory=lambda: MasteringPreset(
        highpass_hz=30.0, eq_gain_db=2.0, comp_threshold_db=-18.0, comp_ratio=2.0,
        loudness_lufs=-14.0, limiter_db=-1.0, edit_sr=48000))
    heavy: MasteringPreset = field(default_factory=lambda: MasteringPreset(
        highpass_hz=40.0, eq_gain_db=8.0, comp_threshold_db=-24.0, comp_ratio=8.0,
        lowpass_hz=11000.0, loudness_lufs=-9.0, limiter_db=-0.5, mp3_quality="V2"))
    keep_codec_delay: bool = False                         # True: the MP3's decoder delay stays in


@dataclass
class SynthConfig:
    """The whole generator: session form, playing, sound, personas, mastering."""

    raw_sr: int = 44100
    raw_subtype: str = "PCM_24"
    edit_subtype: str = "PCM_24"
    file_format: Literal["wav", "flac"] = "wav"            # of the raw and edit files; FLAC is
                                                           # lossless in about half the space
    channels: Literal[1, 2] = 2                            # 1: the band's mix summed to mono
    session: SessionConfig = field(default_factory=SessionConfig)
    playing: PlayingConfig = field(default_factory=PlayingConfig)
    sound: SoundConfig = field(default_factory=SoundConfig)
    personas: PersonaConfig = field(default_factory=PersonaConfig)
    mastering: MasteringConfig = field(default_factory=MasteringConfig)
