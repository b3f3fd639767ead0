"""Every eval setting of fastapply.yaml reaches the evaluation with its value (no silent fallback).

The settings file sets each field of EvalSettings to a value other than its default; the evaluation that
eval_scores and `fastapply eval` both run (core.evaluate.prepare_evaluation, given the loaded settings as
eval_scores gives them) runs on it, and each field has a check of its effect. A field with no check here
fails `test_every_eval_setting_has_a_check`. Local models are a spy (`merge_with_model` records the draft
length it is given; no torch); the endpoint and the judge are the local OpenAI-compatible stand-in.
"""

import json
import math
import os
import random
from dataclasses import dataclass

import polars as pl
import pytest

from fastapply_pipeline.config import load_config
from fastapply_pipeline.core import inference
from fastapply_pipeline.core.evaluate import Evaluation, prepare_evaluation, speed_table
from fastapply_pipeline.core.inference import ModelMerge
from fastapply_pipeline.core.settings import EvalSettings, FastApplyConfig
from fastapply_pipeline_tests.helpers import base_settings, write_config
from fastapply_pipeline_tests.standin import StandIn
from fastapply_pipeline_tests.test_evaluate import ROWS

SEED = 3


def eval_section(url: str) -> dict:
    """eval: in fastapply.yaml, every field away from its default."""
    endpoint = {"base_url": url, "model": "served-model", "api_key_env": None}
    return {
        "candidates": ["served", "base", "identity", "applier"],
        "endpoints": {"served": endpoint},
        "judge": {**endpoint, "model": "judge-model", "batch_size": 2},
        "max_examples": 2,
        "extra_data": ["extra.jsonl"],
        "prompt_lookup": 7,
        "speed_examples": 1,
    }


@dataclass
class Observed:
    settings: EvalSettings
    evaluation: Evaluation
    loaded: list[str]  # the local models the loader was asked for
    results: pl.DataFrame
    judge_counts: dict[str, int] | None
    speed: list
    scoring_lookups: list  # the draft length of each model merge while scoring
    speed_calls: list  # (prompt_lookup, max_new_tokens) of each merge while timing
    served: list[dict]  # request bodies: the endpoint candidate's
    judged: list[dict]  # and the judge's


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> Observed:
    tmp_path = tmp_path_factory.mktemp("eval-settings")
    extra = [{**row, "triple_id": f"e{i}"} for i, row in enumerate(ROWS)]
    pl.DataFrame(extra).write_ndjson(tmp_path / "extra.jsonl")  # found relative to fastapply.yaml
    calls: list[tuple] = []

    def spy(model, tokenizer, original, snippet, *, prompt_lookup, max_new_tokens=None):
        calls.append((model, prompt_lookup, max_new_tokens))
        return ModelMerge(answer="no tags", merged=None, new_tokens=3, seconds=0.01)

    with StandIn() as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "merge_with_model", spy)
        data = base_settings(tmp_path, [{"path": str(tmp_path), "name": "here"}], seed=SEED)
        config = load_config(
            write_config(tmp_path / "fastapply.yaml", data | {"eval": eval_section(server.openai_url)})
        )
        loaded: list[str] = []

        def load_model(name: str):
            loaded.append(name)
            return f"model:{name}", "tokenizer"

        # as eval_scores calls it
        evaluation = prepare_evaluation(
            ROWS,
            config.eval,
            seed=config.seed,
            load_model=load_model,
            resolve=config.resolve,
            keys=os.environ.get,
        )
        results, judge_counts = evaluation.judge(evaluation.score())
        scoring = list(calls)
        speed = evaluation.speed()
        bodies = [json.loads(r.body) for r in server.calls("POST", r"/v1/chat/completions")]
    return Observed(
        settings=config.eval,
        evaluation=evaluation,
        loaded=loaded,
        results=results,
        judge_counts=judge_counts,
        speed=speed,
        scoring_lookups=[lookup for _, lookup, _ in scoring],
        speed_calls=[(lookup, budget) for _, lookup, budget in calls[len(scoring) :]],
        served=[b for b in bodies if "Grade these" not in b["messages"][-1]["content"]],
        judged=[b for b in bodies if "Grade these" in b["messages"][-1]["content"]],
    )


