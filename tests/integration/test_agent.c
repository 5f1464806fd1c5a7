/* test_agent.c -- the real sandbox-agent over loopback HTTPS with client
 * certificates made by scripts/dev-certs.sh, running real sandboxes from a
 * busybox image the test builds as an OCI layout.  */
#include "tests/testutil.h"

#include <curl/curl.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* Shared by every test: made once in the parent (unchecked fixture).  */
static char *g_dir;    /* scratch root */
static char *g_certs;  /* the trusted CA, agent and client certificates */
static char *g_other;  /* a second CA and a client certificate it signed */
static char *g_layout; /* busybox OCI layout, the agent's default image */

/* Per test (checked fixture, in the forked child).  */
typedef struct agent {
    pid_t pid;
    int port;
    char *data_dir, *log, *cgroup;
} agent_t;
static agent_t g_agent;

static char *path_in(const char *dir, const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static int run_sh(const char *script, const char *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", script, "sh", arg, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A one-layer OCI layout: static busybox with applet links, plus the
 * directories a sandbox expects.  */
static const char *const layout_script =
    "set -e\n"
    "out=$1; w=$out.work; rm -rf \"$w\"; mkdir -p \"$w/root\" \"$out/blobs/sha256\"\n"
    "cd \"$w/root\"; mkdir -p bin dev proc sys tmp etc root usr/bin\n"
    "cp /bin/busybox bin/busybox\n"
    "for a in $(./bin/busybox --list); do [ -e bin/$a ] || ln -s busybox bin/$a; done\n"
    "echo 'root:x:0:0:root:/root:/bin/sh' > etc/passwd\n"
    "tar --sort=name --numeric-owner --owner=0 --group=0 -cf \"$w/layer.tar\" .\n"
    "cd \"$w\"\n"
    "diff=$(sha256sum layer.tar | cut -d' ' -f1); gzip -n layer.tar\n"
    "ld=$(sha256sum layer.tar.gz | cut -d' ' -f1); ls=$(stat -c %s layer.tar.gz)\n"
    "mv layer.tar.gz \"$out/blobs/sha256/$ld\"\n"
    "printf '{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/sbin:"
    "/usr/bin:/sbin:/bin\"],\"Cmd\":[\"/bin/sh\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":"
    "[\"sha256:%s\"]}}' \"$diff\" > config.json\n"
    "cd_=$(sha256sum config.json | cut -d' ' -f1); cs=$(stat -c %s config.json)\n"
    "mv config.json \"$out/blobs/sha256/$cd_\"\n"
    "printf '{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
    "\"sha256:%s\",\"size\":%s},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1."
    "tar+gzip\",\"digest\":\"sha256:%s\",\"size\":%s}]}' \"$cd_\" \"$cs\" \"$ld\" \"$ls\" > "
    "m.json\n"
    "md=$(sha256sum m.json | cut -d' ' -f1); ms=$(stat -c %s m.json)\n"
    "mv m.json \"$out/blobs/sha256/$md\"\n"
    "printf '{\"imageLayoutVersion\":\"1.0.0\"}' > \"$out/oci-layout\"\n"
    "printf '{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":"
    "\"sha256:%s\",\"size\":%s,\"annotations\":{\"org.opencontainers.image.ref.name\":"
    "\"sandboxd/default:latest\"}}]}' \"$md\" \"$ms\" > \"$out/index.json\"\n"
    "rm -rf \"$w\"\n";

static void global_setup(void)
{
    g_dir = tu_tmpdir("sbx-agent-test");
    ck_assert_ptr_nonnull(g_dir);
    g_certs = path_in(g_dir, "certs");
    g_other = path_in(g_dir, "other-certs");
    g_layout = path_in(g_dir, "layout");
    _cleanup_free_ char *script = tu_src("scripts/dev-certs.sh");
    char *cmd = xasprintf("\"%s\" \"$1\"", script);
    ck_assert_int_eq(run_sh(cmd, g_certs), 0);
    ck_assert_int_eq(run_sh(cmd, g_other), 0);
    free(cmd);
    ck_assert_int_eq(run_sh(layout_script, g_layout), 0);
}

/* True when something is mounted under dir: a sandbox still running, whose
 * tree must not be removed under it.  */
static bool has_mounts_under(const char *dir)
{
    _cleanup_free_ char *info = NULL;
    size_t len;
    if (sbx_read_file("/proc/self/mountinfo", &info, &len, NULL) < 0)
        return true;
    return strstr(info, dir) != NULL;
}

static void global_teardown(void)
{
    if (g_dir && !has_mounts_under(g_dir))
        tu_rmdir(g_dir);
    free(g_certs);
    free(g_other);
    free(g_layout);
    free(g_dir);
}

/* ---- the agent process ---- */

static void agent_dump_log(const agent_t *a)
{
    _cleanup_free_ char *log = NULL;
    size_t len;
    if (a->log && sbx_read_file(a->log, &log, &len, NULL) == 0)
        fprintf(stderr, "---- agent log %s ----\n%s\n----\n", a->log, log);
}

/* tu_spawn, plus: the agent gets SIGTERM when the test process dies, so a
 * failed assertion (which ends the test without teardown) leaves no agent
 * behind.  */
static pid_t spawn_agent(const char *const *argv, char *const *extra_env, const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
            _exit(127);
        int fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setpgid(0, 0);
        for (size_t i = 0; extra_env && extra_env[i]; i++)
            putenv(extra_env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Start sandbox-agent on a fresh port with extra flags; waits until it
 * answers TCP connects or dies.  Returns false when it did not come up.  */
static bool agent_start_args(agent_t *a, const char *const *extra)
{
    _cleanup_free_ char *bin = tu_bin("sandbox-agent");
    _cleanup_free_ char *ca = path_in(g_certs, "ca.pem");
    _cleanup_free_ char *cert = path_in(g_certs, "agent.pem");
    _cleanup_free_ char *key = path_in(g_certs, "agent.key");
    a->port = tu_free_port();
    _cleanup_free_ char *listen = xasprintf("127.0.0.1:%d", a->port);
    const char *argv[32] = {
        bin,        "--listen",        listen,   "--data-dir",      a->data_dir, "--ca",
        ca,         "--cert",          cert,     "--key",           key,         "--environment",
        "test-env", "--default-image", g_layout, "--cgroup-parent", a->cgroup};
    size_t n = 17;
    for (size_t i = 0; extra && extra[i] && n < ARRAY_SIZE(argv) - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    a->pid = spawn_agent(argv, NULL, a->log);
    int64_t deadline = sbx_monotonic_ms() + 30000;
    while (sbx_monotonic_ms() < deadline) {
        int status;
        if (waitpid(a->pid, &status, WNOHANG) == a->pid) {
            a->pid = 0;
            agent_dump_log(a);
            return false;
        }
        if (tu_wait_port(a->port, 50))
            return true;
    }
    agent_dump_log(a);
    return false;
}

static bool agent_start(agent_t *a)
{
    return agent_start_args(a, NULL);
}

/* SIGTERM and the exit status (as from waitpid).  */
static int agent_stop(agent_t *a)
{
    int status = tu_stop(a->pid, 20000);
    a->pid = 0;
    return status;
}

/* ---- HTTP ---- */

typedef struct call_opts {
    const char *body;
    size_t body_len;
    const char *content_type;
    const char *cert_dir;  /* client certificate from this dir; NULL: g_certs */
    const char *cert_name; /* "client" (default) or "agent": which pair to present */
    bool no_cert;
    bool plain_http;
    long timeout_ms;
} call_opts_t;

static int call_ex(const char *method, const char *path, const call_opts_t *o, tu_response_t *r)
{
    const char *dir = o->cert_dir ? o->cert_dir : g_certs;
    _cleanup_free_ char *ca = path_in(g_certs, "ca.pem");
    _cleanup_free_ char *cert_file = xasprintf("%s.pem", o->cert_name ? o->cert_name : "client");
    _cleanup_free_ char *key_file = xasprintf("%s.key", o->cert_name ? o->cert_name : "client");
    _cleanup_free_ char *cert = path_in(dir, cert_file);
    _cleanup_free_ char *key = path_in(dir, key_file);
    _cleanup_free_ char *url =
        xasprintf("%s://127.0.0.1:%d%s", o->plain_http ? "http" : "https", g_agent.port, path);
    tu_request_opts_t t = {
        .body = o->body,
        .body_len = o->body_len,
        .content_type = o->content_type,
        .ca_file = o->plain_http ? NULL : ca,
        .cert_file = o->no_cert || o->plain_http ? NULL : cert,
        .key_file = o->no_cert || o->plain_http ? NULL : key,
        .timeout_ms = o->timeout_ms ? o->timeout_ms : 60000,
    };
    return tu_http(method, url, &t, r);
}

/* A call with the trusted client certificate; returns the status and the
 * parsed JSON body (NULL when none) in *out.  */
static long call(const char *method, const char *path, const char *body, json_t **out)
{
    tu_response_t r;
    call_opts_t o = {.body = body};
    ck_assert_msg(call_ex(method, path, &o, &r) == 0, "%s %s: no response", method, path);
    long status = r.status;
    if (out)
        *out = tu_json(&r);
    tu_response_free(&r);
    return status;
}

static const char *jstr(json_t *j, const char *key)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : "";
}

static const char *err_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

/* Assert status and error code of a call.  */
static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *code)
{
    json_t *j = NULL;
    long got = call(method, path, body, &j);
    ck_assert_msg(got == status, "%s %s: status %ld, want %ld", method, path, got, status);
    const char *c = err_code(j);
    ck_assert_msg(c && strcmp(c, code) == 0, "%s %s: code %s, want %s", method, path,
                  c ? c : "(none)", code);
    json_decref(j);
}

static json_t *create_sandbox(const char *id, const char *body, long want)
{
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", id);
    json_t *j = NULL;
    long st = call("PUT", path, body, &j);
    if (st != want) {
        agent_dump_log(&g_agent);
        char *s = j ? json_dumps(j, 0) : NULL;
        ck_abort_msg("PUT %s: status %ld, want %ld: %s", path, st, want, s ? s : "");
    }
    return j;
}

/* Exec `sh -c script` and return the parsed result (status must be 200).  */
static json_t *exec_sh(const char *id, const char *script, const char *extra_json)
{
    json_t *req = json_pack("{s:[s,s,s]}", "command", "sh", "-c", script);
    if (extra_json) {
        json_t *x = json_loads(extra_json, 0, NULL);
        ck_assert_ptr_nonnull(x);
        json_object_update(req, x);
        json_decref(x);
    }
    _cleanup_free_ char *body = json_dumps(req, 0);
    json_decref(req);
    _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s/exec", id);
    json_t *j = NULL;
    long st = call("POST", path, body, &j);
    ck_assert_msg(st == 200, "exec %s: status %ld", script, st);
    return j;
}

static void delete_all_sandboxes(void)
{
    json_t *list = NULL;
    if (call("GET", "/v1/sandboxes", NULL, &list) == 200) {
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(list, "value"), i, s)
        {
            _cleanup_free_ char *path = xasprintf("/v1/sandboxes/%s", jstr(s, "id"));
            call("DELETE", path, NULL, NULL);
        }
    }
    json_decref(list);
}

static void setup(void)
{
    memset(&g_agent, 0, sizeof(g_agent));
    char name[64];
    snprintf(name, sizeof(name), "data-%d", (int)getpid());
    g_agent.data_dir = path_in(g_dir, name);
    snprintf(name, sizeof(name), "agent-%d.log", (int)getpid());
    g_agent.log = path_in(g_dir, name);
    g_agent.cgroup = xasprintf("sbxagent-%d", (int)getpid());
    ck_assert_msg(agent_start(&g_agent), "sandbox-agent did not start");
}

static void teardown(void)
{
    int status = 0;
    if (g_agent.pid > 0) {
        delete_all_sandboxes();
        status = agent_stop(&g_agent);
    }
    /* The cgroup parent the runtime made for this agent.  */
    static const char *const ctrls[] = {"cpu",     "cpuacct", "memory", "pids",
                                        "freezer", "unified", ""};
    for (size_t i = 0; i < ARRAY_SIZE(ctrls); i++) {
        _cleanup_free_ char *p =
            xasprintf("/sys/fs/cgroup/%s%s%s", ctrls[i], *ctrls[i] ? "/" : "", g_agent.cgroup);
        (void)rmdir(p);
    }
    free(g_agent.data_dir);
    free(g_agent.cgroup);
    /* A clean shutdown exits 0; sanitizer reports (leaks) make it 1.  */
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        agent_dump_log(&g_agent);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "agent exit status %d", status);
    free(g_agent.log);
}

/* ---- tests ---- */

START_TEST(test_agent_health)
{
    json_t *j = NULL;
    ck_assert_int_eq(call("GET", "/v1/health", NULL, &j), 200);
    ck_assert_str_eq(jstr(j, "status"), "ok");
    ck_assert_str_eq(jstr(j, "environment"), "test-env");
    ck_assert_str_ne(jstr(j, "version"), "");
    bool process = false;
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(j, "drivers"), i, d) process |=
        strcmp(json_string_value(d), "process") == 0;
    ck_assert(process);
    /* Each driver that does not work here is named with why.  */
    json_t *why = json_object_get(j, "unavailableDrivers");
    ck_assert(json_is_object(why));
    const char *name;
    json_t *v;
    json_object_foreach(why, name, v)
        ck_assert_msg(json_string_length(v) > 0, "%s: no reason", name);
    /* microvm is either usable (a KVM that boots a guest) or says why.  */
    bool microvm = json_object_get(why, "microvm") != NULL;
    json_array_foreach(json_object_get(j, "drivers"), i, d) microvm |=
        strcmp(json_string_value(d), "microvm") == 0;
    ck_assert(microvm);
    json_t *cap = json_object_get(j, "capacity"), *use = json_object_get(j, "usage");
    ck_assert(json_number_value(json_object_get(cap, "cpu")) > 0);
    ck_assert(json_integer_value(json_object_get(cap, "memoryMiB")) > 0);
    ck_assert(json_integer_value(json_object_get(cap, "sandboxes")) > 0);
    ck_assert(json_is_integer(json_object_get(use, "sandboxes")));
    /* This agent has no egress pool: its health says so, and a sandbox
     * given a policy runs closed and says why.  */
    json_t *eg = json_object_get(j, "egress");
    ck_assert(json_is_false(json_object_get(eg, "enforced")));
    ck_assert(json_string_length(json_object_get(eg, "unavailable")) > 0);
    json_decref(j);
    j = create_sandbox("eg-off",
                       "{\"egress\":{\"rules\":[{\"name\":\"r\",\"action\":\"Allow\","
                       "\"cidrs\":[\"192.0.2.0/24\"]}]}}",
                       201);
    ck_assert_msg(strstr(jstr(j, "message"), "egress is unavailable on this host"), "%s",
                  jstr(j, "message"));
    json_decref(j);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/eg-off", NULL, NULL), 204);
}
END_TEST

