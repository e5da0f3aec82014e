/*
 * Fuzz target: the conformance suite's own SSE parser (conformance/conf_sse.c).
 *
 * Oracle: the events the suite judges do not depend on how the proxy's bytes were split
 * into reads. The stream is fed whole, in fuzzer-chosen pieces and one byte at a time
 * (see fuzz_split.h); events (type, data, length), counters, last event id and
 * ended_inside_event must agree. Each result must also hold what the WHATWG rules
 * promise: no CR in any data, no CR or LF in a type or an id, data NUL-terminated at
 * data_len, event times never going back. The UTF-8 helpers are checked on every
 * event's data (exact-size copies): conf_utf8_valid() agrees with a walk over
 * conf_utf8_sequence(), which never claims more bytes than it was given.
 *
 * Flags (byte 0): bit 0 finishes the stream with conf_sse_finish().
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf_sse.h"
#include "fuzz_split.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what, size_t event)
{
    fprintf(stderr, "fuzz_conf_sse: %s (event %zu)\n", what, event);
    abort();
}

static bool
run(const struct fuzz_split *s, enum fuzz_feed how, struct conf_sse_parser *p)
{
    conf_sse_init(p);
    bool ok = true;
    size_t pieces = fuzz_split_pieces(s, how);
    for (size_t i = 0; i < pieces && ok; i++) {
        size_t len = 0;
        char *piece = fuzz_split_piece(s, how, i, &len);
        ok = conf_sse_feed(p, piece, len, (int64_t)i);
        free(piece);
    }
    if (ok && (s->flags & 1))
        conf_sse_finish(p);
    return ok;
}

static bool
has_eol(const char *s, bool lf_too)
{
    return s && (strchr(s, '\r') || (lf_too && strchr(s, '\n')));
}

static void
check_utf8(const char *data, size_t len, size_t event)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, data, len);
    bool walked = true;
    for (size_t i = 0; i <= len;) {
        size_t n = conf_utf8_sequence(copy + i, len - i);
        if (n > len - i)
            fail("conf_utf8_sequence claims bytes past the end", event);
        if (i == len)
            break; /* the empty rest: asked above with length 0, must not be read */
        if (n == 0) {
            walked = false;
            break;
        }
        i += n;
    }
    if (conf_utf8_valid(copy, len) != walked)
        fail("conf_utf8_valid disagrees with conf_utf8_sequence", event);
    free(copy);
}

static void
check_promises(const struct conf_sse_parser *p)
{
    int64_t last_at = 0;
    for (size_t i = 0; i < p->n_events; i++) {
        const struct conf_sse_event *e = &p->events[i];
        if (!e->type || !e->data || e->data[e->data_len] != '\0')
            fail("event strings missing or not terminated at data_len", i);
        if (memchr(e->data, '\r', e->data_len))
            fail("CR inside event data", i);
        if (has_eol(e->type, true))
            fail("CR or LF inside event type", i);
        if (e->at_ms < last_at)
            fail("event time goes back", i);
        last_at = e->at_ms;
        check_utf8(e->data, e->data_len, i);
    }
    if (has_eol(p->last_event_id, true))
        fail("CR or LF inside the last event id", 0);
}

static bool
same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void
compare(const char *how, bool ok_a, const struct conf_sse_parser *a, bool ok_b,
        const struct conf_sse_parser *b)
{
    bool same = ok_a == ok_b && a->n_events == b->n_events && a->comments == b->comments &&
                a->other_fields == b->other_fields && a->empty_dispatches == b->empty_dispatches &&
                a->ended_inside_event == b->ended_inside_event &&
                same_str(a->last_event_id, b->last_event_id);
    for (size_t i = 0; same && i < a->n_events; i++) {
        const struct conf_sse_event *x = &a->events[i], *y = &b->events[i];
        same = strcmp(x->type, y->type) == 0 && x->data_len == y->data_len &&
               memcmp(x->data, y->data, x->data_len) == 0;
    }
    if (!same) {
        fprintf(stderr,
                "fuzz_conf_sse: events depend on the split (%s)\n"
                "whole: ok=%d events=%zu comments=%zu other=%zu empty=%zu inside=%d\n"
                "split: ok=%d events=%zu comments=%zu other=%zu empty=%zu inside=%d\n",
                how, ok_a, a->n_events, a->comments, a->other_fields, a->empty_dispatches,
                a->ended_inside_event, ok_b, b->n_events, b->comments, b->other_fields,
                b->empty_dispatches, b->ended_inside_event);
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_split s;
    if (!fuzz_split_decode(data, size, &s))
        return 0;
    struct conf_sse_parser whole, cut, bytes;
    bool ok_whole = run(&s, FUZZ_WHOLE, &whole);
    check_promises(&whole);
    bool ok_cut = run(&s, FUZZ_CUTS, &cut);
    check_promises(&cut);
    compare("fuzzer's cut points", ok_whole, &whole, ok_cut, &cut);
    bool ok_bytes = run(&s, FUZZ_BYTES, &bytes);
    check_promises(&bytes);
    compare("one byte per read", ok_whole, &whole, ok_bytes, &bytes);
    conf_sse_free(&whole);
    conf_sse_free(&cut);
    conf_sse_free(&bytes);
    return 0;
}
