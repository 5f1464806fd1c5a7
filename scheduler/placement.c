/* placement.c -- where a new sandbox runs, and whether it may run at all.
 * Candidates are Ready hosts of the group's environment that report the
 * sandbox's driver.  Admission is on sums: the cpu, memory, disk and pids
 * limits of the sandboxes a host holds, plus the new one's, must stay
 * within what the host reports times the operator's overcommit ratio, and
 * a slot must be free.  Among the hosts with room the least loaded wins
 * (the largest of its shares after placing), which spreads sandboxes.  */
#include "scheduler/internal.h"

#include <stdarg.h>
#include <string.h>

enum { R_CPU, R_MEMORY, R_DISK, R_PIDS, R_SLOTS, R_N };

/* Key in the health report's "capacity", and how an amount reads.  */
static const struct resource {
    const char *key, *unit, *noun;
} resources[R_N] = {
    [R_CPU] = {"cpu", "cpu", NULL},           [R_MEMORY] = {"memoryMiB", "MiB", "memory"},
    [R_DISK] = {"diskMiB", "MiB", "disk"},    [R_PIDS] = {"pids", "pids", NULL},
    [R_SLOTS] = {"sandboxes", "slots", NULL},
};

static host_load_t *load_of(sched_t *s, const char *host)
{
    for (size_t i = 0; i < s->n_loads; i++)
        if (strcasecmp(s->loads[i].name, host) == 0)
            return &s->loads[i];
    s->loads = xrealloc(s->loads, (s->n_loads + 1) * sizeof(*s->loads));
    host_load_t *l = &s->loads[s->n_loads++];
    memset(l, 0, sizeof(*l));
    snprintf(l->name, sizeof(l->name), "%s", host);
    return l;
}

static void need_add(sbx_need_t *to, const sbx_need_t *n, int sign)
{
    to->cpu += sign * n->cpu;
    to->memory_mib += sign * n->memory_mib;
    to->disk_mib += sign * n->disk_mib;
    to->pids += sign * n->pids;
}

void sched_place_add(sched_t *s, const char *host, const sbx_need_t *need, int sign)
{
    pthread_mutex_lock(&s->lock);
    host_load_t *l = load_of(s, host);
    need_add(&l->used, need, sign);
    if (sign > 0)
        l->sandboxes++;
    else if (l->sandboxes > 0)
        l->sandboxes--;
    pthread_mutex_unlock(&s->lock);
}

static int count_type(sched_t *s, const char *type, host_load_t **loads_io, size_t *n_io);

/* Recount what every host holds from the sandboxes (and warm-pool members)
 * in storage.  A count storage could not finish would undercount, and
 * admit more than hosts hold: the loads kept until then stay.  */
void sched_place_rebuild(sched_t *s)
{
    pthread_mutex_lock(&s->place_lock);
    host_load_t *loads = NULL;
    size_t n = 0;
    const char *types[] = {SANDBOX_TYPE, POOL_TYPE};
    int ret = 0;
    for (size_t t = 0; t < ARRAY_SIZE(types) && ret == 0; t++)
        ret = count_type(s, types[t], &loads, &n);
    pthread_mutex_lock(&s->lock);
    if (ret == 0) {
        free(s->loads);
        s->loads = loads;
        s->n_loads = n;
    } else {
        free(loads);
    }
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->place_lock);
}

typedef struct load_count {
    host_load_t *loads;
    size_t n;
} load_count_t;

/* Every placed sandbox counts, whatever its state: a stopped or failed
 * one can start again on the same host, so it keeps its share until it is
 * deleted.  */
static void count_one(void *ud, const st_resource_t *r)
{
    load_count_t *c = ud;
    if (!r->host_id)
        return;
    size_t k = 0;
    while (k < c->n && strcasecmp(c->loads[k].name, r->host_id) != 0)
        k++;
    if (k == c->n) {
        c->loads = xrealloc(c->loads, (c->n + 1) * sizeof(*c->loads));
        memset(&c->loads[c->n], 0, sizeof(*c->loads));
        snprintf(c->loads[c->n].name, sizeof(c->loads[c->n].name), "%s", r->host_id);
        c->n++;
    }
    need_add(&c->loads[k].used, &r->need, +1);
    c->loads[k].sandboxes++;
}

