#!/usr/bin/env node
// node-v2-pool.mjs: a minimal, CORRECT proxy for the Qwen v2 web-chat API (chat.qwen.ai:
// POST /api/v2/chats/new, then POST /api/v2/chat/completions?chat_id=ID, always streamed)
// on Node.js built-ins only, which creates chats ahead of need: a pool of spare chats per
// credential and model, as the field's v2 proxies keep to save chats/new's round trip on
// the caller's time. node-v2-clean.mjs with its chat creation replaced by the pool.
//
// DEFECTS: none. Where it differs from node-v2-clean it is by choice, in ways SPEC.md
// ("Dialects", V2-1) leaves open: an attempt takes a spare chat when the pool has one and
// refills the pool at once (or after --refill-delay-ms); with the pool empty it creates the
// chat it needs and the spares at the same time, and the attempt's outcome is the needed
// chat's creation (a spare that failed is dropped, not retried: the next attempt that
// finds the pool short creates it again). Every chat completes one attempt and is never
// used again. Everything else (the prompt as JSON lines, reasoning, retries, the HTTP
// surface) is node-v2-clean.mjs's.
//
// --refill-delay-ms N: refill the pool N ms after a spare is taken (default 0: at once),
// so that refills land after the caller's answer, as a background refill does.
//
// Usage: node node-v2-pool.mjs --port 0 --upstream http://127.0.0.1:9100 [--refill-delay-ms N]
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
};
const PORT = Number(arg('--port', '8000'));
const UPSTREAM = arg('--upstream', 'https://chat.qwen.ai').replace(/\/+$/, '');
const NAME = 'node-v2-pool';
const POOL_SPARES = 2, REFILL_DELAY_MS = Number(arg('--refill-delay-ms', '0'));
const MAX_RETRIES = 3, RETRY_BASE_MS = 20, RETRY_AFTER_CAP_MS = 2000;
const ATTEMPT_TIMEOUT_MS = 1000, DEADLINE_MS = 2500;
const CACHE_TTL_MS = 2000, CACHE_MAX = 8, STALE_GRACE_MS = 2000;
const MAX_BODY = 65536, IDLE_MS = 1200, KEEPALIVE_MS = 250;
const CORS_ORIGINS = ['https://conformance.example', 'http://localhost:3000'];
let streamPauses = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const backoff = (n) => { const d = RETRY_BASE_MS * 2 ** (n - 1); return d / 2 + Math.random() * (d / 2); };

function sendJson(res, status, obj, headers = {}) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(body);
}
function sendError(res, status, message, type = 'api_error', headers = {}, param = null) {
  sendJson(res, status, { error: { message, type, param, code: null } }, headers);
}

// ---- upstream attempts ----

function retryAfterMs(h) {
  const v = h.get('retry-after');
  if (v == null) return null;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - Date.now());
}

// The message of an upstream error body: v1's detail, OpenAI's error.message, or v2's
// envelope {"success":false,"data":{"code","details"}}.
function upstreamMessage(j) {
  if (j === null || typeof j !== 'object') return null;
  if (typeof j.detail === 'string') return j.detail;
  if (typeof j.error?.message === 'string') return j.error.message;
  if (typeof j.error?.details === 'string') return `${j.error.code || 'error'}: ${j.error.details}`;
  if (typeof j.data?.details === 'string') return j.data.details;
  if (Array.isArray(j.ret)) return j.ret.join(' ');
  return null;
}

// Classifies an upstream answer that is not a success: retry or relay.
async function failure(resp) {
  const ct = resp.headers.get('content-type') || '';
  const text = await resp.text().catch(() => '');
  const what = `upstream HTTP ${resp.status}${ct.includes('text/html') ? ' (HTML page)' : ''}`;
  if (ct.includes('text/html')) return { retry: true, status: resp.status, reason: what };
  const ra = retryAfterMs(resp.headers);
  let detail = null;
  try { detail = upstreamMessage(JSON.parse(text)); } catch {}
  const relay = { relay: true, status: resp.status, message: detail || what, retryAfter: resp.headers.get('retry-after') };
  if ([500, 502, 504].includes(resp.status)) return { retry: true, status: resp.status, reason: what };
  if (resp.status === 503 || resp.status === 429) {
    if (ra != null) return ra <= RETRY_AFTER_CAP_MS ? { retry: true, status: resp.status, reason: what, waitMs: ra } : relay;
    return resp.status === 503 ? { retry: true, status: resp.status, reason: what } : relay;
  }
  return relay;
}

