#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "unit.h"
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include "weir/calc.h"
#include "weir/server.h"
#include "weir/upload.h"

#define MAX_FILES 8

/* What every test holds: the parsed conf, its errors, and a temporary directory with the files it wrote. */
typedef struct st_fixture_t {
    weir_server_conf_t conf;
    weir_conf_errors_t errs;
    char dir[128];
    char *files[MAX_FILES];
    size_t num_files;
} fixture_t;

static void fixture_init(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    weir_server_conf_init(&f->conf);
    weir_conf_errors_init(&f->errs);
}

static void fixture_dispose(fixture_t *f)
{
    weir_server_conf_dispose(&f->conf);
    weir_conf_errors_dispose(&f->errs);
    for (size_t i = 0; i != f->num_files; ++i) {
        unlink(f->files[i]);
        free(f->files[i]);
    }
    if (f->dir[0] != '\0')
        assert_int_equal(rmdir(f->dir), 0);
}

/* The path of @p name in the fixture's temporary directory (created on first use); remembered for removal. */
static const char *temp_path(fixture_t *f, const char *name)
{
    char path[256];

    if (f->dir[0] == '\0')
        weir_unit_temp_dir(f->dir, sizeof(f->dir), "weir-test-server-conf");
    assert_true(f->num_files < MAX_FILES);
    snprintf(path, sizeof(path), "%s/%s", f->dir, name);
    f->files[f->num_files] = strdup(path);
    return f->files[f->num_files++];
}

