#!/usr/bin/env bash
# file: workers/tax_validator.sh
# The specification's pull worker over HTTP, for any language: curl + jq, no Python.
#
#   export OMS_API_URL=http://127.0.0.1:8000
#   export OMS_TOKEN=$(oms token create --role worker --topics validate_tax_id --name irs-bot)
#   examples/workers/tax_validator.sh
#
# It long-polls POST /v1/topics/validate_tax_id/fetch (204: no work, loop again),
# checks the form, and completes or fails the task as the worker that fetched it.
set -euo pipefail

api="${OMS_API_URL:-http://127.0.0.1:8000}"
topic="${TOPIC:-validate_tax_id}"
worker_id="${WORKER_ID:-tax-validator-sh-$$}"
auth="Authorization: Bearer ${OMS_TOKEN:?set OMS_TOKEN to a worker token for $topic}"

post() {  # post PATH JSON -> prints the body; the HTTP status goes to the file $status_file; fails with no answer
    curl --silent --show-error --max-time 40 -o "$body_file" -w '%{http_code}' \
        -H "$auth" -H 'Content-Type: application/json' -X POST "$api$1" -d "$2" > "$status_file" || return
    cat "$body_file"
}

external_irs_api() {  # stand-in for the IRS check: forms whose id ends in X do not match
    sleep "${IRS_LATENCY:-0.05}"
    [[ "$1" != *X ]]
}

body_file=$(mktemp); status_file=$(mktemp)
trap 'rm -f "$body_file" "$status_file"' EXIT

while true; do
    task=$(post "/v1/topics/$topic/fetch" "$(jq -nc --arg w "$worker_id" '{max_wait: "10s", worker_id: $w}')") \
        || { sleep 1; continue; }                   # the API is restarting: try again
    status=$(cat "$status_file")
    if [ "$status" = 204 ]; then
        continue                                    # no work, loop again
    elif [ "$status" != 200 ]; then
        echo "fetch refused ($status): $task" >&2
        sleep 1; continue
    fi
    id=$(jq -r .id <<<"$task")
    form_id=$(jq -r '.payload.form_id' <<<"$task")
    if external_irs_api "$form_id"; then
        post "/v1/tasks/$id/complete" "$(jq -nc --arg w "$worker_id" '{worker_id: $w}')" >/dev/null || true
    else
        post "/v1/tasks/$id/fail" "$(jq -nc --arg w "$worker_id" '{reason: "IRS mismatch", worker_id: $w}')" >/dev/null || true
    fi
    echo "$(cat "$status_file") $id $form_id"
done
