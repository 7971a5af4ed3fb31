/*
 * TLS configuration and context (include/duplex/tls.h): a builder that
 * keeps copies of the options, and an immutable, reference-counted
 * SSL_CTX built from them with every option checked.
 */
#include "config.h"

#include <pthread.h>

#include <duplex/tls.h>

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/store.h>
#include <openssl/ui.h>
#include <openssl/x509.h>

#include "alloc.h"
#include "errors.h"
#include "tls_internal.h"

/* An error object, or the shared out-of-memory one when there was no
 * memory to make it: never NULL. */
static dx_error *or_oom(dx_error *e)
{
    return e ? e : (dx_error *)dx_error_oom();
}

/* The out-of-memory error, for OpenSSL objects that could not be made. */
static dx_error *oom(void)
{
    ERR_clear_error();
    return (dx_error *)dx_error_oom();
}

/* ---- the configuration ---------------------------------------------------- */

typedef enum item_kind {
    ITEM_CA, ITEM_CA_FILE, ITEM_CRL, ITEM_CRL_FILE,
    ITEM_CERT, ITEM_CERT_FILE, ITEM_CERT_URI, ITEM_PFX, ITEM_PFX_FILE
} item_kind;

/* The option each kind of item stands for, and whether a holds a path. */
static const struct {
    const char *option;
    bool file;
} kinds[] = {
    [ITEM_CA] = {"ca", false},         [ITEM_CA_FILE] = {"ca", true},
    [ITEM_CRL] = {"crl", false},       [ITEM_CRL_FILE] = {"crl", true},
    [ITEM_CERT] = {"cert", false},     [ITEM_CERT_FILE] = {"cert", true},
    [ITEM_CERT_URI] = {"cert", false}, [ITEM_PFX] = {"pfx", false},
    [ITEM_PFX_FILE] = {"pfx", true},
};

typedef struct item {
    struct item *next;
    item_kind kind;
    char *a, *b; /* a: the data or its path; b: the key, its path or URI */
    size_t alen, blen;
    char *passphrase;
} item;

struct dx_tls_config {
    item *items, *last;
    char *ciphers, *ciphersuites, *sigalgs, *groups;
    char *min_version, *max_version;   /* set on this configuration */
    char *default_min, *default_max;   /* the process defaults, copied */
    char *secure_protocol;
    char *dhparam;
    size_t dhparam_len;
    bool honor_cipher_order, partial_chain, system_trust;
    uint64_t secure_options;
    uint8_t sid_ctx[SSL_MAX_SID_CTX_LENGTH];
    size_t sid_ctx_len;
    unsigned session_timeout;
    bool verify_set, request_cert, reject_unauthorized;
};

int dx_tls_config_new(dx_tls_config **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    dx_tls_config *cfg = dx_calloc(1, sizeof(*cfg));
    dx_tls_defaults d;
    if (!cfg || dx_tls_defaults_copy(&d) != 0) {
        dx_free(cfg);
        return DX_ENOMEM;
    }
    cfg->ciphers = d.ciphers;
    cfg->groups = d.groups;
    cfg->default_min = d.min_version;
    cfg->default_max = d.max_version;
    cfg->honor_cipher_order = true;
    cfg->session_timeout = DX_TLS_DEFAULT_SESSION_TIMEOUT;
    dx_live_inc();
    *out = cfg;
    return 0;
}

/* Frees text that may hold secrets, clearing it first. */
static void free_secret(char *p, size_t len)
{
    if (p) {
        OPENSSL_cleanse(p, len);
        dx_free(p);
    }
}

void dx_tls_config_free(dx_tls_config *cfg)
{
    if (!cfg)
        return;
    for (item *it = cfg->items, *next; it; it = next) {
        next = it->next;
        free_secret(it->a, it->alen);
        free_secret(it->b, it->blen);
        if (it->passphrase)
            free_secret(it->passphrase, strlen(it->passphrase));
        dx_free(it);
    }
    dx_free(cfg->ciphers);
    dx_free(cfg->ciphersuites);
    dx_free(cfg->sigalgs);
    dx_free(cfg->groups);
    dx_free(cfg->min_version);
    dx_free(cfg->max_version);
    dx_free(cfg->default_min);
    dx_free(cfg->default_max);
    dx_free(cfg->secure_protocol);
    dx_free(cfg->dhparam);
    dx_free(cfg);
    dx_live_dec();
}

/* A NUL-terminated copy of len bytes. */
static char *copy_bytes(const void *p, size_t len)
{
    char *c = dx_malloc(len + 1);
    if (c) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

static int add_item(dx_tls_config *cfg, item_kind kind, const void *a,
                    size_t alen, const void *b, size_t blen, const char *pass)
{
    item *it = dx_calloc(1, sizeof(*it));
    if (!it)
        return DX_ENOMEM;
    it->kind = kind;
    it->a = copy_bytes(a, alen);
    it->alen = alen;
    if (b) {
        it->b = copy_bytes(b, blen);
        it->blen = blen;
    }
    if (pass)
        it->passphrase = dx_strdup(pass);
    if (!it->a || (b && !it->b) || (pass && !it->passphrase)) {
        free_secret(it->a, it->alen);
        free_secret(it->b, it->blen);
        dx_free(it->passphrase);
        dx_free(it);
        return DX_ENOMEM;
    }
    if (cfg->last)
        cfg->last->next = it;
    else
        cfg->items = it;
    cfg->last = it;
    return 0;
}

int dx_tls_config_add_ca(dx_tls_config *cfg, const void *pem, size_t len)
{
    if (!cfg || !pem || !len)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CA, pem, len, NULL, 0, NULL);
}

