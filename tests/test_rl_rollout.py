"""Rollout engine on the tiny Qwen2.5-Omni, the prompt template, and the step's data order."""

from __future__ import annotations

import pytest
import torch

from hba_core.errors import InputError
from hba_core.rl.config import GrpoConfig
from hba_core.rl.rollout import HFGenerateEngine, PromptBatch, SamplingConfig, VLLMEngine, response_tensors, trim_at_eos
from hba_core.rl.trainer import check_config, step_prompts


@pytest.fixture(scope="module")
def tiny(fixtures):
    from hba_core.model.backbone import load_processor, load_thinker
    from hba_core.rl.policy import media_token_ids

    processor = load_processor(str(fixtures.omni))
    processor.tokenizer.padding_side = "left"
    return load_thinker(str(fixtures.omni)), processor, media_token_ids(processor)


def test_hf_engine_samples_batched_and_stops_at_eos(tiny):
    model, processor, media_ids = tiny
    tok = processor.tokenizer
    inputs = dict(tok(["What emotion?", "Is this sarcasm, really?"], return_tensors="pt", padding=True))
    engine = HFGenerateEngine(
        model, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, suppress_token_ids=media_ids
    )
    torch.manual_seed(0)
    out = engine.generate(PromptBatch([{}, {}], inputs), SamplingConfig(max_new_tokens=12, temperature=1.0))
    assert len(out) == 2 and all(1 <= len(r) <= 12 for r in out)
    for r in out:  # nothing after an eos, no media placeholders
        assert tok.eos_token_id not in r[:-1] and not set(r) & set(media_ids)
    assert model.training is False  # load_thinker returns eval mode and the engine restores the mode it found
    torch.manual_seed(0)
    again = engine.generate(PromptBatch([{}, {}], inputs), SamplingConfig(max_new_tokens=12, temperature=1.0))
    assert again == out  # sampling is reproducible from the torch seed (resume relies on it)


def test_media_tokens_are_never_sampled(tiny):
    model, processor, media_ids = tiny
    tok = processor.tokenizer
    assert len(media_ids) == 7  # audio/image/video placeholders + audio/vision boundaries
    bias = torch.zeros(model.lm_head.weight.shape[0])
    bias[media_ids] = 50.0  # make the media tokens overwhelmingly likely
    original = model.lm_head.bias
    model.lm_head.bias = torch.nn.Parameter(bias)
    try:
        inputs = dict(tok(["Hi"], return_tensors="pt"))
        engine = HFGenerateEngine(
            model, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, suppress_token_ids=media_ids
        )
        (row,) = engine.generate(PromptBatch([{}], inputs), SamplingConfig(max_new_tokens=8))
        assert not set(row) & set(media_ids)
    finally:
        model.lm_head.bias = original


def test_trim_and_pad_responses():
    assert trim_at_eos([4, 2, 9], 2) == [4, 2] and trim_at_eos([4, 5], 2) == [4, 5]
    ids, mask = response_tensors([[], [3]], pad_token_id=0)
    assert ids.tolist() == [[0], [3]] and mask.tolist() == [[0], [1]]


def test_vllm_engine_is_optional():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="optional"):
            VLLMEngine("any", eos_token_id=0)
    else:
        pytest.skip("vllm is installed")


def test_step_prompts_cover_each_epoch_once_and_reshuffle():
    samples = [{"id": str(i)} for i in range(10)]
    epoch0 = [s["id"] for step in range(2) for s in step_prompts(samples, step, 4, seed=1)]
    epoch1 = [s["id"] for step in range(2, 4) for s in step_prompts(samples, step, 4, seed=1)]
    assert len(set(epoch0)) == 8 and len(set(epoch1)) == 8 and epoch0 != epoch1  # tail of 2 dropped per epoch
    assert step_prompts(samples, 3, 4, seed=1) == step_prompts(samples, 3, 4, seed=1)


def test_config_checks():
    good = GrpoConfig(init="m", train="t", out="o")
    check_config(good)
    for bad, message in (
        (dict(group_size=1), "at least 2"),
        (dict(estimator="ppo"), "Valid: grpo, rloo, harpo"),
        (dict(mini_batch=100), "does not divide"),
    ):
        with pytest.raises(InputError, match=message):
            check_config(GrpoConfig(init="m", train="t", out="o", **bad))


def test_template_file_override(fixtures, tmp_path):
    from hba_core.jsonl import write_jsonl
    from hba_core.rl.policy import Policy

    data = tmp_path / "t.jsonl"
    write_jsonl(data, [{"dataset": "mmpsy_anxiety", "problem": "Anxious?", "answer": "anxiety"}])
    template = tmp_path / "short.txt"
    template.write_text("{problem}\nAnswer in \\boxed{{}}.\n")
    policy = Policy(
        GrpoConfig(init=str(fixtures.omni), train=str(data), out=str(tmp_path / "o"), template=str(template))
    )
    assert policy.prompt({"problem": "Anxious?"})["problem"] == "Anxious?\nAnswer in \\boxed{}."
    default = Policy(GrpoConfig(init=str(fixtures.omni), train=str(data), out=str(tmp_path / "o")))
    assert "MUST BE enclosed within <think> </think> tags" in default.prompt({"problem": "Q"})["problem"]
    with pytest.raises(InputError, match="fp32 master weights"):
        Policy(GrpoConfig(init=str(fixtures.omni), train=str(data), out=str(tmp_path / "o"), dtype="bfloat16"))
    template.write_text("no placeholder")
    with pytest.raises(InputError, match="no {problem} placeholder"):
        Policy(GrpoConfig(init=str(fixtures.omni), train=str(data), out=str(tmp_path / "o"), template=str(template)))
