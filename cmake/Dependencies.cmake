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
if(CMDISTILL_LINK_WITHOUT_CUDNN)
  target_link_options(cmdistill_torch INTERFACE LINKER:--allow-shlib-undefined)
endif()
# GCC 14 (Debian 13) reports -Warray-bounds and -Wstringop-overflow inside libstdc++'s
# std::vector<bool> (a memmove in its reallocation), inlined into our TUs from LibTorch 2.6's
# torch/csrc/autograd/custom_function.h (Function<T>::apply): false positives in system headers
# that -isystem cannot hide, since they fire after inlining. Only torch TUs drop them.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 14)
  target_compile_options(cmdistill_torch INTERFACE -Wno-array-bounds -Wno-stringop-overflow)
endif()

if(CMDISTILL_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(CMDISTILL_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
