/* common.c -- errors, allocation, time, ids, strings, files and logging.  */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <uuid/uuid.h>

/* ---- errors ---- */

static void error_vset(sbx_error_t *err, sbx_code_t code, const char *arm_code, const char *fmt,
                       va_list ap)
{
    if (!err)
        return;
    err->code = code;
    err->target[0] = '\0';
    snprintf(err->arm_code, sizeof(err->arm_code), "%s", arm_code ? arm_code : "");
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int sbx_error_set(sbx_error_t *err, sbx_code_t code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

int sbx_error_arm(sbx_error_t *err, sbx_code_t code, const char *arm_code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(err, code, arm_code, fmt, ap);
    va_end(ap);
    return -1;
}

int sbx_error_errno(sbx_error_t *err, sbx_code_t code, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;
    if (!err)
        return -1;
    va_start(ap, fmt);
    error_vset(err, code, NULL, fmt, ap);
    va_end(ap);
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(saved));
    errno = saved;
    return -1;
}

void sbx_error_wrap(sbx_error_t *err, const char *fmt, ...)
{
    char prefix[256], old[sizeof(err->msg)];
    va_list ap;
    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
}

int sbx_error_target(sbx_error_t *err, const char *target)
{
    if (err)
        snprintf(err->target, sizeof(err->target), "%s", target);
    return -1;
}

void sbx_error_clear(sbx_error_t *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

int sbx_code_http_status(sbx_code_t code)
{
    switch (code) {
    case SBX_OK: return 200;
    case SBX_ERR_INVALID: return 400;
    case SBX_ERR_FORBIDDEN: return 403;
    case SBX_ERR_NOT_FOUND: return 404;
    case SBX_ERR_CONFLICT: return 409;
    case SBX_ERR_PRECONDITION: return 412;
    case SBX_ERR_TOO_LARGE: return 413;
    case SBX_ERR_UNAVAILABLE: return 503;
    case SBX_ERR_TIMEOUT: return 504;
    case SBX_ERR_MEDIA_TYPE: return 415;
    case SBX_ERR_INTERNAL: break;
    }
    return 500;
}

const char *sbx_code_arm_name(sbx_code_t code)
{
    switch (code) {
    case SBX_OK: return "OK";
    case SBX_ERR_INVALID: return "BadRequest";
    case SBX_ERR_FORBIDDEN: return "Forbidden";
    case SBX_ERR_NOT_FOUND: return "NotFound";
    case SBX_ERR_CONFLICT: return "Conflict";
    case SBX_ERR_PRECONDITION: return "PreconditionFailed";
    case SBX_ERR_TOO_LARGE: return "RequestEntityTooLarge";
    case SBX_ERR_UNAVAILABLE: return "ServiceUnavailable";
    case SBX_ERR_TIMEOUT: return "GatewayTimeout";
    case SBX_ERR_MEDIA_TYPE: return "UnsupportedMediaType";
    case SBX_ERR_INTERNAL: break;
    }
    return "InternalServerError";
}

/* ---- allocation ---- */

static void *oom(void)
{
    fputs("out of memory\n", stderr);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom();
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom();
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom();
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);
    return p ? p : oom();
}

char *xstrndup(const char *s, size_t n)
{
    char *p = strndup(s, n);
    return p ? p : oom();
}

char *xasprintf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? oom() : s;
}

size_t sbx_sink_write(char *p, size_t size, size_t n, void *sink)
{
    sbx_sink_t *s = sink;
    size_t add = size * n;
    if (add > s->max || s->len > s->max - add) {
        s->overflow = true;
        return 0;
    }
    s->data = xrealloc(s->data, s->len + add + 1);
    memcpy(s->data + s->len, p, add);
    s->len += add;
    s->data[s->len] = '\0';
    return add;
}

void sbx_freep(void *p)
{
    free(*(void **)p);
}

void sbx_closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

void sbx_json_decrefp(json_t **j)
{
    json_decref(*j);
}

/* ---- time, ids, strings ---- */

