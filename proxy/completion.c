#include "completion.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
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
qp_completion_openai_general(const char *body, size_t len, size_t *out_len)
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

/* ---- the fast path: a body already in the form cJSON prints ------------------------ */

/*
 * Parsing a completion into cJSON items and printing it again cost about 40k instructions
 * a chat (a malloc per item and string, strtod per number). A body that is already what
 * cJSON_PrintUnformatted() would print (no whitespace, strings escaped only as cJSON
 * escapes them, numbers plain integers below 1e15) comes out of that round trip byte for
 * byte as it went in, but for `usage` and `created`: so the fast path checks that form
 * in one pass, copies the body and rewrites those two members alone. Anything else (and
 * every edge the rewrite rules have: negative or huge counts, a name given twice, a
 * `created` of zero) takes the general path, so both give the same bytes
 * (test_completion compares them).
 */

/** Deeper bodies take the general path (cJSON's own limit is 1000). */
#define FAST_DEPTH_MAX 64
/** SECONDS_CEILING as an integer. */
#define FAST_SECONDS_CEILING 100000000000ULL
/** Digits of the largest integer the fast path takes: below PLAIN_INTEGER_LIMIT. */
#define FAST_DIGITS_MAX 15

struct span {
    const char *p;
    size_t n;
};

struct fast_scan {
    const char *p, *end;
};

/* A string at s->p ('"'), escaped as cJSON prints: no control byte, and no escape but
 * the short ones (a \u escape prints back otherwise). */
static bool
fast_string(struct fast_scan *s)
{
    const char *p = s->p + 1;
    while (p < s->end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            s->p = p + 1;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (p + 1 >= s->end)
                return false;
            switch (p[1]) {
            case '"':
            case '\\':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                p += 2;
                continue;
            default:
                return false;
            }
        }
        p++;
    }
    return false;
}

/* A plain integer, -?(0|[1-9][0-9]*), of at most FAST_DIGITS_MAX digits, not -0; its
 * value and sign. */
static bool
fast_integer(struct fast_scan *s, uint64_t *value, bool *negative)
{
    const char *p = s->p;
    *negative = p < s->end && *p == '-';
    if (*negative)
        p++;
    const char *digits = p;
    uint64_t v = 0;
    while (p < s->end && *p >= '0' && *p <= '9' && p - digits < FAST_DIGITS_MAX + 1) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    size_t n = (size_t)(p - digits);
    if (n == 0 || n > FAST_DIGITS_MAX || (digits[0] == '0' && (n > 1 || *negative)))
        return false;
    /* A fraction or an exponent prints otherwise; anything else is the caller's to judge. */
    if (p < s->end && (*p == '.' || *p == 'e' || *p == 'E' || (*p >= '0' && *p <= '9')))
        return false;
    s->p = p;
    *value = v;
    return true;
}

static bool
fast_literal(struct fast_scan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool fast_value(struct fast_scan *s, unsigned depth);

/* A member list after '{' or '[' (@p close is '}' or ']'). */
static bool
fast_members(struct fast_scan *s, unsigned depth, char close)
{
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            if (s->p >= s->end || *s->p != '"' || !fast_string(s) || s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
        }
        if (!fast_value(s, depth))
            return false;
        if (s->p >= s->end)
            return false;
        if (*s->p == close) {
            s->p++;
            return true;
        }
        if (*s->p != ',')
            return false;
        s->p++;
    }
}

static bool
fast_value(struct fast_scan *s, unsigned depth)
{
    if (s->p >= s->end)
        return false;
    uint64_t v;
    bool neg;
    switch (*s->p) {
    case '"':
        return fast_string(s);
    case '{':
    case '[':
        if (depth >= FAST_DEPTH_MAX)
            return false;
        s->p++;
        return fast_members(s, depth + 1, s->p[-1] == '{' ? '}' : ']');
    case 't':
        return fast_literal(s, "true", 4);
    case 'f':
        return fast_literal(s, "false", 5);
    case 'n':
        return fast_literal(s, "null", 4);
    default:
        return fast_integer(s, &v, &neg);
    }
}

static bool
span_is(struct span k, const char *quoted)
{
    size_t n = strlen(quoted);
    return k.n == n && memcmp(k.p, quoted, n) == 0;
}

