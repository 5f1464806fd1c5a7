/* runtime.h -- runs sandboxes on one host: the public API the agent calls.
 *
 * A runtime owns a state directory; every sandbox it runs has its state on
 * disk there, so a restarted agent finds its sandboxes again (rt_open).
 * Isolation is done by drivers ("process", "gvisor", "microvm")
 * behind one ops table inside this module; callers name a driver per sandbox.
 *
 * Every call is idempotent where the agent API requires it: creating an id
 * that exists returns the existing sandbox, destroying an absent one is 0.
 * Thread-safe: many calls (execs especially) run at once.
 * Errors follow common.h; SBX_ERR_NOT_FOUND for an unknown id, SBX_ERR_INVALID
 * for bad arguments (bad path, bad id), SBX_ERR_CONFLICT for a call the
 * sandbox's state does not allow.  */
#ifndef SBX_RUNTIME_H
#define SBX_RUNTIME_H

#include "common/common.h"

typedef struct rt_runtime rt_runtime_t;

typedef enum rt_state {
    RT_STATE_CREATING,
    RT_STATE_RUNNING,
    RT_STATE_SUSPENDED,
    RT_STATE_STOPPED,
    RT_STATE_FAILED,
} rt_state_t;
const char *rt_state_name(rt_state_t s); /* "Creating", "Running", ... */

typedef struct rt_config {
    const char *state_dir;   /* sandboxes' state, roots and writable layers */
    const char *cgroup_root; /* parent cgroup name; NULL: kept from an earlier run, or
                              * "sandboxd-<hash of the state dir>" */
    unsigned max_sandboxes;  /* slots reported in health; 0: derived from memory */
    /* Host uids for the sandboxes, uid_count a multiple of 65536 (one
     * range per sandbox); uid_count 0: kept from an earlier run, or the
     * first range no other runtime of the host holds.  */
    uint32_t uid_start, uid_count;
    bool allow_microvm_emulation;
    /* The most health reports as the host's capacity (0: what the host
     * has), so an operator keeps the rest of the machine for other work.
     * The scheduler admits sandboxes against these.  */
    double capacity_cpu;
    uint64_t capacity_memory_mib, capacity_disk_mib, capacity_pids;
} rt_config_t;

typedef struct rt_spec {
    const char *id;      /* [a-z0-9][a-z0-9-]{0,62}, chosen by the caller */
    const char *driver;  /* "process" (default when NULL), "gvisor", "microvm" */
    const char *rootfs;  /* unpacked image directory, shared read-only */
    const char *image;   /* reference, recorded only */
    double cpu;          /* cores; 0: no limit */
    uint64_t memory_mib; /* 0: default */
    uint64_t disk_mib;   /* writable layer bound; 0: default */
    uint32_t pids_max;   /* 0: default */
    json_t *env;         /* object of strings, borrowed; may be NULL */
} rt_spec_t;

typedef struct rt_info {
    char id[64];
    char driver[16];
    char image[512];
    rt_state_t state;
    int64_t created_ms;
    int64_t last_activity_ms;
    double cpu;
    uint64_t memory_mib;
    uint64_t memory_used_bytes;
    uint64_t cpu_used_us; /* CPU time used by the sandbox's processes */
    /* the writable layer's use and size when it is a file system of its
     * own (the process driver's tmpfs); 0 when it is not */
    uint64_t disk_used_bytes, disk_total_bytes;
    char message[256]; /* why Failed, when it is */
} rt_info_t;

/* Who a command runs as in a sandbox: uid, gid and supplementary groups
 * of the sandbox's own user namespace (0..65535); not set: its root.  */
#define RT_MAX_GROUPS 32
typedef struct rt_user {
    bool set;
    uint32_t uid, gid;
    uint32_t groups[RT_MAX_GROUPS];
    unsigned n_groups;
} rt_user_t;

typedef struct rt_exec_request {
    char **argv;     /* NULL-terminated, argv[0] looked up in the sandbox PATH */
    char **env;      /* NULL-terminated "K=V", added to the sandbox env; may be NULL */
    const char *cwd; /* inside the sandbox; NULL: "/" */
    const char *stdin_data;
    size_t stdin_len;
    int timeout_ms;    /* kills the exec's whole process tree; 0: default 30 s */
    size_t output_cap; /* per stream; 0: default 1 MiB */
    rt_user_t user;
} rt_exec_request_t;

typedef struct rt_exec_result {
    int exit_code; /* -1 when killed by a signal */
    int signal;    /* 0 unless killed by a signal */
    bool timed_out;
    char *out, *err; /* owned, NUL-terminated (may also contain NULs) */
    size_t out_len, err_len;
    bool out_truncated, err_truncated;
    int64_t duration_ms;
} rt_exec_result_t;
void rt_exec_result_done(rt_exec_result_t *r);

typedef struct rt_dirent {
    char *name;
    char type[8]; /* "file" | "dir" | "symlink" | "other" */
    uint64_t size;
    unsigned mode; /* permission bits */
    int64_t modified_ms;
} rt_dirent_t;

