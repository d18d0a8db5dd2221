#!/usr/bin/env bash
# Table 10 (App. D.3): BAM without raw media: the backbone sees only text, descriptors carry audio and video.
# Reuses OUT/table4's SFT model and descriptor store (running table4 first if needed).
#
# Hardware / time: mini ~1 min after table4 on 2 CPU cores; paper: one BAM per dataset on 1 H200 (~minutes each, pooled-h cache).
# Example:
#   bash recipes/table10.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table10
need_table4
BAM_DATASETS=${BAM_DATASETS:-$(cat "$T4/.bam_datasets" 2>/dev/null || fact bam_mini)}
stage_to select-test "$R/data/test.jsonl" hba-convert select "$T4/data/bam.jsonl" --split test
bam_variant no-raw-media --no-raw-media
score --subset "$R/data/test.jsonl" "OmniSapiens-7B BAM=$T4/pred/bam.jsonl" "BAM no-raw-media=$R/pred/no-raw-media.jsonl"
stage delta "$R/delta.md" hba-score --truth "$R/data/test.jsonl" --pred "$T4/pred/bam.jsonl" \
    --pred "$R/pred/no-raw-media.jsonl" --name "OmniSapiens-7B BAM" --name "BAM no-raw-media" --format delta --subset -o "$R/delta.md"
manifest --input "$ATLAS" --model "$MODEL" --set "bam_datasets=$BAM_DATASETS"
cat "$R/delta.md"
