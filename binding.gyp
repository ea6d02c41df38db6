{
  "variables": {
    "cnx_cflags": ["-O3", "-fno-math-errno", "-fPIC", "-Wno-unused-function"]
  },
  "targets": [
    {
      "target_name": "convnextv2",
      "sources": [
        "native/binding.cc",
        "native/cpu.cc",
        "native/threadpool.cc",
        "native/dispatch.cc",
        "native/gemm.cc",
        "native/dwconv.cc",
        "native/norm.cc",
        "native/misc.cc",
        "native/mpi.cc"
      ],
      "libraries": ["-ldl"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags": ["<@(cnx_cflags)"],
      "cflags_cc": ["-std=gnu++17"],
      "conditions": [
        ["target_arch=='x64'", {
          "defines": ["CNX_X86=1"],
          "dependencies": ["cnx_avx2", "cnx_avx512"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "cnx_avx2",
          "type": "static_library",
          "sources": [
            "native/gemm_avx2.cc",
            "native/dwconv_avx2.cc",
            "native/norm_avx2.cc",
            "native/misc_avx2.cc"
          ],
          "defines": ["CNX_X86=1"],
          "cflags": ["<@(cnx_cflags)", "-mavx2", "-mfma"],
          "cflags_cc": ["-std=gnu++17"]
        },
        {
          "target_name": "cnx_avx512",
          "type": "static_library",
          "sources": [
            "native/gemm_avx512.cc",
            "native/dwconv_avx512.cc",
            "native/norm_avx512.cc",
            "native/misc_avx512.cc"
          ],
          "defines": ["CNX_X86=1"],
          "cflags": ["<@(cnx_cflags)", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mavx2", "-Wno-maybe-uninitialized"],
          "cflags_cc": ["-std=gnu++17"]
        }
      ]
    }]
  ]
}
