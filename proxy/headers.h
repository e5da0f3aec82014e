/**
 * @file headers.h
 * @brief Header policy as a table (AUTH-6), and CORS origin matching (HTTP-3).
 *
 * Every header the proxy treats specially is one row of QP_HEADER_MAP with flags saying
 * in which direction it is dropped and why; forwarding code asks qp_header_forward_*()
 * instead of comparing names itself. Headers named in a `Connection` value are
 * hop-by-hop too (RFC 9110 7.6.1).
 */
#ifndef QP_HEADERS_H
#define QP_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

/** Flags of a header row. */
enum qp_header_flags {
    QP_HDR_HOP_REQ = 1 << 0, /**< hop-by-hop on requests: not sent upstream */
    QP_HDR_HOP_RES = 1 << 1, /**< hop-by-hop on responses: not relayed to the caller */
    QP_HDR_HOP = QP_HDR_HOP_REQ | QP_HDR_HOP_RES, /**< hop-by-hop: never forwarded */
    QP_HDR_REQ_OWN = 1 << 2,                      /**< on requests the proxy or libcurl sets it */
    QP_HDR_RES_OWN = 1 << 3, /**< on responses the proxy or libmicrohttpd sets it */
};

/* name, flags, why */
#define QP_HEADER_MAP(XX)                                                                          \
    XX("Connection", QP_HDR_HOP, "hop-by-hop (RFC 9110 7.6.1)")                                    \
    XX("Keep-Alive", QP_HDR_HOP, "hop-by-hop")                                                     \
    XX("Proxy-Connection", QP_HDR_HOP, "non-standard hop-by-hop")                                  \
    XX("TE", QP_HDR_HOP, "hop-by-hop")                                                             \
    XX("Trailer", QP_HDR_HOP, "hop-by-hop")                                                        \
    XX("Transfer-Encoding", QP_HDR_HOP, "framing belongs to each connection")                      \
    XX("Upgrade", QP_HDR_HOP, "hop-by-hop")                                                        \
    XX("Proxy-Authorization", QP_HDR_HOP, "credentials for this hop only")                         \
    XX("Proxy-Authenticate", QP_HDR_HOP, "challenge for this hop only")                            \
    XX("Host", QP_HDR_REQ_OWN, "libcurl sets the upstream's host")                                 \
    XX("Content-Length", QP_HDR_REQ_OWN | QP_HDR_RES_OWN, "recomputed for our body")               \
    XX("Expect", QP_HDR_REQ_OWN, "no 100-continue round trip upstream")                            \
    XX("Accept-Encoding", QP_HDR_REQ_OWN, "the proxy reads bodies as identity")                    \
    XX("X-Request-Id", QP_HDR_REQ_OWN | QP_HDR_RES_OWN, "the proxy sets the chosen id")            \
    XX("Content-Type", QP_HDR_RES_OWN, "the proxy sets it with the body it sends")                 \
    XX("Date", QP_HDR_RES_OWN, "libmicrohttpd sets it")                                            \
    XX("Server", QP_HDR_RES_OWN, "the upstream's software is not the caller's concern")            \
    XX("Set-Cookie", QP_HDR_RES_OWN, "upstream cookies belong to the upstream's origin")           \
    XX("X-Cache", QP_HDR_RES_OWN, "the proxy's own cache status")                                  \
    XX("Vary", QP_HDR_RES_OWN, "the proxy sets its own")                                           \
    XX("Access-Control-Allow-Origin", QP_HDR_RES_OWN, "the proxy answers CORS itself")             \
    XX("Access-Control-Allow-Credentials", QP_HDR_RES_OWN, "the proxy answers CORS")               \
    XX("Access-Control-Expose-Headers", QP_HDR_RES_OWN, "the proxy answers CORS")

#include "mutant.h"

struct qp_header_row {
    const char *name;
    unsigned flags;
};

#define QP_HEADER_ONE(name, flags, why) +1
enum { QP_HEADER_ROWS = 0 QP_HEADER_MAP(QP_HEADER_ONE) };
#undef QP_HEADER_ONE

/** The header policy: QP_HEADER_MAP's rows, and what a `Connection` listing makes a header. */
struct qp_header_policy {
    struct qp_header_row rows[QP_HEADER_ROWS];
    unsigned connection_listed; /**< QP_HDR_HOP: hop-by-hop both ways (RFC 9110 7.6.1) */
    bool refuse_duplicates;     /**< a singleton header sent twice is refused (INPUT-1) */
    bool refuse_control_chars;  /**< a value holding a control character is refused (INPUT-2) */
};

/** The one policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_header_policy qp_header_policy;

/** @return the flags of @p name (case-insensitive), 0 for an ordinary header. */
unsigned qp_header_flags(const char *name);

/**
 * @return true when @p name appears as a token in the `Connection` value @p connection
 * (comma-separated, case-insensitive). NULL @p connection lists nothing.
 */
bool qp_header_in_connection(const char *name, const char *connection);

/** @return true when a caller's request header goes upstream. */
bool qp_header_forward_request(const char *name, const char *connection);

/**
 * @return true for what a client says of itself: `User-Agent` and the OpenAI SDKs'
 * telemetry (`X-Stainless-*`: OS, architecture, runtime, retry count). Not sent upstream
 * unless the proxy is started with --forward-client-identity: it tells the service about
 * the caller's machine, and no caller asked for that.
 */
bool qp_header_is_client_identity(const char *name);

/** @return true when an upstream response header goes back to the caller. */
bool qp_header_forward_response(const char *name, const char *connection);

struct curl_slist;

/**
 * Like qp_header_forward_response(), with the tokens of every `Connection` line of
 * @p lines (the upstream's "Name: value" header lines, borrowed) as the Connection list:
 * a second Connection line names hop-by-hop headers as much as the first (RFC 9110 5.3).
 */
bool qp_header_forward_response_of(const char *name, const struct curl_slist *lines);

/**
 * Checks one configured upstream header line (`--upstream-header 'Name: value'`): a token
 * name, a colon, a value without control bytes (HTAB aside). Refused: the caller's
 * credential (`Authorization`), `Content-Type` and every name the table drops or owns on
 * requests (hop-by-hop, `Host`, `Content-Length`, `X-Request-Id`, ...).
 * @return NULL when the line is usable, else why not (static text).
 */
const char *qp_header_configured_check(const char *line, size_t len);

/** qp_header_configured_check() on each line of @p value (lines joined by "\n", none
 *  empty). @return NULL when every line is usable, else why not (static text). */
const char *qp_upstream_headers_check(const char *value);

/** @return true when the "Name: value" line @p line (@p len bytes) has the name @p name
 *  (case-insensitive). */
bool qp_header_line_is(const char *line, size_t len, const char *name);

/** @return true when @p token (@p len bytes) may be a cookie value as it is (RFC 6265
 *  cookie-octets: no space, quote, comma, semicolon, backslash or control byte). */
bool qp_cookie_value_ok(const char *token, size_t len);

/**
 * @return true when @p origin may use the proxy from a browser: @p allowed is "*" or a
 * comma-separated list of exact origins (`https://app.example`, trailing slash ignored).
 */
bool qp_cors_origin_allowed(const char *allowed, const char *origin);

#endif
