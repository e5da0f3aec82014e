#include "mock_scenario.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mock_check.h"

const char *
mock_route_name(enum mock_route r)
{
    static const char *const names[] = {"models", "chat", "any"};
    return r < MOCK_ROUTE_COUNT ? names[r] : "?";
}

/* Parsing context: where we are (for error messages) and what went wrong. */
struct parse_ctx {
    char path[256];
    char *field;
    size_t field_len;
    char *msg;
    size_t msg_len;
};

static enum qk_err
fail(struct parse_ctx *c, const char *key, const char *msg)
{
    if (key && *key)
        snprintf(c->field, c->field_len, "%s%s%s", c->path, c->path[0] ? "." : "", key);
    else
        snprintf(c->field, c->field_len, "%s", c->path);
    snprintf(c->msg, c->msg_len, "%s", msg);
    return QK_INVALID;
}

/* Every integer of the control API goes through here: the range is checked on the
 * double before any conversion (mock_json_int_in_range). */
static enum qk_err
get_int(struct parse_ctx *c, const cJSON *item, int lo, int hi, int *out)
{
    long long v = 0;
    switch (mock_json_int_in_range(item, lo, hi, &v)) {
    case MOCK_INT_OK:
        *out = (int)v;
        return QK_OK;
    case MOCK_INT_NOT_NUMBER:
    case MOCK_INT_NOT_INTEGER:
        return fail(c, item->string, "must be an integer");
    case MOCK_INT_BELOW:
    case MOCK_INT_ABOVE:
        break;
    }
    char m[96];
    snprintf(m, sizeof m, "must be an integer between %d and %d", lo, hi);
    return fail(c, item->string, m);
}

/* cJSON keeps every copy of a key; which one should count would be a guess. The first
 * copy is the one cJSON_GetObjectItemCaseSensitive() finds, so any other is a repeat.
 * Called before a key is looked at: an unknown key ends the parse, so the scan stays
 * within the few known keys. */
static bool
repeated_key(const cJSON *obj, const cJSON *it)
{
    return cJSON_GetObjectItemCaseSensitive(obj, it->string) != it;
}

static enum qk_err
get_bool(struct parse_ctx *c, const cJSON *item, bool *out)
{
    if (!cJSON_IsBool(item))
        return fail(c, item->string, "must be true or false");
    *out = cJSON_IsTrue(item);
    return QK_OK;
}

