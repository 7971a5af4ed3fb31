/*
 * Certificate objects (include/duplex/tls_cert.h): every field is read from
 * the X509 once, when the object is made, into memory the object owns.
 */
#include "config.h"

#include <duplex/tls_cert.h>

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "alloc.h"
#include "cert_internal.h"
#include "tls_internal.h"

/* ---- memory: every block the object owns is on one list ---- */

typedef union blk {
    union blk *next;
    max_align_t align;
} blk;

typedef struct name_entry {
    const char *key;
    const char *value;
    size_t len;
} name_entry;

struct dx_tls_name {
    name_entry *e;
    size_t n;
};

struct dx_tls_cert {
    X509 *x;
    blk *blocks;
    const uint8_t *der;
    size_t der_len;
    dx_tls_name subject, issuer;
    const char *valid_from, *valid_to;
    int64_t not_before, not_after;
    bool times_ok;
    const char *serial;
    const char *fingerprint[3];
    const char **eku;
    size_t n_eku;
    const char *san;
    dx_tls_altname *alt;
    size_t n_alt;
    dx_tls_access *access;
    size_t n_access;
    const char *key_type;
    int key_bits;
    const char *modulus, *exponent, *asn1_curve, *nist_curve;
    const uint8_t *pubkey;
    size_t pubkey_len;
    const uint8_t *spki;
    size_t spki_len;
    bool is_ca, self_issued;
};

static void *own(dx_tls_cert *c, size_t n)
{
    if (n > SIZE_MAX - sizeof(blk))
        return NULL;
    blk *b = dx_malloc(sizeof(blk) + n);
    if (!b)
        return NULL;
    b->next = c->blocks;
    c->blocks = b;
    return b + 1;
}

/* n elements of size bytes, zeroed. */
static void *own_array(dx_tls_cert *c, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = own(c, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

/* A NUL-terminated copy of n bytes. */
static char *own_text(dx_tls_cert *c, const void *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = own(c, n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static char *own_str(dx_tls_cert *c, const char *s) { return own_text(c, s, strlen(s)); }

/* ---- a growing text with a sticky failure ---- */

typedef struct sb {
    char *p;
    size_t len, cap;
    bool failed;
} sb;

static void sb_put(sb *b, const void *s, size_t n)
{
    if (!b || b->failed)
        return;
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len <= n && cap < SIZE_MAX / 2)
            cap *= 2;
        char *p = cap - b->len > n ? dx_realloc(b->p, cap) : NULL;
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sb *b, const char *fmt, ...) DX_PRINTF(2, 3);
static void sb_printf(sb *b, const char *fmt, ...)
{
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(buf))
        sb_put(b, buf, (size_t)n);
    else if (b)
        b->failed = true;
}

/* The text as the object's own string; frees the builder. */
static const char *sb_finish(dx_tls_cert *c, sb *b)
{
    const char *s = b->failed ? NULL : own_text(c, b->p, b->len);
    dx_free(b->p);
    b->p = NULL;
    return s;
}

/* What a memory BIO holds, as the object's own string. */
static const char *own_bio(dx_tls_cert *c, BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    return n >= 0 ? own_text(c, data, (size_t)n) : NULL;
}

/* An object identifier as text: its long name, or dotted when numeric is
 * set or OpenSSL has no name for it. */
static const char *obj_text(dx_tls_cert *c, const ASN1_OBJECT *o, int numeric)
{
    int n = OBJ_obj2txt(NULL, 0, o, numeric);
    if (n < 0)
        return NULL;
    char *p = own(c, (size_t)n + 1);
    if (p && OBJ_obj2txt(p, n + 1, o, numeric) < 0)
        return NULL;
    return p;
}

/* ---- names ---- */

static int read_name(dx_tls_cert *c, const X509_NAME *xn, dx_tls_name *out)
{
    int n = X509_NAME_entry_count(xn);
    if (n <= 0)
        return 0;
    out->e = own_array(c, (size_t)n, sizeof(*out->e));
    if (!out->e)
        return DX_ENOMEM;
    for (int i = 0; i < n; i++) {
        const X509_NAME_ENTRY *ent = X509_NAME_get_entry(xn, i);
        const ASN1_OBJECT *o = X509_NAME_ENTRY_get_object(ent);
        int nid = OBJ_obj2nid(o);
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
        name_entry *e = &out->e[i];
        e->key = sn ? own_str(c, sn) : obj_text(c, o, 1);
        /* Values are UTF-8 whatever their ASN.1 string type. OpenSSL
         * refuses, when decoding, names that cannot be converted, so a
         * failure here is one of memory. */
        unsigned char *u = NULL;
        int len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(ent));
        if (len >= 0) {
            e->value = own_text(c, u, (size_t)len);
            e->len = (size_t)len;
        }
        OPENSSL_free(u);
        if (!e->key || !e->value)
            return DX_ENOMEM;
        out->n++;
    }
    return 0;
}

/* ---- alternative names, printed as Node.js prints them ---- */

/* Whether a name can be printed bare. Names that hold a quote, a
 * backslash, a comma (the list's separator) or a single quote, or a byte
 * outside printable ASCII (for UTF-8 texts: a control character), are
 * written as JSON strings instead. */
static bool alt_safe(const unsigned char *s, size_t n, bool utf8)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\' || ch == ',' || ch == '\'')
            return false;
        if (ch < ' ' || ch == 0x7f || (!utf8 && ch > '~'))
            return false;
    }
    return true;
}