static const char *write_file(fixture_t *f, const char *name, const char *text)
{
    const char *path = temp_path(f, name);
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* Parses @p text, named "conf/x.yaml", into the fixture's conf. @return what weir_server_conf_parse returned. */
static int parse(fixture_t *f, const char *text)
{
    weir_conf_node_t *root = weir_conf_load_string("conf/x.yaml", text, strlen(text), &f->errs);
    int ret;

    assert_non_null(root);
    ret = weir_server_conf_parse(&f->conf, root, &f->errs);
    weir_conf_free(root);
    assert_int_equal(ret, f->errs.count == 0 ? 0 : -1);
    return ret;
}

/* Asserts that @p text fails to parse with exactly the errors given (NULL-terminated). */
static void assert_errors(const char *text, ...)
{
    fixture_t f;
    va_list args;
    const char *expected;
    size_t n = 0;

    fixture_init(&f);
    assert_int_equal(parse(&f, text), -1);
    va_start(args, text);
    while ((expected = va_arg(args, const char *)) != NULL) {
        assert_true(n < f.errs.count);
        assert_string_equal(f.errs.messages[n], expected);
        ++n;
    }
    va_end(args);
    assert_int_equal(f.errs.count, n);
    fixture_dispose(&f);
}

#define HOSTS_OK "hosts:\n  default:\n    paths:\n      /calc:\n        calc.n: 10\n"
#define LISTEN_OK "listen:\n  port: 8080\n"

static const char EXAMPLE[] = "listen:\n"
                              "  port: 8080\n"
                              "  host: 127.0.0.1\n"
                              "num-threads: 2\n"
                              "limit-request-body: 10485760\n"
                              "access-log: /var/log/weir/access.log\n"
                              "hosts:\n"
                              "  default:\n"
                              "    paths:\n"
                              "      /upload:\n"
                              "        upload.concurrency: 5\n"
                              "        upload.delay-min: 100\n"
                              "        upload.delay-max: 200\n"
                              "      /calc:\n"
                              "        calc.n: 1000000\n"
                              "        calc.max-n: 100000000\n"
                              "        calc.threads: 3\n";

static void test_example(void **state)
{
    fixture_t f;
    const weir_upload_settings_t *upload;
    const weir_calc_settings_t *calc;

    fixture_init(&f);
    assert_int_equal(parse(&f, EXAMPLE), 0);
    assert_int_equal(f.conf.num_listeners, 1);
    assert_string_equal(f.conf.listeners[0].host, "127.0.0.1");
    assert_int_equal(f.conf.listeners[0].port, 8080);
    assert_null(f.conf.listeners[0].certificate_file);
    assert_null(f.conf.listeners[0].key_file);
    assert_string_equal(f.conf.listeners[0].where, "conf/x.yaml:2");
    assert_int_equal(f.conf.num_threads, 2);
    assert_true(f.conf.limit_request_body == 10485760);
    assert_string_equal(f.conf.access_log, "/var/log/weir/access.log");
    assert_true(f.conf.graceful_shutdown_timeout_ms == 10000);
    assert_true(f.conf.http1_request_timeout_ms == 60000);
    assert_true(f.conf.http2_idle_timeout_ms == 10000);
    assert_int_equal(f.conf.num_hosts, 1);
    assert_string_equal(f.conf.hosts[0].name, "default");
    assert_int_equal(f.conf.hosts[0].num_paths, 2);

    assert_string_equal(f.conf.hosts[0].paths[0].path, "/upload");
    assert_ptr_equal(f.conf.hosts[0].paths[0].module, &weir_upload_module);
    upload = f.conf.hosts[0].paths[0].settings;
    assert_int_equal(upload->concurrency, 5);
    assert_int_equal(upload->delay_min_ms, 100);
    assert_int_equal(upload->delay_max_ms, 200);

    assert_string_equal(f.conf.hosts[0].paths[1].path, "/calc");
    assert_ptr_equal(f.conf.hosts[0].paths[1].module, &weir_calc_module);
    calc = f.conf.hosts[0].paths[1].settings;
    assert_true(calc->n == 1000000);
    assert_true(calc->max_n == 100000000);
    assert_int_equal(calc->threads, 3);
    fixture_dispose(&f);
}

static void test_defaults(void **state)
{
    fixture_t f;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    const weir_upload_settings_t *upload;
    const weir_calc_settings_t *calc;

    fixture_init(&f);
    assert_int_equal(parse(&f, "listen:\n  port: 0\n"
                               "hosts:\n  default:\n    paths:\n      /u:\n        upload.concurrency: 1\n"
                               "      /c:\n        calc.n: 7\n"),
                     0);
    assert_int_equal(f.conf.num_threads, ncpu < 1 ? 1 : ncpu > 1024 ? 1024 : ncpu);
    assert_true(f.conf.limit_request_body == 10485760);
    assert_null(f.conf.access_log);
    assert_true(f.conf.graceful_shutdown_timeout_ms == 10000);
    assert_true(f.conf.http1_request_timeout_ms == 60000);
    assert_true(f.conf.http2_idle_timeout_ms == 10000);
    assert_int_equal(f.conf.listeners[0].port, 0);
    assert_null(f.conf.listeners[0].host);
    upload = f.conf.hosts[0].paths[0].settings;
    assert_int_equal(upload->concurrency, 1);
    assert_int_equal(upload->delay_min_ms, 100);
    assert_int_equal(upload->delay_max_ms, 200);
    calc = f.conf.hosts[0].paths[1].settings;
    assert_true(calc->n == 7);
    assert_true(calc->max_n == 100000000);
    assert_int_equal(calc->threads, 0); /* one per CPU, chosen when the handler is registered */
    fixture_dispose(&f);
}

static void test_other_settings(void **state)
{
    fixture_t f;

    fixture_init(&f);
    assert_int_equal(parse(&f, LISTEN_OK HOSTS_OK "limit-request-body: 64M\n"
                                                  "graceful-shutdown-timeout: 30\n"
                                                  "http1-request-timeout: 1\n"
                                                  "http2-idle-timeout: 3600\n"
                                                  "access-log: logs/access.log\n"
                                                  "num-threads: 1024\n"),
                     0);
    assert_true(f.conf.limit_request_body == UINT64_C(64) << 20);
    assert_true(f.conf.graceful_shutdown_timeout_ms == 30000);
    assert_true(f.conf.http1_request_timeout_ms == 1000);
    assert_true(f.conf.http2_idle_timeout_ms == 3600000);
    assert_string_equal(f.conf.access_log, "conf/logs/access.log");
    assert_int_equal(f.conf.num_threads, 1024);
    fixture_dispose(&f);

    fixture_init(&f);
    assert_int_equal(parse(&f, LISTEN_OK HOSTS_OK "limit-request-body: 4GiB\n"), 0);
    assert_true(f.conf.limit_request_body == UINT64_C(4) << 30);
    fixture_dispose(&f);
}

static void test_listen_list(void **state)
{
    fixture_t f;

    fixture_init(&f);
    assert_int_equal(parse(&f, "listen:\n"
                               "  - port: 80\n"
                               "  - host: ::1\n"
                               "    port: 65535\n"
                               "  - {port: 0, host: localhost}\n" HOSTS_OK),
                     0);
    assert_int_equal(f.conf.num_listeners, 3);
    assert_int_equal(f.conf.listeners[0].port, 80);
    assert_null(f.conf.listeners[0].host);
    assert_string_equal(f.conf.listeners[0].where, "conf/x.yaml:2");
    assert_int_equal(f.conf.listeners[1].port, 65535);
    assert_string_equal(f.conf.listeners[1].host, "::1");
    assert_string_equal(f.conf.listeners[1].where, "conf/x.yaml:3");
    assert_int_equal(f.conf.listeners[2].port, 0);
    assert_string_equal(f.conf.listeners[2].host, "localhost");
    assert_string_equal(f.conf.listeners[2].where, "conf/x.yaml:5");
    fixture_dispose(&f);
}

static void test_load_file(void **state)
{
    fixture_t f;
    const char *path;
    char expected[256];

    fixture_init(&f);
    path = write_file(&f, "server.yaml", LISTEN_OK HOSTS_OK "access-log: access.log\n");
    assert_int_equal(weir_server_conf_load(&f.conf, path, &f.errs), 0);
    assert_int_equal(f.errs.count, 0);
    snprintf(expected, sizeof(expected), "%s/access.log", f.dir);
    assert_string_equal(f.conf.access_log, expected);
    snprintf(expected, sizeof(expected), "%s:2", path);
    assert_string_equal(f.conf.listeners[0].where, expected);
    fixture_dispose(&f);
}

static void test_load_missing_file(void **state)
{
    fixture_t f;

    fixture_init(&f);
    assert_int_equal(weir_server_conf_load(&f.conf, "/nonexistent-dir/server.yaml", &f.errs), -1);
    assert_int_equal(f.errs.count, 1);
    assert_string_equal(f.errs.messages[0], "/nonexistent-dir/server.yaml: cannot open: No such file or directory");
    fixture_dispose(&f);
}

static void test_load_syntax_error(void **state)
{
    fixture_t f;
    const char *path;
    char expected[256];

    fixture_init(&f);
    path = write_file(&f, "server.yaml", LISTEN_OK "hosts: [\n");
    assert_int_equal(weir_server_conf_load(&f.conf, path, &f.errs), -1);
    assert_int_equal(f.errs.count, 1);
    snprintf(expected, sizeof(expected), "%s:4: YAML syntax error: ", path);
    assert_true(strncmp(f.errs.messages[0], expected, strlen(expected)) == 0);
    fixture_dispose(&f);
}

static void test_unknown_top_level_key(void **state)
{
    assert_errors(LISTEN_OK HOSTS_OK "max-connection: 10\n", "conf/x.yaml:8: unknown key \"max-connection\"", NULL);
}

static void test_unknown_keys_at_every_level(void **state)
{
    assert_errors("listen:\n"
                  "  port: 1\n"
                  "  backlog: 5\n"
                  "hosts:\n"
                  "  default:\n"
                  "    aliases: [x]\n"
                  "    paths:\n"
                  "      /calc:\n"
                  "        calc.n: 1\n",
                  "conf/x.yaml:3: unknown key \"backlog\"", "conf/x.yaml:6: unknown key \"aliases\"", NULL);
}

static void test_unknown_module_key(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /upload:\n        upload.foo: 1\n"
                            "        upload.concurrency: 3\n",
                  "conf/x.yaml:7: unknown key \"upload.foo\"", NULL);
}

