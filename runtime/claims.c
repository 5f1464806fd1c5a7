/* claims.c -- keeps the runtimes of one host apart: each gets a host uid
 * range and a cgroup parent no other runtime on the host uses.
 *
 * A claim is a file in RT_CLAIM_DIR ("uids-<start>-<count>" or
 * "cgroup-<name>") that names its owner's state directory and that the
 * owner holds flock'ed for its life.  A claim nobody holds is still kept
 * while its owner's state directory records it (<state_dir>/claims.json):
 * a stopped agent's sandboxes keep running with those uids in that cgroup
 * parent, and the agent takes the same claims again when it restarts.  A
 * claim whose owner no longer records it is removed by the next runtime
 * that looks.  One lock file serialises all of this across processes.
 * The directory is on disk, not in /run: after a reboot, a new agent that
 * happens to start first must not take a range an older one recorded.  */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>

#include "runtime/driver.h"

#define RECORD "claims.json"

typedef struct record {
    bool found;
    uint32_t uid_start, uid_count;
    char cgroup[64];
} record_t;

typedef struct span {
    uint64_t start, end; /* host uids [start, end) */
    char *owner;
    bool live;
} span_t;

enum { CLAIM_FREE, CLAIM_LIVE, CLAIM_KEPT };

/* ---- records ----------------------------------------------------------- */

static bool cgroup_name_ok(const char *s)
{
    return s && *s && strlen(s) < 64 && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* The claims a state directory records; a missing or unreadable record
 * records nothing.  */
static void record_read(const char *state_dir, record_t *rec)
{
    memset(rec, 0, sizeof *rec);
    _cleanup_free_ char *path = xasprintf("%s/" RECORD, state_dir);
    _cleanup_json_ json_t *j = json_load_file(path, 0, NULL);
    json_int_t start = -1, count = -1;
    const char *cg = NULL;
    if (!j || json_unpack(j, "{s:I, s:I, s:s}", "uidStart", &start, "uidCount", &count,
                          "cgroupParent", &cg) < 0)
        return;
    if (start < 0 || start > UINT32_MAX || count <= 0 || count > UINT32_MAX || !cgroup_name_ok(cg))
        return;
    rec->found = true;
    rec->uid_start = (uint32_t)start;
    rec->uid_count = (uint32_t)count;
    snprintf(rec->cgroup, sizeof rec->cgroup, "%s", cg);
}

static int record_write(const char *state_dir, const record_t *rec, sbx_error_t *err)
{
    _cleanup_json_ json_t *j =
        json_pack("{s:I, s:I, s:s}", "uidStart", (json_int_t)rec->uid_start, "uidCount",
                  (json_int_t)rec->uid_count, "cgroupParent", rec->cgroup);
    if (!j)
        return sbx_error_set(err, SBX_ERR_INTERNAL, "encode claims record");
    _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
    _cleanup_free_ char *path = xasprintf("%s/" RECORD, state_dir);
    return sbx_write_file_atomic(path, text, strlen(text), 0600, err);
}

static char *uid_claim_name(uint32_t start, uint32_t count)
{
    return xasprintf("uids-%u-%u", start, count);
}

static bool uid_claim_parse(const char *name, uint64_t *start, uint64_t *end)
{
    unsigned s, c;
    int used = 0;
    if (sscanf(name, "uids-%u-%u%n", &s, &c, &used) != 2 || name[used] != 0)
        return false;
    _cleanup_free_ char *canon = uid_claim_name(s, c);
    if (strcmp(canon, name) != 0)
        return false;
    *start = s;
    *end = (uint64_t)s + c;
    return true;
}

/* Does the runtime of state_dir still record claim `name`?  */
static bool owner_keeps(const char *state_dir, const char *name)
{
    record_t rec;
    record_read(state_dir, &rec);
    if (!rec.found)
        return false;
    _cleanup_free_ char *uids = uid_claim_name(rec.uid_start, rec.uid_count);
    _cleanup_free_ char *cg = xasprintf("cgroup-%s", rec.cgroup);
    return strcmp(name, uids) == 0 || strcmp(name, cg) == 0;
}

/* ---- claim files --------------------------------------------------------- */

static char *owner_read(int fd)
{
    char buf[PATH_MAX + 2];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    buf[strcspn(buf, "\n")] = 0;
    return buf[0] == '/' ? xstrdup(buf) : NULL;
}

/* Whether claim `name` is held, kept by its owner's record, or free (then
 * its file is gone).  Called with the claims lock held.  */
static int claim_probe(int dirfd, const char *name, const char *self, char **owner)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return CLAIM_FREE;
    _cleanup_free_ char *who = owner_read(fd);
    int st;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        st = CLAIM_LIVE;
    } else if (who && strcmp(who, self) != 0 && owner_keeps(who, name)) {
        st = CLAIM_KEPT;
    } else {
        (void)unlinkat(dirfd, name, 0);
        st = CLAIM_FREE;
    }
    if (owner)
        *owner = TAKE_PTR(who);
    return st;
}

