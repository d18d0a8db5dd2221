"""The GPU predict benchmark: the named Qwen2.5-VL-7B-Instruct config has the published size (meta device),
and the script runs end to end on CPU at toy sizes through hba-predict's own loading and prediction path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def test_qwen2_5_vl_7b_instruct_config_has_the_published_parameter_count():
    from transformers import Qwen2_5_VLForConditionalGeneration

    from hba_core.model.configs import qwen2_5_vl_7b_instruct

    config = qwen2_5_vl_7b_instruct()
    with torch.device("meta"):  # no memory: shapes only
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if n.startswith("model.visual."))
    assert total == 8_292_166_656  # "8.29B" on the model card
    assert round(vision / 1e9, 2) == 0.68 and round((total - vision) / 1e9, 2) == 7.62  # Qwen2.5-7B: 7.62 B
    assert not config.text_config.tie_word_embeddings and config.video_token_id == 151656


def test_bench_predict_gpu_runs_end_to_end_on_cpu_reduced(capsys):
    spec = importlib.util.spec_from_file_location("bench_predict_gpu", ROOT / "benchmarks" / "bench_predict_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--reduced", "--device", "cpu", "--samples", "4", "--batch-size", "2", "--max-new-tokens", "2"]
    results = bench.main([*args, "--workers", "0"])
    out = capsys.readouterr().out
    hf = results["hf"]
    assert hf["samples"] == 4 and hf["samples_per_s"] > 0
    assert results["params"] > 2 * 152_064 * 64  # the real vocabulary: embedding + LM head at width 64
    # the 4 samples are 4 datasets in registry order; each one with audio is answered by its transcript
    assert all(kinds.keys() == {"audio->transcript"} for kinds in hf["substitutions"].values())
    assert "hba-predict generate (transformers):" in out and "samples/s" in out
    assert "vLLM: skipped (it needs a GPU" in out
