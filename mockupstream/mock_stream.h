/* Turning an answer into the exact bytes and timing of a streamed response.
 * The plan is pure data, so unit tests can check it without a socket. */
#ifndef MOCK_STREAM_H
#define MOCK_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/buf.h"
#include "qwenkit/common.h"

enum mock_eol { MOCK_EOL_LF = 0, MOCK_EOL_CRLF, MOCK_EOL_CR };

/** How a v2 stream carries its reasoning: cumulative `thinking_summary` arrays (the
 *  2026 shape) or the older `think` phase with incremental text in `content`. */
enum mock_think_phase { MOCK_THINK_NONE = 0, MOCK_THINK_SUMMARY, MOCK_THINK_THINK };

/** How a stream is shaped (the `stream` object of a scenario step). */
struct mock_stream_opts {
    int chunks;         /**< re-split the text into N pieces; 0 = natural pieces */
    int piece_bytes;    /**< repeat each piece whole until it is at least N bytes */
    int chunk_delay_ms; /**< pause before each event after the first */
    bool split_utf8;    /**< cut writes inside multi-byte characters */
    enum mock_eol eol;
    bool comments;          /**< ": keep-alive" line before each event */
    int coalesce;           /**< events per write; 0/1 = one, -1 = all */
    int truncate_after;     /**< close after K events; -1 = never */
    int stall_after;        /**< stop after K events, hold open; -1 = never */
    int stall_ms;           /**< how long a stall holds the connection */
    int trickle_ms;         /**< during a stall, one byte of an event that never ends every N ms
                                 (then the stall ends by closing); 0 = silence */
    bool final_repeat;      /**< extra last chunk repeating the whole text */
    bool cut_last_event;    /**< no [DONE]; the last event ends without its blank line, and the
                                 stream ends cleanly there (a truncated answer) */
    bool final_empty_delta; /**< finish_reason (and usage) on an extra last chunk whose
                                 delta is {} */
    bool empty_choices;     /**< a "choices": [] chunk before the first piece; usage moves
                                 to a "choices": [] chunk after the last */
    bool no_content_delta;  /**< a first chunk delta {"role":"assistant"} and one delta {}
                                 before the middle piece */
    int cumulative;         /**< -1 = as requested, 0 = incremental, 1 = cumulative */
    bool done;              /**< send data: [DONE] */
    bool finish_reason;     /**< last chunk carries finish_reason */
    bool usage;             /**< last chunk carries usage */
    bool envelope;          /**< chunks carry id/object/created/model */
    /* v2 completion stream (mock_stream_v2.c) */
    bool thinking;                     /**< thinking frames (only when given: see `given`) */
    enum mock_think_phase think_phase; /**< NONE = thinking_summary */
    bool summary_grow;                 /**< each summary element first arrives half-written */
    bool dual;                         /**< two competing responses, interleaved */
    int error_after;                   /**< an error frame after K frames; -1 = never */
    bool empty_answer;                 /**< no answer text at all */
    uint64_t given; /**< bit i: row i of MOCK_STREAM_KEYS was given in the step */
};

/** @return true when the step's `stream` object gave key @p key (a MOCK_STREAM_KEYS key). */
bool mock_stream_given(const struct mock_stream_opts *o, const char *key);

/** Delay between the writes of one event split inside UTF-8 characters. */
#define MOCK_SPLIT_WRITE_DELAY_MS 15

/** Most pieces a stream is split into (`chunks` is capped to it). */
#define MOCK_ANSWER_MAX 256

/** Most text the events of one streamed answer may carry in all. Cumulative deltas
 *  re-send the text so far in every event, so a large text in many chunks could
 *  otherwise cost gigabytes per request. */
#define MOCK_STREAM_MAX_BYTES ((size_t)64 << 20)

/** Fills @p o with the defaults (natural pieces, no faults, everything sent). */
void mock_stream_opts_init(struct mock_stream_opts *o);

/** What the answer says, independent of how it is streamed. */
struct mock_answer {
    const char *const *pieces; /**< borrowed */
    size_t n_pieces;
    const char *model; /**< borrowed */
    const char *id;    /**< borrowed, "chatcmpl-..." */
    long long created; /**< seconds */
    int input_tokens;
    const char *finish; /**< "stop" or "length" */
};

/** One socket write: sent after waiting delay_ms; completes `events` events. */
struct mock_write {
    const char *data; /**< points into the plan's bytes */
    size_t len;
    int delay_ms;
    int events;
};

enum mock_plan_end { MOCK_END_NORMAL = 0, MOCK_END_CLOSE, MOCK_END_STALL };

/** The full response body as a list of writes. Owned by whoever built it;
 *  release with mock_plan_free(). */
struct mock_plan {
    struct mock_write *writes;
    size_t count;
    enum mock_plan_end end;
    int stall_ms;
    char *_bytes; /* owned: every write's data, one after the other */
};

/**
 * An upper bound of the text the events of a stream shaped by @p opts carry in all,
 * whatever the request (the answer's pieces, piece_bytes, chunks, final_repeat), with
 * cumulative or incremental deltas. Compare with MOCK_STREAM_MAX_BYTES.
 */
uint64_t mock_stream_worst_bytes(const struct mock_stream_opts *opts, bool cumulative);

/**
 * Builds the plan for @p ans streamed with @p opts; @p cumulative says which delta
 * style to use (already resolved against the request and opts->cumulative).
 * @return QK_OK, QK_NOMEM, or QK_TOO_BIG (nothing built) when the events would carry
 *         more than MOCK_STREAM_MAX_BYTES of text.
 */
QK_WUR enum qk_err mock_plan_build(const struct mock_answer *ans,
                                   const struct mock_stream_opts *opts, bool cumulative,
                                   struct mock_plan *out);

/**
 * The text of @p pieces shaped by @p o (piece_bytes repeats each piece, chunks re-splits
 * it at character boundaries): a new string in *@p text_out (caller frees), its piece
 * boundaries in @p cuts (MOCK_ANSWER_MAX + 2 room; *@p n_out + 1 offsets).
 * @return QK_OK, QK_NOMEM, or QK_TOO_BIG (nothing built) over MOCK_STREAM_MAX_BYTES.
 */
QK_WUR enum qk_err mock_text_build(const char *const *pieces, size_t n_pieces,
                                   const struct mock_stream_opts *o, char **text_out, size_t *cuts,
                                   size_t *n_out);

/**
 * Turns serialised events into a plan shaped by @p o: cut_last_event (the last event
 * loses its blank line), truncate_after, stall_after and trickle_ms, coalesce,
 * chunk_delay_ms and split_utf8. @p bytes holds the events one after the other and
 * @p ends[i] is where event i ends; the bytes are taken (the buffer is empty after).
 */
QK_WUR enum qk_err mock_plan_assemble(struct qk_buf *bytes, size_t *ends, size_t n_events,
                                      const struct mock_stream_opts *o, struct mock_plan *out);

/** "\n", "\r\n" or "\r". */
const char *mock_eol_str(enum mock_eol eol);

/** Plan of a single in-band failure event followed by the end of the stream. */
QK_WUR enum qk_err mock_plan_single_event(const char *json, struct mock_plan *out);

/** Frees the writes. NULL-safe; the plan is empty afterwards. */
void mock_plan_free(struct mock_plan *plan);

/** The answer's whole text (new string, caller frees). */
char *mock_answer_text(const struct mock_answer *ans);

#endif
