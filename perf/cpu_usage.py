"""Who used the CPU during a measurement: this process, its finished children, another process, the whole machine.

On a shared machine a benchmark's figure means little without the CPU everything else took meanwhile.
"""

from __future__ import annotations

import resource

import psutil

__all__ = ["finished_children_cpu_s", "machine_busy_cpu_s", "process_cpu_s"]


def finished_children_cpu_s() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds of one process (this one by default), all its threads."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def machine_busy_cpu_s() -> float:
    """CPU seconds all cores have spent busy since boot, or taken by the hypervisor (steal) on a virtual machine."""
    times = psutil.cpu_times()
    # not the sum of all fields: Linux counts guest time inside user time as well
    others = ("nice", "irq", "softirq", "steal")
    busy = times.user + times.system + sum(getattr(times, name, 0.0) for name in others)
    return float(busy)
