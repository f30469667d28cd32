// @ts-check
// A non-Python agent through the API, with fetch (Node 18+; typed with JSDoc, so `tsc --checkJs` checks it):
// ask which A/B variant serves this user, answer with that variant's model, record the run
// (with its assignment) and the user's feedback.
//
//   export AGENTGYM_URL=http://127.0.0.1:8080   # the API (agentgym gateway run)
//   export AGENTGYM_KEY=agk_...                 # scope ingest (enough to read assignments too)
//   export EXPERIMENT_ID=acme:checkout          # optional: an experiment of the key's tenant
//   node examples/typescript/agent.mjs user-123 "Where is my order A17?"
//
// Prints the run's trace id last.

/**
 * @typedef {{experiment_id: string, variant: string, model_version: string, unit_type: "user" | "session" | "trace",
 *            unit_id: string, config_version: number, status: string, active: boolean}} Assignment
 * @typedef {{name: string, kind: "llm" | "tool" | "retrieval" | "other", input?: string, output?: string,
 *            latency_ms?: number}} Step
 */

import { randomUUID } from "node:crypto";

const url = process.env.AGENTGYM_URL ?? "http://127.0.0.1:8080";
const key = process.env.AGENTGYM_KEY;
if (!key) throw new Error("set AGENTGYM_KEY to an API key with the ingest scope");
const headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json", "X-AgentGym-Agent": "support-bot" };

/**
 * One API call; a refusal throws with the API's JSON error (it names the field and the reason).
 * @param {string} method @param {string} path @param {unknown} [body] @returns {Promise<any>}
 */
async function api(method, path, body) {
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/**
 * The variant serving `unitId`, or null (no experiment, a draft or stopped one: serve the default model).
 * @param {string} experimentId @param {string} unitId @returns {Promise<Assignment | null>}
 */
async function assignment(experimentId, unitId) {
  const q = `?unit_id=${encodeURIComponent(unitId)}`;
  return (await api("GET", `/v1/experiments/${encodeURIComponent(experimentId)}/assignment${q}`)).assignment;
}

const [userId = "user-123", question = "Where is my order A17?"] = process.argv.slice(2);
const started = performance.now();
const served = process.env.EXPERIMENT_ID ? await assignment(process.env.EXPERIMENT_ID, userId) : null;
const modelVersion = served?.model_version ?? "v3"; // the default model when no experiment serves this user

// ... the agent calls its model `modelVersion` and its tools here ...
/** @type {Step[]} */
const steps = [{ name: "lookup_order", kind: "tool", input: JSON.stringify({ order_id: "A17" }),
                 output: JSON.stringify({ status: "ships tomorrow" }), latency_ms: 3.5 }];
const answer = "Your order A17 ships tomorrow.";

const traceId = randomUUID().replaceAll("-", "");
await api("POST", "/v1/experiences", {
  trace_id: traceId, user_id: userId, input: question, output: answer, steps,
  model_name: "llama-3.2-1b", model_version: modelVersion, latency_ms: performance.now() - started,
  // the run counts for the experiment only with its assignment
  assignment: served && { experiment_id: served.experiment_id, variant: served.variant, unit_type: served.unit_type,
                          unit_id: served.unit_id, config_version: served.config_version, experiment_status: served.status },
});
await api("POST", "/v1/feedback", { trace_id: traceId, thumbs_up: true, user_id: userId });
console.log(`variant=${served?.variant ?? "none"} model_version=${modelVersion}`);
console.log(`trace_id=${traceId}`);
