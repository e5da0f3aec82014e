#include "retry.h"

#include <curl/curl.h>
#include <stddef.h>

/* Statuses the upstream answers when it may do better on a second try: 500 and the
 * gateway failures; 503 and 429 when a Retry-After says when (a 503 without one is an
 * ordinary gateway failure, a 429 without one is relayed so that the client's own rate
 * limiting applies). The client errors are final: the same request fails the same way. */
const struct qp_retry_rules qp_retry_rules_default = {
    .transport = QP_RULE_RETRY,
    .html_fails = true,
    .retry_after_waits = true,
    .statuses =
        {
            {500, QP_RULE_RETRY},
            {502, QP_RULE_RETRY},
            {504, QP_RULE_RETRY},
            {503, QP_RULE_UNLESS_LATE},
            {429, QP_RULE_IF_TOLD},
            {401, QP_RULE_FINAL},
            {400, QP_RULE_FINAL},
            {403, QP_RULE_FINAL},
            {404, QP_RULE_FINAL},
            {413, QP_RULE_FINAL},
        },
};

static const struct qp_retry_rules *
rules_of(const struct qp_retry_policy *p)
{
    return p->rules ? p->rules : &qp_retry_rules_default;
}

static enum qp_retry_rule
status_rule(const struct qp_retry_rules *r, long status)
{
    for (size_t i = 0; i < QP_RETRY_STATUS_ROWS; i++) {
        if (r->statuses[i].status == status)
            return r->statuses[i].rule;
    }
    return QP_RULE_FINAL;
}

static bool
status_has_retry_after(long status)
{
    return status == 429 || status == 503;
}

bool
qp_retry_is_success(const struct qp_retry_policy *p, const struct qp_attempt_facts *f)
{
    if (f->transport != QP_TRANSPORT_OK || f->status < 200 || f->status > 299)
        return false;
    if (f->html && rules_of(p)->html_fails)
        return false;
    return !f->body_unusable;
}

bool
qp_retry_is_retryable(const struct qp_retry_policy *p, const struct qp_attempt_facts *f)
{
    const struct qp_retry_rules *r = rules_of(p);
    switch (f->transport) {
    case QP_TRANSPORT_CONNECT:
    case QP_TRANSPORT_TIMEOUT:
    case QP_TRANSPORT_BROKEN:
        return r->transport == QP_RULE_RETRY;
    case QP_TRANSPORT_TOO_BIG:
        return false;
    case QP_TRANSPORT_OK:
        break;
    }
    /* HTML is a WAF block, a captcha or a gateway page whatever its status (RETRY-2). */
    if (f->html && r->html_fails)
        return true;
    bool told_in_time = f->retry_after_ms >= 0 && f->retry_after_ms <= p->retry_after_cap_ms;
    switch (status_rule(r, f->status)) {
    case QP_RULE_RETRY:
        return true;
    case QP_RULE_UNLESS_LATE:
        return f->retry_after_ms < 0 || told_in_time;
    case QP_RULE_IF_TOLD:
        return told_in_time;
    case QP_RULE_FINAL:
        break;
    }
    /* A 2xx with an unusable body (e.g. a model list that is not one) is a glitch. */
    return f->status >= 200 && f->status <= 299 && f->body_unusable;
}

int64_t
qp_retry_backoff_ms(unsigned base_ms, unsigned retry, uint32_t rnd)
{
    if (base_ms == 0 || retry == 0)
        return 0;
    int64_t d = base_ms;
    for (unsigned i = 1; i < retry && d < 30000; i++)
        d *= 2;
    if (d > 30000)
        d = 30000;
    int64_t half = d / 2;
    return half + (int64_t)(rnd % (uint32_t)(d - half + 1));
}

struct qp_decision
qp_retry_decide(const struct qp_retry_policy *p, const struct qp_attempt_facts *f,
                unsigned attempts, int64_t now_ms, int64_t deadline_ms, uint32_t rnd)
{
    struct qp_decision d = {QP_NEXT_RELAY, 0};

    if (qp_retry_is_success(p, f)) {
        d.next = QP_NEXT_SUCCESS;
        return d;
    }
    if (!qp_retry_is_retryable(p, f)) {
        d.next = QP_NEXT_RELAY;
        return d;
    }
    if (attempts >= p->max_retries + 1) {
        d.next = QP_NEXT_EXHAUSTED;
        return d;
    }
    d.delay_ms = qp_retry_backoff_ms(p->base_ms, attempts, rnd);
    if (rules_of(p)->retry_after_waits && status_has_retry_after(f->status) &&
        f->retry_after_ms > d.delay_ms)
        d.delay_ms = f->retry_after_ms;
    if (now_ms + d.delay_ms >= deadline_ms) {
        d.next = QP_NEXT_DEADLINE;
        return d;
    }
    d.next = QP_NEXT_RETRY;
    return d;
}

int64_t
qp_retry_after_parse(const char *value, time_t now_wall)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        int64_t s = 0;
        const char *p = value;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (s > 100000000)
                return -1; /* absurd; treat as invalid rather than overflow */
            s = s * 10 + (*p - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        return *p ? -1 : s * 1000;
    }
    time_t when = curl_getdate(value, NULL);
    if (when == (time_t)-1)
        return -1;
    if (when <= now_wall)
        return 0;
    return (int64_t)(when - now_wall) * 1000;
}
