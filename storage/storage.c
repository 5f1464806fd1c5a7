/* storage.c -- SQLite storage: migrations, a connection pool, resources,
 * operations and settings.  */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 10000
/* Enough that readers rarely wait for a connection (one per HTTP thread
 * would be ideal; connections are cheap until they cache pages).  */
#define DEFAULT_POOL 32

/* Numbered migrations; each runs once, in order, in its own transaction,
 * and is recorded in schema_migrations.  Never edit a released one: add
 * the next number.  */
static const char *const migrations[] = {
    /* 1: resources and operations */
    "CREATE TABLE resources ("
    "  key TEXT PRIMARY KEY," /* lower-cased ARM id */
    "  id TEXT NOT NULL,"
    "  type TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  subscription TEXT NOT NULL,"
    "  resource_group TEXT NOT NULL,"
    "  parent_key TEXT,"
    "  host_id TEXT,"
    "  body TEXT NOT NULL,"
    "  etag TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX resources_by_type ON resources(type, subscription, resource_group, key);"
    "CREATE INDEX resources_by_parent ON resources(parent_key, type, key);"
    "CREATE INDEX resources_by_host ON resources(host_id) WHERE host_id IS NOT NULL;"
    "CREATE TABLE operations ("
    "  id TEXT PRIMARY KEY,"
    "  resource_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  status TEXT NOT NULL,"
    "  location TEXT NOT NULL,"
    "  subscription TEXT NOT NULL,"
    "  error TEXT,"
    "  payload TEXT,"
    "  start_ms INTEGER NOT NULL,"
    "  end_ms INTEGER,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_ms INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX operations_due ON operations(status, next_attempt_ms) WHERE status = "
    "'InProgress';"
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
    /* 2: hosts that run sandboxes */
    "CREATE TABLE hosts ("
    "  name TEXT PRIMARY KEY,"
    "  url TEXT NOT NULL,"
    "  environment TEXT NOT NULL,"
    "  state TEXT NOT NULL," /* Ready | Down | Draining */
    "  info TEXT NOT NULL,"  /* last health report (capacity, usage, drivers) */
    "  last_seen_ms INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;",
    /* 3: a placed sandbox's runtime id and counted need as columns; they
     * were hidden keys of its body ("_runtimeId", "_cpu", ...).  Rows from
     * before disk and pids were counted hold the defaults then used.  */
    "ALTER TABLE resources ADD COLUMN runtime_id TEXT;"
    "ALTER TABLE resources ADD COLUMN need_cpu REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE resources ADD COLUMN need_memory_mib REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE resources ADD COLUMN need_disk_mib REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE resources ADD COLUMN need_pids REAL NOT NULL DEFAULT 0;"
    "UPDATE resources SET runtime_id = json_extract(body, '$._runtimeId'),"
    "  need_cpu = coalesce(json_extract(body, '$._cpu'), 1.0),"
    "  need_memory_mib = coalesce(json_extract(body, '$._memoryMiB'), 256),"
    "  need_disk_mib = coalesce(json_extract(body, '$._diskMiB'), 1024),"
    "  need_pids = coalesce(json_extract(body, '$._pids'), 1024),"
    "  body = json_remove(body, '$._runtimeId', '$._cpu', '$._memoryMiB', '$._diskMiB',"
    "                     '$._pids')"
    "  WHERE json_extract(body, '$._runtimeId') IS NOT NULL;"
    "CREATE INDEX resources_by_runtime_id ON resources(runtime_id) WHERE runtime_id IS NOT NULL;",
};

/* The columns resource_from_row reads, in its order.  */
#define RES_COLS                                                                                   \
    "id, type, name, subscription, resource_group, parent_key, host_id, body, etag,"               \
    " created_ms, updated_ms, runtime_id, need_cpu, need_memory_mib, need_disk_mib, need_pids"

/* Prepared statements, cached per connection.  */
enum stmt_id {
    Q_RES_GET,
    Q_RES_PUT,
    Q_RES_DELETE,
    Q_RES_DELETE_CHILDREN,
    Q_RES_COUNT,
    Q_RES_COUNT_PARENT,
    Q_OP_PUT,
    Q_OP_GET,
    Q_OP_DUE,
    Q_KV_GET,
    Q_KV_PUT,
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_COUNT
};

