/* envd.c -- E2B's in-sandbox file API over the ARM files and exec routes:
 * GET/POST /files (raw or multipart uploads) and the filesystem.Filesystem
 * Connect service (Stat, MakeDir, Move, ListDir, Remove).  */
#include <string.h>

#include "e2b/internal.h"

#define FS_EXEC_TIMEOUT_S 60
#define LIST_MAX_ENTRIES 10000
#define LIST_MAX_DEPTH 16

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static void files_reply_arm_error(http_response_t *res, const arm_reply_t *r)
{
    char msg[400];
    arm_reply_message(r, msg, sizeof(msg));
    if (arm_reply_sandbox_gone(r))
        e2b_reply_error(res, 502, "The sandbox was not found: %s", msg);
    else
        e2b_reply_arm_error(res, r);
}

static void files_get(const envd_ctx_t *c, const char *path, http_response_t *res)
{
    _cleanup_free_ char *enc = arm_escape(path);
    _cleanup_free_ char *query = xasprintf("path=%s", enc);
    arm_req_t rq = {.method = "GET",
                    .sandbox = c->sandbox,
                    .suffix = "/files",
                    .query = query,
                    .bearer = c->e->arm_token,
                    .timeout_ms = 300000};
    arm_reply_t r;
    arm_call(c->e, &rq, &r);
    if (r.status == 200)
        http_reply_bytes(res, 200, "application/octet-stream", TAKE_PTR(r.body), r.len);
    else
        files_reply_arm_error(res, &r);
    arm_reply_done(&r);
}

static int put_file(const envd_ctx_t *c, const char *path, const char *data, size_t len,
                    json_t *out, http_response_t *res)
{
    _cleanup_free_ char *enc = arm_escape(path);
    _cleanup_free_ char *query = xasprintf("path=%s", enc);
    arm_req_t rq = {.method = "PUT",
                    .sandbox = c->sandbox,
                    .suffix = "/files",
                    .query = query,
                    .bearer = c->e->arm_token,
                    .body = data,
                    .len = len,
                    .content_type = "application/octet-stream",
                    .timeout_ms = 300000};
    arm_reply_t r;
    arm_call(c->e, &rq, &r);
    int ret = r.status >= 200 && r.status < 300 ? 0 : -1;
    if (ret < 0)
        files_reply_arm_error(res, &r);
    else
        json_array_append_new(
            out, json_pack("{s:s,s:s,s:s}", "name", base_name(path), "type", "file", "path", path));
    arm_reply_done(&r);
    return ret;
}

static const char *memfind(const char *h, size_t hn, const char *n, size_t nn)
{
    if (nn == 0 || hn < nn)
        return NULL;
    for (const char *p = h; p + nn <= h + hn; p++) {
        p = memchr(p, n[0], (size_t)(h + hn - p));
        if (!p || p + nn > h + hn)
            return NULL;
        if (memcmp(p, n, nn) == 0)
            return p;
    }
    return NULL;
}

/* A part's file name from its Content-Disposition (filename="...").  */
static char *part_filename(const char *head, size_t n)
{
    const char *f = memfind(head, n, "filename=\"", 10);
    if (!f)
        return NULL;
    f += 10;
    const char *end = memchr(f, '"', (size_t)(head + n - f));
    return end ? xstrndup(f, (size_t)(end - f)) : NULL;
}

/* multipart/form-data: each part a file; its path is the query's path, or
 * its file name when the query names none.  */
