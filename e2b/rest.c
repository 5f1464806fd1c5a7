/* rest.c -- E2B's REST API for sandbox lifecycle (create, get, list, kill,
 * timeout, pause, connect/resume), each call turned into calls of the ARM
 * API with the caller's X-API-Key as its bearer token.  */
#include <openssl/rand.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "e2b/internal.h"

#define CREATE_WAIT_MS 120000
#define DEFAULT_TIMEOUT_S 15
#define MAX_TIMEOUT_S (365 * 86400)
#define LIST_LIMIT_MAX 100

typedef struct rest {
    e2b_t *e;
    const http_request_t *req;
    http_response_t *res;
    const char *key; /* X-API-Key, the ARM bearer token */
} rest_t;

static const char *prop_str(const json_t *sb, const char *name)
{
    return json_string_value(json_object_get(json_object_get(sb, "properties"), name));
}

static int64_t parse_time_ms(const char *s)
{
    struct tm tm = {0};
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!end)
        return 0;
    int64_t ms = (int64_t)timegm(&tm) * 1000;
    if (*end == '.')
        ms += strtol(end + 1, NULL, 10) % 1000;
    return ms;
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    sbx_time_format(ms, buf, sizeof(buf));
    return json_string(buf);
}

static bool state_paused(const char *st)
{
    return st && (strcmp(st, "Suspended") == 0 || strcmp(st, "Suspending") == 0);
}

/* When the sandbox's lifetime clock started: its creation, or with
 * lifetimeEndAction Suspend its last resume.  */
static int64_t lifetime_start_ms(const json_t *sb)
{
    int64_t created = parse_time_ms(prop_str(sb, "createdAt"));
    int64_t resumed = parse_time_ms(prop_str(sb, "lifetimeStartedAt"));
    return resumed > created ? resumed : created;
}

static bool pauses_at_end(const json_t *sb)
{
    const char *a = prop_str(sb, "lifetimeEndAction");
    return a && strcmp(a, "Suspend") == 0;
}

/* A sandbox being deleted is gone as far as E2B is concerned.  */
static bool deleting(const json_t *sb)
{
    const char *ps = prop_str(sb, "provisioningState");
    return ps && strcmp(ps, "Deleting") == 0;
}

static const char *template_of(const json_t *meta)
{
    const char *t = json_string_value(json_object_get(meta, "template"));
    return t ? t : "base";
}

/* E2B's ListedSandbox / SandboxDetail for an ARM sandbox.  */
static json_t *sandbox_json(const e2b_t *e, const json_t *sb, bool detail)
{
    const char *name = json_string_value(json_object_get(sb, "name"));
    _cleanup_json_ json_t *stored = e2b_meta_get(e, name);
    json_t *props = json_object_get(sb, "properties");
    int64_t started = lifetime_start_ms(sb);
    json_int_t life = json_integer_value(json_object_get(props, "maxLifetimeSeconds"));
    double cpu = json_number_value(json_object_get(props, "cpu"));
    json_int_t mem = json_integer_value(json_object_get(props, "memoryMiB"));
    json_int_t disk = json_integer_value(json_object_get(props, "diskMiB"));
    json_t *meta = json_object_get(stored, "metadata");
    meta = json_is_object(meta) ? json_incref(meta) : json_object();
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:o,s:s,s:s}", "templateID",
                  template_of(stored), "alias", template_of(stored), "sandboxID", name ? name : "",
                  "clientID", "sandboxd", "startedAt", time_json(started), "endAt",
                  time_json(life > 0 ? started + life * 1000 : started + 86400000LL * 365),
                  "cpuCount", (json_int_t)(cpu > 0 ? (cpu < 1 ? 1 : cpu + 0.999) : 1), "memoryMB",
                  mem > 0 ? mem : 512, "diskSizeMB", disk > 0 ? disk : 1024, "metadata", meta,
                  "state", state_paused(prop_str(sb, "state")) ? "paused" : "running",
                  "envdVersion", E2B_ENVD_VERSION);
    if (detail)
        json_object_set_new(j, "lifecycle",
                            json_pack("{s:s,s:b}", "onTimeout",
                                      pauses_at_end(sb) ? "pause" : "kill", "autoResume",
                                      json_is_true(json_object_get(stored, "autoResume"))));
    if (detail && name) {
        char tok[65];
        e2b_access_token(e, name, tok);
        json_object_set_new(j, "envdAccessToken", json_string(tok));
        json_object_set_new(j, "domain", json_null());
    }
    return j;
}

