/* main.c -- the sandboxd executable.  */
#include <stdio.h>
#include <sys/stat.h>

#include "server/server.h"

int main(int argc, char **argv)
{
    /* Whatever sandboxd writes (database, keys, tokens) is the owner's
     * alone, even where a mode is not given explicitly.  */
    umask(077);
    sbx_config_t cfg;
    sbx_error_t err = {0};
    int r = sbx_config_parse(&cfg, argc, argv, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "sandboxd: %s\n", err.msg);
        sbx_config_done(&cfg);
        return r < 0 ? 2 : 0;
    }
    int code = sbx_server_run(&cfg);
    sbx_config_done(&cfg);
    return code;
}
