/* exec_io.c -- the host side of an exec's pipes that every driver shares:
 * capped collection of its output, and its stdin fed without blocking.  */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "runtime/driver.h"

void rt_outbuf_read(rt_outbuf_t *b)
{
    char tmp[65536];
    ssize_t n = read(b->fd, tmp, sizeof tmp);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            close(TAKE_FD(b->fd));
        return;
    }
    size_t room = b->cap - b->len, take = (size_t)n < room ? (size_t)n : room;
    if (take < (size_t)n) {
        b->truncated = true;
        b->dropped += (size_t)n - take;
    }
    if (take) {
        b->data = xrealloc(b->data, b->len + take + 1);
        memcpy(b->data + b->len, tmp, take);
        b->len += take;
    }
    /* Reading on costs the host time for nothing: the command gets EPIPE.  */
    if (b->dropped > RT_EXEC_DISCARD_MAX)
        close(TAKE_FD(b->fd));
}

void rt_outbuf_append(rt_outbuf_t *b, const char *s, size_t len)
{
    b->data = xrealloc(b->data, b->len + len + 1);
    memcpy(b->data + b->len, s, len);
    b->len += len;
}

char *rt_outbuf_take(rt_outbuf_t *b, size_t *len, bool *truncated)
{
    char *d = b->data ? TAKE_PTR(b->data) : xstrdup("");
    d[b->len] = 0;
    *len = b->len;
    *truncated = b->truncated;
    return d;
}

void rt_stdin_feed(int *fd, const char **p, size_t *left)
{
    /* A command that does not read its input closes the pipe: keep
     * SIGPIPE from the agent while writing.  */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t w = write(*fd, *p, *left);
    if (w < 0 && errno == EPIPE) {
        struct timespec zero = {0, 0};
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (w > 0) {
        *p += w;
        *left -= (size_t)w;
    }
    if ((w < 0 && errno != EAGAIN) || *left == 0)
        close(TAKE_FD(*fd));
}
