/*
 * tls_limit: the ceiling of TLS record crypto with mbedtls.  One core
 * seals the N stanzas xmppd blasts into 16 KiB records, as TLS 1.2 carries
 * them, or with -d opens records sealed beforehand (untimed), with the
 * AEAD of the suite the benchmark uses: ChaCha20-Poly1305, or AES-128-GCM
 * with -a.  A relay that decrypts and parses on one thread cannot pass
 * 1 / (1/expat + 1/this).  Best of -r runs (default 3).
 *
 * stdout: "tls N NS" (N stanzas through the AEAD in NS nanoseconds).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/cipher.h>

#include "stanza.h"

#define RECORD	16384
#define TAG	16

static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";

static void
setup(mbedtls_cipher_context_t *ctx, mbedtls_cipher_type_t type,
    mbedtls_operation_t op)
{
	mbedtls_cipher_init(ctx);
	if (mbedtls_cipher_setup(ctx, mbedtls_cipher_info_from_type(type)) ||
	    mbedtls_cipher_setkey(ctx, key,
	    (int)mbedtls_cipher_get_key_bitlen(ctx), op)) {
		fprintf(stderr, "tls_limit: cipher setup\n");
		exit(1);
	}
}

/* Seal (or open) every record of `in' into `out'; records are RECORD + TAG
 * apart in the sealed form. */
static uint64_t
pass(mbedtls_cipher_context_t *ctx, const unsigned char *in,
    unsigned char *out, size_t len, int open)
{
	unsigned char iv[12] = { 0 };
	uint64_t t0 = now_ns(), seq;
	size_t off, n, olen;
	int rc;

	for (off = 0, seq = 0; off < len; off += n, seq++) {
		n = len - off < RECORD ? len - off : RECORD;
		memcpy(iv + 4, &seq, sizeof(seq));
		if (open)
			rc = mbedtls_cipher_auth_decrypt_ext(ctx, iv,
			    sizeof(iv), NULL, 0, in + seq * (RECORD + TAG),
			    n + TAG, out + off, n, &olen, TAG);
		else
			rc = mbedtls_cipher_auth_encrypt_ext(ctx, iv,
			    sizeof(iv), NULL, 0, in + off, n,
			    out + seq * (RECORD + TAG), RECORD + TAG, &olen,
			    TAG);
		if (rc != 0) {
			fprintf(stderr, "tls_limit: -0x%04x\n", -rc);
			exit(1);
		}
	}
	return now_ns() - t0;
}

int
main(int argc, char *argv[])
{
	mbedtls_cipher_type_t type = MBEDTLS_CIPHER_CHACHA20_POLY1305;
	mbedtls_cipher_context_t enc, dec;
	size_t n = 500000, len;
	uint64_t best = UINT64_MAX, t;
	int ch, open = 0, runs = 3, i;
	unsigned char *plain, *sealed, *back;

	while ((ch = getopt(argc, argv, "n:adr:")) != -1) {
		switch (ch) {
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'a': type = MBEDTLS_CIPHER_AES_128_GCM; break;
		case 'd': open = 1; break;
		case 'r': runs = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: tls_limit [-n N] [-a] [-d] "
			    "[-r RUNS]\n");
			return 2;
		}
	}
	plain = (unsigned char *)bench_stanzas(n, 0, "b", 0, &len);
	sealed = bench_alloc((len / RECORD + 1) * (RECORD + TAG));
	back = bench_alloc(len);
	setup(&enc, type, MBEDTLS_ENCRYPT);
	setup(&dec, type, MBEDTLS_DECRYPT);
	for (i = 0; i < runs; i++) {
		t = pass(&enc, plain, sealed, len, 0);
		if (open) {
			t = pass(&dec, sealed, back, len, 1);
			if (memcmp(back, plain, len) != 0) {
				fprintf(stderr, "tls_limit: round trip\n");
				return 1;
			}
		}
		if (t < best)
			best = t;
	}
	printf("tls %zu %llu\n", n, (unsigned long long)best);
	mbedtls_cipher_free(&enc);
	mbedtls_cipher_free(&dec);
	free(plain);
	free(sealed);
	free(back);
	return 0;
}
