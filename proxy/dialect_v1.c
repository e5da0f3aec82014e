/* Qwen's chat API v1: one upstream transfer per attempt on either route. */
#include "dialect.h"

#include "decode_v1.h"

static const struct qp_dialect_step v1_models_steps[] = {
    {.method = "GET", .path = "/api/models"},
};

/* The caller's checked body goes upstream as it came (make_body NULL). */
static const struct qp_dialect_step v1_chat_steps[] = {
    {.method = "POST", .path = "/api/chat/completions"},
};

const struct qp_dialect qp_dialect_v1 = {
    .name = "v1",
    .default_upstream = "https://chat.qwenlm.ai",
    .models = {v1_models_steps, sizeof(v1_models_steps) / sizeof(v1_models_steps[0])},
    .chat = {v1_chat_steps, sizeof(v1_chat_steps) / sizeof(v1_chat_steps[0])},
    .chat_answer = QP_ANSWER_JSON,
    .stream_decoder = &qp_decoder_v1,
};