static const char *const stmt_sql[Q_COUNT] = {
    [Q_RES_GET] = "SELECT " RES_COLS " FROM resources WHERE key = ?1",
    [Q_RES_PUT] = "INSERT INTO resources (key, id, type, name, subscription, resource_group,"
                  " parent_key, host_id, body, etag, created_ms, updated_ms, runtime_id,"
                  " need_cpu, need_memory_mib, need_disk_mib, need_pids)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,"
                  " ?16, ?17)"
                  " ON CONFLICT(key) DO UPDATE SET body = excluded.body, etag = excluded.etag,"
                  " host_id = excluded.host_id, updated_ms = excluded.updated_ms,"
                  " runtime_id = excluded.runtime_id, need_cpu = excluded.need_cpu,"
                  " need_memory_mib = excluded.need_memory_mib,"
                  " need_disk_mib = excluded.need_disk_mib, need_pids = excluded.need_pids",
    [Q_RES_DELETE] = "DELETE FROM resources WHERE key = ?1",
    /* Descendants share the parent's key as a prefix followed by '/'.  */
    [Q_RES_DELETE_CHILDREN] = "DELETE FROM resources WHERE key > ?1 || '/' AND key < ?1 || '0'",
    [Q_RES_COUNT] = "SELECT count(*) FROM resources WHERE type = ?1",
    [Q_RES_COUNT_PARENT] = "SELECT count(*) FROM resources WHERE parent_key = ?2 AND type = ?1",
    [Q_OP_PUT] = "INSERT OR REPLACE INTO operations (id, resource_id, kind, status, location,"
                 " subscription, error, payload, start_ms, end_ms, attempts, next_attempt_ms)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [Q_OP_GET] = "SELECT id, resource_id, kind, status, location, subscription, error, payload,"
                 " start_ms, end_ms, attempts, next_attempt_ms FROM operations WHERE id = ?1",
    [Q_OP_DUE] = "SELECT id, resource_id, kind, status, location, subscription, error, payload,"
                 " start_ms, end_ms, attempts, next_attempt_ms FROM operations"
                 " WHERE status = 'InProgress' AND next_attempt_ms <= ?1"
                 " ORDER BY start_ms LIMIT ?2",
    [Q_KV_GET] = "SELECT value FROM kv WHERE key = ?1",
    [Q_KV_PUT] = "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
};

typedef struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmts[Q_COUNT];
    struct conn *next;
} conn_t;

struct st_db {
    char *path;
    st_options_t opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    conn_t *free_list;
    unsigned open_conns;
    /* Writers queue here before they take a pooled connection.  Waiting
     * inside BEGIN IMMEDIATE instead would hold a connection that the
     * writer ahead may need for a read of its own (a pool of N deadlocks
     * on N+1 writers until the busy timeout), and SQLite's busy handler
     * sleeps in coarse steps where a mutex hands over at once.  */
    pthread_mutex_t write_lock;
    /* WAL checkpoints run here, not inside whichever commit crosses the
     * auto-checkpoint size while every other writer waits behind it.  */
    pthread_t checkpointer;
    pthread_cond_t checkpoint_cond;
    bool checkpointing, stopping;
    /* st_fault_inject: st_query statements containing this fail */
    pthread_mutex_t fault_lock;
    char *fault;
    atomic_bool fault_set; /* so queries need no lock while none is */
};

struct st_tx {
    st_db_t *db;
    conn_t *c;
};

/* ---- connections ---- */

static int sql_error(sbx_error_t *err, sqlite3 *db, const char *what)
{
    int rc = sqlite3_extended_errcode(db);
    sbx_code_t code = (rc & 0xff) == SQLITE_BUSY ? SBX_ERR_UNAVAILABLE : SBX_ERR_INTERNAL;
    return sbx_error_set(err, code, "storage: %s: %s", what, sqlite3_errmsg(db));
}

static void conn_free(conn_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    free(c);
}

