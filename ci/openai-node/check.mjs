// Drives a running proxy (with qwen-mock as its upstream) through the official
// `openai` Node package: the proxy's answers must be consumable by the SDK as is.
//   node check.mjs --proxy http://127.0.0.1:PORT --mock http://127.0.0.1:PORT [--dialect v2]
// With --dialect v2 the upstream thinks before it answers, and the SDK must see that
// reasoning in `reasoning_content` (message and deltas), never in `content`.
import OpenAI from 'openai';
import { randomUUID } from 'node:crypto';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
if (!args.proxy || !args.mock) {
  console.error('usage: node check.mjs --proxy URL --mock URL');
  process.exit(2);
}

const token = `sdk-${randomUUID()}`;
const client = new OpenAI({ apiKey: token, baseURL: `${args.proxy}/v1`, maxRetries: 0, timeout: 20000 });
const request = {
  model: 'qwen-plus-latest',
  messages: [{ role: 'user', content: 'openai-node check 你好' }],
};
let failures = 0;

async function check(name, fn) {
  try {
    await fn();
    console.log(`PASS ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
function expect(cond, msg) {
  if (!cond) throw new Error(msg);
}
async function queue(steps) {
  const r = await fetch(`${args.mock}/__mock/scenarios`, {
    method: 'POST',
    body: JSON.stringify({ token, route: 'chat', steps }),
  });
  expect(r.ok, `queueing a mock scenario failed: ${r.status}`);
}

const v2 = args.dialect === 'v2';
let full = '';
let fullReasoning = '';
let fullUsage = null;
await check('models.list returns the upstream models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  expect(ids.length >= 6 && ids.includes('qwen-plus-latest'), `ids: ${ids}`);
});
await check('non-streaming completion', async () => {
  const c = await client.chat.completions.create(request);
  full = c.choices[0].message.content;
  expect(typeof full === 'string' && full.length > 0, 'empty content');
  if (v2) {
    fullReasoning = c.choices[0].message.reasoning_content;
    expect(typeof fullReasoning === 'string' && fullReasoning.length > 0,
      `no reasoning_content in the message: ${JSON.stringify(c.choices[0].message)}`);
    expect(!full.includes(fullReasoning), 'the reasoning is in content too');
  }
  expect(c.usage && c.usage.completion_tokens > 0 && c.usage.total_tokens >= c.usage.completion_tokens,
    `usage ${JSON.stringify(c.usage)}`);
  fullUsage = c.usage;
  expect(c.choices[0].finish_reason === 'stop', `finish_reason ${c.choices[0].finish_reason}`);
});
await check('streaming completion gives exactly the same text', async () => {
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let text = '';
  let reasoning = '';
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks++;
    expect(chunk.object === 'chat.completion.chunk', `object ${chunk.object}`);
    const choice = chunk.choices[0];
    if (choice) {
      text += choice.delta.content ?? '';
      reasoning += choice.delta.reasoning_content ?? '';
      finish = choice.finish_reason ?? finish;
    }
  }
  expect(chunks > 1, `only ${chunks} chunk(s)`);
  expect(text === full, `streamed ${JSON.stringify(text)} != non-streamed ${JSON.stringify(full)}`);
  expect(finish === 'stop', `finish_reason ${finish}`);
  expect(reasoning === fullReasoning,
    `streamed reasoning ${JSON.stringify(reasoning)} != non-streamed ${JSON.stringify(fullReasoning)}`);
});
await check('stream_options.include_usage: one usage chunk, choices empty, just before the end', async () => {
  const stream = await client.chat.completions.create(
    { ...request, stream: true, stream_options: { include_usage: true } });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const last = chunks[chunks.length - 1];
  expect(last && Array.isArray(last.choices) && last.choices.length === 0,
    `last chunk ${JSON.stringify(last)}`);
  const u = last && last.usage;
  expect(u && u.prompt_tokens === fullUsage.prompt_tokens &&
    u.completion_tokens === fullUsage.completion_tokens &&
    u.total_tokens === u.prompt_tokens + u.completion_tokens,
    `stream usage ${JSON.stringify(u)} against the completion's ${JSON.stringify(fullUsage)}`);
  const early = chunks.slice(0, -1).filter((c) => c.usage !== null);
  expect(early.length === 0, `chunks before the last carry usage: ${JSON.stringify(early[0])}`);
});
await check('a stream the upstream cuts mid-way raises an error', async () => {
  await queue([{ stream: { truncate_after: 3 } }]);
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let raised = null;
  try {
    for await (const chunk of stream) void chunk;
  } catch (e) {
    raised = e;
  }
  expect(raised !== null, 'the SDK saw a truncated stream as a success');
});
await check('an upstream 400 surfaces as BadRequestError', async () => {
  let raised = null;
  try {
    await client.chat.completions.create({ ...request, model: 'no-such-model' });
  } catch (e) {
    raised = e;
  }
  expect(raised instanceof OpenAI.BadRequestError, `got ${raised}`);
});
await check('models.retrieve returns one model, and NotFoundError for an unknown id', async () => {
  const m = await client.models.retrieve('qwen-plus-latest');
  expect(m.id === 'qwen-plus-latest' && m.object === 'model', `got ${JSON.stringify(m)}`);
  let raised = null;
  try {
    await client.models.retrieve('no-such-model');
  } catch (e) {
    raised = e;
  }
  expect(raised instanceof OpenAI.NotFoundError, `got ${raised}`);
  expect(raised.code === 'model_not_found' && raised.param === 'model',
    `code ${raised.code}, param ${raised.param}`);
});
await check("the proxy's own refusals carry OpenAI's error shape with a code", async () => {
  let raised = null;
  try {
    await client.chat.completions.create({ messages: request.messages });
  } catch (e) {
    raised = e;
  }
  expect(raised instanceof OpenAI.BadRequestError, `got ${raised}`);
  expect(raised.code === 'missing_required_parameter' && raised.param === 'model',
    `code ${raised.code}, param ${raised.param}, error ${JSON.stringify(raised.error)}`);
  expect(raised.error && raised.error.type === 'invalid_request_error', `type ${raised.error?.type}`);
});
await check("the SDK's telemetry headers and User-Agent do not reach the upstream", async () => {
  const r = await fetch(`${args.mock}/__mock/journal?token=${token}`);
  expect(r.ok, `journal: ${r.status}`);
  const journal = await r.json();
  const entries = Array.isArray(journal) ? journal : (journal.entries ?? journal.requests ?? []);
  expect(entries.length > 0, `no journal entries: ${JSON.stringify(journal).slice(0, 200)}`);
  for (const e of entries) {
    for (const h of e.headers ?? []) {
      const name = h.name.toLowerCase();
      expect(!name.startsWith('x-stainless-') && name !== 'user-agent',
        `the upstream got ${h.name}: ${h.value}`);
    }
  }
});
console.log(failures ? `openai-node: ${failures} check(s) failed` : 'openai-node: all checks passed');
process.exit(failures ? 1 : 0);