/* Capacity (totals) and what the sandboxes here are promised (their
 * limits).  disk is the writable layers' tmpfs, so its total is memory;
 * pids_total is the share of the kernel's pid_max (and threads-max) that
 * sandboxes may hold together (RT_PIDS_SHARE_PERCENT of it).  */
#define RT_PIDS_SHARE_PERCENT 75
typedef struct rt_health {
    double cpu_total, cpu_allocated;
    uint64_t memory_total_mib, memory_allocated_mib;
    uint64_t disk_total_mib, disk_allocated_mib;
    uint64_t pids_total, pids_allocated;
    uint64_t pid_max, threads_max; /* the kernel's, as read */
    unsigned slots_total, slots_used;
    const char *drivers[4]; /* names of usable drivers, NULL-terminated */
    struct {
        const char *name; /* NULL past the last */
        char why[192];
    } unavailable[4];              /* the drivers that do not work here, and why */
    uint32_t uid_start, uid_count; /* the host uids this runtime holds */
    char cgroup_parent[64];
} rt_health_t;

/* Open the runtime; finds sandboxes left by an earlier agent process and
 * cleans up those whose state is broken.  */
rt_runtime_t *rt_open(const rt_config_t *cfg, sbx_error_t *err);
void rt_close(rt_runtime_t *rt); /* sandboxes keep running */
/* The agent is stopping: an exec still waiting for its command grace_ms
 * from now fails with SBX_ERR_UNAVAILABLE and leaves the command running,
 * so a stop never waits on what a sandbox runs.  */
void rt_shutdown_begin(rt_runtime_t *rt, int grace_ms);

int rt_health(rt_runtime_t *rt, rt_health_t *out, sbx_error_t *err);

int rt_create(rt_runtime_t *rt, const rt_spec_t *spec, rt_info_t *out, sbx_error_t *err);
int rt_get(rt_runtime_t *rt, const char *id, rt_info_t *out, sbx_error_t *err);
/* *same: whether sandbox spec->id was created from spec (rootfs aside),
 * defaults filled in; SBX_ERR_NOT_FOUND when there is no such sandbox.  */
int rt_spec_compare(rt_runtime_t *rt, const rt_spec_t *spec, bool *same, sbx_error_t *err);
/* *out is an array of *n infos, free() it.  */
int rt_list(rt_runtime_t *rt, rt_info_t **out, size_t *n, sbx_error_t *err);
int rt_destroy(rt_runtime_t *rt, const char *id, sbx_error_t *err);
/* An fd of a running sandbox's network namespace (the caller closes it);
 * SBX_ERR_CONFLICT when it is not running.  */
int rt_netns_open(rt_runtime_t *rt, const char *id, sbx_error_t *err);

/* A sandbox's network link as the agent made it in that namespace (an
 * IPv4 address and a default route through its gateway on `ifname`).  */
typedef struct rt_net_link {
    bool present;                  /* false: the sandbox has no link (now) */
    char ifname[16];               /* the link's end in the namespace */
    char address[64], gateway[64]; /* dotted quads */
    unsigned prefix;
} rt_net_link_t;
/* Tell the sandbox's driver that its link came, changed or went (after
 * each egress apply and release).  A driver whose sandbox does not use the
 * namespace's stack itself (a VM's guest kernel, a user-space kernel)
 * connects the link to the sandbox here; for the others it is a no-op.
 * A sandbox that is not running takes the link at its next boot or
 * resume.  */
int rt_net_changed(rt_runtime_t *rt, const char *id, const rt_net_link_t *link, sbx_error_t *err);

/* Some drivers' sandboxes take their network only as they boot: gvisor's
 * runsc copies the interfaces, addresses and routes of the sandbox's
 * network namespace into gVisor's own network stack when it starts or
 * restores, and never looks again.  For those, the runtime calls this
 * hook with the sandbox's namespace (netns_fd, owned by the runtime) just
 * before each boot (create, start, resume from a checkpoint), so the
 * caller can put the sandbox's egress link there.  It runs on the thread
 * of the call that boots the sandbox, with the sandbox locked: it must
 * not call the runtime about that sandbox.  A failure fails the boot.
 * Set it once, before the first create; NULL: none.  */
typedef int (*rt_net_hook_t)(void *arg, const char *id, int netns_fd, sbx_error_t *err);
void rt_set_net_hook(rt_runtime_t *rt, rt_net_hook_t hook, void *arg);

int rt_stop(rt_runtime_t *rt, const char *id, sbx_error_t *err);
int rt_start(rt_runtime_t *rt, const char *id, sbx_error_t *err);
int rt_suspend(rt_runtime_t *rt, const char *id, sbx_error_t *err);
int rt_resume(rt_runtime_t *rt, const char *id, sbx_error_t *err);

/* Exec into a running sandbox (a suspended one is resumed first).  */
int rt_exec(rt_runtime_t *rt, const char *id, const rt_exec_request_t *req, rt_exec_result_t *out,
            sbx_error_t *err);

/* ---- processes: commands that run on their own, watched by the caller ---- */

