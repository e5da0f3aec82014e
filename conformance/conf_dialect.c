#include "conf_dialect.h"

#include <string.h>

const struct conf_dialect conf_dialect_qwen_v1 = {
    .name = "qwen-v1",
    .models_path = "/api/models",
    .completion_path = "/api/chat/completions",
};

/* @return true when @p path up to its query is @p want. */
static bool
same_path(const char *path, const char *want)
{
    size_t len = strcspn(path, "?");
    return strlen(want) == len && strncmp(path, want, len) == 0;
}

bool
conf_dialect_is_attempt(const struct conf_dialect *dialect, const char *path)
{
    return path &&
           (same_path(path, dialect->models_path) || same_path(path, dialect->completion_path));
}
