#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "unit.h"
#include "weir/config.h"
#include "weir/upload.h"
#include "weir/upload_backend.h"

/* ---- pure helpers -------------------------------------------------------------------------------------------------- */

static void test_extension(void **state)
{
    static const struct {
        const char *type, *ext;
    } cases[] = {
        {"image/jpeg", ".jpg"},
        {"IMAGE/JPEG", ".jpg"},
        {"image/jpeg; q=1", ".jpg"},
        {"image/png", ".png"},
        {"image/gif", ".gif"},
        {"image/webp", ".webp"},
        {"image/svg+xml", ".svg"},
        {"image/jpegx", ""},
        {"image/jpe", ""},
        {"application/octet-stream", ""},
        {"", ""},
        {"text/plain", ""},
        {"image/png\t;x=y", ".png"},
    };
    for (size_t i = 0; i != sizeof(cases) / sizeof(cases[0]); ++i)
        assert_string_equal(weir_upload_s3_extension(cases[i].type, strlen(cases[i].type)), cases[i].ext);
    /* only the given length is read */
    assert_string_equal(weir_upload_s3_extension("image/pngXYZ", 9), ".png");
}

static void test_error_code(void **state)
{
    char code[32];
    const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The "
                      "request signature we calculated does not match</Message></Error>";

    assert_int_equal(weir_upload_s3_error_code(doc, strlen(doc), code, sizeof(code)), 0);
    assert_string_equal(code, "SignatureDoesNotMatch");
    doc = "<Error><Code>NoSuchBucket</Code></Error>";
    assert_int_equal(weir_upload_s3_error_code(doc, strlen(doc), code, sizeof(code)), 0);
    assert_string_equal(code, "NoSuchBucket");
    doc = "<Error><Code>Slow.Down2</Code>";
    assert_int_equal(weir_upload_s3_error_code(doc, strlen(doc), code, sizeof(code)), 0);
    assert_string_equal(code, "Slow.Down2");

    static const char *const bad[] = {
        "",
        "<Error><Message>no code</Message></Error>",
        "<Error><Code></Code></Error>",
        "<Error><Code>Two Words</Code></Error>",
        "<Error><Code><b>x</b></Code></Error>",
        "<Error><Code>Unterminated",
        "<Error><Code>AnErrorCodeFarTooLongForTheBufferGiven</Code></Error>",
        "<html>502 Bad Gateway</html>",
    };
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        strcpy(code, "unchanged");
        assert_int_equal(weir_upload_s3_error_code(bad[i], strlen(bad[i]), code, sizeof(code)), -ENOENT);
        assert_string_equal(code, "unchanged");
    }
    /* the length bounds the search: a Code element beyond it is not seen */
    doc = "<Error><Code>Cut</Code>";
    assert_int_equal(weir_upload_s3_error_code(doc, 12, code, sizeof(code)), -ENOENT);
}

static void test_check_endpoint(void **state)
{
    static const char *const good[] = {"http://127.0.0.1:4569",       "https://s3.eu-west-3.amazonaws.example",
                                       "http://minio:9000/",          "http://[::1]:9000",
                                       "https://a-b.c_d.example:443", "http://h"};
    static const char *const bad[] = {"ftp://h",      "http://",         "http:///x",  "http://h:0",   "http://h:65536",
                                      "http://h:",    "http://h/bucket", "http://u@h", "http://h?x=1", "http://[::1",
                                      "http://[]:80", "h:9000",          "HTTP//h",    "http://h:80x", "http://h h"};
    char reason[160];

    for (size_t i = 0; i != sizeof(good) / sizeof(good[0]); ++i)
        assert_int_equal(weir_upload_s3_check_endpoint(good[i], reason, sizeof(reason)), 0);
    for (size_t i = 0; i != sizeof(bad) / sizeof(bad[0]); ++i) {
        reason[0] = '\0';
        assert_int_equal(weir_upload_s3_check_endpoint(bad[i], reason, sizeof(reason)), -EINVAL);
        assert_true(reason[0] != '\0');
    }
}

