"""The jump-aware path: for each edit frame, which raw offset (or "not in raw") it plays.

A Viterbi search over the candidate offsets of each block of edit frames, scored by each
candidate's per-frame evidence: the correlation of spectral-difference features, capped at
match_full, minus match_threshold ("not in raw" scores 0).

The labels must say what the editor did, so among explanations that match the edit
equally well the one with the fewest jumps wins. This is the one place that rule lives:
- carrying straight on (previous pointer + 1) is free; any jump costs jump_cost, and a
  jump back in the raw (a loop, a reorder) costs back_cost more, so of two equal copies the
  one ahead wins; entering or leaving "not in raw" costs not_in_raw_cost;
- evidence is capped at match_full, so identical copies of the material (met at another
  fraction of a frame, they correlate a little better or worse) score the same and the
  costs above decide; identical copies draw the same votes, so voting keeps ties
  (tie_ratio) and an offset that still matches past its candidate blocks stays a
  candidate (extend_offsets): carrying on is always on offer;
- refinement keeps the rule at the sample: neighbouring segments that one lag plays
  equally well are merged (copies.merge_equivalent), and among the copies that play each
  segment equally well the fewest joins, then the fewest jumps back, are chosen, with the
  same relative cost of a jump back (copies.choose_copies); the other copies are written
  down as the segment's alternatives, never taken as jumps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fingerprint import Candidates
from .params import AlignParams

_FLAT = 1e-4          # feature vectors with less energy than this carry no evidence
OUT_OF_RANGE = -1.0   # evidence of a frame whose candidate raw frame lies outside the raw
NO_CANDIDATE = -1e6   # evidence of an empty candidate slot: never chosen
CHUNK_FRAMES = 16384
STAY_SOURCE, NIR_SOURCE = 255, 254  # back-pointer codes of the Viterbi search
MAX_WIDTH = 96        # candidate offsets per block at most


def match_features(mel: np.ndarray, lag: int, dtype=np.float32) -> np.ndarray:
    """Per-frame features that survive EQ, compression and gain: the change over `lag`
    frames of the level difference between neighbouring mel bands, mean-removed and
    scaled to unit length (zero for frames without spectral change).

    A fixed EQ adds a constant to each band difference and a compressor adds the same
    gain to every band, so both cancel in the change over time.

    Args:
        mel : np.ndarray [shape=(n_mels, t)]
        dtype: of the result; float16 halves an hour's raw features (a correlation of
            two is then good to about 1e-3)

    Returns:
        features : np.ndarray [shape=(t, n_mels - 1)], frame-major
    """
    n_mels, n = mel.shape
    out = np.zeros((n, n_mels - 1), dtype)
    for c0 in range(0, n, CHUNK_FRAMES):
        c1 = min(n, c0 + CHUNK_FRAMES)
        a = max(0, c0 - lag)
        d = mel[:-1, a:c1] - mel[1:, a:c1]            # (n_mels - 1, c1 - a)
        dd = np.zeros_like(d)
        dd[:, lag:] = d[:, lag:] - d[:, :-lag]
        x = np.ascontiguousarray(dd[:, c0 - a:].T)    # (c1 - c0, n_mels - 1)
        x -= x.mean(axis=1, keepdims=True)
        norm = np.sqrt(np.einsum("ij,ij->i", x, x))
        x /= np.where(norm > _FLAT, norm, np.inf)[:, None]
        if c0 < lag:
            x[: lag - c0] = 0.0  # no earlier frame to compare with
        out[c0:c1] = x
    return out


@dataclass
class Path:
    """The chosen path and the evidence behind it.

    offsets : np.ndarray [shape=(n_edit_frames,)], int64, raw frame - edit frame (0 where
        not in raw)
    in_raw : np.ndarray [shape=(n_edit_frames,)], bool, False: "not in raw"
    match : np.ndarray [shape=(n_edit_frames,)], float32, feature correlation at the
        chosen offset (nan where not in raw or the edit frame has no spectral change)
    runner_up : np.ndarray [shape=(n_edit_frames,)], float32, best correlation of any
        other candidate more than one frame from the chosen offset (nan: none)
    """

    offsets: np.ndarray
    in_raw: np.ndarray
    match: np.ndarray
    runner_up: np.ndarray


def active_offsets(cands: Candidates, persist_blocks: int, carry: int) -> np.ndarray:
    """Offsets tried in each block: its own candidates, those of persist_blocks blocks
    either side, and the best `carry` candidates of the nearest blocks before and after
    that have any (so a segment's offset survives a stretch without landmarks, such as a
    quiet passage), without repeats.

    Returns:
        active : np.ndarray [shape=(n_blocks, width)], int64, Candidates.EMPTY padded
    """
    offs = cands.offsets
    n_blocks, k = offs.shape
    padded = np.full((n_blocks + 2 * persist_blocks, k), Candidates.EMPTY, np.int64)
    padded[persist_blocks:persist_blocks + n_blocks] = offs
    # In order of priority: the block's own candidates, then its neighbours' nearest first.
    shifts = sorted(range(-persist_blocks, persist_blocks + 1), key=abs)
    parts = [padded[persist_blocks + d:persist_blocks + d + n_blocks] for d in shifts]
    has = offs[:, 0] != Candidates.EMPTY
    rows = np.arange(n_blocks)
    before = np.maximum.accumulate(np.where(has, rows, -1))
    after = np.minimum.accumulate(np.where(has, rows, n_blocks)[::-1])[::-1]
    for nearest in (before, after):
        ok = (nearest >= 0) & (nearest < n_blocks)
        parts.append(np.where(ok[:, None], offs[np.clip(nearest, 0, n_blocks - 1), :carry],
                              Candidates.EMPTY))
    stacked = np.concatenate(parts, axis=1)
    # Drop repeats (keeping the first, most important, occurrence), keep MAX_WIDTH.
    order = np.argsort(stacked, axis=1, kind="stable")
    sorted_ = np.take_along_axis(stacked, order, axis=1)
    dup_sorted = np.zeros_like(sorted_, dtype=bool)
    dup_sorted[:, 1:] = sorted_[:, 1:] == sorted_[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    stacked[dup] = Candidates.EMPTY
    real = stacked != Candidates.EMPTY
    rank = np.cumsum(real, axis=1)
    stacked[real & (rank > MAX_WIDTH)] = Candidates.EMPTY
    stacked = -np.sort(-stacked, axis=1)  # real offsets first, in descending order
    width = max(1, int((stacked != Candidates.EMPTY).sum(axis=1).max(initial=0)))
    return np.ascontiguousarray(stacked[:, :width])


def extend_offsets(active: np.ndarray, corr: np.ndarray, edit_features: np.ndarray,
                   raw_features: np.ndarray, cfg: AlignParams) -> np.ndarray:
    """Add to `active` every offset that carries on matching past its run of blocks.

    Voting keeps a block's top_k offsets, so where the raw holds many identical copies of
    the material (loops, repeated bars, a false start replaying a take's opening) the
    offset a segment is on can drop out of the candidates although it still matches, and
    the path would have to jump to a copy. Here an offset whose block matches (mean
    correlation over its frames with spectral change at least halfway from
    match_threshold to match_full) is tried in the next block, and the one before its run,
    and kept there while it matches; blocks with little spectral change (silence) neither
    stop nor count as a match.

    Returns:
        added : np.ndarray [shape=(n_blocks, k)], int64, the offsets added to each block
            (Candidates.EMPTY padded), or None when there are none
    """
    bf = cfg.block_frames
    n, n_raw = len(edit_features), len(raw_features)
    n_blocks = len(active)
    good_corr = 0.5 * (cfg.match_threshold + cfg.match_full)
    changing = edit_features.any(axis=1)
    n_changing = np.add.reduceat(changing.astype(np.int64), np.arange(0, n, bf))
    quiet = n_changing < bf // 4
    with np.errstate(invalid="ignore"):
        sums = np.add.reduceat(np.where(changing[:, None], np.nan_to_num(corr, nan=-1.0), 0.0),
                               np.arange(0, n, bf), axis=0)
        good = sums / np.maximum(n_changing, 1)[:, None] >= good_corr
    good &= (active != Candidates.EMPTY) & ~quiet[:, None]
    members = [set(row[row != Candidates.EMPTY].tolist()) for row in active]
    added: list[list[int]] = [[] for _ in range(n_blocks)]

    def matches(b: int, o: int) -> bool | None:
        """Whether offset o matches block b (None: the block is quiet)."""
        if quiet[b]:
            return None
        f0, f1 = max(b * bf, -o), min((b + 1) * bf, n, n_raw - o)
        if f1 <= f0:
            return False
        c = _dot_rows(edit_features[f0:f1], raw_features[f0 + o:f1 + o])
        m = changing[f0:f1]
        return bool(m.any() and c[m].mean() >= good_corr)

    for b, col in zip(*np.nonzero(good)):
        o = int(active[b, col])
        for direction in (1, -1):
            nb = b + direction
            while 0 <= nb < n_blocks and o not in members[nb] and len(members[nb]) < MAX_WIDTH:
                ok = matches(nb, o)
                if ok is False:
                    break
                members[nb].add(o)
                added[nb].append(o)
                nb += direction
    extra = max(len(a) for a in added)
    if not extra:
        return None
    out = np.full((n_blocks, extra), Candidates.EMPTY, np.int64)
    for b, offs in enumerate(added):
        out[b, :len(offs)] = offs
    return out


def _merge_columns(active: np.ndarray, corr: np.ndarray, added: np.ndarray, corr_added: np.ndarray,
                   block_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate offsets and their correlations with the added columns joined in, each
    block's offsets in descending order again (empty slots last), empty columns dropped."""
    both = np.concatenate([active, added], axis=1)
    order = np.argsort(-both, axis=1, kind="stable")
    width = int((both != Candidates.EMPTY).sum(axis=1).max())
    order = order[:, :width]
    rows = np.arange(len(corr)) // block_frames
    corr_both = np.concatenate([corr, corr_added], axis=1)
    return (np.ascontiguousarray(np.take_along_axis(both, order, axis=1)),
            np.take_along_axis(corr_both, order[rows], axis=1))


def best_path(edit_features: np.ndarray, raw_features: np.ndarray, cands: Candidates,
              cfg: AlignParams) -> Path:
    """Viterbi search for the best sequence of offsets and "not in raw" runs.

    The search steps step_frames frames at a time (the evidence of a step is summed over
    its frames); joins are placed to the sample afterwards (refine.py).

    Args:
        edit_features : np.ndarray [shape=(n_edit_frames, d)], from match_features
        raw_features : np.ndarray [shape=(n_raw_frames, d)]
        cands: candidate offsets per block of cfg.block_frames edit frames.
    """
    n = len(edit_features)
    active = active_offsets(cands, cfg.persist_blocks, cfg.carry_candidates)
    corr = correlations(edit_features, raw_features, active, cfg.block_frames)
    added = extend_offsets(active, corr, edit_features, raw_features, cfg)
    if added is not None:
        active, corr = _merge_columns(active, corr, added,
                                      correlations(edit_features, raw_features, added, cfg.block_frames),
                                      cfg.block_frames)
    flat = ~edit_features.any(axis=1)
    evidence = np.where(np.isnan(corr), OUT_OF_RANGE,
                        np.minimum(corr, cfg.match_full) - cfg.match_threshold)
    evidence[flat] = np.where(np.isnan(corr[flat]), OUT_OF_RANGE, 0.0)
    blocks = np.arange(n) // cfg.block_frames
    evidence[active[blocks] == Candidates.EMPTY] = NO_CANDIDATE
    state = _viterbi(evidence, active, cfg)
    in_raw = state >= 0
    rows = np.arange(n)
    offsets = np.where(in_raw, active[blocks, np.maximum(state, 0)], 0)
    match = np.where(in_raw, corr[rows, np.maximum(state, 0)], np.nan).astype(np.float32)
    # Best other candidate more than a frame away from the chosen offset.
    cand_off = active[blocks]
    other = (cand_off != Candidates.EMPTY) & (~in_raw[:, None] | (np.abs(cand_off - offsets[:, None]) > 1))
    alt = np.where(other & ~np.isnan(corr), corr, -np.inf).max(axis=1, initial=-np.inf)
    runner_up = np.where(np.isfinite(alt), alt, np.nan).astype(np.float32)
    return Path(offsets.astype(np.int64), in_raw, match, runner_up)


def correlations(edit_features: np.ndarray, raw_features: np.ndarray, active: np.ndarray,
                 block_frames: int) -> np.ndarray:
    """Feature correlation of every edit frame with the raw frame at each of its block's
    candidate offsets.

    Each offset is evaluated over the whole run of consecutive blocks where it is a
    candidate at once (contiguous slices, no copies).

    Returns:
        corr : np.ndarray [shape=(n_edit_frames, width)], float32, nan for an empty slot
            or a raw frame outside the raw
    """
    n, n_raw = len(edit_features), len(raw_features)
    n_blocks, width = active.shape
    corr = np.full((n, width), np.nan, np.float32)
    b, a = np.nonzero(active != Candidates.EMPTY)
    off = active[b, a]
    order = np.lexsort((b, off))
    b, a, off = b[order], a[order], off[order]
    # Runs of one offset over consecutive blocks.
    new = np.ones(len(b), bool)
    new[1:] = (off[1:] != off[:-1]) | (b[1:] != b[:-1] + 1)
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(b))
    for i0, i1 in zip(starts.tolist(), ends.tolist()):
        o = int(off[i0])
        f0 = max(int(b[i0]) * block_frames, -o)
        f1 = min(int(b[i1 - 1] + 1) * block_frames, n, n_raw - o)
        if f1 <= f0:
            continue
        c = _dot_rows(edit_features[f0:f1], raw_features[f0 + o:f1 + o])
        cols = np.repeat(a[i0:i1], block_frames)[f0 - int(b[i0]) * block_frames:][:f1 - f0]
        corr[np.arange(f0, f1), cols] = c
    return corr


