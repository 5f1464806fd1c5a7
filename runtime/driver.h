/* driver.h -- the runtime module's private interface: the sandbox record,
 * the driver ops table every isolation driver implements, and the helpers
 * (cgroups, seccomp, state files) the drivers share.  Not for other modules.  */
#ifndef SBX_RUNTIME_DRIVER_H
#define SBX_RUNTIME_DRIVER_H

#include <linux/filter.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "common/model.h"
#include "runtime/runtime.h"

#define RT_DEFAULT_MEMORY_MIB SBX_MEMORY_MIB_DEFAULT
#define RT_DEFAULT_DISK_MIB SBX_DISK_MIB_DEFAULT
#define RT_DEFAULT_PIDS_MAX SBX_PIDS_DEFAULT
#define RT_DEFAULT_TIMEOUT_MS 30000
#define RT_DEFAULT_OUTPUT_CAP (1024 * 1024)
#define RT_MAX_OUTPUT_CAP (64 * 1024 * 1024)

/* Every sandbox gets its own range of host uids and gids, 65536 long;
 * uid 0 inside is rt->uid_start + slot * RT_UID_RANGE outside.  Each
 * runtime holds a range of its own on the host (claims.c): given by the
 * operator, kept from an earlier run, or the first free one from
 * RT_UID_BASE, far above the ranges distributions hand out in
 * /etc/subuid.  RT_UID_END bounds every range ((uid_t)-1 is no uid).  */
#define RT_UID_BASE 0x40000000u
#define RT_UID_END 0xffffffffu
#define RT_UID_RANGE 0x10000u
#define RT_MAX_SLOTS 16384u
#define RT_MIN_AUTO_SLOTS 256u
/* Host-wide claims of uid ranges and cgroup parents, one file each.  */
#define RT_CLAIM_DIR "/var/lib/sandboxd-host"

typedef struct rt_driver_ops rt_driver_ops_t;
typedef struct rt_driver_files rt_driver_files_t;

/* One sandbox.  Fields above `lock` are fixed after creation; the rest
 * change under `lock` held for writing (lifecycle) and are read under it
 * held for reading (exec launch, files).  */
typedef struct rt_sandbox {
    char id[64];
    const rt_driver_ops_t *ops;
    char *dir;    /* state_dir/sandboxes/<id> */
    char *rootfs; /* image rootfs, shared read-only */
    char *image;
    double cpu;
    uint64_t memory_mib, disk_mib;
    uint32_t pids_max;
    json_t *env; /* object of strings, owned */
    unsigned slot;
    uid_t host_uid; /* uid and gid 0 inside */
    int64_t created_ms;

    pthread_rwlock_t lock;
    atomic_int refs;
    atomic_llong last_activity_ms;
    atomic_ullong exec_seq;
    rt_state_t state;
    char message[256];
    pid_t init_pid;      /* host pid of the sandbox's pid 1; 0 when stopped */
    uint64_t init_start; /* its start time (clock ticks since boot) */
    int init_pidfd;      /* -1 when stopped */
    bool init_is_child;  /* ours to reap (false for adopted sandboxes) */
} rt_sandbox_t;

/* ---- cgroups (cgroup.c) ---------------------------------------------- */

enum { RT_CG_CPU, RT_CG_CPUACCT, RT_CG_MEMORY, RT_CG_PIDS, RT_CG_FREEZER, RT_CG_N };

typedef struct rt_cgroups {
    bool v2;
    char *root;        /* v2: the cgroup2 mount */
    char *v1[RT_CG_N]; /* v1: each controller's mount; NULL when absent */
    char *parent;      /* our parent cgroup name, e.g. "sandboxd" */
} rt_cgroups_t;

typedef struct rt_cg_limits {
    double cpu;
    uint64_t memory_bytes;
    uint32_t pids_max;
} rt_cg_limits_t;

int rt_cg_detect(rt_cgroups_t *cg, const char *parent, sbx_error_t *err);
void rt_cg_done(rt_cgroups_t *cg);
/* Remove our parent cgroup where nothing is left under it.  */
void rt_cg_parent_remove(const rt_cgroups_t *cg);
int rt_cg_create(const rt_cgroups_t *cg, const char *id, const rt_cg_limits_t *lim,
                 sbx_error_t *err);
/* Remove the sandbox's cgroups (all processes must be gone).  */
int rt_cg_destroy(const rt_cgroups_t *cg, const char *id, sbx_error_t *err);
/* Move `pid` into the sandbox's cgroups.  */
int rt_cg_attach(const rt_cgroups_t *cg, const char *id, pid_t pid, sbx_error_t *err);
/* Create an exec's child cgroup `sub` and open the cgroup.procs files a
 * forked child writes "0" to, to join it (fds[] gets *n entries, at most
 * RT_CG_N + 1).  */
int rt_cg_exec_open(const rt_cgroups_t *cg, const char *id, const char *sub, int *fds, int *n,
                    sbx_error_t *err);
