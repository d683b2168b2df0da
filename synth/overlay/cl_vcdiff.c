/* SPDX-License-Identifier: GPL-2.0-only */
/* RFC 3284 VCDIFF codec: greedy/lazy encoder with the default code table,
 * and a bounds-checked decoder (plus xdelta3's app header and Adler-32).
 * The format's tables, varints and checksum are cl_vcdiff_format.c's. */
#include "cl_vcdiff.h"
#include "cl_vcdiff_format.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- decoder */

struct dec_window {
	const uint8_t *seg; /* source segment (source file or earlier target) */
	size_t seg_len;
	uint8_t *tgt;
	size_t tgt_len, pos;
	const uint8_t *dp, *dend, *ip, *iend, *ap, *aend;
	size_t near[S_NEAR];
	unsigned next_near;
	size_t same[SAME_SLOTS];
};

static int dec_addr(struct dec_window *w, unsigned mode, size_t *addr)
{
	size_t here = w->seg_len + w->pos;
	uint64_t v;
	size_t a;

	if (mode >= MODE_SAME) {
		if (w->ap == w->aend)
			return -EINVAL;
		a = w->same[(mode - MODE_SAME) * 256 + *w->ap++];
	} else {
		if (cl_vcdiff_get_varint(&w->ap, w->aend, &v))
			return -EINVAL;
		if (mode == 0) {
			if (v >= here)
				return -EINVAL;
			a = (size_t)v;
		} else if (mode == MODE_HERE) {
			if (v == 0 || v > here)
				return -EINVAL;
			a = here - (size_t)v;
		} else {
			size_t base = w->near[mode - MODE_NEAR];

			/* Cached addresses were valid, so base < here. */
			if (v >= here - base)
				return -EINVAL;
			a = base + (size_t)v;
		}
	}
	if (a >= here)
		return -EINVAL;
	w->near[w->next_near] = a;
	w->next_near = (w->next_near + 1) % S_NEAR;
	w->same[a % SAME_SLOTS] = a;
	*addr = a;
	return 0;
}

static int dec_inst(struct dec_window *w, unsigned type, size_t size, unsigned mode)
{
	uint8_t *t = w->tgt + w->pos;
	size_t addr, n;

	if (size > w->tgt_len - w->pos)
		return -EINVAL;
	switch (type) {
	case VCD_ADD:
		if (size > (size_t)(w->dend - w->dp))
			return -EINVAL;
		memcpy(t, w->dp, size);
		w->dp += size;
		break;
	case VCD_RUN:
		if (w->dp == w->dend)
			return -EINVAL;
		memset(t, *w->dp++, size);
		break;
	case VCD_COPY:
		if (dec_addr(w, mode, &addr))
			return -EINVAL;
		if (addr < w->seg_len) {
			/* RFC 3284 lets a copy run from the segment on into the target. */
			n = w->seg_len - addr < size ? w->seg_len - addr : size;
			memcpy(t, w->seg + addr, n);
			w->pos += n;
			size -= n;
			addr = w->seg_len;
		}
		addr -= w->seg_len;
		while (size) {
			/* Overlapping copies repeat a period; each pass doubles it. */
			n = w->pos - addr < size ? w->pos - addr : size;
			memcpy(w->tgt + w->pos, w->tgt + addr, n);
			w->pos += n;
			size -= n;
		}
		return 0;
	default:
		return 0;
	}
	w->pos += size;
	return 0;
}

static int dec_run_window(struct dec_window *w)
{
	while (w->ip < w->iend) {
		const struct vcd_code *c = &cl_vcdiff_code_table[*w->ip++];
		uint64_t s1 = c->size1, s2 = c->size2;

		if (c->type1 != VCD_NOOP && s1 == 0 && cl_vcdiff_get_varint(&w->ip, w->iend, &s1))
			return -EINVAL;
		if (c->type2 != VCD_NOOP && s2 == 0 && cl_vcdiff_get_varint(&w->ip, w->iend, &s2))
			return -EINVAL;
		if (s1 > SIZE_MAX || s2 > SIZE_MAX)
			return -EINVAL;
		if (dec_inst(w, c->type1, (size_t)s1, c->mode1) ||
		    dec_inst(w, c->type2, (size_t)s2, c->mode2))
			return -EINVAL;
	}
	if (w->pos != w->tgt_len || w->dp != w->dend || w->ap != w->aend)
		return -EINVAL;
	return 0;
}

