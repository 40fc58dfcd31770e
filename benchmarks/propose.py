"""Proposing and ranking goals for every user of the largest dataset for one day, in users/s.

    ORCHESTRION_DATASETS=... .venv/bin/python benchmarks/propose.py [--date 2011-11-01] [--repeat 3]

Loads ``online-retail`` (406,829 events, 4,372 customers: the largest of the real datasets) into
an in-memory store and trains the repurchase model on cut-offs before the day (neither timed).
Then times :func:`orchestrion.proposals.day.propose` for *every* customer: read the events before
the day, run ``purchase_stats.sql``, score every (customer, item) pair with the repurchase model,
build the reorder carts, compute the ranker's features from the deliverable history, score,
choose within the budget with exploration, and write every candidate and deliverable to DuckDB.

Baseline, in the same run: the bare model work the proposals are built on — the
``purchase_stats`` pipeline plus the repurchase model scoring every pair, nothing else. The ratio
says what the goal layer (templates, features, ranking, choosing, writing) costs on top.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import date, datetime
from datetime import time as clock
from pathlib import Path

from orchestrion.datasets import load_dataset
from orchestrion.proposals.day import ProposalConfig, propose
from orchestrion.recommenders.repurchase import RepurchaseModel
from orchestrion.store import Store, utcnow
from orchestrion.training.fits import train_repurchase
from orchestrion.training.pipelines import purchase_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--date", default="2011-11-01")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    day = date.fromisoformat(args.date)
    as_of = datetime.combine(day, clock())
    root = os.environ.get("ORCHESTRION_DATASETS")
    if not root:
        raise SystemExit("set ORCHESTRION_DATASETS to the folder holding online-retail/")
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        with Store.open(":memory:") as store:
            load_dataset(store, "online-retail", datasets_root=Path(root))
            trained = train_repurchase(store, models, as_of=as_of, now=utcnow(), config={"training_cutoffs": 3})
            model = RepurchaseModel.load(trained.version.path)
            users = [str(r[0]) for r in store.con.execute("SELECT DISTINCT user_id FROM events ORDER BY 1").fetchall()]

            baseline = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                model.predict(purchase_features(store.con, as_of))
                baseline.append(time.perf_counter() - started)

            runs = []
            for i in range(args.repeat):
                store.con.execute("DELETE FROM deliverables; DELETE FROM goals")
                started = time.perf_counter()
                result = propose(store, models, day, users, now=utcnow(), config=ProposalConfig(seed=i))
                runs.append(time.perf_counter() - started)
    seconds, base = statistics.median(runs), statistics.median(baseline)
    print(f"online-retail, {day}: {len(users):,} users, {result.candidates:,} candidates, {result.chosen:,} chosen")
    print(f"propose + rank + choose + record   {seconds:6.2f} s   {len(users) / seconds:10,.0f} users/s")
    print(f"baseline: purchase_stats + scoring {base:6.2f} s   {len(users) / base:10,.0f} users/s")
    print(f"overhead of the goal layer          {seconds / base:6.2f}x the bare model scoring")


if __name__ == "__main__":
    main()
