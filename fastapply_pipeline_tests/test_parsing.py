"""The one syntax check (`parsing.parses`) that the applier, the renderer, the dataset and the metrics share."""

import pytest

from fastapply_pipeline.core import parsing
from fastapply_pipeline.core.parsing import parse, parses


@pytest.mark.parametrize(
    "text",
    [
        "with open(p) as f:\n",  # an empty `with` body
        "def f(a=1, b):\n    pass\n",  # a parameter without a default after one with
        "del f()\n",
    ],
)
def test_python_that_tree_sitter_accepts_but_python_rejects_does_not_parse(text):
    assert not parse(text, "python").root_node.has_error  # why the compiler is asked too
    assert parses(text, "python") is False


def test_languages_without_a_grammar_here_always_parse():
    assert parses("fn main( {", "rust") and parses("# Title\n```\nunclosed", "markdown")


@pytest.fixture
def counted_parses(monkeypatch):
    """parses with an empty memory, and a count of the tree-sitter parses it does."""
    calls = []
    real = parsing.parse

    def counting(text, lang):
        calls.append((text, lang))
        return real(text, lang)

    monkeypatch.setattr(parsing, "parse", counting)
    monkeypatch.setattr(parsing, "_VERDICTS", {})
    return calls


def test_a_verdict_is_remembered_per_text_and_language(counted_parses):
    """The renderer, the applier and the dataset check the same original once per edit of its file."""
    code = "let total = 0;\nfor (const x of xs) total += x;\n"
    assert parses(code, "javascript") and parses(code, "javascript") and parses(code, "typescript")
    assert parses(code, "python") is False and parses(code, "python") is False
    assert counted_parses == [(code, "javascript"), (code, "typescript"), (code, "python")]
    assert parses(code + "\n", "javascript")  # another text: parsed again
    assert len(counted_parses) == 4


def test_the_memory_is_bounded_and_a_forgotten_verdict_is_computed_again(counted_parses, monkeypatch):
    monkeypatch.setattr(parsing, "_VERDICTS_MAX", 3)
    texts = [f"x{i} = {i}\n" for i in range(5)] + ["def f(:\n"]
    assert [parses(text, "python") for text in texts] == [True] * 5 + [False]
    assert len(parsing._VERDICTS) <= 3
    assert parses(texts[0], "python") and len(counted_parses) == len(texts) + 1
