/* procs.c -- the agent's process manager: commands started in sandboxes
 * that run on their own, each watched by a pump thread that keeps its
 * output in a bounded ring, and read by any number of attached streams.
 *
 * A process lives until it exits or is signalled, whoever is attached;
 * its record (command, times, exit status, the ring) is kept for a bounded
 * time after.  The ring holds the last PROC_RING_CAP bytes of output, both
 * streams in the order they came, each byte at an offset that only grows.
 * An attached reader that keeps up is never skipped: while one is a whole
 * ring behind, the pump stops reading the process's output, and the
 * process waits on its own writes.  A reader that takes nothing for
 * PROC_READER_STALL_MS stops holding the process back and later sees a gap.  */
#include "agent/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK_CAP (16u << 10)
#define READ_MAX (64u << 10)
/* Output read after the command's exit, for what is still in its pipes
 * (or held by something it left running).  */
#define EXIT_DRAIN_MS 200

typedef struct chunk {
    struct chunk *next;
    uint64_t off;
    uint32_t len;
    uint8_t stream;
    char data[CHUNK_CAP];
} chunk_t;

struct proc_reader {
    struct proc_reader *next;
    uint64_t off;
    int64_t progress_ms;
};

static void proc_free(proc_t *p)
{
    for (chunk_t *c = p->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    json_decref(p->command);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void proc_unref(proc_t *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1)
        proc_free(p);
}

static proc_t *proc_ref(proc_t *p)
{
    atomic_fetch_add(&p->refs, 1);
    return p;
}

/* ---- the ring ---- */

/* Under p->mu.  Appends n bytes of stream, dropping the oldest chunks
 * past the cap.  */
static void ring_append(proc_t *p, int stream, const char *d, size_t n)
{
    while (n > 0) {
        chunk_t *t = p->tail;
        if (!t || t->stream != stream || t->len == CHUNK_CAP) {
            while (p->head && p->n_chunks * CHUNK_CAP >= PROC_RING_CAP) {
                chunk_t *h = p->head;
                p->head = h->next;
                if (!p->head)
                    p->tail = NULL;
                p->n_chunks--;
                p->start = p->head ? p->head->off : p->end;
                free(h);
            }
            t = xmalloc(sizeof(*t));
            t->next = NULL;
            t->off = p->end;
            t->len = 0;
            t->stream = (uint8_t)stream;
            if (p->tail)
                p->tail->next = t;
            else
                p->head = t;
            p->tail = t;
            p->n_chunks++;
            if (!p->head->next)
                p->start = t->off;
        }
        size_t k = CHUNK_CAP - t->len < n ? CHUNK_CAP - t->len : n;
        memcpy(t->data + t->len, d, k);
        t->len += (uint32_t)k;
        p->end += k;
        d += k;
        n -= k;
    }
    pthread_cond_broadcast(&p->cv);
}

/* Under p->mu: whether reading READ_MAX more would drop bytes a reader
 * that keeps up has not taken yet.  */
static bool ring_blocked(const proc_t *p, int64_t now)
{
    size_t used = p->n_chunks * CHUNK_CAP;
    if (used + READ_MAX <= PROC_RING_CAP)
        return false;
    uint64_t dropped_to = p->start + (used + READ_MAX - PROC_RING_CAP);
    for (const proc_reader_t *r = p->readers; r; r = r->next)
        if (r->off < dropped_to && now - r->progress_ms < PROC_READER_STALL_MS)
            return true;
    return false;
}

/* Under p->mu: up to max bytes of one stream from *off on.  */
static size_t ring_take(const proc_t *p, uint64_t off, char *buf, size_t max, int *stream)
{
    size_t got = 0;
    for (const chunk_t *c = p->head; c && got < max; c = c->next) {
        if (c->off + c->len <= off + got)
            continue;
        if (got && c->stream != *stream)
            break;
        *stream = c->stream;
        size_t from = (size_t)(off + got - c->off);
        size_t k = c->len - from < max - got ? c->len - from : max - got;
        memcpy(buf + got, c->data + from, k);
        got += k;
    }
    return got;
}

/* ---- the pump: one thread a process ---- */

static void pump_read(proc_t *p, int *fd, int stream, char *buf)
{
    ssize_t n = read(*fd, buf, READ_MAX);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        *fd = -1; /* end of file (a terminal says EIO): not polled again */
        return;
    }
    pthread_mutex_lock(&p->mu);
    ring_append(p, stream, buf, (size_t)n);
    pthread_mutex_unlock(&p->mu);
}

static void pump_finish(proc_t *p, int status, bool ended)
{
    pthread_mutex_lock(&p->mu);
    rt_proc_t *rp = TAKE_PTR(p->rp);
    p->running = false;
    p->lost = !ended || status < 0;
    p->status = status < 0 ? 0 : status;
    p->ended_ms = sbx_now_ms();
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* One still running (nothing can watch it) ends; what an ended one
     * left in the background goes on.  */
    rt_proc_free(rp, true);
}

static void *pump_main(void *arg)
{
    proc_t *p = arg;
    rt_proc_t *rp = p->rp; /* only pump_finish takes it away */
    int out = rt_proc_fd(rp, RT_PROC_STDOUT), errfd = rt_proc_fd(rp, RT_PROC_STDERR);
    int stream_out = p->pty ? PROC_STREAM_PTY : PROC_STREAM_STDOUT;
    char *buf = xmalloc(READ_MAX);
    bool ended = false;
    int status = -1;
    int64_t ended_at = 0;
    for (;;) {
        int64_t now = sbx_monotonic_ms();
        pthread_mutex_lock(&p->mu);
        bool blocked = ring_blocked(p, now);
        bool stop = p->m->stopping;
        int64_t deadline = p->deadline_ms;
        pthread_mutex_unlock(&p->mu);
        if (stop)
            break;
        /* What a reader holds back is still to come: only time spent
         * reading counts against the drain.  */
        if (ended && blocked)
            ended_at = now;
        if (ended && ((out < 0 && errfd < 0) || now >= ended_at + EXIT_DRAIN_MS))
            break;
        if (!ended && deadline && now >= deadline) {
            pthread_mutex_lock(&p->mu);
            p->timed_out = true;
            p->deadline_ms = 0;
            pthread_mutex_unlock(&p->mu);
            (void)rt_proc_signal(rp, SIGKILL, NULL);
            deadline = 0;
        }
        int ev = rt_proc_fd(rp, RT_PROC_EVENTS);
        struct pollfd pfd[3] = {{.fd = blocked ? -1 : out, .events = POLLIN},
                                {.fd = blocked ? -1 : errfd, .events = POLLIN},
                                {.fd = ended ? -1 : ev, .events = POLLIN}};
        int wait = blocked ? 50 : 1000;
        if (ended && !blocked)
            wait = (int)(ended_at + EXIT_DRAIN_MS - now);
        else if (deadline && deadline - now < wait)
            wait = (int)(deadline - now);
        if (!ended && ev < 0 && !blocked && out < 0 && errfd < 0)
            wait = 50; /* the helper is being reaped by rt_proc_poll */
        int r = poll(pfd, 3, wait < 0 ? 0 : wait);
        if (r < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            pump_read(p, &out, stream_out, buf);
        if (pfd[1].revents)
            pump_read(p, &errfd, PROC_STREAM_STDERR, buf);
        if (!ended && (pfd[2].revents || ev < 0) && rt_proc_poll(rp, &status)) {
            ended = true;
            ended_at = sbx_monotonic_ms();
        }
    }
    free(buf);
    pthread_mutex_lock(&p->m->mu);
    bool stopping = p->m->stopping;
    pthread_mutex_unlock(&p->m->mu);
    if (stopping && !ended) {
        /* The agent stops: the command goes on, unwatched.  */
        pthread_mutex_lock(&p->mu);
        rt_proc_t *left = TAKE_PTR(p->rp);
        p->running = false;
        p->lost = true;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        rt_proc_free(left, false);
    } else {
        pump_finish(p, status, ended);
    }
    proc_unref(p);
    return NULL;
}

/* ---- the manager ---- */

agent_procs_t *agent_procs_new(rt_runtime_t *rt)
{
    agent_procs_t *m = xcalloc(1, sizeof(*m));
    m->rt = rt;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->idle, NULL);
    m->watching = json_object();
    return m;
}

