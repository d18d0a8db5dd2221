#!/usr/bin/env bash
# Table 13 (App. D.6): BAM inference latency (mean, std) and peak memory with and without the adapter,
# batch 1, first batch as warm-up. Runs benchmarks/bench_bam.py (its latency part) on the fixtures.
#
# Hardware / time: mini: CPU, ~1 min, tiny model (ratios only). paper: 4x H200, FP16, 500 samples (the GPU numbers need a GPU run).
# Example:
#   bash recipes/table13.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table13
stage_to bench "$R/table.md" python "$HBA_REPO/benchmarks/bench_bam.py" --fixtures "$FIXTURES"
manifest --model "$MODEL"
cat "$R/table.md"
