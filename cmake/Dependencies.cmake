# Every dependency comes from Debian 12's packages (scripts/setup.sh installs them).

# CMDISTILL_TORCH_ONLY needs only the first group (and LibTorch, GoogleTest, Google Benchmark).

find_package(Threads REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(Protobuf REQUIRED)
find_package(nlohmann_json REQUIRED)
find_program(CMDISTILL_PROTOC protoc REQUIRED)
if(NOT CMDISTILL_TORCH_ONLY)
  find_package(gRPC CONFIG REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  find_package(yaml-cpp REQUIRED)
  find_package(OpenSSL REQUIRED)
  find_program(CMDISTILL_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()

# LibTorch is heavy: only the few targets that need tensors link it, PRIVATE. Its CMake config
# appends flags to CMAKE_CXX_FLAGS globally; keep them away from torch-free targets.
set(_cmdistill_saved_cxx_flags "${CMAKE_CXX_FLAGS}")
find_package(Torch REQUIRED)
set(CMAKE_CXX_FLAGS "${_cmdistill_saved_cxx_flags}")
# A slim interface target for torch users: the libraries and include dirs, no global flags.
add_library(cmdistill_torch INTERFACE)
target_link_libraries(cmdistill_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(cmdistill_torch INTERFACE -Wno-unused-parameter)

if(CMDISTILL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(CMDISTILL_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
