// abiLayout(): byte offsets and sizes of every struct in edgeward_abi.h as the
// addon was compiled, flat: "ew_event_header.pid" (offset),
// "sizeof.ew_event_header.pid" (field size), "sizeof.ew_event_header" (struct
// size). tests/unit/abi.test.ts compares them with the TS decoder's layout.
#include <cstddef>

#include "edgeward_abi.h"
#include "modules.h"

namespace edgeward {

namespace {

#define EW_FIELD(obj, type, field)                                                                  \
  do {                                                                                              \
    obj.Set(#type "." #field, Napi::Number::New(env, offsetof(struct type, field)));                \
    obj.Set("sizeof." #type "." #field, Napi::Number::New(env, sizeof(((struct type*)nullptr)->field))); \
  } while (0)
#define EW_SIZE(obj, type) obj.Set("sizeof." #type, Napi::Number::New(env, sizeof(struct type)))

Napi::Value AbiLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);

  EW_SIZE(o, ew_event_header);
  EW_FIELD(o, ew_event_header, kind);
  EW_FIELD(o, ew_event_header, size);
  EW_FIELD(o, ew_event_header, abi_version);
  EW_FIELD(o, ew_event_header, timestamp_ns);
  EW_FIELD(o, ew_event_header, pid);
  EW_FIELD(o, ew_event_header, tid);
  EW_FIELD(o, ew_event_header, ppid);
  EW_FIELD(o, ew_event_header, uid);
  EW_FIELD(o, ew_event_header, cgroup_id);
  EW_FIELD(o, ew_event_header, mnt_ns);
  EW_FIELD(o, ew_event_header, pid_ns);
  EW_FIELD(o, ew_event_header, comm);
  EW_FIELD(o, ew_event_header, ns_pid);
  EW_FIELD(o, ew_event_header, ns_ppid);

  EW_SIZE(o, ew_exec_event);
  EW_FIELD(o, ew_exec_event, h);
  EW_FIELD(o, ew_exec_event, path_len);
  EW_FIELD(o, ew_exec_event, path_flags);
  EW_FIELD(o, ew_exec_event, path);

  EW_SIZE(o, ew_fork_event);
  EW_FIELD(o, ew_fork_event, h);
  EW_FIELD(o, ew_fork_event, child_pid);
  EW_FIELD(o, ew_fork_event, child_tid);

  EW_SIZE(o, ew_exit_event);
  EW_FIELD(o, ew_exit_event, h);
  EW_FIELD(o, ew_exit_event, exit_code);
  EW_FIELD(o, ew_exit_event, _pad);

  EW_SIZE(o, ew_file_event);
  EW_FIELD(o, ew_file_event, h);
  EW_FIELD(o, ew_file_event, flags);
  EW_FIELD(o, ew_file_event, ret);
  EW_FIELD(o, ew_file_event, path_len);
  EW_FIELD(o, ew_file_event, path_flags);
  EW_FIELD(o, ew_file_event, path);

  EW_SIZE(o, ew_net_event);
  EW_FIELD(o, ew_net_event, h);
  EW_FIELD(o, ew_net_event, op);
  EW_FIELD(o, ew_net_event, family);
  EW_FIELD(o, ew_net_event, sock_type);
  EW_FIELD(o, ew_net_event, protocol);
  EW_FIELD(o, ew_net_event, port);
  EW_FIELD(o, ew_net_event, _pad);
  EW_FIELD(o, ew_net_event, ret);
  EW_FIELD(o, ew_net_event, addr);

  EW_SIZE(o, ew_decision_event);
  EW_FIELD(o, ew_decision_event, h);
  EW_FIELD(o, ew_decision_event, rule_id);
  EW_FIELD(o, ew_decision_event, action);
  EW_FIELD(o, ew_decision_event, operation);
  EW_FIELD(o, ew_decision_event, enforcer);
  EW_FIELD(o, ew_decision_event, _pad);
  EW_FIELD(o, ew_decision_event, ret);
  EW_FIELD(o, ew_decision_event, flags);
  EW_FIELD(o, ew_decision_event, resource_len);
  EW_FIELD(o, ew_decision_event, exe_len);
  EW_FIELD(o, ew_decision_event, strings);

  EW_SIZE(o, ew_net_rule_key);
  EW_FIELD(o, ew_net_rule_key, workload);
  EW_FIELD(o, ew_net_rule_key, src_dev);
  EW_FIELD(o, ew_net_rule_key, src_ino);
  EW_FIELD(o, ew_net_rule_key, proto_class);
  EW_FIELD(o, ew_net_rule_key, _pad);

  EW_SIZE(o, ew_net_rule_value);
  EW_FIELD(o, ew_net_rule_value, rule_id);
  EW_FIELD(o, ew_net_rule_value, action);
  return o;
}

#undef EW_FIELD
#undef EW_SIZE

}  // namespace

void InitAbiLayout(Napi::Env env, Napi::Object exports) {
  exports.Set("abiLayout", Napi::Function::New(env, AbiLayout, "abiLayout"));
}

}  // namespace edgeward
