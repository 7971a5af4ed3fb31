/*
 * Session tickets (RFC 5077): sealed and opened with the 48-byte key sets
 * of Node's ticketKeys (16-byte name, 16-byte HMAC-SHA256 key, 16-byte
 * AES-128-CBC key), through the EVP callback of OpenSSL 3.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls_internal.h"

/* Keys for connections that belong to no server: made once per process,
 * as Node makes its default ticket keys. */
static CRYPTO_ONCE default_once = CRYPTO_ONCE_STATIC_INIT;
static dx_tls_ticket_keys default_keys;
static bool default_ok;

static void make_default(void) { default_ok = dx_tls_ticket_keys_init(&default_keys) == 0; }

int dx_tls_ticket_keys_init(dx_tls_ticket_keys *keys)
{
    memset(keys, 0, sizeof(*keys));
    return RAND_bytes(keys->cur, sizeof(keys->cur)) == 1 ? 0 : DX_ENOMEM;
}

static dx_tls_ticket_keys *keys_of(SSL *ssl)
{
    dx_tls *t = dx_tls_of_ssl(ssl);
    dx_tls_server *srv = t ? dx_tls_get_server(t) : NULL;
    if (srv)
        return dx_tls_server_ticket_keys(srv);
    if (!CRYPTO_THREAD_run_once(&default_once, make_default) || !default_ok)
        return NULL;
    return &default_keys;
}

/* Sets up the HMAC and the cipher with a 48-byte key set. */
static int use_keys(const uint8_t k[48], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                    EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(k + 16), 16),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (!EVP_MAC_CTX_set_params(hctx, params))
        return 0;
    return enc ? EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k + 32, iv)
               : EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k + 32, iv);
}

int dx_tls_ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    dx_tls_ticket_keys *keys = keys_of(ssl);
    if (!keys)
        return -1;
    if (enc) {
        memcpy(name, keys->cur, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_128_cbc())) != 1)
            return -1;
        return use_keys(keys->cur, iv, cctx, hctx, 1) ? 1 : -1;
    }
    if (memcmp(name, keys->cur, 16) == 0)
        return use_keys(keys->cur, iv, cctx, hctx, 0) ? 1 : -1;
    if (keys->have_prev && memcmp(name, keys->prev, 16) == 0) {
        if (!use_keys(keys->prev, iv, cctx, hctx, 0))
            return -1;
        if (keys != &default_keys) /* a server's: one thread at a time */
            keys->renewed++;
        return 2; /* good, and sealed anew under the current keys */
    }
    if (keys != &default_keys)
        keys->unknown++;
    return 0; /* a key no longer held: a full handshake */
}
