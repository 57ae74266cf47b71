"""`gcpo warmstart` on the tiny model: SFT on the warm-start split's golden answers lowers their loss, the folder
is a model `model.name` accepts, and its record holds the probe of the RL training prompts and the held-out
metrics."""

import json

import pytest

from gcpo.cli import main




@pytest.mark.integration
def test_warmstart_fine_tunes_saves_and_probes(tmp_path):
    from gcpo.config import load_config
    from gcpo.models import resolve_model

    out = tmp_path / "warm"
    code = main(["warmstart", "--out", str(out), "--steps", "12", "--lr", "1e-3", "--items", "16",
                 "--probe-prompts", "4", "--probe-group", "2", "model.name=tiny", "rollout.backend=transformers",
                 "rollout.max_new_tokens=8", "task.eval_size=4"])
    assert code == 0
    record = json.loads((out / "gcpo_warmstart.json").read_text())
    losses = record["sft_losses"]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])  # it learned the golden answers
    probe = record["probe"]
    assert probe["prompts"] == 4 and probe["group"] == 2
    assert probe["all_wrong"] + probe["mixed"] + probe["all_correct"] == pytest.approx(1.0)
    assert "eval/basic_arithmetic/pass_at_1" in record["held_out"]
    assert resolve_model(load_config(overrides=[f"model.name={out}"]).model) == out.resolve()
    again = main(["warmstart", "--out", str(out), "model.name=tiny"])
    assert again == 1  # an existing folder is not overwritten without --force


@pytest.mark.integration
def test_warmstart_refuses_a_jsonl_task_naming_the_field(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    assert main(["warmstart", "--out", str(tmp_path / "w"), "model.name=tiny", "task.name=jsonl",
                 f"task.path={path}"]) == 2
    assert "task.name" in capsys.readouterr().err


def test_the_builtin_warm_start_is_named_until_made(tmp_path, monkeypatch):
    """`model.name=smollm2-warmstart` resolves to its cache folder once made; before that, resolving it is an
    error saying how to make it, and the start-up check of `gcpo train` / `gcpo sweep` makes it (once)."""
    from gcpo import preflight
    from gcpo.config import ConfigError, ModelConfig
    from gcpo.models import WARMSTART_MODEL, resolve_model, warmstart_dir
    from gcpo.training import warmstart

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="gcpo warmstart --builtin"):
        resolve_model(ModelConfig(name=WARMSTART_MODEL))
    made = []

    def make(*, say, probe=False):  # stands in for the 7-minute SFT: the folder it would write
        made.append(warmstart_dir())
        warmstart_dir().mkdir(parents=True)
        (warmstart_dir() / "config.json").write_text("{}")

    monkeypatch.setattr(warmstart, "make_builtin_warm_start", make)
    preflight._make_builtin_warm_start(ModelConfig(name=WARMSTART_MODEL))
    preflight._make_builtin_warm_start(ModelConfig(name=WARMSTART_MODEL))  # made once
    assert made == [tmp_path / "models" / "smollm2-warmstart-v1"]
    assert resolve_model(ModelConfig(name=WARMSTART_MODEL)) == made[0]
