/*
 * The mutants' table edits and output rewrites (mutant.h). Compiled only in builds with
 * -DQK_MUTANTS: nothing of this file reaches a release binary.
 */
#include "mutant.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admission.h"
#include "bearer.h"
#include "cache.h"
#include "dialect.h"
#include "flight.h"
#include "forward.h"
#include "headers.h"
#include "key.h"
#include "log.h"
#include "request.h"
#include "retry.h"
#include "routes.h"
#include "stream.h"

enum qp_mutant qp_mutant_active = QP_MUT_NONE;

static const char *const mutant_names[QP_MUT_COUNT] = {[QP_MUT_NONE] = "none",
#define QP_MUTANT_NAME(name) [QP_MUT_##name] = #name,
                                                       QP_MUTANT_MAP(QP_MUTANT_NAME)
#undef QP_MUTANT_NAME
};

static bool
mutant_of(const char *name, enum qp_mutant *out)
{
    for (int i = 0; i < QP_MUT_COUNT; i++) {
        if (strcmp(mutant_names[i], name) == 0) {
            *out = (enum qp_mutant)i;
            return true;
        }
    }
    return false;
}

bool
qp_mutant_known(const char *name)
{
    enum qp_mutant m = QP_MUT_NONE;
    return mutant_of(name, &m);
}

/* ---- table edits -------------------------------------------------------------------- */

/* The real tables, kept from the first start so that every start begins from them. */
static struct qp_header_policy real_header_policy;
static struct qp_route_row real_routes[QP_ROUTE_ROWS];
static struct qp_give_up_statuses real_give_up_statuses;
static struct qp_auth_policy real_auth_policy;
static struct qp_admission_policy real_admission_policy;
static struct qp_stream_policy real_stream_policy;
static struct qp_flight_policy real_flight_policy;
static struct qp_resend_policy real_resend_policy;
static struct qp_exchange_policy real_exchange_policy;
static struct qp_intake_policy real_intake_policy;
static struct qp_dialect_step real_v2_chats_new;
static bool real_tables_saved;

/* v2_unchecked_chat_id: a chats/new reader that takes data.id out of whatever came back,
 * "" when there is none, as a proxy that never checks `success` does. */
static bool
take_any_chat_id(struct qp_plan_state *plan, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *id = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "data"), "id"));
    snprintf(plan->chat_id, sizeof(plan->chat_id), "%s", id ? id : "");
    cJSON_Delete(root);
    return true;
}

/* The v2 chat plan's steps: not const in a mutant build (dialect_v2.c), so writable. */
static struct qp_dialect_step *
v2_chat_steps(void)
{
    return (struct qp_dialect_step *)qp_dialect_v2.chat.steps;
}

/* The rules a mutated retry policy points at (there is one mutant per process). */
static struct qp_retry_rules mutated_retry_rules;

/* Clears @p flags on every header row but those named in @p keep (NULL-terminated). */
static void
headers_clear(unsigned flags, const char *const *keep)
{
    for (size_t i = 0; i < QP_HEADER_ROWS; i++) {
        bool kept = false;
        for (const char *const *k = keep; *k; k++)
            kept = kept || strcasecmp(qp_header_policy.rows[i].name, *k) == 0;
        if (!kept)
            qp_header_policy.rows[i].flags &= ~flags;
    }
    qp_header_policy.connection_listed &= ~flags;
}

static void
retry_status_set(struct qp_retry_rules *r, long status, enum qp_retry_rule rule)
{
    for (size_t i = 0; i < QP_RETRY_STATUS_ROWS; i++) {
        if (r->statuses[i].status == status)
            r->statuses[i].rule = rule;
    }
}

