#include "request.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apierror.h"
#include "mutant.h"

void
qp_response_clear(struct qp_response *r)
{
    if (r->shared)
        qp_blob_unref(r->shared);
    else
        free(r->body);
    curl_slist_free_all(r->headers);
    memset(r, 0, sizeof(*r));
}

void
qp_response_add_header(struct qp_response *r, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (!line)
        return;
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(r->headers, line);
    free(line);
    if (l)
        r->headers = l;
}

void
qp_response_take_body(struct qp_response *r, unsigned status, char *body, size_t len,
                      const char *content_type)
{
    if (r->shared)
        qp_blob_unref(r->shared);
    else
        free(r->body);
    r->shared = NULL;
    r->status = status;
    r->body = body;
    r->len = body ? len : 0;
    snprintf(r->content_type, sizeof(r->content_type), "%s", content_type ? content_type : "");
}

void
qp_response_share_body(struct qp_response *r, unsigned status, struct qp_blob *blob,
                       const char *content_type)
{
    qp_response_take_body(r, status, NULL, 0, content_type);
    r->shared = blob;
    r->body = blob->data;
    r->len = blob->len;
}

void
qp_response_error(struct qp_response *r, unsigned status, const char *message, const char *param,
                  const char *code)
{
    qp_response_clear(r);
    char *body = qp_error_json(message, qp_error_type(status), param, code);
    qp_response_take_body(r, status, body, body ? strlen(body) : 0, "application/json");
    QP_MUTANT_REWRITE(error, r, status, message);
}

bool
qp_response_copy(struct qp_response *dst, const struct qp_response *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->status = src->status;
    memcpy(dst->content_type, src->content_type, sizeof(dst->content_type));
    if (src->body) {
        dst->body = malloc(src->len + 1);
        if (!dst->body)
            return false;
        memcpy(dst->body, src->body, src->len);
        dst->body[src->len] = '\0';
        dst->len = src->len;
    }
    for (const struct curl_slist *h = src->headers; h; h = h->next) {
        struct curl_slist *l = curl_slist_append(dst->headers, h->data);
        if (!l)
            return false;
        dst->headers = l;
    }
    return true;
}

static void
resume_batched(struct qp_loop_batched *b)
{
    struct qp_request *req = QP_CONTAINER_OF(b, struct qp_request, resume);
    MHD_resume_connection(req->conn);
    qp_request_unref(req); /* the batch's reference; may be the last once MHD finished */
}

void
qp_request_resume_later(struct qp_request *req, struct qp_loop *loop)
{
    qp_request_ref(req);
    if (!qp_loop_batch(loop, &req->resume))
        qp_request_unref(req); /* already queued: never the last, the caller holds one */
}

struct qp_request *
qp_request_new(void)
{
    struct qp_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    atomic_init(&req->refs, 1);
    req->started_ms = qk_now_ms();
    qk_buf_init(&req->body, 0);
    qk_buf_init(&req->attempt_body, 0);
    qk_buf_init(&req->step_body, 0);
    qp_stream_init(&req->st);
    req->resume.run = resume_batched;
    return req;
}

void
qp_request_ref(struct qp_request *req)
{
    atomic_fetch_add(&req->refs, 1);
}

void
qp_request_unref(struct qp_request *req)
{
    if (!req || atomic_fetch_sub(&req->refs, 1) != 1)
        return;
    free(req->authorization);
    qk_buf_free(&req->body);
    curl_slist_free_all(req->upstream_headers);
    curl_slist_free_all(req->attempt_headers);
    qk_buf_free(&req->attempt_body);
    qk_buf_free(&req->step_body);
    qp_response_clear(&req->resp);
    qp_stream_release(&req->st);
    free(req);
}
