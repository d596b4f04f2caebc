"""A compact PPO (clipped surrogate, GAE) that reads top to bottom: rollout, advantages,
update, logging. Written out here because the update mixes in a behavioral-cloning loss
and auxiliary losses, and the policy has three conditional heads under a joint mask.

Rules kept from what went wrong before: advantages are computed per environment and stop
at every episode end; the action masks a rollout drew with are stored and used again in
the update; updates stop early when approx_kl passes target_kl; mixed precision is off
unless asked for. Any gymnasium task with a discrete action works with a suitable agent
(tests/test_rl_train.py trains CartPole-v1).

The agent provides act(obs, masks) -> (actions, log_prob, value), evaluate(obs, masks,
actions) -> object with log_prob, entropy (and features for aux), value(obs), and, for the
auxiliary tasks, aux(evaluate's output) -> {task: prediction}.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch

from ..config import AT_LEAST_1, FRACTION, NON_NEGATIVE, POSITIVE, Range
from .actions import ActionType
from .aux_tasks import aux_losses


@dataclass
class PPOConfig:
    """PPO settings (one update = one rollout of n_steps per environment, then n_epochs
    passes over it in minibatches).

    learning_rate: Adam's step size. gamma, gae_lambda: discount and GAE lambda.
    clip_coef: ratio clipping. vf_coef: weight of the value loss. ent_coef: weight of the
    entropy bonus (entropy already divided by the 3 heads). max_grad_norm: gradient clip.
    target_kl: stop the update's epochs once approx_kl passes it (None: never).
    norm_adv: normalize advantages per minibatch.
    amp: mixed precision (float16 on CUDA, bfloat16 on CPU); off by default, as large
        value losses overflow in float16.
    bc_weight: weight of the BC loss mixed into each minibatch (0: none; --bc-weight).
    bc_batch_size: BC samples per minibatch.
    bc_label_smoothing: label smoothing of the BC loss, in pretraining and mixed into PPO
        (see bc_loss).
    aux_weight: weight of the auxiliary losses (on rollout and BC states).
    value_warmup_updates: the first updates of a run fit only the value network (the
        policy, e.g. a BC-pretrained one, is left as it is until its advantages mean
        something).
    """

    n_steps: int = 128
    n_epochs: int = 4
    minibatch_size: int = 256
    learning_rate: float = 1e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.03
    norm_adv: bool = True
    amp: bool = False
    bc_weight: float = 0.0
    bc_batch_size: int = 256
    aux_weight: float = 0.1
    value_warmup_updates: int = 5
    bc_label_smoothing: float = 0.05

    LIMITS: ClassVar[dict[str, Range]] = {
        "n_steps": AT_LEAST_1, "n_epochs": AT_LEAST_1, "minibatch_size": AT_LEAST_1,
        "learning_rate": POSITIVE, "gamma": FRACTION, "gae_lambda": FRACTION, "clip_coef": POSITIVE,
        "vf_coef": NON_NEGATIVE, "ent_coef": NON_NEGATIVE, "max_grad_norm": POSITIVE,
        "target_kl": POSITIVE, "bc_weight": NON_NEGATIVE, "bc_batch_size": AT_LEAST_1,
        "aux_weight": NON_NEGATIVE, "value_warmup_updates": NON_NEGATIVE,
        "bc_label_smoothing": Range(0, 1, high_open=True)}
    # Removed after it measured no better (docs/results.md); older checkpoints load without it.
    RETIRED: ClassVar[dict[str, str]] = {"shaped_reward": "nothing (paying the reward step by step "
                                                          "measured no better and was removed)"}


# ---------------------------------------------------------------------------- advantages

def compute_gae(rewards: np.ndarray, values: np.ndarray, ends: np.ndarray, last_values: np.ndarray,
                gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimates, per environment (column), stopping at episode ends.

    Args:
        rewards, values : np.ndarray [shape=(T, N)]: reward after step t and V(obs_t)
        ends : np.ndarray [shape=(T, N)], bool: the episode ended at step t (terminated or
            truncated; the environments pay the reward at the end, so nothing is
            bootstrapped past it)
        last_values : np.ndarray [shape=(N,)], V of the observation after the last step

    Returns:
        (advantages, returns) : np.ndarray [shape=(T, N)], returns = advantages + values
    """
    n_steps = len(rewards)
    adv = np.zeros_like(values, dtype=np.float64)
    running = np.zeros(values.shape[1])
    for t in reversed(range(n_steps)):
        next_value = last_values if t == n_steps - 1 else values[t + 1]
        live = 1.0 - ends[t].astype(np.float64)
        delta = rewards[t] + gamma * next_value * live - values[t]
        running = delta + gamma * gae_lambda * live * running
        adv[t] = running
    return adv.astype(np.float32), (adv + values).astype(np.float32)


