/**
 * @file request.h
 * @brief The per-request state, shared by the server threads and the upstream loop.
 *
 * One struct qp_request per HTTP request, created on the first access-handler call.
 * Ownership is a reference count with two possible holders:
 *  - libmicrohttpd's connection, from creation until the NOTIFY_COMPLETED callback;
 *  - the upstream loop, from qp_loop_post() until the loop has resumed the connection
 *    (a cached model list never goes there: its server thread answers it).
 * The last qp_request_unref() frees it. Fields are grouped by who may touch them when.
 */
#ifndef QP_REQUEST_H
#define QP_REQUEST_H

#include <curl/curl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "cache.h"
#include "dialect.h"
#include "key.h"
#include "loop.h"
#include "qwenkit/buf.h"
#include "qwenkit/common.h"
#include "retry.h"
#include "log.h"
#include "stream.h"

struct MHD_Connection;
struct qk_proxy;
struct qp_forwarder;

/** @return the struct of type @p type that holds @p ptr in its field @p member. */
#define QP_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/** The routes the proxy serves. */
enum qp_route {
    QP_ROUTE_NONE = 0,
    QP_ROUTE_INDEX,   /**< GET / */
    QP_ROUTE_HEALTH,  /**< GET /healthz: liveness */
    QP_ROUTE_READY,   /**< GET /readyz: readiness */
    QP_ROUTE_METRICS, /**< GET /metrics: Prometheus */
    QP_ROUTE_MODELS,  /**< GET /api/models, /v1/models */
    QP_ROUTE_CHAT,    /**< POST /api/chat/completions, /v1/chat/completions */
};

/** Where a response came from, for X-Cache and the log line. */
enum qp_cache_mark {
    QP_MARK_NONE = 0, /**< not a cacheable route */
    QP_MARK_HIT,
    QP_MARK_MISS,
    QP_MARK_STALE,
};

/** Lifecycle of a request. */
enum qp_req_state {
    QP_REQ_READING = 0, /**< receiving the body (server thread) */
    QP_REQ_WAITING,     /**< suspended; the loop owns the upstream exchange */
    QP_REQ_READY,       /**< resp is filled; the next handler call queues it */
    QP_REQ_SENT,        /**< a response was queued */
};

/** A response the proxy will send. Owns its strings. */
struct qp_response {
    unsigned status;
    char *body; /**< malloc'd (or shared->data), may be NULL for an empty body */
    size_t len;
    struct qp_blob *shared;     /**< when set, body is its bytes: one reference, owned */
    char content_type[128];     /**< "" when there is no body */
    struct curl_slist *headers; /**< extra "Name: value" lines, owned */
};

/** Frees what @p r owns and zeroes it. */
void qp_response_clear(struct qp_response *r);

/** Sets @p r to a proxy-made OpenAI error (ERR-3). Replaces what @p r held. */
void qp_response_error(struct qp_response *r, unsigned status, const char *message,
                       const char *param, const char *code);

/** Sets @p r to @p body (taken, malloc'd) with @p status and @p content_type (copied). */
void qp_response_take_body(struct qp_response *r, unsigned status, char *body, size_t len,
                           const char *content_type);

/** Sets @p r to the bytes of @p blob (its reference taken) with @p status and
 *  @p content_type (copied), without copying them: a cached model list. */
void qp_response_share_body(struct qp_response *r, unsigned status, struct qp_blob *blob,
                            const char *content_type);

/** Copies @p src into @p dst (deep). @return false when out of memory. */
bool qp_response_copy(struct qp_response *dst, const struct qp_response *src);

/** Appends one "Name: value" line to @p r. */
void qp_response_add_header(struct qp_response *r, const char *name, const char *value);

struct qp_request {
    atomic_int refs;

