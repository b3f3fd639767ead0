"""Adapters where users serve them (peft, vLLM's LoRA files, a merged model), bf16 detection, hybrid merges."""

import json

import pytest

from fastapply_pipeline.core.chat import load_training_tokenizer
from fastapply_pipeline.core.evaluate import Merge, hybrid_candidate
from fastapply_pipeline.core.export import check_adapter, merge_adapter
from fastapply_pipeline.core.hardware import cpu_has_bf16, use_bf16
from fastapply_pipeline.core.training import tiny_qwen2_config
from fastapply_pipeline_tests.helpers import invoke


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory):
    """A tiny Qwen2 base folder and a LoRA adapter on it with non-zero weights (so merging changes logits)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("export")
    tokenizer = load_training_tokenizer()
    torch.manual_seed(0)
    Qwen2ForCausalLM(tiny_qwen2_config(len(tokenizer))).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    model = AutoModelForCausalLM.from_pretrained(root / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(root / "adapter")
    tokenizer.save_pretrained(root / "adapter")
    return root


@pytest.mark.slow
def test_the_adapter_folder_has_what_peft_and_vllm_read(tiny_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = tiny_adapter / "adapter"
    assert check_adapter(adapter) == []
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (
        config["r"] == 4
        and config["lora_alpha"] == 8
        and sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_adapter / "base")
    assert isinstance(PeftModel.from_pretrained(base, str(adapter)), PeftModel)


@pytest.mark.slow
def test_a_folder_without_safetensors_is_named_with_what_it_lacks(tiny_adapter, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    problems = check_adapter(broken)
    assert any("lora_alpha" in p for p in problems) and any(
        "adapter_model.safetensors" in p for p in problems
    )
    assert check_adapter(tmp_path) == [f"{tmp_path} has no adapter_config.json (not a peft LoRA folder)"]


@pytest.mark.slow
def test_export_merge_writes_a_model_transformers_loads_with_the_adapters_outputs(tiny_adapter, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    result = invoke("export", tiny_adapter / "adapter", out, "--merge")
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny_adapter / "base")
    with_adapter = PeftModel.from_pretrained(base, str(tiny_adapter / "adapter")).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        expected, got = with_adapter(ids).logits, merged.eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_adapter / "base").eval()(ids).logits
    assert torch.allclose(expected, got, atol=1e-4) and not torch.allclose(plain, got, atol=1e-4)


@pytest.mark.slow
def test_export_without_merge_copies_a_checked_adapter(tiny_adapter, tmp_path):
    result = invoke("export", tiny_adapter / "adapter", tmp_path / "a")
    assert result.exit_code == 0 and check_adapter(tmp_path / "a") == []
    bad = invoke("export", tmp_path, tmp_path / "b")
    assert bad.exit_code == 1 and "no adapter_config.json" in bad.output


@pytest.mark.slow
def test_merge_needs_a_local_base(tiny_adapter, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        merge_adapter(tiny_adapter / "adapter", tmp_path / "m", base="Qwen/Not-Here")


def test_bf16_only_where_the_cpu_computes_it(tmp_path):
    with_amx = tmp_path / "amx"
    with_amx.write_text("processor : 0\nflags : fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    without = tmp_path / "plain"
    without.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_bf16(str(with_amx)) and not cpu_has_bf16(str(without))
    assert not cpu_has_bf16(str(tmp_path / "missing"))
    assert use_bf16("bf16", cuda=False) and not use_bf16("fp32", cuda=False)
    assert use_bf16("auto", cuda=False) == cpu_has_bf16()
    with pytest.raises(ValueError, match="choose one of auto, bf16, fp32"):
        use_bf16("fp16", cuda=False)


def test_hybrid_merges_with_the_applier_first_and_the_model_where_it_refuses():
    original = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
    rows = [
        {
            "original_code": original,
            "update_snippet": "# ... existing code ...\ndef g():\n    return 3\n",
            "language": "python",
        },
        {
            "original_code": original,
            "update_snippet": "# ... existing code ...\n    print('nowhere')\n# ... existing code ...\n",
            "language": "python",
        },
    ]
    asked = []

    def model(batch, tick):
        asked.extend(batch)
        for _ in batch:
            tick()
        return [Merge("MODEL OUTPUT\n", output_tokens=3, seconds=0.1) for _ in batch]

    ticks = []
    merges = hybrid_candidate(model)(rows, lambda: ticks.append(1))
    assert [m.merged_by for m in merges] == ["applier", "model"] and len(ticks) == 2
    assert (
        merges[0].output == original.replace("return 2", "return 3") and merges[1].output == "MODEL OUTPUT\n"
    )
    assert asked == [rows[1]]  # only what the applier refused reached the model
