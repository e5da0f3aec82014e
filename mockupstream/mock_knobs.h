/*
 * The keys of a scenario step and of its `stream` object, each one row of an X-macro
 * table: key, type, struct field, bounds, doc. The rows drive parsing and validation
 * (mock_scenario.c), `--help` and the README's table (`qwen-mock --fault-keys`, which a
 * ctest compares with mockupstream/README.md).
 *
 * A new knob is a row here, its behaviour (mock_stream.c, api_v1.c, ...) and a test.
 */
#ifndef MOCK_KNOBS_H
#define MOCK_KNOBS_H

#include <stddef.h>
#include <stdio.h>

/** How a key's JSON value is read, and the C type of its field. */
enum mock_knob_type {
    MOCK_KNOB_INT,      /**< int in [lo, hi] */
    MOCK_KNOB_UINT,     /**< unsigned in [lo, hi] */
    MOCK_KNOB_BOOL,     /**< bool, true or false */
    MOCK_KNOB_TRUE,     /**< bool, true only (present means on) */
    MOCK_KNOB_STRING,   /**< char *, a copy of the string */
    MOCK_KNOB_EOL,      /**< enum mock_eol, true sets it to lo, false leaves it */
    MOCK_KNOB_COALESCE, /**< int: true = -1 (all), false = 0, or an integer in [lo, hi] */
    MOCK_KNOB_DELTAS,   /**< int: true = 1 (cumulative), false = 0 (incremental) */
    MOCK_KNOB_HTML,     /**< enum mock_html, by name */
    MOCK_KNOB_INBAND,   /**< enum mock_inband, by name */
    MOCK_KNOB_PHASE,    /**< enum mock_think_phase, by name */
    MOCK_KNOB_HEADERS,  /**< cJSON *, an object of header names to string values */
    MOCK_KNOB_STREAM,   /**< struct mock_stream_opts, the `stream` object's keys */
};

/* key, type, field of struct mock_step, lo, hi, doc (Markdown, one README cell) */
#define MOCK_STEP_KEYS(XX)                                                                         \
    XX("ok", TRUE, ok, 0, 0, "answer normally (to place a success after failures)")                \
    XX("status", UINT, status, 200, 599,                                                           \
       "answer with that status (a final answer; 1xx would leave the client waiting); body "       \
       "`{\"detail\":\"Mock error N\"}` unless `body`")                                            \
    XX("body", STRING, body, 0, 0, "the body sent with `status` (as is)")                          \
    XX("content_type", STRING, content_type, 0, 0,                                                 \
       "the `Content-Type` of `body` (default `application/json`)")                                \
    XX("retry_after", INT, retry_after, 0, 86400,                                                  \
       "adds `Retry-After: S` (seconds); needs `status`")                                          \
    XX("headers", HEADERS, headers, 0, 0,                                                          \
       "extra response headers on whatever the step answers (e.g. hop-by-hop headers a proxy "     \
       "must drop); `Content-Length`/`Transfer-Encoding` are refused")                             \
    XX("html", HTML, html, 0, 0,                                                                   \
       "an HTML page, `text/html; charset=utf-8`: captcha 200, Aliyun-WAF block page 405 "         \
       "(`Server: Tengine`), nginx-style gateway page 502 with CRLF lines (504 with `status: "     \
       "504`), the v2 WAF page at 200 (`waf200`: `<!doctypehtml>` with the `aliyun_waf_aa` "       \
       "metas); `status` overrides")                                                               \
    XX("inband_error", INBAND, inband, 0, 0,                                                       \
       "the service's in-band failure payload at HTTP 200: busy WAF "                              \
       "(`{\"ret\":[\"FAIL_SYS_USER_VALIDATE\",\"RGV587_ERROR::SM::...\"],...}`), its slider "     \
       "`captcha` variant, `quota` (`RateLimited`, `num`), `in_progress` (`Bad_Request` \"The "    \
       "chat is in progress!\"), `expired` (`unauthorized`), `error` "                             \
       "(`{\"error\":{\"code\":\"internal_error\",...}}`); on v1 paths the first and only event "  \
       "of "                                                                                       \
       "a `text/event-stream`, on v2 paths the whole body, `application/json;charset=utf-8`")      \
    XX("inband_sse", TRUE, inband_sse, 0, 0,                                                       \
       "with `inband_error` on a v2 path: send the payload as one `data:` event of a "             \
       "`text/event-stream` instead of the bare body")                                             \
    XX("delay_ms", INT, delay_ms, 0, 600000, "wait N ms before sending the response headers")      \
    XX("drop", TRUE, drop, 0, 0, "close the connection without answering")                         \
    XX("times", INT, times, 1, 100000,                                                             \
       "the step answers the next N requests on its route, then leaves the queue (default 1): a "  \
       "route that fails however often a proxy asks it, spare v2 chats included")                  \
    XX("stream", STREAM, stream, 0, 0,                                                             \
       "shapes a streamed answer (the request must ask for `stream: true`), with the keys below")

