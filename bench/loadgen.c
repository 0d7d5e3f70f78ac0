// SPDX-License-Identifier: Apache-2.0
/*
 * edgeward benchmark load generator. Every loop is bounded by a count AND a
 * time limit (EW_BENCH_MAX_SECONDS, default 20 s) and touches only loopback
 * and the paths it is given. Prints one JSON object on stdout.
 *
 *   loadgen open PATH N            open(PATH, O_RDONLY) + close, N times
 *   loadgen exec PATH N            fork + execve(PATH) + waitpid, N times
 *   loadgen connect N              TCP socket + connect to its own loopback
 *                                  listener + close (RST, no TIME_WAIT), N times
 *   loadgen udp N                  UDP socket + connect(127.0.0.1) + close, N times
 *   loadgen events RATE SECONDS PATH
 *                                  open+close of PATH paced at RATE per second
 *                                  (0: as fast as possible) for SECONDS
 *
 * Output: {"mode":..,"ops":..,"seconds":..,"ns_per_op":..(mean),"ns_per_op_median_chunk":..,
 *          "ns_per_op_min_chunk":..,"chunks":..,"timed_out":..}; events: {..,"rate":..}
 * A warm-up of min(N/20, 2000) untimed iterations precedes the timed loop.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double max_seconds = 20.0;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long parse_count(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 0 || v > 1000000000L) {
		fprintf(stderr, "loadgen: %s must be an integer in 0..1e9, got '%s'\n", what, s);
		exit(2);
	}
	return v;
}

/* One operation of a mode; returns 0 or exits on error. */
typedef void (*op_fn)(void *ctx);

/*
 * The timed loop is cut into CHUNKS equal slices, each timed on its own: the
 * median slice is robust to other processes stealing the CPU for part of
 * the run (a shared 2-core machine), the mean is reported too.
 */
#define CHUNKS 16

struct loop_result {
	long ops;
	uint64_t elapsed;
	double chunk_ns[CHUNKS]; /* ns per op of each slice */
	int chunks;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Runs `op` up to n times or until the time limit. */
static void run_loop(op_fn op, void *ctx, long n, struct loop_result *r)
{
	long warm = n / 20 < 2000 ? n / 20 : 2000;
	for (long i = 0; i < warm; i++)
		op(ctx);
	uint64_t limit = (uint64_t)(max_seconds * 1e9);
	long per_chunk = n / CHUNKS > 0 ? n / CHUNKS : 1;
	uint64_t start = now_ns(), t = start, chunk_start = start;
	long done = 0, in_chunk = 0;
	r->chunks = 0;
	while (done < n) {
		op(ctx);
		done++;
		if (++in_chunk == per_chunk) {
			t = now_ns();
			if (r->chunks < CHUNKS)
				r->chunk_ns[r->chunks++] = (double)(t - chunk_start) / (double)in_chunk;
			chunk_start = t;
			in_chunk = 0;
			if (t - start > limit)
				break;
		} else if ((done & 63) == 0 && now_ns() - start > limit) {
			break; /* a bound on time even within a slow chunk */
		}
	}
	t = now_ns();
	r->ops = done;
	r->elapsed = t - start;
}

static void print_result(const char *mode, struct loop_result *r)
{
	double secs = (double)r->elapsed / 1e9;
	double mean = r->ops ? (double)r->elapsed / (double)r->ops : 0.0;
	double median = mean;
	if (r->chunks > 0) {
		qsort(r->chunk_ns, (size_t)r->chunks, sizeof(double), cmp_double);
		median = r->chunks % 2 ? r->chunk_ns[r->chunks / 2]
				       : (r->chunk_ns[r->chunks / 2 - 1] + r->chunk_ns[r->chunks / 2]) / 2;
	}
	printf("{\"mode\":\"%s\",\"ops\":%ld,\"seconds\":%.6f,\"ns_per_op\":%.2f,\"ns_per_op_median_chunk\":%.2f,"
	       "\"ns_per_op_min_chunk\":%.2f,\"chunks\":%d,\"timed_out\":%s}\n",
	       mode, r->ops, secs, mean, median, r->chunks ? r->chunk_ns[0] : mean, r->chunks,
	       secs >= max_seconds ? "true" : "false");
}

/* open ------------------------------------------------------------------ */

static void op_open(void *ctx)
{
	int fd = open((const char *)ctx, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open");
	close(fd);
}

/* exec ------------------------------------------------------------------ */

static void op_exec(void *ctx)
{
	const char *path = ctx;
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char *argv[] = {(char *)path, "true", NULL};
		execve(path, argv, environ);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "loadgen: %s exited with status 0x%x (exec refused?)\n", path, status);
		exit(1);
	}
}

