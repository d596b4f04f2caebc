"""The one-command demo: a musician's editing style learnt from six jams in minutes, on CPU.

Generate (raw, edit) pairs of realistic length, align them, train the supervised editor for
four passes over them, edit held-out jams with it and with the rule-based editor, evaluate
both against the held-out human edits, and say where every output went.

The musician is a jam trimmer (configs/synth/demo.json): they keep every song whole, from its
first bar to its last chord, and cut the tuning, noodling, silences, count-ins and false
starts between songs. The rule-based editor, asked for the same length, keeps what scores as
the best music instead, which is not what this musician does; the model learns the difference
from the pairs. What the demo leaves out, and why:
  - played mistakes (session.mistake_prob 0): hearing one wrong bar takes far more than the
    demo's few minutes of training;
  - disk: every file is FLAC at 22.05 kHz, and the training pairs, which only the model reads
    (and it reads mono), are mono; the held-out jams, which you listen to, are stereo. Each
    training pair's mel cache is removed once the pair is aligned (the supervised editor reads
    the audio), so the demo's folder stays under 400 MB at every moment.
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import log

REPO = Path(__file__).resolve().parents[1]
SYNTH_CONFIG = REPO / "configs" / "synth" / "demo.json"
MODEL_CONFIG = REPO / "configs" / "supervised" / "demo.json"
MODEL_ROW = "supervised (demo)"
DEFAULTS = {"seed": 0, "pairs": 6, "heldout": 2, "minutes": 8.0, "jobs": 2}

# Seconds on 2 CPU cores and MB of disk per minute of raw recording, training and held-out
# jams apart, plus what does not grow with them. Measured with other work keeping the two
# cores busy (docs/results.md, "The demo"): on idle cores the demo takes less.
TRAIN_S_PER_MIN, HELDOUT_S_PER_MIN, FIXED_S = 4.5, 3.5, 20.0
TRAIN_MB_PER_MIN, HELDOUT_MB_PER_MIN, FIXED_MB = 3.4, 12.3, 8.0


def estimate(*, pairs: int, heldout: int, minutes: float) -> tuple[float, float]:
    """What a demo of this size takes with the demo's configs: (seconds on 2 CPU cores, MB)."""
    seconds = FIXED_S + (TRAIN_S_PER_MIN * pairs + HELDOUT_S_PER_MIN * heldout) * minutes
    mb = FIXED_MB + (TRAIN_MB_PER_MIN * pairs + HELDOUT_MB_PER_MIN * heldout) * minutes
    return seconds, mb


def _step(title: str, started: float) -> None:
    print(f"\n== {title}  [{time.time() - started:.0f} s]", flush=True)