/* The TLS layer requests a client certificate but lets the handshake
 * finish without a good one; the agent then answers 403 before any route
 * runs.  */
START_TEST(test_agent_client_cert_required)
{
    tu_response_t r;
    call_opts_t none = {.no_cert = true};
    ck_assert_int_eq(call_ex("GET", "/v1/health", &none, &r), 0);
    ck_assert_int_eq(r.status, 403);
    json_t *j = tu_json(&r);
    ck_assert_str_eq(err_code(j), "ClientCertificateRequired");
    json_decref(j);
    tu_response_free(&r);

    call_opts_t other = {.cert_dir = g_other};
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes", &other, &r), 0);
    ck_assert_int_eq(r.status, 403);
    tu_response_free(&r);

    /* A server certificate from the trusted CA (another host's agent) is
     * not a client certificate.  */
    call_opts_t server_cert = {.cert_name = "agent"};
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes", &server_cert, &r), 0);
    ck_assert_int_eq(r.status, 403);
    tu_response_free(&r);

    /* Not even a body is read from an untrusted caller.  */
    call_opts_t put = {.cert_dir = g_other, .body = "{}"};
    ck_assert_int_eq(call_ex("PUT", "/v1/sandboxes/intruder", &put, &r), 0);
    ck_assert_int_eq(r.status, 403);
    tu_response_free(&r);
    ck_assert_int_eq(call("GET", "/v1/sandboxes/intruder", NULL, NULL), 404);

    /* Plain HTTP to the HTTPS port gets nothing useful.  */
    call_opts_t plain = {.plain_http = true, .timeout_ms = 5000};
    if (call_ex("GET", "/v1/health", &plain, &r) == 0)
        ck_assert_int_ne(r.status, 200);
    tu_response_free(&r);
}
END_TEST

