/* test_agent_imds_e2e.c -- the host agent's managed identity answers
 * (agent_imds_answer) against a real sandboxd with its local agent: a
 * running sandbox gets a token for its own identity, in the IMDS and the
 * App Service forms, that the openssl command verifies against sandboxd's
 * JWKS; another host, another identity and bad requests get clear
 * refusals.  Then the same from inside a sandbox, at 169.254.169.254 and
 * $IDENTITY_ENDPOINT: the sandbox gets only its own identity, a sandbox
 * without one and the host side do not reach the endpoint at all.  */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "agent/agent.h"
#include "auth/internal.h"
#include "storage/storage.h"
#include "tests/testutil.h"

#define SUB "8d9e0f1a-2b3c-4d4e-8f5a-6b7c8d9e0f1a"
#define API "api-version=2026-07-01"
#define IMDS "/metadata/identity/oauth2/token"

static char *tmp, *data, *base, *dev, *admin, *log_path;
static pid_t pid = -1;

static char *read_token(const char *name)
{
    _cleanup_free_ char *path = xasprintf("%s/%s", data, name);
    char *t = NULL;
    size_t n = 0;
    if (sbx_read_file(path, &t, &n, NULL) < 0)
        return NULL;
    t[strcspn(t, "\n")] = '\0';
    return t;
}

static long call(const char *method, const char *path, const char *token, const char *body,
                 json_t **out)
{
    _cleanup_free_ char *url = xasprintf("%s%s", base, path);
    _cleanup_free_ char *auth = xasprintf("Authorization: Bearer %s", token);
    const char *hdrs[] = {auth, NULL};
    tu_request_opts_t o = {.body = body, .headers = hdrs};
    tu_response_t r;
    ck_assert_int_eq(tu_http(method, url, &o, &r), 0);
    long st = r.status;
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return st;
}

static void setup(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    tmp = tu_tmpdir("sbx-imds");
    data = xasprintf("%s/data", tmp);
    log_path = xasprintf("%s/sandboxd.log", tmp);
    int port = tu_free_port();
    base = xasprintf("http://127.0.0.1:%d", port);
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    _cleanup_free_ char *bin = tu_bin("sandboxd"), *agent = tu_bin("sandbox-agent");
    const char *image = getenv("SBX_DEFAULT_IMAGE");
    ck_assert_msg(image, "SBX_DEFAULT_IMAGE is not set");
    char *argv[] = {bin,           "--listen",    listen, "--data-dir", data, "--default-image",
                    (char *)image, "--agent-bin", agent,  NULL};
    _cleanup_free_ char *cg = xasprintf("SANDBOX_AGENT_CGROUP_PARENT=sbx-imds-%d", (int)getpid());
    char *env[] = {cg, NULL};
    pid = tu_spawn(argv, env, log_path);
    ck_assert_msg(tu_wait_port(port, 20000), "sandboxd did not listen");
    dev = read_token("dev-token");
    admin = read_token("admin-token");
    ck_assert(dev && admin);
}

static char *agent_table(void);

/* Whatever a test left (it may have failed half-way): its groups and so
 * their sandboxes and links go before sandboxd stops.  */
static void delete_groups(void)
{
    static const char *const groups[] = {"g1", "g2", "g3"};
    char p[3][256];
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++) {
        snprintf(p[i], sizeof p[i],
                 "/subscriptions/" SUB "/resourceGroups/imds/providers/Microsoft.App/"
                 "sandboxGroups/%s?" API,
                 groups[i]);
        call("DELETE", p[i], admin, NULL, NULL);
    }
    int64_t until = sbx_monotonic_ms() + 60000;
    for (size_t i = 0; i < ARRAY_SIZE(groups); i++)
        while (call("GET", p[i], admin, NULL, NULL) != 404 && sbx_monotonic_ms() < until)
            usleep(100000);
}

static void teardown(void)
{
    _cleanup_free_ char *table = agent_table();
    if (pid > 0 && admin)
        delete_groups();
    if (pid > 0)
        tu_stop(pid, 30000);
    /* the agent removed its table when it stopped (no sandbox is linked) */
    _cleanup_free_ char *cmd = xasprintf("nft list table inet %s >/dev/null 2>&1", table);
    int left = system(cmd);
    if (left == 0) {
        _cleanup_free_ char *del = xasprintf("nft delete table inet %s", table);
        (void)!system(del);
    }
    tu_rmdir(tmp);
    free(tmp);
    free(data);
    free(base);
    free(dev);
    free(admin);
    free(log_path);
    curl_global_cleanup();
    ck_assert_msg(left != 0, "nft table %s was left behind", table);
}

