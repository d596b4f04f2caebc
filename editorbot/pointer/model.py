"""The pointer network: for each edit frame, which raw frame to copy.

A linear-attention encoder (ELU+1 feature map, O(T) time and memory) reads the whole raw
mel; 64 global tokens summarise it. The decoder builds one query per output step from the
encoder at the expected raw position (previous pointer + 1) and conditioning features,
attends to a window around that position plus the global tokens, and predicts: a delta in
[-max_delta, +max_delta] from the expected position; whether to leave the run instead
(use_jump); where to then: any raw frame farther away (a content score plus a log-spaced
distance prior, both directions) or the end of the edit (the stop head), in one softmax;
and the edit op of the frame.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..checkpoint import load_state
from ..edits import Op
from .config import ModelConfig
from .structure import (N_STRUCTURE, block_means, diagonal_similarity, hold_blocks,
                        looking_ahead, structure_context)

N_STEMS = 4  # drums, bass, vocals, other
N_COND = 15  # conditioning features per output step, see data.History
# The [0, 1] mel (dB + 80) / 80 goes in as (mel - MEL_CENTER) * MEL_SCALE, about zero mean
# and unit spread: a first layer fed values of 0.1 to 0.9 learns several times slower.
MEL_CENTER = 0.3
MEL_SCALE = 4.0
KEEP_SOURCES = ("model", "model+structure")  # PointerNet.keep_source; the checkpoint's keep_source
SKIP_UNIT = 100.0  # frames: a jump over this much unplayed keepable audio costs skip_gain


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0: the kernel feature map of linear attention."""
    return F.elu(x) + 1.0


@torch.no_grad()
def repeat_context(mel: torch.Tensor, *, block: int, min_lag: int, max_lag: int,
                   smooth: int) -> torch.Tensor:
    """How closely each moment of one recording repeats earlier and later material.

    The mel is averaged over blocks of `block` frames; each block's bands are centred on the
    recording's mean and the block normalised, so that two blocks compare by cosine. For every
    lag from min_lag to max_lag frames (in whole blocks) the similarity of each block with the
    block `lag` earlier is averaged over `smooth` blocks along the diagonal: a repeat is a
    stretch that matches for seconds, not one chord. Then, per block, the best match at any lag
    in the past and in the future. Cost and memory are linear in T (the lags are bounded).

    Args:
        mel : torch.Tensor [shape=(C, T)], one recording's mel (no padding)

    Returns:
        context : torch.Tensor [shape=(2, T)], float32 in [-1, 1]: best match with earlier
            material, best match with later material (-1 where there is none within max_lag)
    """
    t = mel.shape[1]
    nb = t // block
    out = torch.full((2, t), -1.0, device=mel.device)
    lo, hi = max(min_lag // block, 1), min(max_lag // block, nb - 1)
    if nb < 2 or hi < lo:
        return out
    sim = diagonal_similarity(block_means(mel, block), lo, hi, smooth)
    both = torch.stack([sim.max(0).values, looking_ahead(sim, lo).max(0).values])
    return hold_blocks(both, block, t, out)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     key_mask: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Non-causal linear attention, out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j).

    O(T) time and memory: phi(K)^T V is (d, d) per head, whatever T is. Computed in float32.

    Args:
        q, k : torch.Tensor [shape=(B, H, T, d)]
        v : torch.Tensor [shape=(B, H, T, e)]
        key_mask : torch.Tensor [shape=(B, T)], bool, True where a key is real (not padding)

    Returns:
        out : torch.Tensor [shape=(B, H, T, e)]
    """
    q, k, v = elu_feature_map(q.float()), elu_feature_map(k.float()), v.float()
    if key_mask is not None:
        k = k * key_mask[:, None, :, None].to(k.dtype)
    kv = torch.einsum("bhtd,bhte->bhde", k, v)
    z = k.sum(dim=2)
    num = torch.einsum("bhtd,bhde->bhte", q, kv)
    den = torch.einsum("bhtd,bhd->bht", q, z).unsqueeze(-1)
    return num / (den + eps)


class EncoderLayer(nn.Module):
    """Pre-norm: linear self-attention, a depthwise convolution over time, a feed-forward."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.norm_attn = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.norm_conv = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, cfg.conv_kernel, padding=cfg.conv_kernel // 2, groups=d)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(),
                                nn.Linear(cfg.ff_mult * d, d))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).view(b, t, 3, self.n_heads, d // self.n_heads).unbind(2)
        att = linear_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)
        x = x + self.drop(self.out(att.transpose(1, 2).reshape(b, t, d).to(x.dtype)))
        h = self.norm_conv(x) * mask[..., None].to(x.dtype)
        x = x + self.drop(self.conv(h.transpose(1, 2)).transpose(1, 2))
        x = x + self.drop(self.ff(self.norm_ff(x)))
        return x * mask[..., None].to(x.dtype)


