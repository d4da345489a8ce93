/*
 * cq: a minimal NFQUEUE consumer on libnetfilter_queue, the C baseline of
 * `make bench` (configuration C3).
 *
 *   cq MODE QUEUE[:FLAGS[:COPY]] ...
 *
 * MODE is "accept" (every packet accepted unchanged) or "rewrite" (every
 * TCP packet returned with its window field lowered by one and its checksum
 * updated incrementally, RFC 1624: the per-packet work of tcpnorm's window
 * clamp). FLAGS is a comma list of "gso" and "failopen" ("-" for none);
 * COPY is the copy range in bytes (default 65535). One thread and one
 * netlink socket per queue. A packet whose checksum is not finished
 * (NFQA_SKB_CSUMNOTREADY, GSO queues only) or that was copied short is
 * accepted unchanged, as tcpnorm does.
 *
 * It prints "ready" once every queue is bound, and on SIGINT/SIGTERM one
 * JSON line with the packets each queue handled.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#define MAXQ 64
#define QUEUE_MAXLEN 4096

static volatile sig_atomic_t stop;
static int rewrite;

struct worker {
	uint16_t num;
	uint32_t flags;
	uint32_t copy;
	uint32_t maxlen;
	pthread_t th;
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	unsigned long long packets, modified, unchanged, errors;
	char pkt[65536 + 4096];
};

static void on_signal(int sig) { (void)sig; stop = 1; }

/* csum_update replaces 16-bit word old by new in checksum csum. */
static uint16_t csum_update(uint16_t csum, uint16_t old, uint16_t new)
{
	/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') */
	uint32_t s = (uint16_t)~ntohs(csum) + (uint16_t)~old + new;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return htons((uint16_t)~s);
}

/* tcp_offset returns the TCP header's offset in pkt, or -1. */
static int tcp_offset(const unsigned char *p, int len)
{
	if (len < 20)
		return -1;
	int v = p[0] >> 4;
	if (v == 4) {
		int ihl = (p[0] & 0xf) * 4;
		if (ihl < 20 || p[9] != 6 || len < ihl + 20)
			return -1;
		if ((ntohs(*(uint16_t *)(p + 6)) & 0x1fff) != 0)
			return -1;
		return ihl;
	}
	if (v == 6) {
		if (len < 40 + 20 || p[6] != 6)
			return -1;
		return 40;
	}
	return -1;
}

/* truncated reports a copy shorter than the packet's IP length. */
static int truncated(const unsigned char *p, int len)
{
	int total = (p[0] >> 4) == 4 ? ntohs(*(uint16_t *)(p + 2)) : 40 + ntohs(*(uint16_t *)(p + 4));
	return len < total;
}

static int cb(struct nfq_q_handle *qh, struct nfgenmsg *nfmsg, struct nfq_data *nfa, void *data)
{
	(void)nfmsg;
	struct worker *w = data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	if (!ph)
		return 0;
	uint32_t id = ntohl(ph->packet_id);
	w->packets++;
	if (!rewrite)
		return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);

	unsigned char *payload;
	int len = nfq_get_payload(nfa, &payload);
	uint32_t info = nfq_get_skbinfo(nfa);
	int off = len > 0 ? tcp_offset(payload, len) : -1;
	if (off < 0 || (info & (NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO)) || truncated(payload, len)) {
		w->unchanged++;
		return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
	}
	unsigned char *t = payload + off;
	uint16_t win = ntohs(*(uint16_t *)(t + 14));
	uint16_t nwin = win > 0 ? win - 1 : 0;
	if (nwin != win) {
		*(uint16_t *)(t + 14) = htons(nwin);
		*(uint16_t *)(t + 16) = csum_update(*(uint16_t *)(t + 16), win, nwin);
	}
	w->modified++;
	return nfq_set_verdict(qh, id, NF_ACCEPT, (uint32_t)len, payload);
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int fd = nfq_fd(w->h);
	struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (!stop) {
		int n = recv(fd, w->pkt, sizeof w->pkt, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS)
				continue;
			w->errors++;
			continue;
		}
		nfq_handle_packet(w->h, w->pkt, n);
	}
	return NULL;
}

