"""Finished benchmark runs, kept in a JSON file after each one, so that a restarted benchmark skips them.

Missing runs are computed `workers` at a time, each in a process of its own; a benchmark gives how a run is
computed (`run(*job)`), named (`name(*job)`, the file's key) and reported when it finishes (`report(name, result)`).
"""

import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


class RunCache:
    def __init__(self, path: Path, run: Callable[..., dict], name: Callable[..., str],
                 report: Callable[[str, dict], str], workers: int, initializer: Callable[[], None] | None = None):
        self.path, self.run, self.name, self.report = path, run, name, report
        self.done = json.loads(path.read_text()) if path.exists() else {}
        self.pool = ProcessPoolExecutor(workers, initializer=initializer)

    def get(self, jobs: list[tuple]) -> list[dict]:
        """Each job's result, in order, computing the missing ones (a job asked twice runs once)."""
        futures = {self.name(*job): self.pool.submit(self.run, *job) for job in dict.fromkeys(jobs)
                   if self.name(*job) not in self.done}
        for key, future in futures.items():
            self.done[key] = result = future.result()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.done, indent=1))
            print(f"{key}: {self.report(key, result)}", flush=True)
        return [self.done[self.name(*job)] for job in jobs]
