#include "mock_knobs.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <string.h>

#include "mock_scenario.h"

/* The C type of each knob type's field: a row whose field has another type does not
 * compile (the parser writes the field through its offset). */
#define KNOB_CTYPE_INT int
#define KNOB_CTYPE_UINT unsigned
#define KNOB_CTYPE_BOOL bool
#define KNOB_CTYPE_TRUE bool
#define KNOB_CTYPE_STRING char *
#define KNOB_CTYPE_EOL enum mock_eol
#define KNOB_CTYPE_COALESCE int
#define KNOB_CTYPE_DELTAS int
#define KNOB_CTYPE_HTML enum mock_html
#define KNOB_CTYPE_INBAND enum mock_inband
#define KNOB_CTYPE_PHASE enum mock_think_phase
#define KNOB_CTYPE_HEADERS struct cJSON *
#define KNOB_CTYPE_STREAM struct mock_stream_opts

#define STEP_TYPE_CHECK(key, type, field, lo, hi, doc)                                             \
    _Static_assert(_Generic(((struct mock_step *)0)->field, KNOB_CTYPE_##type : 1, default : 0),   \
                   "step key " key ": its field's type does not match its knob type");
#define STREAM_TYPE_CHECK(key, type, field, lo, hi, doc)                                           \
    _Static_assert(                                                                                \
        _Generic(((struct mock_stream_opts *)0)->field, KNOB_CTYPE_##type : 1, default : 0),       \
        "stream key " key ": its field's type does not match its knob type");
MOCK_STEP_KEYS(STEP_TYPE_CHECK)
MOCK_STREAM_KEYS(STREAM_TYPE_CHECK)
#undef STEP_TYPE_CHECK
#undef STREAM_TYPE_CHECK

static const struct mock_knob step_rows[] = {
#define STEP_ROW(key, type, field, lo, hi, doc)                                                    \
    {key, MOCK_KNOB_##type, offsetof(struct mock_step, field), lo, hi, doc},
    MOCK_STEP_KEYS(STEP_ROW)
#undef STEP_ROW
};

static const struct mock_knob stream_rows[] = {
#define STREAM_ROW(key, type, field, lo, hi, doc)                                                  \
    {key, MOCK_KNOB_##type, offsetof(struct mock_stream_opts, field), lo, hi, doc},
    MOCK_STREAM_KEYS(STREAM_ROW)
#undef STREAM_ROW
};
/* mock_stream_opts.given has a bit per stream key. */
_Static_assert(sizeof stream_rows / sizeof stream_rows[0] <= 64,
               "too many stream keys for `given`");

const struct mock_knob_table mock_step_knobs = {step_rows, sizeof step_rows / sizeof step_rows[0],
                                                ""};
const struct mock_knob_table mock_stream_knobs = {
    stream_rows, sizeof stream_rows / sizeof stream_rows[0], "stream."};

const struct mock_knob *
mock_knob_find(const struct mock_knob_table *table, const char *key)
{
    for (size_t i = 0; i < table->count; i++) {
        if (strcmp(table->rows[i].key, key) == 0)
            return &table->rows[i];
    }
    return NULL;
}

const char *const *
mock_knob_names(enum mock_knob_type type, size_t *count)
{
    static const char *const html[] = {
        [MOCK_HTML_NONE] = "none",       [MOCK_HTML_CAPTCHA] = "captcha", [MOCK_HTML_WAF] = "waf",
        [MOCK_HTML_GATEWAY] = "gateway", [MOCK_HTML_WAF200] = "waf200",
    };
    static const char *const inband[] = {
        [MOCK_INBAND_NONE] = "none",
        [MOCK_INBAND_WAF] = "waf",
        [MOCK_INBAND_QUOTA] = "quota",
        [MOCK_INBAND_CAPTCHA] = "captcha",
        [MOCK_INBAND_IN_PROGRESS] = "in_progress",
        [MOCK_INBAND_EXPIRED] = "expired",
        [MOCK_INBAND_ERROR] = "error",
    };
    static const char *const phase[] = {
        [MOCK_THINK_NONE] = "none",
        [MOCK_THINK_SUMMARY] = "thinking_summary",
        [MOCK_THINK_THINK] = "think",
    };
    if (type == MOCK_KNOB_HTML) {
        *count = sizeof html / sizeof html[0];
        return html;
    }
    if (type == MOCK_KNOB_INBAND) {
        *count = sizeof inband / sizeof inband[0];
        return inband;
    }
    if (type == MOCK_KNOB_PHASE) {
        *count = sizeof phase / sizeof phase[0];
        return phase;
    }
    *count = 0;
    return NULL;
}

void
mock_knob_values(const struct mock_knob *k, char *out, size_t len)
{
    size_t n = 0, used = 0;
    const char *const *names = NULL;
    switch (k->type) {
    case MOCK_KNOB_INT:
    case MOCK_KNOB_UINT:
        snprintf(out, len, "an integer %lld..%lld", k->lo, k->hi);
        return;
    case MOCK_KNOB_COALESCE:
        snprintf(out, len, "an integer %lld..%lld, or true/false", k->lo, k->hi);
        return;
    case MOCK_KNOB_BOOL:
    case MOCK_KNOB_EOL:
    case MOCK_KNOB_DELTAS:
        snprintf(out, len, "true or false");
        return;
    case MOCK_KNOB_TRUE:
        snprintf(out, len, "true");
        return;
    case MOCK_KNOB_STRING:
        snprintf(out, len, "a string");
        return;
    case MOCK_KNOB_HEADERS:
        snprintf(out, len, "an object {\"Name\": \"value\"}");
        return;
    case MOCK_KNOB_STREAM:
        snprintf(out, len, "an object");
        return;
    case MOCK_KNOB_HTML:
    case MOCK_KNOB_INBAND:
    case MOCK_KNOB_PHASE:
        break;
    }
    /* "a", "b" or "c": every name but index 0 (none). */
    names = mock_knob_names(k->type, &n);
    out[0] = '\0';
    for (size_t i = 1; i < n && used < len; i++) {
        const char *sep = i == 1 ? "" : i + 1 == n ? " or " : ", ";
        int w = snprintf(out + used, len - used, "%s\"%s\"", sep, names[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

static void
print_rows(FILE *out, const struct mock_knob_table *t, bool markdown)
{
    for (size_t i = 0; i < t->count; i++) {
        const struct mock_knob *k = &t->rows[i];
        char values[96], name[48];
        mock_knob_values(k, values, sizeof values);
        snprintf(name, sizeof name, "%s%s", t->prefix, k->key);
        if (markdown)
            fprintf(out, "| `%s` | %s | %s |\n", name, values, k->doc);
        else
            fprintf(out, "  %-26s %s\n", name, values);
    }
}

void
mock_knobs_print_markdown(FILE *out)
{
    fputs("| key | value | effect |\n|---|---|---|\n", out);
    print_rows(out, &mock_step_knobs, true);
    print_rows(out, &mock_stream_knobs, true);
}

void
mock_knobs_print_help(FILE *out)
{
    fputs("Scenario step keys (POST /__mock/scenarios, --scenario FILE):\n", out);
    print_rows(out, &mock_step_knobs, false);
    print_rows(out, &mock_stream_knobs, false);
}
