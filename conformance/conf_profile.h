/**
 * @file conf_profile.h
 * @brief What the suite cannot discover about a proxy: its prefixes, limits and timings.
 *
 * A profile is a small JSON file (see profiles/reference.json and SPEC.md, "Profiles").
 * With --spawn the same values configure the reference proxy, so the profile and the
 * proxy under test cannot disagree.
 */
#ifndef CONF_PROFILE_H
#define CONF_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "conf_dialect.h"
#include "conf_requirements.h"
#include "qwenkit/common.h"

enum { CONF_PROFILE_STR = 256 };

/**
 * Features a profile declares the proxy does not have, with the value "none" (SPEC.md,
 * "Profiles"). A MUST test that needs the feature then FAILS, naming the key; a key left out
 * keeps its default, and a value the suite cannot wait for makes the test UNCHECKED.
 */
enum conf_profile_none {
    CONF_NONE_RETRY_AFTER,     /**< retry_after_cap_ms: Retry-After is not honoured */
    CONF_NONE_ATTEMPT_TIMEOUT, /**< upstream_timeout_ms: no limit on one attempt */
    CONF_NONE_DEADLINE,        /**< deadline_ms: no limit on a whole request */
    CONF_NONE_CACHE,           /**< cache_ttl_ms: no model-list cache */
    CONF_NONE_CACHE_BOUND,     /**< cache_max_entries: the cache is unbounded */
    CONF_NONE_STALE,           /**< stale_grace_ms: no stale serving */
    CONF_NONE_BODY_LIMIT,      /**< max_body: no request body limit */
    CONF_NONE_IDLE_TIMEOUT,    /**< stream_idle_timeout_ms: a silent upstream is waited for */
    CONF_NONE_KEEPALIVE,       /**< keepalive_interval_ms: no keep-alive comments */
    CONF_NONE_STREAM_BOUND,    /**< stream_buffer_bytes: per-stream buffering is unbounded */
    CONF_NONE_RECEIVE_TIMEOUT, /**< receive_timeout_ms: no deadline for a request to arrive */
};

/** A parsed profile. Times are milliseconds; 0 means "feature absent" where noted. */
struct conf_profile {
    char name[64];
    char upstream_dialect[16];   /**< "qwen-v1" (default) or "qwen-v2" (conf_dialect.h) */
    char api_prefix[64];         /**< "/api": serves PREFIX/models, PREFIX/chat/completions */
    char v1_prefix[64];          /**< "/v1", or "" when the aliases are absent */
    unsigned max_retries;        /**< retries after the first attempt */
    int64_t retry_base_ms;       /**< first backoff step */
    int64_t retry_after_cap_ms;  /**< longest Retry-After honoured; 0: not honoured */
    int64_t upstream_timeout_ms; /**< limit for one attempt */
    int64_t deadline_ms;         /**< limit for a whole request; 0: none */
    int64_t cache_ttl_ms;        /**< model-list lifetime */
    size_t cache_max_entries;    /**< bound of the model-list cache; 0: unknown */
    int64_t stale_grace_ms;      /**< stale serving after expiry; 0: none */
    char stale_header[64];       /**< response header marking a stale list */
    size_t max_body;             /**< request body limit */
    char cors_origins[CONF_PROFILE_STR]; /**< comma-separated, "*", or "" for no CORS */
    char
        upstream_added_fields[CONF_PROFILE_STR]; /**< body fields the proxy adds, comma-separated */
    char upstream_credential[CONF_PROFILE_STR];  /**< the token a proxy sends upstream in place
                                                      of the caller's; "" when it relays them */
    int64_t stream_idle_timeout_ms; /**< upstream silence that ends a stream (SSE-8, SSE-10) */
    int64_t keepalive_interval_ms;  /**< quiet time before a keep-alive comment; 0: none */
    size_t stream_buffer_bytes;     /**< per-stream buffer bound (SSE-11); 0: unknown */
    char stream_pauses_path[64];    /**< GET path whose JSON counts upstream pauses; "" none */
    char stream_pauses_field[64];   /**< the counter's top-level field in that JSON */
    int64_t receive_timeout_ms;     /**< a request's head and body must arrive within this
                                         (ROBUST-2); 0 with "none" */
    bool absent[CONF_REQ_COUNT];    /**< requirements the proxy declares it does not implement */
    bool absent_should[CONF_REQ_COUNT]; /**< MUST requirements whose SHOULD part is absent */
    unsigned declared_none;             /**< bits of enum conf_profile_none; such members are 0 */
};

/** Fills @p p with the defaults of SPEC.md (those of a proxy configured as the issue says). */
void conf_profile_defaults(struct conf_profile *p);

/**
 * Reads a profile file over the defaults. Unknown keys are refused.
 * @param[out] err names the offending key (and the nearest valid one) or the I/O problem.
 */
QK_WUR enum qk_err conf_profile_load(struct conf_profile *p, const char *path, char *err,
                                     size_t errlen);

/** Reads a profile from @p text (@p len bytes) over the defaults, as conf_profile_load()
 * does; @p name stands for the file in messages. */
QK_WUR enum qk_err conf_profile_parse(struct conf_profile *p, const char *name, const char *text,
                                      size_t len, char *err, size_t errlen);

/** The reference profile (profiles/reference.json) as built into the program, so that an
 * installed qwen-conformance --spawn needs no file of the source tree. */
extern const char conf_reference_profile_json[];

/** @return true when the profile declares that the proxy adds body field @p name (HTTP-8). */
bool conf_profile_adds_field(const struct conf_profile *p, const char *name);

/** @return the upstream dialect the profile names (never NULL: loading validated it). */
const struct conf_dialect *conf_profile_dialect(const struct conf_profile *p);

/** @return true when the profile declared @p what "none". */
bool conf_profile_none(const struct conf_profile *p, enum conf_profile_none what);

/** @return the valid key nearest to @p name (static), for "did you mean". */
const char *conf_profile_nearest_key(const char *name);

/** @return every key with its effective value, "none" where declared so; caller frees. */
cJSON *conf_profile_to_json(const struct conf_profile *p);

/** Prints the effective profile on one line. */
void conf_profile_print(FILE *f, const struct conf_profile *p);

#endif
