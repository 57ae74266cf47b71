import pytest

from gcpo.config import ConfigError, RunConfig, from_dict, load_config, parse_override, to_dict, to_flat_dict


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, RunConfig) and cfg.algorithm.ratio_level == "token"


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"'algorithm\.kl_coeff'.*did you mean 'algorithm\.kl_coef'"):
        load_config(overrides=["algorithm.kl_coeff=0.1"])
    with pytest.raises(ConfigError, match=r"unknown config key 'trainr'.*did you mean 'trainer'"):
        from_dict({"trainr": {"steps": 3}})


def test_bad_values_name_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"algorithm\.ratio_level: invalid value 'seq'; allowed: 'token', "
                                          r"'sequence', 'none'"):
        load_config(overrides=["algorithm.ratio_level=seq"])
    with pytest.raises(ConfigError, match=r"algorithm\.golden_answers: expected true or false"):
        load_config(overrides=["algorithm.golden_answers=yesplease"])
    with pytest.raises(ConfigError, match=r"trainer\.steps: expected an integer"):
        load_config(overrides=["trainer.steps=1.5"])
    with pytest.raises(ConfigError, match=r"algorithm\.kl_coef: must be >= 0"):
        load_config(overrides=["algorithm.kl_coef=-1"])
    with pytest.raises(ConfigError, match=r"trainer\.zero_stage: invalid value True"):
        load_config(overrides=["trainer.zero_stage=true"])
    with pytest.raises(ConfigError, match=r"rollout\.group_size: must be >= 2"):
        load_config(overrides=["rollout.group_size=1"])
    with pytest.raises(ConfigError, match=r"trainer\.keep_checkpoints: must be >= 1 \(the latest is needed"):
        load_config(overrides=["trainer.keep_checkpoints=0"])


def test_the_three_ablation_switches():
    cfg = load_config(overrides=["algorithm.golden_answers=true", "algorithm.kl_coef=0", "algorithm.ratio_level=none"])
    assert cfg.algorithm.golden_answers is True
    assert cfg.algorithm.kl_coef == 0.0 and isinstance(cfg.algorithm.kl_coef, float)
    assert cfg.algorithm.ratio_level == "none"


def test_yaml_preset_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: gcpo\ntrainer:\n  steps: 7\nalgorithm:\n  clip_high: 0.5\n")
    cfg = load_config(path, ["trainer.lr=1e-4", "rollout.stop=[</answer>, \"\\n\\n\"]"])
    assert cfg.preset == "gcpo" and cfg.algorithm.golden_answers and cfg.algorithm.ratio_level == "sequence"
    assert cfg.algorithm.clip_high == 0.5  # the file wins over the preset
    assert cfg.trainer.steps == 7 and cfg.trainer.lr == 1e-4
    assert cfg.rollout.stop == ["</answer>", "\n\n"]
    # the --preset flag is the same thing as the `preset:` key
    assert load_config(preset="gpg").algorithm.ratio_level == "none"


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("algorithm.kl_coef")
    with pytest.raises(ConfigError, match="preset: unknown preset 'gcpoo'; did you mean 'gcpo'.*allowed: grpo"):
        load_config(preset="gcpoo")


def test_round_trip_and_flat_names():
    cfg = load_config(preset="dapo")
    assert from_dict(to_dict(cfg)) == cfg
    flat = to_flat_dict(cfg)
    assert flat["algorithm.batch_filling"] == "dapo" and flat["preset"] == "dapo"
    assert all(not isinstance(v, dict) for v in flat.values())


def test_supervised_switches_name_the_field():
    cfg = load_config(preset="ga_sft", overrides=["algorithm.sft_prompts=all_wrong"])
    assert cfg.algorithm.loss == "sft" and cfg.algorithm.sft_prompts == "all_wrong"
    assert load_config(preset="gcpo", overrides=["algorithm.sft_coef=0.5"]).algorithm.sft_coef == 0.5
    with pytest.raises(ConfigError, match=r"algorithm\.sft_prompts: invalid value 'failed'; allowed: 'all', 'all_wrong'"):
        load_config(preset="ga_sft", overrides=["algorithm.sft_prompts=failed"])
    with pytest.raises(ConfigError, match=r"algorithm\.sft_coef: must be >= 0"):
        load_config(preset="gcpo", overrides=["algorithm.sft_coef=-0.1"])
    with pytest.raises(ConfigError, match=r"algorithm\.sft_coef: needs algorithm\.golden_answers=true"):
        load_config(preset="grpo", overrides=["algorithm.sft_coef=0.1"])
    with pytest.raises(ConfigError, match=r"algorithm\.sft_prompts: applies only to loss 'sft'"):
        load_config(preset="gcpo", overrides=["algorithm.sft_prompts=all_wrong"])
    for key, value in [("golden_answers", "true"), ("kl_coef", "0.01"), ("batch_filling", "dapo"),
                       ("sft_coef", "0.5")]:
        with pytest.raises(ConfigError, match=rf"algorithm\.{key}: must be .* with loss 'sft'"):
            load_config(preset="ga_sft", overrides=[f"algorithm.{key}={value}"])


def test_loggable_config_hides_uri_passwords_only():
    from gcpo.config import dump_yaml, loggable, redact, to_flat_dict

    cfg = load_config(overrides=["tracking.uri=https://alice:s3cr3t-pw@mlflow.example:5000/x",
                                 "cluster.address=ray://bob:hunter2@10.0.0.1:10001"])
    shown = loggable(cfg)
    flat = to_flat_dict(shown)
    assert flat["tracking.uri"] == "https://alice:***@mlflow.example:5000/x"
    assert flat["cluster.address"] == "ray://bob:***@10.0.0.1:10001"
    text = dump_yaml(shown) + repr(flat)
    assert "s3cr3t-pw" not in text and "hunter2" not in text
    assert cfg.tracking.uri.endswith("s3cr3t-pw@mlflow.example:5000/x")  # the run itself still connects with it
    for plain in ("sqlite:////tmp/mlflow.db", "http://127.0.0.1:5000", "user@host", "a:b"):
        assert redact(plain) == plain
    assert to_flat_dict(loggable(load_config())) == to_flat_dict(load_config())


def test_kl_clamp_and_mis_ratio_are_checked_and_default_to_neutral():
    from gcpo.algorithms.presets import NEUTRAL

    a = load_config().algorithm
    assert a.kl_clamp == NEUTRAL["kl_clamp"] == 10.0 and a.mis_ratio == NEUTRAL["mis_ratio"] == "geometric"
    with pytest.raises(ConfigError, match="algorithm.kl_clamp"):
        load_config(overrides=["algorithm.kl_clamp=-1"])
    with pytest.raises(ConfigError, match="algorithm.mis_ratio"):
        load_config(overrides=["algorithm.mis_ratio=arithmetic"])
    assert load_config(overrides=["algorithm.mis_ratio=product"]).algorithm.mis_ratio == "product"
