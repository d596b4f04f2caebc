"""The RL editor's networks: a policy with three heads (type, then size and amount given
the type) and a value network, each over the observation read as a sequence of tokens.

The 882-number state is 7 beat tokens (cursor-3 .. cursor+3, 121 features each) and 3
global tokens (the 20 structure numbers of the bars ahead; the recording's 3 numbers; the
edit's 12 numbers of history, target and position). Beat tokens talk to each other through 1-D neighbourhood attention (NATTEN's
na1d when it is installed and usable, else `na1d_torch`, which gives the same output) and
to the global tokens through masked full attention. The joint (20, 5, 5) action mask is
applied head by head along the chain, so only valid joint actions are ever drawn.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..config import AT_LEAST_1, Range
from ..errors import UserError
from .actions import ACTION_DIMS, N_AMOUNTS, N_SIZES, N_TYPES
from .beat_features import N_BEAT_FEATURES
from .state import CONTEXT_BEATS, STATE_DIM, state_slice

N_BEAT_TOKENS = 2 * CONTEXT_BEATS + 1
STRUCTURE = state_slice("structure")
GLOBAL = state_slice("global")
PROGRESS = slice(state_slice("history").start, state_slice("position").stop)
N_GLOBAL_TOKENS = 3
N_HEADS_ACTION = 3          # type, size, amount: the entropy is divided by this
NEG = -1e9                  # logit of a masked choice


@dataclass
class AgentConfig:
    """Sizes of the policy and value networks.

    policy_hidden_dim: width of the policy's tokens (divisible by natten_n_heads).
    value_hidden_dim: width of the value network's tokens (divisible by natten_n_heads).
    n_layers: encoder layers of each network.
    natten_n_heads: attention heads (neighbourhood and global attention).
    natten_kernel_size: beats each beat token attends to; odd, at most 7 (the context).
    type_embed_dim: embedding of the chosen type (and size) fed to the later heads.
    use_natten: use the NATTEN package when it is installed and can run the call (on CUDA,
        or on CPU without gradients); False always uses the pure-PyTorch implementation.
    """

    policy_hidden_dim: int = 128
    value_hidden_dim: int = 64
    n_layers: int = 2
    natten_n_heads: int = 4
    natten_kernel_size: int = 5
    type_embed_dim: int = 32
    use_natten: bool = True

    LIMITS: ClassVar[dict[str, Range]] = {
        "policy_hidden_dim": AT_LEAST_1, "value_hidden_dim": AT_LEAST_1, "n_layers": AT_LEAST_1,
        "natten_n_heads": AT_LEAST_1, "natten_kernel_size": AT_LEAST_1, "type_embed_dim": AT_LEAST_1}

    def __post_init__(self):
        for name in ("policy_hidden_dim", "value_hidden_dim"):
            dim = getattr(self, name)
            if dim % self.natten_n_heads:
                raise UserError(f"agent.{name} {dim} is not divisible by agent.natten_n_heads "
                                f"{self.natten_n_heads}; use for example {self.natten_n_heads * 32}")
        k = self.natten_kernel_size
        if k % 2 == 0 or not 1 <= k <= N_BEAT_TOKENS:
            raise UserError(f"agent.natten_kernel_size {k}: must be odd and between 1 and "
                            f"{N_BEAT_TOKENS} (the beats in the context), for example 5")
        if self.n_layers < 1:
            raise UserError(f"agent.n_layers {self.n_layers}: must be at least 1")


# ---------------------------------------------------------------------------- attention

def window_starts(length: int, kernel_size: int, device=None) -> torch.Tensor:
    """First key of each query's window, as NATTEN places it: centred, shifted inward at
    the ends so that every window holds kernel_size keys. Long (length,)."""
    i = torch.arange(length, device=device)
    return (i - kernel_size // 2).clamp(0, length - kernel_size)


def na1d_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """1-D neighbourhood attention in plain PyTorch (full scores, masked to the windows).

    Args:
        q, k, v : torch.Tensor [shape=(B, L, H, D)]
        kernel_size: keys per query (odd, <= L).

    Returns:
        torch.Tensor [shape=(B, L, H, D)]
    """
    length = q.shape[1]
    start = window_starts(length, kernel_size, q.device)
    j = torch.arange(length, device=q.device)
    allowed = (j[None, :] >= start[:, None]) & (j[None, :] < start[:, None] + kernel_size)
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return torch.einsum("bhlm,bmhd->blhd", weights, v)


def na1d_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The same as na1d_torch, one query at a time over its window (slow; for tests)."""
    out = torch.empty_like(q)
    starts = window_starts(q.shape[1], kernel_size)
    for i, s in enumerate(starts.tolist()):
        keys, values = k[:, s:s + kernel_size], v[:, s:s + kernel_size]          # (B, K, H, D)
        scores = (q[:, i:i + 1] * keys).sum(-1) / math.sqrt(q.shape[-1])       # (B, K, H)
        out[:, i] = (scores.softmax(dim=1)[..., None] * values).sum(1)
    return out


