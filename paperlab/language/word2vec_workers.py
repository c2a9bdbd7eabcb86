"""Word2Vec's ``workers``: Hogwild training of chunks in parallel (note D1).

Hogwild (Recht et al. 2011, "Hogwild!: A Lock-Free Approach to Parallelizing Stochastic
Gradient Descent"): N workers train different chunks of the corpus at once and update the
same weight rows without locks; a row two workers update at the same moment may lose one
of the two updates, which SGD on sparse updates tolerates. word2vec.c and gensim run
``workers`` threads this way (gensim's Cython releases the GIL for a whole batch).

Our steps are torch ops called from Python, and every op takes and releases the GIL: two
threads that train CBOW hand the GIL back and forth at every op, so two threads in one
process ran about 1.3-1.4x the speed of one (two separate models in two threads of one
process: each 1.56x slower than alone; in two processes: no slower). So on Linux the workers
are processes (``fork``), each with its own interpreter and GIL, that share the weights:

- the weights are copied into anonymous shared memory (``mmap``, ``MAP_SHARED``) before the
  workers start, so every worker's ``index_add_`` writes the same pages (not copies on
  write), and copied back into ordinary tensors when training ends;
- the calling process reads the corpus and hands chunks to a bounded queue; each worker
  trains the next chunk with its own generator and scratch buffers, one intra-op thread;
- the learning rate of a chunk follows a shared count of the raw words all workers have
  finished (as word2vec.c's ``word_count_actual``); each finished chunk's (words, loss) comes
  back on a result queue for the totals and the progress bar;
- a worker's exception comes back as its traceback and is raised in the caller; a worker
  that dies without a word (killed, out of memory) is reported by its exit code.

Elsewhere (no ``fork``: Windows, and macOS where forking a process that runs Apple's
libraries is unsafe) the workers are threads of the calling process (the same queue and
shared count), which is correct but gains less.
"""

from __future__ import annotations

import mmap
import multiprocessing
import queue
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["can_fork", "shared_copy", "train_in_processes", "train_in_threads"]

# work(job, generator, workspace, alpha) -> loss; record(job, loss, alpha) in the caller
Work = Callable[[tuple, torch.Generator, Any, float], float]
Record = Callable[[tuple, float, float], None]


def can_fork() -> bool:
    """Whether workers can be forked processes (Linux, and not inside a daemonic process,
    which may not have children); else they are threads."""
    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def shared_copy(t: torch.Tensor) -> torch.Tensor:
    """A CPU copy of ``t`` in anonymous shared memory: forked processes write the same pages.

    ``mmap.mmap(-1, n)`` maps ``MAP_SHARED | MAP_ANONYMOUS`` memory, which a ``fork`` child
    shares with its parent (not copy-on-write), and which is not a file in ``/dev/shm``
    (whose size containers often limit). The tensor keeps the mapping alive.
    """
    nbytes = max(t.numel() * t.element_size(), 1)
    buf = mmap.mmap(-1, nbytes)
    out = torch.frombuffer(buf, dtype=t.dtype, count=t.numel()).view(t.shape)
    out.copy_(t)
    return out


def _worker(work, todo, results, counter, alpha_of, seed, in_process) -> None:
    """One worker's loop: take a chunk, train it at the current lr, report (id, loss, lr)."""
    from paperlab.language.word2vec_batch import Workspace

    if in_process:
        torch.set_num_threads(1)
    gen, ws = torch.Generator().manual_seed(seed), Workspace()
    try:
        with torch.no_grad():  # grad mode is per thread
            while (item := todo.get()) is not None:
                number, job = item
                with counter.get_lock():
                    alpha = alpha_of(counter.value)
                loss = work(job, gen, ws, alpha)
                with counter.get_lock():
                    counter.value += job[-1]  # the chunk's raw words
                results.put(("done", number, loss, alpha))
    except BaseException:  # sent to the caller, which raises it
        results.put(("error", traceback.format_exc(), 0.0, 0.0))
    results.put(("exit", None, 0.0, 0.0))