/* SIGKILL every process of the sandbox (sub NULL) or of one exec's child
 * cgroup, forks included; waits until they are gone or timeout_ms passes.  */
int rt_cg_kill(const rt_cgroups_t *cg, const char *id, const char *sub, int timeout_ms,
               sbx_error_t *err);
/* The cgroup.procs an exec helper joins before it forks the command, so
 * that fork counts against the sandbox's process limit: the sandbox's
 * pids cgroup on v1; none (*fd = -1) on v2, where joining would also put
 * the helper under the sandbox's memory limit.  */
int rt_cg_fork_open(const rt_cgroups_t *cg, const char *id, int *fd, sbx_error_t *err);
typedef struct rt_cg_pressure {
    uint64_t memory_bytes, memory_limit; /* 0: unknown or no limit */
    uint64_t pids, pids_max;
    bool under_oom; /* v1 with the OOM killer off: tasks wait for memory */
} rt_cg_pressure_t;
/* How close the sandbox is to its memory and process limits.  */
void rt_cg_pressure(const rt_cgroups_t *cg, const char *id, rt_cg_pressure_t *out);
/* Remove an exec's child cgroup unless processes it left still run.  */
void rt_cg_exec_done(const rt_cgroups_t *cg, const char *id, const char *sub);
/* Remove every exec child cgroup no process uses any more; only while no
 * exec is being launched (sb->lock held for writing).  */
void rt_cg_sweep(const rt_cgroups_t *cg, const char *id);
int rt_cg_freeze(const rt_cgroups_t *cg, const char *id, bool frozen, sbx_error_t *err);
bool rt_cg_is_frozen(const rt_cgroups_t *cg, const char *id);
void rt_cg_usage(const rt_cgroups_t *cg, const char *id, uint64_t *memory_bytes, uint64_t *cpu_us);

/* ---- seccomp (seccomp.c) --------------------------------------------- */

/* Build the filter every sandbox process runs under, as a BPF program
 * that a forked child installs with prctl (no allocation after fork).  */
int rt_seccomp_build(struct sock_fprog *out, sbx_error_t *err);

/* ---- host-wide claims (claims.c) -------------------------------------- */

/* Take this runtime's uid range and cgroup parent (rt->uid_start,
 * rt->n_slots, rt->cg_parent) and hold them until rt_claims_release;
 * SBX_ERR_CONFLICT when another runtime of the host holds or keeps what
 * the configuration names.  cgroup_parent NULL: the default.  Needs
 * rt->cfg, state_dir and sandboxes_dir, and the state dir's lock.  */
int rt_claims_take(rt_runtime_t *rt, const char *cgroup_parent, sbx_error_t *err);
void rt_claims_release(rt_runtime_t *rt);

/* ---- the runtime ------------------------------------------------------ */

struct rt_runtime {
    char *state_dir;
    char *sandboxes_dir;
    rt_config_t cfg;
    rt_cgroups_t cg;
    struct sock_fprog seccomp;
    int seccomp_memfd; /* seccomp.filter for exec helpers, sealed */
    int init_memfd;    /* the sandbox binary (init and exec helper), sealed */
    int lock_fd;
    /* Once the agent stops: execs still waiting at this time (monotonic
     * ms) give up on their command and leave it running; 0 until then.  */
    int64_t cut_execs_at_ms;
    int uid_claim_fd, cg_claim_fd;
    uid_t uid_start;  /* this runtime's host uid range ... */
    unsigned n_slots; /* ... of n_slots * RT_UID_RANGE uids */
    char *cg_parent;
    int cap_last;
    rt_net_hook_t net_hook; /* rt_set_net_hook's */
    void *net_hook_arg;

    pthread_mutex_t mu; /* guards sbs and slots */
    rt_sandbox_t **sbs;
    size_t n_sbs, cap_sbs;
    uint8_t slots[RT_MAX_SLOTS / 8];
};

/* For the files API: a referenced, read-locked sandbox and an O_PATH fd on
 * its root; release both with rt_sandbox_root_close.  */
int rt_sandbox_root_open(rt_runtime_t *rt, const char *id, rt_sandbox_t **sb, sbx_error_t *err);
void rt_sandbox_root_close(rt_sandbox_t *sb, int fd);
/* The same without the root: release with rt_sandbox_root_close(sb, -1).  */
int rt_sandbox_hold(rt_runtime_t *rt, const char *id, rt_sandbox_t **sb, sbx_error_t *err);

/* ---- drivers ---------------------------------------------------------- */

/* Every op runs with sb->lock held for writing, except exec, which is
 * called with it held for reading and releases it once the command has
 * joined the sandbox (it runs on its own after that).  The
 * runtime keeps sb->state and persists it; ops report through err.  */
