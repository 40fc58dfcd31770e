from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from orchestrion.cli import app
from orchestrion.config import load_settings
from orchestrion.datasets import load_dataset
from orchestrion.recommenders import load_recommender
from orchestrion.recommenders.repurchase import RepurchaseModel
from orchestrion.runs.demo import sample_path
from orchestrion.store import Store
from orchestrion.training.fits import train_recommender, train_repurchase
from orchestrion.training.versions import model_version

NOW = datetime(2026, 1, 1)
runner = CliRunner()


def test_train_saves_a_loadable_version_that_does_not_retrain(tmp_path: Path) -> None:
    with Store.open(":memory:") as store:
        store.con.execute(
            "INSERT INTO events (event_id, user_id, type, item_id, domain, ts, received_at, value, properties) "
            "SELECT 'e' || i, 'u' || (i % 7), 'play', 'a' || (i % 11), 'music', "
            "TIMESTAMP '2024-01-01' + INTERVAL (i) HOUR, now()::TIMESTAMP, 1, NULL FROM range(200) t(i)"
        )
        result = train_recommender(store, tmp_path, "ease", as_of=NOW, now=NOW, config={"l2": 5.0})
    saved = model_version(tmp_path, "ease-music")
    assert saved.version == result.version.version == "v0001" and saved.promoted
    assert saved.metadata["config"]["l2"] == 5.0
    assert saved.metadata["dataset"]["interactions"] == 77  # every (i % 7, i % 11) pair occurs in range(200)
    model = load_recommender(saved.path / "model")
    assert set(model.users.ids.tolist()) == {f"u{i}" for i in range(7)}
    assert set(result.timings) == {"read_and_build", "fit", "save"}


def test_cli_train_repurchase_on_the_shipped_sample(tmp_path: Path) -> None:
    settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)})
    with Store.open(settings.database_path) as store:  # the sample alone (the demo would train models too)
        load_dataset(store, "online-retail", sample_path(settings))
    env = {"ORCHESTRION_HOME": str(tmp_path)}
    out = runner.invoke(
        app, ["train", "repurchase", "--as-of", "2011-11-01", "--set", "training_cutoffs=2", "--set", "max_iter=20",
              "--json"], env=env,
    )
    assert out.exit_code == 0, out.output
    saved = json.loads(out.output.strip().splitlines()[-1])
    assert saved["kind"] == "repurchase" and saved["promoted"]
    model = RepurchaseModel.load(Path(saved["path"]))
    assert model.config.training_cutoffs == 2
    listing = runner.invoke(app, ["models", "list", "--json"], env=env)
    assert [v["kind"] for v in json.loads(listing.output)] == ["repurchase"]
    with Store.open(settings.database_path) as store:
        second = train_repurchase(store, settings.models_path, as_of=datetime(2011, 11, 1), now=NOW,
                                  config={"training_cutoffs": 2, "max_iter": 20})
    assert second.version.version == "v0002" and not second.version.promoted
    promoted = runner.invoke(app, ["models", "promote", "repurchase", "v0002"], env=env)
    assert promoted.exit_code == 0 and model_version(settings.models_path, "repurchase").version == "v0002"
    assert np.isfinite(second.timings["fit"])
