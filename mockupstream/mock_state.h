/* Per-token state of the mock: queued steps, revocation, and the bounded journal.
 * One mutex guards it all; every call is thread-safe. */
#ifndef MOCK_STATE_H
#define MOCK_STATE_H

#include <stdbool.h>
#include <stddef.h>

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

void mock_state_revoke(struct mock_state *st, const char *token);
bool mock_state_is_revoked(struct mock_state *st, const char *token);

/** Records one journal entry (a JSON object text) under @p key; takes @p entry_json
 *  (malloc'd) in all cases. Drops the oldest entries beyond the bounds. */
void mock_state_journal_add(struct mock_state *st, const char *key, char *entry_json);

/** Like mock_state_journal_add(), but keeps the token's entries ordered by @p seq (the
 *  order requests were received), whatever order they finish in. */
void mock_state_journal_add_seq(struct mock_state *st, const char *key, unsigned long seq,
                                char *entry_json);

/** Counts a request from @p key as in flight until mock_state_request_end(): the journal
 *  shows it, so a reader can tell a settled journal from one about to grow. */
void mock_state_request_begin(struct mock_state *st, const char *key);

/** Journals a request begun with mock_state_request_begin() (as journal_add_seq(); takes
 *  @p entry_json, which may be NULL to only end the request) and ends it, atomically. */
void mock_state_request_end(struct mock_state *st, const char *key, unsigned long seq,
                            char *entry_json);

/** @return `{"token":FP,"in_flight":N,"entries":[...]}` for @p key, malloc'd, caller
 *  frees. `in_flight` counts requests received but not yet journaled. */
char *mock_state_journal_json(struct mock_state *st, const char *key);

/** Forgets every step, journal entry and revocation. */
void mock_state_reset(struct mock_state *st);

/** Number of journal entries held in all (for tests of the bound). */
size_t mock_state_journal_total(struct mock_state *st);

#endif