static int exec_sql(sqlite3 *db, const char *sql, sbx_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "storage: %s", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static conn_t *conn_open(st_db_t *s, sbx_error_t *err)
{
    conn_t *c = xcalloc(1, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(s->path, &c->db, flags, NULL) != SQLITE_OK) {
        sbx_error_set(err, SBX_ERR_INTERNAL, "storage: open '%s': %s", s->path,
                      c->db ? sqlite3_errmsg(c->db) : "out of memory");
        conn_free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    const char *sync =
        s->opts.synchronous_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
    if (exec_sql(c->db,
                 "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA wal_autocheckpoint=0;",
                 err) < 0 ||
        exec_sql(c->db, sync, err) < 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

static sqlite3_stmt *stmt(conn_t *c, enum stmt_id q, sbx_error_t *err)
{
    if (!c->stmts[q] && sqlite3_prepare_v3(c->db, stmt_sql[q], -1, SQLITE_PREPARE_PERSISTENT,
                                           &c->stmts[q], NULL) != SQLITE_OK) {
        sql_error(err, c->db, "prepare");
        return NULL;
    }
    sqlite3_reset(c->stmts[q]);
    sqlite3_clear_bindings(c->stmts[q]);
    return c->stmts[q];
}

static conn_t *pool_get(st_db_t *s, sbx_error_t *err)
{
    pthread_mutex_lock(&s->lock);
    while (!s->free_list && s->open_conns >= s->opts.pool_size)
        pthread_cond_wait(&s->cond, &s->lock);
    conn_t *c = s->free_list;
    if (c) {
        s->free_list = c->next;
        pthread_mutex_unlock(&s->lock);
        return c;
    }
    s->open_conns++;
    pthread_mutex_unlock(&s->lock);
    c = conn_open(s, err);
    if (!c) {
        pthread_mutex_lock(&s->lock);
        s->open_conns--;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    return c;
}

static void pool_put(st_db_t *s, conn_t *c)
{
    for (int i = 0; i < Q_COUNT; i++)
        if (c->stmts[i])
            sqlite3_reset(c->stmts[i]);
    pthread_mutex_lock(&s->lock);
    c->next = s->free_list;
    s->free_list = c;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ---- open, migrate, close ---- */

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *q = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &q,
                           NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    return v;
}

static int migrate(sqlite3 *db, sbx_error_t *err)
{
    if (exec_sql(db,
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
                 err) < 0)
        return -1;
    int have = user_version(db);
    if (have < 0)
        return sql_error(err, db, "read schema version");
    if (have > (int)ARRAY_SIZE(migrations))
        return sbx_error_set(err, SBX_ERR_INTERNAL,
                             "storage: database schema %d is newer than this sandboxd (%zu)", have,
                             ARRAY_SIZE(migrations));
    for (int v = have + 1; v <= (int)ARRAY_SIZE(migrations); v++) {
        _cleanup_free_ char *record =
            xasprintf("INSERT INTO schema_migrations (version, applied_ms) VALUES (%d, %lld);", v,
                      (long long)sbx_now_ms());
        if (exec_sql(db, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        if (exec_sql(db, migrations[v - 1], err) < 0 || exec_sql(db, record, err) < 0) {
            exec_sql(db, "ROLLBACK", NULL);
            sbx_error_wrap(err, "migration %d", v);
            return -1;
        }
        if (exec_sql(db, "COMMIT", err) < 0)
            return -1;
    }
    return 0;
}

#define CHECKPOINT_INTERVAL_MS 500

/* A PASSIVE checkpoint never blocks readers or the writer; it copies what
 * it can, and the WAL restarts once a checkpoint has caught up.  */
static void *checkpoint_main(void *arg)
{
    st_db_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec ts = sbx_deadline_in(CHECKPOINT_INTERVAL_MS);
        pthread_cond_timedwait(&s->checkpoint_cond, &s->lock, &ts);
        if (s->stopping)
            break;
        pthread_mutex_unlock(&s->lock);
        conn_t *c = pool_get(s, NULL);
        if (c) {
            sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            pool_put(s, c);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The database and its -wal and -shm files are the owner's only, whatever
 * the umask: the file is made 0600 before SQLite opens it (SQLite gives the
 * -wal and -shm files the database's mode), and files an older version left
 * wider are narrowed.  */
static int private_files(const char *path, sbx_error_t *err)
{
    if (path[0] == ':' || sbx_str_has_prefix(path, "file:"))
        return 0; /* in memory, or a URI SQLite resolves itself */
    _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "storage: open '%s'", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "storage: '%s' is not a regular file", path);
    if ((st.st_mode & 0777) != 0600 && fchmod(fd, 0600) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "storage: chmod '%s'", path);
    const char *suffixes[] = {"-wal", "-shm"};
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        _cleanup_free_ char *p = xasprintf("%s%s", path, suffixes[i]);
        if (chmod(p, 0600) < 0 && errno != ENOENT)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "storage: chmod '%s'", p);
    }
    return 0;
}

st_db_t *st_open(const char *path, const st_options_t *opts, sbx_error_t *err)
{
    if (private_files(path, err) < 0)
        return NULL;
    st_db_t *s = xcalloc(1, sizeof(*s));
    s->path = xstrdup(path);
    if (opts)
        s->opts = *opts;
    if (!s->opts.pool_size)
        s->opts.pool_size = DEFAULT_POOL;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_mutex_init(&s->write_lock, NULL);
    pthread_mutex_init(&s->fault_lock, NULL);
    pthread_cond_init(&s->checkpoint_cond, NULL);
    conn_t *c = pool_get(s, err);
    if (!c) {
        st_close(s);
        return NULL;
    }
    int r = migrate(c->db, err);
    pool_put(s, c);
    if (r < 0) {
        st_close(s);
        return NULL;
    }
    if (pthread_create(&s->checkpointer, NULL, checkpoint_main, s) == 0)
        s->checkpointing = true;
    return s;
}

void st_close(st_db_t *s)
{
    if (!s)
        return;
    if (s->checkpointing) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->checkpoint_cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->checkpointer, NULL);
        /* Fold the WAL into the database before closing.  */
        conn_t *c = pool_get(s, NULL);
        if (c) {
            sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
            pool_put(s, c);
        }
    }
    while (s->free_list) {
        conn_t *c = s->free_list;
        s->free_list = c->next;
        conn_free(c);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->write_lock);
    pthread_mutex_destroy(&s->fault_lock);
    free(s->fault);
    pthread_cond_destroy(&s->checkpoint_cond);
    free(s->path);
    free(s);
}

int st_schema_version(st_db_t *s)
{
    conn_t *c = pool_get(s, NULL);
    if (!c)
        return -1;
    int v = user_version(c->db);
    pool_put(s, c);
    return v;
}

char *st_integrity_check(st_db_t *s)
{
    conn_t *c = pool_get(s, NULL);
    if (!c)
        return xstrdup("cannot open database");
    sqlite3_stmt *q = NULL;
    char *res = NULL;
    if (sqlite3_prepare_v2(c->db, "PRAGMA integrity_check", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        res = xstrdup((const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    pool_put(s, c);
    return res ? res : xstrdup("integrity_check failed to run");
}

/* ---- row helpers ---- */

static char *col_str(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? xstrdup((const char *)t) : NULL;
}

static json_t *col_json(sqlite3_stmt *q, int i)
{
    const char *t = (const char *)sqlite3_column_text(q, i);
    return t ? json_loads(t, 0, NULL) : NULL;
}

static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static void bind_json(sqlite3_stmt *q, int i, const json_t *j)
{
    if (!j || json_is_null(j)) {
        sqlite3_bind_null(q, i);
        return;
    }
    char *s = json_dumps(j, JSON_COMPACT);
    sqlite3_bind_text(q, i, s, -1, free);
}

static char *lower_dup(const char *s)
{
    char *l = xstrdup(s);
    sbx_str_lower(l);
    return l;
}

static void resource_from_row(sqlite3_stmt *q, st_resource_t *r)
{
    r->id = col_str(q, 0);
    r->type = col_str(q, 1);
    r->name = col_str(q, 2);
    r->subscription = col_str(q, 3);
    r->resource_group = col_str(q, 4);
    r->parent_id = col_str(q, 5);
    r->host_id = col_str(q, 6);
    r->body = col_json(q, 7);
    if (!r->body)
        r->body = json_object();
    snprintf(r->etag, sizeof(r->etag), "%s", (const char *)sqlite3_column_text(q, 8));
    r->created_ms = sqlite3_column_int64(q, 9);
    r->updated_ms = sqlite3_column_int64(q, 10);
    r->runtime_id = col_str(q, 11);
    r->need = (sbx_need_t){.cpu = sqlite3_column_double(q, 12),
                           .memory_mib = sqlite3_column_double(q, 13),
                           .disk_mib = sqlite3_column_double(q, 14),
                           .pids = sqlite3_column_double(q, 15)};
}

void st_resource_done(st_resource_t *r)
{
    if (!r)
        return;
    free(r->id);
    free(r->type);
    free(r->name);
    free(r->subscription);
    free(r->resource_group);
    free(r->parent_id);
    free(r->host_id);
    free(r->runtime_id);
    json_decref(r->body);
    memset(r, 0, sizeof(*r));
}

void st_list_done(st_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        st_resource_done(&l->items[i]);
    free(l->items);
    free(l->next);
    memset(l, 0, sizeof(*l));
}

/* ---- resources ---- */

static int resource_get_conn(conn_t *c, const char *id, st_resource_t *out, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(c, Q_RES_GET, err);
    if (!q)
        return -1;
    _cleanup_free_ char *key = lower_dup(id);
    bind_text(q, 1, key);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        resource_from_row(q, out);
        sqlite3_reset(q);
        return 1;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return 0;
    return sql_error(err, c->db, "get resource");
}

/* A lookup's answer as a get's: absent is an error too.  */
static int found_or_not(int found, sbx_error_t *err, const char *what, const char *key)
{
    if (found == 0)
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "The %s '%s' was not found.", what, key);
    return found < 0 ? -1 : 0;
}

int st_resource_lookup(st_db_t *db, const char *id, st_resource_t *out, sbx_error_t *err)
{
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    int r = resource_get_conn(c, id, out, err);
    pool_put(db, c);
    return r;
}

int st_resource_get(st_db_t *db, const char *id, st_resource_t *out, sbx_error_t *err)
{
    return found_or_not(st_resource_lookup(db, id, out, err), err, "resource", id);
}

int st_resource_list(st_db_t *db, const st_list_query_t *lq, st_list_t *out, sbx_error_t *err)
{
    memset(out, 0, sizeof(*out));
    size_t limit = lq->limit ? lq->limit : 100;
    /* The filter set is small and fixed, so the statement is built from
     * constant pieces; only values are bound.  */
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT " RES_COLS " FROM resources WHERE type = ?1%s%s%s%s%s"
             " ORDER BY key LIMIT ?7",
             lq->subscription ? " AND subscription = ?2" : "",
             lq->resource_group ? " AND resource_group = ?3" : "",
             lq->parent_id ? " AND parent_key = ?4" : "", lq->host_id ? " AND host_id = ?5" : "",
             lq->after ? " AND key > ?6" : "");
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) != SQLITE_OK) {
        sql_error(err, c->db, "list");
        pool_put(db, c);
        return -1;
    }
    _cleanup_free_ char *type = lower_dup(lq->type);
    _cleanup_free_ char *sub = lq->subscription ? lower_dup(lq->subscription) : NULL;
    _cleanup_free_ char *rg = lq->resource_group ? lower_dup(lq->resource_group) : NULL;
    _cleanup_free_ char *parent = lq->parent_id ? lower_dup(lq->parent_id) : NULL;
    bind_text(q, 1, type);
    bind_text(q, 2, sub);
    bind_text(q, 3, rg);
    bind_text(q, 4, parent);
    bind_text(q, 5, lq->host_id);
    bind_text(q, 6, lq->after);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)limit + 1);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (out->n == limit) {
            /* The continuation is the last key returned, not the next one.  */
            out->next = lower_dup(out->items[out->n - 1].id);
            break;
        }
        if (out->n == cap)
            out->items = xrealloc(out->items, (cap = cap ? cap * 2 : 16) * sizeof(*out->items));
        memset(&out->items[out->n], 0, sizeof(out->items[0]));
        resource_from_row(q, &out->items[out->n++]);
    }
    int ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    if (!ok)
        sql_error(err, c->db, "list");
    sqlite3_finalize(q);
    pool_put(db, c);
    if (!ok) {
        st_list_done(out);
        return -1;
    }
    return 0;
}

int st_resource_each(st_db_t *db, const st_list_query_t *q, st_resource_fn fn, void *ud,
                     sbx_error_t *err)
{
    st_list_query_t page = *q;
    char *after = q->after ? xstrdup(q->after) : NULL;
    int ret = 0;
    do {
        st_list_t l = {0};
        page.after = after;
        if (st_resource_list(db, &page, &l, err) < 0) {
            ret = -1;
            break;
        }
        for (size_t i = 0; i < l.n; i++)
            fn(ud, &l.items[i]);
        free(after);
        after = l.next ? xstrdup(l.next) : NULL;
        st_list_done(&l);
    } while (after);
    free(after);
    return ret;
}

static int count_conn(conn_t *c, const char *type, const char *parent_id, size_t *out,
                      sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(c, parent_id ? Q_RES_COUNT_PARENT : Q_RES_COUNT, err);
    if (!q)
        return -1;
    _cleanup_free_ char *t = lower_dup(type);
    _cleanup_free_ char *p = parent_id ? lower_dup(parent_id) : NULL;
    bind_text(q, 1, t);
    if (p)
        bind_text(q, 2, p);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *out = (size_t)sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? 0 : sql_error(err, c->db, "count");
}

int st_resource_count(st_db_t *db, const char *type, const char *parent_id, size_t *out,
                      sbx_error_t *err)
{
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    int r = count_conn(c, type, parent_id, out, err);
    pool_put(db, c);
    return r;
}

/* ---- transactions ---- */

static int step_done(conn_t *c, sqlite3_stmt *q, const char *what, sbx_error_t *err)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : sql_error(err, c->db, what);
}

st_tx_t *st_begin(st_db_t *db, sbx_error_t *err)
{
    /* As long as SQLite would wait for another writer, then give up.  */
    struct timespec until = sbx_deadline_in(BUSY_TIMEOUT_MS);
    if (pthread_mutex_timedlock(&db->write_lock, &until) != 0) {
        sbx_error_set(err, SBX_ERR_UNAVAILABLE, "storage: begin: the database is busy");
        return NULL;
    }
    conn_t *c = pool_get(db, err);
    if (!c) {
        pthread_mutex_unlock(&db->write_lock);
        return NULL;
    }
    sqlite3_stmt *q = stmt(c, Q_BEGIN, err);
    if (!q || step_done(c, q, "begin", err) < 0) {
        pool_put(db, c);
        pthread_mutex_unlock(&db->write_lock);
        return NULL;
    }
    st_tx_t *tx = xcalloc(1, sizeof(*tx));
    tx->db = db;
    tx->c = c;
    return tx;
}

int st_commit(st_tx_t *tx, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_COMMIT, err);
    int r = q ? step_done(tx->c, q, "commit", err) : -1;
    if (r < 0) {
        st_rollback(tx);
        return -1;
    }
    pool_put(tx->db, tx->c);
    pthread_mutex_unlock(&tx->db->write_lock);
    free(tx);
    return 0;
}