def _natten():
    """natten.functional.na1d, or None when NATTEN is not installed."""
    try:
        from natten.functional import na1d
    except ImportError:
        return None
    return na1d


NATTEN_NA1D = _natten()


def natten_usable(q: torch.Tensor) -> bool:
    """Whether NATTEN can run this call: installed, and on CUDA or without gradients (on
    the CPU it has a forward pass only)."""
    return NATTEN_NA1D is not None and (q.is_cuda or not (torch.is_grad_enabled() and q.requires_grad))


def na1d(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel_size: int, *,
         use_natten: bool = True) -> torch.Tensor:
    """1-D neighbourhood attention, (B, L, H, D) -> (B, L, H, D): NATTEN when usable."""
    if use_natten and natten_usable(q):
        return NATTEN_NA1D(q.contiguous(), k.contiguous(), v.contiguous(), kernel_size=kernel_size)
    return na1d_torch(q, k, v, kernel_size)


class NeighborhoodAttention1D(nn.Module):
    def __init__(self, dim: int, n_heads: int, kernel_size: int, use_natten: bool):
        super().__init__()
        self.n_heads, self.kernel_size, self.use_natten = n_heads, kernel_size, use_natten
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, dim // self.n_heads).unbind(2)
        out = na1d(q, k, v, self.kernel_size, use_natten=self.use_natten)
        return self.proj(out.reshape(b, length, dim))


