/* SPDX-License-Identifier: GPL-2.0-only */
/* The postcopy source (cl_pcsource.h) against a fake destination on a
 * socketpair: a real engine over a generated overlay (cl_testimg.h) whose
 * state is a save file (cl_testvm.h) with the shared block cl-ram, the
 * size of the memory image. The fake reads the prelude (compared with what
 * cl_pcstream writes for the same state), asks for pages on the return
 * path, and parses every PART section: requested pages answered, zero ones
 * as ZERO records; no page twice (a page asked twice, a page asked after
 * it was pushed); every non-zero page before EOF and none of the pages
 * known zero pushed; pages equal the customized image; pushed pages are
 * not accesses; with a stream, the push fetches nothing itself. Then the
 * faults: an oversized request, an unreadable page, a destination gone, a
 * state whose block is not cl-ram. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cl_lazy.h"
#include "cl_overlay.h"
#include "cl_pcsource.h"
#include "cl_pcstream.h"
#include "cl_testimg.h"
#include "cl_testvm.h"
#include "cl_util.h"
#include "cl_vmstate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE   CL_VMSTATE_PAGE
#define NPAGES 200 /* the memory image of cl_testimg */

static char dir[4096];
static uint8_t *want[2];
static size_t want_len[2];

static int write_state(const char *name)
{
	struct cl_testvm_opts o = {.main_name = name, .main_pages = NPAGES};
	struct cl_testvm vm;
	FILE *f;
	int ok;

	if (cl_testvm_build(&o, &vm))
		return -1;
	f = fopen(cl_test_path(dir, "state"), "wb");
	ok = f && fwrite(vm.buf, 1, vm.len, f) == vm.len;
	if (f && fclose(f))
		ok = 0;
	free(vm.buf);
	return ok ? 0 : -1;
}

static int setup(void **state)
{
	(void)state;
	if (cl_test_images(dir) || cl_test_want(dir, want, want_len))
		return -1;
	return write_state(CL_PCSOURCE_BLOCK) || cl_test_overlay(dir, "ov", CL_TEST_CS * 8) ||
	               cl_test_overlay(dir, "ov-bad", CL_TEST_CS * 8) || write_state("pc.ram") ||
	               cl_test_overlay(dir, "ov-pcram", 0)
	           ? -1
	           : 0;
}

static int teardown(void **state)
{
	(void)state;
	free(want[0]);
	free(want[1]);
	cl_test_cleanup(dir);
	return 0;
}

/* The engine over overlay ov: no_stream 1 fetches on demand only. */
static struct cl_lazy *open_lazy(const char *ov, const char *cache, int no_stream,
                                 unsigned memory_timeout_ms)
{
	struct cl_lazy_opts o = {.no_stream = no_stream,
	                         .memory_timeout_ms = memory_timeout_ms,
	                         .cache_dir = cl_test_path(dir, cache)};
	struct cl_lazy *l;

	assert_int_equal(cl_lazy_open(cl_test_path(dir, "bd"), cl_test_path(dir, ov), &o, &l), 0);
	assert_int_equal(cl_lazy_start(l), 0);
	return l;
}

/* ---- the fake destination ---- */

