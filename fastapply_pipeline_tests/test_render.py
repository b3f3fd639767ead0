"""Rendering lazy snippets: for random edits of real files, apply(original, render(original, final)) == final."""

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fastapply_pipeline.core.apply import apply_snippet
from fastapply_pipeline.core.markers import is_marker_line
from fastapply_pipeline.core.parsing import parses
from fastapply_pipeline.core.render import SNIPPET_STYLES, RenderError, render_snippet

from .helpers import JS_MODULE, JSX_COMPONENT, TSX_COMPONENT, python_module, ts_module

ROOT = Path(__file__).resolve().parents[1]
# Real files of several languages: this project's own modules and the test repos' sources.
REAL_FILES = [
    (path.read_text(), "python") for path in sorted((ROOT / "fastapply_pipeline" / "core").glob("*.py"))
] + [
    (ts_module("util", 8), "typescript"),
    (TSX_COMPONENT, "tsx"),
    (JSX_COMPONENT, "jsx"),
    (JS_MODULE, "javascript"),
    (python_module("app", 10), "python"),
    (python_module("app", 10).replace("    ", "\t"), "python"),  # tab-indented
    (JS_MODULE.replace("\n", "\r\n"), "javascript"),  # CRLF
]
RENDER_REFUSALS = {
    "no_unique_anchor",
    "blank_lines_at_file_edge",
    "line_endings_changed",
    "marker_in_final",
    "drops_most_of_file",
    "final_breaks_syntax",
}


