"""EditEncoder, MelDecoder and label head: raw mel (+ labels) -> keep/cut and a smooth gain.

The treatment is a gain in mel units (1 unit = top_db dB) at n_gain_bands control points
per token; it is interpolated to mel bands (for the predicted mel, raw mel + gain) and to
STFT bins (to treat audio), so one smooth time-frequency curve serves both.
"""
from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..features import FeatureParams
from .config import ModelConfig
from .labels import N_LABELS, UNKNOWN

N_CONTEXT = 3  # per-frame context: position in the recording, minutes so far, log minutes in all


def context_features(frame0: int, n_frames: int, n_total: int, frames_per_s: float) -> np.ndarray:
    """Where frames frame0 .. frame0 + n_frames - 1 sit in a recording of n_total frames.

    Returns:
        np.ndarray [shape=(n_frames, N_CONTEXT)], float32
    """
    f = frame0 + np.arange(n_frames, dtype=np.float64)
    out = np.empty((n_frames, N_CONTEXT), np.float32)
    out[:, 0] = f / max(n_total, 1)
    out[:, 1] = np.log1p(f / frames_per_s / 60.0)
    out[:, 2] = np.log1p(n_total / frames_per_s / 60.0)
    return out


def gain_basis(n_gain_bands: int, freqs_hz: np.ndarray, sr: int) -> np.ndarray:
    """Linear interpolation weights from gain control points to frequencies.

    Control points sit evenly on the (Slaney) mel scale from 0 Hz to sr / 2.

    Returns:
        np.ndarray [shape=(len(freqs_hz), n_gain_bands)], float32, rows sum to 1
    """
    points = np.linspace(0.0, librosa.hz_to_mel(sr / 2), n_gain_bands)
    where = librosa.hz_to_mel(np.asarray(freqs_hz, np.float64))
    eye = np.eye(n_gain_bands)
    return np.stack([np.interp(where, points, eye[k]) for k in range(n_gain_bands)], 1).astype(np.float32)


def mel_centers_hz(params: FeatureParams) -> np.ndarray:
    """Centre frequency of each mel band of the analysis grid (Hz, (n_mels,))."""
    fmax = params.fmax if params.fmax is not None else params.sr / 2
    return librosa.mel_frequencies(params.n_mels + 2, fmin=params.fmin, fmax=fmax)[1:-1]


def _transformer(cfg: ModelConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ff_mult * cfg.d_model,
                                       cfg.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)


class EditEncoder(nn.Module):
    """Mel projection and label embedding, combined, then a Transformer -> latent tokens."""

    def __init__(self, cfg: ModelConfig, n_mels: int):
        super().__init__()
        self.fpt = cfg.frames_per_token
        self.mel_proj = nn.Linear(n_mels * self.fpt, cfg.d_model)
        self.label_embed = nn.Embedding(N_LABELS + 1, cfg.d_model)  # + UNKNOWN
        self.context_proj = nn.Linear(N_CONTEXT, cfg.d_model)
        self.pos = nn.Parameter(torch.zeros(cfg.crop_tokens, cfg.d_model))
        self.combine = nn.Sequential(nn.Linear(2 * cfg.d_model, cfg.d_model), nn.GELU(),
                                     nn.Linear(cfg.d_model, cfg.d_model))
        self.transformer = _transformer(cfg, cfg.encoder_layers)
        self.norm = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, mel: torch.Tensor, labels: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """
        Args:
            mel : [shape=(B, n_mels, T)], T a multiple of frames_per_token, T / fpt <= crop_tokens
            labels : [shape=(B, T)], long, Label values or UNKNOWN
            context : [shape=(B, T, N_CONTEXT)]

        Returns:
            latent : [shape=(B, T / fpt, d_model)]
        """
        b, n_mels, t = mel.shape
        n = t // self.fpt
        tokens = mel.reshape(b, n_mels, n, self.fpt).permute(0, 2, 3, 1).reshape(b, n, -1)
        x = self.mel_proj(tokens) + self.context_proj(context[:, ::self.fpt]) + self.pos[:n]
        lab = self.label_embed(labels).reshape(b, n, self.fpt, -1).mean(2)
        x = self.combine(torch.cat([x, lab], -1))
        return self.norm(self.transformer(x))


class MelDecoder(nn.Module):
    """Transformer over the latent, output projection to gain control points; the residual
    from the raw mel is added in `SupervisedEditor.predict_mel`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.transformer = _transformer(cfg, cfg.decoder_layers)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.n_gain_bands)
        nn.init.zeros_(self.out_proj.weight)  # start at the identity: no treatment
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """latent (B, N, d_model) -> gain (B, n_gain_bands, N) in mel units."""
        return self.out_proj(self.norm(self.transformer(latent))).transpose(1, 2)


class SupervisedEditor(nn.Module):
    """The whole model: label head on the encoder without labels; treatment from the
    encoder with labels (true ones in training, the label head's at inference)."""

    def __init__(self, cfg: ModelConfig, params: FeatureParams):
        super().__init__()
        self.cfg = cfg
        self.encoder = EditEncoder(cfg, params.n_mels)
        self.decoder = MelDecoder(cfg)
        self.label_head = nn.Linear(cfg.d_model, N_LABELS * cfg.frames_per_token)
        self.register_buffer("mel_basis", torch.from_numpy(
            gain_basis(cfg.n_gain_bands, mel_centers_hz(params), params.sr)), persistent=False)

    def label_logits(self, mel: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Per-frame label logits (B, T, N_LABELS) from the raw mel alone."""
        b, _, t = mel.shape
        unknown = torch.full((b, t), UNKNOWN, dtype=torch.long, device=mel.device)
        latent = self.encoder(mel, unknown, context)
        return self.label_head(latent).reshape(b, t, N_LABELS)

    def gain_tokens(self, mel: torch.Tensor, labels: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The treatment at token rate: (B, n_gain_bands, T / fpt), mel units."""
        return self.decoder(self.encoder(mel, labels, context))

    def gain_frames(self, gain_tokens: torch.Tensor, n_frames: int) -> torch.Tensor:
        """Token-rate gain (B, G, N) -> frame-rate gain (B, G, n_frames), linear in time."""
        return F.interpolate(gain_tokens, size=n_frames, mode="linear", align_corners=False)

    def predict_mel(self, mel: torch.Tensor, gain_frames: torch.Tensor) -> torch.Tensor:
        """Raw mel plus the gain on mel bands, clipped to [0, 1] like the contract's mel."""
        return (mel + torch.einsum("mg,bgt->bmt", self.mel_basis, gain_frames)).clamp(0.0, 1.0)