int dx_tls_config_add_ca_file(dx_tls_config *cfg, const char *path)
{
    if (!cfg || !path || !*path)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CA_FILE, path, strlen(path), NULL, 0, NULL);
}

int dx_tls_config_add_cert(dx_tls_config *cfg, const void *chain,
                           size_t chain_len, const void *key, size_t key_len,
                           const char *passphrase)
{
    if (!cfg || !chain || !chain_len || !key || !key_len)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CERT, chain, chain_len, key, key_len, passphrase);
}

int dx_tls_config_add_cert_file(dx_tls_config *cfg, const char *chain_path,
                                const char *key_path, const char *passphrase)
{
    if (!cfg || !chain_path || !*chain_path || !key_path || !*key_path)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CERT_FILE, chain_path, strlen(chain_path),
                    key_path, strlen(key_path), passphrase);
}

int dx_tls_config_add_cert_uri(dx_tls_config *cfg, const void *chain,
                               size_t chain_len, const char *key_uri,
                               const char *passphrase)
{
    if (!cfg || !chain || !chain_len || !key_uri || !*key_uri)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CERT_URI, chain, chain_len, key_uri,
                    strlen(key_uri), passphrase);
}

int dx_tls_config_add_pfx(dx_tls_config *cfg, const void *data, size_t len,
                          const char *passphrase)
{
    if (!cfg || !data || !len)
        return DX_EINVAL;
    return add_item(cfg, ITEM_PFX, data, len, NULL, 0, passphrase);
}

int dx_tls_config_add_pfx_file(dx_tls_config *cfg, const char *path,
                               const char *passphrase)
{
    if (!cfg || !path || !*path)
        return DX_EINVAL;
    return add_item(cfg, ITEM_PFX_FILE, path, strlen(path), NULL, 0, passphrase);
}

int dx_tls_config_add_crl(dx_tls_config *cfg, const void *pem, size_t len)
{
    if (!cfg || !pem || !len)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CRL, pem, len, NULL, 0, NULL);
}

int dx_tls_config_add_crl_file(dx_tls_config *cfg, const char *path)
{
    if (!cfg || !path || !*path)
        return DX_EINVAL;
    return add_item(cfg, ITEM_CRL_FILE, path, strlen(path), NULL, 0, NULL);
}

int dx_tls_config_set_system_trust(dx_tls_config *cfg, bool also)
{
    if (!cfg)
        return DX_EINVAL;
    cfg->system_trust = also;
    return 0;
}

int dx_tls_config_set_allow_partial_trust_chain(dx_tls_config *cfg, bool allow)
{
    if (!cfg)
        return DX_EINVAL;
    cfg->partial_chain = allow;
    return 0;
}

int dx_tls_config_set_dhparam(dx_tls_config *cfg, const void *pem, size_t len)
{
    if (!cfg || !pem || !len)
        return DX_EINVAL;
    char *c = copy_bytes(pem, len);
    if (!c)
        return DX_ENOMEM;
    dx_free(cfg->dhparam);
    cfg->dhparam = c;
    cfg->dhparam_len = len;
    return 0;
}

static int set_text(dx_tls_config *cfg, char **slot, const char *text)
{
    if (!cfg || !text)
        return DX_EINVAL;
    char *c = dx_strdup(text);
    if (!c)
        return DX_ENOMEM;
    dx_free(*slot);
    *slot = c;
    return 0;
}

int dx_tls_config_set_ciphers(dx_tls_config *cfg, const char *list)
{
    return set_text(cfg, cfg ? &cfg->ciphers : NULL, list);
}

int dx_tls_config_set_ciphersuites(dx_tls_config *cfg, const char *list)
{
    return set_text(cfg, cfg ? &cfg->ciphersuites : NULL, list);
}

int dx_tls_config_set_sigalgs(dx_tls_config *cfg, const char *list)
{
    return set_text(cfg, cfg ? &cfg->sigalgs : NULL, list);
}

int dx_tls_config_set_groups(dx_tls_config *cfg, const char *list)
{
    return set_text(cfg, cfg ? &cfg->groups : NULL, list);
}

int dx_tls_config_set_min_version(dx_tls_config *cfg, const char *version)
{
    return set_text(cfg, cfg ? &cfg->min_version : NULL, version);
}

int dx_tls_config_set_max_version(dx_tls_config *cfg, const char *version)
{
    return set_text(cfg, cfg ? &cfg->max_version : NULL, version);
}

int dx_tls_config_set_secure_protocol(dx_tls_config *cfg, const char *method)
{
    return set_text(cfg, cfg ? &cfg->secure_protocol : NULL, method);
}

int dx_tls_config_set_honor_cipher_order(dx_tls_config *cfg, bool honor)
{
    if (!cfg)
        return DX_EINVAL;
    cfg->honor_cipher_order = honor;
    return 0;
}

int dx_tls_config_set_secure_options(dx_tls_config *cfg, uint64_t options)
{
    if (!cfg)
        return DX_EINVAL;
    cfg->secure_options = options;
    return 0;
}

int dx_tls_config_set_session_id_context(dx_tls_config *cfg, const void *id,
                                         size_t len)
{
    if (!cfg || !id || len == 0 || len > sizeof(cfg->sid_ctx))
        return DX_EINVAL;
    memcpy(cfg->sid_ctx, id, len);
    cfg->sid_ctx_len = len;
    return 0;
}

