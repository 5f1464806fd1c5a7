/* storage.h -- the only code that speaks SQL.  SQLite in WAL mode, numbered
 * migrations applied at open, a pool of connections with prepared
 * statements, and transactions that group the writes of one request.
 *
 * Resources of every kind live in one table keyed by their lower-cased ARM
 * id; their JSON body (location, tags, identity, properties, systemData) is
 * stored as it will be served.  Every write gives the row a new etag.
 * Operations (asynchronous work, see DESIGN.md) live beside them.  */
#ifndef SBX_STORAGE_H
#define SBX_STORAGE_H

#include "common/common.h"
#include "common/model.h"

typedef struct st_db st_db_t;
typedef struct st_tx st_tx_t;

typedef struct st_options {
    bool synchronous_full; /* fsync every commit (power-loss durable); default NORMAL */
    unsigned pool_size;    /* connections; 0: 32 */
} st_options_t;

st_db_t *st_open(const char *path, const st_options_t *opts, sbx_error_t *err);
void st_close(st_db_t *db);
/* Version of the newest migration applied.  */
int st_schema_version(st_db_t *db);
/* "ok" or the first problem PRAGMA integrity_check reports (owned).  */
char *st_integrity_check(st_db_t *db);

typedef struct st_resource {
    char *id;             /* canonical ARM id as created (casing kept) */
    char *type;           /* lower case: "microsoft.app/sandboxgroups", ".../vnetconnections" */
    char *name;           /* as created */
    char *subscription;   /* lower case */
    char *resource_group; /* lower case */
    char *parent_id;      /* lower-cased ARM id of the parent, NULL for top level */
    char *host_id;        /* host placing this resource (sandboxes), NULL otherwise */
    /* A placed sandbox (or warm-pool member): its id on host_id, NULL
     * before placement, and what placement counted of it there.  */
    char *runtime_id;
    sbx_need_t need;
    json_t *body; /* owned reference */
    char etag[40];
    int64_t created_ms, updated_ms;
} st_resource_t;
void st_resource_done(st_resource_t *r);

typedef struct st_list_query {
    const char *type;           /* required, lower case */
    const char *subscription;   /* optional filter */
    const char *resource_group; /* optional filter */
    const char *parent_id;      /* optional filter (lower-cased) */
    const char *host_id;        /* optional filter */
    const char *after;          /* continuation: list rows whose key sorts after this */
    size_t limit;               /* page size; 0: 100 */
} st_list_query_t;

typedef struct st_list {
    st_resource_t *items;
    size_t n;
    char *next; /* continuation key when more rows exist, else NULL */
} st_list_t;
void st_list_done(st_list_t *l);

/* Lookups by key answer 1 (found: out filled), 0 (absent) or -1 (storage
 * could not tell; err filled): a caller that acts on "absent" must not act
 * on -1.  The _get forms are for callers to whom absent is an error too:
 * 0, or -1 with SBX_ERR_NOT_FOUND when absent.  Storage gives no ARM codes;
 * what a missing row means to a client is the API's to say.
 * Reads outside a transaction see the latest committed state.  */
int st_resource_lookup(st_db_t *db, const char *id, st_resource_t *out, sbx_error_t *err);
int st_resource_get(st_db_t *db, const char *id, st_resource_t *out, sbx_error_t *err);
int st_resource_list(st_db_t *db, const st_list_query_t *q, st_list_t *out, sbx_error_t *err);
/* Every row a query matches, a page at a time (q->limit rows; 0: 100),
 * from q->after on.  Each page is read before fn sees its rows, so fn may
 * write.  Returns -1 when a page could not be read.  */
typedef void (*st_resource_fn)(void *ud, const st_resource_t *r);
int st_resource_each(st_db_t *db, const st_list_query_t *q, st_resource_fn fn, void *ud,
                     sbx_error_t *err);
/* Delete one resource in a transaction of its own.  */
int st_resource_delete(st_db_t *db, const char *id, sbx_error_t *err);
int st_resource_count(st_db_t *db, const char *type, const char *parent_id, size_t *out,
                      sbx_error_t *err);

/* A write transaction (BEGIN IMMEDIATE: writers queue, readers go on).  */
st_tx_t *st_begin(st_db_t *db, sbx_error_t *err);
int st_commit(st_tx_t *tx, sbx_error_t *err); /* frees tx, success or not */
void st_rollback(st_tx_t *tx);                /* frees tx; NULL is fine */

