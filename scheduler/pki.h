/* pki.h -- the local CA of the embedded default (scheduler-internal).  */
#ifndef SBX_SCHEDULER_PKI_H
#define SBX_SCHEDULER_PKI_H

#include <errno.h>

#include "common/common.h"

/* Make sure dir holds ca.pem/ca.key, agent.pem/agent.key (server, for
 * 127.0.0.1) and client.pem/client.key (sandboxd's), all EC P-256.  */
int pki_ensure(const char *dir, sbx_error_t *err);

#endif
