/* scheduler.h -- makes the desired state in storage real on hosts: the
 * host registry and its health checks, placement, worker threads that take
 * pending operations and drive host agents over HTTPS (mTLS, libcurl), a
 * level-triggered reconcile loop, idle suspend and lifetime limits, and the
 * calls to agents that the server's sandbox proxy makes (server/proxy.c).
 *
 * Policies (docs/scheduler.md has the long form):
 * - placement: Ready hosts of the group's environment that report the
 *   sandbox's driver, with room on the sums of cpu, memory, disk and pids
 *   limits of their sandboxes (capacity times the overcommit ratios) and a
 *   free slot; among them the least loaded (spread).  A create with no
 *   such host waits (Pending, statusMessage saying why) up to
 *   placement_wait_ms, or fails at once when no host could ever take it.
 * - a host that has not answered its health check for host_down_ms is Down;
 *   its sandboxes become Failed with a statusMessage saying so.
 * - every lifecycle call to an agent is retried with backoff; an operation
 *   that still fails after max_attempts ends Failed (SBX_FAIL_HOST_CALL).  */
#ifndef SBX_SCHEDULER_H
#define SBX_SCHEDULER_H

#include "common/common.h"
#include "http/http.h"
#include "storage/storage.h"

typedef struct sched sched_t;
typedef struct sched_reply sched_reply_t;

/* A call whose reply streams into a pipe (sched_call_stream): a file
 * download, a process's event stream (events: the agent's keep-alives hold
 * it open however long the process is silent), a POST with a JSON body.  */
typedef struct sched_stream_call {
    const char *method, *path, *query;
    const char *accept; /* Accept header, or NULL */
    const char *body;   /* JSON body, or NULL */
    size_t body_len;
    bool events;
} sched_stream_call_t;

/* How the scheduler reaches host agents: HTTPS by default (agent_client.c);
 * tests put a fake agent in the same process behind the same calls.  Each
 * fills *out (zeroed by the caller) and returns -1 when no answer came.  */
typedef struct sched_agent_ops {
    int (*call)(void *ctx, const char *base_url, const char *method, const char *path,
                const char *query, const char *content_type, const char *body, size_t body_len,
                int timeout_ms, sched_reply_t *out);
    int (*call_upload)(void *ctx, const char *base_url, const char *method, const char *path,
                       const char *query, uint64_t size,
                       ssize_t (*read)(void *ud, void *buf, size_t n), void *ud, int *read_errno,
                       sched_reply_t *out);
    int (*call_stream)(void *ctx, const char *base_url, const sched_stream_call_t *call,
                       http_pipe_t *pipe, uint64_t *length, sched_reply_t *out);
} sched_agent_ops_t;

typedef struct sched_config {
    const char *ca_file;   /* CA that signs agents' certificates */
    const char *cert_file; /* our client certificate */
    const char *key_file;
    unsigned workers;          /* operation worker threads; 0: 4 */
    int health_interval_ms;    /* 0: 1000 */
    int host_down_ms;          /* 0: 5000 */
    int reconcile_interval_ms; /* 0: 1000 */
    int max_attempts;          /* 0: 5 */
    int agent_timeout_ms;      /* lifecycle calls; 0: 60000 */
    /* Admission: the sums of the limits of a host's sandboxes stay within
     * its reported capacity times these ratios (0: the defaults below).  */
    double overcommit_cpu;    /* 0: 4.0 (cpu is shared, not lost) */
    double overcommit_memory; /* 0: 1.0 */
    double overcommit_disk;   /* 0: 4.0 (tmpfs pages are charged to memory) */
    double overcommit_pids;   /* 0: 1.0 */
    /* How long a create waits for a host with room before it fails; 0:
     * 600000 (10 minutes).  */
    int placement_wait_ms;
    const unsigned char *secret_key; /* opens sealed secureEnv (api.h); may be NULL */
    /* Tests: another transport to agents (NULL: HTTPS) and another clock
     * for every deadline, backoff and timestamp the scheduler decides on
     * (NULL: sbx_now_ms).  */
    const sched_agent_ops_t *agent_ops;
    void *agent_ctx;
    int64_t (*now_ms)(void *ctx);
    void *clock_ctx;
} sched_config_t;

sched_t *sched_new(const sched_config_t *cfg, st_db_t *db, sbx_error_t *err);
int sched_start(sched_t *s, sbx_error_t *err);
/* Stops the threads; operations in flight stay InProgress in storage and
 * are taken up again by the next start.  */
void sched_free(sched_t *s);
/* Shutdown begins: calls to agents still running grace_ms from now (a
 * long exec, a slow file) are cut off, their clients answered 503, so a
 * stop never waits on a sandbox.  What the sandbox runs goes on.  */
