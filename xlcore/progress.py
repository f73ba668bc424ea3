"""Per-run progress of alignment and fine-tuning: a tqdm bar in the terminal of a run computed in
this process, and, for a run computed by a Dask worker (whose terminal is not the user's), an
event that the grid's progress line shows beside the run's name ("finetune … 40/60").
"""

from __future__ import annotations

from collections.abc import Iterator

from tqdm.auto import tqdm

TOPIC = "xlcore-run-progress"  # event topic: (task key, steps done, steps in all)
REPORTS = 10  # events per run: enough for a progress line, few for the scheduler


def steps(desc: str, start: int, total: int, show: bool) -> tqdm:
    """The steps from ``start`` (after a resume) to ``total``: a tqdm bar when ``show``, and
    progress events when computed by a Dask worker."""
    return tqdm(
        _reported(start, total), desc=desc, initial=start, total=total, disable=not show,
        leave=False,
    )  # fmt: skip


def _reported(start: int, total: int) -> Iterator[int]:
    worker, key = _dask_task()
    every = max(1, total // REPORTS)
    for step in range(start, total):
        yield step
        if worker is not None and ((step + 1) % every == 0 or step + 1 == total):
            worker.log_event(TOPIC, (key, step + 1, total))


def _dask_task():
    """The Dask worker computing this thread's task and the task's key, or (None, None)."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        return get_worker(), thread_state.key
    except (ImportError, ValueError, AttributeError):  # not inside a Dask task
        return None, None
