#!/usr/bin/env node
// node-clean.mjs: a minimal, CORRECT Qwen web-chat proxy on Node.js built-ins only
// (node:http for the server, the built-in fetch for the upstream).
//
// DEFECTS: none on purpose. Node's own defaults are left as they are: every keep-alive
// response carries `Connection: keep-alive` and `Keep-Alive: timeout=5`, which describe
// the caller's connection to this proxy (nothing of the upstream's is relayed).
// What Node does not do by itself, it does by hand (SPEC 1.3.0): a second Authorization or
// Host line is refused (req.rawHeaders; req.headers keeps only the first), the requests
// Node's parser rejects (two Content-Length lines, a bare CR or another control byte) get a
// JSON 400 from the clientError listener instead of Node's bare one, HEAD is served on the
// GET routes, a stream that ends inside an event is a failure, and only complete events
// and comments reset the stream's idle clock.
//
// Usage: node node-clean.mjs --port 0 --upstream http://127.0.0.1:9100
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
};
const PORT = Number(arg('--port', '8000'));
const UPSTREAM = arg('--upstream', 'https://chat.qwenlm.ai').replace(/\/+$/, '');
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

// Classifies an upstream answer that is not a success: retry or relay.
async function failure(resp) {
  const ct = resp.headers.get('content-type') || '';
  const text = await resp.text().catch(() => '');
  const what = `upstream HTTP ${resp.status}${ct.includes('text/html') ? ' (HTML page)' : ''}`;
  if (ct.includes('text/html')) return { retry: true, status: resp.status, reason: what };
  const ra = retryAfterMs(resp.headers);
  let detail = null;
  try { const j = JSON.parse(text); detail = typeof j.detail === 'string' ? j.detail : j.error?.message || null; } catch {}
  const relay = { relay: true, status: resp.status, message: detail || what, retryAfter: resp.headers.get('retry-after') };
  if ([500, 502, 504].includes(resp.status)) return { retry: true, status: resp.status, reason: what };
  if (resp.status === 503 || resp.status === 429) {
    if (ra != null) return ra <= RETRY_AFTER_CAP_MS ? { retry: true, status: resp.status, reason: what, waitMs: ra } : relay;
    return resp.status === 503 ? { retry: true, status: resp.status, reason: what } : relay;
  }
  return relay;
}