# ---------------------------------------------------------------------------- rollout

@dataclass
class Rollout:
    """n_steps of N environments. masks: the masks each action was drawn under (None for
    tasks without masks); cursors, recordings: info['cursor'] and info['recording'] at
    each observation (-1 when absent), for the auxiliary targets."""

    obs: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    ends: np.ndarray
    masks: np.ndarray | None
    cursors: np.ndarray
    recordings: np.ndarray
    last_values: np.ndarray


@dataclass
class Episode:
    """A finished episode: env index, return, length, reward components (if any)."""

    env: int
    reward: float
    length: int
    components: dict[str, float]


@dataclass
class RolloutState:
    """Where the environments are between rollouts."""

    obs: np.ndarray
    masks: np.ndarray | None
    cursors: np.ndarray
    recordings: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray


def _mask_of(info: dict):
    return info.get("action_mask")


def start(venv) -> RolloutState:
    """Reset a stable-baselines3 VecEnv and read its first masks."""
    obs = venv.reset()
    infos = list(getattr(venv, "reset_infos", [{}] * venv.num_envs))
    return RolloutState(obs, _stack_masks(infos), _info_ints(infos, "cursor"),
                        _info_ints(infos, "recording"), np.zeros(venv.num_envs),
                        np.zeros(venv.num_envs, np.int64))


def _stack_masks(infos: list[dict]) -> np.ndarray | None:
    masks = [_mask_of(i) for i in infos]
    return None if any(m is None for m in masks) else np.stack(masks)


def _info_ints(infos: list[dict], key: str) -> np.ndarray:
    return np.array([i.get(key, -1) for i in infos], np.int64)


def _tensor(x, device, dtype=None):
    return torch.as_tensor(x, device=device, dtype=dtype)


def collect(venv, agent, state: RolloutState, n_steps: int, device) -> tuple[Rollout, list[Episode]]:
    """Run the agent n_steps in every environment (sampling its actions)."""
    n = venv.num_envs
    obs_buf, act_buf, logp_buf, val_buf, rew_buf, end_buf, mask_buf, cur_buf, rec_buf = ([] for _ in range(9))
    episodes: list[Episode] = []
    for _ in range(n_steps):
        with torch.no_grad():
            masks = None if state.masks is None else _tensor(state.masks, device)
            actions, log_prob, value = agent.act(_tensor(state.obs, device, torch.float32), masks)
        actions_np = actions.cpu().numpy()
        next_obs, rewards, dones, infos = venv.step(actions_np if actions_np.ndim > 1 and actions_np.shape[1] > 1
                                                    else actions_np.reshape(n))
        obs_buf.append(state.obs)
        act_buf.append(actions_np.reshape(n, -1))
        logp_buf.append(log_prob.cpu().numpy())
        val_buf.append(value.cpu().numpy())
        rew_buf.append(rewards)
        end_buf.append(dones)
        mask_buf.append(state.masks)
        cur_buf.append(state.cursors)
        rec_buf.append(state.recordings)
        state.returns += rewards
        state.lengths += 1
        next_infos = []
        for i, (done, info) in enumerate(zip(dones, infos)):
            if done:
                episodes.append(Episode(i, float(state.returns[i]), int(state.lengths[i]),
                                        dict(info.get("reward_components", {}))))
                state.returns[i], state.lengths[i] = 0.0, 0
                next_infos.append(venv.reset_infos[i] if hasattr(venv, "reset_infos") else {})
            else:
                next_infos.append(info)
        state.obs, state.masks = next_obs, _stack_masks(next_infos)
        state.cursors, state.recordings = _info_ints(next_infos, "cursor"), _info_ints(next_infos, "recording")
    with torch.no_grad():
        last_values = agent.value(_tensor(state.obs, device, torch.float32)).cpu().numpy()
    rollout = Rollout(np.stack(obs_buf).astype(np.float32), np.stack(act_buf), np.stack(logp_buf),
                      np.stack(val_buf), np.stack(rew_buf).astype(np.float32), np.stack(end_buf),
                      None if mask_buf[0] is None else np.stack(mask_buf), np.stack(cur_buf),
                      np.stack(rec_buf), last_values)
    return rollout, episodes


# ---------------------------------------------------------------------------- update

@dataclass
class BCSource:
    """Labelled (state, mask, action) samples for the BC loss, with auxiliary targets
    (None: no auxiliary loss on them). All arrays share their first dimension."""

    obs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    aux: dict[str, np.ndarray] | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def __len__(self) -> int:
        return len(self.obs)

    def batch(self, size: int, device, rows: np.ndarray | None = None) -> dict:
        rows = self.rng.integers(0, len(self), size) if rows is None else rows
        out = {"obs": _tensor(self.obs[rows], device, torch.float32),
               "masks": _tensor(self.masks[rows], device), "actions": _tensor(self.actions[rows], device, torch.long)}
        if self.aux is not None:
            out["aux"] = {k: _tensor(v[rows], device, torch.float32) for k, v in self.aux.items()}
        return out


