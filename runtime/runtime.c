/* runtime.c -- the public runtime API: the registry of sandboxes, their
 * records on disk, recovery after an agent restart, locking, and dispatch to
 * the driver each sandbox uses.
 *
 * On disk: <state_dir>/lock (one runtime per state dir) and
 * <state_dir>/sandboxes/<id>/state.json, rewritten atomically on every
 * state change.  Recovery (rt_open): a sandbox recorded as Creating was
 * half-made and is removed entirely; one recorded as Running or Suspended
 * is adopted when its init is still the same process (pid and start time),
 * otherwise it becomes Stopped with its writable layer kept; Stopped and
 * Failed ones are listed as they are.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>

#include "runtime/driver.h"

extern const unsigned char rt_init_blob[], rt_init_blob_end[];

static const rt_driver_ops_t *const drivers[] = {&rt_process_ops, &rt_gvisor_ops, &rt_microvm_ops};

const char *rt_state_name(rt_state_t s)
{
    switch (s) {
    case RT_STATE_CREATING: return "Creating";
    case RT_STATE_RUNNING: return "Running";
    case RT_STATE_SUSPENDED: return "Suspended";
    case RT_STATE_STOPPED: return "Stopped";
    case RT_STATE_FAILED: return "Failed";
    }
    return "Unknown";
}

static int state_parse(const char *name, rt_state_t *out)
{
    for (rt_state_t s = RT_STATE_CREATING; s <= RT_STATE_FAILED; s++) {
        if (strcmp(name, rt_state_name(s)) == 0) {
            *out = s;
            return 0;
        }
    }
    return -1;
}

bool rt_id_valid(const char *id)
{
    if (!id || !((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= '0' && id[0] <= '9')))
        return false;
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return false;
    }
    return n <= 63;
}

void rt_exec_result_done(rt_exec_result_t *r)
{
    if (!r)
        return;
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static const rt_driver_ops_t *driver_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

/* ---- sandbox records -------------------------------------------------- */

static rt_sandbox_t *sandbox_new(rt_runtime_t *rt, const char *id)
{
    rt_sandbox_t *sb = xcalloc(1, sizeof *sb);
    snprintf(sb->id, sizeof sb->id, "%s", id);
    sb->dir = xasprintf("%s/%s", rt->sandboxes_dir, id);
    pthread_rwlock_init(&sb->lock, NULL);
    atomic_init(&sb->refs, 1);
    atomic_init(&sb->exec_seq,
                ((unsigned long long)sbx_now_ms() << 16) ^ (unsigned long long)getpid());
    sb->init_pidfd = -1;
    return sb;
}

static void sandbox_unref(rt_sandbox_t *sb)
{
    if (!sb || atomic_fetch_sub(&sb->refs, 1) != 1)
        return;
    if (sb->init_pidfd >= 0)
        close(sb->init_pidfd);
    pthread_rwlock_destroy(&sb->lock);
    json_decref(sb->env);
    free(sb->dir);
    free(sb->rootfs);
    free(sb->image);
    free(sb);
}

static int rt_sandbox_save(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    json_t *env = sb->env ? json_incref(sb->env) : json_object();
    _cleanup_json_ json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:f, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:s, s:s, s:I, s:I}", "id",
        sb->id, "driver", sb->ops->name, "rootfs", sb->rootfs, "image", sb->image ? sb->image : "",
        "cpu", sb->cpu, "memoryMiB", (json_int_t)sb->memory_mib, "diskMiB",
        (json_int_t)sb->disk_mib, "pidsMax", (json_int_t)sb->pids_max, "env", env, "slot",
        (json_int_t)sb->slot, "hostUid", (json_int_t)sb->host_uid, "createdMs",
        (json_int_t)sb->created_ms, "state", rt_state_name(sb->state), "message", sb->message,
        "initPid", (json_int_t)sb->init_pid, "initStart", (json_int_t)sb->init_start);
    if (!j)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "encode sandbox record");
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    _cleanup_free_ char *path = xasprintf("%s/state.json", sb->dir);
    (void)rt;
    return sbx_write_file_atomic(path, text, strlen(text), 0600, err);
}

