"""Tests of the RL editor's training: the compact PPO (it learns CartPole; GAE per
environment; masks from the rollout in the update), the agent (neighbourhood attention
against a naive reference, config errors, entropy over 3 heads), BC labels that replay the
aligned edit, augmentation that changes real audio, the normalizer in the checkpoint, and
one end-to-end CLI run (synth -> bc-labels -> train rl -> edit).

Budget: about 2 minutes on a loaded 2-core machine without the slow test (three synthetic
1.5-minute pairs, labelled once per module; tiny networks); the slow test is the CI-sized
end-to-end run (about 2 more minutes).
"""
from __future__ import annotations

import json
import os
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from editorbot.config import load
from editorbot.errors import UserError
from editorbot.features import FeatureParams
from editorbot.rl import agent as agent_mod
from editorbot.rl.actions import ACTION_DIMS, N_AMOUNTS, N_SIZES, N_TYPES, ActionType
from editorbot.rl.agent import Agent, AgentConfig, na1d, na1d_reference, na1d_torch
from editorbot.rl.bc_labels import (BCDataset, build_bc_dataset, detour_dataset, edit_to_pieces,
                                    human_source, label_pieces)
from editorbot.rl.beat_features import feature_slice
from editorbot.rl.ppo import BCSource, PPOConfig, Rollout, collect, compute_gae, learn, start, update
from editorbot.rl.state import STATE_DIM, FeatureNormalizer
from editorbot.rl.train import RLConfig, make_envs, pretrain_bc, train
from editorbot.training import Run

from .conftest import REPO, run_cli

T = ActionType
TINY_AGENT = AgentConfig(policy_hidden_dim=16, value_hidden_dim=8, n_layers=1, natten_n_heads=2,
                         natten_kernel_size=3, type_embed_dim=8)
N_MELS = FeatureParams().n_mels
TINY = ["agent.policy_hidden_dim=16", "agent.value_hidden_dim=8", "agent.n_layers=1",
        "agent.natten_n_heads=2", "agent.natten_kernel_size=3", "agent.type_embed_dim=8"]


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ a small synthetic corpus

def write_small_corpus(out_dir: Path) -> Path:
    """Two trimmer pairs and one looper pair of 1.5-minute jams, with truth files."""
    from editorbot.synth.corpus import write_corpus

    write_corpus(out_dir, pairs=2, seed=3, minutes=1.5, persona="trimmer", mastering="none",
                 write_unmastered=False, progress=False)
    write_corpus(out_dir, pairs=1, seed=4, minutes=1.5, persona="looper", mastering="none",
                 write_unmastered=False, progress=False)
    return out_dir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(data_dir, cache_dir, dataset, labels, labels file) of the small corpus."""
    root = tmp_path_factory.mktemp("rl_train")
    data_dir = write_small_corpus(root / "training_data")
    cache_dir = root / "cache"
    dataset, labels = build_bc_dataset(data_dir, params=FeatureParams(), cache_dir=cache_dir, progress=False)
    path = dataset.save(root / "bc_rich.npz")
    return data_dir, cache_dir, dataset, labels, path


# ------------------------------------------------------------------ PPO on a standard task

class MLPAgent(nn.Module):
    """A discrete-action agent with ppo.py's interface (act, evaluate, value)."""

    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        self.pi = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                                nn.Linear(64, n_actions))
        self.v = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                               nn.Linear(64, 1))

    def _dist(self, obs, masks):
        logits = self.pi(obs)
        if masks is not None:
            logits = logits.masked_fill(~masks, -1e9)
        return torch.distributions.Categorical(logits=logits)

    def act(self, obs, masks, deterministic=False):
        d = self._dist(obs, masks)
        a = d.probs.argmax(-1) if deterministic else d.sample()
        return a, d.log_prob(a), self.value(obs)

    def evaluate(self, obs, masks, actions):
        d = self._dist(obs, masks)
        a = actions.reshape(-1)
        return types.SimpleNamespace(log_prob=d.log_prob(a), entropy=d.entropy())

    def value(self, obs):
        return self.v(obs).squeeze(-1)


def cartpole_return(policy, episodes: int = 5, seed: int = 100) -> float:
    env = gym.make("CartPole-v1")
    total = 0.0
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        done = False
        while not done:
            obs, r, term, trunc, _ = env.step(policy(obs))
            total += r
            done = term or trunc
    return total / episodes


