/* worker.c -- worker threads that take due operations from storage and
 * drive host agents until each operation ends Succeeded or Failed.  Every
 * step is written down before the agent is called (host and runtime id
 * first), and every agent call is idempotent, so a crash anywhere is
 * recovered by running the operation again.  */
#include "scheduler/internal.h"

#include <string.h>

#include "api/api.h"
#include "image/image.h"

#define BATCH 16
#define IDLE_WAIT_MS 500
#define MAX_BACKOFF_MS 30000

static json_t *props_of(const st_resource_t *r)
{
    return json_object_get(r->body, "properties");
}

/* ---- operation steps ---- */

static void finish(sched_t *s, const st_operation_t *op, bool ok, sbx_failure_t why,
                   const char *msg, json_t *patch)
{
    sbx_error_t err = {0};
    const char *code = ok ? NULL : api_failure_code(why);
    if (api_operation_finish(s->db, op->id, ok, code, msg, patch, &err) < 0)
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "operation %s: %s", op->id, err.msg);
}

/* The operation fails, and its sandbox with it, saying why.  */
static void fail_operation(sched_t *s, const st_operation_t *op, sbx_failure_t why, const char *msg)
{
    _cleanup_json_ json_t *patch =
        json_pack("{s:s,s:s}", "state", sbx_state_name(SBX_STATE_FAILED), "statusMessage", msg);
    finish(s, op, false, why, msg, patch);
}

static void op_store(sched_t *s, const st_operation_t *op)
{
    st_tx_t *tx = st_begin(s->db, NULL);
    if (tx && st_tx_operation_put(tx, op, NULL) == 0)
        st_commit(TAKE_PTR(tx), NULL);
    st_rollback(tx);
}

static void retry_later(sched_t *s, st_operation_t *op, const char *why)
{
    op->attempts++;
    if (op->attempts >= s->cfg.max_attempts) {
        fail_operation(s, op, SBX_FAIL_HOST_CALL, why);
        return;
    }
    int64_t backoff = 500LL << (op->attempts < 6 ? op->attempts : 6);
    op->next_attempt_ms = sched_now(s) + (backoff < MAX_BACKOFF_MS ? backoff : MAX_BACKOFF_MS);
    op_store(s, op);
    sbx_log(SBX_LOG_WARN, MODULE_NAME, "operation %s attempt %d: %s", op->id, op->attempts, why);
}

/* ---- placement ---- */

#define PLACEMENT_RETRY_MS 1000
#define WAITING_PREFIX "waiting for a host with room: "

static bool refused_for_now(sbx_failure_t why)
{
    return why == SBX_FAIL_NO_HOST || why == SBX_FAIL_NO_ROOM;
}

static bool refused_for_good(sbx_failure_t why)
{
    return why == SBX_FAIL_NO_DRIVER || why == SBX_FAIL_TOO_LARGE;
}

/* No host takes the sandbox.  It waits, Pending with a statusMessage that
 * says why, and is tried again every second (room frees as sandboxes go)
 * until placement_wait_ms have passed since the request; then, or at once
 * when no host could ever take it, the create fails.  Waiting costs no
 * attempt: attempts count failed calls to hosts.  */
static void placement_refused(sched_t *s, st_operation_t *op, const st_resource_t *sb,
                              sbx_failure_t why, const sbx_error_t *e)
{
    int64_t now = sched_now(s);
    bool for_good = refused_for_good(why);
    if (for_good || now - op->start_ms >= s->cfg.placement_wait_ms) {
        _cleanup_free_ char *msg = for_good
                                       ? xstrdup(e->msg)
                                       : xasprintf("no host had room within %d s: %s",
                                                   (s->cfg.placement_wait_ms + 999) / 1000, e->msg);
        fail_operation(s, op, why, msg);
        return;
    }
    _cleanup_free_ char *msg = xasprintf(WAITING_PREFIX "%s", e->msg);
    const char *was = json_string_value(json_object_get(props_of(sb), "statusMessage"));
    if (!was || strcmp(was, msg) != 0) {
        json_t *patch = json_pack("{s:s,s:s}", "state", "Pending", "statusMessage", msg);
        sched_sandbox_update(s->db, sb->id, patch, NULL, NULL);
        json_decref(patch);
    }
    op->next_attempt_ms = now + PLACEMENT_RETRY_MS;
    op_store(s, op);
}

static int placement_record(sched_t *s, st_resource_t *sb, const sbx_spec_t *spec, const char *env,
                            char **host, sbx_failure_t *why, sbx_error_t *err);

/* Write the host and runtime id down before calling the agent, so a crash
 * between the two calls the same host with the same id again.  */
