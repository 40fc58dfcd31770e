"""A thumbed-down item leaves the person's carts still waiting for approval (issue 16, point 5).

Through the real server: the shipped Online Retail sample delivered by ``orchestrion deliver``
(orders wait for approval, the default policy), then a person's thumbs and approvals over HTTP,
and a loopback order provider that records what is ordered.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from http_recorder import Recorder
from launcher import cli, serve
from orchestrion.access.keys import create_key
from orchestrion.config import load_settings
from orchestrion.delivery.deliverables import decide, get_deliverable
from orchestrion.errors import AlreadyDecidedError
from orchestrion.money import format_money
from orchestrion.store import Store
from orchestrion.web.feed import card
from test_not_done import _home

pytestmark = pytest.mark.processes

DAY = date(2011, 11, 1)


def _waiting_carts(database: Path) -> dict[str, tuple[str, list[str]]]:
    """Users with a cart waiting for approval: (deliverable, the cart's item ids), by user."""
    with Store.open(database) as store:
        rows = store.con.execute(
            "SELECT d.user_id, d.deliverable_id, d.content FROM deliverables d WHERE d.date = ? "
            "AND d.status = 'awaiting_approval' AND EXISTS (SELECT 1 FROM pending_actions p WHERE "
            "p.deliverable_id = d.deliverable_id AND p.action = 'place_order' AND p.status = 'waiting') ORDER BY 1",
            [DAY],
        ).fetchall()
    return {str(u): (str(d), [i["item_id"] for i in json.loads(c)["items"]]) for u, d, c in rows}


def test_a_thumbed_down_item_leaves_waiting_carts_and_an_emptied_cart_is_cancelled(tmp_path: Path) -> None:
    with Recorder() as shop:
        database = _home(tmp_path, policy="", toml=f'order_url = "{shop.url}/orders"\n')
        done = cli(tmp_path, "deliver", "--date", DAY.isoformat(), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        carts = _waiting_carts(database)
        trimmed, emptied, webbed, refused = [u for u, (_, items) in carts.items() if len(items) >= 3][:4]
        with Store.open(database) as store:
            admin = create_key(store.con, "admin").key
        auth = {"Authorization": f"Bearer {admin}"}

        with serve(tmp_path) as server:
            def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                return httpx.request(method, server.url + path, headers=auth, timeout=30, **kwargs)

            d_trim, items = carts[trimmed]
            dropped = items[1]
            said = call("POST", f"/v1/deliverables/{d_trim}/feedback",
                        json={"items": [{"item_id": dropped, "thumb": "down"}]})
            assert said.status_code == 200, said.text
            shown = call("GET", f"/v1/deliverables/{d_trim}").json()
            assert shown["status"] == "awaiting_approval"
            assert [i["item_id"] for i in shown["content"]["items"]] == [i for i in items if i != dropped]
            assert shown["content"]["total"] == round(sum(i["line_total"] for i in shown["content"]["items"]), 2)
            assert dropped not in shown["items"] and dropped not in json.dumps(shown["actions"][0]["arguments"])
            # the outbox page the person was sent shows the cart as it is now (rewritten on the change)
            outbox = tmp_path / "data" / "outbox"
            page = next(outbox.rglob(f"*--{d_trim}.html")).read_text()
            embedded = re.search(r'id="orchestrion-deliverable">(.*?)</script>', page)
            assert embedded is not None
            assert json.loads(embedded[1])["content"]["items"] == shown["content"]["items"]
            assert "Total</td>" in page and format_money(shown["content"]["total"], "GBP") in page
            approved = call("POST", f"/v1/deliverables/{d_trim}/approve")
            assert approved.status_code == 200, approved.text
            assert approved.json()["status"] == "delivered"

            d_empty, every = carts[emptied]
            said = call("POST", f"/v1/deliverables/{d_empty}/feedback",
                        json={"items": [{"item_id": i, "thumb": "down"} for i in every]})
            assert said.status_code == 200, said.text
            gone = call("GET", f"/v1/deliverables/{d_empty}").json()
            assert gone["status"] == "cancelled" and gone["content"]["items"] == [], gone
            assert gone["error"] and "thumbed down" in gone["error"]
            assert gone["status_text"].startswith("Cancelled: you thumbed down every item")
            # nothing it says still counts the items it had or their price: it holds none now
            words = " ".join(str(gone[k]) for k in ("title", "summary", "why"))
            assert f"This cart had {len(every)} items" in words and "£" not in words, words
            page = next(outbox.rglob(f"*--{d_empty}.html")).read_text()
            assert "Cancelled: you thumbed down every item" in page and "Waiting for your approval" not in page
            late = call("POST", f"/v1/deliverables/{d_empty}/approve")
            assert late.status_code == 409, late.text

            # The same through the web page: the person's thumb on an item of their card.
            d_web, web_items = carts[webbed]
            key = call("POST", "/v1/keys", json={"role": "user", "user_id": webbed}).json()["key"]
            with httpx.Client(base_url=server.url, follow_redirects=False, timeout=30) as browser:
                page = browser.get("/signin")
                token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
                assert token is not None
                assert browser.post("/signin", data={"signin_token": token[1], "credential": key}).status_code == 303
                feed = browser.get("/", params={"date": DAY.isoformat()})
                form = re.search(r'name="form_token" value="([^"]+)"', feed.text)
                assert form is not None
                thumbed = browser.post(f"/deliverables/{d_web}/thumbs",
                                       data={"form_token": form[1], "thumb": "down", "item_id": web_items[0]})
                assert thumbed.status_code == 303, thumbed.text
            left = call("GET", f"/v1/deliverables/{d_web}").json()
            assert [i["item_id"] for i in left["content"]["items"]] == web_items[1:]
            assert left["status"] == "awaiting_approval"

            # "Not for me" on a whole cart waiting for approval: it is not ordered (it stayed waiting,
            # approvable, and was later cancelled as "not approved within 14 days").
            d_refused, _ = carts[refused]
            said = call("POST", f"/v1/deliverables/{d_refused}/feedback", json={"thumb": "down"})
            assert said.status_code == 200, said.text
            turned = call("GET", f"/v1/deliverables/{d_refused}").json()
            assert turned["status"] == "rejected", turned["status"]
            assert turned["status_text"] == "Rejected: nothing was ordered"
            assert all(a["status"] == "rejected" and a["decided_by"] == "thumbs-down" for a in turned["actions"])
            page = next(outbox.rglob(f"*--{d_refused}.html")).read_text()
            assert "Rejected: nothing was ordered" in page and "Waiting for your approval" not in page
            assert call("POST", f"/v1/deliverables/{d_refused}/approve").status_code == 409
            # a thumb down on a cart already ordered changes nothing but the label
            again = call("POST", f"/v1/deliverables/{d_trim}/feedback", json={"thumb": "down"})
            assert again.status_code == 200
            assert call("GET", f"/v1/deliverables/{d_trim}").json()["status"] == "delivered"

        orders = [o["order"] for o in shop.orders.values()]
        assert len(orders) == 1, "one order: the trimmed cart; nothing for the emptied one"
        assert orders[0]["deliverable_id"] == d_trim
        assert [line[0] for line in orders[0]["lines"]] == [i["item_id"] for i in shown["content"]["items"]]
        assert orders[0]["total"] == shown["content"]["total"], "the cart shown is the cart ordered"


def test_a_bulk_import_trims_waiting_carts_as_a_thumb_through_the_api_does(tmp_path: Path) -> None:
    """``orchestrion feedback import`` goes through the same step as the API's thumb
    (:func:`orchestrion.delivery.feedback.trim_pending`): the thumbed-down item leaves the waiting
    cart (re-priced, its order's lines and outbox page with it), a cart thumbed down item by item
    to nothing is cancelled with the reason, and approving the trimmed cart orders what is shown."""
    with Recorder() as shop:
        database = _home(tmp_path, policy="", toml=f'order_url = "{shop.url}/orders"\n')
        done = cli(tmp_path, "deliver", "--date", DAY.isoformat(), "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        carts = _waiting_carts(database)
        with Store.open(database) as store:  # a user whose other carts of the day name the kept one
            named = {str(r[0]) for r in store.con.execute(
                "SELECT DISTINCT user_id FROM goals WHERE date = ? AND reason = 'redundant'", [DAY]).fetchall()}
        trimmed = next(u for u, (_, items) in carts.items() if len(items) >= 3 and u in named)
        emptied = next(u for u, (_, items) in carts.items() if len(items) >= 3 and u != trimmed)
        (d_trim, items), (d_empty, every) = carts[trimmed], carts[emptied]
        dropped = items[1]
        rows = [
            {"deliverable_id": d_trim, "items": [{"item_id": dropped, "thumb": "down"}]},
            *({"deliverable_id": d_empty, "items": [{"item_id": i, "thumb": "down"}]} for i in every),
        ]
        thumbs = tmp_path / "thumbs.ndjson"
        thumbs.write_text("\n".join(json.dumps(row) for row in rows))
        imported = cli(tmp_path, "feedback", "import", str(thumbs), "--json")
        assert imported.returncode == 0, imported.stderr[-2000:]
        summary = json.loads(imported.stdout)
        assert (summary["stored"], summary["rejected"]) == (len(rows), 0)
        assert summary["carts_changed"] == {d_trim: "awaiting_approval", d_empty: "cancelled"}

        settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)})
        with Store.open(database) as store:
            shown = get_deliverable(store.con, d_trim).as_dict()
            gone = get_deliverable(store.con, d_empty).as_dict()
            assert shown["status"] == "awaiting_approval"
            assert [i["item_id"] for i in shown["content"]["items"]] == [i for i in items if i != dropped]
            assert shown["content"]["total"] == round(sum(i["line_total"] for i in shown["content"]["items"]), 2)
            assert dropped not in shown["items"] and dropped not in json.dumps(shown["actions"][0]["arguments"])
            assert gone["status"] == "cancelled" and gone["content"]["items"] == []
            assert gone["error"] and "thumbed down" in gone["error"]
            assert card(store.con, d_empty).items == [], "the web card lists no line of a cart that holds none"
            # the carts not chosen for being like the kept one name it by its title as it is now
            reasons = [str(r[0]) for r in store.con.execute(
                "SELECT reason_detail FROM goals WHERE user_id = ? AND date = ? AND reason = 'redundant'",
                [trimmed, DAY]).fetchall()]
            assert reasons and all(f"'{shown['title']}'" in r for r in reasons), (shown["title"], reasons)
            outbox = tmp_path / "data" / "outbox"
            page = next(outbox.rglob(f"*--{d_trim}.html")).read_text()
            embedded = re.search(r'id="orchestrion-deliverable">(.*?)</script>', page)
            assert embedded is not None and json.loads(embedded[1])["content"]["items"] == shown["content"]["items"]
            page = next(outbox.rglob(f"*--{d_empty}.html")).read_text()
            assert "Cancelled: you thumbed down every item" in page and "Waiting for your approval" not in page
            now = datetime(2011, 11, 1, 12)
            approved = decide(store, settings, d_trim, "approve", by="test", viewer=None, now=now)
            assert approved.status == "delivered"
            with pytest.raises(AlreadyDecidedError):
                decide(store, settings, d_empty, "approve", by="test", viewer=None, now=now)
        orders = [o["order"] for o in shop.orders.values()]
        assert len(orders) == 1 and orders[0]["deliverable_id"] == d_trim
        assert [line[0] for line in orders[0]["lines"]] == [i["item_id"] for i in shown["content"]["items"]]
        assert orders[0]["total"] == shown["content"]["total"], "the cart shown is the cart ordered"
