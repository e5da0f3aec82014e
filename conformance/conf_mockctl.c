#include "conf_mockctl.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_client.h"
#include "qwenkit/buf.h"

/* A journal holds every answer the mock gave a token, in full: a retried 6 MB stream
 * journals twice its size, more than a proxy's answer is ever kept. */
enum { CONTROL_TIMEOUT_MS = 5000, CONTROL_URL_MAX = 1024 };
#define CONTROL_BODY_MAX ((size_t)512 * 1024 * 1024)

/* Performs one control request; a non-2xx answer is an error naming the mock's reply. */
static enum qk_err
control(const char *method, const char *url, const char *body, cJSON **json_out, char *err,
        size_t errlen)
{
    static const char *const json_headers[] = {"Content-Type: application/json", NULL};
    struct conf_request req = {
        .method = method,
        .url = url,
        .headers = body ? json_headers : NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = CONTROL_TIMEOUT_MS,
        .body_max = CONTROL_BODY_MAX,
    };
    struct conf_response resp;
    enum qk_err rc = conf_http(&req, &resp);
    if (rc != QK_OK) {
        snprintf(err, errlen, "mock control %s %s: %s", method, url, qk_strerror(rc));
        goto out;
    }
    if (resp.curl_code != 0 || resp.status < 200 || resp.status > 299) {
        snprintf(err, errlen, "mock control %s %s: %s%ld %.200s", method, url,
                 resp.curl_code ? resp.error : "HTTP ", resp.status, resp.body);
        rc = QK_IO;
        goto out;
    }
    if (resp.body_truncated) {
        snprintf(err, errlen, "mock control %s %s: answer over %zu bytes", method, url,
                 CONTROL_BODY_MAX);
        rc = QK_INVALID;
        goto out;
    }
    if (json_out) {
        *json_out = cJSON_ParseWithLength(resp.body, resp.body_len);
        if (!*json_out) {
            snprintf(err, errlen, "mock control %s %s: answer is not JSON", method, url);
            rc = QK_INVALID;
        }
    }
out:
    conf_response_clear(&resp);
    return rc;
}

enum qk_err
conf_mock_queue(const char *mock_url, const char *token, const char *route, const char *steps_json,
                size_t *queued, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    char url[CONTROL_URL_MAX];
    cJSON *req = cJSON_CreateObject();
    cJSON *steps = cJSON_Parse(steps_json);
    cJSON *answer = NULL;
    char *body = NULL;

    *queued = 0;
    if (!req || !cJSON_IsArray(steps)) {
        snprintf(err, errlen, "conf_mock_queue: steps are not a JSON array: %s", steps_json);
        rc = QK_INVALID;
        goto out;
    }
    cJSON_AddStringToObject(req, "token", token);
    cJSON_AddStringToObject(req, "route", route);
    cJSON_AddItemToObject(req, "steps", steps);
    steps = NULL; /* owned by req now */
    body = cJSON_PrintUnformatted(req);
    if (!body) {
        rc = QK_NOMEM;
        goto out;
    }
    snprintf(url, sizeof(url), "%s/__mock/scenarios", mock_url);
    rc = control("POST", url, body, &answer, err, errlen);
    if (rc != QK_OK)
        goto out;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(answer, "queued");
    if (!cJSON_IsNumber(n)) {
        snprintf(err, errlen, "mock control: no \"queued\" in the answer");
        rc = QK_INVALID;
        goto out;
    }
    *queued = (size_t)n->valuedouble;
out:
    cJSON_Delete(steps);
    cJSON_Delete(req);
    cJSON_Delete(answer);
    free(body);
    return rc;
}

enum qk_err
conf_mock_journal(const char *mock_url, const char *token, cJSON **out, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    char url[CONTROL_URL_MAX];
    char *escaped = curl_easy_escape(NULL, token, 0);
    cJSON *answer = NULL;

    *out = NULL;
    if (!escaped)
        return QK_NOMEM;
    snprintf(url, sizeof(url), "%s/__mock/journal?token=%s", mock_url, escaped);
    rc = control("GET", url, NULL, &answer, err, errlen);
    if (rc == QK_OK && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(answer, "entries"))) {
        snprintf(err, errlen, "mock journal: no \"entries\" array");
        rc = QK_INVALID;
    }
    if (rc == QK_OK) {
        *out = answer;
        answer = NULL;
    }
    cJSON_Delete(answer);
    curl_free(escaped);
    return rc;
}

