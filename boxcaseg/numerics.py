"""Pin the CPU vector kernels, so the kernel choice is not one more thing that varies.

x86 CPUs of different generations make torch pick different vector kernels (ATen's AVX2 or
AVX-512 code, oneDNN's convolutions, MKL's GEMM), which add in different orders; last-bit
differences grow over a training run into different masks and AP. Pinning the three libraries
to the AVX2 level removes the kernel CHOICE as a source of difference. What it does not remove,
and what was measured (docs/results.md, "What reproduces where"): on the same machine type the
same config, seed and thread count give the same weights, masks and metrics, byte for byte; on
another CPU model (an Intel Xeon against the AMD EPYC the published figures come from) the
figures differ by about the seed spread, pinning or not: oneDNN's JIT code and MKL still take
vendor-specific paths below the pinned level. Compare runs across machines as you would compare
seeds.

The variables must be set before torch loads: the ``boxcaseg`` command calls
:func:`pin_cpu_numerics` first thing. A value the user set wins; ``BOXCASEG_NATIVE_CPU=1``
turns the pinning off (some speed on AVX-512 machines).
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
    if (
        os.environ.get("BOXCASEG_NATIVE_CPU") == "1"
        or platform.machine() not in ("x86_64", "AMD64")
        or not cpu_has_avx2()
    ):
        return {}
    for key, value in PINNED.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in PINNED}
