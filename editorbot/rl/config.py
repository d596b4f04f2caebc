"""Settings of the RL editor: the agent, PPO, the environment, training and inference,
in one RLConfig that travels inside every RL checkpoint."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..config import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Range
from .agent import AgentConfig
from .env import EnvConfig
from .ppo import PPOConfig


@dataclass
class TrainConfig:
    """How training runs.

    n_updates: PPO updates (0: BC only).
    n_envs: parallel environments; subprocess: run them in worker processes.
    bc_pretrain_epochs: passes over the BC samples before PPO (--bc-pretrain-epochs).
    bc_batch_size, bc_learning_rate: BC pretraining minibatch and step size.
    bc_detours: extra plans of each training recording's human edit, with random detours,
        added to the BC data (bc_labels.detour_dataset): labels at more cursors.
    val_fraction: share of recordings held out (dataset.split_by_recording, as in every paradigm).
    val_names: hold out exactly these recordings instead (val_fraction is then unused).
    split_seed: seed of the split (the same split as the other paradigms' with the same seed).
    eval_every: PPO updates between validation runs (and best.pt checks, by held-out kept IoU).
    grid: beat grid for recordings labelled here (no BC file): 'auto', 'truth', 'tracker'.
    seed: same seed, same initial weights and data order.
    """

    n_updates: int = 50
    n_envs: int = 4
    subprocess: bool = False
    bc_pretrain_epochs: int = 0
    bc_batch_size: int = 128
    bc_learning_rate: float = 1e-3
    bc_detours: int = 4
    val_fraction: float = 0.2
    val_names: list[str] = field(default_factory=list)
    split_seed: int = 0
    eval_every: int = 5
    grid: str = "auto"
    seed: int = 0

    LIMITS: ClassVar[dict[str, Range]] = {
        "n_updates": NON_NEGATIVE, "n_envs": AT_LEAST_1, "bc_pretrain_epochs": NON_NEGATIVE,
        "bc_batch_size": AT_LEAST_1, "bc_learning_rate": POSITIVE, "bc_detours": NON_NEGATIVE,
        "val_fraction": Range(0, 1, high_open=True), "eval_every": AT_LEAST_1}


@dataclass
class InferConfig:
    """How the trained policy edits.

    keep_tolerance: the edit may miss the wanted length by this share before inference
        asks the policy again with a corrected target (and trims what is too long).
    retries: how many times it asks again.
    crossfade_s: crossfade at every jump (0: the renderer's short default).
    """

    keep_tolerance: float = 0.1
    retries: int = 2
    crossfade_s: float = 0.0


@dataclass
class RLConfig:
    agent: AgentConfig = field(default_factory=AgentConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