/* The reply to create and connect: E2B's Sandbox.  */
static json_t *created_json(const e2b_t *e, const char *id, const char *tmpl)
{
    char tok[65];
    e2b_access_token(e, id, tok);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:n}", "templateID", tmpl, "alias", tmpl,
                     "sandboxID", id, "clientID", "sandboxd", "envdVersion", E2B_ENVD_VERSION,
                     "envdAccessToken", tok, "domain");
}

static void get_sandbox(rest_t *r, const char *id, arm_reply_t *ar)
{
    arm_req_t rq = {.method = "GET", .sandbox = id, .suffix = "", .bearer = r->key};
    arm_call(r->e, &rq, ar);
}

/* GET the sandbox; on failure the reply is made (404 for one not there).  */
static json_t *fetch(rest_t *r, const char *id)
{
    arm_reply_t ar;
    if (!e2b_id_valid(id)) {
        e2b_reply_error(r->res, 404, "sandbox \"%.64s\" not found", id);
        return NULL;
    }
    get_sandbox(r, id, &ar);
    json_t *sb = ar.status == 200 ? arm_reply_json(&ar) : NULL;
    if (sb && deleting(sb)) {
        json_decref(sb);
        sb = NULL;
        ar.status = 404;
    }
    if (!sb) {
        if (ar.status == 404)
            e2b_reply_error(r->res, 404, "sandbox \"%s\" not found", id);
        else
            e2b_reply_arm_error(r->res, &ar);
    }
    arm_reply_done(&ar);
    return sb;
}

/* ---- create ---- */

static int ensure_group(rest_t *r)
{
    pthread_mutex_lock(&r->e->lock);
    bool ready = r->e->group_ready;
    pthread_mutex_unlock(&r->e->lock);
    if (ready)
        return 0;
    arm_reply_t ar;
    arm_req_t get = {.method = "GET", .bearer = r->key};
    arm_call(r->e, &get, &ar);
    if (ar.status == 404) {
        arm_reply_done(&ar);
        static const char body[] = "{\"location\":\"local\",\"tags\":{\"createdBy\":\"e2b\"}}";
        arm_req_t put = {.method = "PUT", .bearer = r->key, .body = body, .len = sizeof(body) - 1};
        arm_call(r->e, &put, &ar);
    }
    if (ar.status < 200 || ar.status > 201) {
        e2b_reply_arm_error(r->res, &ar);
        arm_reply_done(&ar);
        return -1;
    }
    arm_reply_done(&ar);
    pthread_mutex_lock(&r->e->lock);
    r->e->group_ready = true;
    pthread_mutex_unlock(&r->e->lock);
    return 0;
}

static void new_id(char out[21])
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[20];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort();
    out[0] = 'i';
    for (int i = 1; i < 20; i++)
        out[i] = alphabet[raw[i] % 36];
    out[20] = '\0';
}

/* The image for a template, "" for the default one, NULL for none known.  */
static const char *template_image(const e2b_t *e, const char *t)
{
    if (!*t || strcmp(t, "base") == 0)
        return "";
    const char *alias = json_string_value(json_object_get(e->templates, t));
    if (alias)
        return alias;
    return strpbrk(t, "/:@") ? t : NULL;
}

static int check_strings(const json_t *o, const char *what, http_response_t *res)
{
    if (!o || json_is_null(o))
        return 0;
    const char *k;
    json_t *v;
    if (!json_is_object(o)) {
        e2b_reply_error(res, 400, "'%s' must be an object of strings", what);
        return -1;
    }
    json_object_foreach((json_t *)o, k, v)
    {
        if (!json_is_string(v)) {
            e2b_reply_error(res, 400, "'%s.%.64s' must be a string", what, k);
            return -1;
        }
    }
    return 0;
}

