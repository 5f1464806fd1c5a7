/* internal.h -- declarations shared by the scheduler's files only.  */
#ifndef SBX_SCHEDULER_INTERNAL_H
#define SBX_SCHEDULER_INTERNAL_H

#include <pthread.h>

#include "scheduler/scheduler.h"

#define MODULE_NAME "scheduler"
#include "api/api.h"

#define SANDBOX_TYPE API_SANDBOX_TYPE
#define GROUP_TYPE API_GROUP_TYPE
#define POOL_TYPE API_POOL_TYPE

/* The pids limit an agent gives every sandbox (the agent API takes none),
 * counted by admission.  */
#define SANDBOX_PIDS SBX_PIDS_DEFAULT

/* What one host has promised to sandboxes, kept in memory and rebuilt from
 * storage at start and by every reconcile pass.  */
typedef struct host_load {
    char name[64];
    sbx_need_t used;
    unsigned sandboxes;
} host_load_t;

/* The supervised sandbox-agent of the embedded default (scheduler.c).  */
typedef struct local_agent local_agent_t;

struct sched {
    sched_config_t cfg;
    st_db_t *db;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* workers */
    pthread_cond_t rwake; /* the reconciler */
    bool stopping;
    /* Once shutting down: calls to agents still running at this time
     * (monotonic ms) are cut off; 0 while serving.  */
    int64_t calls_end_ms;
    unsigned pending_wakeups;
    pthread_t *workers;
    unsigned n_workers;
    pthread_t reconciler;
    bool started;
    /* operation ids being worked on, so two workers never take one */
    char (*busy)[37];
    size_t n_busy, cap_busy;
    /* held from choosing a host to recording the choice, and while the
     * loads are rebuilt, so a rebuild never sees half a placement */
    pthread_mutex_t place_lock;
    host_load_t *loads;
    /* agent calls in flight per host, so one slow host cannot hold every
     * worker (sched_slot_take / sched_slot_give) */
    struct host_slots {
        char name[64];
        unsigned busy;
    } * slots;
    size_t n_slots;
    size_t n_loads;
    /* pooled curl handles keep TLS sessions to agents alive */
    void **curl_pool;
    size_t n_curl, cap_curl;
    /* file downloads still streaming from an agent on threads of their
     * own (sched_call_download), under lock; sched_free waits for them */
    unsigned downloads;
    local_agent_t *local; /* NULL unless sched_local_agent_start ran */
};

/* What an agent reports, checked (sandbox.c): a known state or NULL; a
 * timestamp string or NULL (borrowed); a message cut to a sane length (new
 * reference) or NULL.  An agent's bytes are stored and served, so nothing
 * else of them is taken.  */
#define AGENT_MESSAGE_MAX 1024
const char *sched_agent_state(const json_t *reply);
json_t *sched_agent_time(const json_t *reply, const char *key);
json_t *sched_agent_message(const json_t *reply);

/* The scheduler's clock (sched_config_t.now_ms), wall-clock ms.  */
static inline int64_t sched_now(const sched_t *s)
{
    return s->cfg.now_ms ? s->cfg.now_ms(s->cfg.clock_ctx) : sbx_now_ms();
}

/* hosts.c */
int sched_hosts_check(sched_t *s);

/* slots.c: at most workers - 1 lifecycle calls in flight per host, and
 * each operation taken by one worker at a time.  */
bool sched_slot_take(sched_t *s, const char *host);
void sched_slot_give(sched_t *s, const char *host);
bool sched_busy_claim(sched_t *s, const char *op_id);
void sched_busy_release(sched_t *s, const char *op_id);

/* placement.c: choose the least loaded host of the environment that
 * offers the driver and has room for need on the sums of what it already
 * holds (caller holds place_lock until sched_place_add records the choice).
 * A refusal is -1 with *why one of SBX_FAIL_NO_HOST and _NO_ROOM (may pass
 * later: wait) or _NO_DRIVER and _TOO_LARGE (never will: fail now), and
 * err saying it in words; *why is left alone on a storage error.  */
int sched_place_choose(sched_t *s, const char *environment, const char *driver,
                       const sbx_need_t *need, char **host_out, sbx_failure_t *why,
                       sbx_error_t *err);
void sched_place_add(sched_t *s, const char *host, const sbx_need_t *need, int sign);
void sched_place_rebuild(sched_t *s);

/* worker.c: one batch of due operations, as a worker thread runs it;
 * returns how many ran.  */
size_t sched_work_once(sched_t *s);
void *sched_worker_main(void *arg);

/* reconcile.c */
void *sched_reconciler_main(void *arg);
void sched_reconcile_once(sched_t *s);

/* pool.c */
void sched_pool_keep(sched_t *s);
void sched_pool_start_member(sched_t *s, const st_resource_t *member);

/* sandbox.c: what the scheduler reads and writes of a sandbox.  The
 * sandbox's group: 1 read into *group, 0 when it has none or it is gone,
 * -1 when storage could not read it.  */
int sched_read_group(st_db_t *db, const st_resource_t *sandbox, st_resource_t *group,
                     sbx_error_t *err);
char *sched_group_environment(const st_resource_t *group);
/* Destroy a sandbox (or pool member) on its host: 0 when it is gone or its
 * host cannot be asked, -1 (err filled) when the call should be retried.  */
int sched_sandbox_destroy(sched_t *s, const st_resource_t *sb, sbx_error_t *err);
/* The agent spec of a sandbox of `group` (which may be NULL: no group):
 * its own properties, else the group's sandboxDefaults, else the model's
 * defaults.  */
void sched_spec_of(const st_resource_t *group, const st_resource_t *sandbox, sbx_spec_t *out);
/* The same, reading the sandbox's group; -1 (err filled) when the group
 * could not be read.  */
int sched_sandbox_spec(st_db_t *db, const st_resource_t *sandbox, sbx_spec_t *out,
                       sbx_error_t *err);
/* The agent's request body for a spec.  */
json_t *sched_spec_json(const sbx_spec_t *spec);
/* egress_sync.c: the sandbox's effective egress policy ({defaultAction,
 * rules}, or JSON null for none; NULL when storage failed), and keeping
 * running sandboxes' hosts in step with it.  */
json_t *sandbox_egress_policy(st_db_t *db, const st_resource_t *group, const st_resource_t *sandbox,
                              sbx_error_t *err);
/* The same, reading the sandbox's group.  */
int sched_egress_for(st_db_t *db, const st_resource_t *sandbox, json_t **out, sbx_error_t *err);
void sched_egress_sync(sched_t *s, const st_host_t *h, const st_resource_t *sb,
                       const st_resource_t *group, sbx_state_t actual);
void sched_egress_applied(const char *rid, const json_t *policy);
/* lifetime.c: an ISO 8601 UTC time in ms (0 for none or garbage); whether
 * the sandbox's lifetimeEndAction (its own, else its group's default) is
 * Suspend; when its lifetime clock started (createdAt, or its
 * lifetimeStartedAt when later); the patch that restarts the clock; and
 * whether a resume restarts it (reads the group).  */
int64_t sched_parse_time_ms(const char *s);
bool sched_lifetime_suspends(const json_t *props, const json_t *defaults);
int64_t sched_lifetime_start_ms(const st_resource_t *sb);
void sched_lifetime_restart(json_t *patch, int64_t now_ms);
bool sched_lifetime_restarts_on_resume(st_db_t *db, const st_resource_t *sb);
/* Update a sandbox's reported properties in one transaction.  */
int sched_sandbox_update(st_db_t *db, const char *id, json_t *patch, const char *host_id,
                         sbx_error_t *err);

#endif