static void put_alt(sb *b, const unsigned char *s, size_t n, bool utf8,
                    const char *prefix)
{
    if (alt_safe(s, n, utf8)) {
        if (prefix)
            sb_printf(b, "%s:", prefix);
        sb_put(b, s, n);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    sb_put(b, "\"", 1);
    if (prefix)
        sb_printf(b, "%s:", prefix);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch == '\\')
            sb_put(b, "\\\\", 2);
        else if (ch == '"')
            sb_put(b, "\\\"", 2);
        else if ((ch >= ' ' && ch != ',' && ch <= '~') || (utf8 && ch >= 0x80))
            sb_put(b, &ch, 1);
        else {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 0xf]};
            sb_put(b, u, sizeof(u));
        }
    }
    sb_put(b, "\"", 1);
}

/* The otherName kinds Node.js prints, and whether their value is UTF-8
 * (else IA5). */
static const char *other_prefix(int nid, bool *utf8)
{
    *utf8 = true;
    switch (nid) {
    case NID_id_on_SmtpUTF8Mailbox:
        return "SmtpUTF8Mailbox";
    case NID_XmppAddr:
        return "XmppAddr";
    case NID_SRVName:
        *utf8 = false;
        return "SRVName";
    case NID_ms_upn:
        return "UPN";
    case NID_NAIRealm:
        return "NAIRealm";
    }
    return NULL;
}

static const char unsupported[] = "<unsupported>";

/* Sets *out to s (n bytes) copied; 0 or DX_ENOMEM. */
static int set_value(dx_tls_cert *c, dx_tls_altname *out, const void *s, size_t n)
{
    out->value = own_text(c, s, n);
    out->len = n;
    return out->value ? 0 : DX_ENOMEM;
}

static int other_name(dx_tls_cert *c, const OTHERNAME *on, sb *b,
                      dx_tls_altname *out)
{
    bool utf8;
    const char *prefix = other_prefix(OBJ_obj2nid(on->type_id), &utf8);
    int type = on->value ? on->value->type : -1;
    if (!prefix || type != (utf8 ? V_ASN1_UTF8STRING : V_ASN1_IA5STRING)) {
        sb_puts(b, "othername:<unsupported>");
        return set_value(c, out, unsupported, strlen(unsupported));
    }
    const ASN1_STRING *s = utf8 ? on->value->value.utf8string
                                : on->value->value.ia5string;
    size_t plen = strlen(prefix), n = (size_t)ASN1_STRING_length(s);
    sb_puts(b, "othername:");
    put_alt(b, ASN1_STRING_get0_data(s), n, utf8, prefix);
    char *v = own(c, plen + 1 + n + 1);
    if (!v)
        return DX_ENOMEM;
    memcpy(v, prefix, plen);
    v[plen] = ':';
    memcpy(v + plen + 1, ASN1_STRING_get0_data(s), n);
    v[plen + 1 + n] = '\0';
    out->value = v;
    out->len = plen + 1 + n;
    return 0;
}

