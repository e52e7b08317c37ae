/*
 * confine.h - the server confined like its workers (issue 12 item 8,
 * docs/security.md "Server confinement").
 *
 * Two steps, both called by sbx_server_start when p.confine is "on" (aisbxd
 * sets it by default; a library user of sbx_server_start gets "off"):
 *   sbx__confine_enter()  after every file, key, database connection and
 *                         the log are open and BEFORE any thread exists
 *                         (verified: /proc/self/task has one entry):
 *                         when root: the data dir (and log/anchor files)
 *                         chowned to run_as_user, supplementary groups,
 *                         gid and uid dropped; PR_SET_NO_NEW_PRIVS; every
 *                         capability dropped (CAP_NET_BIND_SERVICE kept in
 *                         this thread until the seal when the listen port
 *                         is below 1024); a Landlock domain (data dir rw,
 *                         log/anchor dirs, CA certificates, resolver files,
 *                         the SoftHSM token dir, /dev/urandom, /proc/self).
 *                         Landlock and no_new_privs are per thread, so every
 *                         thread started afterwards (MHD, park, anchor,
 *                         curl's resolver, hash workers) inherits them.
 *   sbx__confine_seal()   after the listener is bound and the threads run:
 *                         the last uid step (when the low-port capability
 *                         was kept), capabilities of every thread checked
 *                         zero, the seccomp allow-list on every thread
 *                         (TSYNC; other architectures killed, any other
 *                         syscall: one log line, then death by SIGSYS).
 * Both return 0 or a negative sbx_status (logged on stderr); after an error
 * the process is partly confined and must stop (sbx_server_start fails).
 */
#ifndef SBX_SERVER_CONFINE_H
#define SBX_SERVER_CONFINE_H

#include "sbx/server.h"

/* 1: p->confine is on ("on"/NULL... see sbx__confine_mode), 0: off,
 * SBX_EINVAL: another value. NULL means off (library default). */
int sbx__confine_mode(const sbx_server_params *p);
int sbx__confine_enter(sbx_server *s);
int sbx__confine_seal(sbx_server *s);
/* When running as root and confinement is on: chowns p->data_dir (the whole
 * tree, symlinks not followed, one filesystem) to run_as_user, so that
 * `aisbxd init` as root leaves a data dir the confined server can write.
 * 0 when not root or confinement is off. */
int sbx__confine_own_data_dir(const sbx_server_params *p);

#endif