void agent_procs_free(agent_procs_t *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = true;
    for (size_t i = 0; i < m->n; i++) {
        pthread_mutex_lock(&m->v[i]->mu);
        pthread_cond_broadcast(&m->v[i]->cv);
        pthread_mutex_unlock(&m->v[i]->mu);
    }
    /* Pumps and streams hold the manager until they are done.  */
    while (m->threads > 0)
        pthread_cond_wait(&m->idle, &m->mu);
    pthread_mutex_unlock(&m->mu);
    for (size_t i = 0; i < m->n; i++)
        proc_unref(m->v[i]);
    free(m->v);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->idle);
    json_decref(m->watching);
    free(m);
}

void agent_procs_thread_end(agent_procs_t *m)
{
    pthread_mutex_lock(&m->mu);
    if (--m->threads == 0)
        pthread_cond_broadcast(&m->idle);
    pthread_mutex_unlock(&m->mu);
}

static void *pump_thread(void *arg)
{
    proc_t *p = arg;
    agent_procs_t *m = p->m;
    pump_main(p);
    agent_procs_thread_end(m);
    return NULL;
}

/* Start fn(arg) on a detached thread counted in m->threads; under m->mu. */
int agent_procs_thread_start_locked(agent_procs_t *m, void *(*fn)(void *), void *arg)
{
    if (m->stopping)
        return -1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256u << 10);
    pthread_t t;
    int rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -1;
    m->threads++;
    return 0;
}

/* Under m->mu: drop exit records past their time, and the oldest of a
 * sandbox past PROC_MAX_EXITED.  */
static void prune_locked(agent_procs_t *m, const char *sandbox)
{
    int64_t now = sbx_now_ms();
    size_t exited = 0;
    for (size_t i = m->n; i-- > 0;) {
        proc_t *p = m->v[i];
        pthread_mutex_lock(&p->mu);
        bool running = p->running;
        int64_t ended = p->ended_ms;
        pthread_mutex_unlock(&p->mu);
        if (running)
            continue;
        bool mine = sandbox && strcmp(p->sandbox, sandbox) == 0;
        if (mine)
            exited++;
        if (now - ended > PROC_EXIT_KEEP_MS || (mine && exited > PROC_MAX_EXITED)) {
            memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
            m->n--;
            proc_unref(p);
        }
    }
}

int agent_procs_start(agent_procs_t *m, const char *sandbox, const proc_start_t *s, proc_t **out,
                      sbx_error_t *err)
{
    pthread_mutex_lock(&m->mu);
    prune_locked(m, sandbox);
    size_t running = 0;
    bool tag_taken = false;
    for (size_t i = 0; i < m->n; i++) {
        proc_t *p = m->v[i];
        if (strcmp(p->sandbox, sandbox) != 0)
            continue;
        pthread_mutex_lock(&p->mu);
        if (p->running) {
            running++;
            tag_taken |= s->tag && strcmp(p->tag, s->tag) == 0;
        }
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&m->mu);
    if (tag_taken)
        return sbx_error_arm(err, SBX_ERR_CONFLICT, "ProcessTagConflict",
                             "a running process of sandbox %s has the tag '%s'", sandbox, s->tag);
    if (running >= PROC_MAX_RUNNING)
        return sbx_error_arm(err, SBX_ERR_CONFLICT, "TooManyProcesses",
                             "sandbox %s runs %d background processes, the most it may", sandbox,
                             PROC_MAX_RUNNING);
    rt_proc_t *rp = NULL;
    if (rt_proc_start(m->rt, sandbox, &s->req, &rp, err) < 0)
        return -1;
    proc_t *p = xcalloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->m = m;
    snprintf(p->sandbox, sizeof(p->sandbox), "%s", sandbox);
    snprintf(p->tag, sizeof(p->tag), "%s", s->tag ? s->tag : "");
    p->command = json_incref(s->command);
    p->pty = s->req.pty;
    p->pid = rt_proc_pid(rp);
    p->started_ms = sbx_now_ms();
    p->running = true;
    p->rp = rp;
    if (s->timeout_ms > 0)
        p->deadline_ms = sbx_monotonic_ms() + s->timeout_ms;
    if (!s->keep_stdin)
        rt_proc_close_stdin(rp);
    pthread_mutex_lock(&m->mu);
    /* A pid the sandbox reuses replaces the exit record that had it.  */
    for (size_t i = 0; i < m->n; i++) {
        if (m->v[i]->pid == p->pid && strcmp(m->v[i]->sandbox, sandbox) == 0) {
            proc_unref(m->v[i]);
            m->v[i] = m->v[--m->n];
            break;
        }
    }
    if (m->n == m->cap)
        m->v = xrealloc(m->v, (m->cap = m->cap ? m->cap * 2 : 16) * sizeof(*m->v));
    m->v[m->n++] = proc_ref(p);
    proc_ref(p); /* the pump's */
    if (agent_procs_thread_start_locked(m, pump_thread, p) < 0) {
        pthread_mutex_unlock(&m->mu);
        proc_unref(p);
        pump_finish(p, -1, false); /* kills it */
        proc_unref(p);
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "cannot watch the process");
    }
    pthread_mutex_unlock(&m->mu);
    *out = p;
    return 0;
}