// In-band failures: the firewall's {"ret":["FAIL_SYS_USER_VALIDATE",...]}, v2's
// {"success":false,...}, an {"error":{...}}; a 200 that is one of them is a failure.
const inband = (j) => (Array.isArray(j.ret) && j.ret.some((s) => typeof s === 'string' && s.startsWith('FAIL_'))) || j.success === false || j.error != null;

// An in-band failure (at HTTP 200) as an attempt's outcome: an expired token is the
// caller's to fix (401, not retried); the firewall, the quota and the rest are retried.
function inbandFailure(j, where) {
  const message = upstreamMessage(j) || 'in-band failure';
  if (/^unauthorized$/i.test(j?.data?.code || '')) return { relay: true, status: 401, message };
  return { retry: true, status: 200, reason: `upstream ${where} answered an in-band failure (${message.slice(0, 120)})` };
}

// Runs attempt(signal, ac, started) until it succeeds, must be relayed, or retries run
// out. started() ends the attempt's timeout: the upstream has begun to answer, and from
// then on only its silence (IDLE_MS) ends it.
async function withRetries(attempt, stop = () => false) {
  const deadline = Date.now() + DEADLINE_MS;
  let last = null;
  for (let n = 1; ; n++) {
    if (stop()) return { gone: true };
    const budget = Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now());
    if (budget <= 0) return { deadline: true, last };
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; ac.abort(); }, budget);
    let r;
    try {
      r = await attempt(ac.signal, ac, () => clearTimeout(timer));
    } catch (e) {
      const timeout = timedOut;
      r = { retry: true, timeout, reason: timeout ? `upstream timed out after ${budget} ms` : ac.idle ? `upstream stream idle for more than ${IDLE_MS} ms` : `upstream connection failed (${e.cause?.code || e.message})` };
      if (timeout && budget < ATTEMPT_TIMEOUT_MS) return { deadline: true, last: r };
    } finally {
      clearTimeout(timer);
    }
    if (!r.retry) return r;
    last = r;
    if (n > MAX_RETRIES) return { exhausted: true, last };
    const wait = Math.max(backoff(n), r.waitMs || 0);
    if (Date.now() + wait >= deadline) return { deadline: true, last };
    await sleep(wait);
  }
}

function answerFailure(res, r) {
  if (r.relay) {
    const type = r.status === 401 ? 'authentication_error' : r.status < 500 ? 'invalid_request_error' : 'api_error';
    return sendError(res, r.status, r.message, type, r.retryAfter ? { 'Retry-After': r.retryAfter } : {});
  }
  if (r.deadline) return sendError(res, 504, `request deadline of ${DEADLINE_MS} ms reached${r.last ? `; last: ${r.last.reason}` : ''}`, 'timeout_error');
  if (r.last.timeout) return sendError(res, 504, `${r.last.reason} (after ${MAX_RETRIES + 1} attempts)`, 'timeout_error');
  return sendError(res, 502, `upstream failed after ${MAX_RETRIES + 1} attempts; last: ${r.last.reason}`, 'upstream_error');
}

function upstreamHeaders(ctx, json) {
  const h = { Authorization: ctx.auth, 'X-Request-Id': ctx.rid };
  if (json) Object.assign(h, { 'Content-Type': 'application/json' });
  return h;
}

// ---- the model list: per-credential cache, TTL, LRU bound, stale grace, single flight ----

const cache = new Map(); // token -> { body, at }; Map order is recency
const flights = new Map();

// The list out of v2's envelope {"success":true,"data":{"data":[...]}} (GO's extractor:
// data, data.data or data.models), or null.
function modelArray(j) {
  if (j === null || typeof j !== 'object') return null;
  for (const v of [j.data, j.data?.data, j.data?.models]) if (Array.isArray(v)) return v;
  return null;
}

