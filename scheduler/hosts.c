/* hosts.c -- the host registry: registration, health checks that mark a
 * silent host Down (failing its sandboxes), drain and removal (the admin
 * API over them is the server's, server/admin.c).  */
#include "scheduler/internal.h"

#include <ctype.h>
#include <string.h>

#define HEALTH_TIMEOUT_MS 2000

static bool url_valid(const char *url)
{
    if (strlen(url) > 512)
        return false;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\')
            return false;
    if (sbx_str_has_prefix(url, "https://"))
        return strlen(url) > 8;
    /* Plain HTTP only to an agent on this machine (tests, development):
     * the host is parsed, never matched by prefix ("http://127.evil.com",
     * "http://127.0.0.1@evil.com").  */
    if (!sbx_str_has_prefix(url, "http://"))
        return false;
    const char *authority = url + 7;
    size_t n = strcspn(authority, "/?#");
    _cleanup_free_ char *hostport = xstrndup(authority, n);
    if (strchr(hostport, '@')) /* user info: the host is what follows it */
        return false;
    /* "host", "host:port", "[v6]" or "[v6]:port".  */
    char *end = hostport[0] == '[' ? strchr(hostport, ']') : strrchr(hostport, ':');
    if (hostport[0] == '[') {
        if (!end)
            return false;
        end++;
    }
    if (end && *end == ':') {
        const char *port = end + 1;
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
            return false;
        if (atoi(port) > 65535)
            return false;
        *end = '\0';
    } else if (end && *end) {
        return false;
    }
    if (hostport[0] != '[' && strchr(hostport, ':'))
        return false;
    return http_host_is_loopback(hostport);
}

bool sched_host_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return false;
    return true;
}

/* Warm-pool members of a host that is gone are forgotten; the pool keeper
 * starts others on hosts that answer.  */
static void forget_pool_members(sched_t *s, const char *host)
{
    st_resource_delete_by_host(s->db, POOL_TYPE, host, NULL);
}

/* A group with hostFailurePolicy "Recreate" gets its sandboxes of a lost
 * host made again elsewhere (fresh: what they had written is gone with the
 * host); the old copy is destroyed if that host comes back.  Returns
 * whether the sandbox was queued for that.  */
static bool recreate_elsewhere(sched_t *s, const st_resource_t *sb, const char *why)
{
    st_resource_t group = {0};
    if (!sb->parent_id || st_resource_get(s->db, sb->parent_id, &group, NULL) < 0)
        return false;
    json_t *gp = json_object_get(group.body, "properties");
    const char *policy = json_string_value(json_object_get(gp, "hostFailurePolicy"));
    const char *loc = json_string_value(json_object_get(group.body, "location"));
    bool queued = false;
    if (policy && strcmp(policy, "Recreate") == 0) {
        _cleanup_free_ char *nloc = xstrdup(loc ? loc : "local");
        char *o = nloc;
        for (const char *p = nloc; *p; p++)
            if (*p != ' ')
                *o++ = (char)tolower((unsigned char)*p);
        *o = '\0';
        st_tx_t *tx = st_begin(s->db, NULL);
        st_resource_t cur = {0};
        if (tx && st_tx_resource_get(tx, sb->id, &cur, NULL) == 0) {
            json_t *props = json_object_get(cur.body, "properties");
            _cleanup_free_ char *msg = xasprintf("recreating: %s", why);
            free(cur.runtime_id);
            cur.runtime_id = NULL;
            cur.need = (sbx_need_t){0};
            json_object_set_new(props, "state", json_string("Pending"));
            json_object_set_new(props, "statusMessage", json_string(msg));
            json_object_set_new(props, "provisioningState", json_string("Updating"));
            json_object_del(props, "host");
            free(cur.host_id);
            cur.host_id = NULL;
            st_operation_t op = {.resource_id = cur.id,
                                 .kind = "update",
                                 .status = "InProgress",
                                 .location = nloc,
                                 .subscription = cur.subscription,
                                 .start_ms = sched_now(s)};
            sbx_uuid(op.id);
            if (st_tx_resource_put(tx, &cur, NULL) == 0 &&
                st_tx_operation_put(tx, &op, NULL) == 0 && st_commit(TAKE_PTR(tx), NULL) == 0)
                queued = true;
        }
        st_rollback(tx);
        st_resource_done(&cur);
    }
    st_resource_done(&group);
    if (queued) {
        sched_place_add(s, sb->host_id, &sb->need, -1);
        sched_notify(s);
    }
    return queued;
}

/* Sandboxes of a host that is gone: Failed, with the reason (or made again
 * elsewhere, when their group asks for it).  */
typedef struct host_lost {
    sched_t *s;
    const char *host, *why;
    char when[32];
} host_lost_t;

static void fail_sandbox(void *ud, const st_resource_t *sb)
{
    host_lost_t *c = ud;
    if (sbx_body_state(sb->body) == SBX_STATE_FAILED)
        return;
    _cleanup_free_ char *msg = xasprintf("host '%s' %s at %s", c->host, c->why, c->when);
    if (recreate_elsewhere(c->s, sb, msg))
        return;
    json_t *patch = json_pack("{s:s,s:s}", "state", "Failed", "statusMessage", msg);
    sched_sandbox_update(c->s->db, sb->id, patch, NULL, NULL);
    json_decref(patch);
}

