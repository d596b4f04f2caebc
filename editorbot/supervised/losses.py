"""Losses of the supervised editor: mel L1/MSE, multi-scale STFT on audio, labels, consistency.

The multi-scale STFT loss is taken on audio: the predicted smooth gain is applied to the
raw STFT (n_fft 2048, hop 256: the analysis grid), inverted with torch.istft, and compared
with the edit audio placed in raw time through the pointers (data.aligned_edit_audio).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..features import FeatureParams
from .config import LossConfig
from .labels import Label
from .model import SupervisedEditor, gain_basis

EPS = 1e-5


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |pred - target| over the frames where mask is 1.

    Args:
        pred, target : [shape=(B, n_mels, T)]
        mask : [shape=(B, T)], 0 or 1
    """
    w = mask[:, None, :]
    return (w * (pred - target).abs()).sum() / (w.sum() * pred.shape[1]).clamp_min(1.0)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean (pred - target)^2 over the frames where mask is 1 (shapes as masked_l1)."""
    w = mask[:, None, :]
    return (w * (pred - target) ** 2).sum() / (w.sum() * pred.shape[1]).clamp_min(1.0)


def stft_gain_basis(params: FeatureParams, n_gain_bands: int) -> torch.Tensor:
    """Interpolation (n_fft // 2 + 1, n_gain_bands) from gain control points to STFT bins."""
    freqs = torch.fft.rfftfreq(params.n_fft, 1.0 / params.sr).numpy()
    return torch.from_numpy(gain_basis(n_gain_bands, freqs, params.sr))


def apply_gain(audio: torch.Tensor, gain_db: torch.Tensor, *, n_fft: int, hop_length: int) -> torch.Tensor:
    """Multiply the STFT of `audio` by a time-frequency gain and invert it.

    Args:
        audio : [shape=(B, n)], float
        gain_db : [shape=(B, n_fft // 2 + 1, T)], dB per STFT bin and frame; frame t is
            centred on sample t * hop_length. Missing frames at the end repeat the last.

    Returns:
        [shape=(B, n)]
    """
    window = torch.hann_window(n_fft, device=audio.device, dtype=audio.dtype)
    spec = torch.stft(audio, n_fft, hop_length, window=window, center=True, return_complex=True)
    t = spec.shape[-1]
    if gain_db.shape[-1] < t:
        gain_db = torch.cat([gain_db, gain_db[..., -1:].expand(-1, -1, t - gain_db.shape[-1])], -1)
    spec = spec * torch.pow(10.0, gain_db[..., :t] / 20.0)
    return torch.istft(spec, n_fft, hop_length, window=window, center=True, length=audio.shape[-1])


def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    return torch.stft(x, n_fft, n_fft // 4, window=window, center=True, return_complex=True).abs()


def multi_scale_stft_loss(pred: torch.Tensor, target: torch.Tensor,
                          ffts: tuple[int, ...] | list[int] = (512, 1024, 2048)) -> torch.Tensor:
    """Spectral convergence plus log-magnitude L1, averaged over STFT sizes (hop n_fft / 4).

    Zero for identical audio; for a gain g on loud audio it is about |1 - g| + |ln g|.

    Args:
        pred, target : [shape=(B, n)], audio
    """
    total = pred.new_zeros(())
    for n_fft in ffts:
        p, t = _magnitude(pred, n_fft), _magnitude(target, n_fft)
        sc = torch.linalg.vector_norm(t - p, dim=(1, 2)) / torch.linalg.vector_norm(t, dim=(1, 2)).clamp_min(EPS)
        mag = (torch.log(t + EPS) - torch.log(p + EPS)).abs().mean(dim=(1, 2))
        total = total + (sc + mag).mean()
    return total / len(ffts)


def feature_loss(pred: torch.Tensor, target: torch.Tensor, *, n_fft: int, hop_length: int,
                 top_db: float) -> torch.Tensor:
    """L1 of frame loudness (dB / top_db) and spectral centroid (fraction of Nyquist)
    between two signals, over the target's frames within top_db of its loudest.

    Args:
        pred, target : [shape=(B, n)], audio
    """
    p, t = _magnitude(pred, n_fft) ** 2, _magnitude(target, n_fft) ** 2
    lp, lt = 10 * torch.log10(p.sum(1) + 1e-10), 10 * torch.log10(t.sum(1) + 1e-10)
    w = (lt > lt.amax(-1, keepdim=True) - top_db).float()
    k = torch.linspace(0.0, 1.0, p.shape[1], device=p.device)[None, :, None]
    cp = (k * p).sum(1) / p.sum(1).clamp_min(1e-10)
    ct = (k * t).sum(1) / t.sum(1).clamp_min(1e-10)
    per_frame = (lp - lt).abs() / top_db + (cp - ct).abs()
    return (w * per_frame).sum() / w.sum().clamp_min(1.0)


def consistency_loss(gain_tokens: torch.Tensor, keep_tokens: torch.Tensor) -> torch.Tensor:
    """Change of the gain from one token to the next, where both tokens are all KEEP:
    the editor left those frames alone, so only a steady treatment (mastering) applies.

    Args:
        gain_tokens : [shape=(B, G, N)], mel units
        keep_tokens : [shape=(B, N)], 1 where every frame of the token is KEEP
    """
    step = (gain_tokens[..., 1:] - gain_tokens[..., :-1]).abs().mean(1)
    both = keep_tokens[:, 1:] * keep_tokens[:, :-1]
    return (both * step).sum() / both.sum().clamp_min(1.0)


def compute_losses(model: SupervisedEditor, batch: dict[str, torch.Tensor], cfg: LossConfig,
                   params: FeatureParams, stft_basis: torch.Tensor, *,
                   report_audio: bool = False) -> dict[str, torch.Tensor]:
    """Every loss term of one batch (see data.collate for the keys), and 'total'.

    The label head sees the raw mel alone; the decoder gets the true labels (teacher forcing).

    Args:
        stft_basis : [shape=(n_fft // 2 + 1, n_gain_bands)], from stft_gain_basis
        report_audio: also compute the audio terms when their weight is 0, and
            'msstft_identity' (the raw with only the file-level offset), for validation.
    """
    mel, labels, context = batch["mel"], batch["labels"], batch["context"]
    valid, recon = batch["valid"], batch["recon_mask"]
    fpt = model.cfg.frames_per_token
    n_frames = mel.shape[-1]
    out: dict[str, torch.Tensor] = {}

    logits = model.label_logits(mel, context)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    out["label_loss"] = (ce * valid.reshape(-1)).sum() / valid.sum().clamp_min(1.0)
    with torch.no_grad():
        pred_labels = logits.argmax(-1)
        out["label_accuracy"] = ((pred_labels == labels).float() * valid).sum() / valid.sum().clamp_min(1.0)
        keep_ok = ((pred_labels != Label.CUT) == (labels != Label.CUT)).float()
        out["keep_accuracy"] = (keep_ok * valid).sum() / valid.sum().clamp_min(1.0)

    gain_tok = model.gain_tokens(mel, labels, context)
    gain = model.gain_frames(gain_tok, n_frames)
    pred_mel = model.predict_mel(mel, gain)
    out["l1_loss"] = masked_l1(pred_mel, batch["target"], recon)
    out["mse_loss"] = masked_mse(pred_mel, batch["target"], recon)
    with torch.no_grad():
        out["l1_identity"] = masked_l1(mel, batch["target"], recon)

    keep = (labels == Label.KEEP).float() * valid
    keep_tokens = keep.reshape(keep.shape[0], -1, fpt).amin(-1)
    out["consistency_loss"] = consistency_loss(gain_tok, keep_tokens)

    zero = mel.new_zeros(())
    out["msstft_loss"], out["feature_loss"] = zero, zero
    if cfg.msstft_weight > 0 or cfg.feature_weight > 0 or report_audio:
        gain_db = params.top_db * torch.einsum("kg,bgt->bkt", stft_basis, gain)
        offset = batch["offset_db"][:, None, None]
        treated = apply_gain(batch["raw_audio"], gain_db + offset, n_fft=params.n_fft,
                             hop_length=params.hop_length)
        smask = batch["sample_mask"]
        treated, target_audio = treated * smask, batch["target_audio"] * smask
        if cfg.msstft_weight > 0 or report_audio:
            out["msstft_loss"] = multi_scale_stft_loss(treated, target_audio, cfg.msstft_ffts)
        if cfg.feature_weight > 0 or report_audio:
            out["feature_loss"] = feature_loss(treated, target_audio, n_fft=params.n_fft,
                                               hop_length=params.hop_length, top_db=params.top_db)
        if report_audio:
            plain = batch["raw_audio"] * torch.pow(10.0, offset[:, :, 0] / 20.0) * smask
            out["msstft_identity"] = multi_scale_stft_loss(plain, target_audio, cfg.msstft_ffts)

    out["total"] = (cfg.l1_weight * out["l1_loss"] + cfg.mse_weight * out["mse_loss"]
                    + cfg.msstft_weight * out["msstft_loss"] + cfg.label_weight * out["label_loss"]
                    + cfg.consistency_weight * out["consistency_loss"]
                    + cfg.feature_weight * out["feature_loss"])
    return out