START_TEST(test_agent_lifecycle)
{
    json_t *j = create_sandbox("life-1",
                               "{\"cpu\":0.5,\"memoryMiB\":256,\"diskMiB\":256,"
                               "\"env\":{\"GREETING\":\"hello\"}}",
                               201);
    ck_assert_str_eq(jstr(j, "id"), "life-1");
    ck_assert_str_eq(jstr(j, "state"), "Running");
    ck_assert_str_eq(jstr(j, "driver"), "process");
    ck_assert_str_eq(jstr(j, "image"), "sandboxd/default:latest");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "memoryMiB")), 256);
    ck_assert(strlen(jstr(j, "createdAt")) >= 20);
    ck_assert(strlen(jstr(j, "lastActivityAt")) >= 20);
    json_decref(j);

    ck_assert_int_eq(call("GET", "/v1/sandboxes/life-1", NULL, &j), 200);
    ck_assert_str_eq(jstr(j, "state"), "Running");
    json_decref(j);

    j = exec_sh("life-1", "echo hi; echo $GREETING", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "exitCode")), 0);
    ck_assert_str_eq(jstr(j, "stdout"), "hi\nhello\n");
    ck_assert_str_eq(jstr(j, "stderr"), "");
    ck_assert(json_is_false(json_object_get(j, "timedOut")));
    ck_assert(json_is_false(json_object_get(j, "stdoutTruncated")));
    ck_assert(json_is_integer(json_object_get(j, "durationMs")));
    json_decref(j);

    /* Files: binary bytes in, the same bytes out, seen inside too.  */
    static const char bytes[] = "line one\n\0\xff\xfe binary\n";
    tu_response_t r;
    call_opts_t put = {
        .body = bytes, .body_len = sizeof(bytes) - 1, .content_type = "application/octet-stream"};
    ck_assert_int_eq(call_ex("PUT", "/v1/sandboxes/life-1/files?path=/tmp/a.bin", &put, &r), 0);
    ck_assert_int_eq(r.status, 201);
    tu_response_free(&r);
    call_opts_t get = {0};
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes/life-1/files?path=/tmp/a.bin", &get, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, sizeof(bytes) - 1);
    ck_assert(memcmp(r.body, bytes, r.body_len) == 0);
    _cleanup_free_ char *ctype = tu_header(&r, "Content-Type");
    ck_assert_str_eq(ctype, "application/octet-stream");
    tu_response_free(&r);

    j = exec_sh("life-1", "wc -c < /tmp/a.bin", NULL);
    ck_assert_int_eq(atoi(jstr(j, "stdout")), (int)sizeof(bytes) - 1);
    json_decref(j);

    ck_assert_int_eq(call("GET", "/v1/sandboxes/life-1/files?path=/tmp&list=true", NULL, &j), 200);
    bool found = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(j, "value"), i, e)
    {
        if (strcmp(jstr(e, "name"), "a.bin") == 0) {
            found = true;
            ck_assert_str_eq(jstr(e, "type"), "file");
            ck_assert_int_eq(json_integer_value(json_object_get(e, "size")), sizeof(bytes) - 1);
            ck_assert(json_is_integer(json_object_get(e, "mode")));
            ck_assert(strlen(jstr(e, "modifiedAt")) >= 20);
        }
    }
    ck_assert(found);
    json_decref(j);

    /* Suspend and resume, each twice: idempotent.  */
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(call("POST", "/v1/sandboxes/life-1/suspend", NULL, &j), 200);
        ck_assert_str_eq(jstr(j, "state"), "Suspended");
        json_decref(j);
    }
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(call("POST", "/v1/sandboxes/life-1/resume", NULL, &j), 200);
        ck_assert_str_eq(jstr(j, "state"), "Running");
        json_decref(j);
    }
    j = exec_sh("life-1", "cat /tmp/a.bin | head -n 1", NULL);
    ck_assert_str_eq(jstr(j, "stdout"), "line one\n");
    json_decref(j);

    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(call("POST", "/v1/sandboxes/life-1/stop", NULL, &j), 200);
        ck_assert_str_eq(jstr(j, "state"), "Stopped");
        json_decref(j);
    }
    /* A stopped sandbox runs nothing until started again.  */
    ck_assert_int_eq(call("POST", "/v1/sandboxes/life-1/exec", "{\"command\":[\"true\"]}", &j),
                     409);
    ck_assert_ptr_nonnull(err_code(j));
    json_decref(j);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(call("POST", "/v1/sandboxes/life-1/start", NULL, &j), 200);
        ck_assert_str_eq(jstr(j, "state"), "Running");
        json_decref(j);
    }
    j = exec_sh("life-1", "echo back", NULL);
    ck_assert_str_eq(jstr(j, "stdout"), "back\n");
    json_decref(j);

    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/life-1/files?path=/tmp/a.bin", NULL, NULL), 204);
    expect_error("GET", "/v1/sandboxes/life-1/files?path=/tmp/a.bin", NULL, 404, "FileNotFound");
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/life-1/files?path=/tmp/a.bin", NULL, NULL), 204);

    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/life-1", NULL, NULL), 204);
    expect_error("GET", "/v1/sandboxes/life-1", NULL, 404, "SandboxNotFound");
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/life-1", NULL, NULL), 204);
    expect_error("POST", "/v1/sandboxes/life-1/exec", "{\"command\":[\"true\"]}", 404,
                 "SandboxNotFound");
}
END_TEST

