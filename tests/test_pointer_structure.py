"""Structure context: known take counts and quiet distances on mels built from repeated
parts, and a keep head that learns "drop the second take" with it and cannot without it."""
import numpy as np
import pytest
import torch

from editorbot.pointer.config import ModelConfig
from editorbot.pointer.model import PointerNet
from editorbot.pointer.structure import N_STRUCTURE, structure_context

BLOCK, SMOOTH, GAP = 8, 2, 3
N_MELS = 16
SETTINGS = dict(block=BLOCK, smooth=SMOOTH, threshold=0.6, gap=GAP)


def _part(rng: np.random.Generator, n_blocks: int, bar: int = 0) -> np.ndarray:
    """A part: a different spectrum every block, held for the block's frames; with `bar`, a
    bar of that many blocks played over and over (a part repeats itself within a take)."""
    spectra = rng.uniform(0.3, 0.9, (N_MELS, bar or n_blocks))
    return np.repeat(np.tile(spectra, (1, n_blocks // len(spectra.T))), BLOCK, axis=1)


def _again(part: np.ndarray, rng: np.random.Generator, louder: float = 0.0) -> np.ndarray:
    """The part played again: a little noise, and `louder` more level in every band."""
    return part + louder + 0.03 * rng.standard_normal(part.shape)


def _quiet(n_blocks: int) -> np.ndarray:
    return np.full((N_MELS, n_blocks * BLOCK), 0.02)


def _context(parts: list[np.ndarray], **settings) -> np.ndarray:
    mel = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32))
    return structure_context(mel, **{**SETTINGS, **settings}).numpy()


def _middle(ctx: np.ndarray, start_block: int, n_blocks: int) -> np.ndarray:
    """The channels over the inner blocks of a stretch (smoothing blurs its edges)."""
    return ctx[:, (start_block + 2) * BLOCK:(start_block + n_blocks - 2) * BLOCK]


@pytest.mark.parametrize("gap", [GAP, GAP + 1])  # an even gap closes holes as well
def test_takes_before_and_after_are_counted_and_a_louder_take_still_matches(gap):
    rng = np.random.default_rng(0)
    a, b, c = (_part(rng, 12, bar=2) for _ in range(3))  # the own bars match 4 blocks back
    # verse, chorus, verse again (louder), chorus again, solo, chorus a third time
    song = [a, b, _again(a, rng, louder=0.08), _again(b, rng), c, _again(b, rng, louder=0.05)]
    ctx = _context([_quiet(10)] + song + [_quiet(10)], min_lag=4 * BLOCK, max_lag=100 * BLOCK,
                   gap=gap)
    assert ctx.shape == (N_STRUCTURE, (10 + 6 * 12 + 10) * BLOCK)
    # (takes before, takes after) of each section; channels 0 and 4 hold them / 2
    expected = [(0, 1), (0, 2), (1, 0), (1, 1), (0, 0), (2, 0)]
    for k, (before, after) in enumerate(expected):
        m = _middle(ctx, 10 + 12 * k, 12)
        np.testing.assert_allclose(m[0] * 2, before, err_msg=f"section {k}")
        np.testing.assert_allclose(m[4] * 2, after, err_msg=f"section {k}")
        if before:
            assert m[3].min() > 0.8, (k, m[3].min())  # best match in an earlier take
        else:
            assert m[3].max() == -1.0, k              # no earlier take at all


def test_takes_nearer_than_min_lag_or_farther_than_max_lag_do_not_count():
    rng = np.random.default_rng(1)
    a = _part(rng, 12)
    mel = [a, _part(rng, 40), _again(a, rng)]       # the second take starts 52 blocks later
    far = _context(mel, min_lag=4 * BLOCK, max_lag=30 * BLOCK)
    near = _context(mel, min_lag=60 * BLOCK, max_lag=100 * BLOCK)
    seen = _context(mel, min_lag=4 * BLOCK, max_lag=100 * BLOCK)
    for ctx, takes in ((far, 0), (near, 0), (seen, 1)):
        np.testing.assert_allclose(_middle(ctx, 52, 12)[0] * 2, takes)


def test_quiet_stretches_place_a_moment_in_its_song():
    rng = np.random.default_rng(2)
    song = _part(rng, 100)
    ctx = _context([_quiet(20), song, _quiet(20)], min_lag=4 * BLOCK, max_lag=200 * BLOCK)
    far = 200
    for block in (30, 70, 110):                     # 10, 50 and 90 blocks into the song
        since, until, share = ctx[8:, block * BLOCK]
        into = block - 20
        assert abs(since * far - into) <= 2, (block, since * far)
        assert abs(until * far - (100 - into)) <= 2, (block, until * far)
        assert abs(share - into / 100) < 0.03, (block, share)


def test_a_short_recording_gives_zeros():
    mel = torch.rand(N_MELS, 3 * BLOCK)
    ctx = structure_context(mel, min_lag=4 * BLOCK, max_lag=100 * BLOCK, **SETTINGS)
    assert ctx.shape == (N_STRUCTURE, 3 * BLOCK) and not ctx.any()


def test_structure_channels_ignore_padding():
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, structure_context=True, repeat_block=BLOCK,
                      repeat_min_lag=4 * BLOCK, repeat_max_lag=100 * BLOCK, repeat_smooth=SMOOTH)
    model = PointerNet(cfg).eval()
    mel = torch.rand(2, N_MELS, 400)
    lengths = torch.tensor([203, 400])
    mel[0, :, 203:] = 0
    batch = model._structure_channels(mel, lengths)
    alone = model._structure_channels(mel[:1, :, :203], lengths[:1])
    torch.testing.assert_close(batch[0, :, :203], alone[0])
    assert batch[0, :, 203:].abs().max() == 0 and alone.abs().max() > 0


