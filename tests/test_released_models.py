"""Released and foreign models: wrong model types refused before any weights, portable checkpoints, the
full-Omni release layout from the hub cache, reference SFT checkpoints, heads within dataset labels, the
real 7B configuration, fixtures at non-toy sizes, and the missing-extra message."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from hba_core.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RELEASE_ID = "ddvd233/OmniSapiens-7B-RL"


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@pytest.fixture(scope="module")
def causal_lm_dir(tmp_path_factory):
    """A tiny plain Qwen2 causal LM, as transformers writes one: not a Qwen2.5-Omni."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("qwen2-lm")
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


def _predict(*args):
    from hba_tools.predict import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _samples_file(fixtures, path, keep):
    rows = [json.loads(line) for line in fixtures.atlas.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["split"] == "test" and r["dataset"] in keep))
    return path


# ------------------------------------------------------------------ 1. refusal before any weights


def test_non_omni_model_dir_is_refused_before_any_weights(causal_lm_dir, tmp_path):
    from hba_core.model.backbone import load_thinker

    before = _rss_peak_bytes()
    with pytest.raises(InputError) as err:
        load_thinker(str(causal_lm_dir))
    assert _rss_peak_bytes() - before < 2**30  # the 7B fallback would allocate ~22 GB
    message = str(err.value)
    assert "\n" not in message
    assert "model_type 'qwen2'" in message and "supported model types: qwen2_5_omni, qwen2_5_omni_thinker" in message

    # hba-predict serves it through the causal_lm adapter instead (hba_core.model.backbones), never as a Thinker;
    # heads mode needs an hba checkpoint, and says so in one line.
    samples = tmp_path / "s.jsonl"
    samples.write_text("")
    result = _predict("--model", causal_lm_dir, "--samples", samples, "--out", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    assert _rss_peak_bytes() - before < 2**30
    heads = _predict("--model", causal_lm_dir, "--samples", samples, "--out", tmp_path / "h.jsonl", "--mode", "heads")
    assert heads.exit_code == 1 and "heads mode needs an hba checkpoint" in heads.output


# ------------------------------------------------------------------ 2. portable checkpoints, no hub waits


@pytest.fixture()
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: offline errors must come before the network."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def hba_checkpoint(fixtures, tmp_path_factory):
    """A tiny hba checkpoint saved while the working directory made its backbone path relative."""
    from hba_core.model.backbone import add_lora, load_thinker
    from hba_core.model.checkpoint import run_config, save_checkpoint
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni))), default_label_space(["EMO"]))
    cwd = os.getcwd()
    os.chdir(fixtures.omni.parent)
    try:
        config = run_config(
            tool="hba-sft", stage="cls", base_model=fixtures.omni.name, init=None, label_space=model.label_space,
            datasets=["cremad"], options={}, seed=0,
        )  # fmt: skip
        out = save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "best", config)
    finally:
        os.chdir(cwd)
    return out


def _rewrite_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_checkpoint_records_absolute_backbone_and_fingerprint(fixtures, hba_checkpoint, tmp_path, monkeypatch):
    from hba_core.model.checkpoint import load_checkpoint
    from hba_core.model.source import fingerprint, locate

    config = json.loads((hba_checkpoint / "config.json").read_text())
    assert config["base_model"] == str(fixtures.omni.resolve())
    assert config["base_model_fingerprint"] == fingerprint(locate(str(fixtures.omni)))
    assert config["base_model_fingerprint"].startswith("sha256:")
    monkeypatch.chdir(tmp_path)  # another folder: still loads
    model, _ = load_checkpoint(hba_checkpoint)
    assert set(model.label_space) == {"EMO"}


def test_old_relative_backbone_resolves_from_checkpoint_dir_then_cwd(fixtures, hba_checkpoint, tmp_path, monkeypatch):
    from hba_core.model.checkpoint import load_checkpoint

    # Relative to the checkpoint directory (a checkpoint stored next to its backbone).
    near = tmp_path / "near"
    near.mkdir()
    shutil.copytree(fixtures.omni, near / "backbone")
    old = _rewrite_config(hba_checkpoint, near / "ckpt", base_model="../backbone", base_model_fingerprint=None)
    monkeypatch.chdir(tmp_path)
    load_checkpoint(old)
    # Relative to the working directory (the old behaviour).
    cwd_relative = _rewrite_config(hba_checkpoint, tmp_path / "c2", base_model="tiny-omni", base_model_fingerprint=None)
    monkeypatch.chdir(fixtures.omni.parent)
    load_checkpoint(cwd_relative)
    # Found nowhere: one line naming the flag.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"no such model directory .*pass --base-model DIR"):
        load_checkpoint(_rewrite_config(hba_checkpoint, tmp_path / "c3", base_model="./gone/tiny-omni"))


