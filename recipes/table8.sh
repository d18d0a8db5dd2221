#!/usr/bin/env bash
# Table 8 (App. D.1): zero-shot transfer of OmniSapiens-7B RL trained (GRPO) without MOSEI (SEN), MELD (EMO),
# DAIC-WOZ and MUStARD, against the base model, both in generate mode on the held-out test splits.
#
# Hardware / time: mini ~2 min on 2 CPU cores; paper: GRPO 10 epochs over GPUS (C.2), then 2 prediction runs.
# Example:
#   bash recipes/table8.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table8
held=$(fact held_out)
stage_to select-train "$R/data/train.jsonl" hba-convert select "$ATLAS" --split train --exclude "$held"
stage_to select-val "$R/data/val.jsonl" hba-convert select "$ATLAS" --split val --exclude "$held"
stage_to select-test "$R/data/test.jsonl" hba-convert select "$ATLAS" --split test --dataset "$held"
stage grpo "$R/rl/final" launch grpo --init "$MODEL" --train "$R/data/train.jsonl" --val "$R/data/val.jsonl" \
    --data-root "$DATA" --out "$R/rl" "${GRPO_ARGS[@]}"
for m in rl base; do
    model=$MODEL; [[ $m == rl ]] && model=$R/rl/final
    stage "predict-$m" "$R/pred/$m.jsonl" hba-predict --model "$model" --mode generate --template think \
        --samples "$R/data/test.jsonl" --data-root "$DATA" --out "$R/pred/$m.jsonl" "${PREDICT_ARGS[@]}"
done
score "$R/data/test.jsonl" "OmniSapiens-7B RL=$R/pred/rl.jsonl" "$(basename "$MODEL")=$R/pred/base.jsonl"
manifest --input "$ATLAS" --model "$MODEL" --set "held_out=$held"
cat "$R/table.md"
