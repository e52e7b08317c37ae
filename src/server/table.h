/*
 * table.h - the route table of aisbxd (table.c). Only the top of the
 * server (server.c) names it; everything else reads srv->routes.
 */
#ifndef SBX_SERVER_TABLE_H
#define SBX_SERVER_TABLE_H

#include <stddef.h>

#include "router.h"

extern const sbx__route sbx__routes[];
extern const size_t sbx__nroutes;

#endif
