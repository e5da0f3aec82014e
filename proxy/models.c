#include "models.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <string.h>

static atomic_ulong conversions;

unsigned long
qp_models_openai_conversions(void)
{
    return atomic_load(&conversions);
}

bool
qp_models_usable(const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    bool ok = cJSON_IsObject(root) && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "data"));
    cJSON_Delete(root);
    return ok;
}

char *
qp_models_unwrap(const char *body, size_t len, size_t *out_len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    cJSON *list = data;
    if (cJSON_IsObject(data)) {
        list = cJSON_GetObjectItemCaseSensitive(data, "data");
        if (!cJSON_IsArray(list))
            list = cJSON_GetObjectItemCaseSensitive(data, "models");
    }
    char *out = NULL;
    cJSON *wrap = NULL;
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(root, "success")) || !cJSON_IsArray(list))
        goto done;
    wrap = cJSON_CreateObject();
    cJSON *copy = cJSON_DetachItemViaPointer(list == data ? root : data, list);
    if (!wrap || !cJSON_AddItemToObject(wrap, "data", copy)) {
        cJSON_Delete(copy);
        goto done;
    }
    out = cJSON_PrintUnformatted(wrap);
    if (out)
        *out_len = strlen(out);
done:
    cJSON_Delete(wrap);
    cJSON_Delete(root);
    return out;
}

/* Sets @p name to a fresh item, replacing whatever was there. */
static bool
put(cJSON *obj, const char *name, cJSON *item)
{
    if (!item)
        return false;
    if (cJSON_GetObjectItemCaseSensitive(obj, name))
        return cJSON_ReplaceItemInObjectCaseSensitive(obj, name, item);
    return cJSON_AddItemToObject(obj, name, item);
}

char *
qp_models_openai(const char *body, size_t len, size_t *out_len)
{
    atomic_fetch_add(&conversions, 1);
    char *out = NULL;
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *list = cJSON_CreateObject();
    cJSON *data = NULL;
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsArray(src) || !list)
        goto done;
    if (!cJSON_AddStringToObject(list, "object", "list"))
        goto done;
    data = cJSON_AddArrayToObject(list, "data");
    if (!data)
        goto done;
    const cJSON *m = NULL;
    cJSON_ArrayForEach(m, src)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (!cJSON_IsObject(m) || !cJSON_IsString(id))
            continue;
        cJSON *e = cJSON_Duplicate(m, 1);
        if (!e)
            goto done;
        cJSON_AddItemToArray(data, e);
        const cJSON *created = cJSON_GetObjectItemCaseSensitive(e, "created");
        const cJSON *owner = cJSON_GetObjectItemCaseSensitive(e, "owned_by");
        if (!put(e, "object", cJSON_CreateString("model")))
            goto done;
        if (!cJSON_IsNumber(created) && !put(e, "created", cJSON_CreateNumber(0)))
            goto done;
        if (!cJSON_IsString(owner) && !put(e, "owned_by", cJSON_CreateString("qwen")))
            goto done;
    }
    out = cJSON_PrintUnformatted(list);
    if (out)
        *out_len = strlen(out);
done:
    cJSON_Delete(root);
    cJSON_Delete(list);
    return out;
}

char *
qp_models_pick(const char *list, size_t len, const char *id, size_t *out_len, bool *nomem)
{
    *nomem = false;
    cJSON *root = cJSON_ParseWithLength(list, len);
    const cJSON *model;
    char *out = NULL;
    cJSON_ArrayForEach(model, cJSON_GetObjectItemCaseSensitive(root, "data"))
    {
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(model, "id");
        if (cJSON_IsString(mid) && strcmp(mid->valuestring, id) == 0) {
            out = cJSON_PrintUnformatted(model);
            *nomem = out == NULL;
            break;
        }
    }
    if (out)
        *out_len = strlen(out);
    cJSON_Delete(root);
    return out;
}
