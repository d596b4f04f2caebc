"""`editorbot demo` (the README's main command) end to end at a small size."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_demo_runs_every_stage_and_says_where_things_went(tmp_path):
    """The whole pipeline on a tiny corpus: every stage runs, both editors edit the held-out
    raw, the table has both rows, and every path the demo names exists."""
    out = tmp_path / "demo"
    done = run_cli("demo", "--out", out, "--pairs", 3, "--heldout", 1, "--minutes", 1,
                   "--train-minutes", 0.2, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    for step in range(1, 7):
        assert f"== {step}/6" in text
    rows = [line for line in text.splitlines() if re.match(r"^(rule-based|pointer)\b", line)]
    assert [r.split()[0] for r in rows] == ["rule-based", "pointer"]
    for row in rows:  # 1 pair, 0 failed
        assert re.search(r"\s1\s+0\s+\d", row), row
    named = re.findall(r"(/\S+\.(?:wav|html|pt))", text)
    assert any(p.endswith("_rule-based.wav") for p in named)
    assert any(p.endswith("_pointer_review.html") for p in named)
    for path in named:
        assert Path(path).exists(), path
    assert len(list((out / "training_data" / "pointer_sequences").glob("*_pointers.npy"))) == 3


def test_demo_refuses_bad_sizes(tmp_path):
    done = run_cli("demo", "--out", tmp_path / "d", "--pairs", 0)
    assert done.returncode == 2
    assert "--pairs 0: must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr
