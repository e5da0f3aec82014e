/*
 * ROBUST-1: the target keeps serving after every malformed request and every odd upstream
 * answer the suite produces. Each input is followed by a probe (GET /); the first one after
 * which the target stops answering is named in the verdict. Whether the answers are the
 * right ones is other requirements' business (ERR-1, HTTP-1, SSE-*): here only survival is
 * judged. Every test of the suite is probed the same way before and after it runs
 * (conf_harness.c), and a target that died there is a ROBUST-1 finding too.
 */
#include "conf_groups.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NESTING = 10000 };

/* Sends @p body to the chat route and checks the target still answers afterwards. */
static void
send_and_probe(struct conf_ctx *ctx, const char *token, const char *what, const char *body,
               const char *content_type)
{
    const char *headers[] = {conf_bearer(ctx, token), content_type, NULL};
    conf_send_ex(ctx, conf_target(ctx)->proxy_url, "POST", conf_api(ctx, "/chat/completions"),
                 headers, body, strlen(body), 10000);
    conf_check(ctx, NULL, conf_still_serving(ctx, what),
               "the target stopped answering after a chat request with %s", what);
}

/* @return "[[[...]]]" nested @p depth deep, as a "messages" value. */
static const char *
deep_nesting(struct conf_ctx *ctx, size_t depth)
{
    char *s = conf_keep(ctx, malloc(2 * depth + 32), free);
    size_t n = (size_t)sprintf(s, "{\"messages\":");
    memset(s + n, '[', depth);
    memset(s + n + depth, ']', depth);
    strcpy(s + n + 2 * depth, "}");
    return s;
}

/* @return a chat body of the target's model whose "messages" is @p messages_json. */
static const char *
with_messages(struct conf_ctx *ctx, const char *messages_json)
{
    return conf_chat_body_of(ctx, &(struct conf_chat){.messages_json = messages_json});
}

