#include "conf_harness.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conf_text.h"
#include "qwenkit/buf.h"

enum {
    POOL_GROW = 32,
    DUMP_BODY_MAX = 1200,      /* bytes of a body printed as evidence */
    SETTLE_EXPECTED_MS = 1000, /* how long to wait for an expected journal entry */
    SETTLE_ZERO_MS = 150,      /* how long to watch for an unexpected one */
    CALL_WINDOWS_MAX = 32,     /* waits of the callers a test remembers (then merged) */
    SLOW_FAILURE_MS = 50,      /* conf_slow_failure_ms() */
    ALWAYS_PER_ATTEMPT = 16,   /* conf_steps_always(): creations one attempt may make */
};

/* Something the context frees after the test. */
struct pooled {
    void *ptr;
    void (*release)(void *ptr);
};

struct conf_ctx {
    struct conf_case *kase;
    struct pooled *pool;
    size_t pool_len, pool_cap;
    int64_t started_ms;
    char last_request[CONF_REASON_MAX]; /* what a crash report names */
    bool routes_used[CONF_ROUTE_COUNT]; /* routes whose journal this test relies on */
    bool token_path_exempt; /* runs even where tokens do not reach the upstream verbatim */
    /* With an upstream_credential, the credential stands for one caller's token at a time:
     * the current one, since start_seq; earlier ones can no longer be told apart. */
    const char *scripted_token;
    long start_seq;
    const char *retired_tokens[32];
    size_t retired_count;
    bool judges_shared_cache;
    const char *last_token; /* the latest caller's token sent to the proxy */
    unsigned serial;        /* this test's number in the run (issued_tokens) */
    /* When a caller of this test waited for the proxy (Dialects: a failed chat creation
     * begun while none did is a pool's refill, no attempt). Windows of requests sent and
     * answered; open: requests sent, not answered yet, the first since open_from. */
    struct {
        int64_t from, to;
    } waited[CALL_WINDOWS_MAX];
    size_t waited_len;
    unsigned open;
    int64_t open_from, open_to;
    bool abandoned; /* a request got no whole answer: a creation at any time may be its */
};

/* The tokens the run issued, each with the number of its test: a v2 proxy may create
 * chats ahead of need for a token, in the background, after its test ended. The latest
 * ones are kept, the only ones whose refills can still arrive. */
enum { ISSUED_MAX = 512 };
static struct {
    char token[64];
    unsigned serial; /* 0: the preflight's */
} issued_tokens[ISSUED_MAX];
static size_t issued_next;
static unsigned case_serial;

static const char *bearer_in(struct conf_ctx *ctx, const char *const *headers);

static const struct conf_env *target;
/* Until a preflight says otherwise, the target is presumed to pass tokens through. */
static const struct conf_facts presumed_facts = {.token_verbatim = {true, true}};
static const struct conf_facts *facts = &presumed_facts;
static const struct conf_watch no_watch;
static const struct conf_watch *watch = &no_watch;

/* The target's health across the run (ROBUST-1). */
static struct conf_down_event down_events[CONF_DOWN_MAX];
static size_t down_count;
static const char *down_since; /* the test during which the target died; NULL while up */

void
conf_harness_set_env(const struct conf_env *env)
{
    target = env;
}

void
conf_harness_set_facts(const struct conf_facts *f)
{
    facts = f;
}

void
conf_harness_set_watch(const struct conf_watch *w)
{
    watch = w;
}

const struct conf_env *
conf_target(const struct conf_ctx *ctx)
{
    (void)ctx;
    return target;
}

const char *
conf_route_name(enum conf_route route)
{
    return route == CONF_ROUTE_CHAT ? "chat" : "models";
}

void
conf_judges_credentials(struct conf_ctx *ctx)
{
    ctx->token_path_exempt = true;
}

void
conf_judges_survival_only(struct conf_ctx *ctx)
{
    ctx->token_path_exempt = true;
}

void
conf_judges_shared_cache(struct conf_ctx *ctx)
{
    ctx->judges_shared_cache = true;
}

void
conf_cases_release(const struct conf_group *const *groups, size_t ngroups)
{
    for (size_t g = 0; g < ngroups; g++) {
        for (size_t i = 0; i < groups[g]->count; i++) {
            struct conf_case *c = conf_case_of(&groups[g]->tests[i]);
            free(c->evidence);
            c->evidence = NULL;
            c->evidence_len = 0;
        }
    }
}

const struct conf_down_event *
conf_down_events(size_t *n)
{
    *n = down_count;
    return down_events;
}

struct conf_case *
conf_case_of(const struct CMUnitTest *test)
{
    return test->initial_state;
}

/* ---- the pool ---- */

static void
pool_release_all(struct conf_ctx *ctx)
{
    /* Newest first, as later objects may point into earlier ones. */
    while (ctx->pool_len > 0) {
        struct pooled *p = &ctx->pool[--ctx->pool_len];
        p->release(p->ptr);
    }
    free(ctx->pool);
    ctx->pool = NULL;
    ctx->pool_cap = 0;
}

/* Registers @p ptr for release; on OOM releases it at once and fails the test. */
static void *
pool_keep(struct conf_ctx *ctx, void *ptr, void (*release)(void *ptr))
{
    if (ptr && ctx->pool_len == ctx->pool_cap) {
        size_t cap = ctx->pool_cap + POOL_GROW;
        struct pooled *p = realloc(ctx->pool, cap * sizeof(*p));
        if (!p) {
            release(ptr);
            ptr = NULL;
        } else {
            ctx->pool = p;
            ctx->pool_cap = cap;
        }
    }
    if (!ptr) {
        print_error("out of memory in the harness\n");
        fail();
        return NULL;
    }
    ctx->pool[ctx->pool_len++] = (struct pooled){ptr, release};
    return ptr;
}

void *
conf_keep(struct conf_ctx *ctx, void *ptr, void (*release)(void *ptr))
{
    return pool_keep(ctx, ptr, release);
}

static void
release_response(void *ptr)
{
    struct conf_response *r = ptr;
    conf_response_clear(r);
    free(r);
}

static void
release_json(void *ptr)
{
    cJSON_Delete(ptr);
}

/* ---- fixtures ---- */

enum {
    PROBE_TIMEOUT_MS = 3000, /* a target that does not answer GET / within this is down */
    PROBE_TRIES = 2,
    RESTART_WAIT_MS = 15000, /* how long a restarted target may take to answer */
};

/* @return true when the target answers an HTTP request at all (any status). */
static bool
target_answers(const char *proxy_url, long timeout_ms)
{
    char url[CONF_URL_MAX + 8];
    snprintf(url, sizeof(url), "%s/", proxy_url);
    for (int i = 0; i < PROBE_TRIES; i++) {
        struct conf_request req = {.method = "GET", .url = url, .timeout_ms = timeout_ms};
        struct conf_response resp;
        bool up = conf_http(&req, &resp) == QK_OK && resp.status != 0;
        conf_response_clear(&resp);
        if (up)
            return true;
    }
    return false;
}

