/* reconcile.c -- the level-triggered loop.  Every pass it checks hosts'
 * health, then compares what storage wants with what each Ready agent
 * reports: it records the sandboxes' actual state, fails those a host lost,
 * destroys what an agent runs that storage does not know, suspends idle
 * sandboxes and deletes (or suspends) those past their lifetime.  */
#include "scheduler/internal.h"

#include <string.h>

#define UNKNOWN_PER_PASS 16

typedef struct agent_view {
    json_t *by_id; /* runtime id -> agent's sandbox object */
} agent_view_t;

static json_t *fetch_agent_sandboxes(sched_t *s, const st_host_t *h)
{
    sched_reply_t r;
    json_t *by_id = NULL;
    if (sched_call(s, h->url, "GET", "/v1/sandboxes", NULL, NULL, NULL, 0, 5000, &r) == 0 &&
        r.status == 200) {
        json_t *j = sched_reply_json(&r);
        by_id = json_object();
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(j, "value"), i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            if (id)
                json_object_set(by_id, id, v);
        }
        json_decref(j);
    }
    sched_reply_done(&r);
    return by_id;
}

static int64_t prop_int(const json_t *props, const json_t *defaults, const char *key)
{
    json_t *v = json_object_get(props, key);
    if (!v)
        v = json_object_get(defaults, key);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* Queue a delete operation for a sandbox past its lifetime, as a DELETE
 * from a client would.  */
static void expire(sched_t *s, const st_resource_t *sb)
{
    st_tx_t *tx = st_begin(s->db, NULL);
    st_resource_t cur = {0};
    if (tx && st_tx_resource_get(tx, sb->id, &cur, NULL) == 0) {
        json_t *props = json_object_get(cur.body, "properties");
        if (sbx_body_provisioning(cur.body) != SBX_PROV_DELETING) {
            json_object_set_new(props, "provisioningState", json_string("Deleting"));
            json_object_set_new(props, "statusMessage",
                                json_string("deleted: maxLifetimeSeconds reached"));
            st_operation_t op = {.resource_id = cur.id,
                                 .kind = "delete",
                                 .status = "InProgress",
                                 .location = "local",
                                 .subscription = cur.subscription,
                                 .start_ms = sched_now(s)};
            sbx_uuid(op.id);
            if (st_tx_resource_put(tx, &cur, NULL) == 0 && st_tx_operation_put(tx, &op, NULL) == 0)
                st_commit(TAKE_PTR(tx), NULL);
        }
    }
    st_rollback(tx);
    st_resource_done(&cur);
    sched_notify(s);
}

static void suspend_for(sched_t *s, const st_host_t *h, const st_resource_t *sb, const char *why)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/suspend", sb->runtime_id);
    sched_reply_t r;
    if (sched_call(s, h->url, "POST", path, NULL, NULL, "{}", 2, 10000, &r) == 0 &&
        r.status == 200) {
        json_t *patch = json_pack("{s:s,s:s}", "state", "Suspended", "statusMessage", why);
        sched_sandbox_update(s->db, sb->id, patch, NULL, NULL);
        json_decref(patch);
    }
    sched_reply_done(&r);
}

