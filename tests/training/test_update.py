"""`update_policy` on the tiny model: old log-probs, whether fused into the update's forward (one epoch of one
mini-batch) or from a separate no-grad pass (several epochs), equal an independent recomputation; fusing the
first of two mini-batches saves its no-grad forwards and changes the update only by float rounding."""

import dataclasses

import pytest
import torch

from gcpo.config import load_config
from gcpo.models import tiny_dir
from gcpo.rollout import build_engine, sampling_settings
from gcpo.training.rollouts import collect_step_batch
from gcpo.training.data import build_training_data
from gcpo.logprobs import response_logprobs
from gcpo.training.deepspeed_policy import build_policy
from gcpo.training.sampler import PromptSampler
from gcpo.training.update import update_policy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]


@pytest.fixture(scope="module")
def setting():
    from transformers import AutoTokenizer

    cfg = load_config(preset="grpo", overrides=[
        "model.name=tiny", "rollout.backend=transformers", "rollout.prompts_per_step=2", "rollout.group_size=4",
        "rollout.max_new_tokens=8", "task.train_size=8", "task.eval_size=2", "trainer.lr=1e-3", "algorithm.kl_coef=0"])
    tok = AutoTokenizer.from_pretrained(tiny_dir())
    data = build_training_data(cfg, tok)
    batch, _, _ = collect_step_batch(build_engine(cfg.rollout, tiny_dir()), data, PromptSampler(8, seed=0), cfg,
                                     sampling_settings(cfg.rollout), step=0)
    # Non-zero advantages so the update really moves the policy (a random tiny model is never right).
    batch = dataclasses.replace(batch, advantages=torch.linspace(-1, 1, len(batch.responses)))
    return cfg, tok, batch


@pytest.mark.parametrize("epochs", [1, 2], ids=["fused", "separate-pass"])
def test_old_logprobs_equal_an_independent_recomputation(setting, epochs):
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, epochs=epochs))
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    with torch.no_grad():  # the reference numbers: the same weights, one plain forward per sequence
        rows = [response_logprobs(engine.module, [p], [r], pad_token_id=tok.pad_token_id)[0][0].tolist()
                for p, r in zip(batch.prompts, batch.responses)]
    probe = dataclasses.replace(batch, gen_logprobs=rows)  # "generator" log-probs = the independent numbers
    metrics = update_policy(engine, probe, cfg, step=0, pad_id=tok.pad_token_id)
    assert metrics["sync/logprob_abs_diff_max"] < 1e-5
    assert metrics["policy/entropy"] > 0
    assert metrics["grad/norm"] > 0
    if epochs == 1:  # fused: the first and only update sees ratio 1 exactly
        assert metrics["policy/ratio_mean"] == pytest.approx(1.0, abs=1e-6)
        assert metrics["policy/clip_frac"] == 0.0
    else:  # the second epoch runs on moved weights
        assert metrics["policy/ratio_mean"] != pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("kl_coef", [0.0, 0.04], ids=["no-kl", "kl"])
def test_fusing_the_first_mini_batch_skips_its_no_grad_pass_and_changes_nothing_else(setting, kl_coef):
    """Two mini-batches of one group each: the first mini-batch's old log-probs come from its own training forward
    (3 policy forwards instead of 4), and the updated weights and every metric equal the unfused path's within
    float rounding (1e-6 relative on the weights). With KL on, the reference pass still covers both groups."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, mini_batches=2, micro_batch_size=4),
                              algorithm=dataclasses.replace(cfg.algorithm, kl_coef=kl_coef))

    def update(fuse):
        c = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, fuse_old_logprobs=fuse))
        policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
        ref = AutoModelForCausalLM.from_pretrained(tiny_dir()).eval() if kl_coef else None
        calls = []
        hook = policy_engine.module.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
        metrics = update_policy(policy_engine, batch, c, step=0, pad_id=tok.pad_token_id, ref_model=ref)
        hook.remove()
        return metrics, calls, torch.cat([p.detach().flatten() for p in policy_engine.module.parameters()])

    fused, fused_calls, fused_weights = update(True)
    plain, plain_calls, plain_weights = update(False)
    assert plain_calls == [False, False, True, True] and fused_calls == [False, True, True]
    before = torch.cat([p.flatten() for p in AutoModelForCausalLM.from_pretrained(tiny_dir()).parameters()])
    moved = (plain_weights - before).norm()
    assert moved > 0 and (fused_weights - plain_weights).norm() <= 1e-6 * moved + 1e-7
    assert set(fused) == set(plain)
    for name in plain:
        if not name.startswith("time/"):
            assert fused[name] == pytest.approx(plain[name], rel=1e-5, abs=1e-6), name
    assert fused["policy/clip_frac_learnable_u1"] == 0.0  # the fused mini-batch's ratio is exactly 1


def test_conspo_reports_its_contrast_metrics(setting):
    """ConSPO's entry of the loss table reports its own metrics (they used to be thrown away)."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    cfg = dataclasses.replace(cfg, algorithm=load_config(preset="conspo").algorithm)
    correct = torch.tensor([[True, False, False, True], [False] * 4])  # one contrastive group, 2 positives
    probe = dataclasses.replace(batch, correct=correct)
    policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    metrics = update_policy(policy_engine, probe, cfg, step=0, pad_id=tok.pad_token_id)
    assert metrics["conspo/contrast_groups"] == 1.0 and metrics["conspo/positives"] == 2.0
    assert metrics["conspo/margin"] == 0.0  # the curriculum starts at conspo_margin_start
    assert metrics["loss/policy"] > 0 and metrics["grad/norm"] > 0
    assert "policy/clip_frac" not in metrics


