"""Evaluation beyond local models: an OpenAI-compatible endpoint as a candidate and the LLM judge, both
through the real `openai` SDK against the local stand-in server; verdicts paired by id, not position."""

import json
import os

import polars as pl
import pytest

from fastapply_pipeline.config import EndpointSettings, EvalSettings, JudgeSettings
from fastapply_pipeline.core.endpoints import EndpointError
from fastapply_pipeline.core.evaluate import (
    applier_candidate,
    endpoint_candidate,
    evaluate,
    identity_candidate,
    judge,
    summary_table,
)
from fastapply_pipeline.core.judge import item_id, parse_verdicts
from fastapply_pipeline.core.metrics import aggregate
from fastapply_pipeline.core.plots import candidate_chart
from fastapply_pipeline_tests.helpers import python_module
from fastapply_pipeline_tests.standin import StandIn


def _row(i: int) -> dict:
    original = python_module(f"m{i}", 3)
    old_body = f"    return math.sqrt(abs(value)) * scale\n\ndef m{i}_step_2"
    new_body = f"    return math.sqrt(abs(value)) * scale + {i}\n\ndef m{i}_step_2"
    final = original.replace(old_body, new_body)
    snippet = (
        "# ... existing code ...\n"
        f'    """Scale a value by step 1."""\n'
        f"    return math.sqrt(abs(value)) * scale + {i}\n\n"
        f"def m{i}_step_2(value: float, scale: float = 3.0) -> float:\n"
        "# ... existing code ...\n"
    )
    return {
        "triple_id": f"t{i}",
        "original_code": original,
        "update_snippet": snippet,
        "final_code": final,
        "language": "python",
        "generator": "structural" if i % 2 else "anthropic",
        "edit_kind": "modify_function",
    }


ROWS = [_row(i) for i in range(1, 6)]


def _endpoint(url: str, **extra) -> EndpointSettings:
    return EndpointSettings(base_url=url, model="fast-apply-7b", api_key_env=None, concurrency=3, **extra)


def test_the_rows_are_real_edits_the_applier_merges():
    merges = applier_candidate(ROWS, lambda: None)
    assert all(m.output == r["final_code"] != r["original_code"] for m, r in zip(merges, ROWS, strict=True))


@pytest.mark.slow
def test_an_openai_compatible_endpoint_is_a_candidate():
    with StandIn() as server:
        results = evaluate(
            {"served": endpoint_candidate(_endpoint(server.openai_url), "served", keys=os.environ.get)}, ROWS
        )
        bodies = [json.loads(r.body) for r in server.calls("POST", r"/v1/chat/completions")]
    assert len(bodies) == len(ROWS)
    assert all(b["model"] == "fast-apply-7b" and b["temperature"] == 0 for b in bodies)
    assert bodies[0]["messages"][0]["content"].startswith("You are a coding assistant that helps merge")
    assert results["exact"].all() and results["triple_id"].to_list() == [r["triple_id"] for r in ROWS]
    assert (results["output_tokens"] > 0).all() and (results["latency_seconds"] > 0).all()
    assert (results["output_tokens_per_second"] > 0).all() and results["error"].is_null().all()


@pytest.mark.slow
def test_truncated_and_tagless_endpoint_answers_score_as_missing_tags():
    with StandIn(faults={"truncated": 0.5, "malformed": 0.5}) as server:
        results = evaluate(
            {"served": endpoint_candidate(_endpoint(server.openai_url), "served", keys=os.environ.get)}, ROWS
        )
        faults = server.answer_faults()
    assert sum(faults.values()) == len(ROWS) and set(faults) <= {"truncated", "malformed"}
    assert results["missing_tags"].all() and results["output"].is_null().all()
    assert sorted(results["error"].to_list()) == sorted(
        {"truncated": "truncated", "malformed": "missing_tags"}[f] for f in faults.elements()
    )
    assert results.filter(pl.col("error") == "missing_tags")["exact"].sum() == 0


@pytest.mark.slow
def test_an_unreachable_endpoint_or_a_missing_key_is_a_clear_error(monkeypatch):
    with StandIn() as server:
        url = server.openai_url
    with pytest.raises(
        EndpointError, match=r"every one of the 5 requests to http://127\.0\.0\.1:\d+/v1 failed"
    ):
        evaluate(
            {
                "served": endpoint_candidate(
                    _endpoint(url, max_retries=0, timeout_seconds=2), "served", keys=os.environ.get
                )
            },
            ROWS,
        )
    monkeypatch.delenv("FIREWORKS_API_KEY", raising=False)
    settings = _endpoint(url).model_copy(update={"api_key_env": "FIREWORKS_API_KEY"})
    with pytest.raises(EndpointError, match=r"eval\.endpoints\.served: FIREWORKS_API_KEY is not set"):
        evaluate({"served": endpoint_candidate(settings, "served", keys=os.environ.get)}, ROWS)