function fetchModels(ctx) {
  return withRetries(async (signal) => {
    const resp = await fetch(`${UPSTREAM}/api/v2/models/`, { headers: upstreamHeaders(ctx, false), signal });
    const ct = resp.headers.get('content-type') || '';
    if (resp.status !== 200 || ct.includes('text/html')) return failure(resp);
    const text = await resp.text();
    let j = null;
    try { j = JSON.parse(text); } catch {}
    if (j !== null && typeof j === 'object' && inband(j)) return inbandFailure(j, 'model list');
    const list = modelArray(j);
    if (list) return { ok: true, body: JSON.stringify({ object: 'list', data: list }) };
    return { retry: true, status: 200, reason: 'upstream model list is not JSON with a list' };
  });
}

async function handleModels(req, res, ctx, v1) {
  const serve = (body, mark) => {
    let out = body;
    if (v1) {
      const data = JSON.parse(body).data.map((m) => ({ id: m.id, object: 'model', created: typeof m.created === 'number' ? m.created : 0, owned_by: m.owned_by || 'qwen' }));
      out = JSON.stringify({ object: 'list', data });
    }
    sendJson(res, 200, out, { 'X-Cache': mark, 'X-Request-Id': ctx.rid });
  };
  const now = Date.now();
  let entry = cache.get(ctx.token);
  if (entry && now - entry.at > CACHE_TTL_MS + STALE_GRACE_MS) { cache.delete(ctx.token); entry = null; }
  if (entry) { cache.delete(ctx.token); cache.set(ctx.token, entry); }
  if (entry && now - entry.at <= CACHE_TTL_MS) return serve(entry.body, 'HIT');
  let flight = flights.get(ctx.token);
  if (!flight) {
    flight = fetchModels(ctx).finally(() => flights.delete(ctx.token));
    flights.set(ctx.token, flight);
  }
  const r = await flight;
  if (r.ok) {
    cache.delete(ctx.token);
    cache.set(ctx.token, { body: r.body, at: Date.now() });
    while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
    return serve(r.body, 'MISS');
  }
  if (r.relay && r.status === 401) cache.delete(ctx.token);
  else if (!r.relay && entry && Date.now() - entry.at <= CACHE_TTL_MS + STALE_GRACE_MS) return serve(entry.body, 'STALE');
  answerFailure(res, r);
}

// ---- chat: the request the v2 upstream takes ----

// usage in OpenAI's names (HTTP-9): the upstream's input_tokens and output_tokens become
// prompt_tokens and completion_tokens, total_tokens their sum; other fields are kept.
function openaiUsage(usage) {
  if (usage === null || typeof usage !== 'object' || Array.isArray(usage)) return usage;
  const { input_tokens: input, output_tokens: output, ...rest } = usage;
  const prompt = rest.prompt_tokens ?? input, completion = rest.completion_tokens ?? output;
  if (typeof prompt !== 'number' || typeof completion !== 'number') return usage;
  return { ...rest, prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function validateChat(raw) {
  let b;
  try { b = JSON.parse(raw); } catch { return ['the body is not valid JSON', null]; }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return ['the body must be a JSON object', null];
  if (typeof b.model !== 'string' || !b.model) return ['model is required (a string)', 'model'];
  if (!Array.isArray(b.messages) || b.messages.length === 0) return ['messages must be a non-empty array', 'messages'];
  return [null, b];
}

// The text of an OpenAI message's content: a string, or its text parts.
function textOf(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p?.text === 'string' ? p.text : '')).join('');
  return content == null ? '' : String(content);
}

// The one message the upstream answers: a single message as it is; a conversation as
// JSON lines, one {"role","content"} object per message, in order.
function flatten(messages) {
  if (messages.length === 1) return textOf(messages[0]?.content);
  return messages.map((m) => JSON.stringify({ role: typeof m?.role === 'string' ? m.role : 'user', content: textOf(m?.content) })).join('\n');
}

