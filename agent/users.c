/* users.c -- the user a command runs as (`user` of an exec or a process):
 * a name or a uid, resolved from the sandbox's own /etc/passwd and
 * /etc/group, read inside its root (never the host's), into the uid, gid
 * and supplementary groups the exec helper switches to.  */
#include "agent/internal.h"

#include <stdio.h>
#include <string.h>

#define ACCOUNTS_MAX (4u << 20) /* larger account files are refused */
#define MAX_NAME 32
#define MAX_ID 65535 /* the sandbox's user namespace maps 0..65535 */

typedef struct account {
    char name[MAX_NAME + 1];
    long uid, gid;
    char home[256];
} account_t;

static bool name_valid(const char *s, size_t n)
{
    if (n == 0 || n > MAX_NAME || strlen(s) != n || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || (c == '$' && i == n - 1)))
            return false;
    }
    return true;
}

static long id_value(const char *s, size_t n)
{
    long v = 0;
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* The fields of one line split at ':' (in place); how many.  */
static size_t split(char *line, char **f, size_t max)
{
    size_t n = 0;
    for (char *c = line; n < max;) {
        f[n++] = c;
        c = strchr(c, ':');
        if (!c)
            break;
        *c++ = '\0';
    }
    return n;
}

/* The passwd entry of name (or, name NULL, of uid): 1, 0 when none.  */
static int find_account(char *passwd, const char *name, long uid, account_t *out)
{
    for (char *save = NULL, *line = strtok_r(passwd, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[7];
        if (split(line, f, 7) < 4)
            continue;
        long u = id_value(f[2], strlen(f[2])), g = id_value(f[3], strlen(f[3]));
        if (u < 0 || g < 0 || (name ? strcmp(f[0], name) != 0 : u != uid))
            continue;
        snprintf(out->name, sizeof(out->name), "%s", f[0]);
        out->uid = u;
        out->gid = g;
        snprintf(out->home, sizeof(out->home), "%s", f[5] && f[5][0] == '/' ? f[5] : "/");
        return 1;
    }
    return 0;
}

/* The groups that list name as a member, besides its primary one.  */
static void add_groups(char *group, const char *name, rt_user_t *u)
{
    for (char *save = NULL, *line = strtok_r(group, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *f[4] = {0};
        if (split(line, f, 4) < 4)
            continue;
        long g = id_value(f[2], strlen(f[2]));
        if (g < 0 || g > MAX_ID || (uint32_t)g == u->gid)
            continue;
        for (char *s2 = NULL, *m = strtok_r(f[3], ",", &s2); m; m = strtok_r(NULL, ",", &s2)) {
            if (strcmp(m, name) != 0 || u->n_groups == RT_MAX_GROUPS)
                continue;
            bool seen = false;
            for (unsigned i = 0; i < u->n_groups; i++)
                seen |= u->groups[i] == (uint32_t)g;
            if (!seen)
                u->groups[u->n_groups++] = (uint32_t)g;
        }
    }
}

/* A file of the sandbox's /etc, or NULL when it has none.  */
static char *read_etc(agent_api_t *api, const char *id, const char *path, sbx_error_t *err)
{
    char *data = NULL;
    size_t len = 0;
    if (rt_file_read(api->rt, id, path, ACCOUNTS_MAX, &data, &len, err) < 0)
        return NULL;
    /* NULs would cut lines short: such a file is read as far as the first.  */
    return data;
}

static bool env_has(const agent_cmd_t *cmd, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < cmd->envc; i++)
        if (strncmp(cmd->env[i], key, n) == 0 && cmd->env[i][n] == '=')
            return true;
    return false;
}

/* HOME, USER and LOGNAME of the account, unless the request set them.  */
static void add_env(agent_cmd_t *cmd, const account_t *a)
{
    const char *keys[] = {"HOME", "USER", "LOGNAME"};
    const char *vals[] = {a->home, a->name, a->name};
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        if (env_has(cmd, keys[i]) || (i > 0 && !a->name[0]))
            continue;
        cmd->env = xrealloc(cmd->env, (cmd->envc + 2) * sizeof(char *));
        cmd->env[cmd->envc++] = xasprintf("%s=%s", keys[i], vals[i]);
        cmd->env[cmd->envc] = NULL;
    }
}

int agent_user_resolve(agent_api_t *api, const char *id, const json_t *body, agent_cmd_t *cmd,
                       rt_user_t *out, http_response_t *res)
{
    const json_t *v = json_object_get(body, "user");
    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v))
        return 0;
    const char *name = json_is_string(v) ? json_string_value(v) : NULL;
    long uid = json_is_integer(v) ? (long)json_integer_value(v) : -1;
    if (name && id_value(name, json_string_length(v)) >= 0) { /* "1000" is a uid */
        uid = id_value(name, json_string_length(v));
        name = NULL;
    }
    if (name && !name_valid(name, json_string_length(v)))
        return agent_reply_invalid(res, "user must be a user name of the sandbox or a uid"), -1;
    if (!name && (uid < 0 || uid > MAX_ID))
        return agent_reply_invalid(res, "user must be a user name or a uid 0..%d", MAX_ID), -1;
    if ((name && strcmp(name, "root") == 0) || uid == 0)
        return 0; /* what commands run as anyway */
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return agent_reply_error(res, &err, id), -1;
    _cleanup_free_ char *passwd = read_etc(api, id, "/etc/passwd", &err);
    if (!passwd && err.code != SBX_ERR_NOT_FOUND)
        return agent_reply_error(res, &err, id), -1;
    account_t a = {.uid = uid, .gid = 0, .home = "/"};
    int found = passwd ? find_account(passwd, name, uid, &a) : 0;
    if (name && !found) {
        http_reply_error(res, 400, "UserNotFound", "the sandbox's /etc/passwd has no user '%s'",
                         name);
        return -1;
    }
    if (a.uid > MAX_ID || a.gid > MAX_ID) {
        http_reply_error(res, 400, "UserNotFound",
                         "user '%s' has a uid or gid outside the sandbox's 0..%d", a.name, MAX_ID);
        return -1;
    }
    out->set = a.uid != 0 || a.gid != 0;
    out->uid = (uint32_t)a.uid;
    out->gid = (uint32_t)a.gid;
    if (found) {
        sbx_error_t gerr = {0};
        _cleanup_free_ char *group = read_etc(api, id, "/etc/group", &gerr);
        if (group)
            add_groups(group, a.name, out);
    }
    add_env(cmd, &a);
    return 0;
}
