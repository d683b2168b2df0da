// SPDX-License-Identifier: GPL-2.0-only
/*
 * cloudlet-answer: the test application of the Debian test guest
 * (tests/guest/build-debian-guest.sh packages it as cloudlet-answer).
 *
 *   cloudlet-answer --generate DIR
 *       write the data that cloudlet-answer-data ships, from a fixed seed:
 *       DIR/model.bin (the default model, 16 MiB), DIR/models/zoo-1.bin ..
 *       zoo-5.bin (the other models, 32 MiB each; every model in 1 MiB
 *       blocks, every 4th text, the others pseudo-random) and
 *       DIR/data/item-1 .. item-8 (4 MiB in all, odd ones text, even ones
 *       pseudo-random). The same bytes on every run.
 *   cloudlet-answer [--model FILE] [--data DIR] [--port N]
 *       serve: read FILE (default /usr/share/cloudlet-answer/model.bin) into
 *       RAM and keep it there, listen on 127.0.0.1:N (default 8091), tell
 *       systemd it is ready (Type=notify, without libsystemd), then answer
 *       each `GET /answer` with one line per item, as sha256sum prints them:
 *       the model's SHA-256 computed from RAM, then that of every regular
 *       file in DIR (default /usr/share/cloudlet-answer/data), in name order,
 *       read from the disk on each request; and `GET /model/NAME` with the
 *       line of /usr/share/cloudlet-answer/models/NAME.bin, read from the
 *       disk (a model zoo: like real services, the application installs far
 *       more than its first answer reads). Anything else: 404.
 * The web server (nginx) proxies http://GUEST/answer to it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MODEL_DEFAULT "/usr/share/cloudlet-answer/model.bin"
#define DATA_DEFAULT  "/usr/share/cloudlet-answer/data"
#define ZOO_DIR       "/usr/share/cloudlet-answer/models"
#define MODEL_MIB     16u
#define ZOO_MODELS    5u
#define ZOO_MIB       32u
#define PORT_DEFAULT  8091
#define MIB           (1024u * 1024u)

/* ------------------------------------------------------------ SHA-256 */
struct sha256 {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t n;
};

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_init(struct sha256 *c)
{
	static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(c->h, h0, sizeof(h0));
	c->len = 0;
	c->n = 0;
}

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t w[64], a, b, cc, d, e, f, g, hh, t1, t2;
	int i;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
		       (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
	for (; i < 64; i++)
		w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) +
		       w[i - 7] + (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
	a = h[0], b = h[1], cc = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
	for (i = 0; i < 64; i++) {
		t1 =
		    hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
		t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
		hh = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
	}
	h[0] += a, h[1] += b, h[2] += cc, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void sha256_update(struct sha256 *c, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t k;

	c->len += len;
	if (c->n) {
		k = 64 - c->n < len ? 64 - c->n : len;
		memcpy(c->buf + c->n, p, k);
		c->n += k, p += k, len -= k;
		if (c->n < 64)
			return;
		sha256_block(c->h, c->buf);
		c->n = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		sha256_block(c->h, p);
	memcpy(c->buf, p, len);
	c->n = len;
}

static void sha256_hex(struct sha256 *c, char out[65])
{
	uint64_t bits = c->len * 8;
	unsigned char pad[72] = {0x80};
	size_t padlen = (c->n < 56 ? 56 : 120) - c->n;
	int i;

	for (i = 0; i < 8; i++)
		pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_update(c, pad, padlen + 8);
	for (i = 0; i < 8; i++)
		sprintf(out + 8 * i, "%08x", c->h[i]);
}

/* ------------------------------------------------------------ generator */
static uint64_t rng_state;

static uint64_t rng(void) /* splitmix64 */
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_random(unsigned char *p, size_t n)
{
	uint64_t v;
	size_t i;

	for (i = 0; i < n; i += 8) {
		v = rng();
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static void fill_text(unsigned char *p, size_t n, unsigned tag)
{
	static const char *words[] = {
	    "edge", "cloudlet", "overlay", "synthesis", "base",   "memory", "disk",   "chunk",
	    "page", "delta",    "guest",   "kernel",    "answer", "model",  "weight", "layer"};
	char line[160];
	size_t off = 0, k;
	unsigned row = 0;
	uint64_t v;

	while (off < n) {
		v = rng();
		k = (size_t)snprintf(line, sizeof(line), "%u.%06u %s %s %s weight=%u bias=-%u\n",
		                     tag, row++, words[v & 15], words[(v >> 4) & 15],
		                     words[(v >> 8) & 15], (unsigned)(v >> 16) % 1000000u,
		                     (unsigned)(v >> 40) % 1000u);
		if (k > n - off)
			k = n - off;
		memcpy(p + off, line, k);
		off += k;
	}
}

static int write_file(const char *path, const unsigned char *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "cloudlet-answer: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* n MiB of model: 1 MiB blocks, every 4th text. */
static void fill_model(unsigned char *buf, unsigned n, unsigned tag)
{
	unsigned i;

	for (i = 0; i < n; i++) {
		if (i % 4 == 0)
			fill_text(buf + (size_t)i * MIB, MIB, tag + i);
		else
			fill_random(buf + (size_t)i * MIB, MIB);
	}
}

static int make_dir(const char *dir, const char *sub)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0755) && errno != EEXIST) {
		perror(path);
		return -1;
	}
	return 0;
}

static int generate(const char *dir)
{
	static const unsigned sizes_k[8] = {256, 384, 448, 512, 512, 576, 640, 768}; /* 4 MiB */
	char path[4096];
	unsigned char *buf = malloc((size_t)ZOO_MIB * MIB);
	unsigned i;

	if (!buf || make_dir(dir, "data") || make_dir(dir, "models"))
		return 1;
	rng_state = 0x636c6f75646c6574ull; /* "cloudlet" */
	fill_model(buf, MODEL_MIB, 0);
	snprintf(path, sizeof(path), "%s/model.bin", dir);
	if (write_file(path, buf, (size_t)MODEL_MIB * MIB))
		return 1;
	for (i = 0; i < 8; i++) {
		size_t n = (size_t)sizes_k[i] * 1024;
		if (i % 2 == 0)
			fill_text(buf, n, 100 + i);
		else
			fill_random(buf, n);
		snprintf(path, sizeof(path), "%s/data/item-%u", dir, i + 1);
		if (write_file(path, buf, n))
			return 1;
	}
	for (i = 1; i <= ZOO_MODELS; i++) {
		fill_model(buf, ZOO_MIB, 1000 * i);
		snprintf(path, sizeof(path), "%s/models/zoo-%u.bin", dir, i);
		if (write_file(path, buf, (size_t)ZOO_MIB * MIB))
			return 1;
	}
	free(buf);
	return 0;
}

/* ------------------------------------------------------------ server */
static unsigned char *model;
static size_t model_len;
static const char *model_path = MODEL_DEFAULT, *data_dir = DATA_DEFAULT;

static int load_model(void)
{
	struct stat st;
	size_t off = 0;
	ssize_t r;
	int fd = open(model_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "cloudlet-answer: %s: %s\n", model_path, strerror(errno));
		return -1;
	}
	model_len = (size_t)st.st_size;
	model = malloc(model_len ? model_len : 1);
	if (!model)
		return -1;
	while (off < model_len) {
		r = read(fd, model + off, model_len - off);
		if (r <= 0) {
			fprintf(stderr, "cloudlet-answer: reading %s failed\n", model_path);
			return -1;
		}
		off += (size_t)r;
	}
	close(fd);
	return 0;
}

static int hash_file(const char *path, char hex[65])
{
	static unsigned char buf[1 << 16];
	struct sha256 c;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	sha256_init(&c);
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		sha256_update(&c, buf, (size_t)r);
	close(fd);
	if (r < 0)
		return -1;
	sha256_hex(&c, hex);
	return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* The answer body (malloc'd), or NULL. */
static char *answer(void)
{
	struct dirent **ents = NULL;
	struct sha256 c;
	char hex[65], path[4096], *out = NULL;
	size_t cap = 0;
	FILE *f = open_memstream(&out, &cap);
	int n, i, bad = 0;

	if (!f)
		return NULL;
	sha256_init(&c);
	sha256_update(&c, model, model_len);
	sha256_hex(&c, hex);
	fprintf(f, "%s  %s\n", hex, model_path);
	n = scandir(data_dir, &ents, NULL, by_name);
	if (n < 0)
		bad = 1;
	for (i = 0; i < n; i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", data_dir, ents[i]->d_name);
		if (!bad && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (hash_file(path, hex) < 0)
				bad = 1;
			else
				fprintf(f, "%s  %s\n", hex, path);
		}
		free(ents[i]);
	}
	free(ents);
	fclose(f);
	if (bad) {
		free(out);
		return NULL;
	}
	return out;
}

static void send_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0 && (w = send(fd, p, n, MSG_NOSIGNAL)) > 0)
		p += w, n -= (size_t)w;
}

static void reply(int fd, const char *status, const char *body)
{
	char head[256];
	int k = snprintf(head, sizeof(head),
	                 "HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 status, strlen(body));
	send_all(fd, head, (size_t)k);
	send_all(fd, body, strlen(body));
}

/* GET /model/NAME: the line of ZOO_DIR/NAME.bin (NAME: [a-z0-9-]{1,32}). */
static void model_reply(int fd, const char *name)
{
	char path[256], hex[65], line[384];
	size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789-");

	if (n == 0 || n > 32 || (name[n] != ' ' && name[n] != '\r')) {
		reply(fd, "404 Not Found", "not found\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/%.*s.bin", ZOO_DIR, (int)n, name);
	if (hash_file(path, hex) < 0) {
		reply(fd, "404 Not Found", "no such model\n");
		return;
	}
	snprintf(line, sizeof(line), "%s  %s\n", hex, path);
	reply(fd, "200 OK", line);
}

static void serve_one(int fd)
{
	char req[8192];
	size_t n = 0;
	ssize_t r;
	struct timeval tv = {.tv_sec = 30};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (n < sizeof(req) - 1 && (r = recv(fd, req + n, sizeof(req) - 1 - n, 0)) > 0) {
		n += (size_t)r;
		req[n] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[n] = '\0';
	if (strncmp(req, "GET /answer ", 12) == 0 || strncmp(req, "GET /answer\r", 12) == 0) {
		char *body = answer();
		if (body)
			reply(fd, "200 OK", body);
		else
			reply(fd, "500 Internal Server Error", "cannot read the data files\n");
		free(body);
	} else if (strncmp(req, "GET /model/", 11) == 0) {
		model_reply(fd, req + 11);
	} else {
		reply(fd, "404 Not Found", "not found\n");
	}
}

static void notify_ready(void)
{
	const char *p = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t len;
	int fd;

	if (!p || (p[0] != '/' && p[0] != '@') || strlen(p) >= sizeof(sa.sun_path))
		return;
	strcpy(sa.sun_path, p);
	if (p[0] == '@')
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(p));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, "READY=1", 7, MSG_NOSIGNAL, (struct sockaddr *)&sa, len);
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int port = PORT_DEFAULT, ls, fd, one = 1, i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--generate") && i + 1 < argc)
			return generate(argv[i + 1]);
		else if (!strcmp(argv[i], "--model") && i + 1 < argc)
			model_path = argv[++i];
		else if (!strcmp(argv[i], "--data") && i + 1 < argc)
			data_dir = argv[++i];
		else if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else {
			fprintf(stderr,
			        "usage: cloudlet-answer [--model FILE] [--data DIR] [--port N]\n"
			        "       cloudlet-answer --generate DIR\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (load_model() < 0)
		return 1;
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 16) < 0) {
		fprintf(stderr, "cloudlet-answer: cannot listen on 127.0.0.1:%d: %s\n", port,
		        strerror(errno));
		return 1;
	}
	fprintf(stderr, "cloudlet-answer: %zu bytes of %s in RAM, listening on 127.0.0.1:%d\n",
	        model_len, model_path, port);
	notify_ready();
	for (;;) {
		fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("cloudlet-answer: accept");
			return 1;
		}
		serve_one(fd);
		close(fd);
	}
}