/* Read a record; the id must be the directory's name.  */
static rt_sandbox_t *sandbox_load(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    _cleanup_free_ char *path = xasprintf("%s/%s/state.json", rt->sandboxes_dir, id);
    json_error_t jerr;
    _cleanup_json_ json_t *j = json_load_file(path, 0, &jerr);
    if (!j)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: %s", path, jerr.text), NULL;
    const char *jid = NULL, *driver = NULL, *rootfs = NULL, *image = NULL, *state = NULL,
               *message = "";
    double cpu = 0;
    json_int_t mem = 0, disk = 0, pids = 0, slot = -1, uid = 0, created = 0, ipid = 0, istart = 0;
    json_t *env = NULL;
    if (json_unpack_ex(j, &jerr, 0,
                       "{s:s, s:s, s:s, s?s, s:F, s:I, s:I, s:I, s?o, s:I, s:I, s:I, s:s, s?s, "
                       "s?I, s?I}",
                       "id", &jid, "driver", &driver, "rootfs", &rootfs, "image", &image, "cpu",
                       &cpu, "memoryMiB", &mem, "diskMiB", &disk, "pidsMax", &pids, "env", &env,
                       "slot", &slot, "hostUid", &uid, "createdMs", &created, "state", &state,
                       "message", &message, "initPid", &ipid, "initStart", &istart) < 0)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: %s", path, jerr.text), NULL;
    rt_state_t st;
    const rt_driver_ops_t *ops = driver_find(driver);
    if (strcmp(jid, id) != 0 || !ops || state_parse(state, &st) < 0 || slot < 0 ||
        slot >= RT_MAX_SLOTS || (env && !json_is_object(env)))
        return sbx_error_set(err, SBX_ERR_INTERNAL, "%s: inconsistent record", path), NULL;
    if (slot >= rt->n_slots || uid != (json_int_t)(rt->uid_start + (uint64_t)slot * RT_UID_RANGE))
        return sbx_error_set(err, SBX_ERR_INTERNAL,
                             "%s: host uid %lld is not slot %lld of this runtime's range %u+%u",
                             path, (long long)uid, (long long)slot, (unsigned)rt->uid_start,
                             rt->n_slots * RT_UID_RANGE),
               NULL;
    rt_sandbox_t *sb = sandbox_new(rt, id);
    sb->ops = ops;
    sb->rootfs = xstrdup(rootfs);
    sb->image = image && *image ? xstrdup(image) : NULL;
    sb->cpu = cpu;
    sb->memory_mib = (uint64_t)mem;
    sb->disk_mib = (uint64_t)disk;
    sb->pids_max = (uint32_t)pids;
    sb->env = env ? json_deep_copy(env) : NULL;
    sb->slot = (unsigned)slot;
    sb->host_uid = (uid_t)uid;
    sb->created_ms = created;
    atomic_store(&sb->last_activity_ms, created);
    sb->state = st;
    snprintf(sb->message, sizeof sb->message, "%s", message);
    sb->init_pid = (pid_t)ipid;
    sb->init_start = (uint64_t)istart;
    return sb;
}

/* ---- registry --------------------------------------------------------- */

static rt_sandbox_t *registry_find_locked(rt_runtime_t *rt, const char *id)
{
    for (size_t i = 0; i < rt->n_sbs; i++)
        if (strcmp(rt->sbs[i]->id, id) == 0)
            return rt->sbs[i];
    return NULL;
}

static void registry_add_locked(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    if (rt->n_sbs == rt->cap_sbs) {
        rt->cap_sbs = rt->cap_sbs ? rt->cap_sbs * 2 : 16;
        rt->sbs = xrealloc(rt->sbs, rt->cap_sbs * sizeof *rt->sbs);
    }
    rt->sbs[rt->n_sbs++] = sb;
    rt->slots[sb->slot / 8] |= (uint8_t)(1u << (sb->slot % 8));
}

/* Drop sb from the registry (and its reference) if it is still there.  */
static void registry_remove(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    bool found = false;
    pthread_mutex_lock(&rt->mu);
    for (size_t i = 0; i < rt->n_sbs; i++) {
        if (rt->sbs[i] == sb) {
            rt->sbs[i] = rt->sbs[--rt->n_sbs];
            rt->slots[sb->slot / 8] &= (uint8_t) ~(1u << (sb->slot % 8));
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&rt->mu);
    if (found)
        sandbox_unref(sb);
}

static int slot_alloc_locked(rt_runtime_t *rt, unsigned *out)
{
    for (unsigned s = 0; s < rt->n_slots; s++) {
        if (!(rt->slots[s / 8] & (1u << (s % 8)))) {
            *out = s;
            return 0;
        }
    }
    return -1;
}

/* A referenced sandbox, or NULL with SBX_ERR_NOT_FOUND.  */
static rt_sandbox_t *sandbox_get(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    if (!rt_id_valid(id))
        return sbx_error_set(err, SBX_ERR_INVALID, "invalid sandbox id"), NULL;
    pthread_mutex_lock(&rt->mu);
    rt_sandbox_t *sb = registry_find_locked(rt, id);
    if (sb)
        atomic_fetch_add(&sb->refs, 1);
    pthread_mutex_unlock(&rt->mu);
    if (!sb)
        sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    return sb;
}

/* A sandbox that a concurrent destroy removed is gone for the caller too.  */
static bool sandbox_removed(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    pthread_mutex_lock(&rt->mu);
    bool gone = registry_find_locked(rt, sb->id) != sb;
    pthread_mutex_unlock(&rt->mu);
    return gone;
}

/* The writable layer's use: statvfs of the sandbox's layer/, when it is a
 * mount (a tmpfs of diskMiB) and not the state directory's file system.
 * Both paths are the agent's own, outside every sandbox's root.  */
static void layer_usage(const rt_sandbox_t *sb, rt_info_t *out)
{
    _cleanup_free_ char *layer = xasprintf("%s/layer", sb->dir);
    struct stat top, st;
    struct statvfs vfs;
    if (stat(sb->dir, &top) < 0 || stat(layer, &st) < 0 || st.st_dev == top.st_dev ||
        statvfs(layer, &vfs) < 0)
        return;
    out->disk_total_bytes = (uint64_t)vfs.f_blocks * vfs.f_frsize;
    out->disk_used_bytes = (uint64_t)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize;
}

static void fill_info(rt_runtime_t *rt, rt_sandbox_t *sb, rt_info_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->id, sizeof out->id, "%s", sb->id);
    snprintf(out->driver, sizeof out->driver, "%s", sb->ops->name);
    snprintf(out->image, sizeof out->image, "%s", sb->image ? sb->image : "");
    out->state = sb->state;
    out->created_ms = sb->created_ms;
    out->last_activity_ms = atomic_load(&sb->last_activity_ms);
    out->cpu = sb->cpu;
    out->memory_mib = sb->memory_mib;
    snprintf(out->message, sizeof out->message, "%s", sb->message);
    sb->ops->usage(rt, sb, &out->memory_used_bytes, &out->cpu_used_us);
    layer_usage(sb, out);
}

