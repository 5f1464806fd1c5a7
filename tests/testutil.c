/* testutil.c -- helpers shared by the Check tests.  */
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

char *tu_tmpdir(const char *prefix)
{
    const char *base = getenv("TMPDIR");
    char *tmpl = xasprintf("%s/%s-XXXXXX", base && *base ? base : "/tmp", prefix);
    if (!mkdtemp(tmpl)) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

void tu_rmdir(const char *dir)
{
    if (dir)
        sbx_rm_rf(dir, NULL);
}

int tu_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static char *from_env_dir(const char *var, const char *fallback, const char *rel)
{
    const char *dir = getenv(var);
    return xasprintf("%s/%s", dir && *dir ? dir : fallback, rel);
}

char *tu_bin(const char *name)
{
    return from_env_dir("SBX_BIN_DIR", ".", name);
}

char *tu_src(const char *rel)
{
    return from_env_dir("SBX_SOURCE_DIR", "..", rel);
}

pid_t tu_spawn(char *const argv[], char *const extra_env[], const char *log_path)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra_env && extra_env[m])
        m++;
    char **env = xcalloc(n + m + 1, sizeof(char *));
    memcpy(env, environ, n * sizeof(char *));
    if (m)
        memcpy(env + n, extra_env, m * sizeof(char *));
    int log_fd = -1;
    if (log_path)
        log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = fork();
    if (pid == 0) {
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        setpgid(0, 0);
        execve(argv[0], argv, env);
        _exit(127);
    }
    if (log_fd >= 0)
        close(log_fd);
    free(env);
    return pid;
}

int tu_stop(pid_t pid, int timeout_ms)
{
    int status;
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    while (sbx_monotonic_ms() < deadline) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) == pid)
        return status;
    return -1;
}

tu_deadline_t tu_deadline_in(int timeout_ms)
{
    return (tu_deadline_t){.end_ms = sbx_monotonic_ms() + timeout_ms, .step_ms = 10};
}

bool tu_deadline_wait(tu_deadline_t *d)
{
    int64_t left = d->end_ms - sbx_monotonic_ms();
    if (left <= 0) {
        if (d->last)
            return false;
        d->last = true; /* one more try at the deadline */
        return true;
    }
    usleep((useconds_t)(left < d->step_ms ? left : d->step_ms) * 1000);
    if (d->step_ms < 100)
        d->step_ms *= 2;
    return true;
}

static bool port_answers(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

bool tu_wait_port(int port, int timeout_ms)
{
    return tu_wait_until(port_answers(port), timeout_ms);
}

typedef struct buf {
    char *data;
    size_t len;
} buf_t;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    buf_t *b = ud;
    size_t add = size * n;
    b->data = xrealloc(b->data, b->len + add + 1);
    memcpy(b->data + b->len, p, add);
    b->len += add;
    b->data[b->len] = '\0';
    return add;
}

void tu_response_free(tu_response_t *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

char *tu_header(const tu_response_t *r, const char *name)
{
    size_t nl = strlen(name);
    const char *line = r->headers;
    char *found = NULL;
    while (line && *line) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* HTTP/1.1 status lines start a new header block (after redirects or 100s).  */
        if (len > 5 && strncmp(line, "HTTP/", 5) == 0) {
            free(found);
            found = NULL;
        } else if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            free(found);
            found = xstrndup(v, len - (size_t)(v - line));
        }
        line = end ? end + 2 : NULL;
    }
    return found;
}

/* Append one exchange to $SBX_TRAFFIC_LOG so the conformance checker can
 * validate every reply a test saw against the OpenAPI description.  */