SECTION = 6  # blocks per section in the keep rule below
N_SECTIONS = 8


def _takes_recording(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sections of three parts in random order, each part's sound new in every recording.
    The editor keeps the first take of each part and drops every later one."""
    parts = [_part(rng, SECTION) for _ in range(3)]
    order = rng.integers(0, 3, N_SECTIONS)
    seen, mels, keep = set(), [], []
    for p in order:
        mels.append(_again(parts[p], rng))
        keep.append(p not in seen)
        seen.add(int(p))
    mel = np.concatenate(mels, axis=1).astype(np.float32)
    keep = np.repeat(np.array(keep, np.float32), SECTION * BLOCK)
    return torch.from_numpy(mel), torch.from_numpy(keep)


def _keep_accuracy(structure: bool, steps: int = 100) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, conv_kernel=3, stride=1,
                      n_global=4, max_delta=4, n_jump_buckets=4, decoder_layers=1, dropout=0.0,
                      structure_context=structure, repeat_context=False, section_context=0,
                      repeat_block=BLOCK, repeat_min_lag=2 * BLOCK,
                      repeat_max_lag=N_SECTIONS * SECTION * BLOCK, repeat_smooth=SMOOTH,
                      structure_gap=GAP)
    model = PointerNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t = N_SECTIONS * SECTION * BLOCK
    for _ in range(steps):
        mel, keep = map(torch.stack, zip(*[_takes_recording(rng) for _ in range(4)]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model.encode(mel, torch.full((4,), t)).keep, keep)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    mel, keep = map(torch.stack, zip(*[_takes_recording(np.random.default_rng(99 + i))
                                       for i in range(16)]))
    with torch.no_grad():
        pred = model.encode(mel, torch.full((16,), t)).keep > 0
    return float((pred == (keep > 0.5)).float().mean())


@pytest.mark.parametrize("structure, lo, hi", [(True, 0.95, 1.01), (False, 0.0, 0.8)])
def test_keep_head_drops_second_takes_only_with_structure_context(structure, lo, hi):
    # Without it the encoder hears a part but not whether the part was played before.
    acc = _keep_accuracy(structure)
    assert lo < acc < hi, acc