static void get(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	ssize_t n;

	while (len) {
		n = recv(fd, p, len, 0);
		assert_true(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

static uint64_t get_be(int fd, unsigned n)
{
	uint8_t b[8];
	uint64_t v = 0;
	unsigned i;

	get(fd, b, n);
	for (i = 0; i < n; i++)
		v = v << 8 | b[i];
	return v;
}

static void put_be(uint8_t **p, uint64_t v, unsigned n)
{
	while (n--)
		*(*p)++ = (uint8_t)(v >> (8 * n));
}

/* Return-path messages: REQ_PAGES_ID of len bytes from page, PONG/SHUT. */
static void put_req(uint8_t **p, uint64_t page, uint32_t len)
{
	put_be(p, CL_PCRP_REQ_ID, 2);
	put_be(p, 12 + 1 + strlen(CL_PCSOURCE_BLOCK), 2);
	put_be(p, page * PAGE, 8);
	put_be(p, len, 4);
	put_be(p, strlen(CL_PCSOURCE_BLOCK), 1);
	memcpy(*p, CL_PCSOURCE_BLOCK, strlen(CL_PCSOURCE_BLOCK));
	*p += strlen(CL_PCSOURCE_BLOCK);
}

static void put_value(uint8_t **p, unsigned type, uint32_t value)
{
	put_be(p, type, 2);
	put_be(p, 4, 2);
	put_be(p, value, 4);
}

/* The messages m[0..p) in one write: the source sees them at once. */
static void send_msgs(int fd, const uint8_t *m, const uint8_t *p)
{
	assert_int_equal(send(fd, m, (size_t)(p - m), 0), p - m);
}

static void send_req(int fd, uint64_t page)
{
	uint8_t m[64], *p = m;

	put_req(&p, page, PAGE);
	send_msgs(fd, m, p);
}

static void send_value(int fd, unsigned type, uint32_t value)
{
	uint8_t m[8], *p = m;

	put_value(&p, type, value);
	send_msgs(fd, m, p);
}

struct sink {
	uint8_t *buf;
	size_t len;
};

static int sink_write(void *ctx, const void *buf, size_t len)
{
	struct sink *s = ctx;

	s->buf = realloc(s->buf, s->len + len);
	memcpy(s->buf + s->len, buf, len);
	s->len += len;
	return 0;
}

/* Reads the prelude and checks it is what cl_pcstream writes for state. */
static void read_prelude(int fd, struct cl_lazy *l)
{
	struct cl_vmstate *vs;
	struct cl_pcstream *ps;
	struct sink s = {0};
	const void *data;
	uint8_t *got;
	size_t len;

	cl_lazy_blob(l, 0, &data, &len);
	assert_int_equal(cl_vmstate_parse(data, len, "state", &vs), 0);
	assert_int_equal(cl_pcstream_new(vs, sink_write, &s, &ps), 0);
	assert_int_equal(cl_pcstream_start(ps), 0);
	got = malloc(s.len);
	get(fd, got, s.len);
	assert_memory_equal(got, s.buf, s.len);
	free(got);
	free(s.buf);
	cl_pcstream_free(ps);
	cl_vmstate_free(vs);
}

struct seen {
	unsigned times[NPAGES];
	int zero[NPAGES];
	unsigned order[NPAGES], n; /* pages in the order they came */
};

/* Reads one section: 1 for a PART, 0 at the type byte of END. */
static int read_section(int fd, struct seen *sn)
{
	uint8_t page[PAGE], name[256];
	unsigned type = (unsigned)get_be(fd, 1);
	uint64_t v, k;

	if (type == CL_VM_SECTION_END)
		return 0;
	assert_int_equal(type, CL_VM_SECTION_PART);
	get_be(fd, 4); /* section id */
	for (;;) {
		v = get_be(fd, 8);
		if (v & CL_RAM_EOS)
			break;
		if (!(v & CL_RAM_CONTINUE))
			get(fd, name, get_be(fd, 1));
		k = (v & ~(uint64_t)(PAGE - 1)) / PAGE;
		assert_true(k < NPAGES);
		sn->times[k]++;
		sn->order[sn->n++] = (unsigned)k;
		if (v & CL_RAM_ZERO) {
			assert_int_equal(get_be(fd, 1), 0);
			sn->zero[k] = 1;
			continue;
		}
		assert_true(v & CL_RAM_PAGE);
		get(fd, page, PAGE);
		assert_memory_equal(page, want[1] + k * PAGE, PAGE);
	}
	assert_int_equal(get_be(fd, 1), CL_VM_FOOTER);
	get_be(fd, 4);
	return 1;
}

/* Reads the sections, END and EOF; checks every non-zero page came once
 * and no page known zero but those asked for (in asked[0..nasked)). */
static void read_to_end(int fd, struct seen *sn, const unsigned *asked, size_t nasked)
{
	unsigned k;
	size_t i;

	while (read_section(fd, sn))
		;
	/* END: its id, EOS, footer; then EOF */
	assert_int_equal(get_be(fd, 4), CL_TESTVM_RAM_SID);
	assert_int_equal(get_be(fd, 8), CL_RAM_EOS);
	assert_int_equal(get_be(fd, 1), CL_VM_FOOTER);
	assert_int_equal(get_be(fd, 4), CL_TESTVM_RAM_SID);
	assert_int_equal(get_be(fd, 1), CL_VM_EOF);
	for (k = 0; k < NPAGES; k++) {
		assert_true(sn->times[k] <= 1);
		for (i = 0; i < nasked && asked[i] != k; i++)
			;
		if (!cl_is_zero(want[1] + k * PAGE, PAGE))
			assert_int_equal(sn->times[k], 1);
		else if (i == nasked)
			assert_int_equal(sn->times[k], 0); /* known zero: never pushed */
	}
}

/* A source on one end of a socketpair, its prelude read from the other. */
struct fake {
	struct cl_lazy *l;
	struct cl_pcsource *ps;
	int fd;
	struct seen *sn;
};

static void fake_start(struct fake *f, struct cl_lazy *l)
{
	struct timeval tv = {.tv_sec = 20}; /* a source that stops sending fails the test */
	int fd[2];

	f->l = l;
	f->sn = calloc(1, sizeof(*f->sn));
	assert_non_null(f->sn);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
	assert_int_equal(cl_pcsource_start(l, fd[0], &f->ps), 0);
	f->fd = fd[1];
	assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	read_prelude(f->fd, l);
}

static void fake_end(struct fake *f)
{
	cl_pcsource_free(f->ps);
	close(f->fd);
	cl_lazy_close(f->l);
	free(f->sn);
}

static void wait_state(struct cl_pcsource *ps, enum cl_pcsource_state want_state,
                       struct cl_pcsource_stats *st)
{
	double until = cl_now() + 10;

	do {
		cl_pcsource_stats(ps, st);
		if (st->state == want_state)
			return;
		cl_sleep_ms(10);
	} while (cl_now() < until);
	fail_msg("state %d, not %d: %s (requested %llu, pushed %llu)", st->state, want_state,
	         st->reason, (unsigned long long)st->requested, (unsigned long long)st->pushed);
}

/* The guest runs (PONG) and asks, in the same write, for page 0 (all zero)
 * and twice for page 100 (one of the random chunks of the overlay).
 * With a stream (no_stream 0): the push starts at once, without its hold,
 * and waits for the segments the stream brings (none is fetched for it);
 * every page once, page 0 as a ZERO record, page 100 answered or pushed
 * once. Without (no_stream 1): the asked pages are answered, and nothing
 * else is fetched: the source goes on streaming what needs no fetch. */
static void run_and_ask(struct fake *f, int no_stream, const char *cache)
{
	uint8_t m[128], *p = m;

	fake_start(f, open_lazy("ov", cache, no_stream, 0));
	put_value(&p, CL_PCRP_PONG, CL_PCSTREAM_PING_RUN);
	put_req(&p, 0, PAGE);
	put_req(&p, 100, PAGE);
	put_req(&p, 100, PAGE);
	send_msgs(f->fd, m, p);
}

static void test_stream_no_stream(void **state)
{
	struct cl_pcsource_stats st;
	struct cl_lazy_stats ls;
	struct fake f;

	(void)state;
	run_and_ask(&f, 1, "cache1");
	while (!f.sn->times[0] || !f.sn->times[100])
		assert_int_equal(read_section(f.fd, f.sn), 1);
	assert_true(f.sn->zero[0]);
	cl_sleep_ms(300); /* time for a push that would fetch */
	cl_lazy_stats(f.l, &ls);
	assert_int_equal(ls.segments_present, 1); /* page 100's */
	cl_pcsource_stats(f.ps, &st);
	assert_int_equal(st.state, CL_PCSOURCE_STREAMING);
	assert_int_equal(st.requested, 3);
	fake_end(&f);
}

static void test_stream_background(void **state)
{
	static const unsigned asked[] = {0, 100};
	struct cl_pcsource_stats st;
	struct cl_lazy_stats ls;
	struct fake f;

	(void)state;
	run_and_ask(&f, 0, "cache4");
	read_to_end(f.fd, f.sn, asked, 2);
	assert_true(f.sn->zero[0]);
	send_value(f.fd, CL_PCRP_SHUT, 0);
	wait_state(f.ps, CL_PCSOURCE_COMPLETE, &st);
	assert_string_equal(st.reason, "");
	assert_int_equal(st.requested, 3);
	assert_int_equal(st.latency_n, 3);
	assert_true(st.demand >= 1 && st.demand <= 2); /* page 100 may be pushed first */
	assert_int_equal(st.pushed + st.demand, f.sn->n);
	cl_lazy_stats(f.l, &ls);
	assert_int_equal(ls.image[CL_MEMORY].chunks_accessed, 2); /* pushes are not accesses */
	assert_true(ls.image[CL_MEMORY].demand_fetches <= 1);     /* page 100's, if any */
	fake_end(&f);
}

/* A page the push sent already is not sent again when asked for. */
static void test_ask_pushed(void **state)
{
	struct cl_pcsource_stats st;
	unsigned k;
	struct fake f;

	(void)state;
	fake_start(&f, open_lazy("ov", "cache5", 0, 0));
	send_value(f.fd, CL_PCRP_PONG, CL_PCSTREAM_PING_RUN);
	while (!f.sn->n)
		assert_int_equal(read_section(f.fd, f.sn), 1);
	k = f.sn->order[0];
	send_req(f.fd, k);
	read_to_end(f.fd, f.sn, &k, 1);
	assert_int_equal(f.sn->times[k], 1);
	send_value(f.fd, CL_PCRP_SHUT, 0);
	wait_state(f.ps, CL_PCSOURCE_COMPLETE, &st);
	assert_int_equal(st.requested, 1);
	assert_int_equal(st.demand, 0);
	assert_int_equal(st.pushed, f.sn->n);
	fake_end(&f);
}

/* Reads what the source sent until it shuts the socket down (10 s at most). */
static void drain_to_eof(int fd)
{
	double until = cl_now() + 10;
	uint8_t buf[4096];
	ssize_t n;

	do {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0)
			cl_sleep_ms(10);
	} while (n && cl_now() < until);
	assert_int_equal(n, 0);
}

/* A request over CL_PCSOURCE_MAX_REQUEST fails the source; the socket is
 * shut down. */
static void test_oversized_request(void **state)
{
	struct cl_pcsource_stats st;
	uint8_t m[64], *p = m;
	struct fake f;

	(void)state;
	fake_start(&f, open_lazy("ov", "cache6", 1, 0));
	put_req(&p, 0, 2 * CL_PCSOURCE_MAX_REQUEST);
	send_msgs(f.fd, m, p);
	wait_state(f.ps, CL_PCSOURCE_FAILED, &st);
	assert_non_null(strstr(st.reason, "return path"));
	assert_int_equal(st.requested, 0);
	drain_to_eof(f.fd);
	fake_end(&f);
}

/* A requested page that cannot be read (the pack is cut short; the wait is
 * bounded by 300 ms) and was not sent fails the source. Page 105: its
 * segment must come from the pack. */
static void test_unreadable_page(void **state)
{
	struct cl_pcsource_stats st;
	struct fake f;

	(void)state;
	fake_start(&f, open_lazy("ov-bad", "cache7", 1, 300));
	assert_int_equal(truncate(cl_test_path(dir, "ov-bad/" CL_PACK_NAME), 0), 0);
	send_req(f.fd, 105);
	drain_to_eof(f.fd); /* reading on: the push's writes must not block the answer */
	wait_state(f.ps, CL_PCSOURCE_FAILED, &st);
	if (!strstr(st.reason, "stream: page 0x69000"))
		fail_msg("%s", st.reason);
	fake_end(&f);
}

/* The destination goes away after the prelude: failed with a reason, and
 * free returns at once. */
static void test_destination_gone(void **state)
{
	struct cl_lazy *l = open_lazy("ov", "cache2", 1, 0);
	struct cl_pcsource_stats st;
	struct cl_pcsource *ps;
	double t;
	int fd[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
	assert_int_equal(cl_pcsource_start(l, fd[0], &ps), 0);
	read_prelude(fd[1], l);
	close(fd[1]);
	wait_state(ps, CL_PCSOURCE_FAILED, &st);
	assert_non_null(strstr(st.reason, "closed"));
	t = cl_now();
	cl_pcsource_free(ps);
	assert_true(cl_now() - t < 2);
	cl_lazy_close(l);
}

/* A state whose shared block is not cl-ram is refused, the socket closed. */
static void test_refused(void **state)
{
	struct cl_lazy *l = open_lazy("ov-pcram", "cache3", 1, 0);
	struct cl_pcsource *ps = NULL;
	char c;
	int fd[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
	assert_int_equal(cl_pcsource_start(l, fd[0], &ps), -EINVAL);
	assert_null(ps);
	assert_int_equal(recv(fd[1], &c, 1, 0), 0);
	close(fd[1]);
	cl_lazy_close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stream_no_stream), cmocka_unit_test(test_stream_background),
	    cmocka_unit_test(test_ask_pushed),       cmocka_unit_test(test_oversized_request),
	    cmocka_unit_test(test_unreadable_page),  cmocka_unit_test(test_destination_gone),
	    cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
