# cmdistill_apply_warnings(target): our warning flags, on our own sources only.
function(cmdistill_apply_warnings target)
  target_compile_options(${target} PRIVATE ${CMDISTILL_WARNING_FLAGS})
endfunction()

# cmdistill_test(NAME name SOURCES ... DEPS ... LABELS ... [TIMEOUT s] [BINARY])
# One GoogleTest binary, registered with CTest as one test (fast to discover, labelled).
# BINARY: the test runs the cmdistill binary (CMDISTILL_BIN is set only then); it is labelled
# torch, since the binary links LibTorch. Label torch by hand a test that links LibTorch:
# the test_labels test checks both (tests/check_labels.py), so `ctest -LE torch` needs none.
function(cmdistill_test)
  cmake_parse_arguments(T "BINARY" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gmock_main GTest::gmock)
  cmdistill_apply_warnings(${T_NAME})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} --gtest_brief=1)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  # One compute thread per test process: ctest runs as many tests as there are cores, and
  # LibTorch 2.x sizes its pool at every core (1.13 took 1 here), so two LibTorch tests side by
  # side spun 4 OpenMP threads on 2 cores (bootstrap_test: 2.7 s on 1.13, 45 s on 2.6, and a
  # 120 s timeout beside local_pipeline_test). Roles run by a test set their own
  # (services.compute_threads).
  set(_env "CMDISTILL_SOURCE_DIR=${CMAKE_SOURCE_DIR}" "OMP_NUM_THREADS=1")
  if(T_BINARY)
    list(APPEND _env "CMDISTILL_BIN=$<TARGET_FILE:cmdistill>")
    list(APPEND T_LABELS torch)
    list(REMOVE_DUPLICATES T_LABELS)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${_env}")
endfunction()
