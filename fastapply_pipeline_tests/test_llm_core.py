"""The pure parts of the LLM generators: prompts, answer parsing, planning, judging, rate limits, cost."""

import asyncio
from collections import Counter

import pytest

from fastapply_pipeline.config import ConfigError, parse_config
from fastapply_pipeline.core.llm.cache import ResponseCache, request_key
from fastapply_pipeline.core.llm.clients import Completion, estimate_cost
from fastapply_pipeline.core.llm.prompts import EDIT_GOALS, Generation, generation_prompt, parse_generation
from fastapply_pipeline.core.llm.ratelimit import RateLimiter
from fastapply_pipeline.core.synth.llm import (
    assign_provider,
    edit_goals,
    hunk_count,
    judge,
    llm_rows,
    plan_jobs,
)
from fastapply_pipeline.core.synth.structural import DEFAULT_EDIT_KINDS
from fastapply_pipeline_tests.helpers import FAKE_AWS, TSX_COMPONENT, python_module, ts_module

ORIGINAL = "import os\n\n\ndef load(path):\n    return open(path).read()\n\n\ndef save(path, text):\n    open(path, 'w').write(text)\n"


def llm_settings(tmp_path, generators=("anthropic", "openai"), **llm):
    config = parse_config(
        {"sources": [{"path": "."}], "triples": {"generators": list(generators), "llm": llm}},
        base_dir=tmp_path,
    )
    return config


# -- prompts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "marker"),
    [
        ("python", "# ... existing code ..."),
        ("typescript", "// ... existing code ..."),
        ("tsx", "// ... existing code ..."),
    ],
)
def test_prompt_carries_the_languages_marker_the_goal_and_the_rules(language, marker):
    prompt = generation_prompt(
        path="src/a", language=language, original=ORIGINAL, edit_kind="add_feature", mode="snippet_and_final"
    )
    assert f"\n{marker}" in prompt
    assert EDIT_GOALS["add_feature"] in prompt
    assert "<original-code>\n" + ORIGINAL.rstrip("\n") + "\n</original-code>" in prompt
    assert "exact line of the file after the change" in prompt  # snippet lines are a subset of final
    assert "at least one unchanged line directly above and below" in prompt  # anchors
    assert "<final-code>" in prompt and "synthetic" not in prompt.lower()
    assert ("{/* ... existing code ... */}" in prompt) == (language == "tsx")


def test_snippet_only_prompt_does_not_ask_for_the_final():
    prompt = generation_prompt(
        path="a.py", language="python", original=ORIGINAL, edit_kind="small_refactor", mode="snippet_only"
    )
    assert "<update-snippet>" in prompt and "<final-code>" not in prompt


def test_prompt_rejects_unknown_goals_and_modes():
    with pytest.raises(ValueError, match="unknown edit kind"):
        generation_prompt(path="a", language="python", original="x", edit_kind="rewrite", mode="snippet_only")
    with pytest.raises(ValueError, match="unknown mode"):
        generation_prompt(path="a", language="python", original="x", edit_kind="add_feature", mode="final")


def test_every_edit_kind_of_the_settings_has_a_goal():
    assert set(EDIT_GOALS) == set(DEFAULT_EDIT_KINDS)


# -- parsing answers ---------------------------------------------------------------------------------


def test_parse_takes_the_tagged_parts_and_follows_the_originals_final_newline():
    text = "<update-snippet>\n# ... existing code ...\nx = 1\n</update-snippet>\n<final-code>\nx = 1\n</final-code>"
    parsed = parse_generation(text, mode="snippet_and_final", original="y = 0\n")
    assert parsed == Generation("# ... existing code ...\nx = 1\n", "x = 1\n")
    parsed = parse_generation(text, mode="snippet_and_final", original="y = 0")
    assert parsed.final == "x = 1"


def test_parse_strips_one_code_fence_inside_a_tag():
    text = "<update-snippet>\n```python\nx = 1\n```\n</update-snippet>"
    assert parse_generation(text, mode="snippet_only", original="").snippet == "x = 1\n"


