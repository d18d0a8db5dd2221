# hba: the Human Behavior Atlas toolkit. `just --list` shows every recipe.

set shell := ["bash", "-euo", "pipefail", "-c"]

fixtures_dir := env_var_or_default("HBA_FIXTURES", "fixtures")

# Install everything (tools, extras, dev tools) into the current Python environment
install:
    python -m pip install -q -e ".[dev]"

# Run the test suite CI runs: lint, the doctests, the fast tests and the mini table4 recipe end to end (~5 min idle, ~9 min loaded, 2 cores)
test *ARGS: lint
    OMP_NUM_THREADS=1 python -m pytest -n 2 -q -m "(not slow or recipe) and not gpu" --doctest-modules libs tools tests {{ARGS}}

# Run every test, including the slow ones: mini table5, multi-process DeepSpeed/torchrun runs (GPU tests skip without CUDA)
test-all *ARGS: lint
    OMP_NUM_THREADS=1 python -m pytest -n 2 -q -m "" --doctest-modules libs tools tests {{ARGS}}

# Build the offline fixtures: tiny Qwen2.5-Omni, tiny whisper, the tiny baselines (Qwen2.5-VL, Gemma 3, Qwen2-Audio, causal LM), face clips, fixture atlas
fixtures:
    python -m hba_core.fixtures {{fixtures_dir}}

# Lint with ruff: rules and formatting (both fail the build; `ruff format libs tools tests benchmarks` fixes the second)
lint:
    ruff check libs tools tests benchmarks
    ruff format --check libs tools tests benchmarks

# The whole pipeline end to end on the mini profile (CPU, about 2 minutes): convert -> sft -> predict -> judge -> score table + heatmap
demo *ARGS:
    bash recipes/demo.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 4 + Figure 2: SFT, BAM, RL and base models on every task (PROFILE=mini default; PROFILE=paper DATA=... GPUS=8)
table4 *ARGS:
    bash recipes/table4.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 5: transfer to the 4 held-out datasets, pretrained vs base model fine-tuned 1 epoch (2 for DAIC-WOZ)
table5 *ARGS:
    bash recipes/table5.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 6: SFT vs BAM per dataset, with the difference
table6 *ARGS:
    bash recipes/table6.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 8: zero-shot transfer of the RL model trained without the 4 held-out datasets
table8 *ARGS:
    bash recipes/table8.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 10: BAM without raw media (descriptors carry audio/video)
table10 *ARGS:
    bash recipes/table10.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 11: BAM with hidden size 512
table11 *ARGS:
    bash recipes/table11.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 12: audio-only and video-only BAM
table12 *ARGS:
    bash recipes/table12.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 13: BAM inference latency and peak memory
table13 *ARGS:
    bash recipes/table13.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 17: judge ratings of the free-text answers (fluency, coherence, relevance)
table17 *ARGS:
    bash recipes/table17.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 18: agreement between judges (paper vs paraphrased prompt, or a second judge)
table18 *ARGS:
    bash recipes/table18.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 19: 7-class sentiment
table19 *ARGS:
    bash recipes/table19.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Table 20: GRPO rollouts 2/5/20, learning rates 1e-6/5e-7/1e-7, GRPO vs RLOO
table20 *ARGS:
    bash recipes/table20.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# Score another model's predictions against the test split, judging its free text: just score-external PRED=preds.jsonl NAME=mine
score-external *ARGS:
    bash recipes/score-external.sh FIXTURES={{fixtures_dir}} {{ARGS}}

# All benchmarks (figures: docs/benchmarks.md)
bench: bench-score bench-convert bench-judge bench-served bench-collate bench-grpo bench-descriptors bench-bam bench-release bench-threads bench-predict-parallel bench-heads-forward

# hba-score: 1 M predictions over all 16 datasets, vectorised vs a per-class Python loop
bench-score *ARGS:
    python benchmarks/bench_score.py {{ARGS}}

# hba-convert: build time of the largest source (CMU-MOSEI) and all sources from annotation files
bench-convert *ARGS:
    python benchmarks/bench_convert.py {{ARGS}}

# hba-judge: share of the bound and client CPU ms/judgment at 8/32/64 in flight (100 ms server), cached re-run
bench-judge *ARGS:
    python benchmarks/bench_judge.py {{ARGS}}

# Collator (decode + processor) samples/s on CPU for text, audio and video+audio samples
bench-collate *ARGS: fixtures
    python benchmarks/bench_collate.py {{ARGS}}

# GRPO rollout and training tokens/s on CPU with the tiny fixture
bench-grpo *ARGS: fixtures
    python benchmarks/bench_grpo.py --fixtures {{fixtures_dir}} {{ARGS}}

# GPU only, every GPU benchmark (not in `bench`): bench-sft-gpu, then bench-predict-gpu
bench-gpu: bench-sft-gpu bench-predict-gpu

# GPU only: full-size random-weight Thinker, SFT step throughput, MFU, memory; heads-mode predict samples/s
bench-sft-gpu *ARGS:
    python benchmarks/bench_sft_gpu.py {{ARGS}}

# GPU only: hba-predict --mode generate samples/s, Qwen2.5-VL-7B-sized random weights in bf16; vLLM too when installed
bench-predict-gpu *ARGS:
    python benchmarks/bench_predict_gpu.py {{ARGS}}

# Descriptors: tool overhead vs MediaPipe/OpenSMILE directly, --workers 2 vs 1, store vs .pt reads
bench-descriptors *ARGS:
    python benchmarks/bench_descriptors.py {{ARGS}}

# BAM: 4 epochs with vs without the pooled-h cache; Table 13 latency with and without BAM
bench-bam *ARGS: fixtures
    python benchmarks/bench_bam.py --fixtures {{fixtures_dir}} {{ARGS}}

# Atlas v2 shards: hba-score's truth from a shard with heavy media columns vs JSONL; lazy media decode vs files
bench-release *ARGS: fixtures
    python benchmarks/bench_release.py --fixtures {{fixtures_dir}} {{ARGS}}

# CPU threads: hba-sft cls with hba's default thread count vs every fixed setting, per DataLoader worker count
bench-threads *ARGS: fixtures
    python benchmarks/bench_threads.py --fixtures {{fixtures_dir}} {{ARGS}}

# Served prediction (hba-predict --endpoint), 100 ms server: share of the bound and client CPU ms/sample at 8/32/64
bench-served *ARGS:
    python benchmarks/bench_served.py {{ARGS}}

# Data-parallel prediction: 2 torchrun CPU processes vs 1 on the fixture (same predictions; speed-up)
bench-predict-parallel *ARGS: fixtures
    python benchmarks/bench_predict_parallel.py --fixtures {{fixtures_dir}} {{ARGS}}

# Heads mode stopping at the penultimate layer vs the full forward: 7B FLOPs and logits memory, CPU time on the mid fixture
bench-heads-forward *ARGS:
    python benchmarks/bench_heads_forward.py {{ARGS}}