static int assign_host(sched_t *s, st_resource_t *sb, char **host, sbx_failure_t *why,
                       sbx_error_t *err)
{
    if (sb->host_id && sb->runtime_id) {
        *host = xstrdup(sb->host_id);
        return 0;
    }
    st_resource_t group = {0};
    int have = sched_read_group(s->db, sb, &group, err);
    if (have < 0)
        return -1;
    sbx_spec_t spec;
    sched_spec_of(have ? &group : NULL, sb, &spec);
    _cleanup_free_ char *env = have ? sched_group_environment(&group) : xstrdup("default");
    st_resource_done(&group);
    pthread_mutex_lock(&s->place_lock);
    int ret = placement_record(s, sb, &spec, env, host, why, err);
    pthread_mutex_unlock(&s->place_lock);
    sbx_spec_done(&spec);
    return ret;
}

/* Choose a host and write the choice down (caller holds place_lock).  */
static int placement_record(sched_t *s, st_resource_t *sb, const sbx_spec_t *spec, const char *env,
                            char **host, sbx_failure_t *why, sbx_error_t *err)
{
    sbx_need_t need = sbx_spec_need(spec);
    if (sched_place_choose(s, env, spec->driver, &need, host, why, err) < 0)
        return -1;
    char rid[37];
    sbx_uuid(rid);
    st_tx_t *tx = st_begin(s->db, err);
    st_resource_t cur = {0};
    int ret = tx ? st_tx_resource_get(tx, sb->id, &cur, err) : -1;
    if (ret == 0) {
        json_t *props = props_of(&cur);
        const char *msg = json_string_value(json_object_get(props, "statusMessage"));
        free(cur.runtime_id);
        cur.runtime_id = xstrdup(rid);
        cur.need = need;
        json_object_set_new(props, "state", json_string("Starting"));
        json_object_set_new(props, "host", json_string(*host));
        if (msg && sbx_str_has_prefix(msg, WAITING_PREFIX))
            json_object_set_new(props, "statusMessage", json_string(""));
        free(cur.host_id);
        cur.host_id = xstrdup(*host);
        ret = st_tx_resource_put(tx, &cur, err);
    }
    if (ret == 0)
        ret = st_commit(TAKE_PTR(tx), err);
    st_rollback(tx);
    if (ret == 0) {
        sched_place_add(s, *host, &need, +1);
        st_resource_done(sb);
        *sb = cur;
    } else {
        st_resource_done(&cur);
        free(*host);
        *host = NULL;
    }
    return ret;
}

static json_t *props_from_agent(const json_t *reply, const char *host)
{
    sbx_state_t st = sbx_state_parse(sched_agent_state(reply));
    const char *state = sbx_state_name(st && st != SBX_STATE_CREATING ? st : SBX_STATE_STARTING);
    json_t *patch = json_pack("{s:s,s:s,s:s}", "state", state, "host", host, "statusMessage", "");
    const char *keys[] = {"createdAt", "lastActivityAt"};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        json_t *v = sched_agent_time(reply, keys[i]);
        if (v)
            json_object_set(patch, keys[i], v);
    }
    json_t *msg = sched_agent_message(reply);
    if (msg && json_string_length(msg) > 0)
        json_object_set_new(patch, "statusMessage", msg);
    else
        json_decref(msg);
    return patch;
}

/* What a host's failed answer says, for a statusMessage (owned).  */
static char *agent_error_message(const sched_reply_t *r)
{
    _cleanup_json_ json_t *j = sched_reply_json(r);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    return xasprintf("host answered %ld: %s", r->status, m ? m : "no detail");
}

/* secureEnv, opened only here, on its way to the host: into the spec's env
 * (the API refused a name in both).  */
static int spec_add_secrets(sched_t *s, const st_resource_t *sb, sbx_spec_t *spec, sbx_error_t *err)
{
    const char *sealed = json_string_value(json_object_get(sb->body, API_SECURE_ENV_KEY));
    if (!sealed)
        return 0;
    if (!s->cfg.secret_key)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "no secrets key to open secureEnv");
    _cleanup_json_ json_t *secrets = api_secret_open(s->cfg.secret_key, sealed, err);
    if (!secrets)
        return -1;
    json_object_update(spec->env, secrets);
    return 0;
}

/* The host's answer to a create: Succeeded with what it reports; another
 * attempt when it did not answer or failed (5xx); Failed when it refused.  */
static void create_answered(sched_t *s, st_operation_t *op, const char *host, int rc,
                            const sched_reply_t *r)
{
    if (rc < 0 || r->status >= 500) {
        _cleanup_free_ char *why = r->status ? agent_error_message(r) : xstrdup(r->error);
        _cleanup_free_ char *msg = xasprintf("host '%s': %s", host, why);
        retry_later(s, op, msg);
    } else if (r->status == 200 || r->status == 201) {
        _cleanup_json_ json_t *reply = sched_reply_json(r);
        _cleanup_json_ json_t *patch = props_from_agent(reply, host);
        finish(s, op, true, SBX_FAIL_NONE, NULL, patch);
    } else {
        _cleanup_free_ char *msg = agent_error_message(r);
        fail_operation(s, op, SBX_FAIL_CREATE, msg);
    }
}