/* The usage names the rewrite reads or writes. */
enum { U_INPUT, U_OUTPUT, U_PROMPT, U_COMPLETION, U_TOTAL, U_NAMES };
static const char *const usage_names[U_NAMES] = {"\"input_tokens\"", "\"output_tokens\"",
                                                 "\"prompt_tokens\"", "\"completion_tokens\"",
                                                 "\"total_tokens\""};

struct out_buf {
    char *p;
    size_t len, cap;
};

static void
put(struct out_buf *o, const char *p, size_t n)
{
    if (o->len + n <= o->cap)
        memcpy(o->p + o->len, p, n);
    o->len += n; /* the caller checks len <= cap at the end */
}

static void
put_uint(struct out_buf *o, uint64_t v)
{
    char digits[24];
    size_t i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, digits + i, sizeof(digits) - i);
}

/*
 * The usage object at @p u (already checked by fast_value), rewritten into @p o as
 * usage_openai() would print it. @return false when the general path must decide: a
 * number usage_openai() would drop (negative), a name given twice, a count that is no
 * integer where the rewrite reads it, or a sum of 1e15 and up.
 */
static bool
fast_usage(struct span u, struct out_buf *o)
{
    struct span key[U_NAMES] = {{NULL, 0}};
    uint64_t num[U_NAMES] = {0};
    bool is_num[U_NAMES] = {false};
    struct fast_scan s = {u.p + 1, u.p + u.n};
    /* Pass 1: find the names; every direct number must be a count usage_openai keeps. */
    if (*s.p != '}') {
        for (;;) {
            struct span k = {s.p, 0};
            (void)fast_string(&s);
            k.n = (size_t)(s.p - k.p);
            s.p++; /* ':' */
            uint64_t n = 0;
            bool neg = false;
            struct fast_scan probe = s;
            bool number = *s.p == '-' || (*s.p >= '0' && *s.p <= '9');
            if (number && (!fast_integer(&probe, &n, &neg) || neg))
                return false;
            (void)fast_value(&s, 1);
            for (size_t i = 0; i < U_NAMES; i++) {
                if (!span_is(k, usage_names[i]))
                    continue;
                if (key[i].p)
                    return false; /* given twice */
                key[i] = k;
                num[i] = n;
                is_num[i] = number;
            }
            if (*s.p == '}')
                break;
            s.p++; /* ',' */
        }
    }
    if (!is_num[U_INPUT] || !is_num[U_OUTPUT]) {
        put(o, u.p, u.n); /* nothing to rewrite */
        return true;
    }
    if ((key[U_PROMPT].p && !is_num[U_PROMPT]) || (key[U_COMPLETION].p && !is_num[U_COMPLETION]) ||
        (key[U_TOTAL].p && !is_num[U_TOTAL]))
        return false;
    uint64_t prompt = key[U_PROMPT].p ? num[U_PROMPT] : num[U_INPUT];
    uint64_t completion = key[U_COMPLETION].p ? num[U_COMPLETION] : num[U_OUTPUT];
    uint64_t total = prompt + completion;
    if (total >= 1000000000000000ULL)
        return false;
    /* Pass 2: the members in order, input and output gone, total in its place; the names
     * usage_openai() adds go last, in the order it adds them. */
    put(o, "{", 1);
    bool first = true;
    s.p = u.p + 1;
    if (*s.p != '}') {
        for (;;) {
            const char *start = s.p;
            (void)fast_string(&s);
            struct span k = {start, (size_t)(s.p - start)};
            s.p++;
            const char *vstart = s.p;
            (void)fast_value(&s, 1);
            bool drop = span_is(k, usage_names[U_INPUT]) || span_is(k, usage_names[U_OUTPUT]);
            if (!drop) {
                if (!first)
                    put(o, ",", 1);
                first = false;
                put(o, start, (size_t)(vstart - start));
                if (span_is(k, usage_names[U_TOTAL]))
                    put_uint(o, total);
                else
                    put(o, vstart, (size_t)(s.p - vstart));
            }
            if (*s.p == '}')
                break;
            s.p++;
        }
    }
    const struct {
        int name;
        uint64_t value;
    } added[] = {{U_PROMPT, num[U_INPUT]}, {U_COMPLETION, num[U_OUTPUT]}, {U_TOTAL, total}};
    for (size_t i = 0; i < sizeof(added) / sizeof(added[0]); i++) {
        if (key[added[i].name].p)
            continue;
        if (!first)
            put(o, ",", 1);
        first = false;
        put(o, usage_names[added[i].name], strlen(usage_names[added[i].name]));
        put(o, ":", 1);
        put_uint(o, added[i].value);
    }
    put(o, "}", 1);
    return true;
}