int dx_tls_config_set_request_cert(dx_tls_config *cfg, bool request, bool reject_unauthorized)
{
    if (!cfg)
        return DX_EINVAL;
    cfg->verify_set = true;
    cfg->request_cert = request;
    cfg->reject_unauthorized = reject_unauthorized;
    return 0;
}

int dx_tls_config_set_session_timeout(dx_tls_config *cfg, unsigned seconds)
{
    if (!cfg || seconds == 0 || seconds > 0x7fffffffu)
        return DX_EINVAL;
    cfg->session_timeout = seconds;
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

/* Node's code for an OpenSSL error: ERR_OSSL_<LIB>_<REASON>, or
 * ERR_SSL_<REASON> for the SSL library. */
/* The short name of an OpenSSL library, as in its ERR_LIB_ macro. */
static const char *lib_name(int lib)
{
    static const struct {
        int lib;
        const char *name;
    } names[] = {
        {ERR_LIB_X509, "X509"},     {ERR_LIB_X509V3, "X509V3"},
        {ERR_LIB_PEM, "PEM"},       {ERR_LIB_ASN1, "ASN1"},
        {ERR_LIB_EVP, "EVP"},       {ERR_LIB_RSA, "RSA"},
        {ERR_LIB_EC, "EC"},         {ERR_LIB_BIO, "BIO"},
        {ERR_LIB_PKCS12, "PKCS12"}, {ERR_LIB_PKCS7, "PKCS7"},
        {ERR_LIB_CRYPTO, "CRYPTO"}, {ERR_LIB_PROV, "PROV"},
        {ERR_LIB_OSSL_DECODER, "OSSL_DECODER"},
        {ERR_LIB_OSSL_STORE, "OSSL_STORE"}, {ERR_LIB_DH, "DH"},
        {ERR_LIB_BN, "BN"},         {ERR_LIB_OCSP, "OCSP"},
        {ERR_LIB_SYS, "SYS"},       {ERR_LIB_UI, "UI"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i].lib == lib)
            return names[i].name;
    return "UNKNOWN";
}

/* The reason text of an OpenSSL error; for a failed system call, which
 * OpenSSL records by its errno, the system's text. NULL if there is none. */
static const char *reason_of(unsigned long e)
{
    const char *reason = ERR_reason_error_string(e);
    if (!reason && ERR_SYSTEM_ERROR(e))
        reason = strerror(ERR_GET_REASON(e));
    return reason;
}

void dx_tls_openssl_code(unsigned long e, char *out, size_t size)
{
    const char *reason = reason_of(e);
    char raw[160];
    if (!reason) {
        snprintf(out, size, "ERR_OSSL_UNKNOWN");
        return;
    }
    if (ERR_GET_LIB(e) == ERR_LIB_SSL)
        snprintf(raw, sizeof(raw), "ERR_SSL_%s", reason);
    else
        snprintf(raw, sizeof(raw), "ERR_OSSL_%s_%s", lib_name(ERR_GET_LIB(e)), reason);
    size_t i = 0;
    for (; raw[i] && i + 1 < size; i++) {
        char ch = raw[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            ch = '_';
        out[i] = ch;
    }
    out[i] = '\0';
}

dx_error *dx_tls_error_openssl(const char *option, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    dx_error *err;
    if (e) {
        char name[64], text[256];
        dx_tls_openssl_code(e, name, sizeof(name));
        const char *reason = reason_of(e);
        err = dx_error_new(DX_ETLS, name, "tls", "%s: %s", option,
                           reason ? reason : fallback);
        ERR_error_string_n(e, text, sizeof(text));
        dx_error_set_detail(err, "%s", text);
    } else {
        err = dx_error_new(DX_ETLS, "ERR_TLS_INVALID_OPTION", "tls", "%s: %s",
                           option, fallback);
    }
    ERR_clear_error();
    return or_oom(err);
}

/* ---- building the context -------------------------------------------------- */

struct dx_tls_ctx {
    atomic_uint refs;
    SSL_CTX *ssl;
    bool honor_cipher_order;
    bool verify_set, request_cert, reject_unauthorized;
    /* the session id contexts of connections that verify clients: [0]
     * those that let unverified clients through, [1] those that refuse
     * them */
    uint8_t auth_sid[2][SSL_MAX_SID_CTX_LENGTH];
    uint8_t sid[SSL_MAX_SID_CTX_LENGTH];
    size_t sid_len;
    /* The client session last made from bytes (dx_tls_set_session()):
     * the bytes and the session, which no connection holds (each gets a
     * copy of it). Decoding a session, its certificate above all, costs a
     * third of the resumed handshake it is for, and clients resume many
     * connections from the same bytes. */
    pthread_mutex_t sess_lock; /* the session below, and the key log switch */
    atomic_bool keylog;        /* the key log callback is installed */
    uint8_t *sess_der;
    size_t sess_len;
    SSL_SESSION *sess;
};

SSL_CTX *dx_tls_ctx_ssl(const dx_tls_ctx *ctx) { return ctx->ssl; }

static const struct {
    const char *name;
    int v;
} versions[] = {{"TLSv1", TLS1_VERSION},
                {"TLSv1.1", TLS1_1_VERSION},
                {"TLSv1.2", TLS1_2_VERSION},
                {"TLSv1.3", TLS1_3_VERSION}};

static int version_of(const char *name)
{
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
        if (strcmp(name, versions[i].name) == 0)
            return versions[i].v;
    return 0;
}

static const char *version_name(int v)
{
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++)
        if (versions[i].v == v)
            return versions[i].name;
    return "the lowest version";
}

/* The SSL method and the version range a context is made with. */
typedef struct protocol {
    const SSL_METHOD *method;
    int min, max; /* 0 for min: the lowest OpenSSL allows */
} protocol;

/* "secureProtocol: <reason><name>", as Node words it. */
static dx_error *method_error(const char *reason, const char *name)
{
    return or_oom(dx_error_new(DX_ETLS, "ERR_TLS_INVALID_PROTOCOL_METHOD",
                               "tls", "secureProtocol: %s%s", reason, name));
}

/* Node's secureProtocol: an OpenSSL method name, mapped to TLS_method (or
 * its server or client form) and a version range. */
static dx_error *secure_protocol(const char *name, protocol *p)
{
    static const struct {
        const char *suffix;
        const SSL_METHOD *(*method)(void);
    } roles[] = {{"_server_method", TLS_server_method},
                 {"_client_method", TLS_client_method},
                 {"_method", TLS_method}};
    static const struct {
        const char *base;
        int min, max; /* min -1: keep the configured minimum */
    } bases[] = {{"TLS", 0, TLS1_3_VERSION},
                 {"SSLv23", -1, TLS1_2_VERSION},
                 {"TLSv1", TLS1_VERSION, TLS1_VERSION},
                 {"TLSv1_1", TLS1_1_VERSION, TLS1_1_VERSION},
                 {"TLSv1_2", TLS1_2_VERSION, TLS1_2_VERSION},
                 {"TLSv1_3", TLS1_3_VERSION, TLS1_3_VERSION}};
    size_t n = strlen(name), base_len = 0;
    const SSL_METHOD *method = NULL;
    for (size_t i = 0; !method && i < sizeof(roles) / sizeof(roles[0]); i++) {
        size_t k = strlen(roles[i].suffix);
        if (n > k && strcmp(name + n - k, roles[i].suffix) == 0) {
            method = roles[i].method();
            base_len = n - k;
        }
    }
    if (method && base_len == 5 && strncmp(name, "SSLv2", 5) == 0)
        return method_error("SSLv2 methods disabled", "");
    if (method && base_len == 5 && strncmp(name, "SSLv3", 5) == 0)
        return method_error("SSLv3 methods disabled", "");
    for (size_t i = 0; method && i < sizeof(bases) / sizeof(bases[0]); i++) {
        if (strlen(bases[i].base) == base_len &&
            strncmp(name, bases[i].base, base_len) == 0) {
            p->method = method;
            if (bases[i].min >= 0)
                p->min = bases[i].min;
            p->max = bases[i].max;
            return NULL;
        }
    }
    return method_error("Unknown method: ", name);
}

/* The method and versions of cfg: its own minimum and maximum, or the
 * process defaults it copied, or its secureProtocol. */
static dx_error *resolve_protocol(const dx_tls_config *cfg, protocol *p)
{
    const char *minv = cfg->min_version ? cfg->min_version : cfg->default_min;
    const char *maxv = cfg->max_version ? cfg->max_version : cfg->default_max;
    if (cfg->secure_protocol && (cfg->min_version || cfg->max_version))
        return or_oom(dx_error_new(
            DX_ETLS, "ERR_TLS_PROTOCOL_VERSION_CONFLICT", "tls",
            "secureProtocol: \"%s\" conflicts with %s \"%s\"",
            cfg->secure_protocol, cfg->min_version ? "minVersion" : "maxVersion",
            cfg->min_version ? cfg->min_version : cfg->max_version));
    p->method = TLS_method();
    p->min = version_of(minv);
    p->max = version_of(maxv);
    if (!p->min || !p->max)
        return or_oom(dx_error_new(
            DX_ETLS, "ERR_TLS_INVALID_PROTOCOL_VERSION", "tls",
            "%s: \"%s\" is not a supported TLS protocol version",
            p->min ? "maxVersion" : "minVersion", p->min ? maxv : minv));
    if (cfg->secure_protocol) {
        dx_error *err = secure_protocol(cfg->secure_protocol, p);
        if (err)
            return err;
    }
    if (p->min > p->max)
        return or_oom(dx_error_new(DX_ETLS, "ERR_TLS_PROTOCOL_VERSION_CONFLICT",
                                   "tls", "minVersion: %s is above maxVersion %s",
                                   version_name(p->min), version_name(p->max)));
    return NULL;
}

/* Splits Node's single cipher list: TLS_* names are TLS 1.3 suites. */
static int split_ciphers(const char *list, char **legacy, char **suites)
{
    size_t n = strlen(list) + 1;
    *legacy = dx_calloc(1, n);
    *suites = dx_calloc(1, n);
    char *copy = dx_strdup(list);
    if (!*legacy || !*suites || !copy) {
        dx_free(*legacy);
        dx_free(*suites);
        dx_free(copy);
        return DX_ENOMEM;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        char *dst = strncmp(tok, "TLS_", 4) == 0 ? *suites : *legacy;
        if (*dst)
            strcat(dst, ":");
        strcat(dst, tok);
    }
    dx_free(copy);
    return 0;
}

/* Asks for no passphrase on a terminal, ever: the given one or none. */
static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pass = u;
    if (!pass)
        return -1;
    size_t n = strlen(pass);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pass, n);
    return (int)n;
}