static char *sandbox_path(const char *name)
{
    return xasprintf("/subscriptions/" SUB "/resourceGroups/imds/providers/Microsoft.App/"
                     "sandboxGroups/g1/sandboxes/%s",
                     name);
}

static void dump_log(void)
{
    _cleanup_free_ char *log = NULL;
    size_t len = 0;
    if (sbx_read_file(log_path, &log, &len, NULL) == 0)
        fprintf(stderr, "---- sandboxd log (tail) ----\n%s\n----\n",
                log + (len > 8000 ? len - 8000 : 0));
}

/* The local agent registers itself once it answers its health checks.  */
static void wait_local_host(void)
{
    int64_t until = sbx_monotonic_ms() + 60000;
    while (sbx_monotonic_ms() < until) {
        json_t *j = NULL;
        long st = call("GET", "/admin/hosts/local", admin, NULL, &j);
        const char *state = json_string_value(json_object_get(j, "state"));
        bool ready = st == 200 && state && !strcmp(state, "Ready");
        json_decref(j);
        if (ready)
            return;
        usleep(100000);
    }
    dump_log();
    ck_assert_msg(false, "the local agent was not Ready in 60 s");
}

static void wait_running(const char *path)
{
    _cleanup_free_ char *p = xasprintf("%s?" API, path);
    int64_t until = sbx_monotonic_ms() + 120000;
    const char *state = NULL;
    while (sbx_monotonic_ms() < until) {
        json_t *j = NULL;
        call("GET", p, dev, NULL, &j);
        state = json_string_value(json_object_get(json_object_get(j, "properties"), "state"));
        bool done = state && (!strcmp(state, "Running") || !strcmp(state, "Failed"));
        bool running = state && !strcmp(state, "Running");
        json_decref(j);
        if (done) {
            if (!running)
                dump_log();
            ck_assert_msg(running, "%s failed", path);
            return;
        }
        usleep(100000);
    }
    dump_log();
    ck_assert_msg(false, "%s not running in 120 s", path);
}

static char *runtime_id(const char *path)
{
    _cleanup_free_ char *db_path = xasprintf("%s/sandboxd.db", data);
    st_db_t *db = st_open(db_path, NULL, NULL);
    ck_assert_ptr_nonnull(db);
    st_resource_t r = {0};
    ck_assert_int_eq(st_resource_get(db, path, &r, NULL), 0);
    ck_assert_ptr_nonnull(r.runtime_id);
    char *rid = xstrdup(r.runtime_id);
    st_resource_done(&r);
    st_close(db);
    return rid;
}

static char *host_token(const char *host)
{
    _cleanup_free_ char *body = xasprintf("{\"host\":\"%s\"}", host);
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", "/admin/tokens", admin, body, &j), 200);
    char *t = xstrdup(json_string_value(json_object_get(j, "token")));
    json_decref(j);
    return t;
}

static int answer(const agent_imds_t *m, const char *rid, const char *method, const char *path,
                  const char *query, const char *metadata, const char *ih, json_t **out)
{
    agent_imds_request_t rq = {.method = method,
                               .path = path,
                               .query = query,
                               .metadata = metadata,
                               .identity_header = ih};
    char *body = NULL;
    int st = agent_imds_answer(m, rid, "s3cret-header", &rq, &body);
    *out = body ? json_loads(body, 0, NULL) : NULL;
    ck_assert_msg(json_is_object(*out), "not a JSON object: %s", body);
    free(body);
    return st;
}

static bool openssl_verifies(const char *tok)
{
    json_t *jwks = NULL;
    ck_assert_int_eq(call("GET", "/.well-known/jwks.json", dev, NULL, &jwks), 200);
    _cleanup_free_ char *jf = xasprintf("%s/jwks.json", tmp), *tf = xasprintf("%s/tok", tmp);
    ck_assert_int_eq(json_dump_file(jwks, jf, 0), 0);
    json_decref(jwks);
    ck_assert_int_eq(sbx_write_file_atomic(tf, tok, strlen(tok), 0600, NULL), 0);
    _cleanup_free_ char *script = tu_src("tests/fixtures/jwt-openssl-verify.sh");
    _cleanup_free_ char *cmd = xasprintf("'%s' '%s' '%s' >/dev/null 2>&1", script, tf, jf);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0;
}