static json_t *create_body(const json_t *in, const char *image)
{
    json_t *t = json_object_get(in, "timeout");
    json_int_t timeout = json_is_integer(t) ? json_integer_value(t) : DEFAULT_TIMEOUT_S;
    json_t *props = json_pack("{s:I}", "maxLifetimeSeconds", timeout);
    /* autoPause: the sandbox is suspended at its end, not deleted.  */
    if (json_is_true(json_object_get(in, "autoPause")))
        json_object_set_new(props, "lifetimeEndAction", json_string("Suspend"));
    if (*image)
        json_object_set_new(props, "image", json_string(image));
    json_t *env = json_object_get(in, "envVars");
    if (json_is_object(env) && json_object_size(env))
        json_object_set(props, "env", env);
    return json_pack("{s:o}", "properties", props);
}

/* Waits until the sandbox runs (ARM creates asynchronously; E2B's create
 * answers with a sandbox ready for commands).  A cold start takes tens of
 * milliseconds, so the first polls are 1 ms apart; a create waiting for
 * an image pull or for room is polled less often.  */
static int wait_running(rest_t *r, const char *id)
{
    int64_t start = sbx_monotonic_ms(), deadline = start + CREATE_WAIT_MS;
    for (;;) {
        arm_reply_t ar;
        get_sandbox(r, id, &ar);
        json_t *sb = ar.status == 200 ? arm_reply_json(&ar) : NULL;
        const char *st = prop_str(sb, "state");
        const char *ps = prop_str(sb, "provisioningState");
        if (st && strcmp(st, "Running") == 0) {
            json_decref(sb);
            arm_reply_done(&ar);
            return 0;
        }
        bool failed = (st && strcmp(st, "Failed") == 0) || (ps && strcmp(ps, "Failed") == 0);
        if (!sb || failed || sbx_monotonic_ms() > deadline) {
            if (!sb)
                e2b_reply_arm_error(r->res, &ar);
            else if (failed)
                e2b_reply_error(r->res, 500, "the sandbox failed to start: %s",
                                prop_str(sb, "statusMessage") ? prop_str(sb, "statusMessage")
                                                              : "no detail");
            else
                e2b_reply_error(r->res, 504, "the sandbox did not start in time (%s: %s)",
                                st ? st : "?",
                                prop_str(sb, "statusMessage") ? prop_str(sb, "statusMessage") : "");
            json_decref(sb);
            arm_reply_done(&ar);
            return -1;
        }
        json_decref(sb);
        arm_reply_done(&ar);
        int64_t waited = sbx_monotonic_ms() - start;
        usleep(waited < 200 ? 1000 : waited < 5000 ? 10000 : 50000);
    }
}

static void create(rest_t *r)
{
    _cleanup_json_ json_t *in = json_loadb(r->req->body, r->req->body_len, 0, NULL);
    if (!json_is_object(in)) {
        e2b_reply_error(r->res, 400, "the body must be a JSON object");
        return;
    }
    const char *tmpl = json_string_value(json_object_get(in, "templateID"));
    json_t *t = json_object_get(in, "timeout");
    if (!tmpl) {
        e2b_reply_error(r->res, 400, "templateID is required");
        return;
    }
    if (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
              json_integer_value(t) > MAX_TIMEOUT_S)) {
        e2b_reply_error(r->res, 400, "timeout must be 0 to %d seconds", MAX_TIMEOUT_S);
        return;
    }
    if (check_strings(json_object_get(in, "metadata"), "metadata", r->res) < 0 ||
        check_strings(json_object_get(in, "envVars"), "envVars", r->res) < 0)
        return;
    const char *image = template_image(r->e, tmpl);
    if (!image) {
        e2b_reply_error(r->res, 404, "template '%.128s' not found", tmpl);
        return;
    }
    if (ensure_group(r) < 0)
        return;
    char id[21];
    new_id(id);
    _cleanup_json_ json_t *body = create_body(in, image);
    _cleanup_free_ char *js = json_dumps(body, JSON_COMPACT);
    arm_req_t rq = {.method = "PUT",
                    .sandbox = id,
                    .suffix = "",
                    .bearer = r->key,
                    .body = js,
                    .len = strlen(js)};
    arm_reply_t ar;
    arm_call(r->e, &rq, &ar);
    if (ar.status != 200 && ar.status != 201) {
        e2b_reply_arm_error(r->res, &ar);
        arm_reply_done(&ar);
        return;
    }
    arm_reply_done(&ar);
    json_t *md = json_object_get(in, "metadata");
    json_t *resume = json_object_get(json_object_get(in, "autoResume"), "enabled");
    _cleanup_json_ json_t *meta = json_pack(
        "{s:s,s:o,s:b,s:b}", "template", tmpl, "metadata",
        json_is_object(md) ? json_incref(md) : json_object(), "autoPause",
        json_is_true(json_object_get(in, "autoPause")), "autoResume", json_is_true(resume));
    sbx_error_t err = {0};
    if (e2b_meta_put(r->e, id, meta, &err) < 0) {
        e2b_reply_error(r->res, 500, "%s", err.msg);
        return;
    }
    if (wait_running(r, id) < 0)
        return;
    http_reply_json(r->res, 201, created_json(r->e, id, tmpl));
}

