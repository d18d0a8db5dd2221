#!/usr/bin/env bash
# Table 11 (App. D.4): BAM with hidden size 512 instead of 256.
# Reuses OUT/table4's SFT model and descriptor store (running table4 first if needed).
#
# Hardware / time: mini ~1 min after table4 on 2 CPU cores; paper: one BAM per dataset on 1 H200 (~minutes each, pooled-h cache).
# Example:
#   bash recipes/table11.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table11
need_table4
BAM_DATASETS=${BAM_DATASETS:-$(cat "$T4/.bam_datasets" 2>/dev/null || fact bam_mini)}
stage_to select-test "$R/data/test.jsonl" hba-convert select "$T4/data/bam.jsonl" --split test
bam_variant hidden512 --hidden 512
score --subset "$R/data/test.jsonl" "OmniSapiens-7B BAM=$T4/pred/bam.jsonl" "BAM hidden512=$R/pred/hidden512.jsonl"
stage delta "$R/delta.md" hba-score --truth "$R/data/test.jsonl" --pred "$T4/pred/bam.jsonl" \
    --pred "$R/pred/hidden512.jsonl" --name "OmniSapiens-7B BAM" --name "BAM hidden512" --format delta --subset -o "$R/delta.md"
manifest --input "$ATLAS" --model "$MODEL" --set "bam_datasets=$BAM_DATASETS"
cat "$R/delta.md"
