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

const char *sched_sandbox_runtime_id(const st_resource_t *sandbox)
{
    return json_string_value(json_object_get(sandbox->body, "_runtimeId"));
}

/* A sandbox property, else the group's sandboxDefaults, else NULL.  */
static json_t *effective(const json_t *props, const json_t *defaults, const char *key)
{
    json_t *v = json_object_get(props, key);
    return v ? v : json_object_get(defaults, key);
}

static double body_number(const st_resource_t *r, const char *key, double dflt)
{
    json_t *v = json_object_get(r->body, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

void sched_sandbox_need(const st_resource_t *sandbox, sched_need_t *out)
{
    out->cpu = body_number(sandbox, "_cpu", 1.0);
    out->memory_mib = body_number(sandbox, "_memoryMiB", 256.0);
    /* Rows placed before disk and pids were counted hold the defaults.  */
    out->disk_mib = body_number(sandbox, "_diskMiB", SANDBOX_DISK_MIB);
    out->pids = body_number(sandbox, "_pids", SANDBOX_PIDS);
}

void sched_spec_need(const json_t *spec, sched_need_t *out)
{
    out->cpu = json_number_value(json_object_get(spec, "cpu"));
    out->memory_mib = json_number_value(json_object_get(spec, "memoryMiB"));
    out->disk_mib = json_number_value(json_object_get(spec, "diskMiB"));
    out->pids = SANDBOX_PIDS;
}

void sched_need_store(json_t *body, const sched_need_t *need)
{
    json_object_set_new(body, "_cpu", json_real(need->cpu));
    json_object_set_new(body, "_memoryMiB", json_real(need->memory_mib));
    json_object_set_new(body, "_diskMiB", json_real(need->disk_mib));
    json_object_set_new(body, "_pids", json_real(need->pids));
}

json_t *sched_sandbox_spec_in(const st_resource_t *group, const st_resource_t *sandbox)
{
    json_t *defaults = group ? json_object_get(props_of(group), "sandboxDefaults") : NULL;
    json_t *props = props_of(sandbox);
    json_t *image = effective(props, defaults, "image");
    json_t *cpu = effective(props, defaults, "cpu");
    json_t *mem = effective(props, defaults, "memoryMiB");
    json_t *disk = effective(props, defaults, "diskMiB");
    json_t *iso = effective(props, defaults, "isolation");
    json_t *spec = json_pack("{s:s,s:s,s:f,s:I,s:I}", "image",
                             image ? json_string_value(image) : IMG_DEFAULT_REF, "driver",
                             iso ? json_string_value(iso) : "process", "cpu",
                             cpu ? json_number_value(cpu) : 1.0, "memoryMiB",
                             (json_int_t)(mem ? json_number_value(mem) : 256), "diskMiB",
                             (json_int_t)(disk ? json_number_value(disk) : SANDBOX_DISK_MIB));
    json_t *env = json_object();
    json_object_update(env, json_object_get(defaults, "env"));
    json_object_update(env, json_object_get(props, "env"));
    json_object_set_new(spec, "env", env);
    return spec;
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
    sbx_error_t gerr = {0};
    if (st_resource_get(db, sandbox->parent_id, group, &gerr) == 0)
        return 1;
    if (gerr.code == SBX_ERR_NOT_FOUND)
        return 0;
    if (err)
        *err = gerr;
    return -1;
}

json_t *sched_sandbox_spec(st_db_t *db, const st_resource_t *sandbox, sbx_error_t *err)
{
    st_resource_t group = {0};
    int have = sched_read_group(db, sandbox, &group, err);
    if (have < 0)
        return NULL;
    json_t *spec = sched_sandbox_spec_in(have ? &group : NULL, sandbox);
    st_resource_done(&group);
    return spec;
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
    static const char *const states[] = {"Creating",   "Starting",  "Running",
                                         "Suspending", "Suspended", "Resuming",
                                         "Stopping",   "Stopped",   "Failed"};
    const char *st = json_string_value(json_object_get(reply, "state"));
    for (size_t i = 0; st && i < ARRAY_SIZE(states); i++)
        if (strcmp(st, states[i]) == 0)
            return states[i];
    return NULL;
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
    _cleanup_free_ char *path =
        xasprintf("/v1/sandboxes/%s/%s", sched_sandbox_runtime_id(sb), action);
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
    return sched_sandbox_update(s->db, sb->id, patch, NULL, err);
}