@st.composite
def edited_file(draw):
    text, language = draw(st.sampled_from(REAL_FILES))
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    body, last = lines[:-1], lines[-1:]  # keep the final newline as it is
    for _ in range(draw(st.integers(1, 4))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        op = draw(st.sampled_from(["delete", "insert", "modify", "duplicate"]))
        if op == "delete":
            del body[at : at + draw(st.integers(1, 5))]
        elif op == "insert":
            indent = body[at][: len(body[at]) - len(body[at].lstrip())]
            body.insert(
                at, indent + draw(st.sampled_from(["log(value)", "x = compute(x)", "return None", "}"]))
            )
        elif op == "modify":
            body[at] = body[at] + " + 1" if body[at].strip() else "pass"
        else:
            body.insert(at, body[draw(st.integers(0, len(body) - 1))])
    return text, newline.join(body + last), language


# derandomize: CI sees the same 300 cases every run. For a wider random sweep, run with
# derandomize=False and more examples (7,500 random cases passed when this was written).
@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(edited_file())
def test_render_then_apply_reproduces_the_final_file(case):
    original, final, language = case
    assume(original != final)
    try:
        snippet = render_snippet(original, final, language)
    except RenderError as err:
        assert err.reason in RENDER_REFUSALS
        return
    result = apply_snippet(original, snippet.text)
    assert result.ok, (result.reason, result.detail, snippet.text)
    assert result.merged == final
    # The snippet's non-marker lines are lines of the final file, in order.
    final_lines = iter(final.splitlines())
    for line in snippet.text.splitlines():
        if not is_marker_line(line):
            assert any(candidate == line for candidate in final_lines), line


def test_markers_are_the_languages_own():
    ts = ts_module("util", 8)
    final = ts.replace("utilStep4(value: number, scale = 5)", "utilStep4(value: number, scale = 50)")
    snippet = render_snippet(ts, final, "typescript").text
    # markers stand indented like the code they elide (here: the end of the previous function's body)
    assert snippet.lstrip().startswith("// ... existing code ...\n") and snippet.endswith(
        "// ... existing code ...\n"
    )
    py = python_module("app", 10)
    snippet = render_snippet(py, py.replace("app_step_5(", "app_step_five("), "python").text
    assert snippet.startswith("# ... existing code ...\n")


def test_jsx_children_get_the_jsx_marker():
    original = """export function Page() {
  return (
    <main>
      <Header />
      <Nav />
      <Section title="one" />
      <Section title="two" />
      <Section title="three" />
      <Section title="four" />
      <Footer />
    </main>
  );
}
"""
    final = original.replace('<Section title="three" />', '<Section title="three" highlighted />')
    snippet = render_snippet(original, final, "tsx").text
    assert "      {/* ... existing code ... */}" in snippet
    assert apply_snippet(original, snippet).merged == final


def test_multi_edit_snippet_has_markers_between_regions():
    py = python_module("app", 12)
    final = py.replace("app_step_1(", "app_step_one(").replace("app_step_10(", "app_step_ten(")
    snippet = render_snippet(py, final, "python")
    assert snippet.regions == 2
    assert snippet.text.count("# ... existing code ...") == 3
    assert apply_snippet(py, snippet.text).merged == final


def test_deletion_keeps_context_on_both_sides():
    py = python_module("app", 6)
    final = py.replace('    """Scale a value by step 3."""\n', "")
    snippet = render_snippet(py, final, "python").text
    assert "def app_step_3(" in snippet and "return math.sqrt" in snippet
    assert apply_snippet(py, snippet).merged == final


def test_context_grows_until_the_anchor_is_unique():
    repeated = "".join(f"def f{i}():\n    x = 1\n    x = 1\n    x = 1\n    return x\n\n\n" for i in range(4))
    final = repeated.replace(
        "def f2():\n    x = 1\n    x = 1\n    x = 1\n", "def f2():\n    x = 1\n    x = 2\n    x = 1\n"
    )
    snippet = render_snippet(repeated, final, "python")
    assert snippet.context >= 2 and "def f2():" in snippet.text
    assert apply_snippet(repeated, snippet.text).merged == final


def test_a_one_line_rewrite_is_refused_not_rendered_unanchored():
    # Found by hypothesis: a marker-less snippet sharing no line with the original cannot be applied.
    with pytest.raises(RenderError) as err:
        render_snippet('"""Docs."""\n', '"""Docs.""" + 1\n', "python")
    assert err.value.reason == "no_unique_anchor"


def test_no_change_is_an_error():
    with pytest.raises(RenderError) as err:
        render_snippet("x = 1\n", "x = 1\n", "python")
    assert err.value.reason == "no_change"


STYLED_RENDER_REFUSALS = RENDER_REFUSALS | {"file_too_long", "final_breaks_syntax"}


@pytest.mark.slow
@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(edited_file(), st.sampled_from(SNIPPET_STYLES))
def test_every_style_renders_a_snippet_that_applies_to_the_final_file(case, style):
    """Each style either expresses the edit (and then the applier merges it back exactly) or says why not."""
    original, final, language = case
    assume(original != final)
    try:
        snippet = render_snippet(original, final, language, style=style, rng=random.Random(1))
    except RenderError as err:
        assert err.reason in STYLED_RENDER_REFUSALS or err.reason.startswith(style), err.reason
        return
    assert snippet.style == style
    assert apply_snippet(original, snippet.text, language=language).merged == final
    markers = [line for line in snippet.text.splitlines() if is_marker_line(line)]
    if style in ("unit", "dedented_unit", "whole_file"):
        # No marker added; a bare `...` of the final file itself (a Protocol's stub body) is code.
        assert not [line for line in markers if is_marker_line(line, bare_ellipsis=False)]
        assert len(markers) <= sum(line.strip() == "..." for line in final.splitlines())
    if style == "whole_file":
        assert snippet.text.replace("\r\n", "\n") == final.replace("\r\n", "\n")
    if style == "dedented_unit":
        assert not snippet.text[0].isspace()
    if style == "other_spelling":
        assert markers and not any("... existing code ...\n" in m + "\n" for m in markers)


def _corrupt(snippet: str, how: str, rng: random.Random) -> str | None:
    lines = snippet.splitlines(keepends=True)
    code = [i for i, line in enumerate(lines) if line.strip() and not is_marker_line(line)]
    if len(code) < 2:
        return None
    if how == "duplicate_closing_line":
        closers = [i for i in code if lines[i].strip() in ("}", "};", "})", ")", "]")]
        if not closers:
            return None
        at = rng.choice(closers)
        return "".join([*lines[: at + 1], lines[at], *lines[at + 1 :]])
    if how == "shift_anchor":  # swap a line with its neighbour
        at = rng.choice(code[:-1])
        lines[at], lines[at + 1] = lines[at + 1], lines[at]
        return "".join(lines)
    at = rng.choice(code)  # drop a line
    return "".join(lines[:at] + lines[at + 1 :])


PARSED_FILES = [(text, language) for text, language in REAL_FILES if language != "jsx"]


@pytest.mark.slow
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(PARSED_FILES),
    st.integers(0, 10_000),
    st.sampled_from(["duplicate_closing_line", "shift_anchor", "drop_line"]),
    st.sampled_from(SNIPPET_STYLES),
)
def test_a_corrupted_snippet_merges_as_written_or_is_refused_never_silently_wrong(source, seed, how, style):
    """A snippet damaged after rendering: the applier either refuses or writes a file that holds what the
    damaged snippet says (every snippet line in order) and still parses; it never returns the final file
    with code of the snippet missing, and never a file that no longer parses."""
    text, language = source
    rng = random.Random(seed)
    lines = text.splitlines(keepends=True)
    at = rng.randrange(1, max(2, len(lines) - 1))
    final = "".join([*lines[:at], lines[at - 1], *lines[at:]])  # a duplicated line: a small real edit
    assume(parses(final, language))
    try:
        snippet = render_snippet(text, final, language, style=style, rng=rng)
    except RenderError:
        return
    damaged = _corrupt(snippet.text, how, rng)
    assume(damaged is not None and damaged != snippet.text)
    result = apply_snippet(text, damaged, language=language)
    if not result.ok:
        return
    assert parses(result.merged, language) or not parses(text, language)
    merged_lines = iter(line.strip() for line in result.merged.splitlines())
    for line in damaged.splitlines():
        if line.strip() and not is_marker_line(line):
            assert any(candidate == line.strip() for candidate in merged_lines), (how, line)


@pytest.mark.parametrize("style", SNIPPET_STYLES)
def test_a_deletion_at_the_end_of_a_unit_renders_in_every_style(style):
    """Found by bench_triples: a deletion whose hunk starts past the final's last line."""
    original = "class A:\n    def f(self):\n        return 1\n\n    def g(self):\n        return 2\n"
    final = "class A:\n    def f(self):\n        return 1\n"
    try:
        snippet = render_snippet(original, final, "python", style=style)
    except RenderError as err:
        assert err.reason in STYLED_RENDER_REFUSALS or err.reason.startswith(style)
        return
    assert apply_snippet(original, snippet.text, language="python").merged == final