/* connect: own loopback listener ----------------------------------------- */

struct listener {
	int fd;
	struct sockaddr_in addr;
};

static void *accept_loop(void *arg)
{
	struct listener *l = arg;
	for (;;) {
		int c = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* listener closed */
		}
		close(c);
	}
}

static void op_connect(void *ctx)
{
	struct listener *l = ctx;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket(tcp)");
	if (connect(s, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0)
		die("connect(127.0.0.1)");
	/* close with RST: no TIME_WAIT, so a long loop cannot run out of ports */
	struct linger lin = {.l_onoff = 1, .l_linger = 0};
	setsockopt(s, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	close(s);
}

static void op_udp(void *ctx)
{
	struct listener *l = ctx;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket(udp)");
	if (connect(s, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0)
		die("connect(udp 127.0.0.1)");
	close(s);
}

static void start_listener(struct listener *l)
{
	l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->fd < 0)
		die("socket(listener)");
	memset(&l->addr, 0, sizeof(l->addr));
	l->addr.sin_family = AF_INET;
	l->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->addr.sin_port = 0;
	if (bind(l->fd, (struct sockaddr *)&l->addr, sizeof(l->addr)) < 0)
		die("bind(127.0.0.1:0)");
	socklen_t len = sizeof(l->addr);
	if (getsockname(l->fd, (struct sockaddr *)&l->addr, &len) < 0)
		die("getsockname");
	if (listen(l->fd, 4096) < 0)
		die("listen");
	pthread_t t;
	if (pthread_create(&t, NULL, accept_loop, l) != 0)
		die("pthread_create");
	pthread_detach(t);
}

/* events: paced opens --------------------------------------------------- */

static void run_events(long rate, double seconds, const char *path)
{
	if (seconds > max_seconds)
		seconds = max_seconds;
	uint64_t start = now_ns();
	uint64_t dur = (uint64_t)(seconds * 1e9);
	uint64_t t = start;
	long done = 0;
	while (t - start < dur) {
		long due = rate ? (long)((double)(t - start) * (double)rate / 1e9) + 1 : done + 256;
		if (done >= due) {
			/* ahead of schedule: sleep until the next op is due (at least 50 us) */
			uint64_t next = start + (uint64_t)((double)done * 1e9 / (double)rate);
			uint64_t wait = next > t ? next - t : 0;
			if (wait < 50000)
				wait = 50000;
			struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)wait};
			nanosleep(&ts, NULL);
		} else {
			long batch = due - done;
			if (batch > 256)
				batch = 256;
			for (long i = 0; i < batch; i++)
				op_open((void *)path);
			done += batch;
		}
		t = now_ns();
	}
	double secs = (double)(t - start) / 1e9;
	printf("{\"mode\":\"events\",\"offered_rate\":%ld,\"ops\":%ld,\"seconds\":%.6f,\"rate\":%.1f,\"ns_per_op\":%.2f}\n",
	       rate, done, secs, (double)done / secs, done ? (double)(t - start) / (double)done : 0.0);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen open PATH N | exec PATH N | connect N | udp N | events RATE SECONDS PATH\n"
		"       (EW_BENCH_MAX_SECONDS bounds every loop, default 20)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *env = getenv("EW_BENCH_MAX_SECONDS");
	if (env) {
		max_seconds = atof(env);
		if (!(max_seconds > 0 && max_seconds <= 300)) {
			fprintf(stderr, "loadgen: EW_BENCH_MAX_SECONDS must be in (0, 300], got '%s'\n", env);
			return 2;
		}
	}
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	struct loop_result r;
	if (!strcmp(mode, "open") && argc == 4) {
		run_loop(op_open, argv[2], parse_count(argv[3], "N"), &r);
	} else if (!strcmp(mode, "exec") && argc == 4) {
		run_loop(op_exec, argv[2], parse_count(argv[3], "N"), &r);
	} else if ((!strcmp(mode, "connect") || !strcmp(mode, "udp")) && argc == 3) {
		static struct listener l;
		start_listener(&l);
		run_loop(!strcmp(mode, "connect") ? op_connect : op_udp, &l, parse_count(argv[2], "N"), &r);
		close(l.fd);
	} else if (!strcmp(mode, "events") && argc == 5) {
		long rate = parse_count(argv[2], "RATE");
		double secs = atof(argv[3]);
		if (!(secs > 0 && secs <= 60)) {
			fprintf(stderr, "loadgen: SECONDS must be in (0, 60], got '%s'\n", argv[3]);
			return 2;
		}
		run_events(rate, secs, argv[4]);
		return 0;
	} else {
		usage();
		return 2;
	}
	print_result(mode, &r);
	return 0;
}