static int dir_name(dx_tls_cert *c, const X509_NAME *xn, sb *b,
                    dx_tls_altname *out)
{
    /* RFC 2253, with UTF-8 and control characters left for the JSON
     * escaping below. */
    const unsigned long flags = XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB &
                                ~ASN1_STRFLGS_ESC_CTRL;
    BIO *bio = BIO_new(BIO_s_mem());
    int rc = DX_ENOMEM;
    if (bio && X509_NAME_print_ex(bio, xn, 0, flags) >= 0 &&
        (out->value = own_bio(c, bio)) != NULL) {
        out->len = strlen(out->value);
        sb_puts(b, "DirName:");
        put_alt(b, (const unsigned char *)out->value, out->len, true, NULL);
        rc = 0;
    }
    BIO_free(bio);
    return rc;
}

static int ip_address(dx_tls_cert *c, const ASN1_OCTET_STRING *ip, sb *b,
                      dx_tls_altname *out)
{
    const unsigned char *p = ASN1_STRING_get0_data(ip);
    int n = ASN1_STRING_length(ip);
    char text[INET6_ADDRSTRLEN] = "";
    sb_puts(b, "IP Address:");
    if (n == 4) {
        sb_printf(b, "%d.%d.%d.%d", p[0], p[1], p[2], p[3]);
        inet_ntop(AF_INET, p, text, sizeof(text));
    } else if (n == 16) {
        for (int i = 0; i < 8; i++)
            sb_printf(b, i ? ":%X" : "%X", (p[2 * i] << 8) | p[2 * i + 1]);
        inet_ntop(AF_INET6, p, text, sizeof(text));
    } else {
        sb_printf(b, "<invalid length=%d>", n);
    }
    return set_value(c, out, text, strlen(text));
}

/*
 * One GeneralName: appends Node's text for it to b (which may be NULL) and
 * fills out. 0 or DX_ENOMEM.
 */
static int general_name(dx_tls_cert *c, const GENERAL_NAME *gen, sb *b,
                        dx_tls_altname *out)
{
    const char *prefix = NULL, *bare = NULL;
    out->type = (dx_tls_altname_type)gen->type;
    switch (gen->type) {
    case GEN_DNS:
        prefix = "DNS:";
        break;
    case GEN_EMAIL:
        prefix = "email:";
        break;
    case GEN_URI:
        prefix = "URI:";
        break;
    case GEN_DIRNAME:
        return dir_name(c, gen->d.directoryName, b, out);
    case GEN_IPADD:
        return ip_address(c, gen->d.iPAddress, b, out);
    case GEN_RID: {
        const char *oid = obj_text(c, gen->d.registeredID, 1);
        if (!oid)
            return DX_ENOMEM;
        sb_printf(b, "Registered ID:%s", oid);
        out->value = oid;
        out->len = strlen(oid);
        return 0;
    }
    case GEN_OTHERNAME:
        return other_name(c, gen->d.otherName, b, out);
    case GEN_X400:
        bare = "X400Name:";
        break;
    case GEN_EDIPARTY:
        bare = "EdiPartyName:";
        break;
    default:
        bare = "";
        break;
    }
    if (bare) {
        sb_puts(b, bare);
        sb_puts(b, unsupported);
        return set_value(c, out, unsupported, strlen(unsupported));
    }
    const ASN1_IA5STRING *s = gen->d.ia5;
    size_t n = (size_t)ASN1_STRING_length(s);
    sb_puts(b, prefix);
    put_alt(b, ASN1_STRING_get0_data(s), n, false, NULL);
    return set_value(c, out, ASN1_STRING_get0_data(s), n);
}

/* The first extension of this kind, decoded; NULL when there is none or
 * OpenSSL cannot read it (Node.js then shows none). */
static void *first_ext(const X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i < 0 ? NULL : X509V3_EXT_d2i(X509_get_ext(x, i));
}