/* The retry mutants edit a copy of the policy's rules, which the policy then points at. */
static void
edit_retry_rules(enum qp_mutant m, struct qp_retry_policy *retry)
{
    struct qp_retry_rules *r = &mutated_retry_rules;
    *r = retry->rules ? *retry->rules : qp_retry_rules_default;
    switch (m) {
    case QP_MUT_retry_401:
        retry_status_set(r, 401, QP_RULE_RETRY);
        break;
    case QP_MUT_retry_4xx:
        retry_status_set(r, 400, QP_RULE_RETRY);
        retry_status_set(r, 403, QP_RULE_RETRY);
        retry_status_set(r, 404, QP_RULE_RETRY);
        retry_status_set(r, 413, QP_RULE_RETRY);
        break;
    case QP_MUT_no_retry_gateway:
        r->transport = QP_RULE_FINAL;
        retry_status_set(r, 502, QP_RULE_FINAL);
        retry_status_set(r, 504, QP_RULE_FINAL);
        retry_status_set(r, 503, QP_RULE_IF_TOLD);
        break;
    case QP_MUT_relay_html:
        r->html_fails = false;
        break;
    case QP_MUT_no_backoff:
        r->retry_after_waits = false;
        retry->base_ms = 0;
        break;
    default:
        return;
    }
    retry->rules = r;
}

bool
qp_mutant_apply(const char *name, struct qp_retry_policy *retry)
{
    enum qp_mutant m = QP_MUT_NONE;
    if (name && !mutant_of(name, &m))
        return false;
    if (!real_tables_saved) {
        real_header_policy = qp_header_policy;
        memcpy(real_routes, qp_routes, sizeof(real_routes));
        real_give_up_statuses = qp_give_up_statuses;
        real_auth_policy = qp_auth_policy;
        real_admission_policy = qp_admission_policy;
        real_stream_policy = qp_stream_policy;
        real_flight_policy = qp_flight_policy;
        real_resend_policy = qp_resend_policy;
        real_exchange_policy = qp_exchange_policy;
        real_intake_policy = qp_intake_policy;
        real_v2_chats_new = v2_chat_steps()[0];
        real_tables_saved = true;
    }
    qp_header_policy = real_header_policy;
    memcpy(qp_routes, real_routes, sizeof(real_routes));
    qp_give_up_statuses = real_give_up_statuses;
    qp_auth_policy = real_auth_policy;
    qp_admission_policy = real_admission_policy;
    qp_stream_policy = real_stream_policy;
    qp_flight_policy = real_flight_policy;
    qp_resend_policy = real_resend_policy;
    qp_exchange_policy = real_exchange_policy;
    qp_intake_policy = real_intake_policy;
    v2_chat_steps()[0] = real_v2_chats_new;
    qp_mutant_active = m;

    /* The policies a mutant turns off; buffer_stream holds the stream back (inline), so
     * it never pauses the upstream either. */
    if (m == QP_MUT_no_auth_check)
        qp_auth_policy.require_authorization = false;
    if (m == QP_MUT_empty_token_ok)
        qp_auth_policy.require_bearer_token = false;
    if (m == QP_MUT_forward_duplicate_headers)
        qp_header_policy.refuse_duplicates = false;
    if (m == QP_MUT_forward_control_chars)
        qp_header_policy.refuse_control_chars = false;
    if (m == QP_MUT_no_half_close_watch)
        qp_admission_policy.half_close_watch = false;
    if (m == QP_MUT_unbounded_stream_buffer || m == QP_MUT_buffer_stream)
        qp_stream_policy.pause_when_full = false;
    if (m == QP_MUT_no_single_flight)
        qp_flight_policy.single_flight = false;
    if (m == QP_MUT_client_resends)
        qp_resend_policy.one_send_per_attempt = false;
    if (m == QP_MUT_keep_upstream_on_disconnect)
        qp_exchange_policy.close_upstream_when_caller_leaves = false;
    if (m == QP_MUT_relay_non_sse_200)
        qp_exchange_policy.non_sse_200_fails = false;
    if (m == QP_MUT_retry_after_caller_left)
        qp_exchange_policy.watch_caller_before_start = false;
    if (m == QP_MUT_bytes_reset_idle)
        qp_stream_policy.idle_counts_events = false;
    if (m == QP_MUT_decode_path_before_routing)
        qp_intake_policy.route_on_raw_path = false;
    if (m == QP_MUT_no_validation)
        qp_intake_policy.validate_chat = false;

    /* Transfer-Encoding frames each connection, and a relayed Connection would end the
     * caller's: those stay hop-by-hop even in the mutants that forward the others. */
    static const char *const framing[] = {"Transfer-Encoding", NULL};
    static const char *const framing_and_connection[] = {"Transfer-Encoding", "Connection", NULL};
    if (m == QP_MUT_forward_hop_headers)
        headers_clear(QP_HDR_HOP_REQ, framing);
    if (m == QP_MUT_relay_hop_headers)
        headers_clear(QP_HDR_HOP_RES, framing_and_connection);
    for (size_t i = 0; i < QP_ROUTE_ROWS; i++) {
        if (m == QP_MUT_head_405)
            qp_routes[i].head = false;
        if (m == QP_MUT_v1_models_raw && strcmp(qp_routes[i].path, "/v1/models") == 0)
            qp_routes[i].openai_alias = false;
    }
    if (m == QP_MUT_timeout_502)
        qp_give_up_statuses.timeout = 502;
    if (m == QP_MUT_unreachable_500)
        qp_give_up_statuses.unreachable = 500;
    if (m == QP_MUT_v2_unchecked_chat_id)
        v2_chat_steps()[0].take_answer = take_any_chat_id;
    edit_retry_rules(m, retry);
    return true;
}