def _mixed_outputs() -> tuple[pl.DataFrame, dict[str, str]]:
    """Identity (never exact), the applier (exact), and a candidate with whitespace-only or real faults."""

    def sloppy(rows, tick):
        from fastapply_pipeline.core.evaluate import Merge

        outputs = []
        for i, row in enumerate(rows):
            final = row["final_code"]
            if i == 0:
                outputs.append(Merge(final.replace("    return", "    return ", 1)))  # whitespace only
            elif i == 1:
                outputs.append(Merge(final.replace("import math\n", "")))  # dropped code
            elif i == 2:
                outputs.append(Merge(None, True))  # no tags
            else:
                outputs.append(Merge(final + "print('unrequested')\n"))  # an extra change
            tick()
        return outputs

    results = evaluate({"identity": identity_candidate, "applier": applier_candidate, "sloppy": sloppy}, ROWS)
    expected = {}
    for r in results.iter_rows(named=True):
        key = (r["candidate"], r["triple_id"])
        if r["candidate"] == "applier" or key == ("sloppy", "t1"):
            expected[key] = True
        else:
            expected[key] = False
    return results, expected


@pytest.mark.slow
def test_the_judge_sees_the_output_and_its_verdicts_are_paired_by_id():
    results, expected = _mixed_outputs()
    with StandIn() as server:
        settings = JudgeSettings(base_url=server.openai_url, model="judge-1", api_key_env=None, batch_size=3)
        judged, counts = judge(results, ROWS, settings, keys=os.environ.get, seed=7)
        prompts = [
            json.loads(r.body)["messages"][1]["content"]
            for r in server.calls("POST", r"/v1/chat/completions")
        ]
    # Asked: identity's 5 outputs and sloppy's 4 non-exact outputs with a file (exact ones and no-file ones
    # are settled without the judge), 3 to a request; each reply lists verdicts in reverse order plus one
    # verdict for an id it was never shown.
    asked = 5 + 4
    assert counts["asked"] == asked and counts["requests"] == len(prompts) == 3
    assert counts["unknown_id"] == 3 and counts.get("no_verdict", 0) == 0
    got = {(r["candidate"], r["triple_id"]): r["judge_correct"] for r in judged.iter_rows(named=True)}
    assert got == expected
    whitespace = judged.filter((pl.col("candidate") == "sloppy") & (pl.col("triple_id") == "t1")).row(
        0, named=True
    )
    assert whitespace["exact"] is False and whitespace["judge_reason"] == "same code up to whitespace"
    # The judge was shown each candidate OUTPUT (not only the reference), under an opaque id.
    sloppy_t4 = results.filter((pl.col("candidate") == "sloppy") & (pl.col("triple_id") == "t4"))["output"][0]
    shown = "\n".join(prompts)
    assert f"<output>\n{sloppy_t4}\n</output>" in shown and item_id("sloppy", "t4") in shown
    assert "sloppy" not in shown and "identity" not in shown
    summary = aggregate(judged, ["candidate"])
    assert summary.filter(pl.col("candidate") == "sloppy")["judge_correct"][0] == pytest.approx(0.2)


@pytest.mark.slow
def test_a_failed_judge_request_leaves_no_verdict_rather_than_a_wrong_one():
    results, _ = _mixed_outputs()
    with StandIn(faults={"malformed": 1.0}) as server:
        settings = JudgeSettings(base_url=server.openai_url, model="judge-1", api_key_env=None, batch_size=4)
        judged, counts = judge(results, ROWS, settings, keys=os.environ.get)
    assert counts["unparseable_reply"] == counts["requests"] == 3 and counts["no_verdict"] == 9
    undecided = judged.filter(pl.col("judge_correct").is_null())
    assert undecided.height == 9 and set(undecided["judge_reason"]) == {"the judge gave no verdict"}


def test_parse_verdicts_pairs_by_id_and_counts_what_is_wrong():
    reply = (
        '[{"id": "b", "verdict": "incorrect", "reason": "dropped"}, {"id": "a", "verdict": "Correct"},'
        ' {"id": "a", "verdict": "incorrect"}, {"id": "zz", "verdict": "correct"}, {"id": "c", "verdict": "maybe"}, 7]'
    )
    verdicts, problems = parse_verdicts(reply, ["a", "b", "c"])
    assert verdicts["a"].correct is True and verdicts["b"].correct is False and "c" not in verdicts
    assert problems == {"repeated_id": 1, "unknown_id": 1, "unknown_verdict": 1, "malformed_entry": 1}
    assert parse_verdicts("I think they are all fine.", ["a"]) == ({}, {"unparseable_reply": 1})
    # Brackets in the prose around the array do not hide it.
    prose = 'Per the rubric [1], verdicts:\n[{"id": "a", "verdict": "correct"}]\nSee [2] for details.'
    assert parse_verdicts(prose, ["a"])[0]["a"].correct is True


