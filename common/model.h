/* model.h -- the sandbox as the API, the scheduler and the agent all see
 * it: its states and provisioning states with their string forms, the one
 * table of defaults and bounds of its limits, the spec a host is asked to
 * run, and what placement counts of it on a host.  */
#ifndef SBX_MODEL_H
#define SBX_MODEL_H

#include "common/common.h"

/* A sandbox's properties.state.  The agent reports Creating..Failed;
 * Pending is the API's (not placed yet), Ready a warm-pool member's.  */
typedef enum sbx_state {
    SBX_STATE_UNKNOWN = 0, /* absent, or a string that is none of these */
    SBX_STATE_PENDING,
    SBX_STATE_CREATING,
    SBX_STATE_STARTING,
    SBX_STATE_RUNNING,
    SBX_STATE_SUSPENDING,
    SBX_STATE_SUSPENDED,
    SBX_STATE_RESUMING,
    SBX_STATE_STOPPING,
    SBX_STATE_STOPPED,
    SBX_STATE_FAILED,
    SBX_STATE_READY,
    SBX_STATE_COUNT
} sbx_state_t;
/* The string form ("" for UNKNOWN), and back (UNKNOWN for NULL or any
 * other string).  */
const char *sbx_state_name(sbx_state_t state);
sbx_state_t sbx_state_parse(const char *name);
/* Whether an agent may report this state (Creating..Failed).  */
bool sbx_state_from_agent(sbx_state_t state);

/* A resource's properties.provisioningState (ARM).  */
typedef enum sbx_provisioning {
    SBX_PROV_UNKNOWN = 0,
    SBX_PROV_SUCCEEDED,
    SBX_PROV_FAILED,
    SBX_PROV_CANCELED,
    SBX_PROV_IN_PROGRESS,
    SBX_PROV_UPDATING,
    SBX_PROV_DELETING,
    SBX_PROV_COUNT
} sbx_provisioning_t;
const char *sbx_provisioning_name(sbx_provisioning_t ps);
sbx_provisioning_t sbx_provisioning_parse(const char *name);

/* The state and provisioning state in a resource body's properties.  */
sbx_state_t sbx_body_state(const json_t *body);
sbx_provisioning_t sbx_body_provisioning(const json_t *body);

/* The limits of a sandbox: one table of defaults and bounds that the API
 * validates against, the scheduler fills in and counts, and the agent
 * checks again (it trusts no caller).  Memory defaults to 512 MiB, what the
 * runtime always gave a sandbox that asked for nothing.  diskMiB's max is
 * the most any server may allow (--max-disk-mib); the API's own cap is
 * lower by default (API_MAX_DISK_MIB).  The pids limit is fixed: no caller
 * sets it, admission counts it.  */
typedef enum sbx_limit_id {
    SBX_LIMIT_CPU,
    SBX_LIMIT_MEMORY_MIB,
    SBX_LIMIT_DISK_MIB,
    SBX_LIMIT_PIDS,
    SBX_LIMIT_IDLE_TIMEOUT_S,
    SBX_LIMIT_MAX_LIFETIME_S,
    SBX_LIMIT_COUNT
} sbx_limit_id_t;

typedef struct sbx_limit {
    const char *key; /* the JSON property: "cpu", "memoryMiB"... */
    double min, max, dflt;
    bool integer;
} sbx_limit_t;

extern const sbx_limit_t sbx_limits[SBX_LIMIT_COUNT];

#define SBX_CPU_DEFAULT 1.0
#define SBX_MEMORY_MIB_DEFAULT 512
#define SBX_DISK_MIB_DEFAULT 1024
#define SBX_PIDS_DEFAULT 1024
#define SBX_IMAGE_REF_MAX 512

/* Whether v is a valid value of that limit (a number in range; an integer
 * where the limit is one).  */
bool sbx_limit_valid(sbx_limit_id_t id, const json_t *v);

/* The isolation drivers a spec may name; "process" is the default.  */
extern const char *const sbx_drivers[3];
/* The matching entry of sbx_drivers, or NULL.  */
const char *sbx_driver_parse(const char *name);

/* Why the scheduler failed (or put off) an operation.  The API names each
 * for clients (api_failure_code: "NoHostAvailable", ...); the scheduler
 * speaks no ARM.  */
typedef enum sbx_failure {
    SBX_FAIL_NONE = 0,
    SBX_FAIL_NO_HOST,   /* no Ready host in the environment could take it (for now) */
    SBX_FAIL_NO_ROOM,   /* the hosts that could are full (for now) */
    SBX_FAIL_NO_DRIVER, /* no host offers its isolation (for good) */
    SBX_FAIL_TOO_LARGE, /* no host could ever hold it (for good) */
    SBX_FAIL_HOST_CALL, /* its host did not answer, attempts ran out */
    SBX_FAIL_CREATE,    /* its host refused to create it */
    SBX_FAIL_GONE,      /* it was deleted meanwhile */
    SBX_FAIL_COUNT
} sbx_failure_t;

/* What a sandbox holds on its host, as admission counts it against the
 * host's capacity times the overcommit ratios.  */
typedef struct sbx_need {
    double cpu, memory_mib, disk_mib, pids;
} sbx_need_t;

/* The spec a host's agent is asked to run (PUT /v1/sandboxes/{id}).  */
typedef struct sbx_spec {
    char *image;        /* reference; NULL: the default image */
    const char *driver; /* an entry of sbx_drivers */
    double cpu;
    int64_t memory_mib, disk_mib;
    json_t *env; /* object: name -> value (owned) */
} sbx_spec_t;
/* A spec of defaults: no image (the default), process, the table's limits,
 * no env.  */
void sbx_spec_init(sbx_spec_t *spec);
void sbx_spec_done(sbx_spec_t *spec);
/* The agent's request body (new reference).  */
json_t *sbx_spec_json(const sbx_spec_t *spec, const char *default_image);
/* The need of a spec.  */
sbx_need_t sbx_spec_need(const sbx_spec_t *spec);

#endif
