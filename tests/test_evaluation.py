"""Evaluation: metric arithmetic on a scripted engine, the table/CSV/metric names, and `gcpo eval` end to end
on the tiny model (transformers backend) with a real local MLflow store."""

import csv
import io
import json

import pytest
from transformers import AutoTokenizer

from gcpo.cli import main
from gcpo.eval_items import ITEM_COLUMNS, ItemResult, item_results, items_artifact
from gcpo.evaluation import EvalResult, TaskEval, evaluate
from gcpo.models import tiny_dir
from gcpo.rollout.types import Completion, PromptResult
from gcpo.tasks import Task, TaskItem, VerifierPool
from gcpo.tasks.pool import Verdict


def task_eval(**kw):
    base = dict(task="basic_arithmetic", items=50, k=4, pass_at_1=0.5, mean_at_k=0.25, format_rate=0.75,
                response_length=12.34, timeouts=1, seconds=3.21)
    return TaskEval(**{**base, **kw})


def test_metric_names_are_mlflow_safe():
    metrics = EvalResult([task_eval(), task_eval(task="gsm_symbolic", k=2)]).metrics()
    assert metrics["eval/basic_arithmetic/pass_at_1"] == 0.5
    assert metrics["eval/basic_arithmetic/mean_at_4"] == 0.25
    assert metrics["eval/gsm_symbolic/mean_at_2"] == 0.25
    assert metrics["eval/basic_arithmetic/format_rate"] == 0.75
    assert metrics["eval/basic_arithmetic/response_length"] == 12.34
    assert metrics["eval/basic_arithmetic/timeouts"] == 1
    assert all("@" not in name for name in metrics)


def test_table_and_csv():
    result = EvalResult([task_eval(), task_eval(task="gsm_symbolic")])
    lines = result.table().splitlines()
    assert lines[0].split("|")[1:4] == [" task             ", " items ", " pass@1 "]
    assert "mean@4" in lines[0] and len(lines) == 4 and "gsm_symbolic" in lines[3]
    rows = list(csv.DictReader(io.StringIO(result.csv())))
    assert rows[0]["pass@1"] == "0.5" and rows[1]["task"] == "gsm_symbolic"


def verdict(accuracy, fmt=1.0):
    return Verdict(accuracy=accuracy, format=fmt, reward=accuracy, answer=None)


def test_item_results_from_verdicts():
    """Greedy verdicts one per item, sampled k per item in item order: each item's correctness, mean@k, format."""
    items = [TaskItem(f"t/held_out/0/{i}", "q", "1", None, "math") for i in range(3)]
    greedy = [verdict(1.0), verdict(0.0, 0.0), verdict(0.0)]
    sampled = [verdict(a) for a in (1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1)]
    results = item_results("arith", items, greedy, sampled, k=4)
    assert results == (ItemResult("arith", 0, "t/held_out/0/0", 1.0, 0.5, 1.0),
                       ItemResult("arith", 1, "t/held_out/0/1", 0.0, 0.25, 0.0),
                       ItemResult("arith", 2, "t/held_out/0/2", 0.0, 0.5, 1.0))
    with pytest.raises(ValueError, match="3 items need 3 greedy and 12 sampled verdicts, got 3 and 11"):
        item_results("arith", items, greedy, sampled[:-1], k=4)
    table = json.loads(EvalResult([task_eval(item_results=results)]).items_json())
    assert table["columns"] == ITEM_COLUMNS == ["task", "index", "item_id", "correct", "mean_at_k", "format"]
    assert table["data"][1] == ["arith", 1, "t/held_out/0/1", 0.0, 0.25, 0.0]
    assert items_artifact(4) == "eval/items_step_00004.json"


