#!/usr/bin/env bash
# Score another model's predictions ({id, prediction} JSONL) against the test split of the atlas,
# judging its free-text answers when HBA_JUDGE_BASE_URL and HBA_JUDGE_MODEL are set: table.md, report.json, heatmap.
#
# Hardware / time: seconds (plus the judge's time); no GPU.
# Example:
#   bash recipes/score-external.sh PRED=gpt4o.jsonl NAME=gpt-4o PROFILE=paper DATA=/data/hba OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${PRED:?score-external needs PRED=<predictions JSONL>}"
NAME=${NAME:-$(basename "$PRED" .jsonl)}
hba_setup "score-external/$NAME"
stage_to select-test "$R/data/test.jsonl" hba-convert select "$ATLAS" --split test
hba-validate prediction "$PRED" >&2
judge "$NAME" "$PRED" "$R/data/test.jsonl"
score "$R/data/test.jsonl" "$NAME=$PRED"
manifest --input "$ATLAS" --input "$PRED" --set "name=$NAME"
cat "$R/table.md"
