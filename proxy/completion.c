#include "completion.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

/* A `created` above this is milliseconds: seconds reach it in the year 5138. */
#define SECONDS_CEILING 1e11

static bool
set_number(cJSON *obj, const char *name, double value)
{
    cJSON *n = cJSON_CreateNumber(value);
    if (!n)
        return false;
    if (cJSON_GetObjectItemCaseSensitive(obj, name))
        return cJSON_ReplaceItemInObjectCaseSensitive(obj, name, n);
    return cJSON_AddItemToObject(obj, name, n);
}

/* usage{input_tokens, output_tokens} -> usage{prompt_tokens, completion_tokens,
 * total_tokens}; names the upstream already gives in OpenAI's terms are kept. */
/* A token count the caller can use: finite, non-negative, exact in a double. */
static bool
token_count(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble < 9007199254740992.0;
}

static bool
usage_openai(cJSON *usage)
{
    /* Counts out of range go: inf prints as null, and inf - inf is NaN, whose conversion
     * to int (cJSON keeps an int copy of every number) is undefined. */
    cJSON *item = usage->child;
    while (item) {
        cJSON *next = item->next;
        if (cJSON_IsNumber(item) && !token_count(item))
            cJSON_Delete(cJSON_DetachItemViaPointer(usage, item));
        item = next;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(usage, "output_tokens");
    if (!cJSON_IsNumber(in) || !cJSON_IsNumber(out))
        return true;
    if (!cJSON_HasObjectItem(usage, "prompt_tokens") &&
        !set_number(usage, "prompt_tokens", in->valuedouble))
        return false;
    if (!cJSON_HasObjectItem(usage, "completion_tokens") &&
        !set_number(usage, "completion_tokens", out->valuedouble))
        return false;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    if (!set_number(usage, "total_tokens", prompt->valuedouble + completion->valuedouble))
        return false;
    cJSON_DeleteItemFromObjectCaseSensitive(usage, "input_tokens");
    cJSON_DeleteItemFromObjectCaseSensitive(usage, "output_tokens");
    return true;
}

/* Below this, "%1.15g" (how cJSON prints every number) writes an integer's plain digits. */
#define PLAIN_INTEGER_LIMIT 1e15

/*
 * Turns each integer number under @p node into a raw item holding the digits cJSON would
 * print for it: cJSON prints every number with sprintf("%1.15g") and checks it back with
 * sscanf, a few thousand instructions a number, and a completion holds several (created,
 * index, the token counts). The bytes printed are the same. An item that cannot be
 * replaced (out of memory) stays a number.
 */
static void
integers_raw(cJSON *node)
{
    for (cJSON *item = node->child; item; item = item->next) {
        if (cJSON_IsObject(item) || cJSON_IsArray(item)) {
            integers_raw(item);
            continue;
        }
        double v = item->valuedouble;
        if (!cJSON_IsNumber(item) || !(fabs(v) < PLAIN_INTEGER_LIMIT) || v != floor(v) ||
            (v == 0 && signbit(v)))
            continue;
        char digits[24];
        size_t i = sizeof(digits) - 1;
        digits[i] = '\0';
        unsigned long long u = (unsigned long long)fabs(v);
        do {
            digits[--i] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            digits[--i] = '-';
        cJSON *raw = cJSON_CreateRaw(digits + i);
        if (!raw)
            continue;
        /* The member's name moves to the replacement (cJSON's replace keeps none). */
        raw->string = item->string;
        raw->type |= item->type & cJSON_StringIsConst;
        item->string = NULL;
        if (!cJSON_ReplaceItemViaPointer(node, item, raw)) {
            item->string = raw->string;
            raw->string = NULL;
            cJSON_Delete(raw);
            continue;
        }
        item = raw; /* the loop goes on from the replacement */
    }
}

char *
qp_completion_openai(const char *body, size_t len, size_t *out_len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    char *out = NULL;
    if (!cJSON_IsObject(root))
        goto done;
    cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (cJSON_IsObject(usage) && !usage_openai(usage))
        goto done;
    const cJSON *created = cJSON_GetObjectItemCaseSensitive(root, "created");
    if (cJSON_IsNumber(created)) {
        double v = created->valuedouble;
        if (isfinite(v) && v > SECONDS_CEILING)
            v = floor(v / 1000.0);
        /* Neither seconds nor milliseconds (inf, negative, huge): now, never a cast of a
         * value out of range. */
        if ((!isfinite(v) || v <= 0 || v > SECONDS_CEILING) && (v = (double)time(NULL)) < 0)
            v = 0;
        if (v != created->valuedouble && !set_number(root, "created", v))
            goto done;
    }
    integers_raw(root);
    out = cJSON_PrintUnformatted(root);
    if (out)
        *out_len = strlen(out);
done:
    cJSON_Delete(root);
    return out;
}
