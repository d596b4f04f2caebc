"""Settings of the pointer network: the model, its training and its decoding, in one place.

Loaded with editorbot.config.load(PointerConfig, path, overrides); every field is used, and
the whole config travels inside each checkpoint so that inference rebuilds the same model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import AT_LEAST_1, DROPOUT, FRACTION, NON_NEGATIVE, POSITIVE, Invalid, Range


@dataclass
class ModelConfig:
    """The network's shape.

    n_mels: mel bands of the input (the analysis grid's n_mels).
    use_stems: also read the four stem mels (drums, bass, vocals, other) as input channels.
    d_model: width of the encoder and decoder.
    n_heads: attention heads (d_model must be a multiple).
    n_layers: linear-attention encoder layers.
    conv_kernel: kernel of the depthwise convolution in each encoder layer (odd).
    ff_mult: feed-forward width as a multiple of d_model.
    stride: the encoder layers run at 1/stride of the frame rate (1, 2 or 4); frame-rate
        detail comes back through a convolution over the mel at full rate.
    n_global: global summary tokens (one per equal share of the recording).
    max_delta: the delta head covers [-max_delta, +max_delta] around the expected position.
    n_jump_buckets: log-spaced jump buckets per direction, from max_delta + 1 frames to
        max_jump_frames.
    max_jump_frames: the longest jump the buckets cover (2^20 frames is 3.4 hours).
    decoder_layers: windowed cross-attention layers of the decoder.
    op_head: train an auxiliary head on the edit op of each frame (editorbot.edits.Op).
    keep_head: train an auxiliary head on whether the editor keeps each raw frame (plays
        it anywhere in the edit): a label on every raw frame, where the pointer losses
        have a few per cut, so the encoder learns early what this editor keeps.
    dropout: dropout in encoder and decoder.
    repeat_context: also feed the encoder two channels that say how closely each moment
        repeats earlier and later material (see model.repeat_context): editors drop the
        second verse, keep the first; a false start is what comes next, played badly.
    repeat_block: frames per block of the repeat comparison (32 = 0.37 s at the default
        analysis grid).
    repeat_min_lag, repeat_max_lag: the shortest and longest distance, in frames, at which
        material counts as a repeat (344 = 4 s, 20480 = 3.96 min); the longest bounds the
        cost, linear in the recording's length.
    repeat_smooth: blocks a match must last along the diagonal (8 = 3 s).
    structure_context: also feed the encoder eleven channels that place each moment in its
        song (see structure.structure_context): how many other takes of the same material
        come before and after it, and how far the quiet stretches around it are. The
        repeat_* settings are its blocks, lags and smoothing too. With them the keep head can
        tell the second verse and the third chorus from the first ones: the notes are the
        same, the count of takes before is not.
    structure_threshold: cosine similarity of spectral shape above which two blocks count
        as the same material.
    structure_gap: lags (blocks) a run of matching lags may break for and still be one take
        (41 = 15 s: a part's own bars repeat every few seconds, its takes are a section or
        more apart).
    section_context: width of a bidirectional GRU that reads the recording one block of
        section_block frames at a time (block means of the encoder's input channels: mel,
        repeat and structure) and adds what it has read to every frame before the encoder
        layers and, with keep_head, to the keep logit (0 = off). The convolutions see about
        a second around a frame and the linear attention sees the whole recording as a bag
        of frames, without order; an editor's choice depends on what came before and after
        over minutes (the chorus after the solo, the second verse of a song), which a GRU
        over blocks carries in time and memory linear in T (figures: docs/results.md).
    section_block: frames per step of the section GRU (32 = 0.37 s at the default grid).
        96 (1.1 s) costs a quarter as much and scored as 32 did; the frame-level keep head
        and the cut placement are not held to its blocks.
    structure_keep: width of a second bidirectional GRU over the same blocks that reads only
        the repeat and structure channels (not the mel) and gives a keep logit of its own
        (0 = off; needs keep_head and repeat or structure context). From a few pairs, a keep
        head that hears the mel learns the recordings by heart; one that reads where each
        moment sits in its song (other takes before and after, quiet around it) cannot, and
        follows an editor who decides by that (the last take of each song). Trained apart,
        before the whole model (train.structure_keep_steps); validation chooses whether its
        logit is added to the model's own where the edit is planned (the checkpoint's
        keep_source: 'model' or 'model+structure').
    """

    n_mels: int = 128
    use_stems: bool = False
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    conv_kernel: int = 9
    ff_mult: int = 2
    stride: int = 2
    n_global: int = 64
    max_delta: int = 64
    n_jump_buckets: int = 24
    max_jump_frames: int = 1 << 20
    decoder_layers: int = 2
    op_head: bool = True
    keep_head: bool = True
    dropout: float = 0.1
    repeat_context: bool = True
    repeat_block: int = 32
    repeat_min_lag: int = 344
    repeat_max_lag: int = 20480
    repeat_smooth: int = 8
    structure_context: bool = True
    structure_threshold: float = 0.6
    structure_gap: int = 41
    section_context: int = 32
    section_block: int = 96
    structure_keep: int = 32

    LIMITS: ClassVar[dict[str, Range]] = {
        "n_mels": AT_LEAST_1, "d_model": AT_LEAST_1, "n_heads": AT_LEAST_1, "n_layers": AT_LEAST_1,
        "conv_kernel": AT_LEAST_1, "ff_mult": AT_LEAST_1, "n_global": AT_LEAST_1,
        "max_delta": AT_LEAST_1, "n_jump_buckets": AT_LEAST_1, "max_jump_frames": AT_LEAST_1,
        "decoder_layers": AT_LEAST_1, "dropout": DROPOUT, "repeat_block": AT_LEAST_1,
        "repeat_min_lag": AT_LEAST_1, "repeat_max_lag": AT_LEAST_1, "repeat_smooth": AT_LEAST_1,
        "structure_threshold": Range(-1, 1), "structure_gap": NON_NEGATIVE,
        "section_context": NON_NEGATIVE, "section_block": AT_LEAST_1,
        "structure_keep": NON_NEGATIVE}

    def check(self) -> None:
        if self.d_model % self.n_heads:
            raise Invalid("d_model", self.d_model, f"a multiple of n_heads ({self.n_heads})")
        if self.conv_kernel % 2 == 0:
            raise Invalid("conv_kernel", self.conv_kernel, "odd")
        if self.stride not in (1, 2, 4):
            raise Invalid("stride", self.stride, "1, 2 or 4")
        if self.max_jump_frames <= self.max_delta:
            raise Invalid("max_jump_frames", self.max_jump_frames, f"> max_delta ({self.max_delta})")
        if self.repeat_max_lag < self.repeat_min_lag:
            raise Invalid("repeat_max_lag", self.repeat_max_lag,
                          f">= repeat_min_lag ({self.repeat_min_lag})")


@dataclass
class AugmentConfig:
    """Augmentation of the raw mel; none of it moves audio in time, so pointers stay valid.

    noise_std: std of Gaussian noise added to the [0, 1] mel.
    gain_db: a random gain in [-gain_db, +gain_db] shifts the mel by gain_db / top_db.
    freq_masks, freq_width: SpecAugment masks of up to freq_width mel bands.
    time_masks, time_width: SpecAugment masks of up to time_width frames.
    shift_bands: shift the whole mel up or down by up to this many bands (a crude pitch
        shift: what an editor keeps rarely depends on the key it is played in).
    """

    noise_std: float = 0.02
    gain_db: float = 6.0
    freq_masks: int = 2
    freq_width: int = 12
    time_masks: int = 2
    time_width: int = 20
    shift_bands: int = 2

    LIMITS: ClassVar[dict[str, Range]] = {
        "noise_std": NON_NEGATIVE, "gain_db": NON_NEGATIVE, "freq_masks": NON_NEGATIVE,
        "freq_width": NON_NEGATIVE, "time_masks": NON_NEGATIVE, "time_width": NON_NEGATIVE,
        "shift_bands": NON_NEGATIVE}


@dataclass
class FinetuneConfig:
    """How a run that starts from another pointer model's weights (`--init`) trains, in
    place of train.lr, train.warmup_steps and train.epochs: a lower rate and a short
    schedule, so that a few new pairs adjust the model rather than overwrite it. Keep
    pretraining (train.keep_pretrain_steps) runs first on the new pairs, as in any new run:
    which sections are kept is the musician's own choice (see train.train).

    lr: peak learning rate of the fine-tuning.
    warmup_steps: linear warm-up steps before the cosine decay to 0.1 x lr.
    epochs: passes over the new pairs.
    """

    lr: float = 1e-3
    warmup_steps: int = 10
    epochs: int = 5

    LIMITS: ClassVar[dict[str, Range]] = {
        "lr": POSITIVE, "warmup_steps": NON_NEGATIVE, "epochs": AT_LEAST_1}


@dataclass
class TrainConfig:
    """How training runs.

    Where the run reads and writes and how long it may take are not settings of the
    model: they are the run's (editorbot.training.Run, the CLI's --data-dir, --save-dir,
    --max-minutes ...).

    epochs: passes over the training recordings.
    batch_size: recordings per step (each encoded whole, as at inference).
    random_steps: output steps drawn uniformly from each recording's edit per batch
        (weighted by how many steps each stands for).
    context_steps: steps on each side of every change (jump, small move, stop) that are
        always trained on, where the model must learn to wait.
    max_changes: most changes of one recording per batch.
    drift_steps: also train on the states 1..drift_steps frames past each change, as if
        the decoder had played on instead of changing; their target is still that change
        (see data.StepTable).
    target_given_fraction: share of the recordings of a batch whose edit length the model
        is told (as with `editorbot edit --target-duration`); the others it is not, as
        when the stop head decides the length.
    val_chunk_steps: steps per forward pass in validation.
    lr, weight_decay, warmup_steps, grad_clip: AdamW with linear warm-up, then a cosine
        decay to 0.1 x lr by the end of the epochs, or of max_minutes if that comes first.
    val_fraction: share of recordings held out for validation (split by recording).
    val_names: explicit validation recordings (overrides val_fraction when given).
    split_seed: seed of the train/validation split.
    seed: seed of initialisation, data order, augmentation and dropout.
    jump_weight, use_jump_pos_weight, stop_weight, op_weight, keep_weight: loss weights.
    jump_sigma_frames: the jump target is a Gaussian of this many frames around the true
        frame (0: the exact frame); frame-grid rounding moves a cut by a frame either way.
    val_every: validate (and maybe write best.pt) every this many epochs.
    val_decode_every: every this many validations, also decode the validation recordings
        freely and report their kept-raw IoU (0 = never; decoding an untrained model is slow,
        as it changes its mind at every step).
    select_by: which validation figure picks best.pt: 'val_iou' (among validations that
        decoded) or 'val_loss'.
    bf16: autocast to bfloat16 on CUDA.
    max_cached_recordings: raw mels kept in memory between steps.
    log_every: steps between TensorBoard scalars.
    keep_pretrain_steps: with section_context and keep_head, first train the section GRU
        alone on the keep label for this many steps (0 = off; see
        train.pretrain_section_keep): it reads blocks, not frames, so its steps are cheap
        and it sees many recordings per step, where the whole model sees batch_size.
        Counts towards max_minutes; a run started with --init has it too (a resumed one not).
    keep_pretrain_batch: recordings per step of that pretraining.
    structure_keep_steps, structure_keep_lr: steps and rate of the structure keep GRU's
        training (model.structure_keep), before the section GRU's, in the same way; it
        trains nowhere else. Its steps are cheaper still (13 channels a block).
    finetune: the rate and schedule of a run started from a model's weights (--init)
        instead of lr, warmup_steps and epochs (FinetuneConfig).
    """

    epochs: int = 100
    batch_size: int = 2
    random_steps: int = 256
    context_steps: int = 8
    max_changes: int = 256
    drift_steps: int = 32
    target_given_fraction: float = 0.5
    val_chunk_steps: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    val_fraction: float = 0.2
    val_names: list[str] = field(default_factory=list)
    split_seed: int = 0
    seed: int = 0
    jump_weight: float = 1.0
    use_jump_pos_weight: float = 5.0
    stop_weight: float = 1.0
    op_weight: float = 0.2
    keep_weight: float = 4.0
    jump_sigma_frames: float = 1.0
    val_every: int = 1
    val_decode_every: int = 1
    select_by: str = "val_iou"
    bf16: bool = True
    max_cached_recordings: int = 32
    log_every: int = 10
    keep_pretrain_steps: int = 300
    keep_pretrain_batch: int = 8
    structure_keep_steps: int = 600
    structure_keep_lr: float = 3e-3
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    LIMITS: ClassVar[dict[str, Range]] = {
        "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1,
        "random_steps": NON_NEGATIVE, "context_steps": NON_NEGATIVE, "max_changes": NON_NEGATIVE,
        "drift_steps": NON_NEGATIVE, "target_given_fraction": FRACTION,
        "val_chunk_steps": AT_LEAST_1, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
        "warmup_steps": NON_NEGATIVE, "grad_clip": POSITIVE, "val_fraction": Range(0, 1, high_open=True),
        "jump_weight": NON_NEGATIVE, "use_jump_pos_weight": NON_NEGATIVE, "stop_weight": NON_NEGATIVE,
        "op_weight": NON_NEGATIVE, "keep_weight": NON_NEGATIVE, "jump_sigma_frames": NON_NEGATIVE,
        "val_every": AT_LEAST_1, "val_decode_every": NON_NEGATIVE,
        "max_cached_recordings": AT_LEAST_1, "log_every": AT_LEAST_1,
        "keep_pretrain_steps": NON_NEGATIVE, "keep_pretrain_batch": AT_LEAST_1,
        "structure_keep_steps": NON_NEGATIVE, "structure_keep_lr": POSITIVE}
    # Settings of earlier versions (most now the run's flags): dropped when a checkpoint
    # holds them, named with their flag when a config file does.
    RETIRED: ClassVar[dict[str, str]] = {
        "cache_dir": "--cache-dir", "pointer_dir": "--data-dir (its pointer_sequences/)",
        "save_dir": "--save-dir", "log_dir": "--log-dir", "max_minutes": "--max-minutes",
        "activation_checkpointing": "nothing (training recomputes activations in the backward "
                                    "pass on long raws by itself)"}

    def check(self) -> None:
        if self.select_by not in ("val_iou", "val_loss"):
            raise Invalid("select_by", self.select_by, "'val_iou' or 'val_loss'")


@dataclass
class DecodeConfig:
    """How inference turns the model's outputs into pointers and segments.

    block_steps: most output steps evaluated at once while the pointer runs on.
    min_segment_s: pieces shorter than this are merged into their neighbour.
    crossfade_s: crossfade put on every seam of the proposed edit.
    max_length_ratio: without a target, decoding stops at this multiple of the expected
        edit length, or at the raw's length if that is longer, if the model has not ended
        the edit by then.
    keep_veto_s: without a target, the model may not skip forward or stop where its keep
        head gives the next keep_veto_s seconds a mean keep probability above one half
        (0: off). With a target length it is off: the edit must be cut to fit.
    keep_skip: without a target, for an editor that never moves back in the raw (the
        checkpoint's jumps_back is false: it only cuts), the edit follows the keep head,
        instead of the keep veto: it plays the stretches whose keep probability (averaged
        over keep_veto_s seconds around each frame) is above keep_threshold and skips the
        others; the model's own heads place each cut within keep_snap_s seconds of where
        a kept stretch ends or starts (see decode.decode_pointers).
    keep_threshold: the keep probability keep_skip keeps above; None: the one stored in
        the checkpoint (validation's choice: one half unless another is clearly better),
        else one half. Set for training, validation keeps it as it is.
    keep_snap_s: see keep_skip.
    """

    block_steps: int = 512
    min_segment_s: float = 0.5
    crossfade_s: float = 0.02
    max_length_ratio: float = 2.0
    keep_veto_s: float = 1.0
    keep_skip: bool = True
    keep_threshold: float | None = None
    keep_snap_s: float = 0.5

    LIMITS: ClassVar[dict[str, Range]] = {
        "block_steps": AT_LEAST_1, "min_segment_s": NON_NEGATIVE, "crossfade_s": NON_NEGATIVE,
        "max_length_ratio": POSITIVE, "keep_veto_s": NON_NEGATIVE, "keep_threshold": FRACTION,
        "keep_snap_s": NON_NEGATIVE}


@dataclass
class PointerConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