static int read_altnames(dx_tls_cert *c)
{
    GENERAL_NAMES *gens = first_ext(c->x, NID_subject_alt_name);
    if (!gens)
        return 0;
    int n = sk_GENERAL_NAME_num(gens), rc = 0;
    sb b = {0};
    c->alt = own_array(c, n > 0 ? (size_t)n : 0, sizeof(*c->alt));
    if (!c->alt)
        rc = DX_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        if (i)
            sb_puts(&b, ", ");
        rc = general_name(c, sk_GENERAL_NAME_value(gens, i), &b, &c->alt[i]);
        c->n_alt += !rc;
    }
    c->san = sb_finish(c, &b);
    if (!c->san)
        rc = DX_ENOMEM;
    GENERAL_NAMES_free(gens);
    return rc;
}

static int read_info_access(dx_tls_cert *c)
{
    AUTHORITY_INFO_ACCESS *aia = first_ext(c->x, NID_info_access);
    if (!aia)
        return 0;
    int n = sk_ACCESS_DESCRIPTION_num(aia), rc = 0;
    c->access = own_array(c, n > 0 ? (size_t)n : 0, sizeof(*c->access));
    if (!c->access)
        rc = DX_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        const ACCESS_DESCRIPTION *ad = sk_ACCESS_DESCRIPTION_value(aia, i);
        dx_tls_access *a = &c->access[i];
        a->method = obj_text(c, ad->method, 0);
        rc = a->method ? general_name(c, ad->location, NULL, &a->location)
                       : DX_ENOMEM;
        c->n_access += !rc;
    }
    AUTHORITY_INFO_ACCESS_free(aia);
    return rc;
}

static int read_ext_key_usage(dx_tls_cert *c)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(c->x, NID_ext_key_usage, NULL, NULL);
    if (!eku)
        return 0;
    int n = sk_ASN1_OBJECT_num(eku), rc = 0;
    c->eku = own_array(c, n > 0 ? (size_t)n : 0, sizeof(*c->eku));
    if (!c->eku)
        rc = DX_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        c->eku[i] = obj_text(c, sk_ASN1_OBJECT_value(eku, i), 1);
        rc = c->eku[i] ? 0 : DX_ENOMEM;
        c->n_eku += !rc;
    }
    EXTENDED_KEY_USAGE_free(eku);
    return rc;
}

/* ---- validity ---- */

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool time_seconds(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!ASN1_TIME_to_tm(t, &tm))
        return false;
    *out = days_from_civil((int64_t)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday) * 86400 +
           tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return true;
}

/* Node's text of a time: ASN1_TIME_print's, "Bad time value" included. */
static const char *time_text(dx_tls_cert *c, const ASN1_TIME *t)
{
    BIO *bio = BIO_new(BIO_s_mem());
    const char *s = NULL;
    if (bio) {
        ASN1_TIME_print(bio, t);
        if (BIO_pending(bio) > 0)
            s = own_bio(c, bio);
    }
    BIO_free(bio);
    return s;
}

static int read_validity(dx_tls_cert *c)
{
    const ASN1_TIME *nb = X509_get0_notBefore(c->x), *na = X509_get0_notAfter(c->x);
    c->valid_from = time_text(c, nb);
    c->valid_to = time_text(c, na);
    c->times_ok = time_seconds(nb, &c->not_before) && time_seconds(na, &c->not_after);
    if (!c->times_ok)
        c->not_before = c->not_after = 0;
    return c->valid_from && c->valid_to ? 0 : DX_ENOMEM;
}

/* ---- identifiers ---- */

static const char *own_bn_hex(dx_tls_cert *c, const BIGNUM *bn, bool lower,
                              bool trim)
{
    char *h = BN_bn2hex(bn);
    if (!h)
        return NULL;
    char *s = h;
    /* BN_bn2hex writes whole bytes; Node's modulus and exponent have no
     * leading zero digit. */
    if (trim && s[0] == '0' && s[1])
        s++;
    if (lower)
        for (char *p = s; *p; p++)
            if (*p >= 'A' && *p <= 'F')
                *p = (char)(*p - 'A' + 'a');
    const char *out = own_str(c, s);
    OPENSSL_free(h);
    return out;
}

