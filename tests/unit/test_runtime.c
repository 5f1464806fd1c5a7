/* test_runtime.c -- the runtime's argument checking, with no sandbox
 * started: ids, state names, configurations, calls on unknown sandboxes.  */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/runtime.h"
#include "tests/testutil.h"

START_TEST(test_runtime_id_valid)
{
    const char *good[] = {"a", "0", "sandbox-1", "a-b-c",
                          "x123456789012345678901234567890123456789012345678901234567890ab"};
    const char *bad[] = {NULL,
                         "",
                         "-a",
                         "A",
                         "a_b",
                         "a.b",
                         "a/b",
                         "..",
                         "a b",
                         "é",
                         "x1234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        ck_assert_msg(rt_id_valid(good[i]), "%s", good[i]);
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        ck_assert_msg(!rt_id_valid(bad[i]), "%s", bad[i] ? bad[i] : "NULL");
}
END_TEST

START_TEST(test_runtime_state_names)
{
    ck_assert_str_eq(rt_state_name(RT_STATE_CREATING), "Creating");
    ck_assert_str_eq(rt_state_name(RT_STATE_RUNNING), "Running");
    ck_assert_str_eq(rt_state_name(RT_STATE_SUSPENDED), "Suspended");
    ck_assert_str_eq(rt_state_name(RT_STATE_STOPPED), "Stopped");
    ck_assert_str_eq(rt_state_name(RT_STATE_FAILED), "Failed");
    ck_assert_str_eq(rt_state_name((rt_state_t)42), "Unknown");
}
END_TEST

START_TEST(test_runtime_open_bad_config)
{
    sbx_error_t err = {0};
    ck_assert_ptr_null(rt_open(NULL, &err));
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    rt_config_t empty = {.state_dir = ""};
    ck_assert_ptr_null(rt_open(&empty, &err));
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    char *dir = tu_tmpdir("sbx-rtu");
    const char *roots[] = {"", "a/b", "..", "."};
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
        rt_config_t cfg = {.state_dir = dir, .cgroup_root = roots[i]};
        ck_assert_ptr_null(rt_open(&cfg, &err));
        ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    }
    tu_rmdir(dir);
    free(dir);
    rt_exec_result_done(NULL);
    rt_dirents_free(NULL, 0);
    rt_close(NULL);
}
END_TEST

