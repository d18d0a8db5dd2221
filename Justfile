# hba: the Human Behavior Atlas toolkit. `just --list` shows every recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

fixtures_dir := env_var_or_default("HBA_FIXTURES", "fixtures")

# Install everything (tools, extras, dev tools) into the current Python environment
install:
    python -m pip install -q -e ".[dev]"

# Run the fast test suite (what CI runs; < 20 min on 2 cores)
test *ARGS:
    python -m pytest -n 2 -q {{ARGS}}

# Run every test, including the slow ones (GPU tests skip without CUDA)
test-all *ARGS:
    python -m pytest -n 2 -q -m "" {{ARGS}}

# Build the offline fixtures: tiny Qwen2.5-Omni, tiny whisper, face clips, fixture atlas
fixtures:
    python -m hba_core.fixtures {{fixtures_dir}}

# Lint with ruff
lint:
    ruff check libs tools tests
    ruff format --check libs tools tests || true

# The main job on the mini profile: fixtures -> validate -> score (grows as tools land)
demo: fixtures
    bash recipes/demo.sh

# All benchmarks (figures: docs/benchmarks.md)
bench: bench-score bench-convert bench-judge bench-collate bench-grpo bench-descriptors bench-bam

# hba-score: 1 M predictions over all 16 datasets, vectorised vs a per-class Python loop
bench-score *ARGS:
    python benchmarks/bench_score.py {{ARGS}}

# hba-convert: build time of the largest source (CMU-MOSEI) and all sources from annotation files
bench-convert *ARGS:
    python benchmarks/bench_convert.py {{ARGS}}

# hba-judge: throughput against a local server with 100 ms latency, and a fully cached re-run
bench-judge *ARGS:
    python benchmarks/bench_judge.py {{ARGS}}

# Collator (decode + processor) samples/s on CPU for text, audio and video+audio samples
bench-collate *ARGS: fixtures
    python benchmarks/bench_collate.py {{ARGS}}

# GRPO rollout and training tokens/s on CPU with the tiny fixture
bench-grpo *ARGS: fixtures
    python benchmarks/bench_grpo.py --fixtures {{fixtures_dir}} {{ARGS}}

# GPU only: full-size random-weight Thinker, SFT step throughput, MFU, memory; predict samples/s
bench-gpu *ARGS:
    python benchmarks/bench_sft_gpu.py {{ARGS}}

# Descriptors: tool overhead vs MediaPipe/OpenSMILE directly, --workers 2 vs 1, store vs .pt reads
bench-descriptors *ARGS:
    python benchmarks/bench_descriptors.py {{ARGS}}

# BAM: 4 epochs with vs without the pooled-h cache; Table 13 latency with and without BAM
bench-bam *ARGS: fixtures
    python benchmarks/bench_bam.py --fixtures {{fixtures_dir}} {{ARGS}}
