/* lifetime.c -- a sandbox's maxLifetimeSeconds: when its clock started and
 * what its end does (lifetimeEndAction: Delete, the default, or Suspend,
 * whose clock starts again at each resume).  */
#include "scheduler/internal.h"

#include <string.h>
#include <time.h>

int64_t sched_parse_time_ms(const char *s)
{
    struct tm tm = {0};
    if (!s)
        return 0;
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return 0;
    int ms = 0;
    if (*rest == '.')
        ms = atoi(rest + 1) % 1000;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

bool sched_lifetime_suspends(const json_t *props, const json_t *defaults)
{
    json_t *v = json_object_get(props, "lifetimeEndAction");
    if (!v)
        v = json_object_get(defaults, "lifetimeEndAction");
    const char *a = json_string_value(v);
    return a && strcmp(a, "Suspend") == 0;
}

int64_t sched_lifetime_start_ms(const st_resource_t *sb)
{
    json_t *props = json_object_get(sb->body, "properties");
    int64_t at =
        sched_parse_time_ms(json_string_value(json_object_get(props, "lifetimeStartedAt")));
    return at > sb->created_ms ? at : sb->created_ms;
}

void sched_lifetime_restart(json_t *patch, int64_t now_ms)
{
    char when[40];
    sbx_time_format(now_ms, when, sizeof(when));
    json_object_set_new(patch, "lifetimeStartedAt", json_string(when));
}

bool sched_lifetime_restarts_on_resume(st_db_t *db, const st_resource_t *sb)
{
    st_resource_t group = {0};
    int have = sched_read_group(db, sb, &group, NULL);
    json_t *defaults =
        have > 0 ? json_object_get(json_object_get(group.body, "properties"), "sandboxDefaults")
                 : NULL;
    bool yes = sched_lifetime_suspends(json_object_get(sb->body, "properties"), defaults);
    st_resource_done(&group);
    return yes;
}
