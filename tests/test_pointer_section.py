"""The section GRU: what it adds depends on the order of far-apart material, and padding
never reaches it."""
import numpy as np
import torch

from editorbot.pointer.config import ModelConfig
from editorbot.pointer.model import PointerNet

BLOCK = 8     # frames per section block in these tests
N_BLOCKS = 48
N_MELS = 8


def _recording(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocks of three tones: one 4-block stretch of A somewhere in the middle, the rest B or
    C at random. A B block is to be kept when A came before it (a chorus after the solo),
    dropped when A is still to come. Returns the mel (N_MELS, T), the keep label of each
    frame and a mask of the B frames."""
    kinds = rng.integers(1, 3, N_BLOCKS)           # 1 = B, 2 = C
    a0 = int(rng.integers(10, N_BLOCKS - 14))
    kinds[a0:a0 + 4] = 0                            # A
    mel = np.full((N_MELS, N_BLOCKS * BLOCK), 0.1, np.float32)
    for b, k in enumerate(kinds):
        mel[2 * k:2 * k + 2, b * BLOCK:(b + 1) * BLOCK] = 0.9
    after = np.arange(N_BLOCKS) >= a0 + 4
    keep = np.repeat((kinds == 1) & after, BLOCK).astype(np.float32)
    is_b = np.repeat(kinds == 1, BLOCK)
    return torch.from_numpy(mel), torch.from_numpy(keep), torch.from_numpy(is_b)


def _keep_accuracy_on_b(section_context: int, steps: int = 120) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, conv_kernel=3, stride=1,
                      n_global=4, max_delta=4, n_jump_buckets=4, decoder_layers=1, dropout=0.0,
                      section_context=section_context, section_block=BLOCK)
    model = PointerNet(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    lengths = torch.full((4,), N_BLOCKS * BLOCK)
    for _ in range(steps):
        mel, keep, _ = map(torch.stack, zip(*[_recording(rng) for _ in range(4)]))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model.encode(mel, lengths).keep, keep)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    mel, keep, is_b = map(torch.stack, zip(*[_recording(np.random.default_rng(99 + i)) for i in range(16)]))
    with torch.no_grad():
        pred = model.encode(mel, torch.full((16,), N_BLOCKS * BLOCK)).keep > 0
    return float((pred == (keep > 0.5))[is_b].float().mean())


def test_section_gru_learns_what_came_before_and_the_encoder_alone_does_not():
    # Without order beyond its convolutions, the encoder can tell a B from a C but not
    # whether the A stretch lies before or after it: about the share of the majority answer.
    without = _keep_accuracy_on_b(0)
    with_gru = _keep_accuracy_on_b(16)
    assert with_gru > 0.95, with_gru
    assert without < 0.8, without


def test_section_context_ignores_padding():
    torch.manual_seed(0)
    cfg = ModelConfig(n_mels=N_MELS, d_model=16, n_heads=2, n_layers=1, n_global=4, max_delta=4,
                      n_jump_buckets=4, section_context=8, section_block=BLOCK)
    model = PointerNet(cfg).eval()
    torch.nn.init.normal_(model.section_out.weight)
    torch.nn.init.normal_(model.section_keep.weight)
    fine = torch.randn(2, 300, 16)
    lengths = torch.tensor([203, 300])               # 203: a last block of 3 frames
    mask = torch.arange(300)[None, :] < lengths[:, None]
    fine = fine * mask[..., None]
    with torch.no_grad():
        batch, batch_keep = model._section_context(fine, lengths, mask)
        alone, alone_keep = model._section_context(fine[:1, :203], lengths[:1], mask[:1, :203])
    torch.testing.assert_close(batch[0, :203], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch_keep[0, :203], alone_keep[0], atol=1e-5, rtol=1e-5)
    assert batch[0, 203:].abs().max() == 0 and batch_keep[0, 203:].abs().max() == 0
    assert alone.abs().max() > 0.01
