"""`gcpo export`: a checkpoint saved by the training loop's own save path (`gcpo.training.checkpoint`), at ZeRO 0, 2
(bf16) and 3 and under LoRA (merged), becomes a Hugging Face folder whose log-probs are the trainer's; the folder
serves as `model.name`; a missing run, a missing step and a non-empty `--out` are named."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from gcpo.cli import main
from gcpo.config import dump_yaml, load_config
from gcpo.models import absolute_model_name, resolve_model, tiny_dir
from gcpo.run_folder import RUN_CONFIG
from gcpo.standalone.export import RAY_SNAPSHOT, ExportError, export_checkpoint, find_source
from gcpo.training.checkpoint import STEP_FILE

PROMPTS = [[1, 17, 42, 99, 7], [1, 250, 3000, 12], [1, 5, 6]]
RESPONSES = [[77, 88, 99, 100], [400, 401], [13, 14, 15, 16, 17, 18]]


def fake_run(run_dir, steps, config=("model.name=tiny",), committed=None):
    """A run folder as Ray Train leaves it, without weights: config, `checkpoint_*` folders, the snapshot."""
    run_dir.mkdir(parents=True)
    (run_dir / RUN_CONFIG).write_text(dump_yaml(load_config(overrides=list(config))))
    results = []
    for step in steps:
        folder = run_dir / f"checkpoint_2026-12-01_00-00-{step:02d}.000000"
        folder.mkdir()
        (folder / STEP_FILE).write_text(str(step))
        if committed is None or step in committed:
            results.append({"checkpoint_dir_name": folder.name, "metrics": {"step": step}})
    (run_dir / RAY_SNAPSHOT).write_text(json.dumps({"checkpoint_results": results,
                                                    "latest_checkpoint_result": results[-1] if results else None}))
    return run_dir


def test_the_latest_committed_checkpoint_or_the_one_of_a_step_is_picked(tmp_path):
    run = fake_run(tmp_path / "runs" / "r", [4, 8, 12], committed={4, 8})  # step 12: a killed attempt's folder
    latest = find_source("r", tmp_path)  # a run name under runs/
    assert (latest.step, latest.committed, latest.metrics) == (8, True, {"step": 8})
    assert find_source(str(run), tmp_path, step=4).checkpoint.name.endswith("04.000000")
    named = find_source(str(run / "checkpoint_2026-12-01_00-00-12.000000"), tmp_path)  # named itself: taken
    assert (named.step, named.committed, named.metrics) == (12, False, None)


def test_a_missing_run_a_missing_step_and_no_checkpoint_are_named(tmp_path):
    with pytest.raises(ExportError, match=rf"no run or checkpoint at 'nope': no {RUN_CONFIG} in nope nor in "
                                          rf"{tmp_path}/runs/nope"):
        find_source("nope", tmp_path)
    run = fake_run(tmp_path / "runs" / "r", [4, 8])
    with pytest.raises(ExportError, match=rf"the run {run} has no checkpoint of step 5; its committed checkpoints "
                                          r"are of step 4, 8"):
        find_source(str(run), tmp_path, step=5)
    with pytest.raises(ExportError, match="--step 5: the checkpoint .* is of step 4"):
        find_source(str(next(run.glob("checkpoint_*"))), tmp_path, step=5)
    empty = fake_run(tmp_path / "runs" / "empty", [2], committed=set())
    with pytest.raises(ExportError, match=f"the run {empty} has no committed checkpoint"):
        find_source("empty", tmp_path)


def test_a_run_name_is_found_under_another_output_dir(tmp_path, monkeypatch):
    """A run written under `trainer.output_dir=elsewhere` is found by its name alone, from the project folder: its
    folder was recorded when the run started (`gcpo.run_folder`); `--resume NAME` finds it the same way."""
    from gcpo.run_folder import create_run_folder
    from gcpo.training.fit import load_run_config

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path / "cache"))
    project = tmp_path / "project"
    project.mkdir()
    run = fake_run(tmp_path / "elsewhere" / "far", [3, 6])
    create_run_folder(load_config(overrides=["model.name=tiny", f"trainer.output_dir={tmp_path / 'elsewhere'}"]),
                      "far")
    found = find_source("far", project)
    assert (found.run_dir.resolve(), found.step) == (run.resolve(), 6)
    cfg, name = load_run_config("far", project)
    assert (name, cfg.trainer.output_dir) == ("far", str(tmp_path / "elsewhere"))
    with pytest.raises(ExportError, match=rf"no run or checkpoint at 'near': no {RUN_CONFIG} in near nor in "
                                          rf"{project}/runs/near"):
        find_source("near", project)


def test_the_command_refuses_a_non_empty_out_without_force_and_a_missing_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "r", [4])
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "a.txt").write_text("mine")
    assert main(["export", "r", "--out", "taken"]) == 1
    assert capsys.readouterr().err == ("gcpo export: error: --out taken exists and is not empty; pass --force to "
                                       "replace it\n")
    assert (tmp_path / "taken" / "a.txt").read_text() == "mine"
    assert main(["export", "runs/r", "--out", "runs", "--force"]) == 1  # never over the run itself
    assert "--out runs holds runs/r, which an export never replaces" in capsys.readouterr().err
    assert main(["export", "gone", "--out", "new"]) == 1
    assert capsys.readouterr().err.startswith("gcpo export: error: no run or checkpoint at 'gone'")
    assert not (tmp_path / "new").exists()


def test_a_relative_model_folder_is_made_absolute_for_the_workers(tmp_path):
    (tmp_path / "exports" / "m").mkdir(parents=True)
    (tmp_path / "exports" / "m" / "config.json").write_text("{}")
    assert absolute_model_name("exports/m", tmp_path) == str((tmp_path / "exports" / "m").resolve())
    assert absolute_model_name("tiny", tmp_path) == "tiny" and absolute_model_name(None, tmp_path) is None
    assert absolute_model_name("elsewhere", tmp_path) == "elsewhere"  # resolve_model names it when it is used


# --- round trips through a DeepSpeed engine (in process, one gloo rank) -------------------------------------------

def trainer_run(run_dir, monkeypatch, overrides, steps=1):
    """Train the tiny model `steps` optimizer steps in a DeepSpeed engine, saving a checkpoint after each through
    `report_with_checkpoint` (Ray Train's report copies it into `run_dir`, as Ray Train does); returns the
    engine and the trainer's log-probs after each step."""
    import ray.train
    from transformers import AutoModelForCausalLM

    from gcpo.logprobs import response_logprobs
    from gcpo.training.checkpoint import report_with_checkpoint
    from gcpo.training.deepspeed_policy import build_policy
    from gcpo.training.lora import apply_lora

    cfg = load_config(preset="grpo", overrides=["model.name=tiny", "trainer.lr=1e-2", *overrides])
    run_dir.mkdir(parents=True)
    (run_dir / RUN_CONFIG).write_text(dump_yaml(cfg))
    monkeypatch.setattr(ray.train, "report", lambda metrics, checkpoint: ray_report(run_dir, metrics, checkpoint))
    torch.manual_seed(0)
    dtype = getattr(torch, cfg.model.dtype)
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_dir(), dtype=dtype), cfg.model.lora)
    engine = build_policy(model, cfg.trainer, cfg.model.dtype)
    ids = torch.randint(5, 200, (2, 12), generator=torch.Generator().manual_seed(0))
    logps = []
    for step in range(1, steps + 1):
        engine.backward(engine(input_ids=ids, labels=ids).loss)
        engine.step()
        report_with_checkpoint(engine, step, {"sampler_position": 0}, None, {"reward/mean": step / 10}, cfg.model)
        with torch.no_grad():
            logps.append(response_logprobs(engine.module, PROMPTS, RESPONSES, pad_token_id=0)[0])
    return engine, logps