/* Create claim `name` for self and hold it; the caller has checked it is
 * free.  */
static int claim_create(int dirfd, const char *name, const char *self, sbx_error_t *err)
{
    int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "create claim %s/%s", RT_CLAIM_DIR, name);
    size_t len = strlen(self);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 || ftruncate(fd, 0) < 0 ||
        pwrite(fd, self, len, 0) != (ssize_t)len || pwrite(fd, "\n", 1, (off_t)len) != 1) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "claim %s/%s", RT_CLAIM_DIR, name);
        close(fd);
        return -1;
    }
    return fd;
}

static const char *claim_how(int st)
{
    return st == CLAIM_LIVE ? "running" : "stopped; its state directory still records it";
}

/* ---- uid ranges ------------------------------------------------------------ */

static void spans_free(span_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i].owner);
    free(s);
}

/* Every uid range another runtime holds or keeps; claims of any kind
 * that nobody holds or keeps any more are removed on the way.  */
static span_t *spans_read(int dirfd, const char *self, size_t *n)
{
    span_t *spans = NULL;
    *n = 0;
    int dfd = dup(dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return NULL;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        uint64_t start, end;
        if (strncmp(de->d_name, "cgroup-", 7) == 0)
            (void)claim_probe(dirfd, de->d_name, self, NULL);
        if (!uid_claim_parse(de->d_name, &start, &end))
            continue;
        char *owner = NULL;
        int st = claim_probe(dirfd, de->d_name, self, &owner);
        if (st == CLAIM_FREE) {
            free(owner);
            continue;
        }
        spans = xrealloc(spans, (*n + 1) * sizeof *spans);
        spans[(*n)++] =
            (span_t){.start = start, .end = end, .owner = owner, .live = st == CLAIM_LIVE};
    }
    closedir(d);
    return spans;
}

static const span_t *span_overlap(const span_t *s, size_t n, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < n; i++)
        if (start < s[i].end && s[i].start < end)
            return &s[i];
    return NULL;
}

/* The lowest free range of `count` uids at or above RT_UID_BASE.  */
static int span_first_fit(const span_t *s, size_t n, uint32_t count, uint32_t *start)
{
    bool found = false;
    uint64_t best = 0;
    for (size_t i = 0; i <= n; i++) {
        uint64_t c = i == n ? RT_UID_BASE : s[i].end;
        if (c < RT_UID_BASE || c + count > RT_UID_END || span_overlap(s, n, c, c + count))
            continue;
        if (!found || c < best)
            best = c, found = true;
    }
    *start = (uint32_t)best;
    return found ? 0 : -1;
}

/* ---- taking the claims ------------------------------------------------------- */

/* How many sandboxes an automatic range is sized for: what health will
 * report, never under RT_MIN_AUTO_SLOTS.  */
static uint32_t auto_count(const rt_config_t *cfg)
{
    uint64_t slots = cfg->max_sandboxes;
    struct sysinfo si;
    if (!slots && sysinfo(&si) == 0)
        slots = (uint64_t)si.totalram * si.mem_unit / (32u << 20);
    if (slots < RT_MIN_AUTO_SLOTS)
        slots = RT_MIN_AUTO_SLOTS;
    if (slots > RT_MAX_SLOTS)
        slots = RT_MAX_SLOTS;
    return (uint32_t)slots * RT_UID_RANGE;
}

int rt_uid_range_check(uint32_t start, uint32_t count, sbx_error_t *err)
{
    if (count == 0 || count % RT_UID_RANGE || count / RT_UID_RANGE > RT_MAX_SLOTS)
        return sbx_error_set(err, SBX_ERR_INVALID,
                             "uid range count must be a multiple of %u, at most %u of them",
                             RT_UID_RANGE, RT_MAX_SLOTS);
    /* Never the host's own users, never past the last valid uid.  */
    if (start < RT_UID_RANGE || (uint64_t)start + count > RT_UID_END)
        return sbx_error_set(err, SBX_ERR_INVALID, "uid range %u+%u must lie within [%u, %u)",
                             start, count, RT_UID_RANGE, RT_UID_END);
    return 0;
}

/* A state directory that holds sandboxes but no record was written before
 * claims existed: its sandboxes use the old fixed range and parent.  */
static bool legacy_state(const char *sandboxes_dir)
{
    DIR *d = opendir(sandboxes_dir);
    if (!d)
        return false;
    bool any = false;
    struct dirent *de;
    while (!any && (de = readdir(d)))
        any = de->d_name[0] != '.';
    closedir(d);
    return any;
}

static char *derived_cgroup(const char *self)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = self; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return xasprintf("sandboxd-%08x", h);
}

