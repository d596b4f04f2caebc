"""What every trainer shares: where a run reads and writes, how long it may take, its
progress bar, its held-out recordings and the common part of its checkpoints.

The pointer, supervised and RL trainers each read as `train(config, run) -> result`:
`config` says what to learn (model, optimiser, seed, split), `run` says where the pairs
are, where the checkpoints go, whether to carry on an earlier run and how long it may
take. The CLI builds `run` from the same flags for every paradigm (`Run.from_args`).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .checkpoint import check_save_dir
from .dataset import split_by_recording
from .errors import UserError, log
from .layout import Layout


@dataclass
class Run:
    """Where a training run reads and writes, and how long it may take.

    data_dir: the pairs, with pointer_sequences/ from `editorbot prepare`.
    cache_dir: holds features/{name}_raw.npz.
    save_dir: where best.pt and latest.pt go.
    log_dir: TensorBoard folder (None: save_dir/logs).
    resume: a latest.pt of an earlier run to carry on (its config and split are kept).
    init: start from this checkpoint's weights with a new optimiser and the config given
        (fine-tuning); None starts from scratch. The CLI's --init value becomes it through
        resolve_init.
    overwrite: start a new run in a save_dir that holds another run's checkpoints.
    max_minutes: wall time for the whole run, every phase included (0 = no limit).
    progress: show progress bars.
    """

    save_dir: Path
    data_dir: Path = Path("training_data")
    cache_dir: Path = Path("cache")
    log_dir: Path | None = None
    resume: Path | None = None
    init: Path | None = None
    overwrite: bool = False
    max_minutes: float = 0.0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("save_dir", "data_dir", "cache_dir", "log_dir", "resume", "init"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if not self.max_minutes >= 0:
            raise UserError(f"--max-minutes {self.max_minutes}: must be >= 0 (0 = no limit)")
        if self.resume is not None and self.init is not None:
            raise UserError("--resume carries on a run with its own weights; --init starts a new "
                            "one from a model's weights: give one of them")

    @classmethod
    def from_args(cls, args) -> Run:
        """The run the CLI flags describe (the same flags for every paradigm)."""
        return cls(save_dir=args.save_dir, data_dir=args.data_dir, cache_dir=args.cache_dir,
                   log_dir=args.log_dir, resume=args.resume,
                   init=resolve_init(getattr(args, "init", None)), overwrite=args.overwrite,
                   max_minutes=args.max_minutes or 0.0, progress=not args.no_progress)

    @property
    def layout(self) -> Layout:
        return Layout(self.data_dir, self.cache_dir)

    @property
    def logs(self) -> Path:
        return self.log_dir or self.save_dir / "logs"

    def check(self) -> None:
        """Refuse to start over another run's checkpoints (see checkpoint.check_save_dir)."""
        check_save_dir(self.save_dir, resume=self.resume, overwrite=self.overwrite)

    def deadline(self) -> Deadline:
        return Deadline(self.max_minutes)


def resolve_init(value: str | None) -> Path | None:
    """The checkpoint an `--init` value names: None for 'scratch' (or no value), the base
    model shipped in the package for 'base' (editorbot.base), else the path given. A
    missing file is a one-line UserError."""
    if value in (None, "scratch"):
        return None
    if value == "base":
        from .base import BASE_CHECKPOINT, base_checkpoint
        path = base_checkpoint()
        if path is None:
            raise UserError(f"--init base: this editorbot ships no base model ({BASE_CHECKPOINT}); "
                            "use --init scratch or --init PATH to a pointer model's best.pt")
        return path
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--init {value}: no such checkpoint; give scratch, base or a pointer "
                        "model's best.pt")
    return path


VALIDATION_SHARE = 0.2  # of a deadline, kept free for a first validation of unknown length


class Deadline:
    """The end of a run's wall time, shared out between its phases."""

    def __init__(self, minutes: float, started: float | None = None):
        self.started = time.time() if started is None else started
        self.minutes = minutes
        self.at = self.started + minutes * 60 if minutes > 0 else math.inf

    @property
    def set(self) -> bool:
        return math.isfinite(self.at)

    def share(self, fraction: float) -> float:
        """The time by which a phase given `fraction` of the run must end."""
        return self.started + fraction * (self.at - self.started) if self.set else math.inf

    def passed(self, *, margin_s: float = 0.0) -> bool:
        """Whether the deadline has passed, or will have after `margin_s` more seconds."""
        return time.time() + margin_s > self.at

    def margin(self, validation_s: float) -> float:
        """Seconds to keep free for the last validation: the last one's length, or, before
        any has run, VALIDATION_SHARE of the run (a first validation that decodes whole
        recordings can take longer than minutes of training)."""
        if validation_s > 0 or not self.set:
            return validation_s
        return VALIDATION_SHARE * (self.at - self.started)

    def elapsed_fraction(self) -> float:
        return (time.time() - self.started) / (self.at - self.started) if self.set else 0.0


