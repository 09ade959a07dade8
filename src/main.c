/* weir: command line -> configuration -> server. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "weir/common.h"
#include "weir/control.h"
#include "weir/server.h"

#define DEFAULT_CONFIG "/etc/weir/server.yaml"
/* How long `weir -s reload` waits for the server's verdict (a reload connects to Redis and binds addresses). */
#define CONTROL_TIMEOUT_MS 90000

static void usage(FILE *out)
{
    fprintf(out, "Usage: weir [-c FILE] [-l LEVEL] [-t | -s reload | -s reopen]\n"
                 "\n"
                 "A small, fast HTTP/1.1 and HTTP/2 server for /upload, /calc and /cache.\n"
                 "\n"
                 "Options:\n"
                 "  -c, --conf FILE   configuration file (default: " DEFAULT_CONFIG ")\n"
                 "  -t, --test        check the configuration and exit: 0 when valid, 2 otherwise\n"
                 "  -s, --signal CMD  tell the running server (through the configuration's control-socket) to\n"
                 "                    reload its configuration or reopen its access log, and wait for its verdict:\n"
                 "                    0 when it took it, 1 when it refused it (errors printed), 2 when the file\n"
                 "                    has errors (nothing sent), 3 when the server cannot be reached\n"
                 "  -l, --log-level L debug, info (default), warn or error: the least severe messages logged\n"
                 "  -v, --version     print the version and exit\n"
                 "  -h, --help        print this help and exit\n"
                 "\n"
                 "Logs go to stderr. SIGTERM or SIGINT stops accepting, finishes the requests in flight\n"
                 "(bounded by graceful-shutdown-timeout) and exits 0. SIGHUP reloads the configuration,\n"
                 "SIGUSR1 reopens the access log.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"conf", required_argument, NULL, 'c'},   {"test", no_argument, NULL, 't'},
                                             {"signal", required_argument, NULL, 's'},
                                             {"log-level", required_argument, NULL, 'l'}, {"version", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *config_file = DEFAULT_CONFIG;
    const char *command = NULL;
    int test_only = 0, opt;
    weir_server_conf_t conf;
    weir_conf_errors_t errs;

    while ((opt = getopt_long(argc, argv, "c:ts:l:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_file = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'l': {
            static const char *const LEVELS[] = {"debug", "info", "warn", "error"};
            size_t i = 0;
            while (i != WEIR_ARRAY_SIZE(LEVELS) && strcmp(optarg, LEVELS[i]) != 0)
                ++i;
            if (i == WEIR_ARRAY_SIZE(LEVELS)) {
                fprintf(stderr, "weir: --log-level takes debug, info, warn or error, not \"%s\"\n", optarg);
                return 2;
            }
            weir_log_min_level = (weir_log_level_t)i;
        } break;
        case 's':
            if (strcmp(optarg, "reload") != 0 && strcmp(optarg, "reopen") != 0) {
                fprintf(stderr, "weir: -s takes reload or reopen, not \"%s\"\n", optarg);
                return 2;
            }
            command = optarg;
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
    if (command != NULL) {
        /* The file was checked here first: a reload of a file with errors is refused without bothering the server. */
        int ret = 3;
        if (conf.control_socket == NULL)
            fprintf(stderr, "weir: %s has no control-socket: the running server cannot be told (send it SIGHUP)\n", config_file);
        else {
            int r = weir_control_request(conf.control_socket, command, stdout, CONTROL_TIMEOUT_MS);
            ret = r == 0 ? 0 : r == 1 ? 1 : 3;
        }
        weir_server_conf_dispose(&conf);
        return ret;
    }

    int ret = weir_server_run(config_file, &conf);
    weir_server_conf_dispose(&conf);
    return ret == 0 ? 0 : 1;
}
