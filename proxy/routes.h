/**
 * @file routes.h
 * @brief The route table: which path is served by what, with which methods.
 *
 * server.c routes on it; it is data so that a mutant build can edit it once at start-up
 * (mutant.h) while the routing code has no mutant branch.
 */
#ifndef QP_ROUTES_H
#define QP_ROUTES_H

#include <stdbool.h>

#include "mutant.h"
#include "request.h"

/** One route: a path as sent, what serves it, and its methods besides OPTIONS. */
struct qp_route_row {
    const char *path;
    enum qp_route route;
    bool openai_alias;  /**< the /v1/ form: answers in the OpenAI shapes (HTTP-4) */
    const char *method; /**< the one method served besides OPTIONS (and HEAD) */
    bool head;          /**< HEAD is served too, as GET without a body (INPUT-4) */
};

enum { QP_ROUTE_ROWS = 8 };

/** How a request is taken in before it is routed and sent on. */
struct qp_intake_policy {
    bool route_on_raw_path; /**< INPUT-3: route on the path as sent, never a decoded one */
    bool validate_chat;     /**< ERR-1: a chat body is validated before it goes upstream */
};

/** The policy (const but in mutant builds, whose qp_mutant_apply() may edit it). */
extern QP_MUTANT_EDITABLE struct qp_intake_policy qp_intake_policy;

/** The routes (const but in mutant builds, whose qp_mutant_apply() may edit them). */
extern QP_MUTANT_EDITABLE struct qp_route_row qp_routes[QP_ROUTE_ROWS];

#endif
