/* slots.c -- what the workers share in memory: the operations being worked
 * on (so two workers never take one) and the agent calls in flight per
 * host (so one slow host cannot hold every worker).  */
#include "scheduler/internal.h"

#include <string.h>

bool sched_busy_claim(sched_t *s, const char *op_id)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_busy; i++)
        if (strcmp(s->busy[i], op_id) == 0) {
            pthread_mutex_unlock(&s->lock);
            return false;
        }
    if (s->n_busy == s->cap_busy)
        s->busy = xrealloc(s->busy,
                           (s->cap_busy = s->cap_busy ? s->cap_busy * 2 : 16) * sizeof(*s->busy));
    snprintf(s->busy[s->n_busy++], 37, "%s", op_id);
    pthread_mutex_unlock(&s->lock);
    return true;
}

void sched_busy_release(sched_t *s, const char *op_id)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_busy; i++)
        if (strcmp(s->busy[i], op_id) == 0) {
            memcpy(s->busy[i], s->busy[--s->n_busy], 37);
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

static struct host_slots *slot_of(sched_t *s, const char *host)
{
    for (size_t i = 0; i < s->n_slots; i++)
        if (strcasecmp(s->slots[i].name, host) == 0)
            return &s->slots[i];
    s->slots = xrealloc(s->slots, (s->n_slots + 1) * sizeof(*s->slots));
    struct host_slots *h = &s->slots[s->n_slots++];
    memset(h, 0, sizeof(*h));
    snprintf(h->name, sizeof(h->name), "%s", host);
    return h;
}

bool sched_slot_take(sched_t *s, const char *host)
{
    unsigned limit = s->cfg.workers > 1 ? s->cfg.workers - 1 : 1;
    pthread_mutex_lock(&s->lock);
    struct host_slots *h = slot_of(s, host);
    bool ok = h->busy < limit;
    if (ok)
        h->busy++;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

void sched_slot_give(sched_t *s, const char *host)
{
    pthread_mutex_lock(&s->lock);
    struct host_slots *h = slot_of(s, host);
    if (h->busy > 0)
        h->busy--;
    pthread_mutex_unlock(&s->lock);
}
