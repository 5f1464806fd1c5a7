/* api.c -- sandbox-agent's HTTP API: routing, validation of every request,
 * and the JSON the scheduler sees, over the runtime and the image store.
 *
 * Every call is idempotent so the scheduler can retry after any failure: PUT
 * of an existing id with the same spec returns it (200), DELETE of an absent
 * one is 204, and actions on a sandbox already in the wanted state are 200.
 * Specs as created are kept in DATA_DIR/sandboxes/<id>.json so a repeated PUT
 * can be told apart from a conflicting one, also after a restart.  */
#include "agent/agent.h"
#include "common/model.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define MODULE "agent"

#define MAX_IMAGE_REF SBX_IMAGE_REF_MAX
#define MAX_ENV_ENTRIES 1024
#define MAX_ENV_NAME 255
#define MAX_PATH_LEN 4096
#define MAX_ARGS 4096
#define DEFAULT_EXEC_TIMEOUT 30
#define MAX_EXEC_TIMEOUT 3600

struct agent_api {
    rt_runtime_t *rt;
    img_store_t *img;
    char *specs_dir;
    char *environment;
    /* Ids with a create or delete under way: those serialise per id, so a
     * retried PUT waits for the first instead of racing it.  */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char **busy;
    size_t n_busy, cap_busy;
};

/* ======================================================================
 * Small helpers
 * ====================================================================== */

/* Copy s, replacing every ill-formed UTF-8 sequence (maximal subpart) with
 * U+FFFD, so output from a sandbox always fits in a JSON string.  */
static char *utf8_sanitize(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = xmalloc(len * 3 + 1);
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            need = 0; /* never valid as a lead byte */
        }
        size_t got = 0;
        if (need) {
            while (got < need && i + 1 + got < len) {
                unsigned char b = p[i + 1 + got];
                unsigned char blo = got == 0 ? lo : 0x80, bhi = got == 0 ? hi : 0xBF;
                if (b < blo || b > bhi)
                    break;
                got++;
            }
        }
        if (need && got == need) {
            memcpy(out + o, p + i, need + 1);
            o += need + 1;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += 1 + got;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* A JSON string of arbitrary bytes, made valid UTF-8.  */
static json_t *json_text(const char *s, size_t len)
{
    size_t n;
    _cleanup_free_ char *clean = utf8_sanitize(s ? s : "", s ? len : 0, &n);
    return json_stringn(clean, n);
}

static json_t *json_cstr(const char *s)
{
    return json_text(s, s ? strlen(s) : 0);
}

static json_t *json_time(int64_t ms)
{
    char buf[40];
    sbx_time_format(ms, buf, sizeof(buf));
    return json_string(buf);
}

static void reply_invalid(http_response_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void reply_invalid(http_response_t *res, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(res, 400, "InvalidRequestContent", "%s", msg);
}

/* Reply with an error from the runtime or image store; an unknown id is
 * SandboxNotFound.  Server-side failures are logged, since the scheduler
 * only sees the message.  */
static void reply_sbx_error(http_response_t *res, sbx_error_t *err, const char *what)
{
    /* A callee that failed without saying how is an internal failure.  */
    if (err->code == SBX_OK)
        err->code = SBX_ERR_INTERNAL;
    if (err->code == SBX_ERR_NOT_FOUND && !err->arm_code[0])
        snprintf(err->arm_code, sizeof(err->arm_code), "SandboxNotFound");
    if (err->code == SBX_ERR_INTERNAL || err->code == SBX_ERR_UNAVAILABLE ||
        err->code == SBX_ERR_TIMEOUT)
        sbx_log(SBX_LOG_ERROR, MODULE, "%s: %s", what, err->msg);
    http_reply_sbx_error(res, err);
}

static bool json_string_plain(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool is_name_char(char c, bool first)
{
    return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (!first && c >= '0' && c <= '9');
}

static bool env_name_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > MAX_ENV_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(k[i], i == 0))
            return false;
    return true;
}

/* `env` must be an object of plain strings with shell-style names.  Replies
 * 400 and returns -1 otherwise.  */
static int check_env(const json_t *env, http_response_t *res)
{
    if (!json_is_object(env))
        return reply_invalid(res, "env must be an object of strings"), -1;
    if (json_object_size(env) > MAX_ENV_ENTRIES)
        return reply_invalid(res, "env has more than %d entries", MAX_ENV_ENTRIES), -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v) {
        if (!env_name_valid(k))
            return reply_invalid(res, "env name '%.64s' is not [A-Za-z_][A-Za-z0-9_]*", k), -1;
        if (!json_string_plain(v))
            return reply_invalid(res, "env value of '%s' must be a string without NULs", k), -1;
    }
    return 0;
}

/* A JSON object from the request body; an empty body counts as {} where
 * `empty_ok`.  Replies 400 and returns NULL otherwise.  */
static json_t *parse_object(const agent_call_t *c, bool empty_ok, http_response_t *res)
{
    if (c->body_len == 0 && empty_ok)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb(c->body ? c->body : "", c->body_len,
                           JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        reply_invalid(res, "the body is not valid JSON: %s (at offset %d)", jerr.text,
                      jerr.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        reply_invalid(res, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ======================================================================
 * Per-id serialisation of create and delete
 * ====================================================================== */

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

/* ======================================================================
 * Specs as created, on disk
 * ====================================================================== */

static char *spec_path(agent_api_t *api, const char *id)
{
    return xasprintf("%s/%s.json", api->specs_dir, id); /* id is validated */
}

static json_t *spec_load(agent_api_t *api, const char *id)
{
    _cleanup_free_ char *path = spec_path(api, id);
    if (access(path, F_OK) < 0)
        return NULL;
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: ignoring unreadable spec %s", id, path);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int spec_store(agent_api_t *api, const char *id, const json_t *spec, sbx_error_t *err)
{
    _cleanup_free_ char *path = spec_path(api, id);
    _cleanup_free_ char *s = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "cannot encode the spec of %s", id);
    return sbx_write_file_atomic(path, s, strlen(s), 0600, err);
}

static void spec_remove(agent_api_t *api, const char *id)
{
    _cleanup_free_ char *path = spec_path(api, id);
    if (unlink(path) < 0 && errno != ENOENT)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: cannot remove %s: %s", id, path,
                strerror(errno));
}

/* ======================================================================
 * JSON shapes
 * ====================================================================== */

static json_t *sandbox_json(const rt_info_t *i)
{
    return json_pack("{s:o,s:s,s:o,s:o,s:f,s:I,s:o,s:o,s:o}", "id", json_cstr(i->id), "state",
                     rt_state_name(i->state), "driver", json_cstr(i->driver), "image",
                     json_cstr(i->image), "cpu", i->cpu, "memoryMiB", (json_int_t)i->memory_mib,
                     "createdAt", json_time(i->created_ms), "lastActivityAt",
                     json_time(i->last_activity_ms), "message", json_cstr(i->message));
}

static void reply_sandbox(http_response_t *res, int status, const rt_info_t *info)
{
    json_t *j = sandbox_json(info);
    if (!j)
        return http_reply_error(res, 500, "InternalServerError", "cannot encode the sandbox");
    http_reply_json(res, status, j);
}

/* Reply with the sandbox's current state (after an action on it).  */
static void reply_current(agent_api_t *api, const char *id, http_response_t *res)
{
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return reply_sbx_error(res, &err, id);
    reply_sandbox(res, 200, &info);
}

/* ======================================================================
 * GET /v1/health
 * ====================================================================== */

static void get_health(agent_api_t *api, http_response_t *res)
{
    rt_health_t h = {0};
    sbx_error_t err = {0};
    if (rt_health(api->rt, &h, &err) < 0)
        return reply_sbx_error(res, &err, "health");
    json_t *drivers = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(h.drivers) && h.drivers[i]; i++)
        json_array_append_new(drivers, json_cstr(h.drivers[i]));
    /* capacity is what the scheduler admits sandboxes against (pids: the
     * share of the kernel's pid_max they may hold together); usage sums
     * the limits of the sandboxes here.  */
    json_t *j = json_pack(
        "{s:s,s:s,s:s,s:o,s:{s:f,s:I,s:I,s:I,s:I},s:{s:f,s:I,s:I,s:I,s:I},s:{s:I,s:I}}",
        "status", "ok", "version", SBX_VERSION, "environment", api->environment, "drivers",
        drivers, "capacity", "cpu", h.cpu_total, "memoryMiB", (json_int_t)h.memory_total_mib,
        "diskMiB", (json_int_t)h.disk_total_mib, "pids", (json_int_t)h.pids_total, "sandboxes",
        (json_int_t)h.slots_total, "usage", "cpu", h.cpu_allocated, "memoryMiB",
        (json_int_t)h.memory_allocated_mib, "diskMiB", (json_int_t)h.disk_allocated_mib, "pids",
        (json_int_t)h.pids_allocated, "sandboxes", (json_int_t)h.slots_used, "kernel", "pidMax",
        (json_int_t)h.pid_max, "threadsMax", (json_int_t)h.threads_max);
    if (!j)
        return http_reply_error(res, 500, "InternalServerError", "cannot encode health");
    /* The drivers that do not work on this host, each with why.  */
    json_t *why = json_object();
    for (size_t i = 0; i < ARRAY_SIZE(h.unavailable) && h.unavailable[i].name; i++)
        json_object_set_new(why, h.unavailable[i].name, json_cstr(h.unavailable[i].why));
    json_object_set_new(j, "unavailableDrivers", why);
    http_reply_json(res, 200, j);
}

/* ======================================================================
 * Sandboxes: list, get, create, delete, actions
 * ====================================================================== */

static int info_cmp(const void *a, const void *b)
{
    return strcmp(((const rt_info_t *)a)->id, ((const rt_info_t *)b)->id);
}

static void list_sandboxes(agent_api_t *api, http_response_t *res)
{
    _cleanup_free_ rt_info_t *infos = NULL;
    size_t n = 0;
    sbx_error_t err = {0};
    if (rt_list(api->rt, &infos, &n, &err) < 0)
        return reply_sbx_error(res, &err, "list");
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
    reply_invalid(res, "%s must be %s %g..%g", l->key, l->integer ? "an integer" : "a number",
                  l->min, l->max);
    return false;
}

/* The create request as a normalised spec (every field present, cpu a
 * real), or NULL after replying 400.  Unknown fields are ignored so a newer
 * scheduler can send more.  */
static json_t *parse_spec(const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = parse_object(c, true, res);
    if (!body)
        return NULL;
    json_t *v;
    const char *image = IMG_DEFAULT_REF, *driver = "process";
    double cpu = SBX_CPU_DEFAULT;
    json_int_t memory = SBX_MEMORY_MIB_DEFAULT, disk = SBX_DISK_MIB_DEFAULT;

    if ((v = json_object_get(body, "image")) && !json_is_null(v)) {
        if (!json_string_plain(v) || !image_ref_plain(json_string_value(v)))
            return reply_invalid(res, "image must be an image reference of 1..%d printable "
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
            return reply_invalid(res, "driver must be one of process, gvisor, microvm"), NULL;
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
    if (env && check_env(env, res) < 0)
        return NULL;
    return json_pack("{s:s,s:s,s:f,s:I,s:I,s:o}", "image", image, "driver", driver, "cpu", cpu,
                     "memoryMiB", memory, "diskMiB", disk, "env",
                     env ? json_incref(env) : json_object());
}

/* Without a stored spec (it was lost), an existing sandbox matches a
 * request when the parts the runtime records agree.  */
static bool info_matches(const rt_info_t *info, const json_t *spec)
{
    return strcmp(info->image, json_string_value(json_object_get(spec, "image"))) == 0 &&
           strcmp(info->driver, json_string_value(json_object_get(spec, "driver"))) == 0;
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

static void create_new(agent_api_t *api, const char *id, json_t *spec, http_response_t *res)
{
    sbx_error_t err = {0};
    const char *image = json_string_value(json_object_get(spec, "image"));
    _cleanup_free_ char *rootfs = NULL;
    if (resolve_image(api, image, &rootfs, &err) < 0)
        return reply_sbx_error(res, &err, id);
    /* The spec goes to disk first: a crash after rt_create then still
     * leaves the record a retried PUT compares with.  */
    if (spec_store(api, id, spec, &err) < 0)
        return reply_sbx_error(res, &err, id);
    rt_spec_t s = {
        .id = id,
        .driver = json_string_value(json_object_get(spec, "driver")),
        .rootfs = rootfs,
        .image = image,
        .cpu = json_real_value(json_object_get(spec, "cpu")),
        .memory_mib = (uint64_t)json_integer_value(json_object_get(spec, "memoryMiB")),
        .disk_mib = (uint64_t)json_integer_value(json_object_get(spec, "diskMiB")),
        .env = json_object_get(spec, "env"),
    };
    rt_info_t info;
    if (rt_create(api->rt, &s, &info, &err) < 0) {
        spec_remove(api, id);
        return reply_sbx_error(res, &err, id);
    }
    sbx_log(SBX_LOG_INFO, MODULE, "sandbox %s created (%s, %s)", id, s.driver, image);
    reply_sandbox(res, 201, &info);
}

static void put_sandbox(agent_api_t *api, const char *id, const agent_call_t *c,
                        http_response_t *res)
{
    _cleanup_json_ json_t *spec = parse_spec(c, res);
    if (!spec)
        return;
    id_lock(api, id);
    _cleanup_json_ json_t *stored = spec_load(api, id);
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) == 0) {
        bool same = stored ? json_equal(stored, spec) : info_matches(&info, spec);
        if (!same) {
            http_reply_error(res, 409, "SandboxConflict",
                             "sandbox %s exists with a different spec; delete it first", id);
        } else {
            if (!stored && spec_store(api, id, spec, &err) < 0)
                sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: %s", id, err.msg);
            reply_sandbox(res, 200, &info);
        }
    } else if (err.code == SBX_ERR_NOT_FOUND) {
        create_new(api, id, spec, res);
    } else {
        reply_sbx_error(res, &err, id);
    }
    id_unlock(api, id);
}

static void delete_sandbox(agent_api_t *api, const char *id, http_response_t *res)
{
    sbx_error_t err = {0};
    id_lock(api, id);
    int rc = rt_destroy(api->rt, id, &err);
    if (rc == 0 || err.code == SBX_ERR_NOT_FOUND) {
        spec_remove(api, id);
        http_reply_empty(res, 204);
        if (rc == 0)
            sbx_log(SBX_LOG_INFO, MODULE, "sandbox %s deleted", id);
    } else {
        reply_sbx_error(res, &err, id);
    }
    id_unlock(api, id);
}

static void sandbox_action(agent_api_t *api, const char *id, const char *action,
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
            return reply_sbx_error(res, &err, id);
        return reply_current(api, id, res);
    }
    http_reply_error(res, 404, "NotFound", "no such action");
}

/* ======================================================================
 * POST /v1/sandboxes/{id}/exec
 * ====================================================================== */

typedef struct exec_args {
    char **argv, **env;
    size_t argc, envc;
} exec_args_t;

static void exec_args_done(exec_args_t *a)
{
    for (size_t i = 0; i < a->argc; i++)
        free(a->argv[i]);
    for (size_t i = 0; i < a->envc; i++)
        free(a->env[i]);
    free(a->argv);
    free(a->env);
}

/* Fill req and args from the body; reply 400 and return -1 on anything
 * malformed.  req's strings point into body or args.  */
static int parse_exec(const json_t *body, rt_exec_request_t *req, exec_args_t *args,
                      http_response_t *res)
{
    json_t *cmd = json_object_get(body, "command"), *v;
    if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > MAX_ARGS)
        return reply_invalid(res, "command must be an array of 1..%d strings", MAX_ARGS), -1;
    args->argv = xcalloc(json_array_size(cmd) + 1, sizeof(char *));
    size_t i;
    json_array_foreach(cmd, i, v) {
        if (!json_string_plain(v))
            return reply_invalid(res, "command[%zu] must be a string without NULs", i), -1;
        args->argv[args->argc++] = xstrdup(json_string_value(v));
    }
    if (!args->argv[0][0])
        return reply_invalid(res, "command[0] must not be empty"), -1;
    req->argv = args->argv;

    json_t *env = json_object_get(body, "env");
    if (env && !json_is_null(env)) {
        if (check_env(env, res) < 0)
            return -1;
        args->env = xcalloc(json_object_size(env) + 1, sizeof(char *));
        const char *k;
        json_object_foreach(env, k, v)
            args->env[args->envc++] = xasprintf("%s=%s", k, json_string_value(v));
        req->env = args->env;
    }

    req->cwd = "/";
    if ((v = json_object_get(body, "cwd")) && !json_is_null(v)) {
        if (!json_string_plain(v) || json_string_value(v)[0] != '/' ||
            json_string_length(v) > MAX_PATH_LEN)
            return reply_invalid(res, "cwd must be an absolute path without NULs"), -1;
        req->cwd = json_string_value(v);
    }
    if ((v = json_object_get(body, "stdin")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return reply_invalid(res, "stdin must be a string"), -1;
        req->stdin_data = json_string_value(v);
        req->stdin_len = json_string_length(v);
    }
    json_int_t timeout = DEFAULT_EXEC_TIMEOUT;
    if ((v = json_object_get(body, "timeoutSeconds")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > MAX_EXEC_TIMEOUT)
            return reply_invalid(res, "timeoutSeconds must be an integer 1..%d", MAX_EXEC_TIMEOUT),
                   -1;
        timeout = json_integer_value(v);
    }
    req->timeout_ms = (int)timeout * 1000;
    req->output_cap = AGENT_EXEC_OUTPUT_CAP;
    return 0;
}

static json_t *exec_result_json(const rt_exec_result_t *r)
{
    json_t *j = json_pack("{s:i,s:o,s:o,s:b,s:I,s:b,s:b}", "exitCode", r->exit_code, "stdout",
                          json_text(r->out, r->out_len), "stderr", json_text(r->err, r->err_len),
                          "timedOut", r->timed_out, "durationMs", (json_int_t)r->duration_ms,
                          "stdoutTruncated", r->out_truncated, "stderrTruncated",
                          r->err_truncated);
    if (j && r->signal > 0)
        json_object_set_new(j, "signal", json_integer(r->signal));
    return j;
}

static void exec_sandbox(agent_api_t *api, const char *id, const agent_call_t *c,
                         http_response_t *res)
{
    _cleanup_json_ json_t *body = parse_object(c, false, res);
    if (!body)
        return;
    rt_exec_request_t req = {0};
    exec_args_t args = {0};
    if (parse_exec(body, &req, &args, res) < 0)
        return exec_args_done(&args);
    rt_exec_result_t r = {0};
    sbx_error_t err = {0};
    if (rt_exec(api->rt, id, &req, &r, &err) < 0) {
        reply_sbx_error(res, &err, id);
    } else {
        json_t *j = exec_result_json(&r);
        if (j)
            http_reply_json(res, 200, j);
        else
            http_reply_error(res, 500, "InternalServerError", "cannot encode the result");
    }
    rt_exec_result_done(&r);
    exec_args_done(&args);
}

/* ======================================================================
 * /v1/sandboxes/{id}/files?path=
 * ====================================================================== */

/* A file operation's error: an unknown id was checked before, so a
 * NOT_FOUND now means the file.  */
static void reply_file_error(http_response_t *res, sbx_error_t *err, const char *id)
{
    if (!err->arm_code[0]) {
        if (err->code == SBX_ERR_NOT_FOUND)
            snprintf(err->arm_code, sizeof(err->arm_code), "FileNotFound");
        else if (err->code == SBX_ERR_INVALID)
            snprintf(err->arm_code, sizeof(err->arm_code), "InvalidPath");
    }
    reply_sbx_error(res, err, id);
}

static json_t *dirents_json(const rt_dirent_t *d, size_t n)
{
    json_t *value = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_pack("{s:o,s:s,s:I,s:I,s:o}", "name", json_cstr(d[i].name), "type",
                              d[i].type, "size", (json_int_t)d[i].size, "mode",
                              (json_int_t)d[i].mode, "modifiedAt", json_time(d[i].modified_ms));
        if (e)
            json_array_append_new(value, e);
    }
    return json_pack("{s:o}", "value", value);
}

/* A download is sent from the open file a chunk at a time; the size is
 * the one it had when opened (a file the sandbox grows meanwhile is cut
 * there, one it shrinks ends the connection early).  */
typedef struct file_stream {
    int fd;
    uint64_t size;
} file_stream_t;

static ssize_t file_stream_read(void *ud, uint64_t pos, char *buf, size_t max)
{
    file_stream_t *f = ud;
    if (pos >= f->size)
        return HTTP_STREAM_END;
    if (max > f->size - pos)
        max = (size_t)(f->size - pos);
    ssize_t n;
    do
        n = pread(f->fd, buf, max, (off_t)pos);
    while (n < 0 && errno == EINTR);
    return n > 0 ? n : HTTP_STREAM_ERROR;
}

static void file_stream_free(void *ud)
{
    file_stream_t *f = ud;
    close(f->fd);
    free(f);
}

static void get_file(agent_api_t *api, const char *id, const char *path, bool list,
                     http_response_t *res)
{
    sbx_error_t err = {0};
    if (list) {
        rt_dirent_t *d = NULL;
        size_t n = 0;
        if (rt_file_list(api->rt, id, path, &d, &n, &err) < 0)
            return reply_file_error(res, &err, id);
        json_t *j = dirents_json(d, n);
        rt_dirents_free(d, n);
        return http_reply_json(res, 200, j);
    }
    file_stream_t *f = xcalloc(1, sizeof(*f));
    if (rt_file_open(api->rt, id, path, AGENT_MAX_FILE_BODY, &f->fd, &f->size, &err) < 0) {
        free(f);
        return reply_file_error(res, &err, id);
    }
    http_reply_stream(res, 200, "application/octet-stream", f->size, file_stream_read,
                      file_stream_free, f);
}

static void put_file(agent_api_t *api, const char *id, const agent_call_t *c, const char *path,
                     http_response_t *res)
{
    uint64_t written = c->body_read ? 0 : c->body_len;
    sbx_error_t err = {0};
    int r = c->body_read ? rt_file_write_stream(api->rt, id, path, c->body_size, c->body_read,
                                                c->body_ud, &written, &err)
                         : rt_file_write(api->rt, id, path, c->body, c->body_len, &err);
    if (r < 0)
        return reply_file_error(res, &err, id);
    http_reply_json(res, 201, json_pack("{s:o,s:I}", "path", json_cstr(path), "size",
                                        (json_int_t)written));
}

static void files(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res)
{
    const char *path = c->query_path;
    if (!path || !path[0])
        return http_reply_error(res, 400, "InvalidPath", "the path query parameter is required");
    if (strlen(path) != c->query_path_len || path[0] != '/' || c->query_path_len > MAX_PATH_LEN)
        return http_reply_error(res, 400, "InvalidPath",
                                "path must be absolute, without NULs, at most %d bytes",
                                MAX_PATH_LEN);
    bool list = false;
    if (c->query_list && strcmp(c->query_list, "true") == 0)
        list = true;
    else if (c->query_list && strcmp(c->query_list, "false") != 0)
        return reply_invalid(res, "list must be true or false");

    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return reply_sbx_error(res, &err, id);

    if (strcmp(c->method, "GET") == 0)
        return get_file(api, id, path, list, res);
    if (strcmp(c->method, "PUT") == 0)
        return put_file(api, id, c, path, res);
    if (rt_file_delete(api->rt, id, path, &err) < 0 && err.code != SBX_ERR_NOT_FOUND)
        return reply_file_error(res, &err, id);
    http_reply_empty(res, 204);
}

/* ======================================================================
 * Routing
 * ====================================================================== */

typedef enum {
    ROUTE_NONE,
    ROUTE_HEALTH,
    ROUTE_LIST,
    ROUTE_SANDBOX,
    ROUTE_ACTION,
    ROUTE_EXEC,
    ROUTE_FILES,
} route_kind_t;

typedef struct route {
    route_kind_t kind;
    char id[80];        /* truncated ids fail validation anyway */
    char action[16];
    bool id_too_long;
} route_t;

static const char *const route_methods[] = {
    [ROUTE_NONE] = "",
    [ROUTE_HEALTH] = "GET",
    [ROUTE_LIST] = "GET",
    [ROUTE_SANDBOX] = "GET, PUT, DELETE",
    [ROUTE_ACTION] = "POST",
    [ROUTE_EXEC] = "POST",
    [ROUTE_FILES] = "GET, PUT, DELETE",
};

/* Split "/v1/sandboxes/{id}/{action}" into a route.  Empty segments (a
 * doubled or trailing slash) match nothing.  */
static void route_parse(const char *path, route_t *r)
{
    memset(r, 0, sizeof(*r));
    const char *seg[5];
    size_t len[5], n = 0;
    if (!path || path[0] != '/')
        return;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t l = slash ? (size_t)(slash - p) : strlen(p);
        if (l == 0 || n == ARRAY_SIZE(seg))
            return;
        seg[n] = p;
        len[n++] = l;
        if (!slash)
            break;
        p = slash + 1;
    }
#define SEG_IS(i, s) (len[i] == strlen(s) && memcmp(seg[i], s, len[i]) == 0)
    if (n < 2 || !SEG_IS(0, "v1"))
        return;
    if (n == 2 && SEG_IS(1, "health")) {
        r->kind = ROUTE_HEALTH;
        return;
    }
    if (!SEG_IS(1, "sandboxes"))
        return;
    if (n == 2) {
        r->kind = ROUTE_LIST;
        return;
    }
    r->id_too_long = len[2] >= sizeof(r->id);
    memcpy(r->id, seg[2], r->id_too_long ? sizeof(r->id) - 1 : len[2]);
    if (n == 3) {
        r->kind = ROUTE_SANDBOX;
        return;
    }
    if (n != 4)
        return;
    static const char *const actions[] = {"suspend", "resume", "stop", "start"};
    for (size_t i = 0; i < ARRAY_SIZE(actions); i++) {
        if (SEG_IS(3, actions[i])) {
            r->kind = ROUTE_ACTION;
            snprintf(r->action, sizeof(r->action), "%s", actions[i]);
        }
    }
    if (SEG_IS(3, "exec"))
        r->kind = ROUTE_EXEC;
    if (SEG_IS(3, "files"))
        r->kind = ROUTE_FILES;
#undef SEG_IS
}