/* ---- the configuration keys ---------------------------------------------------------------------------------------- */

typedef struct st_conf_t {
    weir_upload_settings_t s;
    weir_conf_errors_t errs;
    char dir[128];
} conf_t;

static void conf_init(conf_t *c)
{
    memset(c, 0, sizeof(*c));
    weir_upload_module.init_settings(&c->s);
    weir_conf_errors_init(&c->errs);
    weir_unit_temp_dir(c->dir, sizeof(c->dir), "weir-test-upload-s3");
}

static void conf_dispose(conf_t *c)
{
    weir_upload_module.dispose_settings(&c->s);
    weir_conf_errors_dispose(&c->errs);
    assert_int_equal(weir_unit_remove_tree(c->dir), 0);
}

/* Writes @p text into the conf's directory as @p name; returns its path (static storage, one at a time). */
static const char *conf_file(conf_t *c, const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", c->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* Applies the keys of the mapping in @p yaml (printf format) as a path of a file "conf/x.yaml" would, then the module's
 * check. @return 0, or -1 with errors in c->errs. */
static int apply(conf_t *c, const char *fmt, ...)
{
    char text[2048];
    va_list args;
    int ret = 0;

    va_start(args, fmt);
    vsnprintf(text, sizeof(text), fmt, args);
    va_end(args);
    weir_conf_node_t *root = weir_conf_load_string("conf/x.yaml", text, strlen(text), &c->errs);
    assert_non_null(root);
    for (size_t i = 0; i != root->data.mapping.size; ++i) {
        const weir_conf_pair_t *pair = root->data.mapping.elements + i;
        int r = weir_upload_module.parse_key(&c->s, pair->key->data.scalar.str, pair->value, &c->errs);
        assert_int_not_equal(r, 1); /* every key is known */
        if (r != 0)
            ret = -1;
    }
    if (ret == 0 && weir_upload_module.check(&c->s, root, &c->errs) != 0)
        ret = -1;
    weir_conf_free(root);
    assert_int_equal(ret == 0, c->errs.count == 0);
    return ret;
}

static int has_error(const conf_t *c, const char *part)
{
    for (size_t i = 0; i != c->errs.count; ++i)
        if (strstr(c->errs.messages[i], part) != NULL)
            return 1;
    return 0;
}

static void clear_env(void)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
}

static void test_conf_defaults_stay_delay(void **state)
{
    conf_t c;
    conf_init(&c);
    assert_int_equal(apply(&c, "upload.concurrency: 7\n"), 0);
    assert_int_equal(c.s.backend, WEIR_UPLOAD_BACKEND_DELAY);
    assert_int_equal(c.s.s3.timeout_ms, 30000);
    assert_int_equal(weir_upload_module.fds_per_thread(&c.s), 0);
    conf_dispose(&c);
}