function completionBody(body, chatId, prompt) {
  const thinking = body.enable_thinking !== false && body.reasoning_effort !== 'none';
  const ts = Math.floor(Date.now() / 1000);
  return JSON.stringify({
    stream: true, incremental_output: true, chat_id: chatId, chat_mode: 'normal', model: body.model, parent_id: null, timestamp: ts,
    messages: [{
      fid: randomUUID(), parentId: null, childrenIds: [], role: 'user', content: prompt, user_action: 'chat', files: [],
      timestamp: ts, models: [body.model], chat_type: 't2t', sub_chat_type: 't2t', extra: { meta: { subChatType: 't2t' } },
      feature_config: { thinking_enabled: thinking, output_schema: 'phase' },
    }],
  });
}

// ---- chat: the pool of spare chats ----

// One chat creation: { chatId } or an outcome for withRetries.
async function createChat(ctx, model, signal) {
  const created = await fetch(`${UPSTREAM}/api/v2/chats/new`, {
    method: 'POST', headers: upstreamHeaders(ctx, true), signal,
    body: JSON.stringify({ title: 'New Chat', models: [model], chat_type: 't2t', chat_mode: 'normal', timestamp: Date.now() }),
  });
  const ct = created.headers.get('content-type') || '';
  if (created.status < 200 || created.status > 299 || ct.includes('text/html')) return failure(created);
  let j = null;
  try { j = JSON.parse(await created.text()); } catch {}
  if (j === null || typeof j !== 'object') return { retry: true, status: created.status, reason: 'upstream chats/new answer is not JSON' };
  if (j.success !== true || typeof j.data?.id !== 'string' || !j.data.id) return inbandFailure(j, 'chats/new');
  return { chatId: j.data.id };
}

// credential + model -> { chats: ids not used yet, creating: spares in flight }
const pools = new Map();
const poolOf = (ctx, model) => {
  const key = `${ctx.auth}\n${model}`;
  let p = pools.get(key);
  if (!p) { p = { chats: [], creating: 0 }; pools.set(key, p); }
  return p;
};

// Creates spares until the pool (with those in flight) holds POOL_SPARES. Each has its own
// timeout: a spare belongs to no caller, so no caller's abort ends it.
function refill(ctx, model, p) {
  for (let n = POOL_SPARES - p.chats.length - p.creating; n > 0; n--) {
    p.creating++;
    const signal = AbortSignal.timeout(ATTEMPT_TIMEOUT_MS);
    createChat(ctx, model, signal)
      .then((r) => {
        if (r.chatId) p.chats.push(r.chatId);
        else process.stderr.write(`spare chat not created: ${r.reason || r.message || r.status}\n`);
      }, (e) => process.stderr.write(`spare chat not created: ${e.cause?.code || e.message}\n`))
      .finally(() => { p.creating--; });
  }
}

// The chat an attempt completes: a spare when the pool has one (refilled at once or after
// REFILL_DELAY_MS), or one created now beside the spares.
function takeChat(ctx, model, signal) {
  const p = poolOf(ctx, model);
  const spare = p.chats.shift();
  if (spare !== undefined) {
    if (REFILL_DELAY_MS > 0) setTimeout(() => refill(ctx, model, p), REFILL_DELAY_MS);
    else refill(ctx, model, p);
    return Promise.resolve({ chatId: spare });
  }
  const need = createChat(ctx, model, signal);
  refill(ctx, model, p);
  return need;
}

// One attempt up to the completion's event stream: a chat of its own, then its completion.
// Returns { resp } (a 200 event stream) or an outcome for withRetries.
async function openCompletion(ctx, body, prompt, signal) {
  const chat = await takeChat(ctx, body.model, signal);
  if (!chat.chatId) return chat;
  const chatId = chat.chatId;
  const resp = await fetch(`${UPSTREAM}/api/v2/chat/completions?chat_id=${encodeURIComponent(chatId)}`, {
    method: 'POST', headers: upstreamHeaders(ctx, true), body: completionBody(body, chatId, prompt), signal,
  });
  const ct = resp.headers.get('content-type') || '';
  if (resp.status !== 200 || ct.includes('text/html')) return failure(resp);
  if (!ct.includes('text/event-stream')) {
    // The challenge, the quota and "The chat is in progress!" come as the whole JSON body.
    const text = await resp.text().catch(() => '');
    try { const k = JSON.parse(text); if (k !== null && typeof k === 'object' && inband(k)) return inbandFailure(k, 'completion'); } catch {}
    return { retry: true, status: 200, reason: `upstream answered ${ct || 'no content type'}, not a stream` };
  }
  return { resp };
}