/* Reads a whole file into memory; NULL (errno set) on failure. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > ((size_t)64 << 20)) {
                dx_free(buf);
                fclose(f);
                return NULL;
            }
            char *nb = dx_realloc(buf, cap ? cap * 2 : 4096);
            if (!nb) {
                dx_free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap = cap ? cap * 2 : 4096;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        dx_free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static dx_error *file_error(const char *option, const char *path)
{
    return or_oom(dx_error_new(DX_ETLS, "ERR_TLS_FILE", "tls",
                               "%s: cannot read %s", option, path));
}

/* After a loop of PEM reads: the data ended cleanly (OpenSSL found no
 * further start line), or the error that stopped it. */
static dx_error *pem_end(const char *option)
{
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return NULL;
    }
    return dx_tls_error_openssl(option, "damaged PEM data");
}

/* Reads a chain: PEM certificates, leaf first, or one DER certificate. */
static dx_error *parse_chain(const char *data, size_t len, X509 **leaf,
                             STACK_OF(X509) **chain)
{
    *leaf = NULL;
    *chain = NULL;
    BIO *b = BIO_new_mem_buf(data, (int)len);
    if (!b)
        return oom();
    dx_error *err = NULL;
    *leaf = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!*leaf) {
        const unsigned char *p = (const unsigned char *)data;
        ERR_clear_error();
        *leaf = d2i_X509(NULL, &p, (long)len);
        if (!*leaf)
            err = dx_tls_error_openssl("cert", "no certificate found");
    } else if (!(*chain = sk_X509_new_null())) {
        err = oom();
    } else {
        X509 *x;
        while (!err && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (!sk_X509_push(*chain, x)) {
                X509_free(x);
                err = oom();
            }
        }
        if (!err)
            err = pem_end("cert");
    }
    BIO_free(b);
    return err;
}