def recording_block_means(x: torch.Tensor, lengths: torch.Tensor, block: int) -> torch.Tensor:
    """(B, NB, C) float32: x (B, C, T) averaged over blocks of `block` frames of each
    recording's own frames (a last partial block over the frames it has; zero past the end)."""
    b, c, t = x.shape
    nb = -(-t // block)
    own = (torch.arange(t, device=x.device)[None, :] < lengths[:, None].to(x.device))[:, None, :]
    sums = F.pad(x.float() * own, (0, nb * block - t)).view(b, c, nb, block).sum(-1).transpose(1, 2)
    starts = torch.arange(nb, device=x.device)[None, :] * block
    counts = (lengths[:, None].to(x.device) - starts).clamp(min=0, max=block)
    return sums / counts.clamp(min=1)[..., None]


def _gru_over_blocks(embed: nn.Module, gru: nn.GRU, blocks: torch.Tensor,
                     n_blocks: torch.Tensor) -> torch.Tensor:
    """A bidirectional GRU over each recording's own blocks (padding never enters), in float32:
    (B, NB, C) -> (B, NB, 2 x hidden), zero past each recording's end."""
    n_blocks = n_blocks.clamp(min=1).cpu()
    with torch.autocast(device_type=blocks.device.type, enabled=False):
        packed = nn.utils.rnn.pack_padded_sequence(embed(blocks.float()), n_blocks, batch_first=True,
                                                   enforce_sorted=False)
        out, _ = gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=blocks.shape[1])
    return out


class Encoded:
    """What the decoder reads about the raw recordings (a batch of B).

    mem : (B, T, D) per-frame memory; kv : per decoder layer (B, T, 2D) keys and values;
    delta_keys, jump_keys : (B, T, Dk); keep : (B, T) keep-head logits (None without a
    keep head); globals_ : (B, G, D); lengths : (B,) frames; keep_structure : (B, T) the
    structure keep GRU's logits (None without one, and in training), added into keep when
    the model's keep_source is 'model+structure'.
    """

    def __init__(self, mem, kv, delta_keys, jump_keys, keep, globals_, lengths, keep_structure=None):
        self.mem, self.kv, self.delta_keys, self.jump_keys = mem, kv, delta_keys, jump_keys
        self.keep, self.globals_, self.lengths = keep, globals_, lengths
        self.keep_structure = keep_structure

    def with_keep(self, keep: torch.Tensor) -> "Encoded":
        """The same encoding with other keep logits."""
        return Encoded(self.mem, self.kv, self.delta_keys, self.jump_keys, keep, self.globals_,
                       self.lengths, self.keep_structure)


