"""Where a moment sits in its song, read off one recording's mel: repeats, quiet, position.

An editor drops the second verse and the third chorus and keeps the first ones; the notes are
the same, so what tells them apart is how many times the song has played this material
before, and where the song starts and stops. These functions measure that without learning,
in time and memory linear in the recording's length (every comparison is within max_lag).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

N_STRUCTURE = 11  # channels of structure_context


def block_means(mel: torch.Tensor, block: int) -> torch.Tensor:
    """(nb, C): the mel averaged over whole blocks of `block` frames (a last partial block is left out)."""
    c, t = mel.shape
    nb = t // block
    return mel[:, :nb * block].float().reshape(c, nb, block).mean(-1).T


def hold_blocks(x: torch.Tensor, block: int, t: int, out: torch.Tensor) -> torch.Tensor:
    """Write per-block values (N, nb) into out (N, t), each held for its block's frames;
    frames after the last whole block take its values."""
    nb = x.shape[1]
    out[:, :nb * block] = x.repeat_interleave(block, dim=1)
    if nb * block < t:
        out[:, nb * block:] = out[:, nb * block - 1:nb * block]
    return out


def diagonal_similarity(v: torch.Tensor, lo: int, hi: int, smooth: int) -> torch.Tensor:
    """Cosine similarity of each block with the block `lag` earlier, lag = lo..hi blocks.

    Each block is centred on the recording's mean block and normalised; the similarity is
    averaged over `smooth` blocks along the diagonal, so that a match is a stretch that goes
    on for seconds, not one chord.

    Args:
        v : torch.Tensor [shape=(nb, C)], block vectors, hi < nb

    Returns:
        sim : torch.Tensor [shape=(hi - lo + 1, nb)], sim[l, j] compares block j with block
            j - (lo + l); -1 where that earlier block does not exist
    """
    nb = v.shape[0]
    v = F.normalize(v - v.mean(0, keepdim=True), dim=1)
    n_lags = hi - lo + 1
    # Pairs that do not exist stay at 0 and are left out of the diagonal mean by `real`.
    sim = torch.zeros(n_lags, nb, device=v.device)
    real = torch.zeros(n_lags, nb, device=v.device)
    for l, lag in enumerate(range(lo, hi + 1)):
        sim[l, lag:] = (v[lag:] * v[:-lag]).sum(1)
        real[l, lag:] = 1.0
    pad = smooth // 2
    num = F.avg_pool1d(sim[:, None], smooth, 1, padding=pad, count_include_pad=True)[:, 0, :nb]
    den = F.avg_pool1d(real[:, None], smooth, 1, padding=pad, count_include_pad=True)[:, 0, :nb]
    return torch.where(real > 0, num / den.clamp(min=1e-6), torch.full_like(sim, -1.0))


def looking_ahead(sim: torch.Tensor, lo: int) -> torch.Tensor:
    """The same pairs seen from the earlier block: out[l, j] compares block j with block j + lo + l."""
    out = torch.full_like(sim, -1.0)
    nb = sim.shape[1]
    for l in range(sim.shape[0]):
        lag = lo + l
        out[l, :nb - lag] = sim[l, lag:]
    return out


def _close(m: torch.Tensor, gap: int) -> torch.Tensor:
    """Morphological closing of a bool (nb, n_lags) along lags: holes shorter than `gap` fill."""
    x = m.float()[:, None]
    pad = (gap // 2, gap - 1 - gap // 2)
    grown = F.max_pool1d(F.pad(x, pad, value=0.0), gap, 1)
    shrunk = 1.0 - F.max_pool1d(F.pad(1.0 - grown, pad[::-1], value=0.0), gap, 1)
    return shrunk[:, 0] > 0.5  # contains m: the ends count as matched while shrinking


def _earlier_takes(sim: torch.Tensor, threshold: float, gap: int) -> tuple[torch.Tensor, ...]:
    """Per block, from one direction's similarities (n_lags, nb), nearest lag first.

    The lags that match (sim > threshold, holes under `gap` lags closed) form runs. The run
    that starts within `gap` of the block itself is the stretch the block is part of (a
    section's own bars repeat every few seconds); every other run is another take of the
    same material.

    Returns:
        takes : (nb,), how many other takes there are
        take_share : (nb,), the share of the lags that fall in other takes
        own_share : (nb,), the share of the lags in the block's own stretch
        best : (nb,), the best similarity in another take (-1 where there is none)
    """
    m = (sim > threshold).T  # (nb, n_lags)
    # The block matches itself at lag 0: a run that starts within `gap` of it is its own.
    m = _close(torch.cat([torch.ones_like(m[:, :1]), m], dim=1), gap)[:, 1:]
    own = torch.cumprod(m.to(torch.uint8), dim=1).bool()
    other = m & ~own
    starts = other[:, 1:] & ~other[:, :-1]
    takes = starts.sum(1)
    n_lags = sim.shape[0]
    best = torch.where(other, sim.T, torch.full_like(sim.T, -1.0)).max(1).values
    return (takes.float(), other.sum(1).float() / n_lags, own.sum(1).float() / n_lags, best)


def _smooth(x: torch.Tensor, n: int) -> torch.Tensor:
    """Moving average of each row of (N, nb) over n blocks, the ends held."""
    padded = F.pad(x[:, None], (n // 2, n - 1 - n // 2), mode="replicate")
    return F.avg_pool1d(padded, n, 1)[:, 0]


def _quiet_distances(level: torch.Tensor, far: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks since the last quiet block and until the next one, at most `far`.

    level: (nb,) each block's mean mel, smoothed over seconds. Quiet: within a quarter of
    the way up from the recording's quiet level (5th percentile of the block levels) to its
    loud level (95th): the gaps between songs (silence, tuning, noodling) and most
    breakdowns; verses and solos sit above half of the way.
    """
    loud, soft = torch.quantile(level, 0.95), torch.quantile(level, 0.05)
    quiet = level < soft + 0.25 * (loud - soft)
    idx = torch.arange(level.shape[0], device=level.device)
    never = torch.full_like(idx, -far)
    last = torch.cummax(torch.where(quiet, idx, never), 0).values
    ahead = torch.where(quiet, idx, idx.max() + far).flip(0)
    nxt = torch.cummin(ahead, 0).values.flip(0)
    return (idx - last).clamp(max=far), (nxt - idx).clamp(max=far)


@torch.no_grad()
def structure_context(mel: torch.Tensor, *, block: int, min_lag: int, max_lag: int,
                      smooth: int, threshold: float, gap: int) -> torch.Tensor:
    """Each moment's place in its song: other takes of it before and after, and the quiet around it.

    Blocks compare by spectral shape (each frame's mean level taken out, so a chorus played
    louder still matches). Channels, each averaged over `smooth` blocks and held for the
    frames of its block:
      0-3  earlier takes: how many (/ 2, at most 4 counted), share of the looked-back lags
           they cover and share of the block's own stretch (both x 8), best similarity in
           one of them
      4-7  the same for later takes
      8    blocks since the last quiet stretch, / max_lag blocks (1 = farther)
      9    blocks until the next quiet stretch, likewise
      10   how far into the stretch between the two quiet ones (0 = just started)

    Args:
        mel : torch.Tensor [shape=(C, T)], one recording's [0, 1] mel (no padding)
        block: frames per block (32 = 0.37 s at the default analysis grid).
        min_lag, max_lag: frames; material nearer than min_lag is the same moment, farther
            than max_lag is not compared (bounds the cost).
        smooth: blocks a match must last along the diagonal.
        threshold: cosine similarity above which two blocks are the same material.
        gap: lags; a run of matching lags broken for fewer than this many is still one take.

    Returns:
        context : torch.Tensor [shape=(N_STRUCTURE, T)], float32; zeros for a recording
            shorter than two blocks or than min_lag
    """
    t = mel.shape[1]
    out = torch.zeros(N_STRUCTURE, t, device=mel.device)
    nb = t // block
    lo, hi = max(min_lag // block, 1), min(max_lag // block, nb - 1)
    if nb < 2 or hi < lo:
        return out
    level = _smooth(block_means(mel, block).mean(1)[None], smooth)[0]
    v = block_means(mel - mel.mean(0, keepdim=True), block)
    past = diagonal_similarity(v, lo, hi, smooth)
    feats = []
    for sim in (past, looking_ahead(past, lo)):
        takes, take_share, own_share, best = _earlier_takes(sim, threshold, gap)
        feats += [takes.clamp(max=4) / 2, take_share * 8, own_share * 8, best]
    far = max_lag // block
    since, until = _quiet_distances(level, far)
    feats += [since.float() / far, until.float() / far,
              since.float() / (since + until).clamp(min=1).float()]
    return hold_blocks(_smooth(torch.stack(feats), smooth), block, t, out)