static bool is_number(const char *s)
{
    if (!*s || strlen(s) > 9)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

proc_t *agent_procs_find(agent_procs_t *m, const char *sandbox, const char *pid_or_tag)
{
    bool by_pid = is_number(pid_or_tag);
    int pid = by_pid ? atoi(pid_or_tag) : 0;
    proc_t *found = NULL;
    bool found_running = false;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->n; i++) {
        proc_t *p = m->v[i];
        if (strcmp(p->sandbox, sandbox) != 0)
            continue;
        if (by_pid ? p->pid != pid : strcmp(p->tag, pid_or_tag) != 0)
            continue;
        /* By tag: the running one, else the last started.  */
        pthread_mutex_lock(&p->mu);
        bool running = p->running;
        pthread_mutex_unlock(&p->mu);
        if (!found || (running && !found_running) ||
            (running == found_running && p->started_ms >= found->started_ms)) {
            found = p;
            found_running = running;
        }
    }
    if (found)
        proc_ref(found);
    pthread_mutex_unlock(&m->mu);
    return found;
}

proc_t **agent_procs_list(agent_procs_t *m, const char *sandbox, size_t *n)
{
    pthread_mutex_lock(&m->mu);
    prune_locked(m, sandbox);
    proc_t **v = xcalloc(m->n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i]->sandbox, sandbox) == 0)
            v[k++] = proc_ref(m->v[i]);
    pthread_mutex_unlock(&m->mu);
    *n = k;
    return v;
}