class PointerNet(nn.Module):
    """Encoder over the raw mel and a step decoder over output frames."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
        if cfg.stride not in (1, 2, 4):
            raise ValueError(f"stride {cfg.stride}: must be 1, 2 or 4")
        self.cfg = cfg
        d = cfg.d_model
        self.d_key = max(d // 2, 16)
        in_ch = (cfg.n_mels * (1 + N_STEMS * cfg.use_stems) + 2 * cfg.repeat_context
                 + N_STRUCTURE * cfg.structure_context)
        # Full-rate front end: pointwise projection, depthwise conv over time, pointwise mix.
        self.front = nn.Sequential(nn.Conv1d(in_ch, d, 1), nn.GELU(),
                                   nn.Conv1d(d, d, 5, padding=2, groups=d), nn.Conv1d(d, d, 1))
        if cfg.section_context:
            # Reads the input channels themselves (block means: a section is told by its
            # sound and its repeat and structure channels, and a keep-only pretraining can
            # run on blocks alone, see train.pretrain_section_keep).
            self.section_in = nn.Sequential(nn.Linear(in_ch, d), nn.GELU())
            self.section_gru = nn.GRU(d, cfg.section_context, batch_first=True, bidirectional=True)
            # Starts silent (zero output layer): training opens it as far as it helps.
            self.section_out = nn.Linear(2 * cfg.section_context, d)
            # And straight into the keep logit: what an editor keeps is decided by section.
            self.section_keep = nn.Linear(2 * cfg.section_context, 1) if cfg.keep_head else None
            for layer in (self.section_out, self.section_keep):
                if layer is not None:
                    nn.init.zeros_(layer.weight)
                    nn.init.zeros_(layer.bias)
        else:
            self.section_in = self.section_gru = self.section_out = self.section_keep = None
        self.n_context = 2 * cfg.repeat_context + N_STRUCTURE * cfg.structure_context
        if cfg.structure_keep and cfg.keep_head and self.n_context:
            w = cfg.structure_keep
            self.structure_keep_in = nn.Sequential(nn.Linear(self.n_context, 2 * w), nn.GELU())
            self.structure_keep_gru = nn.GRU(2 * w, w, batch_first=True, bidirectional=True)
            self.structure_keep_out = nn.Linear(2 * w, 1)
            nn.init.zeros_(self.structure_keep_out.weight)  # untrained, it says nothing
            nn.init.zeros_(self.structure_keep_out.bias)
        else:
            self.structure_keep_in = self.structure_keep_gru = self.structure_keep_out = None
        # Which logit plans what to keep and scores jump targets: 'model' (the keep head and
        # the section GRU's) or 'model+structure' (structure_keep's added); the checkpoint's
        # keep_source.
        self.keep_source = KEEP_SOURCES[0]
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.enc_norm = nn.LayerNorm(d)
        self.coarse_out = nn.Linear(d, d)
        self.mem_norm = nn.LayerNorm(d)
        self.global_embed = nn.Parameter(torch.randn(cfg.n_global, d) * 0.02)
        self.global_mix = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout,
                                                     batch_first=True, norm_first=True)
        # Decoder.
        self.cond = nn.Sequential(nn.Linear(N_COND, d), nn.GELU(), nn.Linear(d, d))
        self.dec_kv = nn.ModuleList(nn.Linear(d, 2 * d) for _ in range(cfg.decoder_layers))
        self.dec_norm_q = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.decoder_layers))
        self.dec_q = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.decoder_layers))
        self.dec_out = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.decoder_layers))
        self.dec_norm_ff = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.decoder_layers))
        self.dec_ff = nn.ModuleList(
            nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Linear(cfg.ff_mult * d, d))
            for _ in range(cfg.decoder_layers))
        n_win = 2 * cfg.max_delta + 1
        self.rel_bias = nn.Parameter(torch.zeros(cfg.decoder_layers, cfg.n_heads, n_win + 1))
        self.drop = nn.Dropout(cfg.dropout)
        self.head_norm = nn.LayerNorm(d)
        self.delta_prior = nn.Linear(d, n_win)
        self.delta_query = nn.Linear(d, self.d_key)
        self.delta_key = nn.Linear(d, self.d_key)
        self.use_jump = nn.Linear(d, 1)
        self.stop = nn.Linear(d, 1)
        self.jump_bucket = nn.Linear(d, 2 * cfg.n_jump_buckets)
        self.jump_query = nn.Linear(d, self.d_key)
        self.jump_key = nn.Linear(d, self.d_key)
        self.op = nn.Linear(d, len(Op)) if cfg.op_head else None
        self.keep = nn.Linear(d, 1) if cfg.keep_head else None
        # Learned scalars of `jump_logits` and use_jump, initialised to priors that hold for
        # most editors (training moves them): how much the keep logit counts for a jump
        # target and against playing on; a frame played already is a 50x less likely
        # target; passing over SKIP_UNIT frames of keepable, unplayed audio costs 3 nats.
        self.keep_gain = nn.Parameter(torch.tensor([1.0, 2.0])) if cfg.keep_head else None
        self.played_gain = nn.Parameter(torch.full((), -4.0))
        self.skip_gain = nn.Parameter(torch.full((), 3.0)) if cfg.keep_head else None
        self.register_buffer("bucket_edges", torch.from_numpy(
            jump_bucket_edges(cfg.max_delta, cfg.n_jump_buckets, cfg.max_jump_frames)),
            persistent=False)
        # Training recomputes the encoder layers and the jump distributions in the backward
        # pass instead of keeping them (set per group of long raws by train.py).
        self.activation_checkpointing = False

    def structure_keep_trained(self) -> bool:
        """Whether the structure keep GRU says anything: its output layer starts at zero and
        only its own training (train.pretrain_section_keep) moves it, in this run or in the one
        whose weights this model holds."""
        return self.structure_keep_out is not None and bool(self.structure_keep_out.weight.any())

    def load_weights(self, state: dict, *, where: str) -> None:
        """Load a checkpoint's weights (checkpoint.load_state). One written before the structure
        keep GRU existed keeps this model's fresh one: its keep_source is 'model', and a run
        that starts from it trains the GRU first (train.pretrain_section_keep)."""
        fresh = {k: v for k, v in self.state_dict().items()
                 if k.startswith("structure_keep_") and k not in state}
        load_state(self, {**state, **fresh}, where=where)

    # ---------------------------------------------------------------- encoder
    def encode(self, mel: torch.Tensor, lengths: torch.Tensor) -> Encoded:
        """Encode raw mels.

        Args:
            mel : torch.Tensor [shape=(B, C, T)], C = n_mels (x 5 with stems), zero-padded
            lengths : torch.Tensor [shape=(B,)], int64 frames of each recording
        """
        cfg = self.cfg
        t = mel.shape[2]
        inputs, mask = self.input_channels(mel, lengths)
        fine = self.front(inputs).transpose(1, 2) * mask[..., None].to(mel.dtype)  # (B, T, D)
        x = fine
        section_keep = keep_structure = None
        blk = cfg.section_block
        # The structure keep GRU trains on its own (train.pretrain_section_keep): in training
        # the whole model does not run it.
        structure = self.structure_keep_gru is not None and not self.training
        blocks = (recording_block_means(inputs, lengths, blk)
                  if self.section_gru is not None or structure else None)
        if structure:
            keep_structure = self.structure_keep_logits(blocks, -(-lengths // blk)).repeat_interleave(
                blk, dim=1)[:, :t] * mask
        if self.section_gru is not None:
            out = self.section_blocks(blocks, -(-lengths // blk))
            ctx = self.section_out(out).repeat_interleave(blk, dim=1)[:, :t]
            x = x + ctx.to(x.dtype) * mask[..., None].to(x.dtype)
            if self.section_keep is not None:
                section_keep = self.section_keep(out)[..., 0].repeat_interleave(blk, dim=1)[:, :t] * mask
        s = cfg.stride
        if s > 1:
            pad = (-t) % s
            x = F.avg_pool1d(F.pad(x.transpose(1, 2), (0, pad)), s).transpose(1, 2)
            cmask = F.max_pool1d(F.pad(mask[:, None].float(), (0, pad)), s)[:, 0] > 0
        else:
            cmask = mask
        for layer in self.layers:
            if self.activation_checkpointing and self.training:
                x = checkpoint(layer, x, cmask, use_reentrant=False)
            else:
                x = layer(x, cmask)
        x = self.enc_norm(x)
        globals_ = self._global_tokens(x, cmask)
        coarse = self.coarse_out(x)
        if s > 1:
            coarse = coarse.repeat_interleave(s, dim=1)[:, :t]
        mem = self.mem_norm(fine + coarse) * mask[..., None].to(fine.dtype)
        kv = [proj(mem) for proj in self.dec_kv]
        keep = self.keep(mem).squeeze(-1).float() if self.keep is not None else None
        if section_keep is not None:
            keep = keep + section_keep
        if self.keep_source == KEEP_SOURCES[1] and keep_structure is not None:
            keep = keep + keep_structure
        return Encoded(mem, kv, self.delta_key(mem), self.jump_key(mem), keep, globals_, lengths,
                       keep_structure)

    def input_channels(self, mel: torch.Tensor,
                       lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the encoder reads: the centred, scaled mel (zero on padding, as the convs
        pad) and the repeat and structure channels when on.

        No absolute position goes in: a frame is what it sounds like and what surrounds it
        (with equal-length training recordings, "the frame at 60% of the recording" is a
        name the model can memorise targets by instead of learning what the editor hears).

        Returns:
            inputs : torch.Tensor [shape=(B, C_in, T)]
            mask : torch.Tensor [shape=(B, T)], bool, True on each recording's own frames
        """
        cfg = self.cfg
        mask = torch.arange(mel.shape[2], device=mel.device)[None, :] < lengths[:, None]
        x = (mel - MEL_CENTER) * MEL_SCALE * mask[:, None, :].to(mel.dtype)
        if cfg.repeat_context:
            x = torch.cat([x, self._repeat_channels(mel, lengths).to(x.dtype)], dim=1)
        if cfg.structure_context:
            x = torch.cat([x, self._structure_channels(mel, lengths).to(x.dtype)], dim=1)
        return x, mask

    def _repeat_channels(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """repeat_context of each recording's own mel (not its stems), zero on padding."""
        cfg = self.cfg
        return self._per_recording(mel, lengths, 2, lambda m: repeat_context(
            m, block=cfg.repeat_block, min_lag=cfg.repeat_min_lag, max_lag=cfg.repeat_max_lag,
            smooth=cfg.repeat_smooth))

    def _structure_channels(self, mel: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """structure_context of each recording's own mel (not its stems), zero on padding."""
        cfg = self.cfg
        return self._per_recording(mel, lengths, N_STRUCTURE, lambda m: structure_context(
            m, block=cfg.repeat_block, min_lag=cfg.repeat_min_lag, max_lag=cfg.repeat_max_lag,
            smooth=cfg.repeat_smooth, threshold=cfg.structure_threshold, gap=cfg.structure_gap))

    def _per_recording(self, mel: torch.Tensor, lengths: torch.Tensor, n_channels: int,
                       fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """fn over each recording's own mel (no stems, no padding), (B, n_channels, T), zero on padding."""
        out = torch.zeros(mel.shape[0], n_channels, mel.shape[2], device=mel.device)
        for i, n in enumerate(lengths.tolist()):
            out[i, :, :n] = fn(mel[i, :self.cfg.n_mels, :n])
        return out

    def section_blocks(self, blocks: torch.Tensor, n_blocks: torch.Tensor) -> torch.Tensor:
        """The section GRU over each recording's own blocks (padding never enters), float32.

        Args:
            blocks : torch.Tensor [shape=(B, NB, C)], block means of the input channels
                (`recording_block_means`)
            n_blocks : torch.Tensor [shape=(B,)], blocks of each recording

        Returns:
            torch.Tensor [shape=(B, NB, 2 x section_context)], zero past each recording's end
        """
        return _gru_over_blocks(self.section_in, self.section_gru, blocks, n_blocks)

    def structure_keep_logits(self, blocks: torch.Tensor, n_blocks: torch.Tensor) -> torch.Tensor:
        """(B, NB) keep logits of the structure keep GRU, which reads only the repeat and
        structure channels of the blocks (`recording_block_means` of the input channels)."""
        context = blocks[..., blocks.shape[-1] - self.n_context:]
        out = _gru_over_blocks(self.structure_keep_in, self.structure_keep_gru, context, n_blocks)
        return self.structure_keep_out(out)[..., 0]

    def _global_tokens(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean of the encoder over each of n_global equal shares of each recording."""
        b, t, d = x.shape
        g = self.cfg.n_global
        n = mask.sum(dim=1).clamp(min=1)
        idx = (torch.arange(t, device=x.device)[None, :] * g) // n[:, None]
        idx = idx.clamp(max=g - 1) + g * torch.arange(b, device=x.device)[:, None]
        w = mask.to(x.dtype)
        sums = torch.zeros(b * g, d, device=x.device, dtype=x.dtype)
        sums.index_add_(0, idx.reshape(-1), (x * w[..., None]).reshape(-1, d))
        counts = torch.zeros(b * g, device=x.device, dtype=x.dtype)
        counts.index_add_(0, idx.reshape(-1), w.reshape(-1))
        tokens = sums.view(b, g, d) / counts.view(b, g, 1).clamp(min=1)
        return self.global_mix(tokens + self.global_embed)

    # ---------------------------------------------------------------- decoder
    def decode_steps(self, enc: Encoded, rec: torch.Tensor, expected: torch.Tensor,
                     cond: torch.Tensor) -> dict[str, torch.Tensor]:
        """Head outputs for N output steps, each at its expected raw position.

        Args:
            enc: from `encode`.
            rec : torch.Tensor [shape=(N,)], int64 which recording of the batch
            expected : torch.Tensor [shape=(N,)], int64 expected raw frame (previous
                pointer + 1; may equal the recording's length when the raw ran out)
            cond : torch.Tensor [shape=(N, N_COND)], float conditioning features

        Returns:
            dict with 'query' (N, D) and logits 'delta' (N, 2W+1), out-of-range offsets at
            -inf; 'use_jump' (N,), whether the pointer leaves its run (a jump or the stop);
            'jump_bucket' (N, 2 n_jump_buckets), the distance prior of a jump, and 'stop'
            (N,), the end of the edit, both inside `jump_logits`; 'op' (N, len(Op)) when
            op_head.
        """
        cfg = self.cfg
        w = cfg.max_delta
        length = enc.lengths[rec]
        win = _Window(enc, rec, expected, w)
        here = torch.minimum(expected, length - 1).clamp(min=0)
        q = enc.mem[rec, here] + self.cond(cond.to(enc.mem.dtype))
        n = q.shape[0]
        heads, dh = cfg.n_heads, cfg.d_model // cfg.n_heads
        b, g, d = enc.globals_.shape
        glob = enc.globals_.view(b, g, heads, dh)
        in_rec = F.one_hot(rec, b).to(q.dtype)  # (N, B): which recording's globals a query sees
        scale = 1.0 / math.sqrt(dh)
        for i in range(cfg.decoder_layers):
            keys, values = enc.kv[i].chunk(2, dim=-1)
            qh = self.dec_q[i](self.dec_norm_q[i](q)).view(n, heads, dh)
            bias = self.rel_bias[i]  # (H, 2W+2): one per window offset, one for all globals
            s_win = (win.scores(keys, qh) * scale + bias[None, :, :-1]).masked_fill(
                ~win.valid[:, None, :], float("-inf"))
            s_glob = torch.einsum("nhc,bghc->nhbg", qh, glob) * scale + bias[None, :, -1:, None]
            s_glob = s_glob.masked_fill(in_rec[:, None, :, None] == 0, float("-inf")).reshape(n, heads, b * g)
            att = torch.softmax(torch.cat([s_win, s_glob], dim=-1).float(), dim=-1).to(q.dtype)
            a_win, a_glob = att[..., :2 * w + 1], att[..., 2 * w + 1:].reshape(n, heads, b, g)
            ctx = win.mix(a_win, values) + torch.einsum("nhbg,bghc->nhc", a_glob, glob)
            q = q + self.drop(self.dec_out[i](ctx.reshape(n, -1)))
            q = q + self.drop(self.dec_ff[i](self.dec_norm_ff[i](q)))
        h = self.head_norm(q)
        pointer = win.scores(enc.delta_keys, self.delta_query(h)[:, None, :])[:, 0]
        delta = self.delta_prior(h) + pointer / math.sqrt(self.d_key)
        use_jump = self.use_jump(h).squeeze(-1).float()
        if enc.keep is not None:  # leave where the editor would not keep what comes next
            use_jump = use_jump - self.keep_gain[1] * enc.keep[rec, here]
        out = {
            "query": h,
            "delta": delta.float().masked_fill(~win.valid, float("-inf")),
            "use_jump": use_jump,
            "stop": self.stop(h).squeeze(-1).float(),
            "jump_bucket": self.jump_bucket(h).float(),
        }
        if self.op is not None:
            out["op"] = self.op(h).float()
        return out

    def jump_logits(self, enc: Encoded, rec: int, query: torch.Tensor, bucket_logits: torch.Tensor,
                    stop_logit: torch.Tensor, expected: torch.Tensor, played: torch.Tensor) -> torch.Tensor:
        """Log-odds of where the pointer goes when it leaves its run, for m steps of one
        recording: every raw frame of recording `rec`, and the end of the edit.

        logit(t) = jump_key(t) . jump_query(query) / sqrt(Dk) + keep_gain * keep(t)
        + played_gain * played(t) - skip_gain * skipped(t) / SKIP_UNIT + prior(t - expected):
        what the frame is (a pointer score, and the keep head's logit: would this editor
        play it at all), whether this edit has played it already (editors who loop learn a
        positive gain, trimmers a negative one), how much keepable audio not yet played the
        jump passes over (frames expected..t-1 forward, t+1..expected backward, weighted by
        sigmoid(keep)), and how far it is (`distance_prior` of the log-spaced bucket logits,
        both directions). The end of the edit has the stop head's logit, less the cost of
        passing over everything from expected to the end. One softmax over all of them, so
        every frame competes with every other, near or far, and the edit ends where nothing
        ahead is worth a jump. Frames the delta head covers (|t - expected| <= max_delta)
        are -inf.

        Args:
            query : torch.Tensor [shape=(m, D)], the steps' 'query' outputs
            bucket_logits : torch.Tensor [shape=(m, 2 n_jump_buckets)], their 'jump_bucket'
            stop_logit : torch.Tensor [shape=(m,)], their 'stop'
            expected : torch.Tensor [shape=(m,)], int64 their expected raw frames
            played : torch.Tensor [shape=(m, n)], bool: raw frames the edit played before each step

        Returns:
            logits : torch.Tensor [shape=(m, n + 1)], float32: frames 0..n-1 of the
            recording, then (index n) the end of the edit
        """
        n = int(enc.lengths[rec])
        scores = (self.jump_query(query) @ enc.jump_keys[rec, :n].T).float() / math.sqrt(self.d_key)
        t = torch.arange(n, device=scores.device)
        offsets = t[None, :] - expected[:, None]
        logits = scores + distance_prior(offsets, bucket_logits.float(), self.bucket_edges)
        logits = logits + self.played_gain * played.float()
        stop_logit = stop_logit.float()[:, None]
        if enc.keep is not None:  # what the editor keeps is where jumps go ...
            keep = enc.keep[rec, :n]
            logits = logits + self.keep_gain[0] * keep
            # ... and what they would keep and have not played yet, they rarely pass over.
            fresh = torch.sigmoid(keep)[None, :] * (~played).float()
            before = F.pad(torch.cumsum(fresh, dim=1), (1, 0))  # before[:, t] = sum of fresh[:, :t]
            e = expected.clamp(0, n)[:, None]
            forward = before[:, 1:] - before.gather(1, e)  # frames e..t-1 (t > e)
            backward = before.gather(1, (e + 1).clamp(max=n)) - before[:, 1:]  # frames t+1..e
            skipped = torch.where(offsets > 0, forward - fresh, backward)
            logits = logits - self.skip_gain * skipped / SKIP_UNIT
            stop_logit = stop_logit - self.skip_gain * (before[:, -1:] - before.gather(1, e)) / SKIP_UNIT
        logits = logits.masked_fill(offsets.abs() <= self.cfg.max_delta, float("-inf"))
        return torch.cat([logits, stop_logit], dim=1)

    def jump_target(self, enc: Encoded, rec: int, query: torch.Tensor, bucket_logits: torch.Tensor,
                    stop_logit: torch.Tensor, expected: int, played: torch.Tensor, *,
                    allow_stop: bool = True, within: tuple[int, int] | None = None) -> tuple[int, float]:
        """Where the pointer goes when it leaves its run: the argmax of `jump_logits` (the
        distribution training fits) and its probability.

        Args:
            within: only frames lo..hi-1 (and not the end of the edit), with the probability
                renormalised over them.

        Returns:
            (frame, probability): frame n (the recording's length) is the end of the edit;
            (-1, 0.0) when nothing is allowed (no frame farther than max_delta, and no stop)
        """
        logits = self.jump_logits(enc, rec, query[None], bucket_logits[None], stop_logit.reshape(1),
                                  torch.tensor([expected], device=query.device), played[None])[0]
        if not allow_stop:
            logits[-1] = float("-inf")
        if within is not None:
            lo, hi = max(within[0], 0), min(within[1], len(logits) - 1)
            outside = torch.ones_like(logits, dtype=torch.bool)
            outside[lo:max(hi, lo)] = False
            logits = logits.masked_fill(outside, float("-inf"))
        if not torch.isfinite(logits).any():
            return -1, 0.0
        log_p = torch.log_softmax(logits, dim=-1)
        t = int(torch.argmax(log_p))
        return t, float(torch.exp(log_p[t]))


class _Window:
    """The 2W+1 raw frames around each query's expected position.

    Two ways to the same numbers: a gather of each query's window (any batch of steps), and,
    when the steps are a run (one recording, expected positions e0, e0+1, ...; what the
    decoder evaluates while the pointer runs on) and no gradient is needed, one matrix
    product against the slab of frames the run covers, read along its diagonals. The run
    avoids copying N x (2W+1) keys.
    """

    def __init__(self, enc: Encoded, rec: torch.Tensor, expected: torch.Tensor, w: int):
        n = len(expected)
        self.w, self.n = w, n
        self.run = (not torch.is_grad_enabled() and n > 1 and bool((rec == rec[0]).all())
                    and bool((expected[1:] - expected[:-1] == 1).all()))
        if self.run:
            self.r = int(rec[0])
            self.lo = int(expected[0]) - w
            self.width = n + 2 * w
            self.a = max(self.lo, 0)
            self.b = min(self.lo + self.width, int(enc.lengths[self.r]))
            slab_valid = torch.zeros(self.width, dtype=torch.bool, device=expected.device)
            slab_valid[max(self.a - self.lo, 0):max(self.b - self.lo, 0)] = True
            self.valid = slab_valid.as_strided((n, 2 * w + 1), (1, 1))
        else:
            length = enc.lengths[rec]
            pos = expected[:, None] + torch.arange(-w, w + 1, device=expected.device)
            self.valid = (pos >= 0) & (pos < length[:, None])
            self.pos = torch.minimum(pos.clamp(min=0), (length[:, None] - 1).clamp(min=0))
            self.rec = rec

    def _slab(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.width, x.shape[-1])
        if self.a < self.b:
            out[self.a - self.lo:self.b - self.lo] = x[self.r, self.a:self.b]
        return out

    def _band(self, full: torch.Tensor) -> torch.Tensor:
        """(H, N, width) contiguous -> view (H, N, 2W+1) of row i, columns i..i+2W."""
        h = full.shape[0]
        return full.as_strided((h, self.n, 2 * self.w + 1), (self.n * self.width, self.width + 1, 1))

    def scores(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Dot products of queries with the window's keys.

        Args:
            x : torch.Tensor [shape=(B, T, H * c)], keys of every frame
            q : torch.Tensor [shape=(N, H, c)]

        Returns:
            torch.Tensor [shape=(N, H, 2W+1)]
        """
        n, h, c = q.shape
        if self.run:
            full = torch.einsum("nhc,lhc->hnl", q, self._slab(x).view(self.width, h, c)).contiguous()
            return self._band(full).permute(1, 0, 2)
        k = x[self.rec[:, None], self.pos].view(n, 2 * self.w + 1, h, c)
        return torch.einsum("nhc,nkhc->nhk", q, k)

    def mix(self, att: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Attention-weighted sum of the window's values.

        Args:
            att : torch.Tensor [shape=(N, H, 2W+1)]
            x : torch.Tensor [shape=(B, T, H * c)], values of every frame

        Returns:
            torch.Tensor [shape=(N, H, c)]
        """
        n, h, _ = att.shape
        c = x.shape[-1] // h
        if self.run:
            full = att.new_zeros(h, n, self.width)
            self._band(full).copy_(att.permute(1, 0, 2))
            return torch.einsum("hnl,lhc->nhc", full, self._slab(x).view(self.width, h, c))
        v = x[self.rec[:, None], self.pos].view(n, 2 * self.w + 1, h, c)
        return torch.einsum("nhk,nkhc->nhc", att, v)


def jump_bucket_edges(max_delta: int, n_buckets: int, max_jump_frames: int) -> np.ndarray:
    """Log-spaced edges of jump distances: bucket k holds |offset| in [edges[k], edges[k+1]).

    The first edge is max_delta + 1 (smaller moves belong to the delta head); the last
    bucket also takes every distance beyond max_jump_frames.

    Returns:
        edges : np.ndarray [shape=(n_buckets + 1,)], int64, strictly increasing
    """
    lo = max_delta + 1
    edges = np.rint(np.geomspace(lo, max(max_jump_frames, lo + n_buckets), n_buckets + 1))
    edges = edges.astype(np.int64)
    for k in range(1, len(edges)):
        edges[k] = max(edges[k], edges[k - 1] + 1)
    return edges


def distance_prior(offset: torch.Tensor, values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The jump head's distance prior at signed offsets: -log |offset| (with equal values,
    every octave of distance is equally likely, so of two equally good frames the nearer
    wins) plus the values of the buckets, each at the bucket's centre (geometric mean of
    its edges), linear in log distance between two centres and flat beyond the outermost
    ones. So the prior tells near from far inside a bucket too (an editor who skips a
    passage lands on the next good frame, not on any good frame of the right order of
    distance).

    Args:
        offset : torch.Tensor [shape=(m, n)], int64, |offset| > max_delta
        values : torch.Tensor [shape=(m, 2 nb)], per jump class as in `bucket_of`
        edges : torch.Tensor [shape=(nb + 1,)], from `jump_bucket_edges`

    Returns:
        prior : torch.Tensor [shape=(m, n)], float32
    """
    nb = len(edges) - 1
    centre = 0.5 * torch.log(edges[:-1].double() * edges[1:].double()).float()
    u = torch.log(offset.abs().clamp(min=1).float())
    k = (torch.searchsorted(centre, u.reshape(-1), right=True) - 1).reshape(u.shape).clamp(0, max(nb - 2, 0))
    k1 = (k + 1).clamp(max=nb - 1)
    frac = ((u - centre[k]) / (centre[k1] - centre[k]).clamp(min=1e-6)).clamp(0, 1)
    by_distance = torch.where(offset > 0, nb + k, nb - 1 - k), torch.where(offset > 0, nb + k1, nb - 1 - k1)
    v0, v1 = values.gather(1, by_distance[0]), values.gather(1, by_distance[1])
    return v0 * (1 - frac) + v1 * frac - u


def bucket_of(offset, edges):
    """Jump class of a signed offset (|offset| > max_delta): classes 0..nb-1 go backwards
    (nb - 1 is the shortest backward bucket), nb..2nb-1 forwards (nb the shortest).

    Works on numpy arrays and torch tensors of offsets.
    """
    nb = len(edges) - 1
    if isinstance(offset, torch.Tensor):
        k = torch.searchsorted(edges.to(offset.device), offset.abs(), right=True) - 1
        k = k.clamp(0, nb - 1)
        return torch.where(offset > 0, nb + k, nb - 1 - k)
    offset = np.asarray(offset)
    k = np.clip(np.searchsorted(edges, np.abs(offset), side="right") - 1, 0, nb - 1)
    return np.where(offset > 0, nb + k, nb - 1 - k)


def bucket_offset_ranges(edges):
    """Signed offsets [lo, hi) of each jump class (numpy or torch, like `edges`).

    The outermost buckets are open-ended: their range runs to +-2^40.
    """
    big = 1 << 40
    if isinstance(edges, torch.Tensor):
        upper = torch.cat([edges[1:-1], edges.new_tensor([big])])
        lower = edges[:-1]
        lo = torch.cat([(-upper + 1).flip(0), lower])
        hi = torch.cat([(-lower + 1).flip(0), upper])
        return lo, hi
    edges = np.asarray(edges, np.int64)
    upper = np.concatenate([edges[1:-1], [big]])
    lower = edges[:-1]
    lo = np.concatenate([(-upper + 1)[::-1], lower])
    hi = np.concatenate([(-lower + 1)[::-1], upper])
    return lo, hi
