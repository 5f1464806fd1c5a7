/* test_storage.c -- the SQLite storage: migrations recorded once, resources
 * (case-insensitive keys, etags, paging, descendants), transactions,
 * operations, settings, and many writers at once.  */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "storage/internal.h"
#include "tests/testutil.h"

#define GROUPS "microsoft.app/sandboxgroups"
#define VNETS "microsoft.app/sandboxgroups/vnetconnections"
#define SANDBOXES "microsoft.app/sandboxgroups/sandboxes"
#define SUB "00000000-aaaa-bbbb-cccc-000000000001"

static char *tmp, *db_path;
static st_db_t *db;

static void setup(void)
{
    tmp = tu_tmpdir("sbx-storage");
    ck_assert_ptr_nonnull(tmp);
    db_path = xasprintf("%s/test.db", tmp);
    sbx_error_t err = {0};
    db = st_open(db_path, NULL, &err);
    ck_assert_msg(db != NULL, "st_open: %s", err.msg);
}

static void teardown(void)
{
    st_close(db);
    db = NULL;
    tu_rmdir(tmp);
    free(tmp);
    free(db_path);
}

static char *group_id(const char *sub, const char *rg, const char *name)
{
    return xasprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.App/sandboxGroups/%s",
                     sub, rg, name);
}

/* Write one resource in its own transaction; returns the new etag.  */
static char *put(const char *id, const char *type, const char *name, const char *sub,
                 const char *rg, const char *parent, const char *host, json_t *body)
{
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    ck_assert_msg(tx != NULL, "begin: %s", err.msg);
    st_resource_t r = {.id = (char *)id,
                       .type = (char *)type,
                       .name = (char *)name,
                       .subscription = (char *)sub,
                       .resource_group = (char *)rg,
                       .parent_id = (char *)parent,
                       .host_id = (char *)host,
                       .body = body ? body : json_object()};
    ck_assert_msg(st_tx_resource_put(tx, &r, &err) == 0, "put: %s", err.msg);
    ck_assert_msg(st_commit(tx, &err) == 0, "commit: %s", err.msg);
    json_decref(r.body);
    return xstrdup(r.etag);
}

/* A sandbox placed on host with runtime id rid.  */
static void put_placed(const char *id, const char *rg, const char *parent, const char *host,
                       const char *rid)
{
    st_tx_t *tx = st_begin(db, NULL);
    ck_assert_ptr_nonnull(tx);
    st_resource_t r = {.id = (char *)id,
                       .type = SANDBOXES,
                       .name = "s",
                       .subscription = SUB,
                       .resource_group = (char *)rg,
                       .parent_id = (char *)parent,
                       .host_id = (char *)host,
                       .runtime_id = (char *)rid,
                       .need = {.cpu = 0.5, .memory_mib = 64, .disk_mib = 16, .pids = 1024},
                       .body = json_object()};
    ck_assert_int_eq(st_tx_resource_put(tx, &r, NULL), 0);
    ck_assert_int_eq(st_commit(tx, NULL), 0);
    json_decref(r.body);
}

static char *put_group(const char *sub, const char *rg, const char *name)
{
    _cleanup_free_ char *id = group_id(sub, rg, name);
    return put(id, GROUPS, name, sub, rg, NULL, NULL, json_pack("{s:s}", "name", name));
}

static bool exists(const char *id)
{
    st_resource_t r = {0};
    sbx_error_t err = {0};
    if (st_resource_get(db, id, &r, &err) == 0) {
        st_resource_done(&r);
        return true;
    }
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    return false;
}

/* Rows of schema_migrations, read with a connection of our own.  */
static int migrations_recorded(int64_t *last_applied_ms)
{
    sqlite3 *raw = NULL;
    ck_assert_int_eq(sqlite3_open_v2(db_path, &raw, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(raw,
                                        "SELECT version, applied_ms FROM schema_migrations"
                                        " ORDER BY version",
                                        -1, &q, NULL),
                     SQLITE_OK);
    int n = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        n++;
        ck_assert_int_eq(sqlite3_column_int(q, 0), n); /* 1, 2, ... without gaps */
        *last_applied_ms = sqlite3_column_int64(q, 1);
    }
    sqlite3_finalize(q);
    sqlite3_close(raw);
    return n;
}

static void raw_exec(const char *sql)
{
    sqlite3 *raw = NULL;
    ck_assert_int_eq(sqlite3_open(db_path, &raw), SQLITE_OK);
    char *msg = NULL;
    ck_assert_msg(sqlite3_exec(raw, sql, NULL, NULL, &msg) == SQLITE_OK, "%s", msg);
    sqlite3_close(raw);
}

/* ---- migrations ---- */

START_TEST(migrations_recorded_once)
{
    int v = st_schema_version(db);
    ck_assert_int_ge(v, 1);
    int64_t applied = 0;
    ck_assert_int_eq(migrations_recorded(&applied), v);
    ck_assert_int_gt(applied, 0);
    /* Reopening applies nothing again.  */
    st_close(db);
    sbx_error_t err = {0};
    db = st_open(db_path, NULL, &err);
    ck_assert_msg(db != NULL, "%s", err.msg);
    ck_assert_int_eq(st_schema_version(db), v);
    int64_t applied2 = 0;
    ck_assert_int_eq(migrations_recorded(&applied2), v);
    ck_assert_int_eq(applied2, applied);
    /* Data written before a reopen is there after it.  */
    free(put_group(SUB, "rg", "survivor"));
    st_close(db);
    db = st_open(db_path, NULL, &err);
    ck_assert_msg(db != NULL, "%s", err.msg);
    _cleanup_free_ char *id = group_id(SUB, "rg", "survivor");
    ck_assert(exists(id));
    _cleanup_free_ char *check = st_integrity_check(db);
    ck_assert_str_eq(check, "ok");
}
END_TEST

