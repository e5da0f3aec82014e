/*
 * V2-1..8: what the Qwen v2 upstream adds (SPEC.md, "V2"). An attempt there is two
 * requests (a chat created, then its completion streamed in frames of v2's own), the
 * stream carries reasoning, a second candidate answer and in-band failures, and the
 * caller's conversation must fit in one message. Every test SKIPs under the v1 dialect.
 *
 * What the mock produced for a completion is in its journal entry (`answer`: text,
 * reasoning elements, response and chat ids), so the oracle is the answer to the proxy's
 * own request, however it built that request.
 */
#include "conf_groups.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "conf_sse.h"
#include "conf_text.h"

/* ---- the caller's answer ---- */

/* What the caller received from a stream, read whole. */
struct v2_stream {
    const struct conf_response *resp;
    const char *content;   /* every delta.content, concatenated */
    const char *reasoning; /* every delta.reasoning_content, concatenated */
    size_t events, dones, errors, not_json;
    long last_done, last_chunk, first_error;
    const char *finish_reason; /* the last non-null one */
    bool raw_frame;            /* an event carried a v2 frame (response.created, phase) */
};

static void
release_parser(void *ptr)
{
    struct conf_sse_parser *p = ptr;
    conf_sse_free(p);
    free(p);
}

static void
release_json(void *ptr)
{
    cJSON_Delete(ptr);
}

static const char *
str_member(const cJSON *o, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

/* Reads the proxy's answer to a stream request @p body as events. */
static struct v2_stream
read_stream(struct conf_ctx *ctx, const char *token, const char *body)
{
    struct v2_stream s = {
        .content = "", .reasoning = "", .last_done = -1, .last_chunk = -1, .first_error = -1};
    s.resp = conf_post_chat(ctx, token, body);
    struct conf_sse_parser *p = conf_keep(ctx, calloc(1, sizeof(*p)), release_parser);
    conf_sse_init(p);
    conf_check(ctx, s.resp, conf_sse_feed(p, s.resp->body, s.resp->body_len, 0),
               "harness: cannot parse the answer as an event stream");
    conf_sse_finish(p);
    s.events = p->n_events;
    for (size_t i = 0; i < p->n_events; i++) {
        const struct conf_sse_event *ev = &p->events[i];
        if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
            s.dones++;
            s.last_done = (long)i;
            continue;
        }
        cJSON *json = cJSON_ParseWithLength(ev->data, ev->data_len);
        if (!json) {
            s.not_json++;
            continue;
        }
        conf_keep(ctx, json, release_json);
        s.raw_frame = s.raw_frame || strstr(ev->data, "response.created") ||
                      strstr(ev->data, "\"phase\"") || strstr(ev->data, "summary_thought");
        if (cJSON_HasObjectItem(json, "error")) {
            s.errors++;
            if (s.first_error < 0)
                s.first_error = (long)i;
            continue;
        }
        s.last_chunk = (long)i;
        const cJSON *choice =
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json, "choices"), 0);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
        const char *c = str_member(delta, "content");
        const char *rc = str_member(delta, "reasoning_content");
        const char *fr = str_member(choice, "finish_reason");
        if (c)
            s.content = conf_str(ctx, "%s%s", s.content, c);
        if (rc)
            s.reasoning = conf_str(ctx, "%s%s", s.reasoning, rc);
        if (fr)
            s.finish_reason = fr;
    }
    return s;
}

/* A chat body for @p text; @p stream as asked. */
static const char *
body_of(struct conf_ctx *ctx, const char *text, bool stream)
{
    return conf_chat_body_of(ctx, &(struct conf_chat){.text = text,
                                                      .stream = stream ? CONF_CHAT_STREAM_TRUE
                                                                       : CONF_CHAT_STREAM_FALSE});
}

/* The journal entry of the completion the mock answered for @p token (fails without). */
static const cJSON *
answered(struct conf_ctx *ctx, const struct conf_response *r, const char *token)
{
    const cJSON *e = conf_answered_completion(ctx, token);
    conf_check(ctx, r, e != NULL, "no upstream completion of the request was answered");
    return conf_entry_answer(e);
}