/* Runs --restart-cmd and waits for the target to answer again. */
static bool
restart_target(void)
{
    if (watch->restart)
        return watch->restart(watch->restart_arg) &&
               target_answers(target->proxy_url, PROBE_TIMEOUT_MS);
    if (!watch->restart_cmd)
        return false;
    fflush(NULL);
    int rc = system(watch->restart_cmd);
    if (rc != 0)
        print_error("qwen-conformance: --restart-cmd exited with status %d\n", rc);
    int64_t until = qk_now_ms() + RESTART_WAIT_MS;
    while (qk_now_ms() < until) {
        if (target_answers(target->proxy_url, 1000))
            return true;
        conf_sleep_ms(100);
    }
    return false;
}

/* Records that the target stopped answering after @p request, and restarts it when the
 * run has a --restart-cmd. @return true when it answers again. */
static bool
target_went_down(struct conf_ctx *ctx, const char *request)
{
    struct conf_down_event *ev = down_count < CONF_DOWN_MAX ? &down_events[down_count++] : NULL;
    bool back = restart_target();
    if (ev) {
        ev->test = ctx->kase->name;
        ev->kase = ctx->kase;
        snprintf(ev->request, sizeof(ev->request), "%s", request);
        ev->restarted = back;
    }
    bool can_restart = watch->restart_cmd || watch->restart;
    print_error("TARGET-DOWN during %s, after %s%s\n", ctx->kase->name, request,
                back ? "; restarted" : (can_restart ? "; restart failed" : ""));
    if (!back)
        down_since = ctx->kase->name;
    return back;
}

bool
conf_still_serving(struct conf_ctx *ctx, const char *after)
{
    if (target_answers(target->proxy_url, PROBE_TIMEOUT_MS))
        return true;
    target_went_down(ctx, after);
    return false;
}

/* After a test: a target that stopped answering is a finding of ROBUST-1, named by the
 * request after which it happened; the test's own verdict cannot stand on a dead target. */
static void
probe_after(struct conf_ctx *ctx)
{
    if (down_since || target_answers(target->proxy_url, PROBE_TIMEOUT_MS))
        return;
    const char *request = ctx->last_request[0] ? ctx->last_request : "(no request sent yet)";
    target_went_down(ctx, request);
    if (ctx->kase->req != CONF_REQ_ROBUST_1) {
        ctx->kase->status = CONF_CANNOT_JUDGE;
        snprintf(ctx->kase->reason, sizeof(ctx->kase->reason),
                 "the target stopped answering after %.200s (charged to ROBUST-1)", request);
    }
}

int
conf_case_setup(void **state)
{
    struct conf_case *kase = *state;
    struct conf_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return -1;
    ctx->kase = kase;
    ctx->started_ms = qk_now_ms();
    ctx->serial = ++case_serial;
    /* Presumed failed until the body returns: a failed assertion never comes back. */
    kase->status = CONF_FAIL;
    kase->other_dialect = false;
    kase->excused = false;
    kase->reason[0] = '\0';
    free(kase->evidence);
    kase->evidence = NULL;
    kase->evidence_len = 0;
    *state = ctx;
    return 0;
}

int
conf_case_teardown(void **state)
{
    struct conf_ctx *ctx = *state;
    probe_after(ctx);
    ctx->kase->duration_ms = qk_now_ms() - ctx->started_ms;
    if (ctx->kase->status == CONF_FAIL && ctx->kase->reason[0] == '\0')
        snprintf(ctx->kase->reason, sizeof(ctx->kase->reason), "failed (see cmocka output)");
    pool_release_all(ctx);
    *state = ctx->kase;
    free(ctx);
    return 0;
}

void
conf_case_run(void **state)
{
    struct conf_ctx *ctx = *state;
    const struct conf_requirement *req = conf_requirement(ctx->kase->req);
    conf_observable(ctx, !down_since, "the target has not answered since %s", down_since);
    ctx->kase->excused = target->profile.absent[ctx->kase->req] ||
                         (ctx->kase->should_part && target->profile.absent_should[ctx->kase->req]);
    conf_assume(ctx, !target->profile.absent[ctx->kase->req], "profile declares %s absent",
                req->id);
    conf_assume(ctx, !(ctx->kase->should_part && target->profile.absent_should[ctx->kase->req]),
                "profile declares the SHOULD part of %s absent", req->id);
    ctx->kase->fn(ctx);
    ctx->kase->status = CONF_PASS;
}

/* ---- what a test depends on ---- */

/* The route a proxy path belongs to; false for other paths. */
static bool
route_of_path(const char *path, enum conf_route *route)
{
    if (strstr(path, "/chat/completions")) {
        *route = CONF_ROUTE_CHAT;
        return true;
    }
    if (strstr(path, "/models")) {
        *route = CONF_ROUTE_MODELS;
        return true;
    }
    return false;
}

/* Per-token scripting and journals only work when the caller's token reaches the upstream
 * as it was sent; otherwise the test cannot see its own requests. */
static void
require_verbatim(struct conf_ctx *ctx, enum conf_route route)
{
    if (ctx->token_path_exempt)
        return;
    conf_observable(ctx, facts->token_verbatim[route],
                    "the caller's token does not reach the upstream verbatim on the %s route "
                    "(preflight: %s), so the mock cannot script or count this test's requests "
                    "(AUTH-3)",
                    conf_route_name(route), facts->token_seen[route]);
}

static void
require_verbatim_on_routes_used(struct conf_ctx *ctx)
{
    for (int r = 0; r < CONF_ROUTE_COUNT; r++) {
        if (ctx->routes_used[r])
            require_verbatim(ctx, (enum conf_route)r);
    }
}

void
conf_note_request(struct conf_ctx *ctx, const char *method, const char *path, const char *body,
                  size_t body_len)
{
    enum conf_route route;
    bool routed = route_of_path(path, &route);
    enum { SHOWN = 160 };
    if (ctx->open++ == 0) {
        ctx->open_from = qk_now_ms();
        ctx->open_to = ctx->open_from;
    }
    if (body && body_len > 0)
        snprintf(ctx->last_request, sizeof(ctx->last_request), "%s %s with body %.*s%s", method,
                 path, body_len > SHOWN ? SHOWN : (int)body_len, body,
                 body_len > SHOWN ? "..." : "");
    else
        snprintf(ctx->last_request, sizeof(ctx->last_request), "%s %s", method, path);
    if (routed) {
        ctx->routes_used[route] = true;
        /* What the upstream answers depends on the credential it received. */
        require_verbatim(ctx, route);
    }
}

