/* exec_policy.c -- a sandbox group's execPolicy: which executables its
 * execs and processes may start, and an admission webhook that sees each
 * command (and the code of `python3 -c`, `sh -c` style calls) and allows or
 * denies it.  Denied starts are 403 ExecDenied, logged and counted.
 *
 * The webhook's secret is write-only: sealed in the group's private part
 * (EXEC_SECRET_KEY), served as webhook.hasSecret.  Each call is signed
 * with it: X-Sandboxd-Signature: sha256=<hex HMAC-SHA256 of the body>.
 *
 * sandboxd calls the webhook from inside the operator's network on
 * behalf of whoever may write a group: unless the operator allows it, an
 * address that is not public (loopback, private, link-local with the
 * cloud metadata service, ...) is refused, checked on the address each
 * connection really uses, so a name that resolves differently later (DNS
 * rebinding) is caught too.  */
#include "api/internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <openssl/hmac.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define EXEC_SECRET_KEY "_execWebhookSecret"
#define MAX_ALLOWED 256
#define MAX_SECRET 256
#define MAX_REASON 256
#define MAX_CODE (64u << 10)
#define MAX_WEBHOOK_REPLY (64u << 10)
#define DEFAULT_TIMEOUT_MS 2000
#define MODULE "api"

static atomic_ullong checked_total, denied_total, webhook_calls, webhook_failures, webhook_refused;

/* ---- validation ---- */

static int validate_allowed(const json_t *v, sbx_error_t *err)
{
    const char *t = "properties.execPolicy.allowedExecutables";
    if (!json_is_array(v) || json_array_size(v) > MAX_ALLOWED)
        return api_invalid(err, t, "'%s' must be an array of at most %d paths or names.", t,
                           MAX_ALLOWED);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        const char *s = json_string_value(e);
        if (!s || !*s || strlen(s) != json_string_length(e) || json_string_length(e) > 4096 ||
            (s[0] != '/' && strchr(s, '/')))
            return api_invalid(err, t,
                               "'%s' entries are absolute paths (/usr/bin/python3) or names "
                               "without a slash (python3).",
                               t);
    }
    return 0;
}