START_TEST(sandbox_gets_its_own_identity)
{
    wait_local_host();
    const char *g = "/subscriptions/" SUB "/resourceGroups/imds/providers/Microsoft.App/"
                    "sandboxGroups/g1?" API;
    json_t *gj = NULL;
    ck_assert_int_eq(call("PUT", g, dev,
                          "{\"location\":\"local\",\"identity\":{\"type\":\"SystemAssigned\"}}",
                          &gj),
                     201);
    _cleanup_free_ char *pid_sys =
        xstrdup(json_string_value(json_object_get(json_object_get(gj, "identity"), "principalId")));
    json_decref(gj);
    _cleanup_free_ char *s1 = sandbox_path("s1"), *s2 = sandbox_path("s2");
    _cleanup_free_ char *s1q = xasprintf("%s?" API, s1), *s2q = xasprintf("%s?" API, s2);
    ck_assert_int_eq(call("PUT", s1q, dev, "{\"properties\":{\"identity\":\"system\"}}", NULL),
                     201);
    ck_assert_int_eq(call("PUT", s2q, dev, "{\"properties\":{}}", NULL), 201);
    wait_running(s1);
    wait_running(s2);
    _cleanup_free_ char *rid1 = runtime_id(s1), *rid2 = runtime_id(s2);
    _cleanup_free_ char *local = host_token("local"), *other = host_token("other");
    agent_imds_t m = {.sandboxd_url = base, .host_token = local};

    json_t *j = NULL;
    const char *q = "api-version=2018-02-01&resource=api%3A%2F%2FAzureADTokenExchange";
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, q, "true", NULL, &j), 200);
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    ck_assert_ptr_nonnull(tok);
    ck_assert_msg(openssl_verifies(tok), "openssl does not verify the token");
    jwt_t parsed;
    ck_assert_int_eq(jwt_parse(tok, &parsed, NULL), 0);
    _cleanup_free_ char *want_sub = xasprintf("%s/identities/system", s1);
    ck_assert_str_eq(json_string_value(json_object_get(parsed.claims, "sub")), want_sub);
    ck_assert_str_eq(json_string_value(json_object_get(parsed.claims, "aud")),
                     "api://AzureADTokenExchange");
    ck_assert_str_eq(json_string_value(json_object_get(parsed.claims, "oid")), pid_sys);
    jwt_done(&parsed);
    ck_assert_str_eq(json_string_value(json_object_get(j, "resource")),
                     "api://AzureADTokenExchange");
    ck_assert(json_is_string(json_object_get(j, "expires_on")));
    json_decref(j);

    /* App Service's form, with the sandbox's IDENTITY_HEADER.  */
    const char *q2 = "api-version=2019-08-01&resource=https://vault.azure.net";
    ck_assert_int_eq(answer(&m, rid1, "GET", "/msi/token", q2, NULL, "s3cret-header", &j), 200);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", "/msi/token", q2, NULL, "guess", &j), 401);
    json_decref(j);

    /* Another host cannot have it; nor a sandbox without an identity, nor
     * an identity the sandbox was not given.  */
    agent_imds_t m_other = {.sandboxd_url = base, .host_token = other};
    ck_assert_int_ne(answer(&m_other, rid1, "GET", IMDS, q, "true", NULL, &j), 200);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid2, "GET", IMDS, q, "true", NULL, &j), 400);
    json_decref(j);
    _cleanup_free_ char *q3 = xasprintf("%s&client_id=00000000-0000-0000-0000-000000000001", q);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, q3, "true", NULL, &j), 400);
    json_decref(j);

    /* Bad requests.  */
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, q, NULL, NULL, &j), 400);
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "invalid_request");
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, "api-version=2018-02-01", "true", NULL, &j),
                     400);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, "resource=x", "true", NULL, &j), 400);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, "api-version=1&resource=%zz", "true", NULL, &j),
                     400);
    json_decref(j);
    ck_assert_int_eq(
        answer(&m, rid1, "GET", IMDS, "api-version=1&resource=a%00b", "true", NULL, &j), 400);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, "api-version=1&resource=a+b", "true", NULL, &j),
                     400);
    json_decref(j);
    ck_assert_int_eq(
        answer(&m, rid1, "GET", IMDS, "api-version=1&resource=a&resource=b", "true", NULL, &j),
        400);
    json_decref(j);
    _cleanup_free_ char *huge = xmalloc(20001);
    memset(huge, 'a', 20000);
    huge[20000] = '\0';
    memcpy(huge, "resource=", 9);
    ck_assert_int_eq(answer(&m, rid1, "GET", IMDS, huge, "true", NULL, &j), 400);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "POST", IMDS, q, "true", NULL, &j), 405);
    json_decref(j);
    ck_assert_int_eq(answer(&m, rid1, "GET", "/metadata/instance", q, "true", NULL, &j), 404);
    json_decref(j);
    /* sandboxd away: a clear 503.  */
    agent_imds_t m_down = {.sandboxd_url = "http://127.0.0.1:1", .host_token = local};
    ck_assert_int_eq(answer(&m_down, rid1, "GET", IMDS, q, "true", NULL, &j), 503);
    json_decref(j);

    /* The group goes, its sandboxes first.  */
    ck_assert_int_eq(call("DELETE", g, dev, NULL, NULL), 202);
    int64_t until = sbx_monotonic_ms() + 60000;
    while (call("GET", g, dev, NULL, NULL) != 404 && sbx_monotonic_ms() < until)
        usleep(100000);
    ck_assert_int_eq(call("GET", g, dev, NULL, NULL), 404);
}
END_TEST