def check_candidates(seen: Observed) -> None:
    names = ["served", "base", "identity", "applier"]
    assert list(seen.evaluation.runners) == names
    assert seen.results["candidate"].unique(maintain_order=True).to_list() == names
    assert seen.loaded == ["base"]  # the one local candidate, loaded once


def check_endpoints(seen: Observed) -> None:
    assert len(seen.served) == len(seen.evaluation.rows) and {b["model"] for b in seen.served} == {
        "served-model"
    }
    served = seen.results.filter(pl.col("candidate") == "served")
    assert served["exact"].all()  # the stand-in serves the applier's merge


def check_judge(seen: Observed) -> None:
    asked = seen.judge_counts["asked"]
    assert asked == len(seen.evaluation.rows)  # identity's outputs: the only non-exact ones with a file
    assert len(seen.judged) == math.ceil(asked / 2) == seen.judge_counts["requests"]  # batch_size 2
    assert {b["model"] for b in seen.judged} == {"judge-model"}
    assert "judge_correct" in seen.results.columns


def check_max_examples(seen: Observed) -> None:
    rows = seen.evaluation.rows
    test = [r for r in rows if not r["triple_id"].startswith("extra.jsonl:")]
    assert test == random.Random(SEED).sample(ROWS, 2)  # the seeded sample, config.seed
    assert len(rows) == 2 + 2  # and as many of the extra set
    assert seen.results.height == 4 * len(rows)


def check_extra_data(seen: Observed) -> None:
    extra = [r["triple_id"] for r in seen.evaluation.rows if r["triple_id"].startswith("extra.jsonl:")]
    assert len(extra) == 2 and set(extra) <= {f"extra.jsonl:e{i}" for i in range(len(ROWS))}
    assert set(extra) <= set(seen.results["triple_id"])


def check_prompt_lookup(seen: Observed) -> None:
    assert seen.scoring_lookups == [7] * len(seen.evaluation.rows)  # base merges every row with drafts of 7
    timed = [lookup for lookup, budget in seen.speed_calls if budget is None]
    assert sorted(timed, key=str) == [7, None]  # and is timed against plain greedy with the same length


def check_speed_examples(seen: Observed) -> None:
    ((name, report),) = seen.speed
    assert name == "base" and report.examples == 1
    assert len(seen.speed_calls) == 1 + 2 * 1  # one warm-up, then each example plain and with drafts
    columns, rows = speed_table(seen.speed)
    assert rows[0][:2] == ["base", 1] and columns[-1] == "identical"


CHECKS = {
    "candidates": check_candidates,
    "endpoints": check_endpoints,
    "judge": check_judge,
    "max_examples": check_max_examples,
    "extra_data": check_extra_data,
    "prompt_lookup": check_prompt_lookup,
    "speed_examples": check_speed_examples,
}


def test_every_eval_setting_has_a_check():
    assert set(EvalSettings.model_fields) == set(CHECKS) == set(eval_section("http://127.0.0.1:1/v1"))


@pytest.mark.slow
@pytest.mark.parametrize("field", list(EvalSettings.model_fields))
def test_an_eval_setting_reaches_the_evaluation(observed, field):
    default = EvalSettings.model_fields[field].get_default(call_default_factory=True)
    assert getattr(observed.settings, field) != default, f"eval.{field} is left at its default here"
    CHECKS[field](observed)


def test_the_eval_command_takes_its_shared_defaults_from_the_settings():
    from fastapply_pipeline.cli import main

    options = {p.name: p for p in main.commands["eval"].params}
    assert options["prompt_lookup"].default == EvalSettings.model_fields["prompt_lookup"].default
    assert options["seed"].default == FastApplyConfig.model_fields["seed"].default
    assert {p.name: p for p in main.commands["apply"].params}["prompt_lookup"].default == (
        EvalSettings.model_fields["prompt_lookup"].default
    )
