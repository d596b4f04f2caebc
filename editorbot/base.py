"""The base editor: a pointer model pretrained on many synthetic editors, shipped in the package.

`base_checkpoint()` finds the shipped model; `write_base_corpus` writes the corpus it is
pretrained on as float16 raw mels and exact truth (no audio is kept), in the layout every
trainer reads; `mark_made_up` says so in the model; benchmarks/build_base.py runs the steps
and the training.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .cache import atomic_write_text, load_npz, save_npz
from .checkpoint import load_checkpoint, save_checkpoint
from .config import to_dict
from .errors import UserError
from .features import DEFAULT_PARAMS, FeatureParams, mel
from .jobs import run_jobs
from .layout import Layout

if TYPE_CHECKING:  # the synth imports audio and instrument code; base_checkpoint() needs none
    from .edits import Edit
    from .synth.config import SynthConfig

BASE_CHECKPOINT = Path(__file__).resolve().parent / "models" / "base_pointer.pt"
CORPUS_KIND = "base_corpus"  # the mel cache record of a pair written without audio
# A checkpoint key: the model learnt from made-up editors, so what it records of their edits
# (jumps_back: a looper among them jumps back) says nothing of a musician who fine-tunes it.
MADE_UP_EDITORS = "made_up_editors"


def base_checkpoint() -> Path | None:
    """The base pointer model shipped inside the package, or None when this install has none."""
    return BASE_CHECKPOINT if BASE_CHECKPOINT.is_file() else None


def mark_made_up(path: str | os.PathLike) -> None:
    """Record in the checkpoint at `path` that it learnt from made-up editors (MADE_UP_EDITORS)."""
    save_checkpoint(path, load_checkpoint(path) | {MADE_UP_EDITORS: True})


def pretraining_synth_config() -> SynthConfig:
    """The generator's settings for the base corpus: the defaults, with wider ranges.

    Every pretraining persona in the cycle (pretraining_personas(), never one held out for
    adaptation); tempi 60 to 200 BPM in any of 12 keys; budgets from 20 to 80% (trimmer)
    and 2 to 5 minutes (radio); some songs played twice.
    """
    from .synth.config import SynthConfig
    from .synth.personas import pretraining_personas

    base = SynthConfig()
    personas = replace(base.personas, cycle=list(pretraining_personas()),
                       trimmer=replace(base.personas.trimmer, keep_ratio=(0.2, 0.8)),
                       radio=replace(base.personas.radio, duration_s=(120.0, 300.0)))
    playing = replace(base.playing, tempo_bpm=(60.0, 200.0), roots_midi=list(range(36, 48)))
    session = replace(base.session, retake_prob=0.15)
    return replace(base, personas=personas, playing=playing, session=session)


@dataclass
class _PairTask:
    out_dir: str
    seed: int
    index: int
    minutes: float
    config: SynthConfig


def pair_minutes(seed: int, index: int, minutes: tuple[float, float]) -> float:
    """Length of pair `index`'s raw in minutes, drawn uniformly in [low, high] from (seed, index)."""
    low, high = minutes
    if not 0 < low <= high:
        raise UserError(f"--minutes {low} {high}: need 0 < low <= high, e.g. 2 6")
    return round(float(np.random.default_rng([seed, index, 1]).uniform(low, high)), 2)


def _write_pair(task: _PairTask) -> str:
    """Plan and render one session, keep its raw mel (float16) and the truth; no audio."""
    import soxr

    from .synth.compose import perform
    from .synth.corpus import plan_pair, truth_json
    from .synth.instruments import render_mix

    config = task.config
    params = DEFAULT_PARAMS
    pp = plan_pair(config, seed=task.seed, index=task.index, minutes=task.minutes, pretraining=True)
    layout = Layout(Path(task.out_dir) / "training_data", Path(task.out_dir) / "cache")
    truth_path = layout.data_dir / "truth" / f"{pp.name}.json"
    if _complete(layout, pp.name, truth_path, config, task.minutes):
        return pp.name
    perform_rng, noise_rng, _ = pp.streams
    score = perform(pp.plan, config, perform_rng)
    raw = render_mix(score, pp.plan.programs, config.sound, config.raw_sr, pp.plan.duration_s, noise_rng)
    # As audio.load_analysis reads a file: the channels' mean, resampled with soxr HQ.
    mono = raw.mean(axis=1, dtype=np.float32)
    y = mono if config.raw_sr == params.sr else soxr.resample(mono, config.raw_sr, params.sr, quality="HQ")
    m = mel(y.astype(np.float32, copy=False), params)
    edit_samples = int(round(pp.edit.duration_s * config.raw_sr))
    n_edit_frames = params.n_frames(int(np.ceil(edit_samples * params.sr / config.raw_sr)))
    store_pair(layout, pp.name, m, pp.edit, n_edit_frames, source=pp.name)
    # Written last: its presence says the pair is whole.
    truth = truth_json(pp, config, "none", [], config.raw_sr, 0.0)
    atomic_write_text(truth_path, json.dumps(truth))
    return pp.name