/* Decodes a private key, PEM or DER, encrypted or not. */
static dx_error *decode_key(const char *data, size_t len, const char *pass,
                            EVP_PKEY **key)
{
    OSSL_DECODER_CTX *dc = OSSL_DECODER_CTX_new_for_pkey(
        key, NULL, NULL, NULL, OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
    if (!dc)
        return oom();
    if (pass)
        OSSL_DECODER_CTX_set_passphrase(dc, (const unsigned char *)pass, strlen(pass));
    else
        OSSL_DECODER_CTX_set_pem_password_cb(dc, pass_cb, NULL);
    const unsigned char *p = (const unsigned char *)data;
    size_t left = len;
    int ok = OSSL_DECODER_from_data(dc, &p, &left);
    OSSL_DECODER_CTX_free(dc);
    if (ok && *key)
        return NULL;
    return dx_tls_error_openssl("key", pass ? "cannot decode the key (wrong passphrase?)"
                                            : "cannot decode the key");
}

/* Fetches the first private key an OSSL_STORE URI names. The passphrase
 * goes to the store through a UI method that never asks a terminal. */
static dx_error *store_key(const char *uri, const char *pass, EVP_PKEY **key)
{
    UI_METHOD *ui = UI_UTIL_wrap_read_pem_callback(pass_cb, 0);
    if (!ui)
        return oom();
    OSSL_STORE_CTX *sc = OSSL_STORE_open_ex(uri, NULL, NULL, ui, (void *)pass,
                                            NULL, NULL, NULL);
    dx_error *err = NULL;
    if (!sc) {
        err = dx_tls_error_openssl("key", "cannot open the key URI");
    } else {
        OSSL_STORE_expect(sc, OSSL_STORE_INFO_PKEY);
        while (!*key && !OSSL_STORE_eof(sc)) {
            OSSL_STORE_INFO *info = OSSL_STORE_load(sc);
            if (!info)
                break;
            if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
                *key = OSSL_STORE_INFO_get1_PKEY(info);
            OSSL_STORE_INFO_free(info);
        }
        if (!*key)
            err = dx_tls_error_openssl("key", "no private key found");
        OSSL_STORE_close(sc);
    }
    UI_destroy_method(ui);
    return err;
}

/* Installs one identity: a certificate, its chain (may be NULL) and its
 * key, in the slot of the key's type. */
static dx_error *use_identity(SSL_CTX *ssl, const char *cert_option,
                              const char *key_option, X509 *leaf,
                              STACK_OF(X509) *chain, EVP_PKEY *key)
{
    if (X509_check_private_key(leaf, key) != 1)
        return dx_tls_error_openssl(key_option, "the key does not match the certificate");
    if (SSL_CTX_use_cert_and_key(ssl, leaf, key, chain, 1) != 1)
        return dx_tls_error_openssl(cert_option, "certificate refused");
    return NULL;
}

/* A chain with its key, given as data or as an OSSL_STORE URI. */
static dx_error *load_cert(SSL_CTX *ssl, const item *it, const char *chain,
                           size_t chain_len, const char *key, size_t key_len)
{
    X509 *leaf;
    STACK_OF(X509) *sk;
    EVP_PKEY *pkey = NULL;
    dx_error *err = parse_chain(chain, chain_len, &leaf, &sk);
    if (!err)
        err = it->kind == ITEM_CERT_URI ? store_key(it->b, it->passphrase, &pkey)
                                        : decode_key(key, key_len, it->passphrase, &pkey);
    if (!err)
        err = use_identity(ssl, "cert", "key", leaf, sk, pkey);
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(sk, X509_free);
    X509_free(leaf);
    return err;
}

/* A PKCS#12 archive: certificate, key, and the rest as the chain. */
static dx_error *load_pfx(SSL_CTX *ssl, const char *data, size_t len,
                          const char *pass)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    if (!b)
        return oom();
    PKCS12 *p12 = d2i_PKCS12_bio(b, NULL);
    BIO_free(b);
    if (!p12)
        return dx_tls_error_openssl("pfx", "not a PKCS#12 archive");
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    dx_error *err;
    if (PKCS12_parse(p12, pass, &key, &cert, &chain) != 1)
        err = dx_tls_error_openssl("pfx", "cannot read the archive");
    else if (!cert || !key)
        err = dx_tls_error_openssl("pfx", "no certificate with its key in the archive");
    else
        err = use_identity(ssl, "pfx", "pfx", cert, chain, key);
    sk_X509_pop_free(chain, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    PKCS12_free(p12);
    return err;
}

/* Adds every PEM certificate (crl false) or CRL (crl true) of the data to
 * the trust store. */
static dx_error *load_store_pem(X509_STORE *store, const char *option, bool crl,
                                const char *data, size_t len)
{
    BIO *b = BIO_new_mem_buf(data, (int)len);
    if (!b)
        return oom();
    int n = 0, ok = 1;
    for (;; n++) {
        if (crl) {
            X509_CRL *c = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
            if (!c)
                break;
            ok = X509_STORE_add_crl(store, c);
            X509_CRL_free(c);
        } else {
            X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
            if (!x)
                break;
            ok = X509_STORE_add_cert(store, x);
            X509_free(x);
        }
        if (ok != 1)
            break;
    }
    BIO_free(b);
    if (ok != 1)
        return dx_tls_error_openssl(option, crl ? "CRL refused" : "certificate refused");
    if (n == 0)
        return dx_tls_error_openssl(option, crl ? "no CRL found" : "no certificate found");
    return pem_end(option);
}

/* Diffie-Hellman parameters, or "auto" for OpenSSL's built-in groups. */
static dx_error *apply_dhparam(SSL_CTX *ssl, const char *data, size_t len)
{
    if (len == 4 && memcmp(data, "auto", 4) == 0)
        return SSL_CTX_set_dh_auto(ssl, 1) == 1
                   ? NULL : dx_tls_error_openssl("dhparam", "refused");
    EVP_PKEY *dh = NULL;
    OSSL_DECODER_CTX *dc = OSSL_DECODER_CTX_new_for_pkey(
        &dh, NULL, NULL, NULL, OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS, NULL, NULL);
    if (!dc)
        return oom();
    const unsigned char *p = (const unsigned char *)data;
    size_t left = len;
    int ok = OSSL_DECODER_from_data(dc, &p, &left);
    OSSL_DECODER_CTX_free(dc);
    dx_error *err = NULL;
    if (!ok || !dh)
        err = dx_tls_error_openssl("dhparam", "cannot decode the DH parameters");
    else if (!EVP_PKEY_is_a(dh, "DH") && !EVP_PKEY_is_a(dh, "DHX"))
        err = or_oom(dx_error_new(DX_ETLS, "ERR_TLS_INVALID_OPTION", "tls",
                                  "dhparam: %s parameters are not DH parameters",
                                  EVP_PKEY_get0_type_name(dh)));
    else if (EVP_PKEY_get_bits(dh) < 1024)
        err = or_oom(dx_error_new(DX_ETLS, "ERR_TLS_DH_PARAM_SIZE", "tls",
                                  "dhparam: DH parameter is less than 1024 bits (%d)",
                                  EVP_PKEY_get_bits(dh)));
    else if (SSL_CTX_set0_tmp_dh_pkey(ssl, dh) == 1)
        return NULL; /* the context owns dh now */
    else
        err = dx_tls_error_openssl("dhparam", "refused");
    EVP_PKEY_free(dh);
    return err;
}

static dx_error *apply_item(SSL_CTX *ssl, X509_STORE *store, const item *it)
{
    const char *option = kinds[it->kind].option;
    if (it->alen > INT_MAX || it->blen > INT_MAX)
        return or_oom(dx_error_new(DX_ETLS, "ERR_TLS_INVALID_OPTION", "tls",
                                   "%s: too large", option));
    const char *a = it->a, *b = it->b;
    size_t alen = it->alen, blen = it->blen;
    char *fa = NULL, *fb = NULL;
    if (kinds[it->kind].file) {
        if (!(a = fa = read_file(it->a, &alen)))
            return file_error(option, it->a);
        if (it->kind == ITEM_CERT_FILE && !(b = fb = read_file(it->b, &blen))) {
            free_secret(fa, alen);
            return file_error("key", it->b);
        }
    }
    dx_error *err;
    switch (it->kind) {
    case ITEM_CA:
    case ITEM_CA_FILE:
        err = load_store_pem(store, option, false, a, alen);
        break;
    case ITEM_CRL:
    case ITEM_CRL_FILE:
        err = load_store_pem(store, option, true, a, alen);
        break;
    case ITEM_PFX:
    case ITEM_PFX_FILE:
        err = load_pfx(ssl, a, alen, it->passphrase);
        break;
    default:
        err = load_cert(ssl, it, a, alen, b, blen);
        break;
    }
    free_secret(fa, alen);
    free_secret(fb, blen);
    return err;
}

/* Without one, a server that verifies clients could resume no session
 * (OpenSSL refuses): a default, as Node sets one for its servers. */
static const uint8_t *session_id_context(const dx_tls_config *cfg, size_t *len)
{
    static const uint8_t dflt[] = "libduplex";
    *len = cfg->sid_ctx_len ? cfg->sid_ctx_len : sizeof(dflt) - 1;
    return cfg->sid_ctx_len ? cfg->sid_ctx : dflt;
}

static dx_error *configure(SSL_CTX *ssl, const dx_tls_config *cfg,
                           const protocol *proto)
{
    if (!SSL_CTX_set_min_proto_version(ssl, proto->min) ||
        !SSL_CTX_set_max_proto_version(ssl, proto->max))
        return dx_tls_error_openssl("minVersion", "version refused");

    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | cfg->secure_options);
    if (cfg->ciphers) {
        char *legacy, *suites;
        if (split_ciphers(cfg->ciphers, &legacy, &suites) != 0)
            return (dx_error *)dx_error_oom();
        int ok = (!*legacy || SSL_CTX_set_cipher_list(ssl, legacy) == 1) &&
                 (!*suites || SSL_CTX_set_ciphersuites(ssl, suites) == 1);
        dx_free(legacy);
        dx_free(suites);
        if (!ok)
            return dx_tls_error_openssl("ciphers", "no cipher match");
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ssl, cfg->ciphersuites) != 1)
        return dx_tls_error_openssl("ciphersuites", "no cipher suite match");
    if (cfg->sigalgs && SSL_CTX_set1_sigalgs_list(ssl, cfg->sigalgs) != 1)
        return dx_tls_error_openssl("sigalgs", "invalid signature algorithms");
    if (cfg->groups && strcmp(cfg->groups, "auto") != 0 &&
        SSL_CTX_set1_groups_list(ssl, cfg->groups) != 1)
        return dx_tls_error_openssl("ecdhCurve", "failed to set the groups");
    if (cfg->dhparam) {
        dx_error *err = apply_dhparam(ssl, cfg->dhparam, cfg->dhparam_len);
        if (err)
            return err;
    }
    size_t sid_len;
    const uint8_t *sid = session_id_context(cfg, &sid_len);
    if (SSL_CTX_set_session_id_context(ssl, sid, (unsigned)sid_len) != 1)
        return dx_tls_error_openssl("sessionIdContext", "refused");
    SSL_CTX_set_timeout(ssl, (long)cfg->session_timeout);
    SSL_CTX_set_default_passwd_cb(ssl, pass_cb);

    bool have_ca = false, have_crl = false;
    for (const item *it = cfg->items; it; it = it->next) {
        have_ca |= it->kind == ITEM_CA || it->kind == ITEM_CA_FILE;
        have_crl |= it->kind == ITEM_CRL || it->kind == ITEM_CRL_FILE;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    if ((!have_ca || cfg->system_trust) && SSL_CTX_set_default_verify_paths(ssl) != 1)
        ERR_clear_error(); /* no system store: nothing is trusted */
    for (const item *it = cfg->items; it; it = it->next) {
        dx_error *err = apply_item(ssl, store, it);
        if (err)
            return err;
    }
    unsigned long flags = 0;
    if (have_crl)
        flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    if (cfg->partial_chain)
        flags |= X509_V_FLAG_PARTIAL_CHAIN;
    if (flags && X509_STORE_set_flags(store, flags) != 1)
        return oom();
    return NULL;
}