class ScriptedEngine:
    """Greedy (temperature 0) and sampled completions fixed per prompt."""

    weight_version = 0

    def __init__(self, greedy, sampled):
        self.greedy, self.sampled = greedy, sampled

    def generate(self, prompts, settings):
        table = self.greedy if settings.temperature == 0 else self.sampled
        return [PromptResult(list(p), [Completion([7] * (len(t) // 4 + 1), t, [0.0], "stop", 0)
                                       for t in table[i][: settings.n]]) for i, p in enumerate(prompts)]

    def update_weights(self, state_dict, version):
        raise NotImplementedError

    def shutdown(self):
        pass


@pytest.mark.integration
def test_evaluate_computes_pass_at_1_mean_at_k_format_and_length():
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir())
    items = [TaskItem(f"t:{i}", f"Calculate {i} + 1.", str(i + 1), None, "basic_arithmetic") for i in range(3)]
    greedy = [["<answer>1</answer>"], ["2"], ["so <answer>0</answer>"]]  # correct, no format, wrong
    sampled = [["<answer>1</answer>", "<answer>1</answer>", "x", "<answer>9</answer>"],
               ["<answer>2</answer>", "y", "y", "y"], ["<answer>3</answer>"] * 4]
    with VerifierPool(workers=1) as pool:
        result = evaluate(ScriptedEngine(greedy, sampled), tokenizer, [Task("arith", "held_out", items, "math")],
                          eval_size=3, k=4, max_new_tokens=8, pool=pool)
    (t,) = result.tasks
    assert (t.items, t.pass_at_1, t.mean_at_k, t.format_rate) == (3, pytest.approx(1 / 3), pytest.approx(7 / 12),
                                                                  pytest.approx(2 / 3))
    assert t.response_length == pytest.approx(sum(len(g[0]) // 4 + 1 for g in greedy) / 3)
    assert [(r.index, r.item_id, r.correct, r.mean_at_k, r.format) for r in result.items()] == [
        (0, "t:0", 1.0, 0.5, 1.0), (1, "t:1", 0.0, 0.25, 0.0), (2, "t:2", 0.0, 1.0, 1.0)]
    # k = 0 (an intermediate evaluation with trainer.eval_intermediate=greedy): the greedy results alone
    with VerifierPool(workers=1) as pool:
        greedy_only = evaluate(ScriptedEngine(greedy, sampled), tokenizer, [Task("arith", "held_out", items, "math")],
                               eval_size=3, k=0, max_new_tokens=8, pool=pool)
    assert [(r.correct, r.mean_at_k, r.format) for r in greedy_only.items()] == [
        (1.0, None, 1.0), (0.0, None, 0.0), (0.0, None, 1.0)]
    assert sorted(greedy_only.metrics()) == sorted(k for k in result.metrics() if "mean_at" not in k)
    assert "mean@0" not in greedy_only.table()


@pytest.mark.integration
def test_gcpo_eval_end_to_end_on_the_tiny_model(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    code = main(["eval", "--tasks", "basic_arithmetic,gsm_symbolic", "--json", "out.json", "--items", "items.json",
                 "model.name=tiny",
                 "rollout.backend=transformers", "task.eval_size=3", "trainer.eval_k=2", "rollout.max_new_tokens=8",
                 "tracking.experiment=eval-test"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| basic_arithmetic |" in out and "| gsm_symbolic" in out and "mean@2" in out
    record = json.loads((tmp_path / "out.json").read_text())
    assert [r["task"] for r in record["rows"]] == ["basic_arithmetic", "gsm_symbolic"]
    assert record["rows"][0]["items"] == 3 and record["k"] == 2 and record["backend"] == "transformers"
    assert record["command"].startswith("gcpo eval --tasks basic_arithmetic,gsm_symbolic")
    items = json.loads((tmp_path / "items.json").read_text())
    assert [(row[0], row[1]) for row in items["data"]] == [(t, i) for t in ("basic_arithmetic", "gsm_symbolic")
                                                           for i in range(3)]
    assert sum(row[3] for row in items["data"][:3]) / 3 == pytest.approx(record["rows"][0]["pass@1"], abs=1e-4)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("eval-test").experiment_id])
    for task in ("basic_arithmetic", "gsm_symbolic"):
        for name in ("pass_at_1", "mean_at_2", "format_rate", "response_length"):
            assert f"eval/{task}/{name}" in run.data.metrics
    assert run.data.params["model.name"] == "tiny" and run.data.tags["gcpo.kind"] == "eval"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["eval.csv"]
    text = (tmp_path / client.download_artifacts(run.info.run_id, "eval.csv", str(tmp_path))).read_text()
    assert text.splitlines()[0].startswith("task,items,pass@1,mean@2")
