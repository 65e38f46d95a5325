// file: workers/node/tax_validator.mjs
// @ts-check
/**
 * The seed's tax-validator loop in Node 20: openapi-fetch on the types openapi-typescript
 * generates from the API's own /openapi.json (schema.d.ts; see examples/workers/README.md).
 * Plain JavaScript, so plain `node` runs it; `npm run check` type-checks it against the
 * generated paths and bodies. The HTTP rules it follows are the README's: 204 poll again;
 * 409 the task is no longer ours (lease lost, finished by someone else): drop it and go on;
 * 503 or no answer: back off and send the same request again.
 *
 *   export OMS_API_URL=http://127.0.0.1:8000
 *   export OMS_TOKEN=$(oms token create --role worker --topics validate_tax_id --name irs-bot)
 *   node examples/workers/node/tax_validator.mjs
 */
import { setTimeout as sleep } from "node:timers/promises";

import createClient from "openapi-fetch";

const api = process.env.OMS_API_URL ?? "http://127.0.0.1:8000";
const topic = process.env.TOPIC ?? "validate_tax_id";
const workerId = process.env.WORKER_ID ?? `tax-validator-node-${process.pid}`;
const token = process.env.OMS_TOKEN;
/** The longest pause between two tries while the API answers 503 or not at all, in ms. */
const MAX_BACKOFF_MS = 30_000;
/** The long poll waits up to max_wait (10 s): a request waits longer than that for its answer. */
const REQUEST_TIMEOUT_MS = 40_000;

if (!token) {
  console.error(`set OMS_TOKEN to a worker token for ${topic}`);
  process.exit(2);
}

/** @type {import("openapi-fetch").Client<import("./schema.js").paths>} */
const client = createClient({ baseUrl: api, headers: { Authorization: `Bearer ${token}` } });

/**
 * Stand-in for the IRS check: as slow as the payload's irs_seconds (or IRS_LATENCY); ids ending in X do not match.
 * @param {Record<string, unknown>} payload
 */
async function externalIrsApi(payload) {
  await sleep(1000 * Number(payload.irs_seconds ?? process.env.IRS_LATENCY ?? "0.05"));
  return !String(payload.form_id).endsWith("X");
}

/**
 * `call()` until the API answers with something other than 503, waiting 1 s, 2 s, 4 s … 30 s between tries.
 * Sending a completion again is safe: the holder's repeat of a completion that did land is answered as a success.
 * @template {{response: Response, error?: unknown}} R
 * @param {() => Promise<R>} call
 * @returns {Promise<R>}
 */
async function patiently(call) {
  for (let pause = 1000; ; pause = Math.min(pause * 2, MAX_BACKOFF_MS)) {
    try {
      const answer = await call();
      if (answer.response.status !== 503) return answer;
      console.error(`503 ${JSON.stringify(answer.error)}: again in ${pause / 1000}s`);
    } catch (error) {  // the API is restarting, or a proxy cut the long poll
      console.error(`no answer (${error instanceof Error ? error.message : error}): again in ${pause / 1000}s`);
    }
    await sleep(pause);
  }
}

/** A fresh deadline for one request. */
function deadline() {
  return AbortSignal.timeout(REQUEST_TIMEOUT_MS);
}

/**
 * Validate the form; complete or fail the task as its holder, and say how that went on stdout.
 * @param {string} taskId
 * @param {Record<string, unknown>} payload
 */
async function serve(taskId, payload) {
  const path = { task_id: taskId };
  const answer = (await externalIrsApi(payload))
    ? await patiently(() => client.POST("/v1/tasks/{task_id}/complete", {
        params: { path }, body: { worker_id: workerId }, signal: deadline(),
      }))
    : await patiently(() => client.POST("/v1/tasks/{task_id}/fail", {
        params: { path }, body: { reason: "IRS mismatch", worker_id: workerId }, signal: deadline(),
      }));
  const status = answer.response.status;
  if (status === 409) {  // lease lost, or finished behind our back: not ours any more
    console.log(`409 ${taskId} dropped: ${JSON.stringify(answer.error)}`);
  } else if (status !== 200) {
    console.error(`${status} ${taskId} refused: ${JSON.stringify(answer.error)}`);
  } else {
    console.log(`200 ${taskId} ${payload.form_id}`);
  }
}

console.log(`ready ${workerId}`);
for (;;) {
  const found = await patiently(() => client.POST("/v1/topics/{topic}/fetch", {
    params: { path: { topic } }, body: { max_wait: "10s", worker_id: workerId }, signal: deadline(),
  }));
  const status = found.response.status;
  if (status === 204) continue;  // no work, loop again
  if (status === 401 || status === 403) {
    console.error(`${status}: ${JSON.stringify(found.error)}`);
    process.exit(1);
  }
  if (status !== 200 || found.data === undefined) {
    console.error(`fetch refused (${status}): ${JSON.stringify(found.error)}`);
    await sleep(1000);
    continue;
  }
  // the fields this loop reads, whatever else the document says a task holds
  const task = /** @type {{id: string, payload: Record<string, unknown>}} */ (found.data);
  await serve(task.id, task.payload);
}