static void fail_host_sandboxes(sched_t *s, const char *host, const char *why)
{
    forget_pool_members(s, host);
    host_lost_t c = {.s = s, .host = host, .why = why};
    sbx_time_format(sched_now(s), c.when, sizeof(c.when));
    st_list_query_t q = {.type = SANDBOX_TYPE, .host_id = host, .limit = 1000};
    st_resource_each(s->db, &q, fail_sandbox, &c, NULL);
}

static void check_one(sched_t *s, st_host_t *h)
{
    sched_reply_t r;
    int64_t now = sched_now(s);
    bool ok = sched_call(s, h->url, "GET", "/v1/health", NULL, NULL, NULL, 0, HEALTH_TIMEOUT_MS,
                         &r) == 0 &&
              r.status == 200;
    json_t *info = ok ? sched_reply_json(&r) : NULL;
    sched_reply_done(&r);
    const char *was = h->state;
    const char *next = was;
    ok = ok && json_is_object(info);
    if (ok) {
        json_decref(h->info);
        h->info = info;
        h->last_seen_ms = now;
        if (strcmp(was, "Down") == 0)
            next = "Ready";
    } else {
        json_decref(info);
        if (strcmp(was, "Down") != 0 && now - h->last_seen_ms > s->cfg.host_down_ms)
            next = "Down";
    }
    bool changed = strcmp(next, was) != 0;
    if (!ok && !changed)
        return;
    /* h was read before the health call: the row may have been drained,
     * re-registered or removed since, and writing h back would undo that. */
    _cleanup_free_ char *now_state = NULL;
    if (st_host_report(s->db, h->name, ok ? h->info : NULL, h->last_seen_ms, was, next, &now_state,
                       NULL) < 0 ||
        !changed || strcmp(now_state, next) != 0)
        return;
    sbx_log(SBX_LOG_WARN, MODULE_NAME, "host %s: %s -> %s", h->name, was, next);
    free(h->state);
    h->state = xstrdup(next);
    if (strcmp(next, "Down") == 0)
        fail_host_sandboxes(s, h->name, "stopped answering its health checks");
}

int sched_hosts_check(sched_t *s)
{
    st_host_t *hosts = NULL;
    size_t n = 0;
    if (st_host_list(s->db, &hosts, &n, NULL) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        check_one(s, &hosts[i]);
    st_hosts_free(hosts, n);
    return 0;
}

int sched_host_register(sched_t *s, const char *name, const char *url, const char *environment,
                        sbx_error_t *err)
{
    /* The target names the bad argument; the admin API names the error.  */
    if (!sched_host_name_valid(name)) {
        sbx_error_set(err, SBX_ERR_INVALID,
                      "Host names are 1-63 letters, digits, '-', '_' or '.'.");
        return sbx_error_target(err, "name");
    }
    if (!url_valid(url)) {
        sbx_error_set(err, SBX_ERR_INVALID,
                      "The url must be https://host:port (http:// only on loopback).");
        return sbx_error_target(err, "url");
    }
    if (!sched_host_name_valid(environment)) {
        sbx_error_set(err, SBX_ERR_INVALID,
                      "The environment label is 1-63 letters, digits, '-', '_' or '.'.");
        return sbx_error_target(err, "environment");
    }
    st_host_t h = {0};
    bool existed = st_host_lookup(s->db, name, &h, NULL) > 0;
    st_host_t next = {.name = (char *)name,
                      .url = (char *)url,
                      .environment = (char *)environment,
                      .state = existed ? h.state : "Down",
                      .info = existed ? h.info : NULL,
                      .last_seen_ms = existed ? h.last_seen_ms : 0,
                      .created_ms = existed ? h.created_ms : sched_now(s)};
    int r = st_host_put(s->db, &next, err);
    st_host_done(&h);
    if (r == 0 && st_host_lookup(s->db, name, &h, NULL) > 0) {
        check_one(s, &h);
        st_host_done(&h);
    }
    return r;
}

unsigned sched_host_sandboxes(sched_t *s, const char *name)
{
    unsigned placed = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_loads; i++)
        if (strcasecmp(s->loads[i].name, name) == 0)
            placed = s->loads[i].sandboxes;
    pthread_mutex_unlock(&s->lock);
    return placed;
}

int sched_host_drain(sched_t *s, const char *name, bool drain, sbx_error_t *err)
{
    st_host_t h = {0};
    int found = st_host_lookup(s->db, name, &h, err);
    if (found <= 0)
        return found;
    const char *next = drain ? "Draining" : strcmp(h.state, "Down") == 0 ? "Down" : "Ready";
    free(h.state);
    h.state = xstrdup(next);
    int r = st_host_put(s->db, &h, err);
    st_host_done(&h);
    return r < 0 ? -1 : 1;
}

int sched_host_remove(sched_t *s, const char *name, sbx_error_t *err)
{
    st_host_t h = {0};
    if (st_host_lookup(s->db, name, &h, NULL) <= 0)
        return 0;
    if (st_host_delete(s->db, name, err) < 0) {
        st_host_done(&h);
        return -1;
    }
    fail_host_sandboxes(s, h.name, "was removed from the pool");
    st_host_done(&h);
    return 1;
}