def run_demo(out: str = "demo_output", seed: int = DEFAULTS["seed"], *, pairs: int = DEFAULTS["pairs"],
             heldout: int = DEFAULTS["heldout"], minutes: float = DEFAULTS["minutes"],
             epochs: int | None = None, jobs: int = DEFAULTS["jobs"]) -> int:
    """Run the demo into `out`; returns the exit status.

    Args:
        out: folder for everything (made if missing; earlier demo files are reused).
        seed: seed of the corpora and the training run.
        pairs: training pairs (all trained on: the held-out jams are the test).
        heldout: further pairs, never seen in training, that both editors edit.
        minutes: length of each raw recording.
        epochs: passes of the training over the jams (None: the demo config's train.epochs).
            Training has no time limit, so the table is the same on any machine.
        jobs: worker processes for generation and alignment.
    """
    from .align.prepare import describe
    from .config import load
    from .edit_files import edit_to_files
    from .editors import propose
    from .evaluate import evaluate_editors
    from .jobs import run_jobs
    from .layout import Layout, discover
    from .supervised.config import SupervisedConfig
    from .supervised.toy import write_corpus_pointers
    from .supervised.train import train
    from .synth import SynthConfig, write_corpus
    from .training import Run

    root = Path(out)
    train_dir, held_dir = root / "training_data", root / "heldout"
    cache_dir, model_dir, edits_dir = root / "cache", root / "models" / "supervised", root / "edits"
    synth_cfg = load(SynthConfig, SYNTH_CONFIG)
    seconds, mb = estimate(pairs=pairs, heldout=heldout, minutes=minutes)
    print(f"editorbot demo: about {seconds / 60:.0f} minutes on 2 CPU cores; writes about {mb:.0f} MB "
          f"to {root}/ (FLAC at {synth_cfg.raw_sr / 1000:g} kHz). Ctrl-C stops it; a second run "
          "reuses the jams already written.", flush=True)
    started = time.time()

    _step(f"1/6 generating {pairs} training and {heldout} held-out jam sessions of {minutes:g} min, "
          f"each with the edit a jam trimmer made of it (editorbot.synth, {SYNTH_CONFIG.name})", started)
    mono = load(SynthConfig, SYNTH_CONFIG, ["channels=1"])  # only the model hears these, in mono
    write_corpus(train_dir, pairs=pairs, seed=seed, minutes=minutes, write_unmastered=False,
                 config=mono, jobs=jobs)
    held_names = write_corpus(held_dir, pairs=heldout, seed=seed + 1000, minutes=minutes,
                              write_unmastered=False, config=synth_cfg, jobs=jobs)

    _step("2/6 aligning each training edit to its raw (editorbot.align.prepare_pair)", started)
    layout = Layout(train_dir, cache_dir)
    found = discover(train_dir)
    report = run_jobs(_prepare, [(p.name, (p, layout), minutes * 60.0) for p in found.pairs],
                      jobs=jobs, desc="align")
    for name, summary in sorted(report.results.items()):
        print(f"  {describe(summary)}")
    for name, err in sorted(report.failures.items()):
        log.warning("%s: not aligned (%s)", name, err)
    # The held-out pairs are judged against their exact truth, not an alignment.
    write_corpus_pointers(held_dir)

    cfg = load(SupervisedConfig, MODEL_CONFIG,
               [f"train.seed={seed}"] + ([] if epochs is None else [f"train.epochs={epochs}"]))
    _step(f"3/6 training the supervised editor on the CPU, {cfg.train.epochs} passes over the jams "
          f"({MODEL_CONFIG.relative_to(REPO)})", started)
    result = train(cfg, Run(save_dir=model_dir, data_dir=train_dir, cache_dir=cache_dir, overwrite=True),
                   jobs=jobs)
    checkpoint = model_dir / "best.pt"
    print(f"  {result.steps} steps in {result.seconds:.0f} s on {len(result.train_names)} jams; "
          f"checkpoint {checkpoint}")

    _step("4/6 editing the held-out jams with the model and with the rule-based editor, each "
          "asked for the human edit's length", started)
    held = Layout(held_dir, root / "cache_heldout")
    outputs = {}
    for name in held_names:
        raw = next(held.input_dir.glob(f"{name}_raw.*"))
        human_s = _duration(next(held.output_dir.glob(f"{name}_edit.*")))
        for tag, ckpt in (("rule-based", None), ("supervised", checkpoint)):
            done = edit_to_files(raw, edits_dir / f"{name}_{tag}.flac", checkpoint=ckpt,
                                 target_duration_s=human_s, overwrite=True)
            outputs[(name, tag)] = done["paths"]
            said = next(line for line in done["lines"] if line.startswith("edit:"))
            print(f"  {name}, {tag}: {said.split(None, 1)[1]}")

    _step("5/6 evaluating both editors against the held-out human edits", started)
    editors = {"rule-based": lambda raw, **kw: propose(raw, **kw),
               MODEL_ROW: lambda raw, **kw: propose(raw, checkpoint=checkpoint, **kw)}
    evaluate_editors(held_dir, editors, cache_dir=held.cache_dir, match_duration=True, progress=False)
    print("  kept IoU: the raw both the editor and the human kept, over what either kept; cut F1:\n"
          "  cuts (and the start and end) within one beat of the human's, both sides of each cut")

    _step("6/6 where everything went", started)
    print(f"  training pairs:    {train_dir} (input/, desired_output/, truth/, pointer_sequences/)")
    print(f"  model:             {checkpoint} (TensorBoard logs: {model_dir / 'logs'})")
    print(f"  held-out pairs:    {held_dir}")
    for (name, tag), paths in outputs.items():
        print(f"  {name} by {tag}: {paths['edit']}, review page {paths['review']}")
    print(f"  timelines (OTIO, EDL, FCP XML) and segment lists sit next to each edit in {edits_dir}")
    print(f"\ndone in {time.time() - started:.0f} s; {_megabytes(root):.0f} MB in {root}/. "
          "Open a review page in a browser to see and hear the cuts.")
    return 0


def _prepare(task):
    """Align one pair, then drop its cached mels: nothing after alignment reads them."""
    from .align.prepare import prepare_pair

    pair, layout = task
    summary = prepare_pair(pair, layout)
    for side in ("raw", "edit"):
        layout.features(pair.name, side).unlink(missing_ok=True)
    return summary


def _duration(path: Path) -> float:
    from .audio import probe

    return probe(path).duration_s


def _megabytes(root: Path) -> float:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
