#include "conf_profile.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf_dialect.h"
#include "qwenkit/buf.h"

enum { PROFILE_MAX_BYTES = 64 * 1024 };

/* How a key's value is read. */
enum key_type {
    KEY_META,    /* documentation only: accepted, not used */
    KEY_STRING,  /* char[] member */
    KEY_MS,      /* int64_t member; "none" allowed where the key says so */
    KEY_COUNT,   /* size_t member */
    KEY_RETRIES, /* unsigned member */
    KEY_LIST,    /* list of strings, joined with commas */
    KEY_ABSENT,  /* list of requirement IDs */
    KEY_DIALECT, /* char[] member naming a dialect of conf_dialect.h */
};

struct key_row {
    const char *name;
    enum key_type type;
    size_t offset, size; /* the member */
    int64_t min, max;    /* numbers */
    int none_bit;        /* bit in declared_none when "none" is allowed, else -1 */
    const char *help;    /* for --list-profile and errors */
};

#define MEMBER(m) offsetof(struct conf_profile, m), sizeof(((struct conf_profile *)0)->m)
#define NO_NONE (-1)

static const struct key_row keys[] = {
    {"profile_version", KEY_META, 0, 0, 0, 0, NO_NONE, "format version (1)"},
    {"description", KEY_META, 0, 0, 0, 0, NO_NONE, "free text"},
    {"name", KEY_STRING, MEMBER(name), 0, 0, NO_NONE, "shown in reports"},
    {"upstream_dialect", KEY_DIALECT, MEMBER(upstream_dialect), 0, 0, NO_NONE,
     "the upstream API the mock speaks to the proxy"},
    {"api_prefix", KEY_STRING, MEMBER(api_prefix), 0, 0, NO_NONE, "PREFIX of the API routes"},
    {"v1_prefix", KEY_STRING, MEMBER(v1_prefix), 0, 0, NO_NONE, "OpenAI alias prefix, \"\": none"},
    {"max_retries", KEY_RETRIES, MEMBER(max_retries), 0, 100, NO_NONE,
     "retries after the first attempt"},
    {"retry_base_ms", KEY_MS, MEMBER(retry_base_ms), 0, 600000, NO_NONE, "first backoff step"},
    {"retry_after_cap_ms", KEY_MS, MEMBER(retry_after_cap_ms), 0, 3600000, CONF_NONE_RETRY_AFTER,
     "longest Retry-After honoured"},
    {"upstream_timeout_ms", KEY_MS, MEMBER(upstream_timeout_ms), 1, 3600000,
     CONF_NONE_ATTEMPT_TIMEOUT, "limit of one attempt"},
    {"deadline_ms", KEY_MS, MEMBER(deadline_ms), 0, 3600000, CONF_NONE_DEADLINE,
     "limit of a whole request"},
    {"cache_ttl_ms", KEY_MS, MEMBER(cache_ttl_ms), 1, 86400000, CONF_NONE_CACHE, "model-list TTL"},
    {"cache_max_entries", KEY_COUNT, MEMBER(cache_max_entries), 0, 100000000, CONF_NONE_CACHE_BOUND,
     "model-list cache bound"},
    {"stale_grace_ms", KEY_MS, MEMBER(stale_grace_ms), 0, 86400000, CONF_NONE_STALE,
     "stale-serving grace"},
    {"stale_header", KEY_STRING, MEMBER(stale_header), 0, 0, NO_NONE,
     "header marking a stale list"},
    {"max_body", KEY_COUNT, MEMBER(max_body), 1, 1000000000, CONF_NONE_BODY_LIMIT,
     "request body limit"},
    {"cors_origins", KEY_LIST, MEMBER(cors_origins), 0, 0, NO_NONE, "allowed origins"},
    {"upstream_added_fields", KEY_LIST, MEMBER(upstream_added_fields), 0, 0, NO_NONE,
     "body fields the proxy adds upstream"},
    {"upstream_credential", KEY_STRING, MEMBER(upstream_credential), 0, 0, NO_NONE,
     "the token the proxy sends upstream instead of the caller's"},
    {"stream_idle_timeout_ms", KEY_MS, MEMBER(stream_idle_timeout_ms), 1, 3600000,
     CONF_NONE_IDLE_TIMEOUT, "upstream silence that ends a stream"},
    {"keepalive_interval_ms", KEY_MS, MEMBER(keepalive_interval_ms), 0, 3600000,
     CONF_NONE_KEEPALIVE, "quiet time before a keep-alive comment"},
    {"stream_buffer_bytes", KEY_COUNT, MEMBER(stream_buffer_bytes), 0, 1000000000,
     CONF_NONE_STREAM_BOUND, "per-stream buffer bound"},
    {"stream_pauses_path", KEY_STRING, MEMBER(stream_pauses_path), 0, 0, NO_NONE,
     "GET path counting upstream pauses"},
    {"stream_pauses_field", KEY_STRING, MEMBER(stream_pauses_field), 0, 0, NO_NONE,
     "the counter's field"},
    {"receive_timeout_ms", KEY_MS, MEMBER(receive_timeout_ms), 1, 3600000,
     CONF_NONE_RECEIVE_TIMEOUT, "deadline for a request's head and body to arrive"},
    {"absent", KEY_ABSENT, 0, 0, 0, 0, NO_NONE, "SHOULD/MAY requirements not implemented"},
};
enum { KEY_ROWS = sizeof(keys) / sizeof(keys[0]) };