void
conf_note_answered(struct conf_ctx *ctx, const struct conf_response *r, bool whole)
{
    if (!whole || r->status == 0 || r->done_ms <= 0)
        ctx->abandoned = true;
    if (ctx->open == 0)
        return;
    if (r->done_ms > ctx->open_to)
        ctx->open_to = r->done_ms;
    if (--ctx->open > 0)
        return;
    if (ctx->waited_len == CALL_WINDOWS_MAX) {
        /* Full: the last window grows to cover this one (and the quiet time between). */
        ctx->waited[ctx->waited_len - 1].to = ctx->open_to;
        return;
    }
    ctx->waited[ctx->waited_len].from = ctx->open_from;
    ctx->waited[ctx->waited_len].to = ctx->open_to;
    ctx->waited_len++;
}

/* @return whether a caller of this test may have been waiting for the proxy at @p t (ms).
 * The suite's times bound the proxy's: a request is sent after its window opens and
 * answered before it closes, so a time outside every window is one no caller waited. */
static bool
caller_waiting_at(const struct conf_ctx *ctx, int64_t t)
{
    if (ctx->abandoned || (ctx->open > 0 && t >= ctx->open_from))
        return true;
    for (size_t i = 0; i < ctx->waited_len; i++) {
        if (t >= ctx->waited[i].from && t <= ctx->waited[i].to)
            return true;
    }
    return false;
}

/* ---- strings and tokens ---- */

const char *
conf_str(struct conf_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return pool_keep(ctx, s, free);
}

static void
issue_token(const char *token, unsigned serial)
{
    size_t slot = issued_next++ % ISSUED_MAX;
    snprintf(issued_tokens[slot].token, sizeof(issued_tokens[slot].token), "%s", token);
    issued_tokens[slot].serial = serial;
}

const char *
conf_token(struct conf_ctx *ctx)
{
    unsigned char raw[12];
    if (getentropy(raw, sizeof(raw)) != 0) {
        /* Unlikely; time and address still make tokens distinct within a run. */
        uint64_t x = (uint64_t)qk_now_ms() ^ (uint64_t)(uintptr_t)ctx ^ (uint64_t)rand();
        for (size_t i = 0; i < sizeof(raw); i++)
            raw[i] = (unsigned char)(x >> ((i % 8) * 8)) ^ (unsigned char)rand();
    }
    char hex[sizeof(raw) * 2 + 1];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    const char *token = conf_str(ctx, "conf-%s", hex);
    issue_token(token, ctx->serial);
    return token;
}

void
conf_note_preflight_token(const char *token)
{
    issue_token(token, 0);
}

bool
conf_entry_is_earlier_chat_creation(const struct conf_ctx *ctx, const cJSON *e)
{
    if (!conf_dialect_is_chat_new(target->dialect, conf_entry_path(e)) ||
        conf_entry_answer_failed(e))
        return false;
    size_t n = issued_next < ISSUED_MAX ? issued_next : ISSUED_MAX;
    for (size_t i = 0; i < n; i++) {
        if (issued_tokens[i].serial != ctx->serial &&
            conf_entry_credential_is(e, issued_tokens[i].token, true))
            return true;
    }
    return false;
}

const char *
conf_api(struct conf_ctx *ctx, const char *route)
{
    return conf_str(ctx, "%s%s", target->profile.api_prefix, route);
}

const char *
conf_bearer(struct conf_ctx *ctx, const char *token)
{
    return conf_str(ctx, "Authorization: Bearer %s", token);
}

const char *
conf_repeat_steps(struct conf_ctx *ctx, const char *step, unsigned n)
{
    const char *s = "[";
    for (unsigned i = 0; i < n; i++)
        s = conf_str(ctx, "%s%s%s", s, i ? "," : "", step);
    return conf_str(ctx, "%s]", s);
}

unsigned
conf_max_attempts(struct conf_ctx *ctx)
{
    return conf_target(ctx)->profile.max_retries + 1;
}

const char *
conf_steps_always(struct conf_ctx *ctx, const char *step)
{
    enum { TIMES_MAX = 100000 }; /* the mock's bound */
    size_t len = strlen(step);
    unsigned max = conf_max_attempts(ctx);
    unsigned times = max < TIMES_MAX / ALWAYS_PER_ATTEMPT ? ALWAYS_PER_ATTEMPT * max : TIMES_MAX;
    /* The step object with one more key before its closing brace. */
    return conf_str(ctx, "[%.*s%s\"times\":%u}]", (int)(len - 1), step, len > 2 ? "," : "", times);
}

int
conf_slow_failure_ms(struct conf_ctx *ctx)
{
    int64_t timeout = conf_target(ctx)->profile.upstream_timeout_ms;
    /* Well inside an attempt's timeout, so that the failure is not a timeout. */
    return timeout > 0 && timeout / 5 < SLOW_FAILURE_MS ? (int)(timeout / 5) : SLOW_FAILURE_MS;
}

/* Far above any body a test sends (the largest exceed a profile's max_body by a little). */
enum { CHAT_BODY_CAP = 64 * 1024 * 1024 };

/* @p s as a JSON string literal (quoted, escaped); caller frees. NULL when out of memory. */
static char *
json_string(const char *s)
{
    cJSON *str = cJSON_CreateString(s ? s : "");
    char *out = str ? cJSON_PrintUnformatted(str) : NULL;
    cJSON_Delete(str);
    return out;
}

char *
conf_chat_json(const struct conf_chat *chat)
{
    static const char *const stream_member[] = {
        [CONF_CHAT_STREAM_OMITTED] = "",
        [CONF_CHAT_STREAM_FALSE] = ",\"stream\":false",
        [CONF_CHAT_STREAM_TRUE] = ",\"stream\":true",
    };
    char *model = json_string(chat->model);
    char *text = chat->messages_json ? NULL : json_string(chat->text);
    struct qk_buf out;
    qk_buf_init(&out, CHAT_BODY_CAP);
    bool ok = model && (chat->messages_json || text) &&
              qk_buf_appendf(&out, "{\"model\":%s,\"messages\":", model) == QK_OK;
    if (ok && chat->messages_json)
        ok = qk_buf_appendf(&out, "%s", chat->messages_json) == QK_OK;
    else if (ok)
        ok = qk_buf_appendf(&out, "[{\"role\":\"user\",\"content\":%s}]", text) == QK_OK;
    ok = ok && qk_buf_appendf(&out, "%s", stream_member[chat->stream]) == QK_OK;
    if (ok && chat->extra_json && chat->extra_json[0])
        ok = qk_buf_appendf(&out, ",%s", chat->extra_json) == QK_OK;
    ok = ok && qk_buf_appendf(&out, "}") == QK_OK;
    free(model);
    free(text);
    if (!ok) {
        qk_buf_free(&out);
        return NULL;
    }
    return qk_buf_take(&out, NULL);
}

const char *
conf_chat_body_of(struct conf_ctx *ctx, const struct conf_chat *chat)
{
    struct conf_chat c = *chat;
    if (!c.model)
        c.model = target->model;
    return pool_keep(ctx, conf_chat_json(&c), free);
}