/* Appends "&name=<value URL-encoded>" (no "&" first) to the search URL. */
static enum qk_err
append_param(struct qk_buf *url, bool *first, const char *name, const char *value)
{
    char *escaped = curl_easy_escape(NULL, value, 0);
    if (!escaped)
        return QK_NOMEM;
    enum qk_err rc = qk_buf_appendf(url, "%s%s=%s", *first ? "" : "&", name, escaped);
    curl_free(escaped);
    *first = false;
    return rc;
}

static enum qk_err
append_number(struct qk_buf *url, bool *first, const char *name, long long value)
{
    enum qk_err rc = qk_buf_appendf(url, "%s%s=%lld", *first ? "" : "&", name, value);
    *first = false;
    return rc;
}

enum qk_err
conf_mock_journal_search(const char *mock_url, const struct conf_journal_search *q, cJSON **out,
                         char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    struct qk_buf url;
    struct conf_request req = {
        .method = "GET", .timeout_ms = CONTROL_TIMEOUT_MS, .body_max = CONTROL_BODY_MAX};
    struct conf_response resp;
    cJSON *answer = NULL;
    bool first = true;
    bool has_contains = q->contains && q->contains[0];
    bool has_not_token = q->not_token && q->not_token[0];

    memset(&resp, 0, sizeof(resp));
    qk_buf_init(&url, 64 * 1024);
    *out = NULL;
    if (!has_contains && !has_not_token && q->since_ms <= 0 && q->until_ms <= 0) {
        snprintf(err, errlen, "conf_mock_journal_search: no search condition");
        rc = QK_INVALID;
        goto out;
    }
    rc = qk_buf_appendf(&url, "%s/__mock/journal?", mock_url);
    if (rc == QK_OK && has_contains)
        rc = append_param(&url, &first, "contains", q->contains);
    if (rc == QK_OK && q->since_ms > 0)
        rc = append_number(&url, &first, "since_ms", (long long)q->since_ms);
    if (rc == QK_OK && q->until_ms > 0)
        rc = append_number(&url, &first, "until_ms", (long long)q->until_ms);
    if (rc == QK_OK && has_not_token)
        rc = append_param(&url, &first, "not_token", q->not_token);
    if (rc == QK_OK && q->limit > 0)
        rc = append_number(&url, &first, "limit", (long long)q->limit);
    if (rc != QK_OK) {
        snprintf(err, errlen, "conf_mock_journal_search: %s", qk_strerror(rc));
        goto out;
    }

    req.url = qk_buf_ptr(&url);
    rc = conf_http(&req, &resp);
    if (rc != QK_OK) {
        snprintf(err, errlen, "mock journal search: %s", qk_strerror(rc));
        goto out;
    }
    if (resp.curl_code != 0) {
        snprintf(err, errlen, "mock journal search: %s", resp.error);
        rc = QK_IO;
        goto out;
    }
    answer = cJSON_ParseWithLength(resp.body, resp.body_len);
    if (resp.status == 400) {
        const cJSON *field = cJSON_GetObjectItemCaseSensitive(answer, "field");
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(answer, "error");
        snprintf(err, errlen, "mock journal search refused %s: %s",
                 cJSON_IsString(field) ? field->valuestring : "?",
                 cJSON_IsString(error) ? error->valuestring : resp.body);
        rc = QK_INVALID;
        goto out;
    }
    if (resp.status != 200) {
        snprintf(err, errlen, "mock journal search: HTTP %ld %.200s", resp.status, resp.body);
        rc = QK_IO;
        goto out;
    }
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(answer, "entries"))) {
        snprintf(err, errlen, "mock journal search: no \"entries\" array");
        rc = QK_INVALID;
        goto out;
    }
    *out = answer;
    answer = NULL;
out:
    cJSON_Delete(answer);
    conf_response_clear(&resp);
    qk_buf_free(&url);
    return rc;
}

