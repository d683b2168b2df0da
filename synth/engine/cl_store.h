/* SPDX-License-Identifier: GPL-2.0-only */
/* The map of a kept copy-on-write store: which chunks of each image the
 * store holds, tied to one overlay. The lazy engine writes it (with the
 * store's data synced first) at each fsync and at unmount when the store is
 * kept, so that the same overlay mounted again over the store finds every
 * write that was synced, also after the daemon was killed.
 *
 * DIR/store.map: "CLSTORE1", the overlay id (SHA-256 of its meta), the
 * chunk count of each image (u64, little-endian), each image's bitmap
 * ((count + 7) / 8 bytes, bit k of byte k / 8 = chunk k), and a SHA-256 of
 * all that. Replaced atomically (written aside, fsynced, renamed). */
#ifndef CL_STORE_H
#define CL_STORE_H

#include <stdint.h>

#include "cl_meta.h"
#include "cl_util.h"

#define CL_STORE_MAP "store.map"

/* Loads DIR/store.map into maps[i] (each at least (nchunks[i] + 7) / 8
 * bytes, which the caller owns). 0 when loaded; -ENOENT when there is none;
 * -ESTALE when it belongs to another overlay or other image sizes, -EBADMSG
 * when it is damaged (each with a message naming the file). */
int cl_store_map_load(const char *dir, const uint8_t id[CL_SHA256_LEN],
                      const uint64_t nchunks[CL_NIMAGES], uint8_t *const maps[CL_NIMAGES]);

/* Writes DIR/store.map from maps (as above), atomically. */
int cl_store_map_save(const char *dir, const uint8_t id[CL_SHA256_LEN],
                      const uint64_t nchunks[CL_NIMAGES], const uint8_t *const maps[CL_NIMAGES]);

#endif