const char *
conf_chat_body(struct conf_ctx *ctx, const char *text)
{
    return conf_chat_body_of(ctx,
                             &(struct conf_chat){.text = text, .stream = CONF_CHAT_STREAM_FALSE});
}

/* ---- requests ---- */

const struct conf_response *
conf_send_ex(struct conf_ctx *ctx, const char *base_url, const char *method, const char *path,
             const char *const *headers, const char *body, size_t body_len, long timeout_ms)
{
    const char *url = conf_str(ctx, "%s%s", base_url, path);
    if (strcmp(base_url, target->mock_url) != 0) {
        conf_note_token(ctx, bearer_in(ctx, headers));
        conf_note_request(ctx, method, path, body, body_len);
    }
    struct conf_response *resp = calloc(1, sizeof(*resp));
    pool_keep(ctx, resp, release_response);
    struct conf_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body_len,
        .timeout_ms = timeout_ms,
    };
    enum qk_err rc = conf_http(&req, resp);
    if (strcmp(base_url, target->mock_url) != 0)
        conf_note_answered(ctx, resp, rc == QK_OK);
    conf_check(ctx, NULL, rc == QK_OK, "could not make the request %s %s: %s", method, url,
               qk_strerror(rc));
    return resp;
}

const struct conf_response *
conf_send(struct conf_ctx *ctx, const char *method, const char *path, const char *const *headers,
          const char *body)
{
    return conf_send_ex(ctx, target->proxy_url, method, path, headers, body,
                        body ? strlen(body) : 0, 0);
}

const struct conf_response *
conf_send_raw(struct conf_ctx *ctx, const char *token, const char *method, const char *path,
              const char *raw, size_t raw_len, struct conf_raw_outcome *outcome)
{
    if (token)
        conf_note_token(ctx, token);
    conf_note_request(ctx, method, path, NULL, 0);
    struct conf_response *resp = calloc(1, sizeof(*resp));
    pool_keep(ctx, resp, release_response);
    struct conf_raw_outcome seen;
    enum qk_err rc = conf_http_raw(target->proxy_url, raw, raw_len, 10000, resp, &seen);
    conf_note_answered(ctx, resp, rc == QK_OK);
    conf_check(ctx, NULL, rc == QK_OK, "could not make the raw request %s %s: %s", method, path,
               qk_strerror(rc));
    if (outcome)
        *outcome = seen;
    return resp;
}

static void
release_response_array(void *ptr)
{
    struct conf_response *arr = ptr;
    /* The array is preceded by its length (see conf_send_many()). */
    size_t *n = (size_t *)ptr - 1;
    for (size_t i = 0; i < *n; i++)
        conf_response_clear(&arr[i]);
    free(n);
}

const struct conf_response *
conf_send_many(struct conf_ctx *ctx, const struct conf_request *reqs, size_t n)
{
    const char *first = NULL;
    for (size_t i = 0; i < n && target->profile.upstream_credential[0]; i++) {
        const char *t = bearer_in(ctx, reqs[i].headers);
        if (!first)
            first = t;
        conf_observable(ctx, !t || !first || strcmp(t, first) == 0,
                        "the test sends several callers' credentials at once, which the "
                        "upstream cannot tell apart when the proxy sends one of its own "
                        "(\"upstream_credential\")");
    }
    conf_note_token(ctx, first);
    for (size_t i = 0; i < n; i++) {
        const char *path = reqs[i].url;
        if (strncmp(path, target->proxy_url, strlen(target->proxy_url)) == 0)
            path += strlen(target->proxy_url);
        conf_note_request(ctx, reqs[i].method, path, reqs[i].body, reqs[i].body_len);
    }
    /* One block: the count, then the responses (so the release function knows n). Taken
     * only now: the notes above may end the test. */
    size_t *block = calloc(1, sizeof(size_t) + n * sizeof(struct conf_response));
    struct conf_response *arr = block ? (struct conf_response *)(block + 1) : NULL;
    if (block)
        *block = n;
    pool_keep(ctx, arr, release_response_array);
    enum qk_err rc = conf_http_many(reqs, n, arr);
    for (size_t i = 0; i < n; i++)
        conf_note_answered(ctx, arr ? &arr[i] : &(struct conf_response){0}, rc == QK_OK);
    conf_check(ctx, NULL, rc == QK_OK, "could not make %zu concurrent requests: %s", n,
               qk_strerror(rc));
    return arr;
}

const struct conf_response *
conf_get_models(struct conf_ctx *ctx, const char *token)
{
    conf_assume(ctx, ctx->judges_shared_cache || !facts->shared_models_cache,
                "the proxy serves one model list to every credential (preflight: a fresh "
                "credential got a list with no upstream request; AUTH-5), so no model-list "
                "request of a fresh credential can be judged");
    const char *headers[] = {conf_bearer(ctx, token), NULL};
    return conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
}

const struct conf_response *
conf_post_chat(struct conf_ctx *ctx, const char *token, const char *body)
{
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    return conf_send(ctx, "POST", conf_api(ctx, "/chat/completions"), headers, body);
}

const struct conf_response *
conf_mock_direct(struct conf_ctx *ctx, const char *method, const char *path, const char *token,
                 const char *body)
{
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    return conf_send_ex(ctx, target->mock_url, method, path, headers, body, body ? strlen(body) : 0,
                        0);
}

bool
conf_dialect_v2(const struct conf_ctx *ctx)
{
    (void)ctx;
    return conf_dialect_is_v2(target->dialect);
}

/* The one message text a v2 completion carries for the OpenAI body @p req. */
static const char *
v2_prompt(struct conf_ctx *ctx, const cJSON *req)
{
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(req, "messages");
    const char *out = "";
    int n = cJSON_GetArraySize(messages);
    const cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
        if (n == 1)
            return text ? text : "";
        out = conf_str(ctx, "%s%s%s: %s", out, out[0] ? "\n\n" : "", role ? role : "user",
                       text ? text : "");
    }
    return out;
}