def test_offline_missing_hub_backbone_fails_without_network(hba_checkpoint, tmp_path, monkeypatch, no_network):
    from hba_core.model.checkpoint import load_checkpoint

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    moved = _rewrite_config(hba_checkpoint, tmp_path / "ckpt", base_model="someone/not-cached-model")
    with pytest.raises(InputError) as err:
        load_checkpoint(moved)
    assert "not in the Hugging Face cache" in str(err.value) and "pass --base-model DIR" in str(err.value)
    result = _predict("--model", moved, "--samples", moved / "config.json", "--out", tmp_path / "p.jsonl")
    assert result.exit_code == 1 and "--base-model" in result.output and "Traceback" not in result.output


def test_unreachable_hub_fails_after_one_connect(tmp_path, monkeypatch):
    from hba_core.model.backbone import load_thinker

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: connection refused
    with pytest.raises(InputError, match=r"http://127.0.0.1:9 cannot be reached; pass --base-model DIR"):
        load_thinker("someone/not-cached-model")


def test_fingerprint_mismatch_is_an_error_unless_overridden(fixtures, hba_checkpoint, released, tmp_path):
    from hba_core.model.checkpoint import load_checkpoint

    other = _rewrite_config(hba_checkpoint, tmp_path / "ckpt", base_model=str(released))
    with pytest.raises(InputError, match="is not the one .* was trained on"):
        load_checkpoint(other)
    with pytest.warns(UserWarning, match="using it because --base-model was given"):
        load_checkpoint(hba_checkpoint, base_model=str(released))


# ------------------------------------------------------------------ 3a. a full Omni release from the hub cache


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The tiny Omni in a full release's layout (sharded, talker./token2wav. weights); same seed as fixtures.omni."""
    from hba_core.fixtures.tiny_omni import build_tiny_omni

    return build_tiny_omni(tmp_path_factory.mktemp("released") / "omni", released=True)