/* The completion requests of @p token's journal, in order. */
static const cJSON *
completions(struct conf_ctx *ctx, const char *token)
{
    cJSON *out = conf_keep(ctx, cJSON_CreateArray(), release_json);
    const cJSON *e;
    cJSON_ArrayForEach(e, conf_journal_settled(ctx, token))
    {
        if (conf_dialect_is_completion(conf_target(ctx)->dialect, conf_entry_path(e)))
            cJSON_AddItemReferenceToArray(out, (cJSON *)e);
    }
    return out;
}

/* A stream that thinks: the mock's stream knob forces the thinking frames on. */
static const char *
thinking_step(struct conf_ctx *ctx, const char *phase)
{
    return phase ? conf_str(ctx, "[{\"stream\":{\"thinking\":true,\"think_phase\":\"%s\"}}]", phase)
                 : "[{\"stream\":{\"thinking\":true}}]";
}

/* ---- V2-1 ---- */

/* V2-1: every attempt's completion names a chat in its query, and no two attempts of one
 * request name the same chat. */
static void
V2_1_every_attempt_names_a_chat_of_its_own(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"status\":500},{\"status\":500}]");
    const struct conf_response *r = conf_post_chat(ctx, token, body_of(ctx, "own chats", false));
    conf_assume(ctx, r->status == 200 && conf_attempts(ctx, token, 3) == 3,
                "the request was not retried to a success (HTTP %ld; see RETRY-1)", r->status);
    const cJSON *list = completions(ctx, token);
    char ids[3][128];
    for (int i = 0; i < 3; i++) {
        const char *id = conf_entry_chat_id(cJSON_GetArrayItem(list, i), ids[i], sizeof(ids[i]));
        conf_check(ctx, r, id && id[0], "completion %d names no chat (query \"%s\")", i + 1,
                   conf_entry_query(cJSON_GetArrayItem(list, i)));
        for (int j = 0; j < i; j++)
            conf_check(ctx, r, strcmp(ids[j], ids[i]) != 0,
                       "attempts %d and %d used the same chat %s", j + 1, i + 1, ids[i]);
    }
    const char *used = str_member(answered(ctx, r, token), "chat_id");
    conf_check(ctx, r, used && strcmp(used, ids[2]) == 0,
               "the mock answered chat %s, the last completion named %s", used ? used : "(none)",
               ids[2]);
}

/* V2-1: requests in flight at once never share a chat. */
static void
V2_1_concurrent_requests_use_distinct_chats(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    enum { N = 3 };
    const char *token = conf_token(ctx);
    /* Slow answers, so that the three completions overlap. */
    conf_queue(ctx, token, "chat",
               conf_repeat_steps(ctx, "{\"stream\":{\"chunks\":3,\"chunk_delay_ms\":200}}", N));
    struct conf_request reqs[N];
    const char *headers[] = {conf_bearer(ctx, token), "Content-Type: application/json", NULL};
    for (int i = 0; i < N; i++) {
        const char *body = body_of(ctx, conf_str(ctx, "concurrent %d", i), false);
        reqs[i] = (struct conf_request){
            .method = "POST",
            .url = conf_str(ctx, "%s%s", conf_target(ctx)->proxy_url,
                            conf_api(ctx, "/chat/completions")),
            .headers = headers,
            .body = body,
            .body_len = strlen(body),
        };
    }
    const struct conf_response *rs = conf_send_many(ctx, reqs, N);
    for (int i = 0; i < N; i++)
        conf_assume(ctx, rs[i].status == 200, "request %d got HTTP %ld (see HTTP-1)", i + 1,
                    rs[i].status);
    const cJSON *list = completions(ctx, token);
    int n = cJSON_GetArraySize(list);
    int overlapping = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++) {
            const cJSON *a = cJSON_GetArrayItem(list, i), *b = cJSON_GetArrayItem(list, j);
            overlapping += conf_entry_received_ms(a) < conf_entry_finished_ms(b) &&
                           conf_entry_received_ms(b) < conf_entry_finished_ms(a);
        }
    }
    /* Nothing in flight at once is nothing to judge, never a pass. */
    conf_observable(ctx, overlapping > 0,
                    "no two of the %d upstream completions were in flight at once (the proxy "
                    "serialised the three concurrent requests), nothing to judge",
                    n);
    for (int i = 0; i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(list, i);
        char ia[128], ib[128];
        const char *id_a = conf_entry_chat_id(a, ia, sizeof(ia));
        for (int j = 0; id_a && j < i; j++) {
            const cJSON *b = cJSON_GetArrayItem(list, j);
            const char *id_b = conf_entry_chat_id(b, ib, sizeof(ib));
            bool overlap = conf_entry_received_ms(a) < conf_entry_finished_ms(b) &&
                           conf_entry_received_ms(b) < conf_entry_finished_ms(a);
            conf_check(ctx, NULL, !overlap || !id_b || strcmp(id_a, id_b) != 0,
                       "two completions in flight at once named the same chat %s", id_a);
        }
    }
}