struct rt_driver_ops {
    const char *name;
    /* Whether the driver works on this host; when not, why (a sentence
     * for the host's health and for a refused create).  */
    bool (*usable)(rt_runtime_t *rt, char *why, size_t len);
    /* Prepare what outlives processes: cgroups, the writable layer.  */
    int (*create)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* Boot the sandbox (after create, or after stop).  */
    int (*start)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    int (*exec)(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req,
                rt_exec_result_t *out, sbx_error_t *err);
    /* Start a command that runs on its own (NULL: the driver has none);
     * called like exec, and returns once the command runs.  */
    int (*spawn)(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_proc_request_t *req, rt_proc_t **out,
                 sbx_error_t *err);
    int (*suspend)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    int (*resume)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* End every process; the writable layer stays.  */
    int (*stop)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* Remove everything: processes, mounts, cgroups, files.  */
    int (*destroy)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* Look at a sandbox found on disk (or one we run) and set sb->state to
     * what is really there: adopt a live init, or mark it stopped and
     * clean up what a dead one left.  */
    int (*list)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* An O_PATH fd on the sandbox's root directory for the files API.  */
    int (*root_fd)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    void (*usage)(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us);
    /* NULL: the files API works on root_fd.  Otherwise the driver serves
     * files itself (a VM's root is not the host's to open); called with
     * sb->lock held for reading, paths as the client gave them.  */
    const rt_driver_files_t *files;
    /* NULL: the sandbox's network namespace is its init's (/proc).
     * Otherwise an fd of the namespace the driver keeps itself (one that
     * outlives the sandbox's processes); called with sb->lock held.  */
    int (*netns_open)(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
    /* NULL: nothing to do (see rt_net_changed); called with sb->lock held
     * for writing.  */
    int (*net_changed)(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_net_link_t *link,
                       sbx_error_t *err);
};

struct rt_driver_files {
    /* A readable fd of the file's bytes (a copy), *size its size.  */
    int (*open)(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, uint64_t max, int *fd,
                uint64_t *size, sbx_error_t *err);
    int (*write)(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, const void *data, size_t len,
                 sbx_error_t *err);
    int (*remove)(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, sbx_error_t *err);
    int (*list)(rt_runtime_t *rt, rt_sandbox_t *sb, const char *path, rt_dirent_t **out, size_t *n,
                sbx_error_t *err);
    size_t write_max; /* the largest file write accepts */
};

extern const rt_driver_ops_t rt_process_ops;
extern const rt_driver_ops_t rt_gvisor_ops;
extern const rt_driver_ops_t rt_microvm_ops;

/* ---- the gvisor driver's network namespaces (gvisor_net.c) ------------- */

/* <dir>/netns: a network namespace of the sandbox's own with loopback up,
 * bound there so it outlives runsc (a checkpoint) and the agent; made
 * unless it exists.  */
int rt_gv_netns_make(rt_sandbox_t *sb, sbx_error_t *err);
bool rt_gv_netns_exists(const rt_sandbox_t *sb);
/* Unbind and remove it; the namespace ends with its last process.  */
void rt_gv_netns_remove(rt_sandbox_t *sb);
/* Call the runtime's net hook (if any) with the sandbox's namespace.  */
int rt_gv_netns_boot(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
/* Whether the running sandbox has sent a packet through an interface of
 * its namespace other than loopback since it booted (true when unknown).  */
bool rt_gv_netns_used(const rt_sandbox_t *sb);

/* Shared by the drivers (process.c).  */
/* Start time of a process (clock ticks after boot), 0 when it is gone.  */
uint64_t rt_pid_start_time(pid_t pid);
/* Mount the sandbox's root (writable layer, the image id-mapped through
 * the user namespace of userns_pid, the overlay) at <dir>/rootfs.  */
int rt_root_prepare(rt_sandbox_t *sb, pid_t userns_pid, sbx_error_t *err);
/* An exec's environment: defaults, the sandbox's env, then extra ("K=V").  */
char **rt_exec_env(rt_sandbox_t *sb, char **extra, sbx_error_t *err);
void rt_strv_free(char **v);

/* ---- an exec's pipes on the host side (exec_io.c) ---------------------- */

/* Past the cap, output is counted and dropped; past this much dropped,
 * the stream is closed and the command gets EPIPE.  */
#define RT_EXEC_DISCARD_MAX (4u << 20)

/* One stream of a command's output, kept up to `cap` bytes.  */
typedef struct rt_outbuf {
    int fd; /* read end; -1 once at end-of-file or closed */
    char *data;
    size_t len, cap, dropped;
    bool truncated;
} rt_outbuf_t;

/* One read of whatever the (non-blocking) fd has.  */
void rt_outbuf_read(rt_outbuf_t *b);
/* Add a note of our own (not counted against the cap).  */
void rt_outbuf_append(rt_outbuf_t *b, const char *s, size_t len);
/* What was kept, NUL-terminated; the buffer is left empty.  */
char *rt_outbuf_take(rt_outbuf_t *b, size_t *len, bool *truncated);
/* Write what is left of an exec's input to the non-blocking *fd, without
 * SIGPIPE; closes *fd once all is written or the command has closed it.  */
void rt_stdin_feed(int *fd, const char **p, size_t *left);

#endif