static int read_serial(dx_tls_cert *c)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->x), NULL);
    c->serial = bn ? own_bn_hex(c, bn, false, false) : NULL;
    BN_free(bn);
    return c->serial ? 0 : DX_ENOMEM;
}

static int read_fingerprints(dx_tls_cert *c)
{
    const EVP_MD *mds[3] = {EVP_sha1(), EVP_sha256(), EVP_sha512()};
    static const char hex[] = "0123456789ABCDEF";
    for (int i = 0; i < 3; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (!mds[i] || !X509_digest(c->x, mds[i], md, &n) || n == 0)
            return DX_ENOMEM;
        char *s = own(c, (size_t)n * 3);
        if (!s)
            return DX_ENOMEM;
        for (unsigned int j = 0; j < n; j++) {
            s[3 * j] = hex[md[j] >> 4];
            s[3 * j + 1] = hex[md[j] & 0xf];
            s[3 * j + 2] = j + 1 < n ? ':' : '\0';
        }
        c->fingerprint[i] = s;
    }
    return 0;
}

/* ---- the key ---- */

static const char *key_type_name(dx_tls_cert *c, const EVP_PKEY *k)
{
    static const char *const known[][2] = {
        {"RSA", "rsa"},         {"RSA-PSS", "rsa-pss"}, {"DSA", "dsa"},
        {"EC", "ec"},           {"ED25519", "ed25519"}, {"ED448", "ed448"},
        {"X25519", "x25519"},   {"X448", "x448"},       {"DH", "dh"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (EVP_PKEY_is_a(k, known[i][0]))
            return known[i][1];
    const char *name = EVP_PKEY_get0_type_name(k);
    char *s = own_str(c, name ? name : "unknown");
    for (char *p = s; p && *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return s;
}

static int read_rsa(dx_tls_cert *c, const EVP_PKEY *k)
{
    BIGNUM *n = NULL, *e = NULL;
    int rc = DX_ENOMEM;
    if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) &&
        EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e)) {
        const char *ehex = own_bn_hex(c, e, true, true);
        char *exp = ehex ? own(c, strlen(ehex) + 3) : NULL;
        if (exp)
            snprintf(exp, strlen(ehex) + 3, "0x%s", ehex);
        c->exponent = exp;
        c->modulus = own_bn_hex(c, n, false, true);
        if (c->exponent && c->modulus) {
            c->pubkey = c->spki;
            c->pubkey_len = c->spki_len;
            rc = 0;
        }
    }
    BN_free(n);
    BN_free(e);
    return rc;
}

static int read_ec(dx_tls_cert *c, const EVP_PKEY *k)
{
    char group[80];
    size_t n = 0;
    /* An explicitly described curve has no name: Node.js shows none. */
    if (EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof(group), NULL)) {
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef)
            nid = EC_curve_nist2nid(group);
        const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : group;
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
        if (!(c->asn1_curve = own_str(c, sn)))
            return DX_ENOMEM;
        if (nist && !(c->nist_curve = own_str(c, nist)))
            return DX_ENOMEM;
    }
    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                        NULL, 0, &n) && n > 0) {
        uint8_t *p = own(c, n);
        if (!p || !EVP_PKEY_get_octet_string_param(
                      k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, p, n, &n))
            return DX_ENOMEM;
        c->pubkey = p;
        c->pubkey_len = n;
    }
    return 0;
}

static int read_key(dx_tls_cert *c)
{
    /* The SubjectPublicKeyInfo as the certificate holds it, whether or not
     * OpenSSL knows the algorithm. */
    const X509_PUBKEY *xpk = X509_get_X509_PUBKEY(c->x);
    int n = xpk ? i2d_X509_PUBKEY(xpk, NULL) : 0;
    if (n > 0) {
        uint8_t *p = own(c, (size_t)n);
        unsigned char *q = p;
        if (!p || i2d_X509_PUBKEY(xpk, &q) != n)
            return DX_ENOMEM;
        c->spki = p;
        c->spki_len = (size_t)n;
    }
    EVP_PKEY *k = X509_get0_pubkey(c->x);
    if (!k)
        return 0;
    if (!(c->key_type = key_type_name(c, k)))
        return DX_ENOMEM;
    c->key_bits = EVP_PKEY_get_bits(k) > 0 ? EVP_PKEY_get_bits(k) : 0;
    if (EVP_PKEY_is_a(k, "RSA") || EVP_PKEY_is_a(k, "RSA-PSS"))
        return read_rsa(c, k);
    if (EVP_PKEY_is_a(k, "EC"))
        return read_ec(c, k);
    return 0;
}