static void files_post_multipart(const envd_ctx_t *c, const char *qpath, const char *ct,
                                 const http_request_t *req, http_response_t *res)
{
    const char *b = strstr(ct, "boundary=");
    if (!b) {
        e2b_reply_error(res, 400, "multipart body without a boundary");
        return;
    }
    b += 9;
    size_t blen = strcspn(b, ";");
    if (*b == '"')
        b++, blen = strcspn(b, "\"");
    if (blen == 0 || blen > 200) {
        e2b_reply_error(res, 400, "bad multipart boundary");
        return;
    }
    _cleanup_free_ char *delim = xasprintf("--%.*s", (int)blen, b);
    size_t dn = strlen(delim);
    _cleanup_json_ json_t *out = json_array();
    const char *body = req->body, *end = req->body + req->body_len;
    const char *p = memfind(body, req->body_len, delim, dn);
    while (p) {
        p += dn;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break;
        const char *head_end = memfind(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!head_end)
            break;
        const char *data = head_end + 4;
        _cleanup_free_ char *crlf_delim = xasprintf("\r\n%s", delim);
        const char *next = memfind(data, (size_t)(end - data), crlf_delim, dn + 2);
        if (!next)
            break;
        _cleanup_free_ char *fname = part_filename(p, (size_t)(head_end - p));
        _cleanup_free_ char *path = envd_path(c, qpath ? qpath : fname);
        if (!path) {
            e2b_reply_error(res, 400, "a file part names no path");
            return;
        }
        if (put_file(c, path, data, (size_t)(next - data), out, res) < 0)
            return;
        p = next + 2;
    }
    if (json_array_size(out) == 0) {
        e2b_reply_error(res, 400, "the multipart body holds no file");
        return;
    }
    http_reply_json(res, 200, json_incref(out));
}

void e2b_files_handle(const envd_ctx_t *c, const http_request_t *req, http_response_t *res)
{
    const char *qpath = http_query(req, "path");
    if (strcmp(req->method, "GET") == 0) {
        _cleanup_free_ char *path = envd_path(c, qpath);
        if (!path)
            e2b_reply_error(res, 400, "the path query parameter is required");
        else
            files_get(c, path, res);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        e2b_reply_error(res, 405, "files take GET and POST");
        return;
    }
    const char *ct = http_header(req, "Content-Type");
    if (ct && sbx_str_has_prefix(ct, "multipart/form-data")) {
        files_post_multipart(c, qpath, ct, req, res);
        return;
    }
    if (http_header(req, "Content-Encoding")) {
        e2b_reply_error(res, 415, "compressed uploads are not supported");
        return;
    }
    _cleanup_free_ char *path = envd_path(c, qpath);
    _cleanup_json_ json_t *out = json_array();
    if (!path)
        e2b_reply_error(res, 400, "the path query parameter is required");
    else if (put_file(c, path, req->body, req->body_len, out, res) == 0)
        http_reply_json(res, 200, json_incref(out));
}

/* ---- filesystem.Filesystem ---- */

static const char *file_type(const char *t)
{
    return !t                          ? "FILE_TYPE_UNSPECIFIED"
           : strcmp(t, "dir") == 0     ? "FILE_TYPE_DIRECTORY"
           : strcmp(t, "file") == 0    ? "FILE_TYPE_FILE"
           : strcmp(t, "symlink") == 0 ? "FILE_TYPE_SYMLINK"
                                       : "FILE_TYPE_UNSPECIFIED";
}

static void perm_string(const char *type, unsigned mode, char out[11])
{
    static const char rwx[] = "rwxrwxrwx";
    out[0] = strcmp(type, "FILE_TYPE_DIRECTORY") == 0 ? 'd'
             : strcmp(type, "FILE_TYPE_SYMLINK") == 0 ? 'L'
                                                      : '-';
    for (int i = 0; i < 9; i++)
        out[1 + i] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
    out[10] = '\0';
}

/* EntryInfo for an item of an ARM directory listing inside dir.  */
static json_t *entry_json(const char *dir, const json_t *item)
{
    const char *name = json_string_value(json_object_get(item, "name"));
    const char *type = file_type(json_string_value(json_object_get(item, "type")));
    unsigned mode = (unsigned)json_integer_value(json_object_get(item, "mode"));
    char perms[11];
    perm_string(type, mode, perms);
    bool root = strcmp(dir, "/") == 0;
    _cleanup_free_ char *path = xasprintf("%s/%s", root ? "" : dir, name ? name : "");
    json_t *mt = json_object_get(item, "modifiedAt");
    return json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:O}", "name", name ? name : "", "type",
                     type, "path", path, "size", json_integer_value(json_object_get(item, "size")),
                     "mode", (json_int_t)mode, "permissions", perms, "owner", "root", "group",
                     "root", "modifiedTime", mt ? mt : json_null());
}

