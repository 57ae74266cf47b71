"""Shared-prompt log-probs: the G responses of a group attend to one copy of their prompt (issue #19).

`gcpo.logprobs.response_logprobs` runs every (prompt, response) row on its own, so a group of G responses to one
prompt recomputes the prompt G times (forward and backward). `shared_prefix_logprobs` packs a group as
`[prompt, r1, r2, ..., rG]` instead and gives the model:

- a 4-D attention mask in which every prompt token sees the prompt causally, and every token of response j sees
  the whole prompt plus response j causally (never another response, never another group);
- position ids 0..P-1 on the prompt, and P, P+1, ... *restarting for every response*, so each response sits at
  exactly the positions it has in its own padded row;
- the log-prob of response j's first token read off the prompt's last position (shared by the group: its
  log-softmax is computed once), and of its token t > 0 off response j's token t-1.

Attention is permutation-equivariant given the mask and the position ids, so this is the same function as the
padded forward; it differs only by floating-point summation order (tests/test_packing.py holds it to 5e-5 max /
1e-6 mean per-token log-prob difference and 1e-4 relative gradient difference, per parameter tensor too).

Choices, stated once:

- **Layout of several groups in one forward: one group per row (default).** Rows are padded to the longest;
  the alternative, `padding_free=True`, concatenates all the forward's groups into ONE row with a
  block-diagonal mask (position ids restart per group). Without a variable-length attention kernel the 4-D mask
  is dense, so padding-free pays attention over S^2 (S = sum of lengths) instead of B x L^2 (B rows of padded
  length L), and its mask takes S^2 memory (a float eager mask of 20k tokens is 1.6 GB). Measured on
  SmolLM2-135M fp32, 2 shared CPU cores, 8 groups x G=4, 66-74-token prompts, 20-64-token responses (2192 token
  slots as rows vs 1931 padding-free): forward only, best of 4, 2.6-2.7 s as rows vs 3.4-8.1 s padding-free;
  forward + backward (benchmarks/shared_prefix.py, one noisy run) best 7.1 s vs 9.7 s, medians 12.0 vs 11.2 s,
  against 27.6 s best / 40.0 s median for the padded forward. By FLOPs rows is ~20% cheaper here (attention
  ~41 vs ~258 GFLOP forward, linear layers ~465 vs ~410). Padding-free is kept as an option: it wins when
  groups are short and of very different lengths (little attention, much padding).
- **Rows are aligned on the prompt's last token**: the prompt is right-aligned to a common column K (left
  padding) and the responses follow it (right padding). Every position that predicts a response token then lies
  at column >= K in every row, so `logits_to_keep = L - K` (an int slice, as `response_logprobs` uses) keeps no
  prompt position; with a single row (padding-free, or one group) `logits_to_keep` is the exact tensor of the
  predicting columns. Only predicting positions get a log-softmax (each once), not the kept padding.
- **Padding tokens attend only to themselves** (and nothing attends to them), so no query row of the mask is
  fully masked: a fully masked row is NaN in some SDPA kernels, and a NaN activation poisons the weight gradient
  even where its loss weight is 0. Their position id is 0 and their token is `pad_token_id`.
- **Mask form follows the attention implementation** (`model.config._attn_implementation`), as transformers
  itself builds them: `sdpa` gets a boolean mask (True = attend; dtype-agnostic, so it also works under
  autocast), `eager` gets an additive float mask (0 = attend, `finfo(dtype).min` = masked) in the parameters'
  dtype, because eager attention *adds* the mask to the scores (a boolean mask would silently be added as 0/1).
  transformers (5.x `masking_utils._preprocess_mask_arguments`) passes any 4-D mask through untouched, and then
  does not infer packed sequences from the position ids. Other implementations (flash_attention_2, flex,
  kernels) are refused: they do not take a dense 4-D mask.
- **`max_tokens`** bounds the token slots of one forward: rows x padded row length with one group per row, the
  total length with `padding_free`. Whole groups are packed greedily in the given order (no sorting, so the
  output order is the input order without a permutation); a group alone larger than the budget gets a forward
  to itself. Splitting changes only which groups share a forward, so results agree to float rounding.
- A group whose responses are all empty still runs (its prompt only): the number of forwards depends only on
  the groups' sizes and the budget, never on their contents, which keeps ZeRO-3 collectives matched when the
  caller keeps the forward count equal across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gcpo.logprobs import pad_responses

Group = tuple[Sequence[int], Sequence[Sequence[int]]]  # (prompt ids, [response ids, ...])


def group_consecutive(prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]) -> list[Group]:
    """Rows in `response_logprobs` form -> groups: consecutive rows with equal prompts form one group.

    Order is kept, so the rows of `shared_prefix_logprobs(model, group_consecutive(p, r), ...)` are the rows of
    `response_logprobs(model, p, r, ...)`. Equal prompts that are not adjacent become separate groups (correct,
    only less shared).
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    groups: list[tuple[list[int], list[list[int]]]] = []
    for p, r in zip(prompts, responses):
        p = list(p)
        if groups and groups[-1][0] == p:
            groups[-1][1].append(list(r))
        else:
            groups.append((p, [list(r)]))
    return groups


