"""`editorbot train rl`: behavioral-cloning pretraining and PPO (with the BC loss mixed in)
of the RL editor, validated on held-out recordings, saved as models/<run>/best.pt and latest.pt.

    editorbot bc-labels --data-dir training_data --out bc_rich.npz
    editorbot train rl --bc-pretrain bc_rich.npz --bc-pretrain-epochs 50 \\
        --bc-mixed bc_rich.npz --save-dir models/rl

Recordings are split by name (dataset.split_by_recording); augmented BC examples made from a
held-out recording stay out of training. The beat-feature normalizer is fitted on the
training recordings and saved in the checkpoint, which inference uses as it is.
Validation edits each held-out recording as `editorbot edit` would (on the beat tracker's
grid, whatever grid the labels used) and scores it as `editorbot evaluate` does; best.pt is
the checkpoint with the highest held-out kept-raw IoU.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from ..checkpoint import save_checkpoint
from ..config import from_dict, load, to_dict
from ..edits import segments_to_pointers
from ..errors import UserError, log
from ..evaluate import kept_iou
from ..features import FeatureParams
from ..layout import Layout, discover
from ..training import (Progress, Run, TrainResult, checkpoint_payload, held_out, measured_levels,
                        messages_above_bars)
from .actions import ActionType
from .agent import Agent
from .bc_labels import BCDataset, BeatRecording, build_bc_dataset, detour_dataset, human_source
from .beat_features import FEATURE_VERSION, beat_features
from .config import RLConfig, TrainConfig
from .env import EditEnv, EnvConfig, make_vec_env
from .infer import policy_edit
from .ppo import BCSource, UpdateReport, bc_loss, learn
from .state import STATE_DIM, FeatureNormalizer


# ---------------------------------------------------------------------------- environments

class RecordingsEnv(gym.Env):
    """EditEnvs of several recordings behind one environment: each reset moves on to the
    next recording (a shuffled cycle). info['recording'] names the one playing by its
    index in the trainer's list (`ids`)."""

    metadata = {"render_modes": []}

    def __init__(self, specs: list[dict], ids: list[int], seed: int):
        super().__init__()
        self.envs = [EditEnv(**spec) for spec in specs]
        self.ids = ids
        self.order_rng = np.random.default_rng(seed)
        self.queue: list[int] = []
        self.current = 0
        self.action_space = self.envs[0].action_space
        self.observation_space = self.envs[0].observation_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if not self.queue:
            self.queue = [int(i) for i in self.order_rng.permutation(len(self.envs))]
        self.current = self.queue.pop()
        obs, info = self.envs[self.current].reset()
        return obs, info | {"recording": self.ids[self.current]}

    def step(self, action):
        obs, reward, term, trunc, info = self.envs[self.current].step(action)
        return obs, reward, term, trunc, info | {"recording": self.ids[self.current]}

    def action_masks(self):
        return self.envs[self.current].action_masks()


def _env_spec(rec: BeatRecording, pointers: np.ndarray | None, normalizer: FeatureNormalizer,
              env_config: EnvConfig, params: FeatureParams) -> dict:
    return {"raw_path": rec.raw_path, "pointers": pointers, "features": rec.features,
            "normalizer": normalizer, "config": env_config, "target_keep_ratio": rec.target_keep_ratio,
            "params": params}


def make_envs(recs: list[BeatRecording], pointers: list[np.ndarray | None], normalizer: FeatureNormalizer,
              env_config: EnvConfig, params: FeatureParams, n_envs: int, *, subprocess: bool, seed: int):
    """A VecEnv of n_envs environments sharing the recordings round robin."""
    n_envs = max(1, min(n_envs, len(recs)))
    fns = []
    for e in range(n_envs):
        ids = list(range(e, len(recs), n_envs))
        specs = [_env_spec(recs[i], pointers[i], normalizer, env_config, params) for i in ids]
        fns.append(functools.partial(RecordingsEnv, specs, ids, seed * 1000 + e))
    return make_vec_env(fns, subprocess=subprocess, start_method="fork" if subprocess else None)