/* ---- list ---- */

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static char *unescape(const char *s)
{
    char *out = xmalloc(strlen(s) + 1), *o = out;
    for (; *s; s++) {
        int hi, lo;
        if (*s == '%' && (hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            s += 2;
        } else {
            *o++ = *s == '+' ? ' ' : *s;
        }
    }
    *o = '\0';
    return out;
}

static bool metadata_matches(const e2b_t *e, const json_t *sb, const char *filter)
{
    if (!filter || !*filter)
        return true;
    _cleanup_json_ json_t *stored = e2b_meta_get(e, json_string_value(json_object_get(sb, "name")));
    json_t *tags = json_object_get(stored, "metadata");
    _cleanup_free_ char *copy = xstrdup(filter);
    char *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq = '\0';
        /* The SDK encodes each key and value, then the pairs as a query.  */
        char *k = unescape(kv), *v = unescape(eq ? eq + 1 : "");
        const char *have = json_string_value(json_object_get(tags, k));
        bool ok = have && strcmp(have, v) == 0;
        free(k);
        free(v);
        if (!ok)
            return false;
    }
    return true;
}

static bool state_matches(const json_t *sb, const char *filter)
{
    if (!filter || !*filter)
        return true;
    const char *mine = state_paused(prop_str(sb, "state")) ? "paused" : "running";
    _cleanup_free_ char *copy = xstrdup(filter);
    char *save = NULL;
    for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save))
        if (strcmp(s, mine) == 0)
            return true;
    return false;
}

static int by_start(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int64_t d = parse_time_ms(prop_str(x, "createdAt")) - parse_time_ms(prop_str(y, "createdAt"));
    if (d)
        return d < 0 ? -1 : 1;
    return strcmp(json_string_value(json_object_get(x, "name")),
                  json_string_value(json_object_get(y, "name")));
}

/* GET /v2/sandboxes (and /sandboxes, running ones only): filtered by
 * metadata and state, ordered by start, paged with limit and nextToken
 * (the id of the last sandbox of the previous page).  */
static void list(rest_t *r, bool v2)
{
    const char *meta = http_query(r->req, "metadata");
    const char *state = v2 ? http_query(r->req, "state") : "running";
    const char *next = http_query(r->req, "nextToken");
    const char *lim = http_query(r->req, "limit");
    const char *order = http_query(r->req, "order");
    long limit = lim ? strtol(lim, NULL, 10) : LIST_LIMIT_MAX;
    if (limit < 1 || limit > LIST_LIMIT_MAX)
        limit = LIST_LIMIT_MAX;
    arm_reply_t ar;
    _cleanup_json_ json_t *all = arm_list_sandboxes(r->e, r->key, &ar);
    if (!all && ar.status != 404) {
        e2b_reply_arm_error(r->res, &ar);
        arm_reply_done(&ar);
        return;
    }
    arm_reply_done(&ar);
    if (all)
        e2b_meta_prune(r->e, all);
    size_t n = json_array_size(all), k = 0;
    _cleanup_free_ json_t **pick = xcalloc(n + 1, sizeof(*pick));
    for (size_t i = 0; i < n; i++) {
        json_t *sb = json_array_get(all, i);
        if (!deleting(sb) && json_string_value(json_object_get(sb, "name")) &&
            metadata_matches(r->e, sb, meta) && state_matches(sb, state))
            pick[k++] = sb;
    }
    qsort(pick, k, sizeof(*pick), by_start);
    bool desc = order && strcasecmp(order, "desc") == 0;
    json_t *out = json_array();
    bool started = !next || !*next;
    size_t taken = 0;
    const char *last = NULL;
    for (size_t i = 0; i < k; i++) {
        json_t *sb = pick[desc ? k - 1 - i : i];
        const char *name = json_string_value(json_object_get(sb, "name"));
        if (!started) {
            started = strcasecmp(name, next) == 0;
            continue;
        }
        if (taken == (size_t)limit) {
            if (v2)
                http_add_header(r->res, "x-next-token", "%s", last);
            break;
        }
        json_array_append_new(out, sandbox_json(r->e, sb, false));
        last = name;
        taken++;
    }
    http_reply_json(r->res, 200, out);
}

