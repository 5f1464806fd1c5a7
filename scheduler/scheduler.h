/* scheduler.h -- makes the desired state in storage real on hosts: the
 * host registry and its health checks, placement, worker threads that take
 * pending operations and drive host agents over HTTPS (mTLS, libcurl), a
 * level-triggered reconcile loop, idle suspend and lifetime limits, and the
 * proxy for sandbox actions (exec, files, suspend...).
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
 *   that still fails after max_attempts ends Failed with an ARM error.  */
#ifndef SBX_SCHEDULER_H
#define SBX_SCHEDULER_H

#include "common/common.h"
#include "http/http.h"
#include "storage/storage.h"

typedef struct sched sched_t;

typedef struct sched_config {
    const char *ca_file;        /* CA that signs agents' certificates */
    const char *cert_file;      /* our client certificate */
    const char *key_file;
    unsigned workers;           /* operation worker threads; 0: 4 */
    int health_interval_ms;     /* 0: 1000 */
    int host_down_ms;           /* 0: 5000 */
    int reconcile_interval_ms;  /* 0: 1000 */
    int max_attempts;           /* 0: 5 */
    int agent_timeout_ms;       /* lifecycle calls; 0: 60000 */
    /* Admission: the sums of the limits of a host's sandboxes stay within
     * its reported capacity times these ratios (0: the defaults below).  */
    double overcommit_cpu;      /* 0: 4.0 (cpu is shared, not lost) */
    double overcommit_memory;   /* 0: 1.0 */
    double overcommit_disk;     /* 0: 4.0 (tmpfs pages are charged to memory) */
    double overcommit_pids;     /* 0: 1.0 */
    /* How long a create waits for a host with room before it fails; 0:
     * 600000 (10 minutes).  */
    int placement_wait_ms;
    const unsigned char *secret_key; /* opens sealed secureEnv (api.h); may be NULL */
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

/* Register (or update) a host; its health is checked at once.  */
int sched_host_register(sched_t *s, const char *name, const char *url, const char *environment,
                        sbx_error_t *err);

/* The admin API under /admin/hosts (authenticated by the caller).  */
void sched_admin_handle(sched_t *s, const http_request_t *req, http_response_t *res);

/* A sandbox action through its host: "exec", "files", "suspend", "resume",
 * "stop", "start".  Fills res with the ARM reply.  */
void sched_sandbox_call(sched_t *s, const st_resource_t *sandbox, const char *action,
                        const http_request_t *req, http_response_t *res);

/* The embedded default: a CA and certificates in pki_dir (pki.c), and a
 * sandbox-agent child process on a loopback port, supervised (restarted
 * when it dies) and registered as host "local" in environment "default".  */
int sched_pki_ensure(const char *pki_dir, sbx_error_t *err);

typedef struct sched_local_agent_config {
    const char *agent_bin;     /* NULL: sandbox-agent beside this executable */
    const char *data_dir;      /* the agent's data directory */
    const char *pki_dir;
    const char *default_image; /* may be NULL */
    bool microvm_emulation;
    bool allow_private_registries;
} sched_local_agent_config_t;

/* Start the agent and wait until it answers (or fail after 15 s).  */
int sched_local_agent_start(sched_t *s, const sched_local_agent_config_t *cfg, sbx_error_t *err);

#endif
