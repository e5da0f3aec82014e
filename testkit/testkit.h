/*
 * testkit: the plumbing the tests of the mock, the proxy and the suite share (library
 * qk_testkit, tests only). A small libcurl client: one blocking request per call (always
 * with a timeout), the response's status, headers and body, and for streams every piece
 * curl handed to the write callback with its receive time (qk_now_ms()). Plus the mock's
 * control API (scenarios, journal and its settling, revoke, reset), parsing of event
 * streams, the mock-side UTF-8 check, random tokens, and for tests that write their
 * requests byte by byte loopback connections and a raw-answer parser. The suite's oracle
 * (conformance/) does not use it: judging a proxy stays there. The `mc_` prefix is from
 * its first home, the mock's tests.
 *
 * Loopback only: every URL is http://127.0.0.1:PORT and proxies are disabled.
 * Thread-safe as long as each thread uses its own request/response structs, after
 * mc_global_init() has run on the main thread.
 *
 * Ownership: a struct mc_resp owns everything it points to; release it with
 * mc_resp_free(). cJSON results are the caller's (cJSON_Delete()).
 */
#ifndef QK_TESTKIT_H
#define QK_TESTKIT_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Timeout of a request that does not set one. */
#define MC_DEFAULT_TIMEOUT_MS 10000
/** Most extra header lines a request carries. */
#define MC_MAX_HEADERS 8

/** One piece of the body as curl's write callback received it. */
struct mc_chunk {
    char *data;
    size_t len;
    int64_t ms; /**< qk_now_ms() when it arrived */
};

struct mc_header {
    char *name;
    char *value;
};

struct mc_req {
    uint16_t port;
    const char *method;                  /**< default: "POST" when body is set, else "GET" */
    const char *path;                    /**< with query, e.g. "/api/models?x=1" */
    const char *token;                   /**< adds "Authorization: Bearer <token>" when non-NULL */
    const char *headers[MC_MAX_HEADERS]; /**< extra raw lines "Name: value"; NULL ends */
    const char *body;                    /**< NULL: no body */
    size_t body_len;                     /**< 0: strlen(body) */
    long timeout_ms;                     /**< whole transfer; 0: MC_DEFAULT_TIMEOUT_MS */
    size_t abort_after_bytes;            /**< leave after this many body bytes; 0: never */
    size_t abort_after_events;           /**< leave after this many LF-LF-ended events; 0: never */
    bool chunked_upload;                 /**< send the body with Transfer-Encoding: chunked */
};

struct mc_resp {
    CURLcode rc; /**< CURLE_OK, or why the transfer failed */
    char err[CURL_ERROR_SIZE];
    long status;               /**< 0 when no response arrived */
    struct mc_header *headers; /**< of the final response */
    size_t n_headers;
    char *body; /**< NUL-terminated, never NULL after mc_request() */
    size_t body_len;
    struct mc_chunk *chunks;
    size_t n_chunks;
    size_t events_seen; /**< LF-LF event terminators seen */
    bool aborted;       /**< the client left on purpose (abort_after_*) */
    int64_t start_ms, end_ms;
};

/** Call once on the main thread before any other function (and before threads). */
void mc_global_init(void);
void mc_global_cleanup(void);

/**
 * Performs @p req and fills @p resp (zeroed first). @return 0 when the transfer
 * could be set up at all (check resp->rc for the outcome), -1 on OOM.
 */
int mc_request(const struct mc_req *req, struct mc_resp *resp);
/**
 * Performs the @p n requests @p reqs at the same time (one thread, curl's multi interface)
 * and fills each of @p resps like mc_request() (each to be released with mc_resp_free(),
 * whatever the return). @return 0, or -1 on OOM.
 */
int mc_request_all(const struct mc_req *reqs, struct mc_resp *resps, size_t n);
void mc_resp_free(struct mc_resp *resp);

/** GET @p path with a Bearer token (NULL: no Authorization). */
int mc_get(uint16_t port, const char *path, const char *token, struct mc_resp *resp);
/** POST @p body (JSON) to @p path with a Bearer token (NULL: no Authorization). */
int mc_post(uint16_t port, const char *path, const char *token, const char *body,
            struct mc_resp *resp);

/** @return the value of the last header @p name (case-insensitive), or NULL. */
const char *mc_header(const struct mc_resp *resp, const char *name);
/** @return the body parsed as JSON (caller deletes), or NULL. */
cJSON *mc_json(const struct mc_resp *resp);
/** @return the string member @p key of a JSON body, as a new string the caller free()s, or
 *  NULL. */
