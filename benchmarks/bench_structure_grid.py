"""The pointer's structure channels on fixed blocks or on the beat grid: which tells better
what the editor keeps (issue 25 asks for the channels on the shared beat and bar grid).

    cd benchmarks && OMP_NUM_THREADS=1 nice ../.venv/bin/python bench_structure_grid.py \
        [--root out/finetune_real]

Reads the layout bench_finetune_real.py leaves: train/ (pairs `editorbot prepare` aligned)
and test/ (held-out jams with their exact truth as pointer files). For every recording,
editorbot.pointer.structure.structure_context with the model's settings (ModelConfig) over
three kinds of unit:
- blocks: the model's own, repeat_block frames;
- beats: one unit per beat of the shared grid (editorbot.grid, cached), the lags, the
  smoothing and the gaps kept at the same length in seconds (scaled by the median beat);
- even: units of the recording's median beat length, not placed on the beats (a control:
  the unit's length without its placement).
For beats and even, the mel is warped so that every unit becomes repeat_block frames of its
mean, structure_context reads that, and each unit's channels are held over its own frames.
A recording without a steady beat keeps the blocks. Two classifiers fit on the training
recordings' frames (every 8th; the 11 channels) predict which held-out frames the editor
keeps: the mean over held-out recordings of ROC AUC and of IoU at probability 0.5.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STEP = 8  # every 8th frame (93 ms) trains and scores: neighbours repeat each other


def unit_means(mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(C, nb): the mel's mean over each unit [starts[i], starts[i + 1])."""
    cs = np.concatenate([np.zeros((mel.shape[0], 1)), np.cumsum(mel, axis=1, dtype=np.float64)], axis=1)
    return ((cs[:, starts[1:]] - cs[:, starts[:-1]]) / np.diff(starts)).astype(np.float32)


def on_units(mel: np.ndarray, starts: np.ndarray, cfg) -> np.ndarray:
    """structure_context with one unit per [starts[i], starts[i + 1]), held over each unit's
    frames (and before the first and after the last unit)."""
    import torch

    from editorbot.pointer.structure import structure_context

    block, t = cfg.repeat_block, mel.shape[1]
    unit = float(np.median(np.diff(starts)))
    warped = np.repeat(unit_means(mel, starts), block, axis=1)
    ctx = structure_context(torch.from_numpy(warped), block=block,
                            min_lag=max(round(cfg.repeat_min_lag / unit), 1) * block,
                            max_lag=round(cfg.repeat_max_lag / unit) * block,
                            smooth=max(round(cfg.repeat_smooth * block / unit), 1),
                            threshold=cfg.structure_threshold,
                            gap=max(round(cfg.structure_gap * block / unit), 1)).numpy()[:, ::block]
    which = np.clip(np.searchsorted(starts, np.arange(t), side="right") - 1, 0, len(starts) - 2)
    return ctx[:, which]


def channels(layout, name: str, kind: str, cfg) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(frames / STEP, 11) channels, (frames / STEP,) kept by the editor, the median beat (s)."""
    import torch

    from editorbot.dataset import load_recording
    from editorbot.grid import grid_for
    from editorbot.pointer.structure import structure_context

    rec = load_recording(layout, name)
    kept = np.zeros(rec.n_raw, bool)
    kept[rec.pointers[rec.pointers >= 0]] = True
    raw = next(layout.input_dir.glob(f"{name}_raw.*"))
    grid = grid_for(raw, rec.params, cache_dir=layout.cache_dir)
    beats = np.unique(np.clip(grid.beat_frames(rec.params), 0, rec.n_raw)) if grid.steady else np.zeros(0, int)
    beat_s = float(np.median(np.diff(beats))) * rec.params.hop_length / rec.params.sr if len(beats) > 2 else None
    if kind == "blocks" or len(beats) < 3:
        ctx = structure_context(torch.from_numpy(rec.mel), block=cfg.repeat_block,
                                min_lag=cfg.repeat_min_lag, max_lag=cfg.repeat_max_lag,
                                smooth=cfg.repeat_smooth, threshold=cfg.structure_threshold,
                                gap=cfg.structure_gap).numpy()
    else:
        if kind == "even":
            beats = np.arange(0, rec.n_raw, max(int(round(np.median(np.diff(beats)))), 1))
        starts = np.unique(np.concatenate([beats, [rec.n_raw]]))
        ctx = on_units(rec.mel, starts, cfg)
    return ctx.T[::STEP], kept[::STEP], beat_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(OUT / "finetune_real"),
                   help="bench_finetune_real.py's --out (its train/ and test/ layouts)")
    args = p.parse_args()

    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from editorbot.dataset import prepared_names
    from editorbot.layout import Layout
    from editorbot.pointer.config import ModelConfig

    cfg = ModelConfig()
    root = Path(args.root)
    layouts = {part: Layout(root / part / "training_data", root / part / "cache") for part in ("train", "test")}
    names = {part: prepared_names(lay.pointer_dir) for part, lay in layouts.items()}
    print(f"== {len(names['train'])} training and {len(names['test'])} held-out recordings in {root}", flush=True)
    print("\n| units | classifier | held-out ROC AUC (mean) | held-out IoU at 0.5 (mean) | worst recording's AUC |")
    print("|---|---|---|---|---|")
    for kind in ("blocks", "beats", "even"):
        t0 = time.process_time()
        sets = {part: [channels(layouts[part], n, kind, cfg) for n in names[part]] for part in layouts}
        x = np.concatenate([c for c, _, _ in sets["train"]])
        y = np.concatenate([k for _, k, _ in sets["train"]])
        for label, clf in (("logistic regression", LogisticRegression(max_iter=2000)),
                           ("boosted trees", HistGradientBoostingClassifier(max_iter=200, random_state=0))):
            clf.fit(x, y)
            aucs, ious = [], []
            for c, k, _ in sets["test"]:
                prob = clf.predict_proba(c)[:, 1]
                aucs.append(roc_auc_score(k, prob) if 0 < k.mean() < 1 else np.nan)
                ious.append(((prob > 0.5) & k).sum() / max(((prob > 0.5) | k).sum(), 1))
            print(f"| {kind} | {label} | {np.nanmean(aucs):.4f} | {np.mean(ious):.4f} | {np.nanmin(aucs):.3f} |",
                  flush=True)
        beats = [b for part in sets.values() for _, _, b in part if b is not None]
        print(f"   ({kind}: {time.process_time() - t0:.0f} CPU s; {len(beats)} of "
              f"{sum(map(len, sets.values()))} recordings with a steady beat, median beat "
              f"{np.median(beats):.3f} s)" if beats else f"   ({kind}: no steady beat)", flush=True)


if __name__ == "__main__":
    main()
