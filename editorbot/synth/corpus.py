"""Write a synthetic corpus: raw jams, their edits, the unmastered edits and exact truth.

Each pair draws its plan, persona choice, performance, room noise and mastering from its
own random streams, spawned from (seed, pair index): same seed, same bytes. A corpus for
pretraining a base editor (pretraining=True) refuses the personas held out to measure
adaptation (personas.ADAPTATION_PERSONAS), whether named or in the config's cycle.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import audio
from ..cache import atomic_write_bytes, atomic_write_text
from ..config import to_dict
from ..edits import Edit
from ..errors import UserError
from ..jobs import run_jobs
from .compose import Plan, perform, plan_session
from .config import SynthConfig
from .instruments import render_mix
from .master import master, preset
from .personas import PERSONAS, choose_edit, edit_stats, pretraining_personas
from .splice import splice

FADE_SHAPE = "sine"              # quarter-sine fades; see splice.splice for the formulas
CROSSFADE_SHAPE = "equal_power"  # sin / cos over the crossfade, centred on the seam


@dataclass
class PairPlan:
    """Everything about one pair that needs no audio: the session plan and the truth edit."""

    name: str
    seed: int
    index: int
    persona: str
    plan: Plan
    edit: Edit
    streams: list[np.random.Generator]  # performance, room noise, mastering

    @property
    def stats(self) -> dict:
        return edit_stats(self.edit, self.plan.duration_s)


def pair_name(seed: int, index: int, persona: str) -> str:
    """The sample name of pair `index` of corpus `seed`, e.g. jam0_003_radio."""
    return f"jam{seed}_{index:03d}_{persona}"


def plan_pair(config: SynthConfig, *, seed: int, index: int, minutes: float,
              persona: str | None = None, pretraining: bool = False) -> PairPlan:
    """Plan one pair and choose its edit, without rendering any audio.

    Args:
        seed, index: the corpus seed and the pair's number in it.
        minutes: length of the raw recording.
        persona: one of PERSONAS, or None for config.personas.cycle[index].
        pretraining: the pair is for a base editor's corpus: a persona held out of
            pretraining (personas.ADAPTATION_PERSONAS) is an error.
    """
    if minutes <= 0:
        raise UserError(f"--minutes {minutes}: must be positive")
    persona = _persona_for(config, index, persona, pretraining)
    plan_rng, persona_rng, *streams = [np.random.default_rng(s)
                                       for s in np.random.SeedSequence([seed, index]).spawn(5)]
    plan = plan_session(config, plan_rng, minutes * 60.0)
    edit = choose_edit(plan, persona, config.personas, persona_rng, config.raw_sr)
    name = pair_name(seed, index, persona)
    edit.raw_path = f"input/{name}_raw.{config.file_format}"
    return PairPlan(name, seed, index, persona, plan, edit, streams)


@dataclass
class _Task:
    out_dir: str
    config: SynthConfig
    seed: int
    index: int
    minutes: float
    persona: str | None
    mastering: str
    write_unmastered: bool
    pretraining: bool


def _persona_for(config: SynthConfig, index: int, persona: str | None, pretraining: bool) -> str:
    """The persona pair `index` is edited by: the one asked for, else the cycle's.

    A pretraining corpus takes only pretraining_personas(), whichever way one is named.
    """
    cycle = config.personas.cycle
    persona = persona or cycle[index % len(cycle)]
    _check_persona(persona, pretraining)
    return persona


def _check_persona(persona: str, pretraining: bool) -> None:
    if persona not in PERSONAS:
        raise UserError(f"unknown persona '{persona}'; choose one of {', '.join(PERSONAS)}")
    if pretraining and persona not in pretraining_personas():
        raise UserError(f"persona '{persona}' is held out of pretraining, to measure adaptation; "
                        f"a pretraining corpus takes {', '.join(pretraining_personas())}")


def _already_written(task: _Task) -> str | None:
    """The pair's name when an earlier run wrote it whole with these settings, else None.

    The truth record is written last, so its presence means the audio files are complete;
    a record made with another synth config, mastering or length does not count.
    """
    persona = _persona_for(task.config, task.index, task.persona, task.pretraining)
    name = pair_name(task.seed, task.index, persona)
    out = Path(task.out_dir)
    ext = task.config.file_format
    files = [out / "input" / f"{name}_raw.{ext}", out / "desired_output" / f"{name}_edit.{ext}"]
    if task.write_unmastered:
        files.append(out / "unmastered" / f"{name}_edit.wav")
    truth_path = out / "truth" / f"{name}.json"
    if not truth_path.is_file() or not all(f.is_file() for f in files):
        return None
    try:
        truth = json.loads(truth_path.read_text())
    except (OSError, ValueError):
        return None
    stored = truth.get("synth_config")
    if isinstance(stored, dict):
        stored.setdefault("file_format", "wav")  # written before these settings existed
        stored.setdefault("channels", 2)
    same = (stored == json.loads(json.dumps(to_dict(task.config)))
            and truth.get("mastering") == task.mastering
            and abs(float(truth.get("raw_duration_s", -1.0)) - task.minutes * 60.0) < 1e-3)
    return name if same else None


def _write_pair(task: _Task) -> str:
    done = _already_written(task)
    if done is not None:
        return done
    config = task.config
    pp = plan_pair(config, seed=task.seed, index=task.index, minutes=task.minutes, persona=task.persona,
                   pretraining=task.pretraining)
    perform_rng, noise_rng, master_rng = pp.streams
    out = Path(task.out_dir)
    sr = config.raw_sr
    score = perform(pp.plan, config, perform_rng)
    raw = render_mix(score, pp.plan.programs, config.sound, sr, pp.plan.duration_s, noise_rng)
    if config.channels == 1:
        raw = raw.mean(axis=1, keepdims=True)
    ext = config.file_format
    raw_path = audio.write(out / "input" / f"{pp.name}_raw.{ext}", raw, sr, subtype=config.raw_subtype)
    raw, _ = audio.read(raw_path)  # the edit is cut from the samples as stored
    unmastered = splice(raw, sr, pp.edit)
    if task.write_unmastered:
        write_float_wav(out / "unmastered" / f"{pp.name}_edit.wav", unmastered, sr)
    mastered, edit_sr, chain, offset_s = master(
        unmastered, sr, preset(config.mastering, task.mastering), master_rng,
        keep_codec_delay=config.mastering.keep_codec_delay)
    audio.write(out / "desired_output" / f"{pp.name}_edit.{ext}", mastered, edit_sr,
                subtype=config.edit_subtype, protect=(raw_path,))
    atomic_write_text(out / "truth" / f"{pp.name}.json",
                      json.dumps(truth_json(pp, config, task.mastering, chain, edit_sr, offset_s)))
    return pp.name


def write_float_wav(path: Path, data: np.ndarray, sr: int) -> Path:
    """Write 32-bit float WAV atomically, with the PEAK chunk's timestamp zeroed.

    libsndfile stamps float WAVs with the time of writing; zeroing it keeps the bytes a
    function of the seed alone.
    """
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, data, sr, subtype="FLOAT", format="WAV")
    raw = bytearray(buf.getvalue())
    peak = raw.find(b"PEAK", 12, 512)
    if peak >= 0:
        raw[peak + 12:peak + 16] = bytes(4)
    return atomic_write_bytes(path, lambda tmp: tmp.write_bytes(raw))


def truth_json(pp: PairPlan, config: SynthConfig, mastering: str, chain: list[dict],
               edit_sr: int, offset_s: float) -> dict:
    """The truth record of a pair: Edit.to_json() plus the session's grid and sections."""
    plan = pp.plan
    truth = pp.edit.to_json()
    truth.update({
        "name": pp.name, "seed": pp.seed, "index": pp.index, "persona": pp.persona,
        "mastering": mastering, "mastering_chain": chain, "raw_sr": config.raw_sr, "edit_sr": edit_sr,
        "edit_offset_s": offset_s, "fade_shape": FADE_SHAPE, "crossfade_shape": CROSSFADE_SHAPE,
        "tempo_bpm": plan.tempo_bpm, "beats_s": plan.beats_s.tolist(),
        "downbeats_s": plan.downbeats_s.tolist(),
        "sections": [s.to_json() for s in plan.sections],
        "mistakes": [m.to_json() for m in plan.mistakes],
        "songs": [s.to_json() for s in plan.songs], "programs": plan.programs,
        **pp.stats, "synth_config": to_dict(config),
    })
    return truth


