/* watch.c -- GET /v1/sandboxes/{id}/watch?path=&recursive=: a directory's
 * changes as a text/event-stream.  The directory is opened with the
 * runtime's in-root resolution and watched through /proc/self/fd/N (a path
 * would be resolved again on the host side, where a symlink the sandbox
 * planted leads anywhere); the fd is closed at once, so a watch never keeps
 * the sandbox's mounts busy.  Subdirectories of a recursive watch are
 * opened one component at a time, never following symlinks.  */
#include "agent/internal.h"
#include "agent/procs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_MAX 1024 /* directories one stream watches */
#define WATCH_STREAMS_MAX                                                                          \
    16                       /* open streams per sandbox: each holds a thread and an inotify       \
                              * instance, of which the host has few (max_user_instances) */
#define WATCH_DEPTH 16       /* levels below the watched directory */
#define WATCH_PIPE_CAP 65536 /* bytes waiting for the client */
#define WATCH_KEEPALIVE_S 15 /* a comment this often while nothing happens */
#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO |            \
     IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)

typedef struct watch {
    agent_procs_t *m; /* its thread is counted there, so shutdown waits */
    http_pipe_t *pipe;
    int ino;
    int root_wd;
    bool recursive;
    size_t n;
    json_t *dirs; /* "wd" -> path relative to the watched directory ("" for it) */
    char *sandbox, *path;
    rt_runtime_t *rt;
} watch_t;

/* Watch the directory fd (borrowed) names, as rel.  */
static int add_fd(watch_t *w, int fd, const char *rel)
{
    if (w->n >= WATCH_MAX)
        return -1;
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    int wd = inotify_add_watch(w->ino, proc, WATCH_MASK);
    if (wd < 0)
        return -1;
    char key[16];
    snprintf(key, sizeof(key), "%d", wd);
    if (!json_object_get(w->dirs, key))
        w->n++;
    json_object_set_new(w->dirs, key, json_string(rel));
    return wd;
}

static int emit_event(watch_t *w, const char *name, const char *type, bool dir);

/* The subdirectories of fd (borrowed), depth levels down.  With announce
 * (a directory made while the watch runs), what is already in it is
 * reported as created: it may have come before its watch did.  */
static void add_tree(watch_t *w, int fd, const char *rel, int depth, bool announce)
{
    if (depth >= WATCH_DEPTH)
        return;
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) && w->n < WATCH_MAX) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        bool dir = de->d_type == DT_DIR;
        if (!dir && !announce)
            continue;
        _cleanup_free_ char *r = *rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
        if (announce)
            emit_event(w, r, "create", dir);
        if (!dir)
            continue;
        int sub = openat(dirfd(d), de->d_name,
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (sub < 0)
            continue;
        if (add_fd(w, sub, r) >= 0)
            add_tree(w, sub, r, depth + 1, announce);
        close(sub);
    }
    closedir(d);
}

/* A directory made under a recursive watch: resolved again from the
 * sandbox's root, as the first one was.  */
static void add_new_dir(watch_t *w, const char *rel)
{
    _cleanup_free_ char *full = xasprintf("%s/%s", w->path, rel);
    int fd = -1;
    sbx_error_t err = {0};
    if (rt_dir_open(w->rt, w->sandbox, full, &fd, &err) < 0)
        return;
    int depth = 1;
    for (const char *p = rel; *p; p++)
        depth += *p == '/';
    if (add_fd(w, fd, rel) >= 0)
        add_tree(w, fd, rel, depth, true);
    close(fd);
}

static const char *event_type(uint32_t mask)
{
    if (mask & IN_CREATE)
        return "create";
    if (mask & (IN_DELETE | IN_DELETE_SELF))
        return "remove";
    if (mask & (IN_MOVED_FROM | IN_MOVED_TO | IN_MOVE_SELF))
        return "rename";
    if (mask & IN_ATTRIB)
        return "chmod";
    return "write";
}

static int emit(watch_t *w, const char *text)
{
    return http_pipe_write(w->pipe, text, strlen(text));
}

static int emit_event(watch_t *w, const char *name, const char *type, bool dir)
{
    json_t *j = json_pack("{s:s,s:s,s:b}", "name", name, "type", type, "isDir", dir);
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return 0;
    _cleanup_free_ char *line = xasprintf("event: fs\ndata: %s\n\n", text);
    return emit(w, line);
}

/* The events of one read: 1 when the watched directory itself is gone. */
static int handle(watch_t *w, const char *buf, ssize_t len)
{
    for (const char *p = buf; p < buf + len;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        p += sizeof(*ev) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
            if (emit(w, "event: overflow\ndata: {}\n\n") < 0)
                return -1;
            continue;
        }
        char key[16];
        snprintf(key, sizeof(key), "%d", ev->wd);
        const char *rel = json_string_value(json_object_get(w->dirs, key));
        if (!rel)
            continue;
        if (ev->mask & IN_IGNORED) {
            bool top = ev->wd == w->root_wd;
            json_object_del(w->dirs, key);
            w->n--;
            if (top)
                return 1;
            continue;
        }
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
            if (ev->wd == w->root_wd)
                return 1;
            continue; /* reported by its parent */
        }
        /* IN_CLOSE_WRITE reports a write once; a directory's events about
         * itself are its parent's to report.  */
        if ((ev->mask & IN_MODIFY) || !ev->len)
            continue;
        _cleanup_free_ char *name = *rel ? xasprintf("%s/%s", rel, ev->name) : xstrdup(ev->name);
        bool dir = ev->mask & IN_ISDIR;
        if (emit_event(w, name, event_type(ev->mask), dir) < 0)
            return -1;
        if (w->recursive && dir && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
            add_new_dir(w, name);
    }
    return 0;
}