static void test_key_of_no_module(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /x:\n        foo.bar: 1\n",
                  "conf/x.yaml:7: key \"foo.bar\" belongs to no module; expected keys starting with \"upload.\", \"calc.\", "
                  "\"cache.\" or \"status.\"",
                  NULL);
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /x:\n        calc.n: 1\n        concurrency: 1\n",
                  "conf/x.yaml:8: key \"concurrency\" belongs to no module; expected keys starting with \"upload.\", \"calc.\", "
                  "\"cache.\" or \"status.\"",
                  NULL);
}

static void test_keys_of_two_modules(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /x:\n        upload.concurrency: 1\n        calc.n: 5\n",
                  "conf/x.yaml:8: key \"calc.n\" belongs to module \"calc\", but this path is served by module \"upload\"", NULL);
}

static void test_path_without_keys(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /x: {}\n      /y:\n      /z: [1]\n",
                  "conf/x.yaml:6: in \"/x\": no keys; expected keys of one module, starting with \"upload.\", \"calc.\", "
                  "\"cache.\" or \"status.\"",
                  "conf/x.yaml:7: in \"/y\": no keys; expected keys of one module, starting with \"upload.\", \"calc.\", "
                  "\"cache.\" or \"status.\"",
                  "conf/x.yaml:8: in \"/z\": expected a mapping, got a sequence", NULL);
}

