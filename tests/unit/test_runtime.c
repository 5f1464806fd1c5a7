/* test_runtime.c -- the runtime's argument checking, with no sandbox
 * started: ids, state names, configurations, calls on unknown sandboxes.  */
#include <check.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/runtime.h"
#include "tests/testutil.h"

START_TEST(test_runtime_id_valid)
{
    const char *good[] = {"a", "0", "sandbox-1", "a-b-c", "x123456789012345678901234567890123456789012345678901234567890ab"};
    const char *bad[] = {NULL, "", "-a", "A", "a_b", "a.b", "a/b", "..", "a b", "é",
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

static Suite *suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_runtime_id_valid);
    tcase_add_test(tc, test_runtime_state_names);
    tcase_add_test(tc, test_runtime_open_bad_config);
    tcase_add_test(tc, test_runtime_unknown_sandbox);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
