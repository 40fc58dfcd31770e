"""Proposals recorded in the store, feedback on them (library, bulk import, HTTP, CLI) and the
ranker's retraining from the store. Data: the hand-made stories of ``test_goals_contract``."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from orchestrion.access import keys
from orchestrion.app import create_app
from orchestrion.cli import feedback as feedback_cli
from orchestrion.cli import goals as goals_cli
from orchestrion.config import Settings, load_settings
from orchestrion.delivery.feedback import Feedback, import_feedback, record_feedback
from orchestrion.errors import NotFoundError, UsageError
from orchestrion.proposals.day import ProposalConfig, propose, show_goals
from orchestrion.ranking import ChoiceConfig, choose, empty_history, goal_features, prior_score
from orchestrion.store import Store
from orchestrion.training.fits import labelled_log, train_ranker
from orchestrion.training.versions import model_version
from test_goals_contract import AS_OF, load_tiny, tiny  # noqa: F401  (the fixture)

DAY = AS_OF.date()
RULES = ProposalConfig(choice=ChoiceConfig(budget=2, epsilon=0.0))


def proposed(store: Store, tmp_path: Path, users: list[str] | None = None) -> list[str]:
    result = propose(store, tmp_path / "models", DAY, users, now=AS_OF, config=RULES)
    assert result.chosen > 0
    return [r[0] for r in store.con.execute("SELECT deliverable_id FROM deliverables ORDER BY 1").fetchall()]


def test_propose_records_chosen_and_not_chosen_once(tiny: Store, tmp_path: Path) -> None:  # noqa: F811
    result = propose(tiny, tmp_path / "models", DAY, ["r1", "m1"], now=AS_OF, config=RULES)
    assert (result.users, result.policy) == (2, "prior")
    goals = show_goals(tiny, "r1", DAY)
    chosen = [g for g in goals if g.status == "chosen"]
    # r1's candidates are all carts of one shop: one a day (issue 16), the others are `redundant`.
    assert [g.slot for g in chosen] == [1] and all(g.propensity == 1.0 for g in chosen)
    assert chosen[0].candidate.why == (
        "you bought each of these 2 items on 4 separate days, usually every 7 days; the last time was 7 days ago"
    )
    not_chosen = [g for g in goals if g.status == "not_chosen"]
    assert not_chosen and all(g.reason == "redundant" and g.reason_detail for g in not_chosen)
    assert all(chosen[0].candidate.title in (g.reason_detail or "") for g in not_chosen)
    again = propose(tiny, tmp_path / "models", DAY, ["r1", "m1"], now=AS_OF, config=RULES)
    assert (again.users, again.skipped, again.chosen) == (0, 2, 0)
    assert tiny.scalar("SELECT count(*) FROM deliverables") == result.chosen
    ids = tiny.con.execute("SELECT goal_id FROM goals ORDER BY 1").fetchall()
    assert len(ids) == result.candidates
    with pytest.raises(NotFoundError, match="propose them first"):
        show_goals(tiny, "r1", DAY + timedelta(days=1))


def test_feedback_thumbs_and_exclusions(tiny: Store, tmp_path: Path) -> None:  # noqa: F811
    proposed(tiny, tmp_path, ["r1"])
    due = next(g for g in show_goals(tiny, "r1", DAY) if g.candidate.kind == "due")
    assert due.deliverable_id is not None
    with tiny.transaction() as con:
        receipt = record_feedback(
            con,
            due.deliverable_id,
            Feedback.model_validate(
                {"thumb": "down", "reason": "no mugs", "items": [{"item_id": "A1", "thumb": "down"}]}
            ),
            source="api",
            now=AS_OF,
        )
    assert (receipt.user_id, receipt.excluded) == ("r1", ["A1"])
    with pytest.raises(UsageError, match="needs a thumb"):
        record_feedback(tiny.con, due.deliverable_id, Feedback(), source="api", now=AS_OF)
    with pytest.raises(NotFoundError):
        record_feedback(tiny.con, "d_nope", Feedback(thumb="up"), source="api", now=AS_OF)
    nxt = DAY + timedelta(days=1)
    propose(tiny, tmp_path / "models", nxt, ["r1"], now=AS_OF, config=RULES)
    (items,) = tiny.con.execute(
        "SELECT flatten(list(items)) FROM goals WHERE date = ? AND user_id = 'r1'", [nxt]
    ).fetchall()
    assert "A1" not in items[0], "a thumbed-down item must not come back"
    log = labelled_log(tiny)
    assert log.filter(pl.col("reward").is_not_null()).get_column("reward").to_list() == [0]
    with tiny.transaction() as con:  # a later thumb up on the item lifts the exclusion
        record_feedback(
            con,
            due.deliverable_id,
            Feedback.model_validate({"items": [{"item_id": "A1", "thumb": "up"}]}),
            source="api",
            now=AS_OF,
        )
    assert tiny.scalar("SELECT count(*) FROM item_exclusions") == 0


def test_import_ndjson_and_csv_with_bad_rows(tiny: Store, tmp_path: Path) -> None:  # noqa: F811
    ids = proposed(tiny, tmp_path, ["r1", "m1", "p1"])
    owner = {d: tiny.scalar("SELECT user_id FROM deliverables WHERE deliverable_id = ?", [d]) for d in ids}
    first = {d: str(tiny.scalar("SELECT items[1] FROM deliverables WHERE deliverable_id = ?", [d])) for d in ids}
    lines = [
        {"deliverable_id": ids[0], "thumb": "up"},
        {"deliverable_id": "d_missing", "thumb": "up"},
        {"deliverable_id": ids[1], "thumb": "sideways"},
        {"deliverable_id": ids[1], "user_id": "someone-else", "thumb": "down"},
        {"deliverable_id": ids[1], "thumb": "down", "items": [{"item_id": first[ids[1]], "thumb": "down"}]},
        {"deliverable_id": ids[1], "thumb": "down", "items": [{"item_id": "not-in-it", "thumb": "down"}]},
    ]
    ndjson = tmp_path / "thumbs.ndjson"
    ndjson.write_text("\n".join(json.dumps(line) for line in lines))
    result = import_feedback(tiny, Settings(home=tmp_path), ndjson, now=AS_OF)
    assert (result.rows, result.stored, result.excluded_items) == (6, 2, 1)
    assert [e["line"] for e in result.errors] == [2, 3, 4, 6]
    assert "another user" in result.errors[2]["reason"] and "d_missing" in result.errors[0]["reason"]
    assert f"'not-in-it' is not in deliverable {ids[1]}" in result.errors[3]["reason"]
    # a line that is not JSON, or not an object, is reported by number; the lines around it are stored
    # (one bad line dropped the whole file, with no line number)
    broken = tmp_path / "broken.ndjson"
    broken.write_text(
        json.dumps({"deliverable_id": ids[2], "thumb": "down"}) + "\n" + '{"deliverable_id": 5\n\n[1, 2]\n'
        + json.dumps({"deliverable_id": ids[0], "thumb": "down"}) + "\n"
    )
    partly = import_feedback(tiny, Settings(home=tmp_path), broken, now=AS_OF)
    assert (partly.stored, [e["line"] for e in partly.errors]) == (2, [2, 4])
    assert "not JSON" in partly.errors[0]["reason"] and "one JSON object" in partly.errors[1]["reason"]
    csv = tmp_path / "thumbs.csv"
    pl.DataFrame(
        {
            "deliverable_id": [ids[2]],
            "user_id": [owner[ids[2]]],
            "thumb": ["up"],
            "reason": ["great"],
            "items": [json.dumps([{"item_id": first[ids[2]], "thumb": "up"}])],
        }
    ).write_csv(csv)
    assert import_feedback(tiny, Settings(home=tmp_path), csv, now=AS_OF).stored == 1
    assert tiny.scalar("SELECT count(*) FROM feedback WHERE source = 'import'") == 5


def test_http_feedback_is_for_the_deliverables_user_or_an_admin(tiny: Store, tmp_path: Path) -> None:  # noqa: F811
    ids = proposed(tiny, tmp_path, ["r1", "m1"])
    mine = next(d for d in ids if tiny.scalar("SELECT user_id FROM deliverables WHERE deliverable_id = ?", [d]) == "r1")
    admin = keys.create_key(tiny.con, "admin").key
    r1 = keys.create_key(tiny.con, "user", user_id="r1").key
    m1 = keys.create_key(tiny.con, "user", user_id="m1").key
    write = keys.create_key(tiny.con, "write").key
    app = create_app(tiny, load_settings({}, home=tmp_path))  # mounts the feedback route
    url = f"/v1/deliverables/{mine}/feedback"
    body = {"thumb": "down", "items": [{"item_id": "A2", "thumb": "down"}]}
    with TestClient(app) as client:
        assert client.post(url, json=body).status_code == 401
        assert client.post(url, json={"thumb": "x"}).status_code == 401, "no key: 401 before the body is judged"
        stranger = client.post(url, json={"items": [{"item_id": "NOPE", "thumb": "down"}]},
                               headers={"Authorization": f"Bearer {r1}"})
        assert stranger.status_code == 400 and "'NOPE' is not in deliverable" in stranger.json()["detail"]
        for key, status in ((write, 403), (m1, 404), (r1, 200), (admin, 200)):
            answer = client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == status, answer.text
        assert answer.json()["excluded_items"] == ["A2"]
        assert (
            "only a deliverable's user"
            in client.post(url, json=body, headers={"Authorization": f"Bearer {write}"}).json()["detail"]
        )
        # another user's deliverable is answered as an unknown one
        theirs = client.post(url, json=body, headers={"Authorization": f"Bearer {m1}"}).json()["detail"]
        unknown = client.post("/v1/deliverables/d_nope/feedback", json=body,
                              headers={"Authorization": f"Bearer {m1}"}).json()["detail"]
        assert theirs.replace(mine, "ID") == unknown.replace("d_nope", "ID")
        assert (
            client.post(
                "/v1/deliverables/d_nope/feedback", json=body, headers={"Authorization": f"Bearer {admin}"}
            ).status_code
            == 404
        )
        assert (
            client.post(url, json={"thumb": "maybe"}, headers={"Authorization": f"Bearer {admin}"}).status_code == 422
        )
        # as `curl -d '{"thumb": "up"}'` sends it (form Content-Type), like events: read as JSON all the same
        form = {"Authorization": f"Bearer {admin}", "Content-Type": "application/x-www-form-urlencoded"}
        assert client.post(url, content=b'{"thumb": "up"}', headers=form).status_code == 200
        assert client.post(url, content=b'{"thumb": up', headers=form).status_code == 400
        # every route under /v1 reads such a body as JSON, not only events and feedback
        made = client.post("/v1/keys", content=b'{"role": "write"}', headers=form)
        assert made.status_code == 201, made.text
        plain = {"Authorization": f"Bearer {admin}", "Content-Type": "text/plain"}
        refused = client.post("/v1/keys", content=b"role=write", headers=plain)
        assert refused.status_code == 422 and "Content-Type: application/json" in refused.json()["detail"], refused.text
        schema = client.get("/openapi.json").json()["paths"]["/v1/deliverables/{deliverable_id}/feedback"]["post"]
        assert "thumb" in schema["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert tiny.scalar("SELECT count(*) FROM feedback WHERE source = 'api'") == 3


def test_cli_propose_show_and_import(tmp_path: Path) -> None:
    with Store.open(tmp_path / "data" / "orchestrion.duckdb") as store:
        load_tiny(store)
    app = typer.Typer()
    app.add_typer(goals_cli.app, name="goals")
    app.add_typer(feedback_cli.app, name="feedback")
    app.command("train-ranker")(goals_cli.train_ranker)
    env = {"ORCHESTRION_HOME": str(tmp_path)}
    runner = CliRunner()
    out = runner.invoke(app, ["goals", "propose", "--date", DAY.isoformat(), "--users", "r1", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["chosen"] == 1  # one cart per shop a day
    shown = runner.invoke(app, ["goals", "show", "r1", "--date", DAY.isoformat()], env=env)
    assert shown.exit_code == 0, shown.output
    assert "why this: you bought each of these 2 items on 4 separate days, usually every 7 days" in shown.output
    as_json = json.loads(
        runner.invoke(app, ["goals", "show", "r1", "--date", DAY.isoformat(), "--json"], env=env).output
    )
    deliverable = as_json["chosen"][0]["deliverable_id"]
    thumbs = tmp_path / "t.ndjson"
    thumbs.write_text(json.dumps({"deliverable_id": deliverable, "thumb": "up"}) + "\n")
    imported = runner.invoke(app, ["feedback", "import", str(thumbs), "--json"], env=env)
    assert json.loads(imported.output)["stored"] == 1, imported.output
    trained = runner.invoke(app, ["train-ranker", "--json"], env=env)
    assert trained.exit_code == 0 and json.loads(trained.output)["version"] is None, trained.output
    for path in (["goals"], ["goals", "propose"], ["goals", "show"], ["feedback", "import"], ["train-ranker"]):
        assert runner.invoke(app, [*path, "--help"]).exit_code == 0


def _decided(day: date, prefix: str, rng: np.random.Generator, rules: ChoiceConfig, n: int = 400) -> pl.DataFrame:
    """``n`` hand-made goals of ``day`` (four per user, random numbers), scored by the prior and chosen by ``rules``."""
    cands = pl.DataFrame(
        {
            "user_id": np.repeat([f"u{i}" for i in range(n // 4)], 4),
            "template": ["t"] * n,
            "variant": ["v"] * n,
            "kind": [f"k{i % 4}" for i in range(n)],
            "params": [f'{{"k":{i % 4}}}' for i in range(n)],
            "title": ["T"] * n,
            "items": [[f"x{i}"] for i in range(n)],
            "details": ["{}"] * n,
            "utility": rng.random(n),
            "signal": rng.random(n),
            "novelty": rng.random(n),
            "cost": np.zeros(n),
            "risk": np.full(n, 0.1),
            "why": ["because 1"] * n,
        }
    ).with_columns(
        pl.format("{}_{}", pl.lit(prefix), pl.int_range(pl.len())).alias("goal_id"), pl.lit(day).alias("date")
    )
    feats = goal_features(cands, empty_history(), AS_OF)
    return choose(feats, prior_score(feats), rules, rng=rng).with_columns(pl.lit("prior ε=0.3").alias("policy"))


def test_record_goals_adds_only_what_is_not_stored(store: Store) -> None:
    """Recording a day again (a batch done twice, a goal a trigger recorded first) adds only the
    goals not stored yet, with a deliverable for each chosen one, and leaves stored rows as they
    were; a goal twice in one frame is stored once; another day's goals are their own."""
    from orchestrion.proposals.day import record_goals

    rng = np.random.default_rng(3)
    rules = ChoiceConfig(budget=1, epsilon=0.0, fatigue_days=0)
    day = date(2024, 1, 1)
    first = _decided(day, "g_a", rng, rules, n=40)
    record_goals(store, first.head(20), now=AS_OF)
    again = pl.concat([first, first.head(3)]).with_columns(pl.lit("changed").alias("title"))
    record_goals(store, again, now=AS_OF + timedelta(hours=1))
    record_goals(store, _decided(day + timedelta(days=1), "g_b", rng, rules, n=8), now=AS_OF)

    rows = store.con.execute(
        "SELECT date, count(*), count(DISTINCT goal_id), count(*) FILTER (WHERE title = 'T') FROM goals "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [(day, 40, 40, 20), (day + timedelta(days=1), 8, 8, 8)]
    chosen = first.filter(pl.col("status") == "chosen")
    delivered = store.con.execute("SELECT goal_id, title FROM deliverables WHERE date = ? ORDER BY 1", [day]).fetchall()
    assert [g for g, _ in delivered] == sorted(chosen.get_column("goal_id").to_list())
    kept = set(first.head(20).filter(pl.col("status") == "chosen").get_column("goal_id").to_list())
    assert kept and all((title == "T") == (goal in kept) for goal, title in delivered)


def test_train_ranker_saves_both_estimates(store: Store, tmp_path: Path) -> None:
    """Goals logged by the prior with exploration, thumbs that follow 'novelty' (which the prior
    barely weighs): the new ranker beats the prior off-policy and is promoted."""
    rng = np.random.default_rng(7)
    rules = ChoiceConfig(budget=1, epsilon=0.3, fatigue_days=0)
    from orchestrion.proposals.day import record_goals

    for d in range(6):
        day = date(2024, 1, 1) + timedelta(days=7 * d)
        decided = _decided(day, f"g_{d}", rng, rules)
        record_goals(store, decided, now=AS_OF)
        thumbs = decided.filter(pl.col("status") == "chosen").select(
            ("d_" + pl.col("goal_id").str.slice(2)).alias("deliverable_id"),
            "user_id",
            pl.when(pl.Series(rng.random(decided.filter(pl.col("status") == "chosen").height)) < pl.col("novelty"))
            .then(pl.lit("up"))
            .otherwise(pl.lit("down"))
            .alias("thumb"),
        )
        store.con.register("_thumbs", thumbs.to_arrow())
        store.con.execute(
            "INSERT INTO feedback (deliverable_id, user_id, thumb, source, received_at) "
            "SELECT deliverable_id, user_id, thumb, 'test', ? FROM _thumbs",
            [AS_OF],
        )
        store.con.unregister("_thumbs")
    result = train_ranker(store, tmp_path, now=AS_OF, choice=rules)
    assert result.promoted and result.version is not None, result.outcome
    meta = model_version(tmp_path, "ranker").metadata["metrics"]["offpolicy"]
    assert meta["candidate_estimate"]["snips"] > meta["current_estimate"]["snips"]
    assert meta["current"] == "prior"
    from orchestrion.training.promoted import current_scorer

    scorer = current_scorer(tmp_path)
    assert scorer.name == f"ranker:{result.version.version}"
    assert scorer.trained_until == date(2024, 1, 1) + timedelta(days=7 * 5 + 1), "the day after the last labelled day"