/* The ARM listing of a directory, or NULL with r holding the failure.  */
static json_t *list_arm(const envd_ctx_t *c, const char *dir, arm_reply_t *r)
{
    _cleanup_free_ char *enc = arm_escape(dir);
    _cleanup_free_ char *query = xasprintf("path=%s&list=true", enc);
    arm_req_t rq = {.method = "GET",
                    .sandbox = c->sandbox,
                    .suffix = "/files",
                    .query = query,
                    .bearer = c->e->arm_token};
    arm_call(c->e, &rq, r);
    if (r->status != 200)
        return NULL;
    json_t *j = arm_reply_json(r);
    json_t *v = json_incref(json_object_get(j, "value"));
    json_decref(j);
    arm_reply_done(r);
    if (!json_is_array(v)) {
        json_decref(v);
        r->status = 500;
        return NULL;
    }
    return v;
}

static void fs_arm_error(http_response_t *res, arm_reply_t *r)
{
    char msg[400];
    arm_reply_message(r, msg, sizeof(msg));
    connect_reply_error(res, connect_code_for(r), "%s", msg);
    arm_reply_done(r);
}

/* Stat through the parent's listing (ARM has no stat of its own); NULL
 * with the reply made when the entry is not there.  */
static json_t *stat_entry(const envd_ctx_t *c, const char *path, http_response_t *res)
{
    _cleanup_free_ char *copy = xstrdup(path);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    if (strcmp(copy, "/") == 0)
        return json_pack("{s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:s}", "name", "/", "type",
                         "FILE_TYPE_DIRECTORY", "path", "/", "size", 0, "mode", 0755, "permissions",
                         "drwxr-xr-x", "owner", "root", "group", "root");
    char *slash = strrchr(copy, '/');
    const char *name = slash + 1;
    _cleanup_free_ char *dir =
        slash == copy ? xstrdup("/") : xstrndup(copy, (size_t)(slash - copy));
    arm_reply_t r;
    _cleanup_json_ json_t *items = list_arm(c, dir, &r);
    if (!items) {
        if (!arm_reply_sandbox_gone(&r) && (r.status == 404 || r.status == 400)) {
            arm_reply_done(&r);
            connect_reply_error(res, "not_found", "path '%s' does not exist", path);
            return NULL;
        }
        fs_arm_error(res, &r);
        return NULL;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        const char *nm = json_string_value(json_object_get(item, "name"));
        if (nm && strcmp(nm, name) == 0)
            return entry_json(dir, item);
    }
    connect_reply_error(res, "not_found", "path '%s' does not exist", path);
    return NULL;
}

static int list_into(const envd_ctx_t *c, const char *dir, unsigned depth, json_t *out,
                     http_response_t *res)
{
    arm_reply_t r;
    _cleanup_json_ json_t *items = list_arm(c, dir, &r);
    if (!items) {
        if (arm_reply_sandbox_gone(&r)) {
            fs_arm_error(res, &r);
        } else if (r.status == 404) {
            arm_reply_done(&r);
            connect_reply_error(res, "not_found", "directory '%s' does not exist", dir);
        } else if (r.status == 400) {
            arm_reply_done(&r);
            connect_reply_error(res, "invalid_argument", "path '%s' is not a directory", dir);
        } else {
            fs_arm_error(res, &r);
        }
        return -1;
    }
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        if (json_array_size(out) >= LIST_MAX_ENTRIES)
            break;
        json_t *e = entry_json(dir, item);
        const char *type = json_string_value(json_object_get(e, "type"));
        _cleanup_free_ char *sub = xstrdup(json_string_value(json_object_get(e, "path")));
        json_array_append_new(out, e);
        if (depth > 1 && strcmp(type, "FILE_TYPE_DIRECTORY") == 0 &&
            list_into(c, sub, depth - 1, out, res) < 0)
            return -1;
    }
    return 0;
}

/* Runs a small shell script in the sandbox with its arguments; returns its
 * exit code, or -1 with the reply made.  */
