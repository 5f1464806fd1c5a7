/* egress_hooks.c -- where the sandbox lifecycle meets egress/: the policy a
 * create or update carries, links made when a sandbox runs and dropped when
 * it stops or goes, recovery at start, and the decision log route.  */
#include "agent/internal.h"

#include <string.h>

#define MODULE "agent"

int agent_egress_parse(const agent_call_t *c, json_t **policy, bool *present, bool *identity,
                       http_response_t *res)
{
    *policy = NULL;
    json_error_t jerr;
    _cleanup_json_ json_t *body =
        c->body_len ? json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *idj = json_object_get(body, "identity");
    if (idj && !json_is_boolean(idj)) {
        agent_reply_invalid(res, "identity must be true or false");
        return -1;
    }
    *identity = json_is_true(idj);
    json_t *p = json_object_get(body, "egress");
    *present = p != NULL;
    if (!p || json_is_null(p))
        return 0;
    sbx_error_t err = {0};
    if (egress_policy_check(p, &err) < 0) {
        char target[160];
        snprintf(target, sizeof target, "egress.%s", err.target);
        sbx_error_target(&err, target);
        http_reply_sbx_error(res, &err);
        return -1;
    }
    *policy = json_incref(p);
    return 0;
}

/* The sandbox's driver learns what link it has now (rt_net_changed): a
 * VM's guest configures the same address.  Links are /31s (egress/net.c).  */
static void net_tell(egress_t *eg, rt_runtime_t *rt, const char *id)
{
    rt_net_link_t l = {.ifname = "eth0", .prefix = 31};
    l.present = egress_addresses(eg, id, l.address, l.gateway, sizeof l.address) == 1;
    sbx_error_t err = {0};
    if (rt_net_changed(rt, id, &l, &err) < 0 && err.code != SBX_ERR_NOT_FOUND)
        sbx_log(SBX_LOG_WARN, MODULE, "sandbox %s: its link did not reach the sandbox: %s", id,
                err.msg);
}

/* gVisor takes its network as it boots (the runtime's net hook calls
 * agent_egress_boot); the other drivers are linked after they start.  */
static bool links_at_boot(const char *driver)
{
    return driver && strcmp(driver, "gvisor") == 0;
}

static int apply(egress_t *eg, rt_runtime_t *rt, const char *id, const json_t *policy, bool boot,
                 sbx_error_t *err)
{
    if (!eg) {
        if (policy)
            sbx_log(SBX_LOG_WARN, MODULE,
                    "sandbox %s: egress is off on this agent (no --egress-pool); its policy "
                    "is not enforced and it reaches nothing",
                    id);
        return 0;
    }
    sbx_error_t nerr = {0};
    rt_info_t info = {0};
    /* gvisor is linked as it boots (agent_egress_boot), here only its
     * rules change.  A microVM's guest gets the link through its tap
     * (net_tell).  */
    bool linkable = rt_get(rt, id, &info, NULL) == 0 &&
                    (strcmp(info.driver, "process") == 0 || strcmp(info.driver, "microvm") == 0);
    bool at_boot = links_at_boot(info.driver);
    if (!linkable && !at_boot && policy)
        sbx_log(SBX_LOG_WARN, MODULE,
                "sandbox %s: egress is enforced for the process, gvisor and microvm drivers only; "
                "this one reaches nothing",
                id);
    int fd = linkable ? rt_netns_open(rt, id, &nerr) : -1;
    char had[64] = "", sb[64], gw[64];
    if (!boot)
        egress_addresses(eg, id, sb, had, sizeof had);
    int rc = egress_apply(eg, id, fd, policy, err);
    if (fd >= 0)
        close(fd);
    if (rc == 0 && linkable)
        net_tell(eg, rt, id);
    /* A new link: the sandbox's resolver is its gateway (as Docker writes
     * resolv.conf); a sandbox may change the file afterwards.  */
    if (rc == 0 && egress_addresses(eg, id, sb, gw, sizeof gw) == 1 && strcmp(had, gw) != 0) {
        char conf[96];
        int n = snprintf(conf, sizeof conf, "nameserver %s\n", gw);
        sbx_error_t werr = {0};
        if (rt_file_write(rt, id, "/etc/resolv.conf", conf, (size_t)n, &werr) < 0)
            sbx_log(SBX_LOG_INFO, MODULE, "sandbox %s: /etc/resolv.conf not written: %s", id,
                    werr.msg);
    }
    return rc;
}

int agent_egress_apply(egress_t *eg, rt_runtime_t *rt, const char *id, const json_t *policy,
                       sbx_error_t *err)
{
    return apply(eg, rt, id, policy, false, err);
}

int agent_egress_booted(egress_t *eg, rt_runtime_t *rt, const char *id, const json_t *policy,
                        sbx_error_t *err)
{
    return apply(eg, rt, id, policy, true, err);
}

int agent_egress_record(egress_t *eg, const char *driver, const char *id, const json_t *policy,
                        sbx_error_t *err)
{
    /* Only where the boot needs it: for the others agent_egress_booted
     * records it, and a second parse and record save would only cost the
     * create path.  */
    return eg && links_at_boot(driver) ? egress_apply(eg, id, -1, policy, err) : 0;
}

int agent_egress_boot(void *eg, const char *id, int netns_fd, sbx_error_t *err)
{
    return egress_boot_link(eg, id, netns_fd, err);
}