static enum qk_err
parse_stream(struct parse_ctx *c, const cJSON *obj, struct mock_stream_opts *o)
{
    if (!cJSON_IsObject(obj))
        return fail(c, "", "must be an object");
    enum qk_err rc = QK_OK;
    bool flag = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        const char *k = it->string;
        if (repeated_key(obj, it))
            rc = fail(c, k, "given more than once");
        else if (strcmp(k, "chunks") == 0)
            rc = get_int(c, it, 1, MOCK_ANSWER_MAX, &o->chunks);
        else if (strcmp(k, "piece_bytes") == 0)
            rc = get_int(c, it, 0, 2 * 1024 * 1024, &o->piece_bytes);
        else if (strcmp(k, "chunk_delay_ms") == 0)
            rc = get_int(c, it, 0, 600000, &o->chunk_delay_ms);
        else if (strcmp(k, "split_utf8") == 0)
            rc = get_bool(c, it, &o->split_utf8);
        else if (strcmp(k, "crlf") == 0 || strcmp(k, "cr") == 0) {
            rc = get_bool(c, it, &flag);
            if (rc == QK_OK && flag)
                o->eol = k[2] ? MOCK_EOL_CRLF : MOCK_EOL_CR;
        } else if (strcmp(k, "comments") == 0)
            rc = get_bool(c, it, &o->comments);
        else if (strcmp(k, "coalesce") == 0) {
            if (cJSON_IsBool(it))
                o->coalesce = cJSON_IsTrue(it) ? -1 : 0;
            else
                rc = get_int(c, it, 0, 100000, &o->coalesce);
        } else if (strcmp(k, "truncate_after") == 0)
            rc = get_int(c, it, 0, 100000, &o->truncate_after);
        else if (strcmp(k, "stall_after") == 0)
            rc = get_int(c, it, 0, 100000, &o->stall_after);
        else if (strcmp(k, "stall_ms") == 0)
            rc = get_int(c, it, 0, 3600000, &o->stall_ms);
        else if (strcmp(k, "trickle_ms") == 0)
            rc = get_int(c, it, 1, 60000, &o->trickle_ms);
        else if (strcmp(k, "cut_last_event") == 0)
            rc = get_bool(c, it, &o->cut_last_event);
        else if (strcmp(k, "final_repeat") == 0)
            rc = get_bool(c, it, &o->final_repeat);
        else if (strcmp(k, "final_empty_delta") == 0)
            rc = get_bool(c, it, &o->final_empty_delta);
        else if (strcmp(k, "empty_choices") == 0)
            rc = get_bool(c, it, &o->empty_choices);
        else if (strcmp(k, "no_content_delta") == 0)
            rc = get_bool(c, it, &o->no_content_delta);
        else if (strcmp(k, "cumulative") == 0) {
            rc = get_bool(c, it, &flag);
            o->cumulative = flag ? 1 : 0;
        } else if (strcmp(k, "done") == 0)
            rc = get_bool(c, it, &o->done);
        else if (strcmp(k, "finish_reason") == 0)
            rc = get_bool(c, it, &o->finish_reason);
        else if (strcmp(k, "usage") == 0)
            rc = get_bool(c, it, &o->usage);
        else if (strcmp(k, "envelope") == 0)
            rc = get_bool(c, it, &o->envelope);
        else
            rc = fail(c, k, "unknown stream key");
        if (rc != QK_OK)
            return rc;
    }
    if (o->eol != MOCK_EOL_LF && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "crlf")) &&
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "cr")))
        return fail(c, "cr", "crlf and cr exclude each other");
    /* Asked for cumulative deltas, a large text in many chunks is refused now rather than
     * when a request comes (as requested, mock_plan_build() refuses it then). */
    uint64_t worst = mock_stream_worst_bytes(o, true);
    if (o->cumulative == 1 && worst > MOCK_STREAM_MAX_BYTES) {
        char m[160];
        snprintf(m, sizeof m,
                 "cumulative deltas of this text could carry %" PRIu64 " MiB, over the "
                 "%zu MiB a stream may; lower piece_bytes or chunks",
                 worst >> 20, MOCK_STREAM_MAX_BYTES >> 20);
        return fail(c, "piece_bytes", m);
    }
    return QK_OK;
}

static enum qk_err
dup_string(struct parse_ctx *c, const cJSON *it, char **out)
{
    if (!cJSON_IsString(it))
        return fail(c, it->string, "must be a string");
    free(*out);
    *out = strdup(it->valuestring);
    return *out ? QK_OK : QK_NOMEM;
}

/* Extra response headers: names are HTTP tokens, values printable one-liners; the
 * framing headers stay the server's business. */
static enum qk_err
parse_headers(struct parse_ctx *c, const cJSON *obj, struct cJSON **out)
{
    if (!cJSON_IsObject(obj))
        return fail(c, "headers", "must be an object of header names to string values");
    const cJSON *h;
    cJSON_ArrayForEach(h, obj)
    {
        const char *name = h->string;
        bool ok = name[0] != '\0';
        for (const char *p = name; *p && ok; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 strchr("!#$%&'*+-.^_`|~", *p) != NULL;
        for (const char *p = cJSON_IsString(h) ? h->valuestring : ""; *p && ok; p++)
            ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
        if (!ok || !cJSON_IsString(h)) {
            char path[64];
            snprintf(path, sizeof path, "headers.%.40s", name);
            return fail(c, path, "needs a token name and a single-line string value");
        }
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0) {
            char path[64];
            snprintf(path, sizeof path, "headers.%.40s", name);
            return fail(c, path, "framing headers are set by the server");
        }
    }
    cJSON_Delete(*out);
    *out = cJSON_Duplicate(obj, true);
    return *out ? QK_OK : QK_NOMEM;
}

