/* The C reference for bench/ring_bench.ts: the same work with a tight liburing loop.
 * 1000 operations in flight per batch: submit them all, wait for all, repeat.
 * Usage: ring_ref FILE   (FILE: 64 MiB, read with O_DIRECT where the filesystem allows it) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000
#define ROUNDS 2000

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run(struct io_uring *ring, int fd, void *bufs, const char *name) {
	struct io_uring_cqe *cqes[BATCH];
	double t = now();
	for (int r = 0; r < ROUNDS; r++) {
		int queued = 0, done = 0;
		while (done < BATCH) {
			while (queued < BATCH) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
				if (!sqe) break;
				if (fd < 0) io_uring_prep_nop(sqe);
				else io_uring_prep_read(sqe, fd, (char *)bufs + (size_t)queued * 4096, 4096,
				                        (off_t)(rand() % 16384) * 4096);
				queued++;
			}
			io_uring_submit_and_wait(ring, 1);
			unsigned n = io_uring_peek_batch_cqe(ring, cqes, BATCH);
			for (unsigned i = 0; i < n; i++)
				if (cqes[i]->res < 0) { fprintf(stderr, "error %d\n", cqes[i]->res); exit(1); }
			io_uring_cq_advance(ring, n);
			done += n;
		}
	}
	double per = (now() - t) / ((double)ROUNDS * BATCH) * 1e9;
	printf("%-28s %8.1f ns per operation\n", name, per);
}

int main(int argc, char **argv) {
	if (argc < 2) { fprintf(stderr, "usage: %s FILE\n", argv[0]); return 2; }
	struct io_uring ring;
	struct io_uring_params p = {0};
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = 2048;
	if (io_uring_queue_init_params(256, &ring, &p) < 0) { perror("io_uring"); return 1; }
	int fd = open(argv[1], O_RDONLY | O_DIRECT);
	if (fd < 0) fd = open(argv[1], O_RDONLY);
	if (fd < 0) { perror(argv[1]); return 1; }
	void *bufs;
	if (posix_memalign(&bufs, 4096, (size_t)BATCH * 4096)) return 1;
	run(&ring, -1, bufs, "C: 1000 NOPs");
	run(&ring, fd, bufs, "C: 1000 4 KiB reads");
	io_uring_queue_exit(&ring);
	return 0;
}
