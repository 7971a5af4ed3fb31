/*
 * The server identity check (include/duplex/tls_cert.h): Node.js's
 * tls.checkServerIdentity() over a certificate object, RFC 6125.
 */
#include "config.h"

#include <duplex/tls_cert.h>

#include <arpa/inet.h>
#include <string.h>

/* ---- the message, within what an error object holds ---- */

typedef struct msg {
    char text[256]; /* an error message holds 255 bytes */
    size_t len;
    bool cut;
} msg;

static void msg_put(msg *m, const char *s, size_t n)
{
    size_t room = sizeof(m->text) - 1 - m->len;
    if (n > room) {
        n = room;
        m->cut = true;
    }
    memcpy(m->text + m->len, s, n);
    m->len += n;
    m->text[m->len] = '\0';
}

static void msg_puts(msg *m, const char *s) { msg_put(m, s, strlen(s)); }

/* Ends a message that did not fit with "...", cut between characters. */
static void msg_finish(msg *m)
{
    if (!m->cut)
        return;
    size_t n = sizeof(m->text) - 1 - 3;
    while (n > 0 && ((unsigned char)m->text[n] & 0xc0) == 0x80)
        n--;
    memcpy(m->text + n, "...", 4);
    m->len = n + 3;
}

/* ---- host names ---- */

static char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch; }