/* ---- V2-2 ---- */

/* V2-2: a chat creation that fails transiently (5xx, the firewall's HTML page with 200, its
 * in-band challenge) is a failed attempt: retried, and the caller gets only the success.
 * Not the quota or an error object: whether those are retried is the proxy's choice (V2-6). */
static void
V2_2_failed_chat_creation_is_retried(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *failures[] = {"{\"status\":500}", "{\"html\":\"waf200\"}",
                              "{\"inband_error\":\"waf\"}", "{\"inband_error\":\"captcha\"}"};
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chats_new", conf_str(ctx, "[%s]", failures[i]));
        const struct conf_response *r =
            conf_post_chat(ctx, token, body_of(ctx, "creation retried", false));
        conf_check(ctx, r, r->status == 200, "chats/new answered %s once: expected 200, got %ld",
                   failures[i], r->status);
        const char *content =
            str_member(cJSON_GetObjectItemCaseSensitive(
                           cJSON_GetArrayItem(
                               cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "choices"), 0),
                           "message"),
                       "content");
        const char *want = str_member(answered(ctx, r, token), "text");
        conf_check(ctx, r, content && want && strcmp(content, want) == 0,
                   "after chats/new answered %s, the caller's text is not the upstream's (%s)",
                   failures[i], want ? want : "?");
        /* 1 when a pool's spare, created beside the chat it needed, met the failure. */
        size_t n = conf_attempts(ctx, token, 2);
        conf_check(ctx, r, n == 1 || n == 2,
                   "chats/new answered %s once: expected 2 attempts (1 when a spare chat met "
                   "it), got %zu",
                   failures[i], n);
    }
}

/* V2-2: a chat creation failing on every attempt ends in an error status after the
 * profile's attempts, each counted. Every creation fails, the spares a pool creates beside
 * the chat it needs too, and slowly: creations sent at once are seen in flight at once
 * (one attempt), a retry after the failure it follows. */
static void
V2_2_chat_creation_failing_every_time_gives_error_status(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    unsigned max = conf_max_attempts(ctx);
    conf_queue(ctx, token, "chats_new",
               conf_steps_always(ctx, conf_str(ctx, "{\"status\":500,\"delay_ms\":%d}",
                                               conf_slow_failure_ms(ctx))));
    const struct conf_response *r =
        conf_post_chat(ctx, token, body_of(ctx, "creation fails", false));
    conf_check(ctx, r, r->status >= 500, "expected a 5xx error status, got %ld", r->status);
    conf_assert_json_error(ctx, r);
    conf_assert_attempts(ctx, token, max);
}

/* ---- V2-3 ---- */

/* V2-3: reasoning (both phases) never reaches the caller's content. */
static void
V2_3_reasoning_never_in_content(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *phases[] = {NULL, "think"};
    for (size_t i = 0; i < 2; i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chat", thinking_step(ctx, phases[i]));
        struct v2_stream s = read_stream(ctx, token, body_of(ctx, "think first", true));
        conf_assert_status(ctx, s.resp, 200);
        const cJSON *a = answered(ctx, s.resp, token);
        const char *want = str_member(a, "text");
        const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(a, "reasoning");
        conf_check(ctx, s.resp, cJSON_GetArraySize(reasoning) > 0,
                   "harness: the mock produced no reasoning (stream knob thinking)");
        conf_check(
            ctx, s.resp, want && strcmp(s.content, want) == 0,
            "%s phase: the caller's content is not exactly the answer \"%s\" (got \"%.200s\")",
            phases[i] ? phases[i] : "thinking_summary", want ? want : "?", s.content);
    }
}

