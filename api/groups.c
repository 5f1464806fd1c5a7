/* groups.c -- sandboxGroups: Azure's environmentId link-once rule and
 * defaultDomain, plus our sandboxDefaults, scale and egressPolicy.  */
#include "api/internal.h"

#include <string.h>

#define DEFAULT_DOMAIN_SUFFIX "sandboxd.internal"

static const char *const isolations[] = {"process", "gvisor", "microvm"};

static int validate_isolation(const json_t *obj, const char *target, sbx_error_t *err)
{
    bool present;
    const char *iso = NULL;
    if (api_get_string(obj, "isolation", target, 16, &present, &iso, err) < 0)
        return -1;
    if (!present)
        return 0;
    for (size_t i = 0; i < ARRAY_SIZE(isolations); i++)
        if (strcmp(iso, isolations[i]) == 0)
            return 0;
    return api_invalid(err, target, "'%s' must be one of process, gvisor, microvm.", target);
}

/* lifetimeEndAction: Delete (the default) or Suspend.  */
static int validate_end_action(const json_t *obj, const char *target, sbx_error_t *err)
{
    bool present;
    const char *a = NULL;
    if (api_get_string(obj, "lifetimeEndAction", target, 16, &present, &a, err) < 0)
        return -1;
    if (!present || strcmp(a, "Delete") == 0 || strcmp(a, "Suspend") == 0)
        return 0;
    return api_invalid(err, target, "'%s' must be Delete or Suspend.", target);
}

/* An OCI image reference: registry/repo[:tag][@sha256:...], conservative
 * character set, no whitespace or control characters.  */