/* ---- the rest of a sandbox's calls ---- */

static void kill_sandbox(rest_t *r, const char *id)
{
    json_t *sb = fetch(r, id);
    if (!sb)
        return;
    json_decref(sb);
    arm_req_t rq = {.method = "DELETE", .sandbox = id, .suffix = "", .bearer = r->key};
    arm_reply_t ar;
    arm_call(r->e, &rq, &ar);
    if (ar.status >= 200 && ar.status < 300) {
        e2b_meta_delete(r->e, id);
        http_reply_empty(r->res, 204);
    } else {
        e2b_reply_arm_error(r->res, &ar);
    }
    arm_reply_done(&ar);
}

/* The sandbox ends `secs` from now: its ARM lifetime (counted from its
 * creation or, with lifetimeEndAction Suspend, its last resume) becomes
 * the time since then plus secs.  A PUT of the whole resource, as ARM
 * clients update one.  */
static int set_end(rest_t *r, json_t *sb, const char *id, json_int_t secs)
{
    int64_t started = lifetime_start_ms(sb);
    int64_t age = started ? (sbx_now_ms() - started + 999) / 1000 : 0;
    json_t *props = json_object_get(sb, "properties");
    json_object_set_new(props, "maxLifetimeSeconds", json_integer(secs ? age + secs : 0));
    _cleanup_json_ json_t *body = json_pack("{s:O}", "properties", props);
    _cleanup_free_ char *js = json_dumps(body, JSON_COMPACT);
    const char *etag = json_string_value(json_object_get(sb, "etag"));
    arm_req_t rq = {.method = "PUT",
                    .sandbox = id,
                    .suffix = "",
                    .bearer = r->key,
                    .body = js,
                    .len = strlen(js),
                    .if_match = etag};
    arm_reply_t ar;
    arm_call(r->e, &rq, &ar);
    int ret = ar.status == 200 || ar.status == 201 ? 0 : -1;
    if (ret < 0)
        e2b_reply_arm_error(r->res, &ar);
    arm_reply_done(&ar);
    return ret;
}

static int body_timeout(rest_t *r, json_int_t *secs, bool required)
{
    _cleanup_json_ json_t *in =
        r->req->body_len ? json_loadb(r->req->body, r->req->body_len, 0, NULL) : json_object();
    json_t *t = json_object_get(in, "timeout");
    if ((!t && required) || (t && (!json_is_integer(t) || json_integer_value(t) < 0 ||
                                   json_integer_value(t) > MAX_TIMEOUT_S))) {
        e2b_reply_error(r->res, 400, "timeout must be 0 to %d seconds", MAX_TIMEOUT_S);
        return -1;
    }
    *secs = t ? json_integer_value(t) : -1;
    return 0;
}

static void set_timeout(rest_t *r, const char *id)
{
    json_int_t secs;
    if (body_timeout(r, &secs, true) < 0)
        return;
    _cleanup_json_ json_t *sb = fetch(r, id);
    if (sb && set_end(r, sb, id, secs) == 0)
        http_reply_empty(r->res, 204);
}

static int action(rest_t *r, const char *id, const char *what)
{
    _cleanup_free_ char *suffix = xasprintf("/%s", what);
    arm_req_t rq = {.method = "POST",
                    .sandbox = id,
                    .suffix = suffix,
                    .bearer = r->key,
                    .body = "{}",
                    .len = 2,
                    .timeout_ms = 120000};
    arm_reply_t ar;
    arm_call(r->e, &rq, &ar);
    int ret = ar.status == 200 || ar.status == 202 ? 0 : -1;
    if (ret < 0)
        e2b_reply_arm_error(r->res, &ar);
    arm_reply_done(&ar);
    return ret;
}

