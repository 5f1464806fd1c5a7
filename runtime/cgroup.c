/* cgroup.c -- a cgroup per sandbox (cpu, memory, pids limits, freezer) on
 * cgroup v1 (one directory per controller hierarchy) or v2 (one unified
 * directory), plus a child cgroup per exec so a timeout can kill the exec's
 * whole process tree.
 *
 * v1 layout: <ctrl>/<parent>/<id> for cpu, cpuacct, memory, pids and
 * freezer; exec children exist only in the pids hierarchy, under
 * pids/<parent>/<id>/<sub>.  v2 layout: <parent>/<id> with limits in its own
 * files and no controllers enabled below it, so processes may live in it and
 * in its exec children at the same time.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include "runtime/driver.h"

static const char *const cg_names[RT_CG_N] = {"cpu", "cpuacct", "memory", "pids", "freezer"};

static int write_str(const char *path, const char *s)
{
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = strlen(s);
    if (write(fd, s, len) != (ssize_t)len)
        return -1;
    return 0;
}

static int read_small(const char *path, char *buf, size_t len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, len - 1);
    if (r < 0)
        return -1;
    buf[r] = 0;
    return 0;
}

static uint64_t read_u64(const char *path)
{
    char buf[64];
    if (read_small(path, buf, sizeof buf) < 0)
        return 0;
    return strtoull(buf, NULL, 10);
}

int rt_cg_detect(rt_cgroups_t *cg, const char *parent, sbx_error_t *err)
{
    memset(cg, 0, sizeof *cg);
    cg->parent = xstrdup(parent ? parent : "sandboxd");
    struct statfs sfs;
    if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
        cg->v2 = true;
        cg->root = xstrdup("/sys/fs/cgroup");
        char buf[512];
        if (read_small("/sys/fs/cgroup/cgroup.controllers", buf, sizeof buf) < 0 ||
            !strstr(buf, "memory") || !strstr(buf, "pids"))
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                                 "cgroup v2 lacks the memory or pids controller");
        return 0;
    }
    for (int i = 0; i < RT_CG_N; i++) {
        char *p = xasprintf("/sys/fs/cgroup/%s", cg_names[i]);
        if (statfs(p, &sfs) == 0 && sfs.f_type == CGROUP_SUPER_MAGIC)
            cg->v1[i] = p;
        else
            free(p);
    }
    if (!cg->v1[RT_CG_MEMORY] || !cg->v1[RT_CG_PIDS] || !cg->v1[RT_CG_FREEZER])
        return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                             "cgroup v1 memory, pids and freezer controllers are required");
    return 0;
}

void rt_cg_done(rt_cgroups_t *cg)
{
    free(cg->root);
    for (int i = 0; i < RT_CG_N; i++)
        free(cg->v1[i]);
    free(cg->parent);
    memset(cg, 0, sizeof *cg);
}

void rt_cg_parent_remove(const rt_cgroups_t *cg)
{
    for (int i = 0; i < RT_CG_N; i++) {
        const char *base = cg->v2 ? cg->root : cg->v1[i];
        if (!base || (cg->v2 && i > 0))
            continue;
        _cleanup_free_ char *dir = xasprintf("%s/%s", base, cg->parent);
        (void)rmdir(dir); /* EBUSY while a sandbox's cgroup is under it */
    }
}

/* Directory of the sandbox (sub NULL) or of one exec child in hierarchy i
 * (ignored for v2); NULL when that v1 controller is absent.  */
static char *cg_dir(const rt_cgroups_t *cg, int i, const char *id, const char *sub)
{
    const char *base = cg->v2 ? cg->root : cg->v1[i];
    if (!base)
        return NULL;
    if (sub)
        return xasprintf("%s/%s/%s/%s", base, cg->parent, id, sub);
    return xasprintf("%s/%s/%s", base, cg->parent, id);
}

static int mkdir_ok(const char *path)
{
    return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static void v2_enable_controllers(const char *dir)
{
    /* Each may be missing (no cpu controller); set them one by one.  */
    const char *ctrls[] = {"+cpu", "+memory", "+pids"};
    char *p = xasprintf("%s/cgroup.subtree_control", dir);
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++)
        (void)write_str(p, ctrls[i]);
    free(p);
}

