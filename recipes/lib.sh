# recipes/lib.sh: sourced by every recipe. Settings, profiles, stage skipping, the manifest.
#
# Settings come from the environment or KEY=VALUE arguments (arguments win):
#   PROFILE  mini (default: tiny fixture models and a small converted atlas, CPU, minutes)
#            or paper (Qwen/Qwen2.5-Omni-7B, the real release at DATA, C.2 hyper-parameters, DeepSpeed)
#   DATA     data root the samples' media paths are relative to (paper: the release; mini: built under OUT)
#   ATLAS    samples JSONL (paper default: DATA/atlas.jsonl; mini: converted from fixture sources)
#   MODEL    base model (paper: Qwen/Qwen2.5-Omni-7B; mini: the tiny fixture Qwen2.5-Omni)
#   OUT      output root (default: runs); a recipe writes OUT/<recipe>/
#   GPUS     processes for DeepSpeed in the paper profile (default: 8)
#   SEED     seed of every stage (default: 0)
#   HBA_JUDGE_BASE_URL, HBA_JUDGE_MODEL  judge endpoint; unset = free-text tasks reported as not judged
#
# Example: source recipes/lib.sh; hba_setup table5 "$@"; stage sft-cls "$R/cls/best" hba-sft cls ...

for _kv in "$@"; do
    case "$_kv" in
        PROFILE=*|DATA=*|ATLAS=*|MODEL=*|OUT=*|GPUS=*|SEED=*|FIXTURES=*|PRED=*|NAME=*)
            export "${_kv?}" ;;
        -h|--help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *)
            echo "Error: unknown argument '$_kv'; use KEY=VALUE with KEY one of PROFILE DATA ATLAS MODEL OUT GPUS SEED FIXTURES PRED NAME" >&2
            exit 2 ;;
    esac
done
unset _kv

HBA_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-mini}
OUT=${OUT:-runs}
SEED=${SEED:-0}
FIXTURES=${FIXTURES:-${HBA_FIXTURES:-$HBA_REPO/fixtures}}
JUDGE_PROMPT=${HBA_JUDGE_PROMPT:-paper}

log() { echo "[$RECIPE] $*" >&2; }

# fact NAME [DATASET]: a registry fact (dataset sets comma-joined, per-dataset numbers); never a literal here.
fact() { python -m hba_core.registry get "$@"; }

# hba_setup NAME: profile settings and R=OUT/NAME. Mini builds fixtures + the converted atlas once.
hba_setup() {
    RECIPE=$1
    R=$OUT/$RECIPE
    mkdir -p "$R/.done"
    case "$PROFILE" in
        mini)
            GPUS=${GPUS:-0}
            MODEL=${MODEL:-$FIXTURES/tiny-omni}
            mini_atlas
            # A few optimizer steps of batch 8: shows the pipeline runs, not the paper's numbers.
            SFT_ARGS=(--micro-batch 2 --batch-size 8 --warmup-steps 1 --lr 1e-3 --workers 0
                      --no-gradient-checkpointing --epochs 1 --max-steps 2 --eval-every 2 --seed "$SEED")
            FT_ARGS=(--micro-batch 2 --batch-size 4 --warmup-steps 1 --lr 1e-3 --workers 0
                     --no-gradient-checkpointing --max-steps 2 --eval-every 2 --seed "$SEED")
            BAM_ARGS=(--epochs 1 --batch-size 4 --max-frames 4 --seed "$SEED")
            GRPO_ARGS=(--prompts-per-step 4 --mini-batch 4 --group-size 2 --max-new-tokens 6 --max-steps 1
                       --micro-batch 4 --lr 1e-3 --val-limit 4 --seed "$SEED")
            PREDICT_ARGS=(--max-new-tokens 8 --workers 0 --batch-size 8)
            DESC_ARGS=(--workers 1)
            ;;
        paper)
            GPUS=${GPUS:-8}
            MODEL=${MODEL:-Qwen/Qwen2.5-Omni-7B}
            : "${DATA:?PROFILE=paper needs DATA=<release root> (hba-convert import / build output)}"
            ATLAS=${ATLAS:-$DATA/atlas.jsonl}
            # Paper App. C.2: the tools' defaults are the paper's hyper-parameters.
            SFT_ARGS=(--dtype float32 --seed "$SEED")
            FT_ARGS=(--seed "$SEED")
            BAM_ARGS=(--seed "$SEED")
            GRPO_ARGS=(--gradient-checkpointing --seed "$SEED")
            PREDICT_ARGS=(--dtype bfloat16 --max-new-tokens 1024 --batch-size 16)
            DESC_ARGS=(--workers 16)
            ;;
        *)
            echo "Error: PROFILE=$PROFILE is not a profile; use PROFILE=mini or PROFILE=paper" >&2; exit 2 ;;
    esac
    log "profile=$PROFILE model=$MODEL data=$DATA atlas=$ATLAS out=$R"
}