START_TEST(test_agent_create_idempotent)
{
    const char *spec = "{\"cpu\":0.25,\"memoryMiB\":128,\"env\":{\"A\":\"1\"}}";
    json_decref(create_sandbox("idem-1", spec, 201));
    json_t *j = create_sandbox("idem-1", spec, 200);
    ck_assert_str_eq(jstr(j, "state"), "Running");
    json_decref(j);
    /* Same spec spelled differently (key order, defaults written out).  */
    json_decref(create_sandbox("idem-1",
                               "{\"env\":{\"A\":\"1\"},\"memoryMiB\":128,\"cpu\":0.25,"
                               "\"driver\":\"process\",\"image\":\"sandboxd/default:latest\"}",
                               200));
    expect_error("PUT", "/v1/sandboxes/idem-1", "{\"cpu\":0.25,\"memoryMiB\":256}", 409,
                 "SandboxConflict");
    expect_error("PUT", "/v1/sandboxes/idem-1", "{\"cpu\":0.25,\"memoryMiB\":128}", 409,
                 "SandboxConflict");

    ck_assert_int_eq(call("GET", "/v1/sandboxes", NULL, &j), 200);
    ck_assert_int_eq(json_array_size(json_object_get(j, "value")), 1);
    ck_assert_str_eq(jstr(json_array_get(json_object_get(j, "value"), 0), "id"), "idem-1");
    json_decref(j);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/idem-1", NULL, NULL), 204);
    /* Once deleted, the id is free for any spec.  */
    json_decref(create_sandbox("idem-1", "{\"memoryMiB\":64}", 201));
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/idem-1", NULL, NULL), 204);
}
END_TEST

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

