/* sandboxes.c -- the agent's sandbox calls: health, list, get, create
 * (PUT), delete and the lifecycle actions, over the runtime and the image
 * store.
 *
 * Every call is idempotent so the scheduler can retry after any failure: PUT
 * of an existing id with the same spec returns it (200), DELETE of an absent
 * one is 204, and actions on a sandbox already in the wanted state are 200.
 * The runtime's record of a sandbox is the one record of its spec: a
 * repeated PUT is compared with it (rt_spec_compare), also after a
 * restart.  */
#include "agent/internal.h"
#include "common/model.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MAX_IMAGE_REF SBX_IMAGE_REF_MAX

static ssize_t busy_find(agent_api_t *api, const char *id)
{
    for (size_t i = 0; i < api->n_busy; i++)
        if (strcmp(api->busy[i], id) == 0)
            return (ssize_t)i;
    return -1;
}

static void id_lock(agent_api_t *api, const char *id)
{
    pthread_mutex_lock(&api->lock);
    while (busy_find(api, id) >= 0)
        pthread_cond_wait(&api->changed, &api->lock);
    if (api->n_busy == api->cap_busy) {
        api->cap_busy = api->cap_busy ? api->cap_busy * 2 : 8;
        api->busy = xrealloc(api->busy, api->cap_busy * sizeof(*api->busy));
    }
    api->busy[api->n_busy++] = xstrdup(id);
    pthread_mutex_unlock(&api->lock);
}

static void id_unlock(agent_api_t *api, const char *id)
{
    pthread_mutex_lock(&api->lock);
    ssize_t i = busy_find(api, id);
    if (i >= 0) {
        free(api->busy[i]);
        api->busy[i] = api->busy[--api->n_busy];
    }
    pthread_cond_broadcast(&api->changed);
    pthread_mutex_unlock(&api->lock);
}

static json_t *sandbox_json(const rt_info_t *i)
{
    return json_pack(
        "{s:o,s:s,s:o,s:o,s:f,s:I,s:o,s:o,s:o,s:{s:I,s:I,s:I,s:I}}", "id", agent_json_cstr(i->id),
        "state", rt_state_name(i->state), "driver", agent_json_cstr(i->driver), "image",
        agent_json_cstr(i->image), "cpu", i->cpu, "memoryMiB", (json_int_t)i->memory_mib,
        "createdAt", agent_json_time(i->created_ms), "lastActivityAt",
        agent_json_time(i->last_activity_ms), "message", agent_json_cstr(i->message), "usage",
        "cpuMicroseconds", (json_int_t)i->cpu_used_us, "memoryBytes",
        (json_int_t)i->memory_used_bytes, "diskUsedBytes", (json_int_t)i->disk_used_bytes,
        "diskTotalBytes", (json_int_t)i->disk_total_bytes);
}

static void reply_sandbox(http_response_t *res, int status, const rt_info_t *info)
{
    json_t *j = sandbox_json(info);
    if (!j)
        return http_reply_error(res, 500, "InternalServerError", "cannot encode the sandbox");
    http_reply_json(res, status, j);
}

/* Reply with the sandbox's current state (after an action on it).  */
void agent_sandbox_get(agent_api_t *api, const char *id, http_response_t *res)
{
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return agent_reply_error(res, &err, id);
    reply_sandbox(res, 200, &info);
}

void agent_health(agent_api_t *api, http_response_t *res)
{
    rt_health_t h = {0};
    sbx_error_t err = {0};
    if (rt_health(api->rt, &h, &err) < 0)
        return agent_reply_error(res, &err, "health");
    json_t *drivers = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(h.drivers) && h.drivers[i]; i++)
        json_array_append_new(drivers, agent_json_cstr(h.drivers[i]));
    /* capacity is what the scheduler admits sandboxes against (pids: the
     * share of the kernel's pid_max they may hold together); usage sums
     * the limits of the sandboxes here.  */
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:o,s:{s:f,s:I,s:I,s:I,s:I},s:{s:f,s:I,s:I,s:I,s:I},s:{s:I,s:I}}", "status",
        "ok", "version", SBX_VERSION, "environment", api->environment, "drivers", drivers,
        "capacity", "cpu", h.cpu_total, "memoryMiB", (json_int_t)h.memory_total_mib, "diskMiB",
        (json_int_t)h.disk_total_mib, "pids", (json_int_t)h.pids_total, "sandboxes",
        (json_int_t)h.slots_total, "usage", "cpu", h.cpu_allocated, "memoryMiB",
        (json_int_t)h.memory_allocated_mib, "diskMiB", (json_int_t)h.disk_allocated_mib, "pids",
        (json_int_t)h.pids_allocated, "sandboxes", (json_int_t)h.slots_used, "kernel", "pidMax",
        (json_int_t)h.pid_max, "threadsMax", (json_int_t)h.threads_max);
    if (!j)
        return http_reply_error(res, 500, "InternalServerError", "cannot encode health");
    /* The drivers that do not work on this host, each with why.  */
    json_t *why = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(h.unavailable) && h.unavailable[i].name; i++)
        json_object_set_new(why, h.unavailable[i].name, agent_json_cstr(h.unavailable[i].why));
    json_object_set_new(j, "unavailableDrivers", why);
    json_object_set_new(j, "egress", agent_egress_health(api));
    http_reply_json(res, 200, j);
}

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const rt_info_t *)a)->id, ((const rt_info_t *)b)->id);
}

