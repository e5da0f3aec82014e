/*
 * The suite's own Server-Sent Events parser, written from the WHATWG HTML rules
 * (§9.2.6 "Interpreting an event stream"). It shares no code with the proxy it
 * judges, so one bug cannot hide itself on both sides.
 *
 * Besides the events, it counts what a strict checker needs to know: fields other
 * than `data`, comment lines, blank lines that dispatched nothing, and whether the
 * stream ended inside an event.
 */
#ifndef CONF_SSE_H
#define CONF_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/buf.h"

/** One dispatched event. Strings are owned by the parser's event list. */
struct conf_sse_event {
    char *type; /**< "message" unless an `event:` field set it */
    char *data; /**< data lines joined with "\n", NUL-terminated */
    size_t data_len;
    int64_t at_ms; /**< receive time of the bytes that completed the event */
};

struct conf_sse_parser {
    /* public, read-only */
    struct conf_sse_event *events;
    size_t n_events;
    size_t comments;         /**< lines starting with ':' */
    size_t other_fields;     /**< event:, id:, retry: and unknown fields */
    size_t empty_dispatches; /**< blank lines with no data pending */
    bool ended_inside_event; /**< set by conf_sse_finish() */
    char *last_event_id;     /**< as the spec keeps it (persists across events) */
    /* private */
    struct qk_buf _line;
    struct qk_buf _data;
    char *_type;
    bool _data_seen;
    bool _after_cr;
    bool _first_line;
    size_t _alloc;
};

/** Prepares an empty parser. */
void conf_sse_init(struct conf_sse_parser *p);
/** Feeds received bytes (any split); events completed by them get @p now_ms.
 *  @return false on out-of-memory or an absurdly long line (over 1 MiB). */
bool conf_sse_feed(struct conf_sse_parser *p, const char *bytes, size_t len, int64_t now_ms);
/** Marks the end of the stream: an event without its blank line is discarded. */
void conf_sse_finish(struct conf_sse_parser *p);
/** Frees everything the parser holds. */
void conf_sse_free(struct conf_sse_parser *p);

/** @return true when @p s[0..len) is well-formed UTF-8 (no overlongs/surrogates). */
bool conf_utf8_valid(const char *s, size_t len);

/** @return the length of the well-formed UTF-8 sequence at @p s (at most @p len bytes),
 *  or 0 when none starts there. */
size_t conf_utf8_sequence(const char *s, size_t len);

#endif