def test_a_rollout_correction_changes_the_update_only_when_the_generator_differs(setting):
    """`algorithm.rollout_correction` acts through the generators' log-probs: in sync (fp32 generators) every
    ratio is 1 and the update is the uncorrected one; with a mismatch (here noise of 0.5 nats per token: bf16
    generators reach 1.1 on their worst tokens) each correction changes the gradient, and reports what it did."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    with torch.no_grad():
        exact = [response_logprobs(engine.module, [p], [r], pad_token_id=tok.pad_token_id)[0][0]
                 for p, r in zip(batch.prompts, batch.responses)]
    noise = torch.Generator().manual_seed(0)
    shifted = [(e + 0.5 * torch.randn(e.shape, generator=noise)).tolist() for e in exact]
    exact = [e.tolist() for e in exact]

    def update(kind, gen):
        c = dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, rollout_correction=kind))
        policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), c.trainer, "float32")
        return update_policy(policy_engine, dataclasses.replace(batch, gen_logprobs=gen), c, step=0,
                             pad_id=tok.pad_token_id)

    plain = update("none", shifted)
    assert "correction/weight_mean" not in plain
    for kind in ("tis", "mis", "icepop"):
        in_sync = update(kind, exact)
        assert in_sync["grad/norm"] == pytest.approx(update("none", exact)["grad/norm"], rel=1e-5), kind
        assert in_sync["correction/weight_mean"] == pytest.approx(1.0, abs=1e-5)
        off = update(kind, shifted)
        assert off["grad/norm"] != pytest.approx(plain["grad/norm"], rel=1e-3), kind  # the switch acts
        assert off["correction/ratio_mean"] > 1.0  # E[exp(noise)] = exp(0.125) over the tokens
    tis = update("tis", shifted)
    assert tis["correction/weight_mean"] < tis["correction/ratio_mean"]  # the cap of 2 truncated some tokens


def test_hint_tokens_carry_no_gradient(setting):
    """A hinted row (prompt + golden-answer prefix H, then the policy's continuation C) trains on C alone: the
    update's gradient equals the hand-computed -sum A log pi over response tokens, conditioned on prompt + H, and
    differs from the gradient that would also train on H."""
    from deepspeed.utils import safe_get_full_grad
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    a = dataclasses.replace(cfg.algorithm, ratio_level="none", loss_agg="token-mean", adv_norm="none")
    cfg = dataclasses.replace(cfg, algorithm=a)
    prompt, hint, cont = batch.prompts[0], batch.responses[0][:3], batch.responses[1]
    hinted = dataclasses.replace(
        batch.keep_groups([True] + [False] * (batch.num_groups - 1)),
        prompts=[prompt + hint] + batch.prompts[1:4], responses=[cont] + batch.responses[1:4],
        gen_logprobs=[None] * 4, hint_tokens=[len(hint), 0, 0, 0], advantages=torch.tensor([1.0, -0.5, 0.25, 0.0]))
    policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    grads, step = [], policy_engine.step

    def capture_then_step():
        grads.append(torch.cat([safe_get_full_grad(p).flatten() for p in policy_engine.module.parameters()]))
        step()

    policy_engine.step = capture_then_step
    update_policy(policy_engine, hinted, cfg, step=0, pad_id=tok.pad_token_id)

    def by_hand(rows):  # token-mean over the rows' response tokens of -A log pi, on the same initial weights
        model = AutoModelForCausalLM.from_pretrained(tiny_dir())
        logp = [response_logprobs(model, [p], [r], pad_token_id=tok.pad_token_id)[0][0] for p, r, _ in rows]
        loss = -sum(adv * lp.sum() for lp, (_, _, adv) in zip(logp, rows)) / sum(len(r) for _, r, _ in rows)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    rest = [(p, r, float(x)) for p, r, x in zip(hinted.prompts[1:], hinted.responses[1:], hinted.advantages[1:])]
    continuation_only = by_hand([(prompt + hint, cont, 1.0)] + rest)
    hint_trained_too = by_hand([(prompt, hint + cont, 1.0)] + rest)
    rel = lambda x, y: ((x - y).norm() / y.norm()).item()  # noqa: E731
    assert rel(grads[0], continuation_only) < 1e-4
    assert rel(grads[0], hint_trained_too) > 1e-2
def _params(engine) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in engine.module.parameters()])


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_gpg_alpha_scales_the_step_where_a_loss_scale_would_not(setting, zero_stage):
    """GPG's alpha scales the optimiser step's learning rate: the parameter update of one AdamW step with alpha
    1.5 is 1.5 x the update without it. The paper's form (the loss x alpha, here the advantages x 1.5) leaves the
    update as it was: the gradient clip (trainer.grad_clip) and Adam's m / sqrt(v) both undo a gradient scale.
    At ZeRO 2 the optimiser DeepSpeed steps wraps ours: the scale reaches it all the same."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, zero_stage=zero_stage))

    def update(probe):
        policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
        before = _params(policy_engine)
        metrics = update_policy(policy_engine, probe, cfg, step=0, pad_id=tok.pad_token_id)
        groups = policy_engine.lr_scheduler.optimizer.param_groups
        assert [g["lr"] for g in groups] == [cfg.trainer.lr] * len(groups) == policy_engine.lr_scheduler.get_last_lr()
        return _params(policy_engine) - before, metrics

    off, m_off = update(batch)
    scaled, m_scaled = update(dataclasses.replace(batch, alpha=1.5))
    as_loss, m_loss = update(dataclasses.replace(batch, advantages=1.5 * batch.advantages))
    assert m_off["grad/norm"] > cfg.trainer.grad_clip  # the clip acts on this step
    assert m_scaled["grad/norm"] == pytest.approx(m_off["grad/norm"], rel=1e-6)  # the same gradient ...
    assert m_loss["grad/norm"] == pytest.approx(1.5 * m_off["grad/norm"], rel=1e-5)  # ... 1.5 x this one's
    assert off.abs().max() > 0
    # the step: 1.5 x as long (to float32 rounding of parameter - parameter)
    torch.testing.assert_close(scaled, 1.5 * off, rtol=1e-4, atol=1e-5 * off.abs().max().item())
    # the loss-scaled step: the same as alpha off (but for the few weights whose gradient is near Adam's eps)
    assert torch.linalg.vector_norm(as_loss - off) < 1e-3 * torch.linalg.vector_norm(off)
    assert m_scaled["lr"] == m_off["lr"] == cfg.trainer.lr  # the schedule is untouched


def _entropies(engine, tok, prompts, responses) -> list[torch.Tensor]:
    with torch.no_grad():
        return [response_logprobs(engine.module, [p], [r], pad_token_id=tok.pad_token_id, with_entropy=True)[2][0]
                for p, r in zip(prompts, responses)]


def test_entropy_is_split_between_sampled_rows_and_golden_rows(setting):
    """`policy/entropy` covers the generators' own samples only and `policy/entropy_golden` the golden rows (the
    injected golden answers of GCPO, the imitated ones of ga_sft), each the token mean under the policy before
    the update, so GCPO and ga_sft report the same quantity."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    golden = torch.zeros_like(batch.is_golden)
    golden[0, -1] = True  # the last row of group 0 plays an injected golden answer
    probe = dataclasses.replace(batch, is_golden=golden)
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), cfg.trainer, "float32")
    ents = _entropies(engine, tok, batch.prompts, batch.responses)
    metrics = update_policy(engine, probe, cfg, step=0, pad_id=tok.pad_token_id)
    g = batch.group_size - 1
    sampled = torch.cat([e for r, e in enumerate(ents) if r != g])
    assert metrics["policy/entropy"] == pytest.approx(sampled.mean().item(), rel=1e-5)
    assert metrics["policy/entropy_golden"] == pytest.approx(ents[g].mean().item(), rel=1e-5)
    assert "policy/entropy_golden" not in update_policy(engine, batch, cfg, step=1, pad_id=tok.pad_token_id)

    sft = dataclasses.replace(cfg, algorithm=load_config(preset="ga_sft").algorithm)
    imitated = dataclasses.replace(batch, golden_prompts=[batch.prompts[0], batch.prompts[4]],
                                   golden_responses=[batch.responses[1], batch.responses[6]])
    engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), sft.trainer, "float32")
    ents = _entropies(engine, tok, batch.prompts, batch.responses)
    golden_ents = _entropies(engine, tok, imitated.golden_prompts, imitated.golden_responses)
    metrics = update_policy(engine, imitated, sft, step=0, pad_id=tok.pad_token_id)
    assert metrics["policy/entropy"] == pytest.approx(torch.cat(ents).mean().item(), rel=1e-5)
    assert metrics["policy/entropy_golden"] == pytest.approx(torch.cat(golden_ents).mean().item(), rel=1e-5)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_each_mini_batch_reports_its_clip_fraction_over_learnable_tokens(setting, level):
    """Two mini-batches: the first sees the policy its old log-probs came from (ratio 1, nothing clipped), the
    second the policy one update later; each reports `policy/clip_frac_learnable_u<k>` over the tokens with a
    non-zero advantage. The second group is a copy of the first, so the first update moved its ratios in the
    direction of their advantages, past a tight range (GSPO's 3e-4 / 4e-4 for the sequence ratio; 1e-3 for the
    token ratio: one AdamW step at lr 1e-3 moves the tiny model's token ratios by far less than 0.2)."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    g = batch.group_size
    twice = dataclasses.replace(batch, prompts=batch.prompts[:g] * 2, responses=batch.responses[:g] * 2,
                                gen_logprobs=batch.gen_logprobs[:g] * 2, advantages=batch.advantages[:g].repeat(2),
                                rewards=batch.rewards[:1].repeat(2, 1), correct=batch.correct[:1].repeat(2, 1),
                                is_golden=batch.is_golden[:1].repeat(2, 1))
    a = dataclasses.replace(cfg.algorithm, ratio_level=level, clip_low=1e-3, clip_high=1e-3)
    c = dataclasses.replace(cfg, algorithm=a, trainer=dataclasses.replace(cfg.trainer, mini_batches=2))
    policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), c.trainer, "float32")
    metrics = update_policy(policy_engine, twice, c, step=0, pad_id=tok.pad_token_id)
    assert metrics["policy/clip_frac_learnable_u1"] == 0.0
    assert "policy/clip_frac_learnable_u3" not in metrics
    second = metrics["policy/clip_frac_learnable_u2"]
    assert 0.5 < second <= 1.0
    # both mini-batches hold the same tokens: the whole update's fraction is the mean of the two
    assert metrics["policy/clip_frac_learnable"] == pytest.approx(second / 2)


def test_kl_on_reports_its_gradient_share_per_mini_batch_and_leaves_golden_rows_out(setting):
    """KL to the starting policy: the first mini-batch's KL gradient is 0 (the policy is the reference), the second
    one's is not; a golden row's KL is not counted (`kl/mean` over the policy's own samples only)."""
    from transformers import AutoModelForCausalLM

    cfg, tok, batch = setting
    c = dataclasses.replace(cfg, algorithm=dataclasses.replace(cfg.algorithm, kl_coef=0.04),
                            trainer=dataclasses.replace(cfg.trainer, mini_batches=2))
    policy_engine = build_policy(AutoModelForCausalLM.from_pretrained(tiny_dir()), c.trainer, "float32")
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_dir()).eval()
    metrics = update_policy(policy_engine, batch, c, step=0, pad_id=tok.pad_token_id, ref_model=ref_model)
    assert metrics["kl/grad_share_u1"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < metrics["kl/grad_share_u2"] < 0.5  # a regulariser beside the policy term, not the update
    assert metrics["kl/mean"] > 0
