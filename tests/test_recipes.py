"""recipes/: lib.sh stage skipping, the manifest module, the mini source releases, and (slow) table5/table4."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hba_core import registry
from hba_core.convert import Reject, build_source
from hba_core.fixtures.sources import SOURCES, write_sources
from hba_core.manifest import build_manifest, file_sha256
from hba_core.manifest import main as manifest_main
from recipe_runs import fake_servers, run_table4

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "recipes" / "lib.sh"


def bash(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script, "recipe", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


STAGES = f"""set -euo pipefail
source {LIB}
RECIPE=t; R=$OUT/t; mkdir -p "$R/.done"
stage one "$R/one.txt" bash -c 'echo ran >> "$0"; echo x > "$1"' "$R/log" "$R/one.txt"
stage_to two "$R/two.txt" echo hello
stage fail "$R/never" bash -c 'exit 3'
"""


def test_stage_skips_finished_stages_and_reruns_failed_ones(tmp_path):
    first = bash(STAGES, f"OUT={tmp_path}")
    assert first.returncode == 3  # the failing stage stops the recipe (set -e)
    assert (tmp_path / "t" / "two.txt").read_text() == "hello\n"
    assert not (tmp_path / "t" / ".done" / "fail").exists()
    second = bash(STAGES, f"OUT={tmp_path}")
    assert "[t] skip one" in second.stderr and "[t] skip two" in second.stderr
    assert "[t] run  fail" in second.stderr
    assert (tmp_path / "t" / "log").read_text() == "ran\n"  # ran once
    (tmp_path / "t" / "one.txt").unlink()  # a finished stage whose output is gone runs again
    third = bash(STAGES, f"OUT={tmp_path}")
    assert "[t] run  one" in third.stderr and (tmp_path / "t" / "log").read_text() == "ran\nran\n"


def test_a_changed_input_reruns_its_stage_and_only_it(tmp_path):
    pred = tmp_path / "pred.jsonl"
    script = f"""set -euo pipefail; source {LIB}; RECIPE=t; R=$OUT/t; mkdir -p "$R/.done"
stage_to copy "$R/copy.txt" cat {pred}
stage_to other "$R/other.txt" echo same
stage_to flag "$R/flag.txt" echo "$FLAG"
"""
    pred.write_text("a\n")
    assert bash(script, f"OUT={tmp_path}", env={"FLAG": "1"}).returncode == 0
    pred.write_text("b\n")  # a new PRED under the same name
    second = bash(script, f"OUT={tmp_path}", env={"FLAG": "2"})
    assert "[t] run  copy" in second.stderr and (tmp_path / "t" / "copy.txt").read_text() == "b\n"
    assert "[t] skip other" in second.stderr
    assert "[t] run  flag" in second.stderr  # a changed argument is a changed stage
    third = bash(script, f"OUT={tmp_path}", env={"FLAG": "2"})
    assert all(f"[t] skip {name}" in third.stderr for name in ("copy", "other", "flag"))


def test_stage_key_fingerprints_model_folders_and_ignores_the_output(tmp_path):
    from hba_core.recipe_stage import stage_key

    model = tmp_path / "ckpt"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "out"
    key = stage_key(str(out), ["hba-predict", "--model", str(model), "--out", str(out)])
    out.mkdir()
    (out / "part.jsonl").write_text("x")
    assert stage_key(str(out), ["hba-predict", "--model", str(model), "--out", str(out)]) == key
    (model / "adapter.safetensors").write_bytes(b"w")
    assert stage_key(str(out), ["hba-predict", "--model", str(model), "--out", str(out)]) != key


def test_stage_to_leaves_no_partial_output_when_the_command_fails(tmp_path):
    result = bash(
        f"""set -euo pipefail; source {LIB}; RECIPE=t; R=$OUT/t; mkdir -p "$R/.done"