# ---------------------------------------------------------------------------- evaluation

@dataclass
class EpisodeResult:
    """A deterministic episode of the policy on one recording."""

    name: str
    reward: float
    components: dict[str, float]
    kept_iou: float
    type_counts: np.ndarray
    duration_s: float


def validate_recordings(agent: Agent, config: RLConfig, normalizer: FeatureNormalizer, names: list[str], *,
                        data_dir: Path, cache_dir: Path, params: FeatureParams, wanted: float,
                        device=torch.device("cpu")) -> list[EpisodeResult]:
    """Each named pair edited as `editorbot edit` edits it with this policy, and scored as
    `editorbot evaluate` scores it: beat features on the edit-time grid (`beat_features`
    with no given beats: editorbot.grid's tracker, cached), the length asked when none is
    given (`wanted`: the training edits' median share), retries and trimming as in
    `infer.policy_edit`; kept-raw IoU against the pair's human edit (its pointer files, else
    its truth file). The reward is the episode's on that grid, human_match included.
    """

    layout = Layout(data_dir, cache_dir)
    pairs = {p.name: p for p in discover(data_dir, names).pairs}
    out = []
    for name in names:
        if name not in pairs:
            raise UserError(f"{data_dir}: no pair named {name} (it is in the BC file); train with "
                            "the --data-dir the labels were made from")
        pair = pairs[name]
        features = beat_features(pair.raw, cache_dir=cache_dir, params=params)
        truth = human_source(pair, layout, params=params).pointers
        edit, env = policy_edit(agent, config, normalizer, features, pair.raw, wanted=wanted,
                                pointers=truth, params=params, device=device)
        reward, components = env.episode_reward()
        raw_frames = params.n_frames(int(round(features.duration_s * params.sr)))
        iou = kept_iou(segments_to_pointers(edit, params), truth, raw_frames)
        out.append(EpisodeResult(name, reward, components, iou, env.track.type_counts.copy(),
                                 edit.duration_s))
    return out


def summarize_episodes(results: list[EpisodeResult]) -> dict[str, float]:
    if not results:
        return {}
    counts = np.sum([r.type_counts for r in results], axis=0)
    out = {"episode_reward": float(np.mean([r.reward for r in results])),
           "kept_iou": float(np.mean([r.kept_iou for r in results])),
           "max_type_share": float(counts.max() / max(counts.sum(), 1)),
           "keep_share": float(counts[ActionType.KEEP] / max(counts.sum(), 1))}
    for name in sorted({k for r in results for k in r.components}):
        out[f"reward_{name}"] = float(np.mean([r.components.get(name, np.nan) for r in results]))
    return out


# ---------------------------------------------------------------------------- data

def _pointers_for(recs: list[BeatRecording], data_dir: Path, cache_dir: Path,
                  params: FeatureParams) -> list[np.ndarray]:
    layout = Layout(data_dir, cache_dir)
    pairs = {p.name: p for p in discover(data_dir).pairs}
    out = []
    for r in recs:
        if r.name not in pairs:
            raise UserError(f"{data_dir}: no pair named {r.name} (it is in the BC file); train with "
                            "the --data-dir the labels were made from")
        out.append(human_source(pairs[r.name], layout, params=params).pointers)
    return out


def _state_settings(env_config: dict) -> dict:
    """The env settings the labelled states depend on: all but the reward's settings that
    change only what an episode earns (REWARD_ONLY), which the agent never sees."""
    reward = {k: v for k, v in env_config.get("reward", {}).items() if k not in REWARD_ONLY}
    return env_config | {"reward": reward}


REWARD_ONLY = ("weights", "keep_tolerance", "loop_penalty", "max_jump_fraction")