/* Takes a section of len bytes off [*pp, end). */
static int take(const uint8_t **pp, const uint8_t *end, uint64_t len, const uint8_t **start,
                const uint8_t **stop)
{
	if (len > (uint64_t)(end - *pp))
		return -EINVAL;
	*start = *pp;
	*pp += len;
	*stop = *pp;
	return 0;
}

static int dec_window(const uint8_t **pp, const uint8_t *end, const uint8_t *source,
                      size_t source_len, uint8_t *out, size_t out_cap, size_t *out_pos)
{
	struct dec_window *w, wbuf;
	const uint8_t *p = *pp, *wend;
	uint64_t seg_len = 0, seg_pos = 0, enc_len, tlen, dlen, ilen, alen;
	uint32_t want = 0;
	uint8_t ind, dind;
	int ret;

	ind = *p++;
	if ((ind & ~(VCD_SOURCE | VCD_TARGET | VCD_ADLER32)) ||
	    (ind & (VCD_SOURCE | VCD_TARGET)) == (VCD_SOURCE | VCD_TARGET))
		return -EINVAL;
	w = &wbuf;
	w->seg = NULL;
	if (ind & (VCD_SOURCE | VCD_TARGET)) {
		const uint8_t *base = ind & VCD_SOURCE ? source : out;
		size_t base_len = ind & VCD_SOURCE ? source_len : *out_pos;

		if (cl_vcdiff_get_varint(&p, end, &seg_len) ||
		    cl_vcdiff_get_varint(&p, end, &seg_pos))
			return -EINVAL;
		if (seg_len > base_len || seg_pos > base_len - seg_len)
			return -EINVAL;
		w->seg = base + seg_pos;
	}
	if (cl_vcdiff_get_varint(&p, end, &enc_len) || enc_len > (uint64_t)(end - p))
		return -EINVAL;
	wend = p + enc_len;
	if (cl_vcdiff_get_varint(&p, wend, &tlen))
		return -EINVAL;
	if (p == wend)
		return -EINVAL;
	dind = *p++;
	if (dind)
		return -EINVAL; /* compressed sections need VCD_DECOMPRESS */
	if (cl_vcdiff_get_varint(&p, wend, &dlen) || cl_vcdiff_get_varint(&p, wend, &ilen) ||
	    cl_vcdiff_get_varint(&p, wend, &alen))
		return -EINVAL;
	if (ind & VCD_ADLER32) {
		if (wend - p < 4)
			return -EINVAL;
		want = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
		p += 4;
	}
	if (take(&p, wend, dlen, &w->dp, &w->dend) || take(&p, wend, ilen, &w->ip, &w->iend) ||
	    take(&p, wend, alen, &w->ap, &w->aend) || p != wend)
		return -EINVAL;
	if (tlen > out_cap - *out_pos)
		return -ENOSPC;

	w->seg_len = (size_t)seg_len;
	w->tgt = out + *out_pos;
	w->tgt_len = (size_t)tlen;
	w->pos = 0;
	memset(w->near, 0, sizeof(w->near));
	w->next_near = 0;
	memset(w->same, 0, sizeof(w->same));
	ret = dec_run_window(w);
	if (ret)
		return ret;
	if ((ind & VCD_ADLER32) && cl_vcdiff_adler32(w->tgt, w->tgt_len) != want)
		return -EINVAL;
	*out_pos += w->tgt_len;
	*pp = wend;
	return 0;
}

