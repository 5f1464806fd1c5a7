/* microvm_agent.c -- the host side of the microvm guest agent's protocol:
 * frames of a 4-byte big-endian length and a JSON object over the unix
 * socket QEMU connects to the guest's virtio-serial port, one request and
 * one reply per connection (QEMU serves one connection at a time, so
 * concurrent requests to one VM wait their turn in the socket's backlog).
 *
 * Everything the guest sends is hostile: the frame length is bounded
 * before anything is allocated, the reply must be a JSON object, every
 * member is type- and range-checked, base64 is decoded strictly and what
 * it decodes to is bounded again by what was asked for.  */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/microvm.h"

/* Replies to earlier requests skipped before one gives up.  */
#define MV_STALE_MAX 8

/* ---- frames ------------------------------------------------------------------ */

static int io_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - sbx_monotonic_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline, sbx_error_t *err)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (io_wait(fd, POLLOUT, deadline) <= 0)
                return sbx_error_set(err, SBX_ERR_TIMEOUT,
                                     "the microVM's guest agent does not "
                                     "take the request");
            continue;
        }
        if (w <= 0)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "the microVM is not running");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, char *p, size_t n, int64_t deadline, sbx_error_t *err)
{
    while (n) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (io_wait(fd, POLLIN, deadline) <= 0)
                return sbx_error_set(err, SBX_ERR_TIMEOUT,
                                     "the microVM's guest agent did not answer in time");
            continue;
        }
        if (r <= 0)
            return sbx_error_set(err, SBX_ERR_CONFLICT,
                                 "the microVM stopped before its guest agent answered");
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int agent_connect(int dirfd, sbx_error_t *err)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    /* Through the directory's fd: a state directory's path may be longer
     * than a socket address holds.  */
    snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d/" MV_AGENT_SOCK, dirfd);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "socket");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return sbx_error_set(err, SBX_ERR_CONFLICT, "the microVM is not running");
    }
    return fd;
}

/* Read past a frame of len bytes that is not for us, in pieces.  */
static int frame_skip(int fd, size_t len, int64_t deadline, sbx_error_t *err)
{
    char buf[65536];
    while (len) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        if (recv_all(fd, buf, n, deadline, err) < 0)
            return -1;
        len -= n;
    }
    return 0;
}

/* One frame that parses as a JSON object with a boolean "ok"; NULL and
 * *stale when it is a frame to skip (too large for this request).  */
static json_t *frame_read(int fd, size_t reply_max, int64_t deadline, bool *stale, sbx_error_t *err)
{
    unsigned char hdr[4];
    *stale = false;
    if (recv_all(fd, (char *)hdr, 4, deadline, err) < 0)
        return NULL;
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    if (len > MV_FRAME_MAX)
        return sbx_error_set(err, SBX_ERR_INTERNAL,
                             "the microVM's guest agent sent a frame of %zu bytes", len),
               NULL;
    if (len > reply_max) {
        *stale = frame_skip(fd, len, deadline, err) == 0;
        return NULL;
    }
    _cleanup_free_ char *body = xmalloc(len + 1);
    if (recv_all(fd, body, len, deadline, err) < 0)
        return NULL;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j) || !json_is_boolean(json_object_get(j, "ok"))) {
        json_decref(j);
        return sbx_error_set(err, SBX_ERR_INTERNAL, "the microVM's guest agent sent a bad reply"),
               NULL;
    }
    return j;
}