def _tensor_bc(data: BCDataset, normalizer: FeatureNormalizer, seed: int) -> BCSource:
    return BCSource(data.observations(normalizer), data.masks, data.actions, data.aux_targets(),
                    np.random.default_rng(seed))


def bc_accuracy(agent: Agent, source: BCSource, device, batch: int = 1024) -> dict[str, float]:
    """Share of labelled steps where the deterministic policy picks the labelled type, and
    the whole (type, size, amount)."""
    if len(source) == 0:
        return {}
    agent.eval()
    hits_type, hits_all = 0, 0
    with torch.no_grad():
        for lo in range(0, len(source), batch):
            b = source.batch(0, device, rows=np.arange(lo, min(lo + batch, len(source))))
            got = agent.policy(b["obs"], b["masks"], deterministic=True).actions
            hits_type += int((got[:, 0] == b["actions"][:, 0]).sum())
            hits_all += int((got == b["actions"]).all(1).sum())
    return {"type_accuracy": hits_type / len(source), "action_accuracy": hits_all / len(source)}


# ---------------------------------------------------------------------------- checkpoints


def train(config: RLConfig, run: Run, *, bc_pretrain: str | os.PathLike | None = None,
          bc_mixed: str | os.PathLike | None = None) -> TrainResult:
    """Train the RL editor: optional BC pretraining, then PPO (BC loss mixed in when
    bc_mixed is given and config.ppo.bc_weight > 0), validating on held-out recordings.

    Args:
        config: the settings (when resuming, the checkpoint's agent settings must match).
        run: where the pairs (with pointer_sequences/ or truth/) are and the checkpoints go;
            run.resume carries on a best.pt / latest.pt (weights, optimizer, normalizer,
            split); with run.max_minutes, cloning may use half of it and PPO stops in time
            for its last validation.
        bc_pretrain, bc_mixed: BC label files (`editorbot bc-labels` / `bc-augment`).

    Returns:
        TrainResult; phases["bc"] holds the validation after cloning.
    """
    from torch.utils.tensorboard import SummaryWriter

    started = time.time()
    deadline = run.deadline()
    data_dir, cache_dir, save_dir = run.data_dir, run.cache_dir, run.save_dir
    checkpoint, progress = run.resume, run.progress
    run.check()
    if run.init is not None:
        raise UserError("--init: the RL editor starts from scratch, from --bc-pretrain labels or --resume")
    tc = config.train
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    state = None
    if checkpoint is not None:
        from ..checkpoint import load_checkpoint
        state = load_checkpoint(checkpoint)
        if state["kind"] != "rl":
            raise UserError(f"{checkpoint}: a '{state['kind']}' checkpoint, not 'rl'")
        if state["config"]["agent"] != to_dict(config.agent):
            raise UserError(f"{checkpoint}: its agent settings differ from the config's; resume "
                            "without changing agent.*")

    # Labelled data: the BC files, else label the pairs here (for the recordings and figures).
    files = [f for f in dict.fromkeys([bc_pretrain, bc_mixed]) if f is not None]
    datasets = [BCDataset.load(f) for f in files]
    for f, d in zip(files, datasets):
        if _state_settings(d.env_config) != _state_settings(to_dict(config.env)):
            raise UserError(f"{f}: labelled under other env settings than the config's; run "
                            "`editorbot bc-labels --config` with this config")
    # The analysis grid: the label files' (all alike), else a resumed run's, else the contract's.
    resumed = (FeatureParams(**state["feature_params"]) if state is not None and "feature_params" in state
               else None)
    params = datasets[0].params if datasets else resumed or FeatureParams()
    for f, d in zip(files, datasets):
        if d.params != params:
            raise UserError(f"{f}: labelled on another analysis grid than {files[0]}; label both again")
    if resumed is not None and resumed != params:
        raise UserError(f"{checkpoint}: trained on another analysis grid than the labels; label again "
                        "or train from scratch")
    if datasets:
        base = datasets[0]
        for d in datasets[1:]:
            known = {r.name for r in base.recordings}
            base = base.merge(d.subset(lambda r: r.name not in known))
    else:
        base, _ = build_bc_dataset(data_dir, params=params, cache_dir=cache_dir, grid=tc.grid,
                                   env_config=config.env,
                                   progress=progress)
    real = [r for r in base.recordings if not r.origin]
    names = sorted({r.name for r in real})
    train_names, val_names = held_out(names, tc.val_fraction, tc.split_seed, val_names=tc.val_names,
                                      saved=None if state is None else state["split"], where=str(checkpoint))
    train_recs = [r for r in real if r.name in train_names]
    val_recs = [r for r in real if r.name in val_names]
    normalizer = (FeatureNormalizer.from_dict(state["normalizer"], where=str(checkpoint)) if state
                  else FeatureNormalizer.fit([r.features.features for r in train_recs]))
    train_ptr = _pointers_for(train_recs, data_dir, cache_dir, params)

    def in_training(rec: BeatRecording) -> bool:
        return rec.real_name in train_names

    detours = None
    if tc.bc_detours > 0 and datasets:
        detours = detour_dataset(base.subset(in_training), data_dir, cache_dir=cache_dir,
                                 n_detours=tc.bc_detours, seed=tc.seed)
    sources = {}
    for name, path in (("pretrain", bc_pretrain), ("mixed", bc_mixed)):
        if path is not None:
            d = datasets[files.index(path)].subset(in_training)
            d = d.merge(detours) if detours is not None and len(d) else d
            if len(d) == 0:
                raise UserError(f"{path}: no labelled steps of the training recordings")
            sources[name] = _tensor_bc(d, normalizer, tc.seed)
    val_bc = _tensor_bc(base.subset(lambda r: r.name in val_names), normalizer, tc.seed) if val_names else None

    torch.manual_seed(tc.seed)
    agent = Agent(config.agent, n_mels=params.n_mels).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.ppo.learning_rate, eps=1e-5)
    update0, best = 0, -math.inf
    if state is not None:
        agent.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        for group in optimizer.param_groups:  # the saved state carries the old run's step size
            group["lr"] = config.ppo.learning_rate
        update0, best = int(state["update"]), float(state.get("best_kept_iou", -math.inf))
    writer = SummaryWriter(str(run.logs))
    train_keep = float(np.median([r.target_keep_ratio for r in train_recs]))
    levels = measured_levels(run, train_names)

    def checkpoint_state(update: int, phase: str, metrics: dict) -> dict:
        return checkpoint_payload(
            "rl", config=to_dict(config), params=params, split=(train_names, val_names),
            step=update, metrics=metrics, model_state=agent.state_dict(),
            optimizer_state=optimizer.state_dict(), beat_feature_version=FEATURE_VERSION,
            state_dim=STATE_DIM, normalizer=normalizer.to_dict(), update=update, phase=phase,
            best_kept_iou=best, train_keep_ratio=train_keep, grid=sorted({r.grid for r in train_recs}),
            levels=levels)

    def validate(step: int, tag: str) -> dict[str, float]:
        m = summarize_episodes(validate_recordings(
            agent, config, normalizer, [r.name for r in (val_recs or train_recs)], data_dir=data_dir,
            cache_dir=cache_dir, params=params, wanted=train_keep, device=device))
        if val_bc is not None:
            m |= {f"bc_{k}": v for k, v in bc_accuracy(agent, val_bc, device).items()}
        for k, v in m.items():
            writer.add_scalar(f"{tag}/{k}", v, step)
        return m

    has_best = state is not None and (save_dir / "best.pt").exists()  # the resumed run's
    wrote: set[str] = set()

    def save(update: int, phase: str, metrics: dict, score: float | None) -> None:
        nonlocal best, has_best
        improved = score is not None and score > best
        if improved:
            best = score
        ckpt = checkpoint_state(update, phase, metrics)
        save_checkpoint(save_dir / "latest.pt", ckpt)
        wrote.add("latest.pt")
        if improved or not has_best:
            save_checkpoint(save_dir / "best.pt", ckpt)
            has_best = True
            wrote.add("best.pt")

    # -- behavioral cloning
    bc_metrics: dict[str, float] = {}
    val_after_bc: dict[str, float] = {}
    if "pretrain" in sources and tc.bc_pretrain_epochs > 0:
        # With PPO to follow, cloning may use half the run's time.
        bc_metrics = pretrain_bc(agent, sources["pretrain"], tc, config.ppo.aux_weight, device, writer,
                                 progress=progress, label_smoothing=config.ppo.bc_label_smoothing,
                                 deadline=deadline.share(0.5 if tc.n_updates > 0 else 1.0))
        val_after_bc = validate(0, "val")
        log.info("BC: %d epochs, train type accuracy %.3f; validation %s", bc_metrics["epochs"],
                 bc_metrics.get("type_accuracy", float("nan")), _short(val_after_bc))
        save(update0, "bc", val_after_bc, val_after_bc.get("kept_iou"))

    # -- PPO
    history: list[dict] = []
    val_final = dict(val_after_bc)
    out_of_time = False
    update_done = update0
    if tc.n_updates > 0 and not deadline.passed():
        tables = [r.aux() for r in train_recs]

        def aux_fn(recording: np.ndarray, cursors: np.ndarray) -> dict[str, np.ndarray]:
            out = {}
            for i, table in enumerate(tables):
                sel = recording == i
                if sel.any():
                    for k, v in table.at(cursors[sel]).items():
                        out.setdefault(k, np.zeros(recording.shape + v.shape[1:], np.float32))[sel] = v
            return out

        venv = make_envs(train_recs, train_ptr, normalizer, config.env, params, tc.n_envs,
                         subprocess=tc.subprocess, seed=tc.seed)
        bar = Progress("ppo", steps=tc.n_updates, deadline=deadline, enabled=progress)
        val_seconds = 0.0

        def on_update(report: UpdateReport) -> bool:
            nonlocal val_final, val_seconds, out_of_time, update_done
            update_done = report.update
            rewards = [e.reward for e in report.episodes]
            bar.step(**({"reward": float(np.mean(rewards))} if rewards else {}))
            entry = {"update": report.update, **{k: v for k, v in report.stats.items()}}
            # Stop in time for the last validation to end by the deadline too.
            out_of_time = deadline.passed(margin_s=deadline.margin(val_seconds))
            if ((report.update - update0) % tc.eval_every == 0 or report.update == update0 + tc.n_updates
                    or out_of_time):
                val_started = time.time()
                val_final = validate(report.update, "val")
                val_seconds = time.time() - val_started
                entry |= {f"val_{k}": v for k, v in val_final.items()}
                save(report.update, "ppo", val_final, val_final.get("kept_iou"))
            history.append(entry)
            return out_of_time

        try:
            learn(venv, agent, config.ppo, tc.n_updates, device=device, optimizer=optimizer,
                  bc=sources.get("mixed"), aux_fn=aux_fn, writer=writer, start_update=update0,
                  seed=tc.seed, on_update=on_update)
        finally:
            bar.close()
            venv.close()
    elif not val_after_bc:
        val_final = validate(update0, "val")
        save(update0, "bc", val_final, val_final.get("kept_iou"))
    else:
        out_of_time = tc.n_updates > 0  # cloning used the time PPO would have had
    writer.close()
    return TrainResult(save_dir, update_done, train_names, val_names, time.time() - started,
                       metrics=val_final, phases={"bc": val_after_bc, "bc_train": bc_metrics},
                       history=history, wrote=tuple(sorted(wrote)), out_of_time=out_of_time)


