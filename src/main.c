/* weir: command line -> configuration -> server. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/server.h"

#define DEFAULT_CONFIG "/etc/weir/server.yaml"

static void usage(FILE *out)
{
    fprintf(out, "Usage: weir [-c FILE] [-t]\n"
                 "\n"
                 "A small, fast HTTP/1.1 and HTTP/2 server for /upload, /calc and /cache.\n"
                 "\n"
                 "Options:\n"
                 "  -c, --conf FILE   configuration file (default: " DEFAULT_CONFIG ")\n"
                 "  -t, --test        check the configuration and exit: 0 when valid, 2 otherwise\n"
                 "  -v, --version     print the version and exit\n"
                 "  -h, --help        print this help and exit\n"
                 "\n"
                 "Logs go to stderr. SIGTERM or SIGINT stops accepting, finishes the requests in flight\n"
                 "(bounded by graceful-shutdown-timeout) and exits 0.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"conf", required_argument, NULL, 'c'},
                                             {"test", no_argument, NULL, 't'},
                                             {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *config_file = DEFAULT_CONFIG;
    int test_only = 0, opt;
    weir_server_conf_t conf;
    weir_conf_errors_t errs;

    while ((opt = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_file = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("weir %s\n", WEIR_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "weir: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    weir_conf_errors_init(&errs);
    weir_server_conf_init(&conf);
    if (weir_server_conf_load(&conf, config_file, &errs) != 0) {
        weir_conf_errors_print(&errs);
        fprintf(stderr, "weir: configuration file %s has %zu error(s)\n", config_file, errs.count);
        weir_conf_errors_dispose(&errs);
        weir_server_conf_dispose(&conf);
        return 2;
    }
    weir_conf_errors_dispose(&errs);
    if (test_only) {
        printf("weir: configuration file %s test is successful\n", config_file);
        weir_server_conf_dispose(&conf);
        return 0;
    }

    int ret = weir_server_run(&conf);
    weir_server_conf_dispose(&conf);
    return ret == 0 ? 0 : 1;
}
