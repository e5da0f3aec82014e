#include "decode_v2.h"

#include <stdlib.h>
#include <string.h>

/* First cut: the declarations compile; the decoding follows. */
struct decode_v2 {
    struct qp_decoder_opts opts;
};

static void *
v2_new(const struct qp_decoder_opts *opts)
{
    struct decode_v2 *v = calloc(1, sizeof *v);
    if (v)
        v->opts = *opts;
    return v;
}

static void
v2_release(void *state)
{
    (void)state;
}

static void
v2_free(void *state)
{
    free(state);
}

static enum qp_decode_status
v2_event(void *state, const char *data, size_t len, struct qp_delta *d)
{
    (void)state;
    memset(d, 0, sizeof *d);
    d->text = d->reasoning = "";
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return QP_DECODE_DONE;
    return QP_DECODE_BAD;
}

static bool
v2_body_failure(const char *body, size_t len, char *msg, size_t cap)
{
    (void)body;
    (void)len;
    (void)msg;
    (void)cap;
    return false;
}

static bool
v2_body_failure_auth(const char *body, size_t len)
{
    (void)body;
    (void)len;
    return false;
}

const struct qp_decoder_ops qp_decoder_v2 = {
    .new = v2_new,
    .event = v2_event,
    .release = v2_release,
    .free = v2_free,
    .body_failure = v2_body_failure,
    .body_failure_auth = v2_body_failure_auth,
    .finish_required = true,
};