/*
 * The session id contexts of connections that verify their clients: the
 * context's own, bound to what verifies them (the trust store's
 * certificates and CRLs, the system store, partial chains) and to whether
 * an unverified client is let through (out[0]) or refused (out[1]). A
 * session made under other rules then resumes nothing there (OpenSSL
 * compares the ids and falls back to a full handshake), so that resuming
 * cannot skip a client check, while servers built from the same
 * configuration (a cluster) still share sessions. The store is hashed
 * once; each id adds its mode to a copy.
 */
static bool make_auth_sids(SSL_CTX *ssl, const dx_tls_config *cfg,
                           uint8_t out[2][SSL_MAX_SID_CTX_LENGTH])
{
    size_t sid_len;
    const uint8_t *sid = session_id_context(cfg, &sid_len);
    EVP_MD_CTX *md = EVP_MD_CTX_new(), *copy = EVP_MD_CTX_new();
    bool ok = md && copy && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    const uint8_t tag[] = "libduplex client verification";
    const uint8_t flags[2] = {cfg->system_trust, cfg->partial_chain};
    ok = ok && EVP_DigestUpdate(md, tag, sizeof(tag)) && EVP_DigestUpdate(md, sid, sid_len) &&
         EVP_DigestUpdate(md, flags, sizeof(flags));
    STACK_OF(X509_OBJECT) *all = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ssl));
    for (int i = 0; ok && i < sk_X509_OBJECT_num(all); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(all, i);
        unsigned char *der = NULL;
        int n = -1;
        uint8_t type = (uint8_t)X509_OBJECT_get_type(o);
        if (type == X509_LU_X509)
            n = i2d_X509(X509_OBJECT_get0_X509(o), &der);
        else if (type == X509_LU_CRL)
            n = i2d_X509_CRL(X509_OBJECT_get0_X509_CRL(o), &der);
        ok = n >= 0 && EVP_DigestUpdate(md, &type, 1) && EVP_DigestUpdate(md, der, (size_t)n);
        OPENSSL_free(der);
    }
    for (uint8_t mode = 0; ok && mode < 2; mode++) {
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        ok = EVP_MD_CTX_copy_ex(copy, md) && EVP_DigestUpdate(copy, &mode, 1) &&
             EVP_DigestFinal_ex(copy, digest, &len) && len >= SSL_MAX_SID_CTX_LENGTH;
        if (ok)
            memcpy(out[mode], digest, SSL_MAX_SID_CTX_LENGTH);
    }
    EVP_MD_CTX_free(copy);
    EVP_MD_CTX_free(md);
    return ok;
}