class _Counter:
    """``multiprocessing.Value``'s interface, for threads."""

    def __init__(self) -> None:
        self.value, self._lock = 0, threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


def _drive(jobs, todo, results, n_workers: int, record: Record, alive) -> None:
    """Feed the chunks to ``todo`` and collect ``results``; raise a worker's error here."""
    pending: dict[int, tuple] = {}  # a chunk's number -> the chunk (results carry numbers)
    errors: list[str] = []
    exited = 0

    def collect(block: bool) -> None:
        nonlocal exited
        while True:
            try:
                kind, payload, loss, alpha = (
                    results.get(timeout=0.2) if block else results.get_nowait()
                )
            except queue.Empty:
                if block and not alive():
                    errors.append("a worker died without a result (killed, or out of memory)")
                    exited = n_workers
                return
            if kind == "done":
                record(pending.pop(payload), loss, alpha)
            elif kind == "error":
                errors.append(payload)
            else:
                exited += 1
            if block:
                return

    fed = False
    try:
        for number, job in enumerate(jobs):
            pending[number] = job
            while not errors:
                try:
                    todo.put((number, job), timeout=0.2)
                    break
                except queue.Full:
                    collect(block=False)
                    if not alive():
                        errors.append("a worker died without a result (killed, or out of memory)")
            collect(block=False)
            if errors:
                break
        fed = not errors
    finally:
        if not fed:  # stopping early: drop the chunks not yet taken, so the sentinels fit
            try:
                while True:
                    todo.get_nowait()
            except queue.Empty:
                pass
        for _ in range(n_workers):
            try:
                todo.put(None, timeout=5.0)
            except queue.Full:
                break
        while exited < n_workers:
            collect(block=True)
    if errors:
        raise RuntimeError(f"a Word2Vec worker failed:\n{errors[0]}")


def train_in_threads(
    jobs: Iterator[tuple], work: Work, record: Record, alpha_of, seeds: list[int]
) -> None:
    """Hogwild with ``len(seeds)`` threads of this process (``record`` runs in this thread)."""
    todo: queue.Queue = queue.Queue(maxsize=2 * len(seeds))
    results: queue.Queue = queue.Queue()
    counter = _Counter()
    pool = [
        threading.Thread(target=_worker, args=(work, todo, results, counter, alpha_of, seed,
                                               False), daemon=True)
        for seed in seeds
    ]  # fmt: skip
    for t in pool:
        t.start()
    try:
        _drive(jobs, todo, results, len(seeds), record, lambda: True)
    finally:
        for t in pool:
            t.join()


def train_in_processes(
    jobs: Iterator[tuple], work: Work, record: Record, alpha_of, seeds: list[int]
) -> None:
    """Hogwild with ``len(seeds)`` forked processes; ``work`` must write ``shared_copy`` tensors."""
    ctx = multiprocessing.get_context("fork")
    todo = ctx.Queue(maxsize=2 * len(seeds))
    todo.cancel_join_thread()  # exit never waits to flush chunks that no worker will read
    results = ctx.Queue()
    counter = ctx.Value("q", 0)
    pool = [
        ctx.Process(target=_worker, args=(work, todo, results, counter, alpha_of, seed, True),
                    daemon=True)
        for seed in seeds
    ]  # fmt: skip
    with warnings.catch_warnings():
        # Python 3.12+ warns on fork() in a multi-threaded process (torch's intra-op pool):
        # a child could inherit a lock another thread holds. The workers only run torch ops
        # (whose thread pool torch resets in a fork child) and these queues, created here.
        warnings.simplefilter("ignore", DeprecationWarning)
        for p in pool:
            p.start()

    def alive() -> bool:
        return all(p.is_alive() or p.exitcode == 0 for p in pool)

    try:
        _drive(jobs, todo, results, len(seeds), record, alive)
    finally:
        for p in pool:
            p.join(timeout=10.0)
            if p.is_alive():
                p.terminate()
        todo.close()
        results.close()