/* Bring sb->state in line with what really runs (the init may have died),
 * persisting a change.  Called with sb->lock held for writing.  */
static void refresh_locked(rt_runtime_t *rt, rt_sandbox_t *sb)
{
    rt_state_t before = sb->state;
    sbx_error_t err = {0};
    if (sb->ops->list(rt, sb, &err) < 0)
        sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: %s", sb->id, err.msg);
    if (sb->state != before && rt_sandbox_save(rt, sb, &err) < 0)
        sbx_log(SBX_LOG_WARN, "runtime", "sandbox %s: %s", sb->id, err.msg);
}

/* ---- open / close ------------------------------------------------------- */

/* A sealed memfd holding data: what sandbox processes run or load from
 * it (the init binary through /proc/1/exe, say) cannot be changed.  */
static int sealed_memfd_create(const char *name, const void *data, size_t len, sbx_error_t *err)
{
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "memfd_create");
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) {
            close(fd);
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", name);
        }
        p += w;
        len -= (size_t)w;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) < 0) {
        close(fd);
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "seal %s", name);
    }
    return fd;
}

static void load_sandboxes(rt_runtime_t *rt)
{
    DIR *d = opendir(rt->sandboxes_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        sbx_error_t err = {0};
        rt_sandbox_t *sb = rt_id_valid(de->d_name) ? sandbox_load(rt, de->d_name, &err) : NULL;
        if (!sb) {
            sbx_log(SBX_LOG_WARN, "runtime", "ignoring %s/%s: %s", rt->sandboxes_dir, de->d_name,
                    err.msg[0] ? err.msg : "not a sandbox");
            continue;
        }
        if (rt->slots[sb->slot / 8] & (1u << (sb->slot % 8))) {
            sbx_log(SBX_LOG_WARN, "runtime", "ignoring %s: uid range already in use", sb->id);
            sandbox_unref(sb);
            continue;
        }
        if (sb->state == RT_STATE_CREATING) {
            /* Half-made by an agent that died while creating it: nobody
             * got it yet, so remove it whole; a retried create makes it
             * again.  */
            if (sb->ops->destroy(rt, sb, &err) < 0)
                sbx_log(SBX_LOG_WARN, "runtime", "cleaning half-created %s: %s", sb->id, err.msg);
            else
                sbx_log(SBX_LOG_INFO, "runtime", "removed half-created sandbox %s", sb->id);
            sandbox_unref(sb);
            continue;
        }
        pthread_rwlock_wrlock(&sb->lock);
        refresh_locked(rt, sb);
        pthread_rwlock_unlock(&sb->lock);
        sbx_log(SBX_LOG_INFO, "runtime", "found sandbox %s (%s)", sb->id, rt_state_name(sb->state));
        registry_add_locked(rt, sb);
    }
    closedir(d);
}

