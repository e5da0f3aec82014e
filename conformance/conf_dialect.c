#include "conf_dialect.h"

#include <string.h>

const struct conf_dialect conf_dialect_qwen_v1 = {
    .name = "qwen-v1",
    .models_path = "/api/models",
    .completion_path = "/api/chat/completions",
    .chat_new_path = NULL,
    .transforms_body = false,
};

const struct conf_dialect conf_dialect_qwen_v2 = {
    .name = "qwen-v2",
    .models_path = "/api/v2/models/",
    .completion_path = "/api/v2/chat/completions",
    .chat_new_path = "/api/v2/chats/new",
    .transforms_body = true,
};

static const struct conf_dialect *const dialects[] = {&conf_dialect_qwen_v1, &conf_dialect_qwen_v2};

const struct conf_dialect *
conf_dialect_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(dialects) / sizeof(dialects[0]); i++) {
        if (strcmp(dialects[i]->name, name) == 0)
            return dialects[i];
    }
    return NULL;
}

const char *
conf_dialect_names(void)
{
    return "\"qwen-v1\", \"qwen-v2\"";
}

/* @return true when @p path up to its query is @p want. A model-list path with a trailing
 * slash also matches without it (the mock answers both). */
static bool
same_path(const char *path, const char *want)
{
    size_t len = strcspn(path, "?");
    size_t wlen = strlen(want);
    if (wlen == len && strncmp(path, want, len) == 0)
        return true;
    return wlen > 1 && want[wlen - 1] == '/' && len == wlen - 1 && strncmp(path, want, len) == 0;
}

bool
conf_dialect_is_attempt(const struct conf_dialect *dialect, const char *path)
{
    return path &&
           (same_path(path, dialect->models_path) || same_path(path, dialect->completion_path));
}

bool
conf_dialect_is_chat_new(const struct conf_dialect *dialect, const char *path)
{
    return path && dialect->chat_new_path && same_path(path, dialect->chat_new_path);
}

bool
conf_dialect_is_completion(const struct conf_dialect *dialect, const char *path)
{
    return path && same_path(path, dialect->completion_path);
}

bool
conf_dialect_is_v2(const struct conf_dialect *dialect)
{
    return dialect->chat_new_path != NULL;
}