/* ---- from inside a sandbox: 169.254.169.254 through its own link ---- */

static long put_wait(const char *path, const char *body)
{
    _cleanup_free_ char *q = xasprintf("%s?" API, path);
    long st = call("PUT", q, dev, body, NULL);
    if (st == 200 || st == 201)
        wait_running(path);
    return st;
}

/* Run python3 code in the sandbox; its stdout.  */
static char *in_sandbox(const char *path, const char *code)
{
    _cleanup_free_ char *p = xasprintf("%s/exec?" API, path);
    json_t *cmd = json_pack("{s:[s,s,s]}", "command", "python3", "-c", code);
    _cleanup_free_ char *body = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    json_t *j = NULL;
    ck_assert_int_eq(call("POST", p, dev, body, &j), 200);
    const char *out = json_string_value(json_object_get(j, "stdout"));
    char *r = xstrdup(out ? out : "");
    if (json_integer_value(json_object_get(j, "exitCode")) != 0)
        fprintf(stderr, "in-sandbox python: %s\n%s\n", out,
                json_string_value(json_object_get(j, "stderr")));
    json_decref(j);
    return r;
}

/* python3-minimal has sockets but neither json nor urllib: HTTP by hand,
 * each answer as "status<TAB>body" on one line.  */
static const char *PY_GET =
    "import os, socket\n"
    "def get(url, hdrs):\n"
    "    hp, _, path = url[7:].partition('/')\n"
    "    host, _, port = hp.partition(':')\n"
    "    try:\n"
    "        s = socket.create_connection((host, int(port or 80)), 5)\n"
    "        s.settimeout(5)\n"
    "        h = ''.join(k + ': ' + v + '\\r\\n' for k, v in hdrs.items())\n"
    "        s.sendall(('GET /' + path + ' HTTP/1.1\\r\\nHost: ' + hp + '\\r\\n' + h +\n"
    "                   'Connection: close\\r\\n\\r\\n').encode())\n"
    "        data = b''\n"
    "        while True:\n"
    "            b = s.recv(65536)\n"
    "            if not b: break\n"
    "            data += b\n"
    "        s.close()\n"
    "        head, _, body = data.decode().partition('\\r\\n\\r\\n')\n"
    "        return head.split(' ')[1] + '\\t' + body.replace('\\n', ' ')\n"
    "    except Exception as e:\n"
    "        return '0\\t' + repr(e)\n"
    "def connect(host, port):\n"
    "    try:\n"
    "        socket.create_connection((host, port), 1).close(); return 'connected'\n"
    "    except Exception as e:\n"
    "        return 'fail ' + repr(e)\n"
    "I = 'http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01'\n";

/* The agent's nft table (named from a hash of its data dir, as the agent
 * does) and the identity endpoint's port in it.  */