/* ---- output rewrites ---------------------------------------------------------------- */

void
qp_mutant_rewrite_error(struct qp_response *r, unsigned status, const char *message)
{
    if (!QP_MUTANT(html_errors))
        return;
    size_t n = strlen(message) + 64;
    char *html = malloc(n);
    if (html)
        snprintf(html, n, "<html><body><h1>%u</h1><p>%s</p></body></html>", status, message);
    qp_response_take_body(r, status, html, html ? strlen(html) : 0, "text/html; charset=utf-8");
}

/* Removes every @p name header of @p r. */
static void
response_drop(struct MHD_Response *r, const char *name)
{
    const char *value = NULL;
    while ((value = MHD_get_response_header(r, name)) != NULL) {
        char copy[512];
        snprintf(copy, sizeof(copy), "%s", value);
        if (MHD_del_response_header(r, name, copy) != MHD_YES)
            return;
    }
}

void
qp_mutant_rewrite_response(struct MHD_Response *r, unsigned status, bool stream)
{
    if (QP_MUTANT(no_request_id))
        response_drop(r, "X-Request-Id");
    if (QP_MUTANT(no_allow_header) && status == 405)
        response_drop(r, "Allow");
    if (QP_MUTANT(no_cors)) {
        response_drop(r, "Access-Control-Allow-Origin");
        response_drop(r, "Access-Control-Expose-Headers");
        response_drop(r, "Vary");
    }
    if (QP_MUTANT(sse_no_event_stream_headers) && stream) {
        response_drop(r, "Cache-Control");
        response_drop(r, "X-Accel-Buffering");
    }
}

void
qp_mutant_rewrite_preflight(struct qp_response *r, const char *method)
{
    if (!QP_MUTANT(no_cors))
        return;
    qp_response_error(r, 405, "Method not allowed.", NULL, "method_not_allowed");
    qp_response_add_header(r, "Allow", method);
}

/* Discards what the upstream answers a refusal's probe. */
static size_t
discard(char *ptr, size_t size, size_t n, void *ud)
{
    (void)ptr;
    (void)ud;
    return size * n;
}

void
qp_mutant_rewrite_refusal(struct MHD_Connection *conn, unsigned status, const char *upstream,
                          const char *models_path)
{
    if (!QP_MUTANT(refusals_ask_upstream) || (status != 404 && status != 405 && status != 413))
        return;
    /* A proxy that checks the caller's token upstream before it answers anything: the
     * caller's answer is right, only the upstream sees the extra request. */
    char url[1024], auth[4096];
    snprintf(url, sizeof url, "%s%s", upstream, models_path);
    const char *value = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    snprintf(auth, sizeof auth, "Authorization: %s", value ? value : "");
    CURL *easy = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    if (easy && headers) {
        curl_easy_setopt(easy, CURLOPT_URL, url);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_perform(easy);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
}

/* @return true when the header line @p line is the @p name header. */
static bool
line_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && (line[n] == ':' || line[n] == ';');
}