int64_t sbx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec sbx_deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = ts.tv_nsec + ms % 1000 * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

int64_t sbx_monotonic_ms(void)
{
    return sbx_monotonic_us() / 1000;
}

int64_t sbx_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sbx_time_format(int64_t ms, char *buf, size_t len)
{
    /* Floor division: before the epoch, -1 ms is 23:59:59.999 of the day
     * before, not ".-01".  */
    int64_t rem = ms % 1000;
    if (rem < 0)
        rem += 1000;
    time_t secs = (time_t)((ms - rem) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, (int)rem);
}

/* From getrandom(2) bytes: libuuid re-seeds and locks on every call, which
 * shows up at one id per request.  */
void sbx_uuid(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        uuid_t u;
        uuid_generate_random(u);
        memcpy(b, u, sizeof(b));
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 15];
    }
    *o = '\0';
}

bool sbx_str_ieq(const char *a, const char *b)
{
    return a && b && strcasecmp(a, b) == 0;
}

bool sbx_str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

void sbx_str_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.  */
bool sbx_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (n >= len - i)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/* ---- files ---- */

int sbx_mkdir_p(const char *path, mode_t mode, sbx_error_t *err)
{
    if (!*path) /* the loop below starts one past the first byte */
        return sbx_error_set(err, SBX_ERR_INVALID, "mkdir: empty path");
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir '%s'", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "mkdir '%s'", p);
    return 0;
}

int sbx_read_file(const char *path, char **out, size_t *len, sbx_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sbx_error_errno(err, errno == ENOENT ? SBX_ERR_NOT_FOUND : SBX_ERR_INTERNAL,
                               "open '%s'", path);
    size_t cap = 4096, n = 0;
    _cleanup_free_ char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "read '%s'", path);
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    *out = TAKE_PTR(buf);
    return 0;
}

int sbx_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          sbx_error_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "open '%s'", tmp);
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            sbx_error_errno(err, SBX_ERR_INTERNAL, "write '%s'", tmp);
            unlink(tmp);
            return -1;
        }
        p += w, len -= (size_t)w;
    }
    if (fsync(fd) < 0 || rename(tmp, path) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "commit '%s'", path);
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int rm_rf_at(int parent, const char *name, sbx_error_t *err)
{
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : sbx_error_errno(err, SBX_ERR_INTERNAL, "stat '%s'", name);
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "open '%s'", name);
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "opendir '%s'", name);
        }
        struct dirent *de;
        int ret = 0;
        while (ret == 0 && (de = readdir(d))) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            ret = rm_rf_at(dirfd(d), de->d_name, err);
        }
        closedir(d);
        if (ret < 0)
            return ret;
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "rmdir '%s'", name);
        return 0;
    }
    if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "unlink '%s'", name);
    return 0;
}

int sbx_rm_rf(const char *path, sbx_error_t *err)
{
    return rm_rf_at(AT_FDCWD, path, err);
}

/* ---- logging ---- */

static sbx_log_level_t log_level = SBX_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void sbx_log_set_level(sbx_log_level_t level)
{
    log_level = level;
}

sbx_log_level_t sbx_log_get_level(void)
{
    return log_level;
}

void sbx_log_json(json_t *line)
{
    char *s = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (!s)
        return;
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s\n", s);
    pthread_mutex_unlock(&log_lock);
    free(s);
}

void sbx_log(sbx_log_level_t level, const char *module, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level)
        return;
    char msg[1024], when[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Messages quote what hosts and clients sent; JSON needs UTF-8, so
     * anything else (or a sequence cut by the buffer) is shown as '?'.  */
    if (!sbx_utf8_valid(msg, strlen(msg)))
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
    sbx_time_format(sbx_now_ms(), when, sizeof(when));
    json_t *line = json_pack("{s:s,s:s,s:s,s:s}", "time", when, "level", names[level], "module",
                             module, "msg", msg);
    if (line)
        sbx_log_json(line);
    json_decref(line);
}