int dx_tls_ctx_new(const dx_tls_config *cfg, dx_tls_ctx **out, dx_error **err)
{
    if (err)
        *err = NULL;
    if (!cfg || !out)
        return DX_EINVAL;
    *out = NULL;
    ERR_clear_error();
    protocol proto = {NULL, 0, 0};
    SSL_CTX *ssl = NULL;
    dx_error *e = resolve_protocol(cfg, &proto);
    if (!e) {
        ssl = SSL_CTX_new(proto.method);
        if (!ssl || dx_tls_ctx_prepare(ssl) != 0)
            e = oom();
        else
            e = configure(ssl, cfg, &proto);
        if (!e && dx_tls_ocsp_ctx_ready(ssl) != 0)
            e = oom();
    }
    ERR_clear_error();
    dx_tls_ctx *ctx = NULL;
    if (!e && !(ctx = dx_calloc(1, sizeof(*ctx))))
        e = oom();
    if (e) {
        SSL_CTX_free(ssl);
        if (dx_error_code(e) == DX_ENOMEM) {
            dx_error_free(e);
            return DX_ENOMEM;
        }
        if (err)
            *err = e;
        else
            dx_error_free(e);
        return DX_ETLS;
    }
    memcpy(ctx->sid, session_id_context(cfg, &ctx->sid_len), ctx->sid_len);
    if (!make_auth_sids(ssl, cfg, ctx->auth_sid)) {
        SSL_CTX_free(ssl);
        dx_free(ctx);
        ERR_clear_error();
        return DX_ENOMEM;
    }
    if (pthread_mutex_init(&ctx->sess_lock, NULL) != 0) {
        SSL_CTX_free(ssl);
        dx_free(ctx);
        return DX_ENOMEM;
    }
    ctx->ssl = ssl;
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->keylog, false);
    ctx->honor_cipher_order = cfg->honor_cipher_order;
    ctx->verify_set = cfg->verify_set;
    ctx->request_cert = cfg->request_cert;
    ctx->reject_unauthorized = cfg->reject_unauthorized;
    dx_live_inc();
    *out = ctx;
    return 0;
}

