/* microvm_qmp.c -- the few QEMU monitor (QMP) commands the microvm driver
 * needs for memory snapshots: stop, hand over a file descriptor, migrate to
 * it and wait for the end; query the run state and continue.
 *
 * QEMU runs what the guest makes it do, so its replies are bounded (one
 * line, at most QMP_LINE_MAX bytes), parsed as JSON and checked before use;
 * every wait has a deadline.  One connection per command sequence, over
 * the socket QEMU listens on in the sandbox's directory.  */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/microvm.h"

#define QMP_LINE_MAX 65536

struct mv_qmp {
    int fd;
    char buf[QMP_LINE_MAX];
    size_t len;
};

void mv_qmp_close(mv_qmp_t *q)
{
    if (!q)
        return;
    if (q->fd >= 0)
        close(q->fd);
    free(q);
}

/* The next line QEMU sends, as a JSON object (events included).  */
static json_t *qmp_line(mv_qmp_t *q, int64_t deadline, sbx_error_t *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            size_t n = (size_t)(nl - q->buf);
            json_t *j = json_loadb(q->buf, n, 0, NULL);
            memmove(q->buf, nl + 1, q->len - n - 1);
            q->len -= n + 1;
            if (!json_is_object(j)) {
                json_decref(j);
                return sbx_error_set(err, SBX_ERR_INTERNAL, "QEMU's monitor sent a bad line"), NULL;
            }
            return j;
        }
        if (q->len == sizeof q->buf)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "QEMU's monitor sent too long a line"),
                   NULL;
        int64_t left = deadline - sbx_monotonic_ms();
        struct pollfd p = {.fd = q->fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left > 1000 ? 1000 : (int)left) < 0) {
            if (left <= 0)
                return sbx_error_set(err, SBX_ERR_TIMEOUT, "QEMU's monitor did not answer"), NULL;
            continue;
        }
        if (!p.revents)
            continue;
        ssize_t r = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
        if (r <= 0)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "QEMU's monitor closed"), NULL;
        q->len += (size_t)r;
    }
}

/* Send cmd (with fd passed alongside when >= 0) and wait for its reply,
 * skipping events; the "return" member (a new reference) or an error.  */
json_t *mv_qmp_cmd(mv_qmp_t *q, const char *cmd, json_t *args, int pass_fd, int64_t deadline,
                   sbx_error_t *err)
{
    json_t *msg = json_pack("{s:s}", "execute", cmd);
    if (args)
        json_object_set_new(msg, "arguments", args);
    _cleanup_free_ char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "QMP %s: cannot encode", cmd), NULL;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room: its NUL */
    struct iovec iov = {.iov_base = text, .iov_len = n + 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (pass_fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    if (sendmsg(q->fd, &mh, MSG_NOSIGNAL) != (ssize_t)(n + 1))
        return sbx_error_errno(err, SBX_ERR_CONFLICT, "QMP %s", cmd), NULL;
    for (;;) {
        json_t *j = qmp_line(q, deadline, err);
        if (!j)
            return NULL;
        json_t *ret = json_object_get(j, "return");
        if (ret) {
            json_incref(ret);
            json_decref(j);
            return ret;
        }
        json_t *e = json_object_get(j, "error");
        if (e) {
            const char *desc = json_string_value(json_object_get(e, "desc"));
            sbx_error_set(err, SBX_ERR_INTERNAL, "QMP %s: %.200s", cmd, desc ? desc : "failed");
            json_decref(j);
            return NULL;
        }
        json_decref(j); /* an event */
    }
}

mv_qmp_t *mv_qmp_open(int dirfd, int64_t deadline, sbx_error_t *err)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/" MV_QMP_SOCK, dirfd);
    mv_qmp_t *q = xcalloc(1, sizeof *q);
    q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (q->fd < 0 || connect(q->fd, (struct sockaddr *)&a, sizeof a) < 0) {
        sbx_error_set(err, SBX_ERR_CONFLICT, "the microVM is not running");
        mv_qmp_close(q);
        return NULL;
    }
    json_t *greeting = qmp_line(q, deadline, err);
    bool ok = greeting && json_object_get(greeting, "QMP");
    json_decref(greeting);
    json_t *r = ok ? mv_qmp_cmd(q, "qmp_capabilities", NULL, -1, deadline, err) : NULL;
    if (!r) {
        if (ok || !err || !err->msg[0])
            sbx_error_set(err, SBX_ERR_INTERNAL, "QEMU's monitor did not greet");
        mv_qmp_close(q);
        return NULL;
    }
    json_decref(r);
    return q;
}

/* A string member of a query's reply, copied into out.  */
int mv_qmp_query(mv_qmp_t *q, const char *cmd, const char *key, char *out, size_t len,
                 int64_t deadline, sbx_error_t *err)
{
    json_t *r = mv_qmp_cmd(q, cmd, NULL, -1, deadline, err);
    if (!r)
        return -1;
    const char *v = json_string_value(json_object_get(r, key));
    snprintf(out, len, "%s", v ? v : "");
    json_decref(r);
    return 0;
}
