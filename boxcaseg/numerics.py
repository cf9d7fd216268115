"""Same config + seed -> the same numbers on every x86 machine of a kind, not only on one.

x86 CPUs of different generations make torch pick different vector kernels (ATen's AVX2 or
AVX-512 code, oneDNN's convolutions, MKL's GEMM), which add in different orders. The last-bit
differences grow over a training run into different masks and AP: the demo's README figures
did not reproduce on a fresh machine although a rerun on one machine always did. Pinning all
three libraries to the AVX2 level (every x86-64 server of the last decade has it) removes that
source; what remains equal is then the thread count (the workflow sets it per job from
`resources`) and the seeds (config).

The variables must be set before torch loads: the ``boxcaseg`` command calls
:func:`pin_cpu_numerics` first thing. A value the user set wins; ``BOXCASEG_NATIVE_CPU=1``
turns the pinning off (some speed on AVX-512 machines, at the price of reproducibility).
"""

from __future__ import annotations

import os
import platform

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("flags") and " avx2" in line for line in fh)
    except OSError:
        return False


def pin_cpu_numerics() -> dict[str, str]:
    """Set the pinning variables (where unset) and return the ones in effect."""
    if os.environ.get("BOXCASEG_NATIVE_CPU") == "1" or platform.machine() not in ("x86_64", "AMD64") \
            or not cpu_has_avx2():
        return {}
    for key, value in PINNED.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in PINNED}