void sched_shutdown_begin(sched_t *s, int grace_ms);
/* New operations were committed: wake a worker.  */
void sched_notify(sched_t *s);

/* Register (or update) a host; its health is checked at once.  A bad
 * argument is SBX_ERR_INVALID with the target "name", "url" or
 * "environment".  */
int sched_host_register(sched_t *s, const char *name, const char *url, const char *environment,
                        sbx_error_t *err);

/* The host registry, for the admin API.  Host names are 1-63 letters,
 * digits, '-', '_' or '.'.  */
bool sched_host_name_valid(const char *name);
/* How many sandboxes the scheduler counts on a host (placement's view).  */
unsigned sched_host_sandboxes(sched_t *s, const char *name);
/* Drain a host (no new placements) or make it Ready again; undraining a
 * host that is Down leaves it to the health check.  1 when done, 0 when
 * there is no such host.  */
int sched_host_drain(sched_t *s, const char *name, bool drain, sbx_error_t *err);
/* Remove a host; its sandboxes fail (or are recreated elsewhere, as their
 * group asks).  1 when it was removed, 0 when there was none.  */
int sched_host_remove(sched_t *s, const char *name, sbx_error_t *err);

/* ---- Calls to a host's agent, for the server's sandbox proxy ---- */

/* One call's answer (agent_client.c).  */
struct sched_reply {
    long status; /* 0 when no answer arrived */
    char *body;
    size_t body_len;
    char *content_type;
    char error[256]; /* transport error, when status is 0 */
    bool shutdown;   /* cut off by sched_shutdown_begin */
};
void sched_reply_done(sched_reply_t *r);
int sched_call(sched_t *s, const char *base_url, const char *method, const char *path,
               const char *query, const char *content_type, const char *body, size_t body_len,
               int timeout_ms, sched_reply_t *out);
json_t *sched_reply_json(const sched_reply_t *r);
/* A call whose request body is read while it is sent: read(ud, buf, n)
 * as http_body_read; size is the body's length or UINT64_MAX (chunked).
 * *read_errno gets the errno of a failed read (the call then fails).  */
int sched_call_upload(sched_t *s, const char *base_url, const char *method, const char *path,
                      const char *query, uint64_t size,
                      ssize_t (*read)(void *ud, void *buf, size_t n), void *ud, int *read_errno,
                      sched_reply_t *out);
/* A GET whose reply body streams into `pipe` from a thread of its own.
 * Returns once the agent's status is known: a 2xx reply keeps flowing into
 * the pipe (out->body stays empty, *length is its Content-Length or
 * UINT64_MAX), and the caller hands the pipe to its response; any other is
 * read whole (bounded) into out, and the caller abandons the pipe.  The
 * pipe's producer side belongs to the call.  */
int sched_call_download(sched_t *s, const char *base_url, const char *path, const char *query,
                        http_pipe_t *pipe, uint64_t *length, sched_reply_t *out);
/* sched_call_download for any call whose reply is streamed.  */
int sched_call_stream(sched_t *s, const char *base_url, const sched_stream_call_t *call,
                      http_pipe_t *pipe, uint64_t *length, sched_reply_t *out);

/* A sandbox's lifecycle action ("suspend", "resume", "stop", "start") on
 * host_url: the agent's answer in *out; a 200 is also recorded as the
 * sandbox's new state.  -1 (err filled) only when recording failed.  */
int sched_sandbox_lifecycle(sched_t *s, const char *host_url, const st_resource_t *sandbox,
                            const char *action, sched_reply_t *out, sbx_error_t *err);

/* The embedded default: a CA and certificates in pki_dir (pki.c), and a
 * sandbox-agent child process on a loopback port, supervised (restarted
 * when it dies) and registered as host "local" in environment "default".  */
int sched_pki_ensure(const char *pki_dir, sbx_error_t *err);

typedef struct sched_local_agent_config {
    const char *agent_bin; /* NULL: sandbox-agent beside this executable */
    const char *data_dir;  /* the agent's data directory */
    const char *pki_dir;
    const char *default_image; /* may be NULL */
    bool microvm_emulation;
    bool allow_private_registries;
    const char *egress_pool; /* --egress-pool for the agent; NULL or "off": none */
    /* The identity endpoint: sandboxd's URL for the agent (NULL: none), the
     * CA of an https one, and how to mint the agent's host token (written
     * to its data dir before it starts and renewed at half its life).  */
    const char *identity_url, *identity_ca;
    char *(*host_token)(void *ctx, const char *host, int64_t *expires);
    void *host_token_ctx;
} sched_local_agent_config_t;

/* Start the agent and wait until it answers (or fail after 15 s).  */
int sched_local_agent_start(sched_t *s, const sched_local_agent_config_t *cfg, sbx_error_t *err);

#endif