/* PUT with "Expect: 100-continue", as HTTP clients do for big bodies: the
 * agent refuses from Content-Length before the body is sent, so the reply
 * arrives reliably instead of racing a reset connection.  Returns the
 * status, or -1.  */
static long put_expect_continue(const char *path, const char *body, size_t len)
{
    _cleanup_free_ char *ca = path_in(g_certs, "ca.pem");
    _cleanup_free_ char *cert = path_in(g_certs, "client.pem");
    _cleanup_free_ char *key = path_in(g_certs, "client.key");
    _cleanup_free_ char *url = xasprintf("https://127.0.0.1:%d%s", g_agent.port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect: 100-continue");
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

typedef struct racer {
    pthread_t thread;
    long status;
} racer_t;

static void *race_put(void *ud)
{
    racer_t *r = ud;
    r->status = call("PUT", "/v1/sandboxes/race-1", "{\"memoryMiB\":64}", NULL);
    return NULL;
}

/* Retries that overlap (the scheduler timed out and tried again) create
 * one sandbox: one 201, the rest 200.  */
START_TEST(test_agent_create_concurrent)
{
    racer_t r[4];
    for (size_t i = 0; i < ARRAY_SIZE(r); i++)
        ck_assert_int_eq(pthread_create(&r[i].thread, NULL, race_put, &r[i]), 0);
    int created = 0, existed = 0;
    for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
        pthread_join(r[i].thread, NULL);
        created += r[i].status == 201;
        existed += r[i].status == 200;
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(existed, (int)ARRAY_SIZE(r) - 1);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/race-1", NULL, NULL), 204);
}
END_TEST

START_TEST(test_agent_bad_requests)
{
    /* Ids.  */
    expect_error("GET", "/v1/sandboxes/UPPER", NULL, 400, "InvalidSandboxId");
    expect_error("PUT", "/v1/sandboxes/a_b", "{}", 400, "InvalidSandboxId");
    expect_error("PUT", "/v1/sandboxes/-lead", "{}", 400, "InvalidSandboxId");
    expect_error("DELETE", "/v1/sandboxes/a%20b", NULL, 400, "InvalidSandboxId");
    expect_error("POST", "/v1/sandboxes/x..y/exec", "{}", 400, "InvalidSandboxId");
    char long_id[200];
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    _cleanup_free_ char *long_path = xasprintf("/v1/sandboxes/%s", long_id);
    expect_error("GET", long_path, NULL, 400, "InvalidSandboxId");

    /* Bodies: not JSON, not an object, wrong types, bad values.  */
    static const char *const bad_specs[] = {
        "{",
        "[1]",
        "\"x\"",
        "{\"cpu\":\"1\"}",
        "{\"cpu\":0}",
        "{\"cpu\":-1}",
        "{\"cpu\":1e9}",
        "{\"memoryMiB\":1.5}",
        "{\"memoryMiB\":1}",
        "{\"diskMiB\":\"1\"}",
        "{\"image\":5}",
        "{\"image\":\"\"}",
        "{\"image\":\"a b\"}",
        "{\"driver\":\"docker\"}",
        "{\"env\":[]}",
        "{\"env\":{\"A\":1}}",
        "{\"env\":{\"1A\":\"x\"}}",
        "{\"env\":{\"A=B\":\"x\"}}",
        "{\"env\":{\"A\":\"x\\u0000y\"}}",
        "{\"cpu\":1,\"cpu\":2}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_specs); i++)
        expect_error("PUT", "/v1/sandboxes/bad-1", bad_specs[i], 400, "InvalidRequestContent");
    ck_assert_int_eq(call("GET", "/v1/sandboxes/bad-1", NULL, NULL), 404);
    expect_error("PUT", "/v1/sandboxes/bad-1", "{\"image\":\"no-such-image:1\"}", 400,
                 "ImageNotFound");

    /* Exec requests are checked before the sandbox is looked up.  */
    static const char *const bad_execs[] = {
        "",
        "{}",
        "{\"command\":[]}",
        "{\"command\":\"sh\"}",
        "{\"command\":[1]}",
        "{\"command\":[\"\"]}",
        "{\"command\":[\"a\\u0000b\"]}",
        "{\"command\":[\"true\"],\"timeoutSeconds\":0}",
        "{\"command\":[\"true\"],\"timeoutSeconds\":3601}",
        "{\"command\":[\"true\"],\"timeoutSeconds\":\"5\"}",
        "{\"command\":[\"true\"],\"timeoutSeconds\":1.5}",
        "{\"command\":[\"true\"],\"cwd\":\"tmp\"}",
        "{\"command\":[\"true\"],\"cwd\":7}",
        "{\"command\":[\"true\"],\"stdin\":7}",
        "{\"command\":[\"true\"],\"env\":{\"\":\"x\"}}",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_execs); i++)
        expect_error("POST", "/v1/sandboxes/nope/exec", bad_execs[i], 400, "InvalidRequestContent");

    /* Unknown sandbox, route, method.  */
    expect_error("GET", "/v1/sandboxes/nope", NULL, 404, "SandboxNotFound");
    expect_error("POST", "/v1/sandboxes/nope/suspend", NULL, 404, "SandboxNotFound");
    expect_error("POST", "/v1/sandboxes/nope/exec", "{\"command\":[\"true\"]}", 404,
                 "SandboxNotFound");
    expect_error("GET", "/v1/sandboxes/nope/files?path=/etc/passwd", NULL, 404, "SandboxNotFound");
    expect_error("GET", "/v1/nothing", NULL, 404, "NotFound");
    expect_error("GET", "/v1/sandboxes/nope/reboot", NULL, 404, "NotFound");
    expect_error("GET", "/v2/health", NULL, 404, "NotFound");
    expect_error("GET", "/v1//sandboxes", NULL, 404, "NotFound");
    expect_error("GET", "/v1/sandboxes/nope/", NULL, 404, "NotFound");

    tu_response_t r;
    call_opts_t o = {.body = "{}"};
    ck_assert_int_eq(call_ex("POST", "/v1/health", &o, &r), 0);
    ck_assert_int_eq(r.status, 405);
    _cleanup_free_ char *allow = tu_header(&r, "Allow");
    ck_assert_str_eq(allow, "GET");
    tu_response_free(&r);
    ck_assert_int_eq(call_ex("PATCH", "/v1/sandboxes/nope", &o, &r), 0);
    ck_assert_int_eq(r.status, 405);
    _cleanup_free_ char *allow2 = tu_header(&r, "Allow");
    ck_assert_str_eq(allow2, "GET, PUT, DELETE");
    tu_response_free(&r);
    expect_error("GET", "/v1/sandboxes/nope/exec", NULL, 405, "MethodNotAllowed");

    /* Oversize bodies: 2 MiB of JSON where 1 MiB is the cap.  */
    size_t big = 2 * 1024 * 1024;
    char *huge = xmalloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    ck_assert_int_eq(put_expect_continue("/v1/sandboxes/big-1", huge, big), 413);
    free(huge);
    ck_assert_int_eq(call("GET", "/v1/sandboxes/big-1", NULL, NULL), 404);
}
END_TEST

START_TEST(test_agent_bad_file_requests)
{
    json_decref(create_sandbox("files-1", NULL, 201));
    expect_error("GET", "/v1/sandboxes/files-1/files", NULL, 400, "InvalidPath");
    expect_error("GET", "/v1/sandboxes/files-1/files?path=", NULL, 400, "InvalidPath");
    expect_error("GET", "/v1/sandboxes/files-1/files?path=etc/passwd", NULL, 400, "InvalidPath");
    expect_error("GET", "/v1/sandboxes/files-1/files?path=/etc/passwd%00.txt", NULL, 400,
                 "InvalidUrl");
    expect_error("PUT", "/v1/sandboxes/files-1/files?path=relative", "x", 400, "InvalidPath");
    expect_error("GET", "/v1/sandboxes/files-1/files?path=/etc&list=yes", NULL, 400,
                 "InvalidRequestContent");
    expect_error("GET", "/v1/sandboxes/files-1/files?path=/no/such/file", NULL, 404,
                 "FileNotFound");

    /* Escapes stay inside the sandbox: the host's files are not reachable.  */
    tu_response_t r;
    call_opts_t o = {0};
    ck_assert_int_eq(
        call_ex("GET", "/v1/sandboxes/files-1/files?path=/../../../../etc/hostname", &o, &r), 0);
    ck_assert_int_ne(r.status, 200);
    tu_response_free(&r);
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes/files-1/files?path=/etc/passwd", &o, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert(strstr(r.body, "root:x:0:0:root:/root:/bin/sh") != NULL);
    tu_response_free(&r);

    /* A file of 1 MiB round trips.  */
    size_t n = 1024 * 1024 + 7;
    char *data = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 31 + 7);
    call_opts_t put = {.body = data, .body_len = n, .content_type = "application/octet-stream"};
    ck_assert_int_eq(call_ex("PUT", "/v1/sandboxes/files-1/files?path=/tmp/big", &put, &r), 0);
    ck_assert_int_eq(r.status, 201);
    tu_response_free(&r);
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes/files-1/files?path=/tmp/big", &o, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, n);
    ck_assert(memcmp(r.body, data, n) == 0);
    tu_response_free(&r);
    free(data);

    /* Uploads are capped at 64 MiB.  */
    size_t over = 64 * 1024 * 1024 + 1;
    char *too_big = xcalloc(over, 1);
    ck_assert_int_eq(
        put_expect_continue("/v1/sandboxes/files-1/files?path=/tmp/huge", too_big, over), 413);
    free(too_big);
    expect_error("GET", "/v1/sandboxes/files-1/files?path=/tmp/huge", NULL, 404, "FileNotFound");
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/files-1", NULL, NULL), 204);
}
END_TEST

START_TEST(test_agent_exec_results)
{
    json_decref(create_sandbox("exec-1", "{\"memoryMiB\":128}", 201));
    json_t *j = exec_sh("exec-1", "echo out; echo err >&2; exit 3", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "exitCode")), 3);
    ck_assert_str_eq(jstr(j, "stdout"), "out\n");
    ck_assert_str_eq(jstr(j, "stderr"), "err\n");
    ck_assert_ptr_null(json_object_get(j, "signal"));
    json_decref(j);

    /* Invalid UTF-8 becomes U+FFFD; valid multi-byte text passes.  */
    j = exec_sh("exec-1", "printf 'a\\377b\\303\\251\\355\\240\\200c'", NULL);
    ck_assert_str_eq(jstr(j, "stdout"), "a\xEF\xBF\xBD"
                                        "b\xC3\xA9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                                        "c");
    json_decref(j);

    j = exec_sh("exec-1", "cat; pwd; echo $FOO",
                "{\"stdin\":\"from stdin\\n\",\"cwd\":\"/tmp\","
                "\"env\":{\"FOO\":\"bar\"}}");
    ck_assert_str_eq(jstr(j, "stdout"), "from stdin\n/tmp\nbar\n");
    json_decref(j);

    j = exec_sh("exec-1", "kill -9 $$", NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "signal")), 9);
    json_decref(j);

    int64_t t0 = sbx_monotonic_ms();
    j = exec_sh("exec-1", "sleep 30", "{\"timeoutSeconds\":1}");
    ck_assert(json_is_true(json_object_get(j, "timedOut")));
    ck_assert(sbx_monotonic_ms() - t0 < 15000);
    json_decref(j);

    /* Output past the cap is cut at 1 MiB and says so.  */
    j = exec_sh("exec-1", "yes 0123456789abcdef | head -c 3000000", NULL);
    ck_assert(json_is_true(json_object_get(j, "stdoutTruncated")));
    ck_assert(json_is_false(json_object_get(j, "stderrTruncated")));
    ck_assert_uint_eq(strlen(jstr(j, "stdout")), 1024 * 1024);
    json_decref(j);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/exec-1", NULL, NULL), 204);
}
END_TEST

