"""Settings of the supervised editor: model size, loss weights, training and inference.

Load with editorbot.config.load(SupervisedConfig, path, overrides); configs/supervised/
holds full.json and small.json. The config travels inside every checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import AT_LEAST_1, DROPOUT, NON_NEGATIVE, POSITIVE, Invalid, Range


@dataclass
class ModelConfig:
    """EditEncoder / MelDecoder sizes. A token is frames_per_token analysis frames."""

    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 2
    ff_mult: int = 4                 # feed-forward width = ff_mult * d_model
    dropout: float = 0.1
    frames_per_token: int = 4        # 4 frames = 46 ms: the time resolution of the gain
    crop_tokens: int = 256           # tokens per training crop and per inference window
    n_gain_bands: int = 16           # gain control points, evenly spaced on the mel scale

    LIMITS: ClassVar[dict[str, Range]] = {
        "d_model": AT_LEAST_1, "n_heads": AT_LEAST_1, "encoder_layers": AT_LEAST_1,
        "decoder_layers": AT_LEAST_1, "ff_mult": AT_LEAST_1, "dropout": DROPOUT,
        "frames_per_token": AT_LEAST_1, "crop_tokens": AT_LEAST_1, "n_gain_bands": Range(2)}

    def check(self) -> None:
        if self.d_model % self.n_heads:
            raise Invalid("d_model", self.d_model, f"a multiple of n_heads ({self.n_heads})")


@dataclass
class LossConfig:
    """Weights of the loss terms (0 switches a term off)."""

    l1_weight: float = 1.0           # L1 between predicted and target mel on kept frames
    mse_weight: float = 0.0          # MSE, same frames
    msstft_weight: float = 0.1       # multi-scale STFT loss on audio (treated raw vs aligned edit)
    msstft_ffts: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    label_weight: float = 1.0        # cross-entropy of the label head
    consistency_weight: float = 0.1  # change of the gain over time where labels say KEEP
    feature_weight: float = 0.0      # L1 of loudness and spectral-centroid curves on audio

    LIMITS: ClassVar[dict[str, Range]] = {
        "mse_weight": NON_NEGATIVE, "msstft_weight": NON_NEGATIVE, "label_weight": NON_NEGATIVE,
        "consistency_weight": NON_NEGATIVE, "feature_weight": NON_NEGATIVE}

    def check(self) -> None:
        for n_fft in self.msstft_ffts:
            if n_fft < 16:
                raise Invalid("msstft_ffts", self.msstft_ffts, "FFT sizes of at least 16")


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    val_fraction: float = 0.2        # share of recordings held out (dataset.split_by_recording)
    val_names: list[str] = field(default_factory=list)  # hold out exactly these instead
    split_seed: int = 0              # seed of the split (the same in every paradigm)
    seed: int = 0                    # seed of initialisation and crops

    LIMITS: ClassVar[dict[str, Range]] = {
        "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE,
        "weight_decay": NON_NEGATIVE, "grad_clip": POSITIVE, "val_fraction": Range(0, 1, high_open=True)}


@dataclass
class InferConfig:
    """How keep probabilities become segments."""

    smooth_s: float = 0.5            # moving average of the keep probability
    min_segment_s: float = 2.0       # shorter kept runs are dropped
    min_gap_s: float = 1.0           # shorter cut runs between kept ones are filled
    crossfade_s: float = 0.02        # at every seam of the proposed edit
    min_fade_s: float = 0.2          # shorter FADE_IN / FADE_OUT runs are no fade

    LIMITS: ClassVar[dict[str, Range]] = {
        "smooth_s": NON_NEGATIVE, "min_segment_s": NON_NEGATIVE, "min_gap_s": NON_NEGATIVE,
        "crossfade_s": NON_NEGATIVE, "min_fade_s": NON_NEGATIVE}


@dataclass
class SupervisedConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
