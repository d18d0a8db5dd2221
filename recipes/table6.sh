#!/usr/bin/env bash
# Table 6 (paper §4.3): OmniSapiens-7B SFT vs BAM per dataset with Δ% and Δ = BAM - SFT (delta.md);
# table.md holds both rows. Reuses OUT/table4 (SFT model, descriptors, BAM set, predictions), running it first if needed.
#
# Hardware / time: as table4 (mini: ~5 min on 2 CPU cores; paper: SFT and BAM on 8x H200).
# Example:
#   bash recipes/table6.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table6
need_table4
stage_to select-test "$R/data/test.jsonl" cat "$T4/data/test.jsonl"  # datasets without a BAM: BAM = SFT
score "$R/data/test.jsonl" "OmniSapiens-7B SFT=$T4/pred/sft.jsonl" "OmniSapiens-7B BAM=$T4/pred/bam.jsonl"
stage delta "$R/delta.md" hba-score --truth "$R/data/test.jsonl" --pred "$T4/pred/sft.jsonl" \
    --pred "$T4/pred/bam.jsonl" --name "OmniSapiens-7B SFT" --name "OmniSapiens-7B BAM" --format delta -o "$R/delta.md"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/delta.md"