int cl_vcdiff_decode(const uint8_t *source, size_t source_len, const uint8_t *delta,
                     size_t delta_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
	const uint8_t *p, *end;
	size_t pos = 0;
	uint64_t len;
	uint8_t hdr;
	int ret;

	static uint8_t none;

	/* Null buffers stand for empty ones; no pointer arithmetic on NULL. */
	if (!source) {
		source = &none;
		source_len = 0;
	}
	if (!out) {
		out = &none;
		out_cap = 0;
	}
	if (!delta || delta_len < 5 || memcmp(delta, cl_vcdiff_magic, 4))
		return -EINVAL;
	p = delta;
	end = delta + delta_len;
	hdr = delta[4];
	p += 5;
	if (hdr & ~(VCD_DECOMPRESS | VCD_CODETABLE | VCD_APPHEADER))
		return -EINVAL;
	if (hdr & (VCD_DECOMPRESS | VCD_CODETABLE))
		return -ENOTSUP;
	if (hdr & VCD_APPHEADER) {
		if (cl_vcdiff_get_varint(&p, end, &len) || len > (uint64_t)(end - p))
			return -EINVAL;
		p += len;
	}
	while (p < end) {
		ret = dec_window(&p, end, source, source_len, out, out_cap, &pos);
		if (ret)
			return ret;
	}
	*out_len = pos;
	return 0;
}

/* ---------------------------------------------------------------- encoder */

#define MIN_MATCH   4
#define GOOD_MATCH  256
#define CHAIN_DEPTH 48
#define DEFER       8 /* literal bytes to try predictions before indexing the source */
#define NO_POS      UINT32_MAX

struct match {
	size_t start, len, addr; /* addr in the window's address space */
	long save;               /* bytes saved over adding the same bytes */
	bool run;
};

struct enc {
	const uint8_t *src, *tgt;
	size_t slen, tlen;

	/* Hash chains over the address space [source | target]. */
	uint32_t *head, *prev;
	unsigned shift;
	bool indexed;
	size_t tins; /* next target position to insert */

	/* Address cache, mirroring the decoder's. */
	size_t near[S_NEAR];
	unsigned next_near;
	size_t same[SAME_SLOTS];

	uint8_t *data, *inst, *addr;
	size_t dlen, ilen, alen, limit;

	/* A single instruction held back in case the next one pairs with it. */
	unsigned pend_type, pend_mode;
	size_t pend_size;

	size_t last_end; /* address just past the last copy, for predictions */
	size_t last_tend;
};

static inline uint32_t hash4(const uint8_t *p, unsigned shift)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return (v * 2654435761u) >> shift;
}

static void index_target_to(struct enc *e, size_t end)
{
	if (end + MIN_MATCH > e->tlen)
		end = e->tlen >= MIN_MATCH ? e->tlen - MIN_MATCH + 1 : 0;
	for (size_t t = e->tins; t < end; t++) {
		uint32_t h = hash4(e->tgt + t, e->shift);

		e->prev[e->slen + t] = e->head[h];
		e->head[h] = (uint32_t)(e->slen + t);
	}
	if (end > e->tins)
		e->tins = end;
}

static void index_source(struct enc *e)
{
	memset(e->head, 0xff, sizeof(uint32_t) << (32 - e->shift));
	for (size_t p = 0; p + MIN_MATCH <= e->slen; p++) {
		uint32_t h = hash4(e->src + p, e->shift);

		e->prev[p] = e->head[h];
		e->head[h] = (uint32_t)p;
	}
	e->indexed = true;
}

