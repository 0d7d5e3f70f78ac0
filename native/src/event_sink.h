// EventSink: the one path from native threads into JavaScript.
//
// Producer threads (the ring-buffer poller, the fanotify answerer) append raw
// ABI records (bpf/include/edgeward_abi.h) to a pending batch; the batch is
// handed to JS as one Buffer per call of the thread-safe function, so JS pays
// one call per batch, never one per event. Decoding happens in
// agent/src/events.ts.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

namespace edgeward {

struct EventSinkStats {
  uint64_t delivered;  // records handed to JS
  uint64_t batches;    // JS calls
  uint64_t dropped;    // records dropped in userspace (JS queue over its limit)
};

class EventSink {
 public:
  // onBatch(Buffer) is called on the JS thread.
  EventSink(Napi::Env env, Napi::Function onBatch, size_t maxPendingBytes);
  ~EventSink();

  // Thread-safe. Appends one record; the batch is flushed by Flush() or when
  // it grows past the flush threshold.
  void Append(const void* record, size_t size);
  // Thread-safe. Sends what is pending (if anything) to JS.
  void Flush();
  // Stops delivering; later Append/Flush calls are no-ops. Call from JS thread.
  void Close();

  EventSinkStats Stats() const;

 private:
  static void CallJs(Napi::Env env, Napi::Function cb, std::nullptr_t*, std::vector<uint8_t>* batch);
  void FlushLocked();

  Napi::ThreadSafeFunction tsfn_;
  mutable std::mutex mu_;
  std::vector<uint8_t> pending_;
  uint64_t pending_records_ = 0;
  std::atomic<uint64_t> in_flight_bytes_{0};
  size_t max_pending_bytes_;
  bool closed_ = false;
  std::atomic<uint64_t> delivered_{0}, batches_{0}, dropped_{0};
};

// JS wrapper: `new native.EventSink(onBatch, {maxPendingBytes})`.
class EventSinkWrap : public Napi::ObjectWrap<EventSinkWrap> {
 public:
  static Napi::Object Init(Napi::Env env, Napi::Object exports);
  explicit EventSinkWrap(const Napi::CallbackInfo& info);
  std::shared_ptr<EventSink> sink() const { return sink_; }
  static Napi::FunctionReference constructor;

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  std::shared_ptr<EventSink> sink_;
};

}  // namespace edgeward