int mv_agent_call(int dirfd, json_t *req, size_t reply_max, int64_t deadline, json_t **reply,
                  sbx_error_t *err)
{
    /* Each request has an id the reply repeats: a reply the guest wrote
     * after an earlier caller gave up waits in the port for the next
     * connection, and is skipped.  */
    static atomic_ullong seq;
    json_int_t id = (json_int_t)(atomic_fetch_add(&seq, 1) & 0x3fffffffffffffULL);
    json_object_set_new(req, "id", json_integer(id));
    _cleanup_free_ char *text = json_dumps(req, JSON_COMPACT);
    if (!text)
        return sbx_error_set(err, SBX_ERR_INVALID, "the request cannot be encoded (not UTF-8?)");
    size_t n = strlen(text);
    if (n > MV_FRAME_MAX)
        return sbx_error_set(err, SBX_ERR_TOO_LARGE, "the request is too large for the microVM");
    _cleanup_close_ int fd = agent_connect(dirfd, err);
    if (fd < 0)
        return -1;
    unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    if (send_all(fd, (char *)hdr, 4, deadline, err) < 0 || send_all(fd, text, n, deadline, err) < 0)
        return -1;
    for (int skipped = 0; skipped <= MV_STALE_MAX; skipped++) {
        bool stale;
        json_t *j = frame_read(fd, reply_max, deadline, &stale, err);
        if (!j && !stale)
            return -1;
        json_t *jid = json_object_get(j, "id");
        if (j && json_is_integer(jid) && json_integer_value(jid) == id) {
            *reply = j;
            return 0;
        }
        json_decref(j);
    }
    return sbx_error_set(err, SBX_ERR_INTERNAL,
                         "the microVM's guest agent sent replies to no request of ours");
}

int mv_agent_error(json_t *reply, const char *op, const char *path, sbx_error_t *err)
{
    json_int_t e = json_integer_value(json_object_get(reply, "errno"));
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return sbx_error_set(err, SBX_ERR_NOT_FOUND, "%s %s: no such file or directory", op, path);
    case EISDIR: return sbx_error_set(err, SBX_ERR_INVALID, "%s %s: is a directory", op, path);
    case EACCES:
    case EPERM:
    case EROFS: return sbx_error_set(err, SBX_ERR_FORBIDDEN, "%s %s: permission denied", op, path);
    case ENOSPC:
    case EDQUOT:
        return sbx_error_arm(err, SBX_ERR_TOO_LARGE, "SandboxStorageFull",
                             "%s %s: the sandbox's disk is full", op, path);
    case EFBIG: return sbx_error_set(err, SBX_ERR_TOO_LARGE, "%s %s: too large", op, path);
    case E2BIG: return sbx_error_set(err, SBX_ERR_TOO_LARGE, "%s %s: too many entries", op, path);
    case ENOTEMPTY:
        return sbx_error_set(err, SBX_ERR_CONFLICT, "%s %s: directory not empty", op, path);
    default:
        /* The guest's words are not repeated: only a number we know.  */
        return sbx_error_set(err, SBX_ERR_INVALID, "%s %s: failed in the microVM (errno %lld)", op,
                             path, e > 0 && e < 4096 ? (long long)e : -1LL);
    }
}

/* ---- exec -------------------------------------------------------------------- */

static json_t *strv_json(char **v)
{
    json_t *a = json_array();
    for (size_t i = 0; v && v[i]; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

/* A member that is base64 of at most cap bytes; false when not.  */
static bool take_stream(json_t *r, const char *key, size_t cap, char **data, size_t *len)
{
    json_t *s = json_object_get(r, key);
    if (!json_is_string(s))
        return false;
    *data = sbx_base64_decode(json_string_value(s), json_string_length(s), cap, len);
    return *data != NULL;
}

static int exec_result(json_t *r, const rt_exec_request_t *req, size_t cap, rt_exec_result_t *out,
                       sbx_error_t *err)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        if (json_is_true(json_object_get(r, "bad_cwd")))
            return sbx_error_set(err, SBX_ERR_INVALID, "exec: cwd %s: no such directory",
                                 req->cwd ? req->cwd : "/");
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the guest agent refused the command");
    }
    json_t *code = json_object_get(r, "exit"), *sig = json_object_get(r, "signal");
    json_int_t c = json_integer_value(code), s = json_integer_value(sig);
    if (!json_is_integer(code) || !json_is_integer(sig) || c < -1 || c > 255 || s < 0 || s > 64 ||
        !json_is_boolean(json_object_get(r, "timed_out")) ||
        !take_stream(r, "stdout", cap, &out->out, &out->out_len) ||
        !take_stream(r, "stderr", cap, &out->err, &out->err_len))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "exec: the guest agent sent a bad result");
    out->timed_out = json_is_true(json_object_get(r, "timed_out"));
    out->signal = out->timed_out ? 9 : (int)s;
    out->exit_code = out->timed_out || s ? -1 : (int)c;
    out->out_truncated = json_is_true(json_object_get(r, "stdout_truncated"));
    out->err_truncated = json_is_true(json_object_get(r, "stderr_truncated"));
    return 0;
}

