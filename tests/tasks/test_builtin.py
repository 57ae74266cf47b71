"""Built-in tasks, generated for real with reasoning-gym."""

import pytest

from gcpo.config import ConfigError, TaskConfig
from gcpo.tasks import BUILTIN_TASKS, extract_answer, is_well_formed, load_splits, load_task
from gcpo.tasks.builtin import golden_from_worked_solution
from gcpo.tasks.verifiers import score

NAMES = list(BUILTIN_TASKS)


@pytest.fixture(scope="module", params=NAMES)
def splits(request):
    return load_splits(TaskConfig(name=request.param, train_size=250, eval_size=100, seed=7))


def test_sizes_and_fields(splits):
    train, held_out = splits
    assert (len(train), len(held_out)) == (250, 100)
    assert (train.split, held_out.split) == ("train", "held_out")
    for item in train.items + held_out.items:
        assert item.question and item.answer and item.golden
        assert item.verifier == train.verifier == BUILTIN_TASKS[train.name].dataset
    assert len({item.id for item in train.items + held_out.items}) == 350


def test_splits_are_disjoint_and_free_of_repeats(splits):
    train, held_out = splits
    train_q = [item.question for item in train.items]
    held_q = [item.question for item in held_out.items]
    assert len(set(train_q)) == len(train_q) and len(set(held_q)) == len(held_q)
    assert not set(train_q) & set(held_q)


def test_every_golden_answer_passes_its_own_verifier(splits):
    """>= 200 items per task (350 here): the golden answer is well formed and the verifier accepts it."""
    for item in splits[0].items + splits[1].items:
        assert is_well_formed(item.golden), item
        assert score(item.verifier, extract_answer(item.golden), item.answer), item


def test_golden_format_is_reasoning_then_tagged_answer(splits):
    train = splits[0]
    golden = train.items[0].golden
    assert golden.endswith(f"\n<answer>{train.items[0].answer}</answer>")
    if train.name == "basic_arithmetic":
        assert all(item.golden.count(" = ") == 1 for item in train.items)  # `a op b = v.`
    if train.name == "gsm_symbolic":
        assert "####" not in golden and "<<" not in golden


def test_generation_is_deterministic_and_seeded():
    cfg = TaskConfig(name="basic_arithmetic", train_size=50, eval_size=20, seed=3)
    assert load_splits(cfg) == load_splits(cfg)
    other = load_task(TaskConfig(name="basic_arithmetic", train_size=50, eval_size=20, seed=4), "held_out")
    assert [i.question for i in other.items] != [i.question for i in load_splits(cfg)[1].items]


def test_held_out_is_a_prefix_independent_of_train_size():
    small = load_task(TaskConfig(name="multi_arithmetic", train_size=10, eval_size=20), "held_out")
    large = load_splits(TaskConfig(name="multi_arithmetic", train_size=300, eval_size=60))[1]
    assert large.items[:20] == small.items


def test_multi_arithmetic_has_three_or_four_terms():
    train, _ = load_splits(TaskConfig(name="multi_arithmetic", train_size=100, eval_size=10))
    assert {item.metadata["num_terms"] for item in train.items} == {3, 4}
    assert all(item.golden.count(" = ") >= 2 for item in train.items)  # step by step


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="task.name: unknown task 'nope'.*basic_arithmetic"):
        load_splits(TaskConfig(name="nope"))


def test_worked_solution_conversion():
    text = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = <<48+24=72>>72.\n#### 72"
    assert golden_from_worked_solution(text, "72") == (
        "Natalia sold 48/2 = 24 clips in May.\nAltogether she sold 48+24 = 72.\n<answer>72</answer>")
    with pytest.raises(ValueError, match="ends with '71'"):
        golden_from_worked_solution("x\n#### 71", "72")
    with pytest.raises(ValueError, match="####"):
        golden_from_worked_solution("no marker", "72")


def test_the_warm_start_split_is_disjoint_from_training_and_held_out_items():
    """`gcpo warmstart` teaches items neither the RL run nor its evaluation will see: disjoint by question from
    the training split and from the held-out split, also at a held-out size larger than the one configured."""
    from gcpo.tasks.builtin import WARMSTART_HELD_OUT_GUARD, builtin_warmstart

    warm = builtin_warmstart("basic_arithmetic", 1234, train_size=300, eval_size=50, count=200)
    train, _ = load_splits(TaskConfig(train_size=300, eval_size=50))
    big_held_out = load_task(TaskConfig(eval_size=WARMSTART_HELD_OUT_GUARD), "held_out")
    questions = {it.question for it in warm.items}
    assert len(questions) == 200 and warm.split == "warmstart"
    assert not questions & {it.question for it in train.items}
    assert not questions & {it.question for it in big_held_out.items}
    assert all(it.golden and score(it.verifier, extract_answer(it.golden), it.answer) for it in warm.items)
