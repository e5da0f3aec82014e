/*
 * Fuzz target: the mock upstream's scenario parser (mockupstream/mock_scenario.c), the
 * body of `POST /__mock/scenarios`.
 *
 * The body is an exact-size heap copy without a NUL terminator. Oracle:
 * - a refusal is QK_INVALID with a field path and a message; parsed again with tiny
 *   field/msg buffers it gives the same verdict, NUL-terminated prefixes of the same
 *   strings, and nothing written past the buffers;
 * - an acceptance gives scenarios with a token and at least one step each, n_steps
 *   matching the list, and each step's journal JSON (`json`, "the step as given")
 *   parses back, inside a scenario of its own, into the same step.
 * LeakSanitizer (on by default) reports any allocation a refusal leaves behind.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TINY 8
#define CANARY 0x5A

static void
fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_mock_scenario: %s: %s\n", what, detail ? detail : "");
    abort();
}

static enum qk_err
parse_copy(const char *json, size_t len, struct mock_scenario **out, char *field, size_t field_len,
           char *msg, size_t msg_len)
{
    struct mock_stream_opts defaults;
    mock_stream_opts_init(&defaults);
    char *body = malloc(len ? len : 1);
    if (!body)
        abort();
    if (len)
        memcpy(body, json, len);
    *out = NULL;
    enum qk_err rc = mock_scenario_parse(body, len, &defaults, out, field, field_len, msg, msg_len);
    free(body);
    return rc;
}

static bool
same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool
same_stream(const struct mock_stream_opts *a, const struct mock_stream_opts *b)
{
    return a->chunks == b->chunks && a->piece_bytes == b->piece_bytes &&
           a->chunk_delay_ms == b->chunk_delay_ms && a->split_utf8 == b->split_utf8 &&
           a->eol == b->eol && a->comments == b->comments && a->coalesce == b->coalesce &&
           a->truncate_after == b->truncate_after && a->stall_after == b->stall_after &&
           a->stall_ms == b->stall_ms && a->final_repeat == b->final_repeat &&
           a->final_empty_delta == b->final_empty_delta && a->empty_choices == b->empty_choices &&
           a->no_content_delta == b->no_content_delta && a->cumulative == b->cumulative &&
           a->done == b->done && a->finish_reason == b->finish_reason && a->usage == b->usage &&
           a->envelope == b->envelope;
}

static bool
same_step(const struct mock_step *a, const struct mock_step *b)
{
    return a->ok == b->ok && a->status == b->status && same_str(a->body, b->body) &&
           same_str(a->content_type, b->content_type) &&
           (a->headers != NULL) == (b->headers != NULL) && a->retry_after == b->retry_after &&
           a->html == b->html && a->inband == b->inband && a->delay_ms == b->delay_ms &&
           a->drop == b->drop && a->has_stream == b->has_stream &&
           (!a->has_stream || same_stream(&a->stream, &b->stream));
}

/* The journal's copy of a step must mean the same step. */
static void
check_step_round_trip(const struct mock_step *step)
{
    static const char head[] = "{\"token\":\"t\",\"steps\":[", tail[] = "]}";
    if (!step->json)
        fail("accepted step without its journal JSON", NULL);
    size_t jl = strlen(step->json);
    char *doc = malloc(sizeof head + jl + sizeof tail);
    if (!doc)
        abort();
    memcpy(doc, head, sizeof head - 1);
    memcpy(doc + sizeof head - 1, step->json, jl);
    memcpy(doc + sizeof head - 1 + jl, tail, sizeof tail);
    struct mock_scenario *again = NULL;
    char field[256], msg[160];
    enum qk_err rc = parse_copy(doc, strlen(doc), &again, field, sizeof field, msg, sizeof msg);
    if (rc != QK_OK)
        fail("journal JSON of an accepted step is refused", step->json);
    if (again->n_steps != 1 || !same_step(step, again->steps))
        fail("journal JSON of a step parses into another step", step->json);
    mock_scenario_free(again);
    free(doc);
}

static void
check_accepted(const struct mock_scenario *list)
{
    if (!list)
        fail("QK_OK without scenarios", NULL);
    for (const struct mock_scenario *sc = list; sc; sc = sc->next) {
        if (!sc->token || !sc->token[0] || sc->route >= MOCK_ROUTE_COUNT)
            fail("accepted scenario without a token or with a bad route", sc->token);
        size_t n = 0;
        for (const struct mock_step *st = sc->steps; st; st = st->next) {
            n++;
            check_step_round_trip(st);
        }
        if (n == 0 || n != sc->n_steps)
            fail("n_steps does not match the steps", sc->token);
    }
}

static void
check_refused_tiny(const uint8_t *data, size_t size, enum qk_err rc, const char *field,
                   const char *msg)
{
    char tf[TINY + 4], tm[TINY + 4];
    memset(tf, CANARY, sizeof tf);
    memset(tm, CANARY, sizeof tm);
    struct mock_scenario *list = NULL;
    enum qk_err rc2 = parse_copy((const char *)data, size, &list, tf, TINY, tm, TINY);
    mock_scenario_free(list);
    for (size_t i = TINY; i < sizeof tf; i++)
        if ((unsigned char)tf[i] != CANARY || (unsigned char)tm[i] != CANARY)
            fail("wrote past the field/msg buffers", field);
    if (rc2 != rc)
        fail("verdict depends on the size of the error buffers", field);
    if (!memchr(tf, '\0', TINY) || !memchr(tm, '\0', TINY) || strncmp(tf, field, strlen(tf)) != 0 ||
        strncmp(tm, msg, strlen(tm)) != 0)
        fail("truncated error is not a terminated prefix of the full one", field);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char field[256], msg[160];
    field[0] = msg[0] = '\0';
    struct mock_scenario *list = NULL;
    enum qk_err rc =
        parse_copy((const char *)data, size, &list, field, sizeof field, msg, sizeof msg);
    if (rc == QK_OK) {
        check_accepted(list);
        mock_scenario_free(list);
        return 0;
    }
    if (list)
        fail("a refusal hands out scenarios", field);
    if (rc != QK_INVALID)
        fail("refused with something other than QK_INVALID", field);
    if (!memchr(field, '\0', sizeof field) || !memchr(msg, '\0', sizeof msg) || !msg[0])
        fail("a refusal without a terminated field and message", field);
    check_refused_tiny(data, size, rc, field, msg);
    return 0;
}