class Progress:
    """A training bar whose total is known at the start and does not move: optimiser steps,
    or minutes when a deadline is set (the run ends at whichever comes first). The loss shown
    is smoothed (an exponential mean over about 20 steps); messages go on their own line."""

    SMOOTH = 0.05

    def __init__(self, desc: str, *, steps: int, deadline: Deadline, enabled: bool = True,
                 done: int = 0):
        from tqdm import tqdm

        self.deadline = deadline
        self.by_time = deadline.set
        self.loss: float | None = None
        self.steps = done
        self.total = round(deadline.minutes, 2) if self.by_time else steps
        self.done, self.shown = 0 if self.by_time else done, ""
        if self.by_time:
            self.bar = tqdm(total=round(deadline.minutes, 2), desc=desc, unit="min", disable=not enabled,
                            file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} min{postfix}")
        else:
            self.bar = tqdm(total=steps, initial=done, desc=desc, unit="step", disable=not enabled,
                            file=sys.stderr, dynamic_ncols=True)

    def step(self, loss: float | None = None, n: int = 1, **shown: float) -> None:
        """Count n steps; `loss` joins the smoothed mean; `shown` figures appear as they are."""
        self.steps += n
        if loss is not None and math.isfinite(loss):
            self.loss = loss if self.loss is None else self.loss + self.SMOOTH * (loss - self.loss)
        parts = [f"loss {self.loss:.3f}"] if self.loss is not None else []
        parts += [f"{k} {v:.3f}" for k, v in shown.items()]
        self.shown = ", ".join(parts)
        self.done = (min(round((time.time() - self.deadline.started) / 60, 2), self.total)
                     if self.by_time else self.steps)
        self.bar.set_postfix_str(self.shown, refresh=False)
        self.bar.update(self.done - self.bar.n)

    def say(self, message: str) -> None:
        """A line of its own, above the bar."""
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def messages_above_bars():
    """Route editorbot's log lines through tqdm, so that none is glued to a bar."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[log]):
        yield


def held_out(names: list[str], fraction: float, seed: int, *, val_names: list[str] | None = None,
             saved: dict[str, list[str]] | None = None, where: str = "") -> tuple[list[str], list[str]]:
    """The training and held-out recordings of a run: split_by_recording for a new run; for
    a resumed one, the split its checkpoint saved (recordings added since are left out and
    said so, since training on them would leak into nothing and change nothing held out).

    Args:
        saved: the checkpoint's {"train": [...], "val": [...]}, when resuming.
    """
    if saved is None:
        return split_by_recording(names, fraction, seed, val_names=val_names)
    present = set(names)
    train = [n for n in saved["train"] if n in present]
    val = [n for n in saved["val"] if n in present]
    new = sorted(present - set(saved["train"]) - set(saved["val"]))
    if new:
        log.info("%s: %d recording(s) added since that run are left out: %s", where, len(new),
                 ", ".join(new[:5]) + (", ..." if len(new) > 5 else ""))
    if not train:
        raise UserError(f"{where}: none of the recordings it trained on are in the data any more")
    return train, val


def measured_levels(run: Run, train_names: list[str]) -> dict | None:
    """The editor's levels on the training pairs (editorbot.levels), which every kind's
    checkpoint carries so that its edits keep to them; None, said once, when the pairs
    cannot tell (no edit audio or no alignment info: a corpus kept as mels and truth)."""
    from .levels import editor_levels
    try:
        return editor_levels(run.data_dir, train_names)
    except UserError as err:
        log.info("the editor's levels were not measured (%s); the model's edits keep the raw's", err)
        return None


def checkpoint_payload(kind: str, *, config: dict, params, split: tuple[list[str], list[str]],
                       step: int, metrics: dict, model_state: dict, levels: dict | None = None,
                       **extra) -> dict:
    """The part of a checkpoint every kind writes (checkpoint.load_checkpoint reads it):
    kind, config, feature_params, split {train, val}, step, metrics, versions, weights and,
    when measured, the editor's levels."""
    import torch

    return {"kind": kind, "config": config, "feature_params": params.as_dict(),
            "split": {"train": list(split[0]), "val": list(split[1])}, "step": int(step),
            "metrics": dict(metrics), "editorbot_version": __version__,
            "torch_version": str(torch.__version__),
            "model_state": {k: v.detach().cpu() for k, v in model_state.items()},
            **({} if levels is None else {"levels": levels}), **extra}


@dataclass
class TrainResult:
    """What a training run left behind, in every paradigm.

    steps: optimiser steps (PPO updates for RL) the model has taken, resumed runs included.
    metrics: the last validation's figures ({} when none ran).
    phases: figures of earlier phases by name (RL: "bc", the validation after cloning).
    wrote: the checkpoint files this run wrote, e.g. ("best.pt", "latest.pt").
    out_of_time: the run ended at run.max_minutes.
    """

    save_dir: Path
    steps: int
    train_names: list[str]
    val_names: list[str]
    seconds: float
    metrics: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    wrote: tuple = ()
    interrupted: bool = False
    out_of_time: bool = False

    def summary(self, paradigm: str) -> str:
        """One line for the end of `editorbot train`; it names only files that were written."""
        shown = ", ".join(f"{k.removeprefix('val/')} {v:.3f}" for k, v in self.metrics.items()
                          if isinstance(v, float) and k.removeprefix("val/") in SUMMARY_KEYS)
        files = " and ".join(self.wrote) or "no checkpoint"
        return (f"{paradigm}: {self.steps} steps in {self.seconds:.0f} s on {len(self.train_names)} "
                f"recordings ({len(self.val_names)} held out){', stopped at --max-minutes' if self.out_of_time else ''}; "
                f"wrote {files} in {self.save_dir}" + (f"; held-out {shown}" if shown else ""))


# the validation figures the summary line shows, where a paradigm reports them
SUMMARY_KEYS = ("iou", "kept_iou", "cut_f1", "loss", "total_loss", "episode_reward")
