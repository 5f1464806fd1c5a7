/* server.c -- the sandboxd run loop: data directory, storage, the ARM
 * layer behind bearer-token authentication, the HTTP(S) front end, and a
 * clean shutdown on SIGTERM/SIGINT.  */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "http/http.h"
#include "server/routes.h"
#include "storage/storage.h"

#define MODULE_NAME "server"

extern const char sbx_openapi_json[];

static int read_pem(const char *path, char **out, sbx_error_t *err)
{
    size_t len;
    if (sbx_read_file(path, out, &len, err) < 0) {
        sbx_error_wrap(err, "TLS");
        return -1;
    }
    return 0;
}

/* A token file in the data directory: read it, or create it with 32 random
 * bytes (hex) readable by the owner only.  */
int sbx_token_file(const char *dir, const char *name, char **out, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    size_t len;
    if (sbx_read_file(path, out, &len, NULL) == 0) {
        while (len > 0 && ((*out)[len - 1] == '\n' || (*out)[len - 1] == '\r'))
            (*out)[--len] = '\0';
        if (len >= 16)
            return 0;
        free(*out);
        *out = NULL;
    }
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "no randomness for a token");
    char hex[65];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    _cleanup_free_ char *line = xasprintf("%s\n", hex);
    if (sbx_write_file_atomic(path, line, strlen(line), 0600, err) < 0)
        return -1;
    *out = xstrdup(hex);
    return 0;
}

static void set_log_level(const char *level)
{
    if (!level)
        return;
    sbx_log_set_level(!strcmp(level, "debug")  ? SBX_LOG_DEBUG
                      : !strcmp(level, "warn") ? SBX_LOG_WARN
                      : !strcmp(level, "error") ? SBX_LOG_ERROR
                                                : SBX_LOG_INFO);
}

static size_t body_limit(void *ctx, const char *method, const char *path)
{
    const routes_t *r = ctx;
    return routes_body_limit(r, method, path);
}

/* Reads are quick and run on the event threads; writes (which queue for
 * SQLite's one writer) and sandbox actions (which wait for a host) run on
 * threads of their own.  */
static bool run_apart(void *ctx, const http_request_t *req)
{
    /* An unauthenticated request is answered at once, on the event thread.  */
    if (!routes_authenticated(ctx, req))
        return false;
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
        return true;
    size_t n = strlen(req->path);
    return n >= 6 && strcasecmp(req->path + n - 6, "/files") == 0;
}

/* Slow requests are counted per token; without one (--no-auth), per client
 * address.  */
static bool client_key(void *ctx, const http_request_t *req, char *key, size_t size)
{
    const char *name = routes_token_name(ctx, req);
    if (!name)
        return false;
    snprintf(key, size, "%s", name);
    return true;
}

/* File uploads are passed on to the host while they arrive, never held
 * whole; an unauthenticated one is answered without reading it.  */
static bool stream_body(void *ctx, const http_request_t *req)
{
    size_t n = strlen(req->path);
    return strcmp(req->method, "PUT") == 0 && n >= 6 &&
           strcasecmp(req->path + n - 6, "/files") == 0 && routes_authenticated(ctx, req);
}

static void handle(void *ctx, const http_request_t *req, http_response_t *res)
{
    routes_handle(ctx, req, res);
}

static int wait_for_signal(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    return sig;
}

int sbx_server_run(const sbx_config_t *cfg)
{
    sbx_error_t err = {0};
    set_log_level(cfg->log_level);
    /* Every thread started from here on inherits the blocked signals, so
     * only sigwait below sees them.  */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The listen address as written, parsed: "127.example.com" is a name
     * that may resolve anywhere.  */
    if (cfg->no_auth && !http_listen_is_loopback(cfg->listen)) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "--no-auth is allowed on loopback addresses only");
        return 2;
    }
    if (sbx_mkdir_p(cfg->data_dir, 0700, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    _cleanup_free_ char *token = NULL, *admin = NULL, *cert = NULL, *key = NULL;
    if (!cfg->no_auth && !cfg->auth_token &&
        sbx_token_file(cfg->data_dir, "dev-token", &token, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    if (!cfg->admin_token && sbx_token_file(cfg->data_dir, "admin-token", &admin, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    if (cfg->tls_cert && (read_pem(cfg->tls_cert, &cert, &err) < 0 ||
                          read_pem(cfg->tls_key, &key, &err) < 0)) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    _cleanup_free_ char *db_path = xasprintf("%s/sandboxd.db", cfg->data_dir);
    st_options_t sopts = {.synchronous_full = cfg->sync_full};
    st_db_t *db = st_open(db_path, &sopts, &err);
    if (!db) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    routes_config_t rcfg = {
        .cfg = cfg,
        .auth_token = cfg->no_auth ? NULL : (cfg->auth_token ? cfg->auth_token : token),
        .admin_token = cfg->admin_token ? cfg->admin_token : admin,
        .openapi_json = sbx_openapi_json[0] ? sbx_openapi_json : NULL,
    };
    routes_t *routes = routes_new(&rcfg, db, &err);
    if (!routes) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        st_close(db);
        return 1;
    }
    http_config_t hcfg = {
        .name = "sandboxd",
        .listen = cfg->listen,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .max_body = cfg->max_body,
        .thread_pool = cfg->threads,
        .access_log = true,
        .body_limit = body_limit,
        .run_apart = run_apart,
        .client_key = client_key,
        .max_in_flight = cfg->max_in_flight,
        .max_in_flight_per_client = cfg->max_in_flight_per_client,
        .max_connections = cfg->max_connections,
        .max_connections_per_address = cfg->max_connections_per_address,
        .header_timeout_ms = cfg->header_timeout * 1000,
        .stream_body = stream_body,
    };
    http_server_t *http = http_server_start(&hcfg, handle, routes, &err);
    if (!http) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        routes_free(routes);
        st_close(db);
        return 1;
    }
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "sandboxd %s listening on %s://%s (port %d), data in %s",
            SBX_VERSION, cert ? "https" : "http", cfg->listen, http_server_port(http),
            cfg->data_dir);
    if (routes_start_background(routes, &err) < 0)
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);

    int sig = wait_for_signal();
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "signal %d: shutting down", sig);
    http_server_stop(http); /* in-flight requests finish first */
    routes_free(routes);
    st_close(db);
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "stopped cleanly");
    return 0;
}
