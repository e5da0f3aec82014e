/*
 * The control API under /__mock: scripting, the journal, revocation, reset, health.
 * Its answers are the mock's own ({"error","field"} on bad input), not the upstream's.
 */
#include "mock_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The query parameters of a journal read, as a search query. */
struct journal_args {
    struct mock_journal_query q;
    const char *token; /* the per-key read; NULL when not given */
    bool token_twice;
    const char *other; /* the first parameter other than token */
    enum qk_err rc;
    char field[80], msg[160];
};

static enum MHD_Result
collect_journal_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    struct journal_args *a = cls;
    if (strcmp(key, "token") == 0) {
        a->token_twice = a->token != NULL;
        a->token = value ? value : "";
        return MHD_YES;
    }
    if (!a->other)
        a->other = key;
    if (a->rc == QK_OK)
        a->rc = mock_journal_query_set(&a->q, key, value, a->field, sizeof a->field, a->msg,
                                       sizeof a->msg);
    return MHD_YES;
}

/* GET /__mock/journal: one key's journal (token=T), or a search over every entry. */
static enum MHD_Result
handle_journal(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    struct journal_args a = {.rc = QK_OK};
    mock_journal_query_init(&a.q);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_journal_arg, &a);
    char *s = NULL;
    if (a.token && a.other)
        return mock_send_control_error(r, a.other, "a search cannot be combined with token");
    if (a.token_twice)
        return mock_send_control_error(r, "token", "given more than once");
    if (a.token) {
        s = mock_state_journal_json(m->state, a.token);
    } else {
        if (a.rc == QK_OK)
            a.rc = mock_journal_query_check(&a.q, a.field, sizeof a.field, a.msg, sizeof a.msg);
        if (a.rc != QK_OK)
            return mock_send_control_error(r, a.field, a.msg);
        s = mock_state_journal_search(m->state, &a.q);
    }
    if (!s)
        return MHD_NO;
    enum MHD_Result ret = mock_send_json(r, 200, s);
    free(s);
    return ret;
}

/* GET /__mock/health */
static enum MHD_Result
health(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    char s[128];
    snprintf(s, sizeof s, "{\"status\":\"ok\",\"connections\":%d,\"streams\":%d}",
             atomic_load(&m->connections), atomic_load(&m->streams));
    return mock_send_json(r, 200, s);
}

/* POST /__mock/scenarios */
static enum MHD_Result
queue_scenarios(struct mock_req *r)
{
    struct qk_mock *m = r->mock;
    char field[256] = "", msg[160] = "";
    struct mock_scenario *list = NULL;
    enum qk_err rc =
        mock_scenario_parse(qk_buf_ptr(&r->body), qk_buf_len(&r->body), &m->stream_defaults, &list,
                            field, sizeof field, msg, sizeof msg);
    if (rc == QK_INVALID)
        return mock_send_control_error(r, field, msg);
    if (rc != QK_OK)
        return MHD_NO;
    char s[64];
    snprintf(s, sizeof s, "{\"queued\":%zu}", mock_state_queue(m->state, list));
    mock_scenario_free(list);
    return mock_send_json(r, 200, s);
}

/* POST /__mock/tokens/revoke */
static enum MHD_Result
revoke_token(struct mock_req *r)
{
    cJSON *root = cJSON_ParseWithLength(qk_buf_ptr(&r->body), qk_buf_len(&r->body));
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "delay_ms");
    enum MHD_Result ret;
    bool twice = false;
    for (const cJSON *o = t ? t->next : NULL; o && !twice; o = o->next)
        twice = o->string && strcmp(o->string, "token") == 0;
    if (twice)
        ret = mock_send_control_error(r, "token", "given more than once");
    else if (!cJSON_IsString(t) || !t->valuestring[0])
        ret = mock_send_control_error(r, "token", "must be a non-empty string");
    else if (d && !(cJSON_IsNumber(d) && d->valuedouble >= 0 && d->valuedouble <= 600000 &&
                    d->valuedouble == (double)(int)d->valuedouble))
        ret = mock_send_control_error(r, "delay_ms", "must be an integer 0..600000");
    else {
        mock_state_revoke(r->mock->state, t->valuestring, d ? (int)d->valuedouble : 0);
        ret = mock_send_json(r, 200, "{\"revoked\":true}");
    }
    cJSON_Delete(root);
    return ret;
}

/* POST /__mock/reset */
static enum MHD_Result
reset(struct mock_req *r)
{
    mock_state_reset(r->mock->state);
    mock_chats_reset(r->mock->chats);
    return mock_send_json(r, 200, "{\"reset\":true}");
}

static const struct mock_route_row control_rows[] = {
    {"/health", "GET", MOCK_ROUTE_ANY, health},
    {"/journal", "GET", MOCK_ROUTE_ANY, handle_journal},
    {"/scenarios", "POST", MOCK_ROUTE_ANY, queue_scenarios},
    {"/tokens/revoke", "POST", MOCK_ROUTE_ANY, revoke_token},
    {"/reset", "POST", MOCK_ROUTE_ANY, reset},
};

const struct mock_route_table mock_control_api = {
    control_rows, sizeof control_rows / sizeof control_rows[0], MOCK_DIALECT_V1};
