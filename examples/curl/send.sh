#!/usr/bin/env bash
# Plain HTTP: one agent run and the user's feedback on it, with curl and an ingest key.
#
#   export AGENTGYM_URL=http://127.0.0.1:8080        # the API (agentgym gateway run)
#   export AGENTGYM_KEY=agk_...                      # agentgym keys create --tenant acme --scopes ingest
#   bash examples/curl/send.sh
#
# The run's trace id is chosen here, so the feedback can name it; prints it last.
set -euo pipefail
URL=${AGENTGYM_URL:-http://127.0.0.1:8080}
KEY=${AGENTGYM_KEY:?set AGENTGYM_KEY to an API key with the ingest scope}
TRACE_ID=${TRACE_ID:-run-$(date +%s)-$RANDOM$RANDOM}

curl -sS --fail-with-body "$URL/v1/experiences" -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d '{
  "agent_id": "support-bot", "trace_id": "'"$TRACE_ID"'",
  "input": "Where is my order A17?", "output": "Your order A17 ships tomorrow.",
  "model_name": "llama-3.2-1b", "model_version": "v3", "latency_ms": 812.5,
  "prompt_tokens": 42, "completion_tokens": 9,
  "steps": [{"name": "lookup_order", "kind": "tool", "input": "{\"order_id\": \"A17\"}",
             "output": "{\"status\": \"ships tomorrow\"}"}]}'
echo

curl -sS --fail-with-body "$URL/v1/feedback" -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -H "X-AgentGym-Agent: support-bot" -d '{"trace_id": "'"$TRACE_ID"'", "rating": 5}'
echo
echo "trace_id=$TRACE_ID"
