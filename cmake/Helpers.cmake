# cmdistill_apply_warnings(target): our warning flags, on our own sources only.
function(cmdistill_apply_warnings target)
  target_compile_options(${target} PRIVATE ${CMDISTILL_WARNING_FLAGS})
endfunction()

# cmdistill_test(NAME name SOURCES ... DEPS ... LABELS ... [TIMEOUT s])
# One GoogleTest binary, registered with CTest as one test (fast to discover, labelled).
function(cmdistill_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gmock_main GTest::gmock)
  cmdistill_apply_warnings(${T_NAME})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} --gtest_brief=1)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if(TARGET cmdistill)
    set(_env "CMDISTILL_BIN=$<TARGET_FILE:cmdistill>;CMDISTILL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  else()  # CMDISTILL_TORCH_ONLY: no binary
    set(_env "CMDISTILL_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${_env}")
endfunction()