rt_runtime_t *rt_open(const rt_config_t *cfg, sbx_error_t *err)
{
    if (!cfg || !cfg->state_dir || !*cfg->state_dir)
        return sbx_error_set(err, SBX_ERR_INVALID, "runtime needs a state directory"), NULL;
    if (cfg->cgroup_root &&
        (!*cfg->cgroup_root || strchr(cfg->cgroup_root, '/') || strlen(cfg->cgroup_root) > 63 ||
         strcmp(cfg->cgroup_root, "..") == 0 || strcmp(cfg->cgroup_root, ".") == 0))
        return sbx_error_set(err, SBX_ERR_INVALID, "invalid cgroup root name"), NULL;
    if ((cfg->uid_count || cfg->uid_start) &&
        rt_uid_range_check(cfg->uid_start, cfg->uid_count, err) < 0)
        return NULL;
    _cleanup_free_ char *lock = NULL, *last = NULL;
    size_t len;
    rt_runtime_t *rt = xcalloc(1, sizeof *rt);
    pthread_mutex_init(&rt->mu, NULL);
    rt->init_memfd = -1;
    rt->seccomp_memfd = -1;
    rt->lock_fd = -1;
    rt->uid_claim_fd = rt->cg_claim_fd = -1;
    rt->state_dir = xstrdup(cfg->state_dir);
    rt->sandboxes_dir = xasprintf("%s/sandboxes", cfg->state_dir);
    rt->cfg = *cfg;
    rt->cfg.state_dir = rt->state_dir;
    rt->cfg.cgroup_root = NULL; /* not ours; rt_claims_take copies it to cg_parent */
    if (sbx_mkdir_p(rt->sandboxes_dir, 0700, err) < 0)
        goto fail;
    lock = xasprintf("%s/lock", rt->state_dir);
    rt->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (rt->lock_fd < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s", lock);
        goto fail;
    }
    if (flock(rt->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        sbx_error_set(err, SBX_ERR_CONFLICT, "state directory %s is in use by another runtime",
                      rt->state_dir);
        goto fail;
    }
    if (rt_claims_take(rt, cfg->cgroup_root, err) < 0 ||
        rt_cg_detect(&rt->cg, rt->cg_parent, err) < 0 || rt_seccomp_build(&rt->seccomp, err) < 0)
        goto fail;
    rt->init_memfd = sealed_memfd_create("sandbox-init", rt_init_blob,
                                         (size_t)(rt_init_blob_end - rt_init_blob), err);
    if (rt->init_memfd < 0)
        goto fail;
    /* Exec helpers load the filter from here: a program that is not the
     * agent cannot take it from the agent's memory.  */
    rt->seccomp_memfd = sealed_memfd_create("sandbox-seccomp", rt->seccomp.filter,
                                            rt->seccomp.len * sizeof *rt->seccomp.filter, err);
    if (rt->seccomp_memfd < 0)
        goto fail;
    rt->cap_last = 40;
    if (sbx_read_file("/proc/sys/kernel/cap_last_cap", &last, &len, NULL) == 0)
        rt->cap_last = atoi(last);
    pthread_mutex_lock(&rt->mu);
    load_sandboxes(rt);
    pthread_mutex_unlock(&rt->mu);
    return rt;
fail:
    rt_close(rt);
    return NULL;
}

void rt_shutdown_begin(rt_runtime_t *rt, int grace_ms)
{
    if (rt)
        __atomic_store_n(&rt->cut_execs_at_ms, sbx_monotonic_ms() + grace_ms, __ATOMIC_RELAXED);
}

void rt_close(rt_runtime_t *rt)
{
    if (!rt)
        return;
    for (size_t i = 0; i < rt->n_sbs; i++)
        sandbox_unref(rt->sbs[i]);
    free(rt->sbs);
    /* An agent that ends with no sandbox leaves no empty cgroup behind.  */
    if (rt->n_sbs == 0)
        rt_cg_parent_remove(&rt->cg);
    rt_cg_done(&rt->cg);
    free(rt->seccomp.filter);
    if (rt->init_memfd >= 0)
        close(rt->init_memfd);
    if (rt->seccomp_memfd >= 0)
        close(rt->seccomp_memfd);
    rt_claims_release(rt);
    if (rt->lock_fd >= 0)
        close(rt->lock_fd);
    pthread_mutex_destroy(&rt->mu);
    free(rt->state_dir);
    free(rt->sandboxes_dir);
    free(rt);
}

static uint64_t read_proc_number(const char *path)
{
    char buf[32] = "";
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

static uint64_t at_most(uint64_t have, uint64_t cap)
{
    return cap && cap < have ? cap : have;
}

/* What the host has, cut to what the operator lets sandboxes have.  */
static void health_totals(const rt_runtime_t *rt, rt_health_t *out)
{
    struct sysinfo si;
    uint64_t ram = sysinfo(&si) == 0 ? (uint64_t)si.totalram * si.mem_unit / (1024 * 1024) : 0;
    out->memory_total_mib = at_most(ram, rt->cfg.capacity_memory_mib);
    /* The writable layers are tmpfs: RAM, never more than sandboxes get.  */
    out->disk_total_mib = at_most(out->memory_total_mib, rt->cfg.capacity_disk_mib);
    out->cpu_total = (double)sysconf(_SC_NPROCESSORS_ONLN);
    if (rt->cfg.capacity_cpu > 0 && rt->cfg.capacity_cpu < out->cpu_total)
        out->cpu_total = rt->cfg.capacity_cpu;
    /* Every task of every sandbox takes a pid (and a thread) of the whole
     * host, nested pid namespaces or not: the rest is left to the host's
     * own processes and the agent's helpers.  */
    out->pid_max = read_proc_number("/proc/sys/kernel/pid_max");
    out->threads_max = read_proc_number("/proc/sys/kernel/threads-max");
    uint64_t tasks = at_most(out->pid_max, out->threads_max);
    out->pids_total = at_most(tasks * RT_PIDS_SHARE_PERCENT / 100, rt->cfg.capacity_pids);
}

int rt_health(rt_runtime_t *rt, rt_health_t *out, sbx_error_t *err)
{
    if (!rt || !out)
        return sbx_error_set(err, SBX_ERR_INVALID, "rt_health: missing argument");
    memset(out, 0, sizeof *out);
    health_totals(rt, out);
    unsigned slots = rt->cfg.max_sandboxes;
    if (!slots) {
        /* An idle sandbox costs well under a MiB; a slot per 32 MiB
         * leaves room for them to do some work.  */
        uint64_t s = out->memory_total_mib / 32;
        slots = s > RT_MAX_SLOTS ? RT_MAX_SLOTS : (unsigned)s;
    }
    out->slots_total = slots < rt->n_slots ? slots : rt->n_slots;
    out->uid_start = rt->uid_start;
    out->uid_count = rt->n_slots * RT_UID_RANGE;
    snprintf(out->cgroup_parent, sizeof out->cgroup_parent, "%s", rt->cg_parent);
    pthread_mutex_lock(&rt->mu);
    out->slots_used = (unsigned)rt->n_sbs;
    for (size_t i = 0; i < rt->n_sbs; i++) {
        rt_sandbox_t *sb = rt->sbs[i];
        /* Racy read of a word-sized state is fine for a capacity figure.  */
        rt_state_t st = __atomic_load_n(&sb->state, __ATOMIC_RELAXED);
        if (st == RT_STATE_RUNNING || st == RT_STATE_SUSPENDED || st == RT_STATE_CREATING) {
            out->cpu_allocated += sb->cpu;
            out->memory_allocated_mib += sb->memory_mib;
            out->disk_allocated_mib += sb->disk_mib;
            out->pids_allocated += sb->pids_max;
        }
    }
    pthread_mutex_unlock(&rt->mu);
    size_t n = 0, u = 0;
    for (size_t i = 0; i < ARRAY_SIZE(drivers) && n + 1 < ARRAY_SIZE(out->drivers); i++) {
        char why[sizeof out->unavailable[0].why] = "";
        if (drivers[i]->usable(rt, why, sizeof why)) {
            out->drivers[n++] = drivers[i]->name;
        } else if (u < ARRAY_SIZE(out->unavailable)) {
            out->unavailable[u].name = drivers[i]->name;
            memcpy(out->unavailable[u++].why, why, sizeof why);
        }
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int spec_check(const rt_spec_t *spec, const rt_driver_ops_t **ops, sbx_error_t *err)
{
    if (!spec || !rt_id_valid(spec->id))
        return sbx_error_set(err, SBX_ERR_INVALID, "invalid sandbox id");
    *ops = driver_find(spec->driver ? spec->driver : "process");
    if (!*ops)
        return sbx_error_set(err, SBX_ERR_INVALID, "unknown isolation driver '%s'", spec->driver);
    if (!spec->rootfs || spec->rootfs[0] != '/')
        return sbx_error_set(err, SBX_ERR_INVALID, "rootfs must be an absolute path");
    struct stat st;
    if (stat(spec->rootfs, &st) < 0 || !S_ISDIR(st.st_mode))
        return sbx_error_set(err, SBX_ERR_INVALID, "rootfs %s is not a directory", spec->rootfs);
    if (!(spec->cpu >= 0 && spec->cpu <= 1024))
        return sbx_error_set(err, SBX_ERR_INVALID, "cpu must be between 0 and 1024 cores");
    if (spec->memory_mib > (1u << 24) || spec->disk_mib > (1u << 24) ||
        (spec->memory_mib && spec->memory_mib < 8) || spec->pids_max > (1u << 22))
        return sbx_error_set(err, SBX_ERR_INVALID, "memory, disk or pids limit out of range");
    if (spec->env) {
        if (!json_is_object(spec->env))
            return sbx_error_set(err, SBX_ERR_INVALID, "env must be an object of strings");
        const char *k;
        json_t *v;
        json_object_foreach(spec->env, k, v)
        {
            if (!json_is_string(v) || !*k || strchr(k, '='))
                return sbx_error_set(err, SBX_ERR_INVALID, "env must be an object of strings");
        }
    }
    return 0;
}

int rt_create(rt_runtime_t *rt, const rt_spec_t *spec, rt_info_t *out, sbx_error_t *err)
{
    const rt_driver_ops_t *ops = NULL;
    if (!rt || spec_check(spec, &ops, err) < 0)
        return rt ? -1 : sbx_error_set(err, SBX_ERR_INVALID, "no runtime");
    char why[192] = "";
    if (!ops->usable(rt, why, sizeof why))
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "the %s isolation is not available on this "
                             "host: %s",
                             ops->name, why);

    pthread_mutex_lock(&rt->mu);
    rt_sandbox_t *sb = registry_find_locked(rt, spec->id);
    if (sb) {
        /* Idempotent: the existing sandbox, once a concurrent create is done.  */
        atomic_fetch_add(&sb->refs, 1);
        pthread_mutex_unlock(&rt->mu);
        pthread_rwlock_wrlock(&sb->lock);
        refresh_locked(rt, sb);
        if (out)
            fill_info(rt, sb, out);
        pthread_rwlock_unlock(&sb->lock);
        sandbox_unref(sb);
        return 0;
    }
    unsigned slot;
    if (slot_alloc_locked(rt, &slot) < 0) {
        pthread_mutex_unlock(&rt->mu);
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "no free uid range for another sandbox");
    }
    sb = sandbox_new(rt, spec->id);
    sb->ops = ops;
    sb->rootfs = xstrdup(spec->rootfs);
    sb->image = spec->image ? xstrdup(spec->image) : NULL;
    sb->cpu = spec->cpu;
    sb->memory_mib = spec->memory_mib ? spec->memory_mib : RT_DEFAULT_MEMORY_MIB;
    sb->disk_mib = spec->disk_mib ? spec->disk_mib : RT_DEFAULT_DISK_MIB;
    sb->pids_max = spec->pids_max ? spec->pids_max : RT_DEFAULT_PIDS_MAX;
    sb->env = spec->env ? json_deep_copy(spec->env) : NULL;
    sb->slot = slot;
    sb->host_uid = rt->uid_start + slot * RT_UID_RANGE;
    sb->created_ms = sbx_now_ms();
    atomic_store(&sb->last_activity_ms, sb->created_ms);
    sb->state = RT_STATE_CREATING;
    pthread_rwlock_wrlock(&sb->lock);
    registry_add_locked(rt, sb);
    atomic_fetch_add(&sb->refs, 1);
    pthread_mutex_unlock(&rt->mu);

    int ret = -1;
    if (mkdir(sb->dir, 0700) < 0 && errno != EEXIST) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", sb->dir);
    } else if (rt_sandbox_save(rt, sb, err) == 0 && ops->create(rt, sb, err) == 0 &&
               ops->start(rt, sb, err) == 0) {
        sb->state = RT_STATE_RUNNING;
        ret = rt_sandbox_save(rt, sb, err);
    }
    if (ret < 0) {
        /* Leave nothing behind: the caller may retry from scratch.  */
        sbx_error_t cerr = {0};
        if (ops->destroy(rt, sb, &cerr) < 0)
            sbx_log(SBX_LOG_WARN, "runtime", "cleaning failed create of %s: %s", sb->id, cerr.msg);
        sb->state = RT_STATE_FAILED;
        pthread_rwlock_unlock(&sb->lock);
        registry_remove(rt, sb);
        sandbox_unref(sb);
        return -1;
    }
    if (out)
        fill_info(rt, sb, out);
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return 0;
}

int rt_get(rt_runtime_t *rt, const char *id, rt_info_t *out, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return -1;
    pthread_rwlock_wrlock(&sb->lock);
    int ret = 0;
    if (sandbox_removed(rt, sb)) {
        ret = sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    } else {
        refresh_locked(rt, sb);
        if (out)
            fill_info(rt, sb, out);
    }
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return ret;
}

/* Whether the recorded sandbox was made from this spec, its defaults
 * filled in as rt_create fills them.  */
static bool spec_same(const rt_sandbox_t *sb, const rt_spec_t *spec)
{
    json_t *empty = json_object();
    const json_t *a = sb->env ? sb->env : empty, *b = spec->env ? spec->env : empty;
    bool env_same = json_equal((json_t *)a, (json_t *)b);
    json_decref(empty);
    return env_same && strcmp(sb->ops->name, spec->driver ? spec->driver : "process") == 0 &&
           strcmp(sb->image ? sb->image : "", spec->image ? spec->image : "") == 0 &&
           sb->cpu == spec->cpu &&
           sb->memory_mib == (spec->memory_mib ? spec->memory_mib : RT_DEFAULT_MEMORY_MIB) &&
           sb->disk_mib == (spec->disk_mib ? spec->disk_mib : RT_DEFAULT_DISK_MIB) &&
           sb->pids_max == (spec->pids_max ? spec->pids_max : RT_DEFAULT_PIDS_MAX);
}

int rt_spec_compare(rt_runtime_t *rt, const rt_spec_t *spec, bool *same, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, spec->id, err);
    if (!sb)
        return -1;
    pthread_rwlock_rdlock(&sb->lock);
    int ret = 0;
    if (sandbox_removed(rt, sb))
        ret = sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", spec->id);
    else
        *same = spec_same(sb, spec);
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return ret;
}