static void test_path_must_start_with_slash(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      calc:\n        calc.n: 1\n",
                  "conf/x.yaml:6: path \"calc\" must start with \"/\"", NULL);
}

static void test_wrong_types(void **state)
{
    assert_errors("listen: 8080\nhosts: [default]\nnum-threads: {a: 1}\naccess-log: [a]\n",
                  "conf/x.yaml:1: in \"listen\": expected a mapping or a sequence of mappings, got a scalar",
                  "conf/x.yaml:2: in \"hosts\": expected a mapping, got a sequence",
                  "conf/x.yaml:3: in \"num-threads\": expected an integer from 1 to 1024, got a mapping",
                  "conf/x.yaml:4: in \"access-log\": expected a non-empty string, got a sequence", NULL);
    assert_errors("listen:\n  - port: 1\n  - 2\n"
                  "hosts:\n  default: x\n  other:\n    paths: [a]\n",
                  "conf/x.yaml:3: in \"listen\": expected a mapping, got a scalar",
                  "conf/x.yaml:5: in \"default\": expected a mapping, got a scalar",
                  "conf/x.yaml:7: in \"paths\": expected a mapping, got a sequence", NULL);
    assert_errors("- a\n", "conf/x.yaml:1: expected a mapping, got a sequence", NULL);
}

static void test_not_an_integer(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /upload:\n        upload.concurrency: five\n",
                  "conf/x.yaml:7: in \"upload.concurrency\": expected an integer from 1 to 1000000, got \"five\"", NULL);
}

