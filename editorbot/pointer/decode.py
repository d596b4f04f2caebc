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
    p_jump: np.ndarray  # the use_jump head's probability of leaving the run


StepFn = Callable[[np.ndarray, np.ndarray], StepDecision]
JumpFn = Callable[..., tuple[int, float]]


def model_step_fns(model: PointerNet, enc: Encoded, rec: int = 0) -> tuple[StepFn, JumpFn]:
    """The decision functions of a model over one encoded recording.

    Returns:
        step(expected (k,), cond (k, N_COND)) -> StepDecision
        jump(index of the step in the last block, expected, allow_stop, played (n_raw,)
            play counts so far, within=None or (lo, hi): only frames lo..hi-1) -> (raw
            frame or n_raw for the stop, its probability); (-1, 0.0) when nothing is allowed
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
                            prob.float().cpu().numpy(), op.cpu().numpy(), p_jump.float().cpu().numpy())

    def jump(i: int, expected: int, allow_stop: bool, played: np.ndarray,
             within: tuple[int, int] | None = None) -> tuple[int, float]:
        return model.jump_target(enc, rec, last["query"][i], last["bucket"][i], last["stop"][i],
                                 expected, torch.from_numpy(played > 0).to(device),
                                 allow_stop=allow_stop, within=within)

    return step, jump


def _windowed_keep(enc: Encoded, rec: int, window: int, before: int) -> np.ndarray | None:
    """(n_raw,) float64: the keep head's mean probability over the `window` frames from
    `before` frames before each frame on (cut at the recording's ends); None without a
    keep head or when window < 1."""
    if enc.keep is None or window < 1:
        return None
    n = int(enc.lengths[rec])
    p = torch.sigmoid(enc.keep[rec, :n].float()).double().cpu().numpy()
    c = np.concatenate([[0.0], np.cumsum(p)])
    lo = np.clip(np.arange(n) - before, 0, n)
    hi = np.clip(np.arange(n) - before + window, 0, n)
    return (c[hi] - c[lo]) / np.maximum(hi - lo, 1)


def keep_ahead(enc: Encoded, rec: int, window: int) -> np.ndarray | None:
    """Mean keep probability (the keep head) of the `window` frames from each raw frame on.

    Returns:
        ahead : np.ndarray [shape=(n_raw + 1,)], float64, 0 at the end; None when the model
        has no keep head or window < 1
    """
    ahead = _windowed_keep(enc, rec, window, 0)
    return None if ahead is None else np.r_[ahead, 0.0]


def _runs_at_least(mask: np.ndarray, min_len: int) -> np.ndarray:
    """mask with every run shorter than min_len given its neighbours' value: short dropped
    gaps first, then short kept islands."""
    m = mask.copy()
    for value in (False, True):
        edges = np.flatnonzero(np.diff(np.r_[~m[0], m, ~m[-1]].astype(np.int8))) if len(m) else []
        for a, b in zip(edges[:-1], edges[1:]):
            if m[a] == value and b - a < min_len and (a > 0 or b < len(m)):
                m[a:b] = not value
    return m


@dataclass
class KeepPlan:
    """What a decoder that follows the keep head keeps (decode.keep_skip).

    keep (n_raw + 1,) bool, the last entry (past the end) False, every kept and dropped
    stretch at least 2 snap + 1 frames long. Around each boundary, within snap frames, the
    model's own heads place the cut: it leaves a kept stretch where its use_jump head is
    surest, and lands in the next where its jump head points.
    """

    keep: np.ndarray
    snap: int

    def __post_init__(self):
        k = self.keep
        n = len(k) - 1
        edges = np.flatnonzero(k[1:] != k[:-1]) + 1
        self.exits = edges[~k[edges] & (edges < n)]  # first dropped frame after a kept stretch
        self.entries = edges[k[edges]]  # first kept frame after a dropped stretch
        # exit_zone[f]: the exit whose snap window holds frame f, else -1
        self.exit_zone = np.full(n + 1, -1, np.int64)
        near = np.zeros(n + 2, np.int64)  # frames within snap of any boundary (difference array)
        for x in self.exits:
            self.exit_zone[max(x - self.snap, 0):min(x + self.snap + 1, n)] = x
        for b in np.r_[self.exits, self.entries]:
            near[max(b - self.snap, 0)] += 1
            near[min(b + self.snap + 1, n + 1)] -= 1
        # where the keep veto holds: kept frames, and the snap frames before each entry
        # (where a landing may fall short of it)
        self.protect = k.copy()
        for y in self.entries:
            self.protect[max(y - self.snap, 0):y] = True
        # deep in a dropped stretch: the pointer skips to the next kept one unasked
        self.deep_drop = ~k & (np.cumsum(near)[:n + 1] == 0)
        self.deep_drop[n] = False  # past the end: the raw has run out, handled as such

    def next_entry(self, frame: int) -> int | None:
        i = int(np.searchsorted(self.entries, frame, side="right"))
        return int(self.entries[i]) if i < len(self.entries) else None


def smoothed_keep(enc: Encoded, rec: int, smooth: int) -> np.ndarray | None:
    """The keep head's probability averaged over `smooth` frames centred on each frame
    ((n_raw,) float64), or None without a keep head."""
    smooth = max(smooth, 1)
    return _windowed_keep(enc, rec, smooth, smooth // 2)


def by_passages(mean_keep: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """mean_keep averaged over each passage: the frames between two consecutive bounds
    (where playing starts or stops, see infer.passage_bounds), so that a passage is kept or
    dropped whole. Frames before the first bound and from the last on are passages too."""
    n = len(mean_keep)
    b = np.unique(np.r_[0, np.clip(np.asarray(bounds, np.int64), 0, n), n])
    c = np.r_[0.0, np.cumsum(mean_keep, dtype=np.float64)]
    means = (c[b[1:]] - c[b[:-1]]) / np.maximum(b[1:] - b[:-1], 1)
    return np.repeat(means, np.diff(b))


def kept_stretches(mean_keep: np.ndarray, threshold: float, snap: int) -> np.ndarray:
    """(n_raw,) bool: mean_keep above threshold, stretches shorter than 2 snap + 1 frames
    merged into their neighbours."""
    return _runs_at_least(mean_keep > threshold, 2 * snap + 1)


def keep_plan(enc: Encoded, rec: int, *, smooth: int, threshold: float, snap: int,
              passages: np.ndarray | None = None) -> KeepPlan | None:
    """The plan of what the keep head keeps (see smoothed_keep and kept_stretches), by
    passages between the given bounds when there are some (see by_passages); None without
    a keep head, or when it keeps nothing (an untrained head: nothing to follow)."""
    mean = smoothed_keep(enc, rec, smooth)
    if mean is None:
        return None
    if passages is not None:
        mean = by_passages(mean, passages)
    keep = kept_stretches(mean, threshold, snap)
    return KeepPlan(np.r_[keep, False], snap) if keep.any() else None


def decode_pointers(step: StepFn, jump: JumpFn, *, n_raw: int, target_frames: int | None,
                    max_frames: int, use_stop: bool, block_steps: int = 512,
                    keep_ahead: np.ndarray | None = None, jumps_back: bool = True,
                    follow: KeepPlan | None = None,
                    progress: Callable[[int], None] | None = None) -> Decoded:
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
        follow: a KeepPlan (see `keep_plan`), used instead of keep_ahead: the pointer plays
            what the plan keeps and skips what it drops. In a kept stretch the veto above
            holds; within follow.snap frames of the end of a kept stretch it leaves the run
            at the step where use_jump is likeliest and lands within snap frames of the
            start of the next kept stretch, where the jump head points (or ends the edit
            when none is left and use_stop); deeper in a dropped stretch it skips forward
            the same way at once.
        progress: called with the number of output steps each block adds.
    """
    hist = History(n_raw, target_frames)
    pointers = np.empty(max_frames, np.int64)
    confidence = np.empty(max_frames, np.float32)
    ops = np.empty(max_frames, np.int64)
    k_block = MIN_BLOCK
    stopped = False
    hold_until = -1  # raw frames before this play on whatever the model says (a vetoed skip)
    keepable = None
    if follow is not None:
        keepable = follow.protect
        # a vetoed skip holds until the snap window before the next exit (or the end)
        hold_ends = np.r_[follow.exits - follow.snap, n_raw]
    elif keep_ahead is not None:
        keepable = keep_ahead > 0.5
        hold_ends = np.flatnonzero(~keepable)  # holds the end (n_raw), so every hold ends
    while hist.j < max_frames:
        k = min(k_block, max_frames - hist.j)
        expected, cond = hist.continuation(k)
        dec = step(expected, cond)
        held = expected < hold_until
        dec.jump[held] = False
        dec.delta[held] = 0
        dec.jump |= expected >= n_raw  # the raw ran out: nothing to play on; jump or stop
        cut = -1  # the step where following the plan leaves a kept stretch
        if follow is not None:
            at = np.minimum(expected, n_raw)
            dec.jump |= follow.deep_drop[at]
            zone = follow.exit_zone[at]
            in_zone = np.flatnonzero(zone >= 0)
            i0 = int(in_zone[0]) if len(in_zone) else k
            if i0 < k and not (dec.jump[:i0] | (dec.delta[:i0] != 0)).any():
                window = np.flatnonzero(zone == zone[i0])
                ends_in_block = expected[window[-1]] >= zone[i0] + follow.snap or k == max_frames - hist.j
                if not ends_in_block and k < 2 * follow.snap + 2 + i0:
                    k_block = 2 * follow.snap + 2 + i0  # see the whole window at once
                    continue
                cut = int(window[np.argmax(dec.p_jump[window])])
                dec.jump[i0:cut] = False
                dec.delta[i0:cut] = 0
                dec.jump[cut] = True
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
            planned = follow is not None and (i == cut or follow.deep_drop[min(e, n_raw)])
            entry = follow.next_entry(e) if planned else None
            if planned and entry is not None:  # land near the next kept stretch
                within = (max(entry - follow.snap, e + 1), entry + follow.snap + 1)
                target, p_target = jump(i, e, False, hist.played[:n_raw], within)
                if target < 0:
                    target, p_target = entry, 1.0
                prob = float(dec.p_jump[i])
            elif planned and use_stop:  # nothing kept is left
                target, p_target = n_raw, 1.0
            else:
                target, p_target = jump(i, e, use_stop, hist.played[:n_raw])
            if not planned and keepable is not None and keepable[e] and (target >= e or not jumps_back):
                # a skip forward (or the stop, or for an editor that never goes back, any
                # jump) where the keep head would keep what comes: play on to the end of
                # that stretch instead
                hold_until = int(hold_ends[np.searchsorted(hold_ends, e, side="right")])
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
