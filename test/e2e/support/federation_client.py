"""A SPIFFE Workload API client in Python (Debian's grpcio), for the federation test.

Usage: federation_client.py GEN_DIR SOCKET fetch AUDIENCE
       federation_client.py GEN_DIR SOCKET validate AUDIENCE TOKEN

GEN_DIR holds workload_pb2.py and workload_pb2_grpc.py, compiled from the project's
device-client/proto/workload.proto with grpc_tools.protoc. `fetch` asks for the caller's
X.509-SVID (first message of the stream), its X.509 bundles and a JWT-SVID for AUDIENCE;
`validate` asks for the X.509 and JWT bundles and has the agent validate TOKEN for AUDIENCE.
Prints one JSON object: per method either the answer (bytes as base64) or
{"error": "<gRPC status code name>", "details": ...}.
"""

import base64
import json
import sys

import grpc

gen_dir, socket_path, mode, audience = sys.argv[1:5]
sys.path.insert(0, gen_dir)

import workload_pb2  # noqa: E402
import workload_pb2_grpc  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
metadata = [("workload.spiffe.io", "true")]
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
            {"spiffe_id": s.spiffe_id, "x509_svid": b64(s.x509_svid), "bundle": b64(s.bundle)} for s in m.svids
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


def validate(token):
    m = stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token), metadata=metadata, timeout=20
    )
    return {"spiffe_id": m.spiffe_id, "claims": MessageToDict(m.claims)}


if mode == "fetch":
    call("FetchX509SVID", x509_svid)
    call("FetchX509Bundles", x509_bundles)
    call("FetchJWTSVID", jwt_svid)
elif mode == "validate":
    call("FetchX509Bundles", x509_bundles)
    call("FetchJWTBundles", jwt_bundles)
    call("ValidateJWTSVID", lambda: validate(sys.argv[5]))
else:
    sys.exit("mode is fetch or validate")

print(json.dumps(out))
