"""Feature pipelines: run the SQL files of ``pipelines/`` and turn their tables into arrays.

Each pipeline is one ``CREATE OR REPLACE TABLE`` statement with named parameters; this module
finds the file, binds the parameters and runs it on a connection handed in. The sparse matrix
builder reads the ``interactions`` table with DuckDB into Arrow, and builds the CSR matrix and
the ID ↔ index vocabularies with numpy — no per-row Python.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

import duckdb
import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from orchestrion.errors import NotFoundError, UsageError

__all__ = [
    "PIPELINES_DIR",
    "InteractionArrays",
    "Weighting",
    "interaction_arrays",
    "pipeline_frame",
    "pipeline_names",
    "purchase_features",
    "purchases_between",
    "run_pipeline",
]

PIPELINES_DIR: Final = Path(__file__).resolve().parents[3] / "pipelines"
"""The repository's ``pipelines/`` folder (orchestrion is installed from its checkout)."""

Weighting = Literal["binary", "count", "value", "log_value", "decayed"]


def pipeline_names(folder: Path = PIPELINES_DIR) -> list[str]:
    """The pipelines available, by file name without ``.sql``."""
    return sorted(p.stem for p in folder.glob("*.sql"))


def _pipeline_sql(
    name: str, params: Mapping[str, object], folder: Path, tables: Mapping[str, str]
) -> tuple[str, dict[str, object]]:
    """The statement of ``pipelines/<name>.sql`` with ``tables`` renamed, and the parameters it uses."""
    path = folder / f"{name}.sql"
    if not path.is_file():
        raise NotFoundError(f"no pipeline {name!r} in {folder}; available: {', '.join(pipeline_names(folder))}")
    sql = path.read_text()
    for table, private in tables.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", private):
            raise UsageError(f"table name {private!r} must be letters, digits and underscores")
        sql = re.sub(rf"\b{re.escape(table)}\b", private, sql)
    wanted = set(re.findall(r"\$(\w+)", sql))
    missing = wanted - params.keys()
    if missing:
        raise UsageError(f"pipeline {name} needs parameters {sorted(missing)}")
    return sql, {k: v for k, v in params.items() if k in wanted}


def run_pipeline(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, object],
    *,
    folder: Path = PIPELINES_DIR,
) -> float:
    """Run ``pipelines/<name>.sql`` with ``params`` (the ``$names`` it uses); returns seconds taken."""
    sql, bound = _pipeline_sql(name, params, folder, {})
    started = time.perf_counter()
    con.execute(sql, bound)
    return time.perf_counter() - started


def pipeline_frame(
    con: duckdb.DuckDBPyConnection,
    name: str,
    params: Mapping[str, object],
    *,
    order_by: str,
    folder: Path = PIPELINES_DIR,
    tables: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """The rows ``pipelines/<name>.sql`` would put in its table, as a frame, without writing the table.

    ``tables`` renames tables the pipeline reads (e.g. a frame registered on ``con`` under another name).
    """
    sql, bound = _pipeline_sql(name, params, folder, tables or {})
    query, found = re.subn(r"^\s*CREATE\s+OR\s+REPLACE\s+TABLE\s+\w+\s+AS\s+", "", _strip_comments(sql), count=1)
    if not found:
        raise UsageError(f"pipeline {name} is not one CREATE OR REPLACE TABLE ... AS statement")
    frame: pl.DataFrame = con.sql(f"SELECT * FROM ({query}) ORDER BY {order_by}", params=bound).pl()
    return frame


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


@dataclass(frozen=True)
class InteractionArrays:
    """A user × item matrix with the ids of its rows and columns (index i ↔ ``user_ids[i]``)."""

    matrix: sp.csr_matrix
    user_ids: npt.NDArray[np.str_]
    item_ids: npt.NDArray[np.str_]


def _weights(columns: dict[str, npt.NDArray[np.float64]], weighting: Weighting) -> npt.NDArray[np.float32]:
    if weighting == "binary":
        return np.ones_like(columns["n_events"], dtype=np.float32)
    if weighting == "count":
        return columns["n_events"].astype(np.float32)
    if weighting == "value":
        return columns["value_sum"].astype(np.float32)
    if weighting == "log_value":
        return np.log1p(np.maximum(columns["value_sum"], 0)).astype(np.float32)
    return columns["decayed"].astype(np.float32)


def interaction_arrays(
    con: duckdb.DuckDBPyConnection,
    *,
    domain: str | None = None,
    weighting: Weighting = "count",
    as_of: datetime | None = None,
    half_life_days: float = 30.0,
) -> InteractionArrays:
    """Refresh ``interactions`` (when ``as_of`` is given) and return one domain's matrix.

    Users and items are indexed in sorted id order, so the same data gives the same matrix.
    """
    if as_of is not None:
        run_pipeline(con, "interactions", {"as_of": as_of, "half_life_days": half_life_days})
    where = "" if domain is None else "WHERE domain = $domain"
    params = {} if domain is None else {"domain": domain}
    # DuckDB numbers the distinct ids in id order and joins them back: far cheaper than sorting
    # every row's string id in numpy, and the index order is the vocabulary order.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _vocab_users AS SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)"
        f"::BIGINT AS row FROM (SELECT DISTINCT user_id FROM interactions {where})",
        params,
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _vocab_items AS SELECT item_id, (row_number() OVER (ORDER BY item_id) - 1)"
        f"::BIGINT AS col FROM (SELECT DISTINCT item_id FROM interactions {where})",
        params,
    )
    table = con.execute(
        "SELECT u.row, t.col, i.n_events::DOUBLE AS n_events, i.value_sum, i.decayed "
        f"FROM (SELECT * FROM interactions {where}) i "
        "JOIN _vocab_users u USING (user_id) JOIN _vocab_items t USING (item_id)",
        params,
    ).fetchnumpy()
    user_ids = np.asarray(con.execute("SELECT user_id FROM _vocab_users ORDER BY row").fetchnumpy()["user_id"], str)
    item_ids = np.asarray(con.execute("SELECT item_id FROM _vocab_items ORDER BY col").fetchnumpy()["item_id"], str)
    rows = np.asarray(table["row"], dtype=np.int64)
    cols = np.asarray(table["col"], dtype=np.int64)
    columns = {name: np.asarray(table[name], dtype=np.float64) for name in ("n_events", "value_sum", "decayed")}
    matrix = sp.csr_matrix(
        (_weights(columns, weighting), (rows, cols)), shape=(len(user_ids), len(item_ids)), dtype=np.float32
    )
    return InteractionArrays(matrix, user_ids, item_ids)


def purchase_features(con: duckdb.DuckDBPyConnection, as_of: datetime) -> pl.DataFrame:
    """Per (user, item) purchase statistics as of ``as_of`` for every customer
    (``pipelines/purchase_items.sql``, then ``pipelines/purchase_stats.sql``)."""
    run_pipeline(con, "purchase_items", {"as_of": as_of})
    run_pipeline(con, "purchase_stats", {"as_of": as_of, "users": None})
    frame: pl.DataFrame = con.sql("SELECT * FROM purchase_stats ORDER BY user_id, item_id").pl()
    return frame


def purchases_between(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> pl.DataFrame:
    """The distinct (user_id, item_id) pairs purchased in ``[start, end)``: the labels of a window."""
    frame: pl.DataFrame = con.sql(
        "SELECT DISTINCT user_id, item_id FROM events "
        "WHERE type = 'purchase' AND item_id IS NOT NULL AND ts >= $start AND ts < $end ORDER BY ALL",
        params={"start": start, "end": end},
    ).pl()
    return frame
