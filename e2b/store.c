/* store.c -- what E2B knows of a sandbox and ARM does not (its template,
 * metadata, autoPause): one small JSON file a sandbox in the adapter's
 * state directory, written at create and removed at kill.  */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "e2b/internal.h"

static char *meta_path(const e2b_t *e, const char *id)
{
    _cleanup_free_ char *lower = xstrdup(id);
    sbx_str_lower(lower);
    return xasprintf("%s/%s.json", e->state_dir, lower);
}

int e2b_meta_put(e2b_t *e, const char *id, const json_t *meta, sbx_error_t *err)
{
    if (!e2b_id_valid(id))
        return sbx_error_set(err, SBX_ERR_INVALID, "bad sandbox id");
    _cleanup_free_ char *path = meta_path(e, id);
    _cleanup_free_ char *js = json_dumps(meta, JSON_COMPACT);
    return sbx_write_file_atomic(path, js, strlen(js), 0600, err);
}

json_t *e2b_meta_get(const e2b_t *e, const char *id)
{
    if (!id || !e2b_id_valid(id))
        return NULL;
    _cleanup_free_ char *path = meta_path(e, id);
    return json_load_file(path, 0, NULL);
}

void e2b_meta_delete(const e2b_t *e, const char *id)
{
    if (!e2b_id_valid(id))
        return;
    _cleanup_free_ char *path = meta_path(e, id);
    unlink(path);
}

/* Files of sandboxes ARM no longer has (deleted through ARM, or past their
 * lifetime) go; `live` is the group's sandboxes.  A file younger than a
 * minute stays: its sandbox may be one being created after `live` was
 * read.  */
void e2b_meta_prune(const e2b_t *e, const json_t *live)
{
    DIR *d = opendir(e->state_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        bool found = false;
        size_t i;
        json_t *sb;
        json_array_foreach(live, i, sb)
        {
            const char *name = json_string_value(json_object_get(sb, "name"));
            if (name && strlen(name) == n - 5 && strncasecmp(name, de->d_name, n - 5) == 0)
                found = true;
        }
        struct stat st;
        if (!found && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_mtime < time(NULL) - 60)
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}