void agent_egress_after(egress_t *eg, rt_runtime_t *rt, const char *id, const char *action)
{
    if (!eg)
        return;
    if (strcmp(action, "delete") == 0 || strcmp(action, "stop") == 0) {
        egress_release(eg, id, strcmp(action, "delete") == 0);
        if (strcmp(action, "stop") == 0)
            net_tell(eg, rt, id);
        return;
    }
    if (strcmp(action, "start") != 0)
        return;
    _cleanup_json_ json_t *p = egress_policy_of(eg, id);
    sbx_error_t err = {0};
    if (agent_egress_booted(eg, rt, id, p, &err) < 0)
        sbx_log(SBX_LOG_ERROR, MODULE, "sandbox %s: its egress link failed: %s", id, err.msg);
}

void agent_egress_recover(egress_t *eg, rt_runtime_t *rt)
{
    if (!eg)
        return;
    _cleanup_json_ json_t *ids = egress_ids(eg);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        const char *id = json_string_value(v);
        rt_info_t info;
        sbx_error_t err = {0};
        if (rt_get(rt, id, &info, &err) < 0) {
            if (err.code == SBX_ERR_NOT_FOUND)
                egress_release(eg, id, true);
            continue;
        }
        if (info.state != RT_STATE_RUNNING && info.state != RT_STATE_SUSPENDED)
            continue;
        _cleanup_json_ json_t *p = egress_policy_of(eg, id);
        if (agent_egress_apply(eg, rt, id, p, &err) < 0)
            sbx_log(SBX_LOG_ERROR, MODULE, "sandbox %s: its egress link failed: %s", id, err.msg);
    }
}

void agent_egress_decisions(egress_t *eg, rt_runtime_t *rt, const char *id, http_response_t *res)
{
    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(rt, id, &info, &err) < 0) {
        if (err.code == SBX_ERR_NOT_FOUND)
            snprintf(err.arm_code, sizeof err.arm_code, "SandboxNotFound");
        return http_reply_sbx_error(res, &err);
    }
    json_t *j = eg ? egress_decisions(eg, id, &err) : NULL;
    if (!j)
        j = json_pack("{s:i,s:i,s:[],s:[],s:n}", "allowed", 0, "denied", 0, "recentAllowed",
                      "recentDenied", "policy");
    json_object_set_new(j, "enforced", json_boolean(eg != NULL));
    http_reply_json(res, 200, j);
}

void agent_egress_policy(egress_t *eg, rt_runtime_t *rt, const char *id, const agent_call_t *c,
                         http_response_t *res)
{
    sbx_error_t err = {0};
    if (rt_get(rt, id, NULL, &err) < 0)
        return http_reply_sbx_error(res, &err);
    if (strcmp(c->method, "PUT") == 0) {
        json_error_t jerr;
        _cleanup_json_ json_t *p =
            json_loadb(c->body ? c->body : "null", c->body_len ? c->body_len : 4,
                       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!p || (!json_is_null(p) && !json_is_object(p)))
            return http_reply_error(res, 400, "InvalidRequestContent",
                                    "the body must be an egress policy object or null");
        if (json_is_null(p)) {
            json_decref(p);
            p = NULL;
        }
        if (egress_policy_check(p, &err) < 0 || agent_egress_apply(eg, rt, id, p, &err) < 0)
            return http_reply_sbx_error(res, &err);
    }
    json_t *cur = eg ? egress_policy_of(eg, id) : NULL;
    http_reply_json(
        res, 200,
        json_pack("{s:o,s:b}", "policy", cur ? cur : json_null(), "enforced", eg != NULL));
}

json_t *agent_egress_health(const agent_api_t *api)
{
    const char *why = api->egress               ? NULL
                      : api->egress_unavailable ? api->egress_unavailable
                                                : "egress is off on this agent (no --egress-pool)";
    return json_pack("{s:b,s:s?,s:s?}", "enforced", api->egress != NULL, "pool",
                     api->egress ? api->egress_pool : NULL, "unavailable", why);
}

void agent_identity_prepare(agent_api_t *api, const char *id, json_t *spec, bool identity)
{
    if (!api->imds || !api->egress || !identity)
        return;
    {
        json_t *env = json_object_get(spec, "env");
        if (!json_is_object(env)) {
            env = json_object();
            json_object_set_new(spec, "env", env);
        }
        char header[33];
        agent_imds_server_header(api->imds, id, header);
        json_object_set_new(env, "IDENTITY_ENDPOINT",
                            json_string("http://169.254.169.254/msi/token"));
        json_object_set_new(env, "IDENTITY_HEADER", json_string(header));
    }
}

void agent_egress_note(const agent_api_t *api, const json_t *policy, bool identity, rt_info_t *info)
{
    if (info->message[0])
        return;
    if (identity && (!api->egress || !api->imds)) {
        snprintf(info->message, sizeof info->message,
                 "the identity endpoint is unavailable on this host (%.120s): the sandbox "
                 "cannot get tokens",
                 !api->egress
                     ? (api->egress_unavailable ? api->egress_unavailable : "no --egress-pool")
                     : "no --identity-url");
        return;
    }
    if (api->egress || !policy || json_is_null(policy))
        return;
    snprintf(info->message, sizeof info->message,
             "egress is unavailable on this host (%.120s): the sandbox's egress policy is not "
             "enforced and it reaches nothing",
             api->egress_unavailable ? api->egress_unavailable : "no --egress-pool");
}