static void record_traffic(const char *method, const char *url, const tu_request_opts_t *o,
                           const tu_response_t *r)
{
    const char *path = getenv("SBX_TRAFFIC_LOG");
    if (!path || !*path)
        return;
    json_t *req_headers = json_object(), *res_headers = json_object();
    for (const char *const *h = o->headers; h && *h; h++) {
        const char *colon = strchr(*h, ':');
        if (!colon)
            continue;
        char *name = xstrndup(*h, (size_t)(colon - *h));
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        json_object_set_new(req_headers, name, json_string(v));
        free(name);
    }
    const char *line = r->headers;
    while (line && *line) {
        const char *end = strstr(line, "\r\n");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *colon = memchr(line, ':', len);
        if (colon && strncmp(line, "HTTP/", 5) != 0) {
            char *name = xstrndup(line, (size_t)(colon - line));
            const char *v = colon + 1;
            while (*v == ' ')
                v++;
            char *val = xstrndup(v, len - (size_t)(v - line));
            sbx_str_lower(name);
            json_object_set_new(res_headers, name, json_string(val));
            free(name);
            free(val);
        }
        line = end ? end + 2 : NULL;
    }
    json_t *rec =
        json_pack("{s:s,s:s,s:i,s:o,s:o}", "method", method, "url", url, "status", (int)r->status,
                  "requestHeaders", req_headers, "responseHeaders", res_headers);
    json_t *reqb =
        o->body ? json_loadb(o->body, o->body_len ? o->body_len : strlen(o->body), 0, NULL) : NULL;
    json_t *resb = r->body_len ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
    /* An event stream is text: kept as a string, as its operation says.  */
    const char *type = json_string_value(json_object_get(res_headers, "content-type"));
    if (!resb && r->body_len && type && !strncmp(type, "text/event-stream", 17))
        resb = json_stringn(r->body, r->body_len);
    json_object_set_new(rec, "requestBody", reqb ? reqb : json_null());
    json_object_set_new(rec, "responseBody", resb ? resb : json_null());
    /* One write() per line on an O_APPEND descriptor, so tests running in
     * parallel never interleave their lines.  */
    char *s = json_dumps(rec, JSON_COMPACT);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s && fd >= 0) {
        char *out = xasprintf("%s\n", s);
        ssize_t w = write(fd, out, strlen(out));
        (void)w;
        free(out);
    }
    if (fd >= 0)
        close(fd);
    free(s);
    json_decref(rec);
}

int tu_http(const char *method, const char *url, const tu_request_opts_t *opts, tu_response_t *out)
{
    static const tu_request_opts_t none = {0};
    const tu_request_opts_t *o = opts ? opts : &none;
    memset(out, 0, sizeof(*out));
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    buf_t body = {0}, hdrs = {0};
    struct curl_slist *list = NULL;
    for (const char *const *h = o->headers; h && *h; h++)
        list = curl_slist_append(list, *h);
    char ct[256];
    if (o->body) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 o->content_type ? o->content_type : "application/json");
        list = curl_slist_append(list, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(o->body_len ? o->body_len : strlen(o->body)));
    }
    list = curl_slist_append(list, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms ? o->timeout_ms : 30000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o->cert_file)
        curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert_file);
    if (o->key_file)
        curl_easy_setopt(c, CURLOPT_SSLKEY, o->key_file);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
    out->body = body.data ? body.data : xstrdup("");
    out->body_len = body.len;
    out->headers = hdrs.data ? hdrs.data : xstrdup("");
    if (rc != CURLE_OK)
        return -1;
    record_traffic(method, url, o, out);
    return 0;
}

json_t *tu_json(const tu_response_t *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

/* ---- a sandboxd for tests ---- */

/* Up when the port answers while the process lives; false when it exited
 * (the port was probably taken) or timed out.  */
static bool server_up(tu_server_t *s, int timeout_ms)
{
    int64_t deadline = sbx_monotonic_ms() + timeout_ms;
    while (sbx_monotonic_ms() < deadline) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = -1;
            return false;
        }
        if (tu_wait_port(s->port, 20))
            return true;
    }
    return false;
}

/* The port could belong to another test's server that took it first: ours
 * accepts our token.  */
static bool server_is_ours(const tu_server_t *s)
{
    if (!s->token)
        return true;
    _cleanup_free_ char *url =
        xasprintf("%s/providers/Microsoft.App/operations?api-version=2026-07-01", s->base);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", s->token);
    const char *hdrs[] = {auth, NULL};
    tu_request_opts_t o = {.headers = hdrs, .timeout_ms = 10000};
    tu_response_t r;
    bool ours = tu_http("GET", url, &o, &r) == 0 && r.status != 401;
    tu_response_free(&r);
    return ours;
}