static int count_type(sched_t *s, const char *type, host_load_t **loads_io, size_t *n_io)
{
    load_count_t c = {*loads_io, *n_io};
    st_list_query_t q = {.type = type, .limit = 1000};
    sbx_error_t err = {0};
    int ret = st_resource_each(s->db, &q, count_one, &c, &err);
    if (ret < 0)
        sbx_log(SBX_LOG_WARN, MODULE_NAME, "host loads not recounted: %s", err.msg);
    *loads_io = c.loads;
    *n_io = c.n;
    return ret;
}

/* ---- admission ---- */

/* 1 when the host reports the driver, 0 when it does not, -1 when it has
 * not reported its drivers yet.  */
static int has_driver(const json_t *info, const char *driver)
{
    json_t *list = json_object_get(info, "drivers");
    if (!json_is_array(list))
        return -1;
    size_t i;
    json_t *d;
    json_array_foreach(list, i, d)
    {
        if (json_is_string(d) && strcmp(json_string_value(d), driver) == 0)
            return 1;
    }
    return 0;
}

static double reported(const json_t *info, const char *key)
{
    json_t *v = json_object_get(json_object_get(info, "capacity"), key);
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return d > 0 ? d : 0;
}

/* What a host may promise in all, per resource: its reported capacity
 * times the ratio; -1 where it reports none (not limited).  */
static void host_budget(const sched_t *s, const json_t *info, double budget[R_N])
{
    const double ratio[R_N] = {s->cfg.overcommit_cpu, s->cfg.overcommit_memory,
                               s->cfg.overcommit_disk, s->cfg.overcommit_pids, 1.0};
    for (int r = 0; r < R_N; r++) {
        double cap = reported(info, resources[r].key);
        /* An agent that reports no disk: its writable layers are RAM.  */
        if (r == R_DISK && cap == 0)
            cap = reported(info, "memoryMiB");
        budget[r] = cap > 0 ? cap * ratio[r] : -1;
    }
}

static void need_vector(const sbx_need_t *n, double v[R_N])
{
    v[R_CPU] = n->cpu;
    v[R_MEMORY] = n->memory_mib;
    v[R_DISK] = n->disk_mib;
    v[R_PIDS] = n->pids;
    v[R_SLOTS] = 1;
}

static void used_vector(const host_load_t *l, double v[R_N])
{
    need_vector(&l->used, v);
    v[R_SLOTS] = l->sandboxes;
}

/* What every host of the environment said, for the verdict and its
 * message.  R_N stands for "memory plus disk above the host's RAM".  */
typedef struct tally {
    size_t in_env, reported, offer, ready, never;
    size_t never_by[R_N + 1], short_by[R_N];
    double biggest[R_N + 1]; /* largest budget of a host offering the driver */
    double most_free[R_N];   /* largest free amount on a Ready candidate */
    char offered[96];        /* drivers the environment's hosts offer */
    char why_not[256];       /* why the first host that says so lacks the driver */
    double best;
    const char *chosen;
} tally_t;

static void note_offered(tally_t *t, const json_t *info)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(info, "drivers"), i, d)
    {
        const char *name = json_string_value(d);
        if (!name || strlen(name) > 16 || strstr(t->offered, name))
            continue;
        size_t len = strlen(t->offered);
        snprintf(t->offered + len, sizeof(t->offered) - len, "%s%s", len ? ", " : "", name);
    }
}

/* A host's own word on why it lacks the driver (its health's
 * unavailableDrivers), kept from the first host that gives one.  */
static void note_why_not(tally_t *t, const st_host_t *h, const char *driver)
{
    const char *why =
        json_string_value(json_object_get(json_object_get(h->info, "unavailableDrivers"), driver));
    if (t->why_not[0] || !why || !why[0])
        return;
    snprintf(t->why_not, sizeof(t->why_not), "; host '%.40s': %.180s", h->name, why);
}