/* Cheapest way to encode addr from here: returns its byte count and mode. */
static unsigned addr_cost(const struct enc *e, size_t addr, size_t here, unsigned *mode,
                          size_t *val)
{
	unsigned best = (unsigned)cl_vcdiff_varint_len(addr), m = 0, c;
	size_t v = addr;

	c = (unsigned)cl_vcdiff_varint_len(here - addr);
	if (c < best) {
		best = c;
		m = MODE_HERE;
		v = here - addr;
	}
	for (unsigned i = 0; i < S_NEAR; i++) {
		if (addr < e->near[i])
			continue;
		c = (unsigned)cl_vcdiff_varint_len(addr - e->near[i]);
		if (c < best) {
			best = c;
			m = MODE_NEAR + i;
			v = addr - e->near[i];
		}
	}
	/* Only when strictly cheaper: SAME modes pair with fewer ADD sizes. */
	if (best > 1 && e->same[addr % SAME_SLOTS] == addr) {
		best = 1;
		m = MODE_SAME + (unsigned)(addr % SAME_SLOTS) / 256;
		v = addr % 256;
	}
	*mode = m;
	*val = v;
	return best;
}

static inline unsigned size_cost(size_t len, size_t lo, size_t hi)
{
	return len >= lo && len <= hi ? 0 : (unsigned)cl_vcdiff_varint_len(len);
}

static inline size_t match_len(const uint8_t *a, const uint8_t *b, size_t max)
{
	size_t n = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	while (n + 8 <= max) {
		uint64_t x, y;

		memcpy(&x, a + n, 8);
		memcpy(&y, b + n, 8);
		if (x != y)
			return n + (size_t)(__builtin_ctzll(x ^ y) >> 3);
		n += 8;
	}
#endif
	while (n < max && a[n] == b[n])
		n++;
	return n;
}

/* Considers copying from q to t, extended back to no further than lit; the
 * copy must start at or before t0. */
static void consider_copy(const struct enc *e, size_t t, size_t lit, size_t t0, size_t q,
                          struct match *best)
{
	const uint8_t *cand;
	size_t fwd_max, back_max, fwd, back = 0;
	unsigned mode;
	size_t val;
	long save;

	if (q < e->slen) {
		/* RFC 3284 allows a copy to run on from the source into the
		 * target, but not every decoder copes; stop at the source end. */
		cand = e->src + q;
		fwd_max = e->slen - q;
		if (fwd_max > e->tlen - t)
			fwd_max = e->tlen - t;
		back_max = q;
	} else {
		if (q - e->slen >= t)
			return;
		cand = e->tgt + (q - e->slen);
		fwd_max = e->tlen - t;
		back_max = q - e->slen;
	}
	if (back_max > t - lit)
		back_max = t - lit;
	fwd = match_len(cand, e->tgt + t, fwd_max);
	if (fwd == 0)
		return;
	while (back < back_max && cand[-(long)back - 1] == e->tgt[t - back - 1])
		back++;
	if (fwd + back < MIN_MATCH || t - back > t0)
		return;
	q -= back;
	t -= back;
	save = (long)(fwd + back) - 1 - (long)size_cost(fwd + back, 4, 18) -
	       (long)addr_cost(e, q, e->slen + t, &mode, &val);
	/* Reaching back over the whole literal spares its ADD opcode. */
	if (t == lit && back)
		save++;
	if (save > best->save || (save == best->save && fwd + back > best->len)) {
		best->start = t;
		best->len = fwd + back;
		best->addr = q;
		best->save = save;
		best->run = false;
	}
}

/* Considers a RUN at t; returns where the run of t's byte ends (t if none). */
static size_t consider_run(const struct enc *e, size_t t, size_t lit, struct match *best)
{
	const uint8_t *p = e->tgt;
	size_t end = t, start = t;
	long save;

	if (e->tlen - t < MIN_MATCH || p[t] != p[t + 1] || p[t] != p[t + 2] || p[t] != p[t + 3])
		return t;
	while (end < e->tlen && p[end] == p[t])
		end++;
	while (start > lit && p[start - 1] == p[t])
		start--;
	save = (long)(end - start) - 2 - (long)cl_vcdiff_varint_len(end - start);
	if (start == lit && start < t)
		save++;
	if (save > best->save || (save == best->save && end - start > best->len)) {
		best->start = start;
		best->len = end - start;
		best->addr = 0;
		best->save = save;
		best->run = true;
	}
	return end;
}

