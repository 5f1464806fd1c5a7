/* pki.c -- a private CA for the embedded default: sandboxd signs the local
 * agent's server certificate and its own client certificate, so even the
 * loopback hop is mutually authenticated TLS.  */
#include "scheduler/scheduler.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define VALID_DAYS 825     /* leaf certificates */
#define CA_VALID_DAYS 3650 /* the CA */
#define RENEW_DAYS 30      /* reissue what expires sooner than this */

/* A new file for `path`, 0600 from its creation whatever the umask (the
 * old one, if any, is replaced).  */
static FILE *create_private(const char *path, sbx_error_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST && unlink(path) == 0)
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) < 0) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "create '%s'", path);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        sbx_error_errno(err, SBX_ERR_INTERNAL, "create '%s'", path);
        close(fd);
    }
    return f;
}

static int write_key(const char *path, EVP_PKEY *key, sbx_error_t *err)
{
    FILE *f = create_private(path, err);
    if (!f)
        return -1;
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok ? 0 : sbx_error_set(err, SBX_ERR_INTERNAL, "write '%s'", path);
}

static int write_cert(const char *path, X509 *cert, sbx_error_t *err)
{
    FILE *f = create_private(path, err);
    if (!f)
        return -1;
    int ok = PEM_write_X509(f, cert);
    return fclose(f) == 0 && ok ? 0 : sbx_error_set(err, SBX_ERR_INTERNAL, "write '%s'", path);
}

/* Files an older version wrote with the umask's bits are narrowed.  */
static int narrow_modes(const char *dir, sbx_error_t *err)
{
    static const char *const names[] = {"ca.pem",    "ca.key",     "agent.pem",
                                        "agent.key", "client.pem", "client.key"};
    if (chmod(dir, 0700) < 0)
        return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod '%s'", dir);
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", dir, names[i]);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0777) != 0600 &&
            chmod(p, 0600) < 0)
            return sbx_error_errno(err, SBX_ERR_INTERNAL, "chmod '%s'", p);
    }
    return 0;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate for `key` named `cn`, signed by issuer (self when NULL).  */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca,
                       bool server, bool client)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    unsigned char serial[16];
    FILE *r = fopen("/dev/urandom", "r");
    size_t got = r ? fread(serial, 1, sizeof(serial), r) : 0;
    if (r)
        fclose(r);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, got == sizeof(serial) ? sizeof(serial) : 8, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), (long)(ca ? CA_VALID_DAYS : VALID_DAYS) * 86400);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"sandboxd", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *iss = issuer ? issuer : c;
    X509_set_issuer_name(c, X509_get_subject_name(iss));
    int bad = add_ext(c, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    bad |= add_ext(c, iss, NID_key_usage,
                   ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    bad |= add_ext(c, iss, NID_subject_key_identifier, "hash");
    if (server)
        bad |= add_ext(c, iss, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    if (server || client)
        bad |= add_ext(c, iss, NID_ext_key_usage,
                       server && client ? "serverAuth,clientAuth"
                       : server         ? "serverAuth"
                                        : "clientAuth");
    if (bad || !X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256())) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return c;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* True when the certificate (or the file holding it) will not do for
 * another RENEW_DAYS.  */
static bool expires_soon(X509 *c)
{
    time_t cutoff = time(NULL) + (time_t)RENEW_DAYS * 86400;
    return !c || X509_cmp_time(X509_get0_notAfter(c), &cutoff) < 0;
}

static bool file_expires_soon(const char *path)
{
    X509 *c = read_cert(path);
    bool soon = expires_soon(c);
    X509_free(c);
    return soon;
}

static int issue(const char *dir, const char *name, const char *cn, X509 *ca, EVP_PKEY *ca_key,
                 bool server, bool client, sbx_error_t *err)
{
    _cleanup_free_ char *cert_path = xasprintf("%s/%s.pem", dir, name);
    _cleanup_free_ char *key_path = xasprintf("%s/%s.key", dir, name);
    /* Certificates are renewed at the start that finds them near their end.  */
    if (access(key_path, R_OK) == 0 && !file_expires_soon(cert_path))
        return 0;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = key ? make_cert(key, cn, ca, ca_key, false, server, client) : NULL;
    int ret = cert ? 0 : sbx_error_set(err, SBX_ERR_INTERNAL, "cannot issue '%s'", name);
    if (ret == 0)
        ret = write_key(key_path, key, err);
    if (ret == 0)
        ret = write_cert(cert_path, cert, err);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ret;
}

int sched_pki_ensure(const char *dir, sbx_error_t *err)
{
    if (sbx_mkdir_p(dir, 0700, err) < 0 || narrow_modes(dir, err) < 0)
        return -1;
    _cleanup_free_ char *ca_path = xasprintf("%s/ca.pem", dir);
    _cleanup_free_ char *ca_key_path = xasprintf("%s/ca.key", dir);
    X509 *ca = read_cert(ca_path);
    EVP_PKEY *ca_key = read_key(ca_key_path);
    int ret = 0;
    if (!ca || !ca_key || expires_soon(ca)) {
        X509_free(ca);
        EVP_PKEY_free(ca_key);
        ca_key = EVP_EC_gen("P-256");
        ca = ca_key ? make_cert(ca_key, "sandboxd local CA", NULL, NULL, true, false, false) : NULL;
        if (!ca)
            ret = sbx_error_set(err, SBX_ERR_INTERNAL, "cannot create the local CA");
        if (ret == 0)
            ret = write_key(ca_key_path, ca_key, err);
        if (ret == 0)
            ret = write_cert(ca_path, ca, err);
        /* certificates of an old CA are worthless now */
        _cleanup_free_ char *a = xasprintf("%s/agent.pem", dir);
        _cleanup_free_ char *b = xasprintf("%s/client.pem", dir);
        unlink(a);
        unlink(b);
    }
    if (ret == 0)
        ret = issue(dir, "agent", "sandbox-agent", ca, ca_key, true, false, err);
    if (ret == 0)
        ret = issue(dir, "client", "sandboxd", ca, ca_key, false, true, err);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return ret;
}
