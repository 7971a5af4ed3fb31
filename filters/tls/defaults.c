/*
 * What the TLS module offers outside any one context (include/duplex/tls.h):
 * the process defaults new configurations start from, the names of the
 * supported ciphers, the default root certificates, and the string lists
 * that carry those to the caller.
 */
#include "config.h"

#include <duplex/tls.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "alloc.h"
#include "tls_internal.h"

/* ---- process defaults ------------------------------------------------------ */

enum { DEF_CIPHERS, DEF_GROUPS, DEF_MIN_VERSION, DEF_MAX_VERSION, DEF_COUNT };

static const char *const builtin[DEF_COUNT] = {
    DX_TLS_DEFAULT_CIPHERS, DX_TLS_DEFAULT_GROUPS,
    DX_TLS_DEFAULT_MIN_VERSION, DX_TLS_DEFAULT_MAX_VERSION};

/* Set at start-up, read by every new configuration (see tls.h: the
 * setters are not thread-safe). NULL: the built-in one. */
static char *defaults[DEF_COUNT];

static int set_default(int which, const char *value)
{
    char *copy = NULL;
    if (value && !(copy = dx_strdup(value)))
        return DX_ENOMEM;
    char *old = defaults[which];
    defaults[which] = copy;
    if (copy)
        dx_live_inc();
    if (old) {
        dx_free(old);
        dx_live_dec();
    }
    return 0;
}

int dx_tls_set_default_ciphers(const char *list)
{
    return set_default(DEF_CIPHERS, list);
}

int dx_tls_set_default_groups(const char *list)
{
    return set_default(DEF_GROUPS, list);
}

int dx_tls_set_default_min_version(const char *version)
{
    return set_default(DEF_MIN_VERSION, version);
}

int dx_tls_set_default_max_version(const char *version)
{
    return set_default(DEF_MAX_VERSION, version);
}

int dx_tls_defaults_copy(dx_tls_defaults *out)
{
    char *copy[DEF_COUNT];
    bool ok = true;
    for (int i = 0; i < DEF_COUNT; i++) {
        copy[i] = dx_strdup(defaults[i] ? defaults[i] : builtin[i]);
        ok &= copy[i] != NULL;
    }
    if (!ok) {
        for (int i = 0; i < DEF_COUNT; i++)
            dx_free(copy[i]);
        return DX_ENOMEM;
    }
    out->ciphers = copy[DEF_CIPHERS];
    out->groups = copy[DEF_GROUPS];
    out->min_version = copy[DEF_MIN_VERSION];
    out->max_version = copy[DEF_MAX_VERSION];
    return 0;
}

/* ---- lists ----------------------------------------------------------------- */

struct dx_tls_list {
    char **items;
    size_t count, cap;
};

static dx_tls_list *list_new(void)
{
    dx_tls_list *l = dx_calloc(1, sizeof(*l));
    if (l)
        dx_live_inc();
    return l;
}

/* Appends s, which the list then owns (it is freed on failure). */
static int list_push(dx_tls_list *l, char *s)
{
    if (!s)
        return DX_ENOMEM;
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **items = dx_realloc(l->items, cap * sizeof(*items));
        if (!items) {
            dx_free(s);
            return DX_ENOMEM;
        }
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = s;
    return 0;
}

size_t dx_tls_list_count(const dx_tls_list *list)
{
    return list ? list->count : 0;
}

const char *dx_tls_list_get(const dx_tls_list *list, size_t i)
{
    return list && i < list->count ? list->items[i] : NULL;
}

void dx_tls_list_free(dx_tls_list *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->count; i++)
        dx_free(list->items[i]);
    dx_free(list->items);
    dx_free(list);
    dx_live_dec();
}

