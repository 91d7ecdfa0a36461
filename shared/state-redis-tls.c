/* rediss://: the Redis backend over TLS, where hiredis has hiredis_ssl
   (hiredis 1.0 or later: Debian 13; Debian 12's 0.14 has none, and
   rediss:// is refused there, see state-redis-conn.c).

   The TLS context is ours, not hiredis's redisCreateSSLContext(): that
   one checks the certificate's chain but not that it names the server,
   and any certificate signed by a public CA would do.  Here each
   connection checks both, the name being sni= or the URI's host (an IP
   address is checked as one). */

#include "state-redis.h"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

	return reason != NULL ? reason : "unknown error";
}

int bf_redis_tls_init(struct redis_state *r)
{
	const struct bf_redis_uri *u = &r->uri;
	SSL_CTX *ctx;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return bf_redis_oom(r);
	r->tls = ctx;
	/* Redis 6+ speaks TLS 1.2 and 1.3; nothing older. */
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		return bf_redis_oom(r);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (u->cacert != NULL
	            ? SSL_CTX_load_verify_locations(ctx, u->cacert, NULL) != 1
	            : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		bf_state_set_error(&r->state,
		                   "cannot read the CA certificates %s: %s "
		                   "(cacert=FILE in the URI: a PEM file "
		                   "readable by the mail and milter users)",
		                   u->cacert != NULL ? u->cacert
		                                     : "of the system",
		                   ssl_reason());
		return -1;
	}
	if (u->cert != NULL &&
	    (SSL_CTX_use_certificate_chain_file(ctx, u->cert) != 1 ||
	     SSL_CTX_use_PrivateKey_file(ctx, u->key, SSL_FILETYPE_PEM) != 1 ||
	     SSL_CTX_check_private_key(ctx) != 1)) {
		bf_state_set_error(&r->state,
		                   "cannot use the client certificate %s with "
		                   "the key %s: %s (cert=FILE and key=FILE in "
		                   "the URI: PEM files readable by the mail "
		                   "and milter users, the key matching the "
		                   "certificate)",
		                   u->cert, u->key, ssl_reason());
		return -1;
	}
	return 0;
}

void bf_redis_tls_deinit(struct redis_state *r)
{
	SSL_CTX_free(r->tls);
	r->tls = NULL;
}

/* The name the certificate must carry, and SNI when it is a host name. */
static int tls_set_name(SSL *ssl, const char *name)
{
	unsigned char addr[16];

	if (inet_pton(AF_INET, name, addr) == 1 ||
	    inet_pton(AF_INET6, name, addr) == 1) {
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		                                     name) == 1
		               ? 0
		               : -1;
	}
	if (SSL_set1_host(ssl, name) != 1 ||
	    SSL_set_tlsext_host_name(ssl, name) != 1)
		return -1;
	return 0;
}

int bf_redis_tls_connect(struct redis_state *r, const char *what)
{
	const char *name = r->uri.sni != NULL ? r->uri.sni : r->uri.host;
	struct bf_redis_sigpipe_guard guard;
	long verify;
	SSL *ssl;
	int ret;

	ERR_clear_error();
	ssl = SSL_new(r->tls);
	if (ssl == NULL || tls_set_name(ssl, name) < 0) {
		SSL_free(ssl);
		return bf_redis_oom(r);
	}
	bf_redis_sigpipe_block(&guard);
	ret = redisInitiateSSL(r->ctx, ssl);
	bf_redis_sigpipe_restore(&guard);
	if (ret == REDIS_OK)
		return 0; /* the context owns ssl now */
	/* Still ours after a failure: it says why. */
	verify = SSL_get_verify_result(ssl);
	if (verify == X509_V_ERR_HOSTNAME_MISMATCH ||
	    verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		bf_state_set_error(&r->state,
		                   "%s: TLS: the server's certificate does not "
		                   "name %s (connect by the name in the "
		                   "certificate, or give it as sni=NAME in the "
		                   "URI)",
		                   what, name);
	} else if (verify != X509_V_OK) {
		bf_state_set_error(&r->state,
		                   "%s: TLS: the server's certificate is not "
		                   "trusted: %s (cacert=FILE in the URI must "
		                   "hold the CA that signed redis-server's "
		                   "tls-cert-file)",
		                   what, X509_verify_cert_error_string(verify));
	} else {
		bf_state_set_error(
		        &r->state,
		        "%s: TLS handshake failed: %s (does "
		        "redis-server speak TLS on this port, its "
		        "tls-port? does it want a client certificate "
		        "(cert= and key=)?)",
		        what, r->ctx->errstr);
	}
	SSL_free(ssl);
	return -1;
}
