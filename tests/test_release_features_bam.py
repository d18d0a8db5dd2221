"""The released BAM adapters (reference layout) load as hba BAM sets, and hba's reference architecture
trains, saves and reloads. Checkpoints are written in the reference's accelerate layout by
:mod:`hba_core.fixtures.reference_bam`; expected outputs follow the reference's forward
(``bam_adapter.py``, ``bam_wrapped_qwen.py``) written out here with torch.nn.functional.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from hba_core import registry  # noqa: E402
from hba_core.bam.apply import bam_logits, load_bam, load_bams  # noqa: E402
from hba_core.bam.features import reference_features  # noqa: E402
from hba_core.descriptors.import_pt import import_pt  # noqa: E402
from hba_core.descriptors.store import open_store  # noqa: E402
from hba_core.errors import InputError  # noqa: E402
from hba_core.fixtures.reference_bam import write_reference_bam  # noqa: E402
from hba_core.jsonl import write_jsonl  # noqa: E402

HIDDEN = 16


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """Three mmsd samples with release features (the second without audio) in a store."""
    root = tmp_path_factory.mktemp("release")
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(3):
        parts = {"pose": (33, 3), "face": (478, 3), "left_hand": (21, 3), "right_hand": (21, 3)}
        torch.save({p: torch.rand(5, *shape, generator=g) for p, shape in parts.items()}, root / f"v{i}.pt")
        audio = [] if i == 1 else [f"a{i}.pt"]
        if audio:
            torch.save({"features": torch.randn(1, 6373, generator=g)}, root / f"a{i}.pt")
        rows.append({"id": f"s{i}", "dataset": "mmsd", "problem": "p", "answer": "yes", "class_label": "yes"})
        rows[-1].update({"ext_video_feats": [f"v{i}.pt"], "ext_audio_feats": audio})
    write_jsonl(root / "s.jsonl", rows)
    import_pt(root / "s.jsonl", root, root / "r.zarr")
    return rows, open_store(root / "r.zarr")


def reference_forward(states: dict, pooled: torch.Tensor, feats: dict, valid: dict, domain: int) -> torch.Tensor:
    """BAMCLS: h = pooled + video delta + audio delta (each alpha * mlp(ln(f))), then heads[domain]."""
    h = pooled.clone()
    for stream in ("video", "audio"):
        s = states[stream]
        x = F.layer_norm(feats[stream], (feats[stream].shape[1],), s["ln_feats.weight"], s["ln_feats.bias"])
        z = F.linear(F.relu(F.linear(x, s["mlp.0.weight"], s["mlp.0.bias"])), s["mlp.2.weight"], s["mlp.2.bias"])
        h = h + (z * s["alpha"].view(1, 1)) * valid[stream].unsqueeze(-1)  # a sample without the file adds nothing
    base = states["base"]
    return F.linear(h, base[f"heads.{domain}.weight"], base[f"heads.{domain}.bias"])


@pytest.mark.parametrize("layout", ["fsdp", "safetensors"])
def test_released_bam_folder_loads_and_computes_the_reference_forward(tmp_path, features, layout):
    rows, store = features
    folder = tmp_path / "omnisapiens_bam_sarcasm_detection"  # the hub repository's name
    states = write_reference_bam(folder, HIDDEN, layout=layout)
    bams = load_bams(folder)
    assert list(bams) == ["mmsd"]
    bam = bams["mmsd"]
    assert bam.labels == list(registry.dataset("mmsd").task.domain.labels) and bam.adapters.arch == "reference"
    pooled = torch.randn(3, HIDDEN, generator=torch.Generator().manual_seed(1))
    got = bam_logits(bam, pooled, rows, store)
    feats, valid = {}, {}
    for stream in ("video", "audio"):
        found = reference_features(store, rows, stream)
        feats[stream], valid[stream] = torch.from_numpy(found.values), torch.from_numpy(found.valid).float()
    assert valid["audio"].tolist() == [1.0, 0.0, 1.0]
    domain = list(registry.get().domains).index("sarcasm")
    torch.testing.assert_close(got, reference_forward(states, pooled, feats, valid, domain), rtol=1e-5, atol=1e-5)


def test_released_bam_without_meta_is_told_apart_by_input_width(tmp_path, features):
    rows, store = features
    states = write_reference_bam(tmp_path / "bam_mmsd", HIDDEN, streams=("audio",), with_meta=False)
    bam = load_bams(tmp_path / "bam_mmsd")["mmsd"]
    assert bam.adapters.streams == ["audio"]
    torch.testing.assert_close(bam.adapters.adapters["audio"].alpha, states["audio"]["alpha"])


def test_a_folder_of_released_bams_loads_each(tmp_path):
    write_reference_bam(tmp_path / "omnisapiens_bam_humour_detection", HIDDEN, seed=1)
    write_reference_bam(tmp_path / "bam_mosei_senti", HIDDEN, seed=2, layout="safetensors")
    assert sorted(load_bams(tmp_path)) == ["mosei_senti", "urfunny"]


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("bam_mmsd", {"with_base": False}, "no model 0"),
        ("my_adapters", {}, "cannot tell which dataset"),
        ("bam_siq2", {}, "free-text"),
    ],
)
def test_released_bam_layout_problems_are_one_line(tmp_path, name, kwargs, message):
    write_reference_bam(tmp_path / name, HIDDEN, **kwargs)
    with pytest.raises(InputError) as raised:
        load_bams(tmp_path / name)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_reference_architecture_trains_saves_and_reloads(tmp_path, features):
    """hba-bam --arch reference --features reference: the adapters learn, and load_bam reproduces them."""
    from hba_core.bam.adapter import AdapterSet
    from hba_core.bam.run import save_bam
    from hba_core.bam.train import BamSettings, Split, train_cls

    rows, store = features
    feats, valid = {}, {}
    for stream in ("video", "audio"):
        found = reference_features(store, rows, stream)
        feats[stream], valid[stream] = torch.from_numpy(found.values), torch.from_numpy(found.valid)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(3, HIDDEN, generator=g), feats, valid, torch.tensor([0, 1, 0]))
    settings = BamSettings(hidden=8, dropout=0.2, alpha_init=4.0, arch="reference", features="reference", epochs=3)
    torch.manual_seed(0)
    adapters = AdapterSet({"video": 3318, "audio": 6373}, HIDDEN, 8, 0.2, 4.0, arch="reference")
    before = {k: v.clone() for k, v in adapters.state_dict().items()}
    head = torch.nn.Linear(HIDDEN, 2)
    result = train_cls(adapters, head, split, split, settings, batch_size=2)
    assert all(np.isfinite(e.train_loss) for e in result.history)
    assert any(not torch.equal(before[k], v) for k, v in result.adapters.state_dict().items())
    assert sorted(result.adapters.adapters["video"].state_dict()) == sorted(
        ["ln_feats.weight", "ln_feats.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "alpha"]
    )
    heads = {f"head.{k}": v for k, v in result.head.state_dict().items()}
    meta = {"kind": "cls", "dataset": "mmsd", "labels": ["no", "yes"], "adapters": ["video", "audio"]}
    meta.update({"feat_dims": {"video": 3318, "audio": 6373}, "settings": vars(settings)})
    loaded = load_bam(save_bam(tmp_path, "mmsd", result.adapters, heads, meta))
    torch.testing.assert_close(
        bam_logits(loaded, split.h, rows, store), result.head(result.adapters(split.h, feats, valid)).detach()
    )


def test_a_released_bam_on_a_model_of_another_width_is_one_line(tmp_path, features):
    rows, store = features
    write_reference_bam(tmp_path / "bam_mmsd", HIDDEN)
    bam = load_bams(tmp_path / "bam_mmsd")["mmsd"]
    with pytest.raises(InputError) as raised:
        bam_logits(bam, torch.zeros(3, HIDDEN * 2), rows, store)
    assert "16-wide model" in str(raised.value) and "hidden size 32" in str(raised.value)
