/* procs.h -- the agent's process manager (procs.c): background processes
 * in sandboxes, their bounded output rings and exit records, and the
 * readers attached to them.  Used by processes.c (the HTTP side) only.  */
#ifndef SBX_AGENT_PROCS_H
#define SBX_AGENT_PROCS_H

#include <pthread.h>
#include <stdatomic.h>

#include "agent/internal.h"

#define PROC_RING_CAP (1u << 20)           /* output kept per process */
#define PROC_MAX_RUNNING 64                /* per sandbox */
#define PROC_MAX_EXITED 64                 /* exit records per sandbox */
#define PROC_EXIT_KEEP_MS (10 * 60 * 1000) /* how long an exit record stays */
#define PROC_READER_STALL_MS 10000         /* a reader that holds a process back no longer */
#define PROC_MAX_TAG 64

enum { PROC_STREAM_STDOUT, PROC_STREAM_STDERR, PROC_STREAM_PTY };

typedef struct proc_reader proc_reader_t;
typedef struct chunk chunk_t;
typedef struct proc proc_t;

struct agent_procs {
    rt_runtime_t *rt;
    pthread_mutex_t mu; /* guards v, n, threads; taken before a proc's mu */
    pthread_cond_t idle;
    proc_t **v;
    size_t n, cap;
    unsigned threads; /* pumps and streams still running */
    json_t *watching; /* sandbox id -> its open watch streams (watch.c) */
    bool stopping;
};

struct proc {
    agent_procs_t *m;
    atomic_int refs;
    /* Fixed once started.  */
    char sandbox[64];
    char tag[PROC_MAX_TAG + 1];
    json_t *command;
    bool pty;
    int pid;
    int64_t started_ms;
    /* The rest under mu.  */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* output came, or the process ended */
    rt_proc_t *rp;     /* NULL once it ended (or the agent let go of it) */
    bool running, lost, timed_out;
    int status; /* wait status, once ended and not lost */
    int64_t ended_ms, deadline_ms;
    chunk_t *head, *tail;
    size_t n_chunks;
    uint64_t start, end; /* offsets of the first byte held and past the last */
    proc_reader_t *readers;
};

typedef struct proc_start {
    rt_proc_request_t req;
    json_t *command; /* the argv array, kept for listing */
    const char *tag; /* NULL: none */
    bool keep_stdin; /* false: stdin is closed at once */
    int timeout_ms;  /* 0: none */
} proc_start_t;

typedef struct proc_info {
    int pid;
    char tag[PROC_MAX_TAG + 1];
    bool pty, running, lost, timed_out;
    int status;
    int64_t started_ms, ended_ms;
    uint64_t start, end;
} proc_info_t;

agent_procs_t *agent_procs_new(rt_runtime_t *rt);
/* Processes still running go on unwatched.  */
void agent_procs_free(agent_procs_t *m);
/* Threads that use the manager (streams) are counted, so free waits for
 * them; under m->mu.  */
int agent_procs_thread_start_locked(agent_procs_t *m, void *(*fn)(void *), void *arg);
void agent_procs_thread_end(agent_procs_t *m);

/* *out is referenced: proc_unref it.  */
int agent_procs_start(agent_procs_t *m, const char *sandbox, const proc_start_t *s, proc_t **out,
                      sbx_error_t *err);
/* By pid (digits) or tag (the running one, else the last started);
 * referenced, or NULL.  */
proc_t *agent_procs_find(agent_procs_t *m, const char *sandbox, const char *pid_or_tag);
/* The sandbox's processes, each referenced; free the array.  */
proc_t **agent_procs_list(agent_procs_t *m, const char *sandbox, size_t *n);
/* The sandbox is gone: drop its records.  */
void agent_procs_forget(agent_procs_t *m, const char *sandbox);

void proc_unref(proc_t *p);
void proc_snapshot(proc_t *p, proc_info_t *out);
int proc_write_stdin(proc_t *p, const char *data, size_t n, int timeout_ms, sbx_error_t *err);
int proc_close_stdin(proc_t *p, sbx_error_t *err);
int proc_signal(proc_t *p, int sig, sbx_error_t *err);
int proc_resize(proc_t *p, unsigned rows, unsigned cols, sbx_error_t *err);

/* A reader of a process's output from offset `from` on.  */
proc_reader_t *proc_attach(proc_t *p, uint64_t from);
void proc_detach(proc_t *p, proc_reader_t *r);
typedef enum {
    PROC_NEXT_IDLE, /* nothing within wait_ms (or the agent stops) */
    PROC_NEXT_DATA, /* it->len bytes of it->stream at it->from */
    PROC_NEXT_GAP,  /* bytes it->from..it->to were dropped before this reader took them */
    PROC_NEXT_EXIT, /* all read, and the process has ended */
} proc_next_t;
typedef struct proc_item {
    int stream;
    size_t len;
    uint64_t from, to;
} proc_item_t;
proc_next_t proc_next(proc_t *p, proc_reader_t *r, char *buf, size_t max, int wait_ms,
                      proc_item_t *it);

#endif
