"""Progress reads well in DVC's logs: no carriage-return redraws when stderr is not a terminal, a line at each
tenth of a loop, and one summary line per stage on success."""

from __future__ import annotations

import subprocess
import sys

from pipeline_lib.progress import track
from pipeline_project import make_project


def test_a_loop_in_a_log_prints_ten_plain_lines(capsys):
    bar = track(range(200), desc="work", unit="img")
    for index in bar:
        if index == 150:
            bar.set_postfix(loss="0.123")
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 10 and lines[0].startswith("work: 20/200 img (10 %)")
    assert lines[-1].startswith("work: 200/200 img (100 %)") and lines[-1].endswith("loss=0.123")


def test_a_counter_and_an_unknown_length_end_with_their_count(capsys):
    with track(total=3, desc="shards", unit="img") as bar:
        for _ in range(3):
            bar.update(1)
    for _ in track(iter(range(5)), desc="stream"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2].startswith("shards: 3/3 img (100 %)") and lines[-1].startswith("stream: 5/? it,")


def test_silenced_by_tqdm_disable(capsys, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert list(track(range(50), desc="quiet")) == list(range(50))
    assert capsys.readouterr().err == ""


def test_a_stage_logs_plain_lines_and_one_summary(tmp_path):
    project = make_project(tmp_path / "project")
    result = subprocess.run([sys.executable, "-m", "stages.cli", "prepare"], cwd=project, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout
    assert "synthetic dataset: 20/20 img (100 %)" in result.stderr
    assert result.stdout.strip().splitlines() == ["prepared synthetic dataset in data/prepared"]
