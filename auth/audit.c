/* audit.c -- the audit log, DIR/audit.log (0600): one JSON line for every
 * request that changes something or tried to (who, what, when, outcome)
 * and for every token issued (to whom, for what audience, until when).
 * Each line goes out in one append, so lines from threads never mix.  */
#include "auth/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

int audit_open(auth_t *a, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/audit.log", a->data_dir);
    a->audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (a->audit_fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", path);
    return 0;
}

void audit_close(auth_t *a)
{
    if (a->audit_fd >= 0)
        close(a->audit_fd);
    a->audit_fd = -1;
}

void audit_write(auth_t *a, json_t *line)
{
    char when[32];
    sbx_time_format(sbx_now_ms(), when, sizeof(when));
    json_object_set_new(line, "time", json_string(when));
    char *text = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text || a->audit_fd < 0) {
        free(text);
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n';
    pthread_mutex_lock(&a->audit_lock);
    ssize_t w = write(a->audit_fd, text, n + 1);
    pthread_mutex_unlock(&a->audit_lock);
    if (w != (ssize_t)(n + 1))
        sbx_log(SBX_LOG_ERROR, MODULE_NAME, "audit log write failed: %s",
                w < 0 ? strerror(errno) : "short write");
    free(text);
}

static json_t *who(const auth_principal_t *p)
{
    static const char *const kinds[] = {"none", "jwt", "static-token", "admin-token", "anonymous"};
    json_t *o = json_pack("{s:s}", "kind", kinds[p ? p->kind : AUTH_NONE]);
    if (p && p->subject)
        json_object_set_new(o, "sub", json_string(p->subject));
    if (p && p->issuer)
        json_object_set_new(o, "iss", json_string(p->issuer));
    if (p && p->object_id)
        json_object_set_new(o, "oid", json_string(p->object_id));
    if (p && p->name)
        json_object_set_new(o, "name", json_string(p->name));
    return o;
}

void auth_audit_request(auth_t *a, const auth_principal_t *p, const http_request_t *req, int status)
{
    const char *outcome = status == 401   ? "unauthenticated"
                          : status == 403 ? "forbidden"
                          : status < 400  ? "succeeded"
                                          : "failed";
    /* A path is the client's: cut, and kept only when it is valid UTF-8.  */
    _cleanup_free_ char *path = xstrndup(req->path, 2048);
    json_t *line = json_pack("{s:s,s:s,s:s,s:s,s:i,s:s,s:o}", "event", "request", "requestId",
                             req->request_id, "method", req->method, "path",
                             sbx_utf8_valid(path, strlen(path)) ? path : "(not UTF-8)", "status",
                             status, "outcome", outcome, "principal", who(p));
    audit_write(a, line);
    json_decref(line);
}

void audit_token(auth_t *a, const char *kind, const json_t *claims, const char *requester)
{
    json_t *line =
        json_pack("{s:s,s:s,s:s}", "event", "token.issued", "kind", kind, "requester", requester);
    const char *keep[] = {"sub", "aud", "iss", "exp", "jti", "oid", "sbx_host"};
    for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
        json_t *v = json_object_get(claims, keep[i]);
        if (v)
            json_object_set(line, keep[i], v);
    }
    audit_write(a, line);
    json_decref(line);
}