static enum qk_err
parse_step(struct parse_ctx *c, const cJSON *obj, const struct mock_stream_opts *defaults,
           struct mock_step **out)
{
    if (!cJSON_IsObject(obj))
        return fail(c, "", "a step must be an object");
    struct mock_step *s = calloc(1, sizeof *s);
    if (!s)
        return QK_NOMEM;
    s->retry_after = -1;
    s->stream = *defaults;
    enum qk_err rc = QK_OK;
    size_t plen = strlen(c->path);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        const char *k = it->string;
        int v = 0;
        if (repeated_key(obj, it)) {
            rc = fail(c, k, "given more than once");
        } else if (strcmp(k, "ok") == 0) {
            rc = get_bool(c, it, &s->ok);
            if (rc == QK_OK && !s->ok)
                rc = fail(c, k, "must be true when present");
        } else if (strcmp(k, "status") == 0) {
            /* A final status: a 1xx leaves the client waiting for the real answer. */
            rc = get_int(c, it, 200, 599, &v);
            s->status = (unsigned)v;
        } else if (strcmp(k, "body") == 0)
            rc = dup_string(c, it, &s->body);
        else if (strcmp(k, "content_type") == 0)
            rc = dup_string(c, it, &s->content_type);
        else if (strcmp(k, "retry_after") == 0)
            rc = get_int(c, it, 0, 86400, &s->retry_after);
        else if (strcmp(k, "headers") == 0)
            rc = parse_headers(c, it, &s->headers);
        else if (strcmp(k, "html") == 0) {
            if (!cJSON_IsString(it))
                rc = fail(c, k, "must be \"captcha\", \"waf\" or \"gateway\"");
            else if (strcmp(it->valuestring, "captcha") == 0)
                s->html = MOCK_HTML_CAPTCHA;
            else if (strcmp(it->valuestring, "waf") == 0)
                s->html = MOCK_HTML_WAF;
            else if (strcmp(it->valuestring, "gateway") == 0)
                s->html = MOCK_HTML_GATEWAY;
            else
                rc = fail(c, k, "must be \"captcha\", \"waf\" or \"gateway\"");
        } else if (strcmp(k, "inband_error") == 0) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "waf") == 0)
                s->inband = MOCK_INBAND_WAF;
            else if (cJSON_IsString(it) && strcmp(it->valuestring, "quota") == 0)
                s->inband = MOCK_INBAND_QUOTA;
            else
                rc = fail(c, k, "must be \"waf\" or \"quota\"");
        } else if (strcmp(k, "delay_ms") == 0)
            rc = get_int(c, it, 0, 600000, &s->delay_ms);
        else if (strcmp(k, "drop") == 0) {
            rc = get_bool(c, it, &s->drop);
            if (rc == QK_OK && !s->drop)
                rc = fail(c, k, "must be true when present");
        } else if (strcmp(k, "stream") == 0) {
            snprintf(c->path + plen, sizeof c->path - plen, "%sstream", plen ? "." : "");
            rc = parse_stream(c, it, &s->stream);
            c->path[plen] = '\0';
            s->has_stream = true;
        } else
            rc = fail(c, k, "unknown step key");
        if (rc != QK_OK)
            goto out;
    }

    /* Keys that cannot be combined. */
    bool status_only = s->status && !s->html;
    if (s->drop && (s->ok || s->status || s->html || s->inband || s->has_stream))
        rc = fail(c, "drop", "drop combines only with delay_ms");
    else if (s->ok && (s->status || s->html || s->inband))
        rc = fail(c, "ok", "ok cannot be combined with status, html or inband_error");
    else if (s->inband && (s->status || s->html))
        rc = fail(c, "inband_error", "inband_error cannot be combined with status or html");
    else if (s->has_stream && (s->status || s->html || s->inband))
        rc = fail(c, "stream", "stream shapes a normal answer; remove status/html/inband_error");
    else if ((s->body || s->content_type) && !status_only)
        rc = fail(c, s->body ? "body" : "content_type", "needs status (and no html)");
    else if (s->retry_after >= 0 && !s->status && !s->html)
        rc = fail(c, "retry_after", "needs status");
    else if (s->headers && s->drop)
        rc = fail(c, "headers", "a dropped connection sends no headers");
    if (rc != QK_OK)
        goto out;
    s->json = cJSON_PrintUnformatted(obj);
    if (!s->json)
        rc = QK_NOMEM;
out:
    if (rc != QK_OK) {
        mock_step_free(s);
        return rc;
    }
    *out = s;
    return QK_OK;
}