/* One stored sandbox on a Ready host against the agent's report.  */
static void reconcile_sandbox(sched_t *s, const st_host_t *h, const st_resource_t *sb,
                              json_t *agent_by_id, int64_t seen_ms, int64_t now)
{
    json_t *props = json_object_get(sb->body, "properties");
    const char *rid = sb->runtime_id;
    if (!rid || sbx_body_provisioning(sb->body) != SBX_PROV_SUCCEEDED)
        return; /* an operation owns it right now */
    /* A row written after the agent's list was taken is newer than the
     * list: comparing the two would undo that write.  */
    if (sb->updated_ms >= seen_ms)
        return;
    _cleanup_json_ json_t *seen = json_incref(json_object_get(agent_by_id, rid));
    sbx_state_t state = sbx_body_state(sb->body);
    if (!seen) {
        if (json_object_get(props, "state") && state != SBX_STATE_FAILED) {
            json_t *patch = json_pack("{s:s,s:s}", "state", "Failed", "statusMessage",
                                      "the host no longer runs this sandbox");
            sched_sandbox_update(s->db, sb->id, patch, NULL, NULL);
            json_decref(patch);
        }
        return;
    }
    sbx_state_t actual = sbx_state_parse(sched_agent_state(seen));
    if (actual == SBX_STATE_CREATING)
        actual = SBX_STATE_STARTING;
    st_resource_t group = {0};
    json_t *defaults = NULL;
    if (sb->parent_id && st_resource_get(s->db, sb->parent_id, &group, NULL) == 0)
        defaults = json_object_get(json_object_get(group.body, "properties"), "sandboxDefaults");
    bool suspends = sched_lifetime_suspends(props, defaults);
    int64_t life_start = sched_lifetime_start_ms(sb);
    json_t *last = sched_agent_time(seen, "lastActivityAt");
    if (actual && (actual != state ||
                   (last && !json_equal(last, json_object_get(props, "lastActivityAt"))))) {
        json_t *patch = json_pack("{s:s}", "state", sbx_state_name(actual));
        if (json_is_string(last))
            json_object_set(patch, "lastActivityAt", last);
        /* Resumed on the host (an exec into a suspended sandbox does):
         * a Suspend lifetime starts again.  */
        bool woke = actual == SBX_STATE_RUNNING &&
                    (state == SBX_STATE_SUSPENDED || state == SBX_STATE_SUSPENDING ||
                     state == SBX_STATE_RESUMING);
        if (woke && suspends) {
            sched_lifetime_restart(patch, now);
            life_start = now;
        }
        sched_sandbox_update(s->db, sb->id, patch, NULL, NULL);
        json_decref(patch);
    }
    sched_egress_sync(s, h, sb, group.id ? &group : NULL, actual);
    int64_t idle = prop_int(props, defaults, "idleTimeoutSeconds");
    int64_t lifetime = prop_int(props, defaults, "maxLifetimeSeconds");
    st_resource_done(&group);
    if (lifetime > 0 && now - life_start > lifetime * 1000) {
        if (!suspends)
            expire(s, sb);
        else if (actual == SBX_STATE_RUNNING)
            suspend_for(s, h, sb, "suspended: maxLifetimeSeconds reached");
        return;
    }
    int64_t last_ms = sched_parse_time_ms(json_string_value(last));
    if (idle > 0 && actual == SBX_STATE_RUNNING && last_ms > 0 && now - last_ms > idle * 1000)
        suspend_for(s, h, sb, "suspended after idleTimeoutSeconds");
}

/* Sandboxes an agent runs that storage does not know (a create whose
 * record was lost, a sandbox deleted while its host was down) are
 * destroyed, unless an operation is creating them right now.  */
static void destroy_unknown(sched_t *s, const st_host_t *h, json_t *unknown)
{
    const char *rid;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(unknown, tmp, rid, v)
    {
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "host %s runs unknown sandbox %s: destroying it",
                h->name, rid);
        _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", rid);
        sched_reply_t r;
        sched_call(s, h->url, "DELETE", path, NULL, NULL, NULL, 0, 30000, &r);
        sched_reply_done(&r);
    }
}

/* 1 when storage knows the runtime id, 0 when it does not, -1 when it
 * could not tell (and the sandbox must be left alone).  */
static int runtime_id_known(sched_t *s, const char *rid)
{
    sbx_error_t err = {0};
    int r = st_resource_runtime_id_exists(s->db, rid, &err);
    if (r < 0)
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "runtime id %s: %s; left alone this pass", rid, err.msg);
    return r;
}

/* Warm-pool members on a host: a Ready one the host lost is forgotten (the
 * pool keeper starts another); the rest are accounted for.  */
