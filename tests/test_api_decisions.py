"""An approval through the API whose order the shop took without answering: a 503 that says the
approval stands (not a refusal that "stored nothing"), what the deliverable is now, and that
approving again finishes it, once.

Through the real server: the shipped Online Retail sample delivered by ``orchestrion deliver``
(orders wait for approval), and a loopback order provider that loses its first answer.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest

from http_recorder import Recorder, Request
from launcher import cli, serve
from test_not_done import _home
from test_thumbs_pending import _waiting_carts

pytestmark = pytest.mark.processes

DAY = date(2011, 11, 1)


def test_an_approval_the_shop_did_not_answer_says_it_stands_and_finishes_once(tmp_path: Path) -> None:
    lost: list[str] = []

    def drop_answer(request: Request) -> None:
        if request.path.startswith("/orders") and request.method == "POST" and not lost:
            lost.append(request.headers.get("idempotency-key", ""))
            raise ConnectionAbortedError("the answer is lost")

    with Recorder(before_reply=drop_answer) as shop:
        database = _home(tmp_path, policy="", toml=f'order_url = "{shop.url}/orders"\nllm_timeout = 2.0\n')
        done = cli(tmp_path, "deliver", "--date", DAY.isoformat(), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        deliverable_id, _ = next(iter(_waiting_carts(database).values()))
        with serve(tmp_path) as server:
            first = httpx.post(f"{server.url}/v1/deliverables/{deliverable_id}/approve", timeout=60)
            assert first.status_code == 503, first.text
            body = first.json()
            assert "stored" not in body and "accepted" not in body, body
            assert "the approval stands" in body["detail"] and "approve again" in body["detail"], body
            assert body["status"] == "awaiting_approval"
            assert body["deliverable"]["status_text"] == "Approved: waiting for the shop to confirm the order"
            again = httpx.post(f"{server.url}/v1/deliverables/{deliverable_id}/approve", timeout=60)
            assert again.status_code == 200, again.text
            assert again.json()["status_text"] == "Ordered"
        posts = [r for r in shop.requests if r.method == "POST" and r.path.startswith("/orders")]
        assert len(posts) == 1 and len(shop.orders) == 1


def test_the_page_sent_says_the_approval_before_the_shop_is_called(tmp_path: Path) -> None:
    """Killed while the shop had the order and had not answered, the outbox page said "Waiting for
    your approval" until the sweep reconciled the claim, up to 15 minutes later. It is rewritten
    once the approval is claimed, before the shop is called: what the shop sees, the page says."""
    seen: list[str] = []
    pages: dict[str, Path] = {}

    def read_page(request: Request) -> None:
        if request.path.startswith("/orders") and request.method == "POST":
            seen.append(next(iter(pages.values())).read_text(encoding="utf-8"))

    with Recorder(before_reply=read_page) as shop:
        database = _home(tmp_path, policy="", toml=f'order_url = "{shop.url}/orders"\n')
        done = cli(tmp_path, "deliver", "--date", DAY.isoformat(), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        deliverable_id, _ = next(iter(_waiting_carts(database).values()))
        pages[deliverable_id] = next((tmp_path / "data" / "outbox").rglob(f"*--{deliverable_id}.html"))
        assert "Waiting for your approval" in pages[deliverable_id].read_text(encoding="utf-8")
        with serve(tmp_path) as server:
            approved = httpx.post(f"{server.url}/v1/deliverables/{deliverable_id}/approve", timeout=60)
            assert approved.status_code == 200, approved.text
    assert len(seen) == 1
    assert "Approved: waiting for the shop to confirm the order" in seen[0]
    assert "Waiting for your approval" not in seen[0]
    assert "Ordered" in pages[deliverable_id].read_text(encoding="utf-8")
