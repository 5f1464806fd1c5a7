/* exec.c -- the agent's one-shot exec: POST /v1/sandboxes/{id}/exec runs a
 * command to its end and answers with its exit status and output; and the
 * parsing of a command (argv, env, cwd) that processes share.  */
#include "agent/internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_ARGS 4096
#define DEFAULT_EXEC_TIMEOUT 30
#define MAX_EXEC_TIMEOUT 3600

void agent_cmd_done(agent_cmd_t *c)
{
    for (size_t i = 0; i < c->argc; i++)
        free(c->argv[i]);
    for (size_t i = 0; i < c->envc; i++)
        free(c->env[i]);
    free(c->argv);
    free(c->env);
}

int agent_cmd_parse(const json_t *body, agent_cmd_t *cmd, http_response_t *res)
{
    json_t *argv = json_object_get(body, "command"), *v;
    if (!json_is_array(argv) || json_array_size(argv) == 0 || json_array_size(argv) > MAX_ARGS)
        return agent_reply_invalid(res, "command must be an array of 1..%d strings", MAX_ARGS), -1;
    cmd->argv = xcalloc(json_array_size(argv) + 1, sizeof(char *));
    size_t i;
    json_array_foreach(argv, i, v)
    {
        if (!agent_json_plain(v))
            return agent_reply_invalid(res, "command[%zu] must be a string without NULs", i), -1;
        cmd->argv[cmd->argc++] = xstrdup(json_string_value(v));
    }
    if (!cmd->argv[0][0])
        return agent_reply_invalid(res, "command[0] must not be empty"), -1;

    json_t *env = json_object_get(body, "env");
    if (env && !json_is_null(env)) {
        if (agent_check_env(env, res) < 0)
            return -1;
        cmd->env = xcalloc(json_object_size(env) + 1, sizeof(char *));
        const char *k;
        json_object_foreach(env, k, v) cmd->env[cmd->envc++] =
            xasprintf("%s=%s", k, json_string_value(v));
    }
    cmd->cwd = "/";
    if ((v = json_object_get(body, "cwd")) && !json_is_null(v)) {
        if (!agent_json_plain(v) || json_string_value(v)[0] != '/' ||
            json_string_length(v) > AGENT_MAX_PATH_LEN)
            return agent_reply_invalid(res, "cwd must be an absolute path without NULs"), -1;
        cmd->cwd = json_string_value(v);
    }
    return 0;
}

/* Fill req from the body; reply 400 and return -1 on anything malformed.
 * req's strings point into body or cmd.  */
static int parse_exec(const json_t *body, rt_exec_request_t *req, agent_cmd_t *cmd,
                      http_response_t *res)
{
    if (agent_cmd_parse(body, cmd, res) < 0)
        return -1;
    req->argv = cmd->argv;
    req->env = cmd->env;
    req->cwd = cmd->cwd;
    json_t *v;
    if ((v = json_object_get(body, "stdin")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return agent_reply_invalid(res, "stdin must be a string"), -1;
        req->stdin_data = json_string_value(v);
        req->stdin_len = json_string_length(v);
    }
    json_int_t timeout = DEFAULT_EXEC_TIMEOUT;
    if ((v = json_object_get(body, "timeoutSeconds")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > MAX_EXEC_TIMEOUT)
            return agent_reply_invalid(res, "timeoutSeconds must be an integer 1..%d",
                                       MAX_EXEC_TIMEOUT),
                   -1;
        timeout = json_integer_value(v);
    }
    req->timeout_ms = (int)timeout * 1000;
    req->output_cap = AGENT_EXEC_OUTPUT_CAP;
    return 0;
}

static json_t *exec_result_json(const rt_exec_result_t *r)
{
    json_t *j = json_pack("{s:i,s:o,s:o,s:b,s:I,s:b,s:b}", "exitCode", r->exit_code, "stdout",
                          agent_json_text(r->out, r->out_len), "stderr",
                          agent_json_text(r->err, r->err_len), "timedOut", r->timed_out,
                          "durationMs", (json_int_t)r->duration_ms, "stdoutTruncated",
                          r->out_truncated, "stderrTruncated", r->err_truncated);
    if (j && r->signal > 0)
        json_object_set_new(j, "signal", json_integer(r->signal));
    return j;
}

void agent_exec(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res)
{
    _cleanup_json_ json_t *body = agent_parse_object(c, false, res);
    if (!body)
        return;
    if (agent_wants_events(c))
        return agent_exec_stream(api, id, body, res);
    rt_exec_request_t req = {0};
    agent_cmd_t cmd = {0};
    if (parse_exec(body, &req, &cmd, res) < 0 ||
        agent_user_resolve(api, id, body, &cmd, &req.user, res) < 0)
        return agent_cmd_done(&cmd);
    req.env = cmd.env; /* the user's HOME and USER may have been added */
    rt_exec_result_t r = {0};
    sbx_error_t err = {0};
    if (rt_exec(api->rt, id, &req, &r, &err) < 0) {
        agent_reply_error(res, &err, id);
    } else {
        json_t *j = exec_result_json(&r);
        if (j)
            http_reply_json(res, 200, j);
        else
            http_reply_error(res, 500, "InternalServerError", "cannot encode the result");
    }
    rt_exec_result_done(&r);
    agent_cmd_done(&cmd);
}
