#include "conf_sse.h"

#include <stdlib.h>
#include <string.h>

#define LINE_CAP (1024 * 1024)

void
conf_sse_init(struct conf_sse_parser *p)
{
    memset(p, 0, sizeof *p);
    qk_buf_init(&p->_line, LINE_CAP);
    qk_buf_init(&p->_data, 16 * LINE_CAP);
    p->_first_line = true;
}

static bool
dispatch(struct conf_sse_parser *p, int64_t now_ms)
{
    if (!p->_data_seen) {
        /* Spec: an empty data buffer resets the type and dispatches nothing. */
        free(p->_type);
        p->_type = NULL;
        p->empty_dispatches++;
        return true;
    }
    if (p->n_events == p->_alloc) {
        size_t n = p->_alloc ? p->_alloc * 2 : 32;
        struct conf_sse_event *ev = realloc(p->events, n * sizeof *ev);
        if (!ev)
            return false;
        p->events = ev;
        p->_alloc = n;
    }
    size_t len = 0;
    char *data = qk_buf_take(&p->_data, &len);
    if (!data)
        return false;
    if (len > 0 && data[len - 1] == '\n') /* the spec drops one trailing LF */
        data[--len] = '\0';
    char *type = p->_type ? p->_type : strdup("message");
    p->_type = NULL;
    p->events[p->n_events++] = (struct conf_sse_event){type, data, len, now_ms};
    p->_data_seen = false;
    return type != NULL;
}

static bool
process_line(struct conf_sse_parser *p, int64_t now_ms)
{
    const char *line = qk_buf_ptr(&p->_line);
    size_t len = qk_buf_len(&p->_line);
    if (p->_first_line) {
        p->_first_line = false;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3; /* one BOM at the very start of the stream is dropped */
            len -= 3;
        }
    }
    bool ok = true;
    if (len == 0) {
        ok = dispatch(p, now_ms);
    } else if (line[0] == ':') {
        p->comments++;
    } else {
        const char *colon = memchr(line, ':', len);
        size_t name_len = colon ? (size_t)(colon - line) : len;
        const char *value = colon ? colon + 1 : line + len;
        size_t value_len = colon ? len - name_len - 1 : 0;
        if (value_len > 0 && value[0] == ' ') {
            value++;
            value_len--;
        }
        if (name_len == 4 && memcmp(line, "data", 4) == 0) {
            ok = qk_buf_append(&p->_data, value, value_len) == QK_OK &&
                 qk_buf_append(&p->_data, "\n", 1) == QK_OK;
            p->_data_seen = true;
        } else {
            p->other_fields++;
            if (name_len == 5 && memcmp(line, "event", 5) == 0) {
                free(p->_type);
                p->_type = strndup(value, value_len);
                ok = p->_type != NULL;
            } else if (name_len == 2 && memcmp(line, "id", 2) == 0 &&
                       !memchr(value, '\0', value_len)) {
                free(p->last_event_id);
                p->last_event_id = strndup(value, value_len);
            }
            /* retry and unknown fields change nothing the suite looks at */
        }
    }
    qk_buf_reset(&p->_line);
    return ok;
}

bool
conf_sse_feed(struct conf_sse_parser *p, const char *bytes, size_t len, int64_t now_ms)
{
    for (size_t i = 0; i < len; i++) {
        char c = bytes[i];
        if (p->_after_cr) {
            p->_after_cr = false;
            if (c == '\n')
                continue; /* CRLF, even when split across two reads */
        }
        if (c == '\r' || c == '\n') {
            p->_after_cr = c == '\r';
            if (!process_line(p, now_ms))
                return false;
        } else if (qk_buf_append(&p->_line, &c, 1) != QK_OK) {
            return false;
        }
    }
    return true;
}

void
conf_sse_finish(struct conf_sse_parser *p)
{
    p->ended_inside_event = p->_data_seen || qk_buf_len(&p->_line) > 0;
    qk_buf_reset(&p->_line);
    qk_buf_reset(&p->_data);
    p->_data_seen = false;
}

void
conf_sse_free(struct conf_sse_parser *p)
{
    for (size_t i = 0; i < p->n_events; i++) {
        free(p->events[i].type);
        free(p->events[i].data);
    }
    free(p->events);
    free(p->_type);
    free(p->last_event_id);
    qk_buf_free(&p->_line);
    qk_buf_free(&p->_data);
    memset(p, 0, sizeof *p);
}

size_t
conf_utf8_sequence(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n;
    uint32_t cp;
    if (len == 0)
        return 0; /* before any read: s may point just past the end */
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

bool
conf_utf8_valid(const char *str, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = conf_utf8_sequence(str + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}