@pytest.fixture()
def hub_cache(released, tmp_path, monkeypatch):
    """A Hugging Face cache holding RELEASE_ID, laid out as huggingface_hub writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / f"models--{RELEASE_ID.replace('/', '--')}"
    shutil.copytree(released, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots" / commit


def test_full_omni_release_loads_its_thinker_only(fixtures, hub_cache, no_network):
    from hba_core.model.backbone import load_processor, load_thinker

    thinker = load_thinker(RELEASE_ID)
    reference = load_thinker(str(fixtures.omni)).state_dict()
    state = thinker.state_dict()
    assert state.keys() == reference.keys()
    assert not [k for k in state if "talker" in k or "token2wav" in k]
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert load_processor(RELEASE_ID).tokenizer.padding_side == "left"
    assert (
        "talker.codec_head.weight" in json.loads((hub_cache / "model.safetensors.index.json").read_text())["weight_map"]
    )


def test_predict_generate_with_the_release_hub_id(fixtures, hub_cache, tmp_path, no_network):
    samples = _samples_file(fixtures, tmp_path / "s.jsonl", {"mimeqa", "cremad"})
    out = tmp_path / "p.jsonl"
    result = _predict(
        "--model", RELEASE_ID, "--samples", samples, "--data-root", fixtures.data, "--out", out,
        "--max-new-tokens", "2", "--workers", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {r["mode"] for r in rows} == {"generate"} and {r["model"] for r in rows} == {RELEASE_ID}


def test_grpo_init_takes_the_release_hub_id(fixtures, hub_cache, tmp_path, no_network):
    from hba_core.jsonl import write_jsonl
    from hba_core.rl.config import GrpoConfig
    from hba_core.rl.trainer import read_metrics, train
    from hba_core.samples import iter_samples

    text = [s for _, s in iter_samples(fixtures.atlas) if s["modality_signature"] == "text"][:2]
    write_jsonl(tmp_path / "t.jsonl", text)
    config = GrpoConfig(
        init=RELEASE_ID, train=str(tmp_path / "t.jsonl"), out=str(tmp_path / "run"), prompts_per_step=2, mini_batch=2,
        micro_batch=4, rollout_batch=2, group_size=2, max_new_tokens=2, max_steps=1, save_every=100, val_every=100,
    )  # fmt: skip

    def length_reward(completions, samples):
        return {"total": [float(len(c)) for c in completions]}

    train(config, reward_fn=length_reward, log=lambda m: None)
    assert [row["step"] for row in read_metrics(tmp_path / "run")] == [1]


# ------------------------------------------------------------------ 3b. reference SFT checkpoints


@pytest.mark.parametrize("fsdp, with_label_map", [(False, False), (True, True)])
def test_reference_checkpoint_matches_the_reference_module(fixtures, tmp_path, fsdp, with_label_map):
    from hba_core.fixtures.reference_ckpt import REFERENCE_GLOBAL_CLASSES, build_reference_checkpoint
    from hba_core.model.heads import masked_mean
    from hba_core.model.reference import load_reference_checkpoint

    ref = build_reference_checkpoint(
        fixtures.omni, tmp_path / "run" / "step_10", fsdp=fsdp, with_label_map=with_label_map
    )
    model, summary = load_reference_checkpoint(tmp_path / "run", base_model=str(fixtures.omni))  # latest step_N
    assert summary["heads"] == 7 and summary["lora_modules_merged"] > 0
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.tensor([[1] * 11, [0] * 3 + [1] * 8])
    with torch.no_grad():
        theirs = masked_mean(
            ref.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2], mask
        )
        ours = masked_mean(
            model.thinker(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2], mask
        )
        assert torch.allclose(ours, theirs, atol=1e-5)
        for d, labels in enumerate(REFERENCE_GLOBAL_CLASSES.values()):
            code = next(c for c, ls in model.label_space.items() if set(ls) == set(labels))
            expected = ref.heads[d](theirs)  # (2, K) in the reference's label order
            got = model.heads.heads[code](ours)  # (2, K) in hba's
            for j, label in enumerate(model.label_space[code]):
                assert torch.allclose(got[:, j], expected[:, labels.index(label)], atol=1e-5)


def test_reference_checkpoint_predicts_within_dataset_labels(fixtures, tmp_path):
    from hba_core import registry
    from hba_core.fixtures.reference_ckpt import build_reference_checkpoint

    build_reference_checkpoint(fixtures.omni, tmp_path / "ref")
    keep = {"chsimsv2", "mosei_emotion", "meld_senti", "mmsd"}
    samples = _samples_file(fixtures, tmp_path / "s.jsonl", keep)
    out = tmp_path / "p.jsonl"
    result = _predict(
        "--model", tmp_path / "ref", "--base-model", fixtures.omni, "--samples", samples,
        "--data-root", fixtures.data, "--out", out, "--workers", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["dataset"] for r in rows} == keep and {r["mode"] for r in rows} == {"heads"}
    for row in rows:
        ds = registry.dataset(row["dataset"])
        assert row["prediction"] in ds.labels and list(row["probs"]) == list(ds.task.domain.labels)
        assert {label for label, p in row["probs"].items() if p > 0} == set(ds.labels)  # the others are masked
        assert sum(row["probs"].values()) == pytest.approx(1.0, abs=1e-5)


def test_reference_checkpoint_layout_errors_are_one_line(fixtures, tmp_path):
    from safetensors.torch import load_file, save_file

    from hba_core.fixtures.reference_ckpt import build_reference_checkpoint
    from hba_core.model.reference import load_reference_checkpoint

    build_reference_checkpoint(fixtures.omni, tmp_path / "ref")
    state = load_file(str(tmp_path / "ref" / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("heads.6.")}, str(tmp_path / "ref" / "model.safetensors")
    )
    with pytest.raises(InputError, match="6 heads, but the label map has 7 domains"):
        load_reference_checkpoint(tmp_path / "ref", base_model=str(fixtures.omni))
    (tmp_path / "sharded" / "pytorch_model_fsdp_0").mkdir(parents=True)
    with pytest.raises(InputError, match="sharded FSDP save"):
        load_reference_checkpoint(tmp_path / "sharded", base_model=str(fixtures.omni))


# ------------------------------------------------------------------ 4. heads answer within the dataset's labels


def test_heads_mask_labels_the_dataset_lacks():
    from hba_core import registry
    from hba_core.model.omnisapiens import label_probabilities

    labels = list(registry.dataset("mosei_senti").labels)  # the 7 intensity labels, from the registry
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 1.0]] * 3)  # "positive" wins unmasked
    chsims = ("highly negative", "weakly negative", "neutral", "weakly positive", "highly positive")
    allowed = [("negative", "neutral", "positive"), chsims, tuple(labels)]  # MELD, CH-SIMS v2, MOSEI
    result = label_probabilities(logits, labels, [0, 1, 2], allowed)
    assert result[0][0] == "positive" and result[2][0] == "positive"
    assert result[1][0] == "highly positive" and result[1][1]["positive"] == 0.0  # CH-SIMS v2 has no plain positive
    assert list(result[1][1]) == labels and sum(result[1][1].values()) == pytest.approx(1.0)


# ------------------------------------------------------------------ 5. the real 7B configuration


def test_qwen2_5_omni_7b_thinker_config_sizes():
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from hba_core.model.backbone import add_lora
    from hba_core.model.configs import qwen2_5_omni_7b_thinker
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    config = qwen2_5_omni_7b_thinker()
    assert config.vision_config.hidden_size == 1280 and config.text_config.rope_parameters["mrope_section"] == [
        16,
        24,
        24,
    ]
    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
        total = sum(p.numel() for p in thinker.parameters())
        vision = sum(p.numel() for n, p in thinker.named_parameters() if ".visual." in n)
        model = OmniSapiens(add_lora(thinker), default_label_space())
    assert round(total / 1e9, 2) == 8.93 and round(vision / 1e9, 2) == 0.68
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    heads = sum(p.numel() for p in model.heads.parameters())
    assert lora == 80_740_352
    assert heads == 3584 * 25 + 25  # 25 classes over 7 heads


def test_bench_sft_gpu_runs_end_to_end_on_cpu_reduced():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_sft_gpu", ROOT / "benchmarks" / "bench_sft_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = bench.main(["--reduced", "--device", "cpu", "--dtypes", "float32", "--steps", "1", "--warmup", "0"])
    r = results["float32"]
    assert r["samples_per_s"] > 0 and r["predict_samples_per_s"] > 0 and r["tokens_per_sample"] > 20


# ------------------------------------------------------------------ 6. fixtures at non-toy sizes


def _video_forward(omni_dir, fixtures):
    from hba_core.model.backbone import load_processor, load_thinker
    from hba_core.model.collate import Collator, MediaSettings
    from hba_core.model.omnisapiens import pooled_penultimate
    from hba_core.samples import iter_samples

    sample = next(s for _, s in iter_samples(fixtures.atlas) if s["modality_signature"] == "text_video_audio")
    batch = Collator(load_processor(str(omni_dir)), MediaSettings(data_root=str(fixtures.data)), targets=False)(
        [sample]
    )
    with torch.no_grad():
        pooled, _ = pooled_penultimate(load_thinker(str(omni_dir)), batch)
    return pooled


def test_fixture_head_size_32_runs_video_and_audio(fixtures, tmp_path):
    from hba_core.fixtures.tiny_omni import build_tiny_omni

    pooled = _video_forward(build_tiny_omni(tmp_path / "w128", hidden=128, layers=1), fixtures)  # head size 32
    assert pooled.shape == (1, 128) and torch.isfinite(pooled).all()


@pytest.mark.slow
def test_mid_profile_fixture_runs_video_and_audio(fixtures, tmp_path):
    from hba_core.fixtures.tiny_omni import PROFILES, build_tiny_omni

    pooled = _video_forward(build_tiny_omni(tmp_path / "mid", **PROFILES["mid"]), fixtures)
    assert pooled.shape == (1, 512) and torch.isfinite(pooled).all()


# ------------------------------------------------------------------ 7. a missing extra is one line


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "peft"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
from hba_tools.predict import main
main(sys.argv[1:])
"""


def test_predict_without_torch_names_the_extra(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "--model", "m", "--samples", str(samples), "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "Error: hba-predict needs the 'train' extra (no module torch): pip install -e \".[train]\" from a clone of hba"
    ]