def bc_loss(agent, batch: dict, label_smoothing: float = 0.0
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The BC loss of a batch of labelled steps: the negative log-likelihood of the labelled
    actions under the masks they were labelled with, the policy's entropy on those states
    (divided by the 3 heads), and the auxiliary losses when the batch has targets.

    label_smoothing: at each head, this share of the target is spread evenly over the
        allowed choices (cross-entropy with (1 - e) * label + e * uniform).

    Returns:
        (nll, entropy, {task: loss})
    """
    out = agent.evaluate(batch["obs"], batch["masks"], batch["actions"])
    aux = aux_losses(agent.aux(out), batch["aux"]) if "aux" in batch else {}
    nll = -out.log_prob.mean()
    if label_smoothing > 0:
        nll = (1 - label_smoothing) * nll - label_smoothing * out.uniform_log_prob.mean()
    return nll, out.entropy.mean(), aux


def autocast(device: torch.device, enabled: bool):
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def update(agent, optimizer, rollout: Rollout, advantages: np.ndarray, returns: np.ndarray,
           config: PPOConfig, device, *, scaler=None, bc: BCSource | None = None,
           aux_targets: dict[str, np.ndarray] | None = None,
           rng: np.random.Generator | None = None, value_only: bool = False) -> dict[str, float]:
    """n_epochs of clipped-surrogate minibatch updates over one rollout, with the BC loss
    (weight bc_weight) and auxiliary losses (weight aux_weight) added to every minibatch;
    value_only: only the value loss (the policy's weights get no gradient).

    Returns the means of the logged quantities over the minibatches run.
    """
    rng = rng or np.random.default_rng()
    size = rollout.rewards.size
    flat = lambda x: x.reshape((size,) + x.shape[2:])
    obs = _tensor(flat(rollout.obs), device, torch.float32)
    actions = _tensor(flat(rollout.actions), device, torch.long)
    masks = None if rollout.masks is None else _tensor(flat(rollout.masks), device)
    old_logp = _tensor(flat(rollout.log_probs), device, torch.float32)
    adv_all = _tensor(flat(advantages), device, torch.float32)
    ret_all = _tensor(flat(returns), device, torch.float32)
    aux_all = None if aux_targets is None else {k: _tensor(flat(v), device, torch.float32)
                                                for k, v in aux_targets.items()}
    sums: dict[str, float] = {}
    count = 0
    stopped = False
    for _ in range(config.n_epochs):
        order = rng.permutation(size)
        for lo in range(0, size, config.minibatch_size):
            mb = _tensor(order[lo:lo + config.minibatch_size], device, torch.long)
            with autocast(device, config.amp):
                out = agent.evaluate(obs[mb], None if masks is None else masks[mb], actions[mb])
                logratio = out.log_prob.float() - old_logp[mb]
                ratio = logratio.exp()
                adv = adv_all[mb]
                if config.norm_adv and len(mb) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio,
                                    -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)).mean()
                v_loss = 0.5 * (agent.value(obs[mb]).float() - ret_all[mb]).pow(2).mean()
                entropy = out.entropy.float().mean()
                loss = pg_loss + config.vf_coef * v_loss - config.ent_coef * entropy
                logs = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy}
                if value_only:
                    loss = config.vf_coef * v_loss
                elif aux_all is not None and config.aux_weight > 0:
                    aux = aux_losses(agent.aux(out), {k: v[mb] for k, v in aux_all.items()})
                    loss = loss + config.aux_weight * sum(aux.values())
                    logs |= {f"aux_{k}": v for k, v in aux.items()}
                if bc is not None and config.bc_weight > 0 and not value_only:
                    b = bc.batch(config.bc_batch_size, device)
                    nll, bc_entropy, bc_aux = bc_loss(agent, b, config.bc_label_smoothing)
                    loss = loss + config.bc_weight * nll
                    if bc_aux and config.aux_weight > 0:
                        loss = loss + config.aux_weight * sum(bc_aux.values())
                    logs |= {"bc_loss": nll, "bc_entropy": bc_entropy}
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None and scaler.is_enabled():
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
                optimizer.step()
            with torch.no_grad():
                logs["approx_kl"] = ((ratio - 1) - logratio).mean()
                logs["clip_fraction"] = ((ratio - 1).abs() > config.clip_coef).float().mean()
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            count += 1
            if not value_only and config.target_kl is not None and float(logs["approx_kl"]) > config.target_kl:
                stopped = True
                break
        if stopped:
            break
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out["minibatches"] = float(count)
    out["early_stop"] = float(stopped)
    var = float(np.var(returns))
    out["explained_variance"] = (float("nan") if var == 0 else
                                 1.0 - float(np.var(returns - rollout.values)) / var)
    return out


# ---------------------------------------------------------------------------- the loop

@dataclass
class UpdateReport:
    """What one PPO update did: its losses, the episodes that finished in its rollout and
    the action types drawn."""

    update: int
    stats: dict[str, float]
    episodes: list[Episode]
    type_counts: np.ndarray
    seconds: float


def learn(venv, agent, config: PPOConfig, n_updates: int, *, device=torch.device("cpu"),
          optimizer: torch.optim.Optimizer | None = None, bc: BCSource | None = None,
          aux_fn: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]] | None = None,
          writer=None, start_update: int = 0, seed: int = 0,
          on_update: Callable[[UpdateReport], bool | None] | None = None) -> list[UpdateReport]:
    """Train `agent` with PPO on the environments of `venv` for n_updates rollouts.

    Args:
        venv: a stable-baselines3 VecEnv (its infos may carry 'action_mask' and 'cursor').
        optimizer: default Adam(lr=config.learning_rate).
        bc: labelled samples whose loss is mixed in with config.bc_weight.
        aux_fn: (recordings (T, N), cursors (T, N)) -> auxiliary targets for the rollout's
            states (None: no auxiliary loss on rollout states).
        writer: a TensorBoard SummaryWriter (None: no logging).
        on_update: called after every update; returning True stops training.

    Returns:
        one UpdateReport per update.
    """
    optimizer = optimizer or torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp and device.type == "cuda")
    rng = np.random.default_rng(seed)
    state = start(venv)
    reports = []
    for u in range(start_update, start_update + n_updates):
        t0 = time.perf_counter()
        agent.eval()
        rollout, episodes = collect(venv, agent, state, config.n_steps, device)
        advantages, returns = compute_gae(rollout.rewards, rollout.values, rollout.ends,
                                          rollout.last_values, config.gamma, config.gae_lambda)
        aux_targets = None
        if aux_fn is not None:
            aux_targets = aux_fn(rollout.recordings, rollout.cursors)
        agent.train()
        stats = update(agent, optimizer, rollout, advantages, returns, config, device, scaler=scaler,
                       bc=bc, aux_targets=aux_targets, rng=rng,
                       value_only=u - start_update < config.value_warmup_updates)
        types = rollout.actions[..., 0].ravel() if rollout.actions.shape[-1] == 3 else None
        counts = (np.bincount(types, minlength=len(ActionType)) if types is not None
                  else np.zeros(len(ActionType), np.int64))
        report = UpdateReport(u + 1, stats, episodes, counts, time.perf_counter() - t0)
        if writer is not None:
            log_update(writer, report, steps=(u + 1) * config.n_steps * venv.num_envs)
        reports.append(report)
        if on_update is not None and on_update(report):
            break
    return reports


def log_update(writer, report: UpdateReport, steps: int) -> None:
    """TensorBoard scalars of one update: train/* losses and entropies, approx_kl,
    train/episode_reward and reward/<component> means over the finished episodes,
    counters/n_keep_ratio (share of KEEP actions) and actions/<TYPE> shares."""
    s = report.stats
    for k in ("policy_loss", "value_loss", "entropy", "bc_loss", "bc_entropy", "clip_fraction",
              "explained_variance", "early_stop"):
        if k in s and not math.isnan(s[k]):
            writer.add_scalar(f"train/{k}", s[k], steps)
    writer.add_scalar("approx_kl", s["approx_kl"], steps)
    for k, v in s.items():
        if k.startswith("aux_"):
            writer.add_scalar(f"aux/{k[4:]}", v, steps)
    if report.episodes:
        writer.add_scalar("train/episode_reward", float(np.mean([e.reward for e in report.episodes])), steps)
        writer.add_scalar("train/episode_length", float(np.mean([e.length for e in report.episodes])), steps)
        names = sorted({k for e in report.episodes for k in e.components})
        for name in names:
            writer.add_scalar(f"reward/{name}", float(np.mean([e.components[name] for e in report.episodes
                                                               if name in e.components])), steps)
    total = report.type_counts.sum()
    if total:
        share = report.type_counts / total
        writer.add_scalar("counters/n_keep_ratio", float(share[ActionType.KEEP]), steps)
        for t in ActionType:
            writer.add_scalar(f"actions/{t.name}", float(share[t]), steps)
        writer.add_histogram("actions/type", np.repeat(np.arange(len(share)), report.type_counts), steps)
    writer.add_scalar("time/seconds_per_update", report.seconds, steps)