class EncoderLayer(nn.Module):
    """Neighbourhood attention among beat tokens; then masked full attention in which beat
    tokens read only the global tokens and global tokens read everything; then an MLP."""

    def __init__(self, dim: int, n_heads: int, kernel_size: int, use_natten: bool):
        super().__init__()
        self.norm_local = nn.LayerNorm(dim)
        self.local = NeighborhoodAttention1D(dim, n_heads, kernel_size, use_natten)
        self.norm_global = nn.LayerNorm(dim)
        self.globl = nn.MultiheadAttention(dim, n_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        n = N_BEAT_TOKENS + N_GLOBAL_TOKENS
        blocked = torch.zeros(n, n, dtype=torch.bool)
        blocked[:N_BEAT_TOKENS, :N_BEAT_TOKENS] = ~torch.eye(N_BEAT_TOKENS, dtype=torch.bool)
        self.register_buffer("blocked", blocked, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beats, glob = x[:, :N_BEAT_TOKENS], x[:, N_BEAT_TOKENS:]
        beats = beats + self.local(self.norm_local(beats))
        x = torch.cat([beats, glob], dim=1)
        h = self.norm_global(x)
        x = x + self.globl(h, h, h, attn_mask=self.blocked, need_weights=False)[0]
        return x + self.mlp(self.norm_mlp(x))


class StateEncoder(nn.Module):
    """(B, 882) states -> (B, dim) summary: the cursor beat's token and the global tokens
    after n_layers EncoderLayers."""

    def __init__(self, dim: int, config: AgentConfig):
        super().__init__()
        self.beat_in = nn.Linear(N_BEAT_FEATURES, dim)
        self.position = nn.Parameter(torch.zeros(N_BEAT_TOKENS, dim))
        self.structure_in = nn.Linear(STRUCTURE.stop - STRUCTURE.start, dim)
        self.global_in = nn.Linear(GLOBAL.stop - GLOBAL.start, dim)
        self.progress_in = nn.Linear(PROGRESS.stop - PROGRESS.start, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, config.natten_n_heads, config.natten_kernel_size,
                                                 config.use_natten) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Sequential(nn.Linear((1 + N_GLOBAL_TOKENS) * dim, dim), nn.GELU())
        nn.init.normal_(self.position, std=0.02)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        b = obs.shape[0]
        beats = self.beat_in(obs[:, :N_BEAT_TOKENS * N_BEAT_FEATURES].view(b, N_BEAT_TOKENS, -1))
        glob = torch.stack([self.structure_in(obs[:, STRUCTURE]), self.global_in(obs[:, GLOBAL]),
                            self.progress_in(obs[:, PROGRESS])], 1)
        x = torch.cat([beats + self.position, glob], dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return self.out(torch.cat([x[:, CONTEXT_BEATS], x[:, N_BEAT_TOKENS:].flatten(1)], 1))


# ---------------------------------------------------------------------------- heads

def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log p over the allowed choices (masked ones get about -1e9)."""
    return logits.masked_fill(~mask, NEG).log_softmax(dim=-1)


def entropy_of(logp: torch.Tensor) -> torch.Tensor:
    return -(logp.exp() * logp).sum(-1)


def _mean_allowed(logp: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Mean of log p over each row's allowed choices."""
    return torch.where(allowed, logp, 0.0).sum(-1) / allowed.sum(-1).clamp(min=1)


def _pick(logp: torch.Tensor, deterministic: bool) -> torch.Tensor:
    return logp.argmax(-1) if deterministic else torch.multinomial(logp.exp(), 1).squeeze(-1)


@dataclass
class PolicyOutput:
    """What the policy says about a batch of states and actions.

    actions: (B, 3) long; log_prob: (B,) of the joint action; entropy: (B,) the three
    heads' entropies (size and amount given the chosen type and size) summed and divided by
    3; head_entropy: (B, 3); features: (B, dim) the encoder's summary; uniform_log_prob:
    (B,) the sum over the heads of the mean log-probability of the allowed choices (for
    label smoothing: the log-likelihood of a uniform pick at each head, along the path of
    the chosen type and size).
    """

    actions: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    head_entropy: torch.Tensor
    features: torch.Tensor
    uniform_log_prob: torch.Tensor


class PolicyNetwork(nn.Module):
    """pi(type) pi(size | type) pi(amount | type, size) over the encoded state, plus the
    auxiliary heads (tempo, energy, phrase, mel) on the same encoding.

    n_mels: mel bands of the mel auxiliary head, the analysis grid's (FeatureParams.n_mels).
    """

    def __init__(self, config: AgentConfig, *, n_mels: int):
        super().__init__()
        d, e = config.policy_hidden_dim, config.type_embed_dim
        self.encoder = StateEncoder(d, config)
        self.type_head = nn.Linear(d, N_TYPES)
        self.type_embed = nn.Embedding(N_TYPES, e)
        self.size_embed = nn.Embedding(N_SIZES, e)
        self.size_head = nn.Sequential(nn.Linear(d + e, d), nn.GELU(), nn.Linear(d, N_SIZES))
        self.amount_head = nn.Sequential(nn.Linear(d + 2 * e, d), nn.GELU(), nn.Linear(d, N_AMOUNTS))
        self.aux_scalar = nn.Linear(d, 3)          # tempo, energy, phrase logit
        self.aux_mel = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, n_mels))

    def forward(self, obs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor | None = None,
                *, deterministic: bool = False) -> PolicyOutput:
        """Draw (or score the given) actions.

        Args:
            obs : torch.Tensor [shape=(B, 882)]
            masks : torch.Tensor [shape=(B, 20, 5, 5)], bool, at least one True per row
            actions : torch.Tensor [shape=(B, 3)], long, or None to draw them (the most
                likely choice at each head when deterministic)
        """
        h = self.encoder(obs)
        rows = torch.arange(len(obs), device=obs.device)
        allowed_t = masks.any(-1).any(-1)
        logp_t = masked_log_softmax(self.type_head(h), allowed_t)
        t = _pick(logp_t, deterministic) if actions is None else actions[:, 0]
        et = self.type_embed(t)
        allowed_s = masks[rows, t].any(-1)
        logp_s = masked_log_softmax(self.size_head(torch.cat([h, et], 1)), allowed_s)
        s = _pick(logp_s, deterministic) if actions is None else actions[:, 1]
        allowed_a = masks[rows, t, s]
        logp_a = masked_log_softmax(self.amount_head(torch.cat([h, et, self.size_embed(s)], 1)), allowed_a)
        a = _pick(logp_a, deterministic) if actions is None else actions[:, 2]
        log_prob = logp_t[rows, t] + logp_s[rows, s] + logp_a[rows, a]
        heads = torch.stack([entropy_of(logp_t), entropy_of(logp_s), entropy_of(logp_a)], 1)
        uniform = sum(_mean_allowed(lp, ok) for lp, ok in ((logp_t, allowed_t), (logp_s, allowed_s),
                                                         (logp_a, allowed_a)))
        return PolicyOutput(torch.stack([t, s, a], 1), log_prob, heads.sum(1) / N_HEADS_ACTION, heads, h,
                            uniform)

    def aux(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Auxiliary predictions from the encoder's summary: {tempo, energy, phrase (logit):
        (B,), mel: (B, n_mels) in [0, 1]}."""
        scalars = self.aux_scalar(features)
        return {"tempo": scalars[:, 0], "energy": scalars[:, 1], "phrase": scalars[:, 2],
                "mel": torch.sigmoid(self.aux_mel(features))}


class ValueNetwork(nn.Module):
    """V(state): its own encoder and a small MLP."""

    def __init__(self, config: AgentConfig):
        super().__init__()
        d = config.value_hidden_dim
        self.encoder = StateEncoder(d, config)
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs)).squeeze(-1)


class Agent(nn.Module):
    """The policy and value networks together, with the interface editorbot.rl.ppo uses.

    n_mels: mel bands of the analysis grid the agent trains on (its mel auxiliary head).
    """

    def __init__(self, config: AgentConfig, *, n_mels: int):
        super().__init__()
        self.config = config
        self.policy = PolicyNetwork(config, n_mels=n_mels)
        self.value_net = ValueNetwork(config)

    def act(self, obs: torch.Tensor, masks: torch.Tensor, *, deterministic: bool = False):
        """(actions (B, 3), log_prob (B,), value (B,)) for a rollout step."""
        out = self.policy(obs, masks, deterministic=deterministic)
        return out.actions, out.log_prob, self.value_net(obs)

    def evaluate(self, obs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor) -> PolicyOutput:
        """The policy's view of stored actions (under the masks they were drawn with)."""
        return self.policy(obs, masks, actions)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_net(obs)

    def aux(self, out: PolicyOutput) -> dict[str, torch.Tensor]:
        return self.policy.aux(out.features)


assert ACTION_DIMS == (N_TYPES, N_SIZES, N_AMOUNTS) and STATE_DIM == STRUCTURE.start + 20 + 15