/* Ask the sandbox's host (whose slot the caller holds) to create it.  */
static void create_on_host(sched_t *s, st_operation_t *op, const st_resource_t *sb,
                           const st_host_t *h)
{
    sbx_error_t err = {0};
    sbx_spec_t spec = {0};
    if (sched_sandbox_spec(s->db, sb, &spec, &err) < 0) {
        retry_later(s, op, err.msg);
        return;
    }
    if (spec_add_secrets(s, sb, &spec, &err) < 0) {
        fail_operation(s, op, SBX_FAIL_CREATE, err.msg);
        sbx_spec_done(&spec);
        return;
    }
    _cleanup_json_ json_t *j = sched_spec_json(&spec);
    sbx_spec_done(&spec);
    /* the egress policy travels with the create, so the sandbox has its
     * network from the start (egress_sync.c keeps it current) */
    _cleanup_json_ json_t *egress = NULL;
    if (sched_egress_for(s->db, sb, &egress, &err) < 0) {
        retry_later(s, op, err.msg);
        return;
    }
    json_object_set(j, "egress", egress);
    /* a sandbox that may use one of its group's identities reaches the
     * host's identity endpoint */
    const char *identity =
        json_string_value(json_object_get(json_object_get(sb->body, "properties"), "identity"));
    if (identity && *identity)
        json_object_set_new(j, "identity", json_true());
    _cleanup_free_ char *body = json_dumps(j, JSON_COMPACT);
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", sb->runtime_id);
    sched_reply_t r;
    int rc = sched_call(s, h->url, "PUT", path, NULL, NULL, body, strlen(body),
                        s->cfg.agent_timeout_ms, &r);
    if (rc == 0 && (r.status == 200 || r.status == 201))
        sched_egress_applied(sb->runtime_id, egress);
    create_answered(s, op, sb->host_id, rc, &r);
    sched_reply_done(&r);
}

/* Returns false when the operation was put off because its host already
 * has as many calls in flight as it may (it stays due, untouched).  */
static bool run_sandbox_create(sched_t *s, st_operation_t *op)
{
    sbx_error_t err = {0};
    st_resource_t sb = {0};
    int found = st_resource_lookup(s->db, op->resource_id, &sb, &err);
    if (found <= 0) {
        if (found == 0)
            finish(s, op, false, SBX_FAIL_GONE, "The sandbox was deleted while it was created.",
                   NULL);
        else
            retry_later(s, op, err.msg);
        return true;
    }
    _cleanup_free_ char *host = NULL;
    st_host_t h = {0};
    bool ran = true;
    sbx_failure_t why = SBX_FAIL_NONE;
    if (assign_host(s, &sb, &host, &why, &err) < 0) {
        if (refused_for_now(why) || refused_for_good(why))
            placement_refused(s, op, &sb, why, &err);
        else
            retry_later(s, op, err.msg);
    } else if (st_host_get(s->db, host, &h, NULL) < 0) {
        retry_later(s, op, "the sandbox's host is no longer registered");
    } else if (!sched_slot_take(s, host)) {
        ran = false;
    } else {
        create_on_host(s, op, &sb, &h);
        sched_slot_give(s, host);
    }
    st_host_done(&h);
    st_resource_done(&sb);
    return ran;
}

int sched_sandbox_destroy(sched_t *s, const st_resource_t *sb, sbx_error_t *err)
{
    st_host_t h = {0};
    if (!sb->host_id || !sb->runtime_id)
        return 0;
    int found = st_host_lookup(s->db, sb->host_id, &h, err);
    if (found <= 0) /* gone: nothing to destroy; storage: ask again later */
        return found;
    int ret = 0;
    if (strcmp(h.state, "Down") != 0) {
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", sb->runtime_id);
        sched_reply_t r;
        if (sched_call(s, h.url, "DELETE", path, NULL, NULL, NULL, 0, s->cfg.agent_timeout_ms, &r) <
                0 ||
            (r.status != 204 && r.status != 200 && r.status != 404))
            ret =
                sbx_error_set(err, SBX_ERR_UNAVAILABLE, "host '%s' did not destroy the sandbox: %s",
                              h.name, r.status ? "error reply" : r.error);
        sched_reply_done(&r);
    }
    if (ret == 0)
        sched_place_add(s, sb->host_id, &sb->need, -1);
    st_host_done(&h);
    return ret;
}

