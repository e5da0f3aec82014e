#include "mock_scenario.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mock_check.h"
#include "mock_knobs.h"

const char *
mock_route_name(enum mock_route r)
{
    static const char *const names[] = {"models", "chat", "chats_new", "any"};
    return r < MOCK_ROUTE_COUNT ? names[r] : "?";
}

/* "must be "a", "b" or "c"", from the route names, so that a new route is named too. */
static void
route_choices(char *out, size_t len)
{
    size_t used = 0;
    for (int i = 0; i < MOCK_ROUTE_COUNT && used < len; i++) {
        const char *sep = i == 0 ? "must be " : i + 1 == MOCK_ROUTE_COUNT ? " or " : ", ";
        int n =
            snprintf(out + used, len - used, "%s\"%s\"", sep, mock_route_name((enum mock_route)i));
        used += n > 0 ? (size_t)n : 0;
    }
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

static enum qk_err parse_stream(struct parse_ctx *c, const cJSON *obj, struct mock_stream_opts *o);

/* "must be "a", "b" or "c"" for a knob read by name. */
static enum qk_err
fail_names(struct parse_ctx *c, const struct mock_knob *k)
{
    char values[96], m[112];
    mock_knob_values(k, values, sizeof values);
    snprintf(m, sizeof m, "must be %s", values);
    return fail(c, k->key, m);
}

/* The value of a knob read by name (html, inband_error), as its enum value. */
static enum qk_err
get_name(struct parse_ctx *c, const struct mock_knob *k, const cJSON *it, int *out)
{
    size_t n = 0;
    const char *const *names = mock_knob_names(k->type, &n);
    for (size_t i = 1; i < n && cJSON_IsString(it); i++) {
        if (strcmp(it->valuestring, names[i]) == 0) {
            *out = (int)i;
            return QK_OK;
        }
    }
    return fail_names(c, k);
}

/*
 * Reads @p it, the value of knob @p k, into its field of the struct at @p base (a
 * struct mock_step or struct mock_stream_opts, as the knob's table says).
 */
static enum qk_err
apply_knob(struct parse_ctx *c, const struct mock_knob *k, const cJSON *it, char *base)
{
    void *field = base + k->offset;
    enum qk_err rc = QK_OK;
    bool flag = false;
    int v = 0;
    switch (k->type) {
    case MOCK_KNOB_INT:
        return get_int(c, it, (int)k->lo, (int)k->hi, (int *)field);
    case MOCK_KNOB_UINT:
        rc = get_int(c, it, (int)k->lo, (int)k->hi, &v);
        *(unsigned *)field = (unsigned)v;
        return rc;
    case MOCK_KNOB_BOOL:
        return get_bool(c, it, (bool *)field);
    case MOCK_KNOB_TRUE:
        rc = get_bool(c, it, (bool *)field);
        if (rc == QK_OK && !*(bool *)field)
            rc = fail(c, k->key, "must be true when present");
        return rc;
    case MOCK_KNOB_STRING:
        return dup_string(c, it, (char **)field);
    case MOCK_KNOB_EOL:
        rc = get_bool(c, it, &flag);
        if (rc == QK_OK && flag)
            *(enum mock_eol *)field = (enum mock_eol)k->lo;
        return rc;
    case MOCK_KNOB_COALESCE:
        if (cJSON_IsBool(it)) {
            *(int *)field = cJSON_IsTrue(it) ? -1 : 0;
            return QK_OK;
        }
        return get_int(c, it, (int)k->lo, (int)k->hi, (int *)field);
    case MOCK_KNOB_DELTAS:
        rc = get_bool(c, it, &flag);
        *(int *)field = flag ? 1 : 0;
        return rc;
    case MOCK_KNOB_HTML:
        rc = get_name(c, k, it, &v);
        *(enum mock_html *)field = (enum mock_html)v;
        return rc;
    case MOCK_KNOB_INBAND:
        rc = get_name(c, k, it, &v);
        *(enum mock_inband *)field = (enum mock_inband)v;
        return rc;
    case MOCK_KNOB_PHASE:
        rc = get_name(c, k, it, &v);
        *(enum mock_think_phase *)field = (enum mock_think_phase)v;
        return rc;
    case MOCK_KNOB_HEADERS:
        return parse_headers(c, it, (struct cJSON **)field);
    case MOCK_KNOB_STREAM: {
        size_t plen = strlen(c->path);
        snprintf(c->path + plen, sizeof c->path - plen, "%s%s", plen ? "." : "", k->key);
        rc = parse_stream(c, it, (struct mock_stream_opts *)field);
        c->path[plen] = '\0';
        return rc;
    }
    }
    return QK_OK;
}

/* Reads every key of @p obj, each a row of @p table, into the struct at @p base. */
static enum qk_err
apply_knobs(struct parse_ctx *c, const struct mock_knob_table *table, const cJSON *obj, char *base,
            const char *unknown)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        const struct mock_knob *k = mock_knob_find(table, it->string);
        enum qk_err rc = repeated_key(obj, it) ? fail(c, it->string, "given more than once")
                         : k                   ? apply_knob(c, k, it, base)
                                               : fail(c, it->string, unknown);
        if (rc != QK_OK)
            return rc;
        if (table == &mock_stream_knobs)
            ((struct mock_stream_opts *)base)->given |= (uint64_t)1 << (size_t)(k - table->rows);
    }
    return QK_OK;
}

