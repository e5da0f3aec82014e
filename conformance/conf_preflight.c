#include "conf_preflight.h"

#include "conf_text.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum {
    SETTLE_MS = 1000, /* how long the journal may take to show a request */
};

static void
fresh_token(char *buf, size_t len, const char *label)
{
    unsigned char raw[8] = {0};
    if (getentropy(raw, sizeof(raw)) != 0) {
        uint64_t x = (uint64_t)qk_now_ms() ^ (uint64_t)(uintptr_t)buf;
        memcpy(raw, &x, sizeof(raw));
    }
    snprintf(buf, len, "conf-preflight-%s-%02x%02x%02x%02x%02x%02x%02x%02x", label, raw[0], raw[1],
             raw[2], raw[3], raw[4], raw[5], raw[6], raw[7]);
    /* A v2 pool may refill chats for it in the background while the tests run. */
    conf_note_preflight_token(buf);
}

/* Sends one request to the proxy; the caller clears @p resp. */
static void
send_to_proxy(const struct conf_env *env, const char *method, const char *path, const char *token,
              const char *body, struct conf_response *resp)
{
    char url[CONF_URL_MAX + 128], auth[160];
    snprintf(url, sizeof(url), "%s%s", env->proxy_url, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *headers[] = {auth, "Content-Type: application/json", NULL};
    struct conf_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .timeout_ms = 10000,
    };
    if (conf_http(&req, resp) != QK_OK)
        memset(resp, 0, sizeof(*resp));
}

/* @return the journal entries of @p token once settled (caller frees @p root). */
static const cJSON *
settled_journal(const struct conf_env *env, const char *token, cJSON **root)
{
    char err[256];
    int64_t until = qk_now_ms() + SETTLE_MS;
    for (;;) {
        *root = NULL;
        if (conf_mock_journal(env->mock_url, token, root, err, sizeof(err)) != QK_OK)
            return NULL;
        const cJSON *entries = cJSON_GetObjectItemCaseSensitive(*root, "entries");
        const cJSON *flying = cJSON_GetObjectItemCaseSensitive(*root, "in_flight");
        bool settled = !cJSON_IsNumber(flying) || flying->valuedouble == 0;
        if ((settled && cJSON_GetArraySize(entries) > 0) || qk_now_ms() >= until)
            return entries;
        cJSON_Delete(*root);
        usleep(25 * 1000);
    }
}

/* @return the latest journal sequence number (arrival order), once nothing is in flight. */
static long
latest_seq(const struct conf_env *env)
{
    char err[256];
    long seq = 0;
    int64_t until = qk_now_ms() + SETTLE_MS;
    for (;;) {
        cJSON *found = NULL;
        int64_t now = qk_now_ms();
        if (conf_mock_journal_window(env->mock_url, now > 5000 ? now - 5000 : 1, now, NULL, &found,
                                     err, sizeof(err)) != QK_OK)
            return 0;
        bool settled = conf_journal_in_flight(found) <= 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(found, "entries"))
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "seq");
            if (cJSON_IsNumber(n) && (long)n->valuedouble > seq)
                seq = (long)n->valuedouble;
        }
        cJSON_Delete(found);
        if (settled || qk_now_ms() >= until)
            return seq;
        usleep(25 * 1000);
    }
}

/* @return the first entry of @p entries that arrived after sequence number @p after. */
static const cJSON *
first_after(const cJSON *entries, long after)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, entries)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "seq");
        if (cJSON_IsNumber(n) && (long)n->valuedouble > after)
            return e;
    }
    return NULL;
}

/* Nothing was filed under the caller's token: say what the upstream did receive, from a
 * search for the token in any form, then for any request after @p since. */
