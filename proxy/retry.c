#include "retry.h"

#include <curl/curl.h>
#include <stddef.h>

#include "mutant.h"

static bool
status_has_retry_after(long status)
{
    return status == 429 || status == 503;
}

bool
qp_retry_is_success(const struct qp_attempt_facts *f)
{
    if (f->transport != QP_TRANSPORT_OK || f->status < 200 || f->status > 299)
        return false;
    if (f->html && !QP_MUTANT(relay_html))
        return false;
    return !f->body_unusable;
}

bool
qp_retry_is_retryable(const struct qp_retry_policy *p, const struct qp_attempt_facts *f)
{
    switch (f->transport) {
    case QP_TRANSPORT_CONNECT:
    case QP_TRANSPORT_TIMEOUT:
    case QP_TRANSPORT_BROKEN:
        return !QP_MUTANT(no_retry_gateway);
    case QP_TRANSPORT_TOO_BIG:
        return false;
    case QP_TRANSPORT_OK:
        break;
    }
    /* HTML is a WAF block, a captcha or a gateway page whatever its status (RETRY-2). */
    if (f->html && !QP_MUTANT(relay_html))
        return true;
    switch (f->status) {
    case 500:
        return true;
    case 502:
    case 504:
        return !QP_MUTANT(no_retry_gateway);
    case 503:
    case 429:
        /* Worth waiting for only when the upstream says when, and not too late. A 503
         * without Retry-After is an ordinary gateway failure; a 429 without one is relayed
         * so the client's own rate limiting applies. */
        if (f->retry_after_ms >= 0)
            return f->retry_after_ms <= p->retry_after_cap_ms;
        return f->status == 503 && !QP_MUTANT(no_retry_gateway);
    case 401:
        return QP_MUTANT(retry_401);
    case 400:
    case 403:
    case 404:
    case 413:
        return QP_MUTANT(retry_4xx);
    default:
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

    if (qp_retry_is_success(f)) {
        d.next = QP_NEXT_SUCCESS;
        return d;
    }
    if (!qp_retry_is_retryable(p, f)) {
        d.next = QP_NEXT_RELAY;
        return d;
    }
    unsigned max_attempts = p->max_retries + 1;
    if (QP_MUTANT(wrong_retry_count))
        max_attempts++;
    if (QP_MUTANT(no_retry) || attempts >= max_attempts) {
        d.next = QP_NEXT_EXHAUSTED;
        return d;
    }
    d.delay_ms = qp_retry_backoff_ms(p->base_ms, attempts, rnd);
    if (status_has_retry_after(f->status) && f->retry_after_ms > d.delay_ms)
        d.delay_ms = f->retry_after_ms;
    if (QP_MUTANT(no_backoff))
        d.delay_ms = 0;
    if (now_ms + d.delay_ms >= deadline_ms && !QP_MUTANT(no_deadline)) {
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