enum qk_err
conf_mock_journal_containing(const char *mock_url, const char *needle, cJSON **out, char *err,
                             size_t errlen)
{
    struct conf_journal_search q = {.contains = needle};
    if (!needle || !needle[0]) {
        *out = NULL;
        snprintf(err, errlen, "conf_mock_journal_containing: empty string");
        return QK_INVALID;
    }
    return conf_mock_journal_search(mock_url, &q, out, err, errlen);
}

enum qk_err
conf_mock_journal_window(const char *mock_url, int64_t since_ms, int64_t until_ms,
                         const char *not_token, cJSON **out, char *err, size_t errlen)
{
    struct conf_journal_search q = {
        .since_ms = since_ms, .until_ms = until_ms, .not_token = not_token};
    return conf_mock_journal_search(mock_url, &q, out, err, errlen);
}

long
conf_journal_in_flight(const cJSON *journal)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(journal, "in_flight");
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

long
conf_journal_matched(const cJSON *journal)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(journal, "matched");
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

int
conf_journal_truncated(const cJSON *journal)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(journal, "truncated"));
}

enum qk_err
conf_mock_revoke(const char *mock_url, const char *token, int delay_ms, char *err, size_t errlen)
{
    char url[CONTROL_URL_MAX];
    cJSON *req = cJSON_CreateObject();
    char *body = NULL;
    enum qk_err rc = QK_NOMEM;

    if (req && cJSON_AddStringToObject(req, "token", token) &&
        (delay_ms <= 0 || cJSON_AddNumberToObject(req, "delay_ms", delay_ms)))
        body = cJSON_PrintUnformatted(req);
    if (body) {
        snprintf(url, sizeof(url), "%s/__mock/tokens/revoke", mock_url);
        rc = control("POST", url, body, NULL, err, errlen);
    }
    free(body);
    cJSON_Delete(req);
    return rc;
}

enum qk_err
conf_mock_reset(const char *mock_url, char *err, size_t errlen)
{
    char url[CONTROL_URL_MAX];
    snprintf(url, sizeof(url), "%s/__mock/reset", mock_url);
    return control("POST", url, "{}", NULL, err, errlen);
}

enum qk_err
conf_mock_health(const char *mock_url, char *err, size_t errlen)
{
    char url[CONTROL_URL_MAX];
    snprintf(url, sizeof(url), "%s/__mock/health", mock_url);
    return control("GET", url, NULL, NULL, err, errlen);
}

long
conf_entry_status(const cJSON *entry)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, "status");
    return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

static const char *
entry_string(const cJSON *entry, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

const char *
conf_entry_path(const cJSON *entry)
{
    return entry_string(entry, "path");
}

const char *
conf_entry_body(const cJSON *entry)
{
    return entry_string(entry, "body");
}

static int64_t
entry_ms(const cJSON *entry, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

int64_t
conf_entry_received_ms(const cJSON *entry)
{
    return entry_ms(entry, "received_ms");
}

int64_t
conf_entry_finished_ms(const cJSON *entry)
{
    return entry_ms(entry, "finished_ms");
}

int
conf_entry_had_step(const cJSON *entry)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(entry, "step");
    return v && !cJSON_IsNull(v);
}

const char *
conf_entry_header(const cJSON *entry, const char *name)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(entry, "headers"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(h, "name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, "value");
        if (cJSON_IsString(n) && cJSON_IsString(v) && strcasecmp(n->valuestring, name) == 0)
            return v->valuestring;
    }
    return NULL;
}

size_t
conf_entry_header_count(const cJSON *entry, const char *name)
{
    size_t count = 0;
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(entry, "headers"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(h, "name");
        if (cJSON_IsString(n) && strcasecmp(n->valuestring, name) == 0)
            count++;
    }
    return count;
}

const char *
conf_entry_header_nth(const cJSON *entry, const char *name, size_t i)
{
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(entry, "headers"))
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(h, "name");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, "value");
        if (cJSON_IsString(n) && cJSON_IsString(v) && strcasecmp(n->valuestring, name) == 0 &&
            i-- == 0)
            return v->valuestring;
    }
    return NULL;
}