void agent_sandboxes_list(agent_api_t *api, http_response_t *res)
{
    _cleanup_free_ rt_info_t *infos = NULL;
    size_t n = 0;
    sbx_error_t err = {0};
    if (rt_list(api->rt, &infos, &n, &err) < 0)
        return agent_reply_error(res, &err, "list");
    if (n > 1)
        qsort(infos, n, sizeof(*infos), info_cmp);
    json_t *value = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = sandbox_json(&infos[i]);
        if (j)
            json_array_append_new(value, j);
    }
    http_reply_json(res, 200, json_pack("{s:o}", "value", value));
}

static const char *const drivers[] = {"process", "gvisor", "microvm"};

static bool image_ref_plain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_IMAGE_REF)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

/* A limit of a spec, checked against the model's table; false after
 * replying 400.  */
static bool limit_ok(sbx_limit_id_t id, const json_t *v, http_response_t *res)
{
    const sbx_limit_t *l = &sbx_limits[id];
    if (sbx_limit_valid(id, v))
        return true;
    agent_reply_invalid(res, "%s must be %s %g..%g", l->key, l->integer ? "an integer" : "a number",
                        l->min, l->max);
    return false;
}

/* The create request as a normalised spec (every field present, cpu a
 * real), or NULL after replying 400.  Unknown fields are ignored so a newer
 * scheduler can send more.  */
static json_t *parse_spec(const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, true, res);
    if (!body)
        return NULL;
    json_t *v;
    const char *image = IMG_DEFAULT_REF, *driver = "process";
    double cpu = SBX_CPU_DEFAULT;
    json_int_t memory = SBX_MEMORY_MIB_DEFAULT, disk = SBX_DISK_MIB_DEFAULT;

    if ((v = json_object_get(body, "image")) && !json_is_null(v)) {
        if (!agent_json_plain(v) || !image_ref_plain(json_string_value(v)))
            return agent_reply_invalid(res,
                                       "image must be an image reference of 1..%d printable "
                                       "characters",
                                       MAX_IMAGE_REF),
                   NULL;
        image = json_string_value(v);
    }
    if ((v = json_object_get(body, "driver")) && !json_is_null(v)) {
        driver = NULL;
        for (size_t i = 0; json_is_string(v) && i < ARRAY_SIZE(drivers); i++)
            if (strcmp(json_string_value(v), drivers[i]) == 0)
                driver = drivers[i];
        if (!driver)
            return agent_reply_invalid(res, "driver must be one of process, gvisor, microvm"), NULL;
    }
    if ((v = json_object_get(body, "cpu")) && !json_is_null(v)) {
        if (!limit_ok(SBX_LIMIT_CPU, v, res))
            return NULL;
        cpu = json_number_value(v);
    }
    if ((v = json_object_get(body, "memoryMiB")) && !json_is_null(v)) {
        if (!limit_ok(SBX_LIMIT_MEMORY_MIB, v, res))
            return NULL;
        memory = json_integer_value(v);
    }
    if ((v = json_object_get(body, "diskMiB")) && !json_is_null(v)) {
        if (!limit_ok(SBX_LIMIT_DISK_MIB, v, res))
            return NULL;
        disk = json_integer_value(v);
    }
    json_t *env = json_object_get(body, "env");
    if (env && json_is_null(env))
        env = NULL;
    if (env && agent_check_env(env, res) < 0)
        return NULL;
    return json_pack("{s:s,s:s,s:f,s:I,s:I,s:o}", "image", image, "driver", driver, "cpu", cpu,
                     "memoryMiB", memory, "diskMiB", disk, "env",
                     env ? json_incref(env) : json_object());
}

/* The runtime's spec of a request's normalised spec (borrowing from it). */
static rt_spec_t spec_of(const char *id, const json_t *spec, const char *rootfs)
{
    return (rt_spec_t){
        .id = id,
        .driver = json_string_value(json_object_get(spec, "driver")),
        .rootfs = rootfs,
        .image = json_string_value(json_object_get(spec, "image")),
        .cpu = json_real_value(json_object_get(spec, "cpu")),
        .memory_mib = (uint64_t)json_integer_value(json_object_get(spec, "memoryMiB")),
        .disk_mib = (uint64_t)json_integer_value(json_object_get(spec, "diskMiB")),
        .env = json_object_get(spec, "env"),
    };
}

