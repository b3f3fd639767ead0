"""The inference prompt: the contract with deployed Fast Apply models, byte-exact, defined once.

Training renders (system, user) with the tokenizer's chat template and learns the assistant turn
`<updated-code>{final}</updated-code>`; evaluation and `fastapply apply --model` send the same messages and
read the text between the tags. Nothing else in the project spells this prompt out.
"""

from __future__ import annotations

import re

SYSTEM_PROMPT = "You are a coding assistant that helps merge code updates, ensuring every modification is fully integrated."
_USER_HEAD = (
    "Merge all changes from the <update> snippet into the <code> below.\n"
    "- Preserve the code's structure, order, comments, and indentation exactly.\n"
    "- Output only the updated code, enclosed within <updated-code> and </updated-code> tags.\n"
    "- Do not include any additional text, explanations, placeholders, ellipses, or code fences.\n"
)
OPEN_TAG, CLOSE_TAG = "<updated-code>", "</updated-code>"


def user_message(original_code: str, update_snippet: str) -> str:
    # Concatenation, not str.format: code is full of braces.
    return (
        _USER_HEAD
        + "\n<code>"
        + original_code
        + "</code>\n\n<update>"
        + update_snippet
        + "</update>\n\nProvide the complete updated code."
    )


def inference_messages(original_code: str, update_snippet: str) -> list[dict[str, str]]:
    """The chat messages a Fast Apply model is given (system + user)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(original_code, update_snippet)},
    ]


def target(final_code: str) -> str:
    """What the model answers: the whole merged file between the tags."""
    return OPEN_TAG + final_code + CLOSE_TAG


def training_messages(original_code: str, update_snippet: str, final_code: str) -> list[dict[str, str]]:
    return [
        *inference_messages(original_code, update_snippet),
        {"role": "assistant", "content": target(final_code)},
    ]


_ANSWER = re.compile(re.escape(OPEN_TAG) + r"(.*?)" + re.escape(CLOSE_TAG), re.DOTALL)


def parse_answer(text: str) -> str | None:
    """The merged file from a model's answer, or None when the tags are missing or unclosed."""
    match = _ANSWER.search(text)
    return match.group(1) if match else None