/* v2: chats/new, then the completion of that chat (conf_mock_direct_chat()). */
static const struct conf_response *
direct_chat_v2(struct conf_ctx *ctx, const char *token, const char *body)
{
    cJSON *req = cJSON_Parse(body ? body : "");
    pool_keep(ctx, req ? req : cJSON_CreateObject(), release_json);
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "model"));
    cJSON *chat = cJSON_CreateObject();
    pool_keep(ctx, chat, release_json);
    cJSON *models = cJSON_AddArrayToObject(chat, "models");
    cJSON_AddItemToArray(models, cJSON_CreateString(model ? model : target->model));
    cJSON_AddStringToObject(chat, "chat_type", "t2t");
    cJSON_AddStringToObject(chat, "chat_mode", "normal");
    char *text = cJSON_PrintUnformatted(chat);
    const char *chat_body = pool_keep(ctx, text, free);
    const struct conf_response *created =
        conf_mock_direct(ctx, "POST", target->dialect->chat_new_path, token, chat_body);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(conf_json(ctx, created), "data"), "id");
    if (!cJSON_IsString(id))
        return created;
    cJSON *completion = cJSON_CreateObject();
    pool_keep(ctx, completion, release_json);
    cJSON_AddBoolToObject(completion, "stream", true);
    cJSON_AddBoolToObject(completion, "incremental_output", true);
    cJSON_AddStringToObject(completion, "chat_id", id->valuestring);
    cJSON_AddStringToObject(completion, "model", model ? model : target->model);
    cJSON *message = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(completion, "messages"), message);
    cJSON_AddStringToObject(message, "role", "user");
    cJSON_AddStringToObject(message, "content", v2_prompt(ctx, req));
    cJSON *features = cJSON_AddObjectToObject(message, "feature_config");
    cJSON_AddStringToObject(features, "output_schema", "phase");
    cJSON_AddBoolToObject(features, "thinking_enabled", true);
    text = cJSON_PrintUnformatted(completion);
    const char *completion_body = pool_keep(ctx, text, free);
    return conf_mock_direct(
        ctx, "POST",
        conf_str(ctx, "%s?chat_id=%s", target->dialect->completion_path, id->valuestring), token,
        completion_body);
}

const struct conf_response *
conf_mock_direct_chat(struct conf_ctx *ctx, const char *token, const char *body)
{
    if (conf_dialect_is_v2(target->dialect))
        return direct_chat_v2(ctx, token, body);
    return conf_mock_direct(ctx, "POST", target->dialect->completion_path, token, body);
}

const cJSON *
conf_answered_completion(struct conf_ctx *ctx, const char *token)
{
    const cJSON *found = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, conf_journal_settled(ctx, token))
    {
        if (conf_dialect_is_completion(target->dialect, conf_entry_path(e)) &&
            cJSON_IsString(cJSON_GetObjectItemCaseSensitive(conf_entry_answer(e), "text")))
            found = e;
    }
    return found;
}

/* The text of the last completion journaled under @p token as the mock keyed it: the
 * suite's own direct requests carry their token to the mock as it is, so never through
 * upstream_key(), which under an upstream_credential would retire the test's token. */
static const char *
direct_answer_text(struct conf_ctx *ctx, const char *token)
{
    int64_t until = qk_now_ms() + SETTLE_EXPECTED_MS;
    for (;;) {
        char err[512] = "";
        cJSON *root = NULL;
        enum qk_err rc = conf_mock_journal(target->mock_url, token, &root, err, sizeof(err));
        conf_check(ctx, NULL, rc == QK_OK, "harness: %s", err);
        pool_keep(ctx, root, release_json);
        const char *text = NULL;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "entries"))
        {
            const char *t = cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(conf_entry_answer(e), "text"));
            if (conf_dialect_is_completion(target->dialect, conf_entry_path(e)) && t)
                text = t;
        }
        if (text || qk_now_ms() >= until)
            return text;
        conf_sleep_ms(25);
    }
}

void
conf_queue_direct(struct conf_ctx *ctx, const char *token, const char *route,
                  const char *steps_json)
{
    char err[512] = "";
    size_t queued = 0;
    conf_check(ctx, NULL,
               conf_mock_queue(target->mock_url, token, route, steps_json, &queued, err,
                               sizeof(err)) == QK_OK,
               "harness: %s", err);
}

const char *
conf_direct_stream_text(struct conf_ctx *ctx, const char *step, const char *body)
{
    const char *token = conf_token(ctx);
    conf_queue_direct(ctx, token, "chat", conf_str(ctx, "[%s]", step));
    const struct conf_response *r = conf_mock_direct_chat(ctx, token, body);
    conf_check(ctx, r, r->status == 200 && !r->body_truncated,
               "harness: the mock did not stream the oracle answer");
    const char *text = direct_answer_text(ctx, token);
    conf_check(ctx, r, text != NULL, "harness: the mock journaled no answer text");
    return text;
}

const char *
conf_expected_text_of(struct conf_ctx *ctx, const char *token, const char *oracle)
{
    if (!conf_dialect_is_v2(target->dialect) || !token)
        return oracle;
    const char *answered = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        conf_entry_answer(conf_answered_completion(ctx, token)), "text"));
    return answered ? answered : oracle;
}

const char *
conf_expected_text(struct conf_ctx *ctx, const char *oracle)
{
    return conf_expected_text_of(ctx, ctx->last_token, oracle);
}

const char *
conf_oracle_text(struct conf_ctx *ctx, const char *body)
{
    const char *token = conf_token(ctx);
    const struct conf_response *r = conf_mock_direct_chat(ctx, token, body);
    const char *text = NULL;
    if (conf_dialect_is_v2(target->dialect)) {
        text = r->status == 200 ? direct_answer_text(ctx, token) : NULL;
    } else {
        const cJSON *choice =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "choices"), 0);
        text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(choice, "message"), "content"));
    }
    conf_check(ctx, r, r->status == 200 && text,
               "harness: the mock did not answer the oracle request");
    return text;
}

const struct conf_response *
conf_mock_direct_models(struct conf_ctx *ctx, const char *token)
{
    return conf_mock_direct(ctx, "GET", target->dialect->models_path, token, NULL);
}

const cJSON *
conf_json(struct conf_ctx *ctx, const struct conf_response *resp)
{
    cJSON *json = cJSON_ParseWithLength(resp->body, resp->body_len);
    if (!json)
        return NULL;
    return pool_keep(ctx, json, release_json);
}

bool
conf_is_model_list(struct conf_ctx *ctx, const struct conf_response *resp)
{
    const char *ct = conf_response_header(resp, "Content-Type");
    if (resp->status != 200 || !ct || strncasecmp(ct, "application/json", 16) != 0)
        return false;
    return cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(conf_json(ctx, resp), "data"));
}

const char *
conf_describe(struct conf_ctx *ctx, const struct conf_response *resp)
{
    if (resp->status == 0)
        return conf_str(ctx, "no answer (%s)", resp->error);
    const char *ct = conf_response_header(resp, "Content-Type");
    return conf_str(ctx, "HTTP %ld %s", resp->status, ct ? ct : "without Content-Type");
}

void
conf_require_model_list(struct conf_ctx *ctx, const struct conf_response *resp)
{
    conf_assume(ctx, conf_is_model_list(ctx, resp),
                "the model list is not relayed (%s; see HTTP-6), nothing to judge",
                conf_describe(ctx, resp));
}

/* ---- the mock ---- */

/*
 * The key the mock scripts and journals @p token's requests under: the token itself, or
 * the profile's upstream_credential for a proxy that sends its own. A test that tells two
 * tokens apart at the upstream cannot be judged on such a proxy.
 */