START_TEST(test_runtime_unknown_sandbox)
{
    char *dir = tu_tmpdir("sbx-rtu");
    _cleanup_free_ char *cg = xasprintf("sbxunit-%d", (int)getpid());
    rt_config_t cfg = {.state_dir = dir, .cgroup_root = cg};
    sbx_error_t err = {0};
    rt_runtime_t *rt = rt_open(&cfg, &err);
    ck_assert_msg(rt != NULL, "%s", err.msg);
    rt_info_t info;
    ck_assert_int_eq(rt_get(rt, "ghost", &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_get(rt, "../ghost", &info, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    ck_assert_int_eq(rt_suspend(rt, "ghost", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_resume(rt, "ghost", &err), -1);
    ck_assert_int_eq(rt_start(rt, "ghost", &err), -1);
    ck_assert_int_eq(rt_destroy(rt, "ghost", &err), 0);
    ck_assert_int_eq(rt_destroy(rt, "Bad!", &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    char *data;
    size_t len;
    ck_assert_int_eq(rt_file_read(rt, "ghost", "/x", 0, &data, &len, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_NOT_FOUND);
    ck_assert_int_eq(rt_file_write(rt, "ghost", NULL, "x", 1, &err), -1);
    ck_assert_int_eq(err.code, SBX_ERR_INVALID);
    rt_info_t *list;
    size_t n;
    ck_assert_int_eq(rt_list(rt, &list, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    free(list);
    rt_health_t h;
    ck_assert_int_eq(rt_health(rt, &h, &err), 0);
    ck_assert_uint_eq(h.slots_used, 0);
    ck_assert_uint_gt(h.slots_total, 0);
    ck_assert_uint_gt(h.memory_total_mib, 0);
    ck_assert(h.cpu_total >= 1);
    rt_close(rt);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* ---- host-wide claims: uid ranges and cgroup parents ------------------------ */

static rt_runtime_t *open_at(const char *dir, const char *cg, uint32_t start, uint32_t count,
                             sbx_error_t *err)
{
    rt_config_t cfg = {.state_dir = dir, .cgroup_root = cg, .uid_start = start, .uid_count = count};
    return rt_open(&cfg, err);
}

static rt_health_t health_of(rt_runtime_t *rt)
{
    rt_health_t h;
    sbx_error_t err = {0};
    ck_assert_msg(rt_health(rt, &h, &err) == 0, "%s", err.msg);
    return h;
}

static bool ranges_overlap(const rt_health_t *a, const rt_health_t *b)
{
    return (uint64_t)a->uid_start < (uint64_t)b->uid_start + b->uid_count &&
           (uint64_t)b->uid_start < (uint64_t)a->uid_start + a->uid_count;
}

/* Two runtimes of one host, opened at once on different state dirs, get
 * disjoint uid ranges and cgroup parents of their own.  */
START_TEST(test_runtime_claims_disjoint)
{
    char *a_dir = tu_tmpdir("sbx-rtu"), *b_dir = tu_tmpdir("sbx-rtu");
    sbx_error_t err = {0};
    rt_runtime_t *a = open_at(a_dir, NULL, 0, 0, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    rt_runtime_t *b = open_at(b_dir, NULL, 0, 0, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    rt_health_t ha = health_of(a), hb = health_of(b);
    ck_assert(!ranges_overlap(&ha, &hb));
    ck_assert_uint_ge(ha.uid_start, 0x40000000u);
    ck_assert_uint_ge(ha.uid_count, 256u * 65536u);
    ck_assert_uint_eq(ha.uid_count % 65536u, 0);
    ck_assert_uint_le(ha.slots_total, ha.uid_count / 65536u);
    ck_assert_str_ne(ha.cgroup_parent, hb.cgroup_parent);
    ck_assert(strncmp(ha.cgroup_parent, "sandboxd-", 9) == 0);
    ck_assert(strncmp(hb.cgroup_parent, "sandboxd-", 9) == 0);
    /* Recorded in the state dir for the next start.  */
    _cleanup_free_ char *rec = xasprintf("%s/claims.json", a_dir);
    ck_assert_int_eq(access(rec, R_OK), 0);
    rt_close(a);
    rt_close(b);
    tu_rmdir(a_dir);
    tu_rmdir(b_dir);
    free(a_dir);
    free(b_dir);
}
END_TEST

/* A runtime reopened on its state dir keeps its range and parent, and
 * while it is down (its sandboxes keep running) nobody takes them.  */
START_TEST(test_runtime_claims_kept)
{
    char *a_dir = tu_tmpdir("sbx-rtu"), *b_dir = tu_tmpdir("sbx-rtu");
    sbx_error_t err = {0};
    rt_runtime_t *a = open_at(a_dir, NULL, 0, 0, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    rt_health_t before = health_of(a);
    rt_close(a);
    rt_runtime_t *b = open_at(b_dir, NULL, 0, 0, &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    rt_health_t hb = health_of(b);
    ck_assert(!ranges_overlap(&before, &hb));
    a = open_at(a_dir, NULL, 0, 0, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    rt_health_t after = health_of(a);
    ck_assert_uint_eq(after.uid_start, before.uid_start);
    ck_assert_uint_eq(after.uid_count, before.uid_count);
    ck_assert_str_eq(after.cgroup_parent, before.cgroup_parent);
    rt_close(a);
    rt_close(b);
    tu_rmdir(a_dir);
    tu_rmdir(b_dir);
    free(a_dir);
    free(b_dir);
}
END_TEST

/* A range or parent another runtime holds, or keeps while it is down, is
 * refused with a clear error; once its state dir is gone it is free.  */
START_TEST(test_runtime_claims_conflict)
{
    char *a_dir = tu_tmpdir("sbx-rtu"), *c_dir = tu_tmpdir("sbx-rtu");
    sbx_error_t err = {0};
    rt_runtime_t *a = open_at(a_dir, NULL, 0, 0, &err);
    ck_assert_msg(a != NULL, "%s", err.msg);
    rt_health_t ha = health_of(a);
    uint32_t inside = ha.uid_start + 65536u;
    ck_assert_ptr_null(open_at(c_dir, NULL, inside, 65536u, &err));
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
    ck_assert_msg(strstr(err.msg, "overlaps") && strstr(err.msg, "running"), "%s", err.msg);
    ck_assert_ptr_null(open_at(c_dir, ha.cgroup_parent, 0, 0, &err));
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
    ck_assert_msg(strstr(err.msg, ha.cgroup_parent), "%s", err.msg);
    /* Down, but its record keeps them.  */
    rt_close(a);
    ck_assert_ptr_null(open_at(c_dir, NULL, inside, 65536u, &err));
    ck_assert_int_eq(err.code, SBX_ERR_CONFLICT);
    ck_assert_msg(strstr(err.msg, "records"), "%s", err.msg);
    /* Gone: free for anyone.  */
    tu_rmdir(a_dir);
    rt_runtime_t *c = open_at(c_dir, ha.cgroup_parent, inside, 65536u, &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    rt_health_t hc = health_of(c);
    ck_assert_uint_eq(hc.uid_start, inside);
    ck_assert_uint_eq(hc.uid_count, 65536u);
    ck_assert_uint_le(hc.slots_total, 1);
    rt_close(c);
    tu_rmdir(c_dir);
    free(a_dir);
    free(c_dir);
}
END_TEST

START_TEST(test_runtime_uid_range_invalid)
{
    char *dir = tu_tmpdir("sbx-rtu");
    const uint32_t bad[][2] = {
        {0x50000000u, 1000},        /* not whole sandboxes */
        {0, 65536},                 /* host root */
        {4096, 65536},              /* the host's own users */
        {0xffff0000u, 65536},       /* would include (uid_t)-1 */
        {0x50000000u, 0},           /* a start with no count */
        {0x40000000u, 16385u << 16} /* more than RT_MAX_SLOTS sandboxes */
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        sbx_error_t err = {0};
        ck_assert_ptr_null(open_at(dir, NULL, bad[i][0], bad[i][1], &err));
        ck_assert_msg(err.code == SBX_ERR_INVALID, "%u+%u: %s", bad[i][0], bad[i][1], err.msg);
    }
    tu_rmdir(dir);
    free(dir);
}
END_TEST

/* A runtime that closes with no sandbox leaves no empty parent cgroup
 * behind (each state dir has a parent of its own, so they would pile up).  */
START_TEST(test_runtime_close_removes_empty_parent)
{
    char *dir = tu_tmpdir("sbx-rtu");
    _cleanup_free_ char *cg = xasprintf("sbxunit-close-%d", (int)getpid());
    rt_config_t cfg = {.state_dir = dir, .cgroup_root = cg};
    sbx_error_t err = {0};
    rt_runtime_t *rt = rt_open(&cfg, &err);
    ck_assert_msg(rt != NULL, "%s", err.msg);
    _cleanup_free_ char *pids = xasprintf("/sys/fs/cgroup/pids/%s", cg);
    ck_assert(mkdir(pids, 0755) == 0 || errno == EEXIST);
    rt_close(rt);
    struct stat st;
    ck_assert_msg(stat(pids, &st) < 0 && errno == ENOENT, "%s is left behind", pids);
    tu_rmdir(dir);
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_runtime_id_valid);
    tcase_add_test(tc, test_runtime_state_names);
    tcase_add_test(tc, test_runtime_open_bad_config);
    tcase_add_test(tc, test_runtime_unknown_sandbox);
    tcase_add_test(tc, test_runtime_close_removes_empty_parent);
    suite_add_tcase(s, tc);
    tc = tcase_create("claims");
    tcase_add_test(tc, test_runtime_claims_disjoint);
    tcase_add_test(tc, test_runtime_claims_kept);
    tcase_add_test(tc, test_runtime_claims_conflict);
    tcase_add_test(tc, test_runtime_uid_range_invalid);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
