"""Run one task per sample, in several processes, with a progress bar in seconds of audio.

A task that fails with a UserError is reported by name and the others go on; the caller
gets every result and every failure, and decides the exit status.
"""
from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tqdm import tqdm

from .errors import UserError


@dataclass
class JobReport:
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def _call(fn: Callable, name: str, arg: Any) -> tuple[str, Any, str | None]:
    try:
        return name, fn(arg), None
    except UserError as err:
        return name, None, str(err)


def run_jobs(fn: Callable[[Any], Any], items: Sequence[tuple[str, Any, float]], *,
             jobs: int = 1, desc: str = "audio", progress: bool = True) -> JobReport:
    """Call fn(arg) for each (name, arg, seconds_of_audio) item.

    Args:
        fn: a picklable top-level function when jobs > 1.
        jobs: worker processes; 1 runs in this process.
        progress: show a tqdm bar whose unit is seconds of audio.
    """
    report = JobReport()
    total = sum(seconds for _, _, seconds in items)
    bar = tqdm(total=round(total, 1), unit="s", desc=desc, disable=not progress,
               file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    seconds_of = {name: seconds for name, _, seconds in items}

    def record(name: str, result: Any, error: str | None) -> None:
        if error is None:
            report.results[name] = result
        else:
            report.failures[name] = error
            bar.write(f"error: {error}", file=sys.stderr)
        bar.update(round(seconds_of[name], 1))

    try:
        if jobs <= 1 or len(items) <= 1:
            for name, arg, _ in items:
                record(*_call(fn, name, arg))
        else:
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(_call, fn, name, arg) for name, arg, _ in items]
                for fut in as_completed(futures):
                    record(*fut.result())
    finally:
        bar.close()
    return report
