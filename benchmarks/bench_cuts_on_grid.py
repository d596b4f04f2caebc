"""A model's cuts as decoded and moved onto the raw's beat and bar grid (grid.snap_cuts).

    .venv/bin/python benchmarks/bench_cuts_on_grid.py --data-dir D --checkpoint P [--cache-dir C]
        [--names N ...]

Evaluates one checkpoint four times on the same pairs with editorbot.evaluate: with its
cuts where the model put them; with each cut on the bar line within a beat, else on the
nearest beat; and with each cut on an edge of the sound within grid.EDGE_WINDOW_S (where
playing starts or stops: after or before a silence, or at a sudden fall or rise of the level,
grid.sound_edges), else on the grid; and on an edge of the sound, else where it was (what
`editorbot edit` does with a pointer or a supervised checkpoint's edits). Default pairs: the checkpoint's held-out recordings. Prints one table
and, for each way of moving the cuts, the mean change of kept IoU and cut F1 within a beat;
the grid is the tracker's (cached in --cache-dir/grid).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, help="default: DATA_DIR/../cache")
    ap.add_argument("--names", nargs="+", help="pairs to score (default: the checkpoint's held-out ones)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    from editorbot.checkpoint import load_checkpoint
    from editorbot.evaluate import evaluate_editors
    from editorbot.grid import grid_for, snap_cuts, sound_edges
    from editorbot.pointer import infer
    from editorbot.pointer.infer import raw_features
    from editorbot.supervised import infer as supervised

    cache = args.cache_dir or args.data_dir.parent / "cache"
    ckpt = load_checkpoint(args.checkpoint)
    names = args.names or ckpt["split"]["val"]
    if ckpt.get("kind") == "supervised":
        params, module, kind = supervised.load_model(ckpt)[2], supervised, "supervised"
        extra = {}
    else:
        params, module, kind = infer.load_model(ckpt)[2], infer, "pointer"
        extra = {"cache_dir": cache, "progress": False}
    snapped = module.snap_cuts

    def decoded(raw_path, **kwargs):
        module.snap_cuts = lambda edit, grid, **_: edit
        try:
            return module.propose_edit(raw_path, ckpt, **extra, **kwargs)
        finally:
            module.snap_cuts = snapped

    memo: dict = {}

    def once(raw_path, target_duration_s=None, **kwargs):  # each way moves the same decoded edit
        key = (str(raw_path), target_duration_s)
        if key not in memo:
            memo[key] = decoded(raw_path, target_duration_s=target_duration_s, **kwargs)
        return memo[key]

    def edges_of(raw_path):  # the raw's edges of the sound, read from its mel once
        key = ("edges", str(raw_path))
        if key not in memo:
            memo[key] = sound_edges(raw_features(raw_path, params, None, cache_dir=cache), params)
        return memo[key]

    def moved(with_edges: bool, on_grid: bool = True):
        def edit(raw_path, target_duration_s=None, **kwargs):
            e = once(raw_path, target_duration_s, **kwargs)
            edges = edges_of(raw_path) if with_edges else None
            return snap_cuts(e, grid_for(raw_path, params, cache_dir=cache) if on_grid else None,
                             keep_length=target_duration_s is not None, edges=edges)
        return edit

    ways = {"as decoded": once, "on the grid": moved(False),
            "on an edge of the sound, else the grid": moved(True),
            "on an edge of the sound, else as decoded": moved(True, on_grid=False)}
    editors = {f"{kind}, cuts {way}": e for way, e in ways.items()}
    results = evaluate_editors(args.data_dir, editors, names=names, cache_dir=cache,
                               params=params, progress=False)
    before, *after = (results[e]["mean"] for e in editors)
    for label, mean in zip(list(ways)[1:], after):
        print(f"{len(names)} held-out pairs; {label} minus as decoded: kept IoU "
              f"{mean['kept_iou'] - before['kept_iou']:+.3f}, cut F1 within a beat "
              f"{mean['cut_f1'] - before['cut_f1']:+.3f}")
    if args.json:
        args.json.write_text(json.dumps({e: r["mean"] for e, r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