typedef struct rt_proc_request {
    char **argv;               /* NULL-terminated, argv[0] looked up in the sandbox PATH */
    char **env;                /* NULL-terminated "K=V", added to the sandbox env; may be NULL */
    const char *cwd;           /* inside the sandbox; NULL: "/" */
    bool pty;                  /* stdin, stdout and stderr are one terminal of rows x cols */
    unsigned short rows, cols; /* 0: 24 x 80 */
    rt_user_t user;
} rt_proc_request_t;

typedef struct rt_proc rt_proc_t;
typedef enum rt_proc_fd {
    RT_PROC_STDIN,  /* write end of its stdin, or the terminal; -1 once closed */
    RT_PROC_STDOUT, /* read end of its stdout, or the terminal */
    RT_PROC_STDERR, /* read end of its stderr; -1 with a terminal */
    RT_PROC_EVENTS, /* readable when rt_proc_poll has news; -1 once none can come */
} rt_proc_fd_t;

/* Start a command in a running sandbox (a suspended one is resumed) and
 * return once it runs.  A command that is not there is SBX_ERR_INVALID
 * with ARM code CommandNotFound (CommandNotExecutable).  The command runs
 * until it ends or is signalled, whatever the caller does meanwhile; it
 * ends with the sandbox.  */
int rt_proc_start(rt_runtime_t *rt, const char *id, const rt_proc_request_t *req, rt_proc_t **out,
                  sbx_error_t *err);
int rt_proc_pid(const rt_proc_t *p); /* in the sandbox's pid namespace */
/* The caller's ends; owned by p, valid until rt_proc_free.  */
int rt_proc_fd(const rt_proc_t *p, rt_proc_fd_t which);
/* Take the news RT_PROC_EVENTS has; true once the command has ended, with
 * *status its wait status (-1: lost, its helper was killed).  */
bool rt_proc_poll(rt_proc_t *p, int *status);
/* End of input: closes the stdin pipe; on a terminal, sends ^D.  */
void rt_proc_close_stdin(rt_proc_t *p);
/* To the command's process group; SIGKILL also kills everything it
 * started (its cgroup).  SBX_ERR_CONFLICT once it has ended.  */
int rt_proc_signal(rt_proc_t *p, int sig, sbx_error_t *err);
int rt_proc_resize(rt_proc_t *p, unsigned short rows, unsigned short cols, sbx_error_t *err);
/* Let go of p: kill ends the command if it still runs, with everything
 * it started (and reaps it); without, a command still running goes on
 * unwatched (the agent stops).  What an ended command left running in
 * the background goes on either way.  */
void rt_proc_free(rt_proc_t *p, bool kill);

/* Files: every path resolves inside the sandbox root; `..`, symlinks and
 * races cannot leave it.  */
int rt_file_read(rt_runtime_t *rt, const char *id, const char *path, size_t max, char **data,
                 size_t *len, sbx_error_t *err);
int rt_file_write(rt_runtime_t *rt, const char *id, const char *path, const void *data, size_t len,
                  sbx_error_t *err);
/* Open a regular file for reading (the caller closes *fd); *size is its
 * size when opened.  Fails with TOO_LARGE past max (0: no bound).  */
int rt_file_open(rt_runtime_t *rt, const char *id, const char *path, uint64_t max, int *fd,
                 uint64_t *size, sbx_error_t *err);
/* Up to n bytes into buf: > 0, 0 at the end, or -1 (errno EFBIG: too
 * large; anything else: the source failed) to abandon the write.  */
typedef ssize_t (*rt_read_fn)(void *ud, void *buf, size_t n);
/* Write path from `read`, a chunk at a time, without holding it in memory.
 * The bytes go to a new file beside path, renamed over it at the end, so a
 * failed write leaves no partial file; they are written by a process in the
 * sandbox's memory cgroup, so the sandbox's memory pays for them (its tmpfs
 * writable layer is RAM).  `expected` is the announced size or UINT64_MAX.
 * A sandbox whose memory or disk cannot hold the bytes gives TOO_LARGE with
 * ARM code SandboxStorageFull.  *written gets the size written.  */
int rt_file_write_stream(rt_runtime_t *rt, const char *id, const char *path, uint64_t expected,
                         rt_read_fn read, void *ud, uint64_t *written, sbx_error_t *err);
int rt_file_delete(rt_runtime_t *rt, const char *id, const char *path, sbx_error_t *err);
int rt_file_list(rt_runtime_t *rt, const char *id, const char *path, rt_dirent_t **out, size_t *n,
                 sbx_error_t *err);
void rt_dirents_free(rt_dirent_t *d, size_t n);
/* Open a directory inside the sandbox (O_RDONLY | O_DIRECTORY; the caller
 * closes *fd), resolved as every path here is.  */
int rt_dir_open(rt_runtime_t *rt, const char *id, const char *path, int *fd, sbx_error_t *err);

bool rt_id_valid(const char *id);
/* A uid range an operator may give (rt_config_t uid_start, uid_count).  */
int rt_uid_range_check(uint32_t start, uint32_t count, sbx_error_t *err);

#endif
