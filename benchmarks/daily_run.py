"""The daily pipeline (offline planner) on the largest real dataset and on scaled copies, in users/s.

    ORCHESTRION_DATASETS=... OMP_NUM_THREADS=1 .venv/bin/python benchmarks/daily_run.py [--scales 1 4 16]

Loads ``online-retail`` into a DuckDB file in a temporary folder, trains the repurchase model
before the day (not timed), and for each scale k copies every customer's events k-1 times under
new ids (``<user>~i``: a load test, not new information), then times :func:`orchestrion.daily.run_daily`
for the day: the shared context, then per batch of ``delivery_batch_users`` users propose, rank,
choose, plan, review, carry out and deliver, with the run ledger. Reports users/s, the peak RSS of
the process, and writes the scaling chart to ``docs/img/daily_run_scaling.png``.

Baseline, measured in the same run at each scale: the bare propose step alone for the same users
(:func:`orchestrion.proposals.propose`, one call, no ledger, no planning or delivery).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import date, datetime
from datetime import time as clock
from pathlib import Path

from orchestrion.config import Settings
from orchestrion.daily import run_daily
from orchestrion.datasets import load_dataset
from orchestrion.proposals import active_users, propose
from orchestrion.store import Store, utcnow
from orchestrion.training import train_repurchase


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", default="2011-11-01")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    day = date.fromisoformat(args.date)
    as_of = datetime.combine(day, clock())
    root = os.environ.get("ORCHESTRION_DATASETS")
    if not root:
        raise SystemExit("set ORCHESTRION_DATASETS to the folder holding online-retail/")
    results = []
    for scale in args.scales:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(home=Path(tmp), delivery_batch_users=args.batch)
            with Store.open(settings.database_path) as store:
                load_dataset(store, "online-retail", datasets_root=Path(root))
                for i in range(1, scale):
                    store.con.execute(
                        "INSERT INTO events SELECT event_id || $s, user_id || $s, type, item_id, domain, ts, "
                        "received_at, value, properties FROM events WHERE NOT contains(user_id, '~')",
                        {"s": f"~{i}"},
                    )
                train_repurchase(store, settings.models_path, as_of=as_of, now=utcnow(),
                                 config={"training_cutoffs": 3})
                users = active_users(store, as_of, 30)
                events = store.scalar("SELECT count(*) FROM events")
                started = time.perf_counter()
                report = run_daily(store, settings, day)
                seconds = time.perf_counter() - started
                assert report.run is not None and report.run.status == "succeeded"
                store.con.execute("DELETE FROM deliverables; DELETE FROM goals")
                started = time.perf_counter()
                propose(store, settings.models_path, day, users, now=utcnow())
                base = time.perf_counter() - started
        results.append((scale, len(users), events, seconds, base, peak_mb(), report.run.counts))
        print(f"{scale:>3}x  {len(users):>7,} users  {events:>10,} events  daily {seconds:7.2f} s "
              f"{len(users) / seconds:8,.0f} users/s   baseline propose {base:6.2f} s {len(users) / base:8,.0f} users/s"
              f"   peak RSS {peak_mb():7,.0f} MB", flush=True)
    print("counts at the largest scale:", results[-1][6])
    chart(results)


def chart(results: list[tuple[int, int, object, float, float, float, object]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = [r[1] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(users, [r[3] for r in results], "o-", label="daily run")
    left.plot(users, [r[4] for r in results], "s--", label="baseline: bare propose")
    left.set_xlabel("active users")
    left.set_ylabel("seconds")
    left.legend()
    left.set_title("time against users")
    right.plot(users, [r[1] / r[3] for r in results], "o-", label="daily run")
    right.axhline(500, color="grey", linestyle=":", label="target 500 users/s")
    right.set_xlabel("active users")
    right.set_ylabel("users/s")
    right.legend()
    right.set_title("throughput")
    fig.tight_layout()
    out = Path(__file__).resolve().parents[1] / "docs" / "img" / "daily_run_scaling.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"chart: {out}")


if __name__ == "__main__":
    main()
