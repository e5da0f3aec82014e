/*
 * What the server (mock_server.c), its responses (mock_response.c), the control API
 * (mock_control.c) and each upstream dialect (api_v1.c, ...) share: the server and
 * per-request state, the route table, and the response helpers.
 *
 * A dialect is one file that defines a route table (struct mock_route_row rows) and
 * its handlers; mock_server.c lists the tables it serves. The server does what every
 * route shares (404/405/413, the credential, revocation, taking the step, delay_ms)
 * before it calls the row's handler.
 */
#ifndef MOCK_HTTP_H
#define MOCK_HTTP_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mock_chats.h"
#include "mock_scenario.h"
#include "mock_state.h"
#include "mock_stream.h"
#include "mock_timer.h"
#include "qwenkit/buf.h"
#include "qwenkit/mock.h"

/** The server. Fields after `port` are shared by the MHD threads (atomics). */
struct qk_mock {
    struct qk_mock_config cfg;
    struct MHD_Daemon *daemon;
    struct mock_timer *timer;
    struct mock_state *state;
    struct mock_chats *chats; /* the v2 dialect's chats */
    struct mock_stream_opts stream_defaults;
    uint16_t port;
    atomic_int connections;
    atomic_int streams;
    atomic_int suspended;
    atomic_bool stopping;
    atomic_ulong seq;
};

enum mock_req_phase { MOCK_PHASE_NEW = 0, MOCK_PHASE_DELAYED, MOCK_PHASE_ANSWERED };

struct mock_route_row;
struct mock_route_table;

/** Whose words a route's shared failures (401, its step's in-band payload) are in. */
enum mock_dialect { MOCK_DIALECT_V1 = 0, MOCK_DIALECT_V2 };

/**
 * One request, from the access handler's first call to on_completed(), which alone
 * frees it (and everything it owns).
 */
struct mock_req {
    struct qk_mock *mock;
    struct MHD_Connection *conn;
    unsigned long seq;
    int64_t received_ms;
    char method[16];
    char *path;                       /* owned */
    bool control;                     /* /__mock/... : not journaled */
    const struct mock_route_row *row; /* the API route of path and method, or NULL */
    enum mock_dialect dialect;        /* of the table that knows the path */
    char allow[32];                   /* the path's methods (a 405's Allow), or "" */
    char *key;                 /* owned: journal key: the bearer token, raw Authorization, or "" */
    cJSON *headers;            /* owned: [{name,value}] as received */
    struct qk_buf auth;        /* every Authorization value, each ended by a NUL */
    struct mock_flight flight; /* borrows key and auth while in flight */
    struct qk_buf query;
    struct qk_buf body;
    bool body_too_big;
    struct mock_step *step;      /* owned: the scripted step this request took, or NULL */
    cJSON *answer;               /* owned: what a v2 completion produced (journal), or NULL */
    char chat_id[MOCK_UUID_LEN]; /* the v2 chat this request answers in, "" when none */
    bool chat_begun;             /* it holds the chat's answering flag until completed */
    enum mock_req_phase phase;
    unsigned status;
    size_t bytes_sent;
    bool client_gone;
    bool revoked; /* the token is revoked: the delayed answer is its 401 */
    bool deliberate_close;
    /* streaming */
    struct mock_plan plan;
    bool streaming;
    size_t write_idx, write_off;
    int64_t next_due_ms;
    int64_t stall_until_ms;
    struct qk_buf event_ms; /* JSON array body: "12,15,..." */
    size_t events_sent;
};

/** Answers @p r; called once its body is complete (and again after a suspend). */
typedef enum MHD_Result (*mock_handler_fn)(struct mock_req *r);

/** One route: requests for @p path with @p method go to @p handler, and take their
 *  scripted steps from the @p route queues (an API route; control rows ignore it). */
struct mock_route_row {
    const char *path;
    const char *method;
    enum mock_route route;
    mock_handler_fn handler;
};

/** A dialect's or the control API's routes (static tables). */
struct mock_route_table {
    const struct mock_route_row *rows;
    size_t count;
    enum mock_dialect dialect;
};

/** The v1 web-chat API (api_v1.c). */
extern const struct mock_route_table mock_api_v1;
/** The v2 web-chat API (api_v2.c). */
extern const struct mock_route_table mock_api_v2;
/** The control API under /__mock (mock_control.c); paths without the prefix. */
extern const struct mock_route_table mock_control_api;

/**
 * The row of @p table for @p path and @p method, or NULL. Writes the methods of @p path
 * into @p allow ("GET", "GET, POST": a 405's Allow header), "" when no row has the path.
 */
const struct mock_route_row *mock_route_find(const struct mock_route_table *table, const char *path,
                                             const char *method, char *allow, size_t allow_len);

/* ---- responses (mock_response.c): each queues the answer and marks r answered ---- */

/** @p body (copied) with status and type, the step's headers and r->allow on a 405. */
enum MHD_Result mock_send_buffer(struct mock_req *r, unsigned status, const char *ctype,
                                 const char *body, size_t len);
/** @p json (copied) as application/json. */
enum MHD_Result mock_send_json(struct mock_req *r, unsigned status, const char *json);
/** The upstream's error shape: {"detail": "..."}. */
enum MHD_Result mock_send_detail(struct mock_req *r, unsigned status, const char *detail);
/** The control API's error: 400 {"error": "...", "field": "..."}. */
enum MHD_Result mock_send_control_error(struct mock_req *r, const char *field, const char *msg);
/** Streams r->plan (built by the caller, owned by r) with Content-Type @p ctype. */
enum MHD_Result mock_send_plan(struct mock_req *r, const char *ctype);

/** The step's faults every route of a dialect shares: a dropped connection, an HTML page,
 *  a status, an in-band failure (in r->dialect's shape). @return true with *@p ret set
 *  when the step answered; false when the route answers normally. */
bool mock_apply_step(struct mock_req *r, enum MHD_Result *ret);

/** Suspends the connection until @p due_ms; the timer resumes it. */
void mock_suspend_until(struct mock_req *r, int64_t due_ms);
/** True when the client has closed its side (a FIN is waiting to be read). */
bool mock_peer_gone(struct mock_req *r);

/** Writes "qwen-mock: " and @p fmt to stderr in one write, each %s an argument escaped
 *  by mock_log_escape(); @p fmt holds only %s conversions, one per argument. */
void mock_log_line(const char *fmt, ...);

#endif
