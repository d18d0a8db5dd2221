#!/usr/bin/env bash
# Table 19 (App. D.11): sentiment of the Table 4 models on CMU-MOSEI (SEN) and CH-SIMS v2, the datasets
# with a 7-point scale, from OUT/table4's predictions (running table4 first if needed). NOTE: hba-score
# scores SEN with the paper's binary weighted F1; the paper's 7-class F1 and accuracy need a 7-class
# metric option in hba-score (not there yet), so this table is the binary one on the same samples.
#
# Hardware / time: as table4; the scoring itself takes seconds.
# Example:
#   bash recipes/table19.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table19
need_table4
stage_to select-test "$R/data/test.jsonl" hba-convert select "$T4/data/test.jsonl" --dataset mosei_senti,chsimsv2
score "$R/data/test.jsonl" "OmniSapiens-7B SFT=$T4/pred/sft.jsonl" "OmniSapiens-7B BAM=$T4/pred/bam.jsonl" \
    "OmniSapiens-7B RL=$T4/pred/rl.jsonl" "$(basename "$MODEL")=$T4/pred/base.jsonl"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/table.md"