/* The sandbox's network namespace, for the agent's egress links: opened
 * through /proc while holding the lock, then checked against the init's
 * pidfd, so a recycled pid never hands out another process's namespace.  */
int rt_netns_open(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return -1;
    pthread_rwlock_rdlock(&sb->lock);
    int fd = -1;
    if (sandbox_removed(rt, sb)) {
        sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    } else if (sb->ops->netns_open) {
        fd = sb->ops->netns_open(rt, sb, err);
    } else if (sb->init_pidfd < 0 || sb->init_pid <= 0) {
        sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", id);
    } else {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/net", (int)sb->init_pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || syscall(SYS_pidfd_send_signal, sb->init_pidfd, 0, NULL, 0) < 0) {
            if (fd >= 0)
                close(fd);
            fd = -1;
            sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is not running", id);
        }
    }
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return fd;
}

int rt_net_changed(rt_runtime_t *rt, const char *id, const rt_net_link_t *link, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return -1;
    if (!sb->ops->net_changed) { /* a sandbox's driver never changes */
        sandbox_unref(sb);
        return 0;
    }
    pthread_rwlock_wrlock(&sb->lock);
    int ret = 0;
    if (sandbox_removed(rt, sb))
        ret = sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    else
        ret = sb->ops->net_changed(rt, sb, link, err);
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return ret;
}