def ray_report(run_dir, metrics, checkpoint):
    """What Ray Train's report does with a checkpoint once every rank reported: copy it and record it."""
    folder = run_dir / f"checkpoint_2026-12-01_00-00-{metrics['step']:02d}.000000"
    shutil.copytree(checkpoint.path, folder)
    path = run_dir / RAY_SNAPSHOT
    snapshot = json.loads(path.read_text()) if path.exists() else {"checkpoint_results": []}
    snapshot["checkpoint_results"].append({"checkpoint_dir_name": folder.name, "metrics": metrics})
    snapshot["latest_checkpoint_result"] = snapshot["checkpoint_results"][-1]
    path.write_text(json.dumps(snapshot))


def exported_logprobs(out, dtype):
    from transformers import AutoModelForCausalLM

    from gcpo.logprobs import response_logprobs

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.dtype == dtype and not hasattr(model, "peft_config")
    with torch.no_grad():
        return model, response_logprobs(model, PROMPTS, RESPONSES, pad_token_id=0)[0]


@pytest.mark.integration
@pytest.mark.usefixtures("single_process_group")
@pytest.mark.parametrize("zero_stage,dtype", [(0, "float32"), (3, "float32"), (2, "bfloat16")])
def test_an_exported_checkpoint_has_the_trainers_logprobs(tmp_path, monkeypatch, zero_stage, dtype):
    from transformers import AutoModelForCausalLM

    from gcpo.training.deepspeed_policy import gather_state_dict

    run_dir = tmp_path / "runs" / "full"
    engine, logps = trainer_run(run_dir, monkeypatch, [f"trainer.zero_stage={zero_stage}", f"model.dtype={dtype}"],
                                steps=2)
    trained = gather_state_dict(engine)
    lines = []
    latest = export_checkpoint(str(run_dir), tmp_path / "out", say=lines.append)
    first = export_checkpoint(str(run_dir), tmp_path / "out1", step=1, say=lines.append)
    assert (latest.source.step, first.source.step) == (2, 1)
    assert lines[0] == f"[gcpo] exporting step 2 of run full ({latest.source.checkpoint})"
    model, logp = exported_logprobs(tmp_path / "out", getattr(torch, dtype))
    assert (logp - logps[1]).abs().max() < 1e-5
    assert (exported_logprobs(tmp_path / "out1", getattr(torch, dtype))[1] - logps[0]).abs().max() < 1e-5
    base = AutoModelForCausalLM.from_pretrained(tiny_dir())
    with torch.no_grad():
        from gcpo.logprobs import response_logprobs

        assert (response_logprobs(base, PROMPTS, RESPONSES, pad_token_id=0)[0] - logp).abs().max() > 1e-3
    state = model.state_dict()
    for name, weight in trained.items():  # the engine's weights exactly, in the run's dtype
        assert torch.equal(state[name].float(), weight), name
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as the base
    record = json.loads((tmp_path / "out" / "gcpo_export.json").read_text())
    assert record["run_name"] == "full" and record["step"] == 2 and record["metrics"]["reward/mean"] == 0.2
    assert record["config"]["trainer"]["zero_stage"] == zero_stage and record["base_model"] == "tiny"
    assert record["source_checkpoint"] == str(latest.source.checkpoint.resolve()) and record["lora_merged"] is None
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == dtype
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "generation_config.json", "gcpo_export.json"} <= files
    export_checkpoint(str(run_dir), tmp_path / "out", step=1, force=True, say=lines.append)  # replaced
    assert json.loads((tmp_path / "out" / "gcpo_export.json").read_text())["step"] == 1