@pytest.mark.parametrize(
    ("text", "mode", "reason"),
    [
        ("Sure, here you go: x = 1", "snippet_only", "malformed_missing_update_snippet"),
        ("<update-snippet>\n\n</update-snippet>", "snippet_only", "malformed_empty_update_snippet"),
        ("<update-snippet>\nx\n</update-snippet>", "snippet_and_final", "malformed_missing_final_code"),
        (
            "<update-snippet>\nx\n</update-snippet><update-snippet>\ny\n</update-snippet>",
            "snippet_only",
            "malformed_missing_update_snippet",
        ),
        (
            "<update-snippet>\nx\n</update-snippet>\n<final-code>\nx = 1",
            "snippet_and_final",
            "malformed_missing_final_code",
        ),
    ],
)
def test_malformed_answers_name_what_is_missing(text, mode, reason):
    assert parse_generation(text, mode=mode, original="") == reason


# -- planning ----------------------------------------------------------------------------------------


def files(n):
    return [("repo", "c0", f"src/m{i}.py", "python", python_module(f"m{i}", 3)) for i in range(n)]


def test_the_provider_mix_is_respected_and_stable():
    enabled = ["anthropic", "openai"]
    picks = Counter(
        assign_provider(7, "repo", f"f{i}.py", {"anthropic": 70, "openai": 30}, enabled) for i in range(2000)
    )
    assert 0.66 < picks["anthropic"] / 2000 < 0.74
    assert assign_provider(7, "repo", "f1.py", {"anthropic": 70, "openai": 30}, enabled) == assign_provider(
        7, "repo", "f1.py", {"anthropic": 70, "openai": 30}, enabled
    )
    # Only enabled providers take files, whatever the mix says.
    assert {
        assign_provider(7, "r", f"{i}", {"anthropic": 70, "openai": 30}, ["openai"]) for i in range(50)
    } == {"openai"}


def test_edit_goals_are_distinct_and_follow_the_weights():
    goals = edit_goals(1, "r", "a.py", dict(DEFAULT_EDIT_KINDS), 3)
    assert len(goals) == len(set(goals)) == 3
    first = Counter(
        edit_goals(1, "r", f"{i}.py", {"add_feature": 80, "delete_feature": 20}, 1)[0] for i in range(2000)
    )
    assert 0.75 < first["add_feature"] / 2000 < 0.85
    assert edit_goals(1, "r", "a.py", {"add_feature": 1, "delete_feature": 0}, 5) == ["add_feature"]


def test_plan_splits_files_between_providers_and_is_order_independent(tmp_path):
    config = llm_settings(tmp_path, edits_per_file=2, files_per_repo=None)
    llm, rows = config.triples.llm, files(60)
    plans = {
        provider: plan_jobs(
            rows, provider=provider, enabled=["anthropic", "openai"], llm=llm, seed=3, scanner=None
        )[0]
        for provider in ("anthropic", "openai")
    }
    anthropic_files = {j.provenance.path for j in plans["anthropic"]}
    openai_files = {j.provenance.path for j in plans["openai"]}
    assert anthropic_files.isdisjoint(openai_files) and len(anthropic_files | openai_files) == 60
    assert len(plans["anthropic"]) == 2 * len(anthropic_files)
    reversed_plan, _ = plan_jobs(
        rows[::-1], provider="anthropic", enabled=["anthropic", "openai"], llm=llm, seed=3, scanner=None
    )
    assert {j.request.key for j in reversed_plan} == {j.request.key for j in plans["anthropic"]}
    # Requests are provider-native and content-addressed.
    job = plans["anthropic"][0]
    assert job.request.key == request_key("anthropic", job.request.body)
    assert job.request.body["model"] == "claude-sonnet-4-6" and "temperature" not in job.request.body
    openai_job = plans["openai"][0]
    assert openai_job.request.body["messages"][0]["role"] == "system"
    assert openai_job.request.body["temperature"] == 0.7 and openai_job.request.body["max_tokens"] == 8192


def test_plan_caps_files_per_repo_across_providers(tmp_path):
    config = llm_settings(tmp_path, files_per_repo=10)
    secrets = [("repo", "c0", f"conf/s{i}.py", "python", FAKE_AWS) for i in range(20)]
    planned, skipped = set(), Counter()
    for provider in ("anthropic", "openai"):
        jobs, skips = plan_jobs(
            files(40) + secrets,
            provider=provider,
            enabled=["anthropic", "openai"],
            llm=config.triples.llm,
            seed=3,
            scanner=config.secret_scanner(),
        )
        planned |= {j.provenance.path for j in jobs}
        skipped += skips
    # Exactly the cap, of eligible files only; each skipped file is counted once, by its own provider.
    assert len(planned) == 10 and all(p.startswith("src/") for p in planned)
    assert 0 < skipped["secret_flagged"] <= 20


