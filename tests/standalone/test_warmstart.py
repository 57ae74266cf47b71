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


def fake_builtin_warm_start(made):
    """Stands in for the 7-minute SFT: the folder it would write."""
    from gcpo.models import warmstart_dir

    def make(*, say, probe=False):
        made.append(warmstart_dir())
        warmstart_dir().mkdir(parents=True)
        (warmstart_dir() / "config.json").write_text("{}")
    return make


def test_the_builtin_warm_start_is_named_until_made(tmp_path, monkeypatch, capsys):
    """`model.name=smollm2-warmstart` resolves to its cache folder once made; before that, resolving it is an
    error saying how to make it, and `ensure_builtin_warm_start` (the commands' call) makes it once, saying so."""
    from gcpo.config import ConfigError, ModelConfig
    from gcpo.models import WARMSTART_MODEL, resolve_model
    from gcpo.standalone import warmstart

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="gcpo warmstart --builtin"):
        resolve_model(ModelConfig(name=WARMSTART_MODEL))
    made = []
    monkeypatch.setattr(warmstart, "make_builtin_warm_start", fake_builtin_warm_start(made))
    assert not warmstart.ensure_builtin_warm_start(ModelConfig(name="tiny"))
    assert warmstart.ensure_builtin_warm_start(ModelConfig(name=WARMSTART_MODEL))
    assert not warmstart.ensure_builtin_warm_start(ModelConfig(name=WARMSTART_MODEL))  # made once
    assert made == [tmp_path / "models" / "smollm2-warmstart-v1"]
    assert resolve_model(ModelConfig(name=WARMSTART_MODEL)) == made[0]
    assert capsys.readouterr().out.count("[gcpo] model.name=smollm2-warmstart is not made yet: making it now") == 1


def test_the_start_up_check_builds_nothing_and_gcpo_train_makes_the_warm_start(tmp_path, monkeypatch, capsys):
    """`check_run` only checks (a missing warm start is named, not made); `gcpo train` makes it before the check."""
    from gcpo import preflight
    from gcpo.cli import main
    from gcpo.config import ConfigError, load_config
    from gcpo.standalone import warmstart

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="not made yet"):
        preflight.check_run(load_config(None, {"model.name": "smollm2-warmstart", "task.train_size": 4,
                                               "task.eval_size": 2}))
    made = []
    monkeypatch.setattr(warmstart, "make_builtin_warm_start", fake_builtin_warm_start(made))

    def stop(cfg):
        raise ConfigError("stopped after the warm start (test)")
    monkeypatch.setattr(preflight, "check_run", stop)
    assert main(["train", "model.name=smollm2-warmstart"]) == 2
    assert len(made) == 1
    out = capsys.readouterr()
    assert "model.name=smollm2-warmstart is not made yet: making it now" in out.out
    assert "stopped after the warm start" in out.err