size_t
conf_entry_token_cookies(const cJSON *entry, const char *token, bool *callers)
{
    size_t count = 0;
    bool all = true;
    size_t len = strlen(token);
    const char *v;
    for (size_t i = 0; (v = conf_entry_header_nth(entry, "Cookie", i)) != NULL; i++) {
        for (const char *p = v; *p;) {
            p += strspn(p, " ;");
            size_t n = strcspn(p, ";");
            while (n > 0 && p[n - 1] == ' ')
                n--;
            if (n >= 6 && strncmp(p, "token=", 6) == 0) {
                count++;
                all = all && n == 6 + len && strncmp(p + 6, token, len) == 0;
            }
            p += n;
            p += strcspn(p, ";");
        }
    }
    if (callers)
        *callers = count > 0 && all;
    return count;
}

bool
conf_entry_credential_is(const cJSON *entry, const char *token, bool cookie_too)
{
    size_t n = conf_entry_header_count(entry, "Authorization");
    const char *auth = conf_entry_header(entry, "Authorization");
    if (n == 1 && auth && strncmp(auth, "Bearer ", 7) == 0 && strcmp(auth + 7, token) == 0)
        return true;
    bool callers = false;
    return cookie_too && n == 0 && conf_entry_token_cookies(entry, token, &callers) == 1 && callers;
}

const char *
conf_entry_token_fp(const cJSON *entry)
{
    return entry_string(entry, "token");
}

/* ---- More accessors of one entry (conf_mockctl.h). ---- */

const char *
conf_entry_method(const cJSON *entry)
{
    return entry_string(entry, "method");
}

size_t
conf_entry_header_total(const cJSON *entry)
{
    return (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(entry, "headers"));
}

bool
conf_entry_header_at(const cJSON *entry, size_t i, const char **name, const char **value)
{
    const cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(entry, "headers"), (int)i);
    if (!h)
        return false;
    *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "name"));
    *value = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "value"));
    return true;
}

bool
conf_entry_client_gone(const cJSON *entry)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(entry, "client_gone"));
}

size_t
conf_entry_event_count(const cJSON *entry)
{
    return (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(entry, "event_ms"));
}

int64_t
conf_entry_event_ms(const cJSON *entry, size_t k)
{
    const cJSON *v =
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(entry, "event_ms"), (int)k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

const char *
conf_entry_query(const cJSON *entry)
{
    return entry_string(entry, "query");
}

bool
conf_entry_answer_failed(const cJSON *entry)
{
    long status = conf_entry_status(entry);
    if (status < 200 || status > 299)
        return true;
    /* The journal holds the status and the scripted step, not the body sent: at 2xx the
     * step says whether the answer was a failure (a firewall page, an in-band refusal, a
     * body of the script's own without success:true); a delay or extra headers are none. */
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(entry, "step");
    if (!cJSON_IsObject(step))
        return false;
    if (cJSON_HasObjectItem(step, "html") || cJSON_HasObjectItem(step, "inband_error") ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(step, "drop")))
        return true;
    const char *body = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(step, "body"));
    if (!body)
        return false;
    cJSON *json = cJSON_Parse(body);
    bool ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "success"));
    cJSON_Delete(json);
    return !ok;
}

const cJSON *
conf_entry_answer(const cJSON *entry)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(entry, "answer");
    return cJSON_IsObject(a) ? a : NULL;
}

const char *
conf_entry_chat_id(const cJSON *entry, char *buf, size_t len)
{
    /* chat_id=ID among the query's parameters; ids are UUIDs, never escaped. */
    for (const char *q = conf_entry_query(entry); q && *q;) {
        size_t n = strcspn(q, "&");
        if (n > 8 && strncmp(q, "chat_id=", 8) == 0 && n - 8 < len) {
            memcpy(buf, q + 8, n - 8);
            buf[n - 8] = '\0';
            return buf;
        }
        q += n + (q[n] == '&');
    }
    return NULL;
}

const cJSON *
conf_model_array(const cJSON *answer)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(answer, "data");
    if (cJSON_IsArray(data))
        return data;
    const cJSON *inner = cJSON_GetObjectItemCaseSensitive(data, "data");
    if (cJSON_IsArray(inner))
        return inner;
    inner = cJSON_GetObjectItemCaseSensitive(data, "models");
    return cJSON_IsArray(inner) ? inner : NULL;
}
