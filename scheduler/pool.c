/* pool.c -- warm pools: for a group whose scale.readySandboxes is N, keep N
 * sandboxes started from the group's defaults, as hidden rows of type
 * API_POOL_TYPE.  A create that asks for nothing but the defaults takes
 * one in its own transaction (api/sandboxes.c), so it is Running the moment
 * it is accepted.  Members whose spec no longer matches the group's
 * defaults are destroyed and replaced.  Runs in the reconcile thread.  */
#include "scheduler/internal.h"

#include <string.h>

#include "api/api.h"

#define MAX_STARTS_PER_PASS 4
#define STUCK_MS 30000

static json_t *props_of(const st_resource_t *r)
{
    return json_object_get(r->body, "properties");
}

static void destroy_member(sched_t *s, const st_resource_t *m)
{
    if (sched_sandbox_destroy(s, m, NULL) == 0)
        st_resource_delete(s->db, m->id, NULL);
}

/* The agent spec a sandbox with no properties of its own gets in group g
 * (from g as read, so no second read can fail and make every member look
 * stale).  */
static void default_spec(const st_resource_t *g, sbx_spec_t *spec)
{
    st_resource_t fake = {.parent_id = g->id, .body = json_pack("{s:{}}", "properties")};
    sched_spec_of(g, &fake, spec);
    json_decref(fake.body);
}

/* Place, record, then start one member; the row is written first so a
 * crash leaves a row the next pass finishes or removes.  */
static void start_member(sched_t *s, const st_resource_t *g, const sbx_spec_t *spec,
                         json_t *spec_json)
{
    char rid[37];
    sbx_uuid(rid);
    sbx_need_t need = sbx_spec_need(spec);
    _cleanup_free_ char *env = sched_group_environment(g);
    char *host = NULL;
    sbx_error_t err = {0};
    st_resource_t m = {0};
    pthread_mutex_lock(&s->place_lock);
    sbx_failure_t why = SBX_FAIL_NONE;
    int ret = sched_place_choose(s, env, spec->driver, &need, &host, &why, &err);
    if (ret == 0) {
        m.id = xasprintf("%s/poolSandboxes/%s", g->id, rid);
        m.type = xstrdup(API_POOL_TYPE);
        m.name = xstrdup(rid);
        m.subscription = xstrdup(g->subscription);
        m.resource_group = xstrdup(g->resource_group);
        m.parent_id = xstrdup(g->id);
        m.host_id = xstrdup(host);
        m.runtime_id = xstrdup(rid);
        m.need = need;
        m.body = json_pack("{s:s,s:O,s:{s:s,s:s}}", "type", "pool", "_spec", spec_json,
                           "properties", "state", "Starting", "host", host);
        st_tx_t *tx = st_begin(s->db, &err);
        ret = tx ? st_tx_resource_put(tx, &m, &err) : -1;
        if (ret == 0)
            ret = st_commit(TAKE_PTR(tx), &err);
        st_rollback(tx);
        if (ret == 0)
            sched_place_add(s, host, &need, +1);
    }
    pthread_mutex_unlock(&s->place_lock);
    if (ret == 0)
        sched_pool_start_member(s, &m);
    else /* a full environment is the usual reason: said once a pass at most */
        sbx_log(SBX_LOG_INFO, MODULE_NAME, "warm pool of %s: %s", g->name, err.msg);
    free(host);
    st_resource_done(&m);
}

/* PUT the member on its host (idempotent) and mark it Ready, or drop it.  */
void sched_pool_start_member(sched_t *s, const st_resource_t *m)
{
    st_host_t h = {0};
    int found = m->host_id ? st_host_lookup(s->db, m->host_id, &h, NULL) : 0;
    if (found <= 0) {
        /* Storage that could not answer is no reason to drop the member:
         * the next pass finds it Starting and tries again.  */
        if (found == 0)
            st_resource_delete(s->db, m->id, NULL);
        return;
    }
    json_t *spec = json_object_get(m->body, "_spec");
    if (!m->runtime_id || !json_is_object(spec)) { /* not a row this code wrote */
        st_resource_delete(s->db, m->id, NULL);
        return;
    }
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", m->runtime_id);
    _cleanup_free_ char *body = json_dumps(spec, JSON_COMPACT);
    sched_reply_t r;
    bool ok = sched_call(s, h.url, "PUT", path, NULL, NULL, body, strlen(body),
                         s->cfg.agent_timeout_ms, &r) == 0 &&
              (r.status == 200 || r.status == 201);
    sched_reply_done(&r);
    st_host_done(&h);
    if (!ok) {
        destroy_member(s, m);
        return;
    }
    st_tx_t *tx = st_begin(s->db, NULL);
    st_resource_t cur = {0};
    if (tx && st_tx_resource_get(tx, m->id, &cur, NULL) == 0) {
        json_object_set_new(props_of(&cur), "state", json_string("Ready"));
        if (st_tx_resource_put(tx, &cur, NULL) == 0)
            st_commit(TAKE_PTR(tx), NULL);
    }
    st_rollback(tx);
    st_resource_done(&cur);
}

static void keep_group(sched_t *s, const st_resource_t *g, int64_t now)
{
    json_t *gp = props_of(g);
    json_t *want_j = json_object_get(json_object_get(gp, "scale"), "readySandboxes");
    size_t want = json_is_integer(want_j) ? (size_t)json_integer_value(want_j) : 0;
    if (sbx_body_provisioning(g->body) == SBX_PROV_DELETING)
        want = 0;
    sbx_spec_t spec;
    default_spec(g, &spec);
    _cleanup_json_ json_t *spec_json = sched_spec_json(&spec);
    st_list_query_t q = {.type = API_POOL_TYPE, .parent_id = g->id, .limit = 1000};
    st_list_t l = {0};
    if (st_resource_list(s->db, &q, &l, NULL) < 0) {
        sbx_spec_done(&spec);
        return;
    }
    size_t have = 0;
    for (size_t i = 0; i < l.n; i++) {
        st_resource_t *m = &l.items[i];
        bool starting = sbx_body_state(m->body) == SBX_STATE_STARTING;
        bool stale = !json_equal(json_object_get(m->body, "_spec"), spec_json);
        if (stale || have >= want) {
            destroy_member(s, m);
        } else if (starting && now - m->updated_ms > STUCK_MS) {
            sched_pool_start_member(s, m); /* a start a crash interrupted */
            have++;
        } else {
            have++;
        }
    }
    st_list_done(&l);
    for (size_t started = 0; have < want && started < MAX_STARTS_PER_PASS; started++, have++)
        start_member(s, g, &spec, spec_json);
    sbx_spec_done(&spec);
}

typedef struct keep_pass {
    sched_t *s;
    int64_t now;
} keep_pass_t;

static void keep_one(void *ud, const st_resource_t *g)
{
    keep_pass_t *p = ud;
    keep_group(p->s, g, p->now);
}

void sched_pool_keep(sched_t *s)
{
    keep_pass_t p = {s, sched_now(s)};
    st_list_query_t q = {.type = API_GROUP_TYPE, .limit = 500};
    st_resource_each(s->db, &q, keep_one, &p, NULL);
}
