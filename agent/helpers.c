/* helpers.c -- what every part of the agent's API uses: JSON of sandbox
 * output, error replies, and validation of bodies and environments.  */
#include "agent/internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_ENV_ENTRIES 1024
#define MAX_ENV_NAME 255

/* Copy s, replacing every ill-formed UTF-8 sequence (maximal subpart) with
 * U+FFFD, so output from a sandbox always fits in a JSON string.  */
static char *utf8_sanitize(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = xmalloc(len * 3 + 1);
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            need = 0; /* never valid as a lead byte */
        }
        size_t got = 0;
        if (need) {
            while (got < need && i + 1 + got < len) {
                unsigned char b = p[i + 1 + got];
                unsigned char blo = got == 0 ? lo : 0x80, bhi = got == 0 ? hi : 0xBF;
                if (b < blo || b > bhi)
                    break;
                got++;
            }
        }
        if (need && got == need) {
            memcpy(out + o, p + i, need + 1);
            o += need + 1;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
        i += 1 + got;
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* A JSON string of arbitrary bytes, made valid UTF-8.  */
json_t *agent_json_text(const char *s, size_t len)
{
    size_t n;
    _cleanup_free_ char *clean = utf8_sanitize(s ? s : "", s ? len : 0, &n);
    return json_stringn(clean, n);
}

json_t *agent_json_cstr(const char *s)
{
    return agent_json_text(s, s ? strlen(s) : 0);
}

json_t *agent_json_time(int64_t ms)
{
    char buf[40];
    sbx_time_format(ms, buf, sizeof(buf));
    return json_string(buf);
}

void agent_reply_invalid(http_response_t *res, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(res, 400, "InvalidRequestContent", "%s", msg);
}

/* Reply with an error from the runtime or image store; an unknown id is
 * SandboxNotFound.  Server-side failures are logged, since the scheduler
 * only sees the message.  */
void agent_reply_error(http_response_t *res, sbx_error_t *err, const char *what)
{
    /* A callee that failed without saying how is an internal failure.  */
    if (err->code == SBX_OK)
        err->code = SBX_ERR_INTERNAL;
    if (err->code == SBX_ERR_NOT_FOUND && !err->arm_code[0])
        snprintf(err->arm_code, sizeof(err->arm_code), "SandboxNotFound");
    if (err->code == SBX_ERR_INTERNAL || err->code == SBX_ERR_UNAVAILABLE ||
        err->code == SBX_ERR_TIMEOUT)
        sbx_log(SBX_LOG_ERROR, AGENT_MODULE, "%s: %s", what, err->msg);
    http_reply_sbx_error(res, err);
}

bool agent_json_plain(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static bool is_name_char(char c, bool first)
{
    return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || (!first && c >= '0' && c <= '9');
}

static bool env_name_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > MAX_ENV_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_name_char(k[i], i == 0))
            return false;
    return true;
}

/* `env` must be an object of plain strings with shell-style names.  Replies
 * 400 and returns -1 otherwise.  */
int agent_check_env(const json_t *env, http_response_t *res)
{
    if (!json_is_object(env))
        return agent_reply_invalid(res, "env must be an object of strings"), -1;
    if (json_object_size(env) > MAX_ENV_ENTRIES)
        return agent_reply_invalid(res, "env has more than %d entries", MAX_ENV_ENTRIES), -1;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)env, k, v)
    {
        if (!env_name_valid(k))
            return agent_reply_invalid(res, "env name '%.64s' is not [A-Za-z_][A-Za-z0-9_]*", k),
                   -1;
        if (!agent_json_plain(v))
            return agent_reply_invalid(res, "env value of '%s' must be a string without NULs", k),
                   -1;
    }
    return 0;
}

/* A JSON object from the request body; an empty body counts as {} where
 * `empty_ok`.  Replies 400 and returns NULL otherwise.  */
json_t *agent_parse_object(const agent_call_t *c, bool empty_ok, http_response_t *res)
{
    if (c->body_len == 0 && empty_ok)
        return json_object();
    json_error_t jerr;
    json_t *j = json_loadb(c->body ? c->body : "", c->body_len,
                           JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j) {
        agent_reply_invalid(res, "the body is not valid JSON: %s (at offset %d)", jerr.text,
                            jerr.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        agent_reply_invalid(res, "the body must be a JSON object");
        return NULL;
    }
    return j;
}
