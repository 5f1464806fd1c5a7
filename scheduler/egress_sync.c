/* egress_sync.c -- a sandbox's egress policy on its host follows storage:
 * its own egressPolicy, else its group's, resolved to the policy's rules.
 * A create carries it; afterwards every reconcile pass compares what was
 * last applied with what storage says now and PUTs the difference to the
 * agent (a policy replaced, a sandbox or group pointed at another one), so
 * running sandboxes follow within a pass or two, without a restart.  */
#include "scheduler/internal.h"

#include <string.h>

/* runtime id -> canonical text of the policy last applied on its host.
 * In memory: after a restart each sandbox is sent its policy once more
 * (the agent's PUT is idempotent).  */
static pthread_mutex_t applied_mu = PTHREAD_MUTEX_INITIALIZER;
static json_t *applied;

#define APPLIED_MAX 100000

json_t *sandbox_egress_policy(st_db_t *db, const st_resource_t *group, const st_resource_t *sandbox,
                              sbx_error_t *err)
{
    json_t *props = json_object_get(sandbox->body, "properties");
    const char *name = json_string_value(json_object_get(props, "egressPolicy"));
    if (!name && group)
        name = json_string_value(
            json_object_get(json_object_get(group->body, "properties"), "egressPolicy"));
    if (!name || !sandbox->parent_id)
        return json_null();
    _cleanup_free_ char *id = xasprintf("%s/egressPolicies/%s", sandbox->parent_id, name);
    st_resource_t p = {0};
    sbx_error_t gerr = {0};
    if (st_resource_get(db, id, &p, &gerr) < 0) {
        /* a policy that does not exist allows nothing */
        if (gerr.code == SBX_ERR_NOT_FOUND)
            return json_null();
        if (err)
            *err = gerr;
        return NULL;
    }
    json_t *pp = json_object_get(p.body, "properties");
    json_t *j = json_pack("{s:O*,s:O*}", "defaultAction", json_object_get(pp, "defaultAction"),
                          "rules", json_object_get(pp, "rules"));
    st_resource_done(&p);
    return j;
}

static bool already_applied(const char *rid, const char *text)
{
    pthread_mutex_lock(&applied_mu);
    const char *have = json_string_value(json_object_get(applied, rid));
    bool same = have && strcmp(have, text) == 0;
    pthread_mutex_unlock(&applied_mu);
    return same;
}

static void remember(const char *rid, const char *text)
{
    pthread_mutex_lock(&applied_mu);
    if (!applied || json_object_size(applied) >= APPLIED_MAX) {
        json_decref(applied);
        applied = json_object();
    }
    json_object_set_new(applied, rid, json_string(text));
    pthread_mutex_unlock(&applied_mu);
}

void sched_egress_sync(sched_t *s, const st_host_t *h, const st_resource_t *sb,
                       const st_resource_t *group, sbx_state_t actual)
{
    const char *rid = sb->runtime_id;
    if (!rid || (actual != SBX_STATE_RUNNING && actual != SBX_STATE_SUSPENDED))
        return;
    _cleanup_json_ json_t *p = sandbox_egress_policy(s->db, group, sb, NULL);
    if (!p)
        return;
    _cleanup_free_ char *text = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!text || already_applied(rid, text))
        return;
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/egress", rid);
    sched_reply_t r;
    /* 404: the sandbox is gone (reconcile sees to it) or the agent predates
     * egress; either way asking again every pass would change nothing */
    if (sched_call(s, h->url, "PUT", path, NULL, "application/json", text, strlen(text), 5000,
                   &r) == 0 &&
        (r.status == 200 || r.status == 404))
        remember(rid, text);
    else
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "sandbox %s: egress policy not applied on %s (%ld)",
                sb->name, h->name, r.status);
    sched_reply_done(&r);
}

int sched_egress_for(st_db_t *db, const st_resource_t *sandbox, json_t **out, sbx_error_t *err)
{
    st_resource_t group = {0};
    int have = sched_read_group(db, sandbox, &group, err);
    if (have < 0)
        return -1;
    *out = sandbox_egress_policy(db, have ? &group : NULL, sandbox, err);
    st_resource_done(&group);
    return *out ? 0 : -1;
}

void sched_egress_applied(const char *rid, const json_t *policy)
{
    _cleanup_free_ char *text =
        json_dumps(policy ? policy : json_null(), JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (rid && text)
        remember(rid, text);
}
