/* Qwen's chat API v1: one upstream transfer per attempt on either route. */
#include "dialect.h"

#include "decode_v1.h"

#define QP_V1_MODELS_PATH "/api/models"
#define QP_V1_COMPLETION_PATH "/api/chat/completions"

static const struct qp_dialect_step v1_models_steps[] = {
    {.method = "GET", .path = QP_V1_MODELS_PATH},
};

/* The caller's checked body goes upstream as it came (make_body NULL). */
static const struct qp_dialect_step v1_chat_steps[] = {
    {.method = "POST", .path = QP_V1_COMPLETION_PATH},
};

const struct qp_dialect qp_dialect_v1 = {
    .name = "v1",
    .models_path = QP_V1_MODELS_PATH,
    .completion_path = QP_V1_COMPLETION_PATH,
    .models = {v1_models_steps, sizeof(v1_models_steps) / sizeof(v1_models_steps[0])},
    .chat = {v1_chat_steps, sizeof(v1_chat_steps) / sizeof(v1_chat_steps[0])},
    .stream_decoder = &qp_decoder_v1,
};
