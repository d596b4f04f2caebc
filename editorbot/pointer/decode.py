"""Greedy decoding of pointers over a whole recording, in blocks, and clean-up into segments.

The decoder is Markov in its History (previous pointer, run length, what was played), so
while the pointer runs on, the next K steps are known in advance: they are evaluated in
one batch and accepted up to the first step where the model wants something else (a delta,
or to leave the run: a jump or the stop). This gives exactly the step-by-step greedy result
at a fraction of the cost, and memory stays at one block of queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .data import History
from .model import Encoded, PointerNet

MIN_BLOCK = 16


@dataclass
class Decoded:
    """pointers (n,) int64 raw frames; confidence (n,) float32 probability of each step's
    choice; ops (n,) int64 op-head argmax (-1 without an op head); stopped: the stop head
    ended the edit (else it hit the length limit)."""

    pointers: np.ndarray
    confidence: np.ndarray
    ops: np.ndarray
    stopped: bool


@dataclass
class StepDecision:
    """What the model chose at each of k steps evaluated together (numpy arrays)."""

    jump: np.ndarray  # bool: leave the run (a jump or the stop)
    delta: np.ndarray  # int64, pointer - expected when not leaving
    prob: np.ndarray  # probability of the choice
    op: np.ndarray


StepFn = Callable[[np.ndarray, np.ndarray], StepDecision]
JumpFn = Callable[[int, int, bool, np.ndarray], tuple[int, float]]


def model_step_fns(model: PointerNet, enc: Encoded, rec: int = 0) -> tuple[StepFn, JumpFn]:
    """The decision functions of a model over one encoded recording.

    Returns:
        step(expected (k,), cond (k, N_COND)) -> StepDecision
        jump(index of the step in the last block, expected, allow_stop, played (n_raw,)
            play counts so far) -> (raw frame or n_raw for the stop, its probability);
            (-1, 0.0) when nothing is allowed
    """
    w = model.cfg.max_delta
    device = enc.mem.device
    last: dict[str, torch.Tensor] = {}

    def step(expected: np.ndarray, cond: np.ndarray) -> StepDecision:
        e = torch.from_numpy(expected).to(device)
        out = model.decode_steps(enc, torch.full_like(e, rec), e, torch.from_numpy(cond).to(device))
        last.update(query=out["query"], bucket=out["jump_bucket"], stop=out["stop"])
        delta_p = torch.softmax(out["delta"], dim=-1)
        d_prob, d_idx = delta_p.max(dim=-1)
        p_jump = torch.sigmoid(out["use_jump"])
        jump = p_jump > 0.5
        prob = torch.where(jump, p_jump, (1 - p_jump) * d_prob)
        op = out["op"].argmax(dim=-1) if "op" in out else torch.full_like(e, -1)
        return StepDecision(jump.cpu().numpy(), (d_idx - w).cpu().numpy(),
                            prob.float().cpu().numpy(), op.cpu().numpy())

    def jump(i: int, expected: int, allow_stop: bool, played: np.ndarray) -> tuple[int, float]:
        return model.jump_target(enc, rec, last["query"][i], last["bucket"][i], last["stop"][i],
                                 expected, torch.from_numpy(played > 0).to(device),
                                 allow_stop=allow_stop)

    return step, jump


def keep_ahead(enc: Encoded, rec: int, window: int) -> np.ndarray | None:
    """Mean keep probability (the keep head) of the `window` frames from each raw frame on.

    Returns:
        ahead : np.ndarray [shape=(n_raw + 1,)], float64, 0 at the end; None when the model
        has no keep head or window < 1
    """
    if enc.keep is None or window < 1:
        return None
    n = int(enc.lengths[rec])
    p = torch.sigmoid(enc.keep[rec, :n].float()).double().cpu().numpy()
    c = np.concatenate([[0.0], np.cumsum(p)])
    start = np.arange(n)
    stop = np.minimum(start + window, n)
    ahead = np.zeros(n + 1)
    ahead[:n] = (c[stop] - c[start]) / (stop - start)
    return ahead


def decode_pointers(step: StepFn, jump: JumpFn, *, n_raw: int, target_frames: int | None,
                    max_frames: int, use_stop: bool, block_steps: int = 512,
                    keep_ahead: np.ndarray | None = None, jumps_back: bool = True,
                    keep_skip: bool = False, progress: Callable[[int], None] | None = None) -> Decoded:
    """Decode pointers greedily, K steps at a time while the pointer runs on.

    Args:
        step, jump: decision functions (see model_step_fns).
        n_raw: frames of the raw recording.
        target_frames: wanted edit length in frames (a conditioning input), or None when
            the model decides the length.
        max_frames: hard limit on the edit length.
        use_stop: let the model end the edit (else it runs to max_frames).
        block_steps: most steps evaluated at once.
        keep_ahead : np.ndarray [shape=(n_raw + 1,)] or None
            the keep head's mean probability of the frames just ahead of each raw frame
            (see `keep_ahead`). Where it is above one half, the model may not skip forward
            or stop: the pointer plays on until it falls to one half (jumps back, loops and
            repeats, stay allowed unless jumps_back is False). A decoder that has learned
            to cut otherwise skips material its own keep head would keep.
        jumps_back: the editor moves back in the raw (loops, repeats, reorders); when False
            the keep veto refuses jumps back as well (an editor that only cuts forward,
            vetoed, would otherwise loop back: seen on a 60-minute raw).
        keep_skip: with keep_ahead, also the other way round: where the keep head would
            drop what comes (one half or below), the pointer does not play on into it but
            skips forward to the next frame it would keep, or ends the edit when none is
            left and use_stop.
        progress: called with the number of output steps each block adds.
    """
    hist = History(n_raw, target_frames)
    pointers = np.empty(max_frames, np.int64)
    confidence = np.empty(max_frames, np.float32)
    ops = np.empty(max_frames, np.int64)
    k_block = MIN_BLOCK
    stopped = False
    hold_until = -1  # raw frames before this play on whatever the model says (a vetoed skip)
    if keep_ahead is not None:
        keepable = keep_ahead > 0.5
        low = np.flatnonzero(~keepable)  # holds the end (0), so every zone ends
        high = np.flatnonzero(keepable)
    keep_skip = keep_skip and keep_ahead is not None
    while hist.j < max_frames:
        k = min(k_block, max_frames - hist.j)
        expected, cond = hist.continuation(k)
        dec = step(expected, cond)
        held = expected < hold_until
        dec.jump[held] = False
        dec.delta[held] = 0
        dec.jump |= expected >= n_raw  # the raw ran out: nothing to play on; jump or stop
        if keep_skip:
            dec.jump |= ~keepable[np.minimum(expected, n_raw)]
        runs_on = ~dec.jump & (dec.delta == 0)
        n_ok = int(np.argmin(runs_on)) if not runs_on.all() else k
        j0 = hist.j
        pointers[j0:j0 + n_ok] = expected[:n_ok]
        confidence[j0:j0 + n_ok] = dec.prob[:n_ok]
        ops[j0:j0 + n_ok] = dec.op[:n_ok]
        hist.push_run(n_ok)
        if n_ok == k:
            k_block = min(2 * k_block, block_steps)
            if progress:
                progress(n_ok)
            continue
        i = n_ok
        e = int(expected[i])
        pointer, prob = e + int(dec.delta[i]), float(dec.prob[i])
        if dec.jump[i]:
            skip = keep_skip and not keepable[min(e, n_raw)]
            after = int(np.searchsorted(high, e)) if skip else 0
            if skip and (after < len(high) or use_stop):  # the next kept frame, or the end
                target, p_target = (int(high[after]) if after < len(high) else n_raw), 1.0
            else:
                target, p_target = jump(i, e, use_stop, hist.played[:n_raw])
            if keep_ahead is not None and keepable[e] and (target >= e or not jumps_back):
                # a skip forward (or the stop, or for an editor that never goes back, any
                # jump) where the keep head would keep what comes: play on to the end of
                # that stretch instead
                hold_until = int(low[np.searchsorted(low, e)])
                pointer, prob = e, 1.0 - prob
            elif target >= n_raw:
                stopped = True
                if progress:
                    progress(n_ok)
                break
            elif target >= 0:
                pointer, prob = target, prob * p_target
        pointers[hist.j] = pointer
        confidence[hist.j] = prob
        ops[hist.j] = dec.op[i]
        hist.push(pointer)
        k_block = MIN_BLOCK
        if progress:
            progress(n_ok + 1)
    n = hist.j
    return Decoded(pointers[:n].copy(), confidence[:n].copy(), ops[:n].copy(), stopped)


def merge_fragments(pointers: np.ndarray, min_frames: int, n_raw: int) -> np.ndarray:
    """Replace runs shorter than min_frames by a continuation of their neighbour.

    A short run after another run plays on from where the previous run ended; a short
    first run (or one that would run past the raw's end) plays the frames just before
    the next run. The length of the edit does not change.

    Args:
        pointers : np.ndarray [shape=(n,)], int64, all >= 0

    Returns:
        pointers : np.ndarray [shape=(n,)], int64
    """
    p = np.asarray(pointers, np.int64).copy()
    n = len(p)
    if n == 0 or min_frames <= 1:
        return p
    starts = np.flatnonzero(np.concatenate([[True], p[1:] != p[:-1] + 1]))
    ends = np.concatenate([starts[1:], [n]])
    for r, (a, b) in enumerate(zip(starts, ends)):
        if b - a >= min_frames:
            continue
        length = b - a
        if a > 0 and p[a - 1] + length < n_raw:
            p[a:b] = p[a - 1] + 1 + np.arange(length)
        elif b < n and p[b] - length >= 0:
            p[a:b] = p[b] - length + np.arange(length)
    return p