static int parse_queue(const char *arg, struct worker *w)
{
	char buf[128];
	snprintf(buf, sizeof buf, "%s", arg);
	char *flags = strchr(buf, ':');
	char *copy = NULL, *maxlen = NULL;
	if (flags) {
		*flags++ = 0;
		copy = strchr(flags, ':');
		if (copy) {
			*copy++ = 0;
			maxlen = strchr(copy, ':');
			if (maxlen)
				*maxlen++ = 0;
		}
	}
	char *end;
	long q = strtol(buf, &end, 10);
	if (*buf == 0 || *end != 0 || q < 0 || q > 65535)
		return -1;
	w->num = (uint16_t)q;
	w->copy = 65535;
	if (copy) {
		long c = strtol(copy, &end, 10);
		if (*copy == 0 || *end != 0 || c < 64 || c > 65535)
			return -1;
		w->copy = (uint32_t)c;
	}
	w->maxlen = QUEUE_MAXLEN;
	if (maxlen) {
		long m = strtol(maxlen, &end, 10);
		if (*maxlen == 0 || *end != 0 || m < 1 || m > 1 << 20)
			return -1;
		w->maxlen = (uint32_t)m;
	}
	if (flags && strcmp(flags, "-") != 0) {
		for (char *f = strtok(flags, ","); f; f = strtok(NULL, ",")) {
			if (strcmp(f, "gso") == 0)
				w->flags |= NFQA_CFG_F_GSO;
			else if (strcmp(f, "failopen") == 0)
				w->flags |= NFQA_CFG_F_FAIL_OPEN;
			else
				return -1;
		}
	}
	return 0;
}

static int open_worker(struct worker *w)
{
	w->h = nfq_open();
	if (!w->h) {
		perror("nfq_open");
		return -1;
	}
	w->qh = nfq_create_queue(w->h, w->num, cb, w);
	if (!w->qh) {
		fprintf(stderr, "queue %u: nfq_create_queue: %s\n", w->num, strerror(errno));
		return -1;
	}
	if (nfq_set_mode(w->qh, NFQNL_COPY_PACKET, w->copy) < 0 ||
	    nfq_set_queue_maxlen(w->qh, w->maxlen) < 0) {
		fprintf(stderr, "queue %u: set mode: %s\n", w->num, strerror(errno));
		return -1;
	}
	uint32_t mask = NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN;
	if (nfq_set_queue_flags(w->qh, mask, w->flags) < 0) {
		fprintf(stderr, "queue %u: set flags: %s\n", w->num, strerror(errno));
		return -1;
	}
	nfnl_rcvbufsiz(nfq_nfnlh(w->h), 16 << 20);
	int one = 1;
	setsockopt(nfq_fd(w->h), SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3 || (strcmp(argv[1], "accept") != 0 && strcmp(argv[1], "rewrite") != 0)) {
		fprintf(stderr, "usage: cq accept|rewrite QUEUE[:FLAGS[:COPY]] ...\n");
		return 2;
	}
	rewrite = strcmp(argv[1], "rewrite") == 0;
	int n = argc - 2;
	if (n > MAXQ) {
		fprintf(stderr, "at most %d queues\n", MAXQ);
		return 2;
	}
	static struct worker ws[MAXQ];
	for (int i = 0; i < n; i++) {
		if (parse_queue(argv[i + 2], &ws[i]) < 0) {
			fprintf(stderr, "bad queue spec %s\n", argv[i + 2]);
			return 2;
		}
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	for (int i = 0; i < n; i++)
		if (open_worker(&ws[i]) < 0)
			return 1;
	for (int i = 0; i < n; i++)
		pthread_create(&ws[i].th, NULL, run, &ws[i]);
	printf("ready\n");
	fflush(stdout);
	for (int i = 0; i < n; i++)
		pthread_join(ws[i].th, NULL);
	printf("{\"queues\":[");
	for (int i = 0; i < n; i++) {
		printf("%s{\"queue\":%u,\"packets\":%llu,\"modified\":%llu,\"unchanged\":%llu,\"errors\":%llu}",
		       i ? "," : "", ws[i].num, ws[i].packets, ws[i].modified, ws[i].unchanged, ws[i].errors);
		nfq_destroy_queue(ws[i].qh);
		nfq_close(ws[i].h);
	}
	printf("]}\n");
	return 0;
}
