"""Merging with a model: greedy decoding gives the same answer with and without prompt-lookup drafts."""

import pytest

from fastapply_pipeline.core.chat import load_training_tokenizer
from fastapply_pipeline.core.inference import merge_with_model
from fastapply_pipeline.core.training import tiny_qwen2_config
from fastapply_pipeline_tests.helpers import python_module

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)


def test_prompt_lookup_changes_speed_not_output():
    import torch
    from transformers import Qwen2ForCausalLM

    tokenizer = load_training_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer))).eval()
    original = python_module("m", 3)
    snippet = (
        "# ... existing code ...\n    return 2 * math.sqrt(abs(value)) * scale\n# ... existing code ...\n"
    )
    plain = merge_with_model(model, tokenizer, original, snippet, prompt_lookup=None, max_new_tokens=40)
    drafted = merge_with_model(model, tokenizer, original, snippet, prompt_lookup=10, max_new_tokens=40)
    assert plain.answer == drafted.answer and plain.new_tokens == drafted.new_tokens > 0
    assert plain.merged is None  # an untrained model does not write the tags
    assert drafted.tokens_per_second > 0
