/**
 * @file dialect.h
 * @brief What the proxy must know of one upstream API ("dialect"): its paths and the plan
 * of upstream transfers that make up one attempt.
 *
 * The forwarder runs an attempt by walking its route's plan: each step is one upstream
 * transfer; a step that is not the last reads what the next steps need from its 2xx
 * answer (take_answer), and the last step's answer is the attempt's answer. A failure of
 * any step (transport, status, unusable answer) is one failed attempt, judged by the
 * retry policy like any other; the next attempt walks the plan from its first step.
 * The upstream timeout (--upstream-timeout) bounds a whole attempt, all its steps
 * together: each step's transfer gets what is left of it. Of a streamed request only the
 * last step's answer may start the caller's stream; an earlier step's answer, SSE or not,
 * is read whole and given to its take_answer. A failure is logged and answered naming its
 * step ("step 1 of 2 (POST /path): ...") when the plan has more than one.
 * Qwen's v1 API needs one transfer per route. A dialect whose completion needs two (create
 * a chat, then ask for the completion in it) is one more file `dialect_<name>.c` defining
 * `qp_dialect_<name>`, its declaration below and its source in CMakeLists.txt; the proxy
 * instance picks it (server.c, `px->dialect`).
 *
 * Dialects are constant tables: nothing here is allocated or freed, and the hooks are
 * pure (no globals, no I/O).
 */
#ifndef QP_DIALECT_H
#define QP_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include "qwenkit/buf.h"
#include "qwenkit/common.h"

/** What the steps of one attempt learned for the steps after them. Reset per attempt. */
struct qp_plan_state {
    char chat_id[128]; /**< a chat created by an earlier step ("" when none) */
};

/** One upstream transfer of an attempt. */
struct qp_dialect_step {
    const char *method; /**< "GET" or "POST" */
    const char *path;   /**< appended to the upstream base URL */
    /**
     * Optional: appends this step's query ("?chat_id=...") to @p url from @p plan.
     * NULL: the URL is the path alone.
     */
    enum qk_err (*add_query)(const struct qp_plan_state *plan, struct qk_buf *url);
    /**
     * Optional, POST only: writes the body this step sends into @p out (caller-owned),
     * made from the caller's chat body @p chat (borrowed) and @p plan. NULL: the caller's
     * body is sent as it came, the same bytes on every attempt (RETRY-7).
     */
    enum qk_err (*make_body)(const struct qk_buf *chat, const struct qp_plan_state *plan,
                             struct qk_buf *out);
    /**
     * Required on every step but the last: reads the step's 2xx answer (@p body, borrowed)
     * into @p plan. @return false when the answer is unusable: the attempt failed.
     */
    bool (*take_answer)(struct qp_plan_state *plan, const char *body, size_t len);
};

/** The transfers of one attempt, in order; at least one. */
struct qp_dialect_plan {
    const struct qp_dialect_step *steps;
    size_t len;
};

struct qp_decoder_ops;

/** One upstream dialect. */
struct qp_dialect {
    const char *name;
    const char *models_path;       /**< where the model list is asked for */
    const char *completion_path;   /**< where an attempt's completion is asked for (the step
                                        whose requests count as attempts) */
    struct qp_dialect_plan models; /**< GET /api/models, /v1/models */
    struct qp_dialect_plan chat;   /**< POST /api/chat/completions, /v1/chat/completions */
    /** The decoder of the upstream's events (decoder.h), given to the stream normalizer. */
    const struct qp_decoder_ops *stream_decoder;
};

/** Qwen's chat API v1 (`/api/models`, `/api/chat/completions`), one transfer per attempt. */
extern const struct qp_dialect qp_dialect_v1;

#endif
