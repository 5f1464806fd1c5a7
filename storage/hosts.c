/* hosts.c -- the host registry table, and the lookups by value the
 * scheduler and the API need.  Few rows, rarely written, so plain
 * statements through st_query are enough.  */
#include "storage/internal.h"

#include <stdio.h>
#include <string.h>

void st_host_done(st_host_t *h)
{
    if (!h)
        return;
    free(h->name);
    free(h->url);
    free(h->environment);
    free(h->state);
    json_decref(h->info);
    memset(h, 0, sizeof(*h));
}

void st_hosts_free(st_host_t *hosts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_host_done(&hosts[i]);
    free(hosts);
}

int st_host_put(st_db_t *db, const st_host_t *h, sbx_error_t *err)
{
    char seen[24], created[24];
    snprintf(seen, sizeof(seen), "%lld", (long long)h->last_seen_ms);
    snprintf(created, sizeof(created), "%lld",
             (long long)(h->created_ms ? h->created_ms : sbx_now_ms()));
    _cleanup_free_ char *info = h->info ? json_dumps(h->info, JSON_COMPACT) : xstrdup("{}");
    const char *params[] = {h->name, h->url, h->environment, h->state, info, seen, created};
    return st_query(db,
                    "INSERT INTO hosts (name, url, environment, state, info, last_seen_ms,"
                    " created_ms) VALUES (lower(?1), ?2, lower(?3), ?4, ?5, ?6, ?7)"
                    " ON CONFLICT(name) DO UPDATE SET url = excluded.url,"
                    " environment = excluded.environment, state = excluded.state,"
                    " info = excluded.info, last_seen_ms = excluded.last_seen_ms",
                    params, ARRAY_SIZE(params), NULL, NULL, err);
}

static void on_state_row(void *ud, int ncols, const char *const *c)
{
    char **state = ud;
    if (ncols >= 1 && c[0] && !*state)
        *state = xstrdup(c[0]);
}

int st_host_report(st_db_t *db, const char *name, const json_t *info, int64_t last_seen_ms,
                   const char *was, const char *next, char **state_out, sbx_error_t *err)
{
    char seen[24];
    snprintf(seen, sizeof(seen), "%lld", (long long)last_seen_ms);
    _cleanup_free_ char *info_s = info ? json_dumps(info, JSON_COMPACT) : NULL;
    const char *params[] = {name, info_s, seen, was, next};
    char *state = NULL;
    int r = st_query(db,
                     "UPDATE hosts SET info = coalesce(?2, info),"
                     " last_seen_ms = CASE WHEN ?2 IS NULL THEN last_seen_ms ELSE ?3 END,"
                     " state = CASE WHEN state = ?4 THEN ?5 ELSE state END"
                     " WHERE name = lower(?1) RETURNING state",
                     params, ARRAY_SIZE(params), on_state_row, &state, err);
    if (r == 0 && state_out)
        *state_out = state ? state : xstrdup("");
    else
        free(state);
    return r;
}

typedef struct host_rows {
    st_host_t *items;
    size_t n, cap;
} host_rows_t;

static void on_host_row(void *ud, int ncols, const char *const *c)
{
    host_rows_t *rows = ud;
    if (ncols < 7)
        return;
    if (rows->n == rows->cap)
        rows->items =
            xrealloc(rows->items, (rows->cap = rows->cap ? rows->cap * 2 : 8) * sizeof(st_host_t));
    st_host_t *h = &rows->items[rows->n++];
    h->name = xstrdup(c[0] ? c[0] : "");
    h->url = xstrdup(c[1] ? c[1] : "");
    h->environment = xstrdup(c[2] ? c[2] : "");
    h->state = xstrdup(c[3] ? c[3] : "Down");
    h->info = c[4] ? json_loads(c[4], 0, NULL) : NULL;
    if (!h->info)
        h->info = json_object();
    h->last_seen_ms = c[5] ? strtoll(c[5], NULL, 10) : 0;
    h->created_ms = c[6] ? strtoll(c[6], NULL, 10) : 0;
}

#define HOST_COLS "name, url, environment, state, info, last_seen_ms, created_ms"

int st_host_lookup(st_db_t *db, const char *name, st_host_t *out, sbx_error_t *err)
{
    host_rows_t rows = {0};
    const char *params[] = {name};
    if (st_query(db, "SELECT " HOST_COLS " FROM hosts WHERE name = lower(?1)", params, 1,
                 on_host_row, &rows, err) < 0)
        return -1;
    if (rows.n == 0) {
        free(rows.items);
        return 0;
    }
    *out = rows.items[0];
    free(rows.items);
    return 1;
}

int st_host_get(st_db_t *db, const char *name, st_host_t *out, sbx_error_t *err)
{
    int r = st_host_lookup(db, name, out, err);
    if (r == 0)
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "No host '%s'.", name);
    return r < 0 ? -1 : 0;
}

int st_host_list(st_db_t *db, st_host_t **out, size_t *n, sbx_error_t *err)
{
    host_rows_t rows = {0};
    if (st_query(db, "SELECT " HOST_COLS " FROM hosts ORDER BY name", NULL, 0, on_host_row, &rows,
                 err) < 0) {
        st_hosts_free(rows.items, rows.n);
        return -1;
    }
    *out = rows.items;
    *n = rows.n;
    return 0;
}

int st_host_delete(st_db_t *db, const char *name, sbx_error_t *err)
{
    const char *params[] = {name};
    return st_query(db, "DELETE FROM hosts WHERE name = lower(?1)", params, 1, NULL, NULL, err);
}

/* ---- lookups by value ---- */

static void on_first_column(void *ud, int ncols, const char *const *cols)
{
    if (ncols > 0 && cols[0])
        snprintf(ud, 37, "%s", cols[0]);
}

int st_resource_runtime_id_exists(st_db_t *db, const char *runtime_id, sbx_error_t *err)
{
    char found[37] = "";
    const char *params[] = {runtime_id};
    if (st_query(db, "SELECT 1 FROM resources WHERE runtime_id = ?1 LIMIT 1", params, 1,
                 on_first_column, found, err) < 0)
        return -1;
    return found[0] != '\0';
}

int st_resource_delete_by_host(st_db_t *db, const char *type, const char *host_id, sbx_error_t *err)
{
    const char *params[] = {type, host_id};
    return st_query(db, "DELETE FROM resources WHERE type = lower(?1) AND host_id = ?2", params, 2,
                    NULL, NULL, err);
}

int st_operation_find(st_db_t *db, const char *resource_id, const char *kind, const char *status,
                      char out[37], sbx_error_t *err)
{
    const char *params[] = {resource_id, kind, status};
    out[0] = '\0';
    if (st_query(db,
                 "SELECT id FROM operations WHERE resource_id = ?1 AND kind = ?2 AND status = ?3"
                 " LIMIT 1",
                 params, 3, on_first_column, out, err) < 0) {
        out[0] = '\0';
        return -1;
    }
    return out[0] != '\0';
}

int st_operations_sweep(st_db_t *db, int64_t ended_before_ms, sbx_error_t *err)
{
    char cutoff[24];
    snprintf(cutoff, sizeof(cutoff), "%lld", (long long)ended_before_ms);
    const char *params[] = {cutoff};
    return st_query(db,
                    "DELETE FROM operations WHERE status != 'InProgress'"
                    " AND end_ms < CAST(?1 AS INTEGER)",
                    params, 1, NULL, NULL, err);
}