static void read_token(tu_server_t *s, const char *auth_token)
{
    free(s->token);
    s->token = NULL;
    if (auth_token) {
        s->token = xstrdup(auth_token);
        return;
    }
    _cleanup_free_ char *path = xasprintf("%s/dev-token", s->data_dir);
    size_t len = 0;
    if (sbx_read_file(path, &s->token, &len, NULL) == 0)
        while (len > 0 && (s->token[len - 1] == '\n' || s->token[len - 1] == '\r'))
            s->token[--len] = '\0';
}

int tu_server_start(tu_server_t *s, const char *data_dir, const char *const *extra_args)
{
    if (s->data_dir != data_dir) {
        free(s->data_dir);
        s->data_dir = xstrdup(data_dir);
    }
    _cleanup_free_ char *bin = tu_bin("sandboxd");
    const char *auth_token = NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = tu_free_port();
        char listen[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
        const char *argv[48] = {bin,          "--listen",  listen,
                                "--data-dir", s->data_dir, "--no-local-agent"};
        size_t n = 6;
        for (const char *const *a = extra_args; a && *a && n < ARRAY_SIZE(argv) - 1; a++) {
            if (strcmp(*a, "--auth-token") == 0 && a[1])
                auth_token = a[1];
            argv[n++] = *a;
        }
        argv[n] = NULL;
        free(s->log);
        s->log = xasprintf("%s.log", s->data_dir);
        s->pid = tu_spawn((char *const *)argv, NULL, s->log);
        if (s->pid > 0 && server_up(s, 20000)) {
            free(s->base);
            s->base = xasprintf("http://127.0.0.1:%d", s->port);
            read_token(s, auth_token);
            if (server_is_ours(s))
                return 0;
        }
        if (s->pid > 0)
            tu_stop(s->pid, 5000);
        s->pid = -1;
    }
    return -1;
}

int tu_server_stop(tu_server_t *s)
{
    int status = tu_stop(s->pid, 20000);
    s->pid = -1;
    return status;
}

int tu_server_kill(tu_server_t *s)
{
    int status = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        if (waitpid(s->pid, &status, 0) != s->pid)
            status = -1;
    }
    s->pid = -1;
    return status;
}

void tu_server_done(tu_server_t *s)
{
    if (s->pid > 0)
        tu_server_stop(s);
    free(s->data_dir);
    free(s->token);
    free(s->base);
    free(s->log);
    memset(s, 0, sizeof(*s));
}

char *tu_server_admin_token(const tu_server_t *s)
{
    _cleanup_free_ char *path = xasprintf("%s/admin-token", s->data_dir);
    char *tok = NULL;
    size_t len = 0;
    if (sbx_read_file(path, &tok, &len, NULL) < 0)
        return NULL;
    while (len > 0 && (tok[len - 1] == '\n' || tok[len - 1] == '\r'))
        tok[--len] = '\0';
    return tok;
}

/* A call to the admin API with the admin token.  */
static long admin_call(const tu_server_t *s, const char *method, const char *path, const char *body,
                       json_t **out)
{
    _cleanup_free_ char *admin = tu_server_admin_token(s);
    if (!admin)
        return -1;
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", admin);
    _cleanup_free_ char *url = xasprintf("%s%s", s->base, path);
    const char *hdrs[] = {auth, NULL};
    tu_request_opts_t o = {.headers = hdrs, .body = body};
    tu_response_t r;
    if (tu_http(method, url, &o, &r) < 0)
        return -1;
    long status = r.status;
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return status;
}

char *tu_mint_token(const tu_server_t *s, const char *subject)
{
    json_t *req = json_pack("{s:s}", "subject", subject);
    _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    json_t *j = NULL;
    long status = admin_call(s, "POST", "/admin/tokens", body, &j);
    const char *tok = json_string_value(json_object_get(j, "token"));
    char *out = status == 200 && tok ? xstrdup(tok) : NULL;
    json_decref(j);
    return out;
}

long tu_assign_role(const tu_server_t *s, const char *name, const char *principal, const char *role,
                    const char *scope)
{
    json_t *req = json_pack("{s:{s:s,s:s,s:s}}", "properties", "principalId", principal,
                            "roleDefinitionName", role, "scope", scope);
    _cleanup_free_ char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    _cleanup_free_ char *path = xasprintf("/admin/roleAssignments/%s", name);
    return admin_call(s, "PUT", path, body, NULL);
}
