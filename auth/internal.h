/* internal.h -- declarations shared by the files of the auth module only.  */
#ifndef SBX_AUTH_INTERNAL_H
#define SBX_AUTH_INTERNAL_H

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <pthread.h>

#include "auth/auth.h"

#define MODULE_NAME "auth"
#define AUTH_SKEW_S 60       /* clock skew allowed on exp and nbf */
#define AUTH_MAX_TOKEN 16384 /* longest Authorization header looked at */
#define AUTH_DEFAULT_ROTATION_S (30 * 86400)
#define AUTH_JWKS_REFRESH_S 900 /* external key sets are read again this often */
#define AUTH_JWKS_REFETCH_S 30  /* an unknown kid refetches at most this often */
#define AUTH_HOST_AUDIENCE_PATH "/hosts"
#define AUTH_DEV_SUBJECT "dev"
#define AUTH_IDENTITY_TTL_S 3600
#define AUTH_CACHE_SLOTS 256
#define AUTH_CACHE_TTL_MS 60000

/* jwt.c */
typedef struct jwt {
    json_t *header, *claims;
    unsigned char *sig;
    size_t sig_len;
    size_t signed_len; /* the "header.claims" prefix of the token */
} jwt_t;
char *jwt_b64url_encode(const unsigned char *in, size_t n);
unsigned char *jwt_b64url_decode(const char *in, size_t n, size_t *out_len);
int jwt_parse(const char *token, jwt_t *out, sbx_error_t *err);
void jwt_done(jwt_t *j);
/* The public JWK (with kid = its RFC 7638 thumbprint, use, alg).  */
json_t *jwt_jwk_public(EVP_PKEY *key, char **kid_out);
/* A public key from a JWK; *alg_out is the algorithm it serves.  */
EVP_PKEY *jwt_jwk_import(const json_t *jwk, const char **alg_out);
EVP_PKEY *jwt_key_generate(const char *alg);
bool jwt_verify_sig(EVP_PKEY *key, const char *alg, const char *signed_part, size_t n,
                    const unsigned char *sig, size_t sig_len);
char *jwt_sign(EVP_PKEY *key, const char *kid, const json_t *claims, sbx_error_t *err);

/* A verification key of an issuer.  */
typedef struct auth_key {
    char *kid;
    const char *alg;
    EVP_PKEY *pkey;
    /* own keys: the private key, and when it stops signing and verifying */
    int64_t created, sign_until, verify_until;
} auth_key_t;

typedef struct auth_keyset {
    auth_key_t *keys;
    size_t n;
} auth_keyset_t;
void auth_keyset_done(auth_keyset_t *s);
const auth_key_t *auth_keyset_find(const auth_keyset_t *s, const char *kid);

/* An external issuer and its cached keys.  */
typedef struct auth_issuer {
    char *issuer, *jwks;
    auth_keyset_t keys;
    int64_t fetched_ms, tried_ms;
} auth_issuer_t;

typedef struct auth_cache_slot {
    unsigned char hash[32];
    int64_t until_ms; /* 0: empty */
    auth_principal_t p;
} auth_cache_slot_t;

struct auth {
    auth_config_t cfg;
    char *data_dir, *issuer, *host_audience, *tenant_id;
    char **audiences;
    size_t n_audiences;
    char *static_token, *admin_token;
    int64_t rotation_s;
    char *signing_alg;
    pthread_mutex_t lock; /* own keys, external issuers, role assignments */
    auth_keyset_t own;    /* newest last */
    auth_issuer_t *issuers;
    size_t n_issuers;
    json_t *assignments; /* array, as stored */
    bool rotated;        /* a key was added since the dev token was written */
    pthread_mutex_t cache_lock;
    auth_cache_slot_t cache[AUTH_CACHE_SLOTS];
    pthread_mutex_t audit_lock;
    int audit_fd;
};

/* keys.c: sandboxd's own signing keys */
int keys_load(auth_t *a, sbx_error_t *err);
/* Under a->lock: rotate when due (or when force), and drop expired keys.  */
int keys_maintain_locked(auth_t *a, bool force, sbx_error_t *err);
/* Sign claims with the current key (takes a->lock).  */
char *keys_sign(auth_t *a, const json_t *claims, sbx_error_t *err);
json_t *keys_jwks(auth_t *a);
/* Write DIR/dev-token unless the one there still verifies for long enough.  */
int keys_dev_token(auth_t *a, sbx_error_t *err);

/* issuers.c: external issuers' key sets */
void issuers_init(auth_t *a);
void issuers_done(auth_t *a);
/* The key of kid for an external issuer, fetched if needed; under
 * a->lock, returns a new reference (EVP_PKEY_up_ref) or NULL.  */
EVP_PKEY *issuers_key_locked(auth_t *a, const char *iss, const char *kid, const char **alg,
                             sbx_error_t *err);
bool issuers_known(const auth_t *a, const char *iss);

/* verify.c */
/* Verify a compact token for one of the audiences (NULL-terminated).  */
int verify_token(auth_t *a, const char *token, const char *const *audiences, auth_principal_t *out,
                 sbx_error_t *err);
void principal_copy(auth_principal_t *dst, const auth_principal_t *src);

/* roles.c */
int roles_load(auth_t *a, sbx_error_t *err);
/* Ensure the dev subject is Contributor at "/" (first start).  */
int roles_ensure_dev(auth_t *a, sbx_error_t *err);
void roles_admin(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                 http_response_t *res, const char *name);
/* For roles_arm.c: the assignments (a JSON array of {name, principalId,
 * principalIssuer?, principalType?, roleDefinitionName, scope}) live in
 * a->assignments, read and replaced under a->lock.  */
#define ROLES_MAX_ASSIGNMENTS 10000
const char *roles_canonical(const char *role_name); /* NULL: no such role */
bool roles_scope_valid(const char *scope);
/* Whether scope is outer or under it (path segments, any case).  */
bool roles_scope_within(const char *scope, const char *outer);
json_t *roles_find(json_t *arr, const char *name, size_t *at);
int roles_save_locked(auth_t *a, json_t *next, sbx_error_t *err);
bool roles_is_owner_locked(auth_t *a, const auth_principal_t *p, const char *scope);
bool roles_may_read_locked(auth_t *a, const auth_principal_t *p, const char *scope);

/* roles_arm.c: {scope}/providers/Microsoft.Authorization/roleAssignments
 * and roleDefinitions, ARM's own shapes over the same assignments.  */
void roles_arm_handle(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                      http_response_t *res, const char *scope, const char *rest);

/* identity.c: tokens for sandboxes' identities */
void identity_token_handle(auth_t *a, const auth_principal_t *p, const http_request_t *req,
                           http_response_t *res);

/* audit.c */
int audit_open(auth_t *a, sbx_error_t *err);
void audit_close(auth_t *a);
/* Write one line (takes a reference to nothing; adds "time").  */
void audit_write(auth_t *a, json_t *line);
void audit_token(auth_t *a, const char *kind, const json_t *claims, const char *requester);

#endif
