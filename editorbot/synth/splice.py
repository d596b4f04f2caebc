"""Play a raw recording along a list of segments, exactly as edits.py defines an edit.

Used to make the unmastered edit of a synthetic pair; any renderer that follows the same
convention reproduces it sample for sample outside the crossfades.
"""
from __future__ import annotations

import numpy as np

from ..edits import Edit
from ..errors import UserError


def sample_plan(edit: Edit, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each segment's raw start, length and half-crossfade (the seam before it), in samples.

    Returns:
        raw_starts, lengths, halves : np.ndarray [shape=(n_segments,)], int64
    """
    segs = edit.segments
    raw_starts = np.array([int(round(s.raw_start_s * sr)) for s in segs], np.int64)
    lengths = np.array([int(round(s.duration_s * sr)) for s in segs], np.int64)
    halves = np.array([int(round(s.crossfade_s * sr / 2)) if i else 0 for i, s in enumerate(segs)], np.int64)
    return raw_starts, lengths, halves


def splice(raw: np.ndarray, sr: int, edit: Edit) -> np.ndarray:
    """The edit's audio: segments butt-joined, crossfades centred on the seams.

    Segment k plays raw[a_k - h_k : a_k + n_k + h_(k+1)] at edit samples
    [e_k - h_k, e_k + n_k + h_(k+1)), where e_k is the sum of the earlier lengths and h_k
    half the crossfade before segment k (sin/cos equal-power weights over the 2 h_k samples
    around the seam, t = (i + 0.5) / (2 h_k)). Inside a segment, gain_db scales it, and
    fade_in_s / fade_out_s are quarter-sine ramps sin(pi / 2 * (i + 0.5) / n_fade) over the
    segment's first / last samples (the fade-out mirrored), as editorbot.render fades.

    Args:
        raw : np.ndarray [shape=(n, channels)], float32, the raw's own samples at `sr`.
        edit: segments with raw_start_s (never None here), all on `sr`'s sample grid.

    Returns:
        y : np.ndarray [shape=(sum of lengths, channels)], float32
    """
    raw_starts, lengths, halves = sample_plan(edit, sr)
    out = np.zeros((int(lengths.sum()), raw.shape[1]), np.float64)
    edit_start = 0
    for k, seg in enumerate(edit.segments):
        a, n, h_in = int(raw_starts[k]), int(lengths[k]), int(halves[k])
        h_out = int(halves[k + 1]) if k + 1 < len(edit.segments) else 0
        if a - h_in < 0 or a + n + h_out > len(raw):
            raise UserError(f"segment {k} (raw {seg.raw_start_s:.3f} s + {seg.duration_s:.3f} s) "
                            f"runs past the raw's {len(raw) / sr:.3f} s")
        env = np.full(h_in + n + h_out, 10 ** (seg.gain_db / 20), np.float64)
        n_in, n_out = int(round(seg.fade_in_s * sr)), int(round(seg.fade_out_s * sr))
        if n_in:
            env[h_in:h_in + n_in] *= np.sin(np.pi / 2 * (np.arange(n_in) + 0.5) / n_in)
        if n_out:
            env[h_in + n - n_out:h_in + n] *= np.sin(np.pi / 2 * (n_out - np.arange(n_out) - 0.5) / n_out)
        if h_in:
            env[:2 * h_in] *= np.sin(np.pi / 2 * (np.arange(2 * h_in) + 0.5) / (2 * h_in))
        if h_out:
            env[len(env) - 2 * h_out:] *= np.cos(np.pi / 2 * (np.arange(2 * h_out) + 0.5) / (2 * h_out))
        out[edit_start - h_in:edit_start + n + h_out] += raw[a - h_in:a + n + h_out] * env[:, None]
        edit_start += n
    return out.astype(np.float32)


def crossfade_mask(edit: Edit, sr: int) -> np.ndarray:
    """True at edit samples inside a crossfade, bool (sum of lengths,)."""
    _, lengths, halves = sample_plan(edit, sr)
    mask = np.zeros(int(lengths.sum()), bool)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for e, h in zip(starts, halves):
        mask[max(0, e - h):e + h] = True
    return mask