void
conf_profile_defaults(struct conf_profile *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "default");
    /* Profiles written before v2 name no dialect: they were all v1. */
    snprintf(p->upstream_dialect, sizeof(p->upstream_dialect), "%s", conf_dialect_qwen_v1.name);
    snprintf(p->api_prefix, sizeof(p->api_prefix), "/api");
    snprintf(p->v1_prefix, sizeof(p->v1_prefix), "/v1");
    p->max_retries = 3;
    p->retry_base_ms = 250;
    p->retry_after_cap_ms = 10000;
    p->upstream_timeout_ms = 60000;
    p->deadline_ms = 0;
    p->cache_ttl_ms = 3600 * 1000;
    p->cache_max_entries = 0;
    p->stale_grace_ms = 0;
    snprintf(p->stale_header, sizeof(p->stale_header), "X-Cache");
    p->max_body = QK_LIMIT_BODY_DEFAULT;
    snprintf(p->cors_origins, sizeof(p->cors_origins), "*");
    p->stream_idle_timeout_ms = 60000;
    p->keepalive_interval_ms = 15000;
    p->stream_buffer_bytes = 64 * 1024;
    p->receive_timeout_ms = 60000; /* Node.js's headersTimeout, a common bound */
}

const struct conf_dialect *
conf_profile_dialect(const struct conf_profile *p)
{
    const struct conf_dialect *d = conf_dialect_find(p->upstream_dialect);
    return d ? d : &conf_dialect_qwen_v1;
}

bool
conf_profile_none(const struct conf_profile *p, enum conf_profile_none what)
{
    return (p->declared_none & (1u << what)) != 0;
}

/* Levenshtein distance, for "did you mean". Keys are short. */
static size_t
edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *
conf_profile_nearest_key(const char *name)
{
    const char *best = keys[0].name;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < KEY_ROWS; i++) {
        size_t d = edit_distance(name, keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = keys[i].name;
        }
    }
    return best;
}

static const struct key_row *
find_key(const char *name)
{
    for (size_t i = 0; i < KEY_ROWS; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    }
    return NULL;
}

/* A list of strings ("cors_origins", "upstream_added_fields"), joined with commas (the
 * proxy's --cors-origins flag takes them so). */
static bool
take_list(const cJSON *v, char *dst, size_t dstlen)
{
    if (!cJSON_IsArray(v))
        return false;
    dst[0] = '\0';
    size_t used = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        if (!cJSON_IsString(item) || strchr(item->valuestring, ','))
            return false;
        int n = snprintf(dst + used, dstlen - used, "%s%s", used ? "," : "", item->valuestring);
        if (n < 0 || (size_t)n >= dstlen - used)
            return false;
        used += (size_t)n;
    }
    return true;
}

bool
conf_profile_adds_field(const struct conf_profile *p, const char *name)
{
    size_t n = strlen(name);
    for (const char *s = p->upstream_added_fields; *s;) {
        size_t len = strcspn(s, ",");
        if (len == n && strncmp(s, name, n) == 0)
            return true;
        s += len + (s[len] == ',');
    }
    return false;
}

