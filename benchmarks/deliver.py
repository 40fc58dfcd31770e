"""LLM planning throughput against a loopback endpoint that answers after a fixed latency.

The endpoint (tests/openai_server.py, the "competent" scripted model) answers every request after
``--latency`` seconds; ``--goals`` goals of the four templates are planned with
:func:`orchestrion.planning.llm.plan_many` at ``--concurrency``, through the real openai client,
the executor and the tools on an in-memory store. With C requests in flight and latency L, the
bound is C / L model turns per second; the figure is the achieved rate as a share of it (target
>= 80%: the path is bound by the configured concurrency, not by our code).

``--offline``: the offline planner over one day (2011-11-19) of the largest dataset we deliver,
Online Retail (from ``ORCHESTRION_DATASETS``): deliverables per second for planning, review,
effects and writes, printed next to the baseline measured in the same run — the proposal step
for the same users (goals ranked and recorded, nothing planned).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deliver.py [--goals 200] [--concurrency 16] [--latency 0.2]
    OMP_NUM_THREADS=1 ORCHESTRION_DATASETS=../shared/datasets .venv/bin/python benchmarks/deliver.py --offline
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from openai_server import OpenAIServer, planning_responder
from orchestrion.config import load_settings
from orchestrion.planning.executor import Executor
from orchestrion.planning.llm import LLMPlanner, plan_many
from orchestrion.planning.llm_client import ChatClient
from orchestrion.store import Store
from orchestrion.tools import CatalogItem, GoalRecord, ToolContext, allowed_tools

DAY = date(2024, 5, 2)
NOW = datetime(2024, 5, 2, 9)
ITEMS = {
    "playlist": [CatalogItem(f"t{i}", "music", f"Track {i}", f"Artist {i}", None, None, None, None) for i in range(8)],
    "watchlist": [CatalogItem(f"m{i}", "movies", f"Movie {i}", None, None, None, None, None) for i in range(6)],
    "digest": [CatalogItem(f"a{i}", "news", f"Story {i}", "Desk", None, None, None, f"Lead {i}.") for i in range(5)],
    "reorder": [CatalogItem(f"p{i}", "retail", f"Product {i}", "Shop", 2.0 + i, "GBP", None, None) for i in range(3)],
}


def offline() -> None:
    """One day of Online Retail with the offline planner; baseline: proposing the same day."""
    import os
    import tempfile

    from orchestrion.datasets import load_dataset
    from orchestrion.delivery.stage import execute
    from orchestrion.proposals.day import active_users, day_context, day_start, propose

    day, now = date(2011, 11, 19), datetime(2011, 11, 19, 7)
    root = Path(os.environ.get("ORCHESTRION_DATASETS", "../shared/datasets"))
    settings = load_settings({"ORCHESTRION_HOME": tempfile.mkdtemp()})
    with Store.open(settings.database_path) as store:
        load_dataset(store, "online-retail", root / "online-retail", now=now)
        users = active_users(store, day_start(day), 30)
        started = time.perf_counter()
        with day_context(store, settings.models_path, day) as shared:
            proposed = propose(store, settings.models_path, day, users, now=now, shared=shared)
        propose_s = time.perf_counter() - started
        started = time.perf_counter()
        result = execute(store, settings, day, users, now=now)
        execute_s = time.perf_counter() - started
    made = result.deliverables
    print(f"online-retail {day}: {len(users)} users, {proposed.chosen} chosen goals, {made} deliverables")
    print(f"baseline  propose (rank + record): {proposed.chosen / propose_s:8.1f} goals/s ({propose_s:.1f} s)")
    print(f"offline   plan + review + effects + write:      {made / execute_s:8.1f} deliverables/s ({execute_s:.1f} s)")
    print(f"ratio     delivery rate / proposal rate: {made / execute_s / (proposed.chosen / propose_s):8.2f}")
    print(f"statuses  {result.statuses}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--offline", action="store_true", help="Measure the offline planner on Online Retail.")
    args = parser.parse_args()
    if args.offline:
        offline()
        return
    catalog = {item.item_id: item for items in ITEMS.values() for item in items}
    templates = list(ITEMS)
    with Store.open(":memory:") as store, OpenAIServer(responder=planning_responder(args.latency)) as server:
        settings = load_settings({}, llm_base_url=server.base_url, llm_model="fixed-latency", llm_timeout=10.0)
        planner = LLMPlanner(ChatClient.from_settings(settings), settings)
        jobs = []
        for n in range(args.goals):
            template = templates[n % len(templates)]
            items = tuple(i.item_id for i in ITEMS[template])
            lines = [{"item_id": i, "quantity": 1, "unit_price": catalog[i].price} for i in items]
            details = {"lines": lines, "currency": "GBP"} if template == "reorder" else {}
            goal = GoalRecord(f"g{n}", f"d{n}", f"u{n}", DAY, template, "daily", "Pick", items, {}, details, "why")
            ctx = ToolContext(goal, NOW, catalog, frozenset(), connect=store.cursor)
            jobs.append((goal, Executor(ctx, allowed_tools(template))))
        started = time.perf_counter()
        outcomes = plan_many(planner, jobs, concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        planner.close()
        turns = len(server.requests)
    ok = sum(o.fallback is None and not o.plan.nothing_to_do for o in outcomes)
    bound = args.concurrency / args.latency
    rate = turns / seconds
    print(f"{args.goals} goals ({ok} planned by the model), {turns} model turns in {seconds:.2f} s")
    print(f"deliverables/s: {args.goals / seconds:.1f}; turns/s: {rate:.1f}")
    print(f"bound concurrency/latency = {bound:.1f} turns/s; achieved {100 * rate / bound:.0f}% (target >= 80%)")


if __name__ == "__main__":
    main()
