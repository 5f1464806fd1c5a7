/* server.c -- the sandboxd run loop: data directory, storage, the ARM
 * layer behind authentication (auth module), the HTTP(S) front end, and a
 * clean shutdown on SIGTERM/SIGINT.  */
#include "server/server.h"

#include <ctype.h>
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
#include "server/e2b_front.h"
#include "server/routes.h"
#include "storage/storage.h"

#define MODULE_NAME "server"
/* How long a stop lets calls to hosts (a long exec, a slow file) run on.  */
#define SHUTDOWN_GRACE_MS 10000

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

/* Take group and other bits off a file or directory sandboxd keeps: one
 * left by an older version, or made by hand with a wide umask.  */
static int tighten(const char *path, mode_t want, sbx_error_t *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : sbx_error_errno(err, SBX_ERR_INTERNAL, "stat '%s'", path);
    if (S_ISLNK(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "'%s' is a symbolic link", path);
    if ((st.st_mode & 07777) == want)
        return 0;
    sbx_log(SBX_LOG_WARN, MODULE_NAME, "'%s' had mode %04o; setting %04o", path,
            (unsigned)(st.st_mode & 07777), (unsigned)want);
    if (chmod(path, want) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod '%s'", path);
    return 0;
}

/* The data directory holds the database, keys and tokens: 0700, made so
 * when it already existed with wider bits.  */
static int data_dir_prepare(const char *dir, sbx_error_t *err)
{
    if (sbx_mkdir_p(dir, 0700, err) < 0)
        return -1;
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "'%s' is not a directory", dir);
    if ((st.st_mode & 07777) != 0700) {
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "data directory '%s' had mode %04o; setting 0700", dir,
                (unsigned)(st.st_mode & 07777));
        if (chmod(dir, 0700) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod '%s'", dir);
    }
    return 0;
}

/* A token file in the data directory: read it, or create it with 32 random
 * bytes (hex) readable by the owner only.  */
int sbx_token_file(const char *dir, const char *name, char **out, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
    size_t len;
    if (tighten(path, 0600, err) < 0)
        return -1;
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

/* The key that seals secureEnv values in the database: 32 random bytes in
 * DATA_DIR/secrets.key (0600), made at the first start.  Losing it loses
 * the stored secrets, never more.  */
static int secrets_key(const char *dir, unsigned char key[API_SECRET_KEY_LEN], sbx_error_t *err)
{
    _cleanup_free_ char *hex = NULL, *path = xasprintf("%s/secrets.key", dir);
    /* A key file there is never replaced, even a short or empty one (which
     * a token file would be): a new key would make every stored secureEnv
     * unreadable without a word.  */
    struct stat st;
    bool ok = lstat(path, &st) < 0 || st.st_size >= 2 * API_SECRET_KEY_LEN;
    if (ok && sbx_token_file(dir, "secrets.key", &hex, err) < 0)
        return -1;
    ok = ok && strlen(hex) == 2 * API_SECRET_KEY_LEN;
    for (size_t i = 0; ok && i < API_SECRET_KEY_LEN; i++) {
        unsigned v;
        ok = sscanf(hex + 2 * i, "%2x", &v) == 1 && isxdigit((unsigned char)hex[2 * i]) &&
             isxdigit((unsigned char)hex[2 * i + 1]);
        key[i] = (unsigned char)v;
    }
    if (hex)
        OPENSSL_cleanse(hex, strlen(hex));
    if (!ok)
        return sbx_error_set(err, SBX_ERR_INTERNAL,
                             "%s/secrets.key is not 64 hex digits; restore it from a backup "
                             "(secureEnv values cannot be read without it)",
                             dir);
    return 0;
}

static void set_log_level(const char *level)
{
    if (!level)
        return;
    sbx_log_set_level(!strcmp(level, "debug")   ? SBX_LOG_DEBUG
                      : !strcmp(level, "warn")  ? SBX_LOG_WARN
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
    return routes_is_files_path(req->path) || routes_is_processes_path(req->path);
}

/* Slow requests are counted per token; without one (--no-auth), per client
 * address.  */
static bool client_key(void *ctx, const http_request_t *req, char *key, size_t size)
{
    return routes_client_key(ctx, req, key, size);
}

/* File uploads are passed on to the host while they arrive, never held
 * whole; an unauthenticated one is answered without reading it.  */
static bool stream_body(void *ctx, const http_request_t *req)
{
    return strcmp(req->method, "PUT") == 0 && routes_is_files_path(req->path) &&
           routes_authenticated(ctx, req);
}

static bool authenticated(void *ctx, const http_request_t *req)
{
    return routes_authenticated(ctx, req);
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
    if (data_dir_prepare(cfg->data_dir, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    /* The development token (DIR/dev-token) is a JWT the auth module
     * signs with sandboxd's own issuer key.  */
    _cleanup_free_ char *admin = NULL, *cert = NULL, *key = NULL;
    _cleanup_free_ char *dev_token = xasprintf("%s/dev-token", cfg->data_dir);
    if (tighten(dev_token, 0600, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    if (!cfg->admin_token && sbx_token_file(cfg->data_dir, "admin-token", &admin, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    unsigned char secret_key[API_SECRET_KEY_LEN];
    if (secrets_key(cfg->data_dir, secret_key, &err) < 0) {
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);
        return 1;
    }
    if (cfg->tls_cert &&
        (read_pem(cfg->tls_cert, &cert, &err) < 0 || read_pem(cfg->tls_key, &key, &err) < 0)) {
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
        .auth_token = cfg->no_auth ? NULL : cfg->auth_token,
        .admin_token = cfg->admin_token ? cfg->admin_token : admin,
        .openapi_json = sbx_openapi_json[0] ? sbx_openapi_json : NULL,
        .secret_key = secret_key,
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
        .authenticated = authenticated,
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
    e2b_front_t *e2b = NULL;
    if (cfg->e2b_listen) {
        e2b_front_config_t ec = {.cfg = cfg,
                                 .arm_port = http_server_port(http),
                                 .tls_cert = cert,
                                 .tls_key = key,
                                 /* The adapter's own calls (envd requests, already
                                  * checked against a sandbox's access token): no
                                  * static ARM token exists by default any more.  */
                                 .arm_token = rcfg.admin_token,
                                 .secret_key = secret_key};
        e2b = e2b_front_start(&ec, &err);
        if (!e2b)
            sbx_log(SBX_LOG_ERROR, MODULE_NAME, "E2B API: %s", err.msg);
    }
    if (routes_start_background(routes, &err) < 0)
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "%s", err.msg);

    int sig = wait_for_signal();
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "signal %d: shutting down", sig);
    /* In-flight requests finish first, but none waits on a sandbox for
     * longer than the grace: a long exec is answered 503 and goes on.  */
    routes_shutdown_begin(routes, SHUTDOWN_GRACE_MS);
    /* The E2B front goes first: it is a client of the ARM listener.  */
    e2b_front_shutdown_begin(e2b);
    e2b_front_stop(e2b);
    http_server_stop(http);
    routes_free(routes);
    st_close(db);
    OPENSSL_cleanse(secret_key, sizeof(secret_key));
    sbx_log(SBX_LOG_INFO, MODULE_NAME, "stopped cleanly");
    return 0;
}
