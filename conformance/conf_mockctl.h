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
 * @param[out] out the parsed answer `{"token":..., "entries":[...]}`; caller frees with
 *                 cJSON_Delete().
 */
QK_WUR enum qk_err conf_mock_journal(const char *mock_url, const char *token, cJSON **out,
                                     char *err, size_t errlen);

/** Revokes @p token: later upstream requests with it get 401. */
QK_WUR enum qk_err conf_mock_revoke(const char *mock_url, const char *token, char *err,
                                    size_t errlen);

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
/** @return the value of the first request header named @p name (case-insensitive), or NULL. */
const char *conf_entry_header(const cJSON *entry, const char *name);
/** @return how many request headers are named @p name. */
size_t conf_entry_header_count(const cJSON *entry, const char *name);

#endif