static int validate_webhook(json_t *w, sbx_error_t *err)
{
    const char *t = "properties.execPolicy.webhook";
    if (!json_is_object(w))
        return api_invalid(err, t,
                           "'%s' must be an object {url, timeoutMs, failurePolicy, "
                           "secret}.",
                           t);
    const char *url = json_string_value(json_object_get(w, "url"));
    if (!url || strlen(url) > 2048 ||
        (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return api_invalid(err, "properties.execPolicy.webhook.url",
                           "'properties.execPolicy.webhook.url' must be an http(s) URL.");
    json_t *to = json_object_get(w, "timeoutMs");
    if (to && !json_is_null(to) &&
        (!json_is_integer(to) || json_integer_value(to) < 50 || json_integer_value(to) > 30000))
        return api_invalid(err, "properties.execPolicy.webhook.timeoutMs",
                           "'properties.execPolicy.webhook.timeoutMs' must be 50..30000.");
    const char *fp = json_string_value(json_object_get(w, "failurePolicy"));
    if (json_object_get(w, "failurePolicy") &&
        (!fp || (strcmp(fp, "Allow") != 0 && strcmp(fp, "Deny") != 0)))
        return api_invalid(err, "properties.execPolicy.webhook.failurePolicy",
                           "'properties.execPolicy.webhook.failurePolicy' must be Allow or "
                           "Deny.");
    json_t *secret = json_object_get(w, "secret");
    if (secret && !json_is_null(secret) &&
        (!json_is_string(secret) || json_string_length(secret) < 1 ||
         json_string_length(secret) > MAX_SECRET))
        return api_invalid(err, "properties.execPolicy.webhook.secret",
                           "'properties.execPolicy.webhook.secret' must be 1..%d characters.",
                           MAX_SECRET);
    /* Only the known fields are kept; the secret goes to the private part
     * (exec_policy_private), never into what is served.  */
    const char *drop[] = {"secret", "hasSecret"};
    for (size_t i = 0; i < ARRAY_SIZE(drop); i++)
        json_object_del(w, drop[i]);
    const char *keys[] = {"url", "timeoutMs", "failurePolicy"};
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(w, tmp, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
            known |= strcmp(k, keys[i]) == 0;
        if (!known || json_is_null(v))
            json_object_del(w, k);
    }
    return 0;
}

json_t *api_exec_policy_build(const json_t *in, sbx_error_t *err)
{
    if (!json_is_object(in)) {
        api_invalid(err, "properties.execPolicy",
                    "'properties.execPolicy' must be an object {allowedExecutables, webhook}.");
        return NULL;
    }
    _cleanup_json_ json_t *out = json_object();
    json_t *allowed = json_object_get(in, "allowedExecutables");
    if (allowed && !json_is_null(allowed)) {
        if (validate_allowed(allowed, err) < 0)
            return NULL;
        json_object_set(out, "allowedExecutables", allowed);
    }
    json_t *w = json_object_get(in, "webhook");
    if (w && !json_is_null(w)) {
        json_t *copy = json_deep_copy(w);
        json_object_set_new(out, "webhook", copy);
        if (validate_webhook(copy, err) < 0)
            return NULL;
    }
    return TAKE_PTR(out);
}

int api_exec_policy_private(api_t *api, const json_t *in, const json_t *old_body, json_t *body,
                            sbx_error_t *err)
{
    json_t *hook = json_object_get(
        json_object_get(json_object_get(body, "properties"), "execPolicy"), "webhook");
    if (!hook)
        return 0;
    json_t *given =
        json_object_get(json_object_get(json_object_get(in, "execPolicy"), "webhook"), "secret");
    json_t *old = json_object_get(old_body, EXEC_SECRET_KEY);
    if (json_is_string(given)) {
        if (!api->cfg.secret_key)
            return sbx_error_set(err, SBX_ERR_UNAVAILABLE,
                                 "This server has no secrets key; a webhook secret cannot be "
                                 "stored.");
        json_t *wrap = json_pack("{s:O}", "secret", given);
        char *sealed = api_secret_seal(api->cfg.secret_key, wrap, err);
        json_decref(wrap);
        if (!sealed)
            return -1;
        json_object_set_new(body, EXEC_SECRET_KEY, json_string(sealed));
        free(sealed);
    } else if (json_is_string(old) && !(given && json_is_null(given))) {
        /* Absent keeps it, so a GET-modify-PUT never wipes it; null drops it. */
        json_object_set(body, EXEC_SECRET_KEY, old);
    }
    json_object_set_new(hook, "hasSecret", json_boolean(json_object_get(body, EXEC_SECRET_KEY)));
    return 0;
}

/* ---- admission ---- */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* A bare name matches names only: PATH (which the request may set) picks
 * which file it is, so it cannot stand for a path.  A path matches the
 * same path.  */
static bool executable_allowed(const json_t *allowed, const char *cmd)
{
    size_t i;
    json_t *e;
    json_array_foreach(allowed, i, e)
    {
        const char *s = json_string_value(e);
        if (s[0] == '/' ? strcmp(s, cmd) == 0 : (!strchr(cmd, '/') && strcmp(s, cmd) == 0))
            return true;
    }
    return false;
}

/* The code of an interpreter called with code on its command line, and
 * which language it is: python -c, sh/bash -c (flags may be combined, as
 * in -ec), node -e, perl -e, ruby -e.  */
static const char *inline_code(json_t *argv, const char **lang)
{
    const char *prog = base_name(json_string_value(json_array_get(argv, 0)));
    static const struct {
        const char *prefix, *flag, *lang;
        bool combined;
    } forms[] = {
        {"python", "-c", "python", false},   {"sh", "-c", "shell", true},
        {"bash", "-c", "shell", true},       {"dash", "-c", "shell", true},
        {"zsh", "-c", "shell", true},        {"ash", "-c", "shell", true},
        {"node", "-e", "javascript", false}, {"node", "--eval", "javascript", false},
        {"perl", "-e", "perl", false},       {"ruby", "-e", "ruby", false},
    };
    for (size_t f = 0; f < ARRAY_SIZE(forms); f++) {
        size_t pl = strlen(forms[f].prefix);
        /* python3, python3.12; but not "shred" for "sh".  */
        if (strncmp(prog, forms[f].prefix, pl) != 0 ||
            strspn(prog + pl, "0123456789.") != strlen(prog + pl))
            continue;
        for (size_t i = 1; i + 1 < json_array_size(argv); i++) {
            const char *a = json_string_value(json_array_get(argv, i));
            bool match =
                strcmp(a, forms[f].flag) == 0 ||
                (forms[f].combined && a[0] == '-' && a[1] != '-' && strchr(a, forms[f].flag[1]));
            if (match) {
                *lang = forms[f].lang;
                return json_string_value(json_array_get(argv, i + 1));
            }
        }
    }
    return NULL;
}

static char *hmac_hex(const char *secret, const char *body)
{
    unsigned char md[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body), md,
         &n);
    char *hex = xmalloc(2 * n + 1);
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return hex;
}

typedef enum { VERDICT_ALLOW, VERDICT_DENY, VERDICT_FAILED } verdict_t;

typedef struct hook_conn {
    bool allow_private;
    char refused[INET6_ADDRSTRLEN]; /* the address refused, if one was */
} hook_conn_t;

/* curl's open-socket callback: every connection the call makes passes
 * here with the address it is for.  */
static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    hook_conn_t *hc = ud;
    (void)purpose;
    if (!hc->allow_private && !sbx_addr_public(&a->addr)) {
        const void *raw = a->family == AF_INET6
                              ? (const void *)&((struct sockaddr_in6 *)&a->addr)->sin6_addr
                              : (const void *)&((struct sockaddr_in *)&a->addr)->sin_addr;
        if (!inet_ntop(a->family, raw, hc->refused, sizeof(hc->refused)))
            snprintf(hc->refused, sizeof(hc->refused), "(family %d)", a->family);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Ask the webhook; *why says why on a deny or a failure.  */
static verdict_t ask_webhook(const json_t *hook, const char *secret, const json_t *question,
                             bool allow_private, char *why, size_t why_len)
{
    hook_conn_t hc = {.allow_private = allow_private};
    _cleanup_free_ char *body = json_dumps(question, JSON_COMPACT);
    CURL *c = curl_easy_init();
    if (!c || !body) {
        if (c)
            curl_easy_cleanup(c);
        snprintf(why, why_len, "cannot call the admission webhook");
        return VERDICT_FAILED;
    }
    json_t *to = json_object_get(hook, "timeoutMs");
    long timeout = json_is_integer(to) ? (long)json_integer_value(to) : DEFAULT_TIMEOUT_MS;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    _cleanup_free_ char *sig = NULL;
    if (secret) {
        _cleanup_free_ char *hex = hmac_hex(secret, body);
        sig = xasprintf("X-Sandboxd-Signature: sha256=%s", hex);
        h = curl_slist_append(h, sig);
    }
    sbx_sink_t r = {.max = MAX_WEBHOOK_REPLY};
    curl_easy_setopt(c, CURLOPT_URL, json_string_value(json_object_get(hook, "url")));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, ""); /* never a proxy from the environment */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sbx_sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &hc);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    _cleanup_free_ char *data = r.data;
    if (rc != CURLE_OK && hc.refused[0]) {
        atomic_fetch_add(&webhook_refused, 1);
        snprintf(why, why_len,
                 "the admission webhook's address %s is not a public one (sandboxd "
                 "--exec-webhook-allow-private allows it)",
                 hc.refused);
        return VERDICT_FAILED;
    }
    if (rc != CURLE_OK || status != 200) {
        snprintf(why, why_len, "the admission webhook %s",
                 rc == CURLE_OPERATION_TIMEDOUT ? "did not answer in time"
                 : rc != CURLE_OK               ? "could not be reached"
                                                : "answered with an error");
        return VERDICT_FAILED;
    }
    _cleanup_json_ json_t *j = json_loadb(data ? data : "", r.len, 0, NULL);
    json_t *allow = json_object_get(j, "allow");
    if (!json_is_boolean(allow)) {
        snprintf(why, why_len, "the admission webhook's answer is not {\"allow\": bool}");
        return VERDICT_FAILED;
    }
    const char *reason = json_string_value(json_object_get(j, "reason"));
    if (reason && sbx_utf8_valid(reason, strlen(reason)))
        snprintf(why, why_len, "%.*s", MAX_REASON, reason);
    else
        snprintf(why, why_len, "denied by the admission webhook");
    return json_is_true(allow) ? VERDICT_ALLOW : VERDICT_DENY;
}