static void
describe_missing(const struct conf_env *env, const char *token, struct conf_mark since, char *seen,
                 size_t seenlen)
{
    char err[256], shown[160];
    cJSON *found = NULL;
    const cJSON *e = NULL;
    if (conf_mock_journal_containing(env->mock_url, token, &found, err, sizeof(err)) == QK_OK)
        e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(found, "entries"), 0);
    if (e) {
        snprintf(seen, seenlen, "the upstream received \"%s\" for \"Bearer <token>\"",
                 conf_text_credential(shown, sizeof(shown), conf_entry_header(e, "Authorization"),
                                      token));
        cJSON_Delete(found);
        return;
    }
    cJSON_Delete(found);
    found = NULL;
    if (conf_mock_journal_window(env->mock_url, since.ms > 1 ? since.ms - 1 : 1, qk_now_ms(), token,
                                 &found, err, sizeof(err)) == QK_OK)
        e = first_after(cJSON_GetObjectItemCaseSensitive(found, "entries"), since.seq);
    if (e)
        snprintf(seen, seenlen, "the upstream received %s instead of the caller's credential",
                 conf_text_credential(shown, sizeof(shown), conf_entry_header(e, "Authorization"),
                                      token));
    else
        snprintf(seen, seenlen, "no upstream request carried the caller's token");
    cJSON_Delete(found);
}

/*
 * Judges whether the request just made with @p token reached the upstream with exactly
 * `Authorization: Bearer TOKEN`, and describes what it did receive otherwise.
 * @return the number of upstream requests journaled under the token.
 */
static int
observe_token(const struct conf_env *env, const char *token, struct conf_mark since, bool *verbatim,
              char *seen, size_t seenlen)
{
    /* A proxy that sends its own credential (the profile says which) is scripted and read
     * through it: what counts then is that the credential arrives intact. */
    const char *cred = env->profile.upstream_credential;
    const char *key = cred[0] ? cred : token;
    cJSON *root = NULL;
    cJSON *entries = (cJSON *)settled_journal(env, key, &root);
    for (int i = cJSON_GetArraySize(entries) - 1; i >= 0; i--) {
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(entries, i), "seq");
        if (!cJSON_IsNumber(seq) || (long)seq->valuedouble <= since.seq)
            cJSON_DeleteItemFromArray(entries, i);
    }
    int n = cJSON_GetArraySize(entries);
    *verbatim = n > 0;
    if (n == 0)
        describe_missing(env, token, since, seen, seenlen);
    const cJSON *e;
    cJSON_ArrayForEach(e, entries)
    {
        const char *auth = conf_entry_header(e, "Authorization");
        size_t count = conf_entry_header_count(e, "Authorization");
        /* v2: the cookie `token` alone is the caller's credential too (SPEC.md, AUTH-3). */
        if (conf_entry_credential_is(e, key, conf_dialect_is_v2(env->dialect)))
            continue;
        *verbatim = false;
        char shown[160];
        if (count > 1)
            snprintf(seen, seenlen, "the upstream received %zu Authorization headers", count);
        else
            snprintf(seen, seenlen, "the upstream received \"%s\" for \"Bearer <token>\"",
                     conf_text_credential(shown, sizeof(shown), auth, token));
        break;
    }
    cJSON_Delete(root);
    return n;
}

/* @return a mark of the journal now (see conf_upstream_mark()). */
static struct conf_mark
mark_now(const struct conf_env *env)
{
    return (struct conf_mark){.ms = qk_now_ms(), .seq = latest_seq(env)};
}

/* @return true when any request reached the upstream after @p since. */
static bool
requests_since(const struct conf_env *env, struct conf_mark since)
{
    return latest_seq(env) > since.seq;
}

static bool
is_model_list(const struct conf_response *r)
{
    cJSON *json = cJSON_ParseWithLength(r->body, r->body_len);
    bool ok = r->status == 200 && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(json, "data"));
    cJSON_Delete(json);
    return ok;
}

/* PREFIX/models answered 404 or 405: say which prefix the proxy does serve. */
static enum qk_err
check_prefix(const struct conf_env *env, long status, char *err, size_t errlen)
{
    if (status != 404 && status != 405)
        return QK_OK;
    static const char *const candidates[] = {"/v1", "/api", ""};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (strcmp(candidates[i], env->profile.api_prefix) == 0)
            continue;
        char token[96], path[64];
        struct conf_response r;
        fresh_token(token, sizeof(token), "prefix");
        snprintf(path, sizeof(path), "%s/models", candidates[i]);
        send_to_proxy(env, "GET", path, token, NULL, &r);
        bool works = is_model_list(&r);
        conf_response_clear(&r);
        if (works) {
            snprintf(err, errlen,
                     "%s/models answers %ld but %s works: set \"api_prefix\": \"%s\" in the "
                     "profile",
                     env->profile.api_prefix, status, path, candidates[i]);
            return QK_INVALID;
        }
    }
    snprintf(err, errlen,
             "%s/models answers %ld, and neither /v1/models nor /api/models gives a model list: "
             "set \"api_prefix\" in the profile to the proxy's prefix",
             env->profile.api_prefix, status);
    return QK_INVALID;
}

