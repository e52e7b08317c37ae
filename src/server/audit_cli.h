/*
 * audit_cli.h - `aisbxd audit verify|anchor|export` (main.c): the offline
 * audit commands on a data dir. They live in aisbxd, not the aisbx CLI,
 * because the CLI does not link the store (docs/security.md).
 */
#ifndef SBX_SERVER_AUDIT_CLI_H
#define SBX_SERVER_AUDIT_CLI_H

/* argv[1] is "audit". Returns the process exit status: 0 done (verify: all
 * chains intact), 1 a chain is broken or the command failed, 2 usage. */
int sbx__audit_cli(int argc, char **argv);

#endif