def pretrain_bc(agent: Agent, source: BCSource, tc: TrainConfig, aux_weight: float, device, writer, *,
                progress: bool = True, label_smoothing: float = 0.0,
                deadline: float = math.inf) -> dict[str, float]:
    """tc.bc_pretrain_epochs passes of BC (+ auxiliary) loss over the labelled steps, fewer
    when an epoch ends after `deadline` (time.time()); logs train/bc_loss, train/bc_entropy
    and aux/<task> per epoch. Returns the last epoch's means, the training accuracy and the
    epochs done."""
    from tqdm import tqdm

    opt = torch.optim.Adam(agent.policy.parameters(), lr=tc.bc_learning_rate)
    rng = np.random.default_rng(tc.seed)
    means: dict[str, float] = {}
    bar = tqdm(range(tc.bc_pretrain_epochs), desc="bc", unit="epoch", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for epoch in bar:
        agent.train()
        order = rng.permutation(len(source))
        sums: dict[str, float] = {}
        n = 0
        for lo in range(0, len(order), tc.bc_batch_size):
            b = source.batch(0, device, rows=order[lo:lo + tc.bc_batch_size])
            nll, entropy, aux = bc_loss(agent, b, label_smoothing)
            loss = nll + aux_weight * sum(aux.values()) if aux else nll
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.policy.parameters(), 1.0)
            opt.step()
            for k, v in {"bc_loss": nll, "bc_entropy": entropy, **{f"aux_{t}": x for t, x in aux.items()}}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(b["obs"])
            n += len(b["obs"])
        means = {k: v / n for k, v in sums.items()}
        for k, v in means.items():
            writer.add_scalar(f"aux/{k[4:]}" if k.startswith("aux_") else f"train/{k}", v, epoch + 1)
        bar.set_postfix_str(f"bc_loss {means['bc_loss']:.3f}", refresh=False)
        if time.time() > deadline:
            log.info("BC: stopped after %d of %d epochs, at its share of --max-minutes",
                     epoch + 1, tc.bc_pretrain_epochs)
            break
    return means | bc_accuracy(agent, source, device) | {"epochs": epoch + 1}


