#include "headers.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

QP_MUTANT_EDITABLE struct qp_header_policy qp_header_policy = {
    .rows =
        {
#define QP_HEADER_ROW(name, flags, why) {name, flags},
            QP_HEADER_MAP(QP_HEADER_ROW)
#undef QP_HEADER_ROW
        },
    .connection_listed = QP_HDR_HOP,
    .refuse_duplicates = true,
    .refuse_control_chars = true,
};

unsigned
qp_header_flags(const char *name)
{
    /* The first letter first (equal under strcasecmp only if equal with bit 0x20 set):
     * this runs for every header of every request and answer, and most are in no row. */
    unsigned char first = (unsigned char)(name[0] | 0x20);
    for (size_t i = 0; i < QP_HEADER_ROWS; i++) {
        const char *row = qp_header_policy.rows[i].name;
        if ((unsigned char)(row[0] | 0x20) == first && strcasecmp(row, name) == 0)
            return qp_header_policy.rows[i].flags;
    }
    return 0;
}

static bool
is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Calls back for each trimmed item of a comma-separated list until it returns true. */
static bool
list_contains(const char *list, const char *item, bool nocase, bool ignore_slash)
{
    size_t ilen = strlen(item);
    if (ignore_slash && ilen && item[ilen - 1] == '/')
        ilen--;
    const char *p = list;
    while (p && *p) {
        while (is_space(*p) || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && is_space(end[-1]))
            end--;
        if (ignore_slash && end > start && end[-1] == '/')
            end--;
        size_t n = (size_t)(end - start);
        if (n && n == ilen &&
            (nocase ? strncasecmp(start, item, n) == 0 : strncmp(start, item, n) == 0))
            return true;
    }
    return false;
}

bool
qp_header_in_connection(const char *name, const char *connection)
{
    return connection && list_contains(connection, name, true, false);
}

bool
qp_header_forward_request(const char *name, const char *connection)
{
    if (qp_header_flags(name) & (QP_HDR_HOP_REQ | QP_HDR_REQ_OWN))
        return false;
    /* Authorization is end-to-end: never dropped even when a Connection value names it. */
    if (strcasecmp(name, "Authorization") == 0)
        return true;
    return !(qp_header_policy.connection_listed & QP_HDR_HOP_REQ) ||
           !qp_header_in_connection(name, connection);
}

bool
qp_header_is_client_identity(const char *name)
{
    return strncasecmp(name, "X-Stainless-", 12) == 0 || strcasecmp(name, "User-Agent") == 0;
}

bool
qp_header_forward_response(const char *name, const char *connection)
{
    if (qp_header_flags(name) & (QP_HDR_HOP_RES | QP_HDR_RES_OWN))
        return false;
    return !(qp_header_policy.connection_listed & QP_HDR_HOP_RES) ||
           !qp_header_in_connection(name, connection);
}

bool
qp_header_forward_response_of(const char *name, const struct curl_slist *lines)
{
    if (!qp_header_forward_response(name, NULL))
        return false;
    if (!(qp_header_policy.connection_listed & QP_HDR_HOP_RES))
        return true;
    static const char conn[] = "Connection:";
    for (; lines; lines = lines->next) {
        if (strncasecmp(lines->data, conn, sizeof(conn) - 1) == 0 &&
            qp_header_in_connection(name, lines->data + sizeof(conn) - 1))
            return false;
    }
    return true;
}

bool
qp_cors_origin_allowed(const char *allowed, const char *origin)
{
    if (!allowed || !origin || !*origin)
        return false;
    if (list_contains(allowed, "*", false, false))
        return true;
    return list_contains(allowed, origin, true, true);
}

/* RFC 9110 5.6.2 tchar. */
static bool
is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

const char *
qp_header_configured_check(const char *line, size_t len)
{
    size_t n = 0;
    while (n < len && is_tchar((unsigned char)line[n]))
        n++;
    if (n == 0 || n >= len || line[n] != ':')
        return "expected 'Name: value' with a token name";
    if (n >= 128)
        return "the name is over 127 bytes";
    for (size_t i = n + 1; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return "the value holds a control byte";
    }
    char name[128];
    memcpy(name, line, n);
    name[n] = '\0';
    if (strcasecmp(name, "Authorization") == 0)
        return "Authorization is the caller's credential";
    if (strcasecmp(name, "Content-Type") == 0 ||
        (qp_header_flags(name) & (QP_HDR_HOP_REQ | QP_HDR_REQ_OWN)))
        return "the proxy or libcurl sets that header";
    return NULL;
}

bool
qp_header_line_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

bool
qp_cookie_value_ok(const char *token, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)token[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == ',' || c == ';' || c == '\\')
            return false;
    }
    return len > 0;
}

const char *
qp_upstream_headers_check(const char *value)
{
    const char *p = value;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *why = qp_header_configured_check(p, n);
        if (why)
            return why;
        if (!nl)
            return NULL;
        p = nl + 1;
    }
}
