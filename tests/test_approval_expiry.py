"""An order nobody approves does not wait for ever: the person's next daily run, more than
``approval_days`` after it was made, cancels it with the reason and frees what it held back.

Real days of the shipped Online Retail sample through the daily pipeline (orders wait for
approval, the default policy).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from orchestrion.config import Settings
from orchestrion.datasets import load_dataset
from orchestrion.delivery.deliverables import decide, get_deliverable
from orchestrion.runs.daily import run_daily
from orchestrion.store import Store

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "samples" / "online-retail-sample.csv.gz"
FIRST = date(2011, 11, 1)


def _waiting(store: Store, day: date) -> set[str]:
    rows = store.con.execute(
        "SELECT deliverable_id FROM deliverables WHERE date = ? AND status = 'awaiting_approval'", [day]
    ).fetchall()
    return {str(r[0]) for r in rows}


def _clock(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=7)


def test_an_order_waiting_past_the_approval_days_is_cancelled_with_the_reason(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, approval_days=14)
    with Store.open(tmp_path / "o.duckdb") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        run_daily(store, settings, FIRST, clock=lambda: _clock(FIRST))
        waiting = _waiting(store, FIRST)
        assert len(waiting) > 20, len(waiting)
        approved = sorted(waiting)[0]
        decide(store, settings, approved, "approve", by="person", viewer=None, now=_clock(FIRST))
        waiting.discard(approved)

        # 14 days later the orders may still be approved.
        on_time = FIRST + timedelta(days=14)
        report = run_daily(store, settings, on_time, clock=lambda: _clock(on_time))
        assert report.run is not None and "approvals_expired" not in report.run.counts
        assert _waiting(store, FIRST) == waiting

        late = FIRST + timedelta(days=15)
        report = run_daily(store, settings, late, clock=lambda: _clock(late))
        assert report.run is not None and report.run.status == "succeeded"
        served = {
            str(r[0])
            for r in store.con.execute("SELECT user_id FROM run_users WHERE run_id = ?", [report.run.run_id]).fetchall()
        }
        owner = "SELECT user_id FROM deliverables WHERE deliverable_id = ?"
        expired = {d for d in waiting if store.scalar(owner, [d]) in served}
        assert expired, "some of 1 November's people are served on 16 November"
        assert report.run.counts["approvals_expired"] == len(expired)
        assert _waiting(store, FIRST) == waiting - expired  # people not served that day keep theirs
        con = store.cursor()
        for deliverable_id in expired:
            record = get_deliverable(con, deliverable_id)
            assert record.status == "cancelled"
            assert record.status_text == "Cancelled: not approved within 14 days, so nothing was ordered"
            assert all(a["status"] == "cancelled" and a["decided_by"] == "expiry" for a in record.actions)
            outbox = next((tmp_path / "data" / "outbox").rglob(f"*--{deliverable_id}*.html"))
            assert "not approved within 14 days" in outbox.read_text(encoding="utf-8")
        assert get_deliverable(con, approved).status == "delivered"  # what was decided stays decided
        # The cart the person ignored for 14 days does not come back in the same run (it did, item
        # for item): it counts as turned down, and its candidates say so.
        sent_late = store.con.execute(
            "SELECT user_id, items FROM deliverables WHERE date = ? AND status IN ('delivered', 'awaiting_approval')",
            [late],
        ).fetchall()
        again_like = 0
        for deliverable_id in expired:
            record = get_deliverable(con, deliverable_id)
            old = set(record.items)
            for user, items in sent_late:
                shared = len(old & set(items))
                # the slate's "substantially overlap": item Jaccard ≥ 0.5, or half of the earlier cart
                alike = shared * 2 >= len(old | set(items)) or shared * 2 >= len(old)
                again_like += user == record.user_id and alike
        assert again_like == 0
        reasons = store.con.execute(
            "SELECT count(*) FROM goals WHERE date = ? AND reason_detail LIKE '%which you left unapproved until it "
            "was cancelled (from 2011-11-01)'", [late],
        ).fetchone()
        assert reasons is not None and reasons[0] > 0
        con.close()
        # Run again, nothing more to expire; nothing was ordered for an expired cart.
        again = run_daily(store, settings, late, clock=lambda: _clock(late), force=True)
        assert again.run is not None and "approvals_expired" not in again.run.counts
        placed = store.con.execute(
            "SELECT count(*) FROM side_effects WHERE deliverable_id IN (SELECT unnest(?::VARCHAR[])) "
            "AND action = 'place_order'",
            [sorted(expired)],
        ).fetchone()
        assert placed is not None and placed[0] == 0


def test_approval_days_zero_lets_an_order_wait(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, approval_days=0)
    with Store.open(":memory:") as store:
        load_dataset(store, "online-retail", SAMPLE, now=datetime(2011, 12, 10))
        run_daily(store, settings, FIRST, clock=lambda: _clock(FIRST))
        waiting = _waiting(store, FIRST)
        late = FIRST + timedelta(days=40)
        report = run_daily(store, settings, late, clock=lambda: _clock(late))
        assert report.run is not None and "approvals_expired" not in report.run.counts
        assert _waiting(store, FIRST) == waiting and waiting