void
conf_note_token(struct conf_ctx *ctx, const char *token)
{
    if (token && token[0])
        ctx->last_token = conf_str(ctx, "%s", token);
    if (!target->profile.upstream_credential[0] || !token || !token[0])
        return;
    if (ctx->scripted_token && strcmp(ctx->scripted_token, token) == 0)
        return;
    for (size_t i = 0; i < ctx->retired_count; i++)
        conf_observable(ctx, strcmp(ctx->retired_tokens[i], token) != 0,
                        "the test goes back to an earlier caller's credential, whose upstream "
                        "requests cannot be told apart from the later ones when the proxy sends "
                        "one credential of its own (\"upstream_credential\")");
    if (ctx->scripted_token) {
        conf_observable(ctx, ctx->retired_count < sizeof(ctx->retired_tokens) / sizeof(char *),
                        "harness: too many credentials in one test");
        ctx->retired_tokens[ctx->retired_count++] = ctx->scripted_token;
    }
    /* The credential now stands for this token alone: a clean upstream (no steps left
     * for the last one), and only the requests that arrive from now on. */
    /* The mark first: a request still on its way from before is journaled after the
     * reset, with the number it arrived under. */
    ctx->start_seq = conf_upstream_mark(ctx).seq;
    char err[512] = "";
    conf_check(ctx, NULL, conf_mock_reset(target->mock_url, err, sizeof(err)) == QK_OK,
               "harness: %s", err);
    ctx->scripted_token = conf_str(ctx, "%s", token);
}

/* The bearer token of a "Authorization: Bearer T" line among @p headers, or NULL. */
static const char *
bearer_in(struct conf_ctx *ctx, const char *const *headers)
{
    static const char prefix[] = "Authorization: Bearer ";
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strncasecmp(headers[i], prefix, sizeof(prefix) - 1) == 0 &&
            headers[i][sizeof(prefix) - 1])
            return conf_str(ctx, "%s", headers[i] + sizeof(prefix) - 1);
    }
    return NULL;
}

/* The key the mock scripts and journals @p token's requests under: the token itself, or
 * the profile's upstream_credential for a proxy that sends its own. */
static const char *
upstream_key(struct conf_ctx *ctx, const char *token)
{
    const char *cred = target->profile.upstream_credential;
    if (!cred[0] || !token[0])
        return token;
    conf_note_token(ctx, token);
    return cred;
}

size_t
conf_queue(struct conf_ctx *ctx, const char *token, const char *route, const char *steps_json)
{
    char err[512] = "";
    size_t queued = 0;
    bool any = strcmp(route, "any") == 0;
    if (any || strcmp(route, "models") == 0)
        require_verbatim(ctx, CONF_ROUTE_MODELS);
    if (any || strcmp(route, "chat") == 0 || strcmp(route, "chats_new") == 0)
        require_verbatim(ctx, CONF_ROUTE_CHAT);
    enum qk_err rc = conf_mock_queue(target->mock_url, upstream_key(ctx, token), route, steps_json,
                                     &queued, err, sizeof(err));
    conf_check(ctx, NULL, rc == QK_OK, "harness: %s", err);
    return queued;
}

void
conf_revoke(struct conf_ctx *ctx, const char *token)
{
    conf_revoke_slow(ctx, token, 0);
}

void
conf_revoke_slow(struct conf_ctx *ctx, const char *token, int delay_ms)
{
    char err[512] = "";
    enum qk_err rc =
        conf_mock_revoke(target->mock_url, upstream_key(ctx, token), delay_ms, err, sizeof(err));
    conf_check(ctx, NULL, rc == QK_OK, "harness: %s", err);
}

/* The journal's whole answer: `in_flight` and `entries`. The empty token reads requests
 * that carried none, which any test may judge. */
static const cJSON *
journal_root(struct conf_ctx *ctx, const char *token)
{
    if (token[0])
        require_verbatim_on_routes_used(ctx);
    char err[512] = "";
    cJSON *root = NULL;
    const char *key = upstream_key(ctx, token);
    enum qk_err rc = conf_mock_journal(target->mock_url, key, &root, err, sizeof(err));
    conf_check(ctx, NULL, rc == QK_OK, "harness: %s", err);
    pool_keep(ctx, root, release_json);
    if (key != token) {
        /* The shared credential's journal: only this test's requests. */
        cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
        for (int i = cJSON_GetArraySize(entries) - 1; i >= 0; i--) {
            const cJSON *seq =
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, i), "seq");
            if (!cJSON_IsNumber(seq) || (long)seq->valuedouble <= ctx->start_seq)
                cJSON_DeleteItemFromArray(entries, i);
        }
    }
    return root;
}

/* Requests of the token the mock has received but not journaled yet. */
static long
in_flight(const cJSON *root)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "in_flight");
    return cJSON_IsNumber(n) ? (long)n->valuedouble : 0;
}

const cJSON *
conf_journal(struct conf_ctx *ctx, const char *token)
{
    return cJSON_GetObjectItemCaseSensitive(journal_root(ctx, token), "entries");
}

/* The journal once none of the token's requests is in flight, or as it is after
 * SETTLE_EXPECTED_MS (a stream still running). */
const cJSON *
conf_journal_settled(struct conf_ctx *ctx, const char *token)
{
    int64_t until = qk_now_ms() + SETTLE_EXPECTED_MS;
    for (;;) {
        const cJSON *root = journal_root(ctx, token);
        if (in_flight(root) == 0 || qk_now_ms() >= until)
            return cJSON_GetObjectItemCaseSensitive(root, "entries");
        conf_sleep_ms(25);
    }
}

/* @return true when requests @p a and @p b were in flight at the same time. */
static bool
entries_overlap(const cJSON *a, const cJSON *b)
{
    return conf_entry_received_ms(a) < conf_entry_finished_ms(b) &&
           conf_entry_received_ms(b) < conf_entry_finished_ms(a);
}

/* A v2 chat creation that failed is an attempt of its own unless it was in flight beside
 * another attempt's request: a pool creates spares at the same time as the chat it needs
 * (Dialects), and one need is one attempt however many chats it asked for at once. One
 * that began while no caller of the test waited for the proxy is a refill: it is no try at
 * anything a caller asked for. */
static bool
failed_creation_is_attempt(const struct conf_ctx *ctx, const cJSON *e, const cJSON *journal,
                           const cJSON *counted)
{
    if (!caller_waiting_at(ctx, conf_entry_received_ms(e)))
        return false;
    const cJSON *f;
    cJSON_ArrayForEach(f, journal)
    {
        if (f != e && conf_dialect_is_completion(target->dialect, conf_entry_path(f)) &&
            entries_overlap(e, f))
            return false;
    }
    cJSON_ArrayForEach(f, counted)
    {
        if (conf_dialect_is_chat_new(target->dialect, conf_entry_path(f)) && entries_overlap(e, f))
            return false;
    }
    return true;
}