enum qk_err
conf_preflight_run(const struct conf_env *env, struct conf_facts *facts, char *err, size_t errlen)
{
    memset(facts, 0, sizeof(*facts));
    facts->own_credential = env->profile.upstream_credential[0] != '\0';
    char token[96], path[96];
    struct conf_response r;

    /* The model-list route. */
    struct conf_mark since = mark_now(env);
    fresh_token(token, sizeof(token), "models");
    snprintf(path, sizeof(path), "%s/models", env->profile.api_prefix);
    send_to_proxy(env, "GET", path, token, NULL, &r);
    long models_status = r.status;
    bool models_listed = is_model_list(&r);
    conf_response_clear(&r);
    if (check_prefix(env, models_status, err, errlen) != QK_OK)
        return QK_INVALID;
    int fetched = observe_token(env, token, since, &facts->token_verbatim[CONF_ROUTE_MODELS],
                                facts->token_seen[CONF_ROUTE_MODELS],
                                sizeof(facts->token_seen[CONF_ROUTE_MODELS]));

    /* The chat route (never cached). */
    since = mark_now(env);
    fresh_token(token, sizeof(token), "chat");
    char *body = conf_chat_json(&(struct conf_chat){
        .model = env->model, .text = "preflight", .stream = CONF_CHAT_STREAM_FALSE});
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return QK_NOMEM;
    }
    snprintf(path, sizeof(path), "%s/chat/completions", env->profile.api_prefix);
    send_to_proxy(env, "POST", path, token, body, &r);
    free(body);
    conf_response_clear(&r);
    observe_token(env, token, since, &facts->token_verbatim[CONF_ROUTE_CHAT],
                  facts->token_seen[CONF_ROUTE_CHAT], sizeof(facts->token_seen[CONF_ROUTE_CHAT]));

    /* A list for a credential that went upstream for none is another credential's list.
     * Either this run's first request filled a shared cache, or an earlier client did. */
    bool shared = models_listed && fetched == 0 && facts->token_verbatim[CONF_ROUTE_CHAT];
    if (facts->token_verbatim[CONF_ROUTE_MODELS]) {
        since = mark_now(env);
        fresh_token(token, sizeof(token), "shared");
        snprintf(path, sizeof(path), "%s/models", env->profile.api_prefix);
        send_to_proxy(env, "GET", path, token, NULL, &r);
        bool listed = is_model_list(&r);
        conf_response_clear(&r);
        bool unused = false;
        char ignored[CONF_REASON_MAX];
        shared = listed &&
                 observe_token(env, token, since, &unused, ignored, sizeof(ignored)) == 0 &&
                 !requests_since(env, since);
    }
    if (shared) {
        facts->shared_models_cache = true;
        /* Nothing can be learnt about the token on a route a shared cache answers. */
        facts->token_verbatim[CONF_ROUTE_MODELS] = true;
        facts->token_seen[CONF_ROUTE_MODELS][0] = '\0';
    }
    return QK_OK;
}

void
conf_preflight_print(FILE *f, const struct conf_facts *facts)
{
    if (facts->own_credential)
        fprintf(f, "preflight: the proxy sends its own credential (the profile's "
                   "upstream_credential): the suite scripts that credential, resets the mock "
                   "before every test and reads only the test's own requests\n");
    for (int r = 0; r < CONF_ROUTE_COUNT; r++) {
        const char *route = conf_route_name((enum conf_route)r);
        if (facts->token_verbatim[r])
            fprintf(f, "preflight: %s route: the caller's token reaches the upstream verbatim\n",
                    route);
        else
            fprintf(f,
                    "preflight: %s route: the caller's token does NOT reach the upstream "
                    "verbatim (%s); tests that script or count upstream requests per token "
                    "there are CANNOT-JUDGE\n",
                    route, facts->token_seen[r]);
    }
    if (facts->shared_models_cache)
        fprintf(f, "preflight: models route: a fresh credential got a model list with no "
                   "upstream request: one cache serves every credential (AUTH-5); model-list "
                   "tests of fresh credentials are SKIPPED naming AUTH-5\n");
}