/* connection_first_line: what goes back into the upstream request. */
struct first_line_walk {
    const struct curl_slist *list; /* the lines as the proxy made them */
    const char *first;             /* the caller's first Connection line, or NULL */
    struct curl_slist *added;
};

/* @return true when a line of @p list has the name @p name. */
static bool
list_has(const struct curl_slist *list, const char *name)
{
    for (; list; list = list->next) {
        if (line_is(list->data, name))
            return true;
    }
    return false;
}

static enum MHD_Result
add_first_line_hop(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct first_line_walk *w = cls;
    /* A header the proxy dropped only because a later Connection line named it; the ones
     * it sets or joins itself (Cookie, a configured name, Content-Type) it kept anyway. */
    if (!qp_header_forward_request(key, w->first) || strcasecmp(key, "Cookie") == 0 ||
        strcasecmp(key, "Content-Type") == 0 || list_has(w->list, key))
        return MHD_YES;
    char line[1024];
    snprintf(line, sizeof(line), value && value[0] ? "%s: %s" : "%s;", key, value ? value : "");
    struct curl_slist *more = curl_slist_append(w->added, line);
    if (more)
        w->added = more;
    return MHD_YES;
}

static void
readd_first_line_hops(struct curl_slist **list, struct MHD_Connection *conn)
{
    struct first_line_walk w = {
        *list, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connection"), NULL};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_first_line_hop, &w);
    for (const struct curl_slist *l = w.added; l; l = l->next) {
        struct curl_slist *more = curl_slist_append(*list, l->data);
        if (more)
            *list = more;
    }
    curl_slist_free_all(w.added);
}

void
qp_mutant_rewrite_upstream_headers(struct curl_slist **list, struct MHD_Connection *conn)
{
    if (QP_MUTANT(connection_first_line))
        readd_first_line_hops(list, conn);
    const char *dropped = QP_MUTANT(no_request_id)        ? "X-Request-Id"
                          : QP_MUTANT(drop_authorization) ? "Authorization"
                                                          : NULL;
    if (!dropped)
        return;
    struct curl_slist *kept = NULL;
    for (const struct curl_slist *l = *list; l; l = l->next) {
        if (line_is(l->data, dropped))
            continue;
        struct curl_slist *more = curl_slist_append(kept, l->data);
        if (!more) {
            curl_slist_free_all(kept);
            return; /* out of memory: the list stays as it was */
        }
        kept = more;
    }
    curl_slist_free_all(*list);
    *list = kept;
}

void
qp_mutant_rewrite_models(struct qp_response *r, bool v1)
{
    if (QP_MUTANT(models_as_text) && !v1)
        snprintf(r->content_type, sizeof(r->content_type), "text/plain");
}

void
qp_mutant_rewrite_completion(char **body, size_t *len)
{
    if (QP_MUTANT(usage_raw)) {
        free(*body);
        *body = NULL;
    }
    if (QP_MUTANT(rewrite_completion)) {
        free(*body);
        *body = strdup("{\"id\":\"chatcmpl-rewritten\",\"object\":\"chat.completion\","
                       "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                       "\"content\":\"rewritten\"},\"finish_reason\":\"stop\"}]}");
        *len = *body ? strlen(*body) : 0;
    }
}

void
qp_mutant_rewrite_upstream_message(char **message, long status)
{
    if (QP_MUTANT(rewrite_400) && status == 400) {
        free(*message);
        *message = strdup("Bad request.");
    }
}

void
qp_mutant_rewrite_relay(struct qp_request *req)
{
    const struct qp_attempt_facts *f = &req->last;
    if (!QP_MUTANT(relay_html) || !f->html || f->transport == QP_TRANSPORT_TOO_BIG)
        return;
    size_t len = 0;
    char *body = qk_buf_take(&req->attempt_body, &len);
    qp_response_clear(&req->resp);
    qp_response_take_body(&req->resp, (unsigned)f->status, body, len, "text/html; charset=utf-8");
}

void
qp_mutant_rewrite_models_key(struct qp_key *key)
{
    if (QP_MUTANT(global_cache))
        *key = qp_key_of("global", 6);
}

/* Replaces req->body with @p root printed (kept as it was when that fails). */
static void
body_replace(struct qp_request *req, const cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    if (!text)
        return;
    qk_buf_reset(&req->body);
    if (qk_buf_append_str(&req->body, text) != QK_OK)
        qk_buf_reset(&req->body);
    free(text);
}

/* drop_unknown_fields: the body keeps only the fields the proxy knows. */
static void
drop_unknown_fields(struct qp_request *req)
{
    static const char *const known[] = {"model", "messages", "stream", "incremental_output"};
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    cJSON *kept = cJSON_CreateObject();
    for (size_t i = 0; cJSON_IsObject(root) && kept && i < sizeof(known) / sizeof(known[0]); i++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(root, known[i]);
        if (v)
            cJSON_AddItemToObject(kept, known[i], v);
    }
    if (cJSON_IsObject(root) && kept)
        body_replace(req, kept);
    cJSON_Delete(kept);
    cJSON_Delete(root);
}

/* retry_changes_body: later attempts carry an extra field. */
static void
add_retry_attempt(struct qp_request *req)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    if (cJSON_IsObject(root) && cJSON_AddNumberToObject(root, "retry_attempt", req->attempts))
        body_replace(req, root);
    cJSON_Delete(root);
}

