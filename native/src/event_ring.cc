// EventRing: creates the shared BPF ring buffer and drop counter and drains
// them on one consumer thread into an EventSink (see event_ring.h).
#include "event_ring.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "modules.h"

namespace edgeward {

namespace {

// Rings whose Stop() ran: the header keeps stop_ private, and a stopped ring
// must not be handed to a new BPF object (nobody would drain it).
std::mutex g_stopped_mu;
std::set<const EventRing*> g_stopped;

void MarkStopped(const EventRing* r) {
  std::lock_guard<std::mutex> lock(g_stopped_mu);
  g_stopped.insert(r);
}

void ForgetStopped(const EventRing* r) {
  std::lock_guard<std::mutex> lock(g_stopped_mu);
  g_stopped.erase(r);
}

bool IsStopped(const EventRing* r) {
  std::lock_guard<std::mutex> lock(g_stopped_mu);
  return g_stopped.count(r) != 0;
}

std::string ErrnoText(int err) {
  return std::string(strerrorname_np(err) ? strerrorname_np(err) : "E?") + ": " + strerror(err);
}

// Validates the ring size the kernel will accept (BPF_MAP_TYPE_RINGBUF).
void CheckRingBytes(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (bytes == 0 || (bytes & (bytes - 1)) != 0 || bytes % page != 0) {
    throw std::invalid_argument("EventRing: ringBufferBytes must be a power of two and a multiple of the page size (" +
                                std::to_string(page) + "), got " + std::to_string(bytes));
  }
  if (bytes > (1ull << 30)) {
    throw std::invalid_argument("EventRing: ringBufferBytes must be at most 1 GiB, got " + std::to_string(bytes));
  }
}

}  // namespace

EventRing::EventRing(std::shared_ptr<EventSink> sink, size_t ring_bytes, int poll_interval_ms)
    : sink_(std::move(sink)), poll_interval_ms_(poll_interval_ms) {
  CheckRingBytes(ring_bytes);
  if (poll_interval_ms <= 0) {
    throw std::invalid_argument("EventRing: pollIntervalMs must be a positive integer, got " +
                                std::to_string(poll_interval_ms));
  }
  ring_fd_ = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "events", 0, 0, static_cast<__u32>(ring_bytes), nullptr);
  if (ring_fd_ < 0) {
    throw std::runtime_error("EventRing: creating the ring buffer (" + std::to_string(ring_bytes) +
                             " bytes) failed: " + ErrnoText(errno));
  }
  drops_fd_ = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "event_drops", sizeof(__u32), sizeof(__u64), 1, nullptr);
  if (drops_fd_ < 0) {
    int err = errno;
    close(ring_fd_);
    throw std::runtime_error("EventRing: creating the drop counter failed: " + ErrnoText(err));
  }
  rb_ = ring_buffer__new(ring_fd_, &EventRing::OnRecord, this, nullptr);
  if (rb_ == nullptr) {
    int err = errno;
    close(ring_fd_);
    close(drops_fd_);
    throw std::runtime_error("EventRing: ring_buffer__new failed: " + ErrnoText(err));
  }
  thread_ = std::thread(&EventRing::Run, this);
}

EventRing::~EventRing() {
  Stop();
  if (rb_ != nullptr) ring_buffer__free(rb_);
  if (ring_fd_ >= 0) close(ring_fd_);
  if (drops_fd_ >= 0) close(drops_fd_);
  ForgetStopped(this);
}

int EventRing::ReuseMaps(struct bpf_object* obj) const {
  struct bpf_map* events = bpf_object__find_map_by_name(obj, "events");
  struct bpf_map* drops = bpf_object__find_map_by_name(obj, "event_drops");
  if (events == nullptr || drops == nullptr) return -ENOENT;
  int err = bpf_map__reuse_fd(events, ring_fd_);
  if (err != 0) return err;
  return bpf_map__reuse_fd(drops, drops_fd_);
}

int EventRing::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<EventRing*>(ctx);
  self->sink_->Append(data, size);
  self->delivered_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void EventRing::Run() {
  while (!stop_.load()) {
    // Returns on a wake-up or after the interval: records written without a
    // wake-up (below ew_wakeup_bytes) are picked up one interval late at most.
    int n = ring_buffer__poll(rb_, poll_interval_ms_);
    if (n < 0 && n != -EINTR) break;
    // poll only reads after a wake-up; take what was written without one
    ring_buffer__consume(rb_);
    sink_->Flush();
  }
}

void EventRing::Stop() {
  if (stop_.exchange(true)) return;
  MarkStopped(this);
  // The thread notices within one poll interval.
  if (thread_.joinable()) thread_.join();
  // Final drain: what the kernel wrote before the stop.
  ring_buffer__consume(rb_);
  sink_->Flush();
}

EventRingStats EventRing::Stats() const {
  EventRingStats s{delivered_.load(), 0};
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu > 0) {
    std::vector<__u64> per_cpu(static_cast<size_t>(ncpu), 0);
    __u32 zero = 0;
    if (bpf_map_lookup_elem(drops_fd_, &zero, per_cpu.data()) == 0) {
      for (__u64 v : per_cpu) s.kernel_dropped += v;
    }
  }
  return s;
}

// JS wrapper ------------------------------------------------------------------

Napi::FunctionReference EventRingWrap::constructor_;