START_TEST(test_agent_restart_keeps_sandboxes)
{
    json_decref(create_sandbox("keep-1", "{\"memoryMiB\":128}", 201));
    json_t *j = exec_sh("keep-1", "echo before > /tmp/mark", NULL);
    json_decref(j);

    int status = agent_stop(&g_agent);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "agent exit status %d", status);
    ck_assert_msg(agent_start(&g_agent), "sandbox-agent did not restart");

    ck_assert_int_eq(call("GET", "/v1/sandboxes/keep-1", NULL, &j), 200);
    ck_assert_str_eq(jstr(j, "state"), "Running");
    json_decref(j);
    j = exec_sh("keep-1", "cat /tmp/mark", NULL);
    ck_assert_str_eq(jstr(j, "stdout"), "before\n");
    json_decref(j);
    /* The spec survived too: the same PUT is still a no-op, another a 409.  */
    json_decref(create_sandbox("keep-1", "{\"memoryMiB\":128}", 200));
    json_decref(create_sandbox("keep-1", "{\"memoryMiB\":256}", 409));
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/keep-1", NULL, NULL), 204);
}
END_TEST

/* Plain HTTP only with --insecure-http, and then only on loopback.  */
START_TEST(test_agent_insecure_http)
{
    agent_stop(&g_agent);
    _cleanup_free_ char *bin = tu_bin("sandbox-agent");
    _cleanup_free_ char *log = xasprintf("%s.cli", g_agent.log);

    const char *wide[] = {
        bin, "--listen", "0.0.0.0:0", "--data-dir", g_agent.data_dir, "--insecure-http", NULL};
    pid_t pid = tu_spawn((char *const *)wide, NULL, log);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2);

    const char *no_tls[] = {bin, "--listen", "127.0.0.1:0", "--data-dir", g_agent.data_dir, NULL};
    pid = tu_spawn((char *const *)no_tls, NULL, log);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2);

    const char *help[] = {bin, "--help", NULL};
    pid = tu_spawn((char *const *)help, NULL, log);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* From the environment this time.  */
    int port = tu_free_port();
    char *env[] = {xasprintf("SANDBOX_AGENT_LISTEN=127.0.0.1:%d", port),
                   xasprintf("SANDBOX_AGENT_DATA_DIR=%s", g_agent.data_dir),
                   xasprintf("SANDBOX_AGENT_DEFAULT_IMAGE=%s", g_layout),
                   xstrdup("SANDBOX_AGENT_INSECURE_HTTP=1"),
                   xasprintf("SANDBOX_AGENT_CGROUP_PARENT=%s", g_agent.cgroup),
                   NULL};
    const char *bare[] = {bin, NULL};
    g_agent.pid = spawn_agent(bare, env, g_agent.log);
    g_agent.port = port;
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    ck_assert(tu_wait_port(port, 20000));
    tu_response_t r;
    call_opts_t plain = {.plain_http = true};
    ck_assert_int_eq(call_ex("GET", "/v1/health", &plain, &r), 0);
    ck_assert_int_eq(r.status, 200);
    tu_response_free(&r);
    status = agent_stop(&g_agent);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/* A streamed upload straight to the agent: `size` bytes of 'a', chunked
 * or with a Content-Length; returns the status, the reply in body.  */