bool api_image_ref_valid(const char *ref)
{
    size_t n = strlen(ref);
    if (n == 0 || n > 512)
        return false;
    for (const char *p = ref; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._-/:@+", *p)))
            return false;
    return ref[0] != '/' && ref[0] != '-' && ref[0] != '.' && !strstr(ref, "..");
}

/* The sandbox shape shared by sandboxDefaults and a sandbox's properties.  */
int api_validate_sandbox_shape(const api_t *api, const json_t *in, const char *prefix,
                               sbx_error_t *err)
{
    json_int_t max_disk = api->cfg.max_disk_mib ? api->cfg.max_disk_mib : API_MAX_DISK_MIB;
    char t[96];
    bool present;
    const char *s = NULL;
    double d;
    json_int_t n;
    snprintf(t, sizeof(t), "%s.image", prefix);
    if (api_get_string(in, "image", t, SBX_IMAGE_REF_MAX, &present, &s, err) < 0)
        return -1;
    if (present && !api_image_ref_valid(s))
        return api_invalid(err, t, "'%s' is not a valid OCI image reference.", t);
    const sbx_limit_t *l = &sbx_limits[SBX_LIMIT_CPU];
    snprintf(t, sizeof(t), "%s.%s", prefix, l->key);
    if (api_get_number(in, l->key, t, l->min, l->max, &present, &d, err) < 0)
        return -1;
    /* The writable layer is a tmpfs (RAM) on the host: diskMiB stays within
     * the operator's bound.  */
    sbx_limit_id_t ints[] = {SBX_LIMIT_MEMORY_MIB, SBX_LIMIT_DISK_MIB, SBX_LIMIT_IDLE_TIMEOUT_S,
                             SBX_LIMIT_MAX_LIFETIME_S};
    for (size_t i = 0; i < ARRAY_SIZE(ints); i++) {
        l = &sbx_limits[ints[i]];
        json_int_t max = ints[i] == SBX_LIMIT_DISK_MIB ? max_disk : (json_int_t)l->max;
        snprintf(t, sizeof(t), "%s.%s", prefix, l->key);
        if (api_get_int(in, l->key, t, (json_int_t)l->min, max, &present, &n, err) < 0)
            return -1;
    }
    snprintf(t, sizeof(t), "%s.env", prefix);
    if (api_validate_env(json_object_get(in, "env"), t, err) < 0)
        return -1;
    snprintf(t, sizeof(t), "%s.isolation", prefix);
    if (validate_isolation(in, t, err) < 0)
        return -1;
    snprintf(t, sizeof(t), "%s.lifetimeEndAction", prefix);
    if (validate_end_action(in, t, err) < 0)
        return -1;
    snprintf(t, sizeof(t), "%s.egressPolicy", prefix);
    if (api_get_string(in, "egressPolicy", t, 63, &present, &s, err) < 0)
        return -1;
    if (present && !api_name_valid(s))
        return api_invalid(err, t, "'%s' is not a valid egress policy name.", t);
    return 0;
}

static int validate_scale(const json_t *scale, sbx_error_t *err)
{
    if (!json_is_object(scale))
        return api_invalid(err, "properties.scale", "'properties.scale' must be an object.");
    bool has_max, has_ready;
    json_int_t max = 0, ready = 0;
    if (api_get_int(scale, "maxSandboxes", "properties.scale.maxSandboxes", 0, 100000, &has_max,
                    &max, err) < 0 ||
        api_get_int(scale, "readySandboxes", "properties.scale.readySandboxes", 0, 1000, &has_ready,
                    &ready, err) < 0)
        return -1;
    if (has_max && has_ready && ready > max)
        return api_invalid(err, "properties.scale.readySandboxes",
                           "'readySandboxes' cannot exceed 'maxSandboxes'.");
    return 0;
}

/* The environment's name (last segment of its ARM id) is the host pool
 * label; defaultDomain is derived from it.  */
static json_t *default_domain(const char *env_id)
{
    const char *name = strrchr(env_id, '/');
    _cleanup_free_ char *lower = xstrdup(name ? name + 1 : env_id);
    sbx_str_lower(lower);
    /* A DNS label: what is not a letter, digit or hyphen becomes one.  */
    for (char *p = lower; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            *p = '-';
    if (strlen(lower) > 63)
        lower[63] = '\0';
    _cleanup_free_ char *d = xasprintf("%s.%s", lower, DEFAULT_DOMAIN_SUFFIX);
    return json_string(d);
}

static int environment_rule(const json_t *in, const json_t *old, bool patch, json_t *out,
                            sbx_error_t *err)
{
    json_t *was = old ? json_object_get(old, "environmentId") : NULL;
    json_t *now = in ? json_object_get(in, "environmentId") : NULL;
    if (now && !json_is_null(now)) {
        if (!json_is_string(now) || !api_arm_id_valid(json_string_value(now), NULL))
            return api_invalid(err, "properties.environmentId",
                               "'environmentId' must be the ARM resource id of an environment.");
    }
    bool now_set = now && !json_is_null(now);
    if (json_is_string(was)) {
        if (patch && !now)
            now = was, now_set = true;
        if (!now_set || strcasecmp(json_string_value(was), json_string_value(now)) != 0) {
            sbx_error_arm(err, SBX_ERR_CONFLICT, "EnvironmentIdCannotChange",
                          "The sandbox group is linked to environment '%s'; the link cannot be "
                          "changed or removed.",
                          json_string_value(was));
            return sbx_error_target(err, "properties.environmentId");
        }
        now = was; /* keep the stored casing */
    }
    if (now_set) {
        json_object_set(out, "environmentId", now);
        json_object_set_new(out, "defaultDomain", default_domain(json_string_value(now)));
    }
    return 0;
}

/* sandboxDefaults and scale keep only their documented fields, so what is
 * served is what the description promises; other values pass through for
 * the type checks to judge.  */
static json_t *known_fields(json_t *v, const char *which)
{
    static const char *const defaults[] = {"image",
                                           "cpu",
                                           "memoryMiB",
                                           "diskMiB",
                                           "env",
                                           "idleTimeoutSeconds",
                                           "maxLifetimeSeconds",
                                           "lifetimeEndAction",
                                           "isolation"};
    static const char *const scale[] = {"maxSandboxes", "readySandboxes"};
    bool is_defaults = strcmp(which, "sandboxDefaults") == 0;
    if (!json_is_object(v) || (!is_defaults && strcmp(which, "scale") != 0))
        return json_incref(v);
    const char *const *keys = is_defaults ? defaults : scale;
    size_t n = is_defaults ? ARRAY_SIZE(defaults) : ARRAY_SIZE(scale);
    json_t *out = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *f = json_object_get(v, keys[i]);
        if (f && !json_is_null(f))
            json_object_set(out, keys[i], f);
    }
    return out;
}

static int group_validate(api_t *api, st_tx_t *tx, const st_resource_t *parent, const json_t *in,
                          const json_t *old, bool patch, json_t **out, sbx_error_t *err)
{
    json_t *props = json_object();
    *out = props;
    if (environment_rule(in, old, patch, props, err) < 0)
        return -1;
    /* Defaults are served and copied into warm-pool specs: no place for
     * write-only values.  */
    if (json_object_get(json_object_get(in, "sandboxDefaults"), "secureEnv"))
        return api_invalid(err, "properties.sandboxDefaults.secureEnv",
                           "secureEnv is set per sandbox, not in sandboxDefaults.");
    const char *ext[] = {"sandboxDefaults", "scale", "egressPolicy", "hostFailurePolicy"};
    for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
        json_t *v = in ? json_object_get(in, ext[i]) : NULL;
        if (!v && patch && old)
            v = json_object_get(old, ext[i]);
        if (!v || json_is_null(v))
            continue;
        json_object_set_new(props, ext[i], known_fields(v, ext[i]));
    }
    json_t *exec_policy = in ? json_object_get(in, "execPolicy") : NULL;
    if (!exec_policy && patch && old)
        exec_policy = json_object_get(old, "execPolicy");
    if (exec_policy && !json_is_null(exec_policy)) {
        json_t *built = api_exec_policy_build(exec_policy, err);
        if (!built)
            return -1;
        json_object_set_new(props, "execPolicy", built);
    }
    json_t *defaults = json_object_get(props, "sandboxDefaults");
    if (defaults && !json_is_object(defaults))
        return api_invalid(err, "properties.sandboxDefaults",
                           "'properties.sandboxDefaults' must be an object.");
    if (defaults &&
        api_validate_sandbox_shape(api, defaults, "properties.sandboxDefaults", err) < 0)
        return -1;
    json_t *scale = json_object_get(props, "scale");
    if (scale && validate_scale(scale, err) < 0)
        return -1;
    bool present;
    const char *policy;
    if (api_get_string(props, "hostFailurePolicy", "properties.hostFailurePolicy", 16, &present,
                       &policy, err) < 0)
        return -1;
    if (present && strcmp(policy, "Fail") != 0 && strcmp(policy, "Recreate") != 0)
        return api_invalid(err, "properties.hostFailurePolicy",
                           "'properties.hostFailurePolicy' must be Fail or Recreate.");
    if (api_get_string(props, "egressPolicy", "properties.egressPolicy", 63, &present, &policy,
                       err) < 0)
        return -1;
    if (present && !api_name_valid(policy))
        return api_invalid(err, "properties.egressPolicy",
                           "'properties.egressPolicy' is not a valid egress policy name.");
    return 0;
}

const api_kind_t api_kind_group = {
    .segment = "sandboxgroups",
    .type = API_PROVIDER "/sandboxGroups",
    .type_key = "microsoft.app/sandboxgroups",
    .tracked = true,
    .async_put = true,
    .patchable = true,
    .validate = group_validate,
    .build_private = api_exec_policy_private,
};