/* A new list filled by collect(), for the caller; nothing on failure. */
static int make_list(int (*collect)(dx_tls_list *), dx_tls_list **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    dx_tls_list *l = list_new();
    if (!l)
        return DX_ENOMEM;
    int rc = collect(l);
    ERR_clear_error();
    if (rc != 0) {
        dx_tls_list_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

/* ---- supported ciphers ----------------------------------------------------- */

static int compare_text(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every cipher OpenSSL knows, TLS 1.3 suites included, filtered by what an
 * SSL object of the default configuration could offer. */
static int collect_ciphers(dx_tls_list *l)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    SSL *ssl = NULL;
    STACK_OF(SSL_CIPHER) *sk = NULL;
    int rc = DX_ENOMEM;
    if (!ctx || SSL_CTX_set_cipher_list(ctx, "ALL") != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256:"
                                      "TLS_AES_128_GCM_SHA256:"
                                      "TLS_AES_128_CCM_8_SHA256:"
                                      "TLS_AES_128_CCM_SHA256") != 1 ||
        !(ssl = SSL_new(ctx)) || !(sk = SSL_get1_supported_ciphers(ssl)))
        goto done;
    rc = 0;
    for (int i = 0; rc == 0 && i < sk_SSL_CIPHER_num(sk); i++) {
        char *name = dx_strdup(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(sk, i)));
        for (char *p = name; p && *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        rc = list_push(l, name);
    }
    /* OpenSSL lists each cipher once; Node sorts the names */
    if (rc == 0)
        qsort(l->items, l->count, sizeof(*l->items), compare_text);
done:
    sk_SSL_CIPHER_free(sk);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return rc;
}

int dx_tls_get_ciphers(dx_tls_list **out)
{
    return make_list(collect_ciphers, out);
}

/* ---- root certificates ----------------------------------------------------- */

/* An environment variable, ignored in set-uid programs (as OpenSSL does). */
static const char *safe_getenv(const char *name)
{
#if defined(__GLIBC__)
    return secure_getenv(name);
#else
    return getenv(name);
#endif
}

/* The names OpenSSL's hashed-directory lookup reads certificates from:
 * eight hex digits, a dot, a decimal number. */
static bool hashed_cert_name(const char *n)
{
    for (int i = 0; i < 8; i++, n++)
        if (!((*n >= '0' && *n <= '9') || (*n >= 'a' && *n <= 'f')))
            return false;
    if (*n++ != '.' || !*n)
        return false;
    for (; *n; n++)
        if (*n < '0' || *n > '9')
            return false;
    return true;
}

/* Loads the certificates of one hashed directory; unreadable entries are
 * skipped, as OpenSSL's lookup skips them. */
static void load_hashed_dir(X509_STORE *store, const char *dir, size_t len)
{
    char path[4096];
    if (len == 0 || len >= sizeof(path) - 20)
        return;
    memcpy(path, dir, len);
    path[len] = '\0';
    DIR *d = opendir(path);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (!hashed_cert_name(e->d_name))
            continue;
        snprintf(path + len, sizeof(path) - len, "/%s", e->d_name);
        X509_STORE_load_file(store, path);
    }
    closedir(d);
}

/* The default store, loaded whole: the file and the directories that
 * SSL_CTX_set_default_verify_paths() would search. */
static void load_default_store(X509_STORE *store)
{
    const char *file = safe_getenv(X509_get_default_cert_file_env());
    X509_STORE_load_file(store, file ? file : X509_get_default_cert_file());
    const char *dirs = safe_getenv(X509_get_default_cert_dir_env());
    if (!dirs)
        dirs = X509_get_default_cert_dir();
    for (const char *p = dirs;;) {
        size_t n = strcspn(p, ":");
        load_hashed_dir(store, p, n);
        if (!p[n])
            break;
        p += n + 1;
    }
    ERR_clear_error(); /* missing files and entries are no error */
}

static char *pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *text = NULL, *data;
    if (b && PEM_write_bio_X509(b, x) == 1) {
        long n = BIO_get_mem_data(b, &data);
        if (n > 0 && (text = dx_malloc((size_t)n + 1)) != NULL) {
            memcpy(text, data, (size_t)n);
            text[n] = '\0';
        }
    }
    BIO_free(b);
    return text;
}

static int collect_roots(dx_tls_list *l)
{
    X509_STORE *store = X509_STORE_new();
    if (!store)
        return DX_ENOMEM;
    load_default_store(store);
    /* The store keeps one copy of each certificate, ordered by subject. */
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        if (X509_OBJECT_get_type(o) == X509_LU_X509)
            rc = list_push(l, pem_of(X509_OBJECT_get0_X509(o)));
    }
    X509_STORE_free(store);
    return rc;
}

int dx_tls_get_root_certificates(dx_tls_list **out)
{
    return make_list(collect_roots, out);
}
