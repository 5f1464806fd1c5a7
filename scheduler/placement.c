/* placement.c -- where a new sandbox runs.  Candidates are Ready hosts of
 * the group's environment that report the sandbox's driver, have a free
 * slot (the agent derives its slot count from its memory) and at least as
 * many cores and as much memory as the sandbox's limits.  Limits are caps,
 * not reservations (an idle sandbox uses almost nothing), so they do not
 * fill a host up; they weigh it: the candidate with the lowest load, the
 * largest of its cpu share, memory share and slot share after placing,
 * wins, which spreads sandboxes across hosts.  */
#include "scheduler/internal.h"

#include <string.h>


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

void placement_add(sched_t *s, const char *host, double cpu, double memory_mib, int sign)
{
    pthread_mutex_lock(&s->lock);
    host_load_t *l = load_of(s, host);
    l->cpu += sign * cpu;
    l->memory_mib += sign * memory_mib;
    if (sign > 0)
        l->sandboxes++;
    else if (l->sandboxes > 0)
        l->sandboxes--;
    pthread_mutex_unlock(&s->lock);
}

static void count_type(sched_t *s, const char *type, host_load_t **loads_io, size_t *n_io);

/* Recount what every host holds from the sandboxes (and warm-pool members)
 * in storage.  */
void placement_rebuild(sched_t *s)
{
    pthread_mutex_lock(&s->place_lock);
    host_load_t *loads = NULL;
    size_t n = 0;
    const char *types[] = {SANDBOX_TYPE, POOL_TYPE};
    for (size_t t = 0; t < ARRAY_SIZE(types); t++)
        count_type(s, types[t], &loads, &n);
    pthread_mutex_lock(&s->lock);
    free(s->loads);
    s->loads = loads;
    s->n_loads = n;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_unlock(&s->place_lock);
}

typedef struct load_count {
    host_load_t *loads;
    size_t n;
} load_count_t;

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
    c->loads[k].cpu += sandbox_cpu(r);
    c->loads[k].memory_mib += sandbox_memory(r);
    c->loads[k].sandboxes++;
}

static void count_type(sched_t *s, const char *type, host_load_t **loads_io, size_t *n_io)
{
    load_count_t c = {*loads_io, *n_io};
    st_list_query_t q = {.type = type, .limit = 1000};
    st_resource_each(s->db, &q, count_one, &c, NULL);
    *loads_io = c.loads;
    *n_io = c.n;
}

static bool has_driver(const json_t *info, const char *driver)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(info, "drivers"), i, d) {
        if (json_is_string(d) && strcmp(json_string_value(d), driver) == 0)
            return true;
    }
    return false;
}

static double capacity(const json_t *info, const char *key)
{
    json_t *v = json_object_get(json_object_get(info, "capacity"), key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

int placement_choose(sched_t *s, const char *environment, const char *driver, double cpu,
                     double memory_mib, char **host_out, sbx_error_t *err)
{
    st_host_t *hosts = NULL;
    size_t n = 0;
    if (st_host_list(s->db, &hosts, &n, err) < 0)
        return -1;
    double best = 1e300;
    const char *chosen = NULL;
    size_t candidates = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        st_host_t *h = &hosts[i];
        if (strcmp(h->state, "Ready") != 0 || strcasecmp(h->environment, environment) != 0 ||
            !has_driver(h->info, driver))
            continue;
        candidates++;
        double cap_cpu = capacity(h->info, "cpu"), cap_mem = capacity(h->info, "memoryMiB");
        double slots = capacity(h->info, "sandboxes");
        host_load_t *l = load_of(s, h->name);
        if ((cap_cpu > 0 && cpu > cap_cpu) || (cap_mem > 0 && memory_mib > cap_mem) ||
            (slots > 0 && l->sandboxes + 1 > slots))
            continue;
        double cpu_share = cap_cpu > 0 ? (l->cpu + cpu) / cap_cpu : 1.0;
        double mem_share = cap_mem > 0 ? (l->memory_mib + memory_mib) / cap_mem : 1.0;
        double slot_share = slots > 0 ? (l->sandboxes + 1) / slots : 0.0;
        double load = cpu_share > mem_share ? cpu_share : mem_share;
        if (slot_share > load)
            load = slot_share;
        if (load < best) {
            best = load;
            chosen = h->name;
        }
    }
    if (chosen)
        *host_out = xstrdup(chosen);
    pthread_mutex_unlock(&s->lock);
    st_hosts_free(hosts, n);
    if (chosen)
        return 0;
    if (candidates == 0)
        return sbx_error_arm(err, SBX_ERR_UNAVAILABLE, "NoHostAvailable",
                             "No ready host in environment '%s' offers the '%s' isolation.",
                             environment, driver);
    return sbx_error_arm(err, SBX_ERR_UNAVAILABLE, "InsufficientCapacity",
                         "No host in environment '%s' has room for %.2f cpu and %.0f MiB.",
                         environment, cpu, memory_mib);
}