static int claim_uids(rt_runtime_t *rt, int dirfd, const char *self, const record_t *rec,
                      sbx_error_t *err)
{
    const rt_config_t *cfg = &rt->cfg;
    size_t n = 0;
    span_t *spans = spans_read(dirfd, self, &n);
    uint32_t start = 0, count = 0;
    bool fixed = true;
    if (cfg->uid_count) {
        start = cfg->uid_start, count = cfg->uid_count;
    } else if (rec->found) {
        start = rec->uid_start, count = rec->uid_count;
        /* Grow in place when the host now warrants more sandboxes.  */
        uint32_t want = auto_count(cfg);
        if (want > count && (uint64_t)start + want <= RT_UID_END &&
            !span_overlap(spans, n, start, (uint64_t)start + want))
            count = want;
    } else if (legacy_state(rt->sandboxes_dir)) {
        start = RT_UID_BASE, count = RT_MAX_SLOTS * RT_UID_RANGE;
    } else {
        fixed = false;
        count = auto_count(cfg);
    }
    int ret = 0;
    const span_t *o = NULL;
    if (fixed && (o = span_overlap(spans, n, start, (uint64_t)start + count))) {
        ret = sbx_error_set(
            err, SBX_ERR_CONFLICT, "uid range %u+%u overlaps %llu+%llu of the runtime of %s (%s)",
            start, count, (unsigned long long)o->start, (unsigned long long)(o->end - o->start),
            o->owner ? o->owner : "?", claim_how(o->live ? CLAIM_LIVE : CLAIM_KEPT));
    } else if (!fixed && span_first_fit(spans, n, count, &start) < 0) {
        ret = sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                            "no free range of %u host uids left on this host", count);
    }
    spans_free(spans, n);
    if (ret < 0 || rt_uid_range_check(start, count, err) < 0)
        return -1;
    _cleanup_free_ char *name = uid_claim_name(start, count);
    rt->uid_claim_fd = claim_create(dirfd, name, self, err);
    if (rt->uid_claim_fd < 0)
        return -1;
    rt->uid_start = start;
    rt->n_slots = count / RT_UID_RANGE;
    return 0;
}

static int claim_cgroup(rt_runtime_t *rt, int dirfd, const char *self, const char *parent,
                        sbx_error_t *err)
{
    _cleanup_free_ char *name = xasprintf("cgroup-%s", parent);
    _cleanup_free_ char *owner = NULL;
    int st = claim_probe(dirfd, name, self, &owner);
    if (st != CLAIM_FREE)
        return sbx_error_set(err, SBX_ERR_CONFLICT,
                             "cgroup parent %s is used by the runtime of %s (%s)", parent,
                             owner ? owner : "?", claim_how(st));
    rt->cg_claim_fd = claim_create(dirfd, name, self, err);
    return rt->cg_claim_fd < 0 ? -1 : 0;
}

int rt_claims_take(rt_runtime_t *rt, const char *cgroup_parent, sbx_error_t *err)
{
    char self[PATH_MAX];
    if (!realpath(rt->state_dir, self))
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "realpath %s", rt->state_dir);
    record_t rec;
    record_read(self, &rec);
    const char *parent = cgroup_parent;
    _cleanup_free_ char *derived = NULL;
    if (!parent && rec.found)
        parent = rec.cgroup;
    if (!parent && legacy_state(rt->sandboxes_dir))
        parent = "sandboxd";
    if (!parent)
        parent = derived = derived_cgroup(self);

    if (sbx_mkdir_p(RT_CLAIM_DIR, 0700, err) < 0)
        return -1;
    _cleanup_close_ int dirfd = open(RT_CLAIM_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int lock =
        dirfd < 0 ? -1 : openat(dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "lock %s/lock", RT_CLAIM_DIR);
    if (claim_cgroup(rt, dirfd, self, parent, err) < 0 ||
        claim_uids(rt, dirfd, self, &rec, err) < 0)
        return -1;
    rt->cg_parent = xstrdup(parent);
    record_t now = {
        .found = true, .uid_start = rt->uid_start, .uid_count = rt->n_slots * RT_UID_RANGE};
    snprintf(now.cgroup, sizeof now.cgroup, "%s", parent);
    /* Written while the claims lock is held, so nobody judges our new
     * claims by the old record.  */
    if (!rec.found || rec.uid_start != now.uid_start || rec.uid_count != now.uid_count ||
        strcmp(rec.cgroup, now.cgroup) != 0)
        return record_write(self, &now, err);
    return 0;
}

void rt_claims_release(rt_runtime_t *rt)
{
    /* The files stay: the record keeps them while our sandboxes run.  */
    if (rt->uid_claim_fd >= 0)
        close(rt->uid_claim_fd);
    if (rt->cg_claim_fd >= 0)
        close(rt->cg_claim_fd);
    rt->uid_claim_fd = rt->cg_claim_fd = -1;
    free(rt->cg_parent);
    rt->cg_parent = NULL;
}