char *mc_json_string(const struct mc_resp *resp, const char *key);

/** The events of an event stream (any of LF, CRLF, CR line endings). */
struct mc_events {
    char **data; /**< each event's data (lines joined by LF) */
    size_t n;
    size_t comments; /**< comment lines (starting with ':') */
};

/** Parses @p body per the SSE rules; an unterminated last event is not counted. */
void mc_sse_parse(const char *body, size_t len, struct mc_events *out);
void mc_events_free(struct mc_events *ev);

/**
 * Receive time of each LF-LF-ended event: out[i] is the time of the chunk in which
 * event i's terminating blank line arrived. @return events found (at most @p max).
 */
size_t mc_event_times(const struct mc_resp *resp, int64_t *out, size_t max);

/** @return true when @p s (length @p len) is valid UTF-8. */
bool mc_utf8_valid(const char *s, size_t len);

/** Room for a token of mc_new_token(), its NUL included. */
#define MC_TOKEN_MAX 64
/** Writes a fresh random token ("e2e-...", under MC_TOKEN_MAX bytes) into @p out. */
void mc_new_token(char *out, size_t len);

/** Sleeps @p ms milliseconds. */
void mc_sleep_ms(long ms);

/** @return this process's resident set size in bytes (/proc/self/statm), or 0. */
size_t mc_rss_bytes(void);

/** A TCP connection to 127.0.0.1:@p port from source address @p from (NULL: any; e.g.
 *  "127.0.0.2" to be a second client). @return the descriptor (caller closes), or -1. */
int mc_connect(uint16_t port, const char *from);
/** Sends @p len bytes of @p p. @return false when the peer closed before taking them all. */
bool mc_send_all(int fd, const void *p, size_t len);
/**
 * Reads until the peer closes or @p limit_ms pass. @return the time the peer took to close
 * (ms), or -1 when it did not. What arrived goes to @p got, NUL-terminated and cut at
 * @p cap - 1 bytes (@p got NULL: read and dropped).
 */
int64_t mc_read_until_closed(int fd, int limit_ms, char *got, size_t cap);

/**
 * Parses a whole raw HTTP/1.x answer (status line, headers, body up to @p len) into
 * @p resp (zeroed first; rc CURLE_OK; status 0 when it does not start with "HTTP/").
 * @return 0, or -1 on OOM.
 */
int mc_resp_parse_raw(const char *raw, size_t len, struct mc_resp *resp);

/**
 * POSTs @p json to /__mock/scenarios. @return the HTTP status (0 on transport
 * failure); @p reply (may be NULL) receives the parsed answer.
 */
long mc_scenarios(uint16_t port, const char *json, cJSON **reply);
/** Queues @p steps_json (a JSON array) for @p token on @p route. @return the status. */
long mc_queue(uint16_t port, const char *token, const char *route, const char *steps_json);
/** @return the journal of @p token (`{"token","entries"}`), or NULL. */
cJSON *mc_journal(uint16_t port, const char *token);
/** Polls the journal until it holds at least @p n entries or @p timeout_ms passes.
 *  @return the last journal fetched (may hold fewer), or NULL. */
cJSON *mc_journal_wait(uint16_t port, const char *token, int n, long timeout_ms);
/** Like mc_journal_wait(), and also until nothing of @p token is in flight: the mock
 *  journals a request once its answer is complete, a moment after the caller saw it. */
cJSON *mc_journal_settled(uint16_t port, const char *token, int n, long timeout_ms);
/**
 * GETs /__mock/journal?@p query (already URL-encoded, e.g. "contains=abc&since_ms=5").
 * @return the parsed answer whatever its status (a 400 is `{"error","field"}`), or NULL;
 *         @p status (may be NULL) receives the HTTP status, 0 on transport failure.
 */
cJSON *mc_journal_search(uint16_t port, const char *query, long *status);
/** Polls a search until nothing matching is in flight and it holds at least @p n entries,
 *  or @p timeout_ms passes. @return the last answer (may hold fewer), or NULL. */
cJSON *mc_journal_search_wait(uint16_t port, const char *query, int n, long timeout_ms);
/** @return the status of POST /__mock/tokens/revoke. */
long mc_revoke(uint16_t port, const char *token);
/** @return the status of POST /__mock/reset. */
long mc_reset(uint16_t port);

#endif
