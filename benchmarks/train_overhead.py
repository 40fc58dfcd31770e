"""What `orchestrion train als` costs beyond the ALS fit itself, and fit times per recommender.

    .venv/bin/python benchmarks/train_overhead.py [--datasets online-retail lastfm-hetrec-2k movielens-100k]
                                                  [--repeats 5]

For each dataset (read from $ORCHESTRION_DATASETS, loaded into a temporary DuckDB file first,
not timed): the end-to-end training path of ``orchestrion train als`` (run the interactions
pipeline in DuckDB, build the CSR matrix and vocabularies, fit, save a registry version) next to
a bare ``implicit`` ALS fit of the same matrix with the same parameters, measured in the same
run, best of ``--repeats`` (the two alternate, so both see the same background load); the ratio
is the overhead (target <= 1.3x). Then the fit time of every recommender on each dataset at its
default configuration.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from orchestrion.datasets import load_dataset
from orchestrion.recommenders import RECOMMENDERS, ALSConfig, Interactions, Vocabulary, make_recommender
from orchestrion.store import Store
from orchestrion.training.fits import train_recommender
from orchestrion.training.pipelines import interaction_arrays

AS_OF = datetime(2030, 1, 1)
DOMAINS = {"online-retail": "retail", "lastfm-hetrec-2k": "music", "movielens-100k": "movies", "deskdrop": "news"}


def bare_als_fit(matrix: object, config: ALSConfig) -> float:
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=config.factors, regularization=config.regularization, alpha=config.alpha,
            iterations=config.iterations, use_cg=config.use_cg, random_state=config.seed,
            num_threads=config.num_threads,
        )
        started = time.perf_counter()
        model.fit(matrix, show_progress=False)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["online-retail", "lastfm-hetrec-2k", "movielens-100k"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(os.environ.get("ORCHESTRION_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    fit_rows = []
    print("train als end to end vs a bare implicit fit of the same matrix (best of", args.repeats, "runs)")
    print(f"{'dataset':<18} {'matrix':>22} {'end-to-end':>11} {'bare fit':>9} {'ratio':>6}  phases")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            with Store.open(Path(tmp) / f"{name}.duckdb") as store:
                load_dataset(store, name, datasets_root=root, now=AS_OF)
                domain = DOMAINS[name]
                arrays = interaction_arrays(store.con, domain=domain, weighting="count", as_of=AS_OF)
                # alternate the two measurements so that both see the same background load
                end_to_end, phases, bare = float("inf"), {}, float("inf")
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    result = train_recommender(
                        store, Path(tmp) / "models", "als", as_of=AS_OF, now=AS_OF, domain=domain
                    )
                    elapsed = time.perf_counter() - started
                    if elapsed < end_to_end:
                        end_to_end, phases = elapsed, result.timings
                    bare = min(bare, bare_als_fit(arrays.matrix, ALSConfig()))
                shape = f"{arrays.matrix.shape[0]}x{arrays.matrix.shape[1]} nnz {arrays.matrix.nnz:,}"
                detail = ", ".join(f"{k} {v:.2f}s" for k, v in phases.items())
                print(f"{name:<18} {shape:>22} {end_to_end:>10.2f}s {bare:>8.2f}s {end_to_end / bare:>5.2f}x  {detail}")
                interactions = Interactions(arrays.matrix, Vocabulary(arrays.user_ids), Vocabulary(arrays.item_ids))
                for model_name in RECOMMENDERS:
                    model = make_recommender(model_name)
                    started = time.perf_counter()
                    model.fit(interactions)
                    fit_rows.append((name, model_name, time.perf_counter() - started))
    print("\nfit time per recommender (default configuration, count weights)")
    datasets = list(dict.fromkeys(row[0] for row in fit_rows))
    print(f"{'model':<12}" + "".join(f"{d:>18}" for d in datasets))
    for model_name in RECOMMENDERS:
        cells = [next(s for d2, m, s in fit_rows if d2 == d and m == model_name) for d in datasets]
        print(f"{model_name:<12}" + "".join(f"{s:>17.2f}s" for s in cells))


if __name__ == "__main__":
    main()