def forward_tokens(groups: Sequence[Group], padding_free: bool = False) -> int:
    """Token slots of one forward over `groups`: rows x padded length (one group per row), or the total length
    (`padding_free`). This is what `max_tokens` bounds."""
    if not groups:
        return 0
    if padding_free:
        return sum(len(p) + sum(len(r) for r in rs) for p, rs in groups)
    width = max(len(p) for p, _ in groups) + max(sum(len(r) for r in rs) for _, rs in groups)
    return len(groups) * width


def plan_forwards(groups: Sequence[Group], max_tokens: int | None, padding_free: bool = False) -> list[range]:
    """Consecutive runs of group indices, one per forward, each within `max_tokens` (a lone larger group
    gets its own forward). `max_tokens=None`: everything in one forward."""
    if max_tokens is None:
        return [range(0, len(groups))] if groups else []
    plans, start = [], 0
    for end in range(1, len(groups) + 1):
        if end - 1 > start and forward_tokens(groups[start:end], padding_free) > max_tokens:
            plans.append(range(start, end - 1))
            start = end - 1
    if start < len(groups):
        plans.append(range(start, len(groups)))
    return plans


@dataclass
class Packed:
    """One forward's inputs plus where each response token's log-prob comes from.

    `allowed[b, q, k]`: query column q of row b may attend key column k. `keep` is `logits_to_keep`. For each
    response token (in response order, then token order): `src` indexes the kept logits flattened to
    (rows * kept, vocab), `target` is the token, and (`response`, `step`) its place in the output (`response`
    counts from 0 within this forward).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    allowed: torch.Tensor
    keep: int | torch.Tensor
    src: torch.Tensor
    target: torch.Tensor
    response: torch.Tensor
    step: torch.Tensor


def _rows(groups: Sequence[Group], pad_token_id: int, padding_free: bool) -> tuple[list[dict], list[tuple]]:
    """The rows' token ids, positions, group ids and response ids (`ids`, `pos`, `gid`, `rid`; padded to one
    width), and per response its (row, predicting columns, targets)."""
    rows: list[dict[str, list[int]]] = []
    preds: list[tuple[int, list[int], list[int]]] = []  # (row, predicting columns, targets) per response
    corner = max(len(p) for p, _ in groups) - 1  # the aligned prompt-last column of the row layout

    def append(row: dict, b: int, gid: int, prompt: Sequence[int], responses: Sequence[Sequence[int]]) -> None:
        def put(tokens, first_pos, rid):
            row["ids"] += list(tokens)
            row["pos"] += range(first_pos, first_pos + len(tokens))
            row["gid"] += [gid] * len(tokens)
            row["rid"] += [rid] * len(tokens)

        put(prompt, 0, 0)
        last = len(row["ids"]) - 1
        for j, r in enumerate(responses):
            start = len(row["ids"])
            put(r, len(prompt), j + 1)
            preds.append((b, ([last] + list(range(start, start + len(r) - 1))) if len(r) else [], list(r)))

    def new_row(left_pad: int) -> dict:
        return {"ids": [pad_token_id] * left_pad, "pos": [0] * left_pad, "gid": [-1] * left_pad,
                "rid": [0] * left_pad}

    if padding_free:
        rows.append(new_row(0))
        for g, (p, rs) in enumerate(groups):
            append(rows[0], 0, g, p, rs)
    else:
        for b, (p, rs) in enumerate(groups):
            rows.append(new_row(corner - (len(p) - 1)))
            append(rows[-1], b, 0, p, rs)

    width = max(len(r["ids"]) for r in rows)
    for r in rows:
        extra = width - len(r["ids"])
        r["ids"] += [pad_token_id] * extra
        r["pos"] += [0] * extra
        r["gid"] += [-1] * extra
        r["rid"] += [0] * extra
    return rows, preds


def _allowed(gid: torch.Tensor, rid: torch.Tensor) -> torch.Tensor:
    """Which column each column attends to: earlier columns of its own group, its prompt and its own response
    (and itself, so a padding column's softmax is defined)."""
    width = gid.shape[1]
    col = torch.arange(width)
    return (
        (gid[:, :, None] == gid[:, None, :]) & (gid[:, :, None] >= 0)
        & (col[None, None, :] <= col[None, :, None])
        & ((rid[:, None, :] == 0) | (rid[:, None, :] == rid[:, :, None]))
    ) | torch.eye(width, dtype=torch.bool)[None]


def pack(groups: Sequence[Group], *, pad_token_id: int, padding_free: bool = False) -> Packed:
    """Lay `groups` out for one forward (see the module docstring for the layout)."""
    if any(len(p) == 0 for p, _ in groups):
        raise ValueError("every group needs a non-empty prompt (its last token predicts the first response token)")
    rows, preds = _rows(groups, pad_token_id, padding_free)
    ids, pos, gid, rid = (torch.tensor([r[k] for r in rows], dtype=torch.long) for k in ("ids", "pos", "gid", "rid"))
    width = ids.shape[1]
    allowed = _allowed(gid, rid)
    needed = sorted({c for _, cols, _ in preds for c in cols}) or [width - 1]
    if len(rows) == 1:  # exact: only the predicting columns reach the LM head
        keep: int | torch.Tensor = torch.tensor(needed, dtype=torch.long)
        index = {c: i for i, c in enumerate(needed)}
        flat = lambda b, c: index[c]  # noqa: E731
    else:  # rows share the slice from the first predicting column (the aligned prompt-last column)
        first = needed[0]
        keep = width - first
        flat = lambda b, c: b * keep + c - first  # noqa: E731
    src, target, response, step = [], [], [], []
    for n, (b, cols, tokens) in enumerate(preds):
        src += [flat(b, c) for c in cols]
        target += tokens
        response += [n] * len(tokens)
        step += range(len(tokens))
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return Packed(ids, pos, allowed, keep, as_long(src), as_long(target), as_long(response), as_long(step))


def _hf_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a wrapper (DeepSpeed engine, DDP: `.module`)."""
    while isinstance(getattr(model, "_modules", {}).get("module"), torch.nn.Module):
        model = model._modules["module"]
    return model


def mask_for(model: torch.nn.Module, allowed: torch.Tensor) -> torch.Tensor:
    """The (B, 1, L, L) mask in the form `model`'s attention implementation takes (module docstring)."""
    inner = _hf_model(model)
    impl = getattr(inner.config, "_attn_implementation", None) or "eager"
    if impl == "sdpa":
        return allowed[:, None]
    if impl == "eager":
        dtype = next(inner.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else torch.float32
        zero = torch.zeros((), dtype=dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]
    raise ValueError(f"shared-prefix log-probs need a dense 4-D attention mask: attn_implementation 'sdpa' or "
                     f"'eager', not {impl!r}")


def shared_prefix_logprobs(
    model: torch.nn.Module,
    groups: Sequence[Group],
    *,
    pad_token_id: int,
    with_entropy: bool = False,
    max_tokens: int | None = None,
    padding_free: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """log pi(response_t | prompt, response_<t) for every response of every group, each prompt run once.

    `groups`: (prompt ids, [response ids, ...]) per group; prompts must be non-empty, responses may be empty.
    Returns (logp (N, T), mask (N, T), entropy (N, T) or None) exactly as `gcpo.logprobs.response_logprobs`
    does for the flattened rows (N = total responses in group order, T = longest response, at least 1): a
    drop-in replacement (`group_consecutive` turns its flat rows into groups). Gradients flow through `logp` when
    grad is enabled; entropy is computed without grad. `max_tokens`: see `plan_forwards`; `padding_free`: all
    of a forward's groups in one row (module docstring: the default, one group per row, measured faster).
    """
    device = next(model.parameters()).device
    responses = [r for _, rs in groups for r in rs]
    _, mask = pad_responses(responses, torch.float32)
    width = mask.shape[1]
    values, ent_values, rows, steps = [], [], [], []
    offset = 0
    for plan in plan_forwards(groups, max_tokens, padding_free):
        chunk = [groups[g] for g in plan]
        packed = pack(chunk, pad_token_id=pad_token_id, padding_free=padding_free)
        keep = packed.keep.to(device) if isinstance(packed.keep, torch.Tensor) else packed.keep
        logits = model(input_ids=packed.input_ids.to(device), position_ids=packed.position_ids.to(device),
                       attention_mask=mask_for(model, packed.allowed.to(device)), logits_to_keep=keep,
                       use_cache=False).logits
        # Each predicting position once (the prompt-last one serves the whole group), then gather the targets.
        positions, inverse = torch.unique(packed.src.to(device), return_inverse=True)
        logsm = torch.log_softmax(logits.reshape(-1, logits.shape[-1])[positions].float(), dim=-1)
        values.append(logsm[inverse, packed.target.to(device)])
        if with_entropy:
            with torch.no_grad():
                ent_values.append((-(logsm.exp() * logsm).sum(-1))[inverse])
        rows.append(packed.response + offset)
        steps.append(packed.step)
        offset += sum(len(groups[g][1]) for g in plan)
    logp = torch.zeros(len(responses), width, device=device)
    entropy = torch.zeros(len(responses), width, device=device) if with_entropy else None
    if values:
        index = (torch.cat(rows).to(device), torch.cat(steps).to(device))
        logp = logp.index_put(index, torch.cat(values))
        if with_entropy:
            entropy[index] = torch.cat(ent_values)
    return logp, mask.to(device), entropy