def store_pair(layout: Layout, name: str, raw_mel: np.ndarray, edit: Edit, n_edit_frames: int, *,
               source: str, params: FeatureParams = DEFAULT_PARAMS) -> None:
    """Keep one corpus pair without audio: the raw's mel in float16 (a CORPUS_KIND cache
    record) and the edit's exact truth as pointer files (dataset.write_truth_pointers)."""
    from .dataset import write_truth_pointers

    save_npz(layout.features(name, "raw"), {"kind": CORPUS_KIND, "params": params.as_dict(),
                                            "source": source, "source_fingerprint": None},
             mel=raw_mel.astype(np.float16))
    write_truth_pointers(layout, name, edit, n_edit_frames, params, raw_frames=raw_mel.shape[1])


def _complete(layout: Layout, name: str, truth_path: Path, config: SynthConfig, minutes: float) -> bool:
    """Whether an earlier run wrote this pair whole with the same settings."""
    if not (truth_path.is_file() and layout.pointer_file(name, "pointers.npy").is_file()
            and load_npz(layout.features(name, "raw")) is not None):
        return False
    try:
        truth = json.loads(truth_path.read_text())
    except (OSError, ValueError):
        return False
    return (truth.get("synth_config") == json.loads(json.dumps(to_dict(config)))
            and abs(float(truth.get("raw_duration_s", -1.0)) - minutes * 60.0) < 1e-3)


def write_base_corpus(out_dir: str | os.PathLike, *, pairs: int, seed: int,
                      minutes: tuple[float, float] = (2.0, 6.0), jobs: int = 1,
                      progress: bool = True, config: SynthConfig | None = None) -> Layout:
    """Write the base editor's pretraining corpus: raw mels and exact truth, no audio.

    For pair i: out_dir/cache/features/{name}_raw.npz ('mel' float16 (n_mels, t) on the
    contract's grid), out_dir/training_data/pointer_sequences/{name}_pointers.npy, _ops.npy
    and _info.json (as `editorbot prepare` writes them), and
    out_dir/training_data/truth/{name}.json (the session's plan, tempo and edit). The
    trainers read float16 mels as float32. Pairs an earlier run wrote whole are kept.

    Args:
        pairs: how many pairs; persona i is pretraining_personas()[i % 3].
        seed: the corpus seed; pair i draws from (seed, i): a larger corpus of the same
            seed adds pairs to a smaller one.
        minutes: (low, high) length of each raw in minutes, drawn uniformly.
        jobs: worker processes.
        config: a SynthConfig (default pretraining_synth_config()); a persona held out for
            adaptation in its cycle is an error, before anything is written.

    Returns:
        the corpus' Layout (data_dir out_dir/training_data, cache_dir out_dir/cache).
    """
    from .synth.personas import pretraining_personas

    config = config or pretraining_synth_config()
    held_out = [p for p in config.personas.cycle if p not in pretraining_personas()]
    if held_out:
        raise UserError(f"personas.cycle holds {', '.join(held_out)}: held out of pretraining, to "
                        f"measure adaptation; a base corpus takes {', '.join(pretraining_personas())}")
    if pairs < 1:
        raise UserError(f"--pairs {pairs}: must be at least 1")
    lengths = [pair_minutes(seed, i, minutes) for i in range(pairs)]
    items = [(f"pair {i}", _PairTask(str(out_dir), seed, i, lengths[i], config), lengths[i] * 60.0)
             for i in range(pairs)]
    report = run_jobs(_write_pair, items, jobs=jobs, desc="base corpus", progress=progress)
    if report.failures:
        raise UserError("; ".join(sorted(set(report.failures.values()))))
    return Layout(Path(out_dir) / "training_data", Path(out_dir) / "cache")