int rt_list(rt_runtime_t *rt, rt_info_t **out, size_t *n, sbx_error_t *err)
{
    if (!rt || !out || !n)
        return sbx_error_set(err, SBX_ERR_INVALID, "rt_list: missing argument");
    pthread_mutex_lock(&rt->mu);
    size_t count = rt->n_sbs;
    rt_sandbox_t **copy = xcalloc(count ? count : 1, sizeof *copy);
    for (size_t i = 0; i < count; i++) {
        copy[i] = rt->sbs[i];
        atomic_fetch_add(&copy[i]->refs, 1);
    }
    pthread_mutex_unlock(&rt->mu);
    rt_info_t *infos = xcalloc(count ? count : 1, sizeof *infos);
    size_t k = 0;
    for (size_t i = 0; i < count; i++) {
        rt_sandbox_t *sb = copy[i];
        pthread_rwlock_wrlock(&sb->lock);
        if (!sandbox_removed(rt, sb)) {
            refresh_locked(rt, sb);
            fill_info(rt, sb, &infos[k++]);
        }
        pthread_rwlock_unlock(&sb->lock);
        sandbox_unref(sb);
    }
    free(copy);
    *out = infos;
    *n = k;
    return 0;
}

int rt_destroy(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    sbx_error_t nf = {0};
    rt_sandbox_t *sb = sandbox_get(rt, id, &nf);
    if (!sb) {
        if (nf.code == SBX_ERR_NOT_FOUND)
            return 0; /* idempotent */
        if (err)
            *err = nf;
        return -1;
    }
    pthread_rwlock_wrlock(&sb->lock);
    int ret = 0;
    if (!sandbox_removed(rt, sb)) {
        ret = sb->ops->destroy(rt, sb, err);
        if (ret < 0) {
            sb->state = RT_STATE_FAILED;
            snprintf(sb->message, sizeof sb->message, "destroy: %s", err ? err->msg : "failed");
            sbx_error_t serr = {0};
            (void)rt_sandbox_save(rt, sb, &serr);
        }
    }
    pthread_rwlock_unlock(&sb->lock);
    if (ret == 0)
        registry_remove(rt, sb);
    sandbox_unref(sb);
    return ret;
}