def _short(m: dict) -> str:
    keys = ("episode_reward", "kept_iou", "max_type_share", "bc_type_accuracy")
    return ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m)


# ---------------------------------------------------------------------------- command line

def config_from_args(args: argparse.Namespace) -> RLConfig:
    """The config: --config (or the checkpoint's when resuming without one), the flags, --set."""
    flags = {"train.bc_pretrain_epochs": args.bc_pretrain_epochs, "train.n_updates": args.updates,
             "train.n_envs": args.n_envs, "train.seed": args.seed,
             "train.subprocess": True if args.subprocess else None, "ppo.bc_weight": args.bc_weight}
    if args.bc_mixed and args.bc_weight is None:
        flags["ppo.bc_weight"] = 1.0   # the best measured (docs/results.md, bench_rl_folds.py)
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + args.set
    if args.resume and not args.config:
        from ..config import apply_overrides
        from ..checkpoint import load_checkpoint
        data = load_checkpoint(args.resume)["config"]
        return from_dict(RLConfig, apply_overrides(data, overrides), where=f"{args.resume} config")
    try:
        return load(RLConfig, args.config, overrides)
    except UserError as err:
        if args.config is None or str(args.config) in str(err):
            raise
        raise UserError(f"{args.config}: {err}") from None


def run(args: argparse.Namespace) -> TrainResult:
    if args.bc_pretrain_epochs and not args.bc_pretrain:
        raise UserError("--bc-pretrain-epochs needs --bc-pretrain FILE (labels from `editorbot bc-labels`)")
    config = config_from_args(args)
    with messages_above_bars():
        result = train(config, Run.from_args(args), bc_pretrain=args.bc_pretrain, bc_mixed=args.bc_mixed)
    if result.phases["bc"]:
        print(f"after BC:  {_short(result.phases['bc'])}")
    if result.metrics:
        print(f"final:     {_short(result.metrics)}")
    return result