stage_to bad "$R/bad.txt" bash -c 'echo half; exit 1'""",
        f"OUT={tmp_path}",
    )
    assert result.returncode == 1 and not (tmp_path / "t" / "bad.txt").exists()


def test_unknown_argument_and_profile_are_one_line_errors(tmp_path):
    result = bash(f"source {LIB}", "OUTT=x")
    assert result.returncode == 2 and "unknown argument 'OUTT=x'" in result.stderr
    result = bash(f"source {LIB}; hba_setup t", f"OUT={tmp_path}", "PROFILE=huge")
    assert result.returncode == 2 and "PROFILE=huge is not a profile" in result.stderr
    result = bash(f"source {LIB}; hba_setup t", f"OUT={tmp_path}", "PROFILE=paper", env={"DATA": ""})
    assert result.returncode != 0 and "PROFILE=paper needs DATA" in result.stderr


def test_manifest_records_versions_hashes_models_and_judge(tmp_path):
    data = tmp_path / "atlas.jsonl"
    data.write_text('{"id": 1}\n')
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    out = tmp_path / "manifest.json"
    code = manifest_main(
        [
            str(out),
            "--recipe",
            "table5",
            "--profile",
            "mini",
            "--seed",
            "0",
            "--input",
            str(data),
            "--model",
            str(model),
            "--model",
            "Qwen/Qwen2.5-Omni-7B",
            "--judge-model",
            "gpt-5-nano",
            "--prompt-version",
            "paper",
            "--set",
            "gpus=8",
        ]
    )
    assert code == 0
    m = json.loads(out.read_text())
    assert m["recipe"] == "table5" and m["seeds"] == [0] and m["settings"] == {"gpus": "8"}
    assert m["inputs"] == [{"path": str(data), "sha256": file_sha256(data)}]
    assert len(m["inputs"][0]["sha256"]) == 64
    assert m["models"][0]["sha256"] == file_sha256(model) and m["models"][1] == {"id": "Qwen/Qwen2.5-Omni-7B"}
    assert m["judge"] == {"judged": True, "model": "gpt-5-nano", "prompt_version": "paper"}
    assert m["packages"]["torch"] and m["git"]["commit"]
    (model / "config.json").write_text('{"changed": 1}')
    assert file_sha256(model) != m["models"][0]["sha256"]


def test_manifest_missing_input_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl: manifest input not found"):
        build_manifest(
            recipe="t",
            profile="mini",
            seeds=[0],
            inputs=[str(tmp_path / "nope.jsonl")],
            models=[],
            judge_model=None,
            prompt_version=None,
        )


def test_mini_sources_convert_with_every_split_and_no_rejects(fixtures, tmp_path):
    raw = write_sources(tmp_path / "raw", fixtures.data)
    seen: dict[str, set] = {}
    for source in SOURCES:
        items = list(build_source(source, raw / source, check_media=True))
        assert not [x for x in items if isinstance(x, Reject)], source
        for s in items:
            seen.setdefault(s["dataset"], set()).add(s["split"])
            for path in s["videos"] + s["audios"]:
                assert (raw / path).stat().st_size > 0  # real decodable clips, not empty placeholders
    assert set(seen) == set(registry.get().datasets)  # all 16 datasets
    assert all({"train", "test"} <= splits for splits in seen.values()), seen
    no_val = {d for d, splits in seen.items() if "val" not in splits}
    assert no_val == {"siq2", "mimeqa"}  # their releases have no val split


def run_recipe(name: str, out: Path, fixtures) -> subprocess.CompletedProcess:
    just = shutil.which("just")
    cmd = [just, name] if just else ["bash", f"recipes/{name}.sh"]
    env = {**os.environ, "HBA_FIXTURES": str(fixtures.root)}
    env.pop("HBA_JUDGE_BASE_URL", None)
    return subprocess.run([*cmd, f"OUT={out}"], capture_output=True, text=True, cwd=REPO, env=env, timeout=1200)


@pytest.mark.slow  # ~5 min on 2 cores; `just test-all` runs it (just test runs the mini table4 recipe)
def test_table5_mini_end_to_end_and_rerun_skips(fixtures, tmp_path):
    result = run_recipe("table5", tmp_path, fixtures)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "table5" / "table.md").read_text()
    lines = table.splitlines()
    assert lines[0].startswith("> **Note:**")  # mini-profile rows are tiny random models, and the table says so
    header = next(line for line in lines if line.startswith("| Model |"))
    assert [cell.split("·")[0].strip() for cell in header.split("|")[2:6]] == ["SEN", "EMO", "SAR", "DEP"]
    assert "OmniSapiens-7B SFT" in result.stdout and "Qwen2.5-Omni-7B SFT" in result.stdout
    manifest = json.loads((tmp_path / "table5" / "manifest.json").read_text())
    assert manifest["recipe"] == "table5" and manifest["judge"]["judged"] is False
    report = json.loads((tmp_path / "table5" / "report.json").read_text())
    assert report and (tmp_path / "table5" / "heatmap.png").stat().st_size > 0
    again = run_recipe("table5", tmp_path, fixtures)
    assert again.returncode == 0 and "[table5] run " not in again.stderr
    assert "[table5] skip sft-pretrain" in again.stderr and "[table5] skip score-md" in again.stderr


@pytest.mark.slow
@pytest.mark.recipe
def test_table4_mini_end_to_end_with_a_local_judge(fixtures, tmp_path):
    with fake_servers(()) as (judge,):
        result = run_table4(tmp_path, fixtures.root, judge)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "table4" / "table.md").read_text()
    for model in ("OmniSapiens-7B SFT", "OmniSapiens-7B BAM", "OmniSapiens-7B RL", "tiny-omni"):
        assert model in table
    assert (tmp_path / "table4" / "judged" / "OmniSapiens-7B SFT.jsonl").stat().st_size > 0
    manifest = json.loads((tmp_path / "table4" / "manifest.json").read_text())
    assert manifest["judge"] == {"judged": True, "model": "fake-judge", "prompt_version": "paper"}
    assert "sk-test" not in (tmp_path / "table4" / "manifest.json").read_text()


def test_manifest_records_each_models_adapter(tmp_path):
    from hba_core.manifest import model_row

    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"tool": "hba-sft", "base_model": "/models/omni"}))
    assert model_row(str(lm))["adapter"] == "causal_lm" and "sha256" in model_row(str(lm))
    assert model_row(str(ckpt)) | {"sha256": None} == {
        "id": str(ckpt), "sha256": None, "adapter": "hba checkpoint", "base_model": "/models/omni",
    }  # fmt: skip
    served = model_row("endpoint:gemma-3-4b@http://127.0.0.1:8000/v1")
    assert served == {
        "id": "endpoint:gemma-3-4b@http://127.0.0.1:8000/v1", "adapter": "served", "served_model": "gemma-3-4b",
        "url": "http://127.0.0.1:8000/v1",
    }  # fmt: skip
