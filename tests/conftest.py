"""Shared test fixtures: the offline tiny models and media, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ANNOTATIONS = Path(__file__).resolve().parents[2] / "shared" / "annotations"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _throwaway_cache(tmp_path_factory: pytest.TempPathFactory):
    """Judge verdicts, served replies and truth-cache entries of a test run go to a temporary folder, never
    the developer's ~/.cache/hba (or their $HBA_CACHE_DIR); subprocesses inherit it."""
    saved = os.environ.get("HBA_CACHE_DIR")
    os.environ["HBA_CACHE_DIR"] = str(tmp_path_factory.mktemp("hba-cache"))
    yield
    if saved is None:
        os.environ.pop("HBA_CACHE_DIR", None)
    else:
        os.environ["HBA_CACHE_DIR"] = saved


def _fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # HBA_FIXTURES lets a developer reuse fixtures across runs (`just fixtures` writes them there).
    configured = os.environ.get("HBA_FIXTURES")
    return Path(configured) if configured else tmp_path_factory.getbasetemp() / "hba-fixtures"


@pytest.fixture(scope="session")
def fixture_data(tmp_path_factory: pytest.TempPathFactory):
    """Fixture media + atlas only (no torch needed)."""
    from hba_core.fixtures import build_all

    return build_all(_fixture_root(tmp_path_factory), models=False)


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory):
    """Everything: tiny Qwen2.5-Omni, tiny whisper, media and the fixture atlas."""
    pytest.importorskip("torch")
    from hba_core.fixtures import build_all

    return build_all(_fixture_root(tmp_path_factory), models=True)


@pytest.fixture(scope="session")
def annotations() -> Path:
    """The real annotation files of nine source datasets (never copied into the project)."""
    if not ANNOTATIONS.is_dir():
        pytest.skip("../shared/annotations is absent")
    return ANNOTATIONS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def baselines(fixtures):
    """Tiny random Qwen2.5-VL, Gemma 3, Qwen2-Audio and causal LM (the Table 4 baselines' families), built once."""
    from hba_core.fixtures.tiny_models import build_tiny_models

    return build_tiny_models(fixtures.baselines)


@pytest.fixture(scope="session")
def checkpoint(fixtures, tmp_path_factory):
    """A tiny OmniSapiens checkpoint (random LoRA/heads) written with the real save code; read-only in tests."""
    import torch

    from hba_core.model.backbone import add_lora, load_processor, load_thinker
    from hba_core.model.checkpoint import run_config, save_checkpoint
    from hba_core.model.heads import default_label_space
    from hba_core.model.omnisapiens import OmniSapiens

    torch.manual_seed(0)
    model = OmniSapiens(add_lora(load_thinker(str(fixtures.omni))), default_label_space())
    config = run_config(
        tool="hba-sft",
        stage="cls",
        base_model=str(fixtures.omni),
        init=None,
        label_space=model.label_space,
        datasets=["cremad"],
        options={},
        seed=0,
    )
    out = tmp_path_factory.mktemp("ckpt") / "best"
    save_checkpoint(model, out, config, processor=load_processor(str(fixtures.omni)))
    return out