/* ROBUST-1: malformed chat requests leave the target serving. */
static void
ROBUST_1_malformed_requests_leave_the_target_serving(struct conf_ctx *ctx)
{
    conf_judges_survival_only(ctx);
    const char *token = conf_token(ctx);
    const char *model = conf_target(ctx)->model;
    const char *json = "Content-Type: application/json";
    const struct {
        const char *what, *body;
    } inputs[] = {
        {"a body without \"messages\"", conf_str(ctx, "{\"model\":\"%s\"}", model)},
        {"\"messages\": null", with_messages(ctx, "null")},
        {"\"messages\" a string", with_messages(ctx, "\"hi\"")},
        {"\"messages\" an empty array", with_messages(ctx, "[]")},
        {"a message that is a number", with_messages(ctx, "[1]")},
        {"a message without role and content", with_messages(ctx, "[{}]")},
        {"\"content\": null", with_messages(ctx, "[{\"role\":\"user\",\"content\":null}]")},
        {"\"content\" a number", with_messages(ctx, "[{\"role\":\"user\",\"content\":7}]")},
        {"a body without \"model\"", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"},
        {"\"model\" a number",
         "{\"model\":42,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"},
        {"\"stream\" a string",
         conf_chat_body_of(ctx,
                           &(struct conf_chat){.text = "hi", .extra_json = "\"stream\":\"yes\""})},
        {"an empty body", ""},
        {"the body null", "null"},
        {"the body an array", "[]"},
        {"truncated JSON", "{\"model\":"},
        {"invalid UTF-8 in a string",
         with_messages(ctx, "[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]")},
        {"messages nested 10000 arrays deep", deep_nesting(ctx, NESTING)},
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        send_and_probe(ctx, token, inputs[i].what, inputs[i].body, json);
    send_and_probe(ctx, token, "Content-Type: text/plain",
                   conf_chat_body(ctx, "not declared as JSON"), "Content-Type: text/plain");
}

/* ROBUST-1: odd but possible upstream answers leave the target serving, on both routes and
 * in both chat modes. */
static void
ROBUST_1_odd_upstream_answers_leave_the_target_serving(struct conf_ctx *ctx)
{
    const char *json = "application/json", *sse = "text/event-stream";
    const struct {
        const char *route, *what, *content_type, *body;
        bool stream;
    } answers[] = {
        {"models", "a model list that is an empty object", json, "{}", false},
        {"models", "a model list whose data is null", json, "{\"data\":null}", false},
        {"models", "a model list that is not JSON", json, "not json", false},
        {"chat", "a completion without choices", json, "{\"object\":\"chat.completion\"}", false},
        {"chat", "a completion with an empty choices array", json, "{\"choices\":[]}", false},
        {"chat", "a completion whose message is null", json, "{\"choices\":[{\"message\":null}]}",
         false},
        {"chat", "a completion that is JSON null", json, "null", false},
        {"chat", "a stream chunk without delta.content", sse,
         "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n"
         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n"
         "data: [DONE]\n\n",
         true},
        {"chat", "a stream chunk with an empty choices array", sse,
         "data: {\"choices\":[]}\n\ndata: "
         "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},"
         "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
         true},
        {"chat", "a stream chunk without delta", sse,
         "data: {\"choices\":[{\"index\":0}]}\n\ndata: [DONE]\n\n", true},
        {"chat", "a stream chunk whose content is a number", sse,
         "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":7}}]}\n\ndata: [DONE]\n\n", true},
        {"chat", "a stream event that is not JSON", sse, "data: not json\n\ndata: [DONE]\n\n",
         true},
        {"chat", "a stream event that is JSON null", sse, "data: null\n\ndata: [DONE]\n\n", true},
        {"chat", "a stream of only [DONE]", sse, "data: [DONE]\n\n", true},
        {"chat", "a completion whose created, index and token counts overflow", json,
         "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion\",\"created\":1e999,"
         "\"choices\":[{\"index\":1e999,\"message\":{\"role\":\"assistant\",\"content\":"
         "\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":1e999,"
         "\"output_tokens\":-1e999}}",
         false},
        {"chat", "a completion whose created and token counts are hugely negative", json,
         "{\"created\":-1e999,\"choices\":[{\"index\":-1e999,\"message\":{\"content\":\"hi\"}}],"
         "\"usage\":{\"prompt_tokens\":-1e999,\"completion_tokens\":1e999}}",
         false},
        {"chat", "a stream chunk whose created, index and token counts overflow", sse,
         "data: {\"created\":1e999,\"choices\":[{\"index\":1e999,\"delta\":{\"content\":"
         "\"hi\"},\"finish_reason\":\"stop\"}],\"usage\":{\"input_tokens\":1e999,"
         "\"output_tokens\":-1e999}}\n\ndata: [DONE]\n\n",
         true},
        {"chat", "a stream chunk whose created is in milliseconds past any date", sse,
         "data: {\"created\":1e300,\"choices\":[{\"index\":-1e999,\"delta\":{\"content\":"
         "\"hi\"}}]}\n\ndata: [DONE]\n\n",
         true},
    };
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
        const char *token = conf_token(ctx);
        cJSON *step = cJSON_CreateObject();
        cJSON_AddNumberToObject(step, "status", 200);
        cJSON_AddStringToObject(step, "content_type", answers[i].content_type);
        cJSON_AddStringToObject(step, "body", answers[i].body);
        char *text = conf_keep(ctx, cJSON_PrintUnformatted(step), free);
        cJSON_Delete(step);
        /* Every attempt meets the same answer, whatever the proxy makes of it. */
        conf_queue(ctx, token, answers[i].route,
                   conf_repeat_steps(ctx, text, conf_max_attempts(ctx) + 1));
        const char *what = conf_str(ctx, "%s from the upstream", answers[i].what);
        if (strcmp(answers[i].route, "models") == 0) {
            /* Not conf_get_models(): a shared model cache (AUTH-5) does not matter here. */
            const char *headers[] = {conf_bearer(ctx, token), NULL};
            conf_send(ctx, "GET", conf_api(ctx, "/models"), headers, NULL);
        } else {
            const char *body = conf_chat_body(ctx, "odd upstream answers");
            if (answers[i].stream) {
                cJSON *b = cJSON_Parse(body);
                cJSON_ReplaceItemInObject(b, "stream", cJSON_CreateTrue());
                cJSON_AddTrueToObject(b, "incremental_output");
                body = conf_keep(ctx, cJSON_PrintUnformatted(b), free);
                cJSON_Delete(b);
            }
            conf_post_chat(ctx, token, body);
        }
        conf_check(ctx, NULL, conf_still_serving(ctx, what),
                   "the target stopped answering after %s", what);
    }
}

static const struct CMUnitTest robust_tests[] = {
    CONF_TEST(ROBUST_1, ROBUST_1_malformed_requests_leave_the_target_serving),
    CONF_TEST(ROBUST_1, ROBUST_1_odd_upstream_answers_leave_the_target_serving),
};

CONF_GROUP(robust, robust_tests);