static void search_chain(struct enc *e, size_t t, size_t lit, size_t t0, struct match *m)
{
	uint32_t q = e->head[hash4(e->tgt + t, e->shift)];

	for (unsigned depth = CHAIN_DEPTH; q != NO_POS && depth; q = e->prev[q], depth--) {
		consider_copy(e, t, lit, t0, q, m);
		if (m->start + m->len == e->tlen)
			break;
	}
}

/* Finds the best copy or run covering t, reaching back no further than lit. */
static void find_match(struct enc *e, size_t t, size_t lit, struct match *m)
{
	size_t pred[2], run_end;
	unsigned npred = 0;

	m->start = t;
	m->len = 0;
	m->save = 0;
	m->run = false;
	/* Chunks mostly change in place or keep the last copy's offset. */
	if (t < e->slen)
		pred[npred++] = t;
	if (e->last_end != SIZE_MAX) {
		size_t q = e->last_end + (t - e->last_tend);

		if (q < e->slen + t && (npred == 0 || q != pred[0]))
			pred[npred++] = q;
	}
	for (unsigned i = 0; i < npred; i++)
		consider_copy(e, t, lit, t, pred[i], m);
	if ((!m->run && m->len >= GOOD_MATCH) || m->start + m->len == e->tlen)
		return;
	run_end = consider_run(e, t, lit, m);
	if (m->start + m->len == e->tlen)
		return;
	if (!e->indexed) {
		if (t - lit < DEFER && m->save <= 0)
			return;
		index_source(e);
		e->tins = t;
	}
	index_target_to(e, t);
	search_chain(e, t, lit, t, m);
	/* Chains inside a run are long and alike; what follows the run tells
	 * where the data came from, and back-extension covers the run. */
	if (run_end > t + 1 && run_end + MIN_MATCH <= e->tlen + 1)
		search_chain(e, run_end - 1, lit, t, m);
}

static void put_inst(struct enc *e, unsigned op, size_t size, bool explicit_size)
{
	e->inst[e->ilen++] = (uint8_t)op;
	if (explicit_size)
		e->ilen = (size_t)(cl_vcdiff_put_varint(e->inst + e->ilen, size) - e->inst);
}

static void put_single(struct enc *e, unsigned type, size_t size, unsigned mode)
{
	switch (type) {
	case VCD_ADD:
		if (size <= 17)
			put_inst(e, OP_ADD(size), size, false);
		else
			put_inst(e, OP_ADD(0), size, true);
		break;
	case VCD_RUN:
		put_inst(e, OP_RUN, size, true);
		break;
	default:
		if (size >= 4 && size <= 18)
			put_inst(e, OP_COPY(mode, size), size, false);
		else
			put_inst(e, OP_COPY(mode, 0), size, true);
		break;
	}
}

static void emit_inst(struct enc *e, unsigned type, size_t size, unsigned mode)
{
	if (e->pend_type == VCD_ADD && type == VCD_COPY && size >= 4 &&
	    (size == 4 || (size <= 6 && mode < MODE_SAME))) {
		e->inst[e->ilen++] = (uint8_t)OP_ADD_COPY(e->pend_size, mode, size);
		e->pend_type = VCD_NOOP;
		return;
	}
	if (e->pend_type == VCD_COPY && type == VCD_ADD && size == 1) {
		e->inst[e->ilen++] = (uint8_t)OP_COPY_ADD(e->pend_mode);
		e->pend_type = VCD_NOOP;
		return;
	}
	if (e->pend_type != VCD_NOOP)
		put_single(e, e->pend_type, e->pend_size, e->pend_mode);
	e->pend_type = VCD_NOOP;
	if (type == VCD_NOOP)
		return;
	if ((type == VCD_ADD && size >= 1 && size <= 4) || (type == VCD_COPY && size == 4)) {
		e->pend_type = type;
		e->pend_size = size;
		e->pend_mode = mode;
		return;
	}
	put_single(e, type, size, mode);
}

