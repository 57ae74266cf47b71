"""`model.dtype=auto`: the pure rule on plain machine facts, the /proc/cpuinfo parser, the start-up line."""

from gcpo.hardware import DtypeChoice, MachineFacts, choose_dtype, dtype_line, parse_cpu_flags, resolve_dtype

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})


def cpu(flags: frozenset[str]) -> MachineFacts:
    return MachineFacts(cuda=False, cuda_bf16=False, cpu_flags=flags)


def test_auto_is_bf16_only_where_the_cpu_has_bf16_arithmetic():
    assert choose_dtype("auto", cpu(AMX)) == DtypeChoice("bfloat16", "CPU with amx_bf16 and avx512_bf16")
    assert choose_dtype("auto", cpu(AVX512_BF16)) == DtypeChoice("bfloat16", "CPU with avx512_bf16")
    assert choose_dtype("auto", cpu(AVX2)) == DtypeChoice("float32", "CPU without amx_bf16 or avx512_bf16")
    assert choose_dtype("auto", cpu(frozenset())).dtype == "float32"  # no /proc/cpuinfo: nothing known


def test_auto_on_cuda_follows_the_device_not_the_cpu():
    assert choose_dtype("auto", MachineFacts(True, True, AVX2)) == DtypeChoice("bfloat16", "CUDA device with bf16")
    assert choose_dtype("auto", MachineFacts(True, False, AMX)) == DtypeChoice("float32", "CUDA device without bf16")


def test_an_explicit_dtype_is_kept_whatever_the_machine():
    for facts in (cpu(AMX), cpu(AVX2), MachineFacts(True, True, AMX)):
        assert choose_dtype("float32", facts).dtype == "float32"
        assert choose_dtype("bfloat16", facts).dtype == "bfloat16"
    assert resolve_dtype("bfloat16") == DtypeChoice("bfloat16", "set explicitly")


def test_cpu_flags_are_the_union_of_every_processor_s_flags_line():
    cpuinfo = ("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbugs\t\t: spectre\n\n"
               "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert parse_cpu_flags(cpuinfo) == frozenset({"fpu", "avx2", "avx512_bf16", "amx_bf16"})
    assert parse_cpu_flags("") == frozenset()


def test_the_start_up_line_names_request_result_and_reason():
    assert dtype_line("auto", DtypeChoice("float32", "CPU without amx_bf16 or avx512_bf16")) == (
        "model.dtype=auto: float32 (CPU without amx_bf16 or avx512_bf16)")


def test_auto_resolves_on_this_machine_to_a_concrete_dtype():
    assert resolve_dtype("auto").dtype in ("float32", "bfloat16")


def test_gcpo_config_keys_shows_the_dtype_choices(capsys):
    from gcpo.cli import main

    assert main(["config", "--keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "model.dtype = 'float32'  # one of float32, bfloat16, auto" in lines
    assert "model.name = 'smollm2-135m-instruct'" in lines  # a free key: its default only


def test_the_gemm_rate_counts_two_n_cubed_flops_per_matmul(monkeypatch):
    """`gemm_rate` divides 2 n^3 per `F.linear` call by the elapsed time (a clock that advances 1 s per read)."""
    import itertools
    import time

    from gcpo.hardware import gemm_rate

    ticks = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(ticks)))
    # reads: start 0; loop checks at 1 (1 < 3: one call), 2 (second call), 3 (stop): 2 calls over 3 s
    assert gemm_rate("float32", n=8, min_seconds=3.0) == 2 * 2 * 8**3 / 3