int mv_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req, rt_exec_result_t *out,
            sbx_error_t *err)
{
    (void)rt;
    int64_t t0 = sbx_monotonic_ms();
    size_t cap = req->output_cap ? req->output_cap : RT_DEFAULT_OUTPUT_CAP;
    if (cap > MV_OUTPUT_CAP_MAX)
        cap = MV_OUTPUT_CAP_MAX;
    int timeout = req->timeout_ms > 0 ? req->timeout_ms : RT_DEFAULT_TIMEOUT_MS;
    char **env = rt_exec_env(sb, req->env, err);
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    bool running = sb->state == RT_STATE_RUNNING;
    pthread_rwlock_unlock(&sb->lock);
    if (!env)
        return -1;
    if (!running || dirfd < 0) {
        rt_strv_free(env);
        return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", sb->id);
    }
    _cleanup_free_ char *in =
        req->stdin_data ? sbx_base64_encode(req->stdin_data, req->stdin_len) : NULL;
    json_t *r = json_pack("{s:s,s:o,s:o,s:s,s:I,s:I}", "op", "exec", "argv", strv_json(req->argv),
                          "env", strv_json(env), "cwd", req->cwd ? req->cwd : "/", "timeout_ms",
                          (json_int_t)timeout, "cap", (json_int_t)cap);
    rt_strv_free(env);
    if (!r)
        return sbx_error_set(err, SBX_ERR_INVALID, "exec: arguments and environment must be UTF-8");
    if (in)
        json_object_set_new(r, "stdin", json_string(in));
    if (req->user.set) {
        json_t *groups = json_array();
        for (unsigned i = 0; i < req->user.n_groups && i < RT_MAX_GROUPS; i++)
            json_array_append_new(groups, json_integer(req->user.groups[i]));
        json_object_set_new(r, "user",
                            json_pack("{s:I,s:I,s:o}", "uid", (json_int_t)req->user.uid, "gid",
                                      (json_int_t)req->user.gid, "groups", groups));
    }
    json_t *reply = NULL;
    /* Two base64 streams of cap bytes and the JSON around them.  */
    size_t reply_max = 2 * (4 * ((cap + 2) / 3)) + 4096;
    int ret = mv_agent_call(dirfd, r, reply_max, t0 + timeout + MV_REQUEST_SLACK_MS, &reply, err);
    json_decref(r);
    if (ret == 0)
        ret = exec_result(reply, req, cap, out, err);
    json_decref(reply);
    if (ret < 0) {
        free(TAKE_PTR(out->out));
        free(TAKE_PTR(out->err));
        return -1;
    }
    out->duration_ms = sbx_monotonic_ms() - t0;
    return 0;
}

/* ---- files ------------------------------------------------------------------- */

static int files_call(rt_sandbox_t *sb, json_t *req, size_t reply_max, json_t **reply,
                      sbx_error_t *err)
{
    if (sb->state != RT_STATE_RUNNING) {
        json_decref(req);
        return sbx_error_set(err, SBX_ERR_CONFLICT,
                             "sandbox %s is not running (a microVM's files are reached through "
                             "its guest agent)",
                             sb->id);
    }
    _cleanup_close_ int dirfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int ret = dirfd < 0 ? sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", sb->dir)
                        : mv_agent_call(dirfd, req, reply_max,
                                        sbx_monotonic_ms() + MV_REQUEST_SLACK_MS, reply, err);
    json_decref(req);
    return ret;
}

