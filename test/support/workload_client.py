"""A SPIFFE Workload API client in Python (Debian's grpcio), for the end-to-end tests.

Usage: workload_client.py GEN_DIR SOCKET AUDIENCE [--no-header]

GEN_DIR holds workload_pb2.py and workload_pb2_grpc.py, compiled from the project's
device-client/proto/workload.proto with grpc_tools.protoc. Calls every Workload API method
once over the Unix socket and prints one JSON object: per method either the answer
(bytes as base64) or {"error": "<gRPC status code name>", "details": ...}. The JWT-SVID
is also verified here, independently of the agent, with PyJWT and the JWT bundle the
agent streamed.
"""

import base64
import json
import sys

import grpc

gen_dir, socket_path, audience = sys.argv[1], sys.argv[2], sys.argv[3]
header = "--no-header" not in sys.argv[4:]
sys.path.insert(0, gen_dir)

import workload_pb2  # noqa: E402
import workload_pb2_grpc  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
metadata = [("workload.spiffe.io", "true")] if header else []
channel = grpc.insecure_channel("unix:" + socket_path)
stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
out = {}


def call(name, fn):
    try:
        out[name] = fn()
    except grpc.RpcError as e:
        out[name] = {"error": e.code().name, "details": e.details()}


def first(stream):
    try:
        for message in stream:
            return message
    finally:
        stream.cancel()


def x509_svid():
    m = first(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=metadata, timeout=20))
    return {
        "svids": [
            {
                "spiffe_id": s.spiffe_id,
                "x509_svid": b64(s.x509_svid),
                "x509_svid_key": b64(s.x509_svid_key),
                "bundle": b64(s.bundle),
            }
            for s in m.svids
        ],
        "federated_bundles": {k: b64(v) for k, v in m.federated_bundles.items()},
    }


def x509_bundles():
    m = first(stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=metadata, timeout=20))
    return {"bundles": {k: b64(v) for k, v in m.bundles.items()}}


def jwt_bundles():
    m = first(stub.FetchJWTBundles(workload_pb2.JWTBundlesRequest(), metadata=metadata, timeout=20))
    return {"bundles": {k: json.loads(v) for k, v in m.bundles.items()}}


def jwt_svid():
    m = stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=[audience]), metadata=metadata, timeout=20)
    return {"svids": [{"spiffe_id": s.spiffe_id, "svid": s.svid} for s in m.svids]}


call("FetchX509SVID", x509_svid)
call("FetchX509Bundles", x509_bundles)
call("FetchJWTBundles", jwt_bundles)
call("FetchJWTSVID", jwt_svid)

token = (out["FetchJWTSVID"].get("svids") or [{}])[0].get("svid", "not-a-token")


def validate():
    m = stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token), metadata=metadata, timeout=20
    )
    return {"spiffe_id": m.spiffe_id, "claims": MessageToDict(m.claims)}


call("ValidateJWTSVID", validate)

# The same token checked by PyJWT against the JWT bundle of its trust domain.
if "svids" in out["FetchJWTSVID"] and "bundles" in out["FetchJWTBundles"]:
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    trust_domain = "spiffe://" + claims["sub"].split("/")[2]
    keys = out["FetchJWTBundles"]["bundles"][trust_domain]["keys"]
    kid = jwt.get_unverified_header(token).get("kid")
    key = next(k for k in keys if k.get("kid") == kid)
    verified = jwt.decode(
        token, jwt.PyJWK({k: v for k, v in key.items() if k != "use"}).key, algorithms=["ES256"], audience=audience
    )
    out["pyjwt"] = {"sub": verified["sub"], "aud": verified["aud"]}

print(json.dumps(out))