/* "absent": requirement IDs the proxy declares it does not implement (SHOULD/MAY only). */
static bool
take_absent(const cJSON *v, struct conf_profile *p, char *err, size_t errlen)
{
    if (!cJSON_IsArray(v)) {
        snprintf(err, errlen, "\"absent\": not an array of requirement IDs");
        return false;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v)
    {
        enum conf_req req;
        char id[32];
        if (!cJSON_IsString(item) || strlen(item->valuestring) >= sizeof(id)) {
            snprintf(err, errlen, "\"absent\": every entry must be a requirement ID");
            return false;
        }
        snprintf(id, sizeof(id), "%s", item->valuestring);
        /* "SSE-1/should": the SHOULD part of a MUST requirement. */
        char *slash = strchr(id, '/');
        bool part = slash && strcasecmp(slash, "/should") == 0;
        if (part)
            *slash = '\0';
        if (!conf_requirement_find(id, &req) || (slash && !part)) {
            snprintf(err, errlen, "\"absent\": unknown requirement ID \"%.31s\" (see --list)",
                     item->valuestring);
            return false;
        }
        if (part) {
            p->absent_should[req] = true;
            continue;
        }
        if (conf_requirement(req)->level == CONF_MUST) {
            snprintf(err, errlen, "\"absent\": %s is a MUST and cannot be declared absent",
                     conf_requirement(req)->id);
            return false;
        }
        p->absent[req] = true;
    }
    return true;
}

/* Reads one number-valued key; "none" sets its bit where the key allows it. */
static bool
take_number(const cJSON *v, const struct key_row *k, struct conf_profile *p)
{
    char *member = (char *)p + k->offset;
    int64_t value;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "none") == 0 && k->none_bit != NO_NONE) {
        p->declared_none |= 1u << k->none_bit;
        value = 0;
    } else if (cJSON_IsNumber(v) && v->valuedouble >= (double)k->min &&
               v->valuedouble <= (double)k->max &&
               v->valuedouble == (double)(int64_t)v->valuedouble) {
        p->declared_none &= ~(k->none_bit != NO_NONE ? 1u << k->none_bit : 0u);
        value = (int64_t)v->valuedouble;
    } else {
        return false;
    }
    switch (k->type) {
    case KEY_MS:
        *(int64_t *)(void *)member = value;
        break;
    case KEY_COUNT:
        *(size_t *)(void *)member = (size_t)value;
        break;
    case KEY_RETRIES:
        *(unsigned *)(void *)member = (unsigned)value;
        break;
    default:
        return false;
    }
    return true;
}

static bool
take_key(const cJSON *v, const struct key_row *k, struct conf_profile *p, char *err, size_t errlen,
         const char *path)
{
    bool ok = true;
    switch (k->type) {
    case KEY_META:
        break;
    case KEY_STRING:
        ok = cJSON_IsString(v) && strlen(v->valuestring) < k->size;
        if (ok)
            snprintf((char *)p + k->offset, k->size, "%s", v->valuestring);
        break;
    case KEY_MS:
    case KEY_COUNT:
    case KEY_RETRIES:
        ok = take_number(v, k, p);
        break;
    case KEY_LIST:
        ok = take_list(v, (char *)p + k->offset, k->size);
        break;
    case KEY_ABSENT:
        return take_absent(v, p, err, errlen);
    case KEY_DIALECT:
        if (!cJSON_IsString(v) || !conf_dialect_find(v->valuestring)) {
            snprintf(err, errlen, "%s: bad value for \"%s\" (%s): expected one of %s", path,
                     k->name, k->help, conf_dialect_names());
            return false;
        }
        snprintf((char *)p + k->offset, k->size, "%s", v->valuestring);
        return true;
    }
    if (!ok) {
        if (k->type == KEY_MS || k->type == KEY_COUNT || k->type == KEY_RETRIES)
            snprintf(err, errlen, "%s: bad value for \"%s\" (%s): expected an integer %lld..%lld%s",
                     path, k->name, k->help, (long long)k->min, (long long)k->max,
                     k->none_bit != NO_NONE ? " or \"none\"" : "");
        else
            snprintf(err, errlen, "%s: bad value for \"%s\" (%s)", path, k->name, k->help);
    }
    return ok;
}