/* Could this host, empty, ever take the sandbox?  Counts the first
 * reason it could not.  */
static bool tally_never(tally_t *t, const json_t *info, const double budget[R_N],
                        const double need[R_N])
{
    int why = -1;
    for (int r = 0; r < R_N && why < 0; r++)
        if (budget[r] >= 0 && need[r] > budget[r])
            why = r;
    /* The writable layer is tmpfs: a sandbox that fills its memory and its
     * disk holds both in RAM, which no ratio makes larger.  */
    double ram = reported(info, "memoryMiB");
    if (why < 0 && ram > 0 && need[R_MEMORY] + need[R_DISK] > ram)
        why = R_N;
    for (int r = 0; r < R_N; r++)
        if (budget[r] > t->biggest[r])
            t->biggest[r] = budget[r];
    if (ram > t->biggest[R_N])
        t->biggest[R_N] = ram;
    if (why >= 0) {
        t->never++;
        t->never_by[why]++;
    }
    return why < 0;
}

/* A Ready candidate: has it room, and how loaded would it be?  */
static void tally_candidate(tally_t *t, const st_host_t *h, const host_load_t *l,
                            const double budget[R_N], const double need[R_N])
{
    double used[R_N];
    used_vector(l, used);
    bool fits = true;
    double load = 0;
    for (int r = 0; r < R_N; r++) {
        if (budget[r] < 0)
            continue;
        double free_now = budget[r] - used[r];
        if (free_now > t->most_free[r])
            t->most_free[r] = free_now;
        if (used[r] + need[r] > budget[r] * (1 + 1e-9)) {
            fits = false;
            t->short_by[r]++;
        } else if ((used[r] + need[r]) / budget[r] > load) {
            load = (used[r] + need[r]) / budget[r];
        }
    }
    if (fits && load < t->best) {
        t->best = load;
        t->chosen = h->name;
    }
}

static int most_counted(const size_t *counts, int n)
{
    int best = 0;
    for (int r = 1; r < n; r++)
        if (counts[r] > counts[best])
            best = r;
    return best;
}

/* A figure as a person writes it: at most two decimals, none trailing.  */
static const char *num(double v, char buf[32])
{
    snprintf(buf, 32, "%.2f", v > -0.005 && v < 0.005 ? 0.0 : v);
    char *dot = strchr(buf, '.');
    if (dot) {
        char *end = buf + strlen(buf);
        while (end > dot && (end[-1] == '0' || end[-1] == '.'))
            *--end = '\0';
    }
    return buf;
}

static void amount(int r, double v, char *buf, size_t len)
{
    const struct resource *res = &resources[r];
    char n[32];
    snprintf(buf, len, "%s %s%s%s", num(v, n), res->unit, res->noun ? " of " : "",
             res->noun ? res->noun : "");
}

