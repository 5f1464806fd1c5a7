/* e2b_front.h -- the E2B-compatible API's listener beside the ARM one.  */
#ifndef SBX_SERVER_E2B_FRONT_H
#define SBX_SERVER_E2B_FRONT_H

#include "server/server.h"

typedef struct e2b_front e2b_front_t;

typedef struct e2b_front_config {
    const sbx_config_t *cfg;
    int arm_port;                   /* the ARM listener's port */
    const char *tls_cert, *tls_key; /* PEM contents; NULL: plain HTTP */
    const char *arm_token;          /* NULL: the ARM API takes no token */
    const unsigned char *secret_key;
} e2b_front_config_t;

/* Serve cfg->e2b_listen; NULL with err on failure.  */
e2b_front_t *e2b_front_start(const e2b_front_config_t *fc, sbx_error_t *err);
/* Stopping begins: command streams are cut short.  */
void e2b_front_shutdown_begin(e2b_front_t *f);
/* Stop serving and free (while the ARM listener still answers).  */
void e2b_front_stop(e2b_front_t *f);

#endif