# mini_atlas: fixtures, small source releases of all 13 sources in their real format, hba-convert, hba-validate.
mini_atlas() {
    local mini=$OUT/mini
    DATA=${DATA:-$mini/raw}
    ATLAS=${ATLAS:-$mini/atlas.jsonl}
    python -m hba_core.fixtures "$FIXTURES" >/dev/null  # parts already there are skipped
    [[ -f $ATLAS ]] && return 0
    mkdir -p "$mini"
    python -m hba_core.fixtures.sources "$DATA" "$FIXTURES" >/dev/null
    hba-convert build all --raw-root "$DATA" --out "$mini/atlas.jsonl.partial" --strict
    hba-validate sample "$mini/atlas.jsonl.partial" >&2
    mv "$mini/atlas.jsonl.partial" "$ATLAS"
}

# stage NAME OUTPUT CMD...: run CMD unless stage NAME finished before with the same key and OUTPUT exists.
# The key covers the command line and the inputs it names (hba_core.recipe_stage), as they were when the
# stage finished: a changed input re-runs the stage. A stage is finished when CMD exits 0; a killed stage re-runs (the tools resume).
stage() {
    local name=$1 output=$2; shift 2
    local key; key=$(python -m hba_core.recipe_stage "$output" "$@")
    if [[ -e "$R/.done/$name" && -e "$output" && "$(cat "$R/.done/$name")" == "$key" ]]; then
        log "skip $name ($output is up to date)"
        return 0
    fi
    log "run  $name -> $output"
    rm -f "$R/.done/$name"
    local start=$SECONDS
    "$@"
    # keyed after the run: files the command wrote beside its output (a log, a summary) count as they now are
    python -m hba_core.recipe_stage "$output" "$@" > "$R/.done/$name"
    log "done $name in $((SECONDS - start)) s"
}

# stage_to NAME FILE CMD...: like stage, for commands printing their data to stdout; FILE appears atomically.
stage_to() {
    local name=$1 output=$2; shift 2
    stage "$name" "$output" _stdout_to "$output" "$@"
}
_stdout_to() {
    local output=$1; shift
    mkdir -p "$(dirname "$output")"
    "$@" > "$output.partial"
    mv "$output.partial" "$output"
}

# _stderr_to FILE CMD...: run CMD keeping a copy of its stderr (summaries) in FILE.
_stderr_to() {
    local file=$1; shift
    mkdir -p "$(dirname "$file")"
    "$@" 2> >(tee "$file" >&2)
}

# launch MODULE ARGS...: one process on CPU / one GPU, DeepSpeed over GPUS in the paper profile.
launch() {
    local module=$1; shift
    if [[ $PROFILE == paper && ${GPUS:-1} -gt 1 ]]; then
        deepspeed --num_gpus "$GPUS" --module "hba_tools.$module" "$@" --deepspeed zero2
    else
        python -m "hba_tools.$module" "$@"
    fi
}

# env_gpus N CMD...: run CMD with GPUS=N (at most the GPUS given).
env_gpus() {
    local n=$1; shift
    if [[ ${GPUS:-0} -gt 0 && $n -gt $GPUS ]]; then n=$GPUS; fi
    GPUS=$n "$@"
}

# judge_enabled: true when a judge endpoint is configured.
judge_enabled() { [[ -n ${HBA_JUDGE_BASE_URL:-} && -n ${HBA_JUDGE_MODEL:-} ]]; }

