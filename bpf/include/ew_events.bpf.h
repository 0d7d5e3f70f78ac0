/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The event ring shared by every edgeward BPF object. Userspace creates the
 * ring buffer and the drop counter once (native/src/event_ring.cc) and makes
 * each object reuse them (bpf_map__reuse_fd) before load, so one consumer
 * thread drains the records of all programs in order.
 */
#ifndef EW_EVENTS_BPF_H
#define EW_EVENTS_BPF_H

#include "edgeward_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* replaced: the fd userspace made is reused */
} events SEC(".maps");

/* Records the kernel could not reserve because the ring was full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} event_drops SEC(".maps");

/*
 * Wake the consumer only when this much is waiting; below it the consumer's
 * timed poll picks records up. Batching wake-ups is what keeps the per-event
 * cost low (one wake-up per event cost 3.37x an open() in the probe vs 1.60x).
 * Set by userspace in .rodata before load.
 */
const volatile __u64 ew_wakeup_bytes = 64 * 1024;

static __always_inline void ew_count_drop(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&event_drops, &zero);
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Wake-up flag for a record: urgent ones (decisions) wake at once. */
static __always_inline __u64 ew_wakeup_flag(int urgent)
{
	if (urgent)
		return BPF_RB_FORCE_WAKEUP;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ew_wakeup_bytes ?
		BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Copies `size` bytes of a prepared record into the ring (size bounded by caller). */
static __always_inline long ew_output(void *record, __u64 size, int urgent)
{
	long err = bpf_ringbuf_output(&events, record, size, ew_wakeup_flag(urgent));
	if (err)
		ew_count_drop();
	return err;
}

#endif /* EW_EVENTS_BPF_H */
