/* The C reference for W3/W4 of bench/compare.ts: copy a list of chunks from one device to the
 * same offsets on another with a tight liburing loop: read a chunk, then write it; up to
 * INFLIGHT chunks at once. Usage: chunk_copy SRC DST CHUNK_BYTES INFLIGHT LIST
 * LIST holds the chunk indices as little-endian uint32. Prints elapsed seconds. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct slot { uint32_t chunk; int writing; };

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	if (argc != 6) { fprintf(stderr, "usage: %s SRC DST CHUNK INFLIGHT LIST\n", argv[0]); return 2; }
	size_t chunk = strtoul(argv[3], 0, 10);
	unsigned inflight = strtoul(argv[4], 0, 10);
	int src = open(argv[1], O_RDONLY | O_DIRECT), dst = open(argv[2], O_WRONLY | O_DIRECT);
	int lf = open(argv[5], O_RDONLY);
	if (src < 0 || dst < 0 || lf < 0) { perror("open"); return 1; }
	struct stat st;
	fstat(lf, &st);
	size_t n = st.st_size / 4;
	uint32_t *list = malloc(st.st_size);
	if (read(lf, list, st.st_size) != st.st_size) { perror("read list"); return 1; }
	struct io_uring ring;
	struct io_uring_params p = {0};
	p.flags = IORING_SETUP_CQSIZE;
	p.cq_entries = inflight * 2;
	if (io_uring_queue_init_params(inflight < 4096 ? inflight : 4096, &ring, &p) < 0) { perror("ring"); return 1; }
	char *bufs;
	if (posix_memalign((void **)&bufs, 4096, chunk * inflight)) return 1;
	struct slot *slots = calloc(inflight, sizeof *slots);
	size_t next = 0, done = 0;
	double t = now();
	for (unsigned i = 0; i < inflight && next < n; i++, next++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		slots[i].chunk = list[next];
		io_uring_prep_read(sqe, src, bufs + i * chunk, chunk, (off_t)list[next] * chunk);
		io_uring_sqe_set_data64(sqe, i);
	}
	while (done < n) {
		struct io_uring_cqe *cqe;
		io_uring_submit_and_wait(&ring, 1);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			unsigned i = cqe->user_data;
			if (cqe->res != (int)chunk) { fprintf(stderr, "I/O error %d\n", cqe->res); return 1; }
			if (!slots[i].writing) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				slots[i].writing = 1;
				io_uring_prep_write(sqe, dst, bufs + i * chunk, chunk, (off_t)slots[i].chunk * chunk);
				io_uring_sqe_set_data64(sqe, i);
			} else {
				done++;
				slots[i].writing = 0;
				if (next < n) {
					struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
					slots[i].chunk = list[next];
					io_uring_prep_read(sqe, src, bufs + i * chunk, chunk, (off_t)list[next++] * chunk);
					io_uring_sqe_set_data64(sqe, i);
				}
			}
			seen++;
		}
		io_uring_cq_advance(&ring, seen);
	}
	printf("%.6f\n", now() - t);
	return 0;
}
