#!/usr/bin/env bash
# Table 5 (paper §4.2): transfer to held-out datasets. Pretrain OmniSapiens-7B SFT (cls) without
# MOSEI (SEN), MELD (EMO), DAIC-WOZ and MUStARD; fine-tune on each held-out dataset for 1 epoch
# (2 for DAIC-WOZ) from that pretrained model and from the base model with the same settings and the
# C.2 effective batch sizes (4 DAIC-WOZ, 16 MUStARD, 32 MOSEI/MELD); score both on the test splits.
#
# Hardware / time: PROFILE=mini (default) 2 CPU cores, ~3 min (tiny random model: the layout, not the
#   paper's numbers). PROFILE=paper: pretraining 5 epochs with DeepSpeed over GPUS (paper: H200s),
#   then 8 short fine-tunes; see docs/recipes.md.
# Example:
#   bash recipes/table5.sh OUT=runs                     # mini
#   bash recipes/table5.sh PROFILE=paper DATA=/data/hba GPUS=8 OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table5

held=$(fact held_out)
IFS=, read -r -a HELD_OUT <<< "$held"
declare -A EPOCHS=() BATCH=()
for ds in "${HELD_OUT[@]}"; do
    EPOCHS[$ds]=$(fact transfer_epochs "$ds")
    BATCH[$ds]=$(fact batch_size "$ds")
    # mini: a few steps on the tiny model, batch halved and kept within 2..4 (32 -> 4, 16 -> 4, 4 -> 2)
    if [[ $PROFILE == mini ]]; then b=$((BATCH[$ds] / 2)); BATCH[$ds]=$((b < 2 ? 2 : b > 4 ? 4 : b)); fi
done
# C.2: the fine-tunes ran micro-batch 2 on 2 GPUs (DAIC-WOZ's batch of 4 cannot be split over 8)
FT_GPUS=${FT_GPUS:-2}

# 1. pretraining corpus (every other dataset; hba-sft cls trains the classification ones) and the pretrained model
stage_to select-pretrain "$R/data/pretrain.jsonl" hba-convert select "$ATLAS" --exclude "$held"
stage sft-pretrain "$R/pretrain/best" launch sft cls "$R/data/pretrain.jsonl" --data-root "$DATA" \
    --model "$MODEL" -o "$R/pretrain" "${SFT_ARGS[@]}"

# 2. per held-out dataset: fine-tune from the pretrained model and from the base model, predict its test split
for ds in "${HELD_OUT[@]}"; do
    stage_to "select-$ds" "$R/data/$ds.jsonl" hba-convert select "$ATLAS" --dataset "$ds"
    stage_to "select-$ds-test" "$R/data/$ds.test.jsonl" hba-convert select "$R/data/$ds.jsonl" --split test
    ft=("$R/data/$ds.jsonl" --data-root "$DATA" --model "$MODEL" --epochs "${EPOCHS[$ds]}"
        --batch-size "${BATCH[$ds]}" "${FT_ARGS[@]}")
    stage "ft-pretrained-$ds" "$R/ft/pretrained-$ds/best" \
        env_gpus "$FT_GPUS" launch sft cls "${ft[@]}" --init "$R/pretrain/best" -o "$R/ft/pretrained-$ds"
    stage "ft-base-$ds" "$R/ft/base-$ds/best" env_gpus "$FT_GPUS" launch sft cls "${ft[@]}" -o "$R/ft/base-$ds"
    for init in pretrained base; do
        stage "predict-$init-$ds" "$R/pred/$init-$ds.jsonl" hba-predict --model "$R/ft/$init-$ds/best" \
            --samples "$R/data/$ds.test.jsonl" --data-root "$DATA" --out "$R/pred/$init-$ds.jsonl" \
            "${PREDICT_ARGS[@]}"
    done
done

# 3. one predictions file per model (its four fine-tunes), scored on the four test splits
for init in pretrained base; do
    files=(); for ds in "${HELD_OUT[@]}"; do files+=("$R/pred/$init-$ds.jsonl"); done
    stage_to "collect-$init" "$R/pred/$init.jsonl" cat "${files[@]}"
done
files=(); for ds in "${HELD_OUT[@]}"; do files+=("$R/data/$ds.test.jsonl"); done
stage_to collect-test "$R/data/test.jsonl" cat "${files[@]}"
score "$R/data/test.jsonl" "OmniSapiens-7B SFT=$R/pred/pretrained.jsonl" "Qwen2.5-Omni-7B SFT=$R/pred/base.jsonl"
manifest --input "$ATLAS" --model "$MODEL" --set "held_out=$held"
cat "$R/table.md"