static inline bool over_limit(const struct enc *e, size_t more)
{
	return e->dlen + e->ilen + e->alen + more > e->limit;
}

static int emit_add(struct enc *e, size_t from, size_t to)
{
	if (from == to)
		return 0;
	if (over_limit(e, to - from))
		return -ENOSPC;
	memcpy(e->data + e->dlen, e->tgt + from, to - from);
	e->dlen += to - from;
	emit_inst(e, VCD_ADD, to - from, 0);
	return 0;
}

static int emit_match(struct enc *e, const struct match *m)
{
	unsigned mode;
	size_t val;

	if (over_limit(e, 1))
		return -ENOSPC;
	if (m->run) {
		e->data[e->dlen++] = e->tgt[m->start];
		emit_inst(e, VCD_RUN, m->len, 0);
		return 0;
	}
	addr_cost(e, m->addr, e->slen + m->start, &mode, &val);
	if (mode >= MODE_SAME)
		e->addr[e->alen++] = (uint8_t)val;
	else
		e->alen = (size_t)(cl_vcdiff_put_varint(e->addr + e->alen, val) - e->addr);
	e->near[e->next_near] = m->addr;
	e->next_near = (e->next_near + 1) % S_NEAR;
	e->same[m->addr % SAME_SLOTS] = m->addr;
	emit_inst(e, VCD_COPY, m->len, mode);
	e->last_end = m->addr + m->len;
	e->last_tend = m->start + m->len;
	return 0;
}

static int encode_sections(struct enc *e)
{
	size_t t = 0, lit = 0;
	struct match m, next;
	int ret;

	while (t + MIN_MATCH <= e->tlen) {
		find_match(e, t, lit, &m);
		if (m.save <= 0) {
			/* Probe sparser in long literals; back-extension recovers
			 * the start of any match that is hit. */
			t += 1 + ((t - lit) >> 7);
			continue;
		}
		/* Lazy evaluation: a later start may cover more for less. */
		while (m.start + m.len < e->tlen && t + 1 + MIN_MATCH <= e->tlen) {
			find_match(e, t + 1, lit, &next);
			if (next.save <= m.save)
				break;
			m = next;
			t++;
		}
		ret = emit_add(e, lit, m.start);
		if (ret)
			return ret;
		ret = emit_match(e, &m);
		if (ret)
			return ret;
		t = lit = m.start + m.len;
		/* Long copies only add redundant positions to the chains. */
		if (e->indexed) {
			if (m.len > 64) {
				index_target_to(e, m.start + 16);
				e->tins = t - 8 > e->tins ? t - 8 : e->tins;
			}
			index_target_to(e, t);
		}
	}
	ret = emit_add(e, lit, e->tlen);
	if (ret)
		return ret;
	if (over_limit(e, 0))
		return -ENOSPC;
	emit_inst(e, VCD_NOOP, 0, 0); /* flushes the held instruction */
	return over_limit(e, 0) ? -ENOSPC : 0;
}

/* Writes a complete single-window stream from the three sections. */
static size_t write_stream(uint8_t *out, size_t slen, size_t tlen, const uint8_t *data, size_t dlen,
                           const uint8_t *inst, size_t ilen, const uint8_t *addr, size_t alen)
{
	size_t enc = cl_vcdiff_varint_len(tlen) + 1 + cl_vcdiff_varint_len(dlen) +
	             cl_vcdiff_varint_len(ilen) + cl_vcdiff_varint_len(alen) + dlen + ilen + alen;
	uint8_t *p = out;

	memcpy(p, cl_vcdiff_magic, 4);
	p[4] = 0;
	p += 5;
	*p++ = slen ? VCD_SOURCE : 0;
	if (slen) {
		p = cl_vcdiff_put_varint(p, slen);
		p = cl_vcdiff_put_varint(p, 0);
	}
	p = cl_vcdiff_put_varint(p, enc);
	p = cl_vcdiff_put_varint(p, tlen);
	*p++ = 0;
	p = cl_vcdiff_put_varint(p, dlen);
	p = cl_vcdiff_put_varint(p, ilen);
	p = cl_vcdiff_put_varint(p, alen);
	if (dlen)
		memcpy(p, data, dlen);
	p += dlen;
	memcpy(p, inst, ilen);
	p += ilen;
	if (alen)
		memcpy(p, addr, alen);
	return (size_t)(p + alen - out);
}