/* Add delta to the sandbox's open watches, under m->mu; false when an
 * increment would pass the limit.  */
static bool watch_count_locked(agent_procs_t *m, const char *sandbox, int delta)
{
    json_int_t n = json_integer_value(json_object_get(m->watching, sandbox)) + delta;
    if (n > WATCH_STREAMS_MAX)
        return false;
    if (n <= 0)
        json_object_del(m->watching, sandbox);
    else
        json_object_set_new(m->watching, sandbox, json_integer(n));
    return true;
}

static void watch_count(agent_procs_t *m, const char *sandbox, int delta)
{
    pthread_mutex_lock(&m->mu);
    watch_count_locked(m, sandbox, delta);
    pthread_mutex_unlock(&m->mu);
}

static void *watch_main(void *arg)
{
    watch_t *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int quiet_s = 0, rc = emit(w, "event: start\ndata: {}\n\n");
    while (rc == 0) {
        pthread_mutex_lock(&w->m->mu);
        bool stop = w->m->stopping;
        pthread_mutex_unlock(&w->m->mu);
        if (stop)
            break;
        struct pollfd pfd = {.fd = w->ino, .events = POLLIN};
        int r = poll(&pfd, 1, 1000);
        if (r == 0) {
            if (++quiet_s >= WATCH_KEEPALIVE_S) {
                quiet_s = 0;
                rc = emit(w, ": keep-alive\n\n");
            }
            continue;
        }
        ssize_t len = r > 0 ? read(w->ino, buf, sizeof(buf)) : -1;
        if (len < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        quiet_s = 0;
        rc = handle(w, buf, len);
        if (rc == 1)
            emit(w, "event: end\ndata: {\"reason\":\"the directory is gone\"}\n\n");
    }
    http_pipe_close(w->pipe, rc == 1);
    close(w->ino);
    json_decref(w->dirs);
    free(w->path);
    agent_procs_t *m = w->m;
    watch_count(m, w->sandbox, -1);
    free(w->sandbox);
    free(w);
    agent_procs_thread_end(m);
    return NULL;
}

void agent_watch(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res)
{
    if (!c->query_path || !*c->query_path || strlen(c->query_path) != c->query_path_len)
        return http_reply_error(res, 400, "InvalidPath", "?path= names no directory");
    int fd = -1;
    sbx_error_t err = {0};
    if (rt_dir_open(api->rt, id, c->query_path, &fd, &err) < 0)
        return http_reply_sbx_error(res, &err);
    watch_t *w = xcalloc(1, sizeof(*w));
    w->m = api->procs;
    w->rt = api->rt;
    w->recursive = c->query_recursive && !strcmp(c->query_recursive, "true");
    w->dirs = json_object();
    w->sandbox = xstrdup(id);
    w->path = xstrdup(c->query_path);
    w->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    w->root_wd = w->ino >= 0 ? add_fd(w, fd, "") : -1;
    if (w->root_wd >= 0 && w->recursive)
        add_tree(w, fd, "", 0, false);
    close(fd);
    if (w->root_wd < 0) {
        int e = errno;
        if (w->ino >= 0)
            close(w->ino);
        json_decref(w->dirs);
        free(w->sandbox);
        free(w->path);
        free(w);
        return http_reply_error(res, 503, "ServiceUnavailable", "cannot watch: %s", strerror(e));
    }
    w->pipe = http_pipe_new(WATCH_PIPE_CAP);
    http_pipe_t *pipe = w->pipe; /* w may be gone once its thread runs */
    pthread_mutex_lock(&api->procs->mu);
    bool room = watch_count_locked(api->procs, id, 1);
    int rc = room ? agent_procs_thread_start_locked(api->procs, watch_main, w) : -1;
    if (room && rc < 0)
        watch_count_locked(api->procs, id, -1);
    pthread_mutex_unlock(&api->procs->mu);
    if (rc < 0) {
        http_pipe_close(pipe, false);
        http_pipe_abandon(pipe);
        close(w->ino);
        json_decref(w->dirs);
        free(w->sandbox);
        free(w->path);
        free(w);
        if (!room)
            return http_reply_error(res, 429, "TooManyWatches",
                                    "sandbox %s has %d open watches; end one first", id,
                                    WATCH_STREAMS_MAX);
        return http_reply_error(res, 503, "ServiceUnavailable", "cannot watch now");
    }
    http_reply_pipe(res, 200, "text/event-stream", HTTP_SIZE_UNKNOWN, pipe);
    http_add_header(res, "Cache-Control", "no-cache");
}
