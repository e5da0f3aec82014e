/**
 * @file retry.h
 * @brief Retry policy: which upstream answers are retried, when, and what ends a request.
 *
 * Pure functions (no I/O, no clock, no global state, randomness passed in) so every rule
 * of RETRY-1..8 is unit-testable; which failures are retried is the data of
 * struct qp_retry_rules, given with the policy. The forwarder gathers the facts of one
 * attempt and asks qp_retry_decide().
 */
#ifndef QP_RETRY_H
#define QP_RETRY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/** How the transport of one attempt ended (independent of the HTTP status). */
enum qp_transport {
    QP_TRANSPORT_OK = 0,      /**< an HTTP answer arrived */
    QP_TRANSPORT_CONNECT = 1, /**< refused, unresolvable, unreachable */
    QP_TRANSPORT_TIMEOUT = 2, /**< the attempt's time limit passed */
    QP_TRANSPORT_BROKEN = 3,  /**< reset, truncated, malformed HTTP */
    QP_TRANSPORT_TOO_BIG = 4, /**< the answer exceeded our buffer limit (not retried) */
};

/** What one attempt produced. */
struct qp_attempt_facts {
    enum qp_transport transport;
    long status;            /**< HTTP status, 0 without an answer */
    bool html;              /**< Content-Type is text/html (a WAF, captcha or gateway page) */
    bool body_unusable;     /**< a 2xx whose body the route cannot use (bad model list) */
    int64_t retry_after_ms; /**< parsed Retry-After, -1 when absent */
};

/** How one kind of failed answer is treated. */
enum qp_retry_rule {
    QP_RULE_FINAL = 0,       /**< never retried: relayed as it is */
    QP_RULE_RETRY = 1,       /**< retried */
    QP_RULE_UNLESS_LATE = 2, /**< retried, unless its Retry-After asks for more than the cap */
    QP_RULE_IF_TOLD = 3,     /**< retried only when a Retry-After within the cap says when */
};

/** One row of the status table. */
struct qp_retry_status_rule {
    long status;
    enum qp_retry_rule rule;
};

enum { QP_RETRY_STATUS_ROWS = 10 };

/** What is retried and how long to wait: the rules RETRY-2, -4, -5 and -6 describe. */
struct qp_retry_rules {
    enum qp_retry_rule transport; /**< connect, timeout, broken: no answer (RETRY-5) */
    bool html_fails;              /**< an HTML page is a failure whatever its status (RETRY-2) */
    bool retry_after_waits;       /**< a Retry-After beyond the backoff sets the wait (RETRY-6) */
    /** Statuses with a rule; any other is final (a 2xx whose body is unusable is retried). */
    struct qp_retry_status_rule statuses[QP_RETRY_STATUS_ROWS];
};

/** The proxy's rules (see retry.c). */
extern const struct qp_retry_rules qp_retry_rules_default;

/** Settings of the policy (from the proxy configuration). */
struct qp_retry_policy {
    unsigned max_retries;       /**< retries after the first attempt */
    unsigned base_ms;           /**< first backoff step */
    int64_t retry_after_cap_ms; /**< longest Retry-After waited for */
    /** Borrowed, outliving the policy; NULL means &qp_retry_rules_default. */
    const struct qp_retry_rules *rules;
};

/** What to do after an attempt. */
enum qp_next {
    QP_NEXT_SUCCESS = 0,   /**< relay the answer */
    QP_NEXT_RETRY = 1,     /**< try again after delay_ms */
    QP_NEXT_RELAY = 2,     /**< final, not retryable: relay the upstream status (as JSON) */
    QP_NEXT_EXHAUSTED = 3, /**< retryable but out of attempts: 502 (504 after a timeout) */
    QP_NEXT_DEADLINE = 4,  /**< the next attempt would start past the deadline: 504 */
};

/** The decision and its delay. */
struct qp_decision {
    enum qp_next next;
    int64_t delay_ms; /**< for QP_NEXT_RETRY */
};

/** @return true when @p f is a usable answer (2xx, not HTML, body usable). */
bool qp_retry_is_success(const struct qp_retry_policy *p, const struct qp_attempt_facts *f);

/** @return true when @p f is a failure worth another attempt (ignoring counts and time). */
bool qp_retry_is_retryable(const struct qp_retry_policy *p, const struct qp_attempt_facts *f);

/**
 * Jittered exponential backoff before retry number @p retry (1 = first retry):
 * base * 2^(retry-1), capped at 30 s, then a uniform pick in [half, full] from @p rnd.
 */
int64_t qp_retry_backoff_ms(unsigned base_ms, unsigned retry, uint32_t rnd);

/**
 * Decides what follows attempt number @p attempts (1-based) that produced @p f.
 * @param now_ms, deadline_ms monotonic times; the next attempt must start before the deadline.
 * @param rnd a random number for the jitter.
 */
struct qp_decision qp_retry_decide(const struct qp_retry_policy *p,
                                   const struct qp_attempt_facts *f, unsigned attempts,
                                   int64_t now_ms, int64_t deadline_ms, uint32_t rnd);

/**
 * Parses a Retry-After value: delta seconds or an HTTP date (relative to @p now_wall).
 * @return milliseconds (0 for a date in the past), or -1 when the value is not valid.
 */
int64_t qp_retry_after_parse(const char *value, time_t now_wall);

#endif
