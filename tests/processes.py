"""Run one function in several spawned processes at once (the concurrency tests of the cache builders)."""

import multiprocessing as mp


def run_concurrently(target, args_list, timeout: float = 300.0) -> list[int | None]:
    """Start `target(*args)` for every `args` in `args_list` in its own spawned process, all at once; wait for
    each (up to `timeout` seconds); return their exit codes (None for one still running)."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=tuple(a)) for a in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    return [p.exitcode for p in procs]
