#include <string.h>
#include "weir/module.h"
#include "weir/upload.h"
#include "weir/calc.h"
#include "weir/cache.h"
#include "weir/status.h"

const weir_module_t *const weir_modules[] = {&weir_upload_module, &weir_calc_module, &weir_cache_module, &weir_status_module, NULL};

const weir_module_t *weir_module_for_key(const char *key)
{
    for (size_t i = 0; weir_modules[i] != NULL; ++i)
        if (strncmp(key, weir_modules[i]->prefix, strlen(weir_modules[i]->prefix)) == 0)
            return weir_modules[i];
    return NULL;
}
