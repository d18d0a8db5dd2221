# extra_model SPEC: how a recipe predicts with one of EXTRA_MODELS (sourced by table4.sh; tested on its own).
#   a hub id or a local directory   -> hba-predict --model SPEC --mode generate (any backbone hba loads);
#   endpoint:NAME@URL               -> hba-predict --endpoint URL --model NAME --mode generate (a served model,
#                                      e.g. vLLM serve; its key from OPENAI_API_KEY, if it needs one).
# Sets EXTRA_NAME (the row name in the table: NAME, or the directory's / hub id's last part), EXTRA_FILE (a
# file-safe form of it for the predictions file) and EXTRA_ARGS (the hba-predict arguments).
# Example: extra_model endpoint:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1
extra_model() {
    local spec=$1
    if [[ $spec == endpoint:* ]]; then
        local rest=${spec#endpoint:}
        local name=${rest%%@*} url=${rest#*@}
        if [[ $rest != *@* || -z $name || -z $url ]]; then
            echo "EXTRA_MODELS: '$spec' is not endpoint:NAME@URL" \
                "(e.g. endpoint:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1)" >&2
            return 2
        fi
        EXTRA_NAME=$name
        EXTRA_ARGS=(--endpoint "$url" --model "$name" --mode generate)
    else
        EXTRA_NAME=$(basename "$spec")
        EXTRA_ARGS=(--model "$spec" --mode generate)
    fi
    EXTRA_FILE=${EXTRA_NAME//[^A-Za-z0-9._-]/_}
}
