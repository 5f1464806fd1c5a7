/* microvm.c -- the "microvm" driver: sandboxes as QEMU microVMs.  Only
 * its host check exists so far: health says why it cannot run here, and
 * a create that asks for it is refused with that reason instead of ever
 * running under a weaker driver.  */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "runtime/driver.h"

static bool find_qemu(void)
{
    const char *const paths[] = {"/usr/bin/qemu-system-x86_64",
                                 "/usr/local/bin/qemu-system-x86_64"};
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
        if (access(paths[i], X_OK) == 0)
            return true;
    return false;
}

static bool mv_usable(rt_runtime_t *rt, char *why, size_t len)
{
    if (!find_qemu())
        snprintf(why, len,
                 "qemu-system-x86_64 not found (install the Debian package "
                 "qemu-system-x86)");
    else if (access("/dev/kvm", R_OK | W_OK) != 0 && !rt->cfg.allow_microvm_emulation)
        snprintf(why, len,
                 "no usable /dev/kvm, and software emulation is not allowed "
                 "(--microvm-emulation)");
    else
        snprintf(why, len, "the microvm driver is not built into this agent yet");
    return false;
}

static int mv_unavailable(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt;
    (void)sb;
    return sbx_error_set(err, SBX_ERR_UNAVAILABLE, "the microvm isolation is not available");
}

static int mv_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req,
                   rt_exec_result_t *out, sbx_error_t *err)
{
    (void)req;
    (void)out;
    pthread_rwlock_unlock(&sb->lock);
    return mv_unavailable(rt, sb, err);
}

static int mv_nothing(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt;
    (void)sb;
    (void)err;
    return 0;
}

static int mv_destroy(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err)
{
    (void)rt;
    return sbx_rm_rf(sb->dir, err);
}

static void mv_usage(rt_runtime_t *rt, rt_sandbox_t *sb, uint64_t *memory_bytes, uint64_t *cpu_us)
{
    (void)rt;
    (void)sb;
    *memory_bytes = 0;
    *cpu_us = 0;
}

const rt_driver_ops_t rt_microvm_ops = {
    .name = "microvm",
    .usable = mv_usable,
    .create = mv_unavailable,
    .start = mv_unavailable,
    .exec = mv_exec,
    .suspend = mv_unavailable,
    .resume = mv_unavailable,
    .stop = mv_nothing,
    .destroy = mv_destroy,
    .list = mv_nothing,
    .root_fd = mv_unavailable,
    .usage = mv_usage,
};
