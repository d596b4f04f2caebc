"""What each keep logit of a trained pointer model knows, recording by recording: on the
recordings its validation chose with, and on held-out ones.

    cd benchmarks && OMP_NUM_THREADS=1 nice ../.venv/bin/python bench_keep_logits.py \
        --root out/adapt/last_take [--model base_20] [--evaluate]

Reads the layout bench_adapt.py leaves under --root (train_N/ the pairs a run trained and
validated on, test/ the held-out pairs, MODEL/best.pt); for bench_finetune_real.py's pass
--root out/finetune_real --train train --model models/base.

For every validation and held-out recording, per keep logit (the model's own, the structure
keep GRU's alone, their sum: the checkpoint's possible keep_source and one more), frame by
frame against the frames the editor plays: ROC AUC (1: every kept frame above every dropped
one; 0.5: chance; below: the logit keeps what the editor drops) and binary cross-entropy.
A validation set whose recordings all score near 1 while held-out ones fall below 0.5 cannot
see that failure, whatever it chooses. The summary lines add each logit's mean magnitude:
in the sum, the larger one decides wherever the two disagree.

--evaluate: for each keep_source a checkpoint can hold (the model's logit, the sum), the
plan validation would choose for it (choose_keep_plan on the validation recordings, as
training does) and the held-out edits decoded with it, through evaluate_editors (kept-raw
IoU, cut F1 within a beat).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import OUT

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SOURCES = ("model", "structure", "model+structure")


def keep_logits(net, data, name: str) -> tuple[dict[str, np.ndarray], np.ndarray, object]:
    """({source: (n_raw,) logit}, (n_raw,) bool kept by the editor, the Encoded)."""
    import torch

    from editorbot.pointer.data import make_batch

    n_steps = data.recordings[name].steps.n_path
    whole = make_batch(data, [(name, np.arange(n_steps), np.ones(n_steps, np.float32), False)])
    with torch.no_grad():
        enc = net.encode(torch.from_numpy(whole["mel"]), torch.from_numpy(whole["lengths"]))
    model, structure = enc.keep[0].numpy(), enc.keep_structure[0].numpy()
    return ({"model": model, "structure": structure, "model+structure": model + structure},
            whole["kept"][0] > 0, enc)


def frame_scores(logit: np.ndarray, kept: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, binary cross-entropy) of a logit against the kept frames."""
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(kept, logit) if 0 < kept.mean() < 1 else float("nan")
    bce = float(np.mean(np.logaddexp(0.0, logit) - kept * logit))
    return auc, bce


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=OUT / "adapt" / "last_take")
    p.add_argument("--train", default="train_20", help="the folder under --root the run trained on")
    p.add_argument("--model", default="base_20", help="the run's folder under --root (best.pt in it)")
    p.add_argument("--evaluate", action="store_true",
                   help="decode the held-out pairs with each logit and its validation-chosen plan")
    args = p.parse_args()

    import torch

    from editorbot.checkpoint import load_checkpoint
    from editorbot.evaluate import DEFAULT_BEAT_PERIOD_S, evaluate_editors
    from editorbot.pointer.data import PointerData
    from editorbot.pointer.decode import smoothed_keep
    from editorbot.pointer.infer import load_model, passage_bounds, propose_edit
    from editorbot.pointer.model import KEEP_SOURCES
    from editorbot.pointer.train import choose_keep_plan

    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.root / args.model / "best.pt")
    net, cfg, params = load_model(ckpt)
    net.keep_source = "model"  # the logits are read apart
    if net.structure_keep_gru is None:
        raise SystemExit(f"{args.root / args.model}: a model without the structure keep GRU")
    train, test = args.root / args.train, args.root / "test"
    fps = params.frames_per_s
    window = int(round(cfg.decode.keep_veto_s * fps))
    snap = int(round(cfg.decode.keep_snap_s * fps))
    means: dict[str, list[np.ndarray]] = {s: [] for s in KEEP_SOURCES}
    kepts, bounds = [], []
    print(f"{args.root / args.model}/best.pt (keep_source {ckpt.get('keep_source')}); "
          "per recording, ROC AUC / cross-entropy of each keep logit against the editor's frames")
    print(f"{'set':5s} {'recording':28s} {'kept':>5s}  " + "  ".join(f"{s:>17s}" for s in SOURCES))
    summary: dict[str, list] = {}
    for label, root, names in (("val", train, ckpt["split"]["val"]), ("test", test, None)):
        data = PointerData(root / "cache", root / "training_data" / "pointer_sequences")
        for name in names or sorted(data.recordings):
            logits, kept, enc = keep_logits(net, data, name)
            scores = {s: frame_scores(logits[s], kept) for s in SOURCES}
            summary.setdefault(label, []).append([(*scores[s], np.abs(logits[s]).mean()) for s in SOURCES])
            print(f"{label:5s} {name:28s} {kept.mean():5.2f}  "
                  + "  ".join(f"{a:7.3f} / {b:7.3f}" for a, b in scores.values()), flush=True)
            if label == "val" and args.evaluate:
                for s in KEEP_SOURCES:
                    means[s].append(smoothed_keep(enc.with_keep(torch.from_numpy(logits[s])[None]), 0, window))
                kepts.append(kept.astype(np.float32))
                bounds.append(passage_bounds(data.mel(name), params))
    for label, rows in summary.items():
        a = np.array(rows)  # (recordings, sources, 2)
        print(f"{label:5s} {'mean':28s} {'':5s}  " + "  ".join(
            f"{np.nanmean(a[:, i, 0]):7.3f} / {np.nanmean(a[:, i, 1]):7.3f}" for i in range(len(SOURCES)))
            + f"   (AUC below 0.5: {', '.join(str(int((a[:, i, 0] < 0.5).sum())) for i in range(len(SOURCES)))};"
            + f" mean |logit|: {', '.join(f'{a[:, i, 2].mean():.2f}' for i in range(len(SOURCES)))})")
    if not args.evaluate:
        return
    beat = int(round(DEFAULT_BEAT_PERIOD_S * fps))
    editors = {}
    for s in KEEP_SOURCES:
        per_passage, threshold, score = choose_keep_plan(means[s], bounds, kepts, snap, tol=beat,
                                                         threshold=cfg.decode.keep_threshold)
        print(f"{s}: validation's plan {'by passages' if per_passage else 'frame by frame'}, "
              f"threshold {threshold}, scoring {score:.3f} on the validation recordings")
        chosen = dict(ckpt, keep_source=s, keep_passages=per_passage, keep_threshold=threshold)
        editors[s] = (lambda c: lambda raw, **kw: propose_edit(raw, c, cache_dir=test / "cache",
                                                                progress=False, **kw))(chosen)
    evaluate_editors(test / "training_data", editors, cache_dir=test / "cache", progress=False)


if __name__ == "__main__":
    main()