def write_corpus(out_dir: str | os.PathLike, *, pairs: int, seed: int, minutes: float = 5.0,
                 persona: str | None = None, mastering: str = "mild", write_unmastered: bool = True,
                 config: SynthConfig | None = None, jobs: int = 1, progress: bool = True,
                 pretraining: bool = False) -> list[str]:
    """Write `pairs` synthetic (raw, edit) pairs in the training-data layout.

    Writes out_dir/input/{name}_raw.wav, out_dir/desired_output/{name}_edit.wav (mastered,
    at the preset's rate; .flac with config.file_format "flac"), out_dir/unmastered/{name}_edit.wav (at the raw's rate, FLOAT)
    and out_dir/truth/{name}.json. A pair an earlier run wrote whole, with the same settings,
    is kept as it is: an interrupted run carries on where it stopped, and a larger corpus
    of the same seed adds only the pairs it lacks.

    Args:
        pairs: how many pairs.
        seed: the corpus seed; pair i draws from (seed, i).
        minutes: length of each raw recording.
        persona: one of PERSONAS, or None to cycle through config.personas.cycle.
        mastering: 'none', 'mild' or 'heavy'.
        config: the generator's settings (default SynthConfig()).
        jobs: worker processes.
        pretraining: the corpus is for pretraining a base editor: its personas, named or
            cycled, must be among pretraining_personas(), else nothing is written.

    Returns:
        the pair names, in index order.
    """
    config = config or SynthConfig()
    preset(config.mastering, mastering)  # an unknown name fails before any work
    for name in [persona] if persona is not None else config.personas.cycle:
        _check_persona(name, pretraining)
    if pairs < 1:
        raise UserError(f"--pairs {pairs}: must be at least 1")
    if not minutes > 0 or minutes == float("inf"):
        raise UserError(f"--minutes {minutes}: must be a positive length in minutes, e.g. 5")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be at least 1")
    items = [(f"pair {i}", _Task(str(out_dir), config, seed, i, minutes, persona, mastering,
                                 write_unmastered, pretraining), minutes * 60.0) for i in range(pairs)]
    report = run_jobs(_write_pair, items, jobs=jobs, desc="synth", progress=progress)
    if report.failures:
        raise UserError("; ".join(sorted(set(report.failures.values()))))
    return [report.results[f"pair {i}"] for i in range(pairs)]