// ---- chat: reading the v2 stream ----

// WHATWG event-stream parsing: any line ending, comments, events split or coalesced.
// An event cut by the end of the body is discarded (WHATWG), so the caller must know one
// was pending (cut()); comment lines count as signs of life for the idle clock (comments).
class SSEParser {
  // scanned: where the next feed resumes, the rest of buf holds no line end (rescanning a
  // long event at every read is quadratic, and only complete events reset the idle clock).
  constructor() { this.buf = ''; this.data = null; this.first = true; this.comments = 0; this.scanned = 0; }
  // At the end of the body: a CR held back for an LF ends its line after all.
  finish() { return this.buf.endsWith('\r') ? this.feed('\n') : []; }
  cut() { return this.data !== null || this.buf !== ''; }
  feed(text) {
    if (this.first && text) { if (text[0] === '\uFEFF') text = text.slice(1); this.first = false; }
    this.buf += text;
    const out = [];
    let start = 0, i = this.scanned;
    for (; i < this.buf.length; i++) {
      const c = this.buf[i];
      if (c !== '\n' && c !== '\r') continue;
      if (c === '\r' && i + 1 === this.buf.length) break; // CR at the end: LF may follow
      const line = this.buf.slice(start, i);
      if (c === '\r' && this.buf[i + 1] === '\n') i++;
      start = i + 1;
      if (line === '') { if (this.data !== null) out.push(this.data.join('\n')); this.data = null; continue; }
      if (line[0] === ':') { this.comments++; continue; }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') (this.data ||= []).push(value);
    }
    this.buf = this.buf.slice(start);
    this.scanned = i - start;
    return out;
  }
}

// The v2 frames of one completion, turned into what the caller gets: { content, reasoning,
// finish } per frame (any may be empty), { bad } for a failure, { done } for an upstream
// [DONE]. Only response index "0" is read (the first created frame when none has an
// index); summary_thought arrays are cumulative, so only what is new is reasoning.
class V2Frames {
  constructor() { this.main = null; this.thoughts = []; this.usage = null; this.finished = false; }
  newThoughts(list) {
    let out = '';
    list.forEach((el, i) => {
      if (typeof el !== 'string') return;
      const prev = this.thoughts[i];
      if (prev === undefined) { out += (i > 0 ? '\n\n' : '') + el; this.thoughts[i] = el; }
      else if (el.length > prev.length && el.startsWith(prev)) { out += el.slice(prev.length); this.thoughts[i] = el; }
    });
    return out;
  }
  take(data) {
    if (data === '[DONE]') return { done: true };
    let j;
    try { j = JSON.parse(data); } catch { return { bad: 'upstream sent an event that is not JSON' }; }
    if (j === null || typeof j !== 'object' || Array.isArray(j)) return { bad: 'upstream sent an event that is not a JSON object' };
    if (inband(j)) return { bad: `upstream sent an in-band failure (${(upstreamMessage(j) || 'no message').slice(0, 120)})` };
    const created = j['response.created'];
    if (created !== null && typeof created === 'object') {
      const index = created.response_index;
      if (this.main === null && (index == null || String(index) === '0')) this.main = created.response_id ?? '';
      return {};
    }
    if (this.main !== null && j.response_id != null && j.response_id !== this.main) return {};
    if (j.usage !== null && typeof j.usage === 'object') this.usage = j.usage;
    const delta = Array.isArray(j.choices) ? j.choices[0]?.delta : null;
    if (delta === null || typeof delta !== 'object') return {};
    const text = typeof delta.content === 'string' ? delta.content : '';
    const out = { content: '', reasoning: '', finish: null };
    if (delta.phase === 'thinking_summary') {
      const list = delta.extra?.summary_thought?.content;
      if (Array.isArray(list)) out.reasoning = this.newThoughts(list);
    } else if (delta.phase === 'think') {
      out.reasoning = text;
    } else if (delta.phase == null || delta.phase === 'answer' || delta.phase === 'think') {
      out.content = text;
      if (delta.status === 'finished' && delta.phase !== 'think') { out.finish = 'stop'; this.finished = true; }
    } // other phases (image_gen, tools): nothing for a text caller
    return out;
  }
}

