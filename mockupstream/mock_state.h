/* Per-token state of the mock: queued steps, revocation, and the bounded journal.
 * One mutex guards it all; every call is thread-safe. */
#ifndef MOCK_STATE_H
#define MOCK_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mock_scenario.h"
#include "qwenkit/common.h"

struct mock_state;

/** New empty state keeping at most @p per_token / @p total journal entries.
 *  Caller frees with mock_state_free(). NULL on OOM. */
struct mock_state *mock_state_new(size_t per_token, size_t total);
void mock_state_free(struct mock_state *st);

/** Appends the steps of every scenario in @p list to their queues. Takes the steps
 *  out of @p list (the caller still frees the list itself). @return steps queued. */
size_t mock_state_queue(struct mock_state *st, struct mock_scenario *list);

/** Pops the next step for @p token on @p route (its own queue first, then "any").
 *  @return a step the caller frees with mock_step_free(), or NULL. */
struct mock_step *mock_state_take_step(struct mock_state *st, const char *token,
                                       enum mock_route route);

/** Later requests with @p token get 401, each after @p delay_ms (0: at once). */
void mock_state_revoke(struct mock_state *st, const char *token, int delay_ms);
/** @return whether @p token is revoked; *@p delay_ms (may be NULL): its 401's delay. */
bool mock_state_is_revoked(struct mock_state *st, const char *token, int *delay_ms);

/** Records one journal entry (a JSON object text) under @p key; takes @p entry_json
 *  (malloc'd) in all cases. Drops the oldest entries beyond the bounds. */
void mock_state_journal_add(struct mock_state *st, const char *key, char *entry_json);

/** Like mock_state_journal_add(), but keeps the token's entries ordered by @p seq (the
 *  order requests were received), whatever order they finish in. */
void mock_state_journal_add_seq(struct mock_state *st, const char *key, unsigned long seq,
                                char *entry_json);

/**
 * A request between mock_state_request_begin() and mock_state_request_end(): what the
 * journal's searches see of it while it is in flight, and what they match its entry on
 * afterwards. The caller embeds it in its per-request state and fills the public fields
 * before begin; the state borrows them (they must stay valid and unchanged) until end,
 * and copies what the entry needs. The `_` fields are the state's: use the API.
 */
struct mock_flight {
    const char *key;     /**< journal key: bearer token, raw Authorization, or "" */
    int64_t received_ms; /**< CLOCK_MONOTONIC ms when the request's headers arrived */
    const char *auth;    /**< every raw Authorization value in order, each ended by a NUL
                              ("Bearer a\0bearer b\0"); NULL with auth_len 0 when none */
    size_t auth_len;     /**< bytes of @c auth, the NULs included */
    struct mock_flight *_prev, *_next; /* the state's list of requests in flight */
    bool _counted;                     /* on that list (false after a reset) */
};

/** Counts @p f as in flight until mock_state_request_end(): the journal shows it, so a
 *  reader can tell a settled journal from one about to grow. Borrows @p f until then. */
void mock_state_request_begin(struct mock_state *st, struct mock_flight *f);

/** Journals a request begun with mock_state_request_begin() (as journal_add_seq(), with
 *  @p f's time and Authorization values for the searches; takes @p entry_json, which may
 *  be NULL to only end the request) and ends it, atomically. */
void mock_state_request_end(struct mock_state *st, struct mock_flight *f, unsigned long seq,
                            char *entry_json);

/** @return `{"token":FP,"in_flight":N,"entries":[...]}` for @p key, malloc'd, caller
 *  frees. `in_flight` counts requests received but not yet journaled. */
char *mock_state_journal_json(struct mock_state *st, const char *key);

/** Default and largest `limit` of a journal search. */
#define MOCK_SEARCH_LIMIT_DEFAULT 256
#define MOCK_SEARCH_LIMIT_MAX 1000000

/**
 * A search over every retained journal entry, whatever its key (GET /__mock/journal with
 * search parameters). Every condition set must hold. Fill with mock_journal_query_init()
 * and mock_journal_query_set(); the strings are borrowed.
 */
struct mock_journal_query {
    const char *contains;  /**< some Authorization value contains it; NULL = no condition */
    int64_t since_ms;      /**< received_ms >= since_ms (INT64_MIN = no bound) */
    int64_t until_ms;      /**< received_ms <= until_ms (INT64_MAX = no bound) */
    const char *not_token; /**< the request did not carry exactly one Authorization header
                                of exactly "Bearer <not_token>"; NULL = no condition */
    size_t limit;          /**< most entries answered: the latest matches */
    unsigned _given;       /* parameters seen, to refuse repeats */
};

/** An empty query: no condition, the default limit. */
void mock_journal_query_init(struct mock_journal_query *q);

/**
 * Sets query parameter @p name (`contains`, `since_ms`, `until_ms`, `not_token`,
 * `limit`) from its text @p value (NULL when the parameter had no `=`), borrowing it.
 * @return QK_OK, or QK_INVALID with the parameter's name in @p field and what is wrong
 *         in @p msg (unknown name, given twice, empty, not a non-negative integer, ...).
 */
QK_WUR enum qk_err mock_journal_query_set(struct mock_journal_query *q, const char *name,
                                          const char *value, char *field, size_t field_len,
                                          char *msg, size_t msg_len);

/** Checks the query as a whole (a condition is given; until_ms >= since_ms).
 *  @return QK_OK or QK_INVALID with @p field and @p msg as mock_journal_query_set(). */
QK_WUR enum qk_err mock_journal_query_check(const struct mock_journal_query *q, char *field,
                                            size_t field_len, char *msg, size_t msg_len);

/**
 * @return `{"in_flight":N,"matched":M,"truncated":B,"entries":[...]}`: the latest
 * `limit` of the M matching entries, oldest (first received) first; `in_flight` counts
 * the matching requests received but not yet journaled; `truncated` is M > limit.
 * Malloc'd, caller frees; NULL on OOM. The work is one pass over the journal, which
 * holds at most its total bound, and over the requests in flight.
 */
char *mock_state_journal_search(struct mock_state *st, const struct mock_journal_query *q);

/** Forgets every step, journal entry and revocation. */
void mock_state_reset(struct mock_state *st);

/** Number of journal entries held in all (for tests of the bound). */
size_t mock_state_journal_total(struct mock_state *st);

#endif
