"""The one timing loop behind ``resnet.optimize`` and ``resnet bench``.

Contenders run in alternating rounds, so a load spike from elsewhere on a shared machine hits them
alike; each round repeats a call until ``min_round_s`` has passed, so fast calls are not lost in the
clock's resolution. The callers summarise the rounds differently: ``optimize`` keeps each one's best
round (other processes only ever add time, so the fastest round is closest to the engine itself),
``bench`` reports the median (the figure a user would see on such a machine).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_rounds(calls: Sequence[Callable[[], Any]], *, rounds: int, min_round_s: float, warmup: int = 3,
                clock: str = "wall") -> list[list[float]]:
    """Seconds per call of each callable, one value per round: ``result[i][r]`` for callable i, round r.

    ``warmup`` calls of each come first and are not timed (thread pools, caches and lazily compiled
    kernels settle over the first calls). ``clock="cpu"`` counts this process's CPU time instead of
    wall time: with one thread that is the work itself, unaffected by other processes (with more
    threads it would also count threads spinning while they wait).
    """
    now = CLOCKS[clock]
    for call in calls:
        for _ in range(warmup):
            call()
    seconds: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, call in enumerate(calls):
            count, start = 0, now()
            while True:
                call()
                count += 1
                elapsed = now() - start
                if elapsed >= min_round_s:
                    break
            seconds[i].append(elapsed / count)
    return seconds
