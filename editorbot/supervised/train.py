"""Train the supervised editor on aligned pairs: `editorbot train supervised ...`.

Pairs are split by recording; training draws random crops, validation runs the inference
path (infer.predict) over whole held-out recordings. Checkpoints are written atomically.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import apply_overrides, from_dict, load, to_dict
from ..dataset import prepared_names
from ..errors import UserError, log
from ..features import DEFAULT_PARAMS, FeatureParams
from ..jobs import run_jobs
from ..layout import Layout, Pair, discover
from ..training import (Progress, Run, TrainResult, checkpoint_payload, held_out, measured_levels,
                        messages_above_bars)
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
             params: FeatureParams, stft_basis: torch.Tensor, *,
             until: float = math.inf) -> dict[str, float]:
    """Losses on crops tiling the recordings, and the inference path on whole recordings.

    Both stop at `until` (time.time(), the run's deadline), each after at least one batch
    or recording: the figures are then over what was done by then (scored: the recordings
    that went through the inference path).

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
        if b and time.time() > until:
            break
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
    n_recon = n_valid = correct = keep_ok = inter = union = scored = 0
    for rec in recordings:
        if scored and time.time() > until:
            break
        scored += 1
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
           "kept_iou": inter / max(union, 1), "scored": float(scored)}
    out["l1_ratio"] = out["l1_kept"] / max(out["l1_identity"], 1e-9)
    return out



def train(cfg: SupervisedConfig, run: Run, *, jobs: int = 1,
          params: FeatureParams = DEFAULT_PARAMS) -> TrainResult:
    """Train (or resume training); write run.save_dir/latest.pt each epoch and best.pt
    whenever the validation loss improves.

    Args:
        cfg: the settings; on resume, the checkpoint's model settings (the CLI takes the
            checkpoint's config, with only --epochs changed).
        run: where the pairs are and the checkpoints go; run.resume carries on a run,
            run.max_minutes bounds the whole run (its last epoch ends early, then validates).
        jobs: processes that load pairs.
    """
    from torch.utils.tensorboard import SummaryWriter

    started = time.time()
    deadline = run.deadline()
    save_dir = run.save_dir
    run.check()
    if run.init is not None:
        raise UserError("--init: the supervised editor starts from scratch or --resume")
    state = None
    if run.resume is not None:
        state = load_checkpoint(run.resume)
        if state["kind"] != "supervised":
            raise UserError(f"{run.resume}: a '{state['kind']}' checkpoint, not 'supervised'")
        saved = from_dict(SupervisedConfig, state["config"], where=f"{run.resume} config", saved=True)
        if saved.model != cfg.model:
            raise UserError(f"{run.resume}: trained with other model settings than the config; "
                            "resume with the config it was trained with")
        params = FeatureParams(**state["feature_params"])
    pairs = audio_pairs(run)
    train_names, val_names = held_out(sorted(pairs), cfg.train.val_fraction, cfg.train.split_seed,
                                      val_names=cfg.train.val_names,
                                      saved=None if state is None else state["split"], where=str(run.resume))
    layout = run.layout
    train_recs = load_recordings([pairs[n] for n in train_names], layout, params, jobs=jobs, progress=run.progress)
    val_recs = (load_recordings([pairs[n] for n in val_names], layout, params, jobs=jobs,
                                progress=run.progress) if val_names else [])
    if not val_recs:
        why = "one recording only" if len(pairs) == 1 else "train.val_fraction is 0"
        log.warning("%s: %s: no held-out validation, best.pt follows the training loss", run.data_dir, why)
    edit_ref_db = float(np.mean([r.ref_edit_db for r in train_recs]))
    levels = measured_levels(run, train_names)

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
    writer = SummaryWriter(str(run.logs))
    n_frames = cfg.model.crop_tokens * cfg.model.frames_per_token
    total_frames = sum(r.n_frames for r in train_recs)
    n_crops = max(math.ceil(total_frames / n_frames), cfg.train.batch_size)
    batches = math.ceil(n_crops / cfg.train.batch_size)
    bar = Progress("train supervised", steps=(cfg.train.epochs - start_epoch) * batches, deadline=deadline,
                   enabled=run.progress)
    metrics: dict[str, float] = {}
    history: list[dict] = []
    wrote: set[str] = set()
    epoch, interrupted, out_of_time = start_epoch, False, False
    val_seconds = 0.0  # how long the last validation took
    model.train()
    try:
        for epoch in range(start_epoch + 1, cfg.train.epochs + 1):
            rng = np.random.default_rng([cfg.train.seed, epoch - 1])
            torch.manual_seed(cfg.train.seed * 100003 + epoch - 1)
            crops = random_crops(train_recs, n_crops, n_frames, rng)
            sums: dict[str, float] = {}
            seen = 0
            for b in range(0, n_crops, cfg.train.batch_size):
                chunk = crops[b:b + cfg.train.batch_size]
                batch = collate([crop(train_recs[i], f0, n_frames, params) for i, f0 in chunk], device)
                parts = compute_losses(model, batch, cfg.loss, params, stft_basis)
                opt.zero_grad(set_to_none=True)
                parts["total"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                opt.step()
                step += 1
                seen += len(chunk)
                for tag in TRAIN_TAGS:
                    value = float(parts[tag].detach())
                    writer.add_scalar(f"train/{tag if tag != 'total' else 'total_loss'}", value, step)
                    sums[tag] = sums.get(tag, 0.0) + value * len(chunk)
                bar.step(float(parts["total"].detach()))
                # Stop in time for the last validation to end by the deadline too.
                # (no margin when no validation will run)
                if deadline.passed(margin_s=deadline.margin(val_seconds) if val_recs else 0.0):
                    out_of_time = True
                    break
            train_means = {k: v / max(seen, 1) for k, v in sums.items()}
            if val_recs:
                val_started = time.time()
                metrics = validate(model, val_recs, cfg, params, stft_basis, until=deadline.at)
                val_seconds = time.time() - val_started
                for k, v in metrics.items():
                    writer.add_scalar(f"val/{k}", v, step)
                score = metrics["total_loss"]
            else:
                metrics = {}
                score = train_means["total"]
            writer.flush()
            history.append({"epoch": epoch, "step": step, **metrics})
            bar.say(f"epoch {epoch}: train loss {train_means['total']:.4f}, l1 {train_means['l1_loss']:.4f}, "
                    f"labels {train_means['label_accuracy']:.3f}" + (
                        "" if not metrics else
                        f"; val loss {metrics['total_loss']:.4f}, l1 {metrics['l1_kept']:.4f} "
                        f"(identity {metrics['l1_identity']:.4f}), keep acc {metrics['keep_accuracy']:.3f}, "
                        f"kept IoU {metrics['kept_iou']:.3f}"))
            improved = score < best
            best = min(best, score)
            ckpt = checkpoint_payload(
                "supervised", config=to_dict(cfg), params=params, split=(train_names, val_names),
                step=step, metrics=metrics, model_state=model.state_dict(),
                optimizer_state=opt.state_dict(), epoch=epoch, best_val_loss=best,
                train_metrics=train_means, edit_ref_db=edit_ref_db, labels=[lab.name for lab in Label],
                levels=levels)
            save_checkpoint(save_dir / "latest.pt", ckpt)
            wrote.add("latest.pt")
            if improved:
                save_checkpoint(save_dir / "best.pt", ckpt)
                wrote.add("best.pt")
            if out_of_time or deadline.passed():
                out_of_time = True
                break
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: the last finished epoch is in %s; carry on with --resume %s",
                    save_dir / "latest.pt", save_dir / "latest.pt")
    finally:
        bar.close()
        writer.close()
    return TrainResult(save_dir, step, train_names, val_names, time.time() - started, metrics=metrics,
                       history=history, wrote=tuple(sorted(wrote)), interrupted=interrupted,
                       out_of_time=out_of_time)


