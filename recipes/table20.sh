#!/usr/bin/env bash
# Table 20 (App. D.12): GRPO ablations: rollouts per prompt 2/5/20, learning rate 1e-6/5e-7/1e-7, and
# GRPO vs RLOO advantages; each run predicted (generate, think template) and scored on the test split.
#
# Hardware / time: mini ~5 min on 2 CPU cores; paper: 7 GRPO runs of 10 epochs over GPUS (C.2), each about as long as Table 4's RL.
# Example:
#   bash recipes/table20.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table20
stage_to select-train "$R/data/train.jsonl" hba-convert select "$ATLAS" --split train
stage_to select-val "$R/data/val.jsonl" hba-convert select "$ATLAS" --split val
stage_to select-test "$R/data/test.jsonl" hba-convert select "$ATLAS" --split test
models=()
for variant in "n2:--group-size 2" "n5:--group-size 5" "n20:--group-size 20" "lr1e-6:--lr 1e-6" "lr5e-7:--lr 5e-7" \
               "lr1e-7:--lr 1e-7" "rloo:--estimator rloo"; do
    name=${variant%%:*}; read -r -a flags <<< "${variant#*:}"
    stage "grpo-$name" "$R/rl-$name/final" launch grpo --init "$MODEL" --train "$R/data/train.jsonl" \
        --val "$R/data/val.jsonl" --data-root "$DATA" --out "$R/rl-$name" "${GRPO_ARGS[@]}" "${flags[@]}"
    stage "predict-$name" "$R/pred/$name.jsonl" hba-predict --model "$R/rl-$name/final" --mode generate \
        --template think --samples "$R/data/test.jsonl" --data-root "$DATA" --out "$R/pred/$name.jsonl" \
        "${PREDICT_ARGS[@]}"
    models+=("RL $name=$R/pred/$name.jsonl")
done
for spec in "${models[@]}"; do judge "${spec%%=*}" "${spec#*=}" "$R/data/test.jsonl"; done
score "$R/data/test.jsonl" "${models[@]}"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/table.md"
