/* model.c -- the shared sandbox model: string forms of states, the table of
 * limits and the agent spec.  */
#include "common/model.h"

#include <string.h>

static const char *const state_names[SBX_STATE_COUNT] = {
    [SBX_STATE_UNKNOWN] = "",
    [SBX_STATE_PENDING] = "Pending",
    [SBX_STATE_CREATING] = "Creating",
    [SBX_STATE_STARTING] = "Starting",
    [SBX_STATE_RUNNING] = "Running",
    [SBX_STATE_SUSPENDING] = "Suspending",
    [SBX_STATE_SUSPENDED] = "Suspended",
    [SBX_STATE_RESUMING] = "Resuming",
    [SBX_STATE_STOPPING] = "Stopping",
    [SBX_STATE_STOPPED] = "Stopped",
    [SBX_STATE_FAILED] = "Failed",
    [SBX_STATE_READY] = "Ready",
};

static const char *const provisioning_names[SBX_PROV_COUNT] = {
    [SBX_PROV_UNKNOWN] = "",
    [SBX_PROV_SUCCEEDED] = "Succeeded",
    [SBX_PROV_FAILED] = "Failed",
    [SBX_PROV_CANCELED] = "Canceled",
    [SBX_PROV_IN_PROGRESS] = "InProgress",
    [SBX_PROV_UPDATING] = "Updating",
    [SBX_PROV_DELETING] = "Deleting",
};

static int name_index(const char *const *names, int n, const char *name)
{
    for (int i = 1; name && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return 0;
}

const char *sbx_state_name(sbx_state_t state)
{
    return state > 0 && state < SBX_STATE_COUNT ? state_names[state] : "";
}

sbx_state_t sbx_state_parse(const char *name)
{
    return (sbx_state_t)name_index(state_names, SBX_STATE_COUNT, name);
}

bool sbx_state_from_agent(sbx_state_t state)
{
    return state >= SBX_STATE_CREATING && state <= SBX_STATE_FAILED;
}

const char *sbx_provisioning_name(sbx_provisioning_t ps)
{
    return ps > 0 && ps < SBX_PROV_COUNT ? provisioning_names[ps] : "";
}

sbx_provisioning_t sbx_provisioning_parse(const char *name)
{
    return (sbx_provisioning_t)name_index(provisioning_names, SBX_PROV_COUNT, name);
}

static const char *body_prop(const json_t *body, const char *key)
{
    return json_string_value(json_object_get(json_object_get(body, "properties"), key));
}

sbx_state_t sbx_body_state(const json_t *body)
{
    return sbx_state_parse(body_prop(body, "state"));
}

sbx_provisioning_t sbx_body_provisioning(const json_t *body)
{
    return sbx_provisioning_parse(body_prop(body, "provisioningState"));
}

const sbx_limit_t sbx_limits[SBX_LIMIT_COUNT] = {
    [SBX_LIMIT_CPU] = {"cpu", 0.05, 64, SBX_CPU_DEFAULT, false},
    [SBX_LIMIT_MEMORY_MIB] = {"memoryMiB", 32, 262144, SBX_MEMORY_MIB_DEFAULT, true},
    [SBX_LIMIT_DISK_MIB] = {"diskMiB", 16, 65536, SBX_DISK_MIB_DEFAULT, true},
    [SBX_LIMIT_PIDS] = {"pids", SBX_PIDS_DEFAULT, SBX_PIDS_DEFAULT, SBX_PIDS_DEFAULT, true},
    [SBX_LIMIT_IDLE_TIMEOUT_S] = {"idleTimeoutSeconds", 0, 30 * 86400, 0, true},
    [SBX_LIMIT_MAX_LIFETIME_S] = {"maxLifetimeSeconds", 0, 365 * 86400, 0, true},
};

bool sbx_limit_valid(sbx_limit_id_t id, const json_t *v)
{
    const sbx_limit_t *l = &sbx_limits[id];
    if (l->integer ? !json_is_integer(v) : !json_is_number(v))
        return false;
    double d = json_number_value(v);
    return d >= l->min && d <= l->max;
}

const char *const sbx_drivers[3] = {"process", "gvisor", "microvm"};

const char *sbx_driver_parse(const char *name)
{
    for (size_t i = 0; name && i < ARRAY_SIZE(sbx_drivers); i++)
        if (strcmp(name, sbx_drivers[i]) == 0)
            return sbx_drivers[i];
    return NULL;
}

void sbx_spec_init(sbx_spec_t *spec)
{
    *spec = (sbx_spec_t){.driver = sbx_drivers[0],
                         .cpu = SBX_CPU_DEFAULT,
                         .memory_mib = SBX_MEMORY_MIB_DEFAULT,
                         .disk_mib = SBX_DISK_MIB_DEFAULT,
                         .env = json_object()};
}

void sbx_spec_done(sbx_spec_t *spec)
{
    if (!spec)
        return;
    free(spec->image);
    json_decref(spec->env);
    memset(spec, 0, sizeof(*spec));
}

json_t *sbx_spec_json(const sbx_spec_t *spec, const char *default_image)
{
    json_t *env = spec->env ? json_incref(spec->env) : json_object();
    return json_pack("{s:s,s:s,s:f,s:I,s:I,s:o}", "image",
                     spec->image ? spec->image : default_image, "driver", spec->driver, "cpu",
                     spec->cpu, "memoryMiB", (json_int_t)spec->memory_mib, "diskMiB",
                     (json_int_t)spec->disk_mib, "env", env);
}

sbx_need_t sbx_spec_need(const sbx_spec_t *spec)
{
    return (sbx_need_t){.cpu = spec->cpu,
                        .memory_mib = (double)spec->memory_mib,
                        .disk_mib = (double)spec->disk_mib,
                        .pids = SBX_PIDS_DEFAULT};
}
