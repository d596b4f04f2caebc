"""The fewest segments at the sample: which of the raw's identical copies each segment
plays, chosen so that the edit is explained with the fewest joins, then the fewest jumps
back (the rule path.py's docstring states), and the other copies written down as the
segment's alternatives.

Two lags play a stretch "as well" when their waveform correlations over it (fractional lags
interpolated, refine.stretch_rho) differ by at most a margin: identical copies of the
material, such as repeated bars or a false start replaying a take's opening.
"""
from __future__ import annotations

import numpy as np

from .refine import EDGE_S_SAMPLES, Run, measure_lag, stretch_rho

PROBE_S_SAMPLES = 66150  # 3 s at 22050 Hz: the first look at whether two lags play alike


def merge_equivalent(runs: list[Run], y_edit: np.ndarray, y_raw: np.ndarray,
                     margin: float) -> list[Run]:
    """Join neighbouring segments when one's lag plays the other's stretch as well as its
    own (within `margin` of waveform correlation): the raw holds the same audio there
    (repeated bars, a false start replaying a take's opening), and the editor is taken to
    have carried straight on rather than jumped to an identical copy. The earlier
    segment's lag is tried first: carrying on beats jumping."""
    out = [r for r in runs if r.end > r.start]
    i = 0
    while i < len(out) - 1:
        a, b = out[i], out[i + 1]
        if a.lag is None or b.lag is None or abs(a.lag - b.lag) < 1.0:
            i += 1
            continue
        if _plays_as_well(y_edit, y_raw, b, a.lag, margin, probe=_near_end(b, True)) is not None:
            a.end = b.end
            del out[i + 1]
            continue
        if _plays_as_well(y_edit, y_raw, a, b.lag, margin, probe=_near_end(a, False)) is not None:
            b.start = a.start
            del out[i]
            i = max(i - 1, 0)
            continue
        i += 1
    return out


def _plays_as_well(y_edit: np.ndarray, y_raw: np.ndarray, run: Run, lag: float, margin: float,
                   *, probe: tuple[int, int], own: dict | None = None) -> float | None:
    """Whether `lag` plays the run's stretch as well as the run's own lag does (waveform
    correlation within `margin`, fractional lags interpolated): first on the edit samples
    `probe`, a short part where most candidates fail at once, then on the whole stretch.
    Returns the correlation over the whole stretch when it does, else None. `own` keeps
    the run's own correlations between calls (one run, many candidates)."""
    own = {} if own is None else own
    rho = None
    for lo, hi in (probe, (run.start, run.end)):
        if (lo, hi) not in own:
            own[(lo, hi)] = stretch_rho(y_edit, y_raw, lo, hi, run.lag)
        rho = stretch_rho(y_edit, y_raw, lo, hi, lag)
        if not rho >= own[(lo, hi)] - margin:
            return None
    return rho


def _near_end(run: Run, at_start: bool) -> tuple[int, int]:
    """The first (or last) PROBE_S_SAMPLES of a run."""
    if at_start:
        return run.start, min(run.end, run.start + PROBE_S_SAMPLES)
    return max(run.start, run.end - PROBE_S_SAMPLES), run.end


