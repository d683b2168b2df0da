/* VM life cycle through libvirt: connect, pick the accelerator, define and
 * start a domain, resume it from a device state with its RAM left in a
 * file (x-ignore-shared incoming migration over a unix socket), QMP, and
 * tear it down.
 *
 * QEMU runs as libvirt's default user (libvirt-qemu on Debian). It may not
 * spawn programs (seccomp), so migration streams go through unix sockets in
 * a directory that user may write. Every wait is bounded and also ends when
 * *stop becomes non-zero (a signal handler sets it). */
#ifndef CL_VM_H
#define CL_VM_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>

struct cl_base;

#define CL_VM_DEFAULT_URI "qemu:///system"
#define CL_VM_RUN_DIR     "/run/cloudlet"

/* Opens uri (NULL: $CLOUDLET_LIBVIRT_URI, else qemu:///system). libvirt's
 * own error printing is turned off; failures are one cl_errorf line. */
int cl_vm_connect(const char *uri, virConnectPtr *out);

/* libvirt's last error message on this thread, or "unknown libvirt error". */
const char *cl_vm_error(void);

/* The user QEMU runs as and its primary group (name into group[cap]):
 * libvirt-qemu, else root. */
int cl_vm_qemu_user(uid_t *uid, gid_t *gid, char *group, size_t cap);

/* The domain type to run a VM whose XML says xml_type: $CLOUDLET_ACCEL
 * (kvm, or tcg/qemu) if set; "qemu" (TCG) for a TCG XML, since its device
 * state was saved under TCG; for a KVM XML "kvm" if KVM really runs a guest
 * here, else "qemu" with the reason in why[cap]. A guest kernel (and
 * initrd) makes the check a bounded boot of that kernel under KVM, cached
 * per host boot in CL_VM_RUN_DIR/accel. */
int cl_vm_accel(virConnectPtr c, const char *xml_type, const char *kernel, const char *initrd,
                const char **type, char *why, size_t cap);

/* The domain type to resume a VM saved under saved_type ("kvm" or "qemu";
 * NULL counts as qemu): the saved one, since the device state only loads
 * under the accelerator it was saved under. kvm_ok says whether KVM runs a
 * guest here (why: if not, the reason); env is $CLOUDLET_ACCEL (kvm, tcg
 * or qemu) or NULL. A mismatch (KVM needed but not usable, or env asking
 * for the other) is -ENODEV with a one-line message. */
int cl_vm_resume_choose(const char *saved_type, int kvm_ok, const char *why, const char *env,
                        const char **type);

/* What cloudlet overlay and synthesis call before resuming base b from
 * the device state that goes with the domain XML xml (len bytes): the
 * accelerator as cl_vm_resume_choose decides (KVM probed with kernel and
 * initrd only when needed), and the CPU model of xml must be the one of
 * the base's own domain XML. On a refusal *hint says what to do. */
int cl_vm_resume_type(virConnectPtr c, const struct cl_base *b, const char *xml, size_t len,
                      const char *kernel, const char *initrd, const char **type, const char **hint);

/* Defines the domain of xml (refusing a name in use) into *out. */
int cl_vm_define(virConnectPtr c, const char *xml, virDomainPtr *out);

/* One QMP command through libvirt; *reply (optional) is the answer, which
 * the caller frees. A QMP error is -EPROTO with its description. */
int cl_vm_qmp(virDomainPtr d, const char *cmd, char **reply);

/* Starts the defined domain d (whose XML has `-incoming defer`) paused and
 * turns on x-ignore-shared (-ENOTSUP for a QEMU without it). */
int cl_vm_start_paused(virDomainPtr d);

/* Feeds the domain d that cl_vm_start_paused started the device state in
 * state_path through a unix socket at sock (in a directory QEMU may
 * write), waits for the migration to complete (bounded by timeout
 * seconds) and resumes it. */
int cl_vm_load_state(virDomainPtr d, const char *sock, const char *state_path, double timeout,
                     volatile sig_atomic_t *stop);

/* Pauses the running domain d and saves its device state to path (RAM
 * stays in its share=on file): x-ignore-shared outgoing migration to a unix
 * socket at sock that this process listens on. The domain is left paused. */
int cl_vm_save_state(virDomainPtr d, const char *sock, const char *path, double timeout,
                     volatile sig_atomic_t *stop);

/* CL_VM_RUN_DIR/name, created for this run (refused if it exists): root
 * and QEMU's group gid may write there (sockets, logs). */
int cl_vm_rundir(const char *name, gid_t gid, char *out, size_t cap);
/* Removes the files in dir (never subdirectories: no walking into a
 * mount) and dir itself if then empty. */
void cl_vm_rundir_remove(const char *dir);

/* The guest's serial console (a unix socket QEMU listens on). */
struct cl_vm_console {
	int fd;
	char buf[65536]; /* the latest output */
	size_t len;
};

int cl_vm_console_open(struct cl_vm_console *c, const char *sock, double timeout);
/* Reads what has arrived (never blocks); -EPIPE once QEMU closed it. */
int cl_vm_console_read(struct cl_vm_console *c);
/* Whether text is in the output read so far; a match found is removed. */
int cl_vm_console_seen(struct cl_vm_console *c, const char *text);
/* Types one line of shell into the guest and waits (bounded) until the
 * guest shell has run it. */
int cl_vm_console_run(struct cl_vm_console *c, const char *line, double timeout,
                      volatile sig_atomic_t *stop);
void cl_vm_console_close(struct cl_vm_console *c);

/* The kernel and initrd (malloc'd, NULL when the VM boots from its disk)
 * of the base's own domain XML if it has one, else of xml: each a path
 * that exists, else the same file name next to the base's disk image (a
 * base directory copied to another cloudlet). */
int cl_vm_boot_files(const struct cl_base *b, const char *xml, size_t len, char **kernel,
                     char **initrd);

/* The string value of the first "key" in a JSON text, into out[cap]
 * (truncated to fit); naive (no escapes) but enough for QMP's and
 * qemu-img's flat answers. -ENOENT if there is none. */
int cl_vm_json_str(const char *json, const char *key, char *out, size_t cap);

/* Runs argv (a tool such as qemu-img), bounded by timeout seconds and
 * ended early when *stop (optional) becomes non-zero. With out, its stdout
 * (at most 256 MiB) is collected into *out (malloc'd, NUL-terminated, *len
 * bytes); without, it goes to ours. A tool that fails is -EIO naming it. */
int cl_vm_run_tool(char *const argv[], double timeout, volatile sig_atomic_t *stop, char **out,
                   size_t *len);

/* 1 while the domain runs (or is paused), 0 once it shut down or crashed,
 * -errno if libvirt does not answer. */
int cl_vm_alive(virDomainPtr d);

/* Destroys (if running) and undefines d, and frees it. */
int cl_vm_remove(virDomainPtr d);

#endif
