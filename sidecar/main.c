/* ringside: the sidecar daemon. Parses the command line and hands over to daemon_run. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "daemon.h"
#include "rs_config.h"

static void
usage(FILE *f) {
    fprintf(
        f,
        "usage: ringside --config FILE\n"
        "       ringside --check-config FILE\n"
        "\n"
        "Cache routing sidecar: keeps a consistent-hash ring of a cache tier and answers\n"
        "\"which node owns this key?\" over a Unix socket (RESP: redis-cli -s SOCKET LOOKUP key).\n"
        "\n"
        "  -c, --config FILE        run with this JSON config (see configs/)\n"
        "      --check-config FILE  validate the config and exit (0 valid, 1 invalid)\n"
        "  -h, --help               this text\n"
        "  -V, --version            print the version\n"
        "\n"
        "Signals: SIGHUP reloads the config (a bad file keeps the running one);\n"
        "SIGTERM/SIGINT stop gracefully (finish replies, write state, remove the socket).\n");
}

static int
check_config(const char *path) {
    char *text = NULL;
    size_t len = 0;
    rs_error err = {{0}};
    rs_config cfg;
    rs_config_init(&cfg);
    int rc = daemon_read_file(path, RS_CONFIG_MAX_BYTES, &text, &len, &err);
    if (rc == 0) {
        rc = rs_config_parse(text, len, &cfg, &err);
    }
    free(text);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", path, err.msg);
        return 1;
    }
    printf("%s: ok (ring %s, %zu node%s, source %s)\n", path, cfg.ring_name, cfg.n_nodes,
           cfg.n_nodes == 1 ? "" : "s",
           cfg.source == RS_SOURCE_STATIC      ? "static"
           : cfg.source == RS_SOURCE_CONSUL_KV ? "consul-kv"
                                               : "consul-service");
    rs_config_free(&cfg);
    return 0;
}

int
main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'C':
            return check_config(optarg);
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("ringside %s\n", RINGSIDE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringside: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (config == NULL) {
        fprintf(stderr, "ringside: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    /* libcurl's global state, once, before any thread or handle exists. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "ringside: libcurl failed to initialise\n");
        return 1;
    }
    int rc = daemon_run(config);
    curl_global_cleanup();
    return rc;
}