void st_rollback(st_tx_t *tx)
{
    if (!tx)
        return;
    if (!sqlite3_get_autocommit(tx->c->db)) {
        sqlite3_stmt *q = stmt(tx->c, Q_ROLLBACK, NULL);
        if (q)
            step_done(tx->c, q, "rollback", NULL);
    }
    pool_put(tx->db, tx->c);
    pthread_mutex_unlock(&tx->db->write_lock);
    free(tx);
}

int st_tx_resource_lookup(st_tx_t *tx, const char *id, st_resource_t *out, sbx_error_t *err)
{
    return resource_get_conn(tx->c, id, out, err);
}

int st_tx_resource_get(st_tx_t *tx, const char *id, st_resource_t *out, sbx_error_t *err)
{
    return found_or_not(resource_get_conn(tx->c, id, out, err), err, "resource", id);
}

int st_tx_resource_put(st_tx_t *tx, st_resource_t *r, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_RES_PUT, err);
    if (!q)
        return -1;
    char etag[37];
    sbx_uuid(etag);
    snprintf(r->etag, sizeof(r->etag), "\"%s\"", etag);
    int64_t now = sbx_now_ms();
    if (!r->created_ms)
        r->created_ms = now;
    r->updated_ms = now;
    _cleanup_free_ char *key = lower_dup(r->id);
    _cleanup_free_ char *parent = r->parent_id ? lower_dup(r->parent_id) : NULL;
    _cleanup_free_ char *type = lower_dup(r->type);
    _cleanup_free_ char *sub = lower_dup(r->subscription);
    _cleanup_free_ char *rg = lower_dup(r->resource_group);
    bind_text(q, 1, key);
    bind_text(q, 2, r->id);
    bind_text(q, 3, type);
    bind_text(q, 4, r->name);
    bind_text(q, 5, sub);
    bind_text(q, 6, rg);
    bind_text(q, 7, parent);
    bind_text(q, 8, r->host_id);
    bind_json(q, 9, r->body);
    bind_text(q, 10, r->etag);
    sqlite3_bind_int64(q, 11, r->created_ms);
    sqlite3_bind_int64(q, 12, r->updated_ms);
    bind_text(q, 13, r->runtime_id);
    sqlite3_bind_double(q, 14, r->need.cpu);
    sqlite3_bind_double(q, 15, r->need.memory_mib);
    sqlite3_bind_double(q, 16, r->need.disk_mib);
    sqlite3_bind_double(q, 17, r->need.pids);
    return step_done(tx->c, q, "put resource", err);
}

