/*
 * What a handshake gave, in Node's names: the --info JSON line, and the
 * same fields readable for `dxtls demo`.
 *
 * The JSON line (one object, no newline inside):
 *   {"id":1,"role":"client","protocol":"TLSv1.3",
 *    "cipher":{"name":..,"standardName":..,"version":..},
 *    "alpnProtocol":false|"h2","servername":false|"name",
 *    "authorized":true,"authorizationError":null|"CODE",
 *    "sessionReused":false,
 *    "peerCertificate":{} or {"subject":{"CN":..},"issuer":{..},
 *       "subjectaltname":"DNS:..","valid_from":..,"valid_to":..,
 *       "serialNumber":..,"fingerprint256":..},
 *    "ephemeralKeyInfo":{} or {"type":"ECDH","name":"X25519","size":253},
 *    "ocspStatus":"good"}           (clients that asked for a staple)
 * as tls.TLSSocket's getProtocol(), getCipher(), alpnProtocol, servername,
 * authorized, authorizationError, isSessionReused(), getPeerCertificate()
 * and getEphemeralKeyInfo() give them. A name attribute that appears more
 * than once is an array, as in Node.
 */
#include "config.h"

#include "dxtls.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->failed = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

static void sb_json_strn(sbuf *b, const char *s, size_t len)
{
    sb_add(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sb_add(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sb_add(b, "\\u%04x", c);
        else
            sb_add(b, "%c", c);
    }
    sb_add(b, "\"");
}

void sb_json_str(sbuf *b, const char *s)
{
    if (!s)
        sb_add(b, "null");
    else
        sb_json_strn(b, s, strlen(s));
}

void sb_free(sbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

/* A distinguished name as Node's object: {"C":"..","CN":".."}, a key seen
 * more than once as an array. */
static void json_name(sbuf *b, const dx_tls_name *n)
{
    size_t count = dx_tls_name_count(n);
    bool first = true;
    sb_add(b, "{");
    for (size_t i = 0; i < count; i++) {
        const char *key, *value;
        size_t len;
        if (dx_tls_name_entry(n, i, &key, &value, &len) != 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const char *k2, *v2;
            size_t l2;
            seen = dx_tls_name_entry(n, j, &k2, &v2, &l2) == 0 && !strcmp(k2, key);
        }
        if (seen)
            continue;
        sb_add(b, "%s", first ? "" : ",");
        first = false;
        sb_json_str(b, key);
        sb_add(b, ":");
        if (dx_tls_name_key_count(n, key) == 1) {
            sb_json_strn(b, value, len);
            continue;
        }
        sb_add(b, "[");
        bool f2 = true;
        for (size_t j = i; j < count; j++) {
            const char *k2, *v2;
            size_t l2;
            if (dx_tls_name_entry(n, j, &k2, &v2, &l2) != 0 || strcmp(k2, key))
                continue;
            sb_add(b, "%s", f2 ? "" : ",");
            f2 = false;
            sb_json_strn(b, v2, l2);
        }
        sb_add(b, "]");
    }
    sb_add(b, "}");
}

static const char *ocsp_status(const dx_tls *t)
{
    switch (dx_tls_get_ocsp_result(t)) {
    case DX_TLS_OCSP_NO_STAPLE: return "none";
    case DX_TLS_OCSP_GOOD: return "good";
    case DX_TLS_OCSP_REVOKED: return "revoked";
    case DX_TLS_OCSP_UNKNOWN: return "unknown";
    case DX_TLS_OCSP_INVALID: return "invalid";
    default: return "unchecked";
    }
}

void info_json(sbuf *b, dx_tls *t, unsigned id, bool ocsp)
{
    dx_tls_cipher_info ci = {0};
    dx_tls_kex_info kex = {0};
    const char *alpn = dx_tls_alpn_protocol(t);
    const char *sn = dx_tls_servername(t);
    sb_add(b, "{\"id\":%u,\"role\":\"%s\",\"protocol\":", id,
           dx_tls_get_role(t) == DX_TLS_SERVER ? "server" : "client");
    sb_json_str(b, dx_tls_protocol(t));
    if (dx_tls_cipher(t, &ci) == 0) {
        sb_add(b, ",\"cipher\":{\"name\":");
        sb_json_str(b, ci.name);
        sb_add(b, ",\"standardName\":");
        sb_json_str(b, ci.standard_name);
        sb_add(b, ",\"version\":");
        sb_json_str(b, ci.version);
        sb_add(b, "}");
    } else {
        sb_add(b, ",\"cipher\":null");
    }
    sb_add(b, ",\"alpnProtocol\":");
    if (alpn)
        sb_json_str(b, alpn);
    else
        sb_add(b, "false");
    sb_add(b, ",\"servername\":");
    if (sn)
        sb_json_str(b, sn);
    else
        sb_add(b, "false");
    sb_add(b, ",\"authorized\":%s,\"authorizationError\":",
           dx_tls_authorized(t) ? "true" : "false");
    sb_json_str(b, dx_tls_authorization_error(t));
    sb_add(b, ",\"sessionReused\":%s,\"peerCertificate\":{",
           dx_tls_session_reused(t) ? "true" : "false");
    const dx_tls_cert *c = dx_tls_peer_cert(t);
    if (c) {
        const char *san = dx_tls_cert_subjectaltname(c);
        sb_add(b, "\"subject\":");
        json_name(b, dx_tls_cert_subject(c));
        sb_add(b, ",\"issuer\":");
        json_name(b, dx_tls_cert_issuer(c));
        if (san) {
            sb_add(b, ",\"subjectaltname\":");
            sb_json_str(b, san);
        }
        sb_add(b, ",\"valid_from\":");
        sb_json_str(b, dx_tls_cert_valid_from(c));
        sb_add(b, ",\"valid_to\":");
        sb_json_str(b, dx_tls_cert_valid_to(c));
        sb_add(b, ",\"serialNumber\":");
        sb_json_str(b, dx_tls_cert_serial(c));
        sb_add(b, ",\"fingerprint256\":");
        sb_json_str(b, dx_tls_cert_fingerprint(c, DX_TLS_SHA256));
    }
    sb_add(b, "},\"ephemeralKeyInfo\":{");
    if (dx_tls_ephemeral_key(t, &kex) == 0) {
        sb_add(b, "\"type\":");
        sb_json_str(b, kex.type);
        if (kex.name) {
            sb_add(b, ",\"name\":");
            sb_json_str(b, kex.name);
        }
        sb_add(b, ",\"size\":%d", kex.bits);
    }
    sb_add(b, "}");
    if (ocsp) {
        sb_add(b, ",\"ocspStatus\":");
        sb_json_str(b, ocsp_status(t));
    }
    sb_add(b, "}");
}

/* "CN=a, O=b" */
static void text_name(sbuf *b, const dx_tls_name *n)
{
    size_t count = dx_tls_name_count(n);
    for (size_t i = 0; i < count; i++) {
        const char *key, *value;
        size_t len;
        if (dx_tls_name_entry(n, i, &key, &value, &len) == 0)
            sb_add(b, "%s%s=%s", i ? ", " : "", key, value);
    }
}

void info_text(sbuf *b, dx_tls *t, const char *in)
{
    dx_tls_cipher_info ci = {0};
    dx_tls_kex_info kex = {0};
    const char *alpn = dx_tls_alpn_protocol(t);
    const char *sn = dx_tls_servername(t);
    const char *why = dx_tls_authorization_error(t);
    sb_add(b, "%sprotocol        %s\n", in, dx_tls_protocol(t));
    if (dx_tls_cipher(t, &ci) == 0)
        sb_add(b, "%scipher          %s (IANA %s)\n", in, ci.name, ci.standard_name);
    sb_add(b, "%sserver name     %s\n", in, sn ? sn : "(none)");
    sb_add(b, "%sALPN protocol   %s\n", in, alpn ? alpn : "(none)");
    sb_add(b, "%sauthorized      %s\n", in,
           dx_tls_authorized(t) ? "yes: the peer's certificate was verified"
                                : (why ? why : "no"));
    sb_add(b, "%ssession reused  %s\n", in, dx_tls_session_reused(t) ? "yes" : "no");
    const dx_tls_cert *c = dx_tls_peer_cert(t);
    if (c) {
        const char *san = dx_tls_cert_subjectaltname(c);
        sb_add(b, "%speer            ", in);
        text_name(b, dx_tls_cert_subject(c));
        sb_add(b, "\n%sissued by       ", in);
        text_name(b, dx_tls_cert_issuer(c));
        sb_add(b, "\n");
        if (san)
            sb_add(b, "%saltnames        %s\n", in, san);
        sb_add(b, "%svalid           %s to %s\n", in, dx_tls_cert_valid_from(c),
               dx_tls_cert_valid_to(c));
        sb_add(b, "%sSHA-256         %s\n", in, dx_tls_cert_fingerprint(c, DX_TLS_SHA256));
    } else {
        sb_add(b, "%speer            no certificate\n", in);
    }
    if (dx_tls_ephemeral_key(t, &kex) == 0)
        sb_add(b, "%skey exchange    %s%s%s, %d bits\n", in, kex.type, kex.name ? " " : "",
               kex.name ? kex.name : "", kex.bits);
}