def test_compact_ppo_learns_cartpole():
    """CartPole-v1: a random policy lasts about 22 steps; after 40 updates (20k steps) the
    deterministic PPO policy balances far longer."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.manual_seed(0)
    venv = DummyVecEnv([lambda: gym.make("CartPole-v1") for _ in range(4)])
    venv.seed(0)
    agent = MLPAgent(4, 2)
    rng = np.random.default_rng(0)
    random_return = cartpole_return(lambda obs: int(rng.integers(2)))
    reports = learn(venv, agent, PPOConfig(n_steps=128, n_epochs=4, minibatch_size=128,
                                           learning_rate=1e-3, target_kl=None), 40, seed=0)
    venv.close()

    def greedy(obs):
        with torch.no_grad():
            return int(agent.act(torch.as_tensor(obs[None], dtype=torch.float32), None,
                                 deterministic=True)[0])

    trained = cartpole_return(greedy)
    first = np.mean([e.reward for e in reports[0].episodes])
    assert random_return < 40 and first < 40
    assert trained >= 150, (random_return, trained)


def test_gae_per_environment_stops_at_episode_ends():
    """Hand-computed GAE (gamma 0.9, lambda 0.8): env 0 ends an episode at t=1, env 1 at
    t=2; nothing is bootstrapped past an end and the columns do not mix."""
    rewards = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    values = np.array([[0.5, 0.1], [0.4, 0.2], [0.3, 0.3]])
    ends = np.array([[False, False], [True, False], [False, True]])
    last = np.array([1.0, 5.0])
    adv, ret = compute_gae(rewards, values, ends, last, 0.9, 0.8)
    # env 0: t2 = 2 + .9*1 - .3; t1 = 0 - .4 (ended); t0 = 1 + .9*.4 - .5 + .72*t1
    # env 1: t2 = 1 - .3 (ended); t1 = .9*.3 - .2 + .72*t2; t0 = .9*.2 - .1 + .72*t1
    expected = np.array([[0.572, 0.49328], [-0.4, 0.574], [2.6, 0.7]])
    np.testing.assert_allclose(adv, expected, atol=1e-5)
    np.testing.assert_allclose(ret, expected + values, atol=1e-5)
    swapped, _ = compute_gae(rewards[:, ::-1], values[:, ::-1], ends[:, ::-1], last[::-1], 0.9, 0.8)
    np.testing.assert_allclose(swapped, expected[:, ::-1], atol=1e-5)


# ------------------------------------------------------------------ agent

def random_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Masks that allow a few random joint actions per row (always at least one)."""
    masks = rng.random((n,) + ACTION_DIMS) < 0.05
    for i in range(n):
        masks[i, rng.integers(N_TYPES), rng.integers(N_SIZES), rng.integers(N_AMOUNTS)] = True
    return masks


def test_masked_actions_have_zero_probability():
    torch.manual_seed(0)
    agent = Agent(TINY_AGENT, n_mels=N_MELS)
    rng = np.random.default_rng(0)
    obs = torch.randn(64, STATE_DIM)
    masks = torch.as_tensor(random_masks(rng, 64))
    for _ in range(20):
        actions, _, _ = agent.act(obs, masks)
        a = actions.numpy()
        assert masks.numpy()[np.arange(64), a[:, 0], a[:, 1], a[:, 2]].all()
    # the probabilities of the valid joint actions add up to 1, the others get none
    row = masks[:1]
    valid = np.argwhere(row[0].numpy())
    invalid = np.argwhere(~row[0].numpy())[:50]
    with torch.no_grad():
        p_valid = agent.evaluate(obs[:1].expand(len(valid), -1), row.expand(len(valid), -1, -1, -1),
                                 torch.as_tensor(valid)).log_prob.exp()
        p_invalid = agent.evaluate(obs[:1].expand(len(invalid), -1), row.expand(len(invalid), -1, -1, -1),
                                   torch.as_tensor(invalid)).log_prob.exp()
    assert abs(float(p_valid.sum()) - 1) < 1e-4
    assert float(p_invalid.max()) == 0.0