static enum qk_err
parse_one(struct parse_ctx *c, const cJSON *obj, const struct mock_stream_opts *defaults,
          struct mock_scenario **out)
{
    if (!cJSON_IsObject(obj))
        return fail(c, "", "a scenario must be an object {\"token\",\"route\",\"steps\"}");
    struct mock_scenario *sc = calloc(1, sizeof *sc);
    if (!sc)
        return QK_NOMEM;
    enum qk_err rc = QK_OK;
    sc->route = MOCK_ROUTE_ANY;
    const cJSON *steps = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        if (repeated_key(obj, it)) {
            rc = fail(c, it->string, "given more than once");
            goto out;
        } else if (strcmp(it->string, "token") == 0) {
            if (!cJSON_IsString(it) || !it->valuestring[0]) {
                rc = fail(c, "token", "must be a non-empty string");
                goto out;
            }
            sc->token = strdup(it->valuestring);
            if (!sc->token) {
                rc = QK_NOMEM;
                goto out;
            }
        } else if (strcmp(it->string, "route") == 0) {
            const char *r = cJSON_IsString(it) ? it->valuestring : "";
            if (strcmp(r, "models") == 0)
                sc->route = MOCK_ROUTE_MODELS;
            else if (strcmp(r, "chat") == 0)
                sc->route = MOCK_ROUTE_CHAT;
            else if (strcmp(r, "any") == 0)
                sc->route = MOCK_ROUTE_ANY;
            else {
                rc = fail(c, "route", "must be \"models\", \"chat\" or \"any\"");
                goto out;
            }
        } else if (strcmp(it->string, "steps") == 0)
            steps = it;
        else {
            rc = fail(c, it->string, "unknown scenario key");
            goto out;
        }
    }
    if (!sc->token) {
        rc = fail(c, "token", "is required");
        goto out;
    }
    if (!cJSON_IsArray(steps) || cJSON_GetArraySize(steps) == 0) {
        rc = fail(c, "steps", "must be a non-empty array");
        goto out;
    }
    struct mock_step **tail = &sc->steps;
    size_t plen = strlen(c->path), i = 0;
    cJSON_ArrayForEach(it, steps)
    {
        snprintf(c->path + plen, sizeof c->path - plen, "%ssteps[%zu]", plen ? "." : "", i++);
        rc = parse_step(c, it, defaults, tail);
        c->path[plen] = '\0';
        if (rc != QK_OK)
            goto out;
        tail = &(*tail)->next;
        sc->n_steps++;
    }
out:
    if (rc != QK_OK) {
        mock_scenario_free(sc);
        return rc;
    }
    *out = sc;
    return QK_OK;
}

enum qk_err
mock_scenario_parse(const char *json, size_t len, const struct mock_stream_opts *defaults,
                    struct mock_scenario **out, char *field, size_t field_len, char *msg,
                    size_t msg_len)
{
    struct parse_ctx c = {.field = field, .field_len = field_len, .msg = msg, .msg_len = msg_len};
    struct mock_scenario *head = NULL, **tail = &head;
    enum qk_err rc = QK_OK;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        rc = fail(&c, "", "body is not valid JSON");
        goto out;
    }
    if (cJSON_IsArray(root)) {
        if (cJSON_GetArraySize(root) == 0) {
            rc = fail(&c, "", "empty scenario list");
            goto out;
        }
        size_t i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, root)
        {
            snprintf(c.path, sizeof c.path, "[%zu]", i++);
            rc = parse_one(&c, it, defaults, tail);
            if (rc != QK_OK)
                goto out;
            tail = &(*tail)->next;
        }
    } else {
        rc = parse_one(&c, root, defaults, tail);
    }
out:
    cJSON_Delete(root);
    if (rc != QK_OK) {
        mock_scenario_free(head);
        return rc;
    }
    *out = head;
    return QK_OK;
}

void
mock_step_free(struct mock_step *s)
{
    if (!s)
        return;
    free(s->body);
    free(s->content_type);
    cJSON_Delete(s->headers);
    cJSON_free(s->json);
    free(s);
}

void
mock_scenario_free(struct mock_scenario *list)
{
    while (list) {
        struct mock_scenario *next = list->next;
        struct mock_step *s = list->steps;
        while (s) {
            struct mock_step *n = s->next;
            mock_step_free(s);
            s = n;
        }
        free(list->token);
        free(list);
        list = next;
    }
}