int st_tx_resource_delete(st_tx_t *tx, const char *id, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_RES_DELETE, err);
    if (!q)
        return -1;
    _cleanup_free_ char *key = lower_dup(id);
    bind_text(q, 1, key);
    return step_done(tx->c, q, "delete resource", err);
}

int st_resource_delete(st_db_t *db, const char *id, sbx_error_t *err)
{
    st_tx_t *tx = st_begin(db, err);
    if (!tx)
        return -1;
    if (st_tx_resource_delete(tx, id, err) < 0) {
        st_rollback(tx);
        return -1;
    }
    return st_commit(tx, err);
}

int st_tx_resource_delete_children(st_tx_t *tx, const char *parent_id, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_RES_DELETE_CHILDREN, err);
    if (!q)
        return -1;
    _cleanup_free_ char *key = lower_dup(parent_id);
    bind_text(q, 1, key);
    return step_done(tx->c, q, "delete children", err);
}

int st_tx_resource_count(st_tx_t *tx, const char *type, const char *parent_id, size_t *out,
                         sbx_error_t *err)
{
    return count_conn(tx->c, type, parent_id, out, err);
}

/* ---- operations ---- */

void st_operation_done(st_operation_t *op)
{
    if (!op)
        return;
    free(op->resource_id);
    free(op->kind);
    free(op->status);
    free(op->location);
    free(op->subscription);
    json_decref(op->error);
    json_decref(op->payload);
    memset(op, 0, sizeof(*op));
}