@pytest.mark.slow
def test_summary_table_and_chart():
    results, _ = _mixed_outputs()
    columns, rows = summary_table(results)
    assert columns[:3] == ["candidate", "examples", "exact"] and columns[-2:] == ["latency_s", "tokens_per_s"]
    assert [r[0] for r in rows] == ["identity", "applier", "sloppy"]
    assert rows[1][2] == 1.0 and rows[0][2] == 0.0 and rows[0][-1] == "-"  # no tokens: no tok/s
    png = candidate_chart(aggregate(results, ["candidate"]))
    assert png.startswith(b"\x89PNG") and len(png) > 2000


def test_eval_settings_name_unknown_candidates():
    with pytest.raises(ValueError, match=r"eval\.candidates has 'served': not one of adapter, base"):
        EvalSettings(candidates=["applier", "served"])
    settings = EvalSettings(
        candidates=["applier", "served"],
        endpoints={"served": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}},
    )
    assert settings.endpoints["served"].api_key_env is None  # a key goes only where it is named
    with pytest.raises(ValueError, match=r"OPENAI_API_KEY would be sent in the clear to http://10\.0\.0\.5"):
        EndpointSettings(base_url="http://10.0.0.5:8000/v1", model="m", api_key_env="OPENAI_API_KEY")
    assert EndpointSettings(base_url="http://127.0.0.1:8000/v1", model="m", api_key_env="OPENAI_API_KEY")
    with pytest.raises(ValueError, match="reuse built-in candidate names"):
        EvalSettings(endpoints={"applier": {"base_url": "http://127.0.0.1:8000/v1", "model": "m"}})


def test_many_outputless_rows_before_the_first_output_still_make_a_table():
    """An untrained model's missing outputs first (more than polars infers types from), then real ones."""
    from fastapply_pipeline.core.evaluate import Merge

    rows = [{**row, "triple_id": f"{row['triple_id']}-{i}"} for i in range(25) for row in ROWS]

    def silent(batch, tick):
        return [Merge(None, True) for _ in batch]

    results = evaluate({"adapter": silent, "base": silent, "applier": applier_candidate}, rows)
    assert results.height == 375 and results.filter(pl.col("candidate") == "applier")["exact"].all()
    assert results["output"].null_count() == 250 and results.schema["parses"] == pl.Boolean


@pytest.mark.slow
def test_loss_chart_is_a_png_and_refuses_no_data():
    from fastapply_pipeline.core.plots import loss_chart

    assert loss_chart([(1, 0.5), (2, 0.3), (3, 0.2)]).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="empty `loss_curve`"):
        loss_chart([])


@pytest.mark.slow
def test_an_endpoint_key_comes_from_the_callers_key_source_not_the_environment(monkeypatch):
    monkeypatch.delenv("FASTAPPLY_TEST_KEY", raising=False)
    asked = []

    def keys(name):
        asked.append(name)
        return "sk-from-the-secrets-resource"

    with StandIn() as server:
        settings = _endpoint(server.openai_url).model_copy(update={"api_key_env": "FASTAPPLY_TEST_KEY"})
        evaluate({"served": endpoint_candidate(settings, "served", keys=keys)}, ROWS[:1])
        sent = [
            {k.lower(): v for k, v in r.headers.items()}.get("authorization")
            for r in server.calls("POST", r"/v1/chat/completions")
        ]
    assert asked == ["FASTAPPLY_TEST_KEY"]
    assert sent == ["Bearer sk-from-the-secrets-resource"]
    # No key from the source: one error naming the variable, before any request.
    with pytest.raises(EndpointError, match="FASTAPPLY_TEST_KEY is not set"):
        evaluate({"served": endpoint_candidate(settings, "served", keys=lambda name: None)}, ROWS[:1])


def test_the_secrets_resource_reads_a_variable_only_when_asked(monkeypatch):
    from fastapply_pipeline.defs.resources import SecretsResource

    secrets = SecretsResource()
    monkeypatch.setenv("FASTAPPLY_TEST_KEY", "  sk-test  ")
    assert secrets.key("FASTAPPLY_TEST_KEY") == "sk-test"
    monkeypatch.setenv("FASTAPPLY_TEST_KEY", " ")
    assert secrets.key("FASTAPPLY_TEST_KEY") is None
    monkeypatch.delenv("FASTAPPLY_TEST_KEY")
    assert secrets.key("FASTAPPLY_TEST_KEY") is None
    assert "sk-test" not in secrets.model_dump_json()  # nothing of a value is kept in its config