/* v2_last_message_only: the history goes, only the last message is left. */
static void
keep_last_message(struct qp_request *req)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    int n = cJSON_GetArraySize(messages);
    if (cJSON_IsArray(messages) && n > 1) {
        for (int i = 0; i < n - 1; i++)
            cJSON_DeleteItemFromArray(messages, 0);
        body_replace(req, root);
    }
    cJSON_Delete(root);
}

/* v2_wrap_single_message: one user message's text goes as "user: <text>". */
static void
wrap_single_message(struct qp_request *req)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    cJSON *m = cJSON_GetArrayItem(messages, 0);
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
    if (cJSON_GetArraySize(messages) == 1 && role && strcmp(role, "user") == 0 && text) {
        size_t n = strlen(text) + 8;
        char *wrapped = malloc(n);
        if (wrapped) {
            snprintf(wrapped, n, "user: %s", text);
            cJSON *s = cJSON_CreateString(wrapped);
            if (s && cJSON_ReplaceItemInObjectCaseSensitive(m, "content", s))
                body_replace(req, root);
            else
                cJSON_Delete(s);
            free(wrapped);
        }
    }
    cJSON_Delete(root);
}

/* v2_reasoning_inline, v2_reasoning_dropped: the caller asks for no thinking, so that only
 * the streams the suite makes think (stream knob thinking) carry reasoning: the defect of
 * the reasoning mode shows in V2-3 alone, not in every text the suite compares. */
static void
thinking_off(struct qp_request *req)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&req->body), qk_buf_len(&req->body));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "enable_thinking");
    if (cJSON_IsObject(root) && cJSON_AddFalseToObject(root, "enable_thinking"))
        body_replace(req, root);
    cJSON_Delete(root);
}

void
qp_mutant_rewrite_upstream_body(struct qp_request *req)
{
    if (req->route != QP_ROUTE_CHAT)
        return;
    if (QP_MUTANT(drop_unknown_fields) && req->attempts == 0)
        drop_unknown_fields(req);
    if (QP_MUTANT(retry_changes_body) && req->attempts > 0)
        add_retry_attempt(req);
    if (QP_MUTANT(v2_last_message_only) && req->attempts == 0)
        keep_last_message(req);
    if (QP_MUTANT(v2_wrap_single_message) && req->attempts == 0)
        wrap_single_message(req);
    if ((QP_MUTANT(v2_reasoning_inline) || QP_MUTANT(v2_reasoning_dropped)) && req->attempts == 0)
        thinking_off(req);
}