void agent_procs_forget(agent_procs_t *m, const char *sandbox)
{
    pthread_mutex_lock(&m->mu);
    for (size_t i = m->n; i-- > 0;) {
        if (strcmp(m->v[i]->sandbox, sandbox) != 0)
            continue;
        proc_unref(m->v[i]);
        memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
        m->n--;
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---- what handlers do to one process ---- */

void proc_snapshot(proc_t *p, proc_info_t *out)
{
    pthread_mutex_lock(&p->mu);
    out->pid = p->pid;
    snprintf(out->tag, sizeof(out->tag), "%s", p->tag);
    out->pty = p->pty;
    out->running = p->running;
    out->lost = p->lost;
    out->status = p->status;
    out->timed_out = p->timed_out;
    out->started_ms = p->started_ms;
    out->ended_ms = p->ended_ms;
    out->start = p->start;
    out->end = p->end;
    pthread_mutex_unlock(&p->mu);
}

/* A copy of the process's stdin fd, so a write that waits does not hold
 * the process (its pump may free the original meanwhile).  */
static int stdin_dup(proc_t *p, sbx_error_t *err)
{
    pthread_mutex_lock(&p->mu);
    int fd = -1;
    if (!p->rp)
        sbx_error_arm(err, SBX_ERR_CONFLICT, "ProcessEnded", "process %d has ended", p->pid);
    else if (rt_proc_fd(p->rp, RT_PROC_STDIN) < 0)
        sbx_error_arm(err, SBX_ERR_CONFLICT, "StdinClosed", "process %d has no stdin open", p->pid);
    else if ((fd = fcntl(rt_proc_fd(p->rp, RT_PROC_STDIN), F_DUPFD_CLOEXEC, 3)) < 0)
        sbx_error_errno(err, SBX_ERR_INTERNAL, "dup");
    pthread_mutex_unlock(&p->mu);
    return fd;
}

int proc_write_stdin(proc_t *p, const char *data, size_t n, int timeout_ms, sbx_error_t *err)
{
    if (n == 0)
        return 0;
    _cleanup_close_ int fd = stdin_dup(p, err);
    if (fd < 0)
        return -1;
    /* A process that stopped reading must not hold this call for ever.  */
    int64_t end = sbx_monotonic_ms() + timeout_ms;
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    int ret = 0;
    size_t done = 0;
    while (done < n) {
        int64_t left = end - sbx_monotonic_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            ret = sbx_error_arm(err, SBX_ERR_UNAVAILABLE, "StdinBlocked",
                                "process %d took %zu of %zu bytes and reads no more", p->pid, done,
                                n);
            break;
        }
        ssize_t w = write(fd, data + done, n - done < 65536 ? n - done : 65536);
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (w < 0) {
            ret = sbx_error_arm(err, SBX_ERR_CONFLICT, "StdinClosed", "process %d closed its stdin",
                                p->pid);
            break;
        }
        done += (size_t)w;
    }
    if (ret < 0) {
        struct timespec zero = {0, 0};
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ret;
}

int proc_close_stdin(proc_t *p, sbx_error_t *err)
{
    pthread_mutex_lock(&p->mu);
    int ret = 0;
    if (p->rp)
        rt_proc_close_stdin(p->rp);
    else
        ret = sbx_error_arm(err, SBX_ERR_CONFLICT, "ProcessEnded", "process %d has ended", p->pid);
    pthread_mutex_unlock(&p->mu);
    return ret;
}

int proc_signal(proc_t *p, int sig, sbx_error_t *err)
{
    pthread_mutex_lock(&p->mu);
    int ret = p->rp ? rt_proc_signal(p->rp, sig, err)
                    : sbx_error_arm(err, SBX_ERR_CONFLICT, "ProcessEnded", "process %d has ended",
                                    p->pid);
    pthread_mutex_unlock(&p->mu);
    if (ret < 0 && err->code == SBX_ERR_CONFLICT && !err->arm_code[0])
        snprintf(err->arm_code, sizeof(err->arm_code), "ProcessEnded");
    return ret;
}

int proc_resize(proc_t *p, unsigned rows, unsigned cols, sbx_error_t *err)
{
    pthread_mutex_lock(&p->mu);
    int ret = !p->pty ? sbx_error_arm(err, SBX_ERR_INVALID, "NoTerminal",
                                      "process %d has no terminal", p->pid)
              : p->rp ? rt_proc_resize(p->rp, (unsigned short)rows, (unsigned short)cols, err)
                      : sbx_error_arm(err, SBX_ERR_CONFLICT, "ProcessEnded", "process %d has ended",
                                      p->pid);
    pthread_mutex_unlock(&p->mu);
    return ret;
}

/* ---- readers ---- */

proc_reader_t *proc_attach(proc_t *p, uint64_t from)
{
    proc_reader_t *r = xcalloc(1, sizeof(*r));
    pthread_mutex_lock(&p->mu);
    r->off = from;
    r->progress_ms = sbx_monotonic_ms();
    r->next = p->readers;
    p->readers = r;
    pthread_mutex_unlock(&p->mu);
    return r;
}

void proc_detach(proc_t *p, proc_reader_t *r)
{
    pthread_mutex_lock(&p->mu);
    for (proc_reader_t **pp = &p->readers; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_mutex_unlock(&p->mu);
    free(r);
}

proc_next_t proc_next(proc_t *p, proc_reader_t *r, char *buf, size_t max, int wait_ms,
                      proc_item_t *it)
{
    memset(it, 0, sizeof(*it));
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    proc_next_t what = PROC_NEXT_IDLE;
    for (;;) {
        if (r->off < p->start) {
            it->from = r->off;
            it->to = p->start;
            r->off = p->start;
            what = PROC_NEXT_GAP;
            break;
        }
        if (r->off < p->end) {
            int stream = -1;
            it->len = ring_take(p, r->off, buf, max, &stream);
            it->stream = stream;
            it->from = r->off;
            r->off += it->len;
            it->to = r->off;
            what = PROC_NEXT_DATA;
            break;
        }
        if (!p->running) {
            what = PROC_NEXT_EXIT;
            break;
        }
        if (p->m->stopping)
            break;
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT)
            break;
    }
    r->progress_ms = sbx_monotonic_ms();
    pthread_mutex_unlock(&p->mu);
    return what;
}