static int cg_create_v2(const rt_cgroups_t *cg, const char *id, const rt_cg_limits_t *lim,
                        sbx_error_t *err)
{
    _cleanup_free_ char *parent = xasprintf("%s/%s", cg->root, cg->parent);
    if (mkdir_ok(parent) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", parent);
    v2_enable_controllers(cg->root);
    v2_enable_controllers(parent);
    _cleanup_free_ char *dir = cg_dir(cg, 0, id, NULL);
    if (mkdir_ok(dir) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", dir);
    char val[64], *p;
    snprintf(val, sizeof val, "%llu", (unsigned long long)lim->memory_bytes);
    p = xasprintf("%s/memory.max", dir);
    int r = write_str(p, val);
    free(p);
    if (r < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "set memory.max");
    p = xasprintf("%s/memory.swap.max", dir);
    (void)write_str(p, "0");
    free(p);
    snprintf(val, sizeof val, "%u", lim->pids_max);
    p = xasprintf("%s/pids.max", dir);
    r = write_str(p, val);
    free(p);
    if (r < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "set pids.max");
    if (lim->cpu > 0) {
        snprintf(val, sizeof val, "%lld 100000",
                 (long long)(lim->cpu * 100000 < 1000 ? 1000 : lim->cpu * 100000));
        p = xasprintf("%s/cpu.max", dir);
        r = write_str(p, val);
        free(p);
        if (r < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "set cpu.max");
    }
    return 0;
}

static int set_v1(const rt_cgroups_t *cg, int i, const char *id, const char *file, const char *val,
                  sbx_error_t *err)
{
    _cleanup_free_ char *p = xasprintf("%s/%s/%s/%s", cg->v1[i], cg->parent, id, file);
    if (write_str(p, val) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", p);
    return 0;
}

int rt_cg_create(const rt_cgroups_t *cg, const char *id, const rt_cg_limits_t *lim,
                 sbx_error_t *err)
{
    if (cg->v2)
        return cg_create_v2(cg, id, lim, err);
    for (int i = 0; i < RT_CG_N; i++) {
        if (!cg->v1[i])
            continue;
        _cleanup_free_ char *parent = xasprintf("%s/%s", cg->v1[i], cg->parent);
        _cleanup_free_ char *dir = cg_dir(cg, i, id, NULL);
        if (mkdir_ok(parent) < 0 || mkdir_ok(dir) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir %s", dir);
    }
    char val[64];
    snprintf(val, sizeof val, "%llu", (unsigned long long)lim->memory_bytes);
    if (set_v1(cg, RT_CG_MEMORY, id, "memory.limit_in_bytes", val, err) < 0)
        return -1;
    /* The limit above bounds RAM only: without this one a sandbox could
     * spill into the host's swap without bound.  Absent when the kernel
     * does not account swap (then there is none to spill into either).  */
    _cleanup_free_ char *memsw =
        xasprintf("%s/%s/%s/memory.memsw.limit_in_bytes", cg->v1[RT_CG_MEMORY], cg->parent, id);
    if (access(memsw, F_OK) == 0 &&
        set_v1(cg, RT_CG_MEMORY, id, "memory.memsw.limit_in_bytes", val, err) < 0)
        return -1;
    snprintf(val, sizeof val, "%u", lim->pids_max);
    if (set_v1(cg, RT_CG_PIDS, id, "pids.max", val, err) < 0)
        return -1;
    if (cg->v1[RT_CG_CPU]) {
        if (lim->cpu > 0) {
            long long q = (long long)(lim->cpu * 100000);
            snprintf(val, sizeof val, "%lld", q < 1000 ? 1000 : q);
            if (set_v1(cg, RT_CG_CPU, id, "cpu.cfs_period_us", "100000", err) < 0 ||
                set_v1(cg, RT_CG_CPU, id, "cpu.cfs_quota_us", val, err) < 0)
                return -1;
        } else if (set_v1(cg, RT_CG_CPU, id, "cpu.cfs_quota_us", "-1", err) < 0) {
            return -1;
        }
    }
    return 0;
}

/* rmdir every child directory of dir (exec cgroups), ignoring busy ones.  */
static void rmdir_children(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        (void)unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

void rt_cg_exec_done(const rt_cgroups_t *cg, const char *id, const char *sub)
{
    _cleanup_free_ char *dir = cg_dir(cg, RT_CG_PIDS, id, sub);
    if (dir)
        (void)rmdir(dir);
}

void rt_cg_sweep(const rt_cgroups_t *cg, const char *id)
{
    _cleanup_free_ char *dir = cg_dir(cg, RT_CG_PIDS, id, NULL);
    if (dir)
        rmdir_children(dir);
}

int rt_cg_destroy(const rt_cgroups_t *cg, const char *id, sbx_error_t *err)
{
    int ret = 0;
    for (int i = 0; i < RT_CG_N; i++) {
        if (cg->v2 && i > 0)
            break;
        _cleanup_free_ char *dir = cg_dir(cg, i, id, NULL);
        if (!dir)
            continue;
        rmdir_children(dir);
        /* A cgroup whose last process just died can stay busy for a moment.  */
        int64_t deadline = sbx_monotonic_ms() + 2000;
        while (rmdir(dir) < 0 && errno != ENOENT) {
            if (errno != EBUSY || sbx_monotonic_ms() > deadline) {
                ret = sbx_error_errno(err, SBX_ERR_INTERNAL, "rmdir %s", dir);
                break;
            }
            usleep(5000);
        }
    }
    return ret;
}

static int attach_one(const char *dir, pid_t pid, sbx_error_t *err)
{
    _cleanup_free_ char *p = xasprintf("%s/cgroup.procs", dir);
    char val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    if (write_str(p, val) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "join %s", p);
    return 0;
}

int rt_cg_attach(const rt_cgroups_t *cg, const char *id, pid_t pid, sbx_error_t *err)
{
    for (int i = 0; i < RT_CG_N; i++) {
        if (cg->v2 && i > 0)
            break;
        _cleanup_free_ char *dir = cg_dir(cg, i, id, NULL);
        if (dir && attach_one(dir, pid, err) < 0)
            return -1;
    }
    return 0;
}

/* Open dir/cgroup.procs for writing, making dir first when `make`.  */
static int exec_procs_open(const char *dir, bool make)
{
    if (make && mkdir(dir, 0755) < 0)
        return -1;
    _cleanup_free_ char *p = xasprintf("%s/cgroup.procs", dir);
    return open(p, O_WRONLY | O_CLOEXEC);
}

int rt_cg_exec_open(const rt_cgroups_t *cg, const char *id, const char *sub, int *fds, int *n,
                    sbx_error_t *err)
{
    *n = 0;
    for (int i = 0; i < RT_CG_N; i++) {
        if (cg->v2 && i > 0)
            break;
        bool child = cg->v2 || i == RT_CG_PIDS;
        _cleanup_free_ char *dir = cg_dir(cg, i, id, child ? sub : NULL);
        if (!dir)
            continue;
        int fd = exec_procs_open(dir, child);
        if (fd < 0) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "exec cgroup %s", dir);
            for (int j = 0; j < *n; j++)
                close(fds[j]);
            *n = 0;
            return -1;
        }
        fds[(*n)++] = fd;
    }
    return 0;
}

/* SIGKILL every pid listed in dir/cgroup.procs and in its children's;
 * returns how many were listed (-1 when dir is gone).  */
static int kill_listed(const char *dir)
{
    _cleanup_free_ char *p = xasprintf("%s/cgroup.procs", dir);
    FILE *f = fopen(p, "re");
    if (!f)
        return -1;
    int n = 0, pid;
    while (fscanf(f, "%d", &pid) == 1) {
        (void)kill(pid, SIGKILL);
        n++;
    }
    fclose(f);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_type != DT_DIR || de->d_name[0] == '.')
                continue;
            _cleanup_free_ char *child = xasprintf("%s/%s", dir, de->d_name);
            int c = kill_listed(child);
            if (c > 0)
                n += c;
        }
        closedir(d);
    }
    return n;
}

