"""The generation prompts sent to the LLM providers, and the parser of their answers.

One prompt per (file, edit goal). It asks for a realistic change and for two tagged parts: the lazy update
snippet (the file's own elision marker between edited regions, at least one unchanged anchor line around
each edit, every non-marker line an exact line of the final file) and, in `snippet_and_final` mode, the
complete final file. Unlike the reference pipeline's prompt it says nothing about "synthetic data", and
answers are paired with their requests by id (see `clients`), never by position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapply_pipeline.core.markers import JSX_LANGUAGES, JSX_MARKER, marker_for

MODES = ("snippet_and_final", "snippet_only")

# What each edit kind asks the model to do (the keys are the edit kinds of fastapply.yaml).
EDIT_GOALS = {
    "modify_function": (
        "Change the behaviour of one existing function or method: for example handle an edge case, add a "
        "parameter with a default, validate an input, or add logging. Keep the rest of the file as it is."
    ),
    "add_feature": (
        "Add one new function, method, class or component that fits this file, and use it where it "
        "naturally belongs."
    ),
    "modify_two_functions": (
        "Make one coherent change that touches two different functions or methods (for example a new "
        "argument passed from one to the other)."
    ),
    "add_two_features": "Add two related new pieces of functionality, in two different places of the file.",
    "small_refactor": (
        "Make a small refactoring that keeps the behaviour: rename a local variable, extract a short "
        "helper, or simplify a condition."
    ),
    "delete_feature": "Remove one function, method or feature that is no longer needed, together with its uses.",
    "modify_single_line": "Change exactly one line: a constant, a condition, a string or an argument.",
    "reorder_units": (
        "Move one function, method, class or section to a better place in the file (for example next to "
        "the code that uses it), changing nothing else."
    ),
}

SYSTEM_PROMPT = (
    "You are a senior software engineer working in an AI code editor. You make focused, realistic changes "
    "to real source files, and you describe each change as a lazy edit snippet: the changed code with a "
    "little unchanged code around it, and a marker comment wherever unchanged code is left out. You follow "
    "the requested output format exactly."
)

SNIPPET_TAG = "update-snippet"
FINAL_TAG = "final-code"
ORIGINAL_TAG = "original-code"


def generation_prompt(*, path: str, language: str, original: str, edit_kind: str, mode: str) -> str:
    """The user message for one request."""
    if edit_kind not in EDIT_GOALS:
        raise ValueError(f"unknown edit kind {edit_kind!r}; known: {sorted(EDIT_GOALS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known: {MODES}")
    marker = marker_for(language)
    jsx = (
        f"\nAmong JSX children, where a comment must be an expression, write the marker as `{JSX_MARKER}`."
        if language in JSX_LANGUAGES
        else ""
    )
    answer = [f"<{SNIPPET_TAG}>", "(the snippet)", f"</{SNIPPET_TAG}>"]
    parts = ["1. The update snippet, in the <update-snippet> tag."]
    if mode == "snippet_and_final":
        answer += [f"<{FINAL_TAG}>", "(the complete file after the change)", f"</{FINAL_TAG}>"]
        parts.append(
            "2. The complete file after the change, in the <final-code> tag: every line you did not change "
            "exactly as in the original, same order, same indentation, nothing left out."
        )
    return "\n".join(
        [
            f"Here is the {language} file `{path}`:",
            "",
            f"<{ORIGINAL_TAG}>",
            original.rstrip("\n"),
            f"</{ORIGINAL_TAG}>",
            "",
            f"Your change: {EDIT_GOALS[edit_kind]}",
            "",
            "Write:",
            *parts,
            "",
            "Rules for the update snippet:",
            "- Show only the regions you changed. Leave out every run of unchanged lines and put this exact "
            f"marker line in its place, indented like the code it stands for:\n{marker}{jsx}",
            "- Keep at least one unchanged line directly above and below each changed region, so the place "
            "of the edit is unambiguous; add more unchanged lines when one line could match several places.",
            "- Every line of the snippet except the marker lines must be an exact line of the file after "
            "the change, in the same order.",
            "- Start with a marker unless the snippet begins at the first line of the file; end with one "
            "unless it reaches the last line.",
            "- No code fences, no explanations.",
            "",
            "Answer with exactly this structure and nothing else:",
            *answer,
        ]
    )


@dataclass(frozen=True)
class Generation:
    snippet: str
    final: str | None


def parse_generation(text: str, *, mode: str, original: str) -> Generation | str:
    """The snippet (and final) from an answer, or the reason it is malformed."""
    snippet = _tagged(text, SNIPPET_TAG)
    if snippet is None:
        return "malformed_missing_update_snippet"
    if not snippet.strip():
        return "malformed_empty_update_snippet"
    final = None
    if mode == "snippet_and_final":
        final = _tagged(text, FINAL_TAG)
        if final is None:
            return "malformed_missing_final_code"
        # The final newline follows the original's convention (tags cannot show it reliably).
        if original.endswith("\n") and final:
            final += "\n"
    return Generation(snippet + "\n", final)


_FENCE = re.compile(r"\A```[\w+-]*\n(.*)\n```\Z", re.DOTALL)


def _tagged(text: str, tag: str) -> str | None:
    """The body of the one `<tag>...</tag>` in text, without its surrounding newlines or code fence."""
    matches = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.DOTALL)
    if len(matches) != 1:
        return None
    body = matches[0].removeprefix("\n").removesuffix("\n")
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    return body