static char *agent_table(void)
{
    _cleanup_free_ char *dir = xasprintf("%s/agent", data);
    char real[PATH_MAX];
    const char *d = realpath(dir, real) ? real : dir;
    uint32_t h = 2166136261u;
    for (const char *p = d; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return xasprintf("sandboxd_%06x", h & 0xffffff);
}

static int imds_port(void)
{
    _cleanup_free_ char *table = agent_table();
    _cleanup_free_ char *cmd =
        xasprintf("nft list table inet %s | sed -n 's/.*169.254.169.254 tcp dport 80 .*redirect "
                  "to :\\([0-9]*\\).*/\\1/p'",
                  table);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    int port = 0;
    if (fscanf(f, "%d", &port) != 1)
        port = 0;
    pclose(f);
    return port;
}

/* A TCP connection from the host side within 1 s: false when refused,
 * dropped or reset.  */
static bool host_connects(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    ck_assert_int_eq(inet_pton(AF_INET, addr, &a.sin_addr), 1);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (!ok && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int e = 0;
        socklen_t el = sizeof e;
        ok = poll(&p, 1, 1000) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0;
    }
    close(fd);
    return ok;
}

/* The line "key<TAB>status<TAB>body" of the sandbox's output: its body
 * as JSON, after checking the status.  */
static json_t *result(const char *all, const char *key, long want_status)
{
    _cleanup_free_ char *pfx = xasprintf("%s\t", key);
    const char *l = all;
    while (l && strncmp(l, pfx, strlen(pfx)) != 0)
        l = (l = strchr(l, '\n')) ? l + 1 : NULL;
    ck_assert_msg(l, "%s: no answer in %s", key, all);
    l += strlen(pfx);
    _cleanup_free_ char *line = xstrndup(l, strcspn(l, "\n"));
    long st = strtol(line, NULL, 10);
    const char *body = strchr(line, '\t');
    ck_assert_msg(st == want_status, "%s: %s", key, line);
    json_t *j = body ? json_loads(body + 1, 0, NULL) : NULL;
    ck_assert_msg(json_is_object(j), "%s: not JSON: %s", key, line);
    return j;
}

START_TEST(token_from_inside_the_sandbox)
{
    wait_local_host();
    const char *rg = "/subscriptions/" SUB "/resourceGroups/imds/providers/Microsoft.App/"
                     "sandboxGroups/";
    _cleanup_free_ char *g2 = xasprintf("%sg2?" API, rg), *g3 = xasprintf("%sg3?" API, rg);
    const char *sys = "{\"location\":\"local\",\"identity\":{\"type\":\"SystemAssigned\"}}";
    json_t *gj = NULL;
    ck_assert_int_eq(call("PUT", g2, dev, sys, NULL), 201);
    ck_assert_int_eq(call("PUT", g3, dev, sys, &gj), 201);
    _cleanup_free_ char *other_oid =
        xstrdup(json_string_value(json_object_get(json_object_get(gj, "identity"), "principalId")));
    json_decref(gj);
    _cleanup_free_ char *a1 = xasprintf("%sg2/sandboxes/a1", rg);
    _cleanup_free_ char *a2 = xasprintf("%sg2/sandboxes/a2", rg);
    _cleanup_free_ char *pol = xasprintf("%sg2/egressPolicies/doc?" API, rg);
    ck_assert_int_eq(call("PUT", pol, dev,
                          "{\"properties\":{\"rules\":[{\"name\":\"doc\",\"action\":\"Allow\","
                          "\"cidrs\":[\"192.0.2.0/24\"]}]}}",
                          NULL),
                     201);
    /* a1: an identity and no egress policy (it gets the link anyway);
     * a2: a link (its policy allows something) and no identity */
    ck_assert_int_eq(put_wait(a1, "{\"properties\":{\"identity\":\"system\"}}"), 201);
    ck_assert_int_eq(put_wait(a2, "{\"properties\":{\"egressPolicy\":\"doc\"}}"), 201);

    int port = imds_port();
    ck_assert_msg(port > 0, "no identity endpoint in the agent's table");
    _cleanup_free_ char *conf = in_sandbox(a1, "print(open('/etc/resolv.conf').read().split()[1])");
    conf[strcspn(conf, "\n")] = '\0';
    _cleanup_free_ char *code =
        xasprintf("%s"
                  "E, H = os.environ.get('IDENTITY_ENDPOINT'), os.environ.get('IDENTITY_HEADER')\n"
                  "R = '&resource=api%%3A%%2F%%2FAzureADTokenExchange'\n"
                  "A = E + '?api-version=2019-08-01&resource='\n"
                  "for k, u, h in [('imds', I + R, {'Metadata': 'true'}),\n"
                  "    ('app', A + 'https://vault.azure.net', {'X-IDENTITY-HEADER': H}),\n"
                  "    ('badheader', A + 'x', {'X-IDENTITY-HEADER': 'no'}),\n"
                  "    ('nometa', I + R, {}),\n"
                  "    ('odd', I + '&resource=a%%20b', {'Metadata': 'true'}),\n"
                  "    ('badescape', I + '&resource=%%zz', {'Metadata': 'true'}),\n"
                  "    ('long', I + '&resource=' + 'a' * 5000, {'Metadata': 'true'}),\n"
                  "    ('huge', I + '&resource=' + 'a' * 20000, {'Metadata': 'true'}),\n"
                  "    ('other', I + R + '&object_id=%s', {'Metadata': 'true'}),\n"
                  "    ('instance', 'http://169.254.169.254/metadata/instance?api-version=1',\n"
                  "     {'Metadata': 'true'})]:\n"
                  "    print(k + '\\t' + get(u, h))\n"
                  "print('direct\\t' + connect('%s', %d))\n",
                  PY_GET, other_oid, conf, port);
    _cleanup_free_ char *all = in_sandbox(a1, code);

    /* the token: verified by openssl against the JWKS, bound to a1 */
    json_t *j = result(all, "imds", 200);
    const char *tok = json_string_value(json_object_get(j, "access_token"));
    ck_assert_ptr_nonnull(tok);
    ck_assert_msg(openssl_verifies(tok), "openssl does not verify the token");
    jwt_t parsed;
    ck_assert_int_eq(jwt_parse(tok, &parsed, NULL), 0);
    _cleanup_free_ char *want_sub = xasprintf("%s/identities/system", a1);
    ck_assert_str_eq(json_string_value(json_object_get(parsed.claims, "sub")), want_sub);
    ck_assert_str_eq(json_string_value(json_object_get(parsed.claims, "aud")),
                     "api://AzureADTokenExchange");
    jwt_done(&parsed);
    json_decref(j);
    /* the IDENTITY_ENDPOINT / IDENTITY_HEADER form Azure SDKs read */
    j = result(all, "app", 200);
    ck_assert_str_eq(json_string_value(json_object_get(j, "resource")), "https://vault.azure.net");
    json_decref(j);
    /* bad input: clear errors */
    const char *bad[][2] = {{"badheader", "401"}, {"nometa", "400"},  {"odd", "400"},
                            {"badescape", "400"}, {"long", "400"},    {"huge", "431"},
                            {"other", "400"},     {"instance", "404"}};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        j = result(all, bad[i][0], atol(bad[i][1]));
        ck_assert_msg(json_string_length(json_object_get(j, "error_description")) > 0, "%s",
                      bad[i][0]);
        json_decref(j);
    }
    j = result(all, "nometa", 400);
    ck_assert_str_eq(json_string_value(json_object_get(j, "error")), "invalid_request");
    json_decref(j);
    /* the listener's own port is not open to the sandbox, only the redirect */
    const char *direct = strstr(all, "direct\t");
    ck_assert_msg(direct && strncmp(direct + 7, "fail", 4) == 0, "direct: %s", direct);

    /* a sandbox without an identity, though linked, does not reach it */
    _cleanup_free_ char *code2 = xasprintf("%sprint(connect('169.254.169.254', 80))\n", PY_GET);
    _cleanup_free_ char *out2 = in_sandbox(a2, code2);
    ck_assert_msg(strncmp(out2, "fail", 4) == 0, "a2: %s", out2);
    /* nor does the host side: the port is dropped from anywhere else */
    ck_assert(!host_connects("127.0.0.1", port));
    ck_assert(!host_connects(conf, port));

    /* the groups go, their sandboxes and links first */
    ck_assert_int_eq(call("DELETE", g2, dev, NULL, NULL), 202);
    ck_assert_int_eq(call("DELETE", g3, dev, NULL, NULL), 202);
    int64_t until = sbx_monotonic_ms() + 60000;
    while ((call("GET", g2, dev, NULL, NULL) != 404 || call("GET", g3, dev, NULL, NULL) != 404) &&
           sbx_monotonic_ms() < until)
        usleep(100000);
    ck_assert_int_eq(call("GET", g2, dev, NULL, NULL), 404);
}
END_TEST

static Suite *imds_suite(void)
{
    Suite *s = suite_create("agent_imds");
    TCase *tc = tcase_create("imds");
    /* one sandboxd for the tests, stopped (after its groups are deleted)
     * even when a test fails */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, sandbox_gets_its_own_identity);
    tcase_add_test(tc, token_from_inside_the_sandbox);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(imds_suite());
}