static int read_der(dx_tls_cert *c)
{
    int n = i2d_X509(c->x, NULL);
    if (n <= 0)
        return DX_ENOMEM;
    uint8_t *p = own(c, (size_t)n);
    unsigned char *q = p;
    if (!p || i2d_X509(c->x, &q) != n)
        return DX_ENOMEM;
    c->der = p;
    c->der_len = (size_t)n;
    return 0;
}

static int read_names(dx_tls_cert *c)
{
    int rc = read_name(c, X509_get_subject_name(c->x), &c->subject);
    return rc ? rc : read_name(c, X509_get_issuer_name(c->x), &c->issuer);
}

static int read_flags(dx_tls_cert *c)
{
    c->is_ca = (X509_get_extension_flags(c->x) & EXFLAG_CA) != 0;
    c->self_issued = X509_NAME_cmp(X509_get_subject_name(c->x),
                                   X509_get_issuer_name(c->x)) == 0;
    return 0;
}

/* Every field, in turn; 0 or DX_ENOMEM. */
static int read_all(dx_tls_cert *c, bool names_only)
{
    static int (*const readers[])(dx_tls_cert *) = {
        read_der,      read_names,         read_validity, read_serial,
        read_fingerprints, read_ext_key_usage, read_altnames, read_info_access,
        read_key,      read_flags,
    };
    static int (*const name_readers[])(dx_tls_cert *) = {read_names, read_altnames};
    size_t n = names_only ? sizeof(name_readers) / sizeof(name_readers[0])
                          : sizeof(readers) / sizeof(readers[0]);
    for (size_t i = 0; i < n; i++) {
        int rc = (names_only ? name_readers : readers)[i](c);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- making and freeing ---- */

static int wrap(X509 *x, bool names_only, dx_tls_cert **out)
{
    if (!out)
        return DX_EINVAL;
    *out = NULL;
    if (!x)
        return DX_EINVAL;
    dx_tls_cert *c = dx_calloc(1, sizeof(*c));
    if (!c)
        return DX_ENOMEM;
    if (!X509_up_ref(x)) {
        dx_free(c);
        return DX_ENOMEM;
    }
    c->x = x;
    dx_live_inc();
    ERR_set_mark();
    int rc = read_all(c, names_only);
    ERR_pop_to_mark();
    if (rc) {
        dx_tls_cert_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int dx_tls_cert_wrap(X509 *x, dx_tls_cert **out) { return wrap(x, false, out); }

int dx_tls_cert_wrap_names(X509 *x, dx_tls_cert **out) { return wrap(x, true, out); }

X509 *dx_tls_cert_x509_internal(const dx_tls_cert *c) { return c ? c->x : NULL; }

void dx_tls_cert_free(dx_tls_cert *c)
{
    if (!c)
        return;
    while (c->blocks) {
        blk *next = c->blocks->next;
        dx_free(c->blocks);
        c->blocks = next;
    }
    X509_free(c->x);
    dx_free(c);
    dx_live_dec();
}

/*
 * A failure of the public constructors. With an OpenSSL error behind it
 * (openssl set), the error object names OpenSSL's root cause, the oldest
 * error, when the queue was empty before the call; else the caller's own
 * errors come first, and it names the newest.
 */
static int input_error(dx_error **err, int code, const char *what,
                       bool openssl, bool queue_was_empty)
{
    if (!err)
        return code;
    unsigned long e = !openssl ? 0
                      : queue_was_empty ? ERR_peek_error()
                                        : ERR_peek_last_error();
    if (e) {
        char name[64], text[256];
        const char *reason = ERR_reason_error_string(e);
        dx_tls_openssl_code(e, name, sizeof(name));
        ERR_error_string_n(e, text, sizeof(text));
        *err = dx_error_new(code, name, "tls", "%s: %s", what,
                            reason ? reason : "unknown reason");
        if (*err)
            dx_error_set_detail(*err, "%s", text);
    } else {
        *err = dx_error_new(code, NULL, "tls", "%s", what);
    }
    return code;
}

/* Wraps x (consumed) into *out; reports a failure to err. */
static int adopt(X509 *x, dx_tls_cert **out, dx_error **err)
{
    int rc = dx_tls_cert_wrap(x, out);
    X509_free(x);
    return rc ? input_error(err, rc, "cannot read the certificate", false, false)
              : 0;
}

/* Checks the common arguments; clears the outputs. */
static int check_args(const void *data, size_t len, dx_tls_cert **out,
                      dx_error **err)
{
    if (err)
        *err = NULL;
    if (out)
        *out = NULL;
    if (!out)
        return input_error(err, DX_EINVAL, "no place for the certificate", false, false);
    if (!data || len == 0)
        return input_error(err, DX_EINVAL, "no certificate given", false, false);
    if (len > INT_MAX)
        return input_error(err, DX_EINVAL, "the input is too long", false, false);
    return 0;
}

/*
 * The parsers behind the public constructors: each returns the certificate,
 * or NULL with *why set when the input is refused for a reason of its own
 * (then *code says which), or NULL alone when OpenSSL refused it.
 */
typedef X509 *parse_fn(const void *data, size_t len, int *code, const char **why);

static X509 *parse_der(const void *der, size_t len, int *code, const char **why)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x && p != (const unsigned char *)der + len) {
        X509_free(x);
        *code = DX_EINVAL;
        *why = "bytes follow the certificate";
        return NULL;
    }
    return x;
}

/* PEM certificates are never encrypted: refuse to ask for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    DX_UNUSED(buf);
    DX_UNUSED(size);
    DX_UNUSED(rwflag);
    DX_UNUSED(u);
    return -1;
}

static X509 *parse_pem(const void *pem, size_t len, int *code, const char **why)
{
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        *code = DX_ENOMEM;
        *why = "out of memory";
        return NULL;
    }
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    return x;
}

static int from_input(const void *data, size_t len, dx_tls_cert **out,
                      dx_error **err, parse_fn *parse, const char *what)
{
    int rc = check_args(data, len, out, err), code = DX_EINVAL;
    if (rc)
        return rc;
    bool was_empty = ERR_peek_error() == 0;
    const char *why = NULL;
    ERR_set_mark();
    X509 *x = parse(data, len, &code, &why);
    if (!x)
        rc = input_error(err, code, why ? why : what, !why, was_empty);
    ERR_pop_to_mark();
    return x ? adopt(x, out, err) : rc;
}

int dx_tls_cert_from_der(const void *der, size_t len, dx_tls_cert **out,
                         dx_error **err)
{
    return from_input(der, len, out, err, parse_der, "not a DER certificate");
}

int dx_tls_cert_from_pem(const void *pem, size_t len, dx_tls_cert **out,
                         dx_error **err)
{
    return from_input(pem, len, out, err, parse_pem, "not a PEM certificate");
}

/* ---- readers ---- */

void *dx_tls_cert_openssl(const dx_tls_cert *c) { return c ? c->x : NULL; }

static int bytes(const dx_tls_cert *c, const uint8_t *p, size_t n,
                 const uint8_t **data, size_t *len)
{
    if (!c || !data || !len)
        return DX_EINVAL;
    *data = p;
    *len = n;
    return 0;
}

int dx_tls_cert_der(const dx_tls_cert *c, const uint8_t **der, size_t *len)
{
    return bytes(c, c ? c->der : NULL, c ? c->der_len : 0, der, len);
}

int dx_tls_cert_pubkey(const dx_tls_cert *c, const uint8_t **data, size_t *len)
{
    return bytes(c, c ? c->pubkey : NULL, c ? c->pubkey_len : 0, data, len);
}

int dx_tls_cert_spki(const dx_tls_cert *c, const uint8_t **data, size_t *len)
{
    return bytes(c, c ? c->spki : NULL, c ? c->spki_len : 0, data, len);
}

const dx_tls_name *dx_tls_cert_subject(const dx_tls_cert *c) { return c ? &c->subject : NULL; }

const dx_tls_name *dx_tls_cert_issuer(const dx_tls_cert *c) { return c ? &c->issuer : NULL; }

size_t dx_tls_name_count(const dx_tls_name *n) { return n ? n->n : 0; }

int dx_tls_name_entry(const dx_tls_name *n, size_t i, const char **key,
                      const char **value, size_t *len)
{
    if (!n || i >= n->n)
        return DX_EINVAL;
    if (key)
        *key = n->e[i].key;
    if (value)
        *value = n->e[i].value;
    if (len)
        *len = n->e[i].len;
    return 0;
}

size_t dx_tls_name_key_count(const dx_tls_name *n, const char *key)
{
    size_t count = 0;
    for (size_t i = 0; n && key && i < n->n; i++)
        count += strcmp(n->e[i].key, key) == 0;
    return count;
}

const char *dx_tls_name_get(const dx_tls_name *n, const char *key, size_t idx)
{
    for (size_t i = 0; n && key && i < n->n; i++)
        if (strcmp(n->e[i].key, key) == 0 && idx-- == 0)
            return n->e[i].value;
    return NULL;
}

const char *dx_tls_cert_valid_from(const dx_tls_cert *c) { return c ? c->valid_from : NULL; }

const char *dx_tls_cert_valid_to(const dx_tls_cert *c) { return c ? c->valid_to : NULL; }

int dx_tls_cert_validity(const dx_tls_cert *c, int64_t *not_before, int64_t *not_after)
{
    if (!c)
        return DX_EINVAL;
    if (not_before)
        *not_before = c->not_before;
    if (not_after)
        *not_after = c->not_after;
    return c->times_ok ? 0 : DX_EPROTO;
}

const char *dx_tls_cert_serial(const dx_tls_cert *c) { return c ? c->serial : NULL; }

const char *dx_tls_cert_fingerprint(const dx_tls_cert *c, dx_tls_digest digest)
{
    if (!c || (unsigned)digest > DX_TLS_SHA512)
        return NULL;
    return c->fingerprint[digest];
}

size_t dx_tls_cert_ext_key_usage_count(const dx_tls_cert *c) { return c ? c->n_eku : 0; }

const char *dx_tls_cert_ext_key_usage(const dx_tls_cert *c, size_t i)
{
    return c && i < c->n_eku ? c->eku[i] : NULL;
}

bool dx_tls_cert_is_ca(const dx_tls_cert *c) { return c && c->is_ca; }

bool dx_tls_cert_is_self_issued(const dx_tls_cert *c) { return c && c->self_issued; }

const char *dx_tls_cert_subjectaltname(const dx_tls_cert *c) { return c ? c->san : NULL; }

size_t dx_tls_cert_altname_count(const dx_tls_cert *c) { return c ? c->n_alt : 0; }

const dx_tls_altname *dx_tls_cert_altname(const dx_tls_cert *c, size_t i)
{
    return c && i < c->n_alt ? &c->alt[i] : NULL;
}

size_t dx_tls_cert_info_access_count(const dx_tls_cert *c) { return c ? c->n_access : 0; }

const dx_tls_access *dx_tls_cert_info_access(const dx_tls_cert *c, size_t i)
{
    return c && i < c->n_access ? &c->access[i] : NULL;
}

const char *dx_tls_cert_key_type(const dx_tls_cert *c) { return c ? c->key_type : NULL; }

int dx_tls_cert_key_bits(const dx_tls_cert *c) { return c ? c->key_bits : 0; }

const char *dx_tls_cert_modulus(const dx_tls_cert *c) { return c ? c->modulus : NULL; }

const char *dx_tls_cert_exponent(const dx_tls_cert *c) { return c ? c->exponent : NULL; }

const char *dx_tls_cert_asn1_curve(const dx_tls_cert *c) { return c ? c->asn1_curve : NULL; }

const char *dx_tls_cert_nist_curve(const dx_tls_cert *c) { return c ? c->nist_curve : NULL; }
