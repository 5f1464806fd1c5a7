/* routes.c -- matches an ARM request path to a route.  Segment names
 * compare case-insensitively; repeated slashes (a doubled leading one from
 * some SDK versions, an empty parent path from generic clients) and a
 * trailing slash are accepted.  */
#include "api/internal.h"

#include <string.h>

static bool seg_is(const route_t *rt, size_t i, const char *word)
{
    return i < rt->n && strcasecmp(rt->segs[i], word) == 0;
}

static int split(const char *path, route_t *rt)
{
    const char *p = path;
    while (*p == '/')
        p++;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0) { /* "a//b": ARM's front door collapses it, and so do we */
            p++;
            continue;
        }
        if (rt->n == ARRAY_SIZE(rt->segs))
            return -1;
        rt->segs[rt->n++] = xstrndup(p, len);
        if (!slash)
            break;
        p = slash + 1;
    }
    return 0;
}

/* /subscriptions/{sub}/providers/Microsoft.App/locations/{loc}/operation{Statuses,Results}/{id} */
static bool match_operation(route_t *rt)
{
    if (rt->n != 8 || !seg_is(rt, 0, "subscriptions") || !seg_is(rt, 2, "providers") ||
        !seg_is(rt, 3, API_PROVIDER) || !seg_is(rt, 4, "locations"))
        return false;
    if (seg_is(rt, 6, "operationStatuses"))
        rt->kind = R_OP_STATUS;
    else if (seg_is(rt, 6, "operationResults"))
        rt->kind = R_OP_RESULT;
    else
        return false;
    rt->sub = rt->segs[1];
    rt->loc = rt->segs[5];
    rt->op_id = rt->segs[7];
    return true;
}

/* Paths under /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/sandboxGroups */
static bool match_group_tree(route_t *rt)
{
    if (rt->n < 7 || !seg_is(rt, 0, "subscriptions") || !seg_is(rt, 2, "resourceGroups") ||
        !seg_is(rt, 4, "providers") || !seg_is(rt, 5, API_PROVIDER) ||
        !seg_is(rt, 6, "sandboxGroups"))
        return false;
    rt->sub = rt->segs[1];
    rt->rg = rt->segs[3];
    if (rt->n == 7) {
        rt->kind = R_GROUPS_BY_RG;
        return true;
    }
    rt->group = rt->segs[7];
    if (rt->n == 8) {
        rt->kind = R_GROUP;
        return true;
    }
    rt->child = api_child_kind(rt->segs[8]);
    if (!rt->child)
        return false;
    if (rt->n == 9) {
        rt->kind = R_CHILD_LIST;
        return true;
    }
    rt->child_name = rt->segs[9];
    if (rt->n == 10) {
        rt->kind = R_CHILD;
        return true;
    }
    if (rt->n == 11 && rt->child->action) {
        rt->action = rt->segs[10];
        rt->kind = R_CHILD_ACTION;
        return true;
    }
    /* A sandbox's processes/{pid} and processes/{pid}/{what}.  */
    if (rt->n <= 13 && rt->child->action && seg_is(rt, 10, "processes")) {
        rt->action = rt->segs[10];
        rt->n_action_rest = rt->n - 11;
        for (size_t i = 0; i < rt->n_action_rest; i++)
            rt->action_rest[i] = rt->segs[11 + i];
        rt->kind = R_CHILD_ACTION;
        return true;
    }
    return false;
}

int api_route_parse(const char *path, route_t *rt)
{
    memset(rt, 0, sizeof(*rt));
    if (!path || path[0] != '/' || split(path, rt) < 0)
        return -1;
    if (rt->n == 1 && seg_is(rt, 0, "openapi.json"))
        rt->kind = R_OPENAPI;
    else if (rt->n == 3 && seg_is(rt, 0, "providers") && seg_is(rt, 1, API_PROVIDER) &&
             seg_is(rt, 2, "operations"))
        rt->kind = R_OPERATIONS_LIST;
    else if (rt->n == 5 && seg_is(rt, 0, "subscriptions") && seg_is(rt, 2, "providers") &&
             seg_is(rt, 3, API_PROVIDER) && seg_is(rt, 4, "sandboxGroups")) {
        rt->kind = R_GROUPS_BY_SUB;
        rt->sub = rt->segs[1];
    } else if (!match_operation(rt) && !match_group_tree(rt))
        rt->kind = R_NONE;
    return rt->kind == R_NONE ? -1 : 0;
}

void api_route_done(route_t *rt)
{
    for (size_t i = 0; i < rt->n; i++)
        free(rt->segs[i]);
    memset(rt, 0, sizeof(*rt));
}