void st_operations_free(st_operation_t *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_operation_done(&ops[i]);
    free(ops);
}

static void operation_from_row(sqlite3_stmt *q, st_operation_t *op)
{
    memset(op, 0, sizeof(*op));
    snprintf(op->id, sizeof(op->id), "%s", (const char *)sqlite3_column_text(q, 0));
    op->resource_id = col_str(q, 1);
    op->kind = col_str(q, 2);
    op->status = col_str(q, 3);
    op->location = col_str(q, 4);
    op->subscription = col_str(q, 5);
    op->error = col_json(q, 6);
    op->payload = col_json(q, 7);
    op->start_ms = sqlite3_column_int64(q, 8);
    op->end_ms = sqlite3_column_int64(q, 9);
    op->attempts = sqlite3_column_int(q, 10);
    op->next_attempt_ms = sqlite3_column_int64(q, 11);
}

int st_tx_operation_put(st_tx_t *tx, const st_operation_t *op, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_OP_PUT, err);
    if (!q)
        return -1;
    bind_text(q, 1, op->id);
    bind_text(q, 2, op->resource_id);
    bind_text(q, 3, op->kind);
    bind_text(q, 4, op->status);
    bind_text(q, 5, op->location);
    bind_text(q, 6, op->subscription);
    bind_json(q, 7, op->error);
    bind_json(q, 8, op->payload);
    sqlite3_bind_int64(q, 9, op->start_ms);
    if (op->end_ms)
        sqlite3_bind_int64(q, 10, op->end_ms);
    else
        sqlite3_bind_null(q, 10);
    sqlite3_bind_int(q, 11, op->attempts);
    sqlite3_bind_int64(q, 12, op->next_attempt_ms);
    return step_done(tx->c, q, "put operation", err);
}