int rt_cg_kill(const rt_cgroups_t *cg, const char *id, const char *sub, int timeout_ms,
               sbx_error_t *err)
{
    _cleanup_free_ char *dir = cg_dir(cg, RT_CG_PIDS, id, sub);
    if (cg->v2) {
        _cleanup_free_ char *p = xasprintf("%s/cgroup.kill", dir);
        (void)write_str(p, "1");
    } else {
        /* Forbid forks first, so the list we kill cannot grow behind us;
         * the sandbox-wide limit is put back by the caller's next start.  */
        _cleanup_free_ char *p = xasprintf("%s/pids.max", dir);
        (void)write_str(p, "0");
    }
    /* Frozen processes do not die until thawed.  */
    if (!sub)
        (void)rt_cg_freeze(cg, id, false, NULL);
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    for (;;) {
        int n = kill_listed(dir);
        if (n <= 0)
            return 0;
        if (sbx_monotonic_ms() > deadline)
            return sbx_error_set(err, SBX_ERR_INTERNAL, "%d processes of %s survive SIGKILL", n,
                                 id);
        usleep(2000);
    }
}

static bool v2_frozen(const char *dir)
{
    _cleanup_free_ char *p = xasprintf("%s/cgroup.events", dir);
    char buf[512];
    if (read_small(p, buf, sizeof buf) < 0)
        return false;
    return strstr(buf, "frozen 1") != NULL;
}

