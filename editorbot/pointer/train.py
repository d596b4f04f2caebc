"""Train the pointer network: whole-recording encodings, teacher-forced output steps.

`train(config, run)` runs in one process, or in several under torchrun (DistributedDataParallel,
NCCL on GPUs, gloo on CPUs); rank 0 validates, logs to TensorBoard and writes best.pt and
latest.pt atomically. Ctrl-C saves latest.pt; `run.resume` carries on from one, `run.init`
starts from another model's weights and fine-tunes them (train.finetune: a lower rate and a
short schedule, after the keep pretraining every new run has).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from tqdm import tqdm

from ..base import MADE_UP_EDITORS
from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import apply_overrides, from_dict, to_dict
from ..errors import UserError, log
from ..training import (Deadline, Progress, Run, TrainResult, checkpoint_payload, held_out,
                        measured_levels)
from ..evaluate import DEFAULT_BEAT_PERIOD_S, cut_f1, kept_iou, mask_iou
from ..malloc import release_freed_memory
from .config import PointerConfig, TrainConfig
from .data import PointerData, make_batch, sample_steps
from .decode import by_passages, kept_stretches, smoothed_keep
from .infer import DecodeStopped, decode_mel, passage_bounds
from .model import KEEP_SOURCES, Encoded, PointerNet, recording_block_means

CHANGE_TOLERANCE_FRAMES = 4  # 50 ms at hop 256 / 22050 Hz
# decode.keep_skip keeps above one half, the keep head's plain BCE's decision boundary,
# unless another of KEEP_THRESHOLDS matches the validation edits better by more than
# THRESHOLD_MARGIN: a threshold chosen on a run's few validation recordings by any gain
# moved 0.3 to 0.7 from one epoch to the next at the same IoU and scored lower held out,
# while a keep head that is still unsure (probabilities below one half where the editor
# keeps) needs a lower one (docs/results.md, "How validation plans what to keep")
KEEP_THRESHOLD = 0.5
KEEP_THRESHOLDS = (0.5, 0.45, 0.55, 0.4, 0.6, 0.35, 0.65, 0.3, 0.7)  # nearest one half first: it wins ties
THRESHOLD_MARGIN = 0.05
# Validation leaves the run's incumbent keep logit (KEEP_SOURCES) only for a plan that scores
# more than KEEP_SOURCE_MARGIN above it: on the full trimmer corpus and the real jams, near-ties
# went to the sum, which edited the held-out recordings with fewer of the editor's cuts than
# the model's own; where the sum edited them better, its plans were further ahead than this
# (docs/results.md, "Pointer network: learning a trimmer").
KEEP_SOURCE_MARGIN = 0.02
LEAVE_ROWS_PER_PASS = 32  # jump distributions over the whole recording computed at once
# On raws of TRIM_FROM_FRAMES or more (12.7 min at the default grid), the heap's free pages go
# back to the system every TRIM_EVERY_CHUNKS chunks of jump distributions and after each group:
# the chunks' temporaries (16 MB each and more) come from the heap, and the small tensors each
# chunk keeps for the backward pass split its free blocks, so that the next chunk's temporaries
# no longer fit them and the heap grows (by 2.5 GB in one step of two 20-minute raws). On
# shorter raws it grows little, and giving pages back costs more CPU than it saves memory.
TRIM_FROM_FRAMES = 1 << 16
TRIM_EVERY_CHUNKS = 4
# A training step's recordings go through the network in groups of at most GROUP_FRAMES padded
# frames (recordings times the longest), their gradients summed: what a step holds for its
# backward pass grows with the frames of a group, not of the whole batch. Two raws of up to 12.7
# minutes still go together; two 20-minute raws go one after the other.
GROUP_FRAMES = 1 << 17
# A group of RECOMPUTE_FROM_FRAMES padded frames or more recomputes its encoder layers and its
# jump distributions in the backward pass instead of keeping them (kept, they take gigabytes
# for two 20-minute raws); a smaller one keeps them: on short raws recomputing slowed every
# step for memory they do not need (docs/results.md, "Pointer network: learning a trimmer").
RECOMPUTE_FROM_FRAMES = 1 << 15
BACK_JUMP_S = 0.5  # an edit that moves back in the raw by more than this loops or reorders
PRETRAIN_SHARE = 0.25  # of a --max-minutes deadline, what keep pretraining may use at most
# Blocks of one recording per step of the structure keep GRU's training (2.4 min at the default
# grid): its channels already carry what lies minutes away, and a step costs what its blocks do.
STRUCTURE_KEEP_CROP = 128
PRETRAIN_NOISE = 0.05  # std of the noise on input-channel blocks in pretrain_section_keep


class Objective(nn.Module):
    """The network plus its losses, so that DistributedDataParallel sees one forward."""

    def __init__(self, net: PointerNet, cfg: PointerConfig):
        super().__init__()
        self.net = net
        self.cfg = cfg

    def forward(self, batch: dict[str, torch.Tensor], totals: dict[str, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of a batch and its parts; with `totals` (the weights each part is
        averaged over, `loss_totals` of the whole step), the batch's share of that step's."""
        totals = totals or {}
        enc = self.net.encode(batch["mel"], batch["lengths"])
        out = self.net.decode_steps(enc, batch["rec"], batch["expected"], batch["cond"])
        parts = step_losses(self.net, enc, out, batch, self.cfg, totals=totals)
        parts["keep_loss"] = keep_loss(self.net, enc, batch["kept"], total=totals.get("keep_loss"))
        return total_loss(parts, self.cfg), parts


def loss_totals(batches: list[dict[str, torch.Tensor]], cfg: PointerConfig) -> dict[str, torch.Tensor]:
    """The weight each loss part is averaged over, summed over the batches of one step (the
    keep loss's: the raw frames)."""
    totals: dict[str, torch.Tensor] = {}
    for batch in batches:
        for k, rows in row_kinds(batch, batch["lengths"], cfg.model.max_delta).items():
            totals[k] = totals.get(k, 0.0) + batch["weight"][rows].sum()
        totals["keep_loss"] = totals.get("keep_loss", 0.0) + batch["lengths"].sum().float()
    return totals


