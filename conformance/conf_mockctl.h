/**
 * @file conf_mockctl.h
 * @brief The mock upstream's control API (mockupstream/README.md), seen from the suite.
 *
 * The mock's journal is the suite's oracle: it says how many upstream attempts a request
 * caused, with which headers and body, and when.
 */
#ifndef CONF_MOCKCTL_H
#define CONF_MOCKCTL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qwenkit/common.h"

/**
 * Queues fault-injection steps for @p token on @p route ("models", "chat" or "any").
 * @param steps_json a JSON array of step objects (borrowed).
 * @param[out] queued how many steps the mock accepted.
 */
QK_WUR enum qk_err conf_mock_queue(const char *mock_url, const char *token, const char *route,
                                   const char *steps_json, size_t *queued, char *err,
                                   size_t errlen);

/**
 * Reads the journal of @p token (an empty token reads requests that carried none).
 * @param[out] out the parsed answer `{"token":..., "in_flight":N, "entries":[...]}`;
 *                 caller frees with cJSON_Delete().
 */
QK_WUR enum qk_err conf_mock_journal(const char *mock_url, const char *token, cJSON **out,
                                     char *err, size_t errlen);

/**
 * A search over every entry the mock still holds, whatever token it is filed under
 * (mockupstream/README.md, "Searching the journal"). Every condition set must hold, and at
 * least one of the first four must be set. A zero-initialised struct sets none.
 */
struct conf_journal_search {
    const char *contains;  /**< some Authorization value (any header of that name, any
                                case) contains it; NULL or "" = no condition */
    int64_t since_ms;      /**< received_ms >= since_ms (CLOCK_MONOTONIC); 0 = no bound */
    int64_t until_ms;      /**< received_ms <= until_ms; 0 = no bound */
    const char *not_token; /**< the request did not carry exactly one `Authorization:
                                Bearer <not_token>` (another credential, an altered one,
                                several, or none); NULL or "" = no condition */
    size_t limit;          /**< most entries answered, the latest; 0 = the mock's default */
};

/**
 * Searches the journal. Strings in @p q are borrowed and URL-encoded here.
 * @param[out] out the parsed answer `{"in_flight":N,"matched":M,"truncated":B,
 *                 "entries":[...]}`, entries oldest first, each with its raw
 *                 `authorization` values; caller frees with cJSON_Delete(). NULL on error.
 * @return QK_OK; QK_INVALID when @p q sets no condition or the mock refuses it (its
 *         400 names the parameter, copied into @p err); QK_IO when the mock is unreachable.
 */
QK_WUR enum qk_err conf_mock_journal_search(const char *mock_url,
                                            const struct conf_journal_search *q, cJSON **out,
                                            char *err, size_t errlen);

/** conf_mock_journal_search() for the requests whose Authorization contains @p needle
 *  (borrowed): every request that carried the caller's token, in whatever form.
 *  @p out as there (caller frees with cJSON_Delete()). */
QK_WUR enum qk_err conf_mock_journal_containing(const char *mock_url, const char *needle,
                                                cJSON **out, char *err, size_t errlen);

/** conf_mock_journal_search() for the requests received in [@p since_ms, @p until_ms]
 *  that did not carry exactly `Authorization: Bearer <not_token>` (NULL: all of them).
 *  @p out as there (caller frees with cJSON_Delete()). */
QK_WUR enum qk_err conf_mock_journal_window(const char *mock_url, int64_t since_ms,
                                            int64_t until_ms, const char *not_token, cJSON **out,
                                            char *err, size_t errlen);

/* Accessors of a journal answer (per token or a search). */

/** @return the answer's "in_flight" (requests received, not journaled yet), -1 when absent. */
long conf_journal_in_flight(const cJSON *journal);
/** @return a search answer's "matched" (matches in all, beyond `limit` too), -1 when absent. */
long conf_journal_matched(const cJSON *journal);
/** @return true when a search answer was cut to its `limit`. */
int conf_journal_truncated(const cJSON *journal);

/** Revokes @p token: later upstream requests with it get 401, each after @p delay_ms. */
QK_WUR enum qk_err conf_mock_revoke(const char *mock_url, const char *token, int delay_ms,
                                    char *err, size_t errlen);

/** Forgets every step, journal entry and revocation. */
QK_WUR enum qk_err conf_mock_reset(const char *mock_url, char *err, size_t errlen);