static void test_out_of_range(void **state)
{
    assert_errors("listen:\n  port: 65536\n"
                  "num-threads: 0\n"
                  "limit-request-body: 5G\n"
                  "graceful-shutdown-timeout: 0\n"
                  "http1-request-timeout: 3601\n"
                  "http2-idle-timeout: -1\n"
                  "hosts:\n  default:\n    paths:\n"
                  "      /upload:\n        upload.concurrency: 1000001\n        upload.delay-max: 3600001\n"
                  "      /calc:\n        calc.threads: 0\n      /calc2:\n        calc.threads: 1025\n",
                  "conf/x.yaml:2: in \"port\": expected an integer from 0 to 65535, got \"65536\"",
                  "conf/x.yaml:3: in \"num-threads\": expected an integer from 1 to 1024, got \"0\"",
                  "conf/x.yaml:4: in \"limit-request-body\": expected a size in bytes from 1 to 4294967296 (suffixes K, M, G "
                  "allowed), got \"5G\"",
                  "conf/x.yaml:5: in \"graceful-shutdown-timeout\": expected an integer from 1 to 3600, got \"0\"",
                  "conf/x.yaml:6: in \"http1-request-timeout\": expected an integer from 1 to 3600, got \"3601\"",
                  "conf/x.yaml:7: in \"http2-idle-timeout\": expected an integer from 1 to 3600, got \"-1\"",
                  "conf/x.yaml:12: in \"upload.concurrency\": expected an integer from 1 to 1000000, got \"1000001\"",
                  "conf/x.yaml:13: in \"upload.delay-max\": expected an integer from 0 to 3600000, got \"3600001\"",
                  "conf/x.yaml:15: in \"calc.threads\": expected an integer from 1 to 1024, got \"0\"",
                  "conf/x.yaml:17: in \"calc.threads\": expected an integer from 1 to 1024, got \"1025\"", NULL);
}

static void test_calc_max_n_limit(void **state)
{
    fixture_t f;
    char text[256], expected[256];

    fixture_init(&f);
    snprintf(text, sizeof(text), LISTEN_OK "hosts:\n  default:\n    paths:\n      /calc:\n        calc.max-n: %" PRIu64 "\n",
             WEIR_CALC_N_LIMIT + 1);
    assert_int_equal(parse(&f, text), -1);
    assert_int_equal(f.errs.count, 1);
    snprintf(expected, sizeof(expected),
             "conf/x.yaml:7: in \"calc.max-n\": expected an integer from 0 to %" PRIu64 ", got \"%" PRIu64 "\"", WEIR_CALC_N_LIMIT,
             WEIR_CALC_N_LIMIT + 1);
    assert_string_equal(f.errs.messages[0], expected);
    fixture_dispose(&f);

    fixture_init(&f);
    snprintf(text, sizeof(text), LISTEN_OK "hosts:\n  default:\n    paths:\n      /calc:\n        calc.max-n: %" PRIu64 "\n",
             WEIR_CALC_N_LIMIT);
    assert_int_equal(parse(&f, text), 0);
    assert_true(((const weir_calc_settings_t *)f.conf.hosts[0].paths[0].settings)->max_n == WEIR_CALC_N_LIMIT);
    fixture_dispose(&f);
}

static void test_missing_listen(void **state)
{
    assert_errors(HOSTS_OK, "conf/x.yaml:1: missing \"listen\"", NULL);
}

static void test_missing_hosts(void **state)
{
    assert_errors(LISTEN_OK, "conf/x.yaml:1: missing \"hosts\"", NULL);
    assert_errors("", "conf/x.yaml:1: missing \"listen\"", "conf/x.yaml:1: missing \"hosts\"", NULL);
    assert_errors(LISTEN_OK "hosts: {}\n", "conf/x.yaml:3: in \"hosts\": expected at least one host", NULL);
}

static void test_missing_port(void **state)
{
    assert_errors("listen:\n  host: 127.0.0.1\n" HOSTS_OK, "conf/x.yaml:2: in \"listen\": missing \"port\"", NULL);
    assert_errors("listen: []\n" HOSTS_OK, "conf/x.yaml:1: in \"listen\": expected at least one listener", NULL);
}

static void test_missing_paths(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths: {}\n  other: {}\n",
                  "conf/x.yaml:5: in \"paths\": expected at least one path", "conf/x.yaml:6: in \"other\": missing \"paths\"",
                  NULL);
}

