import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hba_core.bam.adapter import AdapterSet, BehavioralAdapter, ReferenceAdapter  # noqa: E402
from hba_core.bam.cache import PooledCache, cached_vectors, sample_key  # noqa: E402
from hba_core.bam.train import BamSettings, Split, default_batch_size, train_cls  # noqa: E402


def _gelu(v: float) -> float:
    """phi, the exact GELU: v * Phi(v)."""
    return 0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0)))


def _set(module: torch.nn.Module, **tensors: list) -> None:
    with torch.no_grad():
        for name, value in tensors.items():
            module.get_parameter(name).copy_(torch.tensor(value))


def test_adapter_is_the_paper_equation_on_known_weights():
    # Paper §3.6: x_f = Dropout(Norm(f)), z_f = phi(W2 phi(W1 x_f + b1) + b2), h_adapt = h + alpha * z_f,
    # worked by hand on 2-d descriptors with Norm = z-score (training clips) then LayerNorm (hba's choice)
    a = BehavioralAdapter(feat_dim=2, out_dim=2, hidden=2, dropout=0.5, alpha_init=0.1).eval()  # eval: no dropout
    a.fit_normalizer(torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([True, True]))  # mean (2, 20), std (1, 10)
    _set(a, **{"fc1.weight": [[1.0, 0.0], [0.0, -1.0]], "fc1.bias": [0.0, 0.5]})
    _set(a, **{"fc2.weight": [[1.0, 0.0], [1.0, 1.0]], "fc2.bias": [0.0, -1.0], "alpha": 0.5})
    f = torch.tensor([[4.0, 10.0]])  # z-score (2, -1); LayerNorm: mean 0.5, std 1.5 -> (1, -1)
    eps = a.norm.eps
    x = [1.5 / math.sqrt(2.25 + eps), -1.5 / math.sqrt(2.25 + eps)]
    u = [_gelu(x[0]), _gelu(-x[1] + 0.5)]  # phi(W1 x + b1)
    z = [_gelu(u[0]), _gelu(u[0] + u[1] - 1.0)]  # phi(W2 u + b2)
    h = torch.tensor([[10.0, -10.0]])
    expected = torch.tensor([[10.0 + 0.5 * z[0], -10.0 + 0.5 * z[1]]])
    adapters = AdapterSet({"audio": 2}, out_dim=2, hidden=2).eval()
    adapters.adapters["audio"] = a
    got = adapters(h, {"audio": f}, {"audio": torch.tensor([True])})
    assert torch.allclose(got, expected, atol=1e-6), (got, expected)
    assert z[0] > 0.5 and z[1] > 0.5  # the numbers are not degenerate (a wrong phi or sign would show)


def test_reference_adapter_is_its_equation_on_known_weights():
    # the reference's module: dh = alpha * (W2 relu(W1 LayerNorm(f) + b1) + b2), no z-score, no final phi
    a = ReferenceAdapter(feat_dim=2, out_dim=2, hidden=2, p_moddrop=0.2, alpha_init=4.0).eval()
    _set(a, **{"mlp.0.weight": [[1.0, 0.0], [0.0, 1.0]], "mlp.0.bias": [0.0, 0.5]})
    _set(a, **{"mlp.2.weight": [[2.0, 0.0], [1.0, 1.0]], "mlp.2.bias": [0.0, -3.0], "alpha": [0.25]})
    f = torch.tensor([[5.0, 3.0]])  # LayerNorm: mean 4, std 1 -> (1, -1)
    x = [1 / math.sqrt(1 + a.ln_feats.eps), -1 / math.sqrt(1 + a.ln_feats.eps)]
    u = [max(x[0], 0.0), max(x[1] + 0.5, 0.0)]  # (1, 0): relu zeroes the second unit
    expected = torch.tensor([[0.25 * 2 * u[0], 0.25 * (u[0] + u[1] - 3.0)]])
    assert torch.allclose(a(f, torch.tensor([True])), expected, atol=1e-6)


