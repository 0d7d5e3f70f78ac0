// Validation of JS arguments for the addon's parts: every field read names
// where it came from ("LsmCapable.setRules: rules[3].cap must be ..., got
// 64"), so bad input is refused with a message naming what and where.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace edgeward {
namespace js {

// "ENOENT: No such file or directory"
inline std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return std::string(name ? name : "E?") + ": " + strerror(err);
}

// How a value is shown in an error (bigints with their n).
inline std::string Shown(Napi::Value got) {
  if (got.IsUndefined()) return "undefined";
  if (got.IsBigInt()) return got.ToString().Utf8Value() + "n";
  return got.ToString().Utf8Value();
}

// Reads fields of one object; `where` names it ("X.setRules: rules[3]").
class Reader {
 public:
  Reader(Napi::Env env, std::string where) : env_(env), where_(std::move(where)) {}

  // The object at `item`, or a TypeError naming what it should be.
  Napi::Object Object(Napi::Value item, const std::string& shape = "an object") const {
    if (!item.IsObject() || item.IsArray()) throw Napi::TypeError::New(env_, where_ + " must be " + shape);
    return item.As<Napi::Object>();
  }

  [[noreturn]] void Fail(const char* field, const std::string& want, Napi::Value got) const {
    throw Napi::TypeError::New(env_, where_ + "." + field + " must be " + want + ", got " + Shown(got));
  }

  uint64_t BigU64(Napi::Object o, const char* field) const {
    Napi::Value v = o.Get(field);
    bool lossless = false;
    uint64_t n = v.IsBigInt() ? v.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
    if (!v.IsBigInt() || !lossless) Fail(field, "a bigint in 0n..2n**64n-1n", v);
    return n;
  }

  // An integer number in lo..hi.
  uint32_t U32(Napi::Object o, const char* field, double lo, double hi, const std::string& want) const {
    Napi::Value v = o.Get(field);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!v.IsNumber() || !(d >= lo && d <= hi) || d != static_cast<double>(static_cast<uint32_t>(d))) Fail(field, want, v);
    return static_cast<uint32_t>(d);
  }

  const std::string& where() const { return where_; }

 private:
  Napi::Env env_;
  std::string where_;
};

// The array argument `index` of a call, or a TypeError showing the call's usage.
inline Napi::Array ArrayArg(const Napi::CallbackInfo& info, size_t index, const std::string& usage) {
  if (info.Length() <= index || !info[index].IsArray()) throw Napi::TypeError::New(info.Env(), usage);
  return info[index].As<Napi::Array>();
}

// Runs `fn`, turning C++ exceptions into JS ones: std::range_error becomes a
// RangeError (capacity), std::invalid_argument a TypeError, others an Error.
template <typename Fn>
void Rethrown(Napi::Env env, Fn&& fn) {
  try {
    fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::range_error& e) {
    throw Napi::RangeError::New(env, e.what());
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

}  // namespace js
}  // namespace edgeward
