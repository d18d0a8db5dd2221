"""Every tool that needs an optional extra says which one in one line when its modules are missing.

Each case runs the tool in a fresh interpreter in which the extra's module cannot be imported (an
import hook raises ModuleNotFoundError, as a ``[score,judge]``-only install would), with arguments
that pass click's own checks, and asserts the whole of stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hba_core.extras import EXTRAS, MissingExtraError, require

BLOCKED = """
import sys
blocked = set(sys.argv[1].split(","))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import importlib
main = importlib.import_module(sys.argv[2]).main
main(sys.argv[3:], prog_name=sys.argv[2])
"""


def _cases(tmp):
    """(tool, module, blocked module, args, tool as named in the message, extra)."""
    (tmp / "ckpt").mkdir()
    (tmp / "store").mkdir()
    (tmp / "release").mkdir()
    samples = tmp / "s.jsonl"
    samples.write_text("")
    s, d = str(samples), str(tmp)
    store, zarr = f"{d}/store", f"{d}/x.zarr"
    # the blocked module is the extra's first where possible: importing the others first costs seconds
    return [
        ("sft", "torch", ["cls", s, "-o", f"{d}/run"], "hba-sft cls", "train"),
        ("sft", "torch", ["joint", s, "-o", f"{d}/run"], "hba-sft joint", "train"),
        (
            "bam",
            "torch",
            ["--init", f"{d}/ckpt", "--samples", s, "--store", store, "--datasets", "mmsd"],
            "hba-bam",
            "train",
        ),
        ("grpo", "torch", ["--init", f"{d}/ckpt", "--train", s, "--out", f"{d}/rl"], "hba-grpo", "train"),
        (
            "descriptors",
            "zarr",
            ["extract", "--samples", s, "--root", d, "--store", zarr],
            "hba-descriptors extract",
            "descriptors",
        ),
        ("descriptors", "zarr", ["stats", "--store", store], "hba-descriptors stats", "descriptors"),
        (
            "descriptors",
            "zarr",
            ["import-pt", "--samples", s, "--root", d, "--store", zarr],
            "hba-descriptors import-pt",
            "descriptors",
        ),
        (
            "transcribe",
            "whisper",
            ["--samples", s, "--root", d, "--out", f"{d}/t.jsonl"],
            "hba-transcribe",
            "transcribe",
        ),
        ("judge", "aiohttp", ["--truth", s, "--pred", s, "--out", f"{d}/j.jsonl"], "hba-judge", "judge"),
        (
            "convert",
            "pyarrow",
            ["import", "--from", f"{d}/release", "--out", f"{d}/a.jsonl"],
            "hba-convert import",
            "convert",
        ),
        ("score", "matplotlib", ["--truth", s, "--pred", s, "--plot", f"{d}/h.png"], "hba-score --plot", "score"),
    ]


CASE_IDS = [
    "sft-cls",
    "sft-joint",
    "bam",
    "grpo",
    "descriptors-extract",
    "descriptors-stats",
    "descriptors-import-pt",
    "transcribe",
    "judge",
    "convert-import-parquet",
    "score-plot",
]


@pytest.mark.parametrize("case", range(len(CASE_IDS)), ids=CASE_IDS)
def test_missing_extra_is_one_line_naming_it(case, tmp_path):
    tool, blocked, args, named, extra = _cases(tmp_path)[case]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, blocked, f"hba_tools.{tool}", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    fix = f'pip install -e ".[{extra}]" from a clone of hba'
    assert proc.stderr.strip().splitlines() == [
        f"Error: {named} needs the {extra!r} extra (no module {blocked}): {fix}"
    ]


def test_a_jsonl_release_imports_without_pyarrow(tmp_path):
    # the JSONL form of the release needs no extra: the check must not fire for it
    (tmp_path / "final_v8_test.jsonl").write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, "pyarrow", "hba_tools.convert", "import", "--from", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "extra" not in proc.stderr and proc.returncode == 0, proc.stderr


def test_each_extra_names_modules_its_pyproject_extra_installs():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    dist = {"sklearn": "scikit-learn", "whisper": "openai-whisper", "av": "av"}

    def installs(extra: str) -> set[str]:
        names = set()
        for req in extras[extra]:
            name = req.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
            if name == "hba":  # hba[media,score]: the union of those extras
                names |= set().union(*(installs(e) for e in req[req.index("[") + 1 : req.index("]")].split(",")))
            else:
                names.add(name.lower())
        return names

    for extra, modules in EXTRAS.items():
        wanted = {dist.get(m, m) for m in modules}
        assert wanted <= installs(extra), (extra, wanted - installs(extra))


def test_require_raises_the_missing_extra_error():
    with pytest.raises(MissingExtraError, match=r"^hba-x needs the 'judge' extra \(no module no_such_mod_h12\)"):
        require("hba-x", "judge", "no_such_mod_h12")