// DefineClass()/InstanceMethod() cannot be used: they call T::Unwrap(Object),
// which the header's static Unwrap(Napi::Value) hides. The class is defined
// with napi_define_class directly; ObjectWrap still does the wrapping.
namespace {

// Runs `fn`, turning C++ exceptions into a pending JS exception.
template <typename Fn>
napi_value Guard(napi_env env, Fn fn) {
  try {
    return fn();
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
  }
  return nullptr;
}

EventRingWrap* ThisRing(const Napi::CallbackInfo& info, const Napi::FunctionReference& ctor) {
  if (!info.This().IsObject() || !info.This().As<Napi::Object>().InstanceOf(ctor.Value())) {
    throw Napi::TypeError::New(info.Env(), "EventRing method called on something that is not an EventRing");
  }
  return Napi::ObjectWrap<EventRingWrap>::Unwrap(info.This().As<Napi::Object>());
}

}  // namespace

void EventRingWrap::Init(Napi::Env env, Napi::Object exports) {
  auto construct = [](napi_env e, napi_callback_info cbinfo) -> napi_value {
    return Guard(e, [&]() -> napi_value {
      Napi::CallbackInfo info(e, cbinfo);
      if (!info.IsConstructCall()) throw Napi::TypeError::New(info.Env(), "EventRing must be called with new");
      new EventRingWrap(info);  // owned by the JS object (ObjectWrap's napi_wrap)
      return info.This();
    });
  };
  auto stats = [](napi_env e, napi_callback_info cbinfo) -> napi_value {
    return Guard(e, [&]() -> napi_value {
      Napi::CallbackInfo info(e, cbinfo);
      return ThisRing(info, constructor_)->Stats(info);
    });
  };
  auto close = [](napi_env e, napi_callback_info cbinfo) -> napi_value {
    return Guard(e, [&]() -> napi_value {
      Napi::CallbackInfo info(e, cbinfo);
      return ThisRing(info, constructor_)->Close(info);
    });
  };
  napi_property_descriptor methods[] = {
      {"stats", nullptr, stats, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, close, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  napi_status status = napi_define_class(env, "EventRing", NAPI_AUTO_LENGTH, construct, nullptr,
                                         sizeof(methods) / sizeof(methods[0]), methods, &cls);
  NAPI_THROW_IF_FAILED_VOID(env, status);
  Napi::Function fn(env, cls);
  constructor_ = Napi::Persistent(fn);
  constructor_.SuppressDestruct();
  exports.Set("EventRing", fn);
}

namespace {

// Reads a required positive integer option; throws a JS TypeError naming it.
int64_t RequiredInt(Napi::Env env, Napi::Object opts, const char* name) {
  Napi::Value v = opts.Get(name);
  if (!v.IsNumber()) {
    throw Napi::TypeError::New(env, std::string("EventRing: options.") + name + " must be a number");
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d > 0) || d != static_cast<double>(static_cast<int64_t>(d)) || d > 9007199254740991.0) {
    throw Napi::TypeError::New(env, std::string("EventRing: options.") + name + " must be a positive integer, got " +
                                        v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

}  // namespace

EventRingWrap::EventRingWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventRingWrap>(info) {
  Napi::Env env = info.Env();
  const char* usage = "EventRing(sink: EventSink, {ringBufferBytes, pollIntervalMs})";
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, usage);
  }
  Napi::Object sink_obj = info[0].As<Napi::Object>();
  if (!sink_obj.InstanceOf(EventSinkWrap::constructor.Value())) {
    throw Napi::TypeError::New(env, std::string(usage) + ": the first argument is not an EventSink");
  }
  Napi::Object opts = info[1].As<Napi::Object>();
  int64_t ring_bytes = RequiredInt(env, opts, "ringBufferBytes");
  int64_t poll_ms = RequiredInt(env, opts, "pollIntervalMs");
  if (poll_ms > 60000) throw Napi::RangeError::New(env, "EventRing: options.pollIntervalMs must be at most 60000");
  std::shared_ptr<EventSink> sink = EventSinkWrap::Unwrap(sink_obj)->sink();
  try {
    ring_ = std::make_shared<EventRing>(sink, static_cast<size_t>(ring_bytes), static_cast<int>(poll_ms));
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

std::shared_ptr<EventRing> EventRingWrap::Unwrap(Napi::Value value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor_.Value())) {
    throw Napi::TypeError::New(env, "expected an EventRing");
  }
  EventRingWrap* wrap = Napi::ObjectWrap<EventRingWrap>::Unwrap(value.As<Napi::Object>());
  if (IsStopped(wrap->ring_.get())) throw Napi::Error::New(env, "EventRing is closed");
  return wrap->ring_;
}

Napi::Value EventRingWrap::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  EventRingStats s = ring_->Stats();
  o.Set("delivered", Napi::Number::New(env, static_cast<double>(s.delivered)));
  o.Set("kernelDropped", Napi::Number::New(env, static_cast<double>(s.kernel_dropped)));
  return o;
}

Napi::Value EventRingWrap::Close(const Napi::CallbackInfo& info) {
  // Keeps ring_ so stats() still answers; objects still attached (monitor,
  // enforcers) hold their own reference, the maps live until the last goes.
  ring_->Stop();
  return info.Env().Undefined();
}

void InitEventRing(Napi::Env env, Napi::Object exports) { EventRingWrap::Init(env, exports); }

}  // namespace edgeward
