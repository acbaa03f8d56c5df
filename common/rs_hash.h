/* Key hash functions: all twelve of twemproxy 0.5.0's, with its exact amd64 semantics
 * (signed char bytes where twemproxy has them), plus XXH3 as a modern fast hash. */
#ifndef RS_HASH_H
#define RS_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef enum rs_hash_kind {
    RS_HASH_ONE_AT_A_TIME = 0,
    RS_HASH_MD5,
    RS_HASH_CRC16,
    RS_HASH_CRC32,
    RS_HASH_CRC32A,
    RS_HASH_FNV1_64,
    RS_HASH_FNV1A_64,
    RS_HASH_FNV1_32,
    RS_HASH_FNV1A_32,
    RS_HASH_HSIEH,
    RS_HASH_MURMUR,
    RS_HASH_JENKINS,
    RS_HASH_XXH3, /* XXH3_64bits, low 32 bits; not a twemproxy hash */
    RS_HASH_COUNT
} rs_hash_kind;

typedef uint32_t (*rs_hash_fn)(const char *key, size_t len);

/* The function for a kind; kind must be < RS_HASH_COUNT. */
rs_hash_fn rs_hash_get(rs_hash_kind kind);

/* Hash key[0..len) with the given function. */
uint32_t rs_hash(rs_hash_kind kind, const char *key, size_t len);

/* Name <-> kind. Names are twemproxy's ("fnv1a_64", "one_at_a_time", ...) and "xxh3".
 * rs_hash_from_name returns 0, or -EINVAL for an unknown name. */
int rs_hash_from_name(const char *name, rs_hash_kind *out);
const char *rs_hash_name(rs_hash_kind kind);

/* MD5 of data[0..len) into out. */
void rs_md5(const void *data, size_t len, unsigned char out[16]);

/* The individual functions (each also reachable through rs_hash_get). */
uint32_t rs_hash_one_at_a_time(const char *key, size_t len);
uint32_t rs_hash_md5(const char *key, size_t len);
uint32_t rs_hash_crc16(const char *key, size_t len);
uint32_t rs_hash_crc32(const char *key, size_t len);
uint32_t rs_hash_crc32a(const char *key, size_t len);
uint32_t rs_hash_fnv1_64(const char *key, size_t len);
uint32_t rs_hash_fnv1a_64(const char *key, size_t len);
uint32_t rs_hash_fnv1_32(const char *key, size_t len);
uint32_t rs_hash_fnv1a_32(const char *key, size_t len);
uint32_t rs_hash_hsieh(const char *key, size_t len);
uint32_t rs_hash_murmur(const char *key, size_t len);
uint32_t rs_hash_jenkins(const char *key, size_t len);
uint32_t rs_hash_xxh3(const char *key, size_t len);

#endif