static void pause_sandbox(rest_t *r, const char *id)
{
    _cleanup_json_ json_t *sb = fetch(r, id);
    if (!sb)
        return;
    if (state_paused(prop_str(sb, "state"))) {
        e2b_reply_error(r->res, 409, "sandbox \"%s\" is already paused", id);
        return;
    }
    if (action(r, id, "suspend") == 0)
        http_reply_empty(r->res, 204);
}

/* Connect (and the older resume): a paused sandbox is resumed (201), a
 * running one answered as it is (200); a timeout given moves the end.  */
static void connect_sandbox(rest_t *r, const char *id, bool must_be_paused)
{
    json_int_t secs;
    if (body_timeout(r, &secs, false) < 0)
        return;
    _cleanup_json_ json_t *sb = fetch(r, id);
    if (!sb)
        return;
    bool paused = state_paused(prop_str(sb, "state"));
    if (must_be_paused && !paused) {
        e2b_reply_error(r->res, 409, "sandbox \"%s\" is already running", id);
        return;
    }
    if (paused) {
        /* The resume restarts a Suspend lifetime; the end is set after it. */
        if (action(r, id, "resume") < 0)
            return;
        json_decref(TAKE_PTR(sb));
        if (secs >= 0 && !(sb = fetch(r, id)))
            return;
    }
    if (secs >= 0 && set_end(r, sb, id, secs) < 0)
        return;
    _cleanup_json_ json_t *stored = e2b_meta_get(r->e, id);
    http_reply_json(r->res, paused ? 201 : 200, created_json(r->e, id, template_of(stored)));
}

static void get_info(rest_t *r, const char *id)
{
    _cleanup_json_ json_t *sb = fetch(r, id);
    if (sb)
        http_reply_json(r->res, 200, sandbox_json(r->e, sb, true));
}

static bool is(const http_request_t *req, const char *m)
{
    return strcmp(req->method, m) == 0;
}

/* /sandboxes/{id}[/what]: the id and the rest after it.  */
static bool sandbox_path(const char *p, char *id, size_t size, const char **rest)
{
    if (!sbx_str_has_prefix(p, "/sandboxes/"))
        return false;
    p += strlen("/sandboxes/");
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= size)
        return false;
    memcpy(id, p, n);
    id[n] = '\0';
    *rest = p + n;
    return true;
}

void e2b_rest_handle(e2b_t *e, const http_request_t *req, http_response_t *res)
{
    rest_t r = {.e = e, .req = req, .res = res, .key = http_header(req, "X-API-Key")};
    if (!r.key || !*r.key) {
        http_add_header(res, "WWW-Authenticate", "ApiKey");
        e2b_reply_error(res, 401, "Missing X-API-Key header");
        return;
    }
    const char *p = req->path;
    bool v2 = sbx_str_has_prefix(p, "/v2/");
    if (v2)
        p += 3;
    char id[80];
    const char *rest = "";
    if (strcmp(p, "/sandboxes") == 0) {
        if (is(req, "POST"))
            return create(&r);
        if (is(req, "GET"))
            return list(&r, v2);
    } else if (sandbox_path(p, id, sizeof(id), &rest)) {
        if (!*rest && is(req, "GET") && !v2)
            return get_info(&r, id);
        if (!*rest && is(req, "DELETE") && !v2)
            return kill_sandbox(&r, id);
        if (strcmp(rest, "/timeout") == 0 && is(req, "POST"))
            return set_timeout(&r, id);
        if (strcmp(rest, "/pause") == 0 && is(req, "POST"))
            return pause_sandbox(&r, id);
        if (strcmp(rest, "/connect") == 0 && is(req, "POST"))
            return connect_sandbox(&r, id, false);
        if (strcmp(rest, "/resume") == 0 && is(req, "POST"))
            return connect_sandbox(&r, id, true);
        if (strcmp(rest, "/refreshes") == 0 && is(req, "POST")) {
            json_t *sb = fetch(&r, id);
            if (sb)
                http_reply_empty(res, 204);
            json_decref(sb);
            return;
        }
        if (strcmp(rest, "/metrics") == 0 && is(req, "GET"))
            return e2b_metrics_handle(e, r.key, id, req, res);
    }
    e2b_reply_error(res, 404, "no route for %s %.200s", req->method,
                    sbx_utf8_valid(req->path, strlen(req->path)) ? req->path : "?");
}