/* V2-3 (SHOULD part): the reasoning is in delta.reasoning_content, every summary element
 * in order (joined with any whitespace), or the think phase's pieces. */
static void
V2_3_reasoning_in_reasoning_content(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *phases[] = {NULL, "think"};
    for (size_t i = 0; i < 2; i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chat", thinking_step(ctx, phases[i]));
        struct v2_stream s = read_stream(ctx, token, body_of(ctx, "show the thoughts", true));
        conf_assume(ctx, s.resp->status == 200, "no 200 stream (HTTP %ld; see SSE-1)",
                    s.resp->status);
        const cJSON *reasoning =
            cJSON_GetObjectItemCaseSensitive(answered(ctx, s.resp, token), "reasoning");
        char *want = cJSON_PrintUnformatted(reasoning);
        conf_keep(ctx, want ? want : strdup(""), free);
        conf_check(ctx, s.resp, conf_text_same_elements(s.reasoning, reasoning),
                   "%s phase: reasoning_content \"%.150s\" is not the upstream's reasoning %.150s",
                   phases[i] ? phases[i] : "thinking_summary", s.reasoning, want ? want : "");
    }
}

/* V2-3 (SHOULD part): a non-stream request gets the reasoning in
 * message.reasoning_content, and the answer alone in message.content. */
static void
V2_3_non_stream_answer_carries_reasoning_content(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", thinking_step(ctx, NULL));
    const struct conf_response *r =
        conf_post_chat(ctx, token, body_of(ctx, "think, then answer", false));
    conf_assume(ctx, r->status == 200, "no 200 answer (HTTP %ld; see HTTP-1)", r->status);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(conf_json(ctx, r), "choices"), 0),
        "message");
    const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(answered(ctx, r, token), "reasoning");
    const char *got = str_member(msg, "reasoning_content");
    conf_check(ctx, r, got && conf_text_same_elements(got, reasoning),
               "message.reasoning_content \"%.150s\" is not the upstream's reasoning",
               got ? got : "(none)");
}

/* ---- V2-4 ---- */

/* V2-4: with two candidate answers, only response index 0 reaches the caller, and no v2
 * frame (response.created) is relayed as it is. */