def test_files_with_secrets_or_markers_never_become_requests(tmp_path):
    config = llm_settings(tmp_path, mix={"anthropic": 1})
    rows = [
        ("r", "c", "config/settings.py", "python", "import os\n\n" + FAKE_AWS),
        ("r", "c", "src/lazy.py", "python", "def f():\n    # ... existing code ...\n    return 1\n"),
        ("r", "c", "src/ok.py", "python", python_module("ok", 2)),
    ]
    jobs, skipped = plan_jobs(
        rows,
        provider="anthropic",
        enabled=["anthropic"],
        llm=config.triples.llm,
        seed=1,
        scanner=config.secret_scanner(),
    )
    assert [j.provenance.path for j in jobs] == ["src/ok.py"]
    assert skipped == Counter({"secret_flagged": 1, "marker_like_comment_in_file": 1})
    assert all("AKIA" not in str(j.request.body) for j in jobs)


# -- judging -----------------------------------------------------------------------------------------

FINAL = ORIGINAL.replace(
    "    return open(path).read()\n", "    with open(path) as handle:\n        return handle.read()\n"
)
# The anchor below the change matters: new lines with no anchor after them are inserted, not substituted.
SNIPPET = "# ... existing code ...\ndef load(path):\n    with open(path) as handle:\n        return handle.read()\n\n\ndef save(path, text):\n# ... existing code ...\n"


def test_judge_accepts_an_answer_the_applier_reproduces():
    assert judge(ORIGINAL, Generation(SNIPPET, FINAL), "python", "snippet_and_final") == ("ok", None, FINAL)


def test_judge_flags_a_final_the_applier_disagrees_with():
    extra = FINAL.replace("import os", "import os\nimport sys")
    assert judge(ORIGINAL, Generation(SNIPPET, extra), "python", "snippet_and_final")[:2] == (
        "flagged",
        "applier_disagrees",
    )
    vague = "def nothing_like_this():\n    pass\n"
    status, reason, _ = judge(
        ORIGINAL,
        Generation("# ... existing code ...\n" + vague + "# ... existing code ...\n", FINAL),
        "python",
        "snippet_and_final",
    )
    assert (status, reason) == ("flagged", "applier_refused_no_anchor")


@pytest.mark.parametrize(
    ("final", "reason"),
    [
        (ORIGINAL, "no_change"),
        (FINAL.replace("import os\n", "import os\n# ... existing code ...\n"), "marker_in_final"),
        (FINAL.replace("def save(path, text):", "def save(path, text)"), "final_does_not_parse"),
    ],
)
def test_judge_rejects_finals_that_cannot_be_labels(final, reason):
    assert judge(ORIGINAL, Generation(SNIPPET, final), "python", "snippet_and_final")[:2] == (
        "rejected",
        reason,
    )


def test_snippet_only_mode_merges_with_the_applier():
    assert judge(ORIGINAL, Generation(SNIPPET, None), "python", "snippet_only") == ("ok", None, FINAL)
    bad = Generation("# ... existing code ...\nnot in file\n# ... existing code ...\n", None)
    assert judge(ORIGINAL, bad, "python", "snippet_only")[:2] == ("rejected", "applier_no_anchor")


def test_rows_account_for_every_request(tmp_path):
    config = llm_settings(tmp_path, mix={"anthropic": 1}, edits_per_file=1)
    rows = [("r", "c", f"src/m{i}.py", "python", ORIGINAL.replace("load", f"load{i}")) for i in range(5)]
    jobs, _ = plan_jobs(
        rows, provider="anthropic", enabled=["anthropic"], llm=config.triples.llm, seed=1, scanner=None
    )
    good = "<update-snippet>\n{s}</update-snippet>\n<final-code>\n{f}</final-code>"
    answers = [
        Completion(
            "completed",
            "sync",
            good.format(s=SNIPPET.replace("load", "load0"), f=FINAL.replace("load", "load0")),
            "end",
            10,
            20,
        ),
        Completion("completed", "sync", "cut off <update-snippet>", "max_tokens", 10, 8192),
        Completion("completed", "batch", "no tags", "end", 10, 5),
        Completion("failed", "batch", error="batch_expired"),
        Completion("failed", "batch", error="batch_missing_result"),
    ]
    by_path = {j.provenance.path: j for j in jobs}
    ordered = [by_path[f"src/m{i}.py"] for i in range(5)]
    table = llm_rows(
        ordered, {j.request.key: a for j, a in zip(ordered, answers, strict=True)}, mode="snippet_and_final"
    )
    assert table.height == 5
    assert table["status"].to_list() == ["ok", "rejected", "rejected", "rejected", "rejected"]
    assert table["reason"].to_list() == [
        None,
        "truncated",
        "malformed_missing_update_snippet",
        "batch_expired",
        "batch_missing_result",
    ]
    assert table["request_key"].to_list() == [j.request.key for j in ordered]
    assert table["response_text"][0] is None and table["response_text"][2] == "no tags"
    assert table["hunks"][0] == 1 and hunk_count("a\n# ... existing code ...\nb\n") == 2


