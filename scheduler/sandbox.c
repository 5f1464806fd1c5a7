/* sandbox.c -- what the scheduler reads and writes of a sandbox: its
 * runtime id and recorded need, the agent spec built from it and its
 * group's defaults, its reported properties, and what agents report of it.  */
#include "scheduler/internal.h"

#include <string.h>

#include "api/api.h"
#include "image/image.h"

static json_t *props_of(const st_resource_t *r)
{
    return json_object_get(r->body, "properties");
}

/* A sandbox property, else the group's sandboxDefaults, else NULL.  */
static json_t *effective(const json_t *props, const json_t *defaults, const char *key)
{
    json_t *v = json_object_get(props, key);
    return v ? v : json_object_get(defaults, key);
}

void sched_spec_of(const st_resource_t *group, const st_resource_t *sandbox, sbx_spec_t *out)
{
    json_t *defaults = group ? json_object_get(props_of(group), "sandboxDefaults") : NULL;
    json_t *props = props_of(sandbox);
    json_t *v;
    sbx_spec_init(out);
    if ((v = effective(props, defaults, "image")) && json_is_string(v))
        out->image = xstrdup(json_string_value(v));
    if ((v = effective(props, defaults, "isolation")))
        out->driver = sbx_driver_parse(json_string_value(v)) ?: out->driver;
    if ((v = effective(props, defaults, "cpu")))
        out->cpu = json_number_value(v);
    if ((v = effective(props, defaults, "memoryMiB")))
        out->memory_mib = (int64_t)json_number_value(v);
    if ((v = effective(props, defaults, "diskMiB")))
        out->disk_mib = (int64_t)json_number_value(v);
    json_object_update(out->env, json_object_get(defaults, "env"));
    json_object_update(out->env, json_object_get(props, "env"));
}

json_t *sched_spec_json(const sbx_spec_t *spec)
{
    return sbx_spec_json(spec, IMG_DEFAULT_REF);
}

/* The sandbox's group: 1 read into *group, 0 when it has none or it is
 * gone (its sandboxes are being deleted with it: server defaults do), -1
 * when storage could not read it, which must not pass for "no group" or
 * the sandbox would start from the wrong image, limits and environment.  */
int sched_read_group(st_db_t *db, const st_resource_t *sandbox, st_resource_t *group,
                     sbx_error_t *err)
{
    if (!sandbox->parent_id)
        return 0;
    return st_resource_lookup(db, sandbox->parent_id, group, err);
}

int sched_sandbox_spec(st_db_t *db, const st_resource_t *sandbox, sbx_spec_t *out, sbx_error_t *err)
{
    st_resource_t group = {0};
    int have = sched_read_group(db, sandbox, &group, err);
    if (have < 0)
        return -1;
    sched_spec_of(have ? &group : NULL, sandbox, out);
    st_resource_done(&group);
    return 0;
}

/* The environment label of a group: its environment's name, or "default"
 * for a group linked to none.  */
char *sched_group_environment(const st_resource_t *group)
{
    const char *env = json_string_value(json_object_get(props_of(group), "environmentId"));
    const char *slash = env ? strrchr(env, '/') : NULL;
    char *label = xstrdup(slash && slash[1] ? slash + 1 : "default");
    sbx_str_lower(label);
    return label;
}

int sched_sandbox_update(st_db_t *db, const char *id, json_t *patch, const char *host_id,
                         sbx_error_t *err)
{
    st_tx_t *tx = st_begin(db, err);
    if (!tx)
        return -1;
    st_resource_t r = {0};
    int ret = st_tx_resource_get(tx, id, &r, err);
    if (ret == 0) {
        json_object_update(props_of(&r), patch);
        if (host_id) {
            free(r.host_id);
            r.host_id = xstrdup(host_id);
        }
        ret = st_tx_resource_put(tx, &r, err);
    }
    if (ret == 0)
        ret = st_commit(TAKE_PTR(tx), err);
    st_rollback(tx);
    st_resource_done(&r);
    return ret;
}

/* ---- what agents report ---- */

const char *sched_agent_state(const json_t *reply)
{
    sbx_state_t st = sbx_state_parse(json_string_value(json_object_get(reply, "state")));
    return sbx_state_from_agent(st) ? sbx_state_name(st) : NULL;
}

json_t *sched_agent_time(const json_t *reply, const char *key)
{
    json_t *v = json_object_get(reply, key);
    const char *t = json_string_value(v);
    if (!t || json_string_length(v) > 40)
        return NULL;
    for (const char *p = t; *p; p++)
        if (!((*p >= '0' && *p <= '9') || strchr("-:.TZ+", *p)))
            return NULL;
    return v;
}

json_t *sched_agent_message(const json_t *reply)
{
    json_t *v = json_object_get(reply, "message");
    const char *m = json_string_value(v);
    if (!m)
        return NULL;
    size_t n = strlen(m);
    if (n <= AGENT_MESSAGE_MAX)
        return json_string(m);
    n = AGENT_MESSAGE_MAX; /* cut at a character boundary */
    while (n > 0 && ((unsigned char)m[n] & 0xC0) == 0x80)
        n--;
    return json_stringn(m, n);
}

int sched_sandbox_lifecycle(sched_t *s, const char *host_url, const st_resource_t *sb,
                            const char *action, sched_reply_t *out, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/%s", sb->runtime_id, action);
    sched_call(s, host_url, "POST", path, NULL, "application/json", "{}", 2,
               s->cfg.agent_timeout_ms, out);
    if (out->status != 200)
        return 0;
    _cleanup_json_ json_t *reply = sched_reply_json(out);
    const char *state = sched_agent_state(reply);
    _cleanup_json_ json_t *patch =
        json_pack("{s:s,s:s}", "state", state ? state : "Running", "statusMessage", "");
    json_t *last = sched_agent_time(reply, "lastActivityAt");
    if (last)
        json_object_set(patch, "lastActivityAt", last);
    bool wakes = strcmp(action, "resume") == 0 || strcmp(action, "start") == 0;
    if (wakes && (!state || strcmp(state, "Running") == 0) &&
        sched_lifetime_restarts_on_resume(s->db, sb))
        sched_lifetime_restart(patch, sched_now(s));
    return sched_sandbox_update(s->db, sb->id, patch, NULL, err);
}
