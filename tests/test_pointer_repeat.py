"""The pointer network's repeat context: known answers on a mel built from repeated blocks."""
from __future__ import annotations

import numpy as np
import torch

from editorbot.pointer.model import repeat_context

BLOCK, SMOOTH = 8, 4


def _mel(parts: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))


def test_a_section_played_again_matches_its_first_take_and_nothing_else():
    rng = np.random.default_rng(0)
    verse = rng.random((32, 40 * BLOCK))
    other = [rng.random((32, 40 * BLOCK)) for _ in range(2)]
    # verse, something else, the verse again (slightly different playing), something else
    mel = _mel([verse, other[0], verse + 0.05 * rng.random(verse.shape), other[1]])
    ctx = repeat_context(mel, block=BLOCK, min_lag=10 * BLOCK, max_lag=200 * BLOCK, smooth=SMOOTH)
    first, second = slice(4 * BLOCK, 36 * BLOCK), slice(84 * BLOCK, 116 * BLOCK)
    unique = [slice(44 * BLOCK, 76 * BLOCK), slice(124 * BLOCK, 156 * BLOCK)]
    assert ctx.shape == (2, mel.shape[1])
    assert float(ctx[0, second].min()) > 0.9  # the second take has been heard before
    assert float(ctx[1, first].min()) > 0.9  # the first take comes back
    assert float(ctx[0, first].max()) < 0.5  # nothing earlier sounds like the first take
    assert float(ctx[1, second].max()) < 0.5  # nor later like the second
    for part in unique:
        assert float(ctx[:, part].max()) < 0.5


def test_no_match_beyond_max_lag_and_short_input():
    rng = np.random.default_rng(1)
    verse = rng.random((16, 20 * BLOCK))
    mel = _mel([verse, rng.random((16, 100 * BLOCK)), verse])
    far = repeat_context(mel, block=BLOCK, min_lag=BLOCK, max_lag=50 * BLOCK, smooth=SMOOTH)
    near = repeat_context(mel, block=BLOCK, min_lag=BLOCK, max_lag=200 * BLOCK, smooth=SMOOTH)
    last = slice(124 * BLOCK, 136 * BLOCK)
    assert float(near[0, last].min()) > 0.9
    assert float(far[0, last].max()) < 0.5  # 120 blocks back is beyond the lookback
    tiny = repeat_context(mel[:, :BLOCK + 3], block=BLOCK, min_lag=BLOCK, max_lag=50 * BLOCK,
                          smooth=SMOOTH)
    assert torch.equal(tiny, torch.full((2, BLOCK + 3), -1.0))  # one block: nothing to compare