static bool method_allowed(route_kind_t kind, const char *method)
{
    const char *allowed = route_methods[kind];
    size_t n = strlen(method);
    for (const char *p = allowed; (p = strstr(p, method)); p += n)
        if ((p == allowed || p[-1] == ' ') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

void agent_api_call(agent_api_t *api, const agent_call_t *c, http_response_t *res)
{
    route_t r;
    route_parse(c->path, &r);
    if (r.kind == ROUTE_NONE)
        return http_reply_error(res, 404, "NotFound", "no such route");
    if (!c->method || !method_allowed(r.kind, c->method)) {
        http_reply_error(res, 405, "MethodNotAllowed", "method not allowed here; use %s",
                         route_methods[r.kind]);
        http_add_header(res, "Allow", "%s", route_methods[r.kind]);
        return;
    }
    if (r.kind == ROUTE_HEALTH)
        return get_health(api, res);
    if (r.kind == ROUTE_LIST)
        return list_sandboxes(api, res);
    if (r.id_too_long || !rt_id_valid(r.id))
        return http_reply_error(res, 400, "InvalidSandboxId",
                                "sandbox ids are 1..63 characters [a-z0-9-], starting with a "
                                "letter or digit");
    switch (r.kind) {
    case ROUTE_SANDBOX:
        if (strcmp(c->method, "GET") == 0)
            return reply_current(api, r.id, res);
        if (strcmp(c->method, "PUT") == 0)
            return put_sandbox(api, r.id, c, res);
        return delete_sandbox(api, r.id, res);
    case ROUTE_ACTION: return sandbox_action(api, r.id, r.action, res);
    case ROUTE_EXEC: return exec_sandbox(api, r.id, c, res);
    case ROUTE_FILES: return files(api, r.id, c, res);
    default: return http_reply_error(res, 404, "NotFound", "no such route");
    }
}

/* ======================================================================
 * HTTP glue and lifetime
 * ====================================================================== */

void agent_api_http_handler(void *ctx, const http_request_t *req, http_response_t *res)
{
    agent_call_t c = {
        .method = req->method,
        .path = req->path,
        .query_list = http_query(req, "list"),
        .body = req->body,
        .body_len = req->body_len,
        .body_size = HTTP_SIZE_UNKNOWN,
    };
    /* The length tells an embedded %00 apart from the end of the value.  */
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, "path", 4, &c.query_path,
                                      &c.query_path_len) != MHD_YES)
        c.query_path = NULL;
    /* A streamed body: the connection (and the values it holds) may be gone
     * once reading starts, so what is needed afterwards is copied.  */
    _cleanup_free_ char *path = NULL, *list = NULL;
    if (!req->body) {
        if (c.query_path) {
            path = xmalloc(c.query_path_len + 1);
            memcpy(path, c.query_path, c.query_path_len);
            path[c.query_path_len] = '\0';
            c.query_path = path;
        }
        if (c.query_list)
            c.query_list = list = xstrdup(c.query_list);
        c.body_size = http_body_size(req);
        c.body_read = http_body_reader;
        c.body_ud = (void *)req;
    }
    agent_api_call(ctx, &c, res);
}