static void
V2_4_only_response_zero_reaches_the_caller(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat", "[{\"stream\":{\"dual\":true}}]");
    struct v2_stream s = read_stream(ctx, token, body_of(ctx, "two candidates", true));
    conf_assert_status(ctx, s.resp, 200);
    const char *want = str_member(answered(ctx, s.resp, token), "text");
    conf_check(ctx, s.resp, !s.raw_frame,
               "an upstream frame (response.created, phase, summary_thought) reached the caller");
    conf_check(ctx, s.resp, want && strcmp(s.content, want) == 0,
               "the caller's text \"%.200s\" is not response 0's \"%s\" alone", s.content,
               want ? want : "?");
}

/* ---- V2-5 ---- */

/* V2-5: the caller's stream ends with exactly one [DONE], last, after a chunk with
 * finish_reason "stop", whether the upstream sent [DONE] (knob done) or not (its way). */
static void
V2_5_one_done_whether_or_not_the_upstream_sends_one(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *steps[] = {"[{\"stream\":{\"chunks\":3}}]",
                           "[{\"stream\":{\"chunks\":3,\"done\":true}}]"};
    for (size_t i = 0; i < 2; i++) {
        const char *token = conf_token(ctx);
        conf_queue(ctx, token, "chat", steps[i]);
        struct v2_stream s = read_stream(ctx, token, body_of(ctx, "the end", true));
        conf_assert_status(ctx, s.resp, 200);
        const char *how = i ? "upstream sent [DONE]" : "upstream sent no [DONE]";
        conf_check(ctx, s.resp, s.dones == 1, "%s: %zu data: [DONE] events, expected one", how,
                   s.dones);
        conf_check(ctx, s.resp, s.last_done == (long)s.events - 1,
                   "%s: data: [DONE] is not the last event", how);
        conf_check(ctx, s.resp, s.finish_reason && strcmp(s.finish_reason, "stop") == 0,
                   "%s: no chunk carries finish_reason \"stop\" (last: %s)", how,
                   s.finish_reason ? s.finish_reason : "none");
    }
}

/* ---- V2-6 ---- */

/* V2-6: in-band failures in a 200 answer, on either request, before anything reached the
 * caller: an error status with a JSON error body, never a 200. */
static void
V2_6_inband_failures_before_the_first_byte_give_error_status(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const struct {
        const char *route, *step;
    } cases[] = {
        {"chat", "{\"inband_error\":\"waf\"}"},
        {"chat", "{\"inband_error\":\"captcha\"}"},
        {"chat", "{\"inband_error\":\"quota\"}"},
        {"chat", "{\"inband_error\":\"error\"}"},
        {"chat", "{\"inband_error\":\"waf\",\"inband_sse\":true}"},
        {"chats_new", "{\"html\":\"waf200\"}"},
        {"chats_new", "{\"inband_error\":\"waf\"}"},
        {"chats_new", "{\"inband_error\":\"quota\"}"},
    };
    unsigned max = conf_max_attempts(ctx);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *token = conf_token(ctx);
        /* Chat creation fails for the spares a pool creates too. */
        conf_queue(ctx, token, cases[i].route,
                   strcmp(cases[i].route, "chats_new") == 0
                       ? conf_steps_always(ctx, cases[i].step)
                       : conf_repeat_steps(ctx, cases[i].step, max));
        const struct conf_response *r =
            conf_post_chat(ctx, token, body_of(ctx, "in-band failure", true));
        conf_check(ctx, r, r->status >= 400,
                   "%s answered %s on every attempt: expected an error status, got %ld",
                   cases[i].route, cases[i].step, r->status);
        conf_assert_json_error(ctx, r);
    }
}

/* V2-6: an in-band error frame after the first byte ends the stream with one error
 * event, no [DONE], after a prefix of the answer. */
static void
V2_6_inband_error_after_the_first_byte_gives_one_error_event(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    conf_queue(ctx, token, "chat",
               "[{\"stream\":{\"chunks\":4,\"thinking\":false,\"error_after\":2}}]");
    const char *body = body_of(ctx, "fails half-way", true);
    struct v2_stream s = read_stream(ctx, token, body);
    conf_assert_status(ctx, s.resp, 200);
    conf_check(ctx, s.resp, s.errors == 1, "expected one error event, got %zu", s.errors);
    conf_check(ctx, s.resp, s.dones == 0,
               "data: [DONE] after an upstream error: a cut answer looks complete");
    conf_check(ctx, s.resp, s.last_chunk < s.first_error, "a chunk follows the error event");
    const char *full = conf_expected_text_of(ctx, token, conf_oracle_text(ctx, body));
    bool prefix =
        strlen(s.content) < strlen(full) && strncmp(full, s.content, strlen(s.content)) == 0;
    conf_check(ctx, s.resp, prefix, "the caller's text \"%.200s\" is not a proper prefix of \"%s\"",
               s.content, full);
}

/* ---- V2-7, V2-8 ---- */

/* The text of the one message of a v2 completion @p e; fails unless there is exactly one. */
static const char *
one_message_text(struct conf_ctx *ctx, const cJSON *e)
{
    cJSON *body = cJSON_Parse(conf_entry_body(e));
    conf_keep(ctx, body ? body : cJSON_CreateNull(), release_json);
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    conf_check(ctx, NULL, cJSON_GetArraySize(messages) == 1,
               "the completion carries %d messages, the upstream answers one",
               cJSON_GetArraySize(messages));
    const cJSON *content =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(messages, 0), "content");
    if (cJSON_IsString(content))
        return content->valuestring;
    const char *out = "";
    const cJSON *item;
    const cJSON *items = cJSON_IsArray(content) ? content : NULL;
    cJSON_ArrayForEach(item, items)
    {
        const char *t = str_member(item, "text");
        out = conf_str(ctx, "%s%s", out, t ? t : "");
    }
    return out;
}

