#include "conf_requirements.h"

#include <strings.h>

static const struct conf_requirement requirements[CONF_REQ_COUNT] = {
#define CONF_REQ_ROW(sym, id, level, summary) [CONF_REQ_##sym] = {id, CONF_##level, summary},
    CONF_REQUIREMENT_MAP(CONF_REQ_ROW)
#undef CONF_REQ_ROW
};

const struct conf_requirement *
conf_requirement(enum conf_req req)
{
    return &requirements[req];
}

const char *
conf_level_name(enum conf_level level)
{
    switch (level) {
    case CONF_MUST:
        return "MUST";
    case CONF_SHOULD:
        return "SHOULD";
    case CONF_MAY:
        return "MAY";
    }
    return "?";
}

bool
conf_requirement_find(const char *id, enum conf_req *out)
{
    for (int i = 0; i < CONF_REQ_COUNT; i++) {
        if (strcasecmp(requirements[i].id, id) == 0) {
            *out = (enum conf_req)i;
            return true;
        }
    }
    return false;
}