enum op { OP_STOP, OP_START, OP_SUSPEND, OP_RESUME };

/* State transitions; calls that find the sandbox already where they would
 * take it succeed without doing anything.  */
static int transition_locked(rt_runtime_t *rt, rt_sandbox_t *sb, enum op op, sbx_error_t *err)
{
    rt_state_t s = sb->state;
    int r = 0;
    switch (op) {
    case OP_STOP:
        if (s == RT_STATE_STOPPED)
            return 0;
        if (s == RT_STATE_CREATING)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is being created", sb->id);
        r = sb->ops->stop(rt, sb, err);
        if (r == 0) {
            sb->state = RT_STATE_STOPPED;
            sb->message[0] = 0;
        }
        break;
    case OP_START:
        if (s == RT_STATE_RUNNING)
            return 0;
        if (s == RT_STATE_SUSPENDED)
            return transition_locked(rt, sb, OP_RESUME, err);
        if (s == RT_STATE_CREATING)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is being created", sb->id);
        if (s == RT_STATE_FAILED && sb->ops->stop(rt, sb, err) < 0)
            return -1;
        r = sb->ops->start(rt, sb, err);
        if (r == 0) {
            sb->state = RT_STATE_RUNNING;
            sb->message[0] = 0;
        } else {
            sb->state = RT_STATE_FAILED;
            snprintf(sb->message, sizeof sb->message, "start: %s", err ? err->msg : "failed");
        }
        break;
    case OP_SUSPEND:
        if (s == RT_STATE_SUSPENDED)
            return 0;
        if (s != RT_STATE_RUNNING)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is %s, not running", sb->id,
                                 rt_state_name(s));
        r = sb->ops->suspend(rt, sb, err);
        if (r == 0)
            sb->state = RT_STATE_SUSPENDED;
        break;
    case OP_RESUME:
        if (s == RT_STATE_RUNNING)
            return 0;
        if (s != RT_STATE_SUSPENDED)
            return sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is %s, not suspended", sb->id,
                                 rt_state_name(s));
        r = sb->ops->resume(rt, sb, err);
        if (r == 0)
            sb->state = RT_STATE_RUNNING;
        break;
    }
    sbx_error_t serr = {0};
    if (sb->state != s && rt_sandbox_save(rt, sb, r == 0 ? err : &serr) < 0)
        r = -1;
    return r;
}

static int transition(rt_runtime_t *rt, const char *id, enum op op, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return -1;
    pthread_rwlock_wrlock(&sb->lock);
    int ret;
    if (sandbox_removed(rt, sb)) {
        ret = sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    } else {
        refresh_locked(rt, sb);
        ret = transition_locked(rt, sb, op, err);
        atomic_store(&sb->last_activity_ms, sbx_now_ms());
    }
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
    return ret;
}

