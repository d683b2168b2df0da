/* SPDX-License-Identifier: GPL-2.0-only */
/* The accelerator a VM runs under here: KVM where it really runs a guest
 * (a bounded probe boot, cached per host boot), else TCG; and for a VM
 * resumed from a device state, the one it was saved under. */
#ifndef CL_ACCEL_H
#define CL_ACCEL_H

#include <stddef.h>

#include <libvirt/libvirt.h>

struct cl_base;

/* The domain type to run a VM whose XML says xml_type: $CLOUDLET_ACCEL
 * (kvm, or tcg/qemu) if set; "qemu" (TCG) for a TCG XML, since its device
 * state was saved under TCG; for a KVM XML "kvm" if KVM really runs a guest
 * here, else "qemu" with the reason in why[cap]. A guest kernel (and
 * initrd) makes the check a bounded boot of that kernel under KVM, cached
 * per host boot in CL_VM_RUN_DIR/accel. */
int cl_accel_pick(virConnectPtr c, const char *xml_type, const char *kernel, const char *initrd,
                  const char **type, char *why, size_t cap);

/* What is known about the accelerator without booting a guest: "kvm" or
 * "qemu" into *type with the reason in why[cap] ($CLOUDLET_ACCEL, a
 * /dev/kvm that does not open, or the boot probe's answer cached for this
 * host boot), else *type NULL: /dev/kvm opens but no guest was probed
 * since boot (the first synthesis or base does it). */
int cl_accel_known(const char **type, char *why, size_t cap);

/* The domain type to resume a VM saved under saved_type ("kvm" or "qemu";
 * NULL counts as qemu): the saved one, since the device state only loads
 * under the accelerator it was saved under. kvm_ok says whether KVM runs a
 * guest here (why: if not, the reason); env is $CLOUDLET_ACCEL (kvm, tcg
 * or qemu) or NULL. A mismatch (KVM needed but not usable, or env asking
 * for the other) is -ENODEV with a one-line message. */
int cl_accel_resume_choose(const char *saved_type, int kvm_ok, const char *why, const char *env,
                           const char **type);

/* What cloudlet overlay and synthesis call before resuming base b from
 * the device state that goes with the domain XML xml (len bytes): the
 * accelerator as cl_accel_resume_choose decides (KVM probed with kernel and
 * initrd only when needed), and the CPU model of xml must be the one of
 * the base's own domain XML. On a refusal *hint says what to do. */
int cl_accel_resume_type(virConnectPtr c, const struct cl_base *b, const char *xml, size_t len,
                         const char *kernel, const char *initrd, const char **type,
                         const char **hint);

#endif