static size_t stream_size(size_t slen, size_t tlen, size_t dlen, size_t ilen, size_t alen)
{
	size_t enc = cl_vcdiff_varint_len(tlen) + 1 + cl_vcdiff_varint_len(dlen) +
	             cl_vcdiff_varint_len(ilen) + cl_vcdiff_varint_len(alen) + dlen + ilen + alen;

	return 6 + (slen ? cl_vcdiff_varint_len(slen) + 1 : 0) + cl_vcdiff_varint_len(enc) + enc;
}

static size_t plain_inst(uint8_t *inst, size_t tlen)
{
	if (tlen == 0)
		return 0;
	if (tlen <= 17) {
		inst[0] = OP_ADD(tlen);
		return 1;
	}
	inst[0] = OP_ADD(0);
	return (size_t)(cl_vcdiff_put_varint(inst + 1, tlen) - inst);
}

size_t cl_vcdiff_bound(size_t target_len)
{
	size_t ilen =
	    target_len == 0 ? 0 : 1 + (target_len > 17 ? cl_vcdiff_varint_len(target_len) : 0);

	if (target_len > SIZE_MAX - 64)
		return SIZE_MAX;
	return stream_size(0, target_len, target_len, ilen, 0);
}

int cl_vcdiff_encode(const uint8_t *source, size_t source_len, const uint8_t *target,
                     size_t target_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
	uint8_t pinst[VARINT_MAX + 1];
	size_t plain = cl_vcdiff_bound(target_len), pilen, n, hsize, total;
	struct enc *e;
	int ret;

	if ((!source && source_len) || (!target && target_len) || (!out && out_cap))
		return -EINVAL;
	/* Tiny targets cannot pay for a copy; huge ones overflow the chains. */
	if (target_len >= MIN_MATCH && source_len < NO_POS / 2 && target_len < NO_POS / 2) {
		unsigned bits = 10;

		n = source_len + target_len;
		while (bits < 22 && ((size_t)1 << bits) < n)
			bits++;
		hsize = (size_t)1 << bits;
		e = malloc(sizeof(*e) + sizeof(uint32_t) * (hsize + n) + 3 * (plain + 32));
		if (!e)
			return -ENOMEM;
		memset(e, 0, sizeof(*e));
		e->src = source;
		e->tgt = target;
		e->slen = source_len;
		e->tlen = target_len;
		e->head = (uint32_t *)(e + 1);
		e->prev = e->head + hsize;
		e->shift = 32 - bits;
		e->data = (uint8_t *)(e->prev + n);
		e->inst = e->data + plain + 32;
		e->addr = e->inst + plain + 32;
		e->limit = plain < out_cap ? plain : out_cap;
		e->last_end = SIZE_MAX;
		ret = encode_sections(e);
		if (ret == 0) {
			total = stream_size(source_len, target_len, e->dlen, e->ilen, e->alen);
			if (total < plain && total <= out_cap) {
				*out_len =
				    write_stream(out, source_len, target_len, e->data, e->dlen,
				                 e->inst, e->ilen, e->addr, e->alen);
				free(e);
				return 0;
			}
		}
		free(e);
	}
	if (plain > out_cap)
		return -ENOSPC;
	pilen = plain_inst(pinst, target_len);
	*out_len = write_stream(out, 0, target_len, target, target_len, pinst, pilen, NULL, 0);
	return 0;
}