/* h2o compares host names without case and refuses a second registration of one: "Example.com" and "example.COM"
 * passed `weir -t`, then weir_server_setup_globalconf dereferenced the NULL that h2o returned. */
static void test_hosts_equal_without_case(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  Example.com:\n    paths:\n      /calc: {calc.n: 1}\n"
                            "  example.COM:\n    paths:\n      /calc: {calc.n: 2}\n",
                  "conf/x.yaml:7: host \"example.COM\" is the same as \"Example.com\" (line 4): host names are compared "
                  "without case",
                  NULL);
}

/* The same two hosts given to weir_server_setup_globalconf directly: an error, not a crash. */
static void test_setup_refuses_hosts_equal_without_case(void **state)
{
    fixture_t f;
    h2o_globalconf_t gc;

    fixture_init(&f);
    assert_int_equal(parse(&f, LISTEN_OK "hosts:\n  a.example:\n    paths:\n      /calc: {calc.n: 1}\n"
                                         "  b.example:\n    paths:\n      /calc: {calc.n: 2}\n"),
                     0);
    free(f.conf.hosts[1].name);
    f.conf.hosts[1].name = strdup("A.Example");
    assert_int_equal(weir_server_setup_globalconf(&gc, &f.conf, NULL), -EEXIST);
    h2o_config_dispose(&gc);
    fixture_dispose(&f);
}

static void test_delay_min_greater_than_max(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /upload:\n        upload.delay-min: 300\n"
                            "        upload.delay-max: 200\n",
                  "conf/x.yaml:7: in \"/upload\": upload.delay-min (300) must not exceed upload.delay-max (200)", NULL);
    /* Against the default maximum (200). */
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /upload:\n        upload.delay-min: 201\n",
                  "conf/x.yaml:7: in \"/upload\": upload.delay-min (201) must not exceed upload.delay-max (200)", NULL);
}

static void test_n_greater_than_max_n(void **state)
{
    assert_errors(LISTEN_OK "hosts:\n  default:\n    paths:\n      /calc:\n        calc.n: 11\n        calc.max-n: 10\n",
                  "conf/x.yaml:7: in \"/calc\": calc.n (11) must not exceed calc.max-n (10)", NULL);
}

static void test_several_errors(void **state)
{
    assert_errors(
        "listen:\n"
        "  port: 99999\n"
        "  bogus: 1\n"
        "num-threads: zero\n"
        "hosts:\n"
        "  default:\n"
        "    paths:\n"
        "      /upload:\n"
        "        upload.concurrency: 0\n"
        "        calc.n: 5\n"
        "      calc:\n"
        "        calc.n: 1\n"
        "      /calc:\n"
        "        calc.n: 2\n"
        "        calc.max-n: 1\n"
        "unknown: 1\n",
        "conf/x.yaml:2: in \"port\": expected an integer from 0 to 65535, got \"99999\"", "conf/x.yaml:3: unknown key \"bogus\"",
        "conf/x.yaml:4: in \"num-threads\": expected an integer from 1 to 1024, got \"zero\"",
        "conf/x.yaml:9: in \"upload.concurrency\": expected an integer from 1 to 1000000, got \"0\"",
        "conf/x.yaml:10: key \"calc.n\" belongs to module \"calc\", but this path is served by module \"upload\"",
        "conf/x.yaml:11: path \"calc\" must start with \"/\"",
        "conf/x.yaml:14: in \"/calc\": calc.n (2) must not exceed calc.max-n (1)", "conf/x.yaml:16: unknown key \"unknown\"", NULL);
}