def audio_pairs(run: Run) -> dict[str, Pair]:
    """The pairs that `prepare` aligned and whose audio is still in run.data_dir, by name:
    the supervised editor learns from the raw's audio, not only its mel."""
    found = discover(run.data_dir)
    for line in found.describe_orphans():
        log.warning(line)
    prepared = set(prepared_names(run.layout.pointer_dir))
    pairs = {p.name: p for p in found.pairs if p.name in prepared}
    if not pairs:
        raise UserError(f"{run.data_dir}: no aligned (raw, edit) pairs; put them in input/ and "
                        "desired_output/ and run `editorbot prepare`")
    unaligned = sorted(p.name for p in found.pairs if p.name not in prepared)
    if unaligned:
        log.warning("%s: %d pair(s) not aligned yet, left out (run `editorbot prepare`): %s",
                    run.data_dir, len(unaligned), ", ".join(unaligned[:5]))
    return pairs


def run(args: argparse.Namespace) -> TrainResult:
    if args.resume and (args.config or args.set or args.seed is not None):
        raise UserError(f"{args.resume}: resuming uses the checkpoint's config; drop --config, "
                        f"--seed and --set (only --epochs may change)")
    flags = {"train.seed": args.seed, "train.epochs": args.epochs}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.resume:
        saved = apply_overrides(load_checkpoint(args.resume)["config"], overrides)
        cfg = from_dict(SupervisedConfig, saved, where=f"{args.resume} config", saved=True)
    else:
        cfg = load(SupervisedConfig, args.config, overrides + args.set)
    with messages_above_bars():
        result = train(cfg, Run.from_args(args), jobs=args.jobs)
    if "l1_kept" in result.metrics:
        m = result.metrics
        print(f"val l1 {m['l1_kept']:.4f} vs identity {m['l1_identity']:.4f} "
              f"({100 * (1 - m['l1_ratio']):.0f}% below), label accuracy "
              f"{m['label_accuracy']:.3f}, keep accuracy {m['keep_accuracy']:.3f}, "
              f"kept IoU {m['kept_iou']:.3f}")
    return result
