#include "conf_profile.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qwenkit/buf.h"

enum { PROFILE_MAX_BYTES = 64 * 1024 };

void
conf_profile_defaults(struct conf_profile *p)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "default");
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
}

static enum qk_err
read_file(const char *path, struct qk_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return QK_IO;
    enum qk_err rc = QK_OK;
    char chunk[4096];
    size_t n;
    while (rc == QK_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = qk_buf_append(out, chunk, n);
    if (rc == QK_OK && ferror(f))
        rc = QK_IO;
    fclose(f);
    return rc;
}

/* Copies a string member; absent keeps the default, a non-string is an error. */
static bool
take_string(const cJSON *root, const char *key, char *dst, size_t dstlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return true;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= dstlen)
        return false;
    snprintf(dst, dstlen, "%s", v->valuestring);
    return true;
}

/* Reads a non-negative integer member into @p dst (absent keeps the default). */
static bool
take_int(const cJSON *root, const char *key, int64_t *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return true;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e12)
        return false;
    *dst = (int64_t)v->valuedouble;
    return true;
}

/* "cors_origins": a list of origins, joined with commas for the proxy's flag. */
static bool
take_origins(const cJSON *root, struct conf_profile *p)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "cors_origins");
    if (!v)
        return true;
    if (!cJSON_IsArray(v))
        return false;
    p->cors_origins[0] = '\0';
    size_t used = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!cJSON_IsString(item))
            return false;
        int n = snprintf(p->cors_origins + used, sizeof(p->cors_origins) - used, "%s%s",
                         used ? "," : "", item->valuestring);
        if (n < 0 || (size_t)n >= sizeof(p->cors_origins) - used)
            return false;
        used += (size_t)n;
    }
    return true;
}

/* "absent": requirement IDs the proxy declares it does not implement (SHOULD/MAY only). */
static bool
take_absent(const cJSON *root, struct conf_profile *p, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "absent");
    if (!v)
        return true;
    if (!cJSON_IsArray(v)) {
        snprintf(err, errlen, "absent: not an array");
        return false;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        enum conf_req req;
        char id[32];
        if (!cJSON_IsString(item) || strlen(item->valuestring) >= sizeof(id)) {
            snprintf(err, errlen, "absent: unknown requirement ID");
            return false;
        }
        snprintf(id, sizeof(id), "%s", item->valuestring);
        /* "SSE-1/should": the SHOULD part of a MUST requirement. */
        char *slash = strchr(id, '/');
        bool part = slash && strcasecmp(slash, "/should") == 0;
        if (part)
            *slash = '\0';
        if (!conf_requirement_find(id, &req) || (slash && !part)) {
            snprintf(err, errlen, "absent: unknown requirement ID");
            return false;
        }
        if (part) {
            p->absent_should[req] = true;
            continue;
        }
        if (conf_requirement(req)->level == CONF_MUST) {
            snprintf(err, errlen, "absent: %s is a MUST and cannot be declared absent",
                     conf_requirement(req)->id);
            return false;
        }
        p->absent[req] = true;
    }
    return true;
}

enum qk_err
conf_profile_load(struct conf_profile *p, const char *path, char *err, size_t errlen)
{
    enum qk_err rc = QK_OK;
    struct qk_buf text;
    cJSON *root = NULL;
    const char *bad = NULL;
    int64_t retries = p->max_retries, entries = (int64_t)p->cache_max_entries;
    int64_t max_body = (int64_t)p->max_body;
    int64_t stream_buffer = (int64_t)p->stream_buffer_bytes;

    qk_buf_init(&text, PROFILE_MAX_BYTES);
    rc = read_file(path, &text);
    if (rc != QK_OK) {
        snprintf(err, errlen, "%s: cannot read (%s)", path, qk_strerror(rc));
        goto out;
    }
    root = cJSON_ParseWithLength(qk_buf_ptr(&text), qk_buf_len(&text));
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%s: not a JSON object", path);
        rc = QK_INVALID;
        goto out;
    }
    if (!take_string(root, "name", p->name, sizeof(p->name)))
        bad = "name";
    else if (!take_string(root, "api_prefix", p->api_prefix, sizeof(p->api_prefix)))
        bad = "api_prefix";
    else if (!take_string(root, "v1_prefix", p->v1_prefix, sizeof(p->v1_prefix)))
        bad = "v1_prefix";
    else if (!take_int(root, "max_retries", &retries) || retries > 100)
        bad = "max_retries";
    else if (!take_int(root, "retry_base_ms", &p->retry_base_ms))
        bad = "retry_base_ms";
    else if (!take_int(root, "retry_after_cap_ms", &p->retry_after_cap_ms))
        bad = "retry_after_cap_ms";
    else if (!take_int(root, "upstream_timeout_ms", &p->upstream_timeout_ms))
        bad = "upstream_timeout_ms";
    else if (!take_int(root, "deadline_ms", &p->deadline_ms))
        bad = "deadline_ms";
    else if (!take_int(root, "cache_ttl_ms", &p->cache_ttl_ms))
        bad = "cache_ttl_ms";
    else if (!take_int(root, "cache_max_entries", &entries))
        bad = "cache_max_entries";
    else if (!take_int(root, "stale_grace_ms", &p->stale_grace_ms))
        bad = "stale_grace_ms";
    else if (!take_string(root, "stale_header", p->stale_header, sizeof(p->stale_header)))
        bad = "stale_header";
    else if (!take_int(root, "max_body", &max_body) || max_body == 0)
        bad = "max_body";
    else if (!take_origins(root, p))
        bad = "cors_origins";
    else if (!take_int(root, "stream_idle_timeout_ms", &p->stream_idle_timeout_ms) ||
             p->stream_idle_timeout_ms == 0)
        bad = "stream_idle_timeout_ms";
    else if (!take_int(root, "keepalive_interval_ms", &p->keepalive_interval_ms))
        bad = "keepalive_interval_ms";
    else if (!take_int(root, "stream_buffer_bytes", &stream_buffer))
        bad = "stream_buffer_bytes";
    else if (!take_string(root, "stream_pauses_path", p->stream_pauses_path,
                          sizeof(p->stream_pauses_path)))
        bad = "stream_pauses_path";
    else if (!take_string(root, "stream_pauses_field", p->stream_pauses_field,
                          sizeof(p->stream_pauses_field)))
        bad = "stream_pauses_field";
    if (bad) {
        snprintf(err, errlen, "%s: bad value for \"%s\"", path, bad);
        rc = QK_INVALID;
        goto out;
    }
    if (!take_absent(root, p, err, errlen)) {
        rc = QK_INVALID;
        goto out;
    }
    p->max_retries = (unsigned)retries;
    p->cache_max_entries = (size_t)entries;
    p->max_body = (size_t)max_body;
    p->stream_buffer_bytes = (size_t)stream_buffer;
out:
    cJSON_Delete(root);
    qk_buf_free(&text);
    return rc;
}
