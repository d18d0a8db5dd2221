#!/usr/bin/env bash
# Table 12 (App. D.5): audio-only and video-only BAM against both adapters. Reuses OUT/table4's SFT model
# and descriptor store (running table4 first if needed).
#
# Hardware / time: mini ~1 min after table4 on 2 CPU cores; paper: BAMs on 1 H200.
# Example:
#   bash recipes/table12.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table12
need_table4
BAM_DATASETS=${BAM_DATASETS:-$(cat "$T4/.bam_datasets" 2>/dev/null || fact bam_mini)}
stage_to select-test "$R/data/test.jsonl" hba-convert select "$T4/data/bam.jsonl" --split test
bam_variant audio --streams audio
bam_variant video --streams video
score --subset "$R/data/test.jsonl" "BAM audio+video=$T4/pred/bam.jsonl" "BAM audio=$R/pred/audio.jsonl" \
    "BAM video=$R/pred/video.jsonl"
manifest --input "$ATLAS" --model "$MODEL" --set "bam_datasets=$BAM_DATASETS"
cat "$R/table.md"