/* A database from before migration 3 (the runtime id and need in hidden
 * body keys) opens with them moved to columns, its sandboxes kept.  */
START_TEST(old_bookkeeping_keys_become_columns)
{
    _cleanup_free_ char *g = group_id(SUB, "old", "g");
    _cleanup_free_ char *a = xasprintf("%s/sandboxes/a", g), *b = xasprintf("%s/sandboxes/b", g);
    free(put(a, SANDBOXES, "a", SUB, "old", g, "h1",
             json_pack("{s:{s:s}}", "properties", "state", "Running")));
    free(put(b, SANDBOXES, "b", SUB, "old", g, NULL,
             json_pack("{s:{s:s}}", "properties", "state", "Pending")));
    st_close(db);
    db = NULL;
    /* Undo migration 3 by hand, as a database of the previous release.  */
    raw_exec("DROP INDEX resources_by_runtime_id;"
             "ALTER TABLE resources DROP COLUMN runtime_id;"
             "ALTER TABLE resources DROP COLUMN need_cpu;"
             "ALTER TABLE resources DROP COLUMN need_memory_mib;"
             "ALTER TABLE resources DROP COLUMN need_disk_mib;"
             "ALTER TABLE resources DROP COLUMN need_pids;"
             "DELETE FROM schema_migrations WHERE version >= 3;"
             "UPDATE resources SET body = json_set(body, '$._runtimeId', 'rid-old',"
             " '$._cpu', 0.5, '$._memoryMiB', 300.0) WHERE name = 'a';");
    sbx_error_t err = {0};
    db = st_open(db_path, NULL, &err);
    ck_assert_msg(db != NULL, "%s", err.msg);
    st_resource_t r = {0};
    ck_assert_int_eq(st_resource_get(db, a, &r, &err), 0);
    ck_assert_str_eq(r.runtime_id, "rid-old");
    ck_assert_str_eq(r.host_id, "h1");
    ck_assert(r.need.cpu == 0.5 && r.need.memory_mib == 300);
    /* Rows from before disk and pids were counted hold the defaults.  */
    ck_assert(r.need.disk_mib == 1024 && r.need.pids == 1024);
    ck_assert_ptr_null(json_object_get(r.body, "_runtimeId"));
    ck_assert_ptr_null(json_object_get(r.body, "_cpu"));
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r.body, "properties"), "state")),
        "Running");
    st_resource_done(&r);
    ck_assert_int_eq(st_resource_get(db, b, &r, &err), 0);
    ck_assert_ptr_null(r.runtime_id);
    ck_assert(r.need.cpu == 0 && r.need.memory_mib == 0);
    st_resource_done(&r);
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-old", &err), 1);
}
END_TEST

