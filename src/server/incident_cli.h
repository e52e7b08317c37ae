/*
 * incident_cli.h - `aisbxd admin ...` (main.c): the incident tools of
 * incident.h on a stopped server's data dir (docs/runbook.md).
 */
#ifndef SBX_SERVER_INCIDENT_CLI_H
#define SBX_SERVER_INCIDENT_CLI_H

/* argv[1] is "admin". Returns the process exit status: 0 done, 1 the
 * command failed (reason on stderr), 2 usage. */
int sbx__incident_cli(int argc, char **argv);

#endif
