"""Online Retail loader: exact counts on the real file, Online Retail II by hand, the shipped sample."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import dataset_path
from orchestrion.config import load_settings
from orchestrion.datasets import LoadResult, load_dataset
from orchestrion.errors import DatasetNotFoundError
from orchestrion.runs.demo import run_demo
from orchestrion.store import Store

NOW = datetime(2024, 6, 1, 12, 0)
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
DOWNLOAD = re.escape("https://archive.ics.uci.edu/dataset/352/online+retail")


@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[Store, LoadResult]]:
    with Store.open(":memory:") as store:
        yield store, load_dataset(store, "online-retail", dataset_path("online-retail"), now=NOW)


def test_every_line_with_a_customer_is_an_event(loaded: tuple[Store, LoadResult]) -> None:
    # Expected figures from the raw file with Python's csv module, independently of polars:
    #   541909 lines; 135080 without CustomerID; of the 406829 with one, 8905 have an InvoiceNo
    #   starting with "C" (sum of -Quantity 274808) and 397924 do not (sum of Quantity 5181696);
    #   4372 distinct CustomerID; 4070 distinct StockCode over all lines. The 5268 lines that
    #   repeat another line exactly are distinct events (see the module docstring).
    store, result = loaded
    assert (result.accepted, result.duplicates, result.rejected) == (406_829, 0, 135_080)
    assert (result.items, result.users) == (4070, 4372)
    assert store.con.execute(
        "SELECT type, count(*), sum(value), min(value) FROM events WHERE domain = 'retail' GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("purchase", 397_924, 5_181_696.0, 1.0), ("return", 8905, 274_808.0, 1.0)]
    assert store.scalar("SELECT count(*) FROM users WHERE timezone = 'Europe/London'") == 4372
    assert store.scalar("SELECT count(*) FROM items WHERE currency = 'GBP'") == 4070
    assert store.con.execute("SELECT source, reason, count(*) FROM failed_events GROUP BY ALL").fetchall() == [
        ("dataset:online-retail", "no CustomerID: an event needs a user (guest order or adjustment)", 135_080)
    ]


def test_lines_keep_invoice_price_and_uk_time_as_utc(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    winter = store.con.execute(
        "SELECT user_id, item_id, ts, value, properties FROM events WHERE event_id = 'online-retail:536365:85123A:1'"
    ).fetchone()
    assert winter == (
        "online-retail:17850",
        "online-retail:85123A",
        datetime(2010, 12, 1, 8, 26),
        6.0,
        '{"order_id":"536365","unit_price":2.55,"currency":"GBP","country":"United Kingdom"}',
    )
    # 2011-06-12 13:17 is British Summer Time, one hour ahead of UTC.
    assert store.scalar("SELECT ts FROM events WHERE event_id = 'online-retail:556484:23184:1'") == datetime(
        2011, 6, 12, 12, 17
    )
    postage = store.con.execute("SELECT title, category FROM items WHERE item_id = 'online-retail:POST'").fetchone()
    assert postage == ("POSTAGE", "charge")


def test_loading_again_stores_nothing_new(loaded: tuple[Store, LoadResult]) -> None:
    store, _ = loaded
    again = load_dataset(store, "online-retail", dataset_path("online-retail"), now=NOW)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 406_829, 135_080)
    assert store.scalar("SELECT count(*) FROM events") == 406_829
    assert store.scalar("SELECT count(*) FROM failed_events") == 135_080
    assert store.scalar("SELECT count(*) FROM users") == 4372


RETAIL_II = """\
Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
489434,85048,GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom
489434,85048,GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom
489435,22350,CAT BOWL ,3,2010-06-01 10:00:00,2.55,13085.0,United Kingdom
C489449,22087,PAPER BUNTING,-12,2009-12-01 10:33:00,2.95,16321.0,Australia
489464,21733,mixed up,-96,2009-12-01 10:52:00,0.0,,United Kingdom
"""


def test_online_retail_ii_header(store: Store, tmp_path: Path) -> None:
    file = tmp_path / "online_retail_II.csv.gz"
    file.write_bytes(gzip.compress(RETAIL_II.encode()))
    result = load_dataset(store, "online-retail", tmp_path, now=NOW)
    assert (result.accepted, result.rejected, result.items, result.users) == (4, 1, 4, 2)
    assert store.con.execute("SELECT event_id, user_id, type, ts, value FROM events ORDER BY 1").fetchall() == [
        ("online-retail:489434:85048:1", "online-retail:13085", "purchase", datetime(2009, 12, 1, 7, 45), 12.0),
        ("online-retail:489434:85048:2", "online-retail:13085", "purchase", datetime(2009, 12, 1, 7, 45), 12.0),
        ("online-retail:489435:22350:1", "online-retail:13085", "purchase", datetime(2010, 6, 1, 9, 0), 3.0),
        ("online-retail:C489449:22087:1", "online-retail:16321", "return", datetime(2009, 12, 1, 10, 33), 12.0),
    ]
    assert store.con.execute("SELECT user_id, timezone, traits FROM users ORDER BY 1").fetchall() == [
        ("online-retail:13085", "Europe/London", '{"country":"United Kingdom"}'),
        ("online-retail:16321", "Europe/London", '{"country":"Australia"}'),
    ]
    assert store.con.execute("SELECT item_id, title, price FROM items ORDER BY 1").fetchall() == [
        ("online-retail:21733", "mixed up", None),
        ("online-retail:22087", "PAPER BUNTING", 2.95),
        ("online-retail:22350", "CAT BOWL", 2.55),
        ("online-retail:85048", "GLASS BALL 20 LIGHTS", 6.95),
    ]
    failed = store.con.execute("SELECT event_id, payload->>'InvoiceNo' FROM failed_events").fetchall()
    assert failed == [("online-retail:489464:21733:1", "489464")]
    again = load_dataset(store, "online-retail", file, now=NOW)
    assert (again.accepted, again.duplicates) == (0, 4)
    assert store.scalar("SELECT count(*) FROM failed_events") == 1


def test_missing_folder_names_the_download_page(store: Store, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=DOWNLOAD):
        load_dataset(store, "online-retail", datasets_root=tmp_path, now=NOW)
    with pytest.raises(DatasetNotFoundError, match="ORCHESTRION_DATASETS"):
        load_dataset(store, "online-retail", now=NOW)


def test_shipped_sample_loads_from_its_file_or_folder(store: Store) -> None:
    # Figures from the sample with Python's csv module: 17611 lines, 75 without CustomerID,
    # 385 cancellation lines and 17151 purchase lines of 150 customers, 2571 distinct StockCode.
    by_file = load_dataset(store, "online-retail", SAMPLES / "online-retail-sample.csv.gz", now=NOW)
    assert (by_file.accepted, by_file.rejected, by_file.items, by_file.users) == (17_536, 75, 2571, 150)
    by_folder = load_dataset(store, "online-retail", SAMPLES, now=NOW)
    assert (by_folder.accepted, by_folder.duplicates) == (0, 17_536)


def test_demo_loads_the_shipped_sample_once(tmp_path: Path) -> None:
    settings = load_settings({"ORCHESTRION_HOME": str(tmp_path)})
    first = run_demo(settings, now=NOW)
    stats = first["stats"]
    assert (stats["events"], stats["failed_events"], stats["users"], stats["items"]) == (17_536, 75, 150, 2571)
    assert stats["events_by_type"] == {"retail/purchase": 17_151, "retail/return": 385}
    assert [run["status"] for run in first["runs"]] == ["succeeded", "succeeded"]
    assert first["deliverables"] and all(d["files"] for d in first["deliverables"])
    second = run_demo(settings, now=NOW)  # nothing new: the sample is stored, the day's runs are done
    assert second["stats"] == stats and second["deliverables"] == first["deliverables"]
    assert [run["run_id"] for run in second["runs"]] == [run["run_id"] for run in first["runs"]]