const cJSON *
conf_attempt_entries(struct conf_ctx *ctx, const cJSON *journal)
{
    cJSON *attempts = cJSON_CreateArray();
    pool_keep(ctx, attempts, release_json);
    const cJSON *e;
    cJSON_ArrayForEach(e, journal)
    {
        const char *path = conf_entry_path(e);
        bool attempt =
            conf_dialect_is_attempt(target->dialect, path) ||
            (conf_dialect_is_chat_new(target->dialect, path) && conf_entry_answer_failed(e) &&
             failed_creation_is_attempt(ctx, e, journal, attempts));
        if (attempt)
            cJSON_AddItemReferenceToArray(attempts, (cJSON *)e);
    }
    return attempts;
}

/* The upstream requests made with @p token once settled: every one, or only the attempts. */
static size_t
count_upstream(struct conf_ctx *ctx, const char *token, size_t expect, bool attempts_only)
{
    /* The mock journals a request when its answer is complete, which can be a moment
     * after the proxy (and so the suite) saw that answer; meanwhile it counts the request
     * as in flight. Wait for the count to settle, and for expected requests to arrive
     * (a proxy may send them after answering). */
    int64_t now = qk_now_ms();
    int64_t until = now + (expect ? SETTLE_EXPECTED_MS : SETTLE_ZERO_MS);
    int64_t hard_until = now + SETTLE_EXPECTED_MS;
    for (;;) {
        const cJSON *root = journal_root(ctx, token);
        const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
        size_t n = (size_t)cJSON_GetArraySize(attempts_only ? conf_attempt_entries(ctx, entries)
                                                            : entries);
        bool settled = in_flight(root) == 0;
        now = qk_now_ms();
        if (settled && (n > expect || (n == expect && expect > 0)))
            return n;
        if (now >= hard_until || (now >= until && settled))
            return n;
        conf_sleep_ms(25);
    }
}

size_t
conf_attempts(struct conf_ctx *ctx, const char *token, size_t expect)
{
    return count_upstream(ctx, token, expect, true);
}

size_t
conf_upstream_requests(struct conf_ctx *ctx, const char *token, size_t expect)
{
    return count_upstream(ctx, token, expect, false);
}

/* A window search from @p since_ms, once none of its requests is in flight (up to 1 s). */
static const cJSON *
window_settled(struct conf_ctx *ctx, int64_t since_ms)
{
    int64_t until = qk_now_ms() + SETTLE_EXPECTED_MS;
    for (;;) {
        char err[512] = "";
        cJSON *root = NULL;
        enum qk_err rc = conf_mock_journal_window(target->mock_url, since_ms, qk_now_ms(), NULL,
                                                  &root, err, sizeof(err));
        conf_check(ctx, NULL, rc == QK_OK, "harness: %s", err);
        pool_keep(ctx, root, release_json);
        if (in_flight(root) <= 0 || qk_now_ms() >= until)
            return root;
        conf_sleep_ms(25);
    }
}

static long
entry_seq(const cJSON *e)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "seq");
    return cJSON_IsNumber(s) ? (long)s->valuedouble : 0;
}

struct conf_mark
conf_upstream_mark(struct conf_ctx *ctx)
{
    struct conf_mark m = {.ms = qk_now_ms(), .seq = 0};
    /* The last few seconds hold the latest request, if it is recent enough to matter. */
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(
                              window_settled(ctx, m.ms - 5000 > 0 ? m.ms - 5000 : 1), "entries"))
    {
        if (entry_seq(e) > m.seq)
            m.seq = entry_seq(e);
    }
    return m;
}

const cJSON *
conf_upstream_since(struct conf_ctx *ctx, struct conf_mark mark)
{
    /* The same millisecond may hold requests from before the mark: the sequence decides. */
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(
        window_settled(ctx, mark.ms > 1 ? mark.ms - 1 : 1), "entries");
    cJSON *later = cJSON_CreateArray();
    pool_keep(ctx, later, release_json);
    const cJSON *e;
    cJSON_ArrayForEach(e, entries)
    {
        /* A chat created for an earlier test's token carries no prompt and nothing of
         * this test's callers: a pool refilled in the background (Dialects). */
        if (entry_seq(e) > mark.seq && !conf_entry_is_earlier_chat_creation(ctx, e))
            cJSON_AddItemReferenceToArray(later, (cJSON *)e);
    }
    return later;
}

const char *
conf_credential_seen(struct conf_ctx *ctx, const char *token, struct conf_mark mark)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, conf_upstream_since(ctx, mark))
    {
        const char *auth = conf_entry_header(e, "Authorization");
        size_t n = conf_entry_header_count(e, "Authorization");
        if (conf_entry_credential_is(e, token, conf_dialect_is_v2(target->dialect)))
            continue;
        if (n > 1)
            return conf_str(ctx, "%zu Authorization headers", n);
        char shown[160];
        return conf_str(ctx, "\"%s\"", conf_text_credential(shown, sizeof(shown), auth, token));
    }
    return NULL;
}

void
conf_burn_leftovers(struct conf_ctx *ctx, const char *token, const char *route, size_t queued)
{
    size_t used = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, conf_journal_settled(ctx, token))
    {
        used += (size_t)conf_entry_had_step(e);
    }
    bool chat = strcmp(route, "chat") == 0;
    const char *key = upstream_key(ctx, token);
    for (size_t i = used; i < queued; i++) {
        if (chat)
            conf_mock_direct_chat(ctx, key, conf_chat_body(ctx, "burn a leftover step"));
        else
            conf_mock_direct_models(ctx, key);
    }
}

/* ---- evidence and assertions ---- */

/* Prints a line of evidence and keeps it with the test's outcome (for JUnit and JSON),
 * cleaned of bytes no report may hold. */