static int refuse(sbx_failure_t *why, sbx_failure_t f, sbx_error_t *err, sbx_code_t code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int refuse(sbx_failure_t *why, sbx_failure_t f, sbx_error_t *err, sbx_code_t code,
                  const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    *why = f;
    return sbx_error_set(err, code, "%s", msg);
}

/* Why no host takes the sandbox: the reason the worker acts on in *why,
 * the words for its statusMessage in err.  */
static int refusal(const tally_t *t, const char *env, const char *driver, const double need[R_N],
                   sbx_failure_t *why, sbx_error_t *err)
{
    char want[64], have[64], n1[32], n2[32];
    if (t->in_env == 0)
        return refuse(why, SBX_FAIL_NO_HOST, err, SBX_ERR_UNAVAILABLE,
                      "no host is registered in environment '%s'", env);
    if (t->offer == 0 && t->reported == t->in_env)
        return refuse(why, SBX_FAIL_NO_DRIVER, err, SBX_ERR_INVALID,
                      "no host in environment '%s' offers the '%s' isolation (they "
                      "offer: %s)%s",
                      env, driver, t->offered[0] ? t->offered : "none", t->why_not);
    if (t->offer > 0 && t->never == t->offer) {
        /* Name a reason that holds for every host.  */
        if (t->biggest[R_N] > 0 && need[R_MEMORY] + need[R_DISK] > t->biggest[R_N])
            return refuse(why, SBX_FAIL_TOO_LARGE, err, SBX_ERR_INVALID,
                          "memoryMiB plus diskMiB (%s MiB) is more than the memory of "
                          "any host in environment '%s' (largest: %s MiB); the "
                          "writable layer is held in memory",
                          num(need[R_MEMORY] + need[R_DISK], n1), env, num(t->biggest[R_N], n2));
        for (int r = 0; r < R_N; r++) {
            if (!t->never_by[r] || need[r] <= t->biggest[r])
                continue;
            amount(r, need[r], want, sizeof(want));
            return refuse(why, SBX_FAIL_TOO_LARGE, err, SBX_ERR_INVALID,
                          "no host in environment '%s' can ever hold %s (largest: %s %s)", env,
                          want, num(t->biggest[r], n1), resources[r].unit);
        }
        return refuse(why, SBX_FAIL_TOO_LARGE, err, SBX_ERR_INVALID,
                      "no host in environment '%s' can ever hold %s cpu, %s MiB of "
                      "memory and %s MiB of disk together",
                      env, num(need[R_CPU], n1), num(need[R_MEMORY], n2), num(need[R_DISK], have));
    }
    if (t->ready == 0)
        return refuse(why, SBX_FAIL_NO_HOST, err, SBX_ERR_UNAVAILABLE,
                      "no Ready host in environment '%s' offers the '%s' isolation", env, driver);
    int r = most_counted(t->short_by, R_N);
    if (t->short_by[r] == 0) /* the Ready hosts are all too small */
        return refuse(why, SBX_FAIL_NO_HOST, err, SBX_ERR_UNAVAILABLE,
                      "no Ready host in environment '%s' is large enough for it", env);
    if (r == R_SLOTS)
        return refuse(why, SBX_FAIL_NO_ROOM, err, SBX_ERR_UNAVAILABLE,
                      "no host in environment '%s' has a free sandbox slot", env);
    amount(r, need[r], want, sizeof(want));
    snprintf(have, sizeof(have), "%s %s", num(t->most_free[r] > 0 ? t->most_free[r] : 0, n1),
             resources[r].unit);
    return refuse(why, SBX_FAIL_NO_ROOM, err, SBX_ERR_UNAVAILABLE,
                  "no host in environment '%s' has %s free (largest free: %s)", env, want, have);
}

int sched_place_choose(sched_t *s, const char *environment, const char *driver,
                       const sbx_need_t *need, char **host_out, sbx_failure_t *why,
                       sbx_error_t *err)
{
    st_host_t *hosts = NULL;
    size_t n = 0;
    if (st_host_list(s->db, &hosts, &n, err) < 0)
        return -1;
    double want[R_N];
    need_vector(need, want);
    tally_t t = {.best = 1e300};
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        st_host_t *h = &hosts[i];
        if (strcasecmp(h->environment, environment) != 0)
            continue;
        t.in_env++;
        int offers = has_driver(h->info, driver);
        if (offers >= 0)
            t.reported++;
        note_offered(&t, h->info);
        if (offers == 0)
            note_why_not(&t, h, driver);
        if (offers <= 0)
            continue;
        t.offer++;
        double budget[R_N];
        host_budget(s, h->info, budget);
        bool could = tally_never(&t, h->info, budget, want);
        if (strcmp(h->state, "Ready") != 0)
            continue;
        t.ready++;
        if (could)
            tally_candidate(&t, h, load_of(s, h->name), budget, want);
    }
    if (t.chosen)
        *host_out = xstrdup(t.chosen);
    pthread_mutex_unlock(&s->lock);
    int ret = t.chosen ? 0 : refusal(&t, environment, driver, want, why, err);
    st_hosts_free(hosts, n);
    return ret;
}
