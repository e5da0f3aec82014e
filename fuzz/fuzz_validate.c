/*
 * Fuzz target: the proxy's chat request validation (proxy/validate.c, ERR-1).
 *
 * The body is an exact-size heap copy without a NUL terminator, as MHD hands it over, so
 * AddressSanitizer sees any read past its end. Oracle: a refusal names a known field
 * and code with a message, and leaves `stream` false; an acceptance is a JSON object
 * with a non-empty string `model` and a non-empty `messages` array (checked here with
 * cJSON directly); JSON whitespace appended to the body changes nothing.
 */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
    fprintf(stderr, "fuzz_validate: %s\n", what);
    abort();
}

static bool
one_of(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (s && strcmp(s, *list) == 0)
            return true;
    return false;
}

static bool
validate_copy(const uint8_t *data, size_t size, const char *suffix, bool *stream,
              struct qp_invalid *why)
{
    size_t extra = strlen(suffix);
    char *body = malloc(size + extra ? size + extra : 1);
    if (!body)
        abort();
    if (size)
        memcpy(body, data, size);
    memcpy(body + size, suffix, extra);
    *why = (struct qp_invalid){NULL, NULL, NULL};
    *stream = true;
    bool ok = qp_validate_chat(body, size + extra, stream, why);
    free(body);
    return ok;
}

/* What acceptance means, checked independently of validate.c. */
static void
check_accepted(const uint8_t *data, size_t size)
{
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsObject(root) || !cJSON_IsString(model) || !model->valuestring[0] ||
        !cJSON_IsArray(messages) || cJSON_GetArraySize(messages) < 1)
        fail("accepted a body without an object, a model and messages");
    cJSON_Delete(root);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const params[] = {"model", "messages", "stream", NULL};
    static const char *const codes[] = {"invalid_json", "missing_required_parameter",
                                        "invalid_type", "empty_array", NULL};
    struct qp_invalid why, why2;
    bool stream = true, stream2 = true;
    bool ok = validate_copy(data, size, "", &stream, &why);
    if (ok) {
        check_accepted(data, size);
    } else {
        if (stream)
            fail("a refused body reports stream=true");
        if (!why.message || !why.message[0] || !one_of(why.code, codes))
            fail("a refusal without a message or a known code");
        if (why.param && !one_of(why.param, params))
            fail("a refusal names an unknown field");
    }
    bool ok2 = validate_copy(data, size, " \r\n\t", &stream2, &why2);
    if (ok2 != ok || stream2 != stream ||
        (!ok && (why.param != why2.param || why.code != why2.code)))
        fail("trailing JSON whitespace changed the verdict");
    return 0;
}
