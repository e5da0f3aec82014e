/* Checked conversions of what comes from outside the mock: JSON numbers to integers, and
 * bytes to text that is safe to log. */
#ifndef MOCK_CHECK_H
#define MOCK_CHECK_H

#include <stddef.h>

#include "qwenkit/buf.h"

struct cJSON;

/** Outcome of mock_json_int_in_range(). */
enum mock_int_check {
    MOCK_INT_OK = 0,
    MOCK_INT_NOT_NUMBER,  /**< not a JSON number */
    MOCK_INT_NOT_INTEGER, /**< within the range but with a fraction */
    MOCK_INT_BELOW,       /**< less than the lower bound (however far) */
    MOCK_INT_ABOVE,       /**< greater than the upper bound (however far) */
};

/** Largest bound mock_json_int_in_range() takes: every integer up to it is a double. */
#define MOCK_JSON_INT_BOUND (1LL << 53)

/**
 * Reads @p item (borrowed, may be NULL) as an integer in [@p lo, @p hi]. The double is
 * compared with the bounds before it is converted, so a value no integer type holds
 * (1e300) is reported as out of range rather than converted (undefined behaviour).
 * The bounds must lie within +-MOCK_JSON_INT_BOUND. Sets *@p out only on MOCK_INT_OK.
 */
enum mock_int_check mock_json_int_in_range(const struct cJSON *item, long long lo, long long hi,
                                           long long *out);

/**
 * Appends @p s to @p out with control characters (C0, DEL, the C1 range), backslashes
 * and bytes that are not UTF-8 written as \xNN: a logged value stays on its own line
 * and cannot drive a terminal. Stops quietly at @p out's cap (a log line may be cut).
 */
void mock_log_escape(struct qk_buf *out, const char *s);

/**
 * Appends the text of a chat message's @p content (borrowed, may be NULL) to @p out: a
 * string as it is, or the `text` items of an array. A string over @p out's cap leaves
 * @p out empty (answered as an empty message); array items stop at the cap.
 */
void mock_content_text(const struct cJSON *content, struct qk_buf *out);

#endif