static int reconcile_pool_members(sched_t *s, const st_host_t *h, json_t *by_id, int64_t seen_ms)
{
    st_list_query_t q = {.type = POOL_TYPE, .host_id = h->name, .limit = 1000};
    st_list_t l = {0};
    if (st_resource_list(s->db, &q, &l, NULL) < 0)
        return -1;
    for (size_t i = 0; i < l.n; i++) {
        st_resource_t *m = &l.items[i];
        const char *rid = m->runtime_id;
        if (rid && json_object_get(by_id, rid)) {
            json_object_del(by_id, rid);
        } else if (sbx_body_state(m->body) == SBX_STATE_READY && m->updated_ms < seen_ms) {
            st_resource_delete(s->db, m->id, NULL);
        }
    }
    st_list_done(&l);
    return 0;
}

typedef struct host_pass {
    sched_t *s;
    const st_host_t *h;
    json_t *by_id;
    int64_t seen_ms, now;
} host_pass_t;

/* One stored sandbox of the host; what remains in by_id afterwards is
 * what storage does not know.  */
static void reconcile_one(void *ud, const st_resource_t *sb)
{
    host_pass_t *p = ud;
    const char *rid = sb->runtime_id;
    reconcile_sandbox(p->s, p->h, sb, p->by_id, p->seen_ms, p->now);
    if (rid)
        json_object_del(p->by_id, rid);
}

static void reconcile_host(sched_t *s, const st_host_t *h, int64_t now)
{
    int64_t seen_ms = sched_now(s);
    json_t *by_id = fetch_agent_sandboxes(s, h);
    if (!by_id)
        return;
    host_pass_t p = {s, h, by_id, seen_ms, now};
    st_list_query_t q = {.type = SANDBOX_TYPE, .host_id = h->name, .limit = 500};
    bool complete = st_resource_each(s->db, &q, reconcile_one, &p, NULL) == 0;
    if (complete && reconcile_pool_members(s, h, by_id, seen_ms) < 0)
        complete = false;
    if (complete) {
        /* A few a pass: each costs a scan of the table and a call, and a
         * host that reports floods of ids must not stall the loop every
         * other host depends on.  The rest wait for the next passes.  */
        const char *rid;
        json_t *v;
        void *tmp;
        size_t looked = 0;
        json_object_foreach_safe(by_id, tmp, rid, v)
        {
            /* Only what storage says it does not know is destroyed: a
             * lookup that failed is no answer.  */
            if (looked++ >= UNKNOWN_PER_PASS || runtime_id_known(s, rid) != 0)
                json_object_del(by_id, rid);
        }
        destroy_unknown(s, h, by_id);
    }
    json_decref(by_id);
}

#define OPERATION_KEEP_MS (24LL * 3600 * 1000)
#define OPERATION_SWEEP_MS (60LL * 1000)

/* Finished operations are kept a day (clients poll them for minutes at
 * most), then swept, at most once a minute.  */
static void forget_old_operations(sched_t *s, int64_t now)
{
    static int64_t last;
    if (now - last < OPERATION_SWEEP_MS)
        return;
    last = now;
    st_operations_sweep(s->db, now - OPERATION_KEEP_MS, NULL);
}

void sched_reconcile_once(sched_t *s)
{
    sched_hosts_check(s);
    st_host_t *hosts = NULL;
    size_t n = 0;
    if (st_host_list(s->db, &hosts, &n, NULL) < 0)
        return;
    int64_t now = sched_now(s);
    for (size_t i = 0; i < n; i++)
        if (strcmp(hosts[i].state, "Down") != 0)
            reconcile_host(s, &hosts[i], now);
    st_hosts_free(hosts, n);
    sched_place_rebuild(s);
    sched_pool_keep(s);
    forget_old_operations(s, now);
}

void *sched_reconciler_main(void *arg)
{
    sched_t *s = arg;
    for (;;) {
        sched_reconcile_once(s);
        pthread_mutex_lock(&s->lock);
        if (!s->stopping) {
            struct timespec ts = sbx_deadline_in(s->cfg.reconcile_interval_ms);
            pthread_cond_timedwait(&s->rwake, &s->lock, &ts);
        }
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
    }
    return NULL;
}