@pytest.mark.integration
@pytest.mark.usefixtures("single_process_group")
@pytest.mark.parametrize("zero_stage", [0, 3])
def test_a_lora_checkpoint_is_exported_merged_with_the_peft_models_logprobs(tmp_path, monkeypatch, zero_stage):
    run_dir = tmp_path / "runs" / "lora"
    _, logps = trainer_run(run_dir, monkeypatch, ["model.lora.rank=4", "model.lora.alpha=8",
                                                  f"trainer.zero_stage={zero_stage}"])
    lines = []
    export_checkpoint(str(next(run_dir.glob("checkpoint_*"))), tmp_path / "out", say=lines.append)
    assert lines[1].endswith("float32, LoRA rank 4 adapters merged (alpha 8)")
    model, logp = exported_logprobs(tmp_path / "out", torch.float32)
    assert (logp - logps[0]).abs().max() < 1e-5
    assert not any("lora" in name for name in model.state_dict())
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[q_proj], load_file(tiny_dir() / "model.safetensors")[q_proj])
    record = json.loads((tmp_path / "out" / "gcpo_export.json").read_text())
    assert record["lora_merged"]["rank"] == 4 and record["committed"] and record["metrics"]["step"] == 1


@pytest.mark.integration
@pytest.mark.usefixtures("single_process_group")
def test_an_exported_folder_serves_as_model_name(tmp_path, monkeypatch, capsys):
    """`gcpo export` itself, then the folder as `model.name`: resolved (also relative, as a run ships it to its
    workers), checked by `gcpo train`'s start-up check, and evaluated by `gcpo eval`."""
    from gcpo.preflight import check_run
    from gcpo.training.fit import absolutize

    trainer_run(tmp_path / "runs" / "r", monkeypatch, [])
    monkeypatch.chdir(tmp_path)
    assert main(["export", "r", "--out", "exported"]) == 0
    out = tmp_path / "exported"
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("[gcpo] wrote step 1 of run r to exported (") and "use it with model.name=exported" in last
    cfg = load_config(overrides=["model.name=exported", "task.train_size=8", "task.eval_size=2"])
    assert resolve_model(cfg.model) == out.resolve()
    assert absolutize(cfg, tmp_path).model.name == absolute_model_name("exported", tmp_path) == str(out.resolve())
    assert check_run(cfg).model_dir == out.resolve()
    assert main(["eval", "--no-mlflow", "model.name=exported", "rollout.backend=transformers", "task.eval_size=2",
                 "trainer.eval_k=1", "rollout.max_new_tokens=4"]) == 0
    assert f"[gcpo eval] model exported ({out.resolve()})" in capsys.readouterr().out