bool rt_cg_is_frozen(const rt_cgroups_t *cg, const char *id)
{
    _cleanup_free_ char *dir = cg_dir(cg, cg->v2 ? 0 : RT_CG_FREEZER, id, NULL);
    if (cg->v2)
        return v2_frozen(dir);
    _cleanup_free_ char *p = xasprintf("%s/freezer.state", dir);
    char buf[64];
    return read_small(p, buf, sizeof buf) == 0 && strncmp(buf, "FROZEN", 6) == 0;
}

int rt_cg_freeze(const rt_cgroups_t *cg, const char *id, bool frozen, sbx_error_t *err)
{
    _cleanup_free_ char *dir = cg_dir(cg, cg->v2 ? 0 : RT_CG_FREEZER, id, NULL);
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, cg->v2 ? "cgroup.freeze" : "freezer.state");
    const char *val = cg->v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
    if (write_str(p, val) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "write %s", p);
    if (!frozen)
        return 0;
    /* Freezing is asynchronous: wait until every task is frozen.  */
    int64_t deadline = sbx_monotonic_ms() + 5000;
    while (!rt_cg_is_frozen(cg, id)) {
        if (sbx_monotonic_ms() > deadline) {
            (void)write_str(p, cg->v2 ? "0" : "THAWED");
            return sbx_error_set(err, SBX_ERR_TIMEOUT, "sandbox %s did not freeze", id);
        }
        if (!cg->v2)
            (void)write_str(p, "FROZEN");
        usleep(1000);
    }
    return 0;
}

void rt_cg_usage(const rt_cgroups_t *cg, const char *id, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    *memory_bytes = *cpu_us = 0;
    if (cg->v2) {
        _cleanup_free_ char *dir = cg_dir(cg, 0, id, NULL);
        _cleanup_free_ char *m = xasprintf("%s/memory.current", dir);
        *memory_bytes = read_u64(m);
        _cleanup_free_ char *c = xasprintf("%s/cpu.stat", dir);
        char buf[1024];
        if (read_small(c, buf, sizeof buf) == 0) {
            char *u = strstr(buf, "usage_usec ");
            if (u)
                *cpu_us = strtoull(u + 11, NULL, 10);
        }
        return;
    }
    _cleanup_free_ char *m = cg_dir(cg, RT_CG_MEMORY, id, NULL);
    _cleanup_free_ char *mp = xasprintf("%s/memory.usage_in_bytes", m);
    *memory_bytes = read_u64(mp);
    _cleanup_free_ char *c = cg_dir(cg, RT_CG_CPUACCT, id, NULL);
    if (c) {
        _cleanup_free_ char *cp = xasprintf("%s/cpuacct.usage", c);
        *cpu_us = read_u64(cp) / 1000;
    }
}

int rt_cg_fork_open(const rt_cgroups_t *cg, const char *id, int *fd, sbx_error_t *err)
{
    *fd = -1;
    if (cg->v2)
        return 0;
    _cleanup_free_ char *dir = cg_dir(cg, RT_CG_PIDS, id, NULL);
    *fd = exec_procs_open(dir, false);
    if (*fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open %s/cgroup.procs", dir);
    return 0;
}

void rt_cg_pressure(const rt_cgroups_t *cg, const char *id, rt_cg_pressure_t *out)
{
    memset(out, 0, sizeof *out);
    _cleanup_free_ char *mem = cg_dir(cg, cg->v2 ? 0 : RT_CG_MEMORY, id, NULL);
    _cleanup_free_ char *pids = cg_dir(cg, cg->v2 ? 0 : RT_CG_PIDS, id, NULL);
    _cleanup_free_ char *used =
        xasprintf("%s/%s", mem, cg->v2 ? "memory.current" : "memory.usage_in_bytes");
    _cleanup_free_ char *limit =
        xasprintf("%s/%s", mem, cg->v2 ? "memory.max" : "memory.limit_in_bytes");
    _cleanup_free_ char *cur = xasprintf("%s/pids.current", pids);
    _cleanup_free_ char *max = xasprintf("%s/pids.max", pids);
    /* "max" (no limit) reads as 0.  */
    out->memory_bytes = read_u64(used);
    out->memory_limit = read_u64(limit);
    out->pids = read_u64(cur);
    out->pids_max = read_u64(max);
    if (!cg->v2) {
        _cleanup_free_ char *oom = xasprintf("%s/memory.oom_control", mem);
        char buf[128];
        out->under_oom = read_small(oom, buf, sizeof buf) == 0 && strstr(buf, "under_oom 1");
    }
}