dx_tls_ctx *dx_tls_ctx_ref(dx_tls_ctx *ctx)
{
    if (ctx)
        atomic_fetch_add(&ctx->refs, 1);
    return ctx;
}

void dx_tls_ctx_unref(dx_tls_ctx *ctx)
{
    if (!ctx || atomic_fetch_sub(&ctx->refs, 1) != 1)
        return;
    SSL_SESSION_free(ctx->sess);
    dx_free(ctx->sess_der);
    pthread_mutex_destroy(&ctx->sess_lock);
    SSL_CTX_free(ctx->ssl);
    dx_free(ctx);
    dx_live_dec();
}

void *dx_tls_ctx_openssl(const dx_tls_ctx *ctx) { return ctx ? ctx->ssl : NULL; }

void dx_tls_ctx_want_keylog(dx_tls_ctx *ctx)
{
    if (!ctx || atomic_load(&ctx->keylog))
        return;
    /* The one change made to the SSL_CTX after it was built: a pointer
     * OpenSSL reads when it has a secret to log, set once, from NULL to
     * the library's callback, which lets through only lines a connection
     * asked for. A handshake on another thread that reads it meanwhile
     * logs or not; neither reaches a connection that did not ask. */
    pthread_mutex_lock(&ctx->sess_lock);
    if (!atomic_load(&ctx->keylog)) {
        dx_tls_keylog_install(ctx->ssl);
        atomic_store(&ctx->keylog, true);
    }
    pthread_mutex_unlock(&ctx->sess_lock);
}

int dx_tls_ctx_session(dx_tls_ctx *ctx, const void *der, size_t len, SSL_SESSION **out)
{
    *out = NULL;
    pthread_mutex_lock(&ctx->sess_lock);
    if (!ctx->sess || ctx->sess_len != len || memcmp(ctx->sess_der, der, len) != 0) {
        const unsigned char *p = der;
        SSL_SESSION *s = d2i_SSL_SESSION(NULL, &p, (long)len);
        uint8_t *keep = s ? dx_malloc(len) : NULL;
        if (!keep) {
            /* Not a session, or no memory to read it; or no room to keep
             * it: this connection has it all the same. */
            pthread_mutex_unlock(&ctx->sess_lock);
            bool oom = dx_tls_drain_openssl_errors();
            *out = s;
            return s ? 0 : oom ? DX_ENOMEM : DX_EINVAL;
        }
        memcpy(keep, der, len);
        SSL_SESSION_free(ctx->sess);
        dx_free(ctx->sess_der);
        ctx->sess = s;
        ctx->sess_der = keep;
        ctx->sess_len = len;
    }
    *out = SSL_SESSION_dup(ctx->sess);
    pthread_mutex_unlock(&ctx->sess_lock);
    if (!*out) {
        ERR_clear_error();
        return DX_ENOMEM;
    }
    return 0;
}

bool dx_tls_ctx_client_verify(const dx_tls_ctx *ctx, bool *request, bool *reject)
{
    if (!ctx->verify_set)
        return false;
    *request = ctx->request_cert;
    *reject = ctx->reject_unauthorized;
    return true;
}

const uint8_t *dx_tls_ctx_session_id_context(const dx_tls_ctx *ctx, bool request, bool reject,
                                             size_t *len)
{
    if (!request) {
        *len = ctx->sid_len;
        return ctx->sid;
    }
    *len = sizeof(ctx->auth_sid[0]);
    return ctx->auth_sid[reject];
}

bool dx_tls_ctx_honor_cipher_order(const dx_tls_ctx *ctx)
{
    return ctx && ctx->honor_cipher_order;
}
