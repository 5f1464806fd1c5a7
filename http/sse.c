/* sse.c -- reading a text/event-stream as it arrives: lines split across
 * reads, events dispatched at their blank line, comments passed on (they
 * are keep-alives), lines bounded.  */
#include <string.h>

#include "http/http.h"

static int sse_line(http_sse_reader_t *r, const char *l, size_t n, http_sse_event_fn fn, void *ud)
{
    if (n == 0) {
        int rc = r->event[0] ? fn(ud, r->event, r->data ? r->data : "", r->data_len) : 0;
        r->event[0] = '\0';
        r->data_len = 0;
        if (r->data)
            r->data[0] = '\0';
        return rc;
    }
    if (l[0] == ':')
        return fn(ud, NULL, NULL, 0);
    if (n > 7 && !strncmp(l, "event: ", 7)) {
        size_t k = n - 7 < sizeof(r->event) - 1 ? n - 7 : sizeof(r->event) - 1;
        memcpy(r->event, l + 7, k);
        r->event[k] = '\0';
    } else if (n >= 6 && !strncmp(l, "data: ", 6)) {
        /* Several data lines make one value, joined by newlines.  */
        size_t sep = r->data_len ? 1 : 0;
        r->data = xrealloc(r->data, r->data_len + sep + n - 6 + 1);
        if (sep)
            r->data[r->data_len] = '\n';
        memcpy(r->data + r->data_len + sep, l + 6, n - 6);
        r->data_len += sep + n - 6;
        r->data[r->data_len] = '\0';
    }
    return 0;
}

int http_sse_feed(http_sse_reader_t *r, const char *p, size_t n, http_sse_event_fn fn, void *ud)
{
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t k = nl ? (size_t)(nl - (p + i)) : n - i;
        if (r->line_len + k > r->max_line || r->data_len + k > r->max_line) {
            r->overflow = true;
            return -1;
        }
        r->line = xrealloc(r->line, r->line_len + k + 1);
        memcpy(r->line + r->line_len, p + i, k);
        r->line_len += k;
        i += k;
        if (!nl)
            break;
        i++;
        size_t len = r->line_len;
        if (len && r->line[len - 1] == '\r')
            len--;
        r->line_len = 0;
        int rc = sse_line(r, r->line, len, fn, ud);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void http_sse_reader_done(http_sse_reader_t *r)
{
    free(r->line);
    free(r->data);
    r->line = r->data = NULL;
    r->line_len = r->data_len = 0;
}