static bool same(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

/* One trailing dot off, as Node's unfqdn(). */
static size_t unfqdn(const char *s, size_t n) { return n && s[n - 1] == '.' ? n - 1 : n; }

static size_t count_labels(const char *s, size_t n)
{
    size_t labels = 1;
    for (size_t i = 0; i < n; i++)
        labels += s[i] == '.';
    return labels;
}

/* The length of the label that starts at s (up to the next dot). */
static size_t label_len(const char *s, size_t n)
{
    const char *dot = memchr(s, '.', n);
    return dot ? (size_t)(dot - s) : n;
}

/*
 * Whether a DNS name or CN (pattern, n bytes) names host (h bytes, its
 * trailing dot already gone), with Node's check(): same number of labels,
 * no empty or non-ASCII label in the pattern, the labels after the first
 * equal, and the first equal or matched by a single wildcard.
 */
static bool pattern_matches(const char *host, size_t h, const char *pat, size_t n)
{
    n = unfqdn(pat, n);
    if (n == 0 || count_labels(host, h) != count_labels(pat, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)pat[i];
        if (ch < 0x21 || ch > 0x7f)
            return false;
        if (ch == '.' && (i == 0 || i + 1 == n || pat[i + 1] == '.'))
            return false; /* an empty label */
    }
    size_t h0 = label_len(host, h), p0 = label_len(pat, n);
    if (h - h0 != n - p0 || !same(host + h0, pat + p0, n - p0))
        return false;

    const char *star = memchr(pat, '*', p0);
    bool a_label = false;
    for (size_t i = 0; i + 4 <= p0; i++)
        a_label |= same(pat + i, "xn--", 4);
    /* No wildcard, or one inside an A-label: the label is taken literally. */
    if (!star || a_label)
        return h0 == p0 && same(host, pat, p0);
    size_t prefix = (size_t)(star - pat), suffix = p0 - prefix - 1;
    if (memchr(star + 1, '*', suffix))
        return false; /* more than one wildcard */
    if (count_labels(pat, n) <= 2)
        return false; /* "*.com" */
    /* A wildcard stands for one label, which is never empty. */
    if (h0 == 0 || prefix + suffix > h0)
        return false;
    return same(host, pat, prefix) && same(host + h0 - suffix, star + 1, suffix);
}

/* ---- IP addresses ---- */

/*
 * Whether host is an IP address as Node's net.isIP() sees it (IPv4 dotted
 * quad, IPv6 with an optional %zone); if so its canonical text, the form
 * the certificate object gives "IP Address" names in.
 */
static bool ip_canonical(const char *host, size_t n, char *out, size_t size)
{
    char addr[INET6_ADDRSTRLEN];
    unsigned char bin[16];
    const char *zone = memchr(host, '%', n);
    size_t alen = zone ? (size_t)(zone - host) : n;
    if (alen >= sizeof(addr))
        return false;
    memcpy(addr, host, alen);
    addr[alen] = '\0';
    if (!zone && inet_pton(AF_INET, addr, bin) == 1)
        return inet_ntop(AF_INET, bin, out, (socklen_t)size) != NULL;
    if (zone) {
        if (zone + 1 == host + n)
            return false;
        for (const char *z = zone + 1; z < host + n; z++)
            if (!((*z >= '0' && *z <= '9') || (*z >= 'a' && *z <= 'z') ||
                  (*z >= 'A' && *z <= 'Z') || *z == '-' || *z == '.' || *z == ':'))
                return false;
    }
    return inet_pton(AF_INET6, addr, bin) == 1 &&
           inet_ntop(AF_INET6, bin, out, (socklen_t)size) != NULL;
}

/* ---- the check ---- */

static int fail(dx_error **err, int code, const char *name, const char *text)
{
    if (err)
        *err = dx_error_new(code, name, "tls", "%s", text);
    return code;
}

static bool match_ip(const dx_tls_cert *cert, const char *canon, msg *m)
{
    bool first = true;
    for (size_t i = 0; i < dx_tls_cert_altname_count(cert); i++) {
        const dx_tls_altname *a = dx_tls_cert_altname(cert, i);
        if (a->type != DX_TLS_ALTNAME_IP)
            continue;
        if (strcmp(a->value, canon) == 0)
            return true;
        if (!first)
            msg_puts(m, ", ");
        msg_puts(m, a->value);
        first = false;
    }
    return false;
}

static bool match_dns(const dx_tls_cert *cert, const char *host, size_t h,
                      size_t *dns_names)
{
    *dns_names = 0;
    for (size_t i = 0; i < dx_tls_cert_altname_count(cert); i++) {
        const dx_tls_altname *a = dx_tls_cert_altname(cert, i);
        if (a->type != DX_TLS_ALTNAME_DNS)
            continue;
        ++*dns_names;
        if (pattern_matches(host, h, a->value, a->len))
            return true;
    }
    return false;
}

/* Matches the subject's CNs, and writes them as Node shows them (joined by
 * commas) into m. Returns whether one matched; *present says whether Node
 * would see a CN at all (one non-empty CN, or several). */
static bool match_cn(const dx_tls_cert *cert, const char *host, size_t h,
                     bool *present, msg *m)
{
    const dx_tls_name *subject = dx_tls_cert_subject(cert);
    size_t count = dx_tls_name_key_count(subject, "CN"), seen = 0;
    bool matched = false;
    *present = false;
    for (size_t i = 0; i < dx_tls_name_count(subject); i++) {
        const char *key, *value;
        size_t len;
        dx_tls_name_entry(subject, i, &key, &value, &len);
        if (strcmp(key, "CN") != 0)
            continue;
        *present |= count > 1 || len > 0;
        matched |= pattern_matches(host, h, value, len);
        if (seen++)
            msg_puts(m, ",");
        msg_put(m, value, len);
    }
    return matched;
}

int dx_tls_check_server_identity(const char *host, const dx_tls_cert *cert,
                                 dx_error **err)
{
    if (err)
        *err = NULL;
    if (!host)
        return fail(err, DX_EINVAL, NULL, "no host given");
    if (!cert)
        return fail(err, DX_EINVAL, NULL, "no certificate given");

    /* Node drops one trailing dot for the messages, and another when it
     * splits the name into labels. */
    size_t shown = unfqdn(host, strlen(host));
    size_t h = unfqdn(host, shown);
    msg m = {.len = 0};
    msg_puts(&m, "Hostname/IP does not match certificate's altnames: ");
    char canon[INET6_ADDRSTRLEN];
    size_t dns_names;
    bool cn_present;

    if (ip_canonical(host, shown, canon, sizeof(canon))) {
        msg_puts(&m, "IP: ");
        msg_put(&m, host, shown);
        msg_puts(&m, " is not in the cert's list: ");
        if (match_ip(cert, canon, &m))
            return 0;
    } else if (match_dns(cert, host, h, &dns_names)) {
        return 0;
    } else if (dns_names > 0) {
        const char *san = dx_tls_cert_subjectaltname(cert);
        msg_puts(&m, "Host: ");
        msg_put(&m, host, shown);
        msg_puts(&m, ". is not in the cert's altnames: ");
        msg_puts(&m, san ? san : "");
    } else {
        msg cns = {.len = 0};
        if (match_cn(cert, host, h, &cn_present, &cns))
            return 0;
        if (cn_present) {
            msg_puts(&m, "Host: ");
            msg_put(&m, host, shown);
            msg_puts(&m, ". is not cert's CN: ");
            msg_put(&m, cns.text, cns.len);
            m.cut |= cns.cut;
        } else {
            msg_puts(&m, "Cert does not contain a DNS name");
        }
    }
    msg_finish(&m);
    return fail(err, DX_ETLS, "ERR_TLS_CERT_ALTNAME_INVALID", m.text);
}