/* key, type, field of struct mock_stream_opts, lo, hi, doc */
#define MOCK_STREAM_KEYS(XX)                                                                        \
    XX("chunks", INT, chunks, 1, MOCK_ANSWER_MAX,                                                   \
       "split the text into N pieces (at character boundaries)")                                    \
    XX("piece_bytes", INT, piece_bytes, 0, 2 * 1024 * 1024,                                         \
       "repeat each piece whole until it is at least N bytes, for streams large enough to fill "    \
       "a proxy's buffers; use with incremental deltas")                                            \
    XX("chunk_delay_ms", INT, chunk_delay_ms, 0, 600000, "wait N ms between events")                \
    XX("split_utf8", BOOL, split_utf8, 0, 0,                                                        \
       "send each event in several writes cut inside multi-byte characters, each write flushed "    \
       "on its own (15 ms apart)")                                                                  \
    XX("crlf", EOL, eol, MOCK_EOL_CRLF, 0, "CRLF line endings")                                     \
    XX("cr", EOL, eol, MOCK_EOL_CR, 0, "lone CR line endings (not with `crlf`)")                    \
    XX("comments", BOOL, comments, 0, 0, "a `: keep-alive` comment line before every chunk event")  \
    XX("coalesce", COALESCE, coalesce, 0, 100000,                                                   \
       "K events per write (`true` = all events in one "                                            \
       "write)")                                                                                    \
    XX("truncate_after", INT, truncate_after, 0, 100000,                                            \
       "close the connection after K events (no `[DONE]`)")                                         \
    XX("stall_after", INT, stall_after, 0, 100000,                                                  \
       "after K events send nothing more and hold the connection open until the client leaves "     \
       "(or `stall_ms` passes)")                                                                    \
    XX("stall_ms", INT, stall_ms, 0, 3600000, "how long a stall holds the connection (60000)")      \
    XX("trickle_ms", INT, trickle_ms, 1, 60000,                                                     \
       "with `stall_after`: during the stall send one byte every N ms of an event that never "      \
       "ends (no line end ever), for `stall_ms`, then close")                                       \
    XX("cut_last_event", BOOL, cut_last_event, 0, 0,                                                \
       "no `[DONE]`, and the last event ends without its blank line: the stream ends cleanly "      \
       "inside it")                                                                                 \
    XX("final_repeat", BOOL, final_repeat, 0, 0,                                                    \
       "after the last piece, one more chunk whose content is the full text, carrying "             \
       "`finish_reason`")                                                                           \
    XX("final_empty_delta", BOOL, final_empty_delta, 0, 0,                                          \
       "the pieces carry no `finish_reason` (all `null`); after them (and after the "               \
       "`final_repeat` chunk) one last chunk `\"delta\": {}` carrying `finish_reason` (the "        \
       "answer's, `\"stop\"` or `\"length\"`; `null` with `finish_reason: false`) and `usage` "     \
       "when on; then `[DONE]` as configured")                                                      \
    XX("empty_choices", BOOL, empty_choices, 0, 0,                                                  \
       "a chunk `\"choices\": []` (envelope as configured, nothing else) before the first "         \
       "piece; and, when `usage` is on, usage leaves the finishing chunk for a usage-only "         \
       "`\"choices\": []` chunk after it, just before `[DONE]` (the OpenAI `include_usage` "        \
       "shape)")                                                                                    \
    XX("no_content_delta", BOOL, no_content_delta, 0, 0,                                            \
       "a first chunk whose delta is `{\"role\":\"assistant\"}` (no `content`), and one chunk "     \
       "`\"delta\": {}` just before piece ⌊N/2⌋ of N (counting from 0; with one piece, before " \
       "it)")                                                                                       \
    XX("cumulative", DELTAS, cumulative, 0, 0,                                                      \
       "force cumulative (`true`) or incremental (`false`) deltas whatever the request said; "      \
       "with `true`, a `piece_bytes` and `chunks` whose events could carry over 64 MiB of text "    \
       "in all are refused (400 naming `stream.piece_bytes`)")                                      \
    XX("done", BOOL, done, 0, 0, "send `data: [DONE]` (overrides `--no-done`)")                     \
    XX("finish_reason", BOOL, finish_reason, 0, 0,                                                  \
       "the last chunk carries `finish_reason` (overrides `--no-finish-reason`)")                   \
    XX("usage", BOOL, usage, 0, 0, "the last chunk carries `usage` (overrides `--no-usage`)")       \
    XX("envelope", BOOL, envelope, 0, 0,                                                            \
       "chunks carry `id`/`object`/`created`/`model` (overrides `--no-envelope`)")                  \
    XX("thinking", BOOL, thinking, 0, 0,                                                            \
       "v2: send thinking frames (`true`) or none (`false`), whatever the request's "               \
       "`feature_config.thinking_enabled` says")                                                    \
    XX("think_phase", PHASE, think_phase, 0, 0,                                                     \
       "v2: reasoning as cumulative `thinking_summary` arrays (the default) or as the older "       \
       "`think` phase, incremental text in `content`")                                              \
    XX("summary_grow", BOOL, summary_grow, 0, 0,                                                    \
       "v2: each `summary_thought` element first arrives cut at half its length and grows in "      \
       "place in the next frame")                                                                   \
    XX("dual", BOOL, dual, 0, 0,                                                                    \
       "v2: two competing responses (`response.created` index \"0\" then \"1\"), their frames "     \
       "interleaved, response 1 with another text")                                                 \
    XX("error_after", INT, error_after, 0, 100000,                                                  \
       "v2: after K frames (not counting `response.created`) one frame "                            \
       "`{\"error\":{\"code\":\"internal_error\",...}}`, then the end of the body (no finished "    \
       "frame)")                                                                                    \
    XX("empty_answer", BOOL, empty_answer, 0, 0,                                                    \
       "v2: no answer text: `response.created`, the thinking frames when on, the answer's "         \
       "finished frame")