static char *webhook_secret(api_t *api, const st_resource_t *group)
{
    json_t *sealed = json_object_get(group->body, EXEC_SECRET_KEY);
    if (!json_is_string(sealed) || !api->cfg.secret_key)
        return NULL;
    sbx_error_t err = {0};
    _cleanup_json_ json_t *j =
        api_secret_open(api->cfg.secret_key, json_string_value(sealed), &err);
    const char *s = json_string_value(json_object_get(j, "secret"));
    return s ? xstrdup(s) : NULL;
}

static json_t *question_of(const st_resource_t *group, const st_resource_t *sandbox,
                           const char *kind, const json_t *body)
{
    json_t *argv = json_object_get(body, "command");
    json_t *keys = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)json_object_get(body, "env"), k, v)
        json_array_append_new(keys, json_string(k));
    json_t *q =
        json_pack("{s:s,s:s,s:s,s:s,s:O,s:o}", "kind", kind, "subscriptionId", group->subscription,
                  "group", group->name, "sandbox", sandbox->name, "command", argv, "envKeys", keys);
    json_t *cwd = json_object_get(body, "cwd");
    if (json_is_string(cwd))
        json_object_set(q, "cwd", cwd);
    const char *lang = NULL;
    const char *code = inline_code(argv, &lang);
    if (code) {
        json_object_set_new(q, "language", json_string(lang));
        json_object_set_new(q, "code", json_stringn(code, strnlen(code, MAX_CODE)));
    }
    return q;
}