START_TEST(newer_schema_refused)
{
    int v = st_schema_version(db);
    st_close(db);
    db = NULL;
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations VALUES (%d, 1)", v + 1);
    raw_exec(sql);
    sbx_error_t err = {0};
    db = st_open(db_path, NULL, &err);
    ck_assert_ptr_null(db);
    ck_assert_msg(strstr(err.msg, "newer") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(open_failures)
{
    sbx_error_t err = {0};
    _cleanup_free_ char *bad = xasprintf("%s/no/such/dir/x.db", tmp);
    ck_assert_ptr_null(st_open(bad, NULL, &err));
    ck_assert_str_ne(err.msg, "");
    /* Not a database.  */
    _cleanup_free_ char *junk = xasprintf("%s/junk.db", tmp);
    char garbage[4096];
    memset(garbage, 'J', sizeof(garbage));
    ck_assert_int_eq(sbx_write_file_atomic(junk, garbage, sizeof(garbage), 0600, &err), 0);
    sbx_error_clear(&err);
    ck_assert_ptr_null(st_open(junk, NULL, &err));
    ck_assert_str_ne(err.msg, "");
    st_close(NULL);
}
END_TEST

/* ---- resources ---- */

START_TEST(put_get_roundtrip)
{
    _cleanup_free_ char *id = group_id(SUB, "MyRG", "MyGroup");
    _cleanup_free_ char *etag =
        put(id, "Microsoft.App/sandboxGroups", "MyGroup", SUB, "MyRG", NULL, "host-1",
            json_pack("{s:s,s:{s:i}}", "location", "x", "properties", "n", 7));
    ck_assert_uint_gt(strlen(etag), 2);
    ck_assert_int_eq(etag[0], '"');
    ck_assert_int_eq(etag[strlen(etag) - 1], '"');

    /* Any casing of the id finds it; the stored casing comes back.  */
    _cleanup_free_ char *upper = xstrdup(id);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    st_resource_t r = {0};
    sbx_error_t err = {0};
    ck_assert_int_eq(st_resource_get(db, upper, &r, &err), 0);
    ck_assert_str_eq(r.id, id);
    ck_assert_str_eq(r.name, "MyGroup");
    ck_assert_str_eq(r.type, GROUPS);           /* lower-cased */
    ck_assert_str_eq(r.resource_group, "myrg"); /* lower-cased */
    ck_assert_str_eq(r.subscription, SUB);
    ck_assert_ptr_null(r.parent_id);
    ck_assert_str_eq(r.host_id, "host-1");
    ck_assert_str_eq(r.etag, etag);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r.body, "properties"), "n")), 7);
    ck_assert_int_gt(r.created_ms, 0);
    ck_assert_int_eq(r.created_ms, r.updated_ms);
    int64_t created = r.created_ms;
    st_resource_done(&r);
    st_resource_done(&r); /* done twice is harmless */

    /* Missing: a lookup says absent and leaves err alone; a get says
     * NOT_FOUND, with no ARM code (that is the API's to choose).  */
    _cleanup_free_ char *other = group_id(SUB, "MyRG", "Other");
    sbx_error_t none = {0};
    ck_assert_int_eq(st_resource_lookup(db, other, &r, &none), 0);
    ck_assert_int_eq(none.code, SBX_OK);
    ck_assert_int_eq(st_resource_get(db, other, &r, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_str_eq(err.arm_code, "");

    /* A rewrite keeps created_ms; updated_ms moves.  */
    int64_t t0 = sbx_now_ms();
    while (sbx_now_ms() < t0 + 3)
        usleep(1000);
    _cleanup_free_ char *etag2 = put(id, GROUPS, "MyGroup", SUB, "MyRG", NULL, NULL, NULL);
    ck_assert_int_eq(st_resource_get(db, id, &r, &err), 0);
    ck_assert_int_eq(r.created_ms, created);
    ck_assert_int_gt(r.updated_ms, created);
    ck_assert_ptr_null(r.host_id);
    ck_assert_str_eq(r.etag, etag2);
    st_resource_done(&r);
}
END_TEST

START_TEST(etag_changes_on_every_write)
{
    _cleanup_free_ char *id = group_id(SUB, "rg", "g");
    json_t *seen = json_object();
    for (int i = 0; i < 20; i++) {
        /* The same body every time: the etag still changes.  */
        _cleanup_free_ char *etag =
            put(id, GROUPS, "g", SUB, "rg", NULL, NULL, json_pack("{s:s}", "same", "body"));
        ck_assert_msg(!json_object_get(seen, etag), "etag %s repeated", etag);
        json_object_set_new(seen, etag, json_true());
    }
    json_decref(seen);
}
END_TEST

START_TEST(tx_rollback_leaves_nothing)
{
    sbx_error_t err = {0};
    free(put_group(SUB, "rg", "kept"));
    _cleanup_free_ char *kept_id = group_id(SUB, "rg", "kept");
    _cleanup_free_ char *new_id = group_id(SUB, "rg", "never");
    st_tx_t *tx = st_begin(db, &err);
    ck_assert_ptr_nonnull(tx);
    st_resource_t r = {.id = new_id,
                       .type = GROUPS,
                       .name = "never",
                       .subscription = SUB,
                       .resource_group = "rg",
                       .body = json_object()};
    ck_assert_int_eq(st_tx_resource_put(tx, &r, &err), 0);
    json_decref(r.body);
    ck_assert_int_eq(st_tx_resource_delete(tx, kept_id, &err), 0);
    ck_assert_int_eq(st_tx_kv_put(tx, "k", "v", &err), 0);
    st_operation_t op = {.id = "11111111-2222-3333-4444-555555555555",
                         .resource_id = new_id,
                         .kind = "create",
                         .status = "InProgress",
                         .location = "x",
                         .subscription = SUB,
                         .start_ms = 1};
    ck_assert_int_eq(st_tx_operation_put(tx, &op, &err), 0);
    /* The transaction sees its own writes; others do not yet.  */
    st_resource_t in_tx = {0};
    ck_assert_int_eq(st_tx_resource_get(tx, new_id, &in_tx, &err), 0);
    st_resource_done(&in_tx);
    ck_assert_int_eq(st_tx_resource_get(tx, kept_id, &in_tx, &err), -1);
    ck_assert(!exists(new_id));
    ck_assert(exists(kept_id));
    st_rollback(tx);

    ck_assert(!exists(new_id));
    ck_assert(exists(kept_id));
    char *v = NULL;
    ck_assert_int_eq(st_kv_get(db, "k", &v, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    st_operation_t got = {0};
    ck_assert_int_eq(st_operation_get(db, op.id, &got, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    st_rollback(NULL);

    /* The connection went back to the pool in a usable state.  */
    for (int i = 0; i < 20; i++) {
        tx = st_begin(db, &err);
        ck_assert_ptr_nonnull(tx);
        st_rollback(tx);
    }
    _cleanup_free_ char *after = put_group(SUB, "rg", "after");
    ck_assert_ptr_nonnull(after);
}
END_TEST

/* Page through a query; every row once, in key order, pages <= limit.  */
static size_t list_all(st_list_query_t q, size_t limit, json_t *names)
{
    q.limit = limit;
    size_t total = 0, pages = 0;
    char *after = NULL;
    char last_key[512] = "";
    for (;;) {
        q.after = after;
        st_list_t l = {0};
        sbx_error_t err = {0};
        ck_assert_msg(st_resource_list(db, &q, &l, &err) == 0, "list: %s", err.msg);
        ck_assert_uint_le(l.n, limit);
        for (size_t i = 0; i < l.n; i++) {
            _cleanup_free_ char *key = xstrdup(l.items[i].id);
            sbx_str_lower(key);
            ck_assert_msg(strcmp(key, last_key) > 0, "%s not after %s", key, last_key);
            snprintf(last_key, sizeof(last_key), "%s", key);
            ck_assert_msg(!json_object_get(names, l.items[i].name), "%s twice", l.items[i].name);
            json_object_set_new(names, l.items[i].name, json_true());
        }
        total += l.n;
        free(after);
        after = l.next ? xstrdup(l.next) : NULL;
        if (l.next)
            ck_assert_uint_eq(l.n, limit);
        st_list_done(&l);
        ck_assert_uint_lt(++pages, 100);
        if (!after)
            break;
    }
    return total;
}

static void count_and_delete(void *ud, const st_resource_t *r)
{
    json_t *seen = ud;
    ck_assert_msg(!json_object_get(seen, r->name), "%s twice", r->name);
    json_object_set_new(seen, r->name, json_true());
    sbx_error_t err = {0};
    ck_assert_msg(st_resource_delete(db, r->id, &err) == 0, "delete: %s", err.msg);
}

/* st_resource_each visits every row once across pages, even while its
 * callback deletes the rows it is given.  */
START_TEST(each_across_pages_while_writing)
{
    for (int i = 0; i < 23; i++) {
        char name[16];
        snprintf(name, sizeof(name), "e%02d", i);
        free(put_group(SUB, "each", name));
    }
    json_t *seen = json_object();
    st_list_query_t q = {.type = GROUPS, .resource_group = "each", .limit = 5};
    sbx_error_t err = {0};
    ck_assert_int_eq(st_resource_each(db, &q, count_and_delete, seen, &err), 0);
    ck_assert_uint_eq(json_object_size(seen), 23);
    json_decref(seen);
    size_t left = 99;
    _cleanup_free_ char *probe = group_id(SUB, "each", "e07");
    ck_assert(!exists(probe));
    ck_assert_int_eq(st_resource_count(db, GROUPS, NULL, &left, &err), 0);
    ck_assert_uint_eq(left, 0);
}
END_TEST

static void put_op(const char *id, const char *status, int64_t start, int64_t next_attempt);

/* The lookups by value the scheduler and the API use.  */
START_TEST(lookups_by_value)
{
    const char *t = "microsoft.app/sandboxgroups/sandboxes";
    _cleanup_free_ char *g = group_id(SUB, "look", "g");
    _cleanup_free_ char *a = xasprintf("%s/sandboxes/a", g), *b = xasprintf("%s/sandboxes/b", g);
    put_placed(a, "look", g, "h1", "rid-a");
    put_placed(b, "look", g, "h2", "rid-b");
    sbx_error_t err = {0};
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-a", &err), 1);
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-c", &err), 0);
    ck_assert_int_eq(st_resource_delete_by_host(db, t, "h1", &err), 0);
    ck_assert(!exists(a));
    ck_assert(exists(b));

    put_op("op-done", "Succeeded", 1000, 0);
    put_op("op-running", "InProgress", 2000, 0);
    char id[37];
    ck_assert_int_eq(st_operation_find(db, "/subscriptions/x/r", "create", "InProgress", id, &err),
                     1);
    ck_assert_str_eq(id, "op-running");
    ck_assert_int_eq(st_operation_find(db, "/subscriptions/x/r", "delete", "InProgress", id, &err),
                     0);
    ck_assert_int_eq(st_operations_sweep(db, 5000, &err), 0);
    st_operation_t op = {0};
    ck_assert_int_eq(st_operation_get(db, "op-done", &op, &err), -1);
    ck_assert_int_eq(st_operation_get(db, "op-running", &op, &err), 0);
    st_operation_done(&op);
}
END_TEST

/* A lookup that storage cannot answer says so (-1 with an error), rather
 * than "absent", on which the reconciler would destroy a live sandbox.  */
START_TEST(lookups_by_value_report_errors)
{
    _cleanup_free_ char *g = group_id(SUB, "lookerr", "g");
    _cleanup_free_ char *a = xasprintf("%s/sandboxes/a", g);
    put_placed(a, "lookerr", g, "h1", "rid-e");
    sbx_error_t err = {0};
    /* A storage failure (busy, I/O) on the lookup the reconciler makes.  */
    st_fault_inject(db, "runtime_id =");
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-e", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_UNAVAILABLE);
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-none", NULL), -1);
    st_fault_inject(db, "FROM operations");
    char id[37] = "x";
    ck_assert_int_eq(st_operation_find(db, "/subscriptions/x/r", "create", "InProgress", id, NULL),
                     -1);
    ck_assert_str_eq(id, "");
    st_fault_inject(db, NULL);
    ck_assert_int_eq(st_resource_runtime_id_exists(db, "rid-e", &err), 1);
}
END_TEST

START_TEST(list_filters_and_paging)
{
    /* 23 groups in sub A (rg1: 13, rg2: 10) and 4 in sub B.  */
    const char *sub_b = "00000000-aaaa-bbbb-cccc-00000000000b";
    for (int i = 0; i < 23; i++) {
        char name[16];
        snprintf(name, sizeof(name), i % 3 ? "g%02d" : "G%02d", i);
        free(put_group(SUB, i < 13 ? "rg1" : "RG2", name));
    }
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "b%d", i);
        free(put_group(sub_b, "rg1", name));
    }
    /* A child is not a group.  */
    _cleanup_free_ char *g0 = group_id(SUB, "rg1", "G00");
    _cleanup_free_ char *v = xasprintf("%s/vnetConnections/v", g0);
    free(put(v, VNETS, "v", SUB, "rg1", g0, NULL, NULL));

    size_t limits[] = {1, 5, 13, 22, 23, 100};
    for (size_t i = 0; i < ARRAY_SIZE(limits); i++) {
        json_t *names = json_object();
        ck_assert_uint_eq(
            list_all((st_list_query_t){.type = GROUPS, .subscription = SUB}, limits[i], names), 23);
        json_decref(names);
    }
    json_t *names = json_object();
    ck_assert_uint_eq(
        list_all((st_list_query_t){.type = GROUPS, .subscription = SUB, .resource_group = "rg2"}, 4,
                 names),
        10);
    json_decref(names);
    names = json_object();
    ck_assert_uint_eq(
        list_all((st_list_query_t){.type = "Microsoft.App/SandboxGroups",
                                   .subscription = "00000000-AAAA-BBBB-CCCC-00000000000B",
                                   .resource_group = "RG1"},
                 2, names),
        4);
    json_decref(names);
    names = json_object();
    ck_assert_uint_eq(list_all((st_list_query_t){.type = GROUPS}, 7, names), 27);
    json_decref(names);
    names = json_object();
    ck_assert_uint_eq(list_all((st_list_query_t){.type = VNETS, .parent_id = g0}, 10, names), 1);
    json_decref(names);
    names = json_object();
    ck_assert_uint_eq(
        list_all((st_list_query_t){.type = GROUPS, .subscription = "nobody"}, 10, names), 0);
    json_decref(names);

    size_t n = 0;
    sbx_error_t err = {0};
    ck_assert_int_eq(st_resource_count(db, GROUPS, NULL, &n, &err), 0);
    ck_assert_uint_eq(n, 27);
    ck_assert_int_eq(st_resource_count(db, VNETS, g0, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(st_resource_count(db, VNETS, "/nothing", &n, &err), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(list_by_host)
{
    _cleanup_free_ char *g = group_id(SUB, "rg", "g");
    free(put_group(SUB, "rg", "g"));
    for (int i = 0; i < 6; i++) {
        char name[8];
        snprintf(name, sizeof(name), "s%d", i);
        _cleanup_free_ char *id = xasprintf("%s/sandboxes/%s", g, name);
        free(put(id, SANDBOXES, name, SUB, "rg", g, i % 2 ? "host-a" : "host-b", NULL));
    }
    json_t *names = json_object();
    ck_assert_uint_eq(list_all((st_list_query_t){.type = SANDBOXES, .host_id = "host-a"}, 2, names),
                      3);
    ck_assert_ptr_nonnull(json_object_get(names, "s1"));
    ck_assert_ptr_null(json_object_get(names, "s0"));
    json_decref(names);
}
END_TEST

START_TEST(delete_children_only_descendants)
{
    sbx_error_t err = {0};
    /* Names chosen so that a prefix match would take siblings along:
     * "g1" vs "g10", "g1-x", "g1.x".  */
    const char *groups[] = {"g1", "g10", "g1-x", "g1.x", "g0"};
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++) {
        _cleanup_free_ char *gid = group_id(SUB, "rg", groups[i]);
        free(put_group(SUB, "rg", groups[i]));
        _cleanup_free_ char *child = xasprintf("%s/vnetConnections/v", gid);
        free(put(child, VNETS, "v", SUB, "rg", gid, NULL, NULL));
        _cleanup_free_ char *sb = xasprintf("%s/sandboxes/s", gid);
        free(put(sb, SANDBOXES, "s", SUB, "rg", gid, NULL, NULL));
    }
    _cleanup_free_ char *g1 = group_id(SUB, "rg", "g1");
    /* A grandchild, too.  */
    _cleanup_free_ char *grand = xasprintf("%s/sandboxes/s/things/t", g1);
    _cleanup_free_ char *sb1 = xasprintf("%s/sandboxes/s", g1);
    free(put(grand, "microsoft.app/sandboxgroups/sandboxes/things", "t", SUB, "rg", sb1, NULL,
             NULL));

    _cleanup_free_ char *upper = xstrdup(g1);
    sbx_str_lower(upper);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z')
            *c = (char)(*c - 'a' + 'A');
    st_tx_t *tx = st_begin(db, &err);
    ck_assert_int_eq(st_tx_resource_delete_children(tx, upper, &err), 0);
    ck_assert_int_eq(st_tx_resource_delete(tx, upper, &err), 0);
    ck_assert_int_eq(st_commit(tx, &err), 0);

    ck_assert(!exists(g1));
    ck_assert(!exists(sb1));
    ck_assert(!exists(grand));
    _cleanup_free_ char *v1 = xasprintf("%s/vnetConnections/v", g1);
    ck_assert(!exists(v1));
    for (size_t i = 1; i < ARRAY_SIZE(groups); i++) {
        _cleanup_free_ char *gid = group_id(SUB, "rg", groups[i]);
        _cleanup_free_ char *child = xasprintf("%s/vnetConnections/v", gid);
        _cleanup_free_ char *sb = xasprintf("%s/sandboxes/s", gid);
        ck_assert_msg(exists(gid) && exists(child) && exists(sb), "%s lost its tree", groups[i]);
    }
    /* Deleting what is not there is fine.  */
    tx = st_begin(db, &err);
    ck_assert_int_eq(st_tx_resource_delete(tx, g1, &err), 0);
    ck_assert_int_eq(st_tx_resource_delete_children(tx, g1, &err), 0);
    ck_assert_int_eq(st_commit(tx, &err), 0);
}
END_TEST

/* ---- operations ---- */

static void put_op(const char *id, const char *status, int64_t start, int64_t next_attempt)
{
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    ck_assert_ptr_nonnull(tx);
    st_operation_t op = {.resource_id = "/subscriptions/x/r",
                         .kind = "create",
                         .status = (char *)status,
                         .location = "westeurope",
                         .subscription = SUB,
                         .start_ms = start,
                         .next_attempt_ms = next_attempt,
                         .attempts = 2};
    snprintf(op.id, sizeof(op.id), "%s", id);
    if (strcmp(status, "InProgress") != 0)
        op.end_ms = start + 1;
    ck_assert_int_eq(st_tx_operation_put(tx, &op, &err), 0);
    ck_assert_int_eq(st_commit(tx, &err), 0);
}

START_TEST(operations_due)
{
    put_op("op-late", "InProgress", 300, 0);
    put_op("op-first", "InProgress", 100, 500);
    put_op("op-future", "InProgress", 50, 5000);
    put_op("op-done", "Succeeded", 10, 0);
    put_op("op-failed", "Failed", 20, 0);
    put_op("op-second", "InProgress", 200, 1000);

    st_operation_t *ops = NULL;
    size_t n = 0;
    sbx_error_t err = {0};
    ck_assert_int_eq(st_operations_due(db, 1000, 10, &ops, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_str_eq(ops[0].id, "op-first"); /* oldest first */
    ck_assert_str_eq(ops[1].id, "op-second");
    ck_assert_str_eq(ops[2].id, "op-late");
    ck_assert_str_eq(ops[0].status, "InProgress");
    ck_assert_int_eq(ops[0].attempts, 2);
    ck_assert_int_eq(ops[0].end_ms, 0);
    st_operations_free(ops, n);

    ck_assert_int_eq(st_operations_due(db, 1000, 2, &ops, &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    st_operations_free(ops, n);
    ck_assert_int_eq(st_operations_due(db, 1000, 0, &ops, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    st_operations_free(ops, n);
    ck_assert_int_eq(st_operations_due(db, 0, 10, &ops, &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(ops[0].id, "op-late");
    st_operations_free(ops, n);

    /* Finishing one takes it out.  */
    put_op("op-first", "Succeeded", 100, 0);
    ck_assert_int_eq(st_operations_due(db, 1000, 10, &ops, &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    st_operations_free(ops, n);
}
END_TEST

START_TEST(operation_roundtrip)
{
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    st_operation_t op = {.id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                         .resource_id = "/subscriptions/S/resourceGroups/R/x",
                         .kind = "delete",
                         .status = "Failed",
                         .location = "westeurope",
                         .subscription = SUB,
                         .start_ms = 1000,
                         .end_ms = 2000,
                         .attempts = 5,
                         .next_attempt_ms = 3000};
    op.error = json_pack("{s:s,s:s,s:i}", "code", "HostDown", "message", "gone", "httpStatus", 503);
    op.payload = json_pack("{s:[i,i]}", "work", 1, 2);
    ck_assert_int_eq(st_tx_operation_put(tx, &op, &err), 0);
    st_operation_t in_tx = {0};
    ck_assert_int_eq(st_tx_operation_get(tx, op.id, &in_tx, &err), 0);
    st_operation_done(&in_tx);
    ck_assert_int_eq(st_commit(tx, &err), 0);

    st_operation_t got = {0};
    ck_assert_int_eq(st_operation_get(db, op.id, &got, &err), 0);
    ck_assert_str_eq(got.id, op.id);
    ck_assert_str_eq(got.resource_id, op.resource_id);
    ck_assert_str_eq(got.kind, "delete");
    ck_assert_str_eq(got.status, "Failed");
    ck_assert_str_eq(got.location, "westeurope");
    ck_assert_str_eq(got.subscription, SUB);
    ck_assert(json_equal(got.error, op.error));
    ck_assert(json_equal(got.payload, op.payload));
    ck_assert_int_eq(got.start_ms, 1000);
    ck_assert_int_eq(got.end_ms, 2000);
    ck_assert_int_eq(got.attempts, 5);
    ck_assert_int_eq(got.next_attempt_ms, 3000);
    st_operation_done(&got);
    st_operation_done(&got);
    json_decref(op.error);
    json_decref(op.payload);

    ck_assert_int_eq(st_operation_lookup(db, "nope", &got, &err), 0);
    ck_assert_int_eq(st_operation_get(db, "nope", &got, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_str_eq(err.arm_code, "");
}
END_TEST

START_TEST(settings)
{
    sbx_error_t err = {0};
    char *v = NULL;
    ck_assert_int_eq(st_kv_get(db, "signing_key", &v, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    for (int i = 0; i < 2; i++) {
        st_tx_t *tx = st_begin(db, &err);
        ck_assert_int_eq(st_tx_kv_put(tx, "signing_key", i ? "second" : "first", &err), 0);
        ck_assert_int_eq(st_commit(tx, &err), 0);
    }
    ck_assert_int_eq(st_kv_get(db, "signing_key", &v, &err), 0);
    ck_assert_str_eq(v, "second");
    free(v);
}
END_TEST

/* ---- hosts ---- */

START_TEST(host_registry)
{
    sbx_error_t err = {0};
    st_host_t h = {.name = "Host-B",
                   .url = "https://10.0.0.2:9443",
                   .environment = "Pool-A",
                   .state = "Ready",
                   .last_seen_ms = 1000,
                   .created_ms = 500};
    h.info = json_pack("{s:i,s:[s]}", "cpus", 8, "drivers", "process");
    ck_assert_msg(st_host_put(db, &h, &err) == 0, "%s", err.msg);
    json_decref(h.info);
    st_host_t a = {.name = "host-a",
                   .url = "https://10.0.0.1:9443",
                   .environment = "default",
                   .state = "Down"};
    ck_assert_int_eq(st_host_put(db, &a, &err), 0);

    st_host_t got = {0};
    ck_assert_int_eq(st_host_get(db, "HOST-B", &got, &err), 0);
    ck_assert_str_eq(got.name, "host-b");
    ck_assert_str_eq(got.environment, "pool-a");
    ck_assert_str_eq(got.url, "https://10.0.0.2:9443");
    ck_assert_str_eq(got.state, "Ready");
    ck_assert_int_eq(json_integer_value(json_object_get(got.info, "cpus")), 8);
    ck_assert_int_eq(got.last_seen_ms, 1000);
    ck_assert_int_eq(got.created_ms, 500);
    st_host_done(&got);

    /* An update keeps the creation time.  */
    h = (st_host_t){.name = "host-b",
                    .url = "https://10.0.0.3:9443",
                    .environment = "pool-a",
                    .state = "Draining",
                    .last_seen_ms = 2000,
                    .created_ms = 999};
    ck_assert_int_eq(st_host_put(db, &h, &err), 0);
    ck_assert_int_eq(st_host_get(db, "host-b", &got, &err), 0);
    ck_assert_str_eq(got.state, "Draining");
    ck_assert_str_eq(got.url, "https://10.0.0.3:9443");
    ck_assert_int_eq(got.created_ms, 500);
    ck_assert_int_eq(got.last_seen_ms, 2000);
    ck_assert(json_is_object(got.info));
    st_host_done(&got);

    st_host_t *all = NULL;
    size_t n = 0;
    ck_assert_int_eq(st_host_list(db, &all, &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(all[0].name, "host-a");
    ck_assert_str_eq(all[1].name, "host-b");
    st_hosts_free(all, n);

    ck_assert_int_eq(st_host_delete(db, "HOST-A", &err), 0);
    ck_assert_int_eq(st_host_get(db, "host-a", &got, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(st_host_delete(db, "host-a", &err), 0); /* again: fine */
}
END_TEST

/* A health check's report moves the state only from what it saw, and
 * never brings back a removed host.  */
START_TEST(host_health_report)
{
    sbx_error_t err = {0};
    st_host_t h = {.name = "h1",
                   .url = "https://10.0.0.1:9443",
                   .environment = "default",
                   .state = "Ready",
                   .last_seen_ms = 1000,
                   .created_ms = 500};
    ck_assert_int_eq(st_host_put(db, &h, &err), 0);
    json_t *info = json_pack("{s:i}", "cpus", 4);
    char *state = NULL;

    /* Seen Ready, still Ready: info and last_seen written.  */
    ck_assert_int_eq(st_host_report(db, "H1", info, 2000, "Ready", "Ready", &state, &err), 0);
    ck_assert_str_eq(state, "Ready");
    free(state);
    st_host_t got = {0};
    ck_assert_int_eq(st_host_get(db, "h1", &got, &err), 0);
    ck_assert_int_eq(got.last_seen_ms, 2000);
    ck_assert_int_eq(json_integer_value(json_object_get(got.info, "cpus")), 4);
    st_host_done(&got);

    /* Drained meanwhile: a report that saw Ready does not undo the drain,
     * and a failed check (no info) keeps info and last_seen.  */
    h.state = "Draining";
    ck_assert_int_eq(st_host_put(db, &h, &err), 0);
    ck_assert_int_eq(st_host_report(db, "h1", info, 3000, "Ready", "Ready", &state, &err), 0);
    ck_assert_str_eq(state, "Draining");
    free(state);
    ck_assert_int_eq(st_host_report(db, "h1", NULL, 9999, "Ready", "Down", &state, &err), 0);
    ck_assert_str_eq(state, "Draining");
    free(state);
    ck_assert_int_eq(st_host_get(db, "h1", &got, &err), 0);
    ck_assert_str_eq(got.state, "Draining");
    ck_assert_int_eq(got.last_seen_ms, 3000);
    st_host_done(&got);
    ck_assert_int_eq(st_host_report(db, "h1", NULL, 0, "Draining", "Down", &state, &err), 0);
    ck_assert_str_eq(state, "Down");
    free(state);

    /* Removed meanwhile: the report brings nothing back.  */
    ck_assert_int_eq(st_host_delete(db, "h1", &err), 0);
    ck_assert_int_eq(st_host_report(db, "h1", info, 4000, "Down", "Ready", &state, &err), 0);
    ck_assert_str_eq(state, "");
    free(state);
    ck_assert_int_eq(st_host_get(db, "h1", &got, &err), -1);
    json_decref(info);
}
END_TEST

static void count_rows(void *ud, int ncols, const char *const *cols)
{
    (*(int *)ud)++;
}

START_TEST(adhoc_queries)
{
    sbx_error_t err = {0};
    free(put_group(SUB, "rg", "q1"));
    free(put_group(SUB, "rg", "q2"));
    int rows = 0;
    const char *params[] = {GROUPS};
    ck_assert_int_eq(st_query(db, "SELECT name FROM resources WHERE type = ?1", params, 1,
                              count_rows, &rows, &err),
                     0);
    ck_assert_int_eq(rows, 2);
    /* Values are bound, never spliced.  */
    rows = 0;
    const char *evil[] = {"x' OR '1'='1"};
    ck_assert_int_eq(st_query(db, "SELECT name FROM resources WHERE type = ?1", evil, 1, count_rows,
                              &rows, &err),
                     0);
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(st_query(db, "SELECT nonsense FROM nowhere", NULL, 0, NULL, NULL, &err), -1);
    ck_assert_str_ne(err.msg, "");
    /* The pool survives the failed statement.  */
    free(put_group(SUB, "rg", "q3"));
}
END_TEST

/* ---- many writers ---- */

typedef struct writer {
    int idx;
    int ok;
} writer_t;

static void *write_many(void *arg)
{
    writer_t *w = arg;
    for (int i = 0; i < 25; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%d-%d", w->idx, i);
        _cleanup_free_ char *id = group_id(SUB, "threads", name);
        sbx_error_t err = {0};
        st_tx_t *tx = st_begin(db, &err);
        if (!tx)
            continue;
        st_resource_t r = {.id = id,
                           .type = GROUPS,
                           .name = name,
                           .subscription = SUB,
                           .resource_group = "threads",
                           .body = json_object()};
        size_t n = 0;
        int rc = st_tx_resource_count(tx, GROUPS, NULL, &n, &err);
        if (rc == 0)
            rc = st_tx_resource_put(tx, &r, &err);
        json_decref(r.body);
        if (rc == 0 && st_commit(tx, &err) == 0)
            w->ok++;
        else if (rc != 0)
            st_rollback(tx);
        /* and a read between writes */
        st_resource_t back = {0};
        if (st_resource_get(db, id, &back, &err) == 0)
            st_resource_done(&back);
    }
    return NULL;
}

START_TEST(concurrent_writers)
{
    /* More threads than connections: callers wait for one, nobody fails.  */
    st_close(db);
    sbx_error_t err = {0};
    st_options_t opts = {.pool_size = 3, .synchronous_full = true};
    db = st_open(db_path, &opts, &err);
    ck_assert_ptr_nonnull(db);
    enum { THREADS = 8 };
    pthread_t th[THREADS];
    writer_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (writer_t){.idx = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_many, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(w[i].ok, 25);
    }
    size_t n = 0;
    ck_assert_int_eq(st_resource_count(db, GROUPS, NULL, &n, &err), 0);
    ck_assert_uint_eq(n, THREADS * 25);
    _cleanup_free_ char *check = st_integrity_check(db);
    ck_assert_str_eq(check, "ok");
}
END_TEST

/* A writer that reads outside its transaction while more writers than
 * pooled connections queue behind it: the read gets a connection (the
 * queued writers hold none), so nothing stalls until the busy timeout.  */
static void *queued_writer(void *arg)
{
    int *ok = arg;
    sbx_error_t err = {0};
    st_tx_t *tx = st_begin(db, &err);
    if (tx && st_commit(tx, &err) == 0)
        *ok = 1;
    return NULL;
}

START_TEST(writer_reads_while_writers_queue)
{
    st_close(db);
    sbx_error_t err = {0};
    st_options_t opts = {.pool_size = 2};
    db = st_open(db_path, &opts, &err);
    ck_assert_ptr_nonnull(db);
    free(put_group(SUB, "rg", "g"));
    _cleanup_free_ char *id = group_id(SUB, "rg", "g");

    st_tx_t *tx = st_begin(db, &err);
    ck_assert_ptr_nonnull(tx);
    enum { WAITERS = 4 };
    pthread_t th[WAITERS];
    int ok[WAITERS] = {0};
    for (int i = 0; i < WAITERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, queued_writer, &ok[i]), 0);
    usleep(100000); /* let them queue; the assertion below does not depend on it */
    int64_t t0 = sbx_monotonic_ms();
    st_resource_t r = {0};
    ck_assert_int_eq(st_resource_get(db, id, &r, &err), 0);
    st_resource_done(&r);
    ck_assert_int_lt(sbx_monotonic_ms() - t0, 2000);
    ck_assert_int_eq(st_commit(tx, &err), 0);
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(ok[i], 1);
    }
}
END_TEST

/* Hostile bytes in ids and bodies are data, never SQL.  */
START_TEST(hostile_values_are_data)
{
    const char *name = "x'); DROP TABLE resources; --";
    _cleanup_free_ char *id = group_id(SUB, "rg", name);
    free(put(id, GROUPS, name, SUB, "rg", NULL, NULL, json_pack("{s:s}", "q", "\"'%_\\")));
    st_resource_t r = {0};
    sbx_error_t err = {0};
    ck_assert_int_eq(st_resource_get(db, id, &r, &err), 0);
    ck_assert_str_eq(r.name, name);
    ck_assert_str_eq(json_string_value(json_object_get(r.body, "q")), "\"'%_\\");
    st_resource_done(&r);
    /* A continuation token is just a key to compare with.  */
    st_list_t l = {0};
    st_list_query_t q = {.type = GROUPS, .after = "' OR 1=1 --", .limit = 5};
    ck_assert_int_eq(st_resource_list(db, &q, &l, &err), 0);
    st_list_done(&l);
    /* LIKE wildcards in a parent id match nothing extra.  */
    size_t n = 0;
    ck_assert_int_eq(st_resource_count(db, GROUPS, "%", &n, &err), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

static Suite *storage_suite(void)
{
    Suite *s = suite_create("storage");
    TCase *tc = tcase_create("storage");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, migrations_recorded_once);
    tcase_add_test(tc, old_bookkeeping_keys_become_columns);
    tcase_add_test(tc, each_across_pages_while_writing);
    tcase_add_test(tc, lookups_by_value);
    tcase_add_test(tc, lookups_by_value_report_errors);
    tcase_add_test(tc, newer_schema_refused);
    tcase_add_test(tc, open_failures);
    tcase_add_test(tc, put_get_roundtrip);
    tcase_add_test(tc, etag_changes_on_every_write);
    tcase_add_test(tc, tx_rollback_leaves_nothing);
    tcase_add_test(tc, list_filters_and_paging);
    tcase_add_test(tc, list_by_host);
    tcase_add_test(tc, delete_children_only_descendants);
    tcase_add_test(tc, operations_due);
    tcase_add_test(tc, operation_roundtrip);
    tcase_add_test(tc, settings);
    tcase_add_test(tc, host_registry);
    tcase_add_test(tc, host_health_report);
    tcase_add_test(tc, adhoc_queries);
    tcase_add_test(tc, concurrent_writers);
    tcase_add_test(tc, writer_reads_while_writers_queue);
    tcase_add_test(tc, hostile_values_are_data);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(storage_suite());
}
