/*
 * libduplex: TLS and other filters on any duplex byte channel.
 * The umbrella header: includes every public module.
 */
#ifndef DUPLEX_DUPLEX_H
#define DUPLEX_DUPLEX_H

#include <duplex/common.h>
#include <duplex/error.h>
#include <duplex/stream.h>
#include <duplex/pair.h>
#include <duplex/link.h>
#include <duplex/transport.h>
#include <duplex/fd.h>
#include <duplex/pki.h>
#include <duplex/tls.h>
#include <duplex/tls_cert.h>
#include <duplex/tls_filter.h>
#include <duplex/tls_server.h>
#include <duplex/blocking.h>
#include <duplex/filter.h>
#include <duplex/tap.h>
#include <duplex/netem.h>

#endif /* DUPLEX_DUPLEX_H */
