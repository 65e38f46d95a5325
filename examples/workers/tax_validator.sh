#!/usr/bin/env bash
# file: workers/tax_validator.sh
# The specification's pull worker over HTTP, for any language: curl + jq, no Python.
#
#   export OMS_API_URL=http://127.0.0.1:8000
#   export OMS_TOKEN=$(oms token create --role worker --topics validate_tax_id --name irs-bot)
#   examples/workers/tax_validator.sh
#
# It long-polls POST /v1/topics/validate_tax_id/fetch (204: no work, loop again),
# checks the form, and completes or fails the task as the worker that fetched it,
# answering each status as README.md's "A worker over HTTP" says: 503 or no answer,
# wait (1 s, doubling up to 30 s) and send the same request again; 409, drop the task;
# 401 or 403, stop and say so; another 4xx, log it and go on.
set -euo pipefail

api="${OMS_API_URL:-http://127.0.0.1:8000}"
topic="${TOPIC:-validate_tax_id}"
worker_id="${WORKER_ID:-tax-validator-sh-$$}"
auth="Authorization: Bearer ${OMS_TOKEN:?set OMS_TOKEN to a worker token for $topic}"

body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT

send() {  # send PATH JSON: until the API answers other than 503; sets $status, the body is in $body_file
    local wait=1
    while true; do
        status=$(curl --silent --max-time 40 -o "$body_file" -w '%{http_code}' -H "$auth" \
            -H 'Content-Type: application/json' -X POST "$api$1" -d "$2") || status=000  # no answer
        if [ "$status" != 503 ] && [ "$status" != 000 ]; then
            return
        fi
        echo "$1: ${status/000/no answer} $(jq -rc '.error // empty' "$body_file" 2>/dev/null); again in ${wait}s" >&2
        sleep "$wait"
        wait=$(( wait * 2 > 30 ? 30 : wait * 2 ))
    done
}

refused() {  # refused WHAT: 401/403 stop the worker; another 4xx is logged
    case "$status" in
        401|403) echo "$1 refused ($status): $(cat "$body_file"); is OMS_TOKEN a worker token for $topic?" >&2
                 exit 1 ;;
        *)       echo "$1 refused ($status): $(cat "$body_file")" >&2 ;;
    esac
}

external_irs_api() {  # stand-in for the IRS check, as slow as its second argument; ids ending in X do not match
    sleep "$2"
    [[ "$1" != *X ]]
}

while true; do
    send "/v1/topics/$topic/fetch" "$(jq -nc --arg w "$worker_id" '{max_wait: "10s", worker_id: $w}')"
    if [ "$status" = 204 ]; then
        continue                                    # no work, loop again
    elif [ "$status" != 200 ]; then
        refused fetch
        continue
    fi
    id=$(jq -r .id "$body_file")
    form_id=$(jq -r '.payload.form_id' "$body_file")
    irs_seconds=$(jq -r --arg d "${IRS_LATENCY:-0.05}" '.payload.irs_seconds // $d' "$body_file")
    if external_irs_api "$form_id" "$irs_seconds"; then
        send "/v1/tasks/$id/complete" "$(jq -nc --arg w "$worker_id" '{worker_id: $w}')"
    else
        send "/v1/tasks/$id/fail" "$(jq -nc --arg w "$worker_id" '{reason: "IRS mismatch", worker_id: $w}')"
    fi
    case "$status" in
        200) echo "$status $id $form_id" ;;
        409) echo "409 $id dropped: $(cat "$body_file")" ;;   # not ours any more: the next one
        *)   refused "task $id" ;;
    esac
done
