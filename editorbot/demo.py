"""The one-command demo: the whole pipeline on a synthetic corpus, in about 10 minutes on CPU.

Generate (raw, edit) pairs, align them, train a small pointer model for a few minutes, edit
held-out recordings with it and with the rule-based editor, evaluate both against the
held-out human edits, and say where every output went.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

from .errors import UserError, log

REPO = Path(__file__).resolve().parents[1]
SMALL_POINTER_CONFIG = REPO / "configs" / "pointer" / "small.json"
# What the demo needs, and which part of editorbot provides it.
NEEDS = [("editorbot.synth", "write_corpus", "the synthetic corpus (issue 3)"),
         ("editorbot.align.prepare", "prepare_pair", "alignment (issue 4)"),
         ("editorbot.render", "render", "rendering (issue 5)"),
         ("editorbot.export", "export_all", "timeline exports (issue 5)"),
         ("editorbot.pointer.train", "train", "pointer-model training (issue 6)"),
         ("editorbot.pointer.config", "PointerConfig", "pointer-model settings (issue 6)"),
         ("editorbot.pointer.infer", "propose_edit", "pointer-model inference (issue 6)"),
         ("editorbot.evaluate", "evaluate_editors", "evaluation (issue 6)"),
         ("editorbot.supervised.toy", "write_corpus_pointers", "truth pointers of a corpus")]


def missing_pieces() -> list[str]:
    """The parts of editorbot the demo needs that this checkout lacks, one line each."""
    missing = []
    for module, name, what in NEEDS:
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError as err:
            missing.append(f"{module}.{name} ({what}): {err}")
            continue
        if not found:
            missing.append(f"{module}.{name} ({what}): {module} has no {name}")
    if not SMALL_POINTER_CONFIG.is_file():
        missing.append(f"{SMALL_POINTER_CONFIG} (the small pointer-model config, issue 6)")
    return missing


def _step(title: str, started: float) -> None:
    print(f"\n== {title}  [{time.time() - started:.0f} s]", flush=True)


def run_demo(out: str = "demo_output", seed: int = 0, *, pairs: int = 6, heldout: int = 2,
             minutes: float = 2.0, train_minutes: float = 3.0, jobs: int = 1) -> int:
    """Run the demo into `out`; returns the exit status.

    Args:
        out: folder for everything (made if missing; earlier demo files are reused).
        seed: seed of the corpora and the training run.
        pairs: training pairs (one in five or so is held out by training for validation).
        heldout: further pairs, never seen in training, that both editors edit.
        minutes: length of each raw recording.
        train_minutes: wall-clock budget of the pointer-model training.
        jobs: worker processes for generation and alignment.
    """
    missing = missing_pieces()
    if missing:
        raise UserError("the demo needs parts of editorbot that this checkout lacks: "
                        + "; ".join(missing))
    from .align.prepare import describe
    from .baseline import propose_edit as rule_based
    from .config import load
    from .edit_files import edit_to_files
    from .editors import load_checkpoint
    from .evaluate import evaluate_editors
    from .jobs import run_jobs
    from .layout import Layout, discover
    from .pointer.config import PointerConfig
    from .pointer.infer import propose_edit as pointer_edit
    from .pointer.train import train
    from .training import Run
    from .supervised.toy import write_corpus_pointers
    from .synth import write_corpus

    started = time.time()
    root = Path(out)
    train_dir, held_dir = root / "training_data", root / "heldout"
    cache_dir, model_dir, edits_dir = root / "cache", root / "models" / "pointer", root / "edits"

    _step(f"1/6 generating {pairs} training and {heldout} held-out jam sessions "
          f"({minutes:g} min each) with editorbot.synth", started)
    write_corpus(train_dir, pairs=pairs, seed=seed, minutes=minutes, write_unmastered=False, jobs=jobs)
    held_names = write_corpus(held_dir, pairs=heldout, seed=seed + 1000, minutes=minutes,
                              write_unmastered=False, jobs=jobs)

    _step("2/6 aligning each training edit to its raw (editorbot.align.prepare_pair)", started)
    layout = Layout(train_dir, cache_dir)
    found = discover(train_dir)
    report = run_jobs(_prepare, [(p.name, (p, layout), 0.0) for p in found.pairs], jobs=jobs,
                      desc="align", progress=False)
    for name, summary in sorted(report.results.items()):
        print(f"  {describe(summary)}")
    for name, err in sorted(report.failures.items()):
        log.warning("%s: not aligned (%s)", name, err)
    # The held-out pairs are judged against their exact truth, not an alignment.
    write_corpus_pointers(held_dir)

    _step(f"3/6 training a small pointer model for {train_minutes:g} min on the CPU", started)
    cfg = load(PointerConfig, SMALL_POINTER_CONFIG, ["train.bf16=false", f"train.seed={seed}"])
    # the demo's own folder: a second demo run replaces it
    result = train(cfg, Run(model_dir, train_dir, cache_dir, max_minutes=train_minutes, overwrite=True))
    checkpoint = model_dir / "best.pt"
    if not checkpoint.is_file():
        checkpoint = model_dir / "latest.pt"
    print(f"  {result.steps} steps in {result.seconds:.0f} s; checkpoint {checkpoint}")

    _step("4/6 editing the held-out recordings with the model and with the rule-based editor",
          started)
    held = Layout(held_dir, root / "cache_heldout")
    outputs = {}
    for name in held_names:
        raw = next(held.input_dir.glob(f"{name}_raw.*"))
        human_s = _duration(next(held.output_dir.glob(f"{name}_edit.*")))
        for tag, ckpt in (("rule-based", None), ("pointer", checkpoint)):
            done = edit_to_files(raw, edits_dir / f"{name}_{tag}.wav", checkpoint=ckpt,
                                 target_duration_s=human_s, overwrite=True)
            outputs[(name, tag)] = done["paths"]
            said = next(line for line in done["lines"] if line.startswith("edit:"))
            print(f"  {name}, {tag}: {said.split(None, 1)[1]}")

    _step("5/6 evaluating both editors against the held-out human edits "
          "(each asked for the human edit's length)", started)
    model = load_checkpoint(checkpoint)
    editors = {"rule-based": rule_based,
               "pointer (demo, few minutes)": lambda raw, **kw: pointer_edit(raw, model, progress=False, **kw)}
    evaluate_editors(held_dir, editors, cache_dir=held.cache_dir, match_duration=True, progress=False)

    _step("6/6 where everything went", started)
    print(f"  corpus:            {train_dir} (input/, desired_output/, truth/)")
    print(f"  pointer sequences: {layout.pointer_dir}")
    print(f"  mel cache:         {cache_dir / 'features'}")
    print(f"  model:             {checkpoint} (TensorBoard logs: {model_dir / 'logs'})")
    print(f"  held-out pairs:    {held_dir}")
    for (name, tag), paths in outputs.items():
        print(f"  {name} by {tag}: {paths['edit']}, review page {paths['review']}")
    print(f"  timelines and segment lists sit next to each edit in {edits_dir}")
    print(f"\ndone in {time.time() - started:.0f} s. Open a review page in a browser to hear the cuts.")
    return 0


def _prepare(task):
    from .align.prepare import prepare_pair

    pair, layout = task
    return prepare_pair(pair, layout)


def _duration(path: Path) -> float:
    from .audio import probe

    return probe(path).duration_s
