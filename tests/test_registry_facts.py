"""The experiment facts (C.2 batch sizes, held-out sets, BAM sets, estimators) live in the registry only."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hba_core import registry

REPO = Path(__file__).resolve().parents[1]


def test_c2_batch_sizes_and_transfer_epochs():
    assert [registry.batch_size(d) for d in ("daicwoz", "mmsd", "mimeqa", "meld_emotion", "mosei_senti")] == [
        4, 16, 16, 32, 32,
    ]  # fmt: skip
    assert [registry.transfer_epochs(d) for d in registry.dataset_set("held_out")] == [1, 1, 2, 1]


def test_sets_name_registered_datasets_only():
    assert set(registry.dataset_set("bam")) == set(registry.dataset_names())
    assert set(registry.dataset_set("bam_mini")) <= set(registry.dataset_set("bam"))
    with pytest.raises(registry.UnknownNameError, match="Did you mean 'held_out'"):
        registry.dataset_set("held_ot")


def test_registry_cli_for_recipes():
    def get(*args):
        return subprocess.run([sys.executable, "-m", "hba_core.registry", "get", *args], capture_output=True, text=True)

    assert get("held_out").stdout.strip() == "mosei_senti,meld_emotion,daicwoz,mmsd"
    assert get("batch_size", "daicwoz").stdout.strip() == "4"
    missing = get("batch_size")
    assert missing.returncode == 1 and "give the dataset too" in missing.stderr and "Traceback" not in missing.stderr
    unknown = get("nope")
    assert unknown.returncode == 1 and "unknown registry fact 'nope'" in unknown.stderr


def test_every_registered_estimator_is_implemented():
    torch = pytest.importorskip("torch")
    from hba_core.rl import advantages
    from hba_core.rl.harpo import HarpoState

    rewards = torch.tensor([[1.0, 0.0, 0.5]])
    for name in registry.estimators():
        adv = advantages.compute_advantages(rewards, name, tasks=["EMO"], harpo_state=HarpoState())
        assert torch.isfinite(adv).all() and adv.abs().sum() > 0
    with pytest.raises(registry.UnknownNameError, match="Did you mean 'grpo'"):
        advantages.compute_advantages(rewards, "grp")


def test_recipes_name_no_dataset_literally():
    names = "|".join(sorted(registry.dataset_names(), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.-])({names})(?![\w-])")
    found = []
    for path in sorted((REPO / "recipes").glob("*.sh")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]  # comments may describe the experiment
            if pattern.search(code):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert not found, "registry facts written as literals in recipes:\n" + "\n".join(found)