def find_copies(run: Run, y_edit: np.ndarray, y_raw: np.ndarray, copies: np.ndarray, *,
                hop: int, block_frames: int, search: int, window: int, margin: float,
                limit: int = 64) -> list[tuple[float, float]]:
    """Other lags that play the run's stretch as well as its own: offsets the fingerprint
    votes found in two or more of the run's blocks (the `limit` found in most), each
    measured to the sample and kept when its waveform correlation, on the middle `window`
    samples and over the whole stretch, is within `margin` of the run's own.

    Args:
        copies : np.ndarray [shape=(n, 2)], (block, offset) pairs sorted by block
            (fingerprint.Candidates.copies)

    Returns:
        [(lag, rho)], best first
    """
    if run.lag is None or not np.isfinite(run.rho):
        return []
    b0 = max(run.start, 0) // hop // block_frames
    b1 = max(run.end - 1, 0) // hop // block_frames
    lo, hi = np.searchsorted(copies[:, 0], [b0, b1 + 1])
    if hi <= lo:
        return []
    blocks, offs = copies[lo:hi, 0], copies[lo:hi, 1]
    own = run.lag / hop
    order = np.argsort(offs, kind="stable")
    offs, blocks = offs[order], blocks[order]
    # Offsets a frame apart are one place; count the blocks each place is found in.
    cluster = np.concatenate([[0], np.cumsum(np.diff(offs) > 1)])
    n_blocks = len(np.unique(blocks))
    places = []
    for c in range(int(cluster[-1]) + 1):
        sel = cluster == c
        centre = float(np.median(offs[sel]))
        cover = len(np.unique(blocks[sel]))
        if abs(centre - own) > 2 and cover >= min(2, n_blocks):
            places.append((cover, centre))
    places.sort(key=lambda p: -p[0])
    edge = min(EDGE_S_SAMPLES, (run.end - run.start) // 4)
    middle = (run.start + run.end) // 2
    probe = (max(run.start, middle - window // 2), min(run.end, middle + window // 2))
    found, own = [], {}
    for _, centre in places[:limit]:
        lag, _ = measure_lag(y_edit, y_raw, run.start + edge, run.end - edge, centre * hop,
                             search, window)
        rho = _plays_as_well(y_edit, y_raw, run, lag, margin, probe=probe, own=own)
        if rho is not None:
            found.append((lag, rho))
    return sorted(found, key=lambda a: -a[1])


def choose_copies(runs: list[Run], *, back_extra: float) -> list[Run]:
    """Of the places that play each run equally well (its lag and its alternatives),
    choose those that explain the edit with the fewest joins, then the fewest jumps back
    (a dynamic programme over the runs; a join costs 1, a jump back 1 + back_extra, and
    keeping the path's own lag wins ties). Neighbours that end up on one lag are merged,
    keeping the alternatives both share."""
    tol = 1.0
    chain = [i for i, r in enumerate(runs) if r.lag is not None]
    if not chain:
        return runs
    options = [[runs[i].lag] + [a for a, _ in runs[i].alternatives] for i in chain]
    cost = [np.array([0.0] + [1e-3] * (len(o) - 1)) for o in options]
    came = [np.zeros(len(o), np.int64) for o in options]
    for k in range(1, len(chain)):
        prev, cur = runs[chain[k - 1]], runs[chain[k]]
        adjacent = chain[k] == chain[k - 1] + 1
        a = np.array(options[k - 1])[:, None]
        b = np.array(options[k])[None, :]
        back = (cur.start + b) < (prev.end + a) - tol
        step = 1.0 + back_extra * back
        if adjacent:
            step = np.where(np.abs(a - b) < tol, 0.0, step)
        total = cost[k - 1][:, None] + step
        came[k] = np.argmin(total, axis=0)
        cost[k] = total[came[k], np.arange(total.shape[1])] + cost[k]
    pick = [0] * len(chain)
    pick[-1] = int(np.argmin(cost[-1]))
    for k in range(len(chain) - 1, 0, -1):
        pick[k - 1] = int(came[k][pick[k]])
    for k, i in enumerate(chain):
        run = runs[i]
        if pick[k]:
            lag, rho = run.alternatives[pick[k] - 1]
            others = [(run.lag, rho)] + [alt for j, alt in enumerate(run.alternatives) if j != pick[k] - 1]
            run.lag, run.alternatives = lag, others
    out: list[Run] = []
    for run in runs:
        prev = out[-1] if out else None
        if prev is not None and prev.lag is not None and run.lag is not None \
                and abs(prev.lag - run.lag) < tol and prev.end == run.start:
            prev.end = run.end
            prev.alternatives = [(lag, min(rho, r2)) for lag, rho in prev.alternatives
                                 for l2, r2 in run.alternatives if abs(lag - l2) < tol]
            continue
        out.append(run)
    return out