def step_groups(lengths: list[int]) -> list[list[int]]:
    """The recordings of a step, in order, in groups of at most GROUP_FRAMES padded frames
    (a recording longer than that alone)."""
    groups: list[list[int]] = []
    for i, n in enumerate(lengths):
        if groups and (len(groups[-1]) + 1) * max(n, *(lengths[j] for j in groups[-1])) <= GROUP_FRAMES:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def total_loss(parts: dict, cfg: PointerConfig):
    """The weighted sum of the loss parts (tensors or floats)."""
    t = cfg.train
    return (parts["delta_loss"] + parts["use_jump_loss"] + t.jump_weight * parts["jump_loss"]
            + t.stop_weight * parts["stop_loss"] + t.op_weight * parts["op_loss"]
            + t.keep_weight * parts["keep_loss"])


def keep_loss(net: PointerNet, enc: Encoded, kept: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """BCE of the keep head over every raw frame of the batch (padding masked out), averaged
    over the batch's frames or over `total` frames; 0 without a keep head.

    Args:
        kept : torch.Tensor [shape=(B, T)], float 1 where the editor plays the raw frame
    """
    if enc.keep is None:
        return kept.new_zeros(())
    real = torch.arange(kept.shape[1], device=kept.device)[None, :] < enc.lengths[:, None]
    bce = F.binary_cross_entropy_with_logits(enc.keep[real], kept[real], reduction="sum")
    return bce / (real.sum() if total is None else total)


def pretrain_section_keep(net: PointerNet, data: PointerData, names: list[str], tc: TrainConfig,
                          device: torch.device, *, deadline: float = math.inf,
                          progress: bool = True) -> int:
    """Train the keep GRUs alone on the keep label, before the whole model trains: the
    structure keep GRU (structure_keep_in, _gru, _out; tc.structure_keep_steps at
    tc.structure_keep_lr), then the section GRU (section_in, section_gru, section_keep;
    tc.keep_pretrain_steps at tc.lr).

    What an editor keeps is decided by section, and both GRUs read block means of the input
    channels, so they learn from tc.keep_pretrain_batch whole recordings a step at the cost
    of a few frames each; inside the whole model the section GRU gets batch_size recordings
    a step and shares them with the pointer losses (the structure keep GRU is trained here
    only: the whole model's keep loss does not reach it). The input channels are computed
    once per recording from the unaugmented mel; a little Gaussian noise on the blocks
    stands in for augmentation. The target of a block is the share of its frames the editor
    plays. The structure keep GRU reads a random stretch of STRUCTURE_KEEP_CROP blocks of
    each recording a step and may use half of the time to the deadline (time.time()), the
    section GRU the rest.

    Returns:
        int: steps taken (both GRUs')
    """
    cfg = net.cfg
    blk = cfg.section_block
    blocks, targets = [], []
    with torch.no_grad():
        for name in tqdm(names, desc="section keep: blocks", disable=not progress, file=sys.stderr,
                         leave=False):
            mel = torch.from_numpy(data.mel(name))[None].to(device)
            lengths = torch.tensor([mel.shape[2]], device=device)
            inputs, _ = net.input_channels(mel, lengths)
            blocks.append(recording_block_means(inputs, lengths, blk)[0].cpu())
            kept = torch.from_numpy(data.recordings[name].kept())[None, None]
            targets.append(recording_block_means(kept, lengths.cpu(), blk)[0, :, 0])
    rng = np.random.default_rng(_seed_for(tc.seed, 0, 0, 2))

    def crop(i: int, most: int | None) -> slice:
        """A random stretch of at most `most` blocks of recording i (None: all of it)."""
        n = len(targets[i])
        a = int(rng.integers(0, n - most + 1)) if most is not None and n > most else 0
        return slice(a, a + (most or n))

    def fit(label: str, modules: list[nn.Module], logits, steps: int, lr: float, until: float,
            most: int | None = None) -> int:
        params = [p for m in modules for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=tc.weight_decay)
        net.train()
        done, loss = 0, None
        for done in tqdm(range(1, steps + 1), desc=label, disable=not progress, file=sys.stderr, leave=False):
            idx = rng.choice(len(names), min(tc.keep_pretrain_batch, len(names)), replace=False)
            part = [crop(i, most) for i in idx]
            x = nn.utils.rnn.pad_sequence([blocks[i][s] for i, s in zip(idx, part)], batch_first=True).to(device)
            y = nn.utils.rnn.pad_sequence([targets[i][s] for i, s in zip(idx, part)], batch_first=True).to(device)
            n_blocks = torch.tensor([len(targets[i][s]) for i, s in zip(idx, part)])
            x = x + PRETRAIN_NOISE * torch.randn_like(x)
            real = torch.arange(x.shape[1], device=device)[None, :] < n_blocks.to(device)[:, None]
            loss = F.binary_cross_entropy_with_logits(logits(x, n_blocks)[real], y[real])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            opt.step()
            if time.time() > until:
                break
        log.info("pointer: %s pretrained on the keep label for %d steps (last loss %.3f)",
                 label, done, float(loss.detach()) if loss is not None else math.nan)
        return done

    steps = 0
    if net.structure_keep_gru is not None and tc.structure_keep_steps:
        half = time.time() + (deadline - time.time()) / 2 if math.isfinite(deadline) else math.inf
        steps += fit("structure keep GRU",
                     [net.structure_keep_in, net.structure_keep_gru, net.structure_keep_out],
                     net.structure_keep_logits, tc.structure_keep_steps, tc.structure_keep_lr, half,
                     most=STRUCTURE_KEEP_CROP)
    if net.section_gru is not None and tc.keep_pretrain_steps:
        steps += fit("section GRU", [net.section_in, net.section_gru, net.section_keep],
                     lambda x, n: net.section_keep(net.section_blocks(x, n))[..., 0],
                     tc.keep_pretrain_steps, tc.lr, deadline)
    return steps


def _wmean(x: torch.Tensor, w: torch.Tensor, like: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of x, over its own weights or over `total` (0 with a gradient path when
    x is empty)."""
    if x.numel() == 0:
        return like.sum() * 0.0
    return (x * w).sum() / (w.sum() if total is None else total).clamp(min=1e-9)


def played_before(batch: dict[str, torch.Tensor], rows: torch.Tensor, n_raw: int) -> torch.Tensor:
    """(m, n_raw) bool: the raw frames the edit played before each of `rows` (rows of one
    recording of the batch)."""
    p = batch["pointers"][int(batch["rec"][rows[0]])]
    steps = torch.arange(len(p), device=p.device)
    first = torch.full((n_raw,), len(p), dtype=torch.long, device=p.device)
    first.scatter_reduce_(0, p[p >= 0], steps[p >= 0], reduce="amin")
    t = torch.arange(n_raw, device=p.device)[None, :]
    return ((first[None, :] < batch["step"][rows, None])
            | ((t >= batch["run_start"][rows, None]) & (t < batch["expected"][rows, None])))


def soft_targets(goal: torch.Tensor, allowed: torch.Tensor, sigma: float) -> torch.Tensor:
    """(m, n + 1) target distributions: a Gaussian of sigma frames (cut at 2 sigma) around
    each goal frame, over the allowed candidates only; goals at index n (the end) and
    sigma 0 give one-hot targets."""
    m, width = allowed.shape
    radius = int(2 * sigma)
    target = torch.zeros(m, width, device=allowed.device)
    end = goal == width - 1
    for k in range(-radius, radius + 1):
        at = (goal + k).clamp(0, width - 2)
        ok = ~end & (goal + k >= 0) & (goal + k <= width - 2) & allowed.gather(1, at[:, None])[:, 0]
        target[torch.arange(m), at] += ok.float() * math.exp(-0.5 * (k / max(sigma, 1e-9)) ** 2)
    target[torch.arange(m), goal] += (target.sum(1) == 0).float()  # the end, or no neighbour allowed
    return target / target.sum(1, keepdim=True)


def row_kinds(batch: dict[str, torch.Tensor], lengths: torch.Tensor, max_delta: int) -> dict[str, torch.Tensor]:
    """Which rows of a batch each step loss is over (bool masks, by loss name)."""
    target, expected = batch["target"], batch["expected"]
    valid = target >= 0
    is_stop = batch["stop"] > 0
    is_delta = valid & ((target - expected).abs() <= max_delta)
    # Where the raw has run out there is nothing to play on: the decoder leaves the run
    # whatever use_jump says (see decode.decode_pointers), so use_jump is not trained there.
    decided = (valid | is_stop) & (expected < lengths[batch["rec"]])
    return {"delta_loss": is_delta, "use_jump_loss": decided, "jump_loss": valid & ~is_delta,
            "stop_loss": is_stop, "op_loss": batch["op"] >= 0}


def step_losses(net: PointerNet, enc: Encoded, out: dict[str, torch.Tensor],
                batch: dict[str, torch.Tensor], cfg: PointerConfig,
                totals: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Weighted losses of a batch of steps, each averaged over its rows' weights or over
    `totals` (by loss name); steps whose pointer is -1 are masked out of the pointer losses.

    delta_loss: cross-entropy of the delta head where the true move is within max_delta;
    use_jump_loss: BCE of leaving the run (a jump or the stop) against a delta, where the
    raw has not run out; jump_loss: KL divergence of `PointerNet.jump_logits` from the
    target frame, softened to a Gaussian of train.jump_sigma_frames (the frame grid cannot
    tell a cut's frame from its neighbours); stop_loss: the same for the end of the edit
    at the stop steps; op_loss: cross-entropy of the op head.
    """
    w = cfg.model.max_delta
    t = cfg.train
    totals = totals or {}
    target, expected, weight = batch["target"], batch["expected"], batch["weight"]
    kinds = row_kinds(batch, enc.lengths, w)
    is_delta, is_jump, is_stop, decided = (kinds["delta_loss"], kinds["jump_loss"], kinds["stop_loss"],
                                           kinds["use_jump_loss"])
    d = target - expected
    ce = F.cross_entropy(out["delta"][is_delta], d[is_delta] + w, reduction="none")
    delta_loss = _wmean(ce, weight[is_delta], out["delta"], totals.get("delta_loss"))
    bce = F.binary_cross_entropy_with_logits(
        out["use_jump"][decided], (is_jump | is_stop)[decided].float(), reduction="none",
        pos_weight=out["use_jump"].new_tensor(t.use_jump_pos_weight))
    use_jump_loss = _wmean(bce, weight[decided], out["use_jump"], totals.get("use_jump_loss"))
    leave = is_jump | is_stop
    # Each chunk's inputs are views of one gather per recording, and the chunks' KLs are
    # put in place once (fewer small tensors kept between the chunks' large temporaries).
    done, kls = [], []
    recompute = net.activation_checkpointing and torch.is_grad_enabled()
    for r in torch.unique(batch["rec"][leave]).tolist():
        rows = torch.nonzero(leave & (batch["rec"] == r)).flatten()
        n = int(enc.lengths[r])
        inputs = (out["query"][rows], out["jump_bucket"][rows], out["stop"][rows], expected[rows],
                  torch.where(is_stop[rows], n, target[rows]))
        for at in range(0, len(rows), LEAVE_ROWS_PER_PASS):
            chunk = rows[at:at + LEAVE_ROWS_PER_PASS]
            query, bucket, stop, exp, goal = (x[at:at + LEAVE_ROWS_PER_PASS] for x in inputs)

            def chunk_kl(query, bucket, stop, chunk=chunk, r=r, n=n, exp=exp, goal=goal, i=len(kls)):
                if n >= TRIM_FROM_FRAMES and i % TRIM_EVERY_CHUNKS == 0:  # forward and backward pass
                    release_freed_memory()
                logits = net.jump_logits(enc, r, query, bucket, stop, exp,
                                         played_before(batch, chunk, n))
                soft = soft_targets(goal, torch.isfinite(logits), t.jump_sigma_frames)
                log_p = torch.log_softmax(logits, dim=1)
                # KL(soft || p): the cross-entropy less the targets' own entropy, so 0 is perfect.
                return -(soft * torch.where(soft > 0, log_p - torch.log(soft.clamp(min=1e-30)),
                                            0.0)).sum(1)
            # With net.activation_checkpointing (long raws), each chunk's (rows x raw frames)
            # distributions are recomputed in the backward pass instead of kept: kept, they
            # grew with rows times raw length (17 GB for 20-minute raws) where only the chunk's
            # KL is needed.
            kls.append(torch.utils.checkpoint.checkpoint(chunk_kl, query, bucket, stop, use_reentrant=False)
                       if recompute else chunk_kl(query, bucket, stop))
        done.append(rows)
    ce = torch.zeros(len(target), device=target.device)
    if kls:
        ce = ce.index_put((torch.cat(done),), torch.cat(kls))
    jump_loss = _wmean(ce[is_jump], weight[is_jump], ce, totals.get("jump_loss"))
    stop_loss = _wmean(ce[is_stop], weight[is_stop], ce, totals.get("stop_loss"))
    if not leave.any():  # keep every head in the graph (DistributedDataParallel)
        zero = (out["jump_bucket"].sum() + out["stop"].sum() + net.jump_query.weight.sum()) * 0.0
        jump_loss, stop_loss = jump_loss + zero, stop_loss + zero
    if "op" in out:
        has_op = kinds["op_loss"]
        op_ce = F.cross_entropy(out["op"][has_op], batch["op"][has_op], reduction="none")
        op_loss = _wmean(op_ce, weight[has_op], out["op"], totals.get("op_loss"))
    else:
        op_loss = stop_loss.new_zeros(())
    return {"delta_loss": delta_loss, "use_jump_loss": use_jump_loss, "jump_loss": jump_loss,
            "stop_loss": stop_loss, "op_loss": op_loss}


@torch.no_grad()
def predicted_pointers(net: PointerNet, enc: Encoded, out: dict[str, torch.Tensor],
                       batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The pointer the model would choose at each teacher-forced step: expected + delta,
    or, where it leaves the run, its most likely target (the recording's length for the
    end of the edit)."""
    w = net.cfg.max_delta
    expected = batch["expected"]
    pred = expected + out["delta"].argmax(dim=-1) - w
    leave = (out["use_jump"] > 0) | (expected >= enc.lengths[batch["rec"]])
    for r in torch.unique(batch["rec"][leave]).tolist():
        rows = torch.nonzero(leave & (batch["rec"] == r)).flatten()
        for chunk in rows.split(LEAVE_ROWS_PER_PASS):
            logits = net.jump_logits(enc, r, out["query"][chunk], out["jump_bucket"][chunk], out["stop"][chunk],
                                     expected[chunk], played_before(batch, chunk, int(enc.lengths[r])))
            pred[chunk] = logits.argmax(dim=1)
    return pred


def choose_keep_plan(mean_keep: list[np.ndarray], passages: list[np.ndarray], kept: list[np.ndarray],
                     snap: int, tol: int, threshold: float | None = None) -> tuple[bool, float, float]:
    """How decode.keep_skip plans what to keep, by how well each plan alone matches the
    editor over the recordings: the mean of the plan's kept-raw IoU and of the F1 of its
    cuts (where its kept stretches start and end, within `tol` frames).

    First, frame by frame or by whole passages between the edges of the sound
    (decode.by_passages), at one half (passages only when strictly better). Then the
    threshold: one half, unless another of KEEP_THRESHOLDS scores more than
    THRESHOLD_MARGIN above it (`threshold` given: that one, no choice).

    An editor who keeps or drops whole takes and noodles, which start and stop at edges of
    the sound, is matched by passages (on real jams, the noodling after a take is dropped
    whole where frame by frame its start was kept); one who keeps a song's best sections,
    with no edge between them, frame by frame. The cuts count beside the IoU: frame by
    frame, a plan that matches the editor's frames nearly as well can cut in many more
    places.

    Args:
        mean_keep: per recording, the keep head's smoothed probability (decode.smoothed_keep).
        passages: per recording, its passage bounds (infer.passage_bounds).
        kept: per recording, (n_raw,) the frames the editor plays (nonzero).

    Returns:
        (per_passage, threshold, score): per_passage True for whole passages; score the
        plan's mean of IoU and cut F1.
    """
    truths = [truth > 0 for truth in kept]
    played = [np.flatnonzero(truth) for truth in truths]
    means = {False: mean_keep, True: [by_passages(m, b) for m, b in zip(mean_keep, passages)]}

    @functools.cache
    def score(per_passage: bool, t: float) -> float:
        scores = []
        for m, truth, frames in zip(means[per_passage], truths, played):
            plan = kept_stretches(m, t, snap)
            scores.append((mask_iou(plan, truth) + cut_f1(np.flatnonzero(plan), frames, tol)[2]) / 2)
        return float(np.mean(scores)) if scores else 0.0

    first = KEEP_THRESHOLD if threshold is None else threshold
    per_passage = score(True, first) > score(False, first)
    if threshold is not None:
        return per_passage, threshold, score(per_passage, threshold)
    at = {t: score(per_passage, t) for t in KEEP_THRESHOLDS}
    best = max(at, key=at.get)
    chosen = best if at[best] > at[KEEP_THRESHOLD] + THRESHOLD_MARGIN else KEEP_THRESHOLD
    return per_passage, chosen, at[chosen]


def _to_tensors(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


@torch.no_grad()
def validate(net: PointerNet, data: PointerData, names: list[str], cfg: PointerConfig,
             device: torch.device, *, keep_ratio: float, decode: bool,
             jumps_back: bool = True, until: float = math.inf,
             keep_source: str = KEEP_SOURCES[0]) -> dict[str, float]:
    """Teacher-forced losses and accuracies over every step of the validation recordings,
    and (decode) the kept-raw IoU of freely decoded edits, with the stop head deciding
    their length. Both without telling the model the edit's length, as at inference
    without a target duration (jumps_back: the training edits' own, see decode_mel).

    val_delta_accuracy: share of steps (pointer not -1) whose predicted pointer equals the
    true one exactly. val_change_accuracy: the same within 50 ms, over the steps where the
    editor does not simply play on (jumps and small moves), where a model that always
    plays on scores 0.

    With a keep head it also chooses how decode.keep_skip plans what to keep (see
    choose_keep_plan): val/keep_passages (1: by whole passages, 0: frame by frame),
    val/keep_threshold (decode.keep_threshold when set), val/keep_plan (how well that
    plan alone matches the editor) and val/keep_source (0: the model's keep logit alone; 1:
    with the structure keep GRU's added), `keep_source`, the run's incumbent (a
    fine-tuning's model's choice; otherwise the model's logit alone), unless the other's
    best plan scores more than KEEP_SOURCE_MARGIN above it; the decoded edits use them.

    Both stop at `until` (time.time(), the run's deadline): the losses and accuracies after
    at least one recording, over the recordings scored by then (val/scored their number; the
    next is not started when, at the pace of the ones before, it would end past `until`);
    the decoded edits at once, even inside a recording (decoding a long raw's edit can take
    minutes), val/iou over those decoded whole by then (val/decoded; none: no val/iou).
    Beside it val/cut_f1: the decoded edits' cuts within a beat of the editor's.
    """
    net.eval()
    fps = data.params.frames_per_s
    window = int(round(cfg.decode.keep_veto_s * fps))
    snap = int(round(cfg.decode.keep_snap_s * fps))
    mean_keep, mean_structure, kept, passages = [], [], [], {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    hit = total = change_hit = change_total = 0
    ious, cut_f1s, duration_ratios = [], [], []
    beat = int(round(DEFAULT_BEAT_PERIOD_S * fps))
    scored = 0
    started, steps_scored = time.time(), 0
    structure_trained = net.structure_keep_trained()
    for name in names:
        rec = data.recordings[name]
        n_steps = rec.steps.n_path
        # Another recording only when it can end by the deadline at the pace of the ones
        # before, per step of its edit (the edits of raws of one length can differ tenfold in
        # steps, and a long one takes minutes on a CPU).
        if scored and time.time() + (time.time() - started) * n_steps / max(steps_scored, 1) > until:
            break
        scored += 1
        steps_scored += n_steps
        whole = make_batch(data, [(name, np.arange(n_steps), np.ones(n_steps, np.float32), False)])
        mel = torch.from_numpy(whole["mel"]).to(device)
        enc = net.encode(mel, torch.from_numpy(whole["lengths"]).to(device))
        for a in range(0, n_steps, cfg.train.val_chunk_steps):
            chunk = {k: torch.from_numpy(v[a:a + cfg.train.val_chunk_steps]).to(device)
                     for k, v in whole.items() if k not in ("mel", "lengths", "kept", "pointers")}
            chunk["pointers"] = torch.from_numpy(whole["pointers"]).to(device)
            out = net.decode_steps(enc, chunk["rec"], chunk["expected"], chunk["cond"])
            parts = step_losses(net, enc, out, chunk, cfg)
            for k, rows in row_kinds(chunk, enc.lengths, cfg.model.max_delta).items():
                sums[k] = sums.get(k, 0.0) + float(parts[k]) * int(rows.sum())
                counts[k] = counts.get(k, 0) + int(rows.sum())
            pred = predicted_pointers(net, enc, out, chunk)
            valid = chunk["target"] >= 0
            change = valid & (chunk["target"] != chunk["expected"])
            hit += int((pred[valid] == chunk["target"][valid]).sum())
            total += int(valid.sum())
            change_hit += int(((pred - chunk["target"]).abs()[change] <= CHANGE_TOLERANCE_FRAMES).sum())
            change_total += int(change.sum())
        n_raw = int(enc.lengths[0])
        sums["keep_loss"] = sums.get("keep_loss", 0.0) + float(
            keep_loss(net, enc, torch.from_numpy(whole["kept"]).to(device))) * n_raw
        counts["keep_loss"] = counts.get("keep_loss", 0) + n_raw
        if enc.keep is not None and window >= 1:
            mean_keep.append(smoothed_keep(enc, 0, window))
            if enc.keep_structure is not None and structure_trained:
                mean_structure.append(smoothed_keep(enc.with_keep(enc.keep + enc.keep_structure), 0, window))
            kept.append(whole["kept"][0])
            passages[name] = passage_bounds(whole["mel"][0], data.params)
    metrics = {}
    threshold = KEEP_THRESHOLD if cfg.decode.keep_threshold is None else cfg.decode.keep_threshold
    per_passage = False
    source = 0
    if mean_keep:
        # The best plan of each keep logit: the model's, and with the structure keep GRU's
        # added; another logit than the incumbent only when better by more than the margin.
        plans = [choose_keep_plan(m, list(passages.values()), kept, snap, tol=beat,
                                  threshold=cfg.decode.keep_threshold)
                 for m in (mean_keep, mean_structure) if m]
        incumbent = KEEP_SOURCES.index(keep_source) if keep_source in KEEP_SOURCES[:len(plans)] else 0
        best = max(range(len(plans)), key=lambda i: plans[i][2])
        source = best if plans[best][2] > plans[incumbent][2] + KEEP_SOURCE_MARGIN else incumbent
        per_passage, threshold, plan_score = plans[source]
        metrics = {"val/keep_passages": float(per_passage), "val/keep_threshold": threshold,
                   "val/keep_plan": plan_score, "val/keep_source": float(source)}
    net.keep_source = KEEP_SOURCES[source]
    try:
        for name in names if decode else []:
            if time.time() > until:
                break
            rec = data.recordings[name]
            try:
                decoded = decode_mel(net, cfg, data.mel(name), fixed_length=False, frames_per_s=fps,
                                     target_frames=int(round(keep_ratio * rec.n_raw)),
                                     jumps_back=jumps_back, keep_threshold=threshold,
                                     passages=passages.get(name) if per_passage else None, until=until)
            except DecodeStopped:  # a long raw's edit takes minutes: the deadline comes first
                break
            ious.append(kept_iou(decoded.pointers, rec.pointers, rec.n_raw))
            cut_f1s.append(cut_f1(decoded.pointers, rec.pointers, beat)[2])
            duration_ratios.append(len(decoded.pointers) / len(rec.pointers))
    finally:
        net.keep_source = KEEP_SOURCES[0]  # training reads the model's own keep logit
    means = {k: v / max(counts[k], 1) for k, v in sums.items()}
    metrics |= {f"val/{k}": v for k, v in means.items()}
    metrics["val/loss"] = float(total_loss(means, cfg))
    metrics["val_delta_accuracy"] = hit / max(total, 1)
    metrics["val/change_accuracy"] = change_hit / max(change_total, 1)
    metrics["val/scored"] = float(scored)
    if ious:
        metrics["val/iou"] = float(np.mean(ious))
        metrics["val/cut_f1"] = float(np.mean(cut_f1s))
        metrics["val/iou_each"] = [float(x) for x in ious]  # in `names` order (beats_best)
        metrics["val/duration_ratio"] = float(np.mean(duration_ratios))
        metrics["val/decoded"] = float(len(ious))
    return metrics


def _lr_lambda(warmup: int, total: int, deadline: Deadline) -> Callable[[int], float]:
    """Linear warm-up, then a cosine to 0.1 x lr over the run: over the steps of all the
    epochs, or over the run's wall time if its deadline ends it first."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        progress = max((step - warmup) / max(total - warmup, 1), deadline.elapsed_fraction())
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return f


def _seed_for(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])



class _Dist:
    """This process's place in a torchrun job (world size 1 without torchrun)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if torch.cuda.is_available():
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on any."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def params_in_sync(self, model: nn.Module) -> bool:
        if not self.enabled:
            return True
        total = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()
        lo, hi = total.clone(), total.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        return bool(torch.isclose(lo, hi, rtol=0, atol=1e-9 * max(1.0, abs(float(hi)))))

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def train(config: PointerConfig, run: Run, *,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train a pointer network; write best.pt and latest.pt to run.save_dir.

    Args:
        config: the model, training and decoding settings.
        run: where the pairs are and the checkpoints go; run.resume carries on a latest.pt
            (same model settings; its split is kept); run.init fine-tunes a pointer
            checkpoint's weights (same model settings and feature parameters) with a new
            optimiser and the new pairs' split, at train.finetune's rate and schedule,
            after keep pretraining on the new pairs (what is kept is the musician's own);
            validation chooses the keep threshold again (without
            validation recordings the checkpoint's is kept), and jumps_back is the
            checkpoint's or the new pairs' when they move back (from the shipped base, the
            new pairs' alone);
            run.max_minutes bounds the whole run.
        on_step: called after every optimiser step with (global_step, losses).

    Returns:
        TrainResult (interrupted=True after Ctrl-C, with latest.pt saved).
    """
    started = time.time()
    tc = config.train
    _selection_score({"val/iou": 0.0, "val/loss": 0.0} if tc.val_decode_every else {"val/loss": 0.0},
                     tc.select_by)
    ddp = _Dist()
    deadline = run.deadline()  # from the start: loading the data counts towards the run
    torch.manual_seed(tc.seed)
    save_dir = run.save_dir
    run.check()
    state = None if run.resume is None else _load_resume(run.resume, config)
    start = None if run.init is None else _load_init(run.init, config)
    # A fine-tuning, and where its kept decode settings come from.
    if start is not None:
        init, kept_from = run.init, start
    elif state is not None and state.get("init") is not None:
        init, kept_from = state["init"], state  # resumed, a fine-tuning stays one
    else:
        init, kept_from = None, None
    plan = tc if init is None else tc.finetune  # lr, warmup_steps, epochs
    # With use_stems, every recording's stems come from one backend, recorded in the
    # checkpoint as stems_backend; a resumed run reads only that backend's stems.
    data = PointerData(run.cache_dir, run.layout.pointer_dir, use_stems=config.model.use_stems,
                       stems_backend=None if state is None else state.get("stems_backend"),
                       max_cached=tc.max_cached_recordings, drift_steps=tc.drift_steps)
    if data.params.n_mels != config.model.n_mels:
        raise UserError(f"model.n_mels is {config.model.n_mels} but the cached mels in "
                        f"{run.cache_dir} have {data.params.n_mels} bands; set model.n_mels")
    if start is not None and start["feature_params"] != data.params.as_dict():
        raise UserError(f"{run.init}: trained on mels of other feature parameters than those in "
                        f"{run.cache_dir}; cache the pairs' features with its parameters")
    train_names, val_names = held_out(data.names, tc.val_fraction, tc.split_seed, val_names=tc.val_names,
                                      saved=None if state is None else state["split"],
                                      where=str(run.resume))
    levels = measured_levels(run, train_names) if ddp.main else None
    back_frames = int(round(BACK_JUMP_S * data.params.frames_per_s))
    jumps_back = any(data.recordings[n].jumps_back(back_frames) for n in train_names)
    keep_ratio = float(np.median([data.recordings[n].keep_ratio for n in train_names]))
    keep_threshold, keep_passages, keep_source = None, False, KEEP_SOURCES[0]  # validation sets them
    if kept_from is not None:
        # Validation keeps the model's keep_source unless another plans better (by a margin): on
        # 5 corrected recordings the two plans can tie, and the tie fell back to the model's
        # logit alone, which edited held-out recordings worse (docs/results.md, "Learning
        # from corrections").
        keep_source = str(kept_from.get("keep_source", KEEP_SOURCES[0]))
        if not kept_from.get(MADE_UP_EDITORS, False):
            # A model trained on a musician's pairs jumps back where they did. A base's own
            # flag tells what the made-up editors it learnt from did (a looper jumps back),
            # not this musician: from it, the new pairs alone decide.
            jumps_back = jumps_back or bool(kept_from.get("jumps_back", True))
        if not val_names:
            # Nothing to choose them on. With validation they are chosen again: fine-tuning moves the
            # keep head's probabilities, and its model's threshold cut edits short (docs/results.md).
            keep_threshold = float(kept_from.get("keep_threshold", 0.5))
            keep_passages = bool(kept_from.get("keep_passages", False))
    net = PointerNet(config.model).to(ddp.device)
    if start is not None:
        net.load_weights(start["model_state"], where=str(run.init))
    # A fine-tuning pretrains the keep head on the new pairs too: what is kept is this
    # musician's choice, which no base can know (docs/results.md, "Fine-tuning on 20 pairs
    # of real music").
    if state is None and (tc.keep_pretrain_steps > 0
                          or (net.structure_keep_gru is not None and tc.structure_keep_steps > 0)):
        if tc.keep_pretrain_steps > 0 and net.section_keep is None:
            raise UserError("train.keep_pretrain_steps needs model.section_context > 0 and model.keep_head")
        if ddp.main:  # DistributedDataParallel hands rank 0's parameters to the others
            # Pretraining gets its share of a deadline, not all of it: the run must train.
            pretrain_section_keep(net, data, train_names, tc, ddp.device,
                                  deadline=deadline.share(PRETRAIN_SHARE), progress=run.progress)
    objective: nn.Module = Objective(net, config)
    if ddp.enabled:
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None,
            find_unused_parameters=True)
    opt = torch.optim.AdamW(net.parameters(), lr=plan.lr, weight_decay=tc.weight_decay)
    per_step = tc.batch_size * ddp.world
    steps_per_epoch = max(1, math.ceil(len(train_names) / per_step))
    total_steps = plan.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(plan.warmup_steps, total_steps, deadline))
    epoch, step_in_epoch, global_step = 0, 0, 0
    best = -math.inf
    written: set[str] = set()  # checkpoint files this run wrote
    val_seconds = 0.0          # how long the last validation of the final one's kind took
    history: list[dict] = []
    metrics: dict = {}
    best_each: list[float] = []  # best.pt's validation IoU per recording
    if state is not None:
        net.load_weights(state["model_state"], where=str(run.resume))
        opt.load_state_dict(state["optimizer_state"])
        sched.load_state_dict(state["scheduler_state"])
        epoch, step_in_epoch, global_step = state["epoch"], state["step_in_epoch"], state["global_step"]
        best, history, metrics = state["best_metric"], state["history"], state["metrics"]
        best_each = list(state.get("best_iou_each", []))
    use_bf16 = tc.bf16 and ddp.device.type == "cuda"
    writer = None
    if ddp.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(run.logs))
        log.info("pointer: %d training and %d validation recordings (split by recording), "
                 "%d parameters, %s%s", len(train_names), len(val_names),
                 sum(p.numel() for p in net.parameters()), ddp.device,
                 f", {ddp.world} processes" if ddp.enabled else "")
        if init is not None:
            log.info("pointer: fine-tuning %s at lr %g for %d steps (train.finetune.epochs %d on %d pairs)%s",
                     init, plan.lr, total_steps, plan.epochs, len(train_names),
                     "" if keep_threshold is None else f", keeping its keep threshold {keep_threshold:.2f}")
    bar = Progress("train pointer", steps=total_steps, deadline=deadline, enabled=run.progress and ddp.main,
                   done=global_step)

    def keep(name: str) -> None:
        """Write best.pt (weights) or latest.pt (weights and optimiser state)."""
        save_checkpoint(save_dir / name, payload(with_optimizer=name == "latest.pt"))
        written.add(name)

    def payload(with_optimizer: bool) -> dict:
        p = checkpoint_payload(
            "pointer", config=to_dict(config), params=data.params, split=(train_names, val_names),
            step=global_step, metrics=metrics, model_state=net.state_dict(),
            stems_backend=data.stems_backend, keep_ratio=keep_ratio, jumps_back=jumps_back,
            keep_threshold=metrics.get("val/keep_threshold", KEEP_THRESHOLD if keep_threshold is None else keep_threshold),
            keep_passages=bool(metrics.get("val/keep_passages", keep_passages)),
            keep_source=KEEP_SOURCES[int(metrics["val/keep_source"])] if "val/keep_source" in metrics else keep_source,
            epoch=epoch, step_in_epoch=step_in_epoch, global_step=global_step, best_metric=best,
            best_iou_each=best_each,
            select_by=tc.select_by, history=history, world_size=ddp.world, levels=levels,
            init=None if init is None else str(init))
        if with_optimizer:
            p["optimizer_state"] = opt.state_dict()
            p["scheduler_state"] = sched.state_dict()
        return p

    interrupted = False
    n_val = len(history)
    out_of_time = False
    try:
        while epoch < plan.epochs and not out_of_time:
            order = np.random.default_rng(_seed_for(tc.seed, epoch)).permutation(len(train_names))
            while step_in_epoch < steps_per_epoch:
                step_started = time.time()
                rng = np.random.default_rng(_seed_for(tc.seed, epoch, step_in_epoch, ddp.rank))
                torch.manual_seed(_seed_for(tc.seed, global_step, ddp.rank, 1))
                first = (step_in_epoch * ddp.world + ddp.rank) * tc.batch_size
                names = [train_names[order[(first + i) % len(train_names)]] for i in range(tc.batch_size)]
                items = [(n, *sample_steps(data.recordings[n].steps, rng, random_steps=tc.random_steps,
                                           context_steps=tc.context_steps, max_changes=tc.max_changes),
                          bool(rng.random() < tc.target_given_fraction))
                         for n in names]
                groups = step_groups([data.recordings[n].n_raw for n in names])
                batches = [_to_tensors(make_batch(data, [items[i] for i in g], rng=rng, augment_cfg=tc.augment),
                                       ddp.device) for g in groups]
                totals = loss_totals(batches, config) if len(batches) > 1 else None
                t0 = time.time()
                objective.train()
                opt.zero_grad(set_to_none=True)
                losses = {}
                for i, batch in enumerate(batches):
                    # DistributedDataParallel averages the gradients across processes once, after the last group
                    last = i == len(batches) - 1
                    padded = batch["mel"].shape[0] * batch["mel"].shape[-1]
                    net.activation_checkpointing = padded >= RECOMPUTE_FROM_FRAMES
                    with objective.no_sync() if ddp.enabled and not last else contextlib.nullcontext():
                        with torch.autocast(device_type=ddp.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                            loss, parts = objective(batch, totals)
                        loss.backward()
                    for k, v in (parts | {"loss": loss}).items():
                        losses[k] = losses.get(k, 0.0) + float(v.detach())
                    del loss, parts
                    if int(batch["lengths"].max()) >= TRIM_FROM_FRAMES:
                        release_freed_memory()
                grad_norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip))
                opt.step()
                sched.step()
                step_in_epoch += 1
                global_step += 1
                frames = sum(int(b["lengths"].sum()) for b in batches)
                if writer is not None and (global_step % tc.log_every == 0 or global_step == 1):
                    for k, v in losses.items():
                        writer.add_scalar(f"train/{k}", v, global_step)
                    writer.add_scalar("grad_norm", grad_norm, global_step)
                    writer.add_scalar("lr", sched.get_last_lr()[0], global_step)
                    dt = max(time.time() - t0, 1e-9)
                    writer.add_scalar("throughput/raw_frames_per_s", frames * ddp.world / dt, global_step)
                    writer.add_scalar("throughput/steps_per_s", sum(len(b["rec"]) for b in batches) * ddp.world / dt,
                                      global_step)
                bar.step(losses["loss"])
                if on_step is not None:
                    on_step(global_step, losses)
                # Stop in time for the next step and the last validation to end by the deadline
                # too (on long raws a step takes a good part of a minute on a CPU).
                margin = deadline.margin(val_seconds) if val_names else 0.0  # no validation, no margin
                if ddp.any(deadline.passed(margin_s=margin + time.time() - step_started)):
                    out_of_time = True
                    break
            if not out_of_time:
                epoch += 1
                step_in_epoch = 0
            validate_now = out_of_time or epoch % tc.val_every == 0 or epoch == plan.epochs
            if validate_now and val_names and not out_of_time:
                # When this validation and a final one would not both end by the deadline,
                # this one is the final one (before any has run, the margin is a guess: once).
                out_of_time = ddp.any(deadline.passed(margin_s=deadline.margin(val_seconds) + val_seconds))
            if ddp.main and val_names and validate_now:
                n_val += 1
                last = out_of_time or epoch == plan.epochs
                decode = tc.val_decode_every > 0 and (n_val % tc.val_decode_every == 0 or last)
                val_started = time.time()
                metrics = validate(net, data, val_names, config, ddp.device, keep_ratio=keep_ratio,
                                   decode=decode, jumps_back=jumps_back, until=deadline.at,
                                   keep_source=keep_source)
                if decode or tc.val_decode_every == 0:
                    # The final validation decodes whenever any does: only a decoding one's
                    # length is a margin for it (a teacher-forced one takes a fraction).
                    val_seconds = time.time() - val_started
                each = metrics.pop("val/iou_each", [])
                metrics["epoch"] = epoch
                metrics["global_step"] = global_step
                history.append(metrics)
                for k, v in metrics.items():
                    if k not in ("epoch", "global_step"):
                        writer.add_scalar(k, v, global_step)
                # A validation that decoded nothing whole (the deadline came first) chooses nothing.
                score = (_selection_score(metrics, tc.select_by)
                         if "val/iou" in metrics or tc.select_by != "val_iou" else -math.inf)
                bar.say(f"epoch {epoch}: " + ", ".join(
                    f"{k.removeprefix('val/')} {v:.4g}" for k, v in metrics.items()
                    if k not in ("epoch", "global_step")))
                if (beats_best(each, best_each) if tc.select_by == "val_iou" and best_each
                        else score > best):
                    best, best_each = score, each
                    keep("best.pt")
            elif ddp.main and not val_names:
                keep("best.pt")
            if ddp.main:
                keep("latest.pt")
            ddp.barrier()
        inherited = state is not None and (save_dir / "best.pt").is_file()
        if ddp.main and global_step > 0 and "best.pt" not in written and not inherited:
            # No validation chose one (none decoded before the deadline, say): the run's
            # last state is the best it knows, and a run always leaves a best.pt (one that
            # an --overwrite'd earlier run left is not this run's).
            keep("best.pt")
        if ddp.enabled:
            ok = ddp.params_in_sync(net)
            if ddp.main:
                log.info("pointer: %d processes, parameters %s", ddp.world, "in sync" if ok else "OUT OF SYNC")
    except KeyboardInterrupt:
        interrupted = True
        if ddp.main:
            keep("latest.pt")
            log.warning("interrupted: saved %s; carry on with --resume %s", save_dir / "latest.pt",
                        save_dir / "latest.pt")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if not interrupted:
            ddp.close()
    return TrainResult(save_dir, global_step, list(train_names), list(val_names), time.time() - started,
                       metrics=metrics, history=history, wrote=tuple(sorted(written)),
                       interrupted=interrupted, out_of_time=out_of_time)


def beats_best(each: list[float], best_each: list[float]) -> bool:
    """Whether a validation's decoded IoUs (per recording, in the validation's order) beat
    best.pt's, compared over the recordings both decoded: a validation the deadline cut
    short decoded only the first few, and their mean is not the mean over all."""
    n = min(len(each), len(best_each))
    return n > 0 and float(np.mean(each[:n])) > float(np.mean(best_each[:n]))


def _selection_score(metrics: dict, select_by: str) -> float:
    if select_by == "val_iou":
        if "val/iou" not in metrics:
            raise UserError("train.select_by is 'val_iou' but train.val_decode_every is 0; "
                            "set one of them differently")
        return metrics["val/iou"]
    if select_by == "val_loss":
        return -metrics["val/loss"]
    raise UserError(f"train.select_by {select_by!r}: must be 'val_iou' or 'val_loss'")


def init_config(path: Path, overrides: list[str]) -> PointerConfig:
    """The settings of a fine-tuning given no config file: those the --init model was
    trained with (its model settings are the only ones its weights fit), but the split of
    the new pairs as any run splits them (the default fraction and seed, no names: the
    base held out 5% of a corpus of hundreds), then `overrides` (KEY=VALUE)."""
    saved = from_dict(PointerConfig, _pointer_checkpoint(path)["config"], where=str(path), saved=True)
    default = TrainConfig()
    saved.train.val_names = []
    saved.train.val_fraction, saved.train.split_seed = default.val_fraction, default.split_seed
    return from_dict(PointerConfig, apply_overrides(to_dict(saved), overrides), where=f"{path} + --set")


def _pointer_checkpoint(path: Path) -> dict:
    state = load_checkpoint(path)
    if state["kind"] != "pointer":
        raise UserError(f"{path}: a {state['kind']} checkpoint; --init takes a pointer model")
    return state


def _load_init(path: Path, config: PointerConfig) -> dict:
    """The pointer checkpoint a fine-tuning starts from, checked: same model settings."""
    state = _pointer_checkpoint(path)
    _check_same_model(path, state, config, "fine-tune")
    return state


def _load_resume(path: Path, config: PointerConfig) -> dict:
    state = load_checkpoint(path)
    if state.get("kind") != "pointer" or "optimizer_state" not in state:
        raise UserError(f"{path}: not a pointer latest.pt (best.pt carries no optimiser state); "
                        "resume from latest.pt")
    _check_same_model(path, state, config, "resume")
    return state


def _check_same_model(path: Path, state: dict, config: PointerConfig, doing: str) -> None:
    """A checkpoint's weights fit only the model settings it was trained with."""
    saved = to_dict(from_dict(PointerConfig, state["config"], where=str(path), saved=True).model)
    differ = [k for k, v in saved.items() if to_dict(config.model)[k] != v]
    if differ:
        raise UserError(f"{path}: trained with other model settings than the config "
                        f"({', '.join(differ[:4])}); {doing} with the config it was trained with")