static void run_sandbox_delete(sched_t *s, st_operation_t *op)
{
    st_resource_t sb = {0};
    sbx_error_t err = {0};
    int found = st_resource_lookup(s->db, op->resource_id, &sb, &err);
    if (found <= 0) {
        if (found == 0)
            finish(s, op, true, SBX_FAIL_NONE, NULL, NULL);
        else
            retry_later(s, op, err.msg);
        return;
    }
    if (sched_sandbox_destroy(s, &sb, &err) < 0)
        retry_later(s, op, err.msg);
    else
        finish(s, op, true, SBX_FAIL_NONE, NULL, NULL);
    st_resource_done(&sb);
}

/* Destroy one batch of a group's children of one type on their hosts and
 * remove their rows; *why gets the last destroy that must be retried.  */
static int delete_children(sched_t *s, const st_operation_t *op, const char *type, sbx_error_t *why,
                           bool *more)
{
    st_list_query_t q = {.type = type, .parent_id = op->resource_id, .limit = 1000};
    st_list_t l = {0};
    if (st_resource_list(s->db, &q, &l, NULL) < 0)
        return -1;
    for (size_t i = 0; i < l.n; i++) {
        if (sched_sandbox_destroy(s, &l.items[i], why) == 0)
            st_resource_delete(s->db, l.items[i].id, NULL);
    }
    *more = *more || l.next != NULL;
    st_list_done(&l);
    return 0;
}

static void run_group_delete(sched_t *s, st_operation_t *op)
{
    sbx_error_t why = {0};
    bool more = false;
    const char *types[] = {SANDBOX_TYPE, POOL_TYPE};
    for (size_t t = 0; t < ARRAY_SIZE(types); t++)
        if (delete_children(s, op, types[t], &why, &more) < 0) {
            retry_later(s, op, "storage is busy");
            return;
        }
    if (why.code)
        retry_later(s, op, why.msg);
    else if (more)
        sched_notify(s); /* the next batch; the operation stays due */
    else
        finish(s, op, true, SBX_FAIL_NONE, NULL, NULL);
}

/* A sandbox's id continues ".../sandboxGroups/{group}/sandboxes/{name}";
 * "/sandboxes/" elsewhere (a resource group of that name) does not count.  */
static bool is_sandbox_id(const char *id)
{
    _cleanup_free_ char *lower = xstrdup(id);
    sbx_str_lower(lower);
    const char *g = strstr(lower, "/providers/microsoft.app/sandboxgroups/");
    const char *rest =
        g ? strchr(g + strlen("/providers/microsoft.app/sandboxgroups/"), '/') : NULL;
    return rest && sbx_str_has_prefix(rest, "/sandboxes/");
}

/* Returns false when nothing was done (the operation was put off).  */
static bool run_operation(sched_t *s, st_operation_t *op)
{
    bool sandbox = is_sandbox_id(op->resource_id);
    /* An update of a sandbox is a failed one made again (a re-PUT).  */
    if (sandbox && (strcmp(op->kind, "create") == 0 || strcmp(op->kind, "update") == 0))
        return run_sandbox_create(s, op);
    if (sandbox && strcmp(op->kind, "delete") == 0)
        run_sandbox_delete(s, op);
    else if (!sandbox && strcmp(op->kind, "delete") == 0)
        run_group_delete(s, op);
    else
        finish(s, op, true, SBX_FAIL_NONE, NULL, NULL); /* nothing to do on hosts */
    return true;
}

size_t sched_work_once(sched_t *s)
{
    st_operation_t *ops = NULL;
    size_t n = 0, ran = 0;
    if (st_operations_due(s->db, sched_now(s), BATCH, &ops, &n, NULL) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!sched_busy_claim(s, ops[i].id))
            continue;
        /* The batch was read before the claim: another worker may have run
         * this operation meanwhile (finished it, or put it off with a
         * backoff), and running the old copy would redo it or write its
         * stale row back.  */
        st_operation_t cur = {0};
        if (st_operation_lookup(s->db, ops[i].id, &cur, NULL) > 0 &&
            strcmp(cur.status, "InProgress") == 0 && cur.next_attempt_ms <= sched_now(s) &&
            run_operation(s, &cur))
            ran++;
        st_operation_done(&cur);
        sched_busy_release(s, ops[i].id);
    }
    st_operations_free(ops, n);
    return ran;
}

void *sched_worker_main(void *arg)
{
    sched_t *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        if (sched_work_once(s) > 0)
            continue;
        pthread_mutex_lock(&s->lock);
        if (!s->stopping && s->pending_wakeups == 0) {
            struct timespec ts = sbx_deadline_in(IDLE_WAIT_MS);
            pthread_cond_timedwait(&s->wake, &s->lock, &ts);
        }
        if (s->pending_wakeups > 0)
            s->pending_wakeups--;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}