static int operation_get_conn(conn_t *c, const char *id, st_operation_t *out, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(c, Q_OP_GET, err);
    if (!q)
        return -1;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        operation_from_row(q, out);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return sql_error(err, c->db, "get operation");
}

int st_tx_operation_get(st_tx_t *tx, const char *id, st_operation_t *out, sbx_error_t *err)
{
    return found_or_not(operation_get_conn(tx->c, id, out, err), err, "operation", id);
}

int st_operation_lookup(st_db_t *db, const char *id, st_operation_t *out, sbx_error_t *err)
{
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    int r = operation_get_conn(c, id, out, err);
    pool_put(db, c);
    return r;
}

int st_operation_get(st_db_t *db, const char *id, st_operation_t *out, sbx_error_t *err)
{
    return found_or_not(st_operation_lookup(db, id, out, err), err, "operation", id);
}

int st_operations_due(st_db_t *db, int64_t now_ms, size_t max, st_operation_t **out, size_t *n,
                      sbx_error_t *err)
{
    *out = NULL;
    *n = 0;
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    sqlite3_stmt *q = stmt(c, Q_OP_DUE, err);
    if (!q) {
        pool_put(db, c);
        return -1;
    }
    sqlite3_bind_int64(q, 1, now_ms);
    sqlite3_bind_int64(q, 2, (sqlite3_int64)max);
    st_operation_t *ops = xcalloc(max ? max : 1, sizeof(*ops));
    size_t k = 0;
    int rc;
    while (k < max && (rc = sqlite3_step(q)) == SQLITE_ROW)
        operation_from_row(q, &ops[k++]);
    sqlite3_reset(q);
    pool_put(db, c);
    *out = ops;
    *n = k;
    return 0;
}