/** One row of a key table. */
struct mock_knob {
    const char *key;
    enum mock_knob_type type;
    size_t offset; /**< of the field in struct mock_step or struct mock_stream_opts */
    long long lo, hi;
    const char *doc;
};

/** A key table: the step keys or the stream keys (static). */
struct mock_knob_table {
    const struct mock_knob *rows;
    size_t count;
    const char *prefix; /**< "" or "stream.": how the README names its keys */
};

extern const struct mock_knob_table mock_step_knobs;
extern const struct mock_knob_table mock_stream_knobs;

/** @return the row of @p table named @p key, or NULL. */
const struct mock_knob *mock_knob_find(const struct mock_knob_table *table, const char *key);

/** @return the names a MOCK_KNOB_HTML or MOCK_KNOB_INBAND value takes, indexed by its
 *  enum value (index 0, "none", is not a name a step may give), and their count. */
const char *const *mock_knob_names(enum mock_knob_type type, size_t *count);

/** Writes what @p k accepts ("an integer 1..256", "true or false", ...) to @p out. */
void mock_knob_values(const struct mock_knob *k, char *out, size_t len);

/** Prints the README's table of step and stream keys (Markdown) to @p out. */
void mock_knobs_print_markdown(FILE *out);

/** Prints a short list of the keys with what each accepts, for --help. */
void mock_knobs_print_help(FILE *out);

#endif