def test_update_uses_the_rollout_masks():
    """Each stored step allows only the action taken: under those masks its log-probability
    is 0 and the entropy 0, so the update sees ratio 1, no entropy and no KL. Under the full
    masks (ignoring the rollout's) the entropy would be large."""
    torch.manual_seed(0)
    agent = Agent(TINY_AGENT, n_mels=N_MELS)
    rng = np.random.default_rng(1)
    t, n = 8, 2
    actions = np.stack([rng.integers(0, d, (t, n)) for d in ACTION_DIMS], -1)
    masks = np.zeros((t, n) + ACTION_DIMS, bool)
    for i in range(t):
        for j in range(n):
            masks[i, j][tuple(actions[i, j])] = True
    rollout = Rollout(rng.standard_normal((t, n, STATE_DIM)).astype(np.float32), actions,
                      np.zeros((t, n), np.float32), np.zeros((t, n), np.float32),
                      rng.standard_normal((t, n)).astype(np.float32), np.zeros((t, n), bool), masks,
                      np.full((t, n), -1), np.full((t, n), -1), np.zeros(n, np.float32))
    adv, ret = compute_gae(rollout.rewards, rollout.values, rollout.ends, rollout.last_values, 0.99, 0.95)
    opt = torch.optim.Adam(agent.parameters(), lr=1e-3)
    stats = update(agent, opt, rollout, adv, ret, PPOConfig(n_epochs=2, minibatch_size=8), torch.device("cpu"),
                   rng=np.random.default_rng(0))
    assert stats["entropy"] < 1e-6 and abs(stats["approx_kl"]) < 1e-6 and stats["clip_fraction"] == 0
    full = torch.ones((t * n,) + ACTION_DIMS, dtype=torch.bool)
    with torch.no_grad():
        free = agent.evaluate(torch.as_tensor(rollout.obs.reshape(t * n, -1)), full,
                              torch.as_tensor(actions.reshape(t * n, 3)))
    assert float(free.entropy.mean()) > 1.0


def test_entropy_is_divided_by_the_three_heads():
    agent = Agent(TINY_AGENT, n_mels=N_MELS)
    with torch.no_grad():
        for head in (agent.policy.type_head, agent.policy.size_head[-1], agent.policy.amount_head[-1]):
            head.weight.zero_()
            head.bias.zero_()
    obs = torch.randn(4, STATE_DIM)
    full = torch.ones((4,) + ACTION_DIMS, dtype=torch.bool)
    out = agent.evaluate(obs, full, torch.zeros(4, 3, dtype=torch.long))
    expected = (np.log(N_TYPES) + np.log(N_SIZES) + np.log(N_AMOUNTS)) / 3
    np.testing.assert_allclose(out.entropy.detach().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(out.head_entropy[0].detach().numpy(),
                               [np.log(N_TYPES), np.log(N_SIZES), np.log(N_AMOUNTS)], rtol=1e-5)


def test_bc_label_smoothing_fits_the_smoothed_target():
    """With label smoothing e, the BC loss of one state is minimised where each head gives
    its label 1 - e + e / n (n allowed choices) and every other allowed choice e / n; masked
    choices stay at 0. Without smoothing the label's probability goes to 1."""
    from editorbot.rl.ppo import bc_loss

    masks = torch.zeros((1,) + ACTION_DIMS, dtype=torch.bool)
    masks[0, :4, :3, :2] = True  # 4 types, 3 sizes, 2 amounts allowed
    label = torch.tensor([[2, 1, 0]])
    obs = torch.randn(1, STATE_DIM, generator=torch.Generator().manual_seed(0))
    for eps in (0.0, 0.2):
        torch.manual_seed(0)
        agent = Agent(TINY_AGENT, n_mels=N_MELS)
        opt = torch.optim.Adam(agent.policy.parameters(), lr=3e-2)
        batch = {"obs": obs, "masks": masks, "actions": label}
        for _ in range(300):
            loss, _, _ = bc_loss(agent, batch, eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            h = agent.policy.encoder(obs)
            p_type = agent_mod.masked_log_softmax(agent.policy.type_head(h), masks.any(-1).any(-1)).exp()[0]
            p_joint = agent.evaluate(obs, masks, label).log_prob.exp()[0]
        want = 1 - eps + eps / 4
        assert abs(float(p_type[2]) - want) < 0.01
        if eps:
            assert abs(float(p_type[0]) - eps / 4) < 0.01
        assert float(p_type[4:].sum()) < 1e-6
        # all three heads: (1 - e + e/4)(1 - e + e/3)(1 - e + e/2)
        assert abs(float(p_joint) - want * (1 - eps + eps / 3) * (1 - eps + eps / 2)) < 0.02


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_neighbourhood_attention_equals_naive_reference(kernel):
    g = torch.Generator().manual_seed(kernel)
    q, k, v = (torch.randn(2, 7, 3, 4, generator=g) for _ in range(3))
    out = na1d_torch(q, k, v, kernel)
    torch.testing.assert_close(out, na1d_reference(q, k, v, kernel), rtol=1e-5, atol=1e-6)
    if kernel == 1:       # each beat attends only to itself
        torch.testing.assert_close(out, v)
    if kernel == 7:       # the whole context: ordinary softmax attention
        full = torch.einsum("blhd,bmhd->bhlm", q, k).div(2.0).softmax(-1)
        torch.testing.assert_close(out, torch.einsum("bhlm,bmhd->blhd", full, v), rtol=1e-5, atol=1e-6)


def test_natten_matches_the_pure_pytorch_attention():
    if agent_mod.NATTEN_NA1D is None:
        pytest.skip("NATTEN is not installed; the pure-PyTorch path is the one in use")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 7, 2, 8, generator=g) for _ in range(3))
    with torch.no_grad():
        torch.testing.assert_close(na1d(q, k, v, 5, use_natten=True), na1d_torch(q, k, v, 5),
                                   rtol=1e-4, atol=1e-5)