static int mv_file_open(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, uint64_t max,
                        int *fdp, uint64_t *size, sbx_error_t *err)
{
    (void)rt;
    size_t limit = max && max < MV_FILE_MAX ? (size_t)max : MV_FILE_MAX;
    json_t *reply = NULL;
    if (files_call(sb,
                   json_pack("{s:s,s:s,s:I}", "op", "read", "path", path, "max", (json_int_t)limit),
                   4 * ((limit + 2) / 3) + 4096, &reply, err) < 0)
        return -1;
    _cleanup_json_ json_t *r = reply;
    if (!json_is_true(json_object_get(r, "ok")))
        return mv_agent_error(r, "read", path, err);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (!take_stream(r, "data", limit, &data, &len))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "read %s: the guest agent sent bad data", path);
    _cleanup_close_ int fd = memfd_create("sandbox-file", MFD_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "memfd_create");
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write memfd");
        done += (size_t)w;
    }
    if (lseek(fd, 0, SEEK_SET) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "lseek");
    *size = len;
    *fdp = TAKE_FD(fd);
    return 0;
}

static int mv_file_write(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, const void *data,
                         size_t len, sbx_error_t *err)
{
    (void)rt;
    _cleanup_free_ char *enc = sbx_base64_encode(data, len);
    json_t *reply = NULL;
    if (files_call(sb, json_pack("{s:s,s:s,s:s}", "op", "write", "path", path, "data", enc), 4096,
                   &reply, err) < 0)
        return -1;
    _cleanup_json_ json_t *r = reply;
    if (!json_is_true(json_object_get(r, "ok")))
        return mv_agent_error(r, "write", path, err);
    return 0;
}

static int mv_file_remove(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, sbx_error_t *err)
{
    (void)rt;
    json_t *reply = NULL;
    if (files_call(sb, json_pack("{s:s,s:s}", "op", "delete", "path", path), 4096, &reply, err) < 0)
        return -1;
    _cleanup_json_ json_t *r = reply;
    if (!json_is_true(json_object_get(r, "ok")))
        return mv_agent_error(r, "delete", path, err);
    return 0;
}

static bool dirent_take(json_t *j, rt_dirent_t *e)
{
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *type = json_string_value(json_object_get(j, "type"));
    json_t *size = json_object_get(j, "size"), *mode = json_object_get(j, "mode"),
           *mtime = json_object_get(j, "mtime_ms");
    if (!name || !type || !json_is_integer(size) || !json_is_integer(mode) ||
        !json_is_integer(mtime) || !name[0] || strlen(name) > 255 || strchr(name, '/') ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || json_integer_value(size) < 0 ||
        json_integer_value(mode) < 0 || json_integer_value(mode) > 07777 ||
        (strcmp(type, "file") && strcmp(type, "dir") && strcmp(type, "symlink") &&
         strcmp(type, "other")))
        return false;
    e->name = xstrdup(name);
    snprintf(e->type, sizeof e->type, "%s", type);
    e->size = (uint64_t)json_integer_value(size);
    e->mode = (unsigned)json_integer_value(mode);
    e->modified_ms = json_integer_value(mtime);
    return true;
}

#define MV_LIST_MAX 100000

static int mv_file_list(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, rt_dirent_t **out,
                        size_t *n, sbx_error_t *err)
{
    (void)rt;
    json_t *reply = NULL;
    if (files_call(sb, json_pack("{s:s,s:s}", "op", "list", "path", path), MV_FRAME_MAX, &reply,
                   err) < 0)
        return -1;
    _cleanup_json_ json_t *r = reply;
    if (!json_is_true(json_object_get(r, "ok")))
        return mv_agent_error(r, "list", path, err);
    json_t *arr = json_object_get(r, "entries");
    if (!json_is_array(arr) || json_array_size(arr) > MV_LIST_MAX)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "list %s: the guest agent sent a bad list",
                             path);
    size_t count = json_array_size(arr);
    rt_dirent_t *ents = xcalloc(count ? count : 1, sizeof *ents);
    for (size_t i = 0; i < count; i++)
        if (!dirent_take(json_array_get(arr, i), &ents[i])) {
            rt_dirents_free(ents, i);
            return sbx_error_set(err, SBX_ERR_INTERNAL, "list %s: the guest agent sent a bad entry",
                                 path);
        }
    *out = ents;
    *n = count;
    return 0;
}

const rt_driver_files_t mv_files = {
    .open = mv_file_open,
    .write = mv_file_write,
    .remove = mv_file_remove,
    .list = mv_file_list,
    .write_max = MV_FILE_MAX,
};