def _dot_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (t, d) feature arrays (the raw's kept in float16), in
    float32."""
    return np.einsum("ij,ij->i", a.astype(np.float32, copy=False), b.astype(np.float32, copy=False))


def _viterbi(evidence: np.ndarray, active: np.ndarray, cfg: AlignParams) -> np.ndarray:
    """Best state per frame: a column of `active` (the block's candidate), or -1 (not in raw).

    Steps of step_frames frames. The costs are the tie-break between explanations that
    match the edit equally well (see the module docstring): staying on an offset (the
    raw carries straight on) is free, a jump forward in the raw costs jump_cost, a jump
    back costs jump_cost + back_cost, entering or leaving "not in raw" costs
    not_in_raw_cost. A candidate that was not one in the previous block can only be
    entered by a jump. Ties go to staying, then to the forward jump.
    """
    n, width = evidence.shape
    if width >= NIR_SOURCE:
        raise ValueError(f"too many candidate offsets per block ({width})")
    bf, step = cfg.block_frames, cfg.step_frames
    n_steps = -(-n // step)
    padded = np.zeros((n_steps * step, width), np.float32)
    padded[:n] = evidence
    step_ev = padded.reshape(n_steps, step, width).sum(axis=1)
    prev_col = _previous_columns(active)
    steps_per_block = bf // step
    # Per step and column: STAY_SOURCE, NIR_SOURCE or the column jumped from.
    back = np.zeros((n_steps, width), np.uint8)
    back_nir = np.zeros(n_steps, bool)           # True: "not in raw" entered from best_at
    best_at = np.zeros(n_steps, np.int64)        # best column of the step before
    neg = -1e30
    score = np.full(width, neg)
    nir = 0.0
    jump, back_extra, enter = cfg.jump_cost, cfg.back_cost, cfg.not_in_raw_cost
    cols = np.arange(width)
    sources = None
    for s in range(n_steps):
        blk = s // steps_per_block
        crossing = s % steps_per_block == 0 and s > 0
        if s % steps_per_block == 0:
            within = _jump_sources(active[blk], active[blk])
            sources = _jump_sources(active[blk - 1], active[blk]) if s else within
        fwd_pos, bwd_end = sources if crossing else within
        k = int(np.argmax(score))
        best = float(score[k])
        best_at[s] = k
        # Best source of a forward jump (a smaller offset: a suffix of the descending
        # columns) and of a backward one (a larger offset: a prefix), for every target.
        rev = score[::-1]
        suf = np.maximum.accumulate(rev)
        suf_arg = width - 1 - np.maximum.accumulate(np.where(rev >= suf, cols, 0))
        suf, suf_arg = suf[::-1], suf_arg[::-1]
        pre = np.maximum.accumulate(score)
        pre_arg = np.maximum.accumulate(np.where(score >= pre, cols, 0))
        has_fwd = fwd_pos < width
        fwd = np.where(has_fwd, suf[np.minimum(fwd_pos, width - 1)], neg) - jump
        has_bwd = bwd_end > 0
        bwd = np.where(has_bwd, pre[np.maximum(bwd_end - 1, 0)], neg) - jump - back_extra
        src = np.where(fwd >= bwd, suf_arg[np.minimum(fwd_pos, width - 1)],
                       pre_arg[np.maximum(bwd_end - 1, 0)])
        from_jump = np.maximum(fwd, bwd)
        from_nir = nir - enter if s else 0.0
        if crossing:
            pc = prev_col[blk]
            score = np.where(pc >= 0, score[np.maximum(pc, 0)], neg)
        top = np.maximum(from_jump, from_nir)
        stay = score >= top
        choice = np.where(from_jump >= from_nir, src, NIR_SOURCE).astype(np.uint8)
        choice[stay] = STAY_SOURCE
        back[s] = choice
        score = np.where(stay, score, top) + step_ev[s]
        if best - enter > nir:
            nir = best - enter
            back_nir[s] = True
    # Trace back. Sources and best_at[s] are columns of the block of step s - 1; "stay"
    # across a block start moves to the candidate's column in the previous block.
    states = np.empty(n_steps, np.int64)
    k = int(np.argmax(score))
    cur = k if score[k] > nir else -1
    for s in range(n_steps - 1, -1, -1):
        states[s] = cur
        if cur < 0:
            cur = int(best_at[s]) if back_nir[s] else -1
            continue
        how = back[s, cur]
        if how == STAY_SOURCE:
            if s % steps_per_block == 0 and s:
                cur = int(prev_col[s // steps_per_block, cur])
        elif how == NIR_SOURCE:
            cur = -1
        else:
            cur = int(how)
    return np.repeat(states, step)[:n]


def _jump_sources(prev_offsets: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where, among the previous step's columns (offsets in descending order, empty slots
    last), the forward and backward jump sources of each target column lie: columns
    [fwd_pos, width) hold smaller offsets (the target lies ahead of them in the raw),
    columns [0, bwd_end) larger ones (the target lies behind)."""
    desc = -prev_offsets
    fwd_pos = np.searchsorted(desc, -offsets, side="right")
    bwd_end = np.searchsorted(desc, -offsets, side="left")
    return fwd_pos, bwd_end


def _previous_columns(active: np.ndarray) -> np.ndarray:
    """For each block and column, the column of the same offset in the previous block
    (-1 where it was not a candidate there).

    Returns:
        prev_col : np.ndarray [shape=active.shape], int64
    """
    n_blocks, width = active.shape
    prev_col = np.full(active.shape, -1, np.int64)
    if n_blocks < 2:
        return prev_col
    blk = np.repeat(np.arange(n_blocks), width)
    col = np.tile(np.arange(width), n_blocks)
    off = active.ravel()
    real = off != Candidates.EMPTY
    blk, col, off = blk[real], col[real], off[real]
    span = int(off.max() - off.min()) + 1
    key = blk * span + (off - off.min())
    order = np.argsort(key)
    skey = key[order]
    want = key - span                            # same offset, previous block
    pos = np.minimum(np.searchsorted(skey, want), len(skey) - 1)
    hit = skey[pos] == want
    prev_col[blk[hit], col[hit]] = col[order][pos[hit]]
    return prev_col
