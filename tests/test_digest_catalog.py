"""A goal proposes only items a person can be shown with a title (issue 16): a real DeskDrop day.

DeskDrop's reading log names far more articles than its catalog holds (213 articles), and the
digest used to propose whatever was fresh and read: on this day, before the fix, every one of the
1,377 digest goals held an article missing from the catalog (5,097 of 5,836 articles), and of the
913 digests delivered 364 held one article (the planner drops what it cannot show). Now every
proposed article is in the catalog with a title, and no digest is left with a single article.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import dataset_path
from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.proposals.day import active_users, day_start
from orchestrion.runs.daily import run_daily
from orchestrion.store import Store

pytestmark = [pytest.mark.datasets, pytest.mark.slow]

USERS = 400  # the first 400 active users (sorted ids) of the day, as tests/test_why_numbers.py


def test_a_deskdrop_day_proposes_only_catalogued_articles(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, delivery_batch_users=500)
    with Store.open(":memory:") as store:
        load_dataset(store, "deskdrop", dataset_path("deskdrop"), now=datetime(2024, 1, 1))
        last = store.con.execute("SELECT max(ts) FROM events").fetchall()[0][0]
        day = (last - timedelta(days=20)).date()
        users = active_users(store, day_start(day), 30)[:USERS]
        morning = datetime.combine(day, datetime.min.time()) + timedelta(hours=7)
        report = run_daily(store, settings, day, users=users, clock=lambda: morning)
        assert report.run is not None and report.run.status == "succeeded"
        goals, articles, missing = store.con.execute(
            "SELECT count(DISTINCT goal_id), count(*), "
            "count(*) FILTER (WHERE i.item_id IS NULL OR coalesce(trim(i.title), '') = '') "
            "FROM (SELECT goal_id, unnest(items) AS item_id FROM goals WHERE template = 'digest') g "
            "LEFT JOIN items i USING (item_id)"
        ).fetchall()[0]
        sizes = dict(
            store.con.execute(
                "SELECT len(items), count(*) FROM deliverables WHERE template = 'digest' GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        print({"digest_goals": goals, "articles": articles, "missing_from_catalog": missing, "digests_by_size": sizes})
        assert goals > 100 and missing == 0
        delivered = sum(sizes.values())
        assert delivered > 100
        assert sizes.get(1, 0) == 0, "a digest of one article"
        assert sizes.get(0, 0) == 0
