"""Timing shared by the bench scripts (run as ``python bench/NAME.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``repeats`` calls of ``fn`` in seconds, after one warm-up call: wall time, or with
    ``clock=time.process_time`` this process's CPU time (with one thread, the work of a call, less inflated than
    wall time when other jobs share the cores)."""
    fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def median_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall times (seconds) of several functions measured in turn, one call of each per round, after one
    warm-up call each: on a shared machine a slow spell then hits every function alike instead of whichever
    happened to be timed during it."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, slot in zip(fns, times):
            start = time.perf_counter()
            fn()
            slot.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def matmul_peak(repeats: int = 5) -> float:
    """Measured fp32 matrix-product throughput (FLOP/s) of this machine: a 2048^3 product, median of ``repeats``."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / median_time(lambda: a @ b, repeats)


def machine_line(device: str = "cpu") -> str:
    """What every bench table is printed with: torch, threads, the CPU's capability and its measured matmul peak
    (machines here differ: some AVX-512 with bf16, some AVX2 only, with 4-5x less fp32 throughput)."""
    import platform

    import torch

    return (f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}, fp32 matmul peak "
            f"{matmul_peak() / 1e9:.0f} GFLOP/s")
