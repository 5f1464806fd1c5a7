/* sweep.c -- each agent's claim on its egress tag, and the removal of nft
 * tables that agents gone for good left behind.  A table outlives its
 * agent on purpose (its sandboxes keep their rules while the agent is
 * down); one whose agent is gone and whose sandboxes are all gone only
 * costs every packet of the host a look, and its listener-port rules
 * outlive the ports.  */
#include "egress/internal.h"

#include <errno.h>
#include <net/if.h>
#include <nftables/libnftables.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CLAIM_WAIT_MS 3000

int eg_claim_name(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "%s", name);
    if (bind(fd, (struct sockaddr *)&a,
             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0)
        return fd;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

/* An agent's claim on its tag, per network namespace like its table.  */
static int claim_try(const char *tag)
{
    char name[64];
    snprintf(name, sizeof name, "sandboxd-egress-tag-%s", tag);
    return eg_claim_name(name);
}

int eg_tag_claim(const char *tag, sbx_error_t *err)
{
    /* An agent of the same data dir may still be on its way out, or a
     * sweep of another agent may hold the name for a moment.  */
    for (int64_t until = sbx_monotonic_ms() + CLAIM_WAIT_MS;; usleep(20000)) {
        int fd = claim_try(tag);
        if (fd >= 0 || errno != EADDRINUSE || sbx_monotonic_ms() > until)
            return fd >= 0 ? fd
                           : sbx_error_errno(err, SBX_ERR_CONFLICT,
                                             "another agent on this host runs egress tag %s", tag);
    }
}

static bool has_links(const char *tag)
{
    char prefix[IF_NAMESIZE];
    int n = snprintf(prefix, sizeof prefix, "sx%s-", tag);
    struct if_nameindex *all = if_nameindex();
    bool found = false;
    for (struct if_nameindex *i = all; i && i->if_index; i++)
        found |= strncmp(i->if_name, prefix, (size_t)n) == 0;
    if (all)
        if_freenameindex(all);
    return found;
}

/* The tag of a table this module names, or NULL.  */
static const char *table_tag(const json_t *item)
{
    const json_t *t = json_object_get(item, "table");
    const char *family = json_string_value(json_object_get(t, "family"));
    const char *name = json_string_value(json_object_get(t, "name"));
    if (!family || !name || strcmp(family, "inet") != 0 || strncmp(name, "sandboxd_", 9) != 0)
        return NULL;
    const char *tag = name + 9;
    size_t len = strlen(tag);
    if (len == 0 || len > 6 || strspn(tag, "abcdefghijklmnopqrstuvwxyz0123456789") != len)
        return NULL;
    return tag;
}

static json_t *list_tables(struct nft_ctx *ctx)
{
    nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
    if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0 ||
        nft_run_cmd_from_buffer(ctx, "list tables") != 0)
        return NULL;
    return json_loads(nft_ctx_get_output_buffer(ctx), 0, NULL);
}

static void sweep_one(struct nft_ctx *ctx, const char *tag)
{
    int probe = claim_try(tag);
    if (probe < 0)
        return; /* its agent runs */
    if (!has_links(tag)) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "delete table inet sandboxd_%s", tag);
        if (nft_run_cmd_from_buffer(ctx, cmd) == 0)
            sbx_log(SBX_LOG_INFO, MODULE,
                    "removed nft table sandboxd_%s: its agent and its sandboxes are gone", tag);
    }
    close(probe);
}

void eg_sweep_stale_tables(const char *own_tag)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return;
    _cleanup_json_ json_t *list = list_tables(ctx);
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(list, "nftables"), i, item)
    {
        const char *tag = table_tag(item);
        if (tag && strcmp(tag, own_tag) != 0)
            sweep_one(ctx, tag);
    }
    nft_ctx_free(ctx);
}