/* Generates a P-256 key. */
static EVP_PKEY *generate_key(void)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    EVP_PKEY *pkey = NULL;

    assert_non_null(ctx);
    assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
    assert_true(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx, NID_X9_62_prime256v1) > 0);
    assert_int_equal(EVP_PKEY_keygen(ctx, &pkey), 1);
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static void write_key(const char *path, EVP_PKEY *pkey)
{
    BIO *bio = BIO_new_file(path, "w");

    assert_non_null(bio);
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(bio);
}

/* Writes a self-signed certificate for @p pkey. */
static void write_cert(const char *path, EVP_PKEY *pkey)
{
    X509 *x509 = X509_new();
    X509_NAME *name;
    BIO *bio;

    assert_non_null(x509);
    assert_int_equal(X509_set_version(x509, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x509), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x509), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x509), 3600));
    assert_int_equal(X509_set_pubkey(x509, pkey), 1);
    name = X509_get_subject_name(x509);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0), 1);
    assert_int_equal(X509_set_issuer_name(x509, name), 1);
    assert_true(X509_sign(x509, pkey, EVP_sha256()) > 0);
    assert_non_null(bio = BIO_new_file(path, "w"));
    assert_int_equal(PEM_write_bio_X509(bio, x509), 1);
    BIO_free(bio);
    X509_free(x509);
}

/* Writes server.crt and server.key (a matching pair) and other.key (another key) into the fixture's directory. */
static void write_tls_files(fixture_t *f, const char **cert, const char **key, const char **other_key)
{
    EVP_PKEY *pkey = generate_key(), *other = generate_key();

    *cert = temp_path(f, "server.crt");
    *key = temp_path(f, "server.key");
    *other_key = temp_path(f, "other.key");
    write_cert(*cert, pkey);
    write_key(*key, pkey);
    write_key(*other_key, other);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(other);
}

static int parse_ssl(fixture_t *f, const char *cert, const char *key)
{
    char text[1024];

    snprintf(text, sizeof(text), "listen:\n  port: 8443\n  ssl:\n    certificate-file: %s\n    key-file: %s\n" HOSTS_OK, cert, key);
    return parse(f, text);
}

static void test_ssl(void **state)
{
    fixture_t f;
    const char *cert, *key, *other_key;

    fixture_init(&f);
    write_tls_files(&f, &cert, &key, &other_key);
    assert_int_equal(parse_ssl(&f, cert, key), 0);
    assert_string_equal(f.conf.listeners[0].certificate_file, cert);
    assert_string_equal(f.conf.listeners[0].key_file, key);
    assert_int_equal(f.conf.listeners[0].port, 8443);
    fixture_dispose(&f);
}

static void test_ssl_missing_files(void **state)
{
    fixture_t f;
    char expected[512];
    const char *cert;

    fixture_init(&f);
    cert = temp_path(&f, "none.crt");
    assert_int_equal(parse_ssl(&f, cert, "/nonexistent-dir/none.key"), -1);
    assert_int_equal(f.errs.count, 2);
    snprintf(expected, sizeof(expected),
             "conf/x.yaml:4: in \"certificate-file\": cannot read file \"%s\": No such file or directory", cert);
    assert_string_equal(f.errs.messages[0], expected);
    assert_string_equal(f.errs.messages[1], "conf/x.yaml:5: in \"key-file\": cannot read file \"/nonexistent-dir/none.key\": No "
                                            "such file or directory");
    fixture_dispose(&f);

    assert_errors("listen:\n  port: 1\n  ssl:\n    key-file: /dev/null\n" HOSTS_OK,
                  "conf/x.yaml:4: in \"ssl\": missing \"certificate-file\"", NULL);
    assert_errors("listen:\n  port: 1\n  ssl: {certificate-file: /dev/null, ciphers: x}\n" HOSTS_OK,
                  "conf/x.yaml:3: unknown key \"ciphers\"", "conf/x.yaml:3: in \"ssl\": missing \"key-file\"", NULL);
    assert_errors("listen:\n  port: 1\n  ssl: on\n" HOSTS_OK, "conf/x.yaml:3: in \"ssl\": expected a mapping, got a scalar", NULL);
}

