/*
 * peerCred(fd) -> { pid, uid, gid }: the credentials of the process at the other end of
 * a connected Unix domain socket, as the kernel recorded them when it connected
 * (getsockopt SO_PEERCRED, Linux). The edgeid agent's SPIFFE Workload API attests its
 * callers with them. Only node_api.h (N-API): one build loads on every Node line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value set_int(napi_env env, napi_value obj, const char *name, double value) {
  napi_value v;
  if (napi_create_double(env, value, &v) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, name, v) != napi_ok) return NULL;
  return obj;
}

static napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "peerCred(fd): a file descriptor is required");
    return NULL;
  }
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "peerCred(fd): fd must be a non-negative integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  memset(&cred, 0, sizeof cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)", errno);
  if (len != sizeof cred) {
    napi_throw_error(env, NULL, "getsockopt(SO_PEERCRED): short answer");
    return NULL;
  }
  if (cred.pid <= 0) {
    /* Not a connected Unix socket, or a peer in another PID namespace. */
    napi_throw_error(env, NULL, "getsockopt(SO_PEERCRED): no peer process");
    return NULL;
  }
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (!set_int(env, obj, "pid", (double)cred.pid)) return NULL;
  if (!set_int(env, obj, "uid", (double)cred.uid)) return NULL;
  if (!set_int(env, obj, "gid", (double)cred.gid)) return NULL;
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "peerCred", NAPI_AUTO_LENGTH, peer_cred, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "peerCred", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
