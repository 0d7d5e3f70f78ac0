#include "event_sink.h"

#include <cstring>

namespace edgeward {

namespace {
// A batch is sent once it holds this much, even before the next Flush().
constexpr size_t kFlushBytes = 256 * 1024;
}  // namespace

Napi::FunctionReference EventSinkWrap::constructor;

EventSink::EventSink(Napi::Env env, Napi::Function onBatch, size_t maxPendingBytes)
    : max_pending_bytes_(maxPendingBytes) {
  tsfn_ = Napi::ThreadSafeFunction::New(env, onBatch, "edgeward-events", 0, 1);
  // The process may exit while the sink is open: don't keep the loop alive.
  tsfn_.Unref(env);
}

EventSink::~EventSink() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!closed_) {
    closed_ = true;
    tsfn_.Release();
  }
}

void EventSink::Append(const void* record, size_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  const auto* bytes = static_cast<const uint8_t*>(record);
  pending_.insert(pending_.end(), bytes, bytes + size);
  pending_records_++;
  if (pending_.size() >= kFlushBytes) FlushLocked();
}

void EventSink::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  FlushLocked();
}

void EventSink::FlushLocked() {
  if (closed_ || pending_.empty()) return;
  // JS is behind by more than the limit: count the batch as dropped rather
  // than let memory grow without bound.
  if (in_flight_bytes_.load() + pending_.size() > max_pending_bytes_) {
    dropped_ += pending_records_;
    pending_.clear();
    pending_records_ = 0;
    return;
  }
  auto* batch = new std::vector<uint8_t>();
  batch->swap(pending_);
  pending_.reserve(64 * 1024);
  in_flight_bytes_ += batch->size();
  uint64_t records = pending_records_;
  pending_records_ = 0;
  if (tsfn_.NonBlockingCall(batch, [this](Napi::Env env, Napi::Function cb, std::vector<uint8_t>* b) {
        in_flight_bytes_ -= b->size();
        CallJs(env, cb, nullptr, b);
      }) != napi_ok) {
    in_flight_bytes_ -= batch->size();
    delete batch;
    dropped_ += records;
    return;
  }
  delivered_ += records;
  batches_++;
}

void EventSink::CallJs(Napi::Env env, Napi::Function cb, std::nullptr_t*, std::vector<uint8_t>* batch) {
  if (env == nullptr || cb == nullptr) {
    delete batch;
    return;
  }
  // At process exit the environment may refuse new objects or calls; no
  // exception may cross the thread-safe call (it would abort node).
  Napi::Buffer<uint8_t> buf;
  try {
    buf = Napi::Buffer<uint8_t>::New(
        env, batch->data(), batch->size(), [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, batch);
  } catch (const Napi::Error&) {
    delete batch;
    return;
  }
  try {
    cb.Call({buf});
  } catch (const Napi::Error&) {
  }
}

void EventSink::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  pending_.clear();
  tsfn_.Release();
}

EventSinkStats EventSink::Stats() const {
  return EventSinkStats{delivered_.load(), batches_.load(), dropped_.load()};
}

Napi::Object EventSinkWrap::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function fn = DefineClass(env, "EventSink",
                                  {InstanceMethod("stats", &EventSinkWrap::Stats),
                                   InstanceMethod("close", &EventSinkWrap::Close)});
  constructor = Napi::Persistent(fn);
  constructor.SuppressDestruct();
  exports.Set("EventSink", fn);
  return exports;
}

EventSinkWrap::EventSinkWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventSinkWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "EventSink(onBatch: (buf: Buffer) => void, options?)").ThrowAsJavaScriptException();
    return;
  }
  size_t max_pending = 64u * 1024 * 1024;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Value v = info[1].As<Napi::Object>().Get("maxPendingBytes");
    if (v.IsNumber()) max_pending = static_cast<size_t>(v.As<Napi::Number>().Int64Value());
  }
  sink_ = std::make_shared<EventSink>(env, info[0].As<Napi::Function>(), max_pending);
}

Napi::Value EventSinkWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EventSinkStats s = sink_->Stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("delivered", Napi::Number::New(env, static_cast<double>(s.delivered)));
  o.Set("batches", Napi::Number::New(env, static_cast<double>(s.batches)));
  o.Set("dropped", Napi::Number::New(env, static_cast<double>(s.dropped)));
  return o;
}

Napi::Value EventSinkWrap::Close(const Napi::CallbackInfo& info) {
  sink_->Close();
  return info.Env().Undefined();
}

}  // namespace edgeward
