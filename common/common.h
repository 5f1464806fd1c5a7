/* common.h -- errors, cleanup helpers, allocation, time, ids and files shared
 * by every sandboxd module.
 *
 * Error contract (see docs/conventions.md): a function that can fail returns
 * int (0 on success, negative on failure) or a pointer (NULL on failure) and
 * takes `sbx_error_t *err` as its last parameter.  On failure it fills *err
 * with one of the expected codes below and a one-line message; on success it
 * leaves *err alone.  Only the top level (HTTP reply writer, main) turns an
 * error into output.  */
#ifndef SBX_COMMON_H
#define SBX_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

/* Expected failures; each maps to one HTTP status in exactly one place.  */
typedef enum sbx_code {
    SBX_OK = 0,
    SBX_ERR_INTERNAL,     /* 500 */
    SBX_ERR_INVALID,      /* 400 */
    SBX_ERR_NOT_FOUND,    /* 404 */
    SBX_ERR_CONFLICT,     /* 409 */
    SBX_ERR_PRECONDITION, /* 412 */
    SBX_ERR_TOO_LARGE,    /* 413 */
    SBX_ERR_FORBIDDEN,    /* 403 */
    SBX_ERR_UNAVAILABLE,  /* 503 */
    SBX_ERR_TIMEOUT,      /* 504 */
    SBX_ERR_MEDIA_TYPE,   /* 415 */
} sbx_code_t;

typedef struct sbx_error {
    sbx_code_t code;
    char arm_code[64]; /* stable ARM error code, e.g. "InvalidResourceName"; may be empty */
    char target[128];  /* the offending input field, e.g. "properties.cpu"; may be empty */
    char msg[512];
} sbx_error_t;

/* Fill *err (if err is not NULL) and return -1.  */
int sbx_error_set(sbx_error_t *err, sbx_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Same, with a stable ARM error code.  */
int sbx_error_arm(sbx_error_t *err, sbx_code_t code, const char *arm_code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same as sbx_error_set with ": strerror(errno)" appended.  */
int sbx_error_errno(sbx_error_t *err, sbx_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefix the message with context: "context: old message".  */
void sbx_error_wrap(sbx_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbx_error_clear(sbx_error_t *err);
/* Name the input field an error is about (ARM's "target").  Returns -1.  */
int sbx_error_target(sbx_error_t *err, const char *target);
/* HTTP status and default ARM code for a sbx_code_t.  */
int sbx_code_http_status(sbx_code_t code);
const char *sbx_code_arm_name(sbx_code_t code);

/* Allocation that aborts on out-of-memory, so callers need no NULL checks.  */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A reply read from the network, kept NUL-terminated and cut off past max
 * bytes (overflow set): sbx_sink_write has libcurl's write-callback shape,
 * and returning short makes libcurl abort the transfer.  */
typedef struct sbx_sink {
    char *data;
    size_t len;
    size_t max;
    bool overflow;
} sbx_sink_t;
size_t sbx_sink_write(char *p, size_t size, size_t n, void *sink);

/* Cleanup attributes: the variable is released when it leaves scope.  Hand
 * ownership out with TAKE_PTR / TAKE_FD.  */
void sbx_freep(void *p);
void sbx_closep(int *fd);
void sbx_json_decrefp(json_t **j);
#define _cleanup_free_ __attribute__((cleanup(sbx_freep)))
#define _cleanup_close_ __attribute__((cleanup(sbx_closep)))
#define _cleanup_json_ __attribute__((cleanup(sbx_json_decrefp)))
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp = (p);                                                                   \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _tf;                                                                                       \
    })
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Time.  */
int64_t sbx_now_ms(void);       /* wall clock, ms since the epoch */
int64_t sbx_monotonic_ms(void); /* monotonic clock, ms */
struct sockaddr;
/* Whether an address is public: not loopback, private, link-local (the
 * cloud metadata service's 169.254.169.254 and fd00:ec2::254 among
 * them), shared, multicast or reserved, also when wrapped in IPv6
 * (mapped, NAT64, 6to4); addr.c.  */
bool sbx_addr_public(const struct sockaddr *sa);
int64_t sbx_monotonic_us(void);
/* The wall-clock time ms milliseconds from now, for pthread timed waits.  */
struct timespec sbx_deadline_in(int64_t ms);
/* RFC 3339 UTC with milliseconds: "2026-11-23T15:33:15.123Z"; buf >= 32 bytes.  */
void sbx_time_format(int64_t ms, char *buf, size_t len);

/* Random version-4 UUID, lower case, 36 characters plus NUL.  */
void sbx_uuid(char out[37]);

/* Standard base64 with padding, NUL-terminated (base64.c).  */
char *sbx_base64_encode(const void *data, size_t n);
/* Strict: length a multiple of 4, '=' only at the end; the bytes
 * (NUL-terminated) are at most max long.  NULL when not so.  */
char *sbx_base64_decode(const char *in, size_t n, size_t max, size_t *len);

/* Strings.  */
bool sbx_str_ieq(const char *a, const char *b);
bool sbx_str_has_prefix(const char *s, const char *prefix);
bool sbx_utf8_valid(const char *s, size_t len);
void sbx_str_lower(char *s);

/* Files.  */
int sbx_mkdir_p(const char *path, mode_t mode, sbx_error_t *err);
/* Read a whole file; *out is NUL-terminated, *len excludes the NUL.  */
int sbx_read_file(const char *path, char **out, size_t *len, sbx_error_t *err);
/* Write via a temporary file, fsync and rename, so readers see old or new.  */
int sbx_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                          sbx_error_t *err);
/* Remove a directory tree without following symlinks.  Missing is not an error.  */
int sbx_rm_rf(const char *path, sbx_error_t *err);

/* Logging to stderr, one line each; lines are JSON objects so they can be
 * shipped as they are.  */
typedef enum { SBX_LOG_DEBUG, SBX_LOG_INFO, SBX_LOG_WARN, SBX_LOG_ERROR } sbx_log_level_t;
void sbx_log_set_level(sbx_log_level_t level);
sbx_log_level_t sbx_log_get_level(void);
void sbx_log(sbx_log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write one pre-built JSON object as a log line (takes no reference).  */
void sbx_log_json(json_t *line);

#endif
