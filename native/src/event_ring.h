// EventRing: the kernel->userspace ring buffer shared by every BPF object.
//
// It creates the BPF ring buffer map and the per-CPU drop counter
// (bpf/include/ew_events.bpf.h declares them as `events` and `event_drops`),
// and runs one consumer thread that drains the ring on wake-ups and on a
// timer and appends every record to an EventSink. BPF objects call
// ReuseMaps() on their bpf_object before load so they write into this ring.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <thread>

#include "event_sink.h"

struct bpf_object;
struct ring_buffer;

namespace edgeward {

struct EventRingStats {
  uint64_t delivered;       // records read from the ring
  uint64_t kernel_dropped;  // records the kernel could not reserve (sum of event_drops)
};

class EventRing {
 public:
  // Throws std::runtime_error with errno text on failure.
  EventRing(std::shared_ptr<EventSink> sink, size_t ring_bytes, int poll_interval_ms);
  ~EventRing();

  // Makes `obj`'s maps named "events" and "event_drops" use this ring's maps.
  // Call between bpf_object open and load. Returns 0 or -errno.
  int ReuseMaps(struct bpf_object* obj) const;

  int ring_fd() const { return ring_fd_; }
  EventRingStats Stats() const;
  void Stop();

 private:
  static int OnRecord(void* ctx, void* data, size_t size);
  void Run();

  std::shared_ptr<EventSink> sink_;
  int ring_fd_ = -1;
  int drops_fd_ = -1;
  int poll_interval_ms_;
  struct ring_buffer* rb_ = nullptr;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> delivered_{0};
  std::thread thread_;
};

// JS wrapper: `new native.EventRing(sink, {ringBufferBytes, pollIntervalMs})`.
class EventRingWrap : public Napi::ObjectWrap<EventRingWrap> {
 public:
  static void Init(Napi::Env env, Napi::Object exports);
  explicit EventRingWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<EventRing> ring() const { return ring_; }
  // The EventRing behind a JS EventRing object; throws a JS TypeError otherwise.
  static std::shared_ptr<EventRing> Unwrap(Napi::Value value);

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::shared_ptr<EventRing> ring_;
  static Napi::FunctionReference constructor_;
};

}  // namespace edgeward
