"""What this machine computes fastest in: bf16 where the CPU (AMX, AVX512-BF16) or the GPU supports it.

bf16 matmuls on a CPU with AMX / avx512_bf16 run ~3x faster than fp32 (a LoRA step of the 0.5B model:
79 vs 24 tokens/s here); on CPUs without them bf16 is emulated and slower than fp32. So it is detected,
never assumed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("auto", "bf16", "fp32")


@cache
def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU multiplies bf16 natively (Linux: the avx512_bf16 or amx_bf16 flag)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def use_bf16(precision: str, *, cuda: bool) -> bool:
    """Whether to compute in bf16 for a precision setting (auto, bf16, fp32) on this machine."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision == "bf16"
    if cuda:
        import torch

        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()
