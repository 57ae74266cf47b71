"""Micro-batches: fixed row counts or a token budget, and their token slots and padding, by hand."""

from gcpo.training.microbatch import forward_slots, micro_batches, real_tokens, split_groups

PROMPTS = [[1] * 5] * 2 + [[2] * 3] * 2 + [[3] * 8] * 2  # three groups of G = 2
RESPONSES = [[9] * 4, [9] * 1, [9] * 2, [9] * 2, [9] * 6, [9] * 3]
GROUPS = [[0, 1], [2, 3], [4, 5]]


def test_token_slots_and_real_tokens_padded_and_shared():
    # padded: 6 rows x the longest prompt + response (8 + 6)
    assert forward_slots(PROMPTS, RESPONSES, shared_prefix=False) == 6 * 14
    assert real_tokens(PROMPTS, RESPONSES, shared_prefix=False) == 2 * 5 + 2 * 3 + 2 * 8 + 18
    # shared: 3 rows x (the longest prompt 8 + the longest group's responses 6 + 3)
    assert forward_slots(PROMPTS, RESPONSES, shared_prefix=True) == 3 * (8 + 9)
    assert real_tokens(PROMPTS, RESPONSES, shared_prefix=True) == 5 + 3 + 8 + 18
    assert forward_slots([], [], shared_prefix=False) == 0


def test_fixed_split_is_groups_per_micro():
    assert split_groups(GROUPS, PROMPTS, RESPONSES, groups_per_micro=2) == [[[0, 1], [2, 3]], [[4, 5]]]


def test_token_budget_packs_consecutive_groups_and_a_large_group_goes_alone():
    # group slots alone (padded): 2 x 9 = 18, 2 x 5 = 10, 2 x 14 = 28; groups 0+1 together: 4 x 9 = 36
    assert split_groups(GROUPS, PROMPTS, RESPONSES, groups_per_micro=1, max_tokens=36) == [[[0, 1], [2, 3]],
                                                                                          [[4, 5]]]
    assert split_groups(GROUPS, PROMPTS, RESPONSES, groups_per_micro=1, max_tokens=35) == [[[0, 1]], [[2, 3]],
                                                                                          [[4, 5]]]
    assert split_groups(GROUPS, PROMPTS, RESPONSES, groups_per_micro=1, max_tokens=1) == [[g] for g in GROUPS]
    # shared prefix: groups 0+1 as rows of 5+5 and 3+4 -> 2 x (5 + 5) = 20 slots; + group 2 -> 3 x (8 + 9) = 51
    assert split_groups(GROUPS, PROMPTS, RESPONSES, groups_per_micro=1, max_tokens=50,
                        shared_prefix=True) == [[[0, 1], [2, 3]], [[4, 5]]]


def test_micro_batches_pad_to_count_with_empty_ones():
    micros = micro_batches([[[0, 1]], [[2, 3]]], PROMPTS, RESPONSES, count=3)
    assert [m.index for m in micros] == [[0, 1], [2, 3], []]
    assert micros[1].prompts == PROMPTS[2:4] and micros[1].responses == RESPONSES[2:4]
