"""bf16 mixed precision (`model.dtype=bfloat16`, DeepSpeed bf16 at ZeRO 0, started for real on the tiny model)
keeps fp32 master weights: each optimiser step equals torch's fp32 AdamW applied to the step's bf16 gradients,
and the model's bf16 weights are those masters rounded.

Tolerance: the masters agree with the fp32 reference to 1e-6 absolute, 0.1% of one step's change (lr 1e-3; the
same fp32 arithmetic in another order); the bf16 weights equal the masters rounded to bf16 exactly. A bf16-only
optimiser fails both: its weights move in steps of bf16's resolution (about 1e-4 at the tiny model's 0.02-sized
weights, a tenth of this step), so the masters must also hold what bf16 cannot.

Found on the way (DeepSpeed 0.19): the bf16 wrapper (`FP16_UnfusedOptimizer`, and ZeRO's optimisers alike)
initialises the optimiser's state with one step on zero gradients when it is built, so Adam's step count starts
at 1 (its bias correction one step ahead of plain AdamW's; weight decay applied once). The reference takes the
same zero-gradient step first; without it the first updates differ by up to a quarter of the learning rate.
"""

import pytest
import torch

from gcpo.config import load_config
from gcpo.models import load_causal_lm, tiny_dir
from gcpo.training.deepspeed_policy import build_policy, step_with_grad_norm

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("single_process_group")]

LR, STEPS, MICRO_BATCHES = 1e-3, 3, 2


def test_bf16_steps_update_fp32_masters_with_adamw_on_the_bf16_gradients():
    cfg = load_config(preset="grpo", overrides=[
        "model.name=tiny", f"trainer.lr={LR}", "trainer.warmup_steps=0", "trainer.lr_schedule=constant",
        "trainer.weight_decay=0.01", "trainer.grad_clip=1e9",  # no clipping: the reference is plain AdamW
    ])
    engine = build_policy(load_causal_lm(tiny_dir(), "bfloat16"), cfg.trainer, "bfloat16")
    weights = [p for p in engine.module.parameters() if p.requires_grad]
    masters = [p for group in engine.basic_optimizer.param_groups for p in group["params"]]
    assert all(p.dtype == torch.bfloat16 for p in weights)
    assert len(masters) == len(weights) and all(m.dtype == torch.float32 for m in masters)
    reference = [p.detach().float().clone().requires_grad_(True) for p in weights]
    adamw = torch.optim.AdamW(reference, lr=LR, weight_decay=cfg.trainer.weight_decay)
    for r in reference:  # DeepSpeed's wrapper steps the optimiser once with zero gradients when it is built
        r.grad = torch.zeros_like(r)
    adamw.step()
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        for k in range(MICRO_BATCHES):  # the gradients of a step's micro-batches summed, as gcpo.training.update does
            ids = torch.randint(1, 1000, (2, 12), generator=gen)
            engine.set_gradient_accumulation_boundary(k == MICRO_BATCHES - 1)
            engine.backward(engine(input_ids=ids, labels=ids).loss)
        grads = [p.grad.detach().clone() for p in weights]
        assert all(g.dtype == torch.bfloat16 for g in grads)
        step_with_grad_norm(engine)
        for r, g in zip(reference, grads):
            r.grad = g.float()
        adamw.step()
        for m, r, w in zip(masters, reference, weights):
            torch.testing.assert_close(m.detach(), r.detach(), atol=1e-6, rtol=0)
            assert torch.equal(w.detach(), m.detach().to(torch.bfloat16))
    held = max(float((m.detach() - w.detach().float()).abs().max()) for m, w in zip(masters, weights))
    assert held > 0  # the masters hold digits the bf16 weights do not
