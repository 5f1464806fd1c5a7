/* files.c -- the agent's files calls: download a file a chunk at a time,
 * list a directory, upload (streamed into the sandbox), delete; every path
 * resolves inside the sandbox's root (runtime/files.c).  */
#include "agent/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* A file operation's error: an unknown id was checked before, so a
 * NOT_FOUND now means the file.  */
static void reply_file_error(http_response_t *res, sbx_error_t *err, const char *id)
{
    if (!err->arm_code[0]) {
        if (err->code == SBX_ERR_NOT_FOUND)
            snprintf(err->arm_code, sizeof(err->arm_code), "FileNotFound");
        else if (err->code == SBX_ERR_INVALID)
            snprintf(err->arm_code, sizeof(err->arm_code), "InvalidPath");
    }
    agent_reply_error(res, err, id);
}

static json_t *dirents_json(const rt_dirent_t *d, size_t n)
{
    json_t *value = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *e =
            json_pack("{s:o,s:s,s:I,s:I,s:o}", "name", agent_json_cstr(d[i].name), "type",
                      d[i].type, "size", (json_int_t)d[i].size, "mode", (json_int_t)d[i].mode,
                      "modifiedAt", agent_json_time(d[i].modified_ms));
        if (e)
            json_array_append_new(value, e);
    }
    return json_pack("{s:o}", "value", value);
}

/* A download is sent from the open file a chunk at a time; the size is
 * the one it had when opened (a file the sandbox grows meanwhile is cut
 * there, one it shrinks ends the connection early).  */
typedef struct file_stream {
    int fd;
    uint64_t size;
} file_stream_t;

static ssize_t file_stream_read(void *ud, uint64_t pos, char *buf, size_t max)
{
    file_stream_t *f = ud;
    if (pos >= f->size)
        return HTTP_STREAM_END;
    if (max > f->size - pos)
        max = (size_t)(f->size - pos);
    ssize_t n;
    do
        n = pread(f->fd, buf, max, (off_t)pos);
    while (n < 0 && errno == EINTR);
    return n > 0 ? n : HTTP_STREAM_ERROR;
}

static void file_stream_free(void *ud)
{
    file_stream_t *f = ud;
    close(f->fd);
    free(f);
}

static void get_file(agent_api_t *api, const char *id, const char *path, bool list,
                     http_response_t *res)
{
    sbx_error_t err = {0};
    if (list) {
        rt_dirent_t *d = NULL;
        size_t n = 0;
        if (rt_file_list(api->rt, id, path, &d, &n, &err) < 0)
            return reply_file_error(res, &err, id);
        json_t *j = dirents_json(d, n);
        rt_dirents_free(d, n);
        return http_reply_json(res, 200, j);
    }
    file_stream_t *f = xcalloc(1, sizeof(*f));
    if (rt_file_open(api->rt, id, path, AGENT_MAX_FILE_BODY, &f->fd, &f->size, &err) < 0) {
        free(f);
        return reply_file_error(res, &err, id);
    }
    http_reply_stream(res, 200, "application/octet-stream", f->size, file_stream_read,
                      file_stream_free, f);
}

static void put_file(agent_api_t *api, const char *id, const agent_call_t *c, const char *path,
                     http_response_t *res)
{
    uint64_t written = c->body_read ? 0 : c->body_len;
    sbx_error_t err = {0};
    int r = c->body_read ? rt_file_write_stream(api->rt, id, path, c->body_size, c->body_read,
                                                c->body_ud, &written, &err)
                         : rt_file_write(api->rt, id, path, c->body, c->body_len, &err);
    if (r < 0)
        return reply_file_error(res, &err, id);
    http_reply_json(
        res, 201,
        json_pack("{s:o,s:I}", "path", agent_json_cstr(path), "size", (json_int_t)written));
}

void agent_files(agent_api_t *api, const char *id, const agent_call_t *c, http_response_t *res)
{
    const char *path = c->query_path;
    if (!path || !path[0])
        return http_reply_error(res, 400, "InvalidPath", "the path query parameter is required");
    if (strlen(path) != c->query_path_len || path[0] != '/' ||
        c->query_path_len > AGENT_MAX_PATH_LEN)
        return http_reply_error(res, 400, "InvalidPath",
                                "path must be absolute, without NULs, at most %d bytes",
                                AGENT_MAX_PATH_LEN);
    bool list = false;
    if (c->query_list && strcmp(c->query_list, "true") == 0)
        list = true;
    else if (c->query_list && strcmp(c->query_list, "false") != 0)
        return agent_reply_invalid(res, "list must be true or false");

    rt_info_t info;
    sbx_error_t err = {0};
    if (rt_get(api->rt, id, &info, &err) < 0)
        return agent_reply_error(res, &err, id);

    if (strcmp(c->method, "GET") == 0)
        return get_file(api, id, path, list, res);
    if (strcmp(c->method, "PUT") == 0)
        return put_file(api, id, c, path, res);
    if (rt_file_delete(api->rt, id, path, &err) < 0 && err.code != SBX_ERR_NOT_FOUND)
        return reply_file_error(res, &err, id);
    http_reply_empty(res, 204);
}
