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
 * Qwen's v1 API needs one transfer per route; v2 (dialect_v2.c) creates a chat, then asks
 * for the completion in it. A dialect is one file `dialect_<name>.c` defining
 * `qp_dialect_<name>`, its declaration below, its row in the registry (dialect.c,
 * qp_dialect_find()) and its source in CMakeLists.txt; the instance picks it by name
 * (`--upstream-dialect`, server.c `px->dialect`).
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

/** What the steps of one attempt learned for the steps after them, and what the forwarder
 *  gives them at the attempt's start (so that make_body stays pure). Reset per attempt. */
struct qp_plan_state {
    char chat_id[128]; /**< a chat created by an earlier step ("" when none) */
    long long now_ms;  /**< wall clock (ms since the epoch) at the attempt's start */
    char fid[40];      /**< a fresh random UUID per attempt (the v2 message id) */
    /** Why the attempt failed, when a reader of an answer (take_answer, the forwarder's
     *  assembly of a streamed answer) found it unusable: one line, never a credential. */
    char why[200];
    /** 0, or the caller's final status that answer called for, not retried: 401 the
     *  credential was refused, 400 the caller's request was (qp_v2_failure_status). */
    unsigned final_status;
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
     * into @p plan. @return false when the answer is unusable: the attempt failed, and
     * `plan->why` may say why (`plan->final_status` when that is final).
     */
    bool (*take_answer)(struct qp_plan_state *plan, const char *body, size_t len);
};

/** The transfers of one attempt, in order; at least one. */
struct qp_dialect_plan {
    const struct qp_dialect_step *steps;
    size_t len;
};

struct qp_decoder_ops;

/** What the last step of a chat plan answers. */
enum qp_chat_answer {
    /** A non-stream caller's body asks for JSON and gets one completion (relayed as OpenAI's
     *  chat.completion, completion.h); a streamed caller's asks for events. */
    QP_ANSWER_JSON = 0,
    /** Always an event stream (the step's body asks for one whatever the caller asked): a
     *  non-stream caller gets it read whole and assembled (assemble.h). */
    QP_ANSWER_SSE,
};

/** One upstream dialect. */
struct qp_dialect {
    const char *name;             /**< "v1", "v2": the `--upstream-dialect` value */
    const char *default_upstream; /**< base URL when `--upstream` is not given */
    /** Unwraps the dialect's model-list answer into the shape callers get from
     *  /api/models (`{"data":[...]}`). NULL: the answer is that shape already.
     *  @return a malloc'd body (caller frees), or NULL when unusable or out of memory. */
    char *(*models_unwrap)(const char *body, size_t len, size_t *out_len);
    struct qp_dialect_plan models; /**< GET /api/models, /v1/models */
    struct qp_dialect_plan chat;   /**< POST /api/chat/completions, /v1/chat/completions */
    enum qp_chat_answer chat_answer;
    /** The decoder of the upstream's events (decoder.h), given to the stream normalizer and
     *  to the assembler of a non-stream answer (QP_ANSWER_SSE). */
    const struct qp_decoder_ops *stream_decoder;
};

/** Qwen's chat API v1 (`/api/models`, `/api/chat/completions`), one transfer per attempt. */
extern const struct qp_dialect qp_dialect_v1;

/** Qwen's chat API v2 (`/api/v2/models/`; `/api/v2/chats/new` then
 *  `/api/v2/chat/completions?chat_id=`), two transfers per chat attempt. */
extern const struct qp_dialect qp_dialect_v2;

/** The dialect `--upstream-dialect` uses when not given. Flipping the default is this one
 *  line (and the docs that name it). */
#define QP_DIALECT_DEFAULT "v2"

/** @return the dialect named @p name ("v1", "v2"), or NULL. */
const struct qp_dialect *qp_dialect_find(const char *name);

/** @return the registered dialects' names joined by "|" ("v1|v2"), static. */
const char *qp_dialect_names(void);

#endif
