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

/* What a sandbox is promised on its host: its limits, which admission
 * counts against the host's capacity times the overcommit ratios.  */
typedef struct sched_need {
    double cpu, memory_mib, disk_mib, pids;
} sched_need_t;

/* The pids limit an agent gives every sandbox (the runtime's default; the
 * agent API takes none), counted by admission.  */
#define SANDBOX_PIDS 1024
#define SANDBOX_DISK_MIB 1024 /* when neither the sandbox nor its group say */

/* What one host has promised to sandboxes, kept in memory and rebuilt from
 * storage at start and by every reconcile pass.  */
typedef struct host_load {
    char name[64];
    sched_need_t used;
    unsigned sandboxes;
} host_load_t;

struct sched {
    sched_config_t cfg;
    st_db_t *db;
    pthread_mutex_t lock;
    pthread_cond_t wake;   /* workers */
    pthread_cond_t rwake;  /* the reconciler */
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
     * worker (host_slot_take / host_slot_give) */
    struct host_slots {
        char name[64];
        unsigned busy;
    } *slots;
    size_t n_slots;
    size_t n_loads;
    /* pooled curl handles keep TLS sessions to agents alive */
    void **curl_pool;
    size_t n_curl, cap_curl;
    /* file downloads still streaming from an agent on threads of their
     * own (agent_call_download), under lock; sched_free waits for them */
    unsigned downloads;
};

/* agent_client.c: one HTTP call to a host agent.  */
typedef struct agent_reply {
    long status;      /* 0 when no answer arrived */
    char *body;
    size_t body_len;
    char *content_type;
    char error[256];  /* transport error, when status is 0 */
    bool shutdown;    /* cut off by sched_shutdown_begin */
} agent_reply_t;
void agent_reply_done(agent_reply_t *r);
int agent_call(sched_t *s, const char *base_url, const char *method, const char *path,
               const char *query, const char *content_type, const char *body, size_t body_len,
               int timeout_ms, agent_reply_t *out);
json_t *agent_reply_json(const agent_reply_t *r);
/* A call whose request body is read while it is sent: read(ud, buf, n)
 * as http_body_read; size is the body's length or UINT64_MAX (chunked).
 * *read_errno gets the errno of a failed read (the call then fails).  */
int agent_call_upload(sched_t *s, const char *base_url, const char *method, const char *path,
                      const char *query, uint64_t size,
                      ssize_t (*read)(void *ud, void *buf, size_t n), void *ud,
                      int *read_errno, agent_reply_t *out);
/* A GET whose reply body streams into `pipe` from a thread of its own.
 * Returns once the agent's status is known: a 2xx reply keeps flowing into
 * the pipe (out->body stays empty, *length is its Content-Length or
 * UINT64_MAX), and the caller hands the pipe to its response; any other is
 * read whole (bounded) into out, and the caller abandons the pipe.  The
 * pipe's producer side belongs to the call.  */
int agent_call_download(sched_t *s, const char *base_url, const char *path, const char *query,
                        http_pipe_t *pipe, uint64_t *length, agent_reply_t *out);

/* What an agent reports, checked (worker.c): a known state or NULL; a
 * timestamp string or NULL (borrowed); a message cut to a sane length (new
 * reference) or NULL.  An agent's bytes are stored and served, so nothing
 * else of them is taken.  */
#define AGENT_MESSAGE_MAX 1024
const char *agent_state(const json_t *reply);
json_t *agent_time(const json_t *reply, const char *key);
json_t *agent_message(const json_t *reply);

/* hosts.c */
int hosts_check_all(sched_t *s);
int host_find(sched_t *s, const char *name, st_host_t *out, sbx_error_t *err);

/* worker.c: at most workers - 1 lifecycle calls in flight per host.  */
bool host_slot_take(sched_t *s, const char *host);
void host_slot_give(sched_t *s, const char *host);

/* placement.c: choose the least loaded host of the environment that
 * offers the driver and has room for need on the sums of what it already
 * holds (caller holds place_lock until placement_add records the choice).
 * A refusal is -1 with err's ARM code one of PLACE_*: the first two may
 * pass later (wait), the last two never will (fail now); any other error
 * is storage's.  */
#define PLACE_NO_HOST "NoHostAvailable"
#define PLACE_NO_ROOM "InsufficientCapacity"
#define PLACE_NO_DRIVER "IsolationNotOffered"
#define PLACE_TOO_LARGE "SandboxTooLarge"
int placement_choose(sched_t *s, const char *environment, const char *driver,
                     const sched_need_t *need, char **host_out, sbx_error_t *err);
void placement_add(sched_t *s, const char *host, const sched_need_t *need, int sign);
void placement_rebuild(sched_t *s);

/* worker.c */
void *worker_main(void *arg);
bool busy_claim(sched_t *s, const char *op_id);
void busy_release(sched_t *s, const char *op_id);

/* reconcile.c */
void *reconciler_main(void *arg);
void sched_reconcile_once(sched_t *s);

/* pool.c */
void pool_keep(sched_t *s);
void pool_start_on_host(sched_t *s, const st_resource_t *member);

/* sandbox spec helpers (worker.c) */
char *group_environment(const st_resource_t *group);
/* Destroy a sandbox (or pool member) on its host: 0 when it is gone or its
 * host cannot be asked, -1 (why filled) when the call should be retried.  */
int sandbox_destroy_on_host(sched_t *s, const st_resource_t *sb, char *why, size_t why_len);
/* The agent's create request, with the group's and the server's defaults
 * filled in; NULL (err filled) when the group could not be read.  */
json_t *sandbox_agent_spec(st_db_t *db, const st_resource_t *sandbox, sbx_error_t *err);
/* The same for a sandbox of `group` (which may be NULL: no group).  */
json_t *sandbox_agent_spec_in(const st_resource_t *group, const st_resource_t *sandbox);
const char *sandbox_runtime_id(const st_resource_t *sandbox);
/* What a placed sandbox holds on its host (recorded at placement), and
 * what an agent spec asks for.  */
void sandbox_need(const st_resource_t *sandbox, sched_need_t *out);
void spec_need(const json_t *spec, sched_need_t *out);
/* Record a placement's need in the row's bookkeeping ('_' keys).  */
void sandbox_need_store(json_t *body, const sched_need_t *need);
/* Update a sandbox's reported properties in one transaction.  */
int sandbox_update_props(st_db_t *db, const char *id, json_t *patch, const char *host_id,
                         sbx_error_t *err);

#endif