typedef struct gen {
    uint64_t size, done;
} gen_t;

static size_t gen_read(char *buf, size_t size, size_t n, void *ud)
{
    gen_t *g = ud;
    size_t k = size * n;
    if (k > g->size - g->done)
        k = (size_t)(g->size - g->done);
    memset(buf, 'a', k);
    g->done += k;
    return k;
}

static size_t keep_reply(char *p, size_t size, size_t n, void *ud)
{
    char *out = ud;
    size_t have = strlen(out), k = size * n;
    if (have + k < 1024) {
        memcpy(out + have, p, k);
        out[have + k] = '\0';
    }
    return size * n;
}

static long put_stream(const char *path, uint64_t size, bool chunked, char body[1024])
{
    _cleanup_free_ char *ca = path_in(g_certs, "ca.pem");
    _cleanup_free_ char *cert = path_in(g_certs, "client.pem");
    _cleanup_free_ char *key = path_in(g_certs, "client.key");
    _cleanup_free_ char *url = xasprintf("https://127.0.0.1:%d%s", g_agent.port, path);
    gen_t g = {size, 0};
    body[0] = '\0';
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (chunked)
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, gen_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &g);
    if (!chunked)
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, key);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep_reply);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* Uploads are written while they arrive, chunked or not, and cost the
 * sandbox's memory: more than a sandbox's memoryMiB is 413
 * SandboxStorageFull and leaves no file; a chunked upload past the cap is
 * 413 too; what fits reads back whole.  */