static int run_script(const envd_ctx_t *c, const char *script, const char *a1, const char *a2,
                      http_response_t *res, char *stderr_out, size_t size)
{
    json_t *argv = json_pack("[s,s,s,s]", "/bin/sh", "-c", script, "sh");
    json_array_append_new(argv, json_string(a1));
    if (a2)
        json_array_append_new(argv, json_string(a2));
    json_t *out = NULL;
    arm_reply_t r;
    int rc = envd_exec(c, argv, FS_EXEC_TIMEOUT_S, &out, &r);
    json_decref(argv);
    if (rc < 0) {
        if (r.status == 200)
            connect_reply_error(res, "internal", "unreadable exec reply");
        else
            fs_arm_error(res, &r);
        arm_reply_done(&r);
        return -1;
    }
    int code = (int)json_integer_value(json_object_get(out, "exitCode"));
    const char *se = json_string_value(json_object_get(out, "stderr"));
    snprintf(stderr_out, size, "%s", se ? se : "");
    json_decref(out);
    return code;
}

static void reply_entry(http_response_t *res, json_t *entry)
{
    if (entry)
        http_reply_json(res, 200, json_pack("{s:o}", "entry", entry));
}

void e2b_fs_handle(const envd_ctx_t *c, const char *method, const http_request_t *req,
                   http_response_t *res)
{
    if (strcmp(method, "WatchDir") == 0)
        return e2b_watch_handle(c, req, res);
    bool streaming;
    _cleanup_json_ json_t *in = connect_request_json(req, &streaming);
    if (!json_is_object(in) || streaming || strcmp(req->method, "POST") != 0) {
        connect_reply_error(res, "invalid_argument", "a unary JSON request was expected");
        return;
    }
    const char *p = json_string_value(json_object_get(in, "path"));
    _cleanup_free_ char *path = envd_path(c, p);
    char why[512];
    if (strcmp(method, "Move") == 0) {
        _cleanup_free_ char *src = envd_path(c, json_string_value(json_object_get(in, "source")));
        _cleanup_free_ char *dst =
            envd_path(c, json_string_value(json_object_get(in, "destination")));
        if (!src || !dst) {
            connect_reply_error(res, "invalid_argument", "source and destination are required");
            return;
        }
        int rc = run_script(c,
                            "[ -e \"$1\" ] || [ -L \"$1\" ] || exit 2; "
                            "mkdir -p -- \"$(dirname -- \"$2\")\" && mv -f -- \"$1\" \"$2\"",
                            src, dst, res, why, sizeof(why));
        if (rc == 2)
            connect_reply_error(res, "not_found", "path '%s' does not exist", src);
        else if (rc > 0)
            connect_reply_error(res, "internal", "move failed: %s", why);
        else if (rc == 0)
            reply_entry(res, stat_entry(c, dst, res));
        return;
    }
    if (!path) {
        connect_reply_error(res, "invalid_argument", "path is required");
        return;
    }
    if (strcmp(method, "Stat") == 0) {
        reply_entry(res, stat_entry(c, path, res));
    } else if (strcmp(method, "ListDir") == 0) {
        json_int_t depth = json_integer_value(json_object_get(in, "depth"));
        _cleanup_json_ json_t *out = json_array();
        if (list_into(c, path,
                      depth < 1                ? 1
                      : depth > LIST_MAX_DEPTH ? LIST_MAX_DEPTH
                                               : (unsigned)depth,
                      out, res) == 0)
            http_reply_json(res, 200, json_pack("{s:O}", "entries", out));
    } else if (strcmp(method, "MakeDir") == 0) {
        int rc = run_script(c, "[ -e \"$1\" ] && exit 17; mkdir -p -- \"$1\"", path, NULL, res, why,
                            sizeof(why));
        if (rc == 17)
            connect_reply_error(res, "already_exists", "path '%s' already exists", path);
        else if (rc > 0)
            connect_reply_error(res, "internal", "mkdir failed: %s", why);
        else if (rc == 0)
            reply_entry(res, stat_entry(c, path, res));
    } else if (strcmp(method, "Remove") == 0) {
        int rc = run_script(c, "[ -e \"$1\" ] || [ -L \"$1\" ] || exit 2; rm -rf -- \"$1\"", path,
                            NULL, res, why, sizeof(why));
        if (rc == 2)
            connect_reply_error(res, "not_found", "path '%s' does not exist", path);
        else if (rc > 0)
            connect_reply_error(res, "internal", "remove failed: %s", why);
        else if (rc == 0)
            http_reply_json(res, 200, json_object());
    } else {
        connect_reply_error(res, "unimplemented", "filesystem.Filesystem/%.64s is not supported",
                            method);
    }
}