async function handleChat(req, res, ctx, raw) {
  const [problem, body] = validateChat(raw);
  if (problem) return sendError(res, 400, problem, 'invalid_request_error', {}, body);
  const prompt = flatten(body.messages);
  if (body.stream === true) return streamChat(req, res, ctx, body, prompt);
  // Not streamed for the caller: the upstream streams all the same, read whole.
  const r = await withRetries(async (signal, ac, started) => {
    const o = await openCompletion(ctx, body, prompt, signal);
    if (!o.resp) return o;
    started();
    const frames = new V2Frames(), parser = new SSEParser(), decoder = new TextDecoder('utf-8');
    const reader = o.resp.body.getReader();
    let content = '', reasoning = '', lastAlive = Date.now();
    const tick = setInterval(() => { if (Date.now() - lastAlive > IDLE_MS) { ac.idle = true; ac.abort(); } }, 25);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        const comments = parser.comments;
        const events = done ? parser.finish() : parser.feed(decoder.decode(value, { stream: true }));
        if (events.length || parser.comments > comments) lastAlive = Date.now();
        for (const data of events) {
          const f = frames.take(data);
          if (f.bad) { reader.cancel().catch(() => {}); return { retry: true, status: 200, reason: f.bad }; }
          if (f.done) break;
          content += f.content || '';
          reasoning += f.reasoning || '';
        }
        if (done) break;
      }
    } finally {
      clearInterval(tick);
    }
    reader.cancel().catch(() => {});
    if (!frames.finished) return { retry: true, status: 200, reason: 'upstream stream ended before the answer finished' };
    const message = { role: 'assistant', content };
    if (reasoning) message.reasoning_content = reasoning;
    const out = { id: `chatcmpl-${randomUUID()}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000), model: body.model, choices: [{ index: 0, message, finish_reason: 'stop' }] };
    if (frames.usage) out.usage = openaiUsage(frames.usage);
    return { ok: true, body: JSON.stringify(out) };
  });
  if (r.ok) return sendJson(res, 200, r.body, { 'X-Request-Id': ctx.rid });
  answerFailure(res, r);
}

async function streamChat(req, res, ctx, body, prompt) {
  let gone = false;
  res.on('close', () => { gone = true; ctx.upstream?.abort(); });
  res.on('error', () => {});
  const id = `chatcmpl-${randomUUID()}`, created = Math.floor(Date.now() / 1000);
  let roleSent = false, frames;
  const chunk = (delta, finish, usage) => {
    const c = { id, object: 'chat.completion.chunk', created, model: body.model, choices: [{ index: 0, delta, finish_reason: finish }] };
    if (usage) c.usage = openaiUsage(usage);
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  // A frame as what the caller gets: { chunk } (null when it carries nothing), { done }, { bad }.
  const toChunks = (data) => {
    const f = frames.take(data);
    if (f.bad || f.done) return f;
    if (!f.content && !f.reasoning && !f.finish) return { chunk: null };
    let out = '';
    if (f.content || f.reasoning || !roleSent) {
      const delta = roleSent ? {} : { role: 'assistant' };
      roleSent = true;
      if (f.reasoning) delta.reasoning_content = f.reasoning;
      if (f.content) delta.content = f.content;
      out += chunk(delta, null);
    }
    if (f.finish) out += chunk({}, f.finish, frames.usage);
    return { chunk: out };
  };
  // Attempts until the first frame with something for the caller: nothing reaches the
  // caller before it (SSE-7), and a failure before it is a failed attempt.
  let reader, decoder, parser, pending;
  const r = await withRetries(async (signal, ac) => {
    ctx.upstream = ac;
    const o = await openCompletion(ctx, body, prompt, signal);
    if (!o.resp) return o;
    reader = o.resp.body.getReader(); decoder = new TextDecoder('utf-8'); parser = new SSEParser(); frames = new V2Frames();
    roleSent = false;
    for (;;) {
      const { value, done } = await reader.read();
      const events = done ? parser.finish() : parser.feed(decoder.decode(value, { stream: true }));
      const chunks = events.map(toChunks);
      const bad = chunks.findIndex((c) => c.bad || c.done);
      const first = chunks.findIndex((c) => c.chunk);
      if (bad >= 0 && (first < 0 || bad < first)) { reader.cancel().catch(() => {}); return { retry: true, status: 200, reason: chunks[bad].bad || 'upstream stream ended before its answer' }; }
      if (first >= 0) { pending = chunks.slice(first); return { ok: true }; }
      if (done) return { retry: true, status: 200, reason: 'upstream stream ended before its answer' };
    }
  }, () => gone);
  if (gone) return;
  if (!r.ok) return answerFailure(res, r);
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no', 'X-Request-Id': ctx.rid });
  // lastAlive: the last complete event or comment, not the last read: a trickle of bytes
  // that completes neither is as idle as silence (SSE-10).
  let lastWrite = Date.now(), lastAlive = Date.now(), paused = false, idle = false;
  const write = async (s) => {
    lastWrite = Date.now();
    if (res.write(s) || gone) return;
    streamPauses++; paused = true;
    await new Promise((ok) => { res.once('drain', ok); res.once('close', ok); });
    paused = false; lastAlive = Date.now();
  };
  const tick = setInterval(() => {
    if (gone) return;
    if (!paused && Date.now() - lastAlive > IDLE_MS) { idle = true; ctx.upstream.abort(); }
    else if (!paused && Date.now() - lastWrite >= KEEPALIVE_MS) { lastWrite = Date.now(); res.write(': keep-alive\n\n'); }
  }, 25);
  let error = null, ended = false;
  try {
    // An upstream [DONE], or the end of the body after the answer's finished frame, is the
    // end; the end of the body before it, a cut stream (SSE-17).
    const handle = async (c) => {
      if (c.done) ended = true;
      if (c.bad) throw new Error(c.bad);
      if (c.chunk) await write(c.chunk);
    };
    for (const c of pending) { await handle(c); if (ended) break; }
    while (!ended && !gone) {
      const { value, done } = await reader.read();
      const comments = parser.comments;
      const events = done ? parser.finish() : parser.feed(decoder.decode(value, { stream: true }));
      if (events.length || parser.comments > comments) lastAlive = Date.now();
      for (const data of events) {
        await handle(toChunks(data));
        if (ended || gone) break;
      }
      if (done && !ended && (parser.cut() || !frames.finished)) throw new Error(parser.cut() ? 'upstream stream ended inside an event' : 'upstream stream ended before the answer finished');
      if (done) ended = true;
    }
    reader.cancel().catch(() => {});
  } catch (e) {
    error = idle ? `upstream stream idle for more than ${IDLE_MS} ms` : `upstream stream broke: ${e.cause?.code || e.message}`;
  }
  clearInterval(tick);
  if (gone) return;
  if (error) {
    res.end(`data: ${JSON.stringify({ error: { message: error, type: 'upstream_error', param: null, code: null } })}\n\n`);
    return;
  }
  // An upstream [DONE] before the answer's finished frame still ends the answer.
  if (!frames.finished) await write(chunk({}, 'stop', frames.usage));
  res.end('data: [DONE]\n\n');
}

// ---- routing ----

const ROUTES = { '/api/models': 'GET', '/v1/models': 'GET', '/api/chat/completions': 'POST', '/v1/chat/completions': 'POST' };

// Headers that take one value: Node keeps the first of two Authorization or Host lines in
// req.headers, while an upstream or a cache may read the other, so a second line is refused
// (INPUT-1). A control byte in a value is refused too (INPUT-2); Node's parser rejects most
// of them itself (clientError below), this covers what a lenient parser would let through.
const SINGLETONS = ['authorization', 'host', 'content-length'];
function headerProblem(raw) {
  const seen = new Set();
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    if (SINGLETONS.includes(name)) {
      if (seen.has(name)) return [`more than one ${raw[i]} header`, name];
      seen.add(name);
    }
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(raw[i + 1])) return [`a control character in the ${raw[i]} header`, name];
  }
  return null;
}

function cors(req, res) {
  const origin = req.headers.origin;
  if (origin && CORS_ORIGINS.includes(origin)) { res.setHeader('Access-Control-Allow-Origin', origin); res.setHeader('Vary', 'Origin'); return true; }
  return false;
}

// Node bounds the time a request head may take (checked every connectionsCheckingInterval),
// whatever trickles in meanwhile: the profile states it as receive_timeout_ms.
const server = http.createServer({ headersTimeout: 3000, requestTimeout: 10000, connectionsCheckingInterval: 250 }, (req, res) => {
  const path = (req.url || '/').split('?')[0];
  const rid = req.headers['x-request-id'] || randomUUID();
  const allowed = cors(req, res);
  const chunks = [];
  let size = 0;
  req.on('data', (c) => { size += c.length; if (size <= MAX_BODY) chunks.push(c); });
  req.on('end', () => {
    const t0 = Date.now();
    res.on('finish', () => process.stderr.write(`${req.method} ${path} ${res.statusCode} ${Date.now() - t0}ms rid=${rid}\n`));
    route(req, res, path, rid, allowed, size, Buffer.concat(chunks).toString('utf8')).catch((e) => {
      if (!res.headersSent) sendError(res, 500, `proxy error: ${e.message}`); else res.destroy();
    });
  });
});

async function route(req, res, path, rid, allowed, size, raw) {
  const problem = headerProblem(req.rawHeaders);
  if (problem) { res.setHeader('Connection', 'close'); return sendError(res, 400, problem[0], 'invalid_request_error', {}, problem[1]); }
  if (req.method === 'OPTIONS' && req.headers.origin) {
    if (allowed) {
      res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-Request-Id');
      res.setHeader('Access-Control-Max-Age', '600');
    }
    res.writeHead(204); return res.end();
  }
  if (path === '/' && req.method === 'GET') return sendJson(res, 200, { name: NAME, routes: Object.keys(ROUTES) });
  if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { status: 'ok', stream_pauses: streamPauses });
  const method = ROUTES[path];
  if (!method) return sendError(res, 404, `no route ${path}`, 'invalid_request_error');
  // HEAD is GET without the body (INPUT-4): Node's res.end() writes no body for a HEAD.
  if (req.method !== method && !(req.method === 'HEAD' && method === 'GET')) return sendError(res, 405, `${req.method} not allowed on ${path}`, 'invalid_request_error', { Allow: method });
  if (size > MAX_BODY) return sendError(res, 413, `request body over ${MAX_BODY} bytes`, 'invalid_request_error');
  const auth = req.headers.authorization || '';
  const m = /^bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
  if (!m) return sendError(res, 401, 'a Bearer token is required', 'authentication_error');
  const ctx = { auth, token: m[1], rid };
  res.setHeader('X-Request-Id', rid);
  if (method === 'GET') return handleModels(req, res, ctx, path.startsWith('/v1'));
  return handleChat(req, res, ctx, raw);
}

// Requests Node's parser refuses (two Content-Length lines, a bare CR or another control
// byte in a header, a head too slow or too large) reach no handler; without this listener
// Node answers a bare 400 (or 408, 431) with no body. Same statuses, with the JSON error
// body every other refusal has; the connection is closed since its framing is unknown.
server.on('clientError', (err, socket) => {
  // As Node's own handler: no answer when a response is already on the wire (it would be
  // corrupted), or when the caller is gone.
  if (err.code === 'ECONNRESET' || !socket.writable || socket._httpMessage?.headersSent) return socket.destroy();
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
  const reason = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }[status];
  const body = JSON.stringify({ error: { message: `malformed request: ${err.reason || err.message}`, type: 'invalid_request_error', param: null, code: null } });
  socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  socket.destroySoon(); // once written: a sender that keeps trickling is not read any more
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