START_TEST(test_agent_files_streamed)
{
    json_decref(create_sandbox("stream-1", "{\"memoryMiB\":32}", 201));
    char body[1024];
    long st = put_stream("/v1/sandboxes/stream-1/files?path=/tmp/big", 40u << 20, false, body);
    ck_assert_msg(st == 413 && strstr(body, "SandboxStorageFull"), "%ld %s", st, body);
    st = put_stream("/v1/sandboxes/stream-1/files?path=/tmp/big", 40u << 20, true, body);
    ck_assert_msg(st == 413 && strstr(body, "SandboxStorageFull"), "%ld %s", st, body);
    json_decref(create_sandbox("stream-2", NULL, 201));
    st = put_stream("/v1/sandboxes/stream-2/files?path=/tmp/big", (64u << 20) + 1, true, body);
    ck_assert_msg(st == 413 && strstr(body, "RequestEntityTooLarge"), "%ld %s", st, body);
    json_t *j = NULL;
    ck_assert_int_eq(call("GET", "/v1/sandboxes/stream-2/files?path=/tmp&list=true", NULL, &j),
                     200);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "value")), 0);
    json_decref(j);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/stream-2", NULL, NULL), 204);
    ck_assert_int_eq(call("GET", "/v1/sandboxes/stream-1/files?path=/tmp&list=true", NULL, &j),
                     200);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "value")), 0);
    json_decref(j);

    uint64_t size = (3u << 20) + 5;
    st = put_stream("/v1/sandboxes/stream-1/files?path=/tmp/ok", size, true, body);
    ck_assert_msg(st == 201, "%ld %s", st, body);
    j = json_loads(body, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "size")), (json_int_t)size);
    json_decref(j);
    tu_response_t r;
    call_opts_t o = {0};
    ck_assert_int_eq(call_ex("GET", "/v1/sandboxes/stream-1/files?path=/tmp/ok", &o, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, size);
    bool all_a = true;
    for (size_t i = 0; i < r.body_len; i++)
        all_a = all_a && r.body[i] == 'a';
    ck_assert(all_a);
    tu_response_free(&r);
    ck_assert_int_eq(call("DELETE", "/v1/sandboxes/stream-1", NULL, NULL), 204);
}
END_TEST

static Suite *agent_suite(void)
{
    Suite *s = suite_create("agent");
    TCase *tc = tcase_create("api");
    tcase_add_unchecked_fixture(tc, global_setup, global_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_agent_health);
    tcase_add_test(tc, test_agent_client_cert_required);
    tcase_add_test(tc, test_agent_lifecycle);
    tcase_add_test(tc, test_agent_create_idempotent);
    tcase_add_test(tc, test_agent_create_concurrent);
    tcase_add_test(tc, test_agent_bad_requests);
    tcase_add_test(tc, test_agent_bad_file_requests);
    tcase_add_test(tc, test_agent_exec_results);
    tcase_add_test(tc, test_agent_restart_keeps_sandboxes);
    tcase_add_test(tc, test_agent_insecure_http);
    tcase_add_test(tc, test_agent_files_streamed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread uses libcurl */
    SRunner *sr = srunner_create(agent_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
