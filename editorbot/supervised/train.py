"""Train the supervised editor on aligned pairs: `editorbot train supervised ...`.

Pairs are split by recording; training draws random crops, validation runs the inference
path (infer.predict) over whole held-out recordings. Checkpoints are written atomically.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..checkpoint import check_save_dir, save_checkpoint
from ..config import from_dict, load, to_dict
from ..dataset import split_by_recording
from ..errors import UserError, log
from ..features import DEFAULT_PARAMS, FeatureParams
from ..jobs import run_jobs
from ..layout import Layout, Pair, discover
from .config import SupervisedConfig
from .data import RawTimeRecording, collate, crop, load_recording, random_crops, tiled_crops
from .infer import decide_kept, predict
from .labels import Label
from .losses import compute_losses, masked_l1, stft_gain_basis
from .model import SupervisedEditor

TRAIN_TAGS = ("l1_loss", "msstft_loss", "mse_loss", "label_loss", "consistency_loss",
              "feature_loss", "total", "label_accuracy")


@dataclass(frozen=True)
class _LoadTask:
    pair: Pair
    layout: Layout
    params: FeatureParams


def _load(task: _LoadTask) -> RawTimeRecording:
    return load_recording(task.pair, task.layout, task.params)


def load_recordings(pairs: list[Pair], layout: Layout, params: FeatureParams, *, jobs: int = 1,
                    progress: bool = True) -> list[RawTimeRecording]:
    """Load and label every pair (labels cached); a pair that fails is an error."""
    from ..precache import pair_seconds

    items = [(p.name, _LoadTask(p, layout, params), pair_seconds(p)) for p in pairs]
    report = run_jobs(_load, items, jobs=jobs, desc="load pairs", progress=progress)
    if report.failures:
        name, err = sorted(report.failures.items())[0]
        raise UserError(err if len(report.failures) == 1 else
                        f"{err} (and {len(report.failures) - 1} more pairs failed)")
    return [report.results[p.name] for p in pairs]


@torch.no_grad()
def validate(model: SupervisedEditor, recordings: list[RawTimeRecording], cfg: SupervisedConfig,
             params: FeatureParams, stft_basis: torch.Tensor) -> dict[str, float]:
    """Losses on crops tiling the recordings, and the inference path on whole recordings.

    Returns a dict with total_loss (the training loss), l1_kept (predicted mel with the
    predicted labels, on kept non-seam frames), l1_kept_true_labels, l1_identity (raw mel
    as the prediction), l1_ratio (l1_kept / l1_identity), msstft_treated and
    msstft_identity (audio loss of the treated raw and of the raw with only the file-level
    offset, against the aligned edit), label_accuracy (all labels), keep_accuracy and
    kept_iou (of the frames infer.decide_kept keeps).
    """
    model.eval()
    n_frames = cfg.model.crop_tokens * cfg.model.frames_per_token
    crops = tiled_crops(recordings, n_frames)
    total, weight, l1_true = 0.0, 0.0, 0.0
    recon_total = 0.0
    msstft = {"msstft_loss": 0.0, "msstft_identity": 0.0}
    for b in range(0, len(crops), cfg.train.batch_size):
        chunk = crops[b:b + cfg.train.batch_size]
        batch = collate([crop(recordings[i], f0, n_frames, params) for i, f0 in chunk], stft_basis.device)
        parts = compute_losses(model, batch, cfg.loss, params, stft_basis, report_audio=True)
        w = float(batch["valid"].sum())
        total += float(parts["total"]) * w
        weight += w
        r = float(batch["recon_mask"].sum())
        l1_true += float(parts["l1_loss"]) * r
        recon_total += r
        for key in msstft:
            msstft[key] += float(parts[key]) * r
    l1 = l1_id = 0.0
    n_recon = n_valid = correct = keep_ok = inter = union = 0
    for rec in recordings:
        pred = predict(model, rec.raw_mel, params, batch_size=cfg.train.batch_size)
        m = rec.recon_mask
        mt = torch.from_numpy(m.astype(np.float32))[None]
        target = torch.from_numpy(rec.target_mel)[None]
        l1 += float(masked_l1(torch.from_numpy(pred.pred_mel)[None], target, mt)) * m.sum()
        l1_id += float(masked_l1(torch.from_numpy(rec.raw_mel)[None], target, mt)) * m.sum()
        n_recon += int(m.sum())
        correct += int((pred.labels == rec.labels).sum())
        kept = decide_kept(pred.keep_prob, cfg.infer, params.frames_per_s)
        truth = rec.labels != Label.CUT
        keep_ok += int((kept == truth).sum())
        inter += int((kept & truth).sum())
        union += int((kept | truth).sum())
        n_valid += rec.n_frames
    model.train()
    out = {"total_loss": total / max(weight, 1.0),
           "l1_kept": l1 / max(n_recon, 1), "l1_identity": l1_id / max(n_recon, 1),
           "l1_kept_true_labels": l1_true / max(recon_total, 1.0),
           "msstft_treated": msstft["msstft_loss"] / max(recon_total, 1.0),
           "msstft_identity": msstft["msstft_identity"] / max(recon_total, 1.0),
           "label_accuracy": correct / max(n_valid, 1), "keep_accuracy": keep_ok / max(n_valid, 1),
           "kept_iou": inter / max(union, 1)}
    out["l1_ratio"] = out["l1_kept"] / max(out["l1_identity"], 1e-9)
    return out



def train(cfg: SupervisedConfig | None, data_dir: str | Path, save_dir: str | Path, *,
          cache_dir: str | Path = "cache", log_dir: str | Path | None = None,
          resume: str | Path | None = None, overwrite: bool = False, epochs: int | None = None, jobs: int = 1,
          progress: bool = True, params: FeatureParams = DEFAULT_PARAMS) -> dict:
    """Train (or resume training) and write save_dir/latest.pt each epoch and best.pt
    whenever the validation loss improves.

    Args:
        cfg: the settings; None on resume, which uses the checkpoint's config.
        epochs: total epochs (overrides the config's train.epochs).
        data_dir: the data contract's training_data folder, with pointer_sequences/.
        log_dir: TensorBoard folder (default save_dir/logs).
        resume: a latest.pt / best.pt to continue from.
        overwrite: start a new run in a save_dir that holds another run's checkpoints.
        jobs: processes that load pairs.

    Returns:
        dict with the last epoch's validation metrics, 'best_val_loss', 'epochs',
        'train_names', 'val_names' and 'seconds'. The checkpoints store the split as
        split: {"train": [...], "val": [...]}, as every trainer's do.
    """
    from torch.utils.tensorboard import SummaryWriter

    started = time.perf_counter()
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs {epochs}: must be >= 1")
    save_dir = Path(save_dir)
    check_save_dir(save_dir, resume=resume, overwrite=overwrite)
    layout = Layout(Path(data_dir), Path(cache_dir))
    found = discover(data_dir)
    for line in found.describe_orphans():
        log.warning(line)
    if not found.pairs:
        raise UserError(f"{data_dir}: no (raw, edit) pairs found; put them in input/ and desired_output/")
    state = None
    if resume is not None:
        from ..checkpoint import load_checkpoint
        state = load_checkpoint(resume)
        if state["kind"] != "supervised":
            raise UserError(f"{resume}: a '{state['kind']}' checkpoint, not 'supervised'")
        cfg = from_dict(SupervisedConfig, state["config"], where=f"{resume} config")
        params = FeatureParams(**state["feature_params"])
    if cfg is None:
        raise ValueError("train: give a config, or a checkpoint to resume")
    if epochs is not None:
        cfg.train.epochs = epochs
    names = [p.name for p in found.pairs]
    if state is not None:
        val_names = [n for n in state["split"]["val"] if n in names]
        train_names = [n for n in names if n not in val_names]
    else:
        train_names, val_names = split_by_recording(names, cfg.train.val_fraction, cfg.train.split_seed,
                                                    val_names=cfg.train.val_names)
    by_name = {p.name: p for p in found.pairs}
    train_recs = load_recordings([by_name[n] for n in train_names], layout, params, jobs=jobs, progress=progress)
    val_recs = load_recordings([by_name[n] for n in val_names], layout, params, jobs=jobs, progress=progress)
    if not val_recs:
        log.warning("%s: one recording only: no held-out validation, best.pt follows the training loss",
                    data_dir)
    edit_ref_db = float(np.mean([r.ref_edit_db for r in train_recs]))

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.train.seed)
    model = SupervisedEditor(cfg.model, params).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    start_epoch, step, best = 0, 0, math.inf
    if state is not None:
        model.load_state_dict(state["model_state"])
        opt.load_state_dict(state["optimizer_state"])
        start_epoch, step, best = state["epoch"], state["step"], state["best_val_loss"]
    stft_basis = stft_gain_basis(params, cfg.model.n_gain_bands).to(device)
    writer = SummaryWriter(str(log_dir or save_dir / "logs"))
    n_frames = cfg.model.crop_tokens * cfg.model.frames_per_token
    crop_s = n_frames / params.frames_per_s
    total_frames = sum(r.n_frames for r in train_recs)
    n_crops = max(math.ceil(total_frames / n_frames), cfg.train.batch_size)
    metrics: dict[str, float] = {}
    model.train()
    for epoch in range(start_epoch, cfg.train.epochs):
        rng = np.random.default_rng([cfg.train.seed, epoch])
        torch.manual_seed(cfg.train.seed * 100003 + epoch)
        crops = random_crops(train_recs, n_crops, n_frames, rng)
        sums: dict[str, float] = {}
        bar = tqdm(total=n_crops * crop_s, unit="s", desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}{postfix}]")
        for b in range(0, n_crops, cfg.train.batch_size):
            chunk = crops[b:b + cfg.train.batch_size]
            batch = collate([crop(train_recs[i], f0, n_frames, params) for i, f0 in chunk], device)
            parts = compute_losses(model, batch, cfg.loss, params, stft_basis)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            step += 1
            for tag in TRAIN_TAGS:
                value = float(parts[tag].detach())
                writer.add_scalar(f"train/{tag if tag != 'total' else 'total_loss'}", value, step)
                sums[tag] = sums.get(tag, 0.0) + value * len(chunk)
            bar.set_postfix_str(f"loss {sums['total'] / (b + len(chunk)):.3f}", refresh=False)
            bar.update(len(chunk) * crop_s)
        bar.close()
        train_means = {k: v / n_crops for k, v in sums.items()}
        if val_recs:
            metrics = validate(model, val_recs, cfg, params, stft_basis)
            for k, v in metrics.items():
                writer.add_scalar(f"val/{k}", v, step)
            score = metrics["total_loss"]
        else:
            metrics = {}
            score = train_means["total"]
        writer.flush()
        log.info("epoch %d: train loss %.4f, l1 %.4f, labels %.3f%s", epoch + 1, train_means["total"],
                 train_means["l1_loss"], train_means["label_accuracy"],
                 "" if not metrics else
                 f"; val loss {metrics['total_loss']:.4f}, l1 {metrics['l1_kept']:.4f} "
                 f"(identity {metrics['l1_identity']:.4f}), keep acc {metrics['keep_accuracy']:.3f}, "
                 f"kept IoU {metrics['kept_iou']:.3f}")
        improved = score < best
        best = min(best, score)
        ckpt = {"kind": "supervised", "config": to_dict(cfg), "feature_params": params.as_dict(),
                "editorbot_version": __version__, "model_state": model.state_dict(),
                "optimizer_state": opt.state_dict(), "epoch": epoch + 1, "step": step,
                "best_val_loss": best, "val_metrics": metrics, "train_metrics": train_means,
                "split": {"train": train_names, "val": val_names}, "edit_ref_db": edit_ref_db,
                "labels": [lab.name for lab in Label]}
        save_checkpoint(save_dir / "latest.pt", ckpt)
        if improved:
            save_checkpoint(save_dir / "best.pt", ckpt)
    writer.close()
    return {**metrics, "best_val_loss": best, "epochs": cfg.train.epochs, "train_names": train_names,
            "val_names": val_names, "seconds": time.perf_counter() - started}


def run(args: argparse.Namespace) -> int:
    if args.resume and (args.config or args.set or args.seed is not None):
        raise UserError(f"{args.resume}: resuming uses the checkpoint's config; drop --config, "
                        f"--seed and --set (only --epochs may change)")
    seed = [] if args.seed is None else [f"train.seed={args.seed}"]
    cfg = None if args.resume else load(SupervisedConfig, args.config, seed + args.set)
    result = train(cfg, args.data_dir, args.save_dir, cache_dir=args.cache_dir, log_dir=args.log_dir,
                   resume=args.resume, overwrite=args.overwrite, epochs=args.epochs, jobs=args.jobs,
                   progress=not args.no_progress)
    if "l1_kept" in result:
        print(f"val l1 {result['l1_kept']:.4f} vs identity {result['l1_identity']:.4f} "
              f"({100 * (1 - result['l1_ratio']):.0f}% below), label accuracy "
              f"{result['label_accuracy']:.3f}, keep accuracy {result['keep_accuracy']:.3f}, "
              f"kept IoU {result['kept_iou']:.3f}")
    print(f"trained {result['epochs']} epochs in {result['seconds']:.0f} s; checkpoints in {args.save_dir}")
    return 0
