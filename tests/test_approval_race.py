"""Approvals of one person's carts at the same moment keep to the monthly spending limit.

Each approval was checked against the month's spending without the others in flight, so two or
three carts approved together were all ordered past the limit (a hostile test ordered £425.81
against £400). The policy's verdict and the ledger claim are now taken one at a time per person
(:func:`orchestrion.delivery.deliverables._user_lock`). Real days of the shipped Online Retail
sample; the approvals race on threads as the server's request threads do.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from pathlib import Path

from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.deliverables import decide, get_deliverable
from orchestrion.delivery.stage import deliver, execute
from orchestrion.proposals.day import ProposalConfig, active_users, day_start, propose
from orchestrion.ranking import ChoiceConfig
from orchestrion.runs.daily import run_daily
from orchestrion.store import Store
from orchestrion.tools.policies import Policy

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"
FIRST = date(2011, 11, 1)


def _clock(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=7)


def test_carts_approved_at_once_are_not_ordered_past_the_monthly_limit(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with Store.open(tmp_path / "o.duckdb") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        # several carts of one shop waiting at once: an operator who allows more than one cart a shop
        # (by default a waiting cart holds back the next one of its shop, but its approval still races
        # with a due order, another shop's cart, or carts made before that rule)
        several = ProposalConfig(choice=ChoiceConfig(one_cart_per_shop=False))
        propose(store, settings.models_path, FIRST, now=_clock(FIRST), config=several)
        execute(store, settings, FIRST, active_users(store, day_start(FIRST), 30), now=_clock(FIRST))
        rows = store.con.execute(
            "SELECT user_id, list(deliverable_id ORDER BY deliverable_id), list(CAST(json_extract(content, '$.total') "
            "AS DOUBLE) ORDER BY deliverable_id) FROM deliverables WHERE status = 'awaiting_approval' "
            "GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1"
        ).fetchall()
        assert len(rows) >= 3, rows
        now = _clock(FIRST + timedelta(days=1))
        over = 0
        for _user, carts, totals in rows[:6]:
            # room for the largest cart, not for it and another one
            limit = max(totals) + min(totals) - 0.01
            policy = Policy(max_monthly_spend=limit)
            start = threading.Barrier(len(carts))

            def approve(deliverable_id: str, policy: Policy = policy, start: threading.Barrier = start) -> None:
                start.wait()
                decide(store, settings, deliverable_id, "approve", by="person", viewer=None, now=now, policy=policy)

            threads = [threading.Thread(target=approve, args=(d,)) for d in carts]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            con = store.cursor()
            records = [get_deliverable(con, d) for d in carts]
            con.close()
            ordered = [t for r, t in zip(records, totals, strict=True) if r.status == "delivered"]
            refused = [r for r in records if r.status == "not_done"]
            over += sum(ordered) > limit
            assert len(ordered) >= 1 and len(ordered) + len(refused) == len(carts), [r.status for r in records]
            assert all(r.status_text.startswith("Not ordered: this month's spending limit is reached") for r in refused)
        assert over == 0


def test_two_deliveries_of_one_day_at_once_make_each_deliverable_once(tmp_path: Path) -> None:
    """A daily run and `orchestrion deliver` of the same day at once (or two delivers) both inserted
    the day's deliverables, and the second failed on their keys: a 500 through the server."""
    settings = Settings(home=tmp_path)
    with Store.open(tmp_path / "o.duckdb") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        errors: list[BaseException] = []
        start = threading.Barrier(3)

        def run(kind: str) -> None:
            own = Store(store.cursor(), None)  # a connection of its own, as each server request has
            start.wait()
            try:
                if kind == "run":
                    run_daily(own, settings, FIRST, clock=lambda: _clock(FIRST))
                else:
                    deliver(own, settings, FIRST, now=_clock(FIRST))
            except Exception as exc:  # the test reports whatever a thread raised
                errors.append(exc)
            finally:
                own.con.close()

        threads = [threading.Thread(target=run, args=(kind,)) for kind in ("run", "deliver", "deliver")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        made = store.con.execute("SELECT count(*), count(DISTINCT goal_id) FROM deliverables").fetchone()
        assert made is not None and made[0] == made[1] > 20
        placed = store.scalar("SELECT count(*) - count(DISTINCT idempotency_key) FROM side_effects")
        assert placed == 0
