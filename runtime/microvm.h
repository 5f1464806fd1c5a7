/* microvm.h -- the microvm driver's private parts: microvm.c runs the VM,
 * microvm_agent.c speaks to the guest agent (guest/agent.c) inside it.  */
#ifndef SBX_RUNTIME_MICROVM_H
#define SBX_RUNTIME_MICROVM_H

#include "runtime/driver.h"

/* In each sandbox's directory: the socket QEMU listens on for the guest
 * agent's virtio-serial port.  */
#define MV_AGENT_SOCK "agent.sock"
/* ... and for its monitor (QMP), used for memory snapshots.  */
#define MV_QMP_SOCK "qmp.sock"
/* A suspended VM's memory and device state.  */
#define MV_SNAPSHOT "snapshot.mem"
/* Bounds on what the guest may send back (base64 inflates by 4/3).  */
#define MV_FILE_MAX (32u << 20)
#define MV_OUTPUT_CAP_MAX (16u << 20)
#define MV_FRAME_MAX (48u << 20)
/* How long a request may wait past its own timeout (a loaded emulated
 * guest is slow), and for requests without one.  */
#define MV_REQUEST_SLACK_MS 30000

/* One request to the guest agent of the VM whose directory is dirfd (an
 * O_PATH fd): connect to its socket, send req, wait until deadline
 * (monotonic ms) for a reply of at most reply_max bytes that is a JSON
 * object.  The reply is validated as JSON only; its members are the
 * caller's to check.  SBX_ERR_CONFLICT when the VM is not there.  */
int mv_agent_call(int dirfd, json_t *req, size_t reply_max, int64_t deadline, json_t **reply,
                  sbx_error_t *err);

/* A reply with "ok": false, turned into an error for `op` on `path`.  */
int mv_agent_error(json_t *reply, const char *op, const char *path, sbx_error_t *err);

/* exec through the guest agent; called with sb->lock held for reading,
 * which it releases once the request is on its way.  */
int mv_exec(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_exec_request_t *req, rt_exec_result_t *out,
            sbx_error_t *err);

extern const rt_driver_files_t mv_files;

/* QMP (microvm_qmp.c): a connection to the monitor of the VM whose
 * directory is dirfd, capabilities negotiated.  */
typedef struct mv_qmp mv_qmp_t;
mv_qmp_t *mv_qmp_open(int dirfd, int64_t deadline, sbx_error_t *err);
void mv_qmp_close(mv_qmp_t *q);
/* Run cmd with args (stolen; may be NULL), passing pass_fd (>= 0) along
 * with it; its "return" value (the caller's reference).  */
json_t *mv_qmp_cmd(mv_qmp_t *q, const char *cmd, json_t *args, int pass_fd, int64_t deadline,
                   sbx_error_t *err);
/* The string member key of cmd's reply (query-status "status" ...).  */
int mv_qmp_query(mv_qmp_t *q, const char *cmd, const char *key, char *out, size_t len,
                 int64_t deadline, sbx_error_t *err);

/* The VM's network (microvm_net.c): its namespace, kept at <dir>/netns
 * across QEMU's restarts, and the tap of its virtio-net card in it.  */
/* The namespace (made on first use) and tap0 opened for QEMU.  */
int mv_net_prepare(rt_sandbox_t *sb, int *nsfd, int *tap_fd, sbx_error_t *err);
/* The namespace and everything in it go (destroy).  */
void mv_net_remove(rt_sandbox_t *sb);
int mv_netns_open(rt_runtime_t *rt, rt_sandbox_t *sb, sbx_error_t *err);
int mv_net_changed(rt_runtime_t *rt, rt_sandbox_t *sb, const rt_net_link_t *link, sbx_error_t *err);
/* After a boot (fresh) or a resume: the guest is told the link it has,
 * if it does not know it yet.  */
void mv_net_boot(rt_runtime_t *rt, rt_sandbox_t *sb, bool fresh);

#endif
