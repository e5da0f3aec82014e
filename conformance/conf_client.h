/**
 * @file conf_client.h
 * @brief The suite's HTTP client (libcurl): one request, or several at once.
 *
 * Every call has a timeout, so the suite always finishes. Times are qk_now_ms()
 * (CLOCK_MONOTONIC), the clock the mock's journal uses, so both can be compared.
 */
#ifndef CONF_CLIENT_H
#define CONF_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/common.h"

enum {
    CONF_CLIENT_BODY_MAX = 8 * 1024 * 1024, /**< bytes of response body kept */
    CONF_CLIENT_HEADERS_MAX = 128,          /**< response header lines kept */
    CONF_CLIENT_TIMEOUT_MS = 15000,         /**< default limit for one request */
};

struct conf_request {
    const char *method;         /**< "GET", "POST", ... */
    const char *url;            /**< absolute URL */
    const char *const *headers; /**< NULL-terminated "Name: value" lines, or NULL */
    const char *body;           /**< request body or NULL */
    size_t body_len;
    long timeout_ms; /**< 0: CONF_CLIENT_TIMEOUT_MS */
    /**
     * Optional (streaming tests): sees each piece of the body as it arrives, after it was
     * kept. Returning false closes the connection at once; the transfer then ends with
     * curl_code CURLE_WRITE_ERROR. May sleep, to play a slow reader.
     */
    bool (*on_body)(void *arg, const char *bytes, size_t len);
    void *on_body_arg;
    long recv_buffer;  /**< libcurl's receive buffer (bytes); 0: its default */
    int socket_rcvbuf; /**< the socket's SO_RCVBUF (bytes), pinning the TCP window
                            a slow reader offers; 0: the system's autotuning */
    size_t body_max;   /**< bytes of response body kept; 0: CONF_CLIENT_BODY_MAX */
};

struct conf_header {
    char *name;
    char *value;
};

/** What the caller saw. Owns its strings; release with conf_response_clear(). */
struct conf_response {
    long status; /**< 0 when no HTTP answer arrived */
    char *body;  /**< NUL-terminated, never NULL after a perform */
    size_t body_len;
    int body_truncated; /**< 1 when the body exceeded the request's body_max */
    struct conf_header headers[CONF_CLIENT_HEADERS_MAX];
    size_t header_count;
    int curl_code;   /**< CURLcode, 0 on success */
    char error[256]; /**< libcurl's message when curl_code != 0 */
    int64_t sent_ms; /**< when the request started */
    int64_t done_ms; /**< when the answer was complete */
};

/** Calls curl_global_init(); once, before any thread starts. */
QK_WUR enum qk_err conf_client_global_init(void);
void conf_client_global_cleanup(void);

/**
 * Performs one request and fills @p out (which the caller clears afterwards).
 * A transport failure is not an error of this function: it shows in out->curl_code.
 * @return QK_OK, or QK_NOMEM / QK_INVALID when the request could not be made at all.
 */
QK_WUR enum qk_err conf_http(const struct conf_request *req, struct conf_response *out);

/** Performs @p n requests concurrently (one thread, curl multi); fills out[0..n-1]. */
QK_WUR enum qk_err conf_http_many(const struct conf_request *reqs, size_t n,
                                  struct conf_response *out);

/** What a raw exchange (conf_http_raw()) saw besides the response it parsed. */
struct conf_raw_outcome {
    size_t status_lines; /**< lines of the answer that start like a status line */
    bool closed;         /**< the target closed the connection before the timeout */
    size_t bytes;        /**< bytes received in all */
};

/**
 * Sends @p bytes exactly as given (no parsing, no normalising: for malformed requests a
 * client library would refuse or repair) on a new connection to @p base_url
 * ("http://HOST:PORT"), then reads until the target closes or @p timeout_ms passes.
 * Fills @p out from the first status line, the header block after it and the bytes after
 * that block (the body, unframed), and @p outcome with what else was seen. No answer at
 * all shows as status 0 with a message in out->error.
 * @return QK_OK, or QK_NOMEM / QK_INVALID when the exchange could not be attempted.
 */
QK_WUR enum qk_err conf_http_raw(const char *base_url, const char *bytes, size_t len,
                                 long timeout_ms, struct conf_response *out,
                                 struct conf_raw_outcome *outcome);

/** @return the value of the first header named @p name (case-insensitive), or NULL. */
const char *conf_response_header(const struct conf_response *r, const char *name);

/** @return how many header lines are named @p name. */
size_t conf_response_header_count(const struct conf_response *r, const char *name);

/** Frees what @p r owns; @p r can be reused. */
void conf_response_clear(struct conf_response *r);

#endif
