/*
 * openapi.h - the OpenAPI 3.1 document, generated from a route table.
 */
#ifndef SBX_SERVER_OPENAPI_H
#define SBX_SERVER_OPENAPI_H

#include <stddef.h>

#include "router.h"

/* The document as JSON text (malloc'd, caller frees; NULL when out of
 * memory). Everything comes from the rows: no pattern is special. */
char *sbx__openapi_json(const sbx__route *tab, size_t n);

#endif
