"""The replay on the real datasets: does feedback make the goals better? (docs/evaluation.md "Goal replay")

Each dataset is replayed once (module fixture, the documented protocol and time box of
``replay.DATASET_DEFAULTS``) and the issue's targets are asserted over the second half of the
steps: learned ≥ 1.25 × prior, learned > best single template, learned ≥ 2 × random — on
online-retail and movielens-100k; deskdrop is reported. Acceptance is per delivered goal for every
policy; the budget and the volume are maxima, and after its learning period the learned policy
declines the goals its ranker predicts below its own acceptance over that period, so the shape
test checks the volumes: equal in the learning period, never above the prior's after it, and the
prior cut to the learned volume reported beside it.

With production's chooser (``chooser="production"``: decline-aware promotion with z = 1.645, each
promoted ranker bringing its send threshold) MovieLens is replayed too; docs/evaluation.md has its
figures for the three datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import dataset_path
from orchestrion.evaluation.replay import DATASET_DEFAULTS, POLICIES, ReplayConfig, ReplayResult, replay
from orchestrion.ranking.offpolicy import Z_PROMOTE

_RUNS: dict[str, ReplayResult] = {}


def run(name: str) -> ReplayResult:
    if name not in _RUNS:
        root = dataset_path(name).parent
        _RUNS[name] = replay(name, datasets_root=root)
    return _RUNS[name]


def ratio(name: str, over: str) -> float:
    result = run(name)
    return result.acceptance("learned") / result.acceptance(over)


@pytest.mark.parametrize("name", ["online-retail", "movielens-100k", "deskdrop"])
def test_replay_shape(name: str) -> None:
    report: dict[str, Any] = run(name).as_dict()
    assert report["dataset"] == name and set(report["policies"]) == set(POLICIES)
    steps = len(report["steps"])
    for policy in report["policies"].values():
        assert len(policy["by_step"]) == steps and 0.0 <= policy["acceptance"] <= 1.0
        assert policy["delivered"] > 0
    learned, prior = report["policies"]["learned"], report["policies"]["prior"]
    half = steps // 2
    first = sum(learned["delivered_by_step"][:half]), sum(prior["delivered_by_step"][:half])
    assert abs(first[0] - first[1]) <= 0.01 * first[1], "equal volume in the learning period"
    assert all(a <= b + 1 for a, b in zip(learned["delivered_by_step"], prior["delivered_by_step"], strict=True))
    assert learned["retraining"], "the learned policy retrained during the replay"
    threshold = learned["decline_threshold"]
    assert threshold is not None and 0.0 < threshold < 1.0 and report["notes"], "threshold fixed on the first half"
    shadow = report["prior_at_learned_volume"]
    assert shadow["delivered"] == learned["delivered"] and 0.0 <= shadow["acceptance"] <= 1.0
    assert report["policies"]["random"]["acceptance"] < report["policies"]["prior"]["acceptance"]


@pytest.mark.parametrize("name", ["online-retail", "movielens-100k"])
def test_learned_beats_the_prior_by_a_quarter(name: str) -> None:
    assert ratio(name, "prior") >= 1.25


@pytest.mark.parametrize("name", ["online-retail", "movielens-100k"])
def test_learned_beats_the_best_single_template(name: str) -> None:
    assert ratio(name, "best_template") > 1.0


@pytest.mark.parametrize("name", ["online-retail", "movielens-100k"])
def test_learned_doubles_random(name: str) -> None:
    assert ratio(name, "random") >= 2.0


def test_movielens_with_production_s_chooser() -> None:
    """Each promoted ranker brings its send threshold, from the first promotion on (no learning
    period), and the learned policy still beats the prior by a quarter and the best template."""
    config = ReplayConfig.model_validate(
        {**DATASET_DEFAULTS["movielens-100k"], "chooser": "production", "promotion_z": Z_PROMOTE}
    )
    result = replay("movielens-100k", datasets_root=dataset_path("movielens-100k").parent, config=config)
    report = result.as_dict()
    notes = report["policies"]["learned"]["retraining"]
    promoted = [n for n in notes if ": promoted" in n]
    print(report["ratios"], {p: (v["acceptance"], v["delivered"]) for p, v in report["policies"].items()})
    assert promoted and all("send threshold" in n and "z = 1.645" in n for n in promoted)
    assert not report["notes"], "no threshold fixed at the halfway point"
    threshold = report["policies"]["learned"]["decline_threshold"]
    assert threshold is not None and 0.0 < threshold < 1.0
    assert result.acceptance("learned") >= 1.25 * result.acceptance("prior")
    assert result.acceptance("learned") > result.acceptance("best_template")


def test_deskdrop_is_reported() -> None:
    result = run("deskdrop")
    assert result.acceptance("learned") > result.acceptance("prior") > result.acceptance("random")


def test_notebook_charts_the_committed_reports(tmp_path: Path) -> None:
    """``notebooks/replay.ipynb`` tabulates and charts the committed reports (docs/replay/*.json)."""
    import nbformat
    from nbclient import NotebookClient

    repo = Path(__file__).resolve().parents[1]
    notebook = nbformat.read(repo / "notebooks" / "replay.ipynb", as_version=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ORCHESTRION_REPO", str(repo))
        patch.setenv("ORCHESTRION_RESULTS", str(tmp_path))
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert sorted(p.name for p in (tmp_path / "replay").iterdir()) == [
        "deskdrop.png",
        "movielens-100k.png",
        "online-retail.png",
    ]
