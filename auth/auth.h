/* auth.h -- who a request comes from and what it may do: JWT bearer tokens
 * (RS256, ES256) from trusted OIDC issuers and from sandboxd's own issuer,
 * whose signing keys it keeps and rotates; role assignments (Reader,
 * Contributor, Owner, Sandbox Executor) at subscription, resource group or
 * sandbox group scope; tokens minted for users, hosts and sandbox
 * identities; and an audit log of one JSON line per mutating request and
 * per token issued.  */
#ifndef SBX_AUTH_H
#define SBX_AUTH_H

#include "common/common.h"
#include "http/http.h"
#include "storage/storage.h"

typedef struct auth auth_t;

/* A trusted external issuer: tokens whose iss is `issuer` verify against
 * the keys at `jwks` (a file, or an http(s) URL; NULL: the jwks_uri of the
 * issuer's /.well-known/openid-configuration).  */
typedef struct auth_issuer_config {
    const char *issuer;
    const char *jwks;
} auth_issuer_config_t;

typedef struct auth_config {
    const char *data_dir; /* keys in DIR/oidc/keys.json, audit in DIR/audit.log */
    /* sandboxd's own issuer URL (iss, and where its discovery document is
     * served).  NULL: the one kept from the first start, or at the first
     * start default_issuer.  */
    const char *issuer_url;
    const char *default_issuer;
    const char *signing_alg; /* of new keys: "RS256" (default) or "ES256" */
    /* A key signs for rotation_s, then verifies for rotation_s more (the
     * overlap); no token it signs outlives it.  0: 30 days.  */
    int64_t rotation_s;
    const auth_issuer_config_t *issuers;
    size_t n_issuers;
    /* Audiences an API token may carry; NULL-terminated; NULL: ARM's
     * (https://management.azure.com/, https://management.core.windows.net/).  */
    const char *const *audiences;
    const char *static_token; /* --auth-token: a fixed token, Contributor everywhere */
    const char *admin_token;
    bool no_auth; /* every request is the anonymous Owner (loopback only) */
    st_db_t *db;  /* role assignments and the tenant id */
} auth_config_t;

auth_t *auth_new(const auth_config_t *cfg, sbx_error_t *err);
void auth_free(auth_t *a);
const char *auth_issuer(const auth_t *a);

typedef enum auth_kind {
    AUTH_NONE,
    AUTH_JWT,    /* a verified token */
    AUTH_STATIC, /* --auth-token */
    AUTH_ADMIN,  /* the admin token */
    AUTH_ANON,   /* --no-auth */
} auth_kind_t;

typedef struct auth_principal {
    auth_kind_t kind;
    char *subject; /* sub; "token", "admin-token" or "anonymous" for the others */
    char *issuer;
    char *object_id; /* oid, NULL when absent */
    char *app_id;    /* appid or azp */
    char *host;      /* a host token's host name (claim "sbx_host") */
    char *name;      /* for systemData: preferred_username, upn, email, or sub */
    json_t *groups;  /* the groups claim (array of strings) or NULL */
} auth_principal_t;
void auth_principal_done(auth_principal_t *p);

/* The principal an Authorization header names, verified for use against
 * the API.  On failure err says why (for WWW-Authenticate).  */
int auth_authenticate(auth_t *a, const char *authorization, auth_principal_t *out,
                      sbx_error_t *err);
/* Whether auth_authenticate would accept it (cached, cheap).  */
bool auth_accepts(auth_t *a, const char *authorization);
/* A stable name for the caller (admission counts per client), or false.  */
bool auth_client_key(auth_t *a, const char *authorization, char *key, size_t size);

/* Reply 401 with WWW-Authenticate for a request that failed
 * auth_authenticate (err from it).  */
void auth_reply_unauthenticated(auth_t *a, const http_request_t *req, const sbx_error_t *err,
                                http_response_t *res);

/* Whether p may make this ARM request; on no, err is 403 AuthorizationFailed.  */
int auth_authorize(auth_t *a, const auth_principal_t *p, const char *method, const char *path,
                   sbx_error_t *err);
/* Whether p holds Owner over scope ("/" for everything).  */
bool auth_is_owner(auth_t *a, const auth_principal_t *p, const char *scope);

/* Public documents: /.well-known/openid-configuration and the JWKS.  True
 * when the path was one of them (res filled).  */
bool auth_handle_public(auth_t *a, const http_request_t *req, http_response_t *res);
/* /admin/roleAssignments, /admin/tokens and /admin/identityTokens; true
 * when the path was one of them (res filled).  p is authenticated.  */
bool auth_handle_admin(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                       http_response_t *res);

/* {scope}/providers/Microsoft.Authorization/{roleAssignments,
 * roleDefinitions}[/{name}] in ARM's shape; true when the path was one
 * of them (res filled).  p is authenticated.  */
bool auth_handle_authorization(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                               http_response_t *res);

/* One audit line for a request that changes something (or tried to).  */
void auth_audit_request(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                        int status);

/* Rotate the signing key when it is due (also done lazily).  */
int auth_rotate_if_due(auth_t *a, sbx_error_t *err);
/* A host token (as POST /admin/tokens {"host": host} makes) living ttl_s
 * seconds at most (and no longer than the key rotation period); *expires
 * is when.  sandboxd gives its local agent one for the identity endpoint.  */
char *auth_host_token(auth_t *a, const char *host, int64_t ttl_s, int64_t *expires,
                      sbx_error_t *err);
/* Rotate now, whatever the age of the key (tests, a suspected leak).  */
int auth_rotate(auth_t *a, sbx_error_t *err);

#endif