bool agent_api_stream_body(void *ctx, const http_request_t *req)
{
    route_t r;
    route_parse(req->path, &r);
    return r.kind == ROUTE_FILES && strcmp(req->method, "PUT") == 0;
}

size_t agent_api_body_limit(void *ctx, const char *method, const char *path)
{
    route_t r;
    route_parse(path, &r);
    if (r.kind == ROUTE_FILES && method && strcmp(method, "PUT") == 0)
        return AGENT_MAX_FILE_BODY;
    if (r.kind == ROUTE_EXEC)
        return AGENT_MAX_EXEC_BODY;
    return AGENT_MAX_JSON_BODY;
}

agent_api_t *agent_api_new(const agent_api_config_t *cfg, sbx_error_t *err)
{
    _cleanup_free_ char *specs = xasprintf("%s/sandboxes", cfg->data_dir);
    if (sbx_mkdir_p(specs, 0700, err) < 0)
        return NULL;
    agent_api_t *api = xcalloc(1, sizeof(*api));
    api->rt = cfg->rt;
    api->img = cfg->img;
    api->specs_dir = TAKE_PTR(specs);
    api->environment = xstrdup(cfg->environment ? cfg->environment : "default");
    pthread_mutex_init(&api->lock, NULL);
    pthread_cond_init(&api->changed, NULL);
    return api;
}

void agent_api_free(agent_api_t *api)
{
    if (!api)
        return;
    for (size_t i = 0; i < api->n_busy; i++)
        free(api->busy[i]);
    free(api->busy);
    pthread_mutex_destroy(&api->lock);
    pthread_cond_destroy(&api->changed);
    free(api->specs_dir);
    free(api->environment);
    free(api);
}
