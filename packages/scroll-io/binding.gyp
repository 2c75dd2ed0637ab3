{
  "targets": [
    {
      "target_name": "goe_reader",
      "sources": ["native/reader.c"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
