/* internal.h -- what the files of the agent's API share: the API object,
 * reply and validation helpers, and one entry point per area (sandboxes.c,
 * exec.c, files.c, processes.c), all routed by api.c.  */
#ifndef SBX_AGENT_INTERNAL_H
#define SBX_AGENT_INTERNAL_H

#include <pthread.h>

#include "agent/agent.h"

#define AGENT_MODULE "agent"
#define AGENT_MAX_PATH_LEN 4096

typedef struct agent_procs agent_procs_t;

struct agent_api {
    rt_runtime_t *rt;
    img_store_t *img;
    egress_t *egress;
    char *egress_pool, *egress_unavailable; /* agent_api_config_t's */
    agent_imds_server_t *imds;
    char *environment;
    agent_procs_t *procs;
    /* Ids with a create or delete under way: those serialise per id, so a
     * retried PUT waits for the first instead of racing it.  */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char **busy;
    size_t n_busy, cap_busy;
};

/* ---- helpers (helpers.c) ---- */

/* A JSON string of arbitrary bytes, made valid UTF-8 (U+FFFD for every
 * ill-formed sequence).  */
json_t *agent_json_text(const char *s, size_t len);
json_t *agent_json_cstr(const char *s);
json_t *agent_json_time(int64_t ms);
bool agent_json_plain(const json_t *v); /* a string without NULs */
void agent_reply_invalid(http_response_t *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Reply with an error from the runtime or image store; an unknown id is
 * SandboxNotFound.  Server-side failures are logged.  */
void agent_reply_error(http_response_t *res, sbx_error_t *err, const char *what);
/* `env` must be an object of plain strings with shell-style names.
 * Replies 400 and returns -1 otherwise.  */
int agent_check_env(const json_t *env, http_response_t *res);
/* A JSON object from the request body; an empty body counts as {} where
 * `empty_ok`.  Replies 400 and returns NULL otherwise.  */
json_t *agent_parse_object(const agent_call_t *c, bool empty_ok, http_response_t *res);

/* ---- sandboxes (sandboxes.c) ---- */

void agent_health(agent_api_t *api, http_response_t *res);
void agent_sandboxes_list(agent_api_t *api, http_response_t *res);
void agent_sandbox_get(agent_api_t *api, const char *id, http_response_t *res);
void agent_sandbox_put(agent_api_t *api, const char *id, const agent_call_t *c,
                       http_response_t *res);
void agent_sandbox_delete(agent_api_t *api, const char *id, http_response_t *res);
void agent_sandbox_action(agent_api_t *api, const char *id, const char *action,
                          http_response_t *res);

/* ---- egress (egress_hooks.c) ---- */

/* health's "egress": {"enforced", "pool", "unavailable"}.  */
json_t *agent_egress_health(const agent_api_t *api);
/* A sandbox given a policy on an agent without egress says so in its
 * message (the scheduler shows it as statusMessage).  */
void agent_egress_note(const agent_api_t *api, const json_t *policy, bool identity,
                       rt_info_t *info);
/* A sandbox that may use an identity: IDENTITY_ENDPOINT and IDENTITY_HEADER
 * in its env (spec's "env", made when missing).  Nothing when this agent
 * has no identity endpoint.  */
void agent_identity_prepare(agent_api_t *api, const char *id, json_t *spec, bool identity);

/* ---- exec (exec.c) ---- */

/* A command's argv and env as parsed from a request body.  */
typedef struct agent_cmd {
    char **argv, **env;
    size_t argc, envc;
    const char *cwd; /* points into the body; "/" by default */
} agent_cmd_t;
void agent_cmd_done(agent_cmd_t *c);
/* command, env and cwd of body into *cmd; replies 400 and returns -1 on
 * anything malformed.  */
int agent_cmd_parse(const json_t *body, agent_cmd_t *cmd, http_response_t *res);
/* body's "user" (a name or a uid of the sandbox) into *out, from the
 * sandbox's own /etc/passwd and /etc/group; adds HOME, USER and LOGNAME
 * to cmd's env unless set.  Replies 400 and returns -1 on a bad or unknown
 * user (users.c).  */
int agent_user_resolve(agent_api_t *api, const char *id, const json_t *body, agent_cmd_t *cmd,
                       rt_user_t *out, http_response_t *res);
void agent_exec(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res);

/* With Accept: text/event-stream, the exec runs as a process streamed
 * from its start to its end (processes.c).  */
bool agent_wants_events(const agent_call_t *c);
void agent_exec_stream(agent_api_t *api, const char *id, const json_t *body, http_response_t *res);

/* ---- processes (processes.c, over procs.c) ---- */

agent_procs_t *agent_procs_new(rt_runtime_t *rt);
void agent_procs_free(agent_procs_t *m);
void agent_procs_forget(agent_procs_t *m, const char *sandbox);
/* /v1/sandboxes/{id}/processes[/{pid}[/{action}]]: pid and action are ""
 * when absent.  */
void agent_processes(agent_api_t *api, const char *id, const char *pid, const char *action,
                     const agent_call_t *c, http_response_t *res);

/* ---- files (files.c) ---- */

void agent_files(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res);
/* watch.c: GET .../watch?path=&recursive=, a directory's changes as events. */
void agent_watch(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res);

#endif
