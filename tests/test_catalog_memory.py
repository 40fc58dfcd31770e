"""CatalogMemory (the writer's catalog merge, leaving out rows it merged already) leaves ``items``
as merging every row with merge_items does, transaction by transaction, with rollbacks and other
writers in between, and moves ``updated_at`` where an item changed and nowhere else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.ingest.catalog import CatalogMemory, merge_items
from orchestrion.store import Store

_ITEMS = ["p1", "p2", "p3", "p4"]
_row = st.fixed_dictionaries(
    {"item_id": st.sampled_from(_ITEMS)},
    optional={
        "domain": st.one_of(st.none(), st.sampled_from(["retail", "music"])),
        "title": st.one_of(st.none(), st.sampled_from(["Tea", "Mug", "Jug"])),
        "creator": st.one_of(st.none(), st.sampled_from(["Ann", "Bo"])),
        "price": st.one_of(st.none(), st.sampled_from([1.0, 2.5, 0.1 + 0.2, 3.0])),
        "currency": st.one_of(st.none(), st.sampled_from(["GBP", "EUR"])),
        "category": st.one_of(st.none(), st.sampled_from(["home", "food"])),
        "tags": st.one_of(st.none(), st.sampled_from([["a"], ["a", "b"]])),
        # a non-ASCII link: the JSON the memory and merge_items write must be the same text
        "image_url": st.one_of(st.none(), st.sampled_from(["https://x.example/1.png", "https://x.example/é.png"])),
        "url": st.one_of(st.none(), st.just("https://x.example/p")),
    },
)
# One merge: rows with distinct item ids (as catalog_rows gives them)
_merge = st.lists(_row, max_size=4).map(lambda rows: list({r["item_id"]: r for r in rows}.values()))
# A transaction: its merges, then commit, roll back, or another writer's upsert after it
_transaction = st.tuples(st.lists(_merge, min_size=1, max_size=3), st.sampled_from(["commit", "rollback", "other"]))

_COLUMNS = "item_id, domain, title, creator, price, currency, category, tags, properties"


_STORES: list[Any] = []


def _empty_stores() -> tuple[Any, Any]:
    """Two in-memory stores with an empty catalog (opened once: migrations take a while)."""
    if not _STORES:
        _STORES.extend(Store.open(":memory:").con for _ in range(2))
    for con in _STORES:
        con.execute("DELETE FROM items")
    return _STORES[0], _STORES[1]


def _items(con: Any) -> dict[str, tuple[Any, ...]]:
    """Each item's fields, its properties as JSON values (their keys' order is not content)."""
    rows = con.execute(f"SELECT {_COLUMNS} FROM items ORDER BY item_id").fetchall()
    return {row[0]: (*row[1:-1], None if row[-1] is None else json.loads(row[-1])) for row in rows}


def _stamps(con: Any) -> dict[str, Any]:
    return dict(con.execute("SELECT item_id, updated_at FROM items").fetchall())


def _changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {item for item, value in after.items() if before.get(item) != value}


@settings(max_examples=150, deadline=None)
@given(st.lists(_transaction, min_size=1, max_size=8))
def test_memory_stores_what_merging_every_row_stores(
    transactions: list[tuple[list[list[dict[str, Any]]], str]],
) -> None:
    mine, oracle = _empty_stores()
    memory = CatalogMemory()
    for merges, end in transactions:
        stamps, content = _stamps(mine), _items(mine)
        for con in (mine, oracle):
            con.execute("BEGIN TRANSACTION")
        changed_at_some_point, last = set(), content
        for rows in merges:
            memory.merge(mine, rows)
            merge_items(oracle, rows)
            now = _items(mine)
            changed_at_some_point |= _changed(last, now)
            last = now
        if end == "rollback":
            for con in (mine, oracle):
                con.execute("ROLLBACK")
            memory.rolled_back()
        else:
            for con in (mine, oracle):
                con.execute("COMMIT")
            memory.committed()
        assert _items(mine) == _items(oracle)
        # updated_at moves where the content changed (in the end, or on the way), and only there
        touched = _changed(stamps, _stamps(mine))
        assert _changed(content, _items(mine)) <= touched <= changed_at_some_point
        if end == "other":  # another writer changes an item behind the memory's back
            for con in (mine, oracle):
                con.execute("UPDATE items SET price = 2.5, title = 'Tea', properties = NULL")
            memory.forget()


def test_a_row_merged_already_is_left_out_until_another_writer_writes() -> None:
    con = Store.open(":memory:").con
    memory = CatalogMemory()
    con.execute("BEGIN TRANSACTION")
    assert memory.merge(con, [{"item_id": "p1", "title": "Tea", "price": 2.5, "currency": "GBP"}]) == 1
    con.execute("COMMIT")
    memory.committed()
    con.execute("UPDATE items SET updated_at = TIMESTAMP '2000-01-01'")
    memory.forget()  # the UPDATE above is another writer: the memory must not trust what it knew
    assert memory.merge(con, [{"item_id": "p1", "title": "Tea", "price": 2.5, "currency": "GBP"}]) == 1
    assert memory.merge(con, [{"item_id": "p1", "title": "Tea", "price": 2.5, "currency": "GBP"}]) == 0
    assert memory.merge(con, [{"item_id": "p1", "title": None, "price": 3.0, "currency": "GBP"}]) == 1
    assert con.execute("SELECT title, price, currency FROM items").fetchall() == [("Tea", 3.0, "GBP")]
