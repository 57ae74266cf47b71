"""`model.dtype=auto`: bf16 mixed precision where this machine runs bf16 fast, fp32 elsewhere.

bf16 compute (with fp32 master weights: `gcpo.training.deepspeed_policy`) pays only where the hardware has bf16
arithmetic. Measured on 2026-12-06 (docs/benchmarks.md): a full fine-tuning step took 15.5 s in bf16 against
27.5 s in fp32 on an x86_64 CPU with AVX-512 BF16 and AMX, while on an AVX2-only CPU bf16 ran 5x slower than fp32
(no bf16 instructions: every bf16 operation is converted in software).

- `choose_dtype(requested, cuda=..., cpu_flags=...)`: the pure rule, on plain facts. An explicit `float32` or
  `bfloat16` is kept; `auto` is bfloat16 on a CUDA device that supports bf16, or, without CUDA, on a CPU whose
  flags include `amx_bf16` or `avx512_bf16`; float32 otherwise.
- `machine_facts()`: the thin reader of this process's machine (CUDA through torch, the CPU flags from
  /proc/cpuinfo; no flags where there is no such file).
- `resolve_dtype(requested)`: the two together (read once per process).
- `dtype_line(requested, choice)`: the console line a run starts with.
- `gemm_rate(dtype)`: this machine's measured matmul rate in a dtype (FLOP/s), what the benchmarks report the
  update's achieved rate against.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names of hardware bf16 arithmetic
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class MachineFacts:
    cuda: bool  # a CUDA device is visible to this process
    cuda_bf16: bool  # ... and it supports bf16 (compute capability 8.0+)
    cpu_flags: frozenset[str]


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # "float32" or "bfloat16"
    reason: str  # why, in a few words


def choose_dtype(requested: str, facts: MachineFacts) -> DtypeChoice:
    """The compute dtype for `model.dtype` = `requested` on a machine with `facts`."""
    if requested != "auto":
        return DtypeChoice(requested, "set explicitly")
    if facts.cuda:
        if facts.cuda_bf16:
            return DtypeChoice("bfloat16", "CUDA device with bf16")
        return DtypeChoice("float32", "CUDA device without bf16")
    fast = [f for f in FAST_BF16_CPU_FLAGS if f in facts.cpu_flags]
    if fast:
        return DtypeChoice("bfloat16", f"CPU with {' and '.join(fast)}")
    return DtypeChoice("float32", f"CPU without {' or '.join(FAST_BF16_CPU_FLAGS)}")


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The union of the `flags` lines of a /proc/cpuinfo text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return frozenset(flags)


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags (/proc/cpuinfo; none where it cannot be read): the one reader of them."""
    try:
        return parse_cpu_flags(CPUINFO.read_text())
    except OSError:
        return frozenset()


def machine_facts() -> MachineFacts:
    """This process's CUDA devices (as torch sees them) and CPU flags."""
    import torch

    cuda = torch.cuda.is_available()
    cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    return MachineFacts(cuda=cuda, cuda_bf16=cuda_bf16, cpu_flags=cpu_flags())


@functools.cache
def _facts() -> MachineFacts:
    return machine_facts()


def resolve_dtype(requested: str) -> DtypeChoice:
    """`choose_dtype` on this machine (an explicit dtype is returned without reading the machine)."""
    if requested != "auto":
        return choose_dtype(requested, MachineFacts(False, False, frozenset()))
    return choose_dtype(requested, _facts())


def concrete_dtype(requested: str) -> str:
    """"float32" or "bfloat16": `requested`, or what `auto` resolves to here."""
    return resolve_dtype(requested).dtype


def dtype_line(requested: str, choice: DtypeChoice) -> str:
    """The start-up line, e.g. `model.dtype=auto: bfloat16 (CPU with amx_bf16 and avx512_bf16)` (no prefix)."""
    return f"model.dtype={requested}: {choice.dtype} ({choice.reason})"


def gemm_rate(dtype: str, n: int = 1024, min_seconds: float = 2.0) -> float:
    """FLOP/s of n x n matmuls in `dtype` ("float32", "bfloat16") through `F.linear` (the kernels the model's linear
    layers use: a bare bf16 `torch.mm` takes a slower path on CPUs without AVX-512), on this process's threads,
    repeated for at least `min_seconds`."""
    import time

    import torch

    a, b = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
    linear = torch.nn.functional.linear
    linear(a, b)
    reps, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds:
        linear(a, b)
        reps += 1
    return reps * 2 * n**3 / elapsed
