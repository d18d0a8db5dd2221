#!/usr/bin/env bash
# The whole pipeline end to end on the mini profile (README's main command, `just demo`): fixtures ->
# small source releases in each dataset's real format -> hba-convert -> hba-validate -> hba-sft (cls, qa)
# -> hba-predict -> hba-judge (when HBA_JUDGE_BASE_URL and HBA_JUDGE_MODEL are set; otherwise the
# free-text tasks are reported as not judged) -> hba-score: the score table and the heatmap.
# For every tool (descriptors, BAM, GRPO too) run `just table4`.
#
# Hardware / time: 2 CPU cores, no GPU, about 2 minutes. Tiny random models: the numbers mean nothing.
# Example:
#   bash recipes/demo.sh OUT=runs            # then open runs/demo/table.md and runs/demo/heatmap.png
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROFILE=mini
hba_setup demo

stage_to select-trainval "$R/data/trainval.jsonl" hba-convert select "$ATLAS" --split train,val
stage_to select-test "$R/data/test.jsonl" hba-convert select "$ATLAS" --split test
stage validate "$R/data/test.jsonl" hba-validate sample "$R/data/trainval.jsonl" "$R/data/test.jsonl"
stage sft-cls "$R/cls/best" launch sft cls "$R/data/trainval.jsonl" --data-root "$DATA" --model "$MODEL" \
    -o "$R/cls" "${SFT_ARGS[@]}"
stage sft-qa "$R/qa/best" launch sft qa "$R/data/trainval.jsonl" --data-root "$DATA" --model "$MODEL" \
    --init "$R/cls/best" -o "$R/qa" "${SFT_ARGS[@]}"
stage predict "$R/pred/sft.jsonl" hba-predict --model "$R/qa/best" --samples "$R/data/test.jsonl" \
    --data-root "$DATA" --out "$R/pred/sft.jsonl" "${PREDICT_ARGS[@]}"
stage validate-pred "$R/pred/sft.jsonl" hba-validate prediction "$R/pred/sft.jsonl"
if ! judge_enabled; then log "no judge configured (HBA_JUDGE_BASE_URL, HBA_JUDGE_MODEL): free-text tasks not judged"; fi
judge demo-sft "$R/pred/sft.jsonl" "$R/data/test.jsonl"
score "$R/data/test.jsonl" "demo-sft=$R/pred/sft.jsonl"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/table.md"
log "table: $R/table.md  report: $R/report.json  heatmap: $R/heatmap.png"