static void test_ssl_bad_certificate(void **state)
{
    fixture_t f;
    char expected[512];
    const char *cert, *key, *other_key, *garbage;

    fixture_init(&f);
    write_tls_files(&f, &cert, &key, &other_key);
    garbage = write_file(&f, "garbage.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    assert_int_equal(parse_ssl(&f, garbage, key), -1);
    assert_int_equal(f.errs.count, 1);
    snprintf(expected, sizeof(expected), "conf/x.yaml:4: in \"certificate-file\": cannot load certificate \"%s\": ", garbage);
    assert_true(strncmp(f.errs.messages[0], expected, strlen(expected)) == 0);
    assert_true(strlen(f.errs.messages[0]) > strlen(expected));
    fixture_dispose(&f);

    /* A key where the certificate should be, and a certificate where the key should be. */
    fixture_init(&f);
    write_tls_files(&f, &cert, &key, &other_key);
    assert_int_equal(parse_ssl(&f, key, cert), -1);
    assert_int_equal(f.errs.count, 2);
    snprintf(expected, sizeof(expected), "conf/x.yaml:4: in \"certificate-file\": cannot load certificate \"%s\": ", key);
    assert_true(strncmp(f.errs.messages[0], expected, strlen(expected)) == 0);
    snprintf(expected, sizeof(expected), "conf/x.yaml:5: in \"key-file\": cannot load private key \"%s\": ", cert);
    assert_true(strncmp(f.errs.messages[1], expected, strlen(expected)) == 0);
    assert_true(strlen(f.errs.messages[1]) > strlen(expected));
    fixture_dispose(&f);
}

static void test_ssl_key_mismatch(void **state)
{
    fixture_t f;
    char expected[512];
    const char *cert, *key, *other_key;

    fixture_init(&f);
    write_tls_files(&f, &cert, &key, &other_key);
    assert_int_equal(parse_ssl(&f, cert, other_key), -1);
    assert_int_equal(f.errs.count, 1);
    snprintf(expected, sizeof(expected), "conf/x.yaml:5: in \"key-file\": private key \"%s\" does not match certificate \"%s\"",
             other_key, cert);
    assert_string_equal(f.errs.messages[0], expected);
    fixture_dispose(&f);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_example), cmocka_unit_test(test_defaults), cmocka_unit_test(test_other_settings),
                cmocka_unit_test(test_listen_list), cmocka_unit_test(test_load_file), cmocka_unit_test(test_load_missing_file),
                cmocka_unit_test(test_load_syntax_error), cmocka_unit_test(test_unknown_top_level_key),
                cmocka_unit_test(test_unknown_keys_at_every_level), cmocka_unit_test(test_unknown_module_key),
                cmocka_unit_test(test_key_of_no_module), cmocka_unit_test(test_keys_of_two_modules),
                cmocka_unit_test(test_path_without_keys), cmocka_unit_test(test_path_must_start_with_slash),
                cmocka_unit_test(test_wrong_types), cmocka_unit_test(test_not_an_integer), cmocka_unit_test(test_out_of_range),
                cmocka_unit_test(test_calc_max_n_limit), cmocka_unit_test(test_missing_listen),
                cmocka_unit_test(test_missing_hosts), cmocka_unit_test(test_missing_port), cmocka_unit_test(test_missing_paths),
                cmocka_unit_test(test_hosts_equal_without_case), cmocka_unit_test(test_setup_refuses_hosts_equal_without_case),
                cmocka_unit_test(test_delay_min_greater_than_max), cmocka_unit_test(test_n_greater_than_max_n),
                cmocka_unit_test(test_several_errors), cmocka_unit_test(test_ssl), cmocka_unit_test(test_ssl_missing_files),
                cmocka_unit_test(test_ssl_bad_certificate), cmocka_unit_test(test_ssl_key_mismatch))