# -- rate limits, cache, cost, settings --------------------------------------------------------------


def test_rate_limiter_paces_requests_and_tokens_on_a_fake_clock():
    now = [0.0]
    starts = []

    async def sleep(seconds):
        now[0] += seconds

    async def go():
        limiter = RateLimiter(60, 6000, burst_seconds=1, clock=lambda: now[0], sleep=sleep)
        for _ in range(5):
            await limiter.acquire(100)
            starts.append(now[0])
        await limiter.acquire(20_000)  # bigger than the bucket: waits for a full bucket, then goes into debt
        starts.append(now[0])
        await limiter.acquire(1)
        starts.append(now[0])

    asyncio.run(go())
    # 60 rpm = one per second once the one-second burst (1 request) is spent.
    assert starts[:5] == pytest.approx([0, 1, 2, 3, 4])
    # 6000 tpm = 100 tokens/s, bucket of 100: the oversized request waits for a full bucket...
    assert starts[5] == pytest.approx(5)
    # ...and its debt (19,900 tokens) is paid before the next one takes its token: 199.01 s later.
    assert starts[6] == pytest.approx(5 + 199.01)


def test_response_cache_is_content_addressed(tmp_path):
    cache = ResponseCache(tmp_path)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    key = request_key("openai", body)
    assert key == request_key("openai", dict(reversed(list(body.items()))))  # key order does not matter
    assert key != request_key("anthropic", body) != request_key("openai", {**body, "max_tokens": 5})
    assert cache.get("openai", key) is None
    cache.put("openai", key, Completion("completed", "sync", "hello", "end", 1, 2).record())
    assert cache.get("openai", key)["text"] == "hello"
    assert Completion.from_record(cache.get("openai", key)).cached


def test_cost_uses_the_price_table_and_the_batch_discount(tmp_path):
    llm = llm_settings(tmp_path).triples.llm
    cost, unpriced = estimate_cost(
        [
            ("claude-sonnet-4-6", "sync", 1_000_000, 100_000),
            ("gpt-4.1", "batch", 1_000_000, 1_000_000),
            ("mystery", "sync", 5, 5),
        ],
        llm.prices,
        llm.batch_discount,
    )
    assert cost == pytest.approx((3.0 + 1.5) + 0.5 * (2.0 + 8.0))
    assert unpriced == ["mystery"]


def test_llm_settings_explain_mistakes(tmp_path):
    with pytest.raises(ConfigError, match="rejects sampling parameters"):
        llm_settings(tmp_path, anthropic={"temperature": 0.5})
    with pytest.raises(ConfigError, match="base_url must start with http"):
        llm_settings(tmp_path, openai={"base_url": "localhost:8000"})
    with pytest.raises(ConfigError, match="none of them a positive share"):
        llm_settings(tmp_path, generators=["openai"], mix={"anthropic": 1})
    with pytest.raises(ConfigError, match="api"):
        llm_settings(tmp_path, openai={"api": "stream"})
    assert llm_settings(tmp_path, openai={"temperature": None}).triples.llm.openai.temperature is None


def test_jsx_file_prompt_mentions_the_jsx_marker():
    prompt = generation_prompt(
        path="B.tsx", language="tsx", original=TSX_COMPONENT, edit_kind="add_feature", mode="snippet_only"
    )
    assert "{/* ... existing code ... */}" in prompt
    assert ts_module("x", 1)  # the helpers used by other tests stay importable