static int resolve_image(agent_api_t *api, const char *ref, char **rootfs, sbx_error_t *err)
{
    _cleanup_free_ char *digest = NULL;
    if (img_resolve(api->img, ref, rootfs, &digest, err) == 0)
        return 0;
    /* A missing image is the request's fault, not a missing sandbox.  */
    if (err->code == SBX_ERR_NOT_FOUND) {
        err->code = SBX_ERR_INVALID;
        snprintf(err->arm_code, sizeof(err->arm_code), "ImageNotFound");
    } else if (err->code == SBX_ERR_INVALID && !err->arm_code[0]) {
        snprintf(err->arm_code, sizeof(err->arm_code), "InvalidImage");
    }
    sbx_error_wrap(err, "image '%s'", ref);
    return -1;
}

static void create_new(agent_api_t *api, const char *id, json_t *spec, const json_t *egress,
                       bool identity, http_response_t *res)
{
    sbx_error_t err = {0};
    const char *image = json_string_value(json_object_get(spec, "image"));
    _cleanup_free_ char *rootfs = NULL;
    if (resolve_image(api, image, &rootfs, &err) < 0)
        return agent_reply_error(res, &err, id);
    rt_spec_t s = spec_of(id, spec, rootfs);
    rt_info_t info;
    if (api->egress && api->imds)
        egress_set_identity(api->egress, id, identity);
    if (agent_egress_record(api->egress, s.driver, id, egress, &err) < 0 ||
        rt_create(api->rt, &s, &info, &err) < 0) {
        agent_egress_after(api->egress, api->rt, id, "delete");
        return agent_reply_error(res, &err, id);
    }
    if (agent_egress_booted(api->egress, api->rt, id, egress, &err) < 0) {
        /* no sandbox without the network its policy promises */
        (void)rt_destroy(api->rt, id, NULL);
        agent_egress_after(api->egress, api->rt, id, "delete");
        return agent_reply_error(res, &err, id);
    }
    sbx_log(SBX_LOG_INFO, AGENT_MODULE, "sandbox %s created (%s, %s)", id, s.driver, image);
    agent_egress_note(api, egress, identity, &info);
    reply_sandbox(res, 201, &info);
}

void agent_sandbox_put(agent_api_t *api, const char *id, const agent_call_t *c,
                       http_response_t *res)
{
    _cleanup_json_ json_t *spec = parse_spec(c, res);
    if (!spec)
        return;
    _cleanup_json_ json_t *egress = NULL;
    bool egress_given, identity;
    if (agent_egress_parse(c, &egress, &egress_given, &identity, res) < 0)
        return;
    id_lock(api, id);
    /* before the spec is compared: the env it adds is the same each time */
    agent_identity_prepare(api, id, spec, identity);
    rt_spec_t want = spec_of(id, spec, NULL);
    rt_info_t info;
    bool same = false;
    sbx_error_t err = {0};
    if (rt_spec_compare(api->rt, &want, &same, &err) == 0 &&
        rt_get(api->rt, id, &info, &err) == 0) {
        if (!same)
            http_reply_error(res, 409, "SandboxConflict",
                             "sandbox %s exists with a different spec; delete it first", id);
        else if (egress_given && agent_egress_apply(api->egress, api->rt, id, egress, &err) < 0)
            /* the same sandbox, a new policy: a live update (a body without
             * "egress" leaves the policy as it is) */
            agent_reply_error(res, &err, id);
        else
            reply_sandbox(res, 200, &info);
    } else if (err.code == SBX_ERR_NOT_FOUND) {
        create_new(api, id, spec, egress, identity, res);
    } else {
        agent_reply_error(res, &err, id);
    }
    id_unlock(api, id);
}

void agent_sandbox_delete(agent_api_t *api, const char *id, http_response_t *res)
{
    sbx_error_t err = {0};
    id_lock(api, id);
    int rc = rt_destroy(api->rt, id, &err);
    if (rc == 0 || err.code == SBX_ERR_NOT_FOUND) {
        agent_procs_forget(api->procs, id);
        agent_egress_after(api->egress, api->rt, id, "delete");
        http_reply_empty(res, 204);
        if (rc == 0)
            sbx_log(SBX_LOG_INFO, AGENT_MODULE, "sandbox %s deleted", id);
    } else {
        agent_reply_error(res, &err, id);
    }
    id_unlock(api, id);
}

void agent_sandbox_action(agent_api_t *api, const char *id, const char *action,
                          http_response_t *res)
{
    static const struct {
        const char *name;
        int (*fn)(rt_runtime_t *, const char *, sbx_error_t *);
    } actions[] = {
        {"suspend", rt_suspend},
        {"resume", rt_resume},
        {"stop", rt_stop},
        {"start", rt_start},
    };
    sbx_error_t err = {0};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
        if (strcmp(action, actions[i].name) != 0)
            continue;
        if (actions[i].fn(api->rt, id, &err) < 0)
            return agent_reply_error(res, &err, id);
        agent_egress_after(api->egress, api->rt, id, actions[i].name);
        return agent_sandbox_get(api, id, res);
    }
    http_reply_error(res, 404, "NotFound", "no such action");
}