static void test_conf_full(void **state)
{
    conf_t c;
    clear_env();
    conf_init(&c);
    const char *secret = conf_file(&c, "s3.secret", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n\n");
    assert_int_equal(apply(&c,
                           "upload.concurrency: 12\n"
                           "upload.backend: s3\n"
                           "upload.s3.endpoint: https://s3.example:9000/\n"
                           "upload.s3.region: eu-west-3\n"
                           "upload.s3.bucket: images\n"
                           "upload.s3.key-prefix: \"\"\n"
                           "upload.s3.access-key-id: AKIDEXAMPLE\n"
                           "upload.s3.secret-access-key-file: %s\n"
                           "upload.s3.timeout: 2500\n",
                           secret),
                     0);
    assert_int_equal(c.s.backend, WEIR_UPLOAD_BACKEND_S3);
    assert_string_equal(c.s.s3.endpoint, "https://s3.example:9000/");
    assert_string_equal(c.s.s3.region, "eu-west-3");
    assert_string_equal(c.s.s3.bucket, "images");
    assert_string_equal(c.s.s3.key_prefix, "");
    assert_string_equal(c.s.s3.access_key_id, "AKIDEXAMPLE");
    assert_string_equal(c.s.s3.secret_access_key, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    assert_null(c.s.s3.session_token);
    assert_int_equal(c.s.s3.timeout_ms, 2500);
    /* one connection per slot, at most 64, unless told */
    assert_int_equal(weir_upload_module.fds_per_thread(&c.s), 12);
    c.s.concurrency = 1000;
    assert_int_equal(weir_upload_module.fds_per_thread(&c.s), 64);
    assert_int_equal(apply(&c, "upload.s3.max-connections: 3\n"), 0);
    assert_int_equal(weir_upload_module.fds_per_thread(&c.s), 3);
    conf_dispose(&c);
}

static void test_conf_errors_name_the_place(void **state)
{
    static const struct {
        const char *yaml, *error;
    } cases[] = {
        {"upload.backend: s4\n", "conf/x.yaml:1: in \"upload.backend\": expected delay or s3, got \"s4\""},
        {"upload.s3.endpoint: ftp://x\n", "conf/x.yaml:1: in \"upload.s3.endpoint\": expected an http:// or https:// URL"},
        {"upload.s3.timeout: 0\n", "conf/x.yaml:1: in \"upload.s3.timeout\": expected an integer from 1 to 3600000"},
        {"upload.s3.bucket: \"a b\"\n", "conf/x.yaml:1: in \"upload.s3.bucket\": a bucket name holds only"},
        {"upload.s3.access-key-id: \"AK/ID\"\n", "conf/x.yaml:1: in \"upload.s3.access-key-id\": an access key id"},
        {"upload.s3.secret-access-key-file: /nonexistent/weir.secret\n",
         "conf/x.yaml:1: in \"upload.s3.secret-access-key-file\": cannot read file \"/nonexistent/weir.secret\""},
        {"upload.concurrency: 1\nupload.s3.key-prefix: \"a\\x01b\"\n", "conf/x.yaml:2: in \"upload.s3.key-prefix\": a key prefix"},
    };
    for (size_t i = 0; i != sizeof(cases) / sizeof(cases[0]); ++i) {
        conf_t c;
        conf_init(&c);
        assert_int_equal(apply(&c, "%s", cases[i].yaml), -1);
        assert_int_equal(c.errs.count, 1);
        if (strncmp(c.errs.messages[0], cases[i].error, strlen(cases[i].error)) != 0)
            fail_msg("got \"%s\", expected \"%s...\"", c.errs.messages[0], cases[i].error);
        conf_dispose(&c);
    }
}

static void test_conf_secret_file(void **state)
{
    conf_t c;
    clear_env();
    conf_init(&c);
    const char *empty = conf_file(&c, "empty", " \n\n");
    assert_int_equal(apply(&c, "upload.s3.secret-access-key-file: %s\n", empty), -1);
    assert_true(has_error(&c, "conf/x.yaml:1: in \"upload.s3.secret-access-key-file\""));
    assert_true(has_error(&c, "is empty"));
    conf_dispose(&c);

    conf_init(&c);
    const char *two = conf_file(&c, "two-lines", "first\nsecond\n");
    assert_int_equal(apply(&c, "upload.s3.secret-access-key-file: %s\n", two), -1);
    assert_true(has_error(&c, "on one line"));
    conf_dispose(&c);

    /* a relative name is read next to the configuration file */
    conf_init(&c);
    conf_file(&c, "rel.secret", "s3cr3t");
    char yaml_path[300];
    snprintf(yaml_path, sizeof(yaml_path), "%s/server.yaml", c.dir);
    FILE *fp = fopen(yaml_path, "w");
    assert_non_null(fp);
    fputs("upload.backend: s3\nupload.s3.endpoint: http://h\nupload.s3.bucket: b\nupload.s3.access-key-id: AK\n"
          "upload.s3.secret-access-key-file: rel.secret\n",
          fp);
    fclose(fp);
    weir_conf_node_t *root = weir_conf_load_file(yaml_path, &c.errs);
    assert_non_null(root);
    for (size_t i = 0; i != root->data.mapping.size; ++i)
        assert_int_equal(weir_upload_module.parse_key(&c.s, root->data.mapping.elements[i].key->data.scalar.str,
                                                      root->data.mapping.elements[i].value, &c.errs),
                         0);
    assert_int_equal(weir_upload_module.check(&c.s, root, &c.errs), 0);
    weir_conf_free(root);
    assert_string_equal(c.s.s3.secret_access_key, "s3cr3t");
    conf_dispose(&c);
}

static void test_conf_required_keys_and_credentials(void **state)
{
    conf_t c;
    clear_env();

    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.bucket: b\n"), -1);
    assert_true(has_error(&c, "conf/x.yaml:1: upload.backend is s3: upload.s3.endpoint is required"));
    conf_dispose(&c);

    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.endpoint: http://h\n"), -1);
    assert_true(has_error(&c, "upload.s3.bucket is required"));
    conf_dispose(&c);

    /* a key id without a secret */
    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.endpoint: http://h\nupload.s3.bucket: b\n"
                               "upload.s3.access-key-id: AK\n"),
                     -1);
    assert_true(has_error(&c, "go together"));
    conf_dispose(&c);

    /* nothing in the file nor in the environment */
    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.endpoint: http://h\nupload.s3.bucket: b\n"), -1);
    assert_true(has_error(&c, "AWS_ACCESS_KEY_ID"));
    conf_dispose(&c);

    /* the environment's, session token included */
    setenv("AWS_ACCESS_KEY_ID", "ASIAENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    setenv("AWS_SESSION_TOKEN", "tok3n", 1);
    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.endpoint: http://h\nupload.s3.bucket: b\n"), 0);
    assert_string_equal(c.s.s3.access_key_id, "ASIAENV");
    assert_string_equal(c.s.s3.secret_access_key, "envsecret");
    assert_string_equal(c.s.s3.session_token, "tok3n");
    conf_dispose(&c);

    /* a bad key id from the environment is reported too */
    setenv("AWS_ACCESS_KEY_ID", "AS IA", 1);
    conf_init(&c);
    assert_int_equal(apply(&c, "upload.backend: s3\nupload.s3.endpoint: http://h\nupload.s3.bucket: b\n"), -1);
    assert_true(has_error(&c, "in the environment's credentials"));
    conf_dispose(&c);
    clear_env();
}

static void test_register(void **state)
{
    h2o_globalconf_t config;
    weir_upload_settings_t s;

    h2o_config_init(&config);
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/upload", 0);
    weir_upload_settings_init(&s);
    s.backend = WEIR_UPLOAD_BACKEND_S3;
    s.s3.endpoint = (char *)"http://127.0.0.1:9000";
    s.s3.access_key_id = (char *)"AK";
    s.s3.secret_access_key = (char *)"secret";
    /* no bucket */
    assert_int_equal(weir_upload_register(path, &s), -EINVAL);
    s.s3.bucket = (char *)"images";
    assert_int_equal(weir_upload_register(path, &s), 0);
    h2o_config_dispose(&config);
}

WEIR_UNIT_TESTS(cmocka_unit_test(test_extension), cmocka_unit_test(test_error_code), cmocka_unit_test(test_check_endpoint),
                cmocka_unit_test(test_conf_defaults_stay_delay), cmocka_unit_test(test_conf_full),
                cmocka_unit_test(test_conf_errors_name_the_place), cmocka_unit_test(test_conf_secret_file),
                cmocka_unit_test(test_conf_required_keys_and_credentials), cmocka_unit_test(test_register))