static void evidence(struct conf_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
evidence(struct conf_ctx *ctx, const char *fmt, ...)
{
    char raw[DUMP_BODY_MAX + 256], clean[4 * sizeof(raw)];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    conf_text_clean(clean, sizeof(clean), raw,
                    (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1);
    print_error("%s", clean);
    struct conf_case *k = ctx->kase;
    size_t add = strlen(clean);
    if (k->evidence_len + add + 1 > CONF_EVIDENCE_MAX)
        return;
    char *grown = realloc(k->evidence, k->evidence_len + add + 1);
    if (!grown)
        return;
    memcpy(grown + k->evidence_len, clean, add + 1);
    k->evidence = grown;
    k->evidence_len += add;
}

static void
print_response(struct conf_ctx *ctx, const struct conf_response *r)
{
    if (!r)
        return;
    if (r->curl_code != 0)
        evidence(ctx, "    transport error: %s (curl %d)\n", r->error, r->curl_code);
    evidence(ctx, "    response: HTTP %ld after %lld ms\n", r->status,
             (long long)(r->done_ms - r->sent_ms));
    for (size_t i = 0; i < r->header_count; i++)
        evidence(ctx, "      %s: %s\n", r->headers[i].name, r->headers[i].value);
    int shown = r->body_len > DUMP_BODY_MAX ? DUMP_BODY_MAX : (int)r->body_len;
    evidence(ctx, "      body (%zu bytes): %.*s%s\n", r->body_len, shown, r->body ? r->body : "",
             r->body_len > DUMP_BODY_MAX ? "..." : "");
}

const char *
conf_status_name(enum conf_status s)
{
    switch (s) {
    case CONF_PASS:
        return "PASS";
    case CONF_FAIL:
        return "FAIL";
    case CONF_SKIP:
        return "SKIP";
    case CONF_UNCHECKED:
        return "UNCHECKED";
    case CONF_CANNOT_JUDGE:
        return "CANNOT-JUDGE";
    case CONF_NOT_RUN:
        break;
    }
    return "NOT RUN";
}

static void record(struct conf_ctx *ctx, enum conf_status status, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
record(struct conf_ctx *ctx, enum conf_status status, const char *fmt, va_list ap)
{
    char raw[CONF_REASON_MAX], msg[CONF_REASON_MAX];
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
    conf_text_clean(msg, sizeof(msg), raw, len);
    /* The first reason is the one the report shows; later ones are consequences. */
    if (ctx->kase->reason[0] == '\0')
        snprintf(ctx->kase->reason, sizeof(ctx->kase->reason), "%s", msg);
    ctx->kase->status = status;
    print_error("%s %s%s: %s\n", conf_status_name(status), conf_requirement(ctx->kase->req)->id,
                ctx->kase->should_part ? " (SHOULD part)" : "", msg);
    if (ctx->last_request[0])
        evidence(ctx, "    last request to the proxy: %s\n", ctx->last_request);
}

void
conf_check_at(struct conf_ctx *ctx, const struct conf_response *resp, bool ok, const char *file,
              int line, const char *fmt, ...)
{
    if (ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    record(ctx, CONF_FAIL, fmt, ap);
    va_end(ap);
    print_response(ctx, resp);
    _fail(file, line);
}

void
conf_assume_at(struct conf_ctx *ctx, bool ok, const char *file, int line, const char *fmt, ...)
{
    if (ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    record(ctx, CONF_SKIP, fmt, ap);
    va_end(ap);
    _skip(file, line);
}

void
conf_dialect_only_at(struct conf_ctx *ctx, bool ok, const char *file, int line, const char *fmt,
                     ...)
{
    if (ok)
        return;
    ctx->kase->other_dialect = true;
    ctx->kase->excused = true;
    va_list ap;
    va_start(ap, fmt);
    record(ctx, CONF_SKIP, fmt, ap);
    va_end(ap);
    _skip(file, line);
}

void
conf_end_unless_at(struct conf_ctx *ctx, bool ok, enum conf_status status, const char *file,
                   int line, const char *fmt, ...)
{
    if (ok)
        return;
    va_list ap;
    va_start(ap, fmt);
    record(ctx, status, fmt, ap);
    va_end(ap);
    /* cmocka knows pass, fail and skip; the report reads the finer status. */
    _skip(file, line);
}

void
conf_assert_status_at(struct conf_ctx *ctx, const struct conf_response *resp, long status,
                      const char *file, int line)
{
    if (resp->status == status)
        return;
    if (resp->status == 0)
        conf_check_at(ctx, resp, false, file, line, "expected HTTP %ld, got no answer (%s)", status,
                      resp->error);
    conf_check_at(ctx, resp, false, file, line, "expected HTTP %ld, got %ld", status, resp->status);
}

static void
print_journal(struct conf_ctx *ctx, const cJSON *entries)
{
    const cJSON *e;
    int i = 0;
    cJSON_ArrayForEach(e, entries)
    {
        evidence(ctx, "    upstream attempt %d: %s %s -> %ld (received %lld ms)\n", ++i,
                 conf_entry_method(e), conf_entry_path(e), conf_entry_status(e),
                 (long long)conf_entry_received_ms(e));
    }
}

void
conf_assert_attempts_at(struct conf_ctx *ctx, const char *token, size_t n, const char *file,
                        int line)
{
    size_t got = conf_attempts(ctx, token, n);
    if (got == n)
        return;
    print_journal(ctx, conf_journal(ctx, token));
    conf_check_at(ctx, NULL, false, file, line,
                  "expected %zu upstream attempt%s, journal shows %zu", n, n == 1 ? "" : "s", got);
}

void
conf_assert_no_upstream_at(struct conf_ctx *ctx, const char *token, const char *file, int line)
{
    size_t got = conf_upstream_requests(ctx, token, 0);
    if (got == 0)
        return;
    print_journal(ctx, conf_journal(ctx, token));
    conf_check_at(ctx, NULL, false, file, line,
                  "expected no upstream request, journal shows %zu (any path)", got);
}

static const cJSON *
error_object(struct conf_ctx *ctx, const struct conf_response *resp, const char *file, int line)
{
    const char *ct = conf_response_header(resp, "Content-Type");
    conf_check_at(ctx, resp, ct && strncasecmp(ct, "application/json", 16) == 0, file, line,
                  "error answer %ld is not application/json (Content-Type: %s)", resp->status,
                  ct ? ct : "none");
    const cJSON *body = conf_json(ctx, resp);
    conf_check_at(ctx, resp, cJSON_IsObject(body), file, line,
                  "error answer %ld is not a JSON object", resp->status);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(body, "error");
    conf_check_at(ctx, resp, cJSON_IsObject(err), file, line,
                  "error answer %ld has no \"error\" object", resp->status);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    conf_check_at(ctx, resp, cJSON_IsString(msg) && msg->valuestring[0] != '\0', file, line,
                  "error answer %ld has no \"error.message\" string", resp->status);
    return err;
}

void
conf_assert_json_error_at(struct conf_ctx *ctx, const struct conf_response *resp, const char *file,
                          int line)
{
    error_object(ctx, resp, file, line);
}

void
conf_assert_openai_error_at(struct conf_ctx *ctx, const struct conf_response *resp,
                            const char *file, int line)
{
    const cJSON *err = error_object(ctx, resp, file, line);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(err, "type");
    conf_check_at(ctx, resp, cJSON_IsString(type), file, line,
                  "\"error.type\" is missing or not a string");
    conf_check_at(ctx, resp, cJSON_HasObjectItem(err, "param"), file, line,
                  "\"error.param\" is missing (null is fine)");
    conf_check_at(ctx, resp, cJSON_HasObjectItem(err, "code"), file, line,
                  "\"error.code\" is missing (null is fine)");
}

void
conf_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool
conf_contains_nocase(const char *haystack, const char *needle)
{
    if (!haystack || !needle)
        return false;
    size_t n = strlen(needle);
    for (const char *p = haystack; *p; p++) {
        if (strncasecmp(p, needle, n) == 0)
            return true;
    }
    return n == 0;
}