// Runs attempt(signal, budgetMs) until it succeeds, must be relayed, or retries run out.
async function withRetries(attempt, stop = () => false) {
  const deadline = Date.now() + DEADLINE_MS;
  let last = null;
  for (let n = 1; ; n++) {
    if (stop()) return { gone: true };
    const budget = Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now());
    if (budget <= 0) return { deadline: true, last };
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), budget);
    let r;
    try {
      r = await attempt(ac.signal, ac);
    } catch (e) {
      const timeout = ac.signal.aborted;
      r = { retry: true, timeout, reason: timeout ? `upstream timed out after ${budget} ms` : `upstream connection failed (${e.cause?.code || e.message})` };
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

function fetchModels(ctx) {
  return withRetries(async (signal) => {
    const resp = await fetch(`${UPSTREAM}/api/models`, { headers: upstreamHeaders(ctx, false), signal });
    const ct = resp.headers.get('content-type') || '';
    if (resp.status !== 200 || ct.includes('text/html')) return failure(resp);
    const body = await resp.text();
    try { if (Array.isArray(JSON.parse(body).data)) return { ok: true, body }; } catch {}
    return { retry: true, status: 200, reason: 'upstream model list is not JSON with data[]' };
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

// ---- chat ----

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

async function handleChat(req, res, ctx, raw) {
  const [problem, body] = validateChat(raw);
  if (problem) return sendError(res, 400, problem, 'invalid_request_error', {}, body);
  const init = (signal) => ({ method: 'POST', headers: upstreamHeaders(ctx, true), body: raw, signal });
  if (body.stream === true) return streamChat(req, res, ctx, body, init);
  const r = await withRetries(async (signal) => {
    const resp = await fetch(`${UPSTREAM}/api/chat/completions`, init(signal));
    const ct = resp.headers.get('content-type') || '';
    if (resp.status !== 200 || ct.includes('text/html')) return failure(resp);
    const text = await resp.text();
    let j;
    try { j = JSON.parse(text); } catch { return { retry: true, status: 200, reason: 'upstream completion is not JSON' }; }
    if (j !== null && typeof j === 'object' && 'usage' in j) j.usage = openaiUsage(j.usage); // OpenAI's names (HTTP-9)
    return { ok: true, body: JSON.stringify(j) };
  });
  if (r.ok) return sendJson(res, 200, r.body, { 'X-Request-Id': ctx.rid });
  answerFailure(res, r);
}

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

// Cumulative-to-incremental (SSE-4): the request decides the starting mode.
class Deltas {
  constructor(incremental) { this.inc = incremental; this.text = ''; this.pieces = 0; }
  push(c) {
    if (typeof c !== 'string' || c === '') return '';
    let out;
    if (this.inc && this.text && ((c.length > this.text.length && c.startsWith(this.text)) || (this.pieces >= 2 && c === this.text))) this.inc = false;
    if (this.inc) { out = c; this.text += c; } else {
      let i = 0;
      while (i < c.length && i < this.text.length && c[i] === this.text[i]) i++;
      out = c.slice(i); this.text = c;
    }
    this.pieces++;
    return out;
  }
}

const inband = (j) => (Array.isArray(j.ret) && j.ret.some((s) => typeof s === 'string' && s.startsWith('FAIL_'))) || j.success === false || j.error != null;

async function streamChat(req, res, ctx, body, init) {
  let gone = false;
  res.on('close', () => { gone = true; ctx.upstream?.abort(); });
  res.on('error', () => {});
  const id = `chatcmpl-${randomUUID()}`, created = Math.floor(Date.now() / 1000);
  const norm = new Deltas(body.incremental_output === true);
  let finished = false, roleSent = false;
  const toChunks = (data) => {
    if (data === '[DONE]') return { done: true };
    let j;
    try { j = JSON.parse(data); } catch { return { bad: 'upstream sent an event that is not JSON' }; }
    if (j === null || typeof j !== 'object' || inband(j)) return { bad: 'upstream sent an in-band failure payload' };
    const ch = Array.isArray(j.choices) ? j.choices[0] || {} : {};
    const content = norm.push(ch.delta?.content);
    const fr = typeof ch.finish_reason === 'string' ? ch.finish_reason : null;
    if (!content && !fr && roleSent) return { chunk: null };
    const delta = roleSent ? {} : { role: 'assistant' };
    roleSent = true;
    if (content) delta.content = content;
    if (fr) finished = true;
    const chunk = { id, object: 'chat.completion.chunk', created, model: body.model, choices: [{ index: 0, delta, finish_reason: fr }] };
    if (j.usage) chunk.usage = j.usage;
    return { chunk: `data: ${JSON.stringify(chunk)}\n\n` };
  };
  // Attempts until the first good event: nothing reaches the caller before it (SSE-7).
  let reader, decoder, parser, pending;
  const r = await withRetries(async (signal, ac) => {
    ctx.upstream = ac;
    const resp = await fetch(`${UPSTREAM}/api/chat/completions`, init(signal));
    const ct = resp.headers.get('content-type') || '';
    if (resp.status !== 200 || ct.includes('text/html')) return failure(resp);
    if (!ct.includes('text/event-stream')) { await resp.text().catch(() => ''); return { retry: true, status: 200, reason: `upstream answered ${ct || 'no content type'}, not a stream` }; }
    reader = resp.body.getReader(); decoder = new TextDecoder('utf-8'); parser = new SSEParser();
    for (;;) {
      const { value, done } = await reader.read();
      const events = done ? parser.finish() : parser.feed(decoder.decode(value, { stream: true }));
      if (done && !events.length) return { retry: true, status: 200, reason: 'upstream stream ended before its first event' };
      if (!events.length) continue;
      const first = toChunks(events[0]);
      if (first.bad || first.done) { reader.cancel().catch(() => {}); return { retry: true, status: 200, reason: first.bad || 'upstream stream was empty' }; }
      pending = [first, ...events.slice(1).map(toChunks)];
      return { ok: true };
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
  let error = null, upstreamDone = false;
  try {
    const handle = async (c) => {
      if (c.done) { upstreamDone = true; return; }
      if (c.bad) throw new Error(c.bad);
      if (c.chunk) await write(c.chunk);
    };
    for (const c of pending) { await handle(c); if (upstreamDone) break; }
    while (!upstreamDone && !gone) {
      const { value, done } = await reader.read();
      const comments = parser.comments;
      const events = done ? parser.finish() : parser.feed(decoder.decode(value, { stream: true }));
      if (events.length || parser.comments > comments) lastAlive = Date.now();
      for (const data of events) {
        await handle(toChunks(data));
        if (upstreamDone || gone) break;
      }
      // A clean end inside an event is a truncation, not an answer (SSE-17).
      if (done && !upstreamDone && parser.cut()) throw new Error('upstream stream ended inside an event');
      if (done) break;
    }
    if (upstreamDone) reader.cancel().catch(() => {});
  } catch (e) {
    error = idle ? `upstream stream idle for more than ${IDLE_MS} ms` : `upstream stream broke: ${e.cause?.code || e.message}`;
  }
  clearInterval(tick);
  if (gone) return;
  if (error) {
    res.end(`data: ${JSON.stringify({ error: { message: error, type: 'upstream_error', param: null, code: null } })}\n\n`);
    return;
  }
  if (!finished) await write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
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
  if (path === '/' && req.method === 'GET') return sendJson(res, 200, { name: 'node-clean', routes: Object.keys(ROUTES) });
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
