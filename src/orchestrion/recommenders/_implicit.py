"""Running benfred/implicit's CPU models safely: threads, BLAS and a clear import error.

implicit warns (``RuntimeWarning``) when the BLAS library runs its own thread pool, because
nested OpenBLAS/MKL threads make ALS many times slower; it deliberately leaves the fix to the
caller since limiting BLAS is process-wide (benfred/implicit#692). We limit BLAS to one thread
with ``threadpoolctl`` only while an implicit model is built and fitted, and let implicit's own
OpenMP threads (``num_threads``, 0 = every core) do the parallel work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import ModuleType

from orchestrion.errors import TerminalError

__all__ = ["blas_threads", "implicit_module", "single_threaded_blas"]


def implicit_module(name: str) -> ModuleType:
    """Import ``implicit.<name>`` (imported here, not at package import, to keep start-up fast)."""
    import importlib

    try:
        return importlib.import_module(f"implicit.{name}")
    except ImportError as exc:  # pragma: no cover - implicit is a core dependency
        raise TerminalError(
            f"the implicit library is needed for this recommender ({exc}); install it: pip install 'implicit>=0.7'"
        ) from exc


@contextmanager
def blas_threads(limit: int) -> Iterator[None]:
    """BLAS limited to ``limit`` threads for the duration of the block (0 = leave it alone)."""
    if limit <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    with threadpool_limits(limits=limit, user_api="blas"):
        yield


def single_threaded_blas() -> AbstractContextManager[None]:
    """BLAS limited to one thread for the duration of the block (restored afterwards)."""
    return blas_threads(1)
