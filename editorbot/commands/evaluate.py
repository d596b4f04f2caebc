"""`editorbot evaluate`: every editor against the human edits of held-out pairs, in one table."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="compare editors with the human edits of held-out pairs",
        description="Edit each held-out pair with the rule-based editor and with each "
                    "checkpoint, and print one table of edit-level metrics against the human "
                    "edit: frame pointer accuracy within 50 ms, IoU of the raw kept, cut F1 "
                    "within one beat, Kendall tau of segment order, duration error. Held out = "
                    "not in the training split of any given checkpoint.")
    p.add_argument("--checkpoint", action="append", default=[], metavar="PT",
                   help="a trained model (repeatable: one row each)")
    p.add_argument("--data-dir", default="training_data", help="default: training_data")
    p.add_argument("--cache-dir", default="cache", help="default: cache")
    p.add_argument("names", nargs="*", metavar="NAME", help="evaluate only these pairs")
    p.add_argument("--no-baseline", action="store_true", help="leave out the rule-based editor")
    p.add_argument("--match-duration", action="store_true",
                   help="ask every editor for the human edit's length")
    p.add_argument("--json", metavar="PATH", help="also write every figure to PATH")
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib
    import json
    from pathlib import Path

    from ..cache import atomic_write_text
    from ..editors import load_checkpoint
    from ..errors import UserError, log
    from ..evaluate import evaluate_editors
    from ..layout import discover
    from ..outputs import check_outputs

    found = discover(args.data_dir, args.names or None)
    if args.json:
        inputs = {f"checkpoint {i + 1}": p for i, p in enumerate(args.checkpoint)}
        for pair in found.pairs:
            inputs |= {f"the raw recording of {pair.name}": pair.raw,
                       f"the edit of {pair.name}": pair.edit}
        check_outputs([args.json], inputs=inputs, overwrite=args.overwrite)
    editors = {}
    trained_on: dict[str, str] = {}
    for path in args.checkpoint:
        ckpt = load_checkpoint(path)
        infer = importlib.import_module(f"editorbot.{ckpt['kind']}.infer")
        label = f"{ckpt['kind']}:{Path(path).parent.name}/{Path(path).name}"
        editors[label] = _checkpoint_editor(infer.propose_edit, ckpt, args.cache_dir)
        if "split" not in ckpt:
            log.warning("%s: records no training split; its figures may include pairs it "
                        "trained on", path)
        for name in ckpt.get("split", {}).get("train", []):
            trained_on.setdefault(name, path)
    if not args.no_baseline:
        try:
            from ..baseline import propose_edit as baseline
        except ModuleNotFoundError:
            log.warning("the rule-based editor (editorbot.baseline) is not installed; its row is left out")
        else:
            editors = {"rule-based": baseline} | editors
    if not editors:
        raise UserError("nothing to evaluate: give --checkpoint, or leave out --no-baseline")
    names = held_out_names([p.name for p in found.pairs], trained_on, asked=bool(args.names),
                           data_dir=args.data_dir)
    results = evaluate_editors(args.data_dir, editors, names=names, cache_dir=args.cache_dir,
                               match_duration=args.match_duration)
    if args.json:
        atomic_write_text(args.json, json.dumps(_without_nan(results), indent=1))
    failed = sum(len(r["failures"]) for r in results.values())
    return 2 if failed else 0


def held_out_names(names: list[str], trained_on: dict[str, str], *, asked: bool,
                   data_dir) -> list[str]:
    """The pairs to score: none that a checkpoint trained on (its split's "train", the same
    for every kind). Pairs named on the command line that one trained on are an error;
    otherwise they are left out, and said so."""
    from ..errors import UserError, log

    trained = [n for n in names if n in trained_on]
    if trained and asked:
        raise UserError(f"{trained_on[trained[0]]}: trained on {', '.join(trained)}, so its "
                        "figures there would not be held out; name only held-out pairs")
    if trained:
        log.warning("left out %d pairs that the checkpoints trained on: %s", len(trained),
                    ", ".join(trained))
    held = [n for n in names if n not in trained_on]
    if not held:
        raise UserError(f"{data_dir}: every pair was used to train the checkpoint(s); "
                        "evaluate on a data dir with other pairs")
    return held


def _checkpoint_editor(propose_edit, ckpt: dict, cache_dir):
    """An editor callable(raw_path, **kwargs) -> Edit over a loaded checkpoint; editors that
    read cached features (stems) are given --cache-dir."""
    import inspect

    if "cache_dir" in inspect.signature(propose_edit).parameters:
        def editor(raw_path, **kwargs):
            return propose_edit(raw_path, ckpt, cache_dir=cache_dir, **kwargs)
    else:
        def editor(raw_path, **kwargs):
            return propose_edit(raw_path, ckpt, **kwargs)
    return editor


def _without_nan(value):
    """A copy of nested dicts with NaN floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value
