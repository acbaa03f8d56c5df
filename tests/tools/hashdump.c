/* hashdump: reads hex keys on stdin (one per line; "-" or an empty line is the empty key)
 * and prints "name hexkey 0xvalue" for each twemproxy hash, for comparison with the oracle. */
#include "rs_error.h"
#include "rs_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(void) {
    char *line = NULL;
    size_t cap = 0;
    char *key = NULL;
    ssize_t got;
    unsigned long lineno = 0;
    int rc = EXIT_SUCCESS;

    while ((got = getline(&line, &cap, stdin)) != -1) {
        size_t n = (size_t)got;
        long klen;

        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            n--;
        }
        if (n == 1 && line[0] == '-') {
            n = 0;
        }
        free(key);
        key = malloc(n / 2 + 1);
        if (key == NULL) {
            fprintf(stderr, "hashdump: out of memory\n");
            rc = EXIT_FAILURE;
            goto cleanup;
        }
        klen = rs_hex_decode(line, n, key);
        if (klen < 0) {
            fprintf(stderr, "hashdump: line %lu: not a hex key\n", lineno);
            rc = EXIT_FAILURE;
            goto cleanup;
        }
        for (unsigned k = 0; k < RS_HASH_XXH3; k++) {
            printf("%s %.*s 0x%08x\n", rs_hash_name((rs_hash_kind)k), n > 0 ? (int)n : 1,
                   n > 0 ? line : "-", (unsigned)rs_hash((rs_hash_kind)k, key, (size_t)klen));
        }
    }
    if (ferror(stdin)) {
        perror("hashdump: stdin");
        rc = EXIT_FAILURE;
    }

cleanup:
    free(key);
    free(line);
    if (fflush(stdout) != 0) {
        rc = EXIT_FAILURE;
    }
    return rc;
}
