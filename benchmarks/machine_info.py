"""The machine line every benchmark prints with its figures (BENCHMARKS.md records it)."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} cores, {memory:.0f} GB RAM, Python {platform.python_version()}, "
            f"load average {load}")
