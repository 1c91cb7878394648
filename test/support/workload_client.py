"""A SPIFFE Workload API client in Python (Debian's grpcio), for the end-to-end tests.

Usage:
  workload_client.py GEN_DIR SOCKET AUDIENCE [--no-header] [--jwks FILE]
                     [--wrong-audience AUD] [--token NAME=FILE]...
  workload_client.py GEN_DIR SOCKET AUDIENCE --stream [--no-header]

GEN_DIR holds workload_pb2.py and workload_pb2_grpc.py, compiled from the project's
device-client/proto/workload.proto with grpc_tools.protoc.

Without --stream: calls every Workload API method once over the Unix socket and prints
one JSON object: per method either the answer (bytes as base64) or
{"error": "<gRPC status code name>", "details": ...}. The JWT-SVID it fetched is also
checked here with PyJWT, independently of the agent, against the JWKS in --jwks (or,
without it, the JWT bundle the agent streamed): "pyjwt" holds the verified claims or
{"error": "<PyJWT exception class>"}. --wrong-audience validates the same token for
another audience with the agent (ValidateJWTSVID) and with PyJWT. Each --token
NAME=FILE validates the token in FILE for AUDIENCE with both (out["tokens"][NAME]).

With --stream: keeps FetchX509SVID open and prints one JSON line per message, flushed:
{"at": <ms since the epoch>, "svids": [{"spiffe_id", "x509_svid"}]}, and at the end
{"at", "error", "details"} (the stream failed) or {"at", "end": true}.
"""

import argparse
import base64
import json
import sys
import time

import grpc

parser = argparse.ArgumentParser()
parser.add_argument("gen_dir")
parser.add_argument("socket")
parser.add_argument("audience")
parser.add_argument("--no-header", action="store_true")
parser.add_argument("--stream", action="store_true")
parser.add_argument("--jwks")
parser.add_argument("--wrong-audience")
parser.add_argument("--token", action="append", default=[])
args = parser.parse_args()
sys.path.insert(0, args.gen_dir)

import workload_pb2  # noqa: E402
import workload_pb2_grpc  # noqa: E402
from google.protobuf.json_format import MessageToDict  # noqa: E402

b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
now_ms = lambda: int(time.time() * 1000)  # noqa: E731
metadata = [] if args.no_header else [("workload.spiffe.io", "true")]
channel = grpc.insecure_channel("unix:" + args.socket)
stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if args.stream:
    try:
        for m in stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=metadata):
            emit({"at": now_ms(), "svids": [{"spiffe_id": s.spiffe_id, "x509_svid": b64(s.x509_svid)} for s in m.svids]})
        emit({"at": now_ms(), "end": True})
    except grpc.RpcError as e:
        emit({"at": now_ms(), "error": e.code().name, "details": e.details()})
    sys.exit(0)

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
    m = stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=[args.audience]), metadata=metadata, timeout=20)
    return {"svids": [{"spiffe_id": s.spiffe_id, "svid": s.svid} for s in m.svids]}


def validate(token, audience):
    m = stub.ValidateJWTSVID(
        workload_pb2.ValidateJWTSVIDRequest(audience=audience, svid=token), metadata=metadata, timeout=20
    )
    return {"spiffe_id": m.spiffe_id, "claims": MessageToDict(m.claims)}


call("FetchX509SVID", x509_svid)
call("FetchX509Bundles", x509_bundles)
call("FetchJWTBundles", jwt_bundles)
call("FetchJWTSVID", jwt_svid)

token = (out["FetchJWTSVID"].get("svids") or [{}])[0].get("svid", "not-a-token")
call("ValidateJWTSVID", lambda: validate(token, args.audience))

# PyJWT, against the JWKS of the token's trust domain: the file given (the server's
# GET /spiffe/bundle), else what the agent streamed.
import jwt  # noqa: E402


def jwks_of(tok):
    if args.jwks:
        with open(args.jwks) as f:
            return json.load(f)["keys"]
    claims = jwt.decode(tok, options={"verify_signature": False})
    trust_domain = "spiffe://" + claims["sub"].split("/")[2]
    return out["FetchJWTBundles"]["bundles"][trust_domain]["keys"]


def pyjwt(tok, audience):
    try:
        kid = jwt.get_unverified_header(tok).get("kid")
        key = next(k for k in jwks_of(tok) if k.get("use") == "jwt-svid" and k.get("kid") == kid)
        verified = jwt.decode(
            tok,
            jwt.PyJWK({k: v for k, v in key.items() if k != "use"}).key,
            algorithms=["ES256"],
            audience=audience,
            options={"require": ["sub", "aud", "exp"]},
        )
        return {"sub": verified["sub"], "aud": verified["aud"], "exp": verified["exp"], "kid": kid}
    except (jwt.PyJWTError, StopIteration, KeyError) as e:
        return {"error": type(e).__name__, "details": str(e)}


if "svids" in out["FetchJWTSVID"]:
    out["pyjwt"] = pyjwt(token, args.audience)
    if args.wrong_audience:
        call("ValidateJWTSVID_wrong_audience", lambda: validate(token, args.wrong_audience))
        out["pyjwt_wrong_audience"] = pyjwt(token, args.wrong_audience)

out["tokens"] = {}
for spec in args.token:
    name, path = spec.split("=", 1)
    with open(path) as f:
        tok = f.read().strip()
    result = {}
    try:
        result["agent"] = validate(tok, args.audience)
    except grpc.RpcError as e:
        result["agent"] = {"error": e.code().name, "details": e.details()}
    result["pyjwt"] = pyjwt(tok, args.audience)
    out["tokens"][name] = result

print(json.dumps(out))
