"""``orchestrion datasets``: the commands are thin shells; check their output and help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrion.cli import app

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"ORCHESTRION_HOME": str(tmp_path), "ORCHESTRION_DATASETS": str(tmp_path / "datasets")}


def test_load_prints_json_and_a_second_load_stores_nothing(env: dict[str, str]) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["datasets", "load", "online-retail", "--path", str(SAMPLE), "--json"], env=env)
    assert first.exit_code == 0, first.output
    result = json.loads(first.stdout)
    assert (result["accepted"], result["rejected"], result["items"], result["users"]) == (17_536, 75, 2571, 150)
    second = runner.invoke(app, ["datasets", "load", "online-retail", "--path", str(SAMPLE), "--json"], env=env)
    assert json.loads(second.stdout)["accepted"] == 0


def test_load_prints_a_summary_table(env: dict[str, str]) -> None:
    out = CliRunner().invoke(app, ["datasets", "load", "online-retail", "--path", str(SAMPLE)], env=env)
    assert out.exit_code == 0, out.output
    assert "17,536" in out.stdout and "events stored" in out.stdout


def test_a_missing_path_is_named_as_the_file_or_folder_it_is(tmp_path: Path) -> None:
    from orchestrion.datasets import locate
    from orchestrion.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match=r"file /no/such/retail\.csv not found; download it from https://"):
        locate("online-retail", "/no/such/retail.csv")
    with pytest.raises(DatasetNotFoundError, match=r"folder /no/such/folder not found"):
        locate("online-retail", "/no/such/folder")


def test_list_names_every_dataset_and_its_download_page(env: dict[str, str]) -> None:
    out = CliRunner().invoke(app, ["datasets", "list", "--json"], env=env)
    assert out.exit_code == 0, out.output
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {"movielens-100k", "lastfm-hetrec-2k", "online-retail", "deskdrop"}
    assert rows["online-retail"]["download"] == "https://archive.ics.uci.edu/dataset/352/online+retail"
    assert rows["deskdrop"]["found"] is False


@pytest.mark.parametrize("command", [[], ["list"], ["load"]])
def test_every_datasets_command_has_help(command: list[str]) -> None:
    out = CliRunner().invoke(app, ["datasets", *command, "--help"])
    assert out.exit_code == 0 and f"Usage: orchestrion datasets {' '.join(command)}".strip() in out.stdout
    assert {(): "dataset", ("list",): "--json", ("load",): "--path"}[tuple(command)] in out.stdout
