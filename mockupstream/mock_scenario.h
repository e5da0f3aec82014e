/* Fault-injection scenarios: parsing and validating the control JSON into steps. */
#ifndef MOCK_SCENARIO_H
#define MOCK_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>

#include "mock_fixtures.h"
#include "mock_stream.h"
#include "qwenkit/common.h"

/* The scripted routes: a step queued on one is taken by every path of that route, in any
 * dialect (`models`: /api/models and /api/v2/models/; `chat`: both completion paths). */
enum mock_route {
    MOCK_ROUTE_MODELS = 0,
    MOCK_ROUTE_CHAT,
    MOCK_ROUTE_CHATS_NEW,
    MOCK_ROUTE_ANY,
    MOCK_ROUTE_COUNT
};

/** One queued step: what the next matching request gets. */
struct mock_step {
    struct mock_step *next; /* queue link */
    bool ok;
    unsigned status;       /* 0 = none */
    char *body;            /* owned, may be NULL */
    char *content_type;    /* owned, may be NULL */
    struct cJSON *headers; /* owned, may be NULL: extra response headers {name: value} */
    int retry_after;       /* -1 = none */
    enum mock_html html;
    enum mock_inband inband;
    bool inband_sse; /* a v2 path sends the in-band payload as one SSE event */
    int delay_ms;
    bool drop;
    int times; /* requests it answers before it leaves the queue; 0 (not given) means 1 */
    bool has_stream;
    struct mock_stream_opts stream; /* meaningful when has_stream */
    char *json;                     /* owned: the step as given, for the journal */
};

/** One parsed scenario: steps for (token, route). Owns token and steps. */
struct mock_scenario {
    struct mock_scenario *next;
    char *token;
    enum mock_route route;
    struct mock_step *steps; /* linked in order */
    size_t n_steps;
};

/**
 * Parses a scenario object or an array of them. Stream options a step does not
 * set come from @p defaults (the server's options). On success *out is a new list the
 * caller frees with mock_scenario_free(). On QK_INVALID, @p field receives the path
 * of the offending field ("[1].steps[0].stream.chunks") and @p msg what is wrong.
 */
QK_WUR enum qk_err mock_scenario_parse(const char *json, size_t len,
                                       const struct mock_stream_opts *defaults,
                                       struct mock_scenario **out, char *field, size_t field_len,
                                       char *msg, size_t msg_len);

/** Frees a list of scenarios with their steps. NULL-safe. */
void mock_scenario_free(struct mock_scenario *list);

/** A copy of @p step that answers one request, unlinked; the caller frees it with
 * mock_step_free(). NULL when out of memory. */
struct mock_step *mock_step_copy(const struct mock_step *step);

/** Frees one step. NULL-safe. */
void mock_step_free(struct mock_step *step);

/** "models", "chat", "chats_new", "any". */
const char *mock_route_name(enum mock_route r);

#endif
