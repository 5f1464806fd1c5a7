/* testutil.h -- helpers shared by the Check tests: temporary directories,
 * free ports, starting the real binaries, and HTTP calls with libcurl.  */
#ifndef SBX_TESTUTIL_H
#define SBX_TESTUTIL_H

#include <check.h>
#include <sys/types.h>

#include "common/common.h"

/* Run a suite (fork mode as Check's environment says) and return the
 * process exit code: 0 when every test passed.  */
int tu_run(Suite *s);

/* A fresh directory under $TMPDIR (or /tmp); removed by tu_rmdir.  */
char *tu_tmpdir(const char *prefix);
void tu_rmdir(const char *dir);
/* A loopback TCP port that was free a moment ago.  */
int tu_free_port(void);
/* Path of a built binary: $SBX_BIN_DIR/name.  */
char *tu_bin(const char *name);
/* Path inside the source tree: $SBX_SOURCE_DIR/rel.  */
char *tu_src(const char *rel);

/* Start a process (argv[0] is a path) with extra "K=V" environment entries;
 * stdout/stderr go to `log_path` when not NULL.  Returns the pid.  */
pid_t tu_spawn(char *const argv[], char *const extra_env[], const char *log_path);
/* SIGTERM, wait up to timeout_ms, then SIGKILL; returns the exit status
 * as from waitpid (or -1).  */
int tu_stop(pid_t pid, int timeout_ms);
/* Wait until a TCP connect to 127.0.0.1:port succeeds (true) or timeout.  */
bool tu_wait_port(int port, int timeout_ms);

/* tu_wait_until(cond, timeout_ms): evaluate the expression cond until it is
 * true or timeout_ms have passed, and give its last value.  The one way a
 * test waits for what another thread or process does: no fixed sleeps, no
 * loops of its own.  cond is evaluated at least once, and once more at the
 * deadline; between tries the wait grows from 10 ms to 100 ms.  Assert on
 * the result (ck_assert_msg(tu_wait_until(...), "what did not happen")).  */
#define tu_wait_until(cond, timeout_ms)                                                            \
    ({                                                                                             \
        tu_deadline_t tu_deadline_ = tu_deadline_in(timeout_ms);                                   \
        bool tu_met_;                                                                              \
        while (!(tu_met_ = (cond)) && tu_deadline_wait(&tu_deadline_))                             \
            ;                                                                                      \
        tu_met_;                                                                                   \
    })
typedef struct tu_deadline {
    int64_t end_ms;
    int step_ms;
    bool last; /* the try at the deadline was given */
} tu_deadline_t;
tu_deadline_t tu_deadline_in(int timeout_ms);
/* Sleep before the next try; false when no try is left.  */
bool tu_deadline_wait(tu_deadline_t *d);

typedef struct tu_response {
    long status;
    char *body;
    size_t body_len;
    char *headers; /* raw header block, lower-cased names kept as sent */
} tu_response_t;
void tu_response_free(tu_response_t *r);
/* Value of a response header (case-insensitive name) or NULL; owned.  */
char *tu_header(const tu_response_t *r, const char *name);

typedef struct tu_request_opts {
    const char *body;
    size_t body_len;                            /* 0: strlen(body) */
    const char *content_type;                   /* default "application/json" when body set */
    const char *const *headers;                 /* NULL-terminated "Name: value" */
    const char *ca_file, *cert_file, *key_file; /* for HTTPS */
    long timeout_ms;                            /* default 30000 */
} tu_request_opts_t;

/* One HTTP call; returns 0 when a response arrived (any status).  */
int tu_http(const char *method, const char *url, const tu_request_opts_t *opts, tu_response_t *out);
/* Parse the body as JSON (NULL if it is not).  */
json_t *tu_json(const tu_response_t *r);

/* A sandboxd started for a test: `sandboxd --listen 127.0.0.1:<free port>
 * --data-dir DIR --no-local-agent [extra...]`, its output in DIR.log.  */
typedef struct tu_server {
    pid_t pid;
    int port;
    char *data_dir; /* owned copy */
    char *token;    /* bearer token from DIR/dev-token (or --auth-token); may be NULL */
    char *base;     /* "http://127.0.0.1:<port>" */
    char *log;      /* log file path */
} tu_server_t;
/* Start it and wait until it answers (up to 20 s); retries with another
 * port when the first one was taken.  extra_args is NULL-terminated or NULL.
 * Returns 0, or -1 when it did not come up.  */
int tu_server_start(tu_server_t *s, const char *data_dir, const char *const *extra_args);
/* SIGTERM and wait (up to 20 s); returns the wait status (or -1) and
 * leaves the strings for a restart on the same data dir.  */
int tu_server_stop(tu_server_t *s);
/* SIGKILL and reap; returns the wait status.  */
int tu_server_kill(tu_server_t *s);
void tu_server_done(tu_server_t *s);

/* Tokens and roles for tests that need more than the dev token (DIR/dev-token,
 * Contributor on every subscription).  The admin token from DIR/admin-token
 * (owned; NULL when there is none).  */
char *tu_server_admin_token(const tu_server_t *s);
/* A token of sandboxd's own issuer for `subject`, minted with the admin
 * token (POST /admin/tokens); owned, NULL on failure.  */
char *tu_mint_token(const tu_server_t *s, const char *subject);
/* PUT /admin/roleAssignments/{name} with the admin token; returns the
 * HTTP status (-1 without an answer).  */
long tu_assign_role(const tu_server_t *s, const char *name, const char *principal, const char *role,
                    const char *scope);

#endif
