"""Trainer-side log-probs of sampled responses: the numbers the generators' log-probs must match.

Layout used everywhere in training: responses are right-padded to (N, T) with T the longest response, and
`mask` is 1 on response tokens. Prompt + response are left-aligned in one forward pass per micro-batch.
"""

from __future__ import annotations

from typing import Sequence

import torch


def pad_responses(responses: Sequence[Sequence[float | int]], dtype: torch.dtype, pad: float = 0.0):
    """Right-pad ragged lists to (N, T) and return (values, mask)."""
    width = max((len(r) for r in responses), default=0)
    values = torch.full((len(responses), max(width, 1)), pad, dtype=dtype)
    mask = torch.zeros((len(responses), max(width, 1)), dtype=torch.float32)
    for i, r in enumerate(responses):
        if len(r):
            values[i, : len(r)] = torch.as_tensor(list(r), dtype=dtype)
            mask[i, : len(r)] = 1.0
    return values, mask


def response_logprobs(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    micro_batch_size: int = 8,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """log pi(response_t | prompt, response_<t) for every response token.

    Returns (logp (N, T), mask (N, T), entropy (N, T) or None), T = longest response. Gradients flow through
    `logp` when grad is enabled (the caller decides with `torch.no_grad()`). Entropy is computed without grad.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    device = next(model.parameters()).device
    width = max((len(r) for r in responses), default=0) or 1
    out_logp, out_ent = [], []
    for start in range(0, len(prompts), micro_batch_size):
        p_chunk = prompts[start : start + micro_batch_size]
        r_chunk = responses[start : start + micro_batch_size]
        seqs = [list(p) + list(r) for p, r in zip(p_chunk, r_chunk)]
        seq_len = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), seq_len), pad_token_id, dtype=torch.long)
        attn = torch.zeros((len(seqs), seq_len), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            attn[i, : len(s)] = 1
        # Only positions that predict a response token need the LM head (a fifth of the model's compute here):
        # keep the last `keep` positions, which cover every row's response since rows are left-aligned.
        keep = seq_len - min(len(p) for p in p_chunk) + 1
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device), logits_to_keep=keep).logits.float()
        first = seq_len - keep  # the sequence position of logits[:, 0]
        logp_rows = torch.zeros(len(seqs), width, device=device)
        ent_rows = torch.zeros(len(seqs), width, device=device) if with_entropy else None
        for i, (p, r) in enumerate(zip(p_chunk, r_chunk)):
            if not len(r):
                continue
            # logits at position k predict token k+1: response token j sits at len(p)+j, predicted by len(p)+j-1
            lo, hi = len(p) - 1 - first, len(p) - 1 + len(r) - first
            step_logits = logits[i, lo:hi]
            logsm = torch.log_softmax(step_logits, dim=-1)
            target = torch.tensor(list(r), device=device).unsqueeze(-1)
            row = logsm.gather(-1, target).squeeze(-1)
            logp_rows = logp_rows.index_put((torch.tensor([i]), torch.arange(len(r))), row)
            if with_entropy:
                with torch.no_grad():
                    ent_rows[i, : len(r)] = -(logsm.exp() * logsm).sum(-1)
        out_logp.append(logp_rows)
        if with_entropy:
            out_ent.append(ent_rows)
    _, mask = pad_responses(responses, torch.float32)
    logp = torch.cat(out_logp, dim=0)
    entropy = torch.cat(out_ent, dim=0) if with_entropy else None
    return logp, mask.to(device), entropy