# judge NAME PRED_FILE TRUTH: stage judging NAME's free-text answers into $R/judged/NAME.jsonl (if configured).
judge() {
    local name=$1 pred=$2 truth=$3
    judge_enabled || return 0
    stage "judge-$name" "$R/judged/$name.jsonl" \
        hba-judge --truth "$truth" --pred "$pred" --out "$R/judged/$name.jsonl" --name "$name" \
        --base-url "$HBA_JUDGE_BASE_URL" --model "$HBA_JUDGE_MODEL" --prompt-variant "$JUDGE_PROMPT" \
        --api-key-env "${HBA_JUDGE_API_KEY_ENV:-OPENAI_API_KEY}" -q
}

# score [--subset] TRUTH NAME=PRED...: score models into $R/report.json, $R/table.md and $R/heatmap.png.
# --subset: TRUTH is a cut of the predicted test set (predictions for other ids are counted, not listed).
# In the mini profile table.md says that its models are tiny random fixtures, not the paper's.
score() {
    local args=() judges=() notes=() spec name
    if [[ $1 == --subset ]]; then args+=(--subset); shift; fi
    local truth=$1; shift
    if [[ $PROFILE == mini ]]; then
        notes+=(--note "PROFILE=mini: every model here is a tiny random-weight fixture, not OmniSapiens-7B; the numbers only show that the pipeline runs.")
    fi
    for spec in "$@"; do args+=(--pred "${spec#*=}"); done
    for spec in "$@"; do name=${spec%%=*}; args+=(--name "$name")
        if judge_enabled && [[ -f $R/judged/$name.jsonl ]]; then judges+=(--judgments "$name=$R/judged/$name.jsonl"); fi
    done
    local tag=score; if judge_enabled; then tag=score-judged; fi  # judging later re-scores
    stage "$tag-json" "$R/report.json" hba-score --truth "$truth" "${args[@]}" "${judges[@]}" --format json \
        "${notes[@]}" -o "$R/report.json" --plot "$R/heatmap.png"
    stage "$tag-md" "$R/table.md" hba-score --truth "$truth" "${args[@]}" "${judges[@]}" --format md "${notes[@]}" \
        -o "$R/table.md"
}


# manifest [--input F]... [--model M]...: write $R/manifest.json (always rewritten: it records this run).
manifest() {
    local judge=()
    if judge_enabled; then judge=(--judge-model "$HBA_JUDGE_MODEL" --prompt-version "$JUDGE_PROMPT"); fi
    python -m hba_core.manifest "$R/manifest.json" --recipe "$RECIPE" --profile "$PROFILE" --seed "$SEED" \
        --set "gpus=$GPUS" --set "data=$DATA" "${judge[@]}" "$@" >/dev/null
    log "manifest: $R/manifest.json"
}

# need_table4: the SFT model, descriptor store and predictions of OUT/table4 (runs table4.sh if missing;
# its finished stages are skipped).
need_table4() {
    T4=$OUT/table4
    if [[ ! -e $T4/.done/score-md ]]; then
        log "needs OUT/table4: running recipes/table4.sh"
        bash "$HBA_REPO/recipes/table4.sh" "PROFILE=$PROFILE" "OUT=$OUT" "FIXTURES=$FIXTURES" \
            ${DATA:+"DATA=$DATA"} ${ATLAS:+"ATLAS=$ATLAS"} "MODEL=$MODEL" "SEED=$SEED" >/dev/null
    fi
}

# bam_variant NAME ARGS...: a BAM set on the table4 SFT model with hba-bam ARGS, and its test predictions.
bam_variant() {
    local name=$1; shift
    stage "bam-$name" "$R/bam-$name" hba-bam --init "$T4/qa/best" --samples "$T4/data/bam.jsonl" --root "$DATA" \
        --store "$T4/desc.zarr" --datasets "$BAM_DATASETS" --out "$R/bam-$name" "${BAM_ARGS[@]}" "$@"
    stage "predict-$name" "$R/pred/$name.jsonl" hba-predict --model "$T4/qa/best" --bam "$R/bam-$name" \
        --store "$T4/desc.zarr" --samples "$R/data/test.jsonl" --data-root "$DATA" --out "$R/pred/$name.jsonl" \
        "${PREDICT_ARGS[@]}"
}
