/*
 * The mutants' table edits and output rewrites (mutant.h). Compiled only in builds with
 * -DQK_MUTANTS: nothing of this file reaches a release binary.
 */
#include "mutant.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"
#include "request.h"
#include "retry.h"
#include "routes.h"

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
static bool real_tables_saved;

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
        real_tables_saved = true;
    }
    qp_header_policy = real_header_policy;
    memcpy(qp_routes, real_routes, sizeof(real_routes));
    qp_mutant_active = m;

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

/* @return true when the header line @p line is the @p name header. */
static bool
line_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && (line[n] == ':' || line[n] == ';');
}

void
qp_mutant_rewrite_upstream_headers(struct curl_slist **list)
{
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