def test_mel_head_follows_the_checkpoints_analysis_grid():
    """The mel auxiliary head has the n_mels of the grid the agent trained on, read from the
    checkpoint's feature params, not from a module global (issue 25)."""
    from editorbot.config import to_dict
    from editorbot.rl.beat_features import FEATURE_VERSION
    from editorbot.rl.infer import load_agent

    params = FeatureParams(n_mels=64)
    config = RLConfig(agent=TINY_AGENT)
    ckpt = {"kind": "rl", "beat_feature_version": FEATURE_VERSION, "state_dim": STATE_DIM,
            "config": to_dict(config), "feature_params": params.as_dict(),
            "model_state": Agent(TINY_AGENT, n_mels=64).state_dict(),
            "normalizer": FeatureNormalizer.identity().to_dict()}
    agent, _, _, loaded = load_agent(ckpt)
    assert loaded == params
    obs = torch.zeros(2, STATE_DIM)
    masks = torch.ones(2, N_TYPES, N_SIZES, N_AMOUNTS, dtype=torch.bool)
    with torch.no_grad():
        out = agent.evaluate(obs, masks, torch.zeros(2, 3, dtype=torch.long))
    assert agent.aux(out)["mel"].shape == (2, 64)


def test_agent_config_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="policy_hidden_dim 30 is not divisible by agent.natten_n_heads 4"):
        AgentConfig(policy_hidden_dim=30, natten_n_heads=4)
    with pytest.raises(UserError, match="natten_kernel_size 4: must be odd"):
        AgentConfig(natten_kernel_size=4)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"agent": {"natten_kernel_size": 6}}))
    with pytest.raises(UserError, match="natten_kernel_size 6"):
        load(RLConfig, bad)
    result = run_cli("train", "rl", "--config", str(bad), "--data-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    assert str(bad) in result.stderr and "must be odd" in result.stderr


# ------------------------------------------------------------------ BC labels and augmentation

def test_bc_labels_replay_the_aligned_edits(corpus):
    """The labels, replayed in the environment, play the raw frames the human edit plays
    (kept-raw IoU >= 0.95), are valid under their masks, and earn the full human_match."""
    data_dir, _, dataset, labels, _ = corpus
    assert len(dataset.recordings) == 3
    for rec in dataset.recordings:
        lab = labels[rec.name]
        assert lab.kept_iou(rec.features.duration_s, dataset.params) >= 0.95, rec.name
        assert lab.components["human_match"] >= 0.9, rec.name
        assert lab.masks[np.arange(len(lab.actions)), lab.actions[:, 0], lab.actions[:, 1],
                         lab.actions[:, 2]].all()
    counts = np.bincount(dataset.actions[:, 0], minlength=N_TYPES)
    assert counts[T.KEEP] > 0 and counts[T.CUT] + counts[T.SKIP] > 0
    looper = [r for r in dataset.recordings if "looper" in r.name][0]
    looper_types = set(labels[looper.name].actions[:, 0].tolist())
    assert looper_types & {T.LOOP, T.REPEAT_PREV, T.JUMP_BACK, T.REORDER, T.SWAP_NEXT}
    again = BCDataset.load(corpus[4])
    np.testing.assert_array_equal(again.actions, dataset.actions)
    np.testing.assert_array_equal(again.masks, dataset.masks)


def test_detour_labels_reproduce_the_same_edit_from_other_cursors(corpus):
    """Plans with detours play the same raw frames as the human edit (IoU >= 0.95), their
    labels are valid under their masks, and they label cursors the canonical plan never
    stands on; detour_dataset names the real recording as their origin."""
    from editorbot.layout import Layout, discover
    from editorbot.rl.env import EnvConfig

    data_dir, cache_dir, dataset, labels, _ = corpus
    pairs = {p.name: p for p in discover(data_dir).pairs}
    rng = np.random.default_rng(0)
    new_cursors = 0
    for rec in dataset.recordings:
        src = human_source(pairs[rec.name], Layout(data_dir, cache_dir), params=dataset.params)
        pieces = edit_to_pieces(src.edit, rec.features.bounds_s)
        for _ in range(3):
            lab = label_pieces(rec.raw_path, rec.features, pieces, config=EnvConfig(), params=dataset.params,
                               pointers=src.pointers, target_keep_ratio=rec.target_keep_ratio, rng=rng)
            assert lab.kept_iou(rec.features.duration_s, dataset.params) >= 0.95, rec.name
            assert lab.masks[np.arange(len(lab.actions)), lab.actions[:, 0], lab.actions[:, 1],
                             lab.actions[:, 2]].all()
            new_cursors += len(set(lab.cursors.tolist()) - set(labels[rec.name].cursors.tolist()))
    assert new_cursors > 0
    extra = detour_dataset(dataset, data_dir, cache_dir=cache_dir, n_detours=2, seed=0)
    assert len(extra.recordings) == 2 * len(dataset.recordings) and len(extra) > 0
    assert {r.real_name for r in extra.recordings} == {r.name for r in dataset.recordings}
    assert all(r.origin for r in extra.recordings)


def test_bc_augment_makes_rare_types_from_changed_audio(corpus, tmp_path):
    """GAIN (absent from the labels) gets examples at passages made quieter by exactly the
    amount the label turns them up (seen in the rms feature of the changed recording), and
    SWAP_NEXT at swapped blocks; the new recordings are real audio files."""
    from editorbot.rl.actions import amount_value
    from editorbot.rl.bc_augment import augment

    _, cache_dir, dataset, _, _ = corpus
    counts = np.bincount(dataset.actions[:, 0], minlength=N_TYPES)
    assert counts[T.GAIN] == 0
    result = augment(dataset, min_samples=max(counts[T.SWAP_NEXT], 0) + 3, audio_dir=tmp_path / "aug",
                     cache_dir=cache_dir, max_recordings=4, seed=0, types=[T.GAIN, T.SWAP_NEXT],
                     progress=False)
    out = result.dataset
    assert result.n_recordings >= 2 and len(out) > len(dataset)
    new_rows = np.arange(len(dataset), len(out))
    new_types = set(out.actions[new_rows, 0].tolist())
    assert new_types == {T.GAIN, T.SWAP_NEXT}
    rms = feature_slice("spectral").start
    by_name = {r.name: r for r in out.recordings}
    checked = 0
    for row in new_rows:
        rec = out.recordings[out.rec[row]]
        assert rec.origin in by_name and not by_name[rec.origin].origin and Path(rec.raw_path).is_file()
        if out.actions[row, 0] != T.GAIN:
            continue
        src = by_name[rec.origin]
        c = out.cursors[row]
        n = [1, 4, 16, 8, 32][out.actions[row, 1]]
        gain_db = amount_value(T.GAIN, out.actions[row, 2])
        drop_db = 80 * (src.features.features[c:c + n, rms] - rec.features.features[c:c + n, rms])
        assert abs(np.median(drop_db) - gain_db) < 1.0, (gain_db, drop_db)
        norm = FeatureNormalizer.fit([src.features.features])
        seen = out.observations(norm, np.array([row]))[0, :7 * 121].reshape(7, 121)[3]
        np.testing.assert_allclose(seen, norm(rec.features.features[c:c + 1])[0], atol=1e-5)
        assert np.abs(seen - norm(src.features.features[c:c + 1])[0]).max() > 0.1
        checked += 1
    assert checked >= 1
    assert any("SWAP_NEXT" in line for line in result.notes)


# ------------------------------------------------------------------ training and inference

def test_bc_pretraining_fits_the_labels_and_trains_the_auxiliary_heads(corpus):
    """On the corpus' labelled steps BC drives the labels' NLL down and the deterministic
    policy to most of the labelled types; the auxiliary losses (tempo, energy, phrase, mel)
    fall as well."""
    from editorbot.rl.ppo import bc_loss
    from editorbot.rl.train import TrainConfig

    _, _, dataset, _, _ = corpus
    norm = FeatureNormalizer.fit([r.features.features for r in dataset.recordings])
    source = BCSource(dataset.observations(norm), dataset.masks, dataset.actions, dataset.aux_targets())
    torch.manual_seed(0)
    agent = Agent(TINY_AGENT, n_mels=N_MELS)
    every = source.batch(0, torch.device("cpu"), rows=np.arange(len(source)))
    with torch.no_grad():
        nll0, _, aux0 = bc_loss(agent, every)
    writer = types.SimpleNamespace(add_scalar=lambda *a, **k: None)
    metrics = pretrain_bc(agent, source, TrainConfig(bc_pretrain_epochs=60, bc_batch_size=32), 1.0,
                          torch.device("cpu"), writer, progress=False)
    with torch.no_grad():
        nll1, _, aux1 = bc_loss(agent, every)
    assert float(nll1) < 0.3 * float(nll0)
    assert metrics["type_accuracy"] >= 0.8
    for task in ("tempo", "energy", "mel"):
        assert float(aux1[task]) < 0.5 * float(aux0[task]), task
    assert float(aux1["phrase"]) < float(aux0["phrase"])


def test_normalizer_is_saved_in_the_checkpoint_and_used_to_edit(corpus, tmp_path, monkeypatch):
    """The checkpoint holds the normalizer fitted on the training recordings (not the held
    out one), and `propose_edit` builds its observations with exactly that normalizer."""
    from editorbot.editors import load_checkpoint
    from editorbot.rl import infer

    data_dir, cache_dir, dataset, _, path = corpus
    names = sorted({r.name for r in dataset.recordings if not r.origin})
    held = names[-1]  # held out by name (train.val_names), not by the seeded split
    settings = TINY + ["train.n_updates=1", "ppo.n_steps=16", "train.bc_pretrain_epochs=2"]
    with pytest.raises(UserError, match="train.val_names: no recording named nosuch"):
        train(load(RLConfig, REPO / "configs" / "rl" / "small.json", settings + ['train.val_names=["nosuch"]']),
              Run(tmp_path / "bad", data_dir, cache_dir, progress=False), bc_pretrain=path)
    config = load(RLConfig, REPO / "configs" / "rl" / "small.json", settings + [f'train.val_names=["{held}"]'])
    result = train(config, Run(tmp_path / "run", data_dir, cache_dir, progress=False),
                   bc_pretrain=path, bc_mixed=path)
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    train_feats = [r.features.features for r in dataset.recordings if r.name in result.train_names]
    assert result.val_names == [held] and sorted(result.train_names) == names[:-1]
    expected = FeatureNormalizer.fit(train_feats)
    np.testing.assert_allclose(ckpt["normalizer"]["mean"], expected.mean)
    np.testing.assert_allclose(ckpt["normalizer"]["std"], expected.std)
    everything = FeatureNormalizer.fit([r.features.features for r in dataset.recordings])
    assert not np.allclose(everything.mean, expected.mean)

    seen = []
    real_env = infer.EditEnv

    def spy(*args, **kwargs):
        env = real_env(*args, **kwargs)
        seen.append(env)
        return env

    monkeypatch.setattr(infer, "EditEnv", spy)
    rec = [r for r in dataset.recordings if r.name in result.val_names][0]
    edit = infer.propose_edit(rec.raw_path, ckpt, keep=0.5, cache_dir=cache_dir)
    assert edit.segments and seen
    env = seen[0]
    np.testing.assert_allclose(env.normalizer.mean, expected.mean)
    obs, _ = env.reset()
    np.testing.assert_allclose(obs[3 * 121:4 * 121], expected(env.features.features[:1])[0], atol=1e-5)


def test_validation_scores_the_edit_time_grid_as_evaluate_does(corpus, tmp_path):
    """Validation edits each held-out pair on the beat tracker's grid, the one `editorbot
    edit` uses, even when the labels were made on a synthetic truth's grid; so its
    per-recording kept-raw IoU is `editorbot evaluate`'s for the same checkpoint (the bug:
    validation on the truth's grid said 0.758 where evaluate gave 0.574)."""
    import shutil

    from editorbot.editors import load_checkpoint
    from editorbot.evaluate import evaluate_editors
    from editorbot.rl.beat_features import beat_features
    from editorbot.rl.infer import load_agent, propose_edit
    from editorbot.rl.train import validate_recordings
    from editorbot.supervised.toy import write_corpus_pointers

    data_dir, cache_dir, dataset, _, path = corpus
    data, cache = tmp_path / "training_data", tmp_path / "cache"
    shutil.copytree(data_dir, data)
    shutil.copytree(cache_dir, cache)
    write_corpus_pointers(data)  # the layout `editorbot evaluate` reads
    assert {r.grid for r in dataset.recordings} == {"truth"}
    names = sorted({r.name for r in dataset.recordings if not r.origin})
    held = [n for n in names if "trimmer" in n]
    config = load(RLConfig, REPO / "configs" / "rl" / "small.json",
                  TINY + ["train.n_updates=0", "train.bc_pretrain_epochs=3", f"train.val_names={json.dumps(held)}"])
    result = train(config, Run(tmp_path / "run", data, cache, progress=False), bc_pretrain=path)
    ckpt = load_checkpoint(tmp_path / "run" / "latest.pt")
    agent, cfg, normalizer, params = load_agent(ckpt)
    ours = validate_recordings(agent, cfg, normalizer, held, data_dir=data, cache_dir=cache, params=params,
                               wanted=ckpt["train_keep_ratio"])

    def editor(raw_path, **kwargs):
        return propose_edit(raw_path, ckpt, cache_dir=cache, **kwargs)

    theirs = evaluate_editors(data, {"rl": editor}, names=held, cache_dir=cache, print_table=False,
                              progress=False)["rl"]
    assert not theirs["failures"]
    for r in ours:
        assert r.kept_iou == theirs["per_pair"][r.name]["kept_iou"], r.name
    assert result.phases["bc"]["kept_iou"] == pytest.approx(theirs["mean"]["kept_iou"], abs=1e-12)
    # The grids differ here, so validating on the labels' grid would not have matched.
    rec = next(r for r in dataset.recordings if r.name == held[0])
    tracker = beat_features(rec.raw_path, cache_dir=cache, params=params)
    assert len(tracker.bounds_s) != len(rec.features.bounds_s) or not np.allclose(
        tracker.bounds_s, rec.features.bounds_s, atol=0.02)


def test_resumed_ppo_takes_the_configs_learning_rate(corpus, tmp_path):
    """PPO resumed from a BC checkpoint steps at the config's ppo.learning_rate, not at the
    one saved in the checkpoint's optimizer state (which Adam's load_state_dict restores)."""
    from editorbot.editors import load_checkpoint

    data_dir, cache_dir, dataset, _, path = corpus
    names = sorted({r.name for r in dataset.recordings if not r.origin})
    common = TINY + [f'train.val_names=["{names[0]}"]', "ppo.n_steps=8", "ppo.value_warmup_updates=0"]
    small = REPO / "configs" / "rl" / "small.json"
    train(load(RLConfig, small, common + ["train.n_updates=0", "train.bc_pretrain_epochs=1"]),
          Run(tmp_path / "bc", data_dir, cache_dir, progress=False), bc_pretrain=path)
    train(load(RLConfig, small, common + ["train.n_updates=1", "train.bc_pretrain_epochs=0",
                                          "ppo.learning_rate=0.00005"]),
          Run(tmp_path / "ppo", data_dir, cache_dir, resume=tmp_path / "bc" / "latest.pt", progress=False),
          bc_pretrain=path)
    saved = load_checkpoint(tmp_path / "ppo" / "latest.pt")["optimizer_state"]["param_groups"]
    assert {g["lr"] for g in saved} == {0.00005}


def test_rollouts_store_the_masks_their_actions_were_drawn_under(corpus):
    data_dir, cache_dir, dataset, _, _ = corpus
    from editorbot.rl.env import EnvConfig
    from editorbot.rl.train import _pointers_for

    recs = dataset.recordings[:2]
    norm = FeatureNormalizer.fit([r.features.features for r in recs])
    params = dataset.params
    venv = make_envs(recs, _pointers_for(recs, Path(data_dir), Path(cache_dir), params), norm, EnvConfig(),
                     params, 2, subprocess=False, seed=0)
    torch.manual_seed(0)
    state = start(venv)
    first_masks = state.masks.copy()
    rollout, episodes = collect(venv, Agent(TINY_AGENT, n_mels=N_MELS), state, 12, torch.device("cpu"))
    venv.close()
    np.testing.assert_array_equal(rollout.masks[0], first_masks)
    a = rollout.actions
    idx = np.indices(a.shape[:2])
    assert rollout.masks[idx[0], idx[1], a[..., 0], a[..., 1], a[..., 2]].all()
    assert not rollout.masks.all()
    assert (rollout.cursors >= 0).all() and set(np.unique(rollout.recordings)) <= {0, 1}


# ------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_end_to_end_synth_labels_train_edit(tmp_path):
    """The CI-sized run of the README: synth a tiny corpus, label it, BC-pretrain and run
    a few PPO updates with the BC loss mixed in (two subprocess environments), edit a
    recording with the checkpoint; TensorBoard has the issue's scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ci = os.environ.get("CI") == "true"
    config = REPO / "configs" / "rl" / ("small.json" if ci else "full.json")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    data = tmp_path / "training_data"
    steps = [
        ("synth", "--out", data, "--pairs", "3", "--minutes", "1.5", "--seed", "3", "--persona", "looper",
         "--mastering", "none", "--no-unmastered"),
        ("bc-labels", "--data-dir", data, "--cache-dir", tmp_path / "cache", "--out", tmp_path / "bc.npz",
         "--config", config),
        ("train", "rl", "--data-dir", data, "--cache-dir", tmp_path / "cache", "--config", config,
         "--bc-pretrain", tmp_path / "bc.npz", "--bc-pretrain-epochs", "20" if ci else "50",
         "--bc-mixed", tmp_path / "bc.npz", "--bc-weight", "0.5", "--updates", "3" if ci else "10",
         "--n-envs", "2", "--subprocess", "--set", "ppo.n_steps=32", "--save-dir", tmp_path / "run",
         "--no-progress"),
    ]
    for args in steps:
        result = _run(args, env, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        if args[0] == "bc-labels":
            assert "mean kept-raw IoU" in result.stdout
        if args[0] == "train":
            assert "after BC:" in result.stdout and "final:" in result.stdout
    raw = sorted((data / "input").glob("*_raw.wav"))[0]
    result = _run(("edit", raw, "--checkpoint", tmp_path / "run" / "best.pt", "-o", tmp_path / "out.wav",
                   "--no-review"), env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RL policy:" in result.stderr and "%" in result.stderr
    assert "yours:" not in result.stdout and result.stdout.count("edit:") == 1  # a model: theirs already
    from editorbot.audio import probe
    assert probe(tmp_path / "out.wav").duration_s > 5
    assert json.loads((tmp_path / "out_segments.json").read_text())
    events = EventAccumulator(str(tmp_path / "run" / "logs")).Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/entropy", "train/bc_entropy", "train/bc_loss", "approx_kl", "counters/n_keep_ratio",
                "actions/KEEP", "aux/mel"):
        assert tag in tags, (tag, sorted(tags))
    assert "train/episode_reward" in tags and any(t.startswith("reward/") for t in tags)


def _run(args, env, cwd):
    """`python -m editorbot ARGS` in cwd (the edit's beat-feature cache goes to cwd/cache)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "editorbot", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=cwd)
