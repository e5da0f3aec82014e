/**
 * @file mock.h
 * @brief Embedding API of qwen-mock, the fault-injecting Qwen web-chat upstream.
 *
 * A test or another C project starts the mock in-process on an ephemeral port,
 * reads the bound port, scripts it (over HTTP, or with qk_mock_load_scenarios()),
 * and stops it. The server runs on its own fixed set of threads.
 *
 * Ownership: qk_mock_start() returns a new server that the caller releases with
 * qk_mock_stop(). Strings in struct qk_mock_config are borrowed for the duration of
 * qk_mock_start() only.
 */
#ifndef QWENKIT_MOCK_H
#define QWENKIT_MOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/common.h"

struct qk_mock;

/** Which message of a v2 completion with several `messages` entries is answered. */
enum qk_mock_v2_messages { QK_MOCK_V2_FIRST = 0, QK_MOCK_V2_LAST, QK_MOCK_V2_EMPTY };

/** Settings of a mock server; fill with qk_mock_config_init() then override. */
struct qk_mock_config {
    const char *host;             /**< address to bind, default "127.0.0.1" */
    uint16_t port;                /**< 0 picks a free port */
    unsigned threads;             /**< server threads (epoll), default 2 */
    unsigned max_connections;     /**< default 20000 */
    size_t max_body;              /**< request body limit in bytes (413 above), default 1 MiB */
    size_t journal_per_token;     /**< journal entries kept per token, default 256 */
    size_t journal_total;         /**< journal entries kept in all, default 8192 */
    unsigned missing_auth_status; /**< 401 (default) or 403 {"detail":"Not authenticated"} */
    bool send_done;               /**< end streams with `data: [DONE]` (default true) */
    bool send_finish_reason;      /**< last chunk carries finish_reason (default true) */
    bool send_usage;              /**< last chunk carries usage (default true) */
    bool send_envelope;           /**< chunks carry id/object/created/model (default true) */
    bool log_requests;            /**< one line per request on stderr (default false) */
    unsigned idle_check_ms;       /**< while a stream waits, look for a departed client this
                                       often (default 200) */
    enum qk_mock_v2_messages v2_messages; /**< 2+ messages on v2: answer the first (default),
                                               the last, or with no text */
};

/** Fills @p cfg with the defaults documented above. */
void qk_mock_config_init(struct qk_mock_config *cfg);

/**
 * Starts a mock server.
 * @param[out] out the new server, owned by the caller (qk_mock_stop()).
 * @param[out] err a message on failure (may be NULL).
 */
QK_WUR enum qk_err qk_mock_start(const struct qk_mock_config *cfg, struct qk_mock **out, char *err,
                                 size_t errlen);

/** @return the TCP port the server is bound to. */
uint16_t qk_mock_port(const struct qk_mock *mock);

/**
 * Queues fault-injection steps from scenario JSON: one object
 * `{"token","route","steps"}` or an array of them (the `POST /__mock/scenarios`
 * body). Borrows @p json. On QK_INVALID, @p err names the offending field.
 */
QK_WUR enum qk_err qk_mock_load_scenarios(struct qk_mock *mock, const char *json, size_t len,
                                          char *err, size_t errlen);

/** Stops the server, ends every open stream, and frees it. NULL-safe. */
void qk_mock_stop(struct qk_mock *mock);

#endif
