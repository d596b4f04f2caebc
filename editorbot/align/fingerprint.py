"""Landmark fingerprints of a mel spectrogram, and offset voting between an edit and its raw.

A landmark is a pair of spectral peaks (f1, t1), (f2, t2) hashed as (f1, f2 - f1, t2 - t1);
every edit landmark whose hash also occurs in the raw votes for the offset raw - edit frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..features import FeatureParams
from .params import AlignParams

CHUNK_FRAMES = 8192  # frames of mel processed at once when picking peaks
VOTE_CHUNK_BLOCKS = 256  # blocks of edit frames voted at once
_DF_BITS, _DT_BITS = 7, 6  # hash layout: f1 (7 bits) | df + 64 (7 bits) | dt (6 bits)


@dataclass
class Landmarks:
    """Hashed peak pairs of one mel spectrogram.

    hashes : np.ndarray [shape=(n,)], int64, sorted
    frames : np.ndarray [shape=(n,)], int32, the anchor peak's frame of each hash
    """

    hashes: np.ndarray
    frames: np.ndarray


def peaks(mel: np.ndarray, cfg: AlignParams, params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """Spectral peaks of a mel, robust to EQ, compression and gain.

    Each frame's mean level is removed first, so a compressor's broadband gain changes do
    not move the peaks; a peak is the maximum of its neighbourhood of
    (2 * peak_band_radius + 1) bands by (2 * peak_frame_radius + 1) frames, within
    peak_range_db of the loudest band nearby, and the strongest peaks_per_s are kept.

    Args:
        mel : np.ndarray [shape=(n_mels, t)], the contract's mel in [0, 1]
        params: the grid the mel was made on (frame rate, top_db).

    Returns:
        bands, frames : np.ndarray [shape=(n_peaks,)], int32, sorted by frame
    """
    n_mels, n_frames = mel.shape
    pad = max(cfg.peak_frame_radius, cfg.level_frames // 2) + 1
    bin_frames = max(1, int(round(params.frames_per_s / 4)))  # density is capped per quarter second
    per_bin = max(1, int(round(cfg.peaks_per_s / 4)))
    floor = (cfg.peak_min_db + params.top_db) / params.top_db
    range_ = cfg.peak_range_db / params.top_db
    out_f, out_t = [], []
    for c0 in range(0, n_frames, CHUNK_FRAMES):
        c1 = min(c0 + CHUNK_FRAMES, n_frames)
        a, b = max(0, c0 - pad), min(n_frames, c1 + pad)
        m = mel[:, a:b]
        x = m - m.mean(axis=0, keepdims=True)
        local_max = ndimage.maximum_filter(
            x, size=(2 * cfg.peak_band_radius + 1, 2 * cfg.peak_frame_radius + 1),
            mode="nearest")
        level = ndimage.maximum_filter1d(x.max(axis=0), cfg.level_frames, mode="nearest")
        is_peak = (x == local_max) & (x > level - range_) & (m > floor)
        is_peak[:, : c0 - a] = False
        is_peak[:, c1 - a:] = False
        f, t = np.nonzero(is_peak)
        strength = x[f, t] - level[t]
        t = t + a
        # Keep the strongest per_bin peaks of each quarter second.
        bins = t // bin_frames
        order = np.lexsort((-strength, bins))
        f, t, bins = f[order], t[order], bins[order]
        rank = np.arange(len(bins)) - np.searchsorted(bins, bins, side="left")
        keep = rank < per_bin
        out_f.append(f[keep])
        out_t.append(t[keep])
    f = np.concatenate(out_f).astype(np.int32) if out_f else np.zeros(0, np.int32)
    t = np.concatenate(out_t).astype(np.int32) if out_t else np.zeros(0, np.int32)
    order = np.argsort(t, kind="stable")
    return f[order], t[order]


def landmarks(mel: np.ndarray, cfg: AlignParams, params: FeatureParams) -> Landmarks:
    """Hash each peak with the first fan_out later peaks in its target zone
    (1..pair_max_frames frames later, within pair_max_bands bands).

    Returns:
        Landmarks with hashes sorted (for lookup).
    """
    f, t = peaks(mel, cfg, params)
    n = len(t)
    hashes, frames = [], []
    look = cfg.fan_out * 6  # later peaks examined per anchor
    for a0 in range(0, n, 65536):
        a1 = min(a0 + 65536, n)
        anchor = np.arange(a0, a1)
        idx = anchor[:, None] + np.arange(1, look + 1)[None, :]
        inside = idx < n
        idx = np.minimum(idx, n - 1)
        dt = t[idx] - t[anchor, None]
        df = f[idx] - f[anchor, None]
        ok = inside & (dt > 0) & (dt <= cfg.pair_max_frames) & (np.abs(df) <= cfg.pair_max_bands)
        ok &= np.cumsum(ok, axis=1) <= cfg.fan_out
        i, j = np.nonzero(ok)
        h = ((f[anchor[i]].astype(np.int64) << (_DF_BITS + _DT_BITS))
             | ((df[i, j] + (1 << (_DF_BITS - 1))).astype(np.int64) << _DT_BITS)
             | dt[i, j].astype(np.int64))
        hashes.append(h)
        frames.append(t[anchor[i]])
    h = np.concatenate(hashes) if hashes else np.zeros(0, np.int64)
    fr = np.concatenate(frames).astype(np.int32) if frames else np.zeros(0, np.int32)
    order = np.argsort(h, kind="stable")
    return Landmarks(h[order], fr[order])


@dataclass
class Candidates:
    """Candidate offsets (raw frame - edit frame) per block of edit frames.

    offsets : np.ndarray [shape=(n_blocks, k)], int64, -2**40 where a slot is empty
        (k >= top_k: offsets with tie_ratio of the block's best are kept too, up to
        max_candidates)
    votes : np.ndarray [shape=(n_blocks, k)], int32, landmark votes for each offset
    copies : np.ndarray [shape=(n, 2)], int64, (block, offset) of every offset with at
        least copy_ratio of its block's best votes, however many: the places in the raw
        that may hold the same audio (copies.find_copies checks them)
    """

    offsets: np.ndarray
    votes: np.ndarray
    copies: np.ndarray

    EMPTY = -(1 << 40)


def vote(raw: Landmarks, edit: Landmarks, n_edit_frames: int, cfg: AlignParams) -> Candidates:
    """Count, per block of block_frames edit frames, the offsets that edit landmarks vote
    for; keep the top_k offsets with at least min_votes votes, and those with at least
    tie_ratio of the block's best (up to max_candidates); votes of the offsets one frame
    either side count too, since peaks can move by a frame.

    Hashes that occur more than max_hash_count times in the raw say little and are skipped.
    """
    n_blocks = max(1, -(-n_edit_frames // cfg.block_frames))
    lo = np.searchsorted(raw.hashes, edit.hashes, side="left")
    hi = np.searchsorted(raw.hashes, edit.hashes, side="right")
    count = hi - lo
    count[count > cfg.max_hash_count] = 0
    total = int(count.sum())
    offsets = np.full((n_blocks, cfg.top_k), Candidates.EMPTY, np.int64)
    votes = np.zeros((n_blocks, cfg.top_k), np.int32)
    if total == 0:
        return Candidates(offsets, votes, np.zeros((0, 2), np.int64))
    # One int64 key per (block, offset); offsets shifted to be non-negative. Edit
    # landmarks are taken a stretch of blocks at a time (blocks never share a key), so
    # the votes of an hour never sit in memory at once.
    span = int(raw.frames.max(initial=0)) + n_edit_frames + 4
    by_frame = np.argsort(edit.frames, kind="stable")
    frames_sorted = edit.frames[by_frame]
    found_keys, found_votes = [], []
    chunk = VOTE_CHUNK_BLOCKS * cfg.block_frames
    for f0 in range(0, n_edit_frames, chunk):
        a, b = np.searchsorted(frames_sorted, [f0, f0 + chunk])
        sel = by_frame[a:b]
        c = count[sel]
        if not c.sum():
            continue
        which = np.repeat(sel, c)
        raw_idx = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c) + np.repeat(lo[sel], c)
        edit_frame = edit.frames[which].astype(np.int64)
        offset = raw.frames[raw_idx].astype(np.int64) - edit_frame
        del which, raw_idx
        keys, n = np.unique((edit_frame // cfg.block_frames) * span + (offset + n_edit_frames + 2),
                            return_counts=True)
        del edit_frame, offset
        # Smooth over +-1 frame of offset, then keep offsets that beat both neighbours (ties
        # go to the lower offset) and have min_votes.
        smooth = n + _neighbour(keys, n, -1) + _neighbour(keys, n, 1)
        peak = ((smooth > _neighbour(keys, smooth, -1)) & (smooth >= _neighbour(keys, smooth, 1))
                & (smooth >= cfg.min_votes))
        found_keys.append(keys[peak])
        found_votes.append(smooth[peak])
    if not found_keys:
        return Candidates(offsets, votes, np.zeros((0, 2), np.int64))
    keys, smooth = np.concatenate(found_keys), np.concatenate(found_votes)
    block = keys // span
    off = keys % span - n_edit_frames - 2
    order = np.lexsort((-smooth, block))
    block, off, smooth = block[order], off[order], smooth[order]
    first = np.searchsorted(block, block, side="left")
    rank = np.arange(len(block)) - first
    # Offsets nearly as good as the block's best stay too (identical copies of the material
    # draw about the same votes; which of them the edit played is for the path to decide).
    top = (rank < cfg.top_k) | ((smooth >= cfg.tie_ratio * smooth[first]) & (rank < cfg.max_candidates))
    width = int(rank[top].max(initial=0)) + 1
    offsets = np.full((n_blocks, max(width, cfg.top_k)), Candidates.EMPTY, np.int64)
    votes = np.zeros(offsets.shape, np.int32)
    offsets[block[top], rank[top]] = off[top]
    votes[block[top], rank[top]] = smooth[top]
    near_best = smooth >= cfg.copy_ratio * smooth[first]
    return Candidates(offsets, votes, np.stack([block[near_best], off[near_best]], axis=1))


def _neighbour(keys: np.ndarray, values: np.ndarray, step: int) -> np.ndarray:
    """values at key + step (0 where that key is absent); keys sorted and unique."""
    out = np.zeros_like(values)
    if step > 0:
        has = keys[1:] == keys[:-1] + 1
        out[:-1] = np.where(has, values[1:], 0)
    else:
        has = keys[:-1] == keys[1:] - 1
        out[1:] = np.where(has, values[:-1], 0)
    return out