/* ---- settings ---- */

int st_kv_get(st_db_t *db, const char *key, char **value, sbx_error_t *err)
{
    conn_t *c = pool_get(db, err);
    if (!c)
        return -1;
    sqlite3_stmt *q = stmt(c, Q_KV_GET, err);
    int r = -1;
    if (q) {
        bind_text(q, 1, key);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            *value = col_str(q, 0);
            r = 0;
        } else if (rc == SQLITE_DONE) {
            r = sbx_error_set(err, SBX_ERR_NOT_FOUND, "setting '%s' not found", key);
        } else {
            r = sql_error(err, c->db, "get setting");
        }
        sqlite3_reset(q);
    }
    pool_put(db, c);
    return r;
}

int st_tx_kv_put(st_tx_t *tx, const char *key, const char *value, sbx_error_t *err)
{
    sqlite3_stmt *q = stmt(tx->c, Q_KV_PUT, err);
    if (!q)
        return -1;
    bind_text(q, 1, key);
    bind_text(q, 2, value);
    return step_done(tx->c, q, "put setting", err);
}

/* ---- ad-hoc queries ---- */

void st_fault_inject(st_db_t *db, const char *sql_part)
{
    pthread_mutex_lock(&db->fault_lock);
    free(db->fault);
    db->fault = sql_part ? xstrdup(sql_part) : NULL;
    atomic_store(&db->fault_set, sql_part != NULL);
    pthread_mutex_unlock(&db->fault_lock);
}

static bool fault_matches(st_db_t *db, const char *sql)
{
    if (!atomic_load(&db->fault_set))
        return false;
    pthread_mutex_lock(&db->fault_lock);
    bool hit = db->fault && strstr(sql, db->fault);
    pthread_mutex_unlock(&db->fault_lock);
    return hit;
}

int st_query(st_db_t *db, const char *sql, const char *const *params, size_t nparams, st_row_fn row,
             void *ud, sbx_error_t *err)
{
    if (fault_matches(db, sql))
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "storage: query: injected fault");
    /* A statement that writes queues with the other writers (st_begin).  */
    bool writes = strncasecmp(sql, "SELECT", 6) != 0;
    if (writes)
        pthread_mutex_lock(&db->write_lock);
    conn_t *c = pool_get(db, err);
    if (!c) {
        if (writes)
            pthread_mutex_unlock(&db->write_lock);
        return -1;
    }
    sqlite3_stmt *q = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) != SQLITE_OK) {
        ret = sql_error(err, c->db, "prepare");
    } else {
        for (size_t i = 0; i < nparams; i++)
            bind_text(q, (int)i + 1, params[i]);
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            int n = sqlite3_column_count(q);
            const char *cols[16] = {0};
            for (int i = 0; i < n && i < 16; i++)
                cols[i] = (const char *)sqlite3_column_text(q, i);
            if (row)
                row(ud, n < 16 ? n : 16, cols);
        }
        if (rc != SQLITE_DONE)
            ret = sql_error(err, c->db, "query");
    }
    sqlite3_finalize(q);
    pool_put(db, c);
    if (writes)
        pthread_mutex_unlock(&db->write_lock);
    return ret;
}
