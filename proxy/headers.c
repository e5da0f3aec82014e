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
};

unsigned
qp_header_flags(const char *name)
{
    for (size_t i = 0; i < QP_HEADER_ROWS; i++) {
        if (strcasecmp(qp_header_policy.rows[i].name, name) == 0)
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
