"""Golden answers from a (scripted) larger model: verification, acceptance, the disk cache; golden checks."""

import json

import pytest
from transformers import AutoTokenizer

from gcpo.models import tiny_dir
from gcpo.rollout.types import Completion, PromptResult
from gcpo.tasks import Task, TaskItem, check_golden_answers, generate_golden_answers, render_prompts

pytestmark = pytest.mark.integration


class ScriptedEngine:
    """A RolloutEngine whose completions for each prompt are fixed in advance (a stand-in for a larger model)."""

    weight_version = 0

    def __init__(self, script):
        self.script = script  # prompt token ids (tuple) -> list of completion texts
        self.calls = []

    def generate(self, prompts, settings):
        self.calls.append((len(prompts), settings))
        return [PromptResult(list(p), [Completion([1], text, [0.0], "stop", 0)
                                       for text in self.script[tuple(p)][: settings.n]]) for p in prompts]

    def update_weights(self, state_dict, version):
        raise NotImplementedError

    def shutdown(self):
        pass


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_dir())


A = TaskItem("t:1", "Calculate 3 + 45.", "48", None, "basic_arithmetic")
B = TaskItem("t:2", "Calculate 2 * 3.", "6", None, "basic_arithmetic")
C = TaskItem("t:3", "Half of one?", "1/2", None, "math")
D = TaskItem("t:4", "Calculate 1 + 1.", "2", "1 + 1 = 2.\n<answer>2</answer>", "basic_arithmetic")
CANDIDATES = {
    A: ["<answer>47</answer>", "48", "3 + 45 = 48.\n<answer>48</answer>", "<answer>48</answer>"],
    B: ["<answer>5</answer>", "<answer>7</answer>", "six", "<answer>6</answer> more"],
    C: ["One half.\n<answer>0.5</answer>", "x", "x", "x"],
}


def script_for(tokenizer, candidates):
    items = list(candidates)
    return {tuple(p): candidates[item] for p, item in zip(render_prompts(tokenizer, items), items)}


def test_keeps_first_verified_well_formed_candidate_and_caches(tmp_path, tokenizer, pool):
    task = Task("arith", "train", [A, B, C, D], "basic_arithmetic")
    engine = ScriptedEngine(script_for(tokenizer, CANDIDATES))
    filled, report = generate_golden_answers(task, engine, tokenizer, pool, model_id="/models/big-1.7b",
                                             cache_dir=tmp_path, samples=4)
    assert [item.golden for item in filled.items] == [
        "3 + 45 = 48.\n<answer>48</answer>", None, "One half.\n<answer>0.5</answer>", D.golden]
    assert (report.requested, report.accepted, report.rejected, report.generated, report.from_cache) == (3, 2, 1, 3, 0)
    assert len(engine.calls) == 1 and engine.calls[0][0] == 3 and engine.calls[0][1].n == 4
    cached = json.loads(report.cache_path.read_text())
    assert (cached["task"], cached["model"]) == ("arith", "/models/big-1.7b")
    assert cached["entries"]["t:2"] == {"question": B.question, "golden": None}
    assert report.cache_path.parent == tmp_path / "golden" and not list(tmp_path.glob("golden/.*"))

    # A rerun asks the model nothing: every decision, rejections included, comes from the cache.
    idle = ScriptedEngine({})
    again, report2 = generate_golden_answers(task, idle, tokenizer, pool, model_id="/models/big-1.7b",
                                             cache_dir=tmp_path)
    assert again.items == filled.items and idle.calls == []
    assert (report2.from_cache, report2.generated, report2.accepted) == (3, 0, 2)


def test_cache_is_keyed_by_model_and_question(tmp_path, tokenizer, pool):
    task = Task("arith", "train", [A], "basic_arithmetic")
    generate_golden_answers(task, ScriptedEngine(script_for(tokenizer, {A: CANDIDATES[A]})), tokenizer, pool,
                            model_id="m1", cache_dir=tmp_path)
    other_model = ScriptedEngine(script_for(tokenizer, {A: ["<answer>48</answer>"]}))
    _, report = generate_golden_answers(task, other_model, tokenizer, pool, model_id="m2", cache_dir=tmp_path)
    assert report.generated == 1 and len(list((tmp_path / "golden").iterdir())) == 2
    edited = TaskItem(A.id, "Calculate 3 + 46.", "49", None, "basic_arithmetic")  # same id, new question
    engine = ScriptedEngine(script_for(tokenizer, {edited: ["<answer>49</answer>"]}))
    filled, report = generate_golden_answers(Task("arith", "train", [edited], "basic_arithmetic"), engine,
                                             tokenizer, pool, model_id="m1", cache_dir=tmp_path)
    assert report.generated == 1 and filled.items[0].golden == "<answer>49</answer>"


def test_check_golden_answers_reports_failures(pool):
    bad = TaskItem("t:9", "Calculate 2 + 2.", "4", "2 + 2 = 5.\n<answer>5</answer>", "basic_arithmetic")
    check = check_golden_answers(Task("arith", "train", [D, bad, A], "basic_arithmetic"), pool)
    assert (check.passed, check.failed_ids, check.missing) == (1, ["t:9"], 1)