enum qk_err
conf_profile_load(struct conf_profile *p, const char *path, char *err, size_t errlen)
{
    struct qk_buf text;
    qk_buf_init(&text, PROFILE_MAX_BYTES);
    enum qk_err rc = qk_buf_append_file(&text, path);
    if (rc != QK_OK)
        snprintf(err, errlen, "%s: cannot read (%s)", path, qk_strerror(rc));
    else
        rc = conf_profile_parse(p, path, qk_buf_ptr(&text), qk_buf_len(&text), err, errlen);
    qk_buf_free(&text);
    return rc;
}

enum qk_err
conf_profile_parse(struct conf_profile *p, const char *name, const char *text, size_t len,
                   char *err, size_t errlen)
{
    const char *path = name; /* what messages call the profile */
    enum qk_err rc = QK_INVALID;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        goto out;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, root)
    {
        /* "x-..." keys belong to the profile's other readers (a launcher's arguments). */
        if (strncmp(item->string, "x-", 2) == 0)
            continue;
        const struct key_row *k = find_key(item->string);
        if (!k) {
            snprintf(err, errlen, "%s: unknown key \"%.64s\" (did you mean \"%s\"?)", path,
                     item->string, conf_profile_nearest_key(item->string));
            goto out;
        }
        if (!take_key(item, k, p, err, errlen, path))
            goto out;
    }
    rc = QK_OK;
out:
    cJSON_Delete(root);
    return rc;
}

cJSON *
conf_profile_to_json(const struct conf_profile *p)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < KEY_ROWS; i++) {
        const struct key_row *k = &keys[i];
        const char *member = (const char *)p + k->offset;
        if (k->none_bit != NO_NONE && (p->declared_none & (1u << k->none_bit))) {
            cJSON_AddStringToObject(o, k->name, "none");
            continue;
        }
        switch (k->type) {
        case KEY_META:
            break;
        case KEY_DIALECT:
            cJSON_AddStringToObject(o, k->name, member);
            break;
        case KEY_STRING:
            if (k->offset == offsetof(struct conf_profile, upstream_credential) && member[0]) {
                /* A credential never appears in a report in full. */
                char shown[64];
                snprintf(shown, sizeof(shown), "<set, %zu bytes>", strlen(member));
                cJSON_AddStringToObject(o, k->name, shown);
            } else {
                cJSON_AddStringToObject(o, k->name, member);
            }
            break;
        case KEY_MS:
            cJSON_AddNumberToObject(o, k->name, (double)*(const int64_t *)(const void *)member);
            break;
        case KEY_COUNT:
            cJSON_AddNumberToObject(o, k->name, (double)*(const size_t *)(const void *)member);
            break;
        case KEY_RETRIES:
            cJSON_AddNumberToObject(o, k->name, (double)*(const unsigned *)(const void *)member);
            break;
        case KEY_LIST: {
            cJSON *arr = cJSON_AddArrayToObject(o, k->name);
            char copy[CONF_PROFILE_STR];
            snprintf(copy, sizeof(copy), "%s", member);
            char *save = NULL;
            for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
                cJSON_AddItemToArray(arr, cJSON_CreateString(s));
            break;
        }
        case KEY_ABSENT: {
            cJSON *arr = cJSON_AddArrayToObject(o, k->name);
            for (int r = 0; r < CONF_REQ_COUNT; r++) {
                const char *id = conf_requirement((enum conf_req)r)->id;
                if (p->absent[r])
                    cJSON_AddItemToArray(arr, cJSON_CreateString(id));
                if (p->absent_should[r]) {
                    char part[40];
                    snprintf(part, sizeof(part), "%s/should", id);
                    cJSON_AddItemToArray(arr, cJSON_CreateString(part));
                }
            }
            break;
        }
        }
    }
    return o;
}

void
conf_profile_print(FILE *f, const struct conf_profile *p)
{
    cJSON *o = conf_profile_to_json(p);
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    fprintf(f, "profile \"%s\" (effective): %s\n", p->name, text ? text : "(out of memory)");
    free(text);
    cJSON_Delete(o);
}