static enum qk_err
parse_stream(struct parse_ctx *c, const cJSON *obj, struct mock_stream_opts *o)
{
    if (!cJSON_IsObject(obj))
        return fail(c, "", "must be an object");
    enum qk_err rc = apply_knobs(c, &mock_stream_knobs, obj, (char *)o, "unknown stream key");
    if (rc != QK_OK)
        return rc;
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
    enum qk_err rc = apply_knobs(c, &mock_step_knobs, obj, (char *)s, "unknown step key");
    if (rc != QK_OK)
        goto out;
    s->has_stream = cJSON_GetObjectItemCaseSensitive(obj, "stream") != NULL;

    /* Keys that cannot be combined. */
    bool status_only = s->status && !s->html;
    if (s->drop && (s->ok || s->status || s->html || s->inband || s->has_stream))
        rc = fail(c, "drop", "drop combines only with delay_ms");
    else if (s->ok && (s->status || s->html || s->inband))
        rc = fail(c, "ok", "ok cannot be combined with status, html or inband_error");
    else if (s->inband_sse && !s->inband)
        rc = fail(c, "inband_sse", "needs inband_error");
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
            sc->route = MOCK_ROUTE_COUNT;
            for (int i = 0; i < MOCK_ROUTE_COUNT && sc->route == MOCK_ROUTE_COUNT; i++) {
                if (strcmp(r, mock_route_name((enum mock_route)i)) == 0)
                    sc->route = (enum mock_route)i;
            }
            if (sc->route == MOCK_ROUTE_COUNT) {
                char msg[160];
                route_choices(msg, sizeof(msg));
                rc = fail(c, "route", msg);
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

static char *
copy_string(const char *s, void *(*alloc)(size_t))
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *c = alloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

struct mock_step *
mock_step_copy(const struct mock_step *s)
{
    struct mock_step *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *s;
    c->next = NULL;
    c->times = 1;
    c->body = copy_string(s->body, malloc);
    c->content_type = copy_string(s->content_type, malloc);
    c->headers = s->headers ? cJSON_Duplicate(s->headers, true) : NULL;
    c->json = copy_string(s->json, cJSON_malloc);
    if ((s->body && !c->body) || (s->content_type && !c->content_type) ||
        (s->headers && !c->headers) || (s->json && !c->json)) {
        mock_step_free(c);
        return NULL;
    }
    return c;
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
