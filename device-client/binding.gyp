{
  "targets": [
    {
      "target_name": "peercred",
      "sources": ["native/peercred.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