/** Checks that the mock answers its health route. */
QK_WUR enum qk_err conf_mock_health(const char *mock_url, char *err, size_t errlen);

/* Accessors of one journal entry (a cJSON object of the "entries" array). */

/** @return the entry's "status", or 0 when absent. */
long conf_entry_status(const cJSON *entry);
/** @return the entry's "path" ("" when absent). */
const char *conf_entry_path(const cJSON *entry);
/** @return the entry's request "body" ("" when absent). */
const char *conf_entry_body(const cJSON *entry);
/** @return "received_ms" / "finished_ms" (CLOCK_MONOTONIC), -1 when absent. */
int64_t conf_entry_received_ms(const cJSON *entry);
int64_t conf_entry_finished_ms(const cJSON *entry);
/** @return true when a fault-injection step was applied to this request. */
int conf_entry_had_step(const cJSON *entry);
/** @return the request's query string without '?' ("" when absent: v2's `chat_id=ID`). */
const char *conf_entry_query(const cJSON *entry);
/**
 * @return true when the mock's answer to the request was a failure: a status other than
 * 2xx, or at 2xx a scripted firewall page, in-band refusal, drop, or body without
 * `success:true` (a v2 chat creation that failed).
 */
bool conf_entry_answer_failed(const cJSON *entry);
/** @return what the mock produced for a v2 completion: `{"text","reasoning":[...],
 *  "response_id","chat_id"}` (borrowed from @p entry), or NULL (v1, or no answer). */
const cJSON *conf_entry_answer(const cJSON *entry);
/** @return the `chat_id` value of the entry's query (borrowed copy in @p buf), or NULL. */
const char *conf_entry_chat_id(const cJSON *entry, char *buf, size_t len);

/**
 * @return the array of model objects of a model-list answer in any of the upstream's
 * shapes: `{"data":[...]}` (v1), `{"success":true,"data":{"data":[...]}}` or
 * `{"data":{"models":[...]}}` (v2), borrowed from @p answer; NULL when none.
 */
const cJSON *conf_model_array(const cJSON *answer);

/** @return the value of the first request header named @p name (case-insensitive), or NULL. */
const char *conf_entry_header(const cJSON *entry, const char *name);
/** @return how many request headers are named @p name. */
size_t conf_entry_header_count(const cJSON *entry, const char *name);
/** @return the value of the @p i-th (from 0) request header named @p name
 *  (case-insensitive), borrowed from @p entry, or NULL when there are not that many. */
const char *conf_entry_header_nth(const cJSON *entry, const char *name, size_t i);
/** @return how many cookies named `token` the request's Cookie headers carry, all of
 *  them counted; @p callers (may be NULL) is set when there is one or more and every one
 *  is `token=` @p token exactly. */
size_t conf_entry_token_cookies(const cJSON *entry, const char *token, bool *callers);
/**
 * @return true when the request carries @p token as the caller's credential: exactly one
 * `Authorization: Bearer <token>`, or, with @p cookie_too (the v2 dialect, whose browser
 * sends only the cookie) and no `Authorization` at all, exactly one cookie `token=<token>`
 * (among any other cookies).
 */
bool conf_entry_credential_is(const cJSON *entry, const char *token, bool cookie_too);
/** @return the journal key's fingerprint ("t:1a2b3c4d", "-" for no token; "" when absent). */
const char *conf_entry_token_fp(const cJSON *entry);

/* More accessors of one entry, so that tests read no journal field by its JSON name. */

/** @return the request's method ("" when absent). */
const char *conf_entry_method(const cJSON *entry);
/** @return how many request headers the entry holds, whatever their names. */
size_t conf_entry_header_total(const cJSON *entry);
/** The @p i-th (from 0) request header in arrival order: @p name and @p value borrowed from
 *  @p entry, each NULL when it is not a string. @return false when there are not that many. */
bool conf_entry_header_at(const cJSON *entry, size_t i, const char **name, const char **value);
/** @return true when the mock saw the proxy hang up before the answer ended. */
bool conf_entry_client_gone(const cJSON *entry);
/** @return how many stream events the mock sent. */
size_t conf_entry_event_count(const cJSON *entry);
/** @return when the mock sent event @p k (from 0; CLOCK_MONOTONIC ms), -1 when absent. */
int64_t conf_entry_event_ms(const cJSON *entry, size_t k);

#endif