static int deny(const st_resource_t *sandbox, const char *cmd, const char *why,
                http_response_t *res)
{
    unsigned long long n = atomic_fetch_add(&denied_total, 1) + 1;
    sbx_log(SBX_LOG_WARN, MODULE, "exec denied in %s (%s): %s [%llu denied so far]", sandbox->id,
            cmd, why, n);
    http_reply_error(res, 403, "ExecDenied", "%s", why);
    return -1;
}

int api_exec_admit(api_t *api, const st_resource_t *sandbox, const char *kind,
                   const http_request_t *req, http_response_t *res)
{
    if (!sandbox->parent_id)
        return 0;
    st_resource_t group = {0};
    sbx_error_t err = {0};
    if (st_resource_get(api->db, sandbox->parent_id, &group, &err) < 0)
        return 0; /* the sandbox's own lookup decides */
    int ret = 0;
    json_t *policy = json_object_get(json_object_get(group.body, "properties"), "execPolicy");
    _cleanup_json_ json_t *body =
        policy ? json_loadb(req->body ? req->body : "", req->body_len, 0, NULL) : NULL;
    json_t *argv = json_object_get(body, "command");
    /* A malformed command is the host's to refuse (400), as without a
     * policy.  */
    const char *cmd = json_string_value(json_array_get(argv, 0));
    bool plain = json_is_array(argv) && json_array_size(argv) > 0;
    for (size_t i = 0; plain && i < json_array_size(argv); i++)
        plain = json_is_string(json_array_get(argv, i));
    if (!policy || !plain || !cmd) {
        st_resource_done(&group);
        return 0;
    }
    json_t *allowed = json_object_get(policy, "allowedExecutables");
    json_t *hook = json_object_get(policy, "webhook");
    atomic_fetch_add(&checked_total, 1);
    char why[MAX_REASON + 64];
    if (allowed && !executable_allowed(allowed, cmd)) {
        snprintf(why, sizeof(why), "'%.200s' is not among the group's allowed executables", cmd);
        ret = deny(sandbox, cmd, why, res);
    } else if (hook) {
        _cleanup_free_ char *secret = webhook_secret(api, &group);
        _cleanup_json_ json_t *q = question_of(&group, sandbox, kind, body);
        atomic_fetch_add(&webhook_calls, 1);
        verdict_t v =
            ask_webhook(hook, secret, q, api->cfg.exec_webhook_allow_private, why, sizeof(why));
        if (v == VERDICT_FAILED) {
            const char *fp = json_string_value(json_object_get(hook, "failurePolicy"));
            bool open = fp && strcmp(fp, "Allow") == 0;
            unsigned long long n = atomic_fetch_add(&webhook_failures, 1) + 1;
            sbx_log(SBX_LOG_WARN, MODULE, "exec admission in %s: %s; failing %s [%llu failures]",
                    sandbox->id, why, open ? "open" : "closed", n);
            if (!open)
                ret = deny(sandbox, cmd, why, res);
        } else if (v == VERDICT_DENY) {
            ret = deny(sandbox, cmd, why, res);
        }
    }
    st_resource_done(&group);
    return ret;
}

void api_exec_counters(api_exec_counts_t *out)
{
    out->checked = atomic_load(&checked_total);
    out->denied = atomic_load(&denied_total);
    out->webhook_calls = atomic_load(&webhook_calls);
    out->webhook_failures = atomic_load(&webhook_failures);
    out->webhook_refused = atomic_load(&webhook_refused);
}