def test_invalid_clips_contribute_exactly_zero_and_h_is_kept():
    torch.manual_seed(0)
    s = AdapterSet({"audio": 10, "video": 4}, out_dim=8).eval()
    h = torch.randn(3, 8)
    feats = {"audio": torch.randn(3, 10), "video": torch.full((3, 4), float("nan"))}
    valid = {"audio": torch.tensor([True, False, True]), "video": torch.tensor([False, False, False])}
    out = s(h, feats, valid)
    assert torch.equal(out[1], h[1])  # no valid stream: h_adapt = h_penult
    assert not torch.equal(out[0], h[0]) and torch.isfinite(out).all()


def test_train_cls_learns_from_descriptors_and_keeps_best_epoch():
    torch.manual_seed(0)
    n, hdim = 256, 16
    labels = torch.randint(0, 2, (n,))
    h = torch.randn(n, hdim)  # the backbone knows nothing
    feats = torch.randn(n, 6) * 50 + 100
    feats[:, 0] += labels * 300  # the descriptors do (d' = 6), on a large raw scale
    valid = torch.ones(n, dtype=torch.bool)
    train = Split(h[:192], {"audio": feats[:192]}, {"audio": valid[:192]}, labels[:192])
    val = Split(h[192:], {"audio": feats[192:]}, {"audio": valid[192:]}, labels[192:])
    adapters, head = AdapterSet({"audio": 6}, hdim, hidden=32), torch.nn.Linear(hdim, 2)
    result = train_cls(adapters, head, train, val, BamSettings(epochs=10, lr_head=1e-2, lr_adapter=1e-2), 16)
    assert result.history[-1].val_accuracy > 0.9
    best = min(result.history, key=lambda e: e.val_loss)
    assert result.best_epoch == best.epoch


def test_cached_and_uncached_vectors_train_the_same():
    torch.manual_seed(0)
    backbone = torch.nn.Linear(5, 12)
    inputs, labels = torch.randn(64, 5), torch.randint(0, 3, (64,))
    with torch.no_grad():
        cached = backbone(inputs)
    feats, valid = {"video": torch.randn(64, 4)}, {"video": torch.ones(64, dtype=torch.bool)}

    def uncached(index):
        with torch.no_grad():
            return backbone(inputs[index])

    results = []
    for source in (cached, uncached):
        torch.manual_seed(1)
        adapters, head = AdapterSet({"video": 4}, 12, hidden=8), torch.nn.Linear(12, 3)
        split = Split(source, feats, valid, labels)
        results.append(train_cls(adapters, head, split, split, BamSettings(epochs=2), 8))
    for a, b in zip(results[0].adapters.state_dict().values(), results[1].adapters.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_pooled_cache_roundtrip_and_keys(tmp_path):
    cache = PooledCache(tmp_path, "fp")
    keys = [f"k{i}" for i in range(5)]
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return np.stack([np.full(3, i, np.float32) for i in idx])

    h, n = cached_vectors(cache, keys, compute, chunk=2)
    assert n == 5 and calls == [[0, 1], [2, 3], [4]] and h[4].tolist() == [4, 4, 4]
    again = PooledCache(tmp_path, "fp")  # a new process reads what the first wrote
    h2, n2 = cached_vectors(again, keys, compute)
    assert n2 == 0 and np.array_equal(h, h2)
    s = {"id": "a", "problem": "p", "videos": ["v.mp4"]}
    assert sample_key(s, {"fps": 2}) != sample_key(s, {"fps": 4})
    assert sample_key(s, {"fps": 2}) != sample_key({**s, "problem": "q"}, {"fps": 2})


def test_c2_batch_sizes():
    assert [default_batch_size(d) for d in ("daicwoz", "mmsd", "mimeqa", "meld_emotion")] == [4, 16, 16, 32]