/* V2-7: the whole conversation (system prompt, earlier turns) reaches the upstream in its
 * one message, in order, with the caller's model. */
static void
V2_7_conversation_reaches_the_upstream(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    const char *texts[] = {
        conf_str(ctx, "system rules %s", token),
        conf_str(ctx, "first question %s", token),
        conf_str(ctx, "first answer %s", token),
        conf_str(ctx, "second question %s", token),
    };
    const char *messages = conf_str(
        ctx,
        "[{\"role\":\"system\",\"content\":\"%s\"},{\"role\":\"user\",\"content\":\"%s\"},"
        "{\"role\":\"assistant\",\"content\":\"%s\"},{\"role\":\"user\",\"content\":\"%s\"}]",
        texts[0], texts[1], texts[2], texts[3]);
    const struct conf_response *r = conf_post_chat(
        ctx, token,
        conf_chat_body_of(
            ctx, &(struct conf_chat){.messages_json = messages, .stream = CONF_CHAT_STREAM_FALSE}));
    const cJSON *e = cJSON_GetArrayItem(completions(ctx, token), 0);
    conf_check(ctx, r, e != NULL, "no completion reached the upstream (HTTP %ld)", r->status);
    cJSON *body = cJSON_Parse(conf_entry_body(e));
    conf_keep(ctx, body ? body : cJSON_CreateNull(), release_json);
    const char *model = str_member(body, "model");
    conf_check(ctx, r, model && strcmp(model, conf_target(ctx)->model) == 0,
               "the completion asks for model %s, the caller for %s", model ? model : "(none)",
               conf_target(ctx)->model);
    const char *sent = one_message_text(ctx, e);
    const char *at = sent;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        const char *found = strstr(at, texts[i]);
        conf_check(ctx, r, found != NULL,
                   "message %zu's text \"%s\" is not in the upstream message (after the earlier "
                   "ones): \"%.300s\"",
                   i + 1, texts[i], sent);
        at = found + strlen(texts[i]);
    }
}

/* V2-8: a single user message reaches the upstream as its text, as it is. */
static void
V2_8_single_message_sent_as_it_is(struct conf_ctx *ctx)
{
    conf_v2_only(ctx);
    const char *token = conf_token(ctx);
    const char *text = conf_str(ctx, "just this %s", token);
    const struct conf_response *r = conf_post_chat(ctx, token, body_of(ctx, text, false));
    const cJSON *e = cJSON_GetArrayItem(completions(ctx, token), 0);
    conf_check(ctx, r, e != NULL, "no completion reached the upstream (HTTP %ld)", r->status);
    const char *sent = one_message_text(ctx, e);
    conf_check(ctx, r, strcmp(sent, text) == 0, "the upstream message is \"%.200s\", not \"%s\"",
               sent, text);
}

static const struct CMUnitTest v2_tests[] = {
    CONF_TEST(V2_1, V2_1_every_attempt_names_a_chat_of_its_own),
    CONF_TEST(V2_1, V2_1_concurrent_requests_use_distinct_chats),
    CONF_TEST(V2_2, V2_2_failed_chat_creation_is_retried),
    CONF_TEST(V2_2, V2_2_chat_creation_failing_every_time_gives_error_status),
    CONF_TEST(V2_3, V2_3_reasoning_never_in_content),
    CONF_TEST_SHOULD(V2_3, V2_3_reasoning_in_reasoning_content),
    CONF_TEST_SHOULD(V2_3, V2_3_non_stream_answer_carries_reasoning_content),
    CONF_TEST(V2_4, V2_4_only_response_zero_reaches_the_caller),
    CONF_TEST(V2_5, V2_5_one_done_whether_or_not_the_upstream_sends_one),
    CONF_TEST(V2_6, V2_6_inband_failures_before_the_first_byte_give_error_status),
    CONF_TEST(V2_6, V2_6_inband_error_after_the_first_byte_gives_one_error_event),
    CONF_TEST(V2_7, V2_7_conversation_reaches_the_upstream),
    CONF_TEST(V2_8, V2_8_single_message_sent_as_it_is),
};

CONF_GROUP(v2, v2_tests);
