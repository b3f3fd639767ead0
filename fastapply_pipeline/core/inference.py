"""Merging with a model: THE inference prompt, greedy decoding, optional prompt-lookup drafts.

A fast apply model mostly copies the original file, so the original is an excellent draft: with
`prompt_lookup` (transformers' `prompt_lookup_num_tokens`) the model verifies runs of tokens copied
from its prompt in one forward pass instead of generating them one by one. Under greedy decoding the
output is identical either way; only the speed differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapply_pipeline.core.prompt import inference_messages, parse_answer


@dataclass(frozen=True)
class ModelMerge:
    answer: str  # the model's whole answer
    merged: str | None  # the file between <updated-code> tags; None when they are missing or unclosed
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def merge_with_model(
    model,
    tokenizer,
    original: str,
    snippet: str,
    *,
    prompt_lookup: int | None = 10,
    max_new_tokens: int | None = None,
) -> ModelMerge:
    """Greedy merge of (original, snippet); `prompt_lookup` tokens per draft (None: plain decoding)."""
    import torch

    prompt = tokenizer.apply_chat_template(
        inference_messages(original, snippet), tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    if max_new_tokens is None:  # the whole file plus room for the snippet's additions and the tags
        budget = len(tokenizer(original + snippet, add_special_tokens=False)["input_ids"])
        max_new_tokens = budget + 64
    options = {"max_new_tokens": max_new_tokens, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end >= 0:
        options["eos_token_id"] = end
    if prompt_lookup:
        options["prompt_lookup_num_tokens"] = prompt_lookup
    started = time.perf_counter()
    with torch.no_grad():
        output = model.generate(**inputs, **options)
    seconds = time.perf_counter() - started
    new = output[0, inputs["input_ids"].shape[1] :]
    answer = tokenizer.decode(new, skip_special_tokens=True)
    return ModelMerge(answer, parse_answer(answer), int(new.shape[0]), seconds)