int rt_stop(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    return transition(rt, id, OP_STOP, err);
}

int rt_start(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    return transition(rt, id, OP_START, err);
}

int rt_suspend(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    return transition(rt, id, OP_SUSPEND, err);
}

int rt_resume(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    return transition(rt, id, OP_RESUME, err);
}

/* The sandbox, referenced and read-locked, once it runs: a suspended one
 * is resumed first.  */
static rt_sandbox_t *sandbox_running(rt_runtime_t *rt, const char *id, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return NULL;
    for (;;) {
        pthread_rwlock_rdlock(&sb->lock);
        rt_state_t s = sb->state;
        bool removed = sandbox_removed(rt, sb);
        if (!removed && s == RT_STATE_RUNNING && sb->init_pidfd >= 0)
            break;
        pthread_rwlock_unlock(&sb->lock);
        if (removed)
            sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
        else if (s != RT_STATE_SUSPENDED)
            sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is %s", id,
                          s == RT_STATE_RUNNING ? "not running" : rt_state_name(s));
        if (removed || s != RT_STATE_SUSPENDED || transition(rt, id, OP_RESUME, err) < 0) {
            sandbox_unref(sb);
            return NULL;
        }
    }
    atomic_store(&sb->last_activity_ms, sbx_now_ms());
    return sb;
}

int rt_exec(rt_runtime_t *rt, const char *id, const rt_exec_request_t *req, rt_exec_result_t *out,
            sbx_error_t *err)
{
    if (!req || !out || !req->argv || !req->argv[0] || !req->argv[0][0])
        return sbx_error_set(err, SBX_ERR_INVALID, "exec needs a command");
    if (req->timeout_ms < 0 || (req->stdin_len && !req->stdin_data))
        return sbx_error_set(err, SBX_ERR_INVALID, "invalid exec request");
    if (req->cwd && req->cwd[0] != '/')
        return sbx_error_set(err, SBX_ERR_INVALID, "cwd must be an absolute path");
    memset(out, 0, sizeof *out);
    rt_sandbox_t *sb = sandbox_running(rt, id, err);
    if (!sb)
        return -1;
    /* The driver releases the read lock once the command is launched.  */
    int ret = sb->ops->exec(rt, sb, req, out, err);
    atomic_store(&sb->last_activity_ms, sbx_now_ms());
    sandbox_unref(sb);
    if (ret < 0)
        rt_exec_result_done(out);
    return ret;
}

int rt_proc_start(rt_runtime_t *rt, const char *id, const rt_proc_request_t *req, rt_proc_t **out,
                  sbx_error_t *err)
{
    if (!req || !out || !req->argv || !req->argv[0] || !req->argv[0][0])
        return sbx_error_set(err, SBX_ERR_INVALID, "a process needs a command");
    if (req->cwd && req->cwd[0] != '/')
        return sbx_error_set(err, SBX_ERR_INVALID, "cwd must be an absolute path");
    rt_sandbox_t *sb = sandbox_running(rt, id, err);
    if (!sb)
        return -1;
    int ret;
    if (!sb->ops->spawn) {
        pthread_rwlock_unlock(&sb->lock);
        ret = sbx_error_set(err, SBX_ERR_CONFLICT, "the %s driver runs no background processes",
                            sb->ops->name);
    } else {
        ret = sb->ops->spawn(rt, sb, req, out, err); /* releases the lock */
    }
    sandbox_unref(sb);
    return ret;
}

/* ---- for files.c ------------------------------------------------------------ */

int rt_sandbox_hold(rt_runtime_t *rt, const char *id, rt_sandbox_t **sbp, sbx_error_t *err)
{
    rt_sandbox_t *sb = sandbox_get(rt, id, err);
    if (!sb)
        return -1;
    pthread_rwlock_rdlock(&sb->lock);
    int ret = -1;
    if (sandbox_removed(rt, sb))
        sbx_error_set(err, SBX_ERR_NOT_FOUND, "sandbox %s not found", id);
    else if (sb->state == RT_STATE_CREATING)
        sbx_error_set(err, SBX_ERR_CONFLICT, "sandbox %s is being created", id);
    else
        ret = 0;
    if (ret < 0) {
        pthread_rwlock_unlock(&sb->lock);
        sandbox_unref(sb);
        return -1;
    }
    *sbp = sb;
    return 0;
}

int rt_sandbox_root_open(rt_runtime_t *rt, const char *id, rt_sandbox_t **sbp, sbx_error_t *err)
{
    rt_sandbox_t *sb;
    if (rt_sandbox_hold(rt, id, &sb, err) < 0)
        return -1;
    int fd = sb->ops->root_fd(rt, sb, err);
    if (fd < 0) {
        pthread_rwlock_unlock(&sb->lock);
        sandbox_unref(sb);
        return -1;
    }
    atomic_store(&sb->last_activity_ms, sbx_now_ms());
    *sbp = sb;
    return fd;
}

void rt_sandbox_root_close(rt_sandbox_t *sb, int fd)
{
    if (fd >= 0)
        close(fd);
    pthread_rwlock_unlock(&sb->lock);
    sandbox_unref(sb);
}