/* @return the rewritten body, or NULL with *general set when the general path decides
 * (or NULL alone when out of memory). */
static char *
fast_openai(const char *body, size_t len, size_t *out_len, bool *general)
{
    *general = true;
    struct fast_scan s = {body, body + len};
    if (len < 2 || body[0] != '{')
        return NULL;
    s.p++;
    struct span usage = {NULL, 0}, created = {NULL, 0};
    uint64_t created_v = 0;
    if (*s.p != '}') {
        for (;;) {
            const char *k = s.p;
            if (s.p >= s.end || *s.p != '"' || !fast_string(&s) || s.p >= s.end || *s.p != ':')
                return NULL;
            struct span key = {k, (size_t)(s.p - k)};
            s.p++;
            const char *v = s.p;
            bool is_usage = span_is(key, "\"usage\""), is_created = span_is(key, "\"created\"");
            if ((is_usage && usage.p) || (is_created && created.p))
                return NULL; /* given twice: cJSON reads the first, the rewrite is general */
            if (!fast_value(&s, 1))
                return NULL;
            if (is_usage)
                usage = (struct span){v, (size_t)(s.p - v)};
            if (is_created) {
                created = (struct span){v, (size_t)(s.p - v)};
                struct fast_scan probe = {v, s.p};
                bool neg = false;
                if (*v == '-' || (*v >= '0' && *v <= '9')) {
                    if (!fast_integer(&probe, &created_v, &neg) || neg || created_v == 0)
                        return NULL; /* now() replaces it */
                } else {
                    created.p = NULL; /* not a number: kept as it is */
                }
            }
            if (s.p >= s.end)
                return NULL;
            if (*s.p == '}')
                break;
            if (*s.p != ',')
                return NULL;
            s.p++;
        }
    }
    s.p++; /* the closing brace; cJSON ignores what follows the value */
    size_t doc_len = (size_t)(s.p - body);
    if (created.p && created_v > FAST_SECONDS_CEILING) {
        created_v /= 1000; /* milliseconds: floor(v / 1000) */
        if (created_v == 0 || created_v > FAST_SECONDS_CEILING)
            return NULL; /* now() replaces it */
    } else {
        created.p = NULL; /* seconds: kept as they are */
    }
    if (usage.p && usage.p[0] != '{')
        usage.p = NULL; /* not an object: kept as it is */

    struct out_buf o = {NULL, 0, doc_len + 128};
    o.p = malloc(o.cap + 1);
    if (!o.p) {
        *general = false;
        return NULL;
    }
    /* The body with at most two members' values replaced, in the order they appear. */
    struct span cut[2] = {usage, created};
    if (cut[0].p && cut[1].p && cut[1].p < cut[0].p) {
        cut[0] = created;
        cut[1] = usage;
    }
    const char *from = body;
    for (size_t i = 0; i < 2; i++) {
        if (!cut[i].p)
            continue;
        put(&o, from, (size_t)(cut[i].p - from));
        if (cut[i].p == usage.p) {
            if (!fast_usage(usage, &o)) {
                free(o.p);
                return NULL;
            }
        } else {
            put_uint(&o, created_v);
        }
        from = cut[i].p + cut[i].n;
    }
    put(&o, from, (size_t)(body + doc_len - from));
    if (o.len > o.cap) {
        free(o.p);
        return NULL; /* cannot happen (the usage grows by less than 128), but never overrun */
    }
    o.p[o.len] = '\0';
    *out_len = o.len;
    *general = false;
    return o.p;
}

char *
qp_completion_openai(const char *body, size_t len, size_t *out_len)
{
    bool general = false;
    char *out = fast_openai(body, len, out_len, &general);
    if (out || !general)
        return out;
    return qp_completion_openai_general(body, len, out_len);
}