int st_tx_resource_lookup(st_tx_t *tx, const char *id, st_resource_t *out, sbx_error_t *err);
int st_tx_resource_get(st_tx_t *tx, const char *id, st_resource_t *out, sbx_error_t *err);
/* Insert or replace; writes a fresh etag into r->etag and sets times.  */
int st_tx_resource_put(st_tx_t *tx, st_resource_t *r, sbx_error_t *err);
int st_tx_resource_delete(st_tx_t *tx, const char *id, sbx_error_t *err);
/* Delete every descendant of parent_id (children, grandchildren...).  */
int st_tx_resource_delete_children(st_tx_t *tx, const char *parent_id, sbx_error_t *err);
int st_tx_resource_count(st_tx_t *tx, const char *type, const char *parent_id, size_t *out,
                         sbx_error_t *err);

/* Asynchronous operations.  */
typedef struct st_operation {
    char id[37];
    char *resource_id;  /* ARM id of the resource it acts on */
    char *kind;         /* "create", "update", "delete", "start", ... */
    char *status;       /* InProgress | Succeeded | Failed | Canceled */
    char *location;     /* normalized location of the resource, for its URL */
    char *subscription; /* lower case */
    json_t *error;      /* {"code","message"} when Failed, else NULL */
    json_t *payload;    /* work description for the scheduler; may be NULL */
    int64_t start_ms, end_ms;
    int attempts;
    int64_t next_attempt_ms;
} st_operation_t;
void st_operation_done(st_operation_t *op);

int st_tx_operation_put(st_tx_t *tx, const st_operation_t *op, sbx_error_t *err);
int st_tx_operation_get(st_tx_t *tx, const char *id, st_operation_t *out, sbx_error_t *err);
int st_operation_lookup(st_db_t *db, const char *id, st_operation_t *out, sbx_error_t *err);
int st_operation_get(st_db_t *db, const char *id, st_operation_t *out, sbx_error_t *err);
/* Up to max InProgress operations whose next attempt is due, oldest first.  */
int st_operations_due(st_db_t *db, int64_t now_ms, size_t max, st_operation_t **out, size_t *n,
                      sbx_error_t *err);
void st_operations_free(st_operation_t *ops, size_t n);

/* Hosts that run sandboxes (the scheduler's registry).  */
typedef struct st_host {
    char *name;        /* as registered, compared case-insensitively */
    char *url;         /* https://host:port of its sandbox-agent */
    char *environment; /* pool label, lower case */
    char *state;       /* Ready | Down | Draining */
    json_t *info;      /* last health report */
    int64_t last_seen_ms, created_ms;
} st_host_t;
void st_host_done(st_host_t *h);
void st_hosts_free(st_host_t *hosts, size_t n);
int st_host_put(st_db_t *db, const st_host_t *h, sbx_error_t *err);
int st_host_lookup(st_db_t *db, const char *name, st_host_t *out, sbx_error_t *err);
int st_host_get(st_db_t *db, const char *name, st_host_t *out, sbx_error_t *err);
int st_host_list(st_db_t *db, st_host_t **out, size_t *n, sbx_error_t *err);
int st_host_delete(st_db_t *db, const char *name, sbx_error_t *err);
/* A health check's result, in one statement: info and last_seen_ms (when
 * info is not NULL), and the state moved from `was` to `next` only if the
 * row still says `was`, so a drain or a removal made meanwhile stands.
 * Never creates the row.  *state_out (may be NULL) gets the state after
 * it, "" when the host is gone (owned).  */
int st_host_report(st_db_t *db, const char *name, const json_t *info, int64_t last_seen_ms,
                   const char *was, const char *next, char **state_out, sbx_error_t *err);

/* Lookups the scheduler and the API make by value rather than by key.
 * They answer 1 (found), 0 (absent) or -1 (storage could not tell; err
 * filled): a caller that acts on "absent" (the reconciler destroys what
 * storage does not know) must not act on -1.  */
/* Whether a resource holds this runtime id.  */
int st_resource_runtime_id_exists(st_db_t *db, const char *runtime_id, sbx_error_t *err);
int st_resource_delete_by_host(st_db_t *db, const char *type, const char *host_id,
                               sbx_error_t *err);
/* The id of an operation on resource_id of that kind and status, if any
 * (out is "" unless 1 is returned).  */
int st_operation_find(st_db_t *db, const char *resource_id, const char *kind, const char *status,
                      char out[37], sbx_error_t *err);
/* Forget finished operations that ended before the given time.  */
int st_operations_sweep(st_db_t *db, int64_t ended_before_ms, sbx_error_t *err);

/* Testing: from now on every lookup and registry statement (those above
 * that go through one-off SQL) whose SQL text contains sql_part fails as a
 * storage error would; NULL stops it.  For tests that must show what a
 * caller does when storage fails; never called by the servers.  */
void st_fault_inject(st_db_t *db, const char *sql_part);

/* Small key/value table for settings the server keeps (signing keys...).  */
int st_kv_get(st_db_t *db, const char *key, char **value, sbx_error_t *err);
int st_tx_kv_put(st_tx_t *tx, const char *key, const char *value, sbx_error_t *err);

#endif