void
qp_mutant_rewrite_plan(struct qp_request *req)
{
    if (!QP_MUTANT(v2_retry_same_chat) || !req->plan.chat_id[0])
        return;
    if (!req->mutant_chat_id[0])
        snprintf(req->mutant_chat_id, sizeof(req->mutant_chat_id), "%s", req->plan.chat_id);
    else
        snprintf(req->plan.chat_id, sizeof(req->plan.chat_id), "%s", req->mutant_chat_id);
}

void
qp_mutant_rewrite_stream_end(struct qk_buf *tail, bool ok, struct qp_log log)
{
    if (QP_MUTANT(done_twice) && ok && qk_buf_append_str(tail, "data: [DONE]\n\n") != QK_OK)
        qp_log_note(log, QP_LOG_ERROR, "stream", "stream end: out of memory");
}

/* split_utf8: each write decoded on its own, as `TextDecoder` without
 * {stream:true} does: a character cut at either edge becomes U+FFFD. */
static char *
mangle_edges(const char *p, size_t n, size_t *out_len)
{
    static const char repl[] = "\xEF\xBF\xBD";
    size_t head = 0;
    while (head < n && ((unsigned char)p[head] & 0xC0) == 0x80)
        head++;
    size_t tail = 0;
    for (size_t k = 1; k <= 3 && k <= n - head; k++) {
        unsigned char c = (unsigned char)p[n - k];
        if ((c & 0xC0) == 0x80)
            continue;
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (need > k)
            tail = k;
        break;
    }
    char *out = malloc(head * 3 + (n - head - tail) + 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t k = 0; k < head; k++, o += 3)
        memcpy(out + o, repl, 3);
    memcpy(out + o, p + head, n - head - tail);
    o += n - head - tail;
    if (tail) {
        memcpy(out + o, repl, 3);
        o += 3;
    }
    *out_len = o;
    return out;
}

void
qp_mutant_rewrite_stream_drop(bool *ok, bool sse)
{
    if (QP_MUTANT(bare_done_on_drop) && sse)
        *ok = true;
}

void
qp_mutant_rewrite_upstream_write(const char **bytes, size_t *len, char **owned)
{
    if (!QP_MUTANT(split_utf8))
        return;
    size_t n = 0;
    char *mangled = mangle_edges(*bytes, *len, &n);
    if (!mangled)
        return; /* out of memory: the write goes in as it came */
    *owned = mangled;
    *bytes = mangled;
    *len = n;
}

/* ---- helpers of inline mutants ------------------------------------------------------ */

bool
qp_mutant_another_stream_open(const struct qp_request *active, const struct qp_request *req)
{
    for (const struct qp_request *r = active; r; r = r->active_next) {
        if (r != req && r->stream && r->route == QP_ROUTE_CHAT && r->in_transfer)
            return true;
    }
    return false;
}

void
qp_mutant_cache_put(struct qp_cache *cache, const struct qp_request *req, int64_t now,
                    struct qp_log log)
{
    if (qp_cache_put(cache, req->flight_key, qk_buf_ptr(&req->attempt_body),
                     qk_buf_len(&req->attempt_body), now) != QK_OK)
        qp_log_note(log, QP_LOG_ERROR, "cache", "out of memory");
}

bool
qp_mutant_chat_lookup(struct qp_cache *cache, struct qp_request *req, int64_t now)
{
    struct qk_buf k;
    qk_buf_init(&k, SIZE_MAX / 2);
    if (qk_buf_appendf(&k, "%s\n%s", req->authorization ? req->authorization : "",
                       qk_buf_ptr(&req->body)) == QK_OK) {
        req->flight_key = qp_key_of(qk_buf_ptr(&k), qk_buf_len(&k));
        req->has_cache_key = true;
    }
    qk_buf_free(&k);
    char *body = NULL;
    size_t len = 0;
    if (req->has_cache_key &&
        qp_cache_get(cache, req->flight_key, now, QP_CACHE_BODY, &body, &len) == QP_CACHE_FRESH) {
        qp_response_take_body(&req->resp, 200, body, len, "application/json");
        req->cache = QP_MARK_HIT;
        return true;
    }
    return false;
}
