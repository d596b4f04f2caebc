"""Training data of the pointer network: raw mels, pointer sequences and the step table.

Each output step j has an expected raw position (previous pointer + 1) and conditioning
features that depend only on the pointers before j and, when the user fixes it, on the
wanted edit length; `History` computes them the same way for teacher forcing here and for
decoding in decode.py, so training sees what inference sees.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..features import FeatureParams
from ..dataset import load_recording, prepared_names, read_raw_mel
from ..layout import Layout
from ..stems import read_stem_mels
from .config import AugmentConfig
from .model import N_COND, N_STEMS


class History:
    """What the decoder knows at each output step, from the pointers decided so far.

    The expected raw position of the next step is the last pointer + 1 (0 before the
    first; a run of -1 pointers keeps it where it was).

    Args:
        n_raw: frames of the raw recording.
        target_frames: the wanted edit length in frames, when the user fixes it (the
            compression ratio the model is conditioned on); None when the model decides
            the length itself (the stop head ends the edit).
    """

    def __init__(self, n_raw: int, target_frames: int | None):
        self.n_raw = int(n_raw)
        self.target = None if target_frames is None else max(int(target_frames), 1)
        self.played = np.zeros(self.n_raw + 1, np.int32)  # last entry: "past the end"
        self.prev = -1
        self.j = 0
        self.run_len = 0
        self.n_jumps = 0
        self.n_distinct = 0

    @property
    def expected(self) -> int:
        return self.prev + 1

    def continuation(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Expected positions and features of the next k steps, assuming each step plays
        its expected frame (the pointer runs on).

        Returns:
            expected : np.ndarray [shape=(k,)], int64
            cond : np.ndarray [shape=(k, N_COND)], float32
        """
        e = self.expected + np.arange(k, dtype=np.int64)
        e_idx = np.minimum(e, self.n_raw)
        played_e = self.played[e_idx]
        unplayed = (played_e == 0) & (e_idx < self.n_raw)
        new = np.concatenate([[0], np.cumsum(unplayed[:-1])])[:k]
        return e, self._features(self.j + np.arange(k), e, self.run_len + np.arange(k),
                                 played_e, self.n_distinct + new)

    def held(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `continuation`, for k steps that play nothing from the raw (pointer -1)."""
        e = np.full(k, self.expected, np.int64)
        played_e = np.full(k, self.played[min(self.expected, self.n_raw)])
        return e, self._features(self.j + np.arange(k), e, self.run_len + np.arange(k),
                                 played_e, np.full(k, self.n_distinct))

    def _features(self, j, e, run, played_e, n_distinct) -> np.ndarray:
        n = float(self.n_raw)
        cond = np.zeros((len(j), N_COND), np.float32)
        if self.target is not None:  # columns 0-4: the wanted length; all 0 when free
            t = float(self.target)
            left = t - j
            cond[:, 0] = 1.0
            cond[:, 1] = t / n
            cond[:, 2] = j / t
            cond[:, 3] = np.sign(left) * np.log1p(np.abs(left)) / 12.0
            cond[:, 4] = np.log1p(t) / 12.0
        cond[:, 5] = e / n
        cond[:, 6] = np.log1p(np.maximum(n - e, 0)) / 12.0
        cond[:, 7] = np.log1p(run) / 12.0
        cond[:, 8] = np.log1p(self.n_jumps) / 5.0
        cond[:, 9] = np.minimum(played_e, 3) / 3.0
        cond[:, 10] = e >= n
        cond[:, 11] = j == 0
        cond[:, 12] = np.log1p(j) / 12.0
        cond[:, 13] = np.log1p(n) / 14.0
        cond[:, 14] = n_distinct / n
        return cond

    def push(self, pointer: int) -> None:
        """Record the pointer decided at the current step."""
        pointer = int(pointer)
        if pointer >= 0:
            if pointer != self.expected:
                self.n_jumps += 1
                self.run_len = 0
            else:
                self.run_len += 1
            self.n_distinct += int(self.played[pointer] == 0)
            self.played[pointer] += 1
            self.prev = pointer
        else:
            self.run_len += 1
        self.j += 1

    def push_run(self, k: int) -> None:
        """Record k steps that each played their expected frame."""
        if k <= 0:
            return
        a = self.expected
        seg = self.played[a:a + k]
        self.n_distinct += int((seg == 0).sum())
        seg += 1
        self.prev = a + k - 1
        self.run_len += k
        self.j += k


def expected_positions(pointers: np.ndarray) -> np.ndarray:
    """Expected raw position of each step: previous pointer + 1.

    Steps 0..n (n + 1 of them: the last asks whether the edit stops). Before any valid
    pointer it is 0; through a run of -1 it stays at the last valid pointer + 1.

    Returns:
        expected : np.ndarray [shape=(n + 1,)], int64
    """
    p = np.asarray(pointers, np.int64)
    idx = np.where(p >= 0, np.arange(len(p)), -1)
    last = np.maximum.accumulate(idx) if len(p) else idx
    prev = np.where(last >= 0, p[np.maximum(last, 0)], -1)
    return np.concatenate([[0], prev + 1])


@dataclass
class StepTable:
    """Decoder inputs and targets of one recording: rows 0..n are the edit's steps 0..n
    (teacher forcing: row j is step j), the rows after them are drift rows.

    A drift row is a state the decoder reaches when it plays on past a change it should
    have made (a jump, a move or the stop), i frames too far (1 <= i <= drift_steps, and
    not as far as the change's target): its target is still that change. Inference meets
    these states whenever it decides a change late; training on them teaches the model to
    recover, and gives the rare change decisions more examples.

    expected (rows,) int64; cond (rows, N_COND) float32 with the edit's length given (as
    when the user fixes it); cond_free (rows, N_COND) the same without it (as when the stop
    head decides); target (rows,) int64 raw frame or -1 (masked, and the stop); stop
    (rows,) float32, 1 at the stop; op (rows,) int64, -1 at the stop and on drift rows;
    source (rows - n - 1,) int64, the step each drift row drifted from.
    """

    expected: np.ndarray
    cond: np.ndarray
    cond_free: np.ndarray
    target: np.ndarray
    stop: np.ndarray
    op: np.ndarray
    source: np.ndarray

    @property
    def n_path(self) -> int:
        """Steps of the edit (n + 1, the last one the stop); the rows before the drift rows."""
        return len(self.expected) - len(self.source)

    @property
    def step(self) -> np.ndarray:
        """(rows,) int64: how many of the edit's pointers were decided before each row
        (the step itself; for a drift row, the step it drifted from)."""
        return np.concatenate([np.arange(self.n_path), self.source])

    @property
    def run_start(self) -> np.ndarray:
        """(rows,) int64: first raw frame of a drift row's drift, which played the frames
        run_start..expected-1 after the pointers before it (= expected on the edit's steps)."""
        return np.concatenate([self.expected[:self.n_path], self.expected[self.source]])


def step_table(pointers: np.ndarray, ops: np.ndarray, n_raw: int, *, drift_steps: int = 0) -> StepTable:
    """The decoder's inputs at every step when it is fed the true pointers, and (with
    drift_steps) in the states just past each change (see StepTable).

    Args:
        pointers : np.ndarray [shape=(n,)], int64 raw frame per edit frame, -1 not in raw
        ops : np.ndarray [shape=(n,)], edit op per frame
        n_raw: frames of the raw mel
        drift_steps: most frames of drift after each change.
    """
    p = np.asarray(pointers, np.int64)
    n = len(p)
    expected, cond, source = _teacher_forced(p, History(n_raw, n), drift_steps)
    cond_free = _teacher_forced(p, History(n_raw, None), drift_steps)[1]
    stop = np.zeros(n + 1, np.float32)
    stop[n] = 1.0
    target = np.concatenate([p, [-1]])
    op = np.concatenate([np.asarray(ops, np.int64), [-1]])
    return StepTable(expected, cond, cond_free, np.concatenate([target, target[source]]),
                     np.concatenate([stop, stop[source]]),
                     np.concatenate([op, np.full(len(source), -1, np.int64)]), source)


def _teacher_forced(p: np.ndarray, hist: History,
                    drift_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected positions (rows,) and features (rows, N_COND) of pointers p fed to `hist`
    (steps 0..n, then the drift rows), and the step each drift row drifted from."""
    n = len(p)
    expected = np.empty(n + 1, np.int64)
    cond = np.empty((n + 1, N_COND), np.float32)
    drift: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add_drift(j: int, target: int) -> None:
        if drift_steps <= 0:
            return
        e, c = hist.continuation(drift_steps + 1)
        keep = (e < hist.n_raw) & (np.arange(drift_steps + 1) > 0)
        if target > e[0]:
            keep &= e < target
        drift.append((j, e[keep], c[keep]))

    # Runs: a run starts wherever the pointer is not the previous one + 1.
    cont = np.zeros(n, bool)
    cont[1:] = (p[1:] == p[:-1] + 1) & (p[:-1] >= 0)
    j = 0
    while j < n:
        if p[j] < 0:
            k = 1
            while j + k < n and p[j + k] < 0:
                k += 1
            expected[j:j + k], cond[j:j + k] = hist.held(k)
            for _ in range(k):
                hist.push(-1)
        else:
            expected[j:j + 1], cond[j:j + 1] = hist.continuation(1)
            if p[j] != expected[j]:
                add_drift(j, int(p[j]))
            hist.push(p[j])
            k = 1
            while j + k < n and cont[j + k]:
                k += 1
            expected[j + 1:j + k], cond[j + 1:j + k] = hist.continuation(k - 1)
            hist.push_run(k - 1)
        j += k
    expected[n:], cond[n:] = hist.continuation(1)
    add_drift(n, -1)
    source = np.concatenate([np.full(len(e), j, np.int64) for j, e, _ in drift] + [np.zeros(0, np.int64)])
    expected = np.concatenate([expected] + [e for _, e, _ in drift])
    cond = np.concatenate([cond] + [c for _, _, c in drift])
    return expected, cond, source


@dataclass
class StepRecording:
    """The pointer network's view of a `dataset.Recording`: its pointers and step table."""

    name: str
    n_raw: int
    pointers: np.ndarray
    steps: StepTable

    @property
    def keep_ratio(self) -> float:
        return len(self.pointers) / max(self.n_raw, 1)

    def kept(self) -> np.ndarray:
        """(n_raw,) float32, 1 on every raw frame the edit plays."""
        kept = np.zeros(self.n_raw, np.float32)
        kept[self.pointers[self.pointers >= 0]] = 1.0
        return kept

    def jumps_back(self, min_frames: int) -> bool:
        """Whether the edit ever moves back in the raw by more than min_frames (a loop,
        a repeat, a reorder), as opposed to only cutting forward."""
        p = self.pointers[self.pointers >= 0]
        return bool(len(p) > 1 and (np.diff(p) < -min_frames).any())


class PointerData:
    """Recordings under a cache dir and a pointer dir, with their raw mels loaded on demand.

    Args:
        cache_dir: holds features/{name}_raw.npz (and stems_mel/{name}_stems.npz).
        pointer_dir: holds {name}_pointers.npy and, optionally, {name}_ops.npy.
        names: recordings to use (default: every {name}_pointers.npy in pointer_dir).
        use_stems: also load the stem mels as input channels (stems_mel/{name}_stems.npz,
            all made by one backend, which `stems_backend` then names).
        stems_backend: the backend the stems must come from (a resumed checkpoint's); None
            takes the first recording's.
        max_cached: raw mels kept in memory.
        drift_steps: drift rows after each change in the step tables (see StepTable).
    """

    def __init__(self, cache_dir: str | Path, pointer_dir: str | Path, *,
                 names: list[str] | None = None, use_stems: bool = False,
                 stems_backend: str | None = None, max_cached: int = 32, drift_steps: int = 0):
        self.layout = Layout(cache_dir=Path(cache_dir))
        self.pointer_dir = Path(pointer_dir)
        self.use_stems = use_stems
        self._trained_on = stems_backend if use_stems else None
        self.stems_backend = self._trained_on
        self.max_cached = max_cached
        self.drift_steps = drift_steps
        self._mels: OrderedDict[str, np.ndarray] = OrderedDict()
        if names is None:
            names = prepared_names(self.pointer_dir)
        if not names:
            raise UserError(f"{self.pointer_dir}: no *_pointers.npy files; run `editorbot prepare` "
                            "on your training pairs first")
        self.params: FeatureParams | None = None
        self.recordings: dict[str, StepRecording] = {}
        for name in names:
            self.recordings[name] = self._load_recording(name)

    @property
    def names(self) -> list[str]:
        return list(self.recordings)

    def _load_recording(self, name: str) -> StepRecording:
        rec = load_recording(self.layout, name, pointer_dir=self.pointer_dir)
        self._check_params(name, rec.params)
        mel = self._with_stems(name, rec.mel, rec.meta, rec.params)
        self._remember(name, mel)
        return StepRecording(name, rec.n_raw, rec.pointers,
                             step_table(rec.pointers, rec.ops.astype(np.int64), rec.n_raw,
                                        drift_steps=self.drift_steps))

    def _check_params(self, name: str, params: FeatureParams) -> None:
        if self.params is None:
            self.params = params
        elif params != self.params:
            raise UserError(f"{self.layout.features(name, 'raw')}: made with other feature "
                            "parameters than the other recordings; re-run `editorbot features` "
                            "on all pairs")

    def _read_mel(self, name: str) -> np.ndarray:
        mel, params, meta = read_raw_mel(self.layout, name)
        self._check_params(name, params)
        return self._with_stems(name, mel, meta, params)

    def _with_stems(self, name: str, mel: np.ndarray, meta: dict, params: FeatureParams) -> np.ndarray:
        """The raw mel, with the stem mels below it when the model reads stems."""
        if self.use_stems:
            mel = np.concatenate([mel, self._read_stems(name, mel.shape[1], meta, params)], axis=0)
        assert mel.shape[0] % (1 + N_STEMS * self.use_stems) == 0
        return mel

    def _read_stems(self, name: str, frames: int, raw_meta: dict, params: FeatureParams) -> np.ndarray:
        """The stem mels of `name` as (4 n_mels, T), made from the file the raw mel was
        made from, on its analysis grid `params`, by the same backend as every other
        recording's (`stems_backend`)."""
        path = self.layout.stems_mel(name)
        mels, found = read_stem_mels(path, params=params, backend=self._trained_on, frames=frames,
                                     source_fingerprint=raw_meta.get("source_fingerprint"))
        if self.stems_backend is None:
            self.stems_backend = found
        elif found != self.stems_backend:
            raise UserError(f"{path}: holds '{found}' stems but the other recordings' are "
                            f"'{self.stems_backend}'; run `editorbot stems --backend "
                            f"{self.stems_backend}` on every pair (one backend for all)")
        return mels.reshape(-1, frames)

    def _remember(self, name: str, mel: np.ndarray) -> None:
        # Kept as float16 where that is exact (mels cached as float16, as the base's corpus
        # is): half the memory, and `mel` hands back the same float32 values.
        half = mel.astype(np.float16)
        self._mels[name] = half if np.array_equal(half, mel) else mel
        self._mels.move_to_end(name)
        while len(self._mels) > self.max_cached:
            self._mels.popitem(last=False)

    def mel(self, name: str) -> np.ndarray:
        """The raw mel of `name`: (C, T) float32 (C = n_mels, x5 with stems)."""
        if name in self._mels:
            self._mels.move_to_end(name)
            return self._mels[name].astype(np.float32, copy=False)
        mel = self._read_mel(name)
        self._remember(name, mel)
        return mel


def change_steps(steps: StepTable) -> np.ndarray:
    """Steps where the editor does not simply play on: jumps, small moves and the stop step."""
    n = steps.n_path
    target, expected = steps.target[:n], steps.expected[:n]
    return np.flatnonzero(((target >= 0) & (target != expected)) | (steps.stop[:n] > 0))


def sample_steps(steps: StepTable, rng: np.random.Generator, *, random_steps: int,
                 context_steps: int, max_changes: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps of one recording for one training batch, with importance weights.

    The decoder's inputs at a step depend only on the pointers before it (teacher
    forcing), so any set of steps can be trained on: every change (up to max_changes),
    the context_steps steps on each side of it (where the model must wait), and
    random_steps drawn uniformly from the rest, weighted by how many steps each stands for,
    so that weighted means estimate the mean over the whole edit; then the drift rows of
    the chosen changes, weight 1 each.

    Returns:
        idx : np.ndarray [shape=(m,)], int64 row indices, the edit's steps sorted, then drift rows
        weight : np.ndarray [shape=(m,)], float32
    """
    n = steps.n_path
    changes = change_steps(steps)
    if len(changes) > max_changes:
        changes = np.sort(rng.choice(changes, size=max_changes, replace=False))
    near = np.zeros(n, bool)
    for d in range(-context_steps, context_steps + 1):
        j = changes + d
        near[j[(j >= 0) & (j < n)]] = True
    rest = np.flatnonzero(~near)
    k = min(random_steps, len(rest))
    picked = np.sort(rng.choice(rest, size=k, replace=False)) if k else rest[:0]
    idx = np.concatenate([np.flatnonzero(near), picked])
    weight = np.concatenate([np.ones(int(near.sum()), np.float32),
                             np.full(k, len(rest) / max(k, 1), np.float32)])
    order = np.argsort(idx, kind="stable")
    drift = n + np.flatnonzero(np.isin(steps.source, changes))
    return (np.concatenate([idx[order], drift]),
            np.concatenate([weight[order], np.ones(len(drift), np.float32)]))


def augment(mel: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, *,
            top_db: float, n_mels: int) -> np.ndarray:
    """A copy of `mel` with a random gain, band shift, noise and SpecAugment masks,
    clipped to [0, 1].

    Nothing moves in time, so the pointers stay valid.

    Args:
        mel : np.ndarray [shape=(C, T)], C a multiple of n_mels (raw, then stems)
    """
    out = mel + np.float32(rng.uniform(-cfg.gain_db, cfg.gain_db) / top_db)
    if cfg.shift_bands > 0:
        k = int(rng.integers(-cfg.shift_bands, cfg.shift_bands + 1))
        bands = out.reshape(-1, n_mels, out.shape[1])
        if k > 0:
            bands[:, k:] = bands[:, :-k].copy()
            bands[:, :k] = bands[:, k:k + 1]
        elif k < 0:
            bands[:, :k] = bands[:, -k:].copy()
            bands[:, k:] = bands[:, k - 1:k]
    if cfg.noise_std > 0:
        out += rng.normal(0.0, cfg.noise_std, size=out.shape).astype(np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    bands = out.reshape(-1, n_mels, out.shape[1])
    for _ in range(cfg.freq_masks):
        w = int(rng.integers(0, cfg.freq_width + 1))
        f0 = int(rng.integers(0, max(n_mels - w, 0) + 1))
        bands[:, f0:f0 + w] = 0.0
    t = out.shape[1]
    for _ in range(cfg.time_masks):
        w = int(rng.integers(0, cfg.time_width + 1))
        t0 = int(rng.integers(0, max(t - w, 0) + 1))
        out[:, t0:t0 + w] = 0.0
    return out


def make_batch(data: PointerData, items: list[tuple[str, np.ndarray, np.ndarray, bool]], *,
               rng: np.random.Generator | None = None,
               augment_cfg: AugmentConfig | None = None) -> dict[str, np.ndarray]:
    """Stack recordings and chosen steps of each into one batch of numpy arrays.

    Args:
        items: (name, step indices, step weights, whether the edit's length is given)
            per recording.
        rng, augment_cfg: augment the mels when both are given.

    Returns:
        dict: mel (B, C, T) float32 zero-padded; lengths (B,); kept (B, T) float32, 1
        where the editor plays the raw frame; pointers (B, L) the edits, padded with -1;
        and per row (N total): rec, expected, cond (N, N_COND), target, stop, op, weight,
        step and run_start (see StepTable).
    """
    mels = []
    for name, *_ in items:
        m = data.mel(name)
        if rng is not None and augment_cfg is not None:
            m = augment(m, augment_cfg, rng, top_db=data.params.top_db, n_mels=data.params.n_mels)
        mels.append(m)
    t_max = max(m.shape[1] for m in mels)
    mel = np.zeros((len(mels), mels[0].shape[0], t_max), np.float32)
    for i, m in enumerate(mels):
        mel[i, :, :m.shape[1]] = m
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("rec", "expected", "cond", "target", "stop", "op",
                                                         "weight", "step", "run_start")}
    for i, (name, idx, weight, target_given) in enumerate(items):
        st = data.recordings[name].steps
        rows["step"].append(st.step[idx])
        rows["run_start"].append(st.run_start[idx])
        rows["rec"].append(np.full(len(idx), i, np.int64))
        rows["expected"].append(st.expected[idx])
        rows["cond"].append((st.cond if target_given else st.cond_free)[idx])
        rows["target"].append(st.target[idx])
        rows["stop"].append(st.stop[idx])
        rows["op"].append(st.op[idx])
        rows["weight"].append(np.asarray(weight, np.float32))
    batch = {k: np.concatenate(v) for k, v in rows.items()}
    batch["mel"] = mel
    batch["kept"] = np.zeros((len(mels), t_max), np.float32)
    batch["pointers"] = np.full((len(mels), max(len(data.recordings[name].pointers) for name, *_ in items)),
                                -1, np.int64)
    for i, (name, *_) in enumerate(items):
        rec = data.recordings[name]
        batch["kept"][i, :rec.n_raw] = rec.kept()
        batch["pointers"][i, :len(rec.pointers)] = rec.pointers
    batch["lengths"] = np.array([m.shape[1] for m in mels], np.int64)
    return batch