    /* Set on creation, read-only afterwards (any thread). */
    struct qk_proxy *proxy;
    struct MHD_Connection *conn;
    enum qp_route route;
    bool openai_alias; /**< the /v1/ form of the route */
    char method[16];
    char path[128];    /**< the raw path, as sent (undecoded, no query), for routing and logs */
    size_t target_len; /**< bytes of the request target as sent, query included */
    bool begun;        /**< the access handler has seen the request (begin() in server.c) */
    char request_id[72];
    char fingerprint[QK_LIMIT_FINGERPRINT];
    int64_t started_ms;

    /* Filled by the server thread before qp_loop_post(), read-only afterwards. */
    char *authorization;    /**< the caller's value, owned; NULL if absent */
    struct qp_key cred_key; /**< key of the full Authorization value */
    struct qk_buf body;     /**< the caller's body */
    bool body_too_big;
    bool stream;                         /**< the body asked for "stream": true */
    struct curl_slist *upstream_headers; /**< the same list on every attempt (RETRY-7) */

    /* Written by whoever holds the request in its state (see enum qp_req_state). */
    enum qp_req_state state;
    struct qp_response resp;
    unsigned attempts;
    enum qp_cache_mark cache;
    /** The failed attempts before the answer, for the request line (a stream's cut after
     *  its start is the stream's: qp_stream_cut()). */
    struct qp_log_failure failures[QP_LOG_FAILURES];
    unsigned n_failures;

    /* Loop thread only. */
    struct qp_loop_transfer xfer;
    struct qp_loop_timer retry_timer;
    struct curl_slist *attempt_headers; /**< response headers of the current attempt */
    struct qk_buf attempt_body;
    unsigned plan_step;          /**< the dialect plan's step the transfer runs */
    struct qp_plan_state plan;   /**< what the attempt's earlier steps learned */
    struct qk_buf step_body;     /**< the body of a step that makes its own (dialect.h) */
    const struct qk_buf *upload; /**< what the current transfer sends: body or step_body */
    unsigned attempt_requests;   /**< requests libcurl began for the current transfer */
    bool attempt_too_big;
    int64_t deadline_ms;
    int64_t attempt_due_ms; /* when the open attempt's upstream timeout runs out (all its steps) */
    struct qp_attempt_facts last;     /**< facts of the latest finished attempt */
    char last_error[CURL_ERROR_SIZE]; /**< libcurl's message for the latest attempt */
    struct qp_key flight_key;         /**< set on the server thread too, before any post (a hit) */
    bool leads_flight;
    bool has_cache_key;      /**< flight_key is a cache key for this request (set with it) */
    struct qp_forwarder *fw; /**< the forwarder running the exchange */
    bool in_transfer;        /**< xfer.easy is added to the multi handle */
    struct qp_request *active_prev, *active_next; /**< the loop's list of open exchanges */

    /* Loop thread only: the connection's resume in the loop's next batch (loop.h), under a
     * reference of its own (qp_request_resume_later()). */
    struct qp_loop_batched resume;

    /* Streaming: `streaming` is set by the loop before it resumes the connection with a
     * 200 event stream; server threads read it afterwards. `st` is the relay (stream.h),
     * owned by the request. */
    bool streaming;
    struct qp_stream st;
#ifdef QK_MUTANTS
    char mutant_chat_id[128]; /**< mutant v2_retry_same_chat: the first attempt's chat */
#endif
    char model_id[128]; /**< GET /v1/models/{id}: the id ("" otherwise); the list is fetched
                             or read from the cache as for /v1/models, then picked from */
};

/** @return a new request with one reference (the caller's), or NULL when out of memory. */
struct qp_request *qp_request_new(void);

/**
 * Resumes the request's suspended connection with the loop's next batch (loop thread).
 * The batch holds a reference until the resume is done; asking again before then is one
 * resume. Whatever the server thread reads after the resume must be written before this.
 */
void qp_request_resume_later(struct qp_request *req, struct qp_loop *loop);

/** Takes one more reference. */
void qp_request_ref(struct qp_request *req);

/** Drops one reference; the last one frees the request. NULL-safe. */
void qp_request_unref(struct qp_request *req);

#endif
